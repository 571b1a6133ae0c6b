//! The replies of the control protocol: what each command's `ok` carries
//! (the requests and their parsing are in the parent module).

use super::*;

mod cluster;
pub use cluster::*;

/// Result of `ping`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    pub pong: bool,
    pub version: String,
}

/// Result of `version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: String,
    pub protocol: u32,
}

/// One network, as `network.create` and `network.ls` report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    pub name: String,
    pub subnet: Option<ipnet::IpNet>,
    pub gateway: Option<IpAddr>,
    pub mtu: u32,
    /// The VXLAN network identifier, if the network spans hosts.
    pub vni: Option<u32>,
    /// Whether unknown senders become dynamic VTEPs.
    pub learn_vteps: bool,
    /// Addresses of the VTEPs (configured and learned), sorted.
    pub vteps: Vec<String>,
    /// Names of the attached ports, sorted.
    pub ports: Vec<String>,
    /// Who answers for the gateway address.
    #[serde(default)]
    pub gateway_port: GatewayPort,
    /// The `host` gateway port's interface in the daemon's namespace (also
    /// the port's name), while it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_ifname: Option<String>,
    /// The MAC that answers for the gateway address (`host` and `switch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_mac: Option<MacAddr>,
    /// `cluster` for a cluster network; absent for a local one.
    #[serde(default, skip_serializing_if = "NetworkScope::is_local")]
    pub scope: NetworkScope,
    /// The switch answers ARP/ND for the addresses it knows (see
    /// `NetworkCreate::neigh_suppress`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub neigh_suppress: bool,
    /// The host interface attached as the network's uplink port; absent
    /// without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<String>,
    /// The uplink's 802.1Q VLAN id; absent when untagged or without uplink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

/// Result of `network.rm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRemoved {
    pub name: String,
    /// Ports removed with it (only with `force`).
    pub removed_ports: Vec<String>,
    /// Its VTEPs, removed with it (with the MACs learned behind them).
    pub removed_vteps: Vec<String>,
}

/// How a port's fd came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortKind {
    /// A TAP vxswitch created; removing the port deletes it.
    Created,
    /// A persistent TAP that existed before; removing the port leaves it.
    Existing,
    /// An fd handed over in-process (tests, embedding).
    Fd,
    /// The switch's own gateway responder (`gateway_port` `switch`): no
    /// interface; it answers ARP and ping for the gateway address.
    Responder,
    /// A network's uplink: a host interface on the LAN, through a packet
    /// socket; created and removed with the network.
    Uplink,
}

/// One port, as `port.add` and `port.ls` report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    pub name: String,
    pub network: String,
    pub kind: PortKind,
    /// The container's namespace file; `None` is the daemon's own.
    pub netns: Option<String>,
    /// The interface name as the kernel has it (`None` for fd ports).
    pub ifname: Option<String>,
    pub mac: Option<MacAddr>,
    pub ip: Option<ipnet::IpNet>,
    pub mtu: u32,
    /// The label given as `container` at `port.add` or `port.set`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The port exchanges TCP/UDP super-frames and partial checksums with
    /// the kernel (a TAP with a `virtio_net_hdr`); false for ports without
    /// offloads (`daemon --no-offload`, fd ports).
    #[serde(default)]
    pub offload: bool,
    /// The port is its network's gateway port (created and removed with the
    /// network; `port.rm` refuses it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub gateway: bool,
    /// Frames are forwarded only from the port's own MAC (`mac`); false for
    /// a port created without port security, or whose MAC the switch does
    /// not know (fd ports).
    #[serde(default)]
    pub port_security: bool,
    /// IP sources are guarded too (`port.add`'s `ip_guard`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub ip_guard: bool,
    /// For its network's uplink port: the host interface and its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<UplinkInfo>,
    /// The container's interface: a TAP or a veth (absent: a TAP, or no
    /// interface at all for fd ports and responders).
    #[serde(default, skip_serializing_if = "Backend::is_tap")]
    pub backend: Backend,
    /// A veth port's host end in the daemon's namespace (`vxv-PORT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ifname: Option<String>,
}

