//! The cluster as a daemon sees it, and what that means for its dataplane.
//!
//! Three steps, each pure (no I/O, no clock), so each is tested alone:
//!
//! 1. `ClusterView`: hosts, networks and endpoints, built from a list of
//!    etcd's keys and kept current by watch events. It holds only what parsed
//!    (`schema`); anything refused is counted and treated as absent.
//! 2. `ClusterView::desired(me)`: the `State` this host's dataplane should
//!    have — every cluster network; per network, a VTEP for every *other*
//!    host with endpoints in it; a static FDB entry for every remote
//!    endpoint's MAC behind its host's VTEP; an IP -> MAC binding for every
//!    remote endpoint address (ARP/ND suppression).
//! 3. `diff(applied, desired)`: the `Change`s that turn what the daemon has
//!    applied into that. Applying them one by one with `State::apply` gives
//!    `desired` exactly, so diffing again yields nothing; a change that fails
//!    is simply not applied and comes back in the next diff.
//!
//! Why a diff and not event handlers: after a reconnect or a compaction the
//! agent re-lists and cannot know which events it missed. Diffing the whole
//! desired state against the applied one makes "converge after anything" a
//! single code path, and it is the same path as normal operation.
//!
//! Conflicts (two hosts claim one MAC or one address in a network, as when a
//! container moves and its old host has not expired yet): the most recent
//! write (highest `mod_revision`) wins; the local host's own endpoints always
//! win over remote ones.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use super::etcd::{KeyValue, WatchEvent};
use super::schema::{
    self, EndpointRecord, HostId, HostRecord, Key, NetworkRecord, Schema, SchemaError, Value,
};
use crate::wire::MacAddr;

/// A record with the etcd metadata the model needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<T> {
    pub record: T,
    /// The lease it is attached to (0: none).
    pub lease: i64,
    pub mod_revision: i64,
}

/// Identifies one endpoint: host, network, MAC.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointKey {
    pub host: HostId,
    pub network: String,
    pub mac: MacAddr,
}

/// What was refused while building the view (not part of its equality).
#[derive(Clone, Debug, Default)]
pub struct Refusals {
    pub count: u64,
    pub last: Option<String>,
}

/// The cluster: hosts, networks and endpoints at `revision`.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub hosts: BTreeMap<HostId, Entry<HostRecord>>,
    pub networks: BTreeMap<String, Entry<NetworkRecord>>,
    pub endpoints: BTreeMap<EndpointKey, Entry<EndpointRecord>>,
    /// Everything up to this revision is reflected.
    pub revision: i64,
    pub refused: Refusals,
}

impl PartialEq for ClusterView {
    fn eq(&self, o: &Self) -> bool {
        self.hosts == o.hosts && self.networks == o.networks && self.endpoints == o.endpoints
    }
}

impl Eq for ClusterView {}

impl ClusterView {
    /// The view of a list of every key under `schema.prefix()` read at
    /// `revision`.
    pub fn from_list(schema: &Schema, kvs: &[KeyValue], revision: i64) -> Self {
        let mut v = ClusterView::default();
        for kv in kvs {
            v.put(schema, kv);
        }
        v.revision = revision;
        v
    }

    fn refuse(&mut self, e: &SchemaError) {
        self.refused.count += 1;
        self.refused.last = Some(e.to_string());
    }

    fn put(&mut self, schema: &Schema, kv: &KeyValue) {
        let key = match schema.parse_key(&kv.key) {
            Ok(k) => k,
            Err(e) => return self.refuse(&e),
        };
        let value = schema::parse_value(&key, &kv.value);
        // An invalid value makes the key count as absent.
        self.remove(&key);
        let value = match value {
            Ok(v) => v,
            Err(e) => return self.refuse(&e),
        };
        fn entry<T>(record: T, kv: &KeyValue) -> Entry<T> {
            Entry {
                record,
                lease: kv.lease,
                mod_revision: kv.mod_revision,
            }
        }
        match (key, value) {
            (Key::Host(h), Value::Host(r)) => {
                self.hosts.insert(h, entry(r, kv));
            }
            (Key::Network(n), Value::Network(r)) => {
                self.networks.insert(n, entry(r, kv));
            }
            (Key::Endpoint { host, network, mac }, Value::Endpoint(r)) => {
                self.endpoints
                    .insert(EndpointKey { host, network, mac }, entry(r, kv));
            }
            _ => {} // vni/ and ipam/ keys: not part of the view
        }
    }

