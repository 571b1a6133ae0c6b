//! `monitor`: the daemon's events as they happen, for the connections
//! that asked (the server keeps those connections, see `server/mod.rs`).
//!
//! Two sources, merged in order on the control thread:
//!
//! - the FDB's change feed ([`crate::fdb::Fdb::watch`]): MACs learned,
//!   moved and refused by the workers, aged by worker 0's sweep, through
//!   a bounded lock-free queue the workers never wait on;
//! - this thread's own changes: requests that changed something, ports
//!   that went away on their own, VTEPs learned or gone idle.
//!
//! Before each event of the second kind the feed is drained, so an event
//! never overtakes a MAC change that happened before it. Ids are turned
//! into names when drained (a port removed since is named by its id).
//! Nothing is kept while nobody watches; while someone does, at most
//! [`MAX_HELD`] events wait here for the server, older ones lost and
//! counted.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use super::daemon::Daemon;
use super::ports::GonePort;
use super::proto::{CtlError, MonitorEvent, MonitorStarted, Reply, Request};
use crate::cluster::Change;
use crate::fdb::{ChangeKind, Dest, NetId, Refusal};
use crate::vxlan::VtepInfo;

/// Events held for the server at most between two of its turns.
pub const MAX_HELD: usize = 16 * 1024;

/// The events waiting for the monitoring connections.
#[derive(Debug, Default)]
pub struct MonitorLog {
    watching: bool,
    events: VecDeque<MonitorEvent>,
    /// Events dropped here or by the FDB's feed, not yet reported.
    unreported_lost: u64,
    /// Events lost in all, here, in the feed and by slow clients.
    lost_total: u64,
    /// The feed's loss counter at the last look.
    fdb_lost_seen: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A new event of `kind`, stamped now.
pub fn event(kind: &str) -> MonitorEvent {
    MonitorEvent {
        ts_ms: now_ms(),
        kind: kind.to_string(),
        ..MonitorEvent::default()
    }
}

impl Daemon {
    /// `monitor`'s reply; the server turns the connection into a stream.
    pub(super) fn monitor_start(&self) -> MonitorStarted {
        MonitorStarted { monitoring: true }
    }

    pub(super) fn monitor_watching(&self) -> bool {
        self.monitor.watching
    }

    /// Whether events are collected: the server says so whenever the
    /// number of monitoring connections goes from or to zero.
    pub fn set_watching(&mut self, on: bool) {
        if self.monitor.watching == on {
            return;
        }
        self.monitor.watching = on;
        self.fdb().watch(on);
        self.monitor.fdb_lost_seen = self.fdb().changes_lost();
        if !on {
            self.monitor.events.clear();
            self.monitor.unreported_lost = 0;
        }
    }

    /// The events since the last call, in order (with a `lost` event
    /// first when some were dropped).
    pub fn take_monitor_events(&mut self) -> Vec<MonitorEvent> {
        if !self.monitor.watching {
            return Vec::new();
        }
        self.drain_fdb_changes();
        let mut out = Vec::with_capacity(self.monitor.events.len() + 1);
        if self.monitor.unreported_lost > 0 {
            let mut lost = event("lost");
            lost.count = Some(std::mem::take(&mut self.monitor.unreported_lost));
            out.push(lost);
        }
        out.extend(self.monitor.events.drain(..));
        out
    }

    /// Counts events a slow monitoring client lost.
    pub fn count_monitor_lost(&mut self, n: u64) {
        self.monitor.lost_total += n;
    }

    /// Events lost since the daemon started: dropped while held here, by
    /// the FDB's full feed, or for clients that did not read in time.
    pub fn monitor_lost(&self) -> u64 {
        self.monitor.lost_total
    }

    fn push_event(&mut self, ev: MonitorEvent) {
        if self.monitor.events.len() >= MAX_HELD {
            self.monitor.events.pop_front();
            self.monitor.unreported_lost += 1;
            self.monitor.lost_total += 1;
        }
        self.monitor.events.push_back(ev);
    }

    /// Records an event of the control thread's own, after the MAC changes
    /// that came before it.
    pub(super) fn emit(&mut self, ev: MonitorEvent) {
        if !self.monitor.watching {
            return;
        }
        self.drain_fdb_changes();
        self.push_event(ev);
    }

    /// Takes the MAC changes queued so far, naming their ports while the
    /// ports are still known: called before anything that may remove one.
    pub(super) fn monitor_sync(&mut self) {
        if self.monitor.watching {
            self.drain_fdb_changes();
        }
    }

