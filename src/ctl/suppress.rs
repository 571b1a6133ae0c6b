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
            let want = suppressing(net).then(|| self.neigh_want(&name, net.gateway));
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

    /// What [`Daemon::neigh_bindings`] gives, as the table holds it (the
    /// gateway address answered as a router), built in one pass over the
    /// network's own remote bindings.
    fn neigh_want(&self, network: &str, gateway: Option<IpAddr>) -> BTreeMap<IpAddr, Binding> {
        let binding = |ip: IpAddr, mac| {
            let router = Some(ip) == gateway;
            (ip, Binding { mac, router })
        };
        let from = (network.to_string(), IpAddr::from([0u8; 4]));
        let mut out: BTreeMap<IpAddr, Binding> = self
            .cluster
            .applied
            .neigh
            .range(from..)
            .take_while(|((n, _), _)| n == network)
            .map(|((_, ip), mac)| binding(*ip, *mac))
            .collect();
        for p in self.ports.values().filter(|p| p.network == network) {
            if let (Some(ip), Some(mac)) = (p.ip, p.mac) {
                let (ip, b) = binding(ip.addr(), mac);
                out.insert(ip, b);
            }
        }
        out
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

#[cfg(test)]
mod cost {
    use crate::ctl::proto::NetworkCreate;
    use crate::ctl::testutil::daemon;
    use crate::wire::MacAddr;
    use std::net::IpAddr;
    use std::time::Instant;

    /// The one-pass build is `neigh_bindings`, network by network (the
    /// range stops at the next network's name, v4 and v6 alike).
    #[test]
    fn the_table_holds_exactly_the_networks_bindings() {
        let mut d = daemon();
        for n in ["a", "b", "bb"] {
            d.network_create(&NetworkCreate {
                name: n.into(),
                neigh_suppress: true,
                ..Default::default()
            })
            .unwrap();
        }
        let ips = ["10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"];
        for (k, n) in ["a", "b", "bb"].into_iter().enumerate() {
            for (i, ip) in ips.iter().enumerate() {
                let m = MacAddr([2, 0, 0, 0, k as u8, i as u8]);
                d.cluster
                    .applied
                    .neigh
                    .insert((n.to_string(), ip.parse().unwrap()), m);
            }
        }
        for n in ["a", "b", "bb"] {
            let want = d.neigh_want(n, Some("10.0.0.1".parse().unwrap()));
            let plain: std::collections::BTreeMap<_, _> =
                want.iter().map(|(ip, b)| (*ip, b.mac)).collect();
            assert_eq!(plain, d.neigh_bindings(n), "{n}");
            let routers: Vec<_> = want.iter().filter(|(_, b)| b.router).collect();
            assert_eq!(routers.len(), 1);
        }
        d.neigh_sync();
        assert!(d.suppress_rows().iter().all(|r| r.bindings == 4));
        d.shutdown();
    }

    /// What one change costs the control thread in a network with 20000
    /// remote bindings (500 hosts x 40 endpoints): a rebuild of the table.
    /// Not a timed test; run with `-- --ignored --nocapture` to see it.
    #[test]
    #[ignore]
    fn neigh_sync_cost_with_20000_bindings() {
        let mut d = daemon();
        d.network_create(&NetworkCreate {
            name: "big".into(),
            neigh_suppress: true,
            ..Default::default()
        })
        .unwrap();
        let ip = |i: u32| IpAddr::from((0x0a00_0000 + i).to_be_bytes());
        let mac = |i: u32| {
            let b = i.to_be_bytes();
            MacAddr([2, 0, b[0], b[1], b[2], b[3]])
        };
        for i in 0..20_000 {
            d.cluster
                .applied
                .neigh
                .insert(("big".to_string(), ip(i)), mac(i));
        }
        let t = Instant::now();
        d.neigh_sync();
        eprintln!("first table, 20000 bindings: {:?}", t.elapsed());
        let mut worst = std::time::Duration::ZERO;
        for i in 0..20 {
            d.cluster
                .applied
                .neigh
                .insert(("big".to_string(), ip(30_000 + i)), mac(30_000 + i));
            let t = Instant::now();
            d.neigh_sync();
            worst = worst.max(t.elapsed());
        }
        eprintln!("one binding more, rebuilt and swapped in: worst of 20 {worst:?}");
        let t = Instant::now();
        d.neigh_sync();
        eprintln!("no change (compare only): {:?}", t.elapsed());
        assert_eq!(d.suppress_rows()[0].bindings, 20_020);
        d.shutdown();
    }
}
