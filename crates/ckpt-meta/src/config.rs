//! Config files beside checkpoints: Hydra's `.hydra/config.yaml`, `<stem>.config.yaml|json`
//! sidecars, Lightning's `hparams.yaml`. Interpolations (`${a.b}`, `${..x}`) are resolved
//! within the file, the way OmegaConf would for plain references; resolvers
//! (`${oc.env:HOME}`, `${now:%Y}`) are left as written.
//!
//! Resolution runs on files and pickles we did not write, so it has a budget: a config whose
//! values double at every level (`a1: "${a0}${a0}"`, `a2: "${a1}${a1}"`, …) would otherwise
//! produce 2^n bytes. Reference chains are cut at [`MAX_RESOLVE_DEPTH`] hops (left as
//! written), and the bytes produced per value and per document, and the steps taken, are
//! capped ([`Budget`]); going over is a [`ResolveError`] naming the key being resolved.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::yaml;

/// A config file that could not be read, parsed or resolved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("{}: larger than {limit} bytes", path.display())]
    TooLarge { path: PathBuf, limit: usize },
    #[error("{}: invalid JSON: {message}", path.display())]
    Json { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Yaml { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Resolve {
        path: PathBuf,
        #[source]
        source: ResolveError,
    },
}

impl ConfigError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::Io { path, .. }
            | ConfigError::NotAFile { path }
            | ConfigError::TooLarge { path, .. }
            | ConfigError::Json { path, .. }
            | ConfigError::Yaml { path, .. }
            | ConfigError::Resolve { path, .. } => path,
        }
    }

    /// Whether the file is over one of our budgets (size, interpolation) rather than merely
    /// malformed: callers that skip malformed configs quietly still warn about these.
    pub fn is_budget(&self) -> bool {
        matches!(
            self,
            ConfigError::TooLarge { .. } | ConfigError::Resolve { .. }
        ) || matches!(self, ConfigError::Yaml { message, .. } | ConfigError::Json { message, .. }
                if message.contains("budget") || message.contains("recursion limit"))
    }
}

/// Interpolation that went over its [`Budget`]. `key` is the dotted path of the value being
/// resolved when it happened (`model.name`, `a20`); the caller adds the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("interpolation of `{key}` produces more than {limit} bytes (a reference bomb?)")]
    ValueTooLarge { key: String, limit: usize },
    #[error(
        "interpolations produce more than {limit} bytes in the whole document (stopped at `{key}`)"
    )]
    DocumentTooLarge { key: String, limit: usize },
    #[error("interpolation takes more than {limit} steps (stopped at `{key}`)")]
    TooManySteps { key: String, limit: usize },
}

impl ResolveError {
    /// The same error with `prefix.` in front of its key (`hyper_parameters.a20`), for a
    /// document that is part of a larger one.
    #[must_use]
    pub fn under(mut self, prefix: &str) -> ResolveError {
        let key = match &mut self {
            ResolveError::ValueTooLarge { key, .. }
            | ResolveError::DocumentTooLarge { key, .. }
            | ResolveError::TooManySteps { key, .. } => key,
        };
        *key = if key.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{key}")
        };
        self
    }

    /// The dotted path of the value whose resolution went over budget.
    pub fn key(&self) -> &str {
        match self {
            ResolveError::ValueTooLarge { key, .. }
            | ResolveError::DocumentTooLarge { key, .. }
            | ResolveError::TooManySteps { key, .. } => key,
        }
    }
}

/// Limits on what resolving one document may produce. Real configs resolve a few hundred
/// references into kilobytes; the defaults are orders of magnitude above that and still
/// finish in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes produced while resolving one value (intermediate strings included).
    pub max_value_bytes: usize,
    /// Bytes produced while resolving the whole document.
    pub max_document_bytes: usize,
    /// Nodes visited, copied or looked up (a referenced subtree costs one step per node).
    pub max_steps: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_value_bytes: 1 << 20,
            max_document_bytes: 8 << 20,
            max_steps: 1_000_000,
        }
    }
}

/// Read a YAML or JSON config file into a value, interpolations resolved.
pub fn read_config(path: &Path) -> Result<Value, ConfigError> {
    let v = read_config_raw(path)?;
    resolve(&v).map_err(|source| ConfigError::Resolve {
        path: path.to_path_buf(),
        source,
    })
}

