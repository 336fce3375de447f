/* The dist layer's unit tests, run by tests/test_dist.sh under mpirun -np 2 and 3 (every rank
 * runs every test, in the same order: most are collective). The sampler's tests need no
 * communication and also cover world sizes other than the launched one. */
#include "harness.h"

#include <tapegrad/dist.h>

#include <string.h>
#include <unistd.h>

static int rank_, world_;

/* Every rank's `value` is the same (compared through rank 0's). */
static bool same_on_every_rank(uint64_t value) {
    double v[2] = {(double)(value >> 32), (double)(value & 0xFFFFFFFFu)}, first[2] = {0, 0};
    if (rank_ == 0) memcpy(first, v, sizeof v);
    tg_dist_sum(first, 2); /* rank 0's values: the others added zeros */
    return tg_dist_all(first[0] == v[0] && first[1] == v[1]);
}

static uint64_t bits_of(const tg_real *x, int64_t n) {
    uint64_t h = 1469598103934665603u;
    const unsigned char *b = (const unsigned char *)x;
    for (size_t k = 0; k < (size_t)n * sizeof(tg_real); k++) h = (h ^ b[k]) * 1099511628211u;
    return h;
}

static void test_world_and_sums(void **state) {
    (void)state;
    assert_true(tg_dist_is_initialized());
    const char *size = getenv("OMPI_COMM_WORLD_SIZE");
    if (size) assert_int_equal(world_, atoi(size));
    assert_true(rank_ >= 0 && rank_ < world_);
    /* values whose sum depends on the order: rank order is ((x0 + x1) + x2) + ... */
    double v[2] = {rank_ == 0 ? 1.0 : 1e-16 * (rank_ + 1), (double)rank_};
    tg_dist_sum(v, 2);
    double want = 1.0;
    for (int r = 1; r < world_; r++) want += 1e-16 * (r + 1);
    assert_true(v[0] == want);
    assert_true(v[1] == world_ * (world_ - 1) / 2.0);
    assert_true(tg_dist_all(true));
    assert_false(tg_dist_all(rank_ != world_ - 1));
    int64_t local = 0;
    assert_int_equal(tg_dist_local_batch(6 * world_, &local), TG_OK);
    assert_int_equal(local, 6);
    assert_int_equal(tg_dist_local_batch(6 * world_ + 1, &local), TG_ERR_ARGUMENT);
    assert_non_null(strstr(tg_error_message(), "does not divide among"));
    int64_t begin, end, covered = 0;
    for (int r = 0; r < 3; r++) {
        tg_dist_shard_range(10, r, 3, &begin, &end);
        assert_int_equal(begin, covered);
        assert_int_equal(end - begin, r == 0 ? 4 : 3);
        covered = end;
    }
}

/* ---- the sampler ---- */

static tg_dist_sampler *sampler(int64_t n, int64_t batch, bool drop_last, int rank, int world) {
    tg_dist_sampler *s = tg_dist_sampler_new(&(tg_dist_sampler_options){.num_examples = n,
                                                                        .global_batch = batch,
                                                                        .seed = 7,
                                                                        .drop_last = drop_last,
                                                                        .rank = rank,
                                                                        .world = world});
    assert_non_null(s);
    return s;
}

static void test_sampler_shards_cover_each_epoch(void **state) {
    (void)state;
    enum { N = 23, B = 6 };
    for (int drop = 0; drop < 2; drop++) {
        tg_dist_sampler *one = sampler(N, B, drop, 0, 1);
        const int64_t per_epoch = tg_dist_sampler_batches_per_epoch(one);
        assert_int_equal(per_epoch, drop ? N / B : (N + B - 1) / B);
        for (int world = 2; world <= 3; world++) {
            tg_dist_sampler *s[3];
            for (int r = 0; r < world; r++) s[r] = sampler(N, B, drop, r, world);
            for (int64_t epoch = 0; epoch < 3; epoch++) {
                int seen[N] = {0};
                for (int64_t b = 0; b < per_epoch; b++) {
                    const int64_t step = epoch * per_epoch + b;
                    int64_t global[B], local[B];
                    tg_dist_sampler_global_indices(one, step, global);
                    /* the shards are the global batch, rank r at positions r, r + N, ... */
                    for (int r = 0; r < world; r++) {
                        tg_dist_sampler_indices(s[r], step, local);
                        for (int j = 0; j < B / world; j++)
                            assert_int_equal(local[j], global[r + j * world]);
                    }
                    for (int j = 0; j < B; j++) seen[global[j]]++;
                }
                int once = 0, twice = 0;
                for (int i = 0; i < N; i++) once += seen[i] == 1, twice += seen[i] == 2;
                if (drop) { /* N % B examples left out, the others exactly once */
                    assert_int_equal(once, N - N % B);
                    assert_int_equal(twice, 0);
                } else { /* every example, the padding (B - N % B of them) twice */
                    assert_int_equal(once + twice, N);
                    assert_int_equal(twice, B - N % B);
                }
            }
            for (int r = 0; r < world; r++) tg_dist_sampler_free(s[r]);
        }
        tg_dist_sampler_free(one);
    }
}

