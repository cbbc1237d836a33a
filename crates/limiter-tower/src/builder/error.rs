//! [`BuildError`]: why a builder's rules cannot be enforced.

/// Which entry of the builder (and of the policy file) an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// The endpoint added `n`-th, from 0 (`endpoints[n]` in the file).
    Endpoint(usize),
    /// The default policy.
    DefaultPolicy,
    /// The shared policy added `n`-th, from 0 (`policies[n]` in the file).
    Policy(usize),
}

impl Entry {
    pub(crate) fn error(self, field: &str, message: impl ToString) -> BuildError {
        let prefix = match self {
            Entry::Endpoint(i) => format!("endpoints[{i}]"),
            Entry::DefaultPolicy => "default_policy".to_owned(),
            Entry::Policy(i) => format!("policies[{i}]"),
        };
        BuildError {
            field: format!("{prefix}.{field}"),
            message: message.to_string(),
            entry: Some(self),
        }
    }
}

/// Rules that cannot be enforced: two policies of one name, conflicting routes, the
/// `user` scope without a way to verify tokens, and the like. The field is named as in
/// the policy file: `endpoints[1].path` is the route of the second endpoint added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BuildError {
    field: String,
    message: String,
    entry: Option<Entry>,
}

impl BuildError {
    pub(crate) fn new(field: impl Into<String>, message: impl ToString) -> Self {
        BuildError {
            field: field.into(),
            message: message.to_string(),
            entry: None,
        }
    }

    /// The field at fault, e.g. `endpoints[1].path` or `jwt.algorithms`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn entry(&self) -> Option<Entry> {
        self.entry
    }
}
