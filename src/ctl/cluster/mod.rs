//! The daemon's side of the cluster control plane (`daemon --cluster`,
//! `docs/cluster.md`): the cluster agent ([`crate::cluster::Agent`]) runs on
//! its own thread and reaches this daemon only through [`Adapter`], its
//! [`Dataplane`], which posts each batch of changes to the control thread
//! (the server's in-process call mechanism, [`DaemonCaller`]) and waits for
//! the answer with a deadline. The changes are applied here, on the control
//! thread, with the same methods the requests use:
//!
//! - a cluster network is a local network with a VNI whose spec says
//!   `cluster` (so the state file and `network ls` know it); one that exists
//!   here as a local network with the same VNI is adopted (the migration
//!   from hand-written VTEPs);
//! - a cluster VTEP is a VTEP of that network; a hand-written one at the same
//!   address is taken over (from then on the cluster adds and removes it);
//! - a remote endpoint is a static FDB entry behind its host's VTEP, shown
//!   by `fdb show` as kind `cluster`;
//! - IP -> MAC bindings are recorded for ARP/ND suppression
//!   ([`Daemon::neigh_bindings`]).
//!
//! What the cluster made this daemon apply is [`Cluster::applied`]. Its
//! networks and VTEPs are saved in the state file beside the rest, so a
//! daemon restarted with `--state-dir` has them back before the agent has
//! even reached etcd: no traffic gap, as frames to a remote MAC flood to the
//! network's VTEPs until its entry is back. Remote FDB entries and bindings
//! are not saved: they change with every container anywhere, and a state
//! file written for each would cost the control thread a snapshot and an
//! fsync per remote change; the agent applies them again at its first sync.
//!
//! Requests that need etcd itself (`network create --cluster`, `network rm`
//! of a cluster network, `ipam.*`) use a client of their own on the control
//! thread, with short deadlines: never the agent's thread, which may be
//! waiting for this one.
//!
//! Local endpoints: after every change of the configuration
//! ([`Daemon::save_state`] runs then) the cluster ports are compared with
//! what the agent was last told, and the agent is told when they differ.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::daemon::Daemon;
use super::proto::{CtlError, NetworkCreate};
use super::server::DaemonCaller;
use crate::cluster::agent::{host_boot_id, StatusHook};
use crate::cluster::etcd::{Client as EtcdClient, EtcdConfig};
use crate::cluster::http::{Endpoint, TlsConfig, TlsFiles};
use crate::cluster::schema::{HostId, NetworkRecord, Schema};
use crate::cluster::{
    Agent, AgentConfig, AgentStatus, Change, ClusterError, Dataplane, LocalEndpoint, State,
};
use crate::wire::MacAddr;

/// How long a batch of changes may wait for the control thread (a slow
/// request ahead of it) before the agent counts it as failed and retries.
const APPLY_DEADLINE: Duration = Duration::from_secs(10);
/// How often a waiting batch looks whether the daemon is stopping.
const WAIT_SLICE: Duration = Duration::from_millis(50);
/// Deadlines of the control thread's own etcd requests: it serves every
/// client, so it waits less than the agent does.
const OPS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const OPS_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Lease TTLs `--cluster-ttl` accepts (etcd's own minimum is about 2 s).
pub const MIN_TTL_SECS: u64 = 2;
pub const MAX_TTL_SECS: u64 = 300;

/// `[cluster]` of the config file; `daemon --cluster`, `--underlay-ip`,
/// `--host-id` and `--cluster-ttl` override it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// etcd client URLs (`http://10.0.0.1:2379`); empty: no cluster.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The address other hosts send this host's VXLAN to.
    #[serde(default)]
    pub underlay_ip: Option<IpAddr>,
    /// This host's id in the cluster (default: the host name).
    #[serde(default)]
    pub host_id: Option<String>,
    /// Lease TTL: a dead host vanishes from the others this long after it
    /// stopped refreshing (default 10).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// A dead host's addresses are freed this long after its lease is gone
    /// (default 60).
    #[serde(default)]
    pub ipam_grace_secs: Option<u64>,
    /// Where in etcd's key space the cluster lives (default `/vxswitch`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// For `https://` endpoints: the PEM CA certificate that signed etcd's
    /// server certificate (`--cluster-cacert`).
    #[serde(default)]
    pub cacert: Option<PathBuf>,
    /// This host's PEM client certificate for etcd's `--client-cert-auth`
    /// (`--cluster-cert`, with `key`).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its PEM private key (`--cluster-key`).
    #[serde(default)]
    pub key: Option<PathBuf>,
}

