//! veth ports: a veth pair whose peer is the container's interface (named,
//! addressed and routed exactly as a TAP port's, by the same code) and
//! whose host end stays in the daemon's namespace, driven by the switch
//! through a packet socket with the TAP ports' 12-byte `virtio_net_hdr`
//! ([`crate::sys::pktport`]).
//!
//! The pair is made with one `RTM_NEWLINK` from the daemon's namespace
//! that puts the peer straight into the container's (`IFLA_NET_NS_FD`),
//! so the container's name (`eth0`) never clashes with anything in the
//! daemon's namespace. The host end is called after the port
//! ([`host_name`], `vxv-PORT`, or a hash of the port's name when that
//! does not fit IFNAMSIZ) and is the switch's alone: no addresses,
//! `IFF_NOARP`, IPv6 disabled before it comes up, so the host stack never
//! answers on it nor sends anything through it; the packet socket ignores
//! outgoing frames and those addressed to the host end's own MAC.
//!
//! Lifetimes: the packet socket neither keeps the veth alive nor deletes
//! it when closed. The port's [`PersistGuard::veth`] deletes the pair
//! when the port goes; a container namespace that goes away takes the
//! peer, and with it the host end (the control plane sees the host end
//! gone, [`host_alive`]). A daemon with a state directory keeps its veths
//! when it stops and finds them again by name ([`reattach_veth`]).
//!
//! Super-frames: a veth has TSO/GSO on by default, and hands the host
//! end's packet socket the container's unsegmented 64 KiB frames with
//! their GSO type in the vnet header; frames the switch writes with a GSO
//! type reach the container whole.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use super::netlink::{self, Rtnl};
use super::tap::{configure, random_mac, validate_ifname};
use super::{netns, Netns, PersistGuard, PortError, TapSpec};
use crate::sys::{ethtool, pktport};
use crate::wire::MacAddr;

/// Host ends of veth ports are called so, then the port's name, unless
/// the daemon says otherwise (`daemon --veth-prefix`).
pub const HOST_PREFIX: &str = "vxv-";

/// The longest prefix `daemon --veth-prefix` takes: 7 of the kernel's 15
/// bytes stay for the port's name, or for a hash of it.
pub const MAX_PREFIX: usize = 8;

/// Checks a `daemon --veth-prefix`: 1 to [`MAX_PREFIX`] bytes that may
/// start an interface name. The error says what is wrong and what to do.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "veth prefix {prefix:?} {why}: give 1 to {MAX_PREFIX} letters, digits, '-', '_' or \
             '.' (e.g. vxa-), different for each daemon sharing a namespace"
        ))
    };
    if prefix.is_empty() || prefix.len() > MAX_PREFIX {
        return bad(&format!("is {} bytes long", prefix.len()));
    }
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        || prefix == "."
    {
        return bad("has a character an interface name may not have");
    }
    Ok(())
}

/// The name of port `port`'s host end: `PREFIX` then the port's name when
/// that is a valid interface name, else `PREFIX` and hex digits of a hash
/// of the name up to the kernel's 15 bytes (stable across restarts, so a
/// daemon finds its veths again). `prefix` is [`check_prefix`]ed.
pub fn host_name(prefix: &str, port: &str) -> String {
    let plain = format!("{prefix}{port}");
    if validate_ifname(&plain).is_ok() && !plain.contains('%') {
        return plain;
    }
    // FNV-1a, 64 bits: stable across builds, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in port.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let digits = 15usize.saturating_sub(prefix.len()).clamp(1, 16);
    let shift = 64 - 4 * digits as u32;
    format!("{prefix}{:0digits$x}", h.checked_shr(shift).unwrap_or(h))
}

/// An open veth port.
#[derive(Debug)]
pub struct Veth {
    /// The host end's packet socket (non-blocking).
    pub fd: OwnedFd,
    /// Further sockets on the host end, one per further dataplane worker,
    /// in the first one's fanout group.
    pub extra_queues: Vec<OwnedFd>,
    /// Deletes the pair when dropped (see the module's text).
    pub guard: PersistGuard,
    /// The host end, in the daemon's namespace.
    pub host: String,
    pub host_index: u32,
    /// The container's end as the kernel has it.
    pub ifname: String,
    pub mac: MacAddr,
    pub mtu: u32,
    /// Reads and writes carry the 12-byte `virtio_net_hdr`.
    pub vnet_hdr: bool,
}

fn cfg(ifname: &str, step: &'static str) -> impl FnOnce(io::Error) -> PortError {
    PortError::configure(ifname, step, &"")
}

