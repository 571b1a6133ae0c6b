//! The daemon's desired state: networks and ports by name, and the
//! [`Engine`] that carries their frames.
//!
//! Every request is a method returning `Result<_, CtlError>`, so the whole
//! control logic is unit-tested without a socket; the server only parses
//! lines and calls [`Daemon::handle`], the one dispatch from a [`Request`]
//! to the method of its resource. The daemon is owned by one thread (the
//! server's), so it needs no locks: the dataplane runs on its own threads
//! and is told about changes through the engine's command channel, which
//! returns only once the change is in effect (a removed port's fd is
//! closed, its FDB entries flushed).
//!
//! The methods live beside their resource: networks (`networks.rs`), their
//! gateway ports (`gateway.rs`), ports (`ports.rs`), VTEPs (`vteps.rs`), the
//! FDB (`fdb.rs`), counters (`stats.rs`) and the state directory
//! (`restore/`); the checks of names, addresses and numbers, and the
//! wording of errors, are in `validate.rs`.
//!
//! Ids: networks and ports get the lowest free [`NetId`]/[`PortId`],
//! because the engine indexes vectors by them; ids are reused after
//! removal. A port the dataplane drops on its own (its fd died) is reported
//! as [`Event::PortGone`]; [`Daemon::process_events`] forgets it. The race
//! "the port dies while `port.rm` runs" is closed by draining the events
//! whenever the engine says the port was no longer attached: the worker
//! queues the event before it answers the removal, so the id is forgotten
//! before it can be handed out again.
//!
//! VXLAN: a network created with a VNI spans hosts; its VTEPs (the remote
//! hosts' tunnel endpoints) are kept per network, keyed by address. The
//! dataplane accepts a datagram by its sender's IP and VNI, so a network
//! has at most one VTEP per IP. VTEPs the dataplane learned on its own (a
//! network with `learn_vteps`) arrive as [`Event::VtepLearned`] and are
//! recorded as dynamic. Stale events cannot leak into a reused network id:
//! the worker queues events before it answers a command, and `network.rm`
//! drains them after the network is gone from this state.
//!
//! Stopping: [`Daemon::shutdown`], or dropping the daemon, stops the
//! dataplane, which closes every port's fd. TAPs vxswitch created go with
//! them, except persistent ones (a state directory is set): dropping the
//! daemon keeps their [`PersistGuard`](crate::ports::PersistGuard)s, so the
//! next start re-attaches them, while every other way a port ends drops
//! its guard and so deletes its TAP.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use mio::Waker;

use super::networks::Network;
use super::persist::Store;
use super::ports::{GonePort, Port};
use super::proto::{ControlStats, CtlError, Pong, Reply, Request, VersionInfo, PROTOCOL_VERSION};
use super::restore::Pending;
use crate::fdb::{Fdb, NetId, PortId};
use crate::switch::{Engine, EngineConfig, Event};
use crate::time::Clock;
use crate::vxlan::VxlanConfig;

