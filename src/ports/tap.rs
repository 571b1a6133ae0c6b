//! TAP ports: created inside a container's namespace, or attached by name.
//!
//! Creation happens on a helper thread inside the target namespace (see the
//! parent module for why): there `/dev/net/tun` is opened and `TUNSETIFF`
//! run, so the device is born in the container, with the name the
//! container expects, and no `ip link set netns` move (and no name clash in
//! the daemon's namespace) is involved. A netlink socket opened on the same
//! thread then configures it. If any step fails, the tun fd, which is its
//! only reference, is dropped and the kernel deletes the device.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};

use super::netlink::{self, LinkInfo, Rtnl};
use super::{netns, PortError, Tap, TapSpec};
use crate::sys::tun::{self, TunFlags};
use crate::wire::MacAddr;

/// Checks a Linux interface name the way the kernel's `dev_valid_name`
/// does: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace. (`%d`
/// is allowed: the kernel replaces it with a free number.)
pub fn validate_ifname(name: &str) -> Result<(), PortError> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 15 {
        Some("it is longer than 15 bytes (IFNAMSIZ - 1)")
    } else if name == "." || name == ".." {
        Some("it is . or ..")
    } else if name.contains('/') {
        Some("it contains '/'")
    } else if name.contains(':') {
        Some("it contains ':'")
    } else if name.chars().any(|c| c.is_whitespace()) {
        Some("it contains whitespace")
    } else if name.contains('\0') {
        Some("it contains NUL")
    } else {
        None
    };
    match why {
        Some(why) => Err(PortError::InvalidName {
            name: name.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

/// Six random bytes from the kernel's generator.
fn random_seed() -> io::Result<[u8; 6]> {
    let mut seed = [0u8; 6];
    File::open("/dev/urandom")?.read_exact(&mut seed)?;
    Ok(seed)
}

/// A locally administered unicast MAC from random bytes.
pub(super) fn random_mac(ifname: &str) -> Result<MacAddr, PortError> {
    random_seed()
        .map(MacAddr::local_from_seed)
        .map_err(PortError::configure(
            ifname,
            "generate a MAC from /dev/urandom",
            &"",
        ))
}

/// Creates a TAP in `spec.netns`, configured and up.
///
/// In the namespace: the device `spec.ifname` (which must not exist yet)
/// gets its MAC (given or random locally administered), MTU, addresses,
/// link up, `lo` up, and a default route via `spec.gateway`. On error
/// nothing is left behind.
pub fn create_tap(spec: &TapSpec) -> Result<Tap, PortError> {
    create(spec, false)
}

/// [`create_tap`], then `TUNSETPERSIST`: the device outlives the daemon's
/// fds and can be attached again with [`reattach_tap`] after a restart.
/// Removing it takes clearing the flag before the last fd closes: hand one
/// of its fds to a [`PersistGuard`](super::PersistGuard). The flag is set
/// last, so a failure before it still leaves nothing behind.
pub fn create_persistent_tap(spec: &TapSpec) -> Result<Tap, PortError> {
    create(spec, true)
}

fn create(spec: &TapSpec, persist: bool) -> Result<Tap, PortError> {
    validate_ifname(&spec.ifname)?;
    if netns::is_own(&spec.netns)? {
        return Err(PortError::OwnNamespace {
            netns: spec.netns.to_string(),
        });
    }
    let mac = match spec.mac {
        Some(m) => m,
        None => random_mac(&spec.ifname)?,
    };
    netns::run_in(&spec.netns, || create_here(spec, mac, persist))?
}

/// The part of [`create_tap`] that runs inside the target namespace.
fn create_here(spec: &TapSpec, mac: MacAddr, persist: bool) -> Result<Tap, PortError> {
    let fd = tun::open_tun().map_err(PortError::OpenTun)?;
    let mut flags = TunFlags::TAP | TunFlags::NO_PI;
    if spec.vnet_hdr {
        flags = flags | TunFlags::VNET_HDR;
    }
    if spec.queues > 1 {
        flags = flags | TunFlags::MULTI_QUEUE;
    }
    let ifname =
        tun::set_iff(fd.as_fd(), &spec.ifname, flags | TunFlags::TUN_EXCL).map_err(|e| {
            PortError::CreateTap {
                name: spec.ifname.clone(),
                source: explain_create(e),
            }
        })?;
    // From here on `fd` is the device's only reference: returning an error
    // drops it, and the kernel deletes the device.
    let setup = |q: &OwnedFd| -> Result<(), PortError> {
        if spec.vnet_hdr {
            enable_offloads(q.as_fd()).map_err(PortError::configure(
                &ifname,
                "enable offloads",
                &"",
            ))?;
        }
        Ok(())
    };
    setup(&fd)?;
    // The other queues, opened here, in the container's namespace, where
    // TUNSETIFF finds the device by name.
    let mut extra_queues = Vec::new();
    for _ in 1..spec.queues {
        let q = tun::open_tun().map_err(PortError::OpenTun)?;
        tun::set_iff(q.as_fd(), &ifname, flags).map_err(PortError::configure(
            &ifname,
            "open another queue",
            &"",
        ))?;
        setup(&q)?;
        extra_queues.push(q);
    }
    let link = configure(&ifname, spec, mac)?;
    if persist {
        tun::set_persist(fd.as_fd(), true).map_err(PortError::configure(
            &ifname,
            "make it persistent",
            &"",
        ))?;
    }
    Ok(Tap {
        fd,
        mac: link.mac.unwrap_or(mac),
        mtu: link.mtu,
        ifindex: link.index,
        ifname,
        created: true,
        vnet_hdr: spec.vnet_hdr,
        extra_queues,
    })
}

/// Length of the `virtio_net_hdr` on vnet-header TAP fds (the v1 layout,
/// with `num_buffers`, which the kernel leaves zero).
pub const VNET_HDR_LEN: usize = 12;

/// Offloads asked of every vnet-header TAP: checksum-partial frames, TCP
/// segmentation (v4, v6, ECN) and UDP segmentation. Without USO (kernels
/// before 6.2 refuse it with `EINVAL`) the rest still applies.
const OFFLOADS: u32 = tun::offload::CSUM
    | tun::offload::TSO4
    | tun::offload::TSO6
    | tun::offload::TSO_ECN
    | tun::offload::USO4
    | tun::offload::USO6;

/// Sets a [`TunFlags::VNET_HDR`] fd's header length to [`VNET_HDR_LEN`]
/// and turns on the offloads vxswitch handles ([`OFFLOADS`]).
pub fn enable_offloads(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    tun::set_vnet_hdr_len(fd, VNET_HDR_LEN as i32)?;
    match tun::set_offload(fd, OFFLOADS) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tun::set_offload(fd, OFFLOADS & !(tun::offload::USO4 | tun::offload::USO6))
        }
        r => r,
    }
}

fn explain_create(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        // IFF_TUN_EXCL: the name is taken by some device, TAP or not.
        Some(libc::EBUSY) => io::Error::new(
            io::ErrorKind::AlreadyExists,
            "an interface with this name already exists in the namespace",
        ),
        Some(libc::EPERM) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            "creating a TAP needs CAP_NET_ADMIN over the namespace",
        ),
        _ => e,
    }
}

