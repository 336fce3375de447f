#!/bin/sh
# A compile test, registered by tests/meson.build:
#   tests/compile_fail.sh accept -- CC ARGS...           passes if CC ARGS compiles
#   tests/compile_fail.sh reject FUNCTION -- CC ARGS...  passes if CC ARGS fails, and fails
#       because of an incompatible pointer type handed to FUNCTION: a missing header or a
#       typo is a failure of its own and does not count.
set -u
mode=$1
shift
want=
if [ "$mode" = reject ]; then
    want=$1
    shift
fi
[ "$1" = -- ] || { echo "usage: $0 accept|reject FUNCTION -- CC ARGS..." >&2; exit 2; }
shift
log=$("$@" 2>&1)
status=$?
printf '%s\n' "$log"
case $mode in
accept)
    [ $status -eq 0 ] || { echo "FAIL: the compiler refused the correct call" >&2; exit 1; }
    echo "accepted, as it should be" ;;
reject)
    [ $status -ne 0 ] || { echo "FAIL: the compiler accepted the wrong type" >&2; exit 1; }
    printf '%s\n' "$log" | grep -q "incompatible pointer type" &&
        printf '%s\n' "$log" | grep -q "$want" ||
        { echo "FAIL: refused, but not for a wrong pointer type handed to $want" >&2; exit 1; }
    echo "refused, as it should be" ;;
*)
    echo "usage: $0 accept|reject FUNCTION -- CC ARGS..." >&2
    exit 2 ;;
esac
