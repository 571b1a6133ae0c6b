//! What a port may send: port security and the IP source guard, fixed when
//! the port is attached and checked by [`decide()`](super::decide()) before
//! the source is learned.
//!
//! - **Port security** ([`SourcePolicy::Mac`]): a port forwards only frames
//!   whose source MAC is its own. One compare per frame.
//! - **IP source guard** ([`SourcePolicy::Guarded`], [`IpGuard`]): besides,
//!   ARP senders and IPv4/IPv6 sources must be the port's addresses: its
//!   IPv4 and IPv6 address when it has them, its IPv6 link-local (EUI-64
//!   from its MAC) and the unspecified address (DHCP, ARP probes, duplicate
//!   address detection). Neighbour advertisements (and the solicitations of
//!   duplicate address detection) may only claim those addresses, and ARP
//!   and neighbour discovery may only announce the port's MAC.
//! - **Owned MACs** ([`OwnedMacs`]): a port's own MAC, when the switch
//!   knows it, belongs to that port in its network: a frame with it as its
//!   source from any other port (one without port security, or one whose MAC
//!   the switch does not know) or from a VTEP is dropped. A VXLAN datagram
//!   thus cannot pull a local container's traffic into the tunnel.
//!
//! Refusals are [`DropReason::SpoofedSrc`] and [`DropReason::SpoofedIp`],
//! counted on the port (or VTEP) the frame came from. docs/security.md
//! says what each defence is for and how to turn it off.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::fdb::{NetId, PortId};
use crate::metrics::DropReason;
use crate::wire::arp::ArpPacket;
use crate::wire::ethernet::EtherType;
use crate::wire::icmpv6::{Icmpv6Message, Icmpv6Packet, NdOptionType};
use crate::wire::ip::IpProtocol;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::{EthernetFrame, MacAddr};

/// Maps consulted per frame use ahash, not std's SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// Which frames a port may send, as given when it is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SourcePolicy {
    /// Any source MAC but those other ports of the network own: a port
    /// created without port security, or whose MAC the switch does not
    /// know.
    #[default]
    Open,
    /// Only this source MAC (the port's own): port security.
    Mac(MacAddr),
    /// Only the guard's MAC, and only its addresses as IP sources.
    Guarded(IpGuard),
}

impl SourcePolicy {
    /// The policy of a port with MAC `mac` (if known): port security on
    /// unless `port_security` is false, the IP guard on `addrs` if given.
    pub fn new(
        mac: Option<MacAddr>,
        port_security: bool,
        ip_guard: Option<(Option<Ipv4Addr>, Option<Ipv6Addr>)>,
    ) -> SourcePolicy {
        match (mac, port_security, ip_guard) {
            (Some(mac), true, Some((v4, v6))) => SourcePolicy::Guarded(IpGuard::new(mac, v4, v6)),
            (Some(mac), true, None) => SourcePolicy::Mac(mac),
            _ => SourcePolicy::Open,
        }
    }

    /// The port's own MAC when the policy locks the source to it.
    pub fn mac(&self) -> Option<MacAddr> {
        match self {
            SourcePolicy::Open => None,
            SourcePolicy::Mac(m) => Some(*m),
            SourcePolicy::Guarded(g) => Some(g.mac),
        }
    }
}

/// The addresses a guarded port may send from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpGuard {
    pub mac: MacAddr,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
    /// `fe80::/64` with the EUI-64 interface identifier of `mac`.
    pub link_local: Ipv6Addr,
}

impl IpGuard {
    pub fn new(mac: MacAddr, v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>) -> IpGuard {
        IpGuard {
            mac,
            v4,
            v6,
            link_local: ipv6::link_local_eui64(mac),
        }
    }

    fn v4_ok(&self, a: Ipv4Addr) -> bool {
        a.is_unspecified() || Some(a) == self.v4
    }

    /// An address the port may claim as its own (a neighbour
    /// advertisement's target, a source).
    fn v6_own(&self, a: Ipv6Addr) -> bool {
        a == self.link_local || Some(a) == self.v6
    }

