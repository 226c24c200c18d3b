//! Folder-structure sources of the resolution chain (Lightning log dirs, hierarchical
//! experiment folders, hash-named experiment folders) and logger metadata (MLflow, W&B).
//!
//! Each function looks at where a checkpoint sits and at a few small files around it; it
//! never opens the checkpoint. What a folder holds is parsed once and kept in a [`DirCache`]
//! shared by all checkpoints (and threads) of a run. Unreadable, oversized or malformed files
//! yield no facts; nothing here fails or panics.

use std::collections::HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::{read_config, resolve};
use crate::consulted::{self, Consult, is_dir, is_file, read_dir};
use crate::fact::{Fact, Field, Source};
use crate::hash_folder;
use crate::sources::config::tree_facts;
use crate::sources::names::parse_file_name;
use crate::yaml;
use ckpt_io::Kind;
use serde_json::{Map, Number, Value, json};

/// Largest JSON/YAML/text file read; for `metrics.csv`, the most read from its end.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Most bytes of `metrics.csv` rows read (from its end, where the latest epochs are). Each
/// cell parses into 16 bytes or more, so this bounds the parsed rows to tens of megabytes
/// even for a file of single-digit cells.
const MAX_CSV_TAIL: u64 = 4 << 20;
/// Most files read from an MLflow run's `params/` or `metrics/`, and most entries taken from
/// a folder listing.
const MAX_DIR_ENTRIES: usize = 4096;
/// How far up from a checkpoint a logger's run folder is looked for.
const MAX_ANCESTORS: usize = 6;

/// Loss names known to end `<TIMESTAMP>_<MODEL>_<LOSS>` folder names (lower case). The
/// longest one that ends the name wins, so `efficientnet_b3_weighted_bce` is
/// `efficientnet_b3` + `weighted_bce`, not `efficientnet_b3_weighted` + `bce`. Each may also
/// be followed by `_loss`.
pub const LOSS_SUFFIXES: &[&str] = &[
    "focal",
    "weighted_bce",
    "bce",
    "bce_with_logits",
    "bcewithlogits",
    "weighted_ce",
    "weighted_cross_entropy",
    "class_weighted_ce",
    "balanced_ce",
    "cross_entropy",
    "crossentropy",
    "ce",
    "label_smoothing",
    "label_smoothing_ce",
    "nll",
    "dice",
    "dice_bce",
    "bce_dice",
    "dice_ce",
    "ce_dice",
    "dice_focal",
    "focal_dice",
    "generalized_dice",
    "lovasz",
    "lovasz_softmax",
    "lovasz_hinge",
    "tversky",
    "focal_tversky",
    "jaccard",
    "iou",
    "ohem",
    "poly",
    "asymmetric",
    "hinge",
    "mse",
    "mae",
    "rmse",
    "l1",
    "l2",
    "smooth_l1",
    "huber",
    "kl",
    "kld",
    "kl_div",
    "kldiv",
    "cosine",
    "contrastive",
    "triplet",
    "arcface",
    "cosface",
    "supcon",
];

// ---------------------------------------------------------------------------------------
// The cache

/// Keyed by the path's raw bytes: hashing a `Path` walks its components, which showed up in
/// profiles of ten-thousand-checkpoint catalogs.
/// Each value is kept with what loading it consulted ([`crate::consulted`]), replayed on every
/// use so that a checkpoint depends on the files of the folders it shares with others.
type Memo<V> = Mutex<HashMap<std::ffi::OsString, (V, Arc<[Consult]>)>>;

