//! Counters of the VXLAN sockets as a whole (per-VTEP counters are
//! [`PortStats`](crate::metrics::PortStats), like a port's).

use crate::metrics::Counter;
use serde::{Deserialize, Serialize};

/// Why a datagram on a VXLAN socket was not delivered to any VTEP's frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VxlanDrop {
    /// Shorter than the 8-byte VXLAN header.
    Truncated,
    /// The I flag is clear.
    BadFlags,
    /// No network has this VNI.
    UnknownVni,
    /// The sender is not a VTEP of the VNI's network (and the network does
    /// not learn VTEPs).
    UnknownVtep,
    /// The network learns VTEPs but already has `max_learned_vteps`.
    VtepLimit,
    /// A receive error other than "no more data".
    RxError,
    /// Dropped by the kernel before vxswitch could read it: the socket's
    /// receive buffer was full (`SO_RXQ_OVFL`). The switch fell behind.
    SocketOverflow,
    /// Longer than the receive buffer, so the kernel cut it (`MSG_TRUNC`):
    /// dropped whole, never forwarded in part.
    Oversize,
}

impl VxlanDrop {
    pub const ALL: [VxlanDrop; 8] = [
        VxlanDrop::Truncated,
        VxlanDrop::BadFlags,
        VxlanDrop::UnknownVni,
        VxlanDrop::UnknownVtep,
        VxlanDrop::VtepLimit,
        VxlanDrop::RxError,
        VxlanDrop::SocketOverflow,
        VxlanDrop::Oversize,
    ];

    pub fn name(self) -> &'static str {
        match self {
            VxlanDrop::Truncated => "truncated",
            VxlanDrop::BadFlags => "bad_flags",
            VxlanDrop::UnknownVni => "unknown_vni",
            VxlanDrop::UnknownVtep => "unknown_vtep",
            VxlanDrop::VtepLimit => "vtep_limit",
            VxlanDrop::RxError => "rx_error",
            VxlanDrop::SocketOverflow => "socket_overflow",
            VxlanDrop::Oversize => "oversize",
        }
    }
}

/// Counters of the VXLAN sockets as a whole.
#[derive(Debug, Default)]
pub struct VxlanStats {
    pub rx_datagrams: Counter,
    pub rx_bytes: Counter,
    pub tx_datagrams: Counter,
    pub tx_bytes: Counter,
    drops: [Counter; VxlanDrop::ALL.len()],
}

impl VxlanStats {
    #[inline]
    pub fn count_drop(&self, why: VxlanDrop) {
        self.count_drops(why, 1);
    }

    #[inline]
    pub fn count_drops(&self, why: VxlanDrop, n: u64) {
        self.drops[why as usize].add(n);
    }

    pub fn drops(&self, why: VxlanDrop) -> u64 {
        self.drops[why as usize].get()
    }

    pub fn snapshot(&self, port: u16, source_ports: Vec<u16>) -> VxlanSnapshot {
        VxlanSnapshot {
            port,
            source_ports,
            rx_datagrams: self.rx_datagrams.get(),
            rx_bytes: self.rx_bytes.get(),
            tx_datagrams: self.tx_datagrams.get(),
            tx_bytes: self.tx_bytes.get(),
            drops: VxlanDrop::ALL
                .iter()
                .map(|&d| (d.name().to_string(), self.drops(d)))
                .collect(),
        }
    }
}

/// A point-in-time copy of [`VxlanStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VxlanSnapshot {
    /// The UDP port VTEPs send to.
    pub port: u16,
    /// Outer source ports in use (the pool).
    pub source_ports: Vec<u16>,
    pub rx_datagrams: u64,
    pub rx_bytes: u64,
    pub tx_datagrams: u64,
    pub tx_bytes: u64,
    pub drops: std::collections::BTreeMap<String, u64>,
}
