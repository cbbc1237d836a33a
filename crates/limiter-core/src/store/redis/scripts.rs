//! The store's Lua scripts, as sent to Redis: `decide.lua` alone, and the batch wrapper
//! running `decide.lua` and `refund.lua` for many entries.

use std::sync::atomic::{AtomicU64, Ordering};

use redis::aio::ConnectionLike;
use redis::Script;

const DECIDE: &str = include_str!("decide.lua");
const BATCH: &str = include_str!("batch.lua");
const REFUND: &str = include_str!("refund.lua");

/// The scripts of one store; built once, shared by its clones.
pub(super) struct Scripts {
    pub(super) decide: Script,
    pub(super) batch: Script,
    /// How many times a `NOSCRIPT` made this store load its scripts, under the lock that
    /// makes concurrent callers load them once.
    loaded: tokio::sync::Mutex<u64>,
    loads: AtomicU64,
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
        let (now, batch_now) = clock.lines();
        let decide = replace_marker(DECIDE, "--[[CLOCK]]", now);
        let batch = replace_marker(BATCH, "--[[DECIDE]]", &embedded(DECIDE));
        let batch = replace_marker(&batch, "--[[REFUND]]", &embedded(REFUND));
        let batch = replace_marker(&batch, "--[[BATCH_CLOCK]]", batch_now);
        Scripts {
            decide: Script::new(&with_ttls(&decide, clock)),
            batch: Script::new(&with_ttls(&batch, clock)),
            loaded: tokio::sync::Mutex::new(0),
            loads: AtomicU64::new(0),
        }
    }

    /// The loads so far: read before a call that may meet `NOSCRIPT`.
    pub(super) fn loads(&self) -> u64 {
        self.loads.load(Ordering::Acquire)
    }

    /// Loads every script unless another caller has loaded them since `seen` (what
    /// [`loads`](Self::loads) read before the call that met `NOSCRIPT`).
    pub(super) async fn load_once<C: ConnectionLike>(
        &self,
        seen: u64,
        conn: &mut C,
    ) -> redis::RedisResult<()> {
        let mut loaded = self.loaded.lock().await;
        if *loaded == seen {
            self.decide.prepare_invoke().load_async(conn).await?;
            self.batch.prepare_invoke().load_async(conn).await?;
            *loaded += 1;
            self.loads.store(*loaded, Ordering::Release);
        }
        Ok(())
    }
}

impl ScriptClock {
    /// What replaces the clock markers of a stand-alone script and of the batch script.
    fn lines(self) -> (&'static str, &'static str) {
        match self {
            ScriptClock::Redis => ("", ""),
            #[cfg(feature = "test-clock")]
            ScriptClock::Injected => (
                "now = tonumber(ARGV[#ARGV])",
                "batch_now = tonumber(ARGV[#ARGV])",
            ),
        }
    }
}

/// A script's text as the body of a function of the batch script: it takes the batch's
/// time (one TIME call and one instant for the whole batch, read and converted once), and
/// reads the batch's KEYS and ARGV from the entry's offsets (`key_base`, `arg_base`).
fn embedded(script: &str) -> String {
    let script = replace_marker(script, "local t = redis.call('TIME')\n", "");
    let script = replace_marker(
        &script,
        "local now = t[1] * 1000000 + t[2]",
        "local now = batch_now",
    );
    let script = replace_marker(&script, "--[[CLOCK]]", "");
    assert!(
        !script.contains("#ARGV") && !script.contains("#KEYS"),
        "an embedded script reads KEYS and ARGV from offsets, not their length"
    );
    script
        .replace("KEYS[", "KEYS[key_base + ")
        .replace("ARGV[", "ARGV[arg_base + ")
}

/// Under the injected clock, every TTL is ten minutes longer.
fn with_ttls(script: &str, clock: ScriptClock) -> String {
    match clock {
        ScriptClock::Redis => script.to_owned(),
        #[cfg(feature = "test-clock")]
        ScriptClock::Injected => {
            assert!(
                script.contains("local TTL_EXTRA = 0"),
                "script marker TTL_EXTRA missing"
            );
            script.replace("local TTL_EXTRA = 0", "local TTL_EXTRA = 600000")
        }
    }
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
    use super::super::protocol::*;
    use super::*;
    use crate::Period;

    #[test]
    fn every_marker_is_present_once() {
        let scripts = Scripts::new(ScriptClock::Redis);
        assert!(scripts.batch.get_hash() != scripts.decide.get_hash());
        #[cfg(feature = "test-clock")]
        {
            let injected = Scripts::new(ScriptClock::Injected);
            assert!(injected.decide.get_hash() != scripts.decide.get_hash());
            assert!(injected.batch.get_hash() != scripts.batch.get_hash());
        }
    }

    #[test]
    #[should_panic(expected = "must occur exactly once")]
    fn a_missing_marker_panics() {
        replace_marker("return {1}", "--[[CLOCK]]", "now = 0");
    }

    /// `local NAME = value` must be a line of `script`.
    fn assert_defines(script: &str, name: &str, value: impl std::fmt::Display) {
        let line = format!("local {name} = {value}");
        assert!(
            script.lines().any(|l| l == line),
            "the script must define `{line}`, as the Rust side does"
        );
    }

    #[test]
    fn the_scripts_constants_are_the_rust_sides() {
        let algorithms = [
            ("ALGORITHM_GCRA", ALGORITHM_GCRA),
            ("ALGORITHM_FIXED", ALGORITHM_FIXED),
            ("ALGORITHM_CALENDAR", ALGORITHM_CALENDAR),
            ("ALGORITHM_SLIDING_COUNTER", ALGORITHM_SLIDING_COUNTER),
            ("ALGORITHM_SLIDING_LOG", ALGORITHM_SLIDING_LOG),
        ];
        for script in [DECIDE, REFUND] {
            for (name, code) in algorithms {
                assert_defines(script, name, code);
            }
        }
        assert_defines(DECIDE, "ARGS_PER_WINDOW", ARGS_PER_WINDOW);
        assert_defines(DECIDE, "REPLY_PER_LOG", REPLY_PER_LOG);
        assert_defines(DECIDE, "FITS", FITS);
        assert_defines(DECIDE, "NEVER", NEVER);
        assert_defines(REFUND, "REFUND_ARGS_PER_WINDOW", REFUND_ARGS_PER_WINDOW);
        for (name, period) in [
            ("PERIOD_MINUTE", Period::Minute),
            ("PERIOD_HOUR", Period::Hour),
            ("PERIOD_DAY", Period::Day),
            ("PERIOD_WEEK", Period::Week),
            ("PERIOD_MONTH", Period::Month),
        ] {
            assert_defines(DECIDE, name, period.code());
        }
    }
}
