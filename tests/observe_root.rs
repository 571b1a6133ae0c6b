//! Seeing inside the switch (docs/observability.md): the Prometheus
//! endpoint checked by `promtool` and scraped by a real Prometheus server.
//! Each test runs its daemon and tools inside a namespace of its own, so
//! fixed ports there collide with nothing. Needs root (CI runs as root).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use support::{can_run, cmd, Daemon, Netns, Proc, TempDir};

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
