//! The control protocol: newline-delimited JSON over a Unix stream socket.
//!
//! A request is one line `{"cmd": "port.add", "args": {...}}`; the reply is
//! one line `{"ok": true, "result": ...}` or
//! `{"ok": false, "error": {"kind": "...", "message": "..."}}`.
//!
//! Why JSON lines: any language (and `socat`/`nc -U` by hand) can speak
//! it, one read of one line is one request, and a line limit bounds what a
//! client can make the daemon buffer. Why names and not ids: ports and
//! networks are identified by the names the operator gave them; the dense
//! `NetId`/`PortId` the dataplane indexes vectors by are reused and never
//! leave the daemon.
//!
//! Parsing is done in two steps ([`parse_request`]) so every failure names
//! its cause: first the envelope (malformed JSON gets serde's message with
//! line and column), then the command name against [`COMMANDS`] (an unknown
//! command lists the known ones), then the arguments with
//! `deny_unknown_fields` (a typo in a field name lists the valid fields, a
//! missing field is named, both prefixed with the command).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fdb::{EntryKind, FdbStats};
use crate::gateway::GatewayStatsSnapshot;
use crate::switch::PortStatsSnapshot;
use crate::vxlan::VxlanSnapshot;
use crate::wire::MacAddr;

/// Version of the wire protocol; bumped when a reply shape changes incompatibly.
/// 2: VXLAN. `fdb.show` rows and `fdb.add`/`fdb.del` results carry
/// `port` *or* `vtep` (the other is null); `stats` has `vxlan` and `vteps`.
pub const PROTOCOL_VERSION: u32 = 2;

/// Longest request line the daemon accepts, in bytes, not counting the newline.
pub const MAX_LINE: usize = 64 * 1024;

/// Every command name, in the order `--help` and error messages list them.
pub const COMMANDS: &[&str] = &[
    "ping",
    "version",
    "network.create",
    "network.ls",
    "network.rm",
    "port.add",
    "port.ls",
    "port.rm",
    "port.set",
    "fdb.show",
    "fdb.add",
    "fdb.del",
    "fdb.flush",
    "vtep.add",
    "vtep.ls",
    "vtep.rm",
    "stats",
    "cluster.status",
    "ipam.allocate",
    "ipam.release",
    "monitor",
    "capture.start",
    "mirror.add",
    "mirror.rm",
    "mirror.ls",
];

/// One request. Serialized as `{"cmd": NAME, "args": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", content = "args")]
pub enum Request {
    #[serde(rename = "ping")]
    Ping(NoArgs),
    #[serde(rename = "version")]
    Version(NoArgs),
    #[serde(rename = "network.create")]
    NetworkCreate(NetworkCreate),
    #[serde(rename = "network.ls")]
    NetworkLs(NoArgs),
    #[serde(rename = "network.rm")]
    NetworkRm(NetworkRm),
    #[serde(rename = "port.add")]
    PortAdd(PortAdd),
    #[serde(rename = "port.ls")]
    PortLs(NoArgs),
    #[serde(rename = "port.rm")]
    PortRm(PortRm),
    #[serde(rename = "port.set")]
    PortSet(PortSet),
    #[serde(rename = "fdb.show")]
    FdbShow(FdbSelect),
    #[serde(rename = "fdb.add")]
    FdbAdd(FdbAdd),
    #[serde(rename = "fdb.del")]
    FdbDel(FdbDel),
    #[serde(rename = "fdb.flush")]
    FdbFlush(FdbSelect),
    #[serde(rename = "vtep.add")]
    VtepAdd(VtepAdd),
    #[serde(rename = "vtep.ls")]
    VtepLs(VtepLs),
    #[serde(rename = "vtep.rm")]
    VtepRm(VtepRm),
    #[serde(rename = "stats")]
    Stats(StatsArgs),
    #[serde(rename = "cluster.status")]
    ClusterStatus(NoArgs),
    #[serde(rename = "ipam.allocate")]
    IpamAllocate(IpamAllocate),
    #[serde(rename = "ipam.release")]
    IpamRelease(IpamRelease),
    /// Turns the connection into a stream of [`MonitorEvent`] lines
    /// (`vxswitch monitor`; docs/observability.md).
    #[serde(rename = "monitor")]
    Monitor(NoArgs),
    /// Turns the connection into a pcapng stream of copies of frames
    /// (`vxswitch capture`; docs/observability.md).
    #[serde(rename = "capture.start")]
    CaptureStart(CaptureStart),
    #[serde(rename = "mirror.add")]
    MirrorAdd(MirrorAdd),
    #[serde(rename = "mirror.rm")]
    MirrorRm(MirrorRm),
    #[serde(rename = "mirror.ls")]
    MirrorLs(NoArgs),
}

