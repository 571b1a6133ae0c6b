//! Helpers shared by the root integration tests: root detection with the
//! CI rule, uniquely named namespaces that clean up on drop (even when the
//! test panics), `ip -j` as an independent witness, bounded waits, and
//! frame I/O on a port fd with a deadline.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vxswitch::ports::{netns, Netns};

/// True when the test may proceed. Without root it prints why and returns
/// false, except under CI (`CI=true`), where a skip is a failure.
pub fn require_root(test: &str) -> bool {
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if root {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root (network namespaces, TAP devices) and CI=true forbids skipping");
    }
    eprintln!("skipping {test}: needs root for network namespaces and TAP devices");
    false
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `PREFIX-PID-N`, unique within this machine while this process lives.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A named namespace made for one test; deleted on drop.
pub struct TestNetns {
    pub name: String,
    pub netns: Netns,
}

impl TestNetns {
    pub fn new() -> TestNetns {
        let name = unique_name("vxt");
        netns::create_named(&name).unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        TestNetns {
            netns: Netns::named(&name),
            name,
        }
    }

    /// `ip -n NS ARGS`, whatever its exit status.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        Command::new("ip")
            .args(&full)
            .output()
            .unwrap_or_else(|e| panic!("run ip {full:?}: {e}"))
    }

    /// `ip -n NS ARGS`, which must succeed.
    pub fn ip_ok(&self, args: &[&str]) {
        let out = self.ip(args);
        assert!(
            out.status.success(),
            "ip -n {} {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ip -n NS -j ARGS` parsed as JSON.
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        let out = self.ip(&full);
        assert!(
            out.status.success(),
            "ip -n {} -j {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("ip -j {args:?} printed no JSON ({e})"))
    }

    /// `ip netns exec NS CMD...` started in the background; killed on drop.
    pub fn spawn(&self, cmd: &[&str]) -> KillOnDrop {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?} in {}: {e}", self.name));
        KillOnDrop(child)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        // A test may have deleted it already (to see what that does).
        let exists = self.netns.path().is_some_and(|p| p.exists());
        if exists {
            if let Err(e) = netns::delete_named(&self.name) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// A child process that is killed and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `cond` every few milliseconds until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Writes one frame to a port fd.
pub fn write_frame(fd: &OwnedFd, frame: &[u8]) -> io::Result<usize> {
    (&std::fs::File::from(fd.try_clone()?)).write(frame)
}

/// Reads frames from a non-blocking port fd until one satisfies `want` or
/// `timeout` passes; waits with epoll (via mio), never spins.
pub fn read_frame_matching(
    fd: &OwnedFd,
    timeout: Duration,
    want: impl Fn(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let mut poll = mio::Poll::new().expect("mio poll");
    let raw = fd.as_raw_fd();
    poll.registry()
        .register(
            &mut mio::unix::SourceFd(&raw),
            mio::Token(0),
            mio::Interest::READABLE,
        )
        .expect("register port fd");
    let mut file = std::fs::File::from(fd.try_clone().expect("dup port fd"));
    let mut events = mio::Events::with_capacity(4);
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + timeout;
    loop {
        // Drain first: edge-triggered readiness only reports new frames.
        loop {
            match file.read(&mut buf) {
                Ok(n) if want(&buf[..n]) => return Some(buf[..n].to_vec()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("read from port fd: {e}"),
            }
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        poll.poll(&mut events, Some(left)).expect("poll");
    }
}

/// An Ethernet ARP request: `src_mac` (`src_ip`) asks who has `target_ip`.
pub fn arp_request(src_mac: [u8; 6], src_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x06]); // ARP
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet/IPv4, request
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&src_ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target_ip);
    f
}

/// The fields of an Ethernet/IPv4 ARP frame that tests look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    /// 1 request, 2 reply.
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: [u8; 4],
    pub target_ip: [u8; 4],
}

/// Parses `f` when it is an ARP frame.
pub fn parse_arp(f: &[u8]) -> Option<Arp> {
    if f.len() < 42 || f[12..14] != [0x08, 0x06] {
        return None;
    }
    Some(Arp {
        op: u16::from_be_bytes([f[20], f[21]]),
        sender_mac: f[22..28].try_into().ok()?,
        sender_ip: f[28..32].try_into().ok()?,
        target_ip: f[38..42].try_into().ok()?,
    })
}
