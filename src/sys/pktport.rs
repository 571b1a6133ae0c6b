//! Packet-socket ports: one `AF_PACKET`/`SOCK_RAW` socket bound to an
//! interface in the daemon's namespace that carries one Ethernet frame per
//! `read` and `write` behind the 12-byte `virtio_net_hdr` the TAP ports
//! use, so the engine drives it as it drives a TAP with offloads. Uplinks
//! (`sys::uplink`, a host NIC) and the host ends of veth ports
//! (`ports::veth`) are opened here.
//!
//! What a socket is set up with, in this order (a socket with protocol 0
//! receives nothing until it is bound, so no frame slips past the filter):
//!
//! - `PACKET_VNET_HDR_SZ` 12 (Linux 6.2+). On a plain socket (no ring) the
//!   kernel writes the whole 12-byte header on receive (`packet_rcv_vnet`,
//!   `num_buffers` 0) and reads 12 on send. A GRO'd (or, from a veth, a
//!   not yet segmented) super-frame comes whole with its GSO type, size and
//!   partial checksum; a super-frame written to it is segmented on the way
//!   out only if the device cannot take it (a veth takes it whole). A
//!   kernel without the option gets a socket without a header (`vnet_hdr`
//!   false): the engine then completes checksums and cuts super-frames
//!   itself.
//! - `PACKET_IGNORE_OUTGOING`: neither our own sends nor the host's are
//!   read back.
//! - The caller's classic BPF filter.
//! - A receive buffer of [`RCVBUF`] bytes (`SO_RCVBUFFORCE`, else as much
//!   of it as `net.core.rmem_max` allows).
//! - Bound to the interface for every protocol, then, if asked,
//!   promiscuous (`PACKET_ADD_MEMBERSHIP` `PACKET_MR_PROMISC`, which the
//!   kernel undoes when the socket closes).
//!
//! [`open_group`] opens one socket per dataplane worker, joined in a
//! `PACKET_FANOUT` group of type `PACKET_FANOUT_HASH`: the kernel hands
//! each frame to one socket by its flow hash, so a flow stays on one
//! socket (one worker) and keeps its order, and the workers share the
//! interface's load instead of worker 0 reading it alone. The group's id
//! is the kernel's choice (`PACKET_FANOUT_FLAG_UNIQUEID`, Linux 4.19+),
//! so two groups never collide. A socket joins only once bound (the
//! kernel refuses an unbound one), so the further sockets are bound with
//! a filter that drops everything and get their real filter once they
//! are in the group: no frame is read twice.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::fd::cvt;
use super::packet::{self, set_int, BpfInsn, ETH_P_ALL};

/// `PACKET_VNET_HDR_SZ` (include/uapi/linux/if_packet.h), not in `libc`.
const PACKET_VNET_HDR_SZ: libc::c_int = 24;
/// The header length the engine's offload ports use.
pub const VNET_HDR_SZ: usize = 12;
/// The receive buffer asked for: bursts of super-frames fit.
pub const RCVBUF: libc::c_int = 8 << 20;
/// `PACKET_FANOUT` and its values (include/uapi/linux/if_packet.h).
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;

