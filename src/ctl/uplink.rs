//! A network's uplink: a host interface attached as one of its ports
//! (`network create --uplink eth0 [--vlan 10]`), through a packet socket
//! (`ports::uplink`) the engine drives like a TAP (`switch::uplink`).
//!
//! The uplink port is created and removed with its network (`port rm`
//! refuses it). Its record stays while the interface is gone, with its id
//! and counters: about once a second ([`Daemon::watch_uplinks`], from the
//! server's reaping tick) the daemon looks at the interface; it logs one
//! line when the uplink goes down, comes back up, disappears (the port is
//! detached from the dataplane; the network keeps working locally) or
//! reappears (a new socket on the new interface, attached under the same
//! port). `port ls` and `stats` show the state.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::daemon::Daemon;
use super::ports::{Port, PortMeta, Security};
use super::proto::{CtlError, NetworkCreate, PortKind, UplinkInfo};
use super::validate::{check_ifname, engine_error};
use crate::fdb::PortId;
use crate::ports::uplink::{self as link, LinkState, Probe, RxGeometry, UplinkDrops};
use crate::ports::Netns;
use crate::switch::{GoneCause, PortAttach, PortStats, UplinkConfig};

/// Storm control when `network create` does not say: broadcast and
/// multicast frames per second from the LAN, per network.
pub const DEFAULT_STORM_PPS: u32 = 1000;

/// A network's uplink as the daemon keeps it.
#[derive(Debug)]
pub(super) struct Uplink {
    pub(super) ifname: String,
    pub(super) vlan: Option<u16>,
    pub(super) storm_pps: u32,
    /// The uplink port's name (`NETWORK.uplink`).
    pub(super) port: String,
    pub(super) state: LinkState,
    /// The interface index the attached socket is bound to; `None` while
    /// the port is detached (the interface is missing).
    pub(super) attached: Option<u32>,
    pub(super) reattached: u64,
    /// The attached socket's kernel drop counter, and what it counted so far.
    pub(super) drops: Option<UplinkDrops>,
    pub(super) rx_queue_drops: AtomicU64,
    /// The receive ring on each attached socket, if read through rings.
    pub(super) ring: Option<RxGeometry>,
    /// The sending socket of sockets just opened on the steering interface
    /// (the eBPF fast path), until the dataplane takes it with them.
    pub(super) tx: Option<OwnedFd>,
}

impl Uplink {
    pub(super) fn config(&self) -> UplinkConfig {
        UplinkConfig {
            vlan: self.vlan,
            storm_pps: self.storm_pps,
            ring: self.ring,
        }
    }

    /// Adds what the kernel dropped since the last look; returns the total.
    fn take_drops(&self) -> u64 {
        let new = self.drops.as_ref().map_or(0, UplinkDrops::take);
        self.rx_queue_drops.fetch_add(new, Ordering::Relaxed) + new
    }

    pub(super) fn info(&self) -> UplinkInfo {
        UplinkInfo {
            ifname: self.ifname.clone(),
            vlan: self.vlan,
            state: self.state.name().to_string(),
            storm_pps: self.storm_pps,
            reattached: self.reattached,
            rx_queue_drops: self.take_drops(),
            rx: self.attached.map(|_| match self.ring {
                Some(g) => format!(
                    "ring ({} slots of {} bytes per socket)",
                    g.frames, g.frame_size
                ),
                None => "socket".to_string(),
            }),
        }
    }
}

/// The uplink port's name in network `network`.
impl Daemon {
    /// How the daemon's uplinks take frames in (`--uplink-rx`,
    /// `--uplink-buffer`).
    fn rx_spec(&self) -> link::RxSpec {
        let rx = self.engine.uplink_rx();
        link::RxSpec {
            ring: rx.ring,
            buffer: rx.buffer_bytes(),
        }
    }
}

fn port_name(network: &str) -> String {
    format!("{network}.uplink")
}

impl Daemon {
    /// The uplink of `network`, if it has one.
    fn uplink_of(&self, network: &str) -> Option<&Uplink> {
        self.networks.get(network).and_then(|n| n.uplink.as_ref())
    }

