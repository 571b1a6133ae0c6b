//! The packet socket of an uplink port: one `AF_PACKET`/`SOCK_RAW` socket
//! bound to a host interface, that carries one Ethernet frame per `read`
//! and `write` behind the 12-byte `virtio_net_hdr` the TAP ports use, so
//! the engine drives it as it drives a TAP with offloads.
//!
//! It is opened by [`super::pktport`] (shared with veth ports), with the
//! interface in promiscuous mode and this module's filter; in short, in
//! the order it is set up:
//!
//! - `PACKET_VNET_HDR_SZ` 12 (Linux 6.2+). On a plain socket (no ring) the
//!   kernel writes the whole 12-byte header on receive (`packet_rcv_vnet`,
//!   `num_buffers` 0) and reads 12 on send, unlike with rings (see
//!   `sys::ring`). A GRO'd super-frame from the interface comes whole with
//!   its GSO type, size and partial checksum; a super-frame written to it
//!   is segmented by the kernel (or the NIC) on the way out. A kernel
//!   without the option gets a socket without a header (`vnet_hdr` false):
//!   the engine then completes checksums and cuts super-frames itself.
//! - `PACKET_IGNORE_OUTGOING`: neither our own sends nor the host's are
//!   read back.
//! - A classic BPF filter: only frames whose VLAN tag (which the kernel
//!   always takes off into metadata before packet sockets see a frame) is
//!   the network's, or frames without a tag (or with a priority tag, VLAN
//!   id 0) for an untagged network; and
//!   never a frame addressed to the interface's own MAC (`PACKET_HOST`):
//!   that is the host's traffic, not the containers'.
//! - A receive buffer of [`RCVBUF`](super::pktport::RCVBUF) bytes (`SO_RCVBUFFORCE`, else as much
//!   of it as `net.core.rmem_max` allows).
//! - Bound to the interface for every protocol, then promiscuous
//!   (`PACKET_ADD_MEMBERSHIP` `PACKET_MR_PROMISC`, which the kernel undoes
//!   when the socket closes), so frames for the containers' MACs come in.
//!
//! On the eBPF fast path the receiving sockets are bound to the uplink's
//! steering interface instead (`ports::uplink`, not promiscuous: the tc
//! program clones the frames there), and the switch sends through
//! [`open_tx`], a socket bound to the uplink for no protocol: the kernel
//! shows it no frame, so the uplink's taps have no socket of the switch.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::packet::{self, BpfInsn, ETH_P_ALL};
use super::pktport;
pub use super::pktport::{take_drops, PortSocket as UplinkSocket};
use super::ring::{self, RxGeometry};

/// Which frames of the interface a socket takes, by VLAN tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VlanMatch {
    /// Frames without a tag.
    Untagged,
    /// Frames tagged with this VLAN id (1 to 4094).
    Tag(u16),
}

// Classic BPF opcodes (include/uapi/linux/filter.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_AND_K: u16 = 0x54;
const BPF_RET_K: u16 = 0x06;
/// Ancillary data offsets: `SKF_AD_OFF` (-0x1000) plus the field.
const SKF_AD_OFF: u32 = 0u32.wrapping_sub(0x1000);
const SKF_AD_PKTTYPE: u32 = 4;
const SKF_AD_VLAN_TAG: u32 = 44;
const SKF_AD_VLAN_TAG_PRESENT: u32 = 48;
const AD_TAG_PRESENT: u32 = SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT;
const AD_TAG: u32 = SKF_AD_OFF + SKF_AD_VLAN_TAG;
/// `PACKET_HOST`: addressed to the interface's own MAC.
const PACKET_HOST: u32 = 0;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> BpfInsn {
    BpfInsn { code, jt, jf, k }
}

