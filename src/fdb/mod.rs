//! The forwarding database: `(network, MAC) -> destination`.
//!
//! Design (after the Linux bridge's `br_fdb.c`, with a lock-free map):
//!
//! - The map is a [`papaya::HashMap`]: readers never take a lock, so two
//!   worker threads looking up the same hot entries scale ~2x instead of
//!   fighting over a read-lock cache line as a `dashmap` shard lock does
//!   (measured on this machine: `benches/fdb.rs`, and docs/architecture.md,
//!   "FDB"). The hasher is
//!   `ahash` with a random per-process key, so a remote sender cannot
//!   choose MACs that collide (the bridge's `fdb_salt`).
//! - An entry's destination and last-seen time are atomics inside the
//!   value. Refreshing a known MAC is one relaxed load (and a store at most
//!   once per [`REFRESH_GRANULARITY_MS`]); a move is a compare-and-swap. The
//!   map itself is written only when a MAC is new, and on ageing/flush.
//! - Size is bounded: at most `max_entries` in total, `max_per_network` in
//!   any one network (a network may have a budget of its own:
//!   [`Fdb::set_network_limit`]) and `max_per_dest` per destination (a
//!   local port or a remote VTEP). A learn beyond any of them is refused and
//!   counted ([`Learned::Refused`]); nothing is evicted, so a MAC flood from
//!   one port cannot push out other ports' entries, and a flood in one
//!   network cannot stop the others from learning. The table is allocated
//!   for `max_entries` up front and never resizes.
//! - Learned entries age out after `ageing_ms` without a frame from that
//!   MAC (default 300 s, the bridge's default). An expired entry is a miss
//!   at once, even before the periodic [`Fdb::sweep`] removes it. Static
//!   entries never age and are never moved by learning.
//!
//! Counting. The limits need counts (in total, per network, per
//! destination) that stay exact while several workers learn, move, flush
//! and sweep at once. Two rules keep them so:
//! - An entry is uncounted only by whoever took it out of the map: a
//!   `remove`/`remove_if` that returned it, or an `insert` that replaced
//!   it. (papaya's `retain` may call its closure more than once for one
//!   key, and two workers flushing one port both see every entry, so
//!   counting inside a closure counts removals that did not happen.) The
//!   remover then swaps the entry's destination to a tombstone and
//!   uncounts the destination it swapped out, so a move racing the removal
//!   is charged to one destination exactly once.
//! - A move counts the new destination before its compare-and-swap and
//!   uncounts the old one only if the swap succeeded; a swap that finds the
//!   tombstone undoes its count and learns the MAC anew.
//!
//! Every operation takes `now` from the caller: the FDB does no I/O and
//! reads no clock, so ageing is tested with a manual clock.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use crate::time::Millis;
use crate::wire::MacAddr;

mod watch;
pub use watch::{Change, ChangeKind, WATCH_CAPACITY};

/// Identifies a network (an L2 broadcast domain) inside one daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NetId(pub u32);

/// Identifies a local port inside one daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortId(pub u32);

/// Identifies a remote VXLAN tunnel endpoint inside one daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VtepId(pub u32);

/// Where frames for a MAC go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dest {
    Local(PortId),
    Remote(VtepId),
}

impl Dest {
    const REMOTE_BIT: u64 = 1 << 32;
    /// An entry's destination once it has been taken out of the map: no
    /// `encode` gives it (bits above 32 other than `REMOTE_BIT` are set).
    const GONE: u64 = u64::MAX;

    fn encode(self) -> u64 {
        match self {
            Dest::Local(PortId(p)) => u64::from(p),
            Dest::Remote(VtepId(v)) => Self::REMOTE_BIT | u64::from(v),
        }
    }

    fn decode(v: u64) -> Dest {
        // The low 32 bits are the id by construction of `encode`.
        let id = (v & 0xffff_ffff) as u32;
        if v & Self::REMOTE_BIT != 0 {
            Dest::Remote(VtepId(id))
        } else {
            Dest::Local(PortId(id))
        }
    }
}

impl fmt::Display for Dest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dest::Local(p) => write!(f, "port#{}", p.0),
            Dest::Remote(v) => write!(f, "vtep#{}", v.0),
        }
    }
}

/// How an entry got into the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// From the source address of a received frame; ages out.
    Learned,
    /// Added by the operator; never ages, never moves.
    Static,
}

/// Limits and timers. Defaults are documented in `docs/architecture.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FdbConfig {
    /// Learned entries unseen for this long are removed (ms). 0 disables ageing.
    pub ageing_ms: u64,
    /// Total entries, learned and static, across all networks.
    pub max_entries: usize,
    /// Entries pointing at any one destination (port or VTEP).
    pub max_per_dest: usize,
    /// Entries of any one network, unless the network has a budget of its
    /// own (`network create --fdb-max-entries`).
    pub max_per_network: usize,
}

impl Default for FdbConfig {
    fn default() -> Self {
        FdbConfig {
            ageing_ms: 300_000,
            max_entries: 65_536,
            max_per_dest: 4_096,
            max_per_network: 16_384,
        }
    }
}

/// A learned entry's timestamp is rewritten at most this often, so that a
/// MAC sending at line rate does not turn every frame into a store to a
/// cache line other cores read.
pub const REFRESH_GRANULARITY_MS: u64 = 1_000;

/// The result of a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Hit(Dest),
    Miss,
}

/// What [`Fdb::learn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// Known MAC at the same destination (age refreshed).
    Refreshed,
    /// A new entry.
    Inserted,
    /// The MAC moved here from another destination.
    Moved { from: Dest },
    /// A static entry for this MAC points elsewhere; it was left alone.
    StaticConflict,
    /// Not learned: a limit was reached.
    Refused(Refusal),
}

/// Which limit refused a learn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    TableFull,
    DestLimit,
    /// The network's budget (`max_per_network`, or its own).
    NetLimit,
}

