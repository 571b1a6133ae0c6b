//! The libnetwork remote network driver: each plugin call becomes one or
//! two requests to the vxswitch daemon.
//!
//! The driver keeps no state of its own. Docker's IDs map to vxswitch names
//! deterministically, so any call can be answered after a plugin restart:
//!
//! - network `NetworkID` -> vxswitch network `docker-` + the first 12 hex
//!   digits (what `docker network ls` shows as NETWORK ID);
//! - endpoint `EndpointID` -> port (and TAP) `vx` + the first 12 hex digits
//!   (14 bytes: an interface name has at most 15);
//! - the host gateway port of a network -> interface `vxgw-` + the first 10
//!   hex digits of the NetworkID.
//!
//! Docker configures the container's side itself (the address from its
//! IPAM, the default route via the gateway the Join reply names), so ports
//! are created without an address, in the daemon's namespace; Docker moves
//! the TAP into the container at Join and renames it `ethN`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::ctl::proto::{
    GatewayPort, NetworkCreate, NetworkInfo, NetworkRm, NetworkScope, NoArgs, PortAdd, PortInfo,
    PortRm, Request,
};
use crate::ctl::{ClientError, ErrorKind};
use crate::wire::MacAddr;

use super::names::Labeler;

/// How the driver reaches the daemon: one request, one result. The plugin
/// uses [`crate::ctl::Client`]; unit tests use a fake.
pub trait Backend: Send + Sync {
    fn call(&self, req: &Request) -> Result<Value, ClientError>;
}

/// The `-o` options of `docker network create -d vxswitch` this driver
/// understands, and what each maps to.
pub const OPTIONS: &[(&str, &str)] = &[
    (
        "vxswitch.vni",
        "network.create vni: span hosts over VXLAN with this VNI",
    ),
    (
        "vxswitch.vteps",
        "network.create vteps: remote VTEPs, ADDR[:PORT] separated by commas",
    ),
    (
        "vxswitch.mtu",
        "network.create mtu: MTU of the network's ports",
    ),
    (
        "vxswitch.gateway",
        "network.create gateway_port: host (default), switch or none",
    ),
    (
        "vxswitch.port_security",
        "network.create port_security: on (default: a container sends only from its own MAC) \
         or off (containers that carry other MACs)",
    ),
    (
        "vxswitch.uplink",
        "network.create uplink: the host interface on the LAN (e.g. eth0); containers are \
         on that LAN, as with macvlan (docs/uplink.md)",
    ),
    (
        "vxswitch.vlan",
        "network.create vlan: the uplink's VLAN id, 1 to 4094 (needs vxswitch.uplink)",
    ),
    (
        "vxswitch.backend",
        "network.create backend: the containers' interfaces, tap (default) or veth \
         (docs/veth.md)",
    ),
    (
        "vxswitch.storm_pps",
        "network.create storm_pps: broadcast/multicast frames per second from the LAN \
         (default 1000, 0: no limit)",
    ),
    (
        PARENT_OPTION,
        "macvlan's spelling of the uplink: parent=eth0, or parent=eth0.10 for VLAN 10 of eth0",
    ),
    (
        MTU_OPTION,
        "network.create mtu (Docker's own MTU option; must agree with vxswitch.mtu)",
    ),
    (
        CLUSTER_OPTION,
        "the cluster network (vxswitch network create NAME --cluster) this Docker network \
         joins; its settings are the cluster's",
    ),
];

/// `-o vxswitch.cluster=NAME`: the Docker network is the cluster network.
const CLUSTER_OPTION: &str = "vxswitch.cluster";
/// `-o parent=eth0.10`: macvlan's option, taken as `vxswitch.uplink=eth0`
/// and `vxswitch.vlan=10`.
const PARENT_OPTION: &str = "parent";

/// macvlan's `parent`: `eth0` (untagged) or `eth0.10` (VLAN 10 of eth0).
fn parse_parent(value: &str) -> Result<(String, Option<u16>), String> {
    let bad = || {
        format!(
            "option parent={value:?}: give the host interface on the LAN, e.g. parent=eth0, \
             or parent=eth0.10 for its VLAN 10"
        )
    };
    if value.is_empty() || value.starts_with('.') {
        return Err(bad());
    }
    match value.rsplit_once('.') {
        Some((ifname, vid)) if !vid.is_empty() && vid.bytes().all(|b| b.is_ascii_digit()) => {
            let vid: u16 = vid.parse().map_err(|_| bad())?;
            if ifname.is_empty() || !(1..=4094).contains(&vid) {
                return Err(bad());
            }
            Ok((ifname.to_string(), Some(vid)))
        }
        _ => Ok((value.to_string(), None)),
    }
}

/// Docker's generic MTU option, as `-o com.docker.network.driver.mtu=N`.
const MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// CreateNetwork's `Options` key for `docker network create --internal`.
const INTERNAL: &str = "com.docker.network.internal";
/// Where Docker puts the `-o` options in CreateNetwork's `Options`.
const GENERIC: &str = "com.docker.network.generic";

/// How the daemon's network `have` differs from what `want` asks for, in
/// the words of `network ls` ("subnet 10.1.0.0/24, not 10.2.0.0/24"); `None`
/// when it is the same network. What `want` leaves out (an MTU, the
/// gateway interface) is whatever the daemon chose.
fn spec_difference(want: &NetworkCreate, have: &NetworkInfo) -> Option<String> {
    let mut diffs = Vec::new();
    let show = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    let subnet = want.subnet.as_deref().map(|s| {
        s.parse::<ipnet::IpNet>()
            .map(|n| n.trunc().to_string())
            .unwrap_or(s.into())
    });
    let have_subnet = have.subnet.map(|n| n.trunc().to_string());
    if subnet != have_subnet {
        diffs.push(format!(
            "subnet {}, not {}",
            show(have_subnet),
            show(subnet)
        ));
    }
    let gateway = want.gateway.as_deref().map(|g| {
        g.parse::<std::net::IpAddr>()
            .map(|a| a.to_string())
            .unwrap_or(g.into())
    });
    let have_gateway = have.gateway.map(|g| g.to_string());
    if gateway != have_gateway {
        diffs.push(format!(
            "gateway {}, not {}",
            show(have_gateway),
            show(gateway)
        ));
    }
    if want.vni != have.vni {
        diffs.push(format!(
            "VNI {}, not {}",
            show(have.vni.map(|v| v.to_string())),
            show(want.vni.map(|v| v.to_string()))
        ));
    }
    if let Some(mtu) = want.mtu.filter(|m| *m != have.mtu) {
        diffs.push(format!("MTU {}, not {mtu}", have.mtu));
    }
    let kind = want.gateway_port.unwrap_or_default();
    if kind != have.gateway_port {
        diffs.push(format!("gateway port {}, not {kind}", have.gateway_port));
    }
    if let (Some(w), Some(h)) = (&want.gateway_ifname, &have.gateway_ifname) {
        if w != h {
            diffs.push(format!("gateway interface {h}, not {w}"));
        }
    }
    let uplink = |u: &Option<String>, vlan: Option<u16>| match (u, vlan) {
        (Some(u), Some(v)) => format!("{u} VLAN {v}"),
        (Some(u), None) => u.clone(),
        (None, _) => "none".into(),
    };
    let (want_uplink, have_uplink) = (
        uplink(&want.uplink, want.vlan),
        uplink(&have.uplink, have.vlan),
    );
    if want_uplink != have_uplink {
        diffs.push(format!("uplink {have_uplink}, not {want_uplink}"));
    }
    (!diffs.is_empty()).then(|| diffs.join(", "))
}

