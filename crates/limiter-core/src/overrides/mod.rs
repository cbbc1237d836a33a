//! Runtime overrides: one key's limits under one policy scaled, or the key blocked, until
//! a given time. An operator's tool ("this customer gets 10x until the end of the month",
//! "block that key for an hour"): [`Override`] says what, [`RedisOverrides`] keeps them
//! where every instance reads them.

mod redis;

use std::time::{Duration, SystemTime};

pub use self::redis::{OverrideList, RedisOverrides};

/// The largest factor an override may scale a key's limits by.
pub const MAX_FACTOR: f64 = 1_000_000.0;

/// The most overrides kept at once (expired ones make room first).
pub const MAX_OVERRIDES: usize = 10_000;

/// What an override does to a key.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Adjustment {
    /// Every window of the policy holds this many times its units for the key
    /// ([`Policy::scaled`](crate::Policy::scaled)): 10.0 raises, 0.5 lowers. The key's
    /// usage is kept: it is decided against the scaled windows at once.
    Scale(f64),
    /// Every request of the key is refused until the override expires.
    Block,
}

/// An adjustment of one key's limits under one policy, until `until`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use limiter_core::{Adjustment, Override};
///
/// let month_end = SystemTime::now() + Duration::from_secs(30 * 86_400);
/// let raised = Override::scale(10.0, month_end).unwrap();
/// assert_eq!(raised.adjustment(), Adjustment::Scale(10.0));
/// assert!(Override::scale(0.0, month_end).is_err());
/// let blocked = Override::block(SystemTime::now() + Duration::from_secs(3_600));
/// assert!(!blocked.is_expired(SystemTime::now()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Override {
    adjustment: Adjustment,
    until: SystemTime,
}

/// A factor that is not a number from just above 0 to [`MAX_FACTOR`].
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("factor must be a number above 0 and at most {MAX_FACTOR}, not {0}")]
pub struct BadFactor(pub f64);

impl Override {
    /// Scales the key's limits by `factor` until `until`.
    pub fn scale(factor: f64, until: SystemTime) -> Result<Self, BadFactor> {
        if !(factor.is_finite() && factor > 0.0 && factor <= MAX_FACTOR) {
            return Err(BadFactor(factor));
        }
        Ok(Override {
            adjustment: Adjustment::Scale(factor),
            until,
        })
    }

    /// Blocks the key until `until`.
    pub fn block(until: SystemTime) -> Self {
        Override {
            adjustment: Adjustment::Block,
            until,
        }
    }

    /// What it does.
    pub fn adjustment(&self) -> Adjustment {
        self.adjustment
    }

    /// When it ends.
    pub fn until(&self) -> SystemTime {
        self.until
    }

    /// Whether it has ended at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.until
    }

    /// How long it still lasts at `now` (zero once ended).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.until.duration_since(now).unwrap_or(Duration::ZERO)
    }

    /// The stored form: `s:<factor>:<until ms>` or `b:<until ms>`.
    fn encode(&self) -> String {
        let until = millis(self.until);
        match self.adjustment {
            Adjustment::Scale(factor) => format!("s:{factor}:{until}"),
            Adjustment::Block => format!("b:{until}"),
        }
    }

    /// Reads [`encode`](Self::encode)'s form; `None` for anything else.
    fn decode(text: &str) -> Option<Override> {
        let at = |ms: &str| {
            let ms: u64 = ms.parse().ok()?;
            SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms))
        };
        match text.split(':').collect::<Vec<_>>()[..] {
            ["s", factor, until] => Override::scale(factor.parse().ok()?, at(until)?).ok(),
            ["b", until] => Some(Override::block(at(until)?)),
            _ => None,
        }
    }
}

/// Milliseconds since the Unix epoch (0 before it).
fn millis(at: SystemTime) -> u64 {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_reads_back() {
        let until = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        for o in [Override::scale(2.5, until).unwrap(), Override::block(until)] {
            assert_eq!(Override::decode(&o.encode()), Some(o));
        }
        for bad in ["", "s:x:1", "s:0:1", "b", "b:-1", "s:1:2:3", "x:1"] {
            assert_eq!(Override::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn factors_are_bounded() {
        let until = SystemTime::now();
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, MAX_FACTOR * 2.0] {
            assert!(Override::scale(bad, until).is_err(), "{bad}");
        }
        assert!(Override::scale(MAX_FACTOR, until).is_ok());
    }
}
