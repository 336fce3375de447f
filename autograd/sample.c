/* Sampling from categorical distributions, for text generation: torch.multinomial on
 * probabilities (or any non-negative weights), and one draw per row from logits with a
 * temperature and an optional top-k cut. Not differentiable; the results are index tensors
 * in the tape's arena.
 *
 * Each draw takes two 32-bit words from the generator and makes a uniform u in [0, 1) with
 * 53 random bits (MT19937's genrand_res53), then picks the first category whose cumulative
 * weight (summed in double, in category order) exceeds u times the row's total. So a seed
 * gives the same samples on every machine and at any thread count: rows are drawn one after
 * the other, samples of a row in order. The draws are not torch.multinomial's bits (torch
 * consumes its generator differently); the distribution is the same. */
#include <math.h>
#include <string.h>

#include "tapegrad/ops.h"

/* u in [0, 1) with 53 random bits */
static double uniform53(tg_rng *rng) {
    const uint32_t a = tg_rng_next_u32(rng) >> 5, b = tg_rng_next_u32(rng) >> 6;
    return ((double)a * 67108864.0 + (double)b) * (1.0 / 9007199254740992.0);
}

/* The category of a draw from weights w[0..n) (total > 0): the first whose running sum
 * exceeds u·total. Rounding may leave u·total at the very end: then the last category of
 * positive weight. */
static int64_t pick(const double *w, int64_t n, double total, double u) {
    const double target = u * total;
    double run = 0;
    int64_t last = -1;
    for (int64_t j = 0; j < n; j++) {
        if (w[j] <= 0) continue;
        run += w[j];
        last = j;
        if (run > target) return j;
    }
    return last;
}

/* The rows of a (..., C) tensor, and the output shape (..., extra), or (...) when extra is 0.
 * Fails naming op for a scalar. */
static int64_t rows_of(const char *op, const tg_tensor *x, int64_t extra, int *out_ndim,
                       int64_t *out_shape) {
    if (x->ndim == 0) {
        char xd[160];
        tg_fail("%s: %s must have at least one dim (the categories are the last)", op,
                tg_tensor_describe(x, xd, sizeof xd));
    }
    int64_t rows = 1;
    *out_ndim = x->ndim - 1;
    for (int d = 0; d < x->ndim - 1; d++) rows *= out_shape[d] = x->shape[d];
    if (extra) out_shape[(*out_ndim)++] = extra;
    return rows;
}

tg_index *tg_multinomial(tg_tape *t, const tg_tensor *probs, int64_t num_samples, bool replacement,
                         tg_rng *rng) {
    TG_CHECK_OP(t, probs);
    char xd[160];
    int nd;
    int64_t shape[TG_MAX_DIMS];
    const int64_t rows = rows_of("tg_multinomial", probs, num_samples, &nd, shape);
    const int64_t C = probs->shape[probs->ndim - 1];
    if (num_samples <= 0 || (!replacement && num_samples > C))
        tg_fail("tg_multinomial: cannot draw %lld samples %s from %lld categories (%s)",
                (long long)num_samples, replacement ? "with replacement" : "without replacement",
                (long long)C, tg_tensor_describe(probs, xd, sizeof xd));
    for (int64_t r = 0; r < rows; r++) { /* every row a distribution, before any draw */
        const tg_real *p = probs->data + r * C;
        int64_t positive = 0;
        for (int64_t j = 0; j < C; j++) {
            if (!isfinite(p[j]) || p[j] < 0)
                tg_fail("tg_multinomial: row %lld of %s holds %g at %lld: weights must be "
                        "finite and non-negative",
                        (long long)r, tg_tensor_describe(probs, xd, sizeof xd), (double)p[j],
                        (long long)j);
            positive += p[j] > 0;
        }
        if (positive == 0 || (!replacement && positive < num_samples))
            tg_fail("tg_multinomial: row %lld of %s has %lld categories of positive weight, too "
                    "few for %lld samples %s",
                    (long long)r, tg_tensor_describe(probs, xd, sizeof xd), (long long)positive,
                    (long long)(replacement ? 1 : num_samples),
                    replacement ? "(a row needs one)" : "without replacement");
    }
    if (!rng) rng = tg_rng_default();
    tg_index *out = tg_tape_index(t, nd, shape);
    double *w = tg_tape_alloc(t, (size_t)(C ? C : 1) * sizeof *w);
    for (int64_t r = 0; r < rows; r++) {
        double total = 0;
        for (int64_t j = 0; j < C; j++) total += w[j] = (double)probs->data[r * C + j];
        for (int64_t s = 0; s < num_samples; s++) {
            const int64_t j = pick(w, C, total, uniform53(rng));
            out->data[r * num_samples + s] = (int32_t)j;
            if (!replacement) { /* drop the category and re-add the rest in order */
                w[j] = 0;
                total = 0;
                for (int64_t q = 0; q < C; q++) total += w[q];
            }
        }
    }
    return out;
}