/// Per-directory (and per-file) results, parsed once per run and shared by every checkpoint
/// and thread. Keys are paths as the caller spells them.
#[derive(Default)]
pub struct DirCache {
    configs: Memo<Option<Arc<Value>>>,
    /// Config files skipped for going over a budget (size, interpolation), with the message:
    /// unlike a malformed file, skipped quietly, these are worth a warning.
    config_warnings: Memo<Option<Arc<str>>>,
    lightning: Memo<Arc<LightningDir>>,
    hier: Memo<Arc<HierDir>>,
    hash: Memo<Arc<HashDir>>,
    mlflow: Memo<Option<Arc<MlflowRun>>>,
    wandb_lists: Memo<Arc<HashMap<String, PathBuf>>>,
    wandb_runs: Memo<Arc<WandbRun>>,
    /// The Hydra config governing each folder's checkpoints.
    hydra: Memo<Option<PathBuf>>,
}

impl fmt::Debug for DirCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirCache")
            .field("configs", &len(&self.configs))
            .field("lightning", &len(&self.lightning))
            .field("hier", &len(&self.hier))
            .field("hash", &len(&self.hash))
            .field("mlflow", &len(&self.mlflow))
            .field("wandb_lists", &len(&self.wandb_lists))
            .field("wandb_runs", &len(&self.wandb_runs))
            .finish()
    }
}

/// Remote keys being loaded, by (memo, key): a second thread waits for the first
/// ([`Loading::claim`]) rather than reading the same objects again.
static LOADING: Mutex<Vec<(usize, std::ffi::OsString)>> = Mutex::new(Vec::new());
static LOADED: std::sync::Condvar = std::sync::Condvar::new();

/// How long a thread waits for another's load of the same key before loading it itself (a
/// duplicate read at worst, never a deadlock).
const LOADING_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// A claim on loading one remote key; released (and waiters woken) when dropped.
struct Loading {
    id: Option<(usize, std::ffi::OsString)>,
}

impl Loading {
    /// Wait while another thread loads `key` into memo `memo` (at most [`LOADING_PATIENCE`]),
    /// then claim it.
    fn claim(memo: usize, key: &Path) -> Loading {
        let id = (memo, key.as_os_str().to_owned());
        let start = std::time::Instant::now();
        let mut g = LOADING.lock().unwrap_or_else(PoisonError::into_inner);
        while g.contains(&id) {
            let Some(left) = LOADING_PATIENCE.checked_sub(start.elapsed()) else {
                return Loading { id: None };
            };
            g = LOADED
                .wait_timeout(g, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        g.push(id.clone());
        Loading { id: Some(id) }
    }
}

impl Drop for Loading {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let mut g = LOADING.lock().unwrap_or_else(PoisonError::into_inner);
            g.retain(|x| *x != id);
            drop(g);
            LOADED.notify_all();
        }
    }
}

fn len<V>(m: &Memo<V>) -> usize {
    m.lock().unwrap_or_else(PoisonError::into_inner).len()
}

/// The cached value for `key`, loading it (outside the lock) when absent. Two threads may
/// load the same key at once; the first stored wins. What the load consulted is recorded
/// (always: a later caller may be recording) and noted again on every use.
fn memo<V: Clone>(m: &Memo<V>, key: &Path, load: impl FnOnce() -> V) -> V {
    let hit = |m: &Memo<V>| {
        m.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key.as_os_str())
            .map(|(v, seen)| {
                consulted::note_all(seen);
                v.clone()
            })
    };
    if let Some(v) = hit(m) {
        return v;
    }
    // In a bucket, each read is a request: the checkpoints of one folder, resolved at once,
    // wait for the first to load it instead of each fetching the same files.
    let _loading = if ckpt_io::is_remote(key) {
        let claim = Loading::claim(std::ptr::from_ref(m) as usize, key);
        if let Some(v) = hit(m) {
            return v;
        }
        Some(claim)
    } else {
        None
    };
    let (v, seen) = consulted::record(load);
    m.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key.as_os_str().to_owned())
        .or_insert((v, seen.into()))
        .0
        .clone()
}

impl DirCache {
    pub fn new() -> DirCache {
        DirCache::default()
    }

