//! The ingress dispatch and the egress paths on their own, without worker
//! threads: ports are socket pairs whose other end the test holds, VTEPs are
//! UDP sockets on loopback, and each frame goes through `decide()` and
//! `dispatch` in the test's own thread. Writes to a socket pair and sends on
//! loopback are complete when the call returns, so "nothing arrived" is a
//! non-blocking read that finds nothing.

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::command::PortQueue;
use super::decide::{decide, Decision, Ingress, Verdict};
use super::egress::{Egress, Frame};
use super::ingress::dispatch;
use super::worker::{Port, Tables};
use super::HEADROOM;
use crate::fdb::{Dest, Fdb, FdbConfig, NetId, PortId, VtepId};
use crate::metrics::{DropReason, PortStats};
use crate::offload::{self, VnetHdr, F_NEEDS_CSUM, GSO_TCPV4, VNET_HDR_LEN};
use crate::time::Millis;
use crate::vxlan::vteps::{IdPool, VtepTable};
use crate::vxlan::{Sockets, Tunnel, VtepInfo, VxlanConfig, VxlanStats};
use crate::wire::vxlan::{VxlanPacket, HEADER_LEN as VXLAN_HEADER_LEN};
use crate::wire::MacAddr;

const NET: NetId = NetId(0);
const OTHER_NET: NetId = NetId(1);
const VNI: u32 = 4242;
const NOW: Millis = Millis(1_000);

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

fn frame(dst: MacAddr, src: MacAddr, tag: u8) -> Vec<u8> {
    let mut f = vec![tag; 60];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f
}

/// An Ethernet/IPv4/TCP super-frame of `payload` bytes, from `mac(0xa)` to
/// `mac(0xb)`, to be cut at `mss`, with its partial checksum.
fn tcp4_super(payload: usize, mss: u16) -> (Vec<u8>, VnetHdr) {
    let mut f = vec![0u8; 54 + payload];
    f[0..6].copy_from_slice(&mac(0xb).0);
    f[6..12].copy_from_slice(&mac(0xa).0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    let total = u16::try_from(40 + payload).unwrap();
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[20] = 0x40; // DF
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&40_000u16.to_be_bytes());
    f[36..38].copy_from_slice(&5201u16.to_be_bytes());
    f[38..42].copy_from_slice(&1u32.to_be_bytes());
    f[46] = 5 << 4;
    f[47] = 0x18; // PSH, ACK
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 54,
        gso_size: mss,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    };
    (f, hdr)
}

/// The test's end of a port.
struct End {
    sock: UnixDatagram,
    stats: Arc<PortStats>,
}

impl End {
    /// Everything the switch wrote to this port so far.
    fn got(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70_000];
        while let Ok(n) = self.sock.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }
}

/// A VTEP: the socket that receives what the switch sends it.
struct Peer {
    sock: UdpSocket,
    stats: Arc<PortStats>,
}

impl Peer {
    fn got(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70_000];
        while let Ok(n) = self.sock.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }
}

fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; VXLAN_HEADER_LEN];
    VxlanPacket::new_unchecked(&mut d[..]).set_header(vni);
    d.extend_from_slice(inner);
    d
}

/// One worker's tables and egress, driven by hand.
struct Desk {
    fdb: Fdb,
    tables: Tables,
    egress: Egress,
    tunnel: Tunnel,
    buf: Box<[u8]>,
}

impl Desk {
    /// Network 0 has a VNI; the tunnel sends from an ephemeral loopback port.
    fn new() -> Desk {
        let cfg = VxlanConfig {
            port: 0,
            src_port_min: 0,
            src_port_max: 0,
            ..VxlanConfig::default()
        };
        let mut tables = Tables {
            ports: Vec::new(),
            nets: Vec::new(),
            vteps: VtepTable::new(cfg, Arc::new(IdPool::default())),
            owned: Default::default(),
        };
        tables.vteps.set_network(NET, Some(VNI), false).unwrap();
        tables.net_mut(NET);
        let mut tunnel = Tunnel::new(Arc::new(VxlanStats::default()));
        tunnel.open(Sockets::open(&cfg, false).unwrap());
        Desk {
            fdb: Fdb::new(FdbConfig::default()),
            tables,
            egress: Egress::default(),
            tunnel,
            buf: vec![0u8; HEADROOM + super::MAX_FRAME].into_boxed_slice(),
        }
    }

