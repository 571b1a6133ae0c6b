//! Fixtures for the root integration tests: the check of what a test needs,
//! uniquely named network namespaces, a vxswitch daemon process, the traffic
//! tools, and frame I/O on a port's fd; each fixture cleans up by `Drop`,
//! also when the test panics.
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
pub mod frames;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::{Read, Write};
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

// ---------------------------------------------------------------------------
// Network namespaces

/// A network namespace made for one test with `ip netns add`, deleted on
/// drop (unless the test deleted it already). Runs: ip.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A new namespace with its loopback up, as a container's is.
    pub fn new(prefix: &str) -> Netns {
        let ns = Self::bare(prefix);
        run("ip", &["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// A new namespace as `ip netns add` leaves it: loopback down.
    pub fn bare(prefix: &str) -> Netns {
        let name = unique(prefix);
        run("ip", &["netns", "add", &name]);
        Netns { name }
    }

    /// Takes over a namespace named `name` that the test created another
    /// way: deleted on drop like one of ours.
    pub fn adopt(name: &str) -> Netns {
        Netns {
            name: name.to_string(),
        }
    }

    /// Its file, `/run/netns/NAME`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// The library's handle on this namespace.
    pub fn handle(&self) -> vxswitch::ports::Netns {
        vxswitch::ports::Netns::named(&self.name)
    }

    /// Runs a command inside the namespace (`ip netns exec`); its output,
    /// whatever its exit status.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        run_raw("ip", &all)
    }

    /// Starts `argv` inside the namespace in the background, output
    /// discarded; killed on drop.
    pub fn spawn(&self, argv: &[&str]) -> Proc {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(argv);
        let child = cmd("ip", &all)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?} in {}: {e}", self.name));
        Proc(child)
    }

    /// `ip -n NS ARGS`, whatever its exit status.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run_raw("ip", &all)
    }

    /// `ip -n NS ARGS`, which must succeed.
    pub fn ip_ok(&self, args: &[&str]) {
        let out = self.ip(args);
        assert!(
            out.status.success(),
            "ip -n {} {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ip -n NS -j ARGS` parsed as JSON.
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        let out = self.ip(&all);
        assert!(
            out.status.success(),
            "ip -n {} -j {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("ip -j {args:?} printed no JSON ({e})"))
    }

    /// One ping with a 2-second deadline; true when a reply came back.
    /// Runs: ip, ping.
    pub fn ping(&self, dst: &str) -> bool {
        self.exec("ping", &["-c", "1", "-W", "2", "-n", "-q", dst])
            .status
            .success()
    }

    /// Pings until one succeeds (ARP and learning may take a moment), at
    /// most `timeout`. Runs: ip, ping.
    pub fn ping_within(&self, dst: &str, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.exec("ping", &["-c", "1", "-W", "1", "-n", "-q", dst])
                .status
                .success()
        })
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        vxswitch::ports::netns::run_in(&self.handle(), f)
            .unwrap_or_else(|e| panic!("enter namespace {}: {e}", self.name))
    }

    /// Sets the sysctl `key` ("net.ipv4.ip_forward") inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.enter(|| std::fs::write(&path, value))
            .unwrap_or_else(|e| panic!("write {path} in {}: {e}", self.name));
    }

    /// One counter of the namespace's `/proc/net/snmp` (`group` "Tcp",
    /// `name` "InSegs") or, with an empty `group`, of `/proc/net/snmp6`
    /// ("Udp6InDatagrams").
    pub fn snmp(&self, group: &str, name: &str) -> u64 {
        let file = if group.is_empty() { "snmp6" } else { "snmp" };
        let text = self
            .enter(|| std::fs::read_to_string(format!("/proc/thread-self/net/{file}")))
            .unwrap_or_else(|e| panic!("read {file} in {}: {e}", self.name));
        let parse = |v: &str| -> u64 {
            v.parse()
                .unwrap_or_else(|e| panic!("{group}:{name} = {v:?} in {file}: {e}"))
        };
        if group.is_empty() {
            let v = text.lines().find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some(name)).then(|| it.next().unwrap_or("").to_string())
            });
            return parse(&v.unwrap_or_else(|| panic!("{name} not in snmp6")));
        }
        let prefix = format!("{group}:");
        let mut rows = text.lines().filter(|l| l.starts_with(&prefix));
        let (names, values) = match (rows.next(), rows.next()) {
            (Some(n), Some(v)) => (n, v),
            _ => panic!("no {group} rows in snmp: {text}"),
        };
        let i = names
            .split_whitespace()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{group}:{name} not in snmp"));
        parse(values.split_whitespace().nth(i).unwrap_or(""))
    }
}

