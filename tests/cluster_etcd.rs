//! The cluster control plane against a real etcd (Debian's `etcd-server`,
//! 3.4): the client, agents converging, faults, IPAM.
//!
//! Each test starts its own etcd on free loopback ports with its own data
//! directory; a guard kills it by PID and removes the directory, also when
//! the test fails. Without an `etcd` binary the tests print a skip, or fail
//! with `CI=true`. No root needed, except by the TLS test (it lists its
//! commands, openssl and etcd, through `support::can_run`).

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vxswitch::cluster::etcd::{
    Client, Compare, EtcdConfig, EtcdError, TxnOp, WatchEvent, WatchMessage,
};
use vxswitch::cluster::http::{Endpoint, TlsFiles};
use vxswitch::cluster::ipam::{self, DeadHosts};
use vxswitch::cluster::mem::MemDataplane;
use vxswitch::cluster::schema::{HostId, NetworkRecord, Schema, SubnetRecord};
use vxswitch::cluster::store::Created;
use vxswitch::cluster::{Agent, AgentConfig, ClusterError, LocalEndpoint, State};
use vxswitch::wire::MacAddr;

/// A private etcd, killed and wiped on drop.
struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    /// Serve https with these (server cert, key, CA of client certs), and
    /// the client's TLS files for its own probes.
    tls: Option<(ServerTls, TlsFiles)>,
}

