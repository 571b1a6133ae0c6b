//! The daemon's desired state: networks and ports by name, and the
//! [`Engine`] that carries their frames.
//!
//! Every request is a method returning `Result<_, CtlError>`, so the whole
//! control logic is unit-tested without a socket; the server only parses
//! lines and calls [`Daemon::handle`]. The daemon is owned by one thread
//! (the server's), so it needs no locks: the dataplane runs on its own
//! thread and is told about changes through the engine's command channel,
//! which returns only once the change is in effect (a removed port's fd is
//! closed, its FDB entries flushed).
//!
//! Ids: networks and ports get the lowest free [`NetId`]/[`PortId`],
//! because the engine indexes vectors by them; ids are reused after
//! removal. A port the dataplane drops on its own (its fd died) is reported
//! as [`Event::PortGone`]; [`Daemon::process_events`] forgets it. The race
//! "the port dies while `port.rm` runs" is closed by draining the events
//! whenever the engine says the port was no longer attached: the worker
//! queues the event before it answers the removal, so the id is forgotten
//! before it can be handed out again.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use ipnet::IpNet;
use mio::Waker;

use super::proto::{
    CtlError, ErrorKind, FdbAdd, FdbChanged, FdbDel, FdbFlushed, FdbRow, FdbSelect, NetworkCreate,
    NetworkInfo, NetworkRemoved, NetworkRm, Pong, PortAdd, PortInfo, PortKind, PortRemoved, PortRm,
    PortStatsRow, Reply, Request, StatsArgs, StatsReply, VersionInfo, PROTOCOL_VERSION,
};
use crate::fdb::{Dest, Fdb, FdbError, Filter, NetId, PortId};
use crate::ports::{self, Netns, TapSpec};
use crate::switch::{Engine, EngineConfig, EngineError, Event, PortAttach, PortStats};
use crate::time::Clock;
use crate::wire::MacAddr;

/// MTU of a network's ports when neither the network nor the port says.
pub const DEFAULT_MTU: u32 = 1500;
/// Smallest MTU an IPv4 link may have (RFC 791).
pub const MIN_MTU: u32 = 68;
/// Largest MTU a TAP accepts.
pub const MAX_MTU: u32 = 65_535;
/// Interface names are at most 15 bytes (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;
/// Network and port names are labels; this keeps tables and messages sane.
const MAX_NAME: usize = 64;

/// The crate version, as `ping` and `version` report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug)]
struct Network {
    id: NetId,
    subnet: Option<IpNet>,
    gateway: Option<IpAddr>,
    mtu: u32,
}

#[derive(Debug)]
struct Port {
    id: PortId,
    network: String,
    net: NetId,
    kind: PortKind,
    netns: Netns,
    ifname: Option<String>,
    mac: Option<MacAddr>,
    ip: Option<IpNet>,
    mtu: u32,
    stats: Arc<PortStats>,
}

/// A port that went away on its own, as [`Daemon::process_events`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GonePort {
    pub name: String,
    pub network: String,
    pub cause: String,
}

/// The control plane's state and the dataplane it drives.
pub struct Daemon {
    engine: Engine,
    clock: Arc<dyn Clock>,
    networks: BTreeMap<String, Network>,
    ports: BTreeMap<String, Port>,
    /// Print one line to stderr per port that went away (on by default).
    log_events: bool,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("networks", &self.networks)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Starts the dataplane. `notify` is woken when the dataplane raises an
    /// [`Event`]; the owner then calls [`Daemon::process_events`].
    pub fn new(
        cfg: EngineConfig,
        clock: Arc<dyn Clock>,
        notify: Option<Arc<Waker>>,
    ) -> io::Result<Daemon> {
        let engine = Engine::start(cfg, clock.clone(), notify)?;
        Ok(Daemon {
            engine,
            clock,
            networks: BTreeMap::new(),
            ports: BTreeMap::new(),
            log_events: true,
        })
    }

    /// Whether a port that goes away is logged to stderr.
    pub fn set_log_events(&mut self, on: bool) {
        self.log_events = on;
    }

    /// The dataplane's forwarding database.
    pub fn fdb(&self) -> &Arc<Fdb> {
        self.engine.fdb()
    }

    /// Stops the dataplane: every port's fd is closed, so TAPs vxswitch
    /// created disappear. Existing TAPs stay.
    pub fn shutdown(self) {
        self.engine.stop();
    }

