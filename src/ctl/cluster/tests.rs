//! The daemon's side of the cluster without etcd: the agent's changes
//! applied to a daemon (socket-pair ports, VXLAN on a free port), what
//! users see of them, and the state file.

use std::net::{IpAddr, SocketAddr};

use crate::cluster::schema::{NetworkRecord, SubnetRecord};
use crate::cluster::{Change, LocalEndpoint};
use crate::ctl::daemon::Daemon;
use crate::ctl::proto::{
    ErrorKind, FdbAdd, FdbDel, FdbKind, FdbSelect, GatewayPort, IpamAllocate, NetworkCreate,
    NetworkScope, VtepLs,
};
use crate::ctl::testutil::{fd_port, vtep, vtep_rm, vx_daemon, vx_net};
use crate::wire::MacAddr;

fn record(vni: u32) -> NetworkRecord {
    NetworkRecord {
        vni,
        subnets: vec![SubnetRecord {
            subnet: "10.42.0.0/24".parse().unwrap(),
            gateway: Some("10.42.0.1".parse().unwrap()),
        }],
        mtu: None,
    }
}

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0x42, 0, 0, 0, n])
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn add(name: &str, vni: u32) -> Change {
    Change::AddNetwork {
        name: name.into(),
        spec: record(vni),
    }
}

/// A remote host's VTEP (on the daemon's VXLAN port) with one endpoint.
fn remote(d: &Daemon, host: u8, m: u8) -> (SocketAddr, Vec<Change>) {
    let vtep: SocketAddr = format!("198.18.0.{host}:{}", d.vxlan_config().port)
        .parse()
        .unwrap();
    let changes = vec![
        Change::AddVtep {
            network: "blue".into(),
            vtep,
        },
        Change::SetFdb {
            network: "blue".into(),
            mac: mac(m),
            vtep,
        },
        Change::SetNeigh {
            network: "blue".into(),
            ip: ip(&format!("10.42.0.{m}")),
            mac: mac(m),
        },
    ];
    (vtep, changes)
}

fn all_ok(d: &mut Daemon, changes: &[Change]) {
    for (c, r) in changes.iter().zip(d.cluster_apply_all(changes)) {
        r.unwrap_or_else(|e| panic!("{c:?}: {e}"));
    }
}

fn cluster_rows(d: &Daemon) -> Vec<(MacAddr, String)> {
    d.fdb_show(&FdbSelect::default())
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == FdbKind::Cluster)
        .map(|r| (r.mac, r.vtep.unwrap_or_default()))
        .collect()
}

#[test]
fn the_agents_changes_make_a_cluster_network_with_managed_vteps_and_entries() {
    let (mut d, _) = vx_daemon();
    let (v2, mut changes) = remote(&d, 2, 12);
    changes.insert(0, add("blue", 4242));
    all_ok(&mut d, &changes);
    let n = &d.network_ls()[0];
    assert_eq!(
        (
            n.scope,
            n.vni,
            n.gateway_port,
            n.subnet.unwrap().to_string()
        ),
        (
            NetworkScope::Cluster,
            Some(4242),
            GatewayPort::None,
            "10.42.0.0/24".into()
        )
    );
    assert_eq!(n.mtu, 1450, "the underlay's MTU less VXLAN's 50 bytes");
    let vt = d.vtep_ls(&VtepLs::default()).unwrap();
    assert_eq!(
        (vt.len(), vt[0].cluster, vt[0].addr.clone()),
        (1, true, v2.to_string())
    );
    assert_eq!(cluster_rows(&d), vec![(mac(12), v2.to_string())]);
    assert_eq!(
        d.neigh_bindings("blue").into_iter().collect::<Vec<_>>(),
        vec![(ip("10.42.0.12"), mac(12))]
    );
    // The cluster's entries are not the operator's to change.
    let e = d.vtep_rm(&vtep_rm("blue", "198.18.0.2")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Busy);
    assert!(
        e.message.contains("managed by the cluster"),
        "{}",
        e.message
    );
    let e = d
        .fdb_del(&FdbDel {
            network: "blue".into(),
            mac: mac(12),
        })
        .unwrap_err();
    assert!(
        e.message.contains("managed by the cluster"),
        "{}",
        e.message
    );
    let e = d
        .fdb_add(&FdbAdd {
            network: "blue".into(),
            mac: mac(12),
            port: None,
            vtep: Some("198.18.0.2".into()),
        })
        .unwrap_err();
    assert!(
        e.message.contains("managed by the cluster"),
        "{}",
        e.message
    );
    // Applying again (an answer the agent did not wait for) changes nothing.
    all_ok(&mut d, &changes);
    assert_eq!(cluster_rows(&d).len(), 1);
    assert_eq!(d.vtep_ls(&VtepLs::default()).unwrap().len(), 1);
    // Removals, as the agent orders them.
    all_ok(
        &mut d,
        &[
            Change::RemoveNeigh {
                network: "blue".into(),
                ip: ip("10.42.0.12"),
            },
            Change::RemoveFdb {
                network: "blue".into(),
                mac: mac(12),
            },
            Change::RemoveVtep {
                network: "blue".into(),
                vtep: v2,
            },
        ],
    );
    assert!(cluster_rows(&d).is_empty());
    assert!(d.vtep_ls(&VtepLs::default()).unwrap().is_empty());
    assert!(d.neigh_bindings("blue").is_empty());
    all_ok(
        &mut d,
        &[Change::RemoveNetwork {
            name: "blue".into(),
        }],
    );
    assert!(d.network_ls().is_empty());
    assert_eq!(d.cluster.applied, crate::cluster::State::default());
    d.shutdown();
}

