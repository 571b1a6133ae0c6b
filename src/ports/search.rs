//! Finding sandboxes and TAPs again: the identity of a namespace file, so
//! the control plane can tell a container's namespace that is gone or was
//! replaced from the one it put a port into, and the search for a
//! persistent TAP that someone renamed or moved to another namespace while
//! the daemon was down (Docker's Join does both).
//!
//! Everything here reads `/proc` and the namespace files, or enters
//! namespaces on throwaway threads (see the parent module); nothing is
//! changed except by [`reattach_found`], which opens the TAP it finds.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::{has_persistent_tap, reattach_tap, Netns, PortError, Tap};
use crate::wire::MacAddr;

/// What identifies a namespace: the (device, inode) of its file.
pub type NsIdentity = (u64, u64);

/// Most namespaces [`find_moved_tap`] looks into.
pub const MAX_SEARCHED_NAMESPACES: usize = 4096;

/// The identity of the namespace `n` names now; `None` for the daemon's
/// own namespace ([`Netns::Current`]), or when the file is gone (the
/// namespace was deleted, the process exited).
pub fn identity(n: &Netns) -> Option<NsIdentity> {
    let path = n.path()?;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// What became of a sandbox since its identity was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sandbox {
    /// The file still names the same namespace.
    Same,
    /// The file is gone (`ip netns del`, the container runtime tearing the
    /// sandbox down, the process given by PID exited).
    Gone,
    /// The file names another namespace now (a reused PID or name).
    Replaced,
}

impl Sandbox {
    /// Compares what `n` names now with `was`.
    pub fn check(n: &Netns, was: NsIdentity) -> Sandbox {
        match identity(n) {
            Some(now) if now == was => Sandbox::Same,
            Some(_) => Sandbox::Replaced,
            None => Sandbox::Gone,
        }
    }
}

/// Looks for a persistent TAP named one of `names` with MAC `mac` in the
/// namespaces of running processes other than `skip`: a TAP vxswitch
/// created and someone moved while the daemon was down or before (Docker
/// moves each endpoint's TAP into its container). Bounded by the number of
/// distinct namespaces ([`MAX_SEARCHED_NAMESPACES`]).
pub fn find_moved_tap(skip: &Netns, names: &[&str], mac: MacAddr) -> Option<(Netns, String)> {
    let mut seen = HashSet::new();
    let own = match skip {
        Netns::Current => identity(&Netns::Path(PathBuf::from("/proc/self/ns/net"))),
        other => identity(other),
    };
    seen.extend(own);
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let ns = Netns::Pid(pid);
        let Some(id) = identity(&ns) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        if seen.len() > MAX_SEARCHED_NAMESPACES {
            return None;
        }
        if let Some(name) = names.iter().find(|n| has_persistent_tap(&ns, n, mac)) {
            return Some((ns, name.to_string()));
        }
    }
    None
}

/// Opens again a persistent TAP vxswitch created, wherever it is now:
/// `ifname` in `netns` ([`reattach_tap`]); if there is none by that name,
/// the TAP with MAC `mac` under the name it had last (`renamed`) in the
/// same namespace, or under either name in the namespace of any running
/// process ([`find_moved_tap`]). Runs only for ports being restored at
/// start. The error is the first attempt's when no other place has it.
pub fn reattach_found(
    netns: &Netns,
    ifname: &str,
    renamed: Option<&str>,
    mac: MacAddr,
    vnet_hdr: bool,
    queues: usize,
) -> Result<Tap, PortError> {
    let tap = reattach_tap(netns, ifname, vnet_hdr, queues);
    if !tap.as_ref().is_err_and(is_not_found) {
        return tap;
    }
    let names: Vec<&str> = renamed.into_iter().chain([ifname]).collect();
    if let Some(name) = renamed.filter(|n| has_persistent_tap(netns, n, mac)) {
        reattach_tap(netns, name, vnet_hdr, queues)
    } else if let Some((ns, name)) = find_moved_tap(netns, &names, mac) {
        reattach_tap(&ns, &name, vnet_hdr, queues)
    } else {
        tap
    }
}

/// Whether reattaching failed because there is no such TAP there.
fn is_not_found(e: &PortError) -> bool {
    matches!(e, PortError::AttachTap { source, .. } if source.kind() == io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_name_namespaces_by_file() {
        assert_eq!(identity(&Netns::Current), None);
        assert_eq!(identity(&Netns::Path("/nonexistent/netns/x".into())), None);
        let own = identity(&Netns::Pid(std::process::id()));
        assert!(own.is_some());
        assert_eq!(
            own,
            identity(&Netns::Path("/proc/self/ns/net".into())),
            "a process's namespace is the same by PID and by /proc/self"
        );
        let own = own.unwrap();
        assert_eq!(
            Sandbox::check(&Netns::Pid(std::process::id()), own),
            Sandbox::Same
        );
        assert_eq!(
            Sandbox::check(&Netns::Pid(std::process::id()), (own.0, own.1 + 1)),
            Sandbox::Replaced
        );
        assert_eq!(
            Sandbox::check(&Netns::Path("/nonexistent/netns/x".into()), own),
            Sandbox::Gone
        );
    }

    #[test]
    fn only_a_missing_tap_starts_a_search() {
        let missing = PortError::AttachTap {
            name: "eth0".into(),
            source: io::Error::new(io::ErrorKind::NotFound, "it no longer exists"),
        };
        assert!(is_not_found(&missing));
        let other = PortError::AttachTap {
            name: "eth0".into(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "it is a veth device now"),
        };
        assert!(!is_not_found(&other));
        assert!(!is_not_found(&PortError::OpenTun(
            io::Error::from_raw_os_error(libc::ENOENT)
        )));
    }
}
