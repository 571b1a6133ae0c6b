//! The hash of an inner frame's flow that picks a VXLAN datagram's UDP
//! source port (RFC 7348 section 5: "it is recommended that the UDP source
//! port number be calculated using a hash of fields from the inner
//! packet"), so that underlay ECMP and RSS spread flows and keep each one
//! in order.
//!
//! What is hashed: both MACs and the EtherType (looking through one
//! 802.1Q tag), plus for IPv4 and IPv6 the addresses and the protocol
//! (IPv6: the next header of the fixed header; extension headers are not
//! walked) and, for TCP, UDP and SCTP in an unfragmented packet, the two
//! ports. A frame too short for a layer hashes what came before it; one
//! shorter than an Ethernet header hashes to 0. Nothing here fails.
//!
//! Deterministic (no per-process key): the same flow maps to the same
//! source port across restarts and hosts, which underlay load balancers
//! prefer. The values are part of the contract: changing what is hashed
//! moves every flow to another source port, so the function is pinned by
//! a test against a reference copy.

use super::ethernet::{self, EthernetFrame, VlanHeader};
use super::ipv4::{self, Ipv4Packet};
use super::ipv6::{self, Ipv6Packet};
use super::{EtherType, IpProtocol};

/// Bytes of an L4 header hashed: the source and destination ports, the
/// first four bytes of TCP, UDP and SCTP alike.
const PORTS_LEN: usize = 4;

/// A hash of the inner flow of `frame` (an Ethernet frame); see the module
/// documentation.
#[inline]
pub fn flow_hash(frame: &[u8]) -> u32 {
    let mut h = Fnv::new();
    if frame.len() < ethernet::HEADER_LEN {
        return 0;
    }
    // The untagged header is there: its getters are in bounds (the tag is
    // read through its own view below, when it is all there).
    let eth = EthernetFrame::new_unchecked(frame);
    h.write(eth.addresses());
    // One 802.1Q tag is looked through when it is all there; otherwise the
    // TPID is the EtherType hashed, and nothing of L3 is.
    let mut ethertype = eth.ethertype();
    let mut l3 = &frame[ethernet::HEADER_LEN..];
    if ethertype == EtherType::Vlan {
        if let Ok(tag) = VlanHeader::new_checked(l3) {
            ethertype = tag.ethertype();
            l3 = &l3[ethernet::VLAN_TAG_LEN..];
        }
    }
    h.write(&u16::from(ethertype).to_be_bytes());
    let l4 = match ethertype {
        EtherType::Ipv4 if l3.len() >= ipv4::HEADER_LEN => {
            // The fixed header is there: its getters are in bounds.
            let ip = Ipv4Packet::new_unchecked(l3);
            h.write(ip.addresses());
            h.write(&[u8::from(ip.protocol())]);
            let ihl = ip.header_len();
            (!ip.is_fragment() && ihl >= ipv4::HEADER_LEN).then(|| (ip.protocol(), l3.get(ihl..)))
        }
        EtherType::Ipv6 if l3.len() >= ipv6::HEADER_LEN => {
            let ip = Ipv6Packet::new_unchecked(l3);
            h.write(ip.addresses());
            h.write(&[u8::from(ip.next_header())]);
            Some((ip.next_header(), l3.get(ipv6::HEADER_LEN..)))
        }
        _ => None,
    };
    if let Some((IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Sctp, Some(l4))) = l4 {
        if let Some(ports) = l4.get(..PORTS_LEN) {
            h.write(ports);
        }
    }
    h.finish()
}

/// FNV-1a, 32-bit: a few dozen bytes per frame, no key needed.
struct Fnv(u32);

impl Fnv {
    #[inline]
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

    #[inline]
    fn finish(&self) -> u32 {
        // Fold the high bits in: the pool index is taken modulo a small number.
        self.0 ^ (self.0 >> 16)
    }
}

#[cfg(test)]
mod tests;
