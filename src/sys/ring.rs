//! `AF_PACKET` mmap rings of `TPACKET_V2` frames, receive and transmit, on
//! one packet socket bound to one interface: the raw part of a port type
//! that moves many frames per system call (see `ports::ring` for the safe
//! API built on it).
//!
//! - [`open`] makes the socket, sets `TPACKET_V2` (one frame per fixed-size
//!   slot, handed over slot by slot, so a lone frame wakes the reader at
//!   once; `TPACKET_V3` hands over whole blocks and a partly filled block
//!   only after its retire timeout), optionally a 10-byte `virtio_net_hdr`
//!   in front of every frame (`PACKET_VNET_HDR`; see `set_vnet` for why
//!   not 12), `PACKET_LOSS`, `PACKET_IGNORE_OUTGOING`,
//!   optionally `PACKET_QDISC_BYPASS`, creates both rings, maps them with
//!   one `mmap` and binds the socket to the interface for every protocol.
//! - [`RxRing::next`] walks the receive ring: a slot whose status word says
//!   `TP_STATUS_USER` holds a frame; [`RxRing::release`] gives every slot
//!   handed out since the last release back to the kernel.
//! - [`TxRing::slot`] gives the next free transmit slot to fill,
//!   [`TxSlot::commit`] marks it `TP_STATUS_SEND_REQUEST`, and
//!   [`TxRing::flush`] makes the kernel send every committed slot with one
//!   non-blocking `send`.
//!
//! The status word of each slot is shared with the kernel and only ever
//! accessed through an `AtomicU32`: an Acquire load before reading a slot
//! the kernel filled (it publishes the status after the data with a write
//! barrier), a Release store after writing a slot we hand to it. Every
//! other field is read at a byte offset from the slot, never through a
//! struct cast, and every offset or length the kernel wrote is checked
//! against the slot before use: a confused kernel (or a bug here) yields a
//! frame reported as malformed, never a read outside the mapping.
//!
//! Both rings share one mapping, owned by an `Arc` that the [`RxRing`] and
//! the [`TxRing`] of a socket each hold, so either may live on another
//! thread and the mapping goes when the last of them does.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::fd::cvt;
use super::packet::{self, ETH_P_ALL};

/// Byte offsets in a `struct tpacket2_hdr`.
mod hdr {
    pub const STATUS: usize = 0;
    pub const LEN: usize = 4;
    pub const SNAPLEN: usize = 8;
    pub const MAC: usize = 12;
    pub const VLAN_TCI: usize = 24;
    pub const VLAN_TPID: usize = 26;
    /// `TPACKET_ALIGN(sizeof(struct tpacket2_hdr))`: where a transmit
    /// slot's data starts (`tp_hdrlen - sizeof(struct sockaddr_ll)`), and
    /// the least offset a received frame's data can have.
    pub const DATA: usize = 32;
    /// `TPACKET2_HDRLEN`: the header and the `sockaddr_ll` after it.
    pub const HDRLEN: usize = 52;
}

/// `TPACKET_ALIGNMENT`: slot sizes are multiples of it.
pub const ALIGNMENT: u32 = 16;
/// `sizeof(struct virtio_net_hdr)`: the header in front of each frame with
/// [`RingOptions::vnet_hdr`] (a TAP port's 12-byte header is this one and
/// a 2-byte `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;

const PAGE: u32 = 4096;

/// What [`open`] sets up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingOptions {
    /// Bytes per slot, header included: a multiple of [`ALIGNMENT`].
    pub frame_size: u32,
    /// Slots of the receive ring (0: no receive ring).
    pub rx_frames: u32,
    /// Slots of the transmit ring (0: no transmit ring).
    pub tx_frames: u32,
    /// A `virtio_net_hdr` in front of every frame, both ways, so GSO
    /// super-frames and partial checksums pass.
    pub vnet_hdr: bool,
    /// `PACKET_QDISC_BYPASS`: transmit straight to the driver.
    pub qdisc_bypass: bool,
    /// `PACKET_FANOUT` group to join (hash mode), for several sockets
    /// sharing one interface's receive traffic by flow.
    pub fanout: Option<u16>,
}

