//! The dataplane: `workers` threads (one per CPU by default), each with its
//! own `mio::Poll` in which its share of every port is registered
//! edge-triggered under a token equal to the [`PortId`]: its own queue of a
//! multi-queue TAP, or, for a port with a single fd, the fd itself on
//! worker 0 (the others write to a duplicate). The kernel picks a TAP queue
//! per flow, so a flow is handled by one worker, in order.
//!
//! Per wake-up a worker reads the clock once, pins the FDB once, and drains
//! each ready port until `WouldBlock` or until it has handled `budget`
//! frames from that port; a port that still has frames is kept on a pending
//! list and served again after every other ready port had its turn, so one
//! noisy port cannot starve the rest. Frames are read into one reusable
//! buffer (behind their `virtio_net_hdr` on offload ports) and written from
//! it to each egress port, segmented or checksummed in a second reusable
//! buffer only where the egress needs it: no allocation, lock or log line
//! per frame. Every outcome is a counter in the port's [`PortStats`].
//!
//! The control plane talks to the workers through [`Engine`]: commands go on
//! each worker's crossbeam channel followed by a `Waker` nudge, and come back
//! with replies on one-shot channels, so `port rm` returns only after every
//! worker closed its fd (and a TAP the switch created is gone). A port whose
//! fd dies underneath (`ip link del`, its namespace deleted, the peer of a
//! test socket closed) is removed by the worker that notices, which tells its
//! peers and reports it once as [`Event::PortGone`].

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::decide::{decide, Decision, Ingress};
use super::stats::{DropReason, PortStats};
use crate::fdb::{Dest, Fdb, FdbConfig, FdbGuard, Learned, NetId, PortId, Refusal, VtepId};
use crate::offload::{self, Coalescer, Push, VnetHdr, VNET_HDR_LEN};
use crate::sys;
use crate::time::{Clock, Millis};
use crate::vxlan::{
    flow_hash, SocketError, Sockets, VxlanConfig, VxlanDrop, VxlanSnapshot, VxlanStats,
};
use crate::wire::vxlan::{VxlanPacket, HEADER_LEN as VXLAN_HEADER_LEN};

/// Maps consulted per datagram use ahash, not std's SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

const WAKER: Token = Token(usize::MAX);
/// Tokens at and above this are VXLAN sockets: `TUNNEL_BASE + family * 1024 + index`.
const TUNNEL_BASE: usize = 1 << 40;
/// Room in front of every received frame, so an outer VXLAN header
/// (50 bytes for IPv4, 70 for IPv6, rounded up) can be written in place.
pub const HEADROOM: usize = 128;
/// Largest frame a port can hand us in one read (a TAP's MTU is at most
/// 65521; a GSO super-frame's IP packet at most 65535 bytes).
pub const MAX_FRAME: usize = 65_535 + 18;
/// Scratch space for a super-frame cut into segments, each with its own
/// headers and, for VXLAN, room for the VXLAN header: the worst case is
/// small segments of a 64 KiB frame.
const SEGMENT_SCRATCH: usize = 256 * 1024;
/// Bytes an Ethernet header with one 802.1Q tag adds to the MTU.
pub const L2_OVERHEAD: usize = 18;
/// Consecutive unexpected read errors after which a port is declared dead.
const MAX_RX_ERRORS: u32 = 64;
/// How often the worker sweeps the FDB and checks ports for hang-ups
/// when nothing else wakes it.
const HOUSEKEEPING: Duration = Duration::from_millis(500);

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
    /// Busy polling: after the last frame, keep polling without sleeping
    /// for this long before blocking in epoll again. Trades a core's idle
    /// time for latency (no wake-up on the next frame). Zero: off.
    pub busy_poll: Duration,
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

const DEFAULT_BUDGET: usize = 64;

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
    /// ([`VNET_HDR_LEN`] bytes): a TAP opened with `IFF_VNET_HDR` and
    /// offloads on. Such a port takes super-frames and partial checksums
    /// as they come; other ports get them segmented and checksummed.
    pub vnet_hdr: bool,
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
}

/// A VTEP as the dataplane knows it.
#[derive(Clone, Debug)]
pub struct VtepInfo {
    pub id: VtepId,
    pub net: NetId,
    pub addr: SocketAddr,
    /// Learned from traffic (a network with `learn_vteps`), not configured.
    pub dynamic: bool,
    pub stats: Arc<PortStats>,
}

/// Something the dataplane decided on its own.
#[derive(Debug, Clone)]
pub enum Event {
    /// The port's fd failed for good; it was removed and its FDB entries flushed.
    PortGone { id: PortId, cause: String },
    /// A network with `learn_vteps` accepted a new sender as a VTEP.
    VtepLearned(VtepInfo),
}

/// Errors of control requests to the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("port id {0} is already attached to the dataplane")]
    PortExists(u32),
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
    #[error("the dataplane thread has stopped")]
    Stopped,
}

/// One worker's share of a port.
struct PortQueue {
    id: PortId,
    net: NetId,
    fd: OwnedFd,
    /// This worker reads the fd (else it only writes to it).
    read: bool,
    mtu: u32,
    stats: Arc<PortStats>,
    vnet_hdr: bool,
    /// Set by the first worker that finds the port dead: it alone reports it.
    gone: Arc<AtomicBool>,
}

enum Command {
    AddPort(PortQueue, Sender<Result<(), EngineError>>),
    RemovePort(PortId, Sender<bool>),
    /// A peer found the port dead: detach without a word.
    ForgetPort(PortId),
    SetNetwork(NetworkSpec, Sender<Result<(), EngineError>>),
    RemoveNetwork(NetId, Sender<Vec<VtepId>>),
    OpenTunnel(Box<Sockets>, Sender<Result<(), EngineError>>),
    AddVtep(VtepInfo, Sender<Result<(), EngineError>>),
    /// A peer learned a VTEP: take it as it is.
    AdoptVtep(VtepInfo),
    RemoveVtep(VtepId, Sender<bool>),
    Barrier(Sender<()>),
    Stop,
}

/// How one thread reaches a worker.
#[derive(Clone)]
struct Mailbox {
    cmds: Sender<Command>,
    waker: Arc<Waker>,
}

impl Mailbox {
    fn post(&self, cmd: Command) -> Result<(), EngineError> {
        self.cmds.send(cmd).map_err(|_| EngineError::Stopped)?;
        self.waker.wake().map_err(|_| EngineError::Stopped)
    }
}

/// VTEP ids, shared by the workers so that one id means one VTEP in all
/// of them, whoever created it.
#[derive(Default)]
struct IdPool(Mutex<Vec<bool>>);

impl IdPool {
    fn alloc(&self) -> VtepId {
        let mut used = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let i = used.iter().position(|u| !u).unwrap_or(used.len());
        if i == used.len() {
            used.push(false);
        }
        used[i] = true;
        VtepId(i as u32)
    }

    fn free(&self, id: VtepId) {
        let mut used = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = used.get_mut(id.0 as usize) {
            *u = false;
        }
    }
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
}

