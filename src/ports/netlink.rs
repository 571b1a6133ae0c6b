//! rtnetlink messages, built and parsed by hand.
//!
//! Why by hand: the port layer needs seven message shapes (get link, set
//! MAC/MTU/flags, add address, add route, dump addresses). Each is a
//! 16-byte `nlmsghdr`, a fixed family header and a few type-length-value
//! attributes; ~200 lines of byte work that unit tests check against
//! hand-decoded fixtures, instead of a netlink crate stack. Fields are
//! written with `to_ne_bytes` into a `Vec<u8>`, never by casting structs
//! (no alignment or padding questions); addresses are network-order octets.
//!
//! Constants are from `<linux/netlink.h>`, `<linux/rtnetlink.h>`,
//! `<linux/if_link.h>` and `<linux/if_addr.h>`.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::sys;
use crate::wire::MacAddr;

// <linux/netlink.h>
const NLMSG_HDRLEN: usize = 16;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLM_F_REQUEST: u16 = 0x001;
pub(crate) const NLM_F_ACK: u16 = 0x004;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
/// On an `NLMSG_ERROR`: only the request's header is echoed.
const NLM_F_CAPPED: u16 = 0x100;
/// On an `NLMSG_ERROR`: extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Attribute type bits other than these are flags (`NLA_F_NESTED`, ...).
const NLA_TYPE_MASK: u16 = 0x3fff;

// <linux/rtnetlink.h>
pub(crate) const RTM_NEWLINK: u16 = 16;
pub(crate) const RTM_DELLINK: u16 = 17;
pub(crate) const RTM_GETLINK: u16 = 18;
pub(crate) const RTM_NEWADDR: u16 = 20;
pub(crate) const RTM_GETADDR: u16 = 22;
pub(crate) const RTM_NEWROUTE: u16 = 24;
const RT_TABLE_MAIN: u8 = 254;
/// What `ip route add` uses when no `proto` is given.
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

// <linux/if_link.h>
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
/// `VETH_INFO_PEER` (<linux/veth.h>): the peer's `ifinfomsg` and attributes.
const VETH_INFO_PEER: u16 = 1;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_TUN_OWNER: u16 = 1;
const IFLA_TUN_TYPE: u16 = 3;
const IFLA_TUN_PERSIST: u16 = 6;
const IFLA_TUN_MULTI_QUEUE: u16 = 7;

// <linux/if_addr.h>
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_F_NODAD: u8 = 0x02;

// <linux/if.h>, <linux/socket.h>, <linux/if_tun.h>
pub(crate) const IFF_UP: u32 = 0x1;
pub(crate) const IFF_NOARP: u32 = 0x80;
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IFF_TAP: u8 = 0x2;

/// One request under construction: header, family header, attributes.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    buf: Vec<u8>,
}

impl Request {
    pub(crate) fn new(ty: u16, flags: u16) -> Request {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        Request { buf }
    }

    /// Appends the fixed family header (`ifinfomsg`, `ifaddrmsg`, `rtmsg`);
    /// all of them are a multiple of 4 bytes long.
    fn family_header(mut self, bytes: &[u8]) -> Request {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// Appends one attribute, padded to 4 bytes. Our attributes are at most
    /// a few dozen bytes, far below the 64 KiB an attribute can hold.
    fn attr(mut self, ty: u16, data: &[u8]) -> Request {
        let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    fn attr_u32(self, ty: u16, v: u32) -> Request {
        self.attr(ty, &v.to_ne_bytes())
    }

    /// A NUL-terminated string attribute.
    fn attr_str(self, ty: u16, s: &str) -> Request {
        let mut data = Vec::with_capacity(s.len() + 1);
        data.extend_from_slice(s.as_bytes());
        data.push(0);
        self.attr(ty, &data)
    }

    pub(crate) fn flags(&self) -> u16 {
        u16::from_ne_bytes([self.buf[6], self.buf[7]])
    }

    /// The finished message with its length and sequence number filled in.
    pub(crate) fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// `struct ifinfomsg`: family, pad, type, index, flags, change (16 bytes).
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0] = AF_UNSPEC;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

/// `RTM_GETLINK` for one interface by name.
pub(crate) fn get_link_by_name(name: &str) -> Request {
    Request::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK)
        .family_header(&ifinfomsg(0, 0, 0))
        .attr_str(IFLA_IFNAME, name)
}

/// `RTM_GETLINK` for one interface by index.
pub(crate) fn get_link_by_index(index: u32) -> Request {
    Request::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK).family_header(&ifinfomsg(index, 0, 0))
}