    /// Whether `frame` (from `self.mac`) carries only the port's addresses
    /// where it names a sender.
    fn check(&self, frame: &[u8]) -> Result<(), DropReason> {
        let eth = EthernetFrame::new_unchecked(frame);
        let Ok((at, ethertype)) = eth.check_payload() else {
            // Too short for its VLAN tags: nothing inside to guard, and
            // nothing a receiver would take for ARP or IP either.
            return Ok(());
        };
        let payload = &frame[at..];
        let ok = match ethertype {
            EtherType::Arp => match ArpPacket::new_checked(payload) {
                Ok(arp) => {
                    !arp.is_ethernet_ipv4()
                        || (arp.sender_hardware_addr() == self.mac
                            && self.v4_ok(arp.sender_protocol_addr()))
                }
                Err(_) => false,
            },
            EtherType::Ipv4 => match Ipv4Packet::new_checked(payload) {
                Ok(ip) => self.v4_ok(ip.src_addr()),
                Err(_) => false,
            },
            EtherType::Ipv6 => match Ipv6Packet::new_checked(payload) {
                Ok(ip) => self.v6_ok(&ip),
                Err(_) => false,
            },
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(DropReason::SpoofedIp)
        }
    }

    fn v6_ok(&self, ip: &Ipv6Packet<&[u8]>) -> bool {
        let src = ip.src_addr();
        let unspecified = src.is_unspecified();
        if !unspecified && !self.v6_own(src) {
            return false;
        }
        if ip.next_header() != IpProtocol::Icmpv6 {
            return true;
        }
        let Ok(icmp) = Icmpv6Packet::new_checked(ip.payload()) else {
            return false;
        };
        let claims = match icmp.msg_type() {
            // An advertisement says "this address is at my MAC".
            Icmpv6Message::NeighborAdvert => true,
            // Duplicate address detection: "I am about to take this one".
            Icmpv6Message::NeighborSolicit => unspecified,
            _ => return true,
        };
        if claims && !icmp.nd_target().is_some_and(|t| self.v6_own(t)) {
            return false;
        }
        // Link-layer address options may only announce the port's MAC.
        icmp.nd_options().all(|o| match o {
            Ok(o) => {
                !matches!(
                    o.option_type(),
                    NdOptionType::SourceLinkLayerAddr | NdOptionType::TargetLinkLayerAddr
                ) || o.link_layer_addr() == self.mac
            }
            Err(_) => false,
        })
    }
}

/// The MACs of a worker's ports that the switch knows, by network: no
/// other ingress of the network may use them as a source.
#[derive(Debug, Default)]
pub struct OwnedMacs(HashMap<(NetId, MacAddr), PortId>);

impl OwnedMacs {
    /// Records `port`'s MAC; `Err` with the owner if another port of the
    /// network has it.
    pub fn claim(&mut self, net: NetId, mac: MacAddr, port: PortId) -> Result<(), PortId> {
        match self.0.get(&(net, mac)) {
            Some(&owner) if owner != port => Err(owner),
            _ => {
                self.0.insert((net, mac), port);
                Ok(())
            }
        }
    }

    /// Forgets `port`'s MAC.
    pub fn release(&mut self, net: NetId, mac: MacAddr, port: PortId) {
        if self.0.get(&(net, mac)) == Some(&port) {
            self.0.remove(&(net, mac));
        }
    }

    #[inline]
    pub fn owner(&self, net: NetId, mac: MacAddr) -> Option<PortId> {
        if self.0.is_empty() {
            return None;
        }
        self.0.get(&(net, mac)).copied()
    }
}

