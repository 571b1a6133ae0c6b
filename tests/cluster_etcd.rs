//! The cluster control plane against a real etcd (Debian's `etcd-server`,
//! 3.4): the client, agents converging, faults, IPAM.
//!
//! Each test starts its own etcd on free loopback ports with its own data
//! directory; a guard kills it by PID and removes the directory, also when
//! the test fails. Without an `etcd` binary the tests print a skip, or fail
//! with `CI=true`. No root needed.

use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vxswitch::cluster::etcd::{
    Client, Compare, EtcdConfig, EtcdError, TxnOp, WatchEvent, WatchMessage,
};
use vxswitch::cluster::http::Endpoint;

/// A private etcd, killed and wiped on drop.
struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
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
        };
        e.spawn(&bin);
        Some(e)
    }

    fn spawn(&mut self, bin: &PathBuf) {
        let log = std::fs::File::create(self.dir.join("etcd.log")).unwrap();
        let curl = format!("http://127.0.0.1:{}", self.client_port);
        let purl = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(bin)
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
        format!("http://127.0.0.1:{}", self.client_port)
            .parse()
            .unwrap()
    }

    fn config(&self) -> EtcdConfig {
        let mut c = EtcdConfig::new(vec![self.endpoint()]);
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
    let _ = IpAddr::from([127, 0, 0, 1]);
}
