//! Human output of the CLI: aligned tables and one-line confirmations.
//!
//! Pure functions from protocol results to text, kept apart from argument
//! parsing and the socket, so the exact text is unit-tested; `--json` (the
//! raw result) stays the stable interface for scripts: these tables may
//! change, the protocol payloads may not.

use std::fmt::Write as _;

use vxswitch::ctl::proto::{
    ClusterStatus, FdbChanged, FdbFlushed, FdbKind, FdbRow, GatewayPort, GatewayRow, NetworkInfo,
    NetworkRemoved, NetworkScope, PortInfo, PortKind, PortRemoved, StatsReply, UplinkInfo,
    VtepRemoved, VtepRow,
};
use vxswitch::switch::PortStatsSnapshot;
use vxswitch::vxlan::VxlanSnapshot;

/// Columns separated by two spaces; numeric columns right-aligned; no
/// trailing spaces.
pub struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            right: vec![false; header.len()],
            rows: Vec::new(),
        }
    }

    /// Right-aligns the given columns (numbers).
    pub fn right_align(mut self, cols: &[usize]) -> Table {
        for &c in cols {
            if let Some(r) = self.right.get_mut(c) {
                *r = true;
            }
        }
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for r in &self.rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for r in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate().take(n) {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = width[i].saturating_sub(cell.chars().count());
                if self.right[i] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    if i + 1 < n {
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

fn or_dash<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string)
}

/// `12s`, `3m05s`, `2h07m`: the age of an FDB entry.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

pub fn networks(nets: &[NetworkInfo]) -> String {
    let mut t = Table::new(&[
        "NAME", "SUBNET", "GATEWAY", "MTU", "VNI", "VTEPS", "PORTS", "SCOPE", "UPLINK",
    ])
    .right_align(&[3, 4, 5, 6]);
    for n in nets {
        let vteps = match n.vni {
            Some(_) if n.learn_vteps => format!("{}+learn", n.vteps.len()),
            Some(_) => n.vteps.len().to_string(),
            None => "-".to_string(),
        };
        let gateway = match (n.gateway, n.gateway_port) {
            (Some(gw), GatewayPort::Host | GatewayPort::Switch) => {
                format!("{gw} ({})", n.gateway_port)
            }
            _ => or_dash(&n.gateway),
        };
        t.row(vec![
            n.name.clone(),
            or_dash(&n.subnet),
            gateway,
            n.mtu.to_string(),
            or_dash(&n.vni),
            vteps,
            n.ports.len().to_string(),
            n.scope.to_string(),
            uplink_of(n).unwrap_or_else(|| "-".to_string()),
        ]);
    }
    t.render()
}

/// A network's uplink as `network ls` shows it: `eth0`, `eth0 vlan 10`.
fn uplink_of(n: &NetworkInfo) -> Option<String> {
    let ifname = n.uplink.as_ref()?;
    Some(match n.vlan {
        Some(vid) => format!("{ifname} vlan {vid}"),
        None => ifname.clone(),
    })
}

pub fn network_created(n: &NetworkInfo) -> String {
    let mut s = format!("network {} created", n.name);
    if let Some(sub) = n.subnet {
        let _ = write!(s, ", subnet {sub}");
    }
    if let Some(gw) = n.gateway {
        let _ = write!(s, ", gateway {gw}");
        match (n.gateway_port, &n.gateway_ifname, n.gateway_mac) {
            (GatewayPort::Host, Some(i), _) => {
                let _ = write!(s, " on host interface {i}");
            }
            (GatewayPort::Switch, _, Some(mac)) => {
                let _ = write!(s, " answered by the switch as {mac}");
            }
            _ => {}
        }
    }
    let _ = write!(s, ", mtu {}", n.mtu);
    if let Some(vni) = n.vni {
        let _ = write!(s, ", vni {vni}");
    }
    if !n.vteps.is_empty() {
        let _ = write!(s, ", vteps {}", n.vteps.join(" "));
    }
    if n.learn_vteps {
        s.push_str(", learning VTEPs");
    }
    if n.scope == NetworkScope::Cluster {
        s.push_str(", in the cluster");
    }
    if let Some(u) = uplink_of(n) {
        let _ = write!(s, ", uplink {u}");
    }
    s.push('\n');
    s
}

pub fn network_removed(r: &NetworkRemoved) -> String {
    let mut with = Vec::new();
    if !r.removed_ports.is_empty() {
        with.push(format!("its ports {}", r.removed_ports.join(", ")));
    }
    if !r.removed_vteps.is_empty() {
        with.push(format!("its VTEPs {}", r.removed_vteps.join(", ")));
    }
    if with.is_empty() {
        format!("network {} removed\n", r.name)
    } else {
        format!("network {} removed with {}\n", r.name, with.join(" and "))
    }
}

pub fn ports(ports: &[PortInfo]) -> String {
    let mut t = Table::new(&[
        "NAME",
        "NETWORK",
        "IFNAME",
        "MAC",
        "IP",
        "NETNS",
        "CONTAINER",
    ]);
    for p in ports {
        t.row(vec![
            p.name.clone(),
            p.network.clone(),
            // A veth port's container end @ its host end, as ip(8) shows a veth.
            match (&p.ifname, &p.host_ifname) {
                (Some(i), Some(h)) => format!("{i}@{h}"),
                (i, _) => or_dash(i),
            },
            or_dash(&p.mac),
            or_dash(&p.ip),
            p.netns.clone().unwrap_or_else(|| "-".into()),
            match (&p.container, p.gateway, &p.uplink) {
                (None, true, _) => "(gateway)".to_string(),
                (None, _, Some(u)) => uplink_label(u),
                (c, _, _) => or_dash(c),
            },
        ]);
    }
    t.render()
}

/// An uplink port as `port ls` and `stats` show it: `(uplink vlan 10: up)`.
fn uplink_label(u: &UplinkInfo) -> String {
    let vlan = u.vlan.map(|v| format!(" vlan {v}")).unwrap_or_default();
    format!("(uplink{vlan}: {})", u.state)
}

pub fn port_added(p: &PortInfo) -> String {
    let mut s = format!("port {} added to network {}", p.name, p.network);
    if let Some(i) = &p.ifname {
        let _ = write!(s, ": {i}");
        if let Some(ns) = &p.netns {
            let _ = write!(s, " in {ns}");
        }
        if let Some(h) = &p.host_ifname {
            let _ = write!(s, " (veth, host end {h})");
        }
    }
    if let Some(m) = p.mac {
        let _ = write!(s, ", mac {m}");
    }
    if let Some(ip) = p.ip {
        let _ = write!(s, ", ip {ip}");
    }
    let _ = write!(s, ", mtu {}", p.mtu);
    if p.ip_guard {
        s.push_str("; IP source guard on");
    } else if !p.port_security && p.kind != PortKind::Fd {
        s.push_str("; port security off (any source MAC)");
    }
    s.push('\n');
    s
}

pub fn port_removed(r: &PortRemoved) -> String {
    format!(
        "port {} removed from network {} ({} FDB entr{} flushed)\n",
        r.name,
        r.network,
        r.fdb_flushed,
        if r.fdb_flushed == 1 { "y" } else { "ies" }
    )
}

pub fn fdb(rows: &[FdbRow]) -> String {
    let mut t = Table::new(&["NETWORK", "MAC", "PORT", "TYPE", "AGE"]).right_align(&[4]);
    for r in rows {
        let (kind, age) = match r.kind {
            FdbKind::Learned => ("learned", age(r.age_ms)),
            FdbKind::Static => ("static", "-".to_string()),
            FdbKind::Cluster => ("cluster", "-".to_string()),
        };
        t.row(vec![
            r.network.clone(),
            r.mac.to_string(),
            dest(&r.port, &r.vtep),
            kind.to_string(),
            age,
        ]);
    }
    t.render()
}

/// Where an FDB entry points: a port's name, or `vtep ADDR`.
fn dest(port: &Option<String>, vtep: &Option<String>) -> String {
    match (port, vtep) {
        (Some(p), _) => p.clone(),
        (None, Some(v)) => format!("vtep {v}"),
        (None, None) => "-".to_string(),
    }
}

pub fn fdb_added(c: &FdbChanged) -> String {
    let to = match (&c.port, &c.vtep) {
        (Some(p), _) => format!("port {p}"),
        _ => dest(&c.port, &c.vtep),
    };
    format!(
        "static entry {} -> {to} added to network {}\n",
        c.mac, c.network
    )
}

pub fn fdb_deleted(c: &FdbChanged) -> String {
    format!("entry {} deleted from network {}\n", c.mac, c.network)
}

pub fn fdb_flushed(f: &FdbFlushed) -> String {
    format!(
        "{} learned entr{} flushed\n",
        f.removed,
        if f.removed == 1 { "y" } else { "ies" }
    )
}

/// `cluster status`: one `key: value` line each, the problem first.
pub fn cluster_status(s: &ClusterStatus) -> String {
    let mut out = String::new();
    let state = match (s.connected, s.registered, s.synced, s.refused) {
        (_, _, _, true) => "refused",
        (true, true, true, _) => "in sync",
        (true, _, _, _) => "joining",
        (false, _, _, _) => "etcd unreachable (last known state kept)",
    };
    let _ = writeln!(out, "host:             {} (VTEP {})", s.host_id, s.vtep);
    let _ = writeln!(out, "etcd:             {}", s.endpoints.join(","));
    let _ = writeln!(out, "state:            {state}");
    if let Some(e) = &s.error {
        let _ = writeln!(out, "error:            {e}");
    }
    if let Some(e) = &s.apply_error {
        let _ = writeln!(out, "apply error:      {e}");
    }
    let _ = writeln!(
        out,
        "lease:            {} (TTL {} s)",
        s.lease.as_deref().unwrap_or("-"),
        s.ttl_secs
    );
    let _ = writeln!(out, "revision:         {}", s.revision);
    let _ = writeln!(
        out,
        "hosts:            {}, networks {}, remote endpoints {}, published {}",
        s.hosts, s.networks, s.remote_endpoints, s.published
    );
    if let Some(ms) = s.clock_skew_ms {
        let _ = writeln!(out, "clock skew:       {ms} ms");
    }
    let _ = writeln!(
        out,
        "counters:         resyncs {}, compactions {}, lease losses {}, takeovers {}, \
         apply failures {}, refused records {}",
        s.resyncs, s.compactions, s.lease_losses, s.takeovers, s.apply_failures, s.refused_records
    );
    out
}

pub fn vteps(vteps: &[VtepRow]) -> String {
    let mut t = Table::new(&[
        "NETWORK",
        "VNI",
        "VTEP",
        "TYPE",
        "RX_FRAMES",
        "TX_FRAMES",
        "DROPS",
    ])
    .right_align(&[1, 4, 5, 6]);
    for v in vteps {
        t.row(vec![
            v.network.clone(),
            v.vni.to_string(),
            v.addr.clone(),
            match (v.cluster, v.dynamic) {
                (true, _) => "cluster",
                (false, true) => "dynamic",
                (false, false) => "static",
            }
            .to_string(),
            v.stats.rx_frames.to_string(),
            v.stats.tx_frames.to_string(),
            v.stats.total_drops().to_string(),
        ]);
    }
    let mut out = t.render();
    for v in vteps {
        let notes = counter_notes(&v.stats);
        if !notes.is_empty() {
            let _ = writeln!(out, "  {} {}: {}", v.network, v.addr, notes.join("; "));
        }
    }
    out
}

pub fn vtep_added(v: &VtepRow) -> String {
    format!(
        "vtep {} added to network {} (VNI {})\n",
        v.addr, v.network, v.vni
    )
}

pub fn vtep_removed(r: &VtepRemoved) -> String {
    format!(
        "vtep {} removed from network {} ({} FDB entr{} flushed)\n",
        r.addr,
        r.network,
        r.fdb_flushed,
        if r.fdb_flushed == 1 { "y" } else { "ies" }
    )
}

/// The non-zero drop reasons and learning refusals of a port or VTEP.
fn counter_notes(st: &PortStatsSnapshot) -> Vec<String> {
    let drops: Vec<String> = st
        .drops
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(why, n)| format!("{why}={n}"))
        .collect();
    let mut notes = Vec::new();
    if !drops.is_empty() {
        notes.push(format!("drops {}", drops.join(" ")));
    }
    let mut unlearned = Vec::new();
    if st.learn_refused_table_full > 0 {
        unlearned.push(format!("table_full={}", st.learn_refused_table_full));
    }
    if st.learn_refused_port_limit > 0 {
        unlearned.push(format!("port_limit={}", st.learn_refused_port_limit));
    }
    if st.learn_refused_net_limit > 0 {
        unlearned.push(format!("network_budget={}", st.learn_refused_net_limit));
    }
    if !unlearned.is_empty() {
        notes.push(format!("not learned {}", unlearned.join(" ")));
    }
    if st.moves_in > 0 {
        notes.push(format!("moves_in={}", st.moves_in));
    }
    notes
}

