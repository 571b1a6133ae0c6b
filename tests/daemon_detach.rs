//! The daemon's readiness paths, as a script or a service manager sees
//! them: `daemon --detach` returns only once the socket answers (or fails
//! with the daemon's own error), `--pidfile` names the daemon while it
//! runs, and under systemd (`NOTIFY_SOCKET`) the daemon says `READY=1`
//! once it answers and `STOPPING=1` when told to stop. Needs no root.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_vxswitch");

/// A private directory, removed on drop, with a daemon that may run in it.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!(
            "vxswitch-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // A daemon a failed test left running: stopped by the PID it wrote.
        for pidfile in ["vx.pid", "other.pid"] {
            if let Some(pid) = read_pid(&self.path(pidfile)) {
                if is_vxswitch(pid) {
                    let _ = Command::new("kill")
                        .arg("-KILL")
                        .arg(pid.to_string())
                        .status();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn vxswitch(socket: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("VXSWITCH_SOCKET")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("run vxswitch")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` is a live vxswitch process (not a recycled PID).
fn is_vxswitch(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|exe| exe.file_name() == Path::new(BIN).file_name())
}

/// The process group of `pid` (field 5 of /proc/PID/stat).
fn pgrp(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    after_comm.split(' ').nth(2).unwrap().parse().unwrap()
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{sig} {pid} failed");
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn detach_returns_once_the_daemon_answers_and_the_pidfile_names_it() {
    let dir = Dir::new("detach");
    let sock = dir.path("vx.sock");
    let out = vxswitch(&sock, &["daemon", "--detach"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // No retry: the very next command finds it answering.
    let ping = vxswitch(&sock, &["ping"]);
    assert!(ping.status.success(), "{}", text(&ping.stderr));
    let pid = read_pid(&dir.path("vx.pid")).expect("a pidfile next to the socket");
    assert!(is_vxswitch(pid), "pid {pid} is not vxswitch");
    assert_eq!(
        text(&out.stderr),
        format!(
            "vxswitch: daemon {} (pid {pid}) listening on {}; log {}, pidfile {}\n",
            env!("CARGO_PKG_VERSION"),
            sock.display(),
            dir.path("vx.log").display(),
            dir.path("vx.pid").display()
        )
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    // Its own process group: a Ctrl-C meant for the shell's job misses it.
    assert_eq!(pgrp(pid), pid);
    assert_ne!(pgrp(pid), pgrp(std::process::id()));
    let log = std::fs::read_to_string(dir.path("vx.log")).unwrap();
    assert!(
        log.contains(&format!("listening on {}", sock.display())),
        "{log}"
    );

    // A second daemon on the same socket fails with the daemon's own
    // message and leaves the first one (and its pidfile) alone.
    let again = vxswitch(&sock, &["daemon", "--detach"]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        text(&again.stderr),
        format!(
            "vxswitch: error: another vxswitch daemon is already listening on {}; stop it \
             first, or start this one with --socket PATH\n",
            sock.display()
        )
    );
    assert_eq!(read_pid(&dir.path("vx.pid")), Some(pid));
    assert!(vxswitch(&sock, &["ping"]).status.success());

    // SIGTERM: a clean stop removes the socket, then the pidfile.
    signal(pid, "TERM");
    assert!(
        wait_until(Duration::from_secs(10), || !dir.path("vx.pid").exists()),
        "the pidfile outlived the daemon"
    );
    assert!(!sock.exists(), "the socket outlived the daemon");
    assert!(wait_until(Duration::from_secs(10), || !is_vxswitch(pid)));
    let log = std::fs::read_to_string(dir.path("vx.log")).unwrap();
    assert!(log.ends_with("vxswitch: stopped\n"), "{log}");
}

#[test]
fn detach_fails_with_the_daemons_error() {
    let dir = Dir::new("detach-fail");
    let sock = dir.path("vx.sock");
    let missing = dir.path("missing.toml");
    let out = vxswitch(
        &sock,
        &[
            "daemon",
            "--detach",
            "--config",
            missing.to_str().unwrap(),
            "--pidfile",
            dir.path("other.pid").to_str().unwrap(),
            "--log-file",
            dir.path("other.log").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "vxswitch: error: cannot read config {}: No such file or directory\n",
            missing.display()
        )
    );
    assert!(!sock.exists());
    assert!(!dir.path("other.pid").exists());
    assert!(!dir.path("vx.log").exists(), "--log-file was not used");
    // The log keeps what the daemon said.
    let log = std::fs::read_to_string(dir.path("other.log")).unwrap();
    assert!(log.contains("cannot read config"), "{log}");

    // A daemon that cannot write its pidfile does not start either.
    let out = vxswitch(
        &sock,
        &["daemon", "--detach", "--pidfile", "/nonexistent-dir/vx.pid"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "vxswitch: error: cannot write the pidfile /nonexistent-dir/vx.pid: No such file or \
         directory\n"
    );
    assert!(
        !sock.exists(),
        "a daemon without its pidfile kept the socket"
    );
}

#[test]
fn log_file_without_detach_is_a_usage_error() {
    let dir = Dir::new("logfile");
    let out = vxswitch(&dir.path("vx.sock"), &["daemon", "--log-file", "x.log"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--detach"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path("vx.sock").exists());
}

/// A foreground daemon, killed on drop if a test fails before stopping it.
struct Foreground(Option<Child>);

impl Drop for Foreground {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn under_systemd_the_daemon_says_ready_once_it_answers_and_stopping_on_sigterm() {
    let dir = Dir::new("notify");
    let sock = dir.path("vx.sock");
    let notify = dir.path("notify.sock");
    let systemd = UnixDatagram::bind(&notify).unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let child = Command::new(BIN)
        .arg("--socket")
        .arg(&sock)
        .args(["daemon", "--pidfile"])
        .arg(dir.path("vx.pid"))
        .env("NOTIFY_SOCKET", &notify)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut daemon = Foreground(Some(child));
    let mut buf = [0u8; 256];
    let n = systemd.recv(&mut buf).expect("READY=1 within 30 s");
    assert_eq!(text(&buf[..n]), "READY=1");
    // Ready means answering, and the pidfile is there (without --detach too).
    let ping = vxswitch(&sock, &["ping"]);
    assert!(ping.status.success(), "{}", text(&ping.stderr));
    assert_eq!(read_pid(&dir.path("vx.pid")), Some(pid));

    signal(pid, "TERM");
    let n = systemd.recv(&mut buf).expect("STOPPING=1 after SIGTERM");
    assert_eq!(text(&buf[..n]), "STOPPING=1");
    let out = daemon.0.take().unwrap().wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !dir.path("vx.pid").exists(),
        "the pidfile outlived the daemon"
    );
    assert!(!sock.exists());
}

#[test]
fn a_notify_socket_the_daemon_cannot_use_stops_the_start() {
    let dir = Dir::new("notify-bad");
    let sock = dir.path("vx.sock");
    let out = Command::new(BIN)
        .arg("--socket")
        .arg(&sock)
        .arg("daemon")
        .env("NOTIFY_SOCKET", "relative.sock")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "vxswitch: error: NOTIFY_SOCKET=relative.sock is neither a path nor an @abstract \
         socket name\n"
    );
    assert!(!sock.exists());
}

#[test]
fn a_detached_daemon_does_not_claim_readiness_for_systemd() {
    let dir = Dir::new("detach-notify");
    let sock = dir.path("vx.sock");
    let notify = dir.path("notify.sock");
    let systemd = UnixDatagram::bind(&notify).unwrap();
    let out = Command::new(BIN)
        .arg("--socket")
        .arg(&sock)
        .args(["daemon", "--detach"])
        .env("NOTIFY_SOCKET", &notify)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The daemon sends READY=1 before it serves, and it served the ping
    // --detach waited for: had it sent one, it would be queued by now.
    systemd.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let got = systemd.recv(&mut buf);
    assert!(
        got.as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "a detached daemon notified: {:?}",
        got.map(|n| text(&buf[..n]))
    );
    let pid = read_pid(&dir.path("vx.pid")).unwrap();
    signal(pid, "TERM");
    assert!(wait_until(Duration::from_secs(10), || !dir
        .path("vx.pid")
        .exists()));
}
