//! From a parsed command to the protocol request it sends: one `From` (or
//! `TryFrom`) per command group, so each mapping is a pure function that
//! is unit-tested without a daemon. Commands that are not requests
//! (`daemon`, `demo`, `pktgen`, `docker-plugin`) come back unchanged from
//! `Request::try_from(Cmd)`.

use vxswitch::ctl::proto::{
    FdbAdd, FdbDel, FdbSelect, GatewayPort, NetworkCreate, NetworkRm, NoArgs, PortAdd, PortRm,
    PortSet, StatsArgs, VtepAdd, VtepLs, VtepRm,
};
use vxswitch::ctl::Request;

use super::args::{
    ClusterCmd, Cmd, DirectionArg, FdbCmd, FdbSelectArgs, GatewayPortArg, MirrorCmd, NetworkCmd,
    NetworkCreateArgs, PortAddArgs, PortCmd, VtepCmd,
};

impl TryFrom<Cmd> for Request {
    /// The command itself, when it runs locally instead of asking the daemon.
    type Error = Cmd;

    fn try_from(cmd: Cmd) -> Result<Request, Cmd> {
        Ok(match cmd {
            Cmd::Network(c) => c.into(),
            Cmd::Port(c) => c.into(),
            Cmd::Vtep(c) => c.into(),
            Cmd::Fdb(c) => c.into(),
            Cmd::Cluster(ClusterCmd::Status) => Request::ClusterStatus(NoArgs {}),
            Cmd::Stats { port, watch: None } => Request::Stats(StatsArgs { port }),
            Cmd::Ping => Request::Ping(NoArgs {}),
            Cmd::Version => Request::Version(NoArgs {}),
            local @ (Cmd::Daemon(_)
            | Cmd::Demo { .. }
            | Cmd::Pktgen(_)
            | Cmd::Monitor
            | Cmd::Capture(_)
            | Cmd::Stats { watch: Some(_), .. }
            | Cmd::DockerPlugin { .. }) => return Err(local),
        })
    }
}

impl From<NetworkCmd> for Request {
    fn from(c: NetworkCmd) -> Request {
        match c {
            NetworkCmd::Create(a) => Request::NetworkCreate(a.into()),
            NetworkCmd::Ls => Request::NetworkLs(NoArgs {}),
            NetworkCmd::Rm { name, force } => Request::NetworkRm(NetworkRm { name, force }),
        }
    }
}

impl From<NetworkCreateArgs> for NetworkCreate {
    fn from(a: NetworkCreateArgs) -> NetworkCreate {
        // A gateway someone answers at, as Docker's driver defaults to:
        // without --gateway-port, the host does (`none` opts out).
        let gateway_port = match (a.gateway_port, &a.gateway) {
            (Some(kind), _) => Some(kind.into()),
            // A cluster network's gateway is the containers' route only.
            // An uplink network's gateway is the LAN's router.
            (None, Some(_)) if !a.cluster && a.uplink.is_none() => Some(GatewayPort::Host),
            (None, Some(_)) => None,
            (None, None) => None,
        };
        NetworkCreate {
            name: a.name,
            subnet: a.subnet,
            gateway: a.gateway,
            mtu: a.mtu,
            vni: a.vni,
            learn_vteps: a.learn_vteps,
            vteps: a.vteps,
            gateway_port,
            gateway_ifname: a.gateway_ifname,
            cluster: a.cluster,
            fdb_max_entries: a
                .fdb_max_entries
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            port_security: a.no_port_security.then_some(false),
            neigh_suppress: a.neigh_suppress,
            uplink: a.uplink,
            vlan: a.vlan,
            storm_pps: a.storm_pps,
            backend: a.backend,
        }
    }
}

impl From<GatewayPortArg> for GatewayPort {
    fn from(a: GatewayPortArg) -> GatewayPort {
        match a {
            GatewayPortArg::Host => GatewayPort::Host,
            GatewayPortArg::Switch => GatewayPort::Switch,
            GatewayPortArg::None => GatewayPort::None,
        }
    }
}

