//! Entry points for the fuzz targets (`fuzz/`) and the property tests
//! (`tests/props.rs`): one function per parser that takes bytes from
//! outside, which runs those bytes the way the daemon does and panics only
//! on a bug: a crash of the code under test, or a broken invariant it
//! asserts (a parse that re-emits other bytes, a cut super-frame whose
//! segments do not carry its payload, a frame counted twice).
//!
//! Not an API: hidden from the docs, free to change with the fuzz targets.
//! It exists so that the targets and the tests can reach crate-private
//! parsers (`vxlan::decap`, the VTEP table) without making them public.
//! See `docs/fuzzing.md` for the targets, their input formats and the seeds.
//!
//! Every entry point is deterministic (no clock, no randomness; the one
//! with a socket talks to a server of its own on loopback), allocates in
//! proportion to its input, and finishes in time linear in it.

mod cluster;
mod control;
mod frames;
mod overlay;
mod plugins;

pub use cluster::{etcd_response, EtcdMode};
pub use control::{control_line, state_file};
pub use frames::{fix_checksums, frame_ingress, wire_round_trips, IngressReport};
pub use overlay::{gateway_responder, vxlan_decap, DecapReport, GatewayReport};
pub use plugins::{cni_config, docker_http, pending_dechunk_overflow};

/// Splits `data` into records of `[u16 length, big-endian][bytes]`; a
/// record whose length runs past the end is the rest of the input. At most
/// `max` records.
pub fn records(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && out.len() < max {
        if rest.len() < 2 {
            out.push(rest);
            break;
        }
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let body = &rest[2..];
        let n = n.min(body.len());
        out.push(&body[..n]);
        rest = &body[n..];
    }
    out
}

/// The input [`records`] splits into `parts` (each cut to 65535 bytes).
pub fn encode_records(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        let p = &p[..p.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_cut_record_is_the_rest() {
        let parts: [&[u8]; 3] = [b"abc", b"", b"defg"];
        let enc = encode_records(&parts);
        assert_eq!(records(&enc, 10), parts.to_vec());
        assert_eq!(records(&enc, 1), vec![&b"abc"[..]]);
        assert_eq!(records(&[0, 9, 1, 2], 10), vec![&[1u8, 2][..]]);
        assert_eq!(records(&[7], 10), vec![&[7u8][..]]);
        assert!(records(&[], 10).is_empty());
    }
}
