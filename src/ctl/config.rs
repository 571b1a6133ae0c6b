//! The daemon's TOML start-up configuration:
//!
//! ```toml
//! [fdb]
//! ageing_ms = 300000
//! max_entries = 65536
//! max_per_dest = 4096
//! max_per_network = 16384  # unless a network has its own (fdb_max_entries)
//!
//! [vxlan]
//! port = 4789
//! underlay_mtu = 1500
//! src_port_min = 49152
//! src_port_max = 65535
//! max_learned_vteps = 64
//! learned_vtep_ageing_ms = 300000  # an idle learned VTEP is removed
//!
//! [dataplane]
//! workers = 2              # threads; default one per CPU (--workers)
//! busy_poll = "auto"       # or microseconds; default 0, off (--busy-poll)
//! offload = true           # TAPs with virtio_net_hdr (--no-offload)
//! fastpath = "ebpf"        # eBPF fast path for veth ports; default off (--fastpath)
//! backend = "veth"         # containers' interfaces: tap (default) or veth (--backend)
//!
//! [state]
//! dir = "/var/lib/vxswitch" # keep ports over restarts (--state-dir)
//!
//! [[network]]
//! name = "red"
//! subnet = "10.77.0.0/24"
//! gateway = "10.77.0.1"
//! gateway_port = "host"    # or "switch"; default "none"
//! mtu = 1500
//!
//! [[network]]
//! name = "blue"
//! vni = 4242
//! vteps = ["198.18.0.2", "[fd00::2]:4789"]
//! learn_vteps = false
//!
//! [[port]]
//! name = "c1"
//! network = "red"
//! netns = "/run/netns/c1"
//! ip = "10.77.0.11/24"
//! ```
//!
//! `[[network]]` and `[[port]]` tables have exactly the fields of the
//! `network.create` and `port.add` requests and are applied through the
//! same code, in file order, so a config can do nothing a client could not
//! (a network's `vteps` are added right after it, as `vtep.add` would).
//! `[vxlan]` holds the daemon-wide VXLAN settings; `--vxlan-port` and
//! `--underlay-mtu` override it, and [`check_vxlan`] checks the result.
//! Unknown keys are errors (a misspelt `subnett` must not be ignored), and
//! the first failing entry aborts the start with a message naming the file,
//! the entry and the problem: a daemon that came up half-configured would
//! be worse than one that did not come up.
//!
//! With a state directory whose state file was restored, `[[network]]` and
//! `[[port]]` entries whose name exists already are skipped: the state
//! file recorded them (and any change made since) and is newer.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::daemon::Daemon;
use super::proto::{NetworkCreate, PortAdd};
use super::validate::{MAX_MTU, MIN_MTU};
use crate::fdb::FdbConfig;
use crate::switch::BusyPoll;
use crate::vxlan::{VxlanConfig, OVERHEAD_V6};

/// `[dataplane]`: the engine's threads and offloads; the daemon's
/// `--workers`, `--busy-poll` and `--no-offload` override it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// Worker threads, 1 to 16; absent: one per CPU.
    #[serde(default)]
    pub workers: Option<u64>,
    /// Microseconds of busy polling, 0 (off) to 1000000 (the older key:
    /// `busy_poll` says the same and also takes "auto").
    #[serde(default)]
    pub busy_poll_us: Option<u64>,
    /// `"auto"` or microseconds, as `--busy-poll` takes.
    #[serde(default, deserialize_with = "busy_poll_value")]
    pub busy_poll: Option<BusyPoll>,
    /// TAPs with a virtio_net_hdr and offloads (default true).
    #[serde(default)]
    pub offload: Option<bool>,
    /// `"ebpf"` or `"off"`, as `--fastpath` takes (docs/fastpath.md).
    #[serde(default, deserialize_with = "fastpath_value")]
    pub fastpath: Option<crate::fastpath::Mode>,
    /// `"tap"` or `"veth"`, as `daemon --backend` takes (docs/veth.md).
    #[serde(default)]
    pub backend: Option<super::proto::Backend>,
    /// The veth host ends' prefix, as `daemon --veth-prefix` takes.
    #[serde(default)]
    pub veth_prefix: Option<String>,
    /// `"ring"` or `"socket"`, as `daemon --uplink-rx` takes
    /// (docs/uplink.md).
    #[serde(default, deserialize_with = "uplink_rx_value")]
    pub uplink_rx: Option<bool>,
    /// MiB per uplink socket, as `daemon --uplink-buffer` takes.
    #[serde(default)]
    pub uplink_buffer: Option<u32>,
}