impl From<PortCmd> for Request {
    fn from(c: PortCmd) -> Request {
        match c {
            PortCmd::Add(a) => Request::PortAdd(a.into()),
            PortCmd::Ls => Request::PortLs(NoArgs {}),
            PortCmd::Rm { name } => Request::PortRm(PortRm { name }),
            PortCmd::Mirror(MirrorCmd::Add {
                port,
                to,
                direction,
            }) => Request::MirrorAdd(vxswitch::ctl::proto::MirrorAdd {
                port,
                to,
                direction: Some(
                    match direction {
                        DirectionArg::In => "in",
                        DirectionArg::Out => "out",
                        DirectionArg::Both => "both",
                    }
                    .into(),
                ),
            }),
            PortCmd::Mirror(MirrorCmd::Rm { port }) => {
                Request::MirrorRm(vxswitch::ctl::proto::MirrorRm { port })
            }
            PortCmd::Mirror(MirrorCmd::Ls) => Request::MirrorLs(NoArgs {}),
            // --no-container is the absence of --container: clear the label.
            PortCmd::Set {
                name, container, ..
            } => Request::PortSet(PortSet { name, container }),
        }
    }
}

impl From<PortAddArgs> for PortAdd {
    fn from(a: PortAddArgs) -> PortAdd {
        PortAdd {
            name: a.name,
            network: a.network,
            netns: a.netns,
            pid: a.pid,
            ifname: a.ifname,
            mac: a.mac,
            ip: a.ip,
            mtu: a.mtu,
            existing: a.existing,
            container: a.container,
            // Absent: the daemon's default (offloads on unless --no-offload).
            offload: a.no_offload.then_some(false),
            // Absent: on.
            port_security: a.no_port_security.then_some(false),
            ip_guard: a.ip_guard,
            backend: a.backend,
            // Absent: on the fast path when the daemon has one.
            fastpath: a.no_fastpath.then_some(false),
        }
    }
}

impl From<VtepCmd> for Request {
    fn from(c: VtepCmd) -> Request {
        match c {
            VtepCmd::Add { network, addr } => Request::VtepAdd(VtepAdd { network, addr }),
            VtepCmd::Ls { network } => Request::VtepLs(VtepLs { network }),
            VtepCmd::Rm { network, addr } => Request::VtepRm(VtepRm { network, addr }),
        }
    }
}

impl From<FdbCmd> for Request {
    fn from(c: FdbCmd) -> Request {
        match c {
            FdbCmd::Show(a) => Request::FdbShow(a.into()),
            FdbCmd::Add {
                mac,
                network,
                port,
                vtep,
            } => Request::FdbAdd(FdbAdd {
                network,
                mac,
                port,
                vtep,
            }),
            FdbCmd::Del { mac, network } => Request::FdbDel(FdbDel { network, mac }),
            FdbCmd::Flush(a) => Request::FdbFlush(a.into()),
        }
    }
}

