//! Port backends: TAP devices created in a container's network namespace
//! (or attached by name when they already exist), and the namespace and
//! link plumbing they need (netlink and ioctls, never `ip`).
//!
//! API contract (used by `ctl`):
//! - [`create_tap`] creates a TAP *inside* the sandbox's namespace, names,
//!   addresses and routes it, sets it up, and returns its host-side fd.
//!   The TAP is not persistent: closing the fd deletes the device, so
//!   dropping a [`Tap`] (or the fd it was turned into) removes what was
//!   created and nothing else.
//! - [`attach_existing`] opens a persistent TAP that already exists in the
//!   daemon's namespace (the lab case: `ip tuntap add ... user U`); closing
//!   the fd leaves the device in place.

use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crate::wire::MacAddr;

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
}

/// Errors of port plumbing, each naming the object and the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("invalid interface name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("cannot enter network namespace {netns}: {source}")]
    Netns {
        netns: String,
        source: std::io::Error,
    },
    #[error("cannot open /dev/net/tun: {0} (is the tun module loaded, and does the daemon have access?)")]
    OpenTun(std::io::Error),
    #[error("cannot create TAP {name}: {source}")]
    CreateTap {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot attach TAP {name}: {source}")]
    AttachTap {
        name: String,
        source: std::io::Error,
    },
    #[error("configuring {ifname}: {step} failed: {source}")]
    Configure {
        ifname: String,
        step: &'static str,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(&'static str),
}

/// Creates a TAP in `spec.netns`, configured and up.
pub fn create_tap(spec: &TapSpec) -> Result<Tap, PortError> {
    let _ = spec;
    Err(PortError::Unsupported(
        "TAP creation is not implemented yet",
    ))
}

/// Attaches to an existing persistent TAP named `name` in the daemon's namespace.
pub fn attach_existing(name: &str) -> Result<Tap, PortError> {
    let _ = name;
    Err(PortError::Unsupported(
        "attaching existing TAPs is not implemented yet",
    ))
}
