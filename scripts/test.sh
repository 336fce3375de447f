#!/bin/sh
# The whole test suite, as CI runs it: installs what is missing, builds the float32 and
# float64 libraries with warnings as errors, runs every cmocka suite, then builds again
# with AddressSanitizer + UndefinedBehaviorSanitizer and runs the suites there too. The
# browser page is part of it: its WebAssembly build (scripts/build-web.sh) and suite 'web',
# which drives it in headless Chromium against the native float64 library (web/test_web.py);
# here a missing browser or emscripten fails instead of skipping.
# Usage: scripts/test.sh            (from the checkout; as root on a fresh Debian 12)
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh --web
export TG_WEB_REQUIRED=1

jobs=$(nproc 2>/dev/null || echo 2)
setup() { # dir, options...
    dir=$1; shift
    if [ -d "$dir" ]; then meson setup --reconfigure "$dir" "$@" >/dev/null
    else meson setup "$dir" "$@" >/dev/null; fi
}

echo "== build (float32 + float64), -Werror"
setup build/test -Dwerror=true
ninja -C build/test -j "$jobs"
meson test -C build/test --num-processes "$jobs" --print-errorlogs

echo "== install into a prefix (no root), build the README's training script there with pkg-config"
# As a user without root would: a prefix of one's own, libdir=lib so the .pc files are in
# PREFIX/lib/pkgconfig, no examples/benchmarks/tests; the script then runs without
# LD_LIBRARY_PATH (the .pc file carries an rpath).
prefix=$PWD/build/prefix
rm -rf "$prefix"
setup build/install --prefix="$prefix" --libdir=lib -Dtests=disabled -Dexamples=false -Dbench=false
ninja -C build/install -j "$jobs" >/dev/null
meson install -C build/install >/dev/null
script=$(mktemp -d "${TMPDIR:-/tmp}/tg_script.XXXXXX")
cp examples/train_gru_classifier.c "$script/train.c"
(
    cd "$script"
    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
    cc -Wall -Wextra -Werror train.c $(pkg-config --cflags --libs tapegrad) -o train
    env -u LD_LIBRARY_PATH ./train
)
rm -rf "$script"

echo "== build with -Db_sanitize=address,undefined"
setup build/sanitize -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false
ninja -C build/sanitize -j "$jobs"
# (the browser test ran in the first build; a sanitized native helper adds nothing to it)
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build/sanitize --num-processes "$jobs" --print-errorlogs --no-suite web
echo "== all tests passed"
