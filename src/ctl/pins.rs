//! Where a fast-path daemon's pinned maps live, and the names of its
//! steering interfaces: one directory and one name prefix per network
//! namespace and control socket (`ctl::fastpath`), so a restarted daemon
//! finds its own, and the pins of daemons that are gone are swept.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ports::uplink as link;

/// A daemon's tag for its steering interfaces' names: a hash of its pin
/// directory's name (its namespace and control socket).
pub(super) fn steer_tag(pin_dir: &Path) -> u16 {
    let name = pin_dir.file_name().map_or_else(
        || pin_dir.to_string_lossy().into_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    // FNV-1a, folded to 16 bits.
    let h = name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    ((h >> 16) ^ (h & 0xffff)) as u16
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

/// The name prefix of the steering interfaces a daemon on `socket` (with
/// its maps pinned where [`pin_dir_for`] says) makes in the caller's
/// namespace: what its next start sweeps after a kill, and what a test
/// that killed it removes (`ports::uplink::sweep_steers`).
pub fn steer_prefix_for(socket: &Path) -> String {
    link::steer_prefix(steer_tag(&pin_dir_for(socket)))
}

fn pin_name(netns: u64, socket: &Path) -> String {
    format!("net{netns}_{}", pin_socket_part(&socket.to_string_lossy()))
}

/// The socket's part of a pin directory's name.
fn pin_socket_part(socket: &str) -> String {
    socket
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
        .collect()
}

/// A pin directory's name taken apart: the namespace's inode and the
/// socket's part, or None for a name [`pin_dir_for`] does not make.
fn parse_pin_name(name: &str) -> Option<(u64, &str)> {
    let (ino, sock) = name.strip_prefix("net")?.split_once('_')?;
    Some((ino.parse().ok()?, sock))
}

/// The paths of the listening Unix sockets in a `/proc/PID/net/unix`
/// (`Flags` `00010000`, `__SO_ACCEPTCON`), as pin names have them.
fn listening_sockets(unix: &str) -> std::collections::HashSet<String> {
    unix.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 8 && f[3] == "00010000").then(|| pin_socket_part(&f[7..].join(" ")))
        })
        .collect()
}

/// The inode of the initial PID namespace (`PROC_PID_INIT_INO`): a daemon
/// in it sees every process.
const PID_INIT_INO: u64 = 0xEFFF_FFFC;

/// Removes, beside the pin directory `own` (only under the default
/// `/sys/fs/bpf/vxswitch/`), the pin directories of daemons that are gone:
/// a killed daemon leaves its maps pinned for its next start, whose socket
/// and namespace its directory's name gives. Gone means nothing listens on
/// that socket in that namespace, or no process is left in the namespace.
/// A directory of this daemon's namespace is judged by the namespace's own
/// socket table, which every PID namespace sees whole; one of another
/// namespace only from the initial PID namespace (elsewhere the processes
/// in it may be out of sight, and it is kept). Never `own`: a restart
/// takes it over. Returns what was removed.
pub fn sweep_stale_pins(own: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let root = Path::new(crate::fastpath::DEFAULT_PIN_ROOT).join("vxswitch");
    if own.parent() != Some(root.as_path()) {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let ino_of = |p: &Path| std::fs::metadata(p).map(|m| m.ino()).ok();
    let my_netns = ino_of(Path::new("/proc/self/ns/net"));
    let sees_all = ino_of(Path::new("/proc/self/ns/pid")) == Some(PID_INIT_INO);
    // One process per network namespace, found once if needed.
    let mut members: Option<HashMap<u64, u32>> = None;
    let mut removed = Vec::new();
    for entry in dir.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let Some((ino, sock)) = name.to_str().and_then(parse_pin_name) else {
            continue;
        };
        if path == own || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let unix = if Some(ino) == my_netns {
            std::fs::read_to_string("/proc/self/net/unix").ok()
        } else if sees_all {
            let m = members.get_or_insert_with(netns_members);
            match m.get(&ino) {
                // Nobody left in it: no daemon there.
                None => Some(String::new()),
                Some(pid) => std::fs::read_to_string(format!("/proc/{pid}/net/unix")).ok(),
            }
        } else {
            None
        };
        // Unreadable: kept.
        let Some(unix) = unix else { continue };
        if listening_sockets(&unix).contains(sock) {
            continue;
        }
        if std::fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// A process in each network namespace, by the namespace's inode.
fn netns_members() -> HashMap<u64, u32> {
    use std::os::unix::fs::MetadataExt;
    let mut m = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(meta) = std::fs::metadata(format!("/proc/{pid}/ns/net")) {
            m.entry(meta.ino()).or_insert(pid);
        }
    }
    m
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
        assert_eq!(
            parse_pin_name(&n),
            Some((4026531840, "run_vxswitch_vxswitch_sock"))
        );
        assert_eq!(parse_pin_name("net12x_a"), None);
        assert_eq!(parse_pin_name("other"), None);
    }

    #[test]
    fn listening_sockets_are_read_from_proc_net_unix_as_pin_names_have_them() {
        let unix = "Num       RefCount Protocol Flags    Type St Inode Path
0000000001: 00000002 00000000 00010000 0001 01 31337 /run/vxswitch/vxswitch.sock
0000000002: 00000003 00000000 00000000 0001 03 31338 /tmp/vx/client.sock
0000000003: 00000002 00000000 00010000 0001 01 31339 @abstract
0000000004: 00000002 00000000 00010000 0001 01 31340 /tmp/a dir/s.sock
0000000005: 00000003 00000000 00000000 0001 03  1165
";
        let l = listening_sockets(unix);
        assert!(l.contains("run_vxswitch_vxswitch_sock"), "{l:?}");
        assert!(l.contains("tmp_a_dir_s_sock"), "{l:?}");
        // Connected, not listening: not a daemon.
        assert!(!l.contains("tmp_vx_client_sock"), "{l:?}");
        assert_eq!(l.len(), 3, "{l:?}");
    }
}
