//! A WebSocket connection's client address, for the per-IP connection quota (`limits.max_connections_per_ip`).
//!
//! The peer address of the TCP connection, unless that peer is one of `http.trusted_proxies` (IPs or CIDRs)
//! and `http.client_ip_header` is set: then the header names the client. `X-Forwarded-For` lists the hops
//! left to right, each proxy appending the address it received the request from, so only the right-most
//! entries were written by trusted proxies: the client is the right-most address that is not itself a trusted
//! proxy (anything left of it may be forged by the client). `X-Real-IP` holds one address. A header that is
//! missing or unparsable leaves the peer address.
//!
//! Addresses are counted per [`quota_key`]: an IPv4 address, or the /64 prefix of an IPv6 address
//! (one host usually holds a whole /64).

use std::net::{IpAddr, Ipv6Addr};

/// An IP network: an address and a prefix length (`10.0.0.0/8`, `::1/128`; a bare address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{s:?}: bad prefix length"))?,
        };
        Ok(Cidr { net, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), self.prefix, 32) == masked(u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(net.into(), self.prefix, 128) == masked(ip.into(), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `width`-bit address.
fn masked(addr: u128, prefix: u8, width: u32) -> u128 {
    let host_bits = width - u32::from(prefix);
    if host_bits >= 128 {
        0
    } else {
        addr >> host_bits
    }
}

/// How client addresses are found: built once from the settings.
#[derive(Clone, Debug, Default)]
pub struct ClientIpConfig {
    trusted: Vec<Cidr>,
    /// Lowercase header name; empty = only the peer address counts.
    header: String,
}

impl ClientIpConfig {
    /// `trusted_proxies` must have been validated (see [`parse_trusted`]).
    pub fn new(trusted_proxies: &[String], header: &str) -> Result<Self, String> {
        Ok(ClientIpConfig { trusted: parse_trusted(trusted_proxies)?, header: header.trim().to_ascii_lowercase() })
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }

    /// The client address of a request from `peer` whose `header` values (in order) are `values`.
    pub fn client_ip<'a>(&self, peer: IpAddr, values: impl Iterator<Item = &'a str>) -> IpAddr {
        let peer = peer.to_canonical();
        if self.header.is_empty() || !self.is_trusted(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = values.flat_map(|v| v.split(',')).filter_map(parse_hop).collect();
        hops.iter().rev().find(|ip| !self.is_trusted(**ip)).copied().or(hops.first().copied()).unwrap_or(peer)
    }

    /// The header to read; None when only the peer address counts.
    pub fn header(&self) -> Option<&str> {
        (!self.header.is_empty()).then_some(self.header.as_str())
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| hop.strip_prefix('[').and_then(|h| h.strip_suffix(']')).and_then(|h| h.parse().ok()))?;
    Some(ip.to_canonical())
}

/// Parses `http.trusted_proxies`.
pub fn parse_trusted(list: &[String]) -> Result<Vec<Cidr>, String> {
    list.iter().map(|s| s.parse()).collect()
}

/// The address a per-IP quota counts: IPv4 as is, IPv6 by its /64 prefix.
pub fn quota_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_contain_their_addresses() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.200.3")) && !net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped IPv6 counts as IPv4");
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")) && !all.contains(ip("::1")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        for bad in ["10.0.0.0/33", "nope", "::/129", "1.2.3.4/"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_header_counts_only_behind_a_trusted_proxy() {
        let cfg = ClientIpConfig::new(&["127.0.0.1".into(), "10.0.0.0/8".into()], "X-Forwarded-For").unwrap();
        let xff = |peer: &str, v: &str| cfg.client_ip(ip(peer), std::iter::once(v));
        // A direct client cannot choose its address.
        assert_eq!(xff("198.51.100.7", "203.0.113.5"), ip("198.51.100.7"));
        // Behind the proxy: the right-most address that is not a trusted proxy; forged entries on the left lose.
        assert_eq!(xff("127.0.0.1", "203.0.113.5"), ip("203.0.113.5"));
        assert_eq!(xff("127.0.0.1", "1.2.3.4, 203.0.113.5, 10.0.0.2"), ip("203.0.113.5"));
        assert_eq!(xff("127.0.0.1", "203.0.113.5:4711"), ip("203.0.113.5"));
        // Only proxies: the left-most; garbage or no header: the peer.
        assert_eq!(xff("127.0.0.1", "10.0.0.3, 10.0.0.2"), ip("10.0.0.3"));
        assert_eq!(xff("127.0.0.1", "unknown"), ip("127.0.0.1"));
        assert_eq!(cfg.client_ip(ip("127.0.0.1"), std::iter::empty()), ip("127.0.0.1"));
        // Several header lines read as one list.
        assert_eq!(cfg.client_ip(ip("127.0.0.1"), ["1.1.1.1", "203.0.113.8"].into_iter()), ip("203.0.113.8"));
        let off = ClientIpConfig::new(&["127.0.0.1".into()], "").unwrap();
        assert_eq!(off.client_ip(ip("127.0.0.1"), std::iter::once("203.0.113.5")), ip("127.0.0.1"));
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        assert_eq!(quota_key(ip("2001:db8:1:2:aaaa::1")), quota_key(ip("2001:db8:1:2:bbbb::9")));
        assert_ne!(quota_key(ip("2001:db8:1:2::1")), quota_key(ip("2001:db8:1:3::1")));
        assert_eq!(quota_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }
}
