//! Facts and their sources: one ordered source list, one field vocabulary, one resolution
//! engine (winner + conflicts), a reader per source, and the `.metadata.yaml` sidecar (the
//! schema existing tools read) as a projection of a resolved checkpoint, with validation.

pub mod check;
pub mod config;
pub mod consulted;
pub mod engine;
pub mod extract;
pub mod fact;
pub mod hash_folder;
pub mod schema;
pub mod sidecar;
pub mod sources;
pub mod yaml;

pub use engine::{Conflict, Resolution, resolve};
pub use extract::{build_sidecar, project};
pub use fact::{Fact, Field, Source};
pub use schema::{Problem, json_schema, validate};
pub use sidecar::{Sidecar, SidecarError, Staleness};
pub use sources::names::Layout;