/// Creates port `port`'s veth pair: the peer `spec.ifname` in
/// `spec.netns` configured as [`super::create_tap`] configures a TAP
/// (MAC, MTU, addresses, up, `lo` up, default route), the host end
/// [`host_name`]`(prefix, port)` up in the daemon's namespace (strictly: the
/// calling thread's), with `spec.queues` sockets for the dataplane that
/// read nothing until their filter is set ([`open_to_switch`]).
/// `persistent`: the pair survives a clean daemon stop (a state directory
/// is set). On error nothing is left behind.
pub fn create_veth(
    spec: &TapSpec,
    prefix: &str,
    port: &str,
    persistent: bool,
) -> Result<Veth, PortError> {
    validate_ifname(&spec.ifname)?;
    if spec.netns != Netns::Current && netns::is_own(&spec.netns)? {
        return Err(PortError::OwnNamespace {
            netns: spec.netns.to_string(),
        });
    }
    let host = host_name(prefix, port);
    validate_ifname(&host)?;
    let mac = match spec.mac {
        Some(m) => m,
        None => random_mac(&spec.ifname)?,
    };
    let mtu = spec.mtu.unwrap_or(1500);
    let ns_file = match spec.netns.path() {
        Some(p) => Some(netns::open_netns(&p).map_err(|source| PortError::Netns {
            netns: spec.netns.to_string(),
            source,
        })?),
        None => None,
    };
    let mut nl = Rtnl::open().map_err(cfg(&host, "open a netlink socket"))?;
    let req = netlink::new_veth(
        &host,
        &spec.ifname,
        mtu,
        ns_file.as_ref().map(AsRawFd::as_raw_fd),
    );
    nl.ack(req).map_err(|e| PortError::CreateVeth {
        name: format!("{host} (host end) / {} (container end)", spec.ifname),
        source: explain_create(&host, &spec.ifname, e),
    })?;
    drop(ns_file);
    let index = nl
        .link_by_name(&host)
        .and_then(|l| l.ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV)))
        .map_err(cfg(&host, "look up its interface index"))?
        .index;
    // From here on, an error drops the guard, which deletes the pair.
    let guard = PersistGuard::veth(index, host.clone(), persistent, port);
    disable_ipv6(&host).map_err(cfg(&host, "disable IPv6 (sysctl disable_ipv6)"))?;
    nl.ack(netlink::set_link_up(index))
        .map_err(cfg(&host, "set link up"))?;
    let link = netns::run_in(&spec.netns, || {
        let link = configure(&spec.ifname, spec, mac)?;
        if !spec.vnet_hdr {
            // `--no-offload`: the container sends plain frames, and the
            // sockets carry no vnet header (the switch cuts and completes
            // what it hands this port).
            ethtool::offloads_off(&link.name).map_err(cfg(
                &link.name,
                "turn offloads off (as 'ethtool -K IF tso off gso off tx off')",
            ))?;
        }
        Ok::<_, PortError>(link)
    })??;
    let (fd, extra_queues, vnet_hdr) = open_sockets(&host, index, spec.queues, spec.vnet_hdr)?;
    Ok(Veth {
        fd,
        extra_queues,
        guard,
        host,
        host_index: index,
        ifname: link.name,
        mac: link.mac.unwrap_or(mac),
        mtu: link.mtu,
        vnet_hdr,
    })
}

/// Opens again, after a daemon restart, the host end `host` of port
/// `port`'s veth, as it is (the container's end is not touched). `vnet`:
/// the port has offloads (the sockets carry the vnet header).
pub fn reattach_veth(
    port: &str,
    host: &str,
    queues: usize,
    vnet: bool,
) -> Result<(OwnedFd, Vec<OwnedFd>, bool, PersistGuard, u32), PortError> {
    validate_ifname(host)?;
    let os = |source| PortError::AttachVeth {
        name: host.to_string(),
        source,
    };
    let mut nl = Rtnl::open().map_err(os)?;
    let link = nl.link_by_name(host).map_err(os)?.ok_or_else(|| {
        os(io::Error::new(
            io::ErrorKind::NotFound,
            "it no longer exists (its container's namespace went away, or someone deleted \
             either end?)",
        ))
    })?;
    if link.kind.as_deref() != Some("veth") {
        return Err(os(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "it is a {} device now, not the veth vxswitch left",
                link.kind.as_deref().unwrap_or("physical or loopback")
            ),
        )));
    }
    let guard = PersistGuard::veth(link.index, host, true, port);
    if !link.is_up() {
        nl.ack(netlink::set_link_up(link.index))
            .map_err(cfg(host, "set link up"))?;
    }
    let (fd, extra, vnet_hdr) = open_sockets(host, link.index, queues, vnet)?;
    Ok((fd, extra, vnet_hdr, guard, link.index))
}

