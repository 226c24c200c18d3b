//! The resolver as it was before it had a budget (commit 4c3cae1), kept for tests only: on
//! configs small enough for it, the budgeted, memoized resolver must give the same values.

const MAX_RESOLVE_DEPTH: usize = 32;
use super::lookup;
use serde_json::Value;

/// Resolve `${...}` references inside every string of `root` (bounded: reference chains
/// longer than 32 and cycles stay as written).
pub fn resolve(root: &Value) -> Value {
    fn walk(root: &Value, v: &Value, path: &mut Vec<String>) -> Value {
        match v {
            Value::Object(m) => {
                let mut out = serde_json::Map::with_capacity(m.len());
                for (k, x) in m {
                    path.push(k.clone());
                    out.insert(k.clone(), walk(root, x, path));
                    path.pop();
                }
                Value::Object(out)
            }
            Value::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for (i, x) in a.iter().enumerate() {
                    path.push(i.to_string());
                    out.push(walk(root, x, path));
                    path.pop();
                }
                Value::Array(out)
            }
            Value::String(s) if s.contains("${") => interpolate(root, s, path, 0),
            other => other.clone(),
        }
    }
    let mut path = Vec::new();
    walk(root, root, &mut path)
}

#[allow(dead_code)]
/// Absolute dotted path of a reference written at `at` (the path of the value holding it).
fn target_path(reference: &str, at: &[String]) -> Option<String> {
    let dots = reference.chars().take_while(|c| *c == '.').count();
    if dots == 0 {
        return Some(reference.to_owned());
    }
    // `${.x}`: sibling of the value (same parent); each further dot goes one level up.
    let parent_len = at.len().checked_sub(dots)?;
    let mut parts: Vec<&str> = at[..parent_len].iter().map(String::as_str).collect();
    let rest = &reference[dots..];
    if !rest.is_empty() {
        parts.push(rest);
    }
    Some(parts.join("."))
}

fn interpolate(root: &Value, s: &str, at: &[String], depth: usize) -> Value {
    if depth > MAX_RESOLVE_DEPTH {
        return Value::String(s.to_owned());
    }
    // A string that is exactly one reference takes the referenced value's type.
    if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
        && !inner.contains("${")
        && !inner.contains('}')
    {
        return match resolve_ref(root, inner, at, depth) {
            Some(v) => v,
            None => Value::String(s.to_owned()),
        };
    }
    // Otherwise substitute each reference into the text.
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Value::String(out);
        };
        let inner = &after[..end];
        match resolve_ref(root, inner, at, depth) {
            Some(Value::String(t)) => out.push_str(&t),
            Some(Value::Null) => out.push_str("None"),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => {
                let t = match &v {
                    Value::Bool(true) => "True".to_owned(),
                    Value::Bool(false) => "False".to_owned(),
                    other => other.to_string(),
                };
                out.push_str(&t);
            }
            _ => {
                out.push_str("${");
                out.push_str(inner);
                out.push('}');
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Value::String(out)
}

fn resolve_ref(root: &Value, inner: &str, at: &[String], depth: usize) -> Option<Value> {
    if inner.contains(':') || inner.is_empty() {
        return None; // a resolver call (oc.env:, now:): not ours to run
    }
    let target = target_path(inner, at)?;
    let v = lookup(root, &target)?;
    let tp: Vec<String> = target.split('.').map(str::to_owned).collect();
    Some(match v {
        Value::String(s) if s.contains("${") => interpolate(root, s, &tp, depth + 1),
        Value::Object(_) | Value::Array(_) => {
            // Resolve inside the referenced subtree too (bounded by depth through strings).
            let mut sub = v.clone();
            resolve_in_place(root, &mut sub, &mut tp.clone(), depth + 1);
            sub
        }
        other => other.clone(),
    })
}

fn resolve_in_place(root: &Value, v: &mut Value, path: &mut Vec<String>, depth: usize) {
    if depth > MAX_RESOLVE_DEPTH {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                path.push(k.clone());
                resolve_in_place(root, x, path, depth);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                path.push(i.to_string());
                resolve_in_place(root, x, path, depth);
                path.pop();
            }
        }
        Value::String(s) if s.contains("${") => {
            *v = interpolate(root, &s.clone(), path, depth);
        }
        _ => {}
    }
}