impl Engine {
    /// Starts the worker thread. `notify`, if given, is woken whenever an
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
        let fdb = Arc::new(Fdb::new(cfg.fdb));
        let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
        let vxlan_stats = Arc::new(VxlanStats::default());
        let vtep_ids = Arc::new(IdPool::default());
        let now = clock.now();
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
            let mut worker = Worker {
                index,
                poll,
                peers,
                ports: Vec::new(),
                nets: Vec::new(),
                vteps: VtepTable {
                    slots: Vec::new(),
                    by_src: HashMap::default(),
                    cfg: cfg.vxlan,
                    ids: vtep_ids.clone(),
                },
                sockets: None,
                by_vni: HashMap::default(),
                vxlan_stats: vxlan_stats.clone(),
                fdb: fdb.clone(),
                clock: clock.clone(),
                cmds,
                events: ev_tx.clone(),
                notify: notify.clone(),
                buf: vec![0u8; HEADROOM + MAX_FRAME].into_boxed_slice(),
                scratch: vec![0u8; SEGMENT_SCRATCH].into_boxed_slice(),
                udp_gso: Cell::new(true),
                gro: Gro::default(),
                tx_batch: TxBatch::default(),
                sock_drops: Vec::new(),
                pending: Vec::new(),
                ready: Vec::new(),
                gone: Vec::new(),
                learned_vteps: Vec::new(),
                budget: if cfg.budget == 0 {
                    DEFAULT_BUDGET
                } else {
                    cfg.budget
                },
                busy_poll: cfg.busy_poll,
                next_housekeeping: now,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("vxswitch-dp{index}"))
                .spawn(move || worker.run());
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
        })
    }

    /// Number of dataplane threads: a TAP port should bring this many queues.
    pub fn workers(&self) -> usize {
        self.mailboxes.len()
    }

    pub fn fdb(&self) -> &Arc<Fdb> {
        &self.fdb
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

    /// Attaches a port; returns once the worker polls its fd.
    pub fn add_port(&self, port: PortAttach) -> Result<(), EngineError> {
        let n = self.workers();
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
        let mut replies = Vec::with_capacity(n);
        for (i, (m, fd)) in self.mailboxes.iter().zip(fds).enumerate() {
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
        Ok(self
            .ask_all(|tx| Command::RemovePort(id, tx))?
            .into_iter()
            .any(|b| b))
    }

    /// Creates or updates a network. A VNI opens the VXLAN sockets on first
    /// use (so a host that never uses VXLAN never binds its port).
    pub fn set_network(&self, spec: NetworkSpec) -> Result<(), EngineError> {
        if spec.vni.is_some() {
            self.open_tunnel()?;
        }
        self.ask_all(|tx| Command::SetNetwork(spec, tx))?
            .into_iter()
            .collect()
    }

    /// Removes a network's VTEPs (flushing their FDB entries) and its VNI.
    /// Its ports must have been removed first.
    pub fn remove_network(&self, id: NetId) -> Result<(), EngineError> {
        let removed = self.ask_all(|tx| Command::RemoveNetwork(id, tx))?;
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
        let results = self.ask_all(|tx| Command::AddVtep(info.clone(), tx));
        match results.and_then(|r| r.into_iter().collect::<Result<(), _>>()) {
            Ok(()) => Ok(info),
            Err(e) => {
                let _ = self.ask_all(|tx| Command::RemoveVtep(info.id, tx));
                self.vtep_ids.free(info.id);
                Err(e)
            }
        }
    }

    /// Removes a VTEP and flushes the MACs learned behind it.
    pub fn remove_vtep(&self, id: VtepId) -> Result<bool, EngineError> {
        let removed = self
            .ask_all(|tx| Command::RemoveVtep(id, tx))?
            .into_iter()
            .any(|b| b);
        if removed {
            self.vtep_ids.free(id);
        }
        Ok(removed)
    }

    /// Returns once the worker has finished the round it is in. Frames
    /// sent after this returns are handled in a later round, with a fresh
    /// clock reading (the clock is read once per round): tests that move a
    /// manual clock use this as a fence.
    pub fn barrier(&self) -> Result<(), EngineError> {
        self.ask_all(Command::Barrier).map(drop)
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

    /// Sends a command to every worker and waits for all the answers.
    fn ask_all<T>(&self, mut cmd: impl FnMut(Sender<T>) -> Command) -> Result<Vec<T>, EngineError> {
        let mut replies = Vec::with_capacity(self.mailboxes.len());
        for m in &self.mailboxes {
            let (tx, rx) = crossbeam_channel::bounded(1);
            m.post(cmd(tx))?;
            replies.push(rx);
        }
        replies
            .into_iter()
            .map(|rx| rx.recv().map_err(|_| EngineError::Stopped))
            .collect()
    }

    /// Stops the worker and closes every port's fd.
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

/// IPv4-mapped IPv6 addresses become IPv4, so one sender has one key.
fn canonical(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

struct Port {
    id: PortId,
    net: NetId,
    file: File,
    /// This worker reads the port (its queue, or the single fd on worker 0).
    read: bool,
    /// Shared by the port's workers; see [`PortQueue::gone`].
    gone: Arc<AtomicBool>,
    /// Reads and writes carry a `virtio_net_hdr` first.
    vnet: bool,
    max_frame: usize,
    stats: Arc<PortStats>,
    /// On the pending list: the last turn ended on the budget, not on WouldBlock.
    pending: bool,
    rx_errors: Cell<u32>,
}

#[derive(Default)]
struct Net {
    members: Vec<PortId>,
    vni: Option<u32>,
    vteps: Vec<VtepId>,
    learn_vteps: bool,
    learned_vteps: usize,
}

struct Vtep {
    net: NetId,
    addr: SocketAddr,
    /// `addr` as `sendmsg` takes it.
    sockaddr: socket2::SockAddr,
    /// Largest inner frame that fits the underlay to this VTEP.
    max_frame: usize,
    stats: Arc<PortStats>,
    dynamic: bool,
}

/// Something the worker reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Port(PortId),
    /// A VXLAN socket: family (v6?) and index (0 = listening, 1.. = pool).
    Tunnel(bool, usize),
}

impl Source {
    fn token(self) -> Token {
        match self {
            Source::Port(p) => Token(p.0 as usize),
            Source::Tunnel(v6, i) => Token(TUNNEL_BASE + usize::from(v6) * 1024 + i),
        }
    }

    fn from_token(t: Token) -> Source {
        if t.0 >= TUNNEL_BASE {
            let k = t.0 - TUNNEL_BASE;
            Source::Tunnel(k >= 1024, k % 1024)
        } else {
            Source::Port(PortId(t.0 as u32))
        }
    }
}

struct Worker {
    /// 0 also does the shared chores (FDB ageing).
    index: usize,
    poll: Poll,
    /// The other workers, told about ports found dead and VTEPs learned.
    peers: Vec<Mailbox>,
    /// Indexed by `PortId`.
    ports: Vec<Option<Port>>,
    /// Indexed by `NetId`.
    nets: Vec<Net>,
    vteps: VtepTable,
    sockets: Option<Sockets>,
    by_vni: HashMap<u32, NetId>,
    vxlan_stats: Arc<VxlanStats>,
    fdb: Arc<Fdb>,
    clock: Arc<dyn Clock>,
    cmds: Receiver<Command>,
    events: Sender<Event>,
    notify: Option<Arc<Waker>>,
    buf: Box<[u8]>,
    /// Where super-frames are segmented for egresses without offloads.
    scratch: Box<[u8]>,
    /// VXLAN sends may use `UDP_SEGMENT` (until the kernel refuses once).
    udp_gso: Cell<bool>,
    /// Decapsulated TCP segments being merged for an offload port.
    gro: Gro,
    /// Small VXLAN datagrams sent together at the end of a port's turn.
    tx_batch: TxBatch,
    /// Last kernel drop count seen per VXLAN socket (`family * 1024 + index`).
    sock_drops: Vec<u32>,
    /// Sources whose last turn ended on the budget.
    pending: Vec<Source>,
    /// Sources to serve this round (scratch, reused).
    ready: Vec<Source>,
    /// Ports found dead this round, with why.
    gone: Vec<(PortId, String)>,
    /// VTEPs learned this round, announced after it.
    learned_vteps: Vec<VtepInfo>,
    budget: usize,
    busy_poll: Duration,
    next_housekeeping: Millis,
}

enum Turn {
    /// Drained to WouldBlock.
    Idle,
    /// Budget spent with frames possibly left.
    More,
    Dead(String),
}

impl Worker {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        // Until when an idle worker keeps spinning (busy poll).
        let mut spin_until = std::time::Instant::now();
        loop {
            let timeout = if !self.pending.is_empty() {
                Duration::ZERO
            } else if self.busy_poll.is_zero() || std::time::Instant::now() >= spin_until {
                HOUSEKEEPING
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Nothing sensible is left to do without an event loop.
                eprintln!("vxswitch: dataplane poll failed, stopping: {e}");
                return;
            }
            self.ready.clear();
            self.ready.append(&mut self.pending);
            let mut woken = false;
            for ev in events.iter() {
                if ev.token() == WAKER {
                    woken = true;
                    continue;
                }
                let src = Source::from_token(ev.token());
                if let Source::Port(id) = src {
                    match self.ports.get_mut(id.0 as usize) {
                        Some(Some(p)) if !p.pending => p.pending = true,
                        _ => continue,
                    }
                } else if self.ready.contains(&src) {
                    continue;
                }
                self.ready.push(src);
            }
            if !self.busy_poll.is_zero() && !self.ready.is_empty() {
                spin_until = std::time::Instant::now() + self.busy_poll;
            }
            self.serve_ready();
            if woken && !self.handle_commands() {
                return;
            }
            let now = self.clock.now();
            if now >= self.next_housekeeping {
                self.housekeeping(now);
                self.next_housekeeping = now.add_ms(HOUSEKEEPING.as_millis() as u64);
            }
        }
    }

    /// Gives every ready source one turn of up to `budget` frames.
    fn serve_ready(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let now = self.clock.now();
        let fdb = self.fdb.clone();
        let guard = fdb.pin();
        let ready = std::mem::take(&mut self.ready);
        for &src in &ready {
            let turn = match src {
                Source::Port(id) => self.port_turn(id, &guard, now),
                Source::Tunnel(v6, i) => self.tunnel_turn(v6, i, &guard, now),
            };
            match (turn, src) {
                (Turn::Idle, Source::Port(id)) => {
                    if let Some(Some(p)) = self.ports.get_mut(id.0 as usize) {
                        p.pending = false;
                    }
                }
                (Turn::Idle, Source::Tunnel(..)) => {}
                (Turn::More, _) => self.pending.push(src),
                (Turn::Dead(cause), Source::Port(id)) => self.gone.push((id, cause)),
                (Turn::Dead(_), Source::Tunnel(..)) => {}
            }
        }
        self.ready = ready;
        drop(guard);
        let mut raised = false;
        while let Some((id, cause)) = self.gone.pop() {
            let first = match self.ports.get(id.0 as usize) {
                Some(Some(p)) => !p.gone.swap(true, Ordering::AcqRel),
                _ => false,
            };
            if self.detach(id) && first {
                // The peers drop their share before anyone hears of it, so
                // a new port that reuses the id finds the slot free.
                for peer in &self.peers {
                    let _ = peer.post(Command::ForgetPort(id));
                }
                let _ = self.events.send(Event::PortGone { id, cause });
                raised = true;
            }
        }
        for v in self.learned_vteps.drain(..) {
            for peer in &self.peers {
                let _ = peer.post(Command::AdoptVtep(v.clone()));
            }
            let _ = self.events.send(Event::VtepLearned(v));
            raised = true;
        }
        if raised {
            if let Some(w) = &self.notify {
                let _ = w.wake();
            }
        }
    }

    /// Reads and forwards up to `budget` frames from one port.
    fn port_turn(&mut self, id: PortId, fdb: &FdbGuard<'_>, now: Millis) -> Turn {
        // Disjoint borrows of the worker's fields: ports, networks, VTEPs
        // and sockets are only read here; the buffers and the dead list written.
        let (ports, nets, vteps, buf, scratch, batch, gone) = (
            &self.ports,
            &self.nets,
            &self.vteps,
            &mut self.buf,
            &mut self.scratch,
            &mut self.tx_batch,
            &mut self.gone,
        );
        let tunnel = Tunnel {
            sockets: self.sockets.as_ref(),
            vteps,
            stats: &self.vxlan_stats,
            udp_gso: &self.udp_gso,
        };
        let Some(Some(port)) = ports
            .get(id.0 as usize)
            .filter(|p| p.as_ref().is_some_and(|p| p.read))
        else {
            return Turn::Idle;
        };
        let net = nets.get(port.net.0 as usize);
        let vni = net.and_then(|n| n.vni);
        // A vnet-header port's header lands right in front of the frame.
        let at = if port.vnet {
            HEADROOM - VNET_HDR_LEN
        } else {
            HEADROOM
        };
        let mut turn = Turn::More;
        for _ in 0..self.budget {
            let n = match (&port.file).read(&mut buf[at..]) {
                Ok(0) => {
                    turn = Turn::Dead("the port's fd reached end of file".into());
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    turn = Turn::Idle;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_fatal(&e) => {
                    turn = Turn::Dead(format!("read failed: {e}"));
                    break;
                }
                Err(_) => {
                    port.stats.count_drop(DropReason::RxError);
                    port.rx_errors.set(port.rx_errors.get() + 1);
                    if port.rx_errors.get() > MAX_RX_ERRORS {
                        turn = Turn::Dead("too many consecutive read errors".into());
                        break;
                    }
                    continue;
                }
            };
            port.rx_errors.set(0);
            let stats = &port.stats;
            let len = n - (HEADROOM - at);
            stats.rx_frames.inc();
            stats.rx_bytes.add(len as u64);
            let vnet = if port.vnet {
                match VnetHdr::parse(&buf[at..HEADROOM]).and_then(|h| h.validate(len).map(|_| h)) {
                    Ok(h) => h,
                    Err(_) => {
                        stats.count_drop(DropReason::BadOffload);
                        continue;
                    }
                }
            } else {
                VnetHdr::default()
            };
            let mut f = Frame {
                buf,
                start: HEADROOM,
                len,
                vnet,
                hdr_in_place: port.vnet,
            };
            let ingress = Ingress::port(id, port.net);
            let verdict = decide(fdb, ingress, f.bytes(), now);
            count_learning(stats, verdict.learned);
            let Some(net) = net else {
                stats.count_drop(DropReason::NoNetwork);
                continue;
            };
            match verdict.decision {
                Decision::Forward(out) => match ports.get(out.0 as usize) {
                    Some(Some(egress)) if egress.net == ingress.net => {
                        transmit(egress, &mut f, scratch, gone)
                    }
                    // A stale entry for a port that is gone: flood instead.
                    _ => flood(ports, net, ingress.from, &mut f, scratch, gone),
                },
                Decision::Flood => {
                    // Local ports first: VXLAN headers overwrite the
                    // virtio_net_hdr in front of the frame.
                    flood(ports, net, ingress.from, &mut f, scratch, gone);
                    if let (Some(vni), false) = (vni, net.vteps.is_empty()) {
                        let flow = flow_hash(f.bytes());
                        for &v in &net.vteps {
                            tunnel.send(v, vni, &mut f, scratch, batch, flow);
                        }
                    }
                }
                Decision::Encap(v) => match (vni, vteps.get(v)) {
                    (Some(vni), Some(vtep)) if vtep.net == ingress.net => {
                        let flow = flow_hash(f.bytes());
                        tunnel.send(v, vni, &mut f, scratch, batch, flow);
                    }
                    _ => stats.count_drop(DropReason::NoTunnel),
                },
                Decision::Drop(why) => stats.count_drop(why),
            }
        }
        // Small datagrams batched during the turn leave now.
        tunnel.flush(batch);
        turn
    }

    /// Receives and forwards up to `budget` receives from one VXLAN
    /// socket. With `UDP_GRO` one receive may carry many datagrams of one
    /// flow, end to end; each is handled on its own.
    fn tunnel_turn(&mut self, v6: bool, index: usize, fdb: &FdbGuard<'_>, now: Millis) -> Turn {
        // Decapsulated frames never go back into the tunnel (split
        // horizon), so the sockets can be lent out for the turn.
        let Some(sockets) = self.sockets.take() else {
            return Turn::Idle;
        };
        let turn = match sockets.get(v6, index) {
            Some(sock) => self.tunnel_drain(sock.as_fd(), (v6, index), fdb, now),
            None => Turn::Idle,
        };
        self.sockets = Some(sockets);
        turn
    }

    fn tunnel_drain(
        &mut self,
        fd: BorrowedFd<'_>,
        which: (bool, usize),
        fdb: &FdbGuard<'_>,
        now: Millis,
    ) -> Turn {
        let base = HEADROOM - VXLAN_HEADER_LEN;
        for _ in 0..self.budget {
            // The first datagram lands so that its inner frame starts at HEADROOM.
            let r = match sys::udp::recv_gro(fd, &mut self.buf[base..]) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Turn::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // E.g. an ICMP error queued on the socket; keep draining.
                    self.vxlan_stats.count_drop(VxlanDrop::RxError);
                    continue;
                }
            };
            if let Some(total) = r.dropped {
                let slot = usize::from(which.0) * 1024 + which.1;
                if self.sock_drops.len() <= slot {
                    self.sock_drops.resize(slot + 1, 0);
                }
                let new = total.wrapping_sub(self.sock_drops[slot]);
                self.sock_drops[slot] = total;
                self.vxlan_stats
                    .count_drops(VxlanDrop::SocketOverflow, u64::from(new));
            }
            let from = canonical(r.from);
            let seg = r.segment.max(1);
            self.vxlan_stats
                .rx_datagrams
                .add(r.len.div_ceil(seg) as u64);
            self.vxlan_stats.rx_bytes.add(r.len as u64);
            let mut off = 0;
            while off < r.len {
                let n = seg.min(r.len - off);
                self.datagram(base + off, n, from, fdb, now);
                off += n;
            }
            self.gro.flush(&self.ports, &mut self.gone);
        }
        Turn::More
    }

    /// Decapsulates and forwards the datagram at `buf[at..at + n]`. The
    /// bytes in front of it are free (an earlier datagram, or headroom).
    fn datagram(&mut self, at: usize, n: usize, from: SocketAddr, fdb: &FdbGuard<'_>, now: Millis) {
        let xs = &self.vxlan_stats;
        let packet = &self.buf[at..at + n];
        let Ok(hdr) = VxlanPacket::new_checked(packet) else {
            xs.count_drop(VxlanDrop::Truncated);
            return;
        };
        if !hdr.has_vni() {
            xs.count_drop(VxlanDrop::BadFlags);
            return;
        }
        let vni = hdr.vni();
        let Some(&net_id) = self.by_vni.get(&vni) else {
            xs.count_drop(VxlanDrop::UnknownVni);
            return;
        };
        let vtep_id = match self.vteps.by_src.get(&(from.ip(), vni)) {
            Some(&v) => v,
            None => match self.vteps.learn(&mut self.nets, net_id, vni, from) {
                Ok(info) => {
                    let id = info.id;
                    self.learned_vteps.push(info);
                    id
                }
                Err(why) => {
                    xs.count_drop(why);
                    return;
                }
            },
        };
        let Some(vtep) = self.vteps.get(vtep_id) else {
            return;
        };
        let stats = &vtep.stats;
        let len = n - VXLAN_HEADER_LEN;
        stats.rx_frames.inc();
        stats.rx_bytes.add(len as u64);
        let mut f = Frame {
            buf: &mut self.buf,
            start: at + VXLAN_HEADER_LEN,
            len,
            vnet: VnetHdr::default(),
            hdr_in_place: false,
        };
        let verdict = decide(fdb, Ingress::vtep(vtep_id, net_id), f.bytes(), now);
        count_learning(stats, verdict.learned);
        let Some(net) = self.nets.get(net_id.0 as usize) else {
            stats.count_drop(DropReason::NoNetwork);
            return;
        };
        let (ports, scratch, gone) = (&self.ports, &mut self.scratch, &mut self.gone);
        let gro = &mut self.gro;
        // TCP segments of one flow to one offload port are merged back into
        // a super-frame: one write instead of dozens.
        if let Decision::Forward(out) = verdict.decision {
            if let Some(Some(egress)) = ports.get(out.0 as usize) {
                if egress.net == net_id && egress.vnet && f.len <= egress.max_frame {
                    if gro.egress.is_some_and(|e| e != out) {
                        gro.flush(ports, gone);
                    }
                    if gro.offer(out, f.bytes(), ports, gone) {
                        return;
                    }
                }
            }
        }
        // Anything else goes after what is held, so a flow stays in order.
        gro.flush(ports, gone);
        match verdict.decision {
            Decision::Forward(out) => match ports.get(out.0 as usize) {
                Some(Some(egress)) if egress.net == net_id => {
                    transmit(egress, &mut f, scratch, gone)
                }
                _ => flood(ports, net, Dest::Remote(vtep_id), &mut f, scratch, gone),
            },
            // Split horizon: local ports only.
            Decision::Flood => flood(ports, net, Dest::Remote(vtep_id), &mut f, scratch, gone),
            Decision::Encap(_) => stats.count_drop(DropReason::SplitHorizon),
            Decision::Drop(why) => stats.count_drop(why),
        }
    }

    /// Applies queued control commands. Returns false on `Stop`.
    fn handle_commands(&mut self) -> bool {
        while let Ok(cmd) = self.cmds.try_recv() {
            match cmd {
                Command::AddPort(p, reply) => {
                    let _ = reply.send(self.attach(p));
                }
                Command::RemovePort(id, reply) => {
                    let _ = reply.send(self.detach(id));
                }
                Command::ForgetPort(id) => {
                    self.detach(id);
                }
                Command::SetNetwork(spec, reply) => {
                    let _ = reply.send(self.set_network(spec));
                }
                Command::RemoveNetwork(id, reply) => {
                    let _ = reply.send(self.remove_network(id));
                }
                Command::OpenTunnel(sockets, reply) => {
                    let _ = reply.send(self.open_tunnel(*sockets));
                }
                Command::AddVtep(info, reply) => {
                    let _ = reply.send(self.add_vtep(info));
                }
                Command::AdoptVtep(info) => {
                    if let Some(vni) = self.nets.get(info.net.0 as usize).and_then(|n| n.vni) {
                        self.vteps.insert(&mut self.nets, vni, &info);
                    }
                }
                Command::RemoveVtep(id, reply) => {
                    let _ = reply.send(self.remove_vtep(id));
                }
                Command::Barrier(reply) => {
                    let _ = reply.send(());
                }
                Command::Stop => return false,
            }
        }
        true
    }

    fn net_mut(&mut self, id: NetId) -> &mut Net {
        let i = id.0 as usize;
        if self.nets.len() <= i {
            self.nets.resize_with(i + 1, Net::default);
        }
        &mut self.nets[i]
    }

    fn attach(&mut self, p: PortQueue) -> Result<(), EngineError> {
        let idx = p.id.0 as usize;
        if matches!(self.ports.get(idx), Some(Some(_))) {
            return Err(EngineError::PortExists(p.id.0));
        }
        sys::fd::set_nonblocking(p.fd.as_fd(), true).map_err(EngineError::Register)?;
        let raw = p.fd.as_raw_fd();
        if p.read {
            self.poll
                .registry()
                .register(
                    &mut SourceFd(&raw),
                    Source::Port(p.id).token(),
                    Interest::READABLE,
                )
                .map_err(EngineError::Register)?;
        }
        if self.ports.len() <= idx {
            self.ports.resize_with(idx + 1, || None);
        }
        self.net_mut(p.net).members.push(p.id);
        let mtu = usize::try_from(p.mtu).unwrap_or(usize::MAX);
        self.ports[idx] = Some(Port {
            id: p.id,
            net: p.net,
            file: File::from(p.fd),
            read: p.read,
            gone: p.gone,
            vnet: p.vnet_hdr,
            max_frame: mtu.saturating_add(L2_OVERHEAD).min(MAX_FRAME),
            stats: p.stats,
            // Frames may already be queued: edge-triggered readiness would
            // not report them, so serve the port once right away.
            pending: p.read,
            rx_errors: Cell::new(0),
        });
        if p.read {
            self.pending.push(Source::Port(p.id));
        }
        Ok(())
    }

    /// Removes a port: deregisters and closes its fd, flushes its FDB entries.
    fn detach(&mut self, id: PortId) -> bool {
        let Some(slot) = self.ports.get_mut(id.0 as usize) else {
            return false;
        };
        let Some(port) = slot.take() else {
            return false;
        };
        if port.read {
            let raw = port.file.as_raw_fd();
            // May fail if the fd is already broken; closing it removes it from epoll anyway.
            let _ = self.poll.registry().deregister(&mut SourceFd(&raw));
        }
        if let Some(net) = self.nets.get_mut(port.net.0 as usize) {
            net.members.retain(|&m| m != port.id);
        }
        self.pending.retain(|&s| s != Source::Port(port.id));
        self.fdb.forget_dest(Dest::Local(port.id));
        drop(port);
        true
    }

    fn set_network(&mut self, spec: NetworkSpec) -> Result<(), EngineError> {
        if let Some(vni) = spec.vni {
            if self.by_vni.get(&vni).is_some_and(|&n| n != spec.id) {
                return Err(EngineError::VniInUse { vni });
            }
        }
        let old_vni = self.net_mut(spec.id).vni;
        if let Some(old) = old_vni.filter(|&o| Some(o) != spec.vni) {
            self.by_vni.remove(&old);
            self.vteps.by_src.retain(|&(_, vni), _| vni != old);
        }
        if let Some(vni) = spec.vni {
            self.by_vni.insert(vni, spec.id);
        }
        let net = self.net_mut(spec.id);
        net.vni = spec.vni;
        net.learn_vteps = spec.learn_vteps;
        Ok(())
    }

    /// Removes a network and its VTEPs, whose ids it returns.
    fn remove_network(&mut self, id: NetId) -> Vec<VtepId> {
        let vteps = self
            .nets
            .get(id.0 as usize)
            .map(|n| n.vteps.clone())
            .unwrap_or_default();
        for &v in &vteps {
            self.remove_vtep(v);
        }
        if let Some(net) = self.nets.get_mut(id.0 as usize) {
            if let Some(vni) = net.vni.take() {
                self.by_vni.remove(&vni);
            }
            *net = Net::default();
        }
        self.fdb.flush(crate::fdb::Filter {
            net: Some(id),
            ..Default::default()
        });
        vteps
    }

    fn open_tunnel(&mut self, mut sockets: Sockets) -> Result<(), EngineError> {
        for (v6, i, s) in sockets.all_mut() {
            self.poll
                .registry()
                .register(s, Source::Tunnel(v6, i).token(), Interest::READABLE)
                .map_err(EngineError::Register)?;
        }
        self.sockets = Some(sockets);
        Ok(())
    }

    fn add_vtep(&mut self, info: VtepInfo) -> Result<(), EngineError> {
        let Some(vni) = self.net_mut(info.net).vni else {
            return Err(EngineError::NoVni);
        };
        if self.vteps.by_src.contains_key(&(info.addr.ip(), vni)) {
            return Err(EngineError::VtepExists { addr: info.addr });
        }
        self.vteps.insert(&mut self.nets, vni, &info);
        Ok(())
    }

    fn remove_vtep(&mut self, id: VtepId) -> bool {
        let removed = self.vteps.remove(&mut self.nets, id);
        if removed {
            self.fdb.forget_dest(Dest::Remote(id));
        }
        removed
    }

    fn housekeeping(&mut self, now: Millis) {
        if self.index == 0 {
            self.fdb.sweep(now);
        }
        // Ports whose fd reports an error or hang-up are served once, which
        // makes the read fail and the port go through the normal dead path.
        // Edge-triggered epoll may have reported that state only once.
        let fds: Vec<_> = self
            .ports
            .iter()
            .flatten()
            .filter(|p| p.read)
            .map(|p| (p.id, p.file.as_raw_fd()))
            .collect();
        for id in sys::fd::hung_up(&fds) {
            if let Some(Some(p)) = self.ports.get_mut(id.0 as usize) {
                if !p.pending {
                    p.pending = true;
                    self.pending.push(Source::Port(id));
                }
            }
        }
    }
}

/// The VTEPs of all networks, and which senders each VNI accepts.
struct VtepTable {
    /// Indexed by `VtepId`.
    slots: Vec<Option<Vtep>>,
    /// (sender IP, VNI) -> VTEP.
    by_src: HashMap<(IpAddr, u32), VtepId>,
    cfg: VxlanConfig,
    ids: Arc<IdPool>,
}

impl VtepTable {
    #[inline]
    fn get(&self, id: VtepId) -> Option<&Vtep> {
        self.slots.get(id.0 as usize).and_then(Option::as_ref)
    }

    /// Adds a VTEP under the id it was given (the caller checked the VNI
    /// and duplicates).
    fn insert(&mut self, nets: &mut [Net], vni: u32, info: &VtepInfo) {
        let (id, net_id, addr, dynamic) = (info.id, info.net, info.addr, info.dynamic);
        let idx = id.0 as usize;
        if self.slots.len() <= idx {
            self.slots.resize_with(idx + 1, || None);
        }
        let stats = info.stats.clone();
        self.slots[idx] = Some(Vtep {
            net: net_id,
            addr,
            sockaddr: addr.into(),
            max_frame: self.cfg.max_inner_frame(addr.is_ipv6()),
            stats: stats.clone(),
            dynamic,
        });
        self.by_src.insert((addr.ip(), vni), id);
        if let Some(net) = nets.get_mut(net_id.0 as usize) {
            net.vteps.push(id);
            if dynamic {
                net.learned_vteps += 1;
            }
        }
    }

    /// Accepts an unknown sender as a VTEP if its network learns VTEPs and has room.
    fn learn(
        &mut self,
        nets: &mut [Net],
        net_id: NetId,
        vni: u32,
        from: SocketAddr,
    ) -> Result<VtepInfo, VxlanDrop> {
        let net = nets.get(net_id.0 as usize).ok_or(VxlanDrop::UnknownVni)?;
        if !net.learn_vteps {
            return Err(VxlanDrop::UnknownVtep);
        }
        if net.learned_vteps >= self.cfg.max_learned_vteps {
            return Err(VxlanDrop::VtepLimit);
        }
        // Replies go to the VXLAN port, not to the sender's (flow-hashed) source port.
        let info = VtepInfo {
            id: self.ids.alloc(),
            net: net_id,
            addr: SocketAddr::new(from.ip(), self.cfg.port),
            dynamic: true,
            stats: Arc::new(PortStats::default()),
        };
        self.insert(nets, vni, &info);
        Ok(info)
    }

    /// Forgets a VTEP; the caller flushes its FDB entries.
    fn remove(&mut self, nets: &mut [Net], id: VtepId) -> bool {
        let Some(vtep) = self.slots.get_mut(id.0 as usize).and_then(Option::take) else {
            return false;
        };
        if let Some(net) = nets.get_mut(vtep.net.0 as usize) {
            net.vteps.retain(|&v| v != id);
            if vtep.dynamic {
                net.learned_vteps = net.learned_vteps.saturating_sub(1);
            }
            if let Some(vni) = net.vni {
                self.by_src.remove(&(vtep.addr.ip(), vni));
            }
        }
        true
    }
}

fn count_learning(stats: &PortStats, learned: Option<Learned>) {
    match learned {
        Some(Learned::Refused(Refusal::TableFull)) => stats.learn_refused_table_full.inc(),
        Some(Learned::Refused(Refusal::DestLimit)) => stats.learn_refused_port_limit.inc(),
        Some(Learned::Moved { .. }) => stats.moves_in.inc(),
        _ => {}
    }
}

/// Errors after which an fd will never carry a frame again.
fn is_fatal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EBADFD
                | libc::EBADF
                | libc::ENODEV
                | libc::ENXIO
                | libc::EPIPE
                | libc::ECONNRESET
                | libc::ECONNREFUSED
        )
    )
}

