//! The way in: a turn of one port ([`Worker::port_turn`]) or one VXLAN
//! socket ([`Worker::tunnel_turn`]), and the one [`dispatch`] of a
//! [`Verdict`] that both use.
//!
//! A port's frame is read at [`HEADROOM`] (behind its `virtio_net_hdr` on
//! an offload port); a datagram is received so that its inner frame lands
//! at the same place, its VXLAN header in front. Either way the frame goes
//! through [`decide()`] and then [`dispatch`], where the rules that differ
//! by origin sit side by side: what came out of the overlay never goes back
//! in (split horizon) and may be merged for an offload port (GRO); a stale
//! FDB entry for a port that is gone floods to the local ports instead.
//!
//! Nothing on this path allocates, locks or logs: the buffers are the
//! worker's, reused, and every outcome is a counter in the [`PortStats`] of
//! the port or VTEP where it happened.

use std::io;
use std::os::fd::AsFd;

use super::decide::{decide, Decision, Ingress, Verdict};
use super::egress::{Egress, Frame};
use super::handle::GoneCause;
use super::policy::Policy;
use super::uplink;
use super::worker::{Tables, Turn, Worker};
use super::HEADROOM;
use crate::fdb::{Dest, FdbGuard, Learned, PortId, Refusal};
use crate::gateway::suppress::{Suppress, MAX_REPLY};
use crate::gateway::NeighTable;
use crate::metrics::{DropReason, PortStats};
use crate::offload::{VnetHdr, VNET_HDR_LEN};
use crate::time::Millis;
use crate::vxlan::{decap, Recv, Tunnel};
use crate::wire::flow_hash;
use crate::wire::vxlan::HEADER_LEN as VXLAN_HEADER_LEN;

/// Consecutive unexpected read errors after which a port is declared dead.
const MAX_RX_ERRORS: u32 = 64;

