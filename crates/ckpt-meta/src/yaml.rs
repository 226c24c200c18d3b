//! YAML in and out.
//!
//! Reading uses serde-saphyr (budgeted, panic-free) into an ordered `serde_json::Value`.
//! Writing is our own small emitter, because the files must read back identically in the
//! existing Python app, which uses PyYAML (YAML 1.1): strings that YAML 1.1 would resolve to
//! something else (`yes`, `on`, `1e3`, `2025-10-17T22:00:16`, `~`, `'1.0'`) are quoted, keys and
//! values are laid out like the sidecars the app already has (blocks for mappings, flow style
//! for short scalar lists, `{}` for empty mappings, a blank line between top-level sections).

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// A YAML document that did not parse: one line, with position when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// Largest YAML file we read (sidecars are kilobytes; configs rarely more than a few).
pub const MAX_YAML_BYTES: usize = 16 << 20;

/// Most values (mappings, sequences, scalars) in one YAML or JSON document. A `serde_json`
/// value costs tens of bytes before its contents, so this keeps a parsed document within a
/// few tens of megabytes whatever the file claims; real configs hold hundreds to thousands.
pub const MAX_NODES: usize = 250_000;

/// Deepest nesting of mappings/sequences we accept (Hydra configs nest a handful deep).
pub const MAX_DEPTH: usize = 64;

/// The budget serde-saphyr enforces while parsing untrusted YAML: nodes, depth, aliases
/// (a "billion laughs" document expands each alias again, so the node and event caps count
/// the expansion, not the text), scalar bytes and a single document.
fn budget() -> serde_saphyr::Budget {
    let mut b = serde_saphyr::Budget::default();
    b.max_events = 4 * MAX_NODES;
    b.max_aliases = 10_000;
    b.max_anchors = 10_000;
    b.max_recorded_anchor_events = MAX_NODES / 5;
    b.max_recorded_anchor_bytes = MAX_YAML_BYTES;
    b.max_depth = MAX_DEPTH;
    b.max_documents = 4;
    b.max_nodes = MAX_NODES;
    b.max_total_scalar_bytes = MAX_YAML_BYTES;
    b.max_merge_keys = 1_000;
    b
}

/// Parse YAML text into an ordered JSON value. Anchors/aliases are expanded within
/// [`budget`]; non-finite floats are rejected (they do not occur in sidecars).
pub fn parse(text: &str) -> Result<Value, YamlError> {
    if text.len() > MAX_YAML_BYTES {
        return Err(YamlError {
            message: format!("larger than {MAX_YAML_BYTES} bytes"),
            line: None,
            column: None,
        });
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget());
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| {
        let loc = e.location();
        let first = e.to_string();
        let first = first.lines().next().unwrap_or("").trim();
        let first = first.strip_prefix("error: ").unwrap_or(first).to_owned();
        YamlError {
            message: first,
            line: loc.as_ref().map(|l| l.line() as usize),
            column: loc.as_ref().map(|l| l.column() as usize),
        }
    })
}

/// Parse JSON text into an ordered value, with the same size and node caps as YAML. Depth
/// is capped by serde_json's own recursion limit (128); the node count is bounded before
/// parsing by counting the separators and openers outside strings, which is an upper bound
/// on the values the document can hold.
pub fn parse_json(text: &str) -> Result<Value, YamlError> {
    let fail = |message: String, line: Option<usize>, column: Option<usize>| YamlError {
        message,
        line,
        column,
    };
    if text.len() > MAX_YAML_BYTES {
        return Err(fail(
            format!("larger than {MAX_YAML_BYTES} bytes"),
            None,
            None,
        ));
    }
    let nodes = json_node_bound(text.as_bytes());
    if nodes > MAX_NODES {
        return Err(fail(
            format!("holds more than {MAX_NODES} values (budget)"),
            None,
            None,
        ));
    }
    serde_json::from_str(text).map_err(|e| fail(e.to_string(), Some(e.line()), Some(e.column())))
}

/// An upper bound on the number of values in a JSON text: one, plus one per `,`, `[`, `{`
/// and `:` outside string literals.
fn json_node_bound(b: &[u8]) -> usize {
    let mut n = 1usize;
    let mut in_str = false;
    let mut escaped = false;
    for &c in b {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_str = false;
            }
        } else {
            match c {
                b'"' => in_str = true,
                b',' | b'[' | b'{' | b':' => n += 1,
                _ => {}
            }
        }
    }
    n
}

/// YAML 1.1 words PyYAML resolves to booleans or null.
const SPECIAL_WORDS: &[&str] = &[
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
    "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~",
];

