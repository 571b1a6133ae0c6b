//! The command line's shape: every subcommand, option and help text, as
//! clap derive types. Nothing here talks to the daemon; [`super::request`]
//! turns a parsed command into a protocol request and [`super::settings`]
//! the daemon's options into its configuration.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::demo::{MAX_CONTAINERS, MIN_CONTAINERS};
use vxswitch::ctl::DEFAULT_SOCKET;
use vxswitch::docker;
use vxswitch::pktgen::PktgenCmd;
use vxswitch::switch::BusyPoll;
use vxswitch::wire::MacAddr;

#[derive(Parser, Debug)]
#[command(
    name = "vxswitch",
    version,
    about = "A userspace virtual switch for containers",
    propagate_version = true
)]
pub struct Cli {
    /// The daemon's control socket.
    #[arg(
        long,
        global = true,
        env = "VXSWITCH_SOCKET",
        default_value = DEFAULT_SOCKET,
        value_name = "PATH"
    )]
    pub socket: PathBuf,
    /// Print the raw JSON result instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the switch in the foreground (stop with Ctrl-C or SIGTERM).
    #[command(
        after_help = "The daemon listens on --socket (or VXSWITCH_SOCKET) and logs \
                            to stderr; it has no result to print, so --json is refused."
    )]
    Daemon(Box<DaemonArgs>),
    /// Create, list and remove networks (L2 broadcast domains).
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Attach containers to networks, list and detach them.
    #[command(subcommand)]
    Port(PortCmd),
    /// Add, list and remove the VTEPs (remote hosts) of VXLAN networks.
    #[command(subcommand)]
    Vtep(VtepCmd),
    /// Show and edit the forwarding database (MAC -> port or VTEP).
    #[command(subcommand)]
    Fdb(FdbCmd),
    /// This daemon in its cluster (daemon --cluster).
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Per-port and per-VTEP frame, byte and drop counters, VXLAN socket
    /// and FDB counters.
    Stats {
        /// Only this port.
        port: Option<String>,
        /// Show live per-port rates (frames/s, bit/s, drops/s) every
        /// SECS seconds (default 1) until interrupted: a table redrawn in
        /// place on a terminal, plain lines when piped.
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "1")]
        watch: Option<f64>,
    },
    /// Follow the daemon's events as they happen: MACs learned, moved,
    /// aged and refused; ports added, removed and gone; VTEPs; other
    /// changes. One line each (with --json, one JSON object each) until
    /// interrupted.
    Monitor,
    /// Capture what the switch sees on a port, a network's ports or a
    /// VTEP, as pcapng (-w FILE, or -w - for `tshark -r -`), or one line
    /// per frame. Ctrl-C (or -c) ends it; copies a slow reader missed are
    /// reported at the end.
    Capture(CaptureArgs),
    /// Check that the daemon answers.
    Ping,
    /// Show the CLI's and the daemon's versions.
    Version,
    /// Generate probe frames on an interface (tx) or count them at the
    /// other end (rx), like the kernel's pktgen (needs CAP_NET_RAW).
    #[command(
        subcommand,
        after_help = "pktgen works on interfaces directly and does not talk to the daemon, \
                            so --socket and VXSWITCH_SOCKET are ignored. With --json it prints \
                            the result as a JSON object."
    )]
    Pktgen(PktgenCmd),
    /// Serve Docker's network-driver plugin API: `docker network create -d
    /// vxswitch` networks become vxswitch networks of the daemon at --socket.
    #[command(
        name = "docker-plugin",
        after_help = "Runs in the foreground until SIGTERM or Ctrl-C; see docs/docker.md. \
                            It logs to stderr and has no result to print: --json is refused."
    )]
    DockerPlugin {
        /// The socket Docker connects to; its file name (without .sock) is
        /// the driver name for `docker network create -d`.
        #[arg(long, default_value = docker::DEFAULT_PLUGIN_SOCKET, value_name = "PATH")]
        plugin_socket: PathBuf,
        /// Where the plugin records each Docker network, to make it again
        /// after the daemon restarted.
        #[arg(long, default_value = docker::DEFAULT_STATE_DIR, value_name = "DIR")]
        state_dir: PathBuf,
        /// dockerd's API socket, asked for the container name of each
        /// endpoint (`port ls` CONTAINER) [default: DOCKER_HOST if
        /// unix://PATH, else /var/run/docker.sock]
        #[arg(long, value_name = "PATH")]
        docker_socket: Option<PathBuf>,
        /// Log every call from Docker and the reply to stderr.
        #[arg(long)]
        debug: bool,
    },
    /// Run the whole job once with an embedded default (needs root): a
    /// switch, containers in network namespaces, pings, a TCP transfer,
    /// FDB and counters; everything it creates is removed at the end.
    #[command(
        after_help = "The demo runs a private daemon of its own on a socket in a \
                            temporary directory, so --socket and VXSWITCH_SOCKET are ignored. \
                            It prints a narrative, not a result: --json is refused."
    )]
    Demo {
        /// Number of containers, 2 to 8.
        #[arg(
            long,
            default_value_t = 3,
            value_name = "N",
            value_parser = clap::builder::RangedU64ValueParser::<usize>::new()
                .range(MIN_CONTAINERS as u64..=MAX_CONTAINERS as u64)
        )]
        containers: usize,
        /// Seconds of TCP transfer.
        #[arg(long, default_value_t = 3, value_name = "S")]
        seconds: u64,
    },
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// TOML file with [fdb], [vxlan], [[network]] and [[port]] entries to apply at start.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Forget learned MACs not seen for this long (0: never). Default 300.
    #[arg(long, value_name = "SECS")]
    pub ageing_time: Option<u64>,
    /// Most FDB entries in total. Default 65536.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub fdb_max_entries: Option<u64>,
    /// Most FDB entries pointing at one port (or VTEP). Default 4096.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub fdb_max_per_port: Option<u64>,
    /// Most FDB entries of one network, unless it was created with
    /// --fdb-max-entries. Default 16384.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub fdb_max_per_network: Option<u64>,
    /// UDP port of VXLAN: listened on, and sent to when a VTEP has no port.
    /// Default 4789 (Linux vxlan devices created without dstport use 8472).
    #[arg(long, value_name = "PORT")]
    pub vxlan_port: Option<u16>,
    /// MTU of the network between the hosts. Default 1500. Ports of VXLAN
    /// networks default to this minus 50 (IPv4 underlay).
    #[arg(long, value_name = "BYTES")]
    pub underlay_mtu: Option<u32>,
    /// Open TAPs without a virtio_net_hdr: no TCP segmentation or checksum
    /// offload between containers and the switch (slower; for comparison).
    #[arg(long)]
    pub no_offload: bool,
    /// Busy-poll instead of sleeping between frames: `auto` spins while
    /// the next frame is expected within 2 ms, at most one core in all
    /// and none when idle; USECS spins this long after every frame
    /// (each worker; 0 to 1000000). Default 0 (off).
    #[arg(long, value_name = "auto|USECS", value_parser = BusyPoll::parse)]
    pub busy_poll: Option<BusyPoll>,
    /// How uplinks (`network create --uplink`) take frames in from their
    /// interface: `ring`, a TPACKET_V2 receive ring per worker (frames up
    /// to the MTU without a system call, GRO'd super-frames with one
    /// `read`), or `socket`, one `read` per frame. Default: socket
    /// (docs/uplink.md, "How it works").
    #[arg(long, env = "VXSWITCH_UPLINK_RX", value_name = "ring|socket", value_parser = vxswitch::switch::UplinkRx::parse_mode)]
    pub uplink_rx: Option<bool>,
    /// MiB of frames from the LAN not read yet that each uplink socket
    /// (one per worker) may hold before the kernel drops them: its receive
    /// buffer, and with `--uplink-rx ring` also the ring's size (allocated
    /// up front). 1 to 256; default 8.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub uplink_buffer: Option<u32>,
    /// `ebpf`: known unicast between veth ports goes straight from one
    /// container to the other in the kernel (a tc program the switch keeps
    /// in step with its FDB); everything else still passes the switch.
    /// Needs a binary built with clang and CAP_BPF/CAP_NET_ADMIN; without
    /// them the daemon says why and forwards in userspace. Default: off
    /// (docs/fastpath.md). The environment's VXSWITCH_FASTPATH says the
    /// same.
    #[arg(long, env = "VXSWITCH_FASTPATH", value_name = "ebpf|off", value_parser = |s: &str| s.parse::<vxswitch::fastpath::Mode>())]
    pub fastpath: Option<vxswitch::fastpath::Mode>,
    /// With --fastpath ebpf: pin the fast path's maps in DIR (on a BPF
    /// filesystem), where a restarted daemon finds them again. Default:
    /// /sys/fs/bpf/vxswitch/ and the socket's path (mounting bpffs on
    /// /sys/fs/bpf when it is not).
    #[arg(long, value_name = "DIR")]
    pub fastpath_pins: Option<PathBuf>,
    /// The kind of interface containers get unless their network or their
    /// `port add` says: `tap` (default) or `veth` (docs/veth.md). The
    /// environment's VXSWITCH_BACKEND says the same.
    #[arg(long, env = "VXSWITCH_BACKEND", value_name = "tap|veth")]
    pub backend: Option<vxswitch::ctl::proto::Backend>,
    /// What the host ends of veth ports are called, then the port's name
    /// (default vxv-: port c0's is vxv-c0). Daemons sharing a network
    /// namespace need one each (docs/veth.md). The environment's
    /// VXSWITCH_VETH_PREFIX says the same.
    #[arg(long, env = "VXSWITCH_VETH_PREFIX", value_name = "PREFIX")]
    pub veth_prefix: Option<String>,
    /// Dataplane threads; each TAP gets one queue per thread. Default: one
    /// per CPU.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=16))]
    pub workers: Option<u64>,
    /// Keep networks, ports, VTEPs and static FDB entries in DIR/state.json
    /// and the TAPs in the containers when the daemon stops; the next
    /// start with the same DIR re-attaches them. Default: none (a stop
    /// deletes every TAP the daemon created).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Run in the background: return once the daemon answers on its socket
    /// (exit status 1 with the daemon's error if it does not start), with
    /// its log in --log-file and its PID in --pidfile.
    #[arg(long)]
    pub detach: bool,
    /// Write the daemon's PID to this file once it answers, and remove it
    /// when it stops. Default with --detach: the socket's path with .pid
    /// (/run/vxswitch/vxswitch.pid); without --detach: none.
    #[arg(long, value_name = "PATH")]
    pub pidfile: Option<PathBuf>,
    /// With --detach: append the daemon's log to this file. Default: the
    /// socket's path with .log (/run/vxswitch/vxswitch.log).
    #[arg(long, value_name = "PATH", requires = "detach")]
    pub log_file: Option<PathBuf>,
    /// Join a cluster through etcd at these client URLs (comma-separated,
    /// http://HOST:2379, or https:// with --cluster-cacert): cluster networks, their VTEPs and remote FDB
    /// entries come from it (docs/cluster.md). Needs --underlay-ip.
    #[arg(long, value_name = "URLS")]
    pub cluster: Option<String>,
    /// With --cluster: this host's address that the other hosts send its
    /// VXLAN traffic to.
    #[arg(long, value_name = "ADDR")]
    pub underlay_ip: Option<std::net::IpAddr>,
    /// With --cluster: this host's id, unique in the cluster. Default: the
    /// host name.
    #[arg(long, value_name = "ID")]
    pub host_id: Option<String>,
    /// With --cluster: the lease TTL in seconds; a host that dies vanishes
    /// from the others this long after. Default 10.
    #[arg(long, value_name = "SECS")]
    pub cluster_ttl: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (e.g.
    /// 127.0.0.1:9478). Default: off. Anyone who can reach the address can
    /// read the counters, port and network names: keep it on localhost or
    /// a management network (docs/observability.md).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// With --cluster https://...: the PEM CA certificate that signed
    /// etcd's server certificate (required for https).
    #[arg(long, value_name = "FILE")]
    pub cluster_cacert: Option<PathBuf>,
    /// With --cluster https://...: this host's PEM client certificate, for
    /// etcd's --client-cert-auth (with --cluster-key).
    #[arg(long, value_name = "FILE", requires = "cluster_key")]
    pub cluster_cert: Option<PathBuf>,
    /// With --cluster-cert: its PEM private key.
    #[arg(long, value_name = "FILE", requires = "cluster_cert")]
    pub cluster_key: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// The port to capture.
    #[arg(required_unless_present_any = ["network", "vtep"], conflicts_with_all = ["network", "vtep"])]
    pub port: Option<String>,
    /// Every port of this network (as it is when the capture starts).
    #[arg(long, value_name = "NAME", conflicts_with = "vtep")]
    pub network: Option<String>,
    /// Frames decapsulated from this VTEP (IP or IP:PORT, as `vtep ls` shows).
    #[arg(long, value_name = "ADDR")]
    pub vtep: Option<String>,
    /// Write pcapng to FILE (`-` for stdout) instead of printing lines.
    #[arg(short = 'w', value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Stop after COUNT frames.
    #[arg(short = 'c', value_name = "COUNT")]
    pub count: Option<u64>,
    /// Frames the switch received from the port (in), sent to it (out), or both.
    #[arg(long, value_enum, default_value = "both")]
    pub direction: DirectionArg,
    /// Bytes kept of each frame (64 to 65536).
    #[arg(long, value_name = "N", default_value_t = 65536)]
    pub snaplen: u32,
    /// Write super-frames (TCP segmentation offload) as the wire-size
    /// frames they stand for, instead of as the switch holds them.
    #[arg(long)]
    pub segment: bool,
}

