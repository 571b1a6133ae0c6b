//! `vxswitch daemon --state-dir DIR`: the switch restarts under running
//! containers. Their TAPs stay (persistent), the next daemon re-attaches
//! them, and the containers keep interface, address, MAC and even an open
//! TCP connection. Root only (namespaces, TAPs); skips outside CI without.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use support::{can_run, link_names, packet_sockets_on, Daemon, Netns, TempDir};
use vxswitch::ports::{netns::run_in, Netns as Sandbox};

fn state_file(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("state.json")).expect("state.json exists");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("state.json is not JSON ({e}): {text}"))
}

/// `port ls --json` as name -> (mac, ifname, netns).
fn ports(d: &Daemon) -> Vec<(String, String, String, String)> {
    let ls = d.json(&["port", "ls"]);
    let mut v: Vec<_> = ls
        .as_array()
        .unwrap_or_else(|| panic!("port ls is no list: {ls}"))
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or("-").to_string();
            (s("name"), s("mac"), s("ifname"), s("netns"))
        })
        .collect();
    v.sort();
    v
}

/// The `tun` details of `eth0` in `ns` (`ip -d -j link`): multi_queue,
/// numqueues (queues a process holds open), persist.
fn tun_of(ns: &Netns) -> serde_json::Value {
    let link = ns.ip_json(&["-d", "link", "show", "dev", "eth0"]);
    let info = &link[0]["linkinfo"];
    assert_eq!(
        info["info_kind"], "tun",
        "eth0 in {} is no TAP: {link}",
        ns.name
    );
    info["info_data"].clone()
}

/// The kind of `eth0` in `ns` (`tun`, `veth`).
fn link_kind(ns: &Netns) -> String {
    let link = ns.ip_json(&["-d", "link", "show", "dev", "eth0"]);
    link[0]["linkinfo"]["info_kind"]
        .as_str()
        .unwrap_or("-")
        .to_string()
}

