use std::path::PathBuf;

/// Everything that can go wrong reading a checkpoint. Each variant carries where: the file, and
/// when it applies the zip entry or pickle byte offset. `Display` is one line, meant for users.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", with_path(path, source))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: empty file")]
    Empty { path: PathBuf },
    #[error("{path}: not a torch checkpoint: {reason}")]
    NotACheckpoint { path: PathBuf, reason: String },
    #[error("{path}: damaged zip archive: {detail}")]
    Zip { path: PathBuf, detail: String },
    #[error("{path}: zip archive has no data.pkl entry (entries: {entries})")]
    NoDataPkl { path: PathBuf, entries: String },
    #[error("{path}: zip entry {entry} is compressed ({method}); torch.save never compresses")]
    Compressed {
        path: PathBuf,
        entry: String,
        method: String,
    },
    #[error("{path}: {source} of {entry}")]
    Pickle {
        path: PathBuf,
        entry: String,
        #[source]
        source: ckpt_pickle::Error,
    },
    #[error("{path}: {entry} is {size} bytes, over the {limit}-byte limit for a pickle")]
    PickleTooLarge {
        path: PathBuf,
        entry: String,
        size: u64,
        limit: u64,
    },
    #[error("{path}: malformed {what} at byte {offset} of {entry}: {detail}")]
    Malformed {
        path: PathBuf,
        entry: String,
        offset: u64,
        what: &'static str,
        detail: String,
    },
    #[error("{path}: storage {key} is referenced by the pickle but missing from the archive")]
    MissingStorage { path: PathBuf, key: String },
    #[error("{path}: storage {key}: {detail}")]
    BadStorage {
        path: PathBuf,
        key: String,
        detail: String,
    },
    #[error("{path}: legacy format: {detail}")]
    Legacy { path: PathBuf, detail: String },
    #[error("{path}: safetensors: {detail}")]
    Safetensors { path: PathBuf, detail: String },
    #[error("{path}: DCP checkpoint: {detail}")]
    Dcp { path: PathBuf, detail: String },
    #[error("{path}: tensor at {at}: {detail}")]
    Tensor {
        path: PathBuf,
        at: String,
        detail: String,
    },
    #[error("{path}: {detail}")]
    Output { path: PathBuf, detail: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `path: error`, naming the path once: an error from object storage names its URL already
/// (`s3://b/k: GET bytes=0-65535: 503 …`), a local one never does.
pub(crate) fn with_path(path: &std::path::Path, e: &std::io::Error) -> String {
    let text = e.to_string();
    let shown = path.display().to_string();
    if text
        .strip_prefix(&shown)
        .is_some_and(|r| r.starts_with(": "))
    {
        text
    } else {
        format!("{shown}: {text}")
    }
}