    fn port(&mut self, id: u32, net: NetId, vnet_hdr: bool) -> End {
        let (ours, theirs) = crate::seqpacket_pair().unwrap();
        let stats = Arc::new(PortStats::default());
        self.tables.insert(Port::new(
            PortQueue {
                id: PortId(id),
                net,
                fd: ours,
                read: true,
                mtu: 1500,
                stats: stats.clone(),
                vnet_hdr,
                gone: Arc::new(AtomicBool::new(false)),
                mac: None,
                policy: Default::default(),
                uplink: None,
                storm: None,
                tx: None,
            },
            None,
        ));
        End {
            sock: UnixDatagram::from(theirs),
            stats,
        }
    }

    fn vtep(&mut self, id: u32, net: NetId) -> Peer {
        // One address per VTEP: a network accepts one VTEP per sender IP.
        let ip = std::net::Ipv4Addr::new(127, 0, 0, 10 + id as u8);
        let sock = UdpSocket::bind((ip, 0)).unwrap();
        sock.set_nonblocking(true).unwrap();
        let stats = Arc::new(PortStats::default());
        self.tables
            .vteps
            .add(&VtepInfo {
                id: VtepId(id),
                net,
                addr: sock.local_addr().unwrap(),
                dynamic: false,
                stats: stats.clone(),
            })
            .unwrap();
        Peer { sock, stats }
    }

    /// A frame read from port `id` (behind `vnet` on an offload port).
    fn on_port(&mut self, id: u32, f: &[u8], vnet: Option<VnetHdr>) -> Decision {
        let net = self.tables.port(PortId(id)).unwrap().net;
        self.receive(Ingress::port(PortId(id), net), f, vnet)
    }

    /// A frame decapsulated from VTEP `id`.
    fn on_vtep(&mut self, id: u32, f: &[u8]) -> Decision {
        let net = self.tables.vteps.get(VtepId(id)).unwrap().net;
        self.receive(Ingress::vtep(VtepId(id), net), f, None)
    }

    fn receive(&mut self, ingress: Ingress, f: &[u8], vnet: Option<VnetHdr>) -> Decision {
        let verdict = decide(&self.fdb.pin(), ingress, f, NOW);
        self.dispatch(ingress, verdict, f, vnet);
        verdict.decision
    }

    /// Frames decapsulated from VTEP `id` in one receive: the turn ends
    /// after the last.
    fn train_on_vtep(&mut self, id: u32, frames: &[Vec<u8>]) {
        let net = self.tables.vteps.get(VtepId(id)).unwrap().net;
        let ingress = Ingress::vtep(VtepId(id), net);
        for f in frames {
            let verdict = decide(&self.fdb.pin(), ingress, f, NOW);
            self.dispatch_only(ingress, verdict, f, None);
        }
        self.end_turn();
    }

    /// Dispatches `f` as if `verdict` had been decided for it, then ends
    /// the turn.
    fn dispatch(&mut self, ingress: Ingress, verdict: Verdict, f: &[u8], vnet: Option<VnetHdr>) {
        self.dispatch_only(ingress, verdict, f, vnet);
        self.end_turn();
    }

    /// What ends a turn: the GRO super-frame and the tunnel's batch go out.
    fn end_turn(&mut self) {
        self.egress.flush_gro(&self.tables.ports);
        self.tunnel.flush(&self.tables.vteps);
    }

