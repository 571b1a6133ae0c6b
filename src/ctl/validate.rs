//! Checks of what requests carry — names, interface names, MTUs, VNIs,
//! MACs, subnets, gateways, port addresses, VTEP addresses, labels — and
//! the wording of the errors of the layers below (ports, the engine).
//!
//! Everything here is pure: a value in, the value as the daemon keeps it
//! or a [`CtlError`] out, whose message names the request's object, says
//! what is wrong and what to give instead.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::proto::{strip_os_error, CtlError, ErrorKind, GatewayPort, NetworkCreate};
use crate::ports;
use crate::switch::EngineError;
use crate::wire::vxlan::MAX_VNI;
use crate::wire::MacAddr;

/// MTU of a network's ports when neither the network nor the port says.
pub const DEFAULT_MTU: u32 = 1500;
/// Smallest MTU an IPv4 link may have (RFC 791).
pub const MIN_MTU: u32 = 68;
/// Largest MTU of an IP link (a 16-bit packet length): the bound of the
/// underlay MTU.
pub const MAX_MTU: u32 = 65_535;
/// Largest MTU a TAP accepts: 65535 minus its 14-byte Ethernet header (the
/// kernel's `max_mtu` of a tun/tap device). The bound of network and port MTUs.
pub const MAX_PORT_MTU: u32 = MAX_MTU - 14;
/// Interface names are at most 15 bytes (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;
/// Network and port names are labels; this keeps tables and messages sane.
const MAX_NAME: usize = 64;

/// Longest `container` label `port.set` accepts, in bytes.
pub const MAX_LABEL: usize = 256;

/// A `container` label for `port.set`: one line of printable text.
pub(super) fn check_label(port: &str, label: &str) -> Result<(), CtlError> {
    let why = if label.is_empty() {
        "is empty; clear it with null ('vxswitch port set NAME --no-container')".to_string()
    } else if label.len() > MAX_LABEL {
        format!("is {} bytes long; the limit is {MAX_LABEL}", label.len())
    } else if label.chars().any(char::is_control) {
        "contains a control character".to_string()
    } else {
        return Ok(());
    };
    Err(CtlError::invalid(format!(
        "port {port:?}: the container label {why}"
    )))
}

/// Checks `gateway_port` and `gateway_ifname` against the rest of the
/// request: a gateway port answers for the gateway address, so it needs one.
pub(super) fn check_gateway_port(
    what: &str,
    a: &NetworkCreate,
    gateway: Option<IpAddr>,
) -> Result<GatewayPort, CtlError> {
    let kind = a.gateway_port.unwrap_or_default();
    if kind == GatewayPort::None {
        if a.gateway_ifname.is_some() {
            return Err(CtlError::invalid(format!(
                "{what}: gateway_ifname (--gateway-ifname) names the host gateway port; add \
                 --gateway-port host"
            )));
        }
        return Ok(kind);
    }
    if gateway.is_none() {
        return Err(CtlError::invalid(format!(
            "{what}: gateway port {kind} answers for the gateway address, and the network \
             has none; add --subnet and --gateway (e.g. --subnet 10.88.0.0/24 --gateway \
             10.88.0.1)"
        )));
    }
    if kind == GatewayPort::Switch && a.gateway_ifname.is_some() {
        return Err(CtlError::invalid(format!(
            "{what}: gateway_ifname (--gateway-ifname) names the host gateway port; the \
             switch gateway has no interface"
        )));
    }
    Ok(kind)
}

pub(super) fn check_name(what: &str, name: &str) -> Result<(), CtlError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let ok_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok_chars && ok_start && name.len() <= MAX_NAME {
        Ok(())
    } else {
        Err(CtlError::invalid(format!(
            "invalid {what} name {name:?}: use 1 to {MAX_NAME} letters, digits, '.', '_' or \
             '-', starting with a letter or digit"
        )))
    }
}

pub(super) fn check_ifname(name: &str) -> Result<(), CtlError> {
    let bad = name.is_empty()
        || name.len() > MAX_IFNAME
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if bad {
        Err(CtlError::invalid(format!(
            "invalid interface name {name:?}: use 1 to {MAX_IFNAME} bytes without '/', ':' or \
             whitespace (a port in the daemon's own namespace is named after the port, so \
             keep such port names short or give --ifname)"
        )))
    } else {
        Ok(())
    }
}