/// The filter program for `m`: keep (the whole frame) or drop.
pub fn vlan_filter(m: VlanMatch) -> Vec<BpfInsn> {
    const KEEP: u32 = u32::MAX;
    let mut p = vec![
        // Frames for the host itself are not the containers'.
        insn(BPF_LD_W_ABS, 0, 0, SKF_AD_OFF + SKF_AD_PKTTYPE),
        // Offsets count from the next instruction; the drop is the last.
    ];
    match m {
        VlanMatch::Untagged => {
            // 1: jeq HOST -> drop (+6), else 2
            p.push(insn(BPF_JEQ_K, 6, 0, PACKET_HOST));
            p.push(insn(BPF_LD_W_ABS, 0, 0, AD_TAG_PRESENT));
            // 3: no tag -> keep (+3)
            p.push(insn(BPF_JEQ_K, 3, 0, 0));
            // A priority tag (VLAN id 0, 802.1p) is untagged too.
            p.push(insn(BPF_LD_W_ABS, 0, 0, AD_TAG));
            p.push(insn(BPF_AND_K, 0, 0, 0x0fff));
            // 6: VLAN 0 -> keep (+0), else drop (+1)
            p.push(insn(BPF_JEQ_K, 0, 1, 0));
            p.push(insn(BPF_RET_K, 0, 0, KEEP));
        }
        VlanMatch::Tag(vid) => {
            // 1: jeq HOST -> drop (+6)
            p.push(insn(BPF_JEQ_K, 6, 0, PACKET_HOST));
            p.push(insn(
                BPF_LD_W_ABS,
                0,
                0,
                SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT,
            ));
            // 3: no tag -> drop (+4)
            p.push(insn(BPF_JEQ_K, 4, 0, 0));
            p.push(insn(BPF_LD_W_ABS, 0, 0, SKF_AD_OFF + SKF_AD_VLAN_TAG));
            p.push(insn(BPF_AND_K, 0, 0, 0x0fff));
            // 6: our VLAN -> keep (+0), else drop (+1)
            p.push(insn(BPF_JEQ_K, 0, 1, u32::from(vid)));
            p.push(insn(BPF_RET_K, 0, 0, KEEP));
        }
    }
    p.push(insn(BPF_RET_K, 0, 0, 0));
    p
}

/// Opens the uplink sockets of interface `ifindex` (in the calling
/// thread's network namespace) for the frames `m` selects, non-blocking,
/// the interface promiscuous if `promisc`: `n` of them (one per worker) in
/// a fanout group by flow hash. Needs `CAP_NET_RAW`.
pub fn open_group(
    ifindex: u32,
    m: VlanMatch,
    n: usize,
    promisc: bool,
) -> io::Result<Vec<UplinkSocket>> {
    pktport::open_group(ifindex, &vlan_filter(m), promisc, n)
}

/// A socket that sends on interface `ifindex` and receives nothing: bound
/// for protocol 0, which the kernel registers no tap for. Non-blocking,
/// with the 12-byte `virtio_net_hdr` if `vnet`; it holds the interface in
/// promiscuous mode for as long as it lives if `promisc`.
pub fn open_tx(ifindex: u32, vnet: bool, promisc: bool) -> io::Result<OwnedFd> {
    let fd = packet::packet_socket()?;
    let b = fd.as_fd();
    if vnet {
        packet::set_int(
            b,
            libc::SOL_PACKET,
            PACKET_VNET_HDR_SZ,
            pktport::VNET_HDR_SZ as libc::c_int,
        )?;
    }
    packet::bind(b, ifindex, 0)?;
    super::fd::set_nonblocking(b, true)?;
    if promisc {
        pktport::set_promisc(b, ifindex)?;
    }
    Ok(fd)
}

/// One socket of an uplink read through a receive ring
/// ([`open_ring_group`]).
#[derive(Debug)]
pub struct RingSocket {
    pub fd: OwnedFd,
    /// The receive ring on it, for [`ring::map_rx`].
    pub ring: RxGeometry,
    /// `read` and `write` carry the 12-byte `virtio_net_hdr` (and the ring
    /// the 10-byte one).
    pub vnet_hdr: bool,
}

/// `PACKET_VNET_HDR_SZ` (Linux 6.2+), not in `libc`.
const PACKET_VNET_HDR_SZ: libc::c_int = 24;
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;