/// What a daemon joins a cluster with, checked.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub endpoints: Vec<Endpoint>,
    pub host_id: HostId,
    pub underlay_ip: IpAddr,
    pub ttl: Duration,
    pub ipam_grace: Duration,
    pub schema: Schema,
    /// Loaded when an endpoint is `https://`.
    pub tls: Option<TlsConfig>,
}

impl ClusterSettings {
    /// Checks and completes the settings (flags already merged over the
    /// file): `endpoints` comma-separated URLs.
    pub fn resolve(
        endpoints: &str,
        underlay_ip: Option<IpAddr>,
        host_id: Option<&str>,
        ttl_secs: Option<u64>,
        tls_files: &TlsFiles,
        c: &ClusterConfig,
    ) -> Result<ClusterSettings, String> {
        let endpoints = EtcdConfig::parse_endpoints(endpoints).map_err(|e| e.to_string())?;
        if endpoints.is_empty() {
            return Err("--cluster needs at least one etcd URL, e.g. http://10.0.0.1:2379".into());
        }
        let tls = if endpoints.iter().any(|e| e.tls) {
            Some(tls_files.load()?)
        } else if tls_files.is_set() {
            return Err(
                "--cluster-cacert, --cluster-cert and --cluster-key ([cluster] cacert, cert, \
                 key) are for https:// etcd URLs; write the URLs as https://HOST:PORT"
                    .into(),
            );
        } else {
            None
        };
        let underlay_ip = underlay_ip.ok_or(
            "--cluster needs --underlay-ip ADDR ([cluster] underlay_ip): the address of this \
             host that the other hosts send its VXLAN traffic to",
        )?;
        if underlay_ip.is_unspecified() || underlay_ip.is_multicast() || underlay_ip.is_loopback() {
            return Err(format!(
                "--underlay-ip {underlay_ip}: give this host's own unicast address on the \
                 network between the hosts (other hosts send VXLAN to it)"
            ));
        }
        let host = match host_id {
            Some(h) => h.to_string(),
            None => hostname().ok_or(
                "cannot read this host's name for its cluster id; give one with --host-id ID",
            )?,
        };
        let host_id = HostId::new(&host)
            .map_err(|e| format!("{e} (the cluster host id, from --host-id or the host name)"))?;
        let ttl_secs = ttl_secs.or(c.ttl_secs).unwrap_or(10);
        if !(MIN_TTL_SECS..=MAX_TTL_SECS).contains(&ttl_secs) {
            return Err(format!(
                "cluster lease TTL {ttl_secs} s is out of range: use {MIN_TTL_SECS} to \
                 {MAX_TTL_SECS} (--cluster-ttl, [cluster] ttl_secs)"
            ));
        }
        let schema = match &c.prefix {
            Some(p) => Schema::new(p).map_err(|e| format!("[cluster] prefix: {e}"))?,
            None => Schema::default(),
        };
        Ok(ClusterSettings {
            endpoints,
            host_id,
            underlay_ip,
            ttl: Duration::from_secs(ttl_secs),
            ipam_grace: Duration::from_secs(c.ipam_grace_secs.unwrap_or(60)),
            schema,
            tls,
        })
    }
}

fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty()).then(|| h.to_string())
}

/// The cluster part of the state file (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedCluster {
    /// Cluster networks and the records they were made from.
    #[serde(default)]
    pub networks: BTreeMap<String, NetworkRecord>,
    /// (network, remote VTEP).
    #[serde(default)]
    pub vteps: Vec<(String, SocketAddr)>,
}

