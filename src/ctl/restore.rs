//! The state directory (`daemon --state-dir`): the configuration saved
//! after every change, and put back at the next start.
//!
//! The configuration is rebuilt into a [`StateFile`] ([`super::persist`]
//! is its format and its atomic writes) after each request that changes
//! something, and after ports go away on their own, and written when it
//! differs. TAPs created then are persistent: each such port holds a
//! [`PersistGuard`], so `port.rm` still deletes the TAP while a daemon
//! stop leaves it for the next start to re-attach.
//!
//! Restoring replays the file as requests would (networks, their VTEPs,
//! ports, static FDB entries); what cannot be put back is dropped, with a
//! [`DropReason`] in the [`RestoreReport`] and one line on stderr.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::daemon::Daemon;
use super::persist::{
    SavedKind, SavedNetwork, SavedPort, StateError, StateFile, Store, STATE_VERSION,
};
use super::ports::{PortMeta, Security};
use super::proto::{
    strip_os_error, CtlError, FdbAdd, FdbSelect, NetworkCreate, PortAdd, PortKind, VtepAdd,
};
use crate::fdb::EntryKind;
use crate::ports::search::{self, Sandbox};
use crate::ports::{self, Netns, PersistGuard};
use crate::wire::MacAddr;

/// What [`Daemon::open_state_dir`] put back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// The state directory, when a state file was found and restored.
    pub restored_from: Option<PathBuf>,
    pub networks: usize,
    pub ports: usize,
    /// What could not be put back, and why; each already logged.
    pub dropped: Vec<Dropped>,
}

/// Something the state file records that the restore could not put back.
/// `Display`: "port c1 (network red) dropped: its namespace ... is gone".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub item: SavedItem,
    pub reason: DropReason,
}

/// One thing a state file records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SavedItem {
    Network { name: String },
    Vtep { network: String, addr: String },
    Port { name: String, network: String },
    StaticEntry { network: String, mac: MacAddr },
}

/// Why the restore dropped a [`SavedItem`]; `Display` is the text logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The request that puts it back was refused: the daemon's message.
    Refused(String),
    /// The port's network was not restored.
    NetworkMissing { network: String },
    /// The namespace file the port's TAP was created in is gone.
    NamespaceGone { netns: String },
    /// The namespace file now names another namespace than the container's.
    NamespaceReplaced { netns: String },
    /// Its TAP could not be opened again (nor found elsewhere); `netns`
    /// is the namespace file it was looked for in, unless the daemon's own.
    Tap {
        error: String,
        netns: Option<String>,
    },
    /// No second fd could be had to hold the TAP's persist flag.
    NoHandle(String),
}

impl std::fmt::Display for SavedItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SavedItem::Network { name } => write!(f, "network {name}"),
            SavedItem::Vtep { network, addr } => write!(f, "VTEP {addr} of network {network}"),
            SavedItem::Port { name, network } => write!(f, "port {name} (network {network})"),
            SavedItem::StaticEntry { network, mac } => {
                write!(f, "static FDB entry {mac} (network {network})")
            }
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropReason::Refused(message) => f.write_str(message),
            DropReason::NetworkMissing { network } => {
                write!(f, "its network {network} was not restored")
            }
            DropReason::NamespaceGone { netns } => write!(f, "its namespace {netns} is gone"),
            DropReason::NamespaceReplaced { netns } => {
                write!(
                    f,
                    "{netns} now names another namespace than the container's"
                )
            }
            DropReason::Tap {
                error,
                netns: Some(netns),
            } => write!(f, "{error} (in {netns})"),
            DropReason::Tap { error, netns: None } => f.write_str(error),
            DropReason::NoHandle(e) => write!(f, "cannot keep a handle on its TAP: {e}"),
        }
    }
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} dropped: {}", self.item, self.reason)
    }
}

impl From<CtlError> for DropReason {
    fn from(e: CtlError) -> DropReason {
        DropReason::Refused(e.message)
    }
}

impl Daemon {
    /// `--state-dir DIR`: opens (or makes) `DIR`, restores what its state
    /// file records, and from then on saves the configuration there after
    /// every change; TAPs the daemon creates from now on are persistent.
    ///
    /// Restoring never fails as a whole: a network, VTEP, port or entry
    /// that cannot be put back is dropped with one line on stderr naming
    /// it and why, and the file is rewritten without it. Only a state file
    /// that cannot be read or parsed is an error (the daemon must not start
    /// empty over it). Call this before the control socket serves anyone.
    pub fn open_state_dir(&mut self, dir: &Path) -> Result<RestoreReport, StateError> {
        let (store, file) = Store::open(dir)?;
        self.store = Some(store);
        let mut report = RestoreReport::default();
        if let Some(file) = file {
            self.restoring = true;
            report = self.restore(file);
            self.restoring = false;
            report.restored_from = Some(dir.to_path_buf());
        }
        // A directory the daemon cannot write to is an error now, not a
        // surprise at the next restart.
        let state = self.snapshot();
        if let Some(store) = self.store.as_mut() {
            store.write(&state).map_err(|source| StateError::Write {
                path: store.path(),
                source,
            })?;
        }
        Ok(report)
    }

