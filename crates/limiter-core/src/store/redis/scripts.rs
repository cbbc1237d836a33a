//! The store's Lua scripts, as sent to Redis: `decide.lua` alone, `decide.lua` inside the
//! batch wrapper, and the lease refund.

use redis::Script;

const DECIDE: &str = include_str!("decide.lua");
const BATCH: &str = include_str!("batch.lua");
const REFUND: &str = include_str!("refund.lua");

/// The scripts of one store; built once, shared by its clones.
pub(super) struct Scripts {
    pub(super) decide: Script,
    pub(super) batch: Script,
    pub(super) refund: Script,
}

/// Where the scripts read "now" from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ScriptClock {
    /// Redis `TIME`, as in production.
    Redis,
    /// The last argument of every call (test-clock builds), with TTLs ten minutes longer
    /// so that only the scripts' own arithmetic decides (see `with_script_clock`).
    #[cfg(feature = "test-clock")]
    Injected,
}

impl Scripts {
    pub(super) fn new(clock: ScriptClock) -> Scripts {
        let (decide, refund) = (clocked(DECIDE, clock), clocked(REFUND, clock));
        // The embedded decide reads the batch's time: one TIME call per batch.
        let embedded = replace_marker(
            DECIDE,
            "local t = redis.call('TIME')",
            "local t = batch_time",
        );
        let embedded = replace_marker(&embedded, "--[[CLOCK]]", "now = batch_now");
        let batch = replace_marker(BATCH, "--[[DECIDE]]", &embedded);
        let batch = match clock {
            ScriptClock::Redis => batch,
            #[cfg(feature = "test-clock")]
            ScriptClock::Injected => with_test_ttls(&replace_marker(
                &batch,
                "--[[BATCH_CLOCK]]",
                "batch_now = tonumber(ARGV[#ARGV])",
            )),
        };
        Scripts {
            decide: Script::new(&decide),
            batch: Script::new(&batch),
            refund: Script::new(&refund),
        }
    }
}

fn clocked(script: &str, clock: ScriptClock) -> String {
    match clock {
        ScriptClock::Redis => script.to_owned(),
        #[cfg(feature = "test-clock")]
        ScriptClock::Injected => with_test_ttls(&replace_marker(
            script,
            "--[[CLOCK]]",
            "now = tonumber(ARGV[#ARGV])",
        )),
    }
}

#[cfg(feature = "test-clock")]
fn with_test_ttls(script: &str) -> String {
    replace_marker(script, "local TTL_EXTRA = 0", "local TTL_EXTRA = 600000")
}

/// Replaces the one occurrence of `marker`. The scripts are constants of this crate, so a
/// missing marker is a bug in it that every Redis test would hit at once: it panics rather
/// than send a script that silently ignores the clock or the batch.
fn replace_marker(script: &str, marker: &str, with: &str) -> String {
    assert_eq!(
        script.matches(marker).count(),
        1,
        "script marker {marker:?} must occur exactly once"
    );
    script.replacen(marker, with, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_marker_is_present_once() {
        let scripts = Scripts::new(ScriptClock::Redis);
        assert!(scripts.batch.get_hash() != scripts.decide.get_hash());
        #[cfg(feature = "test-clock")]
        {
            let injected = Scripts::new(ScriptClock::Injected);
            assert!(injected.decide.get_hash() != scripts.decide.get_hash());
        }
    }
}
