//! The state file of `vxswitch daemon --state-dir DIR`: what the control
//! socket configured (networks, VTEPs, ports, static FDB entries), kept in
//! `DIR/state.json` so that a restarted daemon can put it back and
//! re-attach the TAPs it left in the containers (see
//! `docs/architecture.md`, "Restarts and state").
//!
//! The file is JSON, one object, written by the control thread only (never
//! on the dataplane's path) after every change, and atomically: the bytes
//! go to `state.json.tmp`, which is `fsync`ed and renamed over
//! `state.json`, and then the directory is `fsync`ed, so a crash or power
//! loss leaves the old file or the new one, never a mix. Unknown fields
//! are refused: a file the daemon does not fully understand stops it with a
//! message naming the file, rather than restoring half of it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::proto::{FdbAdd, NetworkCreate};
use crate::wire::MacAddr;

/// The file's name inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// The file naming the daemon that uses the directory (its PID).
pub const PID_FILE: &str = "daemon.pid";
/// The layout written by this version; a file with another is refused.
pub const STATE_VERSION: u32 = 1;

/// Everything the daemon restores, in restore order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    pub version: u32,
    #[serde(default)]
    pub networks: Vec<SavedNetwork>,
    #[serde(default)]
    pub ports: Vec<SavedPort>,
    /// Static FDB entries, as `fdb.add` takes them.
    #[serde(default)]
    pub static_fdb: Vec<FdbAdd>,
    /// What the cluster made the daemon apply (`daemon --cluster`): put
    /// back at the start so traffic flows before etcd answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<super::cluster::SavedCluster>,
}

/// A network: the `network.create` request as given, and what changed
/// since (its MTU is pinned, its VTEPs are the configured ones now).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedNetwork {
    pub create: NetworkCreate,
    /// The MTU the network got (the default depends on the underlay).
    pub mtu: u32,
    /// Configured VTEPs (`ADDR:PORT`); learned ones are learned again.
    #[serde(default)]
    pub vteps: Vec<String>,
    /// The gateway port's MAC, kept so containers' ARP caches stay right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_mac: Option<MacAddr>,
}

/// How a saved port's TAP came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SavedKind {
    /// vxswitch created it (persistent): re-attached by name in its namespace.
    Created,
    /// It existed before (`port add --existing`): attached again by name.
    Existing,
    /// A veth pair vxswitch made (`--backend veth`): its host end is
    /// attached again by name in the daemon's namespace.
    Veth,
}

/// A port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPort {
    pub name: String,
    pub network: String,
    pub kind: SavedKind,
    /// The namespace file it was created in (`None`: see `pid`, or the
    /// daemon's own namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// (device, inode) of that namespace when the port was made: a file
    /// that names another namespace now (a reused PID, a new namespace
    /// under the old name) is not the container's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<(u64, u64)>,
    pub ifname: String,
    /// The name the TAP had when last looked at, when someone renamed it
    /// (Docker moves the TAP into the container as `eth0`): where to look
    /// if it is no longer at `ifname` in its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed: Option<String>,
    pub mac: MacAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpNet>,
    pub mtu: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// `port.add`'s `offload` as given (`None`: the daemon's setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<bool>,
    /// `port.add`'s `port_security` as given (`None`: on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security: Option<bool>,
    /// `port.add`'s `ip_guard`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ip_guard: bool,
    /// A veth port's host end in the daemon's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ifname: Option<String>,
    /// `port.add`'s `fastpath` as given (`None`: on the fast path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fastpath: Option<bool>,
}

/// A state file that cannot be used, naming the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "cannot create the state directory {}: {source} (run as root, or choose a writable \
         place with --state-dir)",
        dir.display()
    )]
    CreateDir { dir: PathBuf, source: io::Error },
    #[error("cannot read state file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "cannot write state file {}: {source} (run as root, or choose a writable place with \
         --state-dir)",
        path.display()
    )]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "state directory {} is in use by the vxswitch daemon with PID {pid}; two daemons \
         must not share one (they would fight over the TAPs): stop it, or give this one \
         another --state-dir",
        dir.display()
    )]
    InUse { dir: PathBuf, pid: u32 },
    #[error(
        "state file {} is corrupt: {message}; the daemon will not start without what it \
         records: repair it, or move it away to start with no networks and ports (TAPs left \
         in containers then stay until deleted with 'ip link del')",
        path.display()
    )]
    Corrupt { path: PathBuf, message: String },
}

