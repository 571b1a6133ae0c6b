//! Uplinks on a simulated LAN (docs/uplink.md): a namespace with a kernel
//! bridge is the LAN, "LAN hosts" hang off it on veths, and the daemon
//! runs in a "host" namespace whose eth0 is a veth into that bridge with
//! GRO and TSO on, as a real NIC has them. Containers on a network with
//! `--uplink eth0` must then be on that LAN.
//!
//! Runs as root with CI=true: `cargo test --test uplink_root`.

mod support;

use std::time::Duration;

use support::capture::Capture;
use support::{can_run, find_port, run, Daemon, Netns};

const LONG: Duration = Duration::from_secs(20);

/// The LAN: its bridge's namespace and the host's.
struct Lan {
    lan: Netns,
    host: Netns,
}

impl Lan {
    /// A bridge `br0` in a namespace of its own, and the host namespace
    /// whose `eth0` is a veth into it, GRO and TSO on. Runs: ip, ethtool.
    fn new() -> Lan {
        let (lan, host) = (Netns::new("vxlan"), Netns::new("vxhost"));
        lan.ip_ok(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        lan.ip_ok(&["link", "set", "br0", "up"]);
        let l = Lan { lan, host };
        l.plug("up0", &l.host);
        run(
            "ip",
            &[
                "netns",
                "exec",
                &l.host.name,
                "ethtool",
                "-K",
                "eth0",
                "gro",
                "on",
                "tso",
                "on",
            ],
        );
        l
    }

    /// A veth from the bridge (`port`) to `eth0` in `ns`, both up.
    fn plug(&self, port: &str, ns: &Netns) {
        let lan = &self.lan;
        lan.ip_ok(&[
            "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        lan.ip_ok(&["link", "set", port, "master", "br0", "up"]);
        ns.ip_ok(&["link", "set", "eth0", "up"]);
    }

    /// A LAN host on the bridge with `ip4` and `ip6` (with prefix).
    fn host_at(&self, port: &str, ip4: &str, ip6: &str) -> Netns {
        let h = Netns::new("vxlh");
        self.plug(port, &h);
        h.ip_ok(&["addr", "add", ip4, "dev", "eth0"]);
        h.ip_ok(&["-6", "addr", "add", ip6, "dev", "eth0", "nodad"]);
        h
    }
}

/// A container's IPv6 address, beside the IPv4 one vxswitch gave it.
fn add_ip6(c: &Netns, ip6: &str) {
    c.ip_ok(&["-6", "addr", "add", ip6, "dev", "eth0", "nodad"]);
}

fn ping6_within(ns: &Netns, dst: &str) -> bool {
    support::wait_until(LONG, || {
        ns.exec("ping", &["-6", "-c", "1", "-W", "1", "-n", "-q", dst])
            .status
            .success()
    })
}

fn uplink_stats(d: &Daemon, port: &str) -> serde_json::Value {
    find_port(&d.json(&["stats"]), port).clone()
}

#[test]
fn containers_are_on_the_lan_through_an_untagged_uplink() {
    if !can_run(&["ip", "ethtool", "ping", "iperf3", "timeout"]) {
        return;
    }
    let lan = Lan::new();
    let h1 = lan.host_at("lh1", "192.0.2.101/24", "fd00::101/64");
    let h2 = lan.host_at("lh2", "192.0.2.102/24", "fd00::102/64");
    let d = Daemon::start_in(Some(&lan.host), &[]);
    d.cli(&[
        "network",
        "create",
        "lan",
        "--uplink",
        "eth0",
        "--subnet",
        "192.0.2.0/24",
        "--gateway",
        "192.0.2.1",
    ]);
    let (c1, c2) = (Netns::new("vxc"), Netns::new("vxc"));
    d.port_add("c1", "lan", &c1, "192.0.2.11/24", &[]);
    d.port_add("c2", "lan", &c2, "192.0.2.12/24", &[]);
    add_ip6(&c1, "fd00::11/64");
    add_ip6(&c2, "fd00::12/64");

    // ARP both ways: a container finds a LAN host and a LAN host finds a
    // container (its own MAC, on the LAN).
    assert!(c1.ping_within("192.0.2.101", LONG), "c1 -> LAN host h1");
    assert!(h2.ping_within("192.0.2.12", LONG), "LAN host h2 -> c2");
    assert!(c2.ping_within("192.0.2.102", LONG), "c2 -> LAN host h2");
    // Containers still reach each other locally.
    assert!(c1.ping_within("192.0.2.12", LONG), "c1 -> c2");
    // IPv6 neighbour discovery, both ways.
    assert!(ping6_within(&c1, "fd00::101"), "c1 -> h1 over IPv6");
    assert!(ping6_within(&h2, "fd00::11"), "h2 -> c1 over IPv6");

    let ls = d.json(&["port", "ls"]);
    let up = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "lan.uplink")
        .unwrap_or_else(|| panic!("no uplink port in {ls}"));
    assert_eq!(up["kind"], "uplink");
    assert_eq!(up["uplink"]["ifname"], "eth0");
    assert_eq!(up["uplink"]["state"], "up");
    assert_eq!(up["offload"], true, "the uplink takes super-frames: {up}");

    // Exact bytes both ways, through GRO/TSO on the host's eth0.
    support::exact_transfer(&c1, &h1, "192.0.2.101", 16 << 20);
    support::exact_transfer(&h2, &c2, "192.0.2.12", 16 << 20);
    support::iperf3(&c1, &h1, "192.0.2.101", 64 << 20, false);
    support::iperf3(&h2, &c2, "192.0.2.12", 64 << 20, false);

    let st = uplink_stats(&d, "lan.uplink");
    assert!(
        st["rx_frames"].as_u64().unwrap() > 0 && st["tx_frames"].as_u64().unwrap() > 0,
        "{st}"
    );
    // GRO'd and TSO super-frames crossed whole, both ways (not cut into
    // MTU-sized frames by the switch).
    let avg =
        |bytes: &str, frames: &str| st[bytes].as_u64().unwrap() / st[frames].as_u64().unwrap();
    assert!(avg("rx_bytes", "rx_frames") > 3000, "from the LAN: {st}");
    assert!(avg("tx_bytes", "tx_frames") > 3000, "to the LAN: {st}");
    for why in ["bad_offload", "rx_error", "tx_error", "oversize"] {
        assert_eq!(st["drops"][why], 0, "uplink drops {why}: {st}");
    }
}

fn port_mac(d: &Daemon, name: &str) -> String {
    let ls = d.json(&["port", "ls"]);
    ls.as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["mac"].as_str())
        .unwrap_or_else(|| panic!("no MAC for port {name} in {ls}"))
        .to_string()
}

#[test]
fn two_vlans_and_the_untagged_lan_share_one_uplink_and_stay_apart() {
    if !can_run(&["ip", "ethtool", "ping", "python3", "tshark", "kill"]) {
        return;
    }
    let lan = Lan::new();
    // The host's own address on the LAN: the capture's marker pings.
    lan.host
        .ip_ok(&["addr", "add", "198.51.100.2/24", "dev", "eth0"]);
    lan.lan
        .ip_ok(&["addr", "add", "198.51.100.1/24", "dev", "br0"]);
    let h10 = lan.host_at("lh10", "10.10.0.100/24", "fd10::100/64");
    let h20 = lan.host_at("lh20", "10.20.0.100/24", "fd20::100/64");
    let h0 = lan.host_at("lh0", "192.0.2.100/24", "fd00::100/64");
    // h20 also answers for an address in VLAN 10's subnet: its replies go
    // out tagged 20 and must not reach VLAN 10's container.
    h20.ip_ok(&["addr", "add", "10.10.0.120/24", "dev", "eth0"]);
    // A LAN host that sends priority-tagged frames (VLAN id 0, 802.1p).
    let hp = lan.host_at("lhp", "192.0.2.105/24", "fd00::105/64");
    if !h10.vlan_tag("eth0", 10) || !h20.vlan_tag("eth0", 20) || !hp.vlan_tag("eth0", 0) {
        return;
    }
    let d = Daemon::start_in(Some(&lan.host), &[]);
    for (net, vlan, subnet) in [
        ("v10", Some("10"), "10.10.0.0/24"),
        ("v20", Some("20"), "10.20.0.0/24"),
        ("lan", None, "192.0.2.0/24"),
    ] {
        let mut args = vec![
            "network", "create", net, "--uplink", "eth0", "--subnet", subnet,
        ];
        if let Some(v) = vlan {
            args.extend_from_slice(&["--vlan", v]);
        }
        d.cli(&args);
    }
    // One network per VLAN of an interface.
    let dup = d.cli_raw(&[
        "network", "create", "again", "--uplink", "eth0", "--vlan", "10",
    ]);
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(
        !dup.status.success() && err.contains("already uses eth0 (VLAN 10)"),
        "{err}"
    );
    let (c10, c20, c0) = (Netns::new("vxc"), Netns::new("vxc"), Netns::new("vxc"));
    d.port_add("c10", "v10", &c10, "10.10.0.11/24", &[]);
    d.port_add("c20", "v20", &c20, "10.20.0.11/24", &[]);
    d.port_add("c0", "lan", &c0, "192.0.2.11/24", &[]);
    let mut cap = Capture::start(&lan.lan, "up0", "198.51.100.2");

    assert!(
        c10.ping_within("10.10.0.100", LONG),
        "c10 -> h10 on VLAN 10"
    );
    assert!(h20.ping_within("10.20.0.11", LONG), "h20 -> c20 on VLAN 20");
    assert!(c0.ping_within("192.0.2.100", LONG), "c0 -> h0 untagged");
    assert!(h0.ping_within("192.0.2.11", LONG), "h0 -> c0 untagged");
    assert!(
        hp.ping_within("192.0.2.11", LONG),
        "a priority-tagged LAN host -> c0 untagged"
    );
    // 10.10.0.120 answers on VLAN 20 only: VLAN 10 never hears it.
    assert!(!c10.ping("10.10.0.120"), "a VLAN 20 reply reached VLAN 10");
    assert!(!c10.ping("10.10.0.120"), "a VLAN 20 reply reached VLAN 10");
    let st20 = uplink_stats(&d, "v20.uplink");
    assert!(
        st20["drops"]["uplink_unknown_dst"].as_u64().unwrap() > 0,
        "h20's replies to c10's MAC are dropped on VLAN 20's uplink: {st20}"
    );

    cap.stop();
    for (port, want) in [("c10", "10"), ("c20", "20"), ("c0", "")] {
        let mac = port_mac(&d, port);
        let rows = cap.rows(&format!("eth.src == {mac}"), &["vlan.id"]);
        assert!(!rows.is_empty(), "nothing from {port} ({mac}) on the LAN");
        for r in &rows {
            assert_eq!(
                r[0], want,
                "{port}'s frames on the LAN carry VLAN {want:?}: {rows:?}"
            );
        }
    }
    // Super-frames go out tagged (the tag moves the checksum offsets of
    // their virtio_net_hdr) and come in from a tagged LAN host.
    support::exact_transfer(&c10, &h10, "10.10.0.100", 8 << 20);
    support::exact_transfer(&h20, &c20, "10.20.0.11", 8 << 20);
    for port in ["v10.uplink", "v20.uplink"] {
        let st = uplink_stats(&d, port);
        for why in ["bad_offload", "rx_error", "tx_error", "oversize"] {
            assert_eq!(st["drops"][why], 0, "{port} drops {why}: {st}");
        }
    }
}

/// The uplink port's row of `port ls --json`.
fn uplink_row(d: &Daemon, port: &str) -> serde_json::Value {
    let ls = d.json(&["port", "ls"]);
    ls.as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == port)
        .unwrap_or_else(|| panic!("no port {port} in {ls}"))["uplink"]
        .clone()
}

