//! UDP socket options that `std` and `socket2` do not expose.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::fd::cvt;

/// Sets the "don't fragment" policy (`IP_PMTUDISC_DO` / `IPV6_PMTUDISC_DO`):
/// the kernel never fragments what this socket sends and refuses a datagram
/// larger than the path MTU with `EMSGSIZE`. VXLAN must not be fragmented
/// (RFC 7348, section 4.3).
pub fn set_dont_fragment(fd: BorrowedFd<'_>, ipv6: bool) -> io::Result<()> {
    let (level, name, value) = if ipv6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: `value` is a live c_int and `len` is its size, as setsockopt
    // requires for these int-valued options; the fd is borrowed and open.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            len,
        )
    })?;
    Ok(())
}