/// Block size, block count and slot count for `frames` slots of
/// `frame_size` bytes: blocks of a power of two pages (the kernel allocates
/// each block as one power-of-two run of pages, so nothing is wasted) big
/// enough for 16 slots, at most 1 MiB, or one page-rounded slot when a
/// slot is larger; the slot count rounded up to whole blocks.
fn geometry(frame_size: u32, frames: u32) -> io::Result<(u32, u32, u32)> {
    const BLOCK: u32 = 1 << 20;
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
    if frame_size < hdr::HDRLEN as u32 + 16 || frame_size % ALIGNMENT != 0 {
        return Err(invalid(
            "ring slot size must be a multiple of 16 and at least 68 bytes",
        ));
    }
    let (block_size, per_block) = if frame_size <= BLOCK {
        let block = (frame_size.div_ceil(PAGE) * PAGE * 16)
            .next_power_of_two()
            .min(BLOCK);
        (block, block / frame_size)
    } else {
        (frame_size.div_ceil(PAGE) * PAGE, 1)
    };
    // Whole blocks only: round the slot count up.
    let blocks = frames.div_ceil(per_block);
    let slots = blocks
        .checked_mul(per_block)
        .ok_or_else(|| invalid("ring too large"))?;
    Ok((block_size, blocks, slots))
}

fn set_int(fd: BorrowedFd<'_>, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed is its size, as
    // setsockopt requires for int-valued options; the fd is borrowed and open.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            name,
            std::ptr::from_ref(&value).cast(),
            socklen::<libc::c_int>(),
        )
    })
    .map(drop)
}

fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// Where one ring lies in the mapping.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Offset of the ring's first block in the mapping.
    start: usize,
    block_size: usize,
    per_block: usize,
    frame_size: usize,
    frames: usize,
}

impl Layout {
    fn bytes(&self) -> usize {
        self.block_size * self.frames.div_ceil(self.per_block)
    }

    /// Offset of slot `i` in the mapping.
    fn slot(&self, i: usize) -> usize {
        self.start + (i / self.per_block) * self.block_size + (i % self.per_block) * self.frame_size
    }
}

/// The socket and its mapping, shared by the two rings.
struct Shared {
    fd: OwnedFd,
    map: NonNull<u8>,
    map_len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; which
// slots each ring touches is governed by the kernel's status protocol, and
// the receive and transmit rings are disjoint ranges of it.
unsafe impl Send for Shared {}
// SAFETY: `Shared` itself only hands out its fd and base pointer; all
// access to the memory goes through the rings, which are not `Sync`.
unsafe impl Sync for Shared {}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping `open` created; both rings that
        // pointed into it hold this `Arc`, so none is left.
        unsafe {
            libc::munmap(self.map.as_ptr().cast(), self.map_len);
        }
    }
}

impl Shared {
    /// The status word at mapping offset `off` (a slot's start).
    fn status(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off + 4 <= self.map_len && off % 16 == 0);
        // SAFETY: `off` is the start of a slot inside the mapping (the
        // callers compute it from a `Layout` that `open` checked against
        // the mapping's length), 16-byte aligned (blocks are page-aligned,
        // slots multiples of 16), and the mapping lives as long as `self`.
        // The kernel writes the word concurrently, which is why it is only
        // ever accessed atomically.
        unsafe { &*self.map.as_ptr().add(off + hdr::STATUS).cast::<AtomicU32>() }
    }
}

/// Asks for a `virtio_net_hdr` in front of every frame: the 10-byte one of
/// `PACKET_VNET_HDR`. Not the 12-byte one of `PACKET_VNET_HDR_SZ` (Linux
/// 6.2+), which the kernel accepts with rings but, as of 6.18, honours only
/// half-way: `tpacket_rcv` reserves 12 bytes in front of a received frame
/// yet writes the 10-byte header right before the frame, leaving 2 bytes it
/// never writes where a 12-byte header would start, while `tpacket_snd`
/// does take 12. The 10-byte header means the same both ways.
fn set_vnet(fd: BorrowedFd<'_>) -> io::Result<usize> {
    set_int(fd, libc::PACKET_VNET_HDR, 1)?;
    Ok(VNET_HDR_LEN)
}

