//! The CNI plugin: `vxswitch` invoked as `vxswitch-cni` (any name ending in
//! `-cni`, e.g. a symlink in `/opt/cni/bin`) or as `vxswitch cni`.
//!
//! A container runtime (podman, containerd, the kubelet) execs the plugin
//! with the `CNI_*` environment and the network configuration on stdin
//! (CNI spec 1.1.0; results also in 0.3.x/0.4.0 form). The plugin is a thin
//! client of the running daemon: ADD is one `port.add` (a TAP named
//! `CNI_IFNAME` created in `CNI_NETNS`), DEL one `port.rm`. Addresses come
//! from a standard IPAM plugin (host-local, ...) that is exec'd with the same
//! environment and configuration, exactly as the reference plugins do; or,
//! with `"ipam": {"type": "vxswitch"}` on a cluster network, from the
//! cluster-wide IPAM through the daemon ([`cluster_ipam`]).
//!
//! Why a deterministic port name ([`port_name`]) instead of state on disk:
//! DEL must work without `prevResult` (after a failed ADD, after a crash),
//! and the daemon already holds the only state there is. The name is a hash
//! of (network name, container ID, interface name), the key the spec asks
//! plugins to use.
//!
//! Nothing is half-created: the daemon and the network are checked before
//! IPAM is asked for an address, and an address IPAM handed out is released
//! again when the port cannot be created.
//!
//! DEL with no daemon listening: without a state directory the daemon's
//! ports died with it, so the port is already gone and DEL succeeds after
//! releasing the IPAM lease. With one (`daemon --state-dir`), the next
//! start would bring the port back holding its address, and a lease
//! released now could be handed to another container: the same IP twice.
//! So DEL first records the deletion as a tombstone in that state
//! directory (found through the file the daemon leaves beside its socket,
//! [`persist::state_dir_pointer`]), which the next start applies before it
//! restores anything, and releases the lease only once the tombstone is on
//! disk. A daemon that started meanwhile (and may have read the tombstones
//! already) is then asked to remove the port as usual. A lease is released
//! only when the port is known to be gone; when that cannot be known, DEL
//! fails and the runtime retries it.

mod cluster_ipam;
mod conf;
mod ipam;
pub(crate) mod result;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::ctl::proto::{
    GatewayPort, NetworkCreate, NetworkInfo, NoArgs, PortAdd, PortInfo, PortRm,
};
use crate::ctl::{persist, Client, ClientError, ErrorKind, Request};
use crate::ports::{link, Netns};
use crate::wire::MacAddr;

pub use result::AddResult;

pub use conf::{container_label, parse_cni_args, NetConf};
/// The CNI spec versions this plugin speaks, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The newest of [`SUPPORTED_VERSIONS`]: what VERSION and errors report
/// when the request named no usable version.
pub const LATEST_VERSION: &str = "1.1.0";
/// Prefix of every port the plugin creates (see [`port_name`]); GC only
/// ever removes ports whose name has this shape.
pub const PORT_PREFIX: &str = "cni-";
/// The commands besides VERSION, in the spec's order.
const COMMANDS: &[&str] = &["ADD", "DEL", "CHECK", "STATUS", "GC"];

/// Well-known CNI error codes (spec "Error codes") and this plugin's own.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const CONTAINER_UNKNOWN: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot service ADD (the daemon is not running).
    pub const NOT_AVAILABLE: u32 = 50;
    /// Plugin-specific (100+): the daemon refused or failed the request.
    pub const DAEMON_REFUSED: u32 = 100;
    /// Plugin-specific: CHECK found the port not as ADD left it.
    pub const CHECK_FAILED: u32 = 101;
}

/// A CNI error: printed as `{"cniVersion", "code", "msg", "details"}` on
/// stdout, with a non-zero exit status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({"cniVersion": version, "code": self.code, "msg": self.msg});
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

/// Whether the process was invoked as the CNI plugin: `argv[0]` ends in
/// `-cni` (`/opt/cni/bin/vxswitch-cni`), or the first argument is `cni`.
pub fn invoked_as_plugin(argv0: &OsStr, arg1: Option<&OsStr>) -> bool {
    let base = Path::new(argv0)
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or("");
    base.ends_with("-cni") || arg1 == Some(OsStr::new("cni"))
}

