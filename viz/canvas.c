/* viz/canvas.c — the raster every picture is drawn on: RGB pixels in memory, filled
 * rectangles and thick lines, and the PNG file written with stb_image_write (Debian's
 * libstb holds its implementation). */
#include "raster.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h>

viz_canvas viz_canvas_new(int w, int h) {
    viz_canvas c = {w, h, tg_xmalloc((size_t)w * (size_t)h * 3)};
    memset(c.px, 255, (size_t)w * (size_t)h * 3);
    return c;
}

static void put_pixel(viz_canvas *c, int x, int y, viz_rgb color) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    uint8_t *p = c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
    p[0] = color.r, p[1] = color.g, p[2] = color.b;
}

void viz_fill_rect(viz_canvas *c, int x0, int y0, int x1, int y1, viz_rgb color) {
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > c->w) x1 = c->w;
    if (y1 > c->h) y1 = c->h;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) put_pixel(c, x, y, color);
}

void viz_frame_rect(viz_canvas *c, int x0, int y0, int x1, int y1, viz_rgb color) {
    viz_fill_rect(c, x0, y0, x1, y0 + 1, color);
    viz_fill_rect(c, x0, y1 - 1, x1, y1, color);
    viz_fill_rect(c, x0, y0, x0 + 1, y1, color);
    viz_fill_rect(c, x1 - 1, y0, x1, y1, color);
}

/* A square brush stepped along the longer axis (DDA): one stamp per pixel of length, so
 * the line has no gaps at any slope. */
void viz_draw_line(viz_canvas *c, double x0, double y0, double x1, double y1, int width,
                   viz_rgb color) {
    const double dx = x1 - x0, dy = y1 - y0;
    const double len = fabs(dx) > fabs(dy) ? fabs(dx) : fabs(dy);
    const int steps = (int)ceil(len) + 1;
    const int lo = -(width - 1) / 2, hi = width / 2;
    for (int s = 0; s <= steps; s++) {
        const double u = steps ? (double)s / steps : 0;
        const int x = (int)lround(x0 + u * dx), y = (int)lround(y0 + u * dy);
        for (int oy = lo; oy <= hi; oy++)
            for (int ox = lo; ox <= hi; ox++) put_pixel(c, x + ox, y + oy, color);
    }
}

tg_status viz_canvas_write_png(const viz_canvas *c, const char *what, const char *path) {
    if (!stbi_write_png(path, c->w, c->h, 3, c->px, c->w * 3))
        return tg_status_set(TG_ERR_IO, "%s: cannot write the PNG file '%s'", what, path);
    return TG_OK;
}
