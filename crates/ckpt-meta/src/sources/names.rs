//! What names say: the file name (`epoch=02-step=6-hmean=0.7718.ckpt`), the folders around
//! it (the experiment folder), and `stat`'s times written as the sidecar writes them. These
//! rank last among the sources: a name is a hint, the file and the run are records.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::fact::{Fact, Field, Source};

/// Where a checkpoint sits: the outputs directory paths are relative to, and the experiment
/// folder.
#[derive(Debug, Clone)]
pub struct Layout {
    pub checkpoint: PathBuf,
    pub outputs_dir: PathBuf,
    pub exp_dir: PathBuf,
}

impl Layout {
    /// The experiment folder is the parent of a `checkpoints/` folder (Hydra and Lightning
    /// layouts), else the checkpoint's own folder; the outputs dir is given, or the
    /// experiment folder's parent.
    pub fn new(checkpoint: &Path, outputs_dir: Option<&Path>) -> Layout {
        let dir = checkpoint.parent().unwrap_or(Path::new(".")).to_path_buf();
        let exp_dir = if dir.file_name().is_some_and(|n| n == "checkpoints") {
            dir.parent().map(Path::to_path_buf).unwrap_or(dir)
        } else {
            dir
        };
        let outputs_dir = match outputs_dir {
            Some(o) => o.to_path_buf(),
            None => exp_dir
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| exp_dir.clone()),
        };
        Layout {
            checkpoint: checkpoint.to_path_buf(),
            outputs_dir,
            exp_dir,
        }
    }

    /// The checkpoint's path relative to the outputs dir, with `/` separators.
    pub fn relative_path(&self) -> String {
        let rel = self
            .checkpoint
            .strip_prefix(&self.outputs_dir)
            .unwrap_or(&self.checkpoint);
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// A metric's canonical short name: `val/hmean` → `hmean`, `val_loss` → `validation_loss`.
pub fn metric_short_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    let last = last
        .strip_prefix("val_")
        .or_else(|| last.strip_prefix("valid_"))
        .or_else(|| last.strip_prefix("validation_"))
        .unwrap_or(last);
    match last {
        "loss" | "val_loss" => "validation_loss".to_owned(),
        other => other.to_owned(),
    }
}

/// What a checkpoint's file name says: `epoch=02-step=6-hmean=0.7718`,
/// `best-epoch02-val_f1-0.847`, `epoch=3-step=400-v1`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileNameInfo {
    pub epoch: Option<i64>,
    pub step: Option<i64>,
    pub metrics: Vec<(String, f64)>,
}

pub fn parse_file_name(stem: &str) -> FileNameInfo {
    let mut info = FileNameInfo::default();
    let mut pending_name: Option<&str> = None;
    for tok in stem.split('-') {
        if let Some((k, v)) = tok.split_once('=') {
            pending_name = None;
            match k {
                "epoch" => info.epoch = v.parse().ok(),
                "step" | "global_step" => info.step = v.parse().ok(),
                _ => {
                    if let Ok(x) = v.parse::<f64>() {
                        info.metrics.push((k.to_owned(), x));
                    }
                }
            }
            continue;
        }
        if let Some(d) = tok
            .strip_prefix("epoch")
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        {
            info.epoch = d.parse().ok();
            pending_name = None;
            continue;
        }
        if let Some(d) = tok
            .strip_prefix("step")
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        {
            info.step = d.parse().ok();
            pending_name = None;
            continue;
        }
        if let Ok(x) = tok.parse::<f64>()
            && tok.contains('.')
        {
            if let Some(n) = pending_name.take() {
                info.metrics.push((n.to_owned(), x));
            }
            continue;
        }
        // `v1`, `best`, `last` are labels; anything else may name the next number.
        let is_version =
            tok.len() > 1 && tok.starts_with('v') && tok[1..].bytes().all(|b| b.is_ascii_digit());
        pending_name = if is_version || tok.is_empty() {
            None
        } else {
            Some(tok)
        };
    }
    info
}

/// A modification time in ns since the epoch ([`ckpt_io::Identity::mtime_ns`]) as a
/// `SystemTime` (as `Metadata::modified` gives it).
pub fn mtime_of(mtime_ns: i64) -> Option<std::time::SystemTime> {
    let d = std::time::Duration::from_nanos(mtime_ns.unsigned_abs());
    if mtime_ns >= 0 {
        std::time::UNIX_EPOCH.checked_add(d)
    } else {
        std::time::UNIX_EPOCH.checked_sub(d)
    }
}

