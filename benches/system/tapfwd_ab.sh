#!/usr/bin/env bash
# A/B: does io_uring beat non-blocking read()/write() on TAP fds?
#
# Runs examples/tapfwd.rs (a one-thread forwarder between two TAPs) between
# two namespaces of its own, ALTERNATING the modes (rw, uring, rw, uring, ...
# in every round) and measures for each:
#   pps      64-byte frames/s at the receiver (vxswitch pktgen tx -> rx), plain TAPs
#   tcp      iperf3 TCP, 1 stream, through --vnet TAPs (64 KiB super-frames)
#   tcp1500  iperf3 TCP, 1 stream, through plain TAPs (1514-byte frames)
# and the forwarder's CPU seconds (utime+stime from /proc/PID/stat) per
# million frames (pps) or per GB (tcp). Prints medians, ranges, the ratio
# of the medians to rw and the per-round (paired) ratios; raw rows go to --out.
#
#   sudo benches/system/tapfwd_ab.sh [--rounds N] [--seconds S] [--modes LIST] [--no-build] [--out FILE]
#
# Modes: rw (the engine's read/write), uring (multishot reads, provided
# buffers, batched writes), uring-oneshot (the same with one-shot reads).
# Default --modes rw,uring; rw must be among them (it is the baseline).
# Needs root, iproute2, iperf3, python3. Everything it creates (two
# namespaces, the TAPs inside them, its processes) is removed on exit.
# Bounded: rounds x modes x 3 tests x (S + about 3 s) of wall time; the
# defaults (5 rounds, 4 s, 2 modes) take about 4 minutes. See "io_uring on
# TAP fds" in docs/benchmarks-system.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=5
SECS=4
BUILD=1
OUT=target/tapfwd_ab.tsv
MODES=rw,uring
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "tapfwd_ab: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$ROUNDS$SECS" in *[!0-9]*) echo "tapfwd_ab: --rounds and --seconds take whole numbers" >&2; exit 2 ;; esac
[ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 20 ] || { echo "tapfwd_ab: --rounds must be 1..20" >&2; exit 2; }
[ "$SECS" -ge 1 ] && [ "$SECS" -le 10 ] || { echo "tapfwd_ab: --seconds must be 1..10" >&2; exit 2; }
for m in ${MODES//,/ }; do
    case $m in rw | uring | uring-oneshot) ;; *) echo "tapfwd_ab: unknown mode $m (rw, uring, uring-oneshot)" >&2; exit 2 ;; esac
done
case ",$MODES," in *,rw,*) ;; *) echo "tapfwd_ab: --modes must include rw (the baseline)" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "tapfwd_ab: needs root (namespaces, TAPs)" >&2; exit 2; }
for t in ip iperf3 python3; do
    command -v $t >/dev/null || { echo "tapfwd_ab: $t missing: apt-get install -y iproute2 iperf3 python3" >&2; exit 2; }
done

if [ $BUILD = 1 ]; then
    cargo build --release --quiet --example tapfwd --bin vxswitch
fi
TD=${CARGO_TARGET_DIR:-target}/release
FWD=$TD/examples/tapfwd
VXS=$TD/vxswitch
[ -x "$FWD" ] && [ -x "$VXS" ] || { echo "tapfwd_ab: $FWD or $VXS not built (drop --no-build)" >&2; exit 2; }

