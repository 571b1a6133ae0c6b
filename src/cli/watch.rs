//! `vxswitch stats --watch [SECS]`: live per-port rates (frames/s, bit/s,
//! drops/s) from two `stats` samples SECS apart, until interrupted. On a
//! terminal the table is redrawn in place; piped, each interval prints
//! one plain line per port (with `--json`, one JSON object per interval).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use vxswitch::ctl::proto::{StatsArgs, StatsReply};
use vxswitch::ctl::{Client, Request};
use vxswitch::metrics::PortStatsSnapshot;

/// One port's rates over an interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rate {
    pub port: String,
    pub network: String,
    pub rx_fps: f64,
    pub rx_bps: f64,
    pub tx_fps: f64,
    pub tx_bps: f64,
    pub drops_ps: f64,
}

/// The rates of the ports in both samples, `secs` apart.
pub fn rates(before: &StatsReply, after: &StatsReply, secs: f64) -> Vec<Rate> {
    let old: BTreeMap<&str, &PortStatsSnapshot> = before
        .ports
        .iter()
        .map(|p| (p.name.as_str(), &p.stats))
        .collect();
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs.max(1e-9);
    after
        .ports
        .iter()
        .filter_map(|p| {
            let o = old.get(p.name.as_str())?;
            let n = &p.stats;
            Some(Rate {
                port: p.name.clone(),
                network: p.network.clone(),
                rx_fps: per(o.rx_frames, n.rx_frames),
                rx_bps: 8.0 * per(o.rx_bytes, n.rx_bytes),
                tx_fps: per(o.tx_frames, n.tx_frames),
                tx_bps: 8.0 * per(o.tx_bytes, n.tx_bytes),
                drops_ps: per(o.total_drops(), n.total_drops()),
            })
        })
        .collect()
}

/// `1.5k`, `12.0M`, `3.2G`: a rate in three or four significant places.
pub fn si(v: f64) -> String {
    for (div, unit) in [(1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if v >= div {
            return format!("{:.1}{unit}", v / div);
        }
    }
    if v == 0.0 || v >= 9.95 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The table a terminal shows.
pub fn table(rates: &[Rate], every: f64, clock: &str) -> String {
    let mut out = format!("vxswitch stats every {every}s (Ctrl-C to stop)   {clock} UTC\n");
    let w = rates.iter().map(|r| r.port.len()).max().unwrap_or(4).max(4);
    let nw = rates
        .iter()
        .map(|r| r.network.len())
        .max()
        .unwrap_or(7)
        .max(7);
    out.push_str(&format!(
        "{:<w$}  {:<nw$}  {:>8}  {:>9}  {:>8}  {:>9}  {:>8}\n",
        "PORT", "NETWORK", "RX_F/S", "RX_BIT/S", "TX_F/S", "TX_BIT/S", "DROPS/S"
    ));
    for r in rates {
        out.push_str(&format!(
            "{:<w$}  {:<nw$}  {:>8}  {:>9}  {:>8}  {:>9}  {:>8}\n",
            r.port,
            r.network,
            si(r.rx_fps),
            si(r.rx_bps),
            si(r.tx_fps),
            si(r.tx_bps),
            si(r.drops_ps)
        ));
    }
    out
}

/// The plain lines a pipe gets: one per port.
pub fn lines(rates: &[Rate], clock: &str) -> String {
    rates
        .iter()
        .map(|r| {
            format!(
                "{clock} {} rx {} f/s {} bit/s tx {} f/s {} bit/s drops {}/s\n",
                r.port,
                si(r.rx_fps),
                si(r.rx_bps),
                si(r.tx_fps),
                si(r.tx_bps),
                si(r.drops_ps)
            )
        })
        .collect()
}

fn clock() -> (u64, String) {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    let s = ms / 1000 % 86_400;
    (
        ms,
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
    )
}

pub fn run(socket: &Path, port: Option<String>, every: f64, json: bool) -> Result<(), String> {
    if !(every.is_finite() && (0.1..=3600.0).contains(&every)) {
        return Err(format!(
            "--watch {every}: give an interval from 0.1 to 3600 seconds"
        ));
    }
    let req = Request::Stats(StatsArgs { port });
    let mut client = Client::connect(socket).map_err(|e| e.to_string())?;
    let mut sample = || -> Result<(StatsReply, Instant), String> {
        let s: StatsReply = client.call_as(&req).map_err(|e| e.to_string())?;
        Ok((s, Instant::now()))
    };
    let tty = std::io::stdout().is_terminal() && !json;
    let mut stdout = std::io::stdout().lock();
    let (mut before, mut at) = sample()?;
    loop {
        std::thread::sleep(Duration::from_secs_f64(every));
        let (after, now) = sample()?;
        let r = rates(&before, &after, now.duration_since(at).as_secs_f64());
        let (ms, hms) = clock();
        let text = if json {
            #[derive(Serialize)]
            struct Interval<'a> {
                ts_ms: u64,
                ports: &'a [Rate],
            }
            serde_json::to_string(&Interval {
                ts_ms: ms,
                ports: &r,
            })
            .map_err(|e| e.to_string())?
                + "\n"
        } else if tty {
            // Home and clear, then the table: redrawn in place.
            format!("\x1b[H\x1b[2J{}", table(&r, every, &hms))
        } else {
            lines(&r, &hms)
        };
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return Ok(()); // the reader went away (`| head`)
        }
        (before, at) = (after, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vxswitch::ctl::proto::PortStatsRow;

    fn reply(rx: u64, rx_bytes: u64, drops: u64) -> StatsReply {
        let mut stats = PortStatsSnapshot {
            rx_frames: rx,
            rx_bytes,
            ..Default::default()
        };
        stats.drops.insert("runt".into(), drops);
        StatsReply {
            ports: vec![PortStatsRow {
                name: "c1".into(),
                network: "red".into(),
                stats,
                uplink: None,
                fast: None,
            }],
            fdb: Default::default(),
            vxlan: None,
            vteps: vec![],
            gateways: vec![],
            control: Default::default(),
            pending: vec![],
            networks: vec![],
            suppress: vec![],
            workers: vec![],
            fastpath: None,
        }
    }

    #[test]
    fn rates_over_an_interval_and_their_rendering() {
        let r = rates(&reply(100, 10_000, 1), &reply(300, 260_000, 5), 2.0);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].rx_fps, r[0].rx_bps, r[0].drops_ps), (100.0, 1e6, 2.0));
        assert_eq!(
            lines(&r, "14:02:07"),
            "14:02:07 c1 rx 100 f/s 1.0M bit/s tx 0 f/s 0 bit/s drops 2.0/s\n"
        );
        let t = table(&r, 1.0, "14:02:07");
        assert!(t.contains("PORT  NETWORK    RX_F/S"), "{t}");
        assert!(t.contains("c1    red           100       1.0M"), "{t}");
        // A port that appeared in between has no rate yet; counters reset
        // (a port re-added) never go negative.
        let r = rates(&reply(300, 0, 0), &reply(100, 0, 0), 1.0);
        assert_eq!(r[0].rx_fps, 0.0);
        assert_eq!(si(1234.0), "1.2k");
        assert_eq!(si(0.5), "0.5");
    }
}
