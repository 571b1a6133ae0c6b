//! The fast path's maps as bytes: the C structs of bpf/fastpath.bpf.c,
//! encoded and decoded field by field (native byte order, as the kernel
//! stores them), so no `unsafe` `Pod` impl is needed above `src/sys`.

use crate::fdb::{NetId, PortId};
use crate::wire::MacAddr;

/// `fp_port.flags`: frames from and to this port may take the fast path.
pub const PORT_FAST: u16 = 1;
/// `fp_port.flags`: port security, only the port's MAC may be a source.
pub const PORT_MAC_LOCK: u16 = 2;

/// `struct fp_port`: a fast-path port, keyed by its host end's ifindex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortEntry {
    pub net: NetId,
    pub port: PortId,
    /// The one source MAC allowed when `mac_lock`.
    pub mac: MacAddr,
    /// Frames may go fast (off: the port is known but everything goes to
    /// the userspace switch, e.g. while it is captured).
    pub fast: bool,
    /// Port security: only `mac` may be a source.
    pub mac_lock: bool,
    /// A frame goes fast only to a port whose MTU is at least this port's.
    pub mtu: u32,
    /// Its counters' index in `fp_stats` ([`slot_of`]).
    pub slot: u32,
}

pub type PortBytes = [u8; 24];
pub type FdbKeyBytes = [u8; 12];
pub type FdbValBytes = [u8; 16];
pub type StatsBytes = [u8; 32];
pub type UplinkKeyBytes = [u8; 8];
pub type UplinkBytes = [u8; 20];

/// `fp_fdb_val.flags`: the MAC is behind an uplink.
pub const FDB_UPLINK: u16 = 1;

/// Slots of `fp_stats`, a per-CPU array (`FP_SLOTS`).
pub const SLOTS: u32 = 4096;

/// The `fp_stats` slot of port `port` (a veth port or an uplink: its port
/// id, which no other port of the daemon has); None beyond the array (the
/// port then stays off the fast path, its counters being the switch's).
pub fn slot_of(port: PortId) -> Option<u32> {
    (port.0 < SLOTS).then_some(port.0)
}

/// `struct fp_uplink_key`: an uplink network, by its interface and VLAN id
/// (0: the untagged LAN).
pub fn uplink_key(ifindex: u32, vlan: u16) -> UplinkKeyBytes {
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&ifindex.to_ne_bytes());
    b[4..8].copy_from_slice(&u32::from(vlan).to_ne_bytes());
    b
}

/// The (ifindex, VLAN id) of an `fp_uplink_key`.
pub fn decode_uplink_key(b: &UplinkKeyBytes) -> (u32, u16) {
    (
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]) as u16,
    )
}

/// `struct fp_uplink`: a network's uplink on the fast path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UplinkEntry {
    pub net: NetId,
    pub port: PortId,
    /// Its counters' slot in `fp_stats` ([`slot_of`]).
    pub stats: u32,
    /// A frame goes fast to the LAN only from a port whose MTU is at most this.
    pub mtu: u32,
    /// Frames may go fast (off: down, mirrored, captured).
    pub fast: bool,
}

impl UplinkEntry {
    pub fn encode(&self) -> UplinkBytes {
        let mut b = [0u8; 20];
        b[0..4].copy_from_slice(&self.net.0.to_ne_bytes());
        b[4..8].copy_from_slice(&self.port.0.to_ne_bytes());
        b[8..12].copy_from_slice(&self.stats.to_ne_bytes());
        b[12..16].copy_from_slice(&self.mtu.to_ne_bytes());
        let flags = if self.fast { PORT_FAST } else { 0 };
        b[16..18].copy_from_slice(&flags.to_ne_bytes());
        b
    }

    pub fn decode(b: &UplinkBytes) -> UplinkEntry {
        let u32_at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        UplinkEntry {
            net: NetId(u32_at(0)),
            port: PortId(u32_at(4)),
            stats: u32_at(8),
            mtu: u32_at(12),
            fast: u16::from_ne_bytes([b[16], b[17]]) & PORT_FAST != 0,
        }
    }
}

impl PortEntry {
    pub fn encode(&self) -> PortBytes {
        let mut b = [0u8; 24];
        b[0..4].copy_from_slice(&self.net.0.to_ne_bytes());
        b[4..8].copy_from_slice(&self.port.0.to_ne_bytes());
        b[8..14].copy_from_slice(&self.mac.0);
        let mut flags = 0u16;
        if self.fast {
            flags |= PORT_FAST;
        }
        if self.mac_lock {
            flags |= PORT_MAC_LOCK;
        }
        b[14..16].copy_from_slice(&flags.to_ne_bytes());
        b[16..20].copy_from_slice(&self.mtu.to_ne_bytes());
        b[20..24].copy_from_slice(&self.slot.to_ne_bytes());
        b
    }

    pub fn decode(b: &PortBytes) -> PortEntry {
        let u32_at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let flags = u16::from_ne_bytes([b[14], b[15]]);
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&b[8..14]);
        PortEntry {
            net: NetId(u32_at(0)),
            port: PortId(u32_at(4)),
            mac: MacAddr(mac),
            fast: flags & PORT_FAST != 0,
            mac_lock: flags & PORT_MAC_LOCK != 0,
            mtu: u32_at(16),
            slot: u32_at(20),
        }
    }
}

