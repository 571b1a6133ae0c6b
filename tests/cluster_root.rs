//! The cluster control plane as users run it (docs/cluster.md): vxswitch
//! daemons with `--cluster`, each in a network namespace of its own (a
//! "host"), on a shared underlay (a kernel bridge in an underlay namespace),
//! with a private etcd inside that underlay namespace (its own data
//! directory and ports, killed by PID when the test ends). Containers are
//! namespaces with a port of a host's daemon. No `vtep add` anywhere: every
//! VTEP and remote FDB entry comes from the cluster. With the endpoints
//! known, tshark on the underlay bridge sees no broadcast ARP in VXLAN:
//! each host's switch answers for the remote endpoints (ARP suppression).
//!
//! The faults of issue 16: a daemon killed with SIGKILL vanishes from the
//! others within TTL + 2 s; an etcd outage (`VXSWITCH_TEST_OUTAGE_SECS`,
//! default 10 s here, 60 s in the issue: the behaviour does not depend on
//! the length once it exceeds the TTL) leaves forwarding untouched and what
//! changed meanwhile converges after it; a restart with `--state-dir`
//! re-publishes under a new lease while the other hosts keep every entry; a
//! colliding host id, and a clock two minutes off (etcd seen through a
//! proxy that rewrites its `Date:`), are refused; an unreachable etcd at start leaves a
//! daemon that serves local networks and says so; a 3-member etcd losing a
//! member changes nothing. Then the cluster IPAM through CNI and through two
//! Docker hosts.

mod support;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::capture::Capture;
use support::{
    can_run, can_run_with, cmd, exact_transfer, run, run_raw, signal, unique, wait_for, wait_until,
    Daemon, Netns, TempDir, BIN,
};
use vxswitch::cluster::etcd::{Client, EtcdConfig};
use vxswitch::cluster::http::TlsFiles;

/// The lease TTL the daemons here run with (`--cluster-ttl`).
const TTL: u64 = 3;
const NET: &str = "blue";
const VNI: &str = "4242";
const SUBNET: &str = "10.42.0.0/24";
const ETCD_IP: &str = "198.18.0.100";

/// The commands every test here runs (etcd through `ip netns exec`).
const TOOLS: &[&str] = &["ip", "ping", "etcd", "kill"];

/// One etcd member inside the underlay namespace, killed by PID on drop.
struct Etcd {
    child: Option<Child>,
    ns: String,
    ip: String,
    name: String,
    initial_cluster: String,
    dir: TempDir,
    /// Serve https with client-certificate auth (`Etcd::single_tls`).
    tls: Option<EtcdTls>,
}

/// etcd's certificate, key and the CA of its clients, and the files the
/// clients (the readiness probe) use.
struct EtcdTls {
    cert: String,
    key: String,
    ca: String,
    client: TlsFiles,
}

impl Etcd {
    /// A single-member etcd at `ip` in `ns`, answering.
    fn single(ns: &Netns, ip: &str) -> Etcd {
        let mut e = Etcd::member(ns, ip, "n1", &format!("n1=http://{ip}:2380"));
        e.spawn();
        e.wait_ready();
        e
    }

    /// A member (not started) of a cluster `initial_cluster`.
    fn member(ns: &Netns, ip: &str, name: &str, initial_cluster: &str) -> Etcd {
        Etcd {
            child: None,
            ns: ns.name.clone(),
            ip: ip.to_string(),
            name: name.to_string(),
            initial_cluster: initial_cluster.to_string(),
            dir: TempDir::new("vxetcd"),
            tls: None,
        }
    }

    /// A single-member etcd serving https with `--client-cert-auth`.
    fn single_tls(ns: &Netns, ip: &str, tls: EtcdTls) -> Etcd {
        let mut e = Etcd::member(ns, ip, "n1", &format!("n1=http://{ip}:2380"));
        e.tls = Some(tls);
        e.spawn();
        e.wait_ready();
        e
    }

    fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:2379", self.ip)
    }

    fn spawn(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.0.join("etcd.log"))
            .unwrap();
        let data = self.dir.0.join("data");
        let peer = format!("http://{}:2380", self.ip);
        let client = self.url();
        let mut tls_args: Vec<&str> = Vec::new();
        if let Some(t) = &self.tls {
            tls_args.extend([
                "--cert-file",
                &t.cert,
                "--key-file",
                &t.key,
                "--trusted-ca-file",
                &t.ca,
                "--client-cert-auth",
            ]);
        }
        let child = cmd(
            "ip",
            &[
                &[
                    "netns",
                    "exec",
                    &self.ns,
                    "etcd",
                    "--name",
                    &self.name,
                    "--data-dir",
                    data.to_str().unwrap(),
                    "--listen-client-urls",
                    &client,
                    "--advertise-client-urls",
                    &client,
                    "--listen-peer-urls",
                    &peer,
                    "--initial-advertise-peer-urls",
                    &peer,
                    "--initial-cluster",
                    &self.initial_cluster,
                    "--initial-cluster-state",
                    "new",
                ][..],
                &tls_args,
            ]
            .concat(),
        )
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start etcd");
        self.child = Some(child);
    }

    /// Waits until the member answers a read (in the underlay namespace).
    fn wait_ready(&self) {
        let ns = vxswitch::ports::Netns::named(&self.ns);
        let url = self.url();
        let tls = self.tls.as_ref().map(|t| t.client.load().unwrap());
        let ok = wait_until(Duration::from_secs(20), || {
            let url = url.clone();
            let tls = tls.clone();
            vxswitch::ports::netns::run_in(&ns, move || {
                let mut cfg = EtcdConfig::new(EtcdConfig::parse_endpoints(&url).unwrap());
                cfg.tls = tls;
                cfg.connect_timeout = Duration::from_millis(300);
                cfg.request_timeout = Duration::from_secs(1);
                Client::new(cfg).get(b"/probe").is_ok()
            })
            .unwrap_or(false)
        });
        assert!(ok, "etcd {} did not answer:\n{}", self.name, self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("etcd.log")).unwrap_or_default()
    }

    /// Kills the member (SIGKILL, by PID); its data stays.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on its data.
    fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A host: a namespace on the underlay bridge, maybe running a daemon.
