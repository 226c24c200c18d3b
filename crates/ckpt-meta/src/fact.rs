//! The vocabulary of resolution: which fields a checkpoint has ([`Field`]), where a value can
//! come from ([`Source`], in precedence order), and one value found by one source ([`Fact`]).
//!
//! Every reader of a source returns facts in this vocabulary and never ranks them; the engine
//! ([`crate::engine`]) is the only place that decides which fact wins.

use std::fmt;

use serde_json::Value;

/// Where a value came from. The declaration order IS the precedence: a source earlier in this
/// list wins over a later one for the same field (see `README.md`, "Where values come from").
///
/// The principle: what the file itself records describes the file; what the live run observed
/// when it saved the file comes next (it saw the very objects the file only partly records: the
/// metrics it ranked on, its checkpoint callback's settings); what the run recorded elsewhere
/// fills what both lack; a sidecar (what a person or a tool asserted, checked against the file's
/// fingerprint) comes next; names and inference come last, defaults after everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// What `torch.save` wrote at the top level: `epoch`, `global_step`, the state dict's
    /// tensors, the format, what loading it would run.
    Checkpoint,
    /// What the training run observed at the moment it saved the file (`ckpt.lightning`'s
    /// callback): the metrics it had (`trainer.callback_metrics`, full precision), the
    /// monitor, mode, `save_top_k` and `save_last` of the `ModelCheckpoint` that saved it.
    /// Below the checkpoint (for what the file records about itself — epoch, step, tensors —
    /// the file is the thing described); above everything read later or inferred: the file's
    /// own callback state is a subset of the same objects (a float32 score, a `save_top_k`
    /// only guessed from `best_k_models`), configs say what was asked rather than what ran,
    /// and logs are flushed after the save. Read back from a sidecar whose provenance says
    /// `live` and whose fingerprint still matches, so the catalog shows what the run saw.
    Live,
    /// Evaluation metrics stored in the file (`cleval_metrics`): full precision, computed
    /// for this very state.
    Cleval,
    /// The file's own `ModelCheckpoint` callback state: monitor, mode, the score it was saved
    /// for (often logged as float32), the best and last file names.
    Callback,
    /// The file's `hyper_parameters` (dict, AttributeDict, DictConfig, Namespace).
    Hparams,
    /// `<stem>.config.yaml|json`: a config written for this very file.
    ConfigSidecar,
    /// The run's composed Hydra config (`.hydra/config.yaml`).
    Hydra,
    /// Lightning's logger copy of the hyperparameters (`version_N/hparams.yaml`).
    HparamsYaml,
    /// The run's logged metrics at this checkpoint's epoch/step (`metrics.csv`).
    MetricsCsv,
    /// An MLflow or W&B run the checkpoint belongs to.
    Logger,
    /// JSON reports of a hierarchical run folder (`training_summary.json`, `config.json` …).
    JsonReport,
    /// A hash-addressed experiment folder (`<hash>/{model,hp,data}`).
    HashFolder,
    /// A `.metadata.yaml|json` sidecar whose fingerprint matches the file.
    Sidecar,
    /// The folder names around the file.
    FolderName,
    /// The file name (`epoch=02-step=6-hmean=0.77.ckpt`).
    FileName,
    /// Guessed from the state dict's names and shapes.
    Inferred,
    /// `stat`: size and modification time.
    Filesystem,
    /// The sidecar schema's placeholder for what no source had.
    Default,
}

impl Source {
    /// Every source, in precedence order.
    pub const ALL: [Source; 18] = [
        Source::Checkpoint,
        Source::Live,
        Source::Cleval,
        Source::Callback,
        Source::Hparams,
        Source::ConfigSidecar,
        Source::Hydra,
        Source::HparamsYaml,
        Source::MetricsCsv,
        Source::Logger,
        Source::JsonReport,
        Source::HashFolder,
        Source::Sidecar,
        Source::FolderName,
        Source::FileName,
        Source::Inferred,
        Source::Filesystem,
        Source::Default,
    ];

