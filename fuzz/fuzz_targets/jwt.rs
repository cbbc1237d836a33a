//! Bearer token extraction on any `Authorization` bytes: never a panic, and an identity
//! only from a token that verifies (never an empty one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use limiter_tower::fuzzing::identify_jwt;

fuzz_target!(|data: &[u8]| {
    if let Ok(identity) = identify_jwt(data) {
        assert!(!identity.is_empty());
    }
});
