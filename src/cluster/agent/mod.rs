//! The cluster agent: one thread per daemon that keeps the host registered,
//! its endpoints published and its dataplane in step with the cluster.
//!
//! Its life, in order, every step retried after `AgentConfig::retry` when
//! etcd cannot be reached:
//! 1. **Register** `hosts/HOST` under a fresh lease (TTL `AgentConfig::ttl`),
//!    after checking the host's clock against etcd's (`Date:` of the answer);
//!    refuse an id that another live machine holds (another boot id). A
//!    refused host retries every TTL (the other may have been this machine
//!    before a reboot, whose record expires) and reports the error.
//! 2. **Sync**: list everything under the prefix, build the `ClusterView`,
//!    diff the desired state against what the dataplane has applied and
//!    apply the changes; watch from the list's revision + 1.
//! 3. **Publish** the local endpoints of cluster networks under the lease
//!    (batched puts, stale keys deleted), whenever the daemon says they
//!    changed, after every (re-)registration and whenever a watch event shows
//!    our keys altered by someone else.
//! 4. **Keep alive** the lease every TTL/3. A lease etcd no longer knows
//!    (expired during a long partition) means re-register with a new one and
//!    publish everything again.
//! 5. On every watch event: update the view, diff, apply. On a compaction,
//!    a cancelled or broken watch: re-list and diff (step 2).
//!
//! When etcd is unreachable nothing is removed from the dataplane: the last
//! known state stays (frames keep flowing between existing endpoints), and
//! the re-list after the outage converges on whatever changed meanwhile.
//!
//! The daemon side is the `Dataplane` trait, called on this thread only.
//! Nothing here blocks a dataplane worker: an `apply` is the daemon's own
//! control-plane call.
//!
//! Clock skew: leases are durations counted by etcd, and IPAM's grace period
//! is counted on the collector's monotonic clock, so correctness never
//! compares wall clocks. A host whose clock is far off is still refused
//! (`AgentConfig::max_clock_skew`, checked against the `Date:` header of
//! etcd's answers, 1 s resolution): its logs and certificates would mislead,
//! and it usually means time synchronisation is broken. A clock that runs at
//! the wrong *rate* shows as a lease that expires between keepalives, which
//! step 4 survives.

mod runner;
mod threads;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use super::etcd::EtcdConfig;
use super::model::{Change, State};
use super::schema::{HostId, NetworkRecord, Schema};
use super::store::Created;
use super::ClusterError;
use crate::wire::MacAddr;
use runner::Runner;

/// What the daemon must provide: called on the agent's thread only.
pub trait Dataplane: Send + 'static {
    /// Applies one change. An error leaves it unapplied: the agent retries
    /// it (after `AgentConfig::retry`) until it succeeds or is no longer
    /// wanted. `Set*` changes replace an existing entry.
    fn apply(&mut self, change: &Change) -> Result<(), String>;

    /// Applies `changes` in order, one result per change: what a daemon
    /// implements to take a whole diff in one call (one trip to its control
    /// thread, one state-file write). The default calls `apply` for each.
    fn apply_all(&mut self, changes: &[Change]) -> Vec<Result<(), String>> {
        changes.iter().map(|c| self.apply(c)).collect()
    }

    /// The cluster-derived state the daemon has right now (networks it holds
    /// as cluster networks, cluster VTEPs, FDB entries, bindings), asked once
    /// at start (again after an error, before anything else is done): after
    /// a restart with persisted state it is not empty.
    fn applied(&mut self) -> Result<State, String>;

    /// The endpoints (ports) on this host. Those in cluster networks are
    /// published; the others are ignored. An error (the daemon did not
    /// answer) publishes nothing and is retried: never read as "none".
    fn local_endpoints(&mut self) -> Result<Vec<LocalEndpoint>, String>;
}

/// A container's interface on this host.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalEndpoint {
    pub network: String,
    pub mac: MacAddr,
    pub ips: Vec<IpAddr>,
}

