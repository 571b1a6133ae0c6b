//! One dataplane thread: its state, its loop, and the control commands it
//! applies between turns.
//!
//! The state is grouped by who writes it during a turn, so a turn borrows
//! each group on its own: [`Tables`] (ports, networks, the VTEP table) is
//! only read while frames are forwarded (but for a VTEP learned from a
//! datagram); the receive buffer, [`Egress`] and the [`Tunnel`] are written.
//!
//! Per wake-up a worker reads the clock once, pins the FDB once, and gives
//! each ready source (a port, a VXLAN socket) a turn of up to `budget`
//! frames or receives (`ingress`); a source that still has data is kept on
//! a pending list and served again after every other ready source had its
//! turn, so one noisy port cannot starve the rest. After the round it
//! detaches the ports found dead and announces the VTEPs it learned, to its
//! peers first and then to the control plane.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::command::{Command, Mailbox, PortQueue};
use super::egress::Egress;
use super::handle::{EngineConfig, EngineError, Event, GoneCause, NetworkSpec, DEFAULT_BUDGET};
use super::policy::{OwnedMacs, Policy, SourcePolicy};
use super::poll::{SpinBudget, Spinner};
use super::uplink::{RingRx, UplinkPort};
use super::{HEADROOM, L2_OVERHEAD, MAX_FRAME};
use crate::fdb::{Dest, Fdb, NetId, PortId, VtepId};
use crate::gateway::NeighTable;
use crate::metrics::PortStats;
use crate::sys;
use crate::time::{Clock, Millis};
use crate::vxlan::vteps::{AddError, IdPool, VniInUse, VtepTable};
use crate::vxlan::{Sockets, Tunnel, VtepInfo, VxlanStats};
use crate::wire::MacAddr;

pub(super) const WAKER: Token = Token(usize::MAX);
/// Tokens at and above this are VXLAN sockets: `TUNNEL_BASE + family * 1024 + index`.
const TUNNEL_BASE: usize = 1 << 40;
/// How often the worker sweeps the FDB and checks ports for hang-ups
/// when nothing else wakes it.
const HOUSEKEEPING: Duration = Duration::from_millis(500);

/// A worker's time, split into wake-ups that served frames (busy) and the
/// rest (idle: waiting in `poll`, or woken with nothing to read), in
/// milliseconds. Measured with the two clock reads the loop does anyway
/// per wake-up (the batch's `now`, the housekeeping check), so it costs no
/// clock read more; a wake-up shorter than a millisecond counts 0 or 1
/// ms, which is right on average over many wake-ups. Only the worker
/// writes it, the control plane reads it (`stats`, the metrics).
#[derive(Debug, Default)]
pub struct WorkerTime {
    pub busy_ms: AtomicU64,
    pub idle_ms: AtomicU64,
    /// `--busy-poll`: spin windows started; of them, those that ended
    /// without a frame and those in which the worker was preempted (the
    /// [`Spinner`]'s own counts, copied after each wake-up).
    pub spin_windows: AtomicU64,
    pub spin_misses: AtomicU64,
    pub spin_preempted: AtomicU64,
}

impl WorkerTime {
    /// Copies the spinner's counts (plain stores: only this worker writes
    /// them, and only when busy polling is on).
    #[inline]
    fn publish_spin(&self, s: &Spinner) {
        self.spin_windows.store(s.windows, Ordering::Relaxed);
        self.spin_misses.store(s.misses, Ordering::Relaxed);
        self.spin_preempted.store(s.preempted, Ordering::Relaxed);
    }

    /// Adds `ms` to a counter only this worker writes: no read-modify-write
    /// instruction, and none at all for the usual 0.
    #[inline]
    fn add(c: &AtomicU64, ms: u64) {
        if ms != 0 {
            c.store(
                c.load(Ordering::Relaxed).wrapping_add(ms),
                Ordering::Relaxed,
            );
        }
    }
}

