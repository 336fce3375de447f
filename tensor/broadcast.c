/* Broadcasting: shapes, iteration plans and the sum-back-to-shape reduction
 * (see tapegrad/broadcast.h). */
#include "tapegrad/broadcast.h"
#include "tapegrad/kernels.h"

#include "vmath.h" /* TG_SIMD */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Below this many elements a kernel runs on one thread. */
#define PAR_MIN ((int64_t)1 << 15)
/* Columns summed at once (doubles on the stack) when reducing over leading dims. */
#define COL_BLOCK 256

bool tg_broadcast_shapes(int n, const int *ndims, const int64_t *const *shapes, int *out_ndim,
                         int64_t *out_shape, int *bad_dim) {
    if (n > 0) {
        TG_CHECK_ARG(ndims);
        TG_CHECK_ARG(shapes);
    }
    TG_CHECK_ARG(out_ndim);
    TG_CHECK_ARG(out_shape);
    int nd = 0;
    for (int k = 0; k < n; k++) nd = ndims[k] > nd ? ndims[k] : nd;
    for (int j = 1; j <= nd; j++) { /* j-th dim from the end */
        int64_t size = 1;
        for (int k = 0; k < n; k++) {
            if (ndims[k] < j) continue;
            const int64_t s = shapes[k][ndims[k] - j];
            if (s == 1) continue;
            if (size != 1 && size != s) {
                if (bad_dim) *bad_dim = -j;
                return false;
            }
            size = s;
        }
        out_shape[nd - j] = size;
    }
    *out_ndim = nd;
    return true;
}

int tg_broadcast_tensors(const char *op, int n, const tg_tensor *const *ts, int64_t *out_shape) {
    TG_CHECK_ARG(op);
    TG_CHECK_ARG(ts);
    TG_CHECK_ARG(out_shape);
    for (int k = 0; k < n; k++)
        if (!ts[k]) tg_fail("%s: operand %d of the broadcast is NULL", op, k);
    if (n < 1 || n > TG_BCAST_MAX_OPS) tg_fail("%s: %d operands to broadcast", op, n);
    int ndims[TG_BCAST_MAX_OPS], nd = 0, bad = 0;
    const int64_t *shapes[TG_BCAST_MAX_OPS];
    for (int k = 0; k < n; k++) {
        ndims[k] = ts[k]->ndim;
        shapes[k] = ts[k]->shape;
    }
    if (tg_broadcast_shapes(n, ndims, shapes, &nd, out_shape, &bad)) return nd;

    /* "shapes A and B" / "shapes A, B and C", then the two sizes that clash */
    char msg[768], desc[160];
    size_t used = (size_t)snprintf(msg, sizeof msg, "shapes ");
    for (int k = 0; k < n && used < sizeof msg; k++)
        used += (size_t)snprintf(msg + used, sizeof msg - used, "%s%s",
                                 k == 0 ? "" : (k == n - 1 ? " and " : ", "),
                                 tg_tensor_describe(ts[k], desc, sizeof desc));
    int64_t first = 1, second = 1;
    for (int k = 0; k < n; k++) {
        if (ts[k]->ndim < -bad) continue;
        const int64_t s = ts[k]->shape[ts[k]->ndim + bad];
        if (s == 1) continue;
        if (first == 1)
            first = s;
        else if (s != first && second == 1)
            second = s;
    }
    tg_fail("%s: %s cannot be broadcast (size %" PRId64 " vs %" PRId64 " at dim %d)", op, msg,
            first, second, bad);
}

bool tg_broadcast_fits(int from_ndim, const int64_t *from, int to_ndim, const int64_t *to) {
    if (from_ndim > 0) TG_CHECK_ARG(from);
    if (to_ndim > 0) TG_CHECK_ARG(to);
    if (from_ndim > to_ndim) return false;
    for (int j = 1; j <= from_ndim; j++) {
        const int64_t s = from[from_ndim - j];
        if (s != 1 && s != to[to_ndim - j]) return false;
    }
    return true;
}

