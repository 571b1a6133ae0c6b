//! The reliability suite (issue 11, item 4): the switch under a MAC flood,
//! control socket abuse, port churn, kill -9, VXLAN garbage and a soak,
//! as root in real namespaces. docs/reliability.md describes each scenario
//! and the figures of a long run.
//!
//! By default each scenario is scaled down (the whole file runs in CI in
//! under 3 minutes). `VXSWITCH_RELIABILITY=full` runs the sizes
//! (1,000,000 MACs, 1,000 churn cycles, 100,000 datagrams, a 30-minute
//! soak); single sizes can be set with `VXSWITCH_REL_MACS`,
//! `VXSWITCH_REL_CYCLES`, `VXSWITCH_REL_DATAGRAMS`, `VXSWITCH_REL_SOAK_SECS`
//! and `VXSWITCH_REL_SLOW_SECS`. Every figure is printed as a `FIGURE`
//! line and, with `VXSWITCH_RELIABILITY_REPORT=FILE`, appended to FILE.
//! The control-latency figure means something on a release build only:
//! `cargo test --release --test reliability_root -- --test-threads=1`.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    can_run, can_run_with, cmd, cni_exec, find_port, signal, unique, wait_for, wait_until, Daemon,
    Netns, Proc, TempDir, BIN,
};

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Sizes

/// How big each scenario runs.
struct Scale {
    full: bool,
    /// Random source MACs offered in the flood.
    macs: u64,
    /// Seconds each flood phase lasts (the MACs are cycled through).
    flood_secs: f64,
    /// Seconds of each forwarding-rate measurement.
    rate_secs: f64,
    /// Port churn cycles.
    cycles: u64,
    /// Garbage datagrams per sender.
    datagrams: u64,
    /// Soak length and sampling interval.
    soak: Duration,
    interval: Duration,
    /// How long the 1-byte-every-5-s reader reads.
    slow: Duration,
}

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

impl Scale {
    fn get() -> Scale {
        let full = std::env::var("VXSWITCH_RELIABILITY").is_ok_and(|v| v == "full");
        let mut s = if full {
            Scale {
                full,
                macs: 1_000_000,
                flood_secs: 20.0,
                rate_secs: 3.0,
                cycles: 1000,
                datagrams: 100_000,
                soak: Duration::from_secs(1800),
                interval: Duration::from_secs(60),
                slow: Duration::from_secs(30),
            }
        } else {
            Scale {
                full,
                macs: 50_000,
                flood_secs: 3.0,
                rate_secs: 1.0,
                cycles: 50,
                datagrams: 2_000,
                soak: Duration::from_secs(20),
                interval: Duration::from_secs(2),
                slow: Duration::from_secs(12),
            }
        };
        if let Some(v) = env_u64("VXSWITCH_REL_MACS") {
            s.macs = v.max(20_000);
        }
        if let Some(v) = env_u64("VXSWITCH_REL_CYCLES") {
            s.cycles = v.max(1);
        }
        if let Some(v) = env_u64("VXSWITCH_REL_DATAGRAMS") {
            s.datagrams = v.max(100);
        }
        if let Some(v) = env_u64("VXSWITCH_REL_SOAK_SECS") {
            s.soak = Duration::from_secs(v.max(10));
            s.interval = (s.soak / 30).max(Duration::from_secs(2));
        }
        if let Some(v) = env_u64("VXSWITCH_REL_SLOW_SECS") {
            s.slow = Duration::from_secs(v.max(6));
        }
        s
    }
}

/// Prints one figure of `scenario` and appends it to the report file.
fn figure(scenario: &str, key: &str, value: impl std::fmt::Display) {
    let line = format!("FIGURE {scenario} {key} = {value}");
    eprintln!("{line}");
    if let Ok(path) = std::env::var("VXSWITCH_RELIABILITY_REPORT") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
        writeln!(f, "{line}").unwrap();
    }
}

// ---------------------------------------------------------------------------
// The daemon process as the kernel sees it

/// Resident memory, open file descriptors and threads of a process.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    rss_kib: u64,
    fds: u64,
    threads: u64,
}

fn sample(pid: u32) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let field = |k: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in /proc/{pid}/status"))
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("list /proc/{pid}/fd: {e}"))
        .count() as u64;
    Sample {
        rss_kib: field("VmRSS:"),
        fds,
        threads: field("Threads:"),
    }
}

/// A sample once the fds and threads have stopped changing (a removed
/// port's fds are closed by the workers a moment after `port rm` returns).
fn settled(pid: u32) -> Sample {
    let mut last = sample(pid);
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let now = sample(pid);
        if (now.fds, now.threads) == (last.fds, last.threads) {
            return now;
        }
        last = now;
    }
    last
}

