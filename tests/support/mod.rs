//! Fixtures for the root integration tests, each cleaned up by `Drop`, also
//! when the test panics. Here: the check of what a test needs, running
//! commands, bounded waits, temporary directories and processes. In the
//! submodules: [`Netns`] (a namespace made for the test), [`Daemon`] (the
//! binary under test as a daemon, and as a CNI plugin), [`exact_transfer`]
//! and [`iperf3`] (traffic between containers), [`capture`] (tshark on a
//! wire) and [`frames`] (frame I/O on a port's own fd).
//!
//! Every root test starts with [`can_run`] (or [`can_run_with`]), listing
//! every command it runs itself or through the helpers here (each helper's
//! doc names the commands it runs). Outside CI a test that lacks root or a
//! command skips with a printed reason; with `CI=true` that is a failure.
//! Commands are looked up on `PATH` only, where the spawn will look.
//!
//! The list is enforced where commands are started through this module
//! ([`run`], [`run_raw`], [`cmd`], [`Netns::exec`], [`Netns::spawn`] and the
//! helpers built on them): starting a command the test's `can_run` did not
//! list fails the test at once, so a missing entry shows on any machine, not
//! only on the one that lacks the command. The program checked is the one
//! started, and the one `ip netns exec NS`, `timeout DURATION` or a `--`
//! separator hands over to.
#![allow(dead_code)]

pub mod capture;
pub mod certs;
mod daemon;
pub mod frames;
mod netns;
mod traffic;

// The fixtures by name, as `support::Daemon`; each test binary uses its
// own subset of them.
#[allow(unused_imports)]
pub use daemon::{
    cni_exec, find_port, packet_sockets_on, port_row, veth_backend, CniOutcome, Daemon,
};
#[allow(unused_imports)]
pub use netns::Netns;
#[allow(unused_imports)]
pub use traffic::{exact_transfer, iperf3};

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_vxswitch");

// ---------------------------------------------------------------------------
// What a test needs

thread_local! {
    /// The commands the running test listed in `can_run` (libtest runs each
    /// test on a thread of its own). None: no list, nothing enforced.
    static DECLARED: RefCell<Option<BTreeSet<String>>> = const { RefCell::new(None) };
}

/// Returns true when the test can run here: root, and each of `tools` an
/// executable on `PATH`. Otherwise prints why and returns false, or, with
/// `CI=true`, where every test must run, panics.
pub fn can_run(tools: &[&str]) -> bool {
    can_run_with(tools, &[])
}

/// [`can_run`] that also needs `files` (plugins outside `PATH`, such as
/// `/usr/lib/cni/host-local`).
pub fn can_run_with(tools: &[&str], files: &[&str]) -> bool {
    can_run_from(None, tools, files)
}

/// [`can_run_with`] with `tools` looked up on `search_path` (a `PATH`-style
/// list) instead of the test's `PATH`: for commands started with a `PATH`
/// of their own.
pub fn can_run_on(search_path: &str, tools: &[&str], files: &[&str]) -> bool {
    can_run_from(Some(search_path), tools, files)
}

fn can_run_from(search_path: Option<&str>, tools: &[&str], files: &[&str]) -> bool {
    DECLARED.with(|d| {
        d.borrow_mut()
            .get_or_insert_with(BTreeSet::new)
            .extend(tools.iter().map(|t| t.to_string()))
    });
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root (network namespaces and TAP devices)".to_string());
    }
    for t in tools {
        let found = match search_path {
            Some(p) => which_in(p, t),
            None => which(t),
        };
        if found.is_none() {
            let on = search_path.unwrap_or("PATH");
            missing.push(format!("the `{t}` command (on {on})"));
        }
    }
    for f in files {
        if !Path::new(f).is_file() {
            missing.push(format!("the file {f}"));
        }
    }
    missing.is_empty() || cannot_run(&format!("needs {}", missing.join(", ")))
}

/// The test cannot run here because of `why`: prints "SKIPPED: why" and
/// returns false, or, with `CI=true`, panics with `why`.
pub fn cannot_run(why: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and this test cannot run: {why}");
    }
    eprintln!("SKIPPED: {why}");
    false
}

