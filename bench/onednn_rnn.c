/* bench/onednn_rnn.c — the bar for tapegrad's fused recurrent layers: oneDNN's fused RNN
 * primitives (Debian's libdnnl-dev), one layer forward (training) + backward, at the sizes
 * of bench_rnn_layer.c. Built only when oneDNN is found.
 *
 *   onednn_rnn --config gru_cls_layer|lstm_cls_layer|gru_lm_layer0|gru_lm_layer1
 *              [--threads N] [--quick] ...
 *
 * GRU is oneDNN's `lbr_gru` (linear-before-reset: PyTorch's GRU form), LSTM its `lstm`.
 * One timed step does what a training step needs from the layer:
 *   1. reorder the weights from the user layout (ldigo, what an optimizer updates) to the
 *      layout the forward primitive chose;
 *   2. forward (training: keeps the workspace);
 *   3. reorder the weights to the layout the backward primitive chose;
 *   4. zero the weight gradients, backward (diff src, diff weights, diff bias);
 *   5. reorder the weight gradients back to the user layout.
 * Reorders between identical layouts are skipped. h0 = c0 = 0; sequence-first (tnc). */
#include "bench_common.h"

#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                                \
    do {                                                                                           \
        dnnl_status_t s_ = (call);                                                                 \
        if (s_ != dnnl_success) {                                                                  \
            fprintf(stderr, "onednn_rnn: %s failed (status %d) at line %d\n", #call, (int)s_,      \
                    __LINE__);                                                                     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct reorder {
    dnnl_primitive_t prim; /* NULL: same layout, nothing to do */
    dnnl_memory_t src, dst;
} reorder;

static dnnl_engine_t engine;
static dnnl_stream_t stream;

static dnnl_memory_t mem_new(const dnnl_memory_desc_t *md) {
    dnnl_memory_t m;
    CHECK(dnnl_memory_create(&m, md, engine, DNNL_MEMORY_ALLOCATE));
    return m;
}

static void *mem_data(dnnl_memory_t m) {
    void *p;
    CHECK(dnnl_memory_get_data_handle(m, &p));
    return p;
}

static void mem_fill(dnnl_memory_t m, const dnnl_memory_desc_t *md, bench_lcg *g, double scale) {
    float *p = mem_data(m);
    const size_t n = dnnl_memory_desc_get_size(md) / sizeof(float);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(scale * ((double)bench_lcg_below(g, 1 << 21) / (double)(1 << 20) - 1.0));
}

/* A memory in `want`'s layout fed from (or feeding) `user`; no-op when they match. */
static reorder reorder_new(dnnl_memory_t from, const dnnl_memory_desc_t *from_md,
                           const dnnl_memory_desc_t *to_md, dnnl_memory_t to_existing) {
    reorder r = {NULL, from, to_existing};
    if (dnnl_memory_desc_equal(from_md, to_md)) {
        if (!r.dst) r.dst = from;
        return r;
    }
    if (!r.dst) r.dst = mem_new(to_md);
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_reorder_primitive_desc_create(&pd, from_md, engine, to_md, engine, NULL));
    CHECK(dnnl_primitive_create(&r.prim, pd));
    CHECK(dnnl_primitive_desc_destroy(pd));
    return r;
}

static void reorder_run(const reorder *r) {
    if (!r->prim) return;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, r->src}, {DNNL_ARG_TO, r->dst}};
    CHECK(dnnl_primitive_execute(r->prim, stream, 2, args));
}

typedef struct ctx {
    dnnl_primitive_t fwd, bwd;
    reorder w_fwd[2], w_bwd[2], dw_user[2];
    dnnl_memory_t src, bias, dst, ws, diff_src, diff_dst, diff_w[2], diff_bias;
    const dnnl_memory_desc_t *diff_w_md[2], *diff_bias_md;
} ctx;

