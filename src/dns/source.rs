//! Which source addresses get a reply: one rule for the fast path, the full path and TCP.
//!
//! A reply to port 0, to an unspecified, broadcast or multicast address cannot reach a real
//! client; such a source is spoofed or broken, and answering it only reflects traffic at
//! someone else. hickory-server refuses port 0, `0.0.0.0`, `255.255.255.255` and `::`; we add
//! multicast and look through IPv4-mapped IPv6 addresses, which a dual-stack socket reports
//! for IPv4 clients.

use std::net::{IpAddr, SocketAddr};

/// Whether a datagram or connection from `src` may be answered.
#[inline]
pub fn answerable(src: SocketAddr) -> bool {
    src.port() != 0
        && match src.ip().to_canonical() {
            IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast()),
            IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_sources() {
        for src in [
            "0.0.0.0:0",
            "0.0.0.0:53",
            "127.0.0.1:0",
            "255.255.255.255:53",
            "224.0.0.1:53",
            "239.255.255.250:1900",
            "[::]:53",
            "[::1]:0",
            "[ff02::1]:53",
            "[::ffff:0.0.0.0]:53",
            "[::ffff:255.255.255.255]:53",
            "[::ffff:224.0.0.251]:5353",
        ] {
            let src: SocketAddr = src.parse().unwrap();
            assert!(!answerable(src), "{src} answered");
        }
    }

    #[test]
    fn ordinary_sources() {
        for src in [
            "127.0.0.1:40000",
            "192.0.2.53:53",
            "10.255.255.255:53",
            "[::1]:40000",
            "[2001:db8::53]:1",
            "[::ffff:192.0.2.1]:53",
        ] {
            let src: SocketAddr = src.parse().unwrap();
            assert!(answerable(src), "{src} refused");
        }
    }
}
