//! Experiment identity: a deterministic hash of what makes two checkpoints "the same
//! experiment" — the model's architecture, its run's configuration and its training data —
//! that does not trust folder names and never reads tensor values; and the diff of two
//! checkpoints by the same inputs.
//!
//! Modules, one idea each:
//! - [`algorithm`]: the versions (`v1`, `v2`) and their specification;
//! - [`gather`]: finding and reading the inputs (tensors, configuration, UIDs), by version;
//! - [`canonical`]: the canonical JSON text a configuration is hashed as;
//! - [`hash`]: combining inputs into an identity; a folder named by an identity;
//! - [`diff`]: what changed between two checkpoints;
//! - [`compare`]: N checkpoints side by side;
//! - [`report`]: the typed JSON `ckpt hash` and `ckpt diff` print, and their schemas;
//! - [`tensors`]: the tensor names and shapes the architecture component is computed from.
//!
//! The hash-folder layout and the UID files are read by `ckpt_meta::hash_folder`, shared with
//! the catalog.

pub mod algorithm;
pub mod canonical;
pub mod compare;
pub mod diff;
mod error;
pub mod gather;
pub mod hash;
pub mod report;
pub mod tensors;

pub use algorithm::Algorithm;
pub use error::IdentityError;
pub use gather::{ConfigSource, DataSource, HashOptions, IdentityInputs, gather, gather_planned};
pub use hash::{Components, FolderName, Identity, folder_name, identity};
pub use report::{DiffReport, HashReport, diff_schema, hash_schema};
pub use tensors::TensorTable;