/// `ip link set dev IDX address MAC`.
pub(crate) fn set_link_mac(index: u32, mac: MacAddr) -> Request {
    Request::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK)
        .family_header(&ifinfomsg(index, 0, 0))
        .attr(IFLA_ADDRESS, mac.as_bytes())
}

/// `ip link set dev IDX mtu MTU`.
pub(crate) fn set_link_mtu(index: u32, mtu: u32) -> Request {
    Request::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK)
        .family_header(&ifinfomsg(index, 0, 0))
        .attr_u32(IFLA_MTU, mtu)
}

/// `ip link set dev IDX up`: only the `IFF_UP` bit changes.
pub(crate) fn set_link_up(index: u32) -> Request {
    Request::new(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK)
        .family_header(&ifinfomsg(index, IFF_UP, IFF_UP))
}

/// `ip addr add NET dev IDX` (plus `brd +` for IPv4 prefixes up to /30,
/// like Docker does, and `nodad` for IPv6: a container's address must be
/// usable at once, not tentative for a second of duplicate detection).
pub(crate) fn new_addr(index: u32, net: IpNet) -> Request {
    let (family, flags) = match net {
        IpNet::V4(_) => (AF_INET, 0),
        IpNet::V6(_) => (AF_INET6, IFA_F_NODAD),
    };
    let mut h = [0u8; 8];
    h[0] = family;
    h[1] = net.prefix_len();
    h[2] = flags;
    h[3] = RT_SCOPE_UNIVERSE;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    let req = Request::new(
        RTM_NEWADDR,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .family_header(&h);
    match net {
        IpNet::V4(n) => {
            let a = n.addr().octets();
            let req = req.attr(IFA_LOCAL, &a).attr(IFA_ADDRESS, &a);
            if n.prefix_len() <= 30 {
                req.attr(IFA_BROADCAST, &n.broadcast().octets())
            } else {
                req
            }
        }
        IpNet::V6(n) => {
            let a = n.addr().octets();
            req.attr(IFA_LOCAL, &a).attr(IFA_ADDRESS, &a)
        }
    }
}

/// `ip route add default via GW dev IDX` in the main table, proto boot.
pub(crate) fn new_default_route(index: u32, gateway: IpAddr) -> Request {
    let family = match gateway {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    };
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    let h = [
        family,
        0,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_BOOT,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
        0,
        0,
        0,
        0,
    ];
    let req = Request::new(
        RTM_NEWROUTE,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .family_header(&h);
    let req = match gateway {
        IpAddr::V4(g) => req.attr(RTA_GATEWAY, &g.octets()),
        IpAddr::V6(g) => req.attr(RTA_GATEWAY, &g.octets()),
    };
    req.attr_u32(RTA_OIF, index)
}

/// `ip link add HOST mtu MTU type veth peer name PEER mtu MTU netns FD`,
/// the host end with `IFF_NOARP` (the host stack never answers ARP on it)
/// and down; `peer_netns` `None` leaves the peer in the caller's namespace.
pub(crate) fn new_veth(host: &str, peer: &str, mtu: u32, peer_netns: Option<i32>) -> Request {
    let mut peer_req = Request { buf: Vec::new() }
        .family_header(&ifinfomsg(0, 0, 0))
        .attr_str(IFLA_IFNAME, peer)
        .attr_u32(IFLA_MTU, mtu);
    if let Some(fd) = peer_netns {
        peer_req = peer_req.attr_u32(IFLA_NET_NS_FD, fd as u32);
    }
    let data = Request { buf: Vec::new() }.attr(VETH_INFO_PEER, &peer_req.buf);
    let info = Request { buf: Vec::new() }
        .attr_str(IFLA_INFO_KIND, "veth")
        .attr(IFLA_INFO_DATA, &data.buf);
    new_noarp_link(host, mtu, &info)
}

/// `ip link add NAME mtu MTU type KIND` (a kind without settings:
/// `dummy`, `ifb`), with `IFF_NOARP`, down.
pub(crate) fn new_link_of_kind(name: &str, kind: &str, mtu: u32) -> Request {
    let info = Request { buf: Vec::new() }.attr_str(IFLA_INFO_KIND, kind);
    new_noarp_link(name, mtu, &info)
}

/// A new interface `name` with `IFF_NOARP`, down, of the kind (and
/// settings) in `info` (`IFLA_LINKINFO`'s content).
fn new_noarp_link(name: &str, mtu: u32, info: &Request) -> Request {
    Request::new(
        RTM_NEWLINK,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .family_header(&ifinfomsg(0, IFF_NOARP, IFF_NOARP))
    .attr_str(IFLA_IFNAME, name)
    .attr_u32(IFLA_MTU, mtu)
    .attr(IFLA_LINKINFO, &info.buf)
}

/// `ip link show` of every interface.
pub(crate) fn dump_links() -> Request {
    Request::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP).family_header(&ifinfomsg(0, 0, 0))
}

/// `ip link del dev IDX` (a veth takes its peer with it).
pub(crate) fn del_link(index: u32) -> Request {
    Request::new(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK).family_header(&ifinfomsg(index, 0, 0))
}

/// `ip addr show` of every interface and family (filtered by the caller).
pub(crate) fn dump_addrs() -> Request {
    Request::new(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP)
        .family_header(&[AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0])
}

/// One received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Msg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

fn ne_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Splits a received datagram into messages. A header whose length is
/// impossible is an error: the rest of the datagram cannot be trusted.
pub(crate) fn parse_msgs(buf: &[u8]) -> io::Result<Vec<Msg<'_>>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed netlink message");
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= NLMSG_HDRLEN {
        let len = ne_u32(buf, at).ok_or_else(bad)? as usize;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            return Err(bad());
        }
        out.push(Msg {
            ty: ne_u16(buf, at + 4).ok_or_else(bad)?,
            flags: ne_u16(buf, at + 6).ok_or_else(bad)?,
            seq: ne_u32(buf, at + 8).ok_or_else(bad)?,
            payload: &buf[at + NLMSG_HDRLEN..at + len],
        });
        at += align4(len).min(buf.len() - at);
    }
    Ok(out)
}

