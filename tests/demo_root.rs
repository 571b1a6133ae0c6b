//! `vxswitch demo` as the README tells a new user to run it (as root): what
//! it prints is checked line by line (every ping, the transfer, the port,
//! FDB and stats tables agreeing with one another), and its closing
//! "cleaned up" is verified rather than believed: no namespace, TAP, socket,
//! directory or process it made is left once it has exited. While it runs,
//! the same witnesses are seen to find what it made, so their silence
//! afterwards means something.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use support::{can_run, cmd, run, run_for_cleanup, unique, TempDir, BIN};

/// The variable every process the demo starts inherits: how the test finds
/// them (and any it left behind).
const MARKER: &str = "VXSWITCH_DEMO_TEST_MARKER";

/// Names in `ip netns list`.
fn netns_names() -> BTreeSet<String> {
    run("ip", &["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

/// The root namespace's links as (name, kind, MAC), from `ip -d -j link`.
fn root_links() -> BTreeSet<(String, String, String)> {
    let out = run("ip", &["-d", "-j", "link", "show"]);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip -d -j link ({e}): {out}"));
    v.as_array()
        .unwrap_or_else(|| panic!("ip -d -j link is no list: {out}"))
        .iter()
        .map(|l| {
            let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
            (
                s(&l["ifname"]),
                s(&l["linkinfo"]["info_kind"]),
                s(&l["address"]),
            )
        })
        .collect()
}

/// PIDs of live processes whose environment holds `MARKER=marker`.
fn marked_processes(marker: &str) -> Vec<u32> {
    let want = format!("{MARKER}={marker}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        panic!("cannot list /proc");
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // A process may exit between the listing and the read.
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == want.as_bytes()))
        })
        .collect()
}

/// A running demo; on drop (a failed test) it gets SIGTERM, which it
/// handles by cleaning up, then SIGKILL, and whatever namespace it still
/// left is deleted.
struct Demo {
    child: Child,
    marker: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let pid = self.child.id();
        run_for_cleanup("kill", &["-TERM", &pid.to_string()]);
        let exited = support::wait_until(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten().is_some()
        });
        if !exited {
            eprintln!("clean-up: the demo ignored SIGTERM: killed");
            self.child.kill().ok();
            self.child.wait().ok();
        }
        for p in marked_processes(&self.marker) {
            run_for_cleanup("kill", &["-KILL", &p.to_string()]);
        }
        let prefix = format!("vxdemo-{pid}-");
        let ns = std::fs::read_dir("/run/netns").into_iter().flatten();
        for name in ns.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
            if name.starts_with(&prefix) {
                eprintln!("clean-up: deleting namespace {name} the demo left");
                run_for_cleanup("ip", &["netns", "del", &name]);
            }
        }
    }
}

/// One container line of the demo: `c1`, its namespace name, MAC and IP.
#[derive(Debug)]
struct Container {
    port: String,
    netns: String,
    mac: String,
    ip: String,
}

/// What a demo run printed, with the facts seen while it ran.
struct Outcome {
    stdout: String,
    marker: String,
    demo_pid: u32,
    daemon_pid: u32,
    socket: String,
    containers: Vec<Container>,
}