/// Read a YAML or JSON config file into a value, interpolations left as written. The file
/// must be a regular file (a FIFO named `config.yaml` must not block us) no larger than
/// [`yaml::MAX_YAML_BYTES`], checked before anything is read.
pub fn read_config_raw(path: &Path) -> Result<Value, ConfigError> {
    use crate::consulted::read_small_text;
    use ckpt_torch::open::OpenError;
    let p = || path.to_path_buf();
    let text = read_small_text(path, yaml::MAX_YAML_BYTES as u64).map_err(|e| match e {
        OpenError::Io(source) => ConfigError::Io { path: p(), source },
        OpenError::NotAFile { .. } => ConfigError::NotAFile { path: p() },
        OpenError::TooLarge { .. } => ConfigError::TooLarge {
            path: p(),
            limit: yaml::MAX_YAML_BYTES,
        },
    })?;
    if path.extension().is_some_and(|e| e == "json") {
        yaml::parse_json(&text).map_err(|e| ConfigError::Json {
            path: p(),
            message: e.message,
        })
    } else {
        yaml::parse(&text).map_err(|e| ConfigError::Yaml {
            path: p(),
            message: e.message,
        })
    }
}
/// Read a config that Lightning may have written with `!!python/...` tags (`hparams.yaml`
/// for a Namespace or an AttributeDict): read as is first; when that does not parse and the
/// text has such tags, read again with the tags dropped (the tagged mappings and lists stay).
/// A resolution budget error is never retried.
pub fn read_config_python_tags_dropped(path: &Path) -> Result<Value, ConfigError> {
    match read_config(path) {
        Ok(v) => Ok(v),
        Err(e @ ConfigError::Yaml { .. }) => {
            let Ok(text) = crate::consulted::read_small_text(path, yaml::MAX_YAML_BYTES as u64)
            else {
                return Err(e);
            };
            if !text.contains("!!python/") {
                return Err(e);
            }
            let v = yaml::parse(&drop_python_tags(&text)).map_err(|_| e)?;
            resolve(&v).map_err(|source| ConfigError::Resolve {
                path: path.to_path_buf(),
                source,
            })
        }
        Err(e) => Err(e),
    }
}

/// `text` with every `!!python/...` tag (up to the next whitespace) removed.
pub fn drop_python_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("!!python/") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let end = after
            .find(|c: char| c.is_whitespace())
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
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

/// Reference chains longer than this stay as written (cycles too).
pub const MAX_RESOLVE_DEPTH: usize = 32;

/// Resolve `${...}` references inside every string of `root` within the default [`Budget`].
pub fn resolve(root: &Value) -> Result<Value, ResolveError> {
    resolve_with(root, Budget::default())
}

/// Resolve `${...}` references inside every string of `root` (reference chains longer than
/// [`MAX_RESOLVE_DEPTH`] and cycles stay as written); going over `budget` is an error naming
/// the value being resolved. The walk recurses on the value's nesting, which the readers
/// bound before a value gets here (YAML 64 levels, JSON 128, pickled values 64).
pub fn resolve_with(root: &Value, budget: Budget) -> Result<Value, ResolveError> {
    let mut r = Resolver {
        root,
        budget,
        steps: 0,
        doc_bytes: 0,
        value_bytes: 0,
        key: Vec::new(),
        memo: std::collections::HashMap::new(),
        truncated: 0,
    };
    let mut path = Vec::new();
    r.walk(root, &mut path)
}

/// One resolution's state: what it has spent so far, and the value it is working on (for the
/// error message).
struct Resolver<'a> {
    root: &'a Value,
    budget: Budget,
    steps: usize,
    doc_bytes: usize,
    value_bytes: usize,
    key: Vec<String>,
    /// Resolved values of referenced paths: a path referenced many times is resolved once
    /// (its copies are still paid for), so work grows with the output, not with 2^depth.
    memo: std::collections::HashMap<String, Value>,
    /// How many times a chain was cut at [`MAX_RESOLVE_DEPTH`]: a result computed while this
    /// grew depends on the depth it started at and is not memoized.
    truncated: usize,
}

