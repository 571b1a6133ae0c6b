//! Per-flow sequence accounting on the receiving side: which sequence
//! numbers arrived, in what order, and which twice.
//!
//! A flow remembers the highest sequence number seen and a bitmap of the
//! [`WINDOW`] numbers below it. A frame above the highest is in order (or
//! jumps a gap, whose frames count as *missing* until they show up); a
//! frame below it is either *late* (reordered: it fills a gap) or a
//! *duplicate* (its bit is already set). Terms as in RFC 4737: a reordered
//! frame is one whose sequence number is smaller than that of a frame that
//! arrived before it.
//!
//! Deliberate limit: a frame more than [`WINDOW`] behind the highest can no
//! longer be told from a duplicate; it is counted as late (reordered) and as
//! filling a gap, and separately as `too_late` so the report can say so.
//! Memory per flow is fixed (the bitmap), whatever the sequence numbers.

/// How far behind the highest sequence number a frame can still be told
/// apart from a duplicate.
pub const WINDOW: u64 = 4096;
const WORDS: usize = (WINDOW / 64) as usize;

/// What one arrival was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The next number after the highest seen (or the first frame, seq 0).
    InOrder,
    /// Above the highest seen, skipping this many numbers.
    Gap(u64),
    /// Below the highest seen, not seen before: reordered.
    Late,
    /// Seen before.
    Duplicate,
}

/// Counts over one flow, or summed over many.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SeqCounts {
    /// Distinct sequence numbers received.
    pub unique: u64,
    /// Arrivals of a number already received.
    pub duplicates: u64,
    /// Arrivals below the highest number seen before them (not duplicates).
    pub reordered: u64,
    /// Of `reordered`, those too far behind to check for duplicates.
    pub too_late: u64,
    /// Numbers below the highest seen that have not arrived (yet): loss
    /// inside the sequence. Loss after a flow's last arrival is only known
    /// from the sender's total (the END marker).
    pub missing: u64,
}

impl SeqCounts {
    pub fn add(&mut self, o: &SeqCounts) {
        self.unique += o.unique;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.too_late += o.too_late;
        self.missing += o.missing;
    }
}

/// The receive state of one flow.
#[derive(Clone, Debug)]
pub struct FlowSeq {
    /// Highest sequence number seen; `None` before the first frame.
    highest: Option<u64>,
    /// Bit `s % WINDOW` is set when `s` (within WINDOW below `highest`,
    /// or `highest` itself) has arrived.
    seen: [u64; WORDS],
    counts: SeqCounts,
}

impl Default for FlowSeq {
    fn default() -> Self {
        Self::new()
    }
}

impl FlowSeq {
    pub const fn new() -> FlowSeq {
        FlowSeq {
            highest: None,
            seen: [0; WORDS],
            counts: SeqCounts {
                unique: 0,
                duplicates: 0,
                reordered: 0,
                too_late: 0,
                missing: 0,
            },
        }
    }

    pub fn counts(&self) -> &SeqCounts {
        &self.counts
    }

    /// The highest sequence number seen.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        // i < WINDOW, so i / 64 < WORDS.
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn set(&mut self, seq: u64) {
        let (w, m) = Self::bit(seq);
        self.seen[w] |= m;
    }

    fn clear(&mut self, seq: u64) {
        let (w, m) = Self::bit(seq);
        self.seen[w] &= !m;
    }

    fn is_set(&self, seq: u64) -> bool {
        let (w, m) = Self::bit(seq);
        self.seen[w] & m != 0
    }

