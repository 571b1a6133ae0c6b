//! Small VXLAN datagrams waiting to go out together: pure run-building, no
//! sockets.
//!
//! During a port's turn, each small datagram for the tunnel is appended to a
//! [`TxBatch`]. Consecutive datagrams to the same VTEP through the same
//! socket, all of one size (the last may be shorter, which closes the run),
//! form one [`Run`]: one message, with `UDP_SEGMENT` when it holds several
//! datagrams. At the end of the turn (or when the batch is full)
//! `tx` sends all runs through one socket in one `sendmmsg`, in
//! order, so a flow stays in order. The [`Limits`] are the kernel's:
//! segments and bytes per `UDP_SEGMENT` message, messages per `sendmmsg`.

use crate::fdb::VtepId;
use crate::sys;

/// Where a run goes: a VTEP, and the index (as
/// [`Sockets::get`](super::Sockets::get) takes it) of the socket it leaves
/// through.
pub type RunDest = (VtepId, usize);

/// One message of a [`TxBatch`]: `count` datagrams of `stride` bytes (the
/// last may be shorter) laid end to end at `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub dest: RunDest,
    pub start: usize,
    pub len: usize,
    /// Size of each datagram (the last may be shorter, which closes the run).
    pub stride: usize,
    pub count: usize,
    closed: bool,
}

/// How much a [`TxBatch`] may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Datagrams per run (`UDP_MAX_SEGMENTS`).
    pub run_datagrams: usize,
    /// Bytes per run (one UDP send).
    pub run_bytes: usize,
    /// Runs per batch (messages per `sendmmsg`).
    pub runs: usize,
    /// Bytes of the whole batch; a datagram larger than this never fits.
    pub bytes: usize,
}

impl Default for Limits {
    /// The kernel's limits, and room for a few full runs.
    fn default() -> Limits {
        Limits {
            run_datagrams: sys::udp::GSO_MAX_SEGMENTS,
            run_bytes: sys::udp::GSO_MAX_BYTES,
            runs: sys::udp::MAX_MESSAGES,
            bytes: 4 * sys::udp::GSO_MAX_BYTES,
        }
    }
}

/// The batch has no room for another run: send it, then push again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// Datagrams laid end to end, grouped in [`Run`]s; allocated once.
#[derive(Debug)]
pub struct TxBatch {
    buf: Box<[u8]>,
    len: usize,
    runs: Vec<Run>,
    limits: Limits,
}

impl Default for TxBatch {
    fn default() -> Self {
        TxBatch::new(Limits::default())
    }
}

impl TxBatch {
    pub fn new(limits: Limits) -> TxBatch {
        TxBatch {
            buf: vec![0u8; limits.bytes].into_boxed_slice(),
            len: 0,
            runs: Vec::with_capacity(limits.runs),
            limits,
        }
    }

    /// Appends one datagram for `dest`. With `merge` (the kernel takes
    /// `UDP_SEGMENT`) it joins the last run when that run goes to the same
    /// place, is still open, has room and its datagrams are at least as
    /// long; otherwise it starts a run. Returns [`Full`], changing nothing,
    /// when a run cannot be started: the caller sends the batch first.
    #[inline(always)]
    pub fn push(&mut self, dest: RunDest, datagram: &[u8], merge: bool) -> Result<(), Full> {
        let n = datagram.len();
        let lim = &self.limits;
        let fits = self.len + n <= self.buf.len();
        let joins = fits
            && merge
            && self.runs.last().is_some_and(|r| {
                r.dest == dest
                    && !r.closed
                    && n <= r.stride
                    && r.count < lim.run_datagrams
                    && r.len + n <= lim.run_bytes
            });
        if !joins {
            if self.runs.len() >= lim.runs || !fits {
                return Err(Full);
            }
            self.runs.push(Run {
                dest,
                start: self.len,
                len: 0,
                stride: n,
                count: 0,
                closed: false,
            });
        }
        self.buf[self.len..self.len + n].copy_from_slice(datagram);
        self.len += n;
        if let Some(run) = self.runs.last_mut() {
            run.len += n;
            run.count += 1;
            // A shorter datagram can only be a run's last.
            run.closed = n < run.stride;
        }
        Ok(())
    }

