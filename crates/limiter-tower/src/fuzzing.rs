//! Entry points for the fuzz targets in `fuzz/` (the `fuzzing` feature): thin wrappers
//! over the parsers that read what a client or an operator writes, which are private
//! to the crate otherwise. Not a stable API.

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use http::HeaderMap;
use ipnet::IpNet;
use jsonwebtoken::Algorithm;

use crate::config::{load_str, ConfigError, ForwardedHeader, Loaded, Scope};
use crate::key::{ClientIpResolver, Jwt, JwtVerifier, KeyTemplate, RequestIdentity};

/// The secret [`identify_jwt`] verifies HS256/HS384/HS512 tokens with.
pub const JWT_SECRET: &[u8] = b"limiter-fuzzing-secret";

/// The proxies [`resolve_client_ip`] trusts: `10.0.0.0/8`, `127.0.0.0/8`, `::1/128`
/// and `fd00::/8`.
pub const TRUSTED_PROXIES: [&str; 4] = ["10.0.0.0/8", "127.0.0.0/8", "::1/128", "fd00::/8"];

/// Loads `data` as a policy file named `fuzz/policy.yaml`, as
/// [`load_str`](crate::config::load_str) does (bytes that are not UTF-8 are replaced).
pub fn parse_policy_yaml(data: &[u8]) -> Result<Loaded, ConfigError> {
    load_str(
        &String::from_utf8_lossy(data),
        Path::new("fuzz/policy.yaml"),
    )
}

/// The client address of a request from `peer` with `headers`, behind the
/// [`TRUSTED_PROXIES`] reporting it in `header`, and the key part it counts under
/// (IPv6 grouped by /64).
pub fn resolve_client_ip(
    header: ForwardedHeader,
    peer: IpAddr,
    headers: &HeaderMap,
) -> (IpAddr, String) {
    let trusted = TRUSTED_PROXIES
        .iter()
        .filter_map(|net| net.parse::<IpNet>().ok())
        .collect();
    let resolver = ClientIpResolver::new(trusted, header, 64);
    let ip = resolver.resolve(peer, headers);
    (ip, resolver.bucket(ip))
}

/// The key of a request with these identity parts under a policy of `scopes`; `None`
/// where the key needs a client address and there is none.
pub fn compose_key(
    scopes: &[Scope],
    user: Option<&str>,
    ip: Option<&str>,
    api_key: Option<&str>,
    method: &str,
    route: &str,
) -> Option<String> {
    KeyTemplate::new(scopes).render(&RequestIdentity {
        user,
        ip,
        api_key,
        method,
        route,
        claims: None,
    })
}

/// The identity in an `Authorization` header holding `authorization`, verified against
/// [`JWT_SECRET`] (HS256, HS384, HS512; `exp` required); why not as text otherwise.
pub fn identify_jwt(authorization: &[u8]) -> Result<String, String> {
    static VERIFIER: OnceLock<JwtVerifier> = OnceLock::new();
    let verifier = VERIFIER.get_or_init(|| {
        Jwt::new([Algorithm::HS256, Algorithm::HS384, Algorithm::HS512])
            .hmac_secret(JWT_SECRET)
            .verifier()
            .map(|(verifier, _)| verifier)
            .unwrap_or_else(|(field, message)| panic!("the fixed verifier: {field}: {message}"))
    });
    let mut headers = HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_bytes(authorization) {
        headers.insert(http::header::AUTHORIZATION, value);
    }
    verifier
        .identify(&headers)
        .map(|verified| verified.user)
        .map_err(|e| e.to_string())
}