/// The crate version, as `ping` and `version` report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The control plane's state and the dataplane it drives.
pub struct Daemon {
    // Declared first, so that dropping the daemon stops the dataplane (and
    // closes its fds) before the records below go.
    pub(super) engine: Engine,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) networks: BTreeMap<String, Network>,
    pub(super) ports: BTreeMap<String, Port>,
    /// Print one line to stderr per port that went away (on by default).
    pub(super) log_events: bool,
    /// `--state-dir`: where the configuration is saved after each change
    /// (see [`super::persist`]); TAPs are created persistent then.
    pub(super) store: Option<Store>,
    /// Saving is held back while a state file is being restored.
    pub(super) restoring: bool,
    /// The control socket's counters, kept by the server (`stats` shows them).
    pub(super) control: ControlStats,
    /// What the state file records that a transient failure kept from
    /// being restored yet (see `restore/`).
    pub(super) pending: Pending,
    /// `daemon --cluster`: the agent's link, and what it made this daemon
    /// apply (see [`super::cluster`]).
    pub(super) cluster: super::cluster::Cluster,
    /// Requests answered, by verb and result (`daemon --metrics`).
    pub(super) requests: super::metrics::RequestCounts,
    /// Events for `monitor` connections, collected while any exist.
    pub(super) monitor: super::monitor::MonitorLog,
    /// A capture `capture.start` started, until the server hands it the
    /// connection.
    pub(super) pending_capture: Option<super::capture::PendingCapture>,
    /// Mirrored ports by name: the mirror, and the port's counters'
    /// address the dataplane's table knows it by.
    pub(super) mirrors: BTreeMap<String, (super::proto::MirrorRow, usize)>,
    /// `daemon --fastpath`: the eBPF fast path's maps and attachments
    /// (see [`super::fastpath`]).
    pub(super) fastpath: super::fastpath::FastPathCtl,
    /// `daemon --backend`: the backend of ports whose network and
    /// `port.add` name none.
    pub(super) default_backend: super::proto::Backend,
    /// `daemon --veth-prefix`: what the host ends of veth ports are
    /// called, then the port's name (docs/veth.md).
    pub(super) veth_prefix: String,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("networks", &self.networks)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Starts the dataplane. `notify` is woken when the dataplane raises an
    /// [`Event`]; the owner then calls [`Daemon::process_events`].
    pub fn new(
        cfg: EngineConfig,
        clock: Arc<dyn Clock>,
        notify: Option<Arc<Waker>>,
    ) -> io::Result<Daemon> {
        let engine = Engine::start(cfg, clock.clone(), notify)?;
        Ok(Daemon {
            engine,
            clock,
            networks: BTreeMap::new(),
            ports: BTreeMap::new(),
            log_events: true,
            store: None,
            restoring: false,
            control: ControlStats::default(),
            pending: Pending::default(),
            cluster: Default::default(),
            requests: Default::default(),
            monitor: Default::default(),
            pending_capture: None,
            mirrors: BTreeMap::new(),
            fastpath: Default::default(),
            default_backend: Default::default(),
            veth_prefix: crate::ports::veth::HOST_PREFIX.to_string(),
        })
    }

    /// `daemon --backend`: what ports get when neither their network nor
    /// their `port.add` names a backend.
    pub fn set_default_backend(&mut self, b: super::proto::Backend) {
        self.default_backend = b;
    }

    /// `daemon --veth-prefix`: what new veth ports' host ends are called
    /// (the port's name follows); checked by
    /// [`crate::ports::veth::check_prefix`]. Ports a restart finds again
    /// keep the names they were created with.
    pub fn set_veth_prefix(&mut self, prefix: &str) -> Result<(), String> {
        crate::ports::veth::check_prefix(prefix)?;
        self.veth_prefix = prefix.to_string();
        Ok(())
    }

    /// Whether a port that goes away is logged to stderr.
    pub fn set_log_events(&mut self, on: bool) {
        self.log_events = on;
    }

    /// The dataplane's forwarding database.
    pub fn fdb(&self) -> &Arc<Fdb> {
        self.engine.fdb()
    }

    /// The daemon-wide VXLAN settings.
    pub fn vxlan_config(&self) -> &VxlanConfig {
        self.engine.vxlan_config()
    }

    /// Stops the dataplane: every port's fd is closed, so TAPs vxswitch
    /// created disappear, except persistent ones (a state directory is
    /// set), which the next start re-attaches. Existing TAPs stay.
    pub fn shutdown(mut self) {
        let responders: Vec<_> = self
            .networks
            .values_mut()
            .filter_map(|n| n.switch_gw.take())
            .collect();
        // Stops the dataplane (see `Drop`): closing the switch's ends ends
        // the responder threads.
        drop(self);
        for gw in responders {
            gw.join();
        }
    }

    /// Answers one request.
    pub fn handle(&mut self, req: Request) -> Result<Reply, CtlError> {
        self.process_events();
        let changes = matches!(
            req,
            Request::NetworkCreate(_)
                | Request::NetworkRm(_)
                | Request::PortAdd(_)
                | Request::PortRm(_)
                | Request::PortSet(_)
                | Request::FdbAdd(_)
                | Request::FdbDel(_)
                | Request::VtepAdd(_)
                | Request::VtepRm(_)
        );
        let verb = req.name();
        let watched = (self.monitor_watching() && (changes || matches!(req, Request::FdbFlush(_))))
            .then(|| req.clone());
        if watched.is_some() {
            self.monitor_sync();
        }
        let reply = self.answer(req);
        self.count_request(verb, reply.is_ok());
        if let Some(req) = &watched {
            self.note_request(req, &reply);
        }
        self.mirror_prune();
        if changes {
            // Failed requests too: a half-done one (a port that went away
            // meanwhile) may have changed something.
            self.save_state();
        }
        reply
    }

    /// The dispatch: each request to the method of its resource.
    fn answer(&mut self, req: Request) -> Result<Reply, CtlError> {
        if let Some(reply) = self.pending_request(&req) {
            return reply;
        }
        Ok(match req {
            Request::Ping(_) => Reply::Pong(Pong {
                pong: true,
                version: VERSION.into(),
            }),
            Request::Version(_) => Reply::Version(VersionInfo {
                version: VERSION.into(),
                protocol: PROTOCOL_VERSION,
            }),
            Request::NetworkCreate(a) => Reply::Network(self.network_create(&a)?),
            Request::NetworkLs(_) => Reply::Networks(self.network_ls()),
            Request::NetworkRm(a) => Reply::NetworkRemoved(self.network_rm(&a)?),
            Request::PortAdd(a) => Reply::Port(self.port_add(&a)?),
            Request::PortLs(_) => Reply::Ports(self.port_ls()),
            Request::PortRm(a) => Reply::PortRemoved(self.port_rm(&a)?),
            Request::PortSet(a) => Reply::Port(self.port_set(&a)?),
            Request::FdbShow(a) => Reply::Fdb(self.fdb_show(&a)?),
            Request::FdbAdd(a) => Reply::FdbChanged(self.fdb_add(&a)?),
            Request::FdbDel(a) => Reply::FdbChanged(self.fdb_del(&a)?),
            Request::FdbFlush(a) => Reply::FdbFlushed(self.fdb_flush(&a)?),
            Request::VtepAdd(a) => Reply::Vtep(self.vtep_add(&a)?),
            Request::VtepLs(a) => Reply::Vteps(self.vtep_ls(&a)?),
            Request::VtepRm(a) => Reply::VtepRemoved(self.vtep_rm(&a)?),
            Request::Stats(a) => Reply::Stats(self.stats(&a)?),
            Request::ClusterStatus(_) => Reply::ClusterStatus(self.cluster_status()?),
            Request::IpamAllocate(a) => Reply::IpamAllocated(self.ipam_allocate(&a)?),
            Request::IpamRelease(a) => Reply::IpamReleased(self.ipam_release(&a)?),
            Request::Monitor(_) => Reply::Monitoring(self.monitor_start()),
            Request::CaptureStart(a) => Reply::Capturing(self.capture_start(&a)?),
            Request::MirrorAdd(a) => Reply::Mirror(self.mirror_add(&a)?),
            Request::MirrorRm(a) => Reply::Mirror(self.mirror_rm(&a)?),
            Request::MirrorLs(_) => Reply::Mirrors(self.mirror_ls()),
        })
    }

    /// Forgets ports the dataplane removed on its own and records VTEPs it
    /// learned, logging one line each. Returns the ports that went away.
    pub fn process_events(&mut self) -> Vec<GonePort> {
        let mut gone = Vec::new();
        self.monitor_sync();
        while let Ok(ev) = self.engine.events().try_recv() {
            match ev {
                Event::VtepLearned(info) => {
                    self.note_vtep(&info, true);
                    self.vtep_learned(info)
                }
                Event::VtepIdle(info) => {
                    self.note_vtep(&info, false);
                    self.vtep_idle(&info)
                }
                Event::PortGone { id, cause } => {
                    let g = self.port_gone(id, cause);
                    self.note_gone(g.as_slice());
                    gone.extend(g)
                }
            }
        }
        if !gone.is_empty() {
            self.mirror_prune();
            self.save_state();
        }
        gone
    }

    /// The control socket's counters, for the server to keep.
    pub fn control_stats_mut(&mut self) -> &mut ControlStats {
        &mut self.control
    }

    /// Whether a network of that name exists.
    pub fn has_network(&self, name: &str) -> bool {
        self.networks.contains_key(name)
    }

    /// Whether a port of that name exists.
    pub fn has_port(&self, name: &str) -> bool {
        self.ports.contains_key(name)
    }

    /// The lowest free network id.
    pub(super) fn free_net_id(&self) -> NetId {
        NetId(lowest_free(self.networks.values().map(|n| n.id.0)))
    }

    /// The lowest free port id.
    pub(super) fn free_port_id(&self) -> PortId {
        PortId(lowest_free(self.ports.values().map(|p| p.id.0)))
    }
}

