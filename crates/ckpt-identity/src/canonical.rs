//! The canonical text of a configuration: what the hyperparameters component hashes, so that
//! key order, YAML vs JSON and the spelling of a number never change a hash.

use ckpt_meta::hash_folder::number_text;
use serde_json::Value;

use crate::Algorithm;

/// Canonical hyperparameters: (`v1` only) the top-level `model` key removed, `ignore` dotted
/// paths removed, object keys sorted recursively. Numbers keep their kind (integer or float);
/// floats are compared by value, so any spelling of the same float is the same value.
pub fn canonical_hparams(v: &Value, ignore: &[String], algorithm: Algorithm) -> Value {
    let mut v = v.clone();
    // v1: the model is identified by the architecture component (its real tensors); its
    // description in a config (`model: {hidden: 16}`) was not counted a second time. v2 keeps
    // it: an activation or a dropout rate is not in the tensors (see `algorithm`).
    if algorithm == Algorithm::V1
        && let Some(m) = v.as_object_mut()
    {
        m.remove("model");
    }
    for path in ignore {
        remove_path(&mut v, path);
    }
    sort_keys(v)
}

/// The canonical text of a value: compact JSON, keys sorted, floats as Python's `repr`
/// (identical to Python's `json.dumps(v, sort_keys=True, separators=(",", ":"),
/// ensure_ascii=False)`).
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_text(n)),
        Value::String(s) => write_str(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(k, out);
                out.push(':');
                if let Some(x) = m.get(k) {
                    write_canonical(x, out);
                }
            }
            out.push('}');
        }
    }
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn sort_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut items: Vec<(String, Value)> = m.into_iter().collect();
            items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            Value::Object(items.into_iter().map(|(k, x)| (k, sort_keys(x))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

/// Remove a dotted path (each part an object key; a number may step into a list; the last
/// part removes an object key; a path that does not exist is skipped).
fn remove_path(v: &mut Value, path: &str) {
    let parts: Vec<&str> = path.split('.').collect();
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parents {
        cur = match cur {
            Value::Object(m) => match m.get_mut(*p) {
                Some(x) => x,
                None => return,
            },
            Value::Array(a) => match p.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(x) => x,
                None => return,
            },
            _ => return,
        };
    }
    if let Value::Object(m) = cur {
        m.shift_remove(*last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_numbers_are_canonical() {
        let a: Value = ckpt_meta::yaml::parse("a: 0.01\nb: 1\nc: 1.0\nd: 100000.0").unwrap();
        let b: Value = ckpt_meta::yaml::parse("d: 1.0e5\nc: 1.0\nb: 1\na: 1e-2").unwrap();
        let c: Value = serde_json::from_str(r#"{"a":1.0e-2,"b":1,"c":1.0,"d":1e5}"#).unwrap();
        for alg in Algorithm::ALL.iter().copied() {
            let ca = canonical_json(&canonical_hparams(&a, &[], alg));
            assert_eq!(ca, r#"{"a":0.01,"b":1,"c":1.0,"d":100000.0}"#);
            assert_eq!(canonical_json(&canonical_hparams(&b, &[], alg)), ca);
            assert_eq!(canonical_json(&canonical_hparams(&c, &[], alg)), ca);
        }
        // An integer and a float of the same value are different values.
        assert_ne!(
            canonical_json(&json!({"x": 1})),
            canonical_json(&json!({"x": 1.0}))
        );
        assert_eq!(
            canonical_json(&json!({"s": "é\"\\\n\u{1}", "f": [1e-5, 1e16, -0.5]})),
            r#"{"f":[1e-05,1e+16,-0.5],"s":"é\"\\\n\u0001"}"#
        );
    }

    #[test]
    fn v1_drops_the_model_key_and_v2_keeps_it() {
        let v = json!({"model": {"act": "relu"}, "lr": 1, "o": {"a": 1, "b": [{"c": 1}]}});
        let ignore = vec!["o.b.0.c".to_owned(), "o.zz.q".to_owned()];
        assert_eq!(
            canonical_hparams(&v, &ignore, Algorithm::V1),
            json!({"lr": 1, "o": {"a": 1, "b": [{}]}})
        );
        assert_eq!(
            canonical_hparams(&v, &ignore, Algorithm::V2),
            json!({"lr": 1, "model": {"act": "relu"}, "o": {"a": 1, "b": [{}]}})
        );
    }
}
