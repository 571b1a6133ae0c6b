//! The network configuration a runtime hands the plugin on stdin, and the
//! `CNI_ARGS` it sets: parsed and checked before anything is created.

use std::path::PathBuf;

use serde_json::Value;

use crate::ctl::proto::Backend;
use crate::ctl::DEFAULT_SOCKET;

use super::{code, CniError, SUPPORTED_VERSIONS};

/// The network configuration fields the plugin reads. Unknown fields are
/// ignored (runtimes add their own, e.g. `capabilities`, `args`).
#[derive(Clone, Debug)]
pub struct NetConf {
    pub cni_version: String,
    /// The CNI network's name.
    pub name: String,
    /// The vxswitch network the ports go to (`network`, default `name`).
    pub network: String,
    /// The daemon's control socket (`socket`).
    pub socket: PathBuf,
    pub mtu: Option<u32>,
    /// The `ipam` section, if any (with its `type`).
    pub ipam: Option<(String, Value)>,
    /// `runtimeConfig.mac`.
    pub runtime_mac: Option<String>,
    /// `portSecurity`: `false` lets the container send from any source MAC
    /// (default `true`: only its own; docs/security.md).
    pub port_security: Option<bool>,
    /// `uplink`: the host interface on the LAN (docs/uplink.md). ADD
    /// creates the network with it when it does not exist yet, and checks
    /// that an existing one has it.
    pub uplink: Option<String>,
    /// `vlan`: the uplink's VLAN id (1 to 4094; needs `uplink`).
    pub vlan: Option<u16>,
    /// `backend`: `"tap"` or `"veth"` (absent: the network's; docs/veth.md).
    pub backend: Option<Backend>,
    /// `prevResult`, for CHECK.
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments`, for GC: (container ID, ifname).
    pub valid_attachments: Option<Vec<(String, String)>>,
    /// The raw configuration, for messages.
    pub raw: Value,
}

impl NetConf {
    pub fn parse(input: &[u8]) -> Result<NetConf, CniError> {
        let raw: Value = serde_json::from_slice(input).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                format!("the network configuration on stdin is not valid JSON: {e}"),
            )
        })?;
        if !raw.is_object() {
            return Err(CniError::new(
                code::DECODE_FAILURE,
                "the network configuration on stdin is not a JSON object",
            ));
        }
        let invalid = |msg: String| CniError::new(code::INVALID_CONFIG, msg);
        let string = |key: &str| -> Result<Option<String>, CniError> {
            match raw.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(invalid(format!(
                    "network configuration: \"{key}\" must be a string, not {other}"
                ))),
            }
        };
        let cni_version = string("cniVersion")?.ok_or_else(|| {
            CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "network configuration has no \"cniVersion\" (CNI 0.2.0 or older); this \
                     plugin supports {}",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            )
        })?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "CNI version {cni_version:?} is not supported; this plugin supports {}",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        let name = string("name")?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid("network configuration has no \"name\"".into()))?;
        let network = string("network")?.unwrap_or_else(|| name.clone());
        let socket = string("socket")?
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
        let mtu =
            match raw.get("mtu") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().and_then(|m| u32::try_from(m).ok()).ok_or_else(
                    || {
                        invalid(format!(
                            "network configuration: \"mtu\" must be a positive integer, not {v}"
                        ))
                    },
                )?),
            };
        let ipam = match raw.get("ipam") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) if m.is_empty() => None,
            Some(v @ Value::Object(m)) => match m.get("type").and_then(Value::as_str) {
                Some(t) if !t.is_empty() && !t.contains('/') => Some((t.to_string(), v.clone())),
                _ => {
                    return Err(invalid(
                        "network configuration: \"ipam\" needs a \"type\", the name of an IPAM \
                         plugin such as \"host-local\""
                            .into(),
                    ))
                }
            },
            Some(other) => {
                return Err(invalid(format!(
                    "network configuration: \"ipam\" must be an object, not {other}"
                )))
            }
        };
        let port_security = match raw.get("portSecurity") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                return Err(invalid(format!(
                    "network configuration: \"portSecurity\" must be true or false, not {other}"
                )))
            }
        };
        let uplink = string("uplink")?.filter(|u| !u.is_empty());
        let backend = string("backend")?
            .map(|b| {
                b.parse::<Backend>()
                    .map_err(|e| invalid(format!("network configuration: \"backend\": {e}")))
            })
            .transpose()?;
        let vlan = match raw.get("vlan") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let id = v
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| (1..=4094).contains(n))
                    .ok_or_else(|| {
                        invalid(format!(
                            "network configuration: \"vlan\" must be a VLAN id from 1 to \
                             4094, not {v}"
                        ))
                    })?;
                if uplink.is_none() {
                    return Err(invalid(
                        "network configuration: \"vlan\" is a setting of an uplink; add \
                         \"uplink\": the host interface on the LAN (e.g. \"eth0\")"
                            .into(),
                    ));
                }
                Some(id)
            }
        };
        let runtime_mac = raw
            .get("runtimeConfig")
            .and_then(|r| r.get("mac"))
            .and_then(Value::as_str)
            .map(String::from);
        let prev_result = raw.get("prevResult").filter(|v| !v.is_null()).cloned();
        let valid_attachments = raw
            .get("cni.dev/valid-attachments")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|a| {
                        Some((
                            a.get("containerID")?.as_str()?.to_string(),
                            a.get("ifname")?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            });
        Ok(NetConf {
            cni_version,
            name,
            network,
            socket,
            mtu,
            ipam,
            runtime_mac,
            port_security,
            uplink,
            vlan,
            backend,
            prev_result,
            valid_attachments,
            raw,
        })
    }

    /// Whether the configuration's version is at least `major.minor`.
    pub(super) fn at_least(&self, major: u32, minor: u32) -> bool {
        let mut it = self
            .cni_version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
        (a, b) >= (major, minor)
    }
}

/// `CNI_ARGS` (`K1=V1;K2=V2`) as pairs, in order.
pub fn parse_cni_args(args: &str) -> Vec<(String, String)> {
    args.split(';')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The port's `container` label: the Kubernetes pod as `NAMESPACE/NAME`,
/// podman's container name (podman sets both variables to it), else the
/// container ID.
pub fn container_label(args: &[(String, String)], container_id: &str) -> String {
    let get = |key: &str| {
        args.iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    match (get("K8S_POD_NAMESPACE"), get("K8S_POD_NAME")) {
        (Some(ns), Some(pod)) if ns != pod => format!("{ns}/{pod}"),
        (_, Some(pod)) => pod,
        _ => container_id.to_string(),
    }
}
