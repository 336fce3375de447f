#!/bin/sh
# tests/test_dist.sh — the dist layer's tests, each launching its programs with mpirun itself.
#   test_dist.sh unit N TEST_EXE   the cmocka unit tests under mpirun -np N
#   test_dist.sh WHAT DIST_TRAIN   WHAT is one of:
#     equal   N = 2 and 3 ranks with B/N each follow one process with batch B for 20 Adam
#             steps (dist_train --reference; also MPI_Iallreduce and no_sync accumulation)
#     repeat  two runs with the same N give the same bits
#     resume  a run stopped at step 10 with N ranks and resumed with another N ends where an
#             uninterrupted run does
#     launch  a global batch the world does not divide, and a checkpoint of another model:
#             every rank says so, the job exits non-zero
#     fault   kill -9 of rank 1: the job ends within 30 s naming rank 1, exits non-zero, and
#             the last checkpoint loads
#   test_dist.sh examples SINE CLASSIFY CHARLM   the example programs under mpirun
# mpirun runs as root here only with --allow-run-as-root; shared memory (vader) between the
# ranks, with its single-copy mechanism off (containers often forbid the ptrace it needs).
set -u
what=$1
shift
if ! command -v mpirun >/dev/null 2>&1; then
    echo "test_dist.sh: SKIPPED: mpirun is not on PATH (Debian: apt-get install openmpi-bin)"
    exit 77
fi
root_flag=""
[ "$(id -u)" -eq 0 ] && root_flag="--allow-run-as-root"
here=$(cd "$(dirname "$0")" && pwd)
# Open MPI's own allocations at start-up are not tapegrad's leaks: suppressed by the names of
# its libraries, for the sanitizer build (the sanitizers read these only when built in). The
# names can only be matched with whole stacks (Open MPI's libraries have no frame pointers:
# fast_unwind_on_malloc=0) and with its plugins still loaded at exit (disable_dlclose).
export LSAN_OPTIONS="suppressions=$here/lsan_openmpi.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
export OMPI_MCA_mca_base_component_disable_dlclose=1 PMIX_MCA_mca_base_component_disable_dlclose=1
run() { # run N program args...: mpirun -np N
    n=$1
    shift
    mpirun -np "$n" --oversubscribe $root_flag --mca btl self,vader \
        --mca btl_vader_single_copy_mechanism none "$@"
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() {
    echo "FAIL: $*"
    exit 1
}

case $what in
unit)
    run "$1" "$2" || fail "unit tests under mpirun -np $1"
    ;;
equal)
    exe=$1
    for n in 2 3; do
        run $n "$exe" --reference --steps 20 --batch 12 || fail "$n ranks differ from one process"
    done
    run 3 "$exe" --reference --steps 20 --batch 12 --reduce mpi || fail "MPI_Iallreduce, 3 ranks"
    run 2 "$exe" --reference --steps 20 --batch 12 --accumulate 3 ||
        fail "no_sync accumulation, 2 ranks"
    run 2 "$exe" --reference --steps 20 --batch 12 --bucket-bytes 26214400 || fail "one bucket"
    ;;
repeat)
    exe=$1
    for n in 2 3; do
        run $n "$exe" --steps 20 --dump "$work/a$n.safetensors" >/dev/null || fail "run A, $n ranks"
        run $n "$exe" --steps 20 --dump "$work/b$n.safetensors" >/dev/null || fail "run B, $n ranks"
        cmp "$work/a$n.safetensors" "$work/b$n.safetensors" || fail "$n ranks: runs differ"
        echo "$n ranks: two runs give the same bits"
    done
    ;;
resume)
    exe=$1
    run 1 "$exe" --steps 20 --dump "$work/whole.safetensors" >/dev/null || fail "whole run"
    for pair in "2 3" "3 1" "1 2"; do
        set -- $pair
        c="$work/ck.safetensors"
        rm -f "$c"
        run "$1" "$exe" --steps 20 --stop-after 10 --checkpoint "$c" >/dev/null ||
            fail "first half on $1"
        run "$2" "$exe" --steps 20 --resume --checkpoint "$c" --compare "$work/whole.safetensors" ||
            fail "stopped at 10 with $1 ranks, resumed with $2: not the uninterrupted run"
    done
    ;;
launch)
    exe=$1
    run 3 "$exe" --batch 10 >"$work/out" 2>&1 && fail "batch 10 on 3 ranks was accepted"
    cat "$work/out"
    for r in 0 1 2; do
        grep -q "\[rank $r/3\] .*global batch 10 does not divide among 3 processes" "$work/out" ||
            fail "rank $r did not report the batch"
    done
    c="$work/other.safetensors"
    run 2 "$exe" --steps 2 --hidden 16 --checkpoint "$c" >/dev/null || fail "making a checkpoint"
    run 2 "$exe" --steps 4 --hidden 8 --resume --checkpoint "$c" >"$work/out" 2>&1 &&
        fail "a checkpoint of another model was accepted"
    cat "$work/out"
    for r in 0 1; do
        grep -q "\[rank $r/2\] dist_train: cannot resume from" "$work/out" ||
            fail "rank $r did not report the checkpoint"
    done
    ;;
