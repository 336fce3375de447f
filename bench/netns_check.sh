#!/bin/sh
# bench/netns_check.sh — MPI ranks on "hosts" joined by slow links, on one machine: the check
# of the data-parallel cost model (bench/dist_model.py) against measured all-reduces and
# training steps.
#
#   bench/netns_check.sh [--build build/release] [--ranks 2] [--links 1000:1,100:1]
#                        [--configs gru_cls,char_lm,transformer] [--max-bytes 4194304] [--quick]
#                        [--out bench/netns_results.txt]
#
# For each link RATE_MBIT:DELAY_MS of --links it makes one network namespace per rank, each
# with one interface (10.77.0.k/24), joined by bench/netwire (TUN devices forwarded in user
# space at RATE Mbit/s and DELAY ms one way: what `tc qdisc ... netem rate R delay D` does, but
# netem is missing from many kernels, this machine's included). Traffic runs only between the
# namespaces. It then runs, over TCP only (--mca btl tcp,self, both TCP transports pinned to
# 10.77.0.0/24):
#   allreduce_bw   the all-reduce time for 1 KB .. --max-bytes;
#   bench_ddp      a quick run of each --configs (step, no_sync step, unhidden reduction).
# mpirun starts in the first namespace; the other "hosts" are reached the way ssh would reach
# them, through a launch agent (--mca plm_rsh_agent) that runs Open MPI's daemon in the
# host's namespace (ip netns exec) instead of over ssh. Each rank is alone on its "host", so
# binding is off (every daemon would pick core 0).
# The result lines go to --out (and stdout), each prefixed with "link=RATE:DELAY"; bench/
# dist_model.py --check OUT prints them beside the model's predictions.
# With --ranks 3, give --configs "" (or configs whose batch 3 divides: bench_ddp refuses the
# others on every rank, and the run goes on with the next link).
# Whatever it created (namespaces, devices, netwire, the temporary directory) is removed on
# exit, also on error or Ctrl-C. Skipped, with the reason, when not root, without network
# namespaces or TUN, or without MPI or the programs.
set -eu
cd "$(dirname "$0")/.."

build=build/release ranks=2 links=1000:1,100:1 configs=gru_cls,char_lm,transformer
max_bytes=4194304 quick="" out=bench/netns_results.txt
while [ $# -gt 0 ]; do
    case $1 in
    --build) build=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --links) links=$2; shift 2 ;;
    --configs) configs=$2; shift 2 ;;
    --max-bytes) max_bytes=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --quick) quick=--quick; shift ;;
    *) echo "usage: $0 [--build DIR] [--ranks N] [--links R:D,...] [--configs a,b] [--max-bytes B] [--quick] [--out FILE]" >&2
       exit 2 ;;
    esac
done

skip() {
    echo "netns_check: skipped: $*"
    exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, TUN devices)"
command -v ip >/dev/null || skip "no ip command (apt-get install iproute2)"
command -v mpirun >/dev/null || skip "no mpirun (apt-get install openmpi-bin libopenmpi-dev)"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
for p in netwire allreduce_bw bench_ddp; do
    [ -x "$build/bench/$p" ] || skip "$build/bench/$p is not built (meson with MPI found)"
done
probe=tgprobe$$
ip netns add $probe 2>/dev/null || skip "cannot create network namespaces here"
ip netns del $probe

rt=""
chrt -f 10 true 2>/dev/null && rt="chrt -f 10"
tag=tg$$ # names of everything this run creates: namespaces $tag-k, devices ${tag}w k
tmp=$(mktemp -d)
wire_pid=""
created=""
cleanup() {
    if [ -n "$wire_pid" ]; then
        kill "$wire_pid" 2>/dev/null || true
        wait "$wire_pid" 2>/dev/null || true
        sed 's/^/# /' "$tmp/wire.err" 2>/dev/null || true # packets sent and dropped per link
    fi
    wire_pid=""
    for ns in $created; do ip netns del "$ns" 2>/dev/null || true; done
    created=""
}
trap 'cleanup; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# The launch agent: mpirun calls it as an ssh, `agent [options] HOST COMMAND...`; it runs the
# command in HOST's namespace (10.77.0.k -> $tag-(k-1)).
cat >"$tmp/agent" <<EOF
#!/bin/sh
while [ "\${1#-}" != "\$1" ]; do shift; done
k=\${1##*.}
shift
exec ip netns exec $tag-\$((k - 1)) sh -c "\$*"
EOF
chmod +x "$tmp/agent"

# N namespaces joined by netwire at RATE Mbit/s, DELAY_US µs.
net_up() {
    devs=""
    hosts=""
    k=0
    while [ $k -lt "$ranks" ]; do
        devs="$devs ${tag}w$k=10.77.0.$((k + 1))"
        hosts="$hosts${hosts:+,}10.77.0.$((k + 1))"
        k=$((k + 1))
    done
    # shellcheck disable=SC2086
    # the wire is the network, not a workload: real-time priority keeps its timing on a busy
    # machine (it sleeps between packets)
    $rt "$build/bench/netwire" --rate-mbit "$1" --delay-us "$2" --mtu 9000 $devs \
        >"$tmp/wire.out" 2>"$tmp/wire.err" &
    wire_pid=$!
    i=0
    until grep -q ready "$tmp/wire.out" 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 100 ] || { cat "$tmp/wire.err" >&2; echo "netns_check: netwire did not start" >&2; exit 1; }
        sleep 0.1
    done
    k=0
    while [ $k -lt "$ranks" ]; do
        ns=$tag-$k
        ip netns add "$ns"
        created="$created $ns"
        ip link set "${tag}w$k" netns "$ns"
        ip -n "$ns" addr add "10.77.0.$((k + 1))/24" dev "${tag}w$k"
        ip -n "$ns" link set "${tag}w$k" mtu 9000 up
        ip -n "$ns" link set lo up
        # a cluster's setting: TCP keeps its window between the bursts of the all-reduces
        ip netns exec "$ns" sysctl -qw net.ipv4.tcp_slow_start_after_idle=0
        k=$((k + 1))
    done
}

run_mpi() {
    ip netns exec "$tag-0" env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        mpirun -np "$ranks" --host "$hosts" --bind-to none \
        --mca plm_rsh_agent "$tmp/agent" --mca plm_rsh_no_tree_spawn 1 \
        --mca oob_tcp_if_include 10.77.0.0/24 \
        --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 "$@"
}

: >"$out"
echo "# netns_check $(date -u +%FT%TZ) ranks=$ranks load=$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
for l in $(echo "$links" | tr , ' '); do
    rate=${l%%:*}
    delay_ms=${l#*:}
    delay_us=$(awk "BEGIN { print $delay_ms * 1000 }")
    net_up "$rate" "$delay_us"
    echo "# link $rate Mbit/s, $delay_ms ms one way, $ranks ranks" | tee -a "$out"
    run_mpi "$build/bench/allreduce_bw" --max-bytes "$max_bytes" --seconds 0.3 $quick |
        sed "s/^/link=$l /" | tee -a "$out"
    for c in $(echo "$configs" | tr , ' '); do
        run_mpi "$build/bench/bench_ddp" --config "$c" --quick --rounds 3 |
            grep '^result' | sed "s/^/link=$l /" | tee -a "$out"
    done
    cleanup
done
echo "# load at the end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
