//! The key layout and value formats vxswitch keeps in etcd.
//!
//! ```text
//! ROOT/v1/hosts/HOST                  -> HostRecord      (under HOST's lease)
//! ROOT/v1/networks/NAME               -> NetworkRecord   (no lease)
//! ROOT/v1/vni/VNI                     -> VniRecord       (no lease)
//! ROOT/v1/endpoints/HOST/NETWORK/MAC  -> EndpointRecord  (under HOST's lease)
//! ROOT/v1/ipam/NETWORK/IP             -> IpamRecord      (no lease)
//! ```
//!
//! Why this shape:
//! - **One prefix, one watch.** Everything lives under `ROOT/v1/`, so a daemon
//!   lists it once and watches it from the list's revision: one stream, one
//!   ordering, no cross-watch races.
//! - **The host first under `endpoints/`.** What a host writes is exactly
//!   `hosts/HOST` and `endpoints/HOST/`: etcd's role-based access control
//!   grants permissions by key prefix, so each host can be given write access
//!   to its own prefix only, and a compromised host cannot publish endpoints
//!   in another's name. It also makes "everything HOST published" one range.
//! - **Leases for what dies with a host.** A host's record and endpoints share
//!   its lease: when the daemon dies, etcd deletes them together after the
//!   TTL, and every watcher sees the deletes. Networks, VNI claims and
//!   address allocations outlive any one host, so they have no lease.
//! - **A separate `vni/` key** makes "VNI unique cluster-wide" one
//!   transaction: create `networks/NAME` and `vni/VNI` only if both are
//!   absent.
//! - **`ipam/NETWORK/IP` keys**, one per address, make "never the same address
//!   twice" a create-if-absent of one key.
//! - **`v1` in the path** versions the format. Values are parsed strictly
//!   (unknown fields refused), so a later format that adds a field is `v2`,
//!   written beside `v1` during a rolling upgrade; a `v1` daemon never
//!   misreads a `v2` value, it never sees one.
//!
//! Every key and value read from etcd goes through `Schema::parse_key` and
//! `parse_value`: bounded sizes, strict JSON, validated names and addresses.
//! A refusal is an error the caller counts; nothing here panics.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::wire::MacAddr;

/// The format version in every key.
pub const VERSION: &str = "v1";
/// Values longer than this are refused.
pub const MAX_VALUE: usize = 4096;
/// Keys longer than this are refused.
pub const MAX_KEY: usize = 512;
/// Names (hosts, networks) are at most this long.
pub const MAX_NAME: usize = 64;
/// Addresses of one endpoint.
pub const MAX_IPS: usize = 16;
/// Subnets of one network.
pub const MAX_SUBNETS: usize = 8;
/// The largest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;

/// Why a key or value from etcd was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("key {key:?} is not in the vxswitch {VERSION} layout")]
    UnknownKey { key: String },
    #[error("key of {len} bytes (at most {MAX_KEY})")]
    KeyTooLong { len: usize },
    #[error("value of {key:?} is {len} bytes (at most {MAX_VALUE})")]
    ValueTooLong { key: String, len: usize },
    #[error("invalid value of {key:?}: {why}")]
    BadValue { key: String, why: String },
    #[error("invalid {what} {value:?}: {why}")]
    BadName {
        what: &'static str,
        value: String,
        why: &'static str,
    },
}

/// A host id or network name: 1 to 64 letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit (the daemon's rule for names).
fn check_name(what: &'static str, s: &str) -> Result<(), SchemaError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && s.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(SchemaError::BadName {
            what,
            value: s.chars().take(80).collect(),
            why: "use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        })
    }
}

/// A validated host id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct HostId(String);

impl HostId {
    pub fn new(s: &str) -> Result<HostId, SchemaError> {
        check_name("host id", s)?;
        Ok(HostId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for HostId {
    type Err = SchemaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HostId::new(s)
    }
}

impl<'de> Deserialize<'de> for HostId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HostId::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Checks a network name (the same rule as host ids).
pub fn check_network_name(s: &str) -> Result<(), SchemaError> {
    check_name("network name", s)
}

/// `hosts/HOST`: where a host's VTEP is, and which boot of it registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRecord {
    /// Underlay address other hosts send VXLAN to.
    pub vtep: IpAddr,
    /// UDP port of its VXLAN socket.
    pub vxlan_port: u16,
    /// Identifies one boot of one machine (the kernel's boot id): the same
    /// id with another boot id is another machine, refused.
    pub boot_id: String,
    /// vxswitch version of the writer (for operators).
    pub version: String,
}

/// One subnet of a cluster network.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetRecord {
    pub subnet: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// `networks/NAME`: a network every host creates locally. Immutable once
/// created (create-if-absent); a changed record is a new network.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRecord {
    pub vni: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<SubnetRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// `vni/VNI`: which network holds a VNI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VniRecord {
    pub network: String,
}

