//! What a limit is: [`Limit`], [`Algorithm`], [`Policy`], and their validation.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use crate::calendar::Period;
use crate::error::{InvalidFailureMode, LimitProblem, PolicyError};
use crate::store::FailureMode;

/// The most windows one policy may hold. Work per decision is linear in this number,
/// and a bound keeps a single decision's Redis script short.
pub const MAX_WINDOWS: usize = 8;

/// How one window counts requests. See the crate README for which one suits what.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Generic cell rate algorithm (token bucket semantics): `max` per `window` is the
    /// sustained rate, `burst` requests may arrive at once (defaults to `max`).
    ///
    /// Burst convention: `burst` is the number of requests that fit at once. redis-cell's
    /// `max_burst` is one less than that (its limit is `max_burst + 1`).
    Gcra {
        /// Requests that may arrive at once; `None` means `max`.
        burst: Option<u64>,
    },
    /// Exact sliding-window log: one entry per admitted request (a sorted set on Redis).
    SlidingLog,
    /// Sliding-window counter: the previous fixed window weighted by its overlap plus the
    /// current one. O(1) memory per key, an estimate that never over-admits past `max`.
    SlidingWindow,
    /// Fixed window aligned to multiples of `window` since the Unix epoch.
    FixedWindow,
    /// Fixed window aligned to UTC calendar boundaries (quota-style budgets).
    Calendar(Period),
}

impl Algorithm {
    /// A short stable tag, part of the storage key, so that changing a window's algorithm
    /// starts it afresh instead of misreading state written by another algorithm.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Algorithm::Gcra { .. } => "g",
            Algorithm::SlidingLog => "l",
            Algorithm::SlidingWindow => "s",
            Algorithm::FixedWindow => "f",
            Algorithm::Calendar(_) => "c",
        }
    }
}

/// One window: at most `max` units of cost per `window`, counted by `algorithm`.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::{Algorithm, Limit};
///
/// let per_second = Limit::new(5, Duration::from_secs(1)).with_name("burst");
/// let daily = Limit::new(1000, Duration::from_secs(86_400)).with_algorithm(Algorithm::SlidingWindow);
/// assert_eq!(per_second.name(), "burst");
/// assert_eq!(daily.max(), 1000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    name: Arc<str>,
    max: u64,
    window: Duration,
    algorithm: Algorithm,
    /// What the window counts: `None` for requests, else the unit's name (tokens, bytes).
    unit: Option<Arc<str>>,
    /// `window` in microseconds and GCRA's emission interval, computed once: divisions
    /// are a noticeable share of an in-memory decision.
    window_us: i64,
    emission_us: i64,
}

impl Limit {
    /// `max` units per `window`, counted with GCRA (burst = `max`) unless changed.
    pub fn new(max: u64, window: Duration) -> Self {
        let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        Limit {
            name: Arc::from(""),
            max,
            window,
            algorithm: Algorithm::Gcra { burst: None },
            unit: None,
            window_us,
            // Rounded down so that `capacity` requests always fit at once.
            emission_us: window_us / max.clamp(1, i64::MAX as u64) as i64,
        }
    }

    /// `max` units per UTC calendar `period` (minute, hour, day, week, month).
    pub fn per_calendar(max: u64, period: Period) -> Self {
        Limit::new(max, period.nominal()).with_algorithm(Algorithm::Calendar(period))
    }

