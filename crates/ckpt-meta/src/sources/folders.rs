//! Folder-structure sources of the resolution chain (Lightning log dirs, hierarchical
//! experiment folders, hash-named experiment folders) and logger metadata (MLflow, W&B).
//!
//! Each function looks at where a checkpoint sits and at a few small files around it; it
//! never opens the checkpoint. What a folder holds is parsed once and kept in a [`DirCache`]
//! shared by all checkpoints (and threads) of a run. Unreadable, oversized or malformed files
//! yield no facts; nothing here fails or panics.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::{read_config, resolve};
use crate::fact::{Fact, Field, Source};
use crate::hash_folder;
use crate::sources::config::tree_facts;
use crate::sources::names::parse_file_name;
use crate::yaml;
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
type Memo<V> = Mutex<HashMap<std::ffi::OsString, V>>;

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

fn len<V>(m: &Memo<V>) -> usize {
    m.lock().unwrap_or_else(PoisonError::into_inner).len()
}

/// The cached value for `key`, loading it (outside the lock) when absent. Two threads may
/// load the same key at once; the first stored wins.
fn memo<V: Clone>(m: &Memo<V>, key: &Path, load: impl FnOnce() -> V) -> V {
    if let Some(v) = m
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(key.as_os_str())
    {
        return v.clone();
    }
    let v = load();
    m.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key.as_os_str().to_owned())
        .or_insert(v)
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
            .cloned()
            .flatten()
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
    ckpt_torch::open::read_small_text(path, MAX_FILE_BYTES).ok()
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
            let v = yaml::parse(&strip_python_tags(&text)).map_err(|_| None)?;
            resolve(&v).map_err(|e| Some(format!("{}: {e}", path.display())))
        }
    }
}

fn strip_python_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("!!python/") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let end = after
            .find(|c: char| c.is_whitespace())
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
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

// ---------------------------------------------------------------------------------------
// 4. Lightning log dirs

struct LightningDir {
    /// `hparams.yaml` or `metrics.csv` is here.
    is_log_dir: bool,
    hparams: Option<Arc<Value>>,
    /// `hparams.yaml` was skipped for going over a budget: the warning to give.
    hparams_warning: Option<Arc<str>>,
    metrics: Option<MetricsCsv>,
}

impl LightningDir {
    fn load(cache: &DirCache, dir: &Path) -> LightningDir {
        let hp = dir.join("hparams.yaml");
        let mc = dir.join("metrics.csv");
        let hp_here = hp.is_file();
        let mc_here = mc.is_file();
        let hparams = if hp_here { cache.config(&hp) } else { None };
        LightningDir {
            is_log_dir: hp_here || mc_here,
            hparams_warning: if hp_here && hparams.is_none() {
                cache.config_warning(&hp)
            } else {
                None
            },
            hparams,
            metrics: if mc_here { MetricsCsv::read(&mc) } else { None },
        }
    }
}

fn is_version_name(name: Option<&str>) -> bool {
    name.and_then(|n| n.strip_prefix("version_"))
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Lightning's layout `<...>/lightning_logs/version_N/checkpoints/X.ckpt`, and any
/// `<logger_dir>/<name>/<version>/checkpoints/` as TensorBoardLogger and CSVLogger write it
/// (a version folder not named `version_N` counts when it has `hparams.yaml` or
/// `metrics.csv`):
///
/// - `experiment`: the version folder relative to `root` (`lightning/lightning_logs/version_0`),
///   or its last two components when it is not below `root`;
/// - `hparams.<key>` for each top-level key of `hparams.yaml`, and `model.*`, `monitor`,
///   `mode` when it states them;
/// - `metrics.<column>` from `metrics.csv`: the values logged in this checkpoint's epoch (up
///   to its step) as the file name gives them (`epoch=1-step=8`), else in the last epoch
///   (not for names with `best` in them: their epoch is unknown here). Empty cells and
///   non-numbers are skipped.
pub fn lightning_logs(cache: &DirCache, ckpt: &Path, root: &Path) -> Vec<Fact> {
    let Some(parent) = ckpt.parent() else {
        return Vec::new();
    };
    let (dir, named) = if name_of(parent) == Some("checkpoints") {
        match parent.parent() {
            Some(d) if !d.as_os_str().is_empty() => (d, is_version_name(name_of(d))),
            _ => return Vec::new(),
        }
    } else if is_version_name(name_of(parent)) {
        (parent, true)
    } else {
        return Vec::new();
    };
    let info = cache.lightning_dir(dir);
    if !named && !info.is_log_dir {
        return Vec::new();
    }
    let mut out = Vec::new();
    let exp = rel_name(dir, root).unwrap_or_else(|| last_components(dir, 2));
    out.push(Fact::new(Field::Run, json!(exp), Source::FolderName));
    out.push(Fact::new(Field::Experiment, json!(exp), Source::FolderName));
    if let Some(w) = &info.hparams_warning {
        out.push(Fact::new(
            Field::Warning,
            json!(format!("{w}; hparams.yaml ignored")),
            Source::HparamsYaml,
        ));
    }
    if let Some(hp) = &info.hparams
        && let Some(m) = hp.as_object()
    {
        for (k, v) in m {
            out.push(Fact::new(
                Field::Hparam(k.clone()),
                v.clone(),
                Source::HparamsYaml,
            ));
        }
        out.extend(tree_facts(hp, Source::HparamsYaml));
    }
    if let Some(csv) = &info.metrics {
        let stem = stem_of(ckpt);
        let pos = parse_file_name(&stem);
        if pos.epoch.is_some() || pos.step.is_some() || !names_best(&stem) {
            for (n, x) in csv.select(pos.epoch, pos.step) {
                if let Some(v) = num(x) {
                    out.push(Fact::new(Field::Metric(n.clone()), v, Source::MetricsCsv));
                }
            }
        }
    }
    out
}

/// A CSVLogger `metrics.csv`: one row per logging call, empty cells for what that call did
/// not log.
#[derive(Debug, Default)]
struct MetricsCsv {
    /// Metric columns (all but `epoch` and `step`).
    names: Vec<String>,
    has_epoch: bool,
    has_step: bool,
    rows: Vec<CsvRow>,
}

#[derive(Debug)]
struct CsvRow {
    epoch: Option<i64>,
    step: Option<i64>,
    /// (index into `names`, value)
    cells: Vec<(usize, f64)>,
}

fn as_int(cell: &str) -> Option<i64> {
    let t = cell.trim();
    t.parse::<i64>().ok().or_else(|| {
        let x = t.parse::<f64>().ok()?;
        (x.is_finite() && x.fract() == 0.0 && x.abs() < 9.0e15).then_some(x as i64)
    })
}

/// One CSV record (double quotes with `""` escapes; no line breaks inside fields).
fn split_csv_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            }
            '"' if cur.is_empty() => quoted = true,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

impl MetricsCsv {
    /// Read the header and at most the last [`MAX_CSV_TAIL`] bytes of rows (a regular file
    /// only: a FIFO must not block us).
    fn read(path: &Path) -> Option<MetricsCsv> {
        let mut f = ckpt_torch::open::open_regular(path).ok()?;
        let size = f.metadata().ok()?.len();
        let mut head = Vec::new();
        (&mut f).take(64 << 10).read_to_end(&mut head).ok()?;
        let header_end = head.iter().position(|&b| b == b'\n')?;
        let header = String::from_utf8_lossy(&head[..header_end]);
        let cols = split_csv_line(header.trim_end_matches('\r').trim_start_matches('\u{feff}'));
        let body_start = header_end as u64 + 1;
        let start = body_start.max(size.saturating_sub(MAX_CSV_TAIL));
        f.seek(SeekFrom::Start(start)).ok()?;
        let mut body = Vec::new();
        f.take(MAX_CSV_TAIL).read_to_end(&mut body).ok()?;
        let mut text: &[u8] = &body;
        if start > body_start {
            // Began mid-row: skip to the next full one.
            let nl = text.iter().position(|&b| b == b'\n')?;
            text = &text[nl + 1..];
        }
        Some(MetricsCsv::parse(&cols, &String::from_utf8_lossy(text)))
    }

