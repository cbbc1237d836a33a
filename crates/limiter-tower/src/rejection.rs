//! Requests the layer answers itself without asking the store: a token that a policy
//! requires is missing or invalid (401), a cost or timestamp header is unusable (400),
//! the client is blocked by the enumeration defence (429), or the server gives the layer
//! no client address where a policy counts by it (500).

use bytes::Bytes;
use std::time::Duration;

use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use crate::client_timestamp::BadTimestamp;
use crate::headers::ceil_secs;
use crate::key::TokenError;
use crate::problem;
use crate::rules::BadCost;

/// Why a request was answered by the layer before any rate-limit decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The policy needs a verified user and the fallback is `reject`.
    #[error("unauthorized: {0}")]
    Unauthorized(#[from] TokenError),
    /// The cost header is not a whole number within its bound.
    #[error(transparent)]
    BadCost(#[from] BadCost),
    /// The request's timestamp header is malformed, missing where required, or further
    /// from this process's clock than the tolerated skew.
    #[error(transparent)]
    BadTimestamp(#[from] BadTimestamp),
    /// The policy counts by client address (or networks are exempted) and the server
    /// passes none to the layer: a fault of the server, not of the request, answered 500
    /// rather than counting every client in one shared budget.
    #[error("{NO_CLIENT_ADDRESS}")]
    NoClientAddress,
    /// The client address (or its network) is blocked by the enumeration defence for
    /// this much longer.
    #[error("abnormal usage detected; blocked for {0:?}")]
    AbnormalUsage(Duration),
    /// An operator blocked the request's key under its policy (an override) for this
    /// much longer.
    #[error("blocked by an operator for {0:?} more")]
    Blocked(Duration),
    /// The request's key is in its policy's penalty box for this much longer: the policy
    /// denied it, and keeps denying it for its `penalty`.
    #[error("over a rate limit; denied for its penalty time, {0:?} more")]
    Penalized(Duration),
}

/// The detail of [`Rejection::NoClientAddress`], also logged once.
pub(crate) const NO_CLIENT_ADDRESS: &str = "a rate-limit policy counts by client address (or exempts networks), but the server passes none to the layer: serve the app with `into_make_service_with_connect_info::<SocketAddr>()` (or insert `ConnectInfo<SocketAddr>` into every request)";

impl Rejection {
    /// The status it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Rejection::BadCost(_) | Rejection::BadTimestamp(_) => StatusCode::BAD_REQUEST,
            Rejection::NoClientAddress => StatusCode::INTERNAL_SERVER_ERROR,
            Rejection::AbnormalUsage(_) | Rejection::Blocked(_) | Rejection::Penalized(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
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
        if let Rejection::Blocked(left) | Rejection::Penalized(left) = self {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(ceil_secs(*left).max(1)));
        }
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
