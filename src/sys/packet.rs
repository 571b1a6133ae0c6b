//! `AF_PACKET` sockets: raw Ethernet frames in and out of one interface,
//! for `vxswitch pktgen`.
//!
//! - [`packet_socket`] opens a `SOCK_RAW` packet socket with protocol 0:
//!   it receives nothing until it is bound with a protocol, so a socket
//!   that only transmits never fills a receive queue, and a receive filter
//!   can be attached before the first frame arrives.
//! - [`TxBatch`] owns a fixed set of frame slots and sends a run of them
//!   with one `sendmmsg` (one system call per batch, no allocation per
//!   frame). Every message carries the same `sockaddr_ll` (interface and
//!   EtherType), so the socket needs no bind.
//! - [`RxRing`] is a `PACKET_RX_RING` of `TPACKET_V3` blocks: the kernel
//!   fills whole blocks of frames in shared memory and hands each block
//!   over with one status word, so receiving costs no system call per
//!   frame (or per batch) while frames keep coming.
//!
//! The ring's fields are read at byte offsets from the block, never through
//! struct casts, and every offset the kernel wrote is bounds-checked against
//! the block before use: a confused kernel (or a bug here) yields a short or
//! empty frame, never a read outside the mapping.

use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::fd::cvt;

/// `ETH_P_ALL`: every protocol (for binding a receiving socket).
pub const ETH_P_ALL: u16 = 0x0003;
/// `ETH_P_IP`: IPv4.
pub const ETH_P_IP: u16 = 0x0800;

fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// A new `AF_PACKET`/`SOCK_RAW` socket, close-on-exec, protocol 0 (it
/// receives nothing yet). Needs `CAP_NET_RAW` in the socket's network
/// namespace, which is the namespace of the calling thread.
pub fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; no pointers involved.
    let fd = cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: socket succeeded, so `fd` is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr_ll(ifindex: u32, protocol: u16) -> io::Result<libc::sockaddr_ll> {
    let ifindex = libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range"))?;
    Ok(libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::c_ushort,
        sll_protocol: protocol.to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    })
}

/// Binds `fd` to interface `ifindex` for EtherType `protocol` (host byte
/// order; [`ETH_P_ALL`] for everything, 0 for nothing).
pub fn bind(fd: BorrowedFd<'_>, ifindex: u32, protocol: u16) -> io::Result<()> {
    let addr = sockaddr_ll(ifindex, protocol)?;
    // SAFETY: `addr` is a live sockaddr_ll and the length passed is its size.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&addr).cast(),
            socklen::<libc::sockaddr_ll>(),
        )
    })
    .map(drop)
}

/// `setsockopt` of an int-valued option.
pub fn set_int(
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
            socklen::<libc::c_int>(),
        )
    })
    .map(drop)
}

/// `PACKET_QDISC_BYPASS`: frames go straight to the driver's transmit
/// function, skipping the queueing discipline (as the kernel's pktgen does).
/// A full driver queue then shows up as `ENOBUFS` instead of a qdisc drop.
pub fn set_qdisc_bypass(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int(fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)
}

/// `PACKET_IGNORE_OUTGOING`: do not see frames this host sends on the
/// interface, only those it receives.
pub fn set_ignore_outgoing(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)
}

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// `SO_ATTACH_FILTER`: the kernel runs `prog` on every frame and keeps the
/// frame only when it returns non-zero (truncated to that many bytes).
pub fn attach_filter(fd: BorrowedFd<'_>, prog: &[BpfInsn]) -> io::Result<()> {
    let mut insns: Vec<libc::sock_filter> = prog
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let len = u16::try_from(insns.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "BPF program too long"))?;
    let fprog = libc::sock_fprog {
        len,
        filter: insns.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `len` live instructions in `insns`, which
    // outlives the call; the kernel copies the program and keeps no pointer.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            std::ptr::from_ref(&fprog).cast(),
            socklen::<libc::sock_fprog>(),
        )
    })
    .map(drop)
}

