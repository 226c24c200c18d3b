//! The `--format json` contract checks shared by the contract tests: a small JSON Schema
//! (draft 2020-12) validator that refuses any keyword it does not know — so nothing in a schema
//! is skipped silently; extend it when a schema needs more — and [`holds`], the three promises
//! every command's JSON output keeps (see `tests/contract.rs`).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ckpt;

// ---------------------------------------------------------------------------- the validator

/// Where `instance` breaks `schema` (empty when it validates). `root` resolves `$ref`s.
pub fn violations(schema: &Value, instance: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(schema, schema, instance, "$", &mut out);
    out
}

/// Keywords that only annotate (they never reject an instance).
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$defs",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

fn check(root: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    let obj = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => {
            out.push(format!("{at}: no value is allowed here"));
            return;
        }
        Value::Object(o) => o,
        other => panic!("{at}: not a schema: {other}"),
    };
    for (k, s) in obj {
        match k.as_str() {
            k if ANNOTATIONS.contains(&k) => {}
            "$ref" => {
                let target = resolve(root, s.as_str().unwrap());
                check(root, target, v, at, out);
            }
            "type" => {
                let types: Vec<&str> = match s {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
                    other => panic!("{at}: bad type keyword {other}"),
                };
                if !types.iter().any(|t| is_type(v, t)) {
                    out.push(format!("{at}: {v} is not of type {types:?}"));
                }
            }
            "enum" => {
                if !s.as_array().unwrap().contains(v) {
                    out.push(format!("{at}: {v} is not one of {s}"));
                }
            }
            "const" => {
                if s != v {
                    out.push(format!("{at}: {v} is not {s}"));
                }
            }
            "properties" => {
                if let Value::Object(m) = v {
                    for (name, sub) in s.as_object().unwrap() {
                        if let Some(x) = m.get(name) {
                            check(root, sub, x, &format!("{at}.{name}"), out);
                        }
                    }
                }
            }
            "required" => {
                if let Value::Object(m) = v {
                    for name in s.as_array().unwrap() {
                        let name = name.as_str().unwrap();
                        if !m.contains_key(name) {
                            out.push(format!("{at}: required field {name} is missing"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Value::Object(m) = v {
                    let known = obj.get("properties").and_then(Value::as_object);
                    for (name, x) in m {
                        if known.is_some_and(|p| p.contains_key(name)) {
                            continue;
                        }
                        if *s == Value::Bool(false) {
                            out.push(format!("{at}: field {name} is not in the schema"));
                        } else {
                            check(root, s, x, &format!("{at}.{name}"), out);
                        }
                    }
                }
            }
            "items" => {
                // Past the `prefixItems` (a tuple's positions), every element.
                let skip = obj
                    .get("prefixItems")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                if let Value::Array(a) = v {
                    for (i, x) in a.iter().enumerate().skip(skip) {
                        check(root, s, x, &format!("{at}[{i}]"), out);
                    }
                }
            }
            "prefixItems" => {
                if let Value::Array(a) = v {
                    for (i, (sub, x)) in s.as_array().unwrap().iter().zip(a).enumerate() {
                        check(root, sub, x, &format!("{at}[{i}]"), out);
                    }
                }
            }
            "minItems" | "maxItems" => {
                if let Value::Array(a) = v {
                    let n = s.as_u64().unwrap() as usize;
                    if (k == "minItems" && a.len() < n) || (k == "maxItems" && a.len() > n) {
                        out.push(format!("{at}: {} items ({k} {n})", a.len()));
                    }
                }
            }
            "uniqueItems" => {
                if let Value::Array(a) = v
                    && *s == Value::Bool(true)
                {
                    for (i, x) in a.iter().enumerate() {
                        if a[..i].contains(x) {
                            out.push(format!("{at}[{i}]: {x} repeats an earlier item"));
                        }
                    }
                }
            }
            "minLength" | "maxLength" => {
                if let Value::String(t) = v {
                    let n = s.as_u64().unwrap() as usize;
                    let len = t.chars().count();
                    if (k == "minLength" && len < n) || (k == "maxLength" && len > n) {
                        out.push(format!("{at}: string of {len} characters ({k} {n})"));
                    }
                }
            }
            "pattern" => {
                if let Value::String(t) = v {
                    use predicates::Predicate;
                    let re = predicates::str::is_match(s.as_str().unwrap())
                        .unwrap_or_else(|e| panic!("{at}: bad pattern {s}: {e}"));
                    if !re.eval(t.as_str()) {
                        out.push(format!("{at}: {v} does not match {s}"));
                    }
                }
            }
            "allOf" => {
                for sub in s.as_array().unwrap() {
                    check(root, sub, v, at, out);
                }
            }
            "exclusiveMinimum" | "exclusiveMaximum" => {
                if let Some(x) = v.as_f64() {
                    let bound = s.as_f64().unwrap();
                    if (k == "exclusiveMinimum" && x <= bound)
                        || (k == "exclusiveMaximum" && x >= bound)
                    {
                        out.push(format!("{at}: {v} is out of range ({k} {s})"));
                    }
                }
            }
            "anyOf" | "oneOf" => {
                let matching = s
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|sub| violations_under(root, sub, v, at).is_empty())
                    .count();
                let ok = if k == "anyOf" {
                    matching >= 1
                } else {
                    matching == 1
                };
                if !ok {
                    out.push(format!("{at}: {matching} of the {k} alternatives match"));
                }
            }
            "minimum" | "maximum" => {
                if let Some(x) = v.as_f64() {
                    let bound = s.as_f64().unwrap();
                    if (k == "minimum" && x < bound) || (k == "maximum" && x > bound) {
                        out.push(format!("{at}: {v} is out of range ({k} {s})"));
                    }
                }
            }
            // schemars names the Rust integer type; the range is in minimum/maximum.
            "format" => {
                let f = s.as_str().unwrap();
                assert!(
                    [
                        "uint", "uint8", "uint16", "uint32", "uint64", "int64", "int32", "double"
                    ]
                    .contains(&f),
                    "{at}: the validator does not know format {f}"
                );
                if f.starts_with("uint") && v.is_number() && v.as_u64().is_none() {
                    out.push(format!("{at}: {v} is not an unsigned integer"));
                }
            }
            other => panic!("{at}: the validator does not know keyword {other}"),
        }
    }
}

fn violations_under(root: &Value, schema: &Value, v: &Value, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    check(root, schema, v, at, &mut out);
    out
}

fn resolve<'a>(root: &'a Value, r: &str) -> &'a Value {
    let name = r
        .strip_prefix("#/$defs/")
        .unwrap_or_else(|| panic!("unsupported $ref {r}"));
    root.get("$defs")
        .and_then(|d| d.get(name))
        .unwrap_or_else(|| panic!("$ref {r} names no definition"))
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        other => panic!("unknown type {other}"),
    }
}