    /// Answers one request.
    pub fn handle(&mut self, req: Request) -> Result<Reply, CtlError> {
        self.process_events();
        Ok(match req {
            Request::Ping(_) => Reply::Pong(Pong {
                pong: true,
                version: VERSION.into(),
            }),
            Request::Version(_) => Reply::Version(VersionInfo {
                version: VERSION.into(),
                protocol: PROTOCOL_VERSION,
            }),
            Request::NetworkCreate(a) => Reply::Network(self.network_create(&a)?),
            Request::NetworkLs(_) => Reply::Networks(self.network_ls()),
            Request::NetworkRm(a) => Reply::NetworkRemoved(self.network_rm(&a)?),
            Request::PortAdd(a) => Reply::Port(self.port_add(&a)?),
            Request::PortLs(_) => Reply::Ports(self.port_ls()),
            Request::PortRm(a) => Reply::PortRemoved(self.port_rm(&a)?),
            Request::FdbShow(a) => Reply::Fdb(self.fdb_show(&a)?),
            Request::FdbAdd(a) => Reply::FdbChanged(self.fdb_add(&a)?),
            Request::FdbDel(a) => Reply::FdbChanged(self.fdb_del(&a)?),
            Request::FdbFlush(a) => Reply::FdbFlushed(self.fdb_flush(&a)?),
            Request::Stats(a) => Reply::Stats(self.stats(&a)?),
        })
    }

    /// Forgets ports the dataplane removed on its own, logging one line each.
    pub fn process_events(&mut self) -> Vec<GonePort> {
        let mut gone = Vec::new();
        while let Ok(ev) = self.engine.events().try_recv() {
            match ev {
                // Recorded once `vtep ls` exists in the control plane.
                Event::VtepLearned(_) => {}
                Event::PortGone { id, cause } => {
                    let Some(name) = self
                        .ports
                        .iter()
                        .find(|(_, p)| p.id == id)
                        .map(|(n, _)| n.clone())
                    else {
                        continue;
                    };
                    let Some(port) = self.ports.remove(&name) else {
                        continue;
                    };
                    if self.log_events {
                        eprintln!(
                            "vxswitch: port {name} (network {}) went away: {cause}; \
                             removed it and flushed its FDB entries",
                            port.network
                        );
                    }
                    gone.push(GonePort {
                        name,
                        network: port.network,
                        cause,
                    });
                }
            }
        }
        gone
    }

    // -- networks ---------------------------------------------------------

    pub fn network_create(&mut self, a: &NetworkCreate) -> Result<NetworkInfo, CtlError> {
        check_name("network", &a.name)?;
        if self.networks.contains_key(&a.name) {
            return Err(CtlError::exists(format!(
                "network {:?} already exists; choose another name or remove it with \
                 'vxswitch network rm {}'",
                a.name, a.name
            )));
        }
        let subnet = a
            .subnet
            .as_deref()
            .map(|s| parse_subnet(&a.name, s))
            .transpose()?;
        let gateway = match (&a.gateway, subnet) {
            (None, _) => None,
            (Some(g), None) => {
                return Err(CtlError::invalid(format!(
                    "network {:?}: gateway {g} needs a subnet; add --subnet (e.g. the /24 \
                     that contains {g})",
                    a.name
                )))
            }
            (Some(g), Some(net)) => Some(parse_gateway(&a.name, g, net)?),
        };
        let mtu = check_mtu(
            &format!("network {:?}", a.name),
            a.mtu.unwrap_or(DEFAULT_MTU),
        )?;
        let id = NetId(lowest_free(self.networks.values().map(|n| n.id.0)));
        // A reused id must not inherit entries of the network that had it.
        self.fdb().flush(Filter {
            net: Some(id),
            ..Filter::default()
        });
        let net = Network {
            id,
            subnet,
            gateway,
            mtu,
        };
        let info = self.network_info(&a.name, &net);
        self.networks.insert(a.name.clone(), net);
        Ok(info)
    }

    pub fn network_ls(&self) -> Vec<NetworkInfo> {
        self.networks
            .iter()
            .map(|(name, net)| self.network_info(name, net))
            .collect()
    }

    pub fn network_rm(&mut self, a: &NetworkRm) -> Result<NetworkRemoved, CtlError> {
        let net = self.network(&a.name)?;
        let id = net.id;
        let attached = self.ports_of(&a.name);
        if !attached.is_empty() && !a.force {
            return Err(CtlError::busy(format!(
                "network {:?} has {} port(s) attached ({}); remove them first with \
                 'vxswitch port rm NAME', or use --force to remove them with the network",
                a.name,
                attached.len(),
                attached.join(", ")
            )));
        }
        for p in &attached {
            self.port_rm(&PortRm { name: p.clone() })?;
        }
        self.networks.remove(&a.name);
        self.fdb().flush(Filter {
            net: Some(id),
            ..Filter::default()
        });
        Ok(NetworkRemoved {
            name: a.name.clone(),
            removed_ports: attached,
        })
    }

    fn network(&self, name: &str) -> Result<&Network, CtlError> {
        self.networks.get(name).ok_or_else(|| {
            CtlError::not_found(format!(
                "network {name:?} does not exist; create it with 'vxswitch network create \
                 {name}' or list networks with 'vxswitch network ls'"
            ))
        })
    }

    fn network_info(&self, name: &str, net: &Network) -> NetworkInfo {
        NetworkInfo {
            name: name.to_string(),
            subnet: net.subnet,
            gateway: net.gateway,
            mtu: net.mtu,
            ports: self.ports_of(name),
        }
    }