/// Errors of operator requests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FdbError {
    #[error(
        "the forwarding table is full ({max} entries); raise fdb.max_entries or remove entries"
    )]
    TableFull { max: usize },
    #[error("destination {dest} already has {max} entries (fdb.max_per_dest)")]
    DestLimit { dest: Dest, max: usize },
    #[error("network #{} already has {max} entries (its FDB budget)", net.0)]
    NetLimit { net: NetId, max: usize },
    #[error("{mac} is not a unicast address; only unicast MACs can have entries")]
    NotUnicast { mac: MacAddr },
}

/// Selects entries for [`Fdb::entries`] and [`Fdb::flush`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub net: Option<NetId>,
    pub dest: Option<Dest>,
    /// Only learned entries (a plain `flush` keeps static ones).
    pub learned_only: bool,
}

impl Filter {
    fn matches(&self, key: &Key, e: &Entry) -> bool {
        self.net.is_none_or(|n| n == key.net())
            && self.dest.is_none_or(|d| Some(d) == e.dest())
            && !(self.learned_only && e.kind == EntryKind::Static)
    }
}

/// One row of `fdb show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntry {
    pub net: NetId,
    pub mac: MacAddr,
    pub dest: Dest,
    pub kind: EntryKind,
    /// Milliseconds since a frame from this MAC was last seen (0 for static).
    pub age_ms: u64,
}

/// Counters of what the table did and refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbStats {
    pub entries: usize,
    pub inserted: u64,
    pub moved: u64,
    pub aged_out: u64,
    pub refused_table_full: u64,
    pub refused_dest_limit: u64,
    pub static_conflicts: u64,
    /// Learns refused because their network's budget was spent.
    #[serde(default)]
    pub refused_net_limit: u64,
}

/// One network's share of the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetFdbStats {
    /// Entries of the network now.
    pub entries: usize,
    /// Its budget.
    pub max: usize,
    /// New MACs of the network not learned because the budget was spent
    /// (the frames were still forwarded, flooding where unknown).
    pub refused: u64,
    /// MACs of the network learned, moved and aged out since it was set up
    /// (the metrics exposition's per-network counters).
    #[serde(default)]
    pub learned: u64,
    #[serde(default)]
    pub moved: u64,
    #[serde(default)]
    pub aged: u64,
}

/// The map key. The MAC is kept as a `u64` so hashing is two integer
/// writes rather than a length-prefixed byte slice (measurably faster on
/// the lookup path).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    net: u32,
    mac: u64,
}

impl Key {
    #[inline]
    fn new(net: NetId, mac: MacAddr) -> Key {
        Key {
            net: net.0,
            mac: mac.to_u64(),
        }
    }

    fn net(&self) -> NetId {
        NetId(self.net)
    }

    fn mac(&self) -> MacAddr {
        let b = self.mac.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

#[derive(Debug)]
struct Entry {
    /// [`Dest::encode`]d, or [`Dest::GONE`] once taken out of the map.
    dest: AtomicU64,
    last_seen: AtomicU64,
    kind: EntryKind,
}

impl Entry {
    fn new(dest: Dest, kind: EntryKind, now: Millis) -> Self {
        Entry {
            dest: AtomicU64::new(dest.encode()),
            last_seen: AtomicU64::new(now.0),
            kind,
        }
    }

    /// Where the entry points; `None` once it was removed.
    fn dest(&self) -> Option<Dest> {
        match self.dest.load(Ordering::Relaxed) {
            Dest::GONE => None,
            d => Some(Dest::decode(d)),
        }
    }

    fn last_seen(&self) -> Millis {
        Millis(self.last_seen.load(Ordering::Relaxed))
    }

    fn expired(&self, now: Millis, ageing_ms: u64) -> bool {
        self.kind == EntryKind::Learned
            && ageing_ms != 0
            && now.saturating_sub(self.last_seen()) >= ageing_ms
    }

    /// Marks the entry removed and says which destination it counted
    /// against. Only whoever took the entry out of the map calls this.
    fn claim(&self) -> Option<Dest> {
        match self.dest.swap(Dest::GONE, Ordering::AcqRel) {
            Dest::GONE => None,
            d => Some(Dest::decode(d)),
        }
    }
}

#[derive(Default)]
struct Counters {
    inserted: AtomicU64,
    moved: AtomicU64,
    aged_out: AtomicU64,
    refused_table_full: AtomicU64,
    refused_dest_limit: AtomicU64,
    refused_net_limit: AtomicU64,
    static_conflicts: AtomicU64,
}

/// A network's budget and count.
#[derive(Debug)]
struct NetBudget {
    entries: AtomicUsize,
    max: AtomicUsize,
    refused: AtomicU64,
    learned: AtomicU64,
    moved: AtomicU64,
    aged: AtomicU64,
}

type Map<K, V> = papaya::HashMap<K, V, ahash::RandomState>;

/// A map sized for `capacity` that never resizes below it, keyed with a
/// random per-process hash key.
fn new_map<K, V>(capacity: usize) -> Map<K, V> {
    papaya::HashMap::builder()
        .capacity(capacity)
        .hasher(ahash::RandomState::new())
        .resize_mode(papaya::ResizeMode::Blocking)
        .build()
}

/// The concurrent forwarding database. Share it as `Arc<Fdb>`.
pub struct Fdb {
    cfg: FdbConfig,
    map: Map<Key, Entry>,
    /// Entries per destination, for `max_per_dest`. Written only when an
    /// entry is inserted, moved or removed. A destination's counter is
    /// never removed (ids are reused, so there are few), so a late
    /// decrement never lands on a fresh zero.
    per_dest: Map<Dest, AtomicUsize>,
    /// Entries and budget per network, for `max_per_network`; kept like
    /// `per_dest`.
    per_net: Map<NetId, NetBudget>,
    len: AtomicUsize,
    counters: Counters,
    /// The change feed (`vxswitch monitor`), off unless someone watches.
    watch: watch::Watch,
}

impl fmt::Debug for Fdb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fdb")
            .field("cfg", &self.cfg)
            .field("len", &self.len())
            .finish()
    }
}

