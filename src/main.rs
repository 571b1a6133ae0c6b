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

use clap::{Args, Parser, Subcommand};
use serde::de::DeserializeOwned;

use vxswitch::ctl::proto::{
    FdbAdd, FdbDel, FdbSelect, NetworkCreate, NetworkRm, NoArgs, PortAdd, PortRm, StatsArgs,
    VersionInfo,
};
use vxswitch::ctl::{render, Client, Config, Request, Server, ServerOptions, DEFAULT_SOCKET};
use vxswitch::fdb::FdbConfig;
use vxswitch::switch::EngineConfig;
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
    Daemon(DaemonArgs),
    /// Create, list and remove networks (L2 broadcast domains).
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Attach containers to networks, list and detach them.
    #[command(subcommand)]
    Port(PortCmd),
    /// Show and edit the forwarding database (MAC -> port).
    #[command(subcommand)]
    Fdb(FdbCmd),
    /// Per-port frame, byte and drop counters, and FDB counters.
    Stats {
        /// Only this port.
        port: Option<String>,
    },
    /// Check that the daemon answers.
    Ping,
    /// Show the CLI's and the daemon's versions.
    Version,
    /// Run the whole job once with an embedded default (needs root): a
    /// switch, containers in network namespaces, pings, a TCP transfer,
    /// FDB and counters; everything it creates is removed at the end.
    Demo {
        /// Number of containers (2 to 8).
        #[arg(long, default_value_t = 3)]
        containers: usize,
        /// Seconds of TCP transfer.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
}

#[derive(Args, Debug)]
struct DaemonArgs {
    /// TOML file with [fdb], [[network]] and [[port]] entries to apply at start.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Forget learned MACs not seen for this long (0: never). Default 300.
    #[arg(long, value_name = "SECS")]
    ageing_time: Option<u64>,
    /// Most FDB entries in total. Default 65536.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    fdb_max_entries: Option<u64>,
    /// Most FDB entries pointing at one port. Default 4096.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    fdb_max_per_port: Option<u64>,
}

#[derive(Subcommand, Debug)]
enum NetworkCmd {
    /// Create a network.
    Create {
        name: String,
        /// Subnet of the network's ports, e.g. 10.77.0.0/24.
        #[arg(long)]
        subnet: Option<String>,
        /// Default gateway of the network's ports (needs --subnet).
        #[arg(long)]
        gateway: Option<String>,
        /// MTU of the network's ports (default 1500).
        #[arg(long)]
        mtu: Option<u32>,
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
    /// Link MTU (default: the network's).
    #[arg(long)]
    mtu: Option<u32>,
    /// Attach the existing persistent TAP NAME in the daemon's namespace.
    #[arg(long, conflicts_with_all = ["netns", "pid", "ifname", "mac", "ip", "mtu"])]
    existing: bool,
}

#[derive(Subcommand, Debug)]
enum FdbCmd {
    /// List entries.
    Show(FdbSelectArgs),
    /// Add a static entry (never ages, never moves).
    Add {
        mac: MacAddr,
        #[arg(long)]
        network: String,
        #[arg(long)]
        port: String,
    },
    /// Delete an entry.
    Del {
        mac: MacAddr,
        #[arg(long)]
        network: String,
    },
    /// Remove learned entries (static ones stay).
    Flush(FdbSelectArgs),
}

#[derive(Args, Debug)]
struct FdbSelectArgs {
    #[arg(long)]
    network: Option<String>,
    #[arg(long)]
    port: Option<String>,
}

impl From<FdbSelectArgs> for FdbSelect {
    fn from(a: FdbSelectArgs) -> Self {
        FdbSelect {
            network: a.network,
            port: a.port,
            vtep: None,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("vxswitch: error: {msg}");
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
        Cmd::Network(NetworkCmd::Create {
            name,
            subnet,
            gateway,
            mtu,
        }) => ctx.show(
            Request::NetworkCreate(NetworkCreate {
                name,
                subnet,
                gateway,
                mtu,
                ..NetworkCreate::default()
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
            }),
            render::port_added,
        ),
        Cmd::Port(PortCmd::Ls) => {
            ctx.show(Request::PortLs(NoArgs {}), |p: &Vec<_>| render::ports(p))
        }
        Cmd::Port(PortCmd::Rm { name }) => {
            ctx.show(Request::PortRm(PortRm { name }), render::port_removed)
        }
        Cmd::Fdb(FdbCmd::Show(a)) => {
            ctx.show(Request::FdbShow(a.into()), |r: &Vec<_>| render::fdb(r))
        }
        Cmd::Fdb(FdbCmd::Add { mac, network, port }) => ctx.show(
            Request::FdbAdd(FdbAdd {
                network,
                mac,
                port: Some(port),
                vtep: None,
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
    let mut opts = ServerOptions::new(socket);
    opts.engine = EngineConfig {
        fdb,
        ..EngineConfig::default()
    };
    opts.handle_signals = true;
    let mut server = Server::bind(opts).map_err(|e| e.to_string())?;
    if let Some(path) = &a.config {
        // On error the server is dropped: what was created is removed again.
        config
            .apply(server.daemon_mut(), path)
            .map_err(|e| e.to_string())?;
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
