/* viz/raster.h — what the picture writers share (internal, not installed): an RGB canvas
 * with rectangles and lines, written as PNG (canvas.c); text drawn with a bitmap font
 * (font.c); the steps and labels of axis ticks (axes.c).
 *
 * Coordinates are pixels, x to the right and y downwards from the top-left corner; drawing
 * outside the canvas is clipped, never an error. */
#ifndef TAPEGRAD_VIZ_RASTER_H
#define TAPEGRAD_VIZ_RASTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tapegrad/base.h"

typedef struct viz_rgb {
    uint8_t r, g, b;
} viz_rgb;

#define VIZ_WHITE   ((viz_rgb){255, 255, 255})
#define VIZ_BLACK   ((viz_rgb){0, 0, 0})
#define VIZ_GREY    ((viz_rgb){120, 120, 120}) /* frames */
#define VIZ_GRID    ((viz_rgb){228, 228, 228}) /* grid lines behind a chart */
#define VIZ_MISSING ((viz_rgb){200, 200, 200}) /* a heatmap cell that is not a number */

/* ---- canvas.c ---- */

typedef struct viz_canvas {
    int w, h;
    uint8_t *px; /* w·h·3 bytes, row-major, top row first */
} viz_canvas;

/* A white canvas of w × h pixels (free its px with free). */
viz_canvas viz_canvas_new(int w, int h);
/* Fills [x0, x1) × [y0, y1). */
void viz_fill_rect(viz_canvas *c, int x0, int y0, int x1, int y1, viz_rgb color);
/* The outline of [x0, x1) × [y0, y1), one pixel wide. */
void viz_frame_rect(viz_canvas *c, int x0, int y0, int x1, int y1, viz_rgb color);
/* A line `width` pixels thick from (x0, y0) to (x1, y1). */
void viz_draw_line(viz_canvas *c, double x0, double y0, double x1, double y1, int width,
                   viz_rgb color);
/* Writes the canvas as a PNG file; `what` (the public function) starts the error message. */
tg_status viz_canvas_write_png(const viz_canvas *c, const char *what, const char *path);

/* ---- font.c ---- */

#define VIZ_TEXT_SCALE     2         /* labels and ticks: the 7-pixel font doubled */
#define VIZ_TEXT_HEIGHT(s) (7 * (s)) /* height of a line of capitals at scale s */

typedef enum viz_align { VIZ_ALIGN_LEFT, VIZ_ALIGN_CENTER, VIZ_ALIGN_RIGHT } viz_align;

/* Width in pixels of one line of text at integer `scale`. */
int viz_text_width(const char *text, int scale);
/* Draws text with its top at y, aligned on x; `vertical` turns it 90° anticlockwise
 * (reading upwards), aligned on y along its length and with its top at x. Characters
 * outside printable ASCII are drawn as '?'. */
void viz_draw_text(viz_canvas *c, int x, int y, const char *text, int scale, viz_rgb color,
                   viz_align align, bool vertical);
/* A title centred at the top: large if it fits the width, smaller if not. */
void viz_draw_title(viz_canvas *c, const char *title);

/* ---- axes.c ---- */

/* A step of 1, 2 or 5 × 10^k that cuts `range` into about `target` pieces. */
double viz_nice_step(double range, int target);
/* The label of tick value v on an axis of ticks `step` apart ("%g", with -0 and rounding
 * noise shown as 0). */
void viz_tick_label(char *buf, size_t len, double v, double step);
/* The label of the decade 10^e on a log axis: plain for 0.01 .. 1000, "1e-5" beyond. */
void viz_decade_label(char *buf, size_t len, int e);

#endif