static double step(void *p) {
    ctx *c = p;
    reorder_run(&c->w_fwd[0]);
    reorder_run(&c->w_fwd[1]);
    dnnl_exec_arg_t fa[] = {{DNNL_ARG_SRC_LAYER, c->src},
                            {DNNL_ARG_WEIGHTS_LAYER, c->w_fwd[0].dst},
                            {DNNL_ARG_WEIGHTS_ITER, c->w_fwd[1].dst},
                            {DNNL_ARG_BIAS, c->bias},
                            {DNNL_ARG_DST_LAYER, c->dst},
                            {DNNL_ARG_WORKSPACE, c->ws}};
    CHECK(dnnl_primitive_execute(c->fwd, stream, (int)(sizeof fa / sizeof *fa), fa));
    reorder_run(&c->w_bwd[0]);
    reorder_run(&c->w_bwd[1]);
    memset(mem_data(c->diff_w[0]), 0, dnnl_memory_desc_get_size(c->diff_w_md[0]));
    memset(mem_data(c->diff_w[1]), 0, dnnl_memory_desc_get_size(c->diff_w_md[1]));
    memset(mem_data(c->diff_bias), 0, dnnl_memory_desc_get_size(c->diff_bias_md));
    dnnl_exec_arg_t ba[] = {{DNNL_ARG_SRC_LAYER, c->src},
                            {DNNL_ARG_WEIGHTS_LAYER, c->w_bwd[0].dst},
                            {DNNL_ARG_WEIGHTS_ITER, c->w_bwd[1].dst},
                            {DNNL_ARG_BIAS, c->bias},
                            {DNNL_ARG_DST_LAYER, c->dst},
                            {DNNL_ARG_WORKSPACE, c->ws},
                            {DNNL_ARG_DIFF_SRC_LAYER, c->diff_src},
                            {DNNL_ARG_DIFF_WEIGHTS_LAYER, c->diff_w[0]},
                            {DNNL_ARG_DIFF_WEIGHTS_ITER, c->diff_w[1]},
                            {DNNL_ARG_DIFF_BIAS, c->diff_bias},
                            {DNNL_ARG_DIFF_DST_LAYER, c->diff_dst}};
    CHECK(dnnl_primitive_execute(c->bwd, stream, (int)(sizeof ba / sizeof *ba), ba));
    reorder_run(&c->dw_user[0]);
    reorder_run(&c->dw_user[1]);
    CHECK(dnnl_stream_wait(stream));
    return (double)((float *)mem_data(c->diff_src))[0] + (double)((float *)mem_data(c->dst))[0];
}

