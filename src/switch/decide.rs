//! The forwarding decision: a pure function of (ingress, frame bytes, FDB,
//! time). No I/O, so it is unit-tested and benchmarked on its own.
//!
//! Semantics follow the Linux bridge (`br_handle_frame_finish`,
//! `should_deliver`): a frame whose source is multicast or zero is dropped
//! before learning; the source is learned before the destination is looked
//! up; a known unicast goes to exactly one destination, never back out of
//! the port it came in on; broadcast, multicast and unknown unicast flood to
//! every other port of the same network and never to another network.
//! Frames decapsulated from VXLAN learn their source behind the sending
//! VTEP and are never sent back into the overlay (split horizon).
//!
//! Before anything is learned, the ingress's [`Policy`] checks the source:
//! a port with port security sends only from its own MAC, a guarded one
//! only from its addresses, and no one else sends from a MAC a port owns
//! (`spoofed_src`, `spoofed_ip`; see [`super::policy`]).

use super::policy::Policy;
use crate::fdb::{Dest, FdbGuard, Learned, Lookup, NetId, PortId, VtepId};
use crate::metrics::DropReason;
use crate::time::Millis;
use crate::wire::ethernet::HEADER_LEN;
use crate::wire::EthernetFrame;

/// Where a frame came from: a local port, or a remote VTEP (decapsulated),
/// and what it may send (see [`super::policy`]).
#[derive(Clone, Copy, Debug)]
pub struct Ingress<'a> {
    pub from: Dest,
    pub net: NetId,
    pub policy: Policy<'a>,
}

impl Ingress<'static> {
    /// A port whose sources are not checked.
    pub fn port(port: PortId, net: NetId) -> Ingress<'static> {
        Ingress {
            from: Dest::Local(port),
            net,
            policy: Policy::Any,
        }
    }

    /// A VTEP whose inner sources are not checked.
    pub fn vtep(vtep: VtepId, net: NetId) -> Ingress<'static> {
        Ingress {
            from: Dest::Remote(vtep),
            net,
            policy: Policy::Any,
        }
    }
}

impl<'a> Ingress<'a> {
    /// The same ingress, checked by `policy`.
    #[inline(always)]
    pub fn with_policy<'b>(self, policy: Policy<'b>) -> Ingress<'b> {
        Ingress {
            from: self.from,
            net: self.net,
            policy,
        }
    }
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Known unicast to one local port.
    Forward(PortId),
    /// Known unicast to one remote VTEP.
    Encap(VtepId),
    /// To every other port of the ingress network, and to its VTEPs when
    /// the frame came from a local port.
    Flood,
    Drop(DropReason),
}

/// The decision plus what learning did, so the caller can count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    /// `None` when the frame was dropped before learning.
    pub learned: Option<Learned>,
}

impl Verdict {
    fn drop(why: DropReason) -> Verdict {
        Verdict {
            decision: Decision::Drop(why),
            learned: None,
        }
    }
}

