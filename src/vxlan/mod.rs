//! VXLAN (RFC 7348): the UDP sockets, the outer source-port choice, and the
//! counters of the tunnel. The header itself is in [`crate::wire::vxlan`];
//! the forwarding (head-end replication, split horizon, learning remote
//! MACs) is in the engine.
//!
//! Sockets. One listening socket per address family, bound to the VXLAN port
//! (4789 by default) on the wildcard address, receives from every VTEP. To
//! send, the engine picks one socket of a *pool* bound to source ports spread
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
//! engine also refuses frames above the configured underlay MTU before
//! sending (counted as `oversize` on the VTEP).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::metrics::Counter;
use crate::sys;
use crate::wire::vxlan::IANA_PORT;

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
}

impl Default for VxlanConfig {
    fn default() -> Self {
        VxlanConfig {
            port: IANA_PORT,
            underlay_mtu: 1500,
            src_port_min: 49_152,
            src_port_max: 65_535,
            max_learned_vteps: 64,
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

    fn pool_ports(&self) -> Vec<u16> {
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

/// The sockets of one address family.
#[derive(Debug)]
pub struct FamilySockets {
    pub listen: mio::net::UdpSocket,
    /// Source-port pool; may be empty if no port of the range could be bound,
    /// in which case the listening socket sends.
    pub pool: Vec<mio::net::UdpSocket>,
    pub ipv6: bool,
}

impl FamilySockets {
    /// The socket that sends datagrams of the flow with this hash.
    #[inline]
    pub fn sender(&self, flow: u32) -> &mio::net::UdpSocket {
        if self.pool.is_empty() {
            &self.listen
        } else {
            &self.pool[flow as usize % self.pool.len()]
        }
    }

    /// The index (as [`Sockets::get`] takes it) of [`FamilySockets::sender`].
    #[inline]
    pub fn sender_index(&self, flow: u32) -> usize {
        if self.pool.is_empty() {
            0
        } else {
            1 + flow as usize % self.pool.len()
        }
    }
}

/// Both families' sockets.
#[derive(Debug)]
pub struct Sockets {
    pub v4: Option<FamilySockets>,
    pub v6: Option<FamilySockets>,
}

/// Why the VXLAN sockets could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(
        "cannot bind the VXLAN UDP port {addr}: {source} (is a kernel vxlan device or another \
         daemon using it? choose another with --vxlan-port)"
    )]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot set up a VXLAN socket: {0}")]
    Setup(io::Error),
}

fn udp_socket(addr: SocketAddr, reuse_port: bool) -> Result<mio::net::UdpSocket, io::Error> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(
        domain,
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    sys::udp::set_dont_fragment(s.as_fd(), addr.is_ipv6())?;
    // Receive trains of datagrams of one flow in one call; a kernel
    // without UDP_GRO (before 5.0) just delivers them one by one.
    let _ = sys::udp::enable_gro(s.as_fd());
    // Room for bursts from many VTEPs (and for trains of up to 64
    // datagrams from one): past rmem_max when the daemon may (root),
    // else as much as rmem_max allows.
    if sys::udp::force_buffers(s.as_fd(), 4 << 20).is_err() {
        let _ = s.set_recv_buffer_size(4 << 20);
        let _ = s.set_send_buffer_size(4 << 20);
    }
    // Every receive reports how many datagrams the kernel dropped on a
    // full buffer, so those are counted too (socket_overflow).
    let _ = sys::udp::enable_drop_count(s.as_fd());
    s.bind(&addr.into())?;
    Ok(mio::net::UdpSocket::from_std(s.into()))
}

impl Sockets {
    /// Opens the listening socket and the source-port pool of each family.
    /// IPv6 is optional (a host without IPv6 still gets IPv4).
    ///
    /// With `reuse_port`, the sockets are bound with `SO_REUSEPORT`, so that
    /// each dataplane worker can open its own set on the same ports and the
    /// kernel spreads arriving flows over them.
    pub fn open(cfg: &VxlanConfig, reuse_port: bool) -> Result<Sockets, SocketError> {
        let family = |ip: IpAddr| -> Result<FamilySockets, SocketError> {
            let addr = SocketAddr::new(ip, cfg.port);
            let listen = udp_socket(addr, reuse_port)
                .map_err(|source| SocketError::Bind { addr, source })?;
            let pool = cfg
                .pool_ports()
                .into_iter()
                .filter(|&p| p != cfg.port)
                .filter_map(|p| udp_socket(SocketAddr::new(ip, p), reuse_port).ok())
                .collect();
            Ok(FamilySockets {
                listen,
                pool,
                ipv6: ip.is_ipv6(),
            })
        };
        let v4 = family(IpAddr::V4(Ipv4Addr::UNSPECIFIED))?;
        let v6 = match family(IpAddr::V6(Ipv6Addr::UNSPECIFIED)) {
            Ok(s) => Some(s),
            Err(SocketError::Bind { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
                ) =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        Ok(Sockets { v4: Some(v4), v6 })
    }

    pub fn family(&self, ipv6: bool) -> Option<&FamilySockets> {
        if ipv6 {
            self.v6.as_ref()
        } else {
            self.v4.as_ref()
        }
    }

    /// Every socket, for registration: (family is v6, index in the family;
    /// index 0 is the listening socket, 1.. the pool).
    pub fn all_mut(&mut self) -> impl Iterator<Item = (bool, usize, &mut mio::net::UdpSocket)> {
        [self.v4.as_mut(), self.v6.as_mut()]
            .into_iter()
            .flatten()
            .flat_map(|f| {
                let v6 = f.ipv6;
                std::iter::once(&mut f.listen)
                    .chain(f.pool.iter_mut())
                    .enumerate()
                    .map(move |(i, s)| (v6, i, s))
            })
    }

    pub fn get(&self, ipv6: bool, index: usize) -> Option<&mio::net::UdpSocket> {
        let f = self.family(ipv6)?;
        if index == 0 {
            Some(&f.listen)
        } else {
            f.pool.get(index - 1)
        }
    }

    /// Source ports of the pool (both families), sorted, for `stats`.
    pub fn source_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = [self.v4.as_ref(), self.v6.as_ref()]
            .into_iter()
            .flatten()
            .flat_map(|f| {
                f.pool
                    .iter()
                    .filter_map(|s| s.local_addr().ok().map(|a| a.port()))
            })
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// A hash of the inner flow: both MACs and the EtherType, plus for IPv4 and
/// IPv6 the addresses, the protocol and, for TCP/UDP/SCTP in an unfragmented
/// packet, the ports. Deterministic (no per-process key): the same flow
/// maps to the same source port across restarts, which underlay load
/// balancers prefer.
#[inline]
pub fn flow_hash(frame: &[u8]) -> u32 {
    let mut h = Fnv::new();
    if frame.len() < 14 {
        return 0;
    }
    h.write(&frame[0..12]);
    let (mut et, mut off) = (u16::from_be_bytes([frame[12], frame[13]]), 14);
    if et == 0x8100 && frame.len() >= 18 {
        et = u16::from_be_bytes([frame[16], frame[17]]);
        off = 18;
    }
    h.write(&et.to_be_bytes());
    let l3 = &frame[off..];
    let l4 = match et {
        0x0800 if l3.len() >= 20 => {
            let ihl = usize::from(l3[0] & 0x0f) * 4;
            h.write(&l3[12..20]);
            h.write(&[l3[9]]);
            let fragmented = u16::from_be_bytes([l3[6], l3[7]]) & 0x3fff != 0;
            (!fragmented && ihl >= 20).then(|| (l3[9], l3.get(ihl..)))
        }
        0x86dd if l3.len() >= 40 => {
            h.write(&l3[8..40]);
            h.write(&[l3[6]]);
            Some((l3[6], l3.get(40..)))
        }
        _ => None,
    };
    if let Some((6 | 17 | 132, Some(p))) = l4 {
        if p.len() >= 4 {
            h.write(&p[0..4]);
        }
    }
    h.finish()
}

/// FNV-1a, 32-bit: a few dozen bytes per frame, no key needed.
struct Fnv(u32);

impl Fnv {
    fn new() -> Self {
        Fnv(0x811c_9dc5)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u32::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }

    fn finish(&self) -> u32 {
        // Fold the high bits in: the pool index is taken modulo a small number.
        self.0 ^ (self.0 >> 16)
    }
}

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
}

impl VxlanDrop {
    pub const ALL: [VxlanDrop; 7] = [
        VxlanDrop::Truncated,
        VxlanDrop::BadFlags,
        VxlanDrop::UnknownVni,
        VxlanDrop::UnknownVtep,
        VxlanDrop::VtepLimit,
        VxlanDrop::RxError,
        VxlanDrop::SocketOverflow,
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
    drops: [AtomicU64; VxlanDrop::ALL.len()],
}

impl VxlanStats {
    #[inline]
    pub fn count_drop(&self, why: VxlanDrop) {
        self.count_drops(why, 1);
    }

    #[inline]
    pub fn count_drops(&self, why: VxlanDrop, n: u64) {
        self.drops[why as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn drops(&self, why: VxlanDrop) -> u64 {
        self.drops[why as usize].load(Ordering::Relaxed)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn udp4(sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn one_flow_one_hash_and_flows_spread() {
        assert_eq!(flow_hash(&udp4(1000, 53)), flow_hash(&udp4(1000, 53)));
        let buckets: std::collections::HashSet<u32> = (0..64)
            .map(|p| flow_hash(&udp4(40_000 + p, 53)) % MAX_POOL as u32)
            .collect();
        assert!(
            buckets.len() >= 16,
            "64 flows hit only {} of {MAX_POOL} source ports",
            buckets.len()
        );
    }

    #[test]
    fn fragments_hash_without_ports() {
        let mut a = udp4(1, 2);
        let mut b = udp4(3, 4);
        for f in [&mut a, &mut b] {
            f[20] = 0x20; // more fragments
        }
        assert_eq!(flow_hash(&a), flow_hash(&b));
    }

    #[test]
    fn short_and_odd_frames_do_not_panic() {
        for len in 0..60 {
            let f = udp4(1, 2);
            let _ = flow_hash(&f[..len.min(f.len())]);
        }
    }

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
