//! The daemon's settings from its three sources, in order of precedence:
//! a command-line flag beats the `--config` file, which beats the built-in
//! default. Pure, so the precedence is unit-tested without a daemon.

use std::path::{Path, PathBuf};

use vxswitch::cluster::http::TlsFiles;
use vxswitch::ctl::cluster::ClusterSettings;
use vxswitch::ctl::config::check_vxlan;
use vxswitch::ctl::Config;
use vxswitch::switch::{EngineConfig, UplinkRx};

use super::args::DaemonArgs;

/// What `vxswitch daemon` runs with.
#[derive(Clone, Debug)]
pub struct DaemonSettings {
    /// The dataplane's tuning.
    pub engine: EngineConfig,
    /// `--state-dir`, else `[state] dir`.
    pub state_dir: Option<PathBuf>,
    /// `--cluster` and its companions, else `[cluster]`: `None` without a
    /// cluster.
    pub cluster: Option<ClusterSettings>,
    /// `--fastpath`, else `[dataplane] fastpath`, else off.
    pub fastpath: vxswitch::fastpath::Mode,
    /// `--backend`, else `[dataplane] backend`, else tap.
    pub backend: vxswitch::ctl::proto::Backend,
    /// `--veth-prefix`, else `[dataplane] veth_prefix`, else the default.
    pub veth_prefix: Option<String>,
}

