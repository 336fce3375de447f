#!/bin/sh
# The one benchmark command: builds tapegrad in release mode (build/release), runs every
# tapegrad benchmark and its PyTorch twin (Debian's python3-torch, in its best thread
# setting) at 1 and 2 threads, plus oneDNN's fused RNN layers and the GEMM table, prints one
# table, writes this CPU model's entry of bench/results.json and its table into README.md.
#
#   scripts/bench.sh [--quick] [--threads 1,2] [--only cfg1,cfg2] [--cpu-time] [--no-gemm]
#                    [--no-dist]
#
#   --quick      fewer, shorter rounds: a smoke run (a few minutes)
#   --cpu-time   rank by process CPU time / threads (a busy shared machine) instead of
#                wall-clock time
#   --no-dist    skip the data-parallel part (bench/run_dist_bench.py: tapegrad over MPI
#                against PyTorch DDP, 2 processes, and the all-reduce bandwidth), which runs
#                after the table when the build found MPI
# Other options go to bench/run_bench.py (see its --help). As root it installs what is
# missing (python3-torch, OpenBLAS for torch's BLAS and the comparison build, libdnnl-dev for
# the oneDNN program)
# through scripts/install-deps.sh. A full run takes about half an hour on 2 cores.
set -eu
cd "$(dirname "$0")/.."

sh scripts/install-deps.sh python3-torch libopenblas0-pthread libopenblas-dev libdnnl-dev ||
    echo "bench.sh: continuing without the missing packages" >&2

dir=build/release
if [ -d "$dir" ]; then
    meson setup --reconfigure "$dir" --buildtype=release >/dev/null
else
    meson setup "$dir" --buildtype=release >/dev/null
fi
ninja -C "$dir" >/dev/null

# The comparison build: tg_gemm through OpenBLAS (-Dblas=enabled), one more GEMM column.
if pkg-config --exists openblas; then
    if [ -d "$dir-blas" ]; then
        meson setup --reconfigure "$dir-blas" --buildtype=release -Dblas=enabled >/dev/null
    else
        meson setup "$dir-blas" --buildtype=release -Dblas=enabled >/dev/null
    fi
    ninja -C "$dir-blas" bench/bench_gemm >/dev/null
fi

if [ ! -x "$dir/bench/bench_classifier" ]; then
    echo "bench.sh: $dir/bench has no benchmark programs: the top-level meson.build needs subdir('bench')" >&2
    exit 1
fi

# --no-dist: skip the data-parallel part; the other options go to run_bench.py.
dist=1 quick=""
for a in "$@"; do
    shift
    case $a in
    --no-dist) dist=0 ;;
    *) [ "$a" = --quick ] && quick=--quick
       set -- "$@" "$a" ;;
    esac
done
/usr/bin/python3 bench/run_bench.py --build "$dir" --json bench/results.json --readme README.md "$@"

# Data-parallel training, tapegrad + MPI against PyTorch DDP + gloo, and the MPI all-reduce
# bandwidth (bench/run_dist_bench.py -> bench/results_dist.json), when the build found MPI.
if [ "$dist" = 1 ]; then
    if [ -x "$dir/bench/bench_ddp" ]; then
        /usr/bin/python3 bench/run_dist_bench.py --build "$dir" $quick
    else
        echo "bench.sh: no $dir/bench/bench_ddp (MPI not found): data-parallel part skipped" >&2
    fi
fi