    fn uplink_mut(&mut self, network: &str) -> Option<&mut Uplink> {
        self.networks
            .get_mut(network)
            .and_then(|n| n.uplink.as_mut())
    }

    /// Checks `network.create`'s uplink fields against each other and the
    /// other networks; `None` when the network has no uplink.
    pub(super) fn plan_uplink(
        &self,
        what: &str,
        a: &NetworkCreate,
    ) -> Result<Option<Uplink>, CtlError> {
        let Some(ifname) = &a.uplink else {
            if a.vlan.is_some() || a.storm_pps.is_some() {
                return Err(CtlError::invalid(format!(
                    "{what}: --vlan and --storm-pps are settings of an uplink; add \
                     --uplink IFNAME (the host interface on the LAN, e.g. eth0)"
                )));
            }
            return Ok(None);
        };
        check_ifname(ifname)?;
        if a.vni.is_some() || a.cluster {
            return Err(CtlError::invalid(format!(
                "{what}: an uplink and a VNI do not go together: with two hosts' uplinks on \
                 the same LAN, a broadcast would go round the LAN and the overlay for ever \
                 (the overlay's split horizon does not cover the LAN); give the network \
                 either --uplink or --vni"
            )));
        }
        if let Some(v) = a.vlan {
            if !(1..=4094).contains(&v) {
                return Err(CtlError::invalid(format!(
                    "{what}: VLAN {v} is not a VLAN id; use 1 to 4094 (leave --vlan out for \
                     the untagged LAN)"
                )));
            }
        }
        if let Some((other, _)) = self.networks.iter().find(|(_, n)| {
            n.uplink
                .as_ref()
                .is_some_and(|u| u.ifname == *ifname && u.vlan == a.vlan)
        }) {
            let vlan = a
                .vlan
                .map_or_else(|| "untagged".to_string(), |v| format!("VLAN {v}"));
            return Err(CtlError::exists(format!(
                "{what}: network {other:?} already uses {ifname} ({vlan}) as its uplink; \
                 one network per VLAN of an interface (give another --vlan)"
            )));
        }
        if self.ports.values().any(|p| {
            p.kind != PortKind::Uplink
                && matches!(p.netns, Netns::Current)
                && p.ifname.as_deref() == Some(ifname.as_str())
        }) {
            return Err(CtlError::invalid(format!(
                "{what}: {ifname} is a port of vxswitch itself; an uplink is the host's \
                 interface on the LAN (e.g. eth0)"
            )));
        }
        Ok(Some(Uplink {
            ifname: ifname.clone(),
            vlan: a.vlan,
            storm_pps: a.storm_pps.unwrap_or(DEFAULT_STORM_PPS),
            port: port_name(&a.name),
            state: LinkState::Missing,
            attached: None,
            reattached: 0,
            drops: None,
            rx_queue_drops: AtomicU64::new(0),
            ring: None,
            tx: None,
        }))
    }

