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

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fastpath::{FastPath, FastStats, Mode, PortEntry, Unavailable};
use crate::fdb::{Dest, Filter, NetId};
use crate::observe::capture;
use crate::switch::SourcePolicy;
use crate::wire::MacAddr;

use super::daemon::Daemon;
use super::ports::VethHost;
use super::proto::FastPathStatus;

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

/// Where a daemon on `socket` pins its maps: one directory per network
/// namespace (the host ends' ifindexes are the namespace's) and control
/// socket, so two daemons never share maps and a restarted one finds its
/// own: `/sys/fs/bpf/vxswitch/net4026531840_run_vxswitch_vxswitch_sock`.
pub fn pin_dir_for(socket: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let netns = std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino())
        .unwrap_or(0);
    Path::new(crate::fastpath::DEFAULT_PIN_ROOT)
        .join("vxswitch")
        .join(pin_name(netns, socket))
}

fn pin_name(netns: u64, socket: &Path) -> String {
    let sock: String = socket
        .to_string_lossy()
        .trim_start_matches('/')
        .chars()
        // bpffs refuses names with a dot.
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("net{netns}_{sock}")
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
        match FastPath::load(pin_dir) {
            Ok(fp) => {
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
        let ours: HashMap<u32, (NetId, crate::fdb::PortId)> = self
            .fastpath
            .attached
            .iter()
            .filter_map(|(name, &ifindex)| {
                let p = self.ports.get(name)?;
                Some((ifindex, (p.net, p.id)))
            })
            .collect();
        let stale: Vec<u32> = fp
            .ports()
            .keys()
            .copied()
            .filter(|i| !ours.contains_key(i))
            .collect();
        for ifindex in stale {
            fp.remove_port(ifindex);
        }
        let known: Vec<(MacAddr, u32)> = fp
            .fdb_entries()
            .into_iter()
            .map(|(_, mac, v)| (mac, v.ifindex))
            .collect();
        for &ifindex in ours.keys() {
            let _ = fp.reset_stats(ifindex);
        }
        let (fdb, now) = (self.fdb().clone(), self.clock.now());
        for (mac, ifindex) in known {
            if let Some(&(net, port)) = ours.get(&ifindex) {
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
            ports: self.fastpath.attached.len(),
        }
    }

    /// Puts a new veth port's sockets and host end on the fast path, before
    /// the dataplane has the sockets: the socket filter on every socket
    /// first, then the tc program (never the program without the filter:
    /// the switch would forward its frames a second time). A port off the
    /// fast path (or that cannot be put on it, logged) loses any tc
    /// program an earlier daemon left on its veth first, then its sockets
    /// get the switch's classic filter. The sockets come closed (a filter
    /// that keeps nothing, `ports::veth`), so they queue no frame before
    /// the filter they keep is in place. Fails only when no filter could
    /// be set: the sockets would read nothing.
    pub(super) fn fastpath_prepare(
        &mut self,
        name: &str,
        host: &VethHost,
        sockets: &[&OwnedFd],
    ) -> Result<(), crate::ports::PortError> {
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
                    return Ok(());
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
        crate::ports::veth::open_to_switch(&host.name, sockets)
    }

    /// Takes port `name` off the fast path before its veth goes: its
    /// entries leave the maps first, so none can reach a removed (or
    /// renumbered) interface.
    pub(super) fn fastpath_forget(&mut self, name: &str) {
        let Some(ifindex) = self.fastpath.attached.remove(name) else {
            return;
        };
        if let Some(fp) = self.fastpath.fp.as_mut() {
            fp.remove_port(ifindex);
        }
    }

    /// Keeps the fast path's counters of port `name` (zero when not fast).
    pub(super) fn fast_stats(&self, name: &str) -> Option<FastStats> {
        let ifindex = self.fastpath.attached.get(name)?;
        Some(self.fastpath.fp.as_ref()?.stats(*ifindex))
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
            let want = PortEntry {
                net: p.net,
                port: p.id,
                mac,
                fast: !paused && !guarded && !self.mirrors.contains_key(name),
                mac_lock,
                mtu: p.mtu,
            };
            if fp.port(ifindex) != Some(want) {
                if let Err(e) = fp.set_port(ifindex, &want) {
                    eprintln!("vxswitch: port {name}: {e}");
                }
            }
        }
    }

    /// The FDB map as the switch's FDB says, for MACs behind fast ports;
    /// entries the program used refresh the switch's.
    fn fastpath_sync_fdb(&mut self) {
        let now = self.clock.now();
        let by_port: HashMap<crate::fdb::PortId, u32> = self
            .fastpath
            .attached
            .iter()
            .filter_map(|(name, &ifindex)| Some((self.ports.get(name)?.id, ifindex)))
            .collect();
        let mut want: HashMap<(NetId, MacAddr), (u32, crate::fdb::PortId)> = HashMap::new();
        for e in self.fdb().entries(Filter::default(), now) {
            if let Dest::Local(p) = e.dest {
                if let Some(&ifindex) = by_port.get(&p) {
                    want.insert((e.net, e.mac), (ifindex, p));
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
                Some(&(ifindex, port)) if ifindex == v.ifindex => {
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
        for (&(net, mac), &(ifindex, _)) in &want {
            if let std::collections::hash_map::Entry::Vacant(v) = seen.entry((net, mac)) {
                if let Err(e) = fp.set_fdb(net, mac, ifindex) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_directories_follow_namespace_and_socket_without_dots() {
        let n = pin_name(4026531840, Path::new("/run/vxswitch/vxswitch.sock"));
        assert_eq!(n, "net4026531840_run_vxswitch_vxswitch_sock");
        let d = pin_dir_for(Path::new("/run/vxswitch/vxswitch.sock"));
        assert!(d.starts_with("/sys/fs/bpf/vxswitch"), "{}", d.display());
    }
}