// ---------------------------------------------------------------------------- the contract

pub fn schema(name: &str) -> Value {
    let out = ckpt().args(["schema", name]).output().unwrap();
    assert!(out.status.success(), "ckpt schema {name} failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Run `ckpt ARGS` (a command with `--format json`); its stdout, whatever the exit code (1 and
/// 2 still print every record they have).
pub fn json_stdout(args: &[&str]) -> String {
    let out = ckpt().args(args).output().unwrap();
    let code = out.status.code();
    assert!(
        matches!(code, Some(0..=2)),
        "ckpt {args:?} exited {code:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The three promises of the module docs, for `stdout` of the command whose schema is `name`
/// and whose typed output is `T`. Returns the parsed output.
pub fn holds<T: Serialize + DeserializeOwned>(name: &str, stdout: &str) -> T {
    let schema = schema(name);
    let value: Value = serde_json::from_str(stdout).unwrap();
    let bad = violations(&schema, &value);
    assert!(
        bad.is_empty(),
        "{name}: output breaks its schema:\n{}",
        bad.join("\n")
    );
    let typed: T = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("{name}: output does not parse into its types: {e}"));
    let mut again = serde_json::to_string_pretty(&typed).unwrap();
    again.push('\n');
    assert!(
        again == stdout,
        "{name}: output is not what its types serialize to (a field written outside them?)"
    );
    typed
}