    /// A YAML or JSON config file, parsed with interpolations resolved (`None` when missing,
    /// too large or malformed). Lightning's `!!python/...` tags are tolerated.
    pub fn config(&self, path: &Path) -> Option<Arc<Value>> {
        memo(&self.configs, path, || match read_tree(path) {
            Ok(v) => Some(Arc::new(v)),
            Err(w) => {
                memo(&self.config_warnings, path, || w.map(Arc::from));
                None
            }
        })
    }

    /// Why [`DirCache::config`] skipped a file that is over a budget (it names the file and
    /// the key or limit), if it did.
    pub fn config_warning(&self, path: &Path) -> Option<Arc<str>> {
        self.config_warnings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path.as_os_str())
            .and_then(|(w, _)| w.clone())
    }

    /// Forget everything (files may have changed).
    pub fn clear(&self) {
        fn c<V>(m: &Memo<V>) {
            m.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
        c(&self.configs);
        c(&self.config_warnings);
        c(&self.lightning);
        c(&self.hier);
        c(&self.hash);
        c(&self.mlflow);
        c(&self.wandb_lists);
        c(&self.wandb_runs);
        c(&self.hydra);
    }

    /// The Hydra config (`.hydra/config.yaml`) governing a checkpoint: the nearest one above
    /// it, up to `root`; looked up once per folder.
    pub fn hydra_for(&self, ckpt: &Path, root: &Path) -> Option<PathBuf> {
        let dir = ckpt.parent()?;
        memo(&self.hydra, dir, || {
            crate::config::find_hydra_config(ckpt, root)
        })
    }

    fn lightning_dir(&self, dir: &Path) -> Arc<LightningDir> {
        memo(&self.lightning, dir, || {
            Arc::new(LightningDir::load(self, dir))
        })
    }

    fn hier_dir(&self, dir: &Path) -> Arc<HierDir> {
        memo(&self.hier, dir, || Arc::new(HierDir::load(self, dir)))
    }

    fn hash_dir(&self, dir: &Path) -> Arc<HashDir> {
        memo(&self.hash, dir, || Arc::new(HashDir::load(self, dir)))
    }

    fn mlflow_run(&self, dir: &Path) -> Option<Arc<MlflowRun>> {
        memo(&self.mlflow, dir, || MlflowRun::load(dir).map(Arc::new))
    }

    fn wandb_list(&self, dir: &Path) -> Arc<HashMap<String, PathBuf>> {
        memo(&self.wandb_lists, dir, || Arc::new(list_wandb_runs(dir)))
    }

    fn wandb_run(&self, dir: &Path) -> Arc<WandbRun> {
        memo(&self.wandb_runs, dir, || {
            Arc::new(WandbRun::load(self, dir))
        })
    }
}

const _: () = {
    const fn sync<T: Send + Sync>() {}
    sync::<DirCache>();
};

// ---------------------------------------------------------------------------------------
// Small helpers

fn name_of(p: &Path) -> Option<&str> {
    p.file_name()?.to_str()
}

