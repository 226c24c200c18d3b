//! What a conversion reports: per checkpoint ([`Converted`]), and for a whole `ckpt convert`
//! run ([`ConvertRun`], its `--format json` output: a contract, with a JSON Schema derived from
//! these very types, [`json_schema`]). Fields are only ever added.

use serde::{Deserialize, Serialize};

/// The outcome of one conversion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Converted {
    /// The checkpoint file or DCP directory, as given.
    pub input: String,
    /// The folder written (or that would be, with `--dry-run`).
    pub output: String,
    /// Dotted path of the state dict inside the checkpoint (`state_dict`, `model`; empty for
    /// the top level), chosen by the rule `inspect` and the catalog share.
    pub state_dict_key: String,
    /// Tensors written.
    pub tensors: usize,
    /// Bytes of tensor data written (after `--dtype`).
    pub bytes: u64,
    /// Names not written because their storage is written under another name.
    pub tied: Vec<String>,
    /// Wrapper prefixes removed, in the order first seen.
    pub stripped_prefixes: Vec<String>,
    /// Entries next to the state dict that are not tensors (epoch, step, optimizer …).
    pub other_keys: Vec<String>,
    /// Compared with the base folder's own weights, when it has some: names it has that the
    /// output lacks, and the reverse.
    pub missing_keys: Vec<String>,
    pub unexpected_keys: Vec<String>,
    /// When missing and unexpected names differ by a prefix: the flag that would fix it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// `ckpt convert --format json`: one entry per checkpoint, in the order converted, and how
/// many failed (the exit code is 1 when any did).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ConvertRun {
    pub conversions: Vec<Conversion>,
    pub failed: usize,
}

/// One checkpoint of a run: converted, with its report, or failed, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum Conversion {
    /// Boxed: a report is several times the size of a failure.
    Succeeded(Box<Succeeded>),
    Failed(Failed),
}

/// A checkpoint converted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Succeeded {
    /// The checkpoint, as found (a file of a folder given, a DCP directory).
    pub input: String,
    pub status: SucceededStatus,
    pub report: Converted,
}

/// A checkpoint that failed; the others of the run are still converted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Failed {
    pub input: String,
    pub status: FailedStatus,
    /// One line: the file, and what is wrong with it (or the bug in ckpt).
    pub error: String,
}

/// Always `succeeded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum SucceededStatus {
    Succeeded,
}

/// Always `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum FailedStatus {
    Failed,
}

impl Conversion {
    pub fn succeeded(input: String, report: Converted) -> Conversion {
        Conversion::Succeeded(Box::new(Succeeded {
            input,
            status: SucceededStatus::Succeeded,
            report,
        }))
    }

    pub fn failed(input: String, error: String) -> Conversion {
        Conversion::Failed(Failed {
            input,
            status: FailedStatus::Failed,
            error,
        })
    }

    pub fn input(&self) -> &str {
        match self {
            Conversion::Succeeded(s) => &s.input,
            Conversion::Failed(f) => &f.input,
        }
    }
}

/// The JSON Schema (draft 2020-12) of `ckpt convert --format json`, as the output serializes:
/// [`ConvertRun`].
#[cfg(feature = "schema")]
pub fn json_schema() -> serde_json::Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<ConvertRun>()
        .to_value()
}

#[cfg(all(test, feature = "schema"))]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The schema names every field of the report and admits no other.
    #[test]
    fn the_schema_is_closed_and_complete() {
        let s = json_schema();
        let converted = &s["$defs"]["Converted"];
        assert_eq!(converted["additionalProperties"], false, "{s:#}");
        let props: Vec<&str> = converted["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(props.contains(&"state_dict_key") && props.contains(&"hint"));
        let required = converted["required"].as_array().unwrap();
        // Every field is always written, except a hint there is none of.
        assert_eq!(required.len(), props.len() - 1, "{converted:#}");
        assert!(!required.contains(&Value::from("hint")));
    }
}
