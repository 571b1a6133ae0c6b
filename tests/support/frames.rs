//! Frames written to and read from a port's fd directly (the tests of
//! `vxswitch::ports` hold the TAP's fd themselves): a bounded, epoll-driven
//! read, and the ARP frames those tests exchange with a namespace's kernel.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

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