/// Runs the plugin on the process's environment and stdin, prints the
/// result or the error object on stdout, and returns the exit status.
pub fn main() -> u8 {
    let mut input = Vec::new();
    let env: HashMap<String, String> = std::env::vars().collect();
    let command = env.get("CNI_COMMAND").cloned().unwrap_or_default();
    // Without a known command, do not wait on stdin (a person typing
    // `vxswitch cni` at a terminal gets the error at once).
    let known = command == "VERSION" || COMMANDS.contains(&command.as_str());
    if !known {
        return emit(run(&command, &env, b""), LATEST_VERSION);
    }
    if let Err(e) = io::stdin().read_to_end(&mut input) {
        let err = CniError::new(code::IO_FAILURE, format!("reading stdin: {e}"));
        return emit(Err(err), LATEST_VERSION);
    }
    let version = requested_version(&input);
    let out = run(&command, &env, &input);
    emit(out, &version)
}

fn emit(out: Result<Option<Value>, CniError>, version: &str) -> u8 {
    match out {
        Ok(Some(v)) => {
            println!("{v}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            println!("{}", e.to_json(version));
            eprintln!("vxswitch-cni: {e}");
            1
        }
    }
}

/// The `cniVersion` of the configuration when it is one we speak, else
/// [`LATEST_VERSION`] (for the version field of an error).
fn requested_version(input: &[u8]) -> String {
    serde_json::from_slice::<Value>(input)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(String::from))
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST_VERSION.to_string())
}

/// One invocation: `command` is `CNI_COMMAND`, `env` the environment (the
/// IPAM plugin gets the same), `input` the configuration. `Ok(None)` is a
/// success without output (DEL, CHECK, STATUS, GC).
pub fn run(
    command: &str,
    env: &HashMap<String, String>,
    input: &[u8],
) -> Result<Option<Value>, CniError> {
    if command == "VERSION" {
        return Ok(Some(json!({
            "cniVersion": requested_version(input),
            "supportedVersions": SUPPORTED_VERSIONS,
        })));
    }
    if !COMMANDS.contains(&command) {
        return Err(CniError::new(
            code::INVALID_ENV,
            if command.is_empty() {
                "CNI_COMMAND is not set; this is a CNI plugin, run by a container runtime \
                 (set CNI_COMMAND=VERSION to try it)"
                    .to_string()
            } else {
                format!(
                    "unknown CNI_COMMAND {command:?}; expected one of VERSION, {}",
                    COMMANDS.join(", ")
                )
            },
        ));
    }
    let conf = NetConf::parse(input)?;
    let ctx = Ctx { conf, env, input };
    match command {
        "ADD" => ctx.add().map(Some),
        "DEL" => ctx.del().map(|()| None),
        "CHECK" => ctx.check().map(|()| None),
        "STATUS" => ctx.status().map(|()| None),
        _ => ctx.gc().map(|()| None),
    }
}

/// FNV-1a, 64 bit: a hash that is the same in every build and every run
/// (std's `DefaultHasher` promises neither).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0xff; // separator: ("ab","c") and ("a","bc") differ
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The vxswitch port for (CNI network, container, interface):
/// `cni-` + the container ID's first 12 name-safe characters + `-` + 16 hex
/// digits of a hash of all three. Deterministic, so DEL finds it without
/// `prevResult`; 33 characters at most, within the daemon's 64.
pub fn port_name(network: &str, container_id: &str, ifname: &str) -> String {
    let short: String = container_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    let short = if short.is_empty() { "x".into() } else { short };
    format!(
        "{PORT_PREFIX}{short}-{:016x}",
        fnv1a(&[network, container_id, ifname])
    )
}

/// Whether `name` has the shape [`port_name`] gives (for GC).
fn is_plugin_port(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PORT_PREFIX) else {
        return false;
    };
    match rest.rsplit_once('-') {
        Some((short, hash)) => {
            !short.is_empty()
                && short.len() <= 12
                && short.chars().all(|c| c.is_ascii_alphanumeric())
                && hash.len() == 16
                && hash.chars().all(|c| c.is_ascii_hexdigit())
        }
        None => false,
    }
}

/// How `port.rm` went.
enum Removed {
    /// The daemon removed the port, or has none by that name.
    Done,
    /// No daemon listens on the socket.
    NoDaemon,
}

/// One invocation's inputs.
struct Ctx<'a> {
    conf: NetConf,
    env: &'a HashMap<String, String>,
    input: &'a [u8],
}