/// `capture --direction`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum DirectionArg {
    In,
    Out,
    Both,
}

/// `--gateway-port`: the protocol's `GatewayPort`, spelt the same.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum GatewayPortArg {
    Host,
    Switch,
    None,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// The cluster agent's state: etcd reachable, registered, in sync, the
    /// lease, the revision, hosts and endpoints, the last error.
    Status,
}

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create a network; with --vni it spans hosts over VXLAN.
    Create(NetworkCreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls,
    /// Remove a network.
    #[command(alias = "remove")]
    Rm {
        name: String,
        /// Remove its ports too instead of refusing.
        #[arg(long, short)]
        force: bool,
    },
}

#[derive(Args, Debug)]
pub struct NetworkCreateArgs {
    pub name: String,
    /// Subnet of the network's ports, e.g. 10.77.0.0/24.
    #[arg(long)]
    pub subnet: Option<String>,
    /// Default gateway of the network's ports (needs --subnet).
    #[arg(long)]
    pub gateway: Option<String>,
    /// MTU of the network's ports, 68 to 65521. Default 1500; with --vni, the
    /// daemon's underlay MTU minus 50, or minus 70 if a --vtep is IPv6.
    /// For an IPv6 underlay whose VTEPs are added later with 'vtep
    /// add', give --mtu = underlay MTU - 70 (e.g. 1430).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// VXLAN network identifier, 0 to 16777215: the same VNI on every
    /// host joins the network's ports into one L2 domain.
    #[arg(long)]
    pub vni: Option<u32>,
    /// Accept VXLAN from any sender with this VNI and add it as a
    /// (dynamic) VTEP; default: only from configured VTEPs.
    #[arg(long, requires = "vni")]
    pub learn_vteps: bool,
    /// A remote host's VTEP, ADDR[:PORT] (IPv6 as fd00::2 or
    /// [fd00::2]:4789); repeat for more.
    #[arg(long = "vtep", value_name = "ADDR", requires = "vni")]
    pub vteps: Vec<String>,
    /// Who answers for the gateway address (needs --gateway): "host"
    /// (default with --gateway), a TAP in the daemon's namespace carrying
    /// it, so containers reach the host and, through its routing and
    /// NAT, the outside; "switch", the switch itself answers ARP and ping
    /// for it (no kernel interface); "none", nobody.
    #[arg(long, value_enum, value_name = "KIND")]
    pub gateway_port: Option<GatewayPortArg>,
    /// Interface name of the host gateway port (default vxgw-NAME,
    /// shortened to 15 bytes).
    #[arg(long, value_name = "IFNAME")]
    pub gateway_ifname: Option<String>,
    /// A cluster network (needs --vni; the daemon runs with --cluster):
    /// created in etcd if absent, and by that on every host of the
    /// cluster, with the VTEPs of the hosts that have ports in it.
    #[arg(long, requires = "vni", conflicts_with_all = ["learn_vteps", "vteps", "gateway_port", "gateway_ifname"])]
    pub cluster: bool,
    /// Most MACs this network may have in the forwarding table; new ones
    /// beyond are not learned (counted). Default: the daemon's
    /// --fdb-max-per-network.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub fdb_max_entries: Option<u64>,
    /// Ports of this network forward frames whatever their source MAC,
    /// unless a port add says otherwise (default: port security on).
    #[arg(long)]
    pub no_port_security: bool,
    /// The backend of the network's ports unless a port add says: tap or
    /// veth (default: the daemon's `--backend`, else tap).
    #[arg(long)]
    pub backend: Option<vxswitch::ctl::proto::Backend>,
    /// ARP/ND suppression: the switch answers ARP requests and neighbour
    /// solicitations for its ports' addresses itself instead of flooding
    /// them (always on for a cluster network).
    #[arg(long)]
    pub neigh_suppress: bool,
    /// Attach the host interface IFNAME (e.g. eth0) as the network's
    /// uplink: its containers are on that LAN, each with its own MAC, as
    /// with macvlan (docs/uplink.md). --gateway is then the LAN's router.
    #[arg(long, value_name = "IFNAME", conflicts_with = "cluster")]
    pub uplink: Option<String>,
    /// The uplink's VLAN id, 1 to 4094: frames leave tagged, only this
    /// VLAN's frames come in (like macvlan's parent=eth0.10).
    #[arg(long, value_name = "ID", requires = "uplink")]
    pub vlan: Option<u16>,
    /// Storm control: broadcast and multicast frames per second taken in
    /// from the LAN; more are dropped and counted (storm). 0: no limit.
    /// Default 1000.
    #[arg(long, value_name = "PPS", requires = "uplink")]
    pub storm_pps: Option<u32>,
}

