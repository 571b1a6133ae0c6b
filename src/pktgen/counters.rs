//! An interface's kernel counters, read from `/proc/thread-self/net/dev`
//! on a thread inside its namespace (that file shows the reading thread's
//! namespace; `/sys/class/net` would show the namespace sysfs was mounted
//! in, and `/proc/net` the main thread's).

use std::io;

use super::{PktgenError, Place};
use crate::ports::netns;

/// The counters pktgen reports (64-bit, as `ip -s link` shows them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DevCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

impl DevCounters {
    /// `self - before`, counter by counter (wrapping, like the counters).
    pub fn since(&self, before: &DevCounters) -> DevCounters {
        DevCounters {
            rx_bytes: self.rx_bytes.wrapping_sub(before.rx_bytes),
            rx_packets: self.rx_packets.wrapping_sub(before.rx_packets),
            rx_errors: self.rx_errors.wrapping_sub(before.rx_errors),
            rx_dropped: self.rx_dropped.wrapping_sub(before.rx_dropped),
            tx_bytes: self.tx_bytes.wrapping_sub(before.tx_bytes),
            tx_packets: self.tx_packets.wrapping_sub(before.tx_packets),
            tx_errors: self.tx_errors.wrapping_sub(before.tx_errors),
            tx_dropped: self.tx_dropped.wrapping_sub(before.tx_dropped),
        }
    }
}

/// The counters of `dev` in the text of `/proc/net/dev`.
pub fn parse_proc_net_dev(text: &str, dev: &str) -> Option<DevCounters> {
    // Two header lines, then "  NAME: rx_bytes rx_packets rx_errs rx_drop
    // fifo frame compressed multicast tx_bytes tx_packets tx_errs tx_drop ...".
    // Interface names cannot contain ':'.
    let fields = text.lines().skip(2).find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        (name.trim() == dev).then_some(rest)
    })?;
    let v: Vec<u64> = fields
        .split_whitespace()
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 12 {
        return None;
    }
    Some(DevCounters {
        rx_bytes: v[0],
        rx_packets: v[1],
        rx_errors: v[2],
        rx_dropped: v[3],
        tx_bytes: v[8],
        tx_packets: v[9],
        tx_errors: v[10],
        tx_dropped: v[11],
    })
}

/// The place's counters now.
pub fn read(place: &Place) -> Result<DevCounters, PktgenError> {
    let text = netns::run_in(&place.netns, || {
        std::fs::read_to_string("/proc/thread-self/net/dev")
    })?
    .map_err(place.io("read /proc/net/dev"))?;
    parse_proc_net_dev(&text, &place.dev).ok_or_else(|| {
        place.io("read /proc/net/dev")(io::Error::new(
            io::ErrorKind::NotFound,
            "the interface is not listed",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0: 6400192  100003    1    2    0     0          0         0      980      12    3    4    0     0       0          0
eth0x:1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
";

    #[test]
    fn parses_the_named_interface_only() {
        let c = parse_proc_net_dev(PROC_NET_DEV, "eth0").unwrap();
        assert_eq!(
            c,
            DevCounters {
                rx_bytes: 6_400_192,
                rx_packets: 100_003,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 980,
                tx_packets: 12,
                tx_errors: 3,
                tx_dropped: 4,
            }
        );
        assert_eq!(
            parse_proc_net_dev(PROC_NET_DEV, "eth0x")
                .unwrap()
                .tx_packets,
            10
        );
        assert!(parse_proc_net_dev(PROC_NET_DEV, "eth").is_none());
        assert!(parse_proc_net_dev("garbage", "eth0").is_none());
    }

    #[test]
    fn since_subtracts() {
        let a = DevCounters {
            tx_packets: 10,
            rx_bytes: 5,
            ..DevCounters::default()
        };
        let b = DevCounters {
            tx_packets: 110,
            rx_bytes: 5,
            ..DevCounters::default()
        };
        assert_eq!(b.since(&a).tx_packets, 100);
        assert_eq!(b.since(&a).rx_bytes, 0);
    }
}
