//! [`Netns`]: a network namespace made for one test, and what tests do in
//! one: run commands, read counters, set sysctls, tag its traffic.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use super::{cannot_run, cmd, run, run_for_cleanup, run_raw, unique, wait_until, Proc};

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
    /// `(protocol, ifindex)` of each packet socket in the namespace
    /// (`/proc/net/packet`; protocol as the kernel prints it: `0003` for
    /// every protocol, `0000` a socket that only sends). Runs: cat.
    pub fn packet_sockets(&self) -> Vec<(String, String)> {
        let out = self.exec("cat", &["/proc/net/packet"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 4).then(|| (f[3].to_string(), f[4].to_string()))
            })
            .collect()
    }

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
