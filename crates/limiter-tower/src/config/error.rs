//! Configuration errors: each names the file, and where it can, the line, column and
//! field at fault.

use std::fmt;
use std::path::PathBuf;

/// Where in the file a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

fn at(position: &Option<Position>) -> String {
    position
        .as_ref()
        .map(|p| format!(":{p}"))
        .unwrap_or_default()
}

/// A policy file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not YAML, or YAML of the wrong shape (unknown field, wrong type, ...).
    #[error("{}{}: {field}: {message}", file.display(), at(position))]
    Syntax {
        /// The file.
        file: PathBuf,
        /// Where.
        position: Option<Position>,
        /// The field path, e.g. `endpoints[2].limits[0].window`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Well-formed, but not a policy that can be enforced.
    #[error("{}{}: {field}: {message}", file.display(), at(position))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Where the enclosing entry starts.
        position: Option<Position>,
        /// The field path.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A `${VAR}` reference names an unset environment variable.
    #[error("{}: {field}: environment variable {var} is not set", file.display())]
    Env {
        /// The file.
        file: PathBuf,
        /// The field path.
        field: String,
        /// The variable.
        var: String,
    },
}

impl ConfigError {
    /// The line and column, when known.
    pub fn position(&self) -> Option<&Position> {
        match self {
            ConfigError::Syntax { position, .. } | ConfigError::Invalid { position, .. } => {
                position.as_ref()
            }
            _ => None,
        }
    }

    /// The field path, when known.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Syntax { field, .. }
            | ConfigError::Invalid { field, .. }
            | ConfigError::Env { field, .. } => Some(field),
            ConfigError::Io { .. } => None,
        }
    }
}