    /// Names the window (reported in decisions and headers). Defaults to `"{max}/{window}s"`.
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = Arc::from(name);
        self
    }

    /// Chooses how the window counts.
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Self {
        if let Algorithm::Calendar(period) = algorithm {
            let unit = self.unit.take();
            self = Limit::new(self.max, period.nominal()).with_name(&self.name);
            self.unit = unit;
        }
        self.algorithm = algorithm;
        self
    }

    /// The same window with `factor` times the units (and GCRA burst), rounded, at least
    /// one: what an [`Override`](crate::Override) of the key makes of it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use limiter_core::Limit;
    ///
    /// let minute = Limit::new(60, Duration::from_secs(60)).with_name("minute");
    /// assert_eq!(minute.scaled(10.0).max(), 600);
    /// assert_eq!(minute.scaled(0.001).max(), 1);
    /// assert_eq!(minute.scaled(10.0).name(), "minute");
    /// ```
    pub fn scaled(&self, factor: f64) -> Limit {
        // `as` saturates a float: an absurd factor gives the largest count, which the
        // policy then refuses as too large.
        let scale = |n: u64| ((n as f64 * factor).round() as u64).max(1);
        let algorithm = match self.algorithm {
            Algorithm::Gcra { burst } => Algorithm::Gcra {
                burst: burst.map(scale),
            },
            other => other,
        };
        let mut limit = Limit::new(scale(self.max), self.window)
            .with_name(&self.name)
            .with_algorithm(algorithm);
        limit.unit.clone_from(&self.unit);
        limit
    }

    /// Makes the window count `unit` (tokens, bytes, credits) instead of requests: it
    /// is charged a [`Cost`](crate::Cost)'s units, where windows counting requests are
    /// charged its requests. `"requests"` (the default) counts requests.
    ///
    /// ```
    /// use std::time::Duration;
    /// use limiter_core::Limit;
    ///
    /// let tokens = Limit::new(100_000, Duration::from_secs(60)).counting("tokens");
    /// assert_eq!(tokens.unit(), "tokens");
    /// assert_eq!(Limit::new(60, Duration::from_secs(60)).unit(), "requests");
    /// ```
    pub fn counting(mut self, unit: &str) -> Self {
        self.unit = (unit != REQUESTS).then(|| Arc::from(unit));
        self
    }

    /// What the window counts: `"requests"` unless [`counting`](Self::counting) says
    /// otherwise.
    pub fn unit(&self) -> &str {
        self.unit.as_deref().unwrap_or(REQUESTS)
    }

    /// Whether the window counts requests (a cost's requests), not another unit.
    #[inline]
    pub(crate) fn counts_requests(&self) -> bool {
        self.unit.is_none()
    }

    /// The window's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Units of cost allowed per window (for GCRA: the sustained rate per window).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The window length (for calendar months, a nominal 30 days).
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The counting algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The units that fit at once: `burst` for GCRA, `max` otherwise.
    pub fn capacity(&self) -> u64 {
        match self.algorithm {
            Algorithm::Gcra { burst: Some(b) } => b,
            _ => self.max,
        }
    }

    /// The window in whole microseconds, the unit of every store's arithmetic.
    #[inline]
    pub(crate) fn window_us(&self) -> i64 {
        self.window_us
    }

    /// The start of the window holding store time `at`, for the algorithms that count
    /// in aligned windows (fixed, calendar and sliding counter); 0 for the others.
    pub(crate) fn start_at(&self, at: i64) -> i64 {
        match self.algorithm {
            Algorithm::FixedWindow | Algorithm::SlidingWindow => at - at.rem_euclid(self.window_us),
            Algorithm::Calendar(period) => period.bounds(at).0,
            Algorithm::Gcra { .. } | Algorithm::SlidingLog => 0,
        }
    }

    /// GCRA emission interval in microseconds: the window divided by `max`.
    #[inline]
    pub(crate) fn emission_us(&self) -> i64 {
        self.emission_us
    }

    fn validate(&self, policy: &str, index: usize) -> Result<(), PolicyError> {
        self.problem().map_or(Ok(()), |problem| {
            Err(PolicyError::InvalidLimit {
                policy: policy.to_owned(),
                index,
                problem,
            })
        })
    }

    fn problem(&self) -> Option<LimitProblem> {
        if self.max == 0 {
            return Some(LimitProblem::ZeroMax);
        }
        if self.window.is_zero() {
            return Some(LimitProblem::ZeroWindow);
        }
        if self.window > MAX_WINDOW {
            return Some(LimitProblem::WindowTooLong);
        }
        if self.max > MAX_UNITS {
            return Some(LimitProblem::MaxTooLarge);
        }
        if let Algorithm::Gcra { burst } = self.algorithm {
            if burst == Some(0) {
                return Some(LimitProblem::ZeroBurst);
            }
            if burst.is_some_and(|b| b > MAX_UNITS) {
                return Some(LimitProblem::BurstTooLarge);
            }
            if self.emission_us() == 0 {
                return Some(LimitProblem::BeyondResolution);
            }
        }
        None
    }
}

/// The unit a window counts unless told otherwise.
const REQUESTS: &str = "requests";

/// Windows longer than this are configuration mistakes, and the bound keeps every
/// product of microseconds and units exact in a Lua double (2^53).
const MAX_WINDOW: Duration = Duration::from_secs(400 * 86_400);
/// Units are bounded so sums of costs stay exact in a Lua double.
const MAX_UNITS: u64 = 1 << 50;

/// A named set of windows checked together: a request passes only if every window has
/// room, and a denied request consumes from none.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::{Limit, Policy};
///
/// let policy = Policy::new("api", vec![
///     Limit::new(5, Duration::from_secs(1)),
///     Limit::new(100, Duration::from_secs(60)),
/// ]).unwrap();
/// assert_eq!(policy.limits().len(), 2);
///
/// assert!(Policy::new("bad", vec![Limit::new(0, Duration::from_secs(1))]).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Policy {
    name: Arc<str>,
    /// A hash of `name`, computed once: the in-memory store seeds its key hash with it
    /// instead of hashing the name on every decision.
    name_hash: u64,
    limits: Arc<[Limit]>,
    /// The one unit besides requests that some windows count, if any.
    unit: Option<Arc<str>>,
    leasing: Leasing,
    failure_mode: Option<FailureMode>,
}