impl Netns {
    /// Tags every frame `dev` sends with 802.1Q VLAN `vid` and strips the
    /// tag from every frame it receives, below the namespace's stack, with
    /// the tc BPF programs of `tests/support/vlan_tag.py`: tagged traffic
    /// without the 8021q module (which this project's VM lacks) and with
    /// the device's offloads intact. False (after `cannot_run`) on a kernel
    /// without cls_bpf or clsact. Runs: ip, python3.
    pub fn vlan_tag(&self, dev: &str, vid: u16) -> bool {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/vlan_tag.py");
        let out = self.exec("python3", &[script, dev, &vid.to_string()]);
        let err = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => true,
            Some(2) => cannot_run(&format!("802.1Q tags by tc BPF: {}", err.trim())),
            _ => panic!("vlan_tag.py {dev} {vid} in {} failed: {err}", self.name),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // A test may have deleted it already (to see what that does).
        if Path::new(&self.path()).exists() {
            run_for_cleanup("ip", &["netns", "del", &self.name]);
        }
    }
}

// ---------------------------------------------------------------------------
// The daemon

/// A `vxswitch daemon` child process on its own socket, killed (by PID) on
/// drop. Runs: ip (when started in a namespace), kill (`terminate`).
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub dir: PathBuf,
    /// Namespace the daemon runs in (None: the test's own).
    pub netns: Option<String>,
}

impl Daemon {
    pub fn start(extra: &[&str]) -> Daemon {
        Self::start_in(None, extra)
    }

    /// Starts a daemon, inside `netns` when given, and waits until it answers.
    pub fn start_in(netns: Option<&Netns>, extra: &[&str]) -> Daemon {
        let dir = std::env::temp_dir().join(unique("vxsw-test-"));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("vxswitch.sock");
        let sock = socket.to_str().unwrap().to_string();
        let mut args: Vec<String> = Vec::new();
        let prog = match netns {
            Some(ns) => {
                args.extend(["netns", "exec", &ns.name, BIN].map(String::from));
                "ip".to_string()
            }
            None => BIN.to_string(),
        };
        args.extend(["--socket".to_string(), sock.clone(), "daemon".to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = cmd(&prog, &argv)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn vxswitch daemon");
        let mut d = Daemon {
            child,
            socket,
            dir,
            netns: netns.map(|n| n.name.clone()),
        };
        let up = wait_until(Duration::from_secs(10), || {
            d.cli_raw(&["ping"]).status.success() || d.child.try_wait().ok().flatten().is_some()
        });
        assert!(
            up && d.child.try_wait().unwrap().is_none(),
            "daemon did not start:\n{}",
            d.log()
        );
        d
    }

    /// Starts a daemon with `--state-dir dir` (and `extra`), in the test's
    /// namespace, and waits until it answers.
    pub fn start_with_state(dir: &Path, extra: &[&str]) -> Daemon {
        let mut args = vec!["--state-dir", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        Self::start(&args)
    }

    /// Runs `vxswitch daemon ARGS...` on a throwaway socket, expecting it
    /// to exit on its own within 10 s (a start-up error); returns its
    /// status and stderr. Killed (by PID) and failed if it keeps running.
    pub fn start_failing(extra: &[&str]) -> (std::process::ExitStatus, String) {
        let dir = TempDir::new("vxsw-fail-");
        let sock = dir.0.join("s.sock");
        let mut child = cmd(BIN, &["--socket", sock.to_str().unwrap(), "daemon"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vxswitch daemon");
        let exited = wait_until(Duration::from_secs(10), || {
            child.try_wait().ok().flatten().is_some()
        });
        if !exited {
            // Still running: the kill cannot fail, and the panic says why.
            child.kill().ok();
            child.wait().ok();
            panic!("daemon {extra:?} kept running; it should have refused to start");
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Runs `vxswitch --socket S ARGS...`.
    pub fn cli_raw(&self, args: &[&str]) -> Output {
        let mut all = vec!["--socket", self.socket.to_str().unwrap()];
        all.extend_from_slice(args);
        run_raw(BIN, &all)
    }

    /// `port add NAME --network NET --netns NS --ip IP EXTRA...`.
    pub fn port_add(&self, name: &str, network: &str, ns: &Netns, ip: &str, extra: &[&str]) {
        let path = ns.path();
        let mut args = vec![
            "port",
            "add",
            name,
            "--network",
            network,
            "--netns",
            &path,
            "--ip",
            ip,
        ];
        args.extend_from_slice(extra);
        self.cli(&args);
    }

    /// Runs a CLI command that must succeed; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_raw(args);
        assert!(
            out.status.success(),
            "`vxswitch {}` failed: {}{}\ndaemon log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a CLI command with `--json` and parses its output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!(
                "`vxswitch --json {}` printed non-JSON ({e}): {out}",
                args.join(" ")
            )
        })
    }

    /// The names of the ports `port ls --json` lists, for exact comparison
    /// (a substring test on the table would also match namespace paths).
    pub fn port_names(&self) -> Vec<String> {
        let ls = self.json(&["port", "ls"]);
        ls.as_array()
            .or_else(|| ls["ports"].as_array())
            .unwrap_or_else(|| panic!("`port ls --json` is no list: {ls}"))
            .iter()
            .map(|p| {
                p["name"]
                    .as_str()
                    .unwrap_or_else(|| panic!("port without a name: {ls}"))
                    .to_string()
            })
            .collect()
    }

    /// Sends SIGTERM and waits for a clean exit (at most 10 s).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit within 10 s of SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // Killing fails only for a process that has exited meanwhile;
            // the wait reaps it either way.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("clean-up: remove {}: {e}", self.dir.display());
        }
    }
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

// ---------------------------------------------------------------------------
// Traffic

/// Sends `len` bytes of a known pattern over TCP from `client` to a listener
/// in `server` at `ip` (sockets opened inside the namespaces) and asserts
/// that exactly those bytes arrived.
pub fn exact_transfer(client: &Netns, server: &Netns, ip: &str, len: u64) {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use vxswitch::ports::{netns::run_in, Netns as Ns};
    let addr: SocketAddr = format!("{ip}:5301").parse().unwrap();
    let listener = run_in(&Ns::named(&server.name), || TcpListener::bind(addr))
        .unwrap()
        .unwrap();
    let rx = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let (mut total, mut digest, mut buf) = (0u64, 0u64, vec![0u8; 1 << 16]);
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                return (total, digest);
            }
            for &b in &buf[..n] {
                digest = digest.wrapping_mul(31).wrapping_add(u64::from(b));
            }
            total += n as u64;
        }
    });
    let mut s = run_in(&Ns::named(&client.name), || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("connect {} -> {addr}: {e}", client.name));
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let (mut sent, mut digest) = (0u64, 0u64);
    let mut chunk = vec![0u8; 1 << 16];
    while sent < len {
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = ((sent + i as u64) % 251) as u8;
        }
        s.write_all(&chunk).unwrap();
        for &b in &chunk {
            digest = digest.wrapping_mul(31).wrapping_add(u64::from(b));
        }
        sent += chunk.len() as u64;
    }
    drop(s);
    let got = rx.join().unwrap();
    assert_eq!(
        got,
        (sent, digest),
        "{} -> {ip}: the bytes that arrived (count, digest) differ from those sent",
        client.name
    );
}