/// The frame being forwarded: it sits at `buf[start..start + len]`,
/// with room in front for a `virtio_net_hdr` or a VXLAN header.
struct Frame<'a> {
    buf: &'a mut [u8],
    /// Where the frame starts in `buf`: at least [`VNET_HDR_LEN`] and
    /// the VXLAN header length, whose room in front of it may be written.
    start: usize,
    len: usize,
    /// What the frame still needs (segmentation, a checksum); all zero
    /// when it is an ordinary, complete frame.
    vnet: VnetHdr,
    /// `buf[start - VNET_HDR_LEN..start]` holds `vnet`, as written.
    hdr_in_place: bool,
}

impl Frame<'_> {
    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// The `virtio_net_hdr` and the frame, for a vnet-header port.
    fn with_vnet_hdr(&mut self) -> &[u8] {
        let s = self.start;
        if !self.hdr_in_place {
            self.vnet.emit(&mut self.buf[s - VNET_HDR_LEN..s]);
            self.hdr_in_place = true;
        }
        &self.buf[s - VNET_HDR_LEN..s + self.len]
    }

    /// Completes a partial checksum in place, so the frame can go where
    /// no one else would. Afterwards the frame needs nothing.
    fn complete_checksum(&mut self) -> Result<(), offload::OffloadError> {
        if self.vnet.needs_csum() {
            let s = self.start;
            offload::complete_checksum(&mut self.buf[s..s + self.len], &self.vnet)?;
            self.vnet = VnetHdr::default();
            self.hdr_in_place = false;
        }
        Ok(())
    }

    /// The VXLAN header and the frame: the header is written in front of it
    /// (over the `virtio_net_hdr`, which is then gone).
    fn with_vxlan_hdr(&mut self, vni: u32) -> &[u8] {
        let s = self.start;
        VxlanPacket::new_unchecked(&mut self.buf[s - VXLAN_HEADER_LEN..s]).set_header(vni);
        self.hdr_in_place = false;
        &self.buf[s - VXLAN_HEADER_LEN..s + self.len]
    }
}

