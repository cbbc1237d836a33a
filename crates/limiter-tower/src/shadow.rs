//! Shadow mode: [`ShadowDenied`], what a policy tried out without enforcing it would
//! have done to a request it let through.

use std::sync::Arc;
use std::time::Duration;

/// A request a shadow policy would have denied, put in the request's extensions before
/// the handler runs: the policy is decided and counted exactly as if enforced, the
/// request passes, and the handler may read what would have happened.
///
/// ```
/// use axum::{http::StatusCode, Extension};
/// use limiter_tower::ShadowDenied;
///
/// async fn search(shadow: Option<Extension<ShadowDenied>>) -> StatusCode {
///     if let Some(Extension(denied)) = shadow {
///         tracing::info!(policy = denied.policy(), window = ?denied.window(), "over the planned limit");
///     }
///     StatusCode::OK
/// }
/// # let _ = search;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowDenied {
    policy: Arc<str>,
    window: Option<Arc<str>>,
    retry_after: Option<Duration>,
}

impl ShadowDenied {
    pub(crate) fn new(
        policy: Arc<str>,
        window: Option<Arc<str>>,
        retry_after: Option<Duration>,
    ) -> Self {
        ShadowDenied {
            policy,
            window,
            retry_after,
        }
    }

    /// The shadow policy's name.
    pub fn policy(&self) -> &str {
        &self.policy
    }

    /// The window that would have denied the request; `None` when the store could not
    /// decide and the failure mode would have refused it.
    pub fn window(&self) -> Option<&str> {
        self.window.as_deref()
    }

    /// When a retry would have been admitted, if the policy could tell.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}