/// The daemon's cluster state: what the cluster made it apply, and the link
/// to the agent when the daemon runs with `--cluster`.
#[derive(Default)]
pub struct Cluster {
    /// Applied on the cluster's behalf (the agent's `Dataplane::applied`).
    pub(super) applied: State,
    link: Option<Link>,
    /// The local endpoints the agent was last told about.
    announced: Option<Vec<LocalEndpoint>>,
}

impl Cluster {
    /// This host's VTEP is an IPv6 address (VXLAN headers take 70 bytes).
    fn underlay_is_ipv6(&self) -> bool {
        self.link
            .as_ref()
            .is_some_and(|l| l.settings.underlay_ip.is_ipv6())
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("networks", &self.applied.networks.len())
            .field("joined", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

struct Link {
    settings: ClusterSettings,
    vtep: SocketAddr,
    agent: Option<Agent>,
    /// Set before the agent is stopped: a batch waiting for this thread
    /// gives up instead of holding the stop up.
    stopping: Arc<AtomicBool>,
    /// The control thread's own etcd client.
    ops: EtcdClient,
}

/// The agent's [`Dataplane`]: every call is a call on the control thread.
struct Adapter {
    caller: DaemonCaller,
    stopping: Arc<AtomicBool>,
}

impl Adapter {
    /// Runs `f` on the control thread and waits for its result, at most
    /// [`APPLY_DEADLINE`] or until the daemon stops. A call given up on is
    /// cancelled (it does nothing if it runs later).
    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Daemon) -> R + Send + 'static,
    ) -> Result<R, String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let cancelled = Arc::new(AtomicBool::new(false));
        let flag = cancelled.clone();
        let stopped = || "the daemon is stopping".to_string();
        self.caller
            .post(Box::new(move |d: &mut Daemon| {
                if !flag.load(Ordering::SeqCst) {
                    let _ = tx.send(f(d));
                }
            }))
            .map_err(|_| stopped())?;
        let deadline = Instant::now() + APPLY_DEADLINE;
        loop {
            match rx.recv_timeout(WAIT_SLICE) {
                Ok(r) => return Ok(r),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Err(stopped()),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if self.stopping.load(Ordering::SeqCst) {
                        cancelled.store(true, Ordering::SeqCst);
                        return Err(stopped());
                    }
                    if Instant::now() >= deadline {
                        cancelled.store(true, Ordering::SeqCst);
                        return Err(format!(
                            "the daemon's control thread did not answer within {}s",
                            APPLY_DEADLINE.as_secs()
                        ));
                    }
                }
            }
        }
    }
}

impl Dataplane for Adapter {
    fn apply(&mut self, change: &Change) -> Result<(), String> {
        self.apply_all(std::slice::from_ref(change))
            .pop()
            .unwrap_or_else(|| Err("no answer".into()))
    }

    fn apply_all(&mut self, changes: &[Change]) -> Vec<Result<(), String>> {
        let owned = changes.to_vec();
        match self.call(move |d| d.cluster_apply_all(&owned)) {
            Ok(results) => results,
            Err(e) => vec![Err(e); changes.len()],
        }
    }

    fn applied(&mut self) -> Result<State, String> {
        self.call(|d| d.cluster.applied.clone())
    }

    fn local_endpoints(&mut self) -> Result<Vec<LocalEndpoint>, String> {
        self.call(|d| d.cluster_local_endpoints())
    }
}

