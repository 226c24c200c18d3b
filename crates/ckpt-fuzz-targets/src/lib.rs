//! The body of every fuzz target in `fuzz/`, as plain functions.
//!
//! `fuzz/fuzz_targets/<name>.rs` is one line that calls `ckpt_fuzz_targets::<name>`, and
//! `tests/replay.rs` calls the same function on every committed input (`fuzz/corpus/<name>/`
//! and `fuzz/regressions/<name>/`) under `cargo test`, so what the fuzzer ran and what the tests
//! replay cannot drift apart. A body returns normally on any input, good or bad: only a
//! panic, an abort, a hang or runaway memory is a finding.
//!
//! Targets that need several files (a DCP directory, a run folder for the catalog) read one
//! input as several files joined by [`SEP`] ([`split_files`]); `examples/make_seeds.rs` builds
//! seeds in that shape from the project's fixtures.

use std::path::Path;

use ckpt_convert::ConvertOptions;
use ckpt_torch::json::{JsonOptions, to_json};
use ckpt_torch::{Checkpoint, DType};

/// A target's body: one input in, whether it went all the way through out.
pub type Body = fn(&[u8]) -> bool;

/// Every target: its name (the `[[bin]]` in `fuzz/Cargo.toml`, the folder under
/// `fuzz/corpus/`) and its body. A body returns whether the input went all the way through
/// (decoded, opened, converted, catalogued …): the fuzzer ignores it; the replay test checks
/// that each corpus has inputs that do, so a harness that rejects everything early fails.
pub const TARGETS: &[(&str, Body)] = &[
    ("pickle_decode", pickle_decode),
    ("torch_open", torch_open),
    ("safetensors_header", safetensors_header),
    ("dcp_convert", dcp_convert),
    ("config_resolve", config_resolve),
    ("sidecar", sidecar),
    ("catalog_tree", catalog_tree),
];

/// Separates the files of a multi-file input. Short enough for libFuzzer to keep it intact
/// while it mutates the files around it, and never found in the fixtures the seeds come from.
pub const SEP: &[u8] = b"\0\xffFUZZFILE\xff\0";

/// Split an input into at most `max` files at each [`SEP`]; the last file keeps the rest.
pub fn split_files(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() + 1 < max {
        match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + SEP.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

/// The inverse of [`split_files`], for building seeds.
pub fn join_files(files: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(SEP);
        }
        out.extend_from_slice(f);
    }
    out
}

/// Write `bytes` at `dir/rel`, creating folders. Plain writes (no fsync): speed matters
/// more than durability in a scratch folder.
fn put(dir: &Path, rel: &str, bytes: &[u8]) -> bool {
    let path = dir.join(rel);
    if let Some(parent) = path.parent()
        && std::fs::create_dir_all(parent).is_err()
    {
        return false;
    }
    std::fs::write(path, bytes).is_ok()
}

/// A scratch folder, removed when dropped. Per call, so parallel test threads never share one.
fn scratch() -> Option<tempfile::TempDir> {
    tempfile::Builder::new().prefix("ckpt-fuzz-").tempdir().ok()
}

/// Options for a conversion into a scratch folder: no fsync, and a small shard size so
/// inputs with several tensors also go through the sharded-output path.
fn convert_options(dtype: Option<DType>) -> ConvertOptions {
    ConvertOptions::safetensors(4096, dtype)
}

/// Expand an opened checkpoint the way `ckpt dump --hash` does (JSON with every tensor
/// hashed, which reads every tensor's bytes), then check its storages.
fn expand(ck: &Checkpoint) -> bool {
    let opts = JsonOptions {
        max_nodes: 100_000,
        ..Default::default()
    };
    let json = to_json(&ck.doc, ck.doc.root(), &opts, &mut |t| {
        ck.tensor_sha256(t, "fuzz")
            .map(Some)
            .map_err(|e| e.to_string())
    });
    let storages = ck.check_storages();
    json.is_ok() && storages.is_ok()
}

