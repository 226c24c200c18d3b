//! Knowledge of models, from names, shapes and dtypes only: what a state dict's signature
//! says the model is. Below the metadata crate, so the sidecar writer and the catalog infer
//! the same thing.

pub mod infer;

pub use infer::{Inference, TensorSig, infer};
