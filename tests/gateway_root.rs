//! The gateway port of a network: containers reach the host's gateway
//! address (`--gateway-port host`), through the host's routing and NAT the
//! outside, or get ARP and ping answered by the switch itself
//! (`--gateway-port switch`), also from a daemon without capabilities.
//! The daemon runs in a test namespace standing in for the host. Needs
//! root (CI runs as root).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use support::{can_run, link_names, run, wait_until, Daemon, Netns, Proc};
use vxswitch::ports::{netns::run_in, Netns as Ns};

const WAIT: Duration = Duration::from_secs(10);

/// The network `name` as `network ls --json` reports it.
fn network(d: &Daemon, name: &str) -> serde_json::Value {
    let ls = d.json(&["network", "ls"]);
    ls.as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == name))
        .unwrap_or_else(|| panic!("no network {name} in {ls}"))
        .clone()
}

/// The `switch` gateway counters of `network` from `stats --json`.
fn gateway_stats(d: &Daemon, network: &str) -> serde_json::Value {
    let s = d.json(&["stats"]);
    s["gateways"]
        .as_array()
        .and_then(|a| a.iter().find(|g| g["network"] == network))
        .unwrap_or_else(|| panic!("no gateway row for {network} in {s}"))["stats"]
        .clone()
}

/// The link-layer address `ns` has for `ip` in its neighbour table, if resolved.
fn neighbor(ns: &Netns, ip: &str) -> Option<String> {
    let out = run("ip", &["-n", &ns.name, "-j", "neigh", "show", ip]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v.as_array()?.first()?["lladdr"].as_str().map(String::from)
}

#[test]
fn host_gateway_port_reaches_the_host_and_goes_with_the_network() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let host = Netns::new("vxgh");
    let c1 = Netns::new("vxgc");
    let d = Daemon::start_in(Some(&host), &[]);
    let out = d.cli(&[
        "network",
        "create",
        "lab",
        "--subnet",
        "10.88.0.0/24",
        "--gateway",
        "10.88.0.1",
        "--gateway-port",
        "host",
    ]);
    assert!(
        out.contains("gateway 10.88.0.1 on host interface vxgw-lab"),
        "{out}"
    );
    let n = network(&d, "lab");
    assert_eq!(n["gateway_port"], "host");
    assert_eq!(n["gateway_ifname"], "vxgw-lab");

    // The host side: a TAP with the gateway address, up, the network's MTU.
    let link = run(
        "ip",
        &["-n", &host.name, "-j", "addr", "show", "dev", "vxgw-lab"],
    );
    let link: serde_json::Value = serde_json::from_str(&link).unwrap();
    let link = &link[0];
    assert_eq!(link["mtu"], 1500, "{link}");
    assert!(
        link["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{link}"
    );
    assert!(
        link["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == "10.88.0.1" && a["prefixlen"] == 24),
        "{link}"
    );
    assert_eq!(
        link["address"], n["gateway_mac"],
        "network ls reports the TAP's MAC"
    );

    d.port_add("c1", "lab", &c1, "10.88.0.11/24", &[]);
    // A container reaches the host's gateway address: the host kernel answers.
    assert!(
        c1.ping_within("10.88.0.1", WAIT),
        "no reply from the host gateway\n{}",
        d.log()
    );
    // And a service listening on it in the host's namespace.
    let addr: SocketAddr = "10.88.0.1:5302".parse().unwrap();
    let listener = run_in(&Ns::named(&host.name), || TcpListener::bind(addr))
        .unwrap()
        .expect("bind the gateway address in the host namespace");
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"host here").unwrap();
        (peer, buf)
    });
    let mut s = run_in(&Ns::named(&c1.name), || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("connect from the container to {addr}: {e}"));
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"hello").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (peer, got) = server.join().unwrap();
    assert_eq!((&got, reply.as_str()), (b"hello", "host here"));
    assert_eq!(
        peer.ip().to_string(),
        "10.88.0.11",
        "the host sees the container's own address"
    );

    // It is a port of the network, marked as its gateway, with counters.
    let ports = d.json(&["port", "ls"]);
    let gw = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "vxgw-lab")
        .unwrap_or_else(|| panic!("no gateway port in {ports}"));
    assert_eq!(
        (&gw["kind"], &gw["gateway"]),
        (&"created".into(), &true.into())
    );
    let stats = d.json(&["stats", "vxgw-lab"]);
    assert!(
        support::find_port(&stats, "vxgw-lab")["rx_frames"]
            .as_u64()
            .unwrap()
            > 0,
        "{stats}"
    );
    // port rm refuses it and says what removes it.
    let out = d.cli_raw(&["port", "rm", "vxgw-lab"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'vxswitch network rm lab'"), "{err}");

    // It goes with the network.
    let out = d.cli(&["network", "rm", "lab", "--force"]);
    assert_eq!(out, "network lab removed with its ports c1\n");
    assert!(
        wait_until(WAIT, || !link_names(&host.name)
            .iter()
            .any(|l| l == "vxgw-lab")),
        "vxgw-lab outlived its network: {:?}",
        link_names(&host.name)
    );
}

#[test]
fn host_gateway_port_goes_when_the_daemon_stops_and_refuses_taken_names() {
    if !can_run(&["ip", "kill"]) {
        return;
    }
    let host = Netns::new("vxgh");
    run(
        "ip",
        &[
            "-n",
            &host.name,
            "tuntap",
            "add",
            "dev",
            "vxgw-taken",
            "mode",
            "tap",
        ],
    );
    let mut d = Daemon::start_in(Some(&host), &[]);
    let out = d.cli_raw(&[
        "network",
        "create",
        "taken",
        "--subnet",
        "10.88.1.0/24",
        "--gateway",
        "10.88.1.1",
        "--gateway-port",
        "host",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vxgw-taken")
            && err.contains("already exists")
            && err.contains("--gateway-ifname"),
        "{err}"
    );
    assert!(d.json(&["network", "ls"]).as_array().unwrap().is_empty());
    // With a name of one's own; removed when the daemon stops.
    d.cli(&[
        "network",
        "create",
        "taken",
        "--subnet",
        "10.88.1.0/24",
        "--gateway",
        "10.88.1.1",
        "--gateway-port",
        "host",
        "--gateway-ifname",
        "gw-taken",
        "--mtu",
        "1400",
    ]);
    let links = link_names(&host.name);
    assert!(links.iter().any(|l| l == "gw-taken"), "{links:?}");
    // A second host gateway on an overlapping subnet is refused whole.
    let out = d.cli_raw(&[
        "network",
        "create",
        "over",
        "--subnet",
        "10.88.0.0/16",
        "--gateway",
        "10.88.0.1",
        "--gateway-port",
        "host",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("overlaps subnet 10.88.1.0/24 of network \"taken\""),
        "{err}"
    );
    assert!(!link_names(&host.name).iter().any(|l| l == "vxgw-over"));
    let mtu = run("ip", &["-n", &host.name, "-j", "link", "show", "gw-taken"]);
    assert!(mtu.contains("\"mtu\":1400"), "{mtu}");
    assert!(d.terminate().success());
    assert!(
        wait_until(WAIT, || !link_names(&host.name)
            .iter()
            .any(|l| l == "gw-taken")),
        "the gateway TAP outlived the daemon"
    );
}

/// The host side of docs/gateway.md's "Outbound traffic", as a user types
/// it: (command, arguments) run in the host's namespace.
type Rules = &'static [(&'static str, &'static [&'static str])];

