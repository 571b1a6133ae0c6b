//! The binary under test as a process: a [`Daemon`] on a socket of its
//! own, its counters, and the CNI plugin run as a runtime runs it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{cmd, run_raw, signal, unique, wait_until, Netns, TempDir, BIN};

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
        let mut command = cmd(&prog, &argv);
        // Daemons in the test's namespace run side by side (the test
        // threads): each names its veth ports' host ends with a prefix of
        // its own, or two ports c0 would both want vxv-c0 (docs/veth.md).
        // Daemons in a namespace of their own keep the default, vxv-.
        if netns.is_none()
            && !extra.contains(&"--veth-prefix")
            && std::env::var_os("VXSWITCH_VETH_PREFIX").is_none()
        {
            command.env("VXSWITCH_VETH_PREFIX", veth_prefix());
        }
        let child = command
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
        // A daemon on the fast path pins its maps for a restart (a kill
        // leaves them, by design); the test's daemon has no next start.
        // Daemons in a namespace of their own pin under a private /sys,
        // which went with them.
        if self.netns.is_none() {
            // The steering interfaces of its ports (`--fastpath ebpf`),
            // which a killed daemon leaves for its next start: here there
            // is none, and they are links of the test's namespace.
            let prefix = vxswitch::ctl::fastpath::steer_prefix_for(&self.socket);
            if let Err(e) = vxswitch::ports::uplink::sweep_steers(&prefix) {
                eprintln!("clean-up: remove the steering interfaces {prefix}*: {e}");
            }
            let pins = vxswitch::ctl::fastpath::pin_dir_for(&self.socket);
            match std::fs::remove_dir_all(&pins) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    eprintln!("clean-up: remove {}: {e}", pins.display())
                }
                _ => {}
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("clean-up: remove {}: {e}", self.dir.display());
        }
    }
}

/// Whether the suite runs on veth ports (`VXSWITCH_BACKEND=veth`, which
/// the daemons it starts take as their `--backend`): assertions about a
/// TAP device then check the veth's equivalent.
pub fn veth_backend() -> bool {
    std::env::var("VXSWITCH_BACKEND").is_ok_and(|b| b == "veth")
}

/// The packet sockets that read the veth port whose host end is `dev`, in
/// the test's namespace (`/proc/net/packet`): one per worker while a daemon
/// reads it, as a TAP has queues. They are bound to the host end, or with
/// the eBPF fast path to the port's steering interface (`vxs....-<host
/// end's ifindex in hex>`, docs/fastpath.md), and the host end then holds
/// only the socket the switch sends through, which receives nothing: that
/// one is not counted, and no receiving socket may be left on the host end
/// beside a steering interface. 0 when `dev` does not exist.
pub fn packet_sockets_on(dev: &str) -> usize {
    let Ok(index) = std::fs::read_to_string(format!("/sys/class/net/{dev}/ifindex")) else {
        return 0;
    };
    let index = index.trim().to_string();
    let suffix = format!("-{:x}", index.parse::<u32>().unwrap_or(0));
    let steer = std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("vxs") && n.ends_with(&suffix))
        .and_then(|n| std::fs::read_to_string(format!("/sys/class/net/{n}/ifindex")).ok())
        .map(|i| i.trim().to_string());
    let receiving = |on: &str| {
        std::fs::read_to_string("/proc/net/packet")
            .unwrap_or_default()
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.get(4) == Some(&on) && f.get(3).is_some_and(|p| *p != "0000"))
            .count()
    };
    match steer {
        None => receiving(&index),
        Some(s) => {
            assert_eq!(
                receiving(&index),
                0,
                "{dev} has a steering interface and still a receiving socket"
            );
            receiving(&s)
        }
    }
}

/// A `--veth-prefix` no other daemon of this machine's tests has: `v`,
/// five base-36 digits of the process id and a counter, `-` (7 bytes, so
/// port names up to 8 bytes keep their name after it).
pub fn veth_prefix() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut x = (u64::from(std::process::id()) * 7919 + n) % 36u64.pow(5);
    let mut digits = [b'0'; 5];
    for d in digits.iter_mut().rev() {
        *d = b"0123456789abcdefghijklmnopqrstuvwxyz"[(x % 36) as usize];
        x /= 36;
    }
    format!("v{}-", std::str::from_utf8(&digits).unwrap_or("00000"))
}

/// Port `name`'s whole row in `vxswitch --json stats` output (its
/// counters, and `fast` for a port on the fast path).
pub fn port_row<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let ports = stats["ports"]
        .as_array()
        .unwrap_or_else(|| panic!("stats --json has no ports list: {stats}"));
    ports
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port {name} in {stats}"))
}

/// The counters of port `name` in `vxswitch --json stats` output.
pub fn find_port<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let p = port_row(stats, name);
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
