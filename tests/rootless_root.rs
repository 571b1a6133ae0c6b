//! The rootless lab (docs/rootless.md): vxswitch run by an unprivileged
//! user inside a user namespace (`unshare --user --map-root-user --net`),
//! its "containers" processes in nested network namespaces
//! (`unshare -n sleep infinity`) attached by their `/proc/PID/ns/net` path.
//!
//! The test runs as root (CI) and drops to uid 65534 (`nobody`) for
//! everything the lab does, as a user would: the daemon, every CLI call,
//! the containers, ping and the transfer. Only the set-up of /dev/net/tun is
//! root's: this VM has no udev, so the device is mode 0600, where most
//! distributions make it 0666. Instead of changing the system's device, the
//! lab gets a private mount namespace in which a 0666 tun node (on a tmpfs)
//! is bind-mounted over /dev/net/tun; nothing outside the lab sees it.
//!
//! Process layout: one "holder" process is the user's login shell, in the
//! private mount namespace, then uid 65534, then its own user and network
//! namespaces (`sleep infinity` exec'd at the end of a chain of `exec`s, so
//! its PID is the one spawned). Every later command enters the holder's mount
//! namespace as root (`nsenter -m`), drops to uid 65534 (`setpriv`), and
//! enters the lab's user namespace as its owner (`nsenter -U -n
//! --preserve-credentials`, what the user types in a second terminal).
//! Every process is killed by PID on drop.

mod support;

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{find_port, unique, wait_until, Proc, TempDir, BIN};

/// The unprivileged user the lab runs as.
const USER: &str = "65534";
/// The only PATH the user's commands get: the system's tools, never a
/// toolchain shim under /root (which uid 65534 cannot read).
const SYSTEM_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Root, and every command the lab runs where it runs them: on
/// [`SYSTEM_PATH`], the only `PATH` the lab's commands get.
fn lab_can_run() -> bool {
    let tools = [
        "unshare", "sh", "mount", "mknod", "setpriv", "sleep", "nsenter", "chown", "kill", "ip",
        "ping", "python3", "timeout",
    ];
    if !support::can_run_on(SYSTEM_PATH, &tools, &[]) {
        return false;
    }
    // A character device, which can_run_with's file check would refuse.
    Path::new("/dev/net/tun").exists() || support::cannot_run("needs /dev/net/tun (modprobe tun)")
}

/// `program ARGS` with [`SYSTEM_PATH`] as its whole environment.
fn system_command(program: &str, args: &[&str]) -> Command {
    let mut c = support::cmd(program, args);
    c.env_clear().env("PATH", SYSTEM_PATH);
    c
}

/// The user's lab: a private mount namespace with a tun node of the given
/// mode, uid 65534, its own user and network namespace.
///
/// Fields drop in order: the daemon and containers (killed by PID), then the
/// holder (the mount namespace and its tmpfs go with the last of them), then
/// the directory.
struct Lab {
    /// The lab's processes other than the holder (daemon, containers).
    procs: Vec<Proc>,
    holder: Proc,
    /// Owned by uid 65534: the binary, the socket, the log.
    dir: TempDir,
    /// A copy of the vxswitch binary the user may execute (the build tree
    /// may be under /root).
    bin: String,
}

