//! IP protocol numbers (the IPv4 protocol field and IPv6 next header), as
//! IANA assigns them ("Assigned Internet Protocol Numbers"; the IPv6
//! extension headers of RFC 8200 section 4 among them).

enum_with_unknown! {
    /// An IPv4 protocol / IPv6 next-header number.
    pub enum IpProtocol(u8) {
        /// IPv6 hop-by-hop options (RFC 8200 section 4.3).
        HopByHop = 0,
        Icmp = 1,
        Tcp = 6,
        Udp = 17,
        /// IPv6 routing header (RFC 8200 section 4.4).
        Ipv6Route = 43,
        /// IPv6 fragment header (RFC 8200 section 4.5).
        Ipv6Frag = 44,
        /// Encapsulating security payload (RFC 4303).
        Esp = 50,
        /// Authentication header (RFC 4302).
        Ah = 51,
        Icmpv6 = 58,
        /// IPv6 "no next header" (RFC 8200 section 4.7).
        Ipv6NoNxt = 59,
        /// IPv6 destination options (RFC 8200 section 4.6).
        Ipv6Opts = 60,
        Sctp = 132,
        /// IPv6 mobility header (RFC 6275).
        Ipv6Mobility = 135,
        /// Host identity protocol (RFC 7401).
        Hip = 139,
        /// Shim6 (RFC 5533).
        Shim6 = 140,
    }
}

impl IpProtocol {
    /// The IPv6 extension headers whose length is `(byte 1 + 1) * 8`
    /// (RFC 8200 section 4): hop-by-hop, routing and destination options,
    /// the ones walked on the way to a transport header.
    #[inline]
    pub const fn is_ipv6_ext_walkable(self) -> bool {
        matches!(
            self,
            IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts
        )
    }

    /// The other IPv6 extension headers (RFC 8200 and the IANA list of
    /// "IPv6 Extension Header Types"): fragment, ESP, AH, mobility, HIP,
    /// Shim6. What follows them is not a plain transport header.
    #[inline]
    pub const fn is_ipv6_ext_opaque(self) -> bool {
        matches!(
            self,
            IpProtocol::Ipv6Frag
                | IpProtocol::Esp
                | IpProtocol::Ah
                | IpProtocol::Ipv6Mobility
                | IpProtocol::Hip
                | IpProtocol::Shim6
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(IpProtocol::from(v)), v);
        }
        assert_eq!(IpProtocol::from(6), IpProtocol::Tcp);
        assert_eq!(IpProtocol::from(200), IpProtocol::Unknown(200));
    }

    #[test]
    fn extension_header_classes() {
        let walk: Vec<u8> = (0..=255u8)
            .filter(|&v| IpProtocol::from(v).is_ipv6_ext_walkable())
            .collect();
        assert_eq!(walk, [0, 43, 60]);
        let opaque: Vec<u8> = (0..=255u8)
            .filter(|&v| IpProtocol::from(v).is_ipv6_ext_opaque())
            .collect();
        assert_eq!(opaque, [44, 50, 51, 135, 139, 140]);
    }
}
