//! From an IPAM result to a `port.add`, and from the port to the CNI
//! result (1.x form, or 0.3.x/0.4.0 with `version` in each IP).
//!
//! A vxswitch port carries one address and, when its network has a
//! gateway, a default route via it: that is what the daemon configures.
//! An IPAM result asking for more (two addresses, other routes, another
//! gateway) is refused with a message rather than half-honoured, and the
//! result reports what is really configured.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{json, Value};

use super::{code, family, CniError};
use crate::ctl::proto::{NetworkInfo, PortInfo};
use crate::wire::MacAddr;

/// What ADD asks the daemon for, from the IPAM result.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub ip: Option<IpNet>,
    /// IPAM's `dns`, passed through.
    pub dns: Option<Value>,
}

/// A CNI ADD result, as printed.
pub type AddResult = Value;

fn invalid(msg: String) -> CniError {
    CniError::new(code::INVALID_CONFIG, msg)
}

fn decode(msg: String) -> CniError {
    CniError::new(code::DECODE_FAILURE, msg)
}

fn is_default(dst: &IpNet) -> bool {
    dst.prefix_len() == 0
}

/// Checks an IPAM result against what the network can carry.
pub fn plan(ipam: &Value, net: &NetworkInfo) -> Result<Plan, CniError> {
    let ips = ipam
        .get("ips")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ips.len() > 1 {
        let list: Vec<&str> = ips
            .iter()
            .filter_map(|i| i.get("address")?.as_str())
            .collect();
        return Err(invalid(format!(
            "the ipam section gives {} addresses ({}); a vxswitch port takes one: configure \
             one range",
            ips.len(),
            list.join(", ")
        )));
    }
    let mut ip = None;
    if let Some(entry) = ips.first() {
        let raw = entry.get("address").and_then(Value::as_str).unwrap_or("");
        let addr: IpNet = raw
            .parse()
            .map_err(|_| decode(format!("IPAM result: invalid address {raw:?}")))?;
        if let (Some(gw), Some(ours)) = (entry.get("gateway").and_then(Value::as_str), net.gateway)
        {
            let gw: IpAddr = gw
                .parse()
                .map_err(|_| decode(format!("IPAM result: invalid gateway {gw:?}")))?;
            if gw != ours {
                return Err(invalid(format!(
                    "the ipam section's gateway {gw} differs from vxswitch network {}'s \
                     gateway {ours}; make them the same (\"gateway\" in the ipam range, or \
                     'vxswitch network create {} --gateway {gw}')",
                    net.name, net.name
                )));
            }
        }
        ip = Some(addr);
    }
    for r in ipam
        .get("routes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let raw = r.get("dst").and_then(Value::as_str).unwrap_or("");
        let dst: IpNet = raw
            .parse()
            .map_err(|_| decode(format!("IPAM result: invalid route destination {raw:?}")))?;
        if !is_default(&dst) {
            return Err(invalid(format!(
                "the ipam section asks for a route to {dst}; vxswitch sets only a default \
                 route via the network's gateway: remove it from \"routes\""
            )));
        }
        let via_gateway = net
            .gateway
            .is_some_and(|g| g.is_ipv4() == dst.addr().is_ipv4());
        if !via_gateway {
            return Err(invalid(format!(
                "the ipam section asks for a default route ({dst}) but vxswitch network {} \
                 has no gateway for it: create the network with --gateway, or remove the \
                 route",
                net.name
            )));
        }
        if let Some(gw) = r.get("gw").and_then(Value::as_str) {
            if gw.parse::<IpAddr>().ok() != net.gateway {
                return Err(invalid(format!(
                    "the ipam section routes {dst} via {gw}, but vxswitch network {} routes \
                     via its gateway {}; make them the same",
                    net.name,
                    net.gateway.map_or("none".into(), |g| g.to_string())
                )));
            }
        }
    }
    let dns = ipam
        .get("dns")
        .filter(|d| d.as_object().is_some_and(|o| !o.is_empty()))
        .cloned();
    Ok(Plan { ip, dns })
}

/// The ADD result for `port` in `version`'s form.
pub fn render(
    version: &str,
    port: &PortInfo,
    netns: &str,
    net: &NetworkInfo,
    plan: &Plan,
) -> AddResult {
    let legacy = version.starts_with("0.");
    let mut iface = json!({
        "name": port.ifname.clone().unwrap_or_default(),
        "sandbox": netns,
    });
    if let Some(mac) = port.mac {
        iface["mac"] = json!(mac.to_string());
    }
    let mut ips = Vec::new();
    let mut routes = Vec::new();
    if let Some(ip) = port.ip {
        let mut entry = json!({"address": ip.to_string(), "interface": 0});
        let gateway = net.gateway.filter(|g| g.is_ipv4() == ip.addr().is_ipv4());
        if let Some(gw) = gateway {
            entry["gateway"] = json!(gw.to_string());
            let dst = if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
            routes.push(json!({"dst": dst, "gw": gw.to_string()}));
        }
        if legacy {
            entry["version"] = json!(family(&ip.addr()));
        }
        ips.push(entry);
    }
    let mut out = json!({
        "cniVersion": version,
        "interfaces": [iface],
        "ips": ips,
        "routes": routes,
    });
    out["dns"] = plan.dns.clone().unwrap_or_else(|| json!({}));
    out
}

/// What a CHECK expects, from `prevResult`.
#[derive(Debug, Default)]
pub struct Expect {
    pub mac: Option<MacAddr>,
    pub ips: Vec<IpNet>,
}

