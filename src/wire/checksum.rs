//! The Internet checksum (RFC 1071) in pieces: a running 64-bit sum of
//! big-endian 16-bit words, a fold, the pseudo-headers of RFC 768/793
//! (IPv4) and RFC 8200 section 8.1 (IPv6), and the finished field value.
//!
//! Every checksum in the crate goes through here: the IPv4 header checksum,
//! TCP/UDP/ICMPv6 with their pseudo-headers, ICMPv4, and the offloads that
//! complete, recompute and verify them per segment (the hot path: see
//! `benches/offload.rs`, `sum_words/1448B`).
//!
//! Pieces can be summed separately and added as long as every piece but the
//! last starts at an even offset from the first and has an even length;
//! callers sum the pseudo-header, the L4 header (always an even length) and
//! then the payload.
//!
//! The views ([`Ipv4Packet`](super::Ipv4Packet) and the others) offer
//! `verify_checksum`/`fill_checksum` built on these; the pieces stay public
//! for what works on a frame as a whole (completing a partial checksum at
//! an offset a virtio_net_hdr names).

/// Adds the big-endian 16-bit words of `data` to `sum` (a trailing odd byte
/// counts as its high byte, as RFC 1071 pads it).
///
/// The returned sum is kept in 64 bits and not folded: 2^16 = 1 mod 0xffff,
/// so adding 32-bit words and folding at the end gives the same one's
/// complement sum as adding 16-bit words, with half the additions.
pub fn sum_words(data: &[u8], sum: u64) -> u64 {
    // One's complement addition commutes with byte swapping (RFC 1071
    // section 2(B)): add the data as native-endian 32-bit words, which the
    // compiler vectorizes, fold, and swap the 16-bit result into network
    // order once at the end. Four lanes keep the additions independent.
    let mut lanes = [0u64; 4];
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(b.chunks_exact(4)) {
            *lane += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        }
    }
    let mut acc = lanes.iter().sum::<u64>();
    let rest = blocks.remainder();
    let mut words = rest.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    // The last 0-3 bytes, zero-padded: a trailing odd byte becomes the
    // high byte of its 16-bit word, as RFC 1071 pads it.
    let mut tail = [0u8; 4];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    acc += u64::from(u32::from_ne_bytes(tail));
    sum + u64::from(u16::from_be(fold(acc)))
}

/// Folds a running sum into 16 bits (one's complement addition of carries).
#[inline]
pub fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum field value for a running sum that covers everything the
/// checksum covers (with the field itself zero): folded and complemented.
/// A result of 0 becomes 0xffff, as the kernel's `CSUM_MANGLED_0` (both are
/// one's complement zero; for UDP 0 would mean "no checksum").
#[inline]
pub fn finish(sum: u64) -> u16 {
    match !fold(sum) {
        0 => 0xffff,
        c => c,
    }
}

/// The running sum of the IPv4 pseudo-header: addresses, protocol, L4 length.
#[inline]
pub fn pseudo_v4(src: &[u8], dst: &[u8], proto: u8, l4_len: usize) -> u64 {
    let s = sum_words(src, 0);
    let s = sum_words(dst, s);
    s + u64::from(proto) + l4_len as u64
}

/// The running sum of the IPv6 pseudo-header (RFC 8200 section 8.1).
#[inline]
pub fn pseudo_v6(src: &[u8], dst: &[u8], proto: u8, l4_len: usize) -> u64 {
    let s = sum_words(src, 0);
    let s = sum_words(dst, s);
    s + u64::from(proto) + l4_len as u64
}

/// The IPv4 header checksum of `header` (its checksum field must be zero).
#[inline]
pub fn ipv4_header(header: &[u8]) -> u16 {
    checksum(header)
}

/// The RFC 1071 checksum of `data`: the complemented fold of its sum. Over
/// data whose checksum field is zero, the value to store; over data that
/// includes a correct checksum field, 0.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum_words(data, 0))
}

/// Completes a partial checksum in place, as the kernel's
/// `skb_checksum_help` does for `CHECKSUM_PARTIAL`: sums `data[start..]`
/// (whose checksum field holds the pseudo-header sum the sender left
/// there) and stores the [`finish`]ed value in the 16-bit field at
/// `field`. Refuses ([`Error::Truncated`](super::Error::Truncated)) a
/// field that does not fit in `data` or starts before `start`, writing
/// nothing.
#[inline]
pub fn complete_partial(data: &mut [u8], start: usize, field: usize) -> super::Result<()> {
    if field < start || field + 2 > data.len() {
        return Err(super::Error::Truncated);
    }
    let c = finish(sum_words(&data[start..], 0));
    super::write_u16_unchecked(data, field, c);
    Ok(())
}

/// Whether a running sum that covers everything a checksum covers, the
/// checksum field included, verifies (folds to one's complement zero,
/// 0xffff).
#[inline]
pub fn verifies(sum: u64) -> bool {
    fold(sum) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to 0xddf2.
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(&b, 0)), 0xddf2);
        // And as an odd-aligned tail of a longer buffer.
        let mut c = vec![0u8; 16];
        c.extend_from_slice(&b);
        assert_eq!(fold(sum_words(&c, 0)), 0xddf2);
    }

    #[test]
    fn odd_length_pads_the_last_byte() {
        assert_eq!(fold(sum_words(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
    }

    #[test]
    fn sum_matches_a_plain_16_bit_loop() {
        let mut x = 0x1234_5678u32;
        for len in 0..200 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let mut plain = 0u32;
            for w in data.chunks(2) {
                let hi = u32::from(w[0]) << 8;
                let lo = w.get(1).map_or(0, |&b| u32::from(b));
                plain += hi | lo;
                plain = (plain & 0xffff) + (plain >> 16);
            }
            assert_eq!(u32::from(fold(sum_words(&data, 0))), plain, "len {len}");
        }
    }

    #[test]
    fn checksum_of_data_with_its_checksum_is_zero() {
        // RFC 1071 example again: the checksum is !0xddf2 = 0x220d.
        let mut b = vec![0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7, 0, 0];
        let c = checksum(&b);
        assert_eq!(c, 0x220d);
        b[8..10].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&b), 0);
        assert!(verifies(sum_words(&b, 0)));
        b[0] ^= 1;
        assert!(!verifies(sum_words(&b, 0)));
    }

    #[test]
    fn complete_partial_sums_from_start_and_checks_bounds() {
        // The sum starts at `start` whatever its parity.
        let mut f = [0u8, 0x12, 0x34, 0x00, 0x00, 0x56];
        complete_partial(&mut f, 1, 3).unwrap();
        assert_eq!(u16::from_be_bytes([f[3], f[4]]), !(0x1234u16 + 0x5600));
        let before = f;
        assert!(complete_partial(&mut f, 1, 5).is_err());
        assert!(complete_partial(&mut f, 4, 3).is_err());
        assert_eq!(f, before, "nothing written on refusal");
    }

    #[test]
    fn zero_checksum_is_sent_as_ffff() {
        assert_eq!(finish(0xffff), 0xffff);
        assert_eq!(finish(0x1_fffe), 0xffff);
        assert_eq!(finish(0), 0xffff);
        assert_eq!(finish(0x1234), !0x1234);
    }
}