/// Whether a string can be written without quotes and still read back as the same string by
/// PyYAML (YAML 1.1) and by YAML 1.2 parsers.
fn plain_ok(s: &str) -> bool {
    if s.is_empty() || SPECIAL_WORDS.contains(&s) {
        return false;
    }
    let first = s.as_bytes()[0];
    // Must start like an identifier or a path; anything starting with a digit, sign or dot
    // could be a number, a date or a time in YAML 1.1 (sexagesimal `1:20`, `1_000`).
    if !(first.is_ascii_alphabetic() || first == b'_' || first == b'/') {
        return false;
    }
    if s.ends_with(' ') || s.ends_with(':') {
        return false;
    }
    // A conservative character set: no indicators that could start flow collections,
    // comments, anchors, tags, or `: ` mapping separators.
    s.chars().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '=' | '+' | '(' | ')')
    }) && !s.contains(": ")
        && !looks_like_float(s)
}

/// YAML 1.1 floats like `.inf`, `.nan` are excluded by the first-char rule; this catches the
/// rest of what PyYAML's float resolver would take (none start with a letter), kept for safety.
fn looks_like_float(s: &str) -> bool {
    s.parse::<f64>().is_ok()
}

/// A string as a YAML scalar: plain when safe, else single-quoted (`'` doubled), or
/// double-quoted with escapes when it has control characters or line breaks.
pub fn scalar_str(s: &str) -> String {
    if plain_ok(s) {
        return s.to_owned();
    }
    if s.chars().any(|c| c.is_control()) {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
        return out;
    }
    format!("'{}'", s.replace('\'', "''"))
}

/// A number as YAML: integers as written; floats in a form both YAML 1.1 and 1.2 read as
/// floats (`1.0e-05`, never `1e-05`, which PyYAML would read as a string).
fn scalar_num(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            ".inf".into()
        } else {
            "-.inf".into()
        };
    }
    let r = ckpt_torch::pyrepr::float_repr(f);
    match r.split_once('e') {
        // PyYAML needs a dot in the mantissa and a sign in the exponent.
        Some((m, e)) => {
            let m = if m.contains('.') {
                m.to_owned()
            } else {
                format!("{m}.0")
            };
            let e = if e.starts_with('-') || e.starts_with('+') {
                e.to_owned()
            } else {
                format!("+{e}")
            };
            format!("{m}e{e}")
        }
        None => r,
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => scalar_num(n),
        Value::String(s) => scalar_str(s),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        other => flow(other),
    }
}

fn is_scalar(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => true,
    }
}

/// Flow style for a short list of scalars: `[16, 24, 48, 96]`.
fn flow(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("[{}]", a.iter().map(flow).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", scalar_str(k), flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => scalar(other),
    }
}

fn short_scalar_list(a: &[Value]) -> bool {
    a.iter().all(is_scalar) && a.len() <= 16 && flow(&Value::Array(a.to_vec())).len() <= 80
}

/// The longest key written as an implicit key (YAML's limit is 1,024 characters, quotes
/// included).
const MAX_IMPLICIT_KEY: usize = 1000;

fn emit_map(out: &mut String, m: &Map<String, Value>, indent: usize, blank_between: bool) {
    let pad = "  ".repeat(indent);
    let mut first = true;
    for (k, v) in m {
        if blank_between && !first && !is_scalar(v) {
            out.push('\n');
        }
        let key = scalar_str(k);
        // YAML allows an implicit key (`key: value`) of at most 1,024 characters; a longer one
        // (from a hostile or odd config) is written as an explicit key, `? key` then `: value`,
        // so that what ckpt writes always reads back.
        let key_line = if key.chars().count() > MAX_IMPLICIT_KEY {
            format!("{pad}? {key}\n{pad}")
        } else {
            format!("{pad}{key}")
        };
        match v {
            Value::Object(o) if !o.is_empty() => {
                let _ = writeln!(out, "{key_line}:");
                emit_map(out, o, indent + 1, false);
            }
            Value::Array(a) if !a.is_empty() && !short_scalar_list(a) => {
                let _ = writeln!(out, "{key_line}:");
                emit_seq(out, a, indent + 1);
            }
            other => {
                let _ = writeln!(out, "{key_line}: {}", scalar(other));
            }
        }
        first = false;
    }
}

fn emit_seq(out: &mut String, a: &[Value], indent: usize) {
    let pad = "  ".repeat(indent);
    for v in a {
        match v {
            Value::Object(o) if !o.is_empty() => {
                // `- key: value` then the rest indented under it.
                let mut inner = String::new();
                emit_map(&mut inner, o, indent + 1, false);
                let trimmed = inner.trim_start();
                let _ = write!(out, "{pad}- {trimmed}");
            }
            Value::Array(inner) if !inner.is_empty() => {
                let _ = writeln!(out, "{pad}- {}", flow(v));
            }
            other => {
                let _ = writeln!(out, "{pad}- {}", scalar(other));
            }
        }
    }
}

