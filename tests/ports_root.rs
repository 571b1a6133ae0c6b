//! Real TAP devices in real network namespaces (needs root and `ip`; see
//! `support::can_run` for the skip rule). Each test makes its own
//! uniquely named namespace, sends traffic only to interfaces it created
//! there, and checks what a user would see with `ip -j`.

mod support;

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use serde_json::Value;
use support::frames::{arp_request, parse_arp, read_frame_matching, write_frame};
use support::{can_run, wait_for, Netns as TestNetns};
use vxswitch::ports::{self, link, netns, Netns, PortError, Tap, TapSpec};
use vxswitch::wire::MacAddr;

const WAIT: Duration = Duration::from_secs(5);
const MAC: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x4d, 0x00, 0x0b]);
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

fn spec(ns: &TestNetns) -> TapSpec {
    TapSpec {
        netns: ns.handle(),
        ifname: "eth0".into(),
        mac: Some(MAC),
        mtu: Some(1400),
        addrs: vec!["10.77.0.11/24".parse().unwrap()],
        gateway: Some("10.77.0.1".parse().unwrap()),
        vnet_hdr: false,
        queues: 1,
    }
}

/// `ip -j link show dev NAME` of the namespace, as one object.
fn ip_link(ns: &TestNetns, ifname: &str) -> Value {
    ns.ip_json(&["link", "show", "dev", ifname])[0].clone()
}

fn flags(v: &Value) -> Vec<String> {
    v["flags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn gone(ns: &TestNetns, ifname: &str) -> bool {
    !link::link_exists(&ns.handle(), ifname).expect("link_exists")
}

#[test]
fn create_tap_configures_what_a_container_expects() {
    if !can_run(&["ip"]) {
        return;
    }
    let ns = TestNetns::bare("vxt");
    let tap = ports::create_tap(&spec(&ns)).expect("create_tap");
    assert_eq!(tap.ifname, "eth0");
    assert_eq!(tap.mac, MAC);
    assert_eq!(tap.mtu, 1400);
    assert!(tap.created);

    let l = ip_link(&ns, "eth0");
    assert_eq!(l["ifname"], "eth0");
    assert_eq!(l["address"], "02:42:0a:4d:00:0b");
    assert_eq!(l["mtu"], 1400);
    assert_eq!(l["ifindex"], tap.ifindex);
    assert!(flags(&l).contains(&"UP".to_string()), "{l}");
    assert!(
        flags(&ip_link(&ns, "lo")).contains(&"UP".to_string()),
        "lo must be up"
    );

    let a = ns.ip_json(&["-4", "addr", "show", "dev", "eth0"]);
    let info = &a[0]["addr_info"][0];
    assert_eq!(info["local"], "10.77.0.11", "{a}");
    assert_eq!(info["prefixlen"], 24);
    assert_eq!(info["broadcast"], "10.77.0.255");

    let r = ns.ip_json(&["-d", "-4", "route", "show", "default"]);
    assert_eq!(r[0]["dst"], "default", "{r}");
    assert_eq!(r[0]["gateway"], "10.77.0.1");
    assert_eq!(r[0]["dev"], "eth0");
    assert_eq!(r[0]["protocol"], "boot");

    // The same facts through the library's own netlink view.
    let info = link::link_info(&ns.handle(), "eth0")
        .unwrap()
        .expect("eth0 exists");
    assert!(info.is_up());
    assert_eq!(info.kind.as_deref(), Some("tun"));
    let t = info.tun.expect("tun details");
    assert!(t.tap && !t.persist && !t.multi_queue, "{t:?}");
    let addrs = link::addrs(&ns.handle(), "eth0").unwrap();
    assert!(
        addrs.contains(&"10.77.0.11/24".parse().unwrap()),
        "{addrs:?}"
    );

    drop(tap);
    wait_for(WAIT, "eth0 to disappear after the fd closed", || {
        gone(&ns, "eth0")
    });
    assert!(!ns.ip(&["link", "show", "dev", "eth0"]).status.success());
}

#[test]
fn create_tap_defaults_random_mac_and_ipv6() {
    if !can_run(&["ip"]) {
        return;
    }
    let ns = TestNetns::bare("vxt");
    let tap = ports::create_tap(&TapSpec {
        netns: ns.handle(),
        ifname: "vxt%d".into(),
        mac: None,
        mtu: None,
        addrs: vec!["fd00:77::11/64".parse().unwrap()],
        gateway: Some("fd00:77::1".parse().unwrap()),
        vnet_hdr: false,
        queues: 1,
    })
    .expect("create_tap");
    assert_eq!(tap.ifname, "vxt0", "the kernel fills in %d");
    assert!(
        tap.mac.is_local() && tap.mac.is_valid_source(),
        "{}",
        tap.mac
    );
    assert_eq!(tap.mtu, 1500);
    let l = ip_link(&ns, "vxt0");
    assert_eq!(l["address"], tap.mac.to_string());

    let a = ns.ip_json(&["-6", "addr", "show", "dev", "vxt0"]);
    let infos = a[0]["addr_info"].as_array().expect("addr_info").clone();
    let global = infos
        .iter()
        .find(|i| i["local"] == "fd00:77::11")
        .unwrap_or_else(|| panic!("fd00:77::11 missing: {a}"));
    assert_eq!(global["prefixlen"], 64);
    assert!(
        global.get("tentative").is_none(),
        "nodad: usable at once: {global}"
    );
    let r = ns.ip_json(&["-6", "route", "show", "default"]);
    assert_eq!(r[0]["gateway"], "fd00:77::1", "{r}");
    assert_eq!(r[0]["dev"], "vxt0");
}

#[test]
fn create_tap_in_namespace_of_a_pid() {
    if !can_run(&["ip", "sleep"]) {
        return;
    }
    let ns = TestNetns::bare("vxt");
    let child = ns.spawn(&["sleep", "30"]);
    let pid = child.0.id();
    let want = std::fs::metadata(ns.handle().path().unwrap())
        .unwrap()
        .ino();
    wait_for(WAIT, "the child to enter the namespace", || {
        std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == want)
    });
    let mut s = spec(&ns);
    s.netns = Netns::Pid(pid);
    let tap = ports::create_tap(&s).expect("create_tap via /proc/PID/ns/net");
    assert_eq!(ip_link(&ns, "eth0")["ifindex"], tap.ifindex);
    drop(child);
}

