//! The agent's thread: the steps of the parent module's docs, driven by one
//! `select!` over commands, watch messages and lease-keeper events.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use super::threads::{spawn_keeper, spawn_reader, Keeper, KeeperEvent, WatchReader};
use super::{AgentConfig, AgentStatus, Cmd, Dataplane};
use crate::cluster::etcd::{Client, EtcdError, TxnOp, WatchEvent, WatchMessage};
use crate::cluster::ipam::{self, DeadHosts};
use crate::cluster::model::{diff, ClusterView, State};
use crate::cluster::schema::{self, EndpointRecord, HostId, HostRecord, Key, Schema};
use crate::cluster::store::{self, Registration};
use crate::cluster::ClusterError;

/// Puts per transaction when publishing (etcd allows 128 by default).
const PUBLISH_BATCH: usize = 64;

pub(super) struct Runner<D> {
    cfg: AgentConfig,
    dp: D,
    client: Client,
    status: Arc<Mutex<AgentStatus>>,
    st: AgentStatus,
    /// `st` as last published (the status hook is told the differences).
    last_status: AgentStatus,
    view: ClusterView,
    applied: State,
    /// `applied` was read from the dataplane.
    have_applied: bool,
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
    pub(super) fn new(cfg: AgentConfig, dp: D, status: Arc<Mutex<AgentStatus>>) -> Self {
        let now = Instant::now();
        Runner {
            client: Client::new(cfg.etcd.clone()),
            next_gc: now + cfg.ipam_gc_interval,
            cfg,
            dp,
            status,
            st: AgentStatus::default(),
            last_status: AgentStatus::default(),
            view: ClusterView::default(),
            applied: State::default(),
            have_applied: false,
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

    pub(super) fn run(mut self, rx: Receiver<Cmd>) {
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
        if !self.have_applied {
            // Before any diff: what the daemon holds already (restored).
            self.applied = self.dp.applied().map_err(ClusterError::Daemon)?;
            self.have_applied = true;
        }
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
        let results = if changes.is_empty() {
            Vec::new()
        } else {
            self.dp.apply_all(&changes)
        };
        for (i, c) in changes.iter().enumerate() {
            // A dataplane that answered for fewer changes applied none of the rest.
            let r = results
                .get(i)
                .cloned()
                .unwrap_or_else(|| Err("not applied (the daemon did not answer)".into()));
            match r {
                Ok(()) => self.applied.apply(c),
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
        for ep in self.dp.local_endpoints().map_err(ClusterError::Daemon)? {
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
        self.fill_status();
        if self.st == self.last_status {
            return;
        }
        if let Ok(mut s) = self.status.lock() {
            s.clone_from(&self.st);
        }
        if let Some(hook) = &self.cfg.on_status {
            (hook.0)(&self.last_status, &self.st);
        }
        self.last_status.clone_from(&self.st);
    }

    fn fill_status(&mut self) {
        self.st.revision = self.view.revision;
        self.st.hosts = self.view.hosts.len();
        self.st.networks = self.view.networks.len();
        self.st.remote_endpoints = self.applied.fdb.len();
        self.st.published = self.published.len();
        self.st.refused_records = self.view.refused.count;
        self.st.lease = self.lease.unwrap_or(0);
    }
}
