//! Why the inputs of an identity could not be gathered: each error names the file (and the
//! key, line or entry) it is about.

use std::path::PathBuf;

use ckpt_meta::config::{ConfigError, ResolveError};
use ckpt_meta::hash_folder::{LayoutError, MAX_HP_FILES, UidError};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The reader's error names the file (and the entry or byte offset).
    #[error("{source}")]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: Box<ckpt_torch::Error>,
    },
    #[error("{}: no such file or directory", path.display())]
    NotFound { path: PathBuf },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("{}: no checkpoint_step_*.pt in it or in its model/ folder", path.display())]
    NoCheckpoint { path: PathBuf },
    #[error("{}: {source}", path.display())]
    HparamsResolve {
        path: PathBuf,
        #[source]
        source: ResolveError,
    },
    #[error("cannot read hyperparameters")]
    Hparams {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    #[error("{}: more than {MAX_HP_FILES} hyperparameter files; a partial config cannot be hashed", path.display())]
    TooManyHpFiles { path: PathBuf },
    #[error(transparent)]
    Uids(#[from] UidError),
    #[error(
        "{hash}: written by identity algorithm {version:?}, which this ckpt does not know (it knows {})",
        crate::Algorithm::ALL.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
    )]
    UnknownAlgorithm { hash: String, version: String },
}