#[test]
fn create_tap_refuses_a_taken_name_and_leaves_it_alone() {
    if !can_run(&["ip"]) {
        return;
    }
    let ns = TestNetns::bare("vxt");
    // (This kernel has no dummy driver; a veth is as good a bystander.)
    ns.ip_ok(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "vxpeer0",
    ]);
    let e = ports::create_tap(&spec(&ns)).unwrap_err();
    match &e {
        PortError::CreateTap { name, source } => {
            assert_eq!(name, "eth0");
            assert_eq!(source.kind(), io::ErrorKind::AlreadyExists, "{e}");
        }
        other => panic!("expected CreateTap, got {other}"),
    }
    let info = link::link_info(&ns.handle(), "eth0")
        .unwrap()
        .expect("veth still there");
    assert_eq!(info.kind.as_deref(), Some("veth"));
}

/// Fails at `step` and leaves no interface behind.
fn assert_fails_cleanly(ns: &TestNetns, s: TapSpec, want_step: &str, want_detail: &str) {
    let e = ports::create_tap(&s).unwrap_err();
    match &e {
        PortError::Configure {
            ifname,
            step,
            detail,
            ..
        } => {
            assert_eq!(ifname, "eth0");
            assert_eq!(*step, want_step, "{e}");
            assert_eq!(detail, want_detail, "{e}");
        }
        other => panic!("expected a Configure error, got {other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "configuring eth0: {want_step} {want_detail} failed: "
        )),
        "{msg}"
    );
    wait_for(WAIT, "the half-configured TAP to disappear", || {
        gone(ns, "eth0")
    });
}

