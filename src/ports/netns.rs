//! Network namespaces: run code inside one, and create or delete named ones
//! the way `ip netns add/del` does (tests and the demo need them; the daemon
//! itself only enters namespaces that others made).
//!
//! A named namespace is a bind mount of a namespace file onto an empty
//! file `/run/netns/NAME`; the mount keeps the namespace alive without any
//! process in it. Like iproute2, `/run/netns` is made a shared mount point
//! first, so a mount made here is seen in other mount namespaces and the
//! namespaces made by `ip netns add` and by this module are interchangeable.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{Netns, PortError};
use crate::sys;

/// Where `ip netns` keeps named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Serialises the one-time "make /run/netns a shared mount" step between
/// threads of this process (two threads doing it at once would stack two
/// bind mounts).
static RUN_DIR_SETUP: Mutex<()> = Mutex::new(());

/// Runs `f` on a short-lived thread inside `netns` and returns its result.
///
/// Sockets and TAP fds that `f` opens belong to `netns` and keep working
/// from any thread afterwards. The thread ends when `f` returns, so it
/// never has to find its way back; a panic in `f` is propagated to the
/// caller. [`Netns::Current`] runs `f` on the calling thread.
pub fn run_in<T: Send>(netns: &Netns, f: impl FnOnce() -> T + Send) -> Result<T, PortError> {
    let Some(path) = netns.path() else {
        return Ok(f());
    };
    let enter_err = |source| PortError::Netns {
        netns: netns.to_string(),
        source,
    };
    // Opened here, not on the helper: the caller sees "no such namespace"
    // (or "not a namespace") without paying for a thread.
    let file = open_netns(&path).map_err(enter_err)?;
    std::thread::scope(|s| {
        let helper = std::thread::Builder::new()
            .name("vxs-netns".into())
            .spawn_scoped(s, move || {
                sys::netns::setns_net(file.as_fd()).map_err(|e| {
                    if e.raw_os_error() == Some(libc::EINVAL) {
                        io::Error::new(e.kind(), format!("{e} (not a network namespace file?)"))
                    } else {
                        e
                    }
                })?;
                drop(file);
                Ok(f())
            })
            .map_err(enter_err)?;
        match helper.join() {
            Ok(r) => r.map_err(enter_err),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Whether `netns` names a file for the network namespace this process
/// runs in (false for [`Netns::Current`], which says so on purpose). A
/// container's namespace that turns out to be the daemon's own is almost
/// always a race (the container's process has not unshared yet) or a
/// mistake, and a TAP "in the container" would land beside the daemon's.
pub fn is_own(netns: &Netns) -> Result<bool, PortError> {
    let Some(path) = netns.path() else {
        return Ok(false);
    };
    let err = |source| PortError::Netns {
        netns: netns.to_string(),
        source,
    };
    let theirs = open_netns(&path).map_err(err)?.metadata().map_err(err)?;
    let ours = fs::metadata("/proc/thread-self/ns/net").map_err(err)?;
    Ok((theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()))
}

/// Opens the network namespace file `path` for `setns`, refusing anything
/// else before it is opened for real.
///
/// A client names the path and the daemon runs as root, so the path may be
/// anything: a FIFO (a blocking `open` would wait for a writer forever,
/// and the control plane with it), a tty or a watchdog device (whose
/// driver acts on `open` itself, even a non-blocking one), a directory, a
/// regular file. So the path is first opened with `O_PATH`, which runs no
/// driver and never blocks; the handle must be on `nsfs` (`fstatfs`), the
/// filesystem of `/proc/PID/ns/*` and of the bind mounts `ip netns` makes,
/// and name a *network* namespace (`NS_GET_NSTYPE`). Only then is that
/// same file (through `/proc/self/fd`, so it cannot be swapped in between)
/// opened `O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC`.
///
/// The refusal names the path and what it is instead: "`/tmp/x` is not a
/// network namespace file (it is a FIFO) ...".
pub fn open_netns(path: &Path) -> io::Result<File> {
    let handle = sys::fs::open_path(path)?;
    let magic = sys::fs::fs_magic(handle.as_fd())?;
    if magic != sys::fs::NSFS_MAGIC {
        let kind = File::from(handle)
            .metadata()
            .map(|m| file_kind(&m.file_type()))
            .unwrap_or("something else");
        return Err(not_a_netns(path, kind));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))?;
    drop(handle);
    match sys::netns::ns_type(file.as_fd()) {
        Ok(t) if t == libc::CLONE_NEWNET => Ok(file),
        Ok(t) => Err(not_a_netns(path, ns_kind(t))),
        // A kernel before 4.11: setns says EINVAL if it is another kind.
        Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => Ok(file),
        Err(e) => Err(e),
    }
}

fn not_a_netns(path: &Path, kind: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is not a network namespace file (it is {kind}); give a namespace such as \
             /run/netns/NAME or /proc/PID/ns/net",
            path.display()
        ),
    )
}

/// What a file that is not a namespace is, for messages.
fn file_kind(t: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_file() {
        "a regular file"
    } else {
        "something else"
    }
}

/// The kind of a namespace that is not a network one, for messages.
fn ns_kind(t: libc::c_int) -> &'static str {
    match t {
        libc::CLONE_NEWNS => "a mount namespace",
        libc::CLONE_NEWUTS => "a UTS namespace",
        libc::CLONE_NEWIPC => "an IPC namespace",
        libc::CLONE_NEWUSER => "a user namespace",
        libc::CLONE_NEWPID => "a PID namespace",
        libc::CLONE_NEWCGROUP => "a cgroup namespace",
        libc::CLONE_NEWTIME => "a time namespace",
        _ => "another kind of namespace",
    }
}

