//! The requests that need etcd itself: `network create --cluster`,
//! `network rm` of a cluster network, `cluster status`, `ipam.*`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::{cluster_error, Link};
use crate::cluster::schema::{self, Key, NetworkRecord, SubnetRecord};
use crate::cluster::store::{self, Created};
use crate::cluster::{ipam, Agent, Change};
use crate::ctl::daemon::Daemon;
use crate::ctl::proto::{
    ClusterStatus, CtlError, GatewayPort, IpamAllocate, IpamAllocated, IpamRelease, IpamReleased,
    NetworkCreate, NetworkInfo, NetworkRemoved, NetworkRm, PortRm,
};
use crate::ctl::validate::{check_mtu, check_name, check_vni, parse_gateway, parse_subnet};

impl Daemon {
    fn link(&mut self, what: &str) -> Result<&mut Link, CtlError> {
        self.cluster.link.as_mut().ok_or_else(|| {
            CtlError::invalid(format!(
                "{what} needs a daemon that runs with --cluster URL (the etcd it shares with \
                 the other hosts); this one runs without"
            ))
        })
    }

    /// `network.create` with `cluster`: the network in etcd (create if
    /// absent, in one transaction; name and VNI unique cluster-wide), then
    /// here at once; every other daemon creates it when its agent sees it.
    pub(crate) fn cluster_network_create(
        &mut self,
        a: &NetworkCreate,
    ) -> Result<NetworkInfo, CtlError> {
        check_name("network", &a.name)?;
        let what = format!("cluster network {:?}", a.name);
        let vni = a.vni.ok_or_else(|| {
            CtlError::invalid(format!(
                "{what} needs a VNI (--vni N): its frames travel between hosts in VXLAN"
            ))
        })?;
        check_vni(&what, vni)?;
        if !a.vteps.is_empty() || a.learn_vteps {
            return Err(CtlError::invalid(format!(
                "{what}: its VTEPs are the hosts with endpoints in it, found through the \
                 cluster; drop --vtep and --learn-vteps"
            )));
        }
        if a.gateway_port.is_some_and(|g| g != GatewayPort::None) || a.gateway_ifname.is_some() {
            return Err(CtlError::invalid(format!(
                "{what}: a gateway port would answer for one address on every host at once; \
                 a cluster network has none (--gateway is the containers' default route only)"
            )));
        }
        let subnet = a
            .subnet
            .as_deref()
            .map(|s| parse_subnet(&a.name, s))
            .transpose()?;
        let gateway = match (&a.gateway, subnet) {
            (Some(g), Some(net)) => Some(parse_gateway(&a.name, g, net)?),
            (Some(g), None) => {
                return Err(CtlError::invalid(format!(
                    "{what}: gateway {g} needs a subnet; add --subnet"
                )))
            }
            (None, _) => None,
        };
        if let Some(mtu) = a.mtu {
            check_mtu(&what, mtu)?;
        }
        let rec = NetworkRecord {
            vni,
            subnets: subnet
                .map(|subnet| vec![SubnetRecord { subnet, gateway }])
                .unwrap_or_default(),
            mtu: a.mtu,
        };
        schema::validate_network(&rec).map_err(|e| CtlError::invalid(format!("{what}: {e}")))?;
        // What would stop it here is checked before etcd is written.
        if let Some(net) = self.networks.get(&a.name) {
            if net.vni != Some(vni) {
                return Err(CtlError::exists(format!(
                    "network {:?} exists on this host as a local network with {}; remove or \
                     rename it first",
                    a.name,
                    net.vni
                        .map_or_else(|| "no VNI".to_string(), |v| format!("VNI {v}"))
                )));
            }
        }
        if let Some((other, _)) = self
            .networks
            .iter()
            .find(|(n, net)| net.vni == Some(vni) && **n != a.name)
        {
            return Err(CtlError::exists(format!(
                "{what}: VNI {vni} is used by network {other:?} on this host"
            )));
        }
        let link = self.link("network create --cluster")?;
        let created = store::create_network(&mut link.ops, &link.settings.schema, &a.name, &rec)
            .map_err(|e| cluster_error(&what, e))?;
        let change = Change::AddNetwork {
            name: a.name.clone(),
            spec: rec,
        };
        if let Err(e) = self.cluster_apply(&change) {
            return Err(CtlError::internal(format!(
                "{what} {} in etcd, but not here: {e}",
                if created == Created::Created {
                    "was created"
                } else {
                    "exists"
                }
            )));
        }
        self.cluster.applied.apply(&change);
        self.network_ls()
            .into_iter()
            .find(|n| n.name == a.name)
            .ok_or_else(|| CtlError::internal(format!("{what} vanished; this is a bug")))
    }

