#!/bin/sh
# The demo of the README's quick start, in one command on Debian 12: installs what is missing,
# builds tapegrad in release mode (build/release) and trains the addition example with its
# default settings — a GRU encoder-decoder with attention learning to add numbers written as
# text — printing its progress and, at the end, the exact-match score on held-out problems.
# Usage: sh scripts/demo.sh [addition flags...]     (e.g. --show-attention; --help lists them)
set -eu
cd "$(dirname "$0")/.."
if ! sh scripts/install-deps.sh; then
    # not root: ask for the packages through sudo (it may prompt for a password)
    command -v sudo >/dev/null 2>&1 || exit 1
    sudo sh scripts/install-deps.sh
fi
if [ ! -f build/release/build.ninja ]; then
    meson setup build/release --buildtype=release >/dev/null
fi
ninja -C build/release examples/addition >/dev/null
exec build/release/examples/addition --checkpoint build/release/addition.safetensors "$@"