/// Opens a packet socket with the rings of `opts` on interface `ifindex`
/// (of the calling thread's network namespace) and binds it for every
/// protocol. Needs `CAP_NET_RAW`.
pub fn open(ifindex: u32, opts: &RingOptions) -> io::Result<(RxRing, TxRing)> {
    let fd = packet::packet_socket()?;
    let bfd = fd.as_fd();
    set_int(
        bfd,
        libc::PACKET_VERSION,
        libc::tpacket_versions::TPACKET_V2 as libc::c_int,
    )?;
    let vnet_len = if opts.vnet_hdr { set_vnet(bfd)? } else { 0 };
    // A frame the kernel cannot send (a malformed virtio_net_hdr) is
    // dropped and its slot freed, instead of stopping the ring for good.
    set_int(bfd, libc::PACKET_LOSS, 1)?;
    // Neither our own transmissions nor the host's on this interface are
    // frames to forward.
    packet::set_ignore_outgoing(bfd)?;
    if opts.qdisc_bypass {
        packet::set_qdisc_bypass(bfd)?;
    }
    let mut start = 0usize;
    let mut layouts = [None, None];
    for (k, (name, frames)) in [
        (libc::PACKET_RX_RING, opts.rx_frames),
        (libc::PACKET_TX_RING, opts.tx_frames),
    ]
    .into_iter()
    .enumerate()
    {
        if frames == 0 {
            continue;
        }
        let (block_size, block_nr, frame_nr) = geometry(opts.frame_size, frames)?;
        let req = libc::tpacket_req {
            tp_block_size: block_size,
            tp_block_nr: block_nr,
            tp_frame_size: opts.frame_size,
            tp_frame_nr: frame_nr,
        };
        // SAFETY: `req` is a live tpacket_req and the length passed is its
        // size; the kernel copies it.
        cvt(unsafe {
            libc::setsockopt(
                bfd.as_raw_fd(),
                libc::SOL_PACKET,
                name,
                std::ptr::from_ref(&req).cast(),
                socklen::<libc::tpacket_req>(),
            )
        })?;
        let l = Layout {
            start,
            block_size: block_size as usize,
            per_block: (block_size / opts.frame_size) as usize,
            frame_size: opts.frame_size as usize,
            frames: frame_nr as usize,
        };
        start = start
            .checked_add(l.bytes())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "rings too large"))?;
        layouts[k] = Some(l);
    }
    let map_len = start;
    if map_len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a packet ring socket needs a receive or a transmit ring",
        ));
    }
    // The receive ring first, then the transmit ring, as the kernel lays
    // them out.
    let map = packet::map_ring(bfd, map_len)?;
    let shared = Arc::new(Shared { fd, map, map_len });
    packet::bind(shared.fd.as_fd(), ifindex, ETH_P_ALL)?;
    if let Some(group) = opts.fanout {
        let arg = libc::c_int::from(group) | ((libc::PACKET_FANOUT_HASH as libc::c_int) << 16);
        set_int(shared.fd.as_fd(), libc::PACKET_FANOUT, arg)?;
    }
    let empty = Layout {
        start: 0,
        block_size: 0,
        per_block: 1,
        frame_size: 0,
        frames: 0,
    };
    let rx = RxRing {
        shared: Arc::clone(&shared),
        l: layouts[0].unwrap_or(empty),
        vnet_len,
        head: Cell::new(0),
        taken: Cell::new(0),
    };
    let tx = TxRing {
        shared,
        l: layouts[1].unwrap_or(empty),
        vnet_len,
        head: 0,
        committed: 0,
    };
    Ok((rx, tx))
}

/// A receive ring set on a socket by [`set_rx_ring`]: what [`map_rx`]
/// needs to map it (in another thread, e.g. the worker that reads it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxGeometry {
    pub frame_size: u32,
    pub block_size: u32,
    pub blocks: u32,
    pub frames: u32,
    /// Bytes of `virtio_net_hdr` the kernel writes in front of each frame
    /// (0 or [`VNET_HDR_LEN`]).
    pub vnet_len: u8,
}

impl RxGeometry {
    /// The ring's memory: what the kernel allocates for it.
    pub fn bytes(&self) -> usize {
        self.block_size as usize * self.blocks as usize
    }
}

