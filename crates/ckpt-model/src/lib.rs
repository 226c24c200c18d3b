//! Knowledge of models, from names, shapes and dtypes only — never tensor data, never code:
//! which mapping of a checkpoint is the state dict ([`state_dict`]), the wrapper prefixes
//! training frameworks add to names ([`wrappers`]), what `inspect` shows of a checkpoint
//! ([`summary`], its state dicts) and what architecture a state dict is ([`infer`]).
//!
//! It sits above the containers (`ckpt-torch`) and below everything that needs one answer to
//! "what model is this": the sidecar writer (`ckpt-meta`), the catalog and `convert`.

pub mod infer;
pub mod state_dict;
pub mod summary;
pub mod wrappers;

pub use infer::{Inference, TensorSig, infer};
pub use state_dict::{Located, locate};
pub use summary::Summarize;
