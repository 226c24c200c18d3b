//! Config files beside checkpoints: Hydra's `.hydra/config.yaml`, `<stem>.config.yaml|json`
//! sidecars, Lightning's `hparams.yaml`. Interpolations (`${a.b}`, `${..x}`) are resolved
//! within the file, the way OmegaConf would for plain references; resolvers
//! (`${oc.env:HOME}`, `${now:%Y}`) are left as written.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::yaml;

/// A config file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

/// Read a YAML or JSON config file into a value, interpolations resolved.
pub fn read_config(path: &Path) -> Result<Value, ConfigError> {
    let err = |m: String| ConfigError {
        path: path.to_path_buf(),
        message: m,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > yaml::MAX_YAML_BYTES as u64 {
        return Err(err(format!("larger than {} bytes", yaml::MAX_YAML_BYTES)));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let v = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| err(format!("invalid JSON: {e}")))?
    } else {
        yaml::parse(&text).map_err(|e| err(e.message))?
    };
    Ok(resolve(&v))
}

/// Look up a dotted path (`model.component_overrides.encoder`; list items by index).
pub fn lookup<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = v;
    if path.is_empty() {
        return Some(cur);
    }
    for part in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

const MAX_RESOLVE_DEPTH: usize = 32;

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

/// Find `.hydra/config.yaml` for a checkpoint: in its folder and each parent up to (and
/// including) `stop`.
pub fn find_hydra_config(checkpoint: &Path, stop: &Path) -> Option<PathBuf> {
    let mut dir = checkpoint.parent();
    while let Some(d) = dir {
        let c = d.join(".hydra").join("config.yaml");
        if c.is_file() {
            return Some(c);
        }
        if d == stop || d.as_os_str().is_empty() {
            break;
        }
        dir = d.parent();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_resolve_with_types() {
        let v = json!({
            "optimizer": {"lr": 0.001, "scheduled_lr": "${optimizer.lr}"},
            "model": {"architecture": "dbnet", "name": "${model.architecture}_v2",
                      "dec": {"out": 128}, "head": {"in": "${model.dec.out}", "sib": "${.in}"}},
            "exp_name": "${model.name}",
            "env": "${oc.env:HOME}",
            "missing": "${nope.x}",
            "cycle_a": "${cycle_b}", "cycle_b": "${cycle_a}"
        });
        let r = resolve(&v);
        assert_eq!(r["optimizer"]["scheduled_lr"], json!(0.001));
        assert_eq!(r["model"]["name"], json!("dbnet_v2"));
        assert_eq!(r["model"]["head"]["in"], json!(128));
        assert_eq!(r["model"]["head"]["sib"], json!(128));
        assert_eq!(r["exp_name"], json!("dbnet_v2"));
        assert_eq!(r["env"], json!("${oc.env:HOME}"));
        assert_eq!(r["missing"], json!("${nope.x}"));
        assert!(r["cycle_a"].is_string());
    }

    #[test]
    fn dotted_lookup() {
        let v = json!({"a": {"b": [1, {"c": 2}]}});
        assert_eq!(lookup(&v, "a.b.1.c"), Some(&json!(2)));
        assert_eq!(lookup(&v, "a.x"), None);
    }
}