    fn remove(&mut self, key: &Key) {
        match key {
            Key::Host(h) => {
                self.hosts.remove(h);
            }
            Key::Network(n) => {
                self.networks.remove(n);
            }
            Key::Endpoint { host, network, mac } => {
                self.endpoints.remove(&EndpointKey {
                    host: host.clone(),
                    network: network.clone(),
                    mac: *mac,
                });
            }
            Key::Vni(_) | Key::Ipam { .. } => {}
        }
    }

    /// Applies one watch event.
    pub fn apply(&mut self, schema: &Schema, ev: &WatchEvent) {
        match ev {
            WatchEvent::Put(kv) => self.put(schema, kv),
            WatchEvent::Delete { key, .. } => match schema.parse_key(key) {
                Ok(k) => self.remove(&k),
                Err(e) => self.refuse(&e),
            },
        }
        self.revision = self.revision.max(ev.mod_revision());
    }

    /// The networks whose desired state `ev` (already applied) may have
    /// changed: an endpoint's or network's own; for a host, every network
    /// it has endpoints in. Keys outside the view change nothing.
    pub fn affected_networks(&self, schema: &Schema, ev: &WatchEvent, out: &mut BTreeSet<String>) {
        match schema.parse_key(ev.key()) {
            Ok(Key::Network(n)) => {
                out.insert(n);
            }
            Ok(Key::Endpoint { network, .. }) => {
                out.insert(network);
            }
            Ok(Key::Host(h)) => {
                let from = EndpointKey {
                    host: h.clone(),
                    network: String::new(),
                    mac: MacAddr::ZERO,
                };
                for k in self
                    .endpoints
                    .range(from..)
                    .map(|(k, _)| k)
                    .take_while(|k| k.host == h)
                {
                    if !out.contains(&k.network) {
                        out.insert(k.network.clone());
                    }
                }
            }
            _ => {}
        }
    }

    /// The VTEP of a registered host.
    pub fn vtep_of(&self, host: &HostId) -> Option<SocketAddr> {
        self.hosts
            .get(host)
            .map(|h| SocketAddr::new(h.record.vtep, h.record.vxlan_port))
    }

    /// What host `me`'s dataplane should have (see the module docs).
    pub fn desired(&self, me: &HostId) -> State {
        self.desired_in(me, None)
    }

    /// `desired`, for the networks in `only` (all when `None`). Every part
    /// of a `State` is per network, so this is exactly that part of it.
    pub fn desired_in(&self, me: &HostId, only: Option<&BTreeSet<String>>) -> State {
        let wanted = |n: &String| only.is_none_or(|o| o.contains(n));
        let mut st = State {
            networks: self
                .networks
                .iter()
                .filter(|(n, _)| wanted(n))
                .map(|(n, e)| (n.clone(), e.record.clone()))
                .collect(),
            ..State::default()
        };
        let my_vtep = self.vtep_of(me);
        let mut local_macs = BTreeSet::new();
        let mut local_ips = BTreeSet::new();
        // (network, mac) -> (mod_revision, host, vtep), newest wins
        let mut fdb: BTreeMap<(String, MacAddr), (i64, &HostId, SocketAddr)> = BTreeMap::new();
        let mut neigh: BTreeMap<(String, IpAddr), (i64, &HostId, MacAddr)> = BTreeMap::new();
        for (k, e) in &self.endpoints {
            if !st.networks.contains_key(&k.network) {
                continue;
            }
            if k.host == *me {
                local_macs.insert((k.network.clone(), k.mac));
                for ip in &e.record.ips {
                    local_ips.insert((k.network.clone(), *ip));
                }
                continue;
            }
            let Some(vtep) = self.vtep_of(&k.host) else {
                continue; // not registered (gone, or not yet): unreachable
            };
            if Some(vtep) == my_vtep {
                continue; // misconfigured peer claiming our address
            }
            st.vteps.insert((k.network.clone(), vtep));
            let cand = (e.mod_revision, &k.host, vtep);
            let slot = fdb.entry((k.network.clone(), k.mac)).or_insert(cand);
            if (cand.0, cand.1) > (slot.0, slot.1) {
                *slot = cand;
            }
            for ip in &e.record.ips {
                let cand = (e.mod_revision, &k.host, k.mac);
                let slot = neigh.entry((k.network.clone(), *ip)).or_insert(cand);
                if (cand.0, cand.1) > (slot.0, slot.1) {
                    *slot = cand;
                }
            }
        }
        st.fdb = fdb
            .into_iter()
            .filter(|(k, _)| !local_macs.contains(k))
            .map(|(k, (_, _, vtep))| (k, vtep))
            .collect();
        st.neigh = neigh
            .into_iter()
            .filter(|(k, _)| !local_ips.contains(k))
            .map(|(k, (_, _, mac))| (k, mac))
            .collect();
        st
    }
}

