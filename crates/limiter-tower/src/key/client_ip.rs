//! The `ip` scope: the peer address, or, behind trusted proxies, the client address they
//! report. A forwarding header is believed only from a trusted peer, and then only up to
//! the first hop that is not itself trusted (the rightmost untrusted entry): everything
//! to its left was written by the client and may be forged, so it is never parsed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http::HeaderMap;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use schemars::JsonSchema;
use serde::Deserialize;

/// Entries read from the right of a forwarding chain at most: no proxy chain is that
/// long, and the bound keeps the work per request small however long the header is.
const MAX_HOPS: usize = 16;

/// Entries longer than this are garbage: the longest address with port, brackets and an
/// RFC 7239 element's other parameters fits well within it.
const MAX_ENTRY_LEN: usize = 256;

/// Reads one entry of a forwarding chain: `None` for garbage.
type ParseEntry = fn(&[u8]) -> Option<IpAddr>;

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

    pub(crate) fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client address: `peer` unless it is a trusted proxy with a forwarding header.
    ///
    /// Hops are read right to left, each written by the (trusted) hop to its right: the
    /// first that is not trusted is the client. A garbage entry (not an address, not
    /// UTF-8, too long, `unknown`) ends the walk, and so do [`MAX_HOPS`] trusted ones:
    /// the client is then the last trusted hop seen (the peer if none), never anything a
    /// client wrote further left.
    pub(crate) fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let (name, parse): (_, ParseEntry) = match self.header {
            ForwardedHeader::XForwardedFor => ("x-forwarded-for", parse_xff),
            ForwardedHeader::Forwarded => ("forwarded", parse_forwarded),
        };
        let hops = headers
            .get_all(name)
            .iter()
            .rev()
            .flat_map(|value| value.as_bytes().rsplit(|b| *b == b','))
            .take(MAX_HOPS);
        let mut client = peer;
        for entry in hops {
            match parse(entry) {
                Some(ip) if self.is_trusted(ip) => client = ip,
                Some(ip) => return ip,
                None => break,
            }
        }
        client
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
            IpAddr::V4(v4) => ipv4_text(v4),
            IpAddr::V6(v6) => match Ipv6Net::new(v6, self.ipv6_prefix) {
                Ok(net) => net.trunc().to_string(),
                Err(_) => v6.to_string(),
            },
        }
    }
}

/// `v4` in dotted decimal, as its `Display` writes it, without the formatting machinery
/// (over a thousand instructions a call under callgrind): every request keyed by client
/// address renders one.
fn ipv4_text(v4: Ipv4Addr) -> String {
    let mut text = String::with_capacity(15);
    let mut digits = itoa::Buffer::new();
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        text.push_str(digits.format(octet));
    }
    text
}

/// One entry as text, trimmed; `None` when too long or not UTF-8.
fn entry_text(entry: &[u8]) -> Option<&str> {
    if entry.len() > MAX_ENTRY_LEN {
        return None;
    }
    std::str::from_utf8(entry).ok().map(str::trim)
}

/// One `X-Forwarded-For` entry: `203.0.113.7` (ports and brackets tolerated).
fn parse_xff(entry: &[u8]) -> Option<IpAddr> {
    parse_node(entry_text(entry)?)
}

/// One RFC 7239 `Forwarded` element: `for=192.0.2.60;proto=http`,
/// `for="[2001:db8::1]:4711"`. It must carry a `for` with an address: `unknown` and
/// obfuscated identifiers are garbage.
fn parse_forwarded(element: &[u8]) -> Option<IpAddr> {
    let node = entry_text(element)?.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })?;
    parse_node(node)
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