    /// The name recorded in `sources`, `provenance` and `conflicts`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Checkpoint => "checkpoint",
            Source::Live => "live",
            Source::Callback => "callback",
            Source::Cleval => "cleval",
            Source::Hparams => "hparams",
            Source::ConfigSidecar => "config_sidecar",
            Source::Hydra => "hydra",
            Source::HparamsYaml => "hparams_yaml",
            Source::MetricsCsv => "metrics_csv",
            Source::Logger => "logger",
            Source::JsonReport => "json_report",
            Source::HashFolder => "hash_folder",
            Source::Sidecar => "sidecar",
            Source::FolderName => "folder_name",
            Source::FileName => "file_name",
            Source::Inferred => "inferred",
            Source::Filesystem => "filesystem",
            Source::Default => "default",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        Source::ALL.iter().copied().find(|x| x.as_str() == s)
    }

    /// Guesses and placeholders: a disagreement with them is expected, not a conflict.
    pub fn is_guess(self) -> bool {
        matches!(self, Source::Inferred | Source::Default)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A field of a checkpoint's entry. Dotted families (`model.*`, `metrics.*`, `hparams.*`,
/// `data.*`) carry their key; internal fields (`_best_name` …) feed the resolver and are never
/// shown.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Experiment,
    /// The run the checkpoint belongs to (a Hydra job, a Lightning version, a logger run, a
    /// timestamped or hash-named folder).
    Run,
    Task,
    Format,
    Epoch,
    GlobalStep,
    TrainingPhase,
    Monitor,
    Mode,
    SaveTopK,
    SaveLast,
    Params,
    Tensors,
    Security,
    LightningVersion,
    IsBest,
    SizeBytes,
    Modified,
    Error,
    /// `model.<key>`: `architecture`, `family`, `encoder`, `decoder`, `head`, `loss`, sizes.
    Model(String),
    /// `metrics.<name>` as logged (`val/hmean`, `val_loss`).
    Metric(String),
    /// `hparams.<key>`: a top-level hyperparameter.
    Hparam(String),
    /// `data.<key>`: what is known about the training data.
    Data(String),
    /// The file name the file's callback calls best (internal).
    BestName,
    /// The file name the file's callback calls last (internal).
    LastName,
    /// SHA-256 of the checkpoint's pickle (internal: sidecar freshness).
    PickleSha256,
    /// Not a field: a warning for the run, printed once (a config over a budget).
    Warning,
}

impl Field {
    /// The dotted name (`global_step`, `model.encoder`, `metrics.val/hmean`).
    pub fn path(&self) -> String {
        match self {
            Field::Model(k) => format!("model.{k}"),
            Field::Metric(k) => format!("metrics.{k}"),
            Field::Hparam(k) => format!("hparams.{k}"),
            Field::Data(k) => format!("data.{k}"),
            other => other.simple_name().unwrap_or("").to_owned(),
        }
    }

    fn simple_name(&self) -> Option<&'static str> {
        Some(match self {
            Field::Experiment => "experiment",
            Field::Run => "run",
            Field::Task => "task",
            Field::Format => "format",
            Field::Epoch => "epoch",
            Field::GlobalStep => "global_step",
            Field::TrainingPhase => "training_phase",
            Field::Monitor => "monitor",
            Field::Mode => "mode",
            Field::SaveTopK => "save_top_k",
            Field::SaveLast => "save_last",
            Field::Params => "params",
            Field::Tensors => "tensors",
            Field::Security => "security",
            Field::LightningVersion => "lightning_version",
            Field::IsBest => "is_best",
            Field::SizeBytes => "size_bytes",
            Field::Modified => "modified",
            Field::Error => "error",
            Field::BestName => "_best_name",
            Field::LastName => "_last_name",
            Field::PickleSha256 => "_pickle_sha256",
            Field::Warning => "_warning",
            Field::Model(_) | Field::Metric(_) | Field::Hparam(_) | Field::Data(_) => return None,
        })
    }

    const SIMPLE: [Field; 23] = [
        Field::Experiment,
        Field::Run,
        Field::Task,
        Field::Format,
        Field::Epoch,
        Field::GlobalStep,
        Field::TrainingPhase,
        Field::Monitor,
        Field::Mode,
        Field::SaveTopK,
        Field::SaveLast,
        Field::Params,
        Field::Tensors,
        Field::Security,
        Field::LightningVersion,
        Field::IsBest,
        Field::SizeBytes,
        Field::Modified,
        Field::Error,
        Field::BestName,
        Field::LastName,
        Field::PickleSha256,
        Field::Warning,
    ];

    /// The field a dotted name spells, `None` for a name outside the vocabulary.
    pub fn parse(s: &str) -> Option<Field> {
        if let Some((head, key)) = s.split_once('.') {
            if key.is_empty() {
                return None;
            }
            let key = key.to_owned();
            return match head {
                "model" => Some(Field::Model(key)),
                "metrics" => Some(Field::Metric(key)),
                "hparams" => Some(Field::Hparam(key)),
                "data" => Some(Field::Data(key)),
                _ => None,
            };
        }
        Field::SIMPLE
            .iter()
            .find(|f| f.simple_name() == Some(s))
            .cloned()
    }

    /// Internal fields feed the resolver and are not part of an entry.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Field::BestName | Field::LastName | Field::PickleSha256 | Field::Warning
        )
    }

    /// Fields whose sources name things rather than measure them: different sources giving
    /// different names (a Hydra `exp_name`, a folder, a logger's run id) is how it should be,
    /// not a conflict.
    pub fn is_name(&self) -> bool {
        matches!(
            self,
            Field::Experiment
                | Field::Run
                | Field::Task
                | Field::Error
                | Field::SizeBytes
                | Field::Modified
        ) || self.is_internal()
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// One value for one field, found by one source.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    pub field: Field,
    pub value: Value,
    pub source: Source,
}

