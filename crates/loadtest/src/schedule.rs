//! The open-loop schedule: a phase and an offered rate for every second, and within a
//! second evenly spaced send times. Requests are sent at their times whatever the
//! answers do, and latency is measured from the scheduled time, so a slow answer delays
//! no later request's clock (no coordinated omission).

use std::time::Duration;

/// Seconds of steady traffic between the warm-up and the spike.
pub const STEADY_BEFORE_SPIKE_S: u64 = 15;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Half the rate: connections open, caches and leases fill.
    Warmup,
    Steady,
    /// Twice the rate.
    Spike,
    /// The steady rate again, with the faults.
    Faults,
    /// The soak: the steady rate for minutes.
    Soak,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Warmup => "warm-up",
            Phase::Steady => "steady",
            Phase::Spike => "spike (2x)",
            Phase::Faults => "steady + faults",
            Phase::Soak => "soak",
        }
    }
}

/// The phase and offered rate (requests/s) of every second of a run.
#[derive(Clone, Debug)]
pub struct Schedule {
    seconds: Vec<(Phase, u32)>,
}

impl Schedule {
    /// Warm-up at half the rate, steady, `spike_s` at twice the rate, then `faults_s`
    /// steady seconds over which the faults are spread.
    pub fn scenario(rate: u32, warmup_s: u64, spike_s: u64, faults_s: u64) -> Schedule {
        let mut seconds = Vec::new();
        let mut push = |phase, rate, n| seconds.extend((0..n).map(|_| (phase, rate)));
        push(Phase::Warmup, rate.div_ceil(2), warmup_s);
        push(Phase::Steady, rate, STEADY_BEFORE_SPIKE_S);
        push(Phase::Spike, rate.saturating_mul(2), spike_s);
        push(Phase::Faults, rate, faults_s);
        Schedule { seconds }
    }

    /// `warmup_s` at half the rate, then the steady rate for `soak_s`.
    pub fn soak(rate: u32, warmup_s: u64, soak_s: u64) -> Schedule {
        let mut seconds: Vec<(Phase, u32)> = (0..warmup_s)
            .map(|_| (Phase::Warmup, rate.div_ceil(2)))
            .collect();
        seconds.extend((0..soak_s).map(|_| (Phase::Soak, rate)));
        Schedule { seconds }
    }

    /// Seconds in the run.
    pub fn len(&self) -> u64 {
        self.seconds.len() as u64
    }

    /// The phase of second `s`, if the run has it.
    pub fn phase(&self, s: u64) -> Option<Phase> {
        self.seconds.get(s as usize).map(|&(p, _)| p)
    }

    /// The first second of `phase`.
    pub fn start_of(&self, phase: Phase) -> Option<u64> {
        self.seconds
            .iter()
            .position(|&(p, _)| p == phase)
            .map(|s| s as u64)
    }

    /// Every send time from the start of the run, in order: second `s` at rate `r` sends
    /// at `s + k/r` for `k` in `0..r`.
    pub fn send_times(&self) -> impl Iterator<Item = (u64, Duration)> + '_ {
        self.seconds.iter().enumerate().flat_map(|(s, &(_, rate))| {
            let s = s as u64;
            (0..rate).map(move |k| {
                let offset = Duration::from_nanos(u64::from(k) * 1_000_000_000 / u64::from(rate));
                (s, Duration::from_secs(s) + offset)
            })
        })
    }

    /// Requests the schedule sends.
    pub fn total(&self) -> u64 {
        self.seconds.iter().map(|&(_, r)| u64::from(r)).sum()
    }

    /// The first second by whose end `share` of `identities`, drawn uniformly by
    /// `fraction` of the requests, have been drawn at least once in expectation
    /// (1 - e^(-draws/identities)); `None` if the run ends before.
    pub fn seconds_until_drawn(&self, identities: u32, fraction: f64, share: f64) -> Option<u64> {
        // Draws needed: -ln(1 - share) per identity.
        let needed = -(1.0 - share).ln() * f64::from(identities);
        let mut draws = 0.0;
        self.seconds.iter().enumerate().find_map(|(s, &(_, rate))| {
            draws += f64::from(rate) * fraction;
            (draws >= needed).then_some(s as u64 + 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenario_has_its_phases_in_order_at_their_rates() {
        let s = Schedule::scenario(1000, 5, 10, 60);
        assert_eq!(s.len(), 5 + STEADY_BEFORE_SPIKE_S + 10 + 60);
        assert_eq!(s.start_of(Phase::Spike), Some(5 + STEADY_BEFORE_SPIKE_S));
        assert_eq!(s.phase(0), Some(Phase::Warmup));
        assert_eq!(s.phase(s.len()), None);
        let spike_total: u64 = s
            .send_times()
            .filter(|&(sec, _)| s.phase(sec) == Some(Phase::Spike))
            .count() as u64;
        assert_eq!(spike_total, 2000 * 10);
        assert_eq!(
            s.total(),
            500 * 5 + 1000 * STEADY_BEFORE_SPIKE_S + 20_000 + 60_000
        );
    }

    #[test]
    fn identities_are_drawn_at_the_expected_pace() {
        // 100 identities drawn by every request at 10/s: 95% takes 300 draws (-ln 0.05
        // = 3.0 per identity), 30 s; half of them 70 draws, 7 s.
        let s = Schedule::soak(10, 0, 100);
        assert_eq!(s.seconds_until_drawn(100, 1.0, 0.95), Some(30));
        assert_eq!(s.seconds_until_drawn(100, 1.0, 0.5), Some(7));
        // A fifth of the requests draw: five times longer; beyond the run: never.
        assert_eq!(s.seconds_until_drawn(100, 0.2, 0.5), Some(35));
        assert_eq!(s.seconds_until_drawn(100, 0.2, 0.95), None);
    }

    #[test]
    fn send_times_are_evenly_spaced_and_increasing() {
        let s = Schedule::soak(4, 0, 2);
        let times: Vec<Duration> = s.send_times().map(|(_, t)| t).collect();
        let ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 250, 500, 750, 1000, 1250, 1500, 1750]);
        assert!(s.send_times().all(|(sec, t)| t.as_secs() == sec));
    }
}
