//! The eBPF fast path (`vxswitch::fastpath`, docs/fastpath.md) on veth
//! pairs made by hand, with its maps filled by the test as the switch would
//! fill them: a known unicast frame crosses from one container to the other
//! through the tc program alone (no switch runs), counted per port; the
//! socket filter hides exactly those frames from the port's packet socket
//! while an unfiltered socket on the same interface sees them; a frame the
//! maps do not cover (a removed port, a source other than the port's
//! locked MAC) goes to the packet socket instead, unforwarded. Needs root
//! and a binary built with clang (CI installs it).

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::{can_run, cannot_run, exact_transfer, iperf3, unique, wait_until, Daemon, Netns};
use vxswitch::fastpath::{FastPath, PortEntry};
use vxswitch::fdb::{NetId, PortId};
use vxswitch::ports::ring::{self, RingSpec, RxRing, VNET_HDR_LEN};
use vxswitch::wire::MacAddr;

const MAC_A: [u8; 6] = [0x02, 0xfa, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0xfa, 0, 0, 0, 0x0b];

/// Pins of the test's own, removed on drop.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        FastPath::unpin(&self.0);
        let _ = std::fs::remove_dir("/sys/fs/bpf/vxswitch-test");
    }
}

/// Namespaces `sw` (the switch's, holding the host ends `ha`, `hb`) and
/// two containers `a` (10.77.0.1, eth0 MAC_A) and `b` (10.77.0.2, MAC_B),
/// IPv6 off, each knowing the other's MAC (no ARP: nothing floods here).
struct Lab {
    sw: Netns,
    a: Netns,
    b: Netns,
}