/// The state directory and the last bytes written to it.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// What `state.json` holds now, to skip writes that change nothing.
    last: Option<Vec<u8>>,
    /// The last write failed: say so once, and again when it works.
    failing: bool,
}

impl Store {
    /// Makes `dir` (mode 0700) if needed and reads the state file in it,
    /// if there is one.
    pub fn open(dir: &Path) -> Result<(Store, Option<StateFile>), StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StateError::CreateDir {
                dir: dir.to_path_buf(),
                source,
            })?;
        claim(dir)?;
        let path = dir.join(STATE_FILE);
        let (file, last) = match fs::read(&path) {
            Ok(bytes) => (Some(parse(&bytes, &path)?), Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (None, None),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        Ok((
            Store {
                dir: dir.to_path_buf(),
                last,
                failing: false,
            },
            file,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Writes `state` if it differs from what the file holds. A failure is
    /// logged (once until a write works again), not returned: the change
    /// it records is already in effect, only a restart would lose it.
    pub fn save(&mut self, state: &StateFile) {
        match self.write(state) {
            Ok(()) => {
                if self.failing {
                    eprintln!(
                        "vxswitch: state file {} written again",
                        self.path().display()
                    );
                }
                self.failing = false;
            }
            Err(e) => {
                if !self.failing {
                    eprintln!(
                        "vxswitch: cannot write state file {}: {e}; the change is in effect \
                         but a restart would not restore it (retried on the next change)",
                        self.path().display()
                    );
                }
                self.failing = true;
            }
        }
    }

    /// Writes `state` if it differs from what the file holds.
    pub fn write(&mut self, state: &StateFile) -> io::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        bytes.push(b'\n');
        if self.last.as_deref() == Some(bytes.as_slice()) {
            return Ok(());
        }
        write_atomic(&self.dir, STATE_FILE, &bytes)?;
        self.last = Some(bytes);
        Ok(())
    }
}

impl Drop for Store {
    /// Gives the directory up: removes the PID file if it is still ours.
    fn drop(&mut self) {
        let path = self.dir.join(PID_FILE);
        if fs::read_to_string(&path).is_ok_and(|t| t.trim() == std::process::id().to_string()) {
            let _ = fs::remove_file(path);
        }
    }
}

/// Writes this process's PID into `dir`'s [`PID_FILE`], unless a running
/// vxswitch daemon already named there uses the directory. (A PID file
/// left by a daemon that crashed names a dead process, or another one.)
fn claim(dir: &Path) -> Result<(), StateError> {
    let me = std::process::id();
    let path = dir.join(PID_FILE);
    if let Some(pid) = fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    {
        if pid != me && is_vxswitch_daemon(pid) {
            return Err(StateError::InUse {
                dir: dir.to_path_buf(),
                pid,
            });
        }
    }
    write_atomic(dir, PID_FILE, format!("{me}\n").as_bytes())
        .map_err(|source| StateError::Write { path, source })
}

/// Whether process `pid` is a `vxswitch daemon`.
fn is_vxswitch_daemon(pid: u32) -> bool {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    comm.trim() == "vxswitch" && cmdline.split(|&b| b == 0).any(|a| a == b"daemon")
}

/// Parses and checks a state file's bytes; `path` is for messages.
pub fn parse(bytes: &[u8], path: &Path) -> Result<StateFile, StateError> {
    let corrupt = |message: String| StateError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let state: StateFile = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if state.version != STATE_VERSION {
        return Err(corrupt(format!(
            "version {} is not the version this daemon writes ({STATE_VERSION})",
            state.version
        )));
    }
    Ok(state)
}

/// `dir/name` replaced by `bytes`: write a temporary file, `fsync` it,
/// rename it over `name`, `fsync` the directory.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// The directory, inside a state directory, of ports deleted while no
/// daemon ran: one empty file per port, named after it.
pub const TOMBSTONE_DIR: &str = "deleted-ports";
/// Most tombstones read at one start; more wait for the next.
const MAX_TOMBSTONES: usize = 65_536;
/// Longest pointer file read (a path).
const MAX_POINTER: u64 = 4096;

/// The file beside a control socket that names the state directory of the
/// daemon listening there (`vxswitch.sock.state-dir`). A daemon started
/// with `--state-dir` writes it and leaves it when it stops (its ports come
/// back at its next start); a daemon without one removes it. The CNI
/// plugin reads it when no daemon answers (see [`write_tombstone`]).
pub fn state_dir_pointer(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".state-dir");
    PathBuf::from(name)
}

/// Records, beside `socket`, that the daemon listening there keeps its
/// state in `dir` (or, with `None`, that it keeps none).
pub fn set_state_dir_pointer(socket: &Path, dir: Option<&Path>) -> io::Result<()> {
    let pointer = state_dir_pointer(socket);
    let Some(dir) = dir else {
        return match fs::remove_file(&pointer) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    };
    let dir = fs::canonicalize(dir)?;
    let (Some(parent), Some(name)) = (pointer.parent(), pointer.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no directory", pointer.display()),
        ));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let mut text = dir.as_os_str().as_encoded_bytes().to_vec();
    text.push(b'\n');
    write_atomic(parent, &name.to_string_lossy(), &text)
}