/// What every worker gets a copy of.
pub(super) struct Shared {
    pub(super) cfg: EngineConfig,
    pub(super) fdb: Arc<Fdb>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) events: Sender<Event>,
    pub(super) notify: Option<Arc<Waker>>,
    pub(super) vxlan_stats: Arc<VxlanStats>,
    pub(super) vtep_ids: Arc<IdPool>,
    /// The spin slots of `--busy-poll auto`.
    pub(super) spin: Arc<SpinBudget>,
    /// Each worker's busy and idle time, by index.
    pub(super) time: Vec<Arc<WorkerTime>>,
}

/// One worker's share of a port.
pub(super) struct Port {
    pub(super) id: PortId,
    pub(super) net: NetId,
    pub(super) file: File,
    /// This worker reads the port (its queue, or the single fd on worker 0).
    pub(super) read: bool,
    /// Shared by the port's workers; see [`PortQueue::gone`].
    gone: Arc<AtomicBool>,
    /// Reads and writes carry a `virtio_net_hdr` first.
    pub(super) vnet: bool,
    /// A packet socket that hands VLAN tags beside the frame (a veth's
    /// host end, `sys::pktport::keep_vlan_tags`): read with
    /// `recv_tagged`, the tag put back in the frame.
    pub(super) tags_aside: bool,
    pub(super) max_frame: usize,
    pub(super) stats: Arc<PortStats>,
    /// On the pending list: the last turn ended on the budget, not on WouldBlock.
    pending: bool,
    pub(super) rx_errors: Cell<u32>,
    /// The port's own MAC, if known (in [`Tables::owned`]).
    mac: Option<MacAddr>,
    /// Which frames it may send.
    pub(super) policy: SourcePolicy,
    /// An uplink port's own rules (`switch::uplink`).
    pub(super) uplink: Option<UplinkPort>,
    /// An uplink socket's receive ring, which this worker reads.
    pub(super) ring: Option<RingRx>,
    /// The socket frames to the port go through when `file` only
    /// receives: a port on the eBPF fast path whose sockets are on its
    /// steering interface (`ports::uplink::create_steer`), sending through
    /// a socket bound to the uplink or host end for no protocol.
    pub(super) tx: Option<File>,
}

impl Port {
    /// The worker's share of a port, made non-blocking and registered by
    /// the caller.
    pub(super) fn new(p: PortQueue, ring: Option<RingRx>) -> Port {
        let mtu = usize::try_from(p.mtu).unwrap_or(usize::MAX);
        let tags_aside = p.uplink.is_none() && sys::pktport::keeps_vlan_tags(p.fd.as_fd());
        Port {
            tags_aside,
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
            mac: p.mac,
            policy: p.policy,
            uplink: p.uplink.map(|c| UplinkPort::new(c, p.storm)),
            ring,
            tx: p.tx.map(File::from),
        }
    }

    /// The next frame (behind its `virtio_net_hdr` on an offload port)
    /// into `buf`: one `read`, or from the port's receive ring.
    #[inline]
    pub(super) fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.ring {
            None => (&self.file).read(buf),
            Some(r) => r.read(&self.file, &self.stats, buf),
        }
    }
}

/// A network's local side (its overlay side is in the [`VtepTable`]).
#[derive(Default)]
pub(super) struct Net {
    pub(super) members: Vec<PortId>,
    /// ARP/ND suppression: the bindings the switch answers for.
    pub(super) neigh: Option<Arc<NeighTable>>,
}

/// What a turn forwards by: read while frames go through, changed by
/// commands between turns.
pub(super) struct Tables {
    /// Indexed by `PortId`.
    pub(super) ports: Vec<Option<Port>>,
    /// Indexed by `NetId`.
    pub(super) nets: Vec<Net>,
    pub(super) vteps: VtepTable,
    /// The ports' own MACs: no other ingress of their network may send
    /// from them.
    pub(super) owned: OwnedMacs,
}

