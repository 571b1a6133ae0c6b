//! The eBPF fast path for veth ports (docs/fastpath.md): a tc program on
//! the host end of each fast-path veth hands known unicast frames straight
//! to the destination container (`bpf_redirect_peer`), from BPF maps that
//! the switch keeps in step with its own ports and FDB; a socket filter on
//! the port's packet socket hides those frames from the userspace switch.
//! Everything else goes to the userspace switch unchanged.
//!
//! This module is the loader and the maps' owner, nothing more: the
//! program is C (`bpf/fastpath.bpf.c`), compiled by `build.rs` with clang
//! when it is there, loaded with aya (pure Rust, no libbpf at run time).
//! The control plane (`src/ctl`) decides which ports and MACs go in.

pub mod maps;

use std::collections::HashMap as StdHashMap;
use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap, MapData, PerCpuArray, PerCpuValues};
use aya::programs::tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions};
use aya::programs::{SchedClassifier, SocketFilter, TcAttachType};
use aya::{Ebpf, EbpfLoader};

use crate::fdb::NetId;
use crate::sys::bpf::{is_bpffs, mount_bpffs};
use crate::wire::MacAddr;

pub use maps::{slot_of, FastStats, FdbTarget, FdbVal, PortEntry, UplinkEntry};

/// The compiled program, when clang was there at build time.
#[cfg(vxswitch_bpf)]
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fastpath.bpf.o"));
#[cfg(not(vxswitch_bpf))]
static OBJECT: &[u8] = &[];

/// Whether this binary carries the fast path's program.
pub fn built_in() -> bool {
    !OBJECT.is_empty()
}

/// Where the maps are pinned unless configured otherwise.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf";

/// The tc filter's priority and handle on each host end: fixed, so a
/// restarted daemon replaces its own filter and nobody else's.
const TC_PRIORITY: u16 = 0x7f5c;
const TC_HANDLE: u32 = 0x7f5c;
const TC_PROGRAM: &str = "fp_tc";
/// The same on an uplink's interface (no port lookup: it is no port).
const TC_UPLINK_PROGRAM: &str = "fp_tc_up";
const SOCKET_PROGRAM: &str = "fp_sock";
/// On an uplink's steering interface: drops what its sockets have seen.
const TC_STEER_PROGRAM: &str = "fp_steer_in";
/// The pinned maps.
const MAPS: [&str; 5] = ["fp_ports", "fp_fdb", "fp_stats", "fp_uplinks", "fp_steer"];

/// `daemon --fastpath`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Load the program and put veth ports on the fast path.
    Ebpf,
    /// Userspace only.
    #[default]
    Off,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "ebpf" => Ok(Mode::Ebpf),
            "off" => Ok(Mode::Off),
            _ => Err(format!("unknown fast path {s:?}: expected ebpf or off")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Ebpf => "ebpf",
            Mode::Off => "off",
        })
    }
}

/// Why the fast path is not running; its `Display` is what `status` and
/// the daemon's log say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// `--fastpath off` (the default).
    Off,
    /// The binary was built without clang.
    NotBuilt,
    /// The kernel said EPERM/EACCES: no CAP_BPF or CAP_NET_ADMIN.
    NotPermitted(String),
    /// The BPF filesystem for the pins could not be found or mounted.
    Pins(String),
    /// The kernel refused the maps or the program.
    Kernel(String),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Off => write!(f, "fast path off (start the daemon with --fastpath ebpf)"),
            Unavailable::NotBuilt => write!(
                f,
                "fast path unavailable: built without clang (apt-get install clang libbpf-dev and rebuild)"
            ),
            Unavailable::NotPermitted(e) => write!(
                f,
                "fast path unavailable: the kernel does not allow this process BPF ({e}); \
                 it needs CAP_BPF and CAP_NET_ADMIN (run the daemon as root)"
            ),
            Unavailable::Pins(e) => write!(f, "fast path unavailable: {e}"),
            Unavailable::Kernel(e) => {
                write!(f, "fast path unavailable: the kernel refused the BPF program: {e}")
            }
        }
    }
}