    /// Attaches the uplink port of a network just created: the interface
    /// must be there now.
    pub(super) fn add_uplink_port(&mut self, network: &str) -> Result<(), CtlError> {
        let Some(u) = self.uplink_of(network) else {
            return Ok(());
        };
        let (ifname, vlan, port) = (u.ifname.clone(), u.vlan, u.port.clone());
        let what = format!("network {network:?}: uplink {ifname}");
        let probe = link::probe(&ifname).map_err(|e| CtlError::internal(format!("{what}: {e}")))?;
        if probe.index.is_none() && self.restoring && !self.ports.contains_key(&port) {
            // The daemon starting before its NIC (a USB NIC, a VM's NIC
            // hot-plugged later): the network works locally meanwhile,
            // and the uplink is attached when the interface shows up.
            self.add_detached_uplink_port(network, &port, &ifname);
            return Ok(());
        }
        let (Some(index), false) = (probe.index, probe.state == LinkState::Missing) else {
            return Err(CtlError::not_found(format!(
                "{what}: there is no interface {ifname} in the daemon's network namespace; \
                 give the host's interface on the LAN ('ip link' lists them)"
            )));
        };
        if self.ports.contains_key(&port) {
            return Err(CtlError::exists(format!(
                "{what}: a port named {port:?} already exists; remove it first \
                 ('vxswitch port rm {port}')"
            )));
        }
        let steer = self.fastpath_steer(&ifname, index, probe.mtu, probe.mac);
        let mut opened = link::open(
            &ifname,
            index,
            probe.mtu,
            vlan,
            self.engine.workers(),
            self.rx_spec(),
            steer,
        )
        .map_err(|e| CtlError::internal(format!("{what}: {e}")))?;
        if steer.is_some() {
            self.fastpath_uplink_prepare(network, &port, &ifname, index, vlan);
        }
        let meta = PortMeta {
            kind: PortKind::Uplink,
            netns: Netns::Current,
            ifname: Some(ifname),
            mac: None,
            ip: None,
            container: None,
            vnet_hdr: opened.vnet_hdr,
            gateway: false,
            offload_choice: None,
            persist: None,
            // The LAN's hosts have many MACs; none may be a container's own.
            security: Security {
                port_security: false,
                ip_guard: false,
            },
        };
        // The engine maps each socket's ring as it attaches the port, and
        // takes the sending socket.
        if let Some(u) = self.uplink_mut(network) {
            u.ring = opened.ring;
            u.tx = opened.tx.take();
        }
        if let Err(e) = self.attach(
            &port,
            network,
            opened.fd,
            opened.extra_queues,
            opened.mtu,
            meta,
        ) {
            // The sending socket too, if the dataplane did not take it.
            if let Some(u) = self.uplink_mut(network) {
                u.tx = None;
            }
            self.fastpath_uplink_forget(&port);
            return Err(e);
        }
        if let Some(u) = self.uplink_mut(network) {
            u.state = probe.state;
            u.attached = Some(index);
            u.drops = Some(opened.drops);
        }
        self.fastpath_sync_ports();
        Ok(())
    }

    /// Records the uplink port of a restored network whose interface is
    /// not there (yet): detached, `missing`, attached by
    /// [`Daemon::watch_uplinks`] once it is.
    fn add_detached_uplink_port(&mut self, network: &str, port: &str, ifname: &str) {
        let Some(net) = self.networks.get(network).map(|n| n.id) else {
            return;
        };
        let security = Security {
            port_security: false,
            ip_guard: false,
        };
        let record = Port {
            id: self.free_port_id(),
            network: network.to_string(),
            net,
            kind: PortKind::Uplink,
            netns: Netns::Current,
            ifname: Some(ifname.to_string()),
            mac: None,
            ip: None,
            mtu: self.networks.get(network).map_or(1500, |n| n.mtu),
            container: None,
            offload: false,
            gateway: false,
            stats: Arc::new(PortStats::default()),
            sandbox: None,
            offload_choice: None,
            persist: None,
            security,
            policy: security.policy(None, None),
            backend: Default::default(),
            host: None,
        };
        self.ports.insert(port.to_string(), record);
        if self.log_events {
            eprintln!(
                "vxswitch: uplink {ifname} of network {network} is missing at start; the \
                 network works locally, and the uplink is attached when {ifname} is there"
            );
        }
    }

    /// The engine's settings of the uplink port of `network`, if it has one.
    pub(super) fn uplink_config(&self, network: &str) -> Option<UplinkConfig> {
        self.uplink_of(network).map(Uplink::config)
    }

    /// What `port.ls` shows of port `port` of `network` if it is the uplink.
    pub(super) fn uplink_info(&self, network: &str, port: &str) -> Option<UplinkInfo> {
        self.uplink_of(network)
            .filter(|u| u.port == port)
            .map(Uplink::info)
    }

