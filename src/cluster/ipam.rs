//! Cluster-wide address allocation: one etcd key per allocated address
//! (`ipam/NETWORK/IP`), created only if absent, so two hosts can never hold
//! the same address — whoever loses the race re-reads and takes the next.
//!
//! - `allocate`: the lowest free address of a subnet, skipping the network
//!   and broadcast addresses (IPv4 below /31), the subnet-router anycast and
//!   last address (IPv6 below /127) and the gateway; or a requested address
//!   if it is free. Asking again with the same owner returns the address it
//!   already holds (Docker and CNI retry).
//! - `release`: idempotent; with an owner given, refuses to free another's
//!   address.
//! - `collect_garbage`: addresses whose host is gone (no `hosts/HOST` key: its
//!   lease expired) come back once that has lasted a grace period, measured
//!   on the collector's monotonic clock — no wall clocks are compared. The
//!   delete itself re-checks in the transaction that the host is still
//!   absent, so a host that comes back in the meantime keeps its addresses.
//!
//! Allocation records carry no lease: a daemon restart must not free the
//! addresses of containers that keep running.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::etcd::{Client, Compare, KeyValue, TxnOp};
use super::schema::{self, HostId, IpamRecord, Key, Schema, SubnetRecord, Value};
use super::ClusterError;

/// Attempts before an allocation that keeps losing races gives up.
const ATTEMPTS: usize = 32;

/// The allocations of one network, parsed (invalid records are skipped).
fn allocations(
    c: &mut Client,
    s: &Schema,
    network: &str,
) -> Result<Vec<(IpAddr, IpamRecord, KeyValue)>, ClusterError> {
    let (kvs, _) = c.list_prefix(s.ipam_network_prefix(network).as_bytes())?;
    Ok(kvs
        .into_iter()
        .filter_map(|kv| {
            let key = s.parse_key(&kv.key).ok()?;
            let Key::Ipam { ip, .. } = key else {
                return None;
            };
            match schema::parse_value(&key, &kv.value) {
                Ok(Value::Ipam(r)) => Some((ip, r, kv)),
                _ => None,
            }
        })
        .collect())
}

/// The first and last assignable host of `net` (None: no usable address).
fn host_range(net: &IpNet) -> Option<(u128, u128)> {
    let (base, bits, len) = match net {
        IpNet::V4(n) => (
            u128::from(u32::from(n.network())),
            32u32,
            u32::from(n.prefix_len()),
        ),
        IpNet::V6(n) => (u128::from(n.network()), 128, u32::from(n.prefix_len())),
    };
    let host_bits = bits - len;
    let last = if host_bits >= 128 {
        u128::MAX
    } else {
        base | ((1u128 << host_bits) - 1)
    };
    if host_bits <= 1 {
        Some((base, last)) // /31, /32, /127, /128: every address is a host
    } else {
        Some((base + 1, last - 1))
    }
}

fn to_ip(net: &IpNet, v: u128) -> IpAddr {
    match net {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(v).unwrap_or(0))),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Whether `ip` may be handed out from `subnet`.
pub fn assignable(subnet: &SubnetRecord, ip: IpAddr) -> bool {
    if !subnet.subnet.contains(&ip) || Some(ip) == subnet.gateway {
        return false;
    }
    host_range(&subnet.subnet).is_some_and(|(lo, hi)| (lo..=hi).contains(&to_u128(ip)))
}

/// The lowest assignable address of `subnet` not in `used`. Walks at most
/// `used.len() + 2` candidates.
pub fn lowest_free(subnet: &SubnetRecord, used: &BTreeSet<IpAddr>) -> Option<IpAddr> {
    let (lo, hi) = host_range(&subnet.subnet)?;
    let mut v = lo;
    loop {
        let ip = to_ip(&subnet.subnet, v);
        if Some(ip) != subnet.gateway && !used.contains(&ip) {
            return Some(ip);
        }
        if v >= hi {
            return None;
        }
        v += 1;
    }
}

