//! `docker_http`: bytes on the Docker plugin's socket (and dockerd's
//! replies); `cni_config`: a CNI plugin's stdin and environment.

use std::collections::{BTreeMap, HashMap};
use std::io::BufReader;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::records;
use crate::cni::{self, result, NetConf, SUPPORTED_VERSIONS};
use crate::ctl::proto::{NetworkInfo, PortInfo, PortKind};
use crate::ctl::{ClientError, CtlError, Request};
use crate::docker::driver::{Backend, Driver};
use crate::docker::http::{self, HttpError, HttpRequest, MAX_BODY};
use crate::docker::names;
use crate::wire::MacAddr;

/// At most this many requests per input.
const MAX_REQUESTS: usize = 32;

/// A daemon in memory, as the plugin sees it through its control socket:
/// networks made by `network.create`, ports by `port.add`.
#[derive(Default)]
struct FakeDaemon {
    nets: Mutex<BTreeMap<String, NetworkInfo>>,
}

impl Backend for &FakeDaemon {
    fn call(&self, req: &Request) -> Result<Value, ClientError> {
        let mut nets = self.nets.lock().unwrap_or_else(|e| e.into_inner());
        let refuse = |e: CtlError| Err(ClientError::Remote(e));
        match req {
            Request::NetworkCreate(c) => {
                if nets.contains_key(&c.name) {
                    return refuse(CtlError::exists(format!("network {} exists", c.name)));
                }
                let info = json!({
                    "name": c.name, "subnet": c.subnet, "gateway": c.gateway,
                    "mtu": c.mtu.unwrap_or(1500), "vni": c.vni,
                    "learn_vteps": c.learn_vteps, "vteps": c.vteps, "ports": [],
                    "gateway_port": c.gateway_port,
                });
                match serde_json::from_value::<NetworkInfo>(info) {
                    Ok(n) => {
                        nets.insert(c.name.clone(), n.clone());
                        Ok(serde_json::to_value(n).unwrap_or_default())
                    }
                    Err(e) => refuse(CtlError::invalid(e.to_string())),
                }
            }
            Request::NetworkRm(r) => match nets.remove(&r.name) {
                Some(_) => Ok(json!({"name": r.name})),
                None => refuse(CtlError::not_found(format!("no network {}", r.name))),
            },
            Request::NetworkLs(_) => {
                Ok(serde_json::to_value(nets.values().collect::<Vec<_>>()).unwrap_or_default())
            }
            Request::PortAdd(a) => {
                let Some(net) = nets.get_mut(&a.network) else {
                    return refuse(CtlError::not_found(format!("no network {}", a.network)));
                };
                if net.ports.contains(&a.name) {
                    return refuse(CtlError::exists(format!("port {} exists", a.name)));
                }
                net.ports.push(a.name.clone());
                let port = PortInfo {
                    name: a.name.clone(),
                    network: a.network.clone(),
                    kind: PortKind::Created,
                    netns: a.netns.clone(),
                    ifname: Some(a.name.clone()),
                    mac: Some(a.mac.unwrap_or(MacAddr([0x02, 0, 0, 0, 0, 0x42]))),
                    ip: None,
                    mtu: net.mtu,
                    container: a.container.clone(),
                    offload: true,
                    gateway: false,
                    port_security: true,
                    ip_guard: false,
                    uplink: None,
                    backend: Default::default(),
                    host_ifname: None,
                };
                Ok(serde_json::to_value(port).unwrap_or_default())
            }
            Request::PortRm(r) => {
                for n in nets.values_mut() {
                    if let Some(i) = n.ports.iter().position(|p| *p == r.name) {
                        n.ports.remove(i);
                        return Ok(json!({"name": r.name}));
                    }
                }
                refuse(CtlError::not_found(format!("no port {}", r.name)))
            }
            _ => Ok(json!({})),
        }
    }
}

/// Runs bytes through the Docker plugin's connection loop: requests read
/// one after another (keep-alive) and each answered by the driver against
/// a daemon in memory; then the same bytes as a reply from dockerd, and
/// its body as dockerd's network inspect. Asserted: a request's body is
/// within `MAX_BODY`; every reply the plugin writes is read back by the
/// HTTP reader of the other side with its status and body intact.
pub fn docker_http(data: &[u8]) -> usize {
    let daemon = FakeDaemon::default();
    let driver = Driver::new(&daemon);
    let mut r = BufReader::new(data);
    let mut served = 0;
    for _ in 0..MAX_REQUESTS {
        match http::read_request(&mut r) {
            Ok(req) => {
                served += 1;
                assert!(req.body.len() <= MAX_BODY);
                let (status, body) = answer(&driver, &req);
                check_written(status, &body, req.close);
                if req.close {
                    break;
                }
            }
            Err(HttpError::Closed) => break,
            Err(HttpError::Bad { status, message }) => {
                assert!(
                    [400, 411, 413, 431, 505].contains(&status),
                    "status {status} for {message:?}"
                );
                let body = serde_json::to_vec(&json!({ "Err": message })).unwrap_or_default();
                check_written(status, &body, true);
                break;
            }
            Err(HttpError::Io(e)) => panic!("reading from memory failed: {e}"),
        }
    }
    if !pending_dechunk_overflow(data) {
        if let Ok((_, body)) = http::parse_response(data) {
            let _ = names::endpoint_container(&body, "ab12cd34ef56");
        }
    }
    served
}

