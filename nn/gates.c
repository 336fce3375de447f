/* Gates over time: tracing a composite GRU/LSTM's gate activations and ‖dL/dh_t‖, and the
 * pictures of them — heatmaps and line charts rasterised here into an RGB buffer and written
 * as PNG with stb_image_write. Text comes from stb_easy_font, which turns a string into
 * axis-aligned quads (it is meant for 3-D APIs); we fill those quads ourselves, scaled up.
 *
 * Why ‖dL/dh_t‖: backward through time multiplies dL/dh_t by the Jacobian dh_t/dh_{t-1}
 * once per step. For a tanh RNN that Jacobian is diag(1 − h_t²)·W_hh, whose norm is often
 * below 1, so the gradient that reaches the first steps shrinks geometrically — on a log
 * scale, a straight line down. The GRU has the direct term z_t (dh_prev += dh ⊙ z) and the
 * LSTM the cell's dc_prev = dc ⊙ f: where the gates sit near 1 the gradient passes through
 * unchanged. The chart shows which of the two happens. */
#include "tapegrad/gates.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h>
/* stb_easy_font is all static functions (no separate implementation, not in libstb); we use
 * some of them, and its initialisers trip -Wmissing-braces: the warnings are about the header. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-braces"
#include <stb_easy_font.h>
#pragma GCC diagnostic pop

/* =========================================================================================
 * A tiny raster: RGB pixels, rectangles, lines, text
 * ======================================================================================= */
typedef struct rgb {
    uint8_t r, g, b;
} rgb;

static const rgb WHITE = {255, 255, 255}, BLACK = {0, 0, 0}, GREY = {120, 120, 120},
                 GRID = {228, 228, 228}, MISSING = {200, 200, 200};

typedef struct canvas {
    int w, h;
    uint8_t *px; /* w·h·3 bytes, row-major, top row first */
} canvas;

static canvas canvas_new(int w, int h) {
    canvas c = {w, h, tg_xmalloc((size_t)w * (size_t)h * 3)};
    memset(c.px, 255, (size_t)w * (size_t)h * 3);
    return c;
}

static void put_pixel(canvas *c, int x, int y, rgb color) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    uint8_t *p = c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
    p[0] = color.r, p[1] = color.g, p[2] = color.b;
}

/* Fills [x0, x1) × [y0, y1), clipped to the canvas. */
static void fill_rect(canvas *c, int x0, int y0, int x1, int y1, rgb color) {
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > c->w) x1 = c->w;
    if (y1 > c->h) y1 = c->h;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) put_pixel(c, x, y, color);
}

/* The outline of [x0, x1) × [y0, y1), one pixel wide. */
static void frame_rect(canvas *c, int x0, int y0, int x1, int y1, rgb color) {
    fill_rect(c, x0, y0, x1, y0 + 1, color);
    fill_rect(c, x0, y1 - 1, x1, y1, color);
    fill_rect(c, x0, y0, x0 + 1, y1, color);
    fill_rect(c, x1 - 1, y0, x1, y1, color);
}

