//! The VTEP table of one worker: each network's overlay (its VNI, its VTEPs,
//! whether it learns VTEPs), the VTEPs themselves, and which senders each
//! VNI accepts.
//!
//! Every worker keeps its own copy, changed only between turns by control
//! commands, or during a tunnel turn when a network that learns VTEPs
//! accepts a new sender ([`VtepTable::learn`]); such a VTEP is queued in
//! [`VtepTable::learned`] for the worker to announce to its peers, which
//! [`adopt`](VtepTable::adopt) it under the same id. Ids come from one
//! [`IdPool`] shared by the workers and the control handle.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use super::{VxlanConfig, VxlanDrop};
use crate::fdb::{NetId, VtepId};
use crate::metrics::PortStats;
use crate::time::Millis;

/// Maps consulted per datagram use ahash, not std's SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// A VTEP as the dataplane knows it.
#[derive(Clone, Debug)]
pub struct VtepInfo {
    pub id: VtepId,
    pub net: NetId,
    pub addr: SocketAddr,
    /// Learned from traffic (a network with `learn_vteps`), not configured.
    pub dynamic: bool,
    pub stats: Arc<PortStats>,
}

/// IPv4-mapped IPv6 addresses become IPv4, so one sender has one key.
pub fn canonical(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// VTEP ids, shared by the workers so that one id means one VTEP in all
/// of them, whoever created it; and the VTEPs learned from traffic, keyed
/// by (address, VNI), so that two workers that see the same new sender at
/// once get the same id (the second adopts what the first learned).
#[derive(Debug, Default)]
pub(crate) struct IdPool(Mutex<Pool>);

#[derive(Debug, Default)]
struct Pool {
    used: Vec<bool>,
    learned: HashMap<(IpAddr, u32), LearnedVtep>,
}

/// A VTEP learned from traffic, and how long it has been idle.
#[derive(Debug)]
struct LearnedVtep {
    info: VtepInfo,
    /// Its `rx_frames` when last looked at, and since when it has not moved.
    rx_frames: u64,
    idle_since: Millis,
    /// Reported idle already (its removal is under way).
    reported: bool,
}

impl IdPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn alloc(&self) -> VtepId {
        self.lock().alloc()
    }

    /// Frees an id; a learned VTEP under it is forgotten with it.
    pub(crate) fn free(&self, id: VtepId) {
        let mut pool = self.lock();
        if let Some(u) = pool.used.get_mut(id.0 as usize) {
            *u = false;
        }
        pool.learned.retain(|_, l| l.info.id != id);
    }

    /// The VTEP learned from `addr` with `vni`: the one some worker learned
    /// already, or a new one. The flag says it is new (the caller announces
    /// it).
    fn learn(&self, net: NetId, vni: u32, addr: SocketAddr, now: Millis) -> (VtepInfo, bool) {
        let mut pool = self.lock();
        if let Some(l) = pool.learned.get(&(addr.ip(), vni)) {
            return (l.info.clone(), false);
        }
        let info = VtepInfo {
            id: pool.alloc(),
            net,
            addr,
            dynamic: true,
            stats: Arc::new(PortStats::default()),
        };
        pool.learned.insert(
            (addr.ip(), vni),
            LearnedVtep {
                info: info.clone(),
                rx_frames: 0,
                idle_since: now,
                reported: false,
            },
        );
        (info, true)
    }

    /// Learned VTEPs that have received nothing for `ageing_ms`, each
    /// reported once (the caller removes them, which frees their ids).
    pub(crate) fn idle(&self, now: Millis, ageing_ms: u64) -> Vec<VtepInfo> {
        let mut out = Vec::new();
        if ageing_ms == 0 {
            return out;
        }
        for l in self.lock().learned.values_mut() {
            let rx = l.info.stats.rx_frames.get();
            if rx != l.rx_frames {
                l.rx_frames = rx;
                l.idle_since = now;
            } else if !l.reported && now.saturating_sub(l.idle_since) >= ageing_ms {
                l.reported = true;
                out.push(l.info.clone());
            }
        }
        out
    }
}

impl Pool {
    fn alloc(&mut self) -> VtepId {
        let i = self.used.iter().position(|u| !u).unwrap_or(self.used.len());
        if i == self.used.len() {
            self.used.push(false);
        }
        self.used[i] = true;
        VtepId(i as u32)
    }
}

