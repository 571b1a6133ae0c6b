use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::cluster::schema::{to_value, SubnetRecord};

fn schema() -> Schema {
    Schema::default()
}

fn host(id: &str) -> HostId {
    HostId::new(id).unwrap()
}

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, n])
}

fn kv(key: String, value: Vec<u8>, rev: i64, lease: i64) -> KeyValue {
    KeyValue {
        key: key.into_bytes(),
        value,
        create_revision: rev,
        mod_revision: rev,
        version: 1,
        lease,
    }
}

fn host_rec(last: u8) -> HostRecord {
    HostRecord {
        vtep: IpAddr::from([198, 18, 0, last]),
        vxlan_port: 4789,
        boot_id: format!("boot-{last}"),
        version: "test".into(),
    }
}

fn net_rec(vni: u32) -> NetworkRecord {
    NetworkRecord {
        vni,
        subnets: vec![SubnetRecord {
            subnet: "10.42.0.0/24".parse().unwrap(),
            gateway: Some("10.42.0.1".parse().unwrap()),
        }],
        mtu: None,
    }
}

fn ep_rec(ip: u8) -> EndpointRecord {
    EndpointRecord {
        ips: vec![IpAddr::from([10, 42, 0, ip])],
    }
}

fn vtep(last: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::from([198, 18, 0, last]), 4789)
}

/// h1 (us), h2, h3 registered; h4 has an endpoint but no host record.
fn three_hosts() -> ClusterView {
    let s = schema();
    let mut kvs = vec![kv(s.network_key("blue"), to_value(&net_rec(42)), 1, 0)];
    for i in 1..=3u8 {
        kvs.push(kv(
            s.host_key(&host(&format!("h{i}"))),
            to_value(&host_rec(i)),
            2,
            7,
        ));
    }
    for i in 1..=4u8 {
        kvs.push(kv(
            s.endpoint_key(&host(&format!("h{i}")), "blue", mac(i)),
            to_value(&ep_rec(10 + i)),
            3,
            7,
        ));
    }
    // an endpoint in a network that does not exist
    kvs.push(kv(
        s.endpoint_key(&host("h2"), "nonet", mac(9)),
        to_value(&ep_rec(9)),
        3,
        7,
    ));
    // garbage is counted, not fatal
    kvs.push(kv(format!("{}bogus", s.prefix()), b"x".to_vec(), 4, 0));
    kvs.push(kv(s.host_key(&host("h5")), b"{\"vtep\":1}".to_vec(), 4, 0));
    ClusterView::from_list(&s, &kvs, 4)
}

#[test]
fn desired_state_of_a_three_host_network() {
    let v = three_hosts();
    assert_eq!(v.refused.count, 2);
    let d = v.desired(&host("h1"));
    assert_eq!(d.networks.keys().collect::<Vec<_>>(), ["blue"]);
    let vteps: Vec<_> = d.vteps.iter().cloned().collect();
    assert_eq!(
        vteps,
        [("blue".to_string(), vtep(2)), ("blue".to_string(), vtep(3))]
    );
    assert_eq!(d.fdb.len(), 2);
    assert_eq!(d.fdb[&("blue".to_string(), mac(2))], vtep(2));
    assert_eq!(d.fdb[&("blue".to_string(), mac(3))], vtep(3));
    assert!(
        !d.fdb.contains_key(&("blue".to_string(), mac(1))),
        "our own MAC is local"
    );
    assert_eq!(
        d.neigh[&("blue".to_string(), IpAddr::from([10, 42, 0, 12]))],
        mac(2)
    );
    assert_eq!(d.neigh.len(), 2);
}

#[test]
fn conflicts_newest_wins_local_always() {
    let s = schema();
    let mut v = three_hosts();
    // h3 claims h2's MAC, later: it wins.
    v.apply(
        &s,
        &WatchEvent::Put(kv(
            s.endpoint_key(&host("h3"), "blue", mac(2)),
            to_value(&ep_rec(12)),
            10,
            7,
        )),
    );
    let d = v.desired(&host("h1"));
    assert_eq!(d.fdb[&("blue".to_string(), mac(2))], vtep(3));
    assert_eq!(
        d.neigh[&("blue".to_string(), IpAddr::from([10, 42, 0, 12]))],
        mac(2)
    );
    // h2 claims our MAC: ours stays local.
    v.apply(
        &s,
        &WatchEvent::Put(kv(
            s.endpoint_key(&host("h2"), "blue", mac(1)),
            to_value(&ep_rec(11)),
            11,
            7,
        )),
    );
    let d = v.desired(&host("h1"));
    assert!(!d.fdb.contains_key(&("blue".to_string(), mac(1))));
    assert!(!d
        .neigh
        .contains_key(&("blue".to_string(), IpAddr::from([10, 42, 0, 11]))));
    // A host whose record goes (lease expired) takes its endpoints along.
    v.apply(
        &s,
        &WatchEvent::Delete {
            key: s.host_key(&host("h3")).into_bytes(),
            mod_revision: 12,
        },
    );
    let d = v.desired(&host("h1"));
    assert!(!d.vteps.contains(&("blue".to_string(), vtep(3))));
    assert_eq!(d.fdb[&("blue".to_string(), mac(2))], vtep(2));
    assert_eq!(v.revision, 12);
}

