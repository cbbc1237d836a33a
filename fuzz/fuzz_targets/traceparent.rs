//! The W3C `traceparent` parser on any header bytes: never a panic, and whatever it
//! accepts has non-zero ids and formats back to what it read (version 00).
#![no_main]

use libfuzzer_sys::fuzz_target;
use limiter_tower::TraceParent;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(parent) = TraceParent::parse(text) {
        assert_ne!(parent.trace_id, [0; 16]);
        assert_ne!(parent.span_id, [0; 8]);
        if text.starts_with("00-") {
            let flags = &text[53..55];
            let formatted = format!(
                "00-{}-{}-{flags}",
                hex::encode(parent.trace_id),
                hex::encode(parent.span_id)
            );
            assert_eq!(formatted, text);
        }
    }
});
