#!/bin/sh
# The example programs used carelessly (registered by examples/meson.build, suite 'examples'):
#   tests/test_cli_misuse.sh PROGRAM...   the nine example programs, built into one folder
# Every case below says what it checks. A program that should refuse must do so at once, with
# a message and the exit status examples/common.h documents (1: a file that cannot be used or
# saved, 2: the flags); every run has a timeout, so a program that blocks fails the test
# instead of hanging it. The full-disk case needs root (to mount a tmpfs) and says SKIP
# without it.
set -eu
bin=$(dirname "$1")
for program in addition classify sine charlm reverse train_gru_classifier graph gates vanishing; do
    [ -x "$bin/$program" ] || { echo "FAIL: no program $bin/$program" >&2; exit 1; }
done
dir=$(mktemp -d "${TMPDIR:-/tmp}/tg_cli_misuse.XXXXXX")
mnt=
cleanup() {
    if [ -n "$mnt" ]; then umount "$mnt" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
# run STATUS PROGRAM ARGS...: runs PROGRAM (in $bin) with a timeout, its output in $dir/log;
# fails unless it exits with STATUS
run() {
    want=$1
    program=$2
    shift 2
    status=0
    timeout 60 "$bin/$program" "$@" >"$dir/log" 2>&1 </dev/null || status=$?
    [ $status -ne 124 ] || { cat "$dir/log"; fail "$program $*: timed out (blocked?)"; }
    [ $status -eq "$want" ] || { cat "$dir/log"; fail "$program $*: exit status $status, want $want"; }
}
# says TEXT / never TEXT: the output of the last run has (has not) TEXT
says() { grep -q -- "$1" "$dir/log" || { cat "$dir/log"; fail "no '$1' in the output"; }; }
never() { if grep -q -- "$1" "$dir/log"; then cat "$dir/log"; fail "'$1' in the output"; fi; }
same() { cmp -s "$1" "$2" || fail "$1 was changed"; }
ok() { echo "ok: $*"; }
no_temps() {
    if ls -a "$1" | grep -q '\.tmp\.'; then ls -la "$1"; fail "temporary files left in $1"; fi
}

# Small sizes: a classify run of 6 steps takes a fraction of a second.
small="--steps 6 --hidden 8 --embedding 4 --length 8 --marks 3 --test-size 50 --batch 8"
# A text for charlm (so that the test does not need the wamerican package).
i=0
while [ $i -lt 600 ]; do
    echo "the quick brown fox $i jumps over the lazy dog; a stitch in time saves nine."
    i=$((i + 1))
done >"$dir/text.txt"
cp "$dir/text.txt" "$dir/text.orig"
lm="--embedding 8 --hidden 16 --layers 1 --bptt 16 --batch 8 --sample 10 --steps 4"
mkfifo "$dir/fifo"

# 1. files that are not regular files are refused at once, never waited on or read forever
run 1 classify $small --checkpoint "$dir/fifo" --resume
says "is a FIFO, not a regular file"
run 1 classify $small --checkpoint "$dir/fifo" --force
says "is a FIFO"
run 1 charlm $lm --data "$dir/fifo"
says "is a FIFO, not a regular file"
ok "a FIFO as --checkpoint (with --resume, with --force) and as charlm --data"
run 1 charlm $lm --data "$dir"
says "is a directory, not a regular file"
run 1 classify $small --checkpoint "$dir" --force
says "is a directory"
run 1 train_gru_classifier --steps 2 --checkpoint "$dir"
says "not saved"
ok "a directory as --data and as --checkpoint"
run 1 charlm $lm --data /dev/zero
says "is a character device, not a regular file"
run 1 charlm $lm --data "$dir/text.txt" --max-data-bytes 1000
says "more than the limit of 1000 bytes"
says "max-data-bytes"
run 1 charlm $lm --data "$dir/missing.txt"
says "No such file"
ok "/dev/zero as --data, a --data file over --max-data-bytes, a missing --data file"
mkdir "$dir/pictures"
mkfifo "$dir/pictures/gru_step.dot" "$dir/pictures/gates_gru.png"
run 1 graph --out "$dir/pictures"
says "is there but is not a regular file"
run 1 gates --steps 6 --out "$dir/pictures"
says "is there but is not a regular file"
run 1 vanishing --steps 2 --lengths 5 --out "$dir/text.txt"
says "is not a directory"
ok "a FIFO where a picture goes, a file as --out"

# 2. a file that is not a tapegrad checkpoint is not replaced without --force
echo "my notes, not a checkpoint" >"$dir/notes.txt"
cp "$dir/notes.txt" "$dir/notes.orig"
run 1 classify $small --checkpoint "$dir/notes.txt"
says "is not a tapegrad checkpoint"
same "$dir/notes.txt" "$dir/notes.orig"
run 1 classify $small --checkpoint "$dir/notes.txt" --resume
same "$dir/notes.txt" "$dir/notes.orig"
run 1 train_gru_classifier --steps 2 --checkpoint "$dir/notes.txt"
says "not a tapegrad checkpoint"
same "$dir/notes.txt" "$dir/notes.orig"
# a safetensors file that another program wrote
python3 - "$dir/other.safetensors" <<'EOF'
import json, struct, sys
header = json.dumps({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
header += b" " * (-len(header) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(header)) + header + struct.pack("<f", 1.0))
EOF
cp "$dir/other.safetensors" "$dir/other.orig"
run 1 classify $small --checkpoint "$dir/other.safetensors"
says "tapegrad did not write"
same "$dir/other.safetensors" "$dir/other.orig"
run 0 classify $small --checkpoint "$dir/notes.txt" --force
run 0 classify $small --steps 8 --checkpoint "$dir/notes.txt" --resume
says "resumed from .* after step 6"
run 0 train_gru_classifier --steps 2 --checkpoint "$dir/other.safetensors" --force
ok "a foreign file as --checkpoint is refused and left whole; --force replaces it"

# 3. the checkpoint is never the file the program reads, --force or not
for name in "$dir/text.txt" "$dir/./text.txt"; do
    run 2 charlm $lm --data "$dir/text.txt" --checkpoint "$name" --force
    says "is the same file as --data"
done
ln -s text.txt "$dir/link.txt"
ln "$dir/text.txt" "$dir/hard.txt"
run 2 charlm $lm --data "$dir/link.txt" --checkpoint "$dir/text.txt"
run 2 charlm $lm --data "$dir/text.txt" --checkpoint "$dir/hard.txt" --force
run 2 charlm $lm --data "$dir/new.txt" --checkpoint "$dir/../$(basename "$dir")/new.txt"
says "is the same file as --data"
same "$dir/text.txt" "$dir/text.orig"
[ ! -e "$dir/new.txt" ] || fail "new.txt was created"
ok "--checkpoint = --data (the same name, ./name, a symbolic link, a hard link, a file not there yet)"

# 4. a save that fails: exit status 1, it says which save, and never that one can resume
# (a) the file size limit (ulimit -f; SIGXFSZ ignored, so that write fails with EFBIG)
lstm="--steps 6 --hidden 32 --embedding 4 --length 8 --marks 3 --test-size 50 --batch 8"
run 0 classify $lstm --checkpoint "$dir/big.st" --stop-after 3
cp "$dir/big.st" "$dir/big.orig"
status=0
(
    trap '' XFSZ
    ulimit -f 16 # 512-byte blocks: less than the checkpoint, more than the output
    timeout 60 "$bin/classify" $lstm --checkpoint "$dir/big.st" --resume --stop-after 5
) >"$dir/log" 2>&1 || status=$?
[ $status -eq 1 ] || { cat "$dir/log"; fail "a save over the file size limit: exit status $status"; }
says "the checkpoint after step 5 was not saved"
says "still holds the checkpoint after step 3"
never "--resume"
same "$dir/big.st" "$dir/big.orig"
no_temps "$dir"
status=0
(
    trap '' XFSZ
    ulimit -f 16
    timeout 60 "$bin/classify" $lstm --checkpoint "$dir/big.st" --resume
) >"$dir/log" 2>&1 || status=$?
[ $status -eq 1 ] || { cat "$dir/log"; fail "a run whose last save failed: exit status $status"; }
says "exit status 1: the checkpoint after step 6 was not saved"
never "--resume"
same "$dir/big.st" "$dir/big.orig"
ok "saves over the file size limit: exit 1, the failed step named, the old checkpoint whole"
# (b) a full disk
if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP full-disk: needs root to mount a tmpfs"
elif ! mkdir "$dir/mnt" || ! mount -t tmpfs -o size=64k tmpfs "$dir/mnt" 2>"$dir/log"; then
    echo "SKIP full-disk: cannot mount a tmpfs here: $(cat "$dir/log")"
else
    mnt=$dir/mnt
    run 0 classify $small --checkpoint "$mnt/c.st" --stop-after 3
    cp "$mnt/c.st" "$dir/c.orig"
    dd if=/dev/zero of="$mnt/filler" bs=4096 2>/dev/null || true # until the disk is full
    run 1 classify $small --checkpoint "$mnt/c.st" --resume --stop-after 5
    says "the checkpoint after step 5 was not saved"
    says "No space left on device"
    never "--resume"
    same "$mnt/c.st" "$dir/c.orig"
    run 1 classify $small --checkpoint "$mnt/c.st" --resume
    says "the last checkpoint save (after step 6) failed"
    never "--resume"
    same "$mnt/c.st" "$dir/c.orig"
    no_temps "$mnt"
    umount "$mnt"
    mnt=
    ok "full disk: exit 1, no --resume claim, the old checkpoint whole, no temporary file left"
fi

# 5. killed with SIGKILL, again and again, while saving: the checkpoint stays whole, and one
# more run leaves no temporary file behind
mkdir "$dir/kill"
big="--hidden 384 --embedding 8 --batch 2 --length 4 --marks 3 --test-size 10 --steps 1000000"
run 0 classify $big --checkpoint "$dir/kill/k.st" --stop-after 1
i=0
while [ $i -lt 10 ]; do
    # saves every step (7 MB, fsynced): most of the run's time is spent saving
    "$bin/classify" $big --checkpoint "$dir/kill/k.st" --resume --save-every 1 >/dev/null 2>&1 &
    pid=$!
    sleep "0.$((3 + i % 5))$i"
    kill -9 $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    python3 - "$dir/kill/k.st" <<'EOF' || fail "after kill $i: the checkpoint is not whole"
import json, struct, sys
data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
assert 8 + n + end == len(data), "truncated"
EOF
    i=$((i + 1))
done
# and what a save killed between naming its temporary file and renaming it leaves: the start
# of a checkpoint under <path>.tmp.<pid of a process that is gone>
dead=$(sh -c 'echo $$')
head -c 4096 "$dir/kill/k.st" >"$dir/kill/k.st.tmp.$dead"
run 0 classify $big --steps 2 --checkpoint "$dir/kill/k.st"
no_temps "$dir/kill"
run 0 classify $big --steps 2 --checkpoint "$dir/kill/k.st" --resume
says "nothing to do"
ok "10 runs killed while saving: the checkpoint whole after each, no temporary file after one more"

# 6. a checkpoint with a NaN weight, or a step count that is no count, is refused by name
run 0 classify $small --checkpoint "$dir/nan.st" --stop-after 3
# set_value FILE TENSOR VALUE: the tensor's first element := VALUE
set_value() {
    python3 - "$@" <<'EOF'
import json, struct, sys
path, name, value = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", data[:8])[0]
entry = json.loads(data[8:8 + n])[name]
assert entry["dtype"] == "F32"
at = 8 + n + entry["data_offsets"][0]
data[at:at + 4] = struct.pack("<f", value)
open(path, "wb").write(bytes(data))
EOF
}
cp "$dir/nan.st" "$dir/step.st"
set_value "$dir/nan.st" model.fc.weight nan
run 1 classify $small --checkpoint "$dir/nan.st" --resume
says "model.fc.weight"
set_value "$dir/nan.st" model.fc.weight inf
run 1 classify $small --checkpoint "$dir/nan.st" --resume
says "model.fc.weight"
set_value "$dir/step.st" train.step -1
run 1 classify $small --checkpoint "$dir/step.st" --resume
says "train.step"
ok "NaN and inf weights and a negative step count are refused on resume, the tensor named"

# 7. resuming a checkpoint at or past --steps
run 0 classify $small --checkpoint "$dir/done.st"
run 1 classify $small --steps 4 --checkpoint "$dir/done.st" --resume
says "at step 6, past --steps 4"
never "trained"
run 0 classify $small --checkpoint "$dir/done.st" --resume
says "already at step 6 = --steps: nothing to do"
never "trained"
run 0 classify $small --checkpoint none --stop-after 2
says "nothing was saved"
never "--resume"
ok "a checkpoint past --steps (exit 1), at --steps (exit 0, nothing to do), --stop-after without a checkpoint"

# 8. flags: --help, unknown flags, negative sizes, sizes that cannot fit in memory
for program in addition classify sine charlm reverse train_gru_classifier graph gates vanishing; do
    run 0 $program --help
    says "usage"
    run 2 $program --no-such-flag
    run 2 $program stray-argument
done
ok "--help exits 0 and an unknown flag or argument exits 2, for all 9 programs"
for case in "addition --hidden -5" "classify --batch -1" "sine --length -3" "charlm --bptt -1" \
    "reverse --d-model -4" "gates --hidden -5" "vanishing --steps -1" "train_gru_classifier --steps -5" \
    "classify --lr nan" "addition --steps 1e3" "vanishing --lengths 5,-2" "reverse --heads 3"; do
    # shellcheck disable=SC2086
    run 2 $case
done
ok "negative sizes and malformed numbers exit 2"
# memory: --batch 1000000 (the most the flag takes) with a large model needs terabytes
for case in "addition --hidden 4096" "classify --hidden 4096" "sine --hidden 4096" \
    "reverse --d-model 4096"; do
    # shellcheck disable=SC2086
    run 2 $case --batch 1000000
    says "of memory, more than the"
done
run 2 charlm --data "$dir/text.txt" --batch 1000000 --hidden 4096
says "of memory, more than the"
run 2 vanishing --batch 65536 --hidden 4096 --lengths 1000
says "of memory, more than the"
# gates' largest sizes need 34 GiB: refused where the machine has less
if [ "$(awk '/^MemTotal:/ { print int($2 / 1048576) }' /proc/meminfo)" -lt 33 ]; then
    run 2 gates --hidden 1024 --length 1000 --steps 1
    says "of memory, more than the"
else
    echo "SKIP gates memory case: this machine has 33 GiB or more, enough for gates' largest sizes"
fi
ok "sizes that cannot fit in memory are refused at once with exit 2, not an abort"
echo "all misuse cases passed"