/// A veth port's host end as `port ls` says (empty for a TAP port).
fn host_end(d: &Daemon, port: &str) -> String {
    let ls = d.json(&["port", "ls"]);
    ls.as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == port))
        .and_then(|p| p["host_ifname"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn sandbox(ns: &Netns) -> Sandbox {
    Sandbox::Path(ns.path().into())
}

/// Reads exactly `want.len()` bytes (with a deadline) and compares.
fn expect(s: &mut TcpStream, want: &[u8], what: &str) {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("{what}: reading {want:?} failed: {e}"));
    assert_eq!(got, want, "{what}");
}

#[test]
fn containers_keep_taps_macs_and_tcp_over_a_restart() {
    if !can_run(&["ip", "ping", "kill"]) {
        return;
    }
    let (c1, c2) = (Netns::new("vxr"), Netns::new("vxr"));
    let state = TempDir::new("vxsw-state-");
    let mut first = Daemon::start_with_state(&state.0, &["--workers", "2"]);
    first.cli(&[
        "network",
        "create",
        "red",
        "--subnet",
        "10.79.1.0/24",
        "--gateway",
        "10.79.1.1",
        "--gateway-port",
        "switch",
    ]);
    first.port_add("c1", "red", &c1, "10.79.1.11/24", &["--container", "web"]);
    first.port_add("c2", "red", &c2, "10.79.1.12/24", &[]);
    first.cli(&[
        "fdb",
        "add",
        "--network",
        "red",
        "02:00:00:00:99:01",
        "--port",
        "c1",
    ]);
    assert!(
        c1.ping_within("10.79.1.12", Duration::from_secs(5)),
        "c1 cannot ping c2 before the restart\n{}",
        first.log()
    );
    // Two workers: each TAP has two queues, and is persistent (it must
    // outlive the daemon).
    // On veth ports (VXSWITCH_BACKEND=veth): a veth, with one packet
    // socket per worker on its host end.
    let hosts = [host_end(&first, "c1"), host_end(&first, "c2")];
    for (c, host) in [&c1, &c2].into_iter().zip(&hosts) {
        if support::veth_backend() {
            assert_eq!(link_kind(c), "veth", "eth0 in {}", c.name);
            assert_eq!(packet_sockets_on(host), 2, "{host} with 2 workers");
            continue;
        }
        let t = tun_of(c);
        assert_eq!(
            (&t["multi_queue"], &t["numqueues"], &t["persist"]),
            (&true.into(), &2.into(), &true.into()),
            "eth0 in {} with 2 workers: {t}",
            c.name
        );
    }
    let before_ports = ports(&first);
    let before_nets = first.json(&["network", "ls"]);
    // The state file names both ports and the static entry.
    let saved = state_file(&state.0);
    assert_eq!(saved["ports"].as_array().map(Vec::len), Some(2), "{saved}");
    assert_eq!(
        saved["static_fdb"][0]["mac"], "02:00:00:00:99:01",
        "{saved}"
    );

    // A TCP connection between the containers, sockets opened inside them.
    let listener = run_in(&sandbox(&c2), || TcpListener::bind("10.79.1.12:7007"))
        .unwrap()
        .unwrap();
    let to: SocketAddr = "10.79.1.12:7007".parse().unwrap();
    let mut client = run_in(&sandbox(&c1), || {
        TcpStream::connect_timeout(&to, Duration::from_secs(5))
    })
    .unwrap()
    .unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"before").unwrap();
    expect(&mut server, b"before", "c2 from c1 before the restart");

    let st = first.terminate();
    assert!(st.success(), "daemon exited with {st}:\n{}", first.log());
    let log = first.log();
    assert!(
        log.contains(&format!(
            "leaving 2 ports for the next start (state in {})",
            state.0.display()
        )),
        "{log}"
    );
    for (c, host) in [&c1, &c2].into_iter().zip(&hosts) {
        let links = link_names(&c.name);
        assert!(
            links.iter().any(|n| n == "eth0"),
            "eth0 gone from {} after the stop: {links:?}",
            c.name
        );
        if support::veth_backend() {
            // The host end stays, with no socket on it.
            assert!(Path::new("/sys/class/net").join(host).exists(), "{host}");
            assert_eq!(packet_sockets_on(host), 0, "{host} after the stop");
            continue;
        }
        // Left with no queue open: nothing holds the old daemon's fds.
        assert_eq!(
            tun_of(c)["numqueues"],
            0,
            "eth0 in {} after the stop",
            c.name
        );
    }

    // Sent while nothing switches: lost on the wire, retransmitted by TCP.
    client.write_all(b"during").unwrap();

    // A different number of workers: the multi-queue TAPs get one queue now.
    let second = Daemon::start_with_state(&state.0, &["--workers", "1"]);
    assert!(
        second.log().contains("restored 1 network and 2 ports from"),
        "{}",
        second.log()
    );
    assert_eq!(ports(&second), before_ports, "{}", second.log());
    // One worker now: the same multi-queue TAPs, one queue each.
    for (c, host) in [&c1, &c2].into_iter().zip(&hosts) {
        if support::veth_backend() {
            assert_eq!(packet_sockets_on(host), 1, "{host} with 1 worker");
            continue;
        }
        let t = tun_of(c);
        assert_eq!(
            (&t["multi_queue"], &t["numqueues"]),
            (&true.into(), &1.into()),
            "eth0 in {} after a restart with 1 worker: {t}",
            c.name
        );
    }
    let after_nets = second.json(&["network", "ls"]);
    assert_eq!(after_nets, before_nets);
    let fdb = second.cli(&["fdb", "show", "--network", "red"]);
    assert!(fdb.contains("02:00:00:00:99:01"), "{fdb}");
    assert!(
        c2.ping_within("10.79.1.11", Duration::from_secs(10)),
        "c2 cannot ping c1 after the restart\n{}",
        second.log()
    );
    assert!(
        c1.ping_within("10.79.1.1", Duration::from_secs(5)),
        "the switch gateway does not answer after the restart\n{}",
        second.log()
    );
    // The connection opened before the restart carries data both ways.
    client.write_all(b"after-1").unwrap();
    expect(
        &mut server,
        b"duringafter-1",
        "c2 from c1 across the restart",
    );
    server.write_all(b"after-2").unwrap();
    expect(&mut client, b"after-2", "c1 from c2 after the restart");

    // `port rm` after the restore deletes the TAP.
    second.cli(&["port", "rm", "c2"]);
    let links = link_names(&c2.name);
    assert!(
        !links.iter().any(|n| n == "eth0"),
        "port rm left eth0 in {}: {links:?}",
        c2.name
    );
    let saved = state_file(&state.0);
    assert_eq!(saved["ports"].as_array().map(Vec::len), Some(1), "{saved}");
    // `network rm --force` deletes the rest.
    second.cli(&["network", "rm", "red", "--force"]);
    let links = link_names(&c1.name);
    assert!(
        !links.iter().any(|n| n == "eth0"),
        "network rm left eth0 in {}: {links:?}",
        c1.name
    );
}