/// One VTEP of a worker's table.
#[derive(Debug)]
pub(crate) struct Vtep {
    pub(crate) net: NetId,
    pub(crate) addr: SocketAddr,
    /// `addr` as `sendmsg` takes it.
    pub(crate) sockaddr: socket2::SockAddr,
    /// Largest inner frame that fits the underlay to this VTEP.
    pub(crate) max_frame: usize,
    pub(crate) stats: Arc<PortStats>,
    dynamic: bool,
}

/// A network's part of the overlay.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    pub(crate) vni: Option<u32>,
    /// Where a flood goes besides the local ports.
    pub(crate) vteps: Vec<VtepId>,
    learn: bool,
    learned: usize,
}

/// A VNI already belongs to another network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VniInUse(pub(crate) u32);

/// Why a configured VTEP was not added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AddError {
    /// The network has no VNI.
    NoVni,
    /// The network already has a VTEP at this address.
    Exists,
}

/// The VTEPs of all networks, and which senders each VNI accepts.
#[derive(Debug)]
pub(crate) struct VtepTable {
    /// Indexed by `VtepId`.
    slots: Vec<Option<Vtep>>,
    /// Indexed by `NetId`.
    nets: Vec<Overlay>,
    /// (sender IP, VNI) -> VTEP.
    by_src: HashMap<(IpAddr, u32), VtepId>,
    by_vni: HashMap<u32, NetId>,
    cfg: VxlanConfig,
    ids: Arc<IdPool>,
    /// VTEPs learned since the worker last looked.
    learned: Vec<VtepInfo>,
}

impl VtepTable {
    pub(crate) fn new(cfg: VxlanConfig, ids: Arc<IdPool>) -> VtepTable {
        VtepTable {
            slots: Vec::new(),
            nets: Vec::new(),
            by_src: HashMap::default(),
            by_vni: HashMap::default(),
            cfg,
            ids,
            learned: Vec::new(),
        }
    }

    #[inline]
    pub(crate) fn get(&self, id: VtepId) -> Option<&Vtep> {
        self.slots.get(id.0 as usize).and_then(Option::as_ref)
    }

    /// The network's overlay, if it ever had a VNI or a VTEP request.
    #[inline]
    pub(crate) fn overlay(&self, net: NetId) -> Option<&Overlay> {
        self.nets.get(net.0 as usize)
    }

    /// The network a VNI belongs to.
    #[inline]
    pub(crate) fn network_of(&self, vni: u32) -> Option<NetId> {
        self.by_vni.get(&vni).copied()
    }

    /// The VTEP that may send from `ip` with `vni`.
    #[inline]
    pub(crate) fn sender(&self, ip: IpAddr, vni: u32) -> Option<VtepId> {
        self.by_src.get(&(ip, vni)).copied()
    }

    fn net_mut(&mut self, id: NetId) -> &mut Overlay {
        let i = id.0 as usize;
        if self.nets.len() <= i {
            self.nets.resize_with(i + 1, Overlay::default);
        }
        &mut self.nets[i]
    }

    /// Sets a network's VNI (or takes it away) and whether it learns VTEPs.
    /// When the VNI changes, senders accepted under the old one are not
    /// accepted any more.
    pub(crate) fn set_network(
        &mut self,
        id: NetId,
        vni: Option<u32>,
        learn: bool,
    ) -> Result<(), VniInUse> {
        if let Some(vni) = vni {
            if self.by_vni.get(&vni).is_some_and(|&n| n != id) {
                return Err(VniInUse(vni));
            }
        }
        let old_vni = self.net_mut(id).vni;
        if let Some(old) = old_vni.filter(|&o| Some(o) != vni) {
            self.by_vni.remove(&old);
            self.by_src.retain(|&(_, v), _| v != old);
        }
        if let Some(vni) = vni {
            self.by_vni.insert(vni, id);
        }
        let net = self.net_mut(id);
        net.vni = vni;
        net.learn = learn;
        Ok(())
    }

    /// Forgets a network's VNI and overlay; its VTEPs must have been
    /// removed first.
    pub(crate) fn remove_network(&mut self, id: NetId) {
        if let Some(net) = self.nets.get_mut(id.0 as usize) {
            if let Some(vni) = net.vni.take() {
                self.by_vni.remove(&vni);
            }
            *net = Overlay::default();
        }
    }

    /// Adds a configured VTEP to its network.
    pub(crate) fn add(&mut self, info: &VtepInfo) -> Result<(), AddError> {
        let Some(vni) = self.net_mut(info.net).vni else {
            return Err(AddError::NoVni);
        };
        if self.by_src.contains_key(&(info.addr.ip(), vni)) {
            return Err(AddError::Exists);
        }
        self.insert(vni, info);
        Ok(())
    }

