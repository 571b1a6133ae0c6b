//! `vxswitch docker-plugin` with the real Docker engine: a private dockerd
//! (its own data and exec roots and API socket, no docker0, no iptables),
//! an image `FROM scratch` with a static busybox, containers on networks
//! created with `docker network create -d DRIVER`.
//!
//! Each test's plugin has its own driver name (its socket under
//! /run/docker/plugins), so tests and a system dockerd never meet.
//! Everything started is stopped by PID in Drop, also on panic.
//!
//! An `Env` may also run inside a "host" network namespace: two of them,
//! joined by a veth underlay, are two Docker hosts sharing a network over
//! vxswitch's VXLAN (`two_docker_hosts_share_a_network_over_vxswitch_vxlan`).

mod support;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{run, run_raw, unique, wait_until, Daemon, Netns, TempDir, BIN};

/// The docker client shipped with the engine (Debian: /usr/bin/docker);
/// another `docker` earlier in PATH may be of another version. Without
/// one, the path `ready` reports missing.
fn docker_bin() -> String {
    ["/usr/bin/docker", "/bin/docker"]
        .iter()
        .find(|p| Path::new(p).is_file())
        .map(|p| p.to_string())
        .or_else(|| support::which("docker").map(|p| p.display().to_string()))
        .unwrap_or_else(|| "/usr/bin/docker".into())
}

/// A vxswitch daemon, the plugin, and a private dockerd using it: one
/// Docker host, in the test's network namespace or in a namespace of its own.
struct Env {
    daemon: Daemon,
    /// The host namespace the daemon, the plugin and dockerd run in (None:
    /// the test's own).
    netns: Option<String>,
    plugin: Option<Child>,
    driver: String,
    plugin_socket: PathBuf,
    dockerd: Option<Child>,
    root: TempDir,
    image: String,
    /// The dockerd socket the plugin asks for container names.
    names_from: PathBuf,
}

impl Env {
    fn start() -> Env {
        Self::start_in(None)
    }

    /// The daemon, the plugin and dockerd all in `host` (when given): a
    /// Docker host of its own, sharing nothing with another Env (driver
    /// name, plugin socket, dockerd data and exec roots, pidfile, API
    /// socket, containerd, image name).
    fn start_in(host: Option<&Netns>) -> Env {
        let daemon = Daemon::start_in(host, &[]);
        let driver = unique("vxt");
        let plugin_socket = PathBuf::from(format!("/run/docker/plugins/{driver}.sock"));
        // The root holds unix sockets: keep its path short (108 bytes).
        let root = TempDir::new("vxdk");
        let names_from = root.0.join("docker.sock");
        let mut env = Env {
            daemon,
            netns: host.map(|h| h.name.clone()),
            plugin: None,
            driver,
            plugin_socket,
            dockerd: None,
            root,
            image: unique("vxbb"),
            names_from,
        };
        env.start_plugin();
        env.start_dockerd();
        env.build_image();
        env
    }