const NFT_RULES: Rules = &[
    ("sysctl", &["-w", "net.ipv4.ip_forward=1"]),
    ("nft", &["add", "table", "ip", "nat"]),
    (
        "nft",
        &[
            "add",
            "chain",
            "ip",
            "nat",
            "postrouting",
            "{ type nat hook postrouting priority srcnat; }",
        ],
    ),
    (
        "nft",
        &[
            "add",
            "rule",
            "ip",
            "nat",
            "postrouting",
            "ip",
            "saddr",
            "10.88.2.0/24",
            "oifname",
            "!=",
            "vxgw-lab",
            "masquerade",
        ],
    ),
];

const IPTABLES_RULES: Rules = &[
    ("sysctl", &["-w", "net.ipv4.ip_forward=1"]),
    (
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "10.88.2.0/24",
            "!",
            "-o",
            "vxgw-lab",
            "-j",
            "MASQUERADE",
        ],
    ),
];

#[test]
fn host_gateway_routes_outside_with_the_documented_nft_rule() {
    if can_run(&["ip", "ping", "nft", "sysctl"]) {
        reaches_outside_through_the_host(NFT_RULES);
    }
}

#[test]
fn host_gateway_routes_outside_with_the_documented_iptables_rule() {
    if can_run(&["ip", "ping", "iptables", "sysctl"]) {
        reaches_outside_through_the_host(IPTABLES_RULES);
    }
}

