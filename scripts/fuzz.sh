#!/bin/sh
# Fuzzes the safetensors loader with libFuzzer for SECONDS (default 60), starting from the
# committed seed corpus in a scratch copy. Installs Debian's clang and libclang-rt-14-dev when
# run as root. Exit status non-zero when the fuzzer finds a crash, a leak or a broken promise
# (the input is kept under build/fuzz-run/artifacts/). See fuzz/README.md.
# Usage: sh scripts/fuzz.sh [SECONDS]
set -eu
cd "$(dirname "$0")/.."
seconds=${1:-60}
sh scripts/install-deps.sh clang libclang-rt-14-dev

dir=build/fuzz
mkdir -p build
log=build/fuzz-build.log
if [ -d "$dir" ]; then
    set -- --reconfigure
else
    set --
fi
# Quiet when it works; the build's own messages when it does not.
{ CC=clang meson setup "$@" "$dir" -Dfuzz=true -Dtests=disabled &&
    ninja -C "$dir" fuzz/fuzz_safetensors; } >"$log" 2>&1 || { tail -n 30 "$log"; exit 1; }

run=build/fuzz-run
rm -rf "$run"
mkdir -p "$run/corpus" "$run/artifacts"
cp fuzz/corpus/* "$run/corpus/"
"$dir/fuzz/fuzz_safetensors" "$run/corpus" -dict=fuzz/safetensors.dict -max_len=4096 \
    -max_total_time="$seconds" -artifact_prefix="$run/artifacts/" -print_final_stats=1 \
    2>"$run/fuzz.log" || { tail -n 40 "$run/fuzz.log"; exit 1; }
grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$run/fuzz.log"
echo "fuzz: no findings in $seconds s"
