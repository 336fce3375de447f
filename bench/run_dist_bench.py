#!/usr/bin/python3
"""bench/run_dist_bench.py — data-parallel training, tapegrad + MPI against PyTorch DDP + gloo,
and the MPI all-reduce bandwidth; prints one table and writes bench/results_dist.json.
scripts/bench.sh runs it after bench/run_bench.py; directly:

    /usr/bin/python3 bench/run_dist_bench.py --build build/release [--quick] [--world 2]
        [--only gru_cls,char_lm,transformer] [--bucket-mb M] [--no-bandwidth] [--wait-quiet S]

Per config (bench/bench_ddp.c and bench/torch_ddp.py: the same models, data, global batch
and Adam, one thread per process) four runs: each side with one process and the whole
global batch (the baseline), and with --world processes (tapegrad: `mpirun -np N --bind-to
core`, Open MPI's shared-memory transport; PyTorch: DDP over gloo, one process per CPU).
Columns:
  ms/step         best round's wall-clock time of a training step, N processes;
  samples/s       global batch / ms/step;  tg/pt = tapegrad's throughput / PyTorch's;
  eff             scaling efficiency T1 / (N · TN): 1 = N processes N times as fast as one;
  hidden          share of the gradient all-reduce time hidden behind backward: tapegrad
                  1 - (time waiting in tg_ddp_wait) / (whole reduction with nothing to hide
                  it); PyTorch (no such counter) 1 - (step - no_sync step) / (one all-reduce
                  of all gradients) — an estimate;
  ar ms           that whole all-reduce's time (tapegrad: tg_ddp_wait alone; PyTorch: a flat
                  all_reduce of every gradient value).
--bucket-mb M sets both sides' bucket size (default: each its own default, 25 MiB; PyTorch's
first bucket is 1 MiB); these models' gradients are 2.5 to 4.5 MiB, one bucket by default.
Then MPI_Allreduce time and bus bandwidth for 1 KB..64 MB (bench/allreduce_bw.c) over shared
memory (--mca btl self,vader) and over TCP on the loopback (--mca btl tcp,self).
busy: how many CPUs other processes kept busy meanwhile (see run_bench.py; 2 processes on
a 2-CPU machine need it near 0 to be trusted).
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_bench  # noqa: E402  (run, wait_quiet, loadavg, machine, git_rev)

CONFIGS = ["gru_cls", "char_lm", "transformer"]
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def mpirun(n, extra=()):
    return ["mpirun", "-np", str(n), "--bind-to", "core", *extra]


def bandwidth(bench_dir, n, btl, quick, timeout):
    out = subprocess.run(
        mpirun(n, ["--mca", "btl", btl]) + [os.path.join(bench_dir, "allreduce_bw")] +
        (["--quick"] if quick else []), env={**os.environ, **MPI_ENV},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        timeout=timeout)
    rows = []
    for line in out.stdout.splitlines():
        if line.startswith("allreduce "):
            rows.append({k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])})
    return rows, (None if out.returncode == 0 else out.stderr.strip()[-300:])


def efficiency(one, many, n):
    if not one or not many:
        return None
    return one["ms"] / (n * many["ms"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--only")
    ap.add_argument("--bucket-mb", type=float, help="bucket size of both sides (MiB)")
    ap.add_argument("--no-bandwidth", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", default=os.path.join(HERE, "results_dist.json"))
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--wait-quiet", type=int, default=300, metavar="S")
    args = ap.parse_args()
    run_bench.WAIT_QUIET_S[0] = args.wait_quiet
    bench_dir = os.path.join(args.build, "bench")
    exe = os.path.join(bench_dir, "bench_ddp")
    if not os.path.exists(exe):
        print(f"run_dist_bench: {exe} is not built (it needs MPI: apt-get install "
              "libopenmpi-dev openmpi-bin, then meson setup --reconfigure)", file=sys.stderr)
        return 1
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    q = ["--quick"] if args.quick else []
    n = args.world
    doc = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "git": run_bench.git_rev(os.path.dirname(HERE)), "machine": run_bench.machine(),
           "world": n, "quick": args.quick, "bucket_mb": args.bucket_mb, "loadavg_start": run_bench.loadavg(),
           "runs": [], "bandwidth": {}}
    only = set(args.only.split(",")) if args.only else None
    for c in CONFIGS:
        if only and c not in only:
            continue
        row = {"config": c}
        tgb = ["--bucket-kb", str(int(args.bucket_mb * 1024))] if args.bucket_mb else []
        ptb = ["--bucket-mb", str(args.bucket_mb)] if args.bucket_mb else []
        cmds = {"tg1": ([exe, "--config", c] + q, MPI_ENV),
                "tgN": (mpirun(n) + [exe, "--config", c] + tgb + q, MPI_ENV)}
        if not args.no_torch:
            t = [py, os.path.join(HERE, "torch_ddp.py"), "--config", c] + q
            cmds["pt1"] = (t + ["--world", "1"], MPI_ENV)
            cmds["ptN"] = (t + ["--world", str(n)] + ptb, MPI_ENV)
        for key, (cmd, env) in cmds.items():
            r, err = run_bench.run(cmd, env, args.timeout)
            row[key], row[key + "_error"] = r, err
        row["tg_eff"] = efficiency(row["tg1"], row["tgN"], n)
        row["pt_eff"] = efficiency(row.get("pt1"), row.get("ptN"), n)
        print_row(row, n, header=not doc["runs"])
        doc["runs"].append(row)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    if not args.no_bandwidth:
        for name, btl in (("shared memory (vader)", "self,vader"), ("TCP loopback", "tcp,self")):
            if args.wait_quiet > 0:
                run_bench.wait_quiet()
            rows, err = bandwidth(bench_dir, n, btl, args.quick, args.timeout)
            doc["bandwidth"][btl] = {"name": name, "rows": rows, "error": err}
    doc["loadavg_end"] = run_bench.loadavg()
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=1)
    print_all(doc)
    print(f"\nresults written to {args.json}")
    return 0


def f(x, spec, w):
    return f"{'-':>{w}}" if x is None else f"{x:{w}{spec}}"


def print_row(row, n, header=False):
    if header:
        print(f"{'config':12} {'N':>2} {'tg ms':>8} {'pt ms':>8} {'tg smp/s':>9} {'pt smp/s':>9} "
              f"{'tg/pt':>6} {'tg eff':>6} {'pt eff':>6} {'tg hid':>6} {'pt hid':>6} "
              f"{'tg ar ms':>8} {'pt ar ms':>8} {'tg 1p ms':>8} {'pt 1p ms':>8} {'busy':>9}")
    tg, pt = row.get("tgN"), row.get("ptN")
    g = lambda r, k: r.get(k) if r else None  # noqa: E731
    ratio = (g(tg, "samples_per_s") / g(pt, "samples_per_s")
             if g(tg, "samples_per_s") and g(pt, "samples_per_s") else None)
    busy = "/".join(run_bench.busy(r) for r in (tg, pt))
    print(f"{row['config']:12} {n:2d} {f(g(tg, 'ms'), '.2f', 8)} {f(g(pt, 'ms'), '.2f', 8)} "
          f"{f(g(tg, 'samples_per_s'), '.1f', 9)} {f(g(pt, 'samples_per_s'), '.1f', 9)} "
          f"{f(ratio, '.2f', 6)} {f(row['tg_eff'], '.2f', 6)} {f(row['pt_eff'], '.2f', 6)} "
          f"{f(g(tg, 'hidden'), '.2f', 6)} {f(g(pt, 'hidden'), '.2f', 6)} "
          f"{f(g(tg, 'allreduce_ms'), '.2f', 8)} {f(g(pt, 'allreduce_ms'), '.2f', 8)} "
          f"{f(g(row.get('tg1'), 'ms'), '.2f', 8)} {f(g(row.get('pt1'), 'ms'), '.2f', 8)} "
          f"{busy:>9}", flush=True)
    for k in ("tg1", "tgN", "pt1", "ptN"):
        if row.get(k + "_error"):
            print(f"    {k}: {row[k + '_error']}", flush=True)


def print_all(doc):
    m = doc["machine"]
    bucket = f"{doc['bucket_mb']:g} MiB buckets" if doc.get("bucket_mb") else "default buckets"
    print(f"\ndata-parallel training, {doc['world']} processes x 1 thread, {bucket} — "
          f"{m.get('Model name', '?')}, {m.get('nproc')} CPUs, {doc['date']}, git {doc['git']}, "
          f"load average {run_bench.fmt_load(doc['loadavg_start'])} -> "
          f"{run_bench.fmt_load(doc['loadavg_end'])}")
    for i, row in enumerate(doc["runs"]):
        print_row(row, doc["world"], header=i == 0)
    for btl, b in doc["bandwidth"].items():
        print(f"\nMPI_Allreduce, {doc['world']} ranks, {b['name']} (--mca btl {btl}):")
        if b["error"]:
            print(f"    error: {b['error']}")
        print(f"  {'bytes':>10} {'best us':>10} {'median us':>10} {'busbw GB/s':>10}")
        for r in b["rows"]:
            print(f"  {int(r['bytes']):10d} {r['us']:10.1f} {r['us_median']:10.1f} "
                  f"{r['busbw_gbs']:10.3f}")


if __name__ == "__main__":
    sys.exit(main())
