//! The pcapng blocks a capture is written as (draft-ietf-opsawg-pcapng):
//! a Section Header Block, one Interface Description Block per port or
//! VTEP (link type Ethernet, `if_tsresol` 9: nanosecond timestamps), an
//! Enhanced Packet Block per frame (direction in `epb_flags`, the drop
//! reason as an `opt_comment`), and at the end one Interface Statistics
//! Block per interface (copies lost in `isb_osdrop`).
//!
//! Also the reader the CLI uses to print and count what it receives:
//! [`Reader::next_block`] never panics and never reads past a block's
//! declared length.

/// Direction of a captured frame, as seen from the switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Received from the port (or the VTEP).
    In,
    /// Sent to the port.
    Out,
}

pub const SHB: u32 = 0x0A0D_0D0A;
pub const IDB: u32 = 1;
pub const EPB: u32 = 6;
pub const ISB: u32 = 5;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const LINKTYPE_ETHERNET: u16 = 1;
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;
const ISB_OSDROP: u16 = 7;
const ISB_USRDELIV: u16 = 8;

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Appends an option (code, value, padding).
fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + pad4(value.len()) - value.len(), 0);
}

/// Wraps `body` (with its options, ended) as a block of `kind`.
fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let total = (12 + body.len()) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&total.to_le_bytes());
}

fn end_options(body: &mut Vec<u8>) {
    body.extend_from_slice(&OPT_END.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
}

/// The section header, with `comment` (what was captured).
pub fn section_header(out: &mut Vec<u8>, comment: &str) {
    let mut b = Vec::new();
    b.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&(-1i64).to_le_bytes());
    option(&mut b, OPT_COMMENT, comment.as_bytes());
    end_options(&mut b);
    block(out, SHB, &b);
}

/// One interface: a port or VTEP named `name`.
pub fn interface(out: &mut Vec<u8>, name: &str, snaplen: u32) {
    let mut b = Vec::new();
    b.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&snaplen.to_le_bytes());
    option(&mut b, IF_NAME, name.as_bytes());
    option(&mut b, IF_TSRESOL, &[9]);
    end_options(&mut b);
    block(out, IDB, &b);
}

/// One frame: `data` (at most the snap length) of a frame `orig_len`
/// long, on interface `iface`, at `ts_ns` since the epoch.
pub fn packet(
    out: &mut Vec<u8>,
    iface: u32,
    ts_ns: u64,
    data: &[u8],
    orig_len: u32,
    dir: Dir,
    comment: Option<&str>,
) {
    let mut b = Vec::with_capacity(32 + pad4(data.len()));
    b.extend_from_slice(&iface.to_le_bytes());
    b.extend_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
    b.extend_from_slice(&(ts_ns as u32).to_le_bytes());
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&orig_len.to_le_bytes());
    b.extend_from_slice(data);
    b.resize(b.len() + pad4(data.len()) - data.len(), 0);
    let flags: u32 = match dir {
        Dir::In => 1,
        Dir::Out => 2,
    };
    option(&mut b, EPB_FLAGS, &flags.to_le_bytes());
    if let Some(c) = comment {
        option(&mut b, OPT_COMMENT, c.as_bytes());
    }
    end_options(&mut b);
    block(out, EPB, &b);
}

/// The end of a capture on interface `iface`: frames delivered to the
/// reader and copies lost.
pub fn statistics(out: &mut Vec<u8>, iface: u32, ts_ns: u64, delivered: u64, lost: u64) {
    let mut b = Vec::new();
    b.extend_from_slice(&iface.to_le_bytes());
    b.extend_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
    b.extend_from_slice(&(ts_ns as u32).to_le_bytes());
    option(&mut b, ISB_USRDELIV, &delivered.to_le_bytes());
    option(&mut b, ISB_OSDROP, &lost.to_le_bytes());
    end_options(&mut b);
    block(out, ISB, &b);
}

/// An Enhanced Packet Block as read back.
#[derive(Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub iface: u32,
    /// Nanoseconds since the epoch.
    pub ts_ns: u64,
    /// The captured bytes (at most the snap length).
    pub data: &'a [u8],
    pub orig_len: u32,
    pub dir: Option<Dir>,
    pub comment: Option<String>,
}

/// A block as read back: its type and body (without the length fields).
#[derive(Debug, PartialEq, Eq)]
pub struct Block<'a> {
    pub kind: u32,
    pub body: &'a [u8],
}

