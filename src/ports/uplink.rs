//! Uplink ports: a host interface (`eth0`) attached to a network as one of
//! its ports, the way macvlan's parent is, through a packet socket
//! ([`crate::sys::uplink`]) that the engine reads and writes like a TAP
//! with offloads.
//!
//! One socket per network: a network on VLAN 10 and one on VLAN 20 of the
//! same interface each have their own socket, whose kernel filter takes
//! only its VLAN's frames (or only untagged ones). A frame from the LAN
//! thus reaches one network's port at most, by construction, and the
//! engine needs no demultiplexing of its own. What leaves through the
//! socket of a tagged network is tagged by the engine
//! (`switch::uplink`).
//!
//! [`probe`] tells the control plane whether the interface is there and up
//! (it watches it about once a second, see `ctl::uplink`).

use std::os::fd::{AsFd, OwnedFd};

use super::link::link_info;
use super::{Netns, PortError};
pub use crate::sys::uplink::VlanMatch;

const IFF_UP: u32 = 0x1;
const IFF_LOWER_UP: u32 = 0x1_0000;

/// What the interface is doing, as the uplink reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// No interface of that name in the daemon's namespace.
    Missing,
    /// There, but administratively down or without carrier.
    Down,
    Up,
}

impl LinkState {
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Missing => "missing",
            LinkState::Down => "down",
            LinkState::Up => "up",
        }
    }
}

/// The interface as [`probe`] found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub state: LinkState,
    /// Its index while it exists (a deleted and re-created interface gets
    /// a new one).
    pub index: Option<u32>,
    pub mtu: u32,
}

/// The state of interface `ifname` in the daemon's namespace.
pub fn probe(ifname: &str) -> Result<Probe, PortError> {
    Ok(match link_info(&Netns::Current, ifname)? {
        None => Probe {
            state: LinkState::Missing,
            index: None,
            mtu: 0,
        },
        Some(l) => Probe {
            state: if l.flags & IFF_UP != 0 && l.flags & IFF_LOWER_UP != 0 {
                LinkState::Up
            } else {
                LinkState::Down
            },
            index: Some(l.index),
            mtu: l.mtu,
        },
    })
}

/// An uplink's socket, ready for the engine.
#[derive(Debug)]
pub struct OpenedUplink {
    pub fd: OwnedFd,
    /// The same socket, for [`UplinkDrops`] (the engine owns `fd`).
    pub drops: UplinkDrops,
    /// Reads and writes carry the 12-byte `virtio_net_hdr`.
    pub vnet_hdr: bool,
    pub index: u32,
    pub mtu: u32,
}

/// Opens the uplink socket of interface `index` (called `ifname`) for the
/// frames of `vlan` (`None`: untagged).
pub fn open(
    ifname: &str,
    index: u32,
    mtu: u32,
    vlan: Option<u16>,
) -> Result<OpenedUplink, PortError> {
    let m = match vlan {
        Some(v) => VlanMatch::Tag(v),
        None => VlanMatch::Untagged,
    };
    let s = crate::sys::uplink::open(index, m).map_err(|source| PortError::Configure {
        ifname: ifname.to_string(),
        step: "open the uplink's packet socket",
        detail: String::new(),
        source,
    })?;
    let drops = UplinkDrops(s.fd.try_clone().map_err(|source| PortError::Configure {
        ifname: ifname.to_string(),
        step: "duplicate the uplink's packet socket",
        detail: String::new(),
        source,
    })?);
    Ok(OpenedUplink {
        fd: s.fd,
        drops,
        vnet_hdr: s.vnet_hdr,
        index,
        mtu,
    })
}

/// A handle on an uplink's socket that reads what the kernel dropped on
/// its receive queue (a worker that fell behind): frames the switch never
/// saw, so no counter of its own can have them.
#[derive(Debug)]
pub struct UplinkDrops(OwnedFd);

impl UplinkDrops {
    /// Frames dropped since the last call.
    pub fn take(&self) -> u64 {
        crate::sys::uplink::take_drops(self.0.as_fd()).map_or(0, u64::from)
    }
}
