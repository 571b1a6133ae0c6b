//! The BPF filesystem the fast path pins its maps on (docs/fastpath.md):
//! is a directory on bpffs, and mounting one where it is not.

use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::fd::cvt;
use super::fs::{fs_magic, open_path};

/// `fstatfs`'s `f_type` of the BPF filesystem.
pub const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Whether `dir` lives on a BPF filesystem.
pub fn is_bpffs(dir: &Path) -> io::Result<bool> {
    let fd = open_path(dir)?;
    Ok(fs_magic(fd.as_fd())? == BPF_FS_MAGIC)
}

/// Mounts a BPF filesystem on the existing directory `dir` (as
/// `mount -t bpf bpf DIR` does). Needs `CAP_SYS_ADMIN`.
pub fn mount_bpffs(dir: &Path) -> io::Result<()> {
    let target = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let fstype = c"bpf";
    // SAFETY: every pointer is a live NUL-terminated C string (or null for
    // `data`, which mount allows); mount keeps none of them.
    cvt(unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_directory_is_not_bpffs() {
        assert!(!is_bpffs(Path::new("/proc")).unwrap());
    }
}