fn wait_state(d: &Daemon, port: &str, state: &str) {
    support::wait_for(LONG, &format!("{port} reported {state}"), || {
        uplink_row(d, port)["state"] == state
    });
}

#[test]
fn an_uplink_that_goes_down_or_away_is_reported_and_attached_again() {
    if !can_run(&["ip", "ethtool", "ping"]) {
        return;
    }
    let lan = Lan::new();
    let h1 = lan.host_at("lh1", "192.0.2.101/24", "fd00::101/64");
    let d = Daemon::start_in(Some(&lan.host), &[]);
    d.cli(&[
        "network",
        "create",
        "lan",
        "--uplink",
        "eth0",
        "--subnet",
        "192.0.2.0/24",
    ]);
    let (c1, c2) = (Netns::new("vxc"), Netns::new("vxc"));
    d.port_add("c1", "lan", &c1, "192.0.2.11/24", &[]);
    d.port_add("c2", "lan", &c2, "192.0.2.12/24", &[]);
    assert!(c1.ping_within("192.0.2.101", LONG), "c1 -> h1");

    // Down and up again: reported, one log line each, and traffic resumes.
    lan.host.ip_ok(&["link", "set", "eth0", "down"]);
    wait_state(&d, "lan.uplink", "down");
    assert!(
        c1.ping_within("192.0.2.12", LONG),
        "the network works locally"
    );
    assert!(!c1.ping("192.0.2.101"), "no LAN while the uplink is down");
    let st = uplink_stats(&d, "lan.uplink");
    assert!(st["drops"]["tx_link_down"].as_u64().unwrap() > 0, "{st}");
    lan.host.ip_ok(&["link", "set", "eth0", "up"]);
    wait_state(&d, "lan.uplink", "up");
    assert!(c1.ping_within("192.0.2.101", LONG), "c1 -> h1 after up");

    // Deleted: detached, reported; the network keeps working locally.
    lan.host.ip_ok(&["link", "del", "eth0"]);
    wait_state(&d, "lan.uplink", "missing");
    assert!(
        c1.ping_within("192.0.2.12", LONG),
        "the network works locally"
    );
    assert!(!c1.ping("192.0.2.101"), "no LAN without the uplink");
    // Created again (a new interface index): a new socket under the same port.
    lan.plug("up0", &lan.host);
    wait_state(&d, "lan.uplink", "up");
    assert_eq!(uplink_row(&d, "lan.uplink")["reattached"], 1);
    assert!(
        c1.ping_within("192.0.2.101", LONG),
        "c1 -> h1 after re-creation"
    );
    assert!(
        h1.ping_within("192.0.2.12", LONG),
        "h1 -> c2 after re-creation"
    );

    let log = d.log();
    // The re-created eth0 is made (down) and set up in two steps: a look
    // between them attaches it while down, and the next one says it is up.
    let up_again = usize::from(log.contains("is back and attached again (down)"));
    for (line, n) in [
        ("uplink eth0 of network lan is down", 1),
        ("uplink eth0 of network lan is up", 1 + up_again),
        ("uplink eth0 of network lan is gone", 1),
        ("uplink eth0 of network lan is back", 1),
    ] {
        assert_eq!(log.matches(line).count(), n, "{n} {line:?} in\n{log}");
    }
    let out = d.cli(&["stats"]);
    assert!(
        out.contains("uplink lan.uplink (network lan): eth0 (uplink: up)"),
        "{out}"
    );
    // The uplink goes with its network, not on its own.
    let rm = d.cli_raw(&["port", "rm", "lan.uplink"]);
    assert!(!rm.status.success());
    assert!(String::from_utf8_lossy(&rm.stderr).contains("is the uplink of network"));
}