    /// The dataplane dropped the uplink port `id` on its own (its
    /// interface was deleted): the record stays, detached, until the
    /// interface is back. False when `id` is no uplink.
    pub(super) fn uplink_gone(&mut self, id: PortId, cause: GoneCause) -> bool {
        let Some((network, _)) = self
            .ports
            .iter()
            .find(|(_, p)| p.id == id)
            .map(|(_, p)| (p.network.clone(), p.kind))
            .filter(|(_, k)| *k == PortKind::Uplink)
        else {
            return false;
        };
        if let Some(port) = self.uplink_of(&network).map(|u| u.port.clone()) {
            self.fastpath_uplink_forget(&port);
        }
        let log = self.log_events;
        if let Some(u) = self.uplink_mut(&network) {
            u.attached = None;
            if u.state != LinkState::Missing {
                u.state = LinkState::Missing;
                if log {
                    eprintln!(
                        "vxswitch: uplink {} of network {network} is gone ({cause}); the \
                         network keeps working locally, and the uplink is attached again \
                         when {} is back",
                        u.ifname, u.ifname
                    );
                }
            }
        }
        true
    }

    /// Looks at every uplink's interface and follows what it did: logs a
    /// change of state, detaches the port of an interface that is gone,
    /// attaches one that is (back) there. Called about once a second.
    pub fn watch_uplinks(&mut self) {
        let uplinks: Vec<(String, String)> = self
            .networks
            .iter()
            .filter_map(|(name, n)| n.uplink.as_ref().map(|u| (name.clone(), u.ifname.clone())))
            .collect();
        for (network, ifname) in uplinks {
            let Ok(probe) = link::probe(&ifname) else {
                continue;
            };
            self.follow_uplink(&network, probe);
        }
    }

    fn follow_uplink(&mut self, network: &str, probe: Probe) {
        let Some(u) = self.uplink_of(network) else {
            return;
        };
        // Read the kernel's drop counter often enough that it cannot wrap.
        u.take_drops();
        if let (Some(i), true) = (u.attached, u.attached == probe.index) {
            self.fastpath_steer_follow(i, probe.mtu, probe.mac);
        }
        let Some(u) = self.uplink_of(network) else {
            return;
        };
        let (was, attached, port) = (u.state, u.attached, u.port.clone());
        let mut note = None;
        if attached.is_some() && attached != probe.index {
            // Gone, or deleted and created again: the socket is bound to
            // an interface that no longer exists.
            self.detach_uplink(network, &port);
            if probe.state != LinkState::Missing {
                note = Some("was replaced");
            }
        }
        let attached = self.uplink_of(network).and_then(|u| u.attached);
        if let (None, Some(index)) = (attached, probe.index) {
            match self.reattach_uplink(network, &port, index, probe.mtu) {
                Ok(()) => note = note.or(Some("is back")),
                Err(e) => {
                    if self.log_events {
                        eprintln!("vxswitch: uplink of network {network}: {}", e.message);
                    }
                }
            }
        }
        let log = self.log_events;
        let Some(u) = self.uplink_mut(network) else {
            return;
        };
        if was == probe.state && note.is_none() {
            return;
        }
        u.state = probe.state;
        // Down: no frame goes fast to a dead link (the switch counts them).
        self.fastpath_sync_ports();
        let Some(u) = self.uplink_mut(network) else {
            return;
        };
        if log {
            let what = match (probe.state, note) {
                (LinkState::Missing, _) => "is gone; the network keeps working locally, and \
                     the uplink is attached again when it is back"
                    .to_string(),
                (s, Some(n)) => format!("{n} and attached again ({})", s.name()),
                (LinkState::Down, None) => {
                    "is down (administratively, or no carrier); frames to the LAN are \
                     counted as tx_link_down"
                        .to_string()
                }
                (LinkState::Up, None) => "is up".to_string(),
            };
            eprintln!("vxswitch: uplink {} of network {network} {what}", u.ifname);
        }
    }

    /// Takes the uplink port out of the dataplane, keeping its record.
    fn detach_uplink(&mut self, network: &str, port: &str) {
        self.fastpath_uplink_forget(port);
        if let Some(id) = self.ports.get(port).map(|p| p.id) {
            if self.engine.remove_port(id).is_ok_and(|attached| !attached) {
                self.process_events();
            }
        }
        if let Some(u) = self.uplink_mut(network) {
            u.attached = None;
            u.take_drops();
            u.drops = None;
        }
        // The dataplane let go of its sockets: the steering interface goes.
        self.fastpath_release_steers();
    }