/// Allocates an address of `subnet` in `network` for `owner` on `host`:
/// `preferred` if given (and free), else the lowest free one. An address
/// `owner` already holds in that subnet is returned again.
pub fn allocate(
    c: &mut Client,
    s: &Schema,
    network: &str,
    subnet: &SubnetRecord,
    owner: &str,
    host: &HostId,
    preferred: Option<IpAddr>,
) -> Result<IpAddr, ClusterError> {
    let rec = IpamRecord {
        owner: owner.to_string(),
        host: host.clone(),
    };
    // Validate the record before any write.
    let probe_key = Key::Ipam {
        network: network.to_string(),
        ip: subnet.subnet.network(),
    };
    schema::check_network_name(network)?;
    schema::parse_value(&probe_key, &schema::to_value(&rec))?;
    if let Some(p) = preferred {
        if !assignable(subnet, p) {
            return Err(ClusterError::AddressOutOfRange {
                network: network.into(),
                ip: p,
            });
        }
    }
    for _ in 0..ATTEMPTS {
        let current = allocations(c, s, network)?;
        if let Some((ip, _, _)) = current.iter().find(|(ip, r, _)| {
            r.owner == owner && subnet.subnet.contains(ip) && preferred.is_none_or(|p| p == *ip)
        }) {
            return Ok(*ip);
        }
        let used: BTreeSet<IpAddr> = current.iter().map(|(ip, _, _)| *ip).collect();
        let ip = match preferred {
            Some(p) if used.contains(&p) => {
                return Err(ClusterError::AddressInUse {
                    network: network.into(),
                    ip: p,
                })
            }
            Some(p) => p,
            None => lowest_free(subnet, &used).ok_or_else(|| ClusterError::AddressesExhausted {
                network: network.into(),
                subnet: subnet.subnet.to_string(),
            })?,
        };
        let key = s.ipam_key(network, ip).into_bytes();
        let t = c.txn(
            &[Compare::absent(key.clone())],
            &[TxnOp::put(key, schema::to_value(&rec), 0)],
            &[],
        )?;
        if t.succeeded {
            return Ok(ip);
        }
        // Lost a race for `ip`: read again.
    }
    Err(ClusterError::Contention("address allocation"))
}

/// Frees `ip` in `network`. `Ok(false)`: it was not allocated. With `owner`,
/// an address held by someone else is refused.
pub fn release(
    c: &mut Client,
    s: &Schema,
    network: &str,
    ip: IpAddr,
    owner: Option<&str>,
) -> Result<bool, ClusterError> {
    release_if(c, s, network, ip, |r| match owner {
        Some(want) if r.owner != want => Err(ClusterError::NotOwner {
            network: network.into(),
            ip,
            owner: r.owner.clone(),
            requester: want.into(),
        }),
        _ => Ok(()),
    })
}

/// Frees `ip` in `network` if host `host` allocated it (for callers that
/// know the address but not who asked for it, as Docker's ReleaseAddress);
/// `Ok(false)`: it was not allocated. Another host's address is refused.
pub fn release_for_host(
    c: &mut Client,
    s: &Schema,
    network: &str,
    ip: IpAddr,
    host: &HostId,
) -> Result<bool, ClusterError> {
    release_if(c, s, network, ip, |r| {
        if r.host == *host {
            Ok(())
        } else {
            Err(ClusterError::NotOwner {
                network: network.into(),
                ip,
                owner: format!("{} on host {}", r.owner, r.host),
                requester: format!("host {host}"),
            })
        }
    })
}

fn release_if(
    c: &mut Client,
    s: &Schema,
    network: &str,
    ip: IpAddr,
    check: impl Fn(&IpamRecord) -> Result<(), ClusterError>,
) -> Result<bool, ClusterError> {
    schema::check_network_name(network)?;
    let key = s.ipam_key(network, ip).into_bytes();
    for _ in 0..ATTEMPTS {
        let (kv, _) = c.get(&key)?;
        let Some(kv) = kv else { return Ok(false) };
        let k = Key::Ipam {
            network: network.into(),
            ip,
        };
        if let Ok(Value::Ipam(r)) = schema::parse_value(&k, &kv.value) {
            check(&r)?;
        }
        let t = c.txn(
            &[Compare::mod_revision(key.clone(), kv.mod_revision)],
            &[TxnOp::delete(key.clone())],
            &[],
        )?;
        if t.succeeded {
            return Ok(true);
        }
    }
    Err(ClusterError::Contention("address release"))
}

/// Frees every address `owner` holds in `network`; returns how many.
pub fn release_owner(
    c: &mut Client,
    s: &Schema,
    network: &str,
    owner: &str,
) -> Result<usize, ClusterError> {
    release_owner_ips(c, s, network, owner).map(|ips| ips.len())
}

