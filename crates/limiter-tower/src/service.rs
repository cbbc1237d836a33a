//! [`LimiterService`]: the middleware itself.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use limiter_core::{Decision, Error, Reservation, Store};
use tower_service::Service;

use crate::body::{BodyKind, SameBody};
use crate::future::{Checked, ResponseFuture};
use crate::joint::Jointly;
use crate::observe::Observation;
use crate::outcome::{conclude, Outcome};
use crate::plan::{plan, Plan};
use crate::rules::EndpointRule;
use crate::shadow::ShadowDenied;
use crate::shared::Shared;
use crate::usage::{Actual, Pending, Usage};

/// Rate-limits requests to `S` under the layer's current rules. Cheap to clone.
///
/// Built by [`LimiterLayer`](crate::LimiterLayer); see there for an example. `M`
/// says how responses carry their bodies ([`SameBody`](crate::SameBody) or
/// [`AnyBody`](crate::AnyBody)).
pub struct LimiterService<S, M = SameBody> {
    inner: S,
    shared: Arc<Shared>,
    kind: PhantomData<fn() -> M>,
}

impl<S: Clone, M> Clone for LimiterService<S, M> {
    fn clone(&self) -> Self {
        LimiterService::new(self.inner.clone(), Arc::clone(&self.shared))
    }
}

impl<S, M> LimiterService<S, M> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        LimiterService {
            inner,
            shared,
            kind: PhantomData,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: std::fmt::Debug, M> std::fmt::Debug for LimiterService<S, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimiterService")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S, M, ReqBody, ResBody> Service<Request<ReqBody>> for LimiterService<S, M>
where
    M: BodyKind<ResBody>,
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<M::Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, M>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // One snapshot per request: a reload during the request does not affect it.
        let rules = self.shared.rules.load();
        let (rule, key, cost, report) = match plan(&rules, &self.shared, &req) {
            Plan::Pass => return ResponseFuture::called(self.inner.call(req), None, None, None),
            Plan::Reject(rejection) => return ResponseFuture::answered(rejection.to_response()),
            Plan::Check {
                rule,
                key,
                cost,
                report,
                also,
            } if !also.is_empty() => {
                let jointly = Jointly::new(&rule, key, cost, also);
                drop(rules);
                return self.jointly(jointly, report, req);
            }
            Plan::Check {
                rule,
                key,
                cost,
                report,
                also: _,
            } => (rule, key, cost, report),
        };
        if let Some(settle) = &rule.settle {
            let usage = (settle.actual == Actual::Reported).then(|| {
                let usage = Usage::new();
                req.extensions_mut().insert(usage.clone());
                usage
            });
            return self.reserve(
                rule.into_owned(),
                key.into_owned(),
                cost,
                report,
                usage,
                req,
            );
        }
        let cost = rule.charge(cost);
        let store = &self.shared.store;
        let kind = store.kind();
        let export = self.shared.export(req.headers());
        let observation = Observation::start(&rule, kind, store.is_in_process(), &key, export);
        // The in-memory store answers synchronously: no allocation, no extra poll. A
        // Redis store without a local cache never does: the span is not entered for it
        // (a recorded span's enter and exit cost a context switch each in OpenTelemetry).
        let now = if store.may_answer_now() {
            observation
                .span()
                .in_scope(|| store.check_now(&rule.policy, &key, cost))
        } else {
            None
        };
        if let Some(result) = now {
            return match concluded(&self.shared, &rule, &key, kind, observation, &result) {
                Outcome::Allow(stamp, shadow) => ResponseFuture::called(
                    self.inner.call(marked(req, shadow)),
                    Some(stamp),
                    report,
                    None,
                ),
                Outcome::Deny(response) => ResponseFuture::answered(response),
            };
        }
        // The service was made ready in `poll_ready`; the clone left behind is not.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        let rule = rule.into_owned();
        let key = key.into_owned();
        drop(rules);
        ResponseFuture::checking(Box::pin(async move {
            let store = &shared.store;
            // In the span at every poll, as `Instrument` does, without its clone of the span.
            let mut check = std::pin::pin!(store.check(&rule.policy, &key, cost));
            let span = observation.span();
            let result = std::future::poll_fn(|cx| span.in_scope(|| check.as_mut().poll(cx))).await;
            match concluded(&shared, &rule, &key, kind, observation, &result) {
                Outcome::Allow(stamp, shadow) => {
                    Checked::Called(ready.call(marked(req, shadow)).await, stamp, report, None)
                }
                Outcome::Deny(response) => Checked::Answered(response),
            }
        }))
    }
}

