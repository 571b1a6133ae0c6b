//! What a hostile container can no longer do, tried as one would: real
//! namespaces, TAPs the daemon made, raw frames from Python's AF_PACKET
//! sockets (what CAP_NET_RAW, Docker's default, allows). docs/security.md
//! describes each defence. Needs root (CI runs as root).

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::{can_run, cmd, find_port, Daemon, Netns};

const WAIT: Duration = Duration::from_secs(5);

/// The MAC of `dev` in `ns`.
fn mac_of(ns: &Netns, dev: &str) -> String {
    let v = ns.ip_json(&["link", "show", "dev", dev]);
    v[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no address for {dev}: {v}"))
        .to_string()
}

/// A drop counter of port `name` in `vxswitch stats --json`.
fn drops(d: &Daemon, name: &str, why: &str) -> u64 {
    let stats = d.json(&["stats"]);
    find_port(&stats, name)["drops"][why].as_u64().unwrap_or(0)
}

/// A counter of port `name` in `vxswitch stats --json`.
fn counter(d: &Daemon, name: &str, key: &str) -> u64 {
    let stats = d.json(&["stats"]);
    find_port(&stats, name)[key].as_u64().unwrap_or(0)
}

/// The attacker: for `secs` seconds, sends a broadcast from `victim_mac`
/// every 5 ms on eth0 and counts the IPv4 frames it receives for
/// `victim_mac`; prints that count.
const SPOOFER: &str = r#"
import socket, sys, time
victim = bytes.fromhex(sys.argv[1].replace(":", ""))
secs = float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 0))
s.setblocking(False)
frame = b"\xff" * 6 + victim + b"\x88\xb5" + b"spoof" * 10
stolen = 0
end = time.time() + secs
while time.time() < end:
    s.send(frame)
    t = time.time() + 0.005
    while time.time() < t:
        try:
            data, addr = s.recvfrom(2048)
        except BlockingIOError:
            time.sleep(0.0005)
            continue
        # addr[2] is the packet type: 4 is our own frame going out.
        if addr[2] != 4 and data[0:6] == victim and data[12:14] == b"\x08\x00":
            stolen += 1
print(stolen, flush=True)
"#;

/// A container with CAP_NET_RAW sends with its neighbour's MAC as the
/// source. Before port security the switch learned the victim's MAC on the
/// attacker's port and sent it the victim's unicast; now the spoofed
/// frames are dropped and counted, the attacker receives none of the
/// victim's traffic, and the ping between the two others keeps working.
#[test]
fn a_container_spoofing_its_neighbours_mac_receives_none_of_its_traffic() {
    if !can_run(&["ip", "ping", "python3"]) {
        return;
    }
    let d = Daemon::start(&[]);
    d.cli(&["network", "create", "red", "--subnet", "10.91.1.0/24"]);
    let (victim, peer, evil) = (Netns::new("vxv"), Netns::new("vxp"), Netns::new("vxe"));
    d.port_add("victim", "red", &victim, "10.91.1.11/24", &[]);
    d.port_add("peer", "red", &peer, "10.91.1.12/24", &[]);
    d.port_add("evil", "red", &evil, "10.91.1.13/24", &[]);
    assert!(peer.ping_within("10.91.1.11", WAIT), "{}", d.log());
    let victim_mac = mac_of(&victim, "eth0");

    let spoofer = cmd(
        "ip",
        &[
            "netns",
            "exec",
            &evil.name,
            "python3",
            "-c",
            SPOOFER,
            &victim_mac,
            "4",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start the spoofer");
    // While it spoofs: the spoofed frames are counted ...
    support::wait_for(WAIT, "spoofed_src to move on evil's port", || {
        drops(&d, "evil", "spoofed_src") > 0
    });
    // ... and the peer's pings to the victim all come back.
    let ping = peer.exec(
        "ping",
        &["-c", "10", "-i", "0.2", "-W", "1", "-n", "-q", "10.91.1.11"],
    );
    let out = spoofer.wait_with_output().expect("the spoofer ends");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "spoofer: {printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&ping.stdout);
    assert!(
        ping.status.success() && summary.contains(" 0% packet loss"),
        "peer -> victim pings were lost while evil spoofed:\n{summary}"
    );
    let stolen: u64 = printed
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{printed}"));
    assert_eq!(stolen, 0, "evil received the victim's unicast");
    let spoofed = drops(&d, "evil", "spoofed_src");
    assert!(spoofed >= 100, "only {spoofed} spoofed frames counted");
    assert_eq!(drops(&d, "victim", "spoofed_src"), 0);
    // The victim's MAC is where the victim is.
    let fdb = d.json(&["fdb", "show"]);
    let row = fdb
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["mac"] == victim_mac.as_str()))
        .unwrap_or_else(|| panic!("no entry for {victim_mac}: {fdb}"));
    assert_eq!(row["port"], "victim", "{row}");
    // `stats` says so in its table too.
    let text = d.cli(&["stats"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("  evil: drops") && l.contains("spoofed_src=")),
        "{text}"
    );
}