impl Resolver<'_> {
    fn key(&self) -> String {
        self.key.join(".")
    }

    fn step(&mut self, n: usize) -> Result<(), ResolveError> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > self.budget.max_steps {
            return Err(ResolveError::TooManySteps {
                key: self.key(),
                limit: self.budget.max_steps,
            });
        }
        Ok(())
    }

    /// Charge `n` bytes of output, before producing them.
    fn produce(&mut self, n: usize) -> Result<(), ResolveError> {
        self.value_bytes = self.value_bytes.saturating_add(n);
        self.doc_bytes = self.doc_bytes.saturating_add(n);
        if self.value_bytes > self.budget.max_value_bytes {
            return Err(ResolveError::ValueTooLarge {
                key: self.key(),
                limit: self.budget.max_value_bytes,
            });
        }
        if self.doc_bytes > self.budget.max_document_bytes {
            return Err(ResolveError::DocumentTooLarge {
                key: self.key(),
                limit: self.budget.max_document_bytes,
            });
        }
        Ok(())
    }

    /// Charge for a copy of `v`: one step per node, its strings as bytes produced.
    fn charge_copy(&mut self, v: &Value) -> Result<(), ResolveError> {
        self.step(1)?;
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    self.produce(k.len())?;
                    self.charge_copy(x)?;
                }
            }
            Value::Array(a) => {
                for x in a {
                    self.charge_copy(x)?;
                }
            }
            Value::String(s) => self.produce(s.len())?,
            _ => {}
        }
        Ok(())
    }

    fn walk(&mut self, v: &Value, path: &mut Vec<String>) -> Result<Value, ResolveError> {
        self.step(1)?;
        Ok(match v {
            Value::Object(m) => {
                let mut out = serde_json::Map::with_capacity(m.len());
                for (k, x) in m {
                    path.push(k.clone());
                    let r = self.walk(x, path);
                    path.pop();
                    out.insert(k.clone(), r?);
                }
                Value::Object(out)
            }
            Value::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for (i, x) in a.iter().enumerate() {
                    path.push(i.to_string());
                    let r = self.walk(x, path);
                    path.pop();
                    out.push(r?);
                }
                Value::Array(out)
            }
            Value::String(s) if s.contains("${") => {
                self.key.clone_from(path);
                self.value_bytes = 0;
                self.interpolate(s, path, 0)?
            }
            other => other.clone(),
        })
    }

    fn interpolate(&mut self, s: &str, at: &[String], depth: usize) -> Result<Value, ResolveError> {
        self.step(1)?;
        if depth > MAX_RESOLVE_DEPTH {
            self.truncated += 1;
            self.produce(s.len())?;
            return Ok(Value::String(s.to_owned()));
        }
        // A string that is exactly one reference takes the referenced value's type.
        if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
            && !inner.contains("${")
            && !inner.contains('}')
        {
            return Ok(match self.resolve_ref(inner, at, depth)? {
                Some(v) => v,
                None => {
                    self.produce(s.len())?;
                    Value::String(s.to_owned())
                }
            });
        }
        // Otherwise substitute each reference into the text.
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            self.produce(start)?;
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                self.produce(rest.len() - start)?;
                out.push_str(&rest[start..]);
                return Ok(Value::String(out));
            };
            let inner = &after[..end];
            let piece = match self.resolve_ref(inner, at, depth)? {
                Some(Value::String(t)) => t,
                Some(Value::Null) => "None".to_owned(),
                Some(Value::Bool(true)) => "True".to_owned(),
                Some(Value::Bool(false)) => "False".to_owned(),
                Some(Value::Number(n)) => n.to_string(),
                _ => format!("${{{inner}}}"),
            };
            self.produce(piece.len())?;
            out.push_str(&piece);
            rest = &after[end + 1..];
        }
        self.produce(rest.len())?;
        out.push_str(rest);
        Ok(Value::String(out))
    }

    fn resolve_ref(
        &mut self,
        inner: &str,
        at: &[String],
        depth: usize,
    ) -> Result<Option<Value>, ResolveError> {
        self.step(1)?;
        if inner.contains(':') || inner.is_empty() {
            return Ok(None); // a resolver call (oc.env:, now:): not ours to run
        }
        let Some(target) = target_path(inner, at) else {
            return Ok(None);
        };
        let tp: Vec<String> = target.split('.').map(str::to_owned).collect();
        self.step(tp.len())?;
        if let Some(v) = self.memo.get(&target) {
            let v = v.clone();
            self.charge_copy(&v)?;
            return Ok(Some(v));
        }
        let root = self.root;
        let Some(v) = lookup(root, &target) else {
            return Ok(None);
        };
        let cut_before = self.truncated;
        let out = match v {
            Value::String(s) if s.contains("${") => self.interpolate(s, &tp, depth + 1)?,
            Value::Object(_) | Value::Array(_) => {
                // Resolve inside the referenced subtree too (bounded by depth through
                // strings); the copy is paid for before it is made.
                self.charge_copy(v)?;
                let mut sub = v.clone();
                self.resolve_in_place(&mut sub, &mut tp.clone(), depth + 1)?;
                sub
            }
            Value::String(s) => {
                self.produce(s.len())?;
                return Ok(Some(v.clone()));
            }
            other => return Ok(Some(other.clone())),
        };
        if self.truncated == cut_before {
            self.memo.insert(target, out.clone());
        }
        Ok(Some(out))
    }

    fn resolve_in_place(
        &mut self,
        v: &mut Value,
        path: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), ResolveError> {
        if depth > MAX_RESOLVE_DEPTH {
            self.truncated += 1;
            return Ok(());
        }
        self.step(1)?;
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    path.push(k.clone());
                    let r = self.resolve_in_place(x, path, depth);
                    path.pop();
                    r?;
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter_mut().enumerate() {
                    path.push(i.to_string());
                    let r = self.resolve_in_place(x, path, depth);
                    path.pop();
                    r?;
                }
            }
            Value::String(s) if s.contains("${") => {
                let s = std::mem::take(s);
                *v = self.interpolate(&s, path, depth)?;
            }
            _ => {}
        }
        Ok(())
    }
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

