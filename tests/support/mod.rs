//! Fixtures for the root integration tests: uniquely named network
//! namespaces, a vxswitch daemon process, and the traffic tools, each
//! cleaned up by `Drop` even when the test panics.
//!
//! Outside CI a test that needs root (or a tool) skips with a printed
//! reason; with `CI=true` a skip is a failure.
#![allow(dead_code)]

pub mod capture;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_vxswitch");

/// Returns false (after printing why) when the test cannot run here; panics
/// instead under CI, where every test must run.
pub fn can_run(tools: &[&str]) -> bool {
    can_run_with(tools, &[])
}

/// [`can_run`] that also needs `files` (plugins outside `PATH`, such as
/// `/usr/lib/cni/host-local`).
pub fn can_run_with(tools: &[&str], files: &[&str]) -> bool {
    let mut missing = Vec::new();
    // SAFETY-free root check: /proc/self/status Uid line.
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2).unwrap_or("1").to_string())
        })
        .unwrap_or_default();
    if uid != "0" {
        missing.push("root (network namespaces and TAP devices)".to_string());
    }
    for t in tools {
        if which(t).is_none() {
            missing.push(format!("the `{t}` command"));
        }
    }
    for f in files {
        if !Path::new(f).is_file() {
            missing.push(format!("the file {f}"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("needs {}", missing.join(", "));
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and this test cannot run: {msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// A short name unique among live test processes and calls, usable in
/// namespace and file names: PREFIX, the full PID, "-", a counter. The
/// separator matters: without it PID 1234 call 11 and PID 12341 call 1 (two
/// test binaries run at once) would both be "PREFIX123411".
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}-{n}", std::process::id())
}

/// Runs a command, returns its output; panics with its stderr on failure.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = run_raw(cmd, args);
    assert!(
        out.status.success(),
        "`{cmd} {}` failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn run_raw(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
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

/// The interface names in namespace `netns`, from `ip -j link`: for exact
/// comparison (`ip -br link` prints veths as `NAME@PEER`).
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

/// A network namespace created with `ip netns add`, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let name = unique(prefix);
        run("ip", &["netns", "add", &name]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", &self.name, cmd];
        all.extend_from_slice(args);
        run_raw("ip", &all)
    }

    /// One ping with a 2-second deadline; true when a reply came back.
    pub fn ping(&self, dst: &str) -> bool {
        self.exec("ping", &["-c", "1", "-W", "2", "-n", "-q", dst])
            .status
            .success()
    }

    /// Pings until one succeeds (ARP and learning may take a moment), at most `timeout`.
    pub fn ping_within(&self, dst: &str, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.exec("ping", &["-c", "1", "-W", "1", "-n", "-q", dst])
                .status
                .success()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run_raw("ip", &["netns", "del", &self.name]);
    }
}

/// A `vxswitch daemon` child process on its own socket, killed (by PID) on drop.
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
        let child = Command::new(prog)
            .args(&args)
            .stdin(Stdio::null())
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
        let mut child = Command::new(BIN)
            .args(["--socket", sock.to_str().unwrap(), "daemon"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vxswitch daemon");
        let exited = wait_until(Duration::from_secs(10), || {
            child.try_wait().ok().flatten().is_some()
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
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
        let pid = self.child.id().to_string();
        let _ = run_raw("kill", &["-TERM", &pid]);
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
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
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
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process (iperf3 server and the like) killed by PID on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
pub fn iperf3(
    client: &Netns,
    server: &Netns,
    server_ip: &str,
    bytes: u64,
    reverse: bool,
) -> (u64, u64) {
    let _srv = Proc(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &server.name,
                "iperf3",
                "-s",
                "-B",
                server_ip,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
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
