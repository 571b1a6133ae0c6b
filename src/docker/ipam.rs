//! libnetwork's remote IPAM driver (`--ipam-driver vxswitch`): addresses of
//! a cluster network from the cluster-wide IPAM (`docs/cluster.md`), so two
//! Docker hosts on one cluster network never hand out the same address.
//!
//! Calls (POSTs of JSON, as for the network driver): `GetCapabilities`,
//! `GetDefaultAddressSpaces`, `RequestPool`, `ReleasePool`,
//! `RequestAddress`, `ReleaseAddress`. A pool is a cluster network: found by
//! `--ipam-opt vxswitch.cluster=NAME`, or by its subnet (`--subnet`); its
//! pool ID is `vxswitch/NAME`. The gateway Docker asks for is the cluster
//! network's own (reserved, never allocated); every other address is an
//! `ipam.allocate` of the daemon, released by `ipam.release` of the address
//! (the daemon refuses to free an address another host allocated).
//! Nothing is kept here: each call is answered from the daemon.
//!
//! Docker asks for addresses without naming the endpoint, so each
//! allocation gets an owner of its own (`docker/HOSTPID-N-NANOS`): asking
//! twice is two addresses, as Docker's own IPAM does.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::{json, Value};

use super::driver::{Backend, CallError};
use crate::ctl::proto::{
    IpamAllocate, IpamAllocated, IpamRelease, NetworkInfo, NetworkScope, NoArgs, Request,
};
use crate::ctl::ClientError;

/// The `--ipam-opt` naming the cluster network.
pub const CLUSTER_OPTION: &str = "vxswitch.cluster";
/// The address spaces this driver reports (Docker only passes them back).
const LOCAL_SPACE: &str = "vxswitch-local";
const GLOBAL_SPACE: &str = "vxswitch-global";
/// Pool IDs are this and the cluster network's name.
const POOL_PREFIX: &str = "vxswitch/";
/// `RequestAddress` options key saying what the address is for.
const ADDRESS_TYPE: &str = "RequestAddressType";
const GATEWAY_TYPE: &str = "com.docker.network.gateway";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PoolReq {
    #[serde(default)]
    pool: String,
    #[serde(default)]
    sub_pool: String,
    #[serde(default)]
    options: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "V6")]
    v6: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddressReq {
    #[serde(rename = "PoolID")]
    pool_id: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    options: Option<BTreeMap<String, String>>,
}

/// Answers one `IpamDriver.*` call (`call` without the prefix).
pub fn handle<B: Backend>(backend: &B, call: &str, body: &Value) -> Result<Value, CallError> {
    match call {
        "GetCapabilities" => {
            Ok(json!({ "RequiresMACAddress": false, "RequiresRequestReplay": false }))
        }
        "GetDefaultAddressSpaces" => Ok(json!({
            "LocalDefaultAddressSpace": LOCAL_SPACE,
            "GlobalDefaultAddressSpace": GLOBAL_SPACE,
        })),
        "RequestPool" => request_pool(backend, decode(call, body.clone())?),
        "ReleasePool" => Ok(json!({})),
        "RequestAddress" => request_address(backend, decode(call, body.clone())?),
        "ReleaseAddress" => release_address(backend, decode(call, body.clone())?),
        other => Err(format!(
            "vxswitch: unknown IPAM call IpamDriver.{other}; this plugin implements \
             GetCapabilities, GetDefaultAddressSpaces, RequestPool, ReleasePool, \
             RequestAddress and ReleaseAddress"
        )),
    }
}

fn decode<T: serde::de::DeserializeOwned>(call: &str, v: Value) -> Result<T, CallError> {
    serde_json::from_value(v)
        .map_err(|e| format!("vxswitch: malformed IpamDriver.{call} request: {e}"))
}

fn daemon_error(e: &ClientError) -> CallError {
    match e {
        ClientError::Remote(e) => format!("vxswitch: {}", e.message),
        other => format!("vxswitch: cannot reach the vxswitch daemon: {other}"),
    }
}

fn cluster_networks<B: Backend>(backend: &B) -> Result<Vec<NetworkInfo>, CallError> {
    let v = backend
        .call(&Request::NetworkLs(NoArgs {}))
        .map_err(|e| daemon_error(&e))?;
    let nets: Vec<NetworkInfo> = serde_json::from_value(v)
        .map_err(|e| format!("unexpected network.ls reply from the vxswitch daemon: {e}"))?;
    Ok(nets
        .into_iter()
        .filter(|n| n.scope == NetworkScope::Cluster)
        .collect())
}

const CREATE_HINT: &str = "create it once, from any host, with 'vxswitch network create NAME \
                           --cluster --vni N --subnet CIDR --gateway ADDR' (the daemons run \
                           with --cluster)";

