//! The policy loader on hostile files: the shipped policy files (config/reference.yaml,
//! config/demo.yaml) with bytes and lines deleted, duplicated, swapped or replaced, and
//! field values replaced by arbitrary text. Whatever the file holds, loading answers a
//! policy or a `ConfigError` that names the file (and, for YAML that cannot be read,
//! the line and column), never a panic. The fuzz target `policy_yaml` (fuzz/) does the
//! same without bounds; this is the part every test run checks.

use std::path::{Path, PathBuf};

use limiter_tower::config::{load_str, ConfigError};
use proptest::prelude::*;
use proptest::sample::select;

const REFERENCE: &str = include_str!("../../../config/reference.yaml");
const DEMO: &str = include_str!("../../../config/demo.yaml");

/// Where the reference file lives, so that the key files it names resolve.
fn reference_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/reference.yaml")
}

/// The environment the shipped files expect (their HMAC secrets).
fn set_env() {
    std::env::set_var("JWT_SECRET", "mutation-test-secret");
    std::env::set_var("DEMO_JWT_SECRET", "mutation-test-secret");
}

/// Loads `text` and checks that a refusal is a located, named `ConfigError`.
fn check(text: &str) -> Result<(), TestCaseError> {
    set_env();
    let path = reference_path();
    let Err(e) = load_str(text, &path) else {
        return Ok(());
    };
    let shown = e.to_string();
    prop_assert!(
        shown.starts_with(&path.display().to_string()),
        "{shown}: does not name the file"
    );
    prop_assert!(
        e.field().is_some_and(|f| !f.is_empty()),
        "{shown}: no field"
    );
    if let ConfigError::Syntax { position, .. } = &e {
        let Some(position) = position else {
            return Err(TestCaseError::fail(format!("{shown}: no position")));
        };
        let lines = text.lines().count() as u64;
        prop_assert!(
            position.line >= 1 && position.line <= lines + 1 && position.column >= 1,
            "{shown}: position outside a file of {lines} lines"
        );
    }
    Ok(())
}

/// One edit of a file's bytes, at positions given as fractions of its length.
#[derive(Debug, Clone)]
enum Edit {
    Delete(f64, usize),
    Duplicate(f64, usize),
    Replace(f64, u8),
    Insert(f64, String),
}

/// Bytes that mean something to YAML or to the loader, and arbitrary ones.
fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        select(b":-[]{}\"'#&*!|>%@`,?\n\t 0123456789.e_$".to_vec()),
        any::<u8>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = 0.0..1.0f64;
    prop_oneof![
        (at.clone(), 1..64usize).prop_map(|(at, n)| Edit::Delete(at, n)),
        (at.clone(), 1..256usize).prop_map(|(at, n)| Edit::Duplicate(at, n)),
        (at.clone(), byte()).prop_map(|(at, b)| Edit::Replace(at, b)),
        (at, snippet()).prop_map(|(at, s)| Edit::Insert(at, s)),
    ]
}

