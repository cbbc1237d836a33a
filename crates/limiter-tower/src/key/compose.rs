//! Composite keys: the scopes of a policy, in order, each rendered as `scope:value`.
//!
//! Every value is escaped ([`push_escaped`]), so it holds no `:`; with a fixed scope
//! name in front of each value, no request can produce another identity's key.

use crate::config::Scope;
use crate::key::escape::push_escaped;

/// What a request is, as far as the scopes of its policy care.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestIdentity<'a> {
    /// The verified token identity, if any.
    pub user: Option<&'a str>,
    /// The client address bucket (IPv4 address or IPv6 network).
    pub ip: &'a str,
    /// The hashed API key, if any.
    pub api_key: Option<&'a str>,
    /// The method of the request.
    pub method: &'a str,
    /// The matched route template (or `*` for the default policy).
    pub route: &'a str,
}

/// The scopes of one policy, fixed when the configuration loads.
#[derive(Debug, Clone)]
pub(crate) struct KeyTemplate {
    scopes: Box<[Scope]>,
    has_ip: bool,
    /// `user,endpoint`: what traces show of a key.
    kinds: Box<str>,
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
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
                .into(),
        }
    }

    /// The scope kinds, comma-separated (`user,endpoint`): what a key is made of, never
    /// what it holds.
    pub(crate) fn kinds(&self) -> &str {
        &self.kinds
    }

    /// Whether any scope needs the token identity.
    pub(crate) fn needs_user(&self) -> bool {
        self.scopes.contains(&Scope::User)
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
    /// when the policy has no `ip` scope of its own).
    pub(crate) fn render(&self, id: &RequestIdentity<'_>) -> String {
        let mut key = String::with_capacity(96);
        let mut fell_back = self.has_ip;
        for scope in self.scopes.iter() {
            let (name, value) = match scope {
                Scope::User | Scope::ApiKey => {
                    let (name, value) = match scope {
                        Scope::User => ("user", id.user),
                        _ => ("key", id.api_key),
                    };
                    match value {
                        Some(value) => (name, Some(value)),
                        None if !fell_back => {
                            fell_back = true;
                            ("ip", Some(id.ip))
                        }
                        None => continue,
                    }
                }
                Scope::Ip => ("ip", Some(id.ip)),
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
        key
    }
}

fn separate(key: &mut String) {
    if !key.is_empty() {
        key.push(':');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id<'a>(user: Option<&'a str>) -> RequestIdentity<'a> {
        RequestIdentity {
            user,
            ip: "192.0.2.1",
            api_key: None,
            method: "GET",
            route: "/users/{id}",
        }
    }

    #[test]
    fn renders_scopes_in_order() {
        let t = KeyTemplate::new(&[Scope::User, Scope::Endpoint, Scope::Ip]);
        assert_eq!(
            t.render(&id(Some("alice"))),
            "user:alice:endpoint:GET%20/users/%7Bid%7D:ip:192.0.2.1"
        );
        let global = KeyTemplate::new(&[Scope::Global]);
        assert_eq!(global.render(&id(None)), "global");
        assert_eq!(global.fixed(), Some("global"));
        assert_eq!(t.fixed(), None);
    }

    #[test]
    fn missing_identity_falls_back_to_ip_once() {
        let t = KeyTemplate::new(&[Scope::User, Scope::ApiKey]);
        assert_eq!(t.render(&id(None)), "ip:192.0.2.1");
        let t = KeyTemplate::new(&[Scope::User, Scope::Ip]);
        assert_eq!(t.render(&id(None)), "ip:192.0.2.1");
    }

    #[test]
    fn a_user_cannot_forge_another_scope() {
        let t = KeyTemplate::new(&[Scope::User, Scope::Ip]);
        let forged = t.render(&RequestIdentity {
            user: Some("bob:ip:192.0.2.1"),
            ..id(None)
        });
        let real = t.render(&id(Some("bob")));
        assert_ne!(forged, real);
        assert_eq!(forged.matches(':').count(), 3);
    }
}