/// Sends `n` broadcast frames from `n` different source MACs out of
/// `eth0` in `ns`, as fast as it can. Runs: ip, python3.
fn lan_broadcast_flood(ns: &Netns, n: u32) {
    let script = format!(
        "import socket, struct\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.bind(('eth0', 0))\n\
         for i in range({n}):\n\
         \x20   src = bytes([2, 0x42, 0, 0]) + struct.pack('!H', i)\n\
         \x20   s.send(b'\\xff' * 6 + src + b'\\x88\\xb5' + bytes(46))\n"
    );
    let out = ns.exec("python3", &["-c", &script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_lan_is_held_to_a_mac_budget_and_a_broadcast_rate() {
    if !can_run(&["ip", "ethtool", "ping", "python3", "kill"]) {
        return;
    }
    let lan = Lan::new();
    let h1 = lan.host_at("lh1", "192.0.2.101/24", "fd00::101/64");
    let d = Daemon::start_in(Some(&lan.host), &["--fdb-max-per-port", "16"]);
    d.cli(&[
        "network",
        "create",
        "lan",
        "--uplink",
        "eth0",
        "--subnet",
        "192.0.2.0/24",
        "--storm-pps",
        "100",
    ]);
    let c1 = Netns::new("vxc");
    d.port_add("c1", "lan", &c1, "192.0.2.11/24", &[]);
    assert!(c1.ping_within("192.0.2.101", LONG), "c1 -> h1");

    lan_broadcast_flood(&h1, 3000);
    let st = uplink_stats(&d, "lan.uplink");
    let storm = st["drops"]["storm"].as_u64().unwrap();
    assert!(storm > 0, "storm control counted nothing: {st}");
    assert!(
        st["learn_refused_port_limit"].as_u64().unwrap() > 0,
        "the LAN's MACs were not held to the uplink's budget: {st}"
    );
    let fdb = d.json(&["fdb", "show"]);
    let at_uplink = fdb
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["port"] == "lan.uplink")
        .count();
    assert!(at_uplink <= 16, "{at_uplink} MACs behind the uplink: {fdb}");
    // The container saw the broadcasts that were let through, not all.
    let c1_tx = find_port(&d.json(&["stats"]), "c1")["tx_frames"]
        .as_u64()
        .unwrap();
    assert!(
        c1_tx < 3000 - storm + 50,
        "c1 got {c1_tx} frames, {storm} were held back"
    );
    // And the container still reaches the LAN.
    assert!(
        c1.ping_within("192.0.2.101", LONG),
        "c1 -> h1 after the flood"
    );
    assert!(d.cli(&["stats"]).contains("storm control 100 pps"));

    // Frames the kernel drops while the dataplane cannot read (here: the
    // daemon stopped) are counted too, though the switch never saw them.
    assert_eq!(uplink_row(&d, "lan.uplink")["rx_queue_drops"], 0);
    support::signal(d.child.id(), "STOP");
    lan_broadcast_flood(&h1, 60_000);
    support::signal(d.child.id(), "CONT");
    let drops = uplink_row(&d, "lan.uplink")["rx_queue_drops"]
        .as_u64()
        .unwrap();
    assert!(drops > 0, "no kernel drops counted");
    assert!(d
        .cli(&["stats"])
        .contains("dropped by the kernel (socket queue full)"));
}

#[test]
fn a_cni_configuration_with_an_uplink_puts_the_container_on_the_lan() {
    let cni_path = "/usr/lib/cni";
    if !support::can_run_with(&["ip", "ethtool", "ping"], &["/usr/lib/cni/host-local"]) {
        return;
    }
    let lan = Lan::new();
    let _h1 = lan.host_at("lh1", "192.0.2.101/24", "fd00::101/64");
    let d = Daemon::start_in(Some(&lan.host), &[]);
    let bin = support::TempDir::new("vxcni-bin-");
    let plugin = bin.0.join("vxswitch-cni");
    std::os::unix::fs::symlink(support::BIN, &plugin).unwrap();
    let data = support::TempDir::new("vxcni-data-");
    let conf = |vlan: Option<u16>| {
        let mut c = serde_json::json!({
            "cniVersion": "1.0.0", "name": "lan", "type": "vxswitch-cni",
            "socket": d.socket, "uplink": "eth0",
            "ipam": {"type": "host-local", "dataDir": data.0,
                     "ranges": [[{"subnet": "192.0.2.0/24", "gateway": "192.0.2.1",
                                  "rangeStart": "192.0.2.20", "rangeEnd": "192.0.2.29"}]]}
        });
        if let Some(v) = vlan {
            c["vlan"] = v.into();
        }
        c.to_string()
    };
    let c1 = Netns::new("vxc");
    let c1_path = c1.path();
    let env = [
        ("CNI_CONTAINERID", "uplinkcni1"),
        ("CNI_NETNS", c1_path.as_str()),
        ("CNI_IFNAME", "eth0"),
    ];
    let out = support::cni_exec(&plugin, cni_path, "ADD", &env, &conf(None));
    assert!(out.ok, "ADD: {} {}", out.stdout, out.stderr);
    // The network was created with the uplink, the container is on the LAN.
    assert_eq!(uplink_row(&d, "lan.uplink")["ifname"], "eth0");
    assert!(c1.ping_within("192.0.2.101", LONG), "c1 -> h1");
    // A configuration that disagrees with the network is refused.
    let c2 = Netns::new("vxc");
    let c2_path = c2.path();
    let env2 = [
        ("CNI_CONTAINERID", "uplinkcni2"),
        ("CNI_NETNS", c2_path.as_str()),
        ("CNI_IFNAME", "eth0"),
    ];
    let out = support::cni_exec(&plugin, cni_path, "ADD", &env2, &conf(Some(10)));
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stdout.contains("has uplink eth0 untagged") && out.stdout.contains("eth0 VLAN 10"),
        "{}",
        out.stdout
    );
    let out = support::cni_exec(&plugin, cni_path, "DEL", &env, &conf(None));
    assert!(out.ok, "DEL: {} {}", out.stdout, out.stderr);
}

#[test]
fn a_restarted_daemon_brings_its_uplink_back() {
    if !can_run(&["ip", "ethtool", "ping", "kill", "python3"]) {
        return;
    }
    let lan = Lan::new();
    let h1 = lan.host_at("lh1", "10.10.0.101/24", "fd00::101/64");
    if !h1.vlan_tag("eth0", 10) {
        return;
    }
    let state = support::TempDir::new("vxsw-state-");
    let st = state.0.to_str().unwrap();
    let mut d = Daemon::start_in(Some(&lan.host), &["--state-dir", st]);
    d.cli(&[
        "network",
        "create",
        "v10",
        "--uplink",
        "eth0",
        "--vlan",
        "10",
        "--subnet",
        "10.10.0.0/24",
        "--storm-pps",
        "50",
    ]);
    let (c1, c2) = (Netns::new("vxc"), Netns::new("vxc"));
    d.port_add("c1", "v10", &c1, "10.10.0.11/24", &[]);
    d.port_add("c2", "v10", &c2, "10.10.0.12/24", &[]);
    assert!(c1.ping_within("10.10.0.101", LONG), "c1 -> h1");
    d.terminate();
    let mut d = Daemon::start_in(Some(&lan.host), &["--state-dir", st]);
    let u = uplink_row(&d, "v10.uplink");
    assert_eq!(
        (
            u["ifname"].as_str(),
            u["vlan"].as_u64(),
            u["state"].as_str(),
            u["storm_pps"].as_u64()
        ),
        (Some("eth0"), Some(10), Some("up"), Some(50)),
        "{u}"
    );
    assert!(
        c1.ping_within("10.10.0.101", LONG),
        "c1 -> h1 after a restart"
    );

    // Started while the interface is away: the network works locally, the
    // uplink is attached when the interface shows up.
    d.terminate();
    lan.host.ip_ok(&["link", "del", "eth0"]);
    let d = Daemon::start_in(Some(&lan.host), &["--state-dir", st]);
    assert_eq!(uplink_row(&d, "v10.uplink")["state"], "missing");
    assert!(
        c1.ping_within("10.10.0.12", LONG),
        "c1 -> c2 without the uplink"
    );
    assert!(d
        .log()
        .contains("uplink eth0 of network v10 is missing at start"));
    lan.plug("up0", &lan.host);
    wait_state(&d, "v10.uplink", "up");
    assert!(
        c1.ping_within("10.10.0.101", LONG),
        "c1 -> h1 once eth0 is there"
    );
}

#[test]
fn network_ls_and_create_show_each_networks_uplink_and_vlan() {
    if !can_run(&["ip", "kill"]) {
        return;
    }
    let host = Netns::new("vxhost");
    host.ip_ok(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "lan0",
    ]);
    host.ip_ok(&["link", "set", "eth0", "up"]);
    host.ip_ok(&["link", "set", "lan0", "up"]);
    let d = Daemon::start_in(Some(&host), &[]);
    let made = d.cli(&[
        "network",
        "create",
        "v10",
        "--uplink",
        "eth0",
        "--vlan",
        "10",
        "--subnet",
        "10.10.0.0/24",
    ]);
    assert!(made.contains(", uplink eth0 vlan 10"), "{made}");
    let made = d.cli(&["network", "create", "lan", "--uplink", "eth0"]);
    assert!(made.trim_end().ends_with(", uplink eth0"), "{made}");
    d.cli(&["network", "create", "local"]);
    let ls = d.cli(&["network", "ls"]);
    let row = |name: &str| {
        ls.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {ls}"))
            .to_string()
    };
    assert!(ls.lines().next().unwrap().ends_with("  UPLINK"), "{ls}");
    assert!(row("v10").ends_with("  eth0 vlan 10"), "{ls}");
    assert!(row("lan").ends_with("  eth0"), "{ls}");
    assert!(row("local").ends_with("  -"), "{ls}");
    let nets = d.json(&["network", "ls"]);
    let net = |name: &str| {
        nets.as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (&net("v10")["uplink"], &net("v10")["vlan"]),
        (&serde_json::json!("eth0"), &serde_json::json!(10))
    );
    assert_eq!(net("lan")["uplink"], "eth0");
    assert!(net("lan").get("vlan").is_none(), "{nets}");
    assert!(net("local").get("uplink").is_none(), "{nets}");
}