/// Find `.hydra/config.yaml` for a checkpoint: in its folder and each parent up to (and
/// including) `stop`.
pub fn find_hydra_config(checkpoint: &Path, stop: &Path) -> Option<PathBuf> {
    let mut dir = checkpoint.parent();
    while let Some(d) = dir {
        // Not past a bucket's root (not into the local folder `""` either).
        if crate::consulted::beyond_buckets(d) {
            break;
        }
        let c = d.join(".hydra").join("config.yaml");
        if crate::consulted::is_file(&c) {
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
#[path = "config_unbudgeted.rs"]
mod unbudgeted;

#[cfg(test)]
mod tests {
    use super::unbudgeted;
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// A leaf of a generated config: a number, a plain string, or text with references to
    /// keys listed before it (never to itself: `a: {b: "${a}"}` copies `a` into itself at
    /// every hop, 2^32 copies for the unbudgeted resolver; the budget stops it, see below) (absolute, into a nested map, or relative), so the config is
    /// acyclic and its chains are shorter than the hop limit.
    fn leaf(i: usize) -> impl Strategy<Value = Value> {
        let refs: Vec<String> = (0..i)
            .flat_map(|j| [format!("k{j}"), format!("k{j}.x"), format!(".k{j}")])
            .collect();
        let plain = prop_oneof![
            any::<i32>().prop_map(|n| json!(n)),
            "[a-z]{0,4}".prop_map(|s| json!(s)),
            Just(json!("${oc.env:HOME}")),
        ];
        if refs.is_empty() {
            return plain.boxed();
        }
        let r = proptest::sample::select(refs);
        prop_oneof![
            plain,
            r.clone().prop_map(|r| json!(format!("${{{r}}}"))),
            (r.clone(), r, "[a-z ]{0,3}")
                .prop_map(|(a, b, t)| json!(format!("${{{a}}}{t}${{{b}}}!"))),
        ]
        .boxed()
    }

    fn config() -> impl Strategy<Value = Value> {
        (1usize..8).prop_flat_map(|n| {
            let entries: Vec<_> = (0..n)
                .map(|i| {
                    prop_oneof![
                        leaf(i),
                        (leaf(i), leaf(i)).prop_map(|(x, y)| json!({"x": x, "y": y})),
                        (leaf(i), leaf(i)).prop_map(|(x, y)| json!([x, y])),
                    ]
                })
                .collect();
            entries.prop_map(|vs| {
                Value::Object(
                    vs.into_iter()
                        .enumerate()
                        .map(|(i, v)| (format!("k{i}"), v))
                        .collect(),
                )
            })
        })
    }

    #[test]
    fn python_tags_are_dropped_only_when_needed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hparams.yaml");
        std::fs::write(
            &p,
            "args: !!python/object:argparse.Namespace\n  lr: 0.1\n  x: ${args.lr}\n",
        )
        .unwrap();
        let v = read_config_python_tags_dropped(&p).unwrap();
        assert_eq!(v, json!({"args": {"lr": 0.1, "x": 0.1}}));
        std::fs::write(&p, "a: [1\n").unwrap();
        assert!(matches!(
            read_config_python_tags_dropped(&p),
            Err(ConfigError::Yaml { .. })
        ));
    }

    #[test]
    fn a_subtree_that_references_itself_stops_at_the_budget() {
        let e = resolve(&json!({"a": {"b": "${a}", "c": "${a}"}})).unwrap_err();
        assert_eq!(e.key(), "a.b");
    }

    proptest! {
        /// Memoizing references and counting the budget change no result.
        #[test]
        fn the_budgeted_resolver_agrees_with_the_unbudgeted_one(c in config()) {
            prop_assert_eq!(resolve(&c).unwrap(), unbudgeted::resolve(&c));
        }
    }

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
        let r = resolve(&v).unwrap();
        assert_eq!(r["optimizer"]["scheduled_lr"], json!(0.001));
        assert_eq!(r["model"]["name"], json!("dbnet_v2"));
        assert_eq!(r["model"]["head"]["in"], json!(128));
        assert_eq!(r["model"]["head"]["sib"], json!(128));
        assert_eq!(r["exp_name"], json!("dbnet_v2"));
        assert_eq!(r["env"], json!("${oc.env:HOME}"));
        assert_eq!(r["missing"], json!("${nope.x}"));
        assert!(r["cycle_a"].is_string());
    }

    /// Each level doubles the one below: 2^27 bytes at the top if nothing stopped it.
    fn doubling(levels: usize) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("a0".into(), json!("x"));
        for i in 1..=levels {
            m.insert(
                format!("a{i}"),
                json!(format!("${{a{p}}}${{a{p}}}", p = i - 1)),
            );
        }
        Value::Object(m)
    }

    #[test]
    fn a_doubling_bomb_stops_at_the_value_budget_and_names_the_key() {
        let t = std::time::Instant::now();
        let e = resolve(&doubling(27)).unwrap_err();
        assert_eq!(
            e,
            ResolveError::ValueTooLarge {
                key: "a19".into(),
                limit: 1 << 20
            }
        );
        assert!(t.elapsed().as_secs_f64() < 1.0, "{:?}", t.elapsed());
        // Below the budget the same shape resolves exactly.
        let ok = resolve(&doubling(10)).unwrap();
        assert_eq!(ok["a10"].as_str().map(str::len), Some(1024));
    }

    #[test]
    fn doubling_through_lists_is_paid_per_node() {
        let mut m = serde_json::Map::new();
        m.insert("a0".into(), json!(["x"]));
        for i in 1..=40 {
            m.insert(
                format!("a{i}"),
                json!([format!("${{a{}}}", i - 1), format!("${{a{}}}", i - 1)]),
            );
        }
        let e = resolve(&Value::Object(m)).unwrap_err();
        assert!(matches!(e, ResolveError::TooManySteps { .. }), "{e:?}");
    }

    #[test]
    fn the_document_budget_counts_every_value() {
        let mut m = serde_json::Map::new();
        m.insert("big".into(), json!("y".repeat(1000)));
        for i in 0..100 {
            m.insert(format!("c{i}"), json!("${big}"));
        }
        let v = Value::Object(m);
        let tight = Budget {
            max_value_bytes: 2000,
            max_document_bytes: 50_000,
            max_steps: 1_000_000,
        };
        let e = resolve_with(&v, tight).unwrap_err();
        assert!(
            matches!(&e, ResolveError::DocumentTooLarge { key, .. } if key == "c50"),
            "{e:?}"
        );
        assert!(resolve(&v).is_ok());
    }

    #[test]
    fn dotted_lookup() {
        let v = json!({"a": {"b": [1, {"c": 2}]}});
        assert_eq!(lookup(&v, "a.b.1.c"), Some(&json!(2)));
        assert_eq!(lookup(&v, "a.x"), None);
    }
}
