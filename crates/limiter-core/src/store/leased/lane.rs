//! One (policy, key)'s local state under [`Leased`](super::Leased): the lease it holds,
//! its recent demand, and what the store last said about its room.

use compact_str::CompactString;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

use super::LeaseConfig;
use crate::decision::Decision;
use crate::policy::Policy;

/// A key's lane: its lease and the requests waiting for one.
pub(super) struct Lane {
    pub(super) policy: Policy,
    pub(super) key: CompactString,
    /// How long a lease of this policy may be used after it was asked for.
    pub(super) lifetime: Duration,
    /// The most units a lease may hold beyond the requests waiting for it: a share of
    /// the policy's smallest capacity, which bounds what a lease can leave unused when
    /// its key's traffic stops.
    speculative_cap: u64,
    pub(super) state: Mutex<LaneState>,
    /// Wakes the requests that wait for a take in flight.
    pub(super) taken: Notify,
}

pub(super) struct LaneState {
    pub(super) lease: Option<Lease>,
    /// A take is in flight: other requests wait for it instead of all asking the store.
    pub(super) taking: bool,
    /// Units of the requests waiting for the take in flight: the next lease covers them.
    pub(super) waiting: u64,
    demand: Demand,
    /// The units the tightest window had left above its reserve at the latest decision
    /// the store made for this key; `None` before the first.
    room: Option<u64>,
}

/// Units a lease holds for local admission.
pub(super) struct Lease {
    pub(super) id: u64,
    /// Units not yet admitted.
    pub(super) left: u64,
    /// Units the take consumed (the asking request's cost included).
    pub(super) taken: u64,
    /// The store's clock at the take, which a refund names.
    pub(super) taken_at_us: i64,
    /// Read before the take was sent: the store decided at this moment or later.
    pub(super) asked_at: Instant,
    pub(super) expires_at: Instant,
    /// The store's decision on the take; local decisions are it, moved on.
    decision: Decision,
}

/// Units requested in the current and the previous period of one lease lifetime.
struct Demand {
    period_start: Instant,
    current: u64,
    previous: u64,
}

impl Lane {
    /// See [`LaneState::lease_size`].
    pub(super) fn lease_size(&self, state: &LaneState, cost: u64, config: &LeaseConfig) -> u64 {
        if self.lifetime.is_zero() {
            return 0;
        }
        state.lease_size(cost, self.speculative_cap, config)
    }

    pub(super) fn new(policy: &Policy, key: &str, config: &LeaseConfig, now: Instant) -> Lane {
        Lane {
            policy: policy.clone(),
            key: CompactString::from(key),
            lifetime: config.lifetime_for(policy),
            speculative_cap: config.speculative_cap(policy),
            state: Mutex::new(LaneState {
                lease: None,
                taking: false,
                waiting: 0,
                demand: Demand {
                    period_start: now,
                    current: 0,
                    previous: 0,
                },
                room: None,
            }),
            taken: Notify::new(),
        }
    }
}

impl LaneState {
    /// Counts a request's cost towards the key's demand.
    pub(super) fn count(&mut self, now: Instant, cost: u64, lifetime: Duration) {
        let demand = &mut self.demand;
        let elapsed = now.saturating_duration_since(demand.period_start);
        if elapsed >= lifetime {
            // A period with no request in between leaves no demand behind.
            demand.previous = if elapsed >= 2 * lifetime {
                0
            } else {
                demand.current
            };
            demand.current = 0;
            demand.period_start = now;
        }
        demand.current = demand.current.saturating_add(cost);
    }

    /// Admits `cost` from the lease if it is still valid and holds enough; the decision
    /// and how long ago the lease was asked for.
    pub(super) fn admit(&mut self, now: Instant, cost: u64) -> Option<(Decision, Duration)> {
        let lease = self.lease.as_mut()?;
        if now >= lease.expires_at || lease.left < cost {
            return None;
        }
        lease.left -= cost;
        Some((
            lease.view(now),
            now.saturating_duration_since(lease.asked_at),
        ))
    }