/// A dataplane's cluster-derived configuration: what the cluster says it
/// should have (`ClusterView::desired`) or what it has applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub networks: BTreeMap<String, NetworkRecord>,
    /// (network, remote VTEP).
    pub vteps: BTreeSet<(String, SocketAddr)>,
    /// (network, remote MAC) -> the VTEP it is behind.
    pub fdb: BTreeMap<(String, MacAddr), SocketAddr>,
    /// (network, remote address) -> its MAC, for ARP/ND suppression.
    pub neigh: BTreeMap<(String, IpAddr), MacAddr>,
}

/// One step for the dataplane. `Set*` replaces an existing entry of the same
/// key; removing a network removes its VTEPs, FDB entries and bindings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Create the network locally, as a cluster network.
    AddNetwork {
        name: String,
        spec: NetworkRecord,
    },
    /// Remove the cluster network (it is gone from the cluster, or its
    /// record changed: then `AddNetwork` follows).
    RemoveNetwork {
        name: String,
    },
    AddVtep {
        network: String,
        vtep: SocketAddr,
    },
    RemoveVtep {
        network: String,
        vtep: SocketAddr,
    },
    /// A static remote FDB entry: frames to `mac` go to `vtep`.
    SetFdb {
        network: String,
        mac: MacAddr,
        vtep: SocketAddr,
    },
    RemoveFdb {
        network: String,
        mac: MacAddr,
    },
    /// Answer ARP/ND for `ip` with `mac` instead of flooding.
    SetNeigh {
        network: String,
        ip: IpAddr,
        mac: MacAddr,
    },
    RemoveNeigh {
        network: String,
        ip: IpAddr,
    },
}

impl Change {
    /// The network a change is about.
    pub fn network(&self) -> &str {
        match self {
            Change::AddNetwork { name, .. } | Change::RemoveNetwork { name } => name,
            Change::AddVtep { network, .. }
            | Change::RemoveVtep { network, .. }
            | Change::SetFdb { network, .. }
            | Change::RemoveFdb { network, .. }
            | Change::SetNeigh { network, .. }
            | Change::RemoveNeigh { network, .. } => network,
        }
    }
}

impl State {
    /// Records a change as applied (mirrors what the dataplane does).
    pub fn apply(&mut self, c: &Change) {
        match c {
            Change::AddNetwork { name, spec } => {
                self.networks.insert(name.clone(), spec.clone());
            }
            Change::RemoveNetwork { name } => {
                self.networks.remove(name);
                self.vteps.retain(|(n, _)| n != name);
                self.fdb.retain(|(n, _), _| n != name);
                self.neigh.retain(|(n, _), _| n != name);
            }
            Change::AddVtep { network, vtep } => {
                self.vteps.insert((network.clone(), *vtep));
            }
            Change::RemoveVtep { network, vtep } => {
                self.vteps.remove(&(network.clone(), *vtep));
            }
            Change::SetFdb { network, mac, vtep } => {
                self.fdb.insert((network.clone(), *mac), *vtep);
            }
            Change::RemoveFdb { network, mac } => {
                self.fdb.remove(&(network.clone(), *mac));
            }
            Change::SetNeigh { network, ip, mac } => {
                self.neigh.insert((network.clone(), *ip), *mac);
            }
            Change::RemoveNeigh { network, ip } => {
                self.neigh.remove(&(network.clone(), *ip));
            }
        }
    }

