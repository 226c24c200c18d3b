//! One value found by one source.

use serde_json::Value;

/// A value for a dotted entry field (`epoch`, `model.architecture`, `metrics.val_f1`,
/// `experiment`), and the name of the source that found it (`hparams_yaml`, `json_report`,
/// `folder_name`, `file_name`, `checkpoint`, `inferred` …). The resolver keeps the first fact
/// for each field, in source order.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    pub path: String,
    pub value: Value,
    pub source: &'static str,
}

impl Fact {
    pub fn new(path: impl Into<String>, value: Value, source: &'static str) -> Fact {
        Fact {
            path: path.into(),
            value,
            source,
        }
    }
}