impl Request {
    /// The command name as it appears on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Ping(_) => "ping",
            Request::Version(_) => "version",
            Request::NetworkCreate(_) => "network.create",
            Request::NetworkLs(_) => "network.ls",
            Request::NetworkRm(_) => "network.rm",
            Request::PortAdd(_) => "port.add",
            Request::PortLs(_) => "port.ls",
            Request::PortRm(_) => "port.rm",
            Request::PortSet(_) => "port.set",
            Request::FdbShow(_) => "fdb.show",
            Request::FdbAdd(_) => "fdb.add",
            Request::FdbDel(_) => "fdb.del",
            Request::FdbFlush(_) => "fdb.flush",
            Request::VtepAdd(_) => "vtep.add",
            Request::VtepLs(_) => "vtep.ls",
            Request::VtepRm(_) => "vtep.rm",
            Request::Stats(_) => "stats",
            Request::ClusterStatus(_) => "cluster.status",
            Request::IpamAllocate(_) => "ipam.allocate",
            Request::IpamRelease(_) => "ipam.release",
            Request::Monitor(_) => "monitor",
            Request::CaptureStart(_) => "capture.start",
            Request::MirrorAdd(_) => "mirror.add",
            Request::MirrorRm(_) => "mirror.rm",
            Request::MirrorLs(_) => "mirror.ls",
        }
    }

    /// The request as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        // A Request is plain data with string keys: serializing cannot fail.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// Arguments of commands that take none (`{}` or absent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// `network.create`: a new L2 broadcast domain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreate {
    pub name: String,
    /// CIDR such as `10.77.0.0/24`; port addresses must lie in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Address in the subnet that ports get their default route via.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Default MTU of the network's ports. When absent: 1500, or for a
    /// network with a VNI the underlay MTU minus 50 (minus 70 if one of
    /// `vteps` is IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// VXLAN network identifier (0 to 16777215): the network spans hosts,
    /// its frames travel to its VTEPs in VXLAN with this VNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// Accept VXLAN from senders that are not configured VTEPs and add them
    /// as dynamic VTEPs (needs `vni`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub learn_vteps: bool,
    /// VTEPs to add right after the network, as `vtep.add` takes them
    /// (`ADDR` or `ADDR:PORT`; needs `vni`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vteps: Vec<String>,
    /// Who answers for the gateway address (needs `gateway`): a TAP in the
    /// daemon's namespace carrying it (`host`), the switch itself for ARP
    /// and ping (`switch`), or nobody (`none`, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_port: Option<GatewayPort>,
    /// Interface name of the `host` gateway port (default `vxgw-NETWORK`,
    /// shortened to 15 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_ifname: Option<String>,
    /// A cluster network (needs `vni`; the daemon runs with `--cluster`):
    /// created in etcd if absent (name and VNI unique cluster-wide), and by
    /// that on every daemon of the cluster; its VTEPs and remote FDB
    /// entries are the cluster's (see `docs/cluster.md`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub cluster: bool,
    /// The network's FDB budget: most MACs it may have in the forwarding
    /// table (default: the daemon's `[fdb] max_per_network`). New MACs
    /// beyond it are not learned (counted), so a MAC flood in this network
    /// cannot stop the others from learning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fdb_max_entries: Option<usize>,
    /// Port security of the network's ports unless a `port.add` says
    /// (absent: on). `false` for a network of containers that carry other
    /// MACs (Docker: `-o vxswitch.port_security=off`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security: Option<bool>,
    /// ARP/ND suppression: the switch answers ARP requests and neighbour
    /// solicitations for its ports' addresses itself instead of flooding
    /// them. Always on for a cluster network (where it also answers for
    /// the remote endpoints); off by default for a local one.
    #[serde(default, skip_serializing_if = "is_false")]
    pub neigh_suppress: bool,
    /// A host interface (in the daemon's namespace) attached to the
    /// network as its uplink port: containers are on that LAN, each with
    /// its own MAC, as with macvlan (see `docs/uplink.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<String>,
    /// The uplink's 802.1Q VLAN id (1 to 4094; needs `uplink`): frames
    /// leave tagged and only frames of this VLAN come in. Absent: untagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Storm control (needs `uplink`): broadcast and multicast frames per
    /// second taken in from the LAN; beyond, dropped and counted
    /// (`storm`). 0: no limit. Absent: 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm_pps: Option<u32>,
    /// The backend of the network's ports unless their `port.add` says
    /// (absent: `tap`, or the daemon's `--backend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
}

