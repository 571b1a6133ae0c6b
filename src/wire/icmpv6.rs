//! ICMPv6 (RFC 4443): the common header, echo request/reply, and the
//! neighbour solicitation/advertisement of Neighbor Discovery (RFC 4861
//! sections 4.3, 4.4 and 4.6.1), the messages the switch gateway answers.
//!
//! ```text
//!  0   type   1  code   2  checksum (pseudo-header + whole message)
//!  echo:       4  identifier   6  sequence number   8  data
//!  NS / NA:    4  flags (NA: Router 0x80, Solicited 0x40, Override 0x20)
//!              + reserved     8  target address (16)   24  options
//!  option:     0  type   1  length in 8-byte units   2  data
//!              (link-layer address options: 2..8 the Ethernet address)
//! ```
//!
//! Contract: [`Icmpv6Packet::check_len`] checks the 8 bytes every message
//! has here, and the 24 of a neighbour solicitation or advertisement
//! (decided by the type byte), so the ND getters cannot panic either. The
//! message is the whole buffer: pass one cut at the IPv6 payload's end.
//! [`NdOptions`] walks the options and refuses one of length 0 or one
//! running past the message; trailing bytes too few for an option (under
//! 8) are ignored.

use std::net::Ipv6Addr;

use super::checksum;
use super::{read_u16_unchecked, write_u16_unchecked, Error, IpProtocol, MacAddr, Result};

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const ECHO_DATA: usize = 8;
    /// Neighbour advertisement flags; reserved (zero) in a solicitation.
    pub const ND_FLAGS: usize = 4;
    pub const ND_RESERVED: Field = 5..8;
    pub const ND_TARGET: Field = 8..24;
    pub const ND_OPTIONS: usize = 24;
}

mod opt_field {
    pub type Field = core::ops::Range<usize>;
    pub const TYPE: usize = 0;
    pub const LENGTH: usize = 1;
    pub const LL_ADDR: Field = 2..8;
}

/// Length of the common header with the echo fields.
pub const HEADER_LEN: usize = field::ECHO_DATA;
/// Length of a neighbour solicitation/advertisement without options.
pub const ND_LEN: usize = field::ND_OPTIONS;
/// Length of a link-layer address option for Ethernet, and the unit of
/// option lengths.
pub const ND_LL_OPTION_LEN: usize = opt_field::LL_ADDR.end;

/// Neighbour advertisement flags (byte 4).
pub mod nd_flags {
    pub const ROUTER: u8 = 0x80;
    pub const SOLICITED: u8 = 0x40;
    pub const OVERRIDE: u8 = 0x20;
}

enum_with_unknown! {
    /// The ICMPv6 message type.
    pub enum Icmpv6Message(u8) {
        DstUnreachable = 1,
        PktTooBig = 2,
        TimeExceeded = 3,
        ParamProblem = 4,
        EchoRequest = 128,
        EchoReply = 129,
        MldQuery = 130,
        RouterSolicit = 133,
        RouterAdvert = 134,
        NeighborSolicit = 135,
        NeighborAdvert = 136,
        Redirect = 137,
        MldReport = 143,
    }
}

enum_with_unknown! {
    /// A Neighbor Discovery option type (RFC 4861 section 4.6).
    pub enum NdOptionType(u8) {
        SourceLinkLayerAddr = 1,
        TargetLinkLayerAddr = 2,
        PrefixInformation = 3,
        RedirectedHeader = 4,
        Mtu = 5,
    }
}

impl Icmpv6Message {
    /// Neighbour solicitation or advertisement: the messages with a target.
    #[inline(always)]
    const fn is_nd_with_target(self) -> bool {
        matches!(
            self,
            Icmpv6Message::NeighborSolicit | Icmpv6Message::NeighborAdvert
        )
    }
}