/// An uplink port's interface, as `port.ls` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkInfo {
    /// The host interface (`eth0`).
    pub ifname: String,
    /// Its VLAN id, for a tagged network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// `up`, `down` (there, but down or without carrier) or `missing` (no
    /// such interface: detached until it is back).
    pub state: String,
    /// Broadcast/multicast frames per second taken in (0: no limit).
    pub storm_pps: u32,
    /// Times the interface was found missing and attached again.
    pub reattached: u64,
    /// Frames from the LAN the kernel dropped because the uplink's socket
    /// queue was full (the dataplane fell behind), never seen by the switch.
    #[serde(default)]
    pub rx_queue_drops: u64,
    /// How its sockets take frames in (`daemon --uplink-rx`): `socket`, or
    /// `ring` with the ring's slots per socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx: Option<String>,
}

/// Result of `port.rm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRemoved {
    pub name: String,
    pub network: String,
    /// FDB entries that pointed at the port and were flushed with it.
    pub fdb_flushed: usize,
}

/// One row of `fdb.show`. Exactly one of `port` and `vtep` is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbRow {
    pub network: String,
    pub mac: MacAddr,
    /// The local port's name, for a MAC on this host.
    pub port: Option<String>,
    /// The VTEP's address (`IP:PORT`), for a MAC behind a remote host.
    pub vtep: Option<String>,
    pub kind: FdbKind,
    /// Milliseconds since the MAC was last seen (0 for static entries).
    pub age_ms: u64,
}

/// Result of `fdb.add` and `fdb.del`: where the entry points (one of
/// `port` and `vtep`; both null if a deleted entry's destination had gone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbChanged {
    pub network: String,
    pub mac: MacAddr,
    pub port: Option<String>,
    pub vtep: Option<String>,
}

/// Result of `fdb.flush`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbFlushed {
    pub removed: usize,
}

/// Counters of one port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatsRow {
    pub name: String,
    pub network: String,
    pub stats: PortStatsSnapshot,
    /// For an uplink port: its interface and state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<UplinkInfo>,
    /// For a port on the eBPF fast path: what it forwarded (in `stats`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast: Option<FastPortStats>,
}

/// One VTEP, as `vtep.add`, `vtep.ls` and `stats` report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VtepRow {
    pub network: String,
    pub vni: u32,
    /// `IP:PORT` (IPv6 as `[fd00::2]:4789`).
    pub addr: String,
    /// Learned from traffic (a network with `learn_vteps`), not configured.
    pub dynamic: bool,
    /// Managed by the cluster (a host with endpoints in the network).
    #[serde(default, skip_serializing_if = "is_false")]
    pub cluster: bool,
    /// Frames decapsulated from (rx) and encapsulated to (tx) this VTEP;
    /// bytes are inner-frame bytes.
    pub stats: PortStatsSnapshot,
}

/// Result of `vtep.rm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VtepRemoved {
    pub network: String,
    pub addr: String,
    /// FDB entries that pointed at the VTEP and were flushed with it.
    pub fdb_flushed: usize,
}

/// The eBPF fast path, as `stats` reports it (docs/fastpath.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastPathStatus {
    /// `daemon --fastpath`: "ebpf" or "off".
    pub mode: String,
    /// The program is loaded and veth ports get it.
    pub active: bool,
    /// Why it is not active (names the problem and the remedy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Ports on the fast path.
    pub ports: usize,
}

/// What the fast path forwarded from and to one port; the port's own
/// counters include it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastPortStats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
}

/// Result of `stats`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReply {
    pub ports: Vec<PortStatsRow>,
    pub fdb: FdbStats,
    /// The VXLAN sockets' counters; null until a network with a VNI exists.
    pub vxlan: Option<VxlanSnapshot>,
    /// Every VTEP (empty when `stats` is asked about one port).
    pub vteps: Vec<VtepRow>,
    /// What each `switch` gateway answered and ignored (empty when `stats`
    /// is asked about one port that is not one).
    #[serde(default)]
    pub gateways: Vec<GatewayRow>,
    /// The control socket's connections and what it refused or cut off
    /// (docs/protocol.md, "Limits").
    #[serde(default)]
    pub control: ControlStats,
    /// What the state directory records but could not be put back yet
    /// (a transient failure); retried until it works or is removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingRow>,
    /// Each network's share of the FDB and what its budget refused (empty
    /// when `stats` is asked about one port).
    #[serde(default)]
    pub networks: Vec<NetworkFdbRow>,
    /// ARP/ND suppression, per network that has it on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppress: Vec<SuppressRow>,
    /// Each dataplane worker's busy and idle time (empty when `stats` is
    /// asked about one port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<WorkerRow>,
    /// The eBPF fast path: on, off, or why not (docs/fastpath.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fastpath: Option<FastPathStatus>,
}