/// Merges the flags `a` over `config` (read from `config_path`, if any) over
/// the defaults, and checks the result. Errors about a value that may come
/// from the file name the file.
pub fn merge(
    a: &DaemonArgs,
    config: &Config,
    config_path: Option<&Path>,
) -> Result<DaemonSettings, String> {
    let in_config = |e: String| match config_path {
        Some(path) => format!("{e} (config {})", path.display()),
        None => e,
    };
    let mut fdb = config.fdb.unwrap_or_default();
    if let Some(secs) = a.ageing_time {
        fdb.ageing_ms = secs.saturating_mul(1000);
    }
    if let Some(n) = a.fdb_max_entries {
        fdb.max_entries = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = a.fdb_max_per_port {
        fdb.max_per_dest = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = a.fdb_max_per_network {
        fdb.max_per_network = usize::try_from(n).unwrap_or(usize::MAX);
    }
    let mut vxlan = config.vxlan.unwrap_or_default();
    if let Some(port) = a.vxlan_port {
        vxlan.port = port;
    }
    if let Some(mtu) = a.underlay_mtu {
        vxlan.underlay_mtu = mtu;
    }
    check_vxlan(&vxlan).map_err(in_config)?;
    let dp = config.dataplane.clone().unwrap_or_default();
    dp.check().map_err(in_config)?;
    let cc = config.cluster.clone().unwrap_or_default();
    let endpoints = a
        .cluster
        .clone()
        .or_else(|| (!cc.endpoints.is_empty()).then(|| cc.endpoints.join(",")));
    let cluster = match endpoints {
        Some(urls) => Some(
            ClusterSettings::resolve(
                &urls,
                a.underlay_ip.or(cc.underlay_ip),
                a.host_id.as_deref().or(cc.host_id.as_deref()),
                a.cluster_ttl,
                &TlsFiles {
                    cacert: a.cluster_cacert.clone().or(cc.cacert.clone()),
                    cert: a.cluster_cert.clone().or(cc.cert.clone()),
                    key: a.cluster_key.clone().or(cc.key.clone()),
                },
                &cc,
            )
            .map_err(in_config)?,
        ),
        None if a.underlay_ip.is_some()
            || a.host_id.is_some()
            || a.cluster_ttl.is_some()
            || a.cluster_cacert.is_some()
            || a.cluster_cert.is_some() =>
        {
            return Err(
                "--underlay-ip, --host-id, --cluster-ttl, --cluster-cacert, --cluster-cert and \
                 --cluster-key go with --cluster URLS (the etcd of the cluster to join)"
                    .into(),
            )
        }
        None => None,
    };

    Ok(DaemonSettings {
        engine: EngineConfig {
            fdb,
            vxlan,
            no_offload: a.no_offload || dp.offload == Some(false),
            busy_poll: a.busy_poll.or(dp.busy_poll()).unwrap_or_default(),
            workers: usize::try_from(a.workers.or(dp.workers).unwrap_or(0)).unwrap_or(0),
            uplink_rx: UplinkRx {
                ring: a
                    .uplink_rx
                    .or(dp.uplink_rx)
                    .unwrap_or(UplinkRx::default().ring),
                buffer_mib: a
                    .uplink_buffer
                    .or(dp.uplink_buffer)
                    .unwrap_or(UplinkRx::DEFAULT_BUFFER_MIB),
            },
            ..EngineConfig::default()
        },
        state_dir: a
            .state_dir
            .clone()
            .or_else(|| config.state.as_ref().and_then(|s| s.dir.clone())),
        cluster,
        fastpath: a.fastpath.or(dp.fastpath).unwrap_or_default(),
        backend: a.backend.or(dp.backend).unwrap_or_default(),
        veth_prefix: a.veth_prefix.clone().or(dp.veth_prefix),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::args::{Cli, Cmd};
    use super::*;
    use std::time::Duration;
    use vxswitch::fdb::FdbConfig;
    use vxswitch::switch::BusyPoll;
    use vxswitch::vxlan::VxlanConfig;

    fn flags(args: &[&str]) -> DaemonArgs {
        let argv = ["vxswitch", "daemon"]
            .into_iter()
            .chain(args.iter().copied());
        match Cli::try_parse_from(argv).expect("daemon flags parse").cmd {
            Cmd::Daemon(a) => *a,
            other => panic!("not a daemon command: {other:?}"),
        }
    }

    fn config(toml: &str) -> Config {
        toml::from_str(toml).expect("test config parses")
    }

    const FILE: &str = "
        [fdb]
        ageing_ms = 60000
        max_entries = 100
        max_per_dest = 10
        [vxlan]
        port = 8472
        underlay_mtu = 9000
        [dataplane]
        workers = 2
        busy_poll_us = 50
        offload = false
        [state]
        dir = \"/var/lib/from-file\"
    ";

    #[test]
    fn without_flags_or_file_the_defaults_apply() {
        let s = merge(&flags(&[]), &Config::default(), None).unwrap();
        assert_eq!(s.engine.fdb, FdbConfig::default());
        assert_eq!(s.engine.vxlan, VxlanConfig::default());
        assert!(!s.engine.no_offload);
        assert_eq!(s.engine.busy_poll, BusyPoll::Off);
        assert_eq!(s.engine.workers, 0, "0: one worker per CPU");
        assert_eq!(s.state_dir, None);
    }

    #[test]
    fn uplink_rx_comes_from_the_flags_and_defaults_to_a_socket_of_8_mib() {
        let d = merge(&flags(&[]), &Config::default(), None).unwrap();
        assert!(!d.engine.uplink_rx.ring);
        assert_eq!(d.engine.uplink_rx.buffer_bytes(), 8 << 20);
        let r = merge(
            &flags(&["--uplink-rx", "ring", "--uplink-buffer", "32"]),
            &Config::default(),
            None,
        )
        .unwrap();
        assert!(r.engine.uplink_rx.ring);
        assert_eq!(r.engine.uplink_rx.buffer_bytes(), 32 << 20);
        let argv = ["vxswitch", "daemon", "--uplink-rx", "mmap"];
        let err = Cli::try_parse_from(argv).unwrap_err().to_string();
        assert!(err.contains("use ring or socket"), "{err}");
        let argv = ["vxswitch", "daemon", "--uplink-buffer", "0"];
        assert!(Cli::try_parse_from(argv).is_err());
    }

    #[test]
    fn the_file_beats_the_defaults() {
        let s = merge(&flags(&[]), &config(FILE), Some(Path::new("vx.toml"))).unwrap();
        assert_eq!(
            s.engine.fdb,
            FdbConfig {
                ageing_ms: 60_000,
                max_entries: 100,
                max_per_dest: 10,
                ..FdbConfig::default()
            }
        );
        assert_eq!(s.engine.vxlan.port, 8472);
        assert_eq!(s.engine.vxlan.underlay_mtu, 9000);
        assert_eq!(
            s.engine.vxlan.src_port_min,
            VxlanConfig::default().src_port_min,
            "keys the file leaves out keep their defaults"
        );
        assert!(s.engine.no_offload);
        assert_eq!(
            s.engine.busy_poll,
            BusyPoll::Fixed(Duration::from_micros(50))
        );
        assert_eq!(s.engine.workers, 2);
        assert_eq!(s.state_dir, Some(PathBuf::from("/var/lib/from-file")));
    }

    #[test]
    fn flags_beat_the_file() {
        let a = flags(&[
            "--ageing-time",
            "7",
            "--fdb-max-entries",
            "5",
            "--fdb-max-per-port",
            "3",
            "--vxlan-port",
            "4790",
            "--underlay-mtu",
            "1400",
            "--busy-poll",
            "9",
            "--workers",
            "4",
            "--state-dir",
            "/var/lib/from-flag",
        ]);
        let s = merge(&a, &config(FILE), Some(Path::new("vx.toml"))).unwrap();
        assert_eq!(
            s.engine.fdb,
            FdbConfig {
                ageing_ms: 7_000,
                max_entries: 5,
                max_per_dest: 3,
                ..FdbConfig::default()
            }
        );
        assert_eq!(s.engine.vxlan.port, 4790);
        assert_eq!(s.engine.vxlan.underlay_mtu, 1400);
        assert_eq!(
            s.engine.busy_poll,
            BusyPoll::Fixed(Duration::from_micros(9))
        );
        assert_eq!(s.engine.workers, 4);
        assert_eq!(s.state_dir, Some(PathBuf::from("/var/lib/from-flag")));
        // A flag can only turn offloads off: the file's "off" stays off.
        assert!(s.engine.no_offload);
        let s = merge(&flags(&["--no-offload"]), &Config::default(), None).unwrap();
        assert!(s.engine.no_offload);
    }

    #[test]
    fn fastpath_comes_from_the_flag_or_the_file_and_is_off_by_default() {
        use vxswitch::fastpath::Mode;
        assert_eq!(
            merge(&flags(&[]), &config(""), None).unwrap().fastpath,
            Mode::Off
        );
        let file = config("[dataplane]\nfastpath = \"ebpf\"\n");
        assert_eq!(
            merge(&flags(&[]), &file, None).unwrap().fastpath,
            Mode::Ebpf
        );
        let s = merge(&flags(&["--fastpath", "off"]), &file, None).unwrap();
        assert_eq!(s.fastpath, Mode::Off, "the flag beats the file");
        let argv = ["vxswitch", "daemon", "--fastpath", "xdp"];
        let e = Cli::try_parse_from(argv).unwrap_err().to_string();
        assert!(e.contains("expected ebpf or off"), "{e}");
        let bad: Result<Config, _> = toml::from_str("[dataplane]\nfastpath = \"on\"\n");
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("expected ebpf or off"));
    }

    #[test]
    fn backend_comes_from_the_flag_or_the_file_and_is_tap_by_default() {
        use vxswitch::ctl::proto::Backend;
        assert_eq!(
            merge(&flags(&[]), &config(""), None).unwrap().backend,
            Backend::Tap
        );
        let file = config("[dataplane]\nbackend = \"veth\"\n");
        assert_eq!(
            merge(&flags(&[]), &file, None).unwrap().backend,
            Backend::Veth
        );
        let s = merge(&flags(&["--backend", "tap"]), &file, None).unwrap();
        assert_eq!(s.backend, Backend::Tap, "the flag beats the file");
        let bad: Result<Config, _> = toml::from_str("[dataplane]\nbackend = \"macvtap\"\n");
        let e = bad.unwrap_err().to_string();
        assert!(e.contains("tap") && e.contains("veth"), "{e}");
    }

    #[test]
    fn veth_prefix_and_uplink_receive_come_from_the_flag_or_the_file() {
        let s = merge(&flags(&[]), &config(""), None).unwrap();
        assert_eq!(s.veth_prefix, None);
        assert!(!s.engine.uplink_rx.ring);
        assert_eq!(s.engine.uplink_rx.buffer_mib, UplinkRx::DEFAULT_BUFFER_MIB);
        let file = config(
            "[dataplane]\nveth_prefix = \"vxb-\"\nuplink_rx = \"ring\"\nuplink_buffer = 32\n",
        );
        let s = merge(&flags(&[]), &file, None).unwrap();
        assert_eq!(s.veth_prefix.as_deref(), Some("vxb-"));
        assert!(s.engine.uplink_rx.ring);
        assert_eq!(s.engine.uplink_rx.buffer_mib, 32);
        let argv = [
            "--veth-prefix",
            "vxc-",
            "--uplink-rx",
            "socket",
            "--uplink-buffer",
            "4",
        ];
        let s = merge(&flags(&argv), &file, None).unwrap();
        assert_eq!(
            s.veth_prefix.as_deref(),
            Some("vxc-"),
            "the flag beats the file"
        );
        assert!(!s.engine.uplink_rx.ring);
        assert_eq!(s.engine.uplink_rx.buffer_mib, 4);
        // What the flags refuse, the file does too, naming the key.
        for (text, key) in [
            ("veth_prefix = \"much-too-long\"", "veth_prefix"),
            ("uplink_buffer = 0", "uplink_buffer"),
            ("uplink_buffer = 257", "uplink_buffer"),
        ] {
            let e = merge(
                &flags(&[]),
                &config(&format!("[dataplane]\n{text}\n")),
                None,
            )
            .unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
        let bad: Result<Config, _> = toml::from_str("[dataplane]\nuplink_rx = \"mmap\"\n");
        let e = bad.unwrap_err().to_string();
        assert!(e.contains("ring") && e.contains("socket"), "{e}");
    }

    #[test]
    fn busy_poll_auto_comes_from_the_flag_or_the_file() {
        let s = merge(&flags(&["--busy-poll", "auto"]), &config(FILE), None).unwrap();
        assert_eq!(s.engine.busy_poll, BusyPoll::Auto);
        let file = config("[dataplane]\nbusy_poll = \"auto\"\n");
        let s = merge(&flags(&[]), &file, None).unwrap();
        assert_eq!(s.engine.busy_poll, BusyPoll::Auto);
        let s = merge(&flags(&["--busy-poll", "0"]), &file, None).unwrap();
        assert_eq!(s.engine.busy_poll, BusyPoll::Off, "the flag beats the file");
        let argv = ["vxswitch", "daemon", "--busy-poll", "soon"];
        let e = Cli::try_parse_from(argv).unwrap_err().to_string();
        assert!(e.contains("use auto, or microseconds"), "{e}");
    }

    #[test]
    fn a_bad_value_names_the_file_it_may_come_from() {
        let bad = config("[vxlan]\nunderlay_mtu = 100\n");
        let e = merge(&flags(&[]), &bad, Some(Path::new("bad4.toml"))).unwrap_err();
        assert!(e.ends_with(" (config bad4.toml)"), "{e}");
        assert!(e.starts_with("underlay MTU 100 is out of range"), "{e}");
        // The same value from a flag: no file to name.
        let e = merge(&flags(&["--underlay-mtu", "100"]), &Config::default(), None).unwrap_err();
        assert!(e.starts_with("underlay MTU 100 is out of range"), "{e}");
        assert!(!e.contains("(config"), "{e}");
        // A flag fixes what the file got wrong.
        let s = merge(
            &flags(&["--underlay-mtu", "1500"]),
            &bad,
            Some(Path::new("bad4.toml")),
        )
        .unwrap();
        assert_eq!(s.engine.vxlan.underlay_mtu, 1500);
        let e = merge(
            &flags(&[]),
            &config("[dataplane]\nworkers = 99\n"),
            Some(Path::new("w.toml")),
        )
        .unwrap_err();
        assert!(
            e.contains("workers") && e.ends_with(" (config w.toml)"),
            "{e}"
        );
    }

    #[test]
    fn cluster_flags_beat_the_cluster_table_and_need_each_other() {
        let s = merge(&flags(&[]), &Config::default(), None).unwrap();
        assert!(s.cluster.is_none());
        let file = config(
            "[cluster]\nendpoints = [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\"]\n\
             underlay_ip = \"198.18.0.1\"\nhost_id = \"from-file\"\nttl_secs = 5\n",
        );
        let c = merge(&flags(&[]), &file, Some(Path::new("c.toml")))
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(c.endpoints.len(), 2);
        assert_eq!((c.host_id.as_str(), c.ttl.as_secs()), ("from-file", 5));
        let a = flags(&[
            "--cluster",
            "http://10.0.0.9:2379",
            "--host-id",
            "from-flag",
            "--cluster-ttl",
            "7",
        ]);
        let c = merge(&a, &file, Some(Path::new("c.toml")))
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(c.endpoints.len(), 1);
        assert_eq!((c.host_id.as_str(), c.ttl.as_secs()), ("from-flag", 7));
        assert_eq!(c.underlay_ip.to_string(), "198.18.0.1", "from the file");
        let e = merge(
            &flags(&["--cluster", "http://10.0.0.9:2379", "--host-id", "h"]),
            &Config::default(),
            None,
        )
        .unwrap_err();
        assert!(e.contains("needs --underlay-ip"), "{e}");
        let e = merge(
            &flags(&["--underlay-ip", "198.18.0.1"]),
            &Config::default(),
            None,
        )
        .unwrap_err();
        assert!(e.contains("go with --cluster"), "{e}");
        let e = merge(
            &flags(&[
                "--cluster",
                "https://10.0.0.9:2379",
                "--underlay-ip",
                "198.18.0.1",
            ]),
            &Config::default(),
            None,
        )
        .unwrap_err();
        assert!(e.contains("give --cluster-cacert FILE"), "{e}");
        // The same from the [cluster] table: its files are read, and named.
        let tls_file = config(
            "[cluster]\nendpoints = [\"https://10.0.0.1:2379\"]\nunderlay_ip = \"198.18.0.1\"\n\
             cacert = \"/nonexistent/ca.crt\"\n",
        );
        let e = merge(&flags(&["--host-id", "h"]), &tls_file, None).unwrap_err();
        assert!(
            e.contains("cannot read the CA certificate") && e.contains("/nonexistent/ca.crt"),
            "{e}"
        );
        let e = merge(
            &flags(&[
                "--cluster",
                "http://10.0.0.9:2379",
                "--underlay-ip",
                "198.18.0.1",
                "--cluster-cacert",
                "ca.crt",
            ]),
            &Config::default(),
            None,
        )
        .unwrap_err();
        assert!(e.contains("are for https:// etcd URLs"), "{e}");
        let e = merge(
            &flags(&[
                "--cluster",
                "http://10.0.0.9:2379",
                "--underlay-ip",
                "198.18.0.1",
                "--cluster-ttl",
                "1",
            ]),
            &Config::default(),
            None,
        )
        .unwrap_err();
        assert!(e.contains("TTL 1 s is out of range"), "{e}");
    }
}
