//! [`Engine`]: the control plane's handle to the dataplane, and the types
//! it speaks in.
//!
//! The dataplane is `workers` threads (one per CPU by default), each with
//! its own `mio::Poll` in which its share of every port is registered: its
//! own queue of a multi-queue TAP, or, for a port with a single fd, the fd
//! itself on worker 0 (the others write to a duplicate). The kernel picks a
//! TAP queue per flow, so a flow is handled by one worker, in order.
//!
//! The handle talks to the workers with commands: each goes on every
//! worker's channel followed by a `Waker` nudge, and comes back with a reply
//! on a one-shot channel, so `port rm` returns only after every worker
//! closed its fd (and a TAP the switch created is gone). A port whose fd
//! dies underneath (`ip link del`, its namespace deleted, the peer of a test
//! socket closed) is removed by the worker that notices, which tells its
//! peers and reports it once as [`Event::PortGone`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;
use mio::{Poll, Waker};

use super::command::{ask_all, Command, Mailbox, PortQueue};
use super::fatal;
use super::policy::SourcePolicy;
use super::poll::{BusyPoll, SpinBudget};
use super::uplink::{UplinkConfig, UplinkRx};
use super::worker::{Shared, Worker, WorkerTime, WAKER};
use crate::fdb::{Fdb, FdbConfig, NetId, PortId, VtepId};
use crate::gateway::NeighTable;
use crate::metrics::PortStats;
use crate::time::Clock;
use crate::vxlan::vteps::IdPool;
use crate::vxlan::{
    canonical, SocketError, Sockets, VtepInfo, VxlanConfig, VxlanSnapshot, VxlanStats,
};
use crate::wire::MacAddr;

/// Tuning of the dataplane.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineConfig {
    pub fdb: FdbConfig,
    /// Frames read from one port per turn before serving the others (0: default 64).
    pub budget: usize,
    pub vxlan: VxlanConfig,
    /// Open TAPs without a `virtio_net_hdr`: no TSO/checksum offload, one
    /// MTU-sized frame per read/write (for comparison and old kernels).
    pub no_offload: bool,
    /// Busy polling: keep polling without sleeping after the last frame,
    /// for a fixed time or as long as the next frame is expected soon
    /// ([`BusyPoll`]). Trades CPU for latency (no wake-up on the next
    /// frame). Default: off.
    pub busy_poll: BusyPoll,
    /// How uplinks take frames in (`--uplink-rx`, `--uplink-buffer`).
    pub uplink_rx: UplinkRx,
    /// Dataplane threads (0: one per CPU). Each reads its own queue of
    /// every multi-queue TAP and its own VXLAN socket (`SO_REUSEPORT`),
    /// so the kernel's flow hash keeps every flow on one worker.
    pub workers: usize,
}

/// The worker count `workers = 0` stands for: the CPUs this process may
/// run on, at most 16.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 16)
}

pub(super) const DEFAULT_BUDGET: usize = 64;

/// A port handed to the engine.
#[derive(Debug)]
pub struct PortAttach {
    pub id: PortId,
    pub net: NetId,
    /// One Ethernet frame per read/write: a TAP (IFF_TAP|IFF_NO_PI) or a
    /// SOCK_SEQPACKET socket. Made non-blocking by the engine.
    pub fd: OwnedFd,
    /// The other queues of a multi-queue TAP, one per further worker
    /// ([`Engine::workers`] − 1 of them): worker `i` reads and writes queue
    /// `i`. Otherwise empty: worker 0 reads `fd` and every worker writes
    /// to it (through a duplicate).
    pub extra_queues: Vec<OwnedFd>,
    /// The link MTU: frames longer than `mtu + 18` are not sent to this port.
    pub mtu: u32,
    pub stats: Arc<PortStats>,
    /// Every read and write on `fd` starts with a `virtio_net_hdr`
    /// ([`VNET_HDR_LEN`](crate::offload::VNET_HDR_LEN) bytes): a TAP opened
    /// with `IFF_VNET_HDR` and offloads on. Such a port takes super-frames
    /// and partial checksums as they come; other ports get them segmented
    /// and checksummed.
    pub vnet_hdr: bool,
    /// The port's own MAC, when the switch knows it: no other port or VTEP
    /// of the network may send from it, and no other port of the network
    /// may have it ([`EngineError::MacInUse`]).
    pub mac: Option<MacAddr>,
    /// Which frames the port may send (port security, the IP guard).
    pub policy: SourcePolicy,
}