/// Write a mapping as a YAML document in the sidecar layout (blank line before each
/// top-level section).
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) => emit_map(&mut out, m, 0, true),
        Value::Array(a) => emit_seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_longer_than_yaml_allows_implicitly_round_trip() {
        // Found by the `sidecar` fuzzer: a key over 1,024 characters written as `key: value`
        // made the sidecar unreadable. Scalar, mapping and list values under such keys.
        let long = format!("k{}\t\"", " ".repeat(1200));
        let v = json!({
            "a": 1,
            long.clone(): "scalar",
            "nested": {long.clone(): {"x": [1, 2], long.clone(): [{"y": 1}, {"z": [1, 2, 3]}]}},
            "list": [{long.clone(): 3, "w": 4}],
        });
        let text = to_yaml(&v);
        assert!(text.contains("? "), "{text}");
        let back = parse(&text).unwrap();
        assert_eq!(back, v, "{text}");
    }

    #[test]
    fn strings_that_yaml_11_would_misread_are_quoted() {
        for s in [
            "1.0",
            "yes",
            "on",
            "No",
            "~",
            "",
            "2025-10-17T22:00:16.030374",
            "1e3",
            "0x1f",
            "-1",
            ".inf",
            "a: b",
            "#x",
            "*a",
            "x ",
        ] {
            let q = scalar_str(s);
            assert!(q.starts_with('\'') || q.starts_with('"'), "{s:?} -> {q}");
        }
        for s in [
            "dbnet",
            "val/hmean",
            "my_experiment/checkpoints/best.ckpt",
            "epoch=01-step=4-hmean=0.7445.ckpt",
            "pan_decoder",
        ] {
            assert_eq!(scalar_str(s), s);
        }
        assert_eq!(scalar_str("it's"), "'it''s'");
        assert_eq!(scalar_str("a\nb"), "\"a\\nb\"");
    }

    #[test]
    fn floats_read_back_as_floats_in_yaml_11() {
        assert_eq!(
            scalar_num(&serde_json::Number::from_f64(1e-5).unwrap()),
            "1.0e-05"
        );
        assert_eq!(
            scalar_num(&serde_json::Number::from_f64(0.77).unwrap()),
            "0.77"
        );
        assert_eq!(
            scalar_num(&serde_json::Number::from_f64(2.5e20).unwrap()),
            "2.5e+20"
        );
        assert_eq!(
            scalar_num(&serde_json::Number::from_f64(3.0).unwrap()),
            "3.0"
        );
    }

    #[test]
    fn round_trip() {
        let v = json!({
            "schema_version": "1.0",
            "training": {"epoch": 0, "global_step": 205, "training_phase": "training"},
            "model": {"decoder": {"in_channels": [16, 24, 48, 96], "params": {}}},
            "metrics": {"hmean": 0.77, "validation_loss": null, "additional_metrics": {"val/hmean": 0.77}},
            "list_of_maps": [{"a": 1, "b": [1, 2]}, {"c": "x"}],
            "weird": {"yes": "no", "1": "2025-01-01"},
        });
        let text = to_yaml(&v);
        assert!(text.contains("in_channels: [16, 24, 48, 96]"), "{text}");
        assert!(text.contains("schema_version: '1.0'"), "{text}");
        assert!(text.contains("params: {}"), "{text}");
        assert_eq!(parse(&text).unwrap(), v, "{text}");
    }

    #[test]
    fn billion_laughs_and_deep_nesting_stop_at_the_budget() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let t = std::time::Instant::now();
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("budget"), "{}", e.message);
        assert!(t.elapsed().as_secs_f64() < 1.0);
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&deep).is_err());
        let deep_block: String = (0..200)
            .map(|i| format!("{}k:\n", "  ".repeat(i)))
            .collect();
        assert!(parse(&deep_block).is_err());
    }

    #[test]
    fn json_node_count_is_bounded_before_parsing() {
        let many = format!("[{}0]", "0,".repeat(MAX_NODES));
        let e = parse_json(&many).unwrap_err();
        assert!(e.message.contains("more than"), "{}", e.message);
        assert_eq!(json_node_bound(br#"{"a,b:[{": [1, 2]}"#), 5);
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert!(parse_json(&deep).is_err());
        assert_eq!(parse_json(r#"{"a": [1, "x,y"]}"#).unwrap()["a"][1], "x,y");
    }

    #[test]
    fn parse_errors_have_positions() {
        let e = parse("schema_version: '1.0'\ntraining: [unclosed\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("line 2"), "{}", e.message);
    }
}
