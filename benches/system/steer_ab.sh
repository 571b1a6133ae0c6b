#!/usr/bin/env bash
# A/B: a 64-byte UDP flood (trafgen, one process) between two veth ports of
# `vxswitch daemon --fastpath ebpf`, with two binaries, alternated round by
# round. Each run starts a daemon in namespace stab-sw with containers in
# stab-c1 and stab-c2 (10.86.0.1 and .2), lets the switch learn both MACs
# and a sync round put them in the maps, then floods 10.86.0.99 (nobody's
# address, c2's MAC) from c1 and counts what c2's eth0 receives over SECS.
# Made for the veth ports' steering interfaces (docs/fastpath.md): A the
# build before, B the build after. KIND=tap floods between TAP ports of a
# daemon in its default mode instead (no --fastpath, no --backend veth).
#
#   sudo A=/tmp/vxswitch-old B=target/release/vxswitch ROUNDS=5 benches/system/steer_ab.sh
#
# One line per run: round, binary, received frames/s, frames the fast path
# forwarded (from stats). With TCP=1, each run then also moves one iperf3
# TCP stream c1 -> c2 for SECS and adds its Gbit/s. Needs root, trafgen
# (netsniff-ng), ping (and iperf3 with TCP=1); uses fixed names (never run
# two at once).
set -u
A=${A:?A=first binary}
B=${B:?B=second binary}
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-4}
TCP=${TCP:-0}
KIND=${KIND:-ebpf}
case $KIND in
ebpf) DAEMON_ARGS="--fastpath ebpf" NET_ARGS="--backend veth" ;;
tap) DAEMON_ARGS="" NET_ARGS="" ;;
*) echo "KIND must be ebpf or tap" >&2; exit 2 ;;
esac
S=/tmp/stab.sock
PID=/tmp/stab.pid
CFG=/tmp/stab-trafgen.cfg
TG=
SRV=
cleanup() {
    if [ -n "$SRV" ]; then
        kill "$SRV" 2>/dev/null
        wait "$SRV" 2>/dev/null
        SRV=
    fi
    if [ -n "$TG" ]; then
        pkill -TERM -P "$TG" 2>/dev/null
        kill "$TG" 2>/dev/null
        wait "$TG" 2>/dev/null
        TG=
    fi
    if [ -f $PID ]; then kill "$(cat $PID)" 2>/dev/null; sleep 0.5; fi
    rm -f $PID $CFG
    for n in stab-sw stab-c1 stab-c2; do ip netns del $n 2>/dev/null; done
}
trap cleanup EXIT
rx() {
    ip -n stab-c2 -j -s link show eth0 |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["packets"])'
}
one() {
    local bin=$1
    for n in stab-sw stab-c1 stab-c2; do ip netns add $n; ip -n $n link set lo up; done
    ip netns exec stab-sw "$bin" --socket $S daemon --detach --pidfile $PID \
        --log-file /tmp/stab.log $DAEMON_ARGS >/dev/null 2>&1
    "$bin" --socket $S network create red --subnet 10.86.0.0/24 $NET_ARGS >/dev/null
    "$bin" --socket $S port add c1 --network red --netns /run/netns/stab-c1 --ip 10.86.0.1/24 >/dev/null
    "$bin" --socket $S port add c2 --network red --netns /run/netns/stab-c2 --ip 10.86.0.2/24 >/dev/null
    ip netns exec stab-c1 ping -c 2 -i 0.2 -W 1 10.86.0.2 >/dev/null
    [ "$KIND" = ebpf ] && sleep 1.5 # a sync round puts both MACs in the maps
    local mac
    mac=$(ip -n stab-c2 -j link show eth0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])')
    echo "{ eth(da=$mac, type=0x0800), ipv4(saddr=10.86.0.1, daddr=10.86.0.99, ttl=64, proto=17), udp(sp=9, dp=9), fill(0x00, 18) }" >$CFG
    ip netns exec stab-c1 trafgen --dev eth0 --conf $CFG --cpus 1 --no-sock-mem --notouch-irq >/dev/null 2>&1 &
    TG=$!
    sleep 0.3
    local a b t0 t1
    a=$(rx); t0=$(date +%s.%N)
    sleep "$SECS"
    b=$(rx); t1=$(date +%s.%N)
    local fast
    fast=$("$bin" --socket $S stats | grep -o 'fast path: .*forwarded' | grep -o '[0-9]* frames')
    [ "$KIND" = tap ] && fast="no fast path"
    python3 -c "print('%.0f' % (($b - $a) / ($t1 - $t0)), end='')"
    echo -n " | $fast"
    pkill -TERM -P "$TG" 2>/dev/null
    kill "$TG" 2>/dev/null
    wait "$TG" 2>/dev/null
    TG=
    if [ "$TCP" = 1 ]; then
        ip netns exec stab-c2 iperf3 -s -1 -B 10.86.0.2 >/dev/null 2>&1 &
        SRV=$!
        sleep 0.5
        local gbps
        gbps=$(ip netns exec stab-c1 iperf3 -c 10.86.0.2 -t "$SECS" -J 2>/dev/null |
            python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))' 2>/dev/null)
        echo -n " | TCP ${gbps:-failed} Gbit/s"
    fi
    echo
    cleanup
}
for r in $(seq "$ROUNDS"); do
    echo "$r A $(one "$A")"
    echo "$r B $(one "$B")"
done
