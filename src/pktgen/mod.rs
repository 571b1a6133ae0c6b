//! `vxswitch pktgen`: a packet generator and counter in the spirit of the
//! kernel's pktgen, for measuring the switch (and anything else between
//! two interfaces) in frames per second.
//!
//! - **tx** ([`run_tx`]) sends Ethernet/IPv4/UDP probe frames (see
//!   [`frame`]) on one interface, usually a container's inside its network
//!   namespace: a given size, count or duration, as fast as possible or at
//!   a target rate, over N flows. It writes to an `AF_PACKET` socket with
//!   `PACKET_QDISC_BYPASS`, `sendmmsg` batches of prebuilt frames in which
//!   only the sequence number changes, and a token bucket checked once per
//!   batch ([`rate`]). A full driver queue (`ENOBUFS`/`EAGAIN`) is counted
//!   and retried with a bounded back-off; a queue that stays full for
//!   [`STALL_TIMEOUT`] ends the run with an error. After the last data
//!   frame it sends a few END markers that carry the number of frames
//!   sent, so the receiver can compute loss by itself.
//! - **rx** ([`run_rx`]) counts probe frames arriving on an interface
//!   through a `TPACKET_V3` receive ring behind a BPF filter that keeps
//!   only probe frames (IPv4, UDP, the pktgen magic), checks per-flow
//!   sequence numbers for loss, reordering and duplicates ([`seq`]), and
//!   reports frames/s and Mbit/s between the first and the last frame.
//! - Both read the interface's kernel counters (`/proc/net/dev` of the
//!   namespace) before and after, and report the difference next to their
//!   own counts.
//!
//! Everything is bounded in time: tx by `--count`/`--duration` (10 s when
//! neither is given) and the stall timeout, rx by `--count`, `--duration`,
//! the END marker, `--idle-timeout` after the first frame and `--wait`
//! before it. The `stop` flag (Ctrl-C in the CLI) is checked at least every
//! 100 ms and ends either side with a partial result.
//!
//! Nothing is allocated per frame: flows' headers are built once, the
//! transmit slots and the receive ring are allocated at start, and the
//! receive side's per-flow state is created once per flow.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use crate::ports::{link, netns, LinkInfo, Netns, PortError};
use crate::sys::packet;

mod cli;
mod counters;
pub mod frame;
pub mod rate;
mod report;
mod rx;
pub mod seq;
mod tx;

pub use cli::{run_cli, PktgenCmd, RxArgs, TxArgs};
pub use counters::DevCounters;
pub use rx::{run_rx, RxOptions, RxReport, RxStop};
pub use tx::{run_tx, TxOptions, TxReport, TxStop};

/// How long the transmit queue may refuse every frame before tx gives up.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// tx's duration when neither a count nor a duration is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// How often the loops look at the stop flag, at the least.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// An interface in a network namespace: where pktgen sends or counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub dev: String,
    pub netns: Netns,
}

impl Place {
    /// `netns` is a namespace file (`/run/netns/c1`, `/proc/PID/ns/net`) or,
    /// without a `/`, the name of one made by `ip netns add`.
    pub fn new(dev: &str, netns: Option<&str>) -> Place {
        let netns = match netns {
            None => Netns::Current,
            Some(s) if s.contains('/') => Netns::Path(PathBuf::from(s)),
            Some(name) => Netns::named(name),
        };
        Place {
            dev: dev.to_string(),
            netns,
        }
    }

    /// The namespace as reports show it: its path, or "" for the current one.
    pub fn netns_str(&self) -> String {
        self.netns
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    fn io(&self, step: &'static str) -> impl FnOnce(io::Error) -> PktgenError {
        let place = self.clone();
        move |source| PktgenError::Io {
            place,
            step,
            source,
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.netns.path() {
            Some(p) => write!(f, "{} in {}", self.dev, p.display()),
            None => write!(f, "{} in the current namespace", self.dev),
        }
    }
}

/// Why pktgen could not run (or stopped early); each names the interface,
/// its namespace and the step.
#[derive(Debug, thiserror::Error)]
pub enum PktgenError {
    /// The options do not make sense.
    #[error("{0}")]
    Invalid(String),
    /// Entering the namespace or reading the interface failed.
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("{place}: no such interface")]
    NoDevice { place: Place },
    #[error("{place}: {step} failed: {source}")]
    Io {
        place: Place,
        step: &'static str,
        source: io::Error,
    },
    #[error(
        "{place}: the transmit queue refused every frame for {} s ({retries} retries, \
         {sent} frames sent before); is the link up and its peer taking frames?",
        STALL_TIMEOUT.as_secs()
    )]
    Stalled {
        place: Place,
        retries: u64,
        sent: u64,
    },
}

/// The interface's index, MAC, MTU and state.
fn lookup(place: &Place) -> Result<LinkInfo, PktgenError> {
    link::link_info(&place.netns, &place.dev)?.ok_or_else(|| PktgenError::NoDevice {
        place: place.clone(),
    })
}

/// A packet socket (protocol 0, receiving nothing yet) in the place's
/// namespace. Only the `socket` call needs the namespace: options, rings
/// and `bind` work on the socket's own namespace from any thread.
fn open_socket(place: &Place) -> Result<OwnedFd, PktgenError> {
    netns::run_in(&place.netns, packet::packet_socket)?
        .map_err(place.io("open an AF_PACKET socket (needs CAP_NET_RAW)"))
}

/// A random run id: tells one tx run's frames from another's.
fn run_id() -> u16 {
    let h = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (h & 0xffff) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_reads_paths_and_names() {
        let p = Place::new("eth0", Some("/run/netns/c1"));
        assert_eq!(p.to_string(), "eth0 in /run/netns/c1");
        assert_eq!(Place::new("eth0", Some("c1")), p);
        assert_eq!(p.netns_str(), "/run/netns/c1");
        let here = Place::new("veth0", None);
        assert_eq!(here.to_string(), "veth0 in the current namespace");
        assert_eq!(here.netns_str(), "");
    }

    #[test]
    fn errors_name_the_place_and_step() {
        let p = Place::new("eth0", Some("c1"));
        let e = p.io("bind")(io::Error::from_raw_os_error(libc::ENODEV));
        let s = e.to_string();
        assert!(s.starts_with("eth0 in /run/netns/c1: bind failed: "), "{s}");
    }
}
