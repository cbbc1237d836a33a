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
use schemars::JsonSchema;
use serde::Deserialize;
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
    /// Further claims read from every verified token (a plan's), in this order.
    captured: Box<[String]>,
}

/// What a verified token says: its identity, and the captured claims in the verifier's
/// order (`None` where the token has no such claim, or one that is not a string or a
/// number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    pub user: String,
    pub claims: Box<[Option<String>]>,
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
            captured: Box::default(),
        }
    }

    /// Also reads `claims` from every verified token (see [`Verified::claims`]).
    pub(crate) fn capture(mut self, claims: impl IntoIterator<Item = String>) -> Self {
        self.captured = claims.into_iter().collect();
        self
    }

    /// The names of the captured claims, in [`Verified::claims`]' order.
    pub(crate) fn captured_names(&self) -> &[String] {
        &self.captured
    }

    /// The position of `claim` among the captured ones.
    pub(crate) fn captured(&self, claim: &str) -> Option<usize> {
        self.captured.iter().position(|c| c == claim)
    }

    /// The identity of the request's bearer token.
    pub(crate) fn identify(&self, headers: &HeaderMap) -> Result<Verified, TokenError> {
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

    /// Verifies `token` and returns what it says.
    pub(crate) fn verify(&self, token: &str) -> Result<Verified, TokenError> {
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
                Ok(data) => {
                    let user = self.identity(&data.claims)?;
                    let claims = self
                        .captured
                        .iter()
                        .map(|name| claim_text(data.claims.get(name)))
                        .collect();
                    return Ok(Verified { user, claims });
                }
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
        claim_text(claims.get(&self.identity_claim))
            .ok_or(TokenError::Claims("identity claim missing or not a string"))
    }
}

