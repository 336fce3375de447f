/* viz/font.c — labels. stb_easy_font turns a string into axis-aligned quads (it is meant
 * for 3-D APIs, one vertex buffer per string); we fill those quads on the canvas ourselves,
 * scaled up by an integer factor, and turned 90° for vertical axis labels. */
#include "raster.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* stb_easy_font is all static functions (no separate implementation, not in libstb); we use
 * some of them, and its initialisers trip -Wmissing-braces: the warnings are about the header. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-braces"
#include <stb_easy_font.h>
#pragma GCC diagnostic pop

/* stb_easy_font indexes a table by (char − 32) and knows printable ASCII only: anything
 * else becomes '?'. The copy is also what its non-const `char *` parameters want. */
static void text_sanitize(char *dst, size_t len, const char *src) {
    size_t i = 0;
    for (; src && src[i] && i + 1 < len; i++)
        dst[i] = (src[i] >= 32 && src[i] < 127) || src[i] == '\n' ? src[i] : '?';
    dst[i] = '\0';
}

int viz_text_width(const char *text, int scale) {
    char buf[256];
    text_sanitize(buf, sizeof buf, text);
    return stb_easy_font_width(buf) * scale;
}

void viz_draw_text(viz_canvas *c, int x, int y, const char *text, int scale, viz_rgb color,
                   viz_align align, bool vertical) {
    char buf[256];
    text_sanitize(buf, sizeof buf, text);
    if (!buf[0]) return;
    const int w = stb_easy_font_width(buf) * scale;
    const int shift = align == VIZ_ALIGN_CENTER ? w / 2 : align == VIZ_ALIGN_RIGHT ? w : 0;
    static const int vertex_bytes = 16;                /* x, y, z floats and 4 colour bytes */
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
            viz_fill_rect(c, x + a0, y + b0, x + a1, y + b1, color);
        else
            viz_fill_rect(c, x + b0, y - a1, x + b1, y - a0, color); /* (u, v) -> (x + v, y − u) */
    }
    free(vb);
}

void viz_draw_title(viz_canvas *c, const char *title) {
    const int scale = viz_text_width(title, 3) + 20 <= c->w ? 3 : 2;
    viz_draw_text(c, c->w / 2, scale == 3 ? 14 : 18, title, scale, VIZ_BLACK, VIZ_ALIGN_CENTER,
                  false);
}
