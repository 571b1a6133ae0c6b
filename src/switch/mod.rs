//! The forwarding engine, laid out along a frame's trip:
//!
//! - [`handle`]: [`Engine`], the control plane's handle, and its
//!   vocabulary ([`PortAttach`], [`NetworkSpec`], [`Event`], ...);
//! - `command`: the messages the handle posts to the workers;
//! - `worker`: a worker thread's state and loop: polling, scheduling turns,
//!   housekeeping, applying commands;
//! - [`poll`]: when a worker spins instead of sleeping (`--busy-poll`),
//!   pure;
//! - `ingress`: a turn reading a port or a VXLAN socket, and the one
//!   dispatch of a [`Verdict`] for local and decapsulated frames alike;
//! - `egress`: sending a frame to a port, flooding it, or handing it to the
//!   tunnel, with offloads done in software where the egress lacks them;
//! - [`decide()`]: the forwarding decision itself, pure;
//! - [`policy`]: what a port may send (port security, the IP source
//!   guard, MACs a port owns), checked in `decide()`;
//! - `uplink`: the uplink's port kind (a host interface on the LAN):
//!   storm control and the unicast filter in, VLAN tags out.
//!
//! The VXLAN parts a worker drives (VTEP table, TX batching, decap) are in
//! [`crate::vxlan`]; counters in [`crate::metrics`].

pub mod decide;
pub mod handle;
pub mod policy;
pub mod poll;

mod command;
mod egress;
mod fatal;
mod ingress;
mod uplink;
mod worker;

#[cfg(test)]
mod tests;

/// The per-port counters, where they were before [`crate::metrics`].
pub mod stats {
    pub use crate::metrics::{Counter, DropReason, PortStats, PortStatsSnapshot};
}

pub use crate::metrics::{DropReason, PortStats, PortStatsSnapshot};
pub use crate::vxlan::VtepInfo;
pub use decide::{decide, Decision, Ingress, Verdict};
pub use fatal::EXIT_STATUS as WORKER_FAILED_STATUS;
pub use handle::{
    default_workers, Engine, EngineConfig, EngineError, Event, GoneCause, NetworkSpec, PortAttach,
};
pub use policy::{IpGuard, OwnedMacs, Policy, SourcePolicy};
pub use poll::BusyPoll;
pub use uplink::{UplinkConfig, UplinkRx};
pub use worker::WorkerTime;

/// Room in front of every received frame, so a `virtio_net_hdr` or a VXLAN
/// header can be written in front of it without a copy (the kernel adds
/// the outer UDP and IP headers).
pub const HEADROOM: usize = 128;
/// Largest frame a port can hand us in one read (a TAP's MTU is at most
/// 65521; a GSO super-frame's IP packet at most 65535 bytes).
pub const MAX_FRAME: usize = 65_535 + 18;
/// Bytes an Ethernet header with one 802.1Q tag adds to the MTU.
pub const L2_OVERHEAD: usize = 18;
