//! The way out: a [`Frame`] sent to one port ([`Egress::transmit`]), to
//! every other port of its network ([`Egress::flood`]), or to a VTEP
//! ([`Egress::encap`], which hands finished datagrams to the
//! [`Tunnel`]), with every outcome counted on the port or VTEP.
//!
//! Offloads are done here, in software, where the egress lacks them: a
//! vnet-header port takes a super-frame and a partial checksum as they
//! come; for any other port and for the tunnel a partial checksum is
//! completed in place and a super-frame is cut into segments. The cut is
//! made once per frame, into [`Egress`]'s scratch buffer with room for a
//! VXLAN header in front of each segment, and every egress of the frame
//! (plain ports and VTEPs of a flood) sends those same segments. The size
//! of the segments is found once per frame too, for the MTU checks.
//!
//! Decapsulated TCP segments bound for one offload port are merged back
//! into a super-frame ([`Egress::coalesce`]): one write instead of dozens.

use std::io::Write;

use super::handle::GoneCause;
use super::worker::Port;
use crate::fdb::{Dest, PortId, VtepId};
use crate::metrics::DropReason;
use crate::offload::{
    self, Coalesced, Coalescer, OffloadError, Push, Segments, VnetHdr, VNET_HDR_LEN,
};
use crate::vxlan::vteps::VtepTable;
use crate::vxlan::Tunnel;
use crate::wire::layout::{self, Layout, LayoutError};
use crate::wire::vxlan::{VxlanPacket, HEADER_LEN as VXLAN_HEADER_LEN};

/// The most bytes a super-frame may be cut into: its segments, each with
/// its headers and, for a VTEP, its VXLAN header. The worst case is small
/// segments of a 64 KiB frame; beyond this the frame is `bad_offload`.
const SEGMENT_LIMIT: usize = 256 * 1024;
/// The shortest segment: Ethernet, IPv4 and UDP headers, nothing else.
const MIN_SEGMENT: usize = 14 + 20 + 8;
/// Where super-frames are cut: always with a VXLAN header's room in front
/// of each segment, so one cut serves ports and VTEPs alike, and enough of
/// it that any cut within [`SEGMENT_LIMIT`] without that room fits with it.
const SEGMENT_SCRATCH: usize = SEGMENT_LIMIT + VXLAN_HEADER_LEN * (SEGMENT_LIMIT / MIN_SEGMENT + 1);

/// The frame being forwarded: it sits at `buf[start..start + len]`,
/// with room in front for a `virtio_net_hdr` or a VXLAN header.
pub(super) struct Frame<'a> {
    buf: &'a mut [u8],
    /// Where the frame starts in `buf`: at least [`VNET_HDR_LEN`] and
    /// the VXLAN header length, whose room in front of it may be written.
    start: usize,
    pub(super) len: usize,
    /// What the frame still needs (segmentation, a checksum); all zero
    /// when it is an ordinary, complete frame.
    vnet: VnetHdr,
    /// `buf[start - VNET_HDR_LEN..start]` holds `vnet`, as written.
    hdr_in_place: bool,
    /// A super-frame's header layout, parsed once when the first egress
    /// needs it: for the MTU checks (segment size) and for the cut.
    layout: Option<Result<Layout, LayoutError>>,
    /// A super-frame cut into [`Egress`]'s scratch, once an egress needed it.
    cut: Option<Result<Segments, OffloadError>>,
}

impl<'a> Frame<'a> {
    /// The frame at `buf[start..start + len]`; `hdr_in_place` says that
    /// `vnet` is already written in front of it, as it was read.
    pub(super) fn new(
        buf: &'a mut [u8],
        start: usize,
        len: usize,
        vnet: VnetHdr,
        hdr_in_place: bool,
    ) -> Frame<'a> {
        Frame {
            buf,
            start,
            len,
            vnet,
            hdr_in_place,
            layout: None,
            cut: None,
        }
    }
}

