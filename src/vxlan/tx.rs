//! A worker's end of the tunnel ([`Tunnel`]: its sockets, its batch of
//! small datagrams) and the sending half: `sendto`, `UDP_SEGMENT` and
//! `sendmmsg`, with every outcome counted in one place
//! ([`Tunnel::count_sent`], [`Tunnel::count_refused`]) on the VTEP and on
//! the socket totals.
//!
//! The switch hands over finished datagrams (VXLAN header and inner frame):
//! small ones one at a time through [`Tunnel::push`], which batches them
//! ([`super::batch`]) until [`Tunnel::flush`]; the segments of a super-frame
//! as one train through [`Tunnel::send_train`]. The kernel's `UDP_SEGMENT`
//! is used until it refuses once (no UDP GSO on this kernel or route), after
//! which every datagram goes in its own send.

use std::cell::Cell;
use std::io;
use std::sync::Arc;

use super::batch::{Run, RunDest, TxBatch};
use super::vteps::{Vtep, VtepTable};
use super::{Sockets, VxlanStats};
use crate::metrics::DropReason;
use crate::sys;
use crate::wire::vxlan::HEADER_LEN as VXLAN_HEADER_LEN;

/// The VXLAN sockets of one worker and what it keeps about them.
#[derive(Debug)]
pub(crate) struct Tunnel {
    /// `None` until a network with a VNI is set up.
    pub(super) sockets: Option<Sockets>,
    pub(super) stats: Arc<VxlanStats>,
    /// The kernel takes `UDP_SEGMENT` sends; cleared at the first refusal.
    udp_gso: Cell<bool>,
    /// Small datagrams sent together at the end of a port's turn.
    batch: TxBatch,
    /// Last kernel drop count seen per socket (`family * 1024 + index`).
    pub(super) sock_drops: Vec<u32>,
}

impl Tunnel {
    /// A tunnel without sockets yet, counting into `stats`.
    pub(crate) fn new(stats: Arc<VxlanStats>) -> Tunnel {
        Tunnel {
            sockets: None,
            stats,
            udp_gso: Cell::new(true),
            batch: TxBatch::default(),
            sock_drops: Vec::new(),
        }
    }

    /// Takes the sockets (registered with the worker's poll by the caller).
    pub(crate) fn open(&mut self, sockets: Sockets) {
        self.sockets = Some(sockets);
    }

    pub(crate) fn stats(&self) -> &VxlanStats {
        &self.stats
    }

    /// The index of the socket that carries the flow with this hash to a
    /// VTEP of this address family; `None` without sockets of that family.
    #[inline]
    pub(crate) fn sender_index(&self, ipv6: bool, flow: u32) -> Option<usize> {
        let family = self.sockets.as_ref()?.family(ipv6)?;
        Some(family.sender_index(flow))
    }

    /// Queues one small datagram (VXLAN header and frame) for the VTEP and
    /// socket `to`; it leaves at the next [`Tunnel::flush`], or now if the
    /// batch is full.
    #[inline(always)]
    pub(crate) fn push(&mut self, vteps: &VtepTable, to: RunDest, datagram: &[u8]) {
        if self.batch.push(to, datagram, self.udp_gso.get()).is_err() {
            self.push_after_flush(vteps, to, datagram);
        }
    }

    /// [`Tunnel::push`] when the batch is full: it is sent first.
    #[cold]
    fn push_after_flush(&mut self, vteps: &VtepTable, to: RunDest, datagram: &[u8]) {
        self.flush(vteps);
        if self.batch.push(to, datagram, self.udp_gso.get()).is_err() {
            // Larger than a whole batch: it goes alone.
            if let (Some(vtep), Some(sock)) = (vteps.get(to.0), self.run_socket(vteps, to)) {
                self.send_one(vtep, sock, datagram);
            }
        }
    }

    /// Sends a train of datagrams of `stride` bytes laid end to end (the
    /// last may be shorter) to one VTEP through socket `index`, with as few
    /// `UDP_SEGMENT` sends as the kernel's limits allow. The caller flushed
    /// the batch first, so a flow stays in order.
    pub(crate) fn send_train(&self, vtep: &Vtep, index: usize, datagrams: &[u8], stride: usize) {
        let Some(sock) = self
            .sockets
            .as_ref()
            .and_then(|s| s.get(vtep.addr.is_ipv6(), index))
        else {
            return;
        };
        if datagrams.len() > stride && self.udp_gso.get() {
            self.send_segmented(vtep, sock, datagrams, stride);
        } else {
            for d in datagrams.chunks(stride) {
                self.send_one(vtep, sock, d);
            }
        }
    }

