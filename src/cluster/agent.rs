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

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};

use super::etcd::{Client, EtcdConfig, EtcdError, TxnOp, WatchEvent, WatchMessage};
use super::ipam::{self, DeadHosts};
use super::model::{diff, Change, ClusterView, State};
use super::schema::{self, EndpointRecord, HostId, HostRecord, Key, NetworkRecord, Schema};
use super::store::{self, Created, Registration};
use super::ClusterError;
use crate::wire::MacAddr;

/// Puts per transaction when publishing (etcd allows 128 by default).
const PUBLISH_BATCH: usize = 64;
/// How long the watch reader blocks before checking whether to stop.
const WATCH_POLL: Duration = Duration::from_millis(200);

/// What the daemon must provide: called on the agent's thread only.
pub trait Dataplane: Send + 'static {
    /// Applies one change. An error leaves it unapplied: the agent retries
    /// it (after `AgentConfig::retry`) until it succeeds or is no longer
    /// wanted. `Set*` changes replace an existing entry.
    fn apply(&mut self, change: &Change) -> Result<(), String>;

    /// The cluster-derived state the daemon has right now (networks it holds
    /// as cluster networks, cluster VTEPs, FDB entries, bindings), asked once
    /// at start: after a restart with persisted state it is not empty.
    fn applied(&mut self) -> State;

    /// The endpoints (ports) on this host. Those in cluster networks are
    /// published; the others are ignored.
    fn local_endpoints(&mut self) -> Vec<LocalEndpoint>;
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
    /// The machine's boot id (`kernel_boot_id()`): tells a restart of this
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
}

