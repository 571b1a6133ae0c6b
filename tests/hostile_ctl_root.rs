//! The control plane against what a careless or hostile client hands it,
//! as root with real namespaces and TAPs: a "namespace" that is a FIFO or
//! a device, hundreds of idle connections, a daemon out of file
//! descriptors. Whatever one client does, the others are answered and
//! `port add` keeps working.

mod support;

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{can_run, cmd, run, wait_until, Daemon, Netns, TempDir, BIN};

/// `vxswitch ping` against `d`, with how long it took.
fn ping(d: &Daemon) -> (bool, Duration) {
    let t = Instant::now();
    let ok = d.cli_raw(&["ping"]).status.success();
    (ok, t.elapsed())
}

#[test]
fn a_netns_that_is_no_network_namespace_is_refused_at_once_naming_it() {
    if !can_run(&["ip", "mkfifo"]) {
        return;
    }
    let d = Daemon::start(&[]);
    d.cli(&["network", "create", "n"]);
    let dir = TempDir::new("vxsw-notns-");
    let fifo = dir.0.join("fifo");
    run("mkfifo", &[fifo.to_str().unwrap()]);
    let file = dir.0.join("file");
    std::fs::write(&file, b"not a namespace").unwrap();
    let cases: Vec<(String, &str)> = vec![
        (fifo.display().to_string(), "a FIFO"),
        (file.display().to_string(), "a regular file"),
        (dir.0.display().to_string(), "a directory"),
        ("/dev/null".into(), "a character device"),
        ("/dev/zero".into(), "a character device"),
        // A tty-like device whose open() would allocate a pseudo-terminal.
        ("/dev/ptmx".into(), "a character device"),
        ("/proc/self/ns/mnt".into(), "a mount namespace"),
    ];
    for (i, (path, kind)) in cases.iter().enumerate() {
        let name = format!("x{i}");
        let socket = d.socket.clone();
        let (p, n) = (path.clone(), name.clone());
        // From another client, while the refused request runs (or just
        // before: the two race).
        let adder = std::thread::spawn(move || {
            let t = Instant::now();
            let out = std::process::Command::new(BIN)
                .args(["--socket", socket.to_str().unwrap(), "port", "add", &n])
                .args(["--network", "n", "--netns", &p])
                .output()
                .unwrap();
            (out, t.elapsed())
        });
        let (ok, took) = ping(&d);
        assert!(
            ok && took < Duration::from_secs(2),
            "ping during {path}: {took:?}"
        );
        let (out, took) = adder.join().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "port add --netns {path} worked");
        assert!(
            took < Duration::from_secs(2),
            "port add --netns {path} took {took:?}"
        );
        // And the daemon is not left stuck on it.
        let (ok, took) = ping(&d);
        assert!(
            ok && took < Duration::from_secs(2),
            "ping after {path}: {took:?}"
        );
        assert!(
            err.contains(&format!(
                "{path} is not a network namespace file (it is {kind}); give a namespace such as \
                 /run/netns/NAME or /proc/PID/ns/net"
            )),
            "{path}: {err}"
        );
    }
    // Nothing was half-made, and a real namespace still works.
    assert!(d.port_names().is_empty(), "{:?}", d.port_names());
    let ns = Netns::new("vxh");
    d.port_add("ok", "n", &ns, "10.80.0.2/24", &[]);
    assert_eq!(d.port_names(), ["ok"]);
}

#[test]
fn idle_clients_do_not_lock_out_port_add() {
    if !can_run(&["ip"]) {
        return;
    }
    let d = Daemon::start(&[]);
    d.cli(&["network", "create", "n", "--subnet", "10.80.1.0/24"]);
    // 300 connections that never say anything: more than the 128 slots.
    let idle: Vec<UnixStream> = (0..300)
        .map(|_| UnixStream::connect(&d.socket).unwrap())
        .collect();
    let ns = Netns::new("vxh");
    let t = Instant::now();
    d.port_add("c1", "n", &ns, "10.80.1.11/24", &[]);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "port add took {took:?}");
    let (ok, took) = ping(&d);
    assert!(ok && took < Duration::from_secs(2), "ping: {took:?}");
    let st = d.json(&["stats"]);
    assert!(
        st["control"]["evicted"].as_u64() >= Some(172),
        "{}",
        st["control"]
    );
    drop(idle);
}