fn request_pool<B: Backend>(backend: &B, r: PoolReq) -> Result<Value, CallError> {
    if r.v6 {
        return Err(
            "vxswitch IPAM: IPv6 pools are not served (the cluster network's local \
                    network has one IPv4 subnet); leave out --ipv6"
                .into(),
        );
    }
    if !r.sub_pool.is_empty() {
        return Err(format!(
            "vxswitch IPAM: --ip-range {} is not supported: the whole subnet of the cluster \
             network is the range",
            r.sub_pool
        ));
    }
    let named = r
        .options
        .as_ref()
        .and_then(|o| o.get(CLUSTER_OPTION))
        .cloned();
    let nets = cluster_networks(backend)?;
    let net = match (&named, r.pool.as_str()) {
        (Some(name), _) => nets.iter().find(|n| n.name == *name).ok_or_else(|| {
            format!("vxswitch IPAM: there is no cluster network {name}; {CREATE_HINT}")
        })?,
        (None, "") => {
            return Err(format!(
                "vxswitch IPAM: name the cluster network with --ipam-opt {CLUSTER_OPTION}=NAME \
                 or give its --subnet"
            ))
        }
        (None, pool) => {
            let found: Vec<&NetworkInfo> = nets
                .iter()
                .filter(|n| n.subnet.is_some_and(|s| s.to_string() == pool))
                .collect();
            match found[..] {
                [n] => n,
                [] => {
                    return Err(format!(
                        "vxswitch IPAM: no cluster network has subnet {pool}; {CREATE_HINT}"
                    ))
                }
                _ => {
                    return Err(format!(
                        "vxswitch IPAM: several cluster networks have subnet {pool}; name one \
                         with --ipam-opt {CLUSTER_OPTION}=NAME"
                    ))
                }
            }
        }
    };
    let subnet = net.subnet.ok_or_else(|| {
        format!(
            "vxswitch IPAM: cluster network {} has no subnet to allocate from; {CREATE_HINT}",
            net.name
        )
    })?;
    if !r.pool.is_empty() && r.pool != subnet.to_string() {
        return Err(format!(
            "vxswitch IPAM: cluster network {} has subnet {subnet}, not {}",
            net.name, r.pool
        ));
    }
    Ok(json!({
        "PoolID": format!("{POOL_PREFIX}{}", net.name),
        "Pool": subnet.to_string(),
        "Data": {},
    }))
}

fn pool_network(pool_id: &str) -> Result<&str, CallError> {
    pool_id
        .strip_prefix(POOL_PREFIX)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("vxswitch IPAM: unknown pool {pool_id:?}"))
}

/// The address part of Docker's `ADDR` or `ADDR/LEN`.
fn address(raw: &str) -> Result<Option<IpAddr>, CallError> {
    if raw.is_empty() {
        return Ok(None);
    }
    raw.split('/')
        .next()
        .unwrap_or(raw)
        .parse()
        .map(Some)
        .map_err(|_| format!("vxswitch IPAM: invalid address {raw:?} from Docker"))
}