/// A dataplane worker's time since the daemon started, as `stats`
/// reports it: wake-ups that served frames, and the rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRow {
    pub worker: usize,
    pub busy_ms: u64,
    pub idle_ms: u64,
    /// `daemon --busy-poll`: spin windows started; of them, those that
    /// ended without a frame, and those in which the worker was preempted
    /// (`auto` then pauses spinning for a while; a window can be both).
    #[serde(default)]
    pub spin_windows: u64,
    #[serde(default)]
    pub spin_misses: u64,
    #[serde(default)]
    pub spin_preempted: u64,
}

/// A network's ARP/ND suppression, as `stats` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressRow {
    pub network: String,
    /// Addresses the switch answers for now.
    pub bindings: usize,
    #[serde(flatten)]
    pub stats: crate::gateway::SuppressStatsSnapshot,
}

/// A network's share of the FDB, as `stats` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkFdbRow {
    pub network: String,
    /// Its entries now.
    pub entries: usize,
    /// Its budget (`network.create`'s `fdb_max_entries`, or the daemon's
    /// `max_per_network`).
    pub max: usize,
    /// New MACs not learned because the budget was spent.
    pub refused: u64,
}

/// The control socket's counters, since the daemon started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlStats {
    /// Connections open now.
    pub clients: u64,
    /// Idle connections closed to make room for a newcomer.
    pub evicted: u64,
    /// Newcomers refused with `busy`: every connection had a request in
    /// progress.
    pub refused_busy: u64,
    /// Connections that did not complete a request line in time.
    pub request_timeouts: u64,
    /// Connections closed because they did not take a reply in time.
    pub reply_timeouts: u64,
    /// Connections closed after the idle timeout.
    pub idle_closed: u64,
    /// Replies answered `busy` instead: other clients held too many reply
    /// bytes unread (`MAX_QUEUED_REPLIES`).
    #[serde(default)]
    pub replies_refused: u64,
    /// Events `monitor` clients did not get because they fell behind.
    #[serde(default)]
    pub monitor_lost: u64,
}

/// Something the state file records that is not back yet, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRow {
    /// "network red", "port c1 (network red)", ...
    pub item: String,
    /// The last attempt's error.
    pub reason: String,
}

/// A `switch` gateway's counters, as `stats` reports them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRow {
    pub network: String,
    /// The gateway port's name.
    pub port: String,
    pub gateway: IpAddr,
    pub mac: MacAddr,
    pub stats: GatewayStatsSnapshot,
}

// ---------------------------------------------------------------------------
// The cluster (`docs/cluster.md`)

/// Where a network lives: this daemon only, or the whole cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkScope {
    #[default]
    Local,
    Cluster,
}

impl NetworkScope {
    pub fn is_local(&self) -> bool {
        *self == NetworkScope::Local
    }
}

impl std::fmt::Display for NetworkScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NetworkScope::Local => "local",
            NetworkScope::Cluster => "cluster",
        })
    }
}

/// How an FDB entry got there, as `fdb.show` reports it: the dataplane's
/// kinds, and `cluster` for a static entry the cluster agent manages (a
/// remote endpoint's MAC behind its host's VTEP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FdbKind {
    /// From the source address of a received frame; ages out.
    Learned,
    /// Added by the operator; never ages, never moves.
    Static,
    /// Added by the cluster agent; goes when the endpoint leaves the cluster.
    Cluster,
}

impl From<EntryKind> for FdbKind {
    fn from(k: EntryKind) -> FdbKind {
        match k {
            EntryKind::Learned => FdbKind::Learned,
            EntryKind::Static => FdbKind::Static,
        }
    }
}