/// `endpoints/HOST/NETWORK/MAC`: a container's interface on HOST.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointRecord {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpAddr>,
}

/// `ipam/NETWORK/IP`: an allocated address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpamRecord {
    /// Who holds it (a Docker endpoint id, a CNI container id and ifname).
    pub owner: String,
    /// The host that allocated it: when that host is gone (its lease
    /// expired) for a grace period, the address is reclaimed.
    pub host: HostId,
}

/// A parsed key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    Host(HostId),
    Network(String),
    Vni(u32),
    Endpoint {
        host: HostId,
        network: String,
        mac: MacAddr,
    },
    Ipam {
        network: String,
        ip: IpAddr,
    },
}

/// A parsed value, by key kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Host(HostRecord),
    Network(NetworkRecord),
    Vni(VniRecord),
    Endpoint(EndpointRecord),
    Ipam(IpamRecord),
}

/// The key layout under one root (default `/vxswitch`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    /// `ROOT/v1/`.
    prefix: String,
}

impl Default for Schema {
    fn default() -> Self {
        Schema::new("/vxswitch").expect("the default root is valid")
    }
}

impl Schema {
    /// `root` like `/vxswitch` or `/clusters/a/vxswitch`: starts with `/`,
    /// no trailing `/`, printable ASCII.
    pub fn new(root: &str) -> Result<Schema, SchemaError> {
        let ok = root.starts_with('/')
            && !root.ends_with('/')
            && root.len() <= 128
            && root.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(SchemaError::BadName {
                what: "cluster key root",
                value: root.to_string(),
                why: "use an absolute path like /vxswitch, without a trailing '/'",
            });
        }
        Ok(Schema {
            prefix: format!("{root}/{VERSION}/"),
        })
    }

    /// Everything vxswitch keeps: one list, one watch.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn host_key(&self, host: &HostId) -> String {
        format!("{}hosts/{host}", self.prefix)
    }

    pub fn network_key(&self, name: &str) -> String {
        format!("{}networks/{name}", self.prefix)
    }

    pub fn vni_key(&self, vni: u32) -> String {
        format!("{}vni/{vni}", self.prefix)
    }

    pub fn endpoint_key(&self, host: &HostId, network: &str, mac: MacAddr) -> String {
        format!("{}endpoints/{host}/{network}/{mac}", self.prefix)
    }

    /// Every endpoint of one host.
    pub fn host_endpoints_prefix(&self, host: &HostId) -> String {
        format!("{}endpoints/{host}/", self.prefix)
    }

    pub fn ipam_key(&self, network: &str, ip: IpAddr) -> String {
        format!("{}ipam/{network}/{ip}", self.prefix)
    }

    /// Every allocation of one network.
    pub fn ipam_network_prefix(&self, network: &str) -> String {
        format!("{}ipam/{network}/", self.prefix)
    }

    /// Every allocation.
    pub fn ipam_prefix(&self) -> String {
        format!("{}ipam/", self.prefix)
    }

    /// Parses a key of this layout; anything else is refused.
    pub fn parse_key(&self, key: &[u8]) -> Result<Key, SchemaError> {
        if key.len() > MAX_KEY {
            return Err(SchemaError::KeyTooLong { len: key.len() });
        }
        let text = String::from_utf8_lossy(key);
        let unknown = || SchemaError::UnknownKey {
            key: text.chars().take(120).collect(),
        };
        let rest = std::str::from_utf8(key)
            .ok()
            .and_then(|k| k.strip_prefix(self.prefix.as_str()))
            .ok_or_else(unknown)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["hosts", host] => Ok(Key::Host(HostId::new(host)?)),
            ["networks", name] => {
                check_network_name(name)?;
                Ok(Key::Network(name.to_string()))
            }
            ["vni", vni] => {
                let v = canonical_u32(vni)
                    .filter(|v| *v <= MAX_VNI)
                    .ok_or_else(unknown)?;
                Ok(Key::Vni(v))
            }
            ["endpoints", host, network, mac] => {
                let host = HostId::new(host)?;
                check_network_name(network)?;
                let m: MacAddr = mac.parse().map_err(|_| unknown())?;
                // One spelling per MAC, so one MAC is one key.
                if m.to_string() != *mac || !m.is_valid_source() {
                    return Err(unknown());
                }
                Ok(Key::Endpoint {
                    host,
                    network: network.to_string(),
                    mac: m,
                })
            }
            ["ipam", network, ip] => {
                check_network_name(network)?;
                let a: IpAddr = ip.parse().map_err(|_| unknown())?;
                if a.to_string() != *ip {
                    return Err(unknown());
                }
                Ok(Key::Ipam {
                    network: network.to_string(),
                    ip: a,
                })
            }
            _ => Err(unknown()),
        }
    }
}

