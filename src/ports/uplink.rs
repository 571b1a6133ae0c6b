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
pub use crate::sys::ring::RxGeometry;
use crate::sys::uplink;
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
    /// Read through a receive ring of this shape on each socket (the
    /// worker maps its socket's ring), else with one `read` per frame.
    pub ring: Option<RxGeometry>,
}

/// How an uplink's sockets take frames in from the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxSpec {
    /// Through a `TPACKET_V2` receive ring (small frames without a system
    /// call), else one `read` per frame.
    pub ring: bool,
    /// Bytes of frames not read yet that each socket may hold: its
    /// receive buffer, and with `ring` also the ring's size (allocated up
    /// front, one slot of [`ring_slot`] bytes per frame).
    pub buffer: usize,
}

/// The ring slot for an interface of `mtu`: a frame of that MTU with its
/// Ethernet and VLAN headers and the ring's own (at least 2 KiB, a
/// multiple of 16). Longer frames (GRO'd super-frames) come through the
/// socket's receive queue instead.
pub fn ring_slot(mtu: u32) -> u32 {
    const RING_HEADERS: u32 = 96;
    (mtu.min(1 << 16)
        .saturating_add(18 + RING_HEADERS)
        .div_ceil(16)
        * 16)
        .clamp(2048, 1 << 16)
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
    rx: RxSpec,
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
    let rcvbuf = libc::c_int::try_from(rx.buffer).unwrap_or(libc::c_int::MAX);
    let (first, extra_queues, vnet_hdr, ring) = if rx.ring {
        let slot = ring_slot(mtu);
        let slots = u32::try_from(rx.buffer / slot as usize).unwrap_or(u32::MAX);
        let mut all = uplink::open_ring_group(index, m, queues, slot, slots, rcvbuf)
            .map_err(fail("open the uplink's packet sockets with receive rings"))?
            .into_iter();
        let first = all.next().ok_or_else(|| {
            fail("open the uplink's packet sockets")(io::Error::from_raw_os_error(libc::EINVAL))
        })?;
        let (vnet, ring) = (first.vnet_hdr, first.ring);
        (first.fd, all.map(|s| s.fd).collect(), vnet, Some(ring))
    } else {
        let mut all = uplink::open_group(index, m, queues)
            .map_err(fail("open the uplink's packet sockets"))?
            .into_iter();
        let first = all.next().ok_or_else(|| {
            fail("open the uplink's packet sockets")(io::Error::from_raw_os_error(libc::EINVAL))
        })?;
        let extra: Vec<OwnedFd> = all.map(|s| s.fd).collect();
        for fd in std::iter::once(&first.fd).chain(&extra) {
            uplink::set_rcvbuf(fd.as_fd(), rcvbuf).map_err(fail("set the receive buffer"))?;
        }
        (first.fd, extra, first.vnet_hdr, None)
    };
    let drops = std::iter::once(&first)
        .chain(&extra_queues)
        .map(OwnedFd::try_clone)
        .collect::<io::Result<Vec<_>>>()
        .map(UplinkDrops)
        .map_err(fail("duplicate the uplink's packet sockets"))?;
    Ok(OpenedUplink {
        fd: first,
        extra_queues,
        drops,
        vnet_hdr,
        index,
        mtu,
        ring,
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
            .map(|fd| uplink::take_drops(fd.as_fd()).map_or(0, u64::from))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_slot_holds_a_frame_of_the_mtu_with_its_headers() {
        assert_eq!(ring_slot(1500), 2048);
        assert_eq!(ring_slot(0), 2048);
        // 9000 + Ethernet and VLAN headers + the ring's, to 16 bytes.
        assert_eq!(ring_slot(9000), 9120);
        assert_eq!(ring_slot(u32::MAX), 1 << 16);
    }
}
