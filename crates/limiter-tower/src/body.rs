//! The bodies of responses through the layer: the service's own type where the layer can
//! write its answers (429, 401, 400) in it ([`SameBody`], the default), otherwise
//! [`ResponseBody`], either the service's body or the layer's ([`AnyBody`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// How responses through the layer carry their bodies: the `M` of
/// [`LimiterLayer<M>`](crate::LimiterLayer), [`SameBody`] or [`AnyBody`].
pub trait BodyKind<B>: sealed::Sealed {
    /// The body of every response through the layer, for a service answering with `B`.
    type Body;
    /// The service's body.
    fn inner(body: B) -> Self::Body;
    /// A body the layer wrote.
    fn written(data: Bytes) -> Self::Body;
}

/// Responses keep the service's own body type `B`, and the layer writes its answers as
/// `B::from(bytes)`: for bodies that are `From<Bytes>`, such as axum's
/// [`Body`](axum::body::Body) and `http_body_util::Full<Bytes>`. The default.
///
/// With axum this is also the cheaper kind: a response that is still an
/// `axum::body::Body` passes through axum as it is, while any other type is boxed into one
/// more `Body` per response (an allocation, and a dynamic call per poll).
#[derive(Debug, Clone, Copy, Default)]
pub struct SameBody;

/// Responses carry [`ResponseBody<B>`], the service's body or the layer's: for any body
/// type, such as hyper's `Incoming` passed on by a proxy.
/// [`LimiterLayer::any_body`](crate::LimiterLayer::any_body) selects it.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyBody;

impl<B: From<Bytes>> BodyKind<B> for SameBody {
    type Body = B;

    fn inner(body: B) -> B {
        body
    }

    fn written(data: Bytes) -> B {
        B::from(data)
    }
}

impl<B> BodyKind<B> for AnyBody {
    type Body = ResponseBody<B>;

    fn inner(body: B) -> ResponseBody<B> {
        ResponseBody::inner(body)
    }

    fn written(data: Bytes) -> ResponseBody<B> {
        ResponseBody::full(data)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::SameBody {}
    impl Sealed for super::AnyBody {}
}

pin_project! {
    /// The body of a response passing through a layer of [`AnyBody`].
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    /// Wraps the service's body.
    pub fn inner(body: B) -> Self {
        ResponseBody {
            kind: Kind::Inner { body },
        }
    }

    /// A complete body.
    pub fn full(data: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }
}

impl<B: Body<Data = Bytes>> Body for ResponseBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
