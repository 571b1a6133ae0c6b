//! The packet socket of an uplink port: one `AF_PACKET`/`SOCK_RAW` socket
//! bound to a host interface, that carries one Ethernet frame per `read`
//! and `write` behind the 12-byte `virtio_net_hdr` the TAP ports use, so
//! the engine drives it as it drives a TAP with offloads.
//!
//! What it is set up with, in this order (a socket with protocol 0
//! receives nothing until it is bound, so no frame slips past the filter):
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
//! - A receive buffer of [`RCVBUF`] bytes (`SO_RCVBUFFORCE`, else as much
//!   of it as `net.core.rmem_max` allows).
//! - Bound to the interface for every protocol, then promiscuous
//!   (`PACKET_ADD_MEMBERSHIP` `PACKET_MR_PROMISC`, which the kernel undoes
//!   when the socket closes), so frames for the containers' MACs come in.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::fd::cvt;
use super::packet::{self, BpfInsn, ETH_P_ALL};

/// `PACKET_VNET_HDR_SZ` (include/uapi/linux/if_packet.h), not in `libc`.
const PACKET_VNET_HDR_SZ: libc::c_int = 24;
/// The header length the engine's offload ports use.
pub const VNET_HDR_SZ: usize = 12;
/// The receive buffer asked for: bursts of super-frames fit.
pub const RCVBUF: libc::c_int = 8 << 20;

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

fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed is its size, as
    // setsockopt requires for int-valued options; the fd is borrowed and open.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4),
        )
    })
    .map(drop)
}

/// Puts the interface the socket is bound to into promiscuous mode for as
/// long as the socket lives.
fn set_promisc(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    let mr = libc::packet_mreq {
        mr_ifindex: libc::c_int::try_from(ifindex).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range")
        })?,
        mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    // SAFETY: `mr` is a live packet_mreq and the length passed is its size;
    // the kernel copies it.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            std::ptr::from_ref(&mr).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::packet_mreq>()).unwrap_or(16),
        )
    })
    .map(drop)
}

/// An uplink's socket and what it carries.
#[derive(Debug)]
pub struct UplinkSocket {
    pub fd: OwnedFd,
    /// Every read and write starts with a 12-byte `virtio_net_hdr`.
    pub vnet_hdr: bool,
}

/// Opens the uplink socket of interface `ifindex` (in the calling thread's
/// network namespace) for the frames `m` selects, non-blocking. Needs
/// `CAP_NET_RAW`.
pub fn open(ifindex: u32, m: VlanMatch) -> io::Result<UplinkSocket> {
    // SAFETY: socket(2) with constant arguments; no pointers involved.
    let raw = cvt(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    })?;
    // SAFETY: socket succeeded, so `raw` is open and owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let b = fd.as_fd();
    let vnet_hdr = set_int(
        b,
        libc::SOL_PACKET,
        PACKET_VNET_HDR_SZ,
        VNET_HDR_SZ as libc::c_int,
    )
    .is_ok();
    packet::set_ignore_outgoing(b)?;
    packet::attach_filter(b, &vlan_filter(m))?;
    if set_int(b, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF).is_err() {
        set_int(b, libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF)?;
    }
    packet::bind(b, ifindex, ETH_P_ALL)?;
    set_promisc(b, ifindex)?;
    Ok(UplinkSocket { fd, vnet_hdr })
}

/// The frames the kernel dropped because the socket's receive queue was
/// full, since the last call (`PACKET_STATISTICS`, which resets on read).
pub fn take_drops(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut st = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len =
        libc::socklen_t::try_from(std::mem::size_of::<libc::tpacket_stats>()).unwrap_or(8);
    // SAFETY: `st` is a live, writable tpacket_stats and `len` its size;
    // the kernel writes at most `len` bytes and updates `len`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            std::ptr::from_mut(&mut st).cast(),
            &mut len,
        )
    })?;
    Ok(st.tp_drops)
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
