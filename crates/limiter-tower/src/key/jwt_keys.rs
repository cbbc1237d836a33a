//! [`Jwt`]: the keys and claim checks of the `user` scope, gathered in code or from the
//! policy file's `jwt` section, each key bound to its algorithms as it is added.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::jwt::TokenFallback;
use super::jwt::{BoundKey, ClaimRules, JwtVerifier};

/// How the `user` scope verifies bearer tokens: the accepted algorithms, a key for each,
/// and the claims checked.
///
/// ```
/// use jsonwebtoken::Algorithm;
/// use limiter_tower::{Jwt, TokenFallback};
///
/// let jwt = Jwt::new([Algorithm::HS256])
///     .hmac_secret(b"a long random secret")
///     .issuer("https://auth.example.com")
///     .on_invalid(TokenFallback::Reject);
/// # let _ = jwt;
/// ```
#[derive(Clone)]
pub struct Jwt {
    allowed: Vec<Algorithm>,
    keys: Vec<BoundKey>,
    has_secret: bool,
    rules: ClaimRules,
    on_invalid: TokenFallback,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("allowed", &self.allowed)
            .field("keys", &self.keys.len())
            .field("rules", &self.rules)
            .field("on_invalid", &self.on_invalid)
            .finish_non_exhaustive()
    }
}

/// A key that cannot be used: unreadable, of a family no allowed algorithm has, or
/// symmetric where only public keys belong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JwtKeyError(String);

impl Jwt {
    /// Accepts tokens signed with `algorithms` (each needs a key); a 30 s leeway on
    /// `exp`/`nbf`, the identity in `sub`, and a bad token counted by client address.
    pub fn new(algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        Jwt {
            allowed: algorithms.into_iter().collect(),
            keys: Vec::new(),
            has_secret: false,
            rules: ClaimRules {
                leeway_secs: 30,
                issuer: None,
                audience: None,
                identity_claim: "sub".to_owned(),
            },
            on_invalid: TokenFallback::default(),
        }
    }

    /// The HMAC secret, bound to every allowed HS* algorithm.
    pub fn hmac_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.has_secret = true;
        for algorithm in self.allowed.iter().copied().filter(|a| is_hmac(*a)) {
            self.keys.push(BoundKey {
                algorithm,
                kid: None,
                key: DecodingKey::from_secret(secret.as_ref()),
            });
        }
        self
    }

    /// A public key in PEM, verifying `algorithm` only (an allowed RS*, PS*, ES* or
    /// EdDSA); tokens naming `kid` use it, or any token of the algorithm when `None`.
    pub fn public_key_pem(
        mut self,
        algorithm: Algorithm,
        kid: Option<String>,
        pem: &[u8],
    ) -> Result<Self, JwtKeyError> {
        if !self.allowed.contains(&algorithm) || is_hmac(algorithm) {
            return Err(JwtKeyError(format!(
                "{algorithm:?} must be an allowed public-key algorithm"
            )));
        }
        let key = match algorithm.family() {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
            _ => DecodingKey::from_ed_pem(pem),
        }
        .map_err(|e| JwtKeyError(e.to_string()))?;
        self.keys.push(BoundKey {
            algorithm,
            kid,
            key,
        });
        Ok(self)
    }

    /// The public keys of a JWKS document (`{"keys": [...]}`), each bound to its `alg`,
    /// or to the allowed algorithms of its key type when it names none.
    pub fn jwks(mut self, json: &[u8]) -> Result<Self, JwtKeyError> {
        let set: JwkSet = serde_json::from_slice(json).map_err(|e| JwtKeyError(e.to_string()))?;
        for (i, jwk) in set.keys.iter().enumerate() {
            let key =
                DecodingKey::from_jwk(jwk).map_err(|e| JwtKeyError(format!("key #{i}: {e}")))?;
            if key.family() == AlgorithmFamily::Hmac {
                return Err(JwtKeyError(format!(
                    "key #{i} is symmetric; only public keys belong in a JWKS file"
                )));
            }
            let named = jwk
                .common
                .key_algorithm
                .map(|a| Algorithm::from_str(&a.to_string()))
                .transpose()
                .map_err(|_| JwtKeyError(format!("key #{i}: unsupported alg")))?;
            for algorithm in key.family().algorithms() {
                if self.allowed.contains(algorithm) && named.is_none_or(|n| n == *algorithm) {
                    self.keys.push(BoundKey {
                        algorithm: *algorithm,
                        kid: jwk.common.key_id.clone(),
                        key: key.clone(),
                    });
                }
            }
        }
        Ok(self)
    }

    /// Clock skew tolerated on `exp` and `nbf` (whole seconds; 30 s by default).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.rules.leeway_secs = leeway.as_secs();
        self
    }

    /// Requires this `iss`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.rules.issuer = Some(issuer.into());
        self
    }

    /// Requires this among the token's audiences.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.rules.audience = Some(audience.into());
        self
    }

    /// The claim naming the user (`sub` by default).
    pub fn identity_claim(mut self, claim: impl Into<String>) -> Self {
        self.rules.identity_claim = claim.into();
        self
    }

    /// What a missing or invalid token means where a policy needs `user`.
    pub fn on_invalid(mut self, fallback: TokenFallback) -> Self {
        self.on_invalid = fallback;
        self
    }

    /// The verifier, once every allowed algorithm has a key: the field at fault
    /// (`algorithms`, `hs_secret`) and why otherwise.
    pub(crate) fn verifier(self) -> Result<(JwtVerifier, TokenFallback), (&'static str, String)> {
        if self.allowed.is_empty() {
            return Err(("algorithms", "list at least one algorithm".into()));
        }
        if self.has_secret && !self.allowed.iter().any(|a| is_hmac(*a)) {
            return Err((
                "hs_secret",
                "a secret is configured but no HS* algorithm is allowed".into(),
            ));
        }
        let covered: HashSet<Algorithm> = self.keys.iter().map(|k| k.algorithm).collect();
        if let Some(missing) = self.allowed.iter().find(|a| !covered.contains(a)) {
            return Err((
                "algorithms",
                format!("no key is configured for {missing:?}"),
            ));
        }
        Ok((JwtVerifier::new(self.keys, &self.rules), self.on_invalid))
    }
}

fn is_hmac(a: Algorithm) -> bool {
    a.family() == AlgorithmFamily::Hmac
}