struct Host {
    // Declared first: the daemon goes before its namespace.
    daemon: Option<Daemon>,
    id: String,
    ip: String,
    ns: Netns,
}

impl Host {
    fn d(&self) -> &Daemon {
        self.daemon.as_ref().expect("the host's daemon runs")
    }
}

/// The underlay (namespace with bridge br0) and the etcd in it.
struct Lab {
    etcd: Vec<Etcd>,
    ul: Netns,
}

impl Lab {
    /// The underlay and a single etcd at [`ETCD_IP`].
    fn new() -> Lab {
        let ul = underlay(&[ETCD_IP]);
        let etcd = vec![Etcd::single(&ul, ETCD_IP)];
        Lab { etcd, ul }
    }

    /// The client URLs of every member, as `--cluster` takes them.
    fn urls(&self) -> String {
        self.etcd
            .iter()
            .map(Etcd::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Host `n` (198.18.0.n, id `hN`) with a daemon joined to the cluster.
    fn host(&self, n: u8, extra: &[&str]) -> Host {
        let mut h = self.bare_host(n);
        self.start_daemon(&mut h, extra);
        h
    }

    /// Host `n` on the underlay, no daemon yet.
    fn bare_host(&self, n: u8) -> Host {
        let ns = Netns::new("clh");
        let peer = format!("v{n}");
        run(
            "ip",
            &[
                "-n",
                &ns.name,
                "link",
                "add",
                "ul0",
                "type",
                "veth",
                "peer",
                "name",
                &peer,
                "netns",
                &self.ul.name,
            ],
        );
        self.ul.ip_ok(&["link", "set", &peer, "master", "br0"]);
        self.ul.ip_ok(&["link", "set", &peer, "up"]);
        let ip = format!("198.18.0.{n}");
        ns.ip_ok(&["addr", "add", &format!("{ip}/24"), "dev", "ul0"]);
        ns.ip_ok(&["link", "set", "ul0", "up"]);
        let etcd = &self.etcd[0].ip;
        assert!(
            ns.ping_within(etcd, Duration::from_secs(5)),
            "host {n} cannot reach etcd's address {etcd} on the underlay"
        );
        Host {
            daemon: None,
            id: format!("h{n}"),
            ip,
            ns,
        }
    }

    /// Starts host `h`'s daemon with `--cluster` (and `extra`).
    fn start_daemon(&self, h: &mut Host, extra: &[&str]) {
        let urls = self.urls();
        let ttl = TTL.to_string();
        let mut args = vec![
            "--cluster",
            &urls,
            "--underlay-ip",
            &h.ip,
            "--cluster-ttl",
            &ttl,
        ];
        if !extra.contains(&"--host-id") {
            args.extend_from_slice(&["--host-id", &h.id]);
        }
        args.extend_from_slice(extra);
        h.daemon = Some(Daemon::start_in(Some(&h.ns), &args));
    }
}

/// `secs` since the epoch as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WD[days.rem_euclid(7) as usize],
        MON[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A TCP proxy in `ns` from `listen` to `upstream` (etcd) that sets the
/// `Date:` of every answer to the time `skew_secs` from now: etcd as a host
/// with a wrong clock sees it. Stops accepting when the flag is set.
fn date_proxy(
    ns: &Netns,
    listen: &str,
    upstream: &str,
    skew_secs: i64,
) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let (listen, upstream) = (listen.to_string(), upstream.to_string());
    // Sockets (and threads spawned from here) live in the namespace.
    ns.enter(move || {
        let l = TcpListener::bind(&listen).unwrap();
        l.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut s2);
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
                let (mut from, mut to) = (server, client);
                std::thread::spawn(move || {
                    const PAT: &[u8] = b"\r\nDate: ";
                    const LEN: usize = 29;
                    let (mut buf, mut chunk) = (Vec::new(), [0u8; 16384]);
                    loop {
                        let n = match from.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        let mut i = 0;
                        while let Some(p) = buf[i..].windows(PAT.len()).position(|w| w == PAT) {
                            let at = i + p + PAT.len();
                            if buf.len() < at + LEN {
                                break;
                            }
                            let now = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap()
                                .as_secs() as i64;
                            let date = http_date(now + skew_secs);
                            buf[at..at + LEN].copy_from_slice(date.as_bytes());
                            i = at + LEN;
                        }
                        // Hold back only what may be the start of a Date header.
                        let keep = (0..buf.len())
                            .rev()
                            .take(PAT.len() + LEN)
                            .find(|&k| {
                                let tail = &buf[k..];
                                tail.len() >= 3
                                    && tail.starts_with(b"\r\nD")
                                    && (tail.len() < PAT.len() + LEN)
                                    && PAT.starts_with(&tail[..tail.len().min(PAT.len())])
                            })
                            .unwrap_or(buf.len());
                        if to.write_all(&buf[..keep]).is_err() {
                            return;
                        }
                        buf.drain(..keep);
                    }
                });
            }
        });
    });
    stop
}

/// The underlay namespace: bridge br0 carrying `addrs` (etcd's).
fn underlay(addrs: &[&str]) -> Netns {
    let ul = Netns::new("clul");
    ul.ip_ok(&["link", "add", "br0", "type", "bridge"]);
    for a in addrs {
        ul.ip_ok(&["addr", "add", &format!("{a}/24"), "dev", "br0"]);
    }
    ul.ip_ok(&["link", "set", "br0", "up"]);
    ul
}

/// A container: a namespace with a port of `h`'s daemon on `network`,
/// address 10.42.0.`n`, MAC 02:42:00:00:00:`n`.
fn container(h: &Host, network: &str, n: u8) -> (Netns, String, String) {
    let ns = Netns::new("clc");
    let ip = format!("10.42.0.{n}");
    let mac = format!("02:42:00:00:00:{n:02x}");
    h.d().port_add(
        &format!("c{n}"),
        network,
        &ns,
        &format!("{ip}/24"),
        &["--mac", &mac],
    );
    (ns, ip, mac)
}