/// An error for Docker's `{"Err": ...}`: the docker CLI prints it after
/// "Error response from daemon:".
pub type CallError = String;

/// The driver: answers one plugin call.
pub struct Driver<B> {
    backend: B,
    /// Where each network's `network.create` request is kept, so that a
    /// network the daemon lost (it restarted) is made again when Docker
    /// next creates an endpoint on it.
    state_dir: Option<PathBuf>,
    /// Labels each joined endpoint's port with its container's name,
    /// asked from dockerd after Join (see [`super::names`]).
    labeler: Option<Arc<Labeler>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IpamData {
    #[serde(default)]
    pool: String,
    #[serde(default)]
    gateway: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateNetworkReq {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(default)]
    options: BTreeMap<String, Value>,
    #[serde(default, rename = "IPv4Data")]
    ipv4_data: Option<Vec<IpamData>>,
}

#[derive(Debug, Default, Deserialize)]
struct NetworkReq {
    #[serde(rename = "NetworkID")]
    network_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EndpointInterface {
    #[serde(default)]
    mac_address: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EndpointReq {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    #[serde(default)]
    interface: Option<EndpointInterface>,
    #[serde(default)]
    options: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    sandbox_key: String,
}

impl<B: Backend> Driver<B> {
    pub fn new(backend: B) -> Self {
        Driver {
            backend,
            state_dir: None,
            labeler: None,
        }
    }

    /// Looks up each joined endpoint's container name with `labeler`.
    pub fn with_labeler(mut self, labeler: Arc<Labeler>) -> Self {
        self.labeler = Some(labeler);
        self
    }

    /// Keeps each network's creation request in `dir` (see [`Driver`]).
    pub fn with_state_dir(mut self, dir: PathBuf) -> Self {
        self.state_dir = Some(dir);
        self
    }

    fn state_file(&self, network: &str) -> Option<PathBuf> {
        self.state_dir
            .as_ref()
            .map(|d| d.join(format!("{network}.json")))
    }

    /// Records the request that made `network` (write, then rename: a
    /// crash leaves the old file or the new one, never half of one).
    fn save(&self, create: &NetworkCreate) -> Result<(), CallError> {
        self.save_as(&create.name, create)
    }

    /// Records `create` under the vxswitch name `network` (a Docker
    /// network's link to a cluster network has the cluster network's).
    fn save_as(&self, network: &str, create: &NetworkCreate) -> Result<(), CallError> {
        let Some(path) = self.state_file(network) else {
            return Ok(());
        };
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(create).unwrap_or_default();
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                format!(
                    "vxswitch plugin: cannot record the network in {}: {e}",
                    path.display()
                )
            })
    }

    /// The vxswitch network of a Docker network: its own (`docker-ID`), or
    /// the cluster network it joined (`-o vxswitch.cluster`).
    fn vx_network(&self, network_id: &str) -> Result<String, CallError> {
        let name = network_name(network_id)?;
        Ok(match self.saved(&name) {
            Some(c) if c.cluster => c.name,
            _ => name,
        })
    }

    /// `-o vxswitch.cluster=NAME`: the Docker network `docker_name` is the
    /// daemon's cluster network `cluster` (made once for the whole cluster
    /// with `vxswitch network create NAME --cluster`); only the link is
    /// recorded, nothing is created.
    fn join_cluster_network(
        &self,
        docker_name: &str,
        cluster: &str,
        opts: &BTreeMap<String, String>,
        r: &CreateNetworkReq,
    ) -> Result<Value, CallError> {
        if let Some(k) = opts
            .keys()
            .find(|k| k.starts_with("vxswitch.") && *k != CLUSTER_OPTION)
        {
            return Err(format!(
                "option {k} does not go with -o {CLUSTER_OPTION}: the network's settings are \
                 the cluster network's"
            ));
        }
        let nets = self.networks()?;
        let Some(net) = nets
            .iter()
            .find(|n| n.name == cluster && n.scope == NetworkScope::Cluster)
        else {
            return Err(format!(
                "the vxswitch daemon has no cluster network {cluster}; create it once, from \
                 any host, with 'vxswitch network create {cluster} --cluster --vni N --subnet \
                 CIDR --gateway ADDR' (the daemons run with --cluster)"
            ));
        };
        for p in r.ipv4_data.iter().flatten() {
            let docker = p.pool.parse::<ipnet::IpNet>().ok().map(|n| n.trunc());
            if !p.pool.is_empty() && p.pool != "0.0.0.0/0" && docker != net.subnet {
                return Err(format!(
                    "cluster network {cluster} has subnet {}, Docker's IPAM gave {}; use \
                     --ipam-driver vxswitch (addresses unique cluster-wide) or --subnet {}",
                    net.subnet.map_or("none".into(), |s| s.to_string()),
                    p.pool,
                    net.subnet.map_or("none".into(), |s| s.to_string()),
                ));
            }
        }
        let link = NetworkCreate {
            name: cluster.to_string(),
            cluster: true,
            ..Default::default()
        };
        self.save_as(docker_name, &link)?;
        Ok(json!({}))
    }

