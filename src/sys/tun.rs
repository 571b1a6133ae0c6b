//! The TUN/TAP character device (`/dev/net/tun`) and its ioctls.
//!
//! Why not a crate: `tun-tap` has no `IFF_VNET_HDR` and no `IFF_MULTI_QUEUE`,
//! which the fast path needs; `tun` has no `TUNSETOFFLOAD` and no multiqueue;
//! `tun-rs` has both but its GSO helpers assume L3 and its `try_clone()`
//! after a netns move creates a wrong device (tried on this machine). The
//! ioctls are all in `libc` and fit in this file.
//!
//! Offloads: a TAP opened with [`TunFlags::VNET_HDR`] prefixes every frame,
//! both directions, with a `virtio_net_hdr`; [`set_vnet_hdr_len`] fixes its
//! size and [`set_offload`] says which GSO/checksum-partial frames the
//! kernel may hand us (and thereby which offloads the TAP's netdev
//! advertises to the container's stack).

use std::fs::OpenOptions;
use std::io;
use std::ops::BitOr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use super::fd::cvt;

/// `ifr_flags` of `TUNSETIFF`/`TUNGETIFF` (`<linux/if_tun.h>`), as a bit set.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct TunFlags(pub u16);

// Only tests use TUN (listed so that a TUN device can be recognised).
#[allow(dead_code)]
impl TunFlags {
    /// Layer-3 device (no Ethernet header). Listed so a TUN can be recognised.
    pub const TUN: TunFlags = TunFlags(0x0001);
    /// Layer-2 device: one Ethernet frame per read/write.
    pub const TAP: TunFlags = TunFlags(0x0002);
    /// No 4-byte packet-information prefix on each frame.
    pub const NO_PI: TunFlags = TunFlags(0x1000);
    /// Each frame is preceded by a `virtio_net_hdr` (offloads): every TAP
    /// vxswitch creates, unless offloads are off.
    pub const VNET_HDR: TunFlags = TunFlags(0x4000);
    /// One device, several fds (queues): every TAP vxswitch creates when
    /// it runs more than one dataplane worker, one queue per worker.
    pub const MULTI_QUEUE: TunFlags = TunFlags(0x0100);
    /// Fail with `EBUSY` instead of attaching when the name already exists:
    /// what "create" means.
    pub const TUN_EXCL: TunFlags = TunFlags(0x8000);
    /// Reported by `TUNGETIFF` when the device outlives its fds.
    pub const PERSIST: TunFlags = TunFlags(0x0800);

    pub const fn contains(self, other: TunFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for TunFlags {
    type Output = TunFlags;
    fn bitor(self, rhs: TunFlags) -> TunFlags {
        TunFlags(self.0 | rhs.0)
    }
}

/// Opens `/dev/net/tun` read-write, non-blocking and close-on-exec. The
/// result is not yet attached to any device.
///
/// The device created or attached by [`set_iff`] on this fd lives in the
/// network namespace of the *calling thread at open time*, so open it on a
/// thread that is already inside the target namespace.
pub fn open_tun() -> io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    Ok(OwnedFd::from(file))
}

/// An `ifreq` whose name is `name` and whose other bytes are zero.
fn ifreq_named(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name must be shorter than 16 bytes and contain no NUL",
        ));
    }
    // SAFETY: `ifreq` is a plain C struct/union of integers and byte arrays;
    // all-zero bytes are a valid value of it.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(ifr)
}

/// The NUL-terminated name in `ifr_name`.
fn ifreq_name(ifr: &libc::ifreq) -> String {
    let bytes: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `TUNSETIFF`: attaches `fd` to the device `name` (creating it unless it
/// exists; with [`TunFlags::TUN_EXCL`], failing with `EBUSY` if it exists).
/// Returns the name the kernel used, which differs from `name` when it
/// contains a `%d` template.
pub fn set_iff(fd: BorrowedFd<'_>, name: &str, flags: TunFlags) -> io::Result<String> {
    let mut ifr = ifreq_named(name)?;
    // Bit pattern of the u16 into the kernel's `short` field (0x8000 is negative).
    ifr.ifr_ifru.ifru_flags = flags.0 as libc::c_short;
    // SAFETY: `ifr` is a valid, writable ifreq that outlives the call; TUNSETIFF
    // reads and writes exactly one ifreq through the pointer.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETIFF,
            &mut ifr as *mut libc::ifreq,
        )
    })?;
    Ok(ifreq_name(&ifr))
}