fn lab() -> Lab {
    let sw = Netns::new("fpsw");
    let a = Netns::new("fpa");
    let b = Netns::new("fpb");
    for ns in [&sw, &a, &b] {
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
    }
    for (host, c, mac, ip, peer_ip, peer_mac) in [
        ("ha", &a, MAC_A, "10.77.0.1/24", "10.77.0.2", MAC_B),
        ("hb", &b, MAC_B, "10.77.0.2/24", "10.77.0.1", MAC_A),
    ] {
        sw.ip_ok(&[
            "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", &c.name,
        ]);
        sw.ip_ok(&["link", "set", host, "up"]);
        c.ip_ok(&["link", "set", "eth0", "address", &fmt_mac(mac)]);
        c.ip_ok(&["addr", "add", ip, "dev", "eth0"]);
        c.ip_ok(&["link", "set", "eth0", "up"]);
        c.ip_ok(&[
            "neigh",
            "add",
            peer_ip,
            "lladdr",
            &fmt_mac(peer_mac),
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
    }
    Lab { sw, a, b }
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ifindex(ns: &Netns, dev: &str) -> u32 {
    let v = ns.ip_json(&["link", "show", dev]);
    v[0]["ifindex"].as_u64().expect("ifindex") as u32
}

fn port(n: u32, mac: [u8; 6]) -> PortEntry {
    PortEntry {
        net: NetId(1),
        port: PortId(n),
        mac: MacAddr(mac),
        fast: true,
        mac_lock: true,
        mtu: 1500,
        slot: n,
    }
}

/// Loads the program with pins of its own, or None (skipped) where it
/// cannot run.
fn load() -> Option<(FastPath, Pins)> {
    if !vxswitch::fastpath::built_in() {
        cannot_run("the binary was built without clang: no fast path to test");
        return None;
    }
    let dir = PathBuf::from("/sys/fs/bpf/vxswitch-test").join(unique("fp"));
    let pins = Pins(dir.clone());
    match FastPath::load(&dir) {
        Ok(fp) => Some((fp, pins)),
        Err(e) => {
            cannot_run(&e.to_string());
            None
        }
    }
}

fn open_ring(ns: &Netns, dev: &str) -> RxRing {
    ring::open(&ns.handle(), dev, &RingSpec::super_frames())
        .unwrap_or_else(|e| panic!("open rings on {dev}: {e}"))
        .0
}

/// How many ICMP echo requests from `src` arrive on `rx` within `wait`.
fn echo_requests(rx: &mut RxRing, src: [u8; 6], wait: Duration) -> usize {
    let deadline = Instant::now() + wait;
    let mut n = 0;
    while Instant::now() < deadline {
        if !rx.ready() {
            rx.wait(Duration::from_millis(50)).expect("poll the ring");
            continue;
        }
        while let Some(f) = rx.next() {
            let mut buf = vec![0u8; f.len_with(VNET_HDR_LEN)];
            let Some(total) = f.copy_to(&mut buf, VNET_HDR_LEN) else {
                continue;
            };
            let fr = &buf[VNET_HDR_LEN..total];
            if fr.len() >= 35
                && fr[6..12] == src
                && fr[12..14] == [0x08, 0x00]
                && fr[23] == 1
                && fr[34] == 8
            {
                n += 1;
            }
        }
        rx.release();
    }
    n
}

fn ping(ns: &Netns, dst: &str, count: u32) -> bool {
    ns.exec(
        "ping",
        &[
            "-c",
            &count.to_string(),
            "-i",
            "0.05",
            "-W",
            "1",
            "-n",
            "-q",
            dst,
        ],
    )
    .status
    .success()
}

#[test]
fn known_unicast_goes_fast_and_the_socket_filter_hides_it() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let Some((mut fp, _pins)) = load() else {
        return;
    };
    let lab = lab();
    let (ia, ib) = (ifindex(&lab.sw, "ha"), ifindex(&lab.sw, "hb"));
    lab.sw.enter(|| {
        fp.attach_tc("ha").expect("attach to ha");
        fp.attach_tc("hb").expect("attach to hb");
    });
    fp.set_port(ia, &port(1, MAC_A)).unwrap();
    fp.set_port(ib, &port(2, MAC_B)).unwrap();
    assert_eq!(fp.port(ia), Some(port(1, MAC_A)));
    assert_eq!(fp.port(u32::MAX), None, "a port that is not there");
    fp.set_fdb(NetId(1), MacAddr(MAC_A), ia).unwrap();
    fp.set_fdb(NetId(1), MacAddr(MAC_B), ib).unwrap();

    // The port's socket, filtered as the switch's would be, and a plain
    // one beside it on the same interface.
    let mut filtered = open_ring(&lab.sw, "ha");
    fp.attach_socket(filtered.fd())
        .expect("attach the socket filter");
    let mut plain = open_ring(&lab.sw, "ha");

    let echoes = lab.b.snmp("Icmp", "InEchos");
    assert!(
        ping(&lab.a, "10.77.0.2", 5),
        "no switch runs here: only the fast path can carry a's pings to b"
    );
    assert_eq!(
        lab.b.snmp("Icmp", "InEchos") - echoes,
        5,
        "each request arrives once"
    );
    // Counted at each port's slot.
    let sa = fp.stats(1);
    let sb = fp.stats(2);
    assert!(
        sa.rx_frames >= 5 && sb.tx_frames >= 5,
        "fast counters: a {sa:?}, b {sb:?}"
    );
    assert!(
        sb.rx_frames >= 5 && sa.tx_frames >= 5,
        "the replies went fast too: a {sa:?}, b {sb:?}"
    );
    assert_eq!(
        sa.rx_bytes,
        sa.rx_frames * 98,
        "echo frames are 98 bytes: {sa:?}"
    );
    let hidden = echo_requests(&mut filtered, MAC_A, Duration::from_millis(300));
    let seen = echo_requests(&mut plain, MAC_A, Duration::from_millis(300));
    assert_eq!(hidden, 0, "the port's socket must not see fast frames");
    assert_eq!(seen, 5, "an unfiltered socket sees each of them once");

    // Port security: a source other than the port's locked MAC is the
    // userspace switch's to judge (and, here, nobody forwards it).
    fp.set_port(
        ia,
        &PortEntry {
            mac: MacAddr([2, 0, 0, 0, 0, 0x99]),
            ..port(1, MAC_A)
        },
    )
    .unwrap();
    assert!(
        !ping(&lab.a, "10.77.0.2", 2),
        "a locked port's foreign source went fast"
    );
    assert_eq!(
        echo_requests(&mut filtered, MAC_A, Duration::from_millis(300)),
        2
    );
    fp.set_port(ia, &port(1, MAC_A)).unwrap();
    assert!(ping(&lab.a, "10.77.0.2", 1), "back on the fast path");
    let _ = echo_requests(&mut filtered, MAC_A, Duration::from_millis(100));

    // A removed port: its entries go, nothing reaches it any more, and
    // frames to it go to the userspace switch.
    let last = fp.remove_port(ib);
    assert!(
        last.tx_frames >= 6,
        "the removed port's last counters: {last:?}"
    );
    assert!(
        fp.fdb_entries()
            .iter()
            .all(|(_, _, v)| v.target.ifindex() != ib),
        "an FDB entry still points at the removed port: {:?}",
        fp.fdb_entries()
    );
    assert!(
        !ping(&lab.a, "10.77.0.2", 2),
        "a frame reached a removed port"
    );
    assert_eq!(
        echo_requests(&mut filtered, MAC_A, Duration::from_millis(300)),
        2
    );
    drop(lab);
}

// ---------------------------------------------------------------------------
// The daemon with `--fastpath ebpf` and veth ports

const LONG: Duration = Duration::from_secs(20);

/// A daemon in a namespace of its own with `--fastpath MODE`; None (after
/// `cannot_run`) when the fast path cannot be active here.
fn daemon(mode: &str) -> Option<(Netns, Daemon)> {
    let host = Netns::new("fph");
    let d = Daemon::start_in(Some(&host), &["--fastpath", mode]);
    let fp = &d.json(&["stats"])["fastpath"];
    if mode == "ebpf" && fp["active"] != true {
        cannot_run(&format!("the fast path is not active: {fp}"));
        return None;
    }
    Some((host, d))
}

fn port_json(d: &Daemon, name: &str) -> serde_json::Value {
    let ls = d.json(&["port", "ls"]);
    ls.as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no port {name} in {ls}"))
}

/// Two containers on veth ports `ports` of network `red` (addresses
/// `NET.11` and `NET.12`) that carry nothing but the test's own traffic:
/// IPv6 off (no chatter for the switch to count), and each other's MAC a
/// permanent neighbour (no ARP, which also works while the switch is away).
fn quiet_pair(d: &Daemon, tag: &str, net: &str, ports: [&str; 2]) -> (Netns, Netns) {
    let (c1, c2) = (Netns::new(tag), Netns::new(tag));
    for c in [&c1, &c2] {
        c.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
        c.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
    }
    d.port_add(
        ports[0],
        "red",
        &c1,
        &format!("{net}.11"),
        &["--backend", "veth"],
    );
    d.port_add(
        ports[1],
        "red",
        &c2,
        &format!("{net}.12"),
        &["--backend", "veth"],
    );
    for (c, peer, port) in [(&c1, 12, ports[1]), (&c2, 11, ports[0])] {
        let mac = port_json(d, port)["mac"].as_str().unwrap().to_string();
        let ip = format!("{net}.{peer}");
        c.ip_ok(&[
            "neigh",
            "replace",
            &ip,
            "lladdr",
            &mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
    }
    (c1, c2)
}

/// (all rx frames, fast rx frames, fast rx bytes) of `port` in `stats`.
fn rx(d: &Daemon, port: &str) -> (u64, u64, u64) {
    let s = d.json(&["stats"]);
    let row = support::port_row(&s, port);
    (
        row["stats"]["rx_frames"].as_u64().unwrap(),
        row["fast"]["rx_frames"].as_u64().unwrap_or(0),
        row["fast"]["rx_bytes"].as_u64().unwrap_or(0),
    )
}

#[test]
fn veth_ports_ping_and_iperf3_through_the_fast_path_each_frame_once() {
    if !can_run(&["ip", "ping", "iperf3", "timeout"]) {
        return;
    }
    let Some((_host, d)) = daemon("ebpf") else {
        return;
    };
    d.cli(&["network", "create", "red", "--subnet", "10.80.0.0/24"]);
    let (c1, c2) = (Netns::new("fpc"), Netns::new("fpc"));
    d.port_add("v1", "red", &c1, "10.80.0.11", &["--backend", "veth"]);
    d.port_add("v2", "red", &c2, "10.80.0.12", &["--backend", "veth"]);
    assert!(c1.ping_within("10.80.0.12", LONG), "v1 cannot reach v2");
    // Learned by the switch, then in the maps within a round (a second).
    assert!(
        wait_until(LONG, || {
            ping(&c1, "10.80.0.12", 1);
            rx(&d, "v1").1 > 0
        }),
        "no frame took the fast path: {}\n{}",
        d.json(&["stats"]),
        d.log()
    );
    let stats = d.cli(&["stats"]);
    assert!(
        stats.contains("fast path: active (ebpf), 2 port(s)"),
        "{stats}"
    );

    let (all0, fast0, _) = rx(&d, "v1");
    let echoes = c2.snmp("Icmp", "InEchos");
    assert!(ping(&c1, "10.80.0.12", 20), "pings over the fast path");
    assert_eq!(
        c2.snmp("Icmp", "InEchos") - echoes,
        20,
        "each request arrives exactly once"
    );
    let (all1, fast1, _) = rx(&d, "v1");
    assert!(fast1 - fast0 >= 20, "fast frames {fast0} -> {fast1}");
    assert!(
        all1 - all0 >= fast1 - fast0,
        "stats counts the fast frames: {all0} -> {all1}"
    );
    let slow = (all1 - fast1) - (all0 - fast0);
    assert!(
        slow < 5,
        "{slow} frames still passed the switch's socket (ARP at most)"
    );

    // Bulk TCP, byte for byte, then iperf3's 200 MiB: nearly all of it fast
    // (iperf3's received count misses what was in flight at its end).
    exact_transfer(&c1, &c2, "10.80.0.12", 8 << 20);
    let (_, _, bytes0) = rx(&d, "v1");
    let (sent, _) = iperf3(&c1, &c2, "10.80.0.12", 200 << 20, false);
    let (_, _, bytes1) = rx(&d, "v1");
    assert!(
        bytes1 - bytes0 >= sent / 10 * 9,
        "the transfer of {sent} bytes went fast: {bytes0} -> {bytes1} bytes"
    );
}

/// The steering interfaces in `ns`, by name.
fn steering_links(ns: &Netns) -> Vec<String> {
    support::link_names(&ns.name)
        .into_iter()
        .filter(|n| n.starts_with("vxs"))
        .collect()
}

/// With the fast path a veth port's sockets receive on the port's steering
/// interface, so no socket of the switch is in its host end's taps (which
/// every frame passes before tc, the fast ones too); the host end holds
/// only the socket the switch sends through. ARP and a flow's first frames
/// still pass the switch. The steering interface goes with its port, and
/// with the daemon.
#[test]
fn a_veth_port_is_read_on_its_steering_interface_not_in_its_host_ends_taps() {
    if !can_run(&["ip", "ping", "cat", "kill"]) {
        return;
    }
    let Some((host, mut d)) = daemon("ebpf") else {
        return;
    };
    d.cli(&["network", "create", "red", "--subnet", "10.89.0.0/24"]);
    let (c1, c2) = (Netns::new("fps"), Netns::new("fps"));
    d.port_add("s1", "red", &c1, "10.89.0.11", &["--backend", "veth"]);
    d.port_add("s2", "red", &c2, "10.89.0.12", &["--backend", "veth"]);
    let workers = d.json(&["stats"])["workers"].as_array().map_or(0, Vec::len);
    assert!(workers > 0, "{}", d.json(&["stats"]));
    // Neighbours unknown: ARP (broadcast) must reach the switch.
    assert!(c1.ping_within("10.89.0.12", LONG), "{}", d.log());
    let steers = steering_links(&host);
    assert_eq!(
        steers.len(),
        2,
        "one steering interface per port: {steers:?}"
    );
    let socks = host.packet_sockets();
    for port in ["s1", "s2"] {
        let end = ifindex(&host, &format!("vxv-{port}")).to_string();
        let on_end: Vec<&String> = socks
            .iter()
            .filter(|(_, i)| *i == end)
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            on_end,
            ["0000"],
            "the host end of {port} holds only the sending socket: {socks:?}"
        );
        let steer = steers
            .iter()
            .find(|n| n.ends_with(&format!("-{:x}", ifindex(&host, &format!("vxv-{port}")))))
            .unwrap_or_else(|| panic!("no steering interface of {port} in {steers:?}"));
        let si = ifindex(&host, steer).to_string();
        let reading = socks
            .iter()
            .filter(|(p, i)| *i == si && p == "0003")
            .count();
        assert_eq!(
            reading, workers,
            "one receiving socket per worker on {steer}: {socks:?}"
        );
    }
    // Once in the maps, pings go fast, each exactly once.
    assert!(
        wait_until(LONG, || {
            ping(&c1, "10.89.0.12", 1);
            rx(&d, "s1").1 > 0
        }),
        "no frame took the fast path: {}",
        d.json(&["stats"])
    );
    let echoes = c2.snmp("Icmp", "InEchos");
    assert!(ping(&c1, "10.89.0.12", 10), "pings over the fast path");
    assert_eq!(c2.snmp("Icmp", "InEchos") - echoes, 10, "each once");

    d.cli(&["port", "rm", "s2"]);
    let left = steering_links(&host);
    assert_eq!(
        left.len(),
        1,
        "s2's steering interface went with it: {left:?}"
    );
    assert!(d.terminate().success(), "{}", d.log());
    let left = steering_links(&host);
    assert!(left.is_empty(), "the daemon's stop removes them: {left:?}");
}

/// Isolation, port security, a MAC move and port removal, as a container
/// sees them: the same with the fast path on and off.
#[test]
fn isolation_port_security_moves_and_removal_are_the_same_on_and_off() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    for mode in ["ebpf", "off"] {
        let Some((_host, d)) = daemon(mode) else {
            return;
        };
        let what = |s: &str| format!("--fastpath {mode}: {s}\n{}", d.log());
        d.cli(&["network", "create", "red", "--subnet", "10.81.0.0/24"]);
        d.cli(&["network", "create", "blue", "--subnet", "10.82.0.0/24"]);
        let (a, b, c, m) = (
            Netns::new("fpi"),
            Netns::new("fpi"),
            Netns::new("fpi"),
            Netns::new("fpi"),
        );
        let veth = ["--backend", "veth"];
        let open = ["--backend", "veth", "--no-port-security"];
        d.port_add("a", "red", &a, "10.81.0.11", &veth);
        d.port_add("b", "red", &b, "10.81.0.12", &open);
        d.port_add("c", "blue", &c, "10.82.0.13", &veth);
        d.port_add("m", "red", &m, "10.81.0.16", &open);
        assert!(
            a.ping_within("10.81.0.12", LONG),
            "{}",
            what("a cannot reach b")
        );
        // Let a round put a and b in the maps.
        std::thread::sleep(Duration::from_millis(1500));
        assert!(ping(&a, "10.81.0.12", 3), "{}", what("a to b"));

        // Isolation: c (blue) takes an address in red's subnet and a knows
        // its MAC; nothing of a's reaches it.
        let mac_c = port_json(&d, "c")["mac"].as_str().unwrap().to_string();
        c.ip_ok(&["addr", "add", "10.81.0.13/24", "dev", "eth0"]);
        a.ip_ok(&[
            "neigh",
            "replace",
            "10.81.0.13",
            "lladdr",
            &mac_c,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
        assert!(!ping(&a, "10.81.0.13", 2), "{}", what("red reached blue"));

        // Port security: a spoofs another source MAC; nothing gets through.
        let mac_a = port_json(&d, "a")["mac"].as_str().unwrap().to_string();
        a.ip_ok(&["link", "set", "eth0", "address", "02:00:00:00:5e:99"]);
        assert!(
            !ping(&a, "10.81.0.12", 2),
            "{}",
            what("a spoofed source got through")
        );
        a.ip_ok(&["link", "set", "eth0", "address", &mac_a]);
        assert!(a.ping_within("10.81.0.12", LONG), "{}", what("a is back"));

        // A MAC move: b takes a MAC no port owns (it has no port security),
        // a's traffic to it goes fast; then the MAC and b's address go to m,
        // and a's pings follow.
        const MOVED: &str = "02:00:00:00:6d:01";
        b.ip_ok(&["link", "set", "eth0", "address", MOVED]);
        a.ip_ok(&[
            "neigh",
            "replace",
            "10.81.0.12",
            "lladdr",
            MOVED,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
        assert!(
            a.ping_within("10.81.0.12", LONG),
            "{}",
            what("a cannot reach b's new MAC")
        );
        std::thread::sleep(Duration::from_millis(1500));
        assert!(ping(&a, "10.81.0.12", 3), "{}", what("a to b's new MAC"));
        b.ip_ok(&["link", "set", "eth0", "down"]);
        m.ip_ok(&["link", "set", "eth0", "address", MOVED]);
        m.ip_ok(&["addr", "add", "10.81.0.12/24", "dev", "eth0"]);
        assert!(
            m.ping_within("10.81.0.11", LONG),
            "{}",
            what("m cannot reach a")
        );
        let echoes = m.snmp("Icmp", "InEchos");
        assert!(
            a.ping_within("10.81.0.12", LONG),
            "{}",
            what("a's pings did not follow the move")
        );
        assert!(
            m.snmp("Icmp", "InEchos") > echoes,
            "{}",
            what("the moved MAC's pings went elsewhere")
        );

        // Removal: m goes; nothing reaches it any more.
        d.cli(&["port", "rm", "m"]);
        assert!(
            !ping(&a, "10.81.0.12", 2),
            "{}",
            what("a frame reached a removed port")
        );
        if mode == "ebpf" {
            let fp = &d.json(&["stats"])["fastpath"];
            assert_eq!(fp["ports"], 3, "{}", what(&fp.to_string()));
        }
    }
}

/// `stats`' counters of a veth port (rx/tx frames and bytes).
fn counters(d: &Daemon, port: &str) -> [u64; 4] {
    let s = d.json(&["stats"]);
    let c = support::find_port(&s, port);
    ["rx_frames", "rx_bytes", "tx_frames", "tx_bytes"].map(|k| c[k].as_u64().unwrap())
}

/// The same 50 pings count the same frames and bytes on both ports with
/// the fast path on (nearly all of them forwarded in the kernel) and off.
#[test]
fn counters_match_frame_for_frame_on_and_off() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let mut seen = Vec::new();
    for mode in ["ebpf", "off"] {
        let Some((_host, d)) = daemon(mode) else {
            return;
        };
        d.cli(&["network", "create", "red", "--subnet", "10.83.0.0/24"]);
        let (c1, _c2) = quiet_pair(&d, "fpn", "10.83.0", ["v1", "v2"]);
        assert!(
            c1.ping_within("10.83.0.12", LONG),
            "--fastpath {mode}: no ping"
        );
        // A round of the map sync, so the fast path (if on) knows both.
        std::thread::sleep(Duration::from_millis(1500));
        let (a0, b0, f0) = (counters(&d, "v1"), counters(&d, "v2"), rx(&d, "v1").1);
        assert!(ping(&c1, "10.83.0.12", 50), "--fastpath {mode}: pings");
        let (a1, b1, f1) = (counters(&d, "v1"), counters(&d, "v2"), rx(&d, "v1").1);
        let delta = |x: [u64; 4], y: [u64; 4]| [0, 1, 2, 3].map(|i| y[i] - x[i]);
        let (da, db) = (delta(a0, a1), delta(b0, b1));
        assert_eq!(
            da,
            [50, 50 * 98, 50, 50 * 98],
            "--fastpath {mode}: v1 rx/tx frames/bytes"
        );
        assert_eq!(
            db,
            [50, 50 * 98, 50, 50 * 98],
            "--fastpath {mode}: v2 rx/tx frames/bytes"
        );
        if mode == "ebpf" {
            assert_eq!(f1 - f0, 50, "every request went fast");
        }
        seen.push((da, db));
    }
    assert_eq!(seen[0], seen[1], "the counters differ between on and off");
}

/// A bpffs of the test's own, in the test's mount namespace (which `ip
/// netns exec` copies), unmounted on drop. Runs: mount, umount.
struct Bpffs(support::TempDir);

impl Bpffs {
    fn new() -> Bpffs {
        let dir = support::TempDir::new("vxsw-fp-bpffs-");
        support::run("mount", &["-t", "bpf", "bpf", dir.0.to_str().unwrap()]);
        Bpffs(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        support::run_for_cleanup("umount", &[self.0 .0.to_str().unwrap()]);
    }
}

/// kill -9 of a daemon with a state directory: the containers' flow keeps
/// going through the kernel while no daemon runs; the next start finds its
/// pinned maps and veths again and the flow stays on the fast path.
#[test]
fn known_flows_keep_forwarding_while_the_daemon_is_down_and_it_resyncs() {
    if !can_run(&["ip", "ping", "mount", "umount"]) {
        return;
    }
    if !vxswitch::fastpath::built_in() {
        cannot_run("the binary was built without clang: no fast path to test");
        return;
    }
    let bpffs = Bpffs::new();
    let pins = bpffs.0 .0.join("pins");
    let state = support::TempDir::new("vxsw-fp-state-");
    let args = [
        "--fastpath",
        "ebpf",
        "--fastpath-pins",
        pins.to_str().unwrap(),
        "--state-dir",
        state.0.to_str().unwrap(),
    ];
    let host = Netns::new("fph");
    let mut d = Daemon::start_in(Some(&host), &args);
    d.cli(&["network", "create", "red", "--subnet", "10.84.0.0/24"]);
    let (c1, c2) = quiet_pair(&d, "fpr", "10.84.0", ["r1", "r2"]);
    assert!(
        wait_until(LONG, || ping(&c1, "10.84.0.12", 1) && rx(&d, "r1").1 > 0),
        "no frame took the fast path:\n{}",
        d.log()
    );

    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let echoes = c2.snmp("Icmp", "InEchos");
    assert!(
        ping(&c1, "10.84.0.12", 10),
        "the fast path stopped with the daemon"
    );
    assert_eq!(
        c2.snmp("Icmp", "InEchos") - echoes,
        10,
        "each request once, no daemon running"
    );

    let d = Daemon::start_in(Some(&host), &args);
    let fp = &d.json(&["stats"])["fastpath"];
    assert_eq!(
        (fp["active"].as_bool(), fp["ports"].as_u64()),
        (Some(true), Some(2)),
        "{fp}"
    );
    // Fast at once: the maps were taken over, not relearned.
    let echoes = c2.snmp("Icmp", "InEchos");
    assert!(
        ping(&c1, "10.84.0.12", 10),
        "after the restart:\n{}",
        d.log()
    );
    assert_eq!(
        c2.snmp("Icmp", "InEchos") - echoes,
        10,
        "each request once after the restart"
    );
    assert!(
        rx(&d, "r1").1 >= 10,
        "not fast after the restart: {}",
        d.json(&["stats"])
    );
    let (all, fast, _) = rx(&d, "r1");
    assert_eq!(all, fast, "the restarted switch's socket saw fast frames");

    // Restarted without the fast path: the program the first daemon left
    // on the kept veths goes, so no frame is forwarded twice.
    let mut d = d;
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let off = [
        "--fastpath",
        "off",
        "--state-dir",
        state.0.to_str().unwrap(),
    ];
    let d = Daemon::start_in(Some(&host), &off);
    let echoes = c2.snmp("Icmp", "InEchos");
    assert!(
        ping(&c1, "10.84.0.12", 10),
        "without the fast path:\n{}",
        d.log()
    );
    assert_eq!(
        c2.snmp("Icmp", "InEchos") - echoes,
        10,
        "each request once without the fast path"
    );
    assert!(
        rx(&d, "r1").0 >= 10,
        "the switch forwarded them: {}",
        d.json(&["stats"])
    );
}

/// A daemon the kernel does not allow BPF (no CAP_BPF, no CAP_SYS_ADMIN)
/// starts anyway, says why in its log and in `stats`, and forwards in
/// userspace.
#[test]
fn without_cap_bpf_the_daemon_says_why_and_runs_without_it() {
    if !can_run(&["ip", "setpriv", "mount", "umount"]) {
        return;
    }
    // Pins on a BPF filesystem it may use: the refusal is the kernel's BPF.
    let bpffs = Bpffs::new();
    let pins = bpffs.0 .0.join("pins");
    let host = Netns::new("fpc");
    let dir = support::TempDir::new("vxsw-fp-caps-");
    let sock = dir.0.join("s.sock");
    let log = std::fs::File::create(dir.0.join("log")).unwrap();
    let child = support::cmd(
        "ip",
        &[
            "netns",
            "exec",
            &host.name,
            "setpriv",
            "--bounding-set=-bpf,-sys_admin,-perfmon",
            "--inh-caps=-bpf,-sys_admin,-perfmon",
            support::BIN,
            "--socket",
            sock.to_str().unwrap(),
            "daemon",
            "--fastpath",
            "ebpf",
            "--fastpath-pins",
            pins.to_str().unwrap(),
        ],
    )
    .stdout(log.try_clone().unwrap())
    .stderr(log)
    .spawn()
    .unwrap();
    let _proc = support::Proc(child);
    let client = |args: &[&str]| {
        let mut all = vec!["--socket", sock.to_str().unwrap()];
        all.extend_from_slice(args);
        support::run_raw(support::BIN, &all)
    };
    let read_log = || std::fs::read_to_string(dir.0.join("log")).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(10), || client(&["ping"])
            .status
            .success()),
        "the daemon did not start: {}",
        read_log()
    );
    let out = client(&["--json", "stats"]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fp = &s["fastpath"];
    assert_eq!(fp["active"], false, "{fp}");
    let why = fp["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("CAP_BPF"),
        "the reason names the capability: {why}"
    );
    assert!(
        read_log().contains("forwarding in userspace only"),
        "{}",
        read_log()
    );
    let table = String::from_utf8_lossy(&client(&["stats"]).stdout).into_owned();
    assert!(table.contains("fast path unavailable"), "{table}");
}

/// The MACs `fdb show` lists behind `port`.
fn fdb_macs(d: &Daemon, port: &str) -> Vec<String> {
    let v = d.json(&["fdb", "show"]);
    let rows = v.as_array().cloned().unwrap_or_default();
    rows.iter()
        .filter(|r| r["port"] == port)
        .map(|r| r["mac"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// With a 3-second ageing time: a flow that only takes the fast path keeps
/// its FDB entries (the program's last-seen stamps refresh them), every
/// frame of it fast; once idle, the entries age out of the switch and the
/// maps alike, and the next frame passes the switch again.
#[test]
fn fast_flows_do_not_age_out_and_idle_ones_do() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let host = Netns::new("fph");
    let d = Daemon::start_in(Some(&host), &["--fastpath", "ebpf", "--ageing-time", "3"]);
    if d.json(&["stats"])["fastpath"]["active"] != true {
        cannot_run("the fast path is not active");
        return;
    }
    d.cli(&["network", "create", "red", "--subnet", "10.86.0.0/24"]);
    let (c1, _c2) = quiet_pair(&d, "fpa", "10.86.0", ["v1", "v2"]);
    assert!(
        wait_until(LONG, || ping(&c1, "10.86.0.12", 1) && rx(&d, "v1").1 > 0),
        "no frame took the fast path:\n{}",
        d.log()
    );

    // 8 s of pings, well past the ageing time: every one fast.
    let (all0, fast0, _) = rx(&d, "v1");
    let n = 80;
    assert!(
        c1.exec(
            "ping",
            &[
                "-c",
                &n.to_string(),
                "-i",
                "0.1",
                "-W",
                "1",
                "-n",
                "-q",
                "10.86.0.12"
            ]
        )
        .status
        .success(),
        "pings over the fast path"
    );
    let (all1, fast1, _) = rx(&d, "v1");
    assert_eq!(
        (all1 - all0, fast1 - fast0),
        (n, n),
        "an entry aged out under a fast flow: (all, fast) frames"
    );
    assert_eq!(
        fdb_macs(&d, "v1"),
        vec![port_json(&d, "v1")["mac"].as_str().unwrap().to_string()],
        "v1's MAC is still learned"
    );

    // Idle: aged out of the switch, then out of the maps.
    assert!(
        wait_until(LONG, || fdb_macs(&d, "v1").is_empty()),
        "v1's MAC never aged out"
    );
    std::thread::sleep(Duration::from_millis(1500)); // a sync round
    let (all2, fast2, _) = rx(&d, "v1");
    assert!(ping(&c1, "10.86.0.12", 1), "a ping after the ageing");
    let (all3, fast3, _) = rx(&d, "v1");
    assert_eq!(
        (all3 - all2, fast3 - fast2),
        (1, 0),
        "the first frame after ageing passes the switch"
    );
}

/// A capture sees every frame of a port that was on the fast path (the
/// ports leave it while a capture runs), and the fast path comes back
/// after the capture ends.
#[test]
fn a_capture_sees_every_frame_and_the_fast_path_comes_back() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let Some((_host, d)) = daemon("ebpf") else {
        return;
    };
    d.cli(&["network", "create", "red", "--subnet", "10.87.0.0/24"]);
    let (c1, _c2) = quiet_pair(&d, "fpk", "10.87.0", ["v1", "v2"]);
    assert!(
        wait_until(LONG, || ping(&c1, "10.87.0.12", 1) && rx(&d, "v1").1 > 0),
        "no frame took the fast path:\n{}",
        d.log()
    );

    // 5 pings: 5 requests in, 5 replies out, all captured.
    let sock = d.socket.to_str().unwrap().to_string();
    let cap = support::cmd(
        support::BIN,
        &["--socket", &sock, "capture", "v1", "-c", "10"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut cap = support::Proc(cap);
    // Pings until the capture has its 10 frames (5 requests in, 5 replies
    // out): only frames that pass the switch are captured, so it ends only
    // if the port left the fast path for it.
    let done = wait_until(LONG, || {
        ping(&c1, "10.87.0.12", 1);
        cap.0.try_wait().ok().flatten().is_some()
    });
    let mut out = String::new();
    if done {
        use std::io::Read;
        cap.0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
    }
    assert!(done, "the capture never got 10 frames:\n{}", d.log());
    assert_eq!(
        out.lines().filter(|l| l.contains("Ipv4 98")).count(),
        10,
        "{out}"
    );
    let (_, fast0, _) = rx(&d, "v1");

    // After the capture: fast again.
    assert!(
        wait_until(LONG, || {
            ping(&c1, "10.87.0.12", 1);
            rx(&d, "v1").1 > fast0
        }),
        "the fast path did not come back after the capture"
    );
}

/// `port add --no-fastpath`: that port's frames, and frames to it, all
/// pass the switch; the other port is on the fast path.
#[test]
fn a_port_added_with_no_fastpath_stays_off_it() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let Some((_host, d)) = daemon("ebpf") else {
        return;
    };
    d.cli(&["network", "create", "red", "--subnet", "10.88.0.0/24"]);
    let (c1, c2) = (Netns::new("fpo"), Netns::new("fpo"));
    d.port_add("v1", "red", &c1, "10.88.0.11", &["--backend", "veth"]);
    d.port_add(
        "v2",
        "red",
        &c2,
        "10.88.0.12",
        &["--backend", "veth", "--no-fastpath"],
    );
    assert!(c1.ping_within("10.88.0.12", LONG), "{}", d.log());
    std::thread::sleep(Duration::from_millis(1500)); // a sync round
    assert!(ping(&c1, "10.88.0.12", 10), "pings through the switch");
    let s = d.json(&["stats"]);
    assert_eq!(s["fastpath"]["ports"], 1, "{}", s["fastpath"]);
    assert_eq!(rx(&d, "v1").1, 0, "v1's frames to v2 went fast");
    assert_eq!(rx(&d, "v2").1, 0, "v2's frames went fast");
}

/// Pins another build left with other shapes (here an `fp_fdb` whose
/// values are 8 bytes) are replaced, not a reason to refuse.
#[test]
fn pins_of_another_shape_are_replaced() {
    if !can_run(&["bpftool", "mount", "umount"]) {
        return;
    }
    if !vxswitch::fastpath::built_in() {
        cannot_run("the binary was built without clang: no fast path to test");
        return;
    }
    let bpffs = Bpffs::new();
    let pins = bpffs.0 .0.join("pins");
    std::fs::create_dir(&pins).unwrap();
    let old = pins.join("fp_fdb");
    support::run(
        "bpftool",
        &[
            "map",
            "create",
            old.to_str().unwrap(),
            "type",
            "hash",
            "key",
            "12",
            "value",
            "8",
            "entries",
            "16",
            "name",
            "fp_fdb",
        ],
    );
    let mut fp = FastPath::load(&pins).unwrap_or_else(|e| panic!("{e}"));
    fp.set_fdb(NetId(1), MacAddr(MAC_A), 7)
        .expect("the new map takes 16-byte values");
    assert_eq!(fp.fdb_entries().len(), 1);
    drop(fp);
    FastPath::unpin(&pins);
}

/// A daemon killed with the fast path on leaves its maps pinned for its
/// next start; a daemon that starts removes the pins of daemons that are
/// gone (nothing listens on their socket, or their namespace is gone),
/// with one log line naming them, and never a live daemon's.
#[test]
fn a_start_removes_the_pins_of_daemons_that_are_gone_and_keeps_the_live_ones() {
    if !can_run(&[]) {
        return;
    }
    let pins_of = |d: &Daemon| vxswitch::ctl::fastpath::pin_dir_for(&d.socket);
    let live = Daemon::start(&["--fastpath", "ebpf"]);
    let mut dead = Daemon::start(&["--fastpath", "ebpf"]);
    let (live_pins, dead_pins) = (pins_of(&live), pins_of(&dead));
    assert!(
        live_pins.join("fp_ports").exists() && dead_pins.join("fp_ports").exists(),
        "no pins in {} / {}:\n{}",
        live_pins.display(),
        dead_pins.display(),
        dead.log()
    );
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    assert!(dead_pins.exists(), "a killed daemon leaves its pins");
    // One of a namespace that is gone (no namespace has inode 1).
    let ghost = live_pins
        .parent()
        .unwrap()
        .join(format!("net1_{}", unique("vxsw-ghost-")));
    std::fs::create_dir(&ghost).unwrap();

    let third = Daemon::start(&["--fastpath", "ebpf"]);
    let log = third.log();
    assert!(!dead_pins.exists(), "the dead daemon's pins stayed:\n{log}");
    assert!(!ghost.exists(), "the gone namespace's pins stayed:\n{log}");
    assert!(
        live_pins.join("fp_ports").exists(),
        "a live daemon's pins went"
    );
    assert!(pins_of(&third).join("fp_ports").exists());
    let line = log
        .lines()
        .find(|l| l.contains("removed the pinned maps of"))
        .unwrap_or_else(|| panic!("no line about the removed pins:\n{log}"));
    assert!(
        line.contains(&dead_pins.display().to_string())
            && line.contains(&ghost.display().to_string()),
        "{line}"
    );
    assert!(!line.contains(&live_pins.display().to_string()), "{line}");
    // The live daemon still answers and still has its fast path.
    assert!(live.cli(&["stats"]).contains("active"), "{}", live.log());
}