/// Whether the host end `host` (index `index`) still exists in the
/// daemon's namespace. `None` when that cannot be told (netlink failed).
pub fn host_alive(index: u32, host: &str) -> Option<bool> {
    let mut nl = Rtnl::open().ok()?;
    let link = nl.link_by_index(index).ok()?;
    Some(link.is_some_and(|l| l.name == host))
}

/// Deletes the veth pair whose host end is `name` at `index`; one that is
/// already gone is no error.
pub(super) fn delete(index: u32, name: &str) -> io::Result<()> {
    let mut nl = Rtnl::open()?;
    match nl.link_by_index(index)? {
        Some(l) if l.name == name => {}
        _ => return Ok(()),
    }
    match nl.ack(netlink::del_link(index)) {
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
        r => r,
    }
}

/// Deletes the veth pair whose host end is `host` in the daemon's
/// namespace, if there is one (a port removed while the daemon was not
/// running it).
pub fn delete_by_name(host: &str) -> io::Result<()> {
    let mut nl = Rtnl::open()?;
    match nl.link_by_name(host)? {
        Some(l) if l.kind.as_deref() == Some("veth") => delete(l.index, host),
        _ => Ok(()),
    }
}

/// The dataplane's sockets on the host end: one per worker, in a fanout
/// group by flow hash (see [`pktport::open_group`]), each with a filter
/// that keeps nothing until [`open_to_switch`] or the fast path's socket
/// filter replaces it.
///
/// Why closed: a veth a restarted daemon finds again may still have the
/// fast path's tc program of the daemon before, which redirects known
/// unicast to its destination in the kernel. A packet socket sees every
/// frame before tc does; only the fast path's socket filter hides the
/// frames that program takes. Opened with the classic filter and given
/// the fast path's a moment later, the socket would queue those frames in
/// between, and the switch would forward them a second time (each one
/// duplicated to its container). Opened closed, the socket queues nothing
/// until the filter it keeps is in place; what arrives meanwhile takes
/// the fast path, or is lost as on a port not yet attached.
fn open_sockets(
    host: &str,
    index: u32,
    queues: usize,
    vnet: bool,
) -> Result<(OwnedFd, Vec<OwnedFd>, bool), PortError> {
    let mut all = pktport::open_group_as(index, &[pktport::drop_all()], false, queues, vnet)
        .map_err(cfg(host, "open the packet sockets"))?
        .into_iter();
    let first = all.next().ok_or_else(|| {
        cfg(host, "open the packet sockets")(io::Error::from_raw_os_error(libc::EINVAL))
    })?;
    let extra: Vec<OwnedFd> = all.map(|s| s.fd).collect();
    // A container's 802.1Q tags reach the switch as it sent them (the
    // kernel hands them beside the frame; the dataplane puts them back).
    std::iter::once(&first.fd)
        .chain(&extra)
        .try_for_each(|s| pktport::keep_vlan_tags(s.as_fd()))
        .map_err(cfg(host, "ask for VLAN tags (PACKET_AUXDATA)"))?;
    Ok((first.fd, extra, first.vnet_hdr))
}

/// Opens a veth port's sockets (from [`create_veth`] or [`reattach_veth`],
/// closed) to the switch: every frame but those for the host end itself
/// ([`pktport::not_for_host`]). For a port off the fast path; one on it
/// gets the fast path's socket filter instead.
pub fn open_to_switch(host: &str, sockets: &[&OwnedFd]) -> Result<(), PortError> {
    let filter = pktport::not_for_host();
    sockets
        .iter()
        .try_for_each(|s| pktport::set_filter(s.as_fd(), &filter))
        .map_err(cfg(host, "set the packet sockets' filter"))
}

/// A veth port's sockets on the eBPF fast path with a steering interface
/// (`ctl::fastpath`): they receive on the steering interface, to which
/// the fast path's tc program on the host end redirects what it does not
/// take, and send on the host end through a socket that receives nothing,
/// so that no socket of the switch sits in the host end's taps (which run
/// before tc, for every frame, the fast ones too).
#[derive(Debug)]
pub struct Steered {
    /// The first receiving socket, and one per further worker, in a
    /// fanout group, with the switch's classic filter.
    pub fd: OwnedFd,
    pub extra_queues: Vec<OwnedFd>,
    /// Bound to the host end for no protocol.
    pub tx: OwnedFd,
}

