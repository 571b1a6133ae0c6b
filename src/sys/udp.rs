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

/// Most segments one `UDP_SEGMENT` send may carry (`UDP_MAX_SEGMENTS`).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes one `UDP_SEGMENT` send may carry: the whole must fit
/// one IP packet's length field before the kernel cuts it.
pub const GSO_MAX_BYTES: usize = 65_535 - 40 - 8;

/// A control message asking for UDP segmentation (`SOL_UDP`/`UDP_SEGMENT`)
/// with the segment size as its `u16` payload, laid out as `CMSG_SPACE(2)`
/// bytes aligned like a `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct GsoCmsg([u8; GSO_CMSG_SPACE]);

/// `CMSG_SPACE(sizeof(u16))` on 64-bit Linux: a 16-byte header and the
/// payload padded to 8 bytes.
const GSO_CMSG_SPACE: usize = 24;

impl GsoCmsg {
    fn new(segment: u16) -> GsoCmsg {
        let mut b = [0u8; GSO_CMSG_SPACE];
        // cmsg_len = CMSG_LEN(2), cmsg_level = SOL_UDP, cmsg_type = UDP_SEGMENT.
        let hdr = std::mem::size_of::<libc::cmsghdr>();
        b[..8].copy_from_slice(&((hdr + 2) as u64).to_ne_bytes());
        b[8..12].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
        b[12..16].copy_from_slice(&libc::UDP_SEGMENT.to_ne_bytes());
        b[16..18].copy_from_slice(&segment.to_ne_bytes());
        GsoCmsg(b)
    }
}

/// Sends `buf` to `dest` as datagrams of `segment` bytes each (the last may
/// be shorter) in one `sendmsg` with `UDP_SEGMENT`: the kernel cuts it, so
/// a VXLAN super-frame costs one syscall and one pass through the stack.
/// At most [`GSO_MAX_SEGMENTS`] segments and [`GSO_MAX_BYTES`] bytes.
pub fn send_segmented(
    sock: &impl std::os::fd::AsFd,
    buf: &[u8],
    segment: u16,
    dest: &socket2::SockAddr,
) -> io::Result<usize> {
    const _: () = assert!(std::mem::size_of::<libc::cmsghdr>() == 16);
    let cmsg = GsoCmsg::new(segment);
    let bufs = [io::IoSlice::new(buf)];
    let msg = socket2::MsgHdr::new()
        .with_addr(dest)
        .with_buffers(&bufs)
        .with_control(&cmsg.0);
    socket2::SockRef::from(sock).sendmsg(&msg, 0)
}

/// One message of [`send_many`]: `data` to `dest`, as one datagram when
/// `segment` is 0, else cut by the kernel into datagrams of `segment` bytes
/// (`UDP_SEGMENT`, the limits of [`send_segmented`]).
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a> {
    pub data: &'a [u8],
    pub segment: u16,
    pub dest: &'a socket2::SockAddr,
}

/// Most messages one [`send_many`] call takes.
pub const MAX_MESSAGES: usize = 32;

/// Sends up to [`MAX_MESSAGES`] messages (more are ignored) with one
/// `sendmmsg`: datagrams of different sizes or destinations share one
/// system call. Returns how many messages, from the first, the kernel
/// took; an error only when it took none (the error of the first). The
/// caller sends the rest again to learn why they were refused.
pub fn send_many<'a>(
    sock: &impl std::os::fd::AsFd,
    msgs: impl IntoIterator<Item = Outgoing<'a>>,
) -> io::Result<usize> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_MESSAGES];
    let mut cmsgs = [GsoCmsg([0; GSO_CMSG_SPACE]); MAX_MESSAGES];
    // SAFETY: all-zero bytes are a valid mmsghdr (null pointers, zero
    // lengths).
    let mut hdrs: [libc::mmsghdr; MAX_MESSAGES] = unsafe { std::mem::zeroed() };
    let mut n = 0;
    for (i, m) in msgs.into_iter().take(MAX_MESSAGES).enumerate() {
        n = i + 1;
        iov[i].iov_base = m.data.as_ptr().cast_mut().cast();
        iov[i].iov_len = m.data.len();
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = m.dest.as_ptr().cast_mut().cast();
        h.msg_namelen = m.dest.len();
        h.msg_iov = &mut iov[i];
        h.msg_iovlen = 1;
        if m.segment > 0 {
            cmsgs[i] = GsoCmsg::new(m.segment);
            h.msg_control = cmsgs[i].0.as_mut_ptr().cast();
            h.msg_controllen = GSO_CMSG_SPACE;
        }
    }
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: the first `n` headers point at live, correctly sized
    // addresses, one iovec each over a borrowed slice the kernel only
    // reads, and (for GSO) a control buffer of CMSG_SPACE(2) bytes aligned
    // for cmsghdr; all outlive the call. The fd is borrowed and open.
    let sent = unsafe {
        libc::sendmmsg(
            sock.as_fd().as_raw_fd(),
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Turns on `UDP_GRO`: the kernel may hand over several datagrams of one
/// flow in one receive, laid end to end, all of one size (the last may be
/// shorter), with that size in a control message ([`recv_gro`]).
pub fn enable_gro(fd: BorrowedFd<'_>) -> io::Result<()> {
    let on: libc::c_int = 1;
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: `on` is a live c_int and `len` its size, as setsockopt
    // requires for this int-valued option; the fd is borrowed and open.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            std::ptr::from_ref(&on).cast(),
            len,
        )
    })?;
    Ok(())
}

