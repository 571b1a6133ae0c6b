//! ARP and IPv6 neighbour suppression (`network create --neigh-suppress`,
//! on for cluster networks): containers on real TAPs in namespaces get
//! their ARP requests and neighbour solicitations for each other answered
//! by the switch, and the target never sees them; a miss still floods;
//! duplicate address detection still finds a conflict. Needs root (CI runs
//! as root).

mod support;

use std::time::Duration;

use support::capture::Capture;
use support::{can_run, wait_until, Daemon, Netns};

const WAIT: Duration = Duration::from_secs(10);

/// The suppression counters of `network` from `stats --json`.
fn suppress_stats(d: &Daemon, network: &str) -> serde_json::Value {
    let s = d.json(&["stats"]);
    s["suppress"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["network"] == network))
        .unwrap_or_else(|| panic!("no suppression row for {network} in {s}"))
        .clone()
}

fn count(row: &serde_json::Value, what: &str) -> u64 {
    row[what]
        .as_u64()
        .unwrap_or_else(|| panic!("no {what} in {row}"))
}

/// The MAC of `dev` in `ns`.
fn mac_of(ns: &Netns, dev: &str) -> String {
    ns.ip_json(&["link", "show", "dev", dev])[0]["address"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The link-layer address `ns` has for `ip`, if resolved.
fn neighbor(ns: &Netns, ip: &str) -> Option<String> {
    ns.ip_json(&["neigh", "show", ip]).as_array()?.first()?["lladdr"]
        .as_str()
        .map(String::from)
}

#[test]
fn arp_for_a_container_is_answered_by_the_switch_and_a_miss_floods() {
    if !can_run(&["ip", "ping", "tshark", "kill"]) {
        return;
    }
    let host = Netns::new("vxsh");
    let c1 = Netns::new("vxs1");
    let c2 = Netns::new("vxs2");
    let d = Daemon::start_in(Some(&host), &[]);
    d.cli(&[
        "network",
        "create",
        "lab",
        "--subnet",
        "10.90.0.0/24",
        "--neigh-suppress",
    ]);
    let ls = d.json(&["network", "ls"]);
    assert_eq!(ls[0]["neigh_suppress"], true, "{ls}");
    d.port_add("c1", "lab", &c1, "10.90.0.11/24", &[]);
    d.port_add("c2", "lab", &c2, "10.90.0.12/24", &[]);
    assert_eq!(count(&suppress_stats(&d, "lab"), "bindings"), 2);

    // Everything c2 receives, from before c1 first asks for it. The
    // capture's marker pings go from c2 to c1 (c2 asks for c1: answered
    // by the switch too).
    let mut cap = Capture::start(&c2, "eth0", "10.90.0.11");
    c1.ip_ok(&["neigh", "flush", "all"]);
    assert!(
        c1.ping_within("10.90.0.12", WAIT),
        "c1 cannot reach c2\n{}",
        d.log()
    );
    assert_eq!(
        neighbor(&c1, "10.90.0.12").as_deref(),
        Some(mac_of(&c2, "eth0").as_str()),
        "c1 resolved c2 to c2's own MAC"
    );
    // An address nobody has: not bound, so the request floods (to c2).
    assert!(!c1.ping("10.90.0.99"));
    cap.stop();

    let asked_for_c2 = cap.rows(
        "arp.opcode == 1 && eth.dst == ff:ff:ff:ff:ff:ff && arp.dst.proto_ipv4 == 10.90.0.12",
        &["arp.src.proto_ipv4"],
    );
    assert!(
        asked_for_c2.is_empty(),
        "c2 saw broadcast ARP requests for its address: {asked_for_c2:?}"
    );
    let missed = cap.rows(
        "arp.opcode == 1 && arp.dst.proto_ipv4 == 10.90.0.99",
        &["arp.src.proto_ipv4"],
    );
    assert!(
        !missed.is_empty(),
        "a request for an unbound address was not flooded"
    );
    let row = suppress_stats(&d, "lab");
    assert!(
        count(&row, "answered") >= 2,
        "c1 for c2 and c2 for c1: {row}"
    );
    assert!(count(&row, "missed") >= 1, "{row}");
    let text = d.cli(&["stats"]);
    assert!(text.contains("suppress lab: 2 bindings,"), "{text}");
}

#[test]
fn ipv6_solicitations_are_answered_and_duplicate_addresses_still_found() {
    if !can_run(&["ip", "ping", "tshark", "kill"]) {
        return;
    }
    let host = Netns::new("vxsh");
    let c1 = Netns::new("vxs1");
    let c2 = Netns::new("vxs2");
    let c3 = Netns::new("vxs3");
    let d = Daemon::start_in(Some(&host), &[]);
    d.cli(&[
        "network",
        "create",
        "lab6",
        "--subnet",
        "fd00:90::/64",
        "--neigh-suppress",
    ]);
    d.port_add("c1", "lab6", &c1, "fd00:90::11/64", &[]);
    d.port_add("c2", "lab6", &c2, "fd00:90::12/64", &[]);

    let mut cap = Capture::start(&c2, "eth0", "fd00:90::11");
    c1.ip_ok(&["neigh", "flush", "all"]);
    assert!(
        c1.ping_within("fd00:90::12", WAIT),
        "c1 cannot reach c2\n{}",
        d.log()
    );
    assert_eq!(
        neighbor(&c1, "fd00:90::12").as_deref(),
        Some(mac_of(&c2, "eth0").as_str())
    );
    cap.stop();
    // Solicitations for c2's address to its solicited-node group (not
    // c2's own duplicate address detection, from ::): none reached c2.
    let solicited = cap.rows(
        "icmpv6.type == 135 && ipv6.dst == ff02::1:ff00:12 && !(ipv6.src == ::)",
        &["ipv6.src"],
    );
    assert!(
        solicited.is_empty(),
        "c2 saw neighbour solicitations for its address: {solicited:?}"
    );
    let row = suppress_stats(&d, "lab6");
    assert!(count(&row, "answered") >= 2, "{row}");

    // Duplicate address detection is left to the owner: c3 takes c1's
    // address by hand, its solicitation from :: floods, c1 defends it.
    let ignored = count(&row, "ignored");
    d.port_add("c3", "lab6", &c3, "fd00:90::13/64", &[]);
    c3.ip_ok(&["addr", "add", "fd00:90::11/64", "dev", "eth0"]);
    let dadfailed = wait_until(WAIT, || {
        let a = c3.ip_json(&["addr", "show", "dev", "eth0"]);
        a[0]["addr_info"].as_array().is_some_and(|infos| {
            infos
                .iter()
                .any(|i| i["local"] == "fd00:90::11" && i["dadfailed"] == true)
        })
    });
    assert!(
        dadfailed,
        "the duplicate address was not detected: {}\n{}",
        c3.ip_json(&["addr", "show", "dev", "eth0"]),
        d.log()
    );
    let row = suppress_stats(&d, "lab6");
    assert!(
        count(&row, "ignored") > ignored,
        "DAD counted as ignored: {row}"
    );
}