impl Frame<'_> {
    #[inline]
    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// What the frame still needs (its offload metadata), for a capture.
    #[inline]
    pub(super) fn vnet_hdr(&self) -> VnetHdr {
        self.vnet
    }

    /// The `virtio_net_hdr` and the frame, for a vnet-header port.
    fn with_vnet_hdr(&mut self) -> &[u8] {
        let s = self.start;
        if !self.hdr_in_place {
            self.vnet.emit(&mut self.buf[s - VNET_HDR_LEN..s]);
            self.hdr_in_place = true;
        }
        &self.buf[s - VNET_HDR_LEN..s + self.len]
    }

    /// Completes a partial checksum in place, so the frame can go where
    /// no one else would. Afterwards the frame needs nothing.
    fn complete_checksum(&mut self) -> Result<(), OffloadError> {
        if self.vnet.needs_csum() {
            let s = self.start;
            offload::complete_checksum(&mut self.buf[s..s + self.len], &self.vnet)?;
            self.vnet = VnetHdr::default();
            self.hdr_in_place = false;
        }
        Ok(())
    }

    /// The VXLAN header and the frame: the header is written in front of it
    /// (over the `virtio_net_hdr`, which is then gone).
    fn with_vxlan_hdr(&mut self, vni: u32) -> &[u8] {
        let s = self.start;
        VxlanPacket::new_unchecked(&mut self.buf[s - VXLAN_HEADER_LEN..s]).set_header(vni);
        self.hdr_in_place = false;
        &self.buf[s - VXLAN_HEADER_LEN..s + self.len]
    }

    /// The super-frame's header layout, parsed on the first call.
    #[inline]
    fn layout(&mut self) -> Result<Layout, LayoutError> {
        let (buf, start, len) = (&self.buf, self.start, self.len);
        *self
            .layout
            .get_or_insert_with(|| layout::parse(&buf[start..start + len]))
    }

    /// The size of each segment a super-frame is cut into (headers
    /// included), or the frame's own length.
    #[inline]
    fn wire_len(&mut self) -> usize {
        if !self.vnet.is_gso() {
            return self.len;
        }
        match self.layout() {
            Ok(l) => l.headers_len() + usize::from(self.vnet.gso_size),
            // Not segmentable: the segmenting egress counts it.
            Err(_) => 0,
        }
    }
}

/// Software GRO on decapsulation: a [`Coalescer`] and the port its
/// super-frame goes to.
#[derive(Default)]
struct Gro {
    merge: Coalescer,
    egress: Option<PortId>,
}

/// What sending writes to: the scratch buffer for cut super-frames, the
/// GRO state, and the ports a write found dead.
pub(super) struct Egress {
    scratch: Box<[u8]>,
    gro: Gro,
    /// Ports found dead this round, with why (by a write here, or by their
    /// own read): the worker detaches them after the round, last first.
    pub(super) dead: Vec<(PortId, GoneCause)>,
    /// Super-frames cut so far.
    #[cfg(test)]
    pub(super) cuts: usize,
}

impl Default for Egress {
    fn default() -> Self {
        Egress {
            scratch: vec![0u8; SEGMENT_SCRATCH].into_boxed_slice(),
            gro: Gro::default(),
            dead: Vec::new(),
            #[cfg(test)]
            cuts: 0,
        }
    }
}

impl Egress {
    /// Sends one frame to one port, counting the outcome on that port. A
    /// vnet-header port takes the frame as it is; for any other port a
    /// super-frame is segmented and a partial checksum completed first.
    #[inline]
    pub(super) fn transmit(&mut self, port: &Port, f: &mut Frame<'_>) {
        if f.wire_len() > port.max_frame {
            port.stats.count_drop(DropReason::Oversize);
            return;
        }
        if port.vnet {
            let len = f.len;
            write_frame(port, f.with_vnet_hdr(), len, &mut self.dead);
            return;
        }
        if f.vnet.is_gso() {
            match self.cut(f) {
                // The cut leaves a VXLAN header's room in front of each
                // segment, which a port does not need.
                Ok(segs) if segs.total_len - segs.count * VXLAN_HEADER_LEN <= SEGMENT_LIMIT => {
                    for seg in segs.frames(&self.scratch) {
                        write_frame(port, seg, seg.len(), &mut self.dead);
                    }
                }
                _ => port.stats.count_drop(DropReason::BadOffload),
            }
            return;
        }
        if f.complete_checksum().is_err() {
            port.stats.count_drop(DropReason::BadOffload);
            return;
        }
        let len = f.len;
        write_frame(port, f.bytes(), len, &mut self.dead);
    }

    /// Sends a frame to every local port of the network except where it came from.
    #[inline]
    pub(super) fn flood(
        &mut self,
        ports: &[Option<Port>],
        members: &[PortId],
        from: Dest,
        f: &mut Frame<'_>,
    ) {
        for &m in members {
            if from == Dest::Local(m) {
                continue;
            }
            if let Some(Some(p)) = ports.get(m.0 as usize) {
                self.transmit(p, f);
            }
        }
    }