/// `created_at` as Python's `datetime.fromtimestamp(mtime).isoformat()` writes it (UTC here:
/// the machine's local zone is not knowable without a time-zone database).
pub fn iso_time(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let micros = d.subsec_micros();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    let base = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    if micros == 0 {
        base
    } else {
        format!("{base}.{micros:06}")
    }
}

/// What the file name says: epoch, step and metrics (`source: file_name`).
pub fn file_name_facts(checkpoint: &Path) -> Vec<Fact> {
    let stem = checkpoint
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let info = parse_file_name(&stem);
    let mut out = Vec::new();
    if let Some(x) = info.epoch {
        out.push(Fact::new(Field::Epoch, json!(x), Source::FileName));
    }
    if let Some(x) = info.step {
        out.push(Fact::new(Field::GlobalStep, json!(x), Source::FileName));
    }
    for (n, x) in info.metrics {
        out.push(Fact::new(Field::Metric(n), json!(x), Source::FileName));
    }
    out
}

/// The experiment a folder name gives: the experiment folder relative to `root` (its own
/// name when it is `root`).
pub fn folder_experiment(checkpoint: &Path, root: &Path) -> Fact {
    let layout = Layout::new(checkpoint, Some(root));
    let rel = layout
        .exp_dir
        .strip_prefix(root)
        .map(|p| {
            p.components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_else(|_| layout.exp_dir.display().to_string());
    let name = if rel.is_empty() {
        layout
            .exp_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| ".".into())
    } else {
        rel
    };
    Fact::new(Field::Experiment, json!(name), Source::FolderName)
}

/// Whether a file name marks the last checkpoint of a run (`last.ckpt`, `last-v1.ckpt`).
pub fn names_last(stem: &str) -> bool {
    stem == "last" || stem.starts_with("last-")
}

/// Whether a file name marks a best checkpoint (`best.ckpt`, `best-epoch02-….ckpt`).
pub fn names_best(stem: &str) -> bool {
    stem.starts_with("best")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        let i = parse_file_name("epoch=02-step=6-hmean=0.7718");
        assert_eq!((i.epoch, i.step), (Some(2), Some(6)));
        assert_eq!(i.metrics, vec![("hmean".to_owned(), 0.7718)]);
        let i = parse_file_name("best-epoch02-val_f1-0.847");
        assert_eq!(i.epoch, Some(2));
        assert_eq!(i.metrics, vec![("val_f1".to_owned(), 0.847)]);
        let i = parse_file_name("epoch=3-step=400-v1");
        assert_eq!((i.epoch, i.step), (Some(3), Some(400)));
        assert!(i.metrics.is_empty());
        let i = parse_file_name("last");
        assert_eq!(i, FileNameInfo::default());
        let i = parse_file_name("epoch=10");
        assert_eq!(i.epoch, Some(10));
    }

    #[test]
    fn metric_names() {
        assert_eq!(metric_short_name("val/hmean"), "hmean");
        assert_eq!(metric_short_name("val/loss"), "validation_loss");
        assert_eq!(metric_short_name("val_loss"), "validation_loss");
        assert_eq!(metric_short_name("val_f1"), "f1");
    }

    #[test]
    fn times() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_760_738_416_030_374);
        assert_eq!(iso_time(t), "2025-10-17T22:00:16.030374");
        assert_eq!(iso_time(std::time::UNIX_EPOCH), "1970-01-01T00:00:00");
    }

    #[test]
    fn layouts() {
        let l = Layout::new(Path::new("/o/exp/checkpoints/best.ckpt"), None);
        assert_eq!(l.exp_dir, Path::new("/o/exp"));
        assert_eq!(l.relative_path(), "exp/checkpoints/best.ckpt");
        let l = Layout::new(
            Path::new("/o/exp/checkpoints/best.ckpt"),
            Some(Path::new("/o")),
        );
        assert_eq!(l.relative_path(), "exp/checkpoints/best.ckpt");
        let l = Layout::new(Path::new("/o/a/b.pt"), None);
        assert_eq!(l.exp_dir, Path::new("/o/a"));
        assert_eq!(l.relative_path(), "a/b.pt");
    }
}