TAG=tfab$$
NA=${TAG}a
NB=${TAG}b
TMP=$(mktemp -d)
FP="" # the forwarder's PID while one runs
cleanup() {
    set +e
    [ -n "$FP" ] && kill "$FP" 2>/dev/null && wait "$FP" 2>/dev/null
    for p in $(jobs -p); do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    ip netns del "$NA" 2>/dev/null
    ip netns del "$NB" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for n in "$NA" "$NB"; do
    ip netns add "$n"
    ip -n "$n" link set lo up
    # No IPv6: only the test's own frames cross.
    ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
IPA=10.250.0.1
IPB=10.250.0.2

cpu_ticks() { # utime + stime of PID $1, in USER_HZ ticks
    awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
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

# start_fwd MODE [--vnet]: TAPs eth0 in both namespaces, forwarder running.
start_fwd() {
    local mode=$1 margs
    shift
    case $mode in
    rw) margs=(--mode rw) ;;
    uring) margs=(--mode uring) ;;
    uring-oneshot) margs=(--mode uring --no-multishot) ;;
    esac
    "$FWD" "${margs[@]}" --netns-a "$NA" --netns-b "$NB" \
        --ip-a $IPA/24 --ip-b $IPB/24 "$@" >"$TMP/fwd.out" 2>"$TMP/fwd.err" &
    FP=$!
    wait_for grep -q '^ready' "$TMP/fwd.out" || {
        echo "tapfwd_ab: forwarder did not start:" >&2
        cat "$TMP/fwd.err" >&2
        exit 1
    }
    wait_for ip netns exec "$NA" ping -c1 -W1 $IPB || { echo "tapfwd_ab: no ping through the forwarder ($mode $*)" >&2; exit 1; }
}

# stop_fwd: SIGINT, wait, its final JSON line into FJ.
stop_fwd() {
    kill -INT "$FP"
    wait "$FP" || { echo "tapfwd_ab: the forwarder failed:" >&2; cat "$TMP/fwd.err" >&2; exit 1; }
    FP=""
    FJ=$(tail -1 "$TMP/fwd.out")
}

# One measurement; appends a row "round mode test value cpu_s units fwd_json".
measure_pps() {
    local round=$1 mode=$2
    start_fwd "$mode"
    local mac
    mac=$(ip -n "$NB" -br link show eth0 | awk '{print $3}')
    "$VXS" pktgen rx --dev eth0 --netns "$NB" --wait 15 --json >"$TMP/rx.json" 2>"$TMP/rx.err" &
    local rxp=$!
    wait_for grep -q listening "$TMP/rx.err" || { cat "$TMP/rx.err" >&2; exit 1; }
    local c0 c1
    c0=$(cpu_ticks "$FP")
    "$VXS" pktgen tx --dev eth0 --netns "$NA" --dst-mac "$mac" --duration "$SECS" --json >"$TMP/tx.json"
    wait $rxp
    c1=$(cpu_ticks "$FP")
    stop_fwd
    python3 - "$round" "$mode" "$c0" "$c1" "$FJ" "$TMP/rx.json" "$TMP/tx.json" >>"$OUT" <<'EOF'
import json, sys
r, mode, c0, c1, fj, rx, tx = sys.argv[1:]
rx = json.load(open(rx))
tx = json.load(open(tx))
cpu = (int(c1) - int(c0)) / 100
frames = rx["unique"]
print(f"{r}\t{mode}\tpps\t{rx['pps']:.0f}\t{cpu:.2f}\t{cpu / frames * 1e6 if frames else float('nan'):.3f}\t{rx['lost']}\t{tx['queue_full']}\t{fj}")
EOF
}

measure_tcp() { # measure_tcp ROUND MODE TEST [--vnet]
    local round=$1 mode=$2 test=$3
    shift 3
    start_fwd "$mode" "$@"
    ip netns exec "$NB" iperf3 -s -1 -B $IPB >/dev/null 2>&1 &
    local sp=$!
    wait_for sh -c "ip netns exec $NB ss -ltn | grep -q ':5201 '"
    local c0 c1
    c0=$(cpu_ticks "$FP")
    timeout $((SECS + 20)) ip netns exec "$NA" iperf3 -c $IPB -t "$SECS" -J >"$TMP/iperf.json"
    c1=$(cpu_ticks "$FP")
    wait $sp || true
    stop_fwd
    python3 - "$round" "$mode" "$test" "$c0" "$c1" "$FJ" "$TMP/iperf.json" >>"$OUT" <<'EOF'
import json, sys
r, mode, test, c0, c1, fj, ij = sys.argv[1:]
s = json.load(open(ij))["end"]["sum_received"]
cpu = (int(c1) - int(c0)) / 100
gb = s["bytes"] / 1e9
print(f"{r}\t{mode}\t{test}\t{s['bits_per_second'] / 1e9:.3f}\t{cpu:.2f}\t{cpu / gb if gb else float('nan'):.3f}\t0\t0\t{fj}")
EOF
}