/// What `docker::connection` answers to one request.
fn answer(driver: &Driver<&FakeDaemon>, req: &HttpRequest) -> (u16, Vec<u8>) {
    if req.method != "POST" {
        return (405, b"{\"Err\":\"POST\"}".to_vec());
    }
    match driver.handle(&req.path, &req.body) {
        Ok(v) => (200, serde_json::to_vec(&v).unwrap_or_default()),
        Err(msg) => (
            500,
            serde_json::to_vec(&json!({ "Err": msg })).unwrap_or_default(),
        ),
    }
}

fn check_written(status: u16, body: &[u8], close: bool) {
    let mut out = Vec::new();
    http::write_response(&mut out, status, body, close).expect("writing to memory");
    assert_eq!(
        http::parse_response(&out),
        Ok((status, body.to_vec())),
        "a reply the plugin writes reads back"
    );
}

/// PENDING (issue 11, owned by the Docker/CNI work): `http::dechunk`
/// computes `size + 2` unchecked, so a chunk size within 2 of
/// `usize::MAX` (`ffffffffffffffff`) panics. Until that fix lands, inputs
/// that reach it are skipped here so the target can look for other bugs;
/// `tests/props.rs` keeps the reproducer. Mirrors `dechunk`'s walk.
pub fn pending_dechunk_overflow(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let chunked = head.split("\r\n").skip(1).any(|l| {
        l.split_once(':')
            .is_some_and(|(n, v)| n == "transfer-encoding" && v.trim() == "chunked")
    });
    if !chunked {
        return false;
    }
    let mut rest = &raw[end + 4..];
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let text = std::str::from_utf8(&rest[..eol]).unwrap_or_default();
        let text = text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(text, 16) else {
            return false;
        };
        rest = &rest[eol + 2..];
        if size == 0 {
            return false;
        }
        let Some(end) = size.checked_add(2) else {
            return true;
        };
        if rest.len() < end || &rest[size..end] != b"\r\n" {
            return false;
        }
        rest = &rest[end..];
    }
}

/// The network every CNI configuration here is checked against.
fn cni_network() -> NetworkInfo {
    serde_json::from_value(json!({
        "name": "cni0", "subnet": "10.88.0.0/16", "gateway": "10.88.0.1", "mtu": 1500,
        "vni": null, "learn_vteps": false, "vteps": [], "ports": [],
    }))
    .expect("a valid network")
}

/// Runs a CNI invocation's inputs through the plugin's parsers, never its
/// actions (those reach the daemon and exec IPAM plugins). Input:
/// [`records`]: the configuration on stdin; the environment as `KEY=VALUE`
/// lines; an IPAM plugin's result. Asserted: VERSION always answers with a
/// supported version; a configuration that parses names a supported
/// version and a network; the port name is the documented shape; an IPAM
/// result that plans renders an ADD result that CHECK reads back with the
/// same MAC and address.
pub fn cni_config(data: &[u8]) -> bool {
    let parts = records(data, 3);
    let config = parts.first().copied().unwrap_or_default();
    let env_text = parts.get(1).copied().unwrap_or_default();
    let ipam = parts.get(2).copied().unwrap_or_default();
    let env: HashMap<String, String> = String::from_utf8_lossy(env_text)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let version = cni::run("VERSION", &env, config)
        .expect("VERSION always answers")
        .expect("VERSION prints a result");
    let v = version["cniVersion"].as_str().unwrap_or_default();
    assert!(SUPPORTED_VERSIONS.contains(&v), "VERSION answered {v:?}");
    let args = cni::parse_cni_args(env.get("CNI_ARGS").map_or("", String::as_str));
    let container = env.get("CNI_CONTAINERID").map_or("", String::as_str);
    let ifname = env.get("CNI_IFNAME").map_or("eth0", String::as_str);
    let _ = cni::container_label(&args, container);
    let Ok(conf) = NetConf::parse(config) else {
        return false;
    };
    assert!(SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()));
    assert!(!conf.name.is_empty());
    let port = cni::port_name(&conf.network, container, ifname);
    assert!(
        port.starts_with(cni::PORT_PREFIX) && port.len() <= 33 && port.is_ascii(),
        "port name {port:?}"
    );
    assert_eq!(port, cni::port_name(&conf.network, container, ifname));
    let mac = conf
        .runtime_mac
        .clone()
        .or_else(|| {
            args.iter()
                .find(|(k, _)| k == "MAC")
                .map(|(_, v)| v.clone())
        })
        .and_then(|m| m.parse::<MacAddr>().ok());
    if let Some(prev) = &conf.prev_result {
        let _ = result::expected(prev, ifname);
    }
    let Ok(ipam) = serde_json::from_slice::<Value>(ipam) else {
        return true;
    };
    let net = cni_network();
    let Ok(plan) = result::plan(&ipam, &net) else {
        return true;
    };
    let port_info = PortInfo {
        name: port,
        network: net.name.clone(),
        kind: PortKind::Created,
        netns: Some("/run/netns/fuzz".into()),
        ifname: Some(ifname.to_string()),
        mac: Some(mac.unwrap_or(MacAddr([0x02, 0, 0, 0, 0, 0x42]))),
        ip: plan.ip,
        mtu: 1500,
        container: None,
        offload: true,
        gateway: false,
        port_security: true,
        ip_guard: false,
        uplink: None,
        backend: Default::default(),
        host_ifname: None,
    };
    let out = result::render(
        &conf.cni_version,
        &port_info,
        "/run/netns/fuzz",
        &net,
        &plan,
    );
    let back = result::expected(&out, ifname).expect("CHECK reads the ADD result");
    assert_eq!(back.mac, port_info.mac, "CHECK finds the MAC ADD reported");
    assert_eq!(back.ips, plan.ip.into_iter().collect::<Vec<_>>());
    true
}
