//! Looking at a file before opening it for real: an `O_PATH` handle (no
//! driver `open()`, no wait for a FIFO's writer) and the filesystem it
//! lives on (`fstatfs`), so a path a client names can be checked to be
//! what it claims before anything reads, writes or `setns`es it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::fd::cvt;

/// `fstatfs`'s `f_type` of the namespace filesystem (`nsfs`), the one
/// `/proc/PID/ns/*` and `ip netns`'s bind mounts live on.
pub const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Opens `path` with `O_PATH | O_CLOEXEC` (following symlinks, as
/// `/proc/PID/ns/net` needs): a handle on the file itself that runs no
/// driver's `open` (a tty, a watchdog) and never blocks (a FIFO without
/// a writer). Good for `fstat`, `fstatfs` and re-opening through
/// `/proc/self/fd`, not for reading.
pub fn open_path(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {} contains a NUL byte", path.display()),
        )
    })?;
    // SAFETY: `c` is a live NUL-terminated C string; open takes no other pointer.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) })?;
    // SAFETY: open succeeded, so `fd` is an open descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The magic number (`f_type`) of the filesystem the file `fd` refers to
/// lives on; works on `O_PATH` handles (Linux 3.12 and later).
pub fn fs_magic(fd: BorrowedFd<'_>) -> io::Result<i64> {
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs writes into `st`, a valid, writable statfs, on a borrowed open fd.
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    // `f_type`'s C type differs between architectures; the magic fits in 32 bits.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    Ok(i64::from(st.f_type as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn namespace_files_are_on_nsfs_and_others_are_not() {
        let ns = open_path(Path::new("/proc/self/ns/net")).unwrap();
        assert_eq!(fs_magic(ns.as_fd()).unwrap(), NSFS_MAGIC);
        let null = open_path(Path::new("/dev/null")).unwrap();
        assert_ne!(fs_magic(null.as_fd()).unwrap(), NSFS_MAGIC);
        let e = open_path(Path::new("/nonexistent/vxswitch")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = open_path(Path::new("a\0b")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