impl Tables {
    #[inline]
    pub(super) fn port(&self, id: PortId) -> Option<&Port> {
        self.ports.get(id.0 as usize).and_then(Option::as_ref)
    }

    #[inline]
    pub(super) fn net(&self, id: NetId) -> Option<&Net> {
        self.nets.get(id.0 as usize)
    }

    /// What `decide()` checks of a port's frames.
    #[inline(always)]
    pub(super) fn policy<'a>(&'a self, port: &'a Port) -> Policy<'a> {
        match &port.policy {
            SourcePolicy::Mac(m) => Policy::Mac(*m),
            SourcePolicy::Guarded(g) => Policy::Guarded(g),
            SourcePolicy::Open => Policy::NotOwned(&self.owned),
        }
    }

    /// Adds a port to the table and to its network's members.
    pub(super) fn insert(&mut self, port: Port) {
        let idx = port.id.0 as usize;
        if self.ports.len() <= idx {
            self.ports.resize_with(idx + 1, || None);
        }
        self.net_mut(port.net).members.push(port.id);
        self.ports[idx] = Some(port);
    }

    pub(super) fn net_mut(&mut self, id: NetId) -> &mut Net {
        let i = id.0 as usize;
        if self.nets.len() <= i {
            self.nets.resize_with(i + 1, Net::default);
        }
        &mut self.nets[i]
    }
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

/// How a source's turn ended.
pub(super) enum Turn {
    /// Drained to WouldBlock.
    Idle,
    /// Budget spent with frames possibly left.
    More,
    Dead(GoneCause),
}

pub(super) struct Worker {
    /// 0 also does the shared chores (FDB ageing).
    index: usize,
    poll: Poll,
    /// The other workers, told about ports found dead and VTEPs learned.
    peers: Vec<Mailbox>,
    cmds: Receiver<Command>,
    events: Sender<Event>,
    notify: Option<Arc<Waker>>,
    fdb: Arc<Fdb>,
    clock: Arc<dyn Clock>,
    pub(super) budget: usize,
    /// Whether an idle worker polls on without sleeping (`--busy-poll`).
    spinner: Spinner,
    next_housekeeping: Millis,
    /// Where this worker's busy and idle time is counted.
    time: Arc<WorkerTime>,
    /// Sources whose last turn ended on the budget.
    pending: Vec<Source>,
    /// Sources to serve this round (scratch, reused).
    ready: Vec<Source>,
    pub(super) tables: Tables,
    /// Where frames are read to, at [`HEADROOM`].
    pub(super) rx: Box<[u8]>,
    pub(super) egress: Egress,
    pub(super) tunnel: Tunnel,
}

impl Worker {
    pub(super) fn new(
        index: usize,
        poll: Poll,
        peers: Vec<Mailbox>,
        cmds: Receiver<Command>,
        s: &Shared,
    ) -> Worker {
        Worker {
            index,
            poll,
            peers,
            cmds,
            events: s.events.clone(),
            notify: s.notify.clone(),
            fdb: s.fdb.clone(),
            clock: s.clock.clone(),
            budget: if s.cfg.budget == 0 {
                DEFAULT_BUDGET
            } else {
                s.cfg.budget
            },
            spinner: Spinner::new(s.cfg.busy_poll, s.spin.clone()),
            next_housekeeping: s.clock.now(),
            time: s.time[index].clone(),
            pending: Vec::new(),
            ready: Vec::new(),
            tables: Tables {
                ports: Vec::new(),
                nets: Vec::new(),
                vteps: VtepTable::new(s.cfg.vxlan, s.vtep_ids.clone()),
                owned: OwnedMacs::default(),
            },
            rx: vec![0u8; HEADROOM + MAX_FRAME].into_boxed_slice(),
            egress: Egress::default(),
            tunnel: Tunnel::new(s.vxlan_stats.clone()),
        }
    }