impl StdError for Unavailable {}

/// An error of one port's or entry's fast-path plumbing.
#[derive(Debug)]
pub struct FastPathError(pub String);

impl fmt::Display for FastPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for FastPathError {}

/// An error and all its sources on one line.
fn chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    // A verifier log is long; its first lines say enough for a person.
    if s.len() > 600 {
        let mut cut = 600;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Whether the kernel said EPERM: the process lacks CAP_BPF (or
/// CAP_SYS_ADMIN). Not EACCES, which is also the verifier refusing a
/// program (a program of another shape against old pins, say).
fn is_permission(e: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            if io.raw_os_error() == Some(libc::EPERM) {
                return true;
            }
        }
        cur = c.source();
    }
    e.to_string().contains("Operation not permitted")
}

/// The loaded program and its maps.
pub struct FastPath {
    ebpf: Ebpf,
    ports: HashMap<MapData, u32, maps::PortBytes>,
    fdb: HashMap<MapData, maps::FdbKeyBytes, maps::FdbValBytes>,
    stats: PerCpuArray<MapData, maps::StatsBytes>,
    uplinks: HashMap<MapData, maps::UplinkKeyBytes, maps::UplinkBytes>,
    /// An uplink's ifindex -> its steering interface's.
    steer: HashMap<MapData, u32, u32>,
    pin_dir: PathBuf,
    /// Whether the maps came from earlier pins (a restart) rather than new.
    reused: bool,
}

impl fmt::Debug for FastPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastPath")
            .field("pin_dir", &self.pin_dir)
            .field("reused", &self.reused)
            .finish()
    }
}

impl FastPath {
    /// Loads the program with its maps pinned in `pin_dir` (a directory on
    /// a BPF filesystem, made, and bpffs mounted on `/sys/fs/bpf` when
    /// absent). Maps already pinned there (a daemon before this one) are
    /// reused, with what they hold: the tc filters they feed keep
    /// forwarding meanwhile.
    pub fn load(pin_dir: &Path) -> Result<FastPath, Unavailable> {
        if !built_in() {
            return Err(Unavailable::NotBuilt);
        }
        prepare_pins(pin_dir)?;
        let reused = pin_dir.join("fp_fdb").exists();
        match Self::load_once(pin_dir, reused) {
            Err(Refused {
                permission: false, ..
            }) if reused => {
                // Pins of another build, with other shapes: start afresh
                // (filters still on interfaces keep their maps until the
                // ports are attached again and their filters replaced).
                for m in MAPS {
                    let _ = std::fs::remove_file(pin_dir.join(m));
                }
                Self::load_once(pin_dir, false).map_err(Refused::into_unavailable)
            }
            r => r.map_err(Refused::into_unavailable),
        }
    }