    fn dispatch_only(
        &mut self,
        ingress: Ingress,
        verdict: Verdict,
        f: &[u8],
        vnet: Option<VnetHdr>,
    ) {
        let Desk {
            tables,
            egress,
            tunnel,
            buf,
            ..
        } = self;
        buf[HEADROOM..HEADROOM + f.len()].copy_from_slice(f);
        if let Some(h) = vnet {
            h.emit(&mut buf[HEADROOM - VNET_HDR_LEN..HEADROOM]);
        }
        let stats = match ingress.from {
            Dest::Local(p) => &tables.port(p).unwrap().stats,
            Dest::Remote(v) => &tables.vteps.get(v).unwrap().stats,
        };
        let hdr = vnet.unwrap_or_default();
        let mut frame = Frame::new(buf, HEADROOM, f.len(), hdr, vnet.is_some());
        dispatch(tables, egress, tunnel, ingress, stats, verdict, &mut frame);
    }

    fn pin(&self, m: MacAddr, dest: Dest) {
        self.fdb.add_static(NET, m, dest, NOW).unwrap();
    }
}

fn nothing(what: &str, got: Vec<Vec<u8>>) {
    assert!(got.is_empty(), "{what} got {} frame(s)", got.len());
}

#[test]
fn a_local_unknown_unicast_floods_to_the_other_ports_and_the_vteps() {
    let mut d = Desk::new();
    let (p1, p2, p3) = (
        d.port(1, NET, false),
        d.port(2, NET, false),
        d.port(3, NET, false),
    );
    let elsewhere = d.port(4, OTHER_NET, false);
    let (v0, v1) = (d.vtep(0, NET), d.vtep(1, NET));
    let f = frame(mac(0xb), mac(0xa), 1);
    assert_eq!(d.on_port(1, &f, None), Decision::Flood);
    assert_eq!(p2.got(), vec![f.clone()]);
    assert_eq!(p3.got(), vec![f.clone()]);
    nothing("the ingress port", p1.got());
    nothing("another network", elsewhere.got());
    assert_eq!(v0.got(), vec![vxlan(VNI, &f)]);
    assert_eq!(v1.got(), vec![vxlan(VNI, &f)]);
    assert_eq!(v0.stats.tx_frames.get(), 1);
    assert_eq!(v0.stats.tx_bytes.get(), 60);
    assert_eq!(p2.stats.tx_bytes.get(), 60);
}

#[test]
fn a_known_unicast_goes_to_one_port_and_a_hairpin_nowhere() {
    let mut d = Desk::new();
    let (p1, p2, p3) = (
        d.port(1, NET, false),
        d.port(2, NET, false),
        d.port(3, NET, false),
    );
    let v0 = d.vtep(0, NET);
    d.on_port(2, &frame(MacAddr::BROADCAST, mac(0xb), 0), None);
    let _ = (p1.got(), p3.got(), v0.got());
    let f = frame(mac(0xb), mac(0xa), 1);
    assert_eq!(d.on_port(1, &f, None), Decision::Forward(PortId(2)));
    assert_eq!(p2.got(), vec![f]);
    nothing("port 3", p3.got());
    nothing("the VTEP", v0.got());
    // To B, from B's own port.
    let back = frame(mac(0xb), mac(0xc), 2);
    assert_eq!(
        d.on_port(2, &back, None),
        Decision::Drop(DropReason::Hairpin)
    );
    assert_eq!(p2.stats.drops(DropReason::Hairpin), 1);
    for (what, got) in [("1", p1.got()), ("2", p2.got()), ("3", p3.got())] {
        nothing(what, got);
    }
    nothing("the VTEP", v0.got());
}

#[test]
fn a_stale_entry_floods_to_the_local_ports_only() {
    let mut d = Desk::new();
    let (p1, p2) = (d.port(1, NET, false), d.port(2, NET, false));
    let elsewhere = d.port(5, OTHER_NET, false);
    let v0 = d.vtep(0, NET);
    // An entry for a port that is gone, and one for a port of another network.
    d.pin(mac(0xc), Dest::Local(PortId(9)));
    d.pin(mac(0xd), Dest::Local(PortId(5)));
    for (dst, tag) in [(mac(0xc), 1), (mac(0xd), 2)] {
        let f = frame(dst, mac(0xa), tag);
        assert!(matches!(d.on_port(1, &f, None), Decision::Forward(_)));
        assert_eq!(p2.got(), vec![f.clone()]);
        nothing("the ingress port", p1.got());
        nothing("another network", elsewhere.got());
        nothing("the VTEP", v0.got());
        // The same from the overlay.
        d.on_vtep(0, &f);
        assert_eq!(p1.got(), vec![f.clone()]);
        assert_eq!(p2.got(), vec![f]);
        nothing("another network", elsewhere.got());
    }
}