/// One receive from a socket with [`enable_gro`]: the bytes, the sender and
/// the size of each datagram in `buf` (`len` itself when the kernel did not
/// coalesce).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroRecv {
    pub len: usize,
    pub from: std::net::SocketAddr,
    pub segment: usize,
    /// With [`enable_drop_count`]: datagrams the kernel dropped on this
    /// socket so far (a wrapping counter), as of this receive.
    pub dropped: Option<u32>,
    /// The datagram (or train) was longer than `buf` and the kernel cut it
    /// (`MSG_TRUNC`): `len` bytes are only its start. Drop it whole, never
    /// use the slice.
    pub truncated: bool,
}

fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: `v` is a live c_int and `len` its size, as setsockopt requires
    // for int-valued options; the fd is borrowed and open.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&v).cast(),
            len,
        )
    })?;
    Ok(())
}

/// `SO_RXQ_OVFL`: every receive carries the socket's drop count
/// ([`GroRecv::dropped`]).
pub fn enable_drop_count(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
}

/// `SO_RCVBUFFORCE` and `SO_SNDBUFFORCE`: buffers of `bytes` past the
/// sysctl limits; needs CAP_NET_ADMIN (`EPERM` otherwise).
pub fn force_buffers(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, v)?;
    set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, v)
}

/// `recvmsg` into `buf`, reading the `UDP_GRO` control message.
pub fn recv_gro(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<GroRecv> {
    // SAFETY: all-zero bytes are a valid sockaddr_storage and msghdr.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = std::ptr::from_mut(&mut addr).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: every pointer in `msg` (address, one iovec over `buf`, the
    // control buffer) is valid and writable for the lengths given, for the
    // duration of the call.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = n as usize;
    let mut segment = len;
    let mut dropped = None;
    // SAFETY: `msg` was filled by recvmsg: its control pointer and length
    // describe initialized cmsgs inside `control`, which CMSG_FIRSTHDR and
    // CMSG_NXTHDR walk without leaving it; CMSG_DATA of a UDP_GRO cmsg
    // holds one int and of an SO_RXQ_OVFL cmsg one u32, read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                if v > 0 {
                    segment = v as usize;
                }
            } else if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                dropped = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let from = sockaddr_to_std(&addr)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "sender is not IP"))?;
    Ok(GroRecv {
        len,
        from,
        segment,
        dropped,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
    })
}

fn sockaddr_to_std(a: &libc::sockaddr_storage) -> Option<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    match i32::from(a.ss_family) {
        libc::AF_INET => {
            // SAFETY: ss_family says the storage holds a sockaddr_in, which
            // is smaller than sockaddr_storage and needs no more alignment.
            let v4 = unsafe { &*std::ptr::from_ref(a).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe { &*std::ptr::from_ref(a).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    /// A datagram longer than the buffer is reported as cut, not handed
    /// over as if the first bytes were all of it.
    #[test]
    fn a_datagram_longer_than_the_buffer_is_reported_truncated() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let to = rx.local_addr().unwrap();
        tx.send_to(&[7u8; 100], to).unwrap();
        tx.send_to(&[8u8; 40], to).unwrap();
        let mut buf = [0u8; 64];
        let r = recv_gro(rx.as_fd(), &mut buf).unwrap();
        assert!(r.truncated, "{r:?}");
        assert_eq!(r.len, 64);
        let r = recv_gro(rx.as_fd(), &mut buf).unwrap();
        assert!(!r.truncated, "{r:?}");
        assert_eq!((r.len, r.from), (40, tx.local_addr().unwrap()));
    }
}