    fn drain_fdb_changes(&mut self) {
        let lost = self.fdb().changes_lost();
        let new = lost.saturating_sub(self.monitor.fdb_lost_seen);
        self.monitor.unreported_lost += new;
        self.monitor.lost_total += new;
        self.monitor.fdb_lost_seen = lost;
        while let Some(c) = self.fdb().next_change() {
            let (kind, cause, from) = match c.kind {
                ChangeKind::Learned => ("mac_learned", None, None),
                ChangeKind::Moved { from } => ("mac_moved", None, Some(self.dest_name(from))),
                ChangeKind::Aged => ("mac_aged", None, None),
                ChangeKind::Refused(why) => (
                    "mac_refused",
                    Some(match why {
                        Refusal::TableFull => "table_full",
                        Refusal::DestLimit => "port_limit",
                        Refusal::NetLimit => "network_limit",
                    }),
                    None,
                ),
            };
            let mut ev = event(kind);
            ev.network = Some(self.net_name(c.net));
            ev.mac = Some(c.mac);
            match c.dest {
                Dest::Local(_) => ev.port = Some(self.dest_name(c.dest)),
                Dest::Remote(_) => ev.vtep = Some(self.vtep_addr(c.dest)),
            }
            ev.from = from;
            ev.cause = cause.map(str::to_string);
            self.push_event(ev);
        }
    }

    fn net_name(&self, id: NetId) -> String {
        self.networks
            .iter()
            .find(|(_, n)| n.id == id)
            .map_or_else(|| format!("#{}", id.0), |(name, _)| name.clone())
    }

    fn vtep_addr(&self, d: Dest) -> String {
        let Dest::Remote(id) = d else {
            return String::new();
        };
        self.networks
            .values()
            .flat_map(|n| n.vteps.iter())
            .find(|(_, v)| v.id == id)
            .map_or_else(|| format!("#{}", id.0), |(addr, _)| addr.to_string())
    }

    /// A port's name, or `vtep IP:PORT`.
    fn dest_name(&self, d: Dest) -> String {
        match d {
            Dest::Local(id) => self
                .ports
                .iter()
                .find(|(_, p)| p.id == id)
                .map_or_else(|| format!("#{}", id.0), |(name, _)| name.clone()),
            Dest::Remote(_) => format!("vtep {}", self.vtep_addr(d)),
        }
    }

    /// The events of a request that changed something.
    pub(super) fn note_request(&mut self, req: &Request, reply: &Result<Reply, CtlError>) {
        let Ok(reply) = reply else {
            return;
        };
        let ev = match (req, reply) {
            (Request::NetworkCreate(a), _) => {
                let mut e = event("network_created");
                e.network = Some(a.name.clone());
                e
            }
            (Request::NetworkRm(a), _) => {
                let mut e = event("network_removed");
                e.network = Some(a.name.clone());
                e
            }
            (Request::PortAdd(a), Reply::Port(p)) => {
                let mut e = event("port_added");
                e.port = Some(a.name.clone());
                e.network = Some(a.network.clone());
                e.mac = p.mac;
                e
            }
            (Request::PortRm(a), _) => {
                let mut e = event("port_removed");
                e.port = Some(a.name.clone());
                e.cause = Some("port.rm".into());
                e
            }
            (Request::VtepAdd(a), Reply::Vtep(v)) => {
                let mut e = event("vtep_added");
                e.network = Some(a.network.clone());
                e.vtep = Some(v.addr.clone());
                e
            }
            (Request::VtepRm(_), Reply::VtepRemoved(r)) => {
                let mut e = event("vtep_removed");
                e.network = Some(r.network.clone());
                e.vtep = Some(r.addr.clone());
                e.cause = Some("vtep.rm".into());
                e
            }
            (
                Request::PortSet(_)
                | Request::FdbAdd(_)
                | Request::FdbDel(_)
                | Request::FdbFlush(_),
                _,
            ) => {
                let mut e = event("config");
                e.what = Some(req.name().to_string());
                e
            }
            _ => return,
        };
        self.emit(ev);
    }

    /// A VTEP the dataplane learned (`learned`) or found idle.
    pub(super) fn note_vtep(&mut self, info: &VtepInfo, learned: bool) {
        if !self.monitor.watching {
            return;
        }
        let mut e = event(if learned {
            "vtep_learned"
        } else {
            "vtep_removed"
        });
        e.network = Some(self.net_name(info.net));
        e.vtep = Some(info.addr.to_string());
        if !learned {
            e.cause = Some("idle".into());
        }
        self.emit(e);
    }