#[test]
fn a_port_whose_namespace_went_away_is_dropped_and_reported() {
    if !can_run(&["ip", "ping", "kill"]) {
        return;
    }
    let (keep, lose) = (Netns::new("vxr"), Netns::new("vxr"));
    let (other, untapped) = (Netns::new("vxr"), Netns::new("vxr"));
    let state = TempDir::new("vxsw-state-");
    let mut first = Daemon::start_with_state(&state.0, &[]);
    first.cli(&["network", "create", "blue", "--subnet", "10.79.2.0/24"]);
    first.port_add("k", "blue", &keep, "10.79.2.11/24", &[]);
    first.port_add("l", "blue", &lose, "10.79.2.12/24", &[]);
    first.port_add("o", "blue", &other, "10.79.2.13/24", &[]);
    first.port_add("u", "blue", &untapped, "10.79.2.14/24", &[]);
    let u_host = host_end(&first, "u");
    assert!(first.terminate().success(), "{}", first.log());
    // ... and someone deletes another one's interface.
    support::run("ip", &["-n", &untapped.name, "link", "del", "eth0"]);
    // While the switch is down, one container goes away for good.
    let lost_path = lose.path();
    drop(lose);
    assert!(!Path::new(&lost_path).exists());

    let second = Daemon::start_with_state(&state.0, &[]);
    let log = second.log();
    assert!(
        log.contains(&format!(
            "restore: port l (network blue) dropped: its namespace {lost_path} is gone"
        )),
        "{log}"
    );
    // A veth port's (VXSWITCH_BACKEND=veth) is its host end, which went
    // with the container's.
    let device = match u_host.as_str() {
        "" => "TAP eth0".to_string(),
        host => format!("veth {host}"),
    };
    assert!(
        log.contains(&format!(
            "restore: port u (network blue) dropped: cannot attach {device}: it no longer \
             exists"
        )) && log.contains(&format!("(in {})", untapped.path())),
        "{log}"
    );
    assert!(log.contains("(2 dropped, see above)"), "{log}");
    let mut names = second.port_names();
    names.sort();
    assert_eq!(names, ["k", "o"]);
    let saved = state_file(&state.0);
    let saved_names: Vec<&str> = saved["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(saved_names, ["k", "o"], "{saved}");
    assert!(
        keep.ping_within("10.79.2.13", Duration::from_secs(10)),
        "the remaining ports do not forward after the restore\n{log}"
    );
}

#[test]
fn a_network_whose_vxlan_port_is_busy_at_start_is_kept_and_comes_back() {
    if !can_run(&["ip", "ping", "kill"]) {
        return;
    }
    let c = Netns::new("vxr");
    let state = TempDir::new("vxsw-state-");
    // A port of our own, so that holding it disturbs nobody else.
    let port = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.local_addr())
        .unwrap()
        .port()
        .to_string();
    let mut first = Daemon::start_with_state(&state.0, &["--vxlan-port", &port]);
    first.cli(&[
        "network",
        "create",
        "red",
        "--subnet",
        "10.79.5.0/24",
        "--gateway",
        "10.79.5.1",
        "--gateway-port",
        "switch",
        "--vni",
        "5005",
        "--vtep",
        "198.18.0.9",
    ]);
    first.port_add("c1", "red", &c, "10.79.5.11/24", &[]);
    assert!(first.terminate().success(), "{}", first.log());
    let saved = state_file(&state.0);

    // At the next start something else holds the VXLAN port (a kernel
    // vxlan device, a daemon not quite gone): a transient failure.
    let holder = std::net::UdpSocket::bind(format!("0.0.0.0:{port}")).unwrap();
    let second = Daemon::start_with_state(&state.0, &["--vxlan-port", &port]);
    let log = second.log();
    assert!(
        log.contains("restore: network red not restored yet: network \"red\": ")
            && log.contains(&format!("cannot bind the VXLAN UDP port 0.0.0.0:{port}"))
            && log.contains("retried until it works or is removed ('vxswitch network rm red')"),
        "{log}"
    );
    assert!(
        log.contains(
            "restore: port c1 (network red) not restored yet: its network red is not restored \
             yet"
        ),
        "{log}"
    );
    assert!(log.contains("(2 pending, retried, see above)"), "{log}");
    // Nothing erased: the file names the network and the port as before,
    // and the TAP waits in the container.
    let kept = state_file(&state.0);
    assert_eq!(kept["networks"], saved["networks"]);
    assert_eq!(kept["ports"], saved["ports"]);
    assert!(link_names(&c.name).iter().any(|n| n == "eth0"));
    let st = second.json(&["stats"]);
    let pending: Vec<&str> = st["pending"]
        .as_array()
        .unwrap_or_else(|| panic!("no pending list in {st}"))
        .iter()
        .filter_map(|p| p["item"].as_str())
        .collect();
    assert_eq!(pending, ["network red", "port c1 (network red)"], "{st}");

    // Once the port is free, both come back on their own.
    drop(holder);
    let back = support::wait_until(Duration::from_secs(15), || {
        second.port_names().iter().any(|p| p == "c1")
    });
    assert!(
        back,
        "the network and port did not come back:\n{}",
        second.log()
    );
    assert!(
        second
            .log()
            .contains("restore: network red restored on retry"),
        "{}",
        second.log()
    );
    assert!(
        c.ping_within("10.79.5.1", Duration::from_secs(5)),
        "the restored port does not reach its gateway\n{}",
        second.log()
    );
    let st = second.json(&["stats"]);
    assert!(st.get("pending").is_none(), "{st}");
    assert_eq!(state_file(&state.0)["ports"], saved["ports"]);
}