    /// Takes a VTEP another worker learned, under its id.
    pub(crate) fn adopt(&mut self, info: &VtepInfo) {
        if let Some(vni) = self.overlay(info.net).and_then(|n| n.vni) {
            self.insert(vni, info);
        }
    }

    /// Adds a VTEP under the id it was given (the caller checked the VNI
    /// and duplicates).
    fn insert(&mut self, vni: u32, info: &VtepInfo) {
        let (id, net_id, addr, dynamic) = (info.id, info.net, info.addr, info.dynamic);
        let idx = id.0 as usize;
        if self.slots.len() <= idx {
            self.slots.resize_with(idx + 1, || None);
        }
        if let Some(have) = &self.slots[idx] {
            if have.net == net_id && have.addr == addr {
                // Adopted a VTEP this worker learned itself meanwhile: the
                // same id, so nothing to do.
                return;
            }
            // A stale VTEP under a reused id: replace it.
            self.remove(id);
        }
        self.slots[idx] = Some(Vtep {
            net: net_id,
            addr,
            sockaddr: addr.into(),
            max_frame: self.cfg.max_inner_frame(addr.is_ipv6()),
            stats: info.stats.clone(),
            dynamic,
        });
        self.by_src.insert((addr.ip(), vni), id);
        if let Some(net) = self.nets.get_mut(net_id.0 as usize) {
            net.vteps.push(id);
            if dynamic {
                net.learned += 1;
            }
        }
    }

    /// Accepts an unknown sender as a VTEP if its network learns VTEPs and
    /// has room; the new VTEP is also queued in [`VtepTable::learned`].
    pub(crate) fn learn(
        &mut self,
        net_id: NetId,
        vni: u32,
        from: IpAddr,
        now: Millis,
    ) -> Result<VtepId, VxlanDrop> {
        let net = self.overlay(net_id).ok_or(VxlanDrop::UnknownVni)?;
        if !net.learn {
            return Err(VxlanDrop::UnknownVtep);
        }
        if net.learned >= self.cfg.max_learned_vteps {
            return Err(VxlanDrop::VtepLimit);
        }
        // Replies go to the VXLAN port, not to the sender's (flow-hashed)
        // source port. Another worker may have learned the sender a moment
        // ago: then this one takes the same VTEP, and only the first
        // announces it.
        let addr = SocketAddr::new(from, self.cfg.port);
        let (info, first) = self.ids.learn(net_id, vni, addr, now);
        self.insert(vni, &info);
        let id = info.id;
        if first {
            self.learned.push(info);
        }
        Ok(id)
    }

    /// Learned VTEPs (of any worker) idle for the configured time, each
    /// reported once; whoever removes them frees their ids.
    pub(crate) fn idle(&self, now: Millis) -> Vec<VtepInfo> {
        self.ids.idle(now, self.cfg.learned_vtep_ageing_ms)
    }