/// Sends `count` broadcasts from random source MACs on eth0.
const FLOODER: &str = r#"
import os, socket, sys, time
count = int(sys.argv[1])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
tail = b"\x88\xb5" + b"flood" * 10
sent = 0
while sent < count:
    src = bytearray(os.urandom(6))
    src[0] = (src[0] & 0xfe) | 0x02
    try:
        s.send(b"\xff" * 6 + bytes(src) + tail)
        sent += 1
    except OSError:
        # The TAP's queue is full (ENOBUFS): let the switch catch up.
        time.sleep(0.001)
print(sent, flush=True)
"#;

/// A container whose port has no port security (it carries a bridge of
/// its own) floods 100,000 random source MACs. Its network's FDB budget
/// fills; the table does not: another network still learns its two
/// containers and delivers their unicast without flooding it to a third.
#[test]
fn a_mac_flood_in_one_network_leaves_another_learning() {
    if !can_run(&["ip", "ping", "python3"]) {
        return;
    }
    // A table of 3000 entries: with the old global budget, the flood took
    // every slot.
    let d = Daemon::start(&["--fdb-max-entries", "3000", "--fdb-max-per-port", "3000"]);
    d.cli(&[
        "network",
        "create",
        "red",
        "--subnet",
        "10.91.2.0/24",
        "--fdb-max-entries",
        "1000",
    ]);
    d.cli(&["network", "create", "blue", "--subnet", "10.91.3.0/24"]);
    let flooder = Netns::new("vxf");
    d.port_add(
        "flooder",
        "red",
        &flooder,
        "10.91.2.11/24",
        &["--no-port-security"],
    );
    let blue: Vec<Netns> = (0..3).map(|_| Netns::new("vxb")).collect();
    for (i, c) in blue.iter().enumerate() {
        // No IPv6 neighbour discovery or MLD: the only multicast that
        // reaches b2 during the pings would be theirs.
        c.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
        c.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
        d.port_add(
            &format!("b{i}"),
            "blue",
            c,
            &format!("10.91.3.{}/24", 11 + i),
            &[],
        );
    }
    let out = flooder.exec("python3", &["-c", FLOODER, "100000"]);
    assert!(
        out.status.success(),
        "flooder: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = d.json(&["stats"]);
    let red = stats["networks"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["network"] == "red"))
        .unwrap_or_else(|| panic!("no red in {stats}"));
    assert_eq!(red["entries"], 1000, "{red}");
    assert_eq!(red["max"], 1000, "{red}");
    // The TAP may drop some of the flood before the switch reads it; what
    // reached the switch beyond the budget was refused.
    let refused = red["refused"].as_u64().unwrap_or(0);
    assert!(refused > 10_000, "{red}");
    assert_eq!(
        find_port(&stats, "flooder")["learn_refused_net_limit"],
        refused,
        "{stats}"
    );
    let table = &stats["fdb"];
    assert_eq!(
        table["refused_table_full"], 0,
        "the table never filled: {table}"
    );
    // Blue learns: b0 and b1 talk, and once the ARP broadcast is past,
    // their unicast does not reach b2.
    assert!(blue[0].ping_within("10.91.3.12", WAIT), "{}", d.log());
    let before = counter(&d, "b2", "tx_frames");
    let ping = blue[0].exec(
        "ping",
        &["-c", "10", "-i", "0.05", "-n", "-q", "10.91.3.12"],
    );
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let after = counter(&d, "b2", "tx_frames");
    assert_eq!(after, before, "b0 -> b1 unicast was flooded to b2");
    let fdb = d.json(&["fdb", "show", "--network", "blue"]);
    let rows = fdb.as_array().expect("a list");
    for port in ["b0", "b1"] {
        assert!(
            rows.iter().any(|r| r["port"] == port),
            "blue did not learn {port}: {fdb}"
        );
    }
    // The text says which network's budget refused what.
    let text = d.cli(&["stats"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("  fdb red: 1000 of 1000 entries, refused ")),
        "{text}"
    );
}

