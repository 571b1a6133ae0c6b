//! `"ipam": {"type": "vxswitch"}`: addresses from the cluster-wide IPAM
//! (`docs/cluster.md`), through the daemon (`ipam.allocate`,
//! `ipam.release`), instead of an IPAM plugin found in `CNI_PATH`.
//!
//! The network must be a cluster network (`vxswitch network create NAME
//! --cluster --subnet ...`), its subnet is the range, and no address is
//! handed out twice on any host. The owner of an address is the port's name
//! ([`super::port_name`]: network, container ID and interface), so an ADD
//! that is retried gets the same address back, and DEL releases exactly
//! what ADD took, idempotently. The type name `vxswitch` is not a binary in
//! `CNI_PATH`: only this plugin ever reads its own `ipam` section, so a
//! conflist that names it stays valid for every runtime.

use serde_json::{json, Value};

use super::{code, daemon_error, CniError, NetConf};
use crate::ctl::proto::{IpamAllocate, IpamAllocated, IpamRelease, IpamReleased};
use crate::ctl::{Client, Request};

/// The `ipam` `type` that selects the cluster IPAM.
pub const TYPE: &str = "vxswitch";

/// Runs IPAM `command` for `owner` (the port's name): ADD gives an IPAM
/// result as a delegated plugin would print it; DEL releases; CHECK and GC
/// have nothing of their own to do (the port carries the address).
pub fn exec(command: &str, conf: &NetConf, owner: &str) -> Result<Option<Value>, CniError> {
    match command {
        "ADD" => add(conf, owner).map(Some),
        "DEL" => release(conf, owner).map(|()| None),
        _ => Ok(None),
    }
}

fn connect(conf: &NetConf) -> Result<Client, CniError> {
    Client::connect(&conf.socket).map_err(|e| daemon_error(&conf.socket, e))
}

fn add(conf: &NetConf, owner: &str) -> Result<Value, CniError> {
    let mut client = connect(conf)?;
    let req = Request::IpamAllocate(IpamAllocate {
        network: conf.network.clone(),
        owner: owner.to_string(),
        ip: None,
    });
    let got: IpamAllocated = client
        .call_as(&req)
        .map_err(|e| daemon_error(&conf.socket, e))?;
    let mut ip = json!({ "address": got.ip.to_string() });
    if let Some(gw) = got.gateway {
        ip["gateway"] = Value::String(gw.to_string());
    }
    Ok(json!({ "cniVersion": conf.cni_version, "ips": [ip] }))
}

/// Releases what `owner` holds. A daemon out of reach is an error the
/// runtime retries (TRY_AGAIN_LATER): succeeding would leak the address in
/// the cluster for good.
fn release(conf: &NetConf, owner: &str) -> Result<(), CniError> {
    let mut client = connect(conf).map_err(|e| {
        CniError::new(
            code::TRY_AGAIN_LATER,
            format!(
                "cannot release the cluster address of {owner}: {}; the address stays \
                 allocated until DEL succeeds",
                e.msg
            ),
        )
    })?;
    let req = Request::IpamRelease(IpamRelease {
        network: conf.network.clone(),
        ip: None,
        owner: Some(owner.to_string()),
    });
    let _: IpamReleased = client
        .call_as(&req)
        .map_err(|e| daemon_error(&conf.socket, e))?;
    Ok(())
}