/// `pickle_decode`: the bytes of a pickle, through the pickle VM.
pub fn pickle_decode(data: &[u8]) -> bool {
    ckpt_pickle::decode(data).is_ok()
}

/// `torch_open`: the bytes of a checkpoint file (zip, legacy, bare pickle, safetensors …),
/// opened, expanded to JSON with tensor hashing, storages checked.
pub fn torch_open(data: &[u8]) -> bool {
    let Some(dir) = scratch() else { return false };
    let path = dir.path().join("fuzz.ckpt");
    if std::fs::write(&path, data).is_err() {
        return false;
    }
    let Ok(ck) = Checkpoint::open(&path) else {
        return false;
    };
    expand(&ck)
}

/// `safetensors_header`: the JSON header of a safetensors file, then (after the first NUL
/// byte, which JSON text never holds) its tensor data. The target writes the 8-byte length
/// prefix itself, so every input is a header of the length it claims; opens, expands and
/// converts it (the conversion re-reads every tensor).
pub fn safetensors_header(data: &[u8]) -> bool {
    let (header, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Some(dir) = scratch() else { return false };
    let path = dir.path().join("model.safetensors");
    let mut file = Vec::with_capacity(8 + data.len());
    file.extend_from_slice(&(header.len() as u64).to_le_bytes());
    file.extend_from_slice(header);
    file.extend_from_slice(body);
    if std::fs::write(&path, &file).is_err() {
        return false;
    }
    let Ok(ck) = Checkpoint::open(&path) else {
        return false;
    };
    let expanded = expand(&ck);
    let out = dir.path().join("out");
    expanded && ckpt_convert::convert_file(&path, &out, &convert_options(None)).is_ok()
}

/// `dcp_convert`: a `torch.distributed.checkpoint` directory, as files joined by [`SEP`]:
/// `.metadata`, then `__0_0.distcp`, `__1_0.distcp`, … (at most 4). Reads the DCP index
/// (totals, dtypes, step), then converts the directory to safetensors; when that works,
/// converts it again with a cast to bf16.
pub fn dcp_convert(data: &[u8]) -> bool {
    let files = split_files(data, 5);
    let Some(dir) = scratch() else { return false };
    let ck = dir.path().join("ckpt");
    for (i, bytes) in files.iter().enumerate() {
        let name = match i {
            0 => ".metadata".to_owned(),
            n => format!("__{}_0.distcp", n - 1),
        };
        if !put(&ck, &name, bytes) {
            return false;
        }
    }
    if let Ok(ix) = ckpt_torch::dcp::DcpIndex::open(&ck) {
        let _ = ix.totals();
        let _ = ix.by_dtype();
        let _ = ix.step();
    }
    let converted = ckpt_convert::convert_dcp(&ck, &dir.path().join("out"), &convert_options(None));
    converted.is_ok()
        && ckpt_convert::convert_dcp(
            &ck,
            &dir.path().join("out_bf16"),
            &convert_options(Some(DType::BF16)),
        )
        .is_ok()
}

/// `config_resolve`: a config file beside a checkpoint (`.hydra/config.yaml`, `hparams.yaml`;
/// JSON when it starts with `{`), read with interpolations resolved, then a few lookups.
pub fn config_resolve(data: &[u8]) -> bool {
    let Some(dir) = scratch() else { return false };
    let name = if data.first() == Some(&b'{') {
        "config.json"
    } else {
        "config.yaml"
    };
    let path = dir.path().join(name);
    if std::fs::write(&path, data).is_err() {
        return false;
    }
    let Ok(v) = ckpt_meta::config::read_config(&path) else {
        return false;
    };
    for key in ["model", "model.name", "trainer.max_epochs", "0"] {
        let _ = ckpt_meta::config::lookup(&v, key);
    }
    ckpt_meta::config::lookup(&v, "").is_some()
}

/// `sidecar`: a `.metadata.yaml` sidecar (`.metadata.json` when it starts with `{`): read,
/// validated, reordered and rendered the way `ckpt meta` rewrites it, and read back. What
/// ckpt writes, ckpt must read back to the same value: a difference panics (a finding).
pub fn sidecar(data: &[u8]) -> bool {
    use ckpt_meta::sidecar::{Sidecar, merge_unknown, ordered, render};
    let Some(dir) = scratch() else { return false };
    let ext = if data.first() == Some(&b'{') {
        "json"
    } else {
        "yaml"
    };
    let path = dir.path().join(format!("model.metadata.{ext}"));
    if std::fs::write(&path, data).is_err() {
        return false;
    }
    let Ok(sc) = Sidecar::read(&path) else {
        return false;
    };
    for p in ckpt_meta::validate(&sc.value) {
        let _ = p.to_string();
    }
    let _ = ckpt_meta::schema::major_version(&sc.value);
    let mut rewritten = ordered(sc.value.clone());
    merge_unknown(&mut rewritten, &sc.value);
    let text = render(&path, &rewritten);
    let again = dir.path().join(format!("again.metadata.{ext}"));
    if std::fs::write(&again, &text).is_err() {
        return false;
    }
    match Sidecar::read(&again) {
        Ok(back) => assert!(
            back.value == rewritten,
            "a rendered sidecar reads back different:\nwritten {rewritten}\nread    {}\ntext:\n{text}",
            back.value
        ),
        Err(e) => panic!("a rendered sidecar does not read back: {e}\ntext:\n{text}"),
    }
    true
}

/// The files of a `catalog_tree` input, in order, as a Lightning run inside a Hydra output
/// folder lays them out.
pub const CATALOG_TREE_FILES: [&str; 5] = [
    "lightning_logs/version_0/checkpoints/epoch=1-step=10-val_loss=0.5.ckpt",
    "lightning_logs/version_0/hparams.yaml",
    ".hydra/config.yaml",
    "lightning_logs/version_0/metrics.csv",
    "lightning_logs/version_0/checkpoints/epoch=1-step=10-val_loss=0.5.metadata.yaml",
];

/// `catalog_tree`: a small run folder, as files joined by [`SEP`] in the order of
/// [`CATALOG_TREE_FILES`] (a file the input does not reach is not written), catalogued
/// without a cache; the entries then go through the queries `ckpt` runs on them.
pub fn catalog_tree(data: &[u8]) -> bool {
    let files = split_files(data, CATALOG_TREE_FILES.len());
    let Some(dir) = scratch() else { return false };
    let root = dir.path().join("outputs");
    for (rel, bytes) in CATALOG_TREE_FILES.iter().zip(&files) {
        if !put(&root, rel, bytes) {
            return false;
        }
    }
    let opts = ckpt_catalog::catalog::Options::default();
    let Ok(cat) = ckpt_catalog::catalog::build(&[root], &opts) else {
        return false;
    };
    let mut entries = cat.entries;
    let _ = ckpt_catalog::compare::experiments(&entries, ckpt_catalog::query::GroupBy::Run);
    let _ = ckpt_catalog::compare::latest(&entries, None);
    ckpt_catalog::query::sort(&mut entries, "val_loss", false);
    let _ = ckpt_catalog::query::best(
        entries.clone(),
        Some("val_loss"),
        None,
        ckpt_catalog::query::GroupBy::Experiment,
    );
    // Through when the checkpoint became an entry without an error.
    let through = entries.iter().any(|e| e.error.is_none());
    let _ = ckpt_catalog::query::latest(entries, ckpt_catalog::query::GroupBy::Run);
    through
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_inverts_join() {
        let parts: [&[u8]; 3] = [b"a", b"", b"ccc"];
        assert_eq!(split_files(&join_files(&parts), 5), parts.to_vec());
        // At most `max` files: the last keeps the separators after it.
        assert_eq!(
            split_files(&join_files(&parts), 2),
            vec![&b"a"[..], &join_files(&parts[1..])[..]]
        );
        assert_eq!(split_files(b"", 3), vec![&b""[..]]);
    }
}
