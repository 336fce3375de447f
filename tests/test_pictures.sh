#!/bin/sh
# Smoke test of the gate-picture programs, registered by examples/meson.build:
#   tests/test_pictures.sh GRAPH GATES VANISHING
# graph: the DOT files of one GRU and one LSTM step name every gate; gates and vanishing:
# a short run writes its PNG pictures (checked by their signature) and its tables.
set -eu
graph=$1
gates=$2
vanishing=$3
dir=$(mktemp -d "${TMPDIR:-/tmp}/tg_pictures.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM
fail() { echo "FAIL: $*" >&2; exit 1; }
is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "$1 is not a PNG"; }

"$graph" --out "$dir" >"$dir/graph.log" || fail "graph exited with $?"
for gate in r z n h; do grep -q "'$gate'" "$dir/gru_step.dot" || fail "gru_step.dot has no gate '$gate'"; done
for gate in i f g o c; do grep -q "'$gate'" "$dir/lstm_step.dot" || fail "lstm_step.dot has no gate '$gate'"; done
grep -q "parameters" "$dir/gru_step.dot" || fail "gru_step.dot sets no parameters apart"
grep -q "bwd 1" "$dir/gru_step.dot" || fail "gru_step.dot numbers no backward order"
if command -v dot >/dev/null 2>&1; then is_png "$dir/gru_step.png"; is_png "$dir/lstm_step.png"; fi

"$gates" --steps 30 --out "$dir" >"$dir/gates.log" || fail "gates exited with $?"
for p in gates_gru gates_lstm gates_grad; do is_png "$dir/$p.png"; done

"$vanishing" --lengths 5,10 --steps 20 --out "$dir" >"$dir/vanishing.log" || fail "vanishing exited with $?"
for p in vanishing_grad vanishing_grad_init vanishing_grad_fresh; do is_png "$dir/$p.png"; done
for model in "tanh RNN" GRU LSTM; do
    grep -q "^| $model |" "$dir/vanishing.log" || fail "vanishing printed no row for $model"
done
echo "pictures: all written"