#[test]
fn local_ports_are_the_published_endpoints_and_win_over_remote_claims() {
    let (mut d, _) = vx_daemon();
    let (_, mut changes) = remote(&d, 2, 12);
    changes.insert(0, add("blue", 4242));
    all_ok(&mut d, &changes);
    vx_net(&mut d, "plain", Some(7), &[]);
    let _p = fd_port(&mut d, "p", "blue");
    let _q = fd_port(&mut d, "q", "plain");
    for (name, m) in [("p", 11), ("q", 13)] {
        let port = d.ports.get_mut(name).unwrap();
        port.mac = Some(mac(m));
        port.ip = Some("10.42.0.12/24".parse().unwrap());
    }
    // Only ports of cluster networks are published.
    assert_eq!(
        d.cluster_local_endpoints(),
        vec![LocalEndpoint {
            network: "blue".into(),
            mac: mac(11),
            ips: vec![ip("10.42.0.12")],
        }]
    );
    // The address a remote host also claims answers with the local MAC.
    assert_eq!(d.neigh_bindings("blue")[&ip("10.42.0.12")], mac(11));
    // A remote claim of a local port's MAC is refused, naming both.
    let v2 = d.vtep_ls(&VtepLs::default()).unwrap()[0]
        .addr
        .parse()
        .unwrap();
    let r = d.cluster_apply_all(&[Change::SetFdb {
        network: "blue".into(),
        mac: mac(11),
        vtep: v2,
    }]);
    let e = r[0].clone().unwrap_err();
    assert!(
        e.contains("port p on this host") && e.contains("local port wins"),
        "{e}"
    );
    d.shutdown();
}

#[test]
fn a_local_network_of_the_same_vni_is_adopted_and_its_hand_written_vtep_taken_over() {
    let (mut d, port) = vx_daemon();
    vx_net(&mut d, "blue", Some(4242), &["198.18.0.2"]);
    d.vtep_add(&vtep("blue", "198.18.0.9")).unwrap();
    let (v2, mut changes) = remote(&d, 2, 12);
    changes.insert(0, add("blue", 4242));
    all_ok(&mut d, &changes);
    assert_eq!(d.network_ls()[0].scope, NetworkScope::Cluster);
    let vt = d.vtep_ls(&VtepLs::default()).unwrap();
    let by_addr = |a: &str| vt.iter().find(|v| v.addr == a).unwrap().cluster;
    assert!(by_addr(&v2.to_string()), "the cluster's now");
    assert!(
        !by_addr(&format!("198.18.0.9:{port}")),
        "a hand-written VTEP of a host outside the cluster stays the operator's"
    );
    d.vtep_rm(&vtep_rm("blue", "198.18.0.9")).unwrap();
    // Another VNI under the same name is a conflict the agent reports.
    vx_net(&mut d, "red", Some(7), &[]);
    let r = d.cluster_apply_all(&[add("red", 8)]);
    let e = r[0].clone().unwrap_err();
    assert!(
        e.contains("a local network red with VNI 7 exists here") && e.contains("rename or remove"),
        "{e}"
    );
    d.shutdown();
}

#[test]
fn a_cluster_network_removed_under_its_ports_stays_here_as_a_local_network() {
    let (mut d, _) = vx_daemon();
    let (_, mut changes) = remote(&d, 2, 12);
    changes.insert(0, add("blue", 4242));
    all_ok(&mut d, &changes);
    let _p = fd_port(&mut d, "p", "blue");
    all_ok(
        &mut d,
        &[Change::RemoveNetwork {
            name: "blue".into(),
        }],
    );
    let n = &d.network_ls()[0];
    assert_eq!(
        (n.scope, n.ports.clone()),
        (NetworkScope::Local, vec!["p".into()])
    );
    assert!(
        n.vteps.is_empty(),
        "the cluster's VTEPs went: {:?}",
        n.vteps
    );
    assert!(cluster_rows(&d).is_empty());
    d.shutdown();
}

