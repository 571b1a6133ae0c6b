//! What the control handle and the workers tell a worker: one [`Command`]
//! enum on each worker's channel, posted through its [`Mailbox`] (the
//! channel and the `Waker` that makes the worker look). Requests carry a
//! one-shot reply channel; what workers tell each other carries none.

use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crossbeam_channel::Sender;
use mio::Waker;

use super::handle::{EngineError, NetworkSpec};
use super::policy::SourcePolicy;
use crate::fdb::{NetId, PortId, VtepId};
use crate::gateway::NeighTable;
use crate::metrics::PortStats;
use crate::vxlan::{Sockets, VtepInfo};
use crate::wire::MacAddr;

/// One worker's share of a port.
pub(super) struct PortQueue {
    pub(super) id: PortId,
    pub(super) net: NetId,
    pub(super) fd: OwnedFd,
    /// This worker reads the fd (else it only writes to it).
    pub(super) read: bool,
    pub(super) mtu: u32,
    pub(super) stats: Arc<PortStats>,
    pub(super) vnet_hdr: bool,
    /// Set by the first worker that finds the port dead: it alone reports it.
    pub(super) gone: Arc<AtomicBool>,
    /// The port's own MAC, if known.
    pub(super) mac: Option<MacAddr>,
    pub(super) policy: SourcePolicy,
    /// An uplink port: its VLAN tag and storm control.
    pub(super) uplink: Option<super::uplink::UplinkConfig>,
    /// The uplink's storm-control bucket, shared by its workers.
    pub(super) storm: Option<Arc<super::uplink::Storm>>,
    /// A port whose `fd` only receives (bound to its steering interface,
    /// the eBPF fast path): this worker's duplicate of the socket it sends
    /// through.
    pub(super) tx: Option<OwnedFd>,
}

pub(super) enum Command {
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
    /// A network's ARP/ND suppression table (`None`: off), swapped whole.
    SetNeigh(NetId, Option<Arc<NeighTable>>, Sender<()>),
    Barrier(Sender<()>),
    Stop,
    /// Test-only: panic, to show what a bug in a worker does
    /// ([`Engine::debug_panic_worker`](super::Engine::debug_panic_worker)).
    DebugPanic,
}

/// How one thread reaches a worker.
#[derive(Clone)]
pub(super) struct Mailbox {
    pub(super) cmds: Sender<Command>,
    pub(super) waker: Arc<Waker>,
}

impl Mailbox {
    pub(super) fn post(&self, cmd: Command) -> Result<(), EngineError> {
        self.cmds.send(cmd).map_err(|_| EngineError::Stopped)?;
        self.waker.wake().map_err(|_| EngineError::Stopped)
    }
}

/// Sends a command to every worker and waits for all the answers.
pub(super) fn ask_all<T>(
    mailboxes: &[Mailbox],
    mut cmd: impl FnMut(Sender<T>) -> Command,
) -> Result<Vec<T>, EngineError> {
    let mut replies = Vec::with_capacity(mailboxes.len());
    for m in mailboxes {
        let (tx, rx) = crossbeam_channel::bounded(1);
        m.post(cmd(tx))?;
        replies.push(rx);
    }
    replies
        .into_iter()
        .map(|rx| rx.recv().map_err(|_| EngineError::Stopped))
        .collect()
}