/// `TUNGETIFF`: the name and flags of the device `fd` is attached to.
pub fn get_iff(fd: BorrowedFd<'_>) -> io::Result<(String, TunFlags)> {
    let mut ifr = ifreq_named("")?;
    // SAFETY: `ifr` is a valid, writable ifreq that outlives the call; TUNGETIFF
    // writes exactly one ifreq through the pointer.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNGETIFF,
            &mut ifr as *mut libc::ifreq,
        )
    })?;
    // SAFETY: TUNGETIFF filled the `ifru_flags` member of the union; every bit
    // pattern is a valid c_short.
    let raw = unsafe { ifr.ifr_ifru.ifru_flags };
    Ok((ifreq_name(&ifr), TunFlags(raw as u16)))
}

/// `TUNSETPERSIST`: whether the device outlives its last fd. A persistent
/// TAP stays (with its addresses and routes) when every queue is closed, and
/// can be attached again by name; clearing the flag lets the kernel delete
/// it when the last fd closes.
pub fn set_persist(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its argument by value (an int used as a
    // boolean); no memory is passed.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, libc::c_ulong::from(on)) })?;
    Ok(())
}

/// `TUN_F_*` bits of `TUNSETOFFLOAD`: what the reader of the fd accepts.
pub mod offload {
    /// Frames may carry a partial checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`).
    pub const CSUM: u32 = libc::TUN_F_CSUM;
    /// TCP over IPv4 super-frames.
    pub const TSO4: u32 = libc::TUN_F_TSO4;
    /// TCP over IPv6 super-frames.
    pub const TSO6: u32 = libc::TUN_F_TSO6;
    /// TSO frames with ECN (CWR on the first segment only).
    pub const TSO_ECN: u32 = libc::TUN_F_TSO_ECN;
    /// UDP segmentation (`UDP_SEGMENT` senders) over IPv4 and IPv6.
    pub const USO4: u32 = libc::TUN_F_USO4;
    pub const USO6: u32 = libc::TUN_F_USO6;
}

/// `TUNSETVNETHDRSZ`: the size of the `virtio_net_hdr` in front of every
/// frame on a [`TunFlags::VNET_HDR`] fd (10, or 12 with `num_buffers`).
pub fn set_vnet_hdr_len(fd: BorrowedFd<'_>, len: i32) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which is
    // valid for the duration of the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &len as *const i32) })?;
    Ok(())
}

/// `TUNSETOFFLOAD`: the [`offload`] bits the reader accepts. `EINVAL`
/// means a bit this kernel does not know (USO needs Linux 6.2).
pub fn set_offload(fd: BorrowedFd<'_>, bits: u32) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long);
    // no memory is passed.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(bits),
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_name_round_trips_and_rejects_long_names() {
        let ifr = ifreq_named("eth0").unwrap();
        assert_eq!(ifreq_name(&ifr), "eth0");
        let ifr = ifreq_named("fifteen-bytes-x").unwrap();
        assert_eq!(ifreq_name(&ifr), "fifteen-bytes-x");
        assert!(ifreq_named("sixteen-bytes-xx").is_err());
        assert!(ifreq_named("nul\0").is_err());
    }

    #[test]
    fn flags_match_the_kernel_header() {
        assert_eq!(i32::from(TunFlags::TAP.0), libc::IFF_TAP);
        assert_eq!(i32::from(TunFlags::TUN.0), libc::IFF_TUN);
        assert_eq!(i32::from(TunFlags::NO_PI.0), libc::IFF_NO_PI);
        assert_eq!(i32::from(TunFlags::VNET_HDR.0), libc::IFF_VNET_HDR);
        assert_eq!(i32::from(TunFlags::MULTI_QUEUE.0), libc::IFF_MULTI_QUEUE);
        assert_eq!(i32::from(TunFlags::TUN_EXCL.0), libc::IFF_TUN_EXCL);
        assert_eq!(i32::from(TunFlags::PERSIST.0), libc::IFF_PERSIST);
        let f = TunFlags::TAP | TunFlags::NO_PI;
        assert!(f.contains(TunFlags::TAP) && !f.contains(TunFlags::PERSIST));
    }
}
