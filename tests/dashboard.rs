//! `dashboards/ratelimit.json` is valid JSON, and the metrics it queries are exactly the
//! ones the code emits: [`METRIC_NAMES`], which must in turn list every
//! `counter!`/`gauge!`/`histogram!` name in the workspace's sources (a literal, or a
//! constant of `limiter_core::metric_names` / `limiter_tower::metric_names`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use limiter::telemetry::METRIC_NAMES;
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `ratelimit_*` identifier in `text`, with histogram series suffixes removed.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("ratelimit_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(base.to_owned());
        rest = &tail[end..];
    }
    names
}

fn exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `pub const NAME: &str = "value";` items of a `metric_names.rs`, by name.
fn constants(crate_dir: &str) -> BTreeMap<String, String> {
    let file = repo().join(crate_dir).join("src/metric_names.rs");
    let text = std::fs::read_to_string(&file).unwrap();
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("pub const "))
        .filter_map(|item| {
            let (name, value) = item.split_once(": &str = \"")?;
            Some((name.to_owned(), value.strip_suffix("\";")?.to_owned()))
        })
        .collect()
}

/// Names passed to the `metrics` macros in the library sources: string literals, or
/// constants of `limiter_core::metric_names` and `limiter_tower::metric_names`, resolved
/// through those modules' sources.
fn emitted() -> BTreeSet<String> {
    let core = constants("crates/limiter-core");
    let tower = constants("crates/limiter-tower");
    let mut files = Vec::new();
    for dir in ["src", "crates/limiter-core/src", "crates/limiter-tower/src"] {
        rust_files(&repo().join(dir), &mut files);
    }
    let mut names = BTreeSet::new();
    for file in files {
        let in_core = file.starts_with(repo().join("crates/limiter-core"));
        let text = std::fs::read_to_string(&file).unwrap();
        for macro_call in ["counter!(", "gauge!(", "histogram!("] {
            for (at, _) in text.match_indices(macro_call) {
                let args = text[at + macro_call.len()..].trim_start();
                let first = args.split([',', ')']).next().unwrap_or_default().trim();
                let name = if let Some(literal) = first.strip_prefix('"') {
                    literal.split('"').next().map(str::to_owned)
                } else if let Some(name) = first.strip_prefix("limiter_core::metric_names::") {
                    core.get(name).cloned()
                } else if let Some(name) = first.strip_prefix("limiter_tower::metric_names::") {
                    tower.get(name).cloned()
                } else if let Some(name) = first.strip_prefix("crate::metric_names::") {
                    if in_core { &core } else { &tower }.get(name).cloned()
                } else {
                    None
                };
                let name = name.unwrap_or_else(|| {
                    panic!("{}: metric name `{first}` is neither a literal nor a metric_names constant", file.display())
                });
                names.insert(name);
            }
        }
    }
    names
}

#[test]
fn dashboard_is_json_and_queries_only_emitted_metrics() {
    let text = std::fs::read_to_string(repo().join("dashboards/ratelimit.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(dashboard["panels"]
        .as_array()
        .is_some_and(|p| !p.is_empty()));

    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    let queried: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    let listed: BTreeSet<String> = METRIC_NAMES.iter().map(|s| s.to_string()).collect();
    for name in &queried {
        assert!(
            listed.contains(name),
            "the dashboard queries {name}, which nothing emits"
        );
    }
    for name in &listed {
        assert!(queried.contains(name), "no panel shows {name}");
    }
}

#[test]
fn metric_names_lists_exactly_what_the_sources_emit() {
    let emitted = emitted();
    let listed: BTreeSet<String> = METRIC_NAMES.iter().map(|s| s.to_string()).collect();
    assert!(emitted.len() >= 9, "found {emitted:?}");
    assert_eq!(emitted, listed, "METRIC_NAMES is out of date");
}