/// The size of each segment a super-frame is cut into (headers included),
/// or the frame's own length.
fn wire_len(f: &Frame<'_>) -> usize {
    if f.vnet.is_gso() {
        match offload::parse_layout(f.bytes()) {
            Ok(l) => l.headers_len() + usize::from(f.vnet.gso_size),
            // Not segmentable: the segmenting egress counts it.
            Err(_) => 0,
        }
    } else {
        f.len
    }
}

/// Sends one frame to one port, counting the outcome on that port. A
/// vnet-header port takes the frame as it is; for any other port a
/// super-frame is segmented and a partial checksum completed first.
#[inline]
fn transmit(port: &Port, f: &mut Frame<'_>, scratch: &mut [u8], gone: &mut Vec<(PortId, String)>) {
    if wire_len(f) > port.max_frame {
        port.stats.count_drop(DropReason::Oversize);
        return;
    }
    if port.vnet {
        let len = f.len;
        write_frame(port, f.with_vnet_hdr(), len, gone);
        return;
    }
    if f.vnet.is_gso() {
        match offload::segment(f.bytes(), &f.vnet, scratch, 0) {
            Ok(segs) => {
                for seg in segs.frames(scratch) {
                    write_frame(port, seg, seg.len(), gone);
                }
            }
            Err(_) => port.stats.count_drop(DropReason::BadOffload),
        }
        return;
    }
    if f.complete_checksum().is_err() {
        port.stats.count_drop(DropReason::BadOffload);
        return;
    }
    let len = f.len;
    write_frame(port, f.bytes(), len, gone);
}

