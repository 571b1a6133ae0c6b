//! `daemon --fastpath ebpf`: the control plane's side of the eBPF fast
//! path (`crate::fastpath`, docs/fastpath.md). The daemon keeps the BPF
//! maps in step with its own records, off the hot path:
//!
//! - a veth port's packet sockets get the socket filter before the
//!   dataplane has them, and its host end the tc program
//!   ([`Daemon::fastpath_prepare`]);
//! - its port entry goes in once the port is recorded, and out (with every
//!   FDB entry behind it) before its veth is deleted
//!   ([`Daemon::fastpath_forget`]), so no stale entry reaches a removed port;
//! - [`Daemon::fastpath_sync`], about once a second and after each change
//!   of ports, captures or mirrors, reconciles the whole maps with the FDB
//!   and the ports (the FDB's change feed is lossy and `monitor`'s, so it
//!   is not used): MACs learned behind fast ports go in, aged, flushed or
//!   moved ones go out, and an entry the program used since the last
//!   round refreshes the switch's own entry, so a flow that only takes the
//!   fast path never ages out.
//!
//! A port is fast unless something in userspace must see its frames: the
//! IP guard (the program checks MACs only), a mirror, or any capture.
//!
//! A network's uplink goes on the fast path too: before `ctl::uplink` opens
//! the uplink's sockets, [`Daemon::fastpath_steer`] gives the interface a
//! steering interface (`ports::uplink::create_steer`, one per interface,
//! shared by its VLANs' networks) and the tc program, which clones to it
//! what it does not send fast; the sockets are then bound to the steering
//! interface with their classic VLAN filter, and the switch sends on the
//! uplink through a socket that receives nothing. Each round puts the
//! uplink's (interface, VLAN) entry in while the interface is up and no
//! mirror or capture wants its frames; MACs learned behind it go in as
//! `FdbTarget::Uplink`. Its entries and (when no other network's uplink
//! uses the interface) the tc filter and the steering interface leave when
//! the interface goes away, the network is deleted or the daemon stops:
//! the host's interface is not the daemon's, so it is left as it was
//! found, and LAN traffic waits for the next daemon (veth ports, the
//! daemon's own, stay fast meanwhile). A daemon killed leaves an idle
//! steering interface, which its next start removes (by the name prefix
//! of its control socket and namespace).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::fastpath::{
    slot_of, FastPath, FastStats, FdbTarget, Mode, PortEntry, Unavailable, UplinkEntry,
};
use crate::fdb::{Dest, Filter, NetId};
use crate::observe::capture;
use crate::switch::SourcePolicy;
use crate::wire::MacAddr;

use super::daemon::Daemon;
use super::ports::VethHost;
use super::proto::{FastPathStatus, PortKind};
use crate::ports::uplink::{self as link, LinkState, Steer};

use super::pins::steer_tag;
pub use super::pins::{pin_dir_for, steer_prefix_for, sweep_stale_pins};

/// A port's sockets for the dataplane: the first receiving one, one per
/// further worker, and the one it sends through if apart.
pub(super) type PortSockets = (OwnedFd, Vec<OwnedFd>, Option<OwnedFd>);

/// The fast path's state in the daemon.
#[derive(Default)]
pub(super) struct FastPathCtl {
    mode: Mode,
    fp: Option<FastPath>,
    why_not: Option<Unavailable>,
    /// Host ends with the tc program and filtered sockets, by port name.
    attached: BTreeMap<String, u32>,
    /// The last-seen stamp of each map entry at the last round.
    seen: HashMap<(NetId, MacAddr), u64>,
    /// Ports stay off the fast path until then (a capture starting).
    paused_until: Option<Instant>,
    /// A map refused an entry: said once, not every round.
    warned: bool,
    /// Ports added with `fastpath: false`: never on the fast path.
    opted_out: std::collections::BTreeSet<String>,
    /// Uplinks whose sockets are on their steering interface and whose
    /// interface has the tc program, by uplink port name.
    uplinks: BTreeMap<String, FastUplink>,
    /// The steering interfaces, by their uplink's ifindex.
    steers: BTreeMap<u32, Steer>,
    /// This daemon's part of their names (`link::steer_prefix`).
    steer_tag: u16,
    /// The `fp_stats` slots this daemon counts in (set to zero when a
    /// port first takes one, and when it leaves).
    counting: std::collections::HashSet<u32>,
}

