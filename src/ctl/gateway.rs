//! A network's gateway port (see [`crate::gateway`]): a TAP in the
//! daemon's namespace holding the gateway address (`host`), or the
//! switch's own ARP/ND/ICMP responder behind a socket pair (`switch`). It
//! is created with its network and goes with it, never by `port.rm`.

use std::io;
use std::sync::Arc;

use ipnet::IpNet;

use super::daemon::Daemon;
use super::ports::{PortMeta, Security};
use super::proto::{CtlError, GatewayPort, PortKind};
use super::validate::{check_ifname, port_error};
use crate::gateway::{self, Responder, SwitchGateway};
use crate::ports::{self, Netns, TapSpec};
use crate::wire::MacAddr;

impl Daemon {
    /// Creates and attaches the network's gateway port, if it has one (see
    /// [`crate::gateway`]). On error nothing of it is left.
    pub(super) fn add_gateway_port(
        &mut self,
        network: &str,
        ifname: Option<&str>,
        restore_mac: Option<MacAddr>,
    ) -> Result<(), CtlError> {
        let net = self.network(network)?;
        let (kind, mtu, subnet, gw) = (net.gateway_port, net.mtu, net.subnet, net.gateway);
        let (Some(subnet), Some(gw)) = (subnet, gw) else {
            return Ok(()); // checked at create: only GatewayPort::None gets here
        };
        if kind == GatewayPort::None {
            return Ok(());
        }
        let what = format!("network {network:?}: gateway port");
        let name = ifname.map_or_else(|| gateway::default_ifname(network), str::to_string);
        check_ifname(&name)?;
        let hint = match ifname {
            Some(_) => "choose another --gateway-ifname",
            None if kind == GatewayPort::Host => "name it with --gateway-ifname",
            None => "rename that port or this network",
        };
        if let Some((other, _)) = self.ports.iter().find(|(n, p)| {
            *n == &name || (p.netns == Netns::Current && p.ifname.as_ref() == Some(&name))
        }) {
            return Err(CtlError::exists(format!(
                "{what} {name}: port {other:?} already has that name or interface; {hint}"
            )));
        }
        if kind == GatewayPort::Host {
            // Two host interfaces with overlapping subnets: the host would
            // route the overlap to one of them only.
            let overlap = self.networks.iter().find(|(n, other)| {
                *n != network
                    && other.gw_port.is_some()
                    && other.gateway_port == GatewayPort::Host
                    && other.subnet.is_some_and(|o| {
                        o.contains(&subnet.network()) || subnet.contains(&o.network())
                    })
            });
            if let Some((other, o)) = overlap {
                return Err(CtlError::exists(format!(
                    "{what}: subnet {subnet} overlaps subnet {} of network {other:?}, which also \
                     has a host gateway port; the host could route the overlap to only one of \
                     them: choose a subnet that does not overlap, or --gateway-port switch",
                    o.subnet.map(|s| s.to_string()).unwrap_or_default()
                )));
            }
        }
        // The gateway address, with the subnet's prefix length.
        let ip = IpNet::new(gw, subnet.prefix_len()).map_err(|e| {
            CtlError::internal(format!("{what}: {gw}/{}: {e}", subnet.prefix_len()))
        })?;
        let meta = |kind, ifname, mac, vnet_hdr| PortMeta {
            kind,
            netns: Netns::Current,
            ifname,
            mac: Some(mac),
            ip: Some(ip),
            container: None,
            gateway: true,
            vnet_hdr,
            offload_choice: None,
            persist: None,
            security: Security::ON,
        };
        let mut switch_gw = None;
        let mac = match kind {
            GatewayPort::None => return Ok(()),
            GatewayPort::Host => {
                let tap = ports::create_tap(&TapSpec {
                    netns: Netns::Current,
                    ifname: name.clone(),
                    mac: restore_mac,
                    mtu: Some(mtu),
                    addrs: vec![ip],
                    gateway: None,
                    vnet_hdr: self.engine.offload(),
                    queues: self.engine.workers(),
                })
                .map_err(|e| {
                    let mut e = port_error(&what, e);
                    e.message.push_str(
                        "; the host gateway port is a TAP in the daemon's namespace: \
                         --gateway-ifname names it, and --gateway-port switch needs no \
                         interface",
                    );
                    e
                })?;
                let mac = tap.mac;
                self.attach(
                    &name,
                    network,
                    tap.fd,
                    tap.extra_queues,
                    tap.mtu,
                    meta(PortKind::Created, Some(tap.ifname), mac, tap.vnet_hdr),
                )?;
                mac
            }
            GatewayPort::Switch => {
                let internal = |e: io::Error| CtlError::internal(format!("{what}: {e}"));
                let (ours, theirs) = crate::seqpacket_pair().map_err(internal)?;
                let mac = match restore_mac {
                    Some(m) => m,
                    None => random_mac().map_err(internal)?,
                };
                let stats = Arc::default();
                self.attach(
                    &name,
                    network,
                    theirs,
                    Vec::new(),
                    mtu,
                    meta(PortKind::Responder, None, mac, false),
                )?;
                match SwitchGateway::start(ours, Responder::new(mac, gw, stats), network) {
                    Ok(g) => switch_gw = Some(g),
                    Err(e) => {
                        let _ = self.detach(&name);
                        return Err(internal(e));
                    }
                }
                mac
            }
        };
        if let Some(net) = self.networks.get_mut(network) {
            net.gw_port = Some(name);
            net.gateway_mac = Some(mac);
            net.switch_gw = switch_gw;
        }
        Ok(())
    }