#[test]
fn a_remote_destination_is_encapsulated_to_its_vtep_only() {
    let mut d = Desk::new();
    let (p1, p2) = (d.port(1, NET, false), d.port(2, NET, false));
    let (v0, v1) = (d.vtep(0, NET), d.vtep(1, NET));
    d.tables
        .vteps
        .set_network(OTHER_NET, Some(VNI + 1), false)
        .unwrap();
    let v2 = d.vtep(2, OTHER_NET);
    d.pin(mac(0xe), Dest::Remote(VtepId(1)));
    let f = frame(mac(0xe), mac(0xa), 1);
    assert_eq!(d.on_port(1, &f, None), Decision::Encap(VtepId(1)));
    assert_eq!(v1.got(), vec![vxlan(VNI, &f)]);
    nothing("VTEP 0", v0.got());
    nothing("port 2", p2.got());
    // Behind a VTEP that does not exist, or that belongs to another network.
    d.pin(mac(0xf), Dest::Remote(VtepId(7)));
    d.pin(mac(0x10), Dest::Remote(VtepId(2)));
    d.on_port(1, &frame(mac(0xf), mac(0xa), 2), None);
    d.on_port(1, &frame(mac(0x10), mac(0xa), 3), None);
    assert_eq!(p1.stats.drops(DropReason::NoTunnel), 2);
    nothing("VTEP 2", v2.got());
    nothing("port 2", p2.got());
}

#[test]
fn a_decapsulated_flood_reaches_the_local_ports_only() {
    let mut d = Desk::new();
    let (p1, p2) = (d.port(1, NET, false), d.port(2, NET, false));
    let (v0, v1) = (d.vtep(0, NET), d.vtep(1, NET));
    let f = frame(MacAddr::BROADCAST, mac(0x20), 1);
    assert_eq!(d.on_vtep(0, &f), Decision::Flood);
    assert_eq!(p1.got(), vec![f.clone()]);
    assert_eq!(p2.got(), vec![f]);
    nothing("the sending VTEP", v0.got());
    nothing("another VTEP", v1.got());
    // Learned behind the VTEP: a local port's answer is encapsulated to it.
    let answer = frame(mac(0x20), mac(0xa), 2);
    assert_eq!(d.on_port(1, &answer, None), Decision::Encap(VtepId(0)));
    assert_eq!(v0.got(), vec![vxlan(VNI, &answer)]);
}

#[test]
fn a_decapsulated_frame_never_goes_back_into_the_overlay() {
    let mut d = Desk::new();
    let p1 = d.port(1, NET, false);
    let (v0, v1) = (d.vtep(0, NET), d.vtep(1, NET));
    d.pin(mac(0x21), Dest::Remote(VtepId(1)));
    d.pin(mac(0x22), Dest::Remote(VtepId(0)));
    // Behind another VTEP: refused by decide().
    let f = frame(mac(0x21), mac(0x30), 1);
    assert_eq!(d.on_vtep(0, &f), Decision::Drop(DropReason::SplitHorizon));
    // Behind the sending VTEP itself: a hairpin.
    let f = frame(mac(0x22), mac(0x31), 2);
    assert_eq!(d.on_vtep(0, &f), Decision::Drop(DropReason::Hairpin));
    // And dispatch holds the line on its own, whatever the verdict.
    let verdict = Verdict {
        decision: Decision::Encap(VtepId(1)),
        learned: None,
    };
    d.dispatch(Ingress::vtep(VtepId(0), NET), verdict, &f, None);
    assert_eq!(v0.stats.drops(DropReason::SplitHorizon), 2);
    assert_eq!(v0.stats.drops(DropReason::Hairpin), 1);
    nothing("VTEP 0", v0.got());
    nothing("VTEP 1", v1.got());
    nothing("port 1", p1.got());
}