/// What [`decide()`](super::decide()) checks of an ingress's sources.
#[derive(Clone, Copy, Debug)]
pub enum Policy<'a> {
    /// Nothing (what [`Ingress::port`](super::Ingress::port) and
    /// [`Ingress::vtep`](super::Ingress::vtep) give, for tests and
    /// benchmarks).
    Any,
    /// Any source MAC but one another port owns.
    NotOwned(&'a OwnedMacs),
    /// Only this source MAC.
    Mac(MacAddr),
    /// Only the guard's MAC and addresses.
    Guarded(&'a IpGuard),
}

impl Policy<'_> {
    /// Whether a frame from `src`, received on `port` (`None`: a VTEP) of
    /// `net`, may be forwarded.
    #[inline(always)]
    pub(super) fn check(
        &self,
        net: NetId,
        port: Option<PortId>,
        src: MacAddr,
        frame: &[u8],
    ) -> Result<(), DropReason> {
        match *self {
            Policy::Any => Ok(()),
            Policy::Mac(mac) if src == mac => Ok(()),
            Policy::Mac(_) => Err(DropReason::SpoofedSrc),
            Policy::Guarded(g) if src == g.mac => g.check(frame),
            Policy::Guarded(_) => Err(DropReason::SpoofedSrc),
            Policy::NotOwned(owned) => match owned.owner(net, src) {
                Some(owner) if Some(owner) != port => Err(DropReason::SpoofedSrc),
                _ => Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
    const OTHER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
    const V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);

    fn guard() -> IpGuard {
        IpGuard::new(MAC, Some(V4), Some("fd00::a".parse().unwrap()))
    }

    fn eth(src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&src.0);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn arp(sha: MacAddr, spa: Ipv4Addr) -> Vec<u8> {
        let mut a = vec![0, 1, 0x08, 0, 6, 4, 0, 1];
        a.extend_from_slice(&sha.0);
        a.extend_from_slice(&spa.octets());
        a.extend_from_slice(&[0; 6]);
        a.extend_from_slice(&[10, 0, 0, 1]);
        eth(MAC, 0x0806, &a)
    }

    fn ipv4(src: Ipv4Addr) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0];
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&[10, 0, 0, 1]);
        ip.extend_from_slice(&[0; 8]);
        eth(MAC, 0x0800, &ip)
    }

    fn ipv6(src: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        ip.extend_from_slice(&[next, 255]);
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&"ff02::1".parse::<Ipv6Addr>().unwrap().octets());
        ip.extend_from_slice(payload);
        eth(MAC, 0x86dd, &ip)
    }

    /// A neighbour advertisement (136) or solicitation (135) for `target`
    /// with a link-layer address option of `lladdr`.
    fn nd(msg: u8, target: Ipv6Addr, lladdr: MacAddr) -> Vec<u8> {
        let mut m = vec![msg, 0, 0, 0, 0x20, 0, 0, 0];
        m.extend_from_slice(&target.octets());
        m.extend_from_slice(&[if msg == 136 { 2 } else { 1 }, 1]);
        m.extend_from_slice(&lladdr.0);
        m
    }

    fn check(p: Policy<'_>, src: MacAddr, f: &[u8]) -> Result<(), DropReason> {
        p.check(NetId(0), Some(PortId(1)), src, f)
    }

    #[test]
    fn port_security_is_one_compare_of_the_source() {
        let f = ipv4(V4);
        assert_eq!(check(Policy::Mac(MAC), MAC, &f), Ok(()));
        assert_eq!(
            check(Policy::Mac(MAC), OTHER, &f),
            Err(DropReason::SpoofedSrc)
        );
        assert_eq!(check(Policy::Any, OTHER, &f), Ok(()));
    }

    #[test]
    fn owned_macs_belong_to_their_port() {
        let mut owned = OwnedMacs::default();
        owned.claim(NetId(0), MAC, PortId(1)).unwrap();
        assert_eq!(owned.claim(NetId(0), MAC, PortId(2)), Err(PortId(1)));
        // Another network may have the same MAC.
        owned.claim(NetId(1), MAC, PortId(2)).unwrap();
        let p = Policy::NotOwned(&owned);
        let f = ipv4(V4);
        assert_eq!(p.check(NetId(0), Some(PortId(1)), MAC, &f), Ok(()));
        assert_eq!(
            p.check(NetId(0), Some(PortId(3)), MAC, &f),
            Err(DropReason::SpoofedSrc)
        );
        // From a VTEP.
        assert_eq!(
            p.check(NetId(0), None, MAC, &f),
            Err(DropReason::SpoofedSrc)
        );
        assert_eq!(p.check(NetId(0), None, OTHER, &f), Ok(()));
        owned.release(NetId(0), MAC, PortId(2));
        assert_eq!(owned.owner(NetId(0), MAC), Some(PortId(1)));
        owned.release(NetId(0), MAC, PortId(1));
        assert_eq!(owned.owner(NetId(0), MAC), None);
    }

    #[test]
    fn the_ip_guard_lets_the_ports_addresses_through() {
        let g = guard();
        let p = Policy::Guarded(&g);
        let ll = ipv6::link_local_eui64(MAC);
        assert_eq!(ll, "fe80::ff:fe00:a".parse::<Ipv6Addr>().unwrap());
        for (what, f) in [
            ("ARP from its address", arp(MAC, V4)),
            ("ARP probe", arp(MAC, Ipv4Addr::UNSPECIFIED)),
            ("IPv4 from its address", ipv4(V4)),
            ("DHCP discover", ipv4(Ipv4Addr::UNSPECIFIED)),
            ("IPv6 from its address", ipv6(g.v6.unwrap(), 17, &[0; 8])),
            ("IPv6 from its link-local", ipv6(ll, 17, &[0; 8])),
            ("DAD", ipv6(Ipv6Addr::UNSPECIFIED, 58, &nd(135, ll, MAC))),
            ("NA for itself", ipv6(ll, 58, &nd(136, g.v6.unwrap(), MAC))),
            (
                "NS for a neighbour",
                ipv6(ll, 58, &nd(135, "fd00::1".parse().unwrap(), MAC)),
            ),
            ("other EtherType", eth(MAC, 0x88b5, &[0; 46])),
        ] {
            assert_eq!(check(p, MAC, &f), Ok(()), "{what}");
        }
    }

    #[test]
    fn the_ip_guard_drops_what_claims_another_address() {
        let g = guard();
        let p = Policy::Guarded(&g);
        let ll = ipv6::link_local_eui64(MAC);
        let theirs4 = Ipv4Addr::new(10, 0, 0, 20);
        let theirs6: Ipv6Addr = "fd00::14".parse().unwrap();
        for (what, f) in [
            ("ARP claiming another IP", arp(MAC, theirs4)),
            ("ARP announcing another MAC", arp(OTHER, V4)),
            ("IPv4 from another address", ipv4(theirs4)),
            ("IPv6 from another address", ipv6(theirs6, 17, &[0; 8])),
            (
                "NA for another address",
                ipv6(ll, 58, &nd(136, theirs6, MAC)),
            ),
            ("NA with another MAC", ipv6(ll, 58, &nd(136, ll, OTHER))),
            (
                "DAD for another address",
                ipv6(Ipv6Addr::UNSPECIFIED, 58, &nd(135, theirs6, MAC)),
            ),
            ("truncated IPv4", eth(MAC, 0x0800, &[0x45, 0, 0])),
            ("truncated ARP", eth(MAC, 0x0806, &[0, 1])),
        ] {
            assert_eq!(check(p, MAC, &f), Err(DropReason::SpoofedIp), "{what}");
        }
        assert_eq!(check(p, OTHER, &ipv4(V4)), Err(DropReason::SpoofedSrc));
    }

    #[test]
    fn policies_follow_what_the_port_knows() {
        assert_eq!(SourcePolicy::new(None, true, None), SourcePolicy::Open);
        assert_eq!(
            SourcePolicy::new(Some(MAC), false, None),
            SourcePolicy::Open
        );
        assert_eq!(
            SourcePolicy::new(Some(MAC), true, None),
            SourcePolicy::Mac(MAC)
        );
        assert_eq!(
            SourcePolicy::new(Some(MAC), true, Some((Some(V4), None))).mac(),
            Some(MAC)
        );
    }
}
