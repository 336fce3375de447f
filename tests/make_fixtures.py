#!/usr/bin/python3
"""Regenerates tapegrad's PyTorch parity fixtures: tests/fixtures/<case>.safetensors.

    /usr/bin/python3 tests/make_fixtures.py                  # every case
    /usr/bin/python3 tests/make_fixtures.py --only 'op_add*' # a glob (or a plain substring)
    /usr/bin/python3 tests/make_fixtures.py --list           # names only
    /usr/bin/python3 tests/make_fixtures.py --out /tmp/fx    # elsewhere (e.g. to compare)
    /usr/bin/python3 tests/make_fixtures.py --table          # markdown table of the files
    /usr/bin/python3 tests/make_fixtures.py --readme         # ... written into tests/README.md

Use Debian's python3-torch (/usr/bin/python3), not another Python. The cases live in
tests/fixturegen/*.py; every module there is imported and registers its cases with
@fixture. Output is deterministic: same torch build, same bytes.
"""

import os

# Before torch is imported: one thread everywhere (OpenMP and OpenBLAS), and the ATen
# kernels torch picks by default on this machine (AVX2; its FMA use matters for the
# optimizer fixtures: Adam's update rounds differently with and without FMA).
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
# OpenBLAS picks its GEMM kernel by CPU; the committed fixtures were made with its
# Sandybridge kernel (OPENBLAS_CORETYPE=Haswell changes the low bits of 86 files), so the
# kernel is pinned: the same script gives the same bytes on any x86-64 machine.
os.environ["OPENBLAS_CORETYPE"] = "Sandybridge"

import argparse  # noqa: E402
import fnmatch  # noqa: E402
import importlib  # noqa: E402
import pkgutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from fixturegen import common  # noqa: E402


def load_modules():
    """Imports every module of tests/fixturegen (sorted by name) so they register cases."""
    import fixturegen

    names = sorted(m.name for m in pkgutil.iter_modules(fixturegen.__path__))
    for n in names:
        if n != "common" and not n.startswith("_"):
            importlib.import_module(f"fixturegen.{n}")


def selected(name, pattern):
    if pattern is None:
        return True
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name


def cpu_capability():
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage:" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"


_SKIP_META = {"case", "seed", "torch", "cpu_capability", "keys", "bool"}


def _shape(shape):
    return "[" + ",".join(str(d) for d in shape) + "]"


BEGIN, END = "<!-- BEGIN GENERATED TABLE -->", "<!-- END GENERATED TABLE -->"


def update_readme(lines):
    path = os.path.join(HERE, "README.md")
    with open(path) as f:
        text = f.read()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(head + BEGIN + "\n".join(lines) + "\n" + END + tail)
    print(f"updated {path}")


def table_lines(cases, out_dir):
    """One markdown table per fixture module: case, op/module, arguments, tensors."""
    out = []
    by_module = {}
    for name, _, _, mod in cases:
        by_module.setdefault(mod.split(".")[-1], []).append(name)
    first = ["rng", "ops_elementwise", "ops_reduce", "ops_matmul_shape", "ops_index",
             "ops_loss_norm", "modules_rnn", "modules_attention", "optim"]
    mods = [m for m in first if m in by_module] + sorted(m for m in by_module if m not in first)
    for mod in mods:
        names = by_module[mod]
        out.append(f"\n#### `{mod}.py`\n")
        out.append("| case | op / module | arguments (metadata) | tensors: name dtype shape |")
        out.append("|---|---|---|---|")
        for name in names:
            tensors, meta = common.read_safetensors(os.path.join(out_dir, name + ".safetensors"))
            what = meta.get("op") or meta.get("module") or meta.get("optimizer") \
                or meta.get("scheduler") or ""
            args = "; ".join(f"{k}={v}" for k, v in meta.items()
                             if k not in _SKIP_META and k not in ("op", "module", "optimizer",
                                                                   "scheduler"))
            parts, nparam = [], 0
            for k in sorted(tensors, key=_tensor_order):
                dt, shape, _ = tensors[k]
                if k.startswith(("param.", "grad.param.", "after1.", "after20.")):
                    nparam += 1
                    continue
                tag = " bool" if k in meta.get("bool", "").split(",") else ""
                parts.append(f"`{k}` {dt}{tag} {_shape(shape)}")
            if nparam:
                prefixes = sorted({k.split(".")[0] + (".param" if k.startswith("grad.param")
                                                      else "") for k in tensors
                                   if k.startswith(("param.", "grad.param.", "after"))})
                keys = meta.get("keys", "").split(",")
                which = (", ".join(keys) if len(keys) <= 8
                         else f"the {len(keys)} keys in meta `keys`")
                parts.append(" + ".join(f"`{p}.*`" for p in prefixes) + f" for {which}")
            args = args.replace("|", "/").replace("*", "\\*")
            out.append(f"| `{name}` | {what} | {args} | {'<br>'.join(parts)} |")
    return out


def _tensor_order(k):
    order = ("in.", "out", "gout", "grad.", "mt.", "state")
    for i, p in enumerate(order):
        if k.startswith(p):
            return (i, k)
    return (len(order), k)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", metavar="PATTERN", help="glob, or substring, of case names")
    ap.add_argument("--out", default=os.path.join(HERE, "fixtures"), help="output folder")
    ap.add_argument("--list", action="store_true", help="list the case names and exit")
    ap.add_argument("--table", action="store_true",
                    help="print the markdown case table of tests/README.md (reads the files)")
    ap.add_argument("--readme", action="store_true",
                    help="rewrite the generated case catalogue in tests/README.md")
    ap.add_argument("--prune", action="store_true",
                    help="delete *.safetensors in the output folder that no case makes")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    load_modules()
    cases = common.registry()
    if args.list:
        for name, seed, _, mod in cases:
            print(f"{name:48s} {mod.split('.')[-1]:20s} seed {seed}")
        return 0

    if args.table:
        print("\n".join(table_lines(cases, args.out)))
        return 0
    if args.readme:
        update_readme(table_lines(cases, args.out))
        return 0

    os.makedirs(args.out, exist_ok=True)
    todo = [c for c in cases if selected(c[0], args.only)]
    if not todo:
        print(f"no case matches {args.only!r}", file=sys.stderr)
        return 1
    capability = cpu_capability()
    t0, total = time.time(), 0
    for name, seed, fn, mod in todo:
        torch.manual_seed(seed)
        tensors, meta = fn()
        meta = {"case": name, "seed": str(seed), "torch": torch.__version__,
                "cpu_capability": capability, **meta}
        _, size = common.case(name, tensors, meta, args.out)
        total += size
    print(f"wrote {len(todo)} fixtures ({total / 1024:.1f} KiB) to {args.out} "
          f"in {time.time() - t0:.1f} s (torch {torch.__version__})")

    if args.only is None:
        made = {c[0] + ".safetensors" for c in cases}
        stale = sorted(f for f in os.listdir(args.out)
                       if f.endswith(".safetensors") and f not in made)
        for f in stale:
            if args.prune:
                os.remove(os.path.join(args.out, f))
                print(f"removed stale {f}")
            else:
                print(f"warning: {f} is made by no case (use --prune to delete it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
