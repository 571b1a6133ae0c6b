#!/usr/bin/env bash
# A/B: ping RTT through `vxswitch daemon --busy-poll auto` with two
# binaries, alternated pair by pair, and what each worker's spinning did
# (stats: windows started, ran out, preempted). Each run starts a daemon
# with two TAP containers (namespaces bpab1, bpab2; 10.87.0.11 and .12),
# then pings 2000 times at 1 ms three times in a row (the backoff after
# preemptions builds up over a daemon's life, so later rounds count).
#
#   sudo A=/tmp/vxswitch-old B=target/release/vxswitch PAIRS=4 benches/system/busypoll_ab.sh
#
# One line per run: pair, binary, the three rounds' average RTT (ms), and
# worker 0's spin line at the end. Needs root, ping; uses fixed names
# (never run two at once).
set -u
A=${A:?A=first binary}
B=${B:?B=second binary}
PAIRS=${PAIRS:-4}
S=/tmp/bpab.sock
PID=/tmp/bpab.pid
cleanup() {
    if [ -f $PID ]; then kill "$(cat $PID)" 2>/dev/null; sleep 0.5; fi
    rm -f $PID
    for n in bpab1 bpab2; do ip netns del $n 2>/dev/null; done
}
trap cleanup EXIT
one() {
    local bin=$1
    for n in bpab1 bpab2; do ip netns add $n; ip -n $n link set lo up; done
    $bin --socket $S daemon --detach --pidfile $PID --log-file /tmp/bpab.log --busy-poll auto >/dev/null
    $bin --socket $S network create red --subnet 10.87.0.0/24 >/dev/null
    $bin --socket $S port add c1 --network red --netns /run/netns/bpab1 --ip 10.87.0.11/24 >/dev/null
    $bin --socket $S port add c2 --network red --netns /run/netns/bpab2 --ip 10.87.0.12/24 >/dev/null
    ip netns exec bpab1 ping -c 3 -i 0.2 10.87.0.12 >/dev/null
    local avgs=""
    for _ in 1 2 3; do
        avgs="$avgs $(ip netns exec bpab1 ping -q -c 2000 -i 0.001 10.87.0.12 | awk -F/ '/^rtt/{print $5}')"
    done
    echo "$avgs | $($bin --socket $S stats | grep '^worker 0' | grep -o 'spun.*')"
    cleanup
}
for i in $(seq 1 "$PAIRS"); do
    # The order within a pair alternates too.
    if [ $((i % 2)) = 1 ]; then order="A B"; else order="B A"; fi
    for v in $order; do
        if [ $v = A ]; then bin=$A; else bin=$B; fi
        echo "$i $v avg_ms:$(one "$bin")"
    done
done