/// A read/write view of an ICMPv6 message.
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Ensures the 8-byte header, and the 24 bytes of a neighbour
    /// solicitation or advertisement, are there.
    #[inline(always)]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || (self.msg_type().is_nd_with_target() && len < ND_LEN) {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline(always)]
    pub fn msg_type(&self) -> Icmpv6Message {
        Icmpv6Message::from(self.buffer.as_ref()[field::TYPE])
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

    #[inline(always)]
    pub fn echo_data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::ECHO_DATA..]
    }

    /// The neighbour advertisement flags ([`nd_flags`]).
    #[inline(always)]
    pub fn nd_flags(&self) -> u8 {
        self.buffer.as_ref()[field::ND_FLAGS]
    }

    /// The target address of a neighbour solicitation or advertisement
    /// (always `Some` for those after `check_len`; `None` for another
    /// message too short to have one).
    #[inline(always)]
    pub fn nd_target(&self) -> Option<Ipv6Addr> {
        let b = self.buffer.as_ref().get(field::ND_TARGET)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Some(Ipv6Addr::from(a))
    }

    /// The options of a neighbour solicitation or advertisement (none for
    /// a message too short to have any).
    #[inline(always)]
    pub fn nd_options(&self) -> NdOptions<'_> {
        NdOptions {
            rest: self.buffer.as_ref().get(field::ND_OPTIONS..).unwrap_or(&[]),
        }
    }

    /// Whether the checksum verifies, given the IPv6 pseudo-header sum for
    /// this message's length.
    #[inline(always)]
    pub fn verify_checksum(&self, pseudo_header_sum: u64) -> bool {
        checksum::verifies(checksum::sum_words(self.buffer.as_ref(), pseudo_header_sum))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    #[inline(always)]
    pub fn set_msg_type(&mut self, t: Icmpv6Message) {
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
    pub fn echo_data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::ECHO_DATA..]
    }

    /// Sets the advertisement flags and clears the reserved bytes.
    #[inline(always)]
    pub fn set_nd_flags(&mut self, flags: u8) {
        let b = self.buffer.as_mut();
        b[field::ND_FLAGS] = flags;
        b[field::ND_RESERVED].fill(0);
    }

    #[inline(always)]
    pub fn set_nd_target(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::ND_TARGET].copy_from_slice(&a.octets());
    }

    /// The bytes after the ND header, for options.
    #[inline(always)]
    pub fn nd_options_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::ND_OPTIONS..]
    }

    /// Computes and stores the checksum over the whole buffer from the
    /// IPv6 pseudo-header sum.
    #[inline(always)]
    pub fn fill_checksum(&mut self, pseudo_header_sum: u64) {
        self.set_checksum(0);
        let sum = checksum::sum_words(self.buffer.as_ref(), pseudo_header_sum);
        self.set_checksum(!checksum::fold(sum));
    }
}

/// A view of one Neighbor Discovery option.
#[derive(Debug, Clone)]
pub struct NdOption<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NdOption<T> {
    #[inline(always)]
    pub const fn new_unchecked(buffer: T) -> Self {
        NdOption { buffer }
    }

    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let o = Self::new_unchecked(buffer);
        o.check_len()?;
        Ok(o)
    }

    /// Ensures the type and length bytes are there, the length is not 0
    /// and the option fits.
    #[inline(always)]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len <= opt_field::LENGTH {
            return Err(Error::Truncated);
        }
        match self.option_len() {
            0 => Err(Error::Malformed),
            n if n > len => Err(Error::Truncated),
            _ => Ok(()),
        }
    }

    #[inline(always)]
    pub fn option_type(&self) -> NdOptionType {
        NdOptionType::from(self.buffer.as_ref()[opt_field::TYPE])
    }

    /// The option's length in bytes (the length field times 8).
    #[inline(always)]
    pub fn option_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[opt_field::LENGTH]) * ND_LL_OPTION_LEN
    }

    /// The Ethernet address of a link-layer address option (the first six
    /// data bytes of any option, which `check_len` guarantees).
    #[inline(always)]
    pub fn link_layer_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[opt_field::LL_ADDR])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NdOption<T> {
    /// Writes a link-layer address option (8 bytes) of `ty`.
    ///
    /// # Panics
    /// When the buffer is shorter than 8 bytes.
    #[inline(always)]
    pub fn emit_link_layer_addr(&mut self, ty: NdOptionType, addr: MacAddr) {
        let b = self.buffer.as_mut();
        b[opt_field::TYPE] = u8::from(ty);
        b[opt_field::LENGTH] = 1;
        b[opt_field::LL_ADDR].copy_from_slice(addr.as_bytes());
    }
}