    /// `prog` as a command run in the Env's host namespace: `nsenter
    /// --net` switches the network namespace only (unlike `ip netns exec`,
    /// which also remounts /sys without its cgroup file system, which
    /// dockerd and runc need), then execs `prog`, so the child's PID is
    /// `prog`'s.
    fn command(&self, prog: impl AsRef<OsStr>) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = support::cmd("nsenter", &[&format!("--net=/run/netns/{ns}"), "--"]);
                c.arg(prog);
                c
            }
            None => Command::new(prog),
        }
    }

    fn start_plugin(&mut self) {
        let log = std::fs::File::create(self.root.0.join("plugin.log")).unwrap();
        let child = self
            .command(BIN)
            .args(["--socket", self.daemon.socket.to_str().unwrap()])
            .args(["docker-plugin", "--debug", "--plugin-socket"])
            .arg(&self.plugin_socket)
            .arg("--state-dir")
            .arg(self.root.0.join("plugin-state"))
            .arg("--docker-socket")
            .arg(&self.names_from)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn vxswitch docker-plugin");
        self.plugin = Some(child);
        let sock = self.plugin_socket.clone();
        assert!(
            wait_until(Duration::from_secs(10), || {
                std::os::unix::net::UnixStream::connect(&sock).is_ok()
            }),
            "plugin did not listen on {}:\n{}",
            sock.display(),
            self.plugin_log()
        );
    }

    fn stop_plugin(&mut self) {
        if let Some(mut c) = self.plugin.take() {
            // Killing fails only for a process that has exited meanwhile;
            // the wait reaps it either way.
            c.kill().ok();
            c.wait().ok();
        }
    }

    fn plugin_log(&self) -> String {
        std::fs::read_to_string(self.root.0.join("plugin.log")).unwrap_or_default()
    }

    fn dockerd_log(&self) -> String {
        std::fs::read_to_string(self.root.0.join("dockerd.log")).unwrap_or_default()
    }

    fn path(&self, name: &str) -> String {
        self.root.0.join(name).display().to_string()
    }

    fn start_dockerd(&mut self) {
        let log = std::fs::File::create(self.root.0.join("dockerd.log")).unwrap();
        // Its own config file: a system /etc/docker/daemon.json may set what
        // the flags below set (dockerd then refuses to start), and the trust
        // key goes under the root instead of /etc/docker/key.json.
        let config = self.root.0.join("daemon.json");
        let key = self.root.0.join("key.json");
        std::fs::write(
            &config,
            serde_json::json!({ "deprecated-key-path": key }).to_string(),
        )
        .unwrap();
        // dockerd runs containerd and runc from PATH; sbin may be missing.
        let path = format!(
            "{}:/usr/sbin:/usr/bin:/sbin:/bin",
            std::env::var("PATH").unwrap_or_default()
        );
        let child = self
            .command(support::which("dockerd").expect("dockerd"))
            .env("PATH", path)
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(self.path("data"))
            .arg("--exec-root")
            .arg(self.path("exec"))
            .arg("--pidfile")
            .arg(self.path("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", self.path("docker.sock")))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        self.dockerd = Some(child);
        let up = wait_until(Duration::from_secs(60), || {
            self.docker_raw(&["version"]).status.success()
                || self
                    .dockerd
                    .as_mut()
                    .is_some_and(|c| c.try_wait().ok().flatten().is_some())
        });
        assert!(
            up && self.docker_raw(&["version"]).status.success(),
            "dockerd did not start:\n{}",
            self.dockerd_log()
        );
    }

    /// An image with only a static busybox, built without any registry.
    fn build_image(&self) {
        let dir = self.root.0.join("image");
        std::fs::create_dir_all(&dir).unwrap();
        let busybox = support::which("busybox").expect("busybox");
        std::fs::copy(busybox, dir.join("busybox")).unwrap();
        std::fs::write(
            dir.join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
        )
        .unwrap();
        self.docker(&[
            "build",
            "--network",
            "none",
            "-q",
            "-t",
            &self.image,
            dir.to_str().unwrap(),
        ]);
    }

    fn docker_raw(&self, args: &[&str]) -> Output {
        let mut all = vec![
            "-H".to_string(),
            format!("unix://{}", self.path("docker.sock")),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run_raw(&docker_bin(), &all)
    }

    /// `docker ARGS` in clean-up: a failure is printed, not raised.
    fn cleanup_docker(&self, args: &[&str]) {
        let sock = format!("unix://{}", self.path("docker.sock"));
        let mut all = vec!["-H", &sock];
        all.extend_from_slice(args);
        support::run_for_cleanup(&docker_bin(), &all);
    }

    fn docker(&self, args: &[&str]) -> String {
        let out = self.docker_raw(args);
        assert!(
            out.status.success(),
            "`docker {}` failed: {}{}\nplugin log:\n{}\ndaemon log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.plugin_log(),
            self.daemon.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `docker network create -d DRIVER --subnet SUBNET [extra] NAME`.
    fn network(&self, name: &str, subnet: &str, extra: &[&str]) -> String {
        let mut args = vec!["network", "create", "-d", &self.driver, "--subnet", subnet];
        args.extend_from_slice(extra);
        args.push(name);
        self.docker(&args)
    }

    /// A detached container that sleeps, on `network`.
    fn container(&self, name: &str, network: &str, extra: &[&str]) {
        let mut args = vec!["run", "-d", "--name", name, "--network", network];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[&self.image, "sleep", "600"]);
        self.docker(&args);
    }

    fn ip_of(&self, container: &str) -> String {
        self.docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            container,
        ])
    }

    fn ping(&self, from: &str, to: &str) -> bool {
        self.docker_raw(&["exec", from, "ping", "-c", "1", "-W", "1", to])
            .status
            .success()
    }

    /// A ping that gets through within a few seconds (the first may wait
    /// for ARP).
    fn ping_within(&self, from: &str, to: &str) -> bool {
        wait_until(Duration::from_secs(5), || self.ping(from, to))
    }

    /// Which of `names` are interfaces in the host's namespace.
    fn host_links_among(&self, names: &[String]) -> Vec<String> {
        let out = match &self.netns {
            Some(ns) => run("ip", &["-n", ns, "-j", "link", "show"]),
            None => run("ip", &["-j", "link", "show"]),
        };
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|n| names.iter().any(|m| m == n))
            .map(String::from)
            .collect()
    }

    /// Ends dockerd: SIGTERM (it stops its containers and containerd), then
    /// SIGKILL after a deadline.
    fn stop_dockerd(&mut self) {
        let Some(mut child) = self.dockerd.take() else {
            return;
        };
        let pid = child.id().to_string();
        support::run_for_cleanup("kill", &["-TERM", &pid]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().ok().flatten().is_none() {
            eprintln!("dockerd did not stop within 30 s of SIGTERM: killed");
            child.kill().ok();
            child.wait().ok();
        }
        // dockerd's own containerd, if it outlived dockerd.
        for pidfile in [
            "exec/containerd/containerd.pid",
            "data/containerd/daemon/containerd.pid",
        ] {
            if let Ok(pid) = std::fs::read_to_string(self.root.0.join(pidfile)) {
                let pid = pid.trim();
                if !pid.is_empty() && Path::new(&format!("/proc/{pid}")).exists() {
                    support::run_for_cleanup("kill", &["-KILL", pid]);
                }
            }
        }
    }

    /// Unmounts whatever dockerd left mounted under the test's root,
    /// deepest first.
    fn unmount_leftovers(&self) {
        let root = self.root.0.display().to_string();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|p| p.starts_with(&root))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            support::run_for_cleanup("umount", &["-l", p]);
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.dockerd.is_some() {
            let ids = self.docker_raw(&["ps", "-aq"]);
            let ids = String::from_utf8_lossy(&ids.stdout).to_string();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                self.cleanup_docker(&args);
            }
            self.cleanup_docker(&["network", "prune", "-f"]);
        }
        self.stop_dockerd();
        self.stop_plugin();
        if let Err(e) = std::fs::remove_file(&self.plugin_socket) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("clean-up: remove {}: {e}", self.plugin_socket.display());
            }
        }
        self.unmount_leftovers();
    }
}

