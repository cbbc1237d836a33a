//! Several policies for one request: its own and the shared ones it names in `also`,
//! decided together (all or nothing) and answered as the policy that decided: the one
//! that denied, or the one with the smallest share of its quota left.

use std::borrow::Cow;
use std::sync::Arc;

use limiter_core::{Check, Decision, Error, Joint};
use smallvec::SmallVec;

use crate::headers::effective_window;
use crate::plan::Also;
use crate::rules::EndpointRule;

/// The policies of one request, with its key and cost under each, the request's own
/// first.
pub(crate) struct Jointly {
    parts: SmallVec<[(Arc<EndpointRule>, String, limiter_core::Cost); 3]>,
}

impl Jointly {
    pub(crate) fn new(
        rule: &Arc<EndpointRule>,
        key: Cow<'_, str>,
        cost: u64,
        also: Vec<Also<'_>>,
    ) -> Self {
        let mut parts = SmallVec::with_capacity(1 + also.len());
        parts.push((Arc::clone(rule), key.into_owned(), rule.charge(cost)));
        for Also { rule, key, cost } in also {
            let cost = rule.charge(cost);
            parts.push((rule.into_owned(), key.into_owned(), cost));
        }
        Jointly { parts }
    }

    /// The request's own policy and key.
    pub(crate) fn first(&self) -> (&Arc<EndpointRule>, &str) {
        let (rule, key, _) = &self.parts[0];
        (rule, key)
    }

    pub(crate) fn checks(&self) -> SmallVec<[Check<'_>; 3]> {
        self.parts
            .iter()
            .map(|(rule, key, cost)| Check::new(&rule.policy, key, *cost))
            .collect()
    }

    /// The policy that answers the request, the request's key under it, and its
    /// decision (or the store's error, answered as the request's own policy's).
    pub(crate) fn answer(
        &self,
        result: Result<Joint, Error>,
    ) -> (&Arc<EndpointRule>, &str, Result<Decision, Error>) {
        let joint = match result {
            Ok(joint) => joint,
            Err(error) => return (&self.parts[0].0, &self.parts[0].1, Err(error)),
        };
        let decisions = joint.decisions();
        let at = joint
            .denied_by()
            .unwrap_or_else(|| most_restrictive(decisions));
        // A joint decision holds one decision per check made, at least the first.
        let decision = decisions.get(at).expect("the deciding check was made");
        let (rule, key, _) = &self.parts[at];
        (rule, key, Ok(decision.clone()))
    }
}

/// The decision with the smallest share of its watched window left (the earlier among
/// equals).
fn most_restrictive(decisions: &[Decision]) -> usize {
    let share = |d: &Decision| {
        effective_window(d, true)
            .and_then(|i| d.windows().get(i))
            .map(|w| (w.remaining(), w.limit().max(1)))
    };
    let mut best = 0;
    let mut best_share: Option<(u64, u64)> = None;
    for (i, decision) in decisions.iter().enumerate() {
        let Some((left, of)) = share(decision) else {
            continue;
        };
        // left / of < best_left / best_of, without dividing.
        let smaller = best_share.is_none_or(|(best_left, best_of)| {
            u128::from(left) * u128::from(best_of) < u128::from(best_left) * u128::from(of)
        });
        if smaller {
            best = i;
            best_share = Some((left, of));
        }
    }
    best
}