pub(super) fn check_mtu(what: &str, mtu: u32) -> Result<u32, CtlError> {
    if (MIN_MTU..=MAX_PORT_MTU).contains(&mtu) {
        Ok(mtu)
    } else {
        Err(CtlError::invalid(format!(
            "{what}: MTU {mtu} is out of range; use {MIN_MTU} to {MAX_PORT_MTU}, the largest a \
             TAP accepts (1500 is usual)"
        )))
    }
}

/// A MAC a port may have or an FDB entry may point to: unicast and not
/// all-zero. The message says which rule the MAC breaks.
pub(super) fn check_unicast_mac(what: &str, mac: MacAddr) -> Result<(), CtlError> {
    if mac.is_zero() {
        return Err(CtlError::invalid(format!(
            "{what}: MAC {mac} is all-zero, which no interface may have; use a locally \
             administered unicast MAC such as 02:00:00:00:00:01"
        )));
    }
    if mac.is_multicast() {
        let what_kind = if mac == MacAddr::BROADCAST {
            "the broadcast address"
        } else {
            "a multicast address (its first octet is odd)"
        };
        return Err(CtlError::invalid(format!(
            "{what}: MAC {mac} is {what_kind}; use a unicast MAC, whose first octet is even, \
             such as 02:00:00:00:00:01"
        )));
    }
    Ok(())
}

pub(super) fn check_vni(what: &str, vni: u32) -> Result<(), CtlError> {
    if vni <= MAX_VNI {
        Ok(())
    } else {
        Err(CtlError::invalid(format!(
            "{what}: VNI {vni} is out of range; a VNI has 24 bits: use 0 to {MAX_VNI}"
        )))
    }
}

/// Parses a VTEP address: `198.18.0.2`, `198.18.0.2:4789`, `fd00::2`,
/// `[fd00::2]` or `[fd00::2]:4789`; `default_port` when none is given.
/// Returns whether a port was given. IPv4-mapped IPv6 becomes IPv4, as the
/// dataplane keys senders that way.
pub fn parse_vtep_addr(
    what: &str,
    raw: &str,
    default_port: u16,
) -> Result<(SocketAddr, bool), CtlError> {
    let bare = raw
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(raw);
    let (addr, port_given) = if let Ok(a) = raw.parse::<SocketAddr>() {
        (a, true)
    } else if let Ok(ip) = bare.parse::<IpAddr>() {
        (SocketAddr::new(ip, default_port), false)
    } else {
        return Err(CtlError::invalid(format!(
            "{what}: invalid VTEP address {raw:?}; write the remote host's underlay IP \
             address with an optional UDP port, like 198.18.0.2, 198.18.0.2:{default_port}, \
             fd00::2 or [fd00::2]:{default_port}"
        )));
    };
    let ip = match addr.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let addr = SocketAddr::new(ip, addr.port());
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Err(CtlError::invalid(format!(
            "{what}: VTEP address {ip} is not a unicast address; give the remote host's \
             underlay address (vxswitch sends to every VTEP by unicast; multicast groups are \
             not supported)"
        )));
    }
    if addr.port() == 0 {
        return Err(CtlError::invalid(format!(
            "{what}: VTEP port 0 is invalid; leave the port out to use the daemon's VXLAN \
             port {default_port}"
        )));
    }
    Ok((addr, port_given))
}

/// Refuses a VTEP that is this daemon's own listening socket: every frame
/// sent there would come straight back.
pub(super) fn check_not_self(
    what: &str,
    addr: SocketAddr,
    vxlan_port: u16,
) -> Result<(), CtlError> {
    if addr.ip().is_loopback() && addr.port() == vxlan_port {
        return Err(CtlError::invalid(format!(
            "{what}: {addr} is this daemon's own VXLAN socket; give the remote host's address"
        )));
    }
    Ok(())
}

pub(super) fn parse_subnet(network: &str, raw: &str) -> Result<IpNet, CtlError> {
    let net: IpNet = raw.parse().map_err(|_| {
        CtlError::invalid(format!(
            "network {network:?}: invalid subnet {raw:?}; write an address with a prefix \
             length, like 10.77.0.0/24"
        ))
    })?;
    if net.trunc() != net {
        return Err(CtlError::invalid(format!(
            "network {network:?}: subnet {raw} has host bits set; did you mean {}?",
            net.trunc()
        )));
    }
    Ok(net)
}

