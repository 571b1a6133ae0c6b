//! Uplinks on a simulated LAN (docs/uplink.md): a namespace with a kernel
//! bridge is the LAN, "LAN hosts" hang off it on veths, and the daemon
//! runs in a "host" namespace whose eth0 is a veth into that bridge with
//! GRO and TSO on, as a real NIC has them. Containers on a network with
//! `--uplink eth0` must then be on that LAN.
//!
//! Runs as root with CI=true: `cargo test --test uplink_root`.

mod support;

use std::time::Duration;

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