/// `network create blue --cluster` on `h`, once `h` is in the cluster (as
/// a script waits: etcd written to once, so it takes writes).
fn create_network(h: &Host) {
    wait_for(
        Duration::from_secs(20),
        &format!("{} in sync", h.id),
        || status(h.d())["synced"] == true,
    );
    h.d().cli(&[
        "network",
        "create",
        NET,
        "--cluster",
        "--vni",
        VNI,
        "--subnet",
        SUBNET,
        "--gateway",
        "10.42.0.1",
    ]);
}

/// Waits until `h` has cluster network `net` (created by another host).
fn wait_network(h: &Host, net: &str) {
    wait_for(
        Duration::from_secs(10),
        &format!("{net} on {}", h.id),
        || {
            h.d()
                .json(&["network", "ls"])
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["name"] == net && n["scope"] == "cluster")
        },
    );
}

/// MACs `fdb show` lists as kind `cluster` in `network`.
fn cluster_macs(d: &Daemon, network: &str) -> BTreeSet<String> {
    d.json(&["fdb", "show", "--network", network])
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "cluster")
        .map(|r| r["mac"].as_str().unwrap().to_string())
        .collect()
}

/// The VTEPs of `network` (address, cluster-managed).
fn vteps(d: &Daemon, network: &str) -> BTreeSet<(String, bool)> {
    d.json(&["vtep", "ls", network])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["addr"].as_str().unwrap().to_string(),
                v["cluster"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

fn status(d: &Daemon) -> Value {
    d.json(&["cluster", "status"])
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Waits until `d` lists exactly `macs` as cluster entries of `NET`.
fn wait_macs(d: &Daemon, who: &str, macs: &[&str]) {
    let want = set(macs);
    let ok = wait_until(Duration::from_secs(10), || cluster_macs(d, NET) == want);
    assert!(
        ok,
        "{who}: cluster FDB entries {:?}, want {want:?}\nlog:\n{}",
        cluster_macs(d, NET),
        d.log()
    );
}

#[test]
fn three_hosts_converge_without_vtep_lists_a_fourth_joins_and_a_killed_one_vanishes() {
    if !can_run(&[TOOLS, &["tshark"]].concat()) {
        return;
    }
    let lab = Lab::new();
    let (h1, h2, mut h3) = (lab.host(1, &[]), lab.host(2, &[]), lab.host(3, &[]));
    // `vxswitch monitor` on h2: the cluster's changes are events there.
    let mon_dir = TempDir::new("vxsw-clmon-");
    let events = mon_dir.0.join("h2.events");
    let _monitor = support::Proc(
        cmd(
            BIN,
            &["--socket", h2.d().socket.to_str().unwrap(), "monitor"],
        )
        .stdout(std::fs::File::create(&events).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vxswitch monitor"),
    );
    let h2_events = || std::fs::read_to_string(&events).unwrap_or_default();
    wait_for(Duration::from_secs(10), "h2's monitor to subscribe", || {
        !h2_events().is_empty()
    });
    create_network(&h1);
    // Created once, on h1; every host has it, as a cluster network.
    for h in [&h2, &h3] {
        wait_network(h, NET);
    }
    let ls = h1.d().cli(&["network", "ls"]);
    assert!(ls.contains("SCOPE") && ls.contains("cluster"), "{ls}");
    let (c1, ip1, mac1) = container(&h1, NET, 11);
    let (c2, ip2, mac2) = container(&h2, NET, 12);
    let (c3, ip3, mac3) = container(&h3, NET, 13);
    wait_macs(h1.d(), "h1", &[&mac2, &mac3]);
    wait_macs(h2.d(), "h2", &[&mac1, &mac3]);
    wait_macs(h3.d(), "h3", &[&mac1, &mac2]);
    // The other hosts are the network's VTEPs, managed by the cluster.
    assert_eq!(
        vteps(h1.d(), NET),
        [
            ("198.18.0.2:4789".to_string(), true),
            ("198.18.0.3:4789".to_string(), true)
        ]
        .into()
    );
    let fdb = h1.d().cli(&["fdb", "show", "--network", NET]);
    assert!(
        fdb.contains(&mac2) && fdb.contains("vtep 198.18.0.2:4789") && fdb.contains("cluster"),
        "{fdb}"
    );
    // Every pair pings and moves an exact byte stream.
    let all = [(&c1, &ip1), (&c2, &ip2), (&c3, &ip3)];
    for (a, _) in all {
        for (b, ip) in all {
            if a.name != b.name {
                assert!(
                    a.ping_within(ip, Duration::from_secs(5)),
                    "{} cannot ping {ip}",
                    a.name
                );
                exact_transfer(a, b, ip, 1 << 20);
            }
        }
    }
    // ARP suppression: once the endpoints are known, no broadcast ARP
    // crosses the underlay. Every container forgets its neighbours and
    // pings every other again, while tshark watches the hosts' bridge.
    let mut cap = Capture::start(&lab.ul, "br0", &h1.ip);
    for (a, _) in all {
        a.ip_ok(&["neigh", "flush", "all"]);
    }
    for (a, _) in all {
        for (b, ip) in all {
            if a.name != b.name {
                assert!(a.ping(ip), "{} cannot ping {ip} again", a.name);
            }
        }
    }
    cap.stop();
    let arp = cap.rows(
        "vxlan && arp.opcode == 1 && eth.dst == ff:ff:ff:ff:ff:ff",
        &["ip.src", "arp.src.proto_ipv4", "arp.dst.proto_ipv4"],
    );
    assert!(
        arp.is_empty(),
        "broadcast ARP requests crossed the underlay: {arp:?}"
    );
    let echoes = cap.rows("vxlan && icmp.type == 8", &["ip.src"]);
    assert!(
        echoes.len() >= 6,
        "the capture shows the pings in VXLAN: {echoes:?}"
    );
    for h in [&h1, &h2, &h3] {
        let s = h.d().json(&["stats"]);
        let row = &s["suppress"][0];
        assert_eq!(row["network"], NET, "{s}");
        // Its own container and the two remote ones.
        assert_eq!(row["bindings"], 3, "{}: {row}", h.id);
        assert!(row["answered"].as_u64().unwrap() >= 2, "{}: {row}", h.id);
    }

    let st = status(h1.d());
    assert_eq!(
        (
            st["connected"].clone(),
            st["registered"].clone(),
            st["synced"].clone()
        ),
        (true.into(), true.into(), true.into()),
        "{st}"
    );
    assert_eq!(st["hosts"], 3, "{st}");
    assert_eq!(st["published"], 1, "{st}");
    assert_eq!(st["remote_endpoints"], 2, "{st}");

    // A fourth host joins: reached by all, reaching all.
    let h4 = lab.host(4, &[]);
    wait_network(&h4, NET);
    let (c4, ip4, mac4) = container(&h4, NET, 14);
    wait_macs(h1.d(), "h1", &[&mac2, &mac3, &mac4]);
    for (a, _) in all {
        assert!(
            a.ping_within(&ip4, Duration::from_secs(5)),
            "{} -> {ip4}",
            a.name
        );
    }
    for ip in [&ip1, &ip2, &ip3] {
        assert!(c4.ping(ip), "c4 -> {ip}");
    }

    // h3's daemon is killed (no revoke): within TTL + 2 s its VTEP and its
    // endpoint are gone from every other host.
    let killed = Instant::now();
    signal(h3.d().child.id(), "KILL");
    let gone = |d: &Daemon| {
        !cluster_macs(d, NET).contains(&mac3)
            && !vteps(d, NET)
                .iter()
                .any(|(a, _)| a.starts_with("198.18.0.3:"))
    };
    let ok = wait_until(Duration::from_secs(TTL + 5), || {
        gone(h1.d()) && gone(h2.d()) && gone(h4.d())
    });
    let took = killed.elapsed();
    eprintln!("killed host vanished from the others after {took:?} (TTL {TTL} s)");
    assert!(ok, "h3 still present after {took:?}");
    assert!(
        took <= Duration::from_secs(TTL + 2),
        "h3 vanished only after {took:?}, more than TTL + 2 s"
    );
    // The others still talk.
    assert!(
        c1.ping(&ip2) && c2.ping(&ip4),
        "the survivors lost each other"
    );
    h3.daemon = None;
    // h2's monitor told each change the cluster made there.
    let want = [
        format!("network_created network={NET} cause=\"cluster\""),
        format!("vtep_added network={NET} vtep=198.18.0.1:4789 cause=\"cluster\""),
        format!("vtep_added network={NET} vtep=198.18.0.4:4789 cause=\"cluster\""),
        format!(
            "config network={NET} mac={mac4} vtep=198.18.0.4:4789 what=fdb.add cause=\"cluster\""
        ),
        format!("vtep_removed network={NET} vtep=198.18.0.3:4789 cause=\"cluster\""),
    ];
    let mut seen = String::new();
    let all_seen = wait_until(Duration::from_secs(10), || {
        seen = h2_events();
        want.iter().all(|w| seen.contains(w.as_str()))
    });
    assert!(all_seen, "h2's monitor lacks one of {want:#?}:\n{seen}");
}

/// Length of the etcd outage (issue 16 asks for 60 s; the default here is
/// shorter, above the TTL, which is what the behaviour depends on).
fn outage() -> Duration {
    let secs = std::env::var("VXSWITCH_TEST_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    Duration::from_secs(secs)
}

/// `ping -i INTERVAL -c COUNT` from `ns` to `ip`, in the background.
fn ping_train(ns: &Netns, ip: &str, interval: &str, count: u32) -> Child {
    cmd(
        "ip",
        &[
            "netns",
            "exec",
            &ns.name,
            "ping",
            "-n",
            "-i",
            interval,
            "-c",
            &count.to_string(),
            "-W",
            "1",
            ip,
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("start ping")
}

/// The icmp_seq numbers that got a reply, from ping's output.
fn replies(out: &Output) -> Vec<u32> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("icmp_seq="))
                .and_then(|s| s.parse().ok())
        })
        .collect()
}

/// The longest run of missing replies among `count` requests.
fn longest_gap(seqs: &[u32], count: u32) -> u32 {
    let got: BTreeSet<u32> = seqs.iter().copied().collect();
    let (mut best, mut run) = (0, 0);
    for s in 1..=count {
        if got.contains(&s) {
            run = 0;
        } else {
            run += 1;
            best = best.max(run);
        }
    }
    best
}

#[test]
fn an_etcd_outage_leaves_forwarding_untouched_and_changes_converge_after_it() {
    if !can_run(TOOLS) {
        return;
    }
    let mut lab = Lab::new();
    let (h1, h2) = (lab.host(1, &[]), lab.host(2, &[]));
    create_network(&h1);
    wait_network(&h2, NET);
    let (c1, _, mac1) = container(&h1, NET, 11);
    let (_c5, _, mac5) = container(&h1, NET, 15);
    let (_c2, ip2, mac2) = container(&h2, NET, 12);
    wait_macs(h1.d(), "h1", &[&mac2]);
    wait_macs(h2.d(), "h2", &[&mac1, &mac5]);
    assert!(c1.ping_within(&ip2, Duration::from_secs(5)));

    let outage = outage();
    let count = u32::try_from(outage.as_millis() / 100).unwrap();
    let pings = ping_train(&c1, &ip2, "0.1", count);
    lab.etcd[0].kill();
    let down = Instant::now();
    wait_for(
        Duration::from_secs(TTL + 5),
        "h1 to notice etcd is gone",
        || status(h1.d())["connected"] == false,
    );
    let st = status(h1.d());
    assert!(st["error"].as_str().is_some_and(|e| !e.is_empty()), "{st}");
    assert!(
        h1.d().log().contains("etcd is unreachable"),
        "no log line about the outage:\n{}",
        h1.d().log()
    );
    // Changes during the outage: a new container on h2, one gone on h1;
    // cluster-wide requests are refused as unavailable, local ones work.
    let (c3, ip3, mac3) = container(&h2, NET, 13);
    h1.d().cli(&["port", "rm", "c15"]);
    let refused = h1
        .d()
        .cli_raw(&["network", "create", "green", "--cluster", "--vni", "77"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("etcd must answer"),
        "{err}"
    );
    // Nothing was removed meanwhile.
    assert_eq!(cluster_macs(h1.d(), NET), set(&[&mac2]));
    assert_eq!(cluster_macs(h2.d(), NET), set(&[&mac1, &mac5]));
    let out = pings.wait_with_output().unwrap();
    let got = replies(&out);
    eprintln!(
        "during the outage: {} of {count} pings answered (every 100 ms for {outage:?})",
        got.len()
    );
    assert!(
        got.len() as u32 >= count - 1,
        "forwarding was disturbed during the outage: {} of {count} replies",
        got.len()
    );
    while down.elapsed() < outage {
        std::thread::sleep(Duration::from_millis(100));
    }

    // etcd returns: the changes converge (re-list and diff).
    lab.etcd[0].restart();
    let back = Instant::now();
    wait_macs(h1.d(), "h1", &[&mac2, &mac3]);
    wait_macs(h2.d(), "h2", &[&mac1]);
    eprintln!("converged {:?} after etcd answered again", back.elapsed());
    assert!(
        c1.ping_within(&ip3, Duration::from_secs(5)),
        "c1 -> c3 ({ip3})"
    );
    assert!(c3.ping(&ip2.replace(".12", ".11")), "c3 -> c1");
    for h in [&h1, &h2] {
        let st = status(h.d());
        assert_eq!(st["connected"], true, "{st}");
        assert_eq!(
            st["lease_losses"], 0,
            "etcd keeps leases over a restart: {st}"
        );
    }
}

#[test]
fn a_restart_with_a_state_dir_republishes_under_a_new_lease_without_a_gap() {
    if !can_run(TOOLS) {
        return;
    }
    let lab = Lab::new();
    let state = TempDir::new("vxclst");
    let state_dir = state.0.to_str().unwrap().to_string();
    let h1 = lab.host(1, &[]);
    let mut h2 = lab.host(2, &["--state-dir", &state_dir]);
    create_network(&h1);
    wait_network(&h2, NET);
    let (c1, _, mac1) = container(&h1, NET, 11);
    let (_c2, ip2, mac2) = container(&h2, NET, 12);
    wait_macs(h1.d(), "h1", &[&mac2]);
    wait_macs(h2.d(), "h2", &[&mac1]);
    assert!(c1.ping_within(&ip2, Duration::from_secs(5)));
    let lease = status(h2.d())["lease"].clone();

    // Pings every 10 ms across the restart; h1 watched meanwhile.
    let count = 500;
    let pings = ping_train(&c1, &ip2, "0.01", count);
    let watch = {
        let sock = h1.d().socket.clone();
        let (mac2, stop) = (
            mac2.clone(),
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
        let flag = stop.clone();
        let t = std::thread::spawn(move || {
            let mut missing = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let out = run(
                    BIN,
                    &["--socket", sock.to_str().unwrap(), "--json", "fdb", "show"],
                );
                if !out.contains(&mac2) || !out.contains("cluster") {
                    missing += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            missing
        });
        (stop, t)
    };
    std::thread::sleep(Duration::from_millis(1000));
    let t0 = Instant::now();
    let st = h2.daemon.as_mut().unwrap().terminate();
    assert!(st.success(), "{st}");
    lab.start_daemon(&mut h2, &["--state-dir", &state_dir]);
    eprintln!("daemon restarted in {:?}", t0.elapsed());
    let out = pings.wait_with_output().unwrap();
    watch.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let missing = watch.1.join().unwrap();
    let got = replies(&out);
    let gap = longest_gap(&got, count);
    eprintln!(
        "restart: {} of {count} pings (every 10 ms) answered; longest gap {gap} pings (~{} ms)",
        got.len(),
        gap * 10
    );
    assert_eq!(missing, 0, "h1 lost h2's endpoint during the restart");
    assert!(
        gap <= 100,
        "a gap of {gap} pings (~{} ms) across the restart",
        gap * 10
    );
    // Re-published under a new lease, the record taken over.
    wait_for(Duration::from_secs(5), "h2 registered again", || {
        status(h2.d())["registered"] == true
    });
    let st = status(h2.d());
    assert_ne!(st["lease"], lease, "{st}");
    assert_eq!(st["takeovers"], 1, "{st}");
    assert!(
        h2.d().log().contains("taking over the record"),
        "{}",
        h2.d().log()
    );
    wait_for(Duration::from_secs(5), "h2 to publish again", || {
        status(h2.d())["published"] == 1
    });
    // The old lease's expiry removes nothing.
    std::thread::sleep(Duration::from_secs(TTL + 1));
    assert_eq!(cluster_macs(h1.d(), NET), set(&[&mac2]));
    assert!(c1.ping(&ip2));
}

#[test]
fn a_colliding_host_id_or_a_wrong_clock_is_refused_and_an_unreachable_etcd_leaves_local_networks_served(
) {
    if !can_run(TOOLS) {
        return;
    }
    let lab = Lab::new();
    let h1 = lab.host(1, &[]);
    // Host 2 claims h1's id: refused, with what to do.
    let h2 = lab.host(2, &["--host-id", "h1"]);
    wait_for(Duration::from_secs(10), "h2 to be refused", || {
        status(h2.d())["refused"] == true
    });
    let st = status(h2.d());
    let err = st["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("host id \"h1\" is taken by a live host (VTEP 198.18.0.1")
            && err.contains("--host-id"),
        "{st}"
    );
    assert!(
        h2.d()
            .log()
            .contains("registration refused: host id \"h1\" is taken"),
        "{}",
        h2.d().log()
    );
    let text = h2.d().cli(&["cluster", "status"]);
    assert!(text.contains("state:            refused"), "{text}");
    assert_eq!(status(h1.d())["hosts"], 1, "h2 must not have registered");

    // Host 4's clock is two minutes ahead of etcd's (etcd seen through a
    // proxy that dates its answers two minutes back): refused.
    let proxy = date_proxy(
        &lab.ul,
        &format!("{ETCD_IP}:2479"),
        &format!("{ETCD_IP}:2379"),
        -120,
    );
    let mut h4 = lab.bare_host(4);
    h4.daemon = Some(Daemon::start_in(
        Some(&h4.ns),
        &[
            "--cluster",
            &format!("http://{ETCD_IP}:2479"),
            "--underlay-ip",
            "198.18.0.4",
            "--host-id",
            "h4",
        ],
    ));
    wait_for(Duration::from_secs(10), "h4 to be refused", || {
        status(h4.d())["refused"] == true
    });
    let st = status(h4.d());
    let err = st["error"].as_str().unwrap_or_default();
    assert!(
        (err.contains("this host's clock is 119 s off etcd's")
            || err.contains("this host's clock is 120 s off etcd's"))
            && err.contains("NTP"),
        "{st}"
    );
    assert!(
        h4.d()
            .log()
            .contains("registration refused: this host's clock is"),
        "{}",
        h4.d().log()
    );
    assert_eq!(status(h1.d())["hosts"], 1, "h4 must not have registered");
    h4.daemon = None;
    proxy.store(true, std::sync::atomic::Ordering::Relaxed);

    // Host 3 starts while its etcd cannot be reached: it serves local
    // networks and says so.
    let mut h3 = lab.bare_host(3);
    h3.daemon = Some(Daemon::start_in(
        Some(&h3.ns),
        &[
            "--cluster",
            &format!("http://{ETCD_IP}:2399"),
            "--underlay-ip",
            "198.18.0.3",
            "--host-id",
            "h3",
        ],
    ));
    wait_for(
        Duration::from_secs(10),
        "h3 to report etcd unreachable",
        || {
            let st = status(h3.d());
            st["connected"] == false && st["error"].as_str().is_some()
        },
    );
    assert!(
        h3.d().log().contains("etcd is unreachable"),
        "{}",
        h3.d().log()
    );
    h3.d()
        .cli(&["network", "create", "red", "--subnet", "10.77.0.0/24"]);
    let (a, b) = (Netns::new("clc"), Netns::new("clc"));
    h3.d().port_add("a", "red", &a, "10.77.0.11/24", &[]);
    h3.d().port_add("b", "red", &b, "10.77.0.12/24", &[]);
    assert!(a.ping_within("10.77.0.12", Duration::from_secs(5)));
    let refused = h3
        .d()
        .cli_raw(&["network", "create", "x", "--cluster", "--vni", "9"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("etcd must answer"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // etcd becomes reachable at that address: h3 joins on its own.
    let reachable = date_proxy(
        &lab.ul,
        &format!("{ETCD_IP}:2399"),
        &format!("{ETCD_IP}:2379"),
        0,
    );
    wait_for(
        Duration::from_secs(10),
        "h3 to join once etcd answers",
        || {
            let st = status(h3.d());
            st["registered"] == true && st["synced"] == true
        },
    );
    assert!(
        h3.d().log().contains("etcd answers again"),
        "{}",
        h3.d().log()
    );
    assert_eq!(status(h1.d())["hosts"], 2, "h1 and h3");
    assert!(a.ping("10.77.0.12"), "the local network still works");
    h3.daemon = None;
    reachable.store(true, std::sync::atomic::Ordering::Relaxed);
}

#[test]
fn a_three_member_etcd_losing_one_member_changes_nothing_for_vxswitch() {
    if !can_run(TOOLS) {
        return;
    }
    let ips = ["198.18.0.101", "198.18.0.102", "198.18.0.103"];
    let ul = underlay(&ips);
    let initial = (1..=3)
        .map(|i| format!("n{i}=http://{}:2380", ips[i - 1]))
        .collect::<Vec<_>>()
        .join(",");
    let mut etcd: Vec<Etcd> = (1..=3)
        .map(|i| Etcd::member(&ul, ips[i - 1], &format!("n{i}"), &initial))
        .collect();
    for e in &mut etcd {
        e.spawn();
    }
    for e in &etcd {
        e.wait_ready();
    }
    let mut lab = Lab { etcd, ul };
    let (h1, h2) = (lab.host(1, &[]), lab.host(2, &[]));
    create_network(&h1);
    wait_network(&h2, NET);
    let (c1, _, mac1) = container(&h1, NET, 11);
    let (_c2, ip2, mac2) = container(&h2, NET, 12);
    wait_macs(h1.d(), "h1", &[&mac2]);
    wait_macs(h2.d(), "h2", &[&mac1]);
    assert!(c1.ping_within(&ip2, Duration::from_secs(5)));
    let before: Vec<Value> = [&h1, &h2].iter().map(|h| status(h.d())).collect();

    // The first member, the one every client starts with, dies.
    let pings = ping_train(&c1, &ip2, "0.05", 80);
    lab.etcd[0].kill();
    let (c3, ip3, mac3) = container(&h2, NET, 13);
    wait_macs(h1.d(), "h1", &[&mac2, &mac3]);
    assert!(c1.ping_within(&ip3, Duration::from_secs(5)));
    assert!(c3.ping(&ip2));
    let out = pings.wait_with_output().unwrap();
    let got = replies(&out).len();
    assert!(got >= 79, "pings lost while a member died: {got} of 80");
    for (h, was) in [&h1, &h2].iter().zip(&before) {
        let st = status(h.d());
        assert_eq!(st["lease"], was["lease"], "{} changed lease: {st}", h.id);
        assert_eq!(st["lease_losses"], 0, "{st}");
        assert_eq!(st["registered"], true, "{st}");
    }
    assert_eq!(cluster_macs(h2.d(), NET), set(&[&mac1]));
}

/// The vxswitch binary as the CNI plugin (`vxswitch-cni`), in a directory.
fn cni_plugin(dir: &TempDir) -> PathBuf {
    let p = dir.0.join("vxswitch-cni");
    std::os::unix::fs::symlink(BIN, &p).unwrap();
    p
}

/// A CNI ADD/DEL with `"ipam": {"type": "vxswitch"}` for container `id` in
/// `ns` on `h`'s daemon.
fn cni(plugin: &Path, h: &Host, command: &str, id: &str, ns: &Netns) -> support::CniOutcome {
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "blue-cni",
        "type": "vxswitch-cni",
        "network": NET,
        "socket": h.d().socket,
        "ipam": {"type": "vxswitch"},
    })
    .to_string();
    let netns = ns.path();
    support::cni_exec(
        plugin,
        "/nonexistent",
        command,
        &[
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", &netns),
            ("CNI_IFNAME", "eth0"),
        ],
        &conf,
    )
}

fn cni_ip(out: &support::CniOutcome) -> String {
    assert!(out.ok, "CNI ADD failed: {} {}", out.stdout, out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    v["ips"][0]["address"].as_str().unwrap().to_string()
}

#[test]
fn cni_with_the_cluster_ipam_never_hands_out_an_address_twice() {
    if !can_run(TOOLS) {
        return;
    }
    let lab = Lab::new();
    let (h1, h2) = (lab.host(1, &[]), lab.host(2, &[]));
    create_network(&h1);
    wait_network(&h2, NET);
    let dir = TempDir::new("vxclcni");
    let plugin = cni_plugin(&dir);
    let (a, b, c) = (Netns::new("clc"), Netns::new("clc"), Netns::new("clc"));
    let ip_a = cni_ip(&cni(&plugin, &h1, "ADD", "ctr-a", &a));
    let ip_b = cni_ip(&cni(&plugin, &h2, "ADD", "ctr-b", &b));
    // The lowest free addresses (the gateway .1 is reserved), one per host.
    assert_eq!(
        [ip_a.as_str(), ip_b.as_str()]
            .into_iter()
            .collect::<BTreeSet<_>>(),
        ["10.42.0.2/24", "10.42.0.3/24"].into()
    );
    let b_addr = ip_b.split('/').next().unwrap();
    assert!(
        a.ping_within(b_addr, Duration::from_secs(5)),
        "{ip_a} -> {ip_b}"
    );
    // DEL releases, and again is fine; the address is handed out again.
    for _ in 0..2 {
        let del = cni(&plugin, &h1, "DEL", "ctr-a", &a);
        assert!(del.ok, "DEL: {} {}", del.stdout, del.stderr);
    }
    let ip_c = cni_ip(&cni(&plugin, &h1, "ADD", "ctr-c", &c));
    assert_eq!(
        ip_c, ip_a,
        "the released address is the lowest free one again"
    );
}

// ---------------------------------------------------------------------------
// Docker: two dockerd hosts, one cluster network, the cluster IPAM.

/// The docker client of the engine package.
fn docker_bin() -> String {
    ["/usr/bin/docker", "/bin/docker"]
        .iter()
        .find(|p| Path::new(p).is_file())
        .map(|p| p.to_string())
        .or_else(|| support::which("docker").map(|p| p.display().to_string()))
        .unwrap_or_else(|| "/usr/bin/docker".into())
}

/// The plugin and a private dockerd in a host's namespace (as in
/// tests/docker_root.rs), next to the host's daemon.
struct DockerHost {
    dockerd: Option<Child>,
    plugin: Option<Child>,
    driver: String,
    plugin_socket: PathBuf,
    image: String,
    root: TempDir,
    ns: String,
}

impl DockerHost {
    fn command(&self, prog: impl AsRef<OsStr>) -> Command {
        let mut c = cmd("nsenter", &[&format!("--net=/run/netns/{}", self.ns), "--"]);
        c.arg(prog);
        c
    }

    fn path(&self, name: &str) -> String {
        self.root.0.join(name).display().to_string()
    }

    fn start(h: &Host) -> DockerHost {
        let driver = unique("vxcl");
        let mut d = DockerHost {
            dockerd: None,
            plugin: None,
            plugin_socket: PathBuf::from(format!("/run/docker/plugins/{driver}.sock")),
            driver,
            image: unique("vxclbb"),
            root: TempDir::new("vxcd"),
            ns: h.ns.name.clone(),
        };
        let log = std::fs::File::create(d.root.0.join("plugin.log")).unwrap();
        let plugin = d
            .command(BIN)
            .args(["--socket", h.d().socket.to_str().unwrap()])
            .args(["docker-plugin", "--debug", "--plugin-socket"])
            .arg(&d.plugin_socket)
            .arg("--state-dir")
            .arg(d.root.0.join("plugin-state"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn docker-plugin");
        d.plugin = Some(plugin);
        let sock = d.plugin_socket.clone();
        assert!(wait_until(Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        }));
        let config = d.root.0.join("daemon.json");
        std::fs::write(
            &config,
            serde_json::json!({ "deprecated-key-path": d.root.0.join("key.json") }).to_string(),
        )
        .unwrap();
        let log = std::fs::File::create(d.root.0.join("dockerd.log")).unwrap();
        let path = format!(
            "{}:/usr/sbin:/usr/bin:/sbin:/bin",
            std::env::var("PATH").unwrap_or_default()
        );
        let child = d
            .command(support::which("dockerd").expect("dockerd"))
            .env("PATH", path)
            .arg("--config-file")
            .arg(&config)
            .args([
                "--data-root",
                &d.path("data"),
                "--exec-root",
                &d.path("exec"),
            ])
            .args(["--pidfile", &d.path("dockerd.pid")])
            .args(["-H", &format!("unix://{}", d.path("docker.sock"))])
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        d.dockerd = Some(child);
        assert!(
            wait_until(Duration::from_secs(60), || d
                .docker_raw(&["version"])
                .status
                .success()),
            "dockerd did not start:\n{}",
            std::fs::read_to_string(d.root.0.join("dockerd.log")).unwrap_or_default()
        );
        let dir = d.root.0.join("image");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            support::which("busybox").expect("busybox"),
            dir.join("busybox"),
        )
        .unwrap();
        std::fs::write(
            dir.join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
        )
        .unwrap();
        let image = d.image.clone();
        d.docker(&[
            "build",
            "--network",
            "none",
            "-q",
            "-t",
            &image,
            dir.to_str().unwrap(),
        ]);
        d
    }

    fn docker_raw(&self, args: &[&str]) -> Output {
        let sock = format!("unix://{}", self.path("docker.sock"));
        let mut all = vec!["-H", &sock];
        all.extend_from_slice(args);
        run_raw(&docker_bin(), &all)
    }

    fn docker(&self, args: &[&str]) -> String {
        let out = self.docker_raw(args);
        assert!(
            out.status.success(),
            "`docker {}` failed: {}{}\nplugin log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.root.0.join("plugin.log")).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn ip_of(&self, container: &str) -> String {
        self.docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            container,
        ])
    }
}

impl Drop for DockerHost {
    fn drop(&mut self) {
        if self.dockerd.is_some() {
            let ids = self.docker_raw(&["ps", "-aq"]);
            let ids = String::from_utf8_lossy(&ids.stdout).to_string();
            let mut args = vec!["rm", "-f"];
            args.extend(ids.split_whitespace());
            if args.len() > 2 {
                let _ = self.docker_raw(&args);
            }
            let _ = self.docker_raw(&["network", "prune", "-f"]);
        }
        if let Some(mut c) = self.dockerd.take() {
            support::run_for_cleanup("kill", &["-TERM", &c.id().to_string()]);
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for pidfile in [
            "exec/containerd/containerd.pid",
            "data/containerd/daemon/containerd.pid",
        ] {
            if let Ok(pid) = std::fs::read_to_string(self.root.0.join(pidfile)) {
                let pid = pid.trim();
                if !pid.is_empty() && Path::new(&format!("/proc/{pid}")).exists() {
                    support::run_for_cleanup("kill", &["-KILL", pid]);
                }
            }
        }
        if let Some(mut c) = self.plugin.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.plugin_socket);
        let root = self.root.0.display().to_string();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|p| p.starts_with(&root))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            support::run_for_cleanup("umount", &["-l", p]);
        }
    }
}

#[test]
fn two_docker_hosts_on_one_cluster_network_get_distinct_addresses_and_talk() {
    let mut tools = TOOLS.to_vec();
    tools.extend_from_slice(&[
        "dockerd",
        "containerd",
        "runc",
        "busybox",
        "umount",
        "nsenter",
    ]);
    if !can_run_with(&tools, &[&docker_bin()]) {
        return;
    }
    let lab = Lab::new();
    let (h1, h2) = (lab.host(1, &[]), lab.host(2, &[]));
    // Once, from any host: the cluster network.
    create_network(&h1);
    wait_network(&h2, NET);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| DockerHost::start(&h1));
        let b = s.spawn(|| DockerHost::start(&h2));
        (a.join(), b.join())
    });
    let (a, b) = match (a, b) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => std::panic::resume_unwind(e),
    };
    // On each Docker host: the same command, the vxswitch IPAM.
    for d in [&a, &b] {
        d.docker(&[
            "network",
            "create",
            "-d",
            &d.driver,
            "--ipam-driver",
            &d.driver,
            "--subnet",
            SUBNET,
            "-o",
            &format!("vxswitch.cluster={NET}"),
            "app",
        ]);
    }
    let run_one = |d: &DockerHost, name: &str| {
        d.docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "app",
            &d.image,
            "sleep",
            "600",
        ]);
        d.ip_of(name)
    };
    let ips = [
        run_one(&a, "a1"),
        run_one(&b, "b1"),
        run_one(&a, "a2"),
        run_one(&b, "b2"),
    ];
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), 4, "addresses handed out twice: {ips:?}");
    for ip in &ips {
        assert!(ip.starts_with("10.42.0.") && ip != "10.42.0.1", "{ips:?}");
    }
    let ping = |d: &DockerHost, from: &str, to: &str| {
        wait_until(Duration::from_secs(10), || {
            d.docker_raw(&["exec", from, "ping", "-c", "1", "-W", "1", to])
                .status
                .success()
        })
    };
    assert!(ping(&a, "a1", &ips[1]), "a1 -> b1 ({})", ips[1]);
    assert!(ping(&b, "b2", &ips[2]), "b2 -> a2 ({})", ips[2]);
    // Both hosts' containers are cluster endpoints on the other host.
    assert_eq!(cluster_macs(h1.d(), NET).len(), 2);
    assert_eq!(cluster_macs(h2.d(), NET).len(), 2);
    // A removed container's address comes back (ReleaseAddress).
    a.docker(&["rm", "-f", "a2"]);
    let again = run_one(&b, "b3");
    assert_eq!(again, ips[2], "the released address is handed out again");
    drop((a, b));
}