/// The state directory the pointer beside `socket` names: `None` when
/// there is no pointer (the daemon keeps no state, its ports die with it).
/// A pointer that is not an absolute path to a directory is an error
/// naming the file.
pub fn read_state_dir_pointer(socket: &Path) -> io::Result<Option<PathBuf>> {
    use std::io::Read;
    let pointer = state_dir_pointer(socket);
    let mut text = Vec::new();
    match File::open(&pointer) {
        Ok(f) => f.take(MAX_POINTER + 1).read_to_end(&mut text)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} {why}; it should hold the daemon's --state-dir (remove the file if the \
                 daemon runs without one)",
                pointer.display()
            ),
        )
    };
    if text.len() as u64 > MAX_POINTER {
        return Err(bad("is too long"));
    }
    let text = std::str::from_utf8(&text).map_err(|_| bad("is not UTF-8"))?;
    let dir = PathBuf::from(text.trim_end_matches('\n'));
    if !dir.is_absolute() || text.contains('\0') {
        return Err(bad("does not hold an absolute path"));
    }
    if !dir.is_dir() {
        return Err(bad(&format!(
            "names {}, which is not a directory",
            dir.display()
        )));
    }
    Ok(Some(dir))
}

/// Records in the state directory `dir` that port `port` was deleted while
/// no daemon ran, so the next start removes it instead of restoring it
/// (an empty file `dir/deleted-ports/PORT`, made durable before this
/// returns). Only then may the caller release what the port held, such as
/// its IPAM address.
pub fn write_tombstone(dir: &Path, port: &str) -> io::Result<()> {
    if super::validate::check_name("port", port).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid port name {port:?}"),
        ));
    }
    let stones = dir.join(TOMBSTONE_DIR);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&stones)?;
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(stones.join(port))?;
    f.sync_all()?;
    drop(f);
    File::open(&stones)?.sync_all()?;
    File::open(dir)?.sync_all()
}

/// The tombstones found in a state directory at start.
#[derive(Debug, Default)]
pub struct Tombstones {
    /// The ports they name.
    pub names: std::collections::BTreeSet<String>,
    files: Vec<PathBuf>,
}

impl Tombstones {
    /// Removes the tombstone files, once the state file no longer names
    /// their ports.
    pub fn remove(self) {
        for f in self.files {
            if let Err(e) = fs::remove_file(&f) {
                if e.kind() != io::ErrorKind::NotFound {
                    eprintln!("vxswitch: cannot remove {}: {e}", f.display());
                }
            }
        }
    }
}