    fn ports_of(&self, network: &str) -> Vec<String> {
        self.ports
            .iter()
            .filter(|(_, p)| p.network == network)
            .map(|(n, _)| n.clone())
            .collect()
    }

    // -- ports ------------------------------------------------------------

    /// `port.add`: creates a TAP in the container's namespace (or attaches
    /// an existing one) and hands its fd to the dataplane.
    pub fn port_add(&mut self, a: &PortAdd) -> Result<PortInfo, CtlError> {
        self.check_new_port(&a.name, &a.network)?;
        let net = self.network(&a.network)?;
        let (net_mtu, subnet, gateway) = (net.mtu, net.subnet, net.gateway);
        let what = format!("port {:?}", a.name);

        if a.existing {
            let mut set = Vec::new();
            for (field, given) in [
                ("netns", a.netns.is_some()),
                ("pid", a.pid.is_some()),
                ("ifname", a.ifname.is_some()),
                ("mac", a.mac.is_some()),
                ("ip", a.ip.is_some()),
                ("mtu", a.mtu.is_some()),
            ] {
                if given {
                    set.push(field);
                }
            }
            if !set.is_empty() {
                return Err(CtlError::invalid(format!(
                    "{what}: an existing TAP is attached as it is, so {} cannot be set; \
                     configure the TAP with ip(8) instead, or leave out 'existing' to \
                     create a new one",
                    set.join(", ")
                )));
            }
            check_ifname(&a.name)?;
            let tap = ports::attach_existing(&a.name).map_err(|e| port_error(&what, e))?;
            let meta = PortMeta {
                kind: if tap.created {
                    PortKind::Created
                } else {
                    PortKind::Existing
                },
                netns: Netns::Current,
                ifname: Some(tap.ifname),
                mac: Some(tap.mac),
                ip: None,
            };
            return self.attach(&a.name, &a.network, tap.fd, tap.mtu, meta);
        }

        let netns = match (&a.netns, a.pid) {
            (Some(_), Some(_)) => {
                return Err(CtlError::invalid(format!(
                    "{what}: give either netns or pid, not both"
                )))
            }
            (Some(path), None) => {
                if path.is_empty() {
                    return Err(CtlError::invalid(format!(
                        "{what}: netns is empty; give a namespace file like /run/netns/c1"
                    )));
                }
                Netns::Path(path.into())
            }
            (None, Some(pid)) => Netns::Pid(pid),
            (None, None) => Netns::Current,
        };
        let ifname = match (&a.ifname, &netns) {
            (Some(i), _) => i.clone(),
            // In the daemon's own namespace the TAP is visible next to every
            // other port: name it after the port, not "eth0".
            (None, Netns::Current) => a.name.clone(),
            (None, _) => "eth0".to_string(),
        };
        check_ifname(&ifname)?;
        if let Some(mac) = a.mac {
            if !mac.is_valid_source() {
                return Err(CtlError::invalid(format!(
                    "{what}: MAC {mac} is not a unicast address; use one whose first octet \
                     is even, e.g. 02:00:00:00:00:01"
                )));
            }
        }
        let ip =
            a.ip.as_deref()
                .map(|raw| parse_port_ip(&what, &a.network, raw, subnet, gateway))
                .transpose()?;
        let mtu = check_mtu(&what, a.mtu.unwrap_or(net_mtu))?;
        for (other, p) in &self.ports {
            if p.netns == netns && p.ifname.as_deref() == Some(ifname.as_str()) {
                return Err(CtlError::exists(format!(
                    "{what}: port {other:?} already has interface {ifname} in {}; choose \
                     another ifname",
                    netns_label(&netns).unwrap_or_else(|| "the daemon's namespace".into())
                )));
            }
            if let (Some(mine), Some(theirs)) = (ip, p.ip) {
                if p.network == a.network && mine.addr() == theirs.addr() {
                    return Err(CtlError::exists(format!(
                        "{what}: address {} is already used by port {other:?} on network {}; \
                         choose another address",
                        mine.addr(),
                        a.network
                    )));
                }
            }
        }
        let spec = TapSpec {
            netns: netns.clone(),
            ifname,
            mac: a.mac,
            mtu: Some(mtu),
            addrs: ip.into_iter().collect(),
            // The route needs an address in the subnet to be reachable.
            gateway: ip.and(gateway),
        };
        let tap = ports::create_tap(&spec).map_err(|e| port_error(&what, e))?;
        let meta = PortMeta {
            kind: if tap.created {
                PortKind::Created
            } else {
                PortKind::Existing
            },
            netns,
            ifname: Some(tap.ifname),
            mac: Some(tap.mac),
            ip,
        };
        self.attach(&a.name, &a.network, tap.fd, tap.mtu, meta)
    }