/// One dockerd at a time: each starts its own containerd, and two at once
/// on a small CI machine only make both slower.
static ONE_DOCKERD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The check every test here starts with: root, the engine (dockerd, its
/// containerd and runc, the docker client), busybox for the image, kill and
/// umount for the clean-up, and `extra`, what the test runs besides.
fn ready(extra: &[&str]) -> Option<std::sync::MutexGuard<'static, ()>> {
    let mut tools = vec!["dockerd", "containerd", "runc", "busybox", "kill", "umount"];
    tools.extend_from_slice(extra);
    if !support::can_run_with(&tools, &[&docker_bin()]) {
        return None;
    }
    Some(ONE_DOCKERD.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Names in `vxswitch --json X ls`.
fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn containers_on_a_vxswitch_network_talk_and_networks_are_isolated() {
    let Some(_one) = ready(&["ip", "nsenter"]) else {
        return;
    };
    // A host namespace of the test's own that does not forward, whatever
    // the machine's setting (a new namespace copies the initial one's),
    // for the isolation check below. Declared first: dropped after the Env.
    let host = Netns::new("dkh");
    host.sysctl("net.ipv4.ip_forward", "0");
    let env = Env::start_in(Some(&host));
    let app = unique("app");
    let other = unique("other");
    let app_id = env.network(&app, "10.88.0.0/24", &[]);
    env.network(&other, "10.89.0.0/24", &[]);
    let vx_app = format!("docker-{}", &app_id[..12]);
    let nets = env.daemon.json(&["network", "ls"]);
    let rec = nets
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == vx_app.as_str())
        .unwrap_or_else(|| panic!("no vxswitch network {vx_app}: {nets}"));
    assert_eq!(rec["subnet"], "10.88.0.0/24", "Docker's IPAM pool recorded");
    assert_eq!(
        rec["gateway"], "10.88.0.1",
        "Docker's IPAM gateway recorded"
    );

    // This dockerd is the test's own: fixed container names are free.
    let (c1, c2, c3) = ("web".to_string(), "db".to_string(), unique("c3-"));
    env.container(&c1, &app, &[]);
    env.container(&c2, &app, &[]);
    // NET_ADMIN: c3 gives itself an address in app's subnet below.
    env.container(&c3, &other, &["--cap-add", "NET_ADMIN"]);
    let (ip1, ip2) = (env.ip_of(&c1), env.ip_of(&c2));
    assert!(ip1.starts_with("10.88.0.") && ip2.starts_with("10.88.0."));

    assert!(env.ping_within(&c1, &ip2), "c1 -> c2 over vxswitch");
    assert!(env.ping(&c2, &ip1), "c2 -> c1 over vxswitch");
    // The default gateway port (host): a TAP on the host with 10.88.0.1.
    assert_eq!(rec["gateway_port"], "host", "{rec}");
    assert!(
        env.ping(&c1, "10.88.0.1"),
        "c1 reaches the host's gateway address"
    );
    let routes = env.docker(&["exec", &c1, "ip", "route"]);
    assert!(routes.contains("default via 10.88.0.1"), "{routes}");

    // One port per endpoint, in the network Docker made, TAP in the daemon's
    // namespace before the move (netns null).
    let ports = env.daemon.json(&["port", "ls"]);
    let in_app: Vec<_> = ports
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["network"] == vx_app.as_str() && p["gateway"] != true)
        .collect();
    assert_eq!(in_app.len(), 2, "{ports}");
    let mac1 = env.docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}",
        &c1,
    ]);
    assert!(
        in_app.iter().any(|p| p["mac"] == mac1.as_str()),
        "c1's MAC {mac1} is a port's: {ports}"
    );

    // The plugin asks dockerd after Join whose endpoint each port is, and
    // `port ls` shows the container's name.
    let port1 = in_app
        .iter()
        .find(|p| p["mac"] == mac1.as_str())
        .and_then(|p| p["name"].as_str())
        .unwrap()
        .to_string();
    let labels = || -> Vec<(String, String)> {
        let ports = env.daemon.json(&["port", "ls"]);
        let mut l: Vec<_> = ports
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["network"] == vx_app.as_str() && p["gateway"] != true)
            .map(|p| {
                let label = p["container"].as_str().unwrap_or("-").to_string();
                (label, p["name"].as_str().unwrap().to_string())
            })
            .collect();
        l.sort();
        l
    };
    assert!(
        wait_until(Duration::from_secs(10), || labels()
            .iter()
            .map(|(c, _)| c.as_str())
            .eq(["db", "web"])),
        "port ls shows no container names: {:?}\nplugin log:\n{}",
        labels(),
        env.plugin_log()
    );
    assert!(
        labels().contains(&("web".to_string(), port1.clone())),
        "web's port {port1} is labelled web: {:?}",
        labels()
    );
    let table = env.daemon.cli(&["port", "ls"]);
    let row = table.lines().find(|l| l.starts_with(&port1)).unwrap();
    assert!(row.trim_end().ends_with(" web"), "{table}");
    // port set changes the label by hand, and clears it.
    let out = env
        .daemon
        .cli(&["port", "set", &port1, "--container", "web-1"]);
    assert_eq!(out.trim(), format!("port {port1}: container web-1"));
    env.daemon.cli(&["port", "set", &port1, "--no-container"]);
    assert!(
        labels().contains(&("-".to_string(), port1.clone())),
        "{:?}",
        labels()
    );

    // The daemon's orphan reaper (about once a second) leaves ports created
    // in its own namespace alone although their TAPs moved away.
    let before = names(&env.daemon.json(&["port", "ls"]));
    assert!(
        !wait_until(Duration::from_millis(2500), || names(
            &env.daemon.json(&["port", "ls"])
        ) != before),
        "ports changed although the containers run: {}",
        env.daemon.log()
    );
    assert!(env.ping(&c1, &ip2), "still connected after the reaper ran");

    // With the host not forwarding (ip_forward 0, set above), a container
    // on the other network reaches neither c1 directly nor through its
    // gateway. (A host that routes would route between the gateways, as it
    // would between docker0-like bridges: see docs/docker.md.)
    assert!(!env.ping(&c3, &ip1), "c3 on another network reached c1");
    // L2 isolation: c3, on the other network, takes an address in app's
    // subnet; its ARP requests never reach app, so the ping fails, and its
    // MAC is never learned in app's FDB.
    env.docker(&[
        "exec",
        &c3,
        "ip",
        "addr",
        "add",
        "10.88.0.99/24",
        "dev",
        "eth0",
    ]);
    assert!(
        !env.ping(&c3, &ip1),
        "a container on another network reached c1"
    );
    let mac3 = env.docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}",
        &c3,
    ]);
    let fdb = env.daemon.json(&["fdb", "show", "--network", &vx_app]);
    assert!(
        !fdb.to_string().contains(&mac3),
        "c3's MAC learned in app: {fdb}"
    );
    let stats = env.daemon.json(&["stats"]);
    let p3 = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["mac"] == mac3.as_str())
        .expect("c3's port");
    let rx3 = support::find_port(&stats, p3["name"].as_str().unwrap())["rx_frames"]
        .as_u64()
        .unwrap();
    assert!(rx3 > 0, "c3's ARP requests reached the switch: {stats}");
}

