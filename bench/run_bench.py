#!/usr/bin/python3
"""bench/run_bench.py — runs every tapegrad benchmark next to its PyTorch twin (and oneDNN's
layers) at each thread count, prints one table and writes the results as JSON.
scripts/bench.sh builds the programs in release mode and calls this; run it directly to
re-run a subset on an existing build:

    /usr/bin/python3 bench/run_bench.py --build build/release [--quick] [--threads 1,2]
        [--only gru_cls,tiny_cell] [--no-gemm] [--cpu-time] [--json bench/results.json]

The JSON keeps one run per CPU model ({"by_cpu": {"model name (family F, model M)" of /proc/cpuinfo: run}}): a run
replaces its own machine's entry only. --readme README.md writes the run's table, headed by the
CPU model, between the README's "bench table" markers (--from-json ... --readme: an earlier run's).
The contention row (--only contention; --no-contention skips it) times examples/addition with the
default threads on the machine as it is and beside two busy processes, and prints the slowdown.

Every configuration runs in its own process (peak RSS is per config). PyTorch runs in its
best setting at the thread count (the issue's rule): at 1 thread OMP_NUM_THREADS=1
OPENBLAS_NUM_THREADS=1; at N > 1 both of
    omp    torch.set_num_threads(N), OMP_NUM_THREADS=N, OMP_WAIT_POLICY=PASSIVE,
           OPENBLAS_NUM_THREADS=N
    blas   torch 1 thread (OMP_NUM_THREADS=1), OpenBLAS's own N threads
and the faster one is kept (named in the table's last column). tapegrad at N > 1 likewise
takes the better of OpenMP's default wait policy and OMP_WAIT_POLICY=PASSIVE (column "tg
set"; bench_gemm.py does the same); both timings of both sides are in the JSON.

Columns: ms/step is the best round's wall-clock time per step (--cpu-time: process CPU time
divided by the thread count instead, for a busy shared machine); ratio = PyTorch / tapegrad
(> 1: tapegrad is faster); GFLOP/s = useful FLOPs (GEMMs forward and backward, counted by the
C program) / tapegrad's time; % peak of PEAK_PER_CORE x threads; mallocs/step after the
first step (tapegrad; counted by interposing malloc); peak RSS (ru_maxrss) of both processes;
loss0 = the first step's loss on both sides (same init, same data: equal up to rounding,
except where dropout draws differ); busy = how many CPUs other processes kept busy during
each side's run (this is meant for a quiet machine: each run first waits, up to
--wait-quiet seconds, for the others to go below 0.3 CPU; a busy figure near 1 on a 2-core
machine means a 2-thread result is not to be trusted).
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time

# GFLOP/s fp32 of one core: measured at start by bench/peak_flops (vector FMAs on independent
# chains); this figure (2 x 256-bit FMA per cycle at ~3.66 GHz) only if that program is missing.
PEAK_PER_CORE = 117.0
HERE = os.path.dirname(os.path.abspath(__file__))

# (config, tapegrad program, its arguments); the PyTorch twin is torch_models.py --config.
CONFIGS = [
    ("gru_cls", "bench_classifier", ["--config", "gru_cls"]),
    ("lstm_cls", "bench_classifier", ["--config", "lstm_cls"]),
    ("gru_lm", "bench_lm", ["--config", "gru_lm"]),
    ("char_lm", "bench_lm", ["--config", "char_lm"]),
    ("seq2seq_attn", "bench_seq2seq_attn", []),
    ("transformer", "bench_transformer", []),
    ("tiny_cell", "bench_tiny_cell", []),
    ("gru_cls_infer", "bench_classifier", ["--config", "gru_cls", "--inference"]),
    ("gru_lm_infer", "bench_lm", ["--config", "gru_lm", "--inference"]),
    ("gru_cls_layer", "bench_rnn_layer", ["--config", "gru_cls_layer"]),
    ("lstm_cls_layer", "bench_rnn_layer", ["--config", "lstm_cls_layer"]),
    ("gru_lm_layer0", "bench_rnn_layer", ["--config", "gru_lm_layer0"]),
    ("gru_lm_layer1", "bench_rnn_layer", ["--config", "gru_lm_layer1"]),
]
LAYERS = {"gru_cls_layer", "lstm_cls_layer", "gru_lm_layer0", "gru_lm_layer1"}


def parse_result(text):
    """The last 'result key=value ...' line of a run, as a dict (numbers converted)."""
    out = None
    for line in text.splitlines():
        if line.startswith("result "):
            out = {}
            for kv in line.split()[1:]:
                k, _, v = kv.partition("=")
                try:
                    out[k] = float(v) if k not in ("config", "impl", "setting") else v
                except ValueError:
                    out[k] = v
    return out


def cpu_busy_seconds():
    """CPU seconds all processes of the machine spent busy so far (/proc/stat)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# Waiting for a quiet machine: before each run, until the other processes use less than
