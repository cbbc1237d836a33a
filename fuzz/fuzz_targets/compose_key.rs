//! Key composition on any identity parts: never a panic, never a Redis Cluster hash tag
//! or whitespace in a key, and (with every part present) two requests share a key
//! exactly when they share every part.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use limiter_tower::fuzzing::compose_key;
use limiter_tower::Scope;

#[derive(Debug, Arbitrary, PartialEq)]
struct Identity {
    user: String,
    ip: String,
    api_key: String,
    method: String,
    route: String,
}

#[derive(Debug, Arbitrary)]
struct Input {
    scopes: Vec<u8>,
    a: Identity,
    b: Identity,
    /// Which of `a`'s parts are missing, one bit each (user, ip, api key).
    missing: u8,
}

const ALL: [Scope; 5] = [
    Scope::User,
    Scope::Ip,
    Scope::ApiKey,
    Scope::Endpoint,
    Scope::Global,
];

fn key(scopes: &[Scope], id: &Identity) -> Option<String> {
    compose_key(
        scopes,
        Some(&id.user),
        Some(&id.ip),
        Some(&id.api_key),
        &id.method,
        &id.route,
    )
}

/// A method is an HTTP token: no space, no separator.
fn is_method(method: &str) -> bool {
    http::Method::from_bytes(method.as_bytes()).is_ok()
}

fuzz_target!(|input: Input| {
    let scopes: Vec<Scope> = input
        .scopes
        .iter()
        .take(8)
        .map(|s| ALL[usize::from(*s) % ALL.len()])
        .collect();
    let a = &input.a;
    let bit = |n: u8| input.missing & (1 << n) == 0;
    let partial = compose_key(
        &scopes,
        Some(a.user.as_str()).filter(|_| bit(0)),
        Some(a.ip.as_str()).filter(|_| bit(1)),
        Some(a.api_key.as_str()).filter(|_| bit(2)),
        &a.method,
        &a.route,
    );
    for k in partial.iter().chain(key(&scopes, a).iter()) {
        assert!(
            !k.contains(['{', '}']) && !k.chars().any(char::is_whitespace),
            "{k:?}"
        );
    }
    if !is_method(&a.method) || !is_method(&input.b.method) {
        return;
    }
    let every = [Scope::User, Scope::Ip, Scope::ApiKey, Scope::Endpoint];
    let (ka, kb) = (key(&every, a), key(&every, &input.b));
    assert_eq!(ka == kb, *a == input.b, "{ka:?} {kb:?}");
});