/* The k-th largest of a[0..n) (1 <= k <= n, no NaN), by selection (Hoare's partition with the
 * middle element as pivot); reorders a. */
static double kth_largest(double *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    const int64_t want = k - 1; /* its position in descending order */
    while (lo < hi) {
        const double pivot = a[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) {
                const double swap = a[i];
                a[i++] = a[j];
                a[j--] = swap;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            return a[want];
    }
    return a[want];
}

/* p_j ∝ exp((l_j - max l) / T) over the logits at or above the k-th largest (all when
 * top_k is 0 or covers every category; ties at the cut are kept, as with
 * logits[logits < topk(...)[-1]] = -inf), then one draw. T = 0 is greedy decoding. */
tg_index *tg_sample_logits(tg_tape *t, const tg_tensor *logits, tg_real temperature, int64_t top_k,
                           tg_rng *rng) {
    TG_CHECK_OP(t, logits);
    char xd[160];
    int nd;
    int64_t shape[TG_MAX_DIMS];
    const int64_t rows = rows_of("tg_sample_logits", logits, 0, &nd, shape);
    const int64_t C = logits->shape[logits->ndim - 1];
    if (!(temperature >= 0) || isinf(temperature) || top_k < 0)
        tg_fail("tg_sample_logits: temperature %g must be finite and >= 0 and top_k %lld >= 0 "
                "(logits %s)",
                (double)temperature, (long long)top_k, tg_tensor_describe(logits, xd, sizeof xd));
    for (int64_t r = 0; r < rows; r++) {
        const tg_real *l = logits->data + r * C;
        bool any = false;
        for (int64_t j = 0; j < C; j++) {
            if (isnan(l[j]) || l[j] == INFINITY)
                tg_fail("tg_sample_logits: row %lld of %s holds %g at %lld (logits may be "
                        "-inf, not NaN or +inf)",
                        (long long)r, tg_tensor_describe(logits, xd, sizeof xd), (double)l[j],
                        (long long)j);
            any = any || l[j] > -INFINITY;
        }
        if (!any)
            tg_fail("tg_sample_logits: row %lld of %s has no finite logit to sample", (long long)r,
                    tg_tensor_describe(logits, xd, sizeof xd));
    }
    if (!rng) rng = tg_rng_default();
    tg_index *out = tg_tape_index(t, nd, shape);
    double *w = tg_tape_alloc(t, (size_t)(C ? C : 1) * sizeof *w);
    const bool cut = top_k > 0 && top_k < C;
    for (int64_t r = 0; r < rows; r++) {
        const tg_real *l = logits->data + r * C;
        int64_t best = 0;
        for (int64_t j = 1; j < C; j++) best = l[j] > l[best] ? j : best;
        if (temperature == 0) {
            out->data[r] = (int32_t)best;
            continue;
        }
        double threshold = -INFINITY;
        if (cut) {
            for (int64_t j = 0; j < C; j++) w[j] = (double)l[j];
            threshold = kth_largest(w, C, top_k);
        }
        double total = 0;
        for (int64_t j = 0; j < C; j++) {
            const double lj = (double)l[j];
            w[j] = lj >= threshold ? exp((lj - (double)l[best]) / (double)temperature) : 0;
            total += w[j];
        }
        out->data[r] = (int32_t)pick(w, C, total, uniform53(rng));
    }
    return out;
}