/// One write of `bytes` (a frame of `frame_len` bytes, maybe behind a
/// `virtio_net_hdr`), counted on the port.
#[inline]
fn write_frame(port: &Port, bytes: &[u8], frame_len: usize, gone: &mut Vec<(PortId, String)>) {
    match (&port.file).write(bytes) {
        Ok(n) if n == bytes.len() => {
            port.stats.tx_frames.inc();
            port.stats.tx_bytes.add(frame_len as u64);
        }
        // TAPs and SEQPACKET sockets take a frame whole or not at all.
        Ok(_) => port.stats.count_drop(DropReason::TxError),
        Err(e) => {
            port.stats.count_drop(tx_drop_reason(&e));
            if is_fatal(&e) && !gone.iter().any(|(id, _)| *id == port.id) {
                gone.push((port.id, format!("write failed: {e}")));
            }
        }
    }
}

fn tx_drop_reason(e: &io::Error) -> DropReason {
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::ENOBUFS) => DropReason::TxQueueFull,
        Some(libc::EIO) => DropReason::TxLinkDown,
        Some(libc::EMSGSIZE) => DropReason::Oversize,
        _ => DropReason::TxError,
    }
}

/// Sends a frame to every local port of the network except where it came from.
#[inline]
fn flood(
    ports: &[Option<Port>],
    net: &Net,
    from: Dest,
    f: &mut Frame<'_>,
    scratch: &mut [u8],
    gone: &mut Vec<(PortId, String)>,
) {
    for &m in &net.members {
        if from == Dest::Local(m) {
            continue;
        }
        if let Some(Some(p)) = ports.get(m.0 as usize) {
            transmit(p, f, scratch, gone);
        }
    }
}

