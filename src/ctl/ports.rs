//! Ports: `port.add`, `port.ls`, `port.rm`, `port.set`, and ports that go
//! away on their own (their fd died, or their container's namespace did).
//!
//! `port.add` runs in three steps, so that each can be read and tested on
//! its own:
//! 1. [`PortPlan`]: the request checked on its own and against the
//!    daemon's state — names, namespace, address, MTU, clashes with other
//!    ports — into what to create; pure, nothing on the system is touched.
//! 2. [`PortPlan::open_tap`]: the TAP created in the container's namespace
//!    (or the existing one attached) by [`crate::ports`]; the only step with
//!    system calls.
//! 3. [`Daemon::attach_tap`]: the fd handed to the dataplane and the port
//!    recorded; a persistent TAP's flag is held by a [`PersistGuard`] in
//!    the record, so whatever removes the record deletes the TAP (a daemon
//!    stopping keeps it: see `daemon.rs`).

use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use ipnet::IpNet;

use super::daemon::Daemon;
use super::fastpath::PortSockets;
use super::proto::{
    strip_os_error, Backend, CtlError, ErrorKind, PortAdd, PortInfo, PortKind, PortRemoved, PortRm,
    PortSet,
};
use super::validate::{
    check_ifname, check_label, check_mtu, check_name, check_unicast_mac, engine_error,
    fd_limit_advice, parse_port_ip, port_error, with_fd_advice,
};
use crate::fdb::{Dest, NetId, PortId};
use crate::ports::search::{self, NsIdentity, Sandbox};
use crate::ports::{self, Netns, PersistGuard, Tap, TapSpec};
use crate::switch::{GoneCause, PortAttach, PortStats, SourcePolicy};
use crate::wire::MacAddr;

/// A port as the daemon keeps it.
#[derive(Debug)]
pub(super) struct Port {
    pub(super) id: PortId,
    pub(super) network: String,
    pub(super) net: NetId,
    pub(super) kind: PortKind,
    pub(super) netns: Netns,
    pub(super) ifname: Option<String>,
    pub(super) mac: Option<MacAddr>,
    pub(super) ip: Option<IpNet>,
    pub(super) mtu: u32,
    pub(super) container: Option<String>,
    pub(super) offload: bool,
    /// Its network's gateway port: goes with the network, not by `port.rm`.
    pub(super) gateway: bool,
    pub(super) stats: Arc<PortStats>,
    /// Identity of the sandbox's namespace file when the port was created
    /// in it; see [`Daemon::reap_orphans`].
    pub(super) sandbox: Option<NsIdentity>,
    /// `port.add`'s `offload` as given (`None`: the daemon's setting).
    pub(super) offload_choice: Option<bool>,
    /// A persistent TAP's flag, held through an fd of its first queue:
    /// dropping the record (`port rm`, the port going away) clears it, so
    /// the TAP is deleted with its last fd; a daemon stop keeps it. `None`
    /// for every other port.
    pub(super) persist: Option<PersistGuard>,
    /// Port security and the IP guard, as `port.add` chose them.
    pub(super) security: Security,
    /// What the dataplane checks of the port's frames.
    pub(super) policy: SourcePolicy,
    /// The container's interface: a TAP or a veth.
    pub(super) backend: Backend,
    /// A veth port's host end (its pair is deleted by `persist`).
    pub(super) host: Option<VethHost>,
}

/// The host end of a veth port, in the daemon's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct VethHost {
    pub(super) name: String,
    pub(super) index: u32,
}

/// How `port.add` chose to check a port's sources (docs/security.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Security {
    /// Port security: only the port's own MAC as a source (on unless
    /// `port_security` is false).
    pub(super) port_security: bool,
    /// The IP source guard on the port's address.
    pub(super) ip_guard: bool,
}

impl Security {
    /// Port security on, no IP guard: gateway ports, fd ports.
    pub(super) const ON: Security = Security {
        port_security: true,
        ip_guard: false,
    };

    /// `a`'s choice, or its network's (`default`).
    pub(super) fn of(a: &PortAdd, default: bool) -> Security {
        Security {
            port_security: a.port_security.unwrap_or(default),
            ip_guard: a.ip_guard,
        }
    }

    /// The dataplane policy of a port with MAC `mac` and address `ip`.
    pub(super) fn policy(self, mac: Option<MacAddr>, ip: Option<IpNet>) -> SourcePolicy {
        let guard = self.ip_guard.then(|| match ip.map(|n| n.addr()) {
            Some(IpAddr::V4(v4)) => (Some(v4), None),
            Some(IpAddr::V6(v6)) => (None, Some(v6)),
            None => (None, None),
        });
        SourcePolicy::new(mac, self.port_security, guard)
    }
}

/// What a port is, besides its fds and MTU, as [`Daemon::attach`] records it.
pub(super) struct PortMeta {
    pub(super) kind: PortKind,
    pub(super) netns: Netns,
    pub(super) ifname: Option<String>,
    pub(super) mac: Option<MacAddr>,
    pub(super) ip: Option<IpNet>,
    pub(super) container: Option<String>,
    /// The fd carries a `virtio_net_hdr` (offloads on).
    pub(super) vnet_hdr: bool,
    pub(super) gateway: bool,
    pub(super) offload_choice: Option<bool>,
    pub(super) persist: Option<PersistGuard>,
    pub(super) security: Security,
}

/// A port that went away on its own, as [`Daemon::process_events`] and
/// [`Daemon::reap_orphans`] report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GonePort {
    pub name: String,
    pub network: String,
    pub cause: GoneReason,
}

/// Why a port went away on its own; `Display` is the text the daemon logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GoneReason {
    /// The dataplane dropped it because its fd failed for good (the TAP was
    /// deleted, the peer of a socket pair closed).
    Dataplane(GoneCause),
    /// The namespace file it was created in is gone (`ip netns del`, the
    /// sandbox torn down), or the process given by PID exited.
    NamespaceGone,
    /// The namespace file now names another namespace.
    NamespaceReplaced,
    /// A veth port's host end is gone (its container's namespace went
    /// away and took the pair, or someone deleted it).
    VethGone,
}

impl std::fmt::Display for GoneReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GoneReason::Dataplane(cause) => cause.fmt(f),
            GoneReason::NamespaceGone => f.write_str("its namespace is gone"),
            GoneReason::NamespaceReplaced => {
                f.write_str("its namespace file now names another namespace")
            }
            GoneReason::VethGone => f.write_str("its veth is gone"),
        }
    }
}

