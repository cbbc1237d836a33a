//! The JSON Schema of the policy file, generated from [`ConfigFile`] so that it cannot
//! drift from what the loader accepts. `config/schema.json` is this output, committed
//! for editors; a test keeps the two equal.

use super::model::ConfigFile;

/// The schema as pretty-printed JSON, newline-terminated.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(ConfigFile);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