# QUIET_CPUS CPUs for 3 s in a row (at most WAIT_QUIET_S seconds; 0 = do not wait).
QUIET_CPUS = 0.3
WAIT_QUIET_S = [0]
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def wait_quiet():
    deadline = time.monotonic() + WAIT_QUIET_S[0]
    calm = 0
    while time.monotonic() < deadline and calm < 3:
        b0 = cpu_busy_seconds()
        time.sleep(1.0)
        b1 = cpu_busy_seconds()
        calm = calm + 1 if b0 is not None and b1 - b0 < QUIET_CPUS else 0


def run(cmd, env_extra, timeout):
    """Runs one benchmark process; returns (result dict, None) or (None, error). The result
    gets `others_cpus`: how many CPUs other processes kept busy, on average, meanwhile."""
    env = dict(os.environ)
    # Thread settings come from env_extra only. OpenBLAS picks its kernels from the CPU unless
    # OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE force others: forcing e.g. Haswell on an AVX-512
    # machine halves torch.mm, so PyTorch runs with OpenBLAS's own choice (its best).
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY") + BLAS_OVERRIDES:
        env.pop(k, None)
    env.update(env_extra)
    if WAIT_QUIET_S[0] > 0:
        wait_quiet()
    b0, c0, t0 = cpu_busy_seconds(), children_cpu_seconds(), time.monotonic()
    try:
        res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timeout after {timeout} s"
    b1, c1, t1 = cpu_busy_seconds(), children_cpu_seconds(), time.monotonic()
    r = parse_result(res.stdout)
    if res.returncode != 0 or r is None:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        return None, f"exit {res.returncode}: {' | '.join(tail)}"
    r["notes"] = [l for l in res.stdout.splitlines() if l.startswith("#")]
    if b0 is not None and t1 > t0:
        r["others_cpus"] = max(0.0, ((b1 - b0) - (c1 - c0)) / (t1 - t0))
    return r, None


def metric(r, threads, cpu_time):
    if r is None:
        return None
    return r["cpu_ms"] / threads if cpu_time else r["ms"]