    /// The runs, in the order their first datagram was pushed.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// The datagrams of a run, end to end.
    pub fn data(&self, r: &Run) -> &[u8] {
        &self.buf[r.start..r.start + r.len]
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Forgets everything (after sending).
    pub fn clear(&mut self) {
        self.runs.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: RunDest = (VtepId(1), 0);
    const B: RunDest = (VtepId(2), 0);

    fn small() -> TxBatch {
        TxBatch::new(Limits {
            run_datagrams: 4,
            run_bytes: 1000,
            runs: 3,
            bytes: 2000,
        })
    }

    /// (dest, stride, count, len) of each run.
    fn shape(b: &TxBatch) -> Vec<(RunDest, usize, usize, usize)> {
        b.runs()
            .iter()
            .map(|r| (r.dest, r.stride, r.count, r.len))
            .collect()
    }

    fn d(len: usize, tag: u8) -> Vec<u8> {
        vec![tag; len]
    }

    #[test]
    fn same_size_datagrams_to_one_place_form_one_run() {
        let mut b = small();
        for i in 0..3 {
            b.push(A, &d(100, i), true).unwrap();
        }
        assert_eq!(shape(&b), vec![(A, 100, 3, 300)]);
        let r = b.runs()[0];
        assert_eq!(b.data(&r), [d(100, 0), d(100, 1), d(100, 2)].concat());
    }

    #[test]
    fn a_shorter_datagram_closes_the_run_and_a_longer_one_starts_another() {
        let mut b = small();
        b.push(A, &d(100, 0), true).unwrap();
        b.push(A, &d(60, 1), true).unwrap();
        // Closed by the short one: even a datagram of the same size starts anew.
        b.push(A, &d(60, 2), true).unwrap();
        b.push(A, &d(80, 3), true).unwrap();
        assert_eq!(
            shape(&b),
            vec![(A, 100, 2, 160), (A, 60, 1, 60), (A, 80, 1, 80)]
        );
    }

    #[test]
    fn another_destination_or_no_merging_starts_a_run() {
        let mut b = small();
        b.push(A, &d(100, 0), true).unwrap();
        b.push(B, &d(100, 1), true).unwrap();
        b.push(B, &d(100, 2), false).unwrap();
        assert_eq!(
            shape(&b),
            vec![(A, 100, 1, 100), (B, 100, 1, 100), (B, 100, 1, 100)]
        );
    }

    #[test]
    fn a_run_ends_at_its_datagram_and_byte_limits() {
        let mut b = small();
        for i in 0..5 {
            b.push(A, &d(10, i), true).unwrap();
        }
        // Four datagrams per run at most.
        assert_eq!(shape(&b), vec![(A, 10, 4, 40), (A, 10, 1, 10)]);
        let mut b = small();
        for i in 0..3 {
            b.push(A, &d(400, i), true).unwrap();
        }
        // 1000 bytes per run at most.
        assert_eq!(shape(&b), vec![(A, 400, 2, 800), (A, 400, 1, 400)]);
    }

    #[test]
    fn a_full_batch_refuses_a_new_run_and_changes_nothing() {
        let mut b = small();
        for dest in [A, B, A] {
            b.push(dest, &d(10, 0), true).unwrap();
        }
        // Three runs at most; joining the last one still works.
        assert_eq!(b.push(B, &d(10, 1), true), Err(Full));
        b.push(A, &d(10, 2), true).unwrap();
        assert_eq!(
            shape(&b),
            vec![(A, 10, 1, 10), (B, 10, 1, 10), (A, 10, 2, 20)]
        );
        b.clear();
        assert!(b.is_empty());
        // 2000 bytes in all: the third 900-byte datagram does not fit.
        b.push(A, &d(900, 0), false).unwrap();
        b.push(A, &d(900, 1), false).unwrap();
        assert_eq!(b.push(A, &d(900, 2), true), Err(Full));
        assert_eq!(b.push(A, &d(900, 2), false), Err(Full));
        assert_eq!(shape(&b), vec![(A, 900, 1, 900), (A, 900, 1, 900)]);
    }

    #[test]
    fn order_is_kept_across_runs() {
        let mut b = small();
        let sent = [(A, d(50, 1)), (B, d(50, 2)), (B, d(50, 3)), (A, d(20, 4))];
        for (dest, data) in &sent {
            b.push(*dest, data, true).unwrap();
        }
        let out: Vec<u8> = b.runs().iter().flat_map(|r| b.data(r).to_vec()).collect();
        let want: Vec<u8> = sent.iter().flat_map(|(_, v)| v.clone()).collect();
        assert_eq!(out, want);
        assert_eq!(
            shape(&b),
            vec![(A, 50, 1, 50), (B, 50, 2, 100), (A, 20, 1, 20)]
        );
    }

    #[test]
    fn default_limits_are_the_kernels() {
        let mut b = TxBatch::default();
        for i in 0..65 {
            b.push(A, &d(100, i as u8), true).unwrap();
        }
        assert_eq!(
            shape(&b),
            vec![(A, 100, 64, 6400), (A, 100, 1, 100)],
            "64 segments per UDP_SEGMENT send"
        );
    }
}
