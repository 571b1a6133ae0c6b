//! `vxswitch pktgen tx|rx`: the options, and the glue that turns them into
//! a run and its result text (or JSON).

use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{report, run_rx, run_tx, Place, RxOptions, TxOptions};
use crate::wire::MacAddr;

#[derive(Subcommand, Debug)]
pub enum PktgenCmd {
    /// Send Ethernet/IPv4/UDP probe frames on an interface.
    #[command(
        after_help = "Frames carry a magic, a run id, a flow id and a per-flow \
        sequence number, so 'pktgen rx' at the other end can count loss, reordering and \
        duplicates. After the last frame, 3 END markers tell rx how many were sent. \
        Ctrl-C stops early and prints the partial result. Needs CAP_NET_RAW."
    )]
    Tx(TxArgs),
    /// Count probe frames arriving on an interface.
    #[command(
        after_help = "Start rx first: it prints 'listening on ...' to stderr once \
        no probe frame can be missed. It stops at the first of --count, --duration, the \
        senders' END markers, --idle-timeout after the first frame and --wait before it; \
        Ctrl-C stops early and prints the partial result. Needs CAP_NET_RAW."
    )]
    Rx(RxArgs),
}

#[derive(Args, Debug)]
pub struct TxArgs {
    /// Interface to send on.
    #[arg(long, value_name = "IFNAME")]
    pub dev: String,
    /// Its network namespace: a file (/run/netns/c1, /proc/PID/ns/net) or an `ip netns` name.
    #[arg(long, value_name = "NETNS")]
    pub netns: Option<String>,
    /// Destination MAC of every frame (ff:ff:ff:ff:ff:ff floods through a switch).
    #[arg(long, value_name = "MAC")]
    pub dst_mac: MacAddr,
    /// Source MAC (default: the interface's).
    #[arg(long, value_name = "MAC")]
    pub src_mac: Option<MacAddr>,
    /// Source MACs: frame N comes from the Nth of this many distinct,
    /// pseudo-random, locally administered unicast MACs (a MAC flood at
    /// full rate); default: one, --src-mac or the interface's.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1u64 << 40))]
    pub src_macs: Option<u64>,
    /// IPv4 source of flow 0; flow N uses this + N. The default is in the
    /// benchmarking range (RFC 2544), so receivers drop it without replying.
    #[arg(long, value_name = "ADDR", default_value = "198.18.0.1")]
    pub src_ip: Ipv4Addr,
    /// IPv4 destination.
    #[arg(long, value_name = "ADDR", default_value = "198.19.0.1")]
    pub dst_ip: Ipv4Addr,
    /// UDP source port of flow 0; flow N uses this + N.
    #[arg(long, value_name = "PORT", default_value_t = 9000)]
    pub src_port: u16,
    /// UDP destination port (9: discard).
    #[arg(long, value_name = "PORT", default_value_t = 9)]
    pub dst_port: u16,
    /// Frame length in bytes without FCS, 60 (Ethernet's minimum) up to MTU + 14.
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub size: usize,
    /// Data frames to send (with --duration: whichever comes first).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Seconds to send (default 10 when --count is not given either).
    #[arg(long, value_name = "S", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Frames per second (suffix k or M allowed: 100k, 1.5M); default: as fast as possible.
    #[arg(long, value_name = "PPS", value_parser = parse_rate)]
    pub rate: Option<u64>,
    /// Flows: frames go round-robin over N UDP source ports / IPv4 sources.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub flows: u16,
    /// Frames per sendmmsg call, 1 to 1024.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub batch: usize,
}