    /// The worker's loop, until `Stop`; an error if its event loop failed.
    pub(super) fn run(&mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(256);
        // The spinner's clock (read only when busy polling is on).
        let start = std::time::Instant::now();
        let spinning = self.spinner.enabled();
        let ns = move || u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // The end of the last wake-up: busy and idle time are counted
        // between the clock reads the loop does anyway.
        let mut last = self.clock.now();
        loop {
            let timeout = if !self.pending.is_empty() || (spinning && self.spinner.spin(ns())) {
                Duration::ZERO
            } else {
                HOUSEKEEPING
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Nothing sensible is left to do without an event loop.
                return Err(format!("its event loop failed: {e}"));
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
                    match self.tables.ports.get_mut(id.0 as usize) {
                        Some(Some(p)) if !p.pending => p.pending = true,
                        _ => continue,
                    }
                } else if self.ready.contains(&src) {
                    continue;
                }
                self.ready.push(src);
            }
            let served = !self.ready.is_empty();
            if spinning && served {
                self.spinner.arrived(ns());
            }
            // The batch's time, read once for all its frames.
            let began = served.then(|| self.clock.now());
            if let Some(began) = began {
                WorkerTime::add(&self.time.idle_ms, began.saturating_sub(last));
                self.serve_ready(began);
            }
            if spinning && served && self.pending.is_empty() {
                self.spinner.idle(ns());
            }
            if woken && !self.handle_commands() {
                return Ok(());
            }
            let now = self.clock.now();
            match began {
                Some(b) => WorkerTime::add(&self.time.busy_ms, now.saturating_sub(b)),
                None => WorkerTime::add(&self.time.idle_ms, now.saturating_sub(last)),
            }
            last = now;
            if spinning {
                self.time.publish_spin(&self.spinner);
            }
            if now >= self.next_housekeeping {
                self.housekeeping(now);
                self.next_housekeeping = now.add_ms(HOUSEKEEPING.as_millis() as u64);
            }
        }
    }