    fn parse(cols: &[String], body: &str) -> MetricsCsv {
        let mut csv = MetricsCsv::default();
        let mut epoch_col = None;
        let mut step_col = None;
        // column index -> index into names
        let mut slot: Vec<Option<usize>> = Vec::with_capacity(cols.len());
        for (i, c) in cols.iter().enumerate() {
            let c = c.trim();
            match c {
                "epoch" if epoch_col.is_none() => {
                    epoch_col = Some(i);
                    slot.push(None);
                }
                "step" | "global_step" if step_col.is_none() => {
                    step_col = Some(i);
                    slot.push(None);
                }
                "" => slot.push(None),
                _ => {
                    slot.push(Some(csv.names.len()));
                    csv.names.push(c.to_owned());
                }
            }
        }
        csv.has_epoch = epoch_col.is_some();
        csv.has_step = step_col.is_some();
        for line in body.lines() {
            if line.trim().is_empty() {
                continue;
            }
            let cells = split_csv_line(line);
            let at = |i: Option<usize>| i.and_then(|i| cells.get(i)).and_then(|c| as_int(c));
            let mut row = CsvRow {
                epoch: at(epoch_col),
                step: at(step_col),
                cells: Vec::new(),
            };
            for (i, c) in cells.iter().enumerate() {
                if let Some(Some(n)) = slot.get(i)
                    && let Ok(x) = c.trim().parse::<f64>()
                    && x.is_finite()
                {
                    row.cells.push((*n, x));
                }
            }
            csv.rows.push(row);
        }
        csv
    }