/// Opens [`Steered`] sockets for the port whose host end is `host`
/// (`index`): `queues` receiving on the steering interface `steer`, the
/// `virtio_net_hdr` on all of them if `vnet` (as the port's sockets on the
/// host end have it: the same frames, the same way).
pub fn open_steered(
    host: &str,
    index: u32,
    steer: u32,
    queues: usize,
    vnet: bool,
) -> Result<Steered, PortError> {
    let mut all = pktport::open_group_as(steer, &pktport::not_for_host(), false, queues, vnet)
        .map_err(cfg(
            host,
            "open the packet sockets on its steering interface",
        ))?
        .into_iter();
    let first = all.next().ok_or_else(|| {
        cfg(host, "open the packet sockets on its steering interface")(
            io::Error::from_raw_os_error(libc::EINVAL),
        )
    })?;
    if first.vnet_hdr != vnet {
        return Err(cfg(
            host,
            "open the packet sockets on its steering interface",
        )(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel refused PACKET_VNET_HDR there",
        )));
    }
    let extra: Vec<OwnedFd> = all.map(|s| s.fd).collect();
    std::iter::once(&first.fd)
        .chain(&extra)
        .try_for_each(|s| pktport::keep_vlan_tags(s.as_fd()))
        .map_err(cfg(host, "ask for VLAN tags (PACKET_AUXDATA)"))?;
    let tx = crate::sys::uplink::open_tx(index, vnet, false)
        .map_err(cfg(host, "open its sending socket"))?;
    Ok(Steered {
        fd: first.fd,
        extra_queues: extra,
        tx,
    })
}

/// Turns IPv6 off on `ifname` before it comes up, so the host stack sends
/// no router solicitation, MLD report or DAD probe through it. A kernel
/// without IPv6 has no such file, and nothing to turn off.
fn disable_ipv6(ifname: &str) -> io::Result<()> {
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    match std::fs::write(path, b"1") {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn explain_create(host: &str, peer: &str, e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::EEXIST) => io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "an interface named {host} already exists in the daemon's namespace (left by \
                 an earlier daemon? delete it with 'ip link del {host}'; another daemon's \
                 port of the same name? start each daemon sharing a namespace with its own \
                 --veth-prefix), or one named {peer} in the container's"
            ),
        ),
        Some(libc::EPERM) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            "creating a veth needs CAP_NET_ADMIN over both namespaces",
        ),
        Some(libc::EOPNOTSUPP) => io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel has no veth driver: load it with 'modprobe veth'",
        ),
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_stable_valid_and_distinct() {
        let host_name = |port| host_name(HOST_PREFIX, port);
        assert_eq!(host_name("c1"), "vxv-c1");
        assert_eq!(host_name("abcdefghijk"), "vxv-abcdefghijk");
        let long = host_name("a-much-longer-port-name");
        assert_eq!(long, host_name("a-much-longer-port-name"));
        // The hash the names had before prefixes could change: a restart
        // after an upgrade finds old veths whose state file lacks the name.
        assert_eq!(long, "vxv-de4aa8086ca", "{long}");
        assert!(long.starts_with(HOST_PREFIX) && long.len() == 15, "{long}");
        assert!(validate_ifname(&long).is_ok());
        assert_ne!(long, host_name("a-much-longer-port-namf"));
        // Characters an interface name may not have are hashed away.
        assert!(validate_ifname(&host_name("a:b")).is_ok());
        assert_ne!(host_name("x%d"), "vxv-x%d");
    }

    #[test]
    fn a_daemon_prefix_names_its_host_ends_and_is_checked() {
        assert_eq!(super::host_name("vxa-", "c0"), "vxa-c0");
        assert_ne!(
            super::host_name("vxa-", "c0"),
            super::host_name("vxb-", "c0")
        );
        let long = super::host_name("longpfx-", "a-much-longer-port-name");
        assert!(long.starts_with("longpfx-") && long.len() == 15, "{long}");
        assert!(validate_ifname(&long).is_ok());
        for ok in ["vxa-", "v", "sw2_", "abcdefgh"] {
            assert_eq!(check_prefix(ok), Ok(()), "{ok}");
        }
        for bad in ["", "abcdefghi", "vx/", "vx a", "vx:", "vx%d", "."] {
            let e = check_prefix(bad).unwrap_err();
            assert!(e.contains("veth prefix") && e.contains("1 to 8"), "{e}");
        }
    }
}
