//! A network's gateway port: who answers for its gateway address.
//!
//! - `host` ([`GatewayPort::Host`](crate::ctl::proto::GatewayPort)): a TAP
//!   in the daemon's own namespace carrying the gateway address, attached
//!   as a port of the network, as `docker0` carries Docker's gateway. The
//!   host kernel answers ARP and ping, accepts connections to services
//!   bound on the address, and routes (and, with the user's NAT rule,
//!   masquerades) the containers' traffic to the outside. The control
//!   plane builds it with [`crate::ports::create_tap`]; this module only
//!   names it ([`default_ifname`]).
//! - `switch`: a [`Responder`] on a thread of its own, holding one end of a
//!   socket pair whose other end is attached to the network as a port. It
//!   answers ARP and ICMP echo (IPv6: neighbour solicitations and ICMPv6
//!   echo) for the gateway address and nothing else, so a lab without
//!   `CAP_NET_ADMIN` still gets a gateway that answers `ping`. It does not
//!   route.
//!
//! Why a thread and a socket pair rather than a hook in the engine: the
//! engine already treats any fd that carries one frame per read/write as a
//! port (learning, flooding, counters, MTU checks all apply unchanged),
//! and the responder's work stays off the dataplane's threads. The thread
//! ends when the switch closes its end (the port is removed, or the daemon
//! stops): its `read` returns end-of-file.

pub mod responder;
pub mod suppress;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use responder::{GatewayStats, GatewayStatsSnapshot, Outcome, Responder};
pub use suppress::{Binding, NeighTable, SuppressStats, SuppressStatsSnapshot};

/// Prefix of gateway interface and port names.
pub const PREFIX: &str = "vxgw-";

/// Longest interface name (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// Largest frame the responder reads: a TAP's largest MTU plus the
/// Ethernet header, rounded up. Longer records are truncated by the socket
/// and then fail the IP length checks.
const MAX_FRAME: usize = 65_536;

/// The gateway port's default name for `network`: `vxgw-NETWORK` when that
/// fits in 15 bytes; otherwise the first 11 bytes of it and 4 hex digits of
/// a hash of the full network name, so that `production-a` and
/// `production-b` get different names (`vxgw-produc1f3a`, ...). Network
/// names are ASCII (the control plane checks), so byte cuts are char cuts.
pub fn default_ifname(network: &str) -> String {
    let full = format!("{PREFIX}{network}");
    if full.len() <= MAX_IFNAME && full.is_ascii() {
        return full;
    }
    let keep: String = full
        .chars()
        .filter(char::is_ascii)
        .take(MAX_IFNAME - 4)
        .collect();
    format!("{keep}{:04x}", fnv1a(network.as_bytes()) & 0xffff)
}

/// FNV-1a, 64 bits: a stable hash (the same name gets the same interface
/// name on every start and every host).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A running switch gateway: the responder thread and its counters.
#[derive(Debug)]
pub struct SwitchGateway {
    stats: Arc<GatewayStats>,
    thread: Option<JoinHandle<()>>,
}

impl SwitchGateway {
    /// Starts answering on `fd`, the responder's end of a socket pair whose
    /// other end is (or is about to be) a port of the network.
    pub fn start(fd: OwnedFd, responder: Responder, network: &str) -> io::Result<SwitchGateway> {
        // The pair is non-blocking for the engine's sake; this end blocks,
        // so the thread sleeps in read() until a frame or end-of-file.
        crate::sys::fd::set_nonblocking(fd.as_fd(), false)?;
        let stats = responder.stats().clone();
        let thread = std::thread::Builder::new()
            .name(format!("gw-{network}"))
            .spawn(move || serve(File::from(fd), &responder))?;
        Ok(SwitchGateway {
            stats,
            thread: Some(thread),
        })
    }

    pub fn stats(&self) -> GatewayStatsSnapshot {
        self.stats.snapshot()
    }

    /// Waits for the thread to end. Call after the switch closed its end
    /// of the pair (the port was removed), which ends the thread.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut sock: File, r: &Responder) {
    let mut buf = vec![0u8; MAX_FRAME];
    let mut out = vec![0u8; MAX_FRAME];
    loop {
        let n = match sock.read(&mut buf) {
            Ok(0) => return, // the switch closed its end
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if let Outcome::Reply(len) = r.answer(&buf[..n], &mut out) {
            if sock.write(&out[..len]).is_err() {
                r.stats()
                    .tx_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_fit_and_stay_distinct() {
        assert_eq!(default_ifname("red"), "vxgw-red");
        assert_eq!(default_ifname("0123456789"), "vxgw-0123456789");
        let a = default_ifname("production-a");
        let b = default_ifname("production-b");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("vxgw-produc"), "{a}");
        assert_ne!(a, b);
        // Stable across calls (and so across restarts).
        assert_eq!(a, default_ifname("production-a"));
    }

    #[test]
    fn thread_answers_over_a_socket_pair_and_ends_on_close() {
        use crate::wire::MacAddr;
        let (ours, theirs) = crate::seqpacket_pair().unwrap();
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let gw = SwitchGateway::start(
            theirs,
            Responder::new(mac, "10.88.0.1".parse().unwrap(), Arc::default()),
            "t",
        )
        .unwrap();
        crate::sys::fd::set_nonblocking(ours.as_fd(), false).unwrap();
        let mut sock = File::from(ours);
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[
            2, 0xc1, 0, 0, 0, 0x11, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1,
        ]);
        arp.extend_from_slice(&[2, 0xc1, 0, 0, 0, 0x11, 10, 88, 0, 11]);
        arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 88, 0, 1]);
        sock.write_all(&arp).unwrap();
        let mut buf = [0u8; 128];
        let n = sock.read(&mut buf).unwrap();
        assert_eq!(n, 60);
        assert_eq!(&buf[22..28], mac.as_bytes());
        assert_eq!(gw.stats().neighbor_replies, 1);
        drop(sock);
        gw.join();
    }
}
