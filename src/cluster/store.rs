//! The cluster's writes, each one etcd transaction with the compare that makes
//! it safe under concurrency: register a host (refusing an id held by another
//! live machine), create a network (name and VNI unique cluster-wide),
//! delete a network.

use super::etcd::{Client, Compare, TxnOp, TxnOpResult};
use super::schema::{self, HostId, HostRecord, Key, NetworkRecord, Schema, Value, VniRecord};
use super::ClusterError;

/// Attempts before a transaction that keeps losing races gives up.
const ATTEMPTS: usize = 8;

/// How a host registration went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// The id was free.
    Created,
    /// The id was held by an earlier run on this machine (same boot id, as
    /// after a daemon restart): its record now carries our lease. Keys still
    /// on `previous_lease` expire with it unless re-published.
    TookOver { previous_lease: i64 },
}

fn first_kv(r: &[TxnOpResult], i: usize) -> Option<&super::etcd::KeyValue> {
    match r.get(i) {
        Some(TxnOpResult::Range(kvs)) => kvs.first(),
        _ => None,
    }
}

/// Writes `hosts/HOST` under `lease` if the id is free or held by this same
/// machine (equal boot id); refuses an id held by another live machine.
pub fn register_host(
    c: &mut Client,
    s: &Schema,
    host: &HostId,
    rec: &HostRecord,
    lease: i64,
) -> Result<Registration, ClusterError> {
    let key = s.host_key(host).into_bytes();
    let value = schema::to_value(rec);
    for _ in 0..ATTEMPTS {
        let t = c.txn(
            &[Compare::absent(key.clone())],
            &[TxnOp::put(key.clone(), value.clone(), lease)],
            &[TxnOp::get(key.clone())],
        )?;
        if t.succeeded {
            return Ok(Registration::Created);
        }
        let Some(kv) = first_kv(&t.responses, 0) else {
            continue; // deleted in between: try again
        };
        let other = schema::parse_value(&Key::Host(host.clone()), &kv.value);
        if let Ok(Value::Host(other)) = &other {
            if other.boot_id != rec.boot_id {
                return Err(ClusterError::HostIdTaken {
                    host: host.to_string(),
                    vtep: other.vtep,
                    boot_id: other.boot_id.clone(),
                });
            }
        }
        // Ours from an earlier run (or unreadable garbage): take it over,
        // unless it changes under us.
        let t = c.txn(
            &[Compare::mod_revision(key.clone(), kv.mod_revision)],
            &[TxnOp::put(key.clone(), value.clone(), lease)],
            &[],
        )?;
        if t.succeeded {
            return Ok(Registration::TookOver {
                previous_lease: kv.lease,
            });
        }
    }
    Err(ClusterError::Contention("the host record"))
}

/// The outcome of a create-if-absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    Created,
    /// It existed already with exactly these settings.
    Exists,
}

/// Creates cluster network `name` if neither the name nor the VNI is taken,
/// in one transaction; creating it again with the same settings is fine.
pub fn create_network(
    c: &mut Client,
    s: &Schema,
    name: &str,
    rec: &NetworkRecord,
) -> Result<Created, ClusterError> {
    schema::check_network_name(name)?;
    schema::validate_network(rec).map_err(ClusterError::InvalidNetwork)?;
    let nkey = s.network_key(name).into_bytes();
    let vkey = s.vni_key(rec.vni).into_bytes();
    let vni_rec = VniRecord {
        network: name.to_string(),
    };
    for _ in 0..ATTEMPTS {
        let t = c.txn(
            &[Compare::absent(nkey.clone()), Compare::absent(vkey.clone())],
            &[
                TxnOp::put(nkey.clone(), schema::to_value(rec), 0),
                TxnOp::put(vkey.clone(), schema::to_value(&vni_rec), 0),
            ],
            &[TxnOp::get(nkey.clone()), TxnOp::get(vkey.clone())],
        )?;
        if t.succeeded {
            return Ok(Created::Created);
        }
        if let Some(kv) = first_kv(&t.responses, 0) {
            return match schema::parse_value(&Key::Network(name.into()), &kv.value) {
                Ok(Value::Network(existing)) if existing == *rec => Ok(Created::Exists),
                Ok(Value::Network(existing)) => Err(ClusterError::NetworkExists {
                    name: name.into(),
                    vni: existing.vni,
                }),
                _ => Err(ClusterError::NetworkExists {
                    name: name.into(),
                    vni: rec.vni,
                }),
            };
        }
        if let Some(kv) = first_kv(&t.responses, 1) {
            let network = match schema::parse_value(&Key::Vni(rec.vni), &kv.value) {
                Ok(Value::Vni(v)) => v.network,
                _ => "(unreadable record)".into(),
            };
            return Err(ClusterError::VniTaken {
                vni: rec.vni,
                network,
            });
        }
    }
    Err(ClusterError::Contention("the network record"))
}

/// Deletes cluster network `name` and its VNI claim. The caller checks that
/// no endpoint uses it (`ClusterView`); `Ok(false)`: there was none.
pub fn delete_network(c: &mut Client, s: &Schema, name: &str) -> Result<bool, ClusterError> {
    schema::check_network_name(name)?;
    let nkey = s.network_key(name).into_bytes();
    for _ in 0..ATTEMPTS {
        let (kv, _) = c.get(&nkey)?;
        let Some(kv) = kv else { return Ok(false) };
        let mut ops = vec![TxnOp::delete(nkey.clone())];
        let mut cmp = vec![Compare::mod_revision(nkey.clone(), kv.mod_revision)];
        if let Ok(Value::Network(rec)) = schema::parse_value(&Key::Network(name.into()), &kv.value)
        {
            let vkey = s.vni_key(rec.vni).into_bytes();
            // Only our own claim of the VNI goes with us.
            cmp.push(Compare::value(
                vkey.clone(),
                schema::to_value(&VniRecord {
                    network: name.to_string(),
                }),
            ));
            ops.push(TxnOp::delete(vkey));
        }
        let t = c.txn(&cmp, &ops, &[])?;
        if t.succeeded {
            return Ok(true);
        }
        if cmp.len() == 2 {
            // The VNI claim is missing or another's: delete the network only.
            let t = c.txn(&cmp[..1], &ops[..1], &[])?;
            if t.succeeded {
                return Ok(true);
            }
        }
    }
    Err(ClusterError::Contention("the network record"))
}
