#!/usr/bin/env bash
# Where a 64-byte frame's CPU goes, LAN host -> container: kernel macvlan
# against vxswitch's uplink with the eBPF fast path (docs/uplink.md, "The
# fast path"), alternated ROUNDS times.
#
# The harness's uplink topology (benches/system/vxbench/contenders.py,
# simulated_lan), built afresh for each variant: a LAN (kernel bridge in
# namespace ${TAG}-lan), a LAN host (${TAG}-c1, 10.66.0.1) and the "host"
# namespace (${TAG}-host) on veths into it, the host's eth0 with GRO and TSO
# on; the container ${TAG}-c2 (10.66.0.2) on
#   macvlan  `ip link add link eth0 type macvlan mode bridge`, moved into c2;
#   ebpf     `vxswitch daemon --fastpath ebpf`, `network create lan --uplink
#            eth0`, `port add c2 --backend veth`.
# After a ping both ways (the switch learns both MACs; a sync round puts
# them in the fast path's maps), `vxswitch pktgen tx` in c1 floods 60-byte
# UDP frames (64 with the FCS) to c2's MAC for SECS seconds; frames/s is
# what c2's eth0 received. With PERF=1, `perf record -a -g` samples the
# machine for 4 s in the middle of each variant's first flood and the
# script prints the symbols of the path each variant adds (the tc and
# socket programs, their map lookups, the packet socket's tap and fanout
# hash, tc itself, macvlan's lookup) as shares of the machine's busy time
# (perf samples the whole machine: other work running meanwhile shows up
# in both variants). The daemon's packet
# sockets on the uplink's interface (/proc/net/packet: a protocol other
# than 0 there would put every frame through a tap) are printed too.
#
#   sudo ROUNDS=3 PERF=1 benches/system/uplink_profile.sh
#
# Needs root, a release build (cargo build --release --bin vxswitch), ip,
# ethtool, ping, python3 (and perf with PERF=1). Everything it creates (its
# namespaces, the daemon) goes on exit. Bounded: ROUNDS x 2 x (SECS + 10) s.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
SECS=${SECS:-8}
PERF=${PERF:-0}
BIN=${VXSWITCH_BIN:-$(dirname "$0")/../../target/release/vxswitch}
TAG=upp$$
OUT=${OUT:-/tmp/$TAG}
mkdir -p "$OUT"
DPID=

teardown() {
    if [ -n "$DPID" ]; then kill "$DPID" 2>/dev/null || true; wait "$DPID" 2>/dev/null || true; DPID=; fi
    for n in lan host c1 c2; do ip netns del "$TAG-$n" 2>/dev/null || true; done
    rm -f "$OUT/sock"
}
trap teardown EXIT

counter() { # namespace -> eth0's received packets
    ip -n "$1" -s -j link show eth0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["packets"])'
}

build() { # variant
    local lan=$TAG-lan host=$TAG-host c1=$TAG-c1 c2=$TAG-c2
    for n in $lan $host $c1 $c2; do ip netns add "$n"; done
    ip -n $lan link add br0 type bridge
    ip -n $lan link set br0 up
    ip link add lh1 netns $lan type veth peer name eth0 netns $c1
    ip link add up0 netns $lan type veth peer name eth0 netns $host
    for p in lh1 up0; do ip -n $lan link set $p master br0; ip -n $lan link set $p up; done
    ip -n $c1 addr add 10.66.0.1/24 dev eth0
    ip -n $c1 link set eth0 up
    ip -n $host link set eth0 up
    ip netns exec $host ethtool -K eth0 gro on tso on >/dev/null
    if [ "$1" = macvlan ]; then
        ip -n $host link add mv0 link eth0 type macvlan mode bridge
        ip -n $host link set mv0 netns $c2
        ip -n $c2 link set mv0 name eth0
        ip -n $c2 addr add 10.66.0.2/24 dev eth0
        ip -n $c2 link set eth0 up
    else
        ip netns exec $host "$BIN" daemon --socket "$OUT/sock" --fastpath ebpf >"$OUT/daemon.log" 2>&1 &
        DPID=$!
        for _ in $(seq 100); do [ -S "$OUT/sock" ] && break; sleep 0.1; done
        "$BIN" --socket "$OUT/sock" network create lan --uplink eth0 --subnet 10.66.0.0/24 >/dev/null
        "$BIN" --socket "$OUT/sock" port add c2 --network lan --netns /run/netns/$c2 \
            --ip 10.66.0.2/24 --backend veth >/dev/null
    fi
    if [ "$1" != macvlan ]; then
        local idx
        idx=$(ip -n $host -j link show eth0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["ifindex"])')
        echo "$1: packet sockets on eth0 (protocol): $(ip netns exec $host awk -v i="$idx" '$5 == i { printf "%s ", $4 }' /proc/net/packet)"
    fi
    ip netns exec $c1 ping -c 2 -i 0.2 -W 1 10.66.0.2 >/dev/null
    ip netns exec $c2 ping -c 2 -i 0.2 -W 1 10.66.0.1 >/dev/null
    sleep 1.5 # the fast path's maps are synced once a second
}

flood() { # variant round
    local c1=$TAG-c1 c2=$TAG-c2 mac r0 r1 gen
    mac=$(ip -n $c2 -j link show eth0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])')
    r0=$(counter $c2)
    "$BIN" --json pktgen tx --dev eth0 --netns /run/netns/$c1 --dst-mac "$mac" --src-ip 10.66.0.1 \
        --dst-ip 10.66.0.99 --size 60 --duration "$SECS" >"$OUT/gen.json" 2>&1 &
    gen=$!
    if [ "$PERF" = 1 ] && [ "$2" = 1 ]; then
        sleep $((SECS / 2 - 2))
        perf record -a -g -o "$OUT/perf-$1.data" -- sleep 4 >/dev/null 2>&1
    fi
    wait $gen
    r1=$(counter $c2)
    echo "$1 round $2: $(((r1 - r0) / SECS)) frames/s received"
}

for round in $(seq "$ROUNDS"); do
    order="macvlan ebpf"
    [ $((round % 2)) = 0 ] && order="ebpf macvlan"
    for v in $order; do
        build $v
        flood $v "$round"
        teardown
    done
done

if [ "$PERF" = 1 ]; then
    for v in macvlan ebpf; do
        echo "== $v: symbols of the path, % of the machine's busy samples"
        perf report -i "$OUT/perf-$v.data" --no-children --sort symbol --stdio 2>/dev/null |
            awk '/^ +[0-9.]+%/ { p = $1; sub("%", "", p); s = $3; total += p; if (s ~ /halt|idle/) idle += p;
                   if (s ~ /bpf|htab|lookup_nulls|packet_rcv|fanout|siphash|tcf_|tc_run|skb_do_redirect|ktime|macvlan/)
                       { sum += p; line[s] = p } }
                 END { busy = total - idle; for (s in line) printf "  %5.1f%%  %s\n", 100 * line[s] / busy, s;
                       printf "  %5.1f%%  all of the above\n", 100 * sum / busy }' | sort -rn
    done
fi
