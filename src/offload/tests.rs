//! Unit tests on hand-built frames; tests/offload.rs cross-checks the
//! results against etherparse over every combination.

use super::*;

/// Ethernet + one 802.1Q tag + IPv4 (8 bytes of options) + TCP (12 bytes of
/// options) + 3 bytes of payload, as bytes written out by hand.
fn tagged_v4_tcp() -> Vec<u8> {
    let mut f = vec![
        2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0x00, 0x00, 0x0a, 0x08, 0x00,
    ];
    // IPv4: IHL 7, total 28 + 32 + 3 = 63, DF, TTL 64, TCP.
    f.extend_from_slice(&[0x47, 0, 0, 63, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 0x94, 4, 0, 0, 1, 1, 1, 0]);
    // TCP: data offset 8.
    f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 0, 0x80, 0x18]);
    f.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    f.extend_from_slice(b"abc");
    f
}

#[test]
fn layout_of_a_tagged_ipv4_frame_with_options() {
    let f = tagged_v4_tcp();
    let lay = parse_layout(&f).unwrap();
    assert_eq!(
        lay,
        Layout {
            l3: 18,
            ip: Ip::V4,
            l4: 46,
            proto: Proto::Tcp,
            l4_len: 32,
            end: 81,
        }
    );
    assert_eq!(lay.headers_len(), 78);
    assert_eq!(lay.payload_len(), 3);
}

#[test]
fn ethernet_padding_is_not_payload() {
    let mut f = tagged_v4_tcp();
    f.extend_from_slice(&[0; 5]);
    assert_eq!(parse_layout(&f).unwrap().end, 81);
}

#[test]
fn ipv6_extension_headers_are_walked_to_udp() {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
    // payload length 8 (HBH) + 16 (dest opts) + 8 (UDP) = 32, next header 0.
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 32, 0, 64]);
    f.extend_from_slice(&[0u8; 32]);
    f.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
    f.extend_from_slice(&[17, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&[0, 53, 0, 53, 0, 8, 0, 0]);
    let lay = parse_layout(&f).unwrap();
    assert_eq!(
        (lay.l4, lay.proto, lay.end),
        (14 + 40 + 24, Proto::Udp, f.len())
    );
    // An extension header that runs past the packet.
    f[14 + 40 + 8 + 1] = 9;
    assert_eq!(parse_layout(&f), Err(OffloadError::HeadersTruncated));
}

#[test]
fn validate_checks_what_the_header_alone_can_tell() {
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV6 | GSO_ECN,
        gso_size: 1440,
        csum_start: 54,
        csum_offset: 16,
        ..VnetHdr::default()
    };
    assert_eq!(hdr.validate(74), Ok(GsoKind::TcpV6));
    assert_eq!(hdr.validate(71), Err(OffloadError::CsumOutOfFrame));
    let none = VnetHdr {
        flags: F_DATA_VALID,
        ..VnetHdr::default()
    };
    assert_eq!(none.validate(0), Ok(GsoKind::None));
}

#[test]
fn complete_checksum_at_an_odd_csum_start() {
    // The sum starts at csum_start whatever its parity, as skb_checksum does.
    let mut f = vec![0u8, 0x12, 0x34, 0x00, 0x00, 0x56];
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: 1,
        csum_offset: 2,
        ..VnetHdr::default()
    };
    complete_checksum(&mut f, &hdr).unwrap();
    assert_eq!(u16::from_be_bytes([f[3], f[4]]), !(0x1234u16 + 0x5600));
}