/// Puts a `TPACKET_V2` receive ring of (at least) `frames` slots of
/// `frame_size` bytes on packet socket `fd`, with `PACKET_COPY_THRESH`: a
/// frame longer than a slot is queued whole on the socket's ordinary
/// receive queue (within its `SO_RCVBUF`) and its slot says
/// `TP_STATUS_COPY`, so small slots serve small frames and a super-frame
/// is read with one `read`. Call it before `bind` (nothing reaches the
/// socket's queue but those copies) and after any `PACKET_VNET_HDR*`
/// option: with one, the kernel writes the 10-byte header right in front
/// of each frame in the ring (`vnet_len` 10), whatever the socket's
/// header length for `read` and `write`.
pub fn set_rx_ring(
    fd: BorrowedFd<'_>,
    frame_size: u32,
    frames: u32,
    vnet: bool,
) -> io::Result<RxGeometry> {
    set_int(
        fd,
        libc::PACKET_VERSION,
        libc::tpacket_versions::TPACKET_V2 as libc::c_int,
    )?;
    set_int(fd, libc::PACKET_COPY_THRESH, 1)?;
    let (block_size, blocks, frames) = geometry(frame_size, frames.max(1))?;
    let req = libc::tpacket_req {
        tp_block_size: block_size,
        tp_block_nr: blocks,
        tp_frame_size: frame_size,
        tp_frame_nr: frames,
    };
    // SAFETY: `req` is a live tpacket_req and the length passed is its
    // size; the kernel copies it.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_RX_RING,
            std::ptr::from_ref(&req).cast(),
            socklen::<libc::tpacket_req>(),
        )
    })?;
    Ok(RxGeometry {
        frame_size,
        block_size,
        blocks,
        frames,
        vnet_len: if vnet { VNET_HDR_LEN as u8 } else { 0 },
    })
}

/// Maps the receive ring `g` that [`set_rx_ring`] put on socket `fd` (a
/// duplicate of it: the mapping and this fd go with the returned ring).
pub fn map_rx(fd: OwnedFd, g: RxGeometry) -> io::Result<RxRing> {
    let l = Layout {
        start: 0,
        block_size: g.block_size as usize,
        per_block: (g.block_size / g.frame_size.max(1)) as usize,
        frame_size: g.frame_size as usize,
        frames: g.frames as usize,
    };
    if l.frames == 0 || l.per_block == 0 || l.bytes() != g.bytes() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "receive ring geometry does not add up",
        ));
    }
    let map_len = g.bytes();
    let map = packet::map_ring(fd.as_fd(), map_len)?;
    Ok(RxRing {
        shared: Arc::new(Shared { fd, map, map_len }),
        l,
        vnet_len: usize::from(g.vnet_len),
        head: Cell::new(0),
        taken: Cell::new(0),
    })
}

/// The receive ring of a socket made by [`open`].
pub struct RxRing {
    shared: Arc<Shared>,
    l: Layout,
    vnet_len: usize,
    /// The next slot [`next`](Self::next) looks at.
    head: Cell<usize>,
    /// Slots handed out since the last [`release`](Self::release), ending
    /// just before `head`.
    taken: Cell<usize>,
}

/// One received frame, as the kernel described it, checked against its slot.
#[derive(Clone, Copy, Debug)]
pub struct RawRxFrame<'a> {
    /// The captured bytes from the Ethernet header on.
    pub data: &'a [u8],
    /// The `virtio_net_hdr` in front of the frame (empty without one).
    pub vnet: &'a [u8],
    /// `vnet` and `data` as one slice (they are adjacent in the slot): what
    /// a packet socket with the same header length sends as this frame.
    pub wire: &'a [u8],
    /// The frame's length as the kernel received it (`tp_len`); more than
    /// `data.len()` when it did not fit in the slot.
    pub wire_len: u32,
    /// The `TP_STATUS_*` bits of the slot.
    pub status: u32,
    /// The VLAN tag the device took off the frame (`tp_vlan_tci`), valid
    /// when `status` has `TP_STATUS_VLAN_VALID`.
    pub vlan_tci: u16,
    /// Its TPID (`tp_vlan_tpid`), valid with `TP_STATUS_VLAN_TPID_VALID`.
    pub vlan_tpid: u16,
    /// The kernel's offsets did not fit the slot: `data` is empty.
    pub malformed: bool,
}

