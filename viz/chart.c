/* viz/chart.c — line charts: series of points joined by lines on linear or log10 y axes,
 * with round-number ticks, a grid, axis labels and a legend placed where it hides the
 * fewest points. */
#include "tapegrad/viz.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "raster.h"

/* Eight colours that tell lines apart: matplotlib's "tab10" without its grey and olive. */
static const viz_rgb PALETTE[8] = {{31, 119, 180},  {255, 127, 14},  {44, 160, 44},
                                   {214, 39, 40},   {148, 103, 189}, {140, 86, 75},
                                   {227, 119, 194}, {23, 190, 207}};

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

    viz_canvas cv = viz_canvas_new(W, H);
    const int left = 110, right = 24, top = opts->title ? 56 : 20, bottom = 72;
    const int px0 = left, px1 = W - right, py0 = top, py1 = H - bottom; /* the plot area */
#define MAP_X(x) (px0 + ((x)-x0) / (x1 - x0) * (px1 - px0 - 1))
#define MAP_Y(v) (py1 - 1 - ((v)-y0) / (y1 - y0) * (py1 - py0 - 1))
    if (opts->title) viz_draw_title(&cv, opts->title);

    /* y ticks and grid: decades on a log scale (every k-th if there are many) */
    if (log_y) {
        const int decades = (int)(y1 - y0), every = decades > 10 ? (decades + 9) / 10 : 1;
        for (int e = (int)y0; e <= (int)y1; e += every) {
            const int yy = (int)lround(MAP_Y((double)e));
            char lab[32];
            viz_decade_label(lab, sizeof lab, e);
            viz_fill_rect(&cv, px0, yy, px1, yy + 1, VIZ_GRID);
            viz_fill_rect(&cv, px0 - 6, yy, px0, yy + 1, VIZ_BLACK);
            viz_draw_text(&cv, px0 - 9, yy - VIZ_TEXT_HEIGHT(VIZ_TEXT_SCALE) / 2, lab,
                          VIZ_TEXT_SCALE, VIZ_BLACK, VIZ_ALIGN_RIGHT, false);
        }
    } else {
        const double step = viz_nice_step(y1 - y0, 6);
        for (double v = ceil(y0 / step) * step; v <= y1; v += step) {
            const int yy = (int)lround(MAP_Y(v));
            char lab[32];
            viz_tick_label(lab, sizeof lab, v, step);
            viz_fill_rect(&cv, px0, yy, px1, yy + 1, VIZ_GRID);
            viz_fill_rect(&cv, px0 - 6, yy, px0, yy + 1, VIZ_BLACK);
            viz_draw_text(&cv, px0 - 9, yy - VIZ_TEXT_HEIGHT(VIZ_TEXT_SCALE) / 2, lab,
                          VIZ_TEXT_SCALE, VIZ_BLACK, VIZ_ALIGN_RIGHT, false);
        }
    }
    /* x ticks and grid */
    const double xstep = viz_nice_step(x1 - x0, 8);
    for (double x = ceil(x0 / xstep - 1e-9) * xstep; x <= x1 + xstep * 1e-9; x += xstep) {
        const int xx = (int)lround(MAP_X(x));
        char lab[32];
        viz_tick_label(lab, sizeof lab, x, xstep);
        viz_fill_rect(&cv, xx, py0, xx + 1, py1, VIZ_GRID);
        viz_fill_rect(&cv, xx, py1, xx + 1, py1 + 6, VIZ_BLACK);
        viz_draw_text(&cv, xx, py1 + 10, lab, VIZ_TEXT_SCALE, VIZ_BLACK, VIZ_ALIGN_CENTER, false);
    }
    viz_frame_rect(&cv, px0 - 1, py0 - 1, px1 + 1, py1 + 1, VIZ_BLACK);
    if (opts->x_label)
        viz_draw_text(&cv, (px0 + px1) / 2, H - 30, opts->x_label, VIZ_TEXT_SCALE, VIZ_BLACK,
                      VIZ_ALIGN_CENTER, false);
    if (opts->y_label)
        viz_draw_text(&cv, 14, (py0 + py1) / 2, opts->y_label, VIZ_TEXT_SCALE, VIZ_BLACK,
                      VIZ_ALIGN_CENTER, true);

    /* the lines: consecutive good points joined; markers where the points are few */
    for (int k = 0; k < n_series; k++) {
        const tg_chart_series *s = &series[k];
        const viz_rgb color = PALETTE[k];
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
            if (have_prev) viz_draw_line(&cv, qx, qy, X, Y, 3, color);
            if (s->n <= 40)
                viz_fill_rect(&cv, (int)X - 3, (int)Y - 3, (int)X + 4, (int)Y + 4, color);
            qx = X, qy = Y, have_prev = true;
        }
    }

    /* the legend, inside the plot */
    int lw = 0;
    for (int k = 0; k < n_series; k++) {
        const int w = viz_text_width(series[k].label ? series[k].label : "", VIZ_TEXT_SCALE);
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
    viz_fill_rect(&cv, lx0, ly0, lx1, ly1, VIZ_WHITE);
    viz_frame_rect(&cv, lx0, ly0, lx1, ly1, VIZ_GREY);
    for (int k = 0; k < n_series; k++) {
        const int yc = ly0 + 5 + row * k + row / 2;
        viz_draw_line(&cv, lx0 + 10, yc, lx0 + 40, yc, 3, PALETTE[k]);
        viz_draw_text(&cv, lx0 + 50, yc - VIZ_TEXT_HEIGHT(VIZ_TEXT_SCALE) / 2,
                      series[k].label ? series[k].label : "", VIZ_TEXT_SCALE, VIZ_BLACK,
                      VIZ_ALIGN_LEFT, false);
    }

#undef MAP_X
#undef MAP_Y
    const tg_status st = viz_canvas_write_png(&cv, op, path);
    free(cv.px);
    return st;
}