#[test]
fn a_corrupt_state_file_stops_the_start_naming_the_file() {
    if !can_run(&[]) {
        return;
    }
    let state = TempDir::new("vxsw-state-");
    let file = state.0.join("state.json");
    std::fs::write(&file, "{\"version\": 1, \"ports\": [{\"name\": \"c1\"").unwrap();
    let (status, err) = Daemon::start_failing(&["--state-dir", state.0.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("state file {} is corrupt", file.display())),
        "{err}"
    );
    assert!(err.contains("EOF while parsing"), "{err}");
    // Untouched: nothing was started over it.
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "{\"version\": 1, \"ports\": [{\"name\": \"c1\""
    );
}

#[test]
fn without_a_state_dir_a_stop_still_deletes_the_taps() {
    if !can_run(&["ip", "kill"]) {
        return;
    }
    let c = Netns::new("vxr");
    let mut d = Daemon::start(&[]);
    d.cli(&["network", "create", "plain"]);
    d.port_add("p", "plain", &c, "10.79.3.11/24", &[]);
    assert!(link_names(&c.name).iter().any(|n| n == "eth0"));
    assert!(d.terminate().success(), "{}", d.log());
    assert!(!d.log().contains("leaving"), "{}", d.log());
    let links = link_names(&c.name);
    assert!(!links.iter().any(|n| n == "eth0"), "{links:?}");
}