/// Software GRO on decapsulation: a [`Coalescer`] and the port its
/// super-frame goes to.
#[derive(Default)]
struct Gro {
    merge: Coalescer,
    egress: Option<PortId>,
}

impl Gro {
    /// Offers a decapsulated frame bound for offload port `out`, which is
    /// the held super-frame's egress if there is one. Returns false when
    /// the frame cannot be merged: the caller sends it as usual (after a
    /// [`Gro::flush`]).
    fn offer(
        &mut self,
        out: PortId,
        frame: &[u8],
        ports: &[Option<Port>],
        gone: &mut Vec<(PortId, String)>,
    ) -> bool {
        loop {
            match self.merge.push(frame) {
                Push::Started | Push::Merged => {
                    self.egress = Some(out);
                    return true;
                }
                Push::Flush => self.flush(ports, gone),
                Push::Bypass => return false,
            }
        }
    }

    /// Writes the held super-frame (if any) to its port.
    fn flush(&mut self, ports: &[Option<Port>], gone: &mut Vec<(PortId, String)>) {
        let out = self.egress.take();
        let Some(c) = self.merge.finish() else {
            return;
        };
        if let Some(Some(port)) = out.and_then(|o| ports.get(o.0 as usize)) {
            write_frame(port, c.with_vnet_hdr(), c.frame().len(), gone);
        }
    }
}

