//! The eBPF fast path on uplinks (docs/fastpath.md, "Uplinks"), on the
//! simulated LAN of `uplink_root`: a container on a veth port talks to LAN
//! hosts through the kernel, VLANs stay apart with their tags on the LAN,
//! and the switch still sees what it must (mirrors, a link down).

use super::*;

/// The network every test here puts on the simulated LAN's uplink.
const CREATE_LAN: [&str; 7] = [
    "network",
    "create",
    "lan",
    "--uplink",
    "eth0",
    "--subnet",
    "192.0.2.0/24",
];

/// A daemon in the LAN's host namespace with veth ports and the fast path;
/// None (after `cannot_run`) where the fast path cannot be active.
fn fast_daemon(lan: &Lan, extra: &[&str]) -> Option<Daemon> {
    if !vxswitch::fastpath::built_in() {
        support::cannot_run("the binary was built without clang: no fast path to test");
        return None;
    }
    let mut args = vec!["--backend", "veth", "--fastpath", "ebpf"];
    args.extend_from_slice(extra);
    let d = Daemon::start_in(Some(&lan.host), &args);
    let fp = &d.json(&["stats"])["fastpath"];
    if fp["active"] != true {
        support::cannot_run(&format!("the fast path is not active: {fp}"));
        return None;
    }
    Some(d)
}

/// Of `port` in `stats`: (all frames rx + tx, fast frames rx, fast frames
/// tx, fast bytes rx + tx).
fn fast_counts(d: &Daemon, port: &str) -> (u64, u64, u64, u64) {
    let s = d.json(&["stats"]);
    let row = support::port_row(&s, port);
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    (
        n(&row["stats"]["rx_frames"]) + n(&row["stats"]["tx_frames"]),
        n(&row["fast"]["rx_frames"]),
        n(&row["fast"]["tx_frames"]),
        n(&row["fast"]["rx_bytes"]) + n(&row["fast"]["tx_bytes"]),
    )
}

/// Pings `dst` from `ns` until `port`'s fast counters moved both ways (the
/// switch learned both ends and a round of the map sync ran).
fn ping_until_fast(d: &Daemon, ns: &Netns, dst: &str, port: &str) {
    let (_, rx0, tx0, _) = fast_counts(d, port);
    support::wait_for(
        LONG,
        &format!("pings to {dst} through {port} going fast"),
        || {
            ns.ping(dst);
            let (_, rx, tx, _) = fast_counts(d, port);
            rx > rx0 && tx > tx0
        },
    );
}

/// Whether the fast path's tc program is on `dev`'s ingress in `ns`.
fn tc_program_on(ns: &Netns, dev: &str) -> bool {
    let out = ns.exec("tc", &["filter", "show", "dev", dev, "ingress"]);
    String::from_utf8_lossy(&out.stdout).contains("fp_tc")
}

