//! The catalog: discovery over output trees, the resolution chain per checkpoint with
//! provenance, the SQLite cache, ranking and filtering.

pub mod cache;
pub mod catalog;
pub mod compare;
pub mod discover;
pub mod fact;
pub mod infer;
/// The parallel map lives with the reader so the converter can use it too.
pub use ckpt_torch::par;
pub mod query;
pub mod resolve;
pub mod retention;
pub mod sources;

pub use fact::Fact;