    /// The part of this state in `networks`.
    pub fn restricted(&self, networks: &BTreeSet<String>) -> State {
        let mut st = State::default();
        for n in networks {
            if let Some(spec) = self.networks.get(n) {
                st.networks.insert(n.clone(), spec.clone());
            }
            let lo = (n.clone(), MacAddr::ZERO);
            let hi = (n.clone(), MacAddr([0xff; 6]));
            st.fdb
                .extend(self.fdb.range(lo..=hi).map(|(k, v)| (k.clone(), *v)));
            st.vteps
                .extend(self.vteps.iter().filter(|(vn, _)| vn == n).cloned());
            st.neigh.extend(
                self.neigh
                    .iter()
                    .filter(|((vn, _), _)| vn == n)
                    .map(|(k, v)| (k.clone(), *v)),
            );
        }
        st
    }

    /// Endpoints (remote MACs) per network, for status output.
    pub fn remote_endpoints(&self, network: &str) -> usize {
        self.fdb.keys().filter(|(n, _)| n == network).count()
    }
}

/// The changes that turn `applied` into `desired`: removals first (bindings,
/// FDB entries, VTEPs, then networks), then additions in the reverse order,
/// so nothing ever points at a VTEP or network that is not there.
pub fn diff(applied: &State, desired: &State) -> Vec<Change> {
    let mut out = Vec::new();
    // Networks whose record changed are removed and created again.
    let replaced: BTreeSet<&String> = applied
        .networks
        .iter()
        .filter(|(n, spec)| desired.networks.get(*n).is_some_and(|d| d != *spec))
        .map(|(n, _)| n)
        .collect();
    let gone = |n: &String| replaced.contains(n) || !desired.networks.contains_key(n);
    for (n, ip) in applied.neigh.keys() {
        if !gone(n) && !desired.neigh.contains_key(&(n.clone(), *ip)) {
            out.push(Change::RemoveNeigh {
                network: n.clone(),
                ip: *ip,
            });
        }
    }
    for (n, mac) in applied.fdb.keys() {
        if !gone(n) && !desired.fdb.contains_key(&(n.clone(), *mac)) {
            out.push(Change::RemoveFdb {
                network: n.clone(),
                mac: *mac,
            });
        }
    }
    for (n, vtep) in &applied.vteps {
        if !gone(n) && !desired.vteps.contains(&(n.clone(), *vtep)) {
            out.push(Change::RemoveVtep {
                network: n.clone(),
                vtep: *vtep,
            });
        }
    }
    for n in applied.networks.keys() {
        if gone(n) {
            out.push(Change::RemoveNetwork { name: n.clone() });
        }
    }
    let fresh = |n: &String| replaced.contains(n) || !applied.networks.contains_key(n);
    for (n, spec) in &desired.networks {
        if fresh(n) {
            out.push(Change::AddNetwork {
                name: n.clone(),
                spec: spec.clone(),
            });
        }
    }
    for (n, vtep) in &desired.vteps {
        if fresh(n) || !applied.vteps.contains(&(n.clone(), *vtep)) {
            out.push(Change::AddVtep {
                network: n.clone(),
                vtep: *vtep,
            });
        }
    }
    for ((n, mac), vtep) in &desired.fdb {
        if fresh(n) || applied.fdb.get(&(n.clone(), *mac)) != Some(vtep) {
            out.push(Change::SetFdb {
                network: n.clone(),
                mac: *mac,
                vtep: *vtep,
            });
        }
    }
    for ((n, ip), mac) in &desired.neigh {
        if fresh(n) || applied.neigh.get(&(n.clone(), *ip)) != Some(mac) {
            out.push(Change::SetNeigh {
                network: n.clone(),
                ip: *ip,
                mac: *mac,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
