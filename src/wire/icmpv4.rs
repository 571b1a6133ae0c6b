//! ICMP for IPv4 (RFC 792): the common header, and echo request/reply,
//! the messages the switch gateway answers.
//!
//! ```text
//!  0   type   1  code   2  checksum (over the whole message)
//!  4   identifier (echo)    6  sequence number (echo)
//!  8   data
//! ```
//!
//! Contract: [`Icmpv4Packet::check_len`] checks the 8 bytes every message
//! this crate reads has (the common header and the echo fields; other
//! messages have 4 bytes of their own there). The message is the whole
//! buffer: pass one cut at the IP payload's end.

use super::checksum;
use super::{read_u16_unchecked, write_u16_unchecked, Error, Result};

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const DATA: usize = 8;
}

/// Length of the header this crate reads: common header and echo fields.
pub const HEADER_LEN: usize = field::DATA;

enum_with_unknown! {
    /// The ICMP message type.
    pub enum Icmpv4Message(u8) {
        EchoReply = 0,
        DstUnreachable = 3,
        Redirect = 5,
        EchoRequest = 8,
        TimeExceeded = 11,
    }
}

/// A read/write view of an ICMP message.
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    #[inline(always)]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline(always)]
    pub fn msg_type(&self) -> Icmpv4Message {
        Icmpv4Message::from(self.buffer.as_ref()[field::TYPE])
    }

    #[inline(always)]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    #[inline(always)]
    pub fn echo_ident(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }

    #[inline(always)]
    pub fn echo_seq_no(&self) -> u16 {
        read_u16_unchecked(self.buffer.as_ref(), field::ECHO_SEQNO.start)
    }

    /// The echo data (for other messages, what follows their 8 bytes).
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }

    /// Whether the checksum over the whole message verifies.
    #[inline(always)]
    pub fn verify_checksum(&self) -> bool {
        checksum::verifies(checksum::sum_words(self.buffer.as_ref(), 0))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    #[inline(always)]
    pub fn set_msg_type(&mut self, t: Icmpv4Message) {
        self.buffer.as_mut()[field::TYPE] = u8::from(t);
    }

    #[inline(always)]
    pub fn set_msg_code(&mut self, c: u8) {
        self.buffer.as_mut()[field::CODE] = c;
    }

    #[inline(always)]
    pub fn set_checksum(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    #[inline(always)]
    pub fn set_echo_ident(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::ECHO_IDENT.start, v);
    }

    #[inline(always)]
    pub fn set_echo_seq_no(&mut self, v: u16) {
        write_u16_unchecked(self.buffer.as_mut(), field::ECHO_SEQNO.start, v);
    }

    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }

    /// Computes and stores the checksum over the whole buffer.
    #[inline(always)]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// A parsed echo request or reply; the data is borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr<'a> {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Parses an echo request or reply with code 0 and a checksum that
    /// verifies; anything else is [`Error::Malformed`] (this crate answers
    /// nothing else).
    pub fn parse(p: &Icmpv4Packet<&'a [u8]>) -> Result<Icmpv4Repr<'a>> {
        p.check_len()?;
        if p.msg_code() != 0 || !p.verify_checksum() {
            return Err(Error::Malformed);
        }
        let buffer: &'a [u8] = p.buffer;
        let data = &buffer[field::DATA..];
        let (ident, seq_no) = (p.echo_ident(), p.echo_seq_no());
        match p.msg_type() {
            Icmpv4Message::EchoRequest => Ok(Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }),
            Icmpv4Message::EchoReply => Ok(Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            }),
            _ => Err(Error::Malformed),
        }
    }

    /// Bytes `emit` writes: 8 plus the data.
    pub const fn buffer_len(&self) -> usize {
        match self {
            Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => {
                HEADER_LEN + data.len()
            }
        }
    }

    /// Writes the message, checksum included, into the first
    /// [`buffer_len`](Self::buffer_len) bytes.
    ///
    /// # Panics
    /// When the buffer is shorter than `buffer_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Icmpv4Packet<T>) {
        let (ty, ident, seq_no, data) = match *self {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => (Icmpv4Message::EchoRequest, ident, seq_no, data),
            Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => (Icmpv4Message::EchoReply, ident, seq_no, data),
        };
        let len = HEADER_LEN + data.len();
        let mut p = Icmpv4Packet::new_unchecked(&mut p.buffer.as_mut()[..len]);
        p.set_msg_type(ty);
        p.set_msg_code(0);
        p.set_echo_ident(ident);
        p.set_echo_seq_no(seq_no);
        p.data_mut().copy_from_slice(data);
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo request, id 0x1234 seq 1, data "hi". Checksum by hand: the
    /// words 0800 0000 1234 0001 6869 sum to 0x829e, complement 0x7d61.
    const REQUEST: [u8; 10] = [8, 0, 0x7d, 0x61, 0x12, 0x34, 0, 1, b'h', b'i'];

    #[test]
    fn parses_and_emits_the_fixture() {
        let p = Icmpv4Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(
            (p.msg_type(), p.msg_code()),
            (Icmpv4Message::EchoRequest, 0)
        );
        assert_eq!(
            (p.echo_ident(), p.echo_seq_no(), p.checksum()),
            (0x1234, 1, 0x7d61)
        );
        assert!(p.verify_checksum());
        let r = Icmpv4Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Icmpv4Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: b"hi"
            }
        );
        let mut out = [0xffu8; 12];
        r.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(&out[..10], &REQUEST[..]);
        assert_eq!(out[10..], [0xff, 0xff], "nothing past buffer_len");
        assert_eq!(r.buffer_len(), 10);
    }

    #[test]
    fn reply_differs_in_type_and_checksum_only() {
        let Ok(Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        }) = Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&REQUEST[..]))
        else {
            panic!("not a request");
        };
        let reply = Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data,
        };
        let mut out = [0u8; 10];
        reply.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]));
        let p = Icmpv4Packet::new_checked(&out[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv4Message::EchoReply);
        assert!(p.verify_checksum());
        assert_eq!(&out[4..], &REQUEST[4..]);
    }

    #[test]
    fn refuses_short_corrupt_and_other_messages() {
        for n in 0..8 {
            assert_eq!(
                Icmpv4Packet::new_checked(&REQUEST[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        let mut b = REQUEST;
        b[9] ^= 1;
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&b[..])),
            Err(Error::Malformed)
        );
        let mut b = REQUEST;
        b[0] = 3;
        Icmpv4Packet::new_unchecked(&mut b[..]).fill_checksum();
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&b[..])),
            Err(Error::Malformed)
        );
        assert_eq!(Icmpv4Message::from(3), Icmpv4Message::DstUnreachable);
        assert_eq!(u8::from(Icmpv4Message::from(42)), 42);
    }
}