/// One line of VXLAN socket totals, with the non-zero drop reasons.
fn vxlan_line(x: &VxlanSnapshot) -> String {
    let mut s = format!(
        "vxlan: udp port {}, rx {} datagrams ({} bytes), tx {} datagrams ({} bytes)",
        x.port, x.rx_datagrams, x.rx_bytes, x.tx_datagrams, x.tx_bytes
    );
    let drops: Vec<String> = x
        .drops
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(why, n)| format!("{why}={n}"))
        .collect();
    if !drops.is_empty() {
        let _ = write!(s, ", drops {}", drops.join(" "));
    }
    s.push('\n');
    s
}

/// One row per port or VTEP (`first` names the column), then a line for
/// each row with non-zero drop or learning counters (naming the network too
/// when `note_network`: one VTEP address may serve several networks).
fn counters_table<'a>(
    first: &'static str,
    note_network: bool,
    rows: impl Iterator<Item = (String, &'a str, &'a PortStatsSnapshot)> + Clone,
) -> String {
    let mut t = Table::new(&[
        first,
        "NETWORK",
        "RX_FRAMES",
        "RX_BYTES",
        "TX_FRAMES",
        "TX_BYTES",
        "DROPS",
    ])
    .right_align(&[2, 3, 4, 5, 6]);
    for (name, network, st) in rows.clone() {
        t.row(vec![
            name,
            network.to_string(),
            st.rx_frames.to_string(),
            st.rx_bytes.to_string(),
            st.tx_frames.to_string(),
            st.tx_bytes.to_string(),
            st.total_drops().to_string(),
        ]);
    }
    let mut out = t.render();
    for (name, network, st) in rows {
        let notes = counter_notes(st);
        if notes.is_empty() {
            continue;
        }
        if note_network {
            let _ = writeln!(out, "  {name} ({network}): {}", notes.join("; "));
        } else {
            let _ = writeln!(out, "  {name}: {}", notes.join("; "));
        }
    }
    out
}