impl Fact {
    pub fn new(field: Field, value: Value, source: Source) -> Fact {
        Fact {
            field,
            value,
            source,
        }
    }

    /// A warning for the run rather than a field.
    pub fn warning(text: String, source: Source) -> Fact {
        Fact::new(Field::Warning, Value::String(text), source)
    }
}

/// Facts as the cache stores them: `[[field, value, source], …]`, where a fact whose value
/// is an object or list equal to an earlier fact's is stored as `[field, null, source, n]`
/// (the value of fact `n`). Lightning's `hyper_parameters` give every model part twice
/// (`hparams.encoder` and `model.encoder`): the reference keeps rows small, so more fit a
/// page, and a copy is cloned instead of parsed again.
pub fn facts_to_json(facts: &[Fact]) -> String {
    use std::collections::HashMap;
    // Objects and lists seen so far, by their text.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut rows: Vec<Row<'_>> = Vec::with_capacity(facts.len());
    for (n, f) in facts.iter().enumerate() {
        let mut same_as = None;
        if matches!(&f.value, Value::Object(m) if !m.is_empty())
            || matches!(&f.value, Value::Array(a) if !a.is_empty())
        {
            let text = f.value.to_string();
            match seen.get(&text) {
                Some(&earlier) => same_as = Some(earlier),
                None => {
                    seen.insert(text, n);
                }
            }
        }
        rows.push(Row {
            field: f.field.path(),
            value: if same_as.is_some() {
                &Value::Null
            } else {
                &f.value
            },
            source: f.source.as_str(),
            same_as,
        });
    }
    // Values always serialize; were one not to, an empty row never parses and the file is
    // read again next time rather than misread.
    serde_json::to_string(&rows).unwrap_or_default()
}

/// One fact of a cache row, written as a 3- or 4-element array.
struct Row<'a> {
    field: String,
    value: &'a Value,
    source: &'a str,
    same_as: Option<usize>,
}

impl serde::Serialize for Row<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(if self.same_as.is_some() { 4 } else { 3 }))?;
        seq.serialize_element(&self.field)?;
        seq.serialize_element(self.value)?;
        seq.serialize_element(self.source)?;
        if let Some(n) = self.same_as {
            seq.serialize_element(&n)?;
        }
        seq.end()
    }
}

/// A cache row's fact as read: `(field, value, source, same_as)`. The names are borrowed
/// from the row's text when they hold no escape (always, for names ckpt writes): two fewer
/// allocations per fact of every unchanged checkpoint.
struct ReadRow<'a>(Text<'a>, Value, Text<'a>, Option<usize>);

/// A string borrowed from the input when it can be, owned when it had escapes.
struct Text<'a>(std::borrow::Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::Deserialize<'de> for ReadRow<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ReadRow<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[field, value, source] or [field, null, source, n]")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<ReadRow<'de>, A::Error> {
                use serde::de::Error;
                let field = a
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let value = a
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(1, &self))?;
                let source = a
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(2, &self))?;
                let same_as = a.next_element()?;
                Ok(ReadRow(field, value, source, same_as))
            }
        }
        d.deserialize_seq(V)
    }
}