/// An uplink on the fast path.
#[derive(Clone, Debug)]
struct FastUplink {
    network: String,
    ifname: String,
    ifindex: u32,
    /// The network's VLAN id, 0: untagged.
    vlan: u16,
}

impl std::fmt::Debug for FastPathCtl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPathCtl")
            .field("mode", &self.mode)
            .field("active", &self.fp.is_some())
            .finish_non_exhaustive()
    }
}

impl FastPathCtl {
    /// The daemon stops: its veths go with it (their entries go first), or
    /// stay for the next start with a state directory (their entries stay
    /// too, so known flows keep forwarding while no daemon runs).
    pub(super) fn on_stop(&mut self, veths_stay: bool) {
        // The uplinks' interfaces are the host's: left as they were found.
        let names: Vec<String> = self.uplinks.keys().cloned().collect();
        for name in names {
            self.uplink_off(&name);
        }
        self.release_steers(true);
        if veths_stay {
            return;
        }
        if let Some(fp) = self.fp.as_mut() {
            for &ifindex in self.attached.values() {
                fp.remove_port(ifindex);
            }
            // Nothing left to forward for: no pins left behind either.
            if fp.ports().is_empty() {
                FastPath::unpin(fp.pin_dir());
            }
        }
    }
}

impl FastPathCtl {
    /// Takes the uplink `name` off the fast path: its entries first, then
    /// the tc filter on its interface unless another network's uplink
    /// still uses it.
    fn uplink_off(&mut self, name: &str) {
        let Some(u) = self.uplinks.remove(name) else {
            return;
        };
        if let Some(fp) = self.fp.as_mut() {
            fp.remove_uplink(u.ifindex, u.vlan);
        }
        if !self.uplinks.values().any(|o| o.ifindex == u.ifindex) {
            if let Err(e) = FastPath::detach_uplink_tc(&u.ifname) {
                eprintln!("vxswitch: uplink {}: {e}", u.ifname);
            }
            if let Some(fp) = self.fp.as_mut() {
                fp.remove_steer(u.ifindex);
            }
        }
    }

    /// Removes the steering interfaces no uplink or veth port on the fast
    /// path uses, or `all` of them (the daemon stops); call once the
    /// dataplane has let go of their sockets.
    fn release_steers(&mut self, all: bool) {
        let unused: Vec<u32> = self
            .steers
            .keys()
            .copied()
            .filter(|i| {
                all || !(self.uplinks.values().any(|u| u.ifindex == *i)
                    || self.attached.values().any(|a| a == i))
            })
            .collect();
        for i in unused {
            if let Some(s) = self.steers.remove(&i) {
                if let Some(fp) = self.fp.as_mut() {
                    fp.remove_steer(i);
                }
                if let Err(e) = link::delete_steer(&s) {
                    eprintln!(
                        "vxswitch: cannot remove the steering interface {}: {e}",
                        s.name
                    );
                }
            }
        }
    }
}

impl Daemon {
    /// Turns the fast path on (`Mode::Ebpf`) with its maps pinned in
    /// `pin_dir`, or records why not. Returns the line to log: the reason
    /// it is unavailable (the daemon then forwards in userspace), or None.
    pub fn start_fastpath(&mut self, mode: Mode, pin_dir: &Path) -> Option<String> {
        self.fastpath.mode = mode;
        if mode == Mode::Off {
            self.fastpath.why_not = Some(Unavailable::Off);
            return None;
        }
        let swept = sweep_stale_pins(pin_dir);
        if !swept.is_empty() {
            let list: Vec<String> = swept.iter().map(|p| p.display().to_string()).collect();
            eprintln!(
                "vxswitch: fast path: removed the pinned maps of {} daemon{} that {} gone \
                 (nothing listens on its socket, or its namespace is gone): {}",
                swept.len(),
                if swept.len() == 1 { "" } else { "s" },
                if swept.len() == 1 { "is" } else { "are" },
                list.join(", ")
            );
        }
        self.fastpath.steer_tag = steer_tag(pin_dir);
        match FastPath::load(pin_dir) {
            Ok(fp) => {
                // Steering interfaces a killed run of this daemon left.
                match link::sweep_steers(&link::steer_prefix(self.fastpath.steer_tag)) {
                    Ok(gone) if !gone.is_empty() => eprintln!(
                        "vxswitch: fast path: removed the steering interfaces an earlier run \
                         left: {}",
                        gone.join(", ")
                    ),
                    Ok(_) => {}
                    Err(e) => eprintln!(
                        "vxswitch: fast path: cannot look for the steering interfaces of an \
                         earlier run: {e}"
                    ),
                }
                // Maps a daemon before this one left keep forwarding its
                // flows until the restore has found its ports again
                // (`fastpath_after_restore`).
                self.fastpath.fp = Some(fp);
                self.fastpath.why_not = None;
                None
            }
            Err(e) => {
                let line = format!("vxswitch: {e}; forwarding in userspace only");
                self.fastpath.why_not = Some(e);
                Some(line)
            }
        }
    }