mkdir -p "$(dirname "$OUT")"
printf 'round\tmode\ttest\tvalue\tcpu_s\tcpu_per_unit\tlost\ttx_refused\tforwarder\n' >"$OUT"
echo "tapfwd_ab: $ROUNDS rounds x {$MODES} x {pps,tcp,tcp1500}, ${SECS} s each; load: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%F %H:%M UTC')"
for r in $(seq "$ROUNDS"); do
    for mode in ${MODES//,/ }; do
        measure_pps "$r" $mode
        measure_tcp "$r" $mode tcp --vnet
        measure_tcp "$r" $mode tcp1500
        echo "  round $r $mode: $(awk -F'\t' -v r="$r" -v m=$mode '$1==r && $2==m {printf "%s %s  ", $3, $4}' "$OUT")"
    done
done
echo "tapfwd_ab: load after: $(cut -d' ' -f1-3 /proc/loadavg); raw rows in $OUT"

python3 - "$OUT" <<'EOF'
import json, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
med = statistics.median
def cell(test, mode, i):
    return {int(r[0]): float(r[i]) for r in rows if r[2] == test and r[1] == mode}
def per_frame(test, mode, key):
    out = []
    for r in rows:
        if r[2] == test and r[1] == mode:
            f = json.loads(r[8])
            n = f["frames_ab"] + f["frames_ba"]
            out.append(f[key] / n if n else float("nan"))
    return med(out)
units = {"pps": ("64 B frames/s", "s/M frames"),
         "tcp": ("TCP 1 stream, --vnet", "s/GB"),
         "tcp1500": ("TCP 1 stream, plain TAP", "s/GB")}
modes = list(dict.fromkeys(r[1] for r in rows))
print()
print("| test | mode | median (range) | ÷ rw | per-round ÷ rw | CPU | CPU ÷ rw | per-round CPU ÷ rw | syscalls per frame |")
print("|---|---|---|---|---|---|---|---|---|")
for test, (what, cpu_unit) in units.items():
    base_v, base_c = cell(test, "rw", 3), cell(test, "rw", 5)
    if not base_v:
        continue
    for m in modes:
        v, c = cell(test, m, 3), cell(test, m, 5)
        if not v:
            continue
        fmt = (lambda x: f"{x / 1e6:.3f}") if test == "pps" else (lambda x: f"{x:.2f}")
        unit = " M" if test == "pps" else " Gbit/s"
        line = f"| {what} | {m} | {fmt(med(v.values()))}{unit} ({fmt(min(v.values()))}–{fmt(max(v.values()))}) "
        if m == "rw":
            line += "| | "
        else:
            pr = [v[k] / base_v[k] for k in v if k in base_v]
            line += f"| {med(v.values()) / med(base_v.values()):.2f} | {med(pr):.2f} ({min(pr):.2f}–{max(pr):.2f}) "
        line += f"| {med(c.values()):.2f} {cpu_unit} ({min(c.values()):.2f}–{max(c.values()):.2f}) "
        if m == "rw":
            line += "| | "
        else:
            pc = [c[k] / base_c[k] for k in c if k in base_c]
            line += f"| {med(c.values()) / med(base_c.values()):.2f} | {med(pc):.2f} ({min(pc):.2f}–{max(pc):.2f}) "
        line += f"| {per_frame(test, m, 'syscalls'):.3f} |"
        print(line)
refused = {m: med(cell("pps", m, 7).values()) for m in modes if cell("pps", m, 7)}
threads = max(json.loads(r[8])["threads"] for r in rows)
print(f"\nCPU: the forwarder's utime+stime during each test window. Medians of {len(cell('pps', 'rw', 3))} runs per mode;")
print("per-round ratios pair each run with the rw run of the same round (median, range).")
print("pktgen tx sends refused by a full TAP (resent, not lost), median per run: "
      + ", ".join(f"{m} {v:.0f}" for m, v in refused.items()))
print(f"Most threads the forwarder had at exit: {threads} (more than 1 would mean io-wq workers).")
EOF
