//! `torch.distributed.checkpoint` directories, indexed from `.metadata` alone.
//!
//! `.metadata` is a plain pickle of DCP's `Metadata`: `state_dict_metadata` maps each key to a
//! `TensorStorageMetadata` (global `size`, `properties` whose first field is the dtype, the
//! `chunks`) or to a `BytesStorageMetadata` (a non-tensor value); `storage_data` maps each
//! `MetadataIndex(fqn, offset, index)` — `offset` being the chunk's global offsets — to a
//! `_StorageInfo(relative_path, offset, length)`: where, in which `__<rank>_<n>.distcp` file,
//! that chunk's torch.save archive lies. Nothing here reads tensor data or opens a `.distcp`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::container::Checkpoint;
use crate::doc::{Doc, NodeId, View};
use crate::dtype::DType;
use crate::error::{Error, Result};

/// Where one chunk of a tensor lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcpChunk {
    /// The chunk's position in the global tensor, per dimension (zeros when `.metadata` has
    /// none, as for a tensor saved whole).
    pub offsets: Vec<u64>,
    /// The `.distcp` file, relative to the directory (checked not to leave it).
    pub file: String,
    /// The chunk's torch.save archive: byte offset and length in `file`.
    pub offset: u64,
    pub len: u64,
}

/// One tensor of a DCP checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcpTensor {
    pub fqn: String,
    /// From the tensor's properties (`None` when `.metadata` does not say).
    pub dtype: Option<DType>,
    pub shape: Vec<u64>,
    /// In the order `storage_data` lists them.
    pub chunks: Vec<DcpChunk>,
}

impl DcpTensor {
    /// Elements, saturating.
    pub fn numel(&self) -> u64 {
        self.shape
            .iter()
            .try_fold(1u64, |a, d| a.checked_mul(*d))
            .unwrap_or(u64::MAX)
    }

    /// Bytes, saturating (4 per element when the dtype is not recorded).
    pub fn nbytes(&self) -> u64 {
        self.numel()
            .saturating_mul(self.dtype.map_or(4, DType::size))
    }
}

/// What `.metadata` says about a DCP directory.
#[derive(Debug, Clone)]
pub struct DcpIndex {
    pub dir: PathBuf,
    pub metadata: PathBuf,
    pub tensors: Vec<DcpTensor>,
    /// Keys of non-tensor entries (`step`, flattened `sched.lr` …).
    pub other: Vec<String>,
    /// Where each non-tensor entry's value is stored (a torch.save archive of the value).
    pub values: Vec<(String, DcpChunk)>,
    /// Every `.distcp` file a chunk or value lives in.
    pub files: BTreeSet<String>,
    /// `Metadata.version` when recorded.
    pub version: Option<String>,
}

/// Whether `dir` looks like a DCP checkpoint (has a `.metadata` file): a local folder, or a
/// prefix in a bucket (looked up in its listing, see [`ckpt_io::stat`]).
pub fn is_dcp_dir(dir: &Path) -> bool {
    let is = |p: &Path, kind: ckpt_io::Kind| ckpt_io::stat(p).is_ok_and(|s| s.kind == kind);
    is(dir, ckpt_io::Kind::Dir) && is(&dir.join(".metadata"), ckpt_io::Kind::File)
}

/// Non-negative integers of a tuple or list (a `torch.Size`).
fn ints(doc: &Doc, id: NodeId) -> Option<Vec<u64>> {
    let items = match doc.view(id) {
        View::Tuple(t) | View::List(t) => t,
        _ => return None,
    };
    items
        .iter()
        .map(|i| doc.as_i64(*i).and_then(|v| u64::try_from(v).ok()))
        .collect()
}