static void test_sampler_orders(void **state) {
    (void)state;
    tg_dist_sampler *a = sampler(50, 10, false, 0, 1), *b = sampler(50, 10, false, 0, 1);
    int64_t x[10], y[10];
    tg_dist_sampler_global_indices(a, 7, x); /* epoch 1 */
    tg_dist_sampler_global_indices(b, 2, y); /* epoch 0 first: the cache moves on */
    tg_dist_sampler_global_indices(b, 7, y);
    assert_memory_equal(x, y, sizeof x);
    tg_dist_sampler_global_indices(a, 2, x); /* epoch 0, same position: another order */
    assert_memory_not_equal(x, y, sizeof x);
    int64_t epoch, batch;
    tg_dist_sampler_position(a, 13, &epoch, &batch);
    assert_int_equal(epoch, 2);
    assert_int_equal(batch, 3);
    tg_dist_sampler_free(a), tg_dist_sampler_free(b);
    /* without shuffle: 0, 1, 2, ... */
    tg_dist_sampler *c = tg_dist_sampler_new(&(tg_dist_sampler_options){
        .num_examples = 5, .global_batch = 4, .no_shuffle = true, .rank = 1, .world = 2});
    tg_dist_sampler_indices(c, 1, x); /* positions 5, 7 -> padding 0, 2 */
    assert_int_equal(x[0], 0);
    assert_int_equal(x[1], 2);
    tg_dist_sampler_free(c);
    /* what cannot work */
    assert_null(tg_dist_sampler_new(
        &(tg_dist_sampler_options){.num_examples = 50, .global_batch = 10, .rank = 0, .world = 3}));
    assert_non_null(strstr(tg_error_message(), "global batch 10 does not divide among 3"));
    assert_null(tg_dist_sampler_new(&(tg_dist_sampler_options){
        .num_examples = 5, .global_batch = 8, .drop_last = true, .rank = 0, .world = 2}));
    assert_non_null(strstr(tg_error_message(), "leaves no batch"));
    /* world 0: this process's rank and world */
    tg_dist_sampler *d = tg_dist_sampler_new(
        &(tg_dist_sampler_options){.num_examples = 50, .global_batch = 6 * world_});
    assert_int_equal(tg_dist_sampler_local_batch(d), 6);
    tg_dist_sampler_free(d);
}

/* ---- the wrapper ---- */

/* Three parameters (sizes 5, 7, 3), values depending on the rank. */
static tg_params *three_params(tg_tensor **t) {
    tg_params *p = tg_params_new();
    const int64_t sizes[3] = {5, 7, 3};
    const char *names[3] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        t[i] = tg_test_rand((uint64_t)(10 * rank_ + i + 1), -1, 1, 1, &sizes[i]);
        t[i]->requires_grad = true;
        tg_params_add(p, names[i], t[i]);
    }
    return p;
}

static void free_three(tg_params *p, tg_tensor **t) {
    tg_params_free(p);
    for (int i = 0; i < 3; i++) tg_tensor_free(t[i]);
}