impl Worker {
    /// Reads and forwards up to `budget` frames from one port.
    pub(super) fn port_turn(&mut self, id: PortId, fdb: &FdbGuard<'_>, now: Millis) -> Turn {
        let Worker {
            tables,
            rx,
            egress,
            tunnel,
            budget,
            ..
        } = self;
        let Some(port) = tables.port(id).filter(|p| p.read) else {
            return Turn::Idle;
        };
        // A vnet-header port's header lands right in front of the frame.
        let at = if port.vnet {
            HEADROOM - VNET_HDR_LEN
        } else {
            HEADROOM
        };
        let stats = &port.stats;
        let mut turn = Turn::More;
        for _ in 0..*budget {
            let mut tag = None;
            let read = if port.tags_aside {
                crate::sys::pktport::recv_tagged(port.file.as_fd(), &mut rx[at..]).map(|(n, t)| {
                    tag = t;
                    n
                })
            } else {
                port.read_frame(&mut rx[at..])
            };
            let n = match read {
                Ok(0) => {
                    turn = Turn::Dead(GoneCause::Eof);
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    turn = Turn::Idle;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An uplink's interface went down (reported once); the
                // control plane reports the link's state.
                Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => continue,
                Err(e) => {
                    if let Some(cause) = GoneCause::read(&e) {
                        turn = Turn::Dead(cause);
                        break;
                    }
                    stats.count_drop(DropReason::RxError);
                    port.rx_errors.set(port.rx_errors.get() + 1);
                    if port.rx_errors.get() > MAX_RX_ERRORS {
                        turn = Turn::Dead(GoneCause::TooManyReadErrors);
                        break;
                    }
                    continue;
                }
            };
            port.rx_errors.set(0);
            let len = match frame_len(n, rx.len() - at, HEADROOM - at) {
                Ok(len) => len,
                Err(why) => {
                    stats.count_drop(why);
                    continue;
                }
            };
            stats.rx_frames.inc();
            stats.rx_bytes.add(len as u64);
            let vnet = if port.vnet {
                match VnetHdr::parse(&rx[at..HEADROOM]).and_then(|h| h.validate(len).map(|_| h)) {
                    Ok(h) => h,
                    Err(_) => {
                        stats.count_drop(DropReason::BadOffload);
                        continue;
                    }
                }
            } else {
                VnetHdr::default()
            };
            let mut f = match tag {
                None => Frame::new(rx, HEADROOM, len, vnet, port.vnet),
                // The tag the kernel took off, back behind the MACs: the
                // frame starts 4 bytes earlier (over the vnet header, read
                // already) and is 4 longer, as it left the container.
                Some(tag) if len >= 12 => {
                    rx.copy_within(HEADROOM..HEADROOM + 12, HEADROOM - 4);
                    rx[HEADROOM + 8..HEADROOM + 12].copy_from_slice(&tag);
                    stats.rx_bytes.add(4);
                    Frame::new(rx, HEADROOM - 4, len + 4, vnet.behind_tag(), false)
                }
                Some(_) => {
                    stats.count_drop(DropReason::Runt);
                    continue;
                }
            };
            let ingress = Ingress::port(id, port.net).with_policy(tables.policy(port));
            let mut verdict;
            if let Some(u) = &port.uplink {
                // From the LAN: storm control, and only what is for the network.
                if !u.admit(f.bytes(), now) {
                    stats.count_drop(DropReason::Storm);
                    continue;
                }
                verdict = decide(fdb, ingress, f.bytes(), now);
                verdict = uplink::from_lan(verdict, f.bytes(), &tables.owned, port.net);
            } else {
                verdict = decide(fdb, ingress, f.bytes(), now);
            }
            dispatch(tables, egress, tunnel, ingress, stats, verdict, &mut f);
        }
        // Small datagrams batched during the turn leave now.
        tunnel.flush(&tables.vteps);
        turn
    }

    /// Receives and forwards up to `budget` receives from one VXLAN
    /// socket. With `UDP_GRO` one receive may carry many datagrams of one
    /// flow, end to end; each is handled on its own.
    pub(super) fn tunnel_turn(
        &mut self,
        v6: bool,
        index: usize,
        fdb: &FdbGuard<'_>,
        now: Millis,
    ) -> Turn {
        let Worker {
            tables,
            rx,
            egress,
            tunnel,
            budget,
            ..
        } = self;
        // The first datagram lands so that its inner frame starts at HEADROOM.
        let base = HEADROOM - VXLAN_HEADER_LEN;
        for _ in 0..*budget {
            let train = match tunnel.receive(v6, index, &mut rx[base..]) {
                Recv::Train(t) => t,
                Recv::Drained => return Turn::Idle,
                Recv::Again => continue,
            };
            for (off, n) in train.datagrams() {
                // The bytes in front of each datagram are free (an earlier
                // datagram, or headroom).
                let at = base + off;
                let Some(d) = decap(
                    &mut tables.vteps,
                    tunnel.stats(),
                    &rx[at..at + n],
                    train.from,
                    now,
                ) else {
                    continue;
                };
                let Some(vtep) = tables.vteps.get(d.vtep) else {
                    continue;
                };
                let start = at + VXLAN_HEADER_LEN;
                let mut f = Frame::new(rx, start, n - VXLAN_HEADER_LEN, VnetHdr::default(), false);
                // No VTEP may send from a local port's own MAC.
                let ingress =
                    Ingress::vtep(d.vtep, d.net).with_policy(Policy::NotOwned(&tables.owned));
                let verdict = decide(fdb, ingress, f.bytes(), now);
                dispatch(
                    tables,
                    egress,
                    tunnel,
                    ingress,
                    &vtep.stats,
                    verdict,
                    &mut f,
                );
            }
            egress.flush_gro(&tables.ports);
        }
        Turn::More
    }
}

/// The length of the frame in a read that returned `n` into `room` bytes,
/// the first `hdr` of them a `virtio_net_hdr`; or why the read is no frame.
/// A TAP truncates a frame longer than the buffer and still returns the
/// frame's full length (`tun_put_user`): such a read is dropped as
/// `rx_error`, never sliced. A read shorter than the header is
/// `bad_offload` (`vnet_hdr_truncated`).
#[inline(always)]
pub(super) fn frame_len(n: usize, room: usize, hdr: usize) -> Result<usize, DropReason> {
    if n > room {
        return Err(DropReason::RxError);
    }
    n.checked_sub(hdr).ok_or(DropReason::BadOffload)
}

/// Sends a frame where its verdict says, counting the outcome on `stats`
/// (the ingress port's, or the sending VTEP's for a decapsulated frame).
#[inline(always)]
pub(super) fn dispatch(
    tables: &Tables,
    egress: &mut Egress,
    tunnel: &mut Tunnel,
    ingress: Ingress<'_>,
    stats: &PortStats,
    verdict: Verdict,
    f: &mut Frame<'_>,
) {
    count_learning(stats, verdict.learned);
    if crate::observe::capture::on() {
        let drop = match verdict.decision {
            Decision::Drop(why) => Some(why),
            _ => None,
        };
        crate::observe::capture::copy(
            stats,
            crate::observe::pcapng::Dir::In,
            f.bytes(),
            drop,
            f.vnet_hdr(),
        );
    }
    let Some(net) = tables.net(ingress.net) else {
        stats.count_drop(DropReason::NoNetwork);
        return;
    };
    let from_overlay = matches!(ingress.from, Dest::Remote(_));
    if from_overlay {
        let out = match verdict.decision {
            Decision::Forward(out) => Some(out),
            _ => None,
        };
        if egress.coalesce(&tables.ports, out, ingress.net, f) {
            // Held to be merged: a mirror gets the merged frame, as its
            // port does (`Egress::flush_gro`).
            return;
        }
    }
    if crate::observe::mirror::on() {
        mirror(
            tables,
            egress,
            ingress.from,
            stats,
            &verdict.decision,
            &net.members,
            f,
        );
    }
    let overlay = tables.vteps.overlay(ingress.net);
    match verdict.decision {
        Decision::Forward(out) => match tables.port(out) {
            Some(port) if port.net == ingress.net => egress.transmit(port, f),
            // A stale entry for a port that is gone: flood (to local ports) instead.
            _ => egress.flood(&tables.ports, &net.members, ingress.from, f),
        },
        Decision::Flood => {
            // ARP/ND suppression: a local port's request for a bound
            // address is answered here and goes nowhere else.
            if let (Dest::Local(from), Some(t)) = (ingress.from, &net.neigh) {
                if NeighTable::may_be_request(f.bytes()) && suppress(tables, egress, from, t, f) {
                    return;
                }
            }
            // Local ports first: VXLAN headers overwrite the
            // virtio_net_hdr in front of the frame.
            egress.flood(&tables.ports, &net.members, ingress.from, f);
            // Split horizon: what came out of the overlay floods to local ports only.
            if let (false, Some(o)) = (from_overlay, overlay) {
                if let (Some(vni), false) = (o.vni, o.vteps.is_empty()) {
                    let flow = flow_hash(f.bytes());
                    for &v in &o.vteps {
                        egress.encap(&tables.vteps, tunnel, v, vni, f, flow);
                    }
                }
            }
        }
        // Split horizon: never back into the overlay. (decide() already
        // drops a remote destination for a remote source.)
        Decision::Encap(_) if from_overlay => stats.count_drop(DropReason::SplitHorizon),
        Decision::Encap(v) => match (overlay.and_then(|o| o.vni), tables.vteps.get(v)) {
            (Some(vni), Some(vtep)) if vtep.net == ingress.net => {
                let flow = flow_hash(f.bytes());
                egress.encap(&tables.vteps, tunnel, v, vni, f, flow);
            }
            _ => stats.count_drop(DropReason::NoTunnel),
        },
        Decision::Drop(why) => stats.count_drop(why),
    }
}

/// Answers a request from port `from` if `t` says so; false: flood it.
#[cold]
#[inline(never)]
fn suppress(
    tables: &Tables,
    egress: &mut Egress,
    from: PortId,
    t: &NeighTable,
    f: &Frame<'_>,
) -> bool {
    let mut buf = [0u8; HEADROOM + MAX_REPLY];
    let Suppress::Reply(n) = t.answer(f.bytes(), &mut buf[HEADROOM..]) else {
        return false;
    };
    if let Some(port) = tables.port(from) {
        egress.transmit(
            port,
            &mut Frame::new(&mut buf, HEADROOM, n, VnetHdr::default(), false),
        );
    }
    true
}

/// Port mirroring (`vxswitch port mirror`): copies of what a mirrored
/// port received, and of what it is about to be sent, written to its
/// monitoring port like any egress. Only when a mirror exists.
#[cold]
#[inline(never)]
fn mirror(
    tables: &Tables,
    egress: &mut Egress,
    from: Dest,
    stats: &PortStats,
    decision: &Decision,
    members: &[PortId],
    f: &mut Frame<'_>,
) {
    use crate::observe::mirror::target;
    use crate::observe::pcapng::Dir;
    let send = |t: Option<(u32, usize)>, egress: &mut Egress, f: &mut Frame<'_>| {
        let Some((id, key)) = t else { return };
        match tables.port(PortId(id)) {
            // Still the monitoring port, and not where the frame came from.
            Some(p)
                if crate::observe::capture::key(&p.stats) == key && from != Dest::Local(p.id) =>
            {
                egress.transmit(p, f)
            }
            _ => {}
        }
    };
    send(target(stats, Dir::In), egress, f);
    match *decision {
        Decision::Forward(out) => {
            if let Some(p) = tables.port(out) {
                send(target(&p.stats, Dir::Out), egress, f);
            }
        }
        Decision::Flood => {
            for &m in members {
                if from == Dest::Local(m) {
                    continue;
                }
                if let Some(p) = tables.port(m) {
                    send(target(&p.stats, Dir::Out), egress, f);
                }
            }
        }
        _ => {}
    }
}

fn count_learning(stats: &PortStats, learned: Option<Learned>) {
    match learned {
        Some(Learned::Refused(Refusal::TableFull)) => stats.learn_refused_table_full.inc(),
        Some(Learned::Refused(Refusal::DestLimit)) => stats.learn_refused_port_limit.inc(),
        Some(Learned::Refused(Refusal::NetLimit)) => stats.learn_refused_net_limit.inc(),
        Some(Learned::Moved { .. }) => stats.moves_in.inc(),
        _ => {}
    }
}