impl Ctx<'_> {
    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> Result<&str, CniError> {
        self.var(name).ok_or_else(|| {
            CniError::new(
                code::INVALID_ENV,
                format!("{name} is not set; the container runtime must set it"),
            )
        })
    }

    fn cni_args(&self) -> Vec<(String, String)> {
        self.var("CNI_ARGS").map(parse_cni_args).unwrap_or_default()
    }

    fn cni_arg(&self, key: &str) -> Option<String> {
        self.cni_args()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty())
    }

    fn port(&self) -> Result<String, CniError> {
        Ok(port_name(
            &self.conf.network,
            self.required("CNI_CONTAINERID")?,
            self.required("CNI_IFNAME")?,
        ))
    }

    fn connect(&self) -> Result<Client, CniError> {
        Client::connect(&self.conf.socket).map_err(|e| daemon_error(&self.conf.socket, e))
    }

    fn call<T: serde::de::DeserializeOwned>(
        &self,
        client: &mut Client,
        req: &Request,
    ) -> Result<T, CniError> {
        client
            .call_as(req)
            .map_err(|e| daemon_error(&self.conf.socket, e))
    }

    fn find_network(&self, client: &mut Client) -> Result<NetworkInfo, CniError> {
        let nets: Vec<NetworkInfo> = self.call(client, &Request::NetworkLs(NoArgs {}))?;
        nets.into_iter()
            .find(|n| n.name == self.conf.network)
            .ok_or_else(|| {
                CniError::new(
                    code::INVALID_CONFIG,
                    format!(
                        "vxswitch network {:?} does not exist; create it with 'vxswitch \
                         network create {} --subnet ...' (matching the ipam range) or set \
                         \"network\" in the CNI configuration {:?}",
                        self.conf.network, self.conf.network, self.conf.name
                    ),
                )
            })
    }

    /// The network, created with the configuration's uplink if it does
    /// not exist yet (its subnet and gateway from the ipam section's first
    /// range); an existing network must have that uplink.
    fn find_or_create_network(&self, client: &mut Client) -> Result<NetworkInfo, CniError> {
        let Some(uplink) = &self.conf.uplink else {
            return self.find_network(client);
        };
        let nets: Vec<NetworkInfo> = self.call(client, &Request::NetworkLs(NoArgs {}))?;
        if let Some(net) = nets.into_iter().find(|n| n.name == self.conf.network) {
            self.check_uplink(client, uplink)?;
            return Ok(net);
        }
        let (subnet, gateway) = self
            .conf
            .ipam
            .as_ref()
            .map(|(_, v)| ipam_range(v))
            .unwrap_or_default();
        let req = Request::NetworkCreate(NetworkCreate {
            name: self.conf.network.clone(),
            subnet,
            gateway,
            mtu: self.conf.mtu,
            // The gateway is the LAN's router.
            gateway_port: Some(GatewayPort::None),
            uplink: Some(uplink.clone()),
            vlan: self.conf.vlan,
            ..NetworkCreate::default()
        });
        match self.call::<NetworkInfo>(client, &req) {
            Ok(net) => Ok(net),
            // A parallel ADD may have created it first.
            Err(e) => self.find_network(client).map_err(|_| e),
        }
    }

    /// Whether network `conf.network`'s uplink is `uplink` on `conf.vlan`.
    fn check_uplink(&self, client: &mut Client, uplink: &str) -> Result<(), CniError> {
        let ports: Vec<PortInfo> = self.call(client, &Request::PortLs(NoArgs {}))?;
        let have = ports
            .iter()
            .filter(|p| p.network == self.conf.network)
            .find_map(|p| p.uplink.as_ref());
        let describe = |ifname: &str, vlan: Option<u16>| match vlan {
            Some(v) => format!("{ifname} VLAN {v}"),
            None => format!("{ifname} untagged"),
        };
        match have {
            Some(u) if u.ifname == uplink && u.vlan == self.conf.vlan => Ok(()),
            other => Err(CniError::new(
                code::INVALID_CONFIG,
                format!(
                    "vxswitch network {:?} has {}, the CNI configuration {:?} says uplink {}; \
                     make them agree (or set \"network\" to another vxswitch network)",
                    self.conf.network,
                    other.map_or_else(
                        || "no uplink".to_string(),
                        |u| format!("uplink {}", describe(&u.ifname, u.vlan))
                    ),
                    self.conf.name,
                    describe(uplink, self.conf.vlan)
                ),
            )),
        }
    }

    fn mac(&self) -> Result<Option<MacAddr>, CniError> {
        let given = self
            .conf
            .runtime_mac
            .clone()
            .or_else(|| self.cni_arg("MAC"));
        given
            .map(|m| {
                m.parse::<MacAddr>().map_err(|_| {
                    CniError::new(
                        code::INVALID_CONFIG,
                        format!(
                            "invalid MAC address {m:?} (from runtimeConfig.mac or CNI_ARGS MAC=)"
                        ),
                    )
                })
            })
            .transpose()
    }

    fn ipam(&self, command: &str) -> Result<Option<Value>, CniError> {
        match &self.conf.ipam {
            Some((kind, _)) if kind == cluster_ipam::TYPE => {
                cluster_ipam::exec(command, &self.conf, &self.port()?)
            }
            Some((kind, _)) => ipam::exec(kind, command, self.env, self.input),
            None => Ok(None),
        }
    }

    /// IPAM DEL after a failed ADD; its own failure is only added to the
    /// details, the ADD error is what the runtime must see.
    fn undo_ipam(&self, mut err: CniError) -> CniError {
        if let Err(e) = self.ipam("DEL") {
            let note = format!("releasing the IPAM address also failed: {}", e.msg);
            err.details = if err.details.is_empty() {
                note
            } else {
                format!("{}; {note}", err.details)
            };
        }
        err
    }

    fn add(&self) -> Result<Value, CniError> {
        let container_id = self.required("CNI_CONTAINERID")?;
        let netns = self.required("CNI_NETNS")?;
        let ifname = self.required("CNI_IFNAME")?;
        let name = self.port()?;
        let mac = self.mac()?;
        // Everything that can be checked is checked before IPAM hands out
        // an address: the daemon answers, the network exists.
        let mut client = self.connect()?;
        let net = self.find_or_create_network(&mut client)?;
        if net.ports.contains(&name) {
            // A second ADD without DEL: IPAM must not be asked (its DEL on
            // failure would release the address the port has).
            return Err(CniError::new(
                code::DAEMON_REFUSED,
                format!(
                    "port {name} already exists for container {container_id} interface \
                     {ifname} on vxswitch network {}; run DEL first",
                    net.name
                ),
            ));
        }

        let plan = match self.ipam("ADD")? {
            Some(ipam_result) => match result::plan(&ipam_result, &net) {
                Ok(p) => p,
                Err(e) => return Err(self.undo_ipam(e)),
            },
            None => result::Plan::default(),
        };
        let container = container_label(&self.cni_args(), container_id);
        let req = Request::PortAdd(PortAdd {
            name: name.clone(),
            network: self.conf.network.clone(),
            netns: Some(netns.to_string()),
            ifname: Some(ifname.to_string()),
            mac,
            ip: plan.ip.map(|ip| ip.to_string()),
            mtu: self.conf.mtu,
            container: Some(container),
            port_security: self.conf.port_security,
            backend: self.conf.backend,
            ..PortAdd::default()
        });
        let port: PortInfo = match self.call(&mut client, &req) {
            Ok(p) => p,
            Err(e) => return Err(self.undo_ipam(e)),
        };
        Ok(result::render(
            &self.conf.cni_version,
            &port,
            netns,
            &net,
            &plan,
        ))
    }

    fn del(&self) -> Result<(), CniError> {
        self.required("CNI_CONTAINERID")?;
        self.required("CNI_IFNAME")?;
        let name = self.port()?;
        match self.remove_port(&name)? {
            Removed::Done => {}
            Removed::NoDaemon => self.del_while_down(&name)?,
        }
        // Only now is the port known to be gone for good: its address may
        // go to another container.
        self.ipam("DEL").map(|_| ())
    }

    /// `port.rm` on the daemon; "no such port" is success.
    fn remove_port(&self, name: &str) -> Result<Removed, CniError> {
        match Client::connect(&self.conf.socket) {
            Ok(mut client) => {
                let rm = Request::PortRm(PortRm {
                    name: name.to_string(),
                });
                match client.call(&rm) {
                    Ok(_) => Ok(Removed::Done),
                    Err(ClientError::Remote(e)) if e.kind == ErrorKind::NotFound => {
                        Ok(Removed::Done)
                    }
                    Err(e) => Err(daemon_error(&self.conf.socket, e)),
                }
            }
            Err(ClientError::Connect { source, .. })
                if matches!(
                    source.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(Removed::NoDaemon)
            }
            Err(e) => Err(daemon_error(&self.conf.socket, e)),
        }
    }

    /// DEL with no daemon listening (see the module's doc): without a
    /// state directory nothing comes back; with one, a tombstone makes sure
    /// the port does not.
    fn del_while_down(&self, name: &str) -> Result<(), CniError> {
        let socket = &self.conf.socket;
        let dir = persist::read_state_dir_pointer(socket).map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                format!(
                    "the vxswitch daemon at {} is not running and its state directory is \
                     unknown: {e}",
                    socket.display()
                ),
            )
        })?;
        let Some(dir) = dir else {
            // No state directory: its ports (and their TAPs) went with it.
            return Ok(());
        };
        persist::write_tombstone(&dir, name).map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                format!(
                    "the vxswitch daemon at {} is not running, and its state directory {} \
                     would bring port {name} back at its next start; recording the deletion \
                     there failed: {e} (the IPAM address is kept; DEL again once this is fixed)",
                    socket.display(),
                    dir.display()
                ),
            )
        })?;
        // A daemon that started after the first attempt may have read the
        // tombstones before this one was written: remove the port through
        // it. One that still does not listen reads it when it starts.
        self.remove_port(name).map(drop)
    }

    fn check(&self) -> Result<(), CniError> {
        if !self.conf.at_least(0, 4) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "CHECK needs CNI 0.4.0 or later; the configuration says {}",
                    self.conf.cni_version
                ),
            ));
        }
        let netns = self.required("CNI_NETNS")?;
        let ifname = self.required("CNI_IFNAME")?;
        let name = self.port()?;
        let prev = self.conf.prev_result.as_ref().ok_or_else(|| {
            CniError::new(
                code::INVALID_CONFIG,
                "CHECK needs \"prevResult\" (the result of ADD) in the configuration",
            )
        })?;
        let expect = result::expected(prev, ifname)?;
        let mut client = self.connect()?;
        let ports: Vec<PortInfo> = self.call(&mut client, &Request::PortLs(NoArgs {}))?;
        let failed = |msg: String| CniError::new(code::CHECK_FAILED, msg);
        let port = ports.iter().find(|p| p.name == name).ok_or_else(|| {
            failed(format!(
                "vxswitch has no port {name} for this container (was the daemon restarted? \
                 its ports survive a restart only with 'vxswitch daemon --state-dir')"
            ))
        })?;
        if port.network != self.conf.network {
            return Err(failed(format!(
                "port {name} is on vxswitch network {}, not {}",
                port.network, self.conf.network
            )));
        }
        if let (Some(want), Some(have)) = (expect.mac, port.mac) {
            if want != have {
                return Err(failed(format!(
                    "port {name} has MAC {have}, prevResult says {want}"
                )));
            }
        }
        for want in &expect.ips {
            if port.ip.map(|ip| ip.addr()) != Some(want.addr()) {
                return Err(failed(format!(
                    "port {name} has address {}, prevResult says {want}",
                    port.ip.map_or("none".to_string(), |ip| ip.to_string())
                )));
            }
        }
        let ns = Netns::Path(PathBuf::from(netns));
        match link::link_info(&ns, ifname) {
            Ok(Some(l)) if l.is_up() => {}
            Ok(Some(_)) => return Err(failed(format!("{ifname} in {netns} is down"))),
            Ok(None) => return Err(failed(format!("{ifname} does not exist in {netns}"))),
            Err(e) => {
                return Err(CniError::new(
                    code::IO_FAILURE,
                    format!("cannot inspect {ifname} in {netns}: {e}"),
                ))
            }
        }
        if let Ok(addrs) = link::addrs(&ns, ifname) {
            for want in &expect.ips {
                if !addrs.iter().any(|a| a.addr() == want.addr()) {
                    return Err(failed(format!(
                        "{ifname} in {netns} has lost address {want}"
                    )));
                }
            }
        }
        self.ipam("CHECK").map(|_| ())
    }

    fn status(&self) -> Result<(), CniError> {
        self.need_1_1("STATUS")?;
        let mut client = self.connect().map_err(|mut e| {
            e.code = code::NOT_AVAILABLE;
            e
        })?;
        client
            .call(&Request::Ping(NoArgs {}))
            .map(|_| ())
            .map_err(|e| {
                let mut e = daemon_error(&self.conf.socket, e);
                e.code = code::NOT_AVAILABLE;
                e
            })
    }

    fn gc(&self) -> Result<(), CniError> {
        self.need_1_1("GC")?;
        // Without the list every port would look stale: refuse rather
        // than remove them all.
        let attachments = self.conf.valid_attachments.as_ref().ok_or_else(|| {
            CniError::new(
                code::INVALID_CONFIG,
                "GC needs \"cni.dev/valid-attachments\" in the configuration",
            )
        })?;
        let valid: Vec<String> = attachments
            .iter()
            .map(|(id, ifname)| port_name(&self.conf.network, id, ifname))
            .collect();
        let mut client = self.connect()?;
        let ports: Vec<PortInfo> = self.call(&mut client, &Request::PortLs(NoArgs {}))?;
        for p in ports {
            if p.network == self.conf.network && is_plugin_port(&p.name) && !valid.contains(&p.name)
            {
                let req = Request::PortRm(PortRm {
                    name: p.name.clone(),
                });
                match client.call(&req) {
                    Ok(_) => {}
                    Err(ClientError::Remote(e)) if e.kind == ErrorKind::NotFound => {}
                    Err(e) => return Err(daemon_error(&self.conf.socket, e)),
                }
                if self
                    .conf
                    .ipam
                    .as_ref()
                    .is_some_and(|(k, _)| k == cluster_ipam::TYPE)
                {
                    // The cluster address of a stale port goes with it.
                    cluster_ipam::exec("DEL", &self.conf, &p.name)?;
                }
            }
        }
        // host-local before CNI 1.1 knows no GC: its leases are then left
        // to DEL, as they were before GC existed.
        match self.ipam("GC") {
            Err(e) if e.code == code::INCOMPATIBLE_VERSION || e.code == code::INVALID_ENV => Ok(()),
            other => other.map(|_| ()),
        }
    }

    fn need_1_1(&self, what: &str) -> Result<(), CniError> {
        if self.conf.at_least(1, 1) {
            Ok(())
        } else {
            Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "{what} needs CNI 1.1.0; the configuration says {}",
                    self.conf.cni_version
                ),
            ))
        }
    }
}