static void test_ddp_broadcasts_and_averages(void **state) {
    (void)state;
    for (int reduce = 0; reduce < 2; reduce++) {
        tg_tensor *t[3];
        tg_params *p = three_params(t);
        tg_tape *tape = tg_tape_new();
        tg_ddp *ddp = tg_ddp_new(p, tape,
                                 &(tg_ddp_options){.bucket_bytes = 6 * sizeof(tg_real),
                                                   .reduce = (tg_dist_reduce)reduce});
        /* rank 0's values everywhere */
        tg_tensor *zero = tg_test_rand(2, -1, 1, TG_SHAPE(7));
        assert_memory_equal(t[1]->data, zero->data, 7 * sizeof(tg_real));
        tg_tensor_free(zero);
        /* buckets in reverse list order, one parameter each at this size */
        const tg_ddp_stats s0 = tg_ddp_get_stats(ddp);
        assert_int_equal(s0.buckets, 3);
        assert_int_equal(s0.params, 15);
        size_t count = 0;
        const size_t *entries = tg_ddp_bucket_entries(ddp, 0, &count);
        assert_int_equal(count, 1);
        assert_int_equal(entries[0], 2);
        /* no backward: wait averages the gradients as they are (none on `c`: zeros) */
        for (int i = 0; i < 2; i++) {
            t[i]->grad = tg_xcalloc((size_t)t[i]->numel, sizeof(tg_real));
            for (int64_t k = 0; k < t[i]->numel; k++) t[i]->grad[k] = (tg_real)(rank_ + k * i);
        }
        tg_ddp_wait(ddp);
        for (int i = 0; i < 2; i++)
            for (int64_t k = 0; k < t[i]->numel; k++) {
                tg_real want = 0;
                for (int r = 0; r < world_; r++) want += (tg_real)(r + k * i);
                assert_true(t[i]->grad[k] == want / (tg_real)world_);
            }
        assert_non_null(t[2]->grad);
        for (int k = 0; k < 3; k++) assert_true(t[2]->grad[k] == 0);
        assert_int_equal(tg_ddp_get_stats(ddp).started_at_wait, 3);
        assert_true(same_on_every_rank(bits_of(t[1]->grad, 7)));
        tg_ddp_free(ddp);
        tg_tape_free(tape);
        free_three(p, t);
    }
}

/* L = sum over layers of <w_i, x_i>-like chains: a backward through several parameters. */
static tg_tensor *chain_loss(tg_tape *tape, tg_tensor **t) {
    tg_tensor *s = tg_sum(tape, tg_tanh(tape, t[0]));
    for (int i = 1; i < 3; i++)
        s = tg_add(tape, s, tg_sum(tape, tg_mul_scalar(tape, t[i], (tg_real)(rank_ + i))));
    return s;
}

static void test_ddp_overlap_and_no_sync(void **state) {
    (void)state;
    tg_tensor *t[3];
    tg_params *p = three_params(t);
    tg_tape *tape = tg_tape_new();
    tg_ddp *ddp = tg_ddp_new(p, tape, &(tg_ddp_options){.bucket_bytes = 1});
    /* two micro-batches: the first accumulates locally, the second synchronises the sum */
    tg_ddp_set_no_sync(ddp, true);
    assert_true(tg_ddp_no_sync(ddp));
    tg_tape_backward(tape, chain_loss(tape, t));
    tg_tape_reset(tape);
    assert_int_equal(tg_ddp_get_stats(ddp).started_in_backward, 0);
    TG_EXPECT_FAIL(tg_ddp_wait(ddp), "tg_ddp_wait", "no_sync");
    tg_ddp_set_no_sync(ddp, false);
    tg_tape_backward(tape, chain_loss(tape, t));
    tg_tape_reset(tape);
    /* every bucket started during backward, as its gradient became final */
    assert_int_equal(tg_ddp_get_stats(ddp).started_in_backward, 3);
    tg_ddp_wait(ddp);
    /* dL/db = 2 (rank + 1) over two backwards, averaged: 2 (world + 1) / 2 = world + 1 */
    for (int k = 0; k < 7; k++) assert_true(t[1]->grad[k] == (tg_real)(world_ + 1));
    for (int k = 0; k < 3; k++) assert_true(t[2]->grad[k] == (tg_real)(world_ + 3));
    assert_true(same_on_every_rank(bits_of(t[0]->grad, 5)));
    /* a second synchronised backward before the wait is refused */
    tg_tape_backward(tape, chain_loss(tape, t));
    tg_tape_reset(tape);
    TG_EXPECT_FAIL(tg_tape_backward(tape, chain_loss(tape, t)), "second gradient", "no_sync");
    tg_tape_reset(tape);
    tg_ddp_wait(ddp);
    assert_int_equal(tg_ddp_get_stats(ddp).syncs, 2);
    tg_ddp_free(ddp);
    tg_tape_free(tape);
    free_three(p, t);
}

/* Three parameters read only at the end of the graph, after a long chain of matmuls on a
 * leaf of the tape that the wrapper does not own: backward finishes the three at once (one
 * bucket each), then computes the chain for a while with nothing for the gradient hook. */