/// [`open_group`] with a `TPACKET_V2` receive ring of `slots` slots of
/// `slot_size` bytes on each socket ([`ring::set_rx_ring`]): frames that
/// fit a slot are read without a system call, longer ones (GRO'd
/// super-frames) through the socket's receive queue, `SO_RCVBUF` bytes at
/// most. Writes go through the socket as with [`open_group`]. Needs
/// `CAP_NET_RAW` and Linux 6.2+ (`PACKET_VNET_HDR_SZ`: the engine's
/// writes carry a 12-byte header). The interface is promiscuous if
/// `promisc`.
pub fn open_ring_group(
    ifindex: u32,
    m: VlanMatch,
    n: usize,
    slot_size: u32,
    slots: u32,
    rcvbuf: libc::c_int,
    promisc: bool,
) -> io::Result<Vec<RingSocket>> {
    let filter = vlan_filter(m);
    let mut all: Vec<RingSocket> = Vec::with_capacity(n.max(1));
    let mut join = None;
    for _ in 0..n.max(1) {
        let fd = packet::packet_socket()?;
        let b = fd.as_fd();
        packet::set_int(
            b,
            libc::SOL_PACKET,
            PACKET_VNET_HDR_SZ,
            pktport::VNET_HDR_SZ as libc::c_int,
        )?;
        packet::set_ignore_outgoing(b)?;
        // Nothing comes in until the socket is in the group with its
        // real filter: no frame is read twice.
        packet::attach_filter(b, &[pktport::drop_all()])?;
        if packet::set_int(b, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf).is_err() {
            packet::set_int(b, libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf)?;
        }
        let ring = ring::set_rx_ring(b, slot_size, slots, true)?;
        packet::bind(b, ifindex, ETH_P_ALL)?;
        if n > 1 {
            let arg = match join {
                None => (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID) << 16,
                Some(id) => (PACKET_FANOUT_HASH << 16) | id,
            };
            packet::set_int(b, libc::SOL_PACKET, PACKET_FANOUT_ARG, arg as libc::c_int)?;
            if join.is_none() {
                join =
                    Some(pktport::get_int(b, libc::SOL_PACKET, PACKET_FANOUT_ARG)? as u32 & 0xffff);
            }
        }
        packet::attach_filter(b, &filter)?;
        if all.is_empty() && promisc {
            pktport::set_promisc(b, ifindex)?;
        }
        all.push(RingSocket {
            fd,
            ring,
            vnet_hdr: true,
        });
    }
    Ok(all)
}

/// `PACKET_FANOUT`.
const PACKET_FANOUT_ARG: libc::c_int = 18;

/// Sets the receive buffer of an uplink socket (`SO_RCVBUFFORCE`, else as
/// much of it as `net.core.rmem_max` allows).
pub fn set_rcvbuf(fd: BorrowedFd<'_>, bytes: libc::c_int) -> io::Result<()> {
    if packet::set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes).is_err() {
        packet::set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a filter program on (pkttype, tag) as the kernel would, for
    /// the few opcodes it uses.
    fn run(p: &[BpfInsn], pkttype: u32, tag: Option<u16>) -> bool {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => {
                    a = match i.k.wrapping_sub(SKF_AD_OFF) {
                        SKF_AD_PKTTYPE => pkttype,
                        SKF_AD_VLAN_TAG_PRESENT => u32::from(tag.is_some()),
                        SKF_AD_VLAN_TAG => u32::from(tag.unwrap_or(0)),
                        k => panic!("load of {k}"),
                    }
                }
                BPF_AND_K => a &= i.k,
                BPF_JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                BPF_RET_K => return i.k != 0,
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn filters_take_their_vlan_and_never_the_hosts_frames() {
        const OTHERHOST: u32 = 3;
        const BROADCAST: u32 = 1;
        let untagged = vlan_filter(VlanMatch::Untagged);
        assert!(run(&untagged, OTHERHOST, None));
        assert!(run(&untagged, BROADCAST, None));
        assert!(!run(&untagged, OTHERHOST, Some(10)));
        // A priority tag is no VLAN.
        assert!(run(&untagged, OTHERHOST, Some(0xa000)));
        assert!(!run(&untagged, PACKET_HOST, None));
        let ten = vlan_filter(VlanMatch::Tag(10));
        assert!(run(&ten, OTHERHOST, Some(10)));
        // The priority bits are not the VLAN id.
        assert!(run(&ten, BROADCAST, Some(0xe000 | 10)));
        assert!(!run(&ten, OTHERHOST, Some(20)));
        assert!(!run(&ten, OTHERHOST, None));
        assert!(!run(&ten, PACKET_HOST, Some(10)));
    }
}
