//! Composite keys: the scopes of a policy, in order, each rendered as `scope:value`.
//!
//! Every value is escaped ([`push_escaped`]), so it holds no `:`; with a fixed scope
//! name in front of each value, no request can produce another identity's key.

use std::sync::Arc;

use crate::key::escape::push_escaped;
use schemars::JsonSchema;
use serde::Deserialize;

/// What a request is, as far as the scopes of its policy care.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestIdentity<'a> {
    /// The verified token identity, if any.
    pub user: Option<&'a str>,
    /// The client address bucket (IPv4 address or IPv6 network); `None` when the
    /// server passes no peer address to the layer.
    pub ip: Option<&'a str>,
    /// The hashed API key, if any.
    pub api_key: Option<&'a str>,
    /// The method of the request.
    pub method: &'a str,
    /// The matched route template (or `*` for the default policy).
    pub route: &'a str,
    /// The verified token's captured claims: their names, and their values in that order.
    pub claims: Option<(&'a [String], &'a [Option<String>])>,
}

impl<'a> RequestIdentity<'a> {
    /// The value of the token's claim `name`, if captured and present.
    fn claim(&self, name: &str) -> Option<&'a str> {
        let (names, values) = self.claims?;
        let at = names.iter().position(|n| n == name)?;
        values.get(at)?.as_deref()
    }
}

/// The scopes of one policy, fixed when the configuration loads.
#[derive(Debug, Clone)]
pub(crate) struct KeyTemplate {
    scopes: Box<[Scope]>,
    has_ip: bool,
    /// `user,endpoint`: what traces show of a key.
    kinds: Arc<str>,
    /// The key itself when no scope depends on the request (`global` only).
    fixed: Option<&'static str>,
}

/// The `global` scope's part of a key, and the whole key when it is the only scope.
const GLOBAL: &str = "global";

impl KeyTemplate {
    /// A template over `scopes` (in this order).
    pub(crate) fn new(scopes: &[Scope]) -> Self {
        let fixed =
            (!scopes.is_empty() && scopes.iter().all(|s| *s == Scope::Global)).then_some(GLOBAL);
        KeyTemplate {
            fixed,
            scopes: scopes.into(),
            has_ip: scopes.contains(&Scope::Ip),
            kinds: scopes
                .iter()
                .map(|s| match s {
                    Scope::Claim(name) => format!("claim.{name}"),
                    other => other.as_str().to_owned(),
                })
                .collect::<Vec<_>>()
                .join(",")
                .into(),
        }
    }

    /// The scope kinds, comma-separated (`user,endpoint`): what a key is made of, never
    /// what it holds.
    pub(crate) fn kinds(&self) -> &Arc<str> {
        &self.kinds
    }

    /// Whether any scope needs the verified token (its identity or a claim).
    pub(crate) fn needs_user(&self) -> bool {
        self.scopes
            .iter()
            .any(|s| matches!(s, Scope::User | Scope::Claim(_)))
    }

