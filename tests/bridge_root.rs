//! One host, real containers: network namespaces with TAP ports created by
//! the daemon, traffic from `ping` and `iperf3`. Needs root (CI runs as root).

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use support::capture::Capture;
use support::{can_run, Daemon, Netns, Proc};

/// A daemon with one network and `n` containers on it, 10.77.x.(11+i)/24.
struct Lan {
    daemon: Daemon,
    containers: Vec<Netns>,
}

fn lan(subnet_octet: u8, n: usize) -> Lan {
    let daemon = Daemon::start(&[]);
    daemon.cli(&[
        "network",
        "create",
        "red",
        "--subnet",
        &format!("10.77.{subnet_octet}.0/24"),
        "--gateway",
        &format!("10.77.{subnet_octet}.1"),
        "--gateway-port",
        "none",
    ]);
    let containers: Vec<Netns> = (0..n).map(|_| Netns::new("vxc")).collect();
    for (i, c) in containers.iter().enumerate() {
        let ip = format!("10.77.{subnet_octet}.{}/24", 11 + i);
        daemon.port_add(&format!("c{i}"), "red", c, &ip, &[]);
    }
    Lan { daemon, containers }
}

fn ip_of(octet: u8, i: usize) -> String {
    format!("10.77.{octet}.{}", 11 + i)
}

#[test]
fn three_containers_all_ping_each_other() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let l = lan(1, 3);
    for (i, c) in l.containers.iter().enumerate() {
        for j in 0..3 {
            if i != j {
                assert!(
                    c.ping_within(&ip_of(1, j), Duration::from_secs(5)),
                    "c{i} cannot ping c{j}\n{}",
                    l.daemon.log()
                );
            }
        }
    }
    // The FDB lists the three container MACs, each on its own port.
    let fdb = l.daemon.json(&["fdb", "show"]);
    let rows = fdb
        .as_array()
        .or_else(|| fdb["entries"].as_array())
        .expect("fdb show --json is a list");
    for i in 0..3 {
        let port = format!("c{i}");
        assert!(
            rows.iter().any(|r| r["port"] == port.as_str()),
            "no FDB entry on {port}: {fdb}"
        );
    }
    // And `stats` counted frames both ways on every port.
    let stats = l.daemon.json(&["stats"]);
    for i in 0..3 {
        let p = support::find_port(&stats, &format!("c{i}"));
        for k in ["rx_frames", "tx_frames"] {
            assert!(p[k].as_u64().unwrap_or(0) > 0, "c{i} {k} is 0: {stats}");
        }
    }
}

#[test]
fn two_networks_are_isolated() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let daemon = Daemon::start(&[]);
    daemon.cli(&["network", "create", "red", "--subnet", "10.78.0.0/24"]);
    daemon.cli(&["network", "create", "blue", "--subnet", "10.78.0.0/24"]);
    let (r1, r2, b1) = (Netns::new("vxr"), Netns::new("vxr"), Netns::new("vxb"));
    daemon.port_add("r1", "red", &r1, "10.78.0.11/24", &[]);
    daemon.port_add("r2", "red", &r2, "10.78.0.12/24", &[]);
    // Same subnet on purpose: only the switch keeps them apart.
    daemon.port_add("b1", "blue", &b1, "10.78.0.13/24", &[]);
    assert!(
        r1.ping_within("10.78.0.12", Duration::from_secs(5)),
        "same network must work"
    );
    assert!(!b1.ping("10.78.0.11"), "blue reached red");
    assert!(!r2.ping("10.78.0.13"), "red reached blue");
    // Nothing from red was ever sent to blue's port.
    let stats = daemon.json(&["stats"]);
    let b1_tx = support::find_port(&stats, "b1")["tx_frames"]
        .as_u64()
        .unwrap();
    assert_eq!(b1_tx, 0, "blue's port received red's frames: {stats}");
}

#[test]
fn iperf3_tcp_transfer_completes_with_matching_byte_count() {
    if !can_run(&["ip", "ping", "iperf3", "timeout"]) {
        return;
    }
    let l = lan(2, 2);
    let (client, server) = (&l.containers[0], &l.containers[1]);
    assert!(client.ping_within(&ip_of(2, 1), Duration::from_secs(5)));
    let (_, received) = support::iperf3(client, server, &ip_of(2, 1), 64 << 20, false);
    // The switch delivered at least the payload to the server's port.
    let stats = l.daemon.json(&["stats"]);
    let tx = support::find_port(&stats, "c1")["tx_bytes"]
        .as_u64()
        .unwrap();
    assert!(
        tx >= received,
        "port c1 transmitted {tx} bytes, less than the {received} iperf3 received"
    );

    // Exact: a TCP stream of known content, counted and checked at the far end.
    support::exact_transfer(client, server, &ip_of(2, 1), 32 * 1024 * 1024);
}