/// Frame slots sent with `sendmmsg` to one interface.
///
/// The slots live in one buffer allocated by [`TxBatch::new`]; the message
/// headers and I/O vectors are allocated there too and only re-pointed on
/// each [`send`](TxBatch::send), so sending allocates nothing.
pub struct TxBatch {
    buf: Vec<u8>,
    frame_len: usize,
    slots: usize,
    addr: libc::sockaddr_ll,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl TxBatch {
    /// `slots` frames of `frame_len` bytes each (zeroed), to be sent on
    /// interface `ifindex` as EtherType `protocol`.
    pub fn new(slots: usize, frame_len: usize, ifindex: u32, protocol: u16) -> io::Result<TxBatch> {
        if slots == 0 || frame_len == 0 || u32::try_from(slots).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a transmit batch needs at least one slot of at least one byte",
            ));
        }
        let addr = sockaddr_ll(ifindex, protocol)?;
        let total = slots.checked_mul(frame_len).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "transmit batch too large")
        })?;
        let iov = (0..slots)
            .map(|_| libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            })
            .collect();
        let hdrs = (0..slots)
            .map(|_| {
                // SAFETY: mmsghdr is a plain C struct of integers and raw
                // pointers; all-zero bytes (null pointers, zero lengths) are
                // a valid value of it.
                unsafe { std::mem::zeroed::<libc::mmsghdr>() }
            })
            .collect();
        Ok(TxBatch {
            buf: vec![0; total],
            frame_len,
            slots,
            addr,
            iov,
            hdrs,
        })
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The bytes of slot `i`.
    ///
    /// # Panics
    /// When `i >= self.slots()`.
    pub fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        assert!(i < self.slots, "slot {i} of {}", self.slots);
        let start = i * self.frame_len;
        &mut self.buf[start..start + self.frame_len]
    }

    /// Sends the frames in slots `range` with one `sendmmsg` on `fd` and
    /// returns how many the kernel took, always from the start of `range`
    /// (fewer than asked when it stopped early; the rest are unsent).
    /// An empty range sends nothing and returns 0.
    ///
    /// # Panics
    /// When `range` reaches past the last slot.
    pub fn send(&mut self, fd: BorrowedFd<'_>, range: Range<usize>) -> io::Result<usize> {
        assert!(
            range.start <= range.end && range.end <= self.slots,
            "slots {range:?} of {}",
            self.slots
        );
        let n = range.len();
        if n == 0 {
            return Ok(0);
        }
        let base = self.buf.as_mut_ptr();
        let iov = self.iov.as_mut_ptr();
        let name = std::ptr::from_mut(&mut self.addr).cast::<libc::c_void>();
        for (k, slot) in range.enumerate() {
            self.iov[k] = libc::iovec {
                iov_base: base.wrapping_add(slot * self.frame_len).cast(),
                iov_len: self.frame_len,
            };
            let h = &mut self.hdrs[k];
            h.msg_len = 0;
            h.msg_hdr.msg_name = name;
            h.msg_hdr.msg_namelen = socklen::<libc::sockaddr_ll>();
            h.msg_hdr.msg_iov = iov.wrapping_add(k);
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
        }
        // `n <= slots`, which `new` checked fits in u32.
        let vlen = libc::c_uint::try_from(n).unwrap_or(libc::c_uint::MAX);
        // SAFETY: the first `n` headers each point at one live iovec of
        // `self.iov`, which points at `frame_len` bytes inside `self.buf`
        // (slot < slots, checked above), and at `self.addr` with its exact
        // size. All of them are owned by `self`, which is mutably borrowed
        // for the whole call; the kernel reads them and writes only
        // `msg_len` of each header.
        let sent = cvt(unsafe { libc::sendmmsg(fd.as_raw_fd(), self.hdrs.as_mut_ptr(), vlen, 0) })?;
        Ok(usize::try_from(sent).unwrap_or(0))
    }
}

/// Byte offsets in a `TPACKET_V3` block descriptor
/// (`struct tpacket_block_desc` with `struct tpacket_hdr_v1`).
mod block {
    pub const STATUS: usize = 8;
    /// Where the part of the block that user space reads starts: after the
    /// status word, which is only ever accessed atomically.
    pub const BODY: usize = 12;
    pub const NUM_PKTS: usize = 12;
    pub const OFFSET_TO_FIRST_PKT: usize = 16;
}

/// Byte offsets in a `struct tpacket3_hdr`.
mod pkt {
    pub const NEXT_OFFSET: usize = 0;
    pub const SEC: usize = 4;
    pub const NSEC: usize = 8;
    pub const SNAPLEN: usize = 12;
    pub const LEN: usize = 16;
    pub const MAC: usize = 24;
    /// Up to and including `tp_net`.
    pub const MIN_LEN: usize = 28;
}

