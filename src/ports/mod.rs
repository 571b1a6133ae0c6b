//! Port backends: TAP devices created in a container's network namespace
//! (or attached by name when they already exist), and the namespace and
//! link plumbing they need (netlink and ioctls, never `ip`).
//!
//! API contract (used by `ctl`):
//! - [`create_tap`] creates a TAP *inside* the sandbox's namespace, names,
//!   addresses and routes it, sets it up, and returns its host-side fd.
//!   The TAP is not persistent: closing the fd deletes the device, so
//!   dropping a [`Tap`] (or the fd it was turned into) removes what was
//!   created and nothing else. [`create_persistent_tap`] (a daemon with a
//!   state directory) sets `TUNSETPERSIST` instead: the device stays when
//!   the daemon stops and [`reattach_tap`] opens it again by name after a
//!   restart. A [`PersistGuard`] holding one of its fds clears the flag
//!   when dropped, so the last close deletes it again unless the guard was
//!   [kept](PersistGuard::keep) (a daemon stopping).
//! - [`attach_existing`] opens a persistent TAP that already exists in the
//!   daemon's namespace (the lab case: `ip tuntap add ... user U`); closing
//!   the fd leaves the device in place.
//! - [`search`]: a namespace's identity (is a container's sandbox still
//!   there?) and [`search::reattach_found`], which finds a persistent TAP
//!   again after someone renamed it or moved it to another namespace.
//!
//! What the dataplane can rely on (measured on kernel 6.18, checked by
//! `tests/ports_root.rs`):
//! - When the device is deleted underneath (`ip link del`), the fd polls
//!   `POLLERR` alone (no `POLLIN`/`POLLHUP`), and from the first call on
//!   every `read`/`write` fails with `EBADFD`; frames still queued are lost.
//!   Edge-triggered epoll (mio) reports that `EPOLLERR` *once*, so act on
//!   that event: the port is dead, deregister it and drop it.
//! - While the link is down, `write` fails with `EIO` (count, do not close).
//! - Deleting the *namespace* (`ip netns del`, or the container's last
//!   process exiting) does **not** delete the TAP: its fd holds a reference
//!   to the namespace, which lives on, unnamed, with the device working in
//!   it, until the fd is closed. Ports of a dead container must be removed
//!   explicitly.
//!
//! Why every namespace switch happens on a throwaway thread: `setns` moves
//! only the calling thread, and a thread that went into a container's
//! namespace and came back could be left behind there by an error between
//! the two calls, after which every socket the daemon opens on it would
//! silently be the container's. A helper thread that enters and then ends
//! cannot leak that way. What it creates keeps its namespace: the TAP lives
//! in the namespace of whoever opened `/dev/net/tun`, and a netlink socket
//! stays bound to the namespace it was created in.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crate::wire::MacAddr;

pub mod link;
mod netlink;
pub mod netns;
mod persist;
pub mod ring;
pub mod search;
mod tap;
pub mod uplink;
pub mod veth;

pub use netlink::{LinkInfo, TunInfo};
pub use persist::PersistGuard;
pub use tap::{
    attach_existing, create_persistent_tap, create_tap, has_persistent_tap, reattach_tap, tap_name,
    validate_ifname,
};

/// A network namespace: the container's sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Netns {
    /// The daemon's own namespace.
    Current,
    /// A bind-mounted namespace file such as `/run/netns/c1`.
    Path(PathBuf),
    /// The namespace of a process (`/proc/PID/ns/net`).
    Pid(u32),
}

impl Netns {
    /// A namespace made by `ip netns add NAME` or [`netns::create_named`].
    pub fn named(name: &str) -> Netns {
        Netns::Path(PathBuf::from(netns::NETNS_RUN_DIR).join(name))
    }

    /// The file to `setns` into; `None` for [`Netns::Current`].
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Netns::Current => None,
            Netns::Path(p) => Some(p.clone()),
            Netns::Pid(pid) => Some(PathBuf::from(format!("/proc/{pid}/ns/net"))),
        }
    }

    /// The namespace file as messages name it; `None` for the daemon's own.
    pub fn label(&self) -> Option<String> {
        self.path().map(|p| p.display().to_string())
    }
}

