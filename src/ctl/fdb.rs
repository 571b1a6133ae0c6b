//! The forwarding table as the control plane shows and edits it:
//! `fdb.show`, `fdb.add` (static entries pointing at a local port or a
//! VTEP), `fdb.del` and `fdb.flush` (learned entries only). Entries are
//! kept by the dataplane's [`Fdb`](crate::fdb::Fdb) under ids; this module
//! translates names to ids and back.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::daemon::Daemon;
use super::proto::{CtlError, FdbAdd, FdbChanged, FdbDel, FdbFlushed, FdbKind, FdbRow, FdbSelect};
use super::validate::check_unicast_mac;
use super::vteps::ls_hint;
use crate::fdb::{Dest, FdbError, Filter, NetId, PortId, VtepId};

impl Daemon {
    /// The FDB filters a selection means: one, or with a VTEP given
    /// without a network, one per network that has that VTEP.
    fn filters(&self, sel: &FdbSelect, learned_only: bool) -> Result<Vec<Filter>, CtlError> {
        let net = sel
            .network
            .as_deref()
            .map(|n| self.network(n).map(|n| n.id))
            .transpose()?;
        let filter = |dest| Filter {
            net,
            dest,
            learned_only,
        };
        match (&sel.port, &sel.vtep) {
            (Some(_), Some(_)) => Err(CtlError::invalid(
                "give port or vtep, not both: an entry points at one of them",
            )),
            (Some(p), None) => Ok(vec![filter(Some(Dest::Local(self.port(p)?.id)))]),
            (None, Some(raw)) => {
                let dests = match &sel.network {
                    Some(n) => vec![self.find_vtep(n, raw, &ls_hint(n))?.1],
                    None => {
                        let (addr, port_given) = self.parse_vtep("fdb", raw)?;
                        let found: Vec<VtepId> = self
                            .networks
                            .values()
                            .flat_map(|n| &n.vteps)
                            .filter(|(have, _)| {
                                have.ip() == addr.ip() && (!port_given || **have == addr)
                            })
                            .map(|(_, v)| v.id)
                            .collect();
                        if found.is_empty() {
                            return Err(CtlError::not_found(format!(
                                "{addr} is not a VTEP of any network; list VTEPs with \
                                 'vxswitch vtep ls'"
                            )));
                        }
                        found
                    }
                };
                Ok(dests
                    .into_iter()
                    .map(|v| filter(Some(Dest::Remote(v))))
                    .collect())
            }
            (None, None) => Ok(vec![filter(None)]),
        }
    }

    pub fn fdb_show(&self, sel: &FdbSelect) -> Result<Vec<FdbRow>, CtlError> {
        let filters = self.filters(sel, false)?;
        let nets: HashMap<NetId, &str> = self
            .networks
            .iter()
            .map(|(n, net)| (net.id, n.as_str()))
            .collect();
        let ports: HashMap<PortId, &str> =
            self.ports.iter().map(|(n, p)| (p.id, n.as_str())).collect();
        let vteps: HashMap<VtepId, SocketAddr> = self
            .networks
            .values()
            .flat_map(|n| n.vteps.iter().map(|(addr, v)| (v.id, *addr)))
            .collect();
        let now = self.clock.now();
        let mut rows: Vec<FdbRow> = filters
            .into_iter()
            .flat_map(|f| self.fdb().entries(f, now))
            .filter_map(|e| {
                // Entries of a network being torn down are skipped, not shown nameless.
                let network = nets.get(&e.net)?.to_string();
                // An entry whose destination is being removed keeps the
                // dataplane's name for it (port#N, vtep#N).
                let (port, vtep) = match e.dest {
                    Dest::Local(p) => (
                        Some(
                            ports
                                .get(&p)
                                .map_or_else(|| e.dest.to_string(), |n| n.to_string()),
                        ),
                        None,
                    ),
                    Dest::Remote(v) => (
                        None,
                        Some(
                            vteps
                                .get(&v)
                                .map_or_else(|| e.dest.to_string(), |a| a.to_string()),
                        ),
                    ),
                };
                let kind = match FdbKind::from(e.kind) {
                    FdbKind::Static if self.is_cluster_fdb(&network, e.mac) => FdbKind::Cluster,
                    k => k,
                };
                Some(FdbRow {
                    network,
                    mac: e.mac,
                    port,
                    vtep,
                    kind,
                    age_ms: e.age_ms,
                })
            })
            .collect();
        rows.sort_by(|a, b| (&a.network, a.mac).cmp(&(&b.network, b.mac)));
        Ok(rows)
    }

