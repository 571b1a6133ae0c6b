//! Control plane: the command socket, its protocol, the daemon's desired
//! state, and the client the CLI uses.
//!
//! - [`proto`]: newline-delimited JSON requests and replies, and their
//!   parsing with errors that name the problem.
//! - [`Daemon`] (`daemon.rs`): the networks, ports and VTEPs by name and
//!   address, driving the dataplane [`Engine`](crate::switch::Engine);
//!   every request is a method, testable without a socket, and
//!   [`Daemon::handle`] is the one dispatch. The methods live with their
//!   resource: `networks.rs`, `gateway.rs` (a network's gateway port),
//!   `ports.rs`, `vteps.rs`, `fdb.rs`, `stats.rs`, `restore/` (the state
//!   directory); `validate.rs` checks what requests carry and words the
//!   errors. [`state`] names them all under the former path.
//! - [`server`]: the non-blocking, single-threaded socket server with line
//!   limits and timeouts, and signal handling for the `daemon` command.
//! - [`config`]: the TOML start-up configuration, and the checks of the
//!   daemon-wide VXLAN settings.
//! - [`persist`]: the state file of `daemon --state-dir`, written
//!   atomically after every change and read back at start.
//! - [`client`]: the blocking one-request client.
//!
//! Running a daemon in-process (tests):
//!
//! ```no_run
//! use vxswitch::ctl::{Server, ServerOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::bind(ServerOptions::new("/tmp/vx.sock"))?;
//! let handle = server.spawn()?;
//! let (mine, port_end) = vxswitch::seqpacket_pair()?;
//! handle.with_daemon(|d| {
//!     d.network_create(&vxswitch::ctl::proto::NetworkCreate {
//!         name: "red".into(),
//!         ..Default::default()
//!     })?;
//!     d.attach_fd("p1", "red", port_end, None)
//! })??;
//! handle.shutdown()?;
//! # drop(mine);
//! # Ok(())
//! # }
//! ```

pub mod capture;
pub mod client;
pub mod cluster;
pub mod config;
mod daemon;
pub mod fastpath;
mod fdb;
mod gateway;
pub mod metrics;
mod mirror;
pub mod monitor;
mod networks;
pub mod persist;
mod pins;
mod ports;
pub mod proto;
mod restore;
pub mod server;
pub mod state;
mod stats;
mod suppress;
#[cfg(test)]
mod testutil;
mod uplink;
mod validate;
mod vteps;

pub use client::{Client, ClientError};
pub use config::{Config, ConfigError};
pub use daemon::Daemon;
pub use ports::{GonePort, GoneReason};
pub use proto::{CtlError, ErrorKind, Reply, Request};
pub use restore::{DropReason, Dropped, RestoreReport, SavedItem};
pub use server::{
    DaemonCaller, Server, ServerError, ServerHandle, ServerOptions, ServerStopped, DEFAULT_SOCKET,
};