#[test]
fn failed_configuration_leaves_no_tap_behind() {
    if !can_run(&["ip"]) {
        return;
    }
    let ns = TestNetns::bare("vxt");
    let mut s = spec(&ns);
    s.gateway = Some("10.99.0.1".parse().unwrap()); // not on 10.77.0.0/24
    assert_fails_cleanly(&ns, s, "add default route via", "10.99.0.1");

    let mut s = spec(&ns);
    s.mtu = Some(70_000);
    assert_fails_cleanly(&ns, s, "set MTU", "70000");

    let mut s = spec(&ns);
    s.mac = Some(MacAddr([0x01, 0, 0x5e, 0, 0, 1])); // multicast
    assert_fails_cleanly(&ns, s, "set MAC", "01:00:5e:00:00:01");

    let mut s = spec(&ns);
    s.addrs.push("10.77.0.11/24".parse().unwrap()); // twice
    assert_fails_cleanly(&ns, s, "add address", "10.77.0.11/24");
}

#[test]
fn frames_flow_both_ways_through_the_fd() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let ns = TestNetns::bare("vxt");
    let tap = ports::create_tap(&spec(&ns)).expect("create_tap");
    let rx_packets = || {
        ns.ip_json(&["-s", "link", "show", "dev", "eth0"])[0]["stats64"]["rx"]["packets"].as_u64()
    };
    let before = rx_packets().expect("rx counter");

    // Host -> container: the kernel in the namespace answers our ARP request.
    let req = arp_request(PEER_MAC, [10, 77, 0, 1], [10, 77, 0, 11]);
    assert_eq!(write_frame(&tap.fd, &req).expect("write frame"), req.len());
    let reply = read_frame_matching(&tap.fd, WAIT, |f| {
        parse_arp(f).is_some_and(|a| a.op == 2 && a.sender_ip == [10, 77, 0, 11])
    })
    .expect("ARP reply from the namespace");
    assert_eq!(&reply[0..6], &PEER_MAC, "reply goes back to the asker");
    assert_eq!(&reply[6..12], MAC.as_bytes());
    wait_for(WAIT, "rx_packets to count our frame", || {
        rx_packets().is_some_and(|n| n > before)
    });

    // Container -> host: a ping to a neighbour makes the kernel ask for it.
    let _ping = ns.spawn(&["ping", "-c", "1", "-W", "2", "10.77.0.2"]);
    let asked = read_frame_matching(&tap.fd, WAIT, |f| {
        parse_arp(f).is_some_and(|a| a.op == 1 && a.target_ip == [10, 77, 0, 2])
    })
    .expect("ARP request for 10.77.0.2 read from the fd");
    assert_eq!(&asked[0..6], &[0xff; 6]);
    assert_eq!(&asked[6..12], MAC.as_bytes());
}

/// What the dataplane relies on when a device is deleted underneath it:
/// the fd reports an error and every read/write fails with EBADFD.
#[test]
fn deleted_link_makes_the_fd_fail_with_ebadfd() {
    if !can_run(&["ip"]) {
        return;
    }
    let ns = TestNetns::bare("vxt");
    let tap = ports::create_tap(&spec(&ns)).expect("create_tap");
    let mut poll = mio::Poll::new().unwrap();
    let raw = tap.fd.as_raw_fd();
    poll.registry()
        .register(
            &mut mio::unix::SourceFd(&raw),
            mio::Token(7),
            mio::Interest::READABLE,
        )
        .unwrap();
    ns.ip_ok(&["link", "del", "eth0"]);

    let mut events = mio::Events::with_capacity(4);
    let deadline = std::time::Instant::now() + WAIT;
    let errored = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        poll.poll(&mut events, Some(left)).unwrap();
        if let Some(ev) = events.iter().find(|e| e.token() == mio::Token(7)) {
            break ev.is_error();
        }
        assert!(!left.is_zero(), "no readiness event after ip link del");
    };
    assert!(errored, "epoll reports EPOLLERR on a deleted TAP");
    let mut buf = [0u8; 2048];
    for _ in 0..2 {
        let e = std::io::Read::read(
            &mut std::fs::File::from(tap.fd.try_clone().unwrap()),
            &mut buf,
        )
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADFD), "read: {e}");
    }
    let e = write_frame(
        &tap.fd,
        &arp_request(PEER_MAC, [10, 77, 0, 1], [10, 77, 0, 11]),
    )
    .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBADFD), "write: {e}");
}