fn ne_u32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn ne_u16(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .map_or(0, |s| u16::from_ne_bytes([s[0], s[1]]))
}

/// Reads a filled slot: `slot` is the slot's bytes from just after its
/// status word (offset 4) to its end. Pure, so any content can be tested.
pub fn parse_rx_slot(slot: &[u8], status: u32, vnet_len: usize) -> RawRxFrame<'_> {
    // Offsets below are from the start of the slot; `slot` starts at 4.
    let at32 = |off: usize| ne_u32(slot, off - 4);
    let at16 = |off: usize| ne_u16(slot, off - 4);
    let wire_len = at32(hdr::LEN);
    let snaplen = at32(hdr::SNAPLEN) as usize;
    let mac = usize::from(at16(hdr::MAC));
    let mut f = RawRxFrame {
        data: &[],
        vnet: &[],
        wire: &[],
        wire_len,
        status,
        vlan_tci: at16(hdr::VLAN_TCI),
        vlan_tpid: at16(hdr::VLAN_TPID),
        malformed: true,
    };
    // The data must lie after the header (and the vnet header before it),
    // and inside the slot.
    let Some(vnet_start) = mac.checked_sub(vnet_len) else {
        return f;
    };
    if vnet_start < hdr::DATA {
        return f;
    }
    let Some(end) = mac.checked_add(snaplen) else {
        return f;
    };
    if end > slot.len() + 4 || snaplen as u64 > u64::from(wire_len) {
        return f;
    }
    f.vnet = &slot[vnet_start - 4..mac - 4];
    f.data = &slot[mac - 4..end - 4];
    f.wire = &slot[vnet_start - 4..end - 4];
    f.malformed = false;
    f
}

impl RxRing {
    /// The socket (for `poll`/epoll: readable when a frame waits).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.shared.fd.as_fd()
    }

    /// Slots in the ring.
    pub fn frames(&self) -> usize {
        self.l.frames
    }

    /// Bytes of `virtio_net_hdr` in front of each frame (0 or 10).
    pub fn vnet_len(&self) -> usize {
        self.vnet_len
    }

    /// The next received frame, if the kernel has filled the next slot and
    /// not every slot is handed out already. The frame stays valid until
    /// [`release`](Self::release), which the borrow enforces.
    pub fn next(&self) -> Option<RawRxFrame<'_>> {
        if self.l.frames == 0 || self.taken.get() == self.l.frames {
            return None;
        }
        let i = self.head.get();
        let off = self.l.slot(i);
        let status = self.shared.status(off).load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: slot `i` lies inside the mapping (`Layout::slot` of an
        // index below `frames`, which `open` sized the mapping for), and
        // the slice covers it from just after its status word to its end,
        // never overlapping the atomic. The status says the kernel handed
        // the slot to user space (the Acquire load orders our reads after
        // its writes) and it does not write the slot again until `release`
        // stores TP_STATUS_KERNEL, which takes `&mut self` and so cannot
        // happen while this borrow lives. `taken` < `frames` means this
        // slot is not handed out already.
        let slot = unsafe {
            std::slice::from_raw_parts(
                self.shared.map.as_ptr().add(off + 4).cast_const(),
                self.l.frame_size - 4,
            )
        };
        self.head.set((i + 1) % self.l.frames);
        self.taken.set(self.taken.get() + 1);
        Some(parse_rx_slot(slot, status, self.vnet_len))
    }

    /// Hands the next received frame to `f` and gives its slot back to
    /// the kernel as soon as `f` returns (the frame cannot outlive `f`).
    /// `None` when no frame waits, or when frames taken with
    /// [`next`](Self::next) are not released yet; while `f` runs, the
    /// ring hands out nothing else.
    pub fn with_next<R>(&self, f: impl FnOnce(RawRxFrame<'_>) -> R) -> Option<R> {
        let frames = self.l.frames;
        if frames == 0 || self.taken.get() != 0 {
            return None;
        }
        let i = self.head.get();
        let off = self.l.slot(i);
        let status = self.shared.status(off).load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: as in `next`: slot `i` lies inside the mapping, the slice
        // skips its status word, and the kernel handed it to user space
        // (Acquire above) and does not write it before the Release store
        // below, which happens after `f` returned; the frame's borrow
        // cannot escape `f` (its lifetime is `f`'s own), and with `taken`
        // at `frames` neither `next` nor `with_next` hands out another
        // frame meanwhile.
        let slot = unsafe {
            std::slice::from_raw_parts(
                self.shared.map.as_ptr().add(off + 4).cast_const(),
                self.l.frame_size - 4,
            )
        };
        self.taken.set(frames);
        let r = f(parse_rx_slot(slot, status, self.vnet_len));
        self.taken.set(0);
        self.head.set((i + 1) % frames);
        self.shared
            .status(off)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        Some(r)
    }

    /// Whether the kernel has filled the next slot (without taking it).
    pub fn ready(&self) -> bool {
        self.l.frames != 0
            && self.taken.get() < self.l.frames
            && self
                .shared
                .status(self.l.slot(self.head.get()))
                .load(Ordering::Acquire)
                & libc::TP_STATUS_USER
                != 0
    }

    /// Gives every slot handed out by [`next`](Self::next) since the last
    /// call back to the kernel.
    pub fn release(&mut self) {
        let n = self.taken.replace(0);
        let head = self.head.get();
        for k in 0..n {
            let i = (head + self.l.frames - n + k) % self.l.frames;
            // Release: our reads of the slot happen before the kernel
            // reuses it.
            self.shared
                .status(self.l.slot(i))
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        }
    }

    /// Waits up to `timeout` for the socket to become readable. Returns
    /// false on timeout or a signal.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.shared.fd.as_raw_fd(),
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

    /// `PACKET_STATISTICS` since the last call: (frames the socket was
    /// offered, of those dropped because the ring was full). Reading resets
    /// them.
    pub fn take_stats(&self) -> io::Result<(u32, u32)> {
        let mut st = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = socklen::<libc::tpacket_stats>();
        // SAFETY: `st` is a live, writable tpacket_stats and `len` its size;
        // the kernel writes at most `len` bytes and updates `len`.
        cvt(unsafe {
            libc::getsockopt(
                self.shared.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                std::ptr::from_mut(&mut st).cast(),
                &mut len,
            )
        })?;
        Ok((st.tp_packets, st.tp_drops))
    }
}