/// A claim as text: a non-empty string, or a number.
fn claim_text(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
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

/// What happens to a request without a valid token on a policy that needs `user`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TokenFallback {
    /// Count it under the client address instead.
    #[default]
    Ip,
    /// Answer 401.
    Reject,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Jwt;
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"jwt-unit-test-secret";
    const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/keys/rsa_private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/keys/rsa_public.pem");

    /// The identity `v` reads from `token`.
    fn user(v: &JwtVerifier, token: &str) -> Result<String, TokenError> {
        v.verify(token).map(|verified| verified.user)
    }

    #[test]
    fn captured_claims_are_read_in_order() {
        let v = hs_and_rs().capture(["plan".to_owned(), "team".to_owned()]);
        let token = hs(&with(
            claims(),
            &[("plan", json!("pro")), ("team", json!(7))],
        ));
        let verified = v.verify(&token).unwrap();
        assert_eq!(verified.user, "alice");
        assert_eq!(
            *verified.claims,
            [Some("pro".to_owned()), Some("7".to_owned())]
        );
        let none = hs(&with(claims(), &[("plan", json!({ "nested": "pro" }))]));
        assert_eq!(*v.verify(&none).unwrap().claims, [None, None]);
        assert_eq!(v.captured("team"), Some(1));
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn claims() -> Value {
        json!({ "sub": "alice", "iss": "auth", "aud": "api", "exp": now() + 3600 })
    }

    fn with(claims: Value, change: &[(&str, Value)]) -> Value {
        let mut claims = claims;
        for (name, value) in change {
            claims[*name] = value.clone();
        }
        claims
    }

    fn hs(claims: &Value) -> String {
        encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn rs(kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        encode(&header, claims, &key).unwrap()
    }

    fn verifier(jwt: Jwt) -> JwtVerifier {
        jwt.issuer("auth")
            .audience("api")
            .leeway(std::time::Duration::ZERO)
            .verifier()
            .unwrap()
            .0
    }

    fn hs_and_rs() -> JwtVerifier {
        let jwt = Jwt::new([Algorithm::HS256, Algorithm::RS256])
            .hmac_secret(SECRET)
            .public_key_pem(Algorithm::RS256, None, RSA_PUBLIC)
            .unwrap();
        verifier(jwt)
    }

    /// `{"keys": [the test RSA key, named `kid`]}`.
    fn jwks(kid: &str) -> Vec<u8> {
        let mut jwk = Jwk::from_encoding_key(
            &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
            Algorithm::RS256,
        )
        .unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        serde_json::to_vec(&JwkSet { keys: vec![jwk] }).unwrap()
    }

    fn b64(value: &Value) -> String {
        // base64url without padding, by hand: no dependency for one test.
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = value.to_string().into_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
                << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    #[test]
    fn valid_tokens_of_each_allowed_algorithm_name_their_subject() {
        let v = hs_and_rs();
        assert_eq!(user(&v, &hs(&claims())), Ok("alice".to_owned()));
        assert_eq!(user(&v, &rs(None, &claims())), Ok("alice".to_owned()));
        let numeric = with(claims(), &[("sub", json!(42))]);
        assert_eq!(user(&v, &hs(&numeric)), Ok("42".to_owned()));
    }

    #[test]
    fn forged_and_confused_algorithms_are_refused() {
        let v = hs_and_rs();
        let none = format!("{}.{}.", b64(&json!({ "alg": "none" })), b64(&claims()));
        assert!(user(&v, &none).is_err(), "alg none");
        let none_signed = format!("{}.{}.c2ln", b64(&json!({ "alg": "none" })), b64(&claims()));
        assert!(user(&v, &none_signed).is_err(), "alg none with a signature");
        // HS256 keyed with the RSA public key, as a confused verifier would check it.
        let confused = encode(
            &Header::default(),
            &claims(),
            &EncodingKey::from_secret(RSA_PUBLIC),
        )
        .unwrap();
        assert_eq!(user(&v, &confused), Err(TokenError::BadSignature));
        // An RS256 token where only HS256 is accepted.
        let hs_only = verifier(Jwt::new([Algorithm::HS256]).hmac_secret(SECRET));
        assert_eq!(
            user(&hs_only, &rs(None, &claims())),
            Err(TokenError::AlgorithmNotAllowed)
        );
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &claims(),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(user(&hs_only, &hs512), Err(TokenError::AlgorithmNotAllowed));
    }

    #[test]
    fn time_and_claim_checks() {
        let v = hs_and_rs();
        let cases = [
            (
                with(claims(), &[("exp", json!(now() - 60))]),
                TokenError::Expired,
            ),
            (
                with(claims(), &[("nbf", json!(now() + 600))]),
                TokenError::NotYetValid,
            ),
            (
                with(claims(), &[("iss", json!("evil"))]),
                TokenError::Claims("issuer"),
            ),
            (
                with(claims(), &[("aud", json!("other-api"))]),
                TokenError::Claims("audience"),
            ),
            (
                with(claims(), &[("sub", json!(""))]),
                TokenError::Claims("identity claim missing or not a string"),
            ),
        ];
        for (claims, want) in cases {
            assert_eq!(user(&v, &hs(&claims)), Err(want.clone()), "{claims}");
            assert_eq!(user(&v, &rs(None, &claims)), Err(want), "{claims}");
        }
        let nested = with(claims(), &[("sub", json!({ "nested": "alice" }))]);
        assert!(
            user(&v, &hs(&nested)).is_err(),
            "a subject that is not a string"
        );
        let mut no_exp = claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(matches!(user(&v, &hs(&no_exp)), Err(TokenError::Claims(_))));
    }

    #[test]
    fn oversized_tokens_are_refused_before_verification() {
        let v = hs_and_rs();
        // Validly signed: only the size bound can refuse it.
        let padding = "p".repeat(MAX_TOKEN_LEN);
        let big = hs(&with(claims(), &[("padding", json!(padding))]));
        assert!(big.len() > MAX_TOKEN_LEN);
        assert_eq!(user(&v, &big), Err(TokenError::Malformed));
        let mut headers = HeaderMap::new();
        let bearer = format!("Bearer {big}");
        headers.insert(http::header::AUTHORIZATION, bearer.parse().unwrap());
        assert_eq!(
            v.identify(&headers).map(|v| v.user),
            Err(TokenError::Malformed)
        );
        // Just within the bound, the same claims verify.
        let fits = hs(&with(claims(), &[("padding", json!("p".repeat(100)))]));
        assert_eq!(user(&v, &fits), Ok("alice".to_owned()));
    }

    #[test]
    fn a_jwks_key_answers_only_its_own_kid() {
        let jwt = Jwt::new([Algorithm::RS256]).jwks(&jwks("main")).unwrap();
        let v = verifier(jwt);
        assert_eq!(
            user(&v, &rs(Some("main"), &claims())),
            Ok("alice".to_owned())
        );
        assert_eq!(
            user(&v, &rs(Some("rotated-out"), &claims())),
            Err(TokenError::BadSignature)
        );
        // A JWKS key named for RS256 never verifies an HMAC token, whatever its kid.
        let header = Header {
            kid: Some("main".to_owned()),
            ..Header::default()
        };
        let hmac = encode(&header, &claims(), &EncodingKey::from_secret(RSA_PUBLIC)).unwrap();
        assert_eq!(user(&v, &hmac), Err(TokenError::AlgorithmNotAllowed));
    }

    #[test]
    fn malformed_headers_never_reach_verification() {
        let v = hs_and_rs();
        let cases: [(&[u8], TokenError); 5] = [
            (b"Bearer", TokenError::Malformed),
            (b"Bearer ", TokenError::Malformed),
            (b"Basic YWxpY2U6cHc=", TokenError::Missing),
            (b"Bearer \xff\xfe", TokenError::Malformed),
            (b"Bearer a.b.c", TokenError::Malformed),
        ];
        for (value, want) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_bytes(value).unwrap(),
            );
            assert_eq!(v.identify(&headers).map(|v| v.user), Err(want), "{value:?}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn identify(v: &JwtVerifier, value: &[u8]) -> Result<String, TokenError> {
            let mut headers = HeaderMap::new();
            if let Ok(value) = http::HeaderValue::from_bytes(value) {
                headers.insert(http::header::AUTHORIZATION, value);
            }
            v.identify(&headers).map(|v| v.user)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            /// Arbitrary `Authorization` bytes, bearer or not, never yield an identity.
            #[test]
            fn arbitrary_authorization_bytes_name_no_one(
                scheme in prop::sample::select(vec![&b""[..], b"Bearer ", b"bearer\t", b"Basic "]),
                rest in proptest::collection::vec(any::<u8>(), 0..200),
                shaped in "[A-Za-z0-9_.-]{0,120}",
            ) {
                let v = hs_and_rs();
                prop_assert!(identify(&v, &[scheme, &rest].concat()).is_err());
                prop_assert!(identify(&v, &[scheme, shaped.as_bytes()].concat()).is_err());
            }

            /// A validly signed token changed anywhere (one byte replaced, removed or
            /// inserted) no longer verifies: neither its header, its claims nor its
            /// signature's encoding can be altered.
            #[test]
            fn a_token_changed_anywhere_is_refused(
                at in any::<prop::sample::Index>(),
                byte in prop::sample::select(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ".to_vec(),
                ),
                how in 0..3u8,
            ) {
                let v = hs_and_rs();
                let token = hs(&claims());
                let mut changed = token.clone().into_bytes();
                let i = at.index(changed.len());
                match how {
                    0 => changed[i] = byte,
                    1 => {
                        changed.remove(i);
                    }
                    _ => changed.insert(i, byte),
                }
                let bearer = [&b"Bearer "[..], &changed].concat();
                // Only a change the bearer syntax itself ignores (surrounding blanks).
                prop_assume!(String::from_utf8_lossy(&changed).trim() != token);
                prop_assert!(identify(&v, &bearer).is_err(), "{}", String::from_utf8_lossy(&changed));
            }
        }
    }
}