    /// Accounts for the arrival of `seq`.
    pub fn record(&mut self, seq: u64) -> Arrival {
        let c = &mut self.counts;
        let Some(high) = self.highest else {
            // Numbers start at 0: anything before the first arrival is missing.
            c.unique = 1;
            c.missing = seq;
            self.highest = Some(seq);
            self.seen = [0; WORDS];
            self.set(seq);
            return if seq == 0 {
                Arrival::InOrder
            } else {
                Arrival::Gap(seq)
            };
        };
        if seq > high {
            let gap = seq - high - 1;
            c.unique += 1;
            c.missing += gap;
            // The numbers high+1..seq slide into the window unseen.
            if seq - high >= WINDOW {
                self.seen = [0; WORDS];
            } else {
                for s in high + 1..seq {
                    self.clear(s);
                }
            }
            self.set(seq);
            self.highest = Some(seq);
            return if gap == 0 {
                Arrival::InOrder
            } else {
                Arrival::Gap(gap)
            };
        }
        if high - seq >= WINDOW {
            c.unique += 1;
            c.reordered += 1;
            c.too_late += 1;
            c.missing = c.missing.saturating_sub(1);
            return Arrival::Late;
        }
        if self.is_set(seq) {
            self.counts.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.set(seq);
        let c = &mut self.counts;
        c.unique += 1;
        c.reordered += 1;
        c.missing = c.missing.saturating_sub(1);
        Arrival::Late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[u64]) -> (Vec<Arrival>, SeqCounts) {
        let mut f = FlowSeq::new();
        let a = seqs.iter().map(|&s| f.record(s)).collect();
        (a, *f.counts())
    }

    #[test]
    fn in_order_counts_nothing_else() {
        let seqs: Vec<u64> = (0..10_000).collect();
        let (a, c) = run(&seqs);
        assert!(a.iter().all(|&x| x == Arrival::InOrder));
        assert_eq!(
            c,
            SeqCounts {
                unique: 10_000,
                ..SeqCounts::default()
            }
        );
    }

    #[test]
    fn a_gap_is_missing_until_filled_late() {
        let (a, c) = run(&[0, 1, 4, 5]);
        assert_eq!(a[2], Arrival::Gap(2));
        assert_eq!((c.unique, c.missing, c.reordered), (4, 2, 0));
        let (a, c) = run(&[0, 1, 4, 2, 5, 3]);
        assert_eq!(a[3], Arrival::Late);
        assert_eq!(a[5], Arrival::Late);
        assert_eq!(
            (c.unique, c.missing, c.reordered, c.duplicates),
            (6, 0, 2, 0)
        );
    }

    #[test]
    fn first_frame_above_zero_means_the_earlier_ones_are_missing() {
        let (a, c) = run(&[3, 4]);
        assert_eq!(a[0], Arrival::Gap(3));
        assert_eq!((c.unique, c.missing), (2, 3));
    }

    #[test]
    fn duplicates_in_and_out_of_order() {
        let (a, c) = run(&[0, 1, 1, 2, 0, 3]);
        assert_eq!(a[2], Arrival::Duplicate);
        assert_eq!(a[4], Arrival::Duplicate);
        assert_eq!(
            (c.unique, c.duplicates, c.reordered, c.missing),
            (4, 2, 0, 0)
        );
    }

    #[test]
    fn window_slides_and_forgets_old_numbers() {
        // Seq 1 is skipped, then the window moves far past it.
        let mut f = FlowSeq::new();
        f.record(0);
        f.record(2);
        assert_eq!(f.counts().missing, 1);
        for s in 3..WINDOW + 10 {
            assert_eq!(f.record(s), Arrival::InOrder);
        }
        // A duplicate inside the window is still recognised ...
        assert_eq!(f.record(WINDOW), Arrival::Duplicate);
        // ... one beyond it can only be counted as late.
        assert_eq!(f.record(1), Arrival::Late);
        let c = *f.counts();
        assert_eq!((c.missing, c.reordered, c.too_late), (0, 1, 1));
        // A jump larger than the window clears it: the numbers in between
        // are missing, not "seen".
        let h = f.highest().unwrap();
        assert_eq!(f.record(h + 2 * WINDOW), Arrival::Gap(2 * WINDOW - 1));
        assert_eq!(f.record(h + 2 * WINDOW - 1), Arrival::Late);
        assert_eq!(f.record(h + 2 * WINDOW - 1), Arrival::Duplicate);
        assert_eq!(f.counts().missing, 2 * WINDOW - 2);
    }

    #[test]
    fn reused_bits_do_not_fake_duplicates() {
        // After 0..=WINDOW every bit is set. Jumping to WINDOW + 10 skips
        // WINDOW+1..WINDOW+9, whose bits are those of 1..9: they must be
        // cleared, or the late arrivals below would look like duplicates.
        let mut f = FlowSeq::new();
        for s in 0..=WINDOW {
            f.record(s);
        }
        assert_eq!(f.record(WINDOW + 10), Arrival::Gap(9));
        assert_eq!(f.record(WINDOW + 5), Arrival::Late);
        assert_eq!(f.record(WINDOW + 5), Arrival::Duplicate);
        assert_eq!(f.counts().missing, 8);
    }

    #[test]
    fn counts_add_up() {
        let mut a = SeqCounts {
            unique: 1,
            duplicates: 2,
            reordered: 3,
            too_late: 4,
            missing: 5,
        };
        a.add(&a.clone());
        assert_eq!(
            a,
            SeqCounts {
                unique: 2,
                duplicates: 4,
                reordered: 6,
                too_late: 8,
                missing: 10,
            }
        );
    }
}