    /// Gives every ready source one turn of up to `budget` frames, then
    /// reports what the round found.
    fn serve_ready(&mut self, now: Millis) {
        if self.ready.is_empty() {
            return;
        }
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
                    if let Some(Some(p)) = self.tables.ports.get_mut(id.0 as usize) {
                        p.pending = false;
                    }
                }
                (Turn::Idle, Source::Tunnel(..)) => {}
                (Turn::More, _) => self.pending.push(src),
                (Turn::Dead(cause), Source::Port(id)) => self.egress.dead.push((id, cause)),
                (Turn::Dead(_), Source::Tunnel(..)) => {}
            }
        }
        self.ready = ready;
        drop(guard);
        let mut raised = false;
        while let Some((id, cause)) = self.egress.dead.pop() {
            let first = match self.tables.port(id) {
                Some(p) => !p.gone.swap(true, Ordering::AcqRel),
                None => false,
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
        for v in self.tables.vteps.learned() {
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
                Command::AdoptVtep(info) => self.tables.vteps.adopt(&info),
                Command::RemoveVtep(id, reply) => {
                    let _ = reply.send(self.remove_vtep(id));
                }
                Command::SetNeigh(net, table, reply) => {
                    self.tables.net_mut(net).neigh = table;
                    let _ = reply.send(());
                }
                Command::Barrier(reply) => {
                    let _ = reply.send(());
                }
                Command::Stop => return false,
                Command::DebugPanic => panic!("a panic asked for by debug_panic_worker"),
            }
        }
        true
    }

    fn attach(&mut self, p: PortQueue) -> Result<(), EngineError> {
        if self.tables.port(p.id).is_some() {
            return Err(EngineError::PortExists(p.id.0));
        }
        if let Some(mac) = p.mac {
            self.tables
                .owned
                .claim(p.net, mac, p.id)
                .map_err(|owner| EngineError::MacInUse {
                    mac,
                    owner: owner.0,
                })?;
        }
        let mut ring = None;
        let registered = sys::fd::set_nonblocking(p.fd.as_fd(), true).and_then(|()| {
            if !p.read {
                return Ok(());
            }
            if let Some(g) = p.uplink.and_then(|u| u.ring) {
                ring = Some(RingRx::map(p.fd.as_fd(), g)?);
            }
            let raw = p.fd.as_raw_fd();
            self.poll.registry().register(
                &mut SourceFd(&raw),
                Source::Port(p.id).token(),
                Interest::READABLE,
            )
        });
        if let Err(e) = registered {
            if let Some(mac) = p.mac {
                self.tables.owned.release(p.net, mac, p.id);
            }
            return Err(EngineError::Register(e));
        }
        let (id, read) = (p.id, p.read);
        self.tables.insert(Port::new(p, ring));
        if read {
            self.pending.push(Source::Port(id));
        }
        Ok(())
    }

    /// Removes a port: deregisters and closes its fd, flushes its FDB entries.
    fn detach(&mut self, id: PortId) -> bool {
        let Some(slot) = self.tables.ports.get_mut(id.0 as usize) else {
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
        if let Some(net) = self.tables.nets.get_mut(port.net.0 as usize) {
            net.members.retain(|&m| m != port.id);
        }
        if let Some(mac) = port.mac {
            self.tables.owned.release(port.net, mac, port.id);
        }
        self.pending.retain(|&s| s != Source::Port(port.id));
        self.fdb.forget_dest(Dest::Local(port.id));
        drop(port);
        true
    }

    fn set_network(&mut self, spec: NetworkSpec) -> Result<(), EngineError> {
        self.tables
            .vteps
            .set_network(spec.id, spec.vni, spec.learn_vteps)
            .map_err(|VniInUse(vni)| EngineError::VniInUse { vni })?;
        self.tables.net_mut(spec.id);
        Ok(())
    }

    /// Removes a network and its VTEPs, whose ids it returns.
    fn remove_network(&mut self, id: NetId) -> Vec<VtepId> {
        let vteps = self
            .tables
            .vteps
            .overlay(id)
            .map(|o| o.vteps.clone())
            .unwrap_or_default();
        for &v in &vteps {
            self.remove_vtep(v);
        }
        self.tables.vteps.remove_network(id);
        if let Some(net) = self.tables.nets.get_mut(id.0 as usize) {
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
        self.tunnel.open(sockets);
        Ok(())
    }

    fn add_vtep(&mut self, info: VtepInfo) -> Result<(), EngineError> {
        self.tables.net_mut(info.net);
        self.tables.vteps.add(&info).map_err(|e| match e {
            AddError::NoVni => EngineError::NoVni,
            AddError::Exists => EngineError::VtepExists { addr: info.addr },
        })
    }

    fn remove_vtep(&mut self, id: VtepId) -> bool {
        let removed = self.tables.vteps.remove(id);
        if removed {
            self.fdb.forget_dest(Dest::Remote(id));
        }
        removed
    }

    fn housekeeping(&mut self, now: Millis) {
        if self.index == 0 {
            self.fdb.sweep(now);
            let idle = self.tables.vteps.idle(now);
            if !idle.is_empty() {
                for v in idle {
                    let _ = self.events.send(Event::VtepIdle(v));
                }
                if let Some(w) = &self.notify {
                    let _ = w.wake();
                }
            }
        }
        // Ports whose fd reports an error or hang-up are served once, which
        // makes the read fail and the port go through the normal dead path.
        // Edge-triggered epoll may have reported that state only once.
        let fds: Vec<_> = self
            .tables
            .ports
            .iter()
            .flatten()
            .filter(|p| p.read)
            .map(|p| (p.id, p.file.as_raw_fd()))
            .collect();
        for id in sys::fd::hung_up(&fds) {
            if let Some(Some(p)) = self.tables.ports.get_mut(id.0 as usize) {
                if !p.pending {
                    p.pending = true;
                    self.pending.push(Source::Port(id));
                }
            }
        }
    }
}