/// The agent's settings.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub etcd: EtcdConfig,
    pub schema: Schema,
    pub host_id: HostId,
    /// This host's VTEP: underlay address and VXLAN port.
    pub vtep: SocketAddr,
    /// The machine's boot id (`host_boot_id()`): tells a restart of this
    /// daemon (same id, takes its record over) from another machine.
    pub boot_id: String,
    /// Lease TTL; keepalives every third of it.
    pub ttl: Duration,
    /// Wait after a failed step before trying again.
    pub retry: Duration,
    /// Refuse to register with a clock further than this from etcd's.
    pub max_clock_skew: Option<Duration>,
    /// The wall clock compared with etcd's (a parameter for tests).
    pub wall_clock: fn() -> SystemTime,
    /// Addresses of a vanished host are freed after this long.
    pub ipam_grace: Duration,
    /// How often the collector (the live host with the lowest id) looks.
    pub ipam_gc_interval: Duration,
    /// Called on the agent's thread with the previous and the new status
    /// whenever it changes (the daemon logs what a person must know).
    pub on_status: Option<StatusHook>,
}

/// A callback for status changes (see `AgentConfig::on_status`).
#[derive(Clone)]
pub struct StatusHook(pub Arc<StatusFn>);

/// What a `StatusHook` calls: (previous, new).
pub type StatusFn = dyn Fn(&AgentStatus, &AgentStatus) + Send + Sync;

impl std::fmt::Debug for StatusHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatusHook")
    }
}

impl AgentConfig {
    pub fn new(etcd: EtcdConfig, host_id: HostId, vtep: SocketAddr) -> Self {
        AgentConfig {
            etcd,
            schema: Schema::default(),
            host_id,
            vtep,
            boot_id: host_boot_id(),
            ttl: Duration::from_secs(10),
            retry: Duration::from_secs(1),
            max_clock_skew: Some(Duration::from_secs(30)),
            wall_clock: SystemTime::now,
            ipam_grace: Duration::from_secs(60),
            ipam_gc_interval: Duration::from_secs(30),
            on_status: None,
        }
    }
}

/// This machine's identity for `AgentConfig::boot_id`: the kernel's boot id
/// and the inode of the network namespace the daemon runs in. A daemon
/// restarted on the same machine finds the same value (its record is taken
/// over); a rebooted machine, or another "host" in another network namespace
/// of the same kernel (a lab, a test), has another one (a colliding host id
/// is refused).
pub fn host_boot_id() -> String {
    use std::os::unix::fs::MetadataExt;
    let boot = kernel_boot_id();
    match std::fs::metadata("/proc/self/ns/net") {
        Ok(m) => format!("{boot}-net{}", m.ino()),
        Err(_) => boot,
    }
}

/// The kernel's id of this boot, or a per-process fallback.
pub fn kernel_boot_id() -> String {
    match std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        Ok(s) if !s.trim().is_empty() && s.trim().len() <= 64 => s.trim().to_string(),
        _ => {
            let t = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("pid{}-{t:x}", std::process::id())
        }
    }
}

/// A snapshot of the agent for `status` output and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentStatus {
    /// etcd answered the last request.
    pub connected: bool,
    /// This host is registered under a live lease.
    pub registered: bool,
    /// The view is current: listed and watching.
    pub synced: bool,
    pub lease: i64,
    /// The revision the view reflects.
    pub revision: i64,
    pub hosts: usize,
    pub networks: usize,
    /// Remote endpoints (FDB entries) applied.
    pub remote_endpoints: usize,
    /// Local endpoints published.
    pub published: usize,
    /// Records in etcd refused as invalid (counted, ignored).
    pub refused_records: u64,
    /// Full re-lists (start, compaction, reconnect).
    pub resyncs: u64,
    pub compactions: u64,
    /// Leases lost and replaced.
    pub lease_losses: u64,
    pub apply_failures: u64,
    /// The last change the dataplane refused, while it keeps refusing.
    pub apply_error: Option<String>,
    /// Registrations that took over this machine's record from an earlier
    /// run (a restart).
    pub takeovers: u64,
    /// This host's clock minus etcd's, in ms (±1 s resolution).
    pub clock_skew_ms: Option<i64>,
    /// The last error; `None` once everything works again.
    pub error: Option<String>,
    /// Registration refused (id taken, clock off): the error says why.
    pub refused: bool,
}