/// `kind == EntryKind::Static` keeps meaning "added by the operator".
impl PartialEq<EntryKind> for FdbKind {
    fn eq(&self, k: &EntryKind) -> bool {
        *self == FdbKind::from(*k)
    }
}

/// A successful result, whichever command produced it. Serialized as the
/// bare payload: the client knows which command it sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Reply {
    Pong(Pong),
    Version(VersionInfo),
    Network(NetworkInfo),
    Networks(Vec<NetworkInfo>),
    NetworkRemoved(NetworkRemoved),
    Port(PortInfo),
    Ports(Vec<PortInfo>),
    PortRemoved(PortRemoved),
    Fdb(Vec<FdbRow>),
    FdbChanged(FdbChanged),
    FdbFlushed(FdbFlushed),
    Vtep(VtepRow),
    Vteps(Vec<VtepRow>),
    VtepRemoved(VtepRemoved),
    Stats(StatsReply),
    ClusterStatus(ClusterStatus),
    IpamAllocated(IpamAllocated),
    IpamReleased(IpamReleased),
    Monitoring(MonitorStarted),
    Capturing(CaptureStarted),
    Mirror(MirrorRow),
    Mirrors(Vec<MirrorRow>),
}

// ---------------------------------------------------------------------------
// The event stream (`monitor`, docs/observability.md)

/// `capture.start`: what to capture; exactly one of `port`, `network` and
/// `vtep`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureStart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Every port of the network (as it is when the capture starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// A VTEP, `IP:PORT` as `vtep.ls` shows it: the frames decapsulated
    /// from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<String>,
    /// `in` (received from the port), `out` (sent to it) or `both`
    /// (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// Bytes kept of each frame, 64 to 65536 (default 65536).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snaplen: Option<u32>,
    /// Stop after this many frames (default: when the client closes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Write super-frames as the wire-size frames they stand for (cut by
    /// the capture's writer), instead of as the switch holds them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub segment: bool,
}

/// `mirror.add`: copies of `port`'s frames to the port `to`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorAdd {
    pub port: String,
    pub to: String,
    /// `in` (frames the port sent into the switch), `out` (frames the
    /// switch sends it) or `both` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
}

/// `mirror.rm`: stop mirroring `port`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorRm {
    pub port: String,
}

/// A mirror, as `mirror.*` report it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorRow {
    pub port: String,
    pub to: String,
    pub direction: String,
}

/// Result of `capture.start`: from here on the connection carries pcapng.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStarted {
    /// The capture's interfaces, in the order of their pcapng interface
    /// blocks.
    pub interfaces: Vec<String>,
    pub snaplen: u32,
}

/// Result of `monitor`: from here on the connection carries one
/// `{"event": MonitorEvent}` line per event, until the client closes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorStarted {
    pub monitoring: bool,
}

/// One line of the stream after `monitor`'s reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine {
    pub event: MonitorEvent,
}

/// Something that happened in the daemon, as `monitor` streams it. Fields
/// that do not apply to the kind are absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorEvent {
    /// When the daemon told it: milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// `mac_learned`, `mac_moved`, `mac_aged`, `mac_refused`,
    /// `port_added`, `port_removed`, `port_gone`, `vtep_added`,
    /// `vtep_learned`, `vtep_removed`, `network_created`,
    /// `network_removed`, `config` (another change: `what` says which), or
    /// `lost` (`count` events this client did not take in time).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// The port (or, for a MAC behind a VTEP, absent and `vtep` set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// `IP:PORT` of the VTEP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<String>,
    /// Where a moved MAC was before: a port name or `vtep IP:PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Why: a refusal's limit, a port's or VTEP's way of going.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// For `config`: the request that changed something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub what: Option<String>,
    /// For `lost`: how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

// ---------------------------------------------------------------------------
// Errors

