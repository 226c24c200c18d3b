//! The resolution engine: the one place that ranks facts. Every reader hands its facts over;
//! for each field the fact of the highest-ranked [`Source`] wins, and every other source that
//! says something different is kept as a [`Conflict`] — the catalog's entry, the sidecar writer
//! and `--explain` all read the same [`Resolution`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::fact::{Fact, Field, Source};

/// The value a field resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    pub value: Value,
    pub source: Source,
}

/// One source's value in a conflict.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ConflictValue {
    pub source: String,
    pub value: Value,
    pub chosen: bool,
}

/// Sources that disagree on a field (or, for a model part, on one of its leaves:
/// `model.encoder.model_name`). Every source's value is listed, the chosen one included.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Conflict {
    pub field: String,
    pub values: Vec<ConflictValue>,
}

/// What a checkpoint's facts resolve to.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    pub chosen: BTreeMap<Field, Chosen>,
    pub conflicts: Vec<Conflict>,
    /// Warnings the readers gave (a config over a budget), each once.
    pub warnings: Vec<String>,
}

impl Resolution {
    pub fn get(&self, f: &Field) -> Option<&Value> {
        self.chosen.get(f).map(|c| &c.value)
    }

    pub fn source(&self, f: &Field) -> Option<Source> {
        self.chosen.get(f).map(|c| c.source)
    }

    pub fn str(&self, f: &Field) -> Option<&str> {
        self.get(f).and_then(Value::as_str)
    }

    pub fn i64(&self, f: &Field) -> Option<i64> {
        self.get(f).and_then(Value::as_i64)
    }

    /// The chosen values of one family (`model.*`, `metrics.*` …), keyed by their key.
    pub fn family<'r>(
        &'r self,
        pick: impl Fn(&'r Field) -> Option<&'r str> + 'r,
    ) -> impl Iterator<Item = (&'r str, &'r Chosen)> + 'r {
        self.chosen
            .iter()
            .filter_map(move |(f, c)| pick(f).map(|k| (k, c)))
    }

    /// Set a value the caller derives after resolution (`is_best` across a folder).
    pub fn set(&mut self, f: Field, value: Value, source: Source) {
        self.chosen.insert(f, Chosen { value, source });
    }
}

/// The parts of a model that are objects in an entry and in a sidecar, with the key a bare
/// name goes under (`"resnet50"` → `{"model_name": "resnet50"}`).
pub const MODEL_PARTS: [(&str, &str); 4] = [
    ("encoder", "model_name"),
    ("decoder", "name"),
    ("head", "name"),
    ("loss", "name"),
];

/// OmegaConf's marker for a mandatory value nobody set: it says nothing.
const MISSING: &str = "???";