/// container --(switch)-- host --(veth)-- outside, where "outside" has no
/// route back to the containers' subnet: only with forwarding and the
/// masquerade rule do replies come back.
fn reaches_outside_through_the_host(rules: Rules) {
    let host = Netns::new("vxgh");
    let outside = Netns::new("vxgo");
    let c1 = Netns::new("vxgc");
    // Interface names are at most 15 bytes: keep the unique tail.
    let (h, o) = (
        tail(&support::unique("vxgv")),
        tail(&support::unique("vxgv")),
    );
    run(
        "ip",
        &[
            "-n",
            &host.name,
            "link",
            "add",
            &h,
            "type",
            "veth",
            "peer",
            "name",
            &o,
            "netns",
            &outside.name,
        ],
    );
    run(
        "ip",
        &[
            "-n",
            &host.name,
            "addr",
            "add",
            "198.51.100.1/24",
            "dev",
            &h,
        ],
    );
    run("ip", &["-n", &host.name, "link", "set", &h, "up"]);
    run(
        "ip",
        &[
            "-n",
            &outside.name,
            "addr",
            "add",
            "198.51.100.2/24",
            "dev",
            &o,
        ],
    );
    run("ip", &["-n", &outside.name, "link", "set", &o, "up"]);

    let d = Daemon::start_in(Some(&host), &[]);
    d.cli(&[
        "network",
        "create",
        "lab",
        "--subnet",
        "10.88.2.0/24",
        "--gateway",
        "10.88.2.1",
        "--gateway-port",
        "host",
    ]);
    d.port_add("c1", "lab", &c1, "10.88.2.11/24", &[]);
    for (cmd, args) in rules {
        let out = host.exec(cmd, args);
        assert!(
            out.status.success(),
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        c1.ping_within("198.51.100.2", WAIT),
        "the container did not reach the outside through the host gateway\n{}",
        d.log()
    );
}

/// The last 15 bytes of a unique name (the PID and counter are at its end).
fn tail(s: &str) -> String {
    s[s.len().saturating_sub(15)..].to_string()
}

#[test]
fn switch_gateway_answers_arp_and_ping_for_its_address_only() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let c1 = Netns::new("vxgc");
    let d = Daemon::start(&[]);
    let out = d.cli(&[
        "network",
        "create",
        "sw",
        "--subnet",
        "10.89.0.0/24",
        "--gateway",
        "10.89.0.1",
        "--gateway-port",
        "switch",
    ]);
    assert!(
        out.contains("gateway 10.89.0.1 answered by the switch as"),
        "{out}"
    );
    let gw_mac = network(&d, "sw")["gateway_mac"]
        .as_str()
        .unwrap()
        .to_string();
    d.port_add("c1", "sw", &c1, "10.89.0.11/24", &[]);
    assert!(
        c1.ping_within("10.89.0.1", WAIT),
        "the switch did not answer ping for its gateway\n{}",
        d.log()
    );
    assert_eq!(neighbor(&c1, "10.89.0.1").as_deref(), Some(gw_mac.as_str()));
    let before = gateway_stats(&d, "sw");
    assert!(
        before["neighbor_replies"].as_u64().unwrap() >= 1,
        "{before}"
    );
    assert!(before["echo_replies"].as_u64().unwrap() >= 1, "{before}");

    // An address nobody has: the ARP request reaches the gateway, which
    // ignores it; no reply, no neighbour entry.
    assert!(!c1.ping("10.89.0.99"));
    assert_eq!(neighbor(&c1, "10.89.0.99"), None);
    let after = gateway_stats(&d, "sw");
    assert!(
        after["ignored"].as_u64() > before["ignored"].as_u64(),
        "{before} -> {after}"
    );
    // Traffic the gateway does not answer is counted: a UDP datagram to it,
    // and a ping to be routed elsewhere (the switch gateway does not route).
    run_in(&Ns::named(&c1.name), || {
        UdpSocket::bind("10.89.0.11:0").and_then(|s| s.send_to(b"x", "10.89.0.1:9"))
    })
    .unwrap()
    .unwrap();
    assert!(!c1.ping("192.0.2.7"));
    assert!(
        wait_until(WAIT, || gateway_stats(&d, "sw")["unanswered"].as_u64()
            >= Some(after["unanswered"].as_u64().unwrap() + 2)),
        "{}",
        gateway_stats(&d, "sw")
    );
    // The human view shows the same.
    let text = d.cli(&["stats"]);
    assert!(text.contains("gateway vxgw-sw (sw, 10.89.0.1 "), "{text}");
}