int main(int argc, char **argv) {
    static const char *const extra[] = {"--input", "--hidden", "--batch", "--seq", NULL};
    bench_args a;
    bench_parse(argc, argv, &a,
                "  --config gru_cls_layer|lstm_cls_layer|gru_lm_layer0|gru_lm_layer1\n", extra);
    a.impl = "onednn";
    omp_set_num_threads(a.threads); /* oneDNN runs on OpenMP here */
    bench_rnn_shape shape;
    if (!bench_rnn_layer_shape(&a, "onednn_rnn", &shape)) return 2;
    const int64_t I = shape.I, H = shape.H, B = shape.B, T = shape.T;
    const bool lstm = shape.lstm;
    const int64_t G = lstm ? 4 : 3, GB = lstm ? 4 : 4; /* lbr_gru has an extra bias gate */

    CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));

    dnnl_memory_desc_t src_md, dst_md, wl_user, wi_user, bias_md, wl_any, wi_any, bias_any;
    CHECK(dnnl_memory_desc_init_by_tag(&src_md, 3, (dnnl_dims_t){T, B, I}, dnnl_f32, dnnl_tnc));
    CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 3, (dnnl_dims_t){T, B, H}, dnnl_f32, dnnl_tnc));
    CHECK(dnnl_memory_desc_init_by_tag(&wl_user, 5, (dnnl_dims_t){1, 1, I, G, H}, dnnl_f32,
                                       dnnl_ldigo));
    CHECK(dnnl_memory_desc_init_by_tag(&wi_user, 5, (dnnl_dims_t){1, 1, H, G, H}, dnnl_f32,
                                       dnnl_ldigo));
    CHECK(
        dnnl_memory_desc_init_by_tag(&bias_md, 4, (dnnl_dims_t){1, 1, GB, H}, dnnl_f32, dnnl_ldgo));
    CHECK(dnnl_memory_desc_init_by_tag(&wl_any, 5, (dnnl_dims_t){1, 1, I, G, H}, dnnl_f32,
                                       dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&wi_any, 5, (dnnl_dims_t){1, 1, H, G, H}, dnnl_f32,
                                       dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&bias_any, 4, (dnnl_dims_t){1, 1, GB, H}, dnnl_f32,
                                       dnnl_format_tag_any));

    dnnl_rnn_desc_t fd, bd;
    const dnnl_rnn_direction_t dir = dnnl_unidirectional_left2right;
    if (lstm) {
        CHECK(dnnl_lstm_forward_desc_init(&fd, dnnl_forward_training, dir, &src_md, NULL, NULL,
                                          &wl_any, &wi_any, &bias_md, &dst_md, NULL, NULL, 0));
        CHECK(dnnl_lstm_backward_desc_init(
            &bd, dnnl_backward, dir, &src_md, NULL, NULL, &wl_any, &wi_any, &bias_md, &dst_md, NULL,
            NULL, &src_md, NULL, NULL, &wl_any, &wi_any, &bias_any, &dst_md, NULL, NULL, 0));
    } else {
        CHECK(dnnl_lbr_gru_forward_desc_init(&fd, dnnl_forward_training, dir, &src_md, NULL,
                                             &wl_any, &wi_any, &bias_md, &dst_md, NULL, 0));
        CHECK(dnnl_lbr_gru_backward_desc_init(&bd, dnnl_backward, dir, &src_md, NULL, &wl_any,
                                              &wi_any, &bias_md, &dst_md, NULL, &src_md, NULL,
                                              &wl_any, &wi_any, &bias_any, &dst_md, NULL, 0));
    }
    dnnl_primitive_desc_t fpd, bpd;
    CHECK(dnnl_primitive_desc_create(&fpd, &fd, NULL, engine, NULL));
    CHECK(dnnl_primitive_desc_create(&bpd, &bd, NULL, engine, fpd));

    ctx c = {0};
    CHECK(dnnl_primitive_create(&c.fwd, fpd));
    CHECK(dnnl_primitive_create(&c.bwd, bpd));
    bench_lcg g = bench_lcg_new(a.seed);
    c.src = mem_new(&src_md);
    mem_fill(c.src, &src_md, &g, 1.0);
    c.dst = mem_new(&dst_md);
    c.diff_src = mem_new(&src_md);
    c.diff_dst = mem_new(&dst_md);
    mem_fill(c.diff_dst, &dst_md, &g, 1.0);
    c.bias = mem_new(&bias_md);
    mem_fill(c.bias, &bias_md, &g, 0.0625);
    c.ws = mem_new(dnnl_primitive_desc_query_md(fpd, dnnl_query_workspace_md, 0));
    const dnnl_memory_desc_t *user[2] = {&wl_user, &wi_user};
    for (int k = 0; k < 2; k++) {
        dnnl_memory_t w = mem_new(user[k]);
        mem_fill(w, user[k], &g, 0.0625);
        c.w_fwd[k] = reorder_new(w, user[k],
                                 dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, k), NULL);
        c.w_bwd[k] = reorder_new(w, user[k],
                                 dnnl_primitive_desc_query_md(bpd, dnnl_query_weights_md, k), NULL);
        c.diff_w_md[k] = dnnl_primitive_desc_query_md(bpd, dnnl_query_diff_weights_md, k);
        c.diff_w[k] = mem_new(c.diff_w_md[k]);
        c.dw_user[k] = reorder_new(c.diff_w[k], c.diff_w_md[k], user[k], mem_new(user[k]));
        if (!c.dw_user[k].prim) c.dw_user[k].dst = c.diff_w[k];
    }
    c.diff_bias_md = dnnl_primitive_desc_query_md(bpd, dnnl_query_diff_weights_md, 2);
    c.diff_bias = mem_new(c.diff_bias_md);
    const char *impl_name = NULL;
    CHECK(dnnl_primitive_desc_query(bpd, dnnl_query_impl_info_str, 0, &impl_name));
    printf(
        "# oneDNN %s backward implementation: %s; weight reorders fwd %d/%d bwd %d/%d grad %d/%d\n",
        lstm ? "lstm" : "lbr_gru", impl_name ? impl_name : "?", c.w_fwd[0].prim != NULL,
        c.w_fwd[1].prim != NULL, c.w_bwd[0].prim != NULL, c.w_bwd[1].prim != NULL,
        c.dw_user[0].prim != NULL, c.dw_user[1].prim != NULL);

    bench_run(a.config ? a.config : "gru_cls_layer", &a,
              3 * bench_rnn_layer_flops(T, B, I, H, (int)G), step, &c);
    return 0; /* the process ends here: oneDNN objects are not freed one by one */
}