/// Why veth port `p` is gone, if it is: its namespace first (which takes
/// the pair with it, the cause a person looks for), else its host end.
fn veth_gone_reason(p: &Port) -> Option<GoneReason> {
    let h = p.host.as_ref()?;
    match p.sandbox.map(|s| Sandbox::check(&p.netns, s)) {
        Some(Sandbox::Gone) => Some(GoneReason::NamespaceGone),
        Some(Sandbox::Replaced) => Some(GoneReason::NamespaceReplaced),
        _ => (ports::veth::host_alive(h.index, &h.name) == Some(false))
            .then_some(GoneReason::VethGone),
    }
}

/// What a new port takes from its network and from the daemon.
#[derive(Clone, Copy, Debug)]
pub(super) struct PortDefaults {
    /// The network's MTU, which a request's `mtu` overrides.
    pub(super) mtu: u32,
    /// The network's subnet: a bare `ip` takes its prefix length.
    pub(super) subnet: Option<IpNet>,
    /// The network's gateway: the default route of a port with an address.
    pub(super) gateway: Option<IpAddr>,
    /// The daemon's offload setting (a request's `offload` wins).
    pub(super) offload: bool,
    /// Queues of a new TAP: one per dataplane worker.
    pub(super) queues: usize,
    /// New TAPs are persistent (a state directory is set).
    pub(super) persistent: bool,
    /// The network's port security, which a request's `port_security` overrides.
    pub(super) port_security: bool,
    /// The network's backend (or the daemon's), which a request's
    /// `backend` overrides.
    pub(super) backend: Backend,
}

/// A `port.add` request, checked: what to open and what to record.
#[derive(Debug)]
pub(super) struct PortPlan {
    pub(super) name: String,
    pub(super) network: String,
    /// How messages name the port: `port "NAME"`.
    pub(super) what: String,
    pub(super) tap: TapPlan,
    pub(super) ip: Option<IpNet>,
    pub(super) container: Option<String>,
    pub(super) offload_choice: Option<bool>,
    pub(super) security: Security,
    /// What the container gets: a TAP, or (`Create` only) a veth.
    pub(super) backend: Backend,
}

/// The system part of a [`PortPlan`].
#[derive(Debug)]
pub(super) enum TapPlan {
    /// Attach, as it is, the persistent TAP named after the port in the
    /// daemon's namespace.
    Existing { vnet_hdr: bool },
    /// Create a TAP as `spec` says; `persistent` with a state directory.
    Create { spec: TapSpec, persistent: bool },
}

impl PortPlan {
    /// Checks `a` on its own and against its network (`d`), in the order
    /// the errors are reported: what a port needs to know of no other port.
    pub(super) fn new(a: &PortAdd, d: &PortDefaults) -> Result<PortPlan, CtlError> {
        let what = format!("port {:?}", a.name);
        let vnet_hdr = a.offload.unwrap_or(d.offload);
        let plan = |tap, ip| PortPlan {
            name: a.name.clone(),
            network: a.network.clone(),
            what: what.clone(),
            tap,
            ip,
            container: a.container.clone(),
            offload_choice: a.offload,
            security: Security::of(a, d.port_security),
            // An existing TAP stays a TAP whatever the network's default.
            backend: if a.existing {
                Backend::Tap
            } else {
                a.backend.unwrap_or(d.backend)
            },
        };
        if a.ip_guard && !a.port_security.unwrap_or(d.port_security) {
            return Err(CtlError::invalid(format!(
                "{what}: ip_guard (--ip-guard) checks the sources of a port with port \
                 security; leave out port_security false (--no-port-security), or the guard"
            )));
        }
        if a.ip_guard && a.ip.is_none() {
            return Err(CtlError::invalid(format!(
                "{what}: ip_guard (--ip-guard) allows only the port's address, and it has \
                 none; give ip (--ip ADDR/LEN){}",
                if a.existing {
                    ", which an existing TAP cannot have: leave out the guard"
                } else {
                    ""
                }
            )));
        }
        if a.existing && a.backend == Some(Backend::Veth) {
            return Err(CtlError::invalid(format!(
                "{what}: an existing TAP cannot be a veth port; leave out 'existing' to \
                 create a veth pair, or backend veth to attach the TAP"
            )));
        }
        if a.existing {
            let set: Vec<&str> = [
                ("netns", a.netns.is_some()),
                ("pid", a.pid.is_some()),
                ("ifname", a.ifname.is_some()),
                ("mac", a.mac.is_some()),
                ("ip", a.ip.is_some()),
                ("mtu", a.mtu.is_some()),
            ]
            .into_iter()
            .filter_map(|(field, given)| given.then_some(field))
            .collect();
            if !set.is_empty() {
                return Err(CtlError::invalid(format!(
                    "{what}: an existing TAP is attached as it is, so {} cannot be set; \
                     configure the TAP with ip(8) instead, or leave out 'existing' to \
                     create a new one",
                    set.join(", ")
                )));
            }
            check_ifname(&a.name)?;
            return Ok(plan(TapPlan::Existing { vnet_hdr }, None));
        }

        let netns = match (&a.netns, a.pid) {
            (Some(_), Some(_)) => {
                return Err(CtlError::invalid(format!(
                    "{what}: give either netns or pid, not both"
                )))
            }
            (Some(path), None) => {
                if path.is_empty() {
                    return Err(CtlError::invalid(format!(
                        "{what}: netns is empty; give a namespace file like /run/netns/c1"
                    )));
                }
                Netns::Path(path.into())
            }
            (None, Some(pid)) => Netns::Pid(pid),
            (None, None) => Netns::Current,
        };
        let ifname = match (&a.ifname, &netns) {
            (Some(i), _) => i.clone(),
            // In the daemon's own namespace the TAP is visible next to every
            // other port: name it after the port, not "eth0".
            (None, Netns::Current) => a.name.clone(),
            (None, _) => "eth0".to_string(),
        };
        check_ifname(&ifname)?;
        if let Some(mac) = a.mac {
            check_unicast_mac(&what, mac)?;
        }
        let ip =
            a.ip.as_deref()
                .map(|raw| parse_port_ip(&what, &a.network, raw, d.subnet, d.gateway))
                .transpose()?;
        let mtu = check_mtu(&what, a.mtu.unwrap_or(d.mtu))?;
        let spec = TapSpec {
            netns,
            ifname,
            mac: a.mac,
            mtu: Some(mtu),
            addrs: ip.into_iter().collect(),
            // The route needs an address in the subnet to be reachable.
            gateway: ip.and(d.gateway),
            vnet_hdr,
            queues: d.queues,
        };
        let persistent = d.persistent;
        Ok(plan(TapPlan::Create { spec, persistent }, ip))
    }