    /// The sending socket of the uplink of `network` just opened, for the
    /// dataplane (`ctl::ports`'s attach).
    pub(super) fn take_uplink_tx(&mut self, network: &str) -> Option<OwnedFd> {
        self.uplink_mut(network).and_then(|u| u.tx.take())
    }

    /// Opens a new socket on interface `index` and attaches it under the
    /// uplink port's existing id and counters.
    fn reattach_uplink(
        &mut self,
        network: &str,
        port: &str,
        index: u32,
        mtu: u32,
    ) -> Result<(), CtlError> {
        let (Some(net), true) = (self.networks.get(network), self.ports.contains_key(port)) else {
            return Ok(());
        };
        let Some(u) = net.uplink.as_ref() else {
            return Ok(());
        };
        let what = format!("uplink {}", u.ifname);
        let (ifname, vlan) = (u.ifname.clone(), u.vlan);
        let mac = link::probe(&ifname).ok().and_then(|p| p.mac);
        let steer = self.fastpath_steer(&ifname, index, mtu, mac);
        let opened = link::open(
            &ifname,
            index,
            mtu,
            vlan,
            self.engine.workers(),
            self.rx_spec(),
            steer,
        )
        .map_err(|e| CtlError::internal(format!("{what}: {e}")))?;
        if steer.is_some() {
            self.fastpath_uplink_prepare(network, port, &ifname, index, vlan);
        }
        let (Some(net), Some(p)) = (self.networks.get(network), self.ports.get(port)) else {
            return Ok(());
        };
        let Some(u) = net.uplink.as_ref() else {
            return Ok(());
        };
        let attach = PortAttach {
            id: p.id,
            net: net.id,
            fd: opened.fd,
            extra_queues: opened.extra_queues,
            mtu,
            stats: Arc::clone(&p.stats),
            vnet_hdr: opened.vnet_hdr,
            mac: None,
            policy: p.policy,
        };
        if let Err(e) = self.engine.add_uplink_tx(
            attach,
            UplinkConfig {
                ring: opened.ring,
                ..u.config()
            },
            opened.tx,
        ) {
            self.fastpath_uplink_forget(port);
            return Err(engine_error(&what, e));
        }
        if let Some(p) = self.ports.get_mut(port) {
            p.mtu = mtu;
            p.offload = opened.vnet_hdr;
        }
        if let Some(u) = self.uplink_mut(network) {
            u.attached = Some(index);
            u.reattached += 1;
            u.ring = opened.ring;
            u.take_drops();
            u.drops = Some(opened.drops);
        }
        self.fastpath_sync_ports();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::proto::ErrorKind;
    use crate::ctl::testutil::daemon;

    #[test]
    fn uplink_settings_are_checked_before_anything_is_opened() {
        let mut d = daemon();
        let cases = [
            (None, Some(10), None, "are settings of an uplink"),
            (Some("eth0"), Some(0), None, "VLAN 0 is not a VLAN id"),
            (Some("eth0"), Some(4095), None, "VLAN 4095 is not a VLAN id"),
            (
                Some("eth0"),
                None,
                Some(5),
                "an uplink and a VNI do not go together",
            ),
            (Some("bad/name"), None, None, "bad/name"),
        ];
        for (uplink, vlan, vni, want) in cases {
            let e = d
                .network_create(&NetworkCreate {
                    name: "lan".into(),
                    uplink: uplink.map(String::from),
                    vlan,
                    vni,
                    ..Default::default()
                })
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument, "{}", e.message);
            assert!(e.message.contains(want), "{want:?} in {}", e.message);
        }
        // Nothing of a refused network is left behind.
        assert!(d.network_ls().is_empty());
        let e = d
            .network_create(&NetworkCreate {
                name: "lan".into(),
                uplink: Some("vxno-such0".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound, "{}", e.message);
        assert!(
            e.message.contains("there is no interface vxno-such0"),
            "{}",
            e.message
        );
        assert!(d.network_ls().is_empty());
    }
}
