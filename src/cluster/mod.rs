//! The cluster control plane: hosts, networks, endpoints and addresses shared
//! through etcd, so VXLAN networks span hosts without hand-written VTEPs.
//!
//! Each daemon registers itself under a lease, publishes its containers'
//! endpoints under that lease, lists and watches everything the others
//! publish, and turns that into VTEPs, static remote FDB entries and IP -> MAC
//! bindings for its dataplane. See `docs/cluster.md` for the user's view.
//!
//! Layers, each usable and tested alone:
//! - `http`: a bounded blocking HTTP/1.1 client (no async runtime);
//! - `etcd`: etcd's v3 API over its JSON gateway, with failover;
//! - `schema`: the key layout and strictly parsed values;
//! - `model`: the cluster view, the desired dataplane state, a pure diff;
//! - `store`: the typed transactions (register a host, create a network);
//! - `ipam`: cluster-wide address allocation by compare-and-set;
//! - `agent`: the thread that runs it all against a `Dataplane`;
//! - `mem`: an in-memory `Dataplane` for tests.
//!
//! The daemon meets this module only through `agent::Dataplane` (what to
//! apply, which endpoints are local) and `agent::Agent` (start, notify,
//! create networks, status): nothing here knows the control socket, the
//! engine or the FDB, and nothing here runs on a dataplane thread.

pub mod agent;
pub mod etcd;
pub mod http;
pub mod ipam;
pub mod mem;
pub mod model;
pub mod schema;
pub mod store;

use std::net::IpAddr;

pub use agent::{Agent, AgentConfig, AgentStatus, Dataplane, LocalEndpoint};
pub use model::{Change, State};

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Etcd(#[from] etcd::EtcdError),
    #[error(transparent)]
    Schema(#[from] schema::SchemaError),
    #[error(
        "host id {host:?} is taken by a live host (VTEP {vtep}, boot id {boot_id}): \
         give this host another --host-id, or stop the other one (its registration \
         expires one lease TTL after it stops)"
    )]
    HostIdTaken {
        host: String,
        vtep: IpAddr,
        boot_id: String,
    },
    #[error(
        "this host's clock is {skew_secs} s off etcd's (at most {max_secs} s allowed): \
         fix its time synchronisation (NTP) before it joins the cluster"
    )]
    ClockSkew { skew_secs: i64, max_secs: u64 },
    #[error("cluster network {name:?} already exists with other settings (VNI {vni})")]
    NetworkExists { name: String, vni: u32 },
    #[error("VNI {vni} is already used by cluster network {network:?}")]
    VniTaken { vni: u32, network: String },
    #[error("cluster network {name:?} still has {endpoints} endpoint(s); remove them first")]
    NetworkInUse { name: String, endpoints: usize },
    #[error("invalid cluster network: {0}")]
    InvalidNetwork(String),
    #[error("no free address left in {subnet} of network {network:?}")]
    AddressesExhausted { network: String, subnet: String },
    #[error("address {ip} of network {network:?} is already allocated")]
    AddressInUse { network: String, ip: IpAddr },
    #[error("address {ip} is not in a subnet of network {network:?} or is reserved")]
    AddressOutOfRange { network: String, ip: IpAddr },
    #[error("address {ip} of network {network:?} belongs to {owner:?}, not {requester:?}")]
    NotOwner {
        network: String,
        ip: IpAddr,
        owner: String,
        requester: String,
    },
    #[error("gave up after repeated conflicting writes to {0} (too much contention)")]
    Contention(&'static str),
    #[error("the cluster agent is not running")]
    AgentStopped,
    #[error("the daemon did not answer the cluster agent: {0}")]
    Daemon(String),
}

impl ClusterError {
    /// etcd was unreachable: the operation may succeed later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ClusterError::Etcd(e) if e.is_unavailable())
    }
}