/// Runs `vxswitch demo ARGS` (with `path` as its PATH when given) to the
/// end. Once it prints its transfer heading (the transfer then lasts
/// `--seconds`), checks that the witnesses of "cleaned up" see what it
/// made: its daemon and processes, its socket, its namespaces with their
/// TAPs. Asserts it exits 0 with nothing on stderr.
fn run_demo(args: &[&str], path: Option<&Path>) -> Outcome {
    let marker = unique("m");
    let mut argv = vec!["demo"];
    argv.extend_from_slice(args);
    let mut c = cmd(BIN, &argv);
    c.env(MARKER, &marker)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = path {
        c.env("PATH", p);
    }
    let mut demo = Demo {
        child: c.spawn().expect("spawn vxswitch demo"),
        marker: marker.clone(),
    };
    let demo_pid = demo.child.id();
    let mut stderr = demo.child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).map(|_| s)
    });
    let stdout = BufReader::new(demo.child.stdout.take().unwrap());
    let (mut text, mut daemon, mut containers, mut seen_running) =
        (String::new(), None, Vec::new(), false);
    for line in stdout.lines() {
        let line = line.expect("read the demo's output");
        text.push_str(&line);
        text.push('\n');
        let cols: Vec<&str> = line.split_whitespace().collect();
        match cols.as_slice() {
            ["daemon", "pid", pid, "socket", sock] => {
                let pid = pid.trim_end_matches(',').parse::<u32>();
                daemon = Some((
                    pid.unwrap_or_else(|e| panic!("{line}: {e}")),
                    sock.to_string(),
                ));
            }
            ["container", port, "netns", ns, "eth0", mac, ip] => containers.push(Container {
                port: port.to_string(),
                netns: ns
                    .strip_prefix("/run/netns/")
                    .unwrap_or_else(|| panic!("netns not under /run/netns: {line}"))
                    .to_string(),
                mac: mac.to_string(),
                ip: ip.to_string(),
            }),
            ["TCP", "transfer", ..] => {
                let (pid, sock) = daemon.as_ref().expect("no daemon line before the transfer");
                seen_running = true;
                assert!(
                    marked_processes(&marker).contains(pid),
                    "the marker does not find the running daemon {pid}"
                );
                assert!(
                    Path::new(sock).exists(),
                    "no socket {sock} while the demo runs"
                );
                let listed = netns_names();
                for c in &containers {
                    assert!(
                        listed.contains(&c.netns),
                        "{} not listed: {listed:?}",
                        c.netns
                    );
                    let l = run("ip", &["-n", &c.netns, "-j", "link", "show", "eth0"]);
                    assert!(l.contains(&format!("\"address\":\"{}\"", c.mac)), "{l}");
                }
            }
            _ => {}
        }
    }
    let status = demo.child.wait().expect("wait for the demo");
    let err = err_reader.join().unwrap().expect("read the demo's stderr");
    assert!(status.success(), "demo failed ({status}):\n{text}\n{err}");
    assert!(
        err.is_empty(),
        "the demo wrote to stderr:\n{err}\nstdout:\n{text}"
    );
    assert!(seen_running, "no transfer heading:\n{text}");
    let (daemon_pid, socket) = daemon.unwrap();
    Outcome {
        stdout: text,
        marker,
        demo_pid,
        daemon_pid,
        socket,
        containers,
    }
}

/// The lines of the table printed after the line `heading`, up to the next
/// blank line, as column name -> value rows (columns split on spaces).
fn table(out: &str, heading: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = out
        .lines()
        .skip_while(|l| *l != heading)
        .skip(1)
        .take_while(|l| !l.trim().is_empty());
    let head: Vec<String> = lines
        .next()
        .unwrap_or_else(|| panic!("no table after {heading:?}:\n{out}"))
        .split_whitespace()
        .map(String::from)
        .collect();
    lines
        .filter(|l| l.split_whitespace().count() == head.len())
        .map(|l| {
            head.iter()
                .cloned()
                .zip(l.split_whitespace().map(String::from))
                .collect()
        })
        .collect()
}

