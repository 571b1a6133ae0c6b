//! VTEPs: the remote hosts' tunnel endpoints of a network with a VNI
//! (`vtep.add`, `vtep.ls`, `vtep.rm`), configured or learned by the
//! dataplane from traffic (a network with `learn_vteps`). A network has at
//! most one VTEP per IP address, because the dataplane accepts a datagram
//! by its sender's IP and VNI.

use std::net::SocketAddr;
use std::sync::Arc;

use super::daemon::Daemon;
use super::networks::Network;
use super::proto::{CtlError, VtepAdd, VtepLs, VtepRemoved, VtepRm, VtepRow};
use super::validate::{check_not_self, engine_error, parse_vtep_addr, vxlan_error};
use crate::fdb::{Dest, VtepId};
use crate::switch::{PortStats, VtepInfo};

/// A VTEP of a network, as the daemon keeps it (its address is the key).
#[derive(Debug)]
pub(super) struct Vtep {
    pub(super) id: VtepId,
    /// Learned from traffic, not configured.
    pub(super) dynamic: bool,
    pub(super) stats: Arc<PortStats>,
}

impl Daemon {
    /// `vtep.add`: a remote host's tunnel endpoint for a network with a VNI.
    pub fn vtep_add(&mut self, a: &VtepAdd) -> Result<VtepRow, CtlError> {
        self.vni_of(&a.network)?;
        let (addr, _) = self.parse_vtep(&format!("network {:?}", a.network), &a.addr)?;
        self.insert_vtep(&a.network, addr)
    }

    pub fn vtep_ls(&self, a: &VtepLs) -> Result<Vec<VtepRow>, CtlError> {
        if let Some(n) = &a.network {
            self.network(n)?;
        }
        Ok(self
            .networks
            .iter()
            .filter(|(n, _)| a.network.as_ref().is_none_or(|want| want == *n))
            .flat_map(|(n, net)| {
                net.vteps.iter().map(move |(addr, v)| VtepRow {
                    cluster: self.is_cluster_vtep(n, *addr),
                    ..vtep_row(n, net, *addr, v)
                })
            })
            .collect())
    }

    /// `vtep.rm`: removes the VTEP and flushes the MACs behind it, static
    /// entries included.
    pub fn vtep_rm(&mut self, a: &VtepRm) -> Result<VtepRemoved, CtlError> {
        let what = format!("network {:?}", a.network);
        let (addr, id) = self.find_vtep(&a.network, &a.addr, &ls_hint(&a.network))?;
        if self.is_cluster_vtep(&a.network, addr) {
            return Err(CtlError::busy(format!(
                "{what}: VTEP {addr} is managed by the cluster (a host with endpoints in the                  network); it goes when that host's endpoints leave"
            )));
        }
        let fdb_flushed = self.fdb().dest_count(Dest::Remote(id));
        self.engine
            .remove_vtep(id)
            .map_err(|e| engine_error(&format!("{what}: VTEP {addr}"), e))?;
        if let Some(net) = self.networks.get_mut(&a.network) {
            net.vteps.remove(&addr);
        }
        Ok(VtepRemoved {
            network: a.network.clone(),
            addr: addr.to_string(),
            fdb_flushed,
        })
    }

    /// The network's VNI, or why it has none.
    pub(super) fn vni_of(&self, network: &str) -> Result<u32, CtlError> {
        self.network(network)?.vni.ok_or_else(|| {
            CtlError::invalid(format!(
                "network {network:?} has no VNI; create it with --vni to carry it over VXLAN"
            ))
        })
    }

    /// Parses `ADDR[:PORT]` (IPv6 with a port in brackets); the port
    /// defaults to the daemon's VXLAN port. Returns whether a port was given.
    pub(super) fn parse_vtep(&self, what: &str, raw: &str) -> Result<(SocketAddr, bool), CtlError> {
        parse_vtep_addr(what, raw, self.vxlan_config().port)
    }

