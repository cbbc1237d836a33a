//! The answer to a check: allowed or not, and the state of every window.

use smallvec::SmallVec;
use std::time::Duration;

/// How a window stands on a request's cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The cost fits in this window.
    Fits,
    /// The cost does not fit now; it will after this many microseconds.
    RetryAfterUs(u64),
    /// The cost is larger than the window's capacity and can never fit.
    Never,
}

/// A [`Verdict`] in 8 bytes (-1 fits, -2 never, otherwise the retry time): decisions are
/// returned by value, and a smaller one is copied without a call to `memcpy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PackedVerdict(i64);

impl From<Verdict> for PackedVerdict {
    #[inline]
    fn from(v: Verdict) -> Self {
        PackedVerdict(match v {
            Verdict::Fits => -1,
            Verdict::Never => -2,
            Verdict::RetryAfterUs(us) => us.min(i64::MAX as u64) as i64,
        })
    }
}

impl PackedVerdict {
    /// How long the verdict keeps a request out: 0 when it fits, the most when never.
    #[inline]
    fn rank(self) -> u64 {
        match self.0 {
            -1 => 0,
            -2 => u64::MAX,
            us => us as u64 + 1,
        }
    }

    #[inline]
    pub(crate) fn get(self) -> Verdict {
        match self.0 {
            -1 => Verdict::Fits,
            -2 => Verdict::Never,
            us => Verdict::RetryAfterUs(us.max(0) as u64),
        }
    }
}

impl PartialEq<Verdict> for PackedVerdict {
    #[inline]
    fn eq(&self, other: &Verdict) -> bool {
        *self == PackedVerdict::from(*other)
    }
}

impl std::fmt::Debug for PackedVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// The state of one window of a policy after a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WindowState {
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    pub(crate) reset_after_us: u64,
    /// Microseconds until the window holds one unit more than `remaining`; 0 when it
    /// holds its full capacity and nothing can be added.
    pub(crate) next_unit_us: u64,
    pub(crate) verdict: PackedVerdict,
}

impl WindowState {
    /// The window's capacity: the units that fit at once (`max`, or GCRA's burst).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Units still available right now (after this request, when it was allowed).
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Time until the window holds its full capacity again.
    pub fn reset_after(&self) -> Duration {
        Duration::from_micros(self.reset_after_us)
    }

    /// Time until the window holds one unit more than [`remaining`](Self::remaining), if
    /// nothing consumes meanwhile: when a denied request of cost 1 would fit, or when an
    /// admitted client has more than it was told. `None` when the window holds its full
    /// capacity (nothing more can become available).
    pub fn next_unit_after(&self) -> Option<Duration> {
        (self.next_unit_us > 0).then(|| Duration::from_micros(self.next_unit_us))
    }

    /// How this window stands on the request's cost.
    pub fn verdict(&self) -> Verdict {
        self.verdict.get()
    }
}

/// Windows are stored inline: a policy has at most [`MAX_WINDOWS`](crate::MAX_WINDOWS),
/// usually one to three, and a decision should not allocate.
pub(crate) type Windows = SmallVec<[WindowState; 3]>;

/// The outcome of one check of a policy for one key.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::{Limit, Limiter, MemoryStore, Policy};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let policy = Policy::new("p", vec![Limit::new(1, Duration::from_secs(60)).with_name("minute")]).unwrap();
/// let limiter = Limiter::new(policy, MemoryStore::new());
/// assert!(limiter.check("k", 1).await.unwrap().is_allowed());
/// let denied = limiter.check("k", 1).await.unwrap();
/// assert_eq!(denied.denied_by(), Some(0));
/// assert!(denied.retry_after().unwrap() <= Duration::from_secs(60));
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    pub(crate) allowed: bool,
    /// A window index (a policy has at most 8), kept small so decisions copy cheaply.
    pub(crate) denied_by: Option<u8>,
    /// Decided by a failure mode because the store failed (see [`Guarded`](crate::Guarded)).
    pub(crate) degraded: bool,
    /// Answered by a [`DenialCache`](crate::DenialCache) from a denial it remembered.
    pub(crate) cached: bool,
    /// Admitted in this process from units a [`Leased`](crate::Leased) store reserved.
    pub(crate) leased: bool,
    pub(crate) windows: Windows,
}

impl Decision {
    /// Builds a decision from per-window states: allowed when every window fits; otherwise
    /// denied by the window that keeps the request out longest (a never-fitting one first).
    #[inline]
    pub(crate) fn from_windows(windows: Windows) -> Self {
        let mut denied_by: Option<u8> = None;
        let mut worst = 0;
        for (i, w) in windows.iter().enumerate() {
            let rank = w.verdict.rank();
            if rank > worst {
                worst = rank;
                denied_by = Some(i as u8);
            }
        }
        Decision {
            allowed: denied_by.is_none(),
            denied_by,
            degraded: false,
            cached: false,
            leased: false,
            windows,
        }
    }

    /// An admission with no window yet, for a store to [`push`](Self::push) each
    /// window's state into: built where it is returned, a decision is not copied.
    #[inline]
    pub(crate) fn new() -> Self {
        Decision {
            allowed: true,
            denied_by: None,
            degraded: false,
            cached: false,
            leased: false,
            windows: Windows::new(),
        }
    }

    /// Adds the next window's state: a window that keeps the request out longer than
    /// those before it (as [`from_windows`](Self::from_windows) ranks them) denies it.
    #[inline]
    pub(crate) fn push(&mut self, window: WindowState) {
        let rank = window.verdict.rank();
        if rank > 0 {
            let worst = self
                .denied_by
                .map_or(0, |i| self.windows[usize::from(i)].verdict.rank());
            if rank > worst {
                self.allowed = false;
                self.denied_by = Some(self.windows.len() as u8);
            }
        }
        self.windows.push(window);
    }

    /// Whether the request was admitted (and its cost consumed from every window).
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The index of the window that denied the request, when it was denied. With several
    /// full windows, the one that keeps the request out longest.
    pub fn denied_by(&self) -> Option<usize> {
        self.denied_by.map(usize::from)
    }

    /// When denied: how long until the same request would be admitted, if nothing else
    /// consumes meanwhile. `None` when allowed, or when the cost can never fit.
    pub fn retry_after(&self) -> Option<Duration> {
        match self
            .denied_by
            .map(|i| self.windows[usize::from(i)].verdict())
        {
            Some(Verdict::RetryAfterUs(us)) => Some(Duration::from_micros(us)),
            _ => None,
        }
    }

    /// Whether the cost is larger than some window's capacity, so it can never be admitted.
    pub fn never_fits(&self) -> bool {
        self.windows.iter().any(|w| w.verdict == Verdict::Never)
    }

    /// Whether a failure mode decided instead of the store (it failed, was too slow, or
    /// its circuit breaker was open): the figures are then the fallback's, not the
    /// shared state's.
    pub fn is_degraded(&self) -> bool {
        self.degraded
    }

    /// Whether the decision was answered by a local cache of denials without asking the
    /// store (see [`DenialCache`](crate::DenialCache)): a denial the store gave earlier,
    /// still in force, with its times moved on by the time elapsed since. Such a
    /// decision is always a denial.
    pub fn is_cached(&self) -> bool {
        self.cached
    }

    /// Whether the decision was admitted in this process from units that a
    /// [`Leased`](crate::Leased) store had reserved in the shared store beforehand,
    /// without a store round trip. Such a decision is always an admission.
    pub fn is_leased(&self) -> bool {
        self.leased
    }

    /// Every window's state, in the policy's order.
    pub fn windows(&self) -> &[WindowState] {
        &self.windows
    }
}
