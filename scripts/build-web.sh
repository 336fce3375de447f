#!/bin/sh
# Builds the browser page's library: libtapegrad's float64 build (the tensor, autograd and nn
# layers, -DTG_DOUBLE, single-threaded: no OpenMP), the page's functions (web/tg_web.c) and
# the recurrent classifier of the examples, compiled to WebAssembly with Debian's emscripten
# into one file, web/tapegrad.js, with the .wasm embedded (-sSINGLE_FILE): web/index.html
# then works opened straight from disk, with no server and no network.
#
#   sh scripts/build-web.sh [OUT.js]      (default web/tapegrad.js; rebuilt only when a source
#                                          is newer)
# Left out of the web build: tensor/safetensors.c and nn/checkpoint.c (files on disk, and
# libcjson, which Debian ships for the host only). Exit status 77 when emcc is missing (the
# browser test then skips, saying why); `sh scripts/install-deps.sh --web` installs it.
set -eu
cd "$(dirname "$0")/.."
out=${1:-web/tapegrad.js}

emcc=${EMCC:-emcc} # another emcc: EMCC=/path/to/emcc
if ! command -v "$emcc" >/dev/null 2>&1; then
    echo "build-web.sh: $emcc not found: install Debian's emscripten (sh scripts/install-deps.sh --web)" >&2
    exit 77
fi
# Debian's emscripten runs its JavaScript tools with the node on PATH; a node that is not
# Debian's own does not look in Debian's module folder for acorn, so name it.
export NODE_PATH="${NODE_PATH:+$NODE_PATH:}/usr/share/nodejs"
# Debian's emscripten comes with its system libraries (libc, libm, ...) prebuilt in a frozen
# cache, /usr/share/emscripten/cache: the build writes nothing there, builds no library and
# downloads nothing. (An EM_CACHE pointing anywhere else would be empty, and frozen: leave it.)
unset EM_CACHE

sources=$(ls tensor/*.c autograd/*.c nn/*.c | grep -v -e '^tensor/safetensors\.c$' -e '^nn/checkpoint\.c$')
sources="$sources examples/rnn_classifier.c web/tg_web.c web/stb_ds_impl.c"

# Up to date: nothing to do (the browser test calls this on every run).
if [ -f "$out" ] && [ -z "$(find $sources include web/tg_web.h examples/common.h scripts/build-web.sh \
    -newer "$out" -print 2>/dev/null | head -n 1)" ]; then
    echo "build-web.sh: $out is up to date"
    exit 0
fi

mkdir -p "$(dirname "$out")" build
start=$(date +%s)
# -O2 and no -ffast-math: the page's numbers are IEEE float64, as the native library's.
# The layers' own flags (meson.build): -fno-trapping-math, -ffp-contract=off.
# shellcheck disable=SC2086
"$emcc" -std=c11 -O2 -DTG_DOUBLE -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
    -fno-trapping-math -ffp-contract=off -Wall -Wextra -Werror \
    -Iinclude -I. -Iexamples -isystem /usr/include/stb \
    $sources \
    -sSINGLE_FILE=1 -sALLOW_MEMORY_GROWTH=1 -sMODULARIZE=1 -sEXPORT_NAME=createTapegrad \
    -sEXPORTED_FUNCTIONS=_tgw_cell,_tgw_train_start,_tgw_train_steps,_malloc,_free \
    -sEXPORTED_RUNTIME_METHODS=ccall,UTF8ToString,HEAPF64 \
    -o "$out.tmp.js"
mv "$out.tmp.js" "$out"
echo "build-web.sh: wrote $out ($(wc -c <"$out") bytes) in $(($(date +%s) - start)) s"