    /// Sends what the batch holds: the runs through one socket in one
    /// `sendmmsg` (in order, so a flow stays in order), counting each run
    /// on its VTEP. A run the kernel refuses is sent again on its own,
    /// which counts why (and falls back to one datagram per send where
    /// `UDP_SEGMENT` is refused).
    pub(crate) fn flush(&mut self, vteps: &VtepTable) {
        let runs = self.batch.runs();
        let mut i = 0;
        while i < runs.len() {
            let Some(sock) = self.run_socket(vteps, runs[i].dest) else {
                i += 1;
                continue;
            };
            // Consecutive runs through the same socket, all to known VTEPs.
            let mut end = i + 1;
            while end < runs.len() && end - i < sys::udp::MAX_MESSAGES {
                match self.run_socket(vteps, runs[end].dest) {
                    Some(s) if std::ptr::eq(s, sock) => end += 1,
                    _ => break,
                }
            }
            let group = &runs[i..end];
            if let [r] = group {
                // Alone (the usual case: one flow's ACKs): a plain send.
                self.send_run(vteps, sock, r);
                i = end;
                continue;
            }
            let msgs = group.iter().filter_map(|r| {
                let vtep = vteps.get(r.dest.0)?;
                Some(sys::udp::Outgoing {
                    data: self.batch.data(r),
                    segment: if r.count > 1 { r.stride as u16 } else { 0 },
                    dest: &vtep.sockaddr,
                })
            });
            let sent = sys::udp::send_many(sock, msgs).unwrap_or(0);
            for r in &group[..sent] {
                if let Some(vtep) = vteps.get(r.dest.0) {
                    self.count_sent(vtep, r.count as u64, r.len);
                }
            }
            if sent < group.len() {
                // The first refused run alone: its own send says why.
                self.send_run(vteps, sock, &group[sent]);
                i += sent + 1;
            } else {
                i = end;
            }
        }
        self.batch.clear();
    }

    /// Sends one batched run by itself: one datagram, or one
    /// `UDP_SEGMENT` send, counted on its VTEP.
    fn send_run(&self, vteps: &VtepTable, sock: &mio::net::UdpSocket, r: &Run) {
        if let Some(vtep) = vteps.get(r.dest.0) {
            let data = self.batch.data(r);
            if r.count == 1 {
                self.send_one(vtep, sock, data);
            } else {
                self.send_segmented(vtep, sock, data, r.stride);
            }
        }
    }

    /// The socket a batched run leaves through (none once its VTEP is gone).
    fn run_socket(&self, vteps: &VtepTable, dest: RunDest) -> Option<&mio::net::UdpSocket> {
        let vtep = vteps.get(dest.0)?;
        self.sockets.as_ref()?.get(vtep.addr.is_ipv6(), dest.1)
    }

    /// Sends `datagrams`, of `stride` bytes laid end to end (the last may
    /// be shorter), with as few `UDP_SEGMENT` sends as the kernel's limits
    /// allow.
    fn send_segmented(
        &self,
        vtep: &Vtep,
        sock: &mio::net::UdpSocket,
        datagrams: &[u8],
        stride: usize,
    ) {
        let per_send = (sys::udp::GSO_MAX_BYTES / stride).clamp(1, sys::udp::GSO_MAX_SEGMENTS);
        for chunk in datagrams.chunks(per_send * stride) {
            let count = chunk.len().div_ceil(stride) as u64;
            let sent = match u16::try_from(stride) {
                Ok(seg) => sys::udp::send_segmented(sock, chunk, seg, &vtep.sockaddr),
                Err(_) => Err(io::Error::from_raw_os_error(libc::EMSGSIZE)),
            };
            match sent {
                Ok(n) if n == chunk.len() => self.count_sent(vtep, count, n),
                Ok(_) => self.count_refused(vtep, DropReason::TxError, count),
                // No UDP GSO on this kernel or route: one datagram per send.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP)
                    ) =>
                {
                    self.udp_gso.set(false);
                    for d in chunk.chunks(stride) {
                        self.send_one(vtep, sock, d);
                    }
                }
                Err(e) => self.count_refused(vtep, DropReason::of_tx_error(&e), count),
            }
        }
    }

    #[inline]
    fn send_one(&self, vtep: &Vtep, sock: &mio::net::UdpSocket, datagram: &[u8]) {
        match sock.send_to(datagram, vtep.addr) {
            Ok(n) if n == datagram.len() => self.count_sent(vtep, 1, n),
            Ok(_) => self.count_refused(vtep, DropReason::TxError, 1),
            Err(e) => self.count_refused(vtep, DropReason::of_tx_error(&e), 1),
        }
    }

    /// `datagrams` datagrams of `bytes` bytes in all (VXLAN headers
    /// included) left for the VTEP: its frames and inner bytes, and the
    /// sockets' datagrams and bytes.
    #[inline]
    fn count_sent(&self, vtep: &Vtep, datagrams: u64, bytes: usize) {
        let headers = datagrams * VXLAN_HEADER_LEN as u64;
        vtep.stats.tx_frames.add(datagrams);
        vtep.stats.tx_bytes.add(bytes as u64 - headers);
        self.stats.tx_datagrams.add(datagrams);
        self.stats.tx_bytes.add(bytes as u64);
    }

    /// `datagrams` datagrams to the VTEP were refused.
    #[inline]
    fn count_refused(&self, vtep: &Vtep, why: DropReason, datagrams: u64) {
        vtep.stats.count_drops(why, datagrams);
    }
}