fn is_root() -> bool {
    // The effective UID: the second number of /proc/self/status's Uid line.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Where `PATH` finds `tool`: an executable file, as the spawn will see it.
pub fn which(tool: &str) -> Option<PathBuf> {
    which_in(std::env::var("PATH").ok()?.as_str(), tool)
}

/// Where the `PATH`-style list `search_path` finds the executable `tool`.
pub fn which_in(search_path: &str, tool: &str) -> Option<PathBuf> {
    search_path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(tool))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Fails the test when it listed its commands and `program` (or the one
/// a wrapper among `args` hands over to) is not among them. Paths are
/// not commands looked up on `PATH`: the binary under test, or a file the
/// test checked.
fn note(program: &str, args: &[&str]) {
    if !program.contains('/') {
        DECLARED.with(|d| {
            if let Some(set) = &*d.borrow() {
                assert!(
                    set.contains(program),
                    "this test runs `{program}` but does not check for it: \
                     add it to the test's can_run list"
                );
            }
        });
    }
    let is_ip = program == "ip" || program.ends_with("/ip");
    let next = if is_ip && args.len() > 3 && args[..2] == ["netns", "exec"] {
        Some(3)
    } else if program == "timeout" {
        args.iter().position(|a| !a.starts_with('-')).map(|i| i + 1)
    } else {
        args.iter().position(|a| *a == "--").map(|i| i + 1)
    };
    if let Some(i) = next.filter(|&i| i < args.len()) {
        note(args[i], &args[i + 1..]);
    }
}

// ---------------------------------------------------------------------------
// Commands

/// A short name unique among live test processes and calls, usable in
/// namespace and file names: PREFIX, the full PID, "-", a counter. The
/// separator matters: without it PID 1234 call 11 and PID 12341 call 1 (two
/// test binaries run at once) would both be "PREFIX123411".
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}-{n}", std::process::id())
}

/// `program ARGS`, not started yet, with stdin from /dev/null; checked
/// against the test's list of commands.
pub fn cmd(program: &str, args: &[&str]) -> Command {
    note(program, args);
    let mut c = Command::new(program);
    c.args(args).stdin(Stdio::null());
    c
}

/// Runs a command, returns its output; panics with its stderr on failure.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = run_raw(program, args);
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command and returns its output, whatever its exit status.
pub fn run_raw(program: &str, args: &[&str]) -> Output {
    cmd(program, args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// `run_raw` for clean-up in `Drop`: unchecked (a panic there, during
/// another one, would abort the test binary), errors printed, not raised;
/// returns whether the command succeeded.
pub fn run_for_cleanup(program: &str, args: &[&str]) -> bool {
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "clean-up: `{program} {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("clean-up: cannot run {program}: {e}");
            false
        }
    }
}

/// Sends signal `sig` ("TERM", "INT", "STOP", ...) to process `pid` with
/// the `kill` command (a test may not use `unsafe`); panics if that fails.
/// Runs: kill.
pub fn signal(pid: u32, sig: &str) {
    run("kill", &[&format!("-{sig}"), &pid.to_string()]);
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes; returns
/// whether it did.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_until`] that fails the test, naming `what` it waited for, when
/// `f` is still false after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, f: impl FnMut() -> bool) {
    assert!(
        wait_until(timeout, f),
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// The uplinks' steering interfaces in namespace `netns` (docs/fastpath.md):
/// the `vxs...` links but those of veth ports, whose names end in their host
/// end's (`vxv...`) ifindex in hex. Runs: ip.
pub fn uplink_steering_links(netns: &str) -> Vec<String> {
    let out = run("ip", &["-n", netns, "-j", "link", "show"]);
    let v: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("`ip -n {netns} -j link` printed non-JSON ({e}): {out}"));
    let links: Vec<(String, u64)> = v
        .as_array()
        .unwrap_or_else(|| panic!("`ip -n {netns} -j link` is no list: {out}"))
        .iter()
        .filter_map(|l| Some((l["ifname"].as_str()?.to_string(), l["ifindex"].as_u64()?)))
        .collect();
    let of_ports: Vec<String> = links
        .iter()
        .filter(|(n, _)| n.starts_with("vxv"))
        .map(|(_, i)| format!("-{i:x}"))
        .collect();
    links
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("vxs") && !of_ports.iter().any(|s| n.ends_with(s.as_str())))
        .collect()
}

/// The interface names in namespace `netns`, from `ip -j link`: for exact
/// comparison (`ip -br link` prints veths as `NAME@PEER`). Runs: ip.
pub fn link_names(netns: &str) -> Vec<String> {
    let out = run("ip", &["-n", netns, "-j", "link", "show"]);
    let v: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("`ip -n {netns} -j link` printed non-JSON ({e}): {out}"));
    v.as_array()
        .unwrap_or_else(|| panic!("`ip -n {netns} -j link` is no list: {out}"))
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(String::from))
        .collect()
}

/// A uniquely named directory under the temp dir, removed on drop (also
/// when the test panics).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let d = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("clean-up: remove {}: {e}", self.0.display());
        }
    }
}

/// A child process (iperf3 server and the like) killed by PID on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // Killing a process that already exited fails harmlessly; the wait
        // reaps it either way.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