    /// What a change of the cluster agent finds before it is applied, for
    /// [`Daemon::note_cluster`] to tell whether it changed anything: the
    /// network, the VTEP or the cluster's FDB entry as it is now.
    pub(super) fn cluster_before(&self, c: &Change) -> Option<String> {
        if !self.monitor.watching {
            return None;
        }
        match c {
            Change::AddNetwork { name, .. } | Change::RemoveNetwork { name } => self
                .networks
                .get(name)
                .map(|n| format!("network cluster={}", n.spec.cluster)),
            Change::AddVtep { network, vtep } | Change::RemoveVtep { network, vtep } => self
                .networks
                .get(network)
                .filter(|n| n.vteps.contains_key(vtep))
                .map(|_| "vtep".to_string()),
            Change::SetFdb { network, mac, .. } | Change::RemoveFdb { network, mac } => self
                .cluster
                .applied
                .fdb
                .get(&(network.clone(), *mac))
                .map(|v| v.to_string()),
            Change::SetNeigh { .. } | Change::RemoveNeigh { .. } => None,
        }
    }

    /// The event of a change the cluster agent applied (`before`: what
    /// [`Daemon::cluster_before`] found), like the one of the request that
    /// would make it by hand, with `cause` `cluster`. A change that
    /// changed nothing (the agent's resync) is no event; nor are the
    /// ARP/ND bindings.
    pub(super) fn note_cluster(&mut self, c: &Change, before: Option<String>) {
        if !self.monitor.watching {
            return;
        }
        let e = match c {
            Change::AddNetwork { name, .. } if before.is_none() => {
                let mut e = event("network_created");
                e.network = Some(name.clone());
                e
            }
            Change::RemoveNetwork { name } if before.as_deref() == Some("network cluster=true") => {
                let mut e = if self.networks.contains_key(name) {
                    // Its ports keep it, as a local network.
                    let mut e = event("config");
                    e.what = Some("network.left_cluster".into());
                    e
                } else {
                    event("network_removed")
                };
                e.network = Some(name.clone());
                e
            }
            Change::AddVtep { network, vtep } if before.is_none() => {
                let mut e = event("vtep_added");
                e.network = Some(network.clone());
                e.vtep = Some(vtep.to_string());
                e
            }
            Change::RemoveVtep { network, vtep }
                if before.is_some()
                    && !self
                        .networks
                        .get(network)
                        .is_some_and(|n| n.vteps.contains_key(vtep)) =>
            {
                let mut e = event("vtep_removed");
                e.network = Some(network.clone());
                e.vtep = Some(vtep.to_string());
                e
            }
            Change::SetFdb { network, mac, vtep } if before != Some(vtep.to_string()) => {
                let mut e = event("config");
                e.what = Some("fdb.add".into());
                e.network = Some(network.clone());
                e.mac = Some(*mac);
                e.vtep = Some(vtep.to_string());
                e
            }
            Change::RemoveFdb { network, mac } if before.is_some() => {
                let mut e = event("config");
                e.what = Some("fdb.del".into());
                e.network = Some(network.clone());
                e.mac = Some(*mac);
                e
            }
            _ => return,
        };
        self.emit(MonitorEvent {
            cause: Some("cluster".into()),
            ..e
        });
    }

    /// Ports that went away on their own.
    pub(super) fn note_gone(&mut self, gone: &[GonePort]) {
        for g in gone {
            let mut e = event("port_gone");
            e.port = Some(g.name.clone());
            e.network = Some(g.network.clone());
            e.cause = Some(g.cause.to_string());
            self.emit(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::{Duration, Instant};

    use crate::ctl::proto::parse_request;
    use crate::ctl::testutil::{daemon, fd_port, frame, net};

    #[test]
    fn learn_config_and_gone_ports_become_events_in_order_only_while_watched() {
        let mut d = daemon();
        net(&mut d, "red", None, None);
        assert!(d.take_monitor_events().is_empty());
        d.set_watching(true);
        d.handle(parse_request(br#"{"cmd":"network.create","args":{"name":"blue"}}"#).unwrap())
            .unwrap();
        let mut a = fd_port(&mut d, "a", "blue");
        let _b = fd_port(&mut d, "b", "blue");
        a.write_all(&frame([0xff; 6], [2, 0, 0, 0, 0, 1])).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while d.fdb().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(a);
        let mut events = Vec::new();
        while Instant::now() < deadline {
            d.process_events();
            events.extend(d.take_monitor_events());
            if events.iter().any(|e| e.kind == "port_gone") {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let seen: Vec<_> = events
            .iter()
            .map(|e| {
                (
                    e.kind.as_str(),
                    e.network.as_deref().unwrap_or(""),
                    e.port.as_deref().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("network_created", "blue", ""),
                ("mac_learned", "blue", "a"),
                ("port_gone", "blue", "a"),
            ]
        );
        assert_eq!(events[1].mac.unwrap().to_string(), "02:00:00:00:00:01");
        d.set_watching(false);
        net(&mut d, "green", None, None);
        assert!(d.take_monitor_events().is_empty());
        d.shutdown();
    }
}
