//! Seeing inside the switch (docs/observability.md): the Prometheus
//! endpoint checked by `promtool` and scraped by a real Prometheus server.
//! Each test runs its daemon and tools inside a namespace of its own, so
//! fixed ports there collide with nothing. Needs root (CI runs as root).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use support::{can_run, cmd, Daemon, Netns, Proc, TempDir, BIN};

/// Where the daemon serves metrics inside the test's host namespace.
const METRICS: &str = "127.0.0.1:9478";

/// A daemon inside its own namespace `host` with `extra` flags, a network
/// `red` (10.79.OCTET.0/24) and `n` containers on it.
struct Lan {
    daemon: Daemon,
    containers: Vec<Netns>,
    host: Netns,
    octet: u8,
}

fn lan(octet: u8, n: usize, extra: &[&str]) -> Lan {
    let host = Netns::new("vxoh");
    let daemon = Daemon::start_in(Some(&host), extra);
    daemon.cli(&[
        "network",
        "create",
        "red",
        "--subnet",
        &format!("10.79.{octet}.0/24"),
        "--gateway-port",
        "none",
    ]);
    let containers: Vec<Netns> = (0..n).map(|_| Netns::new("vxoc")).collect();
    for (i, c) in containers.iter().enumerate() {
        let ip = format!("10.79.{octet}.{}/24", 11 + i);
        daemon.port_add(&format!("c{i}"), "red", c, &ip, &[]);
    }
    Lan {
        daemon,
        containers,
        host,
        octet,
    }
}

impl Lan {
    fn ip(&self, i: usize) -> String {
        format!("10.79.{}.{}", self.octet, 11 + i)
    }

    /// `ping -c COUNT` from container `from` to container `to`; must work.
    fn ping(&self, from: usize, to: usize, count: u32) {
        let out = self.containers[from].exec(
            "ping",
            &[
                "-c",
                &count.to_string(),
                "-i",
                "0.2",
                "-W",
                "5",
                &self.ip(to),
            ],
        );
        assert!(
            out.status.success(),
            "c{from} cannot ping c{to}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            self.daemon.log()
        );
    }

    /// An HTTP GET from inside the host namespace: (status line, body).
    fn get(&self, addr: &str, path: &str) -> (String, String) {
        let (addr, path) = (addr.to_string(), path.to_string());
        self.host.enter(move || http_get(&addr, &path))
    }

    fn scrape(&self) -> String {
        let (status, body) = self.get(METRICS, "/metrics");
        assert!(status.contains(" 200 "), "GET /metrics: {status}\n{body}");
        body
    }
}

/// A plain HTTP/1.1 GET with `Connection: close`: (status line, body).
fn http_get(addr: &str, path: &str) -> (String, String) {
    try_http_get(addr, path).unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

fn try_http_get(addr: &str, path: &str) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Ok((
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    ))
}