/// `struct fp_fdb_key`: (network, MAC).
pub fn fdb_key(net: NetId, mac: MacAddr) -> FdbKeyBytes {
    let mut b = [0u8; 12];
    b[0..4].copy_from_slice(&net.0.to_ne_bytes());
    b[4..10].copy_from_slice(&mac.0);
    b
}

/// The (network, MAC) of an `fp_fdb_key`.
pub fn decode_fdb_key(b: &FdbKeyBytes) -> (NetId, MacAddr) {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&b[4..10]);
    (
        NetId(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
        MacAddr(mac),
    )
}

/// Where an `fp_fdb_val` points: a veth port's host end, or an uplink
/// network (its interface and VLAN id, 0 untagged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FdbTarget {
    Port(u32),
    Uplink { ifindex: u32, vlan: u16 },
}

impl FdbTarget {
    pub fn ifindex(self) -> u32 {
        match self {
            FdbTarget::Port(i) | FdbTarget::Uplink { ifindex: i, .. } => i,
        }
    }
}

/// `struct fp_fdb_val`: what the MAC is behind, and when the program last
/// forwarded a frame from it (`CLOCK_MONOTONIC_COARSE` ns, 0: never; the
/// switch only looks whether it changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbVal {
    pub target: FdbTarget,
    pub seen_ns: u64,
}

impl FdbVal {
    pub fn encode(&self) -> FdbValBytes {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.target.ifindex().to_ne_bytes());
        if let FdbTarget::Uplink { vlan, .. } = self.target {
            b[4..6].copy_from_slice(&vlan.to_ne_bytes());
            b[6..8].copy_from_slice(&FDB_UPLINK.to_ne_bytes());
        }
        b[8..16].copy_from_slice(&self.seen_ns.to_ne_bytes());
        b
    }

    pub fn decode(b: &FdbValBytes) -> FdbVal {
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[8..16]);
        let ifindex = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let target = if u16::from_ne_bytes([b[6], b[7]]) & FDB_UPLINK != 0 {
            FdbTarget::Uplink {
                ifindex,
                vlan: u16::from_ne_bytes([b[4], b[5]]),
            }
        } else {
            FdbTarget::Port(ifindex)
        };
        FdbVal {
            target,
            seen_ns: u64::from_ne_bytes(s),
        }
    }
}

/// `struct fp_stats`, summed over the CPUs: what the program forwarded
/// from (rx) and to (tx) a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastStats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
}

impl FastStats {
    pub fn decode(b: &StatsBytes) -> FastStats {
        let at = |i: usize| {
            let mut s = [0u8; 8];
            s.copy_from_slice(&b[i..i + 8]);
            u64::from_ne_bytes(s)
        };
        FastStats {
            rx_frames: at(0),
            rx_bytes: at(8),
            tx_frames: at(16),
            tx_bytes: at(24),
        }
    }

    pub fn add(&mut self, o: &FastStats) {
        self.rx_frames += o.rx_frames;
        self.rx_bytes += o.rx_bytes;
        self.tx_frames += o.tx_frames;
        self.tx_bytes += o.tx_bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_entry_survives_encoding() {
        let p = PortEntry {
            net: NetId(7),
            port: PortId(42),
            mac: MacAddr([2, 0, 0, 0, 0, 9]),
            fast: true,
            mac_lock: true,
            mtu: 1500,
            slot: 42,
        };
        assert_eq!(PortEntry::decode(&p.encode()), p);
        let q = PortEntry { fast: false, ..p };
        assert_eq!(PortEntry::decode(&q.encode()), q);
    }

    #[test]
    fn fdb_keys_and_values_survive_encoding() {
        let k = fdb_key(NetId(3), MacAddr([2, 1, 2, 3, 4, 5]));
        assert_eq!(decode_fdb_key(&k), (NetId(3), MacAddr([2, 1, 2, 3, 4, 5])));
        assert_eq!(&k[10..], &[0, 0], "the key's padding is zero");
        let v = FdbVal {
            target: FdbTarget::Port(12),
            seen_ns: 1 << 40,
        };
        assert_eq!(FdbVal::decode(&v.encode()), v);
        let u = FdbVal {
            target: FdbTarget::Uplink {
                ifindex: 3,
                vlan: 20,
            },
            seen_ns: 5,
        };
        let b = u.encode();
        assert_eq!(FdbVal::decode(&b), u);
        // ifindex, vlan, flags, seen_ns: as struct fp_fdb_val lays them out.
        assert_eq!(
            &b[4..8],
            &[20u16.to_ne_bytes(), FDB_UPLINK.to_ne_bytes()].concat()[..]
        );
    }

    #[test]
    fn uplink_entries_and_keys_survive_encoding() {
        let e = UplinkEntry {
            net: NetId(2),
            port: PortId(9),
            stats: 9,
            mtu: 1500,
            fast: true,
        };
        assert_eq!(UplinkEntry::decode(&e.encode()), e);
        let off = UplinkEntry { fast: false, ..e };
        assert_eq!(UplinkEntry::decode(&off.encode()), off);
        assert_eq!(decode_uplink_key(&uplink_key(7, 10)), (7, 10));
        assert_eq!(slot_of(PortId(9)), Some(9));
        assert_eq!(slot_of(PortId(SLOTS)), None);
    }
}
