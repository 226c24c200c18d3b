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

#[cfg(test)]
mod tests {
    use super::*;

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