#[test]
fn containers_on_veth_reach_the_lan_through_the_fast_path() {
    if !can_run(&["ip", "ethtool", "ping", "iperf3", "timeout", "tc", "kill"]) {
        return;
    }
    let lan = Lan::new();
    let h1 = lan.host_at("lh1", "192.0.2.101/24", "fd00::101/64");
    let Some(mut d) = fast_daemon(&lan, &[]) else {
        return;
    };
    d.cli(&CREATE_LAN);
    let c1 = Netns::new("vxc");
    d.port_add("c1", "lan", &c1, "192.0.2.11/24", &[]);
    assert!(
        tc_program_on(&lan.host, "eth0"),
        "no tc program on the uplink"
    );
    assert!(c1.ping_within("192.0.2.101", LONG), "c1 -> h1");
    ping_until_fast(&d, &c1, "192.0.2.101", "lan.uplink");
    ping_until_fast(&d, &h1, "192.0.2.11", "lan.uplink");
    let out = d.cli(&["stats"]);
    assert!(out.contains("fast path: active (ebpf), 2 port(s)"), "{out}");

    // Bulk both ways: exact bytes, then iperf3. Nearly all of it fast: the
    // switch's own counts (all minus fast) hardly move.
    let (all0, rx0, tx0, bytes0) = fast_counts(&d, "lan.uplink");
    let (c_all0, _, _, c_bytes0) = fast_counts(&d, "c1");
    support::exact_transfer(&c1, &h1, "192.0.2.101", 16 << 20);
    support::exact_transfer(&h1, &c1, "192.0.2.11", 16 << 20);
    support::iperf3(&c1, &h1, "192.0.2.101", 64 << 20, false);
    support::iperf3(&h1, &c1, "192.0.2.11", 64 << 20, false);
    let (all1, rx1, tx1, bytes1) = fast_counts(&d, "lan.uplink");
    let (c_all1, _, _, c_bytes1) = fast_counts(&d, "c1");
    // The payload's bytes, less a margin: the odd frame goes the slow way
    // (a neighbour probe while a round of the map sync runs).
    let moved = (2 * (16 << 20) + 2 * (64 << 20)) * 9 / 10;
    assert!(
        bytes1 - bytes0 >= moved && c_bytes1 - c_bytes0 >= moved,
        "fast bytes: uplink {bytes0} -> {bytes1}, c1 {c_bytes0} -> {c_bytes1}"
    );
    let fast = (rx1 - rx0) + (tx1 - tx0);
    let slow = (all1 - all0) - fast;
    assert!(
        slow * 50 < fast,
        "the switch forwarded {slow} of the uplink's frames, the kernel {fast}: {}",
        d.json(&["stats"])
    );
    assert!((c_all1 - c_all0) >= fast, "c1 counts the fast frames too");
    let st = uplink_stats(&d, "lan.uplink");
    for why in ["bad_offload", "rx_error", "tx_error", "oversize"] {
        assert_eq!(st["drops"][why], 0, "uplink drops {why}: {st}");
    }

    // A mirror of the uplink: its frames all pass the switch (and reach
    // the mirror's port); fast again once it is gone.
    let c2 = Netns::new("vxc");
    d.port_add("c2", "lan", &c2, "192.0.2.12/24", &[]);
    d.cli(&["port", "mirror", "add", "lan.uplink", "--to", "c2"]);
    let (_, mrx, mtx, _) = fast_counts(&d, "lan.uplink");
    let c2_tx0 = find_port(&d.json(&["stats"]), "c2")["tx_frames"]
        .as_u64()
        .unwrap();
    for _ in 0..3 {
        assert!(c1.ping("192.0.2.101"), "c1 -> h1 while mirrored");
    }
    assert_eq!(fast_counts(&d, "lan.uplink").1, mrx, "fast while mirrored");
    assert_eq!(fast_counts(&d, "lan.uplink").2, mtx, "fast while mirrored");
    let c2_tx = find_port(&d.json(&["stats"]), "c2")["tx_frames"]
        .as_u64()
        .unwrap();
    assert!(
        c2_tx >= c2_tx0 + 6,
        "the mirror got {} frames",
        c2_tx - c2_tx0
    );
    d.cli(&["port", "mirror", "rm", "lan.uplink"]);
    ping_until_fast(&d, &c1, "192.0.2.101", "lan.uplink");

    // Down: nothing goes fast to a dead link, the switch counts it.
    lan.host.ip_ok(&["link", "set", "eth0", "down"]);
    wait_state(&d, "lan.uplink", "down");
    assert!(!c1.ping("192.0.2.101"), "no LAN while the uplink is down");
    let st = uplink_stats(&d, "lan.uplink");
    assert!(st["drops"]["tx_link_down"].as_u64().unwrap() > 0, "{st}");
    lan.host.ip_ok(&["link", "set", "eth0", "up"]);
    wait_state(&d, "lan.uplink", "up");
    ping_until_fast(&d, &c1, "192.0.2.101", "lan.uplink");

    // Deleted and created again (a new ifindex): fast again on the new one,
    // the counters carried on.
    let (_, rx2, _, _) = fast_counts(&d, "lan.uplink");
    lan.host.ip_ok(&["link", "del", "eth0"]);
    wait_state(&d, "lan.uplink", "missing");
    lan.plug("up0", &lan.host);
    wait_state(&d, "lan.uplink", "up");
    assert!(
        tc_program_on(&lan.host, "eth0"),
        "no tc program on the new eth0"
    );
    // A new steering interface came with the new eth0; the old one went.
    let steer = steering_links(&lan.host);
    assert_eq!(steer.len(), 1, "{steer:?}");
    let index = format!("{:x}", ifindex(&lan.host, "eth0").parse::<u32>().unwrap());
    assert!(
        steer[0].ends_with(&format!("-{index}")),
        "{steer:?} for eth0 {index}"
    );
    assert!(
        c1.ping_within("192.0.2.101", LONG),
        "c1 -> h1 after re-creation"
    );
    ping_until_fast(&d, &c1, "192.0.2.101", "lan.uplink");
    assert!(
        fast_counts(&d, "lan.uplink").1 > rx2,
        "fast counters went back"
    );

    // The network goes: so does the program on the host's interface; and
    // with the daemon, the program of another network's uplink.
    d.cli(&["network", "rm", "lan", "--force"]);
    assert!(
        !tc_program_on(&lan.host, "eth0"),
        "tc program left after network rm"
    );
    d.cli(&[
        "network",
        "create",
        "lan2",
        "--uplink",
        "eth0",
        "--subnet",
        "192.0.2.0/24",
    ]);
    assert!(tc_program_on(&lan.host, "eth0"));
    d.terminate();
    assert!(
        !tc_program_on(&lan.host, "eth0"),
        "tc program left after the daemon stopped"
    );
}

