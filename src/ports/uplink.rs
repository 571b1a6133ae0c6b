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

use std::io;
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

/// An uplink's sockets, ready for the engine.
#[derive(Debug)]
pub struct OpenedUplink {
    pub fd: OwnedFd,
    /// One more socket per further worker, in `fd`'s fanout group.
    pub extra_queues: Vec<OwnedFd>,
    /// The same sockets, for [`UplinkDrops`] (the engine owns them).
    pub drops: UplinkDrops,
    /// Reads and writes carry the 12-byte `virtio_net_hdr`.
    pub vnet_hdr: bool,
    pub index: u32,
    pub mtu: u32,
}

/// Opens the uplink sockets of interface `index` (called `ifname`) for the
/// frames of `vlan` (`None`: untagged): `queues` of them (one per
/// dataplane worker) in a fanout group by flow hash.
pub fn open(
    ifname: &str,
    index: u32,
    mtu: u32,
    vlan: Option<u16>,
    queues: usize,
) -> Result<OpenedUplink, PortError> {
    let m = match vlan {
        Some(v) => VlanMatch::Tag(v),
        None => VlanMatch::Untagged,
    };
    let fail = |step| {
        move |source| PortError::Configure {
            ifname: ifname.to_string(),
            step,
            detail: String::new(),
            source,
        }
    };
    let mut all = crate::sys::uplink::open_group(index, m, queues)
        .map_err(fail("open the uplink's packet sockets"))?
        .into_iter();
    let first = all.next().ok_or_else(|| {
        fail("open the uplink's packet sockets")(io::Error::from_raw_os_error(libc::EINVAL))
    })?;
    let extra_queues: Vec<OwnedFd> = all.map(|s| s.fd).collect();
    let drops = std::iter::once(&first.fd)
        .chain(&extra_queues)
        .map(OwnedFd::try_clone)
        .collect::<io::Result<Vec<_>>>()
        .map(UplinkDrops)
        .map_err(fail("duplicate the uplink's packet sockets"))?;
    Ok(OpenedUplink {
        fd: first.fd,
        extra_queues,
        drops,
        vnet_hdr: first.vnet_hdr,
        index,
        mtu,
    })
}

/// A handle on an uplink's sockets that reads what the kernel dropped on
/// their receive queues (a worker that fell behind): frames the switch
/// never saw, so no counter of its own can have them.
#[derive(Debug)]
pub struct UplinkDrops(Vec<OwnedFd>);

impl UplinkDrops {
    /// Frames dropped since the last call, on all the sockets.
    pub fn take(&self) -> u64 {
        self.0
            .iter()
            .map(|fd| crate::sys::uplink::take_drops(fd.as_fd()).map_or(0, u64::from))
            .sum()
    }
}