    /// Sends the frame in VXLAN with `vni` to one VTEP, counting the
    /// outcome on the VTEP (the tunnel counts its sockets' totals). A
    /// super-frame goes as its segments, a partial checksum is completed
    /// first: the receiving host gets ordinary frames. Small frames may
    /// wait in the tunnel's batch until its flush.
    #[inline]
    pub(super) fn encap(
        &mut self,
        vteps: &VtepTable,
        tunnel: &mut Tunnel,
        id: VtepId,
        vni: u32,
        f: &mut Frame<'_>,
        flow: u32,
    ) {
        let Some(vtep) = vteps.get(id) else {
            return;
        };
        if f.wire_len() > vtep.max_frame {
            vtep.stats.count_drop(DropReason::Oversize);
            return;
        }
        let ipv6 = vtep.addr.is_ipv6();
        let Some(index) = tunnel.sender_index(ipv6, flow) else {
            vtep.stats.count_drop(DropReason::NoTunnel);
            return;
        };
        if f.vnet.is_gso() {
            // What is batched goes first: a flow stays in order.
            tunnel.flush(vteps);
            let segs = match self.cut(f) {
                Ok(segs) if segs.total_len <= SEGMENT_LIMIT => segs,
                _ => {
                    vtep.stats.count_drop(DropReason::BadOffload);
                    return;
                }
            };
            for (head, _) in segs.slots_mut(&mut self.scratch) {
                VxlanPacket::new_unchecked(head).set_header(vni);
            }
            tunnel.send_train(vtep, index, &self.scratch[..segs.total_len], segs.stride);
            return;
        }
        if f.complete_checksum().is_err() {
            vtep.stats.count_drop(DropReason::BadOffload);
            return;
        }
        tunnel.push(vteps, (id, index), f.with_vxlan_hdr(vni));
    }

    /// The super-frame `f` cut into segments in the scratch buffer, each
    /// behind a VXLAN header's room: cut on the first call for a frame,
    /// reused by the others.
    fn cut(&mut self, f: &mut Frame<'_>) -> Result<Segments, OffloadError> {
        if let Some(cut) = f.cut {
            return cut;
        }
        #[cfg(test)]
        {
            self.cuts += 1;
        }
        // The layout the MTU check parsed (an unparsable frame is parsed
        // again by `segment`, which then names the error).
        let layout = if f.vnet.is_gso() {
            f.layout().ok()
        } else {
            None
        };
        let cut = offload::segment_parsed(
            f.bytes(),
            &f.vnet,
            layout.as_ref(),
            &mut self.scratch,
            VXLAN_HEADER_LEN,
        );
        f.cut = Some(cut);
        cut
    }

    /// Offers a decapsulated frame on its way to `decision`'s port: a TCP
    /// segment bound for an offload port of network `net` is merged with
    /// the ones before it. Returns true when the frame was taken; otherwise
    /// whatever was held is written first (so a flow stays in order) and
    /// the caller sends the frame as usual.
    #[inline]
    pub(super) fn coalesce(
        &mut self,
        ports: &[Option<Port>],
        out: Option<PortId>,
        net: crate::fdb::NetId,
        f: &Frame<'_>,
    ) -> bool {
        if let Some(out) = out {
            if let Some(Some(egress)) = ports.get(out.0 as usize) {
                if egress.net == net && egress.vnet && f.len <= egress.max_frame {
                    if self.gro.egress.is_some_and(|e| e != out) {
                        self.flush_gro(ports);
                    }
                    if self.gro_offer(out, f.bytes(), ports) {
                        return true;
                    }
                }
            }
        }
        // Anything else goes after what is held, so a flow stays in order.
        self.flush_gro(ports);
        false
    }

    /// Offers a frame bound for offload port `out`, which is the held
    /// super-frame's egress if there is one. Returns false when the frame
    /// cannot be merged.
    fn gro_offer(&mut self, out: PortId, frame: &[u8], ports: &[Option<Port>]) -> bool {
        loop {
            match self.gro.merge.push(frame) {
                Push::Started | Push::Merged => {
                    self.gro.egress = Some(out);
                    return true;
                }
                Push::Flush => self.flush_gro(ports),
                Push::Bypass => return false,
            }
        }
    }

