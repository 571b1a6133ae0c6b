#!/usr/bin/env bash
# A/B: how an uplink takes frames in (daemon --uplink-rx, --uplink-buffer).
#
# The harness's uplink topology (benches/system/vxbench/contenders.py,
# simulated_lan): a LAN (kernel bridge in namespace ${TAG}lan), a LAN host
# (${TAG}c1, 10.251.0.1) and the "host" namespace (${TAG}host) on veths into
# it, the host's eth0 with GRO and TSO on; `vxswitch daemon` in the host
# namespace, `network create lan --uplink eth0`, a container (${TAG}c2,
# 10.251.0.2) on a TAP port. The daemon is started afresh for each variant,
# the variants ALTERNATE within each round (their order rotating from round
# to round), so a load that comes and goes on the machine hits all alike.
#
# Variants (VARIANTS, space-separated MODE:MIB; default
# "socket:8 socket:64 ring:8"): MODE is --uplink-rx (socket: one read() per
# frame; ring: a TPACKET_V2 receive ring per worker), MIB --uplink-buffer
# (each socket's receive buffer, and the ring's size).
#
# Tests, LAN host -> container, per variant and round:
#   fps64   64-byte frames (with FCS, as the harness counts) from trafgen in
#           c1 (the harness's generator and frame: UDP to 10.251.0.99 with
#           c2's MAC, --cpus 1) for SECS seconds: frames/s received by c2's
#           eth0 in the window, loss = 1 - c2 rx / c1 tx over the run (and
#           a 0.5 s drain), and the uplink's rx_queue_drops (the kernel's
#           count of frames it dropped on the uplink's sockets)
#   tcp1, tcp4  iperf3 -t SECS, 1 and 4 streams, Gbit/s received; the
#           daemon's CPU seconds (utime+stime) during tcp4
# PERF=VARIANT: also `perf record -g -e cpu-clock` the daemon during that
# variant's tcp4 run of round 1 (report in $OUT.perf.txt).
# Rows go to $OUT (one per variant and round); the summary at the end gives
# medians and ranges per variant and the per-round ratio to the first
# variant.
#
#   sudo ROUNDS=5 SECS=4 benches/system/uplink_ab.sh
#   sudo VARIANTS="socket:8 ring:8" PERF=socket:8 benches/system/uplink_ab.sh
#
# Needs root, a release build (cargo build --release --bin vxswitch), ip,
# ethtool, iperf3, trafgen, ping, python3 (and perf with PERF). Everything it
# creates (its namespaces and the daemon) goes on exit. Bounded: about
# ROUNDS x variants x (3 x SECS + 10) seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${BIN:-target/release/vxswitch}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-4}
VARIANTS=${VARIANTS:-"socket:8 socket:64 ring:8"}
OUT=${OUT:-target/uplink_ab.tsv}
PERF=${PERF:-}
[ -x "$BIN" ] || { echo "uplink_ab: $BIN not built (cargo build --release --bin vxswitch)" >&2; exit 2; }