/// `uplink_rx = "ring"` or `"socket"`: true for the ring.
fn uplink_rx_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let s = String::deserialize(d)?;
    crate::switch::UplinkRx::parse_mode(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// `fastpath = "ebpf"` or `"off"`.
fn fastpath_value<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<crate::fastpath::Mode>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

impl DataplaneConfig {
    /// Checks the ranges the CLI flags enforce, naming key and range.
    pub fn check(&self) -> Result<(), String> {
        if let Some(w) = self.workers.filter(|w| !(1..=16).contains(w)) {
            return Err(format!(
                "[dataplane] workers = {w} is out of range: use 1 to 16, or leave it out for one per CPU"
            ));
        }
        if let Some(b) = self.busy_poll_us.filter(|&b| b > 1_000_000) {
            return Err(format!(
                "[dataplane] busy_poll_us = {b} is out of range: use 0 (off) to 1000000"
            ));
        }
        if let Some(b) = self
            .uplink_buffer
            .filter(|b| !(1..=crate::switch::UplinkRx::MAX_BUFFER_MIB).contains(b))
        {
            return Err(format!(
                "[dataplane] uplink_buffer = {b} is out of range: use 1 to {} (MiB per uplink socket)",
                crate::switch::UplinkRx::MAX_BUFFER_MIB
            ));
        }
        if let Some(p) = &self.veth_prefix {
            crate::ports::veth::check_prefix(p)
                .map_err(|e| format!("[dataplane] veth_prefix: {e}"))?;
        }
        if self.busy_poll.is_some() && self.busy_poll_us.is_some() {
            return Err(
                "[dataplane] has both busy_poll and busy_poll_us: keep busy_poll (it also takes \"auto\")"
                    .into(),
            );
        }
        Ok(())
    }

    /// The busy-poll setting of the file, from either key.
    pub fn busy_poll(&self) -> Option<BusyPoll> {
        self.busy_poll.or_else(|| {
            self.busy_poll_us
                .map(|us| BusyPoll::from_micros(us).unwrap_or(BusyPoll::Off))
        })
    }
}

/// `busy_poll = "auto"` or `busy_poll = 50`.
fn busy_poll_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<BusyPoll>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Micros(u64),
        Word(String),
    }
    let v = Value::deserialize(d)?;
    let parsed = match v {
        Value::Micros(us) => BusyPoll::from_micros(us),
        Value::Word(w) => BusyPoll::parse(&w),
    };
    parsed
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("[dataplane] {e}")))
}

/// `[state]`: where `daemon --state-dir` keeps its state file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// The state directory (`--state-dir` overrides it).
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

/// A parsed configuration file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// FDB limits and ageing; absent keys keep their defaults.
    #[serde(default)]
    pub fdb: Option<FdbConfig>,
    /// VXLAN port, underlay MTU and source ports; absent keys keep their defaults.
    #[serde(default)]
    pub vxlan: Option<VxlanConfig>,
    #[serde(default)]
    pub dataplane: Option<DataplaneConfig>,
    #[serde(default)]
    pub state: Option<StateConfig>,
    /// `[cluster]`: the etcd to join and this host's place in the cluster.
    #[serde(default)]
    pub cluster: Option<super::cluster::ClusterConfig>,
    #[serde(default)]
    pub network: Vec<NetworkCreate>,
    #[serde(default)]
    pub port: Vec<PortAdd>,
}

