//! The checkpoint metadata model: `.metadata.yaml` sidecars in the schema existing tools read
//! (`schema_version: '1.0'`) plus ckpt's optional sections (provenance, fingerprint, state),
//! validation with field paths, and extraction from every source with provenance.

pub mod config;
pub mod extract;
pub mod hash_folder;
pub mod schema;
pub mod sidecar;
pub mod yaml;

pub use extract::{ExtraSources, Layout, build_sidecar, build_sidecar_lenient};
pub use schema::{Problem, json_schema, validate};
pub use sidecar::{Sidecar, SidecarError, Staleness};