#[test]
fn gateway_option_switch_answers_and_none_gives_no_default_route() {
    let Some(_one) = ready(&[]) else {
        return;
    };
    let env = Env::start();
    let sw = unique("sw");
    let none = unique("none");
    env.network(&sw, "10.91.0.0/24", &["-o", "vxswitch.gateway=switch"]);
    env.network(&none, "10.92.0.0/24", &["-o", "vxswitch.gateway=none"]);
    let (a, b) = (unique("a-"), unique("b-"));
    env.container(&a, &sw, &[]);
    env.container(&b, &none, &[]);
    // The switch itself answers ARP and ping for 10.91.0.1.
    assert!(env.ping_within(&a, "10.91.0.1"), "switch gateway answers");
    let routes = env.docker(&["exec", &a, "ip", "route"]);
    assert!(routes.contains("default via 10.91.0.1"), "{routes}");
    // none: no default route at all (and no docker_gwbridge either).
    let routes = env.docker(&["exec", &b, "ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    assert!(
        !env.ping(&b, "10.92.0.1"),
        "nobody answers with gateway none"
    );
    // --internal: no way out, so by default no gateway either.
    let internal = unique("int");
    env.network(&internal, "10.94.0.0/24", &["--internal"]);
    let c = unique("c-");
    env.container(&c, &internal, &[]);
    let routes = env.docker(&["exec", &c, "ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    let nets = env.docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!nets.contains("docker_gwbridge"), "{nets}");
    // -o vxswitch.backend=veth: the containers get veths (docs/veth.md).
    let veth = unique("veth");
    let veth_id = env.network(
        &veth,
        "10.95.0.0/24",
        &[
            "-o",
            "vxswitch.backend=veth",
            "-o",
            "vxswitch.gateway=switch",
        ],
    );
    let (v1, v2) = (unique("v1-"), unique("v2-"));
    env.container(&v1, &veth, &[]);
    env.container(&v2, &veth, &[]);
    let ip2 = env.ip_of(&v2);
    assert!(
        env.ping_within(&v1, &ip2),
        "veth container -> veth container"
    );
    assert!(
        env.ping(&v2, "10.95.0.1"),
        "veth container -> switch gateway"
    );
    // A veth's iflink is its peer's index; a TAP's is its own.
    let sys = |f: &str| env.docker(&["exec", &v1, "cat", &format!("/sys/class/net/eth0/{f}")]);
    assert_ne!(sys("iflink"), sys("ifindex"), "eth0 of {v1} is no veth");
    let vx = format!("docker-{}", &veth_id[..12]);
    let ports = env.daemon.json(&["port", "ls"]);
    let backends: Vec<_> = ports
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["network"] == vx.as_str() && p["gateway"] != true)
        .map(|p| p["backend"].clone())
        .collect();
    assert_eq!(backends, ["veth", "veth"], "{ports}");
}

#[test]
fn network_rm_leaves_no_tap_and_no_fdb_entry_and_the_plugin_restarts() {
    let Some(_one) = ready(&["ip"]) else {
        return;
    };
    let mut env = Env::start();
    let app = unique("app");
    let app_id = env.network(&app, "10.90.0.0/24", &["-o", "vxswitch.mtu=1400"]);
    let vx_app = format!("docker-{}", &app_id[..12]);
    let nets = env.daemon.json(&["network", "ls"]);
    let rec = nets
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == vx_app.as_str())
        .unwrap_or_else(|| panic!("no vxswitch network {vx_app}: {nets}"));
    assert_eq!(
        rec["mtu"], 1400,
        "-o vxswitch.mtu reached the daemon: {rec}"
    );
    let (c1, c2) = (unique("c1-"), unique("c2-"));
    env.container(&c1, &app, &[]);
    env.container(&c2, &app, &[]);
    let ip2 = env.ip_of(&c2);
    assert!(env.ping_within(&c1, &ip2));
    let mtu = env.docker(&["exec", &c1, "cat", "/sys/class/net/eth0/mtu"]);
    assert_eq!(mtu, "1400", "the container's eth0 has the network's MTU");

    // The plugin keeps no state: a new one answers for the old network.
    // This one cannot ask dockerd for container names (no such socket):
    // containers work all the same, without a label.
    env.stop_plugin();
    assert!(env.ping(&c1, &ip2), "traffic does not need the plugin");
    env.names_from = env.root.0.join("no-such-docker.sock");
    env.start_plugin();
    let (c3, c4) = (unique("c3-"), unique("c4-"));
    env.container(&c3, &app, &[]);
    assert!(
        env.ping_within(&c3, &ip2),
        "a container started after the plugin restart"
    );
    env.container(&c4, &app, &[]);
    assert!(env.ping_within(&c4, &ip2), "and another one");
    let cannot = "cannot ask dockerd for container names";
    assert!(
        wait_until(Duration::from_secs(10), || env
            .plugin_log()
            .contains(cannot)),
        "{}",
        env.plugin_log()
    );
    let mac3 = env.docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}",
        &c3,
    ]);
    let ports = env.daemon.json(&["port", "ls"]);
    let p3 = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["mac"] == mac3.as_str())
        .unwrap_or_else(|| panic!("no port with c3's MAC {mac3}: {ports}"));
    assert!(p3.get("container").is_none(), "{p3}");

    // A published port is refused with a message saying why.
    let out = env.docker_raw(&[
        "run",
        "--rm",
        "--network",
        &app,
        "-p",
        "8080:80",
        &env.image,
        "true",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vxswitch networks do not publish ports (-p/--publish)"),
        "{err}"
    );

    // An unknown option names the known ones.
    let out = env.docker_raw(&[
        "network",
        "create",
        "-d",
        &env.driver,
        "-o",
        "vni=5",
        &unique("bad"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "unknown option vni for the vxswitch network driver; known options: vxswitch.vni"
        ),
        "{err}"
    );

    assert!(!env
        .daemon
        .json(&["fdb", "show"])
        .as_array()
        .unwrap()
        .is_empty());
    // Every interface vxswitch made for this network: its ports' TAPs and
    // the host gateway port.
    let mut made = names(&env.daemon.json(&["port", "ls"]));
    made.push(format!("vxgw-{}", &app_id[..10]));
    // One line for dockerd being out of reach, not one per endpoint.
    assert_eq!(
        env.plugin_log().matches(cannot).count(),
        1,
        "{}",
        env.plugin_log()
    );
    env.docker(&["rm", "-f", &c1, &c2, &c3, &c4]);
    env.docker(&["network", "rm", &app]);
    let nets = env.daemon.json(&["network", "ls"]);
    assert!(!nets.to_string().contains(&vx_app), "{nets}");
    assert_eq!(env.daemon.json(&["port", "ls"]), serde_json::json!([]));
    assert_eq!(env.daemon.json(&["fdb", "show"]), serde_json::json!([]));
    assert_eq!(
        env.host_links_among(&made),
        Vec::<String>::new(),
        "interfaces left on the host"
    );
}

#[test]
fn after_a_daemon_restart_restarted_containers_are_reconnected() {
    let Some(_one) = ready(&[]) else {
        return;
    };
    let mut env = Env::start();
    let app = unique("app");
    env.network(&app, "10.93.0.0/24", &[]);
    let (c1, c2) = (unique("c1-"), unique("c2-"));
    env.container(&c1, &app, &[]);
    env.container(&c2, &app, &[]);
    let ip2 = env.ip_of(&c2);
    assert!(env.ping_within(&c1, &ip2));

    // The daemon stops: the TAPs it created go with it, the containers'
    // eth0 included. Docker still lists them on the network.
    env.stop_plugin();
    assert!(env.daemon.terminate().success(), "{}", env.daemon.log());
    let links = env.docker(&["exec", &c1, "ip", "-o", "link"]);
    assert!(!links.contains("eth0"), "eth0 outlived the daemon: {links}");

    // A new daemon has no networks; the plugin makes the network again
    // from its record when Docker attaches the restarted containers.
    env.daemon = Daemon::start(&[]);
    env.start_plugin();
    env.docker(&["restart", "-t", "1", &c1, &c2]);
    let ip2 = env.ip_of(&c2);
    assert!(
        env.ping_within(&c1, &ip2),
        "reconnected after docker restart"
    );
    assert!(env.ping(&c1, "10.93.0.1"), "the gateway port came back too");
    // The new ports are labelled with the containers' names again.
    let labelled = || {
        let ports = env.daemon.json(&["port", "ls"]);
        let mut l: Vec<String> = ports
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["container"].as_str().map(String::from))
            .collect();
        l.sort();
        l
    };
    let mut want = vec![c1.clone(), c2.clone()];
    want.sort();
    assert!(
        wait_until(Duration::from_secs(10), || labelled() == want),
        "{:?}\n{}",
        labelled(),
        env.plugin_log()
    );
}

