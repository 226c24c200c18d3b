//! The catalog: discovery over output trees, runs and experiments, the typed entry of each
//! checkpoint (resolved by the metadata crate's engine), the SQLite cache, queries.

pub mod cache;
pub mod catalog;
pub mod compare;
pub mod discover;
pub mod entry;
#[cfg(feature = "parquet")]
pub mod parquet;
/// Inference moved below the metadata crate; re-exported for the catalog's callers.
pub use ckpt_model::infer;
/// The parallel map lives with the reader so the converter can use it too.
pub use ckpt_torch::par;
pub mod pretty;
pub mod query;
pub mod resolve;

pub use ckpt_meta::fact::{Fact, Field, Source};
pub use entry::CatalogEntry;
