//! Applying the agent's changes on the control thread, and the cluster
//! part of the state file.

use std::net::SocketAddr;

use super::{local_spec, SavedCluster};
use crate::cluster::schema::NetworkRecord;
use crate::cluster::Change;
use crate::ctl::daemon::Daemon;
use crate::ctl::networks::Network;
use crate::ctl::proto::NetworkRm;
use crate::fdb::Dest;

impl Daemon {
    /// Applies a batch of the agent's changes, in order; one result each.
    pub(crate) fn cluster_apply_all(&mut self, changes: &[Change]) -> Vec<Result<(), String>> {
        let results = changes
            .iter()
            .map(|c| {
                let before = self.cluster_before(c);
                let r = self.cluster_apply(c);
                if r.is_ok() {
                    self.note_cluster(c, before);
                    self.cluster.applied.apply(c);
                }
                r
            })
            .collect();
        // Only networks and VTEPs are in the state file (and only networks
        // change which ports are cluster endpoints).
        let saved = |c: &Change| {
            matches!(
                c,
                Change::AddNetwork { .. }
                    | Change::RemoveNetwork { .. }
                    | Change::AddVtep { .. }
                    | Change::RemoveVtep { .. }
            )
        };
        if changes.iter().any(saved) {
            self.save_state();
        } else {
            // Remote endpoints change the ARP/ND bindings.
            self.neigh_sync();
        }
        results
    }

    pub(super) fn cluster_apply(&mut self, c: &Change) -> Result<(), String> {
        match c {
            Change::AddNetwork { name, spec } => self.cluster_add_network(name, spec),
            Change::RemoveNetwork { name } => self.cluster_remove_network(name),
            Change::AddVtep { network, vtep } => {
                let net = self.cluster_net(network)?;
                match net.vteps.keys().find(|a| a.ip() == vtep.ip()) {
                    // A hand-written (or learned) VTEP there: the cluster's now.
                    Some(have) if have == vtep => Ok(()),
                    Some(have) => Err(format!(
                        "network {network}: the VTEP at {} is {have}, the cluster says {vtep}; \
                         remove it with 'vxswitch vtep rm {network} {have}'",
                        vtep.ip()
                    )),
                    None => self
                        .insert_vtep(network, *vtep)
                        .map(|_| ())
                        .map_err(|e| e.message),
                }
            }
            Change::RemoveVtep { network, vtep } => {
                // Only what the cluster manages: never an operator's VTEP.
                if self.is_cluster_vtep(network, *vtep) {
                    self.cluster_remove_vtep(network, *vtep);
                }
                Ok(())
            }
            Change::SetFdb { network, mac, vtep } => {
                let net = self.cluster_net(network)?;
                let id = net.vteps.get(vtep).map(|v| v.id).ok_or_else(|| {
                    format!("network {network}: no VTEP {vtep} for remote MAC {mac}")
                })?;
                let net_id = net.id;
                if let Some((port, _)) = self
                    .ports
                    .iter()
                    .find(|(_, p)| p.network == *network && p.mac == Some(*mac))
                {
                    return Err(format!(
                        "network {network}: MAC {mac} of port {port} on this host is also \
                         claimed behind VTEP {vtep}; the local port wins"
                    ));
                }
                self.fdb()
                    .add_static(net_id, *mac, Dest::Remote(id), self.clock.now())
                    .map_err(|e| format!("network {network}: remote MAC {mac}: {e}"))
            }
            Change::RemoveFdb { network, mac } => {
                if self.is_cluster_fdb(network, *mac) {
                    if let Some(net) = self.networks.get(network) {
                        self.fdb().remove(net.id, *mac);
                    }
                }
                Ok(())
            }
            // Recorded in `applied`: what ARP/ND suppression answers from.
            Change::SetNeigh { .. } | Change::RemoveNeigh { .. } => Ok(()),
        }
    }

    fn cluster_net(&self, network: &str) -> Result<&Network, String> {
        self.networks
            .get(network)
            .filter(|n| n.spec.cluster)
            .ok_or_else(|| format!("no cluster network {network} on this host"))
    }

