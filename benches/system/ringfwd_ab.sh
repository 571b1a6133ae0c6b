#!/usr/bin/env bash
# A/B: can a port type past one syscall per frame beat the TAP floor?
#
# Two "containers" (namespaces) joined several ways, set up once and measured
# in ALTERNATION, the order of the contenders rotating from round to round:
#   tap     examples/tapfwd --mode rw --vnet: TAPs, one read() and one
#           write() per frame (the floor of every TAP switch)
#   ring    examples/ringfwd --vnet: the containers get veths, the forwarder
#           drives their host ends through AF_PACKET TPACKET_V2 mmap rings
#           with a virtio_net_hdr (one poll for many frames, one send per
#           batch), in a third namespace
#   ringmm  the same receive rings, but no transmit ring: each batch goes
#           out with one sendmmsg straight from the receive slots (the
#           kernel copies each frame once, where a transmit ring's frames
#           are copied by the veth anyway, after the forwarder's own copy)
#   bridge  the kernel bridge with the same veths enslaved (the reference)
#   ringspin  (only when listed) ring with --spin-us SPIN (--spin, default
#           50): the forwarder watches the rings' next slots that long
#           before it sleeps, which costs no system call on a ring
# Tests, each with the forwarder started afresh (tap, ring):
#   ping     ping -i 0.001 -c 1000: average and p99 RTT, µs
#   pps      64-byte frames/s at the receiver (vxswitch pktgen tx -> rx),
#            sent as fast as the sender can: a full TAP refuses the
#            sender's frames (it resends), a veth never does, so there the
#            sender's excess is dropped where the forwarder cannot keep up
#   paced    64-byte frames offered at --rate (default 50000/s): frames
#            lost, and the CPU per frame at a load all contenders carry
#   tcp1     iperf3 TCP, 1 stream, Gbit/s
#   tcp4     iperf3 TCP, 4 streams, Gbit/s
# CPU: the forwarder's utime+stime (/proc/PID/stat) over the test window,
# and the whole machine's busy time (/proc/stat: everything but idle and
# iowait; the bridge forwards in the senders' softirq, so only this figure
# counts its work, along with the traffic tools' and anything else running)
# per million frames (pps) or per GB (tcp). Prints medians, ranges, the
# ratio of the medians to tap and to bridge, and the per-round (paired)
# ratios; raw rows go to --out.
#
#   sudo benches/system/ringfwd_ab.sh [--rounds N] [--seconds S] [--contenders LIST]
#        [--ring-args "..."] [--spin US] [--rate FPS] [--no-build] [--out FILE]
#   benches/system/ringfwd_ab.sh --report FILE     (the tables again, from a run's raw rows)
#
# Needs root, iproute2, iperf3, ping, python3. Everything it creates (its
# namespaces, the veths, TAPs and bridge inside them, its processes) is
# removed on exit. Bounded: rounds x contenders x (4 x S + ping + about
# 10 s); the defaults (5 rounds, 4 s, 4 contenders) take about 12 minutes.
# See "Port types past the TAP floor" in docs/benchmarks-system.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=5
SECS=4
BUILD=1
OUT=target/ringfwd_ab.tsv
CONTENDERS=tap,ring,ringmm,bridge
RING_ARGS=""
SPIN=50
RATE=50000
REPORT=""
PINGS=1000
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --contenders) CONTENDERS=$2; shift 2 ;;
    --ring-args) RING_ARGS=$2; shift 2 ;;
    --spin) SPIN=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --report) REPORT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) sed -n '2,46p' "$0"; exit 0 ;;
    *) echo "ringfwd_ab: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$ROUNDS$SECS$SPIN$RATE" in *[!0-9]*) echo "ringfwd_ab: --rounds, --seconds, --spin and --rate take whole numbers" >&2; exit 2 ;; esac
[ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 20 ] || { echo "ringfwd_ab: --rounds must be 1..20" >&2; exit 2; }
[ "$SECS" -ge 1 ] && [ "$SECS" -le 10 ] || { echo "ringfwd_ab: --seconds must be 1..10" >&2; exit 2; }
for c in ${CONTENDERS//,/ }; do
    case $c in tap | ring | ringmm | ringspin | bridge) ;; *) echo "ringfwd_ab: unknown contender $c (tap, ring, ringmm, ringspin, bridge)" >&2; exit 2 ;; esac
done
case ",$CONTENDERS," in *,tap,*) ;; *) echo "ringfwd_ab: --contenders must include tap (the floor)" >&2; exit 2 ;; esac
if [ -z "$REPORT" ]; then
[ "$(id -u)" = 0 ] || { echo "ringfwd_ab: needs root (namespaces, TAPs, veths)" >&2; exit 2; }
for t in ip iperf3 ping python3; do
    command -v $t >/dev/null || { echo "ringfwd_ab: $t missing: apt-get install -y iproute2 iperf3 iputils-ping python3" >&2; exit 2; }
done

if [ $BUILD = 1 ]; then
    cargo build --release --quiet --example tapfwd --example ringfwd --bin vxswitch
fi
TD=${CARGO_TARGET_DIR:-target}/release
TAPFWD=$TD/examples/tapfwd
RINGFWD=$TD/examples/ringfwd
VXS=$TD/vxswitch
for b in "$TAPFWD" "$RINGFWD" "$VXS"; do
    [ -x "$b" ] || { echo "ringfwd_ab: $b not built (drop --no-build)" >&2; exit 2; }
done