    /// Attaches any fd that carries one Ethernet frame per read/write (one
    /// end of [`crate::seqpacket_pair`], a TAP opened elsewhere) as a port
    /// of `network`. `mtu` defaults to the network's.
    pub fn attach_fd(
        &mut self,
        name: &str,
        network: &str,
        fd: OwnedFd,
        mtu: Option<u32>,
    ) -> Result<PortInfo, CtlError> {
        self.process_events();
        self.check_new_port(name, network)?;
        let net_mtu = self.network(network)?.mtu;
        let mtu = check_mtu(&format!("port {name:?}"), mtu.unwrap_or(net_mtu))?;
        let meta = PortMeta {
            kind: PortKind::Fd,
            netns: Netns::Current,
            ifname: None,
            mac: None,
            ip: None,
        };
        self.attach(name, network, fd, mtu, meta)
    }

    fn check_new_port(&self, name: &str, network: &str) -> Result<(), CtlError> {
        check_name("port", name)?;
        if let Some(p) = self.ports.get(name) {
            return Err(CtlError::exists(format!(
                "port {name:?} already exists (network {}); choose another name or remove \
                 it first with 'vxswitch port rm {name}'",
                p.network
            )));
        }
        self.network(network).map(|_| ())
    }

    fn attach(
        &mut self,
        name: &str,
        network: &str,
        fd: OwnedFd,
        mtu: u32,
        meta: PortMeta,
    ) -> Result<PortInfo, CtlError> {
        let net = self.network(network)?.id;
        let id = PortId(lowest_free(self.ports.values().map(|p| p.id.0)));
        let stats = Arc::new(PortStats::default());
        self.engine
            .add_port(PortAttach {
                id,
                net,
                fd,
                mtu,
                stats: stats.clone(),
            })
            .map_err(|e| engine_error(&format!("port {name:?}"), e))?;
        let port = Port {
            id,
            network: network.to_string(),
            net,
            kind: meta.kind,
            netns: meta.netns,
            ifname: meta.ifname,
            mac: meta.mac,
            ip: meta.ip,
            mtu,
            stats,
        };
        let info = self.port_info(name, &port);
        self.ports.insert(name.to_string(), port);
        Ok(info)
    }

    pub fn port_ls(&self) -> Vec<PortInfo> {
        self.ports
            .iter()
            .map(|(n, p)| self.port_info(n, p))
            .collect()
    }

    /// `port.rm`: detaches the port (closing its fd deletes a TAP vxswitch
    /// created) and flushes its FDB entries, static ones included.
    pub fn port_rm(&mut self, a: &PortRm) -> Result<PortRemoved, CtlError> {
        let port = self.port(&a.name)?;
        let (id, network) = (port.id, port.network.clone());
        let fdb_flushed = self.fdb().dest_count(Dest::Local(id));
        let was_attached = self
            .engine
            .remove_port(id)
            .map_err(|e| engine_error(&format!("port {:?}", a.name), e))?;
        if !was_attached {
            // The dataplane dropped it on its own; its PortGone event is
            // already queued. Consume it now, before the id can be reused.
            self.process_events();
        }
        self.ports.remove(&a.name);
        Ok(PortRemoved {
            name: a.name.clone(),
            network,
            fdb_flushed,
        })
    }

    fn port(&self, name: &str) -> Result<&Port, CtlError> {
        self.ports.get(name).ok_or_else(|| {
            CtlError::not_found(format!(
                "port {name:?} does not exist; list ports with 'vxswitch port ls'"
            ))
        })
    }

    fn port_info(&self, name: &str, p: &Port) -> PortInfo {
        PortInfo {
            name: name.to_string(),
            network: p.network.clone(),
            kind: p.kind,
            netns: netns_label(&p.netns),
            ifname: p.ifname.clone(),
            mac: p.mac,
            ip: p.ip,
            mtu: p.mtu,
        }
    }

    // -- FDB --------------------------------------------------------------

    fn filter(&self, sel: &FdbSelect, learned_only: bool) -> Result<Filter, CtlError> {
        let net = sel
            .network
            .as_deref()
            .map(|n| self.network(n).map(|n| n.id))
            .transpose()?;
        let dest = sel
            .port
            .as_deref()
            .map(|p| self.port(p).map(|p| Dest::Local(p.id)))
            .transpose()?;
        Ok(Filter {
            net,
            dest,
            learned_only,
        })
    }

    pub fn fdb_show(&self, sel: &FdbSelect) -> Result<Vec<FdbRow>, CtlError> {
        let filter = self.filter(sel, false)?;
        let nets: HashMap<NetId, &str> = self
            .networks
            .iter()
            .map(|(n, net)| (net.id, n.as_str()))
            .collect();
        let ports: HashMap<PortId, &str> =
            self.ports.iter().map(|(n, p)| (p.id, n.as_str())).collect();
        let mut rows: Vec<FdbRow> = self
            .fdb()
            .entries(filter, self.clock.now())
            .into_iter()
            .filter_map(|e| {
                // Entries of a network being torn down are skipped, not shown nameless.
                let network = nets.get(&e.net)?.to_string();
                let port = match e.dest {
                    Dest::Local(p) => ports
                        .get(&p)
                        .map_or_else(|| e.dest.to_string(), |n| n.to_string()),
                    Dest::Remote(_) => e.dest.to_string(),
                };
                Some(FdbRow {
                    network,
                    mac: e.mac,
                    port,
                    kind: e.kind,
                    age_ms: e.age_ms,
                })
            })
            .collect();
        rows.sort_by(|a, b| (&a.network, a.mac).cmp(&(&b.network, b.mac)));
        Ok(rows)
    }

