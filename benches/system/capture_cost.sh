#!/usr/bin/env bash
# What a capture costs the forwarding rate (docs/observability.md, "What a
# capture costs the forwarding rate"; issue 14).
#
# One daemon (--workers 1) with two containers c0 and c1 (namespaces),
# set up once. pktgen sends 64-byte frames from c0 to c1 at full rate for
# S seconds and counts what arrives at c1, in three cases ALTERNATED round
# by round, the order rotating each round:
#   none        no capture
#   never-read  a capture of c0 whose reader never reads: its queue fills
#               at once, then every copy is lost (counted), the frames not
#   read        `vxswitch capture c0 -w /dev/null`: every frame of c0
#               copied (up to the queue) and written out by the capture's
#               writer thread
# Prints each round's rates and their ratios to `none` in the same round
# (paired: the machine's drift between rounds cancels), then the medians.
# Raw rows go to --out.
#
#   sudo benches/system/capture_cost.sh [--rounds N] [--seconds S] [--bin PATH] [--out FILE]
#
# Needs root, iproute2 and python3, and a release build of vxswitch
# (`cargo build --release`, or --bin). Everything it creates (its
# namespaces, the daemon, its captures) is removed on exit, by name and
# PID. Bounded: rounds x 3 x (S + about 2 s); the defaults (5 rounds, 4 s)
# take about 1.5 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=5
SECS=4
BIN=target/release/vxswitch
OUT=target/capture_cost.tsv
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release first, or give --bin" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root (namespaces, TAPs)" >&2; exit 2; }

TAG=cc$$
TMP=$(mktemp -d /tmp/capture_cost.XXXXXX)
SOCK=$TMP/vxswitch.sock
HOST=${TAG}h; C0=${TAG}c0; C1=${TAG}c1
DAEMON=""; IDLE=""; CAP=""; RX=""
cleanup() {
  for p in $RX $CAP $IDLE $DAEMON; do kill "$p" 2>/dev/null || true; done
  for p in $RX $CAP $IDLE $DAEMON; do wait "$p" 2>/dev/null || true; done
  for n in $C0 $C1 $HOST; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

vx() { "$BIN" --socket "$SOCK" "$@"; }
for n in $HOST $C0 $C1; do
  ip netns add "$n"
  ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
done
ip netns exec "$HOST" "$BIN" --socket "$SOCK" daemon --workers 1 >"$TMP/daemon.log" 2>&1 &
DAEMON=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
vx network create red --subnet 10.79.9.0/24 >/dev/null
vx port add c0 --network red --netns "/run/netns/$C0" --ip 10.79.9.11/24 >/dev/null
vx port add c1 --network red --netns "/run/netns/$C1" --ip 10.79.9.12/24 >/dev/null
ip netns exec "$C0" ping -c1 -W5 10.79.9.12 >/dev/null
MAC=$(ip -n "$C1" -br link show eth0 | awk '{print $3}')

# One measurement: the rate c1 received, in frames/s.
measure() {
  "$BIN" pktgen rx --dev eth0 --netns "$C1" 2>"$TMP/rx.log" >"$TMP/rx.out" &
  RX=$!
  until grep -qs listening "$TMP/rx.log" || ! kill -0 $RX 2>/dev/null; do sleep 0.05; done
  "$BIN" pktgen tx --dev eth0 --netns "$C0" --dst-mac "$MAC" --duration "$SECS" >/dev/null 2>&1
  wait $RX || true
  RX=""
  grep -o '[0-9]*pps' "$TMP/rx.out" | head -1 | tr -d pps
}

# A capture whose reader never reads: capture.start, then nothing.
idle_start() {
  python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b"{\"cmd\":\"capture.start\",\"args\":{\"port\":\"c0\"}}\n")
print("started", flush=True)
time.sleep(3600)' "$SOCK" >"$TMP/idle.out" &
  IDLE=$!
  until grep -qs started "$TMP/idle.out"; do sleep 0.05; done
  sleep 0.2   # the reply, then the writer blocks on a reader that never reads
}
idle_stop() { kill $IDLE; wait $IDLE 2>/dev/null || true; IDLE=""; sleep 0.3; }

read_start() {
  "$BIN" --socket "$SOCK" capture c0 -w /dev/null 2>"$TMP/cap.err" &
  CAP=$!
  until grep -qs capturing "$TMP/cap.err"; do sleep 0.05; done
}
read_stop() { kill -INT $CAP; wait $CAP || true; CAP=""; }

echo -e "round\tcase\tpps\tnote" >"$OUT"
CASES=(none never-read read)
for r in $(seq "$ROUNDS"); do
  for k in 0 1 2; do
    c=${CASES[$(( (k + r - 1) % 3 ))]}
    note=""
    case $c in
      none) pps=$(measure) ;;
      never-read) idle_start; pps=$(measure); idle_stop ;;
      read) read_start; pps=$(measure); read_stop; note=$(tail -1 "$TMP/cap.err") ;;
    esac
    echo -e "$r\t$c\t$pps\t$note" >>"$OUT"
    echo "round $r: $c $pps pps ${note:+($note)}" >&2
  done
done

python3 - "$OUT" <<'EOF'
import csv, re, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = {}
for r in rows:
    by.setdefault(int(r["round"]), {})[r["case"]] = (float(r["pps"] or 0), r["note"])
print("| round | none | never-read | read | never-read / none | read / none | read: captured / lost |")
print("|---|---|---|---|---|---|---|")
ratios = {"never-read": [], "read": []}
for rnd in sorted(by):
    d = by[rnd]
    base = d["none"][0]
    cells = [f"{d[c][0]:,.0f}" for c in ("none", "never-read", "read")]
    rs = []
    for c in ("never-read", "read"):
        x = d[c][0] / base if base else float("nan")
        ratios[c].append(x)
        rs.append(f"{x:.3f}")
    m = re.match(r"(\d+) frames? captured, (\d+) lost", d["read"][1])
    copies = f"{int(m[1]):,} / {int(m[2]):,}" if m else d["read"][1]
    print(f"| {rnd} | " + " | ".join(cells + rs) + f" | {copies} |")
med = {c: statistics.median(v) for c, v in ratios.items()}
print(f"| median | | | | {med['never-read']:.3f} | {med['read']:.3f} | |")
EOF