    /// The metrics of the rows describing a checkpoint at (`epoch`, `step`): the rows of
    /// that epoch up to that step; with only a step, the rows of the epoch reached at that
    /// step; with neither, the rows of the last epoch (or every row when there is no epoch
    /// column). Per column, the last value wins.
    fn select(&self, epoch: Option<i64>, step: Option<i64>) -> Vec<(String, f64)> {
        let upto = |r: &&CsvRow, s: i64| r.step.is_none_or(|x| x <= s);
        let rows: Vec<&CsvRow> = match (epoch, step) {
            (Some(e), s) if self.has_epoch => {
                let of_epoch: Vec<&CsvRow> =
                    self.rows.iter().filter(|r| r.epoch == Some(e)).collect();
                match s {
                    Some(s) if self.has_step => {
                        let before: Vec<&CsvRow> =
                            of_epoch.iter().copied().filter(|r| upto(r, s)).collect();
                        if before.is_empty() { of_epoch } else { before }
                    }
                    _ => of_epoch,
                }
            }
            (_, Some(s)) if self.has_step => {
                let before: Vec<&CsvRow> = self
                    .rows
                    .iter()
                    .filter(|r| r.step.is_some_and(|x| x <= s))
                    .collect();
                match before.last().and_then(|r| r.epoch) {
                    Some(e) => before.into_iter().filter(|r| r.epoch == Some(e)).collect(),
                    None => before,
                }
            }
            (Some(_), _) | (_, Some(_)) => Vec::new(),
            (None, None) => match self.rows.last().and_then(|r| r.epoch) {
                Some(e) => self.rows.iter().filter(|r| r.epoch == Some(e)).collect(),
                None => self.rows.iter().collect(),
            },
        };
        let mut vals: Vec<Option<f64>> = vec![None; self.names.len()];
        for r in rows {
            for &(i, x) in &r.cells {
                if let Some(v) = vals.get_mut(i) {
                    *v = Some(x);
                }
            }
        }
        self.names
            .iter()
            .zip(vals)
            .filter_map(|(n, v)| Some((n.clone(), v?)))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// 5. Hierarchical experiment folders

/// Timestamp prefixes of experiment folder names (`D` = digit), longest first.
const STAMPS: &[&str] = &[
    "DDDD-DD-DD_DD-DD-DD",
    "DDDD-DD-DDTDD-DD-DD",
    "DDDD-DD-DD_DD-DD",
    "DDDDDDDD_DDDDDD",
    "DDDDDDDD-DDDDDD",
    "DDDD-DD-DD",
];

/// What follows a timestamp prefix and a `_`/`-` separator (`resnet18_weighted_bce` in
/// `2025-02-12_14-30-45_resnet18_weighted_bce`).
fn after_timestamp(name: &str) -> Option<&str> {
    let b = name.as_bytes();
    // The longest template the name starts with decides.
    let p = STAMPS.iter().map(|p| p.as_bytes()).find(|p| {
        b.len() >= p.len()
            && p.iter().zip(b).all(|(&pc, &c)| match pc {
                b'D' => c.is_ascii_digit(),
                other => other == c,
            })
    })?;
    if b.len() < p.len() + 2 || !matches!(b[p.len()], b'_' | b'-') {
        return None;
    }
    name.get(p.len() + 1..)
}

/// Split `<MODEL>_<LOSS>` on the longest known loss suffix (case-insensitive; `_loss` may
/// follow the loss): `vit_base_patch32_224_focal` → (`vit_base_patch32_224`, `focal`).
pub fn split_model_loss(rest: &str) -> Option<(&str, &str)> {
    let lower = rest.to_ascii_lowercase();
    let mut best: Option<usize> = None; // length of the suffix incl. its `_`
    for loss in LOSS_SUFFIXES {
        for with in ["", "_loss"] {
            let suffix = format!("_{loss}{with}");
            if lower.len() > suffix.len()
                && lower.ends_with(&suffix)
                && best.is_none_or(|b| suffix.len() > b)
            {
                best = Some(suffix.len());
            }
        }
    }
    let cut = rest.len() - best?;
    // ASCII suffix: `cut` is a char boundary.
    Some((rest.get(..cut)?, rest.get(cut + 1..)?))
}

#[derive(Debug, Default)]
struct HierDir {
    is_exp: bool,
    folder: String,
    model: Option<(String, Source)>,
    loss: Option<(String, Source)>,
    root_name: Option<String>,
    hparams: Vec<(String, Value)>,
    metrics: Vec<(String, f64)>,
    best_epoch: Option<i64>,
}

/// A string under the first of `keys` (any case) at the top of an object.
fn get_str_ci(v: &Value, keys: &[&str]) -> Option<String> {
    let m = v.as_object()?;
    keys.iter().find_map(|k| {
        m.iter()
            .find(|(mk, mv)| mk.eq_ignore_ascii_case(k) && mv.is_string())
            .and_then(|(_, mv)| mv.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    })
}

const MODEL_KEYS: &[&str] = &["model_name", "model", "architecture", "arch", "backbone"];
const LOSS_KEYS: &[&str] = &["loss_function", "loss", "loss_name", "loss_fn", "criterion"];
/// Objects in a summary or report whose numbers are metrics.
const METRIC_GROUPS: &[&str] = &[
    "test_results",
    "test_metrics",
    "metrics",
    "final_metrics",
    "results",
];

fn report_metrics(v: &Value, out: &mut Vec<(String, f64)>) {
    let Some(m) = v.as_object() else { return };
    let mut add = |name: String, x: &Value| {
        if let Some(x) = x.as_f64()
            && x.is_finite()
            && !name.starts_with("best_")
            && !out.iter().any(|(n, _)| *n == name)
        {
            out.push((name, x));
        }
    };
    for g in METRIC_GROUPS {
        if let Some(Value::Object(group)) = m.get(*g) {
            for (k, x) in group {
                add(k.clone(), x);
            }
        }
    }
    for (k, x) in m {
        if k.starts_with("test_") {
            add(k.clone(), x);
        }
    }
    // scikit-learn's classification_report(output_dict=True)
    if let Some(x) = m.get("accuracy") {
        add("accuracy".to_owned(), x);
    }
    for avg in ["macro avg", "weighted avg", "micro avg"] {
        if let Some(Value::Object(a)) = m.get(avg) {
            let base = avg.replace(' ', "_");
            for (k, short) in [
                ("f1-score", "f1"),
                ("precision", "precision"),
                ("recall", "recall"),
            ] {
                if let Some(x) = a.get(k) {
                    add(format!("{base}_{short}"), x);
                }
            }
        }
    }
}

impl HierDir {
    fn load(cache: &DirCache, dir: &Path) -> HierDir {
        let Some(folder) = name_of(dir) else {
            return HierDir::default();
        };
        let summary_p = dir.join("training_summary.json");
        let report_p = dir.join("classification_report.json");
        let minimal_p = dir.join("minimal_logging.json");
        let has_reports = summary_p.is_file() || report_p.is_file() || minimal_p.is_file();
        let rest = after_timestamp(folder);
        let split = rest.and_then(split_model_loss);
        if !has_reports && split.is_none() {
            return HierDir::default();
        }
        let read = |p: &Path| {
            if has_reports || p.ends_with("config.json") {
                cache.config(p)
            } else {
                None
            }
        };
        let summary = read(&summary_p);
        let report = read(&report_p);
        let minimal = read(&minimal_p);
        let config = read(&dir.join("config.json"));
        let jsons: Vec<&Value> = [&summary, &report, &config]
            .into_iter()
            .filter_map(|x| x.as_deref())
            .collect();
        let mut h = HierDir {
            is_exp: true,
            folder: folder.to_owned(),
            ..HierDir::default()
        };
        h.model = jsons
            .iter()
            .find_map(|v| get_str_ci(v, MODEL_KEYS))
            .map(|m| (m, Source::JsonReport));
        h.loss = jsons
            .iter()
            .find_map(|v| get_str_ci(v, LOSS_KEYS))
            .map(|l| (l, Source::JsonReport));
        if let Some(rest) = rest {
            let lower = rest.to_ascii_lowercase();
            match (&h.model, &h.loss) {
                (Some((m, _)), None) => {
                    let prefix = format!("{}_", m.to_ascii_lowercase());
                    if lower.len() > prefix.len() && lower.starts_with(&prefix) {
                        h.loss = rest
                            .get(prefix.len()..)
                            .map(|l| (l.to_owned(), Source::FolderName));
                    } else if let Some((_, l)) = split {
                        h.loss = Some((l.to_owned(), Source::FolderName));
                    }
                }
                (None, Some((l, _))) => {
                    let suffix = format!("_{}", l.to_ascii_lowercase());
                    if lower.len() > suffix.len() && lower.ends_with(&suffix) {
                        h.model = rest
                            .get(..rest.len() - suffix.len())
                            .map(|m| (m.to_owned(), Source::FolderName));
                    } else if let Some((m, _)) = split {
                        h.model = Some((m.to_owned(), Source::FolderName));
                    }
                }
                (None, None) => {
                    if let Some((m, l)) = split {
                        h.model = Some((m.to_owned(), Source::FolderName));
                        h.loss = Some((l.to_owned(), Source::FolderName));
                    }
                }
                (Some(_), Some(_)) => {}
            }
        }
        h.root_name = summary
            .as_deref()
            .and_then(|s| get_str_ci(s, &["root_name", "task"]));
        if let Some(Value::Object(c)) = config.as_deref() {
            h.hparams = c.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        for v in [&summary, &report].into_iter().filter_map(|x| x.as_deref()) {
            report_metrics(v, &mut h.metrics);
        }
        h.best_epoch = [&summary, &minimal]
            .into_iter()
            .filter_map(|x| x.as_deref())
            .find_map(|v| v.get("best_epoch").and_then(Value::as_i64));
        h
    }
}

/// The folders between the nearest `checkpoints` folder above `exp` (else `root`) and `exp`,
/// `/`-joined: `flares/multiclass`. `None` when neither is above `exp`.
fn task_of(exp: &Path, root: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = exp.parent();
    let mut depth = 0;
    while let Some(d) = cur {
        if d.as_os_str().is_empty() || depth > 16 {
            break;
        }
        if name_of(d) == Some("checkpoints") {
            parts.reverse();
            return Some(parts.join("/"));
        }
        let Some(n) = d.file_name() else { break };
        parts.push(n.to_string_lossy().into_owned());
        cur = d.parent();
        depth += 1;
    }
    let parent = exp.parent()?;
    if parent == root {
        return Some(String::new());
    }
    rel_name(parent, root)
}

/// Hierarchical experiment folders `checkpoints/<task...>/<YYYY-MM-DD_HH-MM-SS>_<MODEL>_<LOSS>/`
/// with `config.json`, `training_summary.json`, `classification_report.json`,
/// `minimal_logging.json` (the checkpoint in the folder or in a `checkpoints/` folder inside
/// it). A folder counts when it holds one of the three reports, or when its name is a
/// timestamp followed by `<MODEL>_<LOSS>` with a known loss.
///
/// - `experiment`: `<task>/<folder>`; `task`: the folders between `checkpoints` (else `root`)
///   and the experiment folder, else the summary's `root_name`;
/// - `model.architecture`, `model.loss`: from the JSON files (`model_name`, `loss_function`,
///   `MODEL_NAME` …), else from the folder name split on the longest known loss suffix;
/// - `hparams.<KEY>` from `config.json`, as written;
/// - `metrics.<name>` from the summary's `test_results` and the report's `test_metrics` (and
///   scikit-learn's `accuracy`, `macro_avg_f1` …), for the best checkpoint (or when which one
///   is best is unknown). `best_*` values and the metrics the file name states
///   (`best-epoch02-val_f1-0.847`) are left to the file-name source;
/// - `is_best`: whether the file name's epoch is the reports' `best_epoch`.
pub fn hierarchical(cache: &DirCache, ckpt: &Path, root: &Path) -> Vec<Fact> {
    let Some(parent) = ckpt.parent() else {
        return Vec::new();
    };
    let mut cands = vec![parent];
    if matches!(name_of(parent), Some("checkpoints" | "weights" | "ckpts"))
        && let Some(p) = parent.parent()
    {
        cands.push(p);
    }
    let Some((dir, info)) = cands.into_iter().find_map(|d| {
        let info = cache.hier_dir(d);
        info.is_exp.then_some((d, info))
    }) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let task = task_of(dir, root).filter(|t| !t.is_empty());
    let exp = match &task {
        Some(t) => format!("{t}/{}", info.folder),
        None => info.folder.clone(),
    };
    out.push(Fact::new(Field::Run, json!(exp), Source::FolderName));
    out.push(Fact::new(Field::Experiment, json!(exp), Source::FolderName));
    match (task, &info.root_name) {
        (Some(t), _) => out.push(Fact::new(Field::Task, json!(t), Source::FolderName)),
        (None, Some(r)) => out.push(Fact::new(Field::Task, json!(r), Source::JsonReport)),
        (None, None) => {}
    }
    if let Some((m, src)) = &info.model {
        out.push(Fact::new(
            Field::Model("architecture".into()),
            json!(m),
            *src,
        ));
    }
    if let Some((l, src)) = &info.loss {
        out.push(Fact::new(Field::Model("loss".into()), json!(l), *src));
    }
    for (k, v) in &info.hparams {
        out.push(Fact::new(
            Field::Hparam(k.clone()),
            v.clone(),
            Source::JsonReport,
        ));
    }
    let pos = parse_file_name(&stem_of(ckpt));
    let is_best = match (pos.epoch, info.best_epoch) {
        (Some(e), Some(b)) => Some(e == b),
        _ => None,
    };
    if let Some(b) = is_best {
        out.push(Fact::new(Field::IsBest, json!(b), Source::JsonReport));
    }
    if is_best != Some(false) {
        for (n, x) in &info.metrics {
            if pos.metrics.iter().any(|(fm, _)| fm == n) {
                continue;
            }
            if let Some(v) = num(*x) {
                out.push(Fact::new(Field::Metric(n.clone()), v, Source::JsonReport));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// 6. Hash-named experiment folders

#[derive(Debug, Default)]
struct HashDir {
    /// The folder's name, when it is an experiment folder at all.
    name: Option<String>,
    hparams: Vec<(String, Value)>,
    model: Vec<Fact>,
    active_uids: Option<usize>,
}

impl HashDir {
    /// Whether `dir` is an experiment folder, and which files hold its hyperparameters and
    /// UIDs, are the layout's answers ([`hash_folder`]), shared with `ckpt hash`.
    fn load(cache: &DirCache, dir: &Path) -> HashDir {
        let Some(name) = hash_folder::experiment_name(dir) else {
            return HashDir::default();
        };
        let mut h = HashDir {
            name: Some(name),
            ..HashDir::default()
        };
        let mut files = hash_folder::hp_files(dir)
            .map(|f| f.files)
            .unwrap_or_default();
        // `config.*` first, then by name: the first file stating a key gives its value.
        files.sort_by_key(|p| (stem_of(p) != "config", p.clone()));
        for f in files.iter().take(32) {
            let Some(v) = cache.config(f) else { continue };
            let Some(m) = v.as_object() else { continue };
            for (k, x) in m {
                if !h.hparams.iter().any(|(hk, _)| hk == k) {
                    h.hparams.push((k.clone(), x.clone()));
                }
            }
            for fact in tree_facts(&v, Source::HashFolder) {
                if !h.model.iter().any(|x| x.field == fact.field) {
                    h.model.push(fact);
                }
            }
        }
        // A UID file that does not read (or is over the catalog's size limit) is no count,
        // never another file's count.
        h.active_uids = hash_folder::data_file(dir)
            .and_then(|f| hash_folder::read_uids_within(&f, None, MAX_FILE_BYTES).ok())
            .map(|u| u.len());
        h
    }
}

/// The step in `checkpoint_step_000100`, `model-step1200`, `ckpt_step=5`.
fn step_in_name(stem: &str) -> Option<i64> {
    let lower = stem.to_ascii_lowercase();
    let at = lower.rfind("step")?;
    let rest = lower.get(at + 4..)?.trim_start_matches(['_', '-', '=']);
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest.get(..end)?.parse().ok()
}

/// Hash-named experiments `<...>/<exp_hash>/{model,hp,data}/` with checkpoints in `model/`,
/// as [`ckpt_meta::hash_folder`] reads the layout (a folder counts when its name is hex-ish or
/// it has an `hp/` or `data/` folder):
///
/// - `experiment`: the folder name (`0f9e8d7c6b5a`);
/// - `global_step`: from `checkpoint_step_000100.pt` (not for `architecture.pt`, nor when the
///   file-name source reads the step itself);
/// - `hparams.<key>` from `hp/*.yaml|yml|json` (`config.*` first), and `model.*`, `monitor`,
///   `mode` when they state them;
/// - `data.active_uids`: the number of distinct UIDs in `data/active_uids.{txt,json,csv}`, read
///   as `ckpt hash` reads them ([`hash_folder::read_uids`]).
pub fn hash_folder(cache: &DirCache, ckpt: &Path) -> Vec<Fact> {
    // The path says whether it can be one; the folder's verdict is memoized with its files.
    let Some((_, dir)) = hash_folder::model_dir_of(ckpt) else {
        return Vec::new();
    };
    let info = cache.hash_dir(dir);
    let Some(name) = info.name.as_deref() else {
        return Vec::new();
    };
    let mut out = vec![
        Fact::new(Field::Run, json!(name), Source::HashFolder),
        Fact::new(Field::Experiment, json!(name), Source::HashFolder),
    ];
    let stem = stem_of(ckpt);
    if parse_file_name(&stem).step.is_none()
        && let Some(s) = step_in_name(&stem)
    {
        out.push(Fact::new(Field::GlobalStep, json!(s), Source::HashFolder));
    }
    for (k, v) in &info.hparams {
        out.push(Fact::new(
            Field::Hparam(k.clone()),
            v.clone(),
            Source::HashFolder,
        ));
    }
    out.extend(info.model.iter().cloned());
    if let Some(n) = info.active_uids {
        out.push(Fact::new(
            Field::Data("active_uids".into()),
            json!(n),
            Source::HashFolder,
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Loggers: MLflow file store, W&B offline/online run folders

#[derive(Debug)]
struct MlflowRun {
    /// `mlruns/<exp_id>/<run_id>`
    experiment: String,
    params: Map<String, Value>,
    /// name -> (step, value) in file order
    metrics: Vec<(String, Vec<(i64, f64)>)>,
    epochs: Vec<(i64, f64)>,
}

/// Files under `dir` (recursively, bounded), as (`/`-joined relative name, path).
fn walk_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(dir.to_path_buf(), String::new(), 0)];
    let mut seen = 0usize;
    while let Some((d, prefix, depth)) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            seen += 1;
            if seen > MAX_DIR_ENTRIES {
                return out;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            match e.file_type() {
                Ok(t) if t.is_dir() && depth < 8 => stack.push((e.path(), rel, depth + 1)),
                Ok(t) if t.is_file() => out.push((rel, e.path())),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// An MLflow param value (always written as text): numbers, booleans and JSON lists or
/// objects typed, anything else a string.
fn param_value(s: &str) -> Value {
    let t = s.trim();
    if let Ok(i) = t.parse::<i64>() {
        return json!(i);
    }
    if let Ok(x) = t.parse::<f64>()
        && let Some(v) = num(x)
    {
        return v;
    }
    match t {
        "True" | "true" => return json!(true),
        "False" | "false" => return json!(false),
        _ => {}
    }
    // Within the same node budget as any JSON file (a param file may be 16 MiB).
    if (t.starts_with('[') || t.starts_with('{'))
        && let Ok(v) = yaml::parse_json(t)
    {
        return v;
    }
    json!(s)
}

impl MlflowRun {
    fn load(dir: &Path) -> Option<MlflowRun> {
        if !dir.join("meta.yaml").is_file() {
            return None;
        }
        let sub = |n: &str| dir.join(n).is_dir();
        if !(sub("params") || sub("metrics") || sub("tags")) {
            return None;
        }
        let run = name_of(dir)?;
        let exp_dir = dir.parent()?;
        let exp = name_of(exp_dir)?;
        let store = exp_dir.parent().and_then(name_of).unwrap_or("mlruns");
        let mut r = MlflowRun {
            experiment: format!("{store}/{exp}/{run}"),
            params: Map::new(),
            metrics: Vec::new(),
            epochs: Vec::new(),
        };
        for (name, p) in walk_files(&dir.join("params")) {
            if let Some(text) = read_small(&p) {
                r.params.insert(name, param_value(&text));
            }
        }
        for (name, p) in walk_files(&dir.join("metrics")) {
            let Some(text) = read_small(&p) else { continue };
            let mut points = Vec::new();
            for line in text.lines() {
                let mut it = line.split_whitespace();
                let (Some(_ts), Some(v), step) = (it.next(), it.next(), it.next()) else {
                    continue;
                };
                let Ok(x) = v.parse::<f64>() else { continue };
                if !x.is_finite() {
                    continue;
                }
                let step = step.and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
                points.push((step, x));
            }
            if name == "epoch" {
                r.epochs = points;
            } else if !points.is_empty() {
                r.metrics.push((name, points));
            }
        }
        Some(r)
    }

    /// The step a checkpoint's metrics are read up to: the file name's step, else the last
    /// step of its epoch; `Some(None)` for the end of training; `None` when unknown.
    fn horizon(&self, stem: &str) -> Option<Option<i64>> {
        let pos = parse_file_name(stem);
        if let Some(s) = pos.step {
            return Some(Some(s));
        }
        if let Some(e) = pos.epoch {
            let last = self
                .epochs
                .iter()
                .filter(|(_, x)| (*x - e as f64).abs() < 1e-9)
                .map(|(s, _)| *s)
                .max()?;
            return Some(Some(last));
        }
        if names_best(stem) { None } else { Some(None) }
    }
}

/// The value at the largest step not after `upto` (the later one on ties).
fn value_upto(points: &[(i64, f64)], upto: Option<i64>) -> Option<f64> {
    let mut best: Option<(i64, f64)> = None;
    for &(s, x) in points {
        if upto.is_some_and(|u| s > u) {
            continue;
        }
        if best.is_none_or(|(bs, _)| s >= bs) {
            best = Some((s, x));
        }
    }
    best.map(|(_, x)| x)
}

/// `offline-run-20261122_064815-vuo698ek` / `run-20261122_064815-vuo698ek` → `vuo698ek`.
fn wandb_run_id(name: &str) -> Option<&str> {
    let rest = name
        .strip_prefix("offline-run-")
        .or_else(|| name.strip_prefix("run-"))?;
    let (stamp, id) = rest.split_once('-')?;
    let b = stamp.as_bytes();
    let stamp_ok = b.len() == 15
        && b[8] == b'_'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 8 || c.is_ascii_digit());
    (stamp_ok && !id.is_empty()).then_some(id)
}

/// Run folders in a `wandb/` folder by run id (the latest folder for a resumed id).
fn list_wandb_runs(dir: &Path) -> HashMap<String, PathBuf> {
    let mut out: HashMap<String, PathBuf> = HashMap::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten().take(100_000) {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(id) = wandb_run_id(name) else {
            continue;
        };
        let path = e.path();
        let newer = out
            .get(id)
            .is_none_or(|old| old.file_name().is_some_and(|o| o.to_str() < Some(name)));
        if newer {
            out.insert(id.to_owned(), path);
        }
    }
    out
}

#[derive(Debug, Default)]
struct WandbRun {
    id: String,
    hparams: Vec<(String, Value)>,
    model: Vec<Fact>,
}

impl WandbRun {
    fn load(cache: &DirCache, dir: &Path) -> WandbRun {
        let id = name_of(dir)
            .and_then(wandb_run_id)
            .unwrap_or_default()
            .to_owned();
        let mut r = WandbRun {
            id,
            ..WandbRun::default()
        };
        // `files/config.yaml`: `key: {desc: ..., value: ...}` (older) or `key: {value: ...}`.
        if let Some(cfg) = cache.config(&dir.join("files").join("config.yaml"))
            && let Some(m) = cfg.as_object()
        {
            let mut plain = Map::new();
            for (k, v) in m {
                if k.starts_with('_') || k == "wandb_version" {
                    continue;
                }
                let v = match v {
                    Value::Object(o) if o.contains_key("value") => {
                        o.get("value").cloned().unwrap_or(Value::Null)
                    }
                    other => other.clone(),
                };
                plain.insert(k.clone(), v);
            }
            let plain = Value::Object(plain);
            r.model = tree_facts(&plain, Source::Logger);
            if let Value::Object(m) = plain {
                r.hparams = m.into_iter().collect();
            }
        }
        r
    }
}

/// The W&B run folder of a checkpoint: an ancestor named `[offline-]run-<stamp>-<id>`, or,
/// for Lightning's WandbLogger layout `<save_dir>/<project>/<id>/checkpoints/X.ckpt`, the
/// folder `<save_dir>/wandb/[offline-]run-<stamp>-<id>`.
fn find_wandb_run(cache: &DirCache, ckpt: &Path) -> Option<PathBuf> {
    for d in ckpt.ancestors().skip(1).take(MAX_ANCESTORS) {
        if name_of(d).and_then(wandb_run_id).is_some() {
            return Some(d.to_path_buf());
        }
    }
    let parent = ckpt.parent()?;
    if name_of(parent) != Some("checkpoints") {
        return None;
    }
    let run = parent.parent()?;
    let id = name_of(run)?;
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return None;
    }
    let save_dir = run.parent()?.parent()?;
    cache.wandb_list(&save_dir.join("wandb")).get(id).cloned()
}

/// Logger metadata around a checkpoint (source `logger`):
///
/// - MLflow's file store `<mlruns>/<exp_id>/<run_id>/{meta.yaml, params/, metrics/, tags/}`
///   (the checkpoint anywhere up to six folders below the run): `experiment` =
///   `mlruns/<exp_id>/<run_id>`, `hparams.<param>` (typed when the text is a number or
///   boolean), `metrics.<name>` = the value at the last step not after the checkpoint's
///   (from its file name, else the end of the run), `model.*` when params name it;
/// - W&B run folders (`wandb/[offline-]run-<stamp>-<id>/`, found from Lightning's
///   `<save_dir>/<project>/<id>/checkpoints/`): `experiment` = the run id, `hparams.*` and
///   `model.*` from `files/config.yaml` when present (the binary `.wandb` log is not read).
///
/// TensorBoard's `version_N/hparams.yaml` is [`lightning_logs`]' business. `root` is not
/// needed: logger experiments are named by the logger's ids.
pub fn loggers(cache: &DirCache, ckpt: &Path, _root: &Path) -> Vec<Fact> {
    let mut out = Vec::new();
    if let Some(run) = ckpt
        .ancestors()
        .skip(1)
        .take(MAX_ANCESTORS)
        .filter(|d| !d.as_os_str().is_empty())
        .find_map(|d| cache.mlflow_run(d))
    {
        out.push(Fact::new(
            Field::Experiment,
            json!(run.experiment),
            Source::Logger,
        ));
        out.push(Fact::new(Field::Run, json!(run.experiment), Source::Logger));
        for (k, v) in &run.params {
            out.push(Fact::new(
                Field::Hparam(k.clone()),
                v.clone(),
                Source::Logger,
            ));
        }
        out.extend(tree_facts(
            &Value::Object(run.params.clone()),
            Source::Logger,
        ));
        if let Some(upto) = run.horizon(&stem_of(ckpt)) {
            for (n, points) in &run.metrics {
                if let Some(v) = value_upto(points, upto).and_then(num) {
                    out.push(Fact::new(Field::Metric(n.clone()), v, Source::Logger));
                }
            }
        }
    }
    if let Some(dir) = find_wandb_run(cache, ckpt) {
        let run = cache.wandb_run(&dir);
        if !run.id.is_empty() {
            out.push(Fact::new(Field::Experiment, json!(run.id), Source::Logger));
            out.push(Fact::new(Field::Run, json!(run.id), Source::Logger));
            for (k, v) in &run.hparams {
                out.push(Fact::new(
                    Field::Hparam(k.clone()),
                    v.clone(),
                    Source::Logger,
                ));
            }
            out.extend(run.model.iter().cloned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        p
    }

    fn get<'f>(facts: &'f [Fact], path: &str) -> Option<&'f Fact> {
        facts.iter().find(|f| f.field.path() == path)
    }

    fn val(facts: &[Fact], path: &str) -> Value {
        get(facts, path)
            .map(|f| f.value.clone())
            .unwrap_or(Value::Null)
    }

    fn src(facts: &[Fact], path: &str) -> Source {
        get(facts, path)
            .map(|f| f.source)
            .unwrap_or_else(|| panic!("no fact for {path}"))
    }

    fn no_dup_paths(facts: &[Fact]) {
        let mut seen = HashSet::new();
        for f in facts {
            assert!(seen.insert(f.field.clone()), "duplicate {}", f.field);
        }
    }

    const METRICS: &str = "epoch,step,train_loss,val_loss,val_acc\n\
        0,49,0.9,,\n\
        0,99,0.8,,\n\
        0,99,,0.7,0.5\n\
        1,149,0.6,,\n\
        1,199,,0.5,0.6\n\
        2,249,0.4,,\n\
        2,299,,0.3,nan\n";

    #[test]
    fn lightning_version_dir() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let v0 = "run/lightning_logs/version_0";
        write(
            r,
            &format!("{v0}/hparams.yaml"),
            "hidden: 8\nlr: 0.01\nencoder: resnet18\n",
        );
        write(r, &format!("{v0}/metrics.csv"), METRICS);
        let c = DirCache::new();
        let ck = write(r, &format!("{v0}/checkpoints/epoch=1-step=200.ckpt"), "");
        let f = lightning_logs(&c, &ck, r);
        no_dup_paths(&f);
        assert_eq!(val(&f, "experiment"), json!("run/lightning_logs/version_0"));
        assert_eq!(src(&f, "experiment"), Source::FolderName);
        assert_eq!(val(&f, "hparams.hidden"), json!(8));
        assert_eq!(val(&f, "hparams.lr"), json!(0.01));
        assert_eq!(src(&f, "hparams.lr"), Source::HparamsYaml);
        assert_eq!(val(&f, "model.encoder"), json!("resnet18"));
        assert_eq!(val(&f, "metrics.train_loss"), json!(0.6));
        assert_eq!(val(&f, "metrics.val_loss"), json!(0.5));
        assert_eq!(val(&f, "metrics.val_acc"), json!(0.6));
        assert_eq!(src(&f, "metrics.val_acc"), Source::MetricsCsv);
        assert!(get(&f, "metrics.epoch").is_none() && get(&f, "metrics.step").is_none());

        // mid-epoch: only rows up to the step
        let ck = write(r, &format!("{v0}/checkpoints/epoch=0-step=60.ckpt"), "");
        let f = lightning_logs(&c, &ck, r);
        assert_eq!(val(&f, "metrics.train_loss"), json!(0.9));
        assert!(get(&f, "metrics.val_loss").is_none());

        // step only: the epoch reached at that step
        let ck = write(r, &format!("{v0}/checkpoints/step=250.ckpt"), "");
        let f = lightning_logs(&c, &ck, r);
        assert_eq!(val(&f, "metrics.train_loss"), json!(0.4));
        assert!(get(&f, "metrics.val_loss").is_none());

        // last.ckpt: the last epoch; nan skipped
        let ck = write(r, &format!("{v0}/checkpoints/last.ckpt"), "");
        let f = lightning_logs(&c, &ck, r);
        assert_eq!(val(&f, "metrics.val_loss"), json!(0.3));
        assert_eq!(val(&f, "metrics.train_loss"), json!(0.4));
        assert!(get(&f, "metrics.val_acc").is_none());

        // best.ckpt: epoch unknown, no metrics; an epoch not in the file: none either
        for n in ["best.ckpt", "epoch=9-step=999.ckpt"] {
            let ck = write(r, &format!("{v0}/checkpoints/{n}"), "");
            let f = lightning_logs(&c, &ck, r);
            assert!(
                f.iter().all(|x| !matches!(x.field, Field::Metric(_))),
                "{n}"
            );
            assert_eq!(val(&f, "hparams.hidden"), json!(8));
        }
    }

    #[test]
    fn lightning_experiment_names() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let c = DirCache::new();
        let ck = write(r, "a/lightning_logs/version_3/checkpoints/x.ckpt", "");
        // outside root: last two components
        let other = tempfile::tempdir().unwrap();
        let f = lightning_logs(&c, &ck, other.path());
        assert_eq!(val(&f, "experiment"), json!("lightning_logs/version_3"));
        // root is the version dir itself
        let f = lightning_logs(&c, &ck, &r.join("a/lightning_logs/version_3"));
        assert_eq!(val(&f, "experiment"), json!("lightning_logs/version_3"));
        // no hparams.yaml/metrics.csv: still an experiment and a run, nothing else
        let f = lightning_logs(&c, &ck, r);
        assert_eq!(f.len(), 2);
        assert_eq!(val(&f, "run"), json!("a/lightning_logs/version_3"));
        assert_eq!(val(&f, "experiment"), json!("a/lightning_logs/version_3"));
        // a checkpoint directly in version_N
        let ck = write(r, "a/lightning_logs/version_4/x.ckpt", "");
        let f = lightning_logs(&c, &ck, r);
        assert_eq!(val(&f, "experiment"), json!("a/lightning_logs/version_4"));
        // relative paths with root "."
        let f = lightning_logs(
            &c,
            Path::new("tb/clf/version_0/checkpoints/x.ckpt"),
            Path::new("."),
        );
        assert_eq!(val(&f, "experiment"), json!("tb/clf/version_0"));
    }

    #[test]
    fn lightning_custom_version_and_non_lightning() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let c = DirCache::new();
        write(r, "tb/clf/run_a/hparams.yaml", "width: 16\n");
        let ck = write(r, "tb/clf/run_a/checkpoints/epoch=0.ckpt", "");
        let f = lightning_logs(&c, &ck, r);
        assert_eq!(val(&f, "experiment"), json!("tb/clf/run_a"));
        assert_eq!(val(&f, "hparams.width"), json!(16));
        // Hydra-style outputs/<exp>/checkpoints without Lightning files: nothing
        let ck = write(r, "outputs/exp/checkpoints/last.ckpt", "");
        assert!(lightning_logs(&c, &ck, r).is_empty());
        let ck = write(r, "plain/model.pt", "");
        assert!(lightning_logs(&c, &ck, r).is_empty());
        assert!(lightning_logs(&c, Path::new("x.ckpt"), Path::new(".")).is_empty());
        assert!(lightning_logs(&c, Path::new("checkpoints/x.ckpt"), Path::new(".")).is_empty());
        assert!(lightning_logs(&c, Path::new("/"), Path::new("/")).is_empty());
    }

    #[test]
    fn lightning_malformed_files() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let c = DirCache::new();
        let v = "lightning_logs/version_0";
        write(r, &format!("{v}/hparams.yaml"), "a: [1, 2\nb: {{{\n");
        fs::write(r.join(v).join("metrics.csv"), b"\xff\xfe\x00garbage").unwrap();
        let ck = write(r, &format!("{v}/checkpoints/epoch=0-step=1.ckpt"), "");
        let f = lightning_logs(&c, &ck, r);
        assert_eq!(f.len(), 2, "{f:?}");
        // a header-only CSV and a CSV with short/long rows
        let v = "lightning_logs/version_1";
        write(r, &format!("{v}/metrics.csv"), "epoch,step,loss");
        let ck = write(r, &format!("{v}/checkpoints/last.ckpt"), "");
        assert_eq!(lightning_logs(&c, &ck, r).len(), 2);
        let v = "lightning_logs/version_2";
        write(
            r,
            &format!("{v}/metrics.csv"),
            "epoch,step,\"val,loss\"\r\n0\r\n0,1,0.5,7,8\r\nx,y,z\r\n",
        );
        let ck = write(r, &format!("{v}/checkpoints/last.ckpt"), "");
        let f = lightning_logs(&c, &ck, r);
        assert_eq!(val(&f, "metrics.val,loss"), json!(0.5));
    }

    #[test]
    fn lightning_python_tags() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let c = DirCache::new();
        let v = "lightning_logs/version_0";
        write(
            r,
            &format!("{v}/hparams.yaml"),
            "args: !!python/object:argparse.Namespace\n  lr: 0.1\n  arch: unet\n\
             act: !!python/name:torch.nn.modules.activation.ReLU ''\n\
             sizes: !!python/tuple\n- 1\n- 2\nloss: dice\n",
        );
        let ck = write(r, &format!("{v}/checkpoints/epoch=0-step=1.ckpt"), "");
        let f = lightning_logs(&c, &ck, r);
        assert_eq!(val(&f, "hparams.args"), json!({"lr": 0.1, "arch": "unet"}));
        assert_eq!(val(&f, "hparams.sizes"), json!([1, 2]));
        assert_eq!(val(&f, "model.loss"), json!("dice"));
    }

    #[test]
    fn metrics_csv_tail_of_a_large_file() {
        let t = tempfile::tempdir().unwrap();
        let mut text = String::from("epoch,step,loss\n");
        let row = format!("0,0,{}\n", "1".repeat(1000));
        while text.len() < (MAX_FILE_BYTES as usize) + 100_000 {
            text.push_str(&row);
        }
        text.push_str("7,70,0.25\n");
        let p = write(t.path(), "metrics.csv", &text);
        let csv = MetricsCsv::read(&p).unwrap();
        assert!(csv.rows.len() < text.len() / 1000);
        assert_eq!(csv.select(None, None), vec![("loss".to_owned(), 0.25)]);
    }

    #[test]
    fn loss_suffix_split() {
        let cases = [
            (
                "vit_base_patch32_224_focal",
                Some(("vit_base_patch32_224", "focal")),
            ),
            (
                "efficientnet_b3_weighted_bce",
                Some(("efficientnet_b3", "weighted_bce")),
            ),
            (
                "resnet18_cross_entropy",
                Some(("resnet18", "cross_entropy")),
            ),
            (
                "unet_resnet34_dice_bce",
                Some(("unet_resnet34", "dice_bce")),
            ),
            ("unet_focal_tversky", Some(("unet", "focal_tversky"))),
            ("ResNet50_Focal_Loss", Some(("ResNet50", "Focal_Loss"))),
            ("resnet18_ce", Some(("resnet18", "ce"))),
            ("resnet18", None),
            ("focal", None),
            ("_focal", None),
            ("resnet18_arcface2", None),
            ("ü_ünet_bce", Some(("ü_ünet", "bce"))),
        ];
        for (s, want) in cases {
            assert_eq!(split_model_loss(s), want, "{s}");
        }
        assert_eq!(
            after_timestamp("2025-02-12_15-10-33_vit_b_focal"),
            Some("vit_b_focal")
        );
        assert_eq!(
            after_timestamp("20250212_151033-resnet18_ce"),
            Some("resnet18_ce")
        );
        assert_eq!(after_timestamp("2025-02-12_15-10-33"), None);
        assert_eq!(after_timestamp("2025-02-12_15-10-33_"), None);
        assert_eq!(after_timestamp("my_experiment"), None);
        assert_eq!(after_timestamp("2025-0ü-12_x"), None);
    }

    fn arcaff_like(r: &Path) -> PathBuf {
        let d = "checkpoints/flares/multiclass/2025-02-12_15-10-33_vit_base_patch32_224_focal";
        write(
            r,
            &format!("{d}/config.json"),
            r#"{"MODEL_NAME": "vit_base_patch32_224", "LOSS_FUNCTION": "focal",
                "LEARNING_RATE": 0.0001, "AUGMENTATIONS": {"hflip": true}}"#,
        );
        write(
            r,
            &format!("{d}/training_summary.json"),
            r#"{"model_name": "vit_base_patch32_224", "loss_function": "focal",
                "root_name": "flares/multiclass", "best_epoch": 11, "best_val_f1": 0.612,
                "test_results": {"test_loss": 0.234, "test_f1": 0.616}}"#,
        );
        write(
            r,
            &format!("{d}/classification_report.json"),
            r#"{"test_metrics": {"test_f1": 0.999, "test_recall": 0.85},
                "A": {"precision": 0.5}, "accuracy": 0.89,
                "macro avg": {"precision": 0.7, "recall": 0.6, "f1-score": 0.65, "support": 10}}"#,
        );
        write(
            r,
            &format!("{d}/minimal_logging.json"),
            r#"{"best_epoch": 11, "best_val_f1": 0.612}"#,
        );
        write(r, &format!("{d}/best-epoch11-val_f1-0.612.ckpt"), "")
    }

    #[test]
    fn hierarchical_from_reports() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let c = DirCache::new();
        let ck = arcaff_like(r);
        let f = hierarchical(&c, &ck, r);
        no_dup_paths(&f);
        assert_eq!(
            val(&f, "experiment"),
            json!("flares/multiclass/2025-02-12_15-10-33_vit_base_patch32_224_focal")
        );
        assert_eq!(val(&f, "task"), json!("flares/multiclass"));
        assert_eq!(src(&f, "task"), Source::FolderName);
        assert_eq!(val(&f, "model.architecture"), json!("vit_base_patch32_224"));
        assert_eq!(src(&f, "model.architecture"), Source::JsonReport);
        assert_eq!(val(&f, "model.loss"), json!("focal"));
        assert_eq!(val(&f, "hparams.LEARNING_RATE"), json!(0.0001));
        assert_eq!(val(&f, "hparams.AUGMENTATIONS"), json!({"hflip": true}));
        assert_eq!(val(&f, "is_best"), json!(true));
        assert_eq!(val(&f, "metrics.test_f1"), json!(0.616));
        assert_eq!(val(&f, "metrics.test_recall"), json!(0.85));
        assert_eq!(val(&f, "metrics.accuracy"), json!(0.89));
        assert_eq!(val(&f, "metrics.macro_avg_f1"), json!(0.65));
        assert_eq!(src(&f, "metrics.test_f1"), Source::JsonReport);
        // from the file name elsewhere
        for p in [
            "epoch",
            "metrics.val_f1",
            "metrics.best_val_f1",
            "metrics.best_epoch",
        ] {
            assert!(get(&f, p).is_none(), "{p}");
        }
        // another checkpoint of the folder, not the best one: no test metrics
        let other = ck.with_file_name("epoch03.ckpt");
        fs::write(&other, "").unwrap();
        let f = hierarchical(&c, &other, r);
        assert_eq!(val(&f, "is_best"), json!(false));
        assert!(f.iter().all(|x| !matches!(x.field, Field::Metric(_))));
        // the catalog root inside `checkpoints/`: the task stays the same
        let f = hierarchical(&c, &ck, &r.join("checkpoints/flares"));
        assert_eq!(val(&f, "task"), json!("flares/multiclass"));
    }

    #[test]
    fn hierarchical_from_folder_name() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let c = DirCache::new();
        let ck = write(
            r,
            "runs/seg/2025-02-12_14-30-45_efficientnet_b3_weighted_bce/best-epoch02-val_f1-0.847.ckpt",
            "",
        );
        let f = hierarchical(&c, &ck, r);
        assert_eq!(
            val(&f, "experiment"),
            json!("runs/seg/2025-02-12_14-30-45_efficientnet_b3_weighted_bce")
        );
        assert_eq!(val(&f, "task"), json!("runs/seg"));
        assert_eq!(val(&f, "model.architecture"), json!("efficientnet_b3"));
        assert_eq!(src(&f, "model.architecture"), Source::FolderName);
        assert_eq!(val(&f, "model.loss"), json!("weighted_bce"));
        assert!(get(&f, "is_best").is_none());

        // a JSON gives the model only: the loss is what follows it in the name
        let d = "checkpoints/2025-02-12_16-45-22_my_net_v2_arcface";
        write(
            r,
            &format!("{d}/minimal_logging.json"),
            "{\"best_epoch\": 1}",
        );
        write(
            r,
            &format!("{d}/config.json"),
            "{\"MODEL_NAME\": \"my_net_v2\"}",
        );
        let ck = write(r, &format!("{d}/checkpoints/last.ckpt"), "");
        let f = hierarchical(&c, &ck, r);
        assert_eq!(
            val(&f, "experiment"),
            json!("2025-02-12_16-45-22_my_net_v2_arcface")
        );
        assert!(get(&f, "task").is_none());
        assert_eq!(val(&f, "model.architecture"), json!("my_net_v2"));
        assert_eq!(val(&f, "model.loss"), json!("arcface"));
        assert_eq!(src(&f, "model.loss"), Source::FolderName);

        // unknown loss, no reports: not an experiment folder of this kind
        let ck = write(
            r,
            "outputs/2025-02-12_16-45-22_myexp/checkpoints/last.ckpt",
            "",
        );
        assert!(hierarchical(&c, &ck, r).is_empty());
        let ck = write(r, "outputs/2025-02-12_16-45-22_resnet18_foo/x.ckpt", "");
        assert!(hierarchical(&c, &ck, r).is_empty());
        // broken JSON: folder name still speaks
        let d = "checkpoints/t/2025-02-12_16-45-22_resnet18_focal";
        write(r, &format!("{d}/training_summary.json"), "{not json");
        let ck = write(r, &format!("{d}/a.ckpt"), "");
        let f = hierarchical(&c, &ck, r);
        assert_eq!(val(&f, "model.architecture"), json!("resnet18"));
        assert_eq!(val(&f, "task"), json!("t"));
        assert!(hierarchical(&c, Path::new("a.ckpt"), Path::new(".")).is_empty());
    }

    #[test]
    fn hash_folders() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let c = DirCache::new();
        let h = "checkpoints/0f9e8d7c6b5a";
        write(
            r,
            &format!("{h}/hp/config.yaml"),
            "experiment_name: demo\nlearning_rate: 0.01\nmodel:\n  architecture: mlp\n  hidden: 16\n",
        );
        write(
            r,
            &format!("{h}/hp/extra.yml"),
            "learning_rate: 99\nseed: 3\n",
        );
        write(
            r,
            &format!("{h}/data/active_uids.txt"),
            "s1\ns2\n\ns2\n  s3  \n# note\n",
        );
        let ck = write(r, &format!("{h}/model/checkpoint_step_000100.pt"), "");
        let f = hash_folder(&c, &ck);
        no_dup_paths(&f);
        assert_eq!(val(&f, "experiment"), json!("0f9e8d7c6b5a"));
        assert_eq!(val(&f, "global_step"), json!(100));
        assert_eq!(src(&f, "global_step"), Source::HashFolder);
        assert_eq!(val(&f, "hparams.learning_rate"), json!(0.01));
        assert_eq!(val(&f, "hparams.seed"), json!(3));
        assert_eq!(
            val(&f, "hparams.model"),
            json!({"architecture": "mlp", "hidden": 16})
        );
        assert_eq!(val(&f, "model.architecture"), json!("mlp"));
        // `# note` is a UID, as `ckpt hash` reads the file (ckpt_meta::hash_folder).
        assert_eq!(val(&f, "data.active_uids"), json!(4));
        let ck = write(r, &format!("{h}/model/architecture.pt"), "");
        let f = hash_folder(&c, &ck);
        assert!(get(&f, "global_step").is_none());
        assert_eq!(val(&f, "experiment"), json!("0f9e8d7c6b5a"));
        // `step=` in the name is the file-name source's
        let ck = write(r, &format!("{h}/model/step=5.pt"), "");
        assert!(get(&hash_folder(&c, &ck), "global_step").is_none());

        // any name with model/ and hp/; uids as JSON
        write(r, "exps/run_a/hp/h.json", "{\"lr\": 1}");
        write(
            r,
            "exps/run_a/data/active_uids.json",
            "[\"a\", \"b\", \"a\", 3]",
        );
        let ck = write(r, "exps/run_a/model/ckpt-step-7.pt", "");
        let f = hash_folder(&c, &ck);
        assert_eq!(val(&f, "experiment"), json!("run_a"));
        assert_eq!(val(&f, "hparams.lr"), json!(1));
        assert_eq!(val(&f, "data.active_uids"), json!(3));
        // hex name without hp/; uids as CSV with a header
        write(
            r,
            "x/abcdef12/data/active_uids.csv",
            "uid,weight\nu1,1\nu2,1\nu1,2\n",
        );
        let ck = write(r, "x/abcdef12/model/checkpoint_step_000200.pt", "");
        let f = hash_folder(&c, &ck);
        assert_eq!(val(&f, "experiment"), json!("abcdef12"));
        assert_eq!(val(&f, "global_step"), json!(200));
        assert_eq!(val(&f, "data.active_uids"), json!(2));
        assert!(get(&f, "hparams.lr").is_none());
        // not hash folders
        let ck = write(r, "outputs/exp/model/last.pt", "");
        assert!(hash_folder(&c, &ck).is_empty());
        let ck = write(r, "x/abcdef12/weights/a.pt", "");
        assert!(hash_folder(&c, &ck).is_empty());
        assert!(hash_folder(&c, Path::new("model/a.pt")).is_empty());
        assert!(hash_folder(&c, Path::new("/")).is_empty());
    }