#[test]
fn two_vlans_on_one_ring_uplink_stay_apart_on_the_fast_path() {
    if !can_run(&["ip", "ethtool", "ping", "python3", "tshark", "kill", "tc"]) {
        return;
    }
    let lan = Lan::new();
    lan.host
        .ip_ok(&["addr", "add", "198.51.100.2/24", "dev", "eth0"]);
    lan.lan
        .ip_ok(&["addr", "add", "198.51.100.1/24", "dev", "br0"]);
    let h10 = lan.host_at("lh10", "10.10.0.100/24", "fd10::100/64");
    let h20 = lan.host_at("lh20", "10.20.0.100/24", "fd20::100/64");
    h20.ip_ok(&["addr", "add", "10.10.0.120/24", "dev", "eth0"]);
    if !h10.vlan_tag("eth0", 10) || !h20.vlan_tag("eth0", 20) {
        return;
    }
    // The uplink read through receive rings: their sockets take the
    // fast path's filter as the plain ones do.
    let Some(d) = fast_daemon(&lan, &["--uplink-rx", "ring"]) else {
        return;
    };
    for (net, vlan, subnet) in [("v10", "10", "10.10.0.0/24"), ("v20", "20", "10.20.0.0/24")] {
        d.cli(&[
            "network", "create", net, "--uplink", "eth0", "--vlan", vlan, "--subnet", subnet,
        ]);
    }
    let (c10, c20) = (Netns::new("vxc"), Netns::new("vxc"));
    d.port_add("c10", "v10", &c10, "10.10.0.11/24", &[]);
    d.port_add("c20", "v20", &c20, "10.20.0.11/24", &[]);
    assert!(
        c10.ping_within("10.10.0.100", LONG),
        "c10 -> h10 on VLAN 10"
    );
    assert!(h20.ping_within("10.20.0.11", LONG), "h20 -> c20 on VLAN 20");
    ping_until_fast(&d, &c10, "10.10.0.100", "v10.uplink");
    ping_until_fast(&d, &h20, "10.20.0.11", "v20.uplink");

    // Tags on the LAN side of frames the kernel forwarded: VLAN 10 out
    // from c10 (pushed), VLAN 20 in to c20 (popped: the replies came).
    let (_, rx10, tx10, _) = fast_counts(&d, "v10.uplink");
    let (_, rx20, tx20, _) = fast_counts(&d, "v20.uplink");
    let mut cap = Capture::start(&lan.lan, "up0", "198.51.100.2");
    for _ in 0..5 {
        assert!(c10.ping("10.10.0.100"), "c10 -> h10 fast");
        assert!(h20.ping("10.20.0.11"), "h20 -> c20 fast");
    }
    cap.stop();
    let (_, rx10b, tx10b, _) = fast_counts(&d, "v10.uplink");
    let (_, rx20b, tx20b, _) = fast_counts(&d, "v20.uplink");
    assert!(rx10b - rx10 >= 5 && tx10b - tx10 >= 5, "VLAN 10 not fast");
    assert!(rx20b - rx20 >= 5 && tx20b - tx20 >= 5, "VLAN 20 not fast");
    for (port, want) in [("c10", "10"), ("c20", "20")] {
        let mac = port_mac(&d, port);
        let rows = cap.rows(&format!("eth.src == {mac}"), &["vlan.id"]);
        assert!(rows.len() >= 5, "{port} ({mac}) on the LAN: {rows:?}");
        for r in &rows {
            assert_eq!(r[0], want, "{port}'s frames carry VLAN {want}: {rows:?}");
        }
    }
    // 10.10.0.120 answers on VLAN 20 only: its replies to c10's MAC come in
    // tagged 20, where no fast entry has that MAC, and the switch drops them.
    assert!(!c10.ping("10.10.0.120"), "a VLAN 20 reply reached VLAN 10");
    let st20 = uplink_stats(&d, "v20.uplink");
    assert!(
        st20["drops"]["uplink_unknown_dst"].as_u64().unwrap() > 0,
        "{st20}"
    );
}