    /// After the state directory's ports are back: the maps a daemon before
    /// this one left (pinned, when they survived) are taken over. Entries
    /// of ports that did not come back go; MACs the program knew behind
    /// ports that did are learned again by the switch (its FDB starts
    /// empty), under their port's network as this daemon numbers it; then
    /// a round rewrites the maps from the switch's own records. Counters
    /// start from zero, as the switch's do.
    pub fn fastpath_after_restore(&mut self) {
        let Some(fp) = self.fastpath.fp.as_mut() else {
            return;
        };
        if !fp.reused() {
            return;
        }
        let ours: HashMap<FdbTarget, (NetId, crate::fdb::PortId)> = self
            .fastpath
            .attached
            .iter()
            .filter_map(|(name, &ifindex)| {
                let p = self.ports.get(name)?;
                Some((FdbTarget::Port(ifindex), (p.net, p.id)))
            })
            .chain(self.fastpath.uplinks.iter().filter_map(|(name, u)| {
                let p = self.ports.get(name)?;
                let t = FdbTarget::Uplink {
                    ifindex: u.ifindex,
                    vlan: u.vlan,
                };
                Some((t, (p.net, p.id)))
            }))
            .collect();
        let stale: Vec<u32> = fp
            .ports()
            .keys()
            .copied()
            .filter(|i| !ours.contains_key(&FdbTarget::Port(*i)))
            .collect();
        for ifindex in stale {
            fp.remove_port(ifindex);
        }
        let known: Vec<(MacAddr, FdbTarget)> = fp
            .fdb_entries()
            .into_iter()
            .map(|(_, mac, v)| (mac, v.target))
            .collect();
        for (_, port) in ours.values() {
            if let Some(slot) = slot_of(*port) {
                let _ = fp.reset_stats(slot);
                self.fastpath.counting.insert(slot);
            }
        }
        let (fdb, now) = (self.fdb().clone(), self.clock.now());
        for (mac, target) in known {
            if let Some(&(net, port)) = ours.get(&target) {
                fdb.learn(net, mac, Dest::Local(port), now);
            }
        }
        self.fastpath_sync();
    }

    /// Records `port.add`'s `fastpath` for port `name` (before it is made).
    pub(super) fn fastpath_choose(&mut self, name: &str, choice: Option<bool>) {
        if choice == Some(false) {
            self.fastpath.opted_out.insert(name.to_string());
        } else {
            self.fastpath.opted_out.remove(name);
        }
    }

    /// `port.add`'s `fastpath` of port `name`, for the state file.
    pub(super) fn fastpath_choice(&self, name: &str) -> Option<bool> {
        self.fastpath.opted_out.contains(name).then_some(false)
    }

    /// What `stats` says of the fast path.
    pub(super) fn fastpath_status(&self) -> FastPathStatus {
        FastPathStatus {
            mode: self.fastpath.mode.to_string(),
            active: self.fastpath.fp.is_some(),
            reason: self.fastpath.why_not.as_ref().map(|w| w.to_string()),
            ports: self.fastpath.attached.len() + self.fastpath.uplinks.len(),
        }
    }