impl Drop for Daemon {
    /// Keeps persistent TAPs for the next start; the dataplane stops when
    /// the engine, the first field, is dropped next.
    fn drop(&mut self) {
        // Before the dataplane goes: without a state directory the ports go
        // with the daemon, so the other hosts are told at once (revoke).
        self.cluster_stop(self.store.is_none());
        self.fastpath.on_stop(self.store.is_some());
        for port in self.ports.values_mut() {
            if let Some(guard) = port.persist.take() {
                guard.keep();
            }
        }
    }
}

/// The lowest id not in `used`.
fn lowest_free(used: impl Iterator<Item = u32>) -> u32 {
    let mut ids: Vec<u32> = used.collect();
    ids.sort_unstable();
    let mut next = 0u32;
    for id in ids {
        match id.cmp(&next) {
            std::cmp::Ordering::Equal => next = next.saturating_add(1),
            std::cmp::Ordering::Greater => break,
            std::cmp::Ordering::Less => {}
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::proto::{NetworkRm, PortRm};
    use crate::ctl::testutil::{daemon, fd_port, net, port_id};

    #[test]
    fn ids_are_lowest_free_and_reused() {
        assert_eq!(lowest_free([].into_iter()), 0);
        assert_eq!(lowest_free([0, 1, 3].into_iter()), 2);
        assert_eq!(lowest_free([3, 1, 0, 2].into_iter()), 4);
        let mut d = daemon();
        net(&mut d, "red", None, None);
        net(&mut d, "blue", None, None);
        let _a = fd_port(&mut d, "a", "red");
        let _b = fd_port(&mut d, "b", "red");
        let _c = fd_port(&mut d, "c", "blue");
        assert_eq!(
            (port_id(&d, "a"), port_id(&d, "b"), port_id(&d, "c")),
            (0, 1, 2)
        );
        d.port_rm(&PortRm { name: "b".into() }).unwrap();
        let _d = fd_port(&mut d, "d", "blue");
        assert_eq!(port_id(&d, "d"), 1);
        d.port_rm(&PortRm { name: "a".into() }).unwrap();
        d.network_rm(&NetworkRm {
            name: "red".into(),
            force: false,
        })
        .unwrap();
        net(&mut d, "green", None, None);
        assert_eq!(d.networks["green"].id, NetId(0));
        assert_eq!(d.networks["blue"].id, NetId(1));
        d.shutdown();
    }
}
