//! The CNI plugin as runtimes use it: `vxswitch` exec'd under the name
//! `vxswitch-cni` with the CNI_* environment and a configuration on stdin,
//! addresses from the reference host-local IPAM plugin; then podman with
//! its CNI backend running two busybox containers on a vxswitch network.
//!
//! Needs root and, from Debian, containernetworking-plugins (host-local in
//! /usr/lib/cni), podman and busybox-static.

mod support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use support::{can_run_with, run_raw, unique, wait_until, Daemon, Netns, TempDir, BIN};

const HOST_LOCAL: &str = "/usr/lib/cni/host-local";
const CNI_PATH: &str = "/usr/lib/cni";

/// A directory holding the plugin as runtimes find it: `vxswitch-cni`, a
/// symlink to the vxswitch binary.
struct PluginDir {
    dir: TempDir,
}

impl PluginDir {
    fn new() -> PluginDir {
        let dir = TempDir::new("vxcni-bin-");
        std::os::unix::fs::symlink(BIN, dir.0.join("vxswitch-cni")).unwrap();
        PluginDir { dir }
    }

    fn plugin(&self) -> PathBuf {
        self.dir.0.join("vxswitch-cni")
    }
}

/// What one plugin run printed.
struct Outcome {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("plugin printed no JSON ({e}): {:?}", self.stdout))
    }

    /// Asserts a CNI error object with `code` whose msg contains `msg`.
    fn error(&self, code: u64, msg: &str) -> Value {
        assert!(
            !self.ok,
            "expected CNI error {code}, got success: {}",
            self.stdout
        );
        let v = self.json();
        assert_eq!(
            v["code"], code,
            "wrong code in {v}; stderr: {}",
            self.stderr
        );
        let text = v["msg"].as_str().unwrap_or_default();
        assert!(text.contains(msg), "msg {text:?} lacks {msg:?}");
        assert!(v["cniVersion"].is_string(), "{v}");
        v
    }

    fn success(&self) -> &Self {
        assert!(self.ok, "plugin failed: {}{}", self.stdout, self.stderr);
        self
    }
}

/// Runs the plugin with CNI_COMMAND=`cmd`, `env` on top of CNI_PATH, and
/// `conf` on stdin.
fn cni(plugin: &Path, cmd: &str, env: &[(&str, &str)], conf: &str) -> Outcome {
    let out = support::cni_exec(plugin, CNI_PATH, cmd, env, conf);
    Outcome {
        ok: out.ok,
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// A container's CNI environment.
fn container<'a>(id: &'a str, netns: &'a str, pod: &'a str) -> Vec<(&'a str, String)> {
    vec![
        ("CNI_CONTAINERID", id.to_string()),
        ("CNI_NETNS", netns.to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_ARGS", format!("IgnoreUnknown=1;K8S_POD_NAME={pod}")),
    ]
}

fn env_ref<'a>(v: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    v.iter().map(|(k, s)| (*k, s.as_str())).collect()
}

/// A plugin configuration for CNI network `name` with host-local IPAM in
/// `subnet` (leases under `data_dir`).
fn conf(
    version: &str,
    name: &str,
    socket: &Path,
    subnet: &str,
    gateway: &str,
    data_dir: &Path,
) -> Value {
    json!({
        "cniVersion": version,
        "name": name,
        "type": "vxswitch-cni",
        "socket": socket,
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir,
            "ranges": [[{"subnet": subnet, "gateway": gateway}]],
            "routes": [{"dst": "0.0.0.0/0"}]
        }
    })
}

fn with_prev(conf: &Value, prev: &Value) -> String {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c.to_string()
}

