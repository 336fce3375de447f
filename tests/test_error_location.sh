#!/bin/sh
# The default error handler says where the user's program failed (registered in
# tests/meson.build, suite 'errors'):
#   tests/test_error_location.sh PROGRAM SOURCE LIBDW
# PROGRAM is tests/error_location.c built with -g; LIBDW is 'true' when the library was built
# with elfutils' libdw. The program misuses tg_matmul; its stderr must carry the message, then
# "called from multiply_wrong (.../error_location.c:LINE)" (with libdw; without it the frame
# has no file:line, and static functions no name, so the lines only have to be there), main
# after it; its stdout must keep what it printed before; the exit status must be 1 (not a
# signal); TG_BACKTRACE=0 must leave the frames out.
set -eu
program=$1 source=$2 libdw=$3
dir=$(mktemp -d "${TMPDIR:-/tmp}/tg_error_location.XXXXXX")
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; echo "--- stderr:" >&2; cat "$dir/err" >&2; exit 1; }

line=$(grep -n 'the failing call' "$source" | cut -d: -f1)
[ -n "$line" ] || fail "no marker in $source"

run() { # env assignments...: runs the program, its status in $status
    status=0
    env "$@" "$program" >"$dir/out" 2>"$dir/err" || status=$?
    [ "$status" -eq 1 ] || fail "exit status $status, want 1 (>128 is a signal)"
    grep -q '^before the failure$' "$dir/out" || fail "the program's stdout was lost"
    grep -q "^tapegrad: tg_matmul: inner dimensions differ" "$dir/err" || fail "no message"
}

run TG_BACKTRACE=1
first=$(grep -n 'called from' "$dir/err" | head -1)
[ -n "$first" ] || fail "no 'called from' line"
if [ "$libdw" = true ]; then
    echo "$first" | grep -q "called from multiply_wrong (.*error_location\.c:$line)\$" ||
        fail "the first frame is not multiply_wrong at error_location.c:$line: $first"
    grep -q "^ *from main (.*error_location\.c:[0-9]*)\$" "$dir/err" || fail "no frame for main"
else
    echo "SKIP (partly): the library was built without libdw; frames checked without file:line"
    grep -q "^ *from " "$dir/err" || fail "only one frame"
fi
grep -q 'tensor/\|autograd/\|tg_fail\|tg_matmul (' "$dir/err" && fail "a frame of the library is shown"
echo "ok: message, first frame, status 1"

run TG_BACKTRACE=0
grep -q 'from' "$dir/err" && fail "TG_BACKTRACE=0 still prints frames"
echo "ok: TG_BACKTRACE=0"