fn ne_u32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn ne_u16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_ne_bytes([s[0], s[1]]))
}

/// Size and timing of an [`RxRing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSpec {
    /// Bytes per block: a multiple of the page size.
    pub block_size: u32,
    pub block_nr: u32,
    /// A partly filled block is handed to user space after this many
    /// milliseconds without filling up.
    pub retire_ms: u32,
}

/// A `PACKET_RX_RING` (`TPACKET_V3`) on a packet socket, mapped into this
/// process. Unmapped on drop; the socket closes with it.
pub struct RxRing {
    fd: OwnedFd,
    map: NonNull<u8>,
    map_len: usize,
    block_size: usize,
    block_nr: usize,
    next: usize,
}

impl RxRing {
    /// Sets `fd` to `TPACKET_V3`, creates the ring and maps it. Call it
    /// before binding the socket with a protocol, so no frame can arrive
    /// outside the ring.
    pub fn new(fd: OwnedFd, spec: RingSpec) -> io::Result<RxRing> {
        const FRAME_SIZE: u32 = 2048;
        if spec.block_size == 0 || spec.block_nr == 0 || spec.block_size % FRAME_SIZE != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring block size must be a non-zero multiple of 2048 and the block count non-zero",
            ));
        }
        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        set_int(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_VERSION, version)?;
        let req = libc::tpacket_req3 {
            tp_block_size: spec.block_size,
            tp_block_nr: spec.block_nr,
            tp_frame_size: FRAME_SIZE,
            tp_frame_nr: (spec.block_size / FRAME_SIZE).saturating_mul(spec.block_nr),
            tp_retire_blk_tov: spec.retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        // SAFETY: `req` is a live tpacket_req3 and the length passed is its
        // size; the kernel copies it.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_RX_RING,
                std::ptr::from_ref(&req).cast(),
                socklen::<libc::tpacket_req3>(),
            )
        })?;
        let block_size = usize::try_from(spec.block_size).unwrap_or(usize::MAX);
        let block_nr = usize::try_from(spec.block_nr).unwrap_or(usize::MAX);
        let map_len = block_size
            .checked_mul(block_nr)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "ring too large"))?;
        let map = map_ring(fd.as_fd(), map_len)?;
        Ok(RxRing {
            fd,
            map,
            map_len,
            block_size,
            block_nr,
            next: 0,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Waits up to `timeout` for the socket to become readable (a block
    /// was handed over). Returns false on timeout or a signal.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `pfd` is one valid, writable pollfd for the whole call.
        let ret = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ret < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        Ok(ret > 0)
    }

    /// The status word of block `i`, shared with the kernel.
    fn status(&self, i: usize) -> &AtomicU32 {
        debug_assert!(i < self.block_nr);
        let p = self
            .map
            .as_ptr()
            .wrapping_add(i * self.block_size + block::STATUS);
        // SAFETY: `p` is inside the mapping (block `i` < block_nr, and a block
        // is at least 2048 bytes), 4-byte aligned (blocks are page-aligned,
        // STATUS is 8), and lives as long as `self`. The kernel writes the
        // word concurrently, which is why it is only accessed atomically.
        unsafe { &*p.cast::<AtomicU32>() }
    }

    /// The next block, when the kernel has handed it to user space.
    /// Dropping the [`RxBlock`] gives it back. Blocks come in ring order.
    pub fn next_block(&mut self) -> Option<RxBlock<'_>> {
        let i = self.next;
        let status = self.status(i);
        if status.load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
            return None;
        }
        let p = self
            .map
            .as_ptr()
            .wrapping_add(i * self.block_size + block::BODY);
        // SAFETY: block `i` is `block_size` bytes inside the mapping, and the
        // slice covers it from just after its status word to its end (so it
        // never overlaps the atomic). The status says the kernel handed the
        // block to user space (the Acquire load above orders our reads after
        // the kernel's writes), and the kernel does not write to it again
        // until `RxBlock::drop` gives it back. The borrow of `self` keeps
        // the mapping alive and lets only one block out at a time.
        let data =
            unsafe { std::slice::from_raw_parts(p.cast_const(), self.block_size - block::BODY) };
        self.next = (i + 1) % self.block_nr;
        Some(RxBlock {
            data,
            status: self.status(i),
        })
    }

    /// `PACKET_STATISTICS` since the last call: (frames that passed the
    /// filter, of those dropped because the ring was full).
    pub fn take_stats(&self) -> io::Result<(u32, u32)> {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = socklen::<libc::tpacket_stats_v3>();
        // SAFETY: `st` is a live, writable tpacket_stats_v3 and `len` its size;
        // the kernel writes at most `len` bytes and updates `len`.
        cvt(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                std::ptr::from_mut(&mut st).cast(),
                &mut len,
            )
        })?;
        Ok((st.tp_packets, st.tp_drops))
    }
}

