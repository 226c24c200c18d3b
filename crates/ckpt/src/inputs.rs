//! The paths a command was given are checked before any work: a mistyped folder is an error
//! (exit 2, naming it as typed), not an empty answer with exit 0, and a URL says plainly that
//! object storage is not supported yet instead of "No such file or directory", and a FIFO or
//! device is refused before anything opens it (a read would block forever).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::cli::Command;

/// The input paths of a command (what it reads; not outputs, caches or option files that have
/// their own checks).
fn inputs(cmd: &Command) -> Vec<&Path> {
    fn target(t: &crate::cli::Target) -> Vec<&Path> {
        [&t.checkpoint, &t.exp_dir, &t.outputs_dir]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect()
    }
    match cmd {
        Command::Inspect(a) => a.files.iter().map(PathBuf::as_path).collect(),
        Command::Dump(a) => vec![a.file.as_path()],
        Command::Scan(a) => a.paths.iter().map(PathBuf::as_path).collect(),
        Command::ConvertLegacy(a) => target(&a.target),
        Command::Validate(a) => target(&a.target),
        Command::Catalog(a) => a.paths.iter().map(PathBuf::as_path).collect(),
        Command::Hash(a) => [Some(&a.path), a.hparams.as_ref(), a.data_uids.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect(),
        Command::Diff(a) => vec![a.a.as_path(), a.b.as_path()],
        Command::Experiments(a) => a.paths.iter().map(PathBuf::as_path).collect(),
        Command::Latest(a) => vec![a.path.as_path()],
        Command::Prune(a) => a.paths.iter().map(PathBuf::as_path).collect(),
        Command::Compare(a) => a.paths.iter().map(PathBuf::as_path).collect(),
        Command::Convert(a) => [&a.input, &a.config]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect(),
        Command::Watch(a) => a.paths.iter().map(PathBuf::as_path).collect(),
        Command::Serve(a) => a.paths.iter().map(PathBuf::as_path).collect(),
        Command::Schema(_) | Command::Cache(_) => Vec::new(),
    }
}

/// `s3://…`, `gs://…`, `https://…`: a scheme followed by `://`.
fn url_scheme(p: &Path) -> Option<&str> {
    let s = p.to_str()?;
    let (scheme, _) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

/// Fail (exit 2) on the first URL, or on every input path that does not exist, named as typed.
pub fn check(cmd: &Command) -> Result<()> {
    check_paths(&inputs(cmd))
}

/// [`check`] for paths a command learns later (a task file's `checkpoint_path`).
pub fn check_paths(paths: &[&Path]) -> Result<()> {
    for p in paths {
        if let Some(scheme) = url_scheme(p) {
            bail!(
                "{}: {scheme}:// paths are not supported yet; copy the files to a local folder \
                 (object storage support is planned)",
                p.display()
            );
        }
    }
    let missing: Vec<String> = paths
        .iter()
        // symlink_metadata: a dangling symlink exists (commands report it themselves).
        .filter(|p| {
            std::fs::symlink_metadata(p).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        })
        .map(|p| p.display().to_string())
        .collect();
    match missing.as_slice() {
        [] => {}
        [one] => bail!("{one}: no such file or directory"),
        many => bail!("{}: no such files or directories", many.join(", ")),
    }
    // A FIFO, socket or device would block a reader or never end: refused before it is opened.
    for p in paths {
        if let Ok(m) = std::fs::metadata(p)
            && !m.is_file()
            && !m.is_dir()
        {
            bail!(
                "{}: {}, not a regular file or a folder",
                p.display(),
                ckpt_torch::open::kind_of(m.file_type())
            );
        }
    }
    Ok(())
}