#[test]
fn the_state_file_keeps_the_cluster_part_for_the_next_start() {
    let dir = std::env::temp_dir().join(format!(
        "vxswitch-cluster-unit-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let (mut d, port) = vx_daemon();
    d.open_state_dir(&dir).unwrap();
    let (v2, mut changes) = remote(&d, 2, 12);
    changes.insert(0, add("blue", 4242));
    all_ok(&mut d, &changes);
    let applied = d.cluster.applied.clone();
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(saved["networks"][0]["create"]["cluster"], true, "{saved}");
    assert_eq!(
        saved["networks"][0]["vteps"],
        serde_json::json!([]),
        "a cluster VTEP is not saved as a hand-written one: {saved}"
    );
    assert_eq!(saved["static_fdb"], serde_json::json!([]), "{saved}");
    d.shutdown();

    let mut d = crate::ctl::testutil::vx_daemon_on(port);
    d.set_log_events(false);
    let report = d.open_state_dir(&dir).unwrap();
    assert_eq!(report.networks, 1);
    // Networks and VTEPs are back (frames to remote MACs flood to the
    // VTEPs); remote entries come back with the agent's first sync.
    let want = crate::cluster::State {
        fdb: Default::default(),
        neigh: Default::default(),
        ..applied
    };
    assert_eq!(d.cluster.applied, want, "what the agent is told is applied");
    assert_eq!(d.network_ls()[0].scope, NetworkScope::Cluster);
    let vt = d.vtep_ls(&VtepLs::default()).unwrap();
    assert_eq!((vt[0].addr.clone(), vt[0].cluster), (v2.to_string(), true));
    assert!(cluster_rows(&d).is_empty());
    all_ok(&mut d, &changes[1..]);
    assert_eq!(cluster_rows(&d), vec![(mac(12), v2.to_string())]);
    d.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn requests_that_need_the_cluster_say_how_to_join_one() {
    let (mut d, _) = vx_daemon();
    let e = d
        .network_create(&NetworkCreate {
            name: "blue".into(),
            vni: Some(4242),
            cluster: true,
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(
        e.message.contains("runs with --cluster URL"),
        "{}",
        e.message
    );
    for (create, want) in [
        (
            NetworkCreate {
                name: "blue".into(),
                cluster: true,
                ..Default::default()
            },
            "needs a VNI (--vni N)",
        ),
        (
            NetworkCreate {
                name: "blue".into(),
                vni: Some(1),
                vteps: vec!["198.18.0.2".into()],
                cluster: true,
                ..Default::default()
            },
            "drop --vtep",
        ),
        (
            NetworkCreate {
                name: "blue".into(),
                vni: Some(1),
                subnet: Some("10.0.0.0/24".into()),
                gateway: Some("10.0.0.1".into()),
                gateway_port: Some(GatewayPort::Host),
                cluster: true,
                ..Default::default()
            },
            "a cluster network has none",
        ),
    ] {
        let e = d.network_create(&create).unwrap_err();
        assert!(e.message.contains(want), "{}", e.message);
    }
    let e = d.cluster_status().unwrap_err();
    assert!(
        e.message.contains("runs without a cluster"),
        "{}",
        e.message
    );
    let e = d
        .ipam_allocate(&IpamAllocate {
            network: "blue".into(),
            owner: "x".into(),
            ip: None,
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(
        e.message.contains("is not a cluster network"),
        "{}",
        e.message
    );
    assert!(d.network_ls().is_empty());
    d.shutdown();
}

#[test]
fn the_agents_changes_are_monitor_events_like_local_ones_and_a_resync_is_none() {
    let (mut d, _) = vx_daemon();
    d.set_watching(true);
    let (v2, mut changes) = remote(&d, 2, 12);
    changes.insert(0, add("blue", 4242));
    all_ok(&mut d, &changes);
    // The agent's resync: the same changes again, nothing new.
    all_ok(&mut d, &changes);
    all_ok(
        &mut d,
        &[
            Change::RemoveFdb {
                network: "blue".into(),
                mac: mac(12),
            },
            Change::RemoveVtep {
                network: "blue".into(),
                vtep: v2,
            },
            Change::RemoveNetwork {
                name: "blue".into(),
            },
        ],
    );
    let seen: Vec<String> = d
        .take_monitor_events()
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {} {} {}",
                e.kind,
                e.network.as_deref().unwrap_or("-"),
                e.vtep.as_deref().unwrap_or("-"),
                e.mac.map_or("-".into(), |m| m.to_string()),
                e.what.as_deref().unwrap_or("-"),
                e.cause.as_deref().unwrap_or("-"),
            )
        })
        .collect();
    let v2 = v2.to_string();
    assert_eq!(
        seen,
        vec![
            "network_created blue - - - cluster".to_string(),
            format!("vtep_added blue {v2} - - cluster"),
            format!("config blue {v2} 02:42:00:00:00:0c fdb.add cluster"),
            "config blue - 02:42:00:00:00:0c fdb.del cluster".to_string(),
            format!("vtep_removed blue {v2} - - cluster"),
            "network_removed blue - - - cluster".to_string(),
        ]
    );
    d.shutdown();
}
