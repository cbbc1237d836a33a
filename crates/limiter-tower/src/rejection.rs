//! Requests the layer answers itself without asking the store: a token that a policy
//! requires is missing or invalid (401), a cost header is unusable (400), or the client
//! is blocked by the enumeration defence (429).

use bytes::Bytes;
use std::time::Duration;

use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use crate::headers::ceil_secs;
use crate::key::TokenError;
use crate::problem;
use crate::rules::BadCost;

/// Why a request was answered by the layer before any rate-limit decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The policy needs a verified user and the fallback is `reject`.
    #[error("unauthorized: {0}")]
    Unauthorized(#[from] TokenError),
    /// The cost header is not a whole number within its bound.
    #[error(transparent)]
    BadCost(#[from] BadCost),
    /// The client address (or its network) is blocked by the enumeration defence for
    /// this much longer.
    #[error("abnormal usage detected; blocked for {0:?}")]
    AbnormalUsage(Duration),
}

impl Rejection {
    /// The status it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Rejection::BadCost(_) => StatusCode::BAD_REQUEST,
            Rejection::AbnormalUsage(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The response: an RFC 9457 problem body, with `WWW-Authenticate` on 401.
    pub fn to_response(&self) -> Response<Bytes> {
        let status = self.status();
        if let Rejection::AbnormalUsage(left) = self {
            let mut response = problem::response(status, problem::abnormal_usage());
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(ceil_secs(*left).max(1)));
            return response;
        }
        let title = status.canonical_reason().unwrap_or("Error");
        let body = problem::plain(status.as_u16(), title, &self.to_string());
        let mut response = problem::response(status, body);
        if let Rejection::Unauthorized(_) = self {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        response
    }
}

impl axum::response::IntoResponse for Rejection {
    fn into_response(self) -> axum::response::Response {
        self.to_response().map(axum::body::Body::from)
    }
}
