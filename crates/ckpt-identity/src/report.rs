//! The JSON that `ckpt hash --format json` and `ckpt diff --format json` print: typed, with a
//! JSON Schema each ([`hash_schema`], [`diff_schema`]) that `ckpt schema hash|diff` prints.
//! Keys are only ever added; `hash` and `components` keep the shape `v1` printed.

use serde::{Deserialize, Serialize};

use crate::Algorithm;
use crate::diff::Diff;
use crate::gather::{ConfigSource, DataSource, IdentityInputs};
use crate::hash::{Components, FolderName, Identity};

/// Where the configuration component came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigInput {
    pub source: ConfigSource,
    /// The file (or `hp/` folder) read; `null` for the checkpoint's own `hyper_parameters`.
    pub path: Option<String>,
}

/// Where the data component came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataInput {
    pub source: DataSource,
    pub path: String,
    /// Distinct UIDs read.
    pub uids: usize,
}

/// What the components were computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HashInputs {
    /// The checkpoint file read (a folder given resolves to its newest checkpoint).
    pub checkpoint: String,
    /// Tensors in its state dict.
    pub tensors: usize,
    pub hyperparameters: Option<ConfigInput>,
    pub data: Option<DataInput>,
}

impl HashInputs {
    pub fn of(inputs: &IdentityInputs) -> HashInputs {
        let s = |p: &std::path::Path| p.display().to_string();
        HashInputs {
            checkpoint: inputs.checkpoint.as_deref().map(s).unwrap_or_default(),
            tensors: inputs.tensors.len(),
            hyperparameters: inputs.hparams_source.map(|source| ConfigInput {
                source,
                path: inputs.hparams_path.as_deref().map(s),
            }),
            data: match (&inputs.uids, inputs.uids_source, &inputs.uids_path) {
                (Some(u), Some(source), Some(p)) => Some(DataInput {
                    source,
                    path: s(p),
                    uids: u.len(),
                }),
                _ => None,
            },
        }
    }
}

/// `ckpt hash --format json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HashReport {
    /// `<version>:<16 hex digits>`; compare it only with a hash of the same version.
    pub hash: String,
    pub components: Components,
    /// The algorithm version (also the hash's prefix).
    pub algorithm: Algorithm,
    pub inputs: HashInputs,
    /// The experiment folder the checkpoint is in and whether its name is this identity
    /// (`null` when the checkpoint is not in one).
    pub folder: Option<FolderName>,
}

impl HashReport {
    pub fn new(inputs: &IdentityInputs, id: Identity, folder: Option<FolderName>) -> HashReport {
        HashReport {
            hash: id.hash,
            components: id.components,
            algorithm: inputs.algorithm,
            inputs: HashInputs::of(inputs),
            folder,
        }
    }
}

/// One side of a diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffSide {
    /// As given.
    pub path: String,
    pub identity: Identity,
}

/// `ckpt diff --format json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffReport {
    /// The algorithm both identities were computed with.
    pub algorithm: Algorithm,
    pub a: DiffSide,
    pub b: DiffSide,
    /// The two identities are equal.
    pub identical: bool,
    pub diff: Diff,
}

/// The JSON Schema of [`HashReport`] (draft 2020-12, as it serializes).
pub fn hash_schema() -> serde_json::Value {
    schema_of::<HashReport>()
}

/// The JSON Schema of [`DiffReport`] (draft 2020-12, as it serializes).
pub fn diff_schema() -> serde_json::Value {
    schema_of::<DiffReport>()
}

fn schema_of<T: schemars::JsonSchema>() -> serde_json::Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}