/// The options of a neighbour solicitation or advertisement, in order.
/// Yields an error (and then nothing) for an option of length 0 or one
/// running past the message.
#[derive(Debug, Clone)]
pub struct NdOptions<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NdOptions<'a> {
    type Item = Result<NdOption<&'a [u8]>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < ND_LL_OPTION_LEN {
            return None;
        }
        let opt = NdOption::new_unchecked(self.rest);
        if let Err(e) = opt.check_len() {
            self.rest = &[];
            return Some(Err(e));
        }
        let (this, rest) = self.rest.split_at(opt.option_len());
        self.rest = rest;
        Some(Ok(NdOption::new_unchecked(this)))
    }
}

/// A parsed message of the kinds this crate answers or sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Repr<'a> {
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
    NeighborSolicit {
        target: Ipv6Addr,
        /// The source link-layer address option, if any (the last one).
        lladdr: Option<MacAddr>,
    },
    NeighborAdvert {
        /// [`nd_flags`].
        flags: u8,
        target: Ipv6Addr,
        /// The target link-layer address option, if any (the last one).
        lladdr: Option<MacAddr>,
    },
}

impl<'a> Icmpv6Repr<'a> {
    /// Parses a message sent from `src` to `dst`: code 0, a checksum that
    /// verifies, one of the kinds above with well-formed options (only
    /// Ethernet-sized link-layer address options are read); anything else
    /// is [`Error::Malformed`].
    pub fn parse(
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        p: &Icmpv6Packet<&'a [u8]>,
    ) -> Result<Icmpv6Repr<'a>> {
        p.check_len()?;
        let buffer: &'a [u8] = p.buffer;
        let pseudo = pseudo_header_sum(src, dst, buffer.len());
        if p.msg_code() != 0 || !p.verify_checksum(pseudo) {
            return Err(Error::Malformed);
        }
        let lladdr = |want: NdOptionType| -> Result<Option<MacAddr>> {
            let mut found = None;
            for opt in p.nd_options() {
                let opt = opt?;
                if opt.option_type() == want && opt.option_len() == ND_LL_OPTION_LEN {
                    found = Some(opt.link_layer_addr());
                }
            }
            Ok(found)
        };
        let (ident, seq_no) = (p.echo_ident(), p.echo_seq_no());
        let data = &buffer[field::ECHO_DATA..];
        match p.msg_type() {
            Icmpv6Message::EchoRequest => Ok(Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }),
            Icmpv6Message::EchoReply => Ok(Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            }),
            Icmpv6Message::NeighborSolicit => Ok(Icmpv6Repr::NeighborSolicit {
                target: p.nd_target().ok_or(Error::Truncated)?,
                lladdr: lladdr(NdOptionType::SourceLinkLayerAddr).map_err(|_| Error::Malformed)?,
            }),
            Icmpv6Message::NeighborAdvert => Ok(Icmpv6Repr::NeighborAdvert {
                flags: p.nd_flags(),
                target: p.nd_target().ok_or(Error::Truncated)?,
                lladdr: lladdr(NdOptionType::TargetLinkLayerAddr).map_err(|_| Error::Malformed)?,
            }),
            _ => Err(Error::Malformed),
        }
    }

    /// Bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        match self {
            Icmpv6Repr::EchoRequest { data, .. } | Icmpv6Repr::EchoReply { data, .. } => {
                HEADER_LEN + data.len()
            }
            Icmpv6Repr::NeighborSolicit { lladdr, .. }
            | Icmpv6Repr::NeighborAdvert { lladdr, .. } => {
                ND_LEN
                    + if lladdr.is_some() {
                        ND_LL_OPTION_LEN
                    } else {
                        0
                    }
            }
        }
    }

    /// Writes the message from `src` to `dst`, checksum included, into the
    /// first [`buffer_len`](Self::buffer_len) bytes.
    ///
    /// # Panics
    /// When the buffer is shorter than `buffer_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        p: &mut Icmpv6Packet<T>,
    ) {
        let len = self.buffer_len();
        let mut p = Icmpv6Packet::new_unchecked(&mut p.buffer.as_mut()[..len]);
        p.set_msg_code(0);
        match *self {
            Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
            | Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                let ty = if matches!(self, Icmpv6Repr::EchoRequest { .. }) {
                    Icmpv6Message::EchoRequest
                } else {
                    Icmpv6Message::EchoReply
                };
                p.set_msg_type(ty);
                p.set_echo_ident(ident);
                p.set_echo_seq_no(seq_no);
                p.echo_data_mut().copy_from_slice(data);
            }
            Icmpv6Repr::NeighborSolicit { target, lladdr } => {
                p.set_msg_type(Icmpv6Message::NeighborSolicit);
                p.set_nd_flags(0);
                p.set_nd_target(target);
                if let Some(mac) = lladdr {
                    NdOption::new_unchecked(p.nd_options_mut())
                        .emit_link_layer_addr(NdOptionType::SourceLinkLayerAddr, mac);
                }
            }
            Icmpv6Repr::NeighborAdvert {
                flags,
                target,
                lladdr,
            } => {
                p.set_msg_type(Icmpv6Message::NeighborAdvert);
                p.set_nd_flags(flags);
                p.set_nd_target(target);
                if let Some(mac) = lladdr {
                    NdOption::new_unchecked(p.nd_options_mut())
                        .emit_link_layer_addr(NdOptionType::TargetLinkLayerAddr, mac);
                }
            }
        }
        p.fill_checksum(pseudo_header_sum(src, dst, len));
    }
}

