//! Port mirroring (SPAN): the frames a port receives and is sent, copied
//! to a monitoring port, written there like any other egress (counted on
//! that port, never a drop on the source).
//!
//! The table is process-wide and tiny: a mirrored port is known by its
//! counters' address (see [`super::capture::key`]), the monitoring port by
//! its id and counters' address, so a worker can check that the port it
//! finds under the id is still that one. The dataplane's cost while no
//! mirror exists is one relaxed load ([`on`]).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::capture::key;
use super::pcapng::Dir;
use crate::metrics::PortStats;

/// Mirrors at most (mirrored ports).
pub const MAX_MIRRORS: usize = 16;

struct Entry {
    src: AtomicUsize,
    dst_key: AtomicUsize,
    dst_port: AtomicU32,
    /// Bit 0: in, bit 1: out; 0: free.
    dirs: AtomicU8,
}

static ON: AtomicBool = AtomicBool::new(false);
static TABLE: [Entry; MAX_MIRRORS] = [const {
    Entry {
        src: AtomicUsize::new(0),
        dst_key: AtomicUsize::new(0),
        dst_port: AtomicU32::new(0),
        dirs: AtomicU8::new(0),
    }
}; MAX_MIRRORS];
static ADMIN: Mutex<()> = Mutex::new(());

/// Whether any mirror exists: the dataplane's guard.
#[inline(always)]
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Where copies of `src`'s frames in `dir` go: the monitoring port's id
/// and counters' address.
pub fn target(src: &PortStats, dir: Dir) -> Option<(u32, usize)> {
    let (k, bit) = (
        key(src),
        match dir {
            Dir::In => 1,
            Dir::Out => 2,
        },
    );
    TABLE.iter().find_map(|e| {
        (e.dirs.load(Ordering::Acquire) & bit != 0 && e.src.load(Ordering::Relaxed) == k).then(
            || {
                (
                    e.dst_port.load(Ordering::Relaxed),
                    e.dst_key.load(Ordering::Relaxed),
                )
            },
        )
    })
}

/// Mirrors `src` to the port `dst_port` (whose counters are `dst`) in
/// the directions `dirs` (1 in, 2 out, 3 both); replaces a mirror of the
/// same source. False when the table is full.
pub fn set(src: &PortStats, dst_port: u32, dst: &PortStats, dirs: u8) -> bool {
    let _admin = ADMIN.lock().unwrap_or_else(|e| e.into_inner());
    remove_locked(key(src));
    let Some(e) = TABLE.iter().find(|e| e.dirs.load(Ordering::Acquire) == 0) else {
        return false;
    };
    e.src.store(key(src), Ordering::Relaxed);
    e.dst_key.store(key(dst), Ordering::Relaxed);
    e.dst_port.store(dst_port, Ordering::Relaxed);
    e.dirs.store(dirs & 3, Ordering::Release);
    ON.store(true, Ordering::Release);
    true
}

/// Stops mirroring `src`.
pub fn remove(src: &PortStats) {
    remove_key(key(src));
}

/// Stops mirroring the port whose counters' address is `k` (the port may
/// be gone already).
pub fn remove_key(k: usize) {
    if k == 0 {
        return;
    }
    let _admin = ADMIN.lock().unwrap_or_else(|e| e.into_inner());
    remove_locked(k);
}

fn remove_locked(k: usize) {
    for e in &TABLE {
        if e.src.load(Ordering::Relaxed) == k {
            e.dirs.store(0, Ordering::Release);
            e.src.store(0, Ordering::Relaxed);
        }
    }
    let any = TABLE.iter().any(|e| e.dirs.load(Ordering::Acquire) != 0);
    ON.store(any, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_find_replace_and_remove() {
        let (a, b, c) = (
            PortStats::default(),
            PortStats::default(),
            PortStats::default(),
        );
        assert!(set(&a, 7, &b, 1));
        assert!(on());
        assert_eq!(target(&a, Dir::In), Some((7, key(&b))));
        assert_eq!(target(&a, Dir::Out), None);
        assert_eq!(target(&b, Dir::In), None);
        assert!(set(&a, 8, &c, 3));
        assert_eq!(target(&a, Dir::Out), Some((8, key(&c))));
        remove(&a);
        assert_eq!(target(&a, Dir::In), None);
    }
}