/// Configures the fresh TAP `ifname` in the calling thread's namespace and
/// returns its final state.
pub(super) fn configure(ifname: &str, spec: &TapSpec, mac: MacAddr) -> Result<LinkInfo, PortError> {
    let cfg = |step, detail: &dyn std::fmt::Display| PortError::configure(ifname, step, detail);
    let mut nl = Rtnl::open().map_err(cfg("open a netlink socket", &""))?;
    let index = nl
        .link_by_name(ifname)
        .and_then(|l| l.ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV)))
        .map_err(cfg("look up its interface index", &""))?
        .index;
    nl.ack(netlink::set_link_mac(index, mac))
        .map_err(cfg("set MAC", &mac))?;
    if let Some(mtu) = spec.mtu {
        nl.ack(netlink::set_link_mtu(index, mtu))
            .map_err(cfg("set MTU", &mtu))?;
    }
    for &net in &spec.addrs {
        nl.ack(netlink::new_addr(index, net))
            .map_err(cfg("add address", &net))?;
    }
    nl.ack(netlink::set_link_up(index))
        .map_err(cfg("set link up", &""))?;
    // Containers expect a working loopback; a fresh namespace has it down.
    match nl.link_by_name("lo") {
        Ok(Some(lo)) if !lo.is_up() => nl
            .ack(netlink::set_link_up(lo.index))
            .map_err(cfg("bring up lo", &""))?,
        Ok(_) => {}
        Err(e) => return Err(cfg("look up lo", &"")(e)),
    }
    if let Some(gw) = spec.gateway {
        nl.ack(netlink::new_default_route(index, gw))
            .map_err(cfg("add default route via", &gw))?;
    }
    nl.link_by_index(index)
        .and_then(|l| l.ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV)))
        .map_err(cfg("read back its state", &""))
}