    pub fn fdb_add(&mut self, a: &FdbAdd) -> Result<FdbChanged, CtlError> {
        let net = self.network(&a.network)?.id;
        let port = self.port(&a.port)?;
        if port.net != net {
            return Err(CtlError::invalid(format!(
                "port {:?} is on network {:?}, not {:?}; an entry can only point at a port \
                 of its own network",
                a.port, port.network, a.network
            )));
        }
        let dest = Dest::Local(port.id);
        self.fdb()
            .add_static(net, a.mac, dest, self.clock.now())
            .map_err(|e| match e {
                FdbError::NotUnicast { .. } => CtlError::invalid(e.to_string()),
                FdbError::TableFull { .. } => CtlError::busy(e.to_string()),
                FdbError::DestLimit { max, .. } => CtlError::busy(format!(
                    "port {:?} already has {max} FDB entries (the per-port limit); delete \
                     some or start the daemon with a higher --fdb-max-per-port",
                    a.port
                )),
            })?;
        Ok(FdbChanged {
            network: a.network.clone(),
            mac: a.mac,
            port: a.port.clone(),
        })
    }

    pub fn fdb_del(&mut self, a: &FdbDel) -> Result<FdbChanged, CtlError> {
        let net = self.network(&a.network)?.id;
        let rows = self.fdb_show(&FdbSelect {
            network: Some(a.network.clone()),
            port: None,
        })?;
        let port = rows
            .iter()
            .find(|r| r.mac == a.mac)
            .map(|r| r.port.clone())
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
        })
    }

    /// Removes learned entries (static ones stay: delete those one by one).
    pub fn fdb_flush(&mut self, sel: &FdbSelect) -> Result<FdbFlushed, CtlError> {
        let filter = self.filter(sel, true)?;
        Ok(FdbFlushed {
            removed: self.fdb().flush(filter),
        })
    }

    // -- stats ------------------------------------------------------------

    pub fn stats(&self, a: &StatsArgs) -> Result<StatsReply, CtlError> {
        if let Some(p) = &a.port {
            self.port(p)?;
        }
        let ports = self
            .ports
            .iter()
            .filter(|(n, _)| a.port.as_ref().is_none_or(|want| want == *n))
            .map(|(n, p)| PortStatsRow {
                name: n.clone(),
                network: p.network.clone(),
                stats: p.stats.snapshot(),
            })
            .collect();
        Ok(StatsReply {
            ports,
            fdb: self.fdb().stats(),
        })
    }
}

struct PortMeta {
    kind: PortKind,
    netns: Netns,
    ifname: Option<String>,
    mac: Option<MacAddr>,
    ip: Option<IpNet>,
}

fn netns_label(n: &Netns) -> Option<String> {
    match n {
        Netns::Current => None,
        Netns::Path(p) => Some(p.display().to_string()),
        Netns::Pid(pid) => Some(format!("/proc/{pid}/ns/net")),
    }
}

fn port_error(what: &str, e: ports::PortError) -> CtlError {
    CtlError::new(ErrorKind::PortError, format!("{what}: {e}"))
}

fn engine_error(what: &str, e: EngineError) -> CtlError {
    CtlError::internal(format!(
        "{what}: the dataplane refused it: {e}; this is a bug, please report it with the \
         daemon's log"
    ))
}

/// The lowest id not in `used`.
fn lowest_free(used: impl Iterator<Item = u32>) -> u32 {
    let mut ids: Vec<u32> = used.collect();
    ids.sort_unstable();
    let mut next = 0u32;
    for id in ids {
        match id.cmp(&next) {
            std::cmp::Ordering::Equal => next = next.saturating_add(1),
            std::cmp::Ordering::Greater => break,
            std::cmp::Ordering::Less => {}
        }
    }
    next
}

fn check_name(what: &str, name: &str) -> Result<(), CtlError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let ok_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok_chars && ok_start && name.len() <= MAX_NAME {
        Ok(())
    } else {
        Err(CtlError::invalid(format!(
            "invalid {what} name {name:?}: use 1 to {MAX_NAME} letters, digits, '.', '_' or \
             '-', starting with a letter or digit"
        )))
    }
}

fn check_ifname(name: &str) -> Result<(), CtlError> {
    let bad = name.is_empty()
        || name.len() > MAX_IFNAME
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if bad {
        Err(CtlError::invalid(format!(
            "invalid interface name {name:?}: use 1 to {MAX_IFNAME} bytes without '/', ':' or \
             whitespace (a port in the daemon's own namespace is named after the port, so \
             keep such port names short or give --ifname)"
        )))
    } else {
        Ok(())
    }
}

