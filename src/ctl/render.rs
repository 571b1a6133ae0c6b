//! Human output of the CLI: aligned tables and one-line confirmations.
//!
//! Kept in the library, apart from argument parsing, so the exact text is
//! unit-tested and `--json` (the raw result) stays the stable interface for
//! scripts: these tables may change, the protocol payloads may not.

use std::fmt::Write as _;

use super::proto::{
    FdbChanged, FdbFlushed, FdbRow, NetworkInfo, NetworkRemoved, PortInfo, PortRemoved, StatsReply,
};
use crate::fdb::EntryKind;

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
    let mut t = Table::new(&["NAME", "SUBNET", "GATEWAY", "MTU", "PORTS"]).right_align(&[3, 4]);
    for n in nets {
        t.row(vec![
            n.name.clone(),
            or_dash(&n.subnet),
            or_dash(&n.gateway),
            n.mtu.to_string(),
            n.ports.len().to_string(),
        ]);
    }
    t.render()
}

pub fn network_created(n: &NetworkInfo) -> String {
    let mut s = format!("network {} created", n.name);
    if let Some(sub) = n.subnet {
        let _ = write!(s, ", subnet {sub}");
    }
    if let Some(gw) = n.gateway {
        let _ = write!(s, ", gateway {gw}");
    }
    let _ = writeln!(s, ", mtu {}", n.mtu);
    s
}

pub fn network_removed(r: &NetworkRemoved) -> String {
    if r.removed_ports.is_empty() {
        format!("network {} removed\n", r.name)
    } else {
        format!(
            "network {} removed with its ports {}\n",
            r.name,
            r.removed_ports.join(", ")
        )
    }
}

pub fn ports(ports: &[PortInfo]) -> String {
    let mut t = Table::new(&["NAME", "NETWORK", "IFNAME", "MAC", "IP", "NETNS"]);
    for p in ports {
        t.row(vec![
            p.name.clone(),
            p.network.clone(),
            or_dash(&p.ifname),
            or_dash(&p.mac),
            or_dash(&p.ip),
            p.netns.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    t.render()
}

pub fn port_added(p: &PortInfo) -> String {
    let mut s = format!("port {} added to network {}", p.name, p.network);
    if let Some(i) = &p.ifname {
        let _ = write!(s, ": {i}");
        if let Some(ns) = &p.netns {
            let _ = write!(s, " in {ns}");
        }
    }
    if let Some(m) = p.mac {
        let _ = write!(s, ", mac {m}");
    }
    if let Some(ip) = p.ip {
        let _ = write!(s, ", ip {ip}");
    }
    let _ = writeln!(s, ", mtu {}", p.mtu);
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
            EntryKind::Learned => ("learned", age(r.age_ms)),
            EntryKind::Static => ("static", "-".to_string()),
        };
        t.row(vec![
            r.network.clone(),
            r.mac.to_string(),
            r.port.clone(),
            kind.to_string(),
            age,
        ]);
    }
    t.render()
}

pub fn fdb_added(c: &FdbChanged) -> String {
    format!(
        "static entry {} -> port {} added to network {}\n",
        c.mac, c.port, c.network
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

pub fn stats(s: &StatsReply) -> String {
    let mut t = Table::new(&[
        "PORT",
        "NETWORK",
        "RX_FRAMES",
        "RX_BYTES",
        "TX_FRAMES",
        "TX_BYTES",
        "DROPS",
    ])
    .right_align(&[2, 3, 4, 5, 6]);
    for p in &s.ports {
        let st = &p.stats;
        t.row(vec![
            p.name.clone(),
            p.network.clone(),
            st.rx_frames.to_string(),
            st.rx_bytes.to_string(),
            st.tx_frames.to_string(),
            st.tx_bytes.to_string(),
            st.total_drops().to_string(),
        ]);
    }
    let mut out = t.render();
    for p in &s.ports {
        let st = &p.stats;
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
        if !unlearned.is_empty() {
            notes.push(format!("not learned {}", unlearned.join(" ")));
        }
        if st.moves_in > 0 {
            notes.push(format!("moves_in={}", st.moves_in));
        }
        if !notes.is_empty() {
            let _ = writeln!(out, "  {}: {}", p.name, notes.join("; "));
        }
    }
    let f = &s.fdb;
    let _ = writeln!(
        out,
        "fdb: {} entries, {} learned, {} moved, {} aged out, refused {} (table full) {} (port \
         limit), {} static conflicts",
        f.entries,
        f.inserted,
        f.moved,
        f.aged_out,
        f.refused_table_full,
        f.refused_dest_limit,
        f.static_conflicts
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::proto::{PortKind, PortStatsRow};
    use crate::fdb::FdbStats;
    use crate::switch::DropReason;
    use crate::switch::PortStats;
    use crate::wire::MacAddr;

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
                port: "c1".into(),
                kind: EntryKind::Learned,
                age_ms: 12_300,
            },
            FdbRow {
                network: "red".into(),
                mac: MacAddr([2, 0, 0, 0, 0, 2]),
                port: "c2".into(),
                kind: EntryKind::Static,
                age_ms: 0,
            },
        ];
        assert_eq!(
            fdb(&rows),
            "NETWORK  MAC                PORT  TYPE     AGE\n\
             red      02:00:00:00:00:01  c1    learned  12s\n\
             red      02:00:00:00:00:02  c2    static     -\n"
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
        };
        assert_eq!(
            ports(std::slice::from_ref(&p)),
            "NAME  NETWORK  IFNAME  MAC                IP             NETNS\n\
             c1    red      eth0    02:00:00:00:00:01  10.77.0.11/24  /run/netns/c1\n"
        );
        assert_eq!(
            port_added(&p),
            "port c1 added to network red: eth0 in /run/netns/c1, mac 02:00:00:00:00:01, ip \
             10.77.0.11/24, mtu 1500\n"
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
                },
                PortStatsRow {
                    name: "b".into(),
                    network: "red".into(),
                    stats: PortStats::default().snapshot(),
                },
            ],
            fdb: FdbStats::default(),
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
}
