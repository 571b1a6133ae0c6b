//! An interface's offload switches (`SIOCETHTOOL` with the one-value
//! commands `ethtool -K` also understands), for a veth port whose
//! container must send plain frames (`port add --no-offload`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::fd::cvt;

/// `include/uapi/linux/ethtool.h`: set TX checksumming, TSO, GSO.
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_SGSO: u32 = 0x24;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Turns TSO, GSO and TX checksum offload off on `ifname` in the calling
/// thread's network namespace: its stack then hands the interface
/// segments of at most its MTU with complete checksums, as a TAP without
/// offloads gets them. Needs `CAP_NET_ADMIN`.
pub fn offloads_off(ifname: &str) -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments; no pointers involved.
    let raw =
        cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: socket succeeded, so `raw` is open and owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    for cmd in [ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_STXCSUM] {
        set(&sock, ifname, cmd, 0)?;
    }
    Ok(())
}

fn set(sock: &OwnedFd, ifname: &str, cmd: u32, data: u32) -> io::Result<()> {
    let bytes = ifname.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name must be shorter than 16 bytes and contain no NUL",
        ));
    }
    let mut value = EthtoolValue { cmd, data };
    // SAFETY: `ifreq` is a plain C struct/union of integers, byte arrays
    // and pointers; all-zero bytes are a valid value of it.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = std::ptr::from_mut(&mut value).cast();
    // SAFETY: `ifr` is a live ifreq whose data pointer points at `value`, a
    // live ethtool_value, for the duration of the call; the kernel reads
    // (and may write) only that struct.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) }).map(drop)
}
