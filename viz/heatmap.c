/* viz/heatmap.c — heatmaps: panels of cells coloured by value, stacked, sharing one colour
 * scale drawn as a bar with ticks. Cells are whole pixels (up to 24 × 16 at small sizes),
 * so a panel of gates over time reads as units × steps without smoothing. */
#include "tapegrad/viz.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "raster.h"

/* The viridis colour map (perceptually uniform, readable in grey), by 9 samples. */
static viz_rgb viridis(double u) {
    static const uint8_t stops[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},
                                        {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                        {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
    if (!(u >= 0)) u = 0; /* NaN too */
    if (u > 1) u = 1;
    const double s = u * 8;
    const int i = s >= 8 ? 7 : (int)s;
    const double f = s - i;
    viz_rgb c;
    c.r = (uint8_t)lround(stops[i][0] + f * (stops[i + 1][0] - stops[i][0]));
    c.g = (uint8_t)lround(stops[i][1] + f * (stops[i + 1][1] - stops[i][1]));
    c.b = (uint8_t)lround(stops[i][2] + f * (stops[i + 1][2] - stops[i][2]));
    return c;
}

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
    if (opts->title && viz_text_width(opts->title, 2) + 20 > width)
        width = viz_text_width(opts->title, 2) + 20;
    viz_canvas cv = viz_canvas_new(width, height);
    if (opts->title) viz_draw_title(&cv, opts->title);

    const double xstep = ceil(viz_nice_step((double)C, 10));
    int y = top, maps_top = -1, maps_bottom = 0;
    for (int p = 0; p < n_panels; p++) {
        const tg_heatmap_panel *pn = &panels[p];
        if (pn->title)
            viz_draw_text(&cv, left, y + 6, pn->title, VIZ_TEXT_SCALE, VIZ_BLACK, VIZ_ALIGN_LEFT,
                          false);
        y += panel_title;
        if (maps_top < 0) maps_top = y;
        for (int64_t r = 0; r < pn->rows; r++)
            for (int64_t t = 0; t < C; t++) {
                const double v = pn->values[r * C + t];
                const viz_rgb color =
                    isfinite(v) ? viridis((v - vmin) / (vmax - vmin)) : VIZ_MISSING;
                viz_fill_rect(&cv, left + (int)t * cw, y + (int)r * ch, left + (int)(t + 1) * cw,
                              y + (int)(r + 1) * ch, color);
            }
        const int map_h = (int)pn->rows * ch;
        viz_frame_rect(&cv, left - 1, y - 1, left + map_w + 1, y + map_h + 1, VIZ_GREY);
        /* y ticks: rows (units) at cell centres */
        const double ystep = ceil(viz_nice_step((double)pn->rows, 4));
        for (double r = 0; r < (double)pn->rows; r += ystep) {
            const int yc = y + (int)r * ch + ch / 2;
            char lab[32];
            snprintf(lab, sizeof lab, "%.0f", r);
            viz_fill_rect(&cv, left - 6, yc, left - 1, yc + 1, VIZ_BLACK);
            viz_draw_text(&cv, left - 9, yc - VIZ_TEXT_HEIGHT(VIZ_TEXT_SCALE) / 2, lab,
                          VIZ_TEXT_SCALE, VIZ_BLACK, VIZ_ALIGN_RIGHT, false);
        }
        if (opts->y_label)
            viz_draw_text(&cv, 12, y + map_h / 2, opts->y_label, VIZ_TEXT_SCALE, VIZ_BLACK,
                          VIZ_ALIGN_CENTER, true);
        /* x ticks under every panel, their labels under the last one */
        for (double t = 0; t < (double)C; t += xstep) {
            const int xc = left + (int)t * cw + cw / 2;
            viz_fill_rect(&cv, xc, y + map_h + 1, xc + 1, y + map_h + 6, VIZ_BLACK);
            if (p == n_panels - 1) {
                char lab[32];
                snprintf(lab, sizeof lab, "%.0f", t);
                viz_draw_text(&cv, xc, y + map_h + 9, lab, VIZ_TEXT_SCALE, VIZ_BLACK,
                              VIZ_ALIGN_CENTER, false);
            }
        }
        y += map_h;
        maps_bottom = y;
        y += panel_gap;
    }
    if (opts->x_label)
        viz_draw_text(&cv, left + map_w / 2, maps_bottom + 36, opts->x_label, VIZ_TEXT_SCALE,
                      VIZ_BLACK, VIZ_ALIGN_CENTER, false);

    /* the colour bar: vmax at the top, vmin at the bottom, with ticks */
    const int bx0 = left + map_w + 24, bx1 = bx0 + 20, by0 = maps_top, by1 = maps_bottom;
    for (int yy = by0; yy < by1; yy++)
        viz_fill_rect(
            &cv, bx0, yy, bx1, yy + 1,
            viridis(1.0 - (double)(yy - by0) / (double)(by1 - by0 > 1 ? by1 - by0 - 1 : 1)));
    viz_frame_rect(&cv, bx0 - 1, by0 - 1, bx1 + 1, by1 + 1, VIZ_GREY);
    const double vstep = viz_nice_step(vmax - vmin, 5);
    for (double v = ceil(vmin / vstep - 1e-9) * vstep; v <= vmax + vstep * 1e-9; v += vstep) {
        const int yv = by1 - 1 - (int)lround((v - vmin) / (vmax - vmin) * (by1 - by0 - 1));
        char lab[32];
        viz_tick_label(lab, sizeof lab, v, vstep);
        viz_fill_rect(&cv, bx1 + 1, yv, bx1 + 6, yv + 1, VIZ_BLACK);
        viz_draw_text(&cv, bx1 + 9, yv - VIZ_TEXT_HEIGHT(VIZ_TEXT_SCALE) / 2, lab, VIZ_TEXT_SCALE,
                      VIZ_BLACK, VIZ_ALIGN_LEFT, false);
    }
    if (opts->scale_label)
        viz_draw_text(&cv, left + map_w + right - 26, (by0 + by1) / 2, opts->scale_label,
                      VIZ_TEXT_SCALE, VIZ_BLACK, VIZ_ALIGN_CENTER, true);

    const tg_status st = viz_canvas_write_png(&cv, op, path);
    free(cv.px);
    return st;
}