/// A TCP transfer of `bytes` from `client` to an iperf3 server in `server`
/// at `server_ip` (the other way with `reverse`); returns iperf3's
/// (sent, received) byte counts after checking that it completed.
/// Runs: ip, iperf3, timeout.
pub fn iperf3(
    client: &Netns,
    server: &Netns,
    server_ip: &str,
    bytes: u64,
    reverse: bool,
) -> (u64, u64) {
    let _srv = server.spawn(&["iperf3", "-s", "-B", server_ip]);
    let n = bytes.to_string();
    let mut args = vec![
        "60",
        "iperf3",
        "-c",
        server_ip,
        "-n",
        &n,
        "-J",
        "--connect-timeout",
        "2000",
    ];
    if reverse {
        args.push("-R");
    }
    // The server needs a moment to listen: retry the client for up to 5 s;
    // `timeout` bounds a transfer that stalls.
    let deadline = Instant::now() + Duration::from_secs(5);
    let j: serde_json::Value = loop {
        let out = client.exec("timeout", &args);
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if (out.status.success() && j.get("error").is_none()) || Instant::now() > deadline {
            break j;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        j.get("error").is_none() && j["end"].is_object(),
        "iperf3 {} -> {server_ip} (reverse {reverse}) failed: {j}",
        client.name
    );
    // cJSON may print large integers as floats: read as f64.
    let field = |k: &str| {
        j["end"][k]["bytes"]
            .as_f64()
            .unwrap_or_else(|| panic!("no end.{k}.bytes in {j}")) as u64
    };
    let (sent, received) = (field("sum_sent"), field("sum_received"));
    assert!(sent >= bytes, "iperf3 sent {sent} < requested {bytes}");
    // iperf3 3.12 in -n mode stops the receiver's count when the sender says
    // it is done, so bytes still in flight are missing from sum_received;
    // `exact_transfer` is the exact comparison.
    assert!(
        received > 0 && received <= sent,
        "iperf3 sent {sent}, received {received}"
    );
    (sent, received)
}

/// The counters of port `name` in `vxswitch --json stats` output.
pub fn find_port<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let ports = stats["ports"]
        .as_array()
        .unwrap_or_else(|| panic!("stats --json has no ports list: {stats}"));
    let p = ports
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port {name} in {stats}"));
    if p.get("stats").is_some() {
        &p["stats"]
    } else {
        p
    }
}

/// What one run of the CNI plugin gave back.
pub struct CniOutcome {
    pub ok: bool,
    /// stdout, trimmed: the result or error object.
    pub stdout: String,
    pub stderr: String,
}

/// Runs the CNI plugin `plugin` (the vxswitch binary under a `-cni`
/// name) as a container runtime would: a clean environment with PATH,
/// `CNI_PATH=cni_path`, CNI_COMMAND=`cmd` and `env`, and `conf` on stdin.
pub fn cni_exec(
    plugin: &Path,
    cni_path: &str,
    cmd: &str,
    env: &[(&str, &str)],
    conf: &str,
) -> CniOutcome {
    // A path, not a command on PATH: nothing to check.
    let mut child = Command::new(plugin)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_PATH", cni_path)
        .env("CNI_COMMAND", cmd)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vxswitch-cni");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    CniOutcome {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