/// A container that carries its own bridge: eth0 (the switch's port) and a
/// veth to an inner namespace in a bridge. With port security off, the
/// inner host's MAC passes through the port; with it on (the default), the
/// same frames are spoofed_src and the inner host is unreachable.
#[test]
fn a_port_without_port_security_bridges_the_macs_behind_it() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let d = Daemon::start(&[]);
    d.cli(&["network", "create", "red", "--subnet", "10.91.4.0/24"]);
    let peer = Netns::new("vxp");
    d.port_add("peer", "red", &peer, "10.91.4.11/24", &[]);
    // Kept until the end: a namespace that goes takes its port with it.
    let mut keep = Vec::new();
    for (n, (port, open)) in [("open", true), ("closed", false)].into_iter().enumerate() {
        let host = Netns::new("vxh");
        let inner = Netns::new("vxi");
        let extra: &[&str] = if open { &["--no-port-security"] } else { &[] };
        let host_ip = format!("10.91.4.{}/24", 21 + n);
        d.port_add(port, "red", &host, &host_ip, extra);
        // Inside the container: br0 over eth0 and a veth to the inner host.
        host.ip_ok(&["link", "add", "br0", "type", "bridge"]);
        host.ip_ok(&["link", "set", "eth0", "master", "br0"]);
        host.ip_ok(&[
            "link",
            "add",
            "veth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &inner.name,
        ]);
        host.ip_ok(&["link", "set", "veth0", "master", "br0", "up"]);
        host.ip_ok(&["link", "set", "br0", "up"]);
        let inner_ip = format!("10.91.4.{}", 31 + n);
        inner.ip_ok(&["addr", "add", &format!("{inner_ip}/24"), "dev", "eth0"]);
        inner.ip_ok(&["link", "set", "eth0", "up"]);
        if open {
            assert!(
                peer.ping_within(&inner_ip, WAIT),
                "the MAC behind the open port is unreachable\n{}",
                d.log()
            );
            assert_eq!(drops(&d, port, "spoofed_src"), 0);
        } else {
            assert!(
                !peer.ping(&inner_ip),
                "the closed port bridged a foreign MAC"
            );
            support::wait_for(WAIT, "spoofed_src on the closed port", || {
                drops(&d, port, "spoofed_src") > 0
            });
        }
        keep.push((host, inner));
    }
    let ports = d.json(&["port", "ls"]);
    let security = |name: &str| {
        ports
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == name))
            .map(|p| p["port_security"].clone())
    };
    assert_eq!(security("open"), Some(false.into()), "{ports}");
    assert_eq!(security("closed"), Some(true.into()), "{ports}");
}

/// The IP source guard: a container that adds an address it was not given
/// cannot send from it; from its own address it can.
#[test]
fn a_guarded_container_sends_only_from_its_address() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let d = Daemon::start(&[]);
    d.cli(&["network", "create", "red", "--subnet", "10.91.5.0/24"]);
    let (peer, guarded) = (Netns::new("vxp"), Netns::new("vxg"));
    d.port_add("peer", "red", &peer, "10.91.5.11/24", &[]);
    d.port_add("guarded", "red", &guarded, "10.91.5.12/24", &["--ip-guard"]);
    assert!(guarded.ping_within("10.91.5.11", WAIT), "{}", d.log());
    guarded.ip_ok(&["addr", "add", "10.91.5.99/24", "dev", "eth0"]);
    let stolen = guarded.exec(
        "ping",
        &[
            "-c",
            "2",
            "-W",
            "1",
            "-I",
            "10.91.5.99",
            "-n",
            "-q",
            "10.91.5.11",
        ],
    );
    assert!(
        !stolen.status.success(),
        "a ping from a foreign address came back"
    );
    support::wait_for(WAIT, "spoofed_ip on the guarded port", || {
        drops(&d, "guarded", "spoofed_ip") > 0
    });
    assert!(
        guarded.ping("10.91.5.11"),
        "its own address stopped working"
    );
}