/// Checks everything `o` printed for `n` containers and a transfer whose
/// line is `transfer` (returns the bytes it moved, from that line).
fn check_output(o: &Outcome, n: usize, transfer: impl Fn(&str) -> Option<f64>) {
    let out = &o.stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("vxswitch demo: one switch, {n} containers on network \"demo\" (10.99.0.0/24)"),
        "{out}"
    );
    assert!(
        lines.contains(&"  network    demo 10.99.0.0/24 gateway 10.99.0.1"),
        "{out}"
    );
    assert_eq!(o.containers.len(), n, "container lines:\n{out}");
    for (i, c) in o.containers.iter().enumerate() {
        assert_eq!(c.port, format!("c{}", i + 1));
        assert_eq!(c.netns, format!("vxdemo-{}-c{}", o.demo_pid, i + 1));
        assert_eq!(c.ip, format!("10.99.0.{}", 11 + i));
    }
    let macs: BTreeSet<&str> = o.containers.iter().map(|c| c.mac.as_str()).collect();
    assert_eq!(macs.len(), n, "containers share a MAC: {:?}", o.containers);

    // Every ordered pair pinged, once, successfully.
    let pings: Vec<(String, String, String)> = lines
        .iter()
        .filter(|l| l.starts_with("  c") && l.contains(" -> "))
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            assert!(c.len() >= 5, "ping line: {l}");
            (
                format!("{}>{}", c[0], c[2]),
                c[3].to_string(),
                c[4].to_string(),
            )
        })
        .collect();
    assert_eq!(pings.len(), n * (n - 1), "ping lines:\n{out}");
    for (pair, ip, result) in &pings {
        assert_eq!(result, "ok", "ping {pair} to {ip}:\n{out}");
    }
    let pairs: BTreeSet<&String> = pings.iter().map(|p| &p.0).collect();
    assert_eq!(pairs.len(), n * (n - 1), "a pair pinged twice:\n{out}");

    let at = lines
        .iter()
        .position(|l| l.starts_with("TCP transfer c1 -> c2 ("))
        .unwrap_or_else(|| panic!("no transfer heading:\n{out}"));
    let moved = transfer(lines[at + 1])
        .unwrap_or_else(|| panic!("unexpected transfer line {:?}:\n{out}", lines[at + 1]));
    assert!(moved > 0.0, "{}", lines[at + 1]);

    // port ls: one row per container, as the container lines said.
    let ports = table(out, "$ vxswitch port ls");
    assert_eq!(ports.len(), n, "port ls rows:\n{out}");
    for (row, c) in ports.iter().zip(&o.containers) {
        assert_eq!(row["NAME"], c.port, "{row:?}");
        assert_eq!(row["NETWORK"], "demo", "{row:?}");
        assert_eq!(row["IFNAME"], "eth0", "{row:?}");
        assert_eq!(row["MAC"], c.mac, "{row:?}");
        assert_eq!(row["IP"], format!("{}/24", c.ip), "{row:?}");
        assert_eq!(row["NETNS"], format!("/run/netns/{}", c.netns), "{row:?}");
    }
    // fdb show: each container's MAC learned on its own port, nothing else.
    let fdb = table(out, "$ vxswitch fdb show");
    let learned: BTreeMap<&str, &str> = fdb
        .iter()
        .map(|r| {
            assert_eq!(
                (r["NETWORK"].as_str(), r["TYPE"].as_str()),
                ("demo", "learned"),
                "{r:?}"
            );
            (r["MAC"].as_str(), r["PORT"].as_str())
        })
        .collect();
    let want: BTreeMap<&str, &str> = o
        .containers
        .iter()
        .map(|c| (c.mac.as_str(), c.port.as_str()))
        .collect();
    assert_eq!(learned, want, "fdb show:\n{out}");
    assert_eq!(fdb.len(), n, "fdb show:\n{out}");
    // stats: every port carried frames both ways; c1 sent and c2 received
    // at least what the transfer line says moved.
    let stats = table(out, "$ vxswitch stats");
    assert_eq!(stats.len(), n, "stats rows:\n{out}");
    let num = |r: &BTreeMap<String, String>, k: &str| -> u64 {
        r[k].parse().unwrap_or_else(|e| panic!("{k} in {r:?}: {e}"))
    };
    for (r, c) in stats.iter().zip(&o.containers) {
        assert_eq!(r["PORT"], c.port, "{r:?}");
        assert!(num(r, "RX_FRAMES") > 0 && num(r, "TX_FRAMES") > 0, "{r:?}");
        assert_eq!(num(r, "DROPS"), 0, "{r:?}");
    }
    // The transfer line rounds to 0.1 MB.
    let floor = ((moved - 0.05) * 1e6) as u64;
    assert!(
        num(&stats[0], "RX_BYTES") >= floor,
        "c1 took less than {moved} MB: {out}"
    );
    assert!(
        num(&stats[1], "TX_BYTES") >= floor,
        "c2 got less than {moved} MB: {out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("fdb: {n} entries, {n} learned, "))),
        "{out}"
    );
    assert!(
        lines.contains(
            &format!(
            "$ vxswitch port rm c{n}   (its TAP is deleted; FDB now has {} entries, none on c{n})",
            n - 1
        )
            .as_str()
        ),
        "{out}"
    );
    assert_eq!(
        lines.last().copied(),
        Some(format!("cleaned up: daemon stopped, {n} namespaces and their TAPs removed").as_str()),
        "{out}"
    );
}

