//! Wire formats: zero-copy views and parsed representations.
//!
//! This module is the only code in the crate that knows where a field sits
//! in a packet. Everything else asks a view. It owns:
//!
//! - the views: [`EthernetFrame`] (with 0..2 VLAN tags) and [`VlanHeader`],
//!   [`ArpPacket`], [`Ipv4Packet`], [`Ipv6Packet`] and its extension headers,
//!   [`TcpPacket`], [`UdpPacket`], [`Icmpv4Packet`], [`Icmpv6Packet`],
//!   [`VxlanPacket`](vxlan::VxlanPacket) and the pktgen probe header
//!   ([`probe`]);
//! - the Internet checksum ([`checksum`]);
//! - the header layout that offloads work from ([`layout`]) and the flow
//!   hash that picks a VXLAN source port ([`flow`]).
//!
//! Every protocol has a view (`XxxPacket<T: AsRef<[u8]>>`, getters over the
//! buffer, setters when `T: AsMut<[u8]>`) and, where something builds that
//! header from values, a `XxxRepr` with `parse`/`buffer_len`/`emit`.
//!
//! Contracts, as in smoltcp:
//! - untrusted bytes enter through `new_checked` (or `new_unchecked`
//!   followed by `check_len`); once that has succeeded no accessor panics;
//! - `new_unchecked` alone gives a view whose accessors may panic on a
//!   short buffer; helpers that can panic whatever was checked carry an
//!   `_unchecked` suffix;
//! - `emit` needs a buffer of at least `buffer_len()` bytes and panics on a
//!   shorter one (a caller's bug, not a property of received bytes);
//! - fields are read at byte offsets (named ranges in each module's private
//!   `mod field`), never through a struct cast: a frame buffer carries no
//!   alignment guarantee, and an unaligned reference would be undefined
//!   behaviour;
//! - getters are `#[inline]`: a view compiles down to the same loads as
//!   hand-written indexing, which the hot path (segmentation, coalescing,
//!   the flow hash) relies on;
//! - numbers with a registry (EtherTypes, IP protocols, ICMP types) are
//!   enums with an `Unknown` variant, so unknown values round-trip.

/// Declares a `u8`/`u16` protocol-number enum with an `Unknown(value)`
/// variant and lossless conversions both ways (smoltcp's
/// `enum_with_unknown!`).
macro_rules! enum_with_unknown {
    (
        $(#[$enum_attr:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$variant_attr:meta])* $variant:ident = $value:literal ),+ $(,)?
        }
    ) => {
        $(#[$enum_attr])*
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
        pub enum $name {
            $( $(#[$variant_attr])* $variant ),+,
            /// Any other value, kept so that it round-trips.
            Unknown($ty),
        }

        impl ::core::convert::From<$ty> for $name {
            // Always: inlined, a conversion followed by a comparison folds
            // into comparing the raw number; outlined, it is a jump table.
            #[inline(always)]
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant ),+,
                    other => $name::Unknown(other),
                }
            }
        }

        impl ::core::convert::From<$name> for $ty {
            #[inline(always)]
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value ),+,
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod flow;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod layout;
pub mod mac;
pub mod probe;
pub mod tcp;
pub mod udp;
pub mod vxlan;

#[cfg(test)]
mod test_frames;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr, VlanHeader, VlanTag};
pub use flow::flow_hash;
pub use icmpv4::{Icmpv4Message, Icmpv4Packet, Icmpv4Repr};
pub use icmpv6::{Icmpv6Message, Icmpv6Packet, Icmpv6Repr, NdOption, NdOptionType};
pub use ip::IpProtocol;
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6ExtHeader, Ipv6Packet, Ipv6Repr};
pub use layout::{Ip, Layout, LayoutError, Proto};
pub use mac::MacAddr;
pub use tcp::TcpPacket;
pub use udp::{UdpPacket, UdpRepr};

/// Why bytes could not be read as a protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header it claims to hold.
    #[error("truncated header")]
    Truncated,
    /// A field holds a value the protocol forbids.
    #[error("malformed header")]
    Malformed,
}

pub type Result<T> = core::result::Result<T, Error>;

/// A big-endian `u16` at `at`: the one helper every view's getters share.
/// One bounds check (the range), so it inlines into a load and a swap.
///
/// # Panics
/// When `b` is shorter than `at + 2`.
#[inline(always)]
pub(crate) fn read_u16_unchecked(b: &[u8], at: usize) -> u16 {
    let s = &b[at..at + 2];
    u16::from_be_bytes([s[0], s[1]])
}

/// A big-endian `u32` at `at`.
///
/// # Panics
/// When `b` is shorter than `at + 4`.
#[inline(always)]
pub(crate) fn read_u32_unchecked(b: &[u8], at: usize) -> u32 {
    let s = &b[at..at + 4];
    u32::from_be_bytes([s[0], s[1], s[2], s[3]])
}

