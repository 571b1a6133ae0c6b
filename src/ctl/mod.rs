//! Control plane: the command socket, its protocol, the daemon's desired
//! state, and the client the CLI uses.
//!
//! - [`proto`]: newline-delimited JSON requests and replies, and their
//!   parsing with errors that name the problem.
//! - [`state`]: [`Daemon`], the networks, ports and VTEPs by name and
//!   address, driving the dataplane [`Engine`](crate::switch::Engine);
//!   every request is a method, testable without a socket.
//! - [`server`]: the non-blocking, single-threaded socket server with line
//!   limits and timeouts, and signal handling for the `daemon` command.
//! - [`config`]: the TOML start-up configuration, and the checks of the
//!   daemon-wide VXLAN settings.
//! - [`persist`]: the state file of `daemon --state-dir`, written
//!   atomically after every change and read back at start.
//! - [`client`]: the blocking one-request client.
//!
//! Running a daemon in-process (tests, demos):
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

pub mod client;
pub mod config;
pub mod persist;
pub mod proto;
pub mod server;
pub mod state;

pub use client::{Client, ClientError};
pub use config::{Config, ConfigError};
pub use proto::{CtlError, ErrorKind, Reply, Request};
pub use server::{Server, ServerError, ServerHandle, ServerOptions, ServerStopped, DEFAULT_SOCKET};
pub use state::Daemon;