fn check_ns_name(name: &str) -> Result<(), PortError> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." {
        Some("it is . or ..")
    } else if name.contains('/') || name.contains('\0') {
        Some("it contains '/' or NUL")
    } else if name.len() > 255 {
        Some("it is longer than 255 bytes")
    } else {
        None
    };
    match why {
        Some(why) => Err(PortError::Namespace {
            name: name.to_string(),
            step: "check the name",
            source: io::Error::new(io::ErrorKind::InvalidInput, why),
        }),
        None => Ok(()),
    }
}

/// Makes [`NETNS_RUN_DIR`] exist and be a shared mount point, as
/// `ip netns add` does.
fn prepare_run_dir(name: &str) -> Result<(), PortError> {
    let err = |step: &'static str| {
        move |source| PortError::Namespace {
            name: name.to_string(),
            step,
            source,
        }
    };
    let dir = Path::new(NETNS_RUN_DIR);
    let _guard = RUN_DIR_SETUP.lock().unwrap_or_else(|p| p.into_inner());
    fs::create_dir_all(dir).map_err(err("create /run/netns"))?;
    match sys::netns::make_rshared(dir) {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself, then share it.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            sys::netns::bind_mount(dir, dir, true).map_err(err("bind-mount /run/netns"))?;
            sys::netns::make_rshared(dir).map_err(err("make /run/netns a shared mount"))
        }
        Err(e) => Err(err("make /run/netns a shared mount")(e)),
    }
}

