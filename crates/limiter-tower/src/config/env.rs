//! `${VAR}` and `${VAR:-fallback}` in deploy-time values (store URLs, key paths), so one
//! policy file serves every environment.

/// A reference to an unset variable (without a fallback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Unset(pub String);

/// Replaces every `${NAME}` / `${NAME:-fallback}` in `text` with the environment's value.
/// Text without `${` is returned unchanged; an unterminated `${` is kept literally.
pub(super) fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, Unset> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = &after[..end];
        let (name, fallback) = match inner.split_once(":-") {
            Some((name, fallback)) => (name, Some(fallback)),
            None => (inner, None),
        };
        match (lookup(name).filter(|v| !v.is_empty()), fallback) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(fallback)) => out.push_str(fallback),
            (None, None) => return Err(Unset(name.to_owned())),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// [`expand`] against the process environment.
pub(super) fn expand_env(text: &str) -> Result<String, Unset> {
    expand(text, |name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "HOST").then(|| "redis.internal".to_owned())
    }

    #[test]
    fn expands_with_and_without_fallback() {
        assert_eq!(
            expand("redis://${HOST}:6379", env).unwrap(),
            "redis://redis.internal:6379"
        );
        assert_eq!(expand("${PORT:-6379}", env).unwrap(), "6379");
        assert_eq!(expand("${NOPE}", env), Err(Unset("NOPE".into())));
        assert_eq!(expand("plain ${", env).unwrap(), "plain ${");
    }
}