#[test]
fn a_decapsulated_unicast_goes_to_its_port_behind_a_zero_header_on_an_offload_port() {
    let mut d = Desk::new();
    let (p1, p2) = (d.port(1, NET, false), d.port(2, NET, true));
    let v0 = d.vtep(0, NET);
    d.on_port(1, &frame(MacAddr::BROADCAST, mac(0xa), 0), None);
    d.on_port(2, &frame(MacAddr::BROADCAST, mac(0xb), 0), None);
    let _ = (p1.got(), p2.got(), v0.got());
    let f = frame(mac(0xa), mac(0x20), 1);
    assert_eq!(d.on_vtep(0, &f), Decision::Forward(PortId(1)));
    assert_eq!(p1.got(), vec![f]);
    nothing("port 2", p2.got());
    // Not TCP, so not merged: an offload port gets it behind an all-zero header.
    let f = frame(mac(0xb), mac(0x20), 2);
    assert_eq!(d.on_vtep(0, &f), Decision::Forward(PortId(2)));
    let mut want = vec![0u8; VNET_HDR_LEN];
    want.extend_from_slice(&f);
    assert_eq!(p2.got(), vec![want]);
    nothing("port 1", p1.got());
    nothing("the VTEP", v0.got());
}

#[test]
fn decapsulated_tcp_segments_for_an_offload_port_are_merged_back() {
    let mut d = Desk::new();
    let (p1, p2) = (d.port(1, NET, false), d.port(2, NET, true));
    let v0 = d.vtep(0, NET);
    d.on_port(2, &frame(MacAddr::BROADCAST, mac(0xb), 0), None);
    let _ = (p1.got(), v0.got());
    let (f, hdr) = tcp4_super(3000, 1000);
    let mut scratch = vec![0u8; 64 * 1024];
    let segs = offload::segment(&f, &hdr, &mut scratch, 0).unwrap();
    let frames: Vec<Vec<u8>> = segs.frames(&scratch).map(<[u8]>::to_vec).collect();
    d.train_on_vtep(0, &frames);
    let got = p2.got();
    assert_eq!(got.len(), 1, "one write for the train");
    let (h, merged) = VnetHdr::split(&got[0]).unwrap();
    assert_eq!(h.gso_type, GSO_TCPV4);
    assert_eq!(merged.len(), f.len());
    assert_eq!(&merged[54..], &f[54..], "the payload, in order");
    assert_eq!(p2.stats.tx_frames.get(), 1);
    nothing("port 1", p1.got());
}

#[test]
fn a_mirror_of_a_port_gets_the_merged_frame_it_got_or_its_segments() {
    let mut d = Desk::new();
    let p2 = d.port(2, NET, true);
    let (plain, offload) = (d.port(3, NET, false), d.port(4, NET, true));
    let v0 = d.vtep(0, NET);
    d.on_port(2, &frame(MacAddr::BROADCAST, mac(0xb), 0), None);
    let _ = (plain.got(), offload.got(), v0.got());
    let (f, hdr) = tcp4_super(3000, 1000);
    let mut scratch = vec![0u8; 64 * 1024];
    let segs = offload::segment(&f, &hdr, &mut scratch, 0).unwrap();
    let frames: Vec<Vec<u8>> = segs.frames(&scratch).map(<[u8]>::to_vec).collect();

    // A monitoring port that takes super-frames: the very write port 2 got.
    assert!(crate::observe::mirror::set(&p2.stats, 4, &offload.stats, 2));
    d.train_on_vtep(0, &frames);
    let got = p2.got();
    assert_eq!(got.len(), 1, "one write for the train");
    assert_eq!(offload.got(), got, "the merged frame, once");
    nothing("the plain port", plain.got());

    // One that does not: the segments again, as they arrived.
    assert!(crate::observe::mirror::set(&p2.stats, 3, &plain.stats, 2));
    let sent = plain.stats.tx_frames.get();
    d.train_on_vtep(0, &frames);
    assert_eq!(p2.got().len(), 1);
    assert_eq!(plain.got(), frames, "the segments, byte for byte");
    nothing("the offload monitor", offload.got());
    assert_eq!(
        plain.stats.tx_frames.get(),
        sent + 3,
        "counted on the monitor"
    );
    crate::observe::mirror::remove(&p2.stats);
}

