/* viz/axes.c — where the ticks of an axis go and what they say. Ticks at round numbers
 * (1, 2 or 5 times a power of ten) read at a glance; a log axis gets whole decades. */
#include "raster.h"

#include <math.h>
#include <stdio.h>

double viz_nice_step(double range, int target) {
    if (!(range > 0)) return 1;
    const double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

void viz_tick_label(char *buf, size_t len, double v, double step) {
    if (fabs(v) < step * 1e-9) v = 0; /* -1.3e-17 is 0 */
    snprintf(buf, len, "%g", v);
}

void viz_decade_label(char *buf, size_t len, int e) {
    if (e >= -2 && e <= 3)
        snprintf(buf, len, "%g", pow(10, e));
    else
        snprintf(buf, len, "1e%d", e);
}