/// Puts the interface the socket is bound to into promiscuous mode for as
/// long as the socket lives.
pub(super) fn set_promisc(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
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

/// A port's socket and what it carries.
#[derive(Debug)]
pub struct PortSocket {
    pub fd: OwnedFd,
    /// Every read and write starts with a 12-byte `virtio_net_hdr`.
    pub vnet_hdr: bool,
}

/// Opens a port socket on interface `ifindex` (in the calling thread's
/// network namespace) that keeps the frames `filter` keeps, non-blocking,
/// the interface promiscuous if `promisc`, with the `virtio_net_hdr` if
/// `vnet` (and the kernel has it). Needs `CAP_NET_RAW`.
fn open_as(ifindex: u32, filter: &[BpfInsn], promisc: bool, vnet: bool) -> io::Result<PortSocket> {
    let s = open_filtered(ifindex, filter, vnet)?;
    if promisc {
        set_promisc(s.fd.as_fd(), ifindex)?;
    }
    Ok(s)
}

/// [`open_as`] of `n` sockets (at least one) joined in a fanout group by
/// flow hash; the interface is promiscuous (if asked) through the first.
/// Where the kernel refuses the group, just the first.
pub fn open_group(
    ifindex: u32,
    filter: &[BpfInsn],
    promisc: bool,
    n: usize,
) -> io::Result<Vec<PortSocket>> {
    open_group_as(ifindex, filter, promisc, n, true)
}

/// [`open_group`], the sockets with the `virtio_net_hdr` only if `vnet`.
pub fn open_group_as(
    ifindex: u32,
    filter: &[BpfInsn],
    promisc: bool,
    n: usize,
    vnet: bool,
) -> io::Result<Vec<PortSocket>> {
    let first = open_as(ifindex, filter, promisc, vnet)?;
    if n <= 1 {
        return Ok(vec![first]);
    }
    let unique = (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID) << 16;
    let fanout = set_int(
        first.fd.as_fd(),
        libc::SOL_PACKET,
        PACKET_FANOUT,
        unique as libc::c_int,
    );
    if fanout.is_err() {
        // A kernel without fanout or its unique ids: one socket, which
        // worker 0 reads and every worker writes through a duplicate.
        return Ok(vec![first]);
    }
    let id = get_int(first.fd.as_fd(), libc::SOL_PACKET, PACKET_FANOUT)? as u32 & 0xffff;
    let join = (PACKET_FANOUT_HASH << 16) | id;
    let mut all = Vec::with_capacity(n);
    all.push(first);
    for _ in 1..n {
        let s = open_filtered(ifindex, &[drop_all()], vnet)?;
        set_int(
            s.fd.as_fd(),
            libc::SOL_PACKET,
            PACKET_FANOUT,
            join as libc::c_int,
        )?;
        packet::attach_filter(s.fd.as_fd(), filter)?;
        all.push(s);
    }
    Ok(all)
}

/// A filter that keeps nothing: a socket opened with it queues no frame
/// until its real filter replaces it (`SO_ATTACH_FILTER` and
/// `SO_ATTACH_BPF` swap a socket's filter in one step).
pub fn drop_all() -> BpfInsn {
    BpfInsn {
        code: 0x06, // BPF_RET | BPF_K
        jt: 0,
        jf: 0,
        k: 0,
    }
}

pub(super) fn get_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: `value` is a live, writable c_int and `len` its size; the
    // kernel writes at most `len` bytes and updates `len`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// A socket set up and bound as the module's text says, not promiscuous.
fn open_filtered(ifindex: u32, filter: &[BpfInsn], vnet: bool) -> io::Result<PortSocket> {
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
    let vnet_hdr = vnet
        && set_int(
            b,
            libc::SOL_PACKET,
            PACKET_VNET_HDR_SZ,
            VNET_HDR_SZ as libc::c_int,
        )
        .is_ok();
    packet::set_ignore_outgoing(b)?;
    packet::attach_filter(b, filter)?;
    if set_int(b, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF).is_err() {
        set_int(b, libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF)?;
    }
    packet::bind(b, ifindex, ETH_P_ALL)?;
    Ok(PortSocket { fd, vnet_hdr })
}

/// Replaces the filter of an open port socket with `filter`, in one step:
/// each frame meets either the old filter or the new one.
pub fn set_filter(fd: BorrowedFd<'_>, filter: &[BpfInsn]) -> io::Result<()> {
    packet::attach_filter(fd, filter)
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

/// The filter of a port whose interface is the switch's alone (a veth's
/// host end): every frame but those addressed to the interface's own MAC
/// (`PACKET_HOST`), which are the host's, not a container's.
pub fn not_for_host() -> Vec<BpfInsn> {
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JEQ_K: u16 = 0x15;
    const BPF_RET_K: u16 = 0x06;
    const SKF_AD_PKTTYPE: u32 = 0u32.wrapping_sub(0x1000) + 4;
    const PACKET_HOST: u32 = 0;
    let i = |code, jt, jf, k| BpfInsn { code, jt, jf, k };
    vec![
        i(BPF_LD_W_ABS, 0, 0, SKF_AD_PKTTYPE),
        i(BPF_JEQ_K, 1, 0, PACKET_HOST),
        i(BPF_RET_K, 0, 0, u32::MAX),
        i(BPF_RET_K, 0, 0, 0),
    ]
}

/// Asks the kernel to hand each frame's VLAN tag along (`PACKET_AUXDATA`).
/// A packet socket never sees an 802.1Q tag in the frame: the receive
/// path moves it into the packet's metadata before the socket's tap, so a
/// port that must carry a container's tags (a veth's host end) reads them
/// with [`recv_tagged`] and puts them back.
pub fn keep_vlan_tags(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int(fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, 1)
}

/// Whether `fd` is a packet socket set up by [`keep_vlan_tags`] (false for
/// anything else, a TAP's fd included).
pub fn keeps_vlan_tags(fd: BorrowedFd<'_>) -> bool {
    get_int(fd, libc::SOL_PACKET, libc::PACKET_AUXDATA).is_ok_and(|v| v != 0)
}

/// One frame into `buf` and, when the kernel took a VLAN tag off it, the
/// tag as it stood in the frame (TPID and TCI, big-endian): one
/// `recvmsg`, as a `read` would be.
pub fn recv_tagged(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<[u8; 4]>)> {
    // Room for one cmsghdr and a tpacket_auxdata (20 bytes), aligned.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (which points at `buf`, writable for
    // its length) and at `control`, writable for `msg_controllen`; all
    // live for the call.
    let n = cvt(unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) } as libc::c_int)?;
    let mut tag = None;
    // SAFETY: `msg` was filled by recvmsg: its control pointer and length
    // describe the part of `control` the kernel wrote, which the CMSG
    // macros walk without leaving it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_PACKET
                && (*c).cmsg_type == libc::PACKET_AUXDATA
                && (*c).cmsg_len as usize
                    >= libc::CMSG_LEN(std::mem::size_of::<libc::tpacket_auxdata>() as u32) as usize
            {
                let aux: libc::tpacket_auxdata =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                    let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        0x8100
                    };
                    let [a, b] = tpid.to_be_bytes();
                    let [c2, d] = aux.tp_vlan_tci.to_be_bytes();
                    tag = Some([a, b, c2, d]);
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, tag))
}