impl From<FdbSelectArgs> for FdbSelect {
    fn from(a: FdbSelectArgs) -> FdbSelect {
        FdbSelect {
            network: a.network,
            port: a.port,
            vtep: a.vtep,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::{json, Value};

    use super::super::args::Cli;
    use super::*;

    /// The request `vxswitch ARGS...` sends, as its wire JSON (`cmd` and
    /// `args`), or None for a command that runs locally.
    fn sent(args: &[&str]) -> Option<Value> {
        let cli = Cli::try_parse_from(std::iter::once("vxswitch").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?} does not parse: {e}"));
        Request::try_from(cli.cmd)
            .ok()
            .map(|r| serde_json::to_value(&r).expect("a request serializes"))
    }

    fn req(cmd: &str, args: Value) -> Option<Value> {
        Some(json!({ "cmd": cmd, "args": args }))
    }

    #[test]
    fn network_commands_map_every_option() {
        assert_eq!(
            sent(&["network", "create", "red"]),
            req("network.create", json!({ "name": "red" }))
        );
        assert_eq!(
            sent(&[
                "network",
                "create",
                "blue",
                "--subnet",
                "10.42.0.0/24",
                "--gateway",
                "10.42.0.1",
                "--mtu",
                "1400",
                "--vni",
                "4242",
                "--learn-vteps",
                "--vtep",
                "198.18.0.2",
                "--vtep",
                "[fd00::2]:4789",
                "--gateway-port",
                "switch",
                "--gateway-ifname",
                "gw0",
            ]),
            req(
                "network.create",
                json!({
                    "name": "blue", "subnet": "10.42.0.0/24", "gateway": "10.42.0.1",
                    "mtu": 1400, "vni": 4242, "learn_vteps": true,
                    "vteps": ["198.18.0.2", "[fd00::2]:4789"],
                    "gateway_port": "switch", "gateway_ifname": "gw0",
                })
            )
        );
        for (kind, wire) in [("host", "host"), ("switch", "switch"), ("none", "none")] {
            assert_eq!(
                sent(&["network", "create", "n", "--gateway-port", kind])
                    .map(|v| v["args"]["gateway_port"].clone()),
                Some(json!(wire))
            );
        }
        // A cluster network's gateway is the containers' route: no gateway port.
        assert_eq!(
            sent(&[
                "network",
                "create",
                "blue",
                "--cluster",
                "--vni",
                "4242",
                "--subnet",
                "10.42.0.0/24",
                "--gateway",
                "10.42.0.1",
            ]),
            req(
                "network.create",
                json!({
                    "name": "blue", "subnet": "10.42.0.0/24", "gateway": "10.42.0.1",
                    "vni": 4242, "cluster": true,
                })
            )
        );
        assert_eq!(
            sent(&["cluster", "status"]),
            req("cluster.status", json!({}))
        );
        assert_eq!(sent(&["network", "ls"]), req("network.ls", json!({})));
        assert_eq!(sent(&["network", "list"]), req("network.ls", json!({})));
        assert_eq!(
            sent(&["network", "rm", "red"]),
            req("network.rm", json!({ "name": "red" }))
        );
        assert_eq!(
            sent(&["network", "remove", "red", "-f"]),
            req("network.rm", json!({ "name": "red", "force": true }))
        );
    }

    #[test]
    fn a_gateway_gets_the_host_gateway_port_unless_told_otherwise() {
        let create = |extra: &[&str]| {
            let mut args = vec!["network", "create", "red", "--subnet", "10.77.0.0/24"];
            args.extend_from_slice(extra);
            sent(&args).expect("a request")["args"].clone()
        };
        // As Docker's driver does: someone answers at the gateway.
        assert_eq!(
            create(&["--gateway", "10.77.0.1"]),
            json!({
                "name": "red", "subnet": "10.77.0.0/24", "gateway": "10.77.0.1",
                "gateway_port": "host",
            })
        );
        assert_eq!(
            create(&["--gateway", "10.77.0.1", "--gateway-ifname", "gw-red"])["gateway_port"],
            json!("host")
        );
        // An explicit kind wins; `none` opts out.
        for kind in ["none", "switch", "host"] {
            assert_eq!(
                create(&["--gateway", "10.77.0.1", "--gateway-port", kind])["gateway_port"],
                json!(kind)
            );
        }
        // No gateway, no gateway port: nothing for the daemon to refuse.
        assert_eq!(
            create(&[]),
            json!({ "name": "red", "subnet": "10.77.0.0/24" })
        );
        assert_eq!(
            create(&["--gateway-port", "switch"])["gateway_port"],
            json!("switch"),
            "sent as given: the daemon explains what is missing"
        );
    }

    #[test]
    fn port_commands_map_every_option() {
        assert_eq!(
            sent(&[
                "port",
                "add",
                "c1",
                "--network",
                "red",
                "--netns",
                "/run/netns/c1",
                "--ifname",
                "eth1",
                "--mac",
                "02-00-00-00-00-AA",
                "--ip",
                "10.77.0.11/24",
                "--mtu",
                "1400",
                "--container",
                "web",
                "--no-offload",
            ]),
            req(
                "port.add",
                json!({
                    "name": "c1", "network": "red", "netns": "/run/netns/c1",
                    "ifname": "eth1", "mac": "02:00:00:00:00:aa", "ip": "10.77.0.11/24",
                    "mtu": 1400, "container": "web", "offload": false,
                })
            )
        );
        assert_eq!(
            sent(&["port", "add", "c2", "--network", "red", "--pid", "42"]),
            req(
                "port.add",
                json!({ "name": "c2", "network": "red", "pid": 42 })
            )
        );
        assert_eq!(
            sent(&["port", "add", "tap0", "--network", "lab", "--existing"]),
            req(
                "port.add",
                json!({ "name": "tap0", "network": "lab", "existing": true })
            )
        );
        assert_eq!(sent(&["port", "ls"]), req("port.ls", json!({})));
        assert_eq!(
            sent(&["port", "rm", "c1"]),
            req("port.rm", json!({ "name": "c1" }))
        );
        assert_eq!(
            sent(&["port", "set", "c1", "--container", "db"]),
            req("port.set", json!({ "name": "c1", "container": "db" }))
        );
        assert_eq!(
            sent(&["port", "set", "c1", "--no-container"]),
            req("port.set", json!({ "name": "c1", "container": null }))
        );
    }

    #[test]
    fn vtep_fdb_and_other_commands_map_to_their_requests() {
        assert_eq!(
            sent(&["vtep", "add", "blue", "198.18.0.2:8472"]),
            req(
                "vtep.add",
                json!({ "network": "blue", "addr": "198.18.0.2:8472" })
            )
        );
        assert_eq!(sent(&["vtep", "ls"]), req("vtep.ls", json!({})));
        assert_eq!(
            sent(&["vtep", "ls", "blue"]),
            req("vtep.ls", json!({ "network": "blue" }))
        );
        assert_eq!(
            sent(&["vtep", "rm", "blue", "fd00::2"]),
            req("vtep.rm", json!({ "network": "blue", "addr": "fd00::2" }))
        );
        assert_eq!(sent(&["fdb", "show"]), req("fdb.show", json!({})));
        assert_eq!(
            sent(&["fdb", "show", "--network", "red", "--port", "c1"]),
            req("fdb.show", json!({ "network": "red", "port": "c1" }))
        );
        assert_eq!(
            sent(&["fdb", "flush", "--vtep", "198.18.0.2"]),
            req("fdb.flush", json!({ "vtep": "198.18.0.2" }))
        );
        assert_eq!(
            sent(&[
                "fdb",
                "add",
                "02:00:00:00:00:99",
                "--network",
                "red",
                "--port",
                "c1",
            ]),
            req(
                "fdb.add",
                json!({ "network": "red", "mac": "02:00:00:00:00:99", "port": "c1" })
            )
        );
        assert_eq!(
            sent(&[
                "fdb",
                "add",
                "02:00:00:00:00:99",
                "--network",
                "blue",
                "--vtep",
                "198.18.0.2",
            ]),
            req(
                "fdb.add",
                json!({ "network": "blue", "mac": "02:00:00:00:00:99", "vtep": "198.18.0.2" })
            )
        );
        assert_eq!(
            sent(&["fdb", "del", "02:00:00:00:00:99", "--network", "red"]),
            req(
                "fdb.del",
                json!({ "network": "red", "mac": "02:00:00:00:00:99" })
            )
        );
        assert_eq!(sent(&["stats"]), req("stats", json!({})));
        assert_eq!(
            sent(&["stats", "c1"]),
            req("stats", json!({ "port": "c1" }))
        );
        assert_eq!(sent(&["ping"]), req("ping", json!({})));
        assert_eq!(sent(&["version"]), req("version", json!({})));
    }

    #[test]
    fn local_commands_are_not_requests() {
        for args in [
            &["daemon"][..],
            &["demo"],
            &["docker-plugin"],
            &["pktgen", "rx", "--dev", "eth0"],
        ] {
            assert_eq!(sent(args), None, "{args:?}");
        }
    }
}
