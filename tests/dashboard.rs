//! `dashboards/ratelimit.json` is valid JSON, and the metrics it queries are exactly the
//! ones the code emits: [`METRIC_NAMES`], which must in turn list every
//! `counter!`/`gauge!`/`histogram!` name in the workspace's sources.

use std::collections::BTreeSet;
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

/// Names passed to the `metrics` macros in the library sources.
fn emitted() -> BTreeSet<String> {
    let mut files = Vec::new();
    for dir in ["src", "crates/limiter-core/src", "crates/limiter-tower/src"] {
        rust_files(&repo().join(dir), &mut files);
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for macro_call in ["counter!(", "gauge!(", "histogram!("] {
            for (at, _) in text.match_indices(macro_call) {
                let args = text[at + macro_call.len()..].trim_start();
                if let Some(name) = args.strip_prefix('"').and_then(|a| a.split('"').next()) {
                    names.insert(name.to_owned());
                }
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