impl DcpIndex {
    /// Read `dir/.metadata`.
    pub fn open(dir: &Path) -> Result<DcpIndex> {
        let metadata = dir.join(".metadata");
        let meta = Checkpoint::open(&metadata)?;
        let doc = &meta.doc;
        let root = doc.root();
        let bad = |detail: String| Error::Dcp {
            path: metadata.clone(),
            detail,
        };
        let sdm = doc
            .at_path(root, "state_dict_metadata")
            .and_then(|id| doc.dict(id))
            .ok_or_else(|| bad("no state_dict_metadata".into()))?;
        let storage = doc
            .at_path(root, "storage_data")
            .and_then(|id| doc.dict(id))
            .ok_or_else(|| bad("no storage_data".into()))?;
        let mut files = BTreeSet::new();
        let mut chunks: HashMap<String, Vec<DcpChunk>> = HashMap::new();
        for (k, v) in storage {
            let (Some(fqn), Some(rel), Some(off), Some(len)) = (
                doc.at_path(*k, "fqn").and_then(|x| doc.as_str(x)),
                doc.at_path(*v, "relative_path").and_then(|x| doc.as_str(x)),
                doc.at_path(*v, "offset").and_then(|x| doc.as_i64(x)),
                doc.at_path(*v, "length").and_then(|x| doc.as_i64(x)),
            ) else {
                continue;
            };
            let (Ok(offset), Ok(len)) = (u64::try_from(off), u64::try_from(len)) else {
                return Err(bad(format!("{fqn}: negative offset or length")));
            };
            let escapes = Path::new(rel)
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)));
            if escapes || rel.contains('\\') || rel.is_empty() {
                return Err(bad(format!(
                    "{fqn}: storage path {rel:?} leaves the directory"
                )));
            }
            files.insert(rel.to_owned());
            chunks.entry(fqn.to_owned()).or_default().push(DcpChunk {
                offsets: doc
                    .at_path(*k, "offset")
                    .and_then(|x| ints(doc, x))
                    .unwrap_or_default(),
                file: rel.to_owned(),
                offset,
                len,
            });
        }
        let mut tensors = Vec::new();
        let mut other = Vec::new();
        let mut values = Vec::new();
        for (k, v) in sdm {
            let Some(fqn) = doc.as_str(*k) else { continue };
            let is_tensor = matches!(doc.view(*v), View::Object(o) if o.class.ends_with("TensorStorageMetadata"));
            if !is_tensor {
                other.push(fqn.to_owned());
                if let Some(c) = chunks.remove(fqn).and_then(|c| c.into_iter().next()) {
                    values.push((fqn.to_owned(), c));
                }
                continue;
            }
            let shape = doc
                .at_path(*v, "size")
                .and_then(|x| ints(doc, x))
                .ok_or_else(|| bad(format!("{fqn}: no tensor size")))?;
            // TensorProperties pickles its state as a tuple whose first field is the dtype (a
            // dict with `dtype` in older versions).
            let props = doc
                .at_path(*v, "properties")
                .and_then(|p| match doc.view(p) {
                    View::Object(o) => o.state,
                    _ => None,
                });
            let dtype = props
                .and_then(|st| match doc.view(st) {
                    View::Tuple(t) | View::List(t) => t.first().copied(),
                    View::Dict(_) => doc.get(st, "dtype"),
                    _ => None,
                })
                .and_then(|d| doc.as_str(d))
                .and_then(DType::from_name);
            let mut parts = chunks.remove(fqn).unwrap_or_default();
            for c in &mut parts {
                if c.offsets.is_empty() {
                    c.offsets = vec![0; shape.len()];
                }
            }
            if parts.is_empty() {
                return Err(bad(format!("{fqn}: no stored chunk")));
            }
            tensors.push(DcpTensor {
                fqn: fqn.to_owned(),
                dtype,
                shape,
                chunks: parts,
            });
        }
        let version = doc
            .at_path(root, "version")
            .and_then(|x| doc.as_str(x))
            .map(str::to_owned);
        Ok(DcpIndex {
            dir: dir.to_path_buf(),
            metadata,
            tensors,
            other,
            values,
            files,
            version,
        })
    }

    /// A non-tensor entry that holds an integer (`step`, `epoch`): one small read of its
    /// archive. `None` when absent, not an int, or over 1 MB (not a scalar).
    pub fn read_int(&self, key: &str) -> Option<i64> {
        let (_, c) = self.values.iter().find(|(k, _)| k == key)?;
        if c.len > 1 << 20 {
            return None;
        }
        let ck = Checkpoint::open_range(
            self.dir.join(&c.file),
            c.offset,
            c.len,
            &crate::Options::default(),
        )
        .ok()?;
        ck.doc.as_i64(ck.doc.root())
    }

    /// Elements and bytes of every tensor, saturating.
    pub fn totals(&self) -> (u64, u64) {
        self.tensors.iter().fold((0u64, 0u64), |(e, b), t| {
            (e.saturating_add(t.numel()), b.saturating_add(t.nbytes()))
        })
    }

    /// Tensors, elements and bytes per dtype (`unknown` when `.metadata` records none), by
    /// dtype name.
    pub fn by_dtype(&self) -> Vec<crate::summary::DTypeTotal> {
        let mut by: std::collections::BTreeMap<&str, crate::summary::DTypeTotal> =
            std::collections::BTreeMap::new();
        for t in &self.tensors {
            let name = t.dtype.map_or("unknown", DType::name);
            let e = by.entry(name).or_insert(crate::summary::DTypeTotal {
                dtype: name.to_owned(),
                tensors: 0,
                elements: 0,
                bytes: 0,
            });
            e.tensors += 1;
            e.elements = e.elements.saturating_add(t.numel());
            e.bytes = e.bytes.saturating_add(t.nbytes());
        }
        by.into_values().collect()
    }

    /// The training step saved beside the tensors (`global_step`, else `step`), if an int.
    pub fn step(&self) -> Option<i64> {
        ["global_step", "step"]
            .iter()
            .find_map(|k| self.read_int(k))
    }
}
