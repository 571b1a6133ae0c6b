//! The layout parse against a reference copy of the hand-written parser it
//! replaced (offload::parse_layout as of 0205aa4), on the test corpus: the
//! same layout or the same refusal, frame for frame.

use super::*;
use crate::wire::test_frames;

/// The parser as it was before the views, kept verbatim but for the error
/// type: the reference the views must match.
fn reference(frame: &[u8]) -> Result<Layout, LayoutError> {
    use LayoutError::*;
    fn be16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }
    let mut at = 12;
    let mut tags = 0;
    let ethertype = loop {
        if frame.len() < at + 2 {
            return Err(HeadersTruncated);
        }
        match be16(frame, at) {
            0x8100 | 0x88a8 if tags < 2 => {
                tags += 1;
                at += 4;
            }
            other => break other,
        }
    };
    let l3 = at + 2;
    let (ip, l4, end, next) = match ethertype {
        0x0800 => {
            if frame.len() < l3 + 20 {
                return Err(HeadersTruncated);
            }
            let ihl = usize::from(frame[l3] & 0x0f) * 4;
            if frame[l3] >> 4 != 4 || ihl < 20 {
                return Err(BadIpHeader);
            }
            let total = usize::from(be16(frame, l3 + 2));
            if total < ihl {
                return Err(BadIpHeader);
            }
            if l3 + total > frame.len() {
                return Err(if frame.len() < l3 + ihl {
                    HeadersTruncated
                } else {
                    IpLengthMismatch
                });
            }
            if be16(frame, l3 + 6) & 0x3fff != 0 {
                return Err(Ipv4Fragment);
            }
            (Ip::V4, l3 + ihl, l3 + total, frame[l3 + 9])
        }
        0x86dd => {
            if frame.len() < l3 + 40 {
                return Err(HeadersTruncated);
            }
            if frame[l3] >> 4 != 6 {
                return Err(BadIpHeader);
            }
            let payload = usize::from(be16(frame, l3 + 4));
            if payload == 0 || l3 + 40 + payload > frame.len() {
                return Err(IpLengthMismatch);
            }
            let end = l3 + 40 + payload;
            let mut next = frame[l3 + 6];
            let mut at = l3 + 40;
            let mut walked = 0;
            while matches!(next, 0 | 43 | 60) {
                walked += 1;
                if walked > 8 {
                    return Err(UnsupportedIpv6Ext);
                }
                if end < at + 8 {
                    return Err(HeadersTruncated);
                }
                if next == 43 && frame[at + 3] != 0 {
                    return Err(UnsupportedIpv6Ext);
                }
                let len = (usize::from(frame[at + 1]) + 1) * 8;
                next = frame[at];
                at += len;
            }
            if at > end {
                return Err(HeadersTruncated);
            }
            (Ip::V6, at, end, next)
        }
        _ => return Err(UnsupportedEtherType),
    };
    let (proto, l4_len) = match next {
        6 => {
            if end < l4 + 20 {
                return Err(HeadersTruncated);
            }
            let doff = usize::from(frame[l4 + 12] >> 4) * 4;
            if doff < 20 {
                return Err(BadTcpHeader);
            }
            (Proto::Tcp, doff)
        }
        17 => (Proto::Udp, 8),
        44 | 50 | 51 | 135 | 139 | 140 if ip == Ip::V6 => return Err(UnsupportedIpv6Ext),
        _ => return Err(UnsupportedL4),
    };
    if end < l4 + l4_len {
        return Err(HeadersTruncated);
    }
    Ok(Layout {
        l3,
        ip,
        l4,
        proto,
        l4_len,
        end,
    })
}

#[test]
fn matches_the_reference_on_the_corpus() {
    let mut seen = std::collections::HashMap::new();
    test_frames::for_each(|f| {
        let got = parse(f);
        assert_eq!(got, reference(f), "frame {f:02x?}");
        *seen
            .entry(format!("{:?}", got.map(|l| (l.ip, l.proto))))
            .or_insert(0) += 1;
    });
    // The corpus reaches every outcome.
    for outcome in [
        "Ok((V4, Tcp))",
        "Ok((V4, Udp))",
        "Ok((V6, Tcp))",
        "Ok((V6, Udp))",
        "Err(HeadersTruncated)",
        "Err(UnsupportedEtherType)",
        "Err(BadIpHeader)",
        "Err(IpLengthMismatch)",
        "Err(Ipv4Fragment)",
        "Err(UnsupportedIpv6Ext)",
        "Err(UnsupportedL4)",
        "Err(BadTcpHeader)",
    ] {
        assert!(
            seen.contains_key(outcome),
            "no frame gave {outcome}: {seen:?}"
        );
    }
}

#[test]
fn plain_ip_and_lengths() {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 31, 0, 1, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&[0, 53, 0, 53, 0, 11, 0, 0, 1, 2, 3]);
    let lay = parse(&f).unwrap();
    assert!(lay.is_plain_ip());
    assert_eq!((lay.l3, lay.l4, lay.end), (14, 34, 45));
    assert_eq!((lay.headers_len(), lay.payload_len()), (42, 3));
    assert_eq!(lay.proto.checksum_offset(), 6);
    assert_eq!(Proto::Tcp.checksum_offset(), 16);
    assert_eq!(lay.proto.protocol(), IpProtocol::Udp);
}