#[test]
fn diff_orders_removals_first_and_replaces_changed_networks() {
    let v = three_hosts();
    let old = v.desired(&host("h1"));
    let mut new = old.clone();
    new.networks.insert("blue".into(), net_rec(43));
    let changes = diff(&old, &new);
    let first_add = changes
        .iter()
        .position(|c| matches!(c, Change::AddNetwork { .. }))
        .unwrap();
    assert!(changes[..first_add]
        .iter()
        .all(|c| matches!(c, Change::RemoveNetwork { .. })));
    assert_eq!(first_add, 1, "{changes:?}");
    let mut applied = old.clone();
    for c in &changes {
        applied.apply(c);
    }
    assert_eq!(applied, new);

    // From nothing: networks, then VTEPs, then FDB, then bindings.
    let changes = diff(&State::default(), &old);
    let rank = |c: &Change| match c {
        Change::AddNetwork { .. } => 0,
        Change::AddVtep { .. } => 1,
        Change::SetFdb { .. } => 2,
        Change::SetNeigh { .. } => 3,
        _ => 9,
    };
    assert!(
        changes.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "{changes:?}"
    );
    assert!(diff(&old, &old).is_empty());
}

// ---- properties ----

const NETS: [&str; 3] = ["a", "b", "c"];

fn arb_state() -> impl Strategy<Value = State> {
    let nets = proptest::collection::btree_map(0usize..3, 1u32..3, 0..3);
    let vteps = proptest::collection::btree_set((0usize..3, 1u8..4), 0..5);
    let fdb = proptest::collection::btree_map((0usize..3, 1u8..5), 1u8..4, 0..6);
    let neigh = proptest::collection::btree_map((0usize..3, 1u8..5), 1u8..5, 0..6);
    (nets, vteps, fdb, neigh).prop_map(|(nets, vteps, fdb, neigh)| {
        let networks: BTreeMap<String, NetworkRecord> = nets
            .into_iter()
            .map(|(n, vni)| (NETS[n].to_string(), net_rec(vni)))
            .collect();
        let has = |n: usize| networks.contains_key(NETS[n]);
        State {
            vteps: vteps
                .into_iter()
                .filter(|(n, _)| has(*n))
                .map(|(n, v)| (NETS[n].to_string(), vtep(v)))
                .collect(),
            fdb: fdb
                .into_iter()
                .filter(|((n, _), _)| has(*n))
                .map(|((n, m), v)| ((NETS[n].to_string(), mac(m)), vtep(v)))
                .collect(),
            neigh: neigh
                .into_iter()
                .filter(|((n, _), _)| has(*n))
                .map(|((n, ip), m)| ((NETS[n].to_string(), IpAddr::from([10, 0, 0, ip])), mac(m)))
                .collect(),
            networks,
        }
    })
}

