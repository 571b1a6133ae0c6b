//! Network-namespace and mount system calls: `setns`, `unshare`, bind
//! mounts and lazy unmounts, the pieces `ip netns add/del` is made of.
//!
//! `setns`/`unshare` change only the *calling thread*; callers run them on
//! a throwaway thread (see `ports::netns::run_in`) so the daemon's own
//! threads never change namespace.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::fd::cvt;

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {} contains a NUL byte", p.display()),
        )
    })
}

/// Moves the calling thread into the network namespace `fd` refers to.
/// Fails with `EINVAL` when `fd` is not a network-namespace file.
pub fn setns_net(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns on a borrowed, open fd; it only changes this thread's namespace.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
}

/// Moves the calling thread into a new, empty network namespace.
pub fn unshare_net() -> io::Result<()> {
    // SAFETY: unshare with a constant flag; it only changes this thread's namespace.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) }).map(drop)
}

/// `mount --bind src dst` (`--rbind` when `recursive`).
pub fn bind_mount(src: &Path, dst: &Path, recursive: bool) -> io::Result<()> {
    let (src, dst) = (c_path(src)?, c_path(dst)?);
    let fstype = c"none";
    let flags = libc::MS_BIND | if recursive { libc::MS_REC } else { 0 };
    // SAFETY: all three strings are live NUL-terminated C strings; `data` may be null.
    cvt(unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fstype.as_ptr(),
            flags,
            std::ptr::null(),
        )
    })
    .map(drop)
}

/// `mount --make-rshared path`: fails with `EINVAL` when `path` is not a
/// mount point.
pub fn make_rshared(path: &Path) -> io::Result<()> {
    let path = c_path(path)?;
    let (src, fstype) = (c"", c"none");
    // SAFETY: all three strings are live NUL-terminated C strings; `data` may be null.
    cvt(unsafe {
        libc::mount(
            src.as_ptr(),
            path.as_ptr(),
            fstype.as_ptr(),
            libc::MS_SHARED | libc::MS_REC,
            std::ptr::null(),
        )
    })
    .map(drop)
}

/// `umount --lazy path` (`MNT_DETACH`).
pub fn umount_detach(path: &Path) -> io::Result<()> {
    let path = c_path(path)?;
    // SAFETY: `path` is a live NUL-terminated C string.
    cvt(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

/// `ioctl(NS_GET_NSTYPE)` (Linux 4.11): the `CLONE_NEW*` flag of the
/// namespace the nsfs file `fd` refers to; `ENOTTY` on older kernels and
/// on files that are not namespaces.
pub fn ns_type(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // _IO(0xb7, 0x3) from <linux/nsfs.h>.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: NS_GET_NSTYPE takes no argument and only returns a value; `fd` is open.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) })
}
