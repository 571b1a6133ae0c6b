//! veth ports (docs/veth.md): `port add --backend veth` gives the
//! container one end of a veth pair and keeps the other (`vxv-PORT`) in
//! the daemon's namespace, driven through a packet socket.
//!
//! The daemon runs in a namespace of its own, so the host ends it makes
//! never show in the test host's. Runs as root with CI=true:
//! `cargo test --test veth_root`.

mod support;

use std::time::Duration;

use support::{can_run, exact_transfer, find_port, iperf3, wait_until, Daemon, Netns};

const LONG: Duration = Duration::from_secs(20);

/// A daemon in namespace `host`, with network `red`.
fn setup(extra: &[&str]) -> (Netns, Daemon) {
    let host = Netns::new("vxvh");
    let d = Daemon::start_in(Some(&host), extra);
    d.cli(&["network", "create", "red", "--subnet", "10.79.0.0/24"]);
    (host, d)
}

fn link_exists(ns: &Netns, dev: &str) -> bool {
    ns.ip(&["link", "show", "dev", dev]).status.success()
}

fn port_json(d: &Daemon, name: &str) -> serde_json::Value {
    let ls = d.json(&["port", "ls"]);
    ls.as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no port {name} in {ls}"))
}

fn counter(d: &Daemon, port: &str, field: &str) -> u64 {
    find_port(&d.json(&["stats"]), port)[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} for {port}"))
}

#[test]
fn veth_ports_carry_traffic_like_tap_ports() {
    if !can_run(&["ip", "ping", "iperf3", "timeout", "ethtool"]) {
        return;
    }
    let (host, d) = setup(&[]);
    let (c1, c2, c3) = (Netns::new("vxvc"), Netns::new("vxvc"), Netns::new("vxvc"));
    d.port_add("v1", "red", &c1, "10.79.0.11", &["--backend", "veth"]);
    d.port_add("v2", "red", &c2, "10.79.0.12", &["--backend", "veth"]);
    d.port_add("t3", "red", &c3, "10.79.0.13", &[]);

    // What port ls says, and what the kernel has.
    let p = port_json(&d, "v1");
    assert_eq!(p["backend"], "veth", "{p}");
    assert_eq!(p["host_ifname"], "vxv-v1", "{p}");
    assert_eq!(p["ifname"], "eth0", "{p}");
    assert!(port_json(&d, "t3").get("backend").is_none());
    let table = d.cli(&["port", "ls"]);
    assert!(table.contains("eth0@vxv-v1"), "{table}");
    let peer = c1.ip_json(&["-d", "addr", "show", "dev", "eth0"]);
    let peer = &peer[0];
    assert_eq!(peer["linkinfo"]["info_kind"], "veth", "{peer}");
    assert_eq!(peer["address"], p["mac"], "{peer}");
    assert_eq!(peer["mtu"], 1500, "{peer}");
    let addrs: Vec<&str> = peer["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["local"].as_str())
        .collect();
    assert!(addrs.contains(&"10.79.0.11"), "{peer}");
    // The host end: up, no addresses, no ARP, IPv6 off.
    let h = host.ip_json(&["addr", "show", "dev", "vxv-v1"]);
    let h = &h[0];
    assert!(
        h["flags"].as_array().unwrap().iter().any(|f| f == "NOARP"),
        "{h}"
    );
    assert!(h["addr_info"].as_array().unwrap().is_empty(), "{h}");
    let v6 = host.enter(|| std::fs::read_to_string("/proc/sys/net/ipv6/conf/vxv-v1/disable_ipv6"));
    assert_eq!(v6.unwrap().trim(), "1");
    // TSO on the container's end: super-frames come to the switch whole.
    let k = c1.exec("ethtool", &["-k", "eth0"]);
    assert!(
        String::from_utf8_lossy(&k.stdout).contains("tcp-segmentation-offload: on"),
        "{}",
        String::from_utf8_lossy(&k.stdout)
    );

    // veth to veth, and veth to TAP.
    assert!(c1.ping_within("10.79.0.12", LONG), "{}", d.log());
    assert!(c2.ping_within("10.79.0.11", LONG), "{}", d.log());
    assert!(c1.ping_within("10.79.0.13", LONG), "{}", d.log());
    assert!(c3.ping_within("10.79.0.12", LONG), "{}", d.log());
    exact_transfer(&c1, &c2, "10.79.0.12", 1 << 20);
    exact_transfer(&c2, &c1, "10.79.0.11", 1 << 20);
    exact_transfer(&c3, &c1, "10.79.0.11", 1 << 20);
    exact_transfer(&c1, &c3, "10.79.0.13", 1 << 20);
    let (sent, _) = iperf3(&c1, &c2, "10.79.0.12", 64 << 20, false);
    assert!(sent >= 64 << 20);
    // TSO on the container's end: what c1 sent came as super-frames
    // (frames of up to 64 KiB), not as MTU-sized ones.
    let (bytes, frames) = (
        counter(&d, "v1", "rx_bytes"),
        counter(&d, "v1", "rx_frames"),
    );
    assert!(
        bytes / frames.max(1) > 3000,
        "{bytes} bytes in {frames} frames from v1: no super-frames"
    );
    iperf3(&c1, &c3, "10.79.0.13", 16 << 20, true);
    for port in ["v1", "v2", "t3"] {
        for field in ["rx_frames", "tx_frames", "rx_bytes", "tx_bytes"] {
            assert!(counter(&d, port, field) > 0, "{port} {field} did not move");
        }
    }

    // port rm deletes the pair.
    assert!(link_exists(&host, "vxv-v2"));
    d.cli(&["port", "rm", "v2"]);
    assert!(!link_exists(&host, "vxv-v2"), "port rm left the host end");
    assert!(
        !link_exists(&c2, "eth0"),
        "port rm left the container's end"
    );
}

#[test]
fn a_veth_port_whose_namespace_goes_away_is_reported_gone() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let (host, d) = setup(&[]);
    let c1 = Netns::new("vxvc");
    d.port_add("g1", "red", &c1, "10.79.0.21", &["--backend", "veth"]);
    assert!(link_exists(&host, "vxv-g1"));
    // The namespace goes (nothing holds it): the pair goes with it.
    drop(c1);
    assert!(
        wait_until(LONG, || !d.port_names().contains(&"g1".to_string())),
        "the port stayed after its namespace went: {:?}\n{}",
        d.port_names(),
        d.log()
    );
    assert!(!link_exists(&host, "vxv-g1"));
    let log = d.log();
    assert!(
        log.contains("port g1 (network red) removed: ")
            && log.contains("its veth and FDB entries are gone"),
        "{log}"
    );
}