void tg_bcast_init(tg_bcast *p, int out_ndim, const int64_t *out_shape, int n, const int *ndims,
                   const int64_t *const *shapes) {
    TG_CHECK_ARG(p);
    TG_CHECK_ARG(ndims);
    TG_CHECK_ARG(shapes);
    if (out_ndim > 0) TG_CHECK_ARG(out_shape);
    if (n < 1 || n > TG_BCAST_MAX_OPS)
        tg_fail("tg_bcast_init: %d operands (1 to %d supported)", n, TG_BCAST_MAX_OPS);
    for (int k = 0; k < n; k++)
        if (!tg_broadcast_fits(ndims[k], shapes[k], out_ndim, out_shape)) {
            char s1[96], s2[96];
            tg_fail("tg_bcast_init: shape %s does not broadcast to %s",
                    tg_shape_format(ndims[k], shapes[k], s1, sizeof s1),
                    tg_shape_format(out_ndim, out_shape, s2, sizeof s2));
        }
    memset(p, 0, sizeof *p);
    p->n_ops = n;
    p->numel = tg_shape_numel(out_ndim, out_shape);

    /* Merge the output's dims of size > 1 whose broadcast pattern (which operands have
     * size 1 there) equals that of the previous kept dim. */
    unsigned pattern[TG_MAX_DIMS];
    for (int d = 0; d < out_ndim; d++) {
        if (out_shape[d] == 1) continue;
        unsigned bits = 0;
        for (int k = 0; k < n; k++) {
            const int j = d - (out_ndim - ndims[k]); /* the operand's own dim, or < 0 */
            if (j < 0 || shapes[k][j] == 1) bits |= 1u << k;
        }
        if (p->ndim > 0 && pattern[p->ndim - 1] == bits) {
            p->size[p->ndim - 1] *= out_shape[d];
        } else {
            pattern[p->ndim] = bits;
            p->size[p->ndim++] = out_shape[d];
        }
    }
    if (p->ndim == 0) { /* every dim is 1: one element, every operand a scalar */
        p->ndim = 1;
        p->size[0] = 1;
        pattern[0] = (1u << n) - 1;
    }
    for (int k = 0; k < n; k++) {
        int64_t running = 1;
        for (int d = p->ndim - 1; d >= 0; d--) {
            if (pattern[d] & (1u << k)) continue; /* broadcast: stride 0 */
            p->stride[k][d] = running;
            running *= p->size[d];
        }
    }
    p->inner = p->size[p->ndim - 1];
    p->rows = p->numel == 0 ? 0 : p->numel / p->inner;
}

void tg_bcast_init_tensors(tg_bcast *p, int out_ndim, const int64_t *out_shape, int n,
                           const tg_tensor *const *ts) {
    TG_CHECK_ARG(ts);
    for (int k = 0; k < n && k < TG_BCAST_MAX_OPS; k++)
        if (!ts[k]) tg_fail("tg_bcast_init_tensors: operand %d is NULL", k);
    int ndims[TG_BCAST_MAX_OPS];
    const int64_t *shapes[TG_BCAST_MAX_OPS];
    for (int k = 0; k < n && k < TG_BCAST_MAX_OPS; k++) {
        ndims[k] = ts[k]->ndim;
        shapes[k] = ts[k]->shape;
    }
    tg_bcast_init(p, out_ndim, out_shape, n, ndims, shapes);
}

void tg_bcast_row_start(const tg_bcast *p, int64_t r, int64_t *idx, int64_t *off) {
    TG_CHECK_ARG(p);
    TG_CHECK_ARG(idx);
    TG_CHECK_ARG(off);
    for (int k = 0; k < p->n_ops; k++) off[k] = 0;
    for (int d = p->ndim - 2; d >= 0; d--) {
        idx[d] = r % p->size[d];
        r /= p->size[d];
        for (int k = 0; k < p->n_ops; k++) off[k] += idx[d] * p->stride[k][d];
    }
}