/// Maps the `len` bytes of the packet ring(s) the kernel made on socket
/// `fd` (`PACKET_RX_RING`/`PACKET_TX_RING`): shared with the kernel,
/// populated up front. The caller unmaps it (`munmap`) when done.
pub fn map_ring(fd: BorrowedFd<'_>, len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: mmap of a file descriptor at an address of the kernel's
    // choosing: a fresh mapping that aliases nothing in this process; the
    // length is the caller's ring size, which the kernel checks against
    // the rings it made (EINVAL otherwise).
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping `new` created; no `RxBlock` borrows it
        // any more (they borrow `self`).
        unsafe {
            libc::munmap(self.map.as_ptr().cast(), self.map_len);
        }
    }
}

/// A block of received frames, owned by user space until dropped.
pub struct RxBlock<'a> {
    /// The block from offset `block::BODY` on.
    data: &'a [u8],
    status: &'a AtomicU32,
}

impl<'a> RxBlock<'a> {
    /// The frames in the block, in arrival order.
    pub fn frames(&self) -> RxFrames<'a> {
        // Offsets in the descriptor are from the start of the block.
        let at = |off: usize| ne_u32(self.data, off - block::BODY);
        let num = at(block::NUM_PKTS).unwrap_or(0);
        let first = at(block::OFFSET_TO_FIRST_PKT)
            .and_then(|o| usize::try_from(o).ok()?.checked_sub(block::BODY));
        RxFrames {
            block: self.data,
            left: if first.is_some() { num } else { 0 },
            off: first.unwrap_or(0),
        }
    }
}

impl Drop for RxBlock<'_> {
    fn drop(&mut self) {
        // Release: our reads of the block happen before the kernel reuses it.
        self.status.store(libc::TP_STATUS_KERNEL, Ordering::Release);
    }
}

/// One received frame.
#[derive(Clone, Copy, Debug)]
pub struct RxFrame<'a> {
    /// The captured bytes from the Ethernet header on (at most the snap
    /// length the filter returned).
    pub data: &'a [u8],
    /// The frame's full length on the wire, without FCS.
    pub wire_len: u32,
    /// The kernel's receive timestamp (`CLOCK_REALTIME`), in nanoseconds.
    pub ts_ns: u64,
}

/// Iterator over the frames of an [`RxBlock`].
pub struct RxFrames<'a> {
    /// The block from offset `block::BODY` on; `off` is relative to it too
    /// (`tp_next_offset` is relative to the current frame, so it needs no
    /// adjustment).
    block: &'a [u8],
    left: u32,
    off: usize,
}

impl<'a> Iterator for RxFrames<'a> {
    type Item = RxFrame<'a>;

    fn next(&mut self) -> Option<RxFrame<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let hdr = self.block.get(self.off..)?;
        if hdr.len() < pkt::MIN_LEN {
            self.left = 0;
            return None;
        }
        let next = ne_u32(hdr, pkt::NEXT_OFFSET)?;
        let sec = ne_u32(hdr, pkt::SEC)?;
        let nsec = ne_u32(hdr, pkt::NSEC)?;
        let snaplen = usize::try_from(ne_u32(hdr, pkt::SNAPLEN)?).unwrap_or(0);
        let wire_len = ne_u32(hdr, pkt::LEN)?;
        let mac = usize::from(ne_u16(hdr, pkt::MAC)?);
        let data = hdr
            .get(mac..)
            .map(|d| &d[..snaplen.min(d.len())])
            .unwrap_or(&[]);
        if next == 0 {
            self.left = 0;
        } else {
            self.off = self
                .off
                .saturating_add(usize::try_from(next).unwrap_or(usize::MAX));
        }
        Some(RxFrame {
            data,
            wire_len,
            ts_ns: u64::from(sec) * 1_000_000_000 + u64::from(nsec),
        })
    }
}
