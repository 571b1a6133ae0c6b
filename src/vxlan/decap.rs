//! The receiving half of the tunnel: one receive from a VXLAN socket (a
//! [`Train`] of same-size datagrams with `UDP_GRO`), then, per datagram,
//! [`decap`]: the header checked, the VNI mapped to its network and the
//! sender to its VTEP (learning it where the network allows). What comes
//! back is what the switch's ingress needs to forward the inner frame,
//! which stays where it was received: no copy.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;

use super::vteps::VtepTable;
use super::{Tunnel, VxlanDrop, VxlanStats};
use crate::fdb::{NetId, VtepId};
use crate::sys;
use crate::time::Millis;
use crate::wire::vxlan::{VxlanPacket, HEADER_LEN};

/// What one receive gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recv {
    /// Datagrams, at the start of the buffer.
    Train(Train),
    /// Nothing more to read now (or no such socket).
    Drained,
    /// Interrupted, or an error that was counted: try again.
    Again,
}

/// Datagrams of one sender laid end to end, all of `segment` bytes but
/// the last, which may be shorter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Train {
    pub len: usize,
    pub segment: usize,
    /// The sender's address, an IPv4-mapped one made IPv4.
    pub from: IpAddr,
}

impl Train {
    /// Each datagram's offset and length.
    #[inline]
    pub fn datagrams(&self) -> Datagrams {
        Datagrams {
            off: 0,
            len: self.len,
            segment: self.segment.max(1),
        }
    }
}

/// Iterator of [`Train::datagrams`].
#[derive(Clone, Debug)]
pub struct Datagrams {
    off: usize,
    len: usize,
    segment: usize,
}

impl Iterator for Datagrams {
    type Item = (usize, usize);

    #[inline]
    fn next(&mut self) -> Option<(usize, usize)> {
        if self.off >= self.len {
            return None;
        }
        let at = self.off;
        let n = self.segment.min(self.len - at);
        self.off += n;
        Some((at, n))
    }
}

/// Where a decapsulated frame came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decapped {
    pub vtep: VtepId,
    pub net: NetId,
}

impl Tunnel {
    /// Receives into `buf` from socket `index` of the family (0 is the
    /// listening socket, 1.. the pool), counting the datagrams, their
    /// bytes, and what the kernel dropped since the last receive.
    #[inline]
    pub(crate) fn receive(&mut self, ipv6: bool, index: usize, buf: &mut [u8]) -> Recv {
        let Some(sock) = self.sockets.as_ref().and_then(|s| s.get(ipv6, index)) else {
            return Recv::Drained;
        };
        let r = match sys::udp::recv_gro(sock.as_fd(), buf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Recv::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Recv::Again,
            Err(_) => {
                // E.g. an ICMP error queued on the socket; keep draining.
                self.stats.count_drop(VxlanDrop::RxError);
                return Recv::Again;
            }
        };
        if let Some(total) = r.dropped {
            let slot = usize::from(ipv6) * 1024 + index;
            if self.sock_drops.len() <= slot {
                self.sock_drops.resize(slot + 1, 0);
            }
            let new = total.wrapping_sub(self.sock_drops[slot]);
            self.sock_drops[slot] = total;
            self.stats
                .count_drops(VxlanDrop::SocketOverflow, u64::from(new));
        }
        if r.truncated {
            // Only the start of it is in `buf`: never forward a slice.
            self.stats.count_drop(VxlanDrop::Oversize);
            return Recv::Again;
        }
        if r.len == 0 {
            // An empty datagram: no train of datagrams to split, but still
            // one datagram shorter than a VXLAN header.
            self.stats.rx_datagrams.inc();
            self.stats.count_drop(VxlanDrop::Truncated);
            return Recv::Again;
        }
        let from = r.from.ip().to_canonical();
        let segment = r.segment.max(1);
        self.stats.rx_datagrams.add(r.len.div_ceil(segment) as u64);
        self.stats.rx_bytes.add(r.len as u64);
        Recv::Train(Train {
            len: r.len,
            segment,
            from,
        })
    }
}