/// The index of `dev` in `ns`.
fn ifindex(ns: &Netns, dev: &str) -> String {
    let v = ns.ip_json(&["link", "show", "dev", dev]);
    v[0]["ifindex"].to_string()
}

/// The uplinks' steering interfaces in `ns` (docs/fastpath.md, "Uplinks"):
/// not those of the containers' veth ports.
fn steering_links(ns: &Netns) -> Vec<String> {
    support::uplink_steering_links(&ns.name)
}

#[test]
fn the_uplinks_taps_hold_no_socket_of_the_switch_and_the_lan_still_reaches_everyone() {
    if !can_run(&["ip", "ethtool", "ping", "cat", "tc", "kill"]) {
        return;
    }
    let lan = Lan::new();
    let h1 = lan.host_at("lh1", "192.0.2.101/24", "fd00::101/64");
    lan.host
        .ip_ok(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
    let Some(mut d) = fast_daemon(&lan, &[]) else {
        return;
    };
    d.cli(&CREATE_LAN);
    let c1 = Netns::new("vxc");
    d.port_add("c1", "lan", &c1, "192.0.2.11/24", &[]);

    // The uplink's taps: only the sending socket, bound for no protocol;
    // the receiving ones (one per worker) are on the steering interface.
    let steer = steering_links(&lan.host);
    assert_eq!(steer.len(), 1, "one steering interface: {steer:?}");
    let (eth0, st) = (ifindex(&lan.host, "eth0"), ifindex(&lan.host, &steer[0]));
    let socks = lan.host.packet_sockets();
    assert!(
        !socks.iter().any(|(p, i)| *i == eth0 && p != "0000"),
        "a packet socket with a protocol on eth0 ({eth0}): {socks:?}"
    );
    assert!(
        socks.iter().any(|(p, i)| *i == eth0 && p == "0000"),
        "no sending socket on eth0 ({eth0}): {socks:?}"
    );
    assert!(
        socks.iter().any(|(p, i)| *i == st && p == "0003"),
        "no receiving socket on {} ({st}): {socks:?}",
        steer[0]
    );
    // Up, with no address of either family: the host sends nothing on it.
    let a = lan.host.ip_json(&["addr", "show", "dev", &steer[0]]);
    assert_eq!(a[0]["addr_info"], serde_json::json!([]), "{a}");
    assert!(a[0]["flags"].to_string().contains("\"UP\""), "{a}");

    // LAN broadcast while the fast path is on: h1's ARP for c1 reaches c1
    // (through the switch), its ARP for the host reaches the host.
    assert!(h1.ping_within("192.0.2.11", LONG), "h1 -> c1");
    ping_until_fast(&d, &h1, "192.0.2.11", "lan.uplink");
    let rx0 = find_port(&d.json(&["stats"]), "lan.uplink")["rx_frames"]
        .as_u64()
        .unwrap();
    h1.ip_ok(&["neigh", "flush", "dev", "eth0"]);
    assert!(h1.ping("192.0.2.11"), "h1 -> c1 after an ARP broadcast");
    assert!(
        h1.ping("192.0.2.2"),
        "h1 -> the host after an ARP broadcast"
    );
    let rx1 = find_port(&d.json(&["stats"]), "lan.uplink")["rx_frames"]
        .as_u64()
        .unwrap();
    assert!(rx1 > rx0, "the switch took no broadcast from the LAN");
    let arp = h1.ip_json(&["neigh", "show", "dev", "eth0"]);
    let neighbours: Vec<String> = arp
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["dst"].as_str().map(String::from))
        .collect();
    assert!(
        neighbours.iter().any(|n| n == "192.0.2.11") && neighbours.iter().any(|n| n == "192.0.2.2"),
        "h1's neighbours: {arp}"
    );

    // It follows the uplink's MTU.
    lan.host.ip_ok(&["link", "set", "eth0", "mtu", "1400"]);
    support::wait_for(
        LONG,
        "the steering interface's MTU to follow eth0's",
        || lan.host.ip_json(&["link", "show", "dev", &steer[0]])[0]["mtu"] == 1400,
    );

    // The steering interface goes with the network, and with the daemon.
    d.cli(&["network", "rm", "lan", "--force"]);
    assert_eq!(steering_links(&lan.host), Vec::<String>::new());
    d.cli(&CREATE_LAN);
    assert_eq!(steering_links(&lan.host).len(), 1);
    d.terminate();
    assert_eq!(steering_links(&lan.host), Vec::<String>::new());
    assert!(
        lan.host.packet_sockets().is_empty(),
        "{:?}",
        lan.host.packet_sockets()
    );
}

