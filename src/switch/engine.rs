//! The dataplane worker: one thread, one `mio::Poll`, every port's fd
//! registered edge-triggered under a token equal to its [`PortId`].
//!
//! Per wake-up the worker reads the clock once, pins the FDB once, and
//! drains each ready port until `WouldBlock` or until it has handled
//! `budget` frames from that port; a port that still has frames is kept on
//! a pending list and served again after every other ready port had its
//! turn, so one noisy port cannot starve the rest. Frames are read into one
//! reusable buffer and written from it to each egress port: no allocation,
//! lock or log line per frame. Every outcome is a counter in the port's
//! [`PortStats`].
//!
//! The control plane talks to the worker through [`Engine`]: commands go on
//! a crossbeam channel followed by a `Waker` nudge, and come back with a
//! reply on a one-shot channel, so `port rm` returns only after the fd is
//! closed (and a TAP the switch created is gone). A port whose fd dies
//! underneath (`ip link del`, its namespace deleted, the peer of a test
//! socket closed) is removed by the worker itself and reported as
//! [`Event::PortGone`].

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::decide::{decide, Decision, Ingress};
use super::stats::{DropReason, PortStats};
use crate::fdb::{Dest, Fdb, FdbConfig, Learned, NetId, PortId, Refusal};
use crate::sys;
use crate::time::{Clock, Millis};

const WAKER: Token = Token(usize::MAX);
/// Room in front of every received frame, so an outer VXLAN header
/// (50 bytes for IPv4, 70 for IPv6, rounded up) can be written in place.
pub const HEADROOM: usize = 128;
/// Largest frame a port can hand us in one read.
pub const MAX_FRAME: usize = 65_535 + 18;
/// Bytes an Ethernet header with one 802.1Q tag adds to the MTU.
pub const L2_OVERHEAD: usize = 18;
/// Consecutive unexpected read errors after which a port is declared dead.
const MAX_RX_ERRORS: u32 = 64;
/// How often the worker sweeps the FDB and checks ports for hang-ups
/// when nothing else wakes it.
const HOUSEKEEPING: Duration = Duration::from_millis(500);

/// Tuning of the dataplane.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    pub fdb: FdbConfig,
    /// Frames read from one port per turn before serving the others.
    pub budget: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            fdb: FdbConfig::default(),
            budget: 64,
        }
    }
}

/// A port handed to the engine.
#[derive(Debug)]
pub struct PortAttach {
    pub id: PortId,
    pub net: NetId,
    /// One Ethernet frame per read/write: a TAP (IFF_TAP|IFF_NO_PI) or a
    /// SOCK_SEQPACKET socket. Made non-blocking by the engine.
    pub fd: OwnedFd,
    /// The link MTU: frames longer than `mtu + 18` are not sent to this port.
    pub mtu: u32,
    pub stats: Arc<PortStats>,
}

/// Something the dataplane decided on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The port's fd failed for good; it was removed and its FDB entries flushed.
    PortGone { id: PortId, cause: String },
}

/// Errors of control requests to the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("port id {0} is already attached to the dataplane")]
    PortExists(u32),
    #[error("cannot register the port's fd with the event loop: {0}")]
    Register(#[source] io::Error),
    #[error("the dataplane thread has stopped")]
    Stopped,
}

enum Command {
    AddPort(PortAttach, Sender<Result<(), EngineError>>),
    RemovePort(PortId, Sender<bool>),
    Barrier(Sender<()>),
    Stop,
}

/// Handle to the running dataplane.
pub struct Engine {
    cmds: Sender<Command>,
    waker: Arc<Waker>,
    fdb: Arc<Fdb>,
    events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Starts the worker thread. `notify`, if given, is woken whenever an
    /// [`Event`] is queued.
    pub fn start(
        cfg: EngineConfig,
        clock: Arc<dyn Clock>,
        notify: Option<Arc<Waker>>,
    ) -> io::Result<Engine> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let fdb = Arc::new(Fdb::new(cfg.fdb));
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
        let now = clock.now();
        let mut worker = Worker {
            poll,
            ports: Vec::new(),
            nets: Vec::new(),
            fdb: fdb.clone(),
            clock,
            cmds: cmd_rx,
            events: ev_tx,
            notify,
            buf: vec![0u8; HEADROOM + MAX_FRAME].into_boxed_slice(),
            pending: Vec::new(),
            ready: Vec::new(),
            gone: Vec::new(),
            budget: cfg.budget.max(1),
            next_housekeeping: now,
        };
        let thread = std::thread::Builder::new()
            .name("vxswitch-dp".into())
            .spawn(move || worker.run())?;
        Ok(Engine {
            cmds: cmd_tx,
            waker,
            fdb,
            events: ev_rx,
            thread: Some(thread),
        })
    }

    pub fn fdb(&self) -> &Arc<Fdb> {
        &self.fdb
    }

    /// Events the dataplane raised; drain with `try_recv`.
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    /// Attaches a port; returns once the worker polls its fd.
    pub fn add_port(&self, port: PortAttach) -> Result<(), EngineError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Command::AddPort(port, tx))?;
        rx.recv().map_err(|_| EngineError::Stopped)?
    }

    /// Detaches a port, closes its fd and flushes its FDB entries. Returns
    /// whether the port was attached.
    pub fn remove_port(&self, id: PortId) -> Result<bool, EngineError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Command::RemovePort(id, tx))?;
        rx.recv().map_err(|_| EngineError::Stopped)
    }

    /// Returns once the worker has finished the round it is in. Frames
    /// sent after this returns are handled in a later round, with a fresh
    /// clock reading (the clock is read once per round): tests that move a
    /// manual clock use this as a fence.
    pub fn barrier(&self) -> Result<(), EngineError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Command::Barrier(tx))?;
        rx.recv().map_err(|_| EngineError::Stopped)
    }

    fn send(&self, cmd: Command) -> Result<(), EngineError> {
        self.cmds.send(cmd).map_err(|_| EngineError::Stopped)?;
        self.waker.wake().map_err(|_| EngineError::Stopped)
    }

    /// Stops the worker and closes every port's fd.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.cmds.send(Command::Stop);
            let _ = self.waker.wake();
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Port {
    id: PortId,
    net: NetId,
    file: File,
    max_frame: usize,
    stats: Arc<PortStats>,
    /// On the pending list: the last turn ended on the budget, not on WouldBlock.
    pending: bool,
    rx_errors: Cell<u32>,
}

