#!/usr/bin/env bash
# A/B: the eBPF fast path (docs/fastpath.md) against the kernel bridge and
# vxswitch without it, on veth ports.
#
# Two "containers" (namespaces fbc1, fbc2, 10.85.0.11 and .12) joined, in
# turn within each round (interleaved):
#   bridge  a Linux bridge in namespace fbh, the veths' host ends enslaved
#   ebpf    vxswitch daemon --fastpath ebpf in fbh, two --backend veth ports
#   off     the same with --fastpath off (the userspace packet-socket path)
# Tests: iperf3 TCP 1 stream and 4 streams (4 s each), ping -i 0.001 2000
# times (avg RTT), 64-byte frames received per second from `vxswitch pktgen
# tx` at its top rate for 3 s (4 flows, Mpps); for the daemons, the CPU time (user+system) the daemon
# used during the 4-stream run. One line per contender and round in $OUT.
#
#   sudo BIN=target/release/vxswitch ROUNDS=3 benches/system/fastpath_ab.sh
#
# Needs root, iperf3, ping, python3; uses the fixed names above (never run
# two at once).
set -u
BIN=${BIN:-target/release/vxswitch}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-/tmp/fpbench.out}
: > $OUT
setup_ns() { for n in fbh fbc1 fbc2; do ip netns add $n; ip -n $n link set lo up; done; }
teardown() {
  [ -f /tmp/fbd.pid ] && kill $(cat /tmp/fbd.pid) 2>/dev/null && sleep 0.5
  rm -f /tmp/fbd.pid
  for n in fbh fbc1 fbc2; do ip netns del $n 2>/dev/null; done
}
bridge() {
  ip -n fbh link add br0 type bridge; ip -n fbh link set br0 up
  for i in 1 2; do
    ip -n fbh link add h$i type veth peer name eth0 netns fbc$i
    ip -n fbh link set h$i master br0; ip -n fbh link set h$i up
    ip -n fbc$i addr add 10.85.0.1$i/24 dev eth0; ip -n fbc$i link set eth0 up
  done
}
vx() {
  ip netns exec fbh $BIN --socket /tmp/fbd.sock daemon --detach --pidfile /tmp/fbd.pid --log-file /tmp/fbd.log --fastpath $1 >/dev/null
  $BIN --socket /tmp/fbd.sock network create red --subnet 10.85.0.0/24 >/dev/null
  for i in 1 2; do $BIN --socket /tmp/fbd.sock port add v$i --network red --netns /run/netns/fbc$i --ip 10.85.0.1$i --backend veth >/dev/null; done
}
cpu() { if [ -f /tmp/fbd.pid ]; then awk '{print $14+$15}' /proc/$(cat /tmp/fbd.pid)/stat; else echo 0; fi; }
measure() {
  local name=$1 r=$2
  ip netns exec fbc1 ping -c 3 -i 0.2 -q 10.85.0.12 >/dev/null; sleep 2
  ip netns exec fbc2 iperf3 -s -D -1 -B 10.85.0.12 >/dev/null; sleep 0.5
  t1=$(ip netns exec fbc1 iperf3 -c 10.85.0.12 -t 4 -J | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9,2))')
  ip netns exec fbc2 iperf3 -s -D -1 -B 10.85.0.12 >/dev/null; sleep 0.5
  c0=$(cpu)
  t4=$(ip netns exec fbc1 iperf3 -c 10.85.0.12 -t 4 -P 4 -J | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9,2))')
  c1=$(cpu)
  rtt=$(ip netns exec fbc1 ping -c 2000 -i 0.001 -q 10.85.0.12 | awk -F/ '/rtt/ {print $5*1000}')
  # 64-byte frames at the sender's top rate for 3 s, 4 flows: what arrives.
  local mac; mac=$(ip -n fbc2 -br link show eth0 | awk '{print $3}')
  $BIN --json pktgen rx --dev eth0 --netns fbc2 >/tmp/fbrx.json 2>/tmp/fbrx.log & local rx=$!
  until grep -qs listening /tmp/fbrx.log || ! kill -0 $rx 2>/dev/null; do sleep 0.1; done
  $BIN pktgen tx --dev eth0 --netns fbc1 --dst-mac "$mac" --duration 3 --flows 4 >/dev/null 2>&1
  wait $rx
  pps=$(python3 -c 'import json,sys; print(round(json.load(sys.stdin)["pps"]/1e6,3))' </tmp/fbrx.json)
  echo "$r $name tcp1=$t1 tcp4=$t4 rtt_us=$rtt mpps64=$pps switch_cpu_s_per_4s_tcp4=$(python3 -c "print(($c1-$c0)/100)")" | tee -a $OUT
  if [ "$name" = ebpf ]; then $BIN --socket /tmp/fbd.sock stats | grep "fast path" | tee -a $OUT; fi
}
for r in $(seq 1 $ROUNDS); do
  for v in bridge ebpf off; do
    teardown; setup_ns
    if [ $v = bridge ]; then bridge; else vx $v; fi
    measure $v $r
  done
done
teardown
