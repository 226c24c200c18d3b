//! torch.save containers read safely and lazily.
//!
//! [`Checkpoint::open`] reads a zip archive's central directory and `data.pkl` (or the legacy
//! stream's pickles, or a safetensors header) and nothing else: tensors become [`TensorRef`]s
//! whose bytes are read only when asked ([`Checkpoint::read_tensor`],
//! [`Checkpoint::tensor_sha256`], [`Checkpoint::read_scalar`]). The pickle is decoded by
//! `ckpt-pickle`, which never imports or calls anything; [`Doc`] gives the values their torch
//! meaning (OrderedDict, DictConfig, Namespace, numpy, torch.Size …).

pub mod bug;
mod container;
pub mod dcp;
mod doc;
mod dtype;
mod error;
mod gather;
pub mod json;
pub mod names;
/// Opening files safely; moved to `ckpt-io` (the bottom crate that also reads objects in
/// buckets) and re-exported so callers keep their paths.
pub use ckpt_io::open;
pub mod par;
pub mod pyrepr;
pub mod safetensors;
pub mod scan;
pub mod scan_file;
pub mod summary;
mod tensor;
pub mod torchscript;
mod zipdir;

pub use container::{ByteOrder, Checkpoint, Format, Options};
pub use doc::{
    ClassifyError, Doc, NdArray, Node, NodeId, ObjectNode, PersIdStyle, StorageRef, TensorKind,
    TensorRef, View,
};
pub use dtype::DType;
pub use error::{Error, Result};
pub use tensor::{scalar_from_le, sha256_hex, tensor_span};
