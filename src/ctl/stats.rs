//! `stats`: the counters of ports, VTEPs, switch gateways, the FDB and
//! the VXLAN sockets, read from the dataplane's shared counters without
//! stopping it.

use super::daemon::Daemon;
use super::proto::{
    CtlError, FastPortStats, GatewayRow, NetworkFdbRow, PortStatsRow, StatsArgs, StatsReply,
    VtepLs, WorkerRow,
};

impl Daemon {
    pub fn stats(&self, a: &StatsArgs) -> Result<StatsReply, CtlError> {
        if let Some(p) = &a.port {
            self.port(p)?;
        }
        let ports = self
            .ports
            .iter()
            .filter(|(n, _)| a.port.as_ref().is_none_or(|want| want == *n))
            .map(|(n, p)| {
                let mut stats = p.stats.snapshot();
                // Frames the fast path forwarded count as the switch's.
                let fast = self.fast_stats(n).map(|f| {
                    stats.rx_frames += f.rx_frames;
                    stats.rx_bytes += f.rx_bytes;
                    stats.tx_frames += f.tx_frames;
                    stats.tx_bytes += f.tx_bytes;
                    FastPortStats {
                        rx_frames: f.rx_frames,
                        rx_bytes: f.rx_bytes,
                        tx_frames: f.tx_frames,
                        tx_bytes: f.tx_bytes,
                    }
                });
                PortStatsRow {
                    name: n.clone(),
                    network: p.network.clone(),
                    stats,
                    uplink: self.uplink_info(&p.network, n),
                    fast,
                }
            })
            .collect();
        let vteps = match a.port {
            Some(_) => Vec::new(),
            None => self.vtep_ls(&VtepLs::default())?,
        };
        let gateways = self
            .networks
            .iter()
            .filter_map(|(name, net)| {
                let (gw, port) = (net.switch_gw.as_ref()?, net.gw_port.as_ref()?);
                if a.port.as_ref().is_some_and(|want| want != port) {
                    return None;
                }
                Some(GatewayRow {
                    network: name.clone(),
                    port: port.clone(),
                    gateway: net.gateway?,
                    mac: net.gateway_mac?,
                    stats: gw.stats(),
                })
            })
            .collect();
        let networks = match a.port {
            Some(_) => Vec::new(),
            None => self
                .networks
                .iter()
                .map(|(name, net)| {
                    let f = self.fdb().network_stats(net.id);
                    NetworkFdbRow {
                        network: name.clone(),
                        entries: f.entries,
                        max: f.max,
                        refused: f.refused,
                    }
                })
                .collect(),
        };
        Ok(StatsReply {
            ports,
            fdb: self.fdb().stats(),
            vxlan: self.engine.vxlan_stats(),
            vteps,
            gateways,
            control: super::proto::ControlStats {
                monitor_lost: self.monitor_lost(),
                ..self.control
            },
            pending: self.pending_rows(),
            networks,
            suppress: match a.port {
                Some(_) => Vec::new(),
                None => self.suppress_rows(),
            },
            workers: match a.port {
                Some(_) => Vec::new(),
                None => self
                    .engine
                    .worker_time()
                    .into_iter()
                    .zip(self.engine.worker_spin())
                    .enumerate()
                    .map(
                        |(
                            worker,
                            ((busy_ms, idle_ms), (spin_windows, spin_misses, spin_preempted)),
                        )| {
                            WorkerRow {
                                worker,
                                busy_ms,
                                idle_ms,
                                spin_windows,
                                spin_misses,
                                spin_preempted,
                            }
                        },
                    )
                    .collect(),
            },
            fastpath: Some(self.fastpath_status()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::testutil::{fd_port, vx_daemon, vx_net};

    #[test]
    fn stats_include_vxlan_and_vteps() {
        let (mut d, port) = vx_daemon();
        let st = d.stats(&StatsArgs::default()).unwrap();
        assert!(st.vxlan.is_none(), "sockets open before any VNI");
        vx_net(&mut d, "blue", Some(1), &["198.18.0.2"]);
        let _a = fd_port(&mut d, "a", "blue");
        let st = d.stats(&StatsArgs::default()).unwrap();
        assert_eq!(st.vxlan.unwrap().port, port);
        assert_eq!(st.vteps.len(), 1);
        let st = d
            .stats(&StatsArgs {
                port: Some("a".into()),
            })
            .unwrap();
        assert!(st.vteps.is_empty());
        d.shutdown();
    }
}