#[derive(Subcommand, Debug)]
pub enum PortCmd {
    /// Create a TAP in a container's namespace and attach it to a network.
    Add(PortAddArgs),
    /// List ports.
    #[command(alias = "list")]
    Ls,
    /// Detach a port (a TAP vxswitch created is deleted).
    #[command(alias = "remove")]
    Rm { name: String },
    /// Change a port's container label (what `port ls` shows as CONTAINER).
    Set {
        name: String,
        /// The new label: the container's name, ID or pod.
        #[arg(
            long,
            conflicts_with = "no_container",
            required_unless_present = "no_container"
        )]
        container: Option<String>,
        /// Clear the label.
        #[arg(long)]
        no_container: bool,
    },
    /// Mirror a port (SPAN): copies of its frames go to a monitoring port.
    #[command(subcommand)]
    Mirror(MirrorCmd),
}

#[derive(Subcommand, Debug)]
pub enum MirrorCmd {
    /// Copy what PORT sends and is sent to the port --to (a monitoring
    /// container running tcpdump or an IDS).
    Add {
        port: String,
        /// The monitoring port.
        #[arg(long)]
        to: String,
        /// in: what PORT sends into the switch; out: what the switch sends it.
        #[arg(long, value_enum, default_value = "both")]
        direction: DirectionArg,
    },
    /// Stop mirroring PORT.
    #[command(alias = "remove")]
    Rm { port: String },
    /// List the mirrors.
    #[command(alias = "list")]
    Ls,
}