TAG=ulab$$
LAN=${TAG}lan H=${TAG}host C1=${TAG}c1 C2=${TAG}c2
TMP=$(mktemp -d)
SOCK=$TMP/d.sock
DPID=""
cleanup() {
    set +e
    [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && sleep 0.3
    for p in $(jobs -p); do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    for n in $LAN $H $C1 $C2; do ip netns del "$n" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for n in $LAN $H $C1 $C2; do
    ip netns add "$n"
    ip -n "$n" link set lo up
    ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip -n $LAN link add br0 type bridge
ip -n $LAN link set br0 up
ip -n $LAN link add lh1 type veth peer name eth0 netns $C1
ip -n $LAN link add up0 type veth peer name eth0 netns $H
for p in lh1 up0; do ip -n $LAN link set $p master br0 up; done
ip -n $C1 addr add 10.251.0.1/24 dev eth0
ip -n $C1 link set eth0 up
ip -n $H link set eth0 up
ip netns exec $H ethtool -K eth0 gro on tso on >/dev/null

wait_for() { # CMD...: retry every 0.1 s for at most 5 s
    local i
    for i in $(seq 50); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}
cli() { "$BIN" --socket "$SOCK" "$@"; }
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
ctr() { ip netns exec "$1" cat "/sys/class/net/eth0/statistics/$2"; }
gbps() { python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9,2))'; }

start_daemon() { # MODE MIB
    ip netns exec $H "$BIN" --socket "$SOCK" daemon --detach --pidfile "$TMP/d.pid" \
        --log-file "$TMP/d.log" --uplink-rx "$1" --uplink-buffer "$2" >/dev/null
    DPID=$(cat "$TMP/d.pid")
    cli network create lan --uplink eth0 --subnet 10.251.0.0/24 >/dev/null
    ip netns del $C2 2>/dev/null || true
    ip netns add $C2
    ip netns exec $C2 sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    cli port add c2 --network lan --netns /run/netns/$C2 --ip 10.251.0.2/24 >/dev/null
    wait_for ip netns exec $C1 ping -c1 -W1 10.251.0.2 || { echo "uplink_ab: no ping through the uplink ($1:$2)" >&2; cat "$TMP/d.log" >&2; exit 1; }
}
stop_daemon() {
    kill "$DPID"
    local i
    for i in $(seq 50); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
    DPID=""
}
qdrops() {
    cli port ls --json | python3 -c 'import json,sys
d=json.load(sys.stdin); ps=d if isinstance(d,list) else d.get("ports",[])
print(sum(int((p.get("uplink") or {}).get("rx_queue_drops", 0)) for p in ps))'
}

measure() { # ROUND VARIANT
    local round=$1 v=$2 mode=${2%%:*} mib=${2##*:}
    start_daemon "$mode" "$mib"
    # 64-byte frames (60 without FCS), as the harness's trafgen sends them.
    local mac; mac=$(ip -n $C2 -br link show eth0 | awk '{print $3}')
    printf '{ eth(da=%s, type=0x0800), ipv4(saddr=10.251.0.1, daddr=10.251.0.99, ttl=64, proto=17), udp(sp=9, dp=9), fill(0x00, %d) }\n' \
        "$mac" 18 >"$TMP/tg.cfg"
    ip netns exec $C2 ping -c1 -W1 10.251.0.1 >/dev/null || true
    local q0 rx0 tx0 w0 w1 t0 t1 tgp
    q0=$(qdrops); rx0=$(ctr $C2 rx_packets); tx0=$(ctr $C1 tx_packets)
    # Its own session: trafgen signals its whole process group on exit.
    setsid ip netns exec $C1 trafgen --dev eth0 --conf "$TMP/tg.cfg" --cpus 1 --no-sock-mem --notouch-irq >"$TMP/tg.out" 2>&1 &
    tgp=$!
    sleep 0.3
    w0=$(ctr $C2 rx_packets); t0=$(date +%s.%N)
    sleep "$SECS"
    w1=$(ctr $C2 rx_packets); t1=$(date +%s.%N)
    kill -INT -- -"$tgp"; wait $tgp 2>/dev/null || true
    sleep 0.5
    local rx1 tx1 q1
    rx1=$(ctr $C2 rx_packets); tx1=$(ctr $C1 tx_packets); q1=$(qdrops)
    local fps loss
    fps=$(python3 -c "print(round(($w1-$w0)/($t1-$t0)))")
    loss=$(python3 -c "print(round(100*(1-($rx1-$rx0)/max(1,$tx1-$tx0)),2))")
    # TCP, LAN host -> container.
    ip netns exec $C2 iperf3 -s -D -1 -B 10.251.0.2 >/dev/null; sleep 0.3
    local t1g t4g c0 c1 pp=""
    t1g=$(ip netns exec $C1 iperf3 -c 10.251.0.2 -t "$SECS" -J | gbps)
    ip netns exec $C2 iperf3 -s -D -1 -B 10.251.0.2 >/dev/null; sleep 0.3
    if [ "$PERF" = "$v" ] && [ "$round" = 1 ]; then
        perf record -g -e cpu-clock -o "$TMP/perf.data" -p "$DPID" -- sleep "$SECS" >/dev/null 2>&1 &
        pp=$!
    fi
    c0=$(cpu_ticks "$DPID")
    t4g=$(ip netns exec $C1 iperf3 -c 10.251.0.2 -t "$SECS" -P 4 -J | gbps)
    c1=$(cpu_ticks "$DPID")
    if [ -n "$pp" ]; then
        wait $pp || true
        perf report -i "$TMP/perf.data" --stdio --no-children --percent-limit 1 >"$OUT.perf.txt" 2>/dev/null || true
        perf report -i "$TMP/perf.data" --stdio --no-children --sort comm,dso --percent-limit 1 -g none >>"$OUT.perf.txt" 2>/dev/null || true
    fi
    local ws
    ws=$(cli stats 2>/dev/null | grep -i "worker" | tr -s ' ' | tr '\n' ';' || true)
    stop_daemon
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$v" "$fps" "$loss" "$((q1 - q0))" "$t1g" "$t4g" \
        "$(python3 -c "print(($c1-$c0)/100)")" "$ws" | tee -a "$OUT"
}

printf 'round\tvariant\tfps64\tloss64_pct\tqdrops\ttcp1_gbps\ttcp4_gbps\tdaemon_cpu_s_tcp4\tworkers\n' | tee "$OUT"
read -r -a VS <<<"$VARIANTS"
for r in $(seq 1 "$ROUNDS"); do
    n=${#VS[@]}
    for k in $(seq 0 $((n - 1))); do
        measure "$r" "${VS[$(((k + r - 1) % n))]}"
    done
done

python3 - "$OUT" "${VS[0]}" <<'EOF'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
base = sys.argv[2]
cols = ["fps64", "loss64_pct", "qdrops", "tcp1_gbps", "tcp4_gbps", "daemon_cpu_s_tcp4"]
by = {}
for r in rows:
    by.setdefault(r[1], []).append(r)
print(f"\nmedian [min-max] over {max(len(v) for v in by.values())} rounds; ratio = per-round value / {base}'s in the same round")
for v, rs in by.items():
    parts = []
    for i, c in enumerate(cols):
        xs = [float(r[2 + i]) for r in rs]
        parts.append(f"{c} {st.median(xs):g} [{min(xs):g}-{max(xs):g}]")
    print(f"{v:12} " + "  ".join(parts))
for v, rs in by.items():
    if v == base:
        continue
    for c, i in (("fps64", 2), ("tcp1_gbps", 5), ("tcp4_gbps", 6)):
        ratios = []
        for r in rs:
            b = [x for x in by[base] if x[0] == r[0]]
            if b and float(b[0][i]) > 0:
                ratios.append(float(r[i]) / float(b[0][i]))
        if ratios:
            print(f"{v:12} {c} / {base}: " + " ".join(f"{x:.2f}" for x in ratios))
EOF