    /// Puts a new veth port's sockets and host end on the fast path, before
    /// the dataplane has the sockets, and returns the sockets it is to have
    /// (receiving, and sending apart when they receive elsewhere).
    ///
    /// Where it can, the port gets a steering interface: new sockets
    /// receive there, with the switch's classic filter, what the tc program
    /// on the host end does not send fast, and one on the host end sends;
    /// `sockets` (on the host end, closed) are dropped. So no socket of the
    /// switch is in the host end's taps, which every frame passes before
    /// tc: a fast frame costs one decision, not a socket filter's and the
    /// program's. Where it cannot (logged), `sockets` stay, with the fast
    /// path's socket filter, then the tc program (never the program without
    /// the filter: the switch would forward its frames a second time).
    ///
    /// A port off the fast path (or that cannot be put on it, logged) loses
    /// any tc program an earlier daemon left on its veth first, then its
    /// sockets get the switch's classic filter. The sockets come closed (a
    /// filter that keeps nothing, `ports::veth`), so they queue no frame
    /// before the filter they keep is in place. Fails only when no filter
    /// could be set: the sockets would read nothing.
    pub(super) fn fastpath_prepare(
        &mut self,
        name: &str,
        host: &VethHost,
        (fd, extra): (OwnedFd, Vec<OwnedFd>),
        vnet: bool,
        mtu: u32,
    ) -> Result<PortSockets, crate::ports::PortError> {
        if self.fastpath.fp.is_some() && !self.fastpath.opted_out.contains(name) {
            match self.fastpath_port_steer(host, extra.len() + 1, vnet, mtu) {
                Ok(s) => {
                    self.fastpath.attached.insert(name.to_string(), host.index);
                    return Ok((s.fd, s.extra_queues, Some(s.tx)));
                }
                Err(e) => eprintln!(
                    "vxswitch: port {name}: no steering interface ({e}); its sockets stay on \
                     its host end, behind the fast path's socket filter"
                ),
            }
        }
        let sockets: Vec<&OwnedFd> = std::iter::once(&fd).chain(&extra).collect();
        if let Some(fp) = self
            .fastpath
            .fp
            .as_mut()
            .filter(|_| !self.fastpath.opted_out.contains(name))
        {
            let r = sockets
                .iter()
                .try_for_each(|s| fp.attach_socket(s.as_fd()))
                .and_then(|()| fp.attach_tc(&host.name));
            match r {
                Ok(()) => {
                    self.fastpath.attached.insert(name.to_string(), host.index);
                    return Ok((fd, extra, None));
                }
                Err(e) => eprintln!("vxswitch: port {name} stays off the fast path: {e}"),
            }
        }
        // Off the fast path: a program an earlier daemon left on a veth it
        // kept must go before the switch reads the port, or its frames
        // would be forwarded by that program and by the switch alike.
        if let Err(e) = FastPath::detach_tc(&host.name) {
            eprintln!("vxswitch: port {name}: {e}");
        }
        crate::ports::veth::open_to_switch(&host.name, &sockets)?;
        Ok((fd, extra, None))
    }

