//! The FDB's change feed, for `vxswitch monitor`: MACs learned, moved,
//! aged out and refused, in the order they happened, while someone
//! watches.
//!
//! The workers learn on the hot path, so the feed costs them nothing
//! unless it is on and the learn changed something: a refresh (the
//! common case) is a compare, a change with nobody watching one relaxed
//! load more. Changes go into a bounded lock-free queue
//! (`crossbeam_channel::bounded`, an array); when the reader falls behind,
//! the newest changes are lost and counted, never waited for.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::{Dest, Learned, NetId, Refusal};
use crate::wire::MacAddr;

/// Changes held for the reader at most; more are lost (counted).
pub const WATCH_CAPACITY: usize = 4096;

/// What happened to a MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Learned,
    /// Seen behind another destination than before.
    Moved {
        from: Dest,
    },
    /// Not seen for the ageing time: removed by the sweep.
    Aged,
    /// Not learned: a limit refused it (the frame was still forwarded).
    Refused(Refusal),
}

/// One change of the table: `mac` of `net` at `dest` (where it was
/// learned, moved to, aged from, or would have been learned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub net: NetId,
    pub mac: MacAddr,
    pub dest: Dest,
    pub kind: ChangeKind,
}

pub(super) struct Watch {
    on: AtomicBool,
    tx: Sender<Change>,
    rx: Receiver<Change>,
    lost: AtomicU64,
}

impl Default for Watch {
    fn default() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(WATCH_CAPACITY);
        Watch {
            on: AtomicBool::new(false),
            tx,
            rx,
            lost: AtomicU64::new(0),
        }
    }
}

impl Watch {
    pub(super) fn set(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
        if !on {
            while self.rx.try_recv().is_ok() {}
        }
    }

    #[inline]
    pub(super) fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Queues a change if someone watches; never blocks.
    #[inline]
    pub(super) fn note(&self, net: NetId, mac: MacAddr, dest: Dest, kind: ChangeKind) {
        if !self.on() {
            return;
        }
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Change {
            net,
            mac,
            dest,
            kind,
        }) {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The change a learn made, if it made one worth telling.
    #[inline]
    pub(super) fn learned(&self, net: NetId, mac: MacAddr, dest: Dest, l: Learned) {
        let kind = match l {
            Learned::Inserted => ChangeKind::Learned,
            Learned::Moved { from } => ChangeKind::Moved { from },
            Learned::Refused(why) => ChangeKind::Refused(why),
            _ => return,
        };
        self.note(net, mac, dest, kind);
    }

    pub(super) fn take(&self) -> Option<Change> {
        self.rx.try_recv().ok()
    }

    pub(super) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}