fn stem_of(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A whole small text file (`None` when missing, not a regular file, larger than the
/// limit, or not UTF-8). Opened without blocking and checked on the descriptor: a FIFO named
/// `metrics.csv` must not stall the catalog.
fn read_small(path: &Path) -> Option<String> {
    crate::consulted::read_small_text(path, MAX_FILE_BYTES).ok()
}

/// A YAML/JSON file as a value. Lightning writes `!!python/object:...` and similar tags into
/// `hparams.yaml` for non-plain values; when the file does not parse as is, it is read again
/// with those tags dropped (the tagged mappings and lists stay). `Err(Some(message))` when
/// the file is over a budget (worth a warning), `Err(None)` when missing or malformed.
fn read_tree(path: &Path) -> Result<Value, Option<String>> {
    match read_config(path) {
        Ok(v) => Ok(v),
        Err(e) if e.is_budget() => Err(Some(e.to_string())),
        Err(_) => {
            if path.extension().is_some_and(|e| e == "json") {
                return Err(None);
            }
            let text = read_small(path).ok_or(None)?;
            if !text.contains("!!python/") {
                return Err(None);
            }
            let v = yaml::parse(&crate::config::drop_python_tags(&text)).map_err(|_| None)?;
            resolve(&v).map_err(|e| Some(format!("{}: {e}", path.display())))
        }
    }
}

fn num(x: f64) -> Option<Value> {
    Number::from_f64(x).map(Value::Number)
}

/// `dir` relative to `root`, `/`-joined; `None` when it is not below root (or is root).
pub(crate) fn rel_name(dir: &Path, root: &Path) -> Option<String> {
    let rel = if root.as_os_str().is_empty() || root == Path::new(".") {
        if dir.is_absolute() {
            return None;
        }
        dir
    } else {
        dir.strip_prefix(root).ok()?
    };
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

/// The last `n` normal components of `dir`, `/`-joined.
fn last_components(dir: &Path, n: usize) -> String {
    let parts: Vec<String> = dir
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    parts[parts.len().saturating_sub(n)..].join("/")
}

/// A file name with no position in training (`best.ckpt`) cannot be matched to a row of a
/// metrics log; one such as `last.ckpt` or `model.ckpt` is taken to be the end of training.
fn names_best(stem: &str) -> bool {
    stem.to_ascii_lowercase().contains("best")
}

/// What kind of logger wrote a [`LogDir`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogDirKind {
    /// A Lightning logger's version folder (`version_N/`: CSVLogger's `metrics.csv`,
    /// TensorBoardLogger's event files, `hparams.yaml`).
    Lightning,
    /// An MLflow file-store run folder (`mlruns/<exp_id>/<run_id>/`).
    Mlflow,
    /// A W&B run folder (`wandb/[offline-]run-<stamp>-<id>/`).
    Wandb,
    /// A hierarchical experiment folder holding `ckpt.CheckpointManager`'s JSON reports.
    Reports,
}

/// A folder where the run that saved a checkpoint logged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogDir {
    pub kind: LogDirKind,
    /// Spelled from the checkpoint's path as given (relative stays relative).
    pub path: PathBuf,
}

/// The logger folders of a checkpoint's run, found by the same rules the catalog's folder
/// sources use (so a run's curves come from exactly the folders its facts came from): the
/// Lightning version folder, the MLflow run, the W&B run, the JSON-report experiment
/// folder. Only folders that exist are returned; nothing is checked against any root here
/// (a W&B run is looked up beside the save dir, which may be above the caller's roots).
pub fn log_dirs(cache: &DirCache, ckpt: &Path) -> Vec<LogDir> {
    let mut out = Vec::new();
    if let Some((dir, _)) = lightning::version_dir(cache, ckpt) {
        out.push(LogDir {
            kind: LogDirKind::Lightning,
            path: dir.to_path_buf(),
        });
    }
    if let Some((dir, _)) = loggers::find_mlflow_run(cache, ckpt) {
        out.push(LogDir {
            kind: LogDirKind::Mlflow,
            path: dir.to_path_buf(),
        });
    }
    if let Some(dir) = loggers::find_wandb_run(cache, ckpt) {
        out.push(LogDir {
            kind: LogDirKind::Wandb,
            path: dir,
        });
    }
    if let Some((dir, info)) = hierarchical::experiment_dir(cache, ckpt)
        && info.has_reports
    {
        out.push(LogDir {
            kind: LogDirKind::Reports,
            path: dir.to_path_buf(),
        });
    }
    out
}

mod hash;
mod hierarchical;
mod lightning;
mod loggers;
#[cfg(test)]
mod tests;

use hash::HashDir;
pub use hash::{ARCHITECTURE_FILE, MAX_ARCHITECTURE_BYTES, hash_folder};
use hierarchical::HierDir;
pub use hierarchical::{hierarchical, split_model_loss};
use lightning::LightningDir;
pub use lightning::lightning_logs;
pub use loggers::loggers;
use loggers::{MlflowRun, WandbRun, list_wandb_runs};