def torch_settings(t):
    if t == 1:
        return [("1", {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}, 1)]
    return [("omp", {"OMP_NUM_THREADS": str(t), "OPENBLAS_NUM_THREADS": str(t),
                     "OMP_WAIT_POLICY": "PASSIVE"}, t),
            ("blas", {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": str(t)}, 1)]


def loadavg():
    try:
        return os.getloadavg()
    except OSError:
        return None


def machine():
    info = {"platform": platform.platform(), "nproc": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], stdout=subprocess.PIPE, text=True).stdout
        for key in ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache", "L3 cache"):
            m = re.search(rf"^{re.escape(key)}:\s*(.+)$", out, re.M)
            if m:
                info[key] = m.group(1).strip()
        for key, name in (("CPU family", "cpu family"), ("Model", "model")):
            m = re.search(rf"^{key}:\s*(\d+)\s*$", out, re.M)
            if m:
                info[name] = int(m.group(1))
        flags = re.search(r"^Flags:\s*(.+)$", out, re.M)
        if flags:
            f = flags.group(1).split()
            info["simd"] = [x for x in ("avx2", "fma", "avx512f") if x in f]
    except OSError:
        pass
    return info


def cpu_key(name, info):
    """The key of a machine's results: its model name, with the CPU family and model when the
    name alone does not tell CPUs apart (a KVM guest shows a bare "AMD EPYC" on Zen 4 and
    Zen 5 alike)."""
    if "cpu family" in info and "model" in info:
        return f"{name} (family {info['cpu family']}, model {info['model']})"
    return name


def cpu_model():
    """This machine's key: /proc/cpuinfo's model name, family and model."""
    name, info = None, {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and name is None:
                    name = value
                elif key in ("cpu family", "model") and key not in info and value.isdigit():
                    info[key] = int(value)
    except OSError:
        pass
    return cpu_key(name or platform.processor() or "unknown CPU", info)


# bench/results.json holds one run per CPU model: {"by_cpu": {model: run, ...}}, so that a
# run on one machine replaces that machine's figures and never mixes with another's. (A file
# from before holds one run at the top level; it is filed under its own model name.)
def results_load(path):
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {"by_cpu": {}}
    runs = doc["by_cpu"].values() if "by_cpu" in doc else [doc]
    # Runs filed under a bare model name before the key carried family and model are filed
    # again under the full key when they recorded family and model; one that did not keeps
    # its name with its measured peak, which tells Zen 4 (117 GFLOP/s) from Zen 5 (~278).
    store = {"by_cpu": {}}
    for run in runs:
        m = run.get("machine", {})
        name = run.get("cpu_model") or m.get("Model name", "unknown CPU")
        if "(family" not in name:
            name = cpu_key(name, m)
        if "(family" not in name and "peak_gflops_per_core" in run:
            name += f" (family not recorded; {run['peak_gflops_per_core']:.0f} GFLOP/s per core)"
        run["cpu_model"] = name
        store["by_cpu"][name] = run
    return store


def results_store(path, run):
    store = results_load(path)
    store["by_cpu"][run["cpu_model"]] = run
    store["by_cpu"] = dict(sorted(store["by_cpu"].items()))
    with open(path, "w") as f:
        json.dump(store, f, indent=1)


def markdown_table(doc):
    """The README's table of one run: a line naming the CPU, the table, the contention row."""
    m = doc.get("machine", {})
    rev = doc.get("git", "?")
    fam = (f"family {m['cpu family']}, model {m['model']}; "
           if "cpu family" in m and "model" in m and "(family" not in doc.get("cpu_model", "")
           else "")
    lines = [f"Measured {doc.get('date', '?')[:10]} on **{doc.get('cpu_model', '?')}** "
             f"({fam}{m.get('nproc', '?')} CPUs; {', '.join(m.get('simd', [])) or 'no AVX'}), "
             f"commit {rev}, load average {fmt_load(doc.get('loadavg_start'))} -> "
             f"{fmt_load(doc.get('loadavg_end'))}:", "",
             "| config | threads | tapegrad ms | PyTorch ms | ratio | GFLOP/s | % peak | "
             "mallocs/step | RSS MB tg / PyTorch | oneDNN ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    peak = doc.get("peak_gflops_per_core", PEAK_PER_CORE)
    for row in doc.get("runs", []):
        t, tg, pt, dn = row["threads"], row.get("tapegrad"), row.get("torch"), row.get("onednn")
        tgm, ptm = (tg or {}).get("ms"), (pt or {}).get("ms")
        gf = tg["flops"] / (tgm * 1e-3) / 1e9 if tgm else None

        def num(x, spec):
            return "–" if x is None else f"{x:{spec}}"
        def ms(x):  # three significant digits below 10 ms
            return num(x, ".3f" if x is not None and x < 1 else ".2f" if x is not None and x < 10
                       else ".1f")
        lines.append(
            f"| {row['config']} | {t} | {ms(tgm)} | {ms(ptm)} | "
            f"{num(ptm / tgm if tgm and ptm else None, '.2f')} | {num(gf, '.0f')} | "
            f"{num(100 * gf / (peak * t) if gf else None, '.0f')}% | "
            f"{num((tg or {}).get('mallocs_per_step'), '.0f')} | "
            f"{num(tg and tg['peak_rss_kb'] / 1024, '.0f')} / "
            f"{num(pt and pt['peak_rss_kb'] / 1024, '.0f')} | {ms((dn or {}).get('ms'))} |")
    c = doc.get("contention")
    if c and "slowdown" in c:
        lines += ["", f"Contention ({c['program']}, default threads): {c['idle']['s']:.1f} s on "
                      f"the machine as it was, {c['loaded']['s']:.1f} s beside {c['hogs']} busy "
                      f"processes: {c['slowdown']:.2f}x."]
    return "\n".join(lines)


README_BEGIN, README_END = "<!-- bench table: begin -->", "<!-- bench table: end -->"


def readme_update(path, doc):
    """Replaces the README's table (between the two markers) with this run's."""
    with open(path) as f:
        text = f.read()
    a, b = text.find(README_BEGIN), text.find(README_END)
    if a < 0 or b < a:
        print(f"{path}: no '{README_BEGIN}' ... '{README_END}' markers: table not written",
              file=sys.stderr)
        return
    text = text[:a + len(README_BEGIN)] + "\n" + markdown_table(doc) + "\n" + text[b:]
    with open(path, "w") as f:
        f.write(text)
    print(f"table written into {path}")


def git_rev(root):
    try:
        rev = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except OSError:
        return "unknown"


# The contention row: the addition example (default settings: as many threads as the
# library picks) timed on the machine as it is, then beside two busy processes (`yes`), which on
# a 2-core machine keep every core busy. Threads that wait for a descheduled partner by
# spinning make the second run many times slower; the library's default should only lose the
# cores the hogs take: at most ~2.5x on 2 cores.
CONTENTION_HOGS = 2


def run_contention(build, steps, timeout):
    exe = os.path.join(build, "examples", "addition")
    if not os.path.exists(exe):
        return {"error": f"{exe} missing (build with -Dexamples=true)"}
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(k, None)
    cmd = [exe, "--steps", str(steps), "--checkpoint", "none"]

    def timed():  # wall seconds, and CPU seconds (a thread spinning at a barrier shows here)
        load0, t0, c0 = loadavg(), time.monotonic(), children_cpu_seconds()
        try:
            res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timeout after {timeout} s"}
        if res.returncode != 0:
            return {"error": f"exit {res.returncode}: {res.stderr.strip()[-200:]}"}
        return {"s": time.monotonic() - t0, "cpu_s": children_cpu_seconds() - c0,
                "loadavg": load0}

    if WAIT_QUIET_S[0] > 0:
        wait_quiet()
    idle = timed()
    hogs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(CONTENTION_HOGS)]
    try:
        time.sleep(1.0)  # let the scheduler see them
        loaded = timed()
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    out = {"program": f"examples/addition --steps {steps}", "hogs": CONTENTION_HOGS,
           "idle": idle, "loaded": loaded}
    if "s" in idle and "s" in loaded:
        out["slowdown"] = loaded["s"] / idle["s"]
    return out


def print_contention(c):
    if not c:
        return
    if "slowdown" not in c:
        print(f"\ncontention: {c.get('error') or c.get('idle', {}).get('error') or c.get('loaded', {}).get('error')}")
        return
    print(f"\ncontention ({c['program']}, default threads): {c['idle']['s']:.1f} s "
          f"({c['idle'].get('cpu_s', 0):.1f} s CPU) as the machine is (load "
          f"{fmt_load(c['idle']['loadavg'])}), {c['loaded']['s']:.1f} s "
          f"({c['loaded'].get('cpu_s', 0):.1f} s CPU) beside {c['hogs']} busy processes (load "
          f"{fmt_load(c['loaded']['loadavg'])}): slowdown {c['slowdown']:.2f}x")


def fmt(x, spec, width):
    return f"{'-':>{width}}" if x is None else f"{x:{width}{spec}}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build/release", help="the meson build directory")
    ap.add_argument("--quick", action="store_true", help="fewer, shorter rounds (smoke run)")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--only", help="configs to run, comma-separated (default all; \"contention\": that row)")
    ap.add_argument("--no-gemm", action="store_true", help="skip the GEMM table")
    ap.add_argument("--no-contention", action="store_true",
                    help="skip the contention row (addition example, idle and beside 2 busy processes)")
    ap.add_argument("--contention-steps", type=int, default=500, metavar="N",
                    help="training steps of the contention row's runs (--quick: 100)")
    ap.add_argument("--no-torch", action="store_true", help="tapegrad (and oneDNN) only")
    ap.add_argument("--cpu-time", action="store_true",
                    help="rank by process CPU time / threads instead of wall-clock time")
    ap.add_argument("--json", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per process")
    ap.add_argument("--wait-quiet", type=int, default=300, metavar="S",
                    help="before each run wait up to S seconds for other processes to use "
                         f"< {QUIET_CPUS} CPU (a shared machine; 0 = do not wait)")
    ap.add_argument("--from-json", metavar="PATH",
                    help="print the tables of an earlier run's JSON, one per CPU model (with "
                         "--cpu-time: by CPU time; with --readme: write that CPU's into the README)")
    ap.add_argument("--cpu", metavar="MODEL",
                    help="with --from-json: only this CPU model's run (default: all; --readme: "
                         "this machine's)")
    ap.add_argument("--readme", metavar="PATH",
                    help="write the run's table (markdown, naming the CPU model) into PATH between "
                         f"the markers {README_BEGIN} and {README_END}")
    args = ap.parse_args()
    if args.from_json:
        store = results_load(args.from_json)
        want = args.cpu or (cpu_model() if args.readme else None)
        for model, doc in store["by_cpu"].items():
            if want and model != want:
                continue
            doc["metric"] = "cpu_ms/threads" if args.cpu_time else "wall ms (best round)"
            print_table(doc, doc["runs"], args.cpu_time, doc.get("torch_version", "?"))
            if args.readme:
                doc.setdefault("cpu_model", model)
                readme_update(args.readme, doc)
        return

    WAIT_QUIET_S[0] = args.wait_quiet
    threads = [int(x) for x in args.threads.split(",") if x]
    only = set(args.only.split(",")) if args.only else None
    bench_dir = os.path.join(args.build, "bench")
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    torch_script = os.path.join(HERE, "torch_models.py")
    common = ["--quick"] if args.quick else []
    onednn = os.path.join(bench_dir, "onednn_rnn")
    have_onednn = os.path.exists(onednn)

    global PEAK_PER_CORE
    peak_source = "assumed"
    peak_exe = os.path.join(bench_dir, "peak_flops")
    if os.path.exists(peak_exe):
        out = subprocess.run([peak_exe], capture_output=True, text=True).stdout.split()
        if len(out) >= 3 and out[0] == "peak_gflops" and float(out[1]) > 0:
            PEAK_PER_CORE, peak_source = float(out[1]), "measured by bench/peak_flops, " + out[2]
    doc = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "git": git_rev(os.path.dirname(HERE)), "cpu_model": cpu_model(), "machine": machine(),
           "peak_gflops_per_core": PEAK_PER_CORE, "peak_source": peak_source, "quick": args.quick,
           "metric": "cpu_ms/threads" if args.cpu_time else "wall ms (best round)",
           "loadavg_start": loadavg(), "runs": [], "gemm": {}}
    rows = []
    for t in threads:
        for name, prog, pargs in CONFIGS:
            if only and name not in only:
                continue
            exe = os.path.join(bench_dir, prog)
            row = {"config": name, "threads": t}
            # tapegrad in its best setting too (as bench_gemm.py): at N > 1 the better of
            # OpenMP's default wait policy (spins at barriers: best on a quiet machine) and
            # OMP_WAIT_POLICY=PASSIVE (sleeps: better when another process shares the cores)
            tg, errs, tried = None, [], {}
            for label, env in [("default", {})] + ([("passive", {"OMP_WAIT_POLICY": "PASSIVE"})]
                                                   if t > 1 else []):
                r, e = run([exe] + pargs + ["--threads", str(t)] + common, env, args.timeout)
                if e:
                    errs.append(f"{label}: {e}")
                    continue
                r["setting"] = label
                tried[label] = metric(r, t, args.cpu_time)
                if tg is None or metric(r, t, args.cpu_time) < metric(tg, t, args.cpu_time):
                    tg = r
            row["tapegrad"], row["tapegrad_error"] = tg, "; ".join(errs) or None
            row["tapegrad_settings_ms"] = tried
            if not args.no_torch:
                best, errs, tried = None, [], {}
                for label, env, tt in torch_settings(t):
                    r, e = run([py, torch_script, "--config", name, "--threads", str(t),
                                "--torch-threads", str(tt), "--setting", label] + common, env,
                               args.timeout)
                    if e:
                        errs.append(f"{label}: {e}")
                        continue
                    tried[label] = metric(r, t, args.cpu_time)
                    if best is None or metric(r, t, args.cpu_time) < metric(best, t, args.cpu_time):
                        best = r
                row["torch"], row["torch_error"] = best, "; ".join(errs) or None
                row["torch_settings_ms"] = tried
            if name in LAYERS and have_onednn:  # oneDNN runs on OpenMP too: same two settings
                best, errs = None, []
                for label, env in [("default", {})] + ([("passive", {"OMP_WAIT_POLICY": "PASSIVE"})]
                                                       if t > 1 else []):
                    r, e = run([onednn, "--config", name, "--threads", str(t)] + common, env,
                               args.timeout)
                    if e:
                        errs.append(f"{label}: {e}")
                        continue
                    r["setting"] = label
                    if best is None or metric(r, t, args.cpu_time) < metric(best, t, args.cpu_time):
                        best = r
                row["onednn"], row["onednn_error"] = best, "; ".join(errs) or None
            rows.append(row)
            print_row(row, args.cpu_time, progress=True)
            doc["runs"].append(row)
            results_store(args.json, doc)  # partial results survive an interrupted run

    if not args.no_contention and (not only or "contention" in only):
        doc["contention"] = run_contention(args.build, 100 if args.quick else args.contention_steps,
                                           args.timeout)
        print_contention(doc["contention"])

    if not args.no_gemm:
        for t in threads:
            doc["gemm"][str(t)] = run_gemm(py, bench_dir, t, args)

    doc["loadavg_end"] = loadavg()
    doc["torch_version"] = torch_version(py)
    results_store(args.json, doc)
    print_table(doc, rows, args.cpu_time, doc["torch_version"])
    print(f"\nresults written to {args.json} (entry \"{doc['cpu_model']}\")")
    if args.readme:
        readme_update(args.readme, doc)


def print_table(doc, rows, cpu_time, tv):
    global PEAK_PER_CORE
    PEAK_PER_CORE = doc.get("peak_gflops_per_core", PEAK_PER_CORE)  # an earlier run's own peak
    print()
    print(f"tapegrad vs PyTorch {tv} — {doc.get('cpu_model') or doc['machine'].get('Model name', '?')}, "
          f"{doc['machine'].get('nproc')} CPUs, {doc['date']}, git {doc['git']}")
    print(f"time = {doc['metric']}; ratio = PyTorch/tapegrad (>1: tapegrad faster); "
          f"% peak of {PEAK_PER_CORE:.0f} GFLOP/s per thread ({doc.get('peak_source', '?')}); load average "
          f"{fmt_load(doc.get('loadavg_start'))} -> {fmt_load(doc.get('loadavg_end'))}")
    print_header()
    for row in rows:
        print_row(row, cpu_time)
    print_contention(doc.get("contention"))
    for t, g in doc.get("gemm", {}).items():
        if g.get("table"):
            print(f"\nGEMM GFLOP/s, {t} thread{'s' if t != '1' else ''} (tapegrad tg_gemm vs torch.mm):")
            for line in g["table"]:
                print("  " + line)


def fmt_load(l):
    return "?" if not l else "/".join(f"{x:.1f}" for x in l)


def torch_version(py):
    try:
        return subprocess.run([py, "-c", "import torch; print(torch.__version__)"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, timeout=120).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


HEADER = (f"{'config':15} {'thr':>3} {'tapegrad':>9} {'PyTorch':>9} {'ratio':>6} {'GFLOP/s':>8} "
          f"{'%peak':>6} {'torchGF':>7} {'mallocs':>8} {'RSS tg':>7} {'RSS pt':>7} "
          f"{'oneDNN':>8} {'vs1DNN':>6} {'loss0 tg / pt':>19} {'tg set':>7} {'pt set':>6} {'busy tg/pt':>10}")


def print_header():
    print(HEADER)
    print(f"{'':15} {'':>3} {'ms/step':>9} {'ms/step':>9} {'':>6} {'':>8} {'':>6} {'':>7} "
          f"{'/step':>8} {'MB':>7} {'MB':>7} {'ms/step':>8}")


_printed_header = [False]


def print_row(row, cpu_time, progress=False):
    if progress and not _printed_header[0]:
        print_header()
        _printed_header[0] = True
    t = row["threads"]
    tg, pt, dn = row.get("tapegrad"), row.get("torch"), row.get("onednn")
    tgm, ptm, dnm = metric(tg, t, cpu_time), metric(pt, t, cpu_time), metric(dn, t, cpu_time)
    ratio = ptm / tgm if tgm and ptm else None
    gf = tg["flops"] / (tgm * 1e-3) / 1e9 if tgm else None
    ptgf = tg["flops"] / (ptm * 1e-3) / 1e9 if tg and ptm else None
    peak = 100.0 * gf / (PEAK_PER_CORE * t) if gf else None
    vs = dnm / tgm if tgm and dnm else None
    loss = "-"
    if tg and pt:
        loss = f"{tg['loss0']:.4f} / {pt['loss0']:.4f}"
    line = (f"{row['config']:15} {t:3d} {fmt(tgm, '.2f', 9)} {fmt(ptm, '.2f', 9)} {fmt(ratio, '.2f', 6)} "
            f"{fmt(gf, '.1f', 8)} {fmt(peak, '.1f', 6)} {fmt(ptgf, '.1f', 7)} "
            f"{fmt(tg and tg['mallocs_per_step'], '.1f', 8)} "
            f"{fmt(tg and tg['peak_rss_kb'] / 1024, '.0f', 7)} {fmt(pt and pt['peak_rss_kb'] / 1024, '.0f', 7)} "
            f"{fmt(dnm, '.2f', 8)} {fmt(vs, '.2f', 6)} {loss:>19} {(tg or {}).get('setting', '-'):>7} "
            f"{(pt or {}).get('setting', '-'):>6} {busy(tg)}/{busy(pt)}")
    print(line, flush=True)
    for key in ("tapegrad_error", "torch_error", "onednn_error"):
        if row.get(key):
            print(f"    {key}: {row[key]}", flush=True)


def busy(r):
    return "-" if not r or "others_cpus" not in r else f"{r['others_cpus']:.1f}"


def run_gemm(py, bench_dir, t, args):
    exe = os.path.join(bench_dir, "bench_gemm")
    cmd = [py, os.path.join(HERE, "bench_gemm.py"), "--threads", str(t), "--tapegrad", exe]
    # the OpenBLAS comparison build (scripts/bench.sh makes it when libopenblas-dev is there)
    blas_exe = os.path.join(os.path.dirname(bench_dir) + "-blas", "bench", "bench_gemm")
    if os.path.exists(blas_exe):
        cmd += ["--blas", blas_exe]
    if args.quick:
        cmd.append("--quick")
    if args.cpu_time:
        cmd.append("--cpu-time")
    if WAIT_QUIET_S[0] > 0:
        wait_quiet()
    try:
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timeout"}
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-3:]}
    lines = res.stdout.splitlines()
    shapes = []
    for line in lines:
        p = line.split()
        if len(p) == 7 and p[0] in ("NN", "NT", "TN", "TT"):
            shapes.append({"case": p[0], "m": int(p[1]), "n": int(p[2]), "k": int(p[3]),
                           "tapegrad": float(p[4]), "torch": float(p[5]), "ratio": float(p[6])})
    return {"table": lines, "shapes": shapes}


if __name__ == "__main__":
    main()
