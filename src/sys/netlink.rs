//! `NETLINK_ROUTE` sockets: open, send to the kernel, receive.
//!
//! Message encoding and decoding are plain byte work and live in
//! `ports::netlink`; this module only makes the system calls. A netlink
//! socket stays bound to the network namespace of the thread that created
//! it, which is what lets the port layer configure a container's interface
//! after its helper thread has left (or ended).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::fd::cvt;

/// How long one `recv` may block before it fails with `TimedOut`: the
/// kernel answers rtnetlink requests synchronously, so this only bounds a
/// bug, never a normal wait.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is a live c_int and `len` is its exact size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            len,
        )
    })
    .map(drop)
}

/// A close-on-exec `NETLINK_ROUTE` socket in the calling thread's network
/// namespace, with extended acks (kernel error strings) and capped acks
/// (errors echo only the request header) when the kernel offers them, and a
/// receive timeout of [`RECV_TIMEOUT`].
pub fn route_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call with constant arguments.
    let raw = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    })?;
    // SAFETY: socket succeeded, so `raw` is an open fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // Both options are best-effort: older kernels lack them and still work.
    let _ = setsockopt_int(fd.as_fd(), libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, 1);
    let _ = setsockopt_int(fd.as_fd(), libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, 1);
    let tv = libc::timeval {
        tv_sec: RECV_TIMEOUT.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    let len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `tv` is a live timeval and `len` is its exact size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            len,
        )
    })?;
    Ok(fd)
}

/// Sends one datagram (one or more netlink messages) to the kernel.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_nl; we then set the family.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    let addr_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes of reading and `addr`
        // is a live sockaddr_nl of `addr_len` bytes.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                addr_len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n.unsigned_abs() != buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short send on a netlink socket",
            ));
        }
        return Ok(());
    }
}

/// Receives one datagram into `buf`. Fails with `TimedOut` after
/// [`RECV_TIMEOUT`], and with `InvalidData` when the datagram did not fit
/// (rather than silently returning a truncated message).
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes of writing. MSG_TRUNC
        // makes the return value the datagram's real length, so truncation is
        // detected; the kernel never writes past `buf.len()`.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no answer from the kernel on the netlink socket",
                    ))
                }
                _ => return Err(e),
            }
        }
        let n = n.unsigned_abs();
        if n > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("netlink datagram of {n} bytes did not fit in {}", buf.len()),
            ));
        }
        return Ok(n);
    }
}