/// A configuration that cannot be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("config {}: {entry}: {message}", path.display())]
    Entry {
        path: PathBuf,
        entry: String,
        message: String,
    },
}

impl Config {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            // toml's message spans several lines (it quotes the offending
            // line); keep it, but without the trailing newline.
            message: e.to_string().trim_end().replace('`', "\""),
        })?;
        config.check_fdb(path)?;
        Ok(config)
    }

    /// The FDB limits must let the daemon learn something, as the command
    /// line's `--fdb-max-entries` and `--fdb-max-per-port` require.
    fn check_fdb(&self, path: &Path) -> Result<(), ConfigError> {
        let Some(fdb) = &self.fdb else {
            return Ok(());
        };
        let defaults = FdbConfig::default();
        for (key, value, default, what, flag) in [
            (
                "max_entries",
                fdb.max_entries,
                defaults.max_entries,
                "leaves the forwarding table no room",
                "--fdb-max-entries",
            ),
            (
                "max_per_dest",
                fdb.max_per_dest,
                defaults.max_per_dest,
                "lets no port or VTEP have an entry",
                "--fdb-max-per-port",
            ),
            (
                "max_per_network",
                fdb.max_per_network,
                defaults.max_per_network,
                "lets no network have an entry",
                "--fdb-max-per-network",
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Entry {
                    path: path.to_path_buf(),
                    entry: format!("[fdb] {key}"),
                    message: format!(
                        "0 {what}: nothing would be learned and every frame flooded; use \
                         at least 1 (default {default}, like {flag})"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Creates the networks, then the ports, in file order. Stops at the
    /// first error; the caller is expected to drop the daemon then, which
    /// removes whatever was created.
    pub fn apply(&self, daemon: &mut Daemon, path: &Path) -> Result<(), ConfigError> {
        self.apply_after_restore(daemon, path, false)
    }

    /// [`Config::apply`]; with `restored` (a state file was restored),
    /// entries whose name exists already are skipped.
    pub fn apply_after_restore(
        &self,
        daemon: &mut Daemon,
        path: &Path,
        restored: bool,
    ) -> Result<(), ConfigError> {
        let entry_err = |entry: String, message: String| ConfigError::Entry {
            path: path.to_path_buf(),
            entry,
            message,
        };
        for (i, n) in self.network.iter().enumerate() {
            if restored && daemon.has_network(&n.name) {
                continue;
            }
            if n.cluster {
                return Err(entry_err(
                    format!("[[network]] #{} ({:?})", i + 1, n.name),
                    "a cluster network is made once for the whole cluster with 'vxswitch \
                     network create NAME --cluster ...', and every daemon with --cluster gets \
                     it: remove it from the config file"
                        .into(),
                ));
            }
            daemon.network_create(n).map_err(|e| {
                entry_err(format!("[[network]] #{} ({:?})", i + 1, n.name), e.message)
            })?;
        }
        for (i, p) in self.port.iter().enumerate() {
            if restored && daemon.has_port(&p.name) {
                continue;
            }
            daemon
                .port_add(p)
                .map_err(|e| entry_err(format!("[[port]] #{} ({:?})", i + 1, p.name), e.message))?;
        }
        Ok(())
    }
}

/// Smallest underlay MTU: an IPv6 underlay's headers plus a minimal inner
/// Ethernet frame carrying a minimal IPv4 packet.
pub const MIN_UNDERLAY_MTU: u32 = OVERHEAD_V6 + 14 + MIN_MTU;

/// Checks the daemon-wide VXLAN settings (the `[vxlan]` table merged with
/// the command line); the message names the setting and a valid value.
pub fn check_vxlan(v: &VxlanConfig) -> Result<(), String> {
    if v.port == 0 {
        return Err(
            "VXLAN port 0 is invalid (--vxlan-port, [vxlan] port); use 4789, the IANA port, \
             or 8472 to talk to Linux vxlan devices created without dstport"
                .into(),
        );
    }
    if !(MIN_UNDERLAY_MTU..=MAX_MTU).contains(&v.underlay_mtu) {
        return Err(format!(
            "underlay MTU {} is out of range (--underlay-mtu, [vxlan] underlay_mtu); use \
             {MIN_UNDERLAY_MTU} to {MAX_MTU}: the MTU of the network between the hosts, \
             usually 1500",
            v.underlay_mtu
        ));
    }
    if v.src_port_min == 0 || v.src_port_min > v.src_port_max {
        return Err(format!(
            "VXLAN source ports {}-{} are not a range ([vxlan] src_port_min, src_port_max); \
             use 1 <= src_port_min <= src_port_max, e.g. the default 49152-65535",
            v.src_port_min, v.src_port_max
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switch::EngineConfig;
    use crate::time::MonotonicClock;
    use std::sync::Arc;

    const FILE: &str = "/etc/vxswitch.toml";

    #[test]
    fn parses_all_sections() {
        let c = Config::parse(
            r#"
            [fdb]
            ageing_ms = 1000
            [[network]]
            name = "red"
            subnet = "10.77.0.0/24"
            gateway = "10.77.0.1"
            [[network]]
            name = "blue"
            mtu = 9000
            [[port]]
            name = "c1"
            network = "red"
            netns = "/run/netns/c1"
            ip = "10.77.0.11/24"
            mac = "02:00:00:00:00:01"
            "#,
            Path::new(FILE),
        )
        .unwrap();
        let fdb = c.fdb.unwrap();
        assert_eq!(fdb.ageing_ms, 1000);
        assert_eq!(fdb.max_entries, FdbConfig::default().max_entries);
        assert_eq!(c.network.len(), 2);
        assert_eq!(c.network[1].mtu, Some(9000));
        assert_eq!(c.port[0].netns.as_deref(), Some("/run/netns/c1"));
    }

    #[test]
    fn dataplane_table_is_read_and_checked() {
        let c = Config::parse(
            "[dataplane]\nworkers = 3\nbusy_poll_us = 50\noffload = false\n",
            Path::new(FILE),
        )
        .unwrap();
        let dp = c.dataplane.unwrap();
        assert_eq!(
            (dp.workers, dp.busy_poll_us, dp.offload),
            (Some(3), Some(50), Some(false))
        );
        assert!(dp.check().is_ok());
        let bad = DataplaneConfig {
            workers: Some(0),
            ..DataplaneConfig::default()
        };
        assert!(bad.check().unwrap_err().contains("workers = 0"));
        let bad = DataplaneConfig {
            busy_poll_us: Some(2_000_000),
            ..DataplaneConfig::default()
        };
        assert!(bad.check().unwrap_err().contains("busy_poll_us"));
        let e = Config::parse("[dataplane]\nworker = 2\n", Path::new(FILE))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn busy_poll_takes_auto_or_micros_and_names_a_bad_value() {
        let dp = |toml: &str| Config::parse(toml, Path::new(FILE)).map(|c| c.dataplane.unwrap());
        let auto = dp("[dataplane]\nbusy_poll = \"auto\"\n").unwrap();
        assert_eq!(auto.busy_poll(), Some(BusyPoll::Auto));
        let fixed = dp("[dataplane]\nbusy_poll = 50\n").unwrap();
        assert_eq!(
            fixed.busy_poll(),
            Some(BusyPoll::Fixed(std::time::Duration::from_micros(50)))
        );
        assert_eq!(
            dp("[dataplane]\nbusy_poll = 0\n").unwrap().busy_poll(),
            Some(BusyPoll::Off)
        );
        let old = dp("[dataplane]\nbusy_poll_us = 7\n").unwrap();
        assert_eq!(
            old.busy_poll(),
            Some(BusyPoll::Fixed(std::time::Duration::from_micros(7)))
        );
        for bad in ["busy_poll = \"fast\"", "busy_poll = 2000000"] {
            let e = dp(&format!("[dataplane]\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("busy poll") && e.contains("auto"), "{bad}: {e}");
        }
        let both = dp("[dataplane]\nbusy_poll = \"auto\"\nbusy_poll_us = 5\n").unwrap();
        assert!(both
            .check()
            .unwrap_err()
            .contains("both busy_poll and busy_poll_us"));
    }

    #[test]
    fn state_table_names_the_state_dir() {
        let c = Config::parse("[state]\ndir = \"/var/lib/vxswitch\"\n", Path::new(FILE)).unwrap();
        assert_eq!(
            c.state.and_then(|s| s.dir),
            Some(PathBuf::from("/var/lib/vxswitch"))
        );
        let e = Config::parse("[state]\ndirectory = \"/x\"\n", Path::new(FILE))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown field \"directory\", expected \"dir\""),
            "{e}"
        );
    }

    #[test]
    fn network_gateway_port_is_a_key() {
        let c = Config::parse(
            r#"
            [[network]]
            name = "lab"
            subnet = "10.88.0.0/24"
            gateway = "10.88.0.1"
            gateway_port = "host"
            gateway_ifname = "vxgw0"
            "#,
            Path::new(FILE),
        )
        .unwrap();
        assert_eq!(
            c.network[0].gateway_port,
            Some(crate::ctl::proto::GatewayPort::Host)
        );
        assert_eq!(c.network[0].gateway_ifname.as_deref(), Some("vxgw0"));
        let e = Config::parse(
            "[[network]]\nname = \"lab\"\ngateway_port = \"bridge\"\n",
            Path::new(FILE),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown variant"), "{e}");
    }

    #[test]
    fn vxlan_table_and_network_vteps() {
        let c = Config::parse(
            r#"
            [vxlan]
            port = 8472
            underlay_mtu = 9000
            [[network]]
            name = "blue"
            vni = 4242
            learn_vteps = true
            vteps = ["198.18.0.2", "[fd00::2]:4789"]
            "#,
            Path::new(FILE),
        )
        .unwrap();
        let v = c.vxlan.unwrap();
        assert_eq!((v.port, v.underlay_mtu), (8472, 9000));
        assert_eq!(v.src_port_min, VxlanConfig::default().src_port_min);
        assert_eq!(c.network[0].vni, Some(4242));
        assert!(c.network[0].learn_vteps);
        assert_eq!(c.network[0].vteps, vec!["198.18.0.2", "[fd00::2]:4789"]);
        let e = Config::parse("[vxlan]\nmtu = 1500\n", Path::new(FILE))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field \"mtu\""), "{e}");
    }

    #[test]
    fn vxlan_settings_are_checked() {
        assert_eq!(check_vxlan(&VxlanConfig::default()), Ok(()));
        let d = VxlanConfig::default();
        for (bad, want) in [
            (VxlanConfig { port: 0, ..d }, "VXLAN port 0 is invalid"),
            (
                VxlanConfig {
                    underlay_mtu: 100,
                    ..d
                },
                "underlay MTU 100 is out of range (--underlay-mtu, [vxlan] underlay_mtu); \
                 use 138 to 65535",
            ),
            (
                VxlanConfig {
                    src_port_min: 6000,
                    src_port_max: 5000,
                    ..d
                },
                "VXLAN source ports 6000-5000 are not a range",
            ),
        ] {
            let e = check_vxlan(&bad).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn network_vteps_are_applied_after_their_network() {
        let port = std::net::UdpSocket::bind("[::]:0")
            .or_else(|_| std::net::UdpSocket::bind("0.0.0.0:0"))
            .and_then(|s| s.local_addr())
            .unwrap()
            .port();
        let text = format!(
            "[vxlan]\nport = {port}\nsrc_port_min = {port}\nsrc_port_max = {port}\n\
             [[network]]\nname = \"blue\"\nvni = 7\nvteps = [\"198.18.0.2\"]\n\
             [[network]]\nname = \"red\"\nvni = 8\nvteps = [\"198.18.0.3\", \"nope\"]\n"
        );
        let c = Config::parse(&text, Path::new(FILE)).unwrap();
        let mut d = Daemon::new(
            EngineConfig {
                vxlan: c.vxlan.unwrap(),
                ..EngineConfig::default()
            },
            Arc::new(MonotonicClock::new()),
            None,
        )
        .unwrap();
        let e = c.apply(&mut d, Path::new(FILE)).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "config /etc/vxswitch.toml: [[network]] #2 (\"red\"): network \"red\": \
                 invalid VTEP address \"nope\""
            ),
            "{e}"
        );
        let nets = d.network_ls();
        assert_eq!(nets.len(), 1);
        assert_eq!(nets[0].vteps, vec![format!("198.18.0.2:{port}")]);
        d.shutdown();
    }

    #[test]
    fn zero_fdb_limits_are_refused_with_file_table_and_key() {
        for (key, tail) in [
            (
                "max_entries",
                "0 leaves the forwarding table no room: nothing would be learned and every \
                 frame flooded; use at least 1 (default 65536, like --fdb-max-entries)",
            ),
            (
                "max_per_dest",
                "0 lets no port or VTEP have an entry: nothing would be learned and every \
                 frame flooded; use at least 1 (default 4096, like --fdb-max-per-port)",
            ),
        ] {
            let e = Config::parse(&format!("[fdb]\n{key} = 0\n"), Path::new(FILE))
                .unwrap_err()
                .to_string();
            assert_eq!(e, format!("config /etc/vxswitch.toml: [fdb] {key}: {tail}"));
        }
        // ageing_ms = 0 is valid: learned entries never expire.
        let c = Config::parse("[fdb]\nageing_ms = 0\n", Path::new(FILE)).unwrap();
        assert_eq!(c.fdb.unwrap().ageing_ms, 0);
    }

    #[test]
    fn unknown_keys_name_the_file_and_key() {
        let e = Config::parse(
            "[[network]]\nname = \"red\"\nsubnett = \"x\"\n",
            Path::new(FILE),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("config /etc/vxswitch.toml: "), "{e}");
        assert!(e.contains("unknown field \"subnett\""), "{e}");
        assert!(e.contains("line 3"), "{e}");
        let e = Config::parse("[fdb]\nageing = 5\n", Path::new(FILE))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field \"ageing\""), "{e}");
    }

    #[test]
    fn a_failing_entry_is_named() {
        let c = Config::parse(
            "[[network]]\nname = \"red\"\n[[network]]\nname = \"blue\"\nsubnet = \"10.0.0.1/8\"\n",
            Path::new(FILE),
        )
        .unwrap();
        let mut d = Daemon::new(
            EngineConfig::default(),
            Arc::new(MonotonicClock::new()),
            None,
        )
        .unwrap();
        let e = c.apply(&mut d, Path::new(FILE)).unwrap_err().to_string();
        assert!(
            e.starts_with("config /etc/vxswitch.toml: [[network]] #2 (\"blue\"): "),
            "{e}"
        );
        assert!(e.contains("host bits set"), "{e}");
        let c = Config::parse(
            "[[port]]\nname = \"c1\"\nnetwork = \"green\"\n",
            Path::new(FILE),
        )
        .unwrap();
        let e = c.apply(&mut d, Path::new(FILE)).unwrap_err().to_string();
        assert!(
            e.contains("[[port]] #1 (\"c1\"): network \"green\" does not exist"),
            "{e}"
        );
        d.shutdown();
    }
}
