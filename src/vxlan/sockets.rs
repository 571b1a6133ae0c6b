//! The VXLAN sockets: per address family, one listening socket on the
//! VXLAN port and a pool of sockets bound to spread source ports (see the
//! [module documentation](super) for why a pool). Opening and socket
//! options only; what is sent and received through them is in
//! `tx` and `decap`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;

use super::VxlanConfig;
use crate::sys;

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

#[cfg(test)]
mod spread_tests {
    use crate::vxlan::MAX_POOL;
    use crate::wire::flow_hash;

    /// An IPv4/UDP frame of one flow.
    fn udp4(sport: u16, dport: u16) -> Vec<u8> {
        use crate::wire::{EthernetFrame, Ipv4Packet, UdpPacket};
        let mut f = vec![0u8; 14 + 20 + 8];
        let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
        eth.set_dst_addr(crate::wire::MacAddr([2, 0, 0, 0, 0, 1]));
        eth.set_src_addr(crate::wire::MacAddr([2, 0, 0, 0, 0, 2]));
        eth.set_ethertype(crate::wire::EtherType::Ipv4);
        let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.set_version_and_header_len(20);
        ip.set_protocol(crate::wire::IpProtocol::Udp);
        ip.set_src_addr(std::net::Ipv4Addr::new(10, 0, 0, 1));
        ip.set_dst_addr(std::net::Ipv4Addr::new(10, 0, 0, 2));
        let mut udp = UdpPacket::new_unchecked(&mut f[34..]);
        udp.set_src_port(sport);
        udp.set_dst_port(dport);
        f
    }

    /// One flow always picks the same pool socket; 64 flows spread over
    /// most of the pool.
    #[test]
    fn one_flow_one_socket_and_flows_spread() {
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
}