impl<S, M> LimiterService<S, M> {
    /// Decides the request under every policy of `jointly` at once, then calls the
    /// service or answers as the policy that denied.
    fn jointly<ReqBody, ResBody>(
        &mut self,
        jointly: Jointly,
        report: Option<crate::enumeration::FailureReport>,
        req: Request<ReqBody>,
    ) -> ResponseFuture<S::Future, M>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        ReqBody: Send + 'static,
        ResBody: Send + 'static,
    {
        let store = &self.shared.store;
        let kind = store.kind();
        let (first, key) = jointly.first();
        let export = self.shared.export(req.headers());
        let observation = Observation::start(first, kind, store.is_in_process(), key, export);
        let now = observation
            .span()
            .in_scope(|| store.check_all_now(&jointly.checks()));
        if let Some(result) = now {
            let (rule, key, result) = jointly.answer(result);
            return match concluded(&self.shared, rule, key, kind, observation, &result) {
                Outcome::Allow(stamp, shadow) => ResponseFuture::called(
                    self.inner.call(marked(req, shadow)),
                    Some(stamp),
                    report,
                    None,
                ),
                Outcome::Deny(response) => ResponseFuture::answered(response),
            };
        }
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        ResponseFuture::checking(Box::pin(async move {
            let result = {
                let checks = jointly.checks();
                let mut check = std::pin::pin!(shared.store.check_all(&checks));
                let span = observation.span();
                std::future::poll_fn(|cx| span.in_scope(|| check.as_mut().poll(cx))).await
            };
            let (rule, key, result) = jointly.answer(result);
            match concluded(&shared, rule, key, kind, observation, &result) {
                Outcome::Allow(stamp, shadow) => {
                    Checked::Called(ready.call(marked(req, shadow)).await, stamp, report, None)
                }
                Outcome::Deny(response) => Checked::Answered(response),
            }
        }))
    }

    /// Reserves `cost` (the estimate) for a policy settled after the response, then
    /// calls the service with the reservation pending.
    fn reserve<ReqBody, ResBody>(
        &mut self,
        rule: Arc<EndpointRule>,
        key: String,
        cost: u64,
        report: Option<crate::enumeration::FailureReport>,
        usage: Option<Usage>,
        req: Request<ReqBody>,
    ) -> ResponseFuture<S::Future, M>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        ReqBody: Send + 'static,
        ResBody: Send + 'static,
    {
        let estimate = rule.charge(cost);
        let store = &self.shared.store;
        let kind = store.kind();
        let export = self.shared.export(req.headers());
        let observation = Observation::start(&rule, kind, store.is_in_process(), &key, export);
        let now = observation
            .span()
            .in_scope(|| store.reserve_now(&rule.policy, &key, estimate));
        if let Some(result) = now {
            let (result, reservation) = split(result);
            return match concluded(&self.shared, &rule, &key, kind, observation, &result) {
                Outcome::Allow(stamp, shadow) => {
                    let pending = pending(&self.shared, rule, key, reservation, usage);
                    ResponseFuture::called(
                        self.inner.call(marked(req, shadow)),
                        Some(stamp),
                        report,
                        pending,
                    )
                }
                Outcome::Deny(response) => ResponseFuture::answered(response),
            };
        }
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        ResponseFuture::checking(Box::pin(async move {
            let store = &shared.store;
            let result = {
                let mut reserve = std::pin::pin!(store.reserve(&rule.policy, &key, estimate));
                let span = observation.span();
                std::future::poll_fn(|cx| span.in_scope(|| reserve.as_mut().poll(cx))).await
            };
            let (result, reservation) = split(result);
            match concluded(&shared, &rule, &key, kind, observation, &result) {
                Outcome::Allow(stamp, shadow) => {
                    let pending = pending(&shared, rule, key, reservation, usage);
                    // Held across the call: a future dropped before the response (the
                    // client went away) settles for what was reported by then.
                    Checked::Called(
                        ready.call(marked(req, shadow)).await,
                        stamp,
                        report,
                        pending,
                    )
                }
                Outcome::Deny(response) => Checked::Answered(response),
            }
        }))
    }
}

/// [`conclude`], and a denial the store made is listed as over its limit and, under a
/// policy with a penalty, puts the key in the penalty box, its `Retry-After` saying for
/// how long.
fn concluded(
    shared: &Shared,
    rule: &EndpointRule,
    key: &str,
    kind: &'static str,
    observation: Observation,
    result: &Result<Decision, Error>,
) -> Outcome {
    let mut outcome = conclude(rule, kind, observation, result);
    let Outcome::Deny(response) = &mut outcome else {
        return outcome;
    };
    let Ok(decision) = result else {
        return outcome;
    };
    if decision.is_degraded() || decision.is_allowed() {
        return outcome;
    }
    if let Some(retry) = decision.retry_after() {
        shared.over_limit.record(&rule.name, key, retry);
    }
    if let Some(penalty) = rule.penalty {
        shared.penalties.penalize(rule.policy.name(), key, penalty);
        let secs = crate::headers::ceil_secs(penalty).max(1);
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
    outcome
}

/// `req`, carrying what a shadow policy would have done to it.
fn marked<B>(mut req: Request<B>, shadow: Option<ShadowDenied>) -> Request<B> {
    if let Some(shadow) = shadow {
        req.extensions_mut().insert(shadow);
    }
    req
}

/// What settles `reservation` once the response is known, if there is one.
fn pending(
    shared: &Arc<Shared>,
    rule: Arc<EndpointRule>,
    key: String,
    reservation: Option<Reservation>,
    usage: Option<Usage>,
) -> Option<Box<Pending>> {
    let shared = Arc::clone(shared);
    reservation.map(|r| Box::new(Pending::new(shared, rule, key.into(), r, usage)))
}

/// The decision of a reservation, and the reservation when there is one to settle.
fn split(result: Result<Reservation, Error>) -> (Result<Decision, Error>, Option<Reservation>) {
    match result {
        Ok(reservation) => (Ok(reservation.decision().clone()), Some(reservation)),
        Err(error) => (Err(error), None),
    }
}