/// The addresses host-local holds leases for in `data_dir` (one file per
/// address, named after it).
fn leases(data_dir: &Path, network: &str) -> Vec<IpAddr> {
    let Ok(dir) = std::fs::read_dir(data_dir.join(network)) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn port_by_container(d: &Daemon, label: &str) -> Option<Value> {
    let ls = d.json(&["port", "ls"]);
    ls.as_array()?
        .iter()
        .find(|p| p["container"] == label)
        .cloned()
}

#[test]
fn plugin_add_check_del_connects_two_namespaces() {
    if !can_run_with(&["ip", "ping"], &[HOST_LOCAL]) {
        return;
    }
    let bin = PluginDir::new();
    let plugin = bin.plugin();
    let d = Daemon::start(&[]);
    let net = unique("cnired");
    d.cli(&[
        "network",
        "create",
        &net,
        "--subnet",
        "10.83.0.0/24",
        "--gateway",
        "10.83.0.1",
        "--gateway-port",
        "none",
    ]);
    let data = TempDir::new("vxcni-ipam-");
    let c = conf(
        "1.0.0",
        &net,
        &d.socket,
        "10.83.0.0/24",
        "10.83.0.1",
        &data.0,
    );
    let (ns1, ns2) = (Netns::new("vxc"), Netns::new("vxc"));
    let (id1, id2) = (unique("cid-a-"), unique("cid-b-"));
    let (p1, p2) = (ns1.path(), ns2.path());
    let e1 = container(&id1, &p1, "pod-a");
    let e2 = container(&id2, &p2, "pod-b");

    let v = cni(&plugin, "VERSION", &[], r#"{"cniVersion":"1.0.0"}"#);
    let supported = v.success().json()["supportedVersions"].clone();
    assert!(
        supported.as_array().unwrap().contains(&json!("1.0.0"))
            && supported.as_array().unwrap().contains(&json!("0.4.0")),
        "{supported}"
    );

    let r1 = cni(&plugin, "ADD", &env_ref(&e1), &c.to_string());
    let r1 = r1.success().json();
    assert_eq!(r1["cniVersion"], "1.0.0");
    assert_eq!(r1["interfaces"][0]["name"], "eth0");
    assert_eq!(r1["interfaces"][0]["sandbox"], p1.as_str());
    assert_eq!(r1["ips"][0]["gateway"], "10.83.0.1");
    assert_eq!(r1["ips"][0]["interface"], 0);
    assert!(
        r1["ips"][0].get("version").is_none(),
        "1.0.0 has no version: {r1}"
    );
    assert_eq!(
        r1["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.83.0.1"}])
    );
    let r2 = cni(&plugin, "ADD", &env_ref(&e2), &c.to_string());
    let r2 = r2.success().json();
    let ip2 = r2["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(ip2.starts_with("10.83.0."), "{r2}");

    // What the result says is what the container has.
    let mac1 = r1["interfaces"][0]["mac"].as_str().unwrap();
    let link = run_raw("ip", &["-n", &ns1.name, "-j", "addr", "show", "eth0"]);
    let link: Value = serde_json::from_slice(&link.stdout).unwrap();
    assert_eq!(link[0]["address"], mac1, "{link}");
    assert!(
        ns1.ping_within(&ip2, Duration::from_secs(10)),
        "pod-a cannot ping pod-b at {ip2} through vxswitch"
    );
    // `port ls` names the pods.
    let port1 = port_by_container(&d, "pod-a").expect("port ls shows pod-a");
    assert_eq!(port1["network"], net.as_str());
    assert_eq!(port1["mac"], mac1);
    assert!(
        port1["name"].as_str().unwrap().starts_with("cni-"),
        "{port1}"
    );
    assert_eq!(leases(&data.0, &net).len(), 2);
    // A second ADD without DEL is refused before IPAM is asked, so the
    // port keeps its address and the lease stays.
    cni(&plugin, "ADD", &env_ref(&e1), &c.to_string()).error(100, "already exists");
    assert_eq!(leases(&data.0, &net).len(), 2);
    assert!(ns1.ping_within(&ip2, Duration::from_secs(5)));

    cni(&plugin, "CHECK", &env_ref(&e1), &with_prev(&c, &r1)).success();
    assert!(cni(&plugin, "CHECK", &env_ref(&e1), &with_prev(&c, &r1))
        .stdout
        .is_empty());
    // CHECK notices a port that is not what ADD reported.
    let mut wrong = r1.clone();
    wrong["interfaces"][0]["mac"] = json!("02:00:00:00:00:99");
    cni(&plugin, "CHECK", &env_ref(&e1), &with_prev(&c, &wrong)).error(101, "has MAC");

    // DEL with prevResult, then again without: both succeed.
    cni(&plugin, "DEL", &env_ref(&e1), &with_prev(&c, &r1)).success();
    assert!(
        port_by_container(&d, "pod-a").is_none(),
        "port of pod-a left"
    );
    assert!(
        !support::link_names(&ns1.name).contains(&"eth0".to_string()),
        "eth0 left in the namespace"
    );
    assert_eq!(leases(&data.0, &net).len(), 1, "pod-a's lease not released");
    cni(&plugin, "DEL", &env_ref(&e1), &c.to_string()).success();
    cni(&plugin, "CHECK", &env_ref(&e1), &with_prev(&c, &r1)).error(101, "has no port");

    // A 0.4.0 configuration gets a 0.4.0 result (IP version fields).
    let c04 = conf(
        "0.4.0",
        &net,
        &d.socket,
        "10.83.0.0/24",
        "10.83.0.1",
        &data.0,
    );
    let r = cni(&plugin, "ADD", &env_ref(&e1), &c04.to_string());
    let r = r.success().json();
    assert_eq!(
        (&r["cniVersion"], &r["ips"][0]["version"]),
        (&json!("0.4.0"), &json!("4"))
    );
    cni(&plugin, "CHECK", &env_ref(&e1), &with_prev(&c04, &r)).success();
    assert!(ns1.ping_within(&ip2, Duration::from_secs(10)));
    cni(&plugin, "DEL", &env_ref(&e1), &c04.to_string()).success();

    // "backend": "veth": the pod gets a veth, and DEL deletes the pair.
    let mut cv = c.clone();
    cv["backend"] = json!("veth");
    let rv = cni(&plugin, "ADD", &env_ref(&e1), &cv.to_string());
    let rv = rv.success().json();
    let pv = port_by_container(&d, "pod-a").expect("port ls shows pod-a");
    assert_eq!(pv["backend"], "veth", "{pv}");
    let host_end = pv["host_ifname"].as_str().unwrap().to_string();
    let peer = run_raw("ip", &["-n", &ns1.name, "-j", "-d", "link", "show", "eth0"]);
    let peer: Value = serde_json::from_slice(&peer.stdout).unwrap();
    assert_eq!(peer[0]["linkinfo"]["info_kind"], "veth", "{peer}");
    assert_eq!(peer[0]["address"], rv["interfaces"][0]["mac"], "{peer}");
    assert!(
        ns1.ping_within(&ip2, Duration::from_secs(10)),
        "veth pod-a -> TAP pod-b"
    );
    cni(&plugin, "CHECK", &env_ref(&e1), &with_prev(&cv, &rv)).success();
    cni(&plugin, "DEL", &env_ref(&e1), &cv.to_string()).success();
    assert!(
        !run_raw("ip", &["link", "show", "dev", &host_end])
            .status
            .success(),
        "DEL left the veth's host end {host_end}"
    );

    cni(&plugin, "DEL", &env_ref(&e2), &c.to_string()).success();
    assert_eq!(d.port_names(), Vec::<String>::new());
    assert_eq!(leases(&data.0, &net), Vec::<IpAddr>::new());
}

#[test]
fn plugin_errors_are_cni_errors_and_leave_nothing_behind() {
    if !can_run_with(&["ip"], &[HOST_LOCAL]) {
        return;
    }
    let bin = PluginDir::new();
    let plugin = bin.plugin();
    let d = Daemon::start(&[]);
    let net = unique("cnierr");
    d.cli(&[
        "network",
        "create",
        &net,
        "--subnet",
        "10.83.0.0/24",
        "--gateway",
        "10.83.0.1",
        "--gateway-port",
        "none",
    ]);
    let data = TempDir::new("vxcni-ipam-");
    let ns = Netns::new("vxc");
    let id = unique("cid-e-");
    let path = ns.path();
    let e = container(&id, &path, "pod-e");
    let env = env_ref(&e);
    let good = conf(
        "1.0.0",
        &net,
        &d.socket,
        "10.83.0.0/24",
        "10.83.0.1",
        &data.0,
    );
    let nothing_left = |what: &str| {
        assert_eq!(
            d.port_names(),
            Vec::<String>::new(),
            "{what}: a port was left"
        );
        assert_eq!(
            leases(&data.0, &net),
            Vec::<IpAddr>::new(),
            "{what}: a lease was left"
        );
        assert_eq!(
            support::link_names(&ns.name),
            vec!["lo".to_string()],
            "{what}: an interface was left"
        );
    };

    // No daemon at the configured socket: try again later, say what to do.
    let mut c = good.clone();
    let gone = data.0.join("no-daemon.sock");
    c["socket"] = json!(gone);
    let v = cni(&plugin, "ADD", &env, &c.to_string()).error(
        11,
        &format!("vxswitch daemon not reachable at {}", gone.display()),
    );
    assert!(
        v["msg"]
            .as_str()
            .unwrap()
            .contains("start it with `vxswitch daemon`"),
        "{v}"
    );
    nothing_left("no daemon");
    // DEL without a daemon succeeds: its ports went with it.
    cni(&plugin, "DEL", &env, &c.to_string()).success();

    // A vxswitch network that does not exist.
    let mut c = good.clone();
    c["network"] = json!("no-such-net");
    cni(&plugin, "ADD", &env, &c.to_string())
        .error(7, "vxswitch network \"no-such-net\" does not exist");
    nothing_left("unknown network");

    // Undecodable configuration, unsupported version, missing environment.
    cni(&plugin, "ADD", &env, "{\"cniVersion\": ").error(6, "not valid JSON");
    let mut c = good.clone();
    c["cniVersion"] = json!("0.2.0");
    cni(&plugin, "ADD", &env, &c.to_string()).error(1, "\"0.2.0\" is not supported");
    let no_netns: Vec<(&str, &str)> = env
        .iter()
        .copied()
        .filter(|(k, _)| *k != "CNI_NETNS")
        .collect();
    cni(&plugin, "ADD", &no_netns, &good.to_string()).error(4, "CNI_NETNS");
    nothing_left("bad input");

    // IPAM handed out an address, then the port failed: the lease goes back.
    let mut c = good.clone();
    c["ipam"]["ranges"] = json!([[{"subnet": "10.84.0.0/24", "gateway": "10.83.0.1"}]]);
    cni(&plugin, "ADD", &env, &c.to_string()).error(7, "outside subnet 10.83.0.0/24");
    assert_eq!(
        leases(&data.0, &net),
        Vec::<IpAddr>::new(),
        "lease of the refused port kept"
    );
    let missing_ns = container(&id, "/run/netns/vxcni-no-such-ns", "pod-e");
    cni(&plugin, "ADD", &env_ref(&missing_ns), &good.to_string())
        .error(100, "cannot enter network namespace");
    nothing_left("failed port");

    // And after all that, a good ADD works and DEL cleans it up.
    cni(&plugin, "ADD", &env, &good.to_string()).success();
    assert_eq!(leases(&data.0, &net).len(), 1);
    cni(&plugin, "DEL", &env, &good.to_string()).success();
    nothing_left("final DEL");
}

/// Podman's state, kept under a TempDir, and what it makes outside it
/// (cgroups, libcni's cache), removed on drop.
struct Podman {
    dir: TempDir,
    cgroup_parent: String,
    names: Vec<String>,
    cni_cache_existed: bool,
}

impl Podman {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        let d = &self.dir.0;
        let s = |p: &str| d.join(p).to_str().unwrap().to_string();
        let mut all: Vec<String> = vec!["60".into(), "podman".into()];
        all.extend([
            "--root".to_string(),
            s("root"),
            "--runroot".into(),
            s("runroot"),
            "--tmpdir".into(),
            s("tmp"),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "none".into(),
            // runc, not podman's default crun: crun refuses every container
            // on a host with a hybrid cgroup hierarchy ("cgroups in hybrid
            // mode not supported"); runc runs on both layouts.
            "--runtime".into(),
            "runc".into(),
            "--runtime-flag".into(),
            format!("root={}", s("runc")),
        ]);
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        support::cmd("timeout", &all)
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .output()
            .expect("run podman")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "`podman {}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for n in &self.names {
            let out = self.cmd(&["rm", "-f", "-t", "0", n]);
            if !out.status.success() {
                eprintln!(
                    "clean-up: podman rm {n}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        // cgroupfs leaves the parent (and conmon's) directories: remove
        // them in every v1 controller (and v2's unified tree), deepest first.
        if let Ok(ctrls) = std::fs::read_dir("/sys/fs/cgroup") {
            let mut dirs = Vec::new();
            for c in ctrls.flatten() {
                let top = c.path().join(self.cgroup_parent.trim_start_matches('/'));
                collect_dirs(&top, 0, &mut dirs);
            }
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in dirs {
                remove_empty_dir(&d);
            }
        }
        if !self.cni_cache_existed {
            remove_empty_dir(Path::new("/var/lib/cni/results"));
            remove_empty_dir(Path::new("/var/lib/cni"));
        }
    }
}

/// Removes `dir` if it is empty; a failure other than "gone already" or
/// "not empty" (someone else's files) is printed.
fn remove_empty_dir(dir: &Path) {
    use std::io::ErrorKind::{DirectoryNotEmpty, NotFound};
    match std::fs::remove_dir(dir) {
        Err(e) if !matches!(e.kind(), NotFound | DirectoryNotEmpty) => {
            eprintln!("clean-up: remove {}: {e}", dir.display())
        }
        _ => {}
    }
}

fn collect_dirs(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
    if depth > 4 || !dir.is_dir() {
        return;
    }
    out.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), depth + 1, out);
            }
        }
    }
}