/// Creates a new, empty network namespace named `name` (like
/// `ip netns add NAME`) and returns its path, `/run/netns/NAME`.
///
/// Fails with `AlreadyExists` when the name is taken. Nothing is left
/// behind on failure.
pub fn create_named(name: &str) -> Result<PathBuf, PortError> {
    check_ns_name(name)?;
    prepare_run_dir(name)?;
    let err = |step: &'static str| {
        move |source| PortError::Namespace {
            name: name.to_string(),
            step,
            source,
        }
    };
    let path = Path::new(NETNS_RUN_DIR).join(name);
    // The mount target: an empty file, created exclusively so two creators
    // of the same name cannot both succeed.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)
        .map_err(err("create the mount point file"))?;
    let mounted = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("vxs-netns-new".into())
            .spawn_scoped(s, || {
                sys::netns::unshare_net()?;
                // This thread's own namespace, now the new one.
                sys::netns::bind_mount(Path::new("/proc/thread-self/ns/net"), &path, false)
            })
            .and_then(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("namespace helper thread panicked")))
            })
    });
    if let Err(e) = mounted {
        let _ = fs::remove_file(&path);
        return Err(err("create and bind-mount the namespace")(e));
    }
    Ok(path)
}

/// Deletes the named namespace `name` (like `ip netns del NAME`): unmounts
/// it lazily and removes `/run/netns/NAME`. The namespace itself lives on
/// while something still uses it (a process, a socket, a TAP fd).
pub fn delete_named(name: &str) -> Result<(), PortError> {
    check_ns_name(name)?;
    let path = Path::new(NETNS_RUN_DIR).join(name);
    let err = |step: &'static str| {
        move |source| PortError::Namespace {
            name: name.to_string(),
            step,
            source,
        }
    };
    match sys::netns::umount_detach(&path) {
        Ok(()) => {}
        // Not mounted (a half-made namespace): still remove the file.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(err("unmount")(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no namespace named {name} in {NETNS_RUN_DIR}"),
            )))
        }
        Err(e) => return Err(err("unmount")(e)),
    }
    fs::remove_file(&path).map_err(err("remove the mount point file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_in_current_runs_inline() {
        let here = std::thread::current().id();
        let there = run_in(&Netns::Current, || std::thread::current().id()).unwrap();
        assert_eq!(here, there);
    }

    #[test]
    fn run_in_missing_namespace_names_it() {
        let ns = Netns::Path(PathBuf::from("/nonexistent/vxswitch-netns"));
        let e = run_in(&ns, || ()).unwrap_err();
        assert!(matches!(e, PortError::Netns { .. }));
        assert!(e.to_string().contains("/nonexistent/vxswitch-netns"), "{e}");
    }

    #[test]
    fn what_is_not_a_network_namespace_is_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("vxswitch-notns-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        // No writer ever opens it: a blocking open would wait here forever.
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo {}", fifo.display());
        let regular = dir.join("file");
        fs::write(&regular, b"x").unwrap();
        let cases = [
            (fifo.clone(), "a FIFO"),
            (regular.clone(), "a regular file"),
            (dir.clone(), "a directory"),
            (PathBuf::from("/dev/null"), "a character device"),
            (PathBuf::from("/dev/zero"), "a character device"),
            (PathBuf::from("/proc/self/ns/uts"), "a UTS namespace"),
        ];
        for (path, kind) in cases {
            let e = open_netns(&path).unwrap_err();
            assert_eq!(
                e.kind(),
                io::ErrorKind::InvalidInput,
                "{}: {e}",
                path.display()
            );
            assert_eq!(
                e.to_string(),
                format!(
                    "{} is not a network namespace file (it is {kind}); give a namespace \
                     such as /run/netns/NAME or /proc/PID/ns/net",
                    path.display()
                )
            );
            let e = run_in(&Netns::Path(path.clone()), || ()).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!(
                    "cannot enter network namespace {}: {} is not a network namespace file",
                    path.display(),
                    path.display()
                )),
                "{e}"
            );
        }
        assert!(open_netns(Path::new("/proc/self/ns/net")).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_namespace_names_are_rejected_before_any_syscall() {
        for bad in ["", ".", "..", "a/b", "nul\0"] {
            let e = create_named(bad).unwrap_err();
            assert!(
                matches!(
                    e,
                    PortError::Namespace {
                        step: "check the name",
                        ..
                    }
                ),
                "{bad:?}: {e}"
            );
            assert!(delete_named(bad).is_err());
        }
    }
}