    /// `fdb.add`: a static entry pointing at a local port or at a VTEP.
    pub fn fdb_add(&mut self, a: &FdbAdd) -> Result<FdbChanged, CtlError> {
        let net = self.network(&a.network)?.id;
        self.refuse_cluster_entry(&a.network, a.mac)?;
        check_unicast_mac("static entry", a.mac)?;
        let (dest, port, vtep, owner) = match (&a.port, &a.vtep) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(CtlError::invalid(format!(
                    "static entry {}: give exactly one of port (--port NAME, a MAC on this \
                     host) and vtep (--vtep ADDR, a MAC behind a remote VTEP)",
                    a.mac
                )))
            }
            (Some(name), None) => {
                let port = self.port(name)?;
                if port.net != net {
                    return Err(CtlError::invalid(format!(
                        "port {name:?} is on network {:?}, not {:?}; an entry can only point \
                         at a port of its own network",
                        port.network, a.network
                    )));
                }
                (
                    Dest::Local(port.id),
                    Some(name.clone()),
                    None,
                    format!("port {name:?}"),
                )
            }
            (None, Some(raw)) => {
                self.vni_of(&a.network)?;
                let hint = format!("add it first with 'vxswitch vtep add {} {raw}'", a.network);
                let (addr, id) = self.find_vtep(&a.network, raw, &hint)?;
                (
                    Dest::Remote(id),
                    None,
                    Some(addr.to_string()),
                    format!("VTEP {addr}"),
                )
            }
        };
        self.fdb()
            .add_static(net, a.mac, dest, self.clock.now())
            .map_err(|e| match e {
                FdbError::NotUnicast { .. } => CtlError::invalid(e.to_string()),
                FdbError::TableFull { max } => CtlError::busy(format!(
                    "the forwarding table is full ({max} {}); delete some or start the \
                     daemon with a higher --fdb-max-entries ([fdb] max_entries)",
                    entries(max)
                )),
                FdbError::NetLimit { max, .. } => CtlError::busy(format!(
                    "network {:?} already has {max} FDB {} (its budget); delete some, or \
                     create the network with a higher --fdb-max-entries (default: the \
                     daemon's --fdb-max-per-network, [fdb] max_per_network)",
                    a.network,
                    entries(max)
                )),
                FdbError::DestLimit { max, .. } => CtlError::busy(format!(
                    "{owner} already has {max} FDB {} (the per-port and per-VTEP limit); \
                     delete some or start the daemon with a higher --fdb-max-per-port \
                     ([fdb] max_per_dest)",
                    entries(max)
                )),
            })?;
        Ok(FdbChanged {
            network: a.network.clone(),
            mac: a.mac,
            port,
            vtep,
        })
    }

    pub fn fdb_del(&mut self, a: &FdbDel) -> Result<FdbChanged, CtlError> {
        let net = self.network(&a.network)?.id;
        self.refuse_cluster_entry(&a.network, a.mac)?;
        let rows = self.fdb_show(&FdbSelect {
            network: Some(a.network.clone()),
            ..FdbSelect::default()
        })?;
        let (port, vtep) = rows
            .into_iter()
            .find(|r| r.mac == a.mac)
            .map(|r| (r.port, r.vtep))
            .unwrap_or_default();
        if !self.fdb().remove(net, a.mac) {
            return Err(CtlError::not_found(format!(
                "no FDB entry for {} in network {:?}; see 'vxswitch fdb show --network {}'",
                a.mac, a.network, a.network
            )));
        }
        Ok(FdbChanged {
            network: a.network.clone(),
            mac: a.mac,
            port,
            vtep,
        })
    }

    /// The cluster's entries are the cluster's: an operator's change would
    /// be undone by nobody, and be wrong once the endpoint moves.
    fn refuse_cluster_entry(
        &self,
        network: &str,
        mac: crate::wire::MacAddr,
    ) -> Result<(), CtlError> {
        if self.is_cluster_fdb(network, mac) {
            return Err(CtlError::busy(format!(
                "the FDB entry of {mac} in network {network:?} is managed by the cluster (a                  remote endpoint); it goes when the endpoint leaves the cluster"
            )));
        }
        Ok(())
    }

    /// Removes learned entries (static ones stay: delete those one by one).
    pub fn fdb_flush(&mut self, sel: &FdbSelect) -> Result<FdbFlushed, CtlError> {
        let filters = self.filters(sel, true)?;
        Ok(FdbFlushed {
            removed: filters.into_iter().map(|f| self.fdb().flush(f)).sum(),
        })
    }
}