/// Writes a big-endian `u16` at `at`.
///
/// # Panics
/// When `b` is shorter than `at + 2`.
#[inline(always)]
pub(crate) fn write_u16_unchecked(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes a big-endian `u32` at `at`.
///
/// # Panics
/// When `b` is shorter than `at + 4`.
#[inline(always)]
pub(crate) fn write_u32_unchecked(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    //! The contract common to every view: once `new_checked` succeeds, no
    //! getter panics, whatever the bytes; and it never panics itself.

    use super::*;
    use test_frames::Rng;

    /// Every length 0..96, random bytes, with the type-like bytes biased
    /// towards values that lead somewhere (TPIDs, IPv4/IPv6 versions, ICMP
    /// ND types) so that the conditional checks are exercised.
    fn buffers(mut f: impl FnMut(&[u8])) {
        let mut rng = Rng(0xdead_beef);
        for len in 0..96 {
            for round in 0..200 {
                let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                match round % 5 {
                    0 if len > 14 => b[12..14].copy_from_slice(&[0x81, 0x00]),
                    1 if len > 18 => b[16..18].copy_from_slice(&[0x88, 0xa8]),
                    2 if len > 0 => b[0] = 0x40 | (b[0] & 0x0f),
                    3 if len > 0 => b[0] = [135, 136, 128][usize::from(b[0]) % 3],
                    _ => {}
                }
                f(&b);
            }
        }
    }

    #[test]
    fn no_getter_panics_after_new_checked() {
        buffers(|b| {
            if let Ok(p) = EthernetFrame::new_checked(b) {
                let _ = (p.dst_addr(), p.src_addr(), p.addresses(), p.ethertype());
                let _ = (p.vlan_count(), p.vlan_tag(0), p.vlan_tag(1), p.vlan_id());
                let _ = (p.inner_ethertype(), p.header(), p.payload());
                let _ = EthernetRepr::parse(&p);
            }
            if let Ok(p) = VlanHeader::new_checked(b) {
                let _ = (p.tci(), p.vid(), p.ethertype(), p.payload());
            }
            if let Ok(p) = ArpPacket::new_checked(b) {
                let _ = (
                    p.operation(),
                    p.sender_hardware_addr(),
                    p.target_protocol_addr(),
                );
                let _ = ArpRepr::parse(&p);
            }
            if let Ok(p) = Ipv4Packet::new_checked(b) {
                let _ = (p.options(), p.payload(), p.addresses(), p.verify_checksum());
                let _ = (p.frag_offset(), p.pseudo_header_sum(IpProtocol::Tcp, 20));
                let _ = p.same_flow_header(&p);
                let _ = Ipv4Repr::parse(&p);
            }
            if let Ok(p) = Ipv6Packet::new_checked(b) {
                let _ = (
                    p.traffic_class(),
                    p.flow_label(),
                    p.src_addr(),
                    p.dst_addr(),
                );
                let _ = (p.payload(), p.addresses(), p.same_flow_header(&p));
                let _ = Ipv6Repr::parse(&p);
            }
            if let Ok(p) = Ipv6ExtHeader::new_checked(b) {
                let _ = (p.next_header(), p.segments_left(), p.data());
            }
            if let Ok(p) = TcpPacket::new_checked(b) {
                let _ = (p.seq_number(), p.ack_number(), p.options(), p.payload());
                let _ = (p.verify_checksum(0), p.same_ports_and_options(&p));
            }
            if let Ok(p) = UdpPacket::new_checked(b) {
                let _ = (p.payload(), p.verify_checksum(0));
                let _ = UdpRepr::parse(&p);
            }
            if let Ok(p) = Icmpv4Packet::new_checked(b) {
                let _ = (p.msg_type(), p.echo_ident(), p.data(), p.verify_checksum());
                let _ = Icmpv4Repr::parse(&p);
            }
            if let Ok(p) = Icmpv6Packet::new_checked(b) {
                let _ = (p.nd_target(), p.nd_flags(), p.echo_data());
                let _ = p.nd_options().count();
                let a = std::net::Ipv6Addr::LOCALHOST;
                let _ = Icmpv6Repr::parse(&a, &a, &p);
            }
            if let Ok(p) = NdOption::new_checked(b) {
                let _ = (p.option_type(), p.option_len(), p.link_layer_addr());
            }
            if let Ok(p) = probe::ProbeFrame::new_checked(b) {
                let _ = (p.dst_mac(), p.ip_src(), p.udp_src_port(), p.seq(), p.kind());
            }
            if let Ok(p) = vxlan::VxlanPacket::new_checked(b) {
                let _ = (p.vni(), p.payload());
            }
            let _ = layout::parse(b);
            let _ = flow_hash(b);
        });
    }
}
