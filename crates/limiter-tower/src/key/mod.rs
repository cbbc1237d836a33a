//! Rate-limit keys: what a budget is per (user, client address, API key, endpoint, or
//! everyone), and how those parts compose into one key.

mod api_key;
mod client_ip;
mod compose;
mod escape;
mod jwt;
mod jwt_keys;

pub(crate) use api_key::{hash_api_key, ApiKeyReader, DEFAULT_API_KEY_HEADER};
pub(crate) use client_ip::ClientIpResolver;
pub use client_ip::ForwardedHeader;
pub use compose::Scope;
pub(crate) use compose::{KeyTemplate, RequestIdentity};
pub use jwt::TokenFallback;
pub(crate) use jwt::{JwtVerifier, TokenError};
pub use jwt_keys::{Jwt, JwtKeyError};