/// The attributes in `buf` as `(type without flag bits, value)`; stops at
/// the first malformed one.
pub(crate) fn parse_attrs(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while let (Some(len), Some(ty)) = (ne_u16(buf, at), ne_u16(buf, at + 2)) {
        let len = usize::from(len);
        if len < 4 || at + len > buf.len() {
            break;
        }
        out.push((ty & NLA_TYPE_MASK, &buf[at + 4..at + len]));
        at += align4(len);
    }
    out
}

/// The kernel's answer to a request as carried by `NLMSG_ERROR`: `None`
/// for an ack (error 0), else the errno with the kernel's extended-ack
/// message when it sent one (e.g. "MTU greater than device maximum").
pub(crate) fn parse_error(msg: &Msg<'_>) -> Option<io::Error> {
    let p = msg.payload;
    let Some(err) = ne_u32(p, 0).map(|v| v as i32) else {
        return Some(io::Error::new(
            io::ErrorKind::InvalidData,
            "truncated netlink error message",
        ));
    };
    if err == 0 {
        return None;
    }
    let errno = err.checked_neg().unwrap_or(libc::EINVAL);
    let mut text = None;
    if msg.flags & NLM_F_ACK_TLVS != 0 {
        // The echoed request: only its header when capped, else all of it.
        let echoed = if msg.flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            ne_u32(p, 4).map_or(NLMSG_HDRLEN, |l| l as usize)
        };
        if let Some(tlvs) = p.get(4 + align4(echoed)..) {
            text = parse_attrs(tlvs)
                .into_iter()
                .find(|&(ty, _)| ty == NLMSGERR_ATTR_MSG)
                .map(|(_, v)| c_string(v));
        }
    }
    Some(errno_error(errno, text.as_deref()))
}

/// An `io::Error` for `errno`, keeping `raw_os_error()` when there is no
/// kernel message to add.
pub(crate) fn errno_error(errno: i32, text: Option<&str>) -> io::Error {
    let base = io::Error::from_raw_os_error(errno);
    match text {
        Some(t) if !t.is_empty() => io::Error::new(base.kind(), format!("{base}: {t}")),
        _ => base,
    }
}