pub(crate) enum Cmd {
    LocalChanged,
    CreateNetwork {
        name: String,
        rec: NetworkRecord,
        reply: Sender<Result<Created, ClusterError>>,
    },
    DeleteNetwork {
        name: String,
        reply: Sender<Result<bool, ClusterError>>,
    },
    Stop {
        revoke: bool,
    },
}

/// The running agent (see the module docs). Dropping it stops the thread
/// without revoking the lease.
pub struct Agent {
    tx: Sender<Cmd>,
    status: Arc<Mutex<AgentStatus>>,
    thread: Option<JoinHandle<()>>,
    request_timeout: Duration,
}

impl Agent {
    /// Starts the agent's thread. etcd need not be reachable: the agent
    /// keeps trying and reports in `status()`.
    pub fn start<D: Dataplane>(cfg: AgentConfig, dp: D) -> std::io::Result<Agent> {
        let (tx, rx) = unbounded();
        let status = Arc::new(Mutex::new(AgentStatus::default()));
        let request_timeout =
            cfg.etcd.request_timeout * u32::try_from(cfg.etcd.endpoints.len().max(1)).unwrap_or(1);
        let runner = Runner::new(cfg, dp, status.clone());
        let thread = std::thread::Builder::new()
            .name("vxswitch-cluster".into())
            .spawn(move || runner.run(rx))?;
        Ok(Agent {
            tx,
            status,
            thread: Some(thread),
            request_timeout,
        })
    }

    /// Tells the agent that local endpoints changed (a port was added,
    /// removed or readdressed): it asks `Dataplane::local_endpoints` again.
    pub fn local_endpoints_changed(&self) {
        let _ = self.tx.send(Cmd::LocalChanged);
    }

    /// Creates a cluster network (create-if-absent; name and VNI unique
    /// cluster-wide). Every host, this one included, then creates it locally
    /// through `Dataplane::apply`.
    pub fn create_network(&self, name: &str, rec: NetworkRecord) -> Result<Created, ClusterError> {
        let (reply, rx) = bounded(1);
        self.tx
            .send(Cmd::CreateNetwork {
                name: name.into(),
                rec,
                reply,
            })
            .map_err(|_| ClusterError::AgentStopped)?;
        self.wait(rx)
    }

    /// Deletes a cluster network that no endpoint uses any more.
    pub fn delete_network(&self, name: &str) -> Result<bool, ClusterError> {
        let (reply, rx) = bounded(1);
        self.tx
            .send(Cmd::DeleteNetwork {
                name: name.into(),
                reply,
            })
            .map_err(|_| ClusterError::AgentStopped)?;
        self.wait(rx)
    }

    fn wait<T>(&self, rx: Receiver<Result<T, ClusterError>>) -> Result<T, ClusterError> {
        // The agent may be in the middle of a slow etcd call first.
        rx.recv_timeout(self.request_timeout * 4 + Duration::from_secs(1))
            .map_err(|_| ClusterError::AgentStopped)?
    }

    pub fn status(&self) -> AgentStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops the agent. `revoke`: withdraw this host now (its endpoints
    /// vanish from every other host at once); without it they stay until
    /// the lease expires, which is what a restart with state wants.
    pub fn shutdown(mut self, revoke: bool) {
        self.stop(revoke);
    }

    fn stop(&mut self, revoke: bool) {
        let _ = self.tx.send(Cmd::Stop { revoke });
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop(false);
    }
}