impl fmt::Display for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Netns::Current => f.write_str("(the daemon's own)"),
            Netns::Path(p) => write!(f, "{}", p.display()),
            Netns::Pid(pid) => write!(f, "/proc/{pid}/ns/net"),
        }
    }
}

/// What a new container-side TAP should look like.
#[derive(Clone, Debug)]
pub struct TapSpec {
    pub netns: Netns,
    /// Interface name inside the namespace (at most 15 bytes), e.g. `eth0`.
    pub ifname: String,
    /// The container's MAC; `None` generates a locally administered one.
    pub mac: Option<MacAddr>,
    /// Link MTU; `None` keeps the kernel default (1500).
    pub mtu: Option<u32>,
    /// Addresses to configure, with their prefix length.
    pub addrs: Vec<ipnet::IpNet>,
    /// Default route via this address, when given.
    pub gateway: Option<IpAddr>,
    /// Open the TAP with a `virtio_net_hdr` and offloads on (see
    /// `tap::enable_offloads`): the container's stack then hands over
    /// 64 KiB TCP/UDP super-frames with partial checksums.
    pub vnet_hdr: bool,
    /// Queues (fds) to open: more than one makes a multi-queue TAP whose
    /// queues the kernel picks per flow, one per dataplane worker.
    pub queues: usize,
}

/// An open TAP port.
#[derive(Debug)]
pub struct Tap {
    /// Host-side fd: IFF_TAP|IFF_NO_PI, O_NONBLOCK, O_CLOEXEC.
    pub fd: OwnedFd,
    /// The interface name as the kernel has it.
    pub ifname: String,
    pub ifindex: u32,
    pub mac: MacAddr,
    pub mtu: u32,
    /// True when vxswitch created the device (closing the fd deletes it).
    pub created: bool,
    /// Every read and write on `fd` starts with a 12-byte `virtio_net_hdr`.
    pub vnet_hdr: bool,
    /// The further queues of a multi-queue TAP (`fd` is the first).
    pub extra_queues: Vec<OwnedFd>,
}

/// Errors of port plumbing, each naming the object and the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("invalid interface name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("cannot enter network namespace {netns}: {source}{}", netns_hint(.source))]
    Netns {
        netns: String,
        source: std::io::Error,
    },
    #[error("cannot open /dev/net/tun: {} ({})", .0, tun_hint(.0))]
    OpenTun(std::io::Error),
    #[error("cannot create TAP {name}: {source}")]
    CreateTap {
        name: String,
        source: std::io::Error,
    },
    /// Creating a veth pair (`port add --backend veth`) failed; `name`
    /// says both ends.
    #[error("cannot create veth pair {name}: {source}")]
    CreateVeth {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot attach TAP {name}: {source}")]
    AttachTap {
        name: String,
        source: std::io::Error,
    },
    /// Finding a veth port's host end again (a restart) failed; `name` is
    /// the host end.
    #[error("cannot attach veth {name}: {source}")]
    AttachVeth {
        name: String,
        source: std::io::Error,
    },
    /// `step` is the action ("add address"), `detail` its object
    /// ("10.77.0.11/24"), empty when the step says it all.
    #[error("configuring {ifname}: {step}{} failed: {source}", spaced(.detail))]
    Configure {
        ifname: String,
        step: &'static str,
        detail: String,
        source: std::io::Error,
    },
    /// Reading an interface's state (netlink) failed.
    #[error("reading interface {ifname}: {step} failed: {source}")]
    Inspect {
        ifname: String,
        step: &'static str,
        source: std::io::Error,
    },
    /// Creating or deleting a named namespace (`/run/netns/NAME`) failed.
    #[error("network namespace {name}: {step} failed: {source}")]
    Namespace {
        name: String,
        step: &'static str,
        source: std::io::Error,
    },
    /// The namespace given for a container is the daemon's own.
    #[error(
        "{netns} is the daemon's own network namespace, not a container's (has the container's \
         process left it yet? `unshare --net CMD &` leaves it a moment after it starts); give \
         the container's namespace, or leave --netns out to keep the TAP here under the port's name"
    )]
    OwnNamespace { netns: String },
    #[error("{0}")]
    Unsupported(&'static str),
}