    #[test]
    fn step_names() {
        assert_eq!(step_in_name("checkpoint_step_000100"), Some(100));
        assert_eq!(step_in_name("model-step1200"), Some(1200));
        assert_eq!(step_in_name("STEP=5_final"), Some(5));
        assert_eq!(step_in_name("architecture"), None);
        assert_eq!(step_in_name("step_"), None);
        assert_eq!(step_in_name("stepü"), None);
    }

    fn mlflow_tree(r: &Path) -> PathBuf {
        let run = "mlruns/1234/abcd0123";
        write(r, "mlruns/1234/meta.yaml", "name: corpus\n");
        write(r, &format!("{run}/meta.yaml"), "run_name: clf\n");
        write(r, &format!("{run}/params/lr"), "0.05");
        write(r, &format!("{run}/params/optimizer"), "sgd");
        write(r, &format!("{run}/params/model/arch"), "mlp");
        write(r, &format!("{run}/params/architecture"), "mlp");
        write(r, &format!("{run}/params/flag"), "True");
        write(r, &format!("{run}/tags/mlflow.runName"), "clf");
        write(
            r,
            &format!("{run}/metrics/epoch"),
            "1 0.0 2\n2 1.0 5\n3 2.0 8\n",
        );
        write(
            r,
            &format!("{run}/metrics/val/acc"),
            "1 0.5 2\n2 0.6 5\n3 0.7 8\n",
        );
        write(
            r,
            &format!("{run}/metrics/val/loss"),
            "1 1.2 2\n2 1.1 5\n3 nan 8\nbad\n",
        );
        write(r, &format!("{run}/checkpoints/epoch=1-step=6.ckpt"), "")
    }

