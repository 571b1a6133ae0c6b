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