#[test]
fn port_rm_removes_the_tap_and_flushes_its_entries() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let l = lan(3, 2);
    assert!(l.containers[0].ping_within(&ip_of(3, 1), Duration::from_secs(5)));
    let before = l.daemon.json(&["fdb", "show", "--port", "c1"]);
    assert!(
        !as_rows(&before).is_empty(),
        "c1 has no FDB entry after a ping: {before}"
    );
    l.daemon.cli(&["port", "rm", "c1"]);
    // The TAP is gone from the container...
    let links = support::link_names(&l.containers[1].name);
    assert!(
        !links.iter().any(|n| n == "eth0"),
        "eth0 still in c1 after port rm: {links:?}"
    );
    // ...its FDB entries are flushed, and it is no longer listed.
    let fdb = l.daemon.json(&["fdb", "show"]);
    assert!(
        as_rows(&fdb).iter().all(|r| r["port"] != "c1"),
        "c1 entries survived: {fdb}"
    );
    let ports = l.daemon.port_names();
    assert_eq!(ports, ["c0"], "ports after `port rm c1`");
    // Removing again is a clear error.
    let out = l.daemon.cli_raw(&["port", "rm", "c1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"c1\""),
        "error does not name the port: {err}"
    );
}

fn as_rows(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v.as_array()
        .or_else(|| v["entries"].as_array())
        .cloned()
        .unwrap_or_default()
}

#[test]
fn garbage_and_huge_requests_do_not_disturb_forwarding() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let l = lan(4, 2);
    assert!(l.containers[0].ping_within(&ip_of(4, 1), Duration::from_secs(5)));

    // Garbage: an error reply that names the problem.
    let mut s = UnixStream::connect(&l.daemon.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"this is not json\n").unwrap();
    let reply = read_line(&mut s);
    let v: serde_json::Value =
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {reply}"));
    assert_eq!(v["ok"], false);
    assert!(
        !v["error"]["message"].as_str().unwrap_or("").is_empty(),
        "{reply}"
    );

    // A 10 MB line: refused with a line-limit error, the daemon carries on.
    let mut s = UnixStream::connect(&l.daemon.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let big = vec![b'x'; 10 * 1024 * 1024];
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            // The daemon may close the connection before taking it all: a
            // failed write is what it should do, so the result is not asked.
            s.write_all(&big).and_then(|()| s.write_all(b"\n")).ok();
        })
    };
    let reply = read_line(&mut s);
    assert!(
        reply.contains("longer than"),
        "no line-limit error: {reply}"
    );
    drop(s);
    writer.join().expect("the writer thread panicked");

    // Still answering, still forwarding.
    l.daemon.cli(&["ping"]);
    assert!(
        l.containers[1].ping_within(&ip_of(4, 0), Duration::from_secs(5)),
        "forwarding stopped\n{}",
        l.daemon.log()
    );
}