#[test]
fn with_a_state_dir_containers_keep_their_network_over_a_daemon_restart() {
    let Some(_one) = ready(&["ip"]) else {
        return;
    };
    // Declared before the Env: dropped after Docker's clean-up.
    let mut taps = PersistentTaps(Vec::new());
    let mut env = Env::start();
    // The same environment with a daemon that keeps its state.
    let state = TempDir::new("vxsw-dstate-");
    env.stop_plugin();
    env.daemon = Daemon::start_with_state(&state.0, &[]);
    env.start_plugin();
    let app = unique("app");
    env.network(&app, "10.94.0.0/24", &[]);
    let (c1, c2) = (unique("c1-"), unique("c2-"));
    env.container(&c1, &app, &[]);
    env.container(&c2, &app, &[]);
    let ip2 = env.ip_of(&c2);
    assert!(env.ping_within(&c1, &ip2));
    let before = names(&env.daemon.json(&["port", "ls"]));
    // Should this test fail while no daemon runs, Docker moves the
    // persistent TAPs back to this namespace as it removes the containers,
    // and nothing would delete them: the guard does (by MAC, ours only).
    taps.0 = env
        .daemon
        .json(&["port", "ls"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["mac"].as_str().map(str::to_string))
        .collect();

    // The daemon stops: the containers keep their eth0 (persistent TAPs).
    env.stop_plugin();
    assert!(env.daemon.terminate().success(), "{}", env.daemon.log());
    let links = env.docker(&["exec", &c1, "ip", "-o", "link"]);
    assert!(links.contains("eth0"), "eth0 went with the daemon: {links}");

    // A new daemon re-attaches them where Docker moved them: the running
    // containers talk again without being restarted.
    env.daemon = Daemon::start_with_state(&state.0, &[]);
    env.start_plugin();
    assert_eq!(
        names(&env.daemon.json(&["port", "ls"])),
        before,
        "{}",
        env.daemon.log()
    );
    assert!(
        env.ping_within(&c1, &ip2),
        "no ping after the restart\n{}",
        env.daemon.log()
    );
    assert!(env.ping(&c1, "10.94.0.1"), "the gateway port came back too");
    // Docker can still take them down: the TAPs go with the containers.
    env.docker(&["rm", "-f", &c1, &c2]);
    env.docker(&["network", "rm", &app]);
    assert!(
        wait_until(Duration::from_secs(10), || env
            .daemon
            .json(&["port", "ls"])
            .as_array()
            .is_some_and(Vec::is_empty)),
        "{}",
        env.daemon.log()
    );
}

/// Deletes, on drop, persistent TAPs with these MACs left in this
/// namespace (declare it before the `Env`, so it runs after Docker's
/// clean-up).
struct PersistentTaps(Vec<String>);

impl Drop for PersistentTaps {
    fn drop(&mut self) {
        // Unchecked: a panic here, during another one, would abort.
        let out = match Command::new("ip")
            .args(["-d", "-o", "link", "show"])
            .output()
        {
            Ok(out) => out,
            Err(e) => {
                eprintln!("clean-up: cannot run ip: {e}");
                return;
            }
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let persistent = line.contains("persist on");
            let ours = self
                .0
                .iter()
                .any(|m| line.contains(&format!("link/ether {m} ")));
            if let (true, true, Some(name)) = (persistent, ours, line.split(": ").nth(1)) {
                let name = name.split('@').next().unwrap_or(name);
                eprintln!("removing persistent TAP {name} left by a failed test");
                support::run_for_cleanup("ip", &["link", "del", name]);
            }
        }
    }
}

/// Two Docker hosts: namespaces hA and hB joined by a veth underlay
/// (198.18.X.1 and 198.18.X.2), each running an Env (vxswitch daemon,
/// plugin, dockerd) of its own.
struct TwoHosts {
    // Declared first: the Envs (containers, networks, dockerds, plugins,
    // daemons) go before the namespaces they run in.
    a: Env,
    b: Env,
    a_ip: String,
    b_ip: String,
    _ha: Netns,
    _hb: Netns,
}

impl TwoHosts {
    fn start(x: u8) -> TwoHosts {
        let (ha, hb) = (Netns::new("dkha"), Netns::new("dkhb"));
        const UL: &str = "ul0";
        run(
            "ip",
            &[
                "-n", &ha.name, "link", "add", UL, "type", "veth", "peer", "name", UL, "netns",
                &hb.name,
            ],
        );
        let (a_ip, b_ip) = (format!("198.18.{x}.1"), format!("198.18.{x}.2"));
        for (ns, ip) in [(&ha, &a_ip), (&hb, &b_ip)] {
            let cidr = format!("{ip}/24");
            run("ip", &["-n", &ns.name, "addr", "add", &cidr, "dev", UL]);
            run("ip", &["-n", &ns.name, "link", "set", UL, "up"]);
        }
        assert!(
            ha.ping_within(&b_ip, Duration::from_secs(5)),
            "the underlay itself does not work: {} cannot ping {b_ip}",
            ha.name
        );
        // Both hosts start at once (dockerd and the image build take a few
        // seconds each); a panic in either still drops the other's Env.
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| Env::start_in(Some(&ha)));
            let b = s.spawn(|| Env::start_in(Some(&hb)));
            (a.join(), b.join())
        });
        let (a, b) = match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => std::panic::resume_unwind(e),
        };
        TwoHosts {
            a,
            b,
            a_ip,
            b_ip,
            _ha: ha,
            _hb: hb,
        }
    }
}