/// Reads the tombstones of `dir` ([`write_tombstone`]). Entries that are
/// not regular files named after a valid port are removed with one line
/// each; at most [`MAX_TOMBSTONES`] are read.
pub fn take_tombstones(dir: &Path) -> Tombstones {
    let mut out = Tombstones::default();
    let stones = dir.join(TOMBSTONE_DIR);
    let Ok(entries) = fs::read_dir(&stones) else {
        return out;
    };
    for entry in entries.flatten().take(MAX_TOMBSTONES) {
        let path = entry.path();
        let name = entry.file_name().to_str().map(String::from);
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        match name {
            Some(n) if regular && super::validate::check_name("port", &n).is_ok() => {
                out.names.insert(n);
                out.files.push(path);
            }
            _ => {
                eprintln!(
                    "vxswitch: {} is not a tombstone (a file named after a port); removing it",
                    path.display()
                );
                let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "vxswitch-persist-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn sample() -> StateFile {
        StateFile {
            version: STATE_VERSION,
            networks: vec![SavedNetwork {
                create: NetworkCreate {
                    name: "red".into(),
                    subnet: Some("10.77.0.0/24".into()),
                    ..NetworkCreate::default()
                },
                mtu: 1500,
                vteps: vec!["198.18.0.2:4789".into()],
                gateway_mac: None,
            }],
            ports: vec![SavedPort {
                name: "c1".into(),
                network: "red".into(),
                kind: SavedKind::Created,
                netns: Some("/run/netns/c1".into()),
                pid: None,
                sandbox: Some((4, 4026532000)),
                ifname: "eth0".into(),
                renamed: None,
                mac: "02:00:00:00:00:11".parse().unwrap(),
                ip: Some("10.77.0.11/24".parse().unwrap()),
                mtu: 1500,
                container: Some("web".into()),
                offload: None,
                port_security: None,
                ip_guard: false,
                host_ifname: None,
                fastpath: None,
            }],
            static_fdb: vec![],
            cluster: None,
        }
    }

    #[test]
    fn a_saved_state_reads_back_the_same() {
        let dir = tempdir("roundtrip");
        let (mut store, none) = Store::open(&dir).unwrap();
        assert!(none.is_none());
        store.save(&sample());
        let (_, read) = Store::open(&dir).unwrap();
        assert_eq!(read, Some(sample()));
        assert!(!dir.join("state.json.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tombstones_are_written_read_validated_and_removed() {
        let dir = tempdir("tomb");
        fs::create_dir_all(&dir).unwrap();
        assert!(take_tombstones(&dir).names.is_empty());
        write_tombstone(&dir, "cni-abc-0123456789abcdef").unwrap();
        write_tombstone(&dir, "c1").unwrap();
        assert!(write_tombstone(&dir, "../escape").is_err());
        assert!(write_tombstone(&dir, "").is_err());
        // Junk someone left there is not taken for a port.
        fs::create_dir(dir.join(TOMBSTONE_DIR).join("a-dir")).unwrap();
        fs::write(dir.join(TOMBSTONE_DIR).join(".hidden"), b"").unwrap();
        let t = take_tombstones(&dir);
        let names: Vec<&str> = t.names.iter().map(String::as_str).collect();
        assert_eq!(names, ["c1", "cni-abc-0123456789abcdef"]);
        assert!(!dir.join(TOMBSTONE_DIR).join("a-dir").exists());
        assert!(!dir.join(TOMBSTONE_DIR).join(".hidden").exists());
        t.remove();
        assert!(take_tombstones(&dir).names.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_state_dir_pointer_names_an_absolute_directory_or_nothing() {
        let dir = tempdir("pointer");
        fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("vx.sock");
        assert_eq!(read_state_dir_pointer(&socket).unwrap(), None);
        let state = dir.join("state");
        fs::create_dir_all(&state).unwrap();
        set_state_dir_pointer(&socket, Some(&state)).unwrap();
        assert_eq!(
            read_state_dir_pointer(&socket).unwrap(),
            Some(fs::canonicalize(&state).unwrap())
        );
        fs::write(state_dir_pointer(&socket), b"relative/dir\n").unwrap();
        let e = read_state_dir_pointer(&socket).unwrap_err().to_string();
        assert!(e.contains("does not hold an absolute path"), "{e}");
        fs::write(state_dir_pointer(&socket), vec![b'/'; 5000]).unwrap();
        assert!(read_state_dir_pointer(&socket).is_err());
        set_state_dir_pointer(&socket, None).unwrap();
        assert_eq!(read_state_dir_pointer(&socket).unwrap(), None);
        set_state_dir_pointer(&socket, None).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_file_is_refused_with_its_name_and_the_problem() {
        let dir = tempdir("corrupt");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(STATE_FILE), b"{\"version\": 1, \"networks\": [").unwrap();
        let e = Store::open(&dir).unwrap_err().to_string();
        assert!(
            e.contains(&dir.join(STATE_FILE).display().to_string()),
            "{e}"
        );
        assert!(e.contains("corrupt") && e.contains("EOF"), "{e}");
        fs::write(dir.join(STATE_FILE), b"{\"version\": 7}").unwrap();
        let e = Store::open(&dir).unwrap_err().to_string();
        assert!(e.contains("version 7"), "{e}");
        fs::write(dir.join(STATE_FILE), b"{\"version\": 1, \"prots\": []}").unwrap();
        let e = Store::open(&dir).unwrap_err().to_string();
        assert!(e.contains("unknown field `prots`"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