/// Checks one datagram from `from` and finds its network and VTEP, learning
/// the sender as a VTEP where its network allows; counts the inner frame as
/// received on the VTEP. The inner frame is `datagram[HEADER_LEN..]`.
/// `None` when the datagram was dropped (counted in `stats`).
#[inline]
pub(crate) fn decap(
    vteps: &mut VtepTable,
    stats: &VxlanStats,
    datagram: &[u8],
    from: IpAddr,
    now: Millis,
) -> Option<Decapped> {
    let Ok(hdr) = VxlanPacket::new_checked(datagram) else {
        stats.count_drop(VxlanDrop::Truncated);
        return None;
    };
    if !hdr.has_vni() {
        stats.count_drop(VxlanDrop::BadFlags);
        return None;
    }
    let vni = hdr.vni();
    let Some(net) = vteps.network_of(vni) else {
        stats.count_drop(VxlanDrop::UnknownVni);
        return None;
    };
    let vtep = match vteps.sender(from, vni) {
        Some(v) => v,
        None => match vteps.learn(net, vni, from, now) {
            Ok(v) => v,
            Err(why) => {
                stats.count_drop(why);
                return None;
            }
        },
    };
    let v = vteps.get(vtep)?;
    v.stats.rx_frames.inc();
    v.stats.rx_bytes.add((datagram.len() - HEADER_LEN) as u64);
    Some(Decapped { vtep, net })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::PortStats;
    use crate::vxlan::vteps::IdPool;
    use crate::vxlan::{VtepInfo, VxlanConfig};

    const NET: NetId = NetId(3);
    const NOW: Millis = Millis(1_000);

    fn datagram(vni: u32, inner: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; HEADER_LEN];
        VxlanPacket::new_unchecked(&mut d[..]).set_header(vni);
        d.extend_from_slice(inner);
        d
    }

    #[test]
    fn trains_split_into_their_datagrams() {
        let from = "192.0.2.1".parse().unwrap();
        let t = Train {
            len: 250,
            segment: 100,
            from,
        };
        assert_eq!(
            t.datagrams().collect::<Vec<_>>(),
            vec![(0, 100), (100, 100), (200, 50)]
        );
        let one = Train {
            len: 60,
            segment: 60,
            from,
        };
        assert_eq!(one.datagrams().collect::<Vec<_>>(), vec![(0, 60)]);
    }

    #[test]
    fn each_refusal_is_counted_and_a_known_sender_is_resolved() {
        let mut vteps = VtepTable::new(VxlanConfig::default(), Arc::new(IdPool::default()));
        let stats = VxlanStats::default();
        let from: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(decap(&mut vteps, &stats, &[0u8; 7], from, NOW), None);
        assert_eq!(stats.drops(VxlanDrop::Truncated), 1);
        assert_eq!(decap(&mut vteps, &stats, &[0u8; 8], from, NOW), None);
        assert_eq!(stats.drops(VxlanDrop::BadFlags), 1);
        assert_eq!(
            decap(&mut vteps, &stats, &datagram(9, &[1; 60]), from, NOW),
            None
        );
        assert_eq!(stats.drops(VxlanDrop::UnknownVni), 1);
        vteps.set_network(NET, Some(9), false).unwrap();
        assert_eq!(
            decap(&mut vteps, &stats, &datagram(9, &[1; 60]), from, NOW),
            None
        );
        assert_eq!(stats.drops(VxlanDrop::UnknownVtep), 1);
        let vtep_stats = Arc::new(PortStats::default());
        vteps
            .add(&VtepInfo {
                id: VtepId(0),
                net: NET,
                addr: "192.0.2.1:4789".parse().unwrap(),
                dynamic: false,
                stats: vtep_stats.clone(),
            })
            .unwrap();
        assert_eq!(
            decap(&mut vteps, &stats, &datagram(9, &[1; 60]), from, NOW),
            Some(Decapped {
                vtep: VtepId(0),
                net: NET
            })
        );
        assert_eq!(vtep_stats.rx_frames.get(), 1);
        assert_eq!(vtep_stats.rx_bytes.get(), 60);
    }

    #[test]
    fn a_learning_network_takes_a_new_sender_as_a_vtep() {
        let mut vteps = VtepTable::new(VxlanConfig::default(), Arc::new(IdPool::default()));
        let stats = VxlanStats::default();
        vteps.set_network(NET, Some(9), true).unwrap();
        let from: IpAddr = "192.0.2.7".parse().unwrap();
        let d = decap(&mut vteps, &stats, &datagram(9, &[1; 60]), from, NOW).unwrap();
        assert_eq!(d.net, NET);
        let learned: Vec<_> = vteps.learned().collect();
        assert_eq!(learned.len(), 1);
        assert_eq!(learned[0].id, d.vtep);
        // The next datagram finds it without learning again.
        assert_eq!(
            decap(&mut vteps, &stats, &datagram(9, &[1; 60]), from, NOW),
            Some(d)
        );
        assert_eq!(vteps.learned().count(), 0);
    }

    /// A datagram longer than the receive buffer is counted as `oversize`
    /// and dropped whole, an empty one as `truncated` (it was not counted
    /// at all); the next one is received as usual.
    #[test]
    fn a_datagram_longer_than_the_buffer_is_dropped_whole_as_oversize() {
        use crate::vxlan::sockets::Sockets;
        use crate::vxlan::stats::VxlanStats;
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = VxlanConfig {
            port,
            src_port_min: port,
            src_port_max: port,
            ..VxlanConfig::default()
        };
        let stats = Arc::new(VxlanStats::default());
        let mut t = Tunnel::new(stats.clone());
        t.open(Sockets::open(&cfg, false).unwrap());
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // An empty datagram is one too, shorter than a header.
        tx.send_to(&[], ("127.0.0.1", port)).unwrap();
        tx.send_to(&datagram(7, &[0xaa; 192]), ("127.0.0.1", port))
            .unwrap();
        tx.send_to(&datagram(7, &[0xbb; 52]), ("127.0.0.1", port))
            .unwrap();
        let mut buf = [0u8; 100];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let train = loop {
            match t.receive(false, 0, &mut buf) {
                Recv::Train(tr) => break tr,
                Recv::Drained | Recv::Again => {
                    assert!(std::time::Instant::now() < deadline, "nothing received");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        };
        assert_eq!(stats.drops(VxlanDrop::Oversize), 1);
        assert_eq!(stats.drops(VxlanDrop::Truncated), 1);
        assert_eq!((train.len, train.segment), (60, 60));
        assert_eq!(&buf[HEADER_LEN..train.len], &[0xbb; 52]);
    }
}
