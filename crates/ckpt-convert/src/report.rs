//! What a conversion reports: per checkpoint, and for a whole `ckpt convert` run (its
//! `--format json` output, a contract with a JSON Schema).

/// The outcome of one conversion.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Converted {
    pub input: String,
    pub output: String,
    pub state_dict_key: String,
    pub tensors: usize,
    pub bytes: u64,
    /// Names not written because their storage is written under another name.
    pub tied: Vec<String>,
    /// Prefixes removed.
    pub stripped_prefixes: Vec<String>,
    /// Entries next to the state dict that are not tensors (epoch, step, optimizer …).
    pub other_keys: Vec<String>,
    /// Compared with the base folder's own weights, when it has some: names it has that the
    /// output lacks, and the reverse.
    pub missing_keys: Vec<String>,
    pub unexpected_keys: Vec<String>,
    /// When missing and unexpected names differ by a prefix: the flag that would fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}