/// Decides the fate of `frame` received on `ingress` at `now`, learning its
/// source address in `fdb` on the way.
#[inline]
pub fn decide(fdb: &FdbGuard<'_>, ingress: Ingress<'_>, frame: &[u8], now: Millis) -> Verdict {
    if frame.len() < HEADER_LEN {
        return Verdict::drop(DropReason::Runt);
    }
    // Only the two addresses are read: the length check above is all they
    // need (`new_checked` would also refuse a cut-short VLAN tag, which the
    // switch forwards like any other frame).
    let eth = EthernetFrame::new_unchecked(frame);
    let (dst, src) = (eth.dst_addr(), eth.src_addr());
    if !src.is_valid_source() {
        return Verdict::drop(DropReason::InvalidSource);
    }
    // Port security and the IP guard: a spoofed source is never learned.
    let port = match ingress.from {
        Dest::Local(p) => Some(p),
        Dest::Remote(_) => None,
    };
    if let Err(why) = ingress.policy.check(ingress.net, port, src, frame) {
        return Verdict::drop(why);
    }
    let learned = Some(fdb.learn(ingress.net, src, ingress.from, now));
    let decision = if dst.is_multicast() {
        Decision::Flood
    } else {
        match (fdb.lookup(ingress.net, dst, now), ingress.from) {
            (Lookup::Hit(d), from) if d == from => Decision::Drop(DropReason::Hairpin),
            (Lookup::Hit(Dest::Local(p)), _) => Decision::Forward(p),
            // Split horizon: what came out of the overlay never goes back in.
            (Lookup::Hit(Dest::Remote(_)), Dest::Remote(_)) => {
                Decision::Drop(DropReason::SplitHorizon)
            }
            (Lookup::Hit(Dest::Remote(v)), Dest::Local(_)) => Decision::Encap(v),
            (Lookup::Miss, _) => Decision::Flood,
        }
    };
    Verdict { decision, learned }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdb::{Fdb, FdbConfig, Refusal};
    use crate::wire::MacAddr;

    const NET: NetId = NetId(0);
    const A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xa]);
    const B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xb]);

    fn frame(dst: MacAddr, src: MacAddr) -> [u8; 60] {
        let mut f = [0u8; 60];
        f[0..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f
    }

    fn at(port: u32) -> Ingress<'static> {
        Ingress::port(PortId(port), NET)
    }

    #[test]
    fn unknown_unicast_floods_then_known_unicast_forwards() {
        let fdb = Fdb::new(FdbConfig::default());
        let g = fdb.pin();
        let v = decide(&g, at(1), &frame(B, A), Millis(1000));
        assert_eq!(
            v,
            Verdict {
                decision: Decision::Flood,
                learned: Some(Learned::Inserted)
            }
        );
        // B answers: A is known, so this is unicast to port 1.
        let v = decide(&g, at(2), &frame(A, B), Millis(1001));
        assert_eq!(v.decision, Decision::Forward(PortId(1)));
        // And now B is known too.
        assert_eq!(
            decide(&g, at(1), &frame(B, A), Millis(1002)).decision,
            Decision::Forward(PortId(2))
        );
    }

    #[test]
    fn broadcast_and_multicast_flood() {
        let fdb = Fdb::new(FdbConfig::default());
        let g = fdb.pin();
        let ipv6_all_nodes = MacAddr([0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(
            decide(&g, at(1), &frame(MacAddr::BROADCAST, A), Millis(0)).decision,
            Decision::Flood
        );
        assert_eq!(
            decide(&g, at(1), &frame(ipv6_all_nodes, A), Millis(0)).decision,
            Decision::Flood
        );
    }

    #[test]
    fn invalid_sources_are_dropped_before_learning() {
        let fdb = Fdb::new(FdbConfig::default());
        let g = fdb.pin();
        for src in [
            MacAddr::ZERO,
            MacAddr::BROADCAST,
            MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]),
        ] {
            assert_eq!(
                decide(&g, at(1), &frame(B, src), Millis(0)),
                Verdict::drop(DropReason::InvalidSource)
            );
        }
        assert!(fdb.is_empty());
    }

    #[test]
    fn runts_are_dropped() {
        let fdb = Fdb::new(FdbConfig::default());
        let g = fdb.pin();
        assert_eq!(
            decide(&g, at(1), &frame(B, A)[..13], Millis(0)),
            Verdict::drop(DropReason::Runt)
        );
    }

    #[test]
    fn never_back_out_of_the_ingress_port() {
        let fdb = Fdb::new(FdbConfig::default());
        let g = fdb.pin();
        decide(&g, at(1), &frame(MacAddr::BROADCAST, B), Millis(0));
        // A frame to B arriving on B's own port.
        assert_eq!(
            decide(&g, at(1), &frame(B, A), Millis(0)).decision,
            Decision::Drop(DropReason::Hairpin)
        );
    }

    #[test]
    fn networks_are_separate_tables() {
        let fdb = Fdb::new(FdbConfig::default());
        let g = fdb.pin();
        decide(
            &g,
            Ingress::port(PortId(1), NetId(1)),
            &frame(MacAddr::BROADCAST, B),
            Millis(0),
        );
        // B is known in network 1 only; in network 2 the frame floods (within network 2).
        let v = decide(
            &g,
            Ingress::port(PortId(5), NetId(2)),
            &frame(B, A),
            Millis(0),
        );
        assert_eq!(v.decision, Decision::Flood);
    }

    #[test]
    fn remote_destinations_encapsulate() {
        let fdb = Fdb::new(FdbConfig::default());
        fdb.add_static(NET, B, Dest::Remote(VtepId(3)), Millis(0))
            .unwrap();
        let g = fdb.pin();
        assert_eq!(
            decide(&g, at(1), &frame(B, A), Millis(0)).decision,
            Decision::Encap(VtepId(3))
        );
    }

    #[test]
    fn remote_sources_are_learned_behind_their_vtep_and_split_horizon_holds() {
        let fdb = Fdb::new(FdbConfig::default());
        let g = fdb.pin();
        let from_vtep = Ingress::vtep(VtepId(7), NET);
        // Unknown destination from the overlay: flood (the engine floods to local ports only).
        let v = decide(&g, from_vtep, &frame(A, B), Millis(0));
        assert_eq!(
            v,
            Verdict {
                decision: Decision::Flood,
                learned: Some(Learned::Inserted)
            }
        );
        assert_eq!(
            fdb.lookup(NET, B, Millis(0)),
            Lookup::Hit(Dest::Remote(VtepId(7)))
        );
        // A local port answers B: encapsulate to VTEP 7.
        assert_eq!(
            decide(&g, at(1), &frame(B, A), Millis(1)).decision,
            Decision::Encap(VtepId(7))
        );
        // A frame from another VTEP to B (known behind VTEP 7): never back into the overlay.
        let v = decide(
            &g,
            Ingress::vtep(VtepId(8), NET),
            &frame(B, MacAddr([2, 0, 0, 0, 0, 0xc])),
            Millis(2),
        );
        assert_eq!(v.decision, Decision::Drop(DropReason::SplitHorizon));
        // And from VTEP 7 itself: hairpin.
        let v = decide(
            &g,
            from_vtep,
            &frame(B, MacAddr([2, 0, 0, 0, 0, 0xd])),
            Millis(3),
        );
        assert_eq!(v.decision, Decision::Drop(DropReason::Hairpin));
    }

    #[test]
    fn refused_learning_still_forwards() {
        let fdb = Fdb::new(FdbConfig {
            max_entries: 1,
            ..FdbConfig::default()
        });
        let g = fdb.pin();
        decide(&g, at(1), &frame(MacAddr::BROADCAST, A), Millis(0));
        let v = decide(&g, at(2), &frame(A, B), Millis(0));
        assert_eq!(
            v,
            Verdict {
                decision: Decision::Forward(PortId(1)),
                learned: Some(Learned::Refused(Refusal::TableFull))
            }
        );
    }
}