#[derive(Args, Debug)]
pub struct PortAddArgs {
    /// Port name (with --existing: the name of the TAP to attach).
    pub name: String,
    /// The network to attach to.
    #[arg(long)]
    pub network: String,
    /// The container's namespace file, e.g. /run/netns/c1.
    #[arg(long, conflicts_with = "pid")]
    pub netns: Option<String>,
    /// A process whose network namespace the TAP goes into.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Interface name in the container (default eth0).
    #[arg(long)]
    pub ifname: Option<String>,
    /// The container's MAC (default: a generated locally administered one).
    #[arg(long)]
    pub mac: Option<MacAddr>,
    /// Address with prefix length, e.g. 10.77.0.11/24.
    #[arg(long)]
    pub ip: Option<String>,
    /// Link MTU, 68 to 65521, the largest a TAP accepts (default: the network's).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Attach the existing persistent TAP NAME in the daemon's namespace.
    #[arg(long, conflicts_with_all = ["netns", "pid", "ifname", "mac", "ip", "mtu"])]
    pub existing: bool,
    /// A label naming the container (name, ID or pod) shown by `port ls`.
    #[arg(long)]
    pub container: Option<String>,
    /// No virtio_net_hdr on this port's TAP: the container sends MTU-sized
    /// frames with full checksums (default: offloads on, unless the daemon
    /// runs with --no-offload).
    #[arg(long)]
    pub no_offload: bool,
    /// Forward frames from this port whatever their source MAC (default:
    /// only the port's own MAC; others are dropped as spoofed_src). For a
    /// container that bridges other MACs: its own bridge, macvlan, VRRP.
    #[arg(long, conflicts_with = "ip_guard")]
    pub no_port_security: bool,
    /// Also guard IP sources: only the port's --ip, its IPv6 link-local
    /// and the unspecified address as ARP sender and IPv4/IPv6 source
    /// (others dropped as spoofed_ip). Needs --ip.
    #[arg(long, requires = "ip")]
    pub ip_guard: bool,
    /// The container's interface: tap (default) or veth (a veth pair whose
    /// host end vxv-NAME the switch drives; see docs/veth.md).
    #[arg(long, conflicts_with = "existing")]
    pub backend: Option<vxswitch::ctl::proto::Backend>,
    /// Keep this veth port off the eBPF fast path (daemon --fastpath
    /// ebpf): every frame of it passes the switch (docs/fastpath.md).
    #[arg(long)]
    pub no_fastpath: bool,
}