#[test]
fn a_flood_cuts_a_super_frame_once_for_every_plain_port_and_vtep() {
    let mut d = Desk::new();
    let (p1, p2, p3, p4) = (
        d.port(1, NET, true),
        d.port(2, NET, false),
        d.port(3, NET, false),
        d.port(4, NET, true),
    );
    let v0 = d.vtep(0, NET);
    let (f, hdr) = tcp4_super(3000, 1000);
    let mut scratch = vec![0u8; 64 * 1024];
    let segs = offload::segment(&f, &hdr, &mut scratch, 0).unwrap();
    assert_eq!(segs.count, 3);
    let want: Vec<Vec<u8>> = segs.frames(&scratch).map(<[u8]>::to_vec).collect();

    assert_eq!(d.on_port(1, &f, Some(hdr)), Decision::Flood);
    assert_eq!(d.egress.cuts, 1, "one cut for two plain ports and a VTEP");
    assert_eq!(p2.got(), want);
    assert_eq!(p3.got(), want);
    // The offload port takes the super-frame as it came.
    let mut whole = hdr.to_bytes().to_vec();
    whole.extend_from_slice(&f);
    assert_eq!(p4.got(), vec![whole]);
    let datagrams: Vec<Vec<u8>> = want.iter().map(|s| vxlan(VNI, s)).collect();
    assert_eq!(v0.got(), datagrams);
    assert_eq!(v0.stats.tx_frames.get(), 3);
    nothing("the ingress port", p1.got());
    // The next super-frame is cut anew.
    d.on_port(1, &f, Some(hdr));
    assert_eq!(d.egress.cuts, 2);
}

#[test]
fn a_cut_that_only_fits_without_vxlan_headers_is_refused_for_the_vtep_alone() {
    let mut d = Desk::new();
    let p2 = d.port(2, NET, false);
    let _p1 = d.port(1, NET, true);
    let v0 = d.vtep(0, NET);
    // 3275 segments of 74 bytes: 242 KiB as frames, 262 KiB with a VXLAN
    // header each, past the 256 KiB a super-frame may be cut into.
    let (f, hdr) = tcp4_super(65_495, 20);
    d.on_port(1, &f, Some(hdr));
    assert_eq!(d.egress.cuts, 1);
    assert_eq!(v0.stats.drops(DropReason::BadOffload), 1);
    nothing("the VTEP", v0.got());
    let sent = p2.stats.tx_frames.get();
    assert!(sent > 0);
    // The socket pair's buffer holds only so many: the rest is counted.
    assert_eq!(sent + p2.stats.drops(DropReason::TxQueueFull), 3275);
    assert_eq!(p2.stats.drops(DropReason::BadOffload), 0);
}

/// A read's length is trusted only within the buffer it was read into: a
/// TAP returns the full length of a frame it truncated to the buffer.
#[test]
fn read_lengths_beyond_the_buffer_or_short_of_the_header_are_no_frames() {
    use super::ingress::frame_len;
    let room = super::MAX_FRAME + VNET_HDR_LEN;
    assert_eq!(frame_len(60, room, 0), Ok(60));
    assert_eq!(frame_len(72, room, VNET_HDR_LEN), Ok(60));
    assert_eq!(frame_len(room, room, VNET_HDR_LEN), Ok(super::MAX_FRAME));
    assert_eq!(
        frame_len(room + 1, room, VNET_HDR_LEN),
        Err(DropReason::RxError)
    );
    assert_eq!(frame_len(usize::MAX, room, 0), Err(DropReason::RxError));
    assert_eq!(
        frame_len(11, room, VNET_HDR_LEN),
        Err(DropReason::BadOffload)
    );
    assert_eq!(frame_len(VNET_HDR_LEN, room, VNET_HDR_LEN), Ok(0));
}
