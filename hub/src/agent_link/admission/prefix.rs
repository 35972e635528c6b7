//! The network a connection attempt comes from, for fairness between sources and for bounding
//! what the hub sends to one network.
//!
//! IPv4 is grouped by /24: one carrier-NAT pool or one hosting subnet, the block an attacker gets
//! cheaply. IPv6 by /48: the usual end-site allocation, so a sender with a /48 (or a /56, /64)
//! counts once instead of as 65,536 /64s. IPv4-mapped IPv6 addresses (dual-stack sockets) count as
//! their IPv4 address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The /24 (IPv4) or /48 (IPv6) an address belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourcePrefix {
    /// The first three octets of an IPv4 address.
    V4([u8; 3]),
    /// The first six octets of an IPv6 address.
    V6([u8; 6]),
}

impl From<IpAddr> for SourcePrefix {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => v4.into(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.into(),
                None => v6.into(),
            },
        }
    }
}

impl From<Ipv4Addr> for SourcePrefix {
    fn from(ip: Ipv4Addr) -> Self {
        let [a, b, c, _] = ip.octets();
        Self::V4([a, b, c])
    }
}

impl From<Ipv6Addr> for SourcePrefix {
    fn from(ip: Ipv6Addr) -> Self {
        let o = ip.octets();
        Self::V6([o[0], o[1], o[2], o[3], o[4], o[5]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(ip: &str) -> SourcePrefix {
        ip.parse::<IpAddr>().unwrap().into()
    }

    #[test]
    fn addresses_group_by_slash_24_and_slash_48() {
        assert_eq!(prefix("127.0.0.1"), prefix("127.0.0.254"));
        assert_ne!(prefix("127.0.0.1"), prefix("127.0.1.1"));
        assert_eq!(prefix("2001:db8:1::1"), prefix("2001:db8:1:ffff::2"));
        assert_ne!(prefix("2001:db8:1::1"), prefix("2001:db8:2::1"));
        assert_eq!(prefix("::ffff:10.1.2.3"), prefix("10.1.2.200"));
    }
}
