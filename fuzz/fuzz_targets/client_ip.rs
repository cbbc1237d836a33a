//! The X-Forwarded-For / Forwarded parser on any header bytes: never a panic, and a
//! peer that is not a trusted proxy is always its own client address.
#![no_main]

use std::net::{IpAddr, Ipv6Addr};

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use limiter_tower::fuzzing::{resolve_client_ip, TRUSTED_PROXIES};
use limiter_tower::ForwardedHeader;

#[derive(Debug, Arbitrary)]
struct Input {
    rfc7239: bool,
    /// An index into the peers below.
    peer: u8,
    /// Header values, in the order they arrive.
    values: Vec<Vec<u8>>,
}

const PEERS: [&str; 6] = [
    "10.0.0.1",
    "127.0.0.1",
    "::1",
    "fd00::7",
    "203.0.113.9",
    "2001:db8::1",
];

fuzz_target!(|input: Input| {
    let (header, name) = if input.rfc7239 {
        (ForwardedHeader::Forwarded, "forwarded")
    } else {
        (ForwardedHeader::XForwardedFor, "x-forwarded-for")
    };
    let Ok(peer) = PEERS[usize::from(input.peer) % PEERS.len()].parse::<IpAddr>() else {
        return;
    };
    let mut headers = HeaderMap::new();
    for value in &input.values {
        // Bytes a header cannot carry never reach a service.
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    let (client, bucket) = resolve_client_ip(header, peer, &headers);
    let trusted = TRUSTED_PROXIES
        .iter()
        .any(|net| net.parse::<ipnet::IpNet>().is_ok_and(|n| n.contains(&peer)));
    if !trusted {
        assert_eq!(client, peer, "an untrusted peer's headers were believed");
    }
    match client {
        IpAddr::V4(v4) => assert_eq!(bucket, v4.to_string()),
        IpAddr::V6(v6) => {
            let net = Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64));
            assert_eq!(bucket, format!("{net}/64"));
        }
    }
});