/// A client failure as a CNI error with the right code.
fn daemon_error(socket: &Path, e: ClientError) -> CniError {
    match e {
        ClientError::Connect { source, .. } => {
            let reason = crate::ctl::proto::strip_os_error(&source.to_string());
            let code = match source.kind() {
                io::ErrorKind::NotFound
                | io::ErrorKind::ConnectionRefused
                | io::ErrorKind::WouldBlock => code::TRY_AGAIN_LATER,
                _ => code::IO_FAILURE,
            };
            let hint = match source.kind() {
                io::ErrorKind::PermissionDenied => {
                    "the plugin runs as the container runtime's user, which may not open the \
                     socket"
                }
                _ => {
                    "start it with `vxswitch daemon`, or set \"socket\" in the network \
                     configuration to where it listens"
                }
            };
            CniError::new(
                code,
                format!(
                    "vxswitch daemon not reachable at {}: {reason}; {hint}",
                    socket.display()
                ),
            )
        }
        ClientError::Timeout { .. } => CniError::new(code::TRY_AGAIN_LATER, e.to_string()),
        ClientError::Remote(r) => {
            let code = match r.kind {
                ErrorKind::InvalidArgument | ErrorKind::NotFound => code::INVALID_CONFIG,
                ErrorKind::Busy | ErrorKind::Unavailable => code::TRY_AGAIN_LATER,
                _ => code::DAEMON_REFUSED,
            };
            CniError::new(code, format!("vxswitch daemon: {}", r.message))
                .with_details(format!("error kind {:?}", r.kind))
        }
        other => CniError::new(code::IO_FAILURE, other.to_string()),
    }
}