/// `value` without OmegaConf `???` markers (in objects and lists of objects, at any depth);
/// `Null` when the value is one.
fn without_missing(value: Value) -> Value {
    match value {
        Value::String(s) if s == MISSING => Value::Null,
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| v.as_str() != Some(MISSING))
                .map(|(k, v)| (k, without_missing(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Whether [`without_missing`] would change `value` (a marker, or an object holding one at
/// any depth; past a deep nesting the rebuild is left to decide).
fn has_missing(value: &Value, depth: usize) -> bool {
    match value {
        Value::String(s) => s == MISSING,
        Value::Object(m) => depth > 64 || m.values().any(|v| has_missing(v, depth + 1)),
        _ => false,
    }
}

/// A model part given as a bare name becomes the object the schema describes, so every
/// source states a part the same way and the leaves can be compared.
fn normalize(field: &Field, value: Value) -> Value {
    // Rebuilding every object costs an allocation per key; most values hold no marker.
    let value = if has_missing(&value, 0) {
        without_missing(value)
    } else {
        value
    };
    if let Field::Model(k) = field
        && let Some((_, key)) = MODEL_PARTS.iter().find(|(p, _)| p == k)
        && let Value::String(s) = value
    {
        let mut m = Map::new();
        m.insert((*key).to_owned(), Value::String(s));
        return Value::Object(m);
    }
    value
}

/// Rank the facts: for each field the highest-ranked source wins (within one source, the
/// first fact given). Null values say nothing.
pub fn resolve(facts: Vec<Fact>) -> Resolution {
    let mut facts = facts;
    // Stable: within a source, the reader's own order decides.
    facts.sort_by_key(|f| f.source);
    let mut r = Resolution::default();
    // Per field, the first value of each other source, for conflicts.
    let mut others: BTreeMap<Field, Vec<(Source, Value)>> = BTreeMap::new();
    for f in facts {
        if f.value.is_null() {
            continue;
        }
        if f.field == Field::Warning {
            if let Some(w) = f.value.as_str()
                && !r.warnings.iter().any(|x| x == w)
            {
                r.warnings.push(w.to_owned());
            }
            continue;
        }
        // A later fact of a field already chosen only matters as a conflict: not from the
        // winner's own source, not for a name, not a guess (those are never conflicts, so
        // they are neither normalized nor kept).
        if let Some(c) = r.chosen.get(&f.field)
            && (c.source == f.source || f.field.is_name() || f.source.is_guess())
        {
            continue;
        }
        let value = normalize(&f.field, f.value);
        if value.is_null() {
            continue;
        }
        match r.chosen.get(&f.field) {
            None => {
                r.chosen.insert(
                    f.field,
                    Chosen {
                        value,
                        source: f.source,
                    },
                );
            }
            Some(c) if c.source == f.source => {}
            Some(_) => {
                let list = others.entry(f.field).or_default();
                if !list.iter().any(|(s, _)| *s == f.source) {
                    list.push((f.source, value));
                }
            }
        }
    }
    for (field, list) in others {
        if field.is_name() {
            continue;
        }
        let Some(winner) = r.chosen.get(&field) else {
            continue;
        };
        if winner.source.is_guess() {
            continue;
        }
        let list: Vec<&(Source, Value)> = list.iter().filter(|(s, _)| !s.is_guess()).collect();
        if list.is_empty() {
            continue;
        }
        let mut wl = Vec::new();
        leaves(&field.path(), &winner.value, 0, &mut wl);
        let mut ol: Vec<(Source, Vec<(String, &Value)>)> = Vec::new();
        for (s, v) in &list {
            let mut l = Vec::new();
            leaves(&field.path(), v, 0, &mut l);
            ol.push((*s, l));
        }
        for (path, wv) in &wl {
            let differs = ol
                .iter()
                .any(|(_, l)| l.iter().any(|(p, v)| p == path && !same_value(wv, v)));
            if !differs {
                continue;
            }
            let mut values = vec![ConflictValue {
                source: winner.source.as_str().to_owned(),
                value: (*wv).clone(),
                chosen: true,
            }];
            for (s, l) in &ol {
                if let Some((_, v)) = l.iter().find(|(p, _)| p == path) {
                    values.push(ConflictValue {
                        source: s.as_str().to_owned(),
                        value: (*v).clone(),
                        chosen: false,
                    });
                }
            }
            r.conflicts.push(Conflict {
                field: path.clone(),
                values,
            });
        }
    }
    r
}

/// Leaves of a value as dotted paths; objects nest, anything else is a leaf. Deep trees stop
/// being split at a fixed depth (the rest compares as one value).
fn leaves<'v>(path: &str, v: &'v Value, depth: usize, out: &mut Vec<(String, &'v Value)>) {
    match v {
        Value::Object(m) if depth < 4 && !m.is_empty() => {
            for (k, x) in m {
                leaves(&format!("{path}.{k}"), x, depth + 1, out);
            }
        }
        _ => out.push((path.to_owned(), v)),
    }
}

/// Two sources agree when their values are equal, numbers compared at the precision of the
/// less precise one (a file name's `0.91` agrees with a logged `0.9100000262`).
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => close(x, y),
            _ => x == y,
        },
        _ => a == b,
    }
}

fn decimals(x: f64) -> usize {
    let s = format!("{x}");
    match s.split_once('.') {
        Some((_, frac)) if !s.contains('e') => frac.len(),
        _ => 0,
    }
}

fn close(x: f64, y: f64) -> bool {
    if x == y {
        return true;
    }
    if !x.is_finite() || !y.is_finite() {
        return x.is_nan() && y.is_nan();
    }
    let tolerance = (x.abs().max(y.abs()) * 1e-6).max(f64::MIN_POSITIVE);
    if (x - y).abs() <= tolerance {
        return true;
    }
    let d = decimals(x).min(decimals(y)).min(15);
    let scale = 10f64.powi(d as i32);
    (x * scale).round() == (y * scale).round()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fact(field: Field, v: Value, s: Source) -> Fact {
        Fact::new(field, v, s)
    }

    #[test]
    fn the_best_ranked_source_wins_whatever_the_order_given() {
        let r = resolve(vec![
            fact(Field::Epoch, json!(9), Source::FileName),
            fact(Field::Epoch, json!(3), Source::Checkpoint),
            fact(Field::Epoch, json!(4), Source::Sidecar),
        ]);
        assert_eq!(r.get(&Field::Epoch), Some(&json!(3)));
        assert_eq!(r.source(&Field::Epoch), Some(Source::Checkpoint));
        assert_eq!(r.conflicts.len(), 1);
        let c = &r.conflicts[0];
        assert_eq!(c.field, "epoch");
        let got: Vec<(&str, &Value, bool)> = c
            .values
            .iter()
            .map(|v| (v.source.as_str(), &v.value, v.chosen))
            .collect();
        assert_eq!(
            got,
            vec![
                ("checkpoint", &json!(3), true),
                ("sidecar", &json!(4), false),
                ("file_name", &json!(9), false)
            ]
        );
    }

    #[test]
    fn agreeing_sources_rounded_numbers_and_guesses_are_not_conflicts() {
        let r = resolve(vec![
            fact(
                Field::Metric("hmean".into()),
                json!(0.910_000_026),
                Source::Callback,
            ),
            fact(Field::Metric("hmean".into()), json!(0.91), Source::FileName),
            fact(Field::Epoch, json!(2), Source::Checkpoint),
            fact(Field::Epoch, json!(2), Source::FileName),
            fact(Field::Model("family".into()), json!("gpt2"), Source::Hydra),
            fact(
                Field::Model("family".into()),
                json!("llama"),
                Source::Inferred,
            ),
            fact(Field::Experiment, json!("a"), Source::Hydra),
            fact(Field::Experiment, json!("b"), Source::FolderName),
        ]);
        assert!(r.conflicts.is_empty(), "{:?}", r.conflicts);
        assert!(!same_value(&json!(0.91), &json!(0.93)));
        assert!(!same_value(&json!(0.9), &json!(0.96)));
    }

    #[test]
    fn model_parts_compare_leaf_by_leaf() {
        let r = resolve(vec![
            fact(
                Field::Model("encoder".into()),
                json!({"model_name": "resnet50", "pretrained": true}),
                Source::Hydra,
            ),
            fact(
                Field::Model("encoder".into()),
                json!({"model_name": "resnet34"}),
                Source::Hparams,
            ),
            fact(
                Field::Model("head".into()),
                json!("lm_head"),
                Source::Inferred,
            ),
        ]);
        assert_eq!(
            r.get(&Field::Model("encoder".into())),
            Some(&json!({"model_name": "resnet34"}))
        );
        assert_eq!(
            r.get(&Field::Model("head".into())),
            Some(&json!({"name": "lm_head"}))
        );
        assert_eq!(r.conflicts.len(), 1);
        assert_eq!(r.conflicts[0].field, "model.encoder.model_name");
        assert_eq!(r.conflicts[0].values.len(), 2);
        assert!(r.conflicts[0].values[0].chosen);
        assert_eq!(r.conflicts[0].values[1].value, json!("resnet50"));
    }

    #[test]
    fn warnings_are_kept_once_and_nulls_say_nothing() {
        let r = resolve(vec![
            Fact::warning("w".into(), Source::Hydra),
            Fact::warning("w".into(), Source::Hydra),
            fact(Field::Epoch, Value::Null, Source::Checkpoint),
            fact(Field::Epoch, json!(1), Source::FileName),
        ]);
        assert_eq!(r.warnings, vec!["w".to_owned()]);
        assert_eq!(r.get(&Field::Epoch), Some(&json!(1)));
    }
}