    /// The network's VTEP that `raw` names: the one at that IP, and if
    /// `raw` has a port, only if the port matches too. `hint` ends the
    /// message when there is none.
    pub(super) fn find_vtep(
        &self,
        network: &str,
        raw: &str,
        hint: &str,
    ) -> Result<(SocketAddr, VtepId), CtlError> {
        let what = format!("network {network:?}");
        let net = self.network(network)?;
        let (addr, port_given) = self.parse_vtep(&what, raw)?;
        match net.vteps.iter().find(|(have, _)| have.ip() == addr.ip()) {
            Some((have, v)) if !port_given || *have == addr => Ok((*have, v.id)),
            Some((have, _)) => Err(CtlError::not_found(format!(
                "{addr} is not a VTEP of network {network:?}: the network's VTEP at {} is \
                 {have}; give that address, or the IP alone",
                addr.ip()
            ))),
            None if net.vni.is_none() => Err(CtlError::not_found(format!(
                "{addr} is not a VTEP of network {network:?}: the network has no VNI, so it \
                 has no VTEPs"
            ))),
            None => Err(CtlError::not_found(format!(
                "{addr} is not a VTEP of network {network:?}; {hint}"
            ))),
        }
    }

    /// Adds a configured VTEP to a network that has a VNI.
    pub(super) fn insert_vtep(
        &mut self,
        network: &str,
        addr: SocketAddr,
    ) -> Result<VtepRow, CtlError> {
        self.vni_of(network)?;
        check_not_self(
            &format!("network {network:?}"),
            addr,
            self.vxlan_config().port,
        )?;
        let net = self.network(network)?;
        if let Some((have, v)) = net.vteps.iter().find(|(have, _)| have.ip() == addr.ip()) {
            return Err(CtlError::exists(format!(
                "network {network:?} already has {}VTEP {have} (one per IP address); remove \
                 it first with 'vxswitch vtep rm {network} {have}'",
                if v.dynamic { "the learned " } else { "" }
            )));
        }
        let net_id = net.id;
        let info = match self.engine.add_vtep(net_id, addr) {
            Ok(info) => info,
            Err(e) => {
                // The dataplane may have learned it a moment ago: record that.
                self.process_events();
                return Err(vxlan_error(&format!("network {network:?}: VTEP {addr}"), e));
            }
        };
        let Some(net) = self.networks.get_mut(network) else {
            return Err(CtlError::internal(format!(
                "network {network:?} vanished while its VTEP was added; this is a bug"
            )));
        };
        let v = Vtep {
            id: info.id,
            dynamic: false,
            stats: info.stats,
        };
        let row = vtep_row(network, net, info.addr, &v);
        net.vteps.insert(info.addr, v);
        Ok(row)
    }

    /// Records a VTEP the dataplane learned from traffic.
    pub(super) fn vtep_learned(&mut self, info: VtepInfo) {
        let Some((name, net)) = self.networks.iter_mut().find(|(_, n)| n.id == info.net) else {
            // Its network was removed after the dataplane learned it.
            return;
        };
        if self.log_events {
            eprintln!(
                "vxswitch: network {name} (VNI {}) learned VTEP {} from its traffic; \
                 'vxswitch vtep rm {name} {}' removes it",
                net.vni.map_or_else(|| "-".to_string(), |v| v.to_string()),
                info.addr,
                info.addr
            );
        }
        net.vteps.insert(
            info.addr,
            Vtep {
                id: info.id,
                dynamic: info.dynamic,
                stats: info.stats,
            },
        );
    }
}

impl Daemon {
    /// Removes a learned VTEP that has been idle for
    /// `learned_vtep_ageing_ms`, as `vtep.rm` would (its MACs go with it).
    /// Only if this daemon still has it under that id: after its network
    /// was removed, the id may name another VTEP.
    pub(super) fn vtep_idle(&mut self, info: &VtepInfo) {
        let Some((name, net)) = self.networks.iter_mut().find(|(_, n)| n.id == info.net) else {
            return;
        };
        let ours = net
            .vteps
            .get(&info.addr)
            .is_some_and(|v| v.id == info.id && v.dynamic);
        if !ours || self.engine.remove_vtep(info.id).is_err() {
            return;
        }
        net.vteps.remove(&info.addr);
        if self.log_events {
            eprintln!(
                "vxswitch: network {name}: learned VTEP {} sent nothing for {} s; removed it \
                 and the MACs behind it (it is learned again when it sends)",
                info.addr,
                self.engine.vxlan_config().learned_vtep_ageing_ms / 1000
            );
        }
    }
}

pub(super) fn ls_hint(network: &str) -> String {
    format!("list its VTEPs with 'vxswitch vtep ls {network}'")
}