    fn cluster_add_network(&mut self, name: &str, rec: &NetworkRecord) -> Result<(), String> {
        if let Some(net) = self.networks.get_mut(name) {
            return match self.cluster.applied.networks.get(name) {
                Some(have) if have != rec => Err(format!(
                    "cluster network {name} exists here with other settings (VNI {})",
                    have.vni
                )),
                _ if net.vni == Some(rec.vni) => {
                    if !net.spec.cluster {
                        // The migration: the cluster manages it from now on.
                        net.spec.cluster = true;
                        eprintln!(
                            "vxswitch: cluster: network {name} (VNI {}) is a cluster network \
                             now; its ports are published, and a hand-written VTEP at a cluster \
                             host's address is managed by the cluster",
                            rec.vni
                        );
                    }
                    Ok(())
                }
                _ => Err(format!(
                    "a local network {name} with {} exists here, so cluster network {name} \
                     (VNI {}) cannot be created on this host: rename or remove the local one",
                    net.vni
                        .map_or_else(|| "no VNI".to_string(), |v| format!("VNI {v}")),
                    rec.vni
                )),
            };
        }
        let mut spec = local_spec(name, rec);
        if spec.mtu.is_none() && self.cluster.underlay_is_ipv6() {
            // Its VTEPs come later: their headers' size must be known now.
            spec.mtu = Some(self.vxlan_config().default_port_mtu(true));
        }
        self.network_create_with(&spec, None)
            .map(|_| ())
            .map_err(|e| format!("cluster network {name}: {}", e.message))
    }

    fn cluster_remove_network(&mut self, name: &str) -> Result<(), String> {
        if !self.is_cluster_network(name) {
            return Ok(());
        }
        let ports: Vec<String> = self
            .ports
            .iter()
            .filter(|(_, p)| p.network == name && !p.gateway)
            .map(|(n, _)| n.clone())
            .collect();
        if ports.is_empty() {
            // A local network for `network_rm`, which would go to etcd.
            self.set_cluster_flag(name, false);
            let r = self.network_rm(&NetworkRm {
                name: name.to_string(),
                force: false,
            });
            if r.is_err() {
                self.set_cluster_flag(name, true);
            }
            return r.map(|_| ()).map_err(|e| e.message);
        }
        // Its containers keep their interface: a local network now.
        let vteps: Vec<SocketAddr> = self
            .cluster
            .applied
            .vteps
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .collect();
        for v in vteps {
            self.cluster_remove_vtep(name, v);
        }
        self.set_cluster_flag(name, false);
        eprintln!(
            "vxswitch: cluster: network {name} was removed from the cluster; it stays here as \
             a local network for its port(s) {}",
            ports.join(", ")
        );
        Ok(())
    }

    pub(super) fn set_cluster_flag(&mut self, network: &str, on: bool) {
        if let Some(net) = self.networks.get_mut(network) {
            net.spec.cluster = on;
        }
    }

    /// Removes a VTEP the cluster manages (and the MACs behind it).
    fn cluster_remove_vtep(&mut self, network: &str, addr: SocketAddr) {
        let Some(id) = self
            .networks
            .get(network)
            .and_then(|n| n.vteps.get(&addr))
            .map(|v| v.id)
        else {
            return;
        };
        if let Err(e) = self.engine.remove_vtep(id) {
            eprintln!("vxswitch: cluster: network {network}: removing VTEP {addr}: {e}");
        }
        if let Some(net) = self.networks.get_mut(network) {
            net.vteps.remove(&addr);
        }
    }

    /// The cluster part of the state file.
    pub(crate) fn cluster_saved(&self) -> Option<SavedCluster> {
        let a = &self.cluster.applied;
        if a.networks.is_empty() {
            return None;
        }
        Some(SavedCluster {
            networks: a.networks.clone(),
            vteps: a.vteps.iter().cloned().collect(),
        })
    }

    /// Puts the cluster part of a state file back (after its networks):
    /// the VTEPs as they were, until the agent says what changed. Returns
    /// what could not be put back, each with why.
    pub(crate) fn cluster_restore(&mut self, saved: &SavedCluster) -> Vec<(String, String)> {
        let mut changes = Vec::new();
        for (name, spec) in &saved.networks {
            changes.push(Change::AddNetwork {
                name: name.clone(),
                spec: spec.clone(),
            });
        }
        for (network, vtep) in &saved.vteps {
            changes.push(Change::AddVtep {
                network: network.clone(),
                vtep: *vtep,
            });
        }
        let mut failed = Vec::new();
        for c in changes {
            match self.cluster_apply(&c) {
                Ok(()) => self.cluster.applied.apply(&c),
                Err(e) => failed.push((format!("{c:?}"), e)),
            }
        }
        failed
    }
}