/// `--uplink-rx ring`: the uplink's sockets are read through receive
/// rings. Frames up to the MTU come from the ring, GRO'd super-frames
/// (longer than a slot) whole through the socket's queue, a VLAN's frames
/// only to its network, and `port ls` says which way frames come in.
/// (`VXSWITCH_UPLINK_RX=ring cargo test --test uplink_root` runs every test
/// of this file that way.)
#[test]
fn an_uplink_read_through_rings_takes_super_frames_and_vlans() {
    if !can_run(&["ip", "ethtool", "ping", "python3", "timeout"]) {
        return;
    }
    let lan = Lan::new();
    let h1 = lan.host_at("lh1", "192.0.2.101/24", "fd00::101/64");
    let h10 = lan.host_at("lh10", "10.10.0.100/24", "fd10::100/64");
    if !h10.vlan_tag("eth0", 10) {
        return;
    }
    let d = Daemon::start_in(
        Some(&lan.host),
        &["--uplink-rx", "ring", "--uplink-buffer", "2"],
    );
    d.cli(&[
        "network",
        "create",
        "lan",
        "--uplink",
        "eth0",
        "--subnet",
        "192.0.2.0/24",
    ]);
    d.cli(&[
        "network",
        "create",
        "v10",
        "--uplink",
        "eth0",
        "--vlan",
        "10",
        "--subnet",
        "10.10.0.0/24",
    ]);
    let (c1, c10) = (Netns::new("vxc"), Netns::new("vxc"));
    d.port_add("c1", "lan", &c1, "192.0.2.11/24", &[]);
    d.port_add("c10", "v10", &c10, "10.10.0.11/24", &[]);
    let up = uplink_row(&d, "lan.uplink");
    // 2 MiB of 2 KiB slots per socket.
    assert_eq!(
        up["rx"], "ring (1024 slots of 2048 bytes per socket)",
        "{up}"
    );

    assert!(h1.ping_within("192.0.2.11", LONG), "LAN host -> c1");
    assert!(
        c10.ping_within("10.10.0.100", LONG),
        "c10 -> VLAN 10's host"
    );
    support::exact_transfer(&h1, &c1, "192.0.2.11", 16 << 20);
    support::exact_transfer(&h10, &c10, "10.10.0.11", 8 << 20);
    support::exact_transfer(&c1, &h1, "192.0.2.101", 8 << 20);

    let st = uplink_stats(&d, "lan.uplink");
    let avg = st["rx_bytes"].as_u64().unwrap() / st["rx_frames"].as_u64().unwrap();
    assert!(
        avg > 3000,
        "GRO'd super-frames from the LAN came whole through the ring's socket: {st}"
    );
    for why in ["bad_offload", "rx_error"] {
        assert_eq!(st["drops"][why], 0, "uplink drops {why}: {st}");
    }
    let v10 = uplink_stats(&d, "v10.uplink");
    assert!(v10["rx_frames"].as_u64().unwrap() > 100, "{v10}");
    assert_eq!(v10["drops"]["rx_error"], 0, "{v10}");
}

// The eBPF fast path on uplinks (docs/fastpath.md, "Uplinks"): in a module
// of its own, to keep this file short.
#[path = "uplink_root_fast/mod.rs"]
mod fast;