/// A network's dataplane settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkSpec {
    pub id: NetId,
    /// The VXLAN network identifier, when the network spans hosts.
    pub vni: Option<u32>,
    /// Accept frames from senders that are not configured VTEPs, and add
    /// them as (dynamic) VTEPs, up to `max_learned_vteps`.
    pub learn_vteps: bool,
    /// The network's FDB budget: most entries it may hold (`None`: the
    /// daemon's `max_per_network`).
    pub fdb_max_entries: Option<usize>,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            id: NetId(0),
            vni: None,
            learn_vteps: false,
            fdb_max_entries: None,
        }
    }
}

/// Something the dataplane decided on its own.
#[derive(Debug, Clone)]
pub enum Event {
    /// The port's fd failed for good; it was removed and its FDB entries flushed.
    PortGone { id: PortId, cause: GoneCause },
    /// A network with `learn_vteps` accepted a new sender as a VTEP.
    VtepLearned(VtepInfo),
    /// A learned VTEP sent nothing for `learned_vtep_ageing_ms`: the
    /// control plane removes it ([`Engine::remove_vtep`]) as `vtep rm` would.
    VtepIdle(VtepInfo),
}

/// Why the dataplane gave up on a port's fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoneCause {
    /// A read returned end of file (the peer of a socket pair closed).
    Eof,
    /// A read failed with this errno, after which the fd never works again
    /// (the TAP's interface or namespace was deleted).
    ReadFailed(i32),
    /// A write failed so.
    WriteFailed(i32),
    /// Reads kept failing with errors that are not fatal by themselves.
    TooManyReadErrors,
}

impl GoneCause {
    /// The cause a failed read gives, if the error is fatal.
    pub(super) fn read(e: &io::Error) -> Option<GoneCause> {
        fatal_errno(e).map(GoneCause::ReadFailed)
    }

    /// The cause a failed write gives, if the error is fatal.
    pub(super) fn write(e: &io::Error) -> Option<GoneCause> {
        fatal_errno(e).map(GoneCause::WriteFailed)
    }
}

/// The errno of an error after which an fd will never carry a frame again.
fn fatal_errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error().filter(|&n| {
        matches!(
            n,
            libc::EBADFD
                | libc::EBADF
                | libc::ENODEV
                | libc::ENXIO
                | libc::EPIPE
                | libc::ECONNRESET
                | libc::ECONNREFUSED
        )
    })
}

impl fmt::Display for GoneCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GoneCause::Eof => f.write_str("the port's fd reached end of file"),
            GoneCause::ReadFailed(n) => {
                write!(f, "read failed: {}", io::Error::from_raw_os_error(n))
            }
            GoneCause::WriteFailed(n) => {
                write!(f, "write failed: {}", io::Error::from_raw_os_error(n))
            }
            GoneCause::TooManyReadErrors => f.write_str("too many consecutive read errors"),
        }
    }
}

