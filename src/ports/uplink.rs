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
//!
//! On the eBPF fast path an uplink has a **steering interface**
//! ([`create_steer`]): a `dummy` (else an `ifb`, else a veth whose peer
//! stays down) in the daemon's namespace, with the uplink's MAC and MTU,
//! no address, IPv6 off. The tc program on the uplink clones to its
//! ingress the frames it does not send fast, and the switch's receiving
//! sockets are bound to it (their frames as before, with the same
//! `pkt_type`, since the MAC is the uplink's); the switch sends on the
//! uplink through a socket bound for no protocol. So no socket of the
//! switch is in the uplink's taps, and a frame that goes fast meets none:
//! no tap, no fanout hash, no second decision in a socket filter.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::link::link_info;
use super::netlink::{self, Rtnl};
use super::{Netns, PortError};
pub use crate::sys::ring::RxGeometry;
use crate::sys::uplink;
pub use crate::sys::uplink::VlanMatch;
use crate::wire::MacAddr;

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
    pub mac: Option<MacAddr>,
}

/// The state of interface `ifname` in the daemon's namespace.
pub fn probe(ifname: &str) -> Result<Probe, PortError> {
    Ok(match link_info(&Netns::Current, ifname)? {
        None => Probe {
            state: LinkState::Missing,
            index: None,
            mtu: 0,
            mac: None,
        },
        Some(l) => Probe {
            state: if l.flags & IFF_UP != 0 && l.flags & IFF_LOWER_UP != 0 {
                LinkState::Up
            } else {
                LinkState::Down
            },
            index: Some(l.index),
            mtu: l.mtu,
            mac: l.mac,
        },
    })
}

/// An uplink's sockets, ready for the engine.
#[derive(Debug)]
pub struct OpenedUplink {
    pub fd: OwnedFd,
    /// One more socket per further worker, in `fd`'s fanout group.
    pub extra_queues: Vec<OwnedFd>,
    /// With a steering interface: the socket that sends on the uplink
    /// (`fd` and the others, on the steering interface, only receive).
    pub tx: Option<OwnedFd>,
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
/// dataplane worker) in a fanout group by flow hash. With `steer` (the
/// index of the uplink's steering interface) they are bound to that and
/// one more socket sends on the uplink ([`OpenedUplink::tx`]).
pub fn open(
    ifname: &str,
    index: u32,
    mtu: u32,
    vlan: Option<u16>,
    queues: usize,
    rx: RxSpec,
    steer: Option<u32>,
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
    // Promiscuous through the receiving sockets, or the sending one.
    let (rx_index, promisc) = match steer {
        Some(s) => (s, false),
        None => (index, true),
    };
    let (first, extra_queues, vnet_hdr, ring) = if rx.ring {
        let slot = ring_slot(mtu);
        let slots = u32::try_from(rx.buffer / slot as usize).unwrap_or(u32::MAX);
        let mut all = uplink::open_ring_group(rx_index, m, queues, slot, slots, rcvbuf, promisc)
            .map_err(fail("open the uplink's packet sockets with receive rings"))?
            .into_iter();
        let first = all.next().ok_or_else(|| {
            fail("open the uplink's packet sockets")(io::Error::from_raw_os_error(libc::EINVAL))
        })?;
        let (vnet, ring) = (first.vnet_hdr, first.ring);
        (first.fd, all.map(|s| s.fd).collect(), vnet, Some(ring))
    } else {
        let mut all = uplink::open_group(rx_index, m, queues, promisc)
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
    let tx = match steer {
        Some(_) => Some(
            uplink::open_tx(index, vnet_hdr, true)
                .map_err(fail("open the uplink's sending socket"))?,
        ),
        None => None,
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
        tx,
        drops,
        vnet_hdr,
        index,
        mtu,
        ring,
    })
}

/// An uplink's steering interface (see the module's text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Steer {
    pub name: String,
    pub index: u32,
    /// `dummy`, `ifb` or `veth`: the first this kernel has.
    pub kind: &'static str,
    /// What it was given of the uplink's, to follow changes.
    pub mtu: u32,
    pub mac: Option<MacAddr>,
}

/// The prefix of a daemon's steering interfaces' names: `vxs` and four hex
/// digits of `tag` (the daemon's, from its control socket and namespace),
/// so a daemon removes its own that an earlier run left, and no other's.
pub fn steer_prefix(tag: u16) -> String {
    format!("vxs{tag:04x}-")
}

/// The steering interface's name for the uplink of index `uplink`
/// (`vxs1a2b-7`, within `IFNAMSIZ`).
pub fn steer_name(tag: u16, uplink: u32) -> String {
    let n = format!("{}{uplink:x}", steer_prefix(tag));
    if n.len() <= 15 {
        n
    } else {
        format!("vxs{tag:04x}{uplink:x}")
    }
}

/// The down peer of a steering interface that is a veth.
fn steer_peer(name: &str) -> String {
    name.replacen("vxs", "vxp", 1)
}