    /// Creates the TAP, or attaches the existing one: the step of
    /// `port.add` that changes the system. On error nothing is left.
    fn open_tap(&self) -> Result<Tap, CtlError> {
        match &self.tap {
            TapPlan::Existing { vnet_hdr } => ports::attach_existing(&self.name, *vnet_hdr),
            TapPlan::Create {
                spec,
                persistent: true,
            } => ports::create_persistent_tap(spec),
            TapPlan::Create { spec, .. } => ports::create_tap(spec),
        }
        .map_err(|e| port_error(&self.what, e))
    }
}

impl Daemon {
    /// `port.add`: creates a TAP in the container's namespace (or attaches
    /// an existing one) and hands its fd to the dataplane.
    pub fn port_add(&mut self, a: &PortAdd) -> Result<PortInfo, CtlError> {
        let plan = self.plan_port(a)?;
        if plan.backend == Backend::Veth {
            self.fastpath_choose(&a.name, a.fastpath);
            return self.add_veth(plan);
        }
        let tap = plan.open_tap()?;
        self.attach_tap(plan, tap)
    }

    /// Step 1 of `port.add`: the request checked against the daemon's
    /// state, without touching the system.
    fn plan_port(&self, a: &PortAdd) -> Result<PortPlan, CtlError> {
        self.check_new_port(&a.name, &a.network)?;
        let net = self.network(&a.network)?;
        let defaults = PortDefaults {
            mtu: net.mtu,
            subnet: net.subnet,
            gateway: net.gateway,
            offload: self.engine.offload(),
            queues: self.engine.workers(),
            persistent: self.store.is_some(),
            port_security: net.spec.port_security.unwrap_or(true),
            backend: net.spec.backend.unwrap_or(self.default_backend),
        };
        let plan = PortPlan::new(a, &defaults)?;
        if let TapPlan::Create { spec, .. } = &plan.tap {
            self.check_clashes(&plan, spec)?;
        }
        Ok(plan)
    }

    /// A new TAP must not take another port's interface name in the same
    /// namespace, nor another port's address on the same network.
    fn check_clashes(&self, plan: &PortPlan, spec: &TapSpec) -> Result<(), CtlError> {
        let what = &plan.what;
        let (netns, ifname) = (&spec.netns, &spec.ifname);
        for (other, p) in &self.ports {
            if p.netns == *netns && p.ifname.as_deref() == Some(ifname.as_str()) {
                return Err(CtlError::exists(format!(
                    "{what}: port {other:?} already has interface {ifname} in {}; choose \
                     another ifname",
                    netns
                        .label()
                        .unwrap_or_else(|| "the daemon's namespace".into())
                )));
            }
            if let (Some(mine), Some(theirs)) = (plan.ip, p.ip) {
                if p.network == plan.network && mine.addr() == theirs.addr() {
                    return Err(CtlError::exists(format!(
                        "{what}: address {} is already used by port {other:?} on network {}; \
                         choose another address",
                        mine.addr(),
                        plan.network
                    )));
                }
            }
        }
        Ok(())
    }

    /// Step 3 of `port.add`: the opened TAP handed to the dataplane and
    /// recorded. A persistent TAP's first fd goes to its [`PersistGuard`]
    /// and the dataplane gets a `dup`; if that fails, dropping the guard
    /// deletes the TAP again.
    fn attach_tap(&mut self, plan: PortPlan, tap: Tap) -> Result<PortInfo, CtlError> {
        let (fd, persist, netns) = match plan.tap {
            TapPlan::Create {
                spec,
                persistent: true,
            } => {
                let guard = PersistGuard::new(tap.fd, plan.name.clone());
                let fd = guard.try_clone_queue().map_err(|e| {
                    let errno = e.raw_os_error();
                    let message = strip_os_error(&format!(
                        "{}: cannot keep a handle on the persistent TAP: {e}",
                        plan.what
                    ));
                    match fd_limit_advice(errno) {
                        Some(_) => {
                            CtlError::new(ErrorKind::PortError, with_fd_advice(message, errno))
                        }
                        None => CtlError::internal(message),
                    }
                })?;
                (fd, Some(guard), spec.netns)
            }
            TapPlan::Create { spec, .. } => (tap.fd, None, spec.netns),
            TapPlan::Existing { .. } => (tap.fd, None, Netns::Current),
        };
        let meta = PortMeta {
            kind: if tap.created {
                PortKind::Created
            } else {
                PortKind::Existing
            },
            netns,
            ifname: Some(tap.ifname),
            mac: Some(tap.mac),
            ip: plan.ip,
            container: plan.container,
            vnet_hdr: tap.vnet_hdr,
            gateway: false,
            offload_choice: plan.offload_choice,
            persist,
            security: plan.security,
        };
        self.attach(
            &plan.name,
            &plan.network,
            fd,
            tap.extra_queues,
            tap.mtu,
            meta,
        )
    }

    /// Attaches any fd that carries one Ethernet frame per read/write (one
    /// end of [`crate::seqpacket_pair`], a TAP opened elsewhere) as a port
    /// of `network`. `mtu` defaults to the network's.
    pub fn attach_fd(
        &mut self,
        name: &str,
        network: &str,
        fd: OwnedFd,
        mtu: Option<u32>,
    ) -> Result<PortInfo, CtlError> {
        self.process_events();
        self.check_new_port(name, network)?;
        let net_mtu = self.network(network)?.mtu;
        let mtu = check_mtu(&format!("port {name:?}"), mtu.unwrap_or(net_mtu))?;
        let meta = PortMeta {
            kind: PortKind::Fd,
            netns: Netns::Current,
            ifname: None,
            mac: None,
            ip: None,
            container: None,
            vnet_hdr: false,
            gateway: false,
            offload_choice: None,
            persist: None,
            // The MAC is unknown: nothing to lock the port to (see
            // docs/security.md), but it may not use other ports' MACs.
            security: Security::ON,
        };
        self.attach(name, network, fd, Vec::new(), mtu, meta)
    }

