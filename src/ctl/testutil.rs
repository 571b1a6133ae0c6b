//! Helpers of the control plane's unit tests: daemons without root
//! (socket-pair ports, VXLAN on a free port), requests and frames.

use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;

use super::proto::{NetworkCreate, NetworkInfo, VtepAdd, VtepRm};
use super::Daemon;
use crate::switch::EngineConfig;
use crate::time::MonotonicClock;
use crate::vxlan::VxlanConfig;

pub(super) fn daemon() -> Daemon {
    let mut d = Daemon::new(
        EngineConfig::default(),
        Arc::new(MonotonicClock::new()),
        None,
    )
    .unwrap();
    d.set_log_events(false);
    d
}

pub(super) fn net(
    d: &mut Daemon,
    name: &str,
    subnet: Option<&str>,
    gw: Option<&str>,
) -> NetworkInfo {
    d.network_create(&NetworkCreate {
        name: name.into(),
        subnet: subnet.map(Into::into),
        gateway: gw.map(Into::into),
        ..Default::default()
    })
    .unwrap()
}

/// Attaches a socketpair port; returns the test's end.
pub(super) fn fd_port(d: &mut Daemon, name: &str, network: &str) -> File {
    let (ours, theirs) = crate::seqpacket_pair().unwrap();
    d.attach_fd(name, network, theirs, None).unwrap();
    File::from(ours)
}

pub(super) fn port_id(d: &Daemon, name: &str) -> u32 {
    d.ports[name].id.0
}

pub(super) fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[0u8; 46]);
    f
}

pub(super) fn recv(f: &mut File) -> Vec<u8> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    loop {
        match f.read(&mut buf) {
            Ok(n) => return buf[..n].to_vec(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(std::time::Instant::now() < deadline, "no frame within 5 s");
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// A UDP port nobody uses right now: a dual-stack `[::]:0` socket gets
/// one free in both families (IPv4 alone on a host without IPv6).
pub(super) fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("[::]:0")
        .or_else(|_| std::net::UdpSocket::bind("0.0.0.0:0"))
        .and_then(|s| s.local_addr())
        .unwrap()
        .port()
}

/// A daemon whose VXLAN sockets use their own free port (and no
/// source-port pool), so tests run in parallel and next to a real daemon.
pub(super) fn vx_daemon() -> (Daemon, u16) {
    let port = free_udp_port();
    let mut d = vx_daemon_on(port);
    d.set_log_events(false);
    (d, port)
}

/// A daemon whose VXLAN port (and one-port source pool) is `port`.
pub(super) fn vx_daemon_on(port: u16) -> Daemon {
    let cfg = EngineConfig {
        vxlan: VxlanConfig {
            port,
            src_port_min: port,
            src_port_max: port,
            ..VxlanConfig::default()
        },
        ..EngineConfig::default()
    };
    Daemon::new(cfg, Arc::new(MonotonicClock::new()), None).unwrap()
}

pub(super) fn vx_net(d: &mut Daemon, name: &str, vni: Option<u32>, vteps: &[&str]) -> NetworkInfo {
    d.network_create(&NetworkCreate {
        name: name.into(),
        vni,
        vteps: vteps.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("network {name}: {e}"))
}

pub(super) fn vtep(network: &str, addr: &str) -> VtepAdd {
    VtepAdd {
        network: network.into(),
        addr: addr.into(),
    }
}

pub(super) fn vtep_rm(network: &str, addr: &str) -> VtepRm {
    VtepRm {
        network: network.into(),
        addr: addr.into(),
    }
}

/// A VXLAN datagram carrying `frame` with `vni`.
pub(super) fn vxlan(vni: u32, frame: &[u8]) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0];
    d.extend_from_slice(&(vni << 8).to_be_bytes());
    d.extend_from_slice(frame);
    d
}