    /// Writes the state file if a state directory is set and something
    /// changed since the last write.
    pub fn save_state(&mut self) {
        if self.restoring || self.store.is_none() {
            return;
        }
        let state = self.snapshot();
        if let Some(store) = self.store.as_mut() {
            store.save(&state);
        }
    }

    /// What a daemon stopping now leaves for the next start: a line for
    /// stderr, or `None` without a state directory.
    pub fn leaving_note(&self) -> Option<String> {
        let store = self.store.as_ref()?;
        let n = self.ports.values().filter(|p| p.persist.is_some()).count();
        Some(format!(
            "leaving {n} port{} for the next start (state in {})",
            if n == 1 { "" } else { "s" },
            store.dir().display()
        ))
    }

    /// The configuration as the state file records it.
    pub(super) fn snapshot(&self) -> StateFile {
        let networks = self
            .networks
            .iter()
            .map(|(name, net)| SavedNetwork {
                create: NetworkCreate {
                    name: name.clone(),
                    ..net.spec.clone()
                },
                mtu: net.mtu,
                vteps: net
                    .vteps
                    .iter()
                    .filter(|(_, v)| !v.dynamic)
                    .map(|(a, _)| a.to_string())
                    .collect(),
                gateway_mac: net.gw_port.as_ref().and(net.gateway_mac),
            })
            .collect();
        let ports = self
            .ports
            .iter()
            .filter_map(|(name, p)| {
                let kind = match p.kind {
                    PortKind::Created if !p.gateway => SavedKind::Created,
                    PortKind::Existing => SavedKind::Existing,
                    _ => return None,
                };
                let (netns, pid) = match &p.netns {
                    Netns::Current => (None, None),
                    Netns::Path(path) => (Some(path.clone()), None),
                    Netns::Pid(pid) => (None, Some(*pid)),
                };
                Some(SavedPort {
                    name: name.clone(),
                    network: p.network.clone(),
                    kind,
                    netns,
                    pid,
                    sandbox: p.sandbox,
                    ifname: p.ifname.clone()?,
                    renamed: p
                        .persist
                        .as_ref()
                        .and_then(|guard| ports::tap_name(guard.as_fd()).ok())
                        .filter(|now| Some(now) != p.ifname.as_ref()),
                    mac: p.mac?,
                    ip: p.ip,
                    mtu: p.mtu,
                    container: p.container.clone(),
                    offload: p.offload_choice,
                    port_security: (!p.security.port_security).then_some(false),
                    ip_guard: p.security.ip_guard,
                })
            })
            .collect();
        let static_fdb = self
            .fdb_show(&FdbSelect::default())
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.kind == EntryKind::Static)
            .filter(|r| r.port.as_ref().is_none_or(|p| self.ports.contains_key(p)))
            .map(|r| FdbAdd {
                network: r.network,
                mac: r.mac,
                port: r.port,
                vtep: r.vtep,
            })
            .collect();
        StateFile {
            version: STATE_VERSION,
            networks,
            ports,
            static_fdb,
        }
    }

    /// Puts back what `file` records; see [`Daemon::open_state_dir`].
    fn restore(&mut self, file: StateFile) -> RestoreReport {
        let mut report = RestoreReport::default();
        let mut drop_item = |item: SavedItem, reason: DropReason| {
            let dropped = Dropped { item, reason };
            eprintln!("vxswitch: restore: {dropped}");
            report.dropped.push(dropped);
        };
        for n in &file.networks {
            let create = NetworkCreate {
                mtu: Some(n.mtu),
                vteps: Vec::new(),
                ..n.create.clone()
            };
            match self.network_create_with(&create, n.gateway_mac) {
                Ok(_) => {
                    // Recorded as given, not with the pinned MTU.
                    if let Some(net) = self.networks.get_mut(&n.create.name) {
                        net.spec = n.create.clone();
                    }
                    report.networks += 1;
                }
                Err(e) => {
                    let name = n.create.name.clone();
                    drop_item(SavedItem::Network { name }, e.into());
                    continue;
                }
            }
            for addr in &n.vteps {
                let add = VtepAdd {
                    network: n.create.name.clone(),
                    addr: addr.clone(),
                };
                if let Err(e) = self.vtep_add(&add) {
                    let (network, addr) = (n.create.name.clone(), addr.clone());
                    drop_item(SavedItem::Vtep { network, addr }, e.into());
                }
            }
        }
        for p in &file.ports {
            match self.restore_port(p) {
                Ok(()) => report.ports += 1,
                Err(why) => {
                    let (name, network) = (p.name.clone(), p.network.clone());
                    drop_item(SavedItem::Port { name, network }, why);
                }
            }
        }
        for f in &file.static_fdb {
            if let Err(e) = self.fdb_add(f) {
                let (network, mac) = (f.network.clone(), f.mac);
                drop_item(SavedItem::StaticEntry { network, mac }, e.into());
            }
        }
        report
    }

    /// Re-attaches one saved port, or says why it cannot be.
    fn restore_port(&mut self, p: &SavedPort) -> Result<(), DropReason> {
        if !self.networks.contains_key(&p.network) {
            return Err(DropReason::NetworkMissing {
                network: p.network.clone(),
            });
        }
        if p.kind == SavedKind::Existing {
            self.port_add(&PortAdd {
                name: p.name.clone(),
                network: p.network.clone(),
                existing: true,
                container: p.container.clone(),
                offload: p.offload,
                port_security: p.port_security,
                ..PortAdd::default()
            })?;
            return Ok(());
        }
        let netns = match (&p.netns, p.pid) {
            (Some(path), _) => Netns::Path(path.clone()),
            (None, Some(pid)) => Netns::Pid(pid),
            (None, None) => Netns::Current,
        };
        let label = netns.label();
        if let (Some(label), Some(was)) = (&label, p.sandbox) {
            let file = label.clone();
            match Sandbox::check(&netns, was) {
                Sandbox::Gone => return Err(DropReason::NamespaceGone { netns: file }),
                Sandbox::Replaced => return Err(DropReason::NamespaceReplaced { netns: file }),
                Sandbox::Same => {}
            }
        }
        let tap = search::reattach_found(
            &netns,
            &p.ifname,
            p.renamed.as_deref(),
            p.mac,
            p.offload.unwrap_or(self.engine.offload()),
            self.engine.workers(),
        )
        .map_err(|e| DropReason::Tap {
            error: strip_os_error(&e.to_string()),
            netns: label,
        })?;
        // The TAP is taken charge of once its guard exists: without a
        // second fd it is left as it was found.
        let held = tap
            .fd
            .try_clone()
            .map_err(|e| DropReason::NoHandle(e.to_string()))?;
        let meta = PortMeta {
            kind: PortKind::Created,
            netns,
            // As the port was made, even if the TAP was renamed since.
            ifname: Some(p.ifname.clone()),
            mac: Some(tap.mac),
            ip: p.ip,
            container: p.container.clone(),
            vnet_hdr: tap.vnet_hdr,
            gateway: false,
            offload_choice: p.offload,
            persist: Some(PersistGuard::new(held, p.name.clone())),
            security: Security {
                port_security: p.port_security.unwrap_or(true),
                ip_guard: p.ip_guard,
            },
        };
        self.attach(&p.name, &p.network, tap.fd, tap.extra_queues, tap.mtu, meta)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::proto::{GatewayPort, Request};
    use crate::ctl::testutil::{vtep, vtep_rm, vx_daemon, vx_daemon_on};

    #[test]
    fn a_state_dir_records_changes_and_restores_networks_vteps_and_entries() {
        let dir = std::env::temp_dir().join(format!(
            "vxswitch-state-unit-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut d, port) = vx_daemon();
        let report = d.open_state_dir(&dir).unwrap();
        assert_eq!(report, RestoreReport::default());
        let create = NetworkCreate {
            name: "blue".into(),
            vni: Some(4242),
            vteps: vec!["198.18.0.2".into()],
            subnet: Some("10.42.0.0/24".into()),
            gateway: Some("10.42.0.1".into()),
            gateway_port: Some(GatewayPort::Switch),
            ..Default::default()
        };
        d.handle(Request::NetworkCreate(create.clone())).unwrap();
        d.handle(Request::VtepAdd(vtep("blue", "198.18.0.3")))
            .unwrap();
        d.handle(Request::VtepRm(vtep_rm("blue", "198.18.0.2")))
            .unwrap();
        let mac: MacAddr = "02:00:00:00:42:01".parse().unwrap();
        d.handle(Request::FdbAdd(FdbAdd {
            network: "blue".into(),
            mac,
            port: None,
            vtep: Some("198.18.0.3".into()),
        }))
        .unwrap();
        let before = d.network_ls();
        // The file follows each change: the network as given, the VTEPs now.
        let text = std::fs::read_to_string(dir.join("state.json")).unwrap();
        let file = super::super::persist::parse(text.as_bytes(), &dir).unwrap();
        assert_eq!(file.networks[0].create, create, "{text}");
        assert_eq!(
            file.networks[0].vteps,
            ["198.18.0.3:".to_string() + &port.to_string()]
        );
        // A port whose namespace is gone, as if written before a reboot.
        let mut file = file;
        file.ports.push(SavedPort {
            name: "c9".into(),
            network: "blue".into(),
            kind: SavedKind::Created,
            netns: Some("/nonexistent/netns/c9".into()),
            pid: None,
            sandbox: Some((1, 2)),
            ifname: "eth0".into(),
            renamed: None,
            mac: "02:00:00:00:42:09".parse().unwrap(),
            ip: None,
            mtu: 1450,
            container: None,
            offload: None,
            port_security: None,
            ip_guard: false,
        });
        super::super::persist::write_atomic(
            &dir,
            "state.json",
            &serde_json::to_vec(&file).unwrap(),
        )
        .unwrap();
        d.shutdown();

        let mut d = vx_daemon_on(port);
        d.set_log_events(false);
        let report = d.open_state_dir(&dir).unwrap();
        assert_eq!(report.networks, 1);
        assert_eq!(report.ports, 0);
        let dropped: Vec<String> = report.dropped.iter().map(|d| d.item.to_string()).collect();
        assert_eq!(dropped, ["port c9 (network blue)"]);
        assert_eq!(
            report.dropped[0].reason,
            DropReason::NamespaceGone {
                netns: "/nonexistent/netns/c9".into()
            }
        );
        assert_eq!(
            report.dropped[0].to_string(),
            "port c9 (network blue) dropped: its namespace /nonexistent/netns/c9 is gone"
        );
        assert_eq!(d.network_ls(), before);
        let rows = d.fdb_show(&FdbSelect::default()).unwrap();
        assert!(
            rows.iter()
                .any(|r| r.mac == mac && r.kind == EntryKind::Static),
            "{rows:?}"
        );
        // The dropped port is gone from the file too.
        let text = std::fs::read_to_string(dir.join("state.json")).unwrap();
        let file = super::super::persist::parse(text.as_bytes(), &dir).unwrap();
        assert!(file.ports.is_empty(), "{text}");
        d.shutdown();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dropped_items_read_as_the_log_says() {
        let port = || SavedItem::Port {
            name: "c1".into(),
            network: "red".into(),
        };
        let line = |item: SavedItem, reason: DropReason| Dropped { item, reason }.to_string();
        let cases = [
            (
                DropReason::NetworkMissing {
                    network: "red".into(),
                },
                "its network red was not restored",
            ),
            (
                DropReason::NamespaceGone {
                    netns: "/run/netns/c1".into(),
                },
                "its namespace /run/netns/c1 is gone",
            ),
            (
                DropReason::NamespaceReplaced {
                    netns: "/proc/42/ns/net".into(),
                },
                "/proc/42/ns/net now names another namespace than the container's",
            ),
            (
                DropReason::Tap {
                    error: "cannot attach TAP eth0: it no longer exists".into(),
                    netns: Some("/run/netns/c1".into()),
                },
                "cannot attach TAP eth0: it no longer exists (in /run/netns/c1)",
            ),
            (
                DropReason::Tap {
                    error: "cannot attach TAP c1: it no longer exists".into(),
                    netns: None,
                },
                "cannot attach TAP c1: it no longer exists",
            ),
            (
                DropReason::NoHandle("Too many open files (os error 24)".into()),
                "cannot keep a handle on its TAP: Too many open files (os error 24)",
            ),
            (CtlError::not_found("no such thing").into(), "no such thing"),
        ];
        for (reason, want) in cases {
            assert_eq!(
                line(port(), reason),
                format!("port c1 (network red) dropped: {want}")
            );
        }
        let refused = || DropReason::Refused("refused".into());
        for (item, want) in [
            (SavedItem::Network { name: "red".into() }, "network red"),
            (
                SavedItem::Vtep {
                    network: "red".into(),
                    addr: "198.18.0.2:4789".into(),
                },
                "VTEP 198.18.0.2:4789 of network red",
            ),
            (
                SavedItem::StaticEntry {
                    network: "red".into(),
                    mac: MacAddr([2, 0, 0, 0, 0, 1]),
                },
                "static FDB entry 02:00:00:00:00:01 (network red)",
            ),
        ] {
            assert_eq!(line(item, refused()), format!("{want} dropped: refused"));
        }
    }
}