/* A line `width` pixels thick: a square brush stepped along the longer axis (DDA). */
static void draw_line(canvas *c, double x0, double y0, double x1, double y1, int width, rgb color) {
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

/* stb_easy_font indexes a table by (char − 32) and knows printable ASCII only: anything
 * else becomes '?'. The copy is also what its non-const `char *` parameters want. */
static void text_sanitize(char *dst, size_t len, const char *src) {
    size_t i = 0;
    for (; src && src[i] && i + 1 < len; i++)
        dst[i] = (src[i] >= 32 && src[i] < 127) || src[i] == '\n' ? src[i] : '?';
    dst[i] = '\0';
}

/* Width and height of a one-line text in pixels at integer `scale` (the font is 7 px tall
 * at scale 1, 12 px from line to line). */
static int text_width(const char *text, int scale) {
    char buf[256];
    text_sanitize(buf, sizeof buf, text);
    return stb_easy_font_width(buf) * scale;
}
#define TEXT_HEIGHT(scale) (7 * (scale))

typedef enum { ALIGN_LEFT, ALIGN_CENTER, ALIGN_RIGHT } text_align;

/* Draws text with its top at y, horizontally aligned on x; `vertical` turns it 90°
 * anticlockwise (reading upwards), aligned on y along its length and with its top at x. */
static void draw_text(canvas *c, int x, int y, const char *text, int scale, rgb color,
                      text_align align, bool vertical) {
    char buf[256];
    text_sanitize(buf, sizeof buf, text);
    if (!buf[0]) return;
    const int w = stb_easy_font_width(buf) * scale;
    const int shift = align == ALIGN_CENTER ? w / 2 : align == ALIGN_RIGHT ? w : 0;
    static const int vertex_bytes = 16; /* x, y, z floats and 4 colour bytes */
    const int cap = (int)(strlen(buf) * 11 * 64 + 64); /* ≤ 11 segments per glyph, 64 B each */
    unsigned char *vb = tg_xmalloc((size_t)cap);
    const int quads = stb_easy_font_print(0, 0, buf, NULL, vb, cap);
    for (int q = 0; q < quads; q++) {
        float u0 = 1e9f, u1 = -1e9f, v0 = 1e9f, v1 = -1e9f; /* the quad in text space */
        for (int k = 0; k < 4; k++) {
            float p[2];
            memcpy(p, vb + (size_t)(4 * q + k) * (size_t)vertex_bytes, sizeof p);
            u0 = p[0] < u0 ? p[0] : u0, u1 = p[0] > u1 ? p[0] : u1;
            v0 = p[1] < v0 ? p[1] : v0, v1 = p[1] > v1 ? p[1] : v1;
        }
        const int a0 = (int)lroundf(u0 * (float)scale) - shift,
                  a1 = (int)lroundf(u1 * (float)scale) - shift;
        const int b0 = (int)lroundf(v0 * (float)scale), b1 = (int)lroundf(v1 * (float)scale);
        if (!vertical)
            fill_rect(c, x + a0, y + b0, x + a1, y + b1, color);
        else
            fill_rect(c, x + b0, y - a1, x + b1, y - a0, color); /* (u, v) -> (x + v, y − u) */
    }
    free(vb);
}

/* A title centred at the top: large if it fits the width, smaller if not. */
static void draw_title(canvas *c, const char *title) {
    const int scale = text_width(title, 3) + 20 <= c->w ? 3 : 2;
    draw_text(c, c->w / 2, scale == 3 ? 14 : 18, title, scale, BLACK, ALIGN_CENTER, false);
}

/* =========================================================================================
 * Axes: tick positions and labels
 * ======================================================================================= */

/* A step of 1, 2 or 5 × 10^k that cuts `range` into about `target` pieces. */
static double nice_step(double range, int target) {
    if (!(range > 0)) return 1;
    const double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

static void tick_label(char *buf, size_t len, double v, double step) {
    if (fabs(v) < step * 1e-9) v = 0; /* -1.3e-17 is 0 */
    snprintf(buf, len, "%g", v);
}

/* "1e-5" for 10^-5; plain for 0.01 .. 1000 */
static void decade_label(char *buf, size_t len, int e) {
    if (e >= -2 && e <= 3)
        snprintf(buf, len, "%g", pow(10, e));
    else
        snprintf(buf, len, "1e%d", e);
}

/* The viridis colour map (perceptually uniform, readable in grey), by 9 samples. */
static rgb viridis(double u) {
    static const uint8_t stops[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},
                                        {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                        {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
    if (!(u >= 0)) u = 0; /* NaN too */
    if (u > 1) u = 1;
    const double s = u * 8;
    const int i = s >= 8 ? 7 : (int)s;
    const double f = s - i;
    rgb c;
    c.r = (uint8_t)lround(stops[i][0] + f * (stops[i + 1][0] - stops[i][0]));
    c.g = (uint8_t)lround(stops[i][1] + f * (stops[i + 1][1] - stops[i][1]));
    c.b = (uint8_t)lround(stops[i][2] + f * (stops[i + 1][2] - stops[i][2]));
    return c;
}

static tg_status write_png(const char *what, const char *path, const canvas *c) {
    if (!stbi_write_png(path, c->w, c->h, 3, c->px, c->w * 3))
        return tg_status_set(TG_ERR_IO, "%s: cannot write the PNG file '%s'", what, path);
    return TG_OK;
}

/* =========================================================================================
 * Heatmaps
 * ======================================================================================= */
#define TEXT_SCALE 2 /* labels and ticks: the 7-pixel font doubled */

tg_status tg_heatmap_write_png(const char *path, const tg_heatmap_panel *panels, int n_panels,
                               const tg_heatmap_options *opts) {
    static const char *op = "tg_heatmap_write_png";
    const tg_heatmap_options none = {0};
    if (!opts) opts = &none;
    if (!path || !panels || n_panels < 1 || n_panels > 16)
        return tg_status_set(TG_ERR_ARGUMENT, "%s: needs a path and 1 to 16 panels", op);
    const int64_t C = panels[0].cols;
    int64_t max_rows = 0;
    for (int p = 0; p < n_panels; p++) {
        if (!panels[p].values || panels[p].rows < 1 || panels[p].cols != C || C < 1 ||
            panels[p].rows > 4096 || C > 4096)
            return tg_status_set(TG_ERR_ARGUMENT,
                                 "%s: panel %d has %lld x %lld values; every panel needs the "
                                 "same number of columns, 1 to 4096 rows and columns",
                                 op, p, (long long)panels[p].rows, (long long)panels[p].cols);
        if (panels[p].rows > max_rows) max_rows = panels[p].rows;
    }
    /* the colour scale: given, or the data's finite range */
    double vmin = opts->vmin, vmax = opts->vmax;
    if (!(vmin < vmax)) {
        vmin = INFINITY, vmax = -INFINITY;
        for (int p = 0; p < n_panels; p++)
            for (int64_t i = 0; i < panels[p].rows * C; i++) {
                const double v = panels[p].values[i];
                if (isfinite(v)) vmin = v < vmin ? v : vmin, vmax = v > vmax ? v : vmax;
            }
        if (!(vmin <= vmax)) vmin = 0, vmax = 1;
        if (vmin == vmax) vmin -= 0.5, vmax += 0.5;
    }

    /* layout: cells of cw × ch pixels; margins for the title, labels, ticks, colour bar */
    const int cw = (int)(C >= 800 ? 1 : 800 / C > 24 ? 24 : 800 / C);
    const int ch = (int)(max_rows >= 220 ? 1 : 220 / max_rows > 16 ? 16 : 220 / max_rows);
    const int left = 100, right = 150, top = opts->title ? 50 : 16, bottom = 70;
    const int panel_title = 28, panel_gap = 18;
    int height = top + bottom;
    for (int p = 0; p < n_panels; p++) height += panel_title + (int)panels[p].rows * ch + panel_gap;
    const int map_w = (int)C * cw;
    int width = left + map_w + right;
    if (opts->title && text_width(opts->title, 2) + 20 > width)
        width = text_width(opts->title, 2) + 20;
    canvas cv = canvas_new(width, height);
    if (opts->title) draw_title(&cv, opts->title);

    const double xstep = ceil(nice_step((double)C, 10));
    int y = top, maps_top = -1, maps_bottom = 0;
    for (int p = 0; p < n_panels; p++) {
        const tg_heatmap_panel *pn = &panels[p];
        if (pn->title) draw_text(&cv, left, y + 6, pn->title, TEXT_SCALE, BLACK, ALIGN_LEFT, false);
        y += panel_title;
        if (maps_top < 0) maps_top = y;
        for (int64_t r = 0; r < pn->rows; r++)
            for (int64_t t = 0; t < C; t++) {
                const double v = pn->values[r * C + t];
                const rgb color = isfinite(v) ? viridis((v - vmin) / (vmax - vmin)) : MISSING;
                fill_rect(&cv, left + (int)t * cw, y + (int)r * ch, left + (int)(t + 1) * cw,
                          y + (int)(r + 1) * ch, color);
            }
        const int map_h = (int)pn->rows * ch;
        frame_rect(&cv, left - 1, y - 1, left + map_w + 1, y + map_h + 1, GREY);
        /* y ticks: rows (units) at cell centres */
        const double ystep = ceil(nice_step((double)pn->rows, 4));
        for (double r = 0; r < (double)pn->rows; r += ystep) {
            const int yc = y + (int)r * ch + ch / 2;
            char lab[32];
            snprintf(lab, sizeof lab, "%.0f", r);
            fill_rect(&cv, left - 6, yc, left - 1, yc + 1, BLACK);
            draw_text(&cv, left - 9, yc - TEXT_HEIGHT(TEXT_SCALE) / 2, lab, TEXT_SCALE, BLACK,
                      ALIGN_RIGHT, false);
        }
        if (opts->y_label)
            draw_text(&cv, 12, y + map_h / 2, opts->y_label, TEXT_SCALE, BLACK, ALIGN_CENTER, true);
        /* x ticks under every panel, their labels under the last one */
        for (double t = 0; t < (double)C; t += xstep) {
            const int xc = left + (int)t * cw + cw / 2;
            fill_rect(&cv, xc, y + map_h + 1, xc + 1, y + map_h + 6, BLACK);
            if (p == n_panels - 1) {
                char lab[32];
                snprintf(lab, sizeof lab, "%.0f", t);
                draw_text(&cv, xc, y + map_h + 9, lab, TEXT_SCALE, BLACK, ALIGN_CENTER, false);
            }
        }
        y += map_h;
        maps_bottom = y;
        y += panel_gap;
    }
    if (opts->x_label)
        draw_text(&cv, left + map_w / 2, maps_bottom + 36, opts->x_label, TEXT_SCALE, BLACK,
                  ALIGN_CENTER, false);

    /* the colour bar: vmax at the top, vmin at the bottom, with ticks */
    const int bx0 = left + map_w + 24, bx1 = bx0 + 20, by0 = maps_top, by1 = maps_bottom;
    for (int yy = by0; yy < by1; yy++)
        fill_rect(&cv, bx0, yy, bx1, yy + 1,
                  viridis(1.0 - (double)(yy - by0) / (double)(by1 - by0 > 1 ? by1 - by0 - 1 : 1)));
    frame_rect(&cv, bx0 - 1, by0 - 1, bx1 + 1, by1 + 1, GREY);
    const double vstep = nice_step(vmax - vmin, 5);
    for (double v = ceil(vmin / vstep - 1e-9) * vstep; v <= vmax + vstep * 1e-9; v += vstep) {
        const int yv = by1 - 1 - (int)lround((v - vmin) / (vmax - vmin) * (by1 - by0 - 1));
        char lab[32];
        tick_label(lab, sizeof lab, v, vstep);
        fill_rect(&cv, bx1 + 1, yv, bx1 + 6, yv + 1, BLACK);
        draw_text(&cv, bx1 + 9, yv - TEXT_HEIGHT(TEXT_SCALE) / 2, lab, TEXT_SCALE, BLACK,
                  ALIGN_LEFT, false);
    }
    if (opts->scale_label)
        draw_text(&cv, left + map_w + right - 26, (by0 + by1) / 2, opts->scale_label, TEXT_SCALE,
                  BLACK, ALIGN_CENTER, true);

    const tg_status st = write_png(op, path, &cv);
    free(cv.px);
    return st;
}

/* =========================================================================================
 * Line charts
 * ======================================================================================= */
static const rgb PALETTE[8] = {{31, 119, 180},  {255, 127, 14}, {44, 160, 44},   {214, 39, 40},
                               {148, 103, 189}, {140, 86, 75},  {227, 119, 194}, {23, 190, 207}};

static bool point_ok(const tg_chart_series *s, int64_t i, bool log_y) {
    const double x = s->x ? s->x[i] : (double)i, y = s->y[i];
    return isfinite(x) && isfinite(y) && (!log_y || y > 0);
}

tg_status tg_line_chart_write_png(const char *path, const tg_chart_series *series, int n_series,
                                  const tg_chart_options *opts) {
    static const char *op = "tg_line_chart_write_png";
    const tg_chart_options none = {0};
    if (!opts) opts = &none;
    if (!path || !series || n_series < 1 || n_series > 8)
        return tg_status_set(TG_ERR_ARGUMENT, "%s: needs a path and 1 to 8 series", op);
    const int W = opts->width > 0 ? opts->width : 960, H = opts->height > 0 ? opts->height : 600;
    if (W < 200 || H < 150 || W > 8192 || H > 8192)
        return tg_status_set(TG_ERR_ARGUMENT, "%s: size %d x %d is outside 200x150 .. 8192x8192",
                             op, W, H);
    const bool log_y = opts->log_y;

    /* the data's range */
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int k = 0; k < n_series; k++) {
        if (!series[k].y || series[k].n < 0)
            return tg_status_set(TG_ERR_ARGUMENT, "%s: series %d has no values", op, k);
        for (int64_t i = 0; i < series[k].n; i++) {
            if (!point_ok(&series[k], i, log_y)) continue;
            const double x = series[k].x ? series[k].x[i] : (double)i;
            const double v = log_y ? log10(series[k].y[i]) : series[k].y[i];
            x0 = x < x0 ? x : x0, x1 = x > x1 ? x : x1;
            y0 = v < y0 ? v : y0, y1 = v > y1 ? v : y1;
        }
    }
    if (!(x0 <= x1)) x0 = 0, x1 = 1, y0 = 0, y1 = 1; /* nothing to draw: empty axes */
    if (x0 == x1) x0 -= 0.5, x1 += 0.5;
    if (log_y) { /* whole decades */
        y0 = floor(y0 + 1e-9), y1 = ceil(y1 - 1e-9);
        if (y0 == y1) y0 -= 1, y1 += 1;
    } else {
        if (y0 == y1) y0 -= 0.5, y1 += 0.5;
        const double pad = (y1 - y0) * 0.05;
        y0 -= pad, y1 += pad;
    }

    canvas cv = canvas_new(W, H);
    const int left = 110, right = 24, top = opts->title ? 56 : 20, bottom = 72;
    const int px0 = left, px1 = W - right, py0 = top, py1 = H - bottom; /* the plot area */
#define MAP_X(x) (px0 + ((x)-x0) / (x1 - x0) * (px1 - px0 - 1))
#define MAP_Y(v) (py1 - 1 - ((v)-y0) / (y1 - y0) * (py1 - py0 - 1))
    if (opts->title) draw_title(&cv, opts->title);

    /* y ticks and grid: decades on a log scale (every k-th if there are many) */
    if (log_y) {
        const int decades = (int)(y1 - y0), every = decades > 10 ? (decades + 9) / 10 : 1;
        for (int e = (int)y0; e <= (int)y1; e += every) {
            const int yy = (int)lround(MAP_Y((double)e));
            char lab[32];
            decade_label(lab, sizeof lab, e);
            fill_rect(&cv, px0, yy, px1, yy + 1, GRID);
            fill_rect(&cv, px0 - 6, yy, px0, yy + 1, BLACK);
            draw_text(&cv, px0 - 9, yy - TEXT_HEIGHT(TEXT_SCALE) / 2, lab, TEXT_SCALE, BLACK,
                      ALIGN_RIGHT, false);
        }
    } else {
        const double step = nice_step(y1 - y0, 6);
        for (double v = ceil(y0 / step) * step; v <= y1; v += step) {
            const int yy = (int)lround(MAP_Y(v));
            char lab[32];
            tick_label(lab, sizeof lab, v, step);
            fill_rect(&cv, px0, yy, px1, yy + 1, GRID);
            fill_rect(&cv, px0 - 6, yy, px0, yy + 1, BLACK);
            draw_text(&cv, px0 - 9, yy - TEXT_HEIGHT(TEXT_SCALE) / 2, lab, TEXT_SCALE, BLACK,
                      ALIGN_RIGHT, false);
        }
    }
    /* x ticks and grid */
    const double xstep = nice_step(x1 - x0, 8);
    for (double x = ceil(x0 / xstep - 1e-9) * xstep; x <= x1 + xstep * 1e-9; x += xstep) {
        const int xx = (int)lround(MAP_X(x));
        char lab[32];
        tick_label(lab, sizeof lab, x, xstep);
        fill_rect(&cv, xx, py0, xx + 1, py1, GRID);
        fill_rect(&cv, xx, py1, xx + 1, py1 + 6, BLACK);
        draw_text(&cv, xx, py1 + 10, lab, TEXT_SCALE, BLACK, ALIGN_CENTER, false);
    }
    frame_rect(&cv, px0 - 1, py0 - 1, px1 + 1, py1 + 1, BLACK);
    if (opts->x_label)
        draw_text(&cv, (px0 + px1) / 2, H - 30, opts->x_label, TEXT_SCALE, BLACK, ALIGN_CENTER,
                  false);
    if (opts->y_label)
        draw_text(&cv, 14, (py0 + py1) / 2, opts->y_label, TEXT_SCALE, BLACK, ALIGN_CENTER, true);

    /* the lines: consecutive good points joined; markers where the points are few */
    for (int k = 0; k < n_series; k++) {
        const tg_chart_series *s = &series[k];
        const rgb color = PALETTE[k];
        bool have_prev = false;
        double qx = 0, qy = 0;
        for (int64_t i = 0; i < s->n; i++) {
            if (!point_ok(s, i, log_y)) {
                have_prev = false;
                continue;
            }
            const double x = s->x ? s->x[i] : (double)i;
            const double v = log_y ? log10(s->y[i]) : s->y[i];
            const double X = MAP_X(x), Y = MAP_Y(v);
            if (have_prev) draw_line(&cv, qx, qy, X, Y, 3, color);
            if (s->n <= 40) fill_rect(&cv, (int)X - 3, (int)Y - 3, (int)X + 4, (int)Y + 4, color);
            qx = X, qy = Y, have_prev = true;
        }
    }

    /* the legend, inside the plot */
    int lw = 0;
    for (int k = 0; k < n_series; k++) {
        const int w = text_width(series[k].label ? series[k].label : "", TEXT_SCALE);
        lw = w > lw ? w : lw;
    }
    /* of the four corners, the one whose box covers the fewest data points */
    const int row = 24, bw = lw + 60, bh = 10 + row * n_series;
    int best = 0;
    int64_t best_count = -1;
    for (int corner = 0; corner < 4; corner++) {
        const int bx0 = corner & 1 ? px0 + 10 : px1 - 10 - bw,
                  by0 = corner & 2 ? py1 - 10 - bh : py0 + 10;
        int64_t count = 0;
        for (int k = 0; k < n_series; k++)
            for (int64_t i = 0; i < series[k].n; i++) {
                if (!point_ok(&series[k], i, log_y)) continue;
                const double x = series[k].x ? series[k].x[i] : (double)i;
                const double v = log_y ? log10(series[k].y[i]) : series[k].y[i];
                const double X = MAP_X(x), Y = MAP_Y(v);
                count += X >= bx0 - 4 && X <= bx0 + bw + 4 && Y >= by0 - 4 && Y <= by0 + bh + 4;
            }
        if (best_count < 0 || count < best_count) best = corner, best_count = count;
    }
    const int lx0 = best & 1 ? px0 + 10 : px1 - 10 - bw, lx1 = lx0 + bw;
    const int ly0 = best & 2 ? py1 - 10 - bh : py0 + 10, ly1 = ly0 + bh;
    fill_rect(&cv, lx0, ly0, lx1, ly1, WHITE);
    frame_rect(&cv, lx0, ly0, lx1, ly1, GREY);
    for (int k = 0; k < n_series; k++) {
        const int yc = ly0 + 5 + row * k + row / 2;
        draw_line(&cv, lx0 + 10, yc, lx0 + 40, yc, 3, PALETTE[k]);
        draw_text(&cv, lx0 + 50, yc - TEXT_HEIGHT(TEXT_SCALE) / 2,
                  series[k].label ? series[k].label : "", TEXT_SCALE, BLACK, ALIGN_LEFT, false);
    }

#undef MAP_X
#undef MAP_Y
    const tg_status st = write_png(op, path, &cv);
    free(cv.px);
    return st;
}

/* =========================================================================================
 * Gate traces
 * ======================================================================================= */
tg_gate_trace *tg_gate_trace_new(tg_cell_kind kind, int64_t steps, int64_t hidden,
                                 int64_t batch_row) {
    if (steps < 1 || hidden < 1 || batch_row < -1)
        tg_fail("tg_gate_trace_new: steps %lld and hidden %lld must be positive, batch_row %lld "
                "a row index or -1",
                (long long)steps, (long long)hidden, (long long)batch_row);
    tg_gate_trace *tr = tg_xcalloc(1, sizeof *tr);
    tr->kind = kind, tr->steps = steps, tr->hidden = hidden, tr->batch_row = batch_row;
    switch (kind) {
    case TG_CELL_GRU:
    case TG_CELL_GRU_CHO:
        tr->n_gates = 2, tr->gate_names[0] = "z", tr->gate_names[1] = "r";
        break;
    case TG_CELL_LSTM:
        tr->n_gates = 3, tr->gate_names[0] = "i", tr->gate_names[1] = "f", tr->gate_names[2] = "o";
        break;
    case TG_CELL_RNN_TANH:
    case TG_CELL_RNN_RELU:
        tr->n_gates = 0;
        break;
    default:
        tg_fail("tg_gate_trace_new: unknown cell kind %d", (int)kind);
    }
    tr->gates =
        tg_xcalloc((size_t)((tr->n_gates ? tr->n_gates : 1) * hidden * steps), sizeof(double));
    tr->grad_norm = tg_xmalloc((size_t)steps * sizeof(double));
    tr->grad = tg_xcalloc((size_t)(hidden * steps), sizeof(double));
    tr->h = tg_xcalloc((size_t)steps, sizeof *tr->h);
    if (kind == TG_CELL_LSTM) {
        tr->cell_grad_norm = tg_xmalloc((size_t)steps * sizeof(double));
        tr->c = tg_xcalloc((size_t)steps, sizeof *tr->c);
    }
    for (int64_t t = 0; t < steps; t++) {
        tr->grad_norm[t] = NAN;
        if (tr->cell_grad_norm) tr->cell_grad_norm[t] = NAN;
    }
    return tr;
}

void tg_gate_trace_free(tg_gate_trace *tr) {
    if (!tr) return;
    free(tr->gates), free(tr->grad_norm), free(tr->cell_grad_norm), free(tr->grad);
    free(tr->h), free(tr->c);
    free(tr);
}

/* The tensor "<gate>_<t><suffix>" of the tape, checked to be (B, hidden) with the traced row. */
static tg_tensor *find_step(const tg_gate_trace *tr, const tg_tape *tape, const char *gate,
                            int64_t t, const char *suffix) {
    char name[TG_NAME_MAX], d[160];
    snprintf(name, sizeof name, "%s_%lld%s", gate, (long long)t, suffix ? suffix : "");
    tg_tensor *x = tg_rnn_find_named(tape, name);
    if (!x)
        tg_fail("tg_gate_trace_capture: the tape has no tensor named '%s' (trace a composite "
                "forward: tg_rnn_sequence_composite or options.exec = TG_RNN_COMPOSITE; is the "
                "suffix right?)",
                name);
    if (x->ndim != 2 || x->shape[1] != tr->hidden || x->shape[0] <= tr->batch_row)
        tg_fail("tg_gate_trace_capture: '%s' is %s, expected (batch, %lld) with batch > %lld", name,
                tg_tensor_describe(x, d, sizeof d), (long long)tr->hidden,
                (long long)tr->batch_row);
    return x;
}

void tg_gate_trace_capture(tg_gate_trace *tr, const tg_tape *tape, const char *suffix) {
    const int64_t T = tr->steps, Hd = tr->hidden;
    for (int64_t t = 0; t < T; t++) {
        for (int g = 0; g < tr->n_gates; g++) {
            const tg_tensor *x = find_step(tr, tape, tr->gate_names[g], t, suffix);
            const int64_t B = x->shape[0];
            for (int64_t j = 0; j < Hd; j++) {
                double v = 0;
                if (tr->batch_row >= 0)
                    v = (double)x->data[tr->batch_row * Hd + j];
                else {
                    for (int64_t b = 0; b < B; b++) v += (double)x->data[b * Hd + j];
                    v /= (double)B;
                }
                tr->gates[((int64_t)g * Hd + j) * T + t] = v;
            }
        }
        tr->h[t] = find_step(tr, tape, "h", t, suffix);
        tg_tensor_retain_grad(tr->h[t]);
        if (tr->c) {
            tr->c[t] = find_step(tr, tape, "c", t, suffix);
            tg_tensor_retain_grad(tr->c[t]);
        }
        tr->grad_norm[t] = NAN;
        if (tr->cell_grad_norm) tr->cell_grad_norm[t] = NAN;
    }
}

/* ‖g‖ over the traced row (or all rows); per-unit root sums of squares into `unit` if given. */
static double grad_norm_of(const tg_gate_trace *tr, const tg_tensor *x, double *unit, int64_t t) {
    const int64_t Hd = tr->hidden, B = x->shape[0];
    const int64_t b0 = tr->batch_row >= 0 ? tr->batch_row : 0;
    const int64_t b1 = tr->batch_row >= 0 ? tr->batch_row + 1 : B;
    double total = 0;
    for (int64_t j = 0; j < Hd; j++) {
        double ss = 0;
        if (x->grad)
            for (int64_t b = b0; b < b1; b++)
                ss += (double)x->grad[b * Hd + j] * (double)x->grad[b * Hd + j];
        if (unit) unit[j * tr->steps + t] = sqrt(ss);
        total += ss;
    }
    return sqrt(total);
}

void tg_gate_trace_read_grads(tg_gate_trace *tr) {
    for (int64_t t = 0; t < tr->steps; t++) {
        if (!tr->h[t])
            tg_fail("tg_gate_trace_read_grads: step %lld was not captured (call "
                    "tg_gate_trace_capture after the forward, before backward)",
                    (long long)t);
        tr->grad_norm[t] = grad_norm_of(tr, tr->h[t], tr->grad, t);
        if (tr->c) tr->cell_grad_norm[t] = grad_norm_of(tr, tr->c[t], NULL, t);
    }
}

static const char *gate_title(const char *g) {
    if (!strcmp(g, "z")) return "z: update gate (1 = keep h_{t-1})";
    if (!strcmp(g, "r")) return "r: reset gate";
    if (!strcmp(g, "i")) return "i: input gate";
    if (!strcmp(g, "f")) return "f: forget gate (1 = keep c_{t-1})";
    if (!strcmp(g, "o")) return "o: output gate";
    return g;
}

tg_status tg_gate_trace_write_heatmap(const tg_gate_trace *tr, const char *path,
                                      const char *title) {
    if (tr->n_gates == 0)
        return tg_status_set(TG_ERR_ARGUMENT, "tg_gate_trace_write_heatmap: a %s cell has no gates",
                             tg_cell_kind_name(tr->kind));
    tg_heatmap_panel panels[3];
    for (int g = 0; g < tr->n_gates; g++)
        panels[g] = (tg_heatmap_panel){gate_title(tr->gate_names[g]),
                                       tr->gates + (int64_t)g * tr->hidden * tr->steps, tr->hidden,
                                       tr->steps};
    const tg_heatmap_options o = {title,
                                  "time step t",
                                  "hidden unit",
                                  tr->batch_row >= 0 ? "gate activation" : "mean activation",
                                  0,
                                  1};
    return tg_heatmap_write_png(path, panels, tr->n_gates, &o);
}

tg_status tg_gate_trace_write_grad_chart(const tg_gate_trace *tr, const char *path,
                                         const char *title) {
    const tg_chart_series s[2] = {{"|dL/dh_t|", NULL, tr->grad_norm, tr->steps},
                                  {"|dL/dc_t|", NULL, tr->cell_grad_norm, tr->steps}};
    const tg_chart_options o = {title, "time step t", "gradient norm (log scale)", true, 0, 0};
    return tg_line_chart_write_png(path, s, tr->cell_grad_norm ? 2 : 1, &o);
}