    /// How many units beyond `cost` a take should reserve now; 0 for none.
    ///
    /// A lease covers the requests waiting for the take in flight (beyond what the
    /// current lease still holds for them): they will use it. Beyond those, it may hold
    /// one lifetime of the key's recent demand, speculatively, but at most `cap` units
    /// and half of the room left (other instances share that room): speculative units
    /// are what a lease can leave unused when traffic stops, so the cap bounds the
    /// under-admission. Nothing is leased from the reserve, the last part of every
    /// window, which the store always decides.
    pub(super) fn lease_size(&self, cost: u64, cap: u64, config: &LeaseConfig) -> u64 {
        let Some(room) = self.room.map(|room| room.saturating_sub(cost)) else {
            return 0;
        };
        let held = self.lease.as_ref().map_or(0, |l| l.left);
        let waiting = self.waiting.saturating_sub(held).min(room);
        let demand = self.demand.current.max(self.demand.previous);
        let speculative = if demand >= config.min_demand {
            demand.min(cap).min((room - waiting) / 2)
        } else {
            0
        };
        let size = (waiting + speculative).min(config.max_units);
        if size < config.min_units {
            0
        } else {
            size
        }
    }

    /// Learns the key's room from a decision the store made.
    pub(super) fn observe(&mut self, decision: &Decision, reserve: f64) {
        if decision.is_degraded() || decision.is_cached() || decision.is_leased() {
            return;
        }
        self.learn_room(decision, reserve);
    }

    /// Takes the key's room from `decision`'s windows, whatever made it: a take's decision
    /// as its requester sees it (the lease's units counted as room) included.
    pub(super) fn learn_room(&mut self, decision: &Decision, reserve: f64) {
        self.room = decision
            .windows()
            .iter()
            .map(|w| {
                let keep = (w.limit() as f64 * reserve).ceil() as u64;
                w.remaining().saturating_sub(keep)
            })
            .min();
    }

    /// Forgets the room last reported, so that no take is tried until the store decides
    /// a request again.
    pub(super) fn forget_room(&mut self) {
        self.room = None;
    }

    /// Installs a new lease; returns the one it replaces.
    pub(super) fn install(&mut self, lease: Lease) -> Option<Lease> {
        self.lease.replace(lease)
    }

    /// Takes the lease `id` out if it is still the lane's.
    pub(super) fn end(&mut self, id: u64) -> Option<Lease> {
        if self.lease.as_ref().is_some_and(|l| l.id == id) {
            self.lease.take()
        } else {
            None
        }
    }
}

impl Lease {
    pub(super) fn new(
        id: u64,
        units: u64,
        taken: u64,
        taken_at_us: i64,
        asked_at: Instant,
        lifetime: Duration,
        decision: Decision,
    ) -> Lease {
        Lease {
            id,
            left: units,
            taken,
            taken_at_us,
            asked_at,
            expires_at: asked_at + lifetime,
            decision,
        }
    }

