//! The text form of the results, modelled on the kernel pktgen's result
//! line (`Result: OK: 13101142(c12220741+d880401) usec, 10000000
//! (60byte,0frags) 763292pps 390Mb/sec (390805504bps) errors: 39664`),
//! followed by one line of what that format has no room for.

use std::fmt::Write;

use super::{RxReport, RxStop, TxReport, TxStop};

fn mbit(bps: u64) -> u64 {
    bps / 1_000_000
}

fn place(dev: &str, netns: &str) -> String {
    if netns.is_empty() {
        dev.to_string()
    } else {
        format!("{dev} in {netns}")
    }
}

/// `OK:` for a run that ended as asked, `INTERRUPTED:` for a partial one.
pub fn tx_text(r: &TxReport) -> String {
    let status = match r.stop {
        TxStop::Interrupted => "INTERRUPTED",
        TxStop::Count | TxStop::Duration => "OK",
    };
    let c = r.elapsed_us.saturating_sub(r.delay_us);
    let mut s = format!(
        "{status}: {}(c{c}+d{}) usec, {} ({}byte,0frags) {}pps {}Mb/sec ({}bps) errors: {}\n",
        r.elapsed_us,
        r.delay_us,
        r.frames,
        r.frame_size,
        r.pps,
        mbit(r.bps),
        r.bps,
        r.queue_full
    );
    let rate = r
        .rate_target_pps
        .map_or_else(|| "max rate".to_string(), |p| format!("target {p}pps"));
    let _ = writeln!(
        s,
        "  tx {}: run {:04x}, {} flow(s), batch {}, {rate}, {} sendmmsg calls, {} END marker(s); \
         kernel: tx_packets +{} tx_bytes +{} tx_dropped +{} tx_errors +{}",
        place(&r.dev, &r.netns),
        r.run,
        r.flows,
        r.batch,
        r.syscalls,
        r.end_markers,
        r.kernel.tx_packets,
        r.kernel.tx_bytes,
        r.kernel.tx_dropped,
        r.kernel.tx_errors,
    );
    s
}

pub fn rx_text(r: &RxReport) -> String {
    let status = match r.stop {
        RxStop::Interrupted => "INTERRUPTED",
        RxStop::NoFrames => "NO FRAMES",
        _ => "OK",
    };
    let avg = r.bytes.checked_div(r.frames).unwrap_or(0);
    let lost = match (r.lost, r.sent) {
        (Some(l), Some(s)) => format!("{l} of {s} sent"),
        _ => format!(
            "unknown (no END marker), {} missing in sequence",
            r.seq.missing
        ),
    };
    let mut s = format!(
        "{status}: {} usec, {} ({avg}byte avg,0frags) {}pps {}Mb/sec ({}bps) lost: {lost} \
         reordered: {} duplicates: {}\n",
        r.first_to_last_us,
        r.frames,
        r.pps,
        mbit(r.bps),
        r.bps,
        r.seq.reordered,
        r.seq.duplicates,
    );
    let stop = serde_json::to_value(r.stop)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "  rx {}: {} flow(s) in {} run(s), {} END marker(s), stopped by {stop}, socket drops {}, \
         other frames {}; kernel: rx_packets +{} rx_bytes +{} rx_dropped +{} rx_errors +{}",
        place(&r.dev, &r.netns),
        r.flows,
        r.runs.len(),
        r.end_markers,
        r.socket_drops,
        r.other_frames,
        r.kernel.rx_packets,
        r.kernel.rx_bytes,
        r.kernel.rx_dropped,
        r.kernel.rx_errors,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pktgen::seq::SeqCounts;
    use crate::pktgen::DevCounters;
    use crate::wire::MacAddr;
    use std::net::Ipv4Addr;

    #[test]
    fn tx_line_has_the_kernel_pktgen_shape() {
        let r = TxReport {
            mode: "tx",
            dev: "eth0".into(),
            netns: "/run/netns/c0".into(),
            run: 0xabcd,
            dst_mac: MacAddr::BROADCAST,
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            src_ip: Ipv4Addr::new(198, 18, 0, 1),
            dst_ip: Ipv4Addr::new(198, 19, 0, 1),
            frame_size: 64,
            flows: 4,
            batch: 64,
            rate_target_pps: None,
            frames: 1_000_000,
            bytes: 64_000_000,
            elapsed_us: 1_000_000,
            delay_us: 1_000,
            pps: 1_000_000,
            bps: 512_000_000,
            queue_full: 7,
            syscalls: 15_633,
            end_markers: 3,
            stop: TxStop::Count,
            kernel: DevCounters {
                tx_packets: 1_000_003,
                ..DevCounters::default()
            },
        };
        let t = tx_text(&r);
        assert!(
            t.starts_with(
                "OK: 1000000(c999000+d1000) usec, 1000000 (64byte,0frags) 1000000pps \
                 512Mb/sec (512000000bps) errors: 7\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("eth0 in /run/netns/c0: run abcd, 4 flow(s)"),
            "{t}"
        );
        assert!(t.contains("tx_packets +1000003"), "{t}");
    }

    #[test]
    fn rx_line_says_loss_against_what_was_sent() {
        let mut r = RxReport {
            mode: "rx",
            dev: "eth0".into(),
            netns: String::new(),
            frames: 999,
            bytes: 999 * 64,
            sent: Some(1000),
            lost: Some(1),
            seq: SeqCounts {
                unique: 999,
                reordered: 2,
                ..SeqCounts::default()
            },
            flows: 1,
            runs: vec![1],
            end_markers: 3,
            other_frames: 0,
            first_to_last_us: 1000,
            pps: 999_000,
            bps: 511_488_000,
            socket_drops: 0,
            stop: RxStop::End,
            kernel: DevCounters::default(),
        };
        let t = rx_text(&r);
        assert!(
            t.starts_with(
                "OK: 1000 usec, 999 (64byte avg,0frags) 999000pps 511Mb/sec (511488000bps) \
                 lost: 1 of 1000 sent reordered: 2 duplicates: 0\n"
            ),
            "{t}"
        );
        assert!(t.contains("stopped by end"), "{t}");
        r.sent = None;
        r.lost = None;
        r.stop = RxStop::Interrupted;
        let t = rx_text(&r);
        assert!(t.starts_with("INTERRUPTED:"), "{t}");
        assert!(t.contains("lost: unknown (no END marker)"), "{t}");
    }
}
