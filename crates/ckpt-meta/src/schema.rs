//! The sidecar schema (`schema_version: '1.0'`, as the existing Python app reads it) plus the
//! optional sections ckpt adds, and validation with field paths.
//!
//! Sections an old reader ignores (all optional, all top-level):
//! - `provenance`: dotted field path → the source that filled it (`checkpoint`, `hparams`,
//!   `hydra`, `cleval`, `callback`, `file_name`, `config_sidecar`, `inferred`, `default`).
//! - `fingerprint`: how to tell that the sidecar still describes its checkpoint: the file's
//!   size, its modification time, and the sha256 of its pickle (`data.pkl`: kilobytes, changes
//!   whenever anything but tensor bytes changes). Size + pickle hash decide; mtime alone never
//!   makes a sidecar stale (copies change it).
//! - `state`: a summary of what the checkpoint holds (format, tensors, parameters, dtypes,
//!   wrapper prefixes), so catalogs need not open the checkpoint at all.
//! - `generator`: which tool wrote the sidecar (`tool: ckpt <version>`; `writer` names the
//!   training-side writer, e.g. `ckpt.lightning.MetadataCallback (lightning 2.6.6)`). Only a
//!   sidecar whose `tool` is ckpt's is ever replaced or removed by ckpt on its own initiative.
//! - `run`: what the live run said about itself when it saved the file (written by the
//!   training-side writer only): `hydra` (job name and number, output dir, overrides, choices,
//!   the composed config's path), `loggers` (name, version / run id, directories), `trainer`.

use serde_json::{Value, json};

/// The schema version ckpt writes.
pub const SCHEMA_VERSION: &str = "1.0";
/// The newest major version ckpt reads.
pub const SUPPORTED_MAJOR: u64 = 1;

/// The keys of the 1.0 schema, in the order they are written.
pub const TOP_LEVEL: &[&str] = &[
    "schema_version",
    "checkpoint_path",
    "exp_name",
    "created_at",
    "training",
    "model",
    "metrics",
    "checkpointing",
];

/// Optional sections ckpt adds.
pub const EXTENSIONS: &[&str] = &["provenance", "fingerprint", "state", "generator", "run"];

/// One thing wrong with a sidecar, at a dotted field path (`training.epoch`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The major version of a `schema_version` string, when it is one.
pub fn major_version(v: &Value) -> Option<u64> {
    v.as_str()?.split('.').next()?.parse().ok()
}

struct Check {
    problems: Vec<Problem>,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

impl Check {
    fn bad(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn expect(&mut self, path: &str, v: &Value, what: &str, ok: bool) -> bool {
        if !ok {
            self.bad(
                path,
                format!("expected {what}, found {} ({})", kind(v), short(v)),
            );
        }
        ok
    }

    fn string(&mut self, path: &str, v: &Value) -> bool {
        self.expect(path, v, "a string", v.is_string())
    }

    fn opt_string(&mut self, path: &str, v: &Value) {
        self.expect(path, v, "a string or null", v.is_string() || v.is_null());
    }

    fn nonneg_int(&mut self, path: &str, v: &Value) {
        if self.expect(path, v, "an integer", v.is_i64() || v.is_u64())
            && v.as_i64().is_some_and(|i| i < 0)
        {
            self.bad(path, format!("must not be negative, found {v}"));
        }
    }

    fn bool(&mut self, path: &str, v: &Value) {
        self.expect(path, v, "true or false", v.is_boolean());
    }

    fn map<'v>(&mut self, path: &str, v: &'v Value) -> Option<&'v serde_json::Map<String, Value>> {
        let m = v.as_object();
        self.expect(path, v, "a mapping", m.is_some());
        m
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(39).collect::<String>())
    } else {
        s
    }
}

fn iso_datetime(s: &str) -> bool {
    // YYYY-MM-DDTHH:MM:SS[.ffffff][+HH:MM|Z], as Python's isoformat writes it.
    let b = s.as_bytes();
    if b.len() < 19 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b' ')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
}

