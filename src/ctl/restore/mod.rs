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
//! ports, static FDB entries). What cannot be put back is sorted by why:
//!
//! - *permanently* — the container's namespace is gone or names another
//!   namespace now, the TAP is gone: dropped, with a [`DropReason`] in the
//!   [`RestoreReport`] and one line on stderr, and the file is rewritten
//!   without it;
//! - *for now* — everything else: the VXLAN port is busy at boot, IPv6 is
//!   not up yet, the daemon is out of file descriptors, a netlink request
//!   timed out, the item's network is itself waiting. A transient failure
//!   never erases configuration: the item stays in the state file, is
//!   reported as *pending* (one line on stderr saying it is retried, the
//!   `pending` list of `stats` and of the report) and is retried by
//!   [`Daemon::retry_pending`] until it comes back or the operator removes
//!   it (`network rm`, `port rm`, `vtep rm`, `fdb del` act on pending items
//!   too). Its TAP stays in the container meanwhile, persistent, as the
//!   daemon left it.

mod report;

use std::path::Path;

use super::daemon::Daemon;
use super::persist::{
    SavedKind, SavedNetwork, SavedPort, StateError, StateFile, Store, STATE_VERSION,
};
use super::ports::{PortMeta, Security, VethHost};
use super::proto::{
    strip_os_error, CtlError, FdbAdd, FdbChanged, FdbSelect, NetworkCreate, NetworkRemoved,
    PendingRow, PortAdd, PortKind, PortRemoved, Reply, Request, VtepAdd, VtepRemoved, VtepRm,
};
use super::validate::with_fd_advice;
use crate::fdb::EntryKind;
use crate::ports::search::{self, Sandbox};
use crate::ports::{self, link, Netns, PersistGuard};

pub(super) use report::Pending;
use report::PutBack;
pub use report::{DropReason, Dropped, RestoreReport, SavedItem};