/// Whether `addr` is the subnet's own address or its IPv4 broadcast, which
/// no host may use (/31 and /32 have neither, RFC 3021).
fn reserved_in(net: IpNet, addr: IpAddr) -> bool {
    match net {
        IpNet::V4(n) if n.prefix_len() < 31 => {
            IpAddr::V4(n.network()) == addr || IpAddr::V4(n.broadcast()) == addr
        }
        IpNet::V6(n) if n.prefix_len() < 127 => IpAddr::V6(n.network()) == addr,
        _ => false,
    }
}

pub(super) fn parse_gateway(network: &str, raw: &str, subnet: IpNet) -> Result<IpAddr, CtlError> {
    let gw: IpAddr = raw.parse().map_err(|_| {
        CtlError::invalid(format!(
            "network {network:?}: invalid gateway {raw:?}; write a plain address in the \
             subnet, like {}",
            example_host(subnet, 1)
        ))
    })?;
    if !subnet.contains(&gw) || reserved_in(subnet, gw) {
        return Err(CtlError::invalid(format!(
            "network {network:?}: gateway {gw} is not a host address of subnet {subnet}; \
             use one like {}",
            example_host(subnet, 1)
        )));
    }
    Ok(gw)
}

pub(super) fn parse_port_ip(
    what: &str,
    network: &str,
    raw: &str,
    subnet: Option<IpNet>,
    gateway: Option<IpAddr>,
) -> Result<IpNet, CtlError> {
    let ip: IpNet = if raw.contains('/') {
        raw.parse().map_err(|_| {
            CtlError::invalid(format!(
                "{what}: invalid ip {raw:?}; write an address with a prefix length, like \
                 10.77.0.11/24"
            ))
        })?
    } else {
        let addr: IpAddr = raw.parse().map_err(|_| {
            CtlError::invalid(format!(
                "{what}: invalid ip {raw:?}; write an address with a prefix length, like \
                 10.77.0.11/24"
            ))
        })?;
        match subnet {
            // A bare address takes the network's prefix length.
            Some(s) => IpNet::new(addr, s.prefix_len()).map_err(|_| {
                CtlError::invalid(format!(
                    "{what}: ip {addr} does not fit subnet {s} of network {network:?}"
                ))
            })?,
            None => {
                return Err(CtlError::invalid(format!(
                    "{what}: ip {raw} has no prefix length and network {network:?} has no \
                     subnet to take it from; write it like {raw}/24"
                )))
            }
        }
    };
    let addr = ip.addr();
    if let Some(s) = subnet {
        if !s.contains(&addr) {
            return Err(CtlError::invalid(format!(
                "{what}: ip {addr} is outside subnet {s} of network {network:?}; use an \
                 address like {}",
                example_host(s, 11)
            )));
        }
        if ip.prefix_len() != s.prefix_len() {
            return Err(CtlError::invalid(format!(
                "{what}: ip {ip} has prefix length /{} but network {network:?} is {s}; write \
                 {addr}/{}",
                ip.prefix_len(),
                s.prefix_len()
            )));
        }
        if reserved_in(s, addr) {
            return Err(CtlError::invalid(format!(
                "{what}: {addr} is the network or broadcast address of {s}; use a host \
                 address like {}",
                example_host(s, 11)
            )));
        }
        if gateway == Some(addr) {
            return Err(CtlError::invalid(format!(
                "{what}: {addr} is the gateway of network {network:?}; choose another address"
            )));
        }
    } else if reserved_in(ip.trunc(), addr) {
        return Err(CtlError::invalid(format!(
            "{what}: {addr} is the network or broadcast address of {}; use a host address",
            ip.trunc()
        )));
    }
    Ok(ip)
}

/// The `n`th host of a subnet (or the subnet address when it is too small),
/// for examples in messages.
fn example_host(net: IpNet, n: u32) -> IpAddr {
    net.hosts()
        .nth(usize::try_from(n.saturating_sub(1)).unwrap_or(0))
        .unwrap_or(net.addr())
}

/// `what: e` as the error of a request. The errno's number is left out,
/// as the CLI leaves it out of its own errors: the text names the error.
pub(super) fn port_error(what: &str, e: ports::PortError) -> CtlError {
    let errno = e.raw_os_error();
    CtlError::new(
        ErrorKind::PortError,
        with_fd_advice(strip_os_error(&format!("{what}: {e}")), errno),
    )
}