impl Block<'_> {
    fn u32_at(&self, at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(
            self.body.get(at..at + 4)?.try_into().ok()?,
        ))
    }

    /// An EPB's interface, timestamp (ns), captured bytes, original
    /// length, direction and comment.
    pub fn packet(&self) -> Option<Packet<'_>> {
        if self.kind != EPB {
            return None;
        }
        let iface = self.u32_at(0)?;
        let ts = (u64::from(self.u32_at(4)?) << 32) | u64::from(self.u32_at(8)?);
        let caplen = self.u32_at(12)? as usize;
        let orig = self.u32_at(16)?;
        let data = self.body.get(20..20usize.checked_add(caplen)?)?;
        let mut dir = None;
        let mut comment = None;
        for (code, v) in options(self.body.get(20 + pad4(caplen)..)?) {
            match code {
                EPB_FLAGS if v.len() == 4 => {
                    dir = match u32::from_le_bytes(v.try_into().ok()?) & 3 {
                        1 => Some(Dir::In),
                        2 => Some(Dir::Out),
                        _ => None,
                    }
                }
                OPT_COMMENT => comment = Some(String::from_utf8_lossy(v).into_owned()),
                _ => {}
            }
        }
        Some(Packet {
            iface,
            ts_ns: ts,
            data,
            orig_len: orig,
            dir,
            comment,
        })
    }

    /// An IDB's `if_name`.
    pub fn interface_name(&self) -> Option<String> {
        if self.kind != IDB {
            return None;
        }
        options(self.body.get(8..)?)
            .find(|(c, _)| *c == IF_NAME)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// An ISB's copies lost (`isb_osdrop`).
    pub fn lost(&self) -> Option<u64> {
        if self.kind != ISB {
            return None;
        }
        options(self.body.get(12..)?)
            .find(|(c, v)| *c == ISB_OSDROP && v.len() == 8)
            .and_then(|(_, v)| Some(u64::from_le_bytes(v.try_into().ok()?)))
    }
}

/// The options in `b`, up to `opt_endofopt` or the first malformed one.
fn options(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let code = u16::from_le_bytes(b.get(0..2)?.try_into().ok()?);
        let len = usize::from(u16::from_le_bytes(b.get(2..4)?.try_into().ok()?));
        if code == OPT_END {
            return None;
        }
        let v = b.get(4..4 + len)?;
        b = b.get(4 + pad4(len)..).unwrap_or(&[]);
        Some((code, v))
    })
}

/// Splits a little-endian pcapng stream (as this module writes it) into
/// blocks as its bytes arrive.
#[derive(Debug, Default)]
pub struct Reader {
    buf: Vec<u8>,
}

/// Largest block the reader accepts (a 256 KiB frame and its options).
pub const MAX_BLOCK: usize = 300 * 1024;

impl Reader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole block, if it is there; `Err` when the stream is not
    /// pcapng as written here (the caller stops reading).
    pub fn next_block(&mut self) -> Result<Option<(u32, Vec<u8>)>, String> {
        let (Some(kind), Some(len)) = (self.buf.get(0..4), self.buf.get(4..8)) else {
            return Ok(None);
        };
        let kind = u32::from_le_bytes(kind.try_into().unwrap_or_default());
        let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
        if len < 12 || len % 4 != 0 || len > MAX_BLOCK {
            return Err(format!(
                "malformed pcapng block (type {kind:#x}, length {len})"
            ));
        }
        if self.buf.len() < len {
            return Ok(None);
        }
        let body = self.buf[8..len - 4].to_vec();
        self.buf.drain(..len);
        Ok(Some((kind, body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_through_the_reader() {
        let mut out = Vec::new();
        section_header(&mut out, "vxswitch capture of c1");
        interface(&mut out, "c1", 65535);
        packet(
            &mut out,
            0,
            1_765_029_727_311_000_123,
            &[1, 2, 3, 4, 5],
            60,
            Dir::Out,
            Some("drop: oversize"),
        );
        statistics(&mut out, 0, 1, 1, 7);
        let mut r = Reader::default();
        // Byte by byte: blocks come out only when whole.
        let mut blocks = Vec::new();
        for b in &out {
            r.push(&[*b]);
            while let Some(blk) = r.next_block().unwrap() {
                blocks.push(blk);
            }
        }
        assert_eq!(
            blocks.iter().map(|b| b.0).collect::<Vec<_>>(),
            [SHB, IDB, EPB, ISB]
        );
        let b = Block {
            kind: blocks[1].0,
            body: &blocks[1].1,
        };
        assert_eq!(b.interface_name().as_deref(), Some("c1"));
        let b = Block {
            kind: blocks[2].0,
            body: &blocks[2].1,
        };
        let Packet {
            iface,
            ts_ns: ts,
            data,
            orig_len: orig,
            dir,
            comment,
        } = b.packet().unwrap();
        assert_eq!(
            (iface, ts, data, orig, dir),
            (
                0,
                1_765_029_727_311_000_123,
                &[1u8, 2, 3, 4, 5][..],
                60,
                Some(Dir::Out)
            )
        );
        assert_eq!(comment.as_deref(), Some("drop: oversize"));
        let b = Block {
            kind: blocks[3].0,
            body: &blocks[3].1,
        };
        assert_eq!(b.lost(), Some(7));
        // Garbage is refused, not trusted.
        let mut r = Reader::default();
        r.push(&[6, 0, 0, 0, 5, 0, 0, 0]);
        assert!(r.next_block().is_err());
        for cut in 0..20 {
            let b = Block {
                kind: EPB,
                body: &out[..cut],
            };
            let _ = b.packet();
        }
    }
}