fault)
    exe=$1
    c="$work/ck.safetensors"
    run 3 "$exe" --steps 1000000 --sleep-ms 20 --checkpoint "$c" --pid-dir "$work" \
        >"$work/out" 2>&1 &
    job=$!
    waited=0
    while [ ! -s "$c" ] || [ ! -s "$work/rank1.pid" ]; do
        sleep 0.2
        waited=$((waited + 1))
        [ $waited -gt 300 ] && kill $job && fail "no checkpoint after 60 s"
    done
    sleep 1
    start=$(($(date +%s%N) / 1000000))
    kill -9 "$(cat "$work/rank1.pid")"
    status=0
    # mpirun must end by itself; the test gives it 30 s
    while kill -0 $job 2>/dev/null; do
        sleep 0.1
        if [ $(($(date +%s%N) / 1000000 - start)) -gt 30000 ]; then
            kill $job
            fail "the job still runs 30 s after kill -9 of rank 1"
        fi
    done
    wait $job || status=$?
    took=$(($(date +%s%N) / 1000000 - start))
    cat "$work/out" | tail -n 12
    echo "kill -9 of rank 1: mpirun exited with status $status after $took ms"
    [ $status -ne 0 ] || fail "exit status 0 after a rank died"
    grep -q "rank 1" "$work/out" || fail "the output does not name rank 1"
    run 1 "$exe" --verify "$c" || fail "the last checkpoint does not load"
    ;;
examples)
    # the example programs, unchanged, under mpirun (stdout is a pipe: plain progress lines)
    sine=$1 classify=$2 charlm=$3
    args="--hidden 16 --length 16 --bins 16 --batch 16 --lr 0.01 --test-size 50 --steps 20"
    run 1 "$sine" $args --checkpoint none >"$work/one" 2>&1 || fail "sine alone"
    run 2 "$sine" $args --checkpoint none >"$work/two" 2>&1 || fail "sine on 2 ranks"
    cat "$work/two"
    # (mpirun gives rank 0 a terminal when it has one: the line is then redrawn with \r)
    [ "$(grep -o 'step 20/20' "$work/two" | wc -l)" = 1 ] ||
        fail "not one progress line per step from 2 ranks"
    grep "model  " "$work/one" >"$work/one.score"
    grep "model  " "$work/two" >"$work/two.score"
    cmp -s "$work/one.score" "$work/two.score" || fail "sine: 2 ranks score otherwise than one"
    run 3 "$classify" --batch 32 --steps 2 --checkpoint none >"$work/out" 2>&1 &&
        fail "classify took --batch 32 on 3 ranks"
    cat "$work/out"
    for r in 0 1 2; do
        grep -q "\[rank $r/3\] classify: --batch 32 does not divide among 3 processes" "$work/out" ||
            fail "classify: rank $r did not report the batch"
    done
    # a checkpoint of another model: every rank says it cannot resume
    small="--length 8 --marks 3 --embedding 4 --test-size 20 --batch 8 --steps 2"
    run 2 "$classify" $small --hidden 8 --checkpoint "$work/c8.st" >/dev/null 2>&1 ||
        fail "classify on 2 ranks"
    run 2 "$classify" $small --hidden 6 --checkpoint "$work/c8.st" --resume >"$work/out" 2>&1 &&
        fail "classify resumed from a checkpoint of another model"
    for r in 0 1; do
        grep -q "\[rank $r/2\] classify: cannot resume: rank 0: .*shape" "$work/out" ||
            { cat "$work/out"; fail "classify: rank $r did not report the checkpoint"; }
    done
    # charlm: stopped on 2 ranks, resumed on 4 (more processes than cores: oversubscribed),
    # scores as the uninterrupted run of one process; the text is read mapped: a 160 MB file
    # under a 120 MB data limit (ulimit -d), which a copy of the text in memory would exceed
    yes "the quick brown fox jumps over the lazy dog; a stitch in time saves nine, 0123456789." |
        head -c 160000000 >"$work/big.txt"
    limit="ulimit -d 120000"
    if ldd "$charlm" | grep -q libasan; then
        # AddressSanitizer's shadow memory is a private mapping, which the data limit counts
        echo "charlm: no data limit in the sanitizer build (its shadow memory would exceed it)"
        limit=true
    fi
    lm="--data $work/big.txt --max-data-bytes 1000000000 --embedding 8 --hidden 16 --layers 1
        --bptt 16 --batch 8 --sample 0 --steps 20 --eval-chars 20000 --lr 0.01"
    ($limit && run 1 "$charlm" $lm --checkpoint "$work/a.st") >"$work/one" 2>&1 ||
        { cat "$work/one"; fail "charlm alone under ulimit -d"; }
    ($limit && run 2 "$charlm" $lm --checkpoint "$work/b.st" --stop-after 10) \
        >"$work/two" 2>&1 || { cat "$work/two"; fail "charlm on 2 ranks"; }
    ($limit && run 4 "$charlm" $lm --checkpoint "$work/b.st" --resume) >"$work/four" 2>&1 ||
        { cat "$work/four"; fail "charlm resumed on 4 ranks"; }
    cat "$work/four"
    grep "held-out bits" "$work/one" >"$work/one.score"
    grep "held-out bits" "$work/four" >"$work/four.score"
    cmp -s "$work/one.score" "$work/four.score" ||
        fail "charlm: 2 then 4 ranks score otherwise than one process: $(cat "$work/one.score")"
    ;;
*)
    echo "test_dist.sh: unknown test '$what'"
    exit 2
    ;;
esac
