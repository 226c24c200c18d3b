//! The live run as a source: what a training run observed at the moment it saved a
//! checkpoint (`ckpt.lightning.MetadataCallback` hands it over). Only the run knows these: the
//! metrics it held at full precision, the monitor / mode / `save_top_k` / `save_last` of the
//! `ModelCheckpoint` that saved the file (the file keeps a float32 score and a `best_k_models`
//! from which `save_top_k` can only be guessed), its Hydra job and its logger's run.
//!
//! Facts go in at [`Source::Live`]; the run's own description (Hydra job, logger, trainer)
//! becomes the sidecar's `run` section, which no other source fills.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::fact::{Fact, Field, Source};

/// What the run observed when it saved one checkpoint. Every part is optional: a run without
/// a logger or Hydra gives only its checkpoint callback's settings and metrics.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LiveRun {
    /// The run's current metrics (`trainer.callback_metrics`), by the names they were logged
    /// under. A value that is not a finite number is not a metric and is dropped.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// The saving callback's settings.
    #[serde(default)]
    pub monitor: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub save_top_k: Option<i64>,
    #[serde(default)]
    pub save_last: Option<bool>,
    /// The running Hydra job (`HydraConfig`): `job_name`, `job_num`, `output_dir`, `mode`,
    /// `overrides`, `choices`, `config` (the composed config's path) … kept as given.
    #[serde(default)]
    pub hydra: Option<Map<String, Value>>,
    /// The run's loggers: `name`, `version`, `run_id`, `save_dir`, `log_dir` … kept as given.
    #[serde(default)]
    pub loggers: Vec<Map<String, Value>>,
    /// The trainer: `world_size`, `strategy`, `current_epoch`, `global_step` … kept as given.
    #[serde(default)]
    pub trainer: Option<Map<String, Value>>,
    /// Who wrote the sidecar (`ckpt.lightning.MetadataCallback (lightning 2.6.6)`).
    #[serde(default)]
    pub writer: Option<String>,
}

impl LiveRun {
    /// The composed config of the running Hydra job, if it said where it is.
    pub fn hydra_config(&self) -> Option<&str> {
        self.hydra.as_ref()?.get("config")?.as_str()
    }
}

/// The facts the run gives, at [`Source::Live`].
pub fn live_facts(l: &LiveRun) -> Vec<Fact> {
    let mut out = Vec::new();
    for (name, v) in &l.metrics {
        if v.is_finite() {
            out.push(Fact::new(
                Field::Metric(name.clone()),
                json!(v),
                Source::Live,
            ));
        }
    }
    if let Some(m) = &l.monitor {
        out.push(Fact::new(Field::Monitor, json!(m), Source::Live));
    }
    if let Some(m) = l.mode.as_deref().filter(|m| matches!(*m, "min" | "max")) {
        out.push(Fact::new(Field::Mode, json!(m), Source::Live));
    }
    // Lightning accepts -1 (keep all) and up; anything else is not a setting it ran with.
    if let Some(k) = l.save_top_k.filter(|k| *k >= -1) {
        out.push(Fact::new(Field::SaveTopK, json!(k), Source::Live));
    }
    if let Some(s) = l.save_last {
        out.push(Fact::new(Field::SaveLast, json!(s), Source::Live));
    }
    out
}

/// The sidecar's `run` section: what only the live run knows about itself (no other source
/// fills it, and it is never read back as a fact).
pub fn run_section(l: &LiveRun) -> Option<Value> {
    let mut run = Map::new();
    if let Some(h) = &l.hydra {
        run.insert("hydra".into(), Value::Object(h.clone()));
    }
    if !l.loggers.is_empty() {
        run.insert(
            "loggers".into(),
            Value::Array(l.loggers.iter().cloned().map(Value::Object).collect()),
        );
    }
    if let Some(t) = &l.trainer {
        run.insert("trainer".into(), Value::Object(t.clone()));
    }
    (!run.is_empty()).then_some(Value::Object(run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_finite_metrics_become_live_facts() {
        let l: LiveRun = serde_json::from_value(json!({
            "metrics": {"val_loss": 0.25, "train_loss": 1.5},
            "monitor": "val_loss", "mode": "min", "save_top_k": 2, "save_last": true,
        }))
        .unwrap();
        let mut l = l;
        l.metrics.insert("diverged".into(), f64::NAN);
        let f = live_facts(&l);
        assert!(f.iter().all(|x| x.source == Source::Live));
        let get = |field: Field| f.iter().find(|x| x.field == field).map(|x| x.value.clone());
        assert_eq!(get(Field::Metric("val_loss".into())), Some(json!(0.25)));
        assert_eq!(get(Field::Metric("diverged".into())), None);
        assert_eq!(get(Field::Monitor), Some(json!("val_loss")));
        assert_eq!(get(Field::Mode), Some(json!("min")));
        assert_eq!(get(Field::SaveTopK), Some(json!(2)));
        assert_eq!(get(Field::SaveLast), Some(json!(true)));
        assert_eq!(run_section(&l), None);
    }

    #[test]
    fn settings_lightning_would_refuse_say_nothing_and_unknown_keys_are_refused() {
        let l = LiveRun {
            mode: Some("sideways".into()),
            save_top_k: Some(-3),
            ..LiveRun::default()
        };
        assert!(live_facts(&l).is_empty());
        assert!(serde_json::from_value::<LiveRun>(json!({"monitr": "x"})).is_err());
    }

    #[test]
    fn the_run_section_keeps_what_the_run_said() {
        let l: LiveRun = serde_json::from_value(json!({
            "hydra": {"job_name": "train", "job_num": 1, "config": "/o/.hydra/config.yaml"},
            "loggers": [{"name": "csv", "version": 0, "log_dir": "/o/csv/version_0"}],
        }))
        .unwrap();
        assert_eq!(l.hydra_config(), Some("/o/.hydra/config.yaml"));
        let r = run_section(&l).unwrap();
        assert_eq!(r["hydra"]["job_num"], 1);
        assert_eq!(r["loggers"][0]["version"], 0);
        assert!(r.get("trainer").is_none());
    }
}