/// Validate a parsed sidecar. Returns every problem found (empty when valid). A newer major
/// `schema_version` is reported as the only problem: nothing else can be judged.
pub fn validate(v: &Value) -> Vec<Problem> {
    let mut c = Check {
        problems: Vec::new(),
    };
    let Some(root) = v.as_object() else {
        c.bad(
            "",
            format!("expected a mapping at the top level, found {}", kind(v)),
        );
        return c.problems;
    };
    match root.get("schema_version") {
        None => c.bad("schema_version", "missing"),
        Some(sv) => {
            if !sv.is_string() {
                c.bad(
                    "schema_version",
                    format!(
                        "expected a string like '1.0', found {} ({})",
                        kind(sv),
                        short(sv)
                    ),
                );
            } else {
                match major_version(sv) {
                    Some(m) if m > SUPPORTED_MAJOR => {
                        return vec![Problem {
                            path: "schema_version".into(),
                            message: format!(
                                "schema version {} is newer than this ckpt understands ({}.x); upgrade ckpt",
                                sv.as_str().unwrap_or("?"),
                                SUPPORTED_MAJOR
                            ),
                        }];
                    }
                    Some(_) => {}
                    None => c.bad(
                        "schema_version",
                        format!("not a version number: {}", short(sv)),
                    ),
                }
            }
        }
    }
    for key in &TOP_LEVEL[1..] {
        let Some(val) = root.get(*key) else {
            c.bad(key, "missing");
            continue;
        };
        match *key {
            "checkpoint_path" | "exp_name" => {
                c.string(key, val);
            }
            "created_at" if c.string(key, val) && !val.as_str().is_some_and(iso_datetime) => {
                c.bad(
                    key,
                    format!(
                        "expected an ISO date-time like '2025-10-17T22:00:16.030374', found {}",
                        short(val)
                    ),
                );
            }
            "training" => {
                if let Some(m) = c.map(key, val) {
                    for (f, required) in [
                        ("epoch", true),
                        ("global_step", true),
                        ("training_phase", false),
                    ] {
                        let p = format!("training.{f}");
                        match m.get(f) {
                            None if required => c.bad(&p, "missing"),
                            None => {}
                            Some(x) if f == "training_phase" => {
                                c.string(&p, x);
                            }
                            Some(x) => c.nonneg_int(&p, x),
                        }
                    }
                }
            }
            "model" => {
                if let Some(m) = c.map(key, val) {
                    match m.get("architecture") {
                        None => c.bad("model.architecture", "missing"),
                        Some(a) => {
                            c.string("model.architecture", a);
                        }
                    }
                    if let Some(enc) = m.get("encoder")
                        && let Some(e) = c.map("model.encoder", enc)
                    {
                        if let Some(x) = e.get("model_name") {
                            c.opt_string("model.encoder.model_name", x);
                        }
                        for f in ["pretrained", "frozen"] {
                            if let Some(x) = e.get(f) {
                                c.bool(&format!("model.encoder.{f}"), x);
                            }
                        }
                    }
                    for part in ["decoder", "head", "loss"] {
                        if let Some(x) = m.get(part)
                            && let Some(pm) = c.map(&format!("model.{part}"), x)
                        {
                            if let Some(n) = pm.get("name") {
                                c.opt_string(&format!("model.{part}.name"), n);
                            }
                            if let Some(pp) = pm.get("params") {
                                c.map(&format!("model.{part}.params"), pp);
                            }
                        }
                    }
                }
            }
            "metrics" => {
                if let Some(m) = c.map(key, val) {
                    for f in ["precision", "recall", "hmean"] {
                        if let Some(x) = m.get(f) {
                            let p = format!("metrics.{f}");
                            if c.expect(&p, x, "a number or null", x.is_number() || x.is_null())
                                && let Some(n) = x.as_f64()
                                && !(0.0..=1.0).contains(&n)
                            {
                                c.bad(&p, format!("must be between 0 and 1, found {n}"));
                            }
                        }
                    }
                    if let Some(x) = m.get("validation_loss") {
                        c.expect(
                            "metrics.validation_loss",
                            x,
                            "a number or null",
                            x.is_number() || x.is_null(),
                        );
                    }
                    if let Some(am) = m.get("additional_metrics")
                        && let Some(a) = c.map("metrics.additional_metrics", am)
                    {
                        for (k, x) in a {
                            c.expect(
                                &format!("metrics.additional_metrics.{k}"),
                                x,
                                "a number or null",
                                x.is_number() || x.is_null(),
                            );
                        }
                    }
                }
            }
            "checkpointing" => {
                if let Some(m) = c.map(key, val) {
                    if let Some(x) = m.get("monitor") {
                        c.opt_string("checkpointing.monitor", x);
                    }
                    if let Some(x) = m.get("mode")
                        && !x.is_null()
                        && !matches!(x.as_str(), Some("max" | "min"))
                    {
                        c.bad(
                            "checkpointing.mode",
                            format!("expected 'max', 'min' or null, found {}", short(x)),
                        );
                    }
                    if let Some(x) = m.get("save_top_k")
                        && !x.is_null()
                        && c.expect(
                            "checkpointing.save_top_k",
                            x,
                            "an integer or null",
                            x.is_i64(),
                        )
                        && x.as_i64().is_some_and(|k| k < -1)
                    {
                        c.bad(
                            "checkpointing.save_top_k",
                            format!("must be -1 or more, found {x}"),
                        );
                    }
                    if let Some(x) = m.get("save_last") {
                        c.expect(
                            "checkpointing.save_last",
                            x,
                            "true, false or null",
                            x.is_boolean() || x.is_null(),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(p) = root.get("provenance")
        && let Some(m) = c.map("provenance", p)
    {
        for (k, x) in m {
            c.string(&format!("provenance.{k}"), x);
        }
    }
    if let Some(f) = root.get("fingerprint")
        && let Some(m) = c.map("fingerprint", f)
    {
        if let Some(x) = m.get("size_bytes") {
            c.nonneg_int("fingerprint.size_bytes", x);
        }
        if let Some(x) = m.get("pickle_sha256")
            && c.string("fingerprint.pickle_sha256", x)
            && !x
                .as_str()
                .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            c.bad("fingerprint.pickle_sha256", "expected 64 hex digits");
        }
    }
    c.problems
}

/// The JSON Schema (draft 2020-12) of the sidecar, for `ckpt schema` and editors.
pub fn json_schema() -> Value {
    let metric = json!({"type": ["number", "null"]});
    let unit = json!({"type": ["number", "null"], "minimum": 0, "maximum": 1});
    let component = json!({
        "type": "object",
        "properties": {"name": {"type": ["string", "null"]}, "params": {"type": "object"}},
        "additionalProperties": true
    });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/ckpt-dev/ckpt/schema/metadata-1.0.json",
        "title": "Checkpoint metadata sidecar (<checkpoint stem>.metadata.yaml)",
        "type": "object",
        "required": TOP_LEVEL,
        "additionalProperties": true,
        "properties": {
            "schema_version": {"type": "string", "pattern": "^1\\.[0-9]+$"},
            "checkpoint_path": {"type": "string", "description": "relative to the outputs directory"},
            "exp_name": {"type": "string"},
            "created_at": {"type": "string", "description": "the checkpoint file's modification time, ISO 8601 without zone"},
            "training": {
                "type": "object",
                "required": ["epoch", "global_step"],
                "properties": {
                    "epoch": {"type": "integer", "minimum": 0},
                    "global_step": {"type": "integer", "minimum": 0},
                    "training_phase": {"type": "string"}
                }
            },
            "model": {
                "type": "object",
                "required": ["architecture"],
                "properties": {
                    "architecture": {"type": "string", "description": "\"unknown\" when no source has it"},
                    "encoder": {
                        "type": "object",
                        "properties": {
                            "model_name": {"type": ["string", "null"]},
                            "pretrained": {"type": "boolean"},
                            "frozen": {"type": "boolean"}
                        }
                    },
                    "decoder": component,
                    "head": component,
                    "loss": component
                }
            },
            "metrics": {
                "type": "object",
                "properties": {
                    "precision": unit,
                    "recall": unit,
                    "hmean": unit,
                    "validation_loss": metric,
                    "additional_metrics": {"type": "object", "additionalProperties": metric}
                }
            },
            "checkpointing": {
                "type": "object",
                "properties": {
                    "monitor": {"type": ["string", "null"]},
                    "mode": {"enum": ["max", "min", null]},
                    "save_top_k": {"type": ["integer", "null"], "minimum": -1},
                    "save_last": {"type": ["boolean", "null"]}
                }
            },
            "provenance": {
                "type": "object",
                "description": "dotted field path -> source that filled it",
                "additionalProperties": {"type": "string"}
            },
            "fingerprint": {
                "type": "object",
                "properties": {
                    "size_bytes": {"type": "integer", "minimum": 0},
                    "modified": {"type": "string"},
                    "pickle_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}
                }
            },
            "state": {"type": "object"},
            "generator": {"type": "object"},
            "run": {
                "type": "object",
                "description": "what the live training run said about itself when it saved the file",
                "properties": {
                    "hydra": {"type": "object"},
                    "loggers": {"type": "array", "items": {"type": "object"}},
                    "trainer": {"type": "object"}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Value {
        json!({
            "schema_version": "1.0",
            "checkpoint_path": "my_experiment/checkpoints/best.ckpt",
            "exp_name": "my_experiment",
            "created_at": "2025-10-17T22:00:16.030374",
            "training": {"epoch": 0, "global_step": 205, "training_phase": "training"},
            "model": {"architecture": "dbnet", "encoder": {"model_name": "m", "pretrained": true, "frozen": false},
                      "decoder": {"name": "pan_decoder", "params": {}}, "head": {"name": "db_head", "params": {}},
                      "loss": {"name": "db_loss", "params": {}}},
            "metrics": {"precision": 0.88, "recall": 0.71, "hmean": 0.77, "additional_metrics": {"hmean": 0.77}},
            "checkpointing": {"monitor": "val/hmean", "mode": "max", "save_top_k": 1, "save_last": true}
        })
    }

    #[test]
    fn the_documented_example_is_valid() {
        assert_eq!(validate(&valid()), vec![]);
    }

    #[test]
    fn wrong_types_are_reported_with_paths() {
        let v = json!({"schema_version": "1.0", "exp_name": 12, "training": {"epoch": "minus one", "global_step": -5},
                       "metrics": {"hmean": 1.7}});
        let p: Vec<String> = validate(&v).iter().map(|p| p.path.clone()).collect();
        for want in [
            "exp_name",
            "training.epoch",
            "training.global_step",
            "metrics.hmean",
            "checkpoint_path",
            "model",
        ] {
            assert!(p.contains(&want.to_owned()), "{want} not in {p:?}");
        }
    }

    #[test]
    fn future_major_version_is_one_clear_problem() {
        let p = validate(&json!({"schema_version": "9.0", "exp_name": "x"}));
        assert_eq!(p.len(), 1);
        assert!(p[0].message.contains("newer"), "{}", p[0].message);
    }

    #[test]
    fn unquoted_version_is_a_type_error() {
        let mut v = valid();
        v["schema_version"] = json!(1.0);
        assert_eq!(validate(&v)[0].path, "schema_version");
    }

    #[test]
    fn schema_is_an_object_with_every_top_level_key() {
        let s = json_schema();
        for k in TOP_LEVEL {
            assert!(s["properties"].get(*k).is_some(), "{k}");
        }
    }
}