/// The pseudo-header sum of an ICMPv6 message of `len` bytes.
#[inline]
fn pseudo_header_sum(src: &Ipv6Addr, dst: &Ipv6Addr, len: usize) -> u64 {
    checksum::pseudo_v6(
        &src.octets(),
        &dst.octets(),
        u8::from(IpProtocol::Icmpv6),
        len,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x88, 0, 0, 0, 0, 0, 0x11);
    const TARGET: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x88, 0, 0, 0, 0, 0, 1);
    /// ff02::1:ff00:1, the target's solicited-node group.
    const SNM: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 1);
    const MAC: MacAddr = MacAddr([0x02, 0xc1, 0, 0, 0, 0x11]);

    /// A neighbour solicitation for fd00:88::1 from fd00:88::11 with its
    /// source link-layer address, checksum computed by hand from the
    /// pseudo-header (RFC 8200 section 8.1): 0x7ba8.
    const NS: [u8; 32] = [
        135, 0, 0x7b, 0xa8, 0, 0, 0, 0, 0xfd, 0x00, 0x00, 0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        1, // target
        1, 1, 0x02, 0xc1, 0, 0, 0, 0x11, // source link-layer address
    ];

    #[test]
    fn parses_and_emits_a_neighbour_solicitation() {
        let p = Icmpv6Packet::new_checked(&NS[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv6Message::NeighborSolicit);
        assert_eq!(p.nd_target(), Some(TARGET));
        let r = Icmpv6Repr::parse(&SRC, &SNM, &p).unwrap();
        assert_eq!(
            r,
            Icmpv6Repr::NeighborSolicit {
                target: TARGET,
                lladdr: Some(MAC)
            }
        );
        let mut out = [0xffu8; 32];
        r.emit(&SRC, &SNM, &mut Icmpv6Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, NS);
        assert_eq!(r.buffer_len(), 32);
    }

    #[test]
    fn advertisement_and_echo_round_trip() {
        let na = Icmpv6Repr::NeighborAdvert {
            flags: nd_flags::ROUTER | nd_flags::SOLICITED | nd_flags::OVERRIDE,
            target: TARGET,
            lladdr: Some(MAC),
        };
        let mut b = [0u8; 32];
        na.emit(&TARGET, &SRC, &mut Icmpv6Packet::new_unchecked(&mut b[..]));
        assert_eq!((b[0], b[4], &b[24..26]), (136, 0xe0, &[2u8, 1][..]));
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Icmpv6Repr::parse(&TARGET, &SRC, &p), Ok(na));
        // The checksum covers the addresses.
        assert_eq!(Icmpv6Repr::parse(&SRC, &SRC, &p), Err(Error::Malformed));

        let echo = Icmpv6Repr::EchoReply {
            ident: 7,
            seq_no: 3,
            data: b"six",
        };
        let mut b = [0u8; 11];
        echo.emit(&TARGET, &SRC, &mut Icmpv6Packet::new_unchecked(&mut b[..]));
        assert_eq!(&b[..2], &[129, 0]);
        assert_eq!(&b[4..], &[0, 7, 0, 3, b's', b'i', b'x']);
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            (p.echo_ident(), p.echo_seq_no(), p.echo_data()),
            (7, 3, &b"six"[..])
        );
        assert_eq!(Icmpv6Repr::parse(&TARGET, &SRC, &p), Ok(echo));
    }

    #[test]
    fn options_are_walked_and_bad_ones_refused() {
        let mut ns = NS;
        ns[25] = 0; // length 0
        let p = Icmpv6Packet::new_checked(&ns[..]).unwrap();
        assert_eq!(p.nd_options().collect::<Vec<_>>().len(), 1);
        assert!(p.nd_options().next().unwrap().is_err());
        ns[25] = 2; // runs past the message
        assert!(Icmpv6Packet::new_unchecked(&ns[..])
            .nd_options()
            .next()
            .unwrap()
            .is_err());
        // Trailing bytes shorter than an option are ignored.
        let p = Icmpv6Packet::new_checked(&NS[..31]).unwrap();
        assert_eq!(p.nd_options().count(), 0);
        let o = NdOption::new_checked(&NS[24..]).unwrap();
        assert_eq!(
            (o.option_type(), o.option_len(), o.link_layer_addr()),
            (NdOptionType::SourceLinkLayerAddr, 8, MAC)
        );
        assert_eq!(
            NdOption::new_checked(&NS[24..25]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn refuses_short_messages_and_never_panics() {
        for n in 0..24 {
            assert_eq!(
                Icmpv6Packet::new_checked(&NS[..n]).unwrap_err(),
                Error::Truncated,
                "{n}"
            );
        }
        // An echo needs only 8 bytes.
        assert!(Icmpv6Packet::new_checked(&[128u8, 0, 0, 0, 0, 0, 0, 0][..]).is_ok());
        for n in 0..=NS.len() {
            for ty in [128u8, 129, 135, 136, 1] {
                let mut b = NS;
                b[0] = ty;
                if let Ok(p) = Icmpv6Packet::new_checked(&b[..n]) {
                    let _ = Icmpv6Repr::parse(&SRC, &SNM, &p);
                    let _ = p.nd_options().count();
                    let _ = (p.echo_data(), p.nd_flags(), p.nd_target());
                    if ty == 135 || ty == 136 {
                        assert!(p.nd_target().is_some());
                    }
                }
            }
        }
    }
}