    fn check_new_port(&self, name: &str, network: &str) -> Result<(), CtlError> {
        check_name("port", name)?;
        if let Some(p) = self.ports.get(name) {
            return Err(CtlError::exists(format!(
                "port {name:?} already exists (network {}); choose another name or remove \
                 it first with 'vxswitch port rm {name}'",
                p.network
            )));
        }
        self.network(network).map(|_| ())
    }

    /// Hands `fd` (and a multi-queue TAP's further queues) to the dataplane
    /// and records the port.
    pub(super) fn attach(
        &mut self,
        name: &str,
        network: &str,
        fd: OwnedFd,
        extra_queues: Vec<OwnedFd>,
        mtu: u32,
        meta: PortMeta,
    ) -> Result<PortInfo, CtlError> {
        self.attach_tx(name, network, (fd, extra_queues, None), mtu, meta)
    }

    /// [`Daemon::attach`] of a port that may send through a socket of its
    /// own (a veth port on its steering interface, `ctl::fastpath`).
    fn attach_tx(
        &mut self,
        name: &str,
        network: &str,
        (fd, extra_queues, tx): PortSockets,
        mtu: u32,
        meta: PortMeta,
    ) -> Result<PortInfo, CtlError> {
        let net = self.network(network)?.id;
        if let Some((other, _)) = meta.mac.and_then(|mac| {
            self.ports
                .iter()
                .find(|(_, p)| p.net == net && p.mac == Some(mac))
        }) {
            return Err(CtlError::exists(format!(
                "port {name:?}: MAC {} is already the MAC of port {other:?} on network \
                 {network}; a MAC belongs to one port of a network (choose another --mac)",
                meta.mac.unwrap_or(MacAddr::ZERO)
            )));
        }
        let id = self.free_port_id();
        let stats = Arc::new(PortStats::default());
        let policy = meta.security.policy(meta.mac, meta.ip);
        let pa = PortAttach {
            id,
            net,
            fd,
            extra_queues,
            mtu,
            stats: stats.clone(),
            vnet_hdr: meta.vnet_hdr,
            mac: meta.mac,
            policy,
        };
        match self
            .uplink_config(network)
            .filter(|_| meta.kind == PortKind::Uplink)
        {
            Some(uplink) => {
                let tx = self.take_uplink_tx(network);
                self.engine.add_uplink_tx(pa, uplink, tx)
            }
            None => self.engine.add_port_tx(pa, tx),
        }
        // On error `meta` is dropped, and with it a persistent TAP's
        // guard: the TAP goes with its last fd.
        .map_err(|e| engine_error(&format!("port {name:?}"), e))?;
        let sandbox = match meta.kind {
            PortKind::Created => search::identity(&meta.netns),
            PortKind::Existing | PortKind::Fd | PortKind::Responder | PortKind::Uplink => None,
        };
        let port = Port {
            id,
            sandbox,
            network: network.to_string(),
            net,
            kind: meta.kind,
            netns: meta.netns,
            ifname: meta.ifname,
            mac: meta.mac,
            ip: meta.ip,
            mtu,
            container: meta.container,
            offload: meta.vnet_hdr,
            gateway: meta.gateway,
            stats,
            offload_choice: meta.offload_choice,
            persist: meta.persist,
            security: meta.security,
            policy,
            backend: Backend::Tap,
            host: None,
        };
        let info = self.port_info(name, &port);
        self.ports.insert(name.to_string(), port);
        Ok(info)
    }

    /// `port.add` of a veth port: the pair created (the peer configured in
    /// the container as a TAP would be), its host end's sockets handed to
    /// the dataplane, the port recorded with the guard that deletes the
    /// pair when the record goes.
    fn add_veth(&mut self, plan: PortPlan) -> Result<PortInfo, CtlError> {
        let TapPlan::Create { spec, persistent } = &plan.tap else {
            return Err(CtlError::internal(format!(
                "{}: a veth port is always created",
                plan.what
            )));
        };
        let v = ports::veth::create_veth(spec, &self.veth_prefix, &plan.name, *persistent)
            .map_err(|e| port_error(&plan.what, e))?;
        let host = VethHost {
            name: v.host.clone(),
            index: v.host_index,
        };
        let meta = PortMeta {
            kind: PortKind::Created,
            netns: spec.netns.clone(),
            ifname: Some(v.ifname),
            mac: Some(v.mac),
            ip: plan.ip,
            container: plan.container.clone(),
            vnet_hdr: v.vnet_hdr,
            gateway: false,
            offload_choice: plan.offload_choice,
            // On error the guard goes with `meta` and deletes the pair.
            persist: Some(v.guard),
            security: plan.security,
        };
        self.attach_veth(
            &plan.name,
            &plan.network,
            meta,
            (v.fd, v.extra_queues),
            v.mtu,
            host,
        )
    }

    /// Hands a veth port's host-end sockets to the dataplane and records
    /// the port (`port.add`, and a restart finding the veth again).
    pub(super) fn attach_veth(
        &mut self,
        name: &str,
        network: &str,
        meta: PortMeta,
        (fd, extra_queues): (OwnedFd, Vec<OwnedFd>),
        mtu: u32,
        host: VethHost,
    ) -> Result<PortInfo, CtlError> {
        let (fd, extra_queues, tx) = self
            .fastpath_prepare(name, &host, (fd, extra_queues), meta.vnet_hdr, mtu)
            .map_err(|e| port_error(&format!("port {name:?}"), e))?;
        if let Err(e) = self.attach_tx(name, network, (fd, extra_queues, tx), mtu, meta) {
            self.fastpath_release_steers();
            self.fastpath_forget(name);
            return Err(e);
        }
        let Some(port) = self.ports.get_mut(name) else {
            return Err(CtlError::internal(format!("port {name:?} vanished")));
        };
        port.backend = Backend::Veth;
        port.host = Some(host);
        self.fastpath_sync_ports();
        let port = &self.ports[name];
        Ok(self.port_info(name, port))
    }

    pub fn port_ls(&self) -> Vec<PortInfo> {
        self.ports
            .iter()
            .map(|(n, p)| self.port_info(n, p))
            .collect()
    }

