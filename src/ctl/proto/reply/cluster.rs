//! The cluster's replies: `cluster.status` and the cluster-wide IPAM.

use super::*;

/// Result of `cluster.status`: this daemon in the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub host_id: String,
    /// This host's VTEP (`IP:PORT`) as other hosts reach it.
    pub vtep: String,
    /// The etcd endpoints.
    pub endpoints: Vec<String>,
    /// etcd answered the last request.
    pub connected: bool,
    /// Registered under a live lease.
    pub registered: bool,
    /// Listed and watching: the view is current.
    pub synced: bool,
    /// Registration refused (host id taken, clock off): `error` says why.
    pub refused: bool,
    /// The lease (hexadecimal, as etcdctl prints it); absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    pub ttl_secs: u64,
    /// The etcd revision the view reflects.
    pub revision: i64,
    pub hosts: usize,
    pub networks: usize,
    /// Remote endpoints (cluster FDB entries) applied here.
    pub remote_endpoints: usize,
    /// Local endpoints published.
    pub published: usize,
    /// Records in etcd refused as invalid (counted, ignored).
    pub refused_records: u64,
    pub resyncs: u64,
    pub compactions: u64,
    pub lease_losses: u64,
    pub takeovers: u64,
    pub apply_failures: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_error: Option<String>,
    /// This host's clock minus etcd's, in ms (±1 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew_ms: Option<i64>,
    /// The last error; absent once everything works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `ipam.allocate`: an address of a cluster network, unique cluster-wide.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpamAllocate {
    pub network: String,
    /// Who holds it (a CNI container and interface, a Docker endpoint):
    /// asking again with the same owner returns the same address.
    pub owner: String,
    /// This address, if free (else the lowest free one of the subnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// Result of `ipam.allocate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamAllocated {
    pub network: String,
    /// The address with its subnet's prefix length (`10.42.0.2/24`).
    pub ip: ipnet::IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// `ipam.release`: idempotent. `ip` and `owner`: that address if `owner`
/// holds it; `owner` alone: every address it holds; `ip` alone: that
/// address if this host allocated it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpamRelease {
    pub network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Result of `ipam.release`: what was freed (empty: nothing was held).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamReleased {
    pub network: String,
    pub released: Vec<IpAddr>,
}