#[test]
fn switch_gateway_answers_ipv6_neighbor_discovery_and_ping() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let c1 = Netns::new("vxgc");
    let d = Daemon::start(&[]);
    d.cli(&[
        "network",
        "create",
        "sw6",
        "--subnet",
        "fd00:89::/64",
        "--gateway",
        "fd00:89::1",
        "--gateway-port",
        "switch",
    ]);
    let gw_mac = network(&d, "sw6")["gateway_mac"]
        .as_str()
        .unwrap()
        .to_string();
    d.port_add("c1", "sw6", &c1, "fd00:89::11/64", &[]);
    // ping_within covers the container's duplicate address detection.
    assert!(
        c1.ping_within("fd00:89::1", WAIT),
        "the switch did not answer ping6 for its gateway\n{}",
        d.log()
    );
    assert_eq!(
        neighbor(&c1, "fd00:89::1").as_deref(),
        Some(gw_mac.as_str())
    );
}

#[test]
fn switch_gateway_works_for_a_daemon_without_capabilities() {
    if !can_run(&["ip", "ping", "setpriv"]) {
        return;
    }
    // The lab case: pre-created TAPs, a daemon with no capabilities at all.
    let host = Netns::new("vxgh");
    let c1 = Netns::new("vxgc");
    run(
        "ip",
        &[
            "-n", &host.name, "tuntap", "add", "dev", "lab0", "mode", "tap",
        ],
    );
    let dir = support::TempDir::new("vxsw-gw-");
    let sock = dir.0.join("s.sock");
    let log = std::fs::File::create(dir.0.join("log")).unwrap();
    let daemon = Proc(
        support::cmd(
            "ip",
            &["netns", "exec", &host.name, "setpriv", "--inh-caps=-all"],
        )
        .args(["--ambient-caps=-all", "--bounding-set=-all"])
        .args([support::BIN, "--socket", sock.to_str().unwrap(), "daemon"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap(),
    );
    let cli = |args: &[&str]| {
        let mut all = vec!["--socket", sock.to_str().unwrap()];
        all.extend_from_slice(args);
        support::run_raw(support::BIN, &all)
    };
    let log_text = || std::fs::read_to_string(dir.0.join("log")).unwrap_or_default();
    assert!(
        wait_until(WAIT, || cli(&["ping"]).status.success()),
        "capability-less daemon did not start: {}",
        log_text()
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.0.id())).unwrap();
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");

    let create = |kind: &str| {
        cli(&[
            "network",
            "create",
            "lab",
            "--subnet",
            "10.90.0.0/24",
            "--gateway",
            "10.90.0.1",
            "--gateway-port",
            kind,
        ])
    };
    // A host port needs CAP_NET_ADMIN; the error says so and names the way out.
    let out = create("host");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CAP_NET_ADMIN") && err.contains("--gateway-port switch"),
        "{err}"
    );
    let out = create("switch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["port", "add", "lab0", "--network", "lab", "--existing"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run(
        "ip",
        &["-n", &host.name, "link", "set", "lab0", "netns", &c1.name],
    );
    run(
        "ip",
        &[
            "-n",
            &c1.name,
            "addr",
            "add",
            "10.90.0.11/24",
            "dev",
            "lab0",
        ],
    );
    run("ip", &["-n", &c1.name, "link", "set", "lab0", "up"]);
    assert!(
        c1.ping_within("10.90.0.1", WAIT),
        "no reply from the switch gateway of a capability-less daemon\n{}",
        log_text()
    );
    drop(daemon);
}

#[test]
fn host_gateway_port_deleted_underneath_is_forgotten() {
    if !can_run(&["ip"]) {
        return;
    }
    let host = Netns::new("vxgh");
    let d = Daemon::start_in(Some(&host), &[]);
    d.cli(&[
        "network",
        "create",
        "lab",
        "--subnet",
        "10.88.3.0/24",
        "--gateway",
        "10.88.3.1",
        "--gateway-port",
        "host",
    ]);
    run("ip", &["-n", &host.name, "link", "del", "vxgw-lab"]);
    assert!(
        wait_until(WAIT, || d.port_names().is_empty()),
        "the deleted gateway port is still listed: {:?}",
        d.port_names()
    );
    let n = network(&d, "lab");
    assert_eq!(n["gateway_port"], "host");
    assert!(n.get("gateway_ifname").is_none(), "{n}");
    assert!(
        d.log()
            .contains("gateway port vxgw-lab (network lab) went away"),
        "{}",
        d.log()
    );
    // The network is still there, and goes without --force.
    assert_eq!(d.cli(&["network", "rm", "lab"]), "network lab removed\n");
}