/// An address as CNI writes it in results.
fn family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "4"
    } else {
        "6"
    }
}

/// The subnet and gateway of an ipam section's first range (`ranges`, or
/// the older top-level `subnet` and `gateway`), for a network the plugin
/// creates.
fn ipam_range(ipam: &Value) -> (Option<String>, Option<String>) {
    let r = ipam
        .get("ranges")
        .and_then(|r| r.get(0))
        .and_then(|set| set.get(0))
        .unwrap_or(ipam);
    let field = |k: &str| r.get(k).and_then(Value::as_str).map(String::from);
    (field("subnet"), field("gateway"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::proto::Backend;
    use crate::ctl::DEFAULT_SOCKET;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn port_names_are_deterministic_valid_and_distinct() {
        let id = "3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a";
        let a = port_name("red", id, "eth0");
        assert_eq!(a, port_name("red", id, "eth0"));
        assert!(a.starts_with("cni-3f2a1b0c9d8e-"), "{a}");
        assert_eq!(a.len(), 33);
        assert!(is_plugin_port(&a));
        assert_ne!(a, port_name("red", id, "eth1"));
        assert_ne!(a, port_name("blue", id, "eth0"));
        // Same 12-character prefix, other container: another name.
        assert_ne!(a, port_name("red", &format!("{}ff", &id[..12]), "eth0"));
        let odd = port_name("red", "--", "eth0");
        assert!(odd.starts_with("cni-x-") && is_plugin_port(&odd), "{odd}");
        assert!(!is_plugin_port("cni-web"));
        assert!(!is_plugin_port("c1"));
        assert!(!is_plugin_port("cni-abc-0123456789abcdeg"));
    }

    #[test]
    fn cni_args_are_split_into_pairs() {
        let args = parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=web;MAC=02:00:00:00:00:01");
        assert_eq!(args[1], ("K8S_POD_NAME".into(), "web".into()));
        assert_eq!(args[2], ("MAC".into(), "02:00:00:00:00:01".into()));
        assert!(parse_cni_args("").is_empty());
        let label = |a: &str| container_label(&parse_cni_args(a), "3f2a1b");
        assert_eq!(label("K8S_POD_NAMESPACE=web;K8S_POD_NAME=web"), "web");
        assert_eq!(
            label("K8S_POD_NAMESPACE=prod;K8S_POD_NAME=api-7d4"),
            "prod/api-7d4"
        );
        assert_eq!(label("IgnoreUnknown=1"), "3f2a1b");
    }

    #[test]
    fn version_lists_what_is_supported() {
        let out = run("VERSION", &env(&[]), br#"{"cniVersion":"1.0.0"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(out["cniVersion"], "1.0.0");
        assert_eq!(
            out["supportedVersions"],
            json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
        );
        let out = run("VERSION", &env(&[]), b"").unwrap().unwrap();
        assert_eq!(out["cniVersion"], LATEST_VERSION);
    }

    #[test]
    fn config_errors_carry_their_codes() {
        let e = |cmd: &str, input: &str| run(cmd, &env(&[]), input.as_bytes()).unwrap_err();
        assert_eq!(e("ADD", "{not json").code, code::DECODE_FAILURE);
        assert_eq!(e("ADD", "[1]").code, code::DECODE_FAILURE);
        let old = e(
            "ADD",
            r#"{"cniVersion":"0.2.0","name":"n","type":"vxswitch-cni"}"#,
        );
        assert_eq!(old.code, code::INCOMPATIBLE_VERSION);
        assert!(
            old.msg.contains("\"0.2.0\" is not supported"),
            "{}",
            old.msg
        );
        let none = e("ADD", r#"{"name":"n","type":"vxswitch-cni"}"#);
        assert_eq!(none.code, code::INCOMPATIBLE_VERSION);
        let noname = e("ADD", r#"{"cniVersion":"1.0.0","type":"vxswitch-cni"}"#);
        assert_eq!(noname.code, code::INVALID_CONFIG);
        let ipam = e(
            "ADD",
            r#"{"cniVersion":"1.0.0","name":"n","type":"vxswitch-cni","ipam":{"subnet":"x"}}"#,
        );
        assert_eq!(ipam.code, code::INVALID_CONFIG);
        assert!(ipam.msg.contains("\"type\""), "{}", ipam.msg);
        let mtu = e(
            "ADD",
            r#"{"cniVersion":"1.0.0","name":"n","type":"vxswitch-cni","mtu":"big"}"#,
        );
        assert_eq!(mtu.code, code::INVALID_CONFIG);
        let cmd = e("", "{}");
        assert_eq!(cmd.code, code::INVALID_ENV);
        let cmd = e("FROB", "{}");
        assert!(cmd.msg.contains("\"FROB\""), "{}", cmd.msg);
        // Environment checked after the configuration.
        let ok = r#"{"cniVersion":"1.0.0","name":"n","type":"vxswitch-cni"}"#;
        let noenv = e("ADD", ok);
        assert_eq!(noenv.code, code::INVALID_ENV);
        assert!(noenv.msg.contains("CNI_CONTAINERID"), "{}", noenv.msg);
        let status = e("STATUS", ok);
        assert_eq!(status.code, code::INCOMPATIBLE_VERSION);
    }

    #[test]
    fn network_defaults_to_the_cni_name_and_socket_to_the_daemons() {
        let c = NetConf::parse(br#"{"cniVersion":"0.4.0","name":"red","type":"vxswitch-cni"}"#)
            .unwrap();
        assert_eq!(c.network, "red");
        assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
        assert!(c.at_least(0, 4) && !c.at_least(1, 0));
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"red","network":"blue","socket":"/tmp/s",
                "runtimeConfig":{"mac":"02:00:00:00:00:09"},
                "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(
            (c.network.as_str(), c.socket.to_str().unwrap()),
            ("blue", "/tmp/s")
        );
        assert_eq!(c.runtime_mac.as_deref(), Some("02:00:00:00:00:09"));
        assert_eq!(
            c.valid_attachments,
            Some(vec![("c1".into(), "eth0".into())])
        );
        assert_eq!(c.port_security, None, "absent: the network's (on)");
    }

    #[test]
    fn an_uplink_and_its_vlan_are_read_and_checked() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"lan","type":"vxswitch-cni","uplink":"eth0","vlan":10}"#,
        )
        .unwrap();
        assert_eq!((c.uplink.as_deref(), c.vlan), (Some("eth0"), Some(10)));
        for (conf, want) in [
            (r#""vlan":10"#, "\"vlan\" is a setting of an uplink"),
            (r#""uplink":"eth0","vlan":4095"#, "VLAN id from 1 to 4094"),
            (r#""uplink":"eth0","vlan":"10""#, "VLAN id from 1 to 4094"),
            (r#""uplink":7"#, "\"uplink\" must be a string"),
        ] {
            let raw =
                format!(r#"{{"cniVersion":"1.0.0","name":"lan","type":"vxswitch-cni",{conf}}}"#);
            let e = NetConf::parse(raw.as_bytes()).unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG);
            assert!(e.msg.contains(want), "{conf}: {}", e.msg);
        }
        let ipam = serde_json::json!({"type": "host-local",
            "ranges": [[{"subnet": "192.0.2.0/24", "gateway": "192.0.2.1"}]]});
        assert_eq!(
            ipam_range(&ipam),
            (Some("192.0.2.0/24".into()), Some("192.0.2.1".into()))
        );
        let old = serde_json::json!({"type": "host-local", "subnet": "10.1.0.0/16"});
        assert_eq!(ipam_range(&old), (Some("10.1.0.0/16".into()), None));
    }

    #[test]
    fn the_backend_is_in_the_config() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"red","type":"vxswitch-cni","backend":"veth"}"#,
        )
        .unwrap();
        assert_eq!(c.backend, Some(Backend::Veth));
        let e = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"red","type":"vxswitch-cni","backend":"bridge"}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("give tap or veth"), "{}", e.msg);
    }

    #[test]
    fn port_security_can_be_turned_off_in_the_config() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"red","type":"vxswitch-cni","portSecurity":false}"#,
        )
        .unwrap();
        assert_eq!(c.port_security, Some(false));
        let e = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"red","type":"vxswitch-cni","portSecurity":"off"}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(
            e.msg.contains("\"portSecurity\" must be true or false"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn no_daemon_is_try_again_later_with_what_to_do() {
        let sock =
            std::env::temp_dir().join(format!("vxswitch-cni-none-{}.sock", std::process::id()));
        let input = format!(
            r#"{{"cniVersion":"1.0.0","name":"red","type":"vxswitch-cni","socket":"{}"}}"#,
            sock.display()
        );
        let e = env(&[
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/none"),
            ("CNI_IFNAME", "eth0"),
        ]);
        let err = run("ADD", &e, input.as_bytes()).unwrap_err();
        assert_eq!(err.code, code::TRY_AGAIN_LATER);
        assert_eq!(
            err.msg,
            format!(
                "vxswitch daemon not reachable at {}: No such file or directory; start it \
                 with `vxswitch daemon`, or set \"socket\" in the network configuration to \
                 where it listens",
                sock.display()
            )
        );
        // DEL without a daemon: its ports are gone with it, so success.
        assert_eq!(run("DEL", &e, input.as_bytes()), Ok(None));
        let j = err.to_json("1.0.0");
        assert_eq!(j["code"], 11);
        assert!(j.get("details").is_none());
    }

    #[test]
    fn argv0_or_subcommand_selects_the_plugin() {
        assert!(invoked_as_plugin(
            OsStr::new("/opt/cni/bin/vxswitch-cni"),
            None
        ));
        assert!(invoked_as_plugin(
            OsStr::new("vxswitch"),
            Some(OsStr::new("cni"))
        ));
        assert!(!invoked_as_plugin(
            OsStr::new("/usr/bin/vxswitch"),
            Some(OsStr::new("daemon"))
        ));
    }
}