/// One line on stderr per change of the agent's state a person may need
/// to know about (not per watch event).
fn log_transition(host: &HostId, old: &AgentStatus, new: &AgentStatus) {
    let lost = !new.connected && new.error.is_some() && (old.connected || old.error.is_none());
    if new.refused && (!old.refused || old.error != new.error) {
        if let Some(e) = &new.error {
            eprintln!("vxswitch: cluster: registration refused: {e}");
        }
    } else if lost {
        eprintln!(
            "vxswitch: cluster: etcd is unreachable: {}; local networks are served and the \
             last known cluster state stays applied; retrying",
            new.error.as_deref().unwrap_or("no answer")
        );
    }
    if new.connected && !old.connected && old.error.is_some() {
        eprintln!("vxswitch: cluster: etcd answers again");
    }
    if new.registered && !old.registered {
        eprintln!(
            "vxswitch: cluster: registered as host {host} (lease {:x}{})",
            new.lease,
            if new.takeovers > old.takeovers {
                ", taking over the record of this host's previous run"
            } else {
                ""
            }
        );
    }
    if new.lease_losses > old.lease_losses {
        eprintln!(
            "vxswitch: cluster: the lease expired (etcd was out of reach for longer than the \
             TTL); registering again and publishing every endpoint anew"
        );
    }
    if new.synced && !old.synced && new.resyncs == 1 {
        eprintln!(
            "vxswitch: cluster: in sync at revision {}: {} host{}, {} network{}",
            new.revision,
            new.hosts,
            if new.hosts == 1 { "" } else { "s" },
            new.networks,
            if new.networks == 1 { "" } else { "s" },
        );
    }
    if new.apply_error.is_some() && old.apply_error.is_none() {
        eprintln!(
            "vxswitch: cluster: a change could not be applied (retried every second): {}",
            new.apply_error.as_deref().unwrap_or_default()
        );
    }
}

/// etcd's or the cluster's refusal as a control error.
fn cluster_error(what: &str, e: ClusterError) -> CtlError {
    let msg = format!("{what}: {e}");
    match e {
        _ if e.is_unavailable() => CtlError::unavailable(format!(
            "{msg}; etcd must answer for this: check 'vxswitch cluster status' and try again"
        )),
        ClusterError::NetworkExists { .. }
        | ClusterError::VniTaken { .. }
        | ClusterError::AddressInUse { .. }
        | ClusterError::NotOwner { .. } => CtlError::exists(msg),
        ClusterError::NetworkInUse { .. }
        | ClusterError::AddressesExhausted { .. }
        | ClusterError::Contention(_) => CtlError::busy(msg),
        ClusterError::InvalidNetwork(_)
        | ClusterError::AddressOutOfRange { .. }
        | ClusterError::Schema(_) => CtlError::invalid(msg),
        _ => CtlError::unavailable(msg),
    }
}

/// The local network a cluster network's record makes: its first IPv4
/// subnet (else its first) with that subnet's gateway.
fn local_spec(name: &str, rec: &NetworkRecord) -> NetworkCreate {
    let sub = rec
        .subnets
        .iter()
        .find(|s| s.subnet.addr().is_ipv4())
        .or_else(|| rec.subnets.first());
    NetworkCreate {
        name: name.to_string(),
        subnet: sub.map(|s| s.subnet.to_string()),
        gateway: sub.and_then(|s| s.gateway).map(|g| g.to_string()),
        mtu: rec.mtu,
        vni: Some(rec.vni),
        cluster: true,
        ..NetworkCreate::default()
    }
}

