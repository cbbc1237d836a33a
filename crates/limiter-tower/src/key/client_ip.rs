//! The `ip` scope: the peer address, or, behind trusted proxies, the client address they
//! report. A forwarding header is believed only from a trusted peer, and then only up to
//! the first hop that is not itself trusted (the rightmost untrusted entry): everything
//! to its left was written by the client and may be forged.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::config::ForwardedHeader;

/// Forwarding headers longer than this are treated as malformed: no proxy chain is that
/// long, and the bound keeps the work per request small.
const MAX_FORWARDED_LEN: usize = 4096;

/// Finds the client address of a request.
#[derive(Debug, Clone)]
pub(crate) struct ClientIpResolver {
    trusted: Box<[IpNet]>,
    header: ForwardedHeader,
    ipv6_prefix: u8,
}

impl ClientIpResolver {
    /// Believes `header` from peers in `trusted`; groups IPv6 clients by `ipv6_prefix` bits
    /// (at most 128: [`LimiterBuilder`](crate::LimiterBuilder) checks it).
    pub(crate) fn new(trusted: Vec<IpNet>, header: ForwardedHeader, ipv6_prefix: u8) -> Self {
        ClientIpResolver {
            trusted: trusted.into_iter().map(|n| n.trunc()).collect(),
            header,
            ipv6_prefix,
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client address: `peer` unless it is a trusted proxy with a well-formed
    /// forwarding header. A malformed or oversized header falls back to `peer`.
    pub(crate) fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let chain = match self.header {
            ForwardedHeader::XForwardedFor => chain(headers, "x-forwarded-for", parse_xff),
            ForwardedHeader::Forwarded => chain(headers, "forwarded", parse_forwarded),
        };
        let Some(chain) = chain else {
            return peer;
        };
        // Right to left: the first hop that is not one of ours is the client as far as
        // anything trustworthy can tell; if every hop is ours, the leftmost one is.
        chain
            .iter()
            .rev()
            .find(|ip| !self.is_trusted(**ip))
            .or(chain.first())
            .copied()
            .unwrap_or(peer)
    }

    /// The network `ip` is counted in besides itself by the enumeration defence: its /24
    /// for IPv4; none for IPv6, whose [`bucket`](Self::bucket) is a network already.
    pub(crate) fn network(&self, ip: IpAddr) -> Option<String> {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Ipv4Net::new(v4, 24).ok().map(|net| net.trunc().to_string()),
            IpAddr::V6(_) => None,
        }
    }

    /// The key part for `ip`: IPv4 as is, IPv6 as its network at the configured prefix.
    pub(crate) fn bucket(&self, ip: IpAddr) -> String {
        match ip.to_canonical() {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match Ipv6Net::new(v6, self.ipv6_prefix) {
                Ok(net) => net.trunc().to_string(),
                Err(_) => v6.to_string(),
            },
        }
    }
}

/// Every value of header `name`, in order, parsed by `parse`; `None` when a value is not
/// UTF-8, too long, or does not parse.
fn chain(
    headers: &HeaderMap,
    name: &str,
    parse: fn(&str, &mut Vec<IpAddr>) -> Option<()>,
) -> Option<Vec<IpAddr>> {
    let mut out = Vec::new();
    let mut total = 0;
    for value in headers.get_all(name) {
        total += value.len();
        if total > MAX_FORWARDED_LEN {
            return None;
        }
        parse(value.to_str().ok()?, &mut out)?;
    }
    Some(out)
}

/// `X-Forwarded-For: 203.0.113.7, 10.0.0.1` (ports and brackets tolerated).
fn parse_xff(value: &str, out: &mut Vec<IpAddr>) -> Option<()> {
    for entry in value.split(',') {
        out.push(parse_node(entry.trim())?);
    }
    Some(())
}

/// RFC 7239: `Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"`. Every
/// element must carry a `for` with an address; `unknown` and obfuscated identifiers make
/// the chain unusable, so the peer address is used.
fn parse_forwarded(value: &str, out: &mut Vec<IpAddr>) -> Option<()> {
    for element in value.split(',') {
        let node = element.split(';').find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("for")
                .then(|| value.trim().trim_matches('"'))
        })?;
        out.push(parse_node(node)?);
    }
    Some(())
}

/// An address, optionally with a port (`1.2.3.4:80`, `[::1]:80`) or brackets (`[::1]`).
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sock) = node.parse::<SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    let bare = node.strip_prefix('[')?.strip_suffix(']')?;
    bare.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn resolver(header: ForwardedHeader) -> ClientIpResolver {
        let trusted = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        ClientIpResolver::new(trusted, header, 64)
    }

    fn headers(name: &'static str, values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name, HeaderValue::from_bytes(v).unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_headers_change_nothing() {
        let r = resolver(ForwardedHeader::XForwardedFor);
        let h = headers("x-forwarded-for", &[b"1.1.1.1"]);
        assert_eq!(r.resolve(ip("198.51.100.9"), &h), ip("198.51.100.9"));
    }

    #[test]
    fn trusted_peer_yields_rightmost_untrusted_hop() {
        let r = resolver(ForwardedHeader::XForwardedFor);
        let h = headers("x-forwarded-for", &[b"6.6.6.6, 203.0.113.7", b"10.1.1.1"]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("203.0.113.7"));
        let all_ours = headers("x-forwarded-for", &[b"10.2.2.2, 10.1.1.1"]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &all_ours), ip("10.2.2.2"));
        assert_eq!(r.resolve(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
    }

    #[test]
    fn malformed_non_utf8_or_oversized_headers_fall_back_to_peer() {
        let r = resolver(ForwardedHeader::XForwardedFor);
        for bad in [&b"not-an-ip"[..], b"1.2.3.4,,", b"\xff\xfe"] {
            let h = headers("x-forwarded-for", &[bad]);
            assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        }
        let long = "1.2.3.4, ".repeat(1000);
        let h = headers("x-forwarded-for", &[long.as_bytes()]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn rfc7239_forwarded() {
        let r = resolver(ForwardedHeader::Forwarded);
        let h = headers(
            "forwarded",
            &[b"for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https, for=10.9.9.9"],
        );
        assert_eq!(r.resolve(ip("::1"), &h), ip("2001:db8::1"));
        let unknown = headers("forwarded", &[b"for=unknown"]);
        assert_eq!(r.resolve(ip("::1"), &unknown), ip("::1"));
    }

    #[test]
    fn ipv6_grouped_by_prefix_and_mapped_v4_unwrapped() {
        let r = resolver(ForwardedHeader::XForwardedFor);
        assert_eq!(r.bucket(ip("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(r.bucket(ip("2001:db8:1:2:bbbb::9")), "2001:db8:1:2::/64");
        assert_eq!(r.bucket(ip("::ffff:192.0.2.1")), "192.0.2.1");
        assert_eq!(
            r.resolve(ip("::ffff:192.0.2.1"), &HeaderMap::new()),
            ip("192.0.2.1")
        );
    }
}