/// A busybox root filesystem: the static binary and one relative symlink
/// per applet (absolute ones would point out of the container).
fn busybox_rootfs(root: &Path) {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in ["proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = support::which("busybox").unwrap();
    std::fs::copy(&busybox, bin.join("busybox")).unwrap();
    let list = support::run(busybox.to_str().unwrap(), &["--list"]);
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        match std::os::unix::fs::symlink("busybox", bin.join(applet)) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                panic!("symlink {applet} -> busybox: {e}")
            }
            _ => {}
        }
    }
}

/// The example conflist of docs/cni.md: its first JSON block with "plugins".
fn documented_conflist() -> Value {
    let doc = include_str!("../docs/cni.md");
    doc.split("```json")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter(|block| block.contains("\"plugins\""))
        .find_map(|block| serde_json::from_str(block).ok())
        .expect("docs/cni.md has a ```json block with a conflist")
}

#[test]
fn podman_containers_ping_through_vxswitch_and_rm_runs_del() {
    if !can_run_with(&["podman", "runc", "busybox", "timeout"], &[HOST_LOCAL]) {
        return;
    }
    // The conflist docs/cni.md shows, with this test's socket and a lease
    // directory of its own: the documented example is the tested one.
    let mut conflist = documented_conflist();
    let net = conflist["name"].as_str().unwrap().to_string();
    let range = conflist["plugins"][0]["ipam"]["ranges"][0][0].clone();
    let d = Daemon::start(&[]);
    d.cli(&[
        "network",
        "create",
        &net,
        "--subnet",
        range["subnet"].as_str().unwrap(),
        "--gateway",
        range["gateway"].as_str().unwrap(),
        "--gateway-port",
        "none",
    ]);
    let pm = Podman {
        dir: TempDir::new("vxcni-podman-"),
        cgroup_parent: format!("/{}", unique("vxcni-test-")),
        names: vec![unique("vxpm-a-"), unique("vxpm-b-")],
        cni_cache_existed: Path::new("/var/lib/cni").exists(),
    };
    let dir = &pm.dir.0;
    let bin = dir.join("bin");
    let netd = dir.join("net.d");
    let data = dir.join("ipam");
    for p in [&bin, &netd, &data] {
        std::fs::create_dir_all(p).unwrap();
    }
    std::os::unix::fs::symlink(BIN, bin.join("vxswitch-cni")).unwrap();
    conflist["plugins"][0]["socket"] = json!(d.socket);
    conflist["plugins"][0]["ipam"]["dataDir"] = json!(data);
    std::fs::write(netd.join(format!("{net}.conflist")), conflist.to_string()).unwrap();
    std::fs::write(
        dir.join("containers.conf"),
        format!(
            "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\", \"{CNI_PATH}\"]\n\
             network_config_dir = \"{}\"\n",
            bin.display(),
            netd.display()
        ),
    )
    .unwrap();
    let rootfs = dir.join("rootfs");
    busybox_rootfs(&rootfs);

    let listed = pm.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert!(
        listed.lines().any(|l| l == format!("{net} vxswitch-cni")),
        "podman does not list the vxswitch network: {listed}"
    );
    // The first container asks for its address and MAC, as a user would.
    for (i, name) in pm.names.iter().enumerate() {
        let fixed: &[&str] = if i == 0 {
            &["--ip", "10.66.0.50", "--mac-address", "02:00:5e:66:00:50"]
        } else {
            &[]
        };
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(fixed);
        args.extend_from_slice(&[
            "--network",
            &net,
            "--cgroup-parent",
            &pm.cgroup_parent,
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=4096:4096",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "/bin/sleep",
            "600",
        ]);
        pm.ok(&args);
    }
    // Podman passes the container name as K8S_POD_NAME: port ls shows it.
    let ports: Vec<Value> = pm
        .names
        .iter()
        .map(|n| port_by_container(&d, n).unwrap_or_else(|| panic!("no port for {n}")))
        .collect();
    assert_eq!(
        (&ports[0]["ip"], &ports[0]["mac"]),
        (&json!("10.66.0.50/24"), &json!("02:00:5e:66:00:50")),
        "--ip/--mac-address did not reach the port: {}",
        ports[0]
    );
    let ip_b = ports[1]["ip"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let inspected = pm.ok(&[
        "inspect",
        "--format",
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
        &pm.names[1],
    ]);
    assert_eq!(
        inspected.trim(),
        ip_b,
        "podman and vxswitch disagree on the address"
    );
    let pinged = wait_until(Duration::from_secs(15), || {
        pm.cmd(&["exec", &pm.names[0], "ping", "-c", "1", "-W", "1", &ip_b])
            .status
            .success()
    });
    assert!(
        pinged,
        "container {} cannot ping {} at {ip_b}",
        pm.names[0], pm.names[1]
    );
    let stats = d.json(&["stats"]);
    let rx = support::find_port(&stats, ports[1]["name"].as_str().unwrap())["rx_frames"].clone();
    assert!(
        rx.as_u64().unwrap_or(0) > 0,
        "no frames counted from the pinged container: {stats}"
    );

    // `podman rm` runs DEL: the port and the lease go.
    pm.ok(&["rm", "-f", "-t", "0", &pm.names[0]]);
    assert!(
        port_by_container(&d, &pm.names[0]).is_none(),
        "port left after podman rm"
    );
    assert!(port_by_container(&d, &pm.names[1]).is_some());
    assert_eq!(leases(&data, &net).len(), 1);
    pm.ok(&["rm", "-f", "-t", "0", &pm.names[1]]);
    assert_eq!(d.port_names(), Vec::<String>::new());
    assert_eq!(leases(&data, &net), Vec::<IpAddr>::new());
}

/// `vxswitch --socket SOCKET daemon --state-dir STATE`, with its log in a
/// directory of its own: unlike [`Daemon::start_with_state`], the socket is
/// the same from one start to the next, as the plugin's configuration
/// names it.
fn daemon_on(socket: &Path, state: &Path) -> Daemon {
    let dir = std::env::temp_dir().join(unique("vxsw-test-"));
    std::fs::create_dir_all(&dir).unwrap();
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let argv = [
        "--socket",
        socket.to_str().unwrap(),
        "daemon",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let child = support::cmd(BIN, &argv)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn vxswitch daemon");
    let mut d = Daemon {
        child,
        socket: socket.to_path_buf(),
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
fn del_while_the_daemon_is_down_never_lets_an_address_be_used_twice() {
    if !can_run_with(&["ip", "kill"], &[HOST_LOCAL]) {
        return;
    }
    let bin = PluginDir::new();
    let plugin = bin.plugin();
    let run_dir = TempDir::new("vxcni-run-");
    let socket = run_dir.0.join("vxswitch.sock");
    let state = TempDir::new("vxsw-state-");
    let data = TempDir::new("vxcni-ipam-");
    let net = unique("cnidown");
    // One address in the range: whoever gets it next gets exactly the one
    // the deleted container had.
    let c = json!({
        "cniVersion": "1.0.0", "name": net, "type": "vxswitch-cni", "socket": socket,
        "ipam": {"type": "host-local", "dataDir": data.0,
                 "ranges": [[{"subnet": "10.83.5.0/24", "rangeStart": "10.83.5.10",
                              "rangeEnd": "10.83.5.10"}]]}
    })
    .to_string();
    let (ns1, ns2) = (Netns::new("vxc"), Netns::new("vxc"));
    let (id1, id2) = (unique("cid-d-"), unique("cid-n-"));
    let (p1, p2) = (ns1.path(), ns2.path());
    let (e1, e2) = (
        container(&id1, &p1, "pod-gone"),
        container(&id2, &p2, "pod-new"),
    );

    let mut first = daemon_on(&socket, &state.0);
    first.cli(&["network", "create", &net, "--subnet", "10.83.5.0/24"]);
    let r = cni(&plugin, "ADD", &env_ref(&e1), &c);
    assert_eq!(r.success().json()["ips"][0]["address"], "10.83.5.10/24");
    assert!(first.terminate().success(), "{}", first.log());
    // The daemon left its TAP for the next start, and said where its
    // state is.
    assert!(support::link_names(&ns1.name).contains(&"eth0".to_string()));

    // The container goes while no daemon runs.
    cni(&plugin, "DEL", &env_ref(&e1), &c).success();
    assert_eq!(leases(&data.0, &net), Vec::<IpAddr>::new());

    // The next start does not bring the deleted port back...
    let second = daemon_on(&socket, &state.0);
    let gone = vxswitch::cni::port_name(&net, &id1, "eth0");
    assert!(
        !second.port_names().contains(&gone),
        "the deleted port came back:\n{}",
        second.log()
    );
    assert!(
        second.log().contains(&format!(
            "restore: port {gone} (network {net}) was deleted while the daemon was down"
        )),
        "{}",
        second.log()
    );
    assert!(
        !support::link_names(&ns1.name).contains(&"eth0".to_string()),
        "the deleted port's TAP is still in its namespace"
    );
    // ... so its address can go to the next container, once.
    let r = cni(&plugin, "ADD", &env_ref(&e2), &c);
    assert_eq!(r.success().json()["ips"][0]["address"], "10.83.5.10/24");
    let ls = second.json(&["port", "ls"]);
    let holders: Vec<&Value> = ls
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ip"] == "10.83.5.10/24")
        .collect();
    assert_eq!(holders.len(), 1, "10.83.5.10 is held twice: {ls}");
    let tombstones = state.0.join("deleted-ports");
    assert_eq!(
        std::fs::read_dir(&tombstones)
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "tombstones left in {}",
        tombstones.display()
    );
    cni(&plugin, "DEL", &env_ref(&e2), &c).success();
}

#[test]
fn plugin_status_and_gc_speak_cni_1_1() {
    if !can_run_with(&["ip"], &[]) {
        return;
    }
    let bin = PluginDir::new();
    let plugin = bin.plugin();
    let d = Daemon::start(&[]);
    let net = unique("cnigc");
    d.cli(&["network", "create", &net]);
    // Debian's host-local speaks CNI 1.0.0 at most: a 1.1.0 network here
    // has no ipam section, so its ports have no address.
    let c = json!({"cniVersion": "1.1.0", "name": net, "type": "vxswitch-cni", "socket": d.socket});
    let (ns1, ns2, ns3) = (Netns::new("vxc"), Netns::new("vxc"), Netns::new("vxc"));
    let (id1, id2) = (unique("cid-g-"), unique("cid-h-"));
    let (p1, p2) = (ns1.path(), ns2.path());
    let e1 = container(&id1, &p1, "pod-keep");
    let e2 = container(&id2, &p2, "pod-stale");

    cni(&plugin, "STATUS", &[], &c.to_string()).success();
    let r = cni(&plugin, "ADD", &env_ref(&e1), &c.to_string());
    assert_eq!(r.success().json()["ips"], json!([]));
    cni(&plugin, "ADD", &env_ref(&e2), &c.to_string()).success();
    // A port made by hand on the same network is not the plugin's to collect.
    d.cli(&[
        "port",
        "add",
        "by-hand",
        "--network",
        &net,
        "--netns",
        &ns3.path(),
    ]);

    cni(&plugin, "GC", &[], &c.to_string()).error(7, "cni.dev/valid-attachments");
    assert_eq!(d.port_names().len(), 3, "GC without a list removed ports");
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": id1, "ifname": "eth0"}]);
    cni(&plugin, "GC", &[], &gc.to_string()).success();
    assert!(
        port_by_container(&d, "pod-keep").is_some(),
        "GC removed a valid attachment"
    );
    assert!(
        port_by_container(&d, "pod-stale").is_none(),
        "GC kept a stale attachment"
    );
    assert!(
        d.port_names().contains(&"by-hand".to_string()),
        "GC removed a port it did not make"
    );

    // GC and STATUS are 1.1.0 commands.
    let mut old = c.clone();
    old["cniVersion"] = json!("1.0.0");
    cni(&plugin, "STATUS", &[], &old.to_string()).error(1, "STATUS needs CNI 1.1.0");

    let mut down = c.clone();
    down["socket"] = json!(d.dir.join("no-daemon.sock"));
    cni(&plugin, "STATUS", &[], &down.to_string()).error(50, "vxswitch daemon not reachable");
    cni(&plugin, "DEL", &env_ref(&e1), &c.to_string()).success();
}
