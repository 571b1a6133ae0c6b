//! VXLAN (RFC 7348): everything of the overlay below the forwarding
//! decision. The header itself is in [`crate::wire::vxlan`]; which frames go
//! into the tunnel (head-end replication, split horizon, learning remote
//! MACs) is decided by the switch, which calls in here to do it.
//!
//! - [`sockets`]: the UDP sockets, one listening socket and a source-port
//!   pool per address family; the pool socket of a frame is picked by the
//!   inner-flow hash ([`crate::wire::flow_hash`]);
//! - `vteps`: each network's VNI and VTEPs, which senders a VNI accepts,
//!   and learning VTEPs from traffic;
//! - [`batch`]: building runs of datagrams for one `sendmmsg` (pure code);
//! - `tx`: sending: `sendmmsg`, `UDP_SEGMENT`, and counting the outcome;
//! - `decap`: receiving a train of datagrams and resolving each to its
//!   network and VTEP;
//! - [`stats`]: the counters of the sockets as a whole.
//!
//! Sockets. One listening socket per address family, bound to the VXLAN port
//! (4789 by default) on the wildcard address, receives from every VTEP. To
//! send, a worker picks one socket of a *pool* bound to source ports spread
//! over a configured range, by a hash of the inner flow: a userspace program
//! cannot choose the source port of a datagram per `sendto`, and RFC 7348
//! section 5 asks for the source port to carry flow entropy so that ECMP and
//! receive-side scaling in the underlay spread flows. One flow always maps to
//! the same socket (no reordering); different flows spread over up to
//! [`MAX_POOL`] source ports. Pool sockets are also read, in case a peer
//! answers to the port it saw.
//!
//! Every socket has "don't fragment" set: a datagram bigger than the path
//! MTU fails with `EMSGSIZE` and is counted, never sent in fragments; the
//! switch also refuses frames above the configured underlay MTU before
//! sending (counted as `oversize` on the VTEP).
//!
//! Layering: this module counts into [`crate::metrics`] and parses with
//! [`crate::wire`]; it never imports from [`crate::switch`], which drives it.

pub mod batch;
pub(crate) mod decap;
pub mod sockets;
pub mod stats;
pub(crate) mod tx;
pub(crate) mod vteps;

use serde::{Deserialize, Serialize};

use crate::wire::vxlan::IANA_PORT;

pub(crate) use decap::decap;
pub use decap::{Datagrams, Decapped, Recv, Train};
pub use sockets::{FamilySockets, SocketError, Sockets};
pub use stats::{VxlanDrop, VxlanSnapshot, VxlanStats};
pub(crate) use tx::Tunnel;
pub use vteps::{canonical, VtepInfo};

/// Most source-port sockets per address family.
pub const MAX_POOL: usize = 32;
/// Outer IPv4 + UDP + VXLAN header bytes in front of the inner frame.
pub const OVERHEAD_V4: u32 = 20 + 8 + 8;
/// Outer IPv6 + UDP + VXLAN header bytes in front of the inner frame.
pub const OVERHEAD_V6: u32 = 40 + 8 + 8;

/// Daemon-wide VXLAN settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VxlanConfig {
    /// UDP port VTEPs listen on and send to (4789; Linux's default and flannel use 8472).
    pub port: u16,
    /// MTU of the underlay path between VTEPs.
    pub underlay_mtu: u32,
    /// Range of outer source ports (inclusive).
    pub src_port_min: u16,
    pub src_port_max: u16,
    /// VTEPs a network with `learn_vteps` may learn from unknown senders.
    pub max_learned_vteps: usize,
    /// A learned VTEP that sends nothing for this long is removed, with
    /// the MACs learned behind it (ms; 0: never). Configured VTEPs stay.
    pub learned_vtep_ageing_ms: u64,
}

impl Default for VxlanConfig {
    fn default() -> Self {
        VxlanConfig {
            port: IANA_PORT,
            underlay_mtu: 1500,
            src_port_min: 49_152,
            src_port_max: 65_535,
            max_learned_vteps: 64,
            learned_vtep_ageing_ms: 300_000,
        }
    }
}

impl VxlanConfig {
    /// Largest inner Ethernet frame (header included) that fits the underlay
    /// without fragmentation, for a VTEP of this address family.
    pub fn max_inner_frame(&self, ipv6: bool) -> usize {
        let overhead = if ipv6 { OVERHEAD_V6 } else { OVERHEAD_V4 };
        usize::try_from(self.underlay_mtu.saturating_sub(overhead)).unwrap_or(0)
    }

    /// Default MTU of ports on a VXLAN network: underlay MTU minus 50
    /// (IPv4 underlay) or 70 (IPv6), the inner Ethernet header included.
    pub fn default_port_mtu(&self, ipv6: bool) -> u32 {
        self.underlay_mtu.saturating_sub(if ipv6 { 70 } else { 50 })
    }

    pub(crate) fn pool_ports(&self) -> Vec<u16> {
        let (lo, hi) = (
            self.src_port_min.min(self.src_port_max),
            self.src_port_max.max(self.src_port_min),
        );
        let span = usize::from(hi - lo) + 1;
        let n = span.min(MAX_POOL);
        (0..n)
            .map(|k| lo + u16::try_from(k * span / n).unwrap_or(0))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_ports_spread_over_the_range() {
        let cfg = VxlanConfig::default();
        let p = cfg.pool_ports();
        assert_eq!(p.len(), MAX_POOL);
        assert_eq!(p[0], 49_152);
        assert!(p.windows(2).all(|w| w[0] < w[1]));
        let narrow = VxlanConfig {
            src_port_min: 5000,
            src_port_max: 5003,
            ..cfg
        };
        assert_eq!(narrow.pool_ports(), vec![5000, 5001, 5002, 5003]);
    }

    #[test]
    fn mtu_arithmetic() {
        let cfg = VxlanConfig::default();
        assert_eq!(cfg.default_port_mtu(false), 1450);
        assert_eq!(cfg.default_port_mtu(true), 1430);
        // A 1450-byte IPv4 packet is a 1464-byte frame: exactly fits 1500.
        assert_eq!(cfg.max_inner_frame(false), 1464);
        assert_eq!(cfg.max_inner_frame(true), 1444);
    }
}