impl Daemon {
    /// `--state-dir DIR`: opens (or makes) `DIR`, restores what its state
    /// file records, and from then on saves the configuration there after
    /// every change; TAPs the daemon creates from now on are persistent.
    ///
    /// Ports deleted while no daemon ran (`vxswitch-cni` DEL leaves a
    /// tombstone, see [`super::persist::take_tombstones`]) are removed
    /// from the file first, so they are never brought back.
    ///
    /// Restoring never fails as a whole: a network, VTEP, port or entry
    /// that cannot be put back for good is dropped with one line on stderr
    /// naming it and why, and the file is rewritten without it; one that
    /// failed for a transient reason is kept, reported as pending and
    /// retried ([`Daemon::retry_pending`]). Only a state file that cannot
    /// be read or parsed is an error (the daemon must not start empty over
    /// it). Call this before the control socket serves anyone.
    pub fn open_state_dir(&mut self, dir: &Path) -> Result<RestoreReport, StateError> {
        let (store, file) = Store::open(dir)?;
        self.store = Some(store);
        let tombstones = super::persist::take_tombstones(dir);
        let mut report = RestoreReport::default();
        if let Some(mut file) = file {
            file.ports.retain(|p| {
                let deleted = tombstones.names.contains(&p.name);
                if deleted {
                    eprintln!(
                        "vxswitch: restore: port {} (network {}) was deleted while the daemon \
                         was down (CNI DEL); not restored",
                        p.name, p.network
                    );
                    delete_left_tap(p, self.engine.offload(), self.engine.workers());
                }
                !deleted
            });
            let deleted = &tombstones.names;
            file.static_fdb
                .retain(|f| f.port.as_ref().is_none_or(|p| !deleted.contains(p)));
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
        // Only once the file no longer names them: a crash before this
        // point applies them again at the next start.
        tombstones.remove();
        Ok(report)
    }

    /// Writes the state file if a state directory is set and something
    /// changed since the last write.
    pub fn save_state(&mut self) {
        // Every change of the configuration passes here: the cluster agent
        // hears of changed ports.
        self.cluster_local_changed();
        // ... and the dataplane of changed ARP/ND bindings.
        self.neigh_sync();
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

    /// The configuration as the state file records it, pending items
    /// included.
    pub(super) fn snapshot(&self) -> StateFile {
        let mut networks: Vec<SavedNetwork> = self
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
                    .filter(|(a, v)| !v.dynamic && !self.is_cluster_vtep(name, **a))
                    .map(|(a, _)| a.to_string())
                    .chain(
                        self.pending
                            .vteps
                            .iter()
                            .filter(|((n, _), _)| n == name)
                            .map(|((_, a), _)| a.clone()),
                    )
                    .collect(),
                gateway_mac: net.gw_port.as_ref().and(net.gateway_mac),
            })
            .collect();
        networks.extend(self.pending.networks.iter().map(|(n, _)| n.clone()));
        let mut ports: Vec<SavedPort> = self
            .ports
            .iter()
            .filter_map(|(name, p)| {
                let kind = match p.kind {
                    PortKind::Created if p.host.is_some() => SavedKind::Veth,
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
                        .and_then(PersistGuard::tap_fd)
                        .and_then(|fd| ports::tap_name(fd).ok())
                        .filter(|now| Some(now) != p.ifname.as_ref()),
                    mac: p.mac?,
                    ip: p.ip,
                    mtu: p.mtu,
                    container: p.container.clone(),
                    offload: p.offload_choice,
                    port_security: (!p.security.port_security).then_some(false),
                    ip_guard: p.security.ip_guard,
                    host_ifname: p.host.as_ref().map(|h| h.name.clone()),
                    fastpath: self.fastpath_choice(name),
                })
            })
            .collect();
        ports.extend(self.pending.ports.iter().map(|(p, _)| p.clone()));
        let mut static_fdb: Vec<FdbAdd> = self
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
        static_fdb.extend(self.pending.static_fdb.iter().map(|(f, _)| f.clone()));
        StateFile {
            version: STATE_VERSION,
            networks,
            ports,
            static_fdb,
            cluster: self.cluster_saved(),
        }
    }

    /// Puts back what `file` records; see [`Daemon::open_state_dir`].
    fn restore(&mut self, file: StateFile) -> RestoreReport {
        let cluster = file.cluster.clone();
        let mut out = PutBack::default();
        self.put_back(file, &mut out);
        if let Some(c) = &cluster {
            // The cluster agent re-applies whatever is still wanted (a
            // pending network's VTEPs too) once etcd answers.
            for (what, why) in self.cluster_restore(c) {
                eprintln!("vxswitch: restore: cluster state {what} dropped: {why}");
            }
        }
        let pending = out.pending.items();
        for d in out.dropped.iter().chain(&pending) {
            eprintln!("vxswitch: restore: {d}");
        }
        self.pending = out.pending;
        RestoreReport {
            restored_from: None,
            networks: out.networks,
            ports: out.ports,
            dropped: out.dropped,
            pending,
        }
    }

    /// Whether something the state file records is still waiting to be
    /// put back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// What is pending, for `stats`.
    pub(super) fn pending_rows(&self) -> Vec<PendingRow> {
        self.pending
            .items()
            .into_iter()
            .map(|d| PendingRow {
                item: d.item.to_string(),
                reason: d.reason.to_string(),
            })
            .collect()
    }

    /// Tries again to put back what is pending; the server calls it with a
    /// growing interval while anything is. Logs what came back, what is
    /// now dropped for good, and a pending item again only when its reason
    /// changed. Returns how many items came back.
    pub fn retry_pending(&mut self) -> usize {
        if self.pending.is_empty() {
            return 0;
        }
        let before = std::mem::take(&mut self.pending);
        let old = before.items();
        let mut out = PutBack::default();
        self.restoring = true;
        // VTEPs of networks that are up: before the entries behind them.
        for ((network, addr), _) in &before.vteps {
            let add = VtepAdd {
                network: network.clone(),
                addr: addr.clone(),
            };
            if let Err(e) = self.vtep_add(&add) {
                let key = (network.clone(), addr.clone());
                out.pending.vteps.push((key, e.into()));
            }
        }
        self.put_back(before.as_file(), &mut out);
        self.restoring = false;
        let now = out.pending.items();
        let mut back = 0;
        for was in &old {
            let still = now.iter().any(|d| d.item == was.item)
                || out.dropped.iter().any(|d| d.item == was.item);
            if !still {
                back += 1;
                eprintln!("vxswitch: restore: {} restored on retry", was.item);
            }
        }
        for d in &now {
            if !old.contains(d) {
                eprintln!("vxswitch: restore: {d}");
            }
        }
        for d in &out.dropped {
            eprintln!("vxswitch: restore: {d}");
        }
        self.pending = out.pending;
        self.save_state();
        back
    }

    /// One pass over `file`: what comes back is counted in `out`, what
    /// cannot come back for good goes to `out.dropped`, what cannot come
    /// back yet to `out.pending`.
    fn put_back(&mut self, file: StateFile, out: &mut PutBack) {
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
                    out.networks += 1;
                }
                Err(e) => {
                    out.pending.networks.push((n.clone(), e.into()));
                    continue;
                }
            }
            for addr in &n.vteps {
                let add = VtepAdd {
                    network: n.create.name.clone(),
                    addr: addr.clone(),
                };
                if let Err(e) = self.vtep_add(&add) {
                    let key = (n.create.name.clone(), addr.clone());
                    out.pending.vteps.push((key, e.into()));
                }
            }
        }
        for p in &file.ports {
            let result = if out.pending.has_network(&p.network) {
                Err(DropReason::Waiting {
                    what: format!("its network {}", p.network),
                })
            } else {
                self.restore_port(p)
            };
            match result {
                Ok(()) => out.ports += 1,
                Err(reason) if reason.is_permanent() => {
                    let (name, network) = (p.name.clone(), p.network.clone());
                    let item = SavedItem::Port { name, network };
                    out.dropped.push(Dropped { item, reason });
                }
                Err(reason) => out.pending.ports.push((p.clone(), reason)),
            }
        }
        for f in &file.static_fdb {
            if let Some(what) = waiting_on(f, &out.pending) {
                out.pending
                    .static_fdb
                    .push((f.clone(), DropReason::Waiting { what }));
            } else if let Err(e) = self.fdb_add(f) {
                let (network, mac) = (f.network.clone(), f.mac);
                let item = SavedItem::StaticEntry { network, mac };
                out.dropped.push(Dropped {
                    item,
                    reason: e.into(),
                });
            }
        }
    }

    /// Re-attaches one saved port, or says why it cannot be.
    fn restore_port(&mut self, p: &SavedPort) -> Result<(), DropReason> {
        if !self.networks.contains_key(&p.network) {
            return Err(DropReason::NetworkMissing {
                network: p.network.clone(),
            });
        }
        if p.kind == SavedKind::Existing {
            if let Ok(None) = link::link_info(&Netns::Current, &p.ifname) {
                return Err(DropReason::TapGone {
                    error: format!("there is no interface {} any more", p.ifname),
                    netns: None,
                });
            }
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
        let netns = saved_netns(p);
        let label = netns.label();
        if let (Some(label), Some(was)) = (&label, p.sandbox) {
            let file = label.clone();
            match Sandbox::check(&netns, was) {
                Sandbox::Gone => return Err(DropReason::NamespaceGone { netns: file }),
                Sandbox::Replaced => return Err(DropReason::NamespaceReplaced { netns: file }),
                Sandbox::Same => {}
            }
        }
        if p.kind == SavedKind::Veth {
            return self.restore_veth(p, netns);
        }
        let tap = search::reattach_found(
            &netns,
            &p.ifname,
            p.renamed.as_deref(),
            p.mac,
            p.offload.unwrap_or(self.engine.offload()),
            self.engine.workers(),
        )
        .map_err(|e| {
            let gone = is_tap_missing(&e);
            let errno = e.raw_os_error();
            let error = with_fd_advice(strip_os_error(&e.to_string()), errno);
            let netns = label.clone();
            if gone {
                DropReason::TapGone { error, netns }
            } else {
                DropReason::Tap { error, netns }
            }
        })?;
        // The TAP is taken charge of once its guard exists: without a
        // second fd it is left as it was found.
        let held = tap.fd.try_clone().map_err(|e| {
            let errno = e.raw_os_error();
            DropReason::NoHandle(with_fd_advice(strip_os_error(&e.to_string()), errno))
        })?;
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

    /// Re-attaches a saved veth port: its host end, found by name in the
    /// daemon's namespace; the container's end is left as it is.
    fn restore_veth(&mut self, p: &SavedPort, netns: Netns) -> Result<(), DropReason> {
        self.fastpath_choose(&p.name, p.fastpath);
        let host = saved_veth_host(p);
        let label = netns.label();
        // The sockets carry the vnet header unless the port has no offloads.
        let (queues, vnet) = (
            self.engine.workers(),
            p.offload.unwrap_or(self.engine.offload()),
        );
        let (fd, extra, vnet_hdr, guard, index) =
            ports::veth::reattach_veth(&p.name, &host, queues, vnet).map_err(|e| {
                let errno = e.raw_os_error();
                let error = with_fd_advice(strip_os_error(&e.to_string()), errno);
                if is_tap_missing(&e) {
                    DropReason::TapGone {
                        error,
                        netns: label.clone(),
                    }
                } else {
                    DropReason::Tap {
                        error,
                        netns: label.clone(),
                    }
                }
            })?;
        let meta = PortMeta {
            kind: PortKind::Created,
            netns,
            ifname: Some(p.ifname.clone()),
            mac: Some(p.mac),
            ip: p.ip,
            container: p.container.clone(),
            vnet_hdr,
            gateway: false,
            offload_choice: p.offload,
            persist: Some(guard),
            security: Security {
                port_security: p.port_security.unwrap_or(true),
                ip_guard: p.ip_guard,
            },
        };
        let host = VethHost { name: host, index };
        self.attach_veth(&p.name, &p.network, meta, (fd, extra), p.mtu, host)?;
        Ok(())
    }

    /// Requests about pending items: removing one (`network.rm`,
    /// `port.rm`, `vtep.rm`, `fdb.del`), or creating something under a
    /// pending name (refused: it would clash when the item comes back).
    /// `None`: the request is not about a pending item.
    pub(super) fn pending_request(&mut self, req: &Request) -> Option<Result<Reply, CtlError>> {
        let reason_of_net = |pending: &Pending, name: &str| {
            pending
                .networks
                .iter()
                .find(|(n, _)| n.create.name == name)
                .map(|(_, r)| r.to_string())
        };
        match req {
            Request::NetworkCreate(a) => {
                let why = reason_of_net(&self.pending, &a.name)?;
                Some(Err(CtlError::exists(format!(
                    "network {:?} is recorded in the state directory and not restored yet \
                     ({why}); it is retried, or remove it first with 'vxswitch network rm {}'",
                    a.name, a.name
                ))))
            }
            Request::PortAdd(a) => {
                if let Some((_, why)) = self.pending.ports.iter().find(|(p, _)| p.name == a.name) {
                    return Some(Err(CtlError::exists(format!(
                        "port {:?} is recorded in the state directory and not restored yet \
                         ({why}); it is retried, or remove it first with 'vxswitch port rm {}'",
                        a.name, a.name
                    ))));
                }
                let why = reason_of_net(&self.pending, &a.network)?;
                Some(Err(CtlError::busy(format!(
                    "network {:?} is not restored yet ({why}); it is retried, try again later",
                    a.network
                ))))
            }
            Request::NetworkRm(a) if self.pending.has_network(&a.name) => Some(
                self.pending_network_rm(&a.name, a.force)
                    .map(Reply::NetworkRemoved),
            ),
            Request::PortRm(a) if self.pending.has_port(&a.name) => {
                Some(Ok(Reply::PortRemoved(self.pending_port_rm(&a.name))))
            }
            Request::VtepRm(a) => self.pending_vtep_rm(a).map(|r| Ok(Reply::VtepRemoved(r))),
            Request::FdbDel(a) => {
                let i = self
                    .pending
                    .static_fdb
                    .iter()
                    .position(|(f, _)| f.network == a.network && f.mac == a.mac)?;
                let (f, _) = self.pending.static_fdb.remove(i);
                Some(Ok(Reply::FdbChanged(FdbChanged {
                    network: f.network,
                    mac: f.mac,
                    port: f.port,
                    vtep: f.vtep,
                })))
            }
            _ => None,
        }
    }

    fn pending_network_rm(&mut self, name: &str, force: bool) -> Result<NetworkRemoved, CtlError> {
        let ports: Vec<String> = self
            .pending
            .ports
            .iter()
            .filter(|(p, _)| p.network == name)
            .map(|(p, _)| p.name.clone())
            .collect();
        if !ports.is_empty() && !force {
            return Err(CtlError::busy(format!(
                "network {name:?} (not restored yet) has {} port(s) waiting with it ({}); \
                 remove them first with 'vxswitch port rm NAME', or use --force to remove them \
                 with the network",
                ports.len(),
                ports.join(", ")
            )));
        }
        for p in &ports {
            self.pending_port_rm(p);
        }
        self.pending.static_fdb.retain(|(f, _)| f.network != name);
        let mut removed_vteps = Vec::new();
        self.pending.networks.retain(|(n, _)| {
            let this = n.create.name == name;
            if this {
                removed_vteps = n.vteps.clone();
            }
            !this
        });
        Ok(NetworkRemoved {
            name: name.to_string(),
            removed_ports: ports,
            removed_vteps,
        })
    }

    /// Forgets a pending port and deletes the TAP it left behind (best
    /// effort: a namespace that is gone took the TAP with it).
    fn pending_port_rm(&mut self, name: &str) -> PortRemoved {
        let mut removed = PortRemoved {
            name: name.to_string(),
            network: String::new(),
            fdb_flushed: 0,
        };
        if let Some(i) = self.pending.ports.iter().position(|(p, _)| p.name == name) {
            let (p, _) = self.pending.ports.remove(i);
            delete_left_tap(&p, self.engine.offload(), self.engine.workers());
            removed.network = p.network;
        }
        let before = self.pending.static_fdb.len();
        self.pending
            .static_fdb
            .retain(|(f, _)| f.port.as_deref() != Some(name));
        removed.fdb_flushed = before - self.pending.static_fdb.len();
        removed
    }

    /// `vtep.rm` of a VTEP waiting with its network, or waiting on its own.
    fn pending_vtep_rm(&mut self, a: &VtepRm) -> Option<VtepRemoved> {
        let (want, port_given) = self.parse_vtep("vtep.rm", &a.addr).ok()?;
        let matches = |saved: &str| {
            saved.parse::<std::net::SocketAddr>().is_ok_and(|s| {
                if port_given {
                    s == want
                } else {
                    s.ip() == want.ip()
                }
            })
        };
        let found = if let Some((n, _)) = self
            .pending
            .networks
            .iter_mut()
            .find(|(n, _)| n.create.name == a.network)
        {
            let i = n.vteps.iter().position(|v| matches(v))?;
            n.vteps.remove(i)
        } else {
            let i = self
                .pending
                .vteps
                .iter()
                .position(|((n, v), _)| *n == a.network && matches(v))?;
            self.pending.vteps.remove(i).0 .1
        };
        Some(VtepRemoved {
            network: a.network.clone(),
            addr: found,
            fdb_flushed: 0,
        })
    }
}

/// The namespace a saved port's TAP was created in.
fn saved_netns(p: &SavedPort) -> Netns {
    match (&p.netns, p.pid) {
        (Some(path), _) => Netns::Path(path.clone()),
        (None, Some(pid)) => Netns::Pid(pid),
        (None, None) => Netns::Current,
    }
}

/// Deletes the persistent TAP a port vxswitch created left in its
/// container, if the container is still there: a port deleted while it was
/// not attached (CNI DEL with no daemon running, `port rm` of a pending
/// port). Best effort; a failure is logged.
fn delete_left_tap(p: &SavedPort, offload: bool, queues: usize) {
    if p.kind == SavedKind::Veth {
        let host = saved_veth_host(p);
        if let Err(e) = ports::veth::delete_by_name(&host) {
            eprintln!(
                "vxswitch: port {}: cannot delete its veth {host}: {}",
                p.name,
                strip_os_error(&e.to_string())
            );
        }
        return;
    }
    if p.kind != SavedKind::Created {
        return;
    }
    let netns = saved_netns(p);
    if let Some(was) = p.sandbox {
        if netns.label().is_some() && Sandbox::check(&netns, was) != Sandbox::Same {
            return;
        }
    }
    let vnet_hdr = p.offload.unwrap_or(offload);
    match search::reattach_found(
        &netns,
        &p.ifname,
        p.renamed.as_deref(),
        p.mac,
        vnet_hdr,
        queues,
    ) {
        Ok(tap) => {
            if let Err(e) = PersistGuard::new(tap.fd, p.name.clone()).clear() {
                eprintln!(
                    "vxswitch: port {}: cannot delete its TAP {} in {netns}: {e}",
                    p.name, p.ifname
                );
            }
        }
        Err(e) if is_tap_missing(&e) => {}
        Err(e) => eprintln!(
            "vxswitch: port {}: cannot delete its TAP {} in {netns}: {}",
            p.name,
            p.ifname,
            strip_os_error(&e.to_string())
        ),
    }
}

/// A saved veth port's host end: as recorded, or as its name gives it.
fn saved_veth_host(p: &SavedPort) -> String {
    p.host_ifname
        .clone()
        .unwrap_or_else(|| ports::veth::host_name(ports::veth::HOST_PREFIX, &p.name))
}

/// Whether a TAP could not be re-attached because there is none.
fn is_tap_missing(e: &ports::PortError) -> bool {
    matches!(e, ports::PortError::AttachTap { source, .. }
        | ports::PortError::AttachVeth { source, .. }
        if source.kind() == std::io::ErrorKind::NotFound)
}

/// What a static entry waits for, if its network, port or VTEP is pending.
fn waiting_on(f: &FdbAdd, pending: &Pending) -> Option<String> {
    if pending.has_network(&f.network) {
        return Some(format!("its network {}", f.network));
    }
    if let Some(port) = f.port.as_ref().filter(|p| pending.has_port(p)) {
        return Some(format!("its port {port}"));
    }
    let vtep_waits = pending.vteps.iter().any(|((n, _), _)| *n == f.network);
    match &f.vtep {
        Some(v) if vtep_waits => Some(format!("its VTEP {v}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::proto::{GatewayPort, Request};
    use crate::ctl::testutil::{vtep, vtep_rm, vx_daemon, vx_daemon_on};
    use crate::wire::MacAddr;

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
            host_ifname: None,
            fastpath: None,
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
    fn a_transient_failure_keeps_the_network_in_the_file_and_a_retry_brings_it_back() {
        let dir = std::env::temp_dir().join(format!(
            "vxswitch-state-pending-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut d, port) = vx_daemon();
        d.open_state_dir(&dir).unwrap();
        for (name, vni) in [("blue", 4243), ("green", 4244)] {
            let create = NetworkCreate {
                name: name.into(),
                vni: Some(vni),
                vteps: vec!["198.18.0.2".into()],
                ..Default::default()
            };
            d.handle(Request::NetworkCreate(create)).unwrap();
        }
        let mac: MacAddr = "02:00:00:00:43:01".parse().unwrap();
        d.handle(Request::FdbAdd(FdbAdd {
            network: "blue".into(),
            mac,
            port: None,
            vtep: Some("198.18.0.2".into()),
        }))
        .unwrap();
        let saved = std::fs::read_to_string(dir.join("state.json")).unwrap();
        d.shutdown();

        // At the next start someone else holds the VXLAN port (a kernel
        // vxlan device, a daemon not yet gone).
        let holder = std::net::UdpSocket::bind(("0.0.0.0", port)).unwrap();
        let mut d = vx_daemon_on(port);
        d.set_log_events(false);
        let report = d.open_state_dir(&dir).unwrap();
        assert_eq!((report.networks, report.ports), (0, 0));
        assert!(report.dropped.is_empty(), "{:?}", report.dropped);
        let pending: Vec<String> = report.pending.iter().map(|p| p.item.to_string()).collect();
        assert_eq!(
            pending,
            [
                "network blue",
                "network green",
                "static FDB entry 02:00:00:00:43:01 (network blue)"
            ]
        );
        let line = report.pending[0].to_string();
        assert!(
            line.starts_with("network blue not restored yet: network \"blue\": ")
                && line.contains(&format!("cannot bind the VXLAN UDP port 0.0.0.0:{port}"))
                && line
                    .ends_with("retried until it works or is removed ('vxswitch network rm blue')"),
            "{line}"
        );
        // Nothing is erased: the file says what it said.
        let kept = std::fs::read_to_string(dir.join("state.json")).unwrap();
        assert_eq!(kept, saved);
        let st = d.stats(&Default::default()).unwrap();
        assert_eq!(st.pending.len(), 3, "{:?}", st.pending);
        assert_eq!(st.pending[0].item, "network blue");
        // The names are taken while pending.
        let e = d
            .handle(Request::NetworkCreate(NetworkCreate {
                name: "blue".into(),
                ..Default::default()
            }))
            .unwrap_err();
        assert!(e.message.contains("not restored yet"), "{}", e.message);
        // The operator may give one up.
        d.handle(Request::NetworkRm(crate::ctl::proto::NetworkRm {
            name: "green".into(),
            force: false,
        }))
        .unwrap();
        let file = super::super::persist::parse(
            std::fs::read_to_string(dir.join("state.json"))
                .unwrap()
                .as_bytes(),
            &dir,
        )
        .unwrap();
        let names: Vec<&str> = file
            .networks
            .iter()
            .map(|n| n.create.name.as_str())
            .collect();
        assert_eq!(names, ["blue"]);
        assert_eq!(d.retry_pending(), 0, "the port is still held");

        drop(holder);
        assert_eq!(d.retry_pending(), 2, "the network and its entry come back");
        assert!(!d.has_pending());
        let nets = d.network_ls();
        assert_eq!(nets.len(), 1);
        assert_eq!(nets[0].name, "blue");
        let rows = d.fdb_show(&FdbSelect::default()).unwrap();
        assert!(rows.iter().any(|r| r.mac == mac), "{rows:?}");
        let file = super::super::persist::parse(
            std::fs::read_to_string(dir.join("state.json"))
                .unwrap()
                .as_bytes(),
            &dir,
        )
        .unwrap();
        assert_eq!(file.networks.len(), 1);
        assert_eq!(file.static_fdb.len(), 1);
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
                DropReason::TapGone {
                    error: "cannot attach TAP eth0: it no longer exists".into(),
                    netns: Some("/run/netns/c1".into()),
                },
                "cannot attach TAP eth0: it no longer exists (in /run/netns/c1)",
            ),
            (
                DropReason::TapGone {
                    error: "cannot attach TAP c1: it no longer exists".into(),
                    netns: None,
                },
                "cannot attach TAP c1: it no longer exists",
            ),
            (
                DropReason::Tap {
                    error: "cannot attach TAP eth0: Too many open files".into(),
                    netns: Some("/run/netns/c1".into()),
                },
                "cannot attach TAP eth0: Too many open files (in /run/netns/c1)",
            ),
            (
                DropReason::Waiting {
                    what: "its network red".into(),
                },
                "its network red is not restored yet",
            ),
            (
                DropReason::NoHandle("Too many open files (os error 24)".into()),
                "cannot keep a handle on its TAP: Too many open files (os error 24)",
            ),
            (CtlError::not_found("no such thing").into(), "no such thing"),
        ];
        for (reason, want) in cases {
            let permanent = reason.is_permanent();
            let got = line(port(), reason);
            if permanent {
                assert_eq!(got, format!("port c1 (network red) dropped: {want}"));
            } else {
                assert_eq!(
                    got,
                    format!(
                        "port c1 (network red) not restored yet: {want}; kept in the state file \
                         and retried until it works or is removed ('vxswitch port rm c1')"
                    )
                );
            }
        }
        let refused = || DropReason::NetworkMissing {
            network: "x".into(),
        };
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
            assert_eq!(
                line(item, refused()),
                format!("{want} dropped: its network x was not restored")
            );
        }
    }
}
