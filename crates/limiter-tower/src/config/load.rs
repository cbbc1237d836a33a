//! Reading a policy file: YAML with line/column and field path on every error.

use std::path::{Path, PathBuf};

use super::compile::compile;
use super::error::{ConfigError, Position};
use super::model::ConfigFile;
use crate::rules::Rules;

/// A policy file, parsed and compiled.
#[derive(Debug)]
pub struct Loaded {
    /// The file as written.
    pub file: ConfigFile,
    /// The rules compiled from it.
    pub rules: Rules,
}

/// Reads, parses and compiles the policy file at `path`. Relative key file paths in it
/// are resolved against its directory.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        file: path.to_owned(),
        source,
    })?;
    load_str(&text, path)
}

/// Parses and compiles `text` as if read from `path` (which names it in errors and
/// anchors relative paths).
///
/// ```
/// use std::path::Path;
/// use limiter_tower::config::load_str;
///
/// let ok = load_str("endpoints:\n  - { path: /a, name: a, limits: [{ name: m, max: 5, window: 60s }] }\n", Path::new("p.yaml"));
/// assert_eq!(ok.unwrap().rules.policies().count(), 1);
///
/// let err = load_str("endpoints:\n  - { path: /a, name: a, limits: [{ name: m, max: 5, windw: 60s }] }\n", Path::new("p.yaml"))
///     .unwrap_err();
/// assert!(err.to_string().starts_with("p.yaml:2:"));
/// assert_eq!(err.field(), Some("endpoints[0].limits[0].windw"));
/// ```
pub fn load_str(text: &str, path: &Path) -> Result<Loaded, ConfigError> {
    let file = parse(text, path)?;
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    let rules = compile(&file, path, &base)?;
    Ok(Loaded { file, rules })
}

/// Parses `text` into a [`ConfigFile`] without compiling it.
pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
    let mut field = String::new();
    let options = serde_saphyr::options! { with_snippet: false };
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            field = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| syntax_error(&e, path.to_owned(), field))
}

fn syntax_error(e: &serde_saphyr::Error, file: PathBuf, field: String) -> ConfigError {
    let position = e.location().map(|l| Position {
        line: l.line(),
        column: l.column(),
    });
    let message = e.to_string();
    // The location is reported separately; keep the message to its first line.
    let mut message = message.lines().next().unwrap_or_default();
    if let Some(cut) = message.rfind(" at line ") {
        message = &message[..cut];
    }
    // `Spanned` wrappers (used to locate entries) show up as a `value` path segment.
    let field = field
        .replace(".value.", ".")
        .trim_end_matches(".value")
        .to_owned();
    ConfigError::Syntax {
        file,
        position,
        field: if field.is_empty() || field == "." {
            "(root)".to_owned()
        } else {
            field
        },
        message: message.to_owned(),
    }
}