struct Worker {
    poll: Poll,
    /// Indexed by `PortId`.
    ports: Vec<Option<Port>>,
    /// Members of each network, indexed by `NetId`.
    nets: Vec<Vec<PortId>>,
    fdb: Arc<Fdb>,
    clock: Arc<dyn Clock>,
    cmds: Receiver<Command>,
    events: Sender<Event>,
    notify: Option<Arc<Waker>>,
    buf: Box<[u8]>,
    /// Ports whose last turn ended on the budget.
    pending: Vec<PortId>,
    /// Ports to serve this round (scratch, reused).
    ready: Vec<PortId>,
    /// Ports found dead this round, with why.
    gone: Vec<(PortId, String)>,
    budget: usize,
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
        loop {
            let timeout = if self.pending.is_empty() {
                Some(HOUSEKEEPING)
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
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
                match ev.token() {
                    WAKER => woken = true,
                    Token(t) => {
                        let id = PortId(t as u32);
                        if let Some(Some(p)) = self.ports.get_mut(t) {
                            if !p.pending {
                                p.pending = true;
                                self.ready.push(id);
                            }
                        }
                    }
                }
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

    /// Gives every ready port one turn of up to `budget` frames.
    fn serve_ready(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let now = self.clock.now();
        let fdb = self.fdb.clone();
        let guard = fdb.pin();
        let ready = std::mem::take(&mut self.ready);
        for &id in &ready {
            match self.turn(id, &guard, now) {
                Turn::Idle => {
                    if let Some(Some(p)) = self.ports.get_mut(id.0 as usize) {
                        p.pending = false;
                    }
                }
                Turn::More => self.pending.push(id),
                Turn::Dead(cause) => self.gone.push((id, cause)),
            }
        }
        self.ready = ready;
        drop(guard);
        while let Some((id, cause)) = self.gone.pop() {
            if self.detach(id) {
                let _ = self.events.send(Event::PortGone { id, cause });
                if let Some(w) = &self.notify {
                    let _ = w.wake();
                }
            }
        }
    }

    /// Reads and forwards up to `budget` frames from one port.
    fn turn(&mut self, id: PortId, fdb: &crate::fdb::FdbGuard<'_>, now: Millis) -> Turn {
        // Disjoint borrows of the worker's fields: ports and networks are
        // only read here, the buffer and the dead list written.
        let (ports, nets, buf, gone) = (&self.ports, &self.nets, &mut self.buf, &mut self.gone);
        let Some(Some(port)) = ports.get(id.0 as usize) else {
            return Turn::Idle;
        };
        for _ in 0..self.budget {
            let len = match (&port.file).read(&mut buf[HEADROOM..]) {
                Ok(0) => return Turn::Dead("the port's fd reached end of file".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Turn::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_fatal(&e) => return Turn::Dead(format!("read failed: {e}")),
                Err(_) => {
                    port.stats.count_drop(DropReason::RxError);
                    port.rx_errors.set(port.rx_errors.get() + 1);
                    if port.rx_errors.get() > MAX_RX_ERRORS {
                        return Turn::Dead("too many consecutive read errors".into());
                    }
                    continue;
                }
            };
            port.rx_errors.set(0);
            let stats = &port.stats;
            stats.rx_frames.inc();
            stats.rx_bytes.add(len as u64);
            let ingress = Ingress {
                port: id,
                net: port.net,
            };
            let frame = &buf[HEADROOM..HEADROOM + len];
            let verdict = decide(fdb, ingress, frame, now);
            match verdict.learned {
                Some(Learned::Refused(Refusal::TableFull)) => stats.learn_refused_table_full.inc(),
                Some(Learned::Refused(Refusal::DestLimit)) => stats.learn_refused_port_limit.inc(),
                Some(Learned::Moved { .. }) => stats.moves_in.inc(),
                _ => {}
            }
            match verdict.decision {
                Decision::Forward(out) => match ports.get(out.0 as usize) {
                    Some(Some(egress)) if egress.net == ingress.net => {
                        transmit(egress, frame, gone)
                    }
                    // A stale entry for a port that is gone: flood instead.
                    _ => flood(ports, nets, ingress, frame, gone),
                },
                Decision::Flood => {
                    if nets.get(ingress.net.0 as usize).is_none() {
                        stats.count_drop(DropReason::NoNetwork);
                    } else {
                        flood(ports, nets, ingress, frame, gone);
                    }
                }
                Decision::Encap(_) => stats.count_drop(DropReason::NoTunnel),
                Decision::Drop(why) => stats.count_drop(why),
            }
        }
        Turn::More
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
                Command::Barrier(reply) => {
                    let _ = reply.send(());
                }
                Command::Stop => return false,
            }
        }
        true
    }

    fn attach(&mut self, p: PortAttach) -> Result<(), EngineError> {
        let idx = p.id.0 as usize;
        if matches!(self.ports.get(idx), Some(Some(_))) {
            return Err(EngineError::PortExists(p.id.0));
        }
        sys::fd::set_nonblocking(p.fd.as_fd(), true).map_err(EngineError::Register)?;
        let raw = p.fd.as_raw_fd();
        self.poll
            .registry()
            .register(&mut SourceFd(&raw), Token(idx), Interest::READABLE)
            .map_err(EngineError::Register)?;
        if self.ports.len() <= idx {
            self.ports.resize_with(idx + 1, || None);
        }
        let net = p.net.0 as usize;
        if self.nets.len() <= net {
            self.nets.resize_with(net + 1, Vec::new);
        }
        self.nets[net].push(p.id);
        let mtu = usize::try_from(p.mtu).unwrap_or(usize::MAX);
        self.ports[idx] = Some(Port {
            id: p.id,
            net: p.net,
            file: File::from(p.fd),
            max_frame: mtu.saturating_add(L2_OVERHEAD).min(MAX_FRAME),
            stats: p.stats,
            // Frames may already be queued: edge-triggered readiness would
            // not report them, so serve the port once right away.
            pending: true,
            rx_errors: Cell::new(0),
        });
        self.pending.push(p.id);
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
        let raw = port.file.as_raw_fd();
        // May fail if the fd is already broken; closing it removes it from epoll anyway.
        let _ = self.poll.registry().deregister(&mut SourceFd(&raw));
        if let Some(members) = self.nets.get_mut(port.net.0 as usize) {
            members.retain(|&m| m != port.id);
        }
        self.pending.retain(|&m| m != port.id);
        self.fdb.forget_dest(Dest::Local(port.id));
        drop(port);
        true
    }

    fn housekeeping(&mut self, now: Millis) {
        self.fdb.sweep(now);
        // Ports whose fd reports an error or hang-up are served once, which
        // makes the read fail and the port go through the normal dead path.
        // Edge-triggered epoll may have reported that state only once.
        let fds: Vec<_> = self
            .ports
            .iter()
            .flatten()
            .map(|p| (p.id, p.file.as_raw_fd()))
            .collect();
        for id in sys::fd::hung_up(&fds) {
            if let Some(Some(p)) = self.ports.get_mut(id.0 as usize) {
                if !p.pending {
                    p.pending = true;
                    self.pending.push(id);
                }
            }
        }
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

/// Sends one frame to one port, counting the outcome on that port.
#[inline]
fn transmit(port: &Port, frame: &[u8], gone: &mut Vec<(PortId, String)>) {
    if frame.len() > port.max_frame {
        port.stats.count_drop(DropReason::Oversize);
        return;
    }
    match (&port.file).write(frame) {
        Ok(n) if n == frame.len() => {
            port.stats.tx_frames.inc();
            port.stats.tx_bytes.add(frame.len() as u64);
        }
        // TAPs and SEQPACKET sockets take a frame whole or not at all.
        Ok(_) => port.stats.count_drop(DropReason::TxError),
        Err(e) => {
            let why = match e.raw_os_error() {
                Some(libc::EAGAIN | libc::ENOBUFS) => DropReason::TxQueueFull,
                Some(libc::EIO) => DropReason::TxLinkDown,
                _ => DropReason::TxError,
            };
            port.stats.count_drop(why);
            if is_fatal(&e) && !gone.iter().any(|(id, _)| *id == port.id) {
                gone.push((port.id, format!("write failed: {e}")));
            }
        }
    }
}

/// Sends a frame to every port of the ingress network except the ingress.
#[inline]
fn flood(
    ports: &[Option<Port>],
    nets: &[Vec<PortId>],
    ingress: Ingress,
    frame: &[u8],
    gone: &mut Vec<(PortId, String)>,
) {
    let Some(members) = nets.get(ingress.net.0 as usize) else {
        return;
    };
    for &m in members {
        if m == ingress.port {
            continue;
        }
        if let Some(Some(p)) = ports.get(m.0 as usize) {
            transmit(p, frame, gone);
        }
    }
}
