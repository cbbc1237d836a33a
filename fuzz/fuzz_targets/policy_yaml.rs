//! The YAML policy loader on any bytes: it answers a `ConfigError` naming the file,
//! never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use limiter_tower::fuzzing::parse_policy_yaml;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = parse_policy_yaml(data) {
        assert!(e.to_string().starts_with("fuzz/policy.yaml"), "{e}");
    }
});
