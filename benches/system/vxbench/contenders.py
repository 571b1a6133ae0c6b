"""The contenders: each builds the same topology, two "containers" (network
namespaces) c1 and c2 whose `eth0` are joined by the switch under test.

After `setup()`, a contender exposes what the measurements need:
`ns1`/`ns2` (sender/receiver namespaces), `ip1`/`ip2`, `mac2`, `mtu`, and
`switch_pids()`, the processes whose CPU time is the switch's (empty for the
kernel contenders).

Addresses: contender number i uses 10.250.i.0/24 inside the containers and,
for the overlays, 198.18.i.0/24 on the underlay between the two host
namespaces. Every address lives only in namespaces of the lab.
"""

from __future__ import annotations

import json
import os
import time

from .lab import BenchError, Lab, Proc, nsx, run, tail

OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
VNI = 42
# Overlay underlay MTU: 1500 + 50 bytes of VXLAN over IPv4, so that both
# overlays carry the same 1500-byte container MTU as the L2 contenders (and
# the 1500-byte frames of the sweep fit).
UNDERLAY_MTU = 1550

# Debian package of each external command the contenders and tests use.
PACKAGES = {
    "ip": "iproute2",
    "ss": "iproute2",
    "sysctl": "procps",
    "ping": "iputils-ping",
    "iperf3": "iperf3",
    "sockperf": "sockperf",
    "trafgen": "netsniff-ng",
    "ovsdb-tool": "openvswitch-common",
    "ovsdb-server": "openvswitch-common",
    "ovs-vsctl": "openvswitch-switch",
    "ovs-vswitchd": "openvswitch-switch",
    "vde_switch": "vde2",
    "ethtool": "ethtool",
}


def addr_up(ns: str, dev: str, cidr: str | None = None, mtu: int | None = None) -> None:
    if mtu:
        run(["ip", "-n", ns, "link", "set", dev, "mtu", mtu])
    if cidr:
        run(["ip", "-n", ns, "addr", "add", cidr, "dev", dev])
    run(["ip", "-n", ns, "link", "set", dev, "up"])


def veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    run(["ip", "-n", ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", ns_b])


def move_tap(sw: str, tap: str, ns: str) -> None:
    """Moves a TAP the switch opened in `sw` into container `ns` as `eth0` (its fd keeps working)."""
    run(["ip", "-n", sw, "link", "set", tap, "netns", ns])
    run(["ip", "-n", ns, "link", "set", tap, "name", "eth0"])


def link_info(ns: str, dev: str = "eth0", details: bool = False) -> dict:
    import json

    out = run(["ip", "-n", ns, *(["-d"] if details else []), "-j", "link", "show", "dev", dev]).stdout
    return json.loads(out)[0]


def wait_for(what: str, cond, timeout: float, proc: Proc | None = None, step: float = 0.05) -> None:
    """Polls `cond()` until true, at most `timeout` seconds; fails early if `proc` died."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return
        if proc is not None and not proc.alive():
            raise BenchError(
                f"{proc.label} exited ({proc.status()}) while waiting for {what}:\n{proc.log_tail()}"
            )
        if time.monotonic() >= deadline:
            extra = f"\n{proc.label} log:\n{proc.log_tail()}" if proc else ""
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}{extra}")
        time.sleep(step)


class Contender:
    name = ""
    title = ""
    kind = "l2"  # or "overlay"
    tools: list[str] = []
    needs_vxswitch = False
    userspace = True  # has a switch process whose CPU we measure
    topology = ""  # one line for the docs and the report

    def __init__(self, lab: Lab, index: int, opts):
        self.lab = lab
        self.index = index
        self.opts = opts
        self.subnet = f"10.250.{index}"
        self.ip1 = f"{self.subnet}.11"
        self.ip2 = f"{self.subnet}.12"
        self.ns1 = self.ns2 = ""
        self.mac2 = ""
        self.mtu = 1500
        self.procs: list[Proc] = []

    def short(self, what: str) -> str:
        return f"{self.name}-{what}"

    def setup(self) -> None:
        raise NotImplementedError

    def switch_pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def alive(self) -> bool:
        return all(p.alive() for p in self.procs)

    def check_alive(self) -> None:
        for p in self.procs:
            if not p.alive():
                raise BenchError(
                    f"{p.label} (pid {p.pid}) exited ({p.status()}):\n{p.log_tail()}"
                )

    def finish_setup(self) -> None:
        """Checks both directions work and records c2's MAC (the frame generator's target)."""
        for src, dst in ((self.ns1, self.ip2), (self.ns2, self.ip1)):
            ok = False
            for _ in range(10):  # bounded: 10 pings of at most 1 s each
                if run(nsx(src, ["ping", "-c", "1", "-W", "1", dst]), check=False, timeout=5).returncode == 0:
                    ok = True
                    break
                self.check_alive()
            if not ok:
                raise BenchError(f"no connectivity: {src} cannot ping {dst} after 10 tries")
        info = link_info(self.ns2)
        self.mac2 = info["address"]
        self.mtu = int(info["mtu"])


# ---------------------------------------------------------------------------
# L2: two containers on one switch


class Vxswitch(Contender):
    name = "vxswitch"
    title = "vxswitch (TAP ports)"
    tools = ["ip", "ping"]
    needs_vxswitch = True
    topology = (
        "`vxswitch daemon` in namespace sw; `port add --netns` creates a TAP `eth0` in c1 and in c2"
    )

    @property
    def exe(self) -> str:
        """The vxswitch binary this contender runs."""
        return self.opts.vxswitch

    def cli(self, sock: str, *args) -> str:
        return run([self.exe, "--socket", sock, *args], timeout=20).stdout

    def start_daemon(self, ns: str, sock: str, extra=()) -> Proc:
        proc = self.lab.spawn(
            f"{self.name}-daemon-{ns}", [self.exe, "--socket", sock, "daemon", *extra], ns=ns
        )
        self.procs.append(proc)

        def answers():
            return run([self.exe, "--socket", sock, "ping"], check=False, timeout=5).returncode == 0

        wait_for(f"vxswitch daemon on {sock}", answers, 10, proc, step=0.1)
        return proc

    daemon_args: list[str] = []
    vnet_hdr = True  # what the containers' TAPs must show: the comparison depends on it

    def finish_setup(self) -> None:
        super().finish_setup()
        for ns in (self.ns1, self.ns2):
            info = link_info(ns, details=True).get("linkinfo", {}).get("info_data", {})
            if bool(info.get("vnet_hdr")) != self.vnet_hdr:
                raise BenchError(
                    f"eth0 in {ns} has vnet_hdr {'on' if info.get('vnet_hdr') else 'off'}, expected "
                    f"{'on' if self.vnet_hdr else 'off'} for {self.name} (ip -d link: {info})"
                )

    def setup(self) -> None:
        lab = self.lab
        sw = lab.netns(self.short("sw"))
        self.ns1, self.ns2 = lab.netns(self.short("c1")), lab.netns(self.short("c2"))
        sock = lab.path(f"{self.name}.sock")
        self.start_daemon(sw, sock, self.daemon_args)
        self.cli(sock, "network", "create", "bench", "--subnet", f"{self.subnet}.0/24")
        for port, ns, ip in (("c1", self.ns1, self.ip1), ("c2", self.ns2, self.ip2)):
            self.cli(sock, "port", "add", port, "--network", "bench", "--netns", f"/run/netns/{ns}", "--ip", f"{ip}/24")
        self.finish_setup()


class VxswitchNoOffload(Vxswitch):
    name = "vxswitch-nooffload"
    title = "vxswitch, TAP ports without offloads (--no-offload)"
    daemon_args = ["--no-offload"]
    topology = (
        "as `vxswitch`, with `daemon --no-offload`: TAPs without a virtio_net_hdr, so every TCP "
        "segment crosses the switch as its own <= 1514-byte frame (vxswitch before the offload work)"
    )

    vnet_hdr = False


class VxswitchBusyPoll(Vxswitch):
    name = "vxswitch-busypoll"
    title = "vxswitch with --busy-poll 50 (spin 50 us before sleeping)"
    daemon_args = ["--busy-poll", "50"]
    topology = (
        "as `vxswitch`, with `daemon --busy-poll 50`: after the last frame a worker keeps polling "
        "for 50 µs before it sleeps, trading CPU (see its CPU column) for wake-ups"
    )


class VxswitchBusyPollAuto(Vxswitch):
    name = "vxswitch-busypoll-auto"
    title = "vxswitch with --busy-poll auto (adaptive spinning, issue 13)"
    daemon_args = ["--busy-poll", "auto"]
    topology = (
        "as `vxswitch`, with `daemon --busy-poll auto`: each worker spins while the next frame is "
        "likely to come sooner than a wake-up would take, within a CPU budget (see its idle CPU)"
    )


class VxswitchVeth(Vxswitch):
    name = "vxswitch-veth"
    title = "vxswitch, veth ports (--backend veth)"
    topology = (
        "as `vxswitch`, with `port add --backend veth`: each container's `eth0` is a veth whose "
        "host end `vxv-PORT` in namespace sw the switch drives through packet sockets "
        "(one per worker, a fanout group), as docker0's containers have veths"
    )

    def finish_setup(self) -> None:
        Contender.finish_setup(self)
        for ns in (self.ns1, self.ns2):
            kind = link_info(ns, details=True).get("linkinfo", {}).get("info_kind")
            if kind != "veth":
                raise BenchError(f"eth0 in {ns} is a {kind}, expected a veth for {self.name}")

    def setup(self) -> None:
        lab = self.lab
        sw = lab.netns(self.short("sw"))
        self.ns1, self.ns2 = lab.netns(self.short("c1")), lab.netns(self.short("c2"))
        sock = lab.path(f"{self.name}.sock")
        self.start_daemon(sw, sock, self.daemon_args)
        self.cli(sock, "network", "create", "bench", "--subnet", f"{self.subnet}.0/24", "--backend", "veth")
        for port, ns, ip in (("c1", self.ns1, self.ip1), ("c2", self.ns2, self.ip2)):
            self.cli(sock, "port", "add", port, "--network", "bench", "--netns", f"/run/netns/{ns}", "--ip", f"{ip}/24")
        self.finish_setup()


class VxswitchEbpf(VxswitchVeth):
    name = "vxswitch-ebpf"
    title = "vxswitch, veth ports with the eBPF fast path (--fastpath ebpf)"
    daemon_args = ["--fastpath", "ebpf"]
    topology = (
        "as `vxswitch-veth`, with `daemon --fastpath ebpf`: known unicast between the two veth "
        "ports goes from one container to the other in the kernel (a tc program on each host end, "
        "bpf_redirect_peer, maps the switch keeps in step with its FDB); docs/fastpath.md"
    )

    def finish_setup(self) -> None:
        super().finish_setup()
        sock = self.lab.path(f"{self.name}.sock")
        fp = json.loads(self.cli(sock, "--json", "stats")).get("fastpath") or {}
        if not fp.get("active"):
            raise BenchError(f"{self.name}: the fast path is not active: {fp.get('reason')}")
        # The switch learns both MACs from a first exchange; a sync round
        # (once a second) then puts them in the maps.
        run(["ip", "netns", "exec", self.ns1, "ping", "-c", "2", "-i", "0.2", "-W", "1", self.ip2],
            check=False, timeout=10)
        time.sleep(1.5)


class KernelBridge(Contender):
    name = "bridge"
    title = "Linux bridge + veth (docker0)"
    tools = ["ip", "ping"]
    userspace = False
    topology = "bridge `br0` in namespace sw; a veth pair from each container's `eth0` to a bridge port"

    def setup(self) -> None:
        lab = self.lab
        sw = lab.netns(self.short("sw"))
        self.ns1, self.ns2 = lab.netns(self.short("c1")), lab.netns(self.short("c2"))
        run(["ip", "-n", sw, "link", "add", "br0", "type", "bridge"])
        addr_up(sw, "br0")
        for ns, peer, ip in ((self.ns1, "p1", self.ip1), (self.ns2, "p2", self.ip2)):
            veth(ns, "eth0", sw, peer)
            run(["ip", "-n", sw, "link", "set", peer, "master", "br0"])
            addr_up(sw, peer)
            addr_up(ns, "eth0", f"{ip}/24")
        self.finish_setup()


class Ovs(Contender):
    name = "ovs"
    title = "Open vSwitch userspace (netdev, tap)"
    tools = ["ip", "ping", "ovsdb-tool", "ovsdb-server", "ovs-vsctl", "ovs-vswitchd"]
    topology = (
        "own `ovsdb-server` + `ovs-vswitchd` in namespace sw (files under a temp dir); bridge "
        "`datapath_type=netdev` with two `type=tap` ports, each TAP moved into a container as `eth0`"
    )

    other_config: dict[str, str] = {}

    def setup(self) -> None:
        lab = self.lab
        sw = lab.netns(self.short("sw"))
        self.ns1, self.ns2 = lab.netns(self.short("c1")), lab.netns(self.short("c2"))
        vsctl, env, vswitchd = self.start_ovs(sw)
        run([*vsctl, "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev",
             "--", "add-port", "br0", "vxbt1", "--", "set", "interface", "vxbt1", "type=tap",
             "--", "add-port", "br0", "vxbt2", "--", "set", "interface", "vxbt2", "type=tap"], env=env, timeout=40)
        for tap, ns, ip in (("vxbt1", self.ns1, self.ip1), ("vxbt2", self.ns2, self.ip2)):
            wait_for(f"OVS tap {tap}", lambda t=tap: run(["ip", "-n", sw, "link", "show", t], check=False).returncode == 0, 10, vswitchd)
            move_tap(sw, tap, ns)
            addr_up(ns, "eth0", f"{ip}/24")
        # Only the ovs-vswitchd process forwards; ovsdb-server is idle during the tests.
        self.forwarder = vswitchd
        self.finish_setup()

    def start_ovs(self, sw: str) -> tuple[list[str], dict, Proc]:
        """Its own ovsdb-server and ovs-vswitchd in namespace `sw`; returns the ovs-vsctl
        command, its environment and the ovs-vswitchd process."""
        lab = self.lab
        if not os.path.exists(OVS_SCHEMA):
            raise BenchError(f"{OVS_SCHEMA} is missing (Debian package openvswitch-common)")
        d = lab.path(self.name)
        os.makedirs(d, exist_ok=True)
        # Every OVS path under the temp dir: never /var/run/openvswitch or the system DB.
        env = dict(os.environ, OVS_RUNDIR=d, OVS_LOGDIR=d, OVS_DBDIR=d, OVS_SYSCONFDIR=d, OVS_PKGDATADIR=os.path.dirname(OVS_SCHEMA))
        db, dbsock = f"{d}/conf.db", f"{d}/db.sock"
        run(["ovsdb-tool", "create", db, OVS_SCHEMA], env=env)
        srv = lab.spawn(
            f"{self.name}-ovsdb-server",
            ["ovsdb-server", db, f"--remote=punix:{dbsock}", f"--pidfile={d}/ovsdb-server.pid",
             f"--unixctl={d}/ovsdb-server.ctl", f"--log-file={d}/ovsdb-server.log", "--no-chdir"],
            ns=sw, env=env,
        )
        self.procs.append(srv)
        wait_for("ovsdb-server socket", lambda: os.path.exists(dbsock), 10, srv)
        vsctl = ["ovs-vsctl", f"--db=unix:{dbsock}", "--timeout=20"]
        run([*vsctl, "--no-wait", "init"], env=env)
        if self.other_config:
            # Read by ovs-vswitchd at start only: set before it starts.
            run([*vsctl, "--no-wait", "set", "Open_vSwitch", ".",
                 *(f"other_config:{k}={v}" for k, v in self.other_config.items())], env=env)
        vswitchd = lab.spawn(
            f"{self.name}-ovs-vswitchd",
            ["ovs-vswitchd", f"unix:{dbsock}", f"--pidfile={d}/ovs-vswitchd.pid",
             f"--unixctl={d}/ovs-vswitchd.ctl", f"--log-file={d}/ovs-vswitchd.log", "--no-chdir"],
            ns=sw, env=env,
        )
        self.procs.append(vswitchd)
        wait_for("ovs-vswitchd control socket", lambda: os.path.exists(f"{d}/ovs-vswitchd.ctl"), 15, vswitchd)
        return vsctl, env, vswitchd

    def switch_pids(self) -> list[int]:
        return [self.forwarder.pid]


class OvsTso(Ovs):
    name = "ovs-tso"
    title = "Open vSwitch userspace with TSO (userspace-tso-enable)"
    other_config = {"userspace-tso-enable": "true"}
    topology = (
        "as `ovs`, with `other_config:userspace-tso-enable=true` set before `ovs-vswitchd` starts: "
        "its tap ports carry a virtio_net_hdr and TSO super-frames"
    )

    def setup(self) -> None:
        super().setup()
        path = os.path.join(self.lab.path(self.name), "ovs-vswitchd.log")
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if "userspace tcp segmentation offloading support enabled" not in text.lower():
            raise BenchError(f"ovs-vswitchd did not log that userspace TSO is enabled:\n{tail(path)}")
        for ns in (self.ns1, self.ns2):
            info = link_info(ns, details=True).get("linkinfo", {}).get("info_data", {})
            if not info.get("vnet_hdr"):
                raise BenchError(f"eth0 in {ns} has no virtio_net_hdr although OVS runs with userspace TSO: {info}")


class Vde(Contender):
    name = "vde"
    title = "VDE (vde_switch, tap)"
    tools = ["ip", "ping", "vde_switch"]
    topology = "`vde_switch -t vxbv1 -t vxbv2` in namespace sw; each TAP moved into a container as `eth0`"

    def setup(self) -> None:
        lab = self.lab
        sw = lab.netns(self.short("sw"))
        self.ns1, self.ns2 = lab.netns(self.short("c1")), lab.netns(self.short("c2"))
        # Foreground, console on a pipe we keep open (vde_switch quits on EOF of stdin).
        import subprocess

        proc = lab.spawn(
            "vde_switch",
            ["vde_switch", "-s", lab.path("vde.ctl"), "-M", lab.path("vde.mgmt"), "-t", "vxbv1", "-t", "vxbv2"],
            ns=sw, stdin=subprocess.PIPE,
        )
        self.procs.append(proc)
        for tap, ns, ip in (("vxbv1", self.ns1, self.ip1), ("vxbv2", self.ns2, self.ip2)):
            wait_for(f"VDE tap {tap}", lambda t=tap: run(["ip", "-n", sw, "link", "show", t], check=False).returncode == 0, 10, proc)
            move_tap(sw, tap, ns)
            addr_up(ns, "eth0", f"{ip}/24")
        self.finish_setup()


class Veth(Contender):
    name = "veth"
    title = "veth pair (no switch; upper bound)"
    tools = ["ip", "ping"]
    userspace = False
    topology = "one veth pair, c1 `eth0` <-> c2 `eth0`"

    def setup(self) -> None:
        lab = self.lab
        self.ns1, self.ns2 = lab.netns(self.short("c1")), lab.netns(self.short("c2"))
        veth(self.ns1, "eth0", self.ns2, "eth0")
        addr_up(self.ns1, "eth0", f"{self.ip1}/24")
        addr_up(self.ns2, "eth0", f"{self.ip2}/24")
        self.finish_setup()


# ---------------------------------------------------------------------------
# Overlay: two hosts (namespaces hA, hB) on a veth underlay, one container each


def underlay(contender: Contender) -> tuple[str, str, str, str]:
    lab = contender.lab
    ha, hb = lab.netns(contender.short("hA")), lab.netns(contender.short("hB"))
    a_ip, b_ip = f"198.18.{contender.index}.1", f"198.18.{contender.index}.2"
    veth(ha, "ul0", hb, "ul0")
    addr_up(ha, "ul0", f"{a_ip}/24", UNDERLAY_MTU)
    addr_up(hb, "ul0", f"{b_ip}/24", UNDERLAY_MTU)
    ok = any(
        run(nsx(ha, ["ping", "-c", "1", "-W", "1", b_ip]), check=False, timeout=5).returncode == 0
        for _ in range(5)
    )
    if not ok:
        raise BenchError(f"underlay {a_ip} -> {b_ip} does not work")
    return ha, hb, a_ip, b_ip


def tapfwd_path(vxswitch: str) -> str:
    """examples/tapfwd next to the vxswitch binary (target/PROFILE/examples/tapfwd)."""
    return os.path.join(os.path.dirname(os.path.abspath(vxswitch)), "examples", "tapfwd")


class TapFloor(Contender):
    """What read() and write() on TAPs alone cost: the floor under any switch built on TAP ports."""

    name = "tap-floor"
    title = "bare TAP forwarder (examples/tapfwd: read/write only, offloads on)"
    tools = ["ip", "ping"]
    needs_vxswitch = True
    topology = (
        "`examples/tapfwd --mode rw --vnet`: one thread copying every frame between the TAPs `eth0` "
        "of c1 and c2 (virtio_net_hdr and offloads as vxswitch's), with no learning, lookup or counters"
    )

    def setup(self) -> None:
        lab = self.lab
        self.ns1, self.ns2 = lab.netns(self.short("c1")), lab.netns(self.short("c2"))
        exe = tapfwd_path(self.opts.vxswitch)
        if not os.path.exists(exe):
            profile = "--release " if "/release/" in exe else ""
            raise BenchError(f"{exe} not found: build it with `cargo build {profile}--example tapfwd`")
        proc = lab.spawn(f"{self.name}-tapfwd", [exe, "--mode", "rw", "--vnet", "--netns-a", self.ns1,
                                                  "--netns-b", self.ns2, "--ip-a", f"{self.ip1}/24",
                                                  "--ip-b", f"{self.ip2}/24"])
        self.procs.append(proc)

        def up():
            return all(run(["ip", "-n", ns, "link", "show", "eth0"], check=False, timeout=5).returncode == 0
                       for ns in (self.ns1, self.ns2))

        wait_for("tapfwd's TAPs", up, 10, proc, step=0.1)
        self.finish_setup()


class VxswitchVxlan(Vxswitch):
    name = "vxswitch-vxlan"
    title = "vxswitch VXLAN overlay (2 hosts)"
    kind = "overlay"
    topology = (
        f"hosts hA, hB joined by a veth underlay (MTU {UNDERLAY_MTU}); a `vxswitch daemon --underlay-mtu "
        f"{UNDERLAY_MTU}` in each, network `--vni {VNI}` with the other host as VTEP; a TAP port in c1 (on hA) and c2 (on hB)"
    )

    def setup(self) -> None:
        lab = self.lab
        ha, hb, a_ip, b_ip = underlay(self)
        self.ns1, self.ns2 = lab.netns(self.short("c1")), lab.netns(self.short("c2"))
        for host, peer, port, ns, ip in ((ha, b_ip, "c1", self.ns1, self.ip1), (hb, a_ip, "c2", self.ns2, self.ip2)):
            sock = lab.path(f"{self.name}-{port}.sock")
            self.start_daemon(host, sock, ["--underlay-mtu", str(UNDERLAY_MTU)])
            self.cli(sock, "network", "create", "bench", "--vni", str(VNI), "--subnet", f"{self.subnet}.0/24")
            self.cli(sock, "vtep", "add", "bench", peer)
            self.cli(sock, "port", "add", port, "--network", "bench", "--netns", f"/run/netns/{ns}", "--ip", f"{ip}/24")
        self.finish_setup()


class KernelVxlan(Contender):
    name = "kernel-vxlan"
    title = "kernel vxlan + bridge overlay (2 hosts)"
    kind = "overlay"
    tools = ["ip", "ping"]
    userspace = False
    topology = (
        f"hosts hA, hB joined by a veth underlay (MTU {UNDERLAY_MTU}); in each a `vxlan` device (id {VNI}, "
        "dstport 4789, `remote` = the other host, MTU 1500) and a veth to the container on a bridge"
    )

    def setup(self) -> None:
        lab = self.lab
        ha, hb, a_ip, b_ip = underlay(self)
        self.ns1, self.ns2 = lab.netns(self.short("c1")), lab.netns(self.short("c2"))
        for host, local, remote, ns, ip in ((ha, a_ip, b_ip, self.ns1, self.ip1), (hb, b_ip, a_ip, self.ns2, self.ip2)):
            run(["ip", "-n", host, "link", "add", "vx0", "type", "vxlan", "id", VNI, "dstport", "4789",
                 "local", local, "remote", remote, "dev", "ul0"])
            run(["ip", "-n", host, "link", "add", "br0", "type", "bridge"])
            run(["ip", "-n", host, "link", "set", "vx0", "master", "br0"])
            addr_up(host, "vx0", mtu=1500)
            addr_up(host, "br0")
            veth(ns, "eth0", host, "p0")
            run(["ip", "-n", host, "link", "set", "p0", "master", "br0"])
            addr_up(host, "p0", mtu=1500)
            addr_up(ns, "eth0", f"{ip}/24", 1500)
        self.finish_setup()


# ---------------------------------------------------------------------------
# Uplink (issue 15): a LAN host <-> a container on the host's LAN. The LAN is
# a kernel bridge in namespace lan; the LAN host c1 hangs off it on a veth,
# and so does the "host" namespace's eth0 (GRO and TSO on, as a real NIC has
# them). The contenders differ only in how the container c2 is put on eth0.


def simulated_lan(contender: Contender) -> str:
    """Builds the LAN, the LAN host (ns1, with ip1) and the container's namespace (ns2, empty);
    returns the host namespace, whose `eth0` is on the LAN."""
    lab = contender.lab
    lan = lab.netns(contender.short("lan"))
    host = lab.netns(contender.short("host"))
    contender.ns1, contender.ns2 = lab.netns(contender.short("c1")), lab.netns(contender.short("c2"))
    run(["ip", "-n", lan, "link", "add", "br0", "type", "bridge"])
    addr_up(lan, "br0")
    for ns, port, cidr in ((contender.ns1, "lh1", f"{contender.ip1}/24"), (host, "up0", None)):
        veth(ns, "eth0", lan, port)
        run(["ip", "-n", lan, "link", "set", port, "master", "br0"])
        addr_up(lan, port)
        addr_up(ns, "eth0", cidr)
    run(nsx(host, ["ethtool", "-K", "eth0", "gro", "on", "tso", "on"]))
    return host


class VxswitchUplink(Vxswitch):
    # Options of c2's `port add` (the TAP backend unless a variant says).
    port_args: list[str] = []
    name = "uplink-vxswitch"
    title = "LAN host <-> container through vxswitch's uplink (--uplink eth0)"
    kind = "uplink"
    tools = ["ip", "ping", "ethtool"]
    topology = (
        "LAN: bridge in namespace lan, LAN host c1 and the host's `eth0` (GRO/TSO on) on veths into it; "
        "`vxswitch daemon` in the host namespace, `network create lan --uplink eth0`, container c2's "
        "TAP port; c1 -> c2 crosses the LAN bridge, eth0's packet socket and the switch"
    )

    def setup(self) -> None:
        host = simulated_lan(self)
        sock = self.lab.path(f"{self.name}.sock")
        self.start_daemon(host, sock, self.daemon_args)
        self.cli(sock, "network", "create", "lan", "--uplink", "eth0", "--subnet", f"{self.subnet}.0/24")
        self.cli(sock, "port", "add", "c2", "--network", "lan", "--netns", f"/run/netns/{self.ns2}",
                 "--ip", f"{self.ip2}/24", *self.port_args)
        self.finish_setup()

    def finish_setup(self) -> None:
        # c1 is a LAN host on a veth: only the container's eth0 is vxswitch's TAP.
        Contender.finish_setup(self)
        info = link_info(self.ns2, details=True).get("linkinfo", {}).get("info_data", {})
        if not info.get("vnet_hdr"):
            raise BenchError(f"eth0 in {self.ns2} has no vnet_hdr (ip -d link: {info})")


class VxswitchUplinkRing(VxswitchUplink):
    name = "uplink-vxswitch-ring"
    title = "LAN host <-> container through vxswitch's uplink read through receive rings (--uplink-rx ring)"
    daemon_args = ["--uplink-rx", "ring", "--uplink-buffer", "32"]
    topology = (
        "as `uplink-vxswitch`, with `daemon --uplink-rx ring --uplink-buffer 32`: each worker's uplink "
        "socket has a 32 MiB TPACKET_V2 receive ring (docs/uplink.md, \"The receive ring\")"
    )


class VxswitchUplinkEbpf(VxswitchUplink):
    name = "uplink-vxswitch-ebpf"
    title = "LAN host <-> container through vxswitch's uplink with the eBPF fast path (--fastpath ebpf)"
    daemon_args = ["--fastpath", "ebpf"]
    topology = (
        "as `uplink-vxswitch`, with `daemon --fastpath ebpf` and container c2 on a veth port "
        "(`port add --backend veth`): known unicast between the LAN host and c2 goes through the kernel "
        "(the tc program on eth0 and on c2's host end: bpf_redirect_peer in, bpf_redirect to eth0 out); "
        "docs/fastpath.md, \"Uplinks\""
    )

    port_args = ["--backend", "veth"]

    def finish_setup(self) -> None:
        Contender.finish_setup(self)
        kind = link_info(self.ns2, details=True).get("linkinfo", {}).get("info_kind")
        if kind != "veth":
            raise BenchError(f"eth0 in {self.ns2} is a {kind}, expected a veth for {self.name}")
        sock = self.lab.path(f"{self.name}.sock")
        fp = json.loads(self.cli(sock, "--json", "stats")).get("fastpath") or {}
        if not fp.get("active"):
            raise BenchError(f"{self.name}: the fast path is not active: {fp.get('reason')}")
        # The switch learns both MACs from a first exchange; a sync round
        # (once a second) then puts them in the maps.
        run(["ip", "netns", "exec", self.ns1, "ping", "-c", "2", "-i", "0.2", "-W", "1", self.ip2],
            check=False, timeout=10)
        time.sleep(1.5)


class KernelMacvlan(Contender):
    name = "uplink-macvlan"
    title = "LAN host <-> container through kernel macvlan (bridge mode) on eth0"
    kind = "uplink"
    tools = ["ip", "ping", "ethtool"]
    userspace = False
    topology = (
        "the LAN of `uplink-vxswitch`; `ip link add link eth0 type macvlan mode bridge` in the host "
        "namespace, moved into c2 as `eth0` (Docker's `-d macvlan -o parent=eth0`)"
    )

    def setup(self) -> None:
        host = simulated_lan(self)
        run(["ip", "-n", host, "link", "add", "mv0", "link", "eth0", "type", "macvlan", "mode", "bridge"])
        run(["ip", "-n", host, "link", "set", "mv0", "netns", self.ns2])
        run(["ip", "-n", self.ns2, "link", "set", "mv0", "name", "eth0"])
        addr_up(self.ns2, "eth0", f"{self.ip2}/24")
        self.finish_setup()


class UnderlayBridge(Contender):
    name = "uplink-bridge"
    title = "LAN host <-> container through a kernel bridge with eth0 enslaved (underlay bridge)"
    kind = "uplink"
    tools = ["ip", "ping", "ethtool"]
    userspace = False
    topology = (
        "the LAN of `uplink-vxswitch`; bridge `br0` in the host namespace with `eth0` enslaved and a "
        "veth to c2's `eth0` (an \"underlay\" bridge sharing the LAN's subnet)"
    )

    def setup(self) -> None:
        host = simulated_lan(self)
        run(["ip", "-n", host, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", host, "link", "set", "eth0", "master", "br0"])
        addr_up(host, "br0")
        veth(self.ns2, "eth0", host, "p2")
        run(["ip", "-n", host, "link", "set", "p2", "master", "br0"])
        addr_up(host, "p2")
        addr_up(self.ns2, "eth0", f"{self.ip2}/24")
        self.finish_setup()


class UplinkOvs(Ovs):
    name = "uplink-ovs"
    title = "LAN host <-> container through Open vSwitch userspace with an AF_PACKET port on eth0"
    kind = "uplink"
    tools = [*Ovs.tools, "ethtool"]
    # With userspace TSO OVS puts a virtio_net_hdr on its AF_PACKET socket, as
    # vxswitch's uplink does: without it, the veth's partial checksums and GRO's
    # super-frames reach the container unfinished and TCP never connects.
    other_config = {"userspace-tso-enable": "true"}
    topology = (
        "the LAN of `uplink-vxswitch`; `ovs-vswitchd` (`userspace-tso-enable=true`, so its sockets "
        "carry a virtio_net_hdr like vxswitch's) in the host namespace, bridge `datapath_type=netdev` "
        "with `eth0` as a system port (OVS reads it through an AF_PACKET socket) and a `type=tap` port "
        "moved into c2 as `eth0`"
    )

    def setup(self) -> None:
        host = simulated_lan(self)
        vsctl, env, vswitchd = self.start_ovs(host)
        run([*vsctl, "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev",
             "--", "add-port", "br0", "eth0",
             "--", "add-port", "br0", "vxbt2", "--", "set", "interface", "vxbt2", "type=tap"], env=env, timeout=40)
        wait_for("OVS tap vxbt2",
                 lambda: run(["ip", "-n", host, "link", "show", "vxbt2"], check=False).returncode == 0, 10, vswitchd)
        move_tap(host, "vxbt2", self.ns2)
        addr_up(self.ns2, "eth0", f"{self.ip2}/24")
        self.forwarder = vswitchd
        self.finish_setup()


def baseline_twin(cls: type) -> type:
    """`cls` run by the --baseline binary: a before/after in one run."""
    return type(cls.__name__ + "Base", (cls,), {
        "__doc__": f"`{cls.name}` run by the --baseline binary.",
        "name": cls.name + "-base",
        "title": f"{cls.title}, the --baseline binary",
        "topology": f"as `{cls.name}`, run by the binary given with --baseline (the 'before' of a change)",
        "exe": property(lambda self: self.opts.baseline),
    })


ALL = [Vxswitch, VxswitchNoOffload, VxswitchBusyPoll, VxswitchBusyPollAuto, VxswitchVeth, VxswitchEbpf, TapFloor, KernelBridge, Ovs, OvsTso, Vde,
       Veth, VxswitchVxlan, KernelVxlan, VxswitchUplink, VxswitchUplinkRing, VxswitchUplinkEbpf, KernelMacvlan,
       UnderlayBridge, UplinkOvs]
# Measured only when asked for with --only: the uplink scenario (issue 15), a
# comparison of its own, LAN host <-> container, not run by default (`--busy-poll
# auto`, once optional, landed with issue 13's item 1).
UPLINK = ["uplink-vxswitch", "uplink-vxswitch-ring", "uplink-vxswitch-ebpf", "uplink-macvlan", "uplink-bridge",
          "uplink-ovs"]
# vxswitch-veth (issue 17): veth ports, measured when asked for until a run
# puts it in docs/benchmarks-system.md.
OPTIONAL: set[str] = {*UPLINK, "vxswitch-veth", "vxswitch-ebpf"}
# Measured only with --baseline, beside the contender they repeat.
BASE_OF = {c.name: baseline_twin(c) for c in (Vxswitch, VxswitchVxlan, VxswitchEbpf)}
BY_NAME = {c.name: c for c in ALL}
BASELINE = "bridge"
# Always measured, whatever --only says: the reference of the ratios and the
# floor of any switch on TAP ports.
ALWAYS = [BASELINE, "tap-floor"]
