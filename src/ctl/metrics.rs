//! `daemon --metrics`: the daemon's counters as a Prometheus page, and the
//! control requests counted by verb and result for it.
//!
//! The page is rendered on the control thread (one call between requests,
//! as `stats` reads the same shared counters without stopping the
//! dataplane) and served by [`crate::observe::MetricsServer`] on its own
//! thread, which waits at most [`RENDER_TIMEOUT`] for it. Names, labels and
//! what each family counts: `docs/observability.md`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::daemon::{Daemon, VERSION};
use super::proto::StatsArgs;
use super::server::DaemonCaller;
use crate::metrics::PortStatsSnapshot;
use crate::observe::{Exposition, Kind, MetricsServer, RenderError};

/// How long a scrape waits for the control thread's page.
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(5);

/// Control requests answered, by verb and result.
#[derive(Debug, Default)]
pub struct RequestCounts(BTreeMap<(&'static str, bool), u64>);

impl RequestCounts {
    pub fn count(&mut self, verb: &'static str, ok: bool) {
        *self.0.entry((verb, ok)).or_default() += 1;
    }
}

/// Starts the metrics endpoint on `addr` for the daemon `caller` reaches.
pub fn serve(addr: SocketAddr, caller: DaemonCaller) -> std::io::Result<MetricsServer> {
    MetricsServer::start(addr, move || {
        let (tx, rx) = crossbeam_channel::bounded(1);
        caller
            .post(Box::new(move |d: &mut Daemon| {
                let _ = tx.send(d.metrics_text());
            }))
            .map_err(|e| RenderError(e.to_string()))?;
        rx.recv_timeout(RENDER_TIMEOUT).map_err(|_| {
            RenderError(format!(
                "the control thread did not answer within {}s; try again",
                RENDER_TIMEOUT.as_secs()
            ))
        })
    })
}

/// The per-port (and per-VTEP) counters, one family each, for the rows
/// `rows` gives: (labels, snapshot).
fn port_families(
    e: &mut Exposition,
    prefix: Prefix,
    rows: &[(Vec<(&'static str, &str)>, &PortStatsSnapshot)],
) {
    let fam =
        |e: &mut Exposition, name: &'static str, help: &str, get: fn(&PortStatsSnapshot) -> u64| {
            e.family(name, Kind::Counter, help);
            for (labels, s) in rows {
                e.count(labels, get(s));
            }
        };
    let (what, names) = match prefix {
        Prefix::Port => (
            "port",
            [
                "vxswitch_port_rx_frames_total",
                "vxswitch_port_rx_bytes_total",
                "vxswitch_port_tx_frames_total",
                "vxswitch_port_tx_bytes_total",
                "vxswitch_port_drops_total",
            ],
        ),
        Prefix::Vtep => (
            "VTEP",
            [
                "vxswitch_vtep_rx_frames_total",
                "vxswitch_vtep_rx_bytes_total",
                "vxswitch_vtep_tx_frames_total",
                "vxswitch_vtep_tx_bytes_total",
                "vxswitch_vtep_drops_total",
            ],
        ),
    };
    fam(
        e,
        names[0],
        &format!("Frames the switch received from the {what}."),
        |s| s.rx_frames,
    );
    fam(
        e,
        names[1],
        &format!("Bytes the switch received from the {what}."),
        |s| s.rx_bytes,
    );
    fam(
        e,
        names[2],
        &format!("Frames the switch sent to the {what}."),
        |s| s.tx_frames,
    );
    fam(
        e,
        names[3],
        &format!("Bytes the switch sent to the {what}."),
        |s| s.tx_bytes,
    );
    e.family(
        names[4],
        Kind::Counter,
        &format!("Frames dropped on the {what}, by reason (docs/observability.md)."),
    );
    for (labels, s) in rows {
        for (reason, n) in &s.drops {
            let mut l = labels.clone();
            l.push(("reason", reason));
            e.count(&l, *n);
        }
    }
}

#[derive(Clone, Copy)]
enum Prefix {
    Port,
    Vtep,
}

impl Daemon {
    /// Counts a request `handle` answered.
    pub(super) fn count_request(&mut self, verb: &'static str, ok: bool) {
        self.requests.count(verb, ok);
    }

    /// Counts a control line that was not a request at all.
    pub fn count_bad_request(&mut self) {
        self.requests.count("invalid", false);
    }

    /// The metrics page (the Prometheus text format, 0.0.4).
    pub fn metrics_text(&self) -> String {
        let mut e = Exposition::new();
        e.family(
            "vxswitch_build_info",
            Kind::Gauge,
            "The running vxswitch: always 1, its version in a label.",
        )
        .sample(&[("version", VERSION)], 1u32);
        let Ok(st) = self.stats(&StatsArgs::default()) else {
            return e.finish();
        };
        let ports: Vec<_> = st
            .ports
            .iter()
            .map(|p| {
                (
                    vec![("port", p.name.as_str()), ("network", p.network.as_str())],
                    &p.stats,
                )
            })
            .collect();
        port_families(&mut e, Prefix::Port, &ports);
        // The eBPF fast path (docs/fastpath.md): its share of the counters above.
        e.family(
            "vxswitch_fastpath_active",
            Kind::Gauge,
            "1 when the eBPF fast path is loaded (daemon --fastpath ebpf), else 0.",
        )
        .sample(
            &[],
            u32::from(st.fastpath.as_ref().is_some_and(|f| f.active)),
        );
        type FastGet = fn(&super::proto::FastPortStats) -> u64;
        let fast: [(&'static str, &str, FastGet); 2] = [
            (
                "vxswitch_port_fast_rx_frames_total",
                "Frames from the port that the eBPF fast path forwarded (included in vxswitch_port_rx_frames_total).",
                |f| f.rx_frames,
            ),
            (
                "vxswitch_port_fast_tx_frames_total",
                "Frames to the port that the eBPF fast path forwarded (included in vxswitch_port_tx_frames_total).",
                |f| f.tx_frames,
            ),
        ];
        if st.ports.iter().any(|p| p.fast.is_some()) {
            for (name, help, get) in fast {
                e.family(name, Kind::Counter, help);
                for p in &st.ports {
                    if let Some(f) = &p.fast {
                        e.sample(
                            &[("port", p.name.as_str()), ("network", p.network.as_str())],
                            get(f) as f64,
                        );
                    }
                }
            }
        }
        let vnis: Vec<String> = st.vteps.iter().map(|v| v.vni.to_string()).collect();
        let vteps: Vec<_> = st
            .vteps
            .iter()
            .zip(&vnis)
            .map(|(v, vni)| {
                (
                    vec![
                        ("vtep", v.addr.as_str()),
                        ("network", v.network.as_str()),
                        ("vni", vni.as_str()),
                    ],
                    &v.stats,
                )
            })
            .collect();
        port_families(&mut e, Prefix::Vtep, &vteps);

        // The FDB, per network and in all.
        let nets: Vec<_> = self
            .networks
            .iter()
            .map(|(name, n)| (name.as_str(), self.fdb().network_stats(n.id)))
            .collect();
        e.family(
            "vxswitch_fdb_entries",
            Kind::Gauge,
            "MAC entries in the forwarding database, by network.",
        );
        for (n, s) in &nets {
            e.sample(&[("network", n)], s.entries as f64);
        }
        e.family(
            "vxswitch_fdb_max_entries",
            Kind::Gauge,
            "The network's FDB budget (most entries it may hold).",
        );
        for (n, s) in &nets {
            e.sample(&[("network", n)], s.max as f64);
        }
        type NetGet = fn(&crate::fdb::NetFdbStats) -> u64;
        let per_net: [(&'static str, &str, NetGet); 4] = [
            (
                "vxswitch_fdb_learned_total",
                "MACs learned in the network.",
                |s| s.learned,
            ),
            (
                "vxswitch_fdb_moved_total",
                "Learned MACs that moved to another port or VTEP.",
                |s| s.moved,
            ),
            (
                "vxswitch_fdb_aged_total",
                "Learned MACs removed after the ageing time.",
                |s| s.aged,
            ),
            (
                "vxswitch_fdb_refused_total",
                "New MACs not learned because the network's budget was spent.",
                |s| s.refused,
            ),
        ];
        for (name, help, get) in per_net {
            e.family(name, Kind::Counter, help);
            for (n, s) in &nets {
                e.count(&[("network", n)], get(s));
            }
        }
        e.family(
            "vxswitch_fdb_learn_refused_total",
            Kind::Counter,
            "New MACs not learned, by the limit that refused them (all networks).",
        )
        .count(&[("limit", "table_full")], st.fdb.refused_table_full)
        .count(&[("limit", "port_limit")], st.fdb.refused_dest_limit)
        .count(&[("limit", "network_limit")], st.fdb.refused_net_limit);
        e.family(
            "vxswitch_fdb_static_conflicts_total",
            Kind::Counter,
            "Learns that met a static entry for the same MAC (the static entry stays).",
        )
        .count(&[], st.fdb.static_conflicts);

        // The VXLAN sockets (absent until a network with a VNI exists).
        if let Some(vx) = &st.vxlan {
            e.family(
                "vxswitch_vxlan_rx_datagrams_total",
                Kind::Counter,
                "VXLAN datagrams received on the daemon's sockets.",
            )
            .count(&[], vx.rx_datagrams);
            e.family(
                "vxswitch_vxlan_rx_bytes_total",
                Kind::Counter,
                "Bytes of VXLAN datagrams received.",
            )
            .count(&[], vx.rx_bytes);
            e.family(
                "vxswitch_vxlan_tx_datagrams_total",
                Kind::Counter,
                "VXLAN datagrams sent.",
            )
            .count(&[], vx.tx_datagrams);
            e.family(
                "vxswitch_vxlan_tx_bytes_total",
                Kind::Counter,
                "Bytes of VXLAN datagrams sent.",
            )
            .count(&[], vx.tx_bytes);
            e.family(
                "vxswitch_vxlan_drops_total",
                Kind::Counter,
                "VXLAN datagrams dropped by the sockets, by reason.",
            );
            for (reason, n) in &vx.drops {
                e.count(&[("reason", reason)], *n);
            }
        }

        // The dataplane workers' time.
        let workers: Vec<String> = st.workers.iter().map(|w| w.worker.to_string()).collect();
        e.family(
            "vxswitch_worker_busy_seconds_total",
            Kind::Counter,
            "Time each dataplane worker spent on wake-ups that served frames.",
        );
        for (w, i) in st.workers.iter().zip(&workers) {
            e.sample(&[("worker", i)], w.busy_ms as f64 / 1000.0);
        }
        e.family(
            "vxswitch_worker_idle_seconds_total",
            Kind::Counter,
            "Time each dataplane worker spent waiting, or woken with no frame to serve.",
        );
        for (w, i) in st.workers.iter().zip(&workers) {
            e.sample(&[("worker", i)], w.idle_ms as f64 / 1000.0);
        }
        type SpinGet = fn(&crate::ctl::proto::WorkerRow) -> u64;
        let spin: [(&str, &str, SpinGet); 3] = [
            (
                "vxswitch_worker_spin_windows_total",
                "Busy-poll spin windows each dataplane worker started (daemon --busy-poll).",
                |w| w.spin_windows,
            ),
            (
                "vxswitch_worker_spin_misses_total",
                "Busy-poll spin windows that ended without a frame.",
                |w| w.spin_misses,
            ),
            (
                "vxswitch_worker_spin_preemptions_total",
                "Busy-poll spin windows cut short because the worker was preempted.",
                |w| w.spin_preempted,
            ),
        ];
        for (name, help, get) in spin {
            e.family(name, Kind::Counter, help);
            for (w, i) in st.workers.iter().zip(&workers) {
                e.sample(&[("worker", i)], get(w) as f64);
            }
        }

        // The control socket.
        e.family(
            "vxswitch_control_requests_total",
            Kind::Counter,
            "Control requests answered, by verb and result.",
        );
        for ((verb, ok), n) in &self.requests.0 {
            e.count(
                &[("verb", verb), ("result", if *ok { "ok" } else { "error" })],
                *n,
            );
        }
        e.family(
            "vxswitch_control_clients",
            Kind::Gauge,
            "Control connections open now.",
        )
        .sample(&[], st.control.clients as f64);
        e.family(
            "vxswitch_control_refusals_total",
            Kind::Counter,
            "Control connections refused or closed by the socket's limits, by cause.",
        )
        .count(&[("cause", "evicted")], st.control.evicted)
        .count(&[("cause", "busy")], st.control.refused_busy)
        .count(&[("cause", "request_timeout")], st.control.request_timeouts)
        .count(&[("cause", "reply_timeout")], st.control.reply_timeouts)
        .count(&[("cause", "idle")], st.control.idle_closed);
        e.family(
            "vxswitch_monitor_events_lost_total",
            Kind::Counter,
            "Events `vxswitch monitor` clients did not get: they fell behind.",
        )
        .count(&[], self.monitor_lost());
        e.finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::ctl::proto::{parse_request, Request};
    use crate::ctl::testutil::{daemon, fd_port, net};

    #[test]
    fn the_page_names_ports_networks_and_request_verbs() {
        let mut d = daemon();
        net(&mut d, "red", None, None);
        let _a = fd_port(&mut d, "a", "red");
        d.handle(parse_request(br#"{"cmd":"ping"}"#).unwrap())
            .unwrap();
        let bad: Request = parse_request(br#"{"cmd":"port.rm","args":{"name":"nope"}}"#).unwrap();
        assert!(d.handle(bad).is_err());
        let page = d.metrics_text();
        for want in [
            "vxswitch_build_info{version=\"",
            "vxswitch_port_rx_frames_total{port=\"a\",network=\"red\"} 0\n",
            "vxswitch_port_drops_total{port=\"a\",network=\"red\",reason=\"hairpin\"} 0\n",
            "vxswitch_fdb_entries{network=\"red\"} 0\n",
            "vxswitch_fdb_learned_total{network=\"red\"} 0\n",
            "vxswitch_control_requests_total{verb=\"ping\",result=\"ok\"} 1\n",
            "vxswitch_control_requests_total{verb=\"port.rm\",result=\"error\"} 1\n",
            "vxswitch_worker_busy_seconds_total{worker=\"0\"} ",
            "vxswitch_worker_idle_seconds_total{worker=\"0\"} ",
        ] {
            assert!(page.contains(want), "{want} missing from\n{page}");
        }
        d.shutdown();
    }
}