/* Σ x[0..n) in double, 8 independent partial sums (vectorisable, fixed order). */
static double sum_double(const tg_real *x, int64_t n) {
    double s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += (double)x[i + j];
    double tail = 0;
    for (; i < n; i++) tail += (double)x[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail;
}

/* The outer (non-row) merged dims of a one-operand plan, split into those x keeps ("kept",
 * with x's and g's strides) and those it was broadcast along ("summed", g's strides). */
typedef struct {
    int nk, ns;
    int64_t ksize[TG_MAX_DIMS], kx[TG_MAX_DIMS], kg[TG_MAX_DIMS];
    int64_t ssize[TG_MAX_DIMS], sg[TG_MAX_DIMS];
    int64_t kept, summed; /* products of the sizes */
} split_dims;

static void split_outer(const tg_bcast *p, split_dims *s) {
    memset(s, 0, sizeof *s);
    s->kept = s->summed = 1;
    int64_t gstride = p->inner;
    int64_t gst[TG_MAX_DIMS];
    for (int d = p->ndim - 2; d >= 0; d--) {
        gst[d] = gstride;
        gstride *= p->size[d];
    }
    for (int d = 0; d < p->ndim - 1; d++) {
        if (p->stride[0][d]) {
            s->ksize[s->nk] = p->size[d];
            s->kx[s->nk] = p->stride[0][d];
            s->kg[s->nk++] = gst[d];
            s->kept *= p->size[d];
        } else {
            s->ssize[s->ns] = p->size[d];
            s->sg[s->ns++] = gst[d];
            s->summed *= p->size[d];
        }
    }
}

/* Offsets in x and g of the kept multi-index number `i`. */
static void kept_offsets(const split_dims *s, int64_t i, int64_t *xoff, int64_t *goff) {
    *xoff = *goff = 0;
    for (int d = s->nk - 1; d >= 0; d--) {
        const int64_t q = i % s->ksize[d];
        i /= s->ksize[d];
        *xoff += q * s->kx[d];
        *goff += q * s->kg[d];
    }
}

/* Steps the odometer over the summed dims; returns g's offset change. */
static inline int64_t summed_next(const split_dims *s, int64_t *idx) {
    int64_t delta = 0;
    for (int d = s->ns - 1; d >= 0; d--) {
        delta += s->sg[d];
        if (++idx[d] < s->ssize[d]) return delta;
        delta -= s->sg[d] * s->ssize[d];
        idx[d] = 0;
    }
    return delta;
}

/* The three loops of tg_broadcast_sum_to, as ranges for tg_parallel_for. */
typedef struct sum_to_ctx {
    tg_real *dx;
    const tg_real *g;
    tg_real alpha;
    const split_dims *s;
    int64_t inner, nblocks;
} sum_to_ctx;

static void add_scaled_range(int64_t i0, int64_t i1, void *arg) {
    const sum_to_ctx *c = arg;
    TG_SIMD
    for (int64_t i = i0; i < i1; i++) c->dx[i] += c->alpha * c->g[i];
}

/* Rows are kept (e.g. a bias (C,) from (N, C)): for each kept index and block of columns
 * (one task), add the rows of every summed index into double accumulators. */
static void sum_rows_range(int64_t t0, int64_t t1, void *arg) {
    const sum_to_ctx *c = arg;
    for (int64_t t = t0; t < t1; t++) {
        int64_t xoff, goff, idx[TG_MAX_DIMS] = {0};
        kept_offsets(c->s, t / c->nblocks, &xoff, &goff);
        const int64_t c0 = (t % c->nblocks) * COL_BLOCK;
        const int64_t cn = c->inner - c0 < COL_BLOCK ? c->inner - c0 : COL_BLOCK;
        double acc[COL_BLOCK] = {0};
        const tg_real *row = c->g + goff + c0;
        for (int64_t b = 0; b < c->s->summed; b++) {
            TG_SIMD
            for (int64_t k = 0; k < cn; k++) acc[k] += (double)row[k];
            row += summed_next(c->s, idx);
        }
        tg_real *out = c->dx + xoff + c0;
        for (int64_t k = 0; k < cn; k++) out[k] += (tg_real)((double)c->alpha * acc[k]);
    }
}

/* Rows are summed (e.g. (N, 1) from (N, C)): one double sum per element of x. */
static void sum_columns_range(int64_t t0, int64_t t1, void *arg) {
    const sum_to_ctx *c = arg;
    for (int64_t t = t0; t < t1; t++) {
        int64_t xoff, goff, idx[TG_MAX_DIMS] = {0};
        kept_offsets(c->s, t, &xoff, &goff);
        double acc = 0;
        const tg_real *row = c->g + goff;
        for (int64_t b = 0; b < c->s->summed; b++) {
            acc += sum_double(row, c->inner);
            row += summed_next(c->s, idx);
        }
        c->dx[xoff] += (tg_real)((double)c->alpha * acc);
    }
}

void tg_broadcast_sum_to(tg_real *dx, int x_ndim, const int64_t *x_shape, const tg_real *g,
                         int g_ndim, const int64_t *g_shape, tg_real alpha) {
    TG_CHECK_ARG(dx);
    TG_CHECK_ARG(g);
    tg_bcast p;
    tg_bcast_init(&p, g_ndim, g_shape, 1, &x_ndim, &x_shape);
    const int64_t n = p.numel;
    if (n == 0) return;
    sum_to_ctx c = {.dx = dx, .g = g, .alpha = alpha, .inner = p.inner};
    /* Below PAR_MIN elements the whole loop is one grain: it runs on the calling thread. */
    if (p.ndim == 1) {
        if (p.stride[0][0]) /* same numel: nothing to sum */
            tg_parallel_for(n, n >= PAR_MIN ? PAR_MIN / 2 : n, add_scaled_range, &c);
        else /* x is a single element */
            dx[0] += (tg_real)((double)alpha * sum_double(g, n));
        return;
    }
    split_dims s;
    split_outer(&p, &s);
    c.s = &s;
    if (p.stride[0][p.ndim - 1]) {
        c.nblocks = (p.inner + COL_BLOCK - 1) / COL_BLOCK;
        const int64_t tasks = s.kept * c.nblocks;
        tg_parallel_for(tasks, n >= PAR_MIN ? 1 : tasks, sum_rows_range, &c);
    } else {
        tg_parallel_for(s.kept, n >= PAR_MIN ? 1 : s.kept, sum_columns_range, &c);
    }
}

void tg_broadcast_expand(tg_real *y, int out_ndim, const int64_t *out_shape, const tg_real *x,
                         int x_ndim, const int64_t *x_shape) {
    TG_CHECK_ARG(y);
    TG_CHECK_ARG(x);
    tg_bcast p;
    tg_bcast_init(&p, out_ndim, out_shape, 1, &x_ndim, &x_shape);
    const int64_t inner = p.inner;
    const bool contiguous = p.stride[0][p.ndim - 1] != 0;
    int64_t idx[TG_MAX_DIMS] = {0}, off = 0;
    for (int64_t r = 0; r < p.rows; r++) {
        tg_real *out = y + r * inner;
        if (contiguous)
            memcpy(out, x + off, (size_t)inner * sizeof *out);
        else
            for (int64_t i = 0; i < inner; i++) out[i] = x[off];
        tg_bcast_row_next(&p, idx, &off);
    }
}