/// One `switch` gateway's counters.
fn gateway_line(g: &GatewayRow) -> String {
    let st = &g.stats;
    let mut s = format!(
        "gateway {} ({}, {} {}): {} neighbor replies, {} echo replies, {} ignored, {} unanswered",
        g.port,
        g.network,
        g.gateway,
        g.mac,
        st.neighbor_replies,
        st.echo_replies,
        st.ignored,
        st.unanswered
    );
    if st.tx_errors > 0 {
        let _ = write!(s, ", {} tx errors", st.tx_errors);
    }
    s.push('\n');
    s
}

/// The eBPF fast path: active with its ports and what they forwarded, or
/// why not (docs/fastpath.md).
fn fastpath_line(
    f: &vxswitch::ctl::proto::FastPathStatus,
    ports: &[vxswitch::ctl::proto::PortStatsRow],
) -> String {
    if !f.active {
        return match &f.reason {
            Some(r) => format!("{r}\n"),
            None => format!("fast path {}\n", f.mode),
        };
    }
    let (frames, bytes) = ports
        .iter()
        .filter_map(|p| p.fast)
        .fold((0, 0), |(n, b), x| (n + x.rx_frames, b + x.rx_bytes));
    format!(
        "fast path: active (ebpf), {} port(s), {frames} frames / {bytes} bytes forwarded in the kernel\n",
        f.ports
    )
}