fn check_mtu(what: &str, mtu: u32) -> Result<u32, CtlError> {
    if (MIN_MTU..=MAX_MTU).contains(&mtu) {
        Ok(mtu)
    } else {
        Err(CtlError::invalid(format!(
            "{what}: MTU {mtu} is out of range; use {MIN_MTU} to {MAX_MTU} (1500 is usual)"
        )))
    }
}

fn parse_subnet(network: &str, raw: &str) -> Result<IpNet, CtlError> {
    let net: IpNet = raw.parse().map_err(|_| {
        CtlError::invalid(format!(
            "network {network:?}: invalid subnet {raw:?}; write an address with a prefix \
             length, like 10.77.0.0/24"
        ))
    })?;
    if net.trunc() != net {
        return Err(CtlError::invalid(format!(
            "network {network:?}: subnet {raw} has host bits set; did you mean {}?",
            net.trunc()
        )));
    }
    Ok(net)
}

/// Whether `addr` is the subnet's own address or its IPv4 broadcast, which
/// no host may use (/31 and /32 have neither, RFC 3021).
fn reserved_in(net: IpNet, addr: IpAddr) -> bool {
    match net {
        IpNet::V4(n) if n.prefix_len() < 31 => {
            IpAddr::V4(n.network()) == addr || IpAddr::V4(n.broadcast()) == addr
        }
        IpNet::V6(n) if n.prefix_len() < 127 => IpAddr::V6(n.network()) == addr,
        _ => false,
    }
}

fn parse_gateway(network: &str, raw: &str, subnet: IpNet) -> Result<IpAddr, CtlError> {
    let gw: IpAddr = raw.parse().map_err(|_| {
        CtlError::invalid(format!(
            "network {network:?}: invalid gateway {raw:?}; write a plain address in the \
             subnet, like {}",
            example_host(subnet, 1)
        ))
    })?;
    if !subnet.contains(&gw) || reserved_in(subnet, gw) {
        return Err(CtlError::invalid(format!(
            "network {network:?}: gateway {gw} is not a host address of subnet {subnet}; \
             use one like {}",
            example_host(subnet, 1)
        )));
    }
    Ok(gw)
}

fn parse_port_ip(
    what: &str,
    network: &str,
    raw: &str,
    subnet: Option<IpNet>,
    gateway: Option<IpAddr>,
) -> Result<IpNet, CtlError> {
    let ip: IpNet = if raw.contains('/') {
        raw.parse().map_err(|_| {
            CtlError::invalid(format!(
                "{what}: invalid ip {raw:?}; write an address with a prefix length, like \
                 10.77.0.11/24"
            ))
        })?
    } else {
        let addr: IpAddr = raw.parse().map_err(|_| {
            CtlError::invalid(format!(
                "{what}: invalid ip {raw:?}; write an address with a prefix length, like \
                 10.77.0.11/24"
            ))
        })?;
        match subnet {
            // A bare address takes the network's prefix length.
            Some(s) => IpNet::new(addr, s.prefix_len()).map_err(|_| {
                CtlError::invalid(format!(
                    "{what}: ip {addr} does not fit subnet {s} of network {network:?}"
                ))
            })?,
            None => {
                return Err(CtlError::invalid(format!(
                    "{what}: ip {raw} has no prefix length and network {network:?} has no \
                     subnet to take it from; write it like {raw}/24"
                )))
            }
        }
    };
    let addr = ip.addr();
    if let Some(s) = subnet {
        if !s.contains(&addr) {
            return Err(CtlError::invalid(format!(
                "{what}: ip {addr} is outside subnet {s} of network {network:?}; use an \
                 address like {}",
                example_host(s, 11)
            )));
        }
        if ip.prefix_len() != s.prefix_len() {
            return Err(CtlError::invalid(format!(
                "{what}: ip {ip} has prefix length /{} but network {network:?} is {s}; write \
                 {addr}/{}",
                ip.prefix_len(),
                s.prefix_len()
            )));
        }
        if reserved_in(s, addr) {
            return Err(CtlError::invalid(format!(
                "{what}: {addr} is the network or broadcast address of {s}; use a host \
                 address like {}",
                example_host(s, 11)
            )));
        }
        if gateway == Some(addr) {
            return Err(CtlError::invalid(format!(
                "{what}: {addr} is the gateway of network {network:?}; choose another address"
            )));
        }
    } else if reserved_in(ip.trunc(), addr) {
        return Err(CtlError::invalid(format!(
            "{what}: {addr} is the network or broadcast address of {}; use a host address",
            ip.trunc()
        )));
    }
    Ok(ip)
}