/// What to do when the daemon (`EMFILE`) or the system (`ENFILE`) has run
/// out of file descriptors: every TAP queue, worker and client holds one,
/// so a busy daemon meets its limit long before anything is wrong.
pub(super) fn fd_limit_advice(errno: Option<i32>) -> Option<String> {
    match errno? {
        libc::EMFILE => {
            let limit = crate::sys::rlimit::nofile()
                .map_or_else(|_| "unknown".to_string(), |(soft, _)| soft.to_string());
            Some(format!(
                "too many open files (limit {limit}): raise LimitNOFILE= / ulimit -n"
            ))
        }
        libc::ENFILE => Some(
            "too many open files in the whole system: raise the sysctl fs.file-max".to_string(),
        ),
        _ => None,
    }
}

/// `message`, ending in [`fd_limit_advice`] when `errno` says the fds ran out.
pub(super) fn with_fd_advice(message: String, errno: Option<i32>) -> String {
    match fd_limit_advice(errno) {
        Some(advice) => format!("{message}: {advice}"),
        None => message,
    }
}

/// Errors of the engine's VXLAN side, which the operator can act on.
pub(super) fn vxlan_error(what: &str, e: EngineError) -> CtlError {
    match e {
        EngineError::Tunnel(e) => {
            let errno = match &e {
                crate::vxlan::SocketError::Bind { source, .. }
                | crate::vxlan::SocketError::Setup(source) => source.raw_os_error(),
            };
            CtlError::new(
                ErrorKind::TunnelError,
                with_fd_advice(strip_os_error(&format!("{what}: {e}")), errno),
            )
        }
        EngineError::NoIpv6 { port } => CtlError::new(
            ErrorKind::TunnelError,
            format!(
                "{what}: this host has no IPv6 VXLAN socket (binding [::]:{port} failed when \
                 the first network with a VNI was created); use the VTEP's IPv4 address"
            ),
        ),
        EngineError::VniInUse { vni } => CtlError::exists(format!(
            "{what}: VNI {vni} is already used by another network; choose another VNI"
        )),
        EngineError::VtepExists { addr } => CtlError::exists(format!(
            "{what}: {addr} is already a VTEP of this network (perhaps just learned from its \
             traffic); see 'vxswitch vtep ls'"
        )),
        EngineError::NoVni => CtlError::invalid(format!(
            "{what}: the network has no VNI; create it with --vni to carry it over VXLAN"
        )),
        other => engine_error(what, other),
    }
}

pub(super) fn engine_error(what: &str, e: EngineError) -> CtlError {
    if let EngineError::Register(io) = &e {
        if let Some(advice) = fd_limit_advice(io.raw_os_error()) {
            return CtlError::new(
                ErrorKind::PortError,
                format!("{what}: cannot hand the port to the dataplane: {advice}"),
            );
        }
    }
    CtlError::internal(strip_os_error(&format!(
        "{what}: the dataplane refused it: {e}; this is a bug, please report it with the \
         daemon's log"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtep_addresses_parse_with_and_without_port() {
        let ok = [
            ("198.18.0.2", "198.18.0.2:4789", false),
            ("198.18.0.2:8472", "198.18.0.2:8472", true),
            ("fd00::2", "[fd00::2]:4789", false),
            ("[fd00::2]", "[fd00::2]:4789", false),
            ("[fd00::2]:9", "[fd00::2]:9", true),
            ("::ffff:198.18.0.2", "198.18.0.2:4789", false),
            ("127.0.0.1:5000", "127.0.0.1:5000", true),
        ];
        for (raw, want, port_given) in ok {
            let (a, given) = parse_vtep_addr("x", raw, 4789).unwrap();
            assert_eq!((a.to_string().as_str(), given), (want, port_given), "{raw}");
        }
        let bad = [
            ("host.example", "invalid VTEP address \"host.example\""),
            ("198.18.0.2:", "invalid VTEP address"),
            ("198.18.0.2:70000", "invalid VTEP address"),
            ("fd00::2:4789x", "invalid VTEP address"),
            ("0.0.0.0", "not a unicast address"),
            ("239.1.1.1", "multicast groups are not supported"),
            ("ff02::1", "not a unicast address"),
            ("255.255.255.255", "not a unicast address"),
            ("198.18.0.2:0", "VTEP port 0 is invalid"),
        ];
        for (raw, want) in bad {
            let e = parse_vtep_addr("network \"blue\"", raw, 4789).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument, "{raw}");
            assert!(e.message.starts_with("network \"blue\": "), "{}", e.message);
            assert!(e.message.contains(want), "{raw}: {}", e.message);
        }
    }
}
