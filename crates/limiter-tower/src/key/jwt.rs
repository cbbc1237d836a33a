//! The `user` scope: bearer tokens verified with `jsonwebtoken`.
//!
//! Every key is bound to the algorithms of its own family when it is loaded: the HMAC
//! secret verifies only HS*, a PEM key only its configured algorithm, a JWK only its
//! `alg` (or its key type's family). A token's header picks among those keys, never the
//! other way round, so an RSA public key can never be used as an HMAC secret, and `none`
//! is not an algorithm `jsonwebtoken` can even parse.

use std::collections::HashMap;

use http::HeaderMap;
use jsonwebtoken::{decode, decode_header, errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a request has no verified identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// The header is not a well-formed bearer token.
    #[error("malformed bearer token")]
    Malformed,
    /// The token's algorithm is not on the allow-list (or there is no key for it).
    #[error("token algorithm not accepted")]
    AlgorithmNotAllowed,
    /// The signature does not verify with any key bound to the token's algorithm.
    #[error("invalid token signature")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` or `aud` does not match, or a required claim is missing or malformed.
    #[error("token claims rejected: {0}")]
    Claims(&'static str),
}

/// One verification key, usable for exactly one algorithm.
#[derive(Clone)]
pub(crate) struct BoundKey {
    /// The algorithm this key verifies.
    pub algorithm: Algorithm,
    /// The `kid` it answers to; any when `None`.
    pub kid: Option<String>,
    /// The key material.
    pub key: DecodingKey,
}

/// Verifies bearer tokens and reads the identity claim.
#[derive(Clone)]
pub(crate) struct JwtVerifier {
    keys: Vec<BoundKey>,
    validations: HashMap<Algorithm, Validation>,
    identity_claim: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .field("algorithms", &self.validations.keys().collect::<Vec<_>>())
            .field("identity_claim", &self.identity_claim)
            .finish()
    }
}

/// Claim checks shared by every algorithm.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClaimRules {
    /// Seconds of tolerated clock skew on `exp`/`nbf`.
    pub leeway_secs: u64,
    /// Required issuer.
    pub issuer: Option<String>,
    /// Required audience.
    pub audience: Option<String>,
    /// The claim holding the identity.
    pub identity_claim: String,
}

impl JwtVerifier {
    /// A verifier accepting exactly the algorithms that have a key in `keys`.
    pub(crate) fn new(keys: Vec<BoundKey>, rules: &ClaimRules) -> Self {
        let mut validations = HashMap::new();
        for key in &keys {
            validations.entry(key.algorithm).or_insert_with(|| {
                let mut v = Validation::new(key.algorithm);
                v.leeway = rules.leeway_secs;
                v.validate_exp = true;
                v.validate_nbf = true;
                v.set_required_spec_claims(&["exp"]);
                if let Some(iss) = &rules.issuer {
                    v.set_issuer(&[iss]);
                }
                match &rules.audience {
                    Some(aud) => v.set_audience(&[aud]),
                    None => v.validate_aud = false,
                }
                v
            });
        }
        JwtVerifier {
            keys,
            validations,
            identity_claim: rules.identity_claim.clone(),
        }
    }

    /// The identity of the request's bearer token.
    pub(crate) fn identify(&self, headers: &HeaderMap) -> Result<String, TokenError> {
        let value = headers
            .get(http::header::AUTHORIZATION)
            .ok_or(TokenError::Missing)?;
        let value = value.to_str().map_err(|_| TokenError::Malformed)?;
        let (scheme, token) = value.split_once(' ').ok_or(TokenError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(TokenError::Missing);
        }
        self.verify(token.trim())
    }

    /// Verifies `token` and returns its identity claim.
    pub(crate) fn verify(&self, token: &str) -> Result<String, TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let header = decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                TokenError::AlgorithmNotAllowed
            }
            _ => TokenError::Malformed,
        })?;
        let validation = self
            .validations
            .get(&header.alg)
            .ok_or(TokenError::AlgorithmNotAllowed)?;
        let mut last = TokenError::BadSignature;
        let candidates = self.keys.iter().filter(|k| {
            k.algorithm == header.alg
                && match (&k.kid, &header.kid) {
                    (Some(want), Some(got)) => want == got,
                    _ => true,
                }
        });
        for key in candidates {
            match decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => return self.identity(&data.claims),
                Err(e) => {
                    last = map_error(e.kind());
                    // A valid signature with bad claims will not improve with another key.
                    if last != TokenError::BadSignature {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<String, TokenError> {
        match claims.get(&self.identity_claim) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(TokenError::Claims("identity claim missing or not a string")),
        }
    }
}

fn map_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::Claims("issuer"),
        ErrorKind::InvalidAudience => TokenError::Claims("audience"),
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
            TokenError::Claims("required claim missing or malformed")
        }
        ErrorKind::InvalidAlgorithm => TokenError::AlgorithmNotAllowed,
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        _ => TokenError::Malformed,
    }
}