    /// `port.rm`: detaches the port (closing its fd deletes a TAP vxswitch
    /// created) and flushes its FDB entries, static ones included.
    pub fn port_rm(&mut self, a: &PortRm) -> Result<PortRemoved, CtlError> {
        let port = self.port(&a.name)?;
        if port.gateway {
            return Err(CtlError::invalid(format!(
                "port {:?} is the gateway port of network {:?} and goes with it; remove \
                 the network ('vxswitch network rm {}'), or create it without \
                 --gateway-port",
                a.name, port.network, port.network
            )));
        }
        if port.kind == PortKind::Uplink {
            return Err(CtlError::invalid(format!(
                "port {:?} is the uplink of network {:?} and goes with it; remove the \
                 network ('vxswitch network rm {}')",
                a.name, port.network, port.network
            )));
        }
        self.detach(&a.name)
    }

    /// `port.set`: sets (or, with `None`, clears) the `container` label of
    /// an existing port. The dataplane is not involved.
    pub fn port_set(&mut self, a: &PortSet) -> Result<PortInfo, CtlError> {
        if let Some(label) = &a.container {
            check_label(&a.name, label)?;
        }
        self.port(&a.name)?;
        let Some(port) = self.ports.get_mut(&a.name) else {
            return Err(CtlError::internal(format!("port {:?} vanished", a.name)));
        };
        port.container = a.container.clone();
        let port = &self.ports[&a.name];
        Ok(self.port_info(&a.name, port))
    }

    /// Removes a port, whatever it is. Its record goes last, and with it a
    /// persistent TAP's guard: the TAP is deleted when its last fd closes.
    pub(super) fn detach(&mut self, name: &str) -> Result<PortRemoved, CtlError> {
        let a = PortRm {
            name: name.to_string(),
        };
        let port = self.port(&a.name)?;
        let (id, network) = (port.id, port.network.clone());
        let fdb_flushed = self.fdb().dest_count(Dest::Local(id));
        self.fastpath_forget(&a.name);
        let was_attached = self
            .engine
            .remove_port(id)
            .map_err(|e| engine_error(&format!("port {:?}", a.name), e))?;
        if !was_attached {
            // The dataplane dropped it on its own; its PortGone event is
            // already queued. Consume it now, before the id can be reused.
            self.process_events();
        }
        // Its steering interface, now that no socket reads it.
        self.fastpath_release_steers();
        self.ports.remove(&a.name);
        Ok(PortRemoved {
            name: a.name.clone(),
            network,
            fdb_flushed,
        })
    }

    /// Forgets a port the dataplane dropped on its own (for `cause`),
    /// logging one line; `None` if it is not (or no longer) known.
    pub(super) fn port_gone(&mut self, id: PortId, cause: GoneCause) -> Option<GonePort> {
        if self.uplink_gone(id, cause) {
            return None;
        }
        let name = self
            .ports
            .iter()
            .find(|(_, p)| p.id == id)
            .map(|(n, _)| n.clone())?;
        self.fastpath_forget(&name);
        self.fastpath_release_steers();
        let port = self.ports.remove(&name)?;
        let (network, gateway) = (port.network.clone(), port.gateway);
        // A veth port's socket fails (ENXIO) once its pair is gone, which
        // the container's namespace going takes with it: said as the
        // reaper says it, not as a failed write.
        let why = veth_gone_reason(&port);
        let label = port.netns.label().unwrap_or_default();
        // A persistent TAP's guard goes with the record.
        drop(port);
        if gateway {
            self.gateway_gone(&network);
        }
        if let Some(cause) = why {
            if self.log_events {
                eprintln!(
                    "vxswitch: port {name} (network {network}) removed: {cause} ({label}); \
                     its veth and FDB entries are gone"
                );
            }
            return Some(GonePort {
                name,
                network,
                cause,
            });
        }
        if self.log_events {
            eprintln!(
                "vxswitch: {}port {name} (network {network}) went away: {}; \
                 removed it and flushed its FDB entries{}",
                if gateway { "gateway " } else { "" },
                strip_os_error(&cause.to_string()),
                if gateway {
                    "; the network has no gateway port until it is created \
                     again ('vxswitch network rm' and 'network create')"
                } else {
                    ""
                }
            );
        }
        Some(GonePort {
            name,
            network,
            cause: GoneReason::Dataplane(cause),
        })
    }

    /// Removes ports whose sandbox is gone: the namespace file they were
    /// created in was deleted (`ip netns del`, a container runtime tearing
    /// the sandbox down) or now names another namespace, or the process
    /// given with `--pid` exited. The daemon's TAP fd keeps such a namespace
    /// alive on its own, so without this the port and its TAP would linger
    /// where the kernel bridge's veth would have vanished with the
    /// namespace. Called about once a second by the server.
    pub fn reap_orphans(&mut self) -> Vec<GonePort> {
        self.watch_uplinks();
        let orphans: Vec<(String, GoneReason)> = self
            .ports
            .iter()
            .filter_map(|(name, p)| {
                if let Some(cause) = veth_gone_reason(p) {
                    return Some((name.clone(), cause));
                }
                let cause = match Sandbox::check(&p.netns, p.sandbox?) {
                    Sandbox::Same => return None,
                    Sandbox::Replaced => GoneReason::NamespaceReplaced,
                    Sandbox::Gone => GoneReason::NamespaceGone,
                };
                Some((name.clone(), cause))
            })
            .collect();
        let mut gone = Vec::new();
        if !orphans.is_empty() {
            self.monitor_sync();
        }
        for (name, cause) in orphans {
            let Some(port) = self.ports.get(&name) else {
                continue;
            };
            let (id, label) = (port.id, port.netns.label().unwrap_or_default());
            self.fastpath_forget(&name);
            if self.engine.remove_port(id).is_ok_and(|attached| !attached) {
                self.process_events();
            }
            let Some(port) = self.ports.remove(&name) else {
                continue;
            };
            let network = port.network.clone();
            let device = if port.host.is_some() { "veth" } else { "TAP" };
            // A persistent TAP's (or a veth's) guard goes with the record.
            drop(port);
            if self.log_events {
                eprintln!(
                    "vxswitch: port {name} (network {network}) removed: {cause} ({label}); \
                     its {device} and FDB entries are gone"
                );
            }
            gone.push(GonePort {
                name,
                network,
                cause,
            });
        }
        if !gone.is_empty() {
            self.mirror_prune();
            self.save_state();
        }
        self.note_gone(&gone);
        gone
    }

    pub(super) fn port(&self, name: &str) -> Result<&Port, CtlError> {
        self.ports.get(name).ok_or_else(|| {
            CtlError::not_found(format!(
                "port {name:?} does not exist; list ports with 'vxswitch port ls'"
            ))
        })
    }