/// Who answers for a network's gateway address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayPort {
    /// A TAP in the daemon's namespace with the gateway address: the host
    /// kernel answers, routes and (with the user's NAT rule) masquerades,
    /// as it does for `docker0`.
    Host,
    /// The switch answers ARP and ICMP echo for the gateway address itself,
    /// without a kernel interface (labs without `CAP_NET_ADMIN`).
    Switch,
    /// Nobody: the gateway address is only the ports' default route.
    #[default]
    None,
}

impl GatewayPort {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayPort::Host => "host",
            GatewayPort::Switch => "switch",
            GatewayPort::None => "none",
        }
    }
}

impl std::fmt::Display for GatewayPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `network.rm`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRm {
    pub name: String,
    /// Remove attached ports first instead of refusing with `busy`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
}

/// `port.add`: attach a container (or an existing TAP) to a network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortAdd {
    pub name: String,
    pub network: String,
    /// Network namespace file of the container, e.g. `/run/netns/c1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// PID whose network namespace the container's TAP goes into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Interface name in the container (default `eth0`; the port name when
    /// the TAP stays in the daemon's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// Address with prefix length, e.g. `10.77.0.11/24`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// `name` is an existing persistent TAP in the daemon's namespace.
    #[serde(default, skip_serializing_if = "is_false")]
    pub existing: bool,
    /// Free-form label naming the container this port serves (a container
    /// name or ID, a pod name); shown by `port.ls`, never interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Open the TAP with a `virtio_net_hdr` and TSO/checksum offloads
    /// (default: the daemon's setting, on unless `--no-offload`). Off, the
    /// container's stack sends MTU-sized frames with full checksums.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<bool>,
    /// Port security (absent: on): the port forwards only frames whose
    /// source MAC is its own; others are dropped and counted
    /// (`spoofed_src`). `false` for a container that bridges other MACs
    /// (its own bridge, macvlan, VRRP). See docs/security.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security: Option<bool>,
    /// IP source guard: only the port's `ip`, its IPv6 link-local (from its
    /// MAC) and the unspecified address as ARP sender and IPv4/IPv6 source;
    /// others are dropped and counted (`spoofed_ip`). Needs `ip` and port
    /// security.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ip_guard: bool,
    /// What the container's interface is: a TAP (the default) or one end
    /// of a veth pair whose other end the switch drives (docs/veth.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
    /// `false`: this veth port stays off the eBPF fast path of a daemon
    /// run with `--fastpath ebpf` (docs/fastpath.md). Default: on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fastpath: Option<bool>,
}

/// The kind of interface a container gets (`port.add`'s `backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// A TAP device, whose fd the switch reads and writes.
    #[default]
    Tap,
    /// A veth pair: the peer in the container, the host end in the
    /// daemon's namespace behind a packet socket.
    Veth,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Tap => "tap",
            Backend::Veth => "veth",
        }
    }

    pub fn is_tap(&self) -> bool {
        *self == Backend::Tap
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "tap" => Ok(Backend::Tap),
            "veth" => Ok(Backend::Veth),
            _ => Err(format!("unknown backend {s:?}: give tap or veth")),
        }
    }
}

/// `port.rm`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRm {
    pub name: String,
}

/// `port.set`: changes the label of an existing port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSet {
    pub name: String,
    /// The new `container` label; `null` clears it. Required, so that a
    /// request that forgets it does not clear a label by accident.
    #[serde(deserialize_with = "present")]
    pub container: Option<String>,
}

/// Deserializes an `Option` field that must be present (`null` allowed):
/// with `deserialize_with` and no `default`, serde reports it missing.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

/// `fdb.show` and `fdb.flush`: which entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdbSelect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Entries pointing at this local port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Entries pointing at this VTEP (`ADDR` or `ADDR:PORT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<String>,
}

/// `fdb.add`: a static entry, to a local port or to a VTEP (exactly one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdbAdd {
    pub network: String,
    pub mac: MacAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// A VTEP of the network (`ADDR` or `ADDR:PORT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<String>,
}

/// `fdb.del`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdbDel {
    pub network: String,
    pub mac: MacAddr,
}

