#!/bin/sh
# Smoke test of one example program (registered by examples/meson.build, suite 'examples'):
#   tests/test_examples.sh PROGRAM NAME
# With small sizes and a few steps it checks that
#   1. the program runs and exits 0, prints its score, and its loss falls; with output that is
#      not a terminal the progress line is quiet (no redraws, one line per --log-every steps);
#   2. a run stopped half-way (--stop-after) and continued with --resume ends with a checkpoint
#      identical, byte for byte, to the uninterrupted run's, having printed the same losses;
#   3. --help exits 0, and an unknown flag or a bad value exits 2 with a message.
set -eu
program=$1
name=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/tg_example_$name.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM

fail() { echo "FAIL ($name): $*" >&2; exit 1; }

steps=24
half=12
every=6
case $name in
addition)
    args="--embedding 8 --hidden 24 --attention 16 --batch 32 --lr 0.01"
    score="exact match on 1000 held-out problems" ;;
classify-lstm)
    args="--model lstm --length 12 --marks 5 --embedding 8 --hidden 16 --batch 32 --lr 0.01 --test-size 200"
    score="held-out accuracy" ;;
classify-gru)
    args="--model gru --length 12 --marks 5 --embedding 8 --hidden 16 --batch 32 --lr 0.01 --test-size 200"
    score="held-out accuracy" ;;
sine)
    args="--hidden 16 --length 16 --bins 16 --batch 16 --lr 0.01 --test-size 50"
    score="mean squared error" ;;
charlm)
    # Its own text, so that the test does not need the wamerican package.
    i=0
    while [ $i -lt 600 ]; do
        echo "the quick brown fox $i jumps over the lazy dog; a stitch in time saves nine."
        i=$((i + 1))
    done >"$dir/text.txt"
    args="--data $dir/text.txt --embedding 8 --hidden 32 --layers 2 --bptt 16 --batch 8 --lr 0.01 --sample 40"
    score="held-out bits per character" ;;
reverse)
    args="--length 5 --symbols 6 --d-model 16 --heads 2 --feedforward 32 --layers 1 --batch 32 --lr 0.005"
    score="exact match on 1000 held-out sequences" ;;
*)
    fail "no smoke test for this example" ;;
esac

# 1. a whole run
# shellcheck disable=SC2086
status=0
"$program" $args --steps $steps --log-every $every --checkpoint "$dir/whole.safetensors" \
    >"$dir/whole.log" 2>&1 || status=$?
[ $status -eq 0 ] || { cat "$dir/whole.log"; fail "exited with status $status"; }
cat "$dir/whole.log"
grep -q "$score" "$dir/whole.log" || fail "no line with '$score'"
losses=$(sed -n 's/^step [0-9]*\/[0-9]*  loss \([0-9.]*\) .*/\1/p' "$dir/whole.log")
first=$(echo "$losses" | head -n 1)
last=$(echo "$losses" | tail -n 1)
[ -n "$first" ] && [ -n "$last" ] || fail "no progress lines"
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || fail "the loss did not fall: $first -> $last"
echo "loss $first -> $last"
# output is not a terminal here: the progress line does not redraw (no carriage return) and
# speaks once every --log-every steps
if grep -q "$(printf '\r')" "$dir/whole.log"; then fail "a carriage return in output that is not a terminal"; fi
lines=$(grep -c '^step [0-9]*/[0-9]*  loss' "$dir/whole.log")
[ "$lines" -eq $((steps / every)) ] || fail "$lines progress lines, want $((steps / every)) (one per $every steps)"

# 2. stopped half-way and resumed: the same checkpoint and the same losses
# shellcheck disable=SC2086
"$program" $args --steps $steps --log-every $every --checkpoint "$dir/resumed.safetensors" \
    --stop-after $half >"$dir/first.log" 2>&1 || { cat "$dir/first.log"; fail "the first half failed"; }
# shellcheck disable=SC2086
"$program" $args --steps $steps --log-every $every --checkpoint "$dir/resumed.safetensors" \
    --resume >"$dir/second.log" 2>&1 || { cat "$dir/second.log"; fail "the resumed half failed"; }
grep -q "resumed from .* after step $half" "$dir/second.log" || fail "did not say it resumed"
cmp "$dir/whole.safetensors" "$dir/resumed.safetensors" ||
    fail "the resumed run's checkpoint differs from the uninterrupted run's"
cat "$dir/first.log" "$dir/second.log" | sed -n 's/^\(step [0-9]*\/[0-9]*  loss [0-9.]*\) .*/\1/p' >"$dir/a"
sed -n 's/^\(step [0-9]*\/[0-9]*  loss [0-9.]*\) .*/\1/p' "$dir/whole.log" >"$dir/b"
cmp "$dir/a" "$dir/b" || fail "the resumed run printed other losses"
echo "stopped after step $half and resumed: the same checkpoint, the same losses"

# 3. flags
"$program" --help >"$dir/help.log" 2>&1 || fail "--help did not exit 0"
grep -q -- "--checkpoint" "$dir/help.log" || fail "--help does not list --checkpoint"
status=0
"$program" --no-such-flag >"$dir/bad.log" 2>&1 || status=$?
[ $status -eq 2 ] || fail "an unknown flag gave status $status, not 2"
grep -q "unknown flag" "$dir/bad.log" || fail "no message for an unknown flag"
status=0
"$program" --steps ten >"$dir/bad.log" 2>&1 || status=$?
[ $status -eq 2 ] || fail "a bad value gave status $status, not 2"
if [ "$name" = charlm ]; then
    status=0
    "$program" --data "$dir/missing.txt" >"$dir/bad.log" 2>&1 || status=$?
    [ $status -eq 1 ] && grep -q "cannot read" "$dir/bad.log" || fail "a missing --data file is not reported"
fi
echo "ok"