pub fn stats(s: &StatsReply) -> String {
    let mut out = counters_table(
        "PORT",
        false,
        s.ports
            .iter()
            .map(|p| (p.name.clone(), p.network.as_str(), &p.stats)),
    );
    if !s.vteps.is_empty() {
        out.push_str(&counters_table(
            "VTEP",
            true,
            s.vteps
                .iter()
                .map(|v| (v.addr.clone(), v.network.as_str(), &v.stats)),
        ));
    }
    for (p, u) in s.ports.iter().filter_map(|p| Some((p, p.uplink.as_ref()?))) {
        let _ = writeln!(
            out,
            "uplink {} (network {}): {} {}, storm control {}, attached again {} time(s), \
             {} dropped by the kernel (socket queue full){}",
            p.name,
            p.network,
            u.ifname,
            uplink_label(u),
            if u.storm_pps == 0 {
                "off".to_string()
            } else {
                format!("{} pps", u.storm_pps)
            },
            u.reattached,
            u.rx_queue_drops,
            u.rx.as_deref()
                .map_or(String::new(), |rx| format!(", receive: {rx}"))
        );
    }
    if let Some(x) = &s.vxlan {
        out.push_str(&vxlan_line(x));
    }
    // Off (the default) is not worth a line; asked for and unavailable is.
    if let Some(f) = s.fastpath.as_ref().filter(|f| f.mode != "off") {
        out.push_str(&fastpath_line(f, &s.ports));
    }
    for g in &s.gateways {
        out.push_str(&gateway_line(g));
    }
    let f = &s.fdb;
    let _ = writeln!(
        out,
        "fdb: {} entries, {} learned, {} moved, {} aged out, refused {} (table full) {} (port \
         limit) {} (network budget), {} static conflicts",
        f.entries,
        f.inserted,
        f.moved,
        f.aged_out,
        f.refused_table_full,
        f.refused_dest_limit,
        f.refused_net_limit,
        f.static_conflicts
    );
    // A network whose budget refused MACs: who is flooding, and how full.
    for n in s.networks.iter().filter(|n| n.refused > 0) {
        let _ = writeln!(
            out,
            "  fdb {}: {} of {} entries, refused {} (network budget)",
            n.network, n.entries, n.max, n.refused
        );
    }
    for n in &s.suppress {
        let _ = writeln!(
            out,
            "suppress {}: {} bindings, {} answered, {} missed (flooded), {} ignored (flooded)",
            n.network, n.bindings, n.stats.answered, n.stats.missed, n.stats.ignored
        );
    }
    let c = &s.control;
    let _ = writeln!(
        out,
        "control: {} clients, {} idle evicted, {} refused busy, {} request timeouts, {} reply \
         timeouts, {} idle closed, {} replies refused",
        c.clients,
        c.evicted,
        c.refused_busy,
        c.request_timeouts,
        c.reply_timeouts,
        c.idle_closed,
        c.replies_refused
    );
    for w in &s.workers {
        let total = w.busy_ms.saturating_add(w.idle_ms).max(1);
        let spin = if w.spin_windows > 0 {
            format!(
                ", spun {} windows ({} without a frame, {} preempted)",
                w.spin_windows, w.spin_misses, w.spin_preempted
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "worker {}: busy {:.1}s, idle {:.1}s ({}% busy){spin}",
            w.worker,
            w.busy_ms as f64 / 1000.0,
            w.idle_ms as f64 / 1000.0,
            w.busy_ms.saturating_mul(100) / total
        );
    }
    for p in &s.pending {
        let _ = writeln!(out, "pending restore: {}: {} (retried)", p.item, p.reason);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vxswitch::ctl::proto::{NetworkFdbRow, PortKind, PortStatsRow};
    use vxswitch::fdb::FdbStats;
    use vxswitch::switch::DropReason;
    use vxswitch::switch::PortStats;
    use vxswitch::wire::MacAddr;

    #[test]
    fn tables_align_and_have_no_trailing_spaces() {
        let mut t = Table::new(&["NAME", "N"]).right_align(&[1]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["longer".into(), "100".into()]);
        assert_eq!(t.render(), "NAME      N\na         1\nlonger  100\n");
        let mut t = Table::new(&["A", "B"]);
        t.row(vec!["xyz".into(), String::new()]);
        assert_eq!(t.render(), "A    B\nxyz\n");
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(59_999), "59s");
        assert_eq!(age(65_000), "1m05s");
        assert_eq!(age(3_600_000 + 7 * 60_000), "1h07m");
    }

    #[test]
    fn fdb_and_ports_tables() {
        let rows = [
            FdbRow {
                network: "red".into(),
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                port: Some("c1".into()),
                vtep: None,
                kind: FdbKind::Learned,
                age_ms: 12_300,
            },
            FdbRow {
                network: "red".into(),
                mac: MacAddr([2, 0, 0, 0, 0, 2]),
                port: Some("c2".into()),
                vtep: None,
                kind: FdbKind::Static,
                age_ms: 0,
            },
            FdbRow {
                network: "red".into(),
                mac: MacAddr([2, 0, 0, 0, 0, 3]),
                port: None,
                vtep: Some("198.18.0.2:4789".into()),
                kind: FdbKind::Learned,
                age_ms: 1_000,
            },
        ];
        assert_eq!(
            fdb(&rows),
            "NETWORK  MAC                PORT                  TYPE     AGE\n\
             red      02:00:00:00:00:01  c1                    learned  12s\n\
             red      02:00:00:00:00:02  c2                    static     -\n\
             red      02:00:00:00:00:03  vtep 198.18.0.2:4789  learned   1s\n"
        );
        let p = PortInfo {
            name: "c1".into(),
            network: "red".into(),
            kind: PortKind::Created,
            netns: Some("/run/netns/c1".into()),
            ifname: Some("eth0".into()),
            mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
            ip: Some("10.77.0.11/24".parse().unwrap()),
            mtu: 1500,
            container: Some("web-1".into()),
            offload: true,
            gateway: false,
            port_security: true,
            ip_guard: false,
            uplink: None,
            backend: Default::default(),
            host_ifname: None,
        };
        assert_eq!(
            ports(std::slice::from_ref(&p)),
            "NAME  NETWORK  IFNAME  MAC                IP             NETNS          CONTAINER\n\
             c1    red      eth0    02:00:00:00:00:01  10.77.0.11/24  /run/netns/c1  web-1\n"
        );
        assert_eq!(
            port_added(&p),
            "port c1 added to network red: eth0 in /run/netns/c1, mac 02:00:00:00:00:01, ip \
             10.77.0.11/24, mtu 1500\n"
        );
    }

    #[test]
    fn the_fast_path_line_says_active_or_why_not() {
        use vxswitch::ctl::proto::{FastPathStatus, FastPortStats};
        let row = PortStatsRow {
            name: "v1".into(),
            network: "red".into(),
            stats: PortStats::default().snapshot(),
            uplink: None,
            fast: Some(FastPortStats {
                rx_frames: 7,
                rx_bytes: 700,
                ..Default::default()
            }),
        };
        let on = FastPathStatus {
            mode: "ebpf".into(),
            active: true,
            reason: None,
            ports: 1,
        };
        assert_eq!(
            fastpath_line(&on, std::slice::from_ref(&row)),
            "fast path: active (ebpf), 1 port(s), 7 frames / 700 bytes forwarded in the kernel\n"
        );
        let why = FastPathStatus {
            active: false,
            reason: Some("fast path unavailable: built without clang".into()),
            ..on
        };
        assert_eq!(
            fastpath_line(&why, &[row]),
            "fast path unavailable: built without clang\n"
        );
    }

    #[test]
    fn stats_list_nonzero_drop_reasons() {
        let st = PortStats::default();
        st.rx_frames.add(3);
        st.count_drop(DropReason::Runt);
        st.count_drop(DropReason::TxQueueFull);
        st.count_drop(DropReason::TxQueueFull);
        let s = StatsReply {
            ports: vec![
                PortStatsRow {
                    name: "a".into(),
                    network: "red".into(),
                    stats: st.snapshot(),
                    uplink: None,
                    fast: None,
                },
                PortStatsRow {
                    name: "b".into(),
                    network: "red".into(),
                    stats: PortStats::default().snapshot(),
                    uplink: None,
                    fast: None,
                },
            ],
            fdb: FdbStats::default(),
            vxlan: None,
            vteps: Vec::new(),
            gateways: Vec::new(),
            control: Default::default(),
            pending: Vec::new(),
            suppress: Vec::new(),
            workers: Vec::new(),
            fastpath: None,
            networks: Vec::new(),
        };
        let out = stats(&s);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "PORT  NETWORK  RX_FRAMES  RX_BYTES  TX_FRAMES  TX_BYTES  DROPS"
        );
        assert_eq!(
            lines[1],
            "a     red              3         0          0         0      3"
        );
        assert_eq!(lines[3], "  a: drops runt=1 tx_queue_full=2");
        assert!(lines[4].starts_with("fdb: 0 entries"), "{out}");
    }

    #[test]
    fn stats_show_spoofing_and_spent_network_budgets() {
        let st = PortStats::default();
        st.count_drop(DropReason::SpoofedSrc);
        st.learn_refused_net_limit.add(5);
        let s = StatsReply {
            ports: vec![PortStatsRow {
                name: "evil".into(),
                network: "red".into(),
                stats: st.snapshot(),
                uplink: None,
                fast: None,
            }],
            fdb: FdbStats {
                refused_net_limit: 5,
                ..FdbStats::default()
            },
            vxlan: None,
            vteps: Vec::new(),
            gateways: Vec::new(),
            networks: vec![
                NetworkFdbRow {
                    network: "red".into(),
                    entries: 16,
                    max: 16,
                    refused: 5,
                },
                NetworkFdbRow {
                    network: "blue".into(),
                    entries: 2,
                    max: 16384,
                    refused: 0,
                },
            ],
            control: Default::default(),
            pending: Vec::new(),
            suppress: Vec::new(),
            workers: Vec::new(),
            fastpath: None,
        };
        let out = stats(&s);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[2],
            "  evil: drops spoofed_src=1; not learned network_budget=5"
        );
        assert!(
            lines[3].contains("refused 0 (table full) 0 (port limit) 5 (network budget)"),
            "{out}"
        );
        assert_eq!(
            lines[4],
            "  fdb red: 16 of 16 entries, refused 5 (network budget)"
        );
        assert!(lines[5].starts_with("control: "), "{out}");
        assert_eq!(lines.len(), 6, "{out}");
    }

    fn vtep_row(addr: &str, dynamic: bool, stats: &PortStats) -> VtepRow {
        VtepRow {
            network: "blue".into(),
            vni: 4242,
            addr: addr.into(),
            dynamic,
            cluster: false,
            stats: stats.snapshot(),
        }
    }

    #[test]
    fn vtep_tables_and_the_vxlan_line() {
        let busy = PortStats::default();
        busy.rx_frames.add(7);
        busy.tx_frames.add(5);
        busy.count_drop(DropReason::Oversize);
        let rows = vec![
            vtep_row("198.18.0.2:4789", false, &busy),
            vtep_row("[fd00::9]:4789", true, &PortStats::default()),
        ];
        assert_eq!(
            vteps(&rows),
            "NETWORK   VNI  VTEP             TYPE     RX_FRAMES  TX_FRAMES  DROPS\n\
             blue     4242  198.18.0.2:4789  static           7          5      1\n\
             blue     4242  [fd00::9]:4789   dynamic          0          0      0\n  \
             blue 198.18.0.2:4789: drops oversize=1\n"
        );
        assert_eq!(
            vtep_added(&rows[0]),
            "vtep 198.18.0.2:4789 added to network blue (VNI 4242)\n"
        );
        let mut x = VxlanSnapshot {
            port: 4789,
            rx_datagrams: 3,
            rx_bytes: 300,
            ..Default::default()
        };
        x.drops.insert("unknown_vtep".into(), 2);
        x.drops.insert("truncated".into(), 0);
        let s = StatsReply {
            ports: Vec::new(),
            fdb: FdbStats::default(),
            vxlan: Some(x),
            vteps: rows,
            gateways: Vec::new(),
            control: Default::default(),
            pending: Vec::new(),
            suppress: Vec::new(),
            workers: Vec::new(),
            fastpath: None,
            networks: Vec::new(),
        };
        let out = stats(&s);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[1],
            "VTEP             NETWORK  RX_FRAMES  RX_BYTES  TX_FRAMES  TX_BYTES  DROPS"
        );
        assert!(
            lines[2].starts_with("198.18.0.2:4789  blue             7"),
            "{out}"
        );
        assert_eq!(lines[4], "  198.18.0.2:4789 (blue): drops oversize=1");
        assert_eq!(
            lines[5],
            "vxlan: udp port 4789, rx 3 datagrams (300 bytes), tx 0 datagrams (0 bytes), drops \
             unknown_vtep=2"
        );
        assert!(lines[6].starts_with("fdb: "), "{out}");
    }

    #[test]
    fn gateway_ports_are_shown() {
        let n = NetworkInfo {
            name: "lab".into(),
            subnet: Some("10.88.0.0/24".parse().unwrap()),
            gateway: Some("10.88.0.1".parse().unwrap()),
            mtu: 1500,
            vni: None,
            learn_vteps: false,
            vteps: Vec::new(),
            ports: vec!["vxgw-lab".into()],
            gateway_port: GatewayPort::Host,
            gateway_ifname: Some("vxgw-lab".into()),
            gateway_mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
            scope: NetworkScope::Local,
            neigh_suppress: false,
            uplink: None,
            vlan: None,
        };
        assert_eq!(
            network_created(&n),
            "network lab created, subnet 10.88.0.0/24, gateway 10.88.0.1 on host interface \
             vxgw-lab, mtu 1500\n"
        );
        let sw = NetworkInfo {
            gateway_port: GatewayPort::Switch,
            gateway_ifname: None,
            ..n.clone()
        };
        assert_eq!(
            network_created(&sw),
            "network lab created, subnet 10.88.0.0/24, gateway 10.88.0.1 answered by the switch \
             as 02:00:00:00:00:01, mtu 1500\n"
        );
        assert!(
            networks(&[n]).contains("10.88.0.0/24  10.88.0.1 (host)  1500"),
            "{}",
            networks(&[sw])
        );
        let p = PortInfo {
            name: "vxgw-lab".into(),
            network: "lab".into(),
            kind: PortKind::Responder,
            netns: None,
            ifname: None,
            mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
            ip: Some("10.88.0.1/24".parse().unwrap()),
            mtu: 1500,
            container: None,
            offload: false,
            gateway: true,
            port_security: true,
            ip_guard: false,
            uplink: None,
            backend: Default::default(),
            host_ifname: None,
        };
        assert!(ports(&[p]).lines().nth(1).unwrap().ends_with(" (gateway)"));
        let g = GatewayRow {
            network: "lab".into(),
            port: "vxgw-lab".into(),
            gateway: "10.88.0.1".parse().unwrap(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            stats: vxswitch::gateway::GatewayStatsSnapshot {
                neighbor_replies: 1,
                echo_replies: 3,
                ignored: 7,
                unanswered: 2,
                tx_errors: 0,
            },
        };
        assert_eq!(
            gateway_line(&g),
            "gateway vxgw-lab (lab, 10.88.0.1 02:00:00:00:00:01): 1 neighbor replies, 3 echo \
             replies, 7 ignored, 2 unanswered\n"
        );
    }

    #[test]
    fn networks_show_their_uplink_and_vlan() {
        let n: NetworkInfo = serde_json::from_value(serde_json::json!({
            "name": "v10", "subnet": "10.10.0.0/24", "gateway": null, "mtu": 1500,
            "vni": null, "learn_vteps": false, "vteps": [], "ports": ["v10.uplink"],
            "uplink": "eth0", "vlan": 10
        }))
        .unwrap();
        let lan = NetworkInfo {
            name: "lan".into(),
            subnet: None,
            vlan: None,
            ..n.clone()
        };
        assert_eq!(
            networks(&[n.clone(), lan.clone()]),
            "NAME  SUBNET        GATEWAY   MTU  VNI  VTEPS  PORTS  SCOPE  UPLINK\n\
             v10   10.10.0.0/24  -        1500    -      -      1  local  eth0 vlan 10\n\
             lan   -             -        1500    -      -      1  local  eth0\n"
        );
        assert_eq!(
            network_created(&n),
            "network v10 created, subnet 10.10.0.0/24, mtu 1500, uplink eth0 vlan 10\n"
        );
        assert_eq!(
            network_created(&lan),
            "network lan created, mtu 1500, uplink eth0\n"
        );
    }

    #[test]
    fn networks_show_vni_and_vteps() {
        let n = NetworkInfo {
            name: "blue".into(),
            subnet: None,
            gateway: None,
            mtu: 1450,
            vni: Some(4242),
            learn_vteps: false,
            vteps: vec!["198.18.0.2:4789".into()],
            ports: vec!["c1".into()],
            gateway_port: Default::default(),
            gateway_ifname: None,
            gateway_mac: None,
            scope: NetworkScope::Cluster,
            neigh_suppress: true,
            uplink: None,
            vlan: None,
        };
        let plain = NetworkInfo {
            name: "red".into(),
            vni: None,
            vteps: Vec::new(),
            mtu: 1500,
            scope: NetworkScope::Local,
            ..n.clone()
        };
        assert_eq!(
            networks(&[n.clone(), plain]),
            "NAME  SUBNET  GATEWAY   MTU   VNI  VTEPS  PORTS  SCOPE    UPLINK\n\
             blue  -       -        1450  4242      1      1  cluster  -\n\
             red   -       -        1500     -      -      1  local    -\n"
        );
        assert_eq!(
            network_created(&n),
            "network blue created, mtu 1450, vni 4242, vteps 198.18.0.2:4789, in the cluster\n"
        );
        let r = NetworkRemoved {
            name: "blue".into(),
            removed_ports: vec!["c1".into()],
            removed_vteps: vec!["198.18.0.2:4789".into()],
        };
        assert_eq!(
            network_removed(&r),
            "network blue removed with its ports c1 and its VTEPs 198.18.0.2:4789\n"
        );
    }
}