    /// The token claims the scopes read.
    pub(crate) fn claims(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().filter_map(|s| match s {
            Scope::Claim(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// Whether any scope needs the API key.
    pub(crate) fn needs_api_key(&self) -> bool {
        self.scopes.contains(&Scope::ApiKey)
    }

    /// Whether rendering may use the client address: an `ip` scope, or a `user` or
    /// `api_key` scope that falls back to it.
    pub(crate) fn needs_ip(&self) -> bool {
        self.has_ip || self.needs_user() || self.needs_api_key()
    }

    /// The key when it is the same for every request, so that no request builds it.
    pub(crate) fn fixed(&self) -> Option<&str> {
        self.fixed
    }

    /// Renders the key, e.g. `user:alice:endpoint:GET%20/users/%7Bid%7D`. A `user` or
    /// `api_key` scope without a value counts under the client address instead (once,
    /// when the policy has no `ip` scope of its own). `None` when the key needs the
    /// client address and there is none: such clients must never share one budget.
    pub(crate) fn render(&self, id: &RequestIdentity<'_>) -> Option<String> {
        let mut key = String::with_capacity(96);
        let mut fell_back = self.has_ip;
        for scope in self.scopes.iter() {
            let (name, value) = match scope {
                Scope::User | Scope::ApiKey | Scope::Claim(_) => {
                    let (name, value) = match scope {
                        Scope::User => ("user", id.user),
                        Scope::Claim(claim) => match id.claim(claim) {
                            Some(value) => {
                                // `claim.NAME:value`: no fixed scope name starts so.
                                separate(&mut key);
                                key.push_str("claim.");
                                push_escaped(&mut key, claim);
                                key.push(':');
                                push_escaped(&mut key, value);
                                continue;
                            }
                            None => ("claim", None),
                        },
                        _ => ("key", id.api_key),
                    };
                    match value {
                        Some(value) => (name, Some(value)),
                        None if !fell_back => {
                            fell_back = true;
                            ("ip", Some(id.ip?))
                        }
                        None => continue,
                    }
                }
                Scope::Ip => ("ip", Some(id.ip?)),
                Scope::Endpoint => {
                    separate(&mut key);
                    key.push_str("endpoint:");
                    push_escaped(&mut key, id.method);
                    key.push_str("%20");
                    push_escaped(&mut key, id.route);
                    continue;
                }
                Scope::Global => (GLOBAL, None),
            };
            separate(&mut key);
            key.push_str(name);
            if let Some(value) = value {
                key.push(':');
                push_escaped(&mut key, value);
            }
        }
        Some(key)
    }
}

fn separate(key: &mut String) {
    if !key.is_empty() {
        key.push(':');
    }
}

/// One part of a rate-limit key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Scope {
    /// The verified token's identity.
    User,
    /// The client address (IPv6 grouped by prefix).
    Ip,
    /// A hash of the API key header.
    ApiKey,
    /// The matched route template and method.
    Endpoint,
    /// One budget for everyone.
    Global,
    /// A claim of the verified token, `{ claim: team }`: one budget per team (or
    /// organisation, tenant). A request without it counts under its client address, as
    /// one without a token does under `user`.
    Claim(String),
}

impl Scope {
    /// The name as written in the file.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Ip => "ip",
            Scope::ApiKey => "api_key",
            Scope::Endpoint => "endpoint",
            Scope::Global => "global",
            Scope::Claim(_) => "claim",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id<'a>(user: Option<&'a str>) -> RequestIdentity<'a> {
        RequestIdentity {
            user,
            ip: Some("192.0.2.1"),
            api_key: None,
            method: "GET",
            route: "/users/{id}",
            claims: None,
        }
    }

    #[test]
    fn a_claim_scope_names_its_claim_and_falls_back_to_the_address() {
        let names = ["team".to_owned()];
        let values = [Some("red:1".to_owned())];
        let t = KeyTemplate::new(&[Scope::Claim("team".to_owned()), Scope::Endpoint]);
        let with = RequestIdentity {
            claims: Some((&names, &values)),
            ..id(None)
        };
        assert_eq!(
            t.render(&with).unwrap(),
            "claim.team:red%3A1:endpoint:GET%20/users/%7Bid%7D"
        );
        assert_eq!(
            t.render(&id(None)).unwrap(),
            "ip:192.0.2.1:endpoint:GET%20/users/%7Bid%7D"
        );
        assert!(t.needs_user());
        assert_eq!(&**t.kinds(), "claim.team,endpoint");
    }

    #[test]
    fn renders_scopes_in_order() {
        let t = KeyTemplate::new(&[Scope::User, Scope::Endpoint, Scope::Ip]);
        assert_eq!(
            t.render(&id(Some("alice"))).unwrap(),
            "user:alice:endpoint:GET%20/users/%7Bid%7D:ip:192.0.2.1"
        );
        let global = KeyTemplate::new(&[Scope::Global]);
        assert_eq!(global.render(&id(None)).unwrap(), "global");
        assert_eq!(global.fixed(), Some("global"));
        assert_eq!(t.fixed(), None);
    }

    #[test]
    fn missing_identity_falls_back_to_ip_once() {
        let t = KeyTemplate::new(&[Scope::User, Scope::ApiKey]);
        assert_eq!(t.render(&id(None)).unwrap(), "ip:192.0.2.1");
        let t = KeyTemplate::new(&[Scope::User, Scope::Ip]);
        assert_eq!(t.render(&id(None)).unwrap(), "ip:192.0.2.1");
    }

    #[test]
    fn a_user_cannot_forge_another_scope() {
        let t = KeyTemplate::new(&[Scope::User, Scope::Ip]);
        let forged = t
            .render(&RequestIdentity {
                user: Some("bob:ip:192.0.2.1"),
                ..id(None)
            })
            .unwrap();
        let real = t.render(&id(Some("bob"))).unwrap();
        assert_ne!(forged, real);
        assert_eq!(forged.matches(':').count(), 3);
    }

    #[test]
    fn no_client_address_renders_no_key_where_one_is_needed() {
        let unknown = |user| RequestIdentity {
            ip: None,
            ..id(user)
        };
        assert_eq!(KeyTemplate::new(&[Scope::Ip]).render(&unknown(None)), None);
        let user = KeyTemplate::new(&[Scope::User, Scope::Endpoint]);
        assert_eq!(user.render(&unknown(None)), None, "the fallback needs it");
        assert_eq!(
            user.render(&unknown(Some("alice"))).as_deref(),
            Some("user:alice:endpoint:GET%20/users/%7Bid%7D")
        );
        assert_eq!(
            KeyTemplate::new(&[Scope::Endpoint])
                .render(&unknown(None))
                .as_deref(),
            Some("endpoint:GET%20/users/%7Bid%7D")
        );
    }

    mod properties {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;
        use proptest::sample::select;

        /// Values made of what could confuse a key: its separator and escape, escapes
        /// written out, hash tags, scope names, Unicode look-alikes (Cyrillic `а`, `é`
        /// precomposed and as `e` + combining accent), controls, and plain letters.
        fn hostile() -> impl Strategy<Value = String> {
            let pieces = vec![
                "a", "b", ":", "%", "%3A", "3A", "%25", "{", "}", " ", "%20", "é", "e\u{301}",
                "\u{430}", "/", "ip", "user", "key", "endpoint", "global", "\0", "\n", "*",
            ];
            vec(select(pieces), 0..6).prop_map(|parts| parts.concat())
        }

        /// Methods are HTTP tokens: never a space or a `:`, but `%` is allowed.
        fn method() -> impl Strategy<Value = String> {
            vec(select(vec!["G", "E", "T", "%", "2", "0", "!", "~"]), 1..5)
                .prop_map(|parts| parts.concat())
        }

        fn scopes() -> impl Strategy<Value = Vec<Scope>> {
            let all = vec![
                Scope::User,
                Scope::Ip,
                Scope::ApiKey,
                Scope::Endpoint,
                Scope::Global,
                Scope::Claim("team".to_owned()),
            ];
            vec(select(all), 1..5)
        }

        #[derive(Debug, Clone)]
        struct Owned {
            user: Option<String>,
            ip: Option<String>,
            api_key: Option<String>,
            method: String,
            route: String,
            /// The `team` claim, captured as the only one.
            team: [Option<String>; 1],
        }

        impl Owned {
            fn borrow(&self) -> RequestIdentity<'_> {
                RequestIdentity {
                    user: self.user.as_deref(),
                    ip: self.ip.as_deref(),
                    api_key: self.api_key.as_deref(),
                    method: &self.method,
                    route: &self.route,
                    claims: Some((&*TEAM, &self.team)),
                }
            }
        }

        /// The names of the captured claims.
        static TEAM: std::sync::LazyLock<[String; 1]> =
            std::sync::LazyLock::new(|| ["team".to_owned()]);

        fn identity() -> impl Strategy<Value = Owned> {
            let part = || proptest::option::weighted(0.8, hostile());
            (part(), part(), part(), method(), hostile(), part()).prop_map(
                |(user, ip, api_key, method, route, team)| Owned {
                    user,
                    ip,
                    api_key,
                    method,
                    route,
                    team: [team],
                },
            )
        }

        /// What a key is meant to identify, written plainly: each scope's kind and
        /// values, with `user`/`api_key` falling back to the address once.
        fn meaning(scopes: &[Scope], id: &Owned) -> Option<Vec<(&'static str, Vec<String>)>> {
            let mut out = Vec::new();
            let mut fell_back = scopes.contains(&Scope::Ip);
            for scope in scopes {
                match scope {
                    Scope::User | Scope::ApiKey | Scope::Claim(_) => {
                        let (kind, value) = match scope {
                            Scope::User => ("user", &id.user),
                            Scope::Claim(_) => ("claim.team", &id.team[0]),
                            _ => ("key", &id.api_key),
                        };
                        match value {
                            Some(value) => out.push((kind, vec![value.clone()])),
                            None if !fell_back => {
                                fell_back = true;
                                out.push(("ip", vec![id.ip.clone()?]));
                            }
                            None => {}
                        }
                    }
                    Scope::Ip => out.push(("ip", vec![id.ip.clone()?])),
                    Scope::Endpoint => {
                        out.push(("endpoint", vec![id.method.clone(), id.route.clone()]))
                    }
                    Scope::Global => out.push(("global", vec![])),
                }
            }
            Some(out)
        }

        /// Reads a key back into what it identifies: possible only because every value is
        /// escaped (no `:` inside) and the endpoint's method holds no space (`%20`).
        fn decode(key: &str) -> Option<Vec<(&'static str, Vec<String>)>> {
            let unescape = |part: &str| -> Option<String> {
                let bytes = part.as_bytes();
                let mut out = Vec::new();
                let mut i = 0;
                while i < bytes.len() {
                    if bytes[i] == b'%' {
                        let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                        out.push(u8::from_str_radix(hex, 16).ok()?);
                        i += 3;
                    } else {
                        out.push(bytes[i]);
                        i += 1;
                    }
                }
                String::from_utf8(out).ok()
            };
            let mut tokens = key.split(':');
            let mut out = Vec::new();
            while let Some(kind) = tokens.next() {
                let kind = ["user", "ip", "key", "endpoint", "global", "claim.team"]
                    .into_iter()
                    .find(|k| *k == kind)?;
                let values = match kind {
                    "global" => vec![],
                    "endpoint" => {
                        let (method, route) = tokens.next()?.split_once("%20")?;
                        vec![unescape(method)?, unescape(route)?]
                    }
                    _ => vec![unescape(tokens.next()?)?],
                };
                out.push((kind, values));
            }
            Some(out)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// A key can be read back into exactly the identity it was built from, so no
            /// two distinct identities can ever share one.
            #[test]
            fn a_key_reads_back_as_its_identity(scopes in scopes(), a in identity()) {
                let key = KeyTemplate::new(&scopes).render(&a.borrow());
                prop_assert_eq!(key.as_deref().and_then(decode), meaning(&scopes, &a));
            }

            /// Distinct identities never share a key, and one identity always gets the
            /// same key: keys are equal exactly when what they identify is.
            #[test]
            fn keys_are_equal_exactly_when_identities_are(
                scopes in scopes(),
                a in identity(),
                b in identity(),
            ) {
                let t = KeyTemplate::new(&scopes);
                let (ka, kb) = (t.render(&a.borrow()), t.render(&b.borrow()));
                let (ma, mb) = (meaning(&scopes, &a), meaning(&scopes, &b));
                prop_assert_eq!(ka.is_some(), ma.is_some());
                prop_assert_eq!(ka == kb, ma == mb, "{:?} {:?}", ka, kb);
            }

            /// The same, for identities that differ in one part only (random pairs
            /// rarely collide by chance).
            #[test]
            fn changing_one_part_changes_the_key(
                scopes in scopes(),
                a in identity(),
                user in hostile(),
                route in hostile(),
            ) {
                let t = KeyTemplate::new(&scopes);
                for b in [
                    Owned { user: Some(user.clone()), ..a.clone() },
                    Owned { route: route.clone(), ..a.clone() },
                ] {
                    let same_meaning = meaning(&scopes, &a) == meaning(&scopes, &b);
                    prop_assert_eq!(t.render(&a.borrow()) == t.render(&b.borrow()), same_meaning);
                }
            }
        }
    }
}