    /// The VTEPs learned since the last call.
    pub(crate) fn learned(&mut self) -> std::vec::Drain<'_, VtepInfo> {
        self.learned.drain(..)
    }

    /// Forgets a VTEP; the caller flushes its FDB entries.
    pub(crate) fn remove(&mut self, id: VtepId) -> bool {
        let Some(vtep) = self.slots.get_mut(id.0 as usize).and_then(Option::take) else {
            return false;
        };
        if let Some(net) = self.nets.get_mut(vtep.net.0 as usize) {
            net.vteps.retain(|&v| v != id);
            if vtep.dynamic {
                net.learned = net.learned.saturating_sub(1);
            }
            if let Some(vni) = net.vni {
                self.by_src.remove(&(vtep.addr.ip(), vni));
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: NetId = NetId(1);

    fn table(max_learned: usize) -> VtepTable {
        let cfg = VxlanConfig {
            max_learned_vteps: max_learned,
            ..VxlanConfig::default()
        };
        VtepTable::new(cfg, Arc::new(IdPool::default()))
    }

    fn info(id: u32, addr: &str) -> VtepInfo {
        VtepInfo {
            id: VtepId(id),
            net: NET,
            addr: addr.parse().unwrap(),
            dynamic: false,
            stats: Arc::new(PortStats::default()),
        }
    }

    #[test]
    fn a_vtep_needs_a_vni_and_a_sender_is_accepted_once() {
        let mut t = table(4);
        assert_eq!(t.add(&info(0, "192.0.2.1:4789")), Err(AddError::NoVni));
        t.set_network(NET, Some(42), false).unwrap();
        assert_eq!(t.set_network(NetId(2), Some(42), false), Err(VniInUse(42)));
        t.add(&info(0, "192.0.2.1:4789")).unwrap();
        assert_eq!(t.add(&info(1, "192.0.2.1:4789")), Err(AddError::Exists));
        assert_eq!(t.network_of(42), Some(NET));
        assert_eq!(t.sender("192.0.2.1".parse().unwrap(), 42), Some(VtepId(0)));
        assert_eq!(t.overlay(NET).unwrap().vteps, vec![VtepId(0)]);
        assert!(t.remove(VtepId(0)));
        assert!(!t.remove(VtepId(0)));
        assert_eq!(t.sender("192.0.2.1".parse().unwrap(), 42), None);
    }

    #[test]
    fn learning_is_bounded_and_reported_once() {
        let mut t = table(1);
        t.set_network(NET, Some(7), false).unwrap();
        let from: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(
            t.learn(NET, 7, from, Millis(0)),
            Err(VxlanDrop::UnknownVtep)
        );
        t.set_network(NET, Some(7), true).unwrap();
        let id = t.learn(NET, 7, from, Millis(0)).unwrap();
        let got: Vec<_> = t.learned().collect();
        assert_eq!(got.len(), 1);
        // Replies go to the VXLAN port, not the sender's source port.
        assert_eq!(got[0].addr, SocketAddr::new(from, 4789));
        assert!(got[0].dynamic && got[0].id == id);
        assert_eq!(t.learned().count(), 0);
        let other: IpAddr = "192.0.2.10".parse().unwrap();
        assert_eq!(t.learn(NET, 7, other, Millis(0)), Err(VxlanDrop::VtepLimit));
        // Removing the learned VTEP makes room again.
        assert!(t.remove(id));
        assert!(t.learn(NET, 7, other, Millis(0)).is_ok());
    }

    #[test]
    fn workers_learning_one_sender_share_one_vtep_that_ages_once() {
        let pool = Arc::new(IdPool::default());
        let cfg = VxlanConfig::default();
        let (mut w0, mut w1) = (
            VtepTable::new(cfg, pool.clone()),
            VtepTable::new(cfg, pool.clone()),
        );
        for t in [&mut w0, &mut w1] {
            t.set_network(NET, Some(7), true).unwrap();
        }
        let from: IpAddr = "192.0.2.9".parse().unwrap();
        let id0 = w0.learn(NET, 7, from, Millis(0)).unwrap();
        let id1 = w1.learn(NET, 7, from, Millis(0)).unwrap();
        assert_eq!(id0, id1, "one sender, one id");
        // Only the first learner announces it; the other adopts it again,
        // which changes nothing.
        let announced: Vec<_> = w0.learned().chain(w1.learned()).collect();
        assert_eq!(announced.len(), 1);
        w1.adopt(&announced[0]);
        assert_eq!(w1.overlay(NET).unwrap().vteps, vec![id0]);
        // Traffic keeps it; silence reports it once.
        let stats = w0.get(id0).unwrap().stats.clone();
        stats.rx_frames.inc();
        assert!(pool.idle(Millis(100), 1_000).is_empty());
        assert!(pool.idle(Millis(1_099), 1_000).is_empty());
        let idle = pool.idle(Millis(1_100), 1_000);
        assert_eq!(idle.iter().map(|v| v.id).collect::<Vec<_>>(), vec![id0]);
        assert!(pool.idle(Millis(5_000), 1_000).is_empty());
        // Freed, the sender is a new VTEP next time.
        assert!(w0.remove(id0) && w1.remove(id0));
        pool.free(id0);
        assert!(w0.learn(NET, 7, from, Millis(6_000)).is_ok());
        assert_eq!(w0.learned().count(), 1);
    }

    #[test]
    fn a_new_vni_forgets_the_old_senders() {
        let mut t = table(4);
        t.set_network(NET, Some(1), false).unwrap();
        t.add(&info(0, "192.0.2.1:4789")).unwrap();
        t.set_network(NET, Some(2), false).unwrap();
        assert_eq!(t.network_of(1), None);
        assert_eq!(t.sender("192.0.2.1".parse().unwrap(), 1), None);
        t.remove_network(NET);
        assert_eq!(t.network_of(2), None);
    }

    #[test]
    fn mapped_addresses_are_canonical() {
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:4789".parse().unwrap();
        assert_eq!(canonical(mapped), "192.0.2.1:4789".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:4789".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
