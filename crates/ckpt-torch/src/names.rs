//! What a checkpoint's file name says. Names only ever *suggest* a format (the readers decide
//! by content), but walkers must not miss files because of a naming habit: PyTorch's own
//! ImageNet example and many published models save `model_best.pth.tar` — a torch.save zip
//! whatever the `.tar` says.

use std::path::Path;

/// Extensions that only wrap the real one: `model_best.pth.tar` is a `.pth` checkpoint.
const WRAPPERS: &[&str] = &["tar"];

/// The extension that describes the checkpoint, lower-cased: the last one, or the one before a
/// wrapper extension (`pth` for `model_best.pth.tar`). `None` when there is none.
pub fn checkpoint_extension(p: &Path) -> Option<String> {
    let name = p.file_name()?.to_str()?;
    let mut parts = name.rsplit('.');
    let last = parts.next()?.to_ascii_lowercase();
    // A name without a dot has no extension ("weights").
    let inner = parts.next()?;
    // `x.pth.tar`: the part before `.tar` counts only when it is itself an extension (there is
    // a stem before it); `weights.tar` is a tar.
    if WRAPPERS.contains(&last.as_str()) && parts.next().is_some() {
        return Some(inner.to_ascii_lowercase());
    }
    Some(last)
}

/// Does `p`'s name carry one of `extensions` (lower-case, as [`checkpoint_extension`] reads it)?
pub fn has_checkpoint_extension(p: &Path, extensions: &[&str]) -> bool {
    checkpoint_extension(p).is_some_and(|e| extensions.contains(&e.as_str()))
}

/// Extensions checkpoints are saved under; a file so named is a candidate without reading it
/// (the readers then judge it by content). `jit`: TorchScript archives.
pub const CHECKPOINT_EXTENSIONS: &[&str] = &["ckpt", "pt", "pth", "bin", "safetensors", "jit"];

/// Extensions that are never checkpoints (logs, configs, reports, images, code, DCP shards,
/// TensorBoard events): not even opened to look.
const NOT_CHECKPOINTS: &[&str] = &[
    "yaml", "yml", "json", "jsonl", "csv", "tsv", "txt", "log", "md", "rst", "py", "ipynb", "sh",
    "toml", "cfg", "ini", "lock", "png", "jpg", "jpeg", "gif", "svg", "bmp", "webp", "pdf", "html",
    "css", "js", "distcp", "sqlite", "sqlite3", "db", "wal", "shm", "parquet", "gz", "zst", "xz",
    "bz2", "onnx", "npz", "npy", "h5", "hdf5", "pb", "tflite", "mp4", "wav", "mp3", "wandb",
];

/// What the first bytes of a file say it holds, when it is something a checkpoint reader
/// reads: a zip (torch.save's default, TorchScript), a pickle (torch.save's legacy format, a
/// bare pickle), a safetensors file. Reads at most 16 bytes; never opens what is not a regular
/// file.
pub fn sniff(path: &Path) -> Option<&'static str> {
    let src = ckpt_io::open(path).ok()?;
    sniff_source(&*src)
}

/// [`sniff`] of a source already open (a file, or an object: one small ranged read).
pub fn sniff_source(src: &dyn ckpt_io::ByteSource) -> Option<&'static str> {
    let len = src.len();
    let mut head = [0u8; 16];
    let n = usize::try_from(len.min(16)).ok()?;
    src.read_exact_at(&mut head[..n], 0).ok()?;
    let head = &head[..n];
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Some("zip");
    }
    if head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        return Some("pickle");
    }
    if head.len() >= 9 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[..8]);
        let header = u64::from_le_bytes(b);
        if header >= 2 && header <= len.saturating_sub(8) && head[8] == b'{' {
            return Some("safetensors");
        }
    }
    None
}

/// Is `p` a checkpoint file to list: by name when it carries a checkpoint extension, else by
/// content unless its extension says it is something else (`model`, `weights.pkl` and
/// `final` are found when they hold a zip, a pickle or safetensors). The one rule every
/// walker uses.
pub fn is_checkpoint_file(p: &Path) -> bool {
    // TensorBoard event files end in a number (`events.out.tfevents.1700000000.host.42.0`).
    if p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains(".tfevents."))
    {
        return false;
    }
    match checkpoint_extension(p) {
        Some(e) if CHECKPOINT_EXTENSIONS.contains(&e.as_str()) => true,
        Some(e) if NOT_CHECKPOINTS.contains(&e.as_str()) => false,
        _ => sniff(p).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_by_content_when_the_name_does_not_say() {
        let d = std::env::temp_dir().join(format!("ckpt-names-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let w = |n: &str, b: &[u8]| {
            let p = d.join(n);
            std::fs::write(&p, b).unwrap();
            p
        };
        assert!(is_checkpoint_file(&w("model", b"PK\x03\x04rest")));
        assert!(is_checkpoint_file(&w("weights.pkl", b"\x80\x02}q\x00.")));
        let mut st = 2u64.to_le_bytes().to_vec();
        st.extend_from_slice(b"{}");
        assert!(is_checkpoint_file(&w("final", &st)));
        assert!(!is_checkpoint_file(&w(
            "notes",
            b"hello world, not a checkpoint"
        )));
        assert!(!is_checkpoint_file(&w(
            "config.yaml",
            b"\x80\x02 looks like a pickle"
        )));
        assert!(is_checkpoint_file(&w("empty.ckpt", b"")));
        assert!(!is_checkpoint_file(&w("tiny", b"PK")));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn names() {
        let e = |s: &str| checkpoint_extension(Path::new(s));
        assert_eq!(e("model_best.pth.tar").as_deref(), Some("pth"));
        assert_eq!(e("checkpoint.PTH.TAR").as_deref(), Some("pth"));
        assert_eq!(e("a/b/last.ckpt").as_deref(), Some("ckpt"));
        assert_eq!(e("weights.tar").as_deref(), Some("tar"));
        assert_eq!(e("weights"), None);
        assert_eq!(e(".pth"), Some("pth".into()));
        assert!(has_checkpoint_extension(Path::new("x.pt.tar"), &["pt"]));
        assert!(!has_checkpoint_extension(
            Path::new("archive.tar"),
            &["pt", "pth"]
        ));
    }
}