/// YAML that changes structure: anchors, aliases, tags, flow collections, block
/// scalars, huge or negative numbers, `${VAR}` references.
fn snippet() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "&a ",
            "*a",
            "!!binary ",
            "!custom ",
            "[",
            "]",
            "{",
            "}",
            "- ",
            ": ",
            "? ",
            "|\n",
            ">-\n",
            "\"\\u00",
            "'",
            "18446744073709551616",
            "-1",
            "1e308",
            "0x",
            ".nan",
            "${UNSET_MUTATION_VAR}",
            "${",
            "~",
            "<<: *a\n",
            "\u{feff}",
            "\0",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,12}",
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for edit in edits {
        let at = |f: f64| ((bytes.len() as f64 * f) as usize).min(bytes.len());
        match edit {
            Edit::Delete(f, n) => {
                let start = at(*f);
                let end = (start + n).min(bytes.len());
                bytes.drain(start..end);
            }
            Edit::Duplicate(f, n) => {
                let start = at(*f);
                let end = (start + n).min(bytes.len());
                let copy = bytes[start..end].to_vec();
                bytes.splice(end..end, copy);
            }
            Edit::Replace(f, b) => {
                let i = at(*f);
                if i < bytes.len() {
                    bytes[i] = *b;
                }
            }
            Edit::Insert(f, s) => {
                let i = at(*f);
                bytes.splice(i..i, s.bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One edit of a file's lines, at positions given as fractions of their count.
#[derive(Debug, Clone)]
enum LineEdit {
    Delete(f64),
    Duplicate(f64),
    Swap(f64, f64),
    Indent(f64, usize),
    Dedent(f64),
}

fn line_edit() -> impl Strategy<Value = LineEdit> {
    let at = || 0.0..1.0f64;
    prop_oneof![
        at().prop_map(LineEdit::Delete),
        at().prop_map(LineEdit::Duplicate),
        (at(), at()).prop_map(|(a, b)| LineEdit::Swap(a, b)),
        (at(), 1..5usize).prop_map(|(a, n)| LineEdit::Indent(a, n)),
        at().prop_map(LineEdit::Dedent),
    ]
}

fn apply_lines(text: &str, edits: &[LineEdit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for edit in edits {
        if lines.is_empty() {
            break;
        }
        let at = |f: f64| ((lines.len() as f64 * f) as usize).min(lines.len() - 1);
        match edit {
            LineEdit::Delete(f) => {
                lines.remove(at(*f));
            }
            LineEdit::Duplicate(f) => {
                let i = at(*f);
                lines.insert(i, lines[i].clone());
            }
            LineEdit::Swap(a, b) => {
                let (a, b) = (at(*a), at(*b));
                lines.swap(a, b);
            }
            LineEdit::Indent(f, n) => {
                let i = at(*f);
                lines[i].insert_str(0, &" ".repeat(*n));
            }
            LineEdit::Dedent(f) => {
                let i = at(*f);
                lines[i] = lines[i].trim_start().to_owned();
            }
        }
    }
    lines.join("\n")
}

/// Replaces the value of the `nth` `key: value` line (counting only such lines) with
/// `value`, keeping the key: every field of the file gets arbitrary text.
fn replace_value(text: &str, nth: usize, value: &str) -> String {
    let fields: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim_start();
            !l.starts_with('#') && l.split_once(": ").is_some()
        })
        .map(|(i, _)| i)
        .collect();
    let Some(target) = fields.get(nth % fields.len().max(1)) else {
        return text.to_owned();
    };
    text.lines()
        .enumerate()
        .map(|(i, line)| match line.split_once(": ") {
            Some((key, _)) if i == *target => format!("{key}: {value}"),
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Values: what a field of each type could hold, mistyped, and arbitrary text.
fn field_value() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "0",
            "-5",
            "4294967296",
            "99999999999999999999",
            "0s",
            "1x",
            "100000000000d",
            "1.5",
            "true",
            "null",
            "[]",
            "{}",
            "\"\"",
            "10.0.0.0/33",
            "::/129",
            "300.1.1.1",
            "bogus",
            "GET POST",
            "/{",
            "/{a}/{a}",
            "HS999",
            "${UNSET_MUTATION_VAR}",
            "*undefined_alias",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,40}",
        any::<String>(),
    ]
}

fn shipped() -> impl Strategy<Value = &'static str> {
    select(vec![REFERENCE, DEMO])
}

#[test]
fn the_shipped_files_load_unchanged() {
    set_env();
    for text in [REFERENCE, DEMO] {
        load_str(text, &reference_path()).unwrap_or_else(|e| panic!("{e}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn bytes_deleted_duplicated_or_replaced(
        text in shipped(),
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        check(&apply(text, &edits))?;
    }

    #[test]
    fn lines_deleted_duplicated_swapped_or_reindented(
        text in shipped(),
        edits in proptest::collection::vec(line_edit(), 1..6),
    ) {
        check(&apply_lines(text, &edits))?;
    }

    #[test]
    fn any_field_holding_any_value(
        text in shipped(),
        changes in proptest::collection::vec((any::<usize>(), field_value()), 1..4),
    ) {
        let mut text = text.to_owned();
        for (nth, value) in &changes {
            text = replace_value(&text, *nth, value);
        }
        check(&text)?;
    }

    #[test]
    fn any_text_at_all(text in prop_oneof!["\\PC{0,200}", any::<String>()]) {
        check(&text)?;
    }
}
