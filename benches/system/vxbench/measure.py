"""The measurements. Each function runs one test once on one contender and
returns a dict of figures (or raises BenchError with the reason).

Frame generators are pluggable: a generator has `tools`, `start(...)` and
`stop(handle) -> frames sent`. `trafgen` (netsniff-ng) is the only one today;
a Rust `vxswitch pktgen` can be added to GENERATORS without touching the
tests.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import time

from .contenders import Contender, wait_for
from .lab import BenchError, Lab, Proc, nsx, run

IPERF_PORT = 5201
SOCKPERF_PORT = 11111
CLK_TCK = os.sysconf("SC_CLK_TCK")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# ---------------------------------------------------------------------------
# Counters


def link_counters(ns: str, dev: str = "eth0") -> dict:
    """rx/tx packets and bytes of `dev` in `ns`, from `ip -s -j link`."""
    out = run(["ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev], timeout=10).stdout
    s = json.loads(out)[0]["stats64"]
    return {
        "rx_packets": s["rx"]["packets"],
        "rx_bytes": s["rx"]["bytes"],
        "tx_packets": s["tx"]["packets"],
        "tx_bytes": s["tx"]["bytes"],
        "tx_dropped": s["tx"]["dropped"],
    }


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (all their threads), in seconds, from /proc/PID/stat."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # After "pid (comm)": fields[0] is state (field 3), utime is field 14, stime field 15.
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def run_seconds(pids: list[int]) -> float:
    """Time on a CPU of every thread of the processes, in seconds, from
    /proc/PID/task/TID/schedstat (nanoseconds: fine enough for an idle switch,
    where utime+stime's 10 ms ticks are not)."""
    total = 0
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except FileNotFoundError:
                pass  # the thread ended between listdir and open
    return total / 1e9


def softirq_seconds() -> float:
    """Machine-wide softirq time (all CPUs) from /proc/stat, in seconds."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[7]) / CLK_TCK


def busy_seconds() -> float:
    """Machine-wide non-idle CPU time (all CPUs) from /proc/stat, in seconds:
    everything but idle and iowait (guest time is already inside user)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def wait_listening(c: Contender, proto: str, ip: str, port: int, proc: Proc) -> None:
    flag = "-t" if proto == "tcp" else "-u"

    def listening():
        out = run(nsx(c.ns2, ["ss", "-H", "-n", "-l", flag]), check=False, timeout=5).stdout
        return f"{ip}:{port} " in out

    wait_for(f"{proc.label} listening on {ip}:{port}/{proto}", listening, 10, proc)


# ---------------------------------------------------------------------------
# TCP throughput (iperf3) and the switch's CPU time per GB moved


def switch_cpu(c: Contender, pids: list[int], counter=cpu_seconds) -> float:
    """The switch's CPU seconds so far; a switch that has gone is a failed measurement
    (its /proc entry stays until it is reaped, so ask whether it runs first)."""
    c.check_alive()
    try:
        return counter(pids)
    except OSError as e:
        raise BenchError(f"cannot read the CPU time of {c.name}'s switch ({e}): has it exited?") from None


def tcp(lab: Lab, c: Contender, streams: int, seconds: float, omit: int) -> dict:
    srv = lab.spawn(f"iperf3-server-{c.name}", ["iperf3", "-s", "-1", "-B", c.ip2, "-p", IPERF_PORT], ns=c.ns2)
    try:
        wait_listening(c, "tcp", c.ip2, IPERF_PORT, srv)
        pids = c.switch_pids()
        if c.userspace and not pids:
            raise BenchError(f"{c.name} has no switch process to measure the CPU of")
        before = (switch_cpu(c, pids), softirq_seconds(), link_counters(c.ns1), link_counters(c.ns2), time.monotonic(),
                  busy_seconds())
        argv = ["iperf3", "-c", c.ip2, "-p", IPERF_PORT, "-t", f"{seconds:g}", "-O", omit, "-P", streams, "-J",
                "--connect-timeout", "3000"]
        p = run(nsx(c.ns1, argv), check=False, timeout=seconds + omit + 30)
        after = (switch_cpu(c, pids), softirq_seconds(), link_counters(c.ns1), link_counters(c.ns2), time.monotonic(),
                 busy_seconds())
    finally:
        lab.stop(srv)
    try:
        result = json.loads(p.stdout)
    except ValueError:
        raise BenchError(f"iperf3 exited {p.returncode} without JSON: {(p.stderr or p.stdout).strip()[-400:]}") from None
    if result.get("error"):
        raise BenchError(f"iperf3 exited {p.returncode}: {result['error']}")
    if p.returncode != 0:
        raise BenchError(f"iperf3 exited {p.returncode}: {(p.stderr or '').strip()[-400:]}")
    try:
        received = result["end"]["sum_received"]
        bits = float(received["bits_per_second"])
    except (KeyError, TypeError, ValueError):
        raise BenchError(f"iperf3's JSON has no end.sum_received.bits_per_second: {p.stdout.strip()[-400:]}") from None
    # Bytes that crossed the switch in either direction during the whole
    # client run (data one way, ACKs the other), from the containers' eth0.
    moved = (after[3]["rx_bytes"] - before[3]["rx_bytes"]) + (after[2]["rx_bytes"] - before[2]["rx_bytes"])
    gb = moved / 1e9
    if gb <= 0:
        raise BenchError(f"iperf3 reported {bits / 1e9:.2f} Gbit/s but no byte crossed the containers' eth0")
    cpu = after[0] - before[0]
    si = after[1] - before[1]
    return {
        "gbps": bits / 1e9,
        "retransmits": result["end"].get("sum_sent", {}).get("retransmits"),
        "moved_bytes": moved,
        "wall_s": after[4] - before[4],
        "switch_cpu_s": cpu if pids else None,
        "cpu_s_per_gb": (cpu / gb) if pids else None,
        "softirq_s": si,
        "softirq_s_per_gb": si / gb,
        "machine_busy_s": after[5] - before[5],
    }


# ---------------------------------------------------------------------------
# Round-trip latency (sockperf UDP ping-pong)


def latency(lab: Lab, c: Contender, seconds: float, mps, msg_size: int) -> dict:
    """sockperf ping-pong of `msg_size`-byte UDP messages: `mps` "max" sends the
    next message as soon as the reply is in (the path stays warm: the switch's
    own latency), a number paces them (each finds the path idle: wake-ups
    included, much noisier on a shared VM)."""
    srv = lab.spawn(f"sockperf-server-{c.name}", ["sockperf", "server", "-i", c.ip2, "-p", SOCKPERF_PORT], ns=c.ns2)
    try:
        wait_listening(c, "udp", c.ip2, SOCKPERF_PORT, srv)
        argv = ["sockperf", "ping-pong", "-i", c.ip2, "-p", SOCKPERF_PORT, "-t", f"{seconds:g}",
                "--mps", mps, "-m", msg_size, "--full-rtt"]
        p = run(nsx(c.ns1, argv), check=False, timeout=seconds + 30)
    finally:
        lab.stop(srv)
    out = ANSI.sub("", p.stdout + p.stderr)
    if p.returncode != 0:
        raise BenchError(f"sockperf exited {p.returncode}: {out.strip()[-400:]}")
    fig = {}
    for key, pct in (("p50_us", "50.000"), ("p99_us", "99.000")):
        m = re.search(rf"percentile {re.escape(pct)} =\s*([0-9.]+)", out)
        if not m:
            raise BenchError(f"sockperf exited {p.returncode}, no percentile {pct} in its output: {out.strip()[-400:]}")
        fig[key] = float(m.group(1))
    m = re.search(r"# dropped messages = (\d+)", out)
    fig["dropped"] = int(m.group(1)) if m else None
    m = re.search(r"\[Valid Duration\].*?ReceivedMessages=(\d+)", out)
    fig["observations"] = int(m.group(1)) if m else None
    return fig


# ---------------------------------------------------------------------------
# Round-trip latency (ping, paced at 1 ms)

PING_LINE = re.compile(r"^\d+ bytes from [^:]+: icmp_seq=(\d+) .*?time=([0-9.]+) ms(.*)$")


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `pct`% of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def parse_ping(out: str) -> dict[int, float]:
    """icmp_seq -> round trip in µs, from ping's per-packet lines (a duplicate reply is not a second sample)."""
    times: dict[int, float] = {}
    for line in out.splitlines():
        m = PING_LINE.match(line.strip())
        if m and "DUP!" not in m.group(3):
            times.setdefault(int(m.group(1)), float(m.group(2)) * 1000.0)
    return times


def ping(lab: Lab, c: Contender, count: int, interval: float) -> dict:
    """`ping -i INTERVAL -c COUNT` from c1 to c2: every echo finds the path idle
    (wake-ups included), as in the issue's measurements. Average and p99 of the
    per-packet times ping prints (duplicates not counted); lost echoes are a
    figure of their own."""
    argv = ["ping", "-n", "-i", f"{interval:g}", "-c", count, "-W", "1", c.ip2]
    p = run(nsx(c.ns1, argv), check=False, timeout=count * (interval + 0.01) + 30)
    if p.returncode != 0:
        raise BenchError(f"ping exited {p.returncode}: {(p.stderr or p.stdout).strip()[-400:]}")
    times = parse_ping(p.stdout)
    if not times:
        raise BenchError(f"ping printed no reply line: {p.stdout.strip()[-400:]}")
    rtts = list(times.values())
    return {
        "avg_us": sum(rtts) / len(rtts),
        "p99_us": percentile(rtts, 99),
        "sent": count,
        "received": len(rtts),
        "lost": count - len(rtts),
    }


# ---------------------------------------------------------------------------
# Idle CPU of the switches (every contender at once, no traffic anywhere)


def idle_cpu(contenders: list[Contender], seconds: float) -> dict[str, float | BenchError]:
    """% of one CPU each userspace switch used over `seconds` with no traffic
    on any topology: what a busy-polling switch costs while nothing flows."""
    before, out = {}, {}
    for c in contenders:
        try:
            before[c.name] = (switch_cpu(c, c.switch_pids(), run_seconds), time.monotonic())
        except BenchError as e:
            out[c.name] = e
    time.sleep(seconds)
    for c in contenders:
        if c.name in out:
            continue
        try:
            cpu = switch_cpu(c, c.switch_pids(), run_seconds)
        except BenchError as e:
            out[c.name] = e
            continue
        cpu0, t0 = before[c.name]
        out[c.name] = (cpu - cpu0) / (time.monotonic() - t0) * 100.0
    return out


# ---------------------------------------------------------------------------
# Frames/s (generator tx in c1, rx counter of eth0 in c2)


class Trafgen:
    """netsniff-ng's trafgen: one process (`--cpus 1`), mmap TX ring, qdisc bypassed (its default)."""

    name = "trafgen"
    tools = ["trafgen"]

    def start(self, lab: Lab, ns: str, dev: str, src_ip: str, dst_ip: str, dst_mac: str, frame: int) -> Proc:
        # `frame` counts the 4-byte FCS (RFC 2544 sizes): trafgen writes frame-4 bytes.
        payload = frame - 4 - 14 - 20 - 8
        if payload < 0:
            raise BenchError(f"frame size {frame} is below 46 bytes")
        conf = lab.path(f"trafgen-{ns}-{frame}.cfg")
        with open(conf, "w") as f:
            f.write(
                "{ eth(da=%s, type=0x0800), ipv4(saddr=%s, daddr=%s, ttl=64, proto=17), "
                "udp(sp=9, dp=9), fill(0x00, %d) }\n" % (dst_mac, src_ip, dst_ip, payload)
            )
        # --no-sock-mem: do not tune global socket memory; --notouch-irq: leave IRQ affinity
        # (both are host-wide settings the harness must not change).
        return lab.spawn(f"trafgen-{ns}-{frame}", ["trafgen", "--dev", dev, "--conf", conf, "--cpus", "1", "--no-sock-mem", "--notouch-irq"], ns=ns)

    def stop(self, lab: Lab, proc: Proc) -> int:
        lab.stop(proc, sig=signal.SIGINT, timeout=5)
        out = proc.output()
        m = re.search(r"(\d+) packets outgoing", out)
        if not m:
            raise BenchError(f"trafgen printed no 'packets outgoing' ({proc.status()}): {out.strip()[-400:]}")
        return int(m.group(1))


class VxswitchPktgen:
    """`vxswitch pktgen tx` (the project's own generator, sendmmsg batches with
    PACKET_QDISC_BYPASS), from the binary under test, as fast as it can."""

    name = "vxswitch-pktgen"
    tools: list[str] = []
    needs_vxswitch = True

    def __init__(self, binary: str):
        self.binary = binary

    def start(self, lab: Lab, ns: str, dev: str, src_ip: str, dst_ip: str, dst_mac: str, frame: int) -> Proc:
        # pktgen's --size is without FCS; the harness's sizes count it.
        argv = [self.binary, "--json", "pktgen", "tx", "--dev", dev, "--netns", f"/run/netns/{ns}",
                "--dst-mac", dst_mac, "--src-ip", src_ip, "--dst-ip", dst_ip, "--size", frame - 4,
                "--duration", "600"]  # stopped with SIGINT long before
        return lab.spawn(f"pktgen-{ns}-{frame}", argv)

    def stop(self, lab: Lab, proc: Proc) -> int:
        lab.stop(proc, sig=signal.SIGINT, timeout=5)
        out = proc.output()
        start = out.find("{")
        try:
            report, _ = json.JSONDecoder().raw_decode(out[start:]) if start >= 0 else (None, 0)
        except ValueError:
            report = None
        if not isinstance(report, dict) or "frames" not in report:
            raise BenchError(f"vxswitch pktgen tx printed no JSON report ({proc.status()}): {out.strip()[-400:]}")
        # Its END markers reach c2 too: count them as sent.
        return int(report["frames"]) + int(report.get("end_markers", 0))


GENERATORS = {"trafgen": Trafgen, "vxswitch-pktgen": VxswitchPktgen}


def make_generator(name: str, opts):
    cls = GENERATORS[name]
    return cls(opts.vxswitch) if getattr(cls, "needs_vxswitch", False) else cls()


def frames(lab: Lab, c: Contender, gen, frame: int, seconds: float) -> dict:
    """Offers `frame`-byte frames as fast as the generator can, for `seconds`.

    The frames are UDP to an address nobody owns (10.250.i.99) but carry c2's
    MAC: the switch must forward them to c2, whose kernel drops them in IP
    routing (forwarding is off) without answering. Forwarded frames/s is the
    rate at which c2's eth0 receives them, over a window that starts once the
    generator runs; loss is 1 - received / sent over the whole run (including
    a short drain after it stops), `sent` being the generator's own count.
    """
    if frame - 4 - 14 > c.mtu:
        raise BenchError(f"frame size {frame} exceeds MTU {c.mtu}")
    # Refresh the switch's FDB entry for c2's MAC (c2 sends nothing during the test).
    run(nsx(c.ns2, ["ping", "-c", "1", "-W", "1", c.ip1]), check=False, timeout=5)
    start = link_counters(c.ns2)["rx_packets"]
    sender0 = link_counters(c.ns1)
    proc = gen.start(lab, c.ns1, "eth0", c.ip1, f"{c.subnet}.99", c.mac2, frame)
    try:
        time.sleep(0.3)  # ring set-up and ramp
        if not proc.alive():
            raise BenchError(f"{gen.name} exited at start ({proc.status()}): {proc.log_tail()}")
        w0, t0 = link_counters(c.ns2)["rx_packets"], time.monotonic()
        # The generator must run through the whole window: one that stops
        # early would make a low figure look like the switch's.
        end = t0 + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(0.1, left))
            if not proc.alive():
                raise BenchError(f"{gen.name} exited during the measuring window ({proc.status()}): {proc.log_tail()}")
        w1, t1 = link_counters(c.ns2)["rx_packets"], time.monotonic()
        if not proc.alive():
            raise BenchError(f"{gen.name} exited during the measuring window ({proc.status()}): {proc.log_tail()}")
    except BaseException:
        lab.stop(proc, sig=signal.SIGINT, timeout=5)
        raise
    sent = gen.stop(lab, proc)
    time.sleep(0.3)  # let frames queued in the switch drain
    received = link_counters(c.ns2)["rx_packets"] - start
    sender1 = link_counters(c.ns1)
    if sent <= 0:
        raise BenchError(f"{gen.name} sent no frames")
    transmitted = sender1["tx_packets"] - sender0["tx_packets"]
    if transmitted <= 0:
        raise BenchError(f"{gen.name} counted {sent} frames sent but c1's eth0 transmitted none")
    # A TAP stops its queue when the switch falls behind (Linux 6.x flow
    # control): the kernel refuses the generator's frame at c1's eth0 and
    # counts it in tx_dropped, and trafgen sends that frame again. So these
    # are refused attempts, not lost frames (checked: trafgen -n 300000 on a
    # vxswitch TAP gave 300000 received and ~800000 refusals).
    # Loss compares two kernel counters over the same span, c1's eth0
    # transmitted and c2's eth0 received, so that a stray frame (c1's ARP
    # probe for c2 after the FDB refresh above) counts on both sides; the
    # generator's own count would miss it and make the loss negative. It is
    # not clamped: below 0, c2 received frames c1 did not send.
    return {
        "fps": (w1 - w0) / (t1 - t0),
        "sent": sent,
        "received": received,
        "loss": 1.0 - received / transmitted,
        "refused_attempts": sender1["tx_dropped"] - sender0["tx_dropped"],
        "sender_tx_packets": sender1["tx_packets"] - sender0["tx_packets"],
    }