/// Attaches to an existing persistent TAP named `name` in the daemon's
/// namespace (strictly: the calling thread's), without changing its
/// configuration. Works without CAP_NET_ADMIN when the TAP is owned by the
/// daemon's uid (`ip tuntap add dev NAME mode tap user UID`).
///
/// Never creates a device: a missing name, a non-TAP, or a TAP that
/// vanishes while attaching is an error.
pub fn attach_existing(name: &str, vnet_hdr: bool) -> Result<Tap, PortError> {
    validate_ifname(name)?;
    let fail = |msg: String, kind: io::ErrorKind| PortError::AttachTap {
        name: name.to_string(),
        source: io::Error::new(kind, msg),
    };
    let hint = format!("create it with `ip tuntap add dev {name} mode tap user $USER`");
    let os = |source| PortError::AttachTap {
        name: name.to_string(),
        source,
    };
    let mut nl = Rtnl::open().map_err(os)?;
    let link = nl.link_by_name(name).map_err(os)?.ok_or_else(|| {
        fail(
            format!("no TAP named {name} exists; {hint}"),
            io::ErrorKind::NotFound,
        )
    })?;
    let tun = match (link.kind.as_deref(), link.tun) {
        (Some("tun"), Some(t)) if t.tap => t,
        (Some("tun"), _) => {
            return Err(fail(
                format!("{name} is a TUN (layer 3) device, not a TAP; {hint}"),
                io::ErrorKind::InvalidInput,
            ))
        }
        (kind, _) => {
            let kind = kind.unwrap_or("physical or loopback");
            return Err(fail(
                format!("{name} is a {kind} device, not a TAP; {hint}"),
                io::ErrorKind::InvalidInput,
            ));
        }
    };
    if tun.multi_queue {
        return Err(fail(
            format!("{name} is a multi-queue TAP; vxswitch attaches single-queue TAPs for now"),
            io::ErrorKind::Unsupported,
        ));
    }
    let fd = tun::open_tun().map_err(PortError::OpenTun)?;
    let mut flags = TunFlags::TAP | TunFlags::NO_PI;
    if vnet_hdr {
        flags = flags | TunFlags::VNET_HDR;
    }
    tun::set_iff(fd.as_fd(), name, flags)
        .map_err(|e| explain_attach(name, tun.owner, e))
        .map_err(os)?;
    check_attached(name, &fd).map_err(os)?;
    if vnet_hdr {
        enable_offloads(fd.as_fd()).map_err(os)?;
    }
    let mac = link.mac.ok_or_else(|| {
        fail(
            format!("{name} reports no MAC address"),
            io::ErrorKind::InvalidData,
        )
    })?;
    Ok(Tap {
        fd,
        ifname: link.name,
        ifindex: link.index,
        mac,
        mtu: link.mtu,
        created: false,
        vnet_hdr,
        extra_queues: Vec::new(),
    })
}

