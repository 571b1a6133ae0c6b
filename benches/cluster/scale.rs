//! Scale of the cluster control plane against a real etcd (not a timed test):
//! a generator writes a simulated cluster of HOSTS hosts x ENDPOINTS
//! endpoints (no daemons), then one agent with a recording dataplane joins.
//!
//! Measures: time for the new agent to converge (every network, VTEP and
//! remote FDB entry applied), its memory (RSS growth of this process), the
//! time for one endpoint change to reach it (p50/p99 over CHANGES), and
//! etcd's CPU time and database size.
//!
//! `cargo bench --bench cluster_scale` (needs `etcd`, Debian's etcd-server);
//! `HOSTS`, `ENDPOINTS`, `NETWORKS`, `CHANGES` override the sizes.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Sender};
use vxswitch::cluster::etcd::{Client, EtcdConfig, TxnOp};
use vxswitch::cluster::schema::{
    self, EndpointRecord, HostId, HostRecord, NetworkRecord, Schema, VniRecord,
};
use vxswitch::cluster::{Agent, AgentConfig, Change, Dataplane, LocalEndpoint, State};
use vxswitch::wire::MacAddr;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Etcd {
    child: Child,
    dir: PathBuf,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Records when FDB entries arrive; keeps counts only.
struct Recorder {
    tx: Sender<(MacAddr, Instant)>,
    state: State,
}

impl Dataplane for Recorder {
    fn apply(&mut self, c: &Change) -> Result<(), String> {
        if let Change::SetFdb { mac, .. } = c {
            let _ = self.tx.send((*mac, Instant::now()));
        }
        self.state.apply(c);
        Ok(())
    }
    fn applied(&mut self) -> Result<State, String> {
        Ok(State::default())
    }
    fn local_endpoints(&mut self) -> Result<Vec<LocalEndpoint>, String> {
        Ok(Vec::new())
    }
}

fn mac_of(host: usize, ep: usize) -> MacAddr {
    let h = u16::try_from(host).unwrap().to_be_bytes();
    let e = u16::try_from(ep).unwrap().to_be_bytes();
    MacAddr([0x02, h[0], h[1], e[0], e[1], 0x01])
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes: nothing to list
    }
    let hosts = env("HOSTS", 500);
    let endpoints = env("ENDPOINTS", 40);
    let networks = env("NETWORKS", 10).max(1);
    let changes = env("CHANGES", 200);
    let Some(bin) = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        eprintln!("SKIP: etcd is not installed (apt-get install etcd-server)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("vxswitch-bench-etcd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cp, pp) = (free_port(), free_port());
    let (curl, purl) = (
        format!("http://127.0.0.1:{cp}"),
        format!("http://127.0.0.1:{pp}"),
    );
    let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
    let child = Command::new(bin)
        .args(["--name", "b", "--data-dir"])
        .arg(dir.join("data"))
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
        .args(["--initial-cluster", &format!("b={purl}")])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let etcd = Etcd { child, dir };
    let cfg = EtcdConfig::new(vec![curl.parse().unwrap()]);
    let mut c = Client::new(cfg.clone());
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.get(b"/probe").is_err() {
        assert!(Instant::now() < deadline, "etcd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The generator: networks, hosts under one long lease, endpoints.
    let s = Schema::default();
    let t0 = Instant::now();
    let lease = c.lease_grant(Duration::from_secs(3600)).unwrap();
    let mut ops = Vec::new();
    for n in 0..networks {
        let rec = NetworkRecord {
            vni: 1000 + u32::try_from(n).unwrap(),
            subnets: vec![],
            mtu: None,
        };
        ops.push(TxnOp::put(
            s.network_key(&format!("n{n}")),
            schema::to_value(&rec),
            0,
        ));
        let v = VniRecord {
            network: format!("n{n}"),
        };
        ops.push(TxnOp::put(s.vni_key(rec.vni), schema::to_value(&v), 0));
    }
    for h in 0..hosts {
        let id = HostId::new(&format!("sim{h}")).unwrap();
        let hr = HostRecord {
            vtep: IpAddr::from([
                10,
                200,
                u8::try_from(h / 250).unwrap(),
                u8::try_from(h % 250 + 1).unwrap(),
            ]),
            vxlan_port: 4789,
            boot_id: format!("b{h}"),
            version: "sim".into(),
        };
        ops.push(TxnOp::put(s.host_key(&id), schema::to_value(&hr), lease.id));
        for e in 0..endpoints {
            let net = format!("n{}", (h + e) % networks);
            let rec = EndpointRecord {
                ips: vec![IpAddr::from([
                    10,
                    100 + u8::try_from(h / 250).unwrap(),
                    u8::try_from(h % 250).unwrap(),
                    u8::try_from(e + 1).unwrap(),
                ])],
            };
            ops.push(TxnOp::put(
                s.endpoint_key(&id, &net, mac_of(h, e)),
                schema::to_value(&rec),
                lease.id,
            ));
        }
    }
    for batch in ops.chunks(100) {
        c.txn(&[], batch, &[]).unwrap();
    }
    let keys = ops.len();
    println!("generator: {keys} keys ({hosts} hosts x {endpoints} endpoints, {networks} networks) written in {:.2?}", t0.elapsed());

    if std::env::var("DATAPLANE").as_deref() == Ok("daemon") {
        return join_a_daemon(&curl, hosts * endpoints, &mut c, &s, lease.id, changes);
    }

    // A new daemon joins.
    let (tx, rx) = unbounded();
    let rss0 = rss_kib();
    let etcd_cpu0 = cpu_secs(etcd.child.id());
    let want = hosts * endpoints;
    let mut acfg = AgentConfig::new(
        cfg,
        HostId::new("newcomer").unwrap(),
        SocketAddr::new(IpAddr::from([10, 250, 0, 1]), 4789),
    );
    acfg.boot_id = "bench".into();
    let t0 = Instant::now();
    let agent = Agent::start(
        acfg,
        Recorder {
            tx,
            state: State::default(),
        },
    )
    .unwrap();
    let mut seen = BTreeSet::new();
    while seen.len() < want {
        let (m, _) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("converge within 60 s");
        seen.insert(m);
    }
    let converge = t0.elapsed();
    println!(
        "converge: {converge:.2?} to {} remote FDB entries; RSS +{} MiB; etcd CPU {:.2} s",
        seen.len(),
        rss_kib().saturating_sub(rss0) / 1024,
        cpu_secs(etcd.child.id()) - etcd_cpu0
    );

    // One endpoint change at a time: write, wait until applied.
    let writer = HostId::new("sim0").unwrap();
    let mut lat = Vec::with_capacity(changes);
    let mut put_lat = Vec::with_capacity(changes);
    let etcd_cpu0 = cpu_secs(etcd.child.id());
    for i in 0..changes {
        let m = mac_of(60000, i);
        let key = s.endpoint_key(&writer, "n0", m);
        let t = Instant::now();
        c.put(key.as_bytes(), b"{}", lease.id).unwrap();
        put_lat.push(t.elapsed());
        loop {
            let (got, at) = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("change within 10 s");
            if got == m {
                lat.push(at - t);
                break;
            }
        }
    }
    lat.sort();
    put_lat.sort();
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];
    if !lat.is_empty() {
        println!(
            "propagation over {changes} changes: p50 {:.2?}, p99 {:.2?}, max {:.2?} (etcd put alone: p50 {:.2?}, p99 {:.2?}); etcd CPU {:.2} s",
            pct(50),
            pct(99),
            lat[lat.len() - 1],
            put_lat[put_lat.len() / 2],
            put_lat[(put_lat.len() * 99 / 100).min(put_lat.len() - 1)],
            cpu_secs(etcd.child.id()) - etcd_cpu0
        );
    }
    let st = agent.status();
    println!(
        "agent: {} hosts, {} networks, {} remote endpoints, {} refused records",
        st.hosts, st.networks, st.remote_endpoints, st.refused_records
    );
    let size: u64 = walk(&etcd.dir.join("data"));
    println!("etcd data dir: {} MiB", size / (1024 * 1024));
    agent.shutdown(false);
}

/// `DATAPLANE=daemon`: the newcomer is a real daemon (in this process: its
/// control server, engine and FDB, with the cluster agent's changes applied
/// through the control thread, as `vxswitch daemon --cluster` does).
fn join_a_daemon(curl: &str, want: usize, c: &mut Client, s: &Schema, lease: i64, changes: usize) {
    use vxswitch::ctl::cluster::ClusterSettings;
    use vxswitch::ctl::{Server, ServerOptions};
    let sock = std::env::temp_dir().join(format!("vxswitch-bench-{}.sock", std::process::id()));
    let mut opts = ServerOptions::new(&sock);
    let port = std::net::UdpSocket::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    opts.engine.vxlan.port = port;
    opts.engine.vxlan.src_port_min = port;
    opts.engine.vxlan.src_port_max = port;
    opts.engine.fdb.max_entries = want * 2 + 1024;
    opts.log_events = false;
    let mut server = Server::bind(opts).unwrap();
    let caller = server.caller();
    let rss0 = rss_kib();
    let t0 = Instant::now();
    server
        .daemon_mut()
        .start_cluster(
            ClusterSettings {
                endpoints: vec![curl.parse().unwrap()],
                host_id: HostId::new("newcomer").unwrap(),
                underlay_ip: IpAddr::from([10, 250, 0, 1]),
                ttl: Duration::from_secs(10),
                ipam_grace: Duration::from_secs(60),
                schema: Schema::default(),
                tls: None,
            },
            caller,
        )
        .unwrap();
    let handle = server.spawn().unwrap();
    let remote = || {
        handle
            .with_daemon(|d| d.cluster_status().map(|s| s.remote_endpoints).unwrap_or(0))
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while remote() < want {
        assert!(Instant::now() < deadline, "no convergence within 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let vteps = handle
        .with_daemon(|d| d.vtep_ls(&Default::default()).map(|v| v.len()).unwrap_or(0))
        .unwrap();
    println!(
        "daemon converge: {:.2?} to {want} remote FDB entries and {vteps} VTEPs applied through \
         the control thread; RSS +{} MiB",
        t0.elapsed(),
        rss_kib().saturating_sub(rss0) / 1024
    );
    let writer = HostId::new("sim0").unwrap();
    let mut lat = Vec::with_capacity(changes);
    for i in 0..changes {
        let before = remote();
        let key = s.endpoint_key(&writer, "n0", mac_of(60000, i));
        let t = Instant::now();
        c.put(key.as_bytes(), b"{}", lease).unwrap();
        while remote() == before {
            assert!(t.elapsed() < Duration::from_secs(10), "change within 10 s");
            std::thread::sleep(Duration::from_micros(200));
        }
        lat.push(t.elapsed());
    }
    lat.sort();
    if !lat.is_empty() {
        println!(
            "daemon propagation over {changes} changes: p50 {:.2?}, p99 {:.2?}, max {:.2?}",
            lat[lat.len() / 2],
            lat[(lat.len() * 99 / 100).min(lat.len() - 1)],
            lat[lat.len() - 1]
        );
    }
    handle.shutdown().unwrap();
}

fn walk(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |rd| {
        rd.flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}