/// Daemons join an etcd that serves https with `--client-cert-auth`
/// (`--cluster https://... --cluster-cacert --cluster-cert --cluster-key`)
/// and share a cluster network; a daemon without a client certificate
/// serves on, unregistered, and its log says what to give.
#[test]
fn hosts_join_an_etcd_over_https_with_client_certificates() {
    if !can_run(&[TOOLS, &["openssl"]].concat()) {
        return;
    }
    let certs = TempDir::new("vxpki");
    let pki = support::certs::Pki::new(&certs.0, &[ETCD_IP]);
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let ul = underlay(&[ETCD_IP]);
    let tls = EtcdTls {
        cert: path(&pki.server_cert),
        key: path(&pki.server_key),
        ca: path(&pki.ca),
        client: TlsFiles {
            cacert: Some(pki.ca.clone()),
            cert: Some(pki.client_cert.clone()),
            key: Some(pki.client_key.clone()),
        },
    };
    let etcd = vec![Etcd::single_tls(&ul, ETCD_IP, tls)];
    let lab = Lab { etcd, ul };
    assert!(lab.urls().starts_with("https://"), "{}", lab.urls());
    let (ca, cert, key) = (path(&pki.ca), path(&pki.client_cert), path(&pki.client_key));
    let with_cert = [
        "--cluster-cacert",
        &ca,
        "--cluster-cert",
        &cert,
        "--cluster-key",
        &key,
    ];
    let h1 = lab.host(1, &with_cert);
    let h2 = lab.host(2, &with_cert);
    create_network(&h1);
    wait_network(&h2, NET);
    let st = status(h2.d());
    assert_eq!(st["registered"], true, "{st}");

    let h3 = lab.host(3, &["--cluster-cacert", &ca]);
    wait_for(
        Duration::from_secs(20),
        "h3's log to say etcd wants a client certificate",
        || {
            h3.d()
                .log()
                .contains("give --cluster-cert FILE and --cluster-key FILE")
        },
    );
    assert_eq!(status(h3.d())["registered"], false);
}