/// Opens again a persistent TAP that [`create_persistent_tap`] made
/// (before a daemon restart): `ifname` inside `netns`, with the flags it
/// was created with, as it is now (MAC, MTU and addresses untouched).
///
/// `queues` is what the dataplane would like (one per worker): a
/// multi-queue TAP gets that many, whatever it had before; a TAP created
/// single-queue (the daemon had one worker) stays single-queue and gets
/// one. Offloads follow `vnet_hdr`; without it they are switched off, so
/// the container's stack stops handing over super-frames.
pub fn reattach_tap(
    netns: &super::Netns,
    ifname: &str,
    vnet_hdr: bool,
    queues: usize,
) -> Result<Tap, PortError> {
    validate_ifname(ifname)?;
    netns::run_in(netns, || reattach_here(ifname, vnet_hdr, queues))?
}

fn reattach_here(name: &str, vnet_hdr: bool, queues: usize) -> Result<Tap, PortError> {
    let fail = |msg: String, kind: io::ErrorKind| PortError::AttachTap {
        name: name.to_string(),
        source: io::Error::new(kind, msg),
    };
    let os = |source| PortError::AttachTap {
        name: name.to_string(),
        source,
    };
    let mut nl = Rtnl::open().map_err(os)?;
    let link = nl
        .link_by_name(name)
        .map_err(os)?
        .ok_or_else(|| fail("it no longer exists".into(), io::ErrorKind::NotFound))?;
    let tun = match (link.kind.as_deref(), link.tun) {
        (Some("tun"), Some(t)) if t.tap && t.persist => t,
        (Some("tun"), Some(t)) if t.tap => {
            return Err(fail(
                "it is a TAP that is not persistent (not left by vxswitch)".into(),
                io::ErrorKind::InvalidInput,
            ))
        }
        (kind, _) => {
            return Err(fail(
                format!(
                    "it is a {} device now, not the TAP vxswitch left",
                    kind.unwrap_or("physical or loopback")
                ),
                io::ErrorKind::InvalidInput,
            ))
        }
    };
    let mut flags = TunFlags::TAP | TunFlags::NO_PI;
    if vnet_hdr {
        flags = flags | TunFlags::VNET_HDR;
    }
    let queues = if tun.multi_queue {
        flags = flags | TunFlags::MULTI_QUEUE;
        queues.max(1)
    } else {
        1
    };
    let mut fds = Vec::with_capacity(queues);
    for _ in 0..queues {
        let q = tun::open_tun().map_err(PortError::OpenTun)?;
        tun::set_iff(q.as_fd(), name, flags)
            .map_err(|e| explain_attach(name, tun.owner, e))
            .map_err(os)?;
        check_attached(name, &q).map_err(os)?;
        let offloads = if vnet_hdr {
            enable_offloads(q.as_fd())
        } else {
            tun::set_offload(q.as_fd(), 0)
        };
        offloads.map_err(PortError::configure(name, "set offloads", &""))?;
        fds.push(q);
    }
    let fd = fds.remove(0);
    let mac = link.mac.ok_or_else(|| {
        fail(
            "it reports no MAC address".into(),
            io::ErrorKind::InvalidData,
        )
    })?;
    Ok(Tap {
        fd,
        ifname: link.name,
        ifindex: link.index,
        mac,
        mtu: link.mtu,
        created: true,
        vnet_hdr,
        extra_queues: fds,
    })
}