impl AgentConfig {
    pub fn new(etcd: EtcdConfig, host_id: HostId, vtep: SocketAddr) -> Self {
        AgentConfig {
            etcd,
            schema: Schema::default(),
            host_id,
            vtep,
            boot_id: kernel_boot_id(),
            ttl: Duration::from_secs(10),
            retry: Duration::from_secs(1),
            max_clock_skew: Some(Duration::from_secs(30)),
            wall_clock: SystemTime::now,
            ipam_grace: Duration::from_secs(60),
            ipam_gc_interval: Duration::from_secs(30),
        }
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

enum Cmd {
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

/// The watch, read on its own thread so the agent can wait on commands and
/// events at once.
struct WatchReader {
    rx: Receiver<Result<WatchMessage, EtcdError>>,
    stop: Arc<AtomicBool>,
}

impl Drop for WatchReader {
    fn drop(&mut self) {
        // The thread notices within WATCH_POLL and closes its connection.
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Runner<D> {
    cfg: AgentConfig,
    dp: D,
    client: Client,
    status: Arc<Mutex<AgentStatus>>,
    st: AgentStatus,
    view: ClusterView,
    applied: State,
    lease: Option<i64>,
    /// Refreshes the lease on its own thread, so a slow `Dataplane::apply`
    /// can never let the lease expire.
    keeper: Option<Keeper>,
    /// Our host key vanished while the lease lives: write it again.
    host_key_missing: bool,
    /// Our endpoint keys as last written: key -> (value, lease).
    published: BTreeMap<Vec<u8>, (Vec<u8>, i64)>,
    local_dirty: bool,
    watch: Option<WatchReader>,
    /// When to run the next step (backoff after failures).
    next_step: Instant,
    reconcile_due: Option<Instant>,
    dead: DeadHosts,
    next_gc: Instant,
}

impl<D: Dataplane> Runner<D> {
    fn new(cfg: AgentConfig, dp: D, status: Arc<Mutex<AgentStatus>>) -> Self {
        let now = Instant::now();
        Runner {
            client: Client::new(cfg.etcd.clone()),
            next_gc: now + cfg.ipam_gc_interval,
            cfg,
            dp,
            status,
            st: AgentStatus::default(),
            view: ClusterView::default(),
            applied: State::default(),
            lease: None,
            keeper: None,
            host_key_missing: false,
            published: BTreeMap::new(),
            local_dirty: true,
            watch: None,
            next_step: now,
            reconcile_due: None,
            dead: DeadHosts::default(),
        }
    }

    fn run(mut self, rx: Receiver<Cmd>) {
        self.applied = self.dp.applied();
        loop {
            let now = Instant::now();
            if self.reconcile_due.is_some_and(|t| now >= t) {
                self.reconcile();
            }
            if now >= self.next_step {
                self.step();
            }
            self.publish_status();
            let mut wake = self.next_step;
            if let Some(t) = self.reconcile_due {
                wake = wake.min(t);
            }
            let timeout = wake
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_secs(1));
            let never = crossbeam_channel::never();
            let watch_rx = self.watch.as_ref().map_or(&never, |w| &w.rx);
            let never_k = crossbeam_channel::never();
            let keeper_rx = self.keeper.as_ref().map_or(&never_k, |k| &k.rx);
            select! {
                recv(rx) -> cmd => match cmd {
                    Ok(Cmd::LocalChanged) => self.mark_local_dirty(),
                    Ok(Cmd::CreateNetwork { name, rec, reply }) => {
                        let r = store::create_network(&mut self.client, &self.cfg.schema, &name, &rec);
                        self.note(r.as_ref().err());
                        let _ = reply.send(r);
                    }
                    Ok(Cmd::DeleteNetwork { name, reply }) => {
                        let r = self.delete_network(&name);
                        let _ = reply.send(r);
                    }
                    Ok(Cmd::Stop { revoke }) => return self.finish(revoke),
                    Err(_) => return self.finish(false),
                },
                recv(watch_rx) -> msg => match msg {
                    Ok(m) => self.on_watch(m),
                    Err(_) => self.lose_watch(Some(EtcdError::WatchClosed { endpoint: String::new() })),
                },
                recv(keeper_rx) -> ev => match ev {
                    Ok(KeeperEvent::Alive) => self.st.connected = true,
                    Ok(KeeperEvent::Unreachable(e)) => {
                        self.st.connected = false;
                        self.st.error = Some(e);
                    }
                    Ok(KeeperEvent::Lost) | Err(_) => self.lose_lease(),
                },
                default(timeout) => {}
            }
        }
    }

    fn finish(mut self, revoke: bool) {
        self.watch = None;
        self.keeper = None;
        if revoke {
            if let Some(id) = self.lease.take() {
                let _ = self.client.lease_revoke(id);
            }
        }
        self.st.registered = false;
        self.st.synced = false;
        self.publish_status();
    }

    /// Records an error from etcd or the schema in the status.
    fn note(&mut self, e: Option<&ClusterError>) {
        if let Some(e) = e {
            if e.is_unavailable() {
                self.st.connected = false;
            }
            self.st.error = Some(e.to_string());
        }
    }

    /// One pass of register / keepalive / sync / publish / collect.
    fn step(&mut self) {
        match self.try_step() {
            Ok(()) => {
                self.st.connected = true;
                if !self.st.refused {
                    self.st.error = None;
                }
            }
            Err(e) => {
                let refused = matches!(
                    e,
                    ClusterError::HostIdTaken { .. } | ClusterError::ClockSkew { .. }
                );
                self.st.refused = refused;
                self.note(Some(&e));
                if matches!(&e, ClusterError::Etcd(e) if e.is_lease_not_found()) {
                    self.lose_lease();
                }
                if e.is_unavailable() {
                    // Whatever was open is suspect; the state stays applied.
                    self.lose_watch(None);
                    self.client.disconnect();
                }
                let wait = if refused {
                    self.cfg.ttl
                } else {
                    self.cfg.retry
                };
                self.next_step = Instant::now() + wait;
            }
        }
    }

    fn try_step(&mut self) -> Result<(), ClusterError> {
        let now = Instant::now();
        if self.lease.is_none() {
            self.register()?;
        }
        if self.host_key_missing {
            if let Some(id) = self.lease {
                let rec = self.host_record();
                store::register_host(
                    &mut self.client,
                    &self.cfg.schema,
                    &self.cfg.host_id,
                    &rec,
                    id,
                )?;
                self.host_key_missing = false;
            }
        }
        if self.watch.is_none() {
            self.resync()?;
        }
        if self.local_dirty {
            self.publish()?;
        }
        if now >= self.next_gc {
            self.next_gc = now + self.cfg.ipam_gc_interval;
            self.collect_garbage()?;
        }
        self.next_step = self.next_gc.min(now + self.cfg.ttl / 3);
        Ok(())
    }

    /// The lease expired (a partition longer than the TTL): etcd deleted our
    /// keys. Register and publish anew.
    fn lose_lease(&mut self) {
        if self.lease.take().is_some() {
            self.st.lease_losses += 1;
        }
        self.keeper = None;
        self.st.registered = false;
        self.published.clear();
        self.next_step = Instant::now();
    }

    /// Publishes soon: now when healthy, after the backoff otherwise.
    fn mark_local_dirty(&mut self) {
        self.local_dirty = true;
        if self.st.error.is_none() {
            self.next_step = Instant::now();
        }
    }

    fn host_record(&self) -> HostRecord {
        HostRecord {
            vtep: self.cfg.vtep.ip(),
            vxlan_port: self.cfg.vtep.port(),
            boot_id: self.cfg.boot_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    fn check_clock(&mut self) -> Result<(), ClusterError> {
        let Some((server, received)) = self.client.last_server_date() else {
            return Ok(()); // no Date header: nothing to compare
        };
        let server_now = server + received.elapsed().unwrap_or_default();
        let local = (self.cfg.wall_clock)();
        let skew_ms = match local.duration_since(server_now) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        self.st.clock_skew_ms = Some(skew_ms);
        if let Some(max) = self.cfg.max_clock_skew {
            // The Date header has whole seconds: allow one more.
            let limit = i64::try_from(max.as_millis())
                .unwrap_or(i64::MAX)
                .saturating_add(1000);
            if skew_ms.abs() > limit {
                return Err(ClusterError::ClockSkew {
                    skew_secs: skew_ms / 1000,
                    max_secs: max.as_secs(),
                });
            }
        }
        Ok(())
    }

    fn register(&mut self) -> Result<(), ClusterError> {
        let lease = self.client.lease_grant(self.cfg.ttl)?;
        let rec = self.host_record();
        let r = self.check_clock().and_then(|()| {
            store::register_host(
                &mut self.client,
                &self.cfg.schema,
                &self.cfg.host_id,
                &rec,
                lease.id,
            )
        });
        match r {
            Ok(reg) => {
                // After a takeover (`Registration::TookOver`), our keys from
                // before move to the new lease as they are published; the
                // rest expire with the old lease.
                if let Registration::TookOver { .. } = reg {
                    self.st.takeovers += 1;
                }
                self.lease = Some(lease.id);
                self.st.lease = lease.id;
                self.st.registered = true;
                self.st.refused = false;
                self.keeper = Some(spawn_keeper(&self.cfg, lease.id));
                self.host_key_missing = false;
                self.local_dirty = true; // everything under the new lease
                Ok(())
            }
            Err(e) => {
                let _ = self.client.lease_revoke(lease.id);
                Err(e)
            }
        }
    }

    /// Lists everything, rebuilds the view, converges, and watches on.
    fn resync(&mut self) -> Result<(), ClusterError> {
        let prefix = self.cfg.schema.prefix().as_bytes().to_vec();
        let (kvs, rev) = self.client.list_prefix(&prefix)?;
        self.view = ClusterView::from_list(&self.cfg.schema, &kvs, rev);
        let own = self
            .cfg
            .schema
            .host_endpoints_prefix(&self.cfg.host_id)
            .into_bytes();
        self.published = kvs
            .into_iter()
            .filter(|kv| kv.key.starts_with(&own))
            .map(|kv| (kv.key, (kv.value, kv.lease)))
            .collect();
        if self.lease.is_some() && !self.view.hosts.contains_key(&self.cfg.host_id) {
            self.host_key_missing = true;
        }
        let watch = self.client.watch(&prefix, rev + 1)?;
        self.watch = Some(spawn_reader(watch));
        self.st.resyncs += 1;
        self.st.synced = true;
        self.reconcile();
        self.local_dirty = true;
        Ok(())
    }

    /// Drops the watch; the next step re-lists.
    fn lose_watch(&mut self, e: Option<EtcdError>) {
        self.watch = None;
        self.st.synced = false;
        if let Some(e) = e {
            let retry_now = matches!(
                e,
                EtcdError::Compacted { .. } | EtcdError::WatchCanceled { .. }
            );
            if matches!(e, EtcdError::Compacted { .. }) {
                self.st.compactions += 1;
            }
            self.note(Some(&ClusterError::Etcd(e)));
            self.next_step = if retry_now {
                Instant::now()
            } else {
                Instant::now() + self.cfg.retry
            };
        }
    }

    fn on_watch(&mut self, m: Result<WatchMessage, EtcdError>) {
        let events = match m {
            Ok(WatchMessage::Events { events }) => events,
            Ok(WatchMessage::Created { .. } | WatchMessage::Progress { .. }) => return,
            Err(e) => return self.lose_watch(Some(e)),
        };
        let s = self.cfg.schema.clone();
        let mut affected = BTreeSet::new();
        for ev in &events {
            self.view.apply(&s, ev);
            self.view.affected_networks(&s, ev, &mut affected);
            self.track_own(&s, ev);
        }
        if !affected.is_empty() {
            self.reconcile_in(Some(&affected));
        }
    }

    /// Notices our own keys changed by someone else (or expiring).
    fn track_own(&mut self, s: &Schema, ev: &WatchEvent) {
        match s.parse_key(ev.key()) {
            Ok(Key::Host(h)) if h == self.cfg.host_id => match ev {
                WatchEvent::Delete { .. } => {
                    // Lease expired, or deleted by hand: find out which.
                    self.host_key_missing = true;
                    self.next_step = Instant::now();
                }
                WatchEvent::Put(kv) => {
                    let ours = schema::parse_value(&Key::Host(h), &kv.value)
                        .is_ok_and(|v| v == schema::Value::Host(self.host_record()));
                    if !ours && Some(kv.lease) != self.lease {
                        // Someone else holds our id now: register again,
                        // which refuses with the reason.
                        self.lease = None;
                        self.st.registered = false;
                        self.next_step = Instant::now();
                    }
                }
            },
            Ok(Key::Endpoint { host, .. }) if host == self.cfg.host_id => {
                let key = ev.key().to_vec();
                let matches = match ev {
                    WatchEvent::Put(kv) => {
                        self.published.get(&key) == Some(&(kv.value.clone(), kv.lease))
                    }
                    WatchEvent::Delete { .. } => !self.published.contains_key(&key),
                };
                if !matches {
                    self.published.remove(&key);
                    self.mark_local_dirty();
                }
            }
            _ => {}
        }
    }

    /// Diffs the view against what is applied and applies the changes.
    fn reconcile(&mut self) {
        self.reconcile_in(None);
    }

    /// `reconcile` for some networks only (those a watch batch touched):
    /// with thousands of endpoints, the whole diff costs tens of ms.
    fn reconcile_in(&mut self, only: Option<&BTreeSet<String>>) {
        let desired = self.view.desired_in(&self.cfg.host_id, only);
        let changes = match only {
            Some(nets) => diff(&self.applied.restricted(nets), &desired),
            None => {
                self.reconcile_due = None;
                diff(&self.applied, &desired)
            }
        };
        let before = self.applied.networks.len();
        for c in changes {
            match self.dp.apply(&c) {
                Ok(()) => self.applied.apply(&c),
                Err(e) => {
                    self.st.apply_failures += 1;
                    self.st.apply_error = Some(format!("applying {c:?}: {e}"));
                    self.reconcile_due = Some(Instant::now() + self.cfg.retry);
                }
            }
        }
        if self.reconcile_due.is_none() {
            self.st.apply_error = None;
        }
        if self.applied.networks.len() != before {
            self.mark_local_dirty(); // endpoints of a new network to publish
        }
    }

    /// Writes our endpoints under the lease and deletes stale ones.
    fn publish(&mut self) -> Result<(), ClusterError> {
        let (Some(lease), true) = (self.lease, self.watch.is_some()) else {
            return Ok(()); // after registration and sync
        };
        let s = &self.cfg.schema;
        let mut want: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for ep in self.dp.local_endpoints() {
            if !self.applied.networks.contains_key(&ep.network)
                || !self.view.networks.contains_key(&ep.network)
            {
                continue; // not a cluster network here
            }
            let mut ips = ep.ips.clone();
            ips.sort();
            ips.dedup();
            ips.truncate(schema::MAX_IPS);
            let key = s
                .endpoint_key(&self.cfg.host_id, &ep.network, ep.mac)
                .into_bytes();
            want.insert(key, schema::to_value(&EndpointRecord { ips }));
        }
        let mut ops = Vec::new();
        for (k, v) in &want {
            if self.published.get(k) != Some(&(v.clone(), lease)) {
                ops.push(TxnOp::put(k.clone(), v.clone(), lease));
            }
        }
        for k in self.published.keys() {
            if !want.contains_key(k) {
                ops.push(TxnOp::delete(k.clone()));
            }
        }
        for batch in ops.chunks(PUBLISH_BATCH) {
            self.client.txn(&[], batch, &[])?;
            for op in batch {
                match op {
                    TxnOp::Put { key, value, lease } => {
                        self.published.insert(key.clone(), (value.clone(), *lease));
                    }
                    TxnOp::Delete { key, .. } => {
                        self.published.remove(key);
                    }
                    TxnOp::Get { .. } => {}
                }
            }
        }
        self.local_dirty = false;
        Ok(())
    }

    fn delete_network(&mut self, name: &str) -> Result<bool, ClusterError> {
        let endpoints = self
            .view
            .endpoints
            .keys()
            .filter(|k| k.network == name)
            .count();
        if endpoints > 0 {
            return Err(ClusterError::NetworkInUse {
                name: name.into(),
                endpoints,
            });
        }
        let r = store::delete_network(&mut self.client, &self.cfg.schema, name);
        self.note(r.as_ref().err());
        r
    }

    /// The live host with the lowest id frees the addresses of dead hosts.
    fn collect_garbage(&mut self) -> Result<(), ClusterError> {
        if !self.st.synced || self.view.hosts.keys().next() != Some(&self.cfg.host_id) {
            return Ok(());
        }
        let live: BTreeSet<HostId> = self.view.hosts.keys().cloned().collect();
        ipam::collect_garbage(
            &mut self.client,
            &self.cfg.schema,
            &live,
            &mut self.dead,
            Instant::now(),
            self.cfg.ipam_grace,
        )?;
        Ok(())
    }

    fn publish_status(&mut self) {
        self.st.revision = self.view.revision;
        self.st.hosts = self.view.hosts.len();
        self.st.networks = self.view.networks.len();
        self.st.remote_endpoints = self.applied.fdb.len();
        self.st.published = self.published.len();
        self.st.refused_records = self.view.refused.count;
        self.st.lease = self.lease.unwrap_or(0);
        if let Ok(mut s) = self.status.lock() {
            s.clone_from(&self.st);
        }
    }
}

fn spawn_reader(mut watch: super::etcd::Watch) -> WatchReader {
    // Small: a slow agent must slow the stream down (etcd then counts the
    // watch as behind and, after a compaction, says so) rather than queue
    // without bound here.
    let (tx, rx) = bounded(8);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("vxswitch-watch".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match watch.next(WATCH_POLL) {
                    Ok(None) => {}
                    Ok(Some(m)) => {
                        if tx.send(Ok(m)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
    // A failed spawn drops `tx`: the closed channel reads as a lost watch.
    let _ = spawned;
    WatchReader { rx, stop }
}

enum KeeperEvent {
    /// A keepalive succeeded after failures.
    Alive,
    /// A keepalive failed; the keeper retries.
    Unreachable(String),
    /// etcd no longer knows the lease.
    Lost,
}

/// The lease keeper's thread; it ends when this is dropped.
struct Keeper {
    rx: Receiver<KeeperEvent>,
    _stop: Sender<()>,
}

fn spawn_keeper(cfg: &AgentConfig, lease: i64) -> Keeper {
    let (tx, rx) = unbounded();
    let (stop, stopped) = bounded::<()>(0);
    let mut client = Client::new(cfg.etcd.clone());
    let (period, retry) = (cfg.ttl / 3, cfg.retry);
    let spawned = std::thread::Builder::new()
        .name("vxswitch-lease".into())
        .spawn(move || {
            let mut wait = period;
            let mut failing = false;
            // Wakes on the period, ends when the agent drops its `Keeper`.
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait)
            {
                let event = match client.lease_keepalive(lease) {
                    Ok(Some(_)) if failing => Some(KeeperEvent::Alive),
                    Ok(Some(_)) => None,
                    Ok(None) => Some(KeeperEvent::Lost),
                    Err(e) => Some(KeeperEvent::Unreachable(format!("lease keepalive: {e}"))),
                };
                failing = matches!(event, Some(KeeperEvent::Unreachable(_)));
                wait = if failing { retry } else { period };
                let lost = matches!(event, Some(KeeperEvent::Lost));
                if let Some(ev) = event {
                    if tx.send(ev).is_err() || lost {
                        return;
                    }
                }
            }
        });
    // A failed spawn drops `tx`: the closed channel reads as a lost lease.
    let _ = spawned;
    Keeper { rx, _stop: stop }
}