/// Deleting the namespace does not delete the TAP: the fd keeps the
/// namespace alive and the device keeps working until the fd is closed.
#[test]
fn deleted_namespace_keeps_the_tap_alive() {
    if !can_run(&["ip"]) {
        return;
    }
    let ns = TestNetns::bare("vxt");
    let tap = ports::create_tap(&spec(&ns)).expect("create_tap");
    netns::delete_named(&ns.name).expect("delete namespace");
    assert!(!ns.handle().path().unwrap().exists());
    let req = arp_request(PEER_MAC, [10, 77, 0, 1], [10, 77, 0, 11]);
    write_frame(&tap.fd, &req).expect("write after the namespace was deleted");
    read_frame_matching(&tap.fd, WAIT, |f| parse_arp(f).is_some_and(|a| a.op == 2))
        .expect("the unnamed namespace still answers ARP");
}

/// `ip tuntap add` in a test namespace, then `attach_existing` from a
/// thread in it (the daemon's own namespace, as far as the call knows).
fn attach_in(ns: &TestNetns, name: &str) -> Result<Tap, PortError> {
    let name = name.to_string();
    netns::run_in(&ns.handle(), move || ports::attach_existing(&name, false))
        .expect("enter namespace")
}

#[test]
fn attach_existing_opens_a_persistent_tap_and_leaves_it() {
    if !can_run(&["ip"]) {
        return;
    }
    let ns = TestNetns::bare("vxt");
    ns.ip_ok(&[
        "tuntap", "add", "dev", "vxp0", "mode", "tap", "user", "65534",
    ]);
    ns.ip_ok(&[
        "link",
        "set",
        "dev",
        "vxp0",
        "mtu",
        "1450",
        "address",
        "02:00:00:00:77:01",
    ]);
    let tap = attach_in(&ns, "vxp0").expect("attach_existing");
    assert!(!tap.created);
    assert_eq!(tap.ifname, "vxp0");
    assert_eq!(tap.mtu, 1450);
    assert_eq!(tap.mac.to_string(), "02:00:00:00:77:01");
    let l = ip_link(&ns, "vxp0");
    assert_eq!(l["ifindex"], tap.ifindex);
    assert!(
        !flags(&l).contains(&"UP".to_string()),
        "configuration untouched: {l}"
    );

    // A single-queue TAP takes one fd: a second attach is refused clearly.
    let e = attach_in(&ns, "vxp0").unwrap_err();
    assert!(e.to_string().contains("already attached"), "{e}");

    drop(tap);
    let info = link::link_info(&ns.handle(), "vxp0")
        .unwrap()
        .expect("vxp0 survives the fd");
    assert!(info
        .tun
        .is_some_and(|t| t.persist && t.owner == Some(65534)));
    // And it can be attached again: once the fd is really closed. A child
    // another test thread forks at that moment holds a copy of every fd
    // until its exec closes them (O_CLOEXEC), which for a moment keeps the
    // queue attached: "already attached" then is that, not a leak.
    if !support::wait_until(WAIT, || attach_in(&ns, "vxp0").is_ok()) {
        attach_in(&ns, "vxp0").expect("re-attach");
    }
}

#[test]
fn attach_existing_explains_missing_and_non_tap_devices() {
    if !can_run(&["ip"]) {
        return;
    }
    let ns = TestNetns::bare("vxt");
    let e = attach_in(&ns, "nosuch0").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("no TAP named nosuch0 exists")
            && msg.contains("ip tuntap add dev nosuch0 mode tap user $USER"),
        "{msg}"
    );
    assert!(
        matches!(&e, PortError::AttachTap { source, .. } if source.kind() == io::ErrorKind::NotFound)
    );
    assert!(gone(&ns, "nosuch0"), "attach must never create a device");

    ns.ip_ok(&[
        "link", "add", "vxv0", "type", "veth", "peer", "name", "vxv1",
    ]);
    ns.ip_ok(&["tuntap", "add", "dev", "vxu0", "mode", "tun"]);
    for (name, what) in [
        ("vxv0", "is a veth device, not a TAP"),
        ("vxu0", "is a TUN (layer 3) device, not a TAP"),
        ("lo", "is a physical or loopback device, not a TAP"),
    ] {
        let e = attach_in(&ns, name).unwrap_err();
        assert!(e.to_string().contains(what), "{name}: {e}");
    }
}