/// A decimal without sign, leading zeros or spaces.
fn canonical_u32(s: &str) -> Option<u32> {
    if s.is_empty()
        || s.len() > 10
        || !s.bytes().all(|b| b.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

fn bad(key: &Key, why: impl Into<String>) -> SchemaError {
    SchemaError::BadValue {
        key: format!("{key:?}"),
        why: why.into(),
    }
}

fn strict<'a, T: Deserialize<'a>>(key: &Key, value: &'a [u8]) -> Result<T, SchemaError> {
    serde_json::from_slice(value).map_err(|e| bad(key, e.to_string()))
}

/// Parses and validates the value stored at `key`.
pub fn parse_value(key: &Key, value: &[u8]) -> Result<Value, SchemaError> {
    if value.len() > MAX_VALUE {
        return Err(SchemaError::ValueTooLong {
            key: format!("{key:?}"),
            len: value.len(),
        });
    }
    match key {
        Key::Host(_) => {
            let h: HostRecord = strict(key, value)?;
            if h.vxlan_port == 0 {
                return Err(bad(key, "vxlan_port 0"));
            }
            if h.vtep.is_unspecified() || h.vtep.is_multicast() {
                return Err(bad(key, "vtep must be a unicast address"));
            }
            if h.boot_id.is_empty()
                || h.boot_id.len() > 64
                || !h.boot_id.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(bad(key, "boot_id: 1 to 64 printable characters"));
            }
            if h.version.len() > 64 {
                return Err(bad(key, "version too long"));
            }
            Ok(Value::Host(h))
        }
        Key::Network(_) => {
            let n: NetworkRecord = strict(key, value)?;
            validate_network(&n).map_err(|why| bad(key, why))?;
            Ok(Value::Network(n))
        }
        Key::Vni(_) => {
            let v: VniRecord = strict(key, value)?;
            check_network_name(&v.network)?;
            Ok(Value::Vni(v))
        }
        Key::Endpoint { .. } => {
            let e: EndpointRecord = strict(key, value)?;
            if e.ips.len() > MAX_IPS {
                return Err(bad(key, format!("more than {MAX_IPS} addresses")));
            }
            if e.ips
                .iter()
                .any(|ip| ip.is_unspecified() || ip.is_multicast())
            {
                return Err(bad(key, "endpoint addresses must be unicast"));
            }
            Ok(Value::Endpoint(e))
        }
        Key::Ipam { .. } => {
            let r: IpamRecord = strict(key, value)?;
            if r.owner.is_empty() || r.owner.len() > 256 || r.owner.chars().any(char::is_control) {
                return Err(bad(
                    key,
                    "owner: 1 to 256 characters, no control characters",
                ));
            }
            Ok(Value::Ipam(r))
        }
    }
}

/// Checks a network record: VNI range, subnets, gateways, MTU.
pub fn validate_network(n: &NetworkRecord) -> Result<(), String> {
    if n.vni > MAX_VNI {
        return Err(format!("vni {} over {MAX_VNI}", n.vni));
    }
    if n.subnets.len() > MAX_SUBNETS {
        return Err(format!("more than {MAX_SUBNETS} subnets"));
    }
    for s in &n.subnets {
        if s.subnet != s.subnet.trunc() {
            return Err(format!(
                "subnet {} has host bits set (use {})",
                s.subnet,
                s.subnet.trunc()
            ));
        }
        if let Some(g) = s.gateway {
            if !s.subnet.contains(&g) {
                return Err(format!("gateway {g} is outside {}", s.subnet));
            }
        }
    }
    if let Some(m) = n.mtu {
        if !(68..=65535).contains(&m) {
            return Err(format!("mtu {m} outside 68..=65535"));
        }
    }
    Ok(())
}

/// Serializes a record as stored (compact JSON).
pub fn to_value<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> Schema {
        Schema::default()
    }

    #[test]
    fn keys_round_trip() {
        let h = HostId::new("node-1").unwrap();
        let mac: MacAddr = "02:42:ac:11:00:02".parse().unwrap();
        let ip: IpAddr = "fd00::1".parse().unwrap();
        let cases = [
            (s().host_key(&h), Key::Host(h.clone())),
            (s().network_key("blue"), Key::Network("blue".into())),
            (s().vni_key(4242), Key::Vni(4242)),
            (
                s().endpoint_key(&h, "blue", mac),
                Key::Endpoint {
                    host: h.clone(),
                    network: "blue".into(),
                    mac,
                },
            ),
            (
                s().ipam_key("blue", ip),
                Key::Ipam {
                    network: "blue".into(),
                    ip,
                },
            ),
        ];
        for (k, want) in cases {
            assert!(k.starts_with("/vxswitch/v1/"), "{k}");
            assert_eq!(s().parse_key(k.as_bytes()).unwrap(), want, "{k}");
        }
        assert_eq!(
            s().endpoint_key(&h, "blue", mac),
            "/vxswitch/v1/endpoints/node-1/blue/02:42:ac:11:00:02"
        );
    }

    #[test]
    fn odd_keys_are_refused() {
        for k in [
            "/vxswitch/v2/hosts/a",
            "/vxswitch/v1/hosts/",
            "/vxswitch/v1/hosts/a/b",
            "/vxswitch/v1/hosts/-a",
            "/vxswitch/v1/vni/042",
            "/vxswitch/v1/vni/16777216",
            "/vxswitch/v1/vni/+1",
            "/vxswitch/v1/endpoints/a/blue/02:42:AC:11:00:02",
            "/vxswitch/v1/endpoints/a/blue/01:00:5e:00:00:01",
            "/vxswitch/v1/endpoints/a/blue",
            "/vxswitch/v1/ipam/blue/010.0.0.1",
            "/vxswitch/v1/ipam/blue/FD00::1",
            "/vxswitch/v1/networks/a b",
            "/other",
        ] {
            assert!(s().parse_key(k.as_bytes()).is_err(), "{k}");
        }
        assert!(s().parse_key(b"/vxswitch/v1/hosts/\xff").is_err());
        let long = format!("/vxswitch/v1/hosts/{}", "a".repeat(600));
        assert!(matches!(
            s().parse_key(long.as_bytes()),
            Err(SchemaError::KeyTooLong { .. })
        ));
    }

    #[test]
    fn values_are_strict() {
        let host = Key::Host(HostId::new("a").unwrap());
        let ok = br#"{"vtep":"198.18.0.1","vxlan_port":4789,"boot_id":"b1","version":"0.1.0"}"#;
        assert!(matches!(parse_value(&host, ok), Ok(Value::Host(_))));
        for bad in [
            &br#"{"vtep":"198.18.0.1","vxlan_port":4789,"boot_id":"b1","version":"0.1.0","x":1}"#[..],
            br#"{"vtep":"198.18.0.1","vxlan_port":0,"boot_id":"b1","version":""}"#,
            br#"{"vtep":"0.0.0.0","vxlan_port":4789,"boot_id":"b1","version":""}"#,
            br#"{"vtep":"198.18.0.1","vxlan_port":4789,"boot_id":"","version":""}"#,
            br#"{"vtep":"198.18.0.1","vxlan_port":70000,"boot_id":"b","version":""}"#,
            b"not json",
        ] {
            assert!(
                parse_value(&host, bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let net = Key::Network("blue".into());
        let ok = br#"{"vni":4242,"subnets":[{"subnet":"10.42.0.0/24","gateway":"10.42.0.1"}],"mtu":1450}"#;
        assert!(parse_value(&net, ok).is_ok());
        for bad in [
            &br#"{"vni":16777216}"#[..],
            br#"{"vni":1,"subnets":[{"subnet":"10.42.0.1/24"}]}"#,
            br#"{"vni":1,"subnets":[{"subnet":"10.42.0.0/24","gateway":"10.43.0.1"}]}"#,
            br#"{"vni":1,"mtu":20}"#,
        ] {
            assert!(
                parse_value(&net, bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let big = vec![b' '; MAX_VALUE + 1];
        assert!(matches!(
            parse_value(&net, &big),
            Err(SchemaError::ValueTooLong { .. })
        ));
        let ep = s()
            .parse_key(b"/vxswitch/v1/endpoints/a/blue/02:00:00:00:00:01")
            .unwrap();
        let many: Vec<String> = (0..17).map(|i| format!("\"10.0.0.{i}\"")).collect();
        let v = format!("{{\"ips\":[{}]}}", many.join(","));
        assert!(parse_value(&ep, v.as_bytes()).is_err());
        assert!(parse_value(&ep, br#"{"ips":["224.0.0.1"]}"#).is_err());
        assert_eq!(
            parse_value(&ep, b"{}").unwrap(),
            Value::Endpoint(EndpointRecord::default())
        );
    }

    #[test]
    fn roots() {
        assert_eq!(Schema::new("/c/x").unwrap().prefix(), "/c/x/v1/");
        for bad in ["", "vx", "/vx/", "/a b"] {
            assert!(Schema::new(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(key in proptest::collection::vec(proptest::num::u8::ANY, 0..80), value in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut k = b"/vxswitch/v1/".to_vec();
            k.extend_from_slice(&key);
            if let Ok(parsed) = s().parse_key(&k) {
                let _ = parse_value(&parsed, &value);
            }
        }
    }
}