static tg_tensor *late_params_loss(tg_tape *tape, tg_tensor **t, const tg_tensor *w, int n) {
    tg_tensor *x = tg_tape_tensor_full(tape, TG_SHAPE(64, 64), (tg_real)(rank_ + 1) / 64);
    x->requires_grad = true;
    for (int k = 0; k < n; k++) x = tg_matmul(tape, x, (tg_tensor *)w);
    tg_tensor *s = tg_sum(tape, x);
    for (int i = 0; i < 3; i++)
        s = tg_add(tape, s, tg_sum(tape, tg_mul_scalar(tape, t[i], (tg_real)(rank_ + i))));
    return s;
}

static void test_ddp_reductions_progress_during_backward(void **state) {
    (void)state;
    tg_tensor *t[3];
    tg_params *p = three_params(t);
    tg_tape *tape = tg_tape_new();
    /* a permutation matrix keeps the chain's values and gradients in range */
    tg_tensor *w = tg_tensor_new(TG_SHAPE(64, 64));
    for (int64_t i = 0; i < 64; i++) w->data[i * 64 + (i * 5 + 3) % 64] = 1;
    /* Polled from the node hook, each bucket's two phases complete while the chain's
     * backward runs, so more than one is done before tg_ddp_wait. Without the polls only
     * the gradient hook, called for the three parameters back to back, would move them.
     * The other ranks start 300 µs after rank 0 (the chain's backward takes milliseconds):
     * rank 0's reductions cannot be done when its gradient hooks return, so it must poll.
     * Ranks that start together may finish them inside the hooks, and then nothing is left
     * to poll. One rank may still be held up (a busy machine), so a few tries are allowed,
     * and the ranks agree on how many they make. */
    bool hidden = false;
    uint64_t polls = 0;
    for (int attempt = 0; attempt < 5 && !hidden; attempt++) {
        tg_ddp *ddp = tg_ddp_new(p, tape, &(tg_ddp_options){.bucket_bytes = 1});
        tg_tensor *loss = late_params_loss(tape, t, w, 400);
        tg_dist_barrier();
        if (rank_ > 0) usleep(300);
        tg_tape_backward(tape, loss);
        tg_tape_reset(tape);
        assert_int_equal(tg_ddp_get_stats(ddp).started_in_backward, 3);
        tg_ddp_wait(ddp);
        const tg_ddp_stats s = tg_ddp_get_stats(ddp);
        assert_true(s.reduced_before_wait <= 3);
        polls += s.polls;
        /* dL/dt_i = rank + i, averaged: (world - 1) / 2 + i, whatever overlapped */
        for (int i = 0; i < 3; i++)
            assert_true(t[i]->grad[0] == (tg_real)(world_ - 1) / 2 + (tg_real)i);
        hidden = tg_dist_all(world_ == 1 || s.reduced_before_wait >= 2);
        tg_ddp_free(ddp);
        for (int i = 0; i < 3; i++) tg_tensor_zero_grad(t[i]);
    }
    assert_true(hidden);
    assert_true(tg_dist_all(world_ == 1 || rank_ > 0 || polls > 0));
    /* progress_us < 0: no polls (the reductions move only in the gradient hook and the wait) */
    tg_ddp *off = tg_ddp_new(p, tape, &(tg_ddp_options){.bucket_bytes = 1, .progress_us = -1});
    tg_tape_backward(tape, late_params_loss(tape, t, w, 20));
    tg_tape_reset(tape);
    tg_ddp_wait(off);
    assert_int_equal(tg_ddp_get_stats(off).polls, 0);
    tg_ddp_free(off);
    tg_tensor_free(w);
    tg_tape_free(tape);
    free_three(p, t);
}