/// The class of a failed request, for programs; the message is for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request could not be parsed: malformed JSON, unknown command,
    /// unknown or missing field, over-long line, timeout.
    BadRequest,
    /// A named network, port or FDB entry does not exist.
    NotFound,
    /// A name (or address) is already taken.
    Exists,
    /// The object is in use (a network with ports), or a limit is reached.
    Busy,
    /// A value is out of range or inconsistent (IP outside the subnet, ...).
    InvalidArgument,
    /// Creating or attaching the TAP failed.
    PortError,
    /// The VXLAN sockets could not be opened (the UDP port is taken, ...).
    TunnelError,
    /// The daemon itself failed; worth a bug report.
    Internal,
    /// Something the request needs is out of reach (etcd, for a cluster
    /// network or address): try again later.
    Unavailable,
    /// A kind this client does not know (a newer daemon).
    #[serde(other)]
    Other,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Exists => "exists",
            ErrorKind::Busy => "busy",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::PortError => "port_error",
            ErrorKind::TunnelError => "tunnel_error",
            ErrorKind::Internal => "internal",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Other => "other",
        }
    }
}

/// A failed request: what went wrong and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct CtlError {
    pub kind: ErrorKind,
    pub message: String,
}

impl CtlError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CtlError {
            kind,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Exists, message)
    }

    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Busy, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
}

/// The envelope of a reply line, as a client reads it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CtlError>,
}

#[derive(Serialize)]
struct OkLine<'a> {
    ok: bool,
    result: &'a Reply,
}

#[derive(Serialize)]
struct ErrLine<'a> {
    ok: bool,
    error: &'a CtlError,
}

/// Encodes a reply as one line, newline included.
pub fn encode_reply(reply: &Result<Reply, CtlError>) -> Vec<u8> {
    let encoded = match reply {
        Ok(r) => serde_json::to_vec(&OkLine {
            ok: true,
            result: r,
        }),
        Err(e) => serde_json::to_vec(&ErrLine {
            ok: false,
            error: e,
        }),
    };
    let mut line = encoded.unwrap_or_else(|e| {
        // Replies are plain data; this is a bug, but the client still gets a line.
        let err = CtlError::internal(format!("cannot encode the reply: {e}"));
        serde_json::to_vec(&ErrLine {
            ok: false,
            error: &err,
        })
        .unwrap_or_default()
    });
    line.push(b'\n');
    line
}

/// The envelope, checked before the arguments so that the command name is
/// known when an argument error is reported.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    cmd: String,
    #[serde(default)]
    args: Option<Value>,
}

/// Parses one request line (without its newline). Every error is a
/// `bad_request` whose message names the problem.
pub fn parse_request(line: &[u8]) -> Result<Request, CtlError> {
    let env: Envelope = serde_json::from_slice(line).map_err(|e| {
        CtlError::bad_request(format!(
            "malformed request: {}; send one JSON object per line, like {{\"cmd\": \"ping\"}}",
            quote_ticks(&e.to_string())
        ))
    })?;
    if !COMMANDS.contains(&env.cmd.as_str()) {
        return Err(CtlError::bad_request(format!(
            "unknown command {:?}; known commands: {}",
            env.cmd,
            COMMANDS.join(", ")
        )));
    }
    let args = match env.args {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(v @ Value::Object(_)) => v,
        Some(other) => {
            return Err(CtlError::bad_request(format!(
                "{}: \"args\" must be a JSON object, not {}",
                env.cmd,
                json_type(&other)
            )))
        }
    };
    let mut obj = serde_json::Map::new();
    obj.insert("cmd".into(), Value::String(env.cmd.clone()));
    obj.insert("args".into(), args);
    serde_json::from_value(Value::Object(obj))
        .map_err(|e| CtlError::bad_request(format!("{}: {}", env.cmd, quote_ticks(&e.to_string()))))
}

/// `msg` without the " (os error N)" that `io::Error` appends to the
/// system's text: the number says nothing to a person, and every message
/// the daemon and the CLI print leaves it out, wherever it occurs (netlink
/// errors carry it in the middle: "Invalid argument (os error 22): MTU
/// greater than device maximum").
pub fn strip_os_error(msg: &str) -> String {
    const MARK: &str = " (os error ";
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(MARK) {
        let after = &rest[i + MARK.len()..];
        let digits = after
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'-')
            .count();
        if digits > 0 && after[digits..].starts_with(')') {
            out.push_str(&rest[..i]);
            rest = &after[digits + 1..];
        } else {
            out.push_str(&rest[..i + MARK.len()]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// serde writes names in backticks (`` `network` ``); people and JSON
/// tooling expect double quotes.
fn quote_ticks(s: &str) -> String {
    s.replace('`', "\"")
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
