//! The `vxswitch` command line: everything the binary does besides the
//! CNI plugin entry point.
//!
//! - [`args`]: the clap types (every subcommand, option and help text).
//! - [`request`]: a parsed command to the protocol request it sends.
//! - [`settings`]: the daemon's flags merged over its config file.
//! - [`daemon`]: `vxswitch daemon`, the switch in the foreground, its
//!   pidfile and its readiness; [`detach`] starts it in the background and
//!   returns once it answers; [`notify`] tells systemd.
//! - [`render`]: the tables and sentences results are printed as.
//! - [`demo`]: `vxswitch demo`, a client of a private daemon.
//! - [`monitor`]: `vxswitch monitor`, the daemon's events as they happen.
//! - [`capture`]: `vxswitch capture`, copies of frames as pcapng.
//! - [`watch`]: `vxswitch stats --watch`, live per-port rates.
//!
//! Every client subcommand maps one-to-one onto a protocol command (see
//! `vxswitch::ctl::proto`). To add one: a variant in [`args::Cmd`], its
//! mapping in [`request`], and its text in [`Ctx::show`].

pub mod args;
pub mod capture;
pub mod daemon;
pub mod demo;
pub mod detach;
pub mod monitor;
pub mod notify;
pub mod render;
pub mod request;
pub mod settings;
pub mod watch;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;
use serde::de::DeserializeOwned;

use vxswitch::ctl::proto::{strip_os_error, MirrorRow, Pong, PortInfo, VersionInfo};
use vxswitch::ctl::{Client, Request};

use args::{Cli, Cmd};

/// Runs a parsed command line; the process's exit code.
pub fn main(cli: Cli) -> ExitCode {
    if cli.json {
        let refused = match cli.cmd {
            Cmd::Daemon(_) => Some("'daemon' runs the switch and prints only its log"),
            Cmd::Demo { .. } => Some("'demo' prints a narrative of what it does"),
            Cmd::Capture(_) => Some("'capture' prints frames or writes pcapng (-w)"),
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
    let local = match Request::try_from(cli.cmd) {
        Ok(req) => return ctx.show(req),
        Err(local) => local,
    };
    match local {
        Cmd::Daemon(a) => daemon::run(&ctx.socket, *a),
        Cmd::Demo {
            containers,
            seconds,
        } => demo::run(&demo::DemoOptions {
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
        Cmd::Monitor => monitor::run(&ctx.socket, ctx.json),
        Cmd::Capture(a) => capture::run(&ctx.socket, a),
        Cmd::Stats {
            port,
            watch: Some(secs),
        } => watch::run(&ctx.socket, port, secs, ctx.json),
        Cmd::Network(_)
        | Cmd::Port(_)
        | Cmd::Vtep(_)
        | Cmd::Fdb(_)
        | Cmd::Cluster(_)
        | Cmd::Stats { .. }
        | Cmd::Ping
        | Cmd::Version => unreachable!("requests are sent above"),
    }
}

/// Where a client command sends its request and how it prints the result.
struct Ctx {
    socket: PathBuf,
    json: bool,
}

impl Ctx {
    /// Sends `req` and prints its result: the raw JSON with `--json`, else
    /// the request's table or sentence.
    fn show(&self, req: Request) -> Result<(), String> {
        match &req {
            Request::NetworkCreate(_) => self.call(&req, render::network_created),
            Request::NetworkLs(_) => self.call(&req, |n: &Vec<_>| render::networks(n)),
            Request::NetworkRm(_) => self.call(&req, render::network_removed),
            Request::PortAdd(_) => self.call(&req, render::port_added),
            Request::PortLs(_) => self.call(&req, |p: &Vec<_>| render::ports(p)),
            Request::PortRm(_) => self.call(&req, render::port_removed),
            Request::PortSet(_) => self.call(&req, |p: &PortInfo| match &p.container {
                Some(c) => format!("port {}: container {c}\n", p.name),
                None => format!("port {}: no container label\n", p.name),
            }),
            Request::FdbShow(_) => self.call(&req, |r: &Vec<_>| render::fdb(r)),
            Request::FdbAdd(_) => self.call(&req, render::fdb_added),
            Request::FdbDel(_) => self.call(&req, render::fdb_deleted),
            Request::FdbFlush(_) => self.call(&req, render::fdb_flushed),
            Request::VtepAdd(_) => self.call(&req, render::vtep_added),
            Request::VtepLs(_) => self.call(&req, |v: &Vec<_>| render::vteps(v)),
            Request::VtepRm(_) => self.call(&req, render::vtep_removed),
            Request::Stats(_) => self.call(&req, render::stats),
            Request::ClusterStatus(_) => self.call(&req, render::cluster_status),
            Request::MirrorAdd(_) | Request::MirrorRm(_) => {
                let removing = matches!(req, Request::MirrorRm(_));
                self.call(&req, move |m: &MirrorRow| {
                    if removing {
                        format!("port {} no longer mirrored to {}\n", m.port, m.to)
                    } else {
                        format!(
                            "port {} mirrored to {} (direction {})\n",
                            m.port, m.to, m.direction
                        )
                    }
                })
            }
            Request::MirrorLs(_) => self.call(&req, |ms: &Vec<MirrorRow>| {
                let mut out = String::from("PORT  TO  DIRECTION\n");
                for m in ms {
                    out.push_str(&format!("{}  {}  {}\n", m.port, m.to, m.direction));
                }
                out
            }),
            Request::IpamAllocate(_)
            | Request::IpamRelease(_)
            | Request::Monitor(_)
            | Request::CaptureStart(_) => self.call(&req, |v: &serde_json::Value| format!("{v}\n")),
            Request::Ping(_) => self.call(&req, |p: &Pong| {
                format!(
                    "pong from vxswitch {} at {}\n",
                    p.version,
                    self.socket.display()
                )
            }),
            Request::Version(_) => {
                if !self.json {
                    out(&format!("client: vxswitch {}\n", env!("CARGO_PKG_VERSION")));
                }
                self.call(&req, |v: &VersionInfo| {
                    format!("daemon: vxswitch {} (protocol {})\n", v.version, v.protocol)
                })
            }
        }
    }

    /// Sends `req` and prints its result: raw JSON with `--json`, else `fmt`'s text.
    fn call<T: DeserializeOwned>(
        &self,
        req: &Request,
        fmt: impl Fn(&T) -> String,
    ) -> Result<(), String> {
        let mut client = Client::connect(&self.socket).map_err(|e| e.to_string())?;
        if self.json {
            let v = client.call(req).map_err(|e| e.to_string())?;
            let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
            out(&format!("{text}\n"));
        } else {
            let v: T = client.call_as(req).map_err(|e| e.to_string())?;
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
