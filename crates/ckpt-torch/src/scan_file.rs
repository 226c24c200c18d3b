//! The path `ckpt scan`'s file scan had before it moved into [`crate::scan`]: kept so that
//! callers written against it (`ckpt_torch::scan_file::scan_path`) still compile; new code
//! uses `ckpt_torch::scan`.

pub use crate::scan::{FileScan, FileVerdict, MAX_INFLATED, ScanLimits, scan_path};
pub use crate::zipdir::{inflate, torch_zip_lookup};