    fn port_info(&self, name: &str, p: &Port) -> PortInfo {
        PortInfo {
            name: name.to_string(),
            network: p.network.clone(),
            kind: p.kind,
            netns: p.netns.label(),
            ifname: p.ifname.clone(),
            mac: p.mac,
            ip: p.ip,
            mtu: p.mtu,
            container: p.container.clone(),
            offload: p.offload,
            gateway: p.gateway,
            port_security: p.policy.mac().is_some(),
            ip_guard: matches!(p.policy, SourcePolicy::Guarded(_)),
            uplink: self.uplink_info(&p.network, name),
            backend: p.backend,
            host_ifname: p.host.as_ref().map(|h| h.name.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::proto::{ErrorKind, Reply, Request};
    use crate::ctl::testutil::{daemon, fd_port, net, port_id};
    use crate::ctl::validate::MAX_LABEL;

    #[test]
    fn port_names_conflict_and_networks_must_exist() {
        let mut d = daemon();
        net(&mut d, "red", None, None);
        net(&mut d, "blue", None, None);
        let _a = fd_port(&mut d, "a", "red");
        let (_x, y) = crate::seqpacket_pair().unwrap();
        let e = d.attach_fd("a", "blue", y, None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Exists);
        assert!(e.message.contains("network red"), "{}", e.message);
        let (_x, y) = crate::seqpacket_pair().unwrap();
        let e = d.attach_fd("b", "green", y, None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(
            e.message.contains("vxswitch network create green"),
            "{}",
            e.message
        );
        let e = d.port_rm(&PortRm { name: "zzz".into() }).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        d.shutdown();
    }

    #[test]
    fn port_set_labels_and_clears_a_port() {
        let mut d = daemon();
        net(&mut d, "red", None, None);
        let _a = fd_port(&mut d, "a", "red");
        let set = |d: &mut Daemon, name: &str, label: Option<&str>| {
            d.handle(Request::PortSet(PortSet {
                name: name.into(),
                container: label.map(String::from),
            }))
        };
        let Reply::Port(p) = set(&mut d, "a", Some("web")).unwrap() else {
            panic!("port.set replies with the port")
        };
        assert_eq!(
            (p.name.as_str(), p.container.as_deref()),
            ("a", Some("web"))
        );
        assert_eq!(d.port_ls()[0].container.as_deref(), Some("web"));
        // As port.ls shows it on the wire.
        let v = serde_json::to_value(d.port_ls()).unwrap();
        assert_eq!(v[0]["container"], "web");
        set(&mut d, "a", None).unwrap();
        assert_eq!(d.port_ls()[0].container, None);
        let v = serde_json::to_value(d.port_ls()).unwrap();
        assert!(v[0].get("container").is_none(), "{v}");

        let e = set(&mut d, "zzz", Some("web")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.message.contains("vxswitch port ls"), "{}", e.message);
        let e = set(&mut d, "a", Some("")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert_eq!(
            e.message,
            "port \"a\": the container label is empty; clear it with null ('vxswitch port set \
             NAME --no-container')"
        );
        let e = set(&mut d, "a", Some("a\nb")).unwrap_err();
        assert!(e.message.contains("control character"), "{}", e.message);
        let long = "x".repeat(MAX_LABEL + 1);
        let e = set(&mut d, "a", Some(&long)).unwrap_err();
        assert!(e.message.contains("the limit is 256"), "{}", e.message);
        assert_eq!(d.port_ls()[0].container, None, "refusals change nothing");
        d.shutdown();
    }

    #[test]
    fn port_add_checks_addresses_before_touching_the_system() {
        let mut d = daemon();
        net(&mut d, "red", Some("10.77.0.0/24"), Some("10.77.0.1"));
        net(&mut d, "plain", None, None);
        let add = |name: &str, network: &str, ip: &str| PortAdd {
            name: name.into(),
            network: network.into(),
            netns: Some("/run/netns/c1".into()),
            ip: Some(ip.into()),
            ..Default::default()
        };
        let cases = [
            ("10.78.0.11/24", "outside subnet 10.77.0.0/24"),
            ("10.77.0.11/16", "prefix length /16"),
            ("10.77.0.0/24", "network or broadcast address"),
            ("10.77.0.255", "network or broadcast address"),
            ("10.77.0.1/24", "is the gateway"),
            ("10.77.0.300/24", "invalid ip"),
        ];
        for (ip, want) in cases {
            let e = d.port_add(&add("c1", "red", ip)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument, "{ip}");
            assert!(e.message.contains(want), "{ip}: {}", e.message);
            assert!(e.message.starts_with("port \"c1\": "), "{}", e.message);
        }
        let e = d.port_add(&add("c1", "plain", "10.1.1.1")).unwrap_err();
        assert!(e.message.contains("no prefix length"), "{}", e.message);
        // Valid arguments reach the TAP backend (a stub in this tree).
        let e = d.port_add(&add("c1", "red", "10.77.0.11")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::PortError, "{}", e.message);
        let mut both = add("c1", "red", "10.77.0.11/24");
        both.pid = Some(1);
        let e = d.port_add(&both).unwrap_err();
        assert!(e.message.contains("either netns or pid"), "{}", e.message);
        let existing = PortAdd {
            name: "tap0".into(),
            network: "red".into(),
            existing: true,
            ip: Some("10.77.0.5/24".into()),
            ..Default::default()
        };
        let e = d.port_add(&existing).unwrap_err();
        assert!(e.message.contains("ip cannot be set"), "{}", e.message);
        let existing_veth = PortAdd {
            name: "c1".into(),
            network: "red".into(),
            existing: true,
            backend: Some(Backend::Veth),
            ..Default::default()
        };
        let e = d.port_add(&existing_veth).unwrap_err();
        assert!(
            e.message.contains("an existing TAP cannot be a veth port"),
            "{}",
            e.message
        );
        let long = PortAdd {
            name: "a-very-long-port-name".into(),
            network: "red".into(),
            ..Default::default()
        };
        let e = d.port_add(&long).unwrap_err();
        assert!(
            e.message.contains("invalid interface name"),
            "{}",
            e.message
        );
        let mcast = PortAdd {
            name: "c1".into(),
            network: "red".into(),
            mac: Some(MacAddr::BROADCAST),
            ..Default::default()
        };
        let e = d.port_add(&mcast).unwrap_err();
        assert!(
            e.message.ends_with(
                "MAC ff:ff:ff:ff:ff:ff is the broadcast address; use a unicast MAC, \
                 whose first octet is even, such as 02:00:00:00:00:01"
            ),
            "{}",
            e.message
        );
        for (mac, want) in [
            (
                MacAddr([0x01, 0, 0x5e, 0, 0, 1]),
                "MAC 01:00:5e:00:00:01 is a multicast address (its first octet is odd)",
            ),
            (
                MacAddr::ZERO,
                "MAC 00:00:00:00:00:00 is all-zero, which no interface may have",
            ),
        ] {
            let e = d
                .port_add(&PortAdd {
                    mac: Some(mac),
                    ..mcast.clone()
                })
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument);
            assert!(e.message.contains(want), "{}", e.message);
            // 00 is even: the zero MAC's message must not blame the octet.
            assert_eq!(
                mac.is_zero(),
                !e.message.contains("first octet"),
                "{}",
                e.message
            );
        }
        // An MTU a TAP cannot have is refused before any TAP is created.
        let e = d
            .port_add(&PortAdd {
                mac: None,
                mtu: Some(65_535),
                ..mcast.clone()
            })
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert_eq!(
            e.message,
            "port \"c1\": MTU 65535 is out of range; use 68 to 65521, the largest a TAP \
             accepts (1500 is usual)"
        );
        assert!(d.port_ls().is_empty());
        d.shutdown();
    }

    #[test]
    fn a_port_whose_fd_dies_is_forgotten() {
        let mut d = daemon();
        net(&mut d, "red", None, None);
        let a = fd_port(&mut d, "a", "red");
        let _b = fd_port(&mut d, "b", "red");
        drop(a);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let gone = loop {
            let g = d.process_events();
            if !g.is_empty() {
                break g;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no PortGone within 5 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(gone[0].name, "a");
        assert_eq!(d.port_ls().len(), 1);
        // The freed id is reused by the next port.
        let _c = fd_port(&mut d, "c", "red");
        assert_eq!(port_id(&d, "c"), 0);
        d.shutdown();
    }

    fn defaults(persistent: bool) -> PortDefaults {
        PortDefaults {
            mtu: 1450,
            subnet: Some("10.77.0.0/24".parse().unwrap()),
            gateway: Some("10.77.0.1".parse().unwrap()),
            offload: true,
            queues: 2,
            persistent,
            port_security: true,
            backend: Backend::Tap,
        }
    }

    fn add(name: &str) -> PortAdd {
        PortAdd {
            name: name.into(),
            network: "red".into(),
            ..Default::default()
        }
    }

    fn create(plan: &PortPlan) -> (&TapSpec, bool) {
        match &plan.tap {
            TapPlan::Create { spec, persistent } => (spec, *persistent),
            other => panic!("not a TAP to create: {other:?}"),
        }
    }

    #[test]
    fn a_plan_says_what_to_create_from_the_request_and_the_network() {
        // A container's port: eth0 in its namespace (a file that does not
        // exist: nothing opens it), the network's prefix, MTU and route.
        let a = PortAdd {
            netns: Some("/nonexistent/netns/c1".into()),
            ip: Some("10.77.0.11".into()),
            container: Some("web".into()),
            ..add("c1")
        };
        let plan = PortPlan::new(&a, &defaults(false)).unwrap();
        let (spec, persistent) = create(&plan);
        assert_eq!(spec.netns, Netns::Path("/nonexistent/netns/c1".into()));
        assert_eq!(spec.ifname, "eth0");
        assert_eq!(spec.mac, None);
        assert_eq!(spec.mtu, Some(1450));
        let ip: IpNet = "10.77.0.11/24".parse().unwrap();
        assert_eq!(spec.addrs, [ip]);
        assert_eq!(spec.gateway, Some("10.77.0.1".parse().unwrap()));
        assert_eq!((spec.vnet_hdr, spec.queues, persistent), (true, 2, false));
        assert_eq!(plan.ip, Some(ip));
        assert_eq!(plan.what, "port \"c1\"");
        assert_eq!(plan.container.as_deref(), Some("web"));
        assert_eq!(plan.offload_choice, None);

        // In the daemon's namespace the TAP is named after the port; no
        // address means no route; offload and MTU as asked; persistent
        // with a state directory.
        let a = PortAdd {
            offload: Some(false),
            mtu: Some(9000),
            ..add("tap-c2")
        };
        let plan = PortPlan::new(&a, &defaults(true)).unwrap();
        let (spec, persistent) = create(&plan);
        assert_eq!(
            (spec.netns.clone(), spec.ifname.as_str()),
            (Netns::Current, "tap-c2")
        );
        assert!(spec.addrs.is_empty());
        assert_eq!(spec.gateway, None);
        assert_eq!(spec.mtu, Some(9000));
        assert!(!spec.vnet_hdr);
        assert!(persistent);
        assert_eq!(plan.offload_choice, Some(false));

        // By PID, with the interface name given.
        let a = PortAdd {
            pid: Some(42),
            ifname: Some("net1".into()),
            ..add("c3")
        };
        let plan = PortPlan::new(&a, &defaults(false)).unwrap();
        let (spec, _) = create(&plan);
        assert_eq!(
            (spec.netns.clone(), spec.ifname.as_str()),
            (Netns::Pid(42), "net1")
        );

        // An existing TAP is attached as it is, under the port's name.
        let a = PortAdd {
            existing: true,
            container: Some("lab".into()),
            ..add("tap0")
        };
        let plan = PortPlan::new(&a, &defaults(true)).unwrap();
        assert!(matches!(plan.tap, TapPlan::Existing { vnet_hdr: true }));
        assert_eq!(plan.ip, None);
        assert_eq!(plan.container.as_deref(), Some("lab"));
    }

    #[test]
    fn port_security_is_on_unless_refused_and_the_ip_guard_needs_an_address() {
        let plan = PortPlan::new(&add("c1"), &defaults(false)).unwrap();
        assert_eq!(plan.security, Security::ON);
        let mac: MacAddr = "02:00:00:00:00:11".parse().unwrap();
        assert_eq!(
            plan.security.policy(Some(mac), None),
            SourcePolicy::Mac(mac)
        );
        // Without a known MAC there is nothing to lock the port to.
        assert_eq!(plan.security.policy(None, None), SourcePolicy::Open);
        let plan = PortPlan::new(
            &PortAdd {
                port_security: Some(false),
                ..add("c1")
            },
            &defaults(false),
        )
        .unwrap();
        assert_eq!(plan.security.policy(Some(mac), None), SourcePolicy::Open);
        let plan = PortPlan::new(
            &PortAdd {
                ip: Some("10.77.0.11/24".into()),
                ip_guard: true,
                ..add("c1")
            },
            &defaults(false),
        )
        .unwrap();
        let policy = plan.security.policy(Some(mac), plan.ip);
        assert_eq!(
            policy,
            SourcePolicy::Guarded(crate::switch::IpGuard::new(
                mac,
                Some("10.77.0.11".parse().unwrap()),
                None
            ))
        );
        let refused = |a: PortAdd| PortPlan::new(&a, &defaults(false)).unwrap_err();
        let e = refused(PortAdd {
            ip_guard: true,
            ..add("c1")
        });
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(
            e.message.contains("give ip (--ip ADDR/LEN)"),
            "{}",
            e.message
        );
        let e = refused(PortAdd {
            ip_guard: true,
            existing: true,
            ..add("tap0")
        });
        assert!(e.message.contains("existing TAP cannot"), "{}", e.message);
        let e = refused(PortAdd {
            ip: Some("10.77.0.11/24".into()),
            ip_guard: true,
            port_security: Some(false),
            ..add("c1")
        });
        assert!(e.message.contains("port security"), "{}", e.message);
        // A network's default, which a port may override.
        let off = PortDefaults {
            port_security: false,
            ..defaults(false)
        };
        let plan = PortPlan::new(&add("c1"), &off).unwrap();
        assert!(!plan.security.port_security);
        // The network's backend, which a port may override.
        let veth = PortDefaults {
            backend: Backend::Veth,
            ..defaults(false)
        };
        assert_eq!(
            PortPlan::new(&add("c1"), &veth).unwrap().backend,
            Backend::Veth
        );
        let tap = PortAdd {
            backend: Some(Backend::Tap),
            ..add("c1")
        };
        assert_eq!(PortPlan::new(&tap, &veth).unwrap().backend, Backend::Tap);
        let on = PortAdd {
            port_security: Some(true),
            ..add("c1")
        };
        assert!(PortPlan::new(&on, &off).unwrap().security.port_security);
    }

    #[test]
    fn a_plan_refuses_a_request_in_the_order_it_reports() {
        let refused = |a: PortAdd| PortPlan::new(&a, &defaults(false)).unwrap_err();
        // An existing TAP takes nothing that configures it; all are named.
        let e = refused(PortAdd {
            existing: true,
            mtu: Some(1400),
            ifname: Some("eth0".into()),
            ..add("tap0")
        });
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert_eq!(
            e.message,
            "port \"tap0\": an existing TAP is attached as it is, so ifname, mtu cannot be \
             set; configure the TAP with ip(8) instead, or leave out 'existing' to create a \
             new one"
        );
        let e = refused(PortAdd {
            netns: Some(String::new()),
            ..add("c1")
        });
        assert!(e.message.contains("netns is empty"), "{}", e.message);
        // Both namespaces and a bad MTU: the namespace is reported first.
        let e = refused(PortAdd {
            netns: Some("/run/netns/c1".into()),
            pid: Some(1),
            mtu: Some(1),
            ..add("c1")
        });
        assert!(e.message.contains("either netns or pid"), "{}", e.message);
        let e = refused(PortAdd {
            ifname: Some("a:b".into()),
            ..add("c1")
        });
        assert!(
            e.message.starts_with("invalid interface name \"a:b\""),
            "{}",
            e.message
        );
        let e = refused(PortAdd {
            ip: Some("10.77.0.1".into()),
            ..add("c1")
        });
        assert!(e.message.contains("is the gateway"), "{}", e.message);
        let e = refused(PortAdd {
            mtu: Some(65_535),
            ..add("c1")
        });
        assert!(
            e.message.contains("MTU 65535 is out of range"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_plan_refuses_another_ports_interface_or_address() {
        let mut d = daemon();
        net(&mut d, "red", Some("10.77.0.0/24"), Some("10.77.0.1"));
        net(&mut d, "blue", Some("10.77.0.0/24"), Some("10.77.0.1"));
        // The record of a TAP port, as if created before (that takes root).
        let c1 = Port {
            id: PortId(99),
            network: "red".into(),
            net: d.networks["red"].id,
            kind: PortKind::Created,
            netns: Netns::Path("/run/netns/c1".into()),
            ifname: Some("eth0".into()),
            mac: None,
            ip: Some("10.77.0.11/24".parse().unwrap()),
            mtu: 1500,
            container: None,
            offload: false,
            gateway: false,
            stats: Arc::default(),
            sandbox: None,
            offload_choice: None,
            persist: None,
            security: Security::ON,
            policy: SourcePolicy::Open,
            backend: Backend::Tap,
            host: None,
        };
        d.ports.insert("c1".into(), c1);
        let req = |netns: &str, network: &str, ip: &str| PortAdd {
            netns: Some(netns.into()),
            network: network.into(),
            ip: Some(ip.into()),
            ..add("c2")
        };
        let e = d
            .plan_port(&req("/run/netns/c1", "blue", "10.77.0.12"))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Exists);
        assert_eq!(
            e.message,
            "port \"c2\": port \"c1\" already has interface eth0 in /run/netns/c1; choose \
             another ifname"
        );
        let e = d
            .plan_port(&req("/run/netns/c2", "red", "10.77.0.11"))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Exists);
        assert_eq!(
            e.message,
            "port \"c2\": address 10.77.0.11 is already used by port \"c1\" on network red; \
             choose another address"
        );
        // The same address on another network, another namespace: fine, and
        // the plan takes the daemon's settings.
        let plan = d
            .plan_port(&req("/run/netns/c2", "blue", "10.77.0.11"))
            .unwrap();
        let (spec, persistent) = create(&plan);
        assert_eq!(spec.queues, d.engine.workers());
        assert_eq!(spec.vnet_hdr, d.engine.offload());
        assert!(!persistent, "no state directory");
        d.ports.remove("c1");
        d.shutdown();
    }

    #[test]
    fn gone_reasons_read_as_the_log_says() {
        assert_eq!(
            GoneReason::Dataplane(GoneCause::Eof).to_string(),
            "the port's fd reached end of file"
        );
        assert_eq!(
            GoneReason::NamespaceGone.to_string(),
            "its namespace is gone"
        );
        assert_eq!(
            GoneReason::NamespaceReplaced.to_string(),
            "its namespace file now names another namespace"
        );
    }
}
