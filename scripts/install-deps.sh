#!/bin/sh
# Installs, from Debian's packages, what building and testing tapegrad needs and is missing.
# As root it runs apt-get; otherwise it only names the missing packages (and the caller
# decides). Usage: scripts/install-deps.sh [extra packages...]
set -eu
# libopenmpi-dev and openmpi-bin (Open MPI 4.1): the dist layer (data-parallel training
# across processes, libtapegrad-dist) and mpirun for its tests; without them it is not built.
need="gcc libc6-dev meson ninja-build pkg-config libcmocka-dev libstb-dev libcjson-dev libopenmpi-dev openmpi-bin $*"
missing=""
for p in $need; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    echo "installing:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    echo "installing (sudo):$missing"
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    echo "missing Debian packages:$missing" >&2
    echo "run as root, or: sudo apt-get install$missing" >&2
    exit 1
fi