/// Errors of control requests to the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("port id {0} is already attached to the dataplane")]
    PortExists(u32),
    #[error("MAC {mac} is already the MAC of another port of this network (port id {owner})")]
    MacInUse { mac: MacAddr, owner: u32 },
    #[error("cannot register the port's fd with the event loop: {0}")]
    Register(#[source] io::Error),
    #[error(transparent)]
    Tunnel(#[from] SocketError),
    #[error("VNI {vni} is already used by another network")]
    VniInUse { vni: u32 },
    #[error("the network has no VNI: create it with --vni to add VTEPs")]
    NoVni,
    #[error("{addr} is already a VTEP of this network")]
    VtepExists { addr: SocketAddr },
    #[error("no IPv6 VXLAN socket: this host could not bind [::]:{port}")]
    NoIpv6 { port: u16 },
    #[error("the dataplane has stopped")]
    Stopped,
}

/// Handle to the running dataplane.
pub struct Engine {
    /// One per worker thread.
    mailboxes: Vec<Mailbox>,
    threads: Vec<JoinHandle<()>>,
    fdb: Arc<Fdb>,
    events: Receiver<Event>,
    vtep_ids: Arc<IdPool>,
    vxlan_cfg: VxlanConfig,
    vxlan_stats: Arc<VxlanStats>,
    /// Source ports of the open tunnel sockets; `None` until a network with
    /// a VNI is set up (the UDP port is bound only when needed).
    tunnel: Mutex<Option<Vec<u16>>>,
    has_ipv6: AtomicBool,
    no_offload: bool,
    uplink_rx: UplinkRx,
    /// Each worker's busy and idle time.
    time: Vec<Arc<WorkerTime>>,
}

impl Engine {
    /// Starts the worker threads. `notify`, if given, is woken whenever an
    /// [`Event`] is queued.
    pub fn start(
        cfg: EngineConfig,
        clock: Arc<dyn Clock>,
        notify: Option<Arc<Waker>>,
    ) -> io::Result<Engine> {
        let n = if cfg.workers == 0 {
            default_workers()
        } else {
            cfg.workers
        };
        fatal::install_hook();
        let fdb = Arc::new(Fdb::new(cfg.fdb));
        let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
        let vxlan_stats = Arc::new(VxlanStats::default());
        let vtep_ids = Arc::new(IdPool::default());
        let shared = Shared {
            cfg,
            fdb: fdb.clone(),
            clock,
            events: ev_tx,
            notify,
            vxlan_stats: vxlan_stats.clone(),
            vtep_ids: vtep_ids.clone(),
            spin: Arc::new(SpinBudget::default()),
            time: (0..n).map(|_| Arc::new(WorkerTime::default())).collect(),
        };
        let time = shared.time.clone();
        let mut polls = Vec::with_capacity(n);
        let mut mailboxes = Vec::with_capacity(n);
        let mut inboxes = Vec::with_capacity(n);
        for _ in 0..n {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (tx, rx) = crossbeam_channel::unbounded();
            polls.push(poll);
            mailboxes.push(Mailbox { cmds: tx, waker });
            inboxes.push(rx);
        }
        let mut threads = Vec::with_capacity(n);
        for (index, (poll, cmds)) in polls.into_iter().zip(inboxes).enumerate() {
            let peers = mailboxes
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != index)
                .map(|(_, m)| m.clone())
                .collect();
            let mut worker = Worker::new(index, poll, peers, cmds, &shared);
            let spawned = std::thread::Builder::new()
                .name(format!("{}{index}", fatal::THREAD_PREFIX))
                .spawn(move || {
                    // A worker that fails takes the process with it
                    // (see `fatal`): never half a dataplane.
                    let run = std::panic::AssertUnwindSafe(|| worker.run());
                    match std::panic::catch_unwind(run) {
                        Ok(Ok(())) => {}
                        Ok(Err(why)) => fatal::worker_failed(index, "stopped", &why),
                        Err(payload) => {
                            fatal::worker_failed(index, "panicked", &fatal::panic_report(&*payload))
                        }
                    }
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    for m in &mailboxes {
                        let _ = m.post(Command::Stop);
                    }
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
            }
        }
        Ok(Engine {
            mailboxes,
            threads,
            fdb,
            events: ev_rx,
            vtep_ids,
            vxlan_cfg: cfg.vxlan,
            vxlan_stats,
            tunnel: Mutex::new(None),
            has_ipv6: AtomicBool::new(false),
            no_offload: cfg.no_offload,
            uplink_rx: cfg.uplink_rx,
            time,
        })
    }

    /// How uplinks take frames in.
    pub fn uplink_rx(&self) -> UplinkRx {
        self.uplink_rx
    }

    /// Number of dataplane threads: a TAP port should bring this many queues.
    pub fn workers(&self) -> usize {
        self.mailboxes.len()
    }

    pub fn fdb(&self) -> &Arc<Fdb> {
        &self.fdb
    }

    /// Each worker's (busy, idle) milliseconds since it started, by index:
    /// wake-ups that served frames, and the rest (see [`WorkerTime`]).
    pub fn worker_time(&self) -> Vec<(u64, u64)> {
        self.time
            .iter()
            .map(|t| {
                (
                    t.busy_ms.load(Ordering::Relaxed),
                    t.idle_ms.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Each worker's `--busy-poll` spin windows since it started, by index:
    /// (started, ended without a frame, cut short by a preemption).
    pub fn worker_spin(&self) -> Vec<(u64, u64, u64)> {
        self.time
            .iter()
            .map(|t| {
                (
                    t.spin_windows.load(Ordering::Relaxed),
                    t.spin_misses.load(Ordering::Relaxed),
                    t.spin_preempted.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Events the dataplane raised; drain with `try_recv`.
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    pub fn vxlan_config(&self) -> &VxlanConfig {
        &self.vxlan_cfg
    }

    /// Whether TAP ports get a `virtio_net_hdr` and offloads.
    pub fn offload(&self) -> bool {
        !self.no_offload
    }

    /// Counters of the VXLAN sockets, once they are open.
    pub fn vxlan_stats(&self) -> Option<VxlanSnapshot> {
        let tunnel = self.tunnel.lock().unwrap_or_else(|e| e.into_inner());
        tunnel.as_ref().map(|ports| {
            self.vxlan_stats
                .snapshot(self.vxlan_cfg.port, ports.clone())
        })
    }

    /// Attaches a port; returns once the workers poll its fd.
    pub fn add_port(&self, port: PortAttach) -> Result<(), EngineError> {
        self.add_port_as(port, None, None)
    }

    /// [`Engine::add_port`] of a port whose sockets (`port.fd` and its
    /// queues) only receive: frames to it are written to `tx` when given
    /// (a veth port reading its steering interface, `ctl::fastpath`).
    pub fn add_port_tx(&self, port: PortAttach, tx: Option<OwnedFd>) -> Result<(), EngineError> {
        self.add_port_as(port, None, tx)
    }

    /// Attaches an uplink port (a host interface's packet socket,
    /// `ports::uplink`): frames out are tagged with `uplink.vlan`, and
    /// what comes in from the LAN passes storm control and must be for a
    /// MAC of the network (`switch::uplink`).
    pub fn add_uplink(&self, port: PortAttach, uplink: UplinkConfig) -> Result<(), EngineError> {
        self.add_port_as(port, Some(uplink), None)
    }

    /// [`Engine::add_uplink`] of an uplink whose sockets (`port.fd` and its
    /// queues) only receive: frames to the LAN are written to `tx`.
    pub fn add_uplink_tx(
        &self,
        port: PortAttach,
        uplink: UplinkConfig,
        tx: Option<OwnedFd>,
    ) -> Result<(), EngineError> {
        self.add_port_as(port, Some(uplink), tx)
    }

    fn add_port_as(
        &self,
        port: PortAttach,
        uplink: Option<UplinkConfig>,
        tx: Option<OwnedFd>,
    ) -> Result<(), EngineError> {
        let n = self.workers();
        let mut txs = Vec::with_capacity(n);
        if let Some(tx) = tx {
            for _ in 1..n {
                txs.push(Some(tx.try_clone().map_err(EngineError::Register)?));
            }
            txs.insert(0, Some(tx));
        }
        txs.resize_with(n, || None);
        let per_queue = port.extra_queues.len() + 1 == n;
        let gone = Arc::new(AtomicBool::new(false));
        let mut fds = Vec::with_capacity(n);
        if per_queue {
            fds.push(port.fd);
            fds.extend(port.extra_queues);
        } else {
            // Every other worker writes through its own duplicate.
            for _ in 1..n {
                fds.push(port.fd.try_clone().map_err(EngineError::Register)?);
            }
            fds.insert(0, port.fd);
        }
        let storm = uplink.and_then(|u| super::uplink::Storm::new(u.storm_pps));
        let mut replies = Vec::with_capacity(n);
        for (i, ((m, fd), send)) in self.mailboxes.iter().zip(fds).zip(txs).enumerate() {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let q = PortQueue {
                id: port.id,
                net: port.net,
                fd,
                read: per_queue || i == 0,
                mtu: port.mtu,
                stats: port.stats.clone(),
                vnet_hdr: port.vnet_hdr,
                gone: gone.clone(),
                mac: port.mac,
                policy: port.policy,
                uplink,
                storm: storm.clone(),
                tx: send,
            };
            m.post(Command::AddPort(q, tx))?;
            replies.push(rx);
        }
        let mut result = Ok(());
        let mut took = Vec::with_capacity(n);
        for (m, rx) in self.mailboxes.iter().zip(replies) {
            match rx.recv() {
                Ok(Ok(())) => took.push(m),
                Ok(Err(e)) => result = result.and(Err(e)),
                Err(_) => result = result.and(Err(EngineError::Stopped)),
            }
        }
        if result.is_err() {
            // All or nothing: the workers that took it let it go.
            for m in took {
                let (tx, rx) = crossbeam_channel::bounded(1);
                if m.post(Command::RemovePort(port.id, tx)).is_ok() {
                    let _ = rx.recv();
                }
            }
        }
        result
    }

    /// Detaches a port, closes its fd and flushes its FDB entries. Returns
    /// whether the port was attached.
    pub fn remove_port(&self, id: PortId) -> Result<bool, EngineError> {
        Ok(ask_all(&self.mailboxes, |tx| Command::RemovePort(id, tx))?
            .into_iter()
            .any(|b| b))
    }

    /// Creates or updates a network. A VNI opens the VXLAN sockets on first
    /// use (so a host that never uses VXLAN never binds its port).
    pub fn set_network(&self, spec: NetworkSpec) -> Result<(), EngineError> {
        if spec.vni.is_some() {
            self.open_tunnel()?;
        }
        ask_all(&self.mailboxes, |tx| Command::SetNetwork(spec, tx))?
            .into_iter()
            .collect::<Result<(), _>>()?;
        self.fdb.set_network_limit(spec.id, spec.fdb_max_entries);
        Ok(())
    }

    /// Removes a network's VTEPs (flushing their FDB entries) and its VNI.
    /// Its ports must have been removed first.
    pub fn remove_network(&self, id: NetId) -> Result<(), EngineError> {
        let removed = ask_all(&self.mailboxes, |tx| Command::RemoveNetwork(id, tx))?;
        for v in removed.into_iter().flatten() {
            self.vtep_ids.free(v);
        }
        Ok(())
    }

    /// Adds a VTEP to a network that has a VNI.
    pub fn add_vtep(&self, net: NetId, addr: SocketAddr) -> Result<VtepInfo, EngineError> {
        if addr.is_ipv6() && !self.has_ipv6.load(Ordering::Relaxed) {
            return Err(EngineError::NoIpv6 {
                port: self.vxlan_cfg.port,
            });
        }
        let info = VtepInfo {
            id: self.vtep_ids.alloc(),
            net,
            addr: canonical(addr),
            dynamic: false,
            stats: Arc::new(PortStats::default()),
        };
        let results = ask_all(&self.mailboxes, |tx| Command::AddVtep(info.clone(), tx));
        match results.and_then(|r| r.into_iter().collect::<Result<(), _>>()) {
            Ok(()) => Ok(info),
            Err(e) => {
                let _ = ask_all(&self.mailboxes, |tx| Command::RemoveVtep(info.id, tx));
                self.vtep_ids.free(info.id);
                Err(e)
            }
        }
    }

    /// Removes a VTEP and flushes the MACs learned behind it.
    pub fn remove_vtep(&self, id: VtepId) -> Result<bool, EngineError> {
        let removed = ask_all(&self.mailboxes, |tx| Command::RemoveVtep(id, tx))?
            .into_iter()
            .any(|b| b);
        if removed {
            self.vtep_ids.free(id);
        }
        Ok(removed)
    }

    /// Sets (or with `None` clears) a network's ARP/ND suppression table:
    /// every worker swaps it in whole between two rounds; returns once all
    /// did. Frames read no lock for it.
    pub fn set_neigh(&self, net: NetId, table: Option<Arc<NeighTable>>) -> Result<(), EngineError> {
        ask_all(&self.mailboxes, |tx| {
            Command::SetNeigh(net, table.clone(), tx)
        })
        .map(drop)
    }

    /// Test-only: makes worker `index` panic, as a bug would. Not reachable
    /// through the control socket; tests use it to check that a failed
    /// worker takes the daemon down (docs/architecture.md, "Workers and
    /// queues").
    #[doc(hidden)]
    pub fn debug_panic_worker(&self, index: usize) -> Result<(), EngineError> {
        self.mailboxes
            .get(index)
            .ok_or(EngineError::Stopped)?
            .post(Command::DebugPanic)
    }

    /// Returns once every worker has finished the round it is in. Frames
    /// sent after this returns are handled in a later round, with a fresh
    /// clock reading (the clock is read once per round): tests that move a
    /// manual clock use this as a fence.
    pub fn barrier(&self) -> Result<(), EngineError> {
        ask_all(&self.mailboxes, Command::Barrier).map(drop)
    }

    fn open_tunnel(&self) -> Result<(), EngineError> {
        let mut tunnel = self.tunnel.lock().unwrap_or_else(|e| e.into_inner());
        if tunnel.is_some() {
            return Ok(());
        }
        // One set of sockets per worker, sharing the ports (SO_REUSEPORT)
        // when there are several: the kernel spreads arriving flows.
        let n = self.workers();
        if n > 1 {
            // SO_REUSEPORT would quietly share the port with another
            // process doing the same: check first that it is free.
            drop(Sockets::open(&self.vxlan_cfg, false)?);
        }
        let mut sets = Vec::with_capacity(n);
        for _ in 0..n {
            sets.push(Sockets::open(&self.vxlan_cfg, n > 1)?);
        }
        let ports = sets[0].source_ports();
        self.has_ipv6.store(sets[0].v6.is_some(), Ordering::Relaxed);
        let mut replies = Vec::with_capacity(n);
        for (m, set) in self.mailboxes.iter().zip(sets) {
            let (tx, rx) = crossbeam_channel::bounded(1);
            m.post(Command::OpenTunnel(Box::new(set), tx))?;
            replies.push(rx);
        }
        for rx in replies {
            rx.recv().map_err(|_| EngineError::Stopped)??;
        }
        *tunnel = Some(ports);
        Ok(())
    }

    /// Stops the workers and closes every port's fd.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        for m in &self.mailboxes {
            let _ = m.post(Command::Stop);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_causes_read_as_before() {
        assert_eq!(
            GoneCause::Eof.to_string(),
            "the port's fd reached end of file"
        );
        assert_eq!(
            GoneCause::TooManyReadErrors.to_string(),
            "too many consecutive read errors"
        );
        let epipe = io::Error::from_raw_os_error(libc::EPIPE);
        assert_eq!(
            GoneCause::write(&epipe).unwrap().to_string(),
            format!("write failed: {epipe}")
        );
        let enodev = io::Error::from_raw_os_error(libc::ENODEV);
        assert_eq!(
            GoneCause::read(&enodev).unwrap().to_string(),
            format!("read failed: {enodev}")
        );
        // Not fatal: no cause.
        assert_eq!(
            GoneCause::read(&io::Error::from_raw_os_error(libc::EAGAIN)),
            None
        );
        assert_eq!(GoneCause::write(&io::Error::other("x")), None);
    }
}