/// The transmit ring of a socket made by [`open`].
pub struct TxRing {
    shared: Arc<Shared>,
    l: Layout,
    vnet_len: usize,
    /// The next slot to fill.
    head: usize,
    /// Slots committed since the last flush.
    committed: usize,
}

/// The outcome of [`TxRing::flush`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Nothing was committed: no system call made.
    Idle,
    /// The kernel took every committed slot.
    Sent,
    /// The device refused a frame (a full queue, `ENOBUFS`/`EAGAIN`): the
    /// kernel keeps it and the ones after it committed, and the next flush
    /// tries them again.
    Busy,
}

impl TxRing {
    /// Slots in the ring.
    pub fn frames(&self) -> usize {
        self.l.frames
    }

    /// Bytes a slot holds: the `virtio_net_hdr` (if any) and the frame.
    pub fn capacity(&self) -> usize {
        self.l.frame_size.saturating_sub(hdr::DATA)
    }

    /// Bytes of `virtio_net_hdr` in front of each frame (0 or 10).
    pub fn vnet_len(&self) -> usize {
        self.vnet_len
    }

    /// The next slot, if the kernel is done with it (it is free until
    /// committed). `None` when the ring is full: every slot is waiting to
    /// be sent or still referenced by a frame in flight.
    pub fn slot(&mut self) -> Option<TxSlot<'_>> {
        if self.l.frames == 0 {
            return None;
        }
        let off = self.l.slot(self.head);
        let busy =
            libc::TP_STATUS_SEND_REQUEST | libc::TP_STATUS_SENDING | libc::TP_STATUS_WRONG_FORMAT;
        if self.shared.status(off).load(Ordering::Acquire) & busy != 0 {
            return None;
        }
        // SAFETY: the slot lies inside the mapping (an index below `frames`
        // of the layout `open` sized it for); the slice starts at the data
        // offset, after the header, and ends at the slot's end. The status
        // is AVAILABLE (the Acquire load orders our writes after the
        // kernel's last use of the slot), so the kernel does not touch the
        // slot until `commit` stores SEND_REQUEST; `&mut self` makes this
        // the only slot handed out.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(
                self.shared.map.as_ptr().add(off + hdr::DATA),
                self.l.frame_size - hdr::DATA,
            )
        };
        Some(TxSlot { ring: self, buf })
    }

    /// Sends every committed slot: one non-blocking `send` with no data,
    /// which makes the kernel walk the ring. Without committed slots it
    /// makes no system call, unless `retry` (an earlier flush was
    /// [`Flush::Busy`]).
    pub fn flush(&mut self, retry: bool) -> io::Result<Flush> {
        if self.committed == 0 && !retry {
            return Ok(Flush::Idle);
        }
        self.committed = 0;
        // SAFETY: send(2) with a null buffer of length 0 on a borrowed,
        // open socket: the kernel reads nothing from our memory but the
        // ring slots we committed.
        let ret = unsafe {
            libc::send(
                self.shared.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
            )
        };
        if ret >= 0 {
            return Ok(Flush::Sent);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR) => Ok(Flush::Busy),
            _ => Err(e),
        }
    }
}