/// What to do when the namespace file could not be opened or entered
/// because of privileges: the case of a daemon in a user namespace given a
/// namespace from outside it (docs/rootless.md).
fn netns_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => {
            " (entering a network namespace needs CAP_SYS_ADMIN over it: a daemon run as root may \
             enter any, a daemon in a user namespace only those created inside that same user \
             namespace, e.g. by `unshare -n` run from the daemon's `unshare -Urn` shell)"
        }
        _ => "",
    }
}

/// Why `/dev/net/tun` would not open, by errno.
fn tun_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
            "the tun driver is missing: load it with `modprobe tun`"
        }
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "the daemon's user may not open the device: run the daemon as root, or give \
             /dev/net/tun mode 0666 as udev does on most distributions; see docs/rootless.md"
        }
        Some(libc::EMFILE) | Some(libc::ENFILE) => "the daemon has no file descriptor left",
        _ => "is the tun module loaded, and does the daemon have access?",
    }
}

fn spaced(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" {detail}")
    }
}

impl PortError {
    /// The underlying OS error number, when there is one (e.g. `EEXIST`).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            PortError::Netns { source, .. }
            | PortError::OpenTun(source)
            | PortError::CreateTap { source, .. }
            | PortError::CreateVeth { source, .. }
            | PortError::AttachTap { source, .. }
            | PortError::AttachVeth { source, .. }
            | PortError::Configure { source, .. }
            | PortError::Inspect { source, .. }
            | PortError::Namespace { source, .. } => source.raw_os_error(),
            PortError::InvalidName { .. }
            | PortError::OwnNamespace { .. }
            | PortError::Unsupported(_) => None,
        }
    }

    pub(crate) fn configure(
        ifname: &str,
        step: &'static str,
        detail: &dyn fmt::Display,
    ) -> impl FnOnce(io::Error) -> PortError {
        let (ifname, detail) = (ifname.to_string(), detail.to_string());
        move |source| PortError::Configure {
            ifname,
            step,
            detail,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configure_error_names_interface_step_and_object() {
        let e = PortError::configure("eth0", "add address", &"10.77.0.11/24")(
            io::Error::from_raw_os_error(libc::EEXIST),
        );
        let s = e.to_string();
        assert!(
            s.starts_with("configuring eth0: add address 10.77.0.11/24 failed: File exists"),
            "{s}"
        );
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        let e = PortError::configure("eth0", "set link up", &"")(io::Error::from_raw_os_error(
            libc::EPERM,
        ));
        assert!(e
            .to_string()
            .starts_with("configuring eth0: set link up failed: "));
    }

    #[test]
    fn privilege_errors_say_what_a_rootless_daemon_needs() {
        let e = PortError::OpenTun(io::Error::from_raw_os_error(libc::EACCES));
        let s = e.to_string();
        assert!(
            s.starts_with("cannot open /dev/net/tun: Permission denied"),
            "{s}"
        );
        assert!(
            s.contains("(the daemon's user may not open the device: run the daemon as root, or give /dev/net/tun mode 0666"),
            "{s}"
        );
        let e = PortError::OpenTun(io::Error::from_raw_os_error(libc::ENOENT));
        assert!(e.to_string().contains("`modprobe tun`"), "{e}");
        let e = PortError::Netns {
            netns: "/proc/42/ns/net".into(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        let s = e.to_string();
        assert!(
            s.starts_with("cannot enter network namespace /proc/42/ns/net: Permission denied"),
            "{s}"
        );
        assert!(
            s.contains(" (entering a network namespace needs CAP_SYS_ADMIN over it: "),
            "{s}"
        );
        let e = PortError::Netns {
            netns: "/run/netns/c9".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert!(!e.to_string().contains("CAP_SYS_ADMIN"), "{e}");
    }

    #[test]
    fn netns_paths_and_display() {
        assert_eq!(Netns::Current.path(), None);
        assert_eq!(
            Netns::Pid(42).path(),
            Some(PathBuf::from("/proc/42/ns/net"))
        );
        assert_eq!(Netns::named("c1").to_string(), "/run/netns/c1");
        assert_eq!(Netns::Pid(42).to_string(), "/proc/42/ns/net");
        assert_eq!(Netns::Current.label(), None);
        assert_eq!(Netns::Pid(42).label().as_deref(), Some("/proc/42/ns/net"));
        assert_eq!(Netns::named("c1").label().as_deref(), Some("/run/netns/c1"));
    }
}