pub fn expected(prev: &Value, ifname: &str) -> Result<Expect, CniError> {
    let ifaces = prev.get("interfaces").and_then(Value::as_array);
    let index = ifaces.and_then(|list| {
        list.iter().position(|i| {
            i.get("name").and_then(Value::as_str) == Some(ifname)
                && i.get("sandbox")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
        })
    });
    let mac = match index.and_then(|i| ifaces?.get(i)?.get("mac")?.as_str()) {
        Some(m) => Some(
            m.parse::<MacAddr>()
                .map_err(|_| decode(format!("prevResult: invalid MAC {m:?}")))?,
        ),
        None => None,
    };
    let mut ips = Vec::new();
    for entry in prev
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mine = match entry.get("interface").and_then(Value::as_u64) {
            Some(i) => index.is_some_and(|idx| usize::try_from(i).ok() == Some(idx)),
            None => true,
        };
        if mine {
            let raw = entry.get("address").and_then(Value::as_str).unwrap_or("");
            ips.push(
                raw.parse()
                    .map_err(|_| decode(format!("prevResult: invalid address {raw:?}")))?,
            );
        }
    }
    Ok(Expect { mac, ips })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::proto::PortKind;

    fn net(gw: Option<&str>) -> NetworkInfo {
        NetworkInfo {
            name: "red".into(),
            subnet: Some("10.77.0.0/24".parse().unwrap()),
            gateway: gw.map(|g| g.parse().unwrap()),
            mtu: 1500,
            vni: None,
            learn_vteps: false,
            vteps: vec![],
            ports: vec![],
            gateway_port: Default::default(),
            gateway_mac: None,
            gateway_ifname: None,
            scope: Default::default(),
            neigh_suppress: false,
            uplink: None,
            vlan: None,
        }
    }

    fn port() -> PortInfo {
        PortInfo {
            name: "cni-abc-0123456789abcdef".into(),
            network: "red".into(),
            kind: PortKind::Created,
            netns: Some("/run/netns/c1".into()),
            ifname: Some("eth0".into()),
            mac: Some(MacAddr([2, 0, 0, 0, 0, 0x11])),
            ip: Some("10.77.0.11/24".parse().unwrap()),
            mtu: 1500,
            container: Some("web".into()),
            offload: true,
            gateway: false,
            port_security: true,
            ip_guard: false,
            uplink: None,
            backend: Default::default(),
            host_ifname: None,
        }
    }

    #[test]
    fn host_local_result_becomes_one_address_and_the_gateway_route() {
        let ipam = json!({"cniVersion": "1.0.0",
            "ips": [{"address": "10.77.0.11/24", "gateway": "10.77.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": ["10.77.0.53"]}});
        let p = plan(&ipam, &net(Some("10.77.0.1"))).unwrap();
        assert_eq!(p.ip, Some("10.77.0.11/24".parse().unwrap()));
        let r = render(
            "1.0.0",
            &port(),
            "/run/netns/c1",
            &net(Some("10.77.0.1")),
            &p,
        );
        assert_eq!(
            r,
            json!({"cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:11", "sandbox": "/run/netns/c1"}],
                "ips": [{"address": "10.77.0.11/24", "gateway": "10.77.0.1", "interface": 0}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.77.0.1"}],
                "dns": {"nameservers": ["10.77.0.53"]}})
        );
        let old = render(
            "0.4.0",
            &port(),
            "/run/netns/c1",
            &net(Some("10.77.0.1")),
            &p,
        );
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["cniVersion"], "0.4.0");
        let e = expected(&r, "eth0").unwrap();
        assert_eq!(e.mac, Some(MacAddr([2, 0, 0, 0, 0, 0x11])));
        assert_eq!(e.ips, vec!["10.77.0.11/24".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn what_a_port_cannot_carry_is_refused() {
        let two = json!({"ips": [{"address": "10.77.0.11/24"}, {"address": "fd00::11/64"}]});
        let e = plan(&two, &net(None)).unwrap_err();
        assert!(
            e.msg
                .contains("gives 2 addresses (10.77.0.11/24, fd00::11/64)"),
            "{}",
            e.msg
        );
        let route = json!({"ips": [], "routes": [{"dst": "192.168.0.0/16"}]});
        let e = plan(&route, &net(Some("10.77.0.1"))).unwrap_err();
        assert!(e.msg.contains("route to 192.168.0.0/16"), "{}", e.msg);
        let nogw = json!({"routes": [{"dst": "0.0.0.0/0"}]});
        let e = plan(&nogw, &net(None)).unwrap_err();
        assert!(e.msg.contains("has no gateway"), "{}", e.msg);
        let gw = json!({"ips": [{"address": "10.77.0.11/24", "gateway": "10.77.0.254"}]});
        let e = plan(&gw, &net(Some("10.77.0.1"))).unwrap_err();
        assert!(e.msg.contains("gateway 10.77.0.254 differs"), "{}", e.msg);
        assert_eq!(e.code, code::INVALID_CONFIG);
        // Without a network gateway IPAM's is not used, and not reported.
        let p = plan(&gw, &net(None)).unwrap();
        let r = render("1.1.0", &port(), "/run/netns/c1", &net(None), &p);
        assert!(r["ips"][0].get("gateway").is_none() && r["routes"] == json!([]));
        assert_eq!(r["dns"], json!({}));
    }
}