/// Samples a process's RSS every 100 ms until dropped; `peak` is the most.
struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(sample(pid).rss_kib));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    if let Some(kib) = st
                        .lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|v| v.parse::<u64>().ok())
                    {
                        p.fetch_max(kib, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssWatch {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Containers and traffic

/// A container namespace with IPv6 off, so that nothing but the test's
/// own traffic reaches its port and a witness's counters stay still.
fn quiet(prefix: &str) -> Netns {
    let c = Netns::new(prefix);
    c.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
    c.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
    c
}

fn mac_of(ns: &Netns) -> String {
    let v = ns.ip_json(&["link", "show", "dev", "eth0"]);
    v[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no MAC on eth0 in {}: {v}", ns.name))
        .to_string()
}

fn port_counter(d: &Daemon, port: &str, key: &str) -> u64 {
    find_port(&d.json(&["stats"]), port)[key]
        .as_u64()
        .unwrap_or(0)
}

fn port_drop(d: &Daemon, port: &str, why: &str) -> u64 {
    find_port(&d.json(&["stats"]), port)["drops"][why]
        .as_u64()
        .unwrap_or(0)
}

/// `stats --json`'s row for network `net` (entries, max, refused).
fn network_row(d: &Daemon, net: &str) -> Value {
    let stats = d.json(&["stats"]);
    stats["networks"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["network"] == net).cloned())
        .unwrap_or_else(|| panic!("no network {net} in {stats}"))
}

/// `vxswitch --json pktgen rx` on eth0 in `ns`, started and listening.
/// Runs: the binary under test.
struct Rx {
    child: Child,
    log: TempDir,
}

impl Rx {
    fn start(ns: &Netns, extra: &[&str]) -> Rx {
        let log = TempDir::new("vxrel-rx-");
        let err = std::fs::File::create(log.0.join("rx.err")).unwrap();
        let mut args = vec![
            "--json", "pktgen", "rx", "--dev", "eth0", "--netns", &ns.name,
        ];
        args.extend_from_slice(extra);
        let child = cmd(BIN, &args)
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("spawn pktgen rx");
        let rx = Rx { child, log };
        wait_for(WAIT, "pktgen rx to listen", || {
            std::fs::read_to_string(rx.log.0.join("rx.err")).is_ok_and(|s| s.contains("listening"))
        });
        rx
    }

    /// Waits for rx to end (END markers, idle timeout) and returns its JSON.
    fn finish(self) -> Value {
        let Rx { child, log } = self;
        let out = child.wait_with_output().unwrap();
        let err = std::fs::read_to_string(log.0.join("rx.err")).unwrap_or_default();
        assert!(out.status.success(), "pktgen rx failed: {err}");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("pktgen rx printed no JSON ({e}): {err}"))
    }
}

/// `vxswitch --json pktgen tx` on eth0 in `ns` to `dst_mac` with `extra`;
/// its JSON. Runs: the binary under test.
fn tx(ns: &Netns, dst_mac: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "--json",
        "pktgen",
        "tx",
        "--dev",
        "eth0",
        "--netns",
        &ns.name,
        "--dst-mac",
        dst_mac,
    ];
    args.extend_from_slice(extra);
    let out = cmd(BIN, &args).output().unwrap();
    assert!(
        out.status.success(),
        "pktgen tx {extra:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The switch's forwarding rate from `a` to `b` for `secs` at full rate:
/// (frames/s received, frames lost).
fn rate(a: &Netns, b: &Netns, secs: f64) -> (u64, u64) {
    let rx = Rx::start(b, &[]);
    let t = tx(
        a,
        &mac_of(b),
        &["--duration", &secs.to_string(), "--flows", "4"],
    );
    let r = rx.finish();
    let got = r["frames"].as_u64().unwrap_or(0);
    let elapsed = t["elapsed_us"].as_u64().unwrap_or(1).max(1);
    (got * 1_000_000 / elapsed, r["lost"].as_u64().unwrap_or(0))
}

/// iperf3 from `client` to a server in `server` at `ip`, at `bitrate`,
/// for as long as the returned processes live; returns once its TCP
/// segments are seen leaving `client`. Runs: ip, iperf3.
fn iperf_flow(client: &Netns, server: &Netns, ip: &str, bitrate: &str) -> (Proc, Proc) {
    let srv = server.spawn(&["iperf3", "-s", "-B", ip]);
    let deadline = Instant::now() + WAIT;
    loop {
        let before = client.snmp("Tcp", "OutSegs");
        let mut cli = client.spawn(&[
            "iperf3",
            "-c",
            ip,
            "-t",
            "86400",
            "-b",
            bitrate,
            "--connect-timeout",
            "1000",
        ]);
        let flowing = wait_until(Duration::from_secs(2), || {
            client.snmp("Tcp", "OutSegs") > before + 100
        });
        if flowing && cli.0.try_wait().unwrap().is_none() {
            return (srv, cli);
        }
        // The server was not listening yet: try again.
        let _ = cli.0.kill();
        assert!(
            Instant::now() < deadline,
            "iperf3 {} -> {ip} never ran",
            client.name
        );
    }
}

/// `vxswitch ping` over the socket itself (no process start-up in the
/// figure): how long the answer took. Fails the test on no answer.
fn ctl_ping(socket: &Path) -> Duration {
    let t = Instant::now();
    let mut s = UnixStream::connect(socket).expect("connect to the control socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"{\"cmd\":\"ping\"}\n").unwrap();
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    while !got.contains(&b'\n') {
        let n = s.read(&mut buf).expect("read the ping reply");
        assert!(
            n > 0,
            "the daemon closed the connection without answering ping"
        );
        got.extend_from_slice(&buf[..n]);
    }
    let took = t.elapsed();
    assert!(
        String::from_utf8_lossy(&got).contains("\"ok\""),
        "{}",
        String::from_utf8_lossy(&got)
    );
    took
}

/// Pings the control socket every 20 ms on a thread until stopped;
/// returns every latency.
struct Pinger {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Duration>>,
}

impl Pinger {
    fn start(socket: &Path) -> Pinger {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, socket) = (stop.clone(), socket.to_path_buf());
        let thread = std::thread::spawn(move || {
            let mut v = Vec::new();
            while !s.load(Ordering::Relaxed) {
                v.push(ctl_ping(&socket));
                std::thread::sleep(Duration::from_millis(20));
            }
            v
        });
        Pinger { stop, thread }
    }

    fn finish(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        let mut v = self.thread.join().expect("the pinger panicked");
        v.sort();
        v
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The bound on a control answer that the test asserts: the issue's
/// 100 ms on a release build; generous on a debug build, where
/// serialising is ten times slower and the figure means nothing.
fn ping_bound() -> Duration {
    if cfg!(debug_assertions) {
        Duration::from_millis(1500)
    } else {
        Duration::from_millis(100)
    }
}

// ---------------------------------------------------------------------------
// MAC flood

/// 16 ports of network red flood random source MACs at full rate, first
/// one port, then all 16; a port with port security (the default) floods
/// too. Memory stays bounded; unicast between two other containers of red
/// and of blue is delivered and never flooded to a third; the forwarding
/// rate between them is measured before, during and after.
#[test]
fn mac_flood_from_one_port_and_from_sixteen() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let s = Scale::get();
    let sc = "mac_flood";
    let d = Daemon::start(&[]);
    let pid = d.child.id();
    d.cli(&["network", "create", "red", "--subnet", "10.93.0.0/16"]);
    d.cli(&["network", "create", "blue", "--subnet", "10.94.0.0/24"]);
    let add = |name: &str, net: &str, ip: &str, extra: &[&str]| -> Netns {
        let ns = quiet("vxrf");
        d.port_add(name, net, &ns, ip, extra);
        ns
    };
    let a = add("a", "red", "10.93.0.11/16", &[]);
    let b = add("b", "red", "10.93.0.12/16", &[]);
    let c = add("c", "red", "10.93.0.13/16", &[]);
    let sink = add("sink", "red", "10.93.0.14/16", &[]);
    let guarded = add("g", "red", "10.93.0.15/16", &[]);
    let x = add("x", "blue", "10.94.0.11/24", &[]);
    let y = add("y", "blue", "10.94.0.12/24", &[]);
    let z = add("z", "blue", "10.94.0.13/24", &[]);
    let flooders: Vec<Netns> = (0..16)
        .map(|i| {
            add(
                &format!("f{i}"),
                "red",
                &format!("10.93.1.{}/16", i + 1),
                &["--no-port-security"],
            )
        })
        .collect();
    // Every pair that will talk is learned, and sink's MAC too.
    for (p, q) in [
        (&a, "10.93.0.12"),
        (&sink, "10.93.0.11"),
        (&guarded, "10.93.0.11"),
        (&x, "10.94.0.12"),
    ] {
        assert!(p.ping_within(q, WAIT), "{}", d.log());
    }
    let sink_mac = mac_of(&sink);
    let witnesses = || {
        (
            port_counter(&d, "c", "tx_frames"),
            port_counter(&d, "z", "tx_frames"),
        )
    };
    let measure = |phase: &str| {
        let before = witnesses();
        let (red, blue) = std::thread::scope(|t| {
            let red = t.spawn(|| rate(&a, &b, s.rate_secs));
            let blue = t.spawn(|| rate(&x, &y, s.rate_secs));
            (red.join().unwrap(), blue.join().unwrap())
        });
        assert!(
            red.0 > 0 && blue.0 > 0,
            "{phase}: red {red:?} blue {blue:?}"
        );
        assert_eq!(
            witnesses(),
            before,
            "{phase}: unicast a->b or x->y reached the third port (c, z)"
        );
        figure(sc, &format!("{phase}.red_a_to_b_pps"), red.0);
        figure(sc, &format!("{phase}.red_lost"), red.1);
        figure(sc, &format!("{phase}.blue_x_to_y_pps"), blue.0);
        figure(sc, &format!("{phase}.blue_lost"), blue.1);
    };
    let base = sample(pid);
    figure(sc, "rss_before_kib", base.rss_kib);
    measure("before");
    let watch = RssWatch::start(pid);

    // The guarded port's flood is all spoofed_src; nothing is learned.
    let entries = network_row(&d, "red")["entries"].clone();
    let g = tx(
        &guarded,
        &sink_mac,
        &["--src-macs", "10000", "--count", "20000"],
    );
    let sent = g["frames"].as_u64().unwrap();
    wait_for(
        WAIT,
        "every guarded flood frame counted spoofed_src",
        || port_drop(&d, "g", "spoofed_src") == sent,
    );
    assert_eq!(network_row(&d, "red")["entries"], entries);

    // One port, then 16, each at full rate while the rates are measured.
    let secs = s.flood_secs.to_string();
    for (phase, ports) in [("one_port", 1usize), ("sixteen_ports", 16)] {
        let per_port = (s.macs / ports as u64).to_string();
        let offered = std::thread::scope(|t| {
            let floods: Vec<_> = flooders[..ports]
                .iter()
                .map(|f| {
                    let (m, secs, per_port) = (&sink_mac, &secs, &per_port);
                    t.spawn(move || tx(f, m, &["--src-macs", per_port, "--duration", secs]))
                })
                .collect();
            std::thread::sleep(Duration::from_millis(300));
            measure(&format!("during_{phase}"));
            floods
                .into_iter()
                .map(|h| h.join().unwrap()["frames"].as_u64().unwrap())
                .sum::<u64>()
        });
        figure(sc, &format!("{phase}.flood_frames"), offered);
        figure(
            sc,
            &format!("{phase}.flood_pps"),
            (offered as f64 / s.flood_secs) as u64,
        );
        // Each port cycles through its share of the MACs: all of them were
        // offered once the flood sent as many frames (a loaded machine
        // may send fewer in the time; the figure says how many).
        figure(sc, &format!("{phase}.macs_offered"), offered.min(s.macs));
        assert!(
            offered >= s.macs.min(20_000),
            "{phase}: the flood sent only {offered} frames"
        );
        let red = network_row(&d, "red");
        figure(sc, &format!("{phase}.red_fdb"), &red);
        assert!(red["entries"].as_u64() <= red["max"].as_u64(), "{red}");
        if ports == 1 {
            // One port is held to its own budget (4096) first.
            let refused = port_counter(&d, "f0", "learn_refused_port_limit");
            figure(sc, "one_port.f0_refused_port_limit", refused);
            assert!(refused > 0, "f0 was not held to its per-port budget");
            assert!(red["entries"].as_u64() <= Some(4096 + 8), "{red}");
        } else {
            // Sixteen ports together are held to the network's.
            assert!(red["refused"].as_u64() > Some(0), "{red}");
        }
    }
    let red = network_row(&d, "red");
    assert_eq!(red["entries"], red["max"], "{red}");
    let peak = watch.peak_kib();
    drop(watch);
    measure("after");
    let after = sample(pid);
    figure(sc, "rss_peak_kib", peak);
    figure(sc, "rss_after_kib", after.rss_kib);
    // The table is bounded by its budgets, whatever the flood offered.
    assert!(
        peak < base.rss_kib + 128 * 1024,
        "RSS grew from {} to {peak} KiB",
        base.rss_kib
    );
    let stats = d.json(&["stats"]);
    assert_eq!(stats["fdb"]["refused_table_full"], 0, "{}", stats["fdb"]);
    // Blue still learns: a new container there is reached at once.
    let w = add("w", "blue", "10.94.0.14/24", &[]);
    assert!(w.ping_within("10.94.0.11", WAIT), "{}", d.log());
    drop(flooders);
    drop((a, b, c, sink, guarded, x, y, z, w));
}

// ---------------------------------------------------------------------------
// Control socket abuse

/// A client that sends `request` and then takes one byte of the reply
/// every 5 s for `how_long`; returns the bytes it got before the daemon
/// closed the connection (or `how_long` passed).
fn slow_reader(socket: &Path, request: &[u8], how_long: Duration) -> (u64, bool) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.write_all(request).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let end = Instant::now() + how_long;
    let (mut got, mut byte) = (0u64, [0u8; 1]);
    while Instant::now() < end {
        match s.read(&mut byte) {
            Ok(0) | Err(_) => return (got, true),
            Ok(_) => got += 1,
        }
        std::thread::sleep(Duration::from_secs(5));
    }
    (got, false)
}

/// Whatever the clients do — 300 idle connections, a 16 MiB line, random
/// bytes, a reader taking 1 byte every 5 s of a large `fdb show`, 128
/// clients asking for it and never reading — `ping` is answered within the
/// bound throughout and a CNI ADD works.
#[test]
fn control_socket_abuse_never_delays_ping() {
    if !can_run_with(&["ip"], &["/usr/lib/cni/host-local"]) {
        return;
    }
    let s = Scale::get();
    let sc = "control_abuse";
    let d = Daemon::start(&[
        "--fdb-max-entries",
        "65536",
        "--fdb-max-per-port",
        "65536",
        "--fdb-max-per-network",
        "65536",
    ]);
    let pid = d.child.id();
    d.cli(&[
        "network",
        "create",
        "red",
        "--subnet",
        "10.95.0.0/24",
        "--gateway-port",
        "none",
    ]);
    let f = quiet("vxrc");
    d.port_add("f", "red", &f, "10.95.0.11/24", &["--no-port-security"]);
    // A large table: the fdb show reply is megabytes.
    let macs: u64 = if s.full { 60_000 } else { 20_000 };
    tx(
        &f,
        "ff:ff:ff:ff:ff:ff",
        &[
            "--src-macs",
            &macs.to_string(),
            "--count",
            &macs.to_string(),
        ],
    );
    wait_for(WAIT, "the flood's MACs learned", || {
        network_row(&d, "red")["entries"].as_u64() >= Some(macs)
    });
    let t = Instant::now();
    let table = d.cli_raw(&["--json", "fdb", "show"]);
    figure(sc, "fdb_show_entries", macs);
    figure(sc, "fdb_show_bytes", table.stdout.len());
    figure(sc, "fdb_show_cli_ms", t.elapsed().as_millis());
    let base = sample(pid);
    let pinger = Pinger::start(&d.socket);

    // 300 idle clients.
    let idle: Vec<UnixStream> = (0..300)
        .map(|_| UnixStream::connect(&d.socket).unwrap())
        .collect();
    let socket = d.socket.clone();
    std::thread::scope(|t| {
        // A 16 MiB line: refused by name, the rest skipped.
        let long = t.spawn(|| {
            let mut c = UnixStream::connect(&socket).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let r = c.try_clone().unwrap();
            let reader = std::thread::spawn(move || {
                let mut line = String::new();
                let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(r), &mut line);
                line
            });
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..16 {
                if c.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = c.write_all(b"\n");
            reader.join().unwrap()
        });
        // Random bytes, newlines among them.
        let random = t.spawn(|| {
            let mut c = UnixStream::connect(&socket).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut x: u64 = 0x2545_f491_4f6c_dd1d;
            let bytes: Vec<u8> = (0..(1 << 20))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = c.write_all(&bytes);
            let _ = c.write_all(b"\n");
            let mut got = Vec::new();
            let _ = c.read_to_end(&mut got);
            got.len()
        });
        // A reader that takes 1 byte every 5 s of a large fdb show.
        let slow = t.spawn(|| slow_reader(&socket, b"{\"cmd\":\"fdb.show\"}\n", s.slow));
        // 128 clients that ask for the table and never read.
        let hoarders: Vec<UnixStream> = (0..128)
            .map(|_| {
                let mut c = UnixStream::connect(&socket).unwrap();
                let _ = c.write_all(b"{\"cmd\":\"fdb.show\"}\n");
                c
            })
            .collect();
        // CNI ADD in the middle of it.
        let plugins = TempDir::new("vxrel-cni-");
        std::os::unix::fs::symlink(BIN, plugins.0.join("vxswitch-cni")).unwrap();
        let ipam = TempDir::new("vxrel-ipam-");
        let conf = serde_json::json!({
            "cniVersion": "1.0.0", "name": "red", "type": "vxswitch-cni",
            "socket": d.socket,
            "ipam": {"type": "host-local", "dataDir": ipam.0,
                     "ranges": [[{"subnet": "10.95.0.0/24"}]]}
        });
        let ns = Netns::new("vxrcni");
        let id = unique("cid-");
        let path = ns.path();
        let env = [
            ("CNI_CONTAINERID", id.as_str()),
            ("CNI_NETNS", path.as_str()),
            ("CNI_IFNAME", "eth0"),
        ];
        let t0 = Instant::now();
        let add = cni_exec(
            &plugins.0.join("vxswitch-cni"),
            "/usr/lib/cni",
            "ADD",
            &env,
            &conf.to_string(),
        );
        figure(sc, "cni_add_ms", t0.elapsed().as_millis());
        assert!(
            add.ok,
            "CNI ADD during the abuse: {} {}",
            add.stdout, add.stderr
        );
        let peak = sample(pid);
        figure(sc, "rss_with_hoarders_kib", peak.rss_kib);
        let line = long.join().unwrap();
        assert!(
            line.contains("request line longer than"),
            "16 MiB line: {line}"
        );
        let n = random.join().unwrap();
        figure(sc, "random_bytes_reply_bytes", n);
        let (got, closed) = slow.join().unwrap();
        figure(sc, "slow_reader_bytes", got);
        figure(sc, "slow_reader_closed", closed);
        drop(hoarders);
        let del = cni_exec(
            &plugins.0.join("vxswitch-cni"),
            "/usr/lib/cni",
            "DEL",
            &env,
            &conf.to_string(),
        );
        assert!(del.ok, "CNI DEL: {} {}", del.stdout, del.stderr);
    });
    drop(idle);
    let lat = pinger.finish();
    let (p50, p99, max) = (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        *lat.last().unwrap(),
    );
    figure(sc, "ping_count", lat.len());
    figure(sc, "ping_p50_us", p50.as_micros());
    figure(sc, "ping_p99_us", p99.as_micros());
    figure(sc, "ping_max_us", max.as_micros());
    figure(sc, "release_build", !cfg!(debug_assertions));
    figure(sc, "rss_before_kib", base.rss_kib);
    let st = d.json(&["stats"]);
    figure(sc, "control", &st["control"]);
    assert!(
        st["control"]["evicted"].as_u64() >= Some(172),
        "{}",
        st["control"]
    );
    assert!(
        max < ping_bound(),
        "ping took {max:?} (bound {:?}); p99 {p99:?}",
        ping_bound()
    );
    // The slow reader was cut off by the reply timeout (10 s).
    if s.slow > Duration::from_secs(11) {
        assert!(
            st["control"]["reply_timeouts"].as_u64() >= Some(1),
            "{}",
            st["control"]
        );
    }
}

// ---------------------------------------------------------------------------
// Port churn

/// Ports come and go while iperf3 and a pktgen flow run between two other
/// ports: the pktgen flow loses and reorders nothing, and the daemon's fds
/// and threads are the same before and after (RSS within a margin).
#[test]
fn port_churn_leaves_other_flows_and_resources_untouched() {
    if !can_run(&["ip", "ping", "iperf3", "kill"]) {
        return;
    }
    let s = Scale::get();
    let sc = "port_churn";
    let d = Daemon::start(&[]);
    let pid = d.child.id();
    d.cli(&["network", "create", "red", "--subnet", "10.96.0.0/24"]);
    let a = quiet("vxrp");
    let b = quiet("vxrp");
    d.port_add("a", "red", &a, "10.96.0.11/24", &[]);
    d.port_add("b", "red", &b, "10.96.0.12/24", &[]);
    assert!(a.ping_within("10.96.0.12", WAIT), "{}", d.log());
    let churners: Vec<Netns> = (0..4).map(|_| Netns::new("vxrq")).collect();
    // One cycle first, so lazily made things exist before the baseline.
    let cycle = |i: u64| {
        let ns = &churners[(i % 4) as usize];
        let name = format!("c{i}");
        d.port_add(
            &name,
            "red",
            ns,
            &format!("10.96.0.{}/24", 100 + i % 4),
            &[],
        );
        assert!(ns.ping_within("10.96.0.11", WAIT), "cycle {i}\n{}", d.log());
        d.cli(&["port", "rm", &name]);
    };
    cycle(0);
    let before = settled(pid);
    // iperf3 from b to a (TCP, limited so the pktgen flow has room) and a
    // pktgen flow from a to b, both through the churn.
    let _iperf = iperf_flow(&b, &a, "10.96.0.11", "200M");
    let rx = Rx::start(&b, &["--idle-timeout", "5"]);
    let bmac = mac_of(&b);
    let txc = cmd(
        BIN,
        &[
            "--json",
            "pktgen",
            "tx",
            "--dev",
            "eth0",
            "--netns",
            &a.name,
            "--dst-mac",
            &bmac,
            "--rate",
            "20k",
            "--duration",
            "100000",
            "--flows",
            "4",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let segs = b.snmp("Tcp", "OutSegs");
    let t = Instant::now();
    for i in 1..=s.cycles {
        cycle(i);
    }
    let took = t.elapsed();
    let tcp = b.snmp("Tcp", "OutSegs") - segs;
    figure(sc, "iperf3_segments_during", tcp);
    assert!(
        tcp > 100,
        "iperf3 b -> a did not run during the churn: {tcp} segments"
    );
    signal(txc.id(), "INT");
    let txo = txc.wait_with_output().unwrap();
    assert!(
        txo.status.success(),
        "{}",
        String::from_utf8_lossy(&txo.stderr)
    );
    let r = rx.finish();
    figure(sc, "cycles", s.cycles);
    figure(sc, "cycle_ms", took.as_millis() as u64 / s.cycles);
    figure(sc, "pktgen_frames", &r["frames"]);
    figure(sc, "pktgen_lost", &r["lost"]);
    figure(sc, "pktgen_reordered", &r["reordered"]);
    assert!(r["frames"].as_u64() > Some(0), "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["reordered"], 0, "{r}");
    assert_eq!(r["duplicates"], 0, "{r}");
    assert_eq!(d.port_names().len(), 2, "{:?}", d.port_names());
    // The daemon lets go of every port's fds, and its threads.
    let mut after = sample(pid);
    wait_until(WAIT, || {
        after = sample(pid);
        after.fds == before.fds
    });
    figure(sc, "before", format!("{before:?}"));
    figure(sc, "after", format!("{after:?}"));
    assert_eq!(after.fds, before.fds, "open fds");
    assert_eq!(after.threads, before.threads, "threads");
    assert!(
        after.rss_kib < before.rss_kib + 16 * 1024,
        "RSS {before:?} -> {after:?}"
    );
}

// ---------------------------------------------------------------------------
// kill -9 under traffic

/// A TCP connection that sends a known pattern until told to stop, and
/// the digest of what the other end received.
struct Stream {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<(u64, u64)>>,
    got: Arc<AtomicU64>,
    tx: JoinHandle<()>,
    rx: JoinHandle<(u64, u64)>,
}

fn digest(d: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(d, |d, &b| d.wrapping_mul(31).wrapping_add(u64::from(b)))
}

impl Stream {
    fn open(client: &Netns, server: &Netns, ip: &str) -> Stream {
        use vxswitch::ports::{netns::run_in, Netns as Ns};
        let addr: SocketAddr = format!("{ip}:5302").parse().unwrap();
        let l = run_in(&Ns::named(&server.name), || TcpListener::bind(addr))
            .unwrap()
            .unwrap();
        let got = Arc::new(AtomicU64::new(0));
        let g = got.clone();
        let rx = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let (mut total, mut d, mut buf) = (0u64, 0u64, vec![0u8; 1 << 16]);
            loop {
                let n = s.read(&mut buf).expect("the receiving end");
                if n == 0 {
                    return (total, d);
                }
                d = digest(d, &buf[..n]);
                total += n as u64;
                g.store(total, Ordering::Relaxed);
            }
        });
        let mut c = run_in(&Ns::named(&client.name), || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        })
        .unwrap()
        .unwrap();
        c.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new((0u64, 0u64)));
        let (st, se) = (stop.clone(), sent.clone());
        let tx = std::thread::spawn(move || {
            let mut chunk = vec![0u8; 16 * 1024];
            let (mut n, mut d) = (0u64, 0u64);
            while !st.load(Ordering::Relaxed) {
                for (i, b) in chunk.iter_mut().enumerate() {
                    *b = ((n + i as u64) % 251) as u8;
                }
                c.write_all(&chunk).expect("the sending end");
                d = digest(d, &chunk);
                n += chunk.len() as u64;
                *se.lock().unwrap() = (n, d);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Stream {
            stop,
            sent,
            got,
            tx,
            rx,
        }
    }

    fn received(&self) -> u64 {
        self.got.load(Ordering::Relaxed)
    }

    /// Stops sending, closes, and asserts the receiver got exactly what
    /// was sent; returns the byte count.
    fn close(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.tx.join().expect("the TCP sender failed");
        let sent = *self.sent.lock().unwrap();
        let got = self.rx.join().expect("the TCP receiver failed");
        assert_eq!(got, sent, "(bytes, digest) received differ from those sent");
        sent.0
    }
}

/// The daemon is killed with SIGKILL while a ping flood and a TCP
/// connection run through it, and started again on its state directory:
/// the ports are back, the first ping's delay is measured, and the TCP
/// connection's bytes arrive intact.
#[test]
fn kill_9_under_traffic_and_restart_from_state() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let sc = "kill_9";
    let state = TempDir::new("vxrel-state-");
    let mut d = Daemon::start_with_state(&state.0, &[]);
    d.cli(&["network", "create", "red", "--subnet", "10.97.0.0/24"]);
    let (a, b) = (quiet("vxrk"), quiet("vxrk"));
    d.port_add("a", "red", &a, "10.97.0.11/24", &[]);
    d.port_add("b", "red", &b, "10.97.0.12/24", &[]);
    assert!(a.ping_within("10.97.0.12", WAIT), "{}", d.log());
    let stream = Stream::open(&a, &b, "10.97.0.12");
    wait_for(WAIT, "the TCP stream flowing", || {
        stream.received() > 1 << 20
    });
    let flood = a.spawn(&["ping", "-f", "-n", "-q", "10.97.0.12"]);
    std::thread::sleep(Duration::from_millis(500));
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let at_kill = stream.received();
    let t = Instant::now();
    let d2 = Daemon::start_with_state(&state.0, &[]);
    let answering = t.elapsed();
    assert!(
        wait_until(Duration::from_secs(30), || a.ping("10.97.0.12")),
        "no ping after the restart\n{}",
        d2.log()
    );
    let first_ping = t.elapsed();
    drop(flood);
    let mut ports = d2.port_names();
    ports.sort();
    assert_eq!(ports, ["a", "b"]);
    wait_for(
        Duration::from_secs(30),
        "the TCP stream moving again",
        || stream.received() > at_kill + (1 << 20),
    );
    let resumed = t.elapsed();
    let bytes = stream.close();
    figure(sc, "control_answering_ms", answering.as_millis());
    figure(sc, "first_ping_ms", first_ping.as_millis());
    figure(sc, "tcp_resumed_ms", resumed.as_millis());
    figure(sc, "tcp_bytes_intact", bytes);
    drop(d);
}

// ---------------------------------------------------------------------------
// VXLAN garbage

/// The kinds of garbage, each with the counter it must land under.
const GARBAGE: &[&str] = &[
    "short",     // < 8 bytes: vxlan truncated
    "no_i_flag", // flags without I: vxlan bad_flags
    "wrong_vni", // a VNI no network has: vxlan unknown_vni
    "runt",      // header + 5 bytes: runt on the VTEP
    "bad_src",   // inner source multicast: invalid_source on the VTEP
    "oversize",  // a 4000-byte inner frame: oversize on the egress port
    "random",    // random bytes with the I flag and the right VNI
];

/// A datagram of `kind` for VNI `vni`, the `i`th of its kind.
fn garbage(kind: &str, vni: u32, i: u64, x: &mut u64) -> Vec<u8> {
    let mut rnd = || {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x as u8
    };
    let hdr = |flags: u32, vni: u32| {
        let mut h = flags.to_be_bytes().to_vec();
        h.extend_from_slice(&(vni << 8).to_be_bytes());
        h
    };
    match kind {
        "short" => (0..(i % 8)).map(|_| rnd()).collect(),
        "no_i_flag" => {
            let mut d = hdr((i as u32 & 0xf7) << 24, vni);
            d.extend_from_slice(&[0u8; 60]);
            d
        }
        "wrong_vni" => {
            let mut d = hdr(0x0800_0000, vni + 1 + (i as u32 % 1000));
            d.extend_from_slice(&[0u8; 60]);
            d
        }
        "runt" => {
            let mut d = hdr(0x0800_0000, vni);
            d.extend((0..5).map(|_| rnd()));
            d
        }
        "bad_src" => {
            let mut d = hdr(0x0800_0000, vni);
            d.extend_from_slice(&[0x02, 0, 0, 0, 0xee, 0x01]);
            d.extend_from_slice(&[0x01, 0, 0x5e, 0, 0, 1]);
            d.extend_from_slice(&[0x88, 0xb5]);
            d.extend_from_slice(&[0u8; 46]);
            d
        }
        "oversize" => {
            let mut d = hdr(0x0800_0000, vni);
            // To the container behind the switch, too large for its MTU.
            d.extend_from_slice(&[0x02, 0, 0, 0x61, 0, 0x01]);
            d.extend_from_slice(&[0x02, 0, 0, 0x62, 0, 0x01]);
            d.extend_from_slice(&[0x88, 0xb5]);
            d.resize(8 + 4000, 0);
            d
        }
        "random" => {
            let mut d = hdr(0x0800_0000, vni);
            let n = 14 + (i % 1400) as usize;
            d.extend((0..n).map(|_| rnd()));
            // Never a local port's own MAC or the switch's: a unicast
            // source of its own range.
            d[8 + 6..8 + 12].copy_from_slice(&[0x02, 0xaa, 0, 0, (i >> 8) as u8, i as u8]);
            d
        }
        _ => unreachable!(),
    }
}

/// Garbage of every kind from a member VTEP and from a stranger: each
/// datagram is counted under a reason, the daemon does not crash, and a
/// ping across the overlay works throughout.
#[test]
fn vxlan_garbage_is_counted_and_traffic_flows() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let s = Scale::get();
    let sc = "vxlan_garbage";
    const VNI: u32 = 5151;
    let (ha, hb) = (Netns::new("vxrga"), Netns::new("vxrgb"));
    support::run(
        "ip",
        &[
            "-n", &ha.name, "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns",
            &hb.name,
        ],
    );
    for (ns, ip) in [
        (&ha, "198.18.77.1/24"),
        (&hb, "198.18.77.2/24"),
        (&hb, "198.18.77.3/24"),
    ] {
        ns.ip_ok(&["addr", "add", ip, "dev", "ul0"]);
        ns.ip_ok(&["link", "set", "ul0", "up"]);
    }
    let mut da = Daemon::start_in(Some(&ha), &[]);
    let db = Daemon::start_in(Some(&hb), &[]);
    for (dm, peer) in [(&da, "198.18.77.2"), (&db, "198.18.77.1")] {
        dm.cli(&[
            "network",
            "create",
            "ov",
            "--vni",
            &VNI.to_string(),
            "--subnet",
            "10.98.0.0/24",
        ]);
        dm.cli(&["vtep", "add", "ov", peer]);
    }
    let (a1, b1) = (quiet("vxrgc"), quiet("vxrgc"));
    da.port_add(
        "a1",
        "ov",
        &a1,
        "10.98.0.11/24",
        &["--mac", "02:00:00:61:00:01"],
    );
    db.port_add(
        "b1",
        "ov",
        &b1,
        "10.98.0.21/24",
        &["--mac", "02:00:00:62:00:01"],
    );
    assert!(
        a1.ping_within("10.98.0.21", WAIT),
        "{}\n{}",
        da.log(),
        db.log()
    );

    // What the switch on host A counts: the socket's drops by reason, the
    // member VTEP's frames and drops, a1's drops.
    let snapshot = || -> (Value, Value, Value) {
        let st = da.json(&["stats"]);
        let vteps = da.json(&["vtep", "ls"]);
        let member = vteps
            .as_array()
            .and_then(|v| v.iter().find(|v| v["addr"] == "198.18.77.2:4789").cloned())
            .unwrap_or_else(|| panic!("no member VTEP in {vteps}"));
        (
            st["vxlan"]["drops"].clone(),
            member["stats"].clone(),
            find_port(&st, "a1").clone(),
        )
    };
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let (d0, m0, p0) = snapshot();
    let mut sent: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
    let pings = std::thread::scope(|t| {
        let ping = t.spawn(|| (0..5).filter(|_| a1.ping("10.98.0.21")).count());
        for (src, who) in [("198.18.77.2", "member"), ("198.18.77.3", "stranger")] {
            use vxswitch::ports::{netns::run_in, Netns as Ns};
            let sock = run_in(&Ns::named(&hb.name), || UdpSocket::bind(format!("{src}:0")))
                .unwrap()
                .unwrap();
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            for i in 0..s.datagrams {
                let kind = GARBAGE[(i % GARBAGE.len() as u64) as usize];
                sock.send_to(&garbage(kind, VNI, i, &mut x), "198.18.77.1:4789")
                    .unwrap();
                *sent.entry((who, kind)).or_default() += 1;
                if i % 256 == 255 {
                    // The daemon reads as fast as it can; were the kernel's
                    // queue to overflow, that is counted too.
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        ping.join().unwrap()
    });
    let total: u64 = sent.values().sum();
    figure(sc, "datagrams", total);
    assert!(
        pings >= 4,
        "only {pings} of 5 pings across the overlay worked"
    );
    let of = |who: &str, kinds: &[&str]| -> u64 {
        kinds
            .iter()
            .map(|k| sent.get(&(who, *k)).copied().unwrap_or(0))
            .sum()
    };
    let both = |k: &str| of("member", &[k]) + of("stranger", &[k]);
    // Where each kind must land, once every datagram is read.
    let expect = [
        ("socket truncated", both("short")),
        ("socket bad_flags", both("no_i_flag")),
        ("socket unknown_vni", both("wrong_vni")),
        (
            "socket unknown_vtep",
            of("stranger", &["runt", "bad_src", "oversize", "random"]),
        ),
        ("member runt", of("member", &["runt"])),
        ("member invalid_source", of("member", &["bad_src"])),
        ("a1 oversize", of("member", &["oversize"])),
    ];
    let got = |d: &(Value, Value, Value)| -> Vec<u64> {
        let (sock, member, a1) = d;
        vec![
            n(sock, "truncated") - n(&d0, "truncated"),
            n(sock, "bad_flags") - n(&d0, "bad_flags"),
            n(sock, "unknown_vni") - n(&d0, "unknown_vni"),
            n(sock, "unknown_vtep") - n(&d0, "unknown_vtep"),
            n(&member["drops"], "runt") - n(&m0["drops"], "runt"),
            n(&member["drops"], "invalid_source") - n(&m0["drops"], "invalid_source"),
            n(&a1["drops"], "oversize") - n(&p0["drops"], "oversize"),
        ]
    };
    let want: Vec<u64> = expect.iter().map(|(_, v)| *v).collect();
    let mut last = snapshot();
    let all_counted = wait_until(WAIT, || {
        last = snapshot();
        got(&last) == want
    });
    let overflow = n(&last.0, "socket_overflow") - n(&d0, "socket_overflow");
    figure(sc, "socket_drops", &last.0);
    figure(sc, "member_vtep_drops", &last.1["drops"]);
    figure(
        sc,
        "member_rx_frames",
        n(&last.1, "rx_frames") - n(&m0, "rx_frames"),
    );
    figure(
        sc,
        "a1_oversize",
        n(&last.2["drops"], "oversize") - n(&p0["drops"], "oversize"),
    );
    let labels: Vec<&str> = expect.iter().map(|(l, _)| *l).collect();
    assert!(
        all_counted || overflow > 0,
        "counted {:?}, expected {want:?} ({labels:?})",
        got(&last)
    );
    // The member's random frames were decapsulated and forwarded (or
    // dropped as the inner frame deserved): its rx_frames took them all.
    assert!(
        n(&last.1, "rx_frames") - n(&m0, "rx_frames")
            >= of("member", &["runt", "bad_src", "oversize", "random"]),
        "{}",
        last.1
    );
    // No crash, and traffic still flows both ways.
    assert!(da.child.try_wait().unwrap().is_none(), "{}", da.log());
    assert!(a1.ping_within("10.98.0.21", WAIT), "{}", da.log());
    assert!(b1.ping_within("10.98.0.11", WAIT), "{}", db.log());
}

// ---------------------------------------------------------------------------
// Soak

/// Mixed traffic with churn for the soak's length: RSS, fds and threads
/// sampled each interval stay flat.
#[test]
fn soak_mixed_traffic_with_churn_stays_flat() {
    if !can_run(&["ip", "ping", "iperf3"]) {
        return;
    }
    let s = Scale::get();
    let sc = "soak";
    let d = Daemon::start(&[]);
    let pid = d.child.id();
    d.cli(&["network", "create", "red", "--subnet", "10.99.0.0/24"]);
    let (a, b, c) = (quiet("vxrs"), quiet("vxrs"), quiet("vxrs"));
    d.port_add("a", "red", &a, "10.99.0.11/24", &[]);
    d.port_add("b", "red", &b, "10.99.0.12/24", &[]);
    d.port_add("c", "red", &c, "10.99.0.13/24", &[]);
    assert!(a.ping_within("10.99.0.12", WAIT), "{}", d.log());
    assert!(c.ping_within("10.99.0.11", WAIT), "{}", d.log());
    let _iperf = iperf_flow(&b, &a, "10.99.0.11", "100M");
    let _ping = c.spawn(&["ping", "-i", "0.01", "-n", "-q", "10.99.0.12"]);
    let stop = AtomicBool::new(false);
    let churn_ns = Netns::new("vxrs");
    let cycles = AtomicU64::new(0);
    let samples = std::thread::scope(|t| {
        t.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("s{i}");
                d.port_add(&name, "red", &churn_ns, "10.99.0.50/24", &[]);
                let _ = churn_ns.ping_within("10.99.0.11", Duration::from_secs(3));
                d.cli(&["port", "rm", &name]);
                i += 1;
                cycles.store(i, Ordering::Relaxed);
            }
        });
        t.spawn(|| {
            // Broadcast and unknown unicast too: pktgen bursts from c.
            while !stop.load(Ordering::Relaxed) {
                tx(
                    &c,
                    "ff:ff:ff:ff:ff:ff",
                    &["--count", "20000", "--rate", "20k"],
                );
            }
        });
        // Warm-up: the first interval settles allocator pools and threads.
        std::thread::sleep(s.interval);
        let end = Instant::now() + s.soak;
        let mut v = vec![sample(pid)];
        while Instant::now() < end {
            std::thread::sleep(s.interval);
            v.push(sample(pid));
            eprintln!("soak sample {:?}", v.last().unwrap());
        }
        stop.store(true, Ordering::Relaxed);
        v
    });
    let first = samples[0];
    let last = *samples.last().unwrap();
    figure(sc, "seconds", s.soak.as_secs());
    figure(sc, "churn_cycles", cycles.load(Ordering::Relaxed));
    figure(
        sc,
        "rss_kib_series",
        format!(
            "{:?}",
            samples.iter().map(|x| x.rss_kib).collect::<Vec<_>>()
        ),
    );
    figure(
        sc,
        "fds_series",
        format!("{:?}", samples.iter().map(|x| x.fds).collect::<Vec<_>>()),
    );
    figure(
        sc,
        "threads_series",
        format!(
            "{:?}",
            samples.iter().map(|x| x.threads).collect::<Vec<_>>()
        ),
    );
    assert!(cycles.load(Ordering::Relaxed) > 0);
    // Flat: threads exactly; fds within the one churning port's own (a
    // sample may fall inside a cycle); RSS within 16 MiB of the first.
    let maxf = samples.iter().map(|x| x.fds).max().unwrap();
    let minf = samples.iter().map(|x| x.fds).min().unwrap();
    assert!(maxf - minf <= 8, "fds {samples:?}");
    let maxt = samples.iter().map(|x| x.threads).max().unwrap();
    let mint = samples.iter().map(|x| x.threads).min().unwrap();
    assert!(maxt - mint <= 2, "threads {samples:?}");
    assert!(
        last.rss_kib < first.rss_kib + 16 * 1024,
        "RSS grew {} -> {} KiB: {samples:?}",
        first.rss_kib,
        last.rss_kib
    );
    assert!(d.cli_raw(&["ping"]).status.success());
}
