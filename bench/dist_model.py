#!/usr/bin/python3
"""bench/dist_model.py — the cost model of data-parallel training: predicted scaling efficiency
at 2..256 nodes on 10 and 100 Gbit/s links, and (--check) predictions beside the step and
all-reduce times measured over throttled links by bench/netns_check.sh.

    /usr/bin/python3 bench/dist_model.py [--dist-results bench/results_dist.json]
        [--results bench/results.json] [--nodes 2,4,...,256] [--links 10:25,100:10]
    /usr/bin/python3 bench/dist_model.py --check bench/netns_results.txt

The model. One process per node, each with the config's batch (weak scaling: the global
batch grows with N, as data-parallel training on a cluster is run), so a node's compute per
step stays T_c, measured: tapegrad's one-thread training step in results.json (the main
benchmark, which waits for a quiet machine), else bench_ddp's one-process baseline in
results_dist.json. Backward is T_b = 2/3 T_c (it does two of every three matrix
products' FLOPs). Every step all-reduces S = 4 · params bytes of gradients, in a ring:

    T_ar(N) = 2 (N-1)/N · S / BW  +  2 (N-1) · alpha

(reduce-scatter then all-gather: N-1 steps each, every step moving S/N bytes through every
link at once; alpha = per-message latency). tapegrad's deterministic reduction (all-to-all,
ordered sums, all-gather) moves the same bytes. The part of T_ar that backward hides is h:

    T_step = T_c + (1 - h) · T_ar,        efficiency E(N) = T_c / T_step

with h = the share measured on this machine (results_dist.json's "hidden"; 0 when a model
fits one 25 MiB bucket: the bucket waits for its last gradient, the embedding's, which
backward reaches last), and the bound of a perfect overlap, in which the all-reduce can
start with backward and only what outlasts it is exposed:

    T_step >= T_c + max(0, T_ar - T_b).

Links: RATE_GBIT:ALPHA_US pairs; BW = RATE / 8 bytes/s (line rate: an upper bound; TCP gets
~90-95 % of it), alpha the per-message latency (defaults 25 us at 10 Gbit/s, kernel TCP; 10 us
at 100 Gbit/s).

--check: for each link of netns_check.sh's output, the all-reduce of every size (predicted
T_ar with N = the ranks, BW = the link rate, alpha = the one-way delay + the stack's own
per-message time, alpha0, from the smallest TCP loopback all-reduce in results_dist.json) and
each config's step: predicted = the run's own no_sync step (its compute, measured) + T_ar of
its gradients (h = 0: one bucket), beside the measured step and tg_ddp_wait alone.
"""
import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def gru_params(inp, h, layers=1):
    """A PyTorch GRU's parameter count: per layer W_ih (3H x in), W_hh (3H x H), two biases."""
    n = 0
    for l in range(layers):
        n += 3 * h * ((inp if l == 0 else h) + h) + 2 * 3 * h
    return n


def transformer_params(v, d, ff, enc, dec):
    attn = 3 * d * d + 3 * d + d * d + d       # in_proj, out_proj
    ffn = ff * d + ff + d * ff + d
    return (v * d + d * v + v                   # shared embedding, output linear
            + enc * (attn + ffn + 2 * 2 * d)    # two LayerNorms
            + dec * (2 * attn + ffn + 3 * 2 * d))


# The benchmark configs (bench/torch_models.py): parameter counts and the one-process batch.
PARAMS = {
    "gru_cls": 5000 * 128 + gru_params(128, 256) + 256 * 10 + 10,
    "char_lm": 65 * 64 + gru_params(64, 256, 2) + 256 * 65 + 65,
    "gru_lm": 10000 * 300 + gru_params(300, 512, 2) + 512 * 10000 + 10000,
    "transformer": transformer_params(1000, 128, 512, 2, 2),
}
MODEL_CONFIGS = ["gru_cls", "gru_lm", "transformer"]


def t_allreduce(n, size_bytes, bw_bytes_s, alpha_s):
    """Ring all-reduce time of size_bytes over n nodes."""
    if n < 2:
        return 0.0
    return 2 * (n - 1) / n * size_bytes / bw_bytes_s + 2 * (n - 1) * alpha_s


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def compute_times(dist, main):
    """config -> (T_c ms, hidden h, where from). T_c from the main benchmark's one-thread
    tapegrad step (results.json: run_bench.py waits for a quiet machine before each run),
    else from bench_ddp's one-process baseline; h from the data-parallel run."""
    hidden, out = {}, {}
    for row in (dist or {}).get("runs", []):
        if row.get("tgN"):
            hidden[row["config"]] = row["tgN"].get("hidden", 0.0)
    for row in (main or {}).get("runs", []):
        c = row["config"]
        if c in PARAMS and row["threads"] == 1 and row.get("tapegrad"):
            out[c] = (row["tapegrad"]["ms"], hidden.get(c, 0.0), "results.json, 1 thread")
    for row in (dist or {}).get("runs", []):
        if row["config"] not in out and row.get("tg1"):
            out[row["config"]] = (row["tg1"]["ms"], hidden.get(row["config"], 0.0),
                                  "results_dist.json, 1 process")
    return out