    /// The recorded creation request of `network`, if any.
    fn saved(&self, network: &str) -> Option<NetworkCreate> {
        let text = std::fs::read(self.state_file(network)?).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Creates a network; success if it exists already under that name
    /// with the same configuration (Docker retried, or a daemon with
    /// `--state-dir` restored it), an error naming the difference if it
    /// exists with another.
    fn ensure_network(&self, create: &NetworkCreate) -> Result<(), CallError> {
        match self.call(Request::NetworkCreate(create.clone())) {
            Ok(_) => Ok(()),
            Err(ClientError::Remote(e)) if e.kind == ErrorKind::Exists => {
                // Exists may also mean "the VNI is taken": look.
                let nets = self.networks()?;
                match nets.iter().find(|n| n.name == create.name) {
                    Some(have) => match spec_difference(create, have) {
                        None => Ok(()),
                        Some(diff) => Err(format!(
                            "the vxswitch daemon already has a network {} with another \
                             configuration ({diff}); remove it with 'vxswitch network rm {} \
                             --force' if it is stale, or recreate the Docker network",
                            create.name, create.name
                        )),
                    },
                    None => Err(format!("vxswitch: {}", e.message)),
                }
            }
            Err(e) => Err(daemon_error(&e)),
        }
    }

    fn networks(&self) -> Result<Vec<NetworkInfo>, CallError> {
        self.call(Request::NetworkLs(NoArgs {}))
            .map_err(|e| daemon_error(&e))
            .and_then(|v| {
                serde_json::from_value(v).map_err(|e| {
                    format!("unexpected network.ls reply from the vxswitch daemon: {e}")
                })
            })
    }

    /// Answers the call at `path` (`/NetworkDriver.CreateNetwork`, ...)
    /// with body `body`: the JSON reply, or the message for `{"Err": ...}`.
    pub fn handle(&self, path: &str, body: &[u8]) -> Result<Value, CallError> {
        let call = path.trim_start_matches('/');
        let parse = |what: &str| -> Result<Value, CallError> {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(json!({}));
            }
            serde_json::from_slice(body)
                .map_err(|e| format!("vxswitch: malformed {what} request from Docker: {e}"))
        };
        match call {
            "Plugin.Activate" => Ok(json!({ "Implements": ["NetworkDriver", "IpamDriver"] })),
            _ if call.starts_with("IpamDriver.") => {
                let body = parse(call)?;
                super::ipam::handle(&self.backend, &call["IpamDriver.".len()..], &body)
            }
            "NetworkDriver.GetCapabilities" => {
                Ok(json!({ "Scope": "local", "ConnectivityScope": "local" }))
            }
            "NetworkDriver.CreateNetwork" => self.create_network(decode(call, parse(call)?)?),
            "NetworkDriver.DeleteNetwork" => self.delete_network(decode(call, parse(call)?)?),
            "NetworkDriver.CreateEndpoint" => self.create_endpoint(decode(call, parse(call)?)?),
            "NetworkDriver.DeleteEndpoint" => self.delete_endpoint(decode(call, parse(call)?)?),
            "NetworkDriver.EndpointOperInfo" => {
                let _: EndpointReq = decode(call, parse(call)?)?;
                Ok(json!({ "Value": {} }))
            }
            "NetworkDriver.Join" => self.join(decode(call, parse(call)?)?),
            "NetworkDriver.Leave" => {
                let _: EndpointReq = decode(call, parse(call)?)?;
                Ok(json!({}))
            }
            "NetworkDriver.ProgramExternalConnectivity" => {
                self.program_external(decode(call, parse(call)?)?)
            }
            "NetworkDriver.RevokeExternalConnectivity"
            | "NetworkDriver.DiscoverNew"
            | "NetworkDriver.DiscoverDelete" => {
                parse(call)?;
                Ok(json!({}))
            }
            "NetworkDriver.AllocateNetwork" | "NetworkDriver.FreeNetwork" => Err(
                "vxswitch is a local-scope driver: swarm (global-scope) networks are not \
                 supported; create the network on each host with 'docker network create -d \
                 vxswitch' and the same -o vxswitch.vni"
                    .into(),
            ),
            other => Err(format!(
                "vxswitch: unknown plugin call {other:?}; this plugin implements \
                 Plugin.Activate, the NetworkDriver API and the IpamDriver API"
            )),
        }
    }

    fn call(&self, req: Request) -> Result<Value, ClientError> {
        self.backend.call(&req)
    }