    /// The decision for a request admitted from this lease at `now`: the take's, with the
    /// lease's units still available and the reset times moved on.
    pub(super) fn view(&self, now: Instant) -> Decision {
        let elapsed = u64::try_from(now.saturating_duration_since(self.asked_at).as_micros())
            .unwrap_or(u64::MAX);
        let mut decision = self.decision.clone();
        decision.leased = true;
        for window in decision.windows.iter_mut() {
            window.remaining = window.remaining.saturating_add(self.left).min(window.limit);
            window.reset_after_us = window.reset_after_us.saturating_sub(elapsed);
            window.next_unit_us = if window.remaining < window.limit {
                window.next_unit_us.saturating_sub(elapsed).max(1)
            } else {
                0
            };
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration as StdDuration;

    use super::*;
    use crate::decision::{Decision, Verdict, WindowState, Windows};
    use crate::policy::Limit;

    fn lane(capacity: u64) -> Lane {
        let policy = Policy::new(
            "p",
            vec![Limit::new(capacity, StdDuration::from_secs(3600))],
        )
        .unwrap();
        Lane::new(&policy, "k", &LeaseConfig::default(), Instant::now())
    }

    /// A decision of the store leaving `remaining` of `limit`.
    fn decided(limit: u64, remaining: u64) -> Decision {
        let mut windows = Windows::new();
        windows.push(WindowState {
            limit,
            remaining,
            reset_after_us: 0,
            next_unit_us: 0,
            verdict: Verdict::Fits.into(),
        });
        Decision::from_windows(windows)
    }

    #[test]
    fn nothing_is_leased_before_the_store_reported_the_room() {
        let lane = lane(10_000);
        let mut state = lane.state.lock();
        state.count(Instant::now(), 100, lane.lifetime);
        state.waiting = 50;
        assert_eq!(lane.lease_size(&state, 1, &LeaseConfig::default()), 0);
        // Known, then forgotten after a failed take: no take until the store answers.
        state.observe(&decided(10_000, 9_000), 0.1);
        assert!(lane.lease_size(&state, 1, &LeaseConfig::default()) > 0);
        state.forget_room();
        assert_eq!(lane.lease_size(&state, 1, &LeaseConfig::default()), 0);
    }

    #[test]
    fn waiting_requests_are_covered_and_speculation_is_capped() {
        let config = LeaseConfig::default();
        // 0.5% of 10,000: at most 50 units beyond the requests waiting.
        let lane = lane(10_000);
        let mut state = lane.state.lock();
        state.observe(&decided(10_000, 9_000), config.reserve);
        assert_eq!(
            lane.lease_size(&state, 1, &config),
            0,
            "no demand, no waiters"
        );
        state.waiting = 30;
        assert_eq!(lane.lease_size(&state, 1, &config), 30, "waiters only");
        state.count(Instant::now(), 500, lane.lifetime);
        assert_eq!(
            lane.lease_size(&state, 1, &config),
            30 + 50,
            "waiters and the cap"
        );
    }

    #[test]
    fn the_reserve_is_never_leased_and_the_room_is_halved() {
        let config = LeaseConfig::default();
        let lane = lane(10_000);
        let mut state = lane.state.lock();
        state.count(Instant::now(), 500, lane.lifetime);
        // 1,010 left of 10,000: 10 above the reserve of 1,000, so (10 - 1) / 2 = 4.
        state.observe(&decided(10_000, 1_010), config.reserve);
        assert_eq!(lane.lease_size(&state, 1, &config), 4);
        // Inside the reserve: the store decides, waiters or not.
        state.observe(&decided(10_000, 900), config.reserve);
        state.waiting = 20;
        assert_eq!(lane.lease_size(&state, 1, &config), 0);
    }

    #[test]
    fn small_limits_lease_only_for_waiting_requests() {
        let config = LeaseConfig::default();
        let lane = lane(100);
        let mut state = lane.state.lock();
        state.count(Instant::now(), 1_000, lane.lifetime);
        state.observe(&decided(100, 80), config.reserve);
        assert_eq!(
            lane.lease_size(&state, 1, &config),
            0,
            "0.5% of 100 is no unit"
        );
        state.waiting = 5;
        assert_eq!(lane.lease_size(&state, 1, &config), 5);
    }

    #[test]
    fn demand_is_counted_per_lifetime_and_forgotten_after_a_quiet_one() {
        let lane = lane(10_000);
        let mut state = lane.state.lock();
        let start = Instant::now();
        state.count(start, 7, lane.lifetime);
        state.count(start + lane.lifetime, 3, lane.lifetime);
        assert_eq!((state.demand.previous, state.demand.current), (7, 3));
        state.count(start + lane.lifetime * 4, 1, lane.lifetime);
        assert_eq!((state.demand.previous, state.demand.current), (0, 1));
    }

    #[test]
    fn a_lease_admits_until_it_is_spent_or_expired() {
        let lane = lane(10_000);
        let mut state = lane.state.lock();
        let asked = Instant::now();
        let lease = Lease::new(1, 3, 4, 0, asked, lane.lifetime, decided(10_000, 100));
        assert!(state.install(lease).is_none());
        let (decision, _) = state.admit(asked, 2).unwrap();
        assert!(decision.is_leased() && decision.is_allowed());
        assert_eq!(
            decision.windows()[0].remaining(),
            101,
            "the store's and the lease's"
        );
        assert!(state.admit(asked, 2).is_none(), "one unit left");
        assert!(state.admit(asked + lane.lifetime, 1).is_none(), "expired");
        assert_eq!(state.end(1).map(|l| l.left), Some(1));
        assert!(state.end(1).is_none(), "ends once");
    }
}