/// The `n`th host of a subnet (or the subnet address when it is too small),
/// for examples in messages.
fn example_host(net: IpNet, n: u32) -> IpAddr {
    net.hosts()
        .nth(usize::try_from(n.saturating_sub(1)).unwrap_or(0))
        .unwrap_or(net.addr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::MonotonicClock;
    use std::fs::File;
    use std::io::{Read, Write};

    fn daemon() -> Daemon {
        let mut d = Daemon::new(
            EngineConfig::default(),
            Arc::new(MonotonicClock::new()),
            None,
        )
        .unwrap();
        d.set_log_events(false);
        d
    }

    fn net(d: &mut Daemon, name: &str, subnet: Option<&str>, gw: Option<&str>) -> NetworkInfo {
        d.network_create(&NetworkCreate {
            name: name.into(),
            subnet: subnet.map(Into::into),
            gateway: gw.map(Into::into),
            mtu: None,
        })
        .unwrap()
    }

    /// Attaches a socketpair port; returns the test's end.
    fn fd_port(d: &mut Daemon, name: &str, network: &str) -> File {
        let (ours, theirs) = crate::seqpacket_pair().unwrap();
        d.attach_fd(name, network, theirs, None).unwrap();
        File::from(ours)
    }

    fn port_id(d: &Daemon, name: &str) -> u32 {
        d.ports[name].id.0
    }

    #[test]
    fn network_create_validates_and_reports() {
        let mut d = daemon();
        let n = net(&mut d, "red", Some("10.77.0.0/24"), Some("10.77.0.1"));
        assert_eq!(n.mtu, DEFAULT_MTU);
        assert_eq!(n.subnet.unwrap().to_string(), "10.77.0.0/24");
        let dup = d
            .network_create(&NetworkCreate {
                name: "red".into(),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(dup.kind, ErrorKind::Exists);
        assert!(dup.message.contains("already exists"), "{}", dup.message);
        let cases = [
            (
                "10.0.0.1/24",
                None,
                None,
                "host bits set; did you mean 10.0.0.0/24?",
            ),
            ("banana", None, None, "invalid subnet \"banana\""),
            (
                "10.0.0.0/24",
                Some("10.0.1.1"),
                None,
                "not a host address of subnet",
            ),
            (
                "10.0.0.0/24",
                Some("10.0.0.255"),
                None,
                "not a host address",
            ),
            ("10.0.0.0/24", None, Some(20), "MTU 20 is out of range"),
        ];
        for (subnet, gw, mtu, want) in cases {
            let e = d
                .network_create(&NetworkCreate {
                    name: "blue".into(),
                    subnet: Some(subnet.into()),
                    gateway: gw.map(Into::into),
                    mtu,
                })
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument);
            assert!(e.message.contains(want), "{subnet}: {}", e.message);
        }
        let e = d
            .network_create(&NetworkCreate {
                name: "blue".into(),
                gateway: Some("10.0.0.1".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.message.contains("needs a subnet"), "{}", e.message);
        let e = d
            .network_create(&NetworkCreate {
                name: "bad name".into(),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.message.contains("invalid network name"), "{}", e.message);
        assert_eq!(d.network_ls().len(), 1);
        d.shutdown();
    }

    #[test]
    fn network_rm_is_busy_with_ports_unless_forced() {
        let mut d = daemon();
        net(&mut d, "red", None, None);
        let _a = fd_port(&mut d, "a", "red");
        let _b = fd_port(&mut d, "b", "red");
        let e = d
            .network_rm(&NetworkRm {
                name: "red".into(),
                force: false,
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Busy);
        assert!(
            e.message.contains("2 port(s) attached (a, b)"),
            "{}",
            e.message
        );
        assert!(e.message.contains("--force"), "{}", e.message);
        let r = d
            .network_rm(&NetworkRm {
                name: "red".into(),
                force: true,
            })
            .unwrap();
        assert_eq!(r.removed_ports, vec!["a", "b"]);
        assert!(d.port_ls().is_empty());
        assert!(d.network_ls().is_empty());
        let e = d
            .network_rm(&NetworkRm {
                name: "red".into(),
                force: false,
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        d.shutdown();
    }

    #[test]
    fn port_names_conflict_and_networks_must_exist() {
        let mut d = daemon();
        net(&mut d, "red", None, None);
        net(&mut d, "blue", None, None);
        let _a = fd_port(&mut d, "a", "red");
        let (_x, y) = crate::seqpacket_pair().unwrap();
        let e = d.attach_fd("a", "blue", y, None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Exists);
        assert!(e.message.contains("network red"), "{}", e.message);
        let (_x, y) = crate::seqpacket_pair().unwrap();
        let e = d.attach_fd("b", "green", y, None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(
            e.message.contains("vxswitch network create green"),
            "{}",
            e.message
        );
        let e = d.port_rm(&PortRm { name: "zzz".into() }).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        d.shutdown();
    }

    #[test]
    fn port_add_checks_addresses_before_touching_the_system() {
        let mut d = daemon();
        net(&mut d, "red", Some("10.77.0.0/24"), Some("10.77.0.1"));
        net(&mut d, "plain", None, None);
        let add = |name: &str, network: &str, ip: &str| PortAdd {
            name: name.into(),
            network: network.into(),
            netns: Some("/run/netns/c1".into()),
            ip: Some(ip.into()),
            ..Default::default()
        };
        let cases = [
            ("10.78.0.11/24", "outside subnet 10.77.0.0/24"),
            ("10.77.0.11/16", "prefix length /16"),
            ("10.77.0.0/24", "network or broadcast address"),
            ("10.77.0.255", "network or broadcast address"),
            ("10.77.0.1/24", "is the gateway"),
            ("10.77.0.300/24", "invalid ip"),
        ];
        for (ip, want) in cases {
            let e = d.port_add(&add("c1", "red", ip)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument, "{ip}");
            assert!(e.message.contains(want), "{ip}: {}", e.message);
            assert!(e.message.starts_with("port \"c1\": "), "{}", e.message);
        }
        let e = d.port_add(&add("c1", "plain", "10.1.1.1")).unwrap_err();
        assert!(e.message.contains("no prefix length"), "{}", e.message);
        // Valid arguments reach the TAP backend (a stub in this tree).
        let e = d.port_add(&add("c1", "red", "10.77.0.11")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::PortError, "{}", e.message);
        let mut both = add("c1", "red", "10.77.0.11/24");
        both.pid = Some(1);
        let e = d.port_add(&both).unwrap_err();
        assert!(e.message.contains("either netns or pid"), "{}", e.message);
        let existing = PortAdd {
            name: "tap0".into(),
            network: "red".into(),
            existing: true,
            ip: Some("10.77.0.5/24".into()),
            ..Default::default()
        };
        let e = d.port_add(&existing).unwrap_err();
        assert!(e.message.contains("ip cannot be set"), "{}", e.message);
        let long = PortAdd {
            name: "a-very-long-port-name".into(),
            network: "red".into(),
            ..Default::default()
        };
        let e = d.port_add(&long).unwrap_err();
        assert!(
            e.message.contains("invalid interface name"),
            "{}",
            e.message
        );
        let mcast = PortAdd {
            name: "c1".into(),
            network: "red".into(),
            mac: Some(MacAddr::BROADCAST),
            ..Default::default()
        };
        let e = d.port_add(&mcast).unwrap_err();
        assert!(e.message.contains("not a unicast address"), "{}", e.message);
        assert!(d.port_ls().is_empty());
        d.shutdown();
    }

    #[test]
    fn ids_are_lowest_free_and_reused() {
        assert_eq!(lowest_free([].into_iter()), 0);
        assert_eq!(lowest_free([0, 1, 3].into_iter()), 2);
        assert_eq!(lowest_free([3, 1, 0, 2].into_iter()), 4);
        let mut d = daemon();
        net(&mut d, "red", None, None);
        net(&mut d, "blue", None, None);
        let _a = fd_port(&mut d, "a", "red");
        let _b = fd_port(&mut d, "b", "red");
        let _c = fd_port(&mut d, "c", "blue");
        assert_eq!(
            (port_id(&d, "a"), port_id(&d, "b"), port_id(&d, "c")),
            (0, 1, 2)
        );
        d.port_rm(&PortRm { name: "b".into() }).unwrap();
        let _d = fd_port(&mut d, "d", "blue");
        assert_eq!(port_id(&d, "d"), 1);
        d.port_rm(&PortRm { name: "a".into() }).unwrap();
        d.network_rm(&NetworkRm {
            name: "red".into(),
            force: false,
        })
        .unwrap();
        net(&mut d, "green", None, None);
        assert_eq!(d.networks["green"].id, NetId(0));
        assert_eq!(d.networks["blue"].id, NetId(1));
        d.shutdown();
    }

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0u8; 46]);
        f
    }

    fn recv(f: &mut File) -> Vec<u8> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut buf = [0u8; 2048];
        loop {
            match f.read(&mut buf) {
                Ok(n) => return buf[..n].to_vec(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "no frame within 5 s");
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(e) => panic!("{e}"),
            }
        }
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
            (rows[0].network.as_str(), rows[0].port.as_str()),
            ("red", "a")
        );
        let mac = MacAddr([2, 0, 0, 0, 0, 0xbb]);
        d.fdb_add(&FdbAdd {
            network: "red".into(),
            mac,
            port: "b".into(),
        })
        .unwrap();
        let e = d
            .fdb_add(&FdbAdd {
                network: "red".into(),
                mac,
                port: "c".into(),
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
    fn a_port_whose_fd_dies_is_forgotten() {
        let mut d = daemon();
        net(&mut d, "red", None, None);
        let a = fd_port(&mut d, "a", "red");
        let _b = fd_port(&mut d, "b", "red");
        drop(a);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let gone = loop {
            let g = d.process_events();
            if !g.is_empty() {
                break g;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no PortGone within 5 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(gone[0].name, "a");
        assert_eq!(d.port_ls().len(), 1);
        // The freed id is reused by the next port.
        let _c = fd_port(&mut d, "c", "red");
        assert_eq!(port_id(&d, "c"), 0);
        d.shutdown();
    }
}