/// Frees every address `owner` holds in `network`; returns them.
pub fn release_owner_ips(
    c: &mut Client,
    s: &Schema,
    network: &str,
    owner: &str,
) -> Result<Vec<IpAddr>, ClusterError> {
    schema::check_network_name(network)?;
    let mut freed = Vec::new();
    for (ip, r, _) in allocations(c, s, network)? {
        if r.owner == owner && release(c, s, network, ip, Some(owner))? {
            freed.push(ip);
        }
    }
    Ok(freed)
}

/// Hosts seen without a registration, and since when (monotonic).
#[derive(Clone, Debug, Default)]
pub struct DeadHosts {
    since: BTreeMap<HostId, Instant>,
}

impl DeadHosts {
    pub fn tracked(&self) -> usize {
        self.since.len()
    }
}

/// Frees addresses of hosts that have been absent from `live` (and from
/// etcd, checked in the delete's transaction) for `grace`; returns how many.
pub fn collect_garbage(
    c: &mut Client,
    s: &Schema,
    live: &BTreeSet<HostId>,
    dead: &mut DeadHosts,
    now: Instant,
    grace: Duration,
) -> Result<usize, ClusterError> {
    let (kvs, _) = c.list_prefix(s.ipam_prefix().as_bytes())?;
    let mut still_dead = BTreeSet::new();
    let mut freed = 0;
    for kv in kvs {
        let Ok(key) = s.parse_key(&kv.key) else {
            continue;
        };
        let Ok(Value::Ipam(r)) = schema::parse_value(&key, &kv.value) else {
            continue;
        };
        if live.contains(&r.host) {
            continue;
        }
        let since = *dead.since.entry(r.host.clone()).or_insert(now);
        still_dead.insert(r.host.clone());
        if now.saturating_duration_since(since) < grace {
            continue;
        }
        let t = c.txn(
            &[
                Compare::absent(s.host_key(&r.host).into_bytes()),
                Compare::mod_revision(kv.key.clone(), kv.mod_revision),
            ],
            &[TxnOp::delete(kv.key.clone())],
            &[],
        )?;
        if t.succeeded {
            freed += 1;
        }
    }
    dead.since.retain(|h, _| still_dead.contains(h));
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(s: &str, gw: Option<&str>) -> SubnetRecord {
        SubnetRecord {
            subnet: s.parse().unwrap(),
            gateway: gw.map(|g| g.parse().unwrap()),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lowest_free_skips_reserved() {
        let s = sub("10.0.0.0/24", Some("10.0.0.1"));
        let mut used = BTreeSet::new();
        assert_eq!(lowest_free(&s, &used), Some(ip("10.0.0.2")));
        used.insert(ip("10.0.0.2"));
        used.insert(ip("10.0.0.4"));
        assert_eq!(lowest_free(&s, &used), Some(ip("10.0.0.3")));
        let all: BTreeSet<IpAddr> = (2..=254).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        assert_eq!(lowest_free(&s, &all), None, "never .255 (broadcast) or .0");
        assert!(!assignable(&s, ip("10.0.0.255")));
        assert!(!assignable(&s, ip("10.0.0.0")));
        assert!(!assignable(&s, ip("10.0.0.1")));
        assert!(!assignable(&s, ip("10.0.1.1")));
        assert!(assignable(&s, ip("10.0.0.254")));
    }

    #[test]
    fn small_and_v6_subnets() {
        let s = sub("10.0.0.0/31", None);
        assert_eq!(lowest_free(&s, &BTreeSet::new()), Some(ip("10.0.0.0")));
        let s = sub("10.0.0.7/32", None);
        assert_eq!(lowest_free(&s, &BTreeSet::new()), Some(ip("10.0.0.7")));
        let s = sub("10.0.0.0/30", Some("10.0.0.1"));
        assert_eq!(lowest_free(&s, &BTreeSet::new()), Some(ip("10.0.0.2")));
        assert_eq!(lowest_free(&s, &[ip("10.0.0.2")].into()), None);
        let s = sub("fd00::/64", Some("fd00::1"));
        assert_eq!(lowest_free(&s, &BTreeSet::new()), Some(ip("fd00::2")));
        assert!(!assignable(&s, ip("fd00::ffff:ffff:ffff:ffff")));
        let s = sub("::/0", None);
        assert_eq!(lowest_free(&s, &BTreeSet::new()), Some(ip("::1")));
    }
}