/// Small VXLAN datagrams waiting to go out together during a port's turn:
/// runs of same-size datagrams to one VTEP through one socket, laid end to
/// end. Each run is one message (one `UDP_SEGMENT` message when it holds
/// several datagrams), and all runs through one socket leave in one
/// `sendmmsg` at the end of the turn, or when the batch is full.
struct TxBatch {
    buf: Box<[u8]>,
    len: usize,
    /// At most `sys::udp::MAX_MESSAGES`; allocated once.
    runs: Vec<TxRun>,
}

/// One run of [`TxBatch`].
#[derive(Clone, Copy, Debug)]
struct TxRun {
    /// VTEP and socket (`Sockets::get` index).
    dest: (VtepId, usize),
    start: usize,
    len: usize,
    /// Size of each datagram (the last may be shorter, which closes the run).
    stride: usize,
    count: usize,
    closed: bool,
}

/// Bytes a [`TxBatch`] holds: a few full `UDP_SEGMENT` runs.
const TX_BATCH_BYTES: usize = 4 * sys::udp::GSO_MAX_BYTES;

impl Default for TxBatch {
    fn default() -> Self {
        TxBatch {
            buf: vec![0u8; TX_BATCH_BYTES].into_boxed_slice(),
            len: 0,
            runs: Vec::with_capacity(sys::udp::MAX_MESSAGES),
        }
    }
}

/// What encapsulation needs, borrowed from the worker.
struct Tunnel<'a> {
    sockets: Option<&'a Sockets>,
    vteps: &'a VtepTable,
    stats: &'a VxlanStats,
    /// The kernel takes `UDP_SEGMENT` sends; cleared at the first refusal,
    /// after which segments go one `sendto` each.
    udp_gso: &'a Cell<bool>,
}