#[derive(Subcommand, Debug)]
pub enum VtepCmd {
    /// Add a remote host's VXLAN tunnel endpoint to a network with a VNI.
    Add {
        network: String,
        /// ADDR[:PORT]: the host's underlay address; PORT defaults to the
        /// daemon's --vxlan-port. IPv6 as fd00::2 or [fd00::2]:4789.
        addr: String,
    },
    /// List VTEPs with their counters.
    #[command(alias = "list")]
    Ls {
        /// Only this network's.
        network: Option<String>,
    },
    /// Remove a VTEP and the MACs behind it.
    #[command(alias = "remove")]
    Rm {
        network: String,
        /// ADDR[:PORT]; without a port, the VTEP at that address.
        addr: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum FdbCmd {
    /// List entries (MAC -> port or VTEP), sorted by network and MAC.
    Show(FdbSelectArgs),
    /// Add a static entry (never ages, never moves) to a port or a VTEP.
    Add {
        /// The MAC, unicast and not all-zero, e.g. 02:00:00:00:00:99.
        mac: MacAddr,
        /// The network the entry belongs to.
        #[arg(long)]
        network: String,
        /// The MAC is on this port (a port of the network).
        #[arg(long, required_unless_present = "vtep", conflicts_with = "vtep")]
        port: Option<String>,
        /// The MAC is behind this VTEP of the network (ADDR[:PORT]).
        #[arg(long, value_name = "ADDR")]
        vtep: Option<String>,
    },
    /// Delete an entry, learned or static.
    Del {
        /// The MAC whose entry to delete.
        mac: MacAddr,
        /// The network the entry belongs to.
        #[arg(long)]
        network: String,
    },
    /// Remove learned entries, all or those selected (static ones stay).
    Flush(FdbSelectArgs),
}

#[derive(Args, Debug)]
pub struct FdbSelectArgs {
    /// Only this network's entries.
    #[arg(long)]
    pub network: Option<String>,
    /// Only entries pointing at this local port.
    #[arg(long, conflicts_with = "vtep")]
    pub port: Option<String>,
    /// Only entries pointing at this VTEP (ADDR[:PORT]; without a port,
    /// the VTEP at that address).
    #[arg(long, value_name = "ADDR")]
    pub vtep: Option<String>,
}