#[test]
fn named_namespaces_are_interchangeable_with_ip_netns() {
    if !can_run(&["ip"]) {
        return;
    }
    // Made by the library; `ip netns` must see it as one of its own.
    let name = support::unique("vxt");
    netns::create_named(&name).unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
    let ns = TestNetns::adopt(&name);
    let listed = support::run("ip", &["netns", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ns.name.as_str())),
        "{listed}"
    );
    ns.ip_ok(&["link", "show", "dev", "lo"]);

    let e = netns::create_named(&ns.name).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST), "{e}");

    // run_in's thread really is inside: its namespace is the file's.
    let want = std::fs::metadata(ns.handle().path().unwrap())
        .unwrap()
        .ino();
    let inside = netns::run_in(&ns.handle(), || {
        std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino())
    })
    .unwrap()
    .unwrap();
    assert_eq!(inside, want);
    let outside = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
    assert_ne!(outside, want, "the caller's thread never moves");

    netns::delete_named(&ns.name).expect("delete");
    let listed = support::run("ip", &["netns", "list"]);
    // Compare whole names: `vxt-PID-1` is a prefix of `vxt-PID-10`.
    assert!(
        !listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ns.name.as_str())),
        "{listed}"
    );
    let e = netns::delete_named(&ns.name).unwrap_err();
    assert!(e.to_string().contains("no namespace named"), "{e}");
}

#[test]
fn entering_a_non_namespace_file_is_a_clear_error() {
    if !can_run(&[]) {
        return;
    }
    let e = netns::run_in(&Netns::Path("/proc/self/status".into()), || ()).unwrap_err();
    assert!(
        e.to_string().contains("not a network namespace file"),
        "{e}"
    );
}

/// Environment variable that turns [`helper_attach_without_capabilities`]
/// into the child side of [`attach_existing_needs_no_capability_when_owned`].
const CHILD_ENV: &str = "VXSWITCH_TEST_ATTACH_CHILD";

/// Child half of [`attach_existing_needs_no_capability_when_owned`]: run
/// as a separate process without capabilities, it attaches to the TAP
/// named in [`CHILD_ENV`] and prints what happened. A no-op otherwise.
#[test]
fn helper_attach_without_capabilities() {
    let Ok(name) = std::env::var(CHILD_ENV) else {
        return;
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .unwrap_or("CapEff: ?")
        .to_string();
    match ports::attach_existing(&name, false) {
        Ok(tap) => println!("{cap_eff}\nATTACH-OK {}", tap.mac),
        Err(e) => println!("{cap_eff}\nATTACH-ERR {e}"),
    }
}

/// Runs the child half inside `ns` as uid 0 with every capability dropped
/// (so `/dev/net/tun`, mode 0600 root here, still opens, but the kernel's
/// TAP owner check applies), and returns its output.
fn attach_without_caps(ns: &TestNetns, name: &str) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let setpriv = [
        "netns",
        "exec",
        &ns.name,
        "setpriv",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ];
    let out = support::cmd("ip", &setpriv)
        .arg(exe)
        .args([
            "--exact",
            "helper_attach_without_capabilities",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, name)
        .output()
        .expect("run the child test process");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("CapEff:\t0000000000000000"),
        "child kept capabilities: {text}"
    );
    text
}

#[test]
fn attach_existing_needs_no_capability_when_owned() {
    if !can_run(&["ip", "setpriv"]) {
        return;
    }
    let ns = TestNetns::bare("vxt");
    ns.ip_ok(&[
        "tuntap", "add", "dev", "vxmine0", "mode", "tap", "user", "0",
    ]);
    ns.ip_ok(&[
        "tuntap", "add", "dev", "vxother0", "mode", "tap", "user", "65534",
    ]);
    let mac = ip_link(&ns, "vxmine0")["address"]
        .as_str()
        .unwrap()
        .to_string();
    let out = attach_without_caps(&ns, "vxmine0");
    assert!(out.contains(&format!("ATTACH-OK {mac}")), "{out}");
    let out = attach_without_caps(&ns, "vxother0");
    assert!(
        out.contains("ATTACH-ERR cannot attach TAP vxother0: permission denied: vxother0 is owned by uid 65534"),
        "{out}"
    );
}