    fn load_once(pin_dir: &Path, reused: bool) -> Result<FastPath, Refused> {
        let mut ebpf = EbpfLoader::new()
            .map_pin_path(pin_dir)
            .load(OBJECT)
            .map_err(|e| Refused::of(&e))?;
        for name in [
            TC_PROGRAM,
            TC_UPLINK_PROGRAM,
            TC_STEER_PROGRAM,
            SOCKET_PROGRAM,
        ] {
            let r = match ebpf.program_mut(name) {
                Some(aya::programs::Program::SchedClassifier(p)) => p.load(),
                Some(aya::programs::Program::SocketFilter(p)) => p.load(),
                _ => return Err(Refused::other(format!("the object lacks {name}"))),
            };
            r.map_err(|e| Refused::of(&e))?;
        }
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| Refused::other(format!("the object lacks the map {name}")))
        };
        let ports = HashMap::try_from(take("fp_ports")?).map_err(|e| Refused::of(&e))?;
        let fdb = HashMap::try_from(take("fp_fdb")?).map_err(|e| Refused::of(&e))?;
        let stats = PerCpuArray::try_from(take("fp_stats")?).map_err(|e| Refused::of(&e))?;
        let uplinks = HashMap::try_from(take("fp_uplinks")?).map_err(|e| Refused::of(&e))?;
        let steer = HashMap::try_from(take("fp_steer")?).map_err(|e| Refused::of(&e))?;
        Ok(FastPath {
            ebpf,
            ports,
            fdb,
            stats,
            uplinks,
            steer,
            pin_dir: pin_dir.to_path_buf(),
            reused,
        })
    }

    /// The directory of the pinned maps.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// True when the maps were found pinned (a restarted daemon).
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Removes the pinned maps (the daemon shut down for good, or a test
    /// cleaning up). Filters still attached keep their maps until detached.
    pub fn unpin(pin_dir: &Path) {
        for m in MAPS {
            let _ = std::fs::remove_file(pin_dir.join(m));
        }
        let _ = std::fs::remove_dir(pin_dir);
        // The daemons' common directory, when this was the last one in it.
        if let Some(parent) = pin_dir.parent().filter(|p| p.ends_with("vxswitch")) {
            let _ = std::fs::remove_dir(parent);
        }
    }

    /// Attaches the tc program to the ingress of `ifname` (a veth's host
    /// end), replacing this daemon's earlier filter there if any. The
    /// filter outlives this process: it goes with the interface or with
    /// [`FastPath::detach_tc`].
    pub fn attach_tc(&mut self, ifname: &str) -> Result<(), FastPathError> {
        self.attach_tc_program(ifname, TC_PROGRAM)
    }

    /// [`FastPath::attach_tc`] for an uplink's interface.
    pub fn attach_uplink_tc(&mut self, ifname: &str) -> Result<(), FastPathError> {
        self.attach_tc_program(ifname, TC_UPLINK_PROGRAM)
    }

    /// The program that drops every frame at the ingress of an uplink's
    /// steering interface `ifname`, once its packet sockets have seen it
    /// (the host's stack saw it on the uplink).
    pub fn attach_steer_tc(&mut self, ifname: &str) -> Result<(), FastPathError> {
        self.attach_tc_program(ifname, TC_STEER_PROGRAM)
    }

    /// Frames the tc program on the uplink `uplink` does not take (and
    /// that are not the host's own) are cloned to the ingress of `steer`.
    pub fn set_steer(&mut self, uplink: u32, steer: u32) -> Result<(), FastPathError> {
        self.steer
            .insert(uplink, steer, 0)
            .map_err(|e| FastPathError(format!("fast path steering map: {}", chain(&e))))
    }

    /// No more clones of `uplink`'s frames.
    pub fn remove_steer(&mut self, uplink: u32) {
        let _ = self.steer.remove(&uplink);
    }

    /// Every (uplink ifindex, steering ifindex) in the map.
    pub fn steers(&self) -> StdHashMap<u32, u32> {
        self.steer.iter().filter_map(Result::ok).collect()
    }

    fn attach_tc_program(&mut self, ifname: &str, program: &str) -> Result<(), FastPathError> {
        let err = |what: &str, e: &dyn StdError| {
            FastPathError(format!("fast path on {ifname}: {what}: {}", chain(e)))
        };
        if let Err(e) = tc::qdisc_add_clsact(ifname) {
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(err("cannot add the clsact qdisc", &e));
            }
        }
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(program)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| FastPathError(format!("{program} is not loaded")))?;
        let opts = || {
            TcAttachOptions::Netlink(NlOptions {
                priority: TC_PRIORITY,
                handle: TC_HANDLE,
            })
        };
        let id = match prog.attach_with_options(ifname, TcAttachType::Ingress, opts()) {
            Ok(id) => id,
            Err(first) => {
                // Ours from a daemon before: replace it in place, so the
                // interface is never without the fast path.
                let old = SchedClassifierLink::attached(
                    ifname,
                    TcAttachType::Ingress,
                    TC_PRIORITY,
                    TC_HANDLE,
                )
                .map_err(|e| err("cannot find the interface", &e))?;
                prog.attach_to_link(old)
                    .map_err(|_| err("cannot attach the tc program", &first))?
            }
        };
        // The link would detach the filter when dropped: the filter must
        // stay when the daemon stops, so forget it (it holds no memory of
        // ours, only the interface's index and the filter's handle).
        let link = prog
            .take_link(id)
            .map_err(|e| err("cannot take the tc link", &e))?;
        std::mem::forget(link);
        Ok(())
    }

    /// Removes this daemon's tc filter from `ifname`; an interface without
    /// it (or gone) is fine.
    pub fn detach_tc(ifname: &str) -> Result<(), FastPathError> {
        Self::detach_tc_program(ifname, TC_PROGRAM)
    }

    /// [`FastPath::detach_tc`] for an uplink's interface.
    pub fn detach_uplink_tc(ifname: &str) -> Result<(), FastPathError> {
        Self::detach_tc_program(ifname, TC_UPLINK_PROGRAM)
    }

    fn detach_tc_program(ifname: &str, program: &str) -> Result<(), FastPathError> {
        match tc::qdisc_detach_program(ifname, TcAttachType::Ingress, program) {
            Ok(()) => Ok(()),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || matches!(e.raw_os_error(), Some(libc::ENODEV) | Some(libc::EINVAL)) =>
            {
                Ok(())
            }
            Err(e) => Err(FastPathError(format!(
                "fast path on {ifname}: cannot remove the tc program: {e}"
            ))),
        }
    }

    /// Attaches the socket filter to a port's packet socket: frames the tc
    /// program will redirect never reach the userspace switch. The filter
    /// lives as long as the socket.
    pub fn attach_socket<S: AsFd>(&mut self, socket: S) -> Result<(), FastPathError> {
        attach_sock_prog(&mut self.ebpf, socket)
    }

    /// Puts (or updates) the port whose host end is `ifindex` (its
    /// counters at `port.slot`: see [`FastPath::reset_stats`]).
    pub fn set_port(&mut self, ifindex: u32, port: &PortEntry) -> Result<(), FastPathError> {
        self.ports
            .insert(ifindex, port.encode(), 0)
            .map_err(|e| FastPathError(format!("fast path port map: {}", chain(&e))))
    }

    /// The port entry of `ifindex`, if any.
    pub fn port(&self, ifindex: u32) -> Option<PortEntry> {
        self.ports
            .get(&ifindex, 0)
            .ok()
            .map(|b| PortEntry::decode(&b))
    }

    /// Every port in the map, by host-end ifindex.
    pub fn ports(&self) -> StdHashMap<u32, PortEntry> {
        self.ports
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| (k, PortEntry::decode(&v)))
            .collect()
    }

    /// Takes the port of `ifindex` off the fast path: first its port entry
    /// (from then on no frame is redirected to or from it), then every FDB
    /// entry behind it, then its counter, whose last value is returned
    /// (and which is set back to zero).
    pub fn remove_port(&mut self, ifindex: u32) -> FastStats {
        let slot = self.port(ifindex).map(|p| p.slot);
        let _ = self.ports.remove(&ifindex);
        let stale: Vec<maps::FdbKeyBytes> = self
            .fdb
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| FdbVal::decode(v).target == FdbTarget::Port(ifindex))
            .map(|(k, _)| k)
            .collect();
        for k in stale {
            let _ = self.fdb.remove(&k);
        }
        let Some(slot) = slot else {
            return FastStats::default();
        };
        let last = self.stats(slot);
        let _ = self.reset_stats(slot);
        last
    }

    /// Puts `mac` in network `net` behind the port of `ifindex`; an entry
    /// already there keeps its last-seen time.
    pub fn set_fdb(&mut self, net: NetId, mac: MacAddr, ifindex: u32) -> Result<(), FastPathError> {
        self.set_fdb_target(net, mac, FdbTarget::Port(ifindex))
    }

    /// Puts `mac` in network `net` behind `target` (a port or an uplink);
    /// an entry already there keeps its last-seen time.
    pub fn set_fdb_target(
        &mut self,
        net: NetId,
        mac: MacAddr,
        target: FdbTarget,
    ) -> Result<(), FastPathError> {
        let key = maps::fdb_key(net, mac);
        if let Ok(v) = self.fdb.get(&key, 0) {
            if FdbVal::decode(&v).target == target {
                return Ok(());
            }
        }
        let v = FdbVal { target, seen_ns: 0 };
        self.fdb
            .insert(key, v.encode(), 0)
            .map_err(|e| FastPathError(format!("fast path FDB map: {}", chain(&e))))
    }

    /// Puts (or updates) an uplink network (`ifindex`, `vlan`, 0:
    /// untagged), its counters at slot `entry.stats`.
    pub fn set_uplink(
        &mut self,
        ifindex: u32,
        vlan: u16,
        entry: &UplinkEntry,
    ) -> Result<(), FastPathError> {
        self.uplinks
            .insert(maps::uplink_key(ifindex, vlan), entry.encode(), 0)
            .map_err(|e| FastPathError(format!("fast path uplink map: {}", chain(&e))))
    }

    /// Every uplink network in the map: ((ifindex, VLAN id), entry).
    pub fn uplinks(&self) -> StdHashMap<(u32, u16), UplinkEntry> {
        self.uplinks
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| (maps::decode_uplink_key(&k), UplinkEntry::decode(&v)))
            .collect()
    }

    /// Takes an uplink network off the fast path: first its entry (from
    /// then on no frame goes fast to or from it), then the FDB entries
    /// behind it. Its counter stays (the port keeps its counts across a
    /// re-attachment); [`FastPath::remove_stats`] removes it.
    pub fn remove_uplink(&mut self, ifindex: u32, vlan: u16) {
        let _ = self.uplinks.remove(&maps::uplink_key(ifindex, vlan));
        let target = FdbTarget::Uplink { ifindex, vlan };
        let stale: Vec<maps::FdbKeyBytes> = self
            .fdb
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| FdbVal::decode(v).target == target)
            .map(|(k, _)| k)
            .collect();
        for k in stale {
            let _ = self.fdb.remove(&k);
        }
    }

    /// Sets the counter at `slot` back to zero (its port left).
    pub fn remove_stats(&mut self, slot: u32) {
        let _ = self.reset_stats(slot);
    }

    /// Removes `mac` of network `net`; true if it was there.
    pub fn remove_fdb(&mut self, net: NetId, mac: MacAddr) -> bool {
        self.fdb.remove(&maps::fdb_key(net, mac)).is_ok()
    }

    /// Every FDB entry in the map.
    pub fn fdb_entries(&self) -> Vec<(NetId, MacAddr, FdbVal)> {
        self.fdb
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| {
                let (net, mac) = maps::decode_fdb_key(&k);
                (net, mac, FdbVal::decode(&v))
            })
            .collect()
    }

    /// The fast path's counters at `slot`, summed over CPUs.
    pub fn stats(&self, slot: u32) -> FastStats {
        let mut sum = FastStats::default();
        if let Ok(per_cpu) = self.stats.get(&slot, 0) {
            for v in per_cpu.iter() {
                sum.add(&FastStats::decode(v));
            }
        }
        sum
    }

    /// Sets the counters at `slot` back to zero (a port takes the slot,
    /// or a restarted daemon starts its own counters from zero too).
    pub fn reset_stats(&mut self, slot: u32) -> Result<(), FastPathError> {
        let zeros = PerCpuValues::try_from(vec![[0u8; 32]; nr_cpus()])
            .map_err(|e| FastPathError(format!("fast path counters: {e}")))?;
        self.stats
            .set(slot, zeros, 0)
            .map_err(|e| FastPathError(format!("fast path counters: {}", chain(&e))))
    }
}

