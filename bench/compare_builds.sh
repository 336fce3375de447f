#!/bin/sh
# Compares the fused recurrent layers of two release builds of tapegrad on this machine, in
# one run: each configuration at 1 and 2 threads, the two builds alternating (A B A B ...)
# so that a change in the machine's load falls on both. Prints the best ms/step of each and
# the load averages before and after. A side is a build directory, or BUILD:PROGRAM for
# another program of it with the same options (onednn_rnn: oneDNN's fused layers).
#
#   bench/compare_builds.sh BUILD_A BUILD_B [REPEATS]     (e.g. build/base build/release)
#   bench/compare_builds.sh build/release:onednn_rnn build/release 3
#       (oneDNN against tapegrad: A/B > 1 means tapegrad is faster)
set -eu
a=$1 b=$2 reps=${3:-3}
prog() { # side -> the benchmark program
    case $1 in *:*) echo "${1%%:*}/bench/${1#*:}" ;; *) echo "$1/bench/bench_rnn_layer" ;; esac
}
pa=$(prog "$a") pb=$(prog "$b")
best() { # file -> smallest ms= value
    sed -n 's/.* ms=\([0-9.]*\) .*/\1/p' "$1" | sort -g | head -n 1
}
echo "# A = $pa, B = $pb; load before: $(cat /proc/loadavg)"
printf '%-16s %3s %10s %10s %7s\n' config thr "A ms" "B ms" "A/B"
tmp=$(mktemp -d)
for cfg in gru_cls_layer lstm_cls_layer gru_lm_layer0 gru_lm_layer1; do
    for thr in 1 2; do
        : >"$tmp/a"; : >"$tmp/b"
        i=0
        while [ "$i" -lt "$reps" ]; do
            OMP_NUM_THREADS=$thr "$pa" --config "$cfg" --threads "$thr" \
                --rounds 5 --round-s 0.5 >>"$tmp/a" 2>/dev/null
            OMP_NUM_THREADS=$thr "$pb" --config "$cfg" --threads "$thr" \
                --rounds 5 --round-s 0.5 >>"$tmp/b" 2>/dev/null
            i=$((i + 1))
        done
        ma=$(best "$tmp/a") mb=$(best "$tmp/b")
        printf '%-16s %3s %10s %10s %7.3f\n' "$cfg" "$thr" "$ma" "$mb" "$(echo "$ma / $mb" | bc -l)"
    done
done
rm -rf "$tmp"
echo "# load after: $(cat /proc/loadavg)"