#[test]
fn veth_ports_refuse_what_they_cannot_be() {
    if !can_run(&["ip"]) {
        return;
    }
    let (host, d) = setup(&[]);
    let out = d.cli_raw(&[
        "port",
        "add",
        "x1",
        "--network",
        "red",
        "--existing",
        "--backend",
        "veth",
    ]);
    assert!(!out.status.success());
    // A host end left behind by someone: named, with what to do.
    host.ip_ok(&[
        "link", "add", "vxv-x2", "type", "veth", "peer", "name", "other",
    ]);
    let c = Netns::new("vxvc");
    let out = d.cli_raw(&[
        "port",
        "add",
        "x2",
        "--network",
        "red",
        "--netns",
        &c.path(),
        "--backend",
        "veth",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("vxv-x2") && err.contains("ip link del vxv-x2"),
        "{err}"
    );
    assert!(!link_exists(&c, "eth0"), "a failed add left the peer");
}

/// The container's end as the kernel has it: (MAC, addresses, MTU).
fn peer_state(c: &Netns) -> (String, Vec<String>, u64) {
    let j = c.ip_json(&["addr", "show", "dev", "eth0"]);
    let j = &j[0];
    let addrs = j["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["local"].as_str().map(String::from))
        .collect();
    (
        j["address"].as_str().unwrap().to_string(),
        addrs,
        j["mtu"].as_u64().unwrap(),
    )
}

#[test]
fn veth_ports_survive_a_restart_with_a_state_directory() {
    if !can_run(&["ip", "ping", "kill"]) {
        return;
    }
    let state = support::TempDir::new("vxsw-veth-state-");
    let dir = state.0.to_str().unwrap().to_string();
    let host = Netns::new("vxvh");
    let (c1, c2) = (Netns::new("vxvc"), Netns::new("vxvc"));
    let mut d = Daemon::start_in(Some(&host), &["--state-dir", &dir]);
    d.cli(&["network", "create", "red", "--subnet", "10.79.0.0/24"]);
    d.port_add("r1", "red", &c1, "10.79.0.31", &["--backend", "veth"]);
    d.port_add("r2", "red", &c2, "10.79.0.32", &["--backend", "veth"]);
    assert!(c1.ping_within("10.79.0.32", LONG), "{}", d.log());
    let before = (peer_state(&c1), peer_state(&c2));

    // kill -9: nothing is torn down; the next start finds the veths by name.
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    assert!(link_exists(&host, "vxv-r1") && link_exists(&host, "vxv-r2"));
    let mut d = Daemon::start_in(Some(&host), &["--state-dir", &dir]);
    let p = port_json(&d, "r1");
    assert_eq!(
        (p["backend"].as_str(), p["host_ifname"].as_str()),
        (Some("veth"), Some("vxv-r1")),
        "{p}"
    );
    assert!(
        c1.ping_within("10.79.0.32", LONG),
        "after kill -9:\n{}",
        d.log()
    );
    assert!(counter(&d, "r1", "rx_frames") > 0);
    assert_eq!(
        (peer_state(&c1), peer_state(&c2)),
        before,
        "the containers' config changed"
    );

    // A clean stop keeps them too.
    assert!(d.terminate().success(), "{}", d.log());
    assert!(
        link_exists(&host, "vxv-r1"),
        "a clean stop with a state directory deleted the veth"
    );
    let d = Daemon::start_in(Some(&host), &["--state-dir", &dir]);
    assert!(
        c2.ping_within("10.79.0.31", LONG),
        "after a clean stop:\n{}",
        d.log()
    );
    assert_eq!((peer_state(&c1), peer_state(&c2)), before);

    // port rm still deletes a restored pair.
    d.cli(&["port", "rm", "r1"]);
    assert!(!link_exists(&host, "vxv-r1"));
}

#[test]
fn a_clean_stop_without_a_state_directory_deletes_the_veths() {
    if !can_run(&["ip", "kill"]) {
        return;
    }
    let (host, mut d) = setup(&[]);
    let c1 = Netns::new("vxvc");
    d.port_add("s1", "red", &c1, "10.79.0.41", &["--backend", "veth"]);
    assert!(link_exists(&host, "vxv-s1"));
    assert!(d.terminate().success(), "{}", d.log());
    assert!(!link_exists(&host, "vxv-s1"), "the host end stayed");
    assert!(!link_exists(&c1, "eth0"), "the container's end stayed");
}

#[test]
fn a_networks_backend_is_its_ports_default() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let host = Netns::new("vxvh");
    let d = Daemon::start_in(Some(&host), &[]);
    d.cli(&[
        "network",
        "create",
        "blue",
        "--subnet",
        "10.79.1.0/24",
        "--backend",
        "veth",
    ]);
    let (c1, c2) = (Netns::new("vxvc"), Netns::new("vxvc"));
    d.port_add("n1", "blue", &c1, "10.79.1.11", &[]);
    d.port_add("n2", "blue", &c2, "10.79.1.12", &["--backend", "tap"]);
    assert_eq!(port_json(&d, "n1")["backend"], "veth");
    assert!(port_json(&d, "n2").get("backend").is_none());
    assert!(link_exists(&host, "vxv-n1") && !link_exists(&host, "vxv-n2"));
    assert!(c1.ping_within("10.79.1.12", LONG), "{}", d.log());
}

/// The packet sockets bound to interface `dev` in `ns` (/proc/net/packet).
fn packet_sockets_on(ns: &Netns, dev: &str) -> usize {
    packet_sockets_where(ns, dev, |_| true)
}

/// The packet sockets on `dev` that receive (bound to a protocol; a
/// socket bound to protocol 0 only sends).
fn receiving_sockets_on(ns: &Netns, dev: &str) -> usize {
    packet_sockets_where(ns, dev, |proto| proto != "0000")
}

fn packet_sockets_where(ns: &Netns, dev: &str, proto: impl Fn(&str) -> bool) -> usize {
    let index = ns.ip_json(&["link", "show", "dev", dev])[0]["ifindex"]
        .as_u64()
        .unwrap();
    let out = ns.exec("cat", &["/proc/net/packet"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.get(4) == Some(&index.to_string().as_str()))
        .filter(|f| f.get(3).is_some_and(|p| proto(p)))
        .count()
}

/// Where the switch's sockets for `dev` receive: on `dev`, or on its one
/// steering interface (`steering`, the eBPF fast path), and then none on
/// `dev` itself.
fn reading_dev<'a>(ns: &Netns, dev: &'a str, steering: &'a [String]) -> &'a str {
    match steering {
        [] => dev,
        [one] => {
            assert_eq!(receiving_sockets_on(ns, dev), 0, "{steering:?}");
            one.as_str()
        }
        more => panic!("one steering interface per port or uplink, found {more:?}"),
    }
}

/// Each frame is read once, by one socket of the group: three pings, three
/// replies, no duplicates.
fn read_once(from: &Netns, dst: &str) {
    let out = from.exec("ping", &["-c", "3", "-i", "0.2", "-n", dst]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3 received") && !text.contains("DUP"),
        "{text}"
    );
}

#[test]
fn every_worker_reads_a_veth_port_through_a_fanout_group() {
    if !can_run(&["ip", "ping", "cat"]) {
        return;
    }
    let (host, d) = setup(&["--workers", "2"]);
    let (c1, c2) = (Netns::new("vxvc"), Netns::new("vxvc"));
    d.port_add("f1", "red", &c1, "10.79.0.51", &["--backend", "veth"]);
    d.port_add("f2", "red", &c2, "10.79.0.52", &["--backend", "veth"]);
    // With the eBPF fast path they are on the port's steering interface,
    // and on the host end only the socket it sends through.
    let f1 = host.ip_json(&["link", "show", "dev", "vxv-f1"])[0]["ifindex"]
        .as_u64()
        .unwrap();
    let steering: Vec<String> = support::link_names(&host.name)
        .into_iter()
        .filter(|n| n.starts_with("vxs") && n.ends_with(&format!("-{f1:x}")))
        .collect();
    let rx_dev = reading_dev(&host, "vxv-f1", &steering);
    if !steering.is_empty() {
        assert_eq!(packet_sockets_on(&host, "vxv-f1"), 1, "the sending socket");
    }
    assert_eq!(
        receiving_sockets_on(&host, rx_dev),
        2,
        "one socket per worker on {rx_dev}"
    );
    assert!(c1.ping_within("10.79.0.52", LONG), "{}", d.log());
    read_once(&c1, "10.79.0.52");
    exact_transfer(&c1, &c2, "10.79.0.52", 4 << 20);
    exact_transfer(&c2, &c1, "10.79.0.51", 4 << 20);
}

#[test]
fn every_worker_reads_an_uplink_through_a_fanout_group() {
    if !can_run(&["ip", "ping", "cat"]) {
        return;
    }
    let host = Netns::new("vxvh");
    let lan = Netns::new("vxvl");
    host.ip_ok(&[
        "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", &lan.name,
    ]);
    host.ip_ok(&["link", "set", "lan0", "up"]);
    lan.ip_ok(&["addr", "add", "10.79.2.100/24", "dev", "eth0"]);
    lan.ip_ok(&["link", "set", "eth0", "up"]);
    let d = Daemon::start_in(Some(&host), &["--workers", "2"]);
    d.cli(&[
        "network",
        "create",
        "lan",
        "--uplink",
        "lan0",
        "--subnet",
        "10.79.2.0/24",
    ]);
    let c1 = Netns::new("vxvc");
    d.port_add("u1", "lan", &c1, "10.79.2.11", &["--backend", "veth"]);
    // With the eBPF fast path the uplink's receiving sockets are on its
    // steering interface (docs/uplink.md, "The fast path"), and on the
    // uplink only the socket it sends through.
    let steering = support::uplink_steering_links(&host.name);
    let rx_dev = reading_dev(&host, "lan0", &steering);
    assert_eq!(
        receiving_sockets_on(&host, rx_dev),
        2,
        "one receiving socket per worker on {rx_dev}"
    );
    assert!(c1.ping_within("10.79.2.100", LONG), "{}", d.log());
    read_once(&lan, "10.79.2.11");
    exact_transfer(&lan, &c1, "10.79.2.11", 4 << 20);
}

#[test]
fn two_daemons_in_one_namespace_give_the_same_port_names_with_their_own_prefixes() {
    if !can_run(&["ip", "ping", "kill"]) {
        return;
    }
    let state = support::TempDir::new("vxsw-veth-state-");
    let dir = state.0.to_str().unwrap().to_string();
    let host = Netns::new("vxvh");
    let a = Daemon::start_in(Some(&host), &[]);
    let mut b = Daemon::start_in(Some(&host), &["--veth-prefix", "vxb-", "--state-dir", &dir]);
    let (a1, a2, b1, b2) = (
        Netns::new("vxvc"),
        Netns::new("vxvc"),
        Netns::new("vxvc"),
        Netns::new("vxvc"),
    );
    a.cli(&["network", "create", "red", "--subnet", "10.79.5.0/24"]);
    b.cli(&["network", "create", "red", "--subnet", "10.79.6.0/24"]);
    // Both daemons have ports p1 and p2.
    a.port_add("p1", "red", &a1, "10.79.5.11", &["--backend", "veth"]);
    a.port_add("p2", "red", &a2, "10.79.5.12", &["--backend", "veth"]);
    b.port_add("p1", "red", &b1, "10.79.6.11", &["--backend", "veth"]);
    b.port_add("p2", "red", &b2, "10.79.6.12", &["--backend", "veth"]);
    assert_eq!(port_json(&a, "p1")["host_ifname"], "vxv-p1");
    assert_eq!(port_json(&b, "p1")["host_ifname"], "vxb-p1");
    assert!(link_exists(&host, "vxv-p2") && link_exists(&host, "vxb-p2"));
    assert!(a1.ping_within("10.79.5.12", LONG), "{}", a.log());
    assert!(b1.ping_within("10.79.6.12", LONG), "{}", b.log());
    assert!(counter(&a, "p1", "rx_frames") > 0 && counter(&b, "p1", "rx_frames") > 0);

    // A third daemon with the default prefix collides with the first, and
    // the error says what to do.
    let c = Daemon::start_in(Some(&host), &[]);
    c.cli(&["network", "create", "red", "--subnet", "10.79.7.0/24"]);
    let c1 = Netns::new("vxvc");
    let out = c.cli_raw(&[
        "port",
        "add",
        "p1",
        "--network",
        "red",
        "--netns",
        &c1.path(),
        "--backend",
        "veth",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("vxv-p1") && err.contains("--veth-prefix"),
        "{err}"
    );
    assert!(
        a1.ping_within("10.79.5.12", LONG),
        "the failed add broke a's port"
    );

    // A restart finds b's host ends under the names they were made with,
    // whatever the new start's prefix.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let b = Daemon::start_in(Some(&host), &["--state-dir", &dir]);
    assert_eq!(port_json(&b, "p1")["host_ifname"], "vxb-p1");
    assert!(b2.ping_within("10.79.6.11", LONG), "{}", b.log());
    b.cli(&["port", "rm", "p1"]);
    assert!(!link_exists(&host, "vxb-p1") && link_exists(&host, "vxv-p1"));

    // A prefix that cannot start an interface name stops the start.
    let (status, stderr) = Daemon::start_failing(&["--veth-prefix", "much-too-long-"]);
    assert!(!status.success());
    assert!(
        stderr.contains("--veth-prefix") && stderr.contains("1 to 8"),
        "{stderr}"
    );
}

/// Reads what a non-blocking socket has queued: the frame's length, or
/// None when nothing is there.
fn read_one(fd: &std::os::fd::OwnedFd) -> Option<usize> {
    use std::io::Read;
    let mut f = std::fs::File::from(fd.try_clone().unwrap());
    let mut buf = vec![0u8; 70_000];
    match f.read(&mut buf) {
        Ok(n) => Some(n),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(e) => panic!("read the packet socket: {e}"),
    }
}

/// A restarted daemon re-opens a kept veth whose fast-path tc program
/// still forwards: its sockets must queue nothing until they have the
/// filter they keep (the fast path's hides the frames that program takes),
/// or the switch would forward those frames a second time. The window
/// itself is microseconds wide, so the test checks what closes it: a
/// socket fresh from `create_veth` reads nothing, whatever arrives, until
/// `open_to_switch` (or the fast path's filter) is set.
#[test]
fn a_veth_ports_sockets_read_nothing_until_their_filter_is_set() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let host = Netns::new("vxvh");
    let c = Netns::new("vxvc");
    let spec = vxswitch::ports::TapSpec {
        netns: c.handle(),
        ifname: "eth0".into(),
        mac: None,
        mtu: None,
        addrs: vec!["10.79.9.2/24".parse().unwrap()],
        gateway: None,
        vnet_hdr: true,
        queues: 1,
    };
    let v = host
        .enter(|| vxswitch::ports::veth::create_veth(&spec, "vxv-", "w1", false))
        .unwrap_or_else(|e| panic!("create_veth: {e}"));
    // Unanswered pings: ARP broadcasts out of the container's end.
    assert!(!c.ping("10.79.9.3"));
    assert_eq!(
        read_one(&v.fd),
        None,
        "the socket read a frame before its filter"
    );
    vxswitch::ports::veth::open_to_switch(&v.host, &[&v.fd]).unwrap();
    assert!(!c.ping("10.79.9.3"));
    assert!(
        wait_until(LONG, || read_one(&v.fd).is_some()),
        "with the switch's filter the socket reads the container's frames"
    );
}