#[test]
fn a_killed_daemons_steering_interface_goes_at_its_next_start() {
    if !can_run(&["ip", "ethtool"]) {
        return;
    }
    if !vxswitch::fastpath::built_in() {
        support::cannot_run("the binary was built without clang: no fast path to test");
        return;
    }
    let lan = Lan::new();
    // Started by hand: the next start must have the same control socket
    // (the steering interfaces' names carry the daemon's tag).
    let dir = support::TempDir::new("vxsw-steer-");
    let sock = dir.0.join("s.sock");
    let sock = sock.to_str().unwrap();
    let start = || {
        let argv = [support::BIN, "--socket", sock, "daemon"];
        let p = lan
            .host
            .spawn(&[&argv[..], &["--backend", "veth", "--fastpath", "ebpf"]].concat());
        support::wait_for(LONG, "the daemon to answer", || {
            support::cmd(support::BIN, &["--socket", sock, "ping"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        p
    };
    let cli = |args: &[&str]| {
        let out = support::cmd(support::BIN, &[&["--socket", sock][..], args].concat())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut first = start();
    let st: serde_json::Value = serde_json::from_str(&cli(&["--json", "stats"])).unwrap();
    if st["fastpath"]["active"] != true {
        support::cannot_run(&format!("the fast path is not active: {}", st["fastpath"]));
        return;
    }
    cli(&CREATE_LAN);
    assert_eq!(steering_links(&lan.host).len(), 1);
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let left = steering_links(&lan.host);
    assert_eq!(left.len(), 1, "a killed daemon leaves it: {left:?}");
    let _second = start();
    support::wait_for(LONG, "the next start to remove it", || {
        steering_links(&lan.host).is_empty()
    });
}