/// A free transmit slot: its bytes, to hold the `virtio_net_hdr` (if any)
/// followed by the frame.
pub struct TxSlot<'a> {
    ring: &'a mut TxRing,
    buf: &'a mut [u8],
}

impl TxSlot<'_> {
    /// The slot's bytes ([`TxRing::capacity`] of them).
    pub fn buf(&mut self) -> &mut [u8] {
        self.buf
    }

    /// Hands the first `len` bytes of the slot to the kernel to send at the
    /// next [`TxRing::flush`]. `len` is cut to the slot's capacity.
    pub fn commit(self, len: usize) {
        let len = u32::try_from(len.min(self.buf.len())).unwrap_or(0);
        let off = self.ring.l.slot(self.ring.head);
        let base = self.ring.shared.map.as_ptr();
        // SAFETY: `tp_len` is 4 bytes at offset 4 of the slot, inside the
        // mapping and 4-aligned; the slot is still ours (AVAILABLE, handed
        // out through `&mut TxRing`), so the kernel does not read it yet.
        unsafe {
            base.add(off + hdr::LEN).cast::<u32>().write_volatile(len);
        }
        // Release: the frame and its length are visible to the kernel
        // before it sees the slot as ready to send.
        self.ring
            .shared
            .status(off)
            .store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.ring.head = (self.ring.head + 1) % self.ring.l.frames;
        self.ring.committed += 1;
    }
}

/// Scratch for sending up to `cap` frames with one `sendmmsg` on a packet
/// socket bound to its interface (one made by [`open`] without a transmit
/// ring: with one, `sendmsg` sends the ring instead). Each frame is copied
/// once, into the socket buffer the kernel allocates for it; the message
/// headers are allocated here once and only re-pointed per call.
pub struct SendBatch {
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside are scratch, re-pointed at borrowed
// frames for the duration of one `send` call and never dereferenced here.
unsafe impl Send for SendBatch {}

impl SendBatch {
    pub fn new(cap: usize) -> SendBatch {
        let cap = cap.clamp(1, 1024);
        SendBatch {
            iov: (0..cap)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            hdrs: (0..cap)
                .map(|_| {
                    // SAFETY: mmsghdr is a plain C struct of integers and raw
                    // pointers; all-zero bytes are a valid value of it.
                    unsafe { std::mem::zeroed::<libc::mmsghdr>() }
                })
                .collect(),
        }
    }

