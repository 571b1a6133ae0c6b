//! The `vxswitch` binary: `vxswitch daemon` runs the switch; every other
//! subcommand sends one request to the daemon's control socket and prints
//! the result (a table, or the raw JSON result with `--json`).
//!
//! Subcommands map one-to-one onto protocol commands (see
//! `vxswitch::ctl::proto`). To add one: a variant in [`Cmd`] and an arm in
//! [`run`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;

use vxswitch::ctl::config::check_vxlan;
use vxswitch::ctl::proto::{
    strip_os_error, FdbAdd, FdbDel, FdbSelect, GatewayPort, NetworkCreate, NetworkRm, NoArgs,
    PortAdd, PortInfo, PortRm, PortSet, StatsArgs, VersionInfo, VtepAdd, VtepLs, VtepRm,
};
use vxswitch::ctl::{render, Client, Config, Request, Server, ServerOptions, DEFAULT_SOCKET};
use vxswitch::demo::{MAX_CONTAINERS, MIN_CONTAINERS};
use vxswitch::fdb::FdbConfig;
use vxswitch::switch::EngineConfig;
use vxswitch::vxlan::VxlanConfig;
use vxswitch::wire::MacAddr;

#[derive(Parser, Debug)]
#[command(
    name = "vxswitch",
    version,
    about = "A userspace virtual switch for containers",
    propagate_version = true
)]
struct Cli {
    /// The daemon's control socket.
    #[arg(
        long,
        global = true,
        env = "VXSWITCH_SOCKET",
        default_value = DEFAULT_SOCKET,
        value_name = "PATH"
    )]
    socket: PathBuf,
    /// Print the raw JSON result instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the switch in the foreground (stop with Ctrl-C or SIGTERM).
    #[command(
        after_help = "The daemon listens on --socket (or VXSWITCH_SOCKET) and logs \
                            to stderr; it has no result to print, so --json is refused."
    )]
    Daemon(DaemonArgs),
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
    /// Per-port and per-VTEP frame, byte and drop counters, VXLAN socket
    /// and FDB counters.
    Stats {
        /// Only this port.
        port: Option<String>,
    },
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
    Pktgen(vxswitch::pktgen::PktgenCmd),
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
        #[arg(long, default_value = vxswitch::docker::DEFAULT_PLUGIN_SOCKET, value_name = "PATH")]
        plugin_socket: PathBuf,
        /// Where the plugin records each Docker network, to make it again
        /// after the daemon restarted.
        #[arg(long, default_value = vxswitch::docker::DEFAULT_STATE_DIR, value_name = "DIR")]
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
struct DaemonArgs {
    /// TOML file with [fdb], [vxlan], [[network]] and [[port]] entries to apply at start.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Forget learned MACs not seen for this long (0: never). Default 300.
    #[arg(long, value_name = "SECS")]
    ageing_time: Option<u64>,
    /// Most FDB entries in total. Default 65536.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    fdb_max_entries: Option<u64>,
    /// Most FDB entries pointing at one port (or VTEP). Default 4096.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    fdb_max_per_port: Option<u64>,
    /// UDP port of VXLAN: listened on, and sent to when a VTEP has no port.
    /// Default 4789 (Linux vxlan devices created without dstport use 8472).
    #[arg(long, value_name = "PORT")]
    vxlan_port: Option<u16>,
    /// MTU of the network between the hosts. Default 1500. Ports of VXLAN
    /// networks default to this minus 50 (IPv4 underlay).
    #[arg(long, value_name = "BYTES")]
    underlay_mtu: Option<u32>,
    /// Open TAPs without a virtio_net_hdr: no TCP segmentation or checksum
    /// offload between containers and the switch (slower; for comparison).
    #[arg(long)]
    no_offload: bool,
    /// Busy-poll for this many microseconds after the last frame before
    /// sleeping: lower latency for a core's worth of CPU while traffic
    /// flows. Default 0 (off).
    #[arg(long, value_name = "USECS", value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    busy_poll: Option<u64>,
    /// Dataplane threads; each TAP gets one queue per thread. Default: one
    /// per CPU.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=16))]
    workers: Option<u64>,
    /// Keep networks, ports, VTEPs and static FDB entries in DIR/state.json
    /// and the TAPs in the containers when the daemon stops; the next
    /// start with the same DIR re-attaches them. Default: none (a stop
    /// deletes every TAP the daemon created).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

/// `--gateway-port`: the protocol's [`GatewayPort`], spelt the same.
#[derive(ValueEnum, Clone, Copy, Debug)]
enum GatewayPortArg {
    Host,
    Switch,
    None,
}

impl From<GatewayPortArg> for GatewayPort {
    fn from(a: GatewayPortArg) -> GatewayPort {
        match a {
            GatewayPortArg::Host => GatewayPort::Host,
            GatewayPortArg::Switch => GatewayPort::Switch,
            GatewayPortArg::None => GatewayPort::None,
        }
    }
}

#[derive(Subcommand, Debug)]
enum NetworkCmd {
    /// Create a network; with --vni it spans hosts over VXLAN.
    Create {
        name: String,
        /// Subnet of the network's ports, e.g. 10.77.0.0/24.
        #[arg(long)]
        subnet: Option<String>,
        /// Default gateway of the network's ports (needs --subnet).
        #[arg(long)]
        gateway: Option<String>,
        /// MTU of the network's ports, 68 to 65521. Default 1500; with --vni, the
        /// daemon's underlay MTU minus 50, or minus 70 if a --vtep is IPv6.
        /// For an IPv6 underlay whose VTEPs are added later with 'vtep
        /// add', give --mtu = underlay MTU - 70 (e.g. 1430).
        #[arg(long)]
        mtu: Option<u32>,
        /// VXLAN network identifier, 0 to 16777215: the same VNI on every
        /// host joins the network's ports into one L2 domain.
        #[arg(long)]
        vni: Option<u32>,
        /// Accept VXLAN from any sender with this VNI and add it as a
        /// (dynamic) VTEP; default: only from configured VTEPs.
        #[arg(long, requires = "vni")]
        learn_vteps: bool,
        /// A remote host's VTEP, ADDR[:PORT] (IPv6 as fd00::2 or
        /// [fd00::2]:4789); repeat for more.
        #[arg(long = "vtep", value_name = "ADDR", requires = "vni")]
        vteps: Vec<String>,
        /// Who answers for the gateway address (needs --gateway): "host", a
        /// TAP in the daemon's namespace carrying it, so containers reach the
        /// host and, through its routing and NAT, the outside; "switch", the
        /// switch itself answers ARP and ping for it (no kernel interface);
        /// "none" (default).
        #[arg(long, value_enum, value_name = "KIND")]
        gateway_port: Option<GatewayPortArg>,
        /// Interface name of the host gateway port (default vxgw-NAME,
        /// shortened to 15 bytes).
        #[arg(long, value_name = "IFNAME")]
        gateway_ifname: Option<String>,
    },
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

#[derive(Subcommand, Debug)]
enum PortCmd {
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
}

#[derive(Args, Debug)]
struct PortAddArgs {
    /// Port name (with --existing: the name of the TAP to attach).
    name: String,
    /// The network to attach to.
    #[arg(long)]
    network: String,
    /// The container's namespace file, e.g. /run/netns/c1.
    #[arg(long, conflicts_with = "pid")]
    netns: Option<String>,
    /// A process whose network namespace the TAP goes into.
    #[arg(long)]
    pid: Option<u32>,
    /// Interface name in the container (default eth0).
    #[arg(long)]
    ifname: Option<String>,
    /// The container's MAC (default: a generated locally administered one).
    #[arg(long)]
    mac: Option<MacAddr>,
    /// Address with prefix length, e.g. 10.77.0.11/24.
    #[arg(long)]
    ip: Option<String>,
    /// Link MTU, 68 to 65521, the largest a TAP accepts (default: the network's).
    #[arg(long)]
    mtu: Option<u32>,
    /// Attach the existing persistent TAP NAME in the daemon's namespace.
    #[arg(long, conflicts_with_all = ["netns", "pid", "ifname", "mac", "ip", "mtu"])]
    existing: bool,
    /// A label naming the container (name, ID or pod) shown by `port ls`.
    #[arg(long)]
    container: Option<String>,
    /// No virtio_net_hdr on this port's TAP: the container sends MTU-sized
    /// frames with full checksums (default: offloads on, unless the daemon
    /// runs with --no-offload).
    #[arg(long)]
    no_offload: bool,
}

#[derive(Subcommand, Debug)]
enum VtepCmd {
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
enum FdbCmd {
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
struct FdbSelectArgs {
    /// Only this network's entries.
    #[arg(long)]
    network: Option<String>,
    /// Only entries pointing at this local port.
    #[arg(long, conflicts_with = "vtep")]
    port: Option<String>,
    /// Only entries pointing at this VTEP (ADDR[:PORT]; without a port,
    /// the VTEP at that address).
    #[arg(long, value_name = "ADDR")]
    vtep: Option<String>,
}

impl From<FdbSelectArgs> for FdbSelect {
    fn from(a: FdbSelectArgs) -> Self {
        FdbSelect {
            network: a.network,
            port: a.port,
            vtep: a.vtep,
        }
    }
}

fn main() -> ExitCode {
    // As `vxswitch-cni` (a symlink in the CNI plugin directory) or
    // `vxswitch cni`: the CNI plugin, driven by CNI_* variables (docs/cni.md).
    let mut argv = std::env::args_os();
    if vxswitch::cni::invoked_as_plugin(&argv.next().unwrap_or_default(), argv.next().as_deref()) {
        return ExitCode::from(vxswitch::cni::main());
    }
    let cli = Cli::parse();
    if cli.json {
        let refused = match cli.cmd {
            Cmd::Daemon(_) => Some("'daemon' runs the switch and prints only its log"),
            Cmd::Demo { .. } => Some("'demo' prints a narrative of what it does"),
            Cmd::DockerPlugin { .. } => {
                Some("'docker-plugin' serves Docker and prints only its log")
            }
            _ => None,
        };
        if let Some(why) = refused {
            Cli::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("--json has no result to print: {why}; leave out --json"),
                )
                .exit();
        }
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            // Library errors may carry io::Error's " (os error N)"; the
            // CLI's messages never show it (see `strip_os_error`).
            eprintln!("vxswitch: error: {}", strip_os_error(&msg));
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let ctx = Ctx {
        socket: cli.socket,
        json: cli.json,
    };
    match cli.cmd {
        Cmd::Daemon(a) => daemon(&ctx.socket, a),
        Cmd::Demo {
            containers,
            seconds,
        } => vxswitch::demo::run(&vxswitch::demo::DemoOptions {
            containers,
            seconds,
        }),
        Cmd::DockerPlugin {
            plugin_socket,
            state_dir,
            docker_socket,
            debug,
        } => vxswitch::docker::run(vxswitch::docker::PluginOptions {
            plugin_socket,
            daemon_socket: ctx.socket.clone(),
            state_dir,
            // A DOCKER_HOST the plugin cannot use costs the names only.
            docker_socket: vxswitch::docker::names::docker_socket(
                docker_socket,
                std::env::var("DOCKER_HOST").ok().as_deref(),
            )
            .map_err(|e| eprintln!("vxswitch: warning: {e}"))
            .ok(),
            debug,
        }),
        Cmd::Pktgen(c) => vxswitch::pktgen::run_cli(c, ctx.json).map(|text| out(&text)),
        Cmd::Network(NetworkCmd::Create {
            name,
            subnet,
            gateway,
            mtu,
            vni,
            learn_vteps,
            vteps,
            gateway_port,
            gateway_ifname,
        }) => ctx.show(
            Request::NetworkCreate(NetworkCreate {
                name,
                subnet,
                gateway,
                mtu,
                vni,
                learn_vteps,
                vteps,
                gateway_port: gateway_port.map(GatewayPort::from),
                gateway_ifname,
            }),
            render::network_created,
        ),
        Cmd::Network(NetworkCmd::Ls) => ctx.show(Request::NetworkLs(NoArgs {}), |n: &Vec<_>| {
            render::networks(n)
        }),
        Cmd::Network(NetworkCmd::Rm { name, force }) => ctx.show(
            Request::NetworkRm(NetworkRm { name, force }),
            render::network_removed,
        ),
        Cmd::Port(PortCmd::Add(a)) => ctx.show(
            Request::PortAdd(PortAdd {
                name: a.name,
                network: a.network,
                netns: a.netns,
                pid: a.pid,
                ifname: a.ifname,
                mac: a.mac,
                ip: a.ip,
                mtu: a.mtu,
                existing: a.existing,
                container: a.container,
                offload: a.no_offload.then_some(false),
            }),
            render::port_added,
        ),
        Cmd::Port(PortCmd::Ls) => {
            ctx.show(Request::PortLs(NoArgs {}), |p: &Vec<_>| render::ports(p))
        }
        Cmd::Port(PortCmd::Rm { name }) => {
            ctx.show(Request::PortRm(PortRm { name }), render::port_removed)
        }
        Cmd::Port(PortCmd::Set {
            name, container, ..
        }) => ctx.show(
            Request::PortSet(PortSet { name, container }),
            |p: &PortInfo| match &p.container {
                Some(c) => format!("port {}: container {c}\n", p.name),
                None => format!("port {}: no container label\n", p.name),
            },
        ),
        Cmd::Fdb(FdbCmd::Show(a)) => {
            ctx.show(Request::FdbShow(a.into()), |r: &Vec<_>| render::fdb(r))
        }
        Cmd::Vtep(VtepCmd::Add { network, addr }) => ctx.show(
            Request::VtepAdd(VtepAdd { network, addr }),
            render::vtep_added,
        ),
        Cmd::Vtep(VtepCmd::Ls { network }) => ctx
            .show(Request::VtepLs(VtepLs { network }), |v: &Vec<_>| {
                render::vteps(v)
            }),
        Cmd::Vtep(VtepCmd::Rm { network, addr }) => ctx.show(
            Request::VtepRm(VtepRm { network, addr }),
            render::vtep_removed,
        ),
        Cmd::Fdb(FdbCmd::Add {
            mac,
            network,
            port,
            vtep,
        }) => ctx.show(
            Request::FdbAdd(FdbAdd {
                network,
                mac,
                port,
                vtep,
            }),
            render::fdb_added,
        ),
        Cmd::Fdb(FdbCmd::Del { mac, network }) => ctx.show(
            Request::FdbDel(FdbDel { network, mac }),
            render::fdb_deleted,
        ),
        Cmd::Fdb(FdbCmd::Flush(a)) => ctx.show(Request::FdbFlush(a.into()), render::fdb_flushed),
        Cmd::Stats { port } => ctx.show(Request::Stats(StatsArgs { port }), render::stats),
        Cmd::Ping => ctx.show(
            Request::Ping(NoArgs {}),
            |p: &vxswitch::ctl::proto::Pong| {
                format!(
                    "pong from vxswitch {} at {}\n",
                    p.version,
                    ctx.socket.display()
                )
            },
        ),
        Cmd::Version => {
            if !ctx.json {
                out(&format!("client: vxswitch {}\n", env!("CARGO_PKG_VERSION")));
            }
            ctx.show(Request::Version(NoArgs {}), |v: &VersionInfo| {
                format!("daemon: vxswitch {} (protocol {})\n", v.version, v.protocol)
            })
        }
    }
}

struct Ctx {
    socket: PathBuf,
    json: bool,
}

impl Ctx {
    /// Sends `req` and prints its result: raw JSON with `--json`, else `fmt`'s text.
    fn show<T: DeserializeOwned>(
        &self,
        req: Request,
        fmt: impl Fn(&T) -> String,
    ) -> Result<(), String> {
        let mut client = Client::connect(&self.socket).map_err(|e| e.to_string())?;
        if self.json {
            let v = client.call(&req).map_err(|e| e.to_string())?;
            let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
            out(&format!("{text}\n"));
        } else {
            let v: T = client.call_as(&req).map_err(|e| e.to_string())?;
            out(&fmt(&v));
        }
        Ok(())
    }
}

/// Prints to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes()).and_then(|()| o.flush());
}

fn daemon(socket: &Path, a: DaemonArgs) -> Result<(), String> {
    let config = match &a.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let mut fdb = config.fdb.unwrap_or_else(FdbConfig::default);
    if let Some(secs) = a.ageing_time {
        fdb.ageing_ms = secs.saturating_mul(1000);
    }
    if let Some(n) = a.fdb_max_entries {
        fdb.max_entries = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = a.fdb_max_per_port {
        fdb.max_per_dest = usize::try_from(n).unwrap_or(usize::MAX);
    }
    let mut vxlan = config.vxlan.unwrap_or_else(VxlanConfig::default);
    if let Some(port) = a.vxlan_port {
        vxlan.port = port;
    }
    if let Some(mtu) = a.underlay_mtu {
        vxlan.underlay_mtu = mtu;
    }
    check_vxlan(&vxlan).map_err(|e| match &a.config {
        Some(path) => format!("{e} (config {})", path.display()),
        None => e,
    })?;
    let dp = config.dataplane.unwrap_or_default();
    dp.check().map_err(|e| match &a.config {
        Some(path) => format!("{e} (config {})", path.display()),
        None => e,
    })?;
    let mut opts = ServerOptions::new(socket);
    opts.engine = EngineConfig {
        fdb,
        vxlan,
        no_offload: a.no_offload || dp.offload == Some(false),
        busy_poll: std::time::Duration::from_micros(a.busy_poll.or(dp.busy_poll_us).unwrap_or(0)),
        workers: usize::try_from(a.workers.or(dp.workers).unwrap_or(0)).unwrap_or(0),
        ..EngineConfig::default()
    };
    opts.handle_signals = true;
    let state_dir = a
        .state_dir
        .clone()
        .or_else(|| config.state.as_ref().and_then(|s| s.dir.clone()));
    let mut server = Server::bind(opts).map_err(|e| e.to_string())?;
    let mut restored = false;
    if let Some(dir) = &state_dir {
        // Before the socket serves anyone; a corrupt file stops the start.
        let report = server
            .daemon_mut()
            .open_state_dir(dir)
            .map_err(|e| e.to_string())?;
        if let Some(dir) = &report.restored_from {
            restored = true;
            eprintln!(
                "vxswitch: restored {} network{} and {} port{} from {}{}",
                report.networks,
                if report.networks == 1 { "" } else { "s" },
                report.ports,
                if report.ports == 1 { "" } else { "s" },
                dir.join(vxswitch::ctl::persist::STATE_FILE).display(),
                match report.dropped.len() {
                    0 => String::new(),
                    n => format!(" ({n} dropped, see above)"),
                }
            );
        }
    }
    if let Some(path) = &a.config {
        // On error the server is dropped: what was created is removed again.
        let applied = config.apply_after_restore(server.daemon_mut(), path, restored);
        // Persistent TAPs the config made before an error must be on record.
        server.daemon_mut().save_state();
        applied.map_err(|e| e.to_string())?;
    }
    eprintln!(
        "vxswitch: daemon {} listening on {}",
        env!("CARGO_PKG_VERSION"),
        socket.display()
    );
    server.run().map_err(|e| e.to_string())?;
    eprintln!("vxswitch: stopped");
    Ok(())
}