/// A forwarding header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
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
    fn garbage_where_the_proxy_wrote_falls_back_to_the_proxy() {
        let r = resolver(ForwardedHeader::XForwardedFor);
        for bad in [
            &b"not-an-ip"[..],
            b"1.2.3.4,,",
            b"\xff\xfe",
            b"1.2.3.4, unknown",
        ] {
            let h = headers("x-forwarded-for", &[bad]);
            assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("10.0.0.1"), "{bad:?}");
        }
        // Behind two proxies: garbage written by the inner one stops at the inner one.
        let h = headers("x-forwarded-for", &[b"6.6.6.6, garbage, 10.3.3.3"]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("10.3.3.3"));
        let long_entry = format!("{}, 203.0.113.7", "9".repeat(10_000));
        let h = headers("x-forwarded-for", &[long_entry.as_bytes()]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("203.0.113.7"));
        let h = headers(
            "x-forwarded-for",
            &[format!("{}1.2.3.4", "9".repeat(300)).as_bytes()],
        );
        assert_eq!(
            r.resolve(ip("10.0.0.1"), &h),
            ip("10.0.0.1"),
            "overlong entry"
        );
    }

    #[test]
    fn garbage_a_client_wrote_left_of_its_hop_is_never_read() {
        let r = resolver(ForwardedHeader::XForwardedFor);
        for forged in [&b"\xff\xfe, 203.0.113.7"[..], b"x, , ;, 203.0.113.7"] {
            let h = headers("x-forwarded-for", &[forged]);
            assert_eq!(
                r.resolve(ip("10.0.0.1"), &h),
                ip("203.0.113.7"),
                "{forged:?}"
            );
        }
        let h = headers("x-forwarded-for", &[b"not-an-ip", b"203.0.113.7"]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("203.0.113.7"));
    }

    #[test]
    fn long_chains_are_read_from_the_right_up_to_a_bound() {
        let r = resolver(ForwardedHeader::XForwardedFor);
        // 100,000 forged hops before the real one: only the rightmost entries are read.
        let long = format!("{}203.0.113.7", "1.2.3.4, ".repeat(100_000));
        let h = headers("x-forwarded-for", &[long.as_bytes()]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("203.0.113.7"));
        // More trusted hops than the bound: the client is the last one read, not the
        // address a client put further left.
        let ours: Vec<String> = (0..MAX_HOPS + 5).map(|i| format!("10.0.1.{i}")).collect();
        let chain = format!("6.6.6.6, {}", ours.join(", "));
        let h = headers("x-forwarded-for", &[chain.as_bytes()]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("10.0.1.5"));
        let within: Vec<&str> = ours
            .iter()
            .rev()
            .take(MAX_HOPS - 1)
            .map(String::as_str)
            .collect();
        let chain = format!(
            "6.6.6.6, {}",
            within.into_iter().rev().collect::<Vec<_>>().join(", ")
        );
        let h = headers("x-forwarded-for", &[chain.as_bytes()]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("6.6.6.6"));
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
        let no_for = headers("forwarded", &[b"for=6.6.6.6, proto=https"]);
        assert_eq!(r.resolve(ip("::1"), &no_for), ip("::1"));
        let hidden = headers("forwarded", &[b"for=6.6.6.6, for=_hidden, for=203.0.113.9"]);
        assert_eq!(r.resolve(ip("::1"), &hidden), ip("203.0.113.9"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn ipv4_text_is_display(octets in any::<[u8; 4]>()) {
                let v4 = Ipv4Addr::from(octets);
                prop_assert_eq!(ipv4_text(v4), v4.to_string());
            }
        }

        /// Header values: any bytes a header can carry, and chains of entries near what
        /// the parser reads.
        fn value() -> impl Strategy<Value = Vec<u8>> {
            let entry = prop_oneof![
                "(10|203)\\.0\\.[0-9]{1,3}\\.[0-9]{1,3}(:[0-9]{1,5})?",
                "\\[?(::1|2001:db8::[0-9a-f]{1,4}|fe80::1%eth0)\\]?(:[0-9]{1,5})?",
                "(for|For|by)=\"?\\[?[0-9a-f.:]{0,20}\\]?\"?(;proto=https)?",
                "unknown|_hidden|\\PC{0,8}",
            ];
            prop_oneof![
                proptest::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..=0xff], 0..64),
                proptest::collection::vec(entry, 0..6).prop_map(|e| e.join(", ").into_bytes()),
            ]
        }

        fn headers(name: &'static str, values: &[Vec<u8>]) -> HeaderMap {
            let mut map = HeaderMap::new();
            for v in values {
                if let Ok(v) = HeaderValue::from_bytes(v) {
                    map.append(name, v);
                }
            }
            map
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            /// Whatever the forwarding headers hold, an untrusted peer is its own client,
            /// and a trusted one yields itself or an address written in them: the last
            /// entry, or one whose right neighbours are all trusted.
            #[test]
            fn the_client_is_the_peer_or_an_address_the_proxies_wrote(
                rfc7239 in any::<bool>(),
                peer in prop::sample::select(vec!["10.0.0.1", "::1", "198.51.100.9"]),
                values in proptest::collection::vec(value(), 0..4),
            ) {
                let (header, name) = if rfc7239 {
                    (ForwardedHeader::Forwarded, "forwarded")
                } else {
                    (ForwardedHeader::XForwardedFor, "x-forwarded-for")
                };
                let r = resolver(header);
                let peer = ip(peer);
                let h = headers(name, &values);
                let client = r.resolve(peer, &h);
                if !r.is_trusted(peer) {
                    prop_assert_eq!(client, peer);
                } else if client != peer {
                    let parse: ParseEntry = if rfc7239 { parse_forwarded } else { parse_xff };
                    let entries: Vec<Option<IpAddr>> = h
                        .get_all(name)
                        .iter()
                        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
                        .map(parse)
                        .collect();
                    let at = entries.iter().rposition(|e| *e == Some(client));
                    prop_assert!(at.is_some(), "{:?} not in {:?}", client, h);
                    let right = &entries[at.unwrap_or_default() + 1..];
                    prop_assert!(
                        right.iter().all(|e| e.is_some_and(|ip| r.is_trusted(ip))),
                        "{:?} believed past {:?}", client, right
                    );
                }
            }
        }
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