    /// Forgets the network's gateway port (already detached) and waits for
    /// a responder thread, which ends once the switch closed its end.
    pub(super) fn gateway_gone(&mut self, network: &str) {
        if let Some(net) = self.networks.get_mut(network) {
            net.gw_port = None;
            if let Some(g) = net.switch_gw.take() {
                g.join();
            }
        }
    }
}

/// A locally administered unicast MAC from the kernel's random generator.
fn random_mac() -> io::Result<MacAddr> {
    use std::io::Read;
    let mut seed = [0u8; 6];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    Ok(MacAddr::local_from_seed(seed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::proto::{ErrorKind, NetworkCreate, NetworkRm, PortRm, StatsArgs};
    use crate::ctl::testutil::{daemon, fd_port, net, recv};
    use std::io::{Read, Write};

    #[test]
    fn gateway_port_needs_a_gateway() {
        let mut d = daemon();
        let req =
            |subnet: Option<&str>, gw: Option<&str>, kind, ifname: Option<&str>| NetworkCreate {
                name: "gw".into(),
                subnet: subnet.map(Into::into),
                gateway: gw.map(Into::into),
                gateway_port: Some(kind),
                gateway_ifname: ifname.map(Into::into),
                ..Default::default()
            };
        for kind in [GatewayPort::Host, GatewayPort::Switch] {
            let e = d
                .network_create(&req(Some("10.88.0.0/24"), None, kind, None))
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument);
            assert!(
                e.message.contains("has none; add --subnet and --gateway"),
                "{}",
                e.message
            );
        }
        let e = d
            .network_create(&req(None, None, GatewayPort::None, Some("vxgw0")))
            .unwrap_err();
        assert!(
            e.message.contains("add --gateway-port host"),
            "{}",
            e.message
        );
        let e = d
            .network_create(&req(
                Some("10.88.0.0/24"),
                Some("10.88.0.1"),
                GatewayPort::Switch,
                Some("vxgw0"),
            ))
            .unwrap_err();
        assert!(e.message.contains("has no interface"), "{}", e.message);
        // Nothing was created by the refused requests; "none" is the default.
        assert!(d.network_ls().is_empty());
        let n = d
            .network_create(&req(None, None, GatewayPort::None, None))
            .unwrap();
        assert_eq!(n.gateway_port, GatewayPort::None);
    }

    #[test]
    fn switch_gateway_answers_arp_and_ping_and_goes_with_the_network() {
        use crate::gateway::responder::fixtures::{arp_request, echo4};
        let mut d = daemon();
        let n = d
            .network_create(&NetworkCreate {
                name: "lab".into(),
                subnet: Some("10.88.0.0/24".into()),
                gateway: Some("10.88.0.1".into()),
                gateway_port: Some(GatewayPort::Switch),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(n.gateway_port, GatewayPort::Switch);
        assert_eq!(n.ports, vec!["vxgw-lab"]);
        let gw_mac = n.gateway_mac.expect("the switch gateway has a MAC");
        let p = &d.port_ls()[0];
        assert_eq!((p.kind, p.gateway), (PortKind::Responder, true));
        assert_eq!(p.ip.unwrap().to_string(), "10.88.0.1/24");

        let mut c1 = fd_port(&mut d, "c1", "lab");
        let c1_mac = MacAddr([2, 0xc1, 0, 0, 0, 0x11]);
        c1.write_all(&arp_request(c1_mac, [10, 88, 0, 11], [10, 88, 0, 1]))
            .unwrap();
        let r = recv(&mut c1);
        assert_eq!(&r[0..6], c1_mac.as_bytes(), "the reply comes back to c1");
        assert_eq!(&r[20..22], &[0, 2], "an ARP reply");
        assert_eq!(&r[22..28], gw_mac.as_bytes());
        c1.write_all(&echo4(
            gw_mac,
            c1_mac,
            [10, 88, 0, 11],
            [10, 88, 0, 1],
            b"hi",
        ))
        .unwrap();
        let r = recv(&mut c1);
        assert_eq!((r[14 + 9], r[14 + 20]), (1, 0), "an ICMP echo reply");
        assert_eq!(&r[14 + 16..14 + 20], &[10, 88, 0, 11]);
        // Another host's address gets no answer, only a count.
        c1.write_all(&arp_request(c1_mac, [10, 88, 0, 11], [10, 88, 0, 12]))
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let stats = loop {
            let s = d.stats(&StatsArgs::default()).unwrap();
            // The worker counts a frame it wrote after the write, so the
            // responder may have read (and counted) it a moment before.
            let tx = s.ports.iter().find(|p| p.name == "vxgw-lab");
            if s.gateways[0].stats.ignored == 1 && tx.is_some_and(|p| p.stats.tx_frames == 3) {
                break s;
            }
            assert!(std::time::Instant::now() < deadline, "{s:?}");
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        let g = &stats.gateways[0];
        assert_eq!((g.network.as_str(), g.port.as_str()), ("lab", "vxgw-lab"));
        assert_eq!((g.stats.neighbor_replies, g.stats.echo_replies), (1, 1));
        let row = stats.ports.iter().find(|p| p.name == "vxgw-lab").unwrap();
        assert_eq!((row.stats.rx_frames, row.stats.tx_frames), (2, 3));
        let mut buf = [0u8; 128];
        assert_eq!(
            c1.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );

        let e = d
            .port_rm(&PortRm {
                name: "vxgw-lab".into(),
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(
            e.message.contains("'vxswitch network rm lab'"),
            "{}",
            e.message
        );
        // Busy because of c1, not because of its own gateway port.
        let e = d
            .network_rm(&NetworkRm {
                name: "lab".into(),
                force: false,
            })
            .unwrap_err();
        assert!(
            e.message.contains("1 port(s) attached (c1)"),
            "{}",
            e.message
        );
        let r = d
            .network_rm(&NetworkRm {
                name: "lab".into(),
                force: true,
            })
            .unwrap();
        assert_eq!(r.removed_ports, vec!["c1"]);
        assert!(d.port_ls().is_empty());
        assert!(d.stats(&StatsArgs::default()).unwrap().gateways.is_empty());
        d.shutdown();
    }

    #[test]
    fn gateway_port_name_clashes_are_refused_whole() {
        let mut d = daemon();
        net(&mut d, "other", None, None);
        fd_port(&mut d, "vxgw-lab", "other");
        let e = d
            .network_create(&NetworkCreate {
                name: "lab".into(),
                subnet: Some("10.88.0.0/24".into()),
                gateway: Some("10.88.0.1".into()),
                gateway_port: Some(GatewayPort::Switch),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Exists);
        assert!(
            e.message.contains("port \"vxgw-lab\" already has"),
            "{}",
            e.message
        );
        assert_eq!(d.network_ls().len(), 1, "no half-created network");
        d.shutdown();
    }
}
