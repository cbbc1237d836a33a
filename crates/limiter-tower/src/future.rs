//! [`ResponseFuture`]: the wrapped service's future with the rate-limit fields added,
//! or a response the layer wrote itself.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;

use crate::body::{BodyKind, SameBody};
use crate::enumeration::{FailedAuth, FailureReport};
use crate::outcome::Stamp;
use crate::usage::{attach, Actual, Pending, UsageReport};

/// What a decision that had to wait for the store (Redis) leads to.
pub(crate) enum Checked<O> {
    /// The service was called; its output gets `Stamp`, counts as a failed
    /// authentication through the report if it says so, and settles the reservation
    /// pending if there is one.
    Called(O, Stamp, Option<FailureReport>, Option<Box<Pending>>),
    /// The layer answered.
    Answered(Response<Bytes>),
}

type BoxedCheck<O> = Pin<Box<dyn Future<Output = Checked<O>> + Send>>;

pin_project! {
    /// Response future of [`LimiterService`](crate::LimiterService).
    pub struct ResponseFuture<F: Future, M = SameBody> {
        #[pin]
        state: State<F>,
        // `fn() -> M`: the kind is a type-level choice, not something the future owns.
        kind: PhantomData<fn() -> M>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F: Future> {
        // Decided without waiting (or no policy): the service is already called.
        Called {
            #[pin] fut: F,
            stamp: Option<Stamp>,
            report: Option<FailureReport>,
            pending: Option<Box<Pending>>,
        },
        // The layer's own answer.
        Answered { response: Option<Response<Bytes>> },
        // A store round trip first, then maybe the service.
        Checking { fut: BoxedCheck<F::Output> },
    }
}

impl<F: Future, M> std::fmt::Debug for ResponseFuture<F, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Answered { .. } => "answered",
            State::Checking { .. } => "checking",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F: Future, M> ResponseFuture<F, M> {
    pub(crate) fn called(
        fut: F,
        stamp: Option<Stamp>,
        report: Option<FailureReport>,
        pending: Option<Box<Pending>>,
    ) -> Self {
        ResponseFuture::new(State::Called {
            fut,
            stamp,
            report,
            pending,
        })
    }

    pub(crate) fn answered(response: Response<Bytes>) -> Self {
        ResponseFuture::new(State::Answered {
            response: Some(response),
        })
    }

    pub(crate) fn checking(fut: BoxedCheck<F::Output>) -> Self {
        ResponseFuture::new(State::Checking { fut })
    }

    fn new(state: State<F>) -> Self {
        ResponseFuture {
            state,
            kind: PhantomData,
        }
    }
}

impl<F, B, E, M> Future for ResponseFuture<F, M>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: 'static,
    M: BodyKind<B>,
{
    type Output = Result<Response<M::Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called {
                fut,
                stamp,
                report,
                pending,
            } => {
                let response = ready!(fut.poll(cx))?;
                reported(&response, report.take());
                let response = settled(response, pending.take());
                Poll::Ready(Ok(stamped::<B, M>(response, stamp.take())))
            }
            StateProj::Answered { response } => {
                let response = response
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(response.map(M::written)))
            }
            StateProj::Checking { fut } => match ready!(fut.as_mut().poll(cx)) {
                Checked::Called(output, stamp, report, pending) => {
                    let response = output?;
                    reported(&response, report);
                    let response = settled(response, pending);
                    Poll::Ready(Ok(stamped::<B, M>(response, Some(stamp))))
                }
                Checked::Answered(response) => Poll::Ready(Ok(response.map(M::written))),
            },
        }
    }
}

/// Counts the request's credential as failed when the application marked its response
/// with [`FailedAuth`].
fn reported<B>(response: &Response<B>, report: Option<FailureReport>) {
    if let Some(report) = report {
        if response.extensions().get::<FailedAuth>().is_some() {
            report.report();
        }
    }
}

/// Settles a pending reservation as far as the response's head tells: a status that is
/// not charged refunds it whole, a header or a [`UsageReport`] gives the actual cost;
/// a cost the handler still reports travels with the body until it ends.
fn settled<B: 'static>(mut response: Response<B>, pending: Option<Box<Pending>>) -> Response<B> {
    let Some(pending) = pending.map(|p| *p) else {
        return response;
    };
    let Some(rule) = pending.rule() else {
        return response;
    };
    // Read first: a header to strip goes whatever the status.
    let header = rule.header_units(response.headers_mut());
    if !rule.charges(response.status()) {
        pending.settle(limiter_core::Cost::ZERO);
        return response;
    }
    let reported = || response.extensions().get::<UsageReport>().map(|r| r.0);
    match (&rule.actual, header) {
        (Actual::Header { .. }, Some(units)) => pending.settle_units(units),
        (Actual::Reported, _) => match reported() {
            Some(units) => pending.settle_units(units),
            None => return response.map(|body| attach(body, pending)),
        },
        _ => pending.keep(),
    }
    response
}

fn stamped<B, M: BodyKind<B>>(
    mut response: Response<B>,
    stamp: Option<Stamp>,
) -> Response<M::Body> {
    if let Some(stamp) = stamp {
        stamp.write(response.headers_mut());
    }
    response.map(M::inner)
}