/// The demo's "cleaned up", verified: against the state before it ran,
/// nothing it made is left.
fn check_cleaned_up(
    o: &Outcome,
    netns_before: &BTreeSet<String>,
    links_before: &BTreeSet<(String, String, String)>,
) {
    // What is left is removed before the assertions, so that a failure
    // leaves nothing running or mounted either.
    // Its daemon (PID o.daemon_pid while it ran) would be among these.
    let procs = marked_processes(&o.marker);
    for pid in &procs {
        run_for_cleanup("kill", &["-KILL", &pid.to_string()]);
    }
    let after = netns_names();
    let ours = format!("vxdemo-{}-", o.demo_pid);
    let namespaces: Vec<&String> = after
        .difference(netns_before)
        .filter(|n| n.starts_with(&ours) || o.containers.iter().any(|c| &&c.netns == n))
        .collect();
    for ns in &namespaces {
        run_for_cleanup("ip", &["netns", "del", ns]);
    }
    assert_eq!(
        procs,
        Vec::<u32>::new(),
        "processes the demo started were still running (its daemon was {})",
        o.daemon_pid
    );
    assert!(
        namespaces.is_empty(),
        "namespaces left behind: {namespaces:?}"
    );
    assert!(
        !Path::new(&o.socket).exists(),
        "socket {} left behind",
        o.socket
    );
    let dir = Path::new(&o.socket).parent().unwrap();
    assert!(!dir.exists(), "directory {} left behind", dir.display());
    let new_taps: Vec<_> = root_links()
        .difference(links_before)
        .filter(|(_, kind, mac)| kind == "tun" || o.containers.iter().any(|c| &c.mac == mac))
        .cloned()
        .collect();
    assert!(
        new_taps.is_empty(),
        "TAPs left in the root namespace: {new_taps:?}"
    );
}

/// The demo with iperf3 installed: three containers, iperf3's transfer.
#[test]
fn demo_runs_pings_and_an_iperf3_transfer_and_leaves_nothing_behind() {
    if !can_run(&["ip", "iperf3", "kill"]) {
        return;
    }
    let (netns_before, links_before) = (netns_names(), root_links());
    let o = run_demo(&["--seconds", "3"], None);
    check_output(&o, 3, |l| {
        // "  iperf3: 5.94 Gbit/s, 745.9 MB sent, 745.2 MB received"
        let c: Vec<&str> = l.split_whitespace().collect();
        match c.as_slice() {
            ["iperf3:", _, "Gbit/s,", sent, "MB", "sent,", got, "MB", "received"] => {
                let (sent, got): (f64, f64) = (sent.parse().ok()?, got.parse().ok()?);
                (got <= sent).then_some(got)
            }
            _ => None,
        }
    });
    check_cleaned_up(&o, &netns_before, &links_before);
}

/// The demo where nothing but the binary is found on PATH (no iperf3, no
/// ip): four containers and its built-in transfer, whose byte counts match.
#[test]
fn demo_without_any_tool_on_path_uses_its_built_in_transfer_and_leaves_nothing_behind() {
    if !can_run(&["ip", "kill"]) {
        return;
    }
    let empty = TempDir::new("vxdemo-path-");
    let (netns_before, links_before) = (netns_names(), root_links());
    let o = run_demo(&["--containers", "4", "--seconds", "2"], Some(&empty.0));
    check_output(&o, 4, |l| {
        // "  built-in TCP transfer (iperf3 not installed): 1234.5 MB in 2.0 s
        //  = 4.94 Gbit/s, byte counts match"
        let rest = l
            .trim()
            .strip_prefix("built-in TCP transfer (iperf3 not installed): ")?;
        rest.ends_with(", byte counts match").then_some(())?;
        rest.split_whitespace().next()?.parse().ok()
    });
    check_cleaned_up(&o, &netns_before, &links_before);
}