/// etcd's TLS flags: `--cert-file`, `--key-file`, `--trusted-ca-file`
/// with `--client-cert-auth`.
#[derive(Clone)]
struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn etcd_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("VXSWITCH_ETCD") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Etcd {
    /// Starts etcd, or returns `None` (a printed skip) when it is not
    /// installed; with `CI=true` a missing etcd fails the test.
    fn start() -> Option<Etcd> {
        Etcd::start_with(None)
    }

    fn start_with(tls: Option<(ServerTls, TlsFiles)>) -> Option<Etcd> {
        let Some(bin) = etcd_binary() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("etcd is not installed (apt-get install etcd-server) and CI=true");
            }
            eprintln!("SKIP: etcd is not installed (apt-get install etcd-server)");
            return None;
        };
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vxswitch-etcd-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut e = Etcd {
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            tls,
        };
        e.spawn(&bin);
        Some(e)
    }

    fn spawn(&mut self, bin: &PathBuf) {
        let log = std::fs::File::create(self.dir.join("etcd.log")).unwrap();
        let curl = self.endpoint().to_string();
        let purl = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new(bin);
        if let Some((t, _)) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.cert)
                .arg("--key-file")
                .arg(&t.key)
                .arg("--trusted-ca-file")
                .arg(&t.client_ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.join("data"))
            .args([
                "--listen-client-urls",
                &curl,
                "--advertise-client-urls",
                &curl,
            ])
            .args([
                "--listen-peer-urls",
                &purl,
                "--initial-advertise-peer-urls",
                &purl,
            ])
            .args(["--initial-cluster", &format!("t={purl}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
        let mut c = self.client();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match c.get(b"/health-probe") {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => {
                    let log =
                        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
                    panic!("etcd did not come up: {e}\n{log}");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn endpoint(&self) -> Endpoint {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
            .parse()
            .unwrap()
    }

    fn config(&self) -> EtcdConfig {
        let mut c = EtcdConfig::new(vec![self.endpoint()]);
        c.tls = self.tls.as_ref().map(|(_, f)| f.load().unwrap());
        c.request_timeout = Duration::from_secs(3);
        c.connect_timeout = Duration::from_millis(500);
        c
    }

    fn client(&self) -> Client {
        Client::new(self.config())
    }

    /// Kills etcd (data kept) for an outage.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and data.
    fn restart(&mut self) {
        self.stop();
        self.spawn(&etcd_binary().unwrap());
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes.
fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn client_kv_txn_lease_watch_against_etcd() {
    let Some(etcd) = Etcd::start() else { return };
    let mut c = etcd.client();

    let r1 = c.put(b"/t/a", b"1", 0).unwrap();
    c.put(b"/t/b", b"2", 0).unwrap();
    c.put(b"/u/x", b"3", 0).unwrap();
    let (kv, _) = c.get(b"/t/a").unwrap();
    assert_eq!(kv.unwrap().value, b"1");
    assert_eq!(c.get(b"/t/zz").unwrap().0, None);

    // Paged list at one revision.
    let mut small = etcd.config();
    small.page_size = 1;
    let mut paged = Client::new(small);
    for i in 0..5 {
        paged.put(format!("/p/{i}").as_bytes(), b"v", 0).unwrap();
    }
    let (kvs, rev) = paged.list_prefix(b"/p/").unwrap();
    assert_eq!(kvs.len(), 5);
    assert!(rev > r1);

    // Create-if-absent and compare-and-set.
    let t = c
        .txn(
            &[Compare::absent(&b"/t/a"[..])],
            &[TxnOp::put(&b"/t/a"[..], &b"x"[..], 0)],
            &[TxnOp::get(&b"/t/a"[..])],
        )
        .unwrap();
    assert!(!t.succeeded);
    let t = c
        .txn(
            &[Compare::absent(&b"/t/new"[..])],
            &[TxnOp::put(&b"/t/new"[..], &b"x"[..], 0)],
            &[],
        )
        .unwrap();
    assert!(t.succeeded);
    let (kv, _) = c.get(b"/t/new").unwrap();
    let kv = kv.unwrap();
    let ok = c
        .txn(
            &[Compare::mod_revision(kv.key.clone(), kv.mod_revision)],
            &[TxnOp::put(kv.key.clone(), &b"y"[..], 0)],
            &[],
        )
        .unwrap();
    assert!(ok.succeeded);
    let stale = c
        .txn(
            &[Compare::mod_revision(kv.key.clone(), kv.mod_revision)],
            &[TxnOp::put(kv.key.clone(), &b"z"[..], 0)],
            &[],
        )
        .unwrap();
    assert!(!stale.succeeded);

    // Leases: keys vanish with a revoked lease; keepalive tells a lost lease.
    let lease = c.lease_grant(Duration::from_secs(5)).unwrap();
    c.put(b"/t/leased", b"v", lease.id).unwrap();
    assert!(c.lease_keepalive(lease.id).unwrap().is_some());
    assert!(c.lease_time_to_live(lease.id).unwrap().is_some());
    assert!(c.lease_revoke(lease.id).unwrap());
    assert!(!c.lease_revoke(lease.id).unwrap(), "revoke is idempotent");
    assert_eq!(c.lease_keepalive(lease.id).unwrap(), None);
    assert_eq!(c.get(b"/t/leased").unwrap().0, None);
    let e = c.put(b"/t/leased", b"v", lease.id).unwrap_err();
    assert!(!e.is_unavailable(), "{e}");

    // Watch from a revision: history, then live events, then compaction.
    let mut w = c.watch(b"/t/", r1).unwrap();
    let mut seen = Vec::new();
    c.delete(b"/t/b", None).unwrap();
    wait_for(Duration::from_secs(5), "watch events", || {
        while let Some(m) = w.next(Duration::from_millis(50)).unwrap() {
            if let WatchMessage::Events { events } = m {
                seen.extend(events);
            }
        }
        seen.iter()
            .any(|e| matches!(e, WatchEvent::Delete { key, .. } if key == b"/t/b"))
            .then_some(())
    });
    assert!(matches!(&seen[0], WatchEvent::Put(kv) if kv.key == b"/t/a"));
    let now = c.put(b"/t/c", b"", 0).unwrap();
    c.compact(now).unwrap();
    let mut w = c.watch(b"/t/", r1).unwrap();
    assert!(matches!(
        w.next(Duration::from_secs(3)),
        Ok(Some(WatchMessage::Created { .. }))
    ));
    match w.next(Duration::from_secs(3)) {
        Err(EtcdError::Compacted { compact_revision }) => assert_eq!(compact_revision, now),
        other => panic!("expected Compacted, got {other:?}"),
    }
    let e = c.range(b"/t/", None, r1, 0).unwrap_err();
    assert!(matches!(e, EtcdError::Compacted { .. }), "{e}");

    // The server's clock is visible for the skew check.
    let (server, local) = c.last_server_date().unwrap();
    let skew = local
        .duration_since(server)
        .unwrap_or_else(|e| e.duration());
    assert!(skew < Duration::from_secs(5), "{skew:?}");
}

#[test]
fn client_fails_over_between_endpoints() {
    let Some(etcd) = Etcd::start() else { return };
    // A dead endpoint first: the client moves on to the live one.
    let dead: Endpoint = format!("http://127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cfg = etcd.config();
    cfg.endpoints.insert(0, dead);
    let mut c = Client::new(cfg);
    c.put(b"/f/1", b"x", 0).unwrap();
    assert_eq!(c.get(b"/f/1").unwrap().0.unwrap().value, b"x");
}

// ---- agents ----

const TTL: Duration = Duration::from_secs(3);

fn vtep(i: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::from([198, 18, 0, i]), 4789)
}

fn mac(i: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, i])
}

fn ip(i: u8) -> IpAddr {
    IpAddr::from([10, 42, 0, i])
}

fn config(etcd: &Etcd, host: &str, i: u8) -> AgentConfig {
    let mut c = AgentConfig::new(etcd.config(), HostId::new(host).unwrap(), vtep(i));
    c.boot_id = format!("boot-{host}");
    c.ttl = TTL;
    c.retry = Duration::from_millis(200);
    c
}

/// Host `i` with one endpoint (MAC i, 10.42.0.i) in `blue`.
fn start_host(etcd: &Etcd, i: u8) -> (Agent, MemDataplane) {
    let dp = MemDataplane::new();
    dp.set_local(vec![LocalEndpoint {
        network: "blue".into(),
        mac: mac(i),
        ips: vec![ip(i)],
    }]);
    let agent = Agent::start(config(etcd, &format!("h{i}"), i), dp.clone()).unwrap();
    (agent, dp)
}

fn blue() -> NetworkRecord {
    NetworkRecord {
        vni: 4242,
        subnets: vec![SubnetRecord {
            subnet: "10.42.0.0/24".parse().unwrap(),
            gateway: Some("10.42.0.254".parse().unwrap()),
        }],
        mtu: Some(1450),
    }
}

/// Whether `st` (host `me`'s) sees exactly the endpoints of `peers` in blue.
fn sees(st: &State, me: u8, peers: &[u8]) -> bool {
    let net = "blue".to_string();
    let vteps: BTreeSet<_> = peers
        .iter()
        .filter(|p| **p != me)
        .map(|p| (net.clone(), vtep(*p)))
        .collect();
    let fdb: Vec<_> = peers
        .iter()
        .filter(|p| **p != me)
        .map(|p| ((net.clone(), mac(*p)), vtep(*p)))
        .collect();
    let neigh: Vec<_> = peers
        .iter()
        .filter(|p| **p != me)
        .map(|p| ((net.clone(), ip(*p)), mac(*p)))
        .collect();
    st.networks.contains_key("blue")
        && st.vteps == vteps
        && st.fdb.clone().into_iter().collect::<Vec<_>>() == fdb
        && st.neigh.clone().into_iter().collect::<Vec<_>>() == neigh
}

fn converge(hosts: &[(u8, &MemDataplane)], peers: &[u8], timeout: Duration, what: &str) {
    wait_for(timeout, what, || {
        hosts
            .iter()
            .all(|(i, dp)| sees(&dp.state(), *i, peers))
            .then_some(())
    });
}

fn notify(agent: &Agent, dp: &MemDataplane, eps: Vec<LocalEndpoint>) {
    dp.set_local(eps);
    agent.local_endpoints_changed();
}

#[test]
fn agents_converge_without_vtep_lists() {
    let Some(etcd) = Etcd::start() else { return };
    let (a1, d1) = start_host(&etcd, 1);
    let (a2, d2) = start_host(&etcd, 2);
    let (a3, d3) = start_host(&etcd, 3);
    wait_for(Duration::from_secs(5), "registration", || {
        [&a1, &a2, &a3]
            .iter()
            .all(|a| a.status().registered)
            .then_some(())
    });
    let t0 = Instant::now();
    assert_eq!(a1.create_network("blue", blue()).unwrap(), Created::Created);
    assert_eq!(
        a2.create_network("blue", blue()).unwrap(),
        Created::Exists,
        "idempotent"
    );
    let mut other = blue();
    other.vni = 7;
    let e = a2.create_network("blue", other).unwrap_err();
    assert!(
        matches!(e, ClusterError::NetworkExists { vni: 4242, .. }),
        "{e}"
    );
    let e = a3.create_network("green", blue()).unwrap_err();
    assert!(
        matches!(e, ClusterError::VniTaken { vni: 4242, ref network } if network == "blue"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("already used by cluster network \"blue\""),
        "{e}"
    );
    converge(
        &[(1, &d1), (2, &d2), (3, &d3)],
        &[1, 2, 3],
        Duration::from_secs(5),
        "three hosts",
    );
    eprintln!(
        "three hosts converged {:?} after the network was created",
        t0.elapsed()
    );

    // A fourth host joins and is reached; the others learn it.
    let (a4, d4) = start_host(&etcd, 4);
    converge(
        &[(1, &d1), (2, &d2), (3, &d3), (4, &d4)],
        &[1, 2, 3, 4],
        Duration::from_secs(5),
        "fourth host",
    );

    // An endpoint goes: its MAC, binding and (no endpoint left) VTEP go.
    notify(&a3, &d3, vec![]);
    converge(
        &[(1, &d1), (2, &d2), (4, &d4)],
        &[1, 2, 4],
        Duration::from_secs(5),
        "endpoint removal",
    );
    assert!(sees(&d3.state(), 3, &[1, 2, 4]));

    // A dataplane that refuses a change gets it again until it takes it.
    d2.fail_network("blue", true);
    notify(
        &a3,
        &d3,
        vec![LocalEndpoint {
            network: "blue".into(),
            mac: mac(3),
            ips: vec![ip(3)],
        }],
    );
    wait_for(Duration::from_secs(5), "a refused change", || {
        (a2.status().apply_failures > 0).then_some(())
    });
    assert!(a2.status().apply_error.unwrap().contains("refuses"));
    d2.fail_network("blue", false);
    converge(
        &[(1, &d1), (2, &d2), (3, &d3), (4, &d4)],
        &[1, 2, 3, 4],
        Duration::from_secs(5),
        "retried change",
    );
    assert_eq!(a2.status().apply_error, None);

    // A network in use cannot be deleted.
    let e = a1.delete_network("blue").unwrap_err();
    assert!(matches!(e, ClusterError::NetworkInUse { .. }), "{e}");
    let st = a1.status();
    assert!(st.connected && st.synced && st.error.is_none(), "{st:?}");
    assert_eq!(
        (st.hosts, st.networks, st.remote_endpoints, st.published),
        (4, 1, 3, 1)
    );

    // A graceful stop with revoke withdraws the host at once.
    a4.shutdown(true);
    converge(
        &[(1, &d1), (2, &d2), (3, &d3)],
        &[1, 2, 3],
        Duration::from_secs(2),
        "revoked host gone",
    );
}

/// A daemon that cannot say which endpoints it has (its control thread did
/// not answer in time) must not have them withdrawn: an error is retried,
/// never read as "no endpoints".
#[test]
fn an_unanswered_local_endpoints_call_withdraws_nothing() {
    let Some(etcd) = Etcd::start() else { return };
    let (a1, d1) = start_host(&etcd, 1);
    let (a2, d2) = start_host(&etcd, 2);
    wait_for(Duration::from_secs(5), "registration", || {
        (a1.status().registered && a2.status().registered).then_some(())
    });
    a1.create_network("blue", blue()).unwrap();
    converge(
        &[(1, &d1), (2, &d2)],
        &[1, 2],
        Duration::from_secs(5),
        "both",
    );
    d1.fail_local(true);
    // A port changed on host 1, but host 1 cannot list its ports now.
    a1.local_endpoints_changed();
    wait_for(Duration::from_secs(5), "the error in the status", || {
        a1.status()
            .error
            .filter(|e| e.contains("did not answer"))
            .map(|_| ())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sees(&d2.state(), 2, &[1, 2]),
        "host 1's endpoint was withdrawn"
    );
    assert_eq!(a1.status().published, 1);
    d1.fail_local(false);
    notify(&a1, &d1, vec![]);
    converge(
        &[(2, &d2)],
        &[2],
        Duration::from_secs(5),
        "withdrawn once told",
    );
    a1.shutdown(true);
    a2.shutdown(true);
}

#[test]
fn killed_agent_vanishes_within_ttl() {
    let Some(etcd) = Etcd::start() else { return };
    let (a1, d1) = start_host(&etcd, 1);
    let (a2, d2) = start_host(&etcd, 2);
    let (a3, d3) = start_host(&etcd, 3);
    a1.create_network("blue", blue()).unwrap();
    converge(
        &[(1, &d1), (2, &d2), (3, &d3)],
        &[1, 2, 3],
        Duration::from_secs(5),
        "three hosts",
    );
    // As SIGKILL: the thread stops, nothing is revoked.
    drop(a3);
    let t0 = Instant::now();
    converge(
        &[(1, &d1), (2, &d2)],
        &[1, 2],
        TTL + Duration::from_secs(2),
        "dead host gone",
    );
    eprintln!(
        "dead host gone from the others {:?} after it stopped (TTL {TTL:?})",
        t0.elapsed()
    );
    assert!(a1.status().registered && a2.status().registered);
}

#[test]
fn etcd_outage_keeps_state_and_converges_after() {
    let Some(mut etcd) = Etcd::start() else {
        return;
    };
    let (a1, d1) = start_host(&etcd, 1);
    let (a2, d2) = start_host(&etcd, 2);
    a1.create_network("blue", blue()).unwrap();
    converge(
        &[(1, &d1), (2, &d2)],
        &[1, 2],
        Duration::from_secs(5),
        "two hosts",
    );
    let before = (d1.state(), d2.state());

    etcd.stop();
    wait_for(
        Duration::from_secs(10),
        "agents to notice the outage",
        || (!a1.status().connected && !a2.status().connected).then_some(()),
    );
    // Changes on hosts during the outage.
    notify(
        &a1,
        &d1,
        vec![
            LocalEndpoint {
                network: "blue".into(),
                mac: mac(1),
                ips: vec![ip(1)],
            },
            LocalEndpoint {
                network: "blue".into(),
                mac: mac(11),
                ips: vec![ip(11)],
            },
        ],
    );
    // Outage longer than the lease TTL: nothing was withdrawn meanwhile.
    let outage_end = Instant::now() + TTL + Duration::from_secs(1);
    wait_for(TTL * 3, "the outage to last past the TTL", || {
        (Instant::now() >= outage_end).then_some(())
    });
    assert_eq!((d1.state(), d2.state()), before, "last known state kept");
    assert!(a2.status().error.is_some());

    etcd.restart();
    let t0 = Instant::now();
    wait_for(
        Duration::from_secs(10),
        "the change made during the outage",
        || {
            let st = d2.state();
            (st.fdb.get(&("blue".to_string(), mac(11))) == Some(&vtep(1))
                && st.neigh.get(&("blue".to_string(), ip(11))) == Some(&mac(11)))
            .then_some(())
        },
    );
    eprintln!("converged {:?} after etcd came back", t0.elapsed());
    assert!(sees(&d1.state(), 1, &[1, 2]));
    wait_for(Duration::from_secs(5), "healthy status", || {
        let s = a2.status();
        (s.connected && s.synced && s.registered && s.error.is_none()).then_some(())
    });
}

/// etcd's count of watchers that are behind (`/metrics`).
fn slow_watchers(etcd: &Etcd) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", etcd.client_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_slow_watcher_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[test]
fn watch_behind_a_compaction_resyncs() {
    let Some(etcd) = Etcd::start() else { return };
    let (a1, d1) = start_host(&etcd, 1);
    let (a2, d2) = start_host(&etcd, 2);
    a1.create_network("blue", blue()).unwrap();
    converge(
        &[(1, &d1), (2, &d2)],
        &[1, 2],
        Duration::from_secs(5),
        "two hosts",
    );
    let mut c = etcd.client();
    let schema = Schema::default();
    let h1 = HostId::new("h1").unwrap();
    let eps = |extra: u8| {
        vec![
            LocalEndpoint {
                network: "blue".into(),
                mac: mac(1),
                ips: vec![ip(1)],
            },
            LocalEndpoint {
                network: "blue".into(),
                mac: mac(extra),
                ips: vec![ip(extra)],
            },
        ]
    };
    {
        // Host 2's daemon stops answering ...
        let _busy = d2.pause();
        // ... while applying a real change, so its agent blocks ...
        notify(&a1, &d1, eps(21));
        let k = schema.endpoint_key(&h1, "blue", mac(21));
        wait_for(Duration::from_secs(5), "the change in etcd", || {
            c.get(k.as_bytes()).unwrap().0.map(|_| ())
        });
        // ... and its watch falls behind as writes pile up (junk, refused).
        let junk = vec![b'x'; 2000];
        let mut batch = 0;
        wait_for(
            Duration::from_secs(60),
            "etcd to count the watch as slow",
            || {
                for _ in 0..10 {
                    let ops: Vec<TxnOp> = (0..64)
                        .map(|i| {
                            TxnOp::put(
                                format!("{}junk/{batch}/{i}", schema.prefix()),
                                junk.clone(),
                                0,
                            )
                        })
                        .collect();
                    c.txn(&[], &ops, &[]).unwrap();
                    batch += 1;
                }
                (slow_watchers(&etcd) > 0).then_some(())
            },
        );
        eprintln!("watch behind after {batch} transactions of 64 x 2 KB");
        // Something host 2 must learn, then history is compacted past it.
        notify(&a1, &d1, eps(22));
        let k = schema.endpoint_key(&h1, "blue", mac(22));
        let rev = wait_for(Duration::from_secs(5), "the second change", || {
            c.get(k.as_bytes()).unwrap().0.map(|kv| kv.mod_revision)
        });
        c.compact(rev).unwrap();
    }
    wait_for(Duration::from_secs(20), "host 2 to resync", || {
        let st = d2.state();
        (st.fdb.get(&("blue".to_string(), mac(22))) == Some(&vtep(1))
            && !st.fdb.contains_key(&("blue".to_string(), mac(21))))
        .then_some(())
    });
    let s = a2.status();
    assert!(
        s.compactions >= 1,
        "the watch was not cancelled by the compaction: {s:?}"
    );
    assert!(s.resyncs >= 2, "{s:?}");
    assert_eq!(
        s.lease_losses, 0,
        "a busy dataplane must not cost the lease: {s:?}"
    );
    assert!(s.refused_records >= 1, "junk is refused and counted: {s:?}");
}

#[test]
fn host_id_collision_and_clock_skew_are_refused() {
    let Some(etcd) = Etcd::start() else { return };
    let (a1, d1) = start_host(&etcd, 1);
    a1.create_network("blue", blue()).unwrap();
    wait_for(Duration::from_secs(5), "h1", || {
        a1.status().published.eq(&1).then_some(())
    });

    // Another machine (other boot id) claims h1.
    let mut cfg = config(&etcd, "h1", 9);
    cfg.boot_id = "another-machine".into();
    let d9 = MemDataplane::new();
    let a9 = Agent::start(cfg, d9.clone()).unwrap();
    let err = wait_for(Duration::from_secs(5), "the refusal", || {
        a9.status().error.filter(|_| a9.status().refused)
    });
    assert!(
        err.contains("host id \"h1\" is taken by a live host (VTEP 198.18.0.1"),
        "{err}"
    );
    assert!(!a9.status().registered);
    assert!(
        d9.state().networks.is_empty(),
        "a refused host does not join"
    );
    drop(a9);

    // A clock two minutes off is refused.
    let mut cfg = config(&etcd, "h8", 8);
    cfg.wall_clock = || std::time::SystemTime::now() + Duration::from_secs(120);
    let a8 = Agent::start(cfg, MemDataplane::new()).unwrap();
    let err = wait_for(Duration::from_secs(5), "the clock refusal", || {
        a8.status().error.filter(|_| a8.status().refused)
    });
    assert!(
        err.contains("clock is 12") && err.contains("off etcd's"),
        "{err}"
    );
    drop(a8);

    // The same machine restarting (same boot id) takes its record over,
    // without its endpoints ever leaving the cluster.
    let mut watcher = etcd.client();
    let schema = Schema::default();
    let ep_key = schema.endpoint_key(&HostId::new("h1").unwrap(), "blue", mac(1));
    let old_lease = watcher.get(ep_key.as_bytes()).unwrap().0.unwrap().lease;
    drop(a1);
    let a1b = Agent::start(config(&etcd, "h1", 1), d1.clone()).unwrap();
    wait_for(Duration::from_secs(5), "the takeover", || {
        let s = a1b.status();
        (s.takeovers == 1 && s.published == 1).then_some(())
    });
    let kv = watcher
        .get(ep_key.as_bytes())
        .unwrap()
        .0
        .expect("endpoint still published");
    assert_ne!(kv.lease, old_lease, "republished under the new lease");
}

#[test]
fn ipam_never_hands_out_an_address_twice() {
    let Some(etcd) = Etcd::start() else { return };
    let schema = Schema::default();
    let subnet = SubnetRecord {
        subnet: "10.9.0.0/24".parse().unwrap(),
        gateway: Some("10.9.0.1".parse().unwrap()),
    };
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let cfg = etcd.config();
            let (schema, subnet) = (schema.clone(), subnet.clone());
            std::thread::spawn(move || {
                let mut c = Client::new(cfg);
                let host = HostId::new(&format!("h{t}")).unwrap();
                (0..15)
                    .map(|i| {
                        ipam::allocate(
                            &mut c,
                            &schema,
                            "blue",
                            &subnet,
                            &format!("c{t}-{i}"),
                            &host,
                            None,
                        )
                        .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<IpAddr> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let distinct: BTreeSet<_> = all.iter().collect();
    assert_eq!(
        distinct.len(),
        60,
        "an address was handed out twice: {all:?}"
    );
    assert!(
        !distinct.contains(&"10.9.0.1".parse::<IpAddr>().unwrap()),
        "the gateway"
    );
    assert!(!distinct.contains(&"10.9.0.0".parse::<IpAddr>().unwrap()));
    let want: BTreeSet<IpAddr> = (2..62).map(|i| IpAddr::from([10, 9, 0, i])).collect();
    assert_eq!(
        distinct.into_iter().copied().collect::<BTreeSet<_>>(),
        want,
        "lowest first"
    );

    let mut c = etcd.client();
    let h0 = HostId::new("h0").unwrap();
    // Same owner again: the same address. A taken preferred address: refused.
    let again = ipam::allocate(&mut c, &schema, "blue", &subnet, "c0-0", &h0, None).unwrap();
    assert!(all[..15].contains(&again));
    let e = ipam::allocate(&mut c, &schema, "blue", &subnet, "new", &h0, Some(again)).unwrap_err();
    assert!(matches!(e, ClusterError::AddressInUse { .. }), "{e}");
    // Release: owner checked, idempotent; the lowest freed address comes back first.
    let e = ipam::release(&mut c, &schema, "blue", again, Some("someone-else")).unwrap_err();
    assert!(matches!(e, ClusterError::NotOwner { .. }), "{e}");
    assert!(ipam::release(&mut c, &schema, "blue", again, Some("c0-0")).unwrap());
    assert!(!ipam::release(&mut c, &schema, "blue", again, None).unwrap());
    assert_eq!(
        ipam::allocate(&mut c, &schema, "blue", &subnet, "new", &h0, None).unwrap(),
        again
    );

    // Dead hosts: none of h0..h3 is registered, but h1 comes back in time.
    let lease = c.lease_grant(Duration::from_secs(30)).unwrap();
    c.put(
        schema.host_key(&HostId::new("h1").unwrap()).as_bytes(),
        b"{}",
        lease.id,
    )
    .unwrap();
    let mut dead = DeadHosts::default();
    let grace = Duration::from_millis(500);
    let live = BTreeSet::new(); // a stale view: says h1 is gone too
    assert_eq!(
        ipam::collect_garbage(&mut c, &schema, &live, &mut dead, Instant::now(), grace).unwrap(),
        0
    );
    assert_eq!(dead.tracked(), 4);
    let freed = wait_for(Duration::from_secs(5), "the grace period", || {
        let n = ipam::collect_garbage(&mut c, &schema, &live, &mut dead, Instant::now(), grace)
            .unwrap();
        (n > 0).then_some(n)
    });
    assert_eq!(
        freed, 45,
        "h0, h2, h3 freed; h1 is registered in etcd and keeps its 15"
    );
    let (left, _) = c
        .list_prefix(schema.ipam_network_prefix("blue").as_bytes())
        .unwrap();
    assert_eq!(left.len(), 15);
}

/// `--cluster https://...` against an etcd with `--client-cert-auth`: with
/// the CA and a client certificate a put and a get work; without the client
/// certificate, and with a CA that did not sign etcd's certificate, the
/// error names the TLS failure and what to give.
#[test]
fn tls_with_client_certificates_against_etcd() {
    if !support::can_run(&["openssl", "etcd"]) {
        return;
    }
    let tmp = support::TempDir::new("vxtls");
    let d = tmp.0.as_path();
    let pki = support::certs::Pki::new(d, &[]);
    let files = TlsFiles {
        cacert: Some(pki.ca.clone()),
        cert: Some(pki.client_cert.clone()),
        key: Some(pki.client_key.clone()),
    };
    let server = ServerTls {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: pki.ca.clone(),
    };
    // Comes up answering a get over TLS with the client certificate.
    let Some(etcd) = Etcd::start_with(Some((server, files.clone()))) else {
        return;
    };
    let mut c = etcd.client();
    c.put(b"/tls/a", b"secret", 0).unwrap();
    assert_eq!(c.get(b"/tls/a").unwrap().0.unwrap().value, b"secret");
    // A watch is its own connection: TLS too.
    let mut w = c.watch(b"/tls/", 0).unwrap();
    assert!(matches!(
        w.next(Duration::from_secs(5)).unwrap(),
        Some(WatchMessage::Created { .. })
    ));

    let try_with = |f: TlsFiles| -> String {
        let mut cfg = etcd.config();
        cfg.tls = Some(f.load().unwrap());
        let e = Client::new(cfg).get(b"/tls/a").unwrap_err();
        eprintln!("as expected: {e}");
        e.to_string()
    };
    // No client certificate: etcd refuses, the message says to give one.
    let e = try_with(TlsFiles {
        cacert: files.cacert.clone(),
        cert: None,
        key: None,
    });
    assert!(
        e.contains("TLS with https://127.0.0.1:") && e.contains("--cluster-cert"),
        "{e}"
    );
    // The wrong CA: etcd's certificate does not verify, naming the host and file.
    let e = try_with(TlsFiles {
        cacert: Some(pki.other_ca.clone()),
        ..files.clone()
    });
    assert!(
        e.contains("invalid peer certificate")
            && e.contains("\"127.0.0.1\"")
            && e.contains("other-ca.crt"),
        "{e}"
    );
    // https without a CA, an unreadable file and a file without PEM are
    // refused before connecting, naming the file.
    let e = TlsFiles::default().load().unwrap_err();
    assert!(e.contains("--cluster-cacert"), "{e}");
    let e = TlsFiles {
        cacert: Some(d.join("missing.crt")),
        ..TlsFiles::default()
    }
    .load()
    .unwrap_err();
    assert!(
        e.contains("cannot read") && e.contains("missing.crt"),
        "{e}"
    );
    let e = TlsFiles {
        cert: Some(d.join("client.ext")),
        ..files.clone()
    }
    .load()
    .unwrap_err();
    assert!(
        e.contains("no PEM certificate") && e.contains("client.ext"),
        "{e}"
    );
    let mut cfg = etcd.config();
    cfg.tls = None;
    let e = Client::new(cfg).get(b"/tls/a").unwrap_err().to_string();
    assert!(e.contains("--cluster-cacert"), "{e}");
}