#[derive(Args, Debug)]
pub struct RxArgs {
    /// Interface to count on.
    #[arg(long, value_name = "IFNAME")]
    pub dev: String,
    /// Its network namespace: a file (/run/netns/c1, /proc/PID/ns/net) or an `ip netns` name.
    #[arg(long, value_name = "NETNS")]
    pub netns: Option<String>,
    /// Stop after this many data frames.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this many seconds of listening.
    #[arg(long, value_name = "S", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Stop when no probe frame came for this many seconds (after the first).
    #[arg(long, value_name = "S", value_parser = parse_secs, default_value = "2")]
    pub idle_timeout: Duration,
    /// Give up when no probe frame came this many seconds after starting.
    #[arg(long, value_name = "S", value_parser = parse_secs, default_value = "60")]
    pub wait: Duration,
    /// Keep counting after the senders' END markers (until another stop).
    #[arg(long)]
    pub ignore_end: bool,
}

/// Seconds, possibly fractional ("0.5"), as a `Duration`.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(v).map_err(|_| format!("{s:?} is not a duration in seconds"))
}

/// A rate: a plain number, or with a k/K (10³) or M/m (10⁶) suffix.
fn parse_rate(s: &str) -> Result<u64, String> {
    let err = || format!("{s:?} is not a rate: give frames per second like 50000, 100k or 1.5M");
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1e3),
        Some((i, 'M' | 'm')) => (&s[..i], 1e6),
        _ => (s, 1.0),
    };
    let v: f64 = num.parse().map_err(|_| err())?;
    let v = v * mult;
    if !(1.0..=1e12).contains(&v) {
        return Err(err());
    }
    Ok(v.round() as u64)
}

/// Runs one pktgen command and returns what to print: the result text, or
/// with `json` the result as a pretty JSON object. Ctrl-C (SIGINT) or
/// SIGTERM stop the run and still return the partial result; a second one
/// exits at once.
pub fn run_cli(cmd: PktgenCmd, json: bool) -> Result<String, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut ids = Vec::new();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let reg = signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .and_then(|a| Ok((a, signal_hook::flag::register(sig, stop.clone())?)));
        match reg {
            Ok((a, b)) => ids.extend([a, b]),
            Err(e) => return Err(format!("cannot handle Ctrl-C: {e}")),
        }
    }
    let out = run(cmd, json, &stop);
    for id in ids {
        signal_hook::low_level::unregister(id);
    }
    out
}

fn run(cmd: PktgenCmd, json: bool, stop: &AtomicBool) -> Result<String, String> {
    match cmd {
        PktgenCmd::Tx(a) => {
            let o = TxOptions {
                place: Place::new(&a.dev, a.netns.as_deref()),
                dst_mac: a.dst_mac,
                src_mac: a.src_mac,
                src_macs: a.src_macs,
                src_ip: a.src_ip,
                dst_ip: a.dst_ip,
                src_port: a.src_port,
                dst_port: a.dst_port,
                size: a.size,
                count: a.count,
                duration: a.duration,
                rate: a.rate,
                flows: a.flows,
                batch: a.batch,
            };
            let r = run_tx(&o, stop).map_err(|e| format!("pktgen tx: {e}"))?;
            if json {
                pretty(&r)
            } else {
                Ok(report::tx_text(&r))
            }
        }
        PktgenCmd::Rx(a) => {
            let o = RxOptions {
                place: Place::new(&a.dev, a.netns.as_deref()),
                count: a.count,
                duration: a.duration,
                idle_timeout: a.idle_timeout,
                wait: a.wait,
                stop_at_end: !a.ignore_end,
            };
            let ready = || eprintln!("pktgen rx: listening on {}", o.place);
            let r = run_rx(&o, stop, ready).map_err(|e| format!("pktgen rx: {e}"))?;
            if json {
                pretty(&r)
            } else {
                Ok(report::rx_text(&r))
            }
        }
    }
}

/// A report as pretty JSON with a trailing newline.
fn pretty<T: serde::Serialize>(v: &T) -> Result<String, String> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_suffixes() {
        assert_eq!(parse_rate("50000"), Ok(50_000));
        assert_eq!(parse_rate("100k"), Ok(100_000));
        assert_eq!(parse_rate("1.5M"), Ok(1_500_000));
        for bad in ["", "0", "k", "-5", "1x", "nan"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn seconds_may_be_fractional() {
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_secs("3"), Ok(Duration::from_secs(3)));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
    }
}