impl Lab {
    /// `tun_mode`: the mode of the lab's /dev/net/tun (0666 on a normal
    /// distribution; 0600 reproduces this VM's).
    fn new(tun_mode: &str) -> Lab {
        let dir = TempDir::new("vxsw-rootless-");
        let dev = dir.0.join("dev");
        fs::create_dir(&dev).unwrap();
        let bin = dir.0.join("vxswitch");
        fs::copy(BIN, &bin).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o755)).unwrap();
        let owner = format!("{USER}:{USER}");
        let chown = system_command("chown", &["-R", &owner, dir.0.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(chown.success(), "chown {}", dir.0.display());
        // As root: a private mount namespace, a tmpfs, a tun node of
        // `tun_mode` on it, bound over /dev/net/tun; then the user's own
        // user and network namespaces. Each step exec's the next, so the
        // spawned PID ends up as `sleep` inside all of them.
        let script = "mount -t tmpfs -o mode=0755 vxswitch-lab \"$1\" && \
                      mknod -m \"$2\" \"$1/tun\" c 10 200 && \
                      mount --bind \"$1/tun\" /dev/net/tun && \
                      exec setpriv --reuid=\"$3\" --regid=\"$3\" --clear-groups \
                      unshare --user --map-root-user --net sleep infinity";
        let log = fs::File::create(dir.0.join("holder.log")).unwrap();
        let argv = ["--mount", "--propagation", "private", "sh", "-c", script];
        let holder = Proc(
            system_command("unshare", &argv)
                .args(["sh", dev.to_str().unwrap(), tun_mode, USER])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn the lab's holder process"),
        );
        let mut lab = Lab {
            bin: bin.to_str().unwrap().to_string(),
            dir,
            procs: Vec::new(),
            holder,
        };
        let me = fs::read_link("/proc/self/ns/user").unwrap();
        let pid = lab.holder.0.id();
        let inside = wait_until(Duration::from_secs(10), || {
            lab.holder.0.try_wait().ok().flatten().is_none()
                && fs::read_link(format!("/proc/{pid}/ns/user")).is_ok_and(|ns| ns != me)
                && fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n")
        });
        assert!(
            inside,
            "the lab's user namespace did not come up (unprivileged user namespaces \
             disabled? see docs/rootless.md): {}",
            fs::read_to_string(lab.dir.0.join("holder.log")).unwrap_or_default()
        );
        lab
    }

    fn socket(&self) -> String {
        self.dir.0.join("vx.sock").to_str().unwrap().to_string()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.0.join("daemon.log")).unwrap_or_default()
    }

    /// `cmd` as the user inside the lab's user namespace and the network
    /// namespace of `net_pid` (the holder's: the daemon's namespace).
    fn command(&self, net_pid: u32, cmd: &[&str]) -> Command {
        let holder = self.holder.0.id().to_string();
        let net = net_pid.to_string();
        let mut argv = vec!["--target", &holder, "--mount", "--"];
        argv.extend([
            "setpriv",
            "--reuid",
            USER,
            "--regid",
            USER,
            "--clear-groups",
        ]);
        argv.extend([
            "nsenter",
            "--target",
            &holder,
            "--user",
            "--preserve-credentials",
        ]);
        argv.extend(["nsenter", "--target", &net, "--net", "--"]);
        argv.extend_from_slice(cmd);
        let mut c = system_command("nsenter", &argv);
        c.env("HOME", &self.dir.0);
        c
    }

    /// Runs `cmd` in the lab in `net_pid`'s network namespace; its output.
    fn run_in(&self, net_pid: u32, cmd: &[&str]) -> Output {
        self.command(net_pid, cmd)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?} in the lab: {e}"))
    }

    /// `vxswitch --socket S ARGS` as the user.
    fn cli_raw(&self, args: &[&str]) -> Output {
        let sock = self.socket();
        let mut all = vec![self.bin.as_str(), "--socket", &sock];
        all.extend_from_slice(args);
        self.run_in(self.holder.0.id(), &all)
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_raw(args);
        assert!(
            out.status.success(),
            "`vxswitch {}` as uid {USER} in the lab failed: {}{}\ndaemon log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("non-JSON from {args:?} ({e}): {out}"))
    }

    /// Starts `vxswitch daemon` as the user (on the lab's socket unless
    /// `args` says otherwise) and returns its index in `procs`.
    fn spawn_daemon(&mut self, args: &[&str]) -> usize {
        let log = fs::File::create(self.dir.0.join("daemon.log")).unwrap();
        let mut cmd = vec![self.bin.as_str()];
        cmd.extend_from_slice(args);
        let child = self
            .command(self.holder.0.id(), &cmd)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn the daemon in the lab");
        self.procs.push(Proc(child));
        self.procs.len() - 1
    }

    /// Starts the daemon on the lab's socket and waits until it answers.
    fn start_daemon(&mut self) -> usize {
        let sock = self.socket();
        let i = self.spawn_daemon(&["--socket", &sock, "daemon"]);
        let up = wait_until(Duration::from_secs(10), || {
            self.procs[i].0.try_wait().ok().flatten().is_some()
                || self.cli_raw(&["ping"]).status.success()
        });
        assert!(
            up && self.procs[i].0.try_wait().unwrap().is_none(),
            "the daemon did not start as uid {USER} in the lab:\n{}",
            self.log()
        );
        i
    }

    /// A "container": `unshare -n sleep infinity` run by the user in the
    /// lab; returns its PID (the namespace is `/proc/PID/ns/net`).
    fn container(&mut self) -> u32 {
        let child = self
            .command(
                self.holder.0.id(),
                &["unshare", "--net", "sleep", "infinity"],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a container in the lab");
        let pid = child.id();
        let own = fs::read_link(format!("/proc/{}/ns/net", self.holder.0.id())).unwrap();
        self.procs.push(Proc(child));
        let ready = wait_until(Duration::from_secs(10), || {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n")
                && fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|ns| ns != own)
        });
        assert!(
            ready,
            "container {pid} did not get its own network namespace"
        );
        pid
    }

    fn ping(&self, from: u32, dst: &str) -> bool {
        self.run_in(from, &["ping", "-c", "1", "-W", "1", "-n", "-q", dst])
            .status
            .success()
    }

    /// The interface names in `pid`'s network namespace, seen by the user.
    fn links(&self, pid: u32) -> Vec<String> {
        let out = self.run_in(pid, &["ip", "-j", "link", "show"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "`ip -j link` in {pid} ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["ifname"].as_str().map(String::from))
            .collect()
    }

    /// Sends SIGTERM to `procs[i]` and waits (at most 10 s) for its exit.
    fn terminate(&mut self, i: usize) -> std::process::ExitStatus {
        let pid = self.procs[i].0.id().to_string();
        let kill = system_command("kill", &["-TERM", &pid]).status().unwrap();
        assert!(kill.success(), "kill -TERM {pid}: {kill}");
        let child = &mut self.procs[i].0;
        let mut status = None;
        let done = wait_until(Duration::from_secs(10), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        assert!(done, "pid {pid} did not exit within 10 s of SIGTERM");
        status.unwrap()
    }
}

const TRANSFER_SERVER: &str = r#"
import hashlib, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5301))
s.listen(1)
s.settimeout(30)
c, _ = s.accept()
c.settimeout(30)
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(65536)
    if not b:
        break
    h.update(b)
    n += len(b)
print(n, h.hexdigest())
"#;

const TRANSFER_CLIENT: &str = r#"
import hashlib, socket, sys, time
total = int(sys.argv[2])
deadline = time.monotonic() + 10
while True:
    try:
        s = socket.create_connection((sys.argv[1], 5301), timeout=2)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
s.settimeout(30)
chunk = bytes(i % 251 for i in range(65536))
h, n = hashlib.sha256(), 0
while n < total:
    b = chunk[: min(len(chunk), total - n)]
    s.sendall(b)
    h.update(b)
    n += len(b)
s.shutdown(socket.SHUT_WR)
s.recv(1)
s.close()
print(n, h.hexdigest())
"#;

/// `len` bytes over TCP from container `client` to a listener in `server`
/// at `ip`, both python3 run by the user; the receiver's count and SHA-256
/// must be the sender's.
fn exact_transfer_in_lab(lab: &Lab, client: u32, server: u32, ip: &str, len: u64) {
    let mut srv = Proc(
        lab.command(server, &["python3", "-c", TRANSFER_SERVER, ip])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the transfer server"),
    );
    let n = len.to_string();
    let sent = lab.run_in(
        client,
        &["timeout", "60", "python3", "-c", TRANSFER_CLIENT, ip, &n],
    );
    assert!(
        sent.status.success(),
        "transfer client failed: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let child = &mut srv.0;
    assert!(
        wait_until(Duration::from_secs(30), || child
            .try_wait()
            .ok()
            .flatten()
            .is_some()),
        "transfer server did not finish"
    );
    let mut got = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    let sent = String::from_utf8_lossy(&sent.stdout).trim().to_string();
    assert!(sent.starts_with(&format!("{len} ")), "client sent: {sent}");
    assert_eq!(
        got.trim(),
        sent,
        "the receiver's (bytes, sha256) differ from the sender's"
    );
}

fn port_counter(stats: &serde_json::Value, port: &str, field: &str) -> u64 {
    find_port(stats, port)[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} for {port} in {stats}"))
}

#[test]
fn user_namespace_lab_connects_two_containers_without_root() {
    if !lab_can_run() {
        return;
    }
    let mut lab = Lab::new("0666");
    let daemon = lab.start_daemon();
    let net = unique("rl");
    lab.cli(&["network", "create", &net, "--subnet", "10.91.0.0/24"]);
    let c1 = lab.container();
    let c2 = lab.container();
    let (p1, p2) = (format!("/proc/{c1}/ns/net"), format!("/proc/{c2}/ns/net"));
    let a1 = lab.cli(&[
        "port",
        "add",
        "c1",
        "--network",
        &net,
        "--netns",
        &p1,
        "--ip",
        "10.91.0.11/24",
    ]);
    assert!(a1.contains(&format!("eth0 in {p1}")), "{a1}");
    lab.cli(&[
        "port",
        "add",
        "c2",
        "--network",
        &net,
        "--netns",
        &p2,
        "--ip",
        "10.91.0.12/24",
    ]);
    // The TAPs live in the containers, multi-queue with offloads, as root's.
    let detail = lab.run_in(c1, &["ip", "-d", "link", "show", "eth0"]);
    let detail = String::from_utf8_lossy(&detail.stdout);
    assert!(
        detail.contains("tun type tap") && detail.contains("vnet_hdr on"),
        "{detail}"
    );

    assert!(
        wait_until(Duration::from_secs(10), || lab.ping(c1, "10.91.0.12")),
        "c1 cannot ping c2:\n{}",
        lab.log()
    );
    assert!(lab.ping(c2, "10.91.0.11"), "c2 cannot ping c1");
    let before = lab.json(&["stats"]);
    exact_transfer_in_lab(&lab, c1, c2, "10.91.0.12", 8 << 20);
    let after = lab.json(&["stats"]);
    for (port, field) in [("c1", "rx_bytes"), ("c2", "tx_bytes")] {
        let (b, a) = (
            port_counter(&before, port, field),
            port_counter(&after, port, field),
        );
        assert!(a >= b + (8 << 20), "{port} {field}: {b} -> {a}; {after}");
    }
    assert!(port_counter(&after, "c2", "rx_frames") > 0, "{after}");

    // port rm deletes c2's TAP.
    lab.cli(&["port", "rm", "c2"]);
    assert_eq!(lab.links(c2), vec!["lo".to_string()]);
    assert!(
        !lab.ping(c1, "10.91.0.12"),
        "c2 still answers after port rm"
    );

    // A container that exits takes its port with it.
    let idx = lab
        .procs
        .iter()
        .position(|p| p.0.id() == c1)
        .expect("c1's process");
    lab.terminate(idx);
    let names = || -> Vec<String> {
        lab.json(&["port", "ls"])
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(10), || names().is_empty()),
        "c1's port outlived its container: {:?}",
        names()
    );

    let status = lab.terminate(daemon);
    assert!(status.success(), "daemon exit: {status}\n{}", lab.log());
    assert!(
        !Path::new(&lab.socket()).exists(),
        "the daemon left its socket behind"
    );
}

#[test]
fn user_namespace_lab_errors_name_what_is_missing() {
    if !lab_can_run() {
        return;
    }
    // This VM's /dev/net/tun: root's only.
    let mut lab = Lab::new("0600");

    // The default socket is under /run, which the user cannot write.
    let i = lab.spawn_daemon(&["daemon"]);
    let child = &mut lab.procs[i].0;
    let mut status = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        }),
        "a daemon on the default socket kept running as uid {USER}"
    );
    let log = lab.log();
    assert_eq!(status.unwrap().code(), Some(1), "{log}");
    assert!(
        log.contains("/run/vxswitch") && log.contains("--socket"),
        "{log}"
    );

    lab.start_daemon();
    let net = unique("rl");
    lab.cli(&["network", "create", &net, "--subnet", "10.92.0.0/24"]);
    let c1 = lab.container();
    let p1 = format!("/proc/{c1}/ns/net");
    let out = lab.cli_raw(&[
        "port",
        "add",
        "c1",
        "--network",
        &net,
        "--netns",
        &p1,
        "--ip",
        "10.92.0.11/24",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot open /dev/net/tun: Permission denied") && err.contains("mode 0666"),
        "{err}"
    );
    assert_eq!(
        lab.links(c1),
        vec!["lo".to_string()],
        "a TAP was left behind"
    );

    // A namespace from outside the user namespace (the host's) is not the
    // daemon's to enter.
    let out = lab.cli_raw(&[
        "port",
        "add",
        "host",
        "--network",
        &net,
        "--netns",
        "/proc/1/ns/net",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot enter network namespace /proc/1/ns/net: Permission denied")
            && err.contains("only those created inside that same user namespace"),
        "{err}"
    );
    assert!(lab.json(&["port", "ls"]).as_array().unwrap().is_empty());
}