    /// The steering interface of the veth port whose host end is `host`
    /// (made, with the program that drops what reached it), `queues`
    /// sockets receiving on it and one sending on the host end, its entry
    /// in the steering map, then the tc program on the host end. On error
    /// what was made goes again.
    fn fastpath_port_steer(
        &mut self,
        host: &VethHost,
        queues: usize,
        vnet: bool,
        mtu: u32,
    ) -> Result<crate::ports::veth::Steered, String> {
        let tag = self.fastpath.steer_tag;
        let fp = self.fastpath.fp.as_mut().ok_or("the fast path is off")?;
        // The steering interface answers to the host end's MAC, so the
        // kernel classes what it redirects there as on the host end.
        let mac = link::probe(&host.name).ok().and_then(|p| p.mac);
        let steer = link::create_steer(&link::steer_name(tag, host.index), mtu, mac)
            .map_err(|e| e.to_string())?;
        let r = fp
            .attach_steer_tc(&steer.name)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                crate::ports::veth::open_steered(&host.name, host.index, steer.index, queues, vnet)
                    .map_err(|e| e.to_string())
            })
            .and_then(|s| {
                fp.set_steer(host.index, steer.index)
                    .and_then(|()| fp.attach_tc(&host.name))
                    .map_err(|e| e.to_string())
                    .map(|()| s)
            });
        match r {
            Ok(s) => {
                if let Some(old) = self.fastpath.steers.insert(host.index, steer) {
                    if let Err(e) = link::delete_steer(&old) {
                        eprintln!(
                            "vxswitch: cannot remove the steering interface {}: {e}",
                            old.name
                        );
                    }
                }
                Ok(s)
            }
            Err(e) => {
                fp.remove_steer(host.index);
                let _ = link::delete_steer(&steer);
                Err(e)
            }
        }
    }

    /// Takes port `name` off the fast path before its veth goes: its
    /// entries leave the maps first, so none can reach a removed (or
    /// renumbered) interface.
    pub(super) fn fastpath_forget(&mut self, name: &str) {
        let Some(ifindex) = self.fastpath.attached.remove(name) else {
            return;
        };
        if let Some(fp) = self.fastpath.fp.as_mut() {
            if let Some(p) = fp.port(ifindex) {
                self.fastpath.counting.remove(&p.slot);
            }
            fp.remove_port(ifindex);
        }
    }

    /// Keeps the fast path's counters of port `name` (zero when not fast).
    pub(super) fn fast_stats(&self, name: &str) -> Option<FastStats> {
        let fp = self.fastpath.fp.as_ref()?;
        let p = self.ports.get(name)?;
        // An uplink's counter outlives its interface (re-attached under
        // the same port): kept until its network goes.
        if !self.fastpath.attached.contains_key(name) && p.kind != PortKind::Uplink {
            return None;
        }
        Some(slot_of(p.id).map_or_else(FastStats::default, |s| fp.stats(s)))
    }

    /// Readies uplink interface `ifname` (`ifindex`, `mtu`, `mac`) for the
    /// fast path before its sockets are opened: its steering interface (made
    /// now unless another network's uplink on the interface made it), with
    /// the program that drops what reached it, its entry in the steering
    /// map, then the tc program on the interface. Returns the steering
    /// interface's index, to which the sockets must be bound; None when the
    /// fast path is off or could not be readied (logged): the uplink's
    /// sockets are then on the interface itself, as without the fast path.
    /// No frame goes fast before the next round puts the uplink's entry in;
    /// until then the tc program clones every frame to the switch.
    pub(super) fn fastpath_steer(
        &mut self,
        ifname: &str,
        ifindex: u32,
        mtu: u32,
        mac: Option<MacAddr>,
    ) -> Option<u32> {
        let tag = self.fastpath.steer_tag;
        let fp = self.fastpath.fp.as_mut()?;
        if let Some(s) = self.fastpath.steers.get(&ifindex) {
            return Some(s.index);
        }
        let name = link::steer_name(tag, ifindex);
        let steer = match link::create_steer(&name, mtu, mac) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("vxswitch: uplink {ifname} stays off the fast path: {e}");
                return None;
            }
        };
        let r = fp
            .attach_steer_tc(&steer.name)
            .and_then(|()| fp.set_steer(ifindex, steer.index))
            .and_then(|()| fp.attach_uplink_tc(ifname));
        if let Err(e) = r {
            eprintln!("vxswitch: uplink {ifname} stays off the fast path: {e}");
            fp.remove_steer(ifindex);
            let _ = FastPath::detach_uplink_tc(ifname);
            let _ = link::delete_steer(&steer);
            return None;
        }
        let index = steer.index;
        self.fastpath.steers.insert(ifindex, steer);
        Some(index)
    }

    /// Records network `network`'s uplink port `port`, whose sockets were
    /// just opened on the steering interface of `ifname` (`ifindex`), as
    /// on the fast path; each round then keeps its entry.
    pub(super) fn fastpath_uplink_prepare(
        &mut self,
        network: &str,
        port: &str,
        ifname: &str,
        ifindex: u32,
        vlan: Option<u16>,
    ) {
        if self
            .fastpath
            .uplinks
            .get(port)
            .is_some_and(|u| u.ifindex != ifindex)
        {
            self.fastpath_uplink_forget(port);
        }
        self.fastpath.uplinks.insert(
            port.to_string(),
            FastUplink {
                network: network.to_string(),
                ifname: ifname.to_string(),
                ifindex,
                vlan: vlan.unwrap_or(0),
            },
        );
    }

    /// The uplink's interface `ifindex` has a new `mtu` or `mac`: its
    /// steering interface follows (so frames of that size still pass to
    /// it, with the same `pkt_type`).
    pub(super) fn fastpath_steer_follow(&mut self, ifindex: u32, mtu: u32, mac: Option<MacAddr>) {
        let Some(s) = self.fastpath.steers.get_mut(&ifindex) else {
            return;
        };
        if s.mtu == mtu && s.mac == mac {
            return;
        }
        if let Err(e) = link::follow_steer(s, mtu, mac) {
            eprintln!(
                "vxswitch: cannot give the steering interface {} the uplink's MTU and MAC: {e}",
                s.name
            );
        }
    }

    /// Removes the steering interfaces no uplink uses any more; call once
    /// the dataplane has let go of their sockets.
    pub(super) fn fastpath_release_steers(&mut self) {
        self.fastpath.release_steers(false);
    }

    /// Takes uplink port `port` off the fast path (its interface went, or
    /// its network is going): entries first, then the interface's tc filter
    /// if no other network's uplink uses it.
    pub(super) fn fastpath_uplink_forget(&mut self, port: &str) {
        self.fastpath.uplink_off(port);
    }

    /// The network of uplink port `port` is deleted: its counter goes too.
    pub(super) fn fastpath_uplink_remove(&mut self, port: &str) {
        self.fastpath_uplink_forget(port);
        let slot = self.ports.get(port).and_then(|p| slot_of(p.id));
        if let (Some(fp), Some(slot)) = (self.fastpath.fp.as_mut(), slot) {
            fp.remove_stats(slot);
            self.fastpath.counting.remove(&slot);
        }
    }

    /// Keeps the ports off the fast path for a moment (a capture starting:
    /// it sees every frame once it runs, and the next round sees it run).
    pub(super) fn fastpath_pause(&mut self) {
        self.fastpath.paused_until = Some(Instant::now() + Duration::from_secs(2));
        self.fastpath_sync_ports();
    }

    /// One round: the port entries, then the FDB entries. Cheap enough to
    /// run every second (a map walk and the FDB's entries).
    pub fn fastpath_sync(&mut self) {
        if self.fastpath.fp.is_none() {
            return;
        }
        self.fastpath_sync_ports();
        self.fastpath_sync_fdb();
    }

    /// The port entries as the records say.
    pub(super) fn fastpath_sync_ports(&mut self) {
        let paused = capture::on()
            || self
                .fastpath
                .paused_until
                .is_some_and(|t| Instant::now() < t);
        let Some(fp) = self.fastpath.fp.as_mut() else {
            return;
        };
        for (name, &ifindex) in &self.fastpath.attached {
            let Some(p) = self.ports.get(name) else {
                continue;
            };
            let (mac, mac_lock, guarded) = match &p.policy {
                SourcePolicy::Open => (p.mac.unwrap_or(MacAddr([0; 6])), false, false),
                SourcePolicy::Mac(m) => (*m, true, false),
                SourcePolicy::Guarded(_) => (p.mac.unwrap_or(MacAddr([0; 6])), true, true),
            };
            // Counted at its port id's slot, from zero; none left: slow.
            let slot = slot_of(p.id);
            if let Some(s) = slot.filter(|s| self.fastpath.counting.insert(*s)) {
                let _ = fp.reset_stats(s);
            }
            let want = PortEntry {
                net: p.net,
                port: p.id,
                mac,
                fast: slot.is_some() && !paused && !guarded && !self.mirrors.contains_key(name),
                mac_lock,
                mtu: p.mtu,
                slot: slot.unwrap_or(0),
            };
            if fp.port(ifindex) != Some(want) {
                if let Err(e) = fp.set_port(ifindex, &want) {
                    eprintln!("vxswitch: port {name}: {e}");
                }
            }
        }
        // Uplinks: fast while their interface is up and attached, and
        // nothing in userspace must see their frames. Entries of no uplink
        // of ours (an earlier daemon's) go.
        let mut wanted = std::collections::HashSet::new();
        for (name, u) in &self.fastpath.uplinks {
            let Some(p) = self.ports.get(name) else {
                continue;
            };
            let up = self
                .networks
                .get(&u.network)
                .and_then(|n| n.uplink.as_ref())
                .is_some_and(|l| l.state == LinkState::Up && l.attached == Some(u.ifindex));
            let slot = slot_of(p.id);
            if let Some(s) = slot.filter(|s| self.fastpath.counting.insert(*s)) {
                let _ = fp.reset_stats(s);
            }
            let want = UplinkEntry {
                net: p.net,
                port: p.id,
                stats: slot.unwrap_or(0),
                mtu: p.mtu,
                fast: slot.is_some() && up && !paused && !self.mirrors.contains_key(name),
            };
            wanted.insert((u.ifindex, u.vlan));
            if fp.uplinks().get(&(u.ifindex, u.vlan)) != Some(&want) {
                if let Err(e) = fp.set_uplink(u.ifindex, u.vlan, &want) {
                    eprintln!("vxswitch: uplink {name}: {e}");
                }
            }
        }
        let stale: Vec<(u32, u16)> = fp
            .uplinks()
            .into_keys()
            .filter(|k| !wanted.contains(k))
            .collect();
        for (ifindex, vlan) in stale {
            fp.remove_uplink(ifindex, vlan);
        }
        // Steering entries of no steering interface of ours (an earlier
        // daemon's) go; so do steering interfaces no uplink took.
        let stale: Vec<u32> = fp
            .steers()
            .into_iter()
            .filter(|(i, s)| self.fastpath.steers.get(i).map(|o| o.index) != Some(*s))
            .map(|(i, _)| i)
            .collect();
        for i in stale {
            fp.remove_steer(i);
        }
        self.fastpath.release_steers(false);
    }

    /// The FDB map as the switch's FDB says, for MACs behind fast ports;
    /// entries the program used refresh the switch's.
    fn fastpath_sync_fdb(&mut self) {
        let now = self.clock.now();
        let by_port: HashMap<crate::fdb::PortId, FdbTarget> = self
            .fastpath
            .attached
            .iter()
            .filter_map(|(name, &ifindex)| {
                Some((self.ports.get(name)?.id, FdbTarget::Port(ifindex)))
            })
            .chain(self.fastpath.uplinks.iter().filter_map(|(name, u)| {
                let t = FdbTarget::Uplink {
                    ifindex: u.ifindex,
                    vlan: u.vlan,
                };
                Some((self.ports.get(name)?.id, t))
            }))
            .collect();
        let mut want: HashMap<(NetId, MacAddr), (FdbTarget, crate::fdb::PortId)> = HashMap::new();
        for e in self.fdb().entries(Filter::default(), now) {
            if let Dest::Local(p) = e.dest {
                if let Some(&target) = by_port.get(&p) {
                    want.insert((e.net, e.mac), (target, p));
                }
            }
        }
        let Some(fp) = self.fastpath.fp.as_mut() else {
            return;
        };
        let mut seen = HashMap::with_capacity(want.len());
        let mut refresh = Vec::new();
        for (net, mac, v) in fp.fdb_entries() {
            match want.get(&(net, mac)) {
                Some(&(target, port)) if target == v.target => {
                    if v.seen_ns != 0 && self.fastpath.seen.get(&(net, mac)) != Some(&v.seen_ns) {
                        refresh.push((net, mac, port));
                    }
                    seen.insert((net, mac), v.seen_ns);
                }
                _ => {
                    fp.remove_fdb(net, mac);
                }
            }
        }
        for (&(net, mac), &(target, _)) in &want {
            if let std::collections::hash_map::Entry::Vacant(v) = seen.entry((net, mac)) {
                if let Err(e) = fp.set_fdb_target(net, mac, target) {
                    if !std::mem::replace(&mut self.fastpath.warned, true) {
                        eprintln!(
                            "vxswitch: fast path: {e}; MACs that do not fit take the \
                             userspace path"
                        );
                    }
                    break;
                }
                v.insert(0);
            }
        }
        self.fastpath.seen = seen;
        // Frames that went fast refresh the switch's entries, as frames
        // through the switch would have.
        let fdb = self.fdb().clone();
        for (net, mac, port) in refresh {
            fdb.learn(net, mac, Dest::Local(port), now);
        }
    }
}
