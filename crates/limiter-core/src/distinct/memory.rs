//! [`MemoryDistinct`]: distinct counts in this process.

use std::collections::hash_map::DefaultHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardinality_estimator::CardinalityEstimator;
use parking_lot::Mutex;
use quick_cache::sync::Cache;

use super::DistinctCounter;
use crate::error::Error;

/// Precision 2^10 registers: about 3% standard error, at most 768 bytes per set (the
/// sketch is exact and a few bytes while a set holds only a handful of items).
const PRECISION: usize = 10;
const REGISTER_BITS: usize = 6;

/// Items are inserted as hashes already: the sketch's own hasher is never used.
type Sketch = CardinalityEstimator<u64, DefaultHasher, PRECISION, REGISTER_BITS>;

struct Window {
    started: Instant,
    sketch: Sketch,
}

/// Distinct counts per set in this process: a HyperLogLog++ sketch per set
/// (`cardinality-estimator`), for at most `max_sets` sets, the least used forgotten
/// first. Decides synchronously: see [`insert_now`](Self::insert_now).
///
/// ```
/// use std::time::Duration;
/// use limiter_core::MemoryDistinct;
///
/// let counter = MemoryDistinct::new(100);
/// let minute = Duration::from_secs(60);
/// counter.insert_now("198.51.100.7", 0x5eed_0001, minute);
/// counter.insert_now("198.51.100.7", 0x5eed_0001, minute);
/// assert_eq!(counter.insert_now("198.51.100.7", 0x5eed_0002, minute), 2);
/// ```
#[derive(Clone)]
pub struct MemoryDistinct {
    sets: Arc<Cache<String, Arc<Mutex<Window>>>>,
}

impl std::fmt::Debug for MemoryDistinct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDistinct")
            .field("sets", &self.sets.len())
            .field("max_sets", &self.sets.capacity())
            .finish()
    }
}

impl MemoryDistinct {
    /// Holds at most `max_sets` sets (at least 1).
    pub fn new(max_sets: usize) -> Self {
        MemoryDistinct {
            sets: Arc::new(Cache::new(max_sets.max(1))),
        }
    }

    /// [`DistinctCounter::insert`] without a future: memory needs no waiting.
    pub fn insert_now(&self, set: &str, item: u64, window: Duration) -> u64 {
        let entry = match self.sets.get(set) {
            Some(entry) => entry,
            None => {
                let fresh = Arc::new(Mutex::new(Window {
                    started: Instant::now(),
                    sketch: Sketch::new(),
                }));
                self.sets.insert(set.to_owned(), Arc::clone(&fresh));
                fresh
            }
        };
        let mut current = entry.lock();
        if current.started.elapsed() >= window {
            current.started = Instant::now();
            current.sketch = Sketch::new();
        }
        current.sketch.insert_hash(item);
        current.sketch.estimate() as u64
    }
}

impl DistinctCounter for MemoryDistinct {
    async fn insert(&self, set: &str, item: u64, window: Duration) -> Result<u64, Error> {
        Ok(self.insert_now(set, item, window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64's finalizer: the uniform hashes the sketch expects.
    fn spread(i: u64) -> u64 {
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn exact_for_few_items_and_per_set() {
        let counter = MemoryDistinct::new(10);
        let window = Duration::from_secs(60);
        for _ in 0..3 {
            counter.insert_now("a", spread(1), window);
        }
        assert_eq!(counter.insert_now("a", spread(2), window), 2);
        assert_eq!(counter.insert_now("b", spread(1), window), 1);
    }

    #[test]
    fn estimates_ten_thousand_within_a_few_percent() {
        let counter = MemoryDistinct::new(10);
        let window = Duration::from_secs(60);
        let mut last = 0;
        for i in 0..10_000 {
            last = counter.insert_now("a", spread(i), window);
        }
        assert!((9_000..=11_000).contains(&last), "{last}");
    }

    #[test]
    fn a_new_window_starts_empty() {
        let counter = MemoryDistinct::new(10);
        counter.insert_now("a", spread(1), Duration::from_secs(60));
        counter.insert_now("a", spread(2), Duration::from_secs(60));
        // A zero window has always elapsed: each item opens a new one.
        assert_eq!(counter.insert_now("a", spread(3), Duration::ZERO), 1);
    }

    #[test]
    fn bounded_in_sets() {
        let counter = MemoryDistinct::new(100);
        for i in 0..10_000u64 {
            counter.insert_now(&i.to_string(), 1, Duration::from_secs(60));
        }
        assert!(counter.sets.len() <= 100 + 16, "{}", counter.sets.len());
    }
}