fn c_string(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// What the port layer reads from an `RTM_NEWLINK` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// `None` for links without a hardware address.
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    /// `IFF_*` flags as `ip link` shows them (`IFF_UP` is 0x1).
    pub flags: u32,
    /// `IFLA_INFO_KIND`: "tun" (TUN and TAP), "veth", "dummy", ...; `None`
    /// for physical and loopback devices.
    pub kind: Option<String>,
    /// TUN/TAP details, present when `kind` is "tun".
    pub tun: Option<TunInfo>,
}

impl LinkInfo {
    pub fn is_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }
}

/// TUN/TAP attributes of a link (`IFLA_INFO_DATA` of kind "tun").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TunInfo {
    /// A TAP (layer 2) rather than a TUN (layer 3).
    pub tap: bool,
    pub persist: bool,
    pub multi_queue: bool,
    /// The uid allowed to attach without CAP_NET_ADMIN, when one is set.
    pub owner: Option<u32>,
}

/// Parses the payload of an `RTM_NEWLINK` message.
pub(crate) fn parse_link(payload: &[u8]) -> Option<LinkInfo> {
    let index = ne_u32(payload, 4)?;
    let flags = ne_u32(payload, 8)?;
    let mut link = LinkInfo {
        index,
        name: String::new(),
        mac: None,
        mtu: 0,
        flags,
        kind: None,
        tun: None,
    };
    for (ty, v) in parse_attrs(payload.get(16..)?) {
        match ty {
            IFLA_IFNAME => link.name = c_string(v),
            IFLA_ADDRESS if v.len() == 6 => link.mac = Some(MacAddr::from_bytes(v)),
            IFLA_MTU => link.mtu = ne_u32(v, 0)?,
            IFLA_LINKINFO => {
                for (ity, iv) in parse_attrs(v) {
                    match ity {
                        IFLA_INFO_KIND => link.kind = Some(c_string(iv)),
                        IFLA_INFO_DATA => data_attrs_tun(iv, &mut link),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if link.kind.as_deref() != Some("tun") {
        link.tun = None;
    }
    Some(link)
}

fn data_attrs_tun(data: &[u8], link: &mut LinkInfo) {
    let mut t = TunInfo::default();
    for (ty, v) in parse_attrs(data) {
        match ty {
            IFLA_TUN_TYPE => t.tap = v.first() == Some(&IFF_TAP),
            IFLA_TUN_PERSIST => t.persist = v.first().is_some_and(|&b| b != 0),
            IFLA_TUN_MULTI_QUEUE => t.multi_queue = v.first().is_some_and(|&b| b != 0),
            IFLA_TUN_OWNER => t.owner = ne_u32(v, 0),
            _ => {}
        }
    }
    link.tun = Some(t);
}

/// Parses an `RTM_NEWADDR` payload into `(ifindex, address/prefix)`.
pub(crate) fn parse_addr(payload: &[u8]) -> Option<(u32, IpNet)> {
    let family = *payload.first()?;
    let prefix = *payload.get(1)?;
    let index = ne_u32(payload, 4)?;
    let attrs = parse_attrs(payload.get(8..)?);
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
    // point-to-point links and equals IFA_LOCAL elsewhere (IPv6 may send only it).
    let pick = |ty| attrs.iter().find(|&&(t, _)| t == ty).map(|&(_, v)| v);
    let v = pick(IFA_LOCAL).or_else(|| pick(IFA_ADDRESS))?;
    let ip = match family {
        AF_INET => IpAddr::from(<[u8; 4]>::try_from(v).ok()?),
        AF_INET6 => IpAddr::from(<[u8; 16]>::try_from(v).ok()?),
        _ => return None,
    };
    Some((index, IpNet::new(ip, prefix).ok()?))
}

/// A `NETLINK_ROUTE` socket of the namespace it was opened in, with
/// request/ack bookkeeping. Every wait is bounded: each `recv` by the
/// socket timeout, each request by [`Rtnl::DEADLINE`].
pub(crate) struct Rtnl {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    const DEADLINE: Duration = Duration::from_secs(10);

    pub(crate) fn open() -> io::Result<Rtnl> {
        Ok(Rtnl {
            fd: sys::netlink::route_socket()?,
            seq: 0,
            // Dumps fill datagrams up to the reader's buffer, at most 32 KiB.
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// Sends `req` and hands every reply message of it to `each` until the
    /// final ack (or `NLMSG_DONE` for dumps). A kernel error ends it.
    fn exchange(&mut self, req: Request, mut each: impl FnMut(&Msg<'_>)) -> io::Result<()> {
        let dump = req.flags() & NLM_F_DUMP == NLM_F_DUMP;
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        sys::netlink::send(self.fd.as_fd(), &req.finish(seq))?;
        let deadline = Instant::now() + Self::DEADLINE;
        loop {
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the kernel did not finish answering a netlink request",
                ));
            }
            let n = sys::netlink::recv(self.fd.as_fd(), &mut self.buf)?;
            for msg in parse_msgs(&self.buf[..n])? {
                if msg.seq != seq {
                    continue; // a stale answer to an earlier, failed request
                }
                match msg.ty {
                    NLMSG_ERROR => {
                        return match parse_error(&msg) {
                            None => Ok(()),
                            Some(e) => Err(e),
                        }
                    }
                    NLMSG_DONE if dump => {
                        // A dump that failed midway reports a negative errno here.
                        let err = ne_u32(msg.payload, 0).map_or(0, |v| v as i32);
                        return if err < 0 {
                            Err(errno_error(err.checked_neg().unwrap_or(libc::EINVAL), None))
                        } else {
                            Ok(())
                        };
                    }
                    _ => each(&msg),
                }
            }
        }
    }

    /// Sends a request that only needs an ack.
    pub(crate) fn ack(&mut self, req: Request) -> io::Result<()> {
        self.exchange(req, |_| {})
    }

    /// The link named `name`, or `None` when there is none.
    pub(crate) fn link_by_name(&mut self, name: &str) -> io::Result<Option<LinkInfo>> {
        self.get_link(get_link_by_name(name))
    }

    pub(crate) fn link_by_index(&mut self, index: u32) -> io::Result<Option<LinkInfo>> {
        self.get_link(get_link_by_index(index))
    }

    fn get_link(&mut self, req: Request) -> io::Result<Option<LinkInfo>> {
        let mut found = None;
        let res = self.exchange(req, |m| {
            if m.ty == RTM_NEWLINK && found.is_none() {
                found = parse_link(m.payload);
            }
        });
        match res {
            Ok(()) => Ok(found),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every interface of the namespace.
    pub(crate) fn links(&mut self) -> io::Result<Vec<LinkInfo>> {
        let mut out = Vec::new();
        self.exchange(dump_links(), |m| {
            if m.ty == RTM_NEWLINK {
                out.extend(parse_link(m.payload));
            }
        })?;
        Ok(out)
    }

    /// Addresses configured on interface `index`.
    pub(crate) fn addrs_of(&mut self, index: u32) -> io::Result<Vec<IpNet>> {
        let mut out = Vec::new();
        self.exchange(dump_addrs(), |m| {
            if m.ty == RTM_NEWADDR {
                if let Some((i, net)) = parse_addr(m.payload) {
                    if i == index {
                        out.push(net);
                    }
                }
            }
        })?;
        Ok(out)
    }
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    // Fixtures decoded by hand from the kernel headers; multi-byte header
    // fields are little-endian (host order on x86-64 and aarch64).

    #[test]
    fn new_addr_v4_bytes() {
        let req = new_addr(7, "10.77.0.11/24".parse().unwrap()).finish(1);
        #[rustfmt::skip]
        let want: &[u8] = &[
            // nlmsghdr: len 48, type 20 RTM_NEWADDR, flags 0x605 REQUEST|ACK|EXCL|CREATE, seq 1, pid 0
            48, 0, 0, 0,  20, 0,  0x05, 0x06,  1, 0, 0, 0,  0, 0, 0, 0,
            // ifaddrmsg: AF_INET, /24, flags 0, scope universe, index 7
            2, 24, 0, 0,  7, 0, 0, 0,
            // IFA_LOCAL 10.77.0.11
            8, 0, 2, 0,  10, 77, 0, 11,
            // IFA_ADDRESS 10.77.0.11
            8, 0, 1, 0,  10, 77, 0, 11,
            // IFA_BROADCAST 10.77.0.255
            8, 0, 4, 0,  10, 77, 0, 255,
        ];
        assert_eq!(req, want);
    }

    #[test]
    fn new_addr_v6_is_nodad_without_broadcast() {
        let req = new_addr(3, "fd00:77::11/64".parse().unwrap()).finish(9);
        assert_eq!(req.len(), 16 + 8 + 20 + 20);
        assert_eq!(&req[16..24], &[10, 64, IFA_F_NODAD, 0, 3, 0, 0, 0]);
        assert_eq!(&req[24..28], &[20, 0, 2, 0]);
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[0xfd, 0x00, 0x00, 0x77]);
        addr[15] = 0x11;
        assert_eq!(&req[28..44], &addr);
        assert_eq!(&req[44..48], &[20, 0, 1, 0]);
    }

    #[test]
    fn point_to_point_v4_has_no_broadcast() {
        let req = new_addr(1, "10.0.0.1/31".parse().unwrap()).finish(1);
        assert_eq!(req.len(), 16 + 8 + 8 + 8);
    }

    #[test]
    fn default_route_v4_bytes() {
        let req = new_default_route(7, "10.77.0.1".parse().unwrap()).finish(2);
        #[rustfmt::skip]
        let want: &[u8] = &[
            // nlmsghdr: len 44, type 24 RTM_NEWROUTE, flags 0x605, seq 2
            44, 0, 0, 0,  24, 0,  0x05, 0x06,  2, 0, 0, 0,  0, 0, 0, 0,
            // rtmsg: AF_INET, dst_len 0, src_len 0, tos 0, table main 254,
            // proto boot 3, scope universe 0, type unicast 1, flags 0
            2, 0, 0, 0,  254, 3, 0, 1,  0, 0, 0, 0,
            // RTA_GATEWAY 10.77.0.1
            8, 0, 5, 0,  10, 77, 0, 1,
            // RTA_OIF 7
            8, 0, 4, 0,  7, 0, 0, 0,
        ];
        assert_eq!(req, want);
    }

    #[test]
    fn link_requests_bytes() {
        #[rustfmt::skip]
        let mtu: &[u8] = &[
            // nlmsghdr: len 40, type 16 RTM_NEWLINK, flags 0x5 REQUEST|ACK, seq 3
            40, 0, 0, 0,  16, 0,  5, 0,  3, 0, 0, 0,  0, 0, 0, 0,
            // ifinfomsg: family 0, pad, type 0, index 7, flags 0, change 0
            0, 0, 0, 0,  7, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,
            // IFLA_MTU 1400
            8, 0, 4, 0,  0x78, 0x05, 0, 0,
        ];
        assert_eq!(set_link_mtu(7, 1400).finish(3), mtu);

        let up = set_link_up(7).finish(4);
        assert_eq!(up.len(), 32);
        assert_eq!(
            &up[24..32],
            &[1, 0, 0, 0, 1, 0, 0, 0],
            "flags and change = IFF_UP"
        );

        let mac = set_link_mac(7, MacAddr([2, 0x42, 10, 77, 0, 11])).finish(5);
        // IFLA_ADDRESS: len 10, padded to 12.
        assert_eq!(&mac[32..], &[10, 0, 1, 0, 2, 0x42, 10, 77, 0, 11, 0, 0]);
        assert_eq!(mac[0], 44);

        let get = get_link_by_name("eth0").finish(6);
        // IFLA_IFNAME "eth0\0": len 9, padded to 12.
        assert_eq!(
            &get[32..],
            &[9, 0, 3, 0, b'e', b't', b'h', b'0', 0, 0, 0, 0]
        );
        assert_eq!(&get[4..8], &[18, 0, 5, 0]);
    }

    #[test]
    fn dump_addrs_sets_dump_flags() {
        let d = dump_addrs().finish(1);
        assert_eq!(&d[0..8], &[24, 0, 0, 0, 22, 0, 0x01, 0x03]);
    }

    /// An `NLMSG_ERROR` for `seq` 5 with errno `-errno` and, when given, an
    /// extended-ack message (capped: only the request header is echoed).
    fn error_msg(errno: i32, text: Option<&str>) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&(-errno).to_ne_bytes());
        // The echoed request header: len 40, RTM_NEWLINK, seq 5.
        p.extend_from_slice(&[40, 0, 0, 0, 16, 0, 5, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
        let mut flags = NLM_F_CAPPED;
        if let Some(t) = text {
            flags |= NLM_F_ACK_TLVS;
            let len = u16::try_from(4 + t.len() + 1).unwrap();
            p.extend_from_slice(&len.to_ne_bytes());
            p.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
            p.extend_from_slice(t.as_bytes());
            p.push(0);
            p.resize(align4(p.len()), 0);
        }
        Request::new(NLMSG_ERROR, flags).family_header(&p).finish(5)
    }

    #[test]
    fn ack_is_not_an_error() {
        let buf = error_msg(0, None);
        let msgs = parse_msgs(&buf).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].ty, NLMSG_ERROR);
        assert_eq!(msgs[0].seq, 5);
        assert!(parse_error(&msgs[0]).is_none());
    }

    #[test]
    fn errno_maps_to_io_error() {
        let buf = error_msg(libc::EEXIST, None);
        let msgs = parse_msgs(&buf).unwrap();
        let e = parse_error(&msgs[0]).unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn extended_ack_text_is_kept() {
        let buf = error_msg(libc::EINVAL, Some("MTU greater than device maximum"));
        let msgs = parse_msgs(&buf).unwrap();
        let e = parse_error(&msgs[0]).unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let s = e.to_string();
        assert!(s.contains("Invalid argument"), "{s}");
        assert!(s.ends_with(": MTU greater than device maximum"), "{s}");
    }

    #[test]
    fn malformed_lengths_are_rejected() {
        let mut buf = error_msg(0, None);
        buf[0] = 200; // longer than the datagram
        assert!(parse_msgs(&buf).is_err());
        buf[0] = 8; // shorter than a header
        assert!(parse_msgs(&buf).is_err());
        assert!(parse_msgs(&[]).unwrap().is_empty());
    }

    #[test]
    fn link_message_parses_tun_details() {
        #[rustfmt::skip]
        let payload: &[u8] = &[
            // ifinfomsg: family 0, type 1 (ether), index 9, flags UP|BROADCAST (0x1003), change 0
            0, 0, 1, 0,  9, 0, 0, 0,  0x03, 0x10, 0, 0,  0, 0, 0, 0,
            // IFLA_IFNAME "tap0"
            9, 0, 3, 0,  b't', b'a', b'p', b'0', 0, 0, 0, 0,
            // IFLA_MTU 1500
            8, 0, 4, 0,  0xdc, 0x05, 0, 0,
            // IFLA_ADDRESS 02:00:00:00:00:09
            10, 0, 1, 0,  2, 0, 0, 0, 0, 9, 0, 0,
            // IFLA_LINKINFO (NLA_F_NESTED), len 4 + 8 + 4 + 8 + 8 + 8 = 40
            40, 0, 18, 0x80,
              // IFLA_INFO_KIND "tun"
              8, 0, 1, 0,  b't', b'u', b'n', 0,
              // IFLA_INFO_DATA (nested), len 4 + 8 + 8 + 8 = 28
              28, 0, 2, 0x80,
                5, 0, 3, 0,  2, 0, 0, 0,          // IFLA_TUN_TYPE = IFF_TAP
                5, 0, 6, 0,  1, 0, 0, 0,          // IFLA_TUN_PERSIST = 1
                8, 0, 1, 0,  0xe8, 0x03, 0, 0,    // IFLA_TUN_OWNER = 1000
        ];
        let l = parse_link(payload).unwrap();
        assert_eq!(l.index, 9);
        assert_eq!(l.name, "tap0");
        assert_eq!(l.mtu, 1500);
        assert_eq!(l.mac, Some(MacAddr([2, 0, 0, 0, 0, 9])));
        assert!(l.is_up());
        assert_eq!(l.kind.as_deref(), Some("tun"));
        assert_eq!(
            l.tun,
            Some(TunInfo {
                tap: true,
                persist: true,
                multi_queue: false,
                owner: Some(1000)
            })
        );
    }

    #[test]
    fn addr_message_parses() {
        #[rustfmt::skip]
        let payload: &[u8] = &[
            2, 24, 0x80, 0,  7, 0, 0, 0,
            8, 0, 1, 0,  10, 77, 0, 11,
            8, 0, 2, 0,  10, 77, 0, 11,
        ];
        assert_eq!(
            parse_addr(payload),
            Some((7, "10.77.0.11/24".parse().unwrap()))
        );
    }
}
