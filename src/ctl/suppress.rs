//! ARP/ND suppression, the control side: which networks have it, and the
//! bindings each one's table in the dataplane holds.
//!
//! A network suppresses when it is a cluster network or was created with
//! `neigh_suppress`. Its bindings are [`Daemon::neigh_bindings`]: this
//! host's ports with an address and a known MAC (the gateway port
//! included, answered for as a router) and, in a cluster network, every
//! remote endpoint the cluster published. Ports without port security
//! that send from another MAC are not followed: the binding is what the
//! control plane set.
//!
//! [`Daemon::neigh_sync`] runs after every change of the configuration
//! (from `save_state`) and after every batch of cluster changes: it
//! rebuilds a network's bindings, and only when they differ from what the
//! dataplane holds, builds a new [`NeighTable`] and has every worker swap
//! it in ([`Engine::set_neigh`](crate::switch::Engine::set_neigh)). The
//! workers never lock it: a table never changes once built.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::daemon::Daemon;
use super::networks::Network;
use super::proto::SuppressRow;
use crate::gateway::{Binding, NeighTable};

/// Whether `net` suppresses ARP/ND.
pub(super) fn suppressing(net: &Network) -> bool {
    net.spec.neigh_suppress || net.spec.cluster
}

impl Daemon {
    /// Brings every network's suppression table in the dataplane in line
    /// with its bindings (see the module docs).
    pub(super) fn neigh_sync(&mut self) {
        let names: Vec<String> = self.networks.keys().cloned().collect();
        for name in names {
            let Some(net) = self.networks.get(&name) else {
                continue;
            };
            let want: Option<BTreeMap<IpAddr, Binding>> = suppressing(net).then(|| {
                let gateway = net.gateway;
                self.neigh_bindings(&name)
                    .into_iter()
                    .map(|(ip, mac)| {
                        let router = Some(ip) == gateway;
                        (ip, Binding { mac, router })
                    })
                    .collect()
            });
            if net.neigh_pushed == want {
                continue;
            }
            let table = want.as_ref().map(|b| {
                Arc::new(NeighTable::new(
                    b.iter().map(|(ip, b)| (*ip, *b)),
                    net.neigh_stats.clone(),
                ))
            });
            // Only fails when the dataplane stopped: nothing to answer then.
            if self.engine.set_neigh(net.id, table).is_ok() {
                if let Some(net) = self.networks.get_mut(&name) {
                    net.neigh_pushed = want;
                }
            }
        }
    }

    /// `stats`: the counters of every network that suppresses.
    pub(super) fn suppress_rows(&self) -> Vec<SuppressRow> {
        self.networks
            .iter()
            .filter(|(_, n)| suppressing(n))
            .map(|(name, n)| SuppressRow {
                network: name.clone(),
                bindings: n.neigh_pushed.as_ref().map_or(0, BTreeMap::len),
                stats: n.neigh_stats.snapshot(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::proto::{NetworkCreate, PortRm, Request, StatsArgs};
    use crate::ctl::testutil::daemon;
    use crate::gateway::responder::fixtures::arp_request;
    use crate::wire::MacAddr;
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::{AsFd, OwnedFd};

    fn sock(fd: OwnedFd) -> File {
        crate::sys::fd::set_nonblocking(fd.as_fd(), true).unwrap();
        File::from(fd)
    }

    /// Reads one frame, or None within 5 s.
    fn recv(f: &mut File) -> Option<Vec<u8>> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut buf = [0u8; 256];
        while std::time::Instant::now() < deadline {
            match f.read(&mut buf) {
                Ok(n) => return Some(buf[..n].to_vec()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(_) => return None,
            }
        }
        None
    }

    fn bind(d: &mut Daemon, port: &str, mac: MacAddr, ip: &str) {
        let p = d.ports.get_mut(port).unwrap();
        p.mac = Some(mac);
        p.ip = Some(ip.parse().unwrap());
    }

    #[test]
    fn a_request_for_a_port_is_answered_by_the_switch_not_flooded() {
        let mut d = daemon();
        d.network_create(&NetworkCreate {
            name: "lab".into(),
            subnet: Some("10.42.0.0/24".into()),
            neigh_suppress: true,
            ..Default::default()
        })
        .unwrap();
        let a_mac = MacAddr([2, 0xa, 0, 0, 0, 0xa]);
        let b_mac = MacAddr([2, 0xb, 0, 0, 0, 0xb]);
        let (a, a_end) = crate::seqpacket_pair().unwrap();
        let (b, b_end) = crate::seqpacket_pair().unwrap();
        d.attach_fd("a", "lab", a_end, None).unwrap();
        d.attach_fd("b", "lab", b_end, None).unwrap();
        bind(&mut d, "a", a_mac, "10.42.0.10/24");
        bind(&mut d, "b", b_mac, "10.42.0.11/24");
        d.save_state();
        let (mut a, mut b) = (sock(a), sock(b));
        a.write_all(&arp_request(a_mac, [10, 42, 0, 10], [10, 42, 0, 11]))
            .unwrap();
        let reply = recv(&mut a).expect("the switch answers");
        assert_eq!(&reply[6..12], b_mac.as_bytes());
        assert_eq!(&reply[14 + 8..14 + 14], b_mac.as_bytes());
        // A miss floods to b.
        a.write_all(&arp_request(a_mac, [10, 42, 0, 10], [10, 42, 0, 99]))
            .unwrap();
        let flooded = recv(&mut b).expect("a miss is flooded");
        assert_eq!(
            &flooded[14 + 24..14 + 28],
            &[10, 42, 0, 99],
            "only the miss"
        );
        let st = d.stats(&StatsArgs::default()).unwrap();
        let row = &st.suppress[0];
        assert_eq!(
            (
                row.network.as_str(),
                row.bindings,
                row.stats.answered,
                row.stats.missed
            ),
            ("lab", 2, 1, 1)
        );
        // b leaves: its binding goes with it, the next request is a miss.
        d.handle(Request::PortRm(PortRm { name: "b".into() }))
            .unwrap();
        a.write_all(&arp_request(a_mac, [10, 42, 0, 10], [10, 42, 0, 11]))
            .unwrap();
        let row = || d.stats(&StatsArgs::default()).unwrap().suppress[0].clone();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while row().stats.missed < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!((row().bindings, row().stats.missed), (1, 2));
        d.shutdown();
    }
}