    fn create_network(&self, r: CreateNetworkReq) -> Result<Value, CallError> {
        let name = network_name(&r.network_id)?;
        let mut create = NetworkCreate {
            name: name.clone(),
            ..Default::default()
        };
        let opts = generic_options(&r.options)?;
        if let Some(cluster) = opts.get(CLUSTER_OPTION) {
            return self.join_cluster_network(&name, cluster, &opts, &r);
        }
        // `docker network create --internal`: no way out, so by default
        // nobody answers at the gateway and containers get no default route.
        let internal = r.options.get(INTERNAL) == Some(&Value::Bool(true));
        let mut gateway_port = if internal {
            GatewayPort::None
        } else {
            GatewayPort::Host
        };
        let mut mtus: Vec<(&str, u32)> = Vec::new();
        let mut gateway_given = false;
        let mut parent = None;
        for (key, value) in &opts {
            let bad = |what: &str| format!("option {key}={value:?}: {what}");
            match key.as_str() {
                "vxswitch.vni" => {
                    create.vni = Some(value.parse().map_err(|_| {
                        bad("the VNI is a number from 0 to 16777215, e.g. -o vxswitch.vni=4242")
                    })?);
                }
                "vxswitch.vteps" => {
                    create.vteps = value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                }
                "vxswitch.mtu" | MTU_OPTION => {
                    let mtu = value
                        .parse()
                        .map_err(|_| bad("the MTU is a number of bytes, e.g. 1450"))?;
                    mtus.push((key.as_str(), mtu));
                }
                "vxswitch.port_security" => {
                    create.port_security = match value.as_str() {
                        "on" => None,
                        "off" => Some(false),
                        _ => return Err(bad("use on or off")),
                    }
                }
                "vxswitch.uplink" => create.uplink = Some(value.clone()),
                "vxswitch.backend" => {
                    create.backend = Some(value.parse().map_err(|e: String| bad(&e))?)
                }
                "vxswitch.vlan" => {
                    create.vlan = Some(
                        value
                            .parse()
                            .map_err(|_| bad("the VLAN id is a number from 1 to 4094"))?,
                    );
                }
                "vxswitch.storm_pps" => {
                    create.storm_pps = Some(
                        value
                            .parse()
                            .map_err(|_| bad("frames per second, e.g. 1000 (0: no limit)"))?,
                    );
                }
                PARENT_OPTION => parent = Some(parse_parent(value)?),
                "vxswitch.gateway" => {
                    gateway_given = true;
                    gateway_port = match value.as_str() {
                        "host" => GatewayPort::Host,
                        "switch" => GatewayPort::Switch,
                        "none" => GatewayPort::None,
                        _ => return Err(bad("use host, switch or none")),
                    }
                }
                _ if key.starts_with("com.docker.") => {}
                _ => {
                    return Err(format!(
                        "unknown option {key} for the vxswitch network driver; known options: {}",
                        OPTIONS
                            .iter()
                            .map(|(k, _)| *k)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            }
        }
        if let Some((ifname, vlan)) = parent {
            let same_if = create.uplink.as_ref().is_none_or(|u| *u == ifname);
            let same_vlan = create.vlan.is_none() || create.vlan == vlan;
            if !same_if || !same_vlan {
                return Err(
                    "options parent and vxswitch.uplink/vxswitch.vlan disagree; give one of \
                     them"
                        .to_string(),
                );
            }
            create.uplink = Some(ifname);
            create.vlan = create.vlan.or(vlan);
        }
        // On a LAN the gateway is the LAN's router: no host gateway port
        // unless asked for.
        if create.uplink.is_some() && !gateway_given {
            gateway_port = GatewayPort::None;
        }
        if let [(k1, m1), (k2, m2), ..] = mtus[..] {
            if m1 != m2 {
                return Err(format!(
                    "options {k1}={m1} and {k2}={m2} disagree; give one MTU"
                ));
            }
        }
        create.mtu = mtus.first().map(|(_, m)| *m);
        let pools: Vec<&IpamData> = r
            .ipv4_data
            .iter()
            .flatten()
            .filter(|p| !p.pool.is_empty() && p.pool != "0.0.0.0/0")
            .collect();
        match pools[..] {
            [] => {}
            [p] => {
                create.subnet = Some(p.pool.clone());
                if !p.gateway.is_empty() {
                    // Docker gives the gateway as ADDR/LEN.
                    let addr = p.gateway.split('/').next().unwrap_or_default();
                    create.gateway = Some(addr.to_string());
                }
            }
            _ => {
                return Err(format!(
                    "a vxswitch network has one IPv4 subnet, and Docker's IPAM gave {}; give \
                     one --subnet",
                    pools.len()
                ))
            }
        }
        if create.gateway.is_none() && gateway_port != GatewayPort::None {
            // No IPAM gateway (--ipam-driver null): nothing to answer for.
            gateway_port = GatewayPort::None;
        }
        if gateway_port == GatewayPort::Host {
            create.gateway_ifname = Some(gateway_ifname(&r.network_id)?);
        }
        create.gateway_port = Some(gateway_port);
        self.ensure_network(&create)?;
        if let Err(e) = self.save(&create) {
            // Not kept: better no network than one that cannot be restored.
            let _ = self.call(Request::NetworkRm(NetworkRm {
                name: name.clone(),
                force: true,
            }));
            return Err(e);
        }
        Ok(json!({}))
    }

    fn delete_network(&self, r: NetworkReq) -> Result<Value, CallError> {
        let name = network_name(&r.network_id)?;
        // A cluster network stays: it is the cluster's, other hosts use it.
        let cluster = self.saved(&name).is_some_and(|c| c.cluster);
        // Docker deletes the endpoints first; `force` makes sure that no TAP
        // outlives the network even if one was left behind.
        let removed = if cluster {
            Ok(Value::Null)
        } else {
            self.call(Request::NetworkRm(NetworkRm {
                name: name.clone(),
                force: true,
            }))
        };
        match removed {
            Ok(_) => {}
            Err(ClientError::Remote(e)) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(daemon_error(&e)),
        }
        if let Some(path) = self.state_file(&name) {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(format!(
                        "vxswitch plugin: cannot remove {}: {e}",
                        path.display()
                    ))
                }
            }
        }
        Ok(json!({}))
    }

    fn create_endpoint(&self, r: EndpointReq) -> Result<Value, CallError> {
        // Refused here, before anything is created: ProgramExternalConnectivity
        // is only called when the network has a gateway.
        refuse_published_ports(&r)?;
        let network = self.vx_network(&r.network_id)?;
        let name = port_name(&r.endpoint_id)?;
        let given = r
            .interface
            .as_ref()
            .map(|i| i.mac_address.as_str())
            .filter(|m| !m.is_empty());
        let mac = given
            .map(|m| {
                m.parse::<MacAddr>()
                    .map_err(|e| format!("MAC address {m:?} from Docker: {e}"))
            })
            .transpose()?;
        let add = PortAdd {
            name,
            network: network.clone(),
            mac,
            ..Default::default()
        };
        let mut reply = self.call(Request::PortAdd(add.clone()));
        if matches!(&reply, Err(ClientError::Remote(e)) if e.kind == ErrorKind::NotFound) {
            // The daemon lost the network (it restarted): make it again as
            // Docker created it, then retry once.
            if let Some(create) = self.saved(&network).filter(|c| !c.cluster) {
                self.ensure_network(&create)?;
                reply = self.call(Request::PortAdd(add));
            }
        }
        let port: PortInfo = match reply {
            Ok(v) => serde_json::from_value(v)
                .map_err(|e| format!("unexpected port.add reply from the vxswitch daemon: {e}"))?,
            Err(ClientError::Remote(e)) if e.kind == ErrorKind::NotFound => {
                return Err(format!(
                    "the vxswitch daemon has no network {network} for this Docker network, \
                     and the plugin has no record of it to make it again; recreate the Docker \
                     network ('docker network rm' and 'docker network create -d vxswitch ...')"
                ))
            }
            Err(e) => return Err(daemon_error(&e)),
        };
        if given.is_some() {
            // Docker chose the MAC; the reply must not set it again.
            return Ok(json!({}));
        }
        let mac = port.mac.map(|m| m.to_string()).unwrap_or_default();
        Ok(json!({ "Interface": { "MacAddress": mac } }))
    }

    fn delete_endpoint(&self, r: EndpointReq) -> Result<Value, CallError> {
        let name = port_name(&r.endpoint_id)?;
        match self.call(Request::PortRm(PortRm { name })) {
            Ok(_) => Ok(json!({})),
            // Gone already (the daemon restarted, the TAP vanished with the
            // container's namespace): what Docker asked for is true.
            Err(ClientError::Remote(e)) if e.kind == ErrorKind::NotFound => Ok(json!({})),
            Err(e) => Err(daemon_error(&e)),
        }
    }

    fn join(&self, r: EndpointReq) -> Result<Value, CallError> {
        let network = self.vx_network(&r.network_id)?;
        let port = port_name(&r.endpoint_id)?;
        let nets = self.networks()?;
        let Some(net) = nets.iter().find(|n| n.name == network) else {
            return Err(format!(
                "the vxswitch daemon has no network {network}; it was restarted or the \
                 network was removed; recreate the Docker network"
            ));
        };
        if !net.ports.contains(&port) {
            return Err(format!(
                "the vxswitch daemon has no port {port} for this endpoint; it was restarted \
                 or the port was removed; reconnect the container ('docker network \
                 disconnect' and 'docker network connect')"
            ));
        }
        if let (Some(labeler), false) = (&self.labeler, r.sandbox_key.is_empty()) {
            // Docker records the endpoint's container once this call has
            // returned: look it up in the background, never holding Join.
            labeler.start(&r.network_id, &r.endpoint_id, port.clone());
        }
        let mut reply = json!({
            "InterfaceName": { "SrcName": port, "DstPrefix": "eth" },
        });
        match (net.gateway, net.gateway_port) {
            (Some(gw), GatewayPort::Host | GatewayPort::Switch) => {
                reply["Gateway"] = json!(gw.to_string());
            }
            // Nobody answers at the gateway: no default route, and no
            // docker_gwbridge either (Docker adds one to give a container
            // without a gateway a way out).
            _ => reply["DisableGatewayService"] = json!(true),
        }
        Ok(reply)
    }

    fn program_external(&self, r: EndpointReq) -> Result<Value, CallError> {
        refuse_published_ports(&r)?;
        Ok(json!({}))
    }
}

/// Published ports (`docker run -p`) need NAT rules, which vxswitch does
/// not make: refuse them instead of ignoring them.
fn refuse_published_ports(r: &EndpointReq) -> Result<(), CallError> {
    let published = r
        .options
        .as_ref()
        .and_then(|o| o.get("com.docker.network.portmap"))
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if published {
        return Err(
            "vxswitch networks do not publish ports (-p/--publish): vxswitch is a \
                    switch, not a NAT; reach the container at its address from the host \
                    through the network's gateway port, or add your own DNAT rule"
                .into(),
        );
    }
    Ok(())
}

/// Decodes a call's body into its request type.
fn decode<T: serde::de::DeserializeOwned>(call: &str, v: Value) -> Result<T, CallError> {
    serde_json::from_value(v).map_err(|e| format!("vxswitch: malformed {call} request: {e}"))
}

/// The `-o` options of CreateNetwork, as strings.
fn generic_options(
    options: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, String>, CallError> {
    let Some(generic) = options.get(GENERIC) else {
        return Ok(BTreeMap::new());
    };
    let Some(map) = generic.as_object() else {
        return Ok(BTreeMap::new());
    };
    map.iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => return Err(format!("option {k}: expected a string, got {other}")),
            };
            Ok((k.clone(), s))
        })
        .collect()
}