static void test_ddp_buckets_follow_the_backward_order(void **state) {
    (void)state;
    tg_tensor *t[3];
    tg_params *p = three_params(t);
    tg_tape *tape = tg_tape_new();
    tg_ddp *ddp = tg_ddp_new(p, tape, &(tg_ddp_options){.bucket_bytes = 12 * sizeof(tg_real)});
    size_t count = 0;
    const size_t *entries = tg_ddp_bucket_entries(ddp, 0, &count); /* the list reversed */
    assert_true(count == 2 && entries[0] == 2 && entries[1] == 1); /* c (3) + b (7), then a */
    /* a wait with no backward shows no order: the buckets stay */
    tg_ddp_wait(ddp);
    assert_int_equal(tg_ddp_get_stats(ddp).buckets, 2);
    for (int step = 0; step < 2; step++) {
        /* L = sum (2 + rank) c + sum (1 + rank) b + sum (rank) a: backward finishes a, b, c */
        tg_tensor *s = tg_sum(tape, tg_mul_scalar(tape, t[2], (tg_real)(rank_ + 2)));
        for (int i = 1; i >= 0; i--)
            s = tg_add(tape, s, tg_sum(tape, tg_mul_scalar(tape, t[i], (tg_real)(rank_ + i))));
        tg_tape_backward(tape, s);
        tg_tape_reset(tape);
        tg_ddp_wait(ddp);
        for (int i = 0; i < 3; i++)
            assert_true(t[i]->grad[0] == (tg_real)(world_ - 1) / 2 + (tg_real)i);
        for (int i = 0; i < 3; i++) tg_tensor_zero_grad(t[i]);
        /* from the first such step on: a (5) + b (7), then c */
        assert_int_equal(tg_ddp_get_stats(ddp).buckets, 2);
        entries = tg_ddp_bucket_entries(ddp, 0, &count);
        assert_true(count == 2 && entries[0] == 0 && entries[1] == 1);
        entries = tg_ddp_bucket_entries(ddp, 1, &count);
        assert_true(count == 1 && entries[0] == 2);
    }
    assert_int_equal(tg_ddp_get_stats(ddp).started_in_backward, 4);
    tg_ddp_free(ddp);
    tg_tape_free(tape);
    free_three(p, t);
}

/* ---- checkpoints ---- */

static void test_params_save_and_load(void **state) {
    (void)state;
    double id = rank_ == 0 ? (double)getpid() : 0;
    tg_dist_sum(&id, 1);
    char path[256];
    snprintf(path, sizeof path, "/tmp/tapegrad-dist-test-%.0f-" TG_REAL_NAME ".safetensors", id);
    tg_tensor *t[3];
    tg_params *p = three_params(t); /* different values on every rank */
    assert_int_equal(tg_dist_params_save(p, path, NULL), TG_OK);
    tg_tensor *u[3];
    tg_params *q = three_params(u);
    assert_int_equal(tg_dist_params_load(q, path, NULL), TG_OK); /* rank 0's, everywhere */
    tg_tensor *zero = tg_test_rand(1, -1, 1, TG_SHAPE(5));
    assert_memory_equal(u[0]->data, zero->data, 5 * sizeof(tg_real));
    tg_tensor_free(zero);
    /* another model: every rank fails with the message, nothing changes */
    tg_params *other = tg_params_new();
    tg_tensor *w = tg_tensor_new(TG_SHAPE(4));
    tg_params_add(other, "a", w);
    assert_int_equal(tg_dist_params_load(other, path, NULL), TG_ERR_SHAPE);
    if (world_ > 1) assert_non_null(strstr(tg_error_message(), "rank 0: "));
    assert_non_null(strstr(tg_error_message(), "'a'"));
    assert_true(w->data[0] == 0);
    /* a rank that fails alone makes every rank fail, and the others are restored */
    const tg_real before = u[2]->data[0];
    char bad[300];
    snprintf(bad, sizeof bad, "%s%s", path, rank_ == world_ - 1 ? ".missing" : "");
    u[2]->data[0] = before + 1;
    assert_int_not_equal(tg_dist_params_load(q, bad, NULL), TG_OK);
    assert_true(u[2]->data[0] == before + 1);
    char rank_prefix[32];
    snprintf(rank_prefix, sizeof rank_prefix, "rank %d: ", world_ - 1);
    if (world_ > 1) assert_non_null(strstr(tg_error_message(), rank_prefix));
    tg_dist_barrier();
    if (rank_ == 0) unlink(path);
    tg_params_free(other), tg_tensor_free(w);
    free_three(p, t), free_three(q, u);
}

int main(int argc, char **argv) {
    if (tg_dist_init(&argc, &argv) != TG_OK) return 1;
    rank_ = tg_dist_rank();
    world_ = tg_dist_world_size();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_world_and_sums),
        cmocka_unit_test(test_sampler_shards_cover_each_epoch),
        cmocka_unit_test(test_sampler_orders),
        cmocka_unit_test(test_ddp_broadcasts_and_averages),
        cmocka_unit_test(test_ddp_overlap_and_no_sync),
        cmocka_unit_test(test_ddp_reductions_progress_during_backward),
        cmocka_unit_test(test_ddp_buckets_follow_the_backward_order),
        cmocka_unit_test(test_params_save_and_load),
    };
    const int failed = cmocka_run_group_tests(tests, NULL, NULL);
    const bool ok = tg_dist_all(failed == 0);
    tg_dist_finalize();
    return ok ? 0 : 1;
}
