//! File-descriptor helpers: socket pairs for in-process test ports, and
//! `O_NONBLOCK`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Converts a `-1`-on-error return value into `io::Result`.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// An `AF_UNIX`/`SOCK_SEQPACKET` pair, both ends non-blocking and
/// close-on-exec. Each `write` is one record and each `read` returns one
/// record, exactly as a TAP carries one frame per call, so either end can
/// stand in for a port.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid, writable array of two c_ints as socketpair requires.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sets or clears `O_NONBLOCK` (mio's `SourceFd` does not set it).
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: F_GETFL on a borrowed, open fd has no memory-safety requirements.
    let flags = cvt(unsafe { libc::fcntl(raw, libc::F_GETFL) })?;
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if new != flags {
        // SAFETY: F_SETFL with an int argument on a borrowed, open fd.
        cvt(unsafe { libc::fcntl(raw, libc::F_SETFL, new) })?;
    }
    Ok(())
}

/// Of the given fds, those that report an error or a hang-up right now
/// (`poll` with a zero timeout, one system call for all of them).
pub fn hung_up<K: Copy>(fds: &[(K, RawFd)]) -> Vec<K> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(_, fd)| libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        })
        .collect();
    if pfds.is_empty() {
        return Vec::new();
    }
    let n = libc::nfds_t::try_from(pfds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `pfds` is a valid array of `n` pollfd structs that poll may write to.
    let ret = unsafe { libc::poll(pfds.as_mut_ptr(), n, 0) };
    if ret <= 0 {
        return Vec::new();
    }
    let bad = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
    fds.iter()
        .zip(&pfds)
        .filter(|(_, p)| p.revents & bad != 0)
        .map(|(&(k, _), _)| k)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn seqpacket_keeps_record_boundaries() {
        let (a, b) = seqpacket_pair().unwrap();
        let (mut a, mut b) = (File::from(a), File::from(b));
        a.write_all(&[1, 2, 3]).unwrap();
        a.write_all(&[4, 5]).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(b.read(&mut buf).unwrap(), 3);
        assert_eq!(b.read(&mut buf).unwrap(), 2);
        assert_eq!(
            b.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        set_nonblocking(b.as_fd(), false).unwrap();
        set_nonblocking(b.as_fd(), true).unwrap();
    }
}