/// Whether and how a [`Leased`](crate::Leased) store may lease a policy's keys.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::{Leasing, Limit, Policy};
///
/// let policy = Policy::new("pay", vec![Limit::new(10, Duration::from_secs(60))])
///     .unwrap()
///     .with_leasing(Leasing::Off);
/// assert_eq!(policy.leasing(), Leasing::Off);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Leasing {
    /// As the store is configured (the default).
    #[default]
    Store,
    /// Never: the store decides every request of this policy.
    Off,
    /// With this lifetime instead of the store's (still at most 1/20 of the policy's
    /// shortest window).
    Lifetime(Duration),
}

impl Policy {
    /// Validates and builds a policy. Windows without a name are named `"{max}/{seconds}s"`.
    pub fn new(name: &str, limits: Vec<Limit>) -> Result<Self, PolicyError> {
        if name.is_empty() {
            return Err(PolicyError::EmptyName);
        }
        if name.contains(['{', '}']) {
            return Err(PolicyError::BadName(name.to_owned()));
        }
        if limits.is_empty() {
            return Err(PolicyError::NoLimits(name.to_owned()));
        }
        if limits.len() > MAX_WINDOWS {
            return Err(PolicyError::TooManyLimits {
                policy: name.to_owned(),
                count: limits.len(),
            });
        }
        let limits = limits
            .into_iter()
            .enumerate()
            .map(|(i, limit)| {
                limit.validate(name, i)?;
                Ok(if limit.name.is_empty() {
                    let label = format!("{}/{}s", limit.max, limit.window.as_secs_f64());
                    limit.with_name(&label)
                } else {
                    limit
                })
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        let unit = other_unit(name, &limits)?;
        Ok(Policy {
            name: Arc::from(name),
            name_hash: foldhash::fast::FixedState::with_seed(0x5eed_cafe).hash_one(name),
            limits: limits.into(),
            unit,
            leasing: Leasing::Store,
            failure_mode: None,
        })
    }

    /// The same policy (name, counters, leasing, failure mode) with every window scaled
    /// by `factor` ([`Limit::scaled`]); an error when a window would hold too many units.
    pub fn scaled(&self, factor: f64) -> Result<Policy, PolicyError> {
        let limits = self.limits.iter().map(|l| l.scaled(factor)).collect();
        let mut policy = Policy::new(&self.name, limits)?;
        policy.leasing = self.leasing;
        policy.failure_mode = self.failure_mode;
        Ok(policy)
    }

    /// Sets whether and how a [`Leased`](crate::Leased) store may lease this policy's
    /// keys (default [`Leasing::Store`]). Stores without leases ignore it.
    pub fn with_leasing(mut self, leasing: Leasing) -> Self {
        self.leasing = leasing;
        self
    }

    /// Whether and how this policy's keys may be leased.
    pub fn leasing(&self) -> Leasing {
        self.leasing
    }

    /// Sets what decides this policy's requests while the store cannot (default: the
    /// [`Guarded`](crate::Guarded) store's own mode); fails for a local share outside
    /// (0, 1].
    ///
    /// ```
    /// use std::time::Duration;
    /// use limiter_core::{FailureMode, Limit, Policy};
    ///
    /// let pay = Policy::new("pay", vec![Limit::new(10, Duration::from_secs(60))]).unwrap();
    /// let pay = pay.with_failure_mode(FailureMode::Closed).unwrap();
    /// assert_eq!(pay.failure_mode(), Some(FailureMode::Closed));
    /// assert!(pay.with_failure_mode(FailureMode::Local { share: 0.0 }).is_err());
    /// ```
    pub fn with_failure_mode(mut self, mode: FailureMode) -> Result<Self, InvalidFailureMode> {
        mode.validate()?;
        self.failure_mode = Some(mode);
        Ok(self)
    }

    /// This policy's failure mode, if it names one.
    pub fn failure_mode(&self) -> Option<FailureMode> {
        self.failure_mode
    }

    /// The policy's name; part of every storage key, so usage survives a policy reload.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The windows, in the order given.
    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }

    /// The unit besides requests that some of the windows count (see
    /// [`Limit::counting`]), if any.
    pub fn unit(&self) -> Option<&str> {
        self.unit.as_deref()
    }

    /// Whether some windows count requests and others another unit: a cost then needs
    /// both figures.
    pub fn mixes_units(&self) -> bool {
        self.unit.is_some() && self.limits.iter().any(Limit::counts_requests)
    }

    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    pub(crate) fn name_hash(&self) -> u64 {
        self.name_hash
    }
}

/// The one unit besides requests that `limits` count, or the error naming the first
/// window that counts a second one.
fn other_unit(policy: &str, limits: &[Limit]) -> Result<Option<Arc<str>>, PolicyError> {
    let mut found: Option<&Arc<str>> = None;
    for (index, limit) in limits.iter().enumerate() {
        match (&limit.unit, found) {
            (Some(unit), Some(first)) if unit != first => {
                return Err(PolicyError::MixedUnits {
                    policy: policy.to_owned(),
                    index,
                    first: first.to_string(),
                    unit: unit.to_string(),
                })
            }
            (Some(unit), None) => found = Some(unit),
            _ => {}
        }
    }
    Ok(found.cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(limit: Limit) -> LimitProblem {
        match Policy::new("p", vec![limit]) {
            Err(PolicyError::InvalidLimit { problem, .. }) => problem,
            other => panic!("expected InvalidLimit, got {other:?}"),
        }
    }

    #[test]
    fn rejects_zero_max_and_zero_window() {
        assert_eq!(
            problem(Limit::new(0, Duration::from_secs(1))),
            LimitProblem::ZeroMax
        );
        assert_eq!(
            problem(Limit::new(1, Duration::ZERO)),
            LimitProblem::ZeroWindow
        );
    }

    #[test]
    fn names_the_field_at_fault() {
        let err = Policy::new(
            "p",
            vec![
                Limit::new(1, Duration::from_secs(1)),
                Limit::new(1, Duration::from_secs(1))
                    .with_algorithm(Algorithm::Gcra { burst: Some(0) }),
            ],
        )
        .unwrap_err();
        assert_eq!(err.field(), "limits[1].burst");
        assert_eq!(
            err.to_string(),
            "policy \"p\", limit #1: burst must be at least 1"
        );
        let long = Limit::new(1, Duration::from_secs(401 * 86_400));
        assert_eq!(
            Policy::new("p", vec![long]).unwrap_err().field(),
            "limits[0].window"
        );
        assert_eq!(PolicyError::EmptyName.field(), "name");
    }

    #[test]
    fn rejects_rates_beyond_microsecond_resolution() {
        let limit = Limit::new(2_000_000, Duration::from_secs(1));
        assert_eq!(problem(limit), LimitProblem::BeyondResolution);
        // 1M/s is exactly representable.
        assert!(Policy::new("p", vec![Limit::new(1_000_000, Duration::from_secs(1))]).is_ok());
    }

    #[test]
    fn rejects_empty_and_oversized_policies() {
        assert_eq!(Policy::new("", vec![]), Err(PolicyError::EmptyName));
        assert_eq!(
            Policy::new("p", vec![]),
            Err(PolicyError::NoLimits("p".into()))
        );
        let many = vec![Limit::new(1, Duration::from_secs(1)); MAX_WINDOWS + 1];
        assert!(matches!(
            Policy::new("p", many),
            Err(PolicyError::TooManyLimits { count: 9, .. })
        ));
        assert!(matches!(
            Policy::new("a{b", vec![Limit::new(1, Duration::from_secs(1))]),
            Err(PolicyError::BadName(_))
        ));
    }

    #[test]
    fn counts_requests_and_at_most_one_other_unit() {
        let minute = Duration::from_secs(60);
        let p = Policy::new(
            "chat",
            vec![
                Limit::new(60, minute),
                Limit::new(100_000, minute).counting("tokens"),
                Limit::new(1_000_000, minute * 60).counting("tokens"),
            ],
        )
        .unwrap();
        assert_eq!(p.unit(), Some("tokens"));
        assert!(p.mixes_units());
        let err = Policy::new(
            "chat",
            vec![
                Limit::new(100, minute).counting("tokens"),
                Limit::new(60, minute).counting("requests"),
                Limit::new(100, minute).counting("bytes"),
            ],
        )
        .unwrap_err();
        assert_eq!(err.field(), "limits[2].unit");
        assert!(err.to_string().contains("\"bytes\""), "{err}");
        let calendar = Limit::new(5, minute)
            .counting("credits")
            .with_algorithm(Algorithm::Calendar(Period::Day));
        assert_eq!(calendar.unit(), "credits");
    }

    #[test]
    fn names_unnamed_windows() {
        let p = Policy::new("p", vec![Limit::new(5, Duration::from_millis(1500))]).unwrap();
        assert_eq!(p.limits()[0].name(), "5/1.5s");
    }
}