    #[test]
    fn mlflow_runs() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let c = DirCache::new();
        let ck = mlflow_tree(r);
        let f = loggers(&c, &ck, r);
        no_dup_paths(&f);
        assert_eq!(val(&f, "experiment"), json!("mlruns/1234/abcd0123"));
        assert_eq!(src(&f, "experiment"), Source::Logger);
        assert_eq!(val(&f, "hparams.lr"), json!(0.05));
        assert_eq!(val(&f, "hparams.optimizer"), json!("sgd"));
        assert_eq!(val(&f, "hparams.model/arch"), json!("mlp"));
        assert_eq!(val(&f, "hparams.flag"), json!(true));
        assert_eq!(val(&f, "model.architecture"), json!("mlp"));
        assert_eq!(val(&f, "metrics.val/acc"), json!(0.6));
        assert_eq!(val(&f, "metrics.val/loss"), json!(1.1));
        assert!(get(&f, "metrics.epoch").is_none());
        let dir = ck.parent().unwrap();
        // epoch only: the last step of that epoch
        let f = loggers(&c, &dir.join("epoch=0.ckpt"), r);
        assert_eq!(val(&f, "metrics.val/acc"), json!(0.5));
        // end of training; nan skipped back to the last number
        let f = loggers(&c, &dir.join("last.ckpt"), r);
        assert_eq!(val(&f, "metrics.val/acc"), json!(0.7));
        assert_eq!(val(&f, "metrics.val/loss"), json!(1.1));
        // unknown position
        let f = loggers(&c, &dir.join("best.ckpt"), r);
        assert!(f.iter().all(|x| !matches!(x.field, Field::Metric(_))));
        assert_eq!(val(&f, "experiment"), json!("mlruns/1234/abcd0123"));
        // deeper inside the run's artifacts
        let f = loggers(
            &c,
            &r.join("mlruns/1234/abcd0123/artifacts/model/m.ckpt"),
            r,
        );
        assert_eq!(val(&f, "experiment"), json!("mlruns/1234/abcd0123"));
        // the experiment folder's meta.yaml alone is not a run
        assert!(loggers(&c, &r.join("mlruns/1234/x.ckpt"), r).is_empty());
    }

    #[test]
    fn wandb_runs() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let c = DirCache::new();
        write(
            r,
            "save/wandb/offline-run-20261122_064815-vuo698ek/run-vuo698ek.wandb",
            "x",
        );
        write(
            r,
            "save/wandb/run-20261123_010101-abc123xy/files/config.yaml",
            "wandb_version: 1\n_wandb:\n  desc: null\n  value: {cli_version: 0.1}\n\
             lr:\n  desc: null\n  value: 0.05\nencoder:\n  value: resnet18\nplain: 3\n",
        );
        write(r, "save/wandb/latest-run/x", "");
        let ck = write(
            r,
            "save/corpus/vuo698ek/checkpoints/epoch=1-step=6.ckpt",
            "",
        );
        let f = loggers(&c, &ck, r);
        assert_eq!(
            f,
            vec![
                Fact::new(Field::Experiment, json!("vuo698ek"), Source::Logger),
                Fact::new(Field::Run, json!("vuo698ek"), Source::Logger)
            ]
        );
        let ck = write(r, "save/corpus/abc123xy/checkpoints/last.ckpt", "");
        let f = loggers(&c, &ck, r);
        no_dup_paths(&f);
        assert_eq!(val(&f, "experiment"), json!("abc123xy"));
        assert_eq!(val(&f, "hparams.lr"), json!(0.05));
        assert_eq!(val(&f, "hparams.plain"), json!(3));
        assert_eq!(val(&f, "model.encoder"), json!("resnet18"));
        assert!(get(&f, "hparams._wandb").is_none() && get(&f, "hparams.wandb_version").is_none());
        // a checkpoint inside the run folder
        let ck = write(
            r,
            "save/wandb/run-20261123_010101-abc123xy/files/m.ckpt",
            "",
        );
        assert_eq!(val(&loggers(&c, &ck, r), "experiment"), json!("abc123xy"));
        // no matching run folder
        let ck = write(r, "save/corpus/zzz/checkpoints/last.ckpt", "");
        assert!(loggers(&c, &ck, r).is_empty());
        assert!(loggers(&c, Path::new("checkpoints/x.ckpt"), Path::new(".")).is_empty());
        assert_eq!(wandb_run_id("run-2026112_064815-x"), None);
        assert_eq!(wandb_run_id("offline-run-20261122_064815-"), None);
    }

    #[test]
    fn cache_is_shared_and_used() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let c = Arc::new(DirCache::new());
        let v = "lightning_logs/version_0";
        let hp = write(r, &format!("{v}/hparams.yaml"), "lr: 1\n");
        let ck = write(r, &format!("{v}/checkpoints/last.ckpt"), "");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = Arc::clone(&c);
                let ck = ck.clone();
                let r = r.to_path_buf();
                std::thread::spawn(move || lightning_logs(&c, &ck, &r))
            })
            .collect();
        for th in threads {
            assert_eq!(val(&th.join().unwrap(), "hparams.lr"), json!(1));
        }
        fs::write(&hp, "lr: 2\n").unwrap();
        assert_eq!(val(&lightning_logs(&c, &ck, r), "hparams.lr"), json!(1));
        assert_eq!(c.config(&hp).as_deref(), Some(&json!({"lr": 1})));
        c.clear();
        assert_eq!(val(&lightning_logs(&c, &ck, r), "hparams.lr"), json!(2));
        assert!(c.config(&r.join("missing.yaml")).is_none());
        assert!(format!("{c:?}").contains("DirCache"));
    }
}