/// Runs the CNI plugin (`BIN` under the name `vxswitch-cni`) with
/// CNI_COMMAND=`cmd`, `env` and `conf` on stdin; (success, stdout, stderr).
fn cni(plugin: &Path, cmd: &str, env: &[(&str, &str)], conf: &str) -> (bool, String, String) {
    let out = support::cni_exec(plugin, "/usr/lib/cni", cmd, env, conf);
    (out.ok, out.stdout, out.stderr)
}

#[test]
fn cni_check_and_del_work_on_a_restored_port() {
    const HOST_LOCAL: &str = "/usr/lib/cni/host-local";
    if !support::can_run_with(&["ip", "kill"], &[HOST_LOCAL]) {
        return;
    }
    let bin = TempDir::new("vxcni-bin-");
    let plugin = bin.0.join("vxswitch-cni");
    std::os::unix::fs::symlink(support::BIN, &plugin).unwrap();
    let ipam = TempDir::new("vxcni-ipam-");
    let state = TempDir::new("vxsw-state-");
    let ns = Netns::new("vxr");
    let net = support::unique("cnirst");
    let conf = |d: &Daemon| {
        serde_json::json!({
            "cniVersion": "1.0.0", "name": net, "type": "vxswitch-cni", "socket": d.socket,
            "ipam": {"type": "host-local", "dataDir": ipam.0,
                     "ranges": [[{"subnet": "10.79.4.0/24", "gateway": "10.79.4.1"}]]}
        })
    };
    let path = ns.path();
    let id = support::unique("cid-");
    let env = [
        ("CNI_CONTAINERID", id.as_str()),
        ("CNI_NETNS", path.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=pod-r"),
    ];
    let mut first = Daemon::start_with_state(&state.0, &[]);
    first.cli(&["network", "create", &net, "--subnet", "10.79.4.0/24"]);
    let (ok, out, err) = cni(&plugin, "ADD", &env, &conf(&first).to_string());
    assert!(ok, "ADD failed: {out}{err}");
    let prev: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(first.terminate().success(), "{}", first.log());

    let second = Daemon::start_with_state(&state.0, &[]);
    let mut c = conf(&second);
    c["prevResult"] = prev;
    let (ok, out, err) = cni(&plugin, "CHECK", &env, &c.to_string());
    assert!(
        ok,
        "CHECK of a restored port failed: {out}{err}\n{}",
        second.log()
    );
    let (ok, out, err) = cni(&plugin, "DEL", &env, &c.to_string());
    assert!(ok, "DEL of a restored port failed: {out}{err}");
    assert!(second.port_names().is_empty(), "{:?}", second.port_names());
    let links = link_names(&ns.name);
    assert!(
        !links.iter().any(|n| n == "eth0"),
        "DEL left eth0: {links:?}"
    );
}

#[test]
fn two_daemons_cannot_share_a_state_dir() {
    if !can_run(&["kill"]) {
        return;
    }
    let state = TempDir::new("vxsw-state-");
    let mut first = Daemon::start_with_state(&state.0, &[]);
    let pid = first.child.id();
    let (status, err) = Daemon::start_failing(&["--state-dir", state.0.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "state directory {} is in use by the vxswitch daemon with PID {pid}",
            state.0.display()
        )),
        "{err}"
    );
    // Once it stopped, the directory is free again.
    assert!(first.terminate().success(), "{}", first.log());
    let _second = Daemon::start_with_state(&state.0, &[]);
}