/// The value of the sample line that starts with `series` (name and
/// labels, exactly as written), if the page has one.
fn value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_move_with_traffic_pass_promtool_and_a_prometheus_server_scrapes_them() {
    if !can_run(&["ip", "ping", "promtool", "prometheus"]) {
        return;
    }
    let l = lan(1, 2, &["--metrics", METRICS]);
    assert!(
        l.daemon
            .log()
            .contains("metrics at http://127.0.0.1:9478/metrics"),
        "{}",
        l.daemon.log()
    );
    l.ping(0, 1, 3);
    let page = l.scrape();
    let rx0 = r#"vxswitch_port_rx_frames_total{port="c0",network="red"}"#;
    let tx1 = r#"vxswitch_port_tx_frames_total{port="c1",network="red"}"#;
    let before = value(&page, rx0).unwrap_or_else(|| panic!("no {rx0} in\n{page}"));
    assert!(before >= 3.0, "{rx0} = {before} after 3 pings\n{page}");
    assert!(value(&page, tx1).unwrap_or(0.0) >= 3.0, "{page}");
    assert!(
        value(&page, r#"vxswitch_fdb_learned_total{network="red"}"#).unwrap_or(0.0) >= 2.0,
        "both containers' MACs are learned\n{page}"
    );
    assert_eq!(
        value(
            &page,
            r#"vxswitch_control_requests_total{verb="port.add",result="ok"}"#
        ),
        Some(2.0),
        "{page}"
    );

    // promtool's lint: the format, names, suffixes and help of every family.
    let dir = TempDir::new("vxsw-prom-");
    let file = dir.0.join("page.prom");
    std::fs::write(&file, &page).unwrap();
    let out = cmd("promtool", &["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{page}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The counters move with traffic.
    l.ping(0, 1, 5);
    let after = value(&l.scrape(), rx0).unwrap();
    assert!(after >= before + 5.0, "{rx0}: {before} then {after}");

    // The worker's busy time moves with traffic too (a flood of pings:
    // thousands of wake-ups that serve frames), and so does its idle time.
    // Broadcast pings: the switch floods every one of them, also on veth
    // ports with the eBPF fast path (which takes known unicast only, so a
    // unicast flood would never wake a worker there).
    l.containers[1].sysctl("net.ipv4.icmp_echo_ignore_broadcasts", "0");
    let busy = r#"vxswitch_worker_busy_seconds_total{worker="0"}"#;
    let idle = r#"vxswitch_worker_idle_seconds_total{worker="0"}"#;
    let page = l.scrape();
    let (busy0, idle0) = (value(&page, busy), value(&page, idle));
    assert!(
        busy0.is_some() && idle0.is_some(),
        "no {busy} or {idle} in\n{page}"
    );
    let bcast = format!("10.79.{}.255", l.octet);
    let out = l.containers[0].exec(
        "ping",
        &["-b", "-f", "-q", "-c", "2000", "-s", "1000", &bcast],
    );
    assert!(out.status.success(), "ping -f: {out:?}");
    let page = l.scrape();
    let (busy1, idle1) = (value(&page, busy).unwrap(), value(&page, idle).unwrap());
    assert!(
        busy1 > busy0.unwrap() && idle1 > idle0.unwrap(),
        "worker time: busy {busy0:?} then {busy1}, idle {idle0:?} then {idle1}\n{page}"
    );
    let stats = l.daemon.cli(&["stats"]);
    assert!(stats.contains("worker 0: busy "), "{stats}");

    // Anything but GET /metrics is refused, and counted.
    let (status, _) = l.get(METRICS, "/");
    assert!(status.contains(" 404 "), "{status}");
    assert_eq!(
        value(
            &l.scrape(),
            r#"vxswitch_metrics_http_requests_total{code="404"}"#
        ),
        Some(1.0)
    );

    // A real Prometheus server scrapes the endpoint.
    let config = dir.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: \
             vxswitch\n    static_configs:\n      - targets: ['{METRICS}']\n"
        ),
    )
    .unwrap();
    let data = dir.0.join("data");
    let log = std::fs::File::create(dir.0.join("prometheus.log")).unwrap();
    let prom_args = [
        "netns",
        "exec",
        &l.host.name,
        "prometheus",
        &format!("--config.file={}", config.display()),
        &format!("--storage.tsdb.path={}", data.display()),
        "--web.listen-address=127.0.0.1:9090",
    ];
    let _prometheus = Proc(
        cmd("ip", &prom_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let query = format!("/api/v1/query?query={}", "vxswitch_port_rx_frames_total");
    let mut last = String::new();
    let scraped = support::wait_until(Duration::from_secs(90), || {
        let Ok((_, body)) = l.host.enter(|| try_http_get("127.0.0.1:9090", &query)) else {
            return false; // not listening yet
        };
        last = body;
        last.contains(r#""port":"c0""#) && last.contains(r#""job":"vxswitch""#)
    });
    assert!(
        scraped,
        "Prometheus did not scrape the port counters: {last}\nits log:\n{}",
        std::fs::read_to_string(dir.0.join("prometheus.log")).unwrap_or_default()
    );
}

/// `vxswitch --json monitor` on `daemon`'s socket, its lines read on a
/// thread of their own. Runs: the binary under test.
struct Monitor {
    _proc: Proc,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<serde_json::Value>,
}

impl Monitor {
    fn start(daemon: &Daemon) -> Monitor {
        let mut child = cmd(
            BIN,
            &[
                "--socket",
                daemon.socket.to_str().unwrap(),
                "--json",
                "monitor",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vxswitch monitor");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Monitor {
            _proc: Proc(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most `timeout`) for an event for which `f` is true;
    /// returns its index among the events seen so far.
    fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> usize {
        if let Some(i) = self.seen.iter().position(&f) {
            return i;
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                panic!("no {what} event within {timeout:?}; saw:\n{:#?}", self.seen);
            };
            let v: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("monitor printed non-JSON ({e}): {line}"));
            self.seen.push(v);
            if f(self.seen.last().unwrap()) {
                return self.seen.len() - 1;
            }
        }
    }
}

fn is(kind: &str, key: &str, val: &str) -> impl Fn(&serde_json::Value) -> bool {
    let (kind, key, val) = (kind.to_string(), key.to_string(), val.to_string());
    move |e| e["kind"] == kind.as_str() && e[&key] == val.as_str()
}

#[test]
fn monitor_shows_learn_move_age_and_port_gone_in_order() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let host = Netns::new("vxoh");
    let daemon = Daemon::start_in(Some(&host), &["--ageing-time", "2"]);
    let mut mon = Monitor::start(&daemon);
    // Subscribed once the daemon counts its connection (and ours).
    support::wait_for(Duration::from_secs(10), "the monitor's connection", || {
        daemon.json(&["stats"])["control"]["clients"]
            .as_u64()
            .unwrap_or(0)
            >= 2
    });
    daemon.cli(&[
        "network",
        "create",
        "red",
        "--subnet",
        "10.79.2.0/24",
        "--gateway-port",
        "none",
    ]);
    let c: Vec<Netns> = (0..2).map(|_| Netns::new("vxoc")).collect();
    for (i, ns) in c.iter().enumerate() {
        let ip = format!("10.79.2.{}/24", 11 + i);
        daemon.port_add(&format!("c{i}"), "red", ns, &ip, &["--no-port-security"]);
    }
    mon.wait_for(
        Duration::from_secs(10),
        "network_created",
        is("network_created", "network", "red"),
    );
    mon.wait_for(
        Duration::from_secs(10),
        "port_added c1",
        is("port_added", "port", "c1"),
    );

    // A MAC no port owns, first behind c0, then behind c1.
    let x = "02:00:00:79:02:aa";
    c[0].ip_ok(&["link", "set", "eth0", "address", x]);
    let _ = c[0].exec("ping", &["-c1", "-W2", "10.79.2.12"]);
    let learned = mon.wait_for(Duration::from_secs(10), "mac_learned on c0", |e| {
        e["kind"] == "mac_learned" && e["mac"] == x && e["port"] == "c0"
    });
    c[1].ip_ok(&["link", "set", "eth0", "address", x]);
    let _ = c[1].exec("ping", &["-c1", "-W1", "10.79.2.11"]);
    let moved = mon.wait_for(Duration::from_secs(10), "mac_moved to c1", |e| {
        e["kind"] == "mac_moved" && e["mac"] == x && e["port"] == "c1" && e["from"] == "c0"
    });
    // Nothing sends from it any more: gone after the 2 s ageing time.
    c[1].ip_ok(&["link", "set", "eth0", "address", "02:00:00:79:02:bb"]);
    let aged = mon.wait_for(Duration::from_secs(30), "mac_aged", |e| {
        e["kind"] == "mac_aged" && e["mac"] == x
    });
    run_ip(&["netns", "del", &c[0].name]);
    let gone = mon.wait_for(Duration::from_secs(15), "port_gone c0", |e| {
        e["kind"] == "port_gone" && e["port"] == "c0" && e["network"] == "red"
    });
    assert!(
        learned < moved && moved < aged && aged < gone,
        "out of order: {learned} {moved} {aged} {gone}:\n{:#?}",
        mon.seen
    );
    assert!(
        mon.seen[gone]["cause"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{:#?}",
        mon.seen[gone]
    );
}

fn run_ip(args: &[&str]) {
    support::run("ip", args);
}

#[test]
fn stats_watch_prints_live_rates_when_piped() {
    if !can_run(&["ip", "ping"]) {
        return;
    }
    let l = lan(3, 2, &[]);
    let mut watch = cmd(
        BIN,
        &[
            "--socket",
            l.daemon.socket.to_str().unwrap(),
            "stats",
            "--watch",
            "0.5",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("start stats --watch");
    let out = watch.stdout.take().unwrap();
    let _watch = Proc(watch);
    let _ping = l.containers[0].spawn(&["ping", "-i", "0.2", "-c", "50", &l.ip(1)]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Plain lines, one per port per interval: "HH:MM:SS c0 rx N f/s ...".
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no moving rate for c0; printed:\n{}", seen.join("\n")));
        assert!(!line.contains('\x1b'), "escape codes on a pipe: {line:?}");
        let f: Vec<&str> = line.split_whitespace().collect();
        seen.push(line.clone());
        if f.get(1) == Some(&"c0") && f.get(2) == Some(&"rx") && f.get(3).is_some_and(|r| *r != "0")
        {
            assert_eq!(f.get(4), Some(&"f/s"), "{line}");
            break;
        }
    }
}

/// `vxswitch capture ARGS -w FILE` running until [`CaptureRun::stop`].
struct CaptureRun {
    proc: Proc,
    file: std::path::PathBuf,
}

impl CaptureRun {
    fn start(l: &Lan, dir: &TempDir, name: &str, args: &[&str]) -> CaptureRun {
        let file = dir.0.join(name);
        let mut all = vec!["--socket", l.daemon.socket.to_str().unwrap(), "capture"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-w", file.to_str().unwrap()]);
        let child = cmd(BIN, &all)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vxswitch capture");
        // Attached once the section and interface blocks have arrived.
        support::wait_for(Duration::from_secs(10), "the capture to start", || {
            std::fs::metadata(&file).is_ok_and(|m| m.len() > 0)
        });
        CaptureRun {
            proc: Proc(child),
            file,
        }
    }

    /// Ctrl-C, then what the CLI reported: (frames, lost).
    fn stop(mut self) -> (u64, u64) {
        support::signal(self.proc.0.id(), "INT");
        let mut err = String::new();
        self.proc
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let st = self.proc.0.wait().unwrap();
        assert!(st.success(), "capture failed: {err}");
        // "capturing on ...", then "N frames captured, M lost..."
        let summary = err
            .lines()
            .find(|l| l.contains(" captured, "))
            .unwrap_or("");
        let w: Vec<&str> = summary.split_whitespace().collect();
        let frames = w.first().and_then(|n| n.parse().ok());
        let lost = w.get(3).and_then(|n| n.parse().ok());
        match (frames, lost) {
            (Some(f), Some(l)) => (f, l),
            _ => panic!("no summary from capture: {err}"),
        }
    }
}

/// `tshark -r FILE -Y FILTER -T fields -e ...`: one row per frame.
fn tshark(file: &std::path::Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec!["-r", file.to_str().unwrap(), "-Y", filter, "-T", "fields"];
    for f in fields {
        args.extend_from_slice(&["-e", f]);
    }
    support::run("tshark", &args)
        .lines()
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

fn port_counters(d: &Daemon, port: &str) -> (u64, u64) {
    let st = d.json(&["stats", port]);
    let p = support::find_port(&st, port);
    (
        p["rx_frames"].as_u64().unwrap(),
        p["tx_frames"].as_u64().unwrap(),
    )
}

#[test]
fn capture_of_a_ping_and_an_iperf3_transfer_decodes_in_tshark_with_directions_and_counts() {
    if !can_run(&["ip", "ping", "tshark", "iperf3", "timeout", "kill"]) {
        return;
    }
    let l = lan(4, 2, &[]);
    // Only the test's own traffic: no IPv6 neighbour discovery chatter.
    for c in &l.containers {
        c.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
    }
    let dir = TempDir::new("vxsw-cap-");

    // A ping: three requests in from c0, three replies out to it.
    let cap = CaptureRun::start(&l, &dir, "ping.pcapng", &["c0"]);
    l.ping(0, 1, 3);
    let file = cap.file.clone();
    let (frames, lost) = cap.stop();
    assert_eq!(lost, 0);
    let rows = tshark(
        &file,
        "icmp",
        &[
            "frame.interface_name",
            "frame.packet_flags_direction",
            "icmp.type",
        ],
    );
    let count = |dir: &str, ty: &str| {
        rows.iter()
            .filter(|r| r[0] == "c0" && r[1] == dir && r[2] == ty)
            .count()
    };
    assert_eq!(
        (count("0x00000001", "8"), count("0x00000002", "0")),
        (3, 3),
        "echo requests in, replies out: {rows:?}"
    );
    assert_eq!(
        tshark(&file, "", &["frame.number"]).len() as u64,
        frames,
        "tshark reads every frame the CLI counted"
    );

    // An iperf3 transfer from c0: every frame c0 sent or was sent is in
    // the capture or counted lost, and tshark sees the TCP stream both ways.
    let cap = CaptureRun::start(&l, &dir, "iperf.pcapng", &["c0"]);
    let (rx0, tx0) = port_counters(&l.daemon, "c0");
    support::iperf3(
        &l.containers[0],
        &l.containers[1],
        &l.ip(1),
        20_000_000,
        false,
    );
    std::thread::sleep(Duration::from_millis(500)); // the last ACKs land
    let (rx1, tx1) = port_counters(&l.daemon, "c0");
    let file = cap.file.clone();
    let (frames, lost) = cap.stop();
    let rows = tshark(&file, "", &["frame.packet_flags_direction"]);
    let ins = rows.iter().filter(|r| r[0] == "0x00000001").count() as u64;
    let outs = rows.iter().filter(|r| r[0] == "0x00000002").count() as u64;
    assert_eq!(ins + outs, frames);
    assert_eq!(
        frames + lost,
        (rx1 - rx0) + (tx1 - tx0),
        "captured {ins} in + {outs} out + {lost} lost against the port's counters: rx {} tx {}",
        rx1 - rx0,
        tx1 - tx0
    );
    if lost == 0 {
        assert_eq!((ins, outs), (rx1 - rx0, tx1 - tx0));
    }
    let data_in = tshark(
        &file,
        "tcp.dstport == 5201 && tcp.len > 0",
        &["frame.packet_flags_direction"],
    );
    assert!(
        data_in.iter().any(|r| r[0] == "0x00000001"),
        "no iperf3 data received from c0 in the capture"
    );
    let acks_out = tshark(
        &file,
        "tcp.srcport == 5201",
        &["frame.packet_flags_direction"],
    );
    assert!(
        acks_out.iter().any(|r| r[0] == "0x00000002"),
        "no iperf3 ACKs sent to c0 in the capture"
    );
}

/// The TCP payload bytes of the frames `filter` selects, and the longest frame.
fn tcp_payload(file: &std::path::Path, filter: &str) -> (u64, u64) {
    let rows = tshark(file, filter, &["tcp.len", "frame.len"]);
    let sum = rows
        .iter()
        .filter_map(|r| r.first()?.parse::<u64>().ok())
        .sum();
    let longest = rows
        .iter()
        .filter_map(|r| r.get(1)?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    (sum, longest)
}

#[test]
fn capture_writes_super_frames_with_their_offload_metadata_or_segmented() {
    if !can_run(&["ip", "tshark", "iperf3", "timeout", "kill"]) {
        return;
    }
    let l = lan(6, 2, &[]);
    for c in &l.containers {
        c.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
    }
    let dir = TempDir::new("vxsw-gso-");
    const BYTES: u64 = 5_000_000;
    let data = "tcp.dstport == 5201 && tcp.len > 0";
    for segment in [false, true] {
        let name = format!("gso-{segment}.pcapng");
        let mut args = vec!["c0", "--direction", "in"];
        if segment {
            args.push("--segment");
        }
        let cap = CaptureRun::start(&l, &dir, &name, &args);
        let (sent, received) =
            support::iperf3(&l.containers[0], &l.containers[1], &l.ip(1), BYTES, false);
        let file = cap.file.clone();
        let (frames, lost) = cap.stop();
        assert!(frames > 0, "nothing captured");
        let (payload, longest) = tcp_payload(&file, data);
        if segment {
            // Every frame as it went on a wire of MTU 1500, none with a comment.
            let (_, longest_any) = tcp_payload(&file, "");
            assert!(
                longest_any <= 1514,
                "a frame of {longest_any} bytes with --segment"
            );
            assert!(tshark(&file, "frame.comment", &["frame.number"]).is_empty());
        } else {
            // Super-frames as the switch holds them, their metadata as a comment.
            assert!(
                longest > 1514,
                "no super-frame in the capture (longest {longest})"
            );
            let meta = tshark(&file, "frame.len > 1514", &["frame.comment"]);
            assert!(
                !meta.is_empty()
                    && meta
                        .iter()
                        .all(|r| r[0].starts_with("gso tcpv4 size ")
                            && r[0].contains(" csum_start ")),
                "super-frames without their offload comment: {meta:?}"
            );
        }
        // The TCP payload adds up, when no copy was lost: at least what the
        // iperf3 server counted, at most what its client sent (iperf3 ends
        // the transfer with data still in flight) with the control
        // connection's few bytes on top.
        if lost == 0 {
            assert!(
                (received..=sent + 4096).contains(&payload),
                "segment {segment}: {payload} bytes of TCP payload captured; iperf3 sent \
                 {sent}, its server received {received}"
            );
        }
    }
}

#[test]
fn mirror_copies_of_a_port_reach_the_monitoring_port() {
    if !can_run(&["ip", "ping", "tshark"]) {
        return;
    }
    let l = lan(5, 3, &[]);
    for c in &l.containers {
        c.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
    }
    l.ping(0, 1, 1); // ARP settled: only ICMP from here on
    let out = l.daemon.cli(&["port", "mirror", "add", "c0", "--to", "c2"]);
    assert!(
        out.contains("port c0 mirrored to c2 (direction both)"),
        "{out}"
    );
    assert!(l
        .daemon
        .cli(&["port", "mirror", "ls"])
        .contains("c0  c2  both"));
    let (_, tx_before) = port_counters(&l.daemon, "c2");

    // tshark in the monitoring container, on its own eth0.
    let dir = TempDir::new("vxsw-mirror-");
    let file = dir.0.join("c2.pcap");
    let err = dir.0.join("tshark.log");
    let ns = l.containers[2].name.clone();
    let mut tshark = cmd(
        "ip",
        &[
            "netns",
            "exec",
            &ns,
            "tshark",
            "-i",
            "eth0",
            "-f",
            "icmp",
            "-c",
            "4",
            "-w",
            file.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&err).unwrap())
    .spawn()
    .expect("start tshark");
    support::wait_for(Duration::from_secs(30), "tshark to listen", || {
        std::fs::read_to_string(&err).is_ok_and(|s| s.contains("Capturing on"))
    });
    l.ping(0, 1, 4);
    let done = support::wait_until(Duration::from_secs(20), || {
        tshark.try_wait().ok().flatten().is_some()
    });
    let _ = tshark.kill();
    let _ = tshark.wait();
    assert!(
        done,
        "tshark in c2 did not see 4 ICMP frames: {}\nc2 counters before {tx_before:?} now {:?}\n{}",
        std::fs::read_to_string(&err).unwrap_or_default(),
        port_counters(&l.daemon, "c2"),
        l.daemon.cli(&["stats"])
    );
    let rows = support::run(
        "tshark",
        &[
            "-r",
            file.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "icmp.type",
            "-e",
            "ip.src",
        ],
    );
    let (c0, c1) = (l.ip(0), l.ip(1));
    let requests = rows.lines().filter(|r| **r == format!("8\t{c0}")).count();
    let replies = rows.lines().filter(|r| **r == format!("0\t{c1}")).count();
    // Both directions reach the monitoring port, and nothing else does.
    // Not an exact 2 + 2: tshark may go live after the first echo's
    // copies (its "Capturing on" comes a moment before the socket sees
    // frames), and a request's copy and its reply's are written by the
    // two workers, so c2's kernel (one backlog per CPU) may pass them to
    // tshark in either order. Any four in a row of the eight hold both.
    assert!(
        requests >= 1 && replies >= 1 && requests + replies == 4,
        "want requests from {c0} and replies from {c1}:\n{rows}"
    );
    // Written like any egress: counted on the monitoring port.
    let (_, tx_after) = port_counters(&l.daemon, "c2");
    assert!(tx_after >= tx_before + 8, "c2 tx {tx_before} -> {tx_after}");

    // Removed: no more copies.
    l.daemon.cli(&["port", "mirror", "rm", "c0"]);
    let (_, tx_before) = port_counters(&l.daemon, "c2");
    l.ping(0, 1, 2);
    let (_, tx_after) = port_counters(&l.daemon, "c2");
    assert_eq!(tx_after, tx_before, "copies after the mirror was removed");
}

/// `tcpdump` on a container's eth0, writing every ICMP and iperf3 frame
/// to a file as it comes (`-U`), until dropped.
struct Sniffer {
    _proc: Proc,
    file: std::path::PathBuf,
}

impl Sniffer {
    /// Starts it in `ns` and waits until it sees frames: pings from `from`
    /// to `to_ip` (whose copies the sniffer must get) until one is in.
    fn start(ns: &Netns, dir: &TempDir, from: &Netns, to_ip: &str) -> Sniffer {
        let file = dir.0.join(format!("{}.pcap", ns.name));
        let err = dir.0.join(format!("{}.log", ns.name));
        let f = file.to_str().unwrap();
        let child = cmd(
            "ip",
            &[
                "netns",
                "exec",
                &ns.name,
                "tcpdump",
                "-i",
                "eth0",
                "-U",
                "-B",
                "16384",
                "-w",
                f,
                "icmp or tcp port 5201",
            ],
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start tcpdump");
        let s = Sniffer {
            _proc: Proc(child),
            file,
        };
        support::wait_for(Duration::from_secs(30), "tcpdump to see a ping", || {
            from.exec("ping", &["-c1", "-W1", to_ip]);
            s.echo_requests() > 0
        });
        s
    }

    fn echo_requests(&self) -> usize {
        if !std::fs::metadata(&self.file).is_ok_and(|m| m.len() > 24) {
            return 0;
        }
        tshark(&self.file, "icmp.type == 8", &["frame.number"]).len()
    }

    /// Waits until every copy written before now is in the file: one more
    /// ping, whose copy comes after them (one worker, one queue), is.
    fn settle(&self, from: &Netns, to_ip: &str) {
        let before = self.echo_requests();
        support::wait_for(Duration::from_secs(30), "the last ping's copy", || {
            from.exec("ping", &["-c1", "-W1", to_ip]);
            self.echo_requests() > before
        });
    }
}

/// The TCP payload of iperf3's data (to port 5201) in a sniffer's file.
fn iperf3_payload(file: &std::path::Path) -> (u64, u64) {
    tcp_payload(file, "tcp.dstport == 5201 && tcp.len > 0")
}

#[test]
fn a_mirror_port_gets_the_tcp_bytes_of_super_frames_and_of_coalesced_overlay_frames() {
    if !can_run(&[
        "ip", "ping", "tcpdump", "tshark", "iperf3", "timeout", "kill",
    ]) {
        return;
    }
    const BYTES: u64 = 5_000_000;
    let dir = TempDir::new("vxsw-mirgso-");

    // Between two containers of one host: super-frames, copied as they
    // are to a monitoring port that takes them.
    let l = lan(7, 3, &["--workers", "1"]);
    for c in &l.containers {
        c.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
    }
    l.daemon.cli(&[
        "port",
        "mirror",
        "add",
        "c1",
        "--to",
        "c2",
        "--direction",
        "out",
    ]);
    let (src, ip1) = (&l.containers[0], l.ip(1));
    let sniff = Sniffer::start(&l.containers[2], &dir, src, &ip1);
    let (sent, received) = support::iperf3(src, &l.containers[1], &ip1, BYTES, false);
    sniff.settle(src, &ip1);
    let (payload, longest) = iperf3_payload(&sniff.file);
    assert!(
        (received..=sent + 4096).contains(&payload),
        "local: the mirror port saw {payload} bytes of iperf3 data; sent {sent}, received \
         {received}\n{}",
        l.daemon.cli(&["stats"])
    );
    assert!(
        longest > 1514,
        "local: no super-frame reached the mirror port"
    );
    drop(sniff);
    drop(l);

    // Across VXLAN: host B merges the decapsulated segments for b1 into
    // super-frames (GRO); its mirror port gets those merged frames too.
    let (ha, hb) = (Netns::new("vxoma"), Netns::new("vxomb"));
    support::run(
        "ip",
        &[
            "-n", &ha.name, "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns",
            &hb.name,
        ],
    );
    for (ns, ip) in [(&ha, "198.18.77.1/24"), (&hb, "198.18.77.2/24")] {
        ns.ip_ok(&["addr", "add", ip, "dev", "ul0"]);
        ns.ip_ok(&["link", "set", "ul0", "up"]);
    }
    let (da, db) = (
        Daemon::start_in(Some(&ha), &["--workers", "1"]),
        Daemon::start_in(Some(&hb), &["--workers", "1"]),
    );
    for (d, peer) in [(&da, "198.18.77.2"), (&db, "198.18.77.1")] {
        d.cli(&[
            "network",
            "create",
            "blue",
            "--vni",
            "77",
            "--subnet",
            "10.88.77.0/24",
        ]);
        d.cli(&["vtep", "add", "blue", peer]);
    }
    let (a1, b1, bm) = (Netns::new("vxoc"), Netns::new("vxoc"), Netns::new("vxoc"));
    for c in [&a1, &b1, &bm] {
        c.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
    }
    da.port_add("a1", "blue", &a1, "10.88.77.11/24", &[]);
    db.port_add("b1", "blue", &b1, "10.88.77.21/24", &[]);
    db.port_add("bm", "blue", &bm, "10.88.77.29/24", &[]);
    assert!(
        a1.ping_within("10.88.77.21", Duration::from_secs(10)),
        "a1 cannot reach b1"
    );
    db.cli(&[
        "port",
        "mirror",
        "add",
        "b1",
        "--to",
        "bm",
        "--direction",
        "out",
    ]);
    let sniff = Sniffer::start(&bm, &dir, &a1, "10.88.77.21");
    let (sent, received) = support::iperf3(&a1, &b1, "10.88.77.21", BYTES, false);
    sniff.settle(&a1, "10.88.77.21");
    let (payload, longest) = iperf3_payload(&sniff.file);
    assert!(
        longest > 1464,
        "overlay: the mirror port got no merged frame (longest {longest}), b1 did\n{}",
        db.cli(&["stats"])
    );
    assert!(
        (received..=sent + 4096).contains(&payload),
        "overlay: the mirror port saw {payload} bytes of iperf3 data; sent {sent}, received \
         {received}\n{}",
        db.cli(&["stats"])
    );
}