proptest! {
    #[test]
    fn applying_the_diff_converges(applied in arb_state(), desired in arb_state()) {
        let changes = diff(&applied, &desired);
        let mut st = applied.clone();
        for c in &changes {
            // nothing ever points into a network that is not there
            if !matches!(c, Change::AddNetwork { .. } | Change::RemoveNetwork { .. }) {
                prop_assert!(st.networks.contains_key(c.network()), "{:?} before its network", c);
            }
            st.apply(c);
        }
        prop_assert_eq!(&st, &desired);
        prop_assert!(diff(&st, &desired).is_empty());
    }

    #[test]
    fn a_scoped_diff_is_the_full_diff_of_its_networks(applied in arb_state(), desired in arb_state(), pick in proptest::collection::btree_set(0usize..3, 0..3)) {
        let nets: std::collections::BTreeSet<String> = pick.into_iter().map(|n| NETS[n].to_string()).collect();
        let scoped = diff(&applied.restricted(&nets), &desired.restricted(&nets));
        let full: Vec<Change> = diff(&applied, &desired).into_iter().filter(|c| nets.contains(c.network())).collect();
        prop_assert_eq!(scoped, full);
    }

    #[test]
    fn a_failed_change_comes_back(applied in arb_state(), desired in arb_state(), skip in 0usize..20) {
        let changes = diff(&applied, &desired);
        let mut st = applied.clone();
        for (i, c) in changes.iter().enumerate() {
            if i != skip {
                st.apply(c);
            }
        }
        for c in diff(&st, &desired) {
            st.apply(&c);
        }
        prop_assert_eq!(st, desired);
    }

    #[test]
    fn list_then_watch_equals_a_full_list(ops in proptest::collection::vec((0usize..KEYS, 0usize..4, proptest::bool::ANY), 0..40)) {
        let s = schema();
        let mut store: BTreeMap<String, KeyValue> = BTreeMap::new();
        let mut rev = 1;
        let mut history: Vec<WatchEvent> = Vec::new();
        let mut snapshots = vec![(rev, Vec::new())];
        for (k, v, delete) in ops {
            let key = key_of(&s, k);
            if delete {
                if store.remove(&key).is_none() {
                    continue; // etcd makes no revision for a no-op delete
                }
                rev += 1;
                history.push(WatchEvent::Delete { key: key.into_bytes(), mod_revision: rev });
            } else {
                rev += 1;
                let create = store.get(&key).map_or(rev, |old| old.create_revision);
                let e = KeyValue { key: key.clone().into_bytes(), value: value_of(k, v), create_revision: create, mod_revision: rev, version: 1, lease: (v % 2) as i64 };
                store.insert(key, e.clone());
                history.push(WatchEvent::Put(e));
            }
            snapshots.push((rev, store.values().cloned().collect()));
        }
        let full = ClusterView::from_list(&s, snapshots.last().map(|(_, kvs)| kvs.as_slice()).unwrap_or(&[]), rev);
        for (at, kvs) in &snapshots {
            let mut v = ClusterView::from_list(&s, kvs, *at);
            for ev in history.iter().filter(|e| e.mod_revision() > *at) {
                v.apply(&s, ev);
            }
            prop_assert_eq!(&v, &full);
            prop_assert_eq!(v.desired(&host("h1")), full.desired(&host("h1")));
        }
    }
}

const KEYS: usize = 9;

fn key_of(s: &Schema, k: usize) -> String {
    match k {
        0 => s.host_key(&host("h1")),
        1 => s.host_key(&host("h2")),
        2 => s.network_key("blue"),
        3 => s.network_key("red"),
        4 => s.endpoint_key(&host("h1"), "blue", mac(1)),
        5 => s.endpoint_key(&host("h2"), "blue", mac(2)),
        6 => s.endpoint_key(&host("h2"), "red", mac(1)),
        7 => s.vni_key(42),
        _ => format!("{}junk/{k}", s.prefix()),
    }
}

/// Value 3 is always invalid; the others valid and distinct.
fn value_of(k: usize, v: usize) -> Vec<u8> {
    if v == 3 {
        return b"{\"nope\":true}".to_vec();
    }
    let v8 = u8::try_from(v).unwrap_or(0) + 1;
    match k {
        0 | 1 => to_value(&host_rec(v8)),
        2 | 3 => to_value(&net_rec(u32::from(v8))),
        4..=6 => to_value(&ep_rec(v8)),
        _ => b"{\"network\":\"blue\"}".to_vec(),
    }
}

#[test]
#[ignore]
fn timing_desired_and_diff() {
    let s = schema();
    let mut kvs = Vec::new();
    for n in 0..10 {
        kvs.push(kv(
            s.network_key(&format!("n{n}")),
            to_value(&net_rec(n + 1)),
            1,
            0,
        ));
    }
    for h in 0..500u32 {
        let id = host(&format!("h{h}"));
        let hr = HostRecord {
            vtep: IpAddr::from([10, 0, (h / 250) as u8, (h % 250) as u8 + 1]),
            ..host_rec(1)
        };
        kvs.push(kv(s.host_key(&id), to_value(&hr), 2, 7));
        for e in 0..40u32 {
            let m = MacAddr([2, 0, (h >> 8) as u8, h as u8, e as u8, 1]);
            kvs.push(kv(
                s.endpoint_key(&id, &format!("n{}", (h + e) % 10), m),
                to_value(&ep_rec(e as u8 + 1)),
                3,
                7,
            ));
        }
    }
    let t = std::time::Instant::now();
    let v = ClusterView::from_list(&s, &kvs, 4);
    eprintln!("from_list {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let d = v.desired(&host("me"));
    eprintln!("desired {:?} ({} fdb)", t.elapsed(), d.fdb.len());
    let t = std::time::Instant::now();
    let c = diff(&d, &d);
    eprintln!("diff {:?} ({})", t.elapsed(), c.len());
}