pub(super) fn vtep_row(network: &str, net: &Network, addr: SocketAddr, v: &Vtep) -> VtepRow {
    VtepRow {
        network: network.to_string(),
        // Only networks with a VNI have VTEPs.
        vni: net.vni.unwrap_or_default(),
        addr: addr.to_string(),
        dynamic: v.dynamic,
        cluster: false,
        stats: v.stats.snapshot(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::proto::{ErrorKind, FdbSelect, NetworkCreate, NetworkRm, StatsArgs};
    use crate::ctl::testutil::{frame, net, vtep, vtep_rm, vx_daemon, vx_net, vxlan};
    use crate::wire::MacAddr;

    #[test]
    fn vteps_are_added_listed_and_removed() {
        let (mut d, port) = vx_daemon();
        net(&mut d, "plain", None, None);
        vx_net(&mut d, "blue", Some(4242), &[]);
        let e = d.vtep_add(&vtep("plain", "198.18.0.2")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert_eq!(
            e.message,
            "network \"plain\" has no VNI; create it with --vni to carry it over VXLAN"
        );
        let e = d.vtep_add(&vtep("green", "198.18.0.2")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        for (raw, want) in [
            ("nonsense", "invalid VTEP address \"nonsense\""),
            ("127.0.0.1", "this daemon's own VXLAN socket"),
        ] {
            let e = d.vtep_add(&vtep("blue", raw)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument);
            assert!(e.message.contains(want), "{raw}: {}", e.message);
        }

        let v = d.vtep_add(&vtep("blue", "198.18.0.2")).unwrap();
        assert_eq!(v.addr, format!("198.18.0.2:{port}"));
        assert_eq!(
            (v.network.as_str(), v.vni, v.dynamic),
            ("blue", 4242, false)
        );
        d.vtep_add(&vtep("blue", "198.18.0.3:8472")).unwrap();
        // One VTEP per IP and network, whatever the port.
        let e = d.vtep_add(&vtep("blue", "198.18.0.2:9999")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Exists);
        assert!(
            e.message.contains(&format!(
                "already has VTEP 198.18.0.2:{port} (one per IP address); remove it first \
                 with 'vxswitch vtep rm blue 198.18.0.2:{port}'"
            )),
            "{}",
            e.message
        );
        // The same IP may serve another VNI.
        vx_net(&mut d, "red", Some(77), &["198.18.0.2"]);

        let all = d.vtep_ls(&VtepLs::default()).unwrap();
        let addrs: Vec<(&str, &str)> = all
            .iter()
            .map(|v| (v.network.as_str(), v.addr.as_str()))
            .collect();
        let p = format!("198.18.0.2:{port}");
        assert_eq!(
            addrs,
            vec![
                ("blue", p.as_str()),
                ("blue", "198.18.0.3:8472"),
                ("red", p.as_str())
            ]
        );
        let blue = d
            .vtep_ls(&VtepLs {
                network: Some("blue".into()),
            })
            .unwrap();
        assert_eq!(blue.len(), 2);
        assert_eq!(blue[0].stats.tx_frames, 0);
        let e = d
            .vtep_ls(&VtepLs {
                network: Some("nope".into()),
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        let ls = d.network_ls();
        let b = ls.iter().find(|n| n.name == "blue").unwrap();
        assert_eq!(b.vteps, vec![p.clone(), "198.18.0.3:8472".to_string()]);

        // Removal: by IP alone, or by the exact address; a wrong port is named.
        let e = d.vtep_rm(&vtep_rm("blue", "198.18.0.3:4789")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(
            e.message.contains("VTEP at 198.18.0.3 is 198.18.0.3:8472"),
            "{}",
            e.message
        );
        let e = d.vtep_rm(&vtep_rm("blue", "198.18.0.9")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(
            e.message,
            format!(
                "198.18.0.9:{port} is not a VTEP of network \"blue\"; list its VTEPs with \
                 'vxswitch vtep ls blue'"
            )
        );
        let e = d.vtep_rm(&vtep_rm("plain", "198.18.0.9")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.message.contains("has no VNI"), "{}", e.message);
        let r = d.vtep_rm(&vtep_rm("blue", "198.18.0.3")).unwrap();
        assert_eq!((r.addr.as_str(), r.fdb_flushed), ("198.18.0.3:8472", 0));
        d.vtep_rm(&vtep_rm("blue", &p)).unwrap();
        assert!(d
            .vtep_ls(&VtepLs {
                network: Some("blue".into())
            })
            .unwrap()
            .is_empty());
        // Freed: the address can be added again.
        d.vtep_add(&vtep("blue", "198.18.0.2")).unwrap();

        // Removing a network removes its VTEPs.
        let r = d
            .network_rm(&NetworkRm {
                name: "red".into(),
                force: false,
            })
            .unwrap();
        assert_eq!(r.removed_vteps, vec![p]);
        assert_eq!(d.vtep_ls(&VtepLs::default()).unwrap().len(), 1);
        d.shutdown();
    }

    /// A learned VTEP that sends nothing for `learned_vtep_ageing_ms` goes,
    /// with the MACs behind it; a configured one stays.
    #[test]
    fn idle_learned_vteps_are_removed_and_configured_ones_stay() {
        use crate::switch::EngineConfig;
        use crate::time::MonotonicClock;
        use crate::vxlan::VxlanConfig;
        let port = crate::ctl::testutil::free_udp_port();
        let cfg = EngineConfig {
            vxlan: VxlanConfig {
                port,
                src_port_min: port,
                src_port_max: port,
                learned_vtep_ageing_ms: 1,
                ..VxlanConfig::default()
            },
            ..EngineConfig::default()
        };
        let mut d = Daemon::new(cfg, Arc::new(MonotonicClock::new()), None).unwrap();
        d.set_log_events(false);
        d.network_create(&NetworkCreate {
            name: "blue".into(),
            vni: Some(99),
            learn_vteps: true,
            vteps: vec!["198.18.0.2".into()],
            ..Default::default()
        })
        .unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let src = [2, 0, 0, 0, 0, 0x77];
        peer.send_to(&vxlan(99, &frame([0xff; 6], src)), ("127.0.0.1", port))
            .unwrap();
        let learned = format!("127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut seen = false;
        loop {
            d.process_events();
            let addrs: Vec<String> = d
                .vtep_ls(&VtepLs::default())
                .unwrap()
                .into_iter()
                .map(|v| v.addr)
                .collect();
            seen |= addrs.contains(&learned);
            if seen && !addrs.contains(&learned) {
                assert_eq!(addrs, vec![format!("198.18.0.2:{port}")]);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "learned VTEP {learned} (seen: {seen}) not removed within 10 s: {addrs:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            d.fdb_show(&FdbSelect::default()).unwrap().is_empty(),
            "its MACs went with it"
        );
        d.shutdown();
    }

    #[test]
    fn learned_vteps_are_recorded_as_dynamic() {
        let (mut d, port) = vx_daemon();
        d.network_create(&NetworkCreate {
            name: "blue".into(),
            vni: Some(99),
            learn_vteps: true,
            ..Default::default()
        })
        .unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let src = [2, 0, 0, 0, 0, 0x77];
        peer.send_to(&vxlan(99, &frame([0xff; 6], src)), ("127.0.0.1", port))
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let v = loop {
            d.process_events();
            if let Some(v) = d.vtep_ls(&VtepLs::default()).unwrap().pop() {
                break v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no VTEP learned within 5 s"
            );
            d.engine.barrier().unwrap();
        };
        // Learned VTEPs are answered on the VXLAN port, not the sender's.
        assert_eq!(v.addr, format!("127.0.0.1:{port}"));
        assert!(v.dynamic);
        assert_eq!(v.stats.rx_frames, 1);
        let rows = d.fdb_show(&FdbSelect::default()).unwrap();
        assert_eq!(rows[0].mac, MacAddr(src));
        assert_eq!(rows[0].vtep.as_deref(), Some(v.addr.as_str()));
        assert_eq!(d.network_ls()[0].vteps, vec![v.addr.clone()]);
        // A configured VTEP at the same IP is refused, naming the learned one.
        let e = d.vtep_add(&vtep("blue", "127.0.0.1:5")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Exists);
        assert!(e.message.contains("the learned VTEP"), "{}", e.message);
        // The network goes with its learned VTEP; a new one on its id starts empty.
        let r = d
            .network_rm(&NetworkRm {
                name: "blue".into(),
                force: false,
            })
            .unwrap();
        assert_eq!(r.removed_vteps, vec![v.addr]);
        vx_net(&mut d, "green", Some(99), &[]);
        assert!(d.vtep_ls(&VtepLs::default()).unwrap().is_empty());
        assert!(d.fdb_show(&FdbSelect::default()).unwrap().is_empty());
        let st = d.stats(&StatsArgs::default()).unwrap();
        assert_eq!(st.vxlan.unwrap().rx_datagrams, 1);
        d.shutdown();
    }
}