/// Creates the steering interface `name` (one of that name, left by an
/// earlier run, is removed first) with `mtu` and `mac`, IPv6 off, no
/// address, up. Needs `CAP_NET_ADMIN`.
pub fn create_steer(name: &str, mtu: u32, mac: Option<MacAddr>) -> Result<Steer, PortError> {
    let fail = |step| {
        let ifname = name.to_string();
        move |source| PortError::Configure {
            ifname,
            step,
            detail: String::new(),
            source,
        }
    };
    let mut nl = Rtnl::open().map_err(fail("open a netlink socket"))?;
    if let Some(old) = nl
        .link_by_name(name)
        .map_err(fail("look for the steering interface"))?
    {
        delete_link(&mut nl, old.index).map_err(fail("remove an earlier steering interface"))?;
    }
    let mut kind = None;
    for k in ["dummy", "ifb", "veth"] {
        let req = if k == "veth" {
            netlink::new_veth(name, &steer_peer(name), mtu, None)
        } else {
            netlink::new_link_of_kind(name, k, mtu)
        };
        match nl.ack(req) {
            Ok(()) => {
                kind = Some(k);
                break;
            }
            // A kind this kernel does not have: the next.
            Err(e) if e.kind() == io::ErrorKind::Unsupported => continue,
            Err(e) => return Err(fail("create the steering interface")(e)),
        }
    }
    let kind = kind.ok_or_else(|| {
        fail("create the steering interface (no dummy, ifb or veth in this kernel)")(
            io::Error::from_raw_os_error(libc::EOPNOTSUPP),
        )
    })?;
    let link = nl
        .link_by_name(name)
        .map_err(fail("look at the steering interface"))?
        .ok_or_else(|| {
            fail("look at the steering interface")(io::Error::from_raw_os_error(libc::ENODEV))
        })?;
    let r = (|| {
        // Before it is up: no link-local address, nothing sent on it. Where
        // /proc/sys is read-only (a container) it keeps one, harmlessly:
        // what it would send is dropped by its kind (a dummy, an ifb, a
        // veth whose peer is down), and what reaches it goes no further
        // than the switch's sockets (`fp_steer_in`).
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        if let Some(mac) = mac {
            set_mac(&mut nl, link.index, mac)?;
        }
        nl.ack(netlink::set_link_up(link.index))
    })();
    if let Err(e) = r {
        let _ = delete_link(&mut nl, link.index);
        return Err(fail("set up the steering interface")(e));
    }
    Ok(Steer {
        name: name.to_string(),
        index: link.index,
        kind,
        mtu,
        mac,
    })
}

/// Gives the steering interface the uplink's new `mtu` and `mac`.
pub fn follow_steer(s: &mut Steer, mtu: u32, mac: Option<MacAddr>) -> io::Result<()> {
    let mut nl = Rtnl::open()?;
    if mtu != s.mtu {
        nl.ack(netlink::set_link_mtu(s.index, mtu))?;
        s.mtu = mtu;
    }
    if mac != s.mac {
        if let Some(m) = mac {
            set_mac(&mut nl, s.index, m)?;
        }
        s.mac = mac;
    }
    Ok(())
}

/// Removes the steering interface `s` (one already gone is fine).
pub fn delete_steer(s: &Steer) -> io::Result<()> {
    let mut nl = Rtnl::open()?;
    match nl.link_by_index(s.index)? {
        Some(l) if l.name == s.name => delete_link(&mut nl, s.index),
        _ => Ok(()),
    }
}

/// Removes the steering interfaces named with `prefix` ([`steer_prefix`]):
/// an earlier run of this daemon left them. Returns their names.
pub fn sweep_steers(prefix: &str) -> io::Result<Vec<String>> {
    let mut nl = Rtnl::open()?;
    let mut gone = Vec::new();
    for l in nl.links()? {
        if l.name.starts_with(prefix) {
            delete_link(&mut nl, l.index)?;
            gone.push(l.name);
        }
    }
    Ok(gone)
}

/// Gives the steering interface the uplink's MAC, where its kind allows
/// (an `ifb` keeps its own: then only a frame for that random MAC would be
/// judged otherwise, and the uplink's own frames are not steered anyway).
fn set_mac(nl: &mut Rtnl, index: u32, mac: MacAddr) -> io::Result<()> {
    match nl.ack(netlink::set_link_mac(index, mac)) {
        Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(()),
        r => r,
    }
}

fn delete_link(nl: &mut Rtnl, index: u32) -> io::Result<()> {
    match nl.ack(netlink::del_link(index)) {
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
        r => r,
    }
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
    fn steering_names_fit_ifnamsiz_and_carry_the_daemons_prefix() {
        assert_eq!(steer_name(0x1a2b, 7), "vxs1a2b-7");
        assert!(steer_name(0x1a2b, 7).starts_with(&steer_prefix(0x1a2b)));
        let long = steer_name(0xffff, u32::MAX);
        assert!(long.len() <= 15, "{long}");
        assert_eq!(steer_peer("vxs1a2b-7"), "vxp1a2b-7");
    }

    #[test]
    fn a_ring_slot_holds_a_frame_of_the_mtu_with_its_headers() {
        assert_eq!(ring_slot(1500), 2048);
        assert_eq!(ring_slot(0), 2048);
        // 9000 + Ethernet and VLAN headers + the ring's, to 16 bytes.
        assert_eq!(ring_slot(9000), 9120);
        assert_eq!(ring_slot(u32::MAX), 1 << 16);
    }
}
