//! Counters every layer may use: the [`Counter`] itself and the per-port
//! (and per-VTEP) [`PortStats`], written by the worker that handles the port
//! and read by the control thread at any time.
//!
//! Every outcome of a frame is counted: it was received, transmitted, or
//! dropped for exactly one [`DropReason`]. Counters are relaxed atomics in an
//! `Arc` the control plane holds too, so `vxswitch stats` never stops the
//! dataplane. Nothing here logs: a per-frame failure is a counter, not a line.
//!
//! This module imports nothing from the rest of the crate, so the switch,
//! VXLAN and any other layer can all count into the same types.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Why a frame was not delivered. Counted on the port where it was refused:
/// ingress reasons on the receiving port, egress reasons on the sending one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Shorter than an Ethernet header (ingress).
    Runt,
    /// Source MAC is multicast, broadcast or all-zero (ingress, as the bridge does).
    InvalidSource,
    /// The port is not attached to a network the worker knows (ingress).
    NoNetwork,
    /// Known unicast whose destination is the ingress port itself (ingress; no hairpin).
    Hairpin,
    /// The destination is a remote VTEP but the network has no tunnel (ingress).
    NoTunnel,
    /// A decapsulated frame whose destination is behind another VTEP: what
    /// comes out of the overlay never goes back in (ingress, on the VTEP).
    SplitHorizon,
    /// Larger than the egress port's MTU allows, or (on a VTEP) too large
    /// to encapsulate within the underlay MTU (egress).
    Oversize,
    /// The egress queue was full: EAGAIN/ENOBUFS on write (egress).
    TxQueueFull,
    /// The egress link is down: EIO on write to a TAP whose interface is down (egress).
    TxLinkDown,
    /// Any other write error (egress).
    TxError,
    /// A read from the port failed with an unexpected error (ingress).
    RxError,
    /// A frame with a `virtio_net_hdr` asking for an offload vxswitch cannot
    /// do: an invalid header (ingress), or a super-frame or partial checksum
    /// that cannot be segmented or completed in software for an egress
    /// without offloads (egress).
    BadOffload,
    /// The source MAC is not the port's own (port security), or is another
    /// port's own MAC (from a port without port security, or from a VTEP)
    /// (ingress).
    SpoofedSrc,
    /// An ARP sender or IP source that is not one of the port's addresses,
    /// or an ARP/IP header too short to tell (IP source guard; ingress).
    SpoofedIp,
    /// Broadcast or multicast from an uplink beyond its network's storm
    /// control rate (ingress, on the uplink).
    Storm,
    /// Unicast from an uplink to a MAC that is no port's of the network:
    /// the LAN's traffic between other hosts (ingress, on the uplink).
    UplinkUnknownDst,
}

impl DropReason {
    pub const ALL: [DropReason; 16] = [
        DropReason::Runt,
        DropReason::InvalidSource,
        DropReason::NoNetwork,
        DropReason::Hairpin,
        DropReason::NoTunnel,
        DropReason::SplitHorizon,
        DropReason::Oversize,
        DropReason::TxQueueFull,
        DropReason::TxLinkDown,
        DropReason::TxError,
        DropReason::RxError,
        DropReason::BadOffload,
        DropReason::SpoofedSrc,
        DropReason::SpoofedIp,
        DropReason::Storm,
        DropReason::UplinkUnknownDst,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::InvalidSource => "invalid_source",
            DropReason::NoNetwork => "no_network",
            DropReason::Hairpin => "hairpin",
            DropReason::NoTunnel => "no_tunnel",
            DropReason::SplitHorizon => "split_horizon",
            DropReason::Oversize => "oversize",
            DropReason::TxQueueFull => "tx_queue_full",
            DropReason::TxLinkDown => "tx_link_down",
            DropReason::TxError => "tx_error",
            DropReason::RxError => "rx_error",
            DropReason::BadOffload => "bad_offload",
            DropReason::SpoofedSrc => "spoofed_src",
            DropReason::SpoofedIp => "spoofed_ip",
            DropReason::Storm => "storm",
            DropReason::UplinkUnknownDst => "uplink_unknown_dst",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Why a write to a port or a send to a VTEP failed, as counted on it.
    pub fn of_tx_error(e: &io::Error) -> DropReason {
        match e.raw_os_error() {
            Some(libc::EAGAIN | libc::ENOBUFS) => DropReason::TxQueueFull,
            // ENETDOWN: an uplink whose interface is down.
            Some(libc::EIO | libc::ENETDOWN) => DropReason::TxLinkDown,
            Some(libc::EMSGSIZE) => DropReason::Oversize,
            _ => DropReason::TxError,
        }
    }
}

/// One monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Live counters of one port.
#[derive(Debug, Default)]
pub struct PortStats {
    pub rx_frames: Counter,
    pub rx_bytes: Counter,
    pub tx_frames: Counter,
    pub tx_bytes: Counter,
    drops: [Counter; DropReason::COUNT],
    /// Source MACs not learned because the FDB was full (frames still forwarded).
    pub learn_refused_table_full: Counter,
    /// Source MACs not learned because this port hit its FDB limit.
    pub learn_refused_port_limit: Counter,
    /// Source MACs not learned because the port's network spent its FDB
    /// budget.
    pub learn_refused_net_limit: Counter,
    /// MACs that moved to this port from another destination.
    pub moves_in: Counter,
}

impl PortStats {
    #[inline]
    pub fn count_drop(&self, why: DropReason) {
        self.drops[why.index()].inc();
    }

    /// Counts `n` frames dropped for the same reason at once (the segments
    /// of one super-frame).
    pub fn count_drops(&self, why: DropReason, n: u64) {
        self.drops[why.index()].add(n);
    }

    pub fn drops(&self, why: DropReason) -> u64 {
        self.drops[why.index()].get()
    }

    pub fn snapshot(&self) -> PortStatsSnapshot {
        PortStatsSnapshot {
            rx_frames: self.rx_frames.get(),
            rx_bytes: self.rx_bytes.get(),
            tx_frames: self.tx_frames.get(),
            tx_bytes: self.tx_bytes.get(),
            drops: DropReason::ALL
                .iter()
                .map(|&r| (r.name().to_string(), self.drops(r)))
                .collect(),
            learn_refused_table_full: self.learn_refused_table_full.get(),
            learn_refused_port_limit: self.learn_refused_port_limit.get(),
            moves_in: self.moves_in.get(),
            learn_refused_net_limit: self.learn_refused_net_limit.get(),
        }
    }
}

/// A point-in-time copy of [`PortStats`], as the protocol carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatsSnapshot {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Every drop reason, by name, including the zero ones.
    pub drops: std::collections::BTreeMap<String, u64>,
    pub learn_refused_table_full: u64,
    pub learn_refused_port_limit: u64,
    pub moves_in: u64,
    #[serde(default)]
    pub learn_refused_net_limit: u64,
}

impl PortStatsSnapshot {
    pub fn total_drops(&self) -> u64 {
        self.drops.values().sum()
    }
}