    /// `network.rm` of a cluster network: from etcd (refused while any host
    /// has endpoints in it), then here; the other hosts follow.
    pub(crate) fn cluster_network_rm(&mut self, a: &NetworkRm) -> Result<NetworkRemoved, CtlError> {
        let what = format!("cluster network {:?}", a.name);
        let local: Vec<String> = self
            .ports
            .iter()
            .filter(|(_, p)| p.network == a.name && !p.gateway)
            .map(|(n, _)| n.clone())
            .collect();
        if !local.is_empty() && !a.force {
            return Err(CtlError::busy(format!(
                "{what} has {} port(s) on this host ({}); remove them first with 'vxswitch \
                 port rm NAME', or use --force",
                local.len(),
                local.join(", ")
            )));
        }
        if self.cluster.link.is_none() {
            // A cluster network restored by a daemon now running without
            // --cluster: a frozen copy, removed here only.
            let removed = self.network_rm_local(a)?;
            self.cluster.applied.apply(&Change::RemoveNetwork {
                name: a.name.clone(),
            });
            return Ok(removed);
        }
        let link = self.link("removing a cluster network")?;
        let schema = link.settings.schema.clone();
        let me = link.settings.host_id.clone();
        let prefix = format!("{}endpoints/", schema.prefix());
        let (kvs, _) = link
            .ops
            .list_prefix(prefix.as_bytes())
            .map_err(|e| cluster_error(&what, e.into()))?;
        let mut hosts = BTreeSet::new();
        let mut count = 0;
        for kv in &kvs {
            if let Ok(Key::Endpoint { host, network, .. }) = schema.parse_key(&kv.key) {
                if network == a.name && host != me {
                    count += 1;
                    hosts.insert(host.to_string());
                }
            }
        }
        if count > 0 {
            return Err(CtlError::busy(format!(
                "{what} still has {count} endpoint(s) on host(s) {}; remove those ports first \
                 (a cluster network is removed for every host at once)",
                hosts.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        store::delete_network(&mut link.ops, &schema, &a.name)
            .map_err(|e| cluster_error(&what, e))?;
        let removed = if self.networks.contains_key(&a.name) {
            self.network_rm_local(a)?
        } else {
            NetworkRemoved {
                name: a.name.clone(),
                removed_ports: Vec::new(),
                removed_vteps: Vec::new(),
            }
        };
        self.cluster.applied.apply(&Change::RemoveNetwork {
            name: a.name.clone(),
        });
        Ok(removed)
    }

    /// Removes the local network alone (its ports with `force`).
    fn network_rm_local(&mut self, a: &NetworkRm) -> Result<NetworkRemoved, CtlError> {
        for p in self
            .ports
            .iter()
            .filter(|(_, p)| p.network == a.name && !p.gateway)
            .map(|(n, _)| n.clone())
            .collect::<Vec<_>>()
        {
            self.port_rm(&PortRm { name: p })?;
        }
        self.set_cluster_flag(&a.name, false);
        self.network_rm(&NetworkRm {
            name: a.name.clone(),
            force: true,
        })
    }

    /// `cluster.status`.
    pub fn cluster_status(&self) -> Result<ClusterStatus, CtlError> {
        let link = self.cluster.link.as_ref().ok_or_else(|| {
            CtlError::invalid(
                "this daemon runs without a cluster; start it with --cluster URL --underlay-ip \
                 ADDR (see docs/cluster.md)",
            )
        })?;
        let st = link.agent.as_ref().map(Agent::status).unwrap_or_default();
        Ok(ClusterStatus {
            host_id: link.settings.host_id.to_string(),
            vtep: link.vtep.to_string(),
            endpoints: link
                .settings
                .endpoints
                .iter()
                .map(ToString::to_string)
                .collect(),
            connected: st.connected,
            registered: st.registered,
            synced: st.synced,
            refused: st.refused,
            lease: (st.lease != 0).then(|| format!("{:x}", st.lease)),
            ttl_secs: link.settings.ttl.as_secs(),
            revision: st.revision,
            hosts: st.hosts,
            networks: st.networks,
            remote_endpoints: st.remote_endpoints,
            published: st.published,
            refused_records: st.refused_records,
            resyncs: st.resyncs,
            compactions: st.compactions,
            lease_losses: st.lease_losses,
            takeovers: st.takeovers,
            apply_failures: st.apply_failures,
            apply_error: st.apply_error,
            clock_skew_ms: st.clock_skew_ms,
            error: st.error,
        })
    }

    /// The subnet of cluster network `network` that `ip` (or, without, the
    /// local network's own subnet) is in.
    fn ipam_subnet(&self, network: &str, ip: Option<IpAddr>) -> Result<SubnetRecord, CtlError> {
        let rec = self
            .cluster
            .applied
            .networks
            .get(network)
            .filter(|_| self.is_cluster_network(network))
            .ok_or_else(|| {
                CtlError::not_found(format!(
                    "{network:?} is not a cluster network on this host; cluster addresses come \
                     from cluster networks ('vxswitch network ls' shows their scope)"
                ))
            })?;
        let local = self.networks.get(network).and_then(|n| n.subnet);
        let found = match ip {
            Some(ip) => rec.subnets.iter().find(|s| s.subnet.contains(&ip)),
            None => rec
                .subnets
                .iter()
                .find(|s| Some(s.subnet) == local)
                .or_else(|| rec.subnets.first()),
        };
        found.cloned().ok_or_else(|| match ip {
            Some(ip) => CtlError::invalid(format!(
                "address {ip} is not in a subnet of cluster network {network:?}"
            )),
            None => CtlError::invalid(format!(
                "cluster network {network:?} has no subnet to allocate from; create it with \
                 --subnet"
            )),
        })
    }

    /// `ipam.allocate`.
    pub fn ipam_allocate(&mut self, a: &IpamAllocate) -> Result<IpamAllocated, CtlError> {
        let ip =
            a.ip.as_deref()
                .map(|s| {
                    s.split('/')
                        .next()
                        .unwrap_or(s)
                        .parse::<IpAddr>()
                        .map_err(|_| {
                            CtlError::invalid(format!(
                                "invalid address {s:?}; give an IP like 10.42.0.7"
                            ))
                        })
                })
                .transpose()?;
        let subnet = self.ipam_subnet(&a.network, ip)?;
        let what = format!("address in cluster network {:?}", a.network);
        let link = self.link("a cluster address")?;
        let host = link.settings.host_id.clone();
        let got = ipam::allocate(
            &mut link.ops,
            &link.settings.schema,
            &a.network,
            &subnet,
            &a.owner,
            &host,
            ip,
        )
        .map_err(|e| cluster_error(&what, e))?;
        let ip = IpNet::new(got, subnet.subnet.prefix_len())
            .map_err(|e| CtlError::internal(format!("{what}: {e}")))?;
        Ok(IpamAllocated {
            network: a.network.clone(),
            ip,
            gateway: subnet.gateway,
        })
    }

    /// `ipam.release` (idempotent).
    pub fn ipam_release(&mut self, a: &IpamRelease) -> Result<IpamReleased, CtlError> {
        check_name("network", &a.network)?;
        let ip =
            a.ip.as_deref()
                .map(|s| {
                    s.split('/')
                        .next()
                        .unwrap_or(s)
                        .parse::<IpAddr>()
                        .map_err(|_| {
                            CtlError::invalid(format!(
                                "invalid address {s:?}; give an IP like 10.42.0.7"
                            ))
                        })
                })
                .transpose()?;
        let what = format!("releasing in cluster network {:?}", a.network);
        let link = self.link("a cluster address")?;
        let s = link.settings.schema.clone();
        let host = link.settings.host_id.clone();
        let c = &mut link.ops;
        let err = |e| cluster_error(&what, e);
        let released = match (ip, a.owner.as_deref()) {
            (Some(ip), owner) => {
                let freed = match owner {
                    Some(o) => ipam::release(c, &s, &a.network, ip, Some(o)),
                    None => ipam::release_for_host(c, &s, &a.network, ip, &host),
                }
                .map_err(err)?;
                if freed {
                    vec![ip]
                } else {
                    Vec::new()
                }
            }
            (None, Some(owner)) => {
                ipam::release_owner_ips(c, &s, &a.network, owner).map_err(err)?
            }
            (None, None) => {
                return Err(CtlError::invalid(
                    "ipam.release needs an address (ip), an owner, or both",
                ))
            }
        };
        Ok(IpamReleased {
            network: a.network.clone(),
            released,
        })
    }
}