/// The facts a cache row holds; `None` when the row does not parse into the vocabulary (the
/// row is then read again from the file, never misread).
pub fn facts_from_json(text: &str) -> Option<Vec<Fact>> {
    // Straight into facts: no intermediate array of values to walk and clone (this runs
    // once per unchanged checkpoint of every catalog).
    let rows: Vec<ReadRow> = serde_json::from_str(text).ok()?;
    let mut out: Vec<Fact> = Vec::with_capacity(rows.len());
    for ReadRow(field, value, source, same_as) in rows {
        let value = match same_as {
            // Only a reference to an earlier fact, holding a value, is one.
            Some(n) if value.is_null() => out.get(n)?.value.clone(),
            Some(_) => return None,
            None => value,
        };
        out.push(Fact::new(
            Field::parse(&field.0)?,
            value,
            Source::parse(&source.0)?,
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_round_trip() {
        for f in Field::SIMPLE {
            assert_eq!(Field::parse(&f.path()), Some(f.clone()));
        }
        for f in [
            Field::Model("encoder".into()),
            Field::Metric("val/hmean".into()),
            Field::Hparam("lr".into()),
            Field::Data("active_uids".into()),
        ] {
            assert_eq!(Field::parse(&f.path()), Some(f.clone()));
        }
        assert_eq!(Field::parse("bogus"), None);
        assert_eq!(Field::parse("model."), None);
        assert_eq!(Field::parse("sources.epoch"), None);
    }

    #[test]
    fn sources_are_ordered_by_precedence() {
        let mut sorted = Source::ALL;
        sorted.sort();
        assert_eq!(sorted, Source::ALL);
        for s in Source::ALL {
            assert_eq!(Source::parse(s.as_str()), Some(s));
        }
        assert!(Source::Checkpoint < Source::Hydra && Source::Hydra < Source::Sidecar);
        assert!(Source::Checkpoint < Source::Live && Source::Live < Source::Callback);
        assert!(Source::Sidecar < Source::FileName && Source::FileName < Source::Inferred);
    }

    #[test]
    fn cached_facts_round_trip_and_unknowns_are_refused() {
        let facts = vec![
            Fact::new(Field::Epoch, Value::from(3), Source::Checkpoint),
            Fact::new(
                Field::Metric("val/hmean".into()),
                Value::from(0.5),
                Source::Callback,
            ),
        ];
        assert_eq!(facts_from_json(&facts_to_json(&facts)), Some(facts));
        // A model part given twice is stored once and read back twice.
        let part = serde_json::json!({"model_name": "resnet50", "pretrained": true});
        let facts = vec![
            Fact::new(
                Field::Hparam("encoder".into()),
                part.clone(),
                Source::Hparams,
            ),
            Fact::new(Field::Epoch, Value::from(3), Source::Checkpoint),
            Fact::new(
                Field::Model("encoder".into()),
                part.clone(),
                Source::Hparams,
            ),
            Fact::new(
                Field::Hparam("empty".into()),
                serde_json::json!({}),
                Source::Hparams,
            ),
            Fact::new(
                Field::Hparam("none".into()),
                serde_json::json!({}),
                Source::Hparams,
            ),
        ];
        let text = facts_to_json(&facts);
        assert_eq!(text.matches("resnet50").count(), 1, "{text}");
        assert_eq!(facts_from_json(&text), Some(facts));
        // Names with escapes read as well as borrowed ones.
        assert_eq!(
            facts_from_json(r#"[["metrics.val\/h\u00e9", 1, "cleval"]]"#),
            Some(vec![Fact::new(
                Field::Metric("val/hé".into()),
                Value::from(1),
                Source::Cleval
            )])
        );
        // A reference forward, out of range, or beside a value is not a row of ours.
        assert_eq!(
            facts_from_json(r#"[["epoch", null, "checkpoint", 0]]"#),
            None
        );
        assert_eq!(
            facts_from_json(r#"[["epoch", 1, "checkpoint"], ["params", 2, "checkpoint", 0]]"#),
            None
        );
        assert_eq!(
            facts_from_json(r#"[["epoch", 1, "checkpoint", 0, 5]]"#),
            None
        );
        assert_eq!(facts_from_json(r#"[["epoch", 1, "oracle"]]"#), None);
        assert_eq!(facts_from_json(r#"[["nonsense", 1, "checkpoint"]]"#), None);
    }
}
