//! Why a conversion failed, naming the file (and the tensor, key or base model) at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Read(#[from] ckpt_torch::Error),
    #[error("{path}: no state dict found (give --key)")]
    NoStateDict { path: PathBuf },
    #[error("{path}: no state dict at --key {key}")]
    NoKey { path: PathBuf, key: String },
    #[error("{path}: TorchScript archive: {detail}")]
    TorchScript { path: PathBuf, detail: String },
    #[error(
        "{path}: holds flattened FSDP parameters ({name}); they cannot be split into named tensors without FSDP's metadata. Save a full state dict instead: FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT) before model.state_dict(), or use_orig_params=True, or a sharded DCP checkpoint"
    )]
    FlatParam { path: PathBuf, name: String },
    #[error("{path}: two tensors would both be named {name}")]
    Collision { path: PathBuf, name: String },
    #[error("{path}: {dtype} tensors cannot be written to safetensors")]
    Dtype { path: PathBuf, dtype: String },
    #[error("{path}: already exists (use --force to replace it)")]
    Exists { path: PathBuf },
    #[error("{path}: not replaced, even with --force: {detail}")]
    NotReplaced { path: PathBuf, detail: String },
    #[error("{path}: base model: {detail}")]
    Base { path: PathBuf, detail: String },
    #[error("{path}: DCP checkpoint: {detail}")]
    Dcp { path: PathBuf, detail: String },
    /// The checkpoint is not the model the base folder describes: writing it would give a
    /// folder transformers loads with random or mismatched weights.
    #[error("{path}: does not fit the base model {base}: {detail}")]
    Misfit {
        path: PathBuf,
        base: PathBuf,
        detail: String,
    },
    /// What the tensors claim cannot be written: more bytes than a file can hold, or views
    /// that repeat their storage into far more bytes than the checkpoint has.
    #[error("{path}: {detail}")]
    Size { path: PathBuf, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) type Result<T, E = ConvertError> = std::result::Result<T, E>;