/// "entry" or "entries", after a count.
pub(super) fn entries(n: usize) -> &'static str {
    if n == 1 {
        "entry"
    } else {
        "entries"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::proto::{ErrorKind, PortRm, StatsArgs};
    use crate::ctl::testutil::{daemon, fd_port, frame, net, recv, vtep_rm, vx_daemon, vx_net};
    use crate::switch::EngineConfig;
    use crate::time::MonotonicClock;
    use crate::wire::MacAddr;
    use std::fs::File;
    use std::io::Write;
    use std::sync::Arc;

    #[test]
    fn fdb_limits_name_the_option_to_raise() {
        let mut d = Daemon::new(
            EngineConfig {
                fdb: crate::fdb::FdbConfig {
                    max_entries: 2,
                    max_per_dest: 1,
                    ..Default::default()
                },
                ..EngineConfig::default()
            },
            Arc::new(MonotonicClock::new()),
            None,
        )
        .unwrap();
        d.set_log_events(false);
        net(&mut d, "red", None, None);
        let _ports: Vec<File> = ["a", "b", "c"]
            .iter()
            .map(|p| fd_port(&mut d, p, "red"))
            .collect();
        let add = |d: &mut Daemon, last: u8, port: &str| {
            d.fdb_add(&FdbAdd {
                network: "red".into(),
                mac: MacAddr([2, 0, 0, 0, 0, last]),
                port: Some(port.into()),
                vtep: None,
            })
        };
        add(&mut d, 1, "a").unwrap();
        let e = add(&mut d, 2, "a").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Busy);
        assert_eq!(
            e.message,
            "port \"a\" already has 1 FDB entry (the per-port and per-VTEP limit); delete \
             some or start the daemon with a higher --fdb-max-per-port ([fdb] max_per_dest)"
        );
        add(&mut d, 3, "b").unwrap();
        let e = add(&mut d, 4, "c").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Busy);
        assert_eq!(
            e.message,
            "the forwarding table is full (2 entries); delete some or start the daemon with a \
             higher --fdb-max-entries ([fdb] max_entries)"
        );
        d.shutdown();
    }

    #[test]
    fn port_rm_flushes_its_entries_and_fdb_commands_work() {
        let mut d = daemon();
        net(&mut d, "red", None, None);
        net(&mut d, "blue", None, None);
        let mut a = fd_port(&mut d, "a", "red");
        let mut b = fd_port(&mut d, "b", "red");
        let _c = fd_port(&mut d, "c", "blue");
        let src = [0x02, 0, 0, 0, 0, 0xaa];
        a.write_all(&frame([0xff; 6], src)).unwrap();
        assert_eq!(recv(&mut b)[6..12], src);
        let rows = d.fdb_show(&FdbSelect::default()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].network.as_str(), rows[0].port.as_deref()),
            ("red", Some("a"))
        );
        let mac = MacAddr([2, 0, 0, 0, 0, 0xbb]);
        d.fdb_add(&FdbAdd {
            network: "red".into(),
            mac,
            port: Some("b".into()),
            vtep: None,
        })
        .unwrap();
        let e = d
            .fdb_add(&FdbAdd {
                network: "red".into(),
                mac,
                port: Some("c".into()),
                vtep: None,
            })
            .unwrap_err();
        assert!(
            e.message.contains("is on network \"blue\""),
            "{}",
            e.message
        );
        // Flush removes learned entries only.
        let flushed = d.fdb_flush(&FdbSelect::default()).unwrap();
        assert_eq!(flushed.removed, 1);
        let rows = d.fdb_show(&FdbSelect::default()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].mac, mac);
        let removed = d.port_rm(&PortRm { name: "b".into() }).unwrap();
        assert_eq!(removed.fdb_flushed, 1);
        assert!(d.fdb_show(&FdbSelect::default()).unwrap().is_empty());
        let e = d
            .fdb_del(&FdbDel {
                network: "red".into(),
                mac,
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        let st = d.stats(&StatsArgs::default()).unwrap();
        assert_eq!(st.ports.len(), 2);
        assert_eq!(st.ports[0].stats.rx_frames, 1);
        d.shutdown();
    }

    #[test]
    fn fdb_entries_can_point_at_vteps() {
        let (mut d, port) = vx_daemon();
        vx_net(&mut d, "blue", Some(4242), &["198.18.0.2"]);
        net(&mut d, "plain", None, None);
        let mut a = fd_port(&mut d, "a", "blue");
        let _b = fd_port(&mut d, "b", "blue");
        a.write_all(&frame([0xff; 6], [2, 0, 0, 0, 0, 0xaa]))
            .unwrap();
        let mac = MacAddr([2, 0, 0, 0, 0, 0xbb]);
        let add = |port: Option<&str>, vtep: Option<&str>| FdbAdd {
            network: "blue".into(),
            mac,
            port: port.map(Into::into),
            vtep: vtep.map(Into::into),
        };
        for (p, v) in [(None, None), (Some("a"), Some("198.18.0.2"))] {
            let e = d.fdb_add(&add(p, v)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument);
            assert!(
                e.message.contains("give exactly one of port"),
                "{}",
                e.message
            );
        }
        let e = d.fdb_add(&add(None, Some("198.18.0.9"))).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(
            e.message
                .ends_with("add it first with 'vxswitch vtep add blue 198.18.0.9'"),
            "{}",
            e.message
        );
        let e = d
            .fdb_add(&FdbAdd {
                network: "plain".into(),
                ..add(None, Some("198.18.0.2"))
            })
            .unwrap_err();
        assert!(e.message.contains("has no VNI"), "{}", e.message);

        let c = d.fdb_add(&add(None, Some("198.18.0.2"))).unwrap();
        let addr = format!("198.18.0.2:{port}");
        assert_eq!((c.port, c.vtep.as_deref()), (None, Some(addr.as_str())));
        // The learned local MAC and the static remote one, each with one destination.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let rows = loop {
            let rows = d.fdb_show(&FdbSelect::default()).unwrap();
            if rows.len() == 2 {
                break rows;
            }
            assert!(std::time::Instant::now() < deadline, "{rows:?}");
            d.engine.barrier().unwrap();
        };
        assert_eq!(
            (rows[0].port.as_deref(), rows[0].vtep.as_deref()),
            (Some("a"), None)
        );
        assert_eq!(rows[1].mac, mac);
        assert_eq!(
            (rows[1].port.as_deref(), rows[1].vtep.as_deref()),
            (None, Some(addr.as_str()))
        );
        assert_eq!(rows[1].kind, crate::fdb::EntryKind::Static);
        // Filters: by port (local only), by VTEP (with and without network or port).
        let sel = |port: Option<&str>, vtep: Option<&str>, network: Option<&str>| FdbSelect {
            network: network.map(Into::into),
            port: port.map(Into::into),
            vtep: vtep.map(Into::into),
        };
        assert_eq!(d.fdb_show(&sel(Some("a"), None, None)).unwrap().len(), 1);
        for (v, n) in [
            ("198.18.0.2", None),
            (addr.as_str(), None),
            ("198.18.0.2", Some("blue")),
        ] {
            let rows = d.fdb_show(&sel(None, Some(v), n)).unwrap();
            assert_eq!(rows.len(), 1, "{v} {n:?}");
            assert_eq!(rows[0].mac, mac);
        }
        let e = d
            .fdb_show(&sel(None, Some("198.18.0.7"), None))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(
            e.message.contains("not a VTEP of any network"),
            "{}",
            e.message
        );
        let e = d
            .fdb_show(&sel(Some("a"), Some("198.18.0.2"), None))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        // Flushing by VTEP leaves the static entry.
        assert_eq!(
            d.fdb_flush(&sel(None, Some("198.18.0.2"), None))
                .unwrap()
                .removed,
            0
        );
        // Removing the VTEP flushes what pointed at it.
        let r = d.vtep_rm(&vtep_rm("blue", "198.18.0.2")).unwrap();
        assert_eq!(r.fdb_flushed, 1);
        let rows = d.fdb_show(&FdbSelect::default()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].port.as_deref(), Some("a"));
        d.shutdown();
    }
}