fn request_address<B: Backend>(backend: &B, r: AddressReq) -> Result<Value, CallError> {
    let network = pool_network(&r.pool_id)?;
    let wanted = address(&r.address)?;
    let gateway_asked = r
        .options
        .as_ref()
        .and_then(|o| o.get(ADDRESS_TYPE))
        .is_some_and(|t| t == GATEWAY_TYPE);
    if gateway_asked {
        let nets = cluster_networks(backend)?;
        let net = nets
            .iter()
            .find(|n| n.name == network)
            .ok_or_else(|| format!("vxswitch IPAM: there is no cluster network {network}"))?;
        let (Some(gw), Some(subnet)) = (net.gateway, net.subnet) else {
            return Err(format!(
                "vxswitch IPAM: cluster network {network} has no gateway for Docker; create \
                 it with --gateway ADDR"
            ));
        };
        if wanted.is_some_and(|w| w != gw) {
            return Err(format!(
                "vxswitch IPAM: cluster network {network}'s gateway is {gw}, not {}",
                r.address
            ));
        }
        return Ok(json!({ "Address": format!("{gw}/{}", subnet.prefix_len()), "Data": {} }));
    }
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let owner = format!(
        "docker/{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let v = backend
        .call(&Request::IpamAllocate(IpamAllocate {
            network: network.to_string(),
            owner,
            ip: wanted.map(|w| w.to_string()),
        }))
        .map_err(|e| daemon_error(&e))?;
    let got: IpamAllocated = serde_json::from_value(v)
        .map_err(|e| format!("unexpected ipam.allocate reply from the vxswitch daemon: {e}"))?;
    Ok(json!({ "Address": got.ip.to_string(), "Data": {} }))
}

fn release_address<B: Backend>(backend: &B, r: AddressReq) -> Result<Value, CallError> {
    let network = pool_network(&r.pool_id)?;
    let Some(ip) = address(&r.address)? else {
        return Ok(json!({}));
    };
    let nets = cluster_networks(backend)?;
    if nets
        .iter()
        .any(|n| n.name == network && n.gateway == Some(ip))
    {
        return Ok(json!({})); // the gateway is the network's, never allocated
    }
    match backend.call(&Request::IpamRelease(IpamRelease {
        network: network.to_string(),
        ip: Some(ip.to_string()),
        owner: None,
    })) {
        Ok(_) => Ok(json!({})),
        Err(e) => Err(daemon_error(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Answers network.ls with one cluster network and one local one,
    /// ipam.* with what the daemon would; records the requests.
    #[derive(Default)]
    struct Fake {
        sent: Mutex<Vec<Request>>,
    }

    impl Backend for &Fake {
        fn call(&self, req: &Request) -> Result<Value, ClientError> {
            self.sent.lock().unwrap().push(req.clone());
            Ok(match req {
                Request::NetworkLs(_) => json!([
                    {"name": "blue", "subnet": "10.42.0.0/24", "gateway": "10.42.0.1", "mtu": 1450,
                     "vni": 4242, "learn_vteps": false, "vteps": [], "ports": [], "scope": "cluster"},
                    {"name": "red", "subnet": "10.42.0.0/24", "gateway": null, "mtu": 1500,
                     "vni": null, "learn_vteps": false, "vteps": [], "ports": []}
                ]),
                Request::IpamAllocate(a) => json!({
                    "network": a.network,
                    "ip": format!("{}/24", a.ip.clone().unwrap_or("10.42.0.2".into())),
                    "gateway": "10.42.0.1"
                }),
                Request::IpamRelease(r) => json!({"network": r.network, "released": []}),
                _ => json!({}),
            })
        }
    }

    fn ipam(f: &Fake, call: &str, body: Value) -> Result<Value, CallError> {
        handle(&f, call, &body)
    }

    #[test]
    fn pools_are_cluster_networks_found_by_subnet_or_name() {
        let f = Fake::default();
        assert_eq!(
            ipam(&f, "GetCapabilities", json!({})).unwrap()["RequiresMACAddress"],
            false
        );
        // The local network with the same subnet is not a candidate.
        let pool = ipam(
            &f,
            "RequestPool",
            json!({"AddressSpace": "vxswitch-local", "Pool": "10.42.0.0/24"}),
        )
        .unwrap();
        assert_eq!(
            pool,
            json!({"PoolID": "vxswitch/blue", "Pool": "10.42.0.0/24", "Data": {}})
        );
        let named = ipam(
            &f,
            "RequestPool",
            json!({"Options": {"vxswitch.cluster": "blue"}}),
        )
        .unwrap();
        assert_eq!(named["PoolID"], "vxswitch/blue");
        for (body, want) in [
            (json!({}), "--ipam-opt vxswitch.cluster=NAME"),
            (
                json!({"Pool": "10.9.0.0/24"}),
                "no cluster network has subnet 10.9.0.0/24",
            ),
            (
                json!({"Options": {"vxswitch.cluster": "red"}}),
                "there is no cluster network red",
            ),
            (
                json!({"Pool": "10.42.0.0/24", "V6": true}),
                "IPv6 pools are not served",
            ),
            (
                json!({"Pool": "10.42.0.0/24", "SubPool": "10.42.0.0/25"}),
                "--ip-range",
            ),
        ] {
            let e = ipam(&f, "RequestPool", body).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn addresses_come_from_the_daemon_and_the_gateway_is_the_networks() {
        let f = Fake::default();
        let gw = ipam(
            &f,
            "RequestAddress",
            json!({"PoolID": "vxswitch/blue", "Options": {"RequestAddressType": "com.docker.network.gateway"}}),
        )
        .unwrap();
        assert_eq!(gw["Address"], "10.42.0.1/24");
        f.sent.lock().unwrap().clear();
        let a = ipam(&f, "RequestAddress", json!({"PoolID": "vxswitch/blue"})).unwrap();
        assert_eq!(a["Address"], "10.42.0.2/24");
        let b = ipam(
            &f,
            "RequestAddress",
            json!({"PoolID": "vxswitch/blue", "Address": "10.42.0.9"}),
        )
        .unwrap();
        assert_eq!(b["Address"], "10.42.0.9/24");
        let sent = std::mem::take(&mut *f.sent.lock().unwrap());
        let owners: Vec<&str> = sent
            .iter()
            .filter_map(|r| match r {
                Request::IpamAllocate(a) => Some(a.owner.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(owners.len(), 2);
        assert_ne!(owners[0], owners[1], "each request is its own owner");
        // Releasing the gateway frees nothing; an address goes to the daemon.
        ipam(
            &f,
            "ReleaseAddress",
            json!({"PoolID": "vxswitch/blue", "Address": "10.42.0.1"}),
        )
        .unwrap();
        ipam(
            &f,
            "ReleaseAddress",
            json!({"PoolID": "vxswitch/blue", "Address": "10.42.0.9/24"}),
        )
        .unwrap();
        let released: Vec<IpamRelease> = std::mem::take(&mut *f.sent.lock().unwrap())
            .into_iter()
            .filter_map(|r| match r {
                Request::IpamRelease(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(
            released,
            vec![IpamRelease {
                network: "blue".into(),
                ip: Some("10.42.0.9".into()),
                owner: None,
            }]
        );
        let e = ipam(&f, "RequestAddress", json!({"PoolID": "elsewhere"})).unwrap_err();
        assert!(e.contains("unknown pool"), "{e}");
        let e = ipam(&f, "Bogus", json!({})).unwrap_err();
        assert!(e.contains("unknown IPAM call"), "{e}");
    }
}