fn read_line(s: &mut UnixStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while out.len() < 1 << 20 {
        match s.read(&mut b) {
            Ok(1) if b[0] == b'\n' => break,
            Ok(1) => out.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_tap_deleted_underneath_is_detected_and_removed() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let l = lan(5, 3);
    assert!(l.containers[0].ping_within(&ip_of(5, 1), Duration::from_secs(5)));
    support::run("ip", &["-n", &l.containers[1].name, "link", "del", "eth0"]);
    let gone = support::wait_until(Duration::from_secs(5), || {
        l.daemon.port_names() == ["c0", "c2"]
    });
    assert!(
        gone,
        "port c1 still listed after its TAP was deleted: {:?}",
        l.daemon.port_names()
    );
    let fdb = l.daemon.json(&["fdb", "show"]);
    assert!(as_rows(&fdb).iter().all(|r| r["port"] != "c1"), "{fdb}");
    // The daemon still serves, and forwards between the remaining ports:
    // c0 and c2 reach each other through it, both ways.
    l.daemon.cli(&["ping"]);
    let (c0, c2) = (&l.containers[0], &l.containers[2]);
    assert!(
        c0.ping_within(&ip_of(5, 2), Duration::from_secs(5)),
        "c0 cannot reach c2 after c1's TAP went\n{}",
        l.daemon.log()
    );
    assert!(c2.ping(&ip_of(5, 0)), "c2 cannot reach c0");
    support::exact_transfer(c2, c0, &ip_of(5, 0), 1 << 20);
}

#[test]
fn deleting_a_containers_namespace_removes_its_port() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    // As with docker0, where deleting the namespace destroys the veth and
    // with it the bridge port: the daemon notices the sandbox is gone.
    let l = lan(7, 3);
    assert!(l.containers[0].ping_within(&ip_of(7, 1), Duration::from_secs(5)));
    support::run("ip", &["netns", "del", &l.containers[1].name]);
    let gone = support::wait_until(Duration::from_secs(5), || {
        l.daemon.port_names() == ["c0", "c2"]
    });
    assert!(
        gone,
        "port c1 still listed after its namespace was deleted: {:?}",
        l.daemon.port_names()
    );
    let fdb = l.daemon.json(&["fdb", "show"]);
    assert!(as_rows(&fdb).iter().all(|r| r["port"] != "c1"), "{fdb}");
    assert!(
        l.daemon
            .log()
            .contains("port c1 (network red) removed: its namespace is gone"),
        "{}",
        l.daemon.log()
    );
    // The others keep working.
    assert!(l.containers[0].ping_within(&ip_of(7, 2), Duration::from_secs(5)));
}

#[test]
fn sigterm_removes_created_taps_and_the_socket() {
    if !can_run(&["ip", "kill"]) {
        return;
    }
    let mut l = lan(6, 2);
    let st = l.daemon.terminate();
    assert!(st.success(), "daemon exited with {st}:\n{}", l.daemon.log());
    assert!(!l.daemon.socket.exists(), "socket file left behind");
    for c in &l.containers {
        let links = support::link_names(&c.name);
        assert!(
            !links.iter().any(|n| n == "eth0"),
            "TAP left in {} after shutdown: {links:?}",
            c.name
        );
    }
}

#[test]
fn existing_taps_attach_without_capabilities_and_forward() {
    if !can_run(&["ip", "ping", "setpriv"]) {
        return;
    }
    // The lab case: an admin pre-creates persistent TAPs; the daemon runs
    // with no capabilities at all (uid 0 with an empty bounding set here,
    // because /dev/net/tun on this kind of machine is mode 0600; with the
    // usual 0666 any uid owning the TAPs works the same way).
    let host = Netns::new("vxh");
    let (c0, c1) = (Netns::new("vxl"), Netns::new("vxl"));
    for t in ["lab0", "lab1"] {
        support::run(
            "ip",
            &["-n", &host.name, "tuntap", "add", "dev", t, "mode", "tap"],
        );
    }
    // Declared before the daemon, so dropped (removed) after it is killed.
    let dir = support::TempDir::new("vxsw-lab-");
    let dir = &dir.0;
    let sock = dir.join("s.sock");
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let setpriv = [
        "netns",
        "exec",
        &host.name,
        "setpriv",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--bounding-set=-all",
        "--",
    ];
    let child = support::cmd("ip", &setpriv)
        .args([support::BIN, "--socket", sock.to_str().unwrap(), "daemon"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let daemon = Proc(child);
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", daemon.0.id())).unwrap_or_default();
    let cli = |args: &[&str]| {
        let mut all = vec!["--socket", sock.to_str().unwrap()];
        all.extend_from_slice(args);
        support::run_raw(support::BIN, &all)
    };
    let log_text = || std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert!(
        support::wait_until(Duration::from_secs(10), || cli(&["ping"]).status.success()),
        "capability-less daemon did not start: {}",
        log_text()
    );
    let caps = std::fs::read_to_string(format!("/proc/{}/status", daemon.0.id())).unwrap_or(status);
    assert!(
        caps.contains("CapEff:\t0000000000000000"),
        "daemon still has capabilities:\n{caps}"
    );
    assert!(cli(&["network", "create", "lab"]).status.success());
    for t in ["lab0", "lab1"] {
        let out = cli(&["port", "add", t, "--network", "lab", "--existing"]);
        assert!(
            out.status.success(),
            "attach {t}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            log_text()
        );
    }
    // The admin moves each TAP into a container (as Docker does with a
    // Join's SrcName); the daemon's fds keep carrying frames.
    for (t, c, ip) in [("lab0", &c0, "10.79.0.1/24"), ("lab1", &c1, "10.79.0.2/24")] {
        support::run(
            "ip",
            &["-n", &host.name, "link", "set", t, "netns", &c.name],
        );
        support::run("ip", &["-n", &c.name, "addr", "add", ip, "dev", t]);
        support::run("ip", &["-n", &c.name, "link", "set", t, "up"]);
    }
    assert!(
        c0.ping_within("10.79.0.2", Duration::from_secs(5)),
        "no forwarding between existing TAPs\n{}",
        log_text()
    );
    // Removing a port leaves the admin's device in place.
    assert!(cli(&["port", "rm", "lab1"]).status.success());
    let links = support::link_names(&c1.name);
    assert!(
        links.iter().any(|n| n == "lab1"),
        "port rm deleted a TAP the switch did not create: {links:?}"
    );
    drop(daemon);
}

/// `InCsumErrors` of TCP in a namespace (/proc/net/snmp): segments the
/// kernel refused for a bad checksum.
fn tcp_csum_errors(ns: &Netns) -> u64 {
    ns.snmp("Tcp", "InCsumErrors")
}

#[test]
fn offload_and_plain_ports_exchange_tcp_intact_both_ways() {
    if !can_run(&["ip", "ping", "iperf3", "timeout", "tshark", "kill"]) {
        return;
    }
    // c0: offloads on, jumbo MTU (hands the switch 64 KiB super-frames with
    // partial checksums); c1: no offloads, MTU 1500 (gets them segmented
    // and checksummed in software, and sends plain frames back).
    let daemon = Daemon::start(&[]);
    daemon.cli(&["network", "create", "red", "--subnet", "10.77.9.0/24"]);
    let (c0, c1) = (Netns::new("vxo"), Netns::new("vxp"));
    daemon.port_add("c0", "red", &c0, "10.77.9.11/24", &["--mtu", "9000"]);
    daemon.port_add("c1", "red", &c1, "10.77.9.12/24", &["--no-offload"]);
    let ports = daemon.json(&["port", "ls"]);
    let offload = |name: &str| {
        ports
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["offload"]
            .clone()
    };
    assert_eq!(offload("c0"), serde_json::json!(true), "{ports}");
    assert_eq!(offload("c1"), serde_json::json!(false), "{ports}");
    assert!(c0.ping_within("10.77.9.12", Duration::from_secs(5)));

    // What c1 receives is the switch's software segmentation: tshark
    // checks every IPv4 and TCP checksum of it on c1's eth0.
    let mut cap = Capture::start(&c1, "eth0", "10.77.9.11");
    support::exact_transfer(&c0, &c1, "10.77.9.12", 4 << 20);
    cap.stop();
    cap.assert_tcp_checksums_good(
        "tcp && ip.src == 10.77.9.11",
        4 * 1024 * 1024 / 9000,
        "software segments from c0 on c1's eth0",
    );

    support::exact_transfer(&c0, &c1, "10.77.9.12", 16 << 20);
    support::exact_transfer(&c1, &c0, "10.77.9.11", 16 << 20);
    support::iperf3(&c0, &c1, "10.77.9.12", 32 << 20, false);
    support::iperf3(&c0, &c1, "10.77.9.12", 32 << 20, true);

    // Every software segment and checksum was accepted by the kernel.
    assert_eq!(
        tcp_csum_errors(&c1),
        0,
        "checksum errors in the plain container"
    );
    assert_eq!(
        tcp_csum_errors(&c0),
        0,
        "checksum errors in the offload container"
    );
    let stats = daemon.json(&["stats"]);
    let (from_c0, to_c1) = (
        support::find_port(&stats, "c0")["rx_frames"]
            .as_u64()
            .unwrap(),
        support::find_port(&stats, "c1")["tx_frames"]
            .as_u64()
            .unwrap(),
    );
    // c0's super-frames left as more, smaller frames toward c1.
    assert!(
        to_c1 > from_c0,
        "no segmentation seen: c0 sent {from_c0} frames, c1 got {to_c1}: {stats}"
    );
    let drops = &support::find_port(&stats, "c1")["drops"];
    assert_eq!(
        drops["bad_offload"],
        serde_json::json!(0),
        "c1 dropped frames it could not segment: {stats}"
    );
}

/// Counter `k` of port `port` in `stats --json`.
fn port_counter(d: &Daemon, port: &str, k: &str) -> u64 {
    let stats = d.json(&["stats"]);
    support::find_port(&stats, port)[k]
        .as_u64()
        .unwrap_or_else(|| panic!("no {k} for {port}: {stats}"))
}

#[test]
fn offload_and_plain_ports_exchange_tcp_over_ipv6_untagged_and_in_802_1q_tags() {
    if !can_run(&["ip", "ping", "tshark", "kill", "python3"]) {
        return;
    }
    // TSO6 super-frames from c0 are cut in software for c1, first plain,
    // then inside an 802.1Q tag: both containers tag what their eth0 sends
    // and untag what it receives (tc BPF below the stack, see
    // `Netns::vlan_tag`; this machine has no 8021q module for VLAN
    // devices), so the switch sees tagged super-frames from c0.
    let daemon = Daemon::start(&[]);
    daemon.cli(&["network", "create", "red"]);
    let (c0, c1) = (Netns::new("vx6o"), Netns::new("vx6p"));
    let (ip0, ip1) = ("fd00:77:11::11", "fd00:77:11::12");
    daemon.port_add("c0", "red", &c0, &format!("{ip0}/64"), &["--mtu", "9000"]);
    daemon.port_add("c1", "red", &c1, &format!("{ip1}/64"), &["--no-offload"]);
    assert!(c0.ping_within(ip1, Duration::from_secs(10)));
    let mut cap = Capture::start(&c1, "eth0", ip0);
    support::exact_transfer(&c0, &c1, &format!("[{ip1}]"), 4 << 20);
    cap.stop();
    let from_c0 = format!("tcp && ipv6.src == {ip0}");
    cap.assert_tcp_checksums_good(
        &from_c0,
        4 * 1024 * 1024 / 9000,
        "software TSO6 segments from c0 on c1's eth0",
    );
    support::exact_transfer(&c0, &c1, &format!("[{ip1}]"), 16 << 20);
    support::exact_transfer(&c1, &c0, &format!("[{ip0}]"), 16 << 20);

    // Tagged: VLAN 42 on both sides.
    for ns in [&c0, &c1] {
        if !ns.vlan_tag("eth0", 42) {
            return;
        }
    }
    assert!(
        c0.ping_within(ip1, Duration::from_secs(10)),
        "no ping through the tagged ports\n{}",
        daemon.log()
    );
    let (rx0, tx1) = (
        port_counter(&daemon, "c0", "rx_frames"),
        port_counter(&daemon, "c1", "tx_frames"),
    );
    let mut sent = Capture::start(&c0, "eth0", ip1);
    let mut got = Capture::start(&c1, "eth0", ip0);
    support::exact_transfer(&c0, &c1, &format!("[{ip1}]"), 4 << 20);
    sent.stop();
    got.stop();
    let (rx0, tx1) = (
        port_counter(&daemon, "c0", "rx_frames") - rx0,
        port_counter(&daemon, "c1", "tx_frames") - tx1,
    );
    // What c0 handed the switch: tagged frames, some of them super-frames
    // larger than c0's own MTU (TSO inside the tag).
    let out = sent.rows(&from_c0, &["vlan.id", "frame.len"]);
    assert!(!out.is_empty(), "no TCP from c0 on its eth0");
    assert!(
        out.iter().all(|r| r[0] == "42"),
        "c0 sent frames without VLAN 42: {:?}",
        out.iter()
            .filter(|r| r[0] != "42")
            .take(5)
            .collect::<Vec<_>>()
    );
    let len = |r: &Vec<String>| r[1].parse::<u64>().unwrap_or(0);
    let largest = out.iter().map(len).max().unwrap_or(0);
    assert!(
        largest > 9018,
        "no tagged super-frame from c0 (largest frame {largest} bytes)"
    );
    eprintln!(
        "tagged: c0 sent {} TCP frames (largest {largest} bytes), the switch took \
         {rx0} frames from c0 and gave {tx1} to c1",
        out.len()
    );
    // What c1 got: every segment tagged 42, at most 1500 + 18 bytes, every
    // checksum good, and the switch counted more frames out to c1 than in
    // from c0.
    let seen = got.rows(&from_c0, &["vlan.id", "frame.len"]);
    assert!(
        seen.iter().all(|r| r[0] == "42" && len(r) <= 1518),
        "c1 got untagged or oversized frames: {:?}",
        seen.iter()
            .filter(|r| r[0] != "42" || len(r) > 1518)
            .take(5)
            .collect::<Vec<_>>()
    );
    got.assert_tcp_checksums_good(
        &format!("vlan.id == 42 && {from_c0}"),
        4 * 1024 * 1024 / 9000,
        "software TSO6 segments in VLAN 42 from c0 on c1's eth0",
    );
    assert!(
        tx1 > rx0,
        "no segmentation of tagged frames: c0 sent {rx0} frames, c1 got {tx1}"
    );
    support::exact_transfer(&c0, &c1, &format!("[{ip1}]"), 16 << 20);
    support::exact_transfer(&c1, &c0, &format!("[{ip0}]"), 16 << 20);

    assert_eq!(
        tcp_csum_errors(&c1),
        0,
        "checksum errors in the plain container"
    );
    assert_eq!(
        tcp_csum_errors(&c0),
        0,
        "checksum errors in the offload container"
    );
    let stats = daemon.json(&["stats"]);
    let drops = &support::find_port(&stats, "c1")["drops"];
    assert_eq!(drops["bad_offload"], serde_json::json!(0), "{stats}");
    assert!(
        support::find_port(&stats, "c1")["tx_frames"]
            .as_u64()
            .unwrap()
            > support::find_port(&stats, "c0")["rx_frames"]
                .as_u64()
                .unwrap(),
        "no segmentation seen: {stats}"
    );
}

/// `tx-tcp-segmentation` (TSO for IPv4) of `eth0` in a namespace
/// (`ethtool -k`): "on" or "off".
fn tso(ns: &Netns) -> String {
    let out = ns.exec("ethtool", &["-k", "eth0"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("tx-tcp-segmentation: "))
        .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// A veth port's host end as `port ls` says.
fn host_end(d: &Daemon, port: &str) -> String {
    let ls = d.json(&["port", "ls"]);
    ls.as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == port))
        .and_then(|p| p["host_ifname"].as_str())
        .unwrap_or_else(|| panic!("no host end for {port}: {ls}"))
        .to_string()
}

/// `ip -d link show eth0` in a namespace, as one line.
fn link_details(ns: &Netns) -> String {
    let out = ns.exec("ip", &["-d", "link", "show", "eth0"]);
    String::from_utf8_lossy(&out.stdout).replace('\n', " ")
}

#[test]
fn taps_get_one_queue_per_worker_and_offloads_unless_refused() {
    if !can_run(&["ip", "ping", "ethtool"]) {
        return;
    }
    for workers in ["1", "3"] {
        let daemon = Daemon::start(&["--workers", workers]);
        daemon.cli(&["network", "create", "red", "--subnet", "10.77.10.0/24"]);
        let (c0, c1) = (Netns::new("vxq"), Netns::new("vxq"));
        daemon.port_add("c0", "red", &c0, "10.77.10.11/24", &[]);
        daemon.port_add("c1", "red", &c1, "10.77.10.12/24", &["--no-offload"]);
        if support::veth_backend() {
            // On veth ports (VXSWITCH_BACKEND=veth) the same as the kernel
            // has it: offloads on c0's eth0 and off on c1's, and one packet
            // socket per worker on each host end.
            assert_eq!(tso(&c0), "on");
            assert_eq!(tso(&c1), "off");
            for c in ["c0", "c1"] {
                let host = host_end(&daemon, c);
                assert_eq!(
                    support::packet_sockets_on(&host),
                    workers.parse::<usize>().unwrap(),
                    "{host} with {workers} workers"
                );
            }
            assert!(c0.ping_within("10.77.10.12", Duration::from_secs(5)));
            support::exact_transfer(&c0, &c1, "10.77.10.12", 8 << 20);
            support::exact_transfer(&c1, &c0, "10.77.10.11", 8 << 20);
            continue;
        }
        let (d0, d1) = (link_details(&c0), link_details(&c1));
        assert!(d0.contains("vnet_hdr on"), "{d0}");
        assert!(d1.contains("vnet_hdr off"), "{d1}");
        if workers == "1" {
            assert!(!d0.contains("multi_queue"), "{d0}");
        } else {
            assert!(d0.contains("multi_queue numqueues 3"), "{d0}");
            assert!(d1.contains("multi_queue numqueues 3"), "{d1}");
        }
        // Frames cross between the workers' queues both ways.
        assert!(c0.ping_within("10.77.10.12", Duration::from_secs(5)));
        support::exact_transfer(&c0, &c1, "10.77.10.12", 8 << 20);
        support::exact_transfer(&c1, &c0, "10.77.10.11", 8 << 20);
    }
}