/// The vxswitch network the plugin made for Docker network `id`.
fn vx_name(id: &str) -> String {
    format!("docker-{}", &id[..12])
}

/// The counters of `network`'s VTEP `addr` in `stats --json`.
fn vtep_stats(env: &Env, network: &str, addr: &str) -> (u64, u64) {
    let stats = env.daemon.json(&["stats"]);
    let v = stats["vteps"]
        .as_array()
        .unwrap_or_else(|| panic!("stats --json has no vteps list: {stats}"))
        .iter()
        .find(|v| v["network"] == network && v["addr"] == addr)
        .unwrap_or_else(|| panic!("no VTEP {addr} of {network} in {stats}"));
    let n = |k: &str| v["stats"][k].as_u64().unwrap();
    (n("tx_frames"), n("rx_frames"))
}

/// A byte-exact TCP transfer of `kib` KiB of random bytes from `server`
/// (at `ip`) to `client`, with busybox nc: the server's nc runs `cat FILE`
/// on the connection, the client's `cat > FILE`; their md5 sums must agree.
fn transfer_exactly(server: (&Env, &str), ip: &str, client: (&Env, &str), kib: u32) {
    let ((senv, s), (cenv, c)) = (server, client);
    let sum = |out: String| {
        out.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let want = sum(senv.docker(&[
        "exec",
        s,
        "sh",
        "-c",
        &format!(
            "mkdir -p /tmp && dd if=/dev/urandom of=/tmp/out bs=1024 count={kib} 2>/dev/null && md5sum /tmp/out"
        ),
    ]));
    senv.docker(&[
        "exec", "-d", s, "nc", "-l", "-p", "5001", "-e", "cat", "/tmp/out",
    ]);
    assert!(
        wait_until(Duration::from_secs(5), || senv
            .docker(&["exec", s, "netstat", "-ltn"])
            .contains(":5001 ")),
        "nc does not listen in {s}"
    );
    let got = sum(cenv.docker(&[
        "exec",
        c,
        "sh",
        "-c",
        &format!("mkdir -p /tmp && timeout 20 nc -w 5 {ip} 5001 -e sh -c 'cat > /tmp/in' && md5sum /tmp/in"),
    ]));
    assert_eq!(
        got, want,
        "{c} received other bytes than {s} sent ({kib} KiB)"
    );
}

#[test]
fn two_docker_hosts_share_a_network_over_vxswitch_vxlan() {
    let Some(_one) = ready(&["ip", "ping", "nsenter"]) else {
        return;
    };
    let hosts = TwoHosts::start(47);
    let (a, b) = (&hosts.a, &hosts.b);
    let a_vtep = format!("{}:4789", hosts.a_ip);
    let b_vtep = format!("{}:4789", hosts.b_ip);

    // What a user runs on each host: the same network, the other host as
    // VTEP, half of the subnet for each host's IPAM, and one gateway (the
    // switch on host A answers for 10.95.0.1; none on host B).
    let create = |env: &Env, name: &str, vni: &str, peer: &str, net: &str, half: &str, gw: &str| {
        env.network(
            name,
            &format!("{net}.0/24"),
            &[
                "-o",
                &format!("vxswitch.vni={vni}"),
                "-o",
                &format!("vxswitch.vteps={peer}"),
                "--ip-range",
                &format!("{net}.{half}/25"),
                "--gateway",
                &format!("{net}.1"),
                "-o",
                &format!("vxswitch.gateway={gw}"),
            ],
        )
    };
    let app = unique("ovl");
    let app_a = create(a, &app, "4701", &hosts.b_ip, "10.95.0", "0", "switch");
    let app_b = create(b, &app, "4701", &hosts.a_ip, "10.95.0", "128", "none");
    let (vx_a, vx_b) = (vx_name(&app_a), vx_name(&app_b));

    let (ca, cb) = ("web".to_string(), "db".to_string());
    a.container(&ca, &app, &[]);
    b.container(&cb, &app, &[]);
    let (ip_a, ip_b) = (a.ip_of(&ca), b.ip_of(&cb));
    let last = |ip: &str| -> u8 { ip.rsplit('.').next().unwrap().parse().unwrap() };
    assert!(
        ip_a.starts_with("10.95.0.") && last(&ip_a) < 128,
        "host A's container outside A's --ip-range: {ip_a}"
    );
    assert!(
        ip_b.starts_with("10.95.0.") && last(&ip_b) >= 128,
        "host B's container outside B's --ip-range: {ip_b}"
    );

    // Host A's switch is the gateway; host B's containers get no default
    // route (its network has gateway none) but reach 10.95.0.1 on-link.
    let routes = a.docker(&["exec", &ca, "ip", "route"]);
    assert!(routes.contains("default via 10.95.0.1"), "{routes}");
    let routes = b.docker(&["exec", &cb, "ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    // A VXLAN network's ports get the underlay MTU less 50 bytes of VXLAN
    // headers: the containers' eth0 too.
    for (env, c) in [(a, &ca), (b, &cb)] {
        let mtu = env.docker(&["exec", c, "cat", "/sys/class/net/eth0/mtu"]);
        assert_eq!(mtu, "1450", "{c}'s eth0 over a 1500-byte underlay");
    }

    // Across the underlay, both ways.
    assert!(
        wait_until(Duration::from_secs(10), || a.ping(&ca, &ip_b)),
        "{ca} on host A cannot ping {cb} ({ip_b}) on host B\nA's daemon:\n{}\nB's daemon:\n{}",
        a.daemon.log(),
        b.daemon.log()
    );
    assert!(
        b.ping(&cb, &ip_a),
        "{cb} on host B cannot ping {ca} ({ip_a})"
    );
    // Fragmented 4000-byte pings (the ports' MTU is 1450 over VXLAN).
    for (env, c, to) in [(a, &ca, &ip_b), (b, &cb, &ip_a)] {
        let out = env.docker_raw(&["exec", c, "ping", "-c", "3", "-s", "4000", "-W", "2", to]);
        assert!(
            out.status.success(),
            "{c}: 4000-byte pings to {to} lost: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // Host B's container reaches the gateway that host A's switch answers.
    assert!(
        b.ping(&cb, "10.95.0.1"),
        "{cb} on host B cannot reach the gateway on host A"
    );

    // Byte-exact TCP transfers, 512 KiB each way.
    transfer_exactly((a, &ca), &ip_a, (b, &cb), 512);
    transfer_exactly((b, &cb), &ip_b, (a, &ca), 512);

    // The frames went through each daemon's VTEP of the other host.
    let (tx_a, rx_a) = vtep_stats(a, &vx_a, &b_vtep);
    let (tx_b, rx_b) = vtep_stats(b, &vx_b, &a_vtep);
    assert!(
        tx_a > 300 && rx_a > 300 && tx_b > 300 && rx_b > 300,
        "VTEP counters: A tx {tx_a} rx {rx_a}, B tx {tx_b} rx {rx_b}"
    );

    // A second network, VNI 4702, on both hosts: its containers talk
    // across hosts, but not to the first network's.
    let other = unique("ovl");
    let other_a = create(a, &other, "4702", &hosts.b_ip, "10.96.0", "0", "switch");
    create(b, &other, "4702", &hosts.a_ip, "10.96.0", "128", "none");
    let (oa, ob) = (unique("oa-"), unique("ob-"));
    a.container(&oa, &other, &[]);
    // NET_ADMIN: ob gives itself an address in app's subnet below.
    b.container(&ob, &other, &["--cap-add", "NET_ADMIN"]);
    let ip_oa = a.ip_of(&oa);
    assert!(
        wait_until(Duration::from_secs(10), || b.ping(&ob, &ip_oa)),
        "{ob} on host B cannot ping {oa} ({ip_oa}) on its own network"
    );
    let (_, rx_other) = vtep_stats(a, &vx_name(&other_a), &b_vtep);
    // ob takes an address in app's subnet: its ARP requests cross the
    // underlay in VNI 4702 and never reach app's containers on either host.
    b.docker(&[
        "exec",
        &ob,
        "ip",
        "addr",
        "add",
        "10.95.0.250/24",
        "dev",
        "eth0",
    ]);
    for to in [&ip_a, &ip_b] {
        assert!(
            !b.ping(&ob, to),
            "{ob} on network {other} reached {to} on network {app}"
        );
    }
    let mac_ob = b.docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}",
        &ob,
    ]);
    for (env, vx) in [(a, &vx_a), (b, &vx_b)] {
        let fdb = env.daemon.json(&["fdb", "show", "--network", vx]);
        assert!(
            !fdb.to_string().contains(&mac_ob),
            "{ob}'s MAC {mac_ob} learned in {vx}: {fdb}"
        );
    }
    let (_, rx_other_after) = vtep_stats(a, &vx_name(&other_a), &b_vtep);
    assert!(
        rx_other_after > rx_other,
        "ob's ARP requests did not reach host A in VNI 4702 ({rx_other} -> {rx_other_after})"
    );
}