/// The name the TAP behind `fd` has now: differs from the one it was
/// created with once someone renamed it (Docker moves a TAP into the
/// container and renames it `eth0`).
pub fn tap_name(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<String> {
    tun::get_iff(fd).map(|(name, _)| name)
}

/// Whether `netns` holds a persistent TAP named `name` with MAC `mac`:
/// how a TAP that was moved to another namespace is recognised.
pub fn has_persistent_tap(netns: &super::Netns, name: &str, mac: MacAddr) -> bool {
    if validate_ifname(name).is_err() {
        return false;
    }
    let found = netns::run_in(netns, || {
        let link = Rtnl::open().ok()?.link_by_name(name).ok()??;
        let tun = link.tun?;
        Some(link.kind.as_deref() == Some("tun") && tun.tap && tun.persist && link.mac == Some(mac))
    });
    matches!(found, Ok(Some(true)))
}

fn explain_attach(name: &str, owner: Option<u32>, e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::EPERM) => {
            let owner = owner.map_or("no user".to_string(), |u| format!("uid {u}"));
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "permission denied: {name} is owned by {owner}; recreate it with \
                     `ip tuntap add dev {name} mode tap user $USER` or run as root"
                ),
            )
        }
        Some(libc::EBUSY) => io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!(
                "{name} is already attached by another process (a single-queue TAP takes one fd)"
            ),
        ),
        Some(libc::EINVAL) => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{name} does not accept IFF_TAP|IFF_NO_PI (is it a TUN or multi-queue device?)"
            ),
        ),
        _ => e,
    }
}

/// After `TUNSETIFF`: the fd must be on a persistent TAP. If the device was
/// deleted between the lookup and the ioctl, the ioctl created a new,
/// non-persistent one (as root); dropping `fd` on this error deletes it.
fn check_attached(name: &str, fd: &OwnedFd) -> io::Result<()> {
    let (_, flags) = tun::get_iff(fd.as_fd())?;
    if !flags.contains(TunFlags::TAP) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name} is not a TAP"),
        ));
    }
    if !flags.contains(TunFlags::PERSIST) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{name} disappeared while attaching"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernel_rules() {
        for ok in ["eth0", "e", "fifteen-bytes-x", "tap%d", "veth-a.b_c"] {
            assert!(validate_ifname(ok).is_ok(), "{ok:?}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("sixteen-bytes-xx", "longer than 15"),
            ("a/b", "'/'"),
            ("a:b", "':'"),
            ("a b", "whitespace"),
            ("a\tb", "whitespace"),
            (".", ". or .."),
            ("..", ". or .."),
            ("a\0", "NUL"),
        ] {
            let e = validate_ifname(bad).unwrap_err();
            assert!(matches!(e, PortError::InvalidName { .. }), "{bad:?}");
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn create_rejects_bad_names_before_touching_the_system() {
        let spec = TapSpec {
            netns: super::super::Netns::Path("/nonexistent".into()),
            ifname: "way-too-long-name".into(),
            mac: None,
            mtu: None,
            addrs: vec![],
            gateway: None,
            vnet_hdr: false,
            queues: 1,
        };
        assert!(matches!(
            create_tap(&spec),
            Err(PortError::InvalidName { .. })
        ));
        assert!(matches!(
            attach_existing("a:b", false),
            Err(PortError::InvalidName { .. })
        ));
    }

    #[test]
    fn random_macs_are_local_unicast_and_differ() {
        let a = random_mac("x").unwrap();
        let b = random_mac("x").unwrap();
        assert!(a.is_local() && a.is_valid_source(), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn create_errors_are_explained() {
        let e = explain_create(io::Error::from_raw_os_error(libc::EBUSY));
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("already exists"));
        let e = explain_attach(
            "tap0",
            Some(1000),
            io::Error::from_raw_os_error(libc::EPERM),
        );
        assert!(e.to_string().contains("uid 1000"), "{e}");
        assert!(e.to_string().contains("ip tuntap add dev tap0"), "{e}");
        let e = explain_attach("tap0", None, io::Error::from_raw_os_error(libc::EBUSY));
        assert!(e.to_string().contains("already attached"), "{e}");
        let e = explain_attach("tap0", None, io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
    }
}