TAG=rfab$$
TMP=$(mktemp -d)
FP="" # the forwarder's PID while one runs
NSS=()
cleanup() {
    set +e
    [ -n "$FP" ] && kill "$FP" 2>/dev/null && wait "$FP" 2>/dev/null
    for p in $(jobs -p); do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

IPA=10.250.0.1
IPB=10.250.0.2

mkns() {
    ip netns add "$1"
    NSS+=("$1")
    ip -n "$1" link set lo up
    # No IPv6: only the test's own frames cross.
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# Namespaces per contender: ${TAG}${c}a and b (the containers), and for the
# veth contenders ${TAG}${c}s (the switch) with veths va/vb whose peers are
# eth0 in a and b.
for c in ${CONTENDERS//,/ }; do
    mkns "$TAG${c}a"
    mkns "$TAG${c}b"
    [ "$c" = tap ] && continue
    S=$TAG${c}s
    mkns "$S"
    for x in a b; do
        ip link add v$x netns "$S" type veth peer name eth0 netns "$TAG$c$x"
        ip -n "$S" link set v$x up
    done
    ip -n "$TAG${c}a" addr add $IPA/24 dev eth0
    ip -n "$TAG${c}b" addr add $IPB/24 dev eth0
    ip -n "$TAG${c}a" link set eth0 up
    ip -n "$TAG${c}b" link set eth0 up
    if [ "$c" = bridge ]; then
        ip -n "$S" link add br0 type bridge
        ip -n "$S" link set va master br0
        ip -n "$S" link set vb master br0
        ip -n "$S" link set br0 up
    fi
done

cpu_ticks() { # utime + stime of PID $1, in USER_HZ ticks
    awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
sys_ticks() { # busy ticks of the whole machine: all but idle and iowait
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# wait_for CMD...: retry CMD every 0.1 s for at most 5 s.
wait_for() {
    local i
    for i in $(seq 50); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# start_fwd C: the contender's forwarder running (none for bridge), and a
# ping through it answered.
start_fwd() {
    local c=$1
    case $c in
    tap)
        "$TAPFWD" --mode rw --vnet --netns-a "$TAG${c}a" --netns-b "$TAG${c}b" \
            --ip-a $IPA/24 --ip-b $IPB/24 >"$TMP/fwd.out" 2>"$TMP/fwd.err" &
        FP=$!
        ;;
    ring | ringmm | ringspin)
        local spin=0 tx=ring
        [ "$c" = ringspin ] && spin=$SPIN
        [ "$c" = ringmm ] && tx=sendmmsg
        # shellcheck disable=SC2086 # RING_ARGS are words
        ip netns exec "$TAG${c}s" "$RINGFWD" --if-a va --if-b vb --vnet --tx $tx --spin-us $spin $RING_ARGS \
            >"$TMP/fwd.out" 2>"$TMP/fwd.err" &
        FP=$!
        ;;
    bridge) FP="" ;;
    esac
    if [ -n "$FP" ]; then
        wait_for grep -q '^ready' "$TMP/fwd.out" || {
            echo "ringfwd_ab: $c forwarder did not start:" >&2
            cat "$TMP/fwd.err" >&2
            exit 1
        }
    fi
    wait_for ip netns exec "$TAG${c}a" ping -c1 -W1 $IPB || { echo "ringfwd_ab: no ping through $c" >&2; exit 1; }
}

# stop_fwd: SIGINT, wait, its final JSON line into FJ ({} for the bridge).
stop_fwd() {
    FJ="{}"
    [ -n "$FP" ] || return 0
    kill -INT "$FP"
    wait "$FP" || { echo "ringfwd_ab: the forwarder failed:" >&2; cat "$TMP/fwd.err" >&2; exit 1; }
    FP=""
    FJ=$(tail -1 "$TMP/fwd.out")
}

C0=0
S0=0
window_start() {
    C0=0
    [ -n "$FP" ] && C0=$(cpu_ticks "$FP")
    S0=$(sys_ticks)
}
# window_end: CPU seconds of the forwarder and the machine since window_start.
window_end() {
    local c1=0 s1
    [ -n "$FP" ] && c1=$(cpu_ticks "$FP")
    s1=$(sys_ticks)
    WCPU=$(awk -v a="$C0" -v b="$c1" 'BEGIN { printf "%.2f", (b - a) / 100 }')
    WSYS=$(awk -v a="$S0" -v b="$s1" 'BEGIN { printf "%.2f", (b - a) / 100 }')
}

# Every measurement appends a row:
# round contender test value extra cpu_fwd_s cpu_sys_s units fwd_json
measure_ping() {
    local round=$1 c=$2
    start_fwd "$c"
    window_start
    ip netns exec "$TAG${c}a" ping -n -c $PINGS -i 0.001 -W 1 $IPB >"$TMP/ping.txt" || true
    window_end
    stop_fwd
    python3 - "$round" "$c" "$WCPU" "$WSYS" "$FJ" "$TMP/ping.txt" >>"$OUT" <<'EOF'
import re, sys
r, c, cpu, sysc, fj, f = sys.argv[1:]
rtts = sorted(float(m) * 1000 for m in re.findall(r"time=([0-9.]+) ms", open(f).read()))
if not rtts:
    sys.exit(f"ringfwd_ab: no ping replies through {c}")
avg = sum(rtts) / len(rtts)
p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
print(f"{r}\t{c}\tping\t{avg:.1f}\t{p99:.1f}\t{cpu}\t{sysc}\t{len(rtts)}\t{fj}")
EOF
}

measure_pps() { # measure_pps ROUND C [TEST RATE]
    local round=$1 c=$2 test=${3:-pps} rate=()
    [ -n "${4:-}" ] && rate=(--rate "$4")
    start_fwd "$c"
    local mac
    mac=$(ip -n "$TAG${c}b" -br link show eth0 | awk '{print $3}')
    "$VXS" pktgen rx --dev eth0 --netns "$TAG${c}b" --wait 15 --json >"$TMP/rx.json" 2>"$TMP/rx.err" &
    local rxp=$!
    wait_for grep -q listening "$TMP/rx.err" || { cat "$TMP/rx.err" >&2; exit 1; }
    window_start
    "$VXS" pktgen tx --dev eth0 --netns "$TAG${c}a" --dst-mac "$mac" --duration "$SECS" "${rate[@]}" --json >"$TMP/tx.json"
    wait $rxp
    window_end
    stop_fwd
    python3 - "$round" "$c" "$test" "$WCPU" "$WSYS" "$FJ" "$TMP/rx.json" "$TMP/tx.json" >>"$OUT" <<'EOF'
import json, sys
r, c, test, cpu, sysc, fj, rx, tx = sys.argv[1:]
rx = json.load(open(rx))
tx = json.load(open(tx))
print(f"{r}\t{c}\t{test}\t{rx['pps']:.0f}\t{rx['lost']}\t{cpu}\t{sysc}\t{rx['unique']}\t{fj}")
EOF
}

measure_tcp() { # measure_tcp ROUND C STREAMS
    local round=$1 c=$2 p=$3
    start_fwd "$c"
    ip netns exec "$TAG${c}b" iperf3 -s -1 -B $IPB >/dev/null 2>&1 &
    local sp=$!
    wait_for sh -c "ip netns exec $TAG${c}b ss -ltn | grep -q ':5201 '"
    window_start
    timeout $((SECS + 20)) ip netns exec "$TAG${c}a" iperf3 -c $IPB -t "$SECS" -P "$p" -J >"$TMP/iperf.json"
    window_end
    wait $sp || true
    stop_fwd
    python3 - "$round" "$c" "tcp$p" "$WCPU" "$WSYS" "$FJ" "$TMP/iperf.json" >>"$OUT" <<'EOF'
import json, sys
r, c, test, cpu, sysc, fj, ij = sys.argv[1:]
s = json.load(open(ij))["end"]["sum_received"]
print(f"{r}\t{c}\t{test}\t{s['bits_per_second'] / 1e9:.3f}\t0\t{cpu}\t{sysc}\t{s['bytes']}\t{fj}")
EOF
}

mkdir -p "$(dirname "$OUT")"
printf 'round\tcontender\ttest\tvalue\textra\tcpu_fwd_s\tcpu_sys_s\tunits\tforwarder\n' >"$OUT"
echo "ringfwd_ab: $ROUNDS rounds x {$CONTENDERS} x {ping,pps,paced,tcp1,tcp4}, ${SECS} s each (paced: $RATE/s); load: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%F %H:%M UTC')"
read -r -a ORDER <<<"${CONTENDERS//,/ }"
for r in $(seq "$ROUNDS"); do
    # Rotate the order by one each round.
    k=$(((r - 1) % ${#ORDER[@]}))
    this=("${ORDER[@]:$k}" "${ORDER[@]:0:$k}")
    for c in "${this[@]}"; do
        measure_ping "$r" "$c"
        measure_pps "$r" "$c"
        measure_pps "$r" "$c" paced "$RATE"
        measure_tcp "$r" "$c" 1
        measure_tcp "$r" "$c" 4
        echo "  round $r $c: $(awk -F'\t' -v r="$r" -v c="$c" '$1==r && $2==c {printf "%s %s  ", $3, $4}' "$OUT") load $(cut -d' ' -f1 /proc/loadavg)"
    done
done
echo "ringfwd_ab: load after: $(cut -d' ' -f1-3 /proc/loadavg); raw rows in $OUT"

fi
[ -n "$REPORT" ] && OUT=$REPORT
python3 - "$OUT" <<'EOF'
import json, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
med = statistics.median
def num(x):
    try:
        return float(x)
    except ValueError:
        return None  # e.g. pktgen could not count the lost frames
def col(test, c, i):
    return {int(r[0]): num(r[i]) for r in rows if r[2] == test and r[1] == c and num(r[i]) is not None}
def per_unit(test, c, i):
    # CPU seconds per million frames (pps) or per GB (tcp), per round.
    out = {}
    for r in rows:
        if r[2] == test and r[1] == c:
            units = float(r[7]) / (1e6 if test in ("pps", "paced") else 1e9)
            out[int(r[0])] = float(r[i]) / units if units else float("nan")
    return out
def rng(d, f):
    return f"{f(med(d.values()))} ({f(min(d.values()))}–{f(max(d.values()))})"
def ratio(a, b):
    pr = [a[k] / b[k] for k in a if k in b and b[k]]
    if not pr:
        return "–"
    return f"{med(a.values()) / med(b.values()):.2f} [{med(pr):.2f} ({min(pr):.2f}–{max(pr):.2f})]"
cs = list(dict.fromkeys(r[1] for r in rows))
tests = {"ping": ("ping -i 0.001 avg RTT, µs", lambda x: f"{x:.0f}"),
         "ping99": ("ping -i 0.001 p99 RTT, µs", lambda x: f"{x:.0f}"),
         "pps": ("64 B frames/s, M", lambda x: f"{x / 1e6:.3f}"),
         "paced": ("64 B at a fixed rate: frames/s, M", lambda x: f"{x / 1e6:.3f}"),
         "tcp1": ("TCP 1 stream, Gbit/s", lambda x: f"{x:.2f}"),
         "tcp4": ("TCP 4 streams, Gbit/s", lambda x: f"{x:.2f}")}
print()
print("| test | contender | median (range) | ÷ tap [paired] | ÷ bridge [paired] | fwd CPU | machine CPU | syscalls/frame |")
print("|---|---|---|---|---|---|---|---|")
for t, (what, f) in tests.items():
    src, idx = ("ping", 4) if t == "ping99" else (t, 3)
    for c in cs:
        v = col(src, c, idx)
        if not v:
            continue
        line = f"| {what} | {c} | {rng(v, f)} "
        line += "| " if c == "tap" else f"| {ratio(v, col(src, 'tap', idx))} "
        line += "| " if c == "bridge" or "bridge" not in cs else f"| {ratio(v, col(src, 'bridge', idx))} "
        if t in ("pps", "paced", "tcp1", "tcp4"):
            unit = "s/GB" if t.startswith("tcp") else "s/M"
            fwd = per_unit(t, c, 5)
            line += f"| {med(fwd.values()):.2f} {unit} " if c != "bridge" else "| – "
            line += f"| {med(per_unit(t, c, 6).values()):.2f} {unit} "
        else:
            line += f"| {med(col(src, c, 5).values()):.2f} s | {med(col(src, c, 6).values()):.2f} s "
        sc = []
        for r in rows:
            if r[2] == src and r[1] == c and r[8] != "{}":
                j = json.loads(r[8])
                n = j["frames_ab"] + j["frames_ba"]
                if n:
                    sc.append(j["syscalls"] / n)
        line += f"| {med(sc):.3f} |" if sc else "| – |"
        print(line)
print(f"\nMedians of {len(col('ping', 'tap', 3))} rounds; ÷: ratio of the medians [median (range) of the per-round ratios].")
for t in ("pps", "paced"):
    lost = {c: med(col(t, c, 4).values()) for c in cs if col(t, c, 4)}
    if lost:
        print(f"{t}: pktgen frames lost (median per run): " + ", ".join(f"{c} {v:.0f}" for c, v in lost.items()))
drops = []
for r in rows:
    if r[1].startswith("ring") and r[8] != "{}":
        j = json.loads(r[8])
        drops.append((r[1], j.get("rx_kernel_drops", 0), j.get("tx_ring_full", 0), j.get("rx_truncated", 0), j.get("tx_busy", 0), j.get("tx_refused", 0)))
for c in dict.fromkeys(d[0] for d in drops):
    tot = [sum(d[i] for d in drops if d[0] == c) for i in range(1, 6)]
    print(f"{c}, all runs: receive ring full (kernel drops) {tot[0]}, transmit ring full {tot[1]}, truncated {tot[2]}, flushes refused {tot[3]}, sends refused {tot[4]}")
EOF
