//! The clients: signed JWTs for the top users and the long tail, each with a client
//! address (sent in `X-Forwarded-For`, which the demo believes from 127.0.0.1), and the
//! skewed picker that chooses who sends each request.

use jsonwebtoken::{encode, EncodingKey, Header};
use rand::Rng;
use serde_json::json;

/// Users who send `TOP_SHARE` of the requests.
pub const TOP_USERS: u32 = 1_000;
/// Users who send the rest.
pub const TAIL_USERS: u32 = 100_000;
/// The top users' share of the requests (the issue: 80%).
pub const TOP_SHARE: f64 = 0.8;

/// The demo's JWT settings (examples/demo.rs, config/demo.yaml).
const DEFAULT_SECRET: &str = "demo-secret-do-not-use-in-production";
const AUDIENCE: &str = "limiter-demo";

/// Every identity's pre-signed `Authorization` value and client address. Signing
/// 101,000 tokens up front keeps HMAC off the generator's hot path.
pub struct Identities {
    bearer: Vec<String>,
}

impl Identities {
    /// Signs a token for each of the `TOP_USERS + TAIL_USERS` users with the demo's secret
    /// (`DEMO_JWT_SECRET`, or the demo's default): `sub` `u<i>`, `plan` pro for one user
    /// in five, `team` one of 100, valid for a day.
    pub fn sign() -> Result<Identities, jsonwebtoken::errors::Error> {
        let secret = std::env::var("DEMO_JWT_SECRET").unwrap_or_else(|_| DEFAULT_SECRET.into());
        let key = EncodingKey::from_secret(secret.as_bytes());
        let header = Header::default(); // HS256
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() + 86_400)
            .unwrap_or(u64::MAX / 2);
        let bearer = (0..TOP_USERS + TAIL_USERS)
            .map(|i| {
                let plan = if i % 5 == 0 { "pro" } else { "free" };
                let claims = json!({
                    "sub": user(i), "aud": AUDIENCE, "plan": plan,
                    "team": format!("t{}", i % 100), "exp": exp,
                });
                encode(&header, &claims, &key).map(|t| format!("Bearer {t}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Identities { bearer })
    }

    /// The `Authorization` header value of identity `i`.
    pub fn bearer(&self, i: u32) -> &str {
        &self.bearer[i as usize % self.bearer.len()]
    }
}

/// The `sub` claim of identity `i`.
pub fn user(i: u32) -> String {
    format!("u{i}")
}

/// The client address of identity `i` (10.0.0.0/8, unique per identity).
pub fn address(i: u32) -> String {
    let [_, b, c, d] = i.to_be_bytes();
    format!("10.{b}.{c}.{d}")
}

/// Picks the identity of the next request: a top user with probability `TOP_SHARE`,
/// uniformly among them, else a tail user, uniformly among those.
pub fn pick(rng: &mut impl Rng) -> u32 {
    if rng.random_bool(TOP_SHARE) {
        rng.random_range(0..TOP_USERS)
    } else {
        TOP_USERS + rng.random_range(0..TAIL_USERS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn top_users_get_four_fifths_of_the_requests() {
        let mut rng = SmallRng::seed_from_u64(21);
        let n = 200_000;
        let top = (0..n).filter(|_| pick(&mut rng) < TOP_USERS).count();
        let share = top as f64 / n as f64;
        assert!((share - TOP_SHARE).abs() < 0.01, "top share {share}");
    }

    #[test]
    fn the_tail_is_spread_over_all_its_users() {
        let mut rng = SmallRng::seed_from_u64(7);
        let tail: Vec<u32> = (0..400_000)
            .map(|_| pick(&mut rng))
            .filter(|&i| i >= TOP_USERS)
            .collect();
        let distinct: std::collections::HashSet<_> = tail.iter().collect();
        // 80,000 draws from 100,000 users reach about 55,000 distinct ones.
        assert!(distinct.len() > 50_000, "{} distinct", distinct.len());
        assert!(tail.iter().all(|&i| i < TOP_USERS + TAIL_USERS));
    }

    #[test]
    fn addresses_are_unique_per_identity() {
        assert_eq!(address(0), "10.0.0.0");
        assert_eq!(address(TOP_USERS + TAIL_USERS - 1), "10.1.138.135");
        assert_ne!(address(256), address(1));
    }
}