/// Attaches `ebpf`'s socket filter to `socket` (see
/// [`FastPath::attach_socket`]).
fn attach_sock_prog<S: AsFd>(ebpf: &mut Ebpf, socket: S) -> Result<(), FastPathError> {
    let prog: &mut SocketFilter = ebpf
        .program_mut(SOCKET_PROGRAM)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| FastPathError(format!("{SOCKET_PROGRAM} is not loaded")))?;
    let id = prog.attach(socket).map_err(|e| {
        FastPathError(format!(
            "fast path: cannot filter the port's socket: {}",
            chain(&e)
        ))
    })?;
    // Taken out of the program's list, so that nothing detaches it by
    // the socket's raw fd later (another socket by then): the filter
    // goes with its socket. The link itself detaches nothing on drop.
    let _link = prog.take_link(id).map_err(|e| {
        FastPathError(format!(
            "fast path: cannot take the socket link: {}",
            chain(&e)
        ))
    })?;
    Ok(())
}

fn nr_cpus() -> usize {
    aya::util::nr_cpus().unwrap_or(1)
}

/// Why one attempt to load failed, and whether the kernel said "not
/// permitted" (no retry helps then).
struct Refused {
    error: String,
    permission: bool,
}

impl Refused {
    fn of(e: &(dyn StdError + 'static)) -> Refused {
        Refused {
            error: chain(e),
            permission: is_permission(e),
        }
    }

    fn other(error: String) -> Refused {
        Refused {
            error,
            permission: false,
        }
    }

    fn into_unavailable(self) -> Unavailable {
        if self.permission {
            Unavailable::NotPermitted(self.error)
        } else {
            Unavailable::Kernel(self.error)
        }
    }
}

/// Makes `pin_dir`, mounting bpffs on `/sys/fs/bpf` first when the
/// directory's parent filesystem is not one.
fn prepare_pins(pin_dir: &Path) -> Result<(), Unavailable> {
    let root = Path::new(DEFAULT_PIN_ROOT);
    if pin_dir.starts_with(root) && !is_bpffs(root).unwrap_or(false) {
        if let Err(e) = mount_bpffs(root) {
            return Err(Unavailable::Pins(format!(
                "cannot mount the BPF filesystem on {}: {e} (mount it with `mount -t bpf bpf {}`, \
                 run the daemon with CAP_SYS_ADMIN, or give --fastpath-pins DIR on a BPF filesystem)",
                root.display(),
                root.display()
            )));
        }
    }
    std::fs::create_dir_all(pin_dir)
        .map_err(|e| Unavailable::Pins(format!("cannot make {}: {e}", pin_dir.display())))?;
    match is_bpffs(pin_dir) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Unavailable::Pins(format!(
            "{} is not on a BPF filesystem (mount -t bpf bpf on it or a parent)",
            pin_dir.display()
        ))),
        Err(e) => Err(Unavailable::Pins(format!(
            "cannot look at {}: {e}",
            pin_dir.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        assert_eq!("ebpf".parse::<Mode>().unwrap(), Mode::Ebpf);
        assert_eq!("off".parse::<Mode>().unwrap(), Mode::Off);
        let e = "xdp".parse::<Mode>().unwrap_err();
        assert!(e.contains("ebpf or off"), "{e}");
        assert_eq!(Mode::Ebpf.to_string(), "ebpf");
    }

    #[test]
    fn reasons_name_the_problem_and_the_remedy() {
        let s = Unavailable::NotBuilt.to_string();
        assert!(
            s.contains("built without clang") && s.contains("apt-get install clang"),
            "{s}"
        );
        let s = Unavailable::NotPermitted("Operation not permitted".into()).to_string();
        assert!(s.contains("CAP_BPF"), "{s}");
    }
}
