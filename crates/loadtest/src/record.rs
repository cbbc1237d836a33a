//! What the generator saw: per second of the schedule, the answers by kind and a latency
//! histogram; per (endpoint, identity), the requests sent and admitted.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::http::Answer;
use crate::policy::Endpoint;

/// Latencies are recorded in microseconds, 1 µs to 60 s, at 2 significant digits (1%):
/// small enough to keep one histogram per second through a 30-minute soak.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("constant, valid bounds")
}

/// One second's answers (by scheduled send time).
#[derive(Clone)]
pub struct Second {
    pub sent: u64,
    /// 2xx.
    pub ok: u64,
    /// 429 without `RateLimit-Degraded`.
    pub denied: u64,
    /// Any answer with `RateLimit-Degraded` (overlaps `ok` and `denied`).
    pub degraded: u64,
    /// 503: shed by the instance's overload queue.
    pub shed: u64,
    /// No answer within the timeout, a connection error, or a 5xx other than 503.
    pub lost: u64,
    pub latency: Histogram<u64>,
}

impl Default for Second {
    fn default() -> Self {
        Second {
            sent: 0,
            ok: 0,
            denied: 0,
            degraded: 0,
            shed: 0,
            lost: 0,
            latency: histogram(),
        }
    }
}

impl Second {
    /// Adds `other`'s counts and latencies.
    pub fn add(&mut self, other: &Second) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.denied += other.denied;
        self.degraded += other.degraded;
        self.shed += other.shed;
        self.lost += other.lost;
        self.latency
            .add(&other.latency)
            .expect("histograms of one configuration");
    }

    /// The latency at quantile `q`, in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

/// One key's requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyTally {
    pub sent: u64,
    /// 2xx decided by Redis (or a lease), not by the failure mode.
    pub admitted: u64,
    /// Answers with `RateLimit-Degraded`: decided by the failure mode while Redis failed
    /// (admitted, under the default `open`), so Redis did not count them.
    pub degraded: u64,
    /// No answer: whether it was counted is unknown.
    pub lost: u64,
}

/// One instance's answers over the run: which instance a fault left degraded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceTally {
    pub sent: u64,
    pub degraded: u64,
    pub lost: u64,
    /// Degraded answers per scheduled second: whether the instance recovered.
    pub degraded_by_second: Vec<u64>,
}

#[derive(Default)]
struct Inner {
    seconds: Vec<Second>,
    keys: HashMap<(Endpoint, u32), KeyTally>,
    instances: Vec<InstanceTally>,
}

/// Shared by the generator's workers.
#[derive(Default)]
pub struct Recorder {
    inner: Mutex<Inner>,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Each update is complete before the lock is released: a panicking worker leaves
        // consistent counts.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one request of second `s` for `key`, sent to `instance`: its answer, or
    /// `None` if lost.
    pub fn record(
        &self,
        s: u64,
        instance: usize,
        key: (Endpoint, u32),
        answer: Option<Answer>,
        latency: Duration,
    ) {
        let mut inner = self.lock();
        if inner.instances.len() <= instance {
            inner
                .instances
                .resize(instance + 1, InstanceTally::default());
        }
        let by_instance = &mut inner.instances[instance];
        by_instance.sent += 1;
        match answer {
            None => by_instance.lost += 1,
            Some(a) if a.degraded => {
                by_instance.degraded += 1;
                let second = s as usize;
                if by_instance.degraded_by_second.len() <= second {
                    by_instance.degraded_by_second.resize(second + 1, 0);
                }
                by_instance.degraded_by_second[second] += 1;
            }
            Some(_) => {}
        }
        let s = s as usize;
        if inner.seconds.len() <= s {
            inner.seconds.resize_with(s + 1, Second::default);
        }
        let second = &mut inner.seconds[s];
        second.sent += 1;
        let answered = match answer {
            None => {
                second.lost += 1;
                None
            }
            Some(a) => {
                match a.status {
                    200..=299 => second.ok += 1,
                    429 if !a.degraded => second.denied += 1,
                    503 => second.shed += 1,
                    500..=599 => second.lost += 1,
                    _ => {}
                }
                if a.degraded {
                    second.degraded += 1;
                }
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                second.latency.saturating_record(us.max(1));
                Some(a)
            }
        };
        let tally = inner.keys.entry(key).or_default();
        tally.sent += 1;
        match answered {
            None => tally.lost += 1,
            Some(a) if a.degraded => tally.degraded += 1,
            Some(a) if (200..300).contains(&a.status) => tally.admitted += 1,
            Some(_) => {}
        }
    }

    /// A copy of second `s` (empty if nothing was recorded for it).
    pub fn second(&self, s: u64) -> Second {
        self.lock()
            .seconds
            .get(s as usize)
            .cloned()
            .unwrap_or_default()
    }

    /// Every second recorded, in order.
    pub fn seconds(&self) -> Vec<Second> {
        self.lock().seconds.clone()
    }

    /// Every instance's tally.
    pub fn instances(&self) -> Vec<InstanceTally> {
        self.lock().instances.clone()
    }

    /// Every key's tally.
    pub fn keys(&self) -> HashMap<(Endpoint, u32), KeyTally> {
        self.lock().keys.clone()
    }
}