/// The first `n` characters of a Docker ID, which must be hexadecimal.
fn id_prefix(what: &str, id: &str, n: usize) -> Result<String, CallError> {
    if id.len() < n || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "vxswitch: {what} {id:?} from Docker is not a hexadecimal ID of at least {n} digits"
        ));
    }
    Ok(id[..n].to_ascii_lowercase())
}

/// The vxswitch network of a Docker network.
pub fn network_name(network_id: &str) -> Result<String, CallError> {
    Ok(format!(
        "docker-{}",
        id_prefix("NetworkID", network_id, 12)?
    ))
}

/// The vxswitch port (and TAP name) of a Docker endpoint.
pub fn port_name(endpoint_id: &str) -> Result<String, CallError> {
    Ok(format!("vx{}", id_prefix("EndpointID", endpoint_id, 12)?))
}

/// The interface name of a Docker network's host gateway port.
pub fn gateway_ifname(network_id: &str) -> Result<String, CallError> {
    Ok(format!("vxgw-{}", id_prefix("NetworkID", network_id, 10)?))
}

/// A daemon error as Docker shows it.
fn daemon_error(e: &ClientError) -> CallError {
    match e {
        ClientError::Remote(e) => format!("vxswitch: {}", e.message),
        other => format!("vxswitch: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::CtlError;
    use std::sync::Mutex;

    /// Records requests and answers from a script.
    #[derive(Default)]
    struct Fake {
        sent: Mutex<Vec<Request>>,
        answer: Mutex<Vec<Result<Value, ClientError>>>,
    }

    impl Backend for &Fake {
        fn call(&self, req: &Request) -> Result<Value, ClientError> {
            self.sent.lock().unwrap().push(req.clone());
            let mut a = self.answer.lock().unwrap();
            if a.is_empty() {
                Ok(json!({}))
            } else {
                a.remove(0)
            }
        }
    }

    const NID: &str = "3f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a";
    const EID: &str = "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12";

    fn call(f: &Fake, path: &str, body: Value) -> Result<Value, CallError> {
        Driver::new(f).handle(path, body.to_string().as_bytes())
    }

    fn sent(f: &Fake) -> Vec<Request> {
        std::mem::take(&mut *f.sent.lock().unwrap())
    }

    #[test]
    fn activate_and_capabilities() {
        let f = Fake::default();
        assert_eq!(
            Driver::new(&f).handle("/Plugin.Activate", b"").unwrap(),
            json!({"Implements": ["NetworkDriver", "IpamDriver"]})
        );
        assert_eq!(
            call(&f, "/NetworkDriver.GetCapabilities", json!({})).unwrap(),
            json!({"Scope": "local", "ConnectivityScope": "local"})
        );
        assert!(sent(&f).is_empty());
    }

    #[test]
    fn create_network_maps_ipam_and_options() {
        let f = Fake::default();
        let body = json!({
            "NetworkID": NID,
            "Options": {
                "com.docker.network.enable_ipv6": false,
                "com.docker.network.generic": {"vxswitch.vni": "4242", "vxswitch.mtu": "1400",
                    "com.docker.network.driver.mtu": "1400", "vxswitch.vteps": "198.18.0.2, 198.18.0.3:8472"}
            },
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.88.0.0/24", "Gateway": "10.88.0.1/24"}],
            "IPv6Data": []
        });
        assert_eq!(
            call(&f, "/NetworkDriver.CreateNetwork", body).unwrap(),
            json!({})
        );
        assert_eq!(
            sent(&f),
            vec![Request::NetworkCreate(NetworkCreate {
                name: "docker-3f1c2a9b8d7e".into(),
                subnet: Some("10.88.0.0/24".into()),
                gateway: Some("10.88.0.1".into()),
                mtu: Some(1400),
                vni: Some(4242),
                learn_vteps: false,
                vteps: vec!["198.18.0.2".into(), "198.18.0.3:8472".into()],
                gateway_port: Some(GatewayPort::Host),
                gateway_ifname: Some("vxgw-3f1c2a9b8d".into()),
                cluster: false,
                fdb_max_entries: None,
                port_security: None,
                ..Default::default()
            })]
        );
    }

    #[test]
    fn create_network_accepts_the_same_restored_network_and_names_a_difference() {
        let body = json!({
            "NetworkID": NID,
            "Options": {"com.docker.network.generic": {"vxswitch.gateway": "switch"}},
            "IPv4Data": [{"Pool": "10.88.0.0/24", "Gateway": "10.88.0.1/24"}]
        });
        let exists = || {
            Err(ClientError::Remote(CtlError::exists(
                "network \"docker-3f1c2a9b8d7e\" already exists",
            )))
        };
        let have = |subnet: &str, mtu: u32| {
            Ok(json!([{
                "name": "docker-3f1c2a9b8d7e", "subnet": subnet, "gateway": "10.88.0.1",
                "mtu": mtu, "vni": null, "learn_vteps": false, "vteps": [], "ports": ["vxab12"],
                "gateway_port": "switch", "gateway_mac": "02:00:00:00:00:01"
            }]))
        };
        // A daemon that restored the network from its state dir: the same.
        let f = Fake::default();
        *f.answer.lock().unwrap() = vec![exists(), have("10.88.0.0/24", 1500)];
        assert_eq!(
            call(&f, "/NetworkDriver.CreateNetwork", body.clone()).unwrap(),
            json!({})
        );
        // Another network under the same name: refused, saying how it differs.
        let f = Fake::default();
        *f.answer.lock().unwrap() = vec![exists(), have("10.99.0.0/24", 1500)];
        let e = call(&f, "/NetworkDriver.CreateNetwork", body).unwrap_err();
        assert!(
            e.contains(
                "already has a network docker-3f1c2a9b8d7e with another configuration \
                        (subnet 10.99.0.0/24, not 10.88.0.0/24)"
            ),
            "{e}"
        );
    }

    #[test]
    fn create_network_compares_the_uplink_and_vlan_of_an_existing_network() {
        let body = |parent: &str| {
            json!({"NetworkID": NID, "Options": {"com.docker.network.generic": {"parent": parent}},
                   "IPv4Data": [{"Pool": "192.0.2.0/24", "Gateway": "192.0.2.1/24"}]})
        };
        let exists = || {
            Err(ClientError::Remote(CtlError::exists(
                "network \"docker-3f1c2a9b8d7e\" already exists",
            )))
        };
        let have = |uplink: Value, vlan: Value| {
            Ok(json!([{
                "name": "docker-3f1c2a9b8d7e", "subnet": "192.0.2.0/24", "gateway": "192.0.2.1",
                "mtu": 1500, "vni": null, "learn_vteps": false, "vteps": [],
                "ports": ["docker-3f1c2a9b8d7e.uplink"], "gateway_port": "none",
                "uplink": uplink, "vlan": vlan
            }]))
        };
        let create = |parent: &str, uplink: Value, vlan: Value| {
            let f = Fake::default();
            *f.answer.lock().unwrap() = vec![exists(), have(uplink, vlan)];
            call(&f, "/NetworkDriver.CreateNetwork", body(parent))
        };
        // The same uplink and VLAN: the network Docker asked for.
        assert_eq!(
            create("eth0.10", json!("eth0"), json!(10)).unwrap(),
            json!({})
        );
        assert_eq!(
            create("eth0", json!("eth0"), json!(null)).unwrap(),
            json!({})
        );
        for (parent, uplink, vlan, diff) in [
            ("eth1", json!("eth0"), json!(null), "uplink eth0, not eth1"),
            (
                "eth0.20",
                json!("eth0"),
                json!(10),
                "uplink eth0 VLAN 10, not eth0 VLAN 20",
            ),
            (
                "eth0",
                json!("eth0"),
                json!(10),
                "uplink eth0 VLAN 10, not eth0",
            ),
            ("eth0", json!(null), json!(null), "uplink none, not eth0"),
        ] {
            let e = create(parent, uplink, vlan).unwrap_err();
            assert!(
                e.contains(&format!("another configuration ({diff})")),
                "{parent}: {e}"
            );
        }
    }

    #[test]
    fn port_security_off_is_a_network_option() {
        let f = Fake::default();
        let body = json!({"NetworkID": NID,
            "Options": {"com.docker.network.generic": {"vxswitch.port_security": "off"}},
            "IPv4Data": [{"Pool": "10.88.0.0/24", "Gateway": "10.88.0.1/24"}]});
        call(&f, "/NetworkDriver.CreateNetwork", body).unwrap();
        match &sent(&f)[..] {
            [Request::NetworkCreate(c)] => assert_eq!(c.port_security, Some(false)),
            other => panic!("{other:?}"),
        }
    }

    /// What CreateNetwork with options `opts` (on 192.0.2.0/24) sends the
    /// daemon, or its error.
    fn created_with(opts: Value) -> Result<NetworkCreate, String> {
        let f = Fake::default();
        let body = json!({"NetworkID": NID,
            "Options": {"com.docker.network.generic": opts},
            "IPv4Data": [{"Pool": "192.0.2.0/24", "Gateway": "192.0.2.1/24"}]});
        call(&f, "/NetworkDriver.CreateNetwork", body).map(|_| match &sent(&f)[..] {
            [Request::NetworkCreate(c)] => c.clone(),
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn the_backend_is_a_network_option() {
        let backend = |opts| created_with(opts).map(|c| c.backend);
        assert_eq!(
            backend(json!({"vxswitch.backend": "veth"})),
            Ok(Some(crate::ctl::proto::Backend::Veth))
        );
        assert_eq!(backend(json!({})), Ok(None));
        let e = backend(json!({"vxswitch.backend": "macvlan"})).unwrap_err();
        assert!(e.contains("give tap or veth"), "{e}");
    }

    #[test]
    fn an_uplink_is_an_option_in_vxswitchs_spelling_or_macvlans() {
        let create = created_with;
        for opts in [
            json!({"parent": "eth0.10"}),
            json!({"vxswitch.uplink": "eth0", "vxswitch.vlan": "10"}),
            json!({"parent": "eth0.10", "vxswitch.uplink": "eth0"}),
        ] {
            let c = create(opts.clone()).unwrap();
            assert_eq!(
                (c.uplink.as_deref(), c.vlan, c.gateway_port),
                (Some("eth0"), Some(10), Some(GatewayPort::None)),
                "{opts}: the gateway is the LAN's router, no host port"
            );
            assert_eq!(c.gateway.as_deref(), Some("192.0.2.1"));
        }
        let c = create(json!({"parent": "eth0", "vxswitch.storm_pps": "50"})).unwrap();
        assert_eq!(
            (c.uplink.as_deref(), c.vlan, c.storm_pps),
            (Some("eth0"), None, Some(50))
        );
        let c = create(json!({"parent": "eth0", "vxswitch.gateway": "host"})).unwrap();
        assert_eq!(c.gateway_port, Some(GatewayPort::Host), "asked for");
        let e = create(json!({"parent": "eth0.10", "vxswitch.vlan": "20"})).unwrap_err();
        assert!(e.contains("disagree"), "{e}");
        for bad in ["eth0.0", "eth0.4095", ".10", ""] {
            let e = create(json!({ "parent": bad })).unwrap_err();
            assert!(e.contains("parent=eth0.10"), "{bad}: {e}");
        }
    }

    #[test]
    fn create_network_refuses_what_it_cannot_do() {
        let f = Fake::default();
        let with = |opts: Value| {
            json!({"NetworkID": NID, "Options": {"com.docker.network.generic": opts},
                   "IPv4Data": [{"Pool": "10.88.0.0/24", "Gateway": "10.88.0.1/24"}]})
        };
        let e = call(
            &f,
            "/NetworkDriver.CreateNetwork",
            with(json!({"vni": "5"})),
        )
        .unwrap_err();
        assert!(
            e.starts_with(
                "unknown option vni for the vxswitch network driver; known options: vxswitch.vni,"
            ),
            "{e}"
        );
        let e = call(
            &f,
            "/NetworkDriver.CreateNetwork",
            with(json!({"vxswitch.mtu": "1400", "com.docker.network.driver.mtu": "1450"})),
        )
        .unwrap_err();
        assert!(e.contains("disagree; give one MTU"), "{e}");
        let e = call(
            &f,
            "/NetworkDriver.CreateNetwork",
            with(json!({"vxswitch.gateway": "nat"})),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "option vxswitch.gateway=\"nat\": use host, switch or none"
        );
        let e = call(
            &f,
            "/NetworkDriver.CreateNetwork",
            with(json!({"vxswitch.vni": "x"})),
        )
        .unwrap_err();
        assert!(e.contains("the VNI is a number"), "{e}");
        let e = call(
            &f,
            "/NetworkDriver.CreateNetwork",
            with(json!({"vxswitch.port_security": "maybe"})),
        )
        .unwrap_err();
        assert_eq!(e, "option vxswitch.port_security=\"maybe\": use on or off");
        let two = json!({"NetworkID": NID, "IPv4Data": [{"Pool": "10.88.0.0/24"}, {"Pool": "10.89.0.0/24"}]});
        let e = call(&f, "/NetworkDriver.CreateNetwork", two).unwrap_err();
        assert!(e.contains("one IPv4 subnet"), "{e}");
        let e = call(
            &f,
            "/NetworkDriver.CreateNetwork",
            json!({"NetworkID": "xyz"}),
        )
        .unwrap_err();
        assert!(e.contains("not a hexadecimal ID"), "{e}");
        assert!(sent(&f).is_empty(), "nothing reaches the daemon");
    }

    #[test]
    fn internal_networks_default_to_no_gateway() {
        let f = Fake::default();
        let body = |opts: Value| {
            json!({"NetworkID": NID,
                   "Options": {"com.docker.network.internal": true, "com.docker.network.generic": opts},
                   "IPv4Data": [{"Pool": "10.88.0.0/24", "Gateway": "10.88.0.1/24"}]})
        };
        call(&f, "/NetworkDriver.CreateNetwork", body(json!({}))).unwrap();
        let Request::NetworkCreate(c) = &sent(&f)[0] else {
            panic!()
        };
        assert_eq!(c.gateway_port, Some(GatewayPort::None));
        // An explicit choice wins.
        call(
            &f,
            "/NetworkDriver.CreateNetwork",
            body(json!({"vxswitch.gateway": "switch"})),
        )
        .unwrap();
        let Request::NetworkCreate(c) = &sent(&f)[0] else {
            panic!()
        };
        assert_eq!(c.gateway_port, Some(GatewayPort::Switch));
    }

    #[test]
    fn gateway_none_and_no_gateway() {
        let f = Fake::default();
        let body = json!({"NetworkID": NID, "Options": {"com.docker.network.generic": {"vxswitch.gateway": "none"}},
                          "IPv4Data": [{"Pool": "10.88.0.0/24", "Gateway": "10.88.0.1/24"}]});
        call(&f, "/NetworkDriver.CreateNetwork", body).unwrap();
        let Request::NetworkCreate(c) = &sent(&f)[0] else {
            panic!()
        };
        assert_eq!(
            (c.gateway_port, c.gateway_ifname.as_deref()),
            (Some(GatewayPort::None), None)
        );
        let body = json!({"NetworkID": NID, "IPv4Data": [{"Pool": "0.0.0.0/0"}]});
        call(&f, "/NetworkDriver.CreateNetwork", body).unwrap();
        let Request::NetworkCreate(c) = &sent(&f)[0] else {
            panic!()
        };
        assert_eq!(
            (c.subnet.as_deref(), c.gateway_port),
            (None, Some(GatewayPort::None))
        );
    }

    #[test]
    fn endpoints_are_ports_without_addresses() {
        let f = Fake::default();
        f.answer.lock().unwrap().push(Ok(json!({"name": "vxab12cd34ef56", "network": "docker-3f1c2a9b8d7e",
            "kind": "created", "netns": null, "ifname": "vxab12cd34ef56", "mac": "02:11:22:33:44:55",
            "ip": null, "mtu": 1500})));
        let body = json!({"NetworkID": NID, "EndpointID": EID,
                          "Interface": {"Address": "10.88.0.2/24", "AddressIPv6": "", "MacAddress": ""},
                          "Options": {}});
        let reply = call(&f, "/NetworkDriver.CreateEndpoint", body).unwrap();
        assert_eq!(
            reply,
            json!({"Interface": {"MacAddress": "02:11:22:33:44:55"}})
        );
        assert_eq!(
            sent(&f),
            vec![Request::PortAdd(PortAdd {
                name: "vxab12cd34ef56".into(),
                network: "docker-3f1c2a9b8d7e".into(),
                ..Default::default()
            })]
        );
        // A MAC from Docker is used, and not returned.
        f.answer.lock().unwrap().push(Ok(json!({"name": "vxab12cd34ef56", "network": "docker-3f1c2a9b8d7e",
            "kind": "created", "netns": null, "ifname": "vxab12cd34ef56", "mac": "02:42:0a:58:00:02",
            "ip": null, "mtu": 1500})));
        let body = json!({"NetworkID": NID, "EndpointID": EID,
                          "Interface": {"Address": "10.88.0.2/24", "MacAddress": "02:42:0a:58:00:02"}});
        assert_eq!(
            call(&f, "/NetworkDriver.CreateEndpoint", body).unwrap(),
            json!({})
        );
        let Request::PortAdd(p) = &sent(&f)[0] else {
            panic!()
        };
        assert_eq!(p.mac, Some("02:42:0a:58:00:02".parse().unwrap()));
        // Deleting a port the daemon no longer has is success.
        f.answer
            .lock()
            .unwrap()
            .push(Err(ClientError::Remote(CtlError::not_found("gone"))));
        let body = json!({"NetworkID": NID, "EndpointID": EID});
        assert_eq!(
            call(&f, "/NetworkDriver.DeleteEndpoint", body).unwrap(),
            json!({})
        );
        assert_eq!(
            sent(&f),
            vec![Request::PortRm(PortRm {
                name: "vxab12cd34ef56".into()
            })]
        );
    }

    #[test]
    fn a_missing_network_says_to_recreate_it() {
        let f = Fake::default();
        f.answer
            .lock()
            .unwrap()
            .push(Err(ClientError::Remote(CtlError::not_found("x"))));
        let body = json!({"NetworkID": NID, "EndpointID": EID, "Interface": {}});
        let e = call(&f, "/NetworkDriver.CreateEndpoint", body).unwrap_err();
        assert!(
            e.contains("has no network docker-3f1c2a9b8d7e")
                && e.contains("recreate the Docker network"),
            "{e}"
        );
    }

    #[test]
    fn a_lost_network_is_made_again_from_the_state_dir() {
        let dir = std::env::temp_dir().join(format!("vxsw-docker-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = Fake::default();
        let d = Driver::new(&f).with_state_dir(dir.clone());
        let body = json!({"NetworkID": NID, "IPv4Data": [{"Pool": "10.88.0.0/24", "Gateway": "10.88.0.1/24"}]});
        d.handle("/NetworkDriver.CreateNetwork", body.to_string().as_bytes())
            .unwrap();
        let created = sent(&f).remove(0);
        assert!(dir.join("docker-3f1c2a9b8d7e.json").is_file());
        // The daemon restarted: port.add finds no network, the plugin makes
        // it again with the same request and retries.
        f.answer.lock().unwrap().extend([
            Err(ClientError::Remote(CtlError::not_found("no network"))),
            Ok(json!({})),
            Ok(json!({"name": "vxab12cd34ef56", "network": "docker-3f1c2a9b8d7e", "kind": "created",
                      "netns": null, "ifname": "vxab12cd34ef56", "mac": "02:11:22:33:44:55", "ip": null, "mtu": 1500})),
        ]);
        let body = json!({"NetworkID": NID, "EndpointID": EID, "Interface": {}});
        let reply = d
            .handle("/NetworkDriver.CreateEndpoint", body.to_string().as_bytes())
            .unwrap();
        assert_eq!(reply["Interface"]["MacAddress"], "02:11:22:33:44:55");
        let calls = sent(&f);
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert_eq!(calls[1], created);
        d.handle(
            "/NetworkDriver.DeleteNetwork",
            json!({"NetworkID": NID}).to_string().as_bytes(),
        )
        .unwrap();
        assert!(!dir.join("docker-3f1c2a9b8d7e.json").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn net(gateway_port: &str) -> Value {
        json!([{"name": "docker-3f1c2a9b8d7e", "subnet": "10.88.0.0/24", "gateway": "10.88.0.1",
                "mtu": 1500, "vni": null, "learn_vteps": false, "vteps": [],
                "ports": ["vxab12cd34ef56"], "gateway_port": gateway_port}])
    }

    #[test]
    fn join_names_the_tap_and_the_gateway() {
        let f = Fake::default();
        let body = json!({"NetworkID": NID, "EndpointID": EID, "SandboxKey": "/var/run/docker/netns/0123456789ab", "Options": {}});
        f.answer.lock().unwrap().push(Ok(net("host")));
        assert_eq!(
            call(&f, "/NetworkDriver.Join", body.clone()).unwrap(),
            json!({"InterfaceName": {"SrcName": "vxab12cd34ef56", "DstPrefix": "eth"}, "Gateway": "10.88.0.1"})
        );
        f.answer.lock().unwrap().push(Ok(net("none")));
        assert_eq!(
            call(&f, "/NetworkDriver.Join", body.clone()).unwrap(),
            json!({"InterfaceName": {"SrcName": "vxab12cd34ef56", "DstPrefix": "eth"}, "DisableGatewayService": true})
        );
        f.answer.lock().unwrap().push(Ok(json!([])));
        let e = call(&f, "/NetworkDriver.Join", body).unwrap_err();
        assert!(e.contains("has no network docker-3f1c2a9b8d7e"), "{e}");
    }

    #[test]
    fn published_ports_are_refused_and_the_rest_is_accepted() {
        let f = Fake::default();
        let body = json!({"NetworkID": NID, "EndpointID": EID,
                          "Options": {"com.docker.network.portmap": [{"Proto": 6, "Port": 80, "HostPort": 8080}]}});
        let e = call(
            &f,
            "/NetworkDriver.ProgramExternalConnectivity",
            body.clone(),
        )
        .unwrap_err();
        assert!(e.contains("do not publish ports (-p/--publish)"), "{e}");
        let e = call(&f, "/NetworkDriver.CreateEndpoint", body).unwrap_err();
        assert!(e.contains("do not publish ports (-p/--publish)"), "{e}");
        let body = json!({"NetworkID": NID, "EndpointID": EID, "Options": {"com.docker.network.portmap": null}});
        assert_eq!(
            call(&f, "/NetworkDriver.ProgramExternalConnectivity", body).unwrap(),
            json!({})
        );
        for c in [
            "RevokeExternalConnectivity",
            "DiscoverNew",
            "DiscoverDelete",
            "Leave",
        ] {
            let body = json!({"NetworkID": NID, "EndpointID": EID});
            assert_eq!(
                call(&f, &format!("/NetworkDriver.{c}"), body).unwrap(),
                json!({}),
                "{c}"
            );
        }
        let body = json!({"NetworkID": NID, "EndpointID": EID});
        assert_eq!(
            call(&f, "/NetworkDriver.EndpointOperInfo", body).unwrap(),
            json!({"Value": {}})
        );
        let e = call(&f, "/NetworkDriver.Nope", json!({})).unwrap_err();
        assert!(
            e.contains("unknown plugin call \"NetworkDriver.Nope\""),
            "{e}"
        );
        let e = Driver::new(&f)
            .handle("/NetworkDriver.Join", b"{")
            .unwrap_err();
        assert!(
            e.starts_with("vxswitch: malformed NetworkDriver.Join request from Docker"),
            "{e}"
        );
        assert!(sent(&f).is_empty());
    }

    #[test]
    fn deleting_a_network_forces_and_tolerates_absence() {
        let f = Fake::default();
        f.answer
            .lock()
            .unwrap()
            .push(Err(ClientError::Remote(CtlError::not_found("x"))));
        assert_eq!(
            call(
                &f,
                "/NetworkDriver.DeleteNetwork",
                json!({"NetworkID": NID})
            )
            .unwrap(),
            json!({})
        );
        assert_eq!(
            sent(&f),
            vec![Request::NetworkRm(NetworkRm {
                name: "docker-3f1c2a9b8d7e".into(),
                force: true
            })]
        );
        f.answer
            .lock()
            .unwrap()
            .push(Err(ClientError::Remote(CtlError::busy("no"))));
        let e = call(
            &f,
            "/NetworkDriver.DeleteNetwork",
            json!({"NetworkID": NID}),
        )
        .unwrap_err();
        assert_eq!(e, "vxswitch: no");
    }

    #[test]
    fn a_docker_network_joins_a_cluster_network_by_name() {
        let dir = std::env::temp_dir().join(format!("vxsw-docker-cluster-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = Fake::default();
        let d = Driver::new(&f).with_state_dir(dir.clone());
        let ls = json!([{"name": "blue", "subnet": "10.42.0.0/24", "gateway": "10.42.0.1",
            "mtu": 1450, "vni": 4242, "learn_vteps": false, "vteps": [], "ports": [],
            "scope": "cluster"}]);
        let create = |opts: Value, pool: &str| {
            f.answer.lock().unwrap().push(Ok(ls.clone()));
            let body = json!({"NetworkID": NID, "Options": {"com.docker.network.generic": opts},
                "IPv4Data": [{"Pool": pool, "Gateway": "10.42.0.1/24"}]});
            d.handle("/NetworkDriver.CreateNetwork", body.to_string().as_bytes())
        };
        let e = create(json!({"vxswitch.cluster": "blue"}), "10.9.0.0/24").unwrap_err();
        assert!(e.contains("has subnet 10.42.0.0/24"), "{e}");
        let e = create(json!({"vxswitch.cluster": "green"}), "10.42.0.0/24").unwrap_err();
        assert!(e.contains("no cluster network green"), "{e}");
        f.answer.lock().unwrap().clear();
        let e = d
            .handle(
                "/NetworkDriver.CreateNetwork",
                json!({"NetworkID": NID, "Options": {"com.docker.network.generic":
                    {"vxswitch.cluster": "blue", "vxswitch.vni": "5"}}})
                .to_string()
                .as_bytes(),
            )
            .unwrap_err();
        assert!(e.contains("does not go with -o vxswitch.cluster"), "{e}");
        sent(&f);
        create(json!({"vxswitch.cluster": "blue"}), "10.42.0.0/24").unwrap();
        // Nothing is created: the network is the cluster's.
        assert_eq!(sent(&f), vec![Request::NetworkLs(NoArgs {})]);
        // Endpoints go to the cluster network.
        f.answer
            .lock()
            .unwrap()
            .push(Ok(json!({"name": "vxab12cd34ef56", "network": "blue",
            "kind": "created", "netns": null, "ifname": "vxab12cd34ef56",
            "mac": "02:11:22:33:44:55", "ip": null, "mtu": 1450})));
        let body = json!({"NetworkID": NID, "EndpointID": EID, "Interface": {}});
        d.handle("/NetworkDriver.CreateEndpoint", body.to_string().as_bytes())
            .unwrap();
        match &sent(&f)[..] {
            [Request::PortAdd(p)] => assert_eq!(p.network, "blue"),
            other => panic!("{other:?}"),
        }
        // Removing the Docker network leaves the cluster network alone.
        d.handle(
            "/NetworkDriver.DeleteNetwork",
            json!({"NetworkID": NID}).to_string().as_bytes(),
        )
        .unwrap();
        assert!(sent(&f).is_empty());
        assert!(!dir.join("docker-3f1c2a9b8d7e.json").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