impl Tunnel<'_> {
    /// Sends the frame in VXLAN with `vni` to one VTEP, counting the
    /// outcome on the VTEP and the socket totals. A super-frame goes as
    /// its segments, a partial checksum is completed first: the receiving
    /// host gets ordinary frames. Small frames may wait in `batch` until
    /// [`Tunnel::flush`].
    #[inline]
    fn send(
        &self,
        id: VtepId,
        vni: u32,
        f: &mut Frame<'_>,
        scratch: &mut [u8],
        batch: &mut TxBatch,
        flow: u32,
    ) {
        let Some(vtep) = self.vteps.get(id) else {
            return;
        };
        if wire_len(f) > vtep.max_frame {
            vtep.stats.count_drop(DropReason::Oversize);
            return;
        }
        let Some(family) = self.sockets.and_then(|s| s.family(vtep.addr.is_ipv6())) else {
            vtep.stats.count_drop(DropReason::NoTunnel);
            return;
        };
        let index = family.sender_index(flow);
        if f.vnet.is_gso() {
            // What is batched for this VTEP goes first: a flow stays in order.
            self.flush(batch);
            let Some(sock) = self.sockets.and_then(|s| s.get(vtep.addr.is_ipv6(), index)) else {
                return;
            };
            let segs = match offload::segment(f.bytes(), &f.vnet, scratch, VXLAN_HEADER_LEN) {
                Ok(segs) => segs,
                Err(_) => {
                    vtep.stats.count_drop(DropReason::BadOffload);
                    return;
                }
            };
            for (head, _) in segs.slots_mut(scratch) {
                VxlanPacket::new_unchecked(head).set_header(vni);
            }
            let packets = &scratch[..segs.total_len];
            if segs.count > 1 && self.udp_gso.get() {
                self.send_segmented(vtep, sock, packets, segs.stride);
            } else {
                for packet in packets.chunks(segs.stride) {
                    self.send_one(vtep, sock, packet);
                }
            }
            return;
        }
        if f.complete_checksum().is_err() {
            vtep.stats.count_drop(DropReason::BadOffload);
            return;
        }
        let packet = f.with_vxlan_hdr(vni);
        let n = packet.len();
        let gso = self.udp_gso.get();
        let joins = batch.runs.last().is_some_and(|r| {
            gso && r.dest == (id, index)
                && !r.closed
                && n <= r.stride
                && r.count < sys::udp::GSO_MAX_SEGMENTS
                && r.len + n <= sys::udp::GSO_MAX_BYTES
        }) && batch.len + n <= batch.buf.len();
        if !joins {
            if batch.runs.len() == sys::udp::MAX_MESSAGES || batch.len + n > batch.buf.len() {
                self.flush(batch);
            }
            batch.runs.push(TxRun {
                dest: (id, index),
                start: batch.len,
                len: 0,
                stride: n,
                count: 0,
                closed: false,
            });
        }
        batch.buf[batch.len..batch.len + n].copy_from_slice(packet);
        batch.len += n;
        if let Some(run) = batch.runs.last_mut() {
            run.len += n;
            run.count += 1;
            // A shorter datagram can only be a run's last.
            run.closed = n < run.stride;
        }
    }

    /// Sends what `batch` holds: the runs through one socket in one
    /// `sendmmsg` (in order, so a flow stays in order), counting each run
    /// on its VTEP. A run the kernel refuses is sent again on its own,
    /// which counts why (and falls back to one datagram per send where
    /// `UDP_SEGMENT` is refused).
    fn flush(&self, batch: &mut TxBatch) {
        let (runs, buf) = (&batch.runs, &batch.buf);
        let mut i = 0;
        while i < runs.len() {
            let Some(sock) = self.run_socket(&runs[i]) else {
                i += 1;
                continue;
            };
            // Consecutive runs through the same socket, all to known VTEPs.
            let mut end = i + 1;
            while end < runs.len() && end - i < sys::udp::MAX_MESSAGES {
                match self.run_socket(&runs[end]) {
                    Some(s) if std::ptr::eq(s, sock) => end += 1,
                    _ => break,
                }
            }
            let group = &runs[i..end];
            if let [r] = group {
                // Alone (the usual case: one flow's ACKs): a plain send.
                self.send_run(sock, r, buf);
                i = end;
                continue;
            }
            let msgs = group.iter().filter_map(|r| {
                let vtep = self.vteps.get(r.dest.0)?;
                Some(sys::udp::Outgoing {
                    data: &buf[r.start..r.start + r.len],
                    segment: if r.count > 1 { r.stride as u16 } else { 0 },
                    dest: &vtep.sockaddr,
                })
            });
            let sent = sys::udp::send_many(sock, msgs).unwrap_or(0);
            for r in &group[..sent] {
                if let Some(vtep) = self.vteps.get(r.dest.0) {
                    let vxlan_bytes = (r.count * VXLAN_HEADER_LEN) as u64;
                    vtep.stats.tx_frames.add(r.count as u64);
                    vtep.stats.tx_bytes.add(r.len as u64 - vxlan_bytes);
                    self.stats.tx_datagrams.add(r.count as u64);
                    self.stats.tx_bytes.add(r.len as u64);
                }
            }
            if sent < group.len() {
                // The first refused run alone: its own send says why.
                self.send_run(sock, &group[sent], buf);
                i += sent + 1;
            } else {
                i = end;
            }
        }
        batch.runs.clear();
        batch.len = 0;
    }

    /// Sends one batched run by itself: one datagram, or one
    /// `UDP_SEGMENT` send, counted on its VTEP.
    fn send_run(&self, sock: &mio::net::UdpSocket, r: &TxRun, buf: &[u8]) {
        if let Some(vtep) = self.vteps.get(r.dest.0) {
            let data = &buf[r.start..r.start + r.len];
            if r.count == 1 {
                self.send_one(vtep, sock, data);
            } else {
                self.send_segmented(vtep, sock, data, r.stride);
            }
        }
    }

    /// The socket a batched run leaves through (none once its VTEP is gone).
    fn run_socket(&self, r: &TxRun) -> Option<&mio::net::UdpSocket> {
        let vtep = self.vteps.get(r.dest.0)?;
        self.sockets?.get(vtep.addr.is_ipv6(), r.dest.1)
    }

    /// Sends `packets`, datagrams of `stride` bytes laid end to end (the
    /// last may be shorter), with as few `UDP_SEGMENT` sends as the
    /// kernel's limits allow.
    fn send_segmented(
        &self,
        vtep: &Vtep,
        sock: &mio::net::UdpSocket,
        packets: &[u8],
        stride: usize,
    ) {
        let per_send = (sys::udp::GSO_MAX_BYTES / stride).clamp(1, sys::udp::GSO_MAX_SEGMENTS);
        for chunk in packets.chunks(per_send * stride) {
            let count = chunk.len().div_ceil(stride) as u64;
            let sent = match u16::try_from(stride) {
                Ok(seg) => sys::udp::send_segmented(sock, chunk, seg, &vtep.sockaddr),
                Err(_) => Err(io::Error::from_raw_os_error(libc::EMSGSIZE)),
            };
            match sent {
                Ok(n) if n == chunk.len() => {
                    let vxlan_bytes = count * VXLAN_HEADER_LEN as u64;
                    vtep.stats.tx_frames.add(count);
                    vtep.stats.tx_bytes.add(n as u64 - vxlan_bytes);
                    self.stats.tx_datagrams.add(count);
                    self.stats.tx_bytes.add(n as u64);
                }
                Ok(_) => vtep.stats.count_drops(DropReason::TxError, count),
                // No UDP GSO on this kernel or route: one datagram per send.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP)
                    ) =>
                {
                    self.udp_gso.set(false);
                    for packet in chunk.chunks(stride) {
                        self.send_one(vtep, sock, packet);
                    }
                }
                Err(e) => vtep.stats.count_drops(tx_drop_reason(&e), count),
            }
        }
    }

    #[inline]
    fn send_one(&self, vtep: &Vtep, sock: &mio::net::UdpSocket, packet: &[u8]) {
        match sock.send_to(packet, vtep.addr) {
            Ok(n) if n == packet.len() => {
                vtep.stats.tx_frames.inc();
                vtep.stats.tx_bytes.add((n - VXLAN_HEADER_LEN) as u64);
                self.stats.tx_datagrams.inc();
                self.stats.tx_bytes.add(n as u64);
            }
            Ok(_) => vtep.stats.count_drop(DropReason::TxError),
            Err(e) => vtep.stats.count_drop(tx_drop_reason(&e)),
        }
    }
}