/// `vtep.add`: a remote tunnel endpoint of a network with a VNI.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VtepAdd {
    pub network: String,
    /// `198.18.0.2`, `198.18.0.2:4789`, `fd00::2` or `[fd00::2]:4789`; the
    /// port defaults to the daemon's VXLAN port.
    pub addr: String,
}

/// `vtep.rm`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VtepRm {
    pub network: String,
    /// As in `vtep.add`; without a port, the network's VTEP at that IP is
    /// removed whatever its port (a network has at most one VTEP per IP).
    pub addr: String,
}

/// `vtep.ls`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VtepLs {
    /// Only this network's VTEPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// `stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

mod reply;
pub use reply::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: &str) -> CtlError {
        parse_request(line.as_bytes()).expect_err(line)
    }

    #[test]
    fn parses_commands_with_and_without_args() {
        assert_eq!(
            parse_request(br#"{"cmd":"ping"}"#).unwrap(),
            Request::Ping(NoArgs {})
        );
        assert_eq!(
            parse_request(br#"{"cmd":"network.ls","args":null}"#).unwrap(),
            Request::NetworkLs(NoArgs {})
        );
        assert_eq!(
            parse_request(br#"{"cmd":"fdb.show"}"#).unwrap(),
            Request::FdbShow(FdbSelect::default())
        );
        let r = parse_request(
            br#"{"cmd":"port.add","args":{"name":"c1","network":"red","ip":"10.77.0.11/24","mac":"02:00:00:00:00:01"}}"#,
        )
        .unwrap();
        let Request::PortAdd(p) = r else {
            panic!("{r:?}")
        };
        assert_eq!(p.name, "c1");
        assert_eq!(p.ip.as_deref(), Some("10.77.0.11/24"));
        assert_eq!(p.mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert!(!p.existing);
    }

    #[test]
    fn requests_round_trip_through_lines() {
        let reqs = [
            Request::Ping(NoArgs {}),
            Request::NetworkCreate(NetworkCreate {
                name: "red".into(),
                subnet: Some("10.77.0.0/24".into()),
                gateway: None,
                mtu: Some(9000),
                ..Default::default()
            }),
            Request::NetworkCreate(NetworkCreate {
                name: "blue".into(),
                vni: Some(4242),
                learn_vteps: true,
                vteps: vec!["198.18.0.2".into(), "[fd00::2]:4789".into()],
                ..Default::default()
            }),
            Request::NetworkRm(NetworkRm {
                name: "red".into(),
                force: true,
            }),
            Request::FdbAdd(FdbAdd {
                network: "red".into(),
                mac: MacAddr([2, 0, 0, 0, 0, 9]),
                port: Some("c1".into()),
                vtep: None,
            }),
            Request::FdbAdd(FdbAdd {
                network: "blue".into(),
                mac: MacAddr([2, 0, 0, 0, 0, 9]),
                port: None,
                vtep: Some("198.18.0.2".into()),
            }),
            Request::VtepAdd(VtepAdd {
                network: "blue".into(),
                addr: "[fd00::2]:4789".into(),
            }),
            Request::VtepLs(VtepLs {
                network: Some("blue".into()),
            }),
            Request::VtepRm(VtepRm {
                network: "blue".into(),
                addr: "198.18.0.2".into(),
            }),
            Request::Stats(StatsArgs::default()),
        ];
        for r in reqs {
            let line = r.to_line();
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(parse_request(&line[..line.len() - 1]).unwrap(), r);
        }
    }

    #[test]
    fn every_command_name_is_known() {
        let all = [
            Request::Ping(NoArgs {}),
            Request::Version(NoArgs {}),
            Request::NetworkCreate(NetworkCreate::default()),
            Request::NetworkLs(NoArgs {}),
            Request::NetworkRm(NetworkRm::default()),
            Request::PortAdd(PortAdd::default()),
            Request::PortLs(NoArgs {}),
            Request::PortRm(PortRm::default()),
            Request::PortSet(PortSet::default()),
            Request::FdbShow(FdbSelect::default()),
            Request::FdbAdd(FdbAdd {
                network: String::new(),
                mac: MacAddr::ZERO,
                port: None,
                vtep: None,
            }),
            Request::FdbDel(FdbDel {
                network: String::new(),
                mac: MacAddr::ZERO,
            }),
            Request::FdbFlush(FdbSelect::default()),
            Request::VtepAdd(VtepAdd::default()),
            Request::VtepLs(VtepLs::default()),
            Request::VtepRm(VtepRm::default()),
            Request::Stats(StatsArgs::default()),
            Request::ClusterStatus(NoArgs {}),
            Request::IpamAllocate(IpamAllocate::default()),
            Request::IpamRelease(IpamRelease::default()),
            Request::Monitor(NoArgs {}),
            Request::CaptureStart(CaptureStart::default()),
            Request::MirrorAdd(MirrorAdd::default()),
            Request::MirrorRm(MirrorRm::default()),
            Request::MirrorLs(NoArgs {}),
        ];
        assert_eq!(all.len(), COMMANDS.len());
        for r in &all {
            assert!(COMMANDS.contains(&r.name()), "{}", r.name());
            let v = serde_json::to_value(r).unwrap();
            assert_eq!(v["cmd"], r.name());
        }
    }

    #[test]
    fn unknown_command_lists_the_known_ones() {
        let e = err(r#"{"cmd":"port.ad","args":{}}"#);
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(
            e.message
                .starts_with(r#"unknown command "port.ad"; known commands: ping, version,"#),
            "{}",
            e.message
        );
        assert!(e.message.contains("port.add"));
    }

    #[test]
    fn missing_and_unknown_fields_are_named() {
        let e = err(r#"{"cmd":"port.add","args":{"name":"c1"}}"#);
        assert_eq!(e.message, r#"port.add: missing field "network""#);
        let e = err(r#"{"cmd":"port.add","args":{"name":"c1","network":"red","netnz":"x"}}"#);
        assert!(
            e.message
                .starts_with(r#"port.add: unknown field "netnz", expected one of"#),
            "{}",
            e.message
        );
        let e = err(r#"{"cmd":"ping","args":{"x":1}}"#);
        assert!(
            e.message.starts_with(r#"ping: unknown field "x""#),
            "{}",
            e.message
        );
        let e = err(r#"{"cmd":"ping","argz":{}}"#);
        assert!(
            e.message.contains(r#"unknown field "argz""#),
            "{}",
            e.message
        );
        let e = err(r#"{"args":{}}"#);
        assert!(
            e.message.contains(r#"missing field "cmd""#),
            "{}",
            e.message
        );
    }

    #[test]
    fn port_set_needs_the_container_field_and_takes_null() {
        let ok = |line: &str| parse_request(line.as_bytes()).unwrap();
        assert_eq!(
            ok(r#"{"cmd":"port.set","args":{"name":"vx1","container":"web"}}"#),
            Request::PortSet(PortSet {
                name: "vx1".into(),
                container: Some("web".into())
            })
        );
        assert_eq!(
            ok(r#"{"cmd":"port.set","args":{"name":"vx1","container":null}}"#),
            Request::PortSet(PortSet {
                name: "vx1".into(),
                container: None
            })
        );
        let e = err(r#"{"cmd":"port.set","args":{"name":"vx1"}}"#);
        assert_eq!(e.message, r#"port.set: missing field "container""#);
        let e = err(r#"{"cmd":"port.set","args":{"name":"vx1","container":null,"mtu":1}}"#);
        assert!(
            e.message
                .starts_with(r#"port.set: unknown field "mtu", expected"#),
            "{}",
            e.message
        );
    }

    #[test]
    fn wrong_types_are_named() {
        let e = err(r#"{"cmd":"network.create","args":{"name":"red","mtu":"big"}}"#);
        assert!(
            e.message
                .starts_with("network.create: invalid type: string"),
            "{}",
            e.message
        );
        let e = err(r#"{"cmd":"port.rm","args":["c1"]}"#);
        assert_eq!(
            e.message,
            r#"port.rm: "args" must be a JSON object, not an array"#
        );
        let e = err(r#"{"cmd":"fdb.del","args":{"network":"red","mac":"zz"}}"#);
        assert!(
            e.message.contains(r#"invalid MAC address "zz""#),
            "{}",
            e.message
        );
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let e = err(r#"{"cmd": "ping""#);
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(
            e.message.starts_with("malformed request: "),
            "{}",
            e.message
        );
        assert!(e.message.contains("line 1 column"), "{}", e.message);
        let e = err("hello");
        assert!(
            e.message.contains("expected value at line 1 column 1"),
            "{}",
            e.message
        );
        let e = err("[1,2]");
        assert!(
            e.message.starts_with("malformed request: "),
            "{}",
            e.message
        );
    }

    #[test]
    fn vxlan_requests_parse_from_their_wire_form() {
        let r = parse_request(
            br#"{"cmd":"network.create","args":{"name":"blue","vni":4242,"learn_vteps":true,"vteps":["198.18.0.2"]}}"#,
        )
        .unwrap();
        let Request::NetworkCreate(n) = r else {
            panic!("{r:?}")
        };
        assert_eq!((n.vni, n.learn_vteps), (Some(4242), true));
        assert_eq!(n.vteps, vec!["198.18.0.2"]);
        assert_eq!(
            parse_request(br#"{"cmd":"vtep.ls"}"#).unwrap(),
            Request::VtepLs(VtepLs::default())
        );
        let e = err(r#"{"cmd":"vtep.add","args":{"network":"blue"}}"#);
        assert_eq!(e.message, r#"vtep.add: missing field "addr""#);
        let r = parse_request(
            br#"{"cmd":"fdb.add","args":{"network":"blue","mac":"02:00:00:00:00:01","vtep":"198.18.0.2"}}"#,
        )
        .unwrap();
        let Request::FdbAdd(f) = r else {
            panic!("{r:?}")
        };
        assert_eq!((f.port, f.vtep.as_deref()), (None, Some("198.18.0.2")));
    }

    #[test]
    fn gateway_port_is_snake_case_and_absent_means_none() {
        let r = parse_request(
            br#"{"cmd":"network.create","args":{"name":"g","subnet":"10.88.0.0/24","gateway":"10.88.0.1","gateway_port":"host","gateway_ifname":"vxgw0"}}"#,
        )
        .unwrap();
        let Request::NetworkCreate(n) = r else {
            panic!("{r:?}")
        };
        assert_eq!(n.gateway_port, Some(GatewayPort::Host));
        assert_eq!(n.gateway_ifname.as_deref(), Some("vxgw0"));
        let e = err(r#"{"cmd":"network.create","args":{"name":"g","gateway_port":"bridge"}}"#);
        assert!(
            e.message
                .contains(r#"unknown variant "bridge", expected one of "host", "switch", "none""#),
            "{}",
            e.message
        );
        // A reply without the field (an older daemon) reads as "none".
        let info: NetworkInfo = serde_json::from_str(
            r#"{"name":"g","subnet":null,"gateway":null,"mtu":1500,"vni":null,"learn_vteps":false,"vteps":[],"ports":[]}"#,
        )
        .unwrap();
        assert_eq!(info.gateway_port, GatewayPort::None);
        assert_eq!(
            serde_json::to_value(GatewayPort::Switch).unwrap(),
            serde_json::json!("switch")
        );
    }

    #[test]
    fn fdb_rows_carry_port_or_vtep_and_both_keys() {
        let row = FdbRow {
            network: "blue".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            port: None,
            vtep: Some("198.18.0.2:4789".into()),
            kind: FdbKind::Learned,
            age_ms: 5,
        };
        assert_eq!(
            serde_json::to_value(&row).unwrap(),
            serde_json::json!({"network": "blue", "mac": "02:00:00:00:00:01", "port": null,
                "vtep": "198.18.0.2:4789", "kind": "learned", "age_ms": 5})
        );
    }

    #[test]
    fn os_error_numbers_are_stripped_wherever_they_are() {
        assert_eq!(
            strip_os_error("No such file or directory (os error 2)"),
            "No such file or directory"
        );
        assert_eq!(
            strip_os_error(
                "configuring eth0: set MTU 65535 failed: Invalid argument (os error 22): MTU \
                 greater than device maximum"
            ),
            "configuring eth0: set MTU 65535 failed: Invalid argument: MTU greater than device \
             maximum"
        );
        assert_eq!(strip_os_error("a (os error x) b"), "a (os error x) b");
        assert_eq!(strip_os_error("plain"), "plain");
    }

    #[test]
    fn replies_encode_as_the_envelope() {
        let ok = encode_reply(&Ok(Reply::FdbFlushed(FdbFlushed { removed: 3 })));
        assert_eq!(ok, b"{\"ok\":true,\"result\":{\"removed\":3}}\n");
        let e = encode_reply(&Err(CtlError::not_found("no such port")));
        assert_eq!(
            std::str::from_utf8(&e).unwrap(),
            "{\"ok\":false,\"error\":{\"kind\":\"not_found\",\"message\":\"no such port\"}}\n"
        );
        let r: Response = serde_json::from_slice(&e).unwrap();
        assert!(!r.ok);
        assert_eq!(r.error.unwrap().kind, ErrorKind::NotFound);
        let r: Response =
            serde_json::from_str(r#"{"ok":false,"error":{"kind":"new_kind","message":"m"}}"#)
                .unwrap();
        assert_eq!(r.error.unwrap().kind, ErrorKind::Other);
    }
}