    /// Sends `frames` (each: the socket's `virtio_net_hdr`, if any, then the
    /// frame; at most the `cap` given to `new`, the rest are ignored) on `fd` with one non-blocking `sendmmsg`. Returns how many
    /// the kernel took, always from the first on; 0 when it refused the
    /// first (`ENOBUFS`/`EAGAIN`: the device's queue is full).
    pub fn send(&mut self, fd: BorrowedFd<'_>, frames: &[&[u8]]) -> io::Result<usize> {
        let n = frames.len().min(self.iov.len());
        if n == 0 {
            return Ok(0);
        }
        let iov = self.iov.as_mut_ptr();
        for (k, f) in frames[..n].iter().enumerate() {
            self.iov[k] = libc::iovec {
                iov_base: f.as_ptr().cast_mut().cast(),
                iov_len: f.len(),
            };
            let h = &mut self.hdrs[k];
            h.msg_len = 0;
            h.msg_hdr.msg_name = std::ptr::null_mut();
            h.msg_hdr.msg_namelen = 0;
            h.msg_hdr.msg_iov = iov.wrapping_add(k);
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
        }
        let vlen = libc::c_uint::try_from(n).unwrap_or(libc::c_uint::MAX);
        // SAFETY: the first `n` headers each point at one iovec of
        // `self.iov`, which points at a frame borrowed for this whole call
        // (the kernel only reads it); `self` is mutably borrowed for the
        // call, and the kernel writes only each header's `msg_len`.
        let ret = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT,
            )
        };
        if ret >= 0 {
            return Ok(usize::try_from(ret).unwrap_or(0));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR) => Ok(0),
            _ => Err(e),
        }
    }
}

impl TxRing {
    /// The socket (to send on with a [`SendBatch`] when the ring has no
    /// transmit slots).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.shared.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_fills_whole_blocks() {
        assert_eq!(geometry(2048, 256).unwrap(), (65536, 8, 256));
        assert_eq!(geometry(2048, 1).unwrap(), (65536, 1, 32));
        // A super-frame slot: 15 per 1 MiB block.
        assert_eq!(geometry(69904, 60).unwrap(), (1 << 20, 4, 60));
        assert!(geometry(100, 4).is_err());
        assert!(geometry(32, 4).is_err());
    }

    fn slot(len: u32, snaplen: u32, mac: u16, size: usize) -> Vec<u8> {
        let mut s = vec![0u8; size - 4];
        s[hdr::LEN - 4..hdr::LEN].copy_from_slice(&len.to_ne_bytes());
        s[hdr::SNAPLEN - 4..hdr::SNAPLEN].copy_from_slice(&snaplen.to_ne_bytes());
        s[hdr::MAC - 4..hdr::MAC - 2].copy_from_slice(&mac.to_ne_bytes());
        s
    }

    #[test]
    fn a_slot_within_bounds_parses() {
        let mut s = slot(60, 60, 80, 2048);
        s[80 - 4] = 0xaa;
        s[80 - 4 - 12] = 0x01;
        let f = parse_rx_slot(&s, libc::TP_STATUS_USER, 12);
        assert!(!f.malformed);
        assert_eq!(f.data.len(), 60);
        assert_eq!(f.data[0], 0xaa);
        assert_eq!(f.vnet, &s[64..76]);
        assert_eq!(f.vnet[0], 0x01);
    }

    #[test]
    fn any_offsets_the_kernel_reports_are_bounds_checked() {
        // Every combination of extreme values: never a panic, and either a
        // frame inside the slot or a malformed one.
        let vals32 = [0u32, 1, 60, 2000, 2016, 2044, 2048, 65535, u32::MAX];
        let vals16 = [0u16, 1, 31, 32, 44, 80, 2000, 2047, 2048, u16::MAX];
        for size in [68usize, 2048] {
            for &len in &vals32 {
                for &snap in &vals32 {
                    for &mac in &vals16 {
                        for vnet in [0, 10, 12] {
                            let s = slot(len, snap, mac, size);
                            let f = parse_rx_slot(&s, libc::TP_STATUS_USER, vnet);
                            if f.malformed {
                                assert!(f.data.is_empty());
                            } else {
                                assert!(usize::from(mac) + snap as usize <= size);
                                assert!(usize::from(mac) >= hdr::DATA + vnet);
                                assert_eq!(f.data.len(), snap as usize);
                                assert_eq!(f.vnet.len(), vnet);
                                assert_eq!(f.wire.len(), vnet + snap as usize);
                            }
                        }
                    }
                }
            }
        }
        // A slot shorter than the header reads as zeros: malformed.
        let f = parse_rx_slot(&[1, 2, 3], libc::TP_STATUS_USER, 0);
        assert!(f.malformed);
    }
}