impl Daemon {
    /// Joins the cluster: starts the agent, whose calls reach this daemon
    /// through `caller` (run once the server serves). etcd need not answer
    /// yet: the agent keeps trying, and says so in the log and the status.
    pub fn start_cluster(
        &mut self,
        s: ClusterSettings,
        caller: DaemonCaller,
    ) -> std::io::Result<()> {
        let vtep = SocketAddr::new(s.underlay_ip, self.vxlan_config().port);
        let mut etcd = EtcdConfig::new(s.endpoints.clone());
        etcd.tls = s.tls.clone();
        etcd.connect_timeout = Duration::from_secs(2);
        let mut cfg = AgentConfig::new(etcd.clone(), s.host_id.clone(), vtep);
        cfg.schema = s.schema.clone();
        cfg.boot_id = host_boot_id();
        cfg.ttl = s.ttl;
        cfg.ipam_grace = s.ipam_grace;
        let host = s.host_id.clone();
        cfg.on_status = Some(StatusHook(Arc::new(move |old, new| {
            log_transition(&host, old, new)
        })));
        let mut ops_cfg = etcd;
        ops_cfg.connect_timeout = OPS_CONNECT_TIMEOUT;
        ops_cfg.request_timeout = OPS_REQUEST_TIMEOUT;
        let stopping = Arc::new(AtomicBool::new(false));
        let adapter = Adapter {
            caller,
            stopping: stopping.clone(),
        };
        eprintln!(
            "vxswitch: cluster: joining as host {} (VTEP {vtep}) through etcd at {}",
            s.host_id,
            s.endpoints
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        let agent = Agent::start(cfg, adapter)?;
        self.cluster.link = Some(Link {
            settings: s,
            vtep,
            agent: Some(agent),
            stopping,
            ops: EtcdClient::new(ops_cfg),
        });
        self.cluster.announced = None;
        self.cluster_local_changed();
        Ok(())
    }

    /// Stops the agent (from `Drop`): with `revoke`, this host and its
    /// endpoints vanish from every other host at once; without (a state
    /// directory keeps the ports for the next start), they stay until the
    /// lease expires or the next start takes them over.
    pub(super) fn cluster_stop(&mut self, revoke: bool) {
        if let Some(link) = self.cluster.link.as_mut() {
            link.stopping.store(true, Ordering::SeqCst);
            if let Some(agent) = link.agent.take() {
                agent.shutdown(revoke);
            }
        }
    }

    /// Whether `network` is a cluster network here.
    pub(super) fn is_cluster_network(&self, network: &str) -> bool {
        self.networks.get(network).is_some_and(|n| n.spec.cluster)
    }

    /// Whether the cluster manages this VTEP of `network`.
    pub(super) fn is_cluster_vtep(&self, network: &str, addr: SocketAddr) -> bool {
        self.cluster
            .applied
            .vteps
            .contains(&(network.to_string(), addr))
    }

    /// Whether the cluster manages the FDB entry of `mac` in `network`.
    pub(super) fn is_cluster_fdb(&self, network: &str, mac: MacAddr) -> bool {
        self.cluster
            .applied
            .fdb
            .contains_key(&(network.to_string(), mac))
    }

    /// The IP -> MAC bindings of `network` that ARP/ND suppression can
    /// answer from: the addresses of this host's ports (gateway included)
    /// and, for a cluster network, every remote endpoint's; a local port
    /// wins over a remote claim of the same address.
    pub fn neigh_bindings(&self, network: &str) -> BTreeMap<IpAddr, MacAddr> {
        let mut out: BTreeMap<IpAddr, MacAddr> = self
            .cluster
            .applied
            .neigh
            .iter()
            .filter(|((n, _), _)| n == network)
            .map(|((_, ip), mac)| (*ip, *mac))
            .collect();
        for p in self.ports.values().filter(|p| p.network == network) {
            if let (Some(ip), Some(mac)) = (p.ip, p.mac) {
                out.insert(ip.addr(), mac);
            }
        }
        out
    }

    /// This host's endpoints of cluster networks, as the agent publishes
    /// them.
    pub(super) fn cluster_local_endpoints(&self) -> Vec<LocalEndpoint> {
        let mut eps: Vec<LocalEndpoint> = self
            .ports
            .values()
            .filter(|p| !p.gateway && self.is_cluster_network(&p.network))
            .filter_map(|p| {
                Some(LocalEndpoint {
                    network: p.network.clone(),
                    mac: p.mac?,
                    ips: p.ip.map(|ip| vec![ip.addr()]).unwrap_or_default(),
                })
            })
            .collect();
        eps.sort();
        eps
    }

    /// Tells the agent when the cluster ports changed (called whenever the
    /// configuration changed).
    pub(super) fn cluster_local_changed(&mut self) {
        let Some(agent) = self.cluster.link.as_ref().and_then(|l| l.agent.as_ref()) else {
            return;
        };
        let now = self.cluster_local_endpoints();
        if self.cluster.announced.as_ref() != Some(&now) {
            agent.local_endpoints_changed();
            self.cluster.announced = Some(now);
        }
    }
}

mod apply;
mod ops;

#[cfg(test)]
mod tests;