def table(args):
    dist, main = load(args.dist_results), load(args.results)
    times = compute_times(dist, main)
    nodes = [int(x) for x in args.nodes.split(",")]
    links = [tuple(float(v) for v in l.split(":")) for l in args.links.split(",")]
    print("Predicted scaling efficiency E(N) = T_c / T_step, weak scaling (the config's batch "
          "per node), ring all-reduce")
    print("each cell: with the measured hidden share h / with a perfect overlap (bound)\n")
    for c in MODEL_CONFIGS:
        if c not in times:
            print(f"{c}: no measured step time (run scripts/bench.sh first)")
            continue
        tc_ms, h, src = times[c]
        size = 4 * PARAMS[c]
        tc, tb = tc_ms * 1e-3, tc_ms * 1e-3 * 2 / 3
        print(f"{c}: {PARAMS[c] / 1e6:.2f} M parameters = {size / 2**20:.1f} MiB of gradients, "
              f"T_c = {tc_ms:.1f} ms ({src}), h = {h:.2f}")
        print(f"  {'link':>16} " + " ".join(f"{'N=' + str(n):>11}" for n in nodes))
        for rate, alpha_us in links:
            bw, alpha = rate * 1e9 / 8, alpha_us * 1e-6
            cells = []
            for n in nodes:
                tar = t_allreduce(n, size, bw, alpha)
                e = tc / (tc + (1 - h) * tar)
                e_best = tc / (tc + max(0.0, tar - tb))
                cells.append(f"{e:.2f}/{e_best:.2f}")
            print(f"  {f'{rate:g} Gbit/s {alpha_us:g}us':>16} " +
                  " ".join(f"{x:>11}" for x in cells))
        tar256 = t_allreduce(256, size, links[0][0] * 1e9 / 8, links[0][1] * 1e-6)
        print(f"  (T_ar at N=256 on {links[0][0]:g} Gbit/s: {tar256 * 1e3:.1f} ms)\n")


def parse_kv(line):
    out = {}
    for kv in line.split():
        k, _, v = kv.partition("=")
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = v
    return out


def check(args):
    dist = load(args.dist_results)
    alpha0 = 20e-6
    if dist and dist.get("bandwidth", {}).get("tcp,self", {}).get("rows"):
        rows = dist["bandwidth"]["tcp,self"]["rows"]
        n = rows[0].get("ranks", 2)
        alpha0 = rows[0]["us"] * 1e-6 / (2 * (n - 1))  # 1 KB: latency alone
    with open(args.check) as f:
        lines = f.read().splitlines()
    print(f"netns check ({args.check}); alpha = one-way delay + alpha0 = "
          f"{alpha0 * 1e6:.1f} us (the TCP stack's own, from the 1 KB loopback all-reduce)")
    for line in lines:
        if line.startswith("#"):
            print(line)
    by_link = {}
    for line in lines:
        m = re.match(r"link=(\S+) (allreduce|result) (.*)", line)
        if m:
            by_link.setdefault(m.group(1), []).append((m.group(2), parse_kv(m.group(3))))
    for link, items in by_link.items():
        rate, delay_ms = (float(x) for x in link.split(":"))
        bw, alpha = rate * 1e6 / 8, delay_ms * 1e-3 + alpha0
        print(f"\nlink {rate:g} Mbit/s, {delay_ms:g} ms one way:")
        print(f"  {'all-reduce bytes':>16} {'predicted ms':>12} {'best ms':>9} {'median ms':>9}")
        for kind, r in items:
            if kind == "allreduce":
                p = t_allreduce(int(r["ranks"]), r["bytes"], bw, alpha)
                print(f"  {int(r['bytes']):16d} {p * 1e3:12.2f} {r['us'] / 1e3:9.2f} "
                      f"{r['us_median'] / 1e3:9.2f}")
        print(f"  {'config':>16} {'no_sync ms':>10} {'T_ar pred':>9} {'wait alone':>10} "
              f"{'step pred':>9} {'step meas':>9} {'meas/pred':>9}")
        for kind, r in items:
            if kind == "result" and "ms_nosync" in r:
                tar = t_allreduce(int(r["world"]), 4 * r["params"], bw, alpha) * 1e3
                pred = r["ms_nosync"] + tar
                print(f"  {r['config']:>16} {r['ms_nosync']:10.1f} {tar:9.1f} "
                      f"{r['allreduce_ms']:10.1f} {pred:9.1f} {r['ms']:9.1f} "
                      f"{r['ms'] / pred:9.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dist-results", default=os.path.join(HERE, "results_dist.json"))
    ap.add_argument("--results", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--nodes", default="2,4,8,16,32,64,128,256")
    ap.add_argument("--links", default="10:25,100:10",
                    help="RATE_GBIT:ALPHA_US,... (line rate, per-message latency)")
    ap.add_argument("--check", metavar="NETNS_RESULTS",
                    help="compare with bench/netns_check.sh's output instead")
    args = ap.parse_args()
    if args.check:
        check(args)
    else:
        table(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