    /// Writes the held super-frame (if any) to its port, and its copy to
    /// the port that mirrors that one's egress.
    #[inline]
    pub(super) fn flush_gro(&mut self, ports: &[Option<Port>]) {
        let out = self.gro.egress.take();
        let Some(c) = self.gro.merge.finish() else {
            return;
        };
        if let Some(Some(port)) = out.and_then(|o| ports.get(o.0 as usize)) {
            write_frame(port, c.with_vnet_hdr(), c.frame().len(), &mut self.dead);
            if crate::observe::mirror::on() {
                mirror_merged(port, ports, &c, &mut self.scratch, &mut self.dead);
            }
        }
    }
}

/// Port mirroring of a merged frame (`vxswitch port mirror`): the
/// segments it was merged from were not copied one by one (see
/// `ingress::dispatch`), so the port mirroring `port`'s egress gets the
/// frame `port` got: whole if it takes super-frames, else cut back into
/// its segments (in `scratch`).
#[cold]
#[inline(never)]
fn mirror_merged(
    port: &Port,
    ports: &[Option<Port>],
    c: &Coalesced<'_>,
    scratch: &mut [u8],
    dead: &mut Vec<(PortId, GoneCause)>,
) {
    use crate::observe::{capture::key, mirror::target, pcapng::Dir};
    let Some((id, k)) = target(&port.stats, Dir::Out) else {
        return;
    };
    let Some(Some(m)) = ports.get(id as usize) else {
        return;
    };
    // Still the monitoring port (the id may have been reused).
    if key(&m.stats) != k || m.id == port.id {
        return;
    }
    if m.vnet {
        write_frame(m, c.with_vnet_hdr(), c.frame().len(), dead);
        return;
    }
    match offload::segment(c.frame(), &c.hdr, scratch, 0) {
        Ok(segs) => {
            for seg in segs.frames(scratch) {
                if seg.len() > m.max_frame {
                    m.stats.count_drop(DropReason::Oversize);
                } else {
                    write_frame(m, seg, seg.len(), dead);
                }
            }
        }
        Err(_) => m.stats.count_drop(DropReason::BadOffload),
    }
}

/// One write of `bytes` (a frame of `frame_len` bytes, maybe behind a
/// `virtio_net_hdr`), counted on the port: the one place a port's
/// transmissions are counted.
#[inline]
fn write_frame(port: &Port, bytes: &[u8], frame_len: usize, dead: &mut Vec<(PortId, GoneCause)>) {
    // A port that receives on its steering interface sends apart.
    let file = port.tx.as_ref().unwrap_or(&port.file);
    let written = match port.uplink.as_ref().and_then(|u| u.tag()) {
        // A tagged uplink: the 802.1Q tag goes in on the way out.
        Some(tag) => {
            let hdr = if port.vnet { VNET_HDR_LEN } else { 0 };
            super::uplink::write_tagged(file, bytes, hdr, tag)
        }
        None => (&*file).write(bytes),
    };
    if crate::observe::capture::on() {
        let drop = match &written {
            Ok(n) if *n == bytes.len() => None,
            Ok(_) => Some(DropReason::TxError),
            Err(e) => Some(DropReason::of_tx_error(e)),
        };
        let at = bytes.len().saturating_sub(frame_len);
        // A vnet-header port's write carries the frame's offload metadata.
        let vnet = match (port.vnet, at.checked_sub(VNET_HDR_LEN)) {
            (true, Some(h)) => VnetHdr::parse(&bytes[h..at]).unwrap_or_default(),
            _ => VnetHdr::default(),
        };
        crate::observe::capture::copy(
            &port.stats,
            crate::observe::pcapng::Dir::Out,
            &bytes[at..],
            drop,
            vnet,
        );
    }
    match written {
        Ok(n) if n == bytes.len() => {
            port.stats.tx_frames.inc();
            port.stats.tx_bytes.add(frame_len as u64);
        }
        // TAPs and SEQPACKET sockets take a frame whole or not at all.
        Ok(_) => port.stats.count_drop(DropReason::TxError),
        Err(e) => {
            port.stats.count_drop(DropReason::of_tx_error(&e));
            if let Some(cause) = GoneCause::write(&e) {
                if !dead.iter().any(|(id, _)| *id == port.id) {
                    dead.push((port.id, cause));
                }
            }
        }
    }
}
