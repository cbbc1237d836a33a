//! Settling when a response body ends: [`attach`] ties a [`Pending`] reservation to the
//! body, so that it settles when the body ends, fails, or is dropped.

use std::any::Any;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::Pending;

pin_project! {
    /// A body that settles its reservation when it has nothing more to give.
    struct Settling<B> {
        #[pin]
        inner: B,
        pending: Option<Pending>,
    }
}

impl<B: Body<Data = Bytes>> Body for Settling<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if matches!(frame, None | Some(Err(_))) {
            // Ended or failed: settle now rather than when the body is dropped.
            drop(this.pending.take());
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Ties `pending` to `body`. An axum [`Body`](axum::body::Body) (what every axum
/// handler's response carries) settles when it ends or is dropped; any other body type
/// cannot be wrapped without changing the response's type, and settles now, for what
/// was reported by the time its head is ready.
pub(crate) fn attach<B: 'static>(body: B, pending: Pending) -> B {
    let mut slot = Some(body);
    let mut pending = Some(pending);
    if let Some(axum_body) = (&mut slot as &mut dyn Any).downcast_mut::<Option<axum::body::Body>>()
    {
        if let Some(inner) = axum_body.take() {
            *axum_body = Some(axum::body::Body::new(Settling {
                inner,
                pending: pending.take(),
            }));
        }
    }
    drop(pending);
    slot.expect("the body is put back above")
}