/// `vxswitch daemon --workers 1` started through `prlimit
/// --nofile=SOFT:HARD`: with SOFT = HARD even raising the soft limit
/// cannot help. Runs: prlimit.
fn daemon_with_nofile(soft: u32, hard: u32) -> Daemon {
    let dir = std::env::temp_dir().join(support::unique("vxsw-fdlimit-"));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("vxswitch.sock");
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let nofile = format!("--nofile={soft}:{hard}");
    let sock = socket.to_str().unwrap().to_string();
    let argv = [
        &nofile,
        "--",
        BIN,
        "--socket",
        &sock,
        "daemon",
        "--workers",
        "1",
    ];
    let child = cmd("prlimit", &argv)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn prlimit vxswitch daemon");
    let mut d = Daemon {
        child,
        socket,
        dir,
        netns: None,
    };
    let up = wait_until(Duration::from_secs(10), || {
        d.cli_raw(&["ping"]).status.success() || d.child.try_wait().ok().flatten().is_some()
    });
    assert!(up && d.child.try_wait().unwrap().is_none(), "{}", d.log());
    d
}

#[test]
fn running_out_of_file_descriptors_says_which_limit_to_raise() {
    if !can_run(&["ip", "prlimit"]) {
        return;
    }
    let d = daemon_with_nofile(64, 64);
    d.cli(&["network", "create", "n"]);
    let ns = Netns::new("vxh");
    let path = ns.path();
    let mut failure = None;
    for i in 0..64 {
        let (name, ifname) = (format!("p{i}"), format!("e{i}"));
        let out = d.cli_raw(&[
            "port",
            "add",
            &name,
            "--network",
            "n",
            "--netns",
            &path,
            "--ifname",
            &ifname,
        ]);
        if !out.status.success() {
            failure = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
    }
    let err = failure.unwrap_or_else(|| panic!("64 ports fit in 64 fds?\n{}", d.log()));
    assert!(
        err.contains("too many open files (limit 64): raise LimitNOFILE= / ulimit -n"),
        "{err}"
    );
    assert!(!err.contains("tun module"), "{err}");
    assert!(!err.contains("this is a bug"), "{err}");
    // The daemon is still there and recovers once fds are free again.
    let (ok, _) = ping(&d);
    assert!(ok, "{}", d.log());
    d.cli(&["port", "rm", "p0"]);
    d.cli(&["port", "rm", "p1"]);
    d.cli(&[
        "port",
        "add",
        "again",
        "--network",
        "n",
        "--netns",
        &path,
        "--ifname",
        "eagain",
    ]);
    assert!(Path::new(&path).exists());
}

#[test]
fn the_daemon_raises_its_soft_fd_limit_to_the_hard_one() {
    if !can_run(&["prlimit"]) {
        return;
    }
    let d = daemon_with_nofile(64, 4096);
    let limits = run(
        "prlimit",
        &[
            "--nofile",
            "--output",
            "SOFT,HARD",
            "--noheadings",
            "--pid",
            &d.child.id().to_string(),
        ],
    );
    let fields: Vec<&str> = limits.split_whitespace().collect();
    assert_eq!(fields, ["4096", "4096"], "{limits}");
    assert!(!d.log().contains("open-file limit"), "{}", d.log());
}

/// A container's namespace that is the daemon's own (a process that has
/// not left it yet, or a typo) is refused with a message saying so,
/// instead of an `eth0` appearing beside the daemon's interfaces.
#[test]
fn the_daemons_own_namespace_is_not_a_containers() {
    if !can_run(&["ip"]) {
        return;
    }
    let d = Daemon::start(&[]);
    d.cli(&["network", "create", "n", "--subnet", "10.80.3.0/24"]);
    let own = format!("/proc/{}/ns/net", d.child.id());
    let out = d.cli_raw(&[
        "port",
        "add",
        "c1",
        "--network",
        "n",
        "--netns",
        &own,
        "--ip",
        "10.80.3.11/24",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "port add into the daemon's namespace worked"
    );
    assert!(
        err.contains(&format!(
            "{own} is the daemon's own network namespace, not a container's"
        )),
        "{err}"
    );
    assert!(d.port_names().is_empty(), "{:?}", d.port_names());
    // No eth0 was made here on the way.
    let links = run("ip", &["-d", "-j", "link", "show"]);
    let v: serde_json::Value = serde_json::from_str(&links).unwrap();
    assert!(
        !v.as_array()
            .unwrap()
            .iter()
            .any(|l| l["ifname"] == "eth0" && l["linkinfo"]["info_kind"] == "tun"),
        "a TAP eth0 appeared in the daemon's namespace"
    );
}
