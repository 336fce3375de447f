#!/usr/bin/python3
"""bench/bench_gemm.py — torch.mm GFLOP/s on the shapes of bench_gemm.c, and the table.

    /usr/bin/python3 bench/bench_gemm.py [--threads N] [--quick] [--cpu-time]
                                         [--only squares|rnn|tiny] [--tapegrad PATH]

Prints the same "gemm <case> <m> <n> <k> <GFLOP/s>" lines as bench_gemm.c for torch.mm
(Debian's python3-torch, whose matrix products go to the system BLAS: install
libopenblas0-pthread for OpenBLAS, else it is the slow reference BLAS; the BLAS found is
printed). With --tapegrad PATH it also runs that bench_gemm binary with the same options
and prints one table: shape, tapegrad, torch, ratio.

Threads, as the speed issue asks: at 1 thread torch and OpenBLAS both get 1; at N > 1 each
shape takes the better of (a) torch N threads with OMP_WAIT_POLICY=PASSIVE and OpenBLAS N
threads and (b) torch 1 thread, OpenBLAS's own N threads. Each configuration runs in its
own process, since these are fixed when the libraries load. tapegrad at N > 1 likewise
takes the better of OpenMP's default wait policy and OMP_WAIT_POLICY=PASSIVE.
"""
import argparse
import os
import subprocess
import sys
import time


def shapes(only):
    out = []
    if only in (None, "squares"):
        s = 64
        while s <= 2048:
            out.append(("NN", s, s, s))
            s *= 2
    if only in (None, "rnn"):
        for batch in (32, 64):
            for h in (128, 256, 512):
                for gates in (3, 4):
                    for case in ("NT", "NN", "TN"):
                        out.append((case, batch, gates * h, h))
    if only in (None, "tiny"):
        out += [("NT", 1, 96, 16), ("NT", 1, 96, 32), ("NN", 1, 32, 96), ("TN", 96, 32, 1)]
    return out


def blas_name():
    """Which BLAS library the process mapped (torch loads it at import)."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
        return ", ".join(sorted(os.path.basename(x) for x in libs)) or "unknown"
    except OSError:
        return "unknown"


def worker(args):
    """Runs in a child process: times torch.mm and prints the lines."""
    import torch

    torch.set_num_threads(args.torch_threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    div = max(1, args.threads) if args.cpu_time else 1
    round_s, rounds = (0.05, 2) if args.quick else (0.15, 3)
    print(f"# torch {torch.__version__} torch.mm float32, torch threads {torch.get_num_threads()}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, BLAS {blas_name()}",
          flush=True)
    torch.manual_seed(0)
    for case, m, n, k in shapes(args.only):
        a = torch.rand(k, m) - 0.5 if case[0] == "T" else torch.rand(m, k) - 0.5
        b = torch.rand(n, k) - 0.5 if case[1] == "T" else torch.rand(k, n) - 0.5
        opa = a.t() if case[0] == "T" else a
        opb = b.t() if case[1] == "T" else b
        c = torch.empty(m, n)
        flop = 2.0 * m * n * k
        reps = 1
        while True:
            t0 = clock()
            for _ in range(reps):
                torch.mm(opa, opb, out=c)
            dt = (clock() - t0) / div
            if dt > 0.02:
                reps = int(reps * round_s / dt) + 1
                break
            reps *= 4
        best = 0.0
        for _ in range(rounds):
            t0 = clock()
            for _ in range(reps):
                torch.mm(opa, opb, out=c)
            dt = (clock() - t0) / div
            best = max(best, flop * reps / dt / 1e9)
        print(f"gemm {case} {m} {n} {k} {best:.2f}", flush=True)


def run(cmd, env_extra):
    env = dict(os.environ)
    # OpenBLAS's own kernel choice for this CPU: a forced OPENBLAS_CORETYPE (e.g. Haswell on
    # an AVX-512 machine) would halve torch.mm (run_bench.py does the same).
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(k, None)
    env.update(env_extra)
    res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True)
    table, notes = {}, []
    for line in res.stdout.splitlines():
        if line.startswith("#"):
            notes.append(line)
        elif line.startswith("gemm "):
            _, case, m, n, k, g = line.split()
            table[(case, int(m), int(n), int(k))] = float(g)
    return table, notes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time by process CPU time / threads (a busy shared machine)")
    ap.add_argument("--only", choices=["squares", "rnn", "tiny"])
    ap.add_argument("--tapegrad", metavar="PATH", help="the bench_gemm binary to compare with")
    ap.add_argument("--blas", metavar="PATH",
                    help="bench_gemm of the -Dblas=enabled build (tg_gemm through OpenBLAS): "
                         "one more column")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--torch-threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    common = (["--quick"] if args.quick else []) + (["--cpu-time"] if args.cpu_time else []) \
        + (["--only", args.only] if args.only else []) + ["--threads", str(args.threads)]
    me = [sys.executable, os.path.abspath(__file__), "--worker"] + common
    t = args.threads
    configs = [({"OMP_NUM_THREADS": str(t), "OPENBLAS_NUM_THREADS": str(t),
                 "OMP_WAIT_POLICY": "PASSIVE"}, t)]
    if t > 1:
        configs.append(({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": str(t)}, 1))
    torch_best, notes = {}, []
    for env, tt in configs:
        table, n = run(me + ["--torch-threads", str(tt)], env)
        notes += n
        for key, g in table.items():
            torch_best[key] = max(g, torch_best.get(key, 0.0))

    if not args.tapegrad:
        for line in notes:
            print(line)
        for (case, m, n, k), g in torch_best.items():
            print(f"gemm {case} {m} {n} {k} {g:.2f}")
        return

    # tapegrad in its best setting too: OpenMP's default wait policy spins at barriers,
    # which is fastest on a quiet machine and slowest on a busy one; PASSIVE sleeps.
    mine, my_notes = run([args.tapegrad] + common, {})
    if t > 1:
        passive, _ = run([args.tapegrad] + common, {"OMP_WAIT_POLICY": "PASSIVE"})
        for key, g in passive.items():
            mine[key] = max(g, mine.get(key, 0.0))
        my_notes.append("# tapegrad: best of OMP_WAIT_POLICY default and PASSIVE")
    blas = {}
    if args.blas:  # same harness, tg_gemm built on OpenBLAS (its threads: OPENBLAS_NUM_THREADS)
        blas, blas_notes = run([args.blas] + common, {"OPENBLAS_NUM_THREADS": str(t)})
        my_notes += blas_notes
    for line in my_notes + notes:
        print(line)
    print(f"{'case':4} {'m':>5} {'n':>5} {'k':>5}  {'tapegrad':>9} {'torch.mm':>9} {'ratio':>6}"
          + (f" {'tg+OpenBLAS':>11}" if blas else "")
          + f"   (GFLOP/s, {t} thread{'s' if t > 1 else ''})")
    ratios = []
    for key, g in mine.items():
        tg = torch_best.get(key)
        case, m, n, k = key
        r = g / tg if tg else float("nan")
        ratios.append(r)
        extra = f" {blas[key]:11.1f}" if key in blas else ""
        print(f"{case:4} {m:5d} {n:5d} {k:5d}  {g:9.1f} {tg:9.1f} {r:6.2f}{extra}")
    if ratios:
        ratios.sort()
        print(f"# ratio: min {ratios[0]:.2f}, median {ratios[len(ratios) // 2]:.2f}")


if __name__ == "__main__":
    main()