/// A pinned read/learn handle: hold one per batch of frames so the epoch
/// guard is entered once per batch, not once per lookup.
pub struct FdbGuard<'a> {
    fdb: &'a Fdb,
    guard: papaya::LocalGuard<'a>,
}

impl Fdb {
    pub fn new(cfg: FdbConfig) -> Fdb {
        Fdb {
            cfg,
            map: new_map(cfg.max_entries),
            per_dest: new_map(64),
            per_net: new_map(16),
            len: AtomicUsize::new(0),
            counters: Counters::default(),
            watch: watch::Watch::default(),
        }
    }

    /// Turns the change feed on or off (off drops what was queued).
    pub fn watch(&self, on: bool) {
        self.watch.set(on);
    }

    /// The next change, in order, while the feed is on.
    pub fn next_change(&self) -> Option<Change> {
        self.watch.take()
    }

    /// Changes lost because the reader fell behind (the feed's queue was
    /// full), since the daemon started.
    pub fn changes_lost(&self) -> u64 {
        self.watch.lost()
    }

    pub fn config(&self) -> FdbConfig {
        self.cfg
    }

    /// Number of entries (learned and static), including expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Enters the map's epoch for a batch of lookups and learns.
    pub fn pin(&self) -> FdbGuard<'_> {
        FdbGuard {
            fdb: self,
            guard: self.map.guard(),
        }
    }

    /// One-off lookup (pins for this call only).
    pub fn lookup(&self, net: NetId, mac: MacAddr, now: Millis) -> Lookup {
        self.pin().lookup(net, mac, now)
    }

    /// One-off learn (pins for this call only).
    pub fn learn(&self, net: NetId, mac: MacAddr, dest: Dest, now: Millis) -> Learned {
        self.pin().learn(net, mac, dest, now)
    }

    /// Sets a network's budget: at most `max` entries (`None`: the
    /// daemon's `max_per_network`), and starts its refusal count afresh.
    /// Entries it holds beyond a lowered budget stay until they age out.
    pub fn set_network_limit(&self, net: NetId, max: Option<usize>) {
        self.with_budget(net, |b| {
            b.max
                .store(max.unwrap_or(self.cfg.max_per_network), Ordering::Relaxed);
            b.refused.store(0, Ordering::Relaxed);
        });
    }

    /// A network's entries, budget and refusals.
    pub fn network_stats(&self, net: NetId) -> NetFdbStats {
        let pinned = self.per_net.pin();
        match pinned.get(&net) {
            Some(b) => NetFdbStats {
                entries: b.entries.load(Ordering::Relaxed),
                max: b.max.load(Ordering::Relaxed),
                refused: b.refused.load(Ordering::Relaxed),
                learned: b.learned.load(Ordering::Relaxed),
                moved: b.moved.load(Ordering::Relaxed),
                aged: b.aged.load(Ordering::Relaxed),
            },
            None => NetFdbStats {
                max: self.cfg.max_per_network,
                ..NetFdbStats::default()
            },
        }
    }

    /// Adds or replaces a static entry.
    pub fn add_static(
        &self,
        net: NetId,
        mac: MacAddr,
        dest: Dest,
        now: Millis,
    ) -> Result<(), FdbError> {
        if !mac.is_valid_source() {
            return Err(FdbError::NotUnicast { mac });
        }
        let key = Key::new(net, mac);
        let guard = self.map.guard();
        match self.map.get(&key, &guard).map(Entry::dest) {
            // Replacing keeps the totals; only a new destination's limit applies.
            Some(old) => {
                if old != Some(dest) && self.dest_count(dest) >= self.cfg.max_per_dest {
                    return Err(FdbError::DestLimit {
                        dest,
                        max: self.cfg.max_per_dest,
                    });
                }
                self.count(net, dest);
            }
            None => self.reserve(net, dest).map_err(|why| match why {
                Refusal::TableFull => FdbError::TableFull {
                    max: self.cfg.max_entries,
                },
                Refusal::DestLimit => FdbError::DestLimit {
                    dest,
                    max: self.cfg.max_per_dest,
                },
                Refusal::NetLimit => FdbError::NetLimit {
                    net,
                    max: self.network_stats(net).max,
                },
            })?,
        }
        // The new entry is counted; whatever it replaced (the entry seen
        // above, or one a learner inserted meanwhile) is uncounted now.
        if let Some(old) = self
            .map
            .insert(key, Entry::new(dest, EntryKind::Static, now), &guard)
        {
            self.release(net, old);
        }
        Ok(())
    }

    /// Removes one entry (learned or static). Returns whether it existed.
    pub fn remove(&self, net: NetId, mac: MacAddr) -> bool {
        let guard = self.map.guard();
        match self.map.remove(&Key::new(net, mac), &guard) {
            Some(e) => self.release(net, e),
            None => false,
        }
    }

    /// Removes every entry the filter selects; returns how many.
    pub fn flush(&self, filter: Filter) -> usize {
        self.remove_where(|k, e| filter.matches(k, e))
    }

    /// Forgets a destination that no longer exists (a removed port or VTEP):
    /// flushes all its entries, static ones included. Several workers may
    /// do this for one port at once: each entry is uncounted once.
    pub fn forget_dest(&self, dest: Dest) -> usize {
        self.flush(Filter {
            dest: Some(dest),
            ..Filter::default()
        })
    }

    /// Removes expired learned entries. Returns how many were removed and
    /// when the next one expires (if any learned entry remains), so the
    /// caller can sleep until then.
    pub fn sweep(&self, now: Millis) -> (usize, Option<Millis>) {
        let watch = &self.watch;
        self.sweep_each(now, |net, mac, dest| {
            watch.note(net, mac, dest, ChangeKind::Aged)
        })
    }

    /// [`Fdb::sweep`], telling `aged` about each entry it removed (the
    /// event stream's "MAC aged": `vxswitch monitor`).
    pub fn sweep_each(
        &self,
        now: Millis,
        mut aged: impl FnMut(NetId, MacAddr, Dest),
    ) -> (usize, Option<Millis>) {
        let ageing = self.cfg.ageing_ms;
        if ageing == 0 {
            return (0, None);
        }
        let mut next: Option<Millis> = None;
        let removed = self.remove_where_each(
            |_, e| {
                if e.expired(now, ageing) {
                    return true;
                }
                if e.kind == EntryKind::Learned {
                    let due = e.last_seen().add_ms(ageing);
                    next = Some(next.map_or(due, |n| n.min(due)));
                }
                false
            },
            |k, dest| {
                self.with_budget(k.net(), |b| b.aged.fetch_add(1, Ordering::Relaxed));
                aged(k.net(), k.mac(), dest);
            },
        );
        self.counters
            .aged_out
            .fetch_add(removed as u64, Ordering::Relaxed);
        (removed, next)
    }

    /// Removes the entries `select` picks, counting only the removals that
    /// happened: each candidate is removed with `remove_if`, which asks
    /// `select` again about the entry it is about to remove.
    fn remove_where(&self, select: impl FnMut(&Key, &Entry) -> bool) -> usize {
        self.remove_where_each(select, |_, _| {})
    }

    /// [`Fdb::remove_where`], telling `removed` the key and destination of
    /// each entry it took out.
    fn remove_where_each(
        &self,
        mut select: impl FnMut(&Key, &Entry) -> bool,
        mut removed_one: impl FnMut(&Key, Dest),
    ) -> usize {
        let guard = self.map.guard();
        let mut removed = 0;
        for (k, e) in self.map.iter(&guard) {
            if !select(k, e) {
                continue;
            }
            if let Ok(Some((_, gone))) = self.map.remove_if(k, |k, e| select(k, e), &guard) {
                if let Some(dest) = gone.claim() {
                    self.unreserve(k.net(), dest);
                    removed_one(k, dest);
                    removed += 1;
                }
            }
        }
        removed
    }

    /// A snapshot of the entries the filter selects, sorted by network and MAC.
    pub fn entries(&self, filter: Filter, now: Millis) -> Vec<FdbEntry> {
        let guard = self.map.guard();
        let mut out: Vec<FdbEntry> = self
            .map
            .iter(&guard)
            .filter(|(k, e)| filter.matches(k, e) && !e.expired(now, self.cfg.ageing_ms))
            .filter_map(|(k, e)| {
                Some(FdbEntry {
                    net: k.net(),
                    mac: k.mac(),
                    dest: e.dest()?,
                    kind: e.kind,
                    age_ms: match e.kind {
                        EntryKind::Static => 0,
                        EntryKind::Learned => now.saturating_sub(e.last_seen()),
                    },
                })
            })
            .collect();
        out.sort_by_key(|e| (e.net, e.mac));
        out
    }

    pub fn stats(&self) -> FdbStats {
        let c = &self.counters;
        FdbStats {
            entries: self.len(),
            inserted: c.inserted.load(Ordering::Relaxed),
            moved: c.moved.load(Ordering::Relaxed),
            aged_out: c.aged_out.load(Ordering::Relaxed),
            refused_table_full: c.refused_table_full.load(Ordering::Relaxed),
            refused_dest_limit: c.refused_dest_limit.load(Ordering::Relaxed),
            static_conflicts: c.static_conflicts.load(Ordering::Relaxed),
            refused_net_limit: c.refused_net_limit.load(Ordering::Relaxed),
        }
    }

    /// Entries currently pointing at `dest`.
    pub fn dest_count(&self, dest: Dest) -> usize {
        self.per_dest
            .pin()
            .get(&dest)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn dest_counter(&self, dest: Dest, f: impl FnOnce(&AtomicUsize)) {
        let pinned = self.per_dest.pin();
        f(pinned.get_or_insert_with(dest, || AtomicUsize::new(0)));
    }

    fn new_budget(&self) -> NetBudget {
        NetBudget {
            entries: AtomicUsize::new(0),
            max: AtomicUsize::new(self.cfg.max_per_network),
            refused: AtomicU64::new(0),
            learned: AtomicU64::new(0),
            moved: AtomicU64::new(0),
            aged: AtomicU64::new(0),
        }
    }

    fn with_budget<T>(&self, net: NetId, f: impl FnOnce(&NetBudget) -> T) -> T {
        let pinned = self.per_net.pin();
        f(pinned.get_or_insert_with(net, || self.new_budget()))
    }

    /// Counts a move in its network's counters; returns `l`.
    #[inline]
    fn per_net_move(&self, net: NetId, l: Learned) -> Learned {
        if let Learned::Moved { .. } = l {
            self.with_budget(net, |b| b.moved.fetch_add(1, Ordering::Relaxed));
        }
        l
    }

    /// Claims room for one entry of `net` at `dest`, or says which limit
    /// refuses it.
    fn reserve(&self, net: NetId, dest: Dest) -> Result<(), Refusal> {
        if self.len.fetch_add(1, Ordering::Relaxed) >= self.cfg.max_entries {
            self.len.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::TableFull);
        }
        let nets = self.per_net.pin();
        let b = nets.get_or_insert_with(net, || self.new_budget());
        if b.entries.fetch_add(1, Ordering::Relaxed) >= b.max.load(Ordering::Relaxed) {
            b.entries.fetch_sub(1, Ordering::Relaxed);
            b.refused.fetch_add(1, Ordering::Relaxed);
            self.len.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::NetLimit);
        }
        let dests = self.per_dest.pin();
        let c = dests.get_or_insert_with(dest, || AtomicUsize::new(0));
        if c.fetch_add(1, Ordering::Relaxed) >= self.cfg.max_per_dest {
            c.fetch_sub(1, Ordering::Relaxed);
            b.entries.fetch_sub(1, Ordering::Relaxed);
            self.len.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::DestLimit);
        }
        Ok(())
    }

    /// Counts one more entry of `net` at `dest`, without a limit (an entry
    /// that replaces another, which [`Fdb::release`] then uncounts).
    fn count(&self, net: NetId, dest: Dest) {
        self.len.fetch_add(1, Ordering::Relaxed);
        self.with_budget(net, |b| b.entries.fetch_add(1, Ordering::Relaxed));
        self.dest_counter(dest, |c| {
            c.fetch_add(1, Ordering::Relaxed);
        });
    }

    /// Gives back what [`Fdb::reserve`] or [`Fdb::count`] took.
    fn unreserve(&self, net: NetId, dest: Dest) {
        self.len.fetch_sub(1, Ordering::Relaxed);
        self.with_budget(net, |b| b.entries.fetch_sub(1, Ordering::Relaxed));
        self.dest_counter(dest, |c| {
            c.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Uncounts an entry of `net` the caller took out of the map (a
    /// `remove` returned it, or an `insert` replaced it). Returns false if
    /// it had been uncounted already, which the rules above rule out.
    fn release(&self, net: NetId, e: &Entry) -> bool {
        match e.claim() {
            Some(dest) => {
                self.unreserve(net, dest);
                true
            }
            None => false,
        }
    }
}

impl FdbGuard<'_> {
    /// Where frames to `(net, mac)` go. Expired entries are misses.
    #[inline]
    pub fn lookup(&self, net: NetId, mac: MacAddr, now: Millis) -> Lookup {
        match self.fdb.map.get(&Key::new(net, mac), &self.guard) {
            Some(e) if !e.expired(now, self.fdb.cfg.ageing_ms) => match e.dest() {
                Some(d) => Lookup::Hit(d),
                None => Lookup::Miss,
            },
            _ => Lookup::Miss,
        }
    }

    /// Records that `mac` was seen as a source behind `dest`. The caller has
    /// already refused multicast and zero sources.
    #[inline]
    pub fn learn(&self, net: NetId, mac: MacAddr, dest: Dest, now: Millis) -> Learned {
        let l = self.learn_quietly(net, mac, dest, now);
        // A refresh, the common case, is one compare; a change one relaxed
        // load more unless someone watches.
        if l != Learned::Refreshed {
            self.fdb.watch.learned(net, mac, dest, l);
        }
        l
    }

    #[inline]
    fn learn_quietly(&self, net: NetId, mac: MacAddr, dest: Dest, now: Millis) -> Learned {
        let fdb = self.fdb;
        let key = Key::new(net, mac);
        if let Some(e) = fdb.map.get(&key, &self.guard) {
            if let Some(l) = Self::refresh(fdb, e, dest, now) {
                return fdb.per_net_move(net, l);
            }
            // Removed under our feet: learn it anew.
        }
        if let Err(why) = fdb.reserve(net, dest) {
            let c = match why {
                Refusal::TableFull => &fdb.counters.refused_table_full,
                Refusal::DestLimit => &fdb.counters.refused_dest_limit,
                Refusal::NetLimit => &fdb.counters.refused_net_limit,
            };
            c.fetch_add(1, Ordering::Relaxed);
            return Learned::Refused(why);
        }
        match fdb
            .map
            .try_insert(key, Entry::new(dest, EntryKind::Learned, now), &self.guard)
        {
            Ok(_) => {
                fdb.counters.inserted.fetch_add(1, Ordering::Relaxed);
                fdb.with_budget(net, |b| b.learned.fetch_add(1, Ordering::Relaxed));
                Learned::Inserted
            }
            Err(occupied) => {
                // Lost a race with another learner: the entry exists now.
                fdb.unreserve(net, dest);
                let l = Self::refresh(fdb, occupied.current, dest, now);
                fdb.per_net_move(net, l.unwrap_or(Learned::Refreshed))
            }
        }
    }

    /// Refreshes (or moves) a known entry; `None` if it was removed
    /// meanwhile.
    #[inline]
    fn refresh(fdb: &Fdb, e: &Entry, dest: Dest, now: Millis) -> Option<Learned> {
        let new = dest.encode();
        let mut cur = e.dest.load(Ordering::Relaxed);
        if cur == Dest::GONE {
            return None;
        }
        if e.kind == EntryKind::Static {
            if cur == new {
                return Some(Learned::Refreshed);
            }
            fdb.counters
                .static_conflicts
                .fetch_add(1, Ordering::Relaxed);
            return Some(Learned::StaticConflict);
        }
        if now.saturating_sub(e.last_seen()) >= REFRESH_GRANULARITY_MS
            || e.expired(now, fdb.cfg.ageing_ms)
        {
            e.last_seen.store(now.0, Ordering::Relaxed);
        }
        if cur == new {
            return Some(Learned::Refreshed);
        }
        // A move: count the new destination first, so that a removal
        // racing the swap never takes a count below zero.
        fdb.dest_counter(dest, |c| {
            c.fetch_add(1, Ordering::Relaxed);
        });
        loop {
            match e
                .dest
                .compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(seen) if seen == Dest::GONE || seen == new => {
                    fdb.dest_counter(dest, |c| {
                        c.fetch_sub(1, Ordering::Relaxed);
                    });
                    return if seen == Dest::GONE {
                        None
                    } else {
                        Some(Learned::Refreshed)
                    };
                }
                Err(seen) => cur = seen,
            }
        }
        let from = Dest::decode(cur);
        fdb.dest_counter(from, |c| {
            c.fetch_sub(1, Ordering::Relaxed);
        });
        e.last_seen.store(now.0, Ordering::Relaxed);
        fdb.counters.moved.fetch_add(1, Ordering::Relaxed);
        Some(Learned::Moved { from })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;

    const NET: NetId = NetId(1);
    const P1: Dest = Dest::Local(PortId(1));
    const P2: Dest = Dest::Local(PortId(2));

    fn mac(n: u32) -> MacAddr {
        let b = n.to_be_bytes();
        MacAddr([0x02, 0x00, b[0], b[1], b[2], b[3]])
    }

    fn small(max_entries: usize, max_per_dest: usize) -> Fdb {
        Fdb::new(FdbConfig {
            ageing_ms: 300_000,
            max_entries,
            max_per_dest,
            max_per_network: max_entries,
        })
    }

    /// What the map holds, counted by walking it (expired entries too):
    /// in total, per destination and per network.
    fn census(fdb: &Fdb) -> (usize, HashMap<Dest, usize>, HashMap<NetId, usize>) {
        let guard = fdb.map.guard();
        let (mut total, mut dests, mut nets) = (0, HashMap::new(), HashMap::new());
        for (k, e) in fdb.map.iter(&guard) {
            total += 1;
            *dests.entry(e.dest().unwrap()).or_insert(0) += 1;
            *nets.entry(k.net()).or_insert(0) += 1;
        }
        (total, dests, nets)
    }

    /// Every count the limits use agrees with the census.
    fn assert_counts_exact(fdb: &Fdb, dests: &[Dest], nets: &[NetId]) {
        let (total, per_dest, per_net) = census(fdb);
        assert_eq!(fdb.len(), total, "len() against the entries in the map");
        for d in dests {
            assert_eq!(
                fdb.dest_count(*d),
                per_dest.get(d).copied().unwrap_or(0),
                "entries counted for {d} against those in the map"
            );
        }
        for n in nets {
            assert_eq!(
                fdb.network_stats(*n).entries,
                per_net.get(n).copied().unwrap_or(0),
                "entries counted for network {n:?} against those in the map"
            );
        }
    }

    #[test]
    fn learn_then_lookup() {
        let fdb = Fdb::new(FdbConfig::default());
        let t = Millis(1000);
        assert_eq!(fdb.lookup(NET, mac(1), t), Lookup::Miss);
        assert_eq!(fdb.learn(NET, mac(1), P1, t), Learned::Inserted);
        assert_eq!(fdb.learn(NET, mac(1), P1, t), Learned::Refreshed);
        assert_eq!(fdb.lookup(NET, mac(1), t), Lookup::Hit(P1));
        // Keyed on the network too.
        assert_eq!(fdb.lookup(NetId(2), mac(1), t), Lookup::Miss);
        assert_eq!(fdb.stats().inserted, 1);
        assert_eq!(fdb.len(), 1);
    }

    #[test]
    fn moves_are_detected_and_counted() {
        let fdb = Fdb::new(FdbConfig::default());
        fdb.learn(NET, mac(1), P1, Millis(1000));
        assert_eq!(
            fdb.learn(NET, mac(1), P2, Millis(1001)),
            Learned::Moved { from: P1 }
        );
        assert_eq!(fdb.lookup(NET, mac(1), Millis(1002)), Lookup::Hit(P2));
        assert_eq!(fdb.stats().moved, 1);
        assert_eq!(fdb.dest_count(P1), 0);
        assert_eq!(fdb.dest_count(P2), 1);
    }

    #[test]
    fn per_network_counters_learn_move_and_age() {
        let fdb = Fdb::new(FdbConfig {
            ageing_ms: 10_000,
            ..FdbConfig::default()
        });
        let other = NetId(7);
        fdb.learn(NET, mac(1), P1, Millis(0));
        fdb.learn(NET, mac(1), P2, Millis(1));
        fdb.learn(other, mac(1), P1, Millis(0));
        let mut aged = Vec::new();
        let (n, _) = fdb.sweep_each(Millis(20_000), |net, m, d| aged.push((net, m, d)));
        assert_eq!(n, 2);
        aged.sort_by_key(|(net, _, _)| net.0);
        assert_eq!(aged, vec![(NET, mac(1), P2), (other, mac(1), P1)]);
        let s = fdb.network_stats(NET);
        assert_eq!((s.learned, s.moved, s.aged, s.entries), (1, 1, 1, 0));
        let s = fdb.network_stats(other);
        assert_eq!((s.learned, s.moved, s.aged), (1, 0, 1));
    }

    #[test]
    fn the_change_feed_tells_learn_move_age_and_refusal_in_order_while_on() {
        let fdb = Fdb::new(FdbConfig {
            ageing_ms: 10_000,
            max_entries: 1,
            max_per_dest: 1,
            max_per_network: 1,
        });
        fdb.learn(NET, mac(9), P1, Millis(0));
        assert_eq!(fdb.next_change(), None, "off: nothing queued");
        fdb.sweep(Millis(20_000));
        fdb.watch(true);
        fdb.learn(NET, mac(1), P1, Millis(0));
        fdb.learn(NET, mac(1), P1, Millis(1));
        fdb.learn(NET, mac(1), P2, Millis(2));
        fdb.learn(NET, mac(2), P1, Millis(3));
        fdb.sweep(Millis(20_000));
        let kinds: Vec<_> = std::iter::from_fn(|| fdb.next_change())
            .map(|c| (c.mac, c.dest, c.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (mac(1), P1, ChangeKind::Learned),
                (mac(1), P2, ChangeKind::Moved { from: P1 }),
                (mac(2), P1, ChangeKind::Refused(Refusal::TableFull)),
                (mac(1), P2, ChangeKind::Aged),
            ]
        );
        // A reader that falls behind loses the newest, counted.
        for i in 0..WATCH_CAPACITY as u32 + 5 {
            fdb.learn(NET, mac(100 + i), P1, Millis(30_000));
        }
        assert_eq!(fdb.changes_lost(), 5);
        fdb.watch(false);
        assert_eq!(fdb.next_change(), None, "off drops the queue");
    }

    #[test]
    fn learned_entries_age_out_static_do_not() {
        let fdb = Fdb::new(FdbConfig {
            ageing_ms: 10_000,
            ..FdbConfig::default()
        });
        fdb.learn(NET, mac(1), P1, Millis(1000));
        fdb.add_static(NET, mac(2), P2, Millis(1000)).unwrap();
        // Refreshed at 6 s: lives until 16 s.
        fdb.learn(NET, mac(1), P1, Millis(6000));
        assert_eq!(fdb.sweep(Millis(15_999)), (0, Some(Millis(16_000))));
        assert_eq!(fdb.lookup(NET, mac(1), Millis(15_999)), Lookup::Hit(P1));
        // Expired: a miss at once, removed by the sweep.
        assert_eq!(fdb.lookup(NET, mac(1), Millis(16_000)), Lookup::Miss);
        assert_eq!(fdb.sweep(Millis(16_000)), (1, None));
        assert_eq!(fdb.lookup(NET, mac(2), Millis(1_000_000)), Lookup::Hit(P2));
        assert_eq!(fdb.stats().aged_out, 1);
        assert_eq!(fdb.len(), 1);
    }

    #[test]
    fn refresh_is_coarse_but_keeps_entries_alive() {
        let fdb = Fdb::new(FdbConfig {
            ageing_ms: 5_000,
            ..FdbConfig::default()
        });
        fdb.learn(NET, mac(1), P1, Millis(1000));
        for t in (1000..20_000).step_by(500) {
            fdb.learn(NET, mac(1), P1, Millis(t));
            assert_eq!(
                fdb.lookup(NET, mac(1), Millis(t)),
                Lookup::Hit(P1),
                "at {t}"
            );
        }
    }

    #[test]
    fn static_entries_do_not_move() {
        let fdb = Fdb::new(FdbConfig::default());
        fdb.add_static(NET, mac(1), P1, Millis(0)).unwrap();
        assert_eq!(
            fdb.learn(NET, mac(1), P2, Millis(5)),
            Learned::StaticConflict
        );
        assert_eq!(fdb.lookup(NET, mac(1), Millis(5)), Lookup::Hit(P1));
        assert_eq!(fdb.stats().static_conflicts, 1);
        assert_eq!(
            fdb.add_static(NET, MacAddr::BROADCAST, P1, Millis(0)),
            Err(FdbError::NotUnicast {
                mac: MacAddr::BROADCAST
            })
        );
    }

    #[test]
    fn total_limit_refuses_and_counts() {
        let fdb = small(4, 100);
        for i in 0..4 {
            assert_eq!(fdb.learn(NET, mac(i), P1, Millis(0)), Learned::Inserted);
        }
        assert_eq!(
            fdb.learn(NET, mac(99), P2, Millis(0)),
            Learned::Refused(Refusal::TableFull)
        );
        assert_eq!(fdb.stats().refused_table_full, 1);
        assert_eq!(fdb.len(), 4);
        assert!(matches!(
            fdb.add_static(NET, mac(98), P2, Millis(0)),
            Err(FdbError::TableFull { max: 4 })
        ));
        // Known MACs still refresh and move when full.
        assert_eq!(
            fdb.learn(NET, mac(0), P2, Millis(1)),
            Learned::Moved { from: P1 }
        );
    }

    #[test]
    fn per_dest_limit_protects_other_ports() {
        let fdb = small(100, 3);
        for i in 0..10 {
            fdb.learn(NET, mac(i), P1, Millis(0));
        }
        assert_eq!(fdb.dest_count(P1), 3);
        assert_eq!(fdb.stats().refused_dest_limit, 7);
        // A flood on P1 does not stop P2 from learning.
        assert_eq!(fdb.learn(NET, mac(500), P2, Millis(0)), Learned::Inserted);
    }

    #[test]
    fn flush_and_forget() {
        let fdb = Fdb::new(FdbConfig::default());
        fdb.learn(NET, mac(1), P1, Millis(0));
        fdb.learn(NET, mac(2), P2, Millis(0));
        fdb.learn(NetId(2), mac(3), P2, Millis(0));
        fdb.add_static(NET, mac(4), P2, Millis(0)).unwrap();
        assert_eq!(
            fdb.flush(Filter {
                net: Some(NET),
                learned_only: true,
                ..Filter::default()
            }),
            2
        );
        assert_eq!(fdb.entries(Filter::default(), Millis(0)).len(), 2);
        assert_eq!(fdb.forget_dest(P2), 2);
        assert!(fdb.is_empty());
        assert_eq!(fdb.dest_count(P2), 0);
    }

    #[test]
    fn entries_report_age_and_kind() {
        let fdb = Fdb::new(FdbConfig::default());
        fdb.learn(NET, mac(2), P1, Millis(1000));
        fdb.add_static(NET, mac(1), Dest::Remote(VtepId(7)), Millis(1000))
            .unwrap();
        let e = fdb.entries(Filter::default(), Millis(3500));
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].mac, e[0].kind, e[0].age_ms, e[0].dest),
            (mac(1), EntryKind::Static, 0, Dest::Remote(VtepId(7)))
        );
        assert_eq!(
            (e[1].mac, e[1].kind, e[1].age_ms),
            (mac(2), EntryKind::Learned, 2500)
        );
    }

    #[test]
    fn concurrent_learners_keep_counts_exact() {
        let fdb = std::sync::Arc::new(small(1000, 600));
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let fdb = fdb.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        fdb.learn(
                            NET,
                            mac(i % 800),
                            Dest::Local(PortId(t)),
                            Millis(u64::from(i)),
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let entries = fdb.entries(Filter::default(), Millis(2000));
        assert_eq!(entries.len(), fdb.len());
        for p in 0..2 {
            let d = Dest::Local(PortId(p));
            assert_eq!(
                entries.iter().filter(|e| e.dest == d).count(),
                fdb.dest_count(d)
            );
        }
    }

    /// Workers learning, moving, flushing, sweeping and forgetting ports at
    /// once (as each worker's detach calls `forget_dest` for the same port):
    /// afterwards every count equals what the map holds. Counting removals
    /// inside papaya's `retain` closure wrapped `len()` below zero here.
    #[test]
    fn concurrent_learn_move_flush_sweep_and_forget_keep_counts_exact() {
        let fdb = Arc::new(Fdb::new(FdbConfig {
            ageing_ms: 40,
            max_entries: 100_000,
            max_per_dest: 100_000,
            max_per_network: 100_000,
        }));
        let clock = Arc::new(AtomicU64::new(1_000));
        let stop = Arc::new(AtomicBool::new(false));
        let ports: Vec<Dest> = (0..4).map(|p| Dest::Local(PortId(p))).collect();
        let nets = [NetId(0), NetId(1)];
        let mut threads = Vec::new();
        for t in 0..3u32 {
            let (fdb, clock, stop) = (fdb.clone(), clock.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let now = Millis(clock.load(Ordering::Relaxed));
                    // 64 MACs in two networks, each seen on ports that
                    // change, so learns insert, refresh and move.
                    let port = Dest::Local(PortId((i / 5 + t) % 4));
                    fdb.learn(NetId(i % 2), mac(i % 64), port, now);
                    i = i.wrapping_add(7);
                }
            }));
        }
        // Two "workers" detaching the same ports at the same time.
        for t in 0..2u32 {
            let (fdb, stop) = (fdb.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    fdb.forget_dest(Dest::Local(PortId((i + t) % 4)));
                    if i % 5 == 0 {
                        fdb.flush(Filter {
                            net: Some(NetId(i % 2)),
                            learned_only: true,
                            ..Filter::default()
                        });
                    }
                    i += 1;
                }
            }));
        }
        {
            // The ager, with a clock that runs fast.
            let (fdb, clock, stop) = (fdb.clone(), clock.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let now = clock.fetch_add(7, Ordering::Relaxed) + 7;
                    fdb.sweep(Millis(now));
                }
            }));
        }
        {
            // The operator: static entries replacing learned ones, and deletes.
            let (fdb, clock, stop) = (fdb.clone(), clock.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let now = Millis(clock.load(Ordering::Relaxed));
                    let m = mac(i % 64);
                    let _ = fdb.add_static(NetId(i % 2), m, Dest::Local(PortId(i % 4)), now);
                    fdb.remove(NetId((i + 1) % 2), mac((i * 3) % 64));
                    i += 1;
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            // Not settled while the threads run, but never wrapped.
            assert!(fdb.len() < 1_000, "len() wrapped: {}", fdb.len());
        }
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        assert_counts_exact(&fdb, &ports, &nets);
        // And the table still learns: a port can reach its limit again.
        for p in &ports {
            fdb.forget_dest(*p);
        }
        assert_counts_exact(&fdb, &ports, &nets);
        fdb.flush(Filter::default());
        assert!(fdb.is_empty(), "{} entries left", fdb.len());
        for p in &ports {
            assert_eq!(fdb.dest_count(*p), 0);
        }
    }

    #[test]
    fn a_network_budget_leaves_room_for_the_others() {
        let fdb = Fdb::new(FdbConfig {
            max_entries: 100,
            max_per_network: 10,
            ..FdbConfig::default()
        });
        let (red, blue) = (NetId(0), NetId(1));
        for i in 0..50 {
            fdb.learn(red, mac(i), Dest::Local(PortId(i % 5)), Millis(0));
        }
        assert_eq!(fdb.network_stats(red).entries, 10);
        assert_eq!(fdb.network_stats(red).refused, 40);
        assert_eq!(fdb.stats().refused_net_limit, 40);
        assert_eq!(
            fdb.learn(red, mac(99), P1, Millis(0)),
            Learned::Refused(Refusal::NetLimit)
        );
        // Blue still learns.
        assert_eq!(fdb.learn(blue, mac(1), P2, Millis(0)), Learned::Inserted);
        // A network's own budget.
        fdb.set_network_limit(blue, Some(2));
        fdb.learn(blue, mac(2), P2, Millis(0));
        assert_eq!(
            fdb.learn(blue, mac(3), P2, Millis(0)),
            Learned::Refused(Refusal::NetLimit)
        );
        assert_eq!(
            fdb.network_stats(blue),
            NetFdbStats {
                entries: 2,
                max: 2,
                refused: 1,
                learned: 2,
                moved: 0,
                aged: 0,
            }
        );
        assert!(matches!(
            fdb.add_static(blue, mac(4), P2, Millis(0)),
            Err(FdbError::NetLimit { max: 2, .. })
        ));
        // Flushing makes room again.
        fdb.flush(Filter {
            net: Some(red),
            ..Filter::default()
        });
        assert_eq!(fdb.learn(red, mac(99), P1, Millis(0)), Learned::Inserted);
        assert_counts_exact(&fdb, &[P1, P2], &[red, blue]);
    }

    #[test]
    fn dest_encoding_round_trips() {
        for d in [
            P1,
            Dest::Local(PortId(u32::MAX)),
            Dest::Remote(VtepId(0)),
            Dest::Remote(VtepId(u32::MAX)),
        ] {
            assert_eq!(Dest::decode(d.encode()), d);
        }
    }
}
