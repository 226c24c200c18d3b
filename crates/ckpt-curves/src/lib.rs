//! The metric series a training run logged, read from the files its loggers wrote:
//!
//! - Lightning CSVLogger `metrics.csv` ([`csv`]),
//! - TensorBoard event files `events.out.tfevents.*` ([`tfevents`]: TFRecord framing with
//!   masked CRC-32C, protobuf `Event`s decoded with `prost`-derived structs),
//! - MLflow file-store runs, `metrics/<key>` ([`mlflow`]),
//! - W&B run folders, the `run-<id>.wandb` LevelDB-log of protobuf records ([`wandb`]),
//! - the JSON reports `ckpt.CheckpointManager` writes ([`report`]).
//!
//! Every reader is bounded (bytes read per file, line and record lengths, points kept per
//! series, number of series) and never fails: what it cannot read becomes a [`Warning`]
//! naming the file and the line or record, and whatever was read before it is kept. Which
//! folders belong to a checkpoint's run is not decided here (the catalog's `log_dirs` does);
//! [`sources_in`] lists the files of one such folder.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub mod csv;
pub mod mlflow;
pub mod report;
pub mod tfevents;
pub mod wandb;

/// One series as a reader returns it: metric, axis, points.
pub type Named = (String, Axis, Vec<(i64, f64)>);

/// What a reader returns: its series and its warnings.
pub type ReadOut = (Vec<Named>, Vec<Warning>);

/// What kind of logger wrote a source (its JSON name is the API's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// A CSVLogger `metrics.csv` (the file).
    LightningCsv,
    /// TensorBoard event files (the folder holding them; all of them are merged).
    Tensorboard,
    /// An MLflow file-store run (its `metrics/` folder).
    Mlflow,
    /// A W&B run folder (`[offline-]run-<stamp>-<id>/`).
    Wandb,
    /// A folder of `ckpt.CheckpointManager` JSON reports.
    JsonReport,
}

/// One place series are read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Source {
    pub kind: SourceKind,
    pub path: PathBuf,
}

/// What a series' first coordinate counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    /// The trainer's global step (what a checkpoint's `global_step` is).
    Step,
    /// The epoch (JSON reports know no steps).
    Epoch,
    /// The row's position in the file: the log had no step.
    Row,
}

/// One metric's points, sorted by their first coordinate (one point per coordinate: a
/// later-logged value for the same step wins, as after a resumed run re-logs it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub metric: String,
    /// Index into the sources of the [`Curves`] it came in.
    pub source: usize,
    pub x: Axis,
    pub points: Vec<(i64, f64)>,
}

/// Where in a file a warning is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// A 1-based line of a text file.
    Line(u64),
    /// A record of a binary log: its 0-based index and byte offset.
    Record { index: u64, offset: u64 },
    /// A metric or key.
    Key(String),
}

/// Why something was left out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("cannot read: {0}")]
    Io(String),
    #[error("not a regular file")]
    NotAFile,
    #[error("larger than {limit} bytes: only the first {limit} bytes are read")]
    FileTooLarge { limit: u64 },
    #[error("its files hold more than {limit} bytes together: the later ones are not read")]
    SourceTooLarge { limit: u64 },
    #[error("longer than {limit} bytes: skipped")]
    LineTooLong { limit: usize },
    #[error("not UTF-8: skipped")]
    NotUtf8,
    #[error("no header line")]
    NoHeader,
    #[error("column {column:?}: {text:?} is not a number")]
    NotANumber { column: String, text: String },
    #[error("no step: skipped")]
    NoStep,
    #[error("no line end (cut short, or being written): skipped")]
    Unterminated,
    #[error("{count} NaN or infinite values left out")]
    NonFinite { count: u64 },
    #[error("more than {limit} series: this one and later ones left out")]
    TooManySeries { limit: usize },
    #[error("{from} points thinned to {to}")]
    Thinned { from: u64, to: usize },
    #[error("CRC mismatch in the record's {part}")]
    BadCrc { part: &'static str },
    #[error("truncated: {needed} bytes needed, {left} left")]
    Truncated { needed: u64, left: u64 },
    #[error("claims {len} bytes, more than the {limit} allowed")]
    TooLong { len: u64, limit: u64 },
    #[error("not a valid {message} message: {error}")]
    Decode {
        message: &'static str,
        error: String,
    },
    #[error("not a W&B run log (bad file header)")]
    BadHeader,
    #[error("record fragment of type {kind} out of place: {what}")]
    Fragment { kind: u8, what: &'static str },
    #[error("not JSON: {0}")]
    Json(String),
    #[error("no history in the run log: the summary's last values only")]
    SummaryOnly,
    #[error("{0} more warnings not shown")]
    More(u64),
}

/// A part of a log that could not be read, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    pub path: PathBuf,
    pub at: Option<At>,
    pub problem: Problem,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        match &self.at {
            Some(At::Line(n)) => write!(f, ": line {n}")?,
            Some(At::Record { index, offset }) => {
                write!(f, ": record {index} (byte {offset})")?;
            }
            Some(At::Key(k)) => write!(f, ": {k}")?,
            None => {}
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for Warning {}

/// Budgets on what a file may make us read and keep.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes read from one file (the rest is ignored, with a warning), and from all the
    /// files of one source (a TensorBoard folder, an MLflow run) together.
    pub max_file_bytes: u64,
    /// Bytes of one text line or one binary record.
    pub max_record_bytes: u64,
    /// Points per series handed out (evenly thinned beyond, first and last kept).
    pub max_points: usize,
    /// Series per source.
    pub max_series: usize,
    /// Points kept in memory while one source is read, over all its series (each series is
    /// thinned by half when the total goes over).
    pub max_points_held: usize,
    /// Points handed out for a whole run (its series are thinned in proportion beyond).
    pub max_points_run: usize,
    /// Warnings kept per file (then one saying how many more).
    pub max_warnings: usize,
    /// Event files read in a TensorBoard folder; metric files in an MLflow run.
    pub max_files: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_file_bytes: 512 << 20,
            max_record_bytes: 16 << 20,
            max_points: 100_000,
            max_series: 2_000,
            max_points_held: 8_000_000,
            max_points_run: 2_000_000,
            max_warnings: 20,
            max_files: 4096,
        }
    }
}

/// What was read for one run: its sources, their series, and what could not be read.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Curves {
    pub sources: Vec<Source>,
    pub series: Vec<Series>,
    #[serde(serialize_with = "as_strings")]
    pub warnings: Vec<Warning>,
}

fn as_strings<S: serde::Serializer>(w: &[Warning], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(w.iter().map(ToString::to_string))
}

/// The kinds of logger folder [`sources_in`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    /// A Lightning version folder: `metrics.csv` and/or TensorBoard event files.
    Lightning,
    /// An MLflow run folder (its `metrics/` is read).
    Mlflow,
    /// A W&B run folder.
    Wandb,
    /// A folder of JSON reports.
    Reports,
}

/// Whether a file name is a TensorBoard event file's.
pub fn is_event_file(name: &str) -> bool {
    name.starts_with("events.out.tfevents.")
}

/// The sources in a logger folder (those that exist; symlinks inside it are not followed).
pub fn sources_in(folder: Folder, dir: &Path) -> Vec<Source> {
    let src = |kind, path: PathBuf| Source { kind, path };
    match folder {
        Folder::Lightning => {
            let mut out = Vec::new();
            let csv = dir.join("metrics.csv");
            if plain_file(&csv) {
                out.push(src(SourceKind::LightningCsv, csv));
            }
            if !event_files(dir, 1).is_empty() {
                out.push(src(SourceKind::Tensorboard, dir.to_path_buf()));
            }
            out
        }
        Folder::Mlflow => {
            let m = dir.join("metrics");
            if m.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                vec![src(SourceKind::Mlflow, m)]
            } else {
                Vec::new()
            }
        }
        Folder::Wandb => vec![src(SourceKind::Wandb, dir.to_path_buf())],
        Folder::Reports => {
            if report::FILES.iter().any(|f| plain_file(&dir.join(f))) {
                vec![src(SourceKind::JsonReport, dir.to_path_buf())]
            } else {
                Vec::new()
            }
        }
    }
}

/// A regular file, not through a symlink.
fn plain_file(p: &Path) -> bool {
    p.symlink_metadata().is_ok_and(|m| m.is_file())
}

/// Event files directly in `dir` (regular files, not symlinks), sorted by name (which starts
/// with the time they were opened: a resumed run's later file sorts after), at most `max`.
fn event_files_in(dir: &Path, max: usize) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .take(100_000)
        .filter(|e| e.file_name().to_str().is_some_and(is_event_file))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out.truncate(max);
    out
}

/// The event files of a TensorBoard folder, each with the prefix its tags get: those
/// directly in it (no prefix), then those one folder down (`<sub>/`: torch's `add_scalars`
/// writes each of its curves to `<main_tag>_<name>/`, `add_hparams` to `<time>/`), folders
/// by name (the first 256), not through symlinks; at most `max` files.
pub(crate) fn event_files(dir: &Path, max: usize) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = event_files_in(dir, max)
        .into_iter()
        .map(|p| (String::new(), p))
        .collect();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut subs: Vec<(String, PathBuf)> = rd
        .flatten()
        .take(10_000)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Some((e.file_name().to_str()?.to_owned(), e.path())))
        .filter(|(n, _)| n != "checkpoints" && !n.starts_with('.'))
        .collect();
    subs.sort();
    // Bounded listing: a version folder may hold other folders of many files.
    subs.truncate(256);
    for (name, sub) in subs {
        let left = max.saturating_sub(out.len());
        if left == 0 {
            break;
        }
        out.extend(
            event_files_in(&sub, left)
                .into_iter()
                .map(|p| (format!("{name}/"), p)),
        );
    }
    out
}

/// Read every source: one [`Curves`] for the run, its series in source order, thinned as a
/// whole to [`Limits::max_points_run`].
pub fn read(sources: Vec<Source>, limits: &Limits) -> Curves {
    let mut out = Curves::default();
    for (i, s) in sources.iter().enumerate() {
        let (series, warnings) = read_one(s, limits);
        out.series
            .extend(series.into_iter().map(|(metric, x, points)| Series {
                metric,
                source: i,
                x,
                points,
            }));
        out.warnings.extend(warnings);
    }
    out.sources = sources;
    let total: usize = out.series.iter().map(|s| s.points.len()).sum();
    if total > limits.max_points_run {
        for s in &mut out.series {
            let n = s.points.len();
            // Proportional share, at least first and last.
            let keep = ((n as u128 * limits.max_points_run as u128) / total as u128) as usize;
            let keep = keep.max(2);
            if n > keep {
                s.points = thin(std::mem::take(&mut s.points), keep);
            }
        }
    }
    out
}

/// One source's series (name, axis, points) and warnings.
pub fn read_one(s: &Source, limits: &Limits) -> ReadOut {
    match s.kind {
        SourceKind::LightningCsv => csv::read(&s.path, limits),
        SourceKind::Tensorboard => tfevents::read_dir(&s.path, limits),
        SourceKind::Mlflow => mlflow::read(&s.path, limits),
        SourceKind::Wandb => wandb::read(&s.path, limits),
        SourceKind::JsonReport => report::read(&s.path, limits),
    }
}

/// For each epoch, the last step at which it was logged, from series named `epoch` on the
/// step axis (Lightning logs the epoch as a metric): how a checkpoint that knows only its
/// epoch is placed on a step axis.
pub fn epoch_steps(series: &[Series]) -> HashMap<i64, i64> {
    let mut out: HashMap<i64, i64> = HashMap::new();
    for s in series {
        if s.metric != "epoch" || s.x != Axis::Step {
            continue;
        }
        for &(step, v) in &s.points {
            if v.fract() != 0.0 || v.abs() > 1e15 {
                continue;
            }
            let e = v as i64;
            let last = out.entry(e).or_insert(step);
            *last = (*last).max(step);
        }
    }
    out
}

/// `n` points taken evenly from `points` (first and last kept): indices `i·(len−1)/(n−1)`.
pub fn thin(points: Vec<(i64, f64)>, n: usize) -> Vec<(i64, f64)> {
    let len = points.len();
    if len <= n {
        return points;
    }
    if n <= 1 {
        return points.into_iter().take(n).collect();
    }
    let last = (len - 1) as u128;
    let steps = (n - 1) as u128;
    (0..n)
        .filter_map(|i| points.get(((i as u128 * last) / steps) as usize).copied())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Shared by the readers

/// Warnings of one file, at most [`Limits::max_warnings`] kept.
pub(crate) struct Warnings {
    path: PathBuf,
    max: usize,
    kept: Vec<Warning>,
    omitted: u64,
}

impl Warnings {
    pub(crate) fn new(path: &Path, limits: &Limits) -> Warnings {
        Warnings {
            path: path.to_path_buf(),
            max: limits.max_warnings,
            kept: Vec::new(),
            omitted: 0,
        }
    }

    pub(crate) fn add(&mut self, at: Option<At>, problem: Problem) {
        self.add_for(&self.path.clone(), at, problem);
    }

    /// A warning about another file of the same source (an event file of a folder).
    pub(crate) fn add_for(&mut self, path: &Path, at: Option<At>, problem: Problem) {
        if self.kept.len() < self.max {
            self.kept.push(Warning {
                path: path.to_path_buf(),
                at,
                problem,
            });
        } else {
            self.omitted += 1;
        }
    }

    pub(crate) fn finish(mut self) -> Vec<Warning> {
        if self.omitted > 0 {
            self.kept.push(Warning {
                path: self.path,
                at: None,
                problem: Problem::More(self.omitted),
            });
        }
        self.kept
    }
}

/// One series being read: points kept in arrival order, one in `stride` once it has been
/// thinned (memory stays bounded however long the log), and the last one seen.
struct Acc {
    x: Axis,
    points: Vec<(i64, f64)>,
    stride: u64,
    seen: u64,
    last: Option<(i64, f64)>,
    non_finite: u64,
}

/// The series of one source as they are read.
pub(crate) struct Collector {
    limits: Limits,
    names: Vec<String>,
    accs: Vec<Acc>,
    index: HashMap<String, usize>,
    held: usize,
    refused: bool,
}

impl Collector {
    pub(crate) fn new(limits: &Limits) -> Collector {
        Collector {
            limits: *limits,
            names: Vec::new(),
            accs: Vec::new(),
            index: HashMap::new(),
            held: 0,
            refused: false,
        }
    }

    /// Add a point; `false` (once, with a warning) when the series is one too many.
    pub(crate) fn push(&mut self, w: &mut Warnings, metric: &str, x: Axis, step: i64, v: f64) {
        let i = match self.index.get(metric) {
            Some(&i) => i,
            None => {
                if self.accs.len() >= self.limits.max_series {
                    if !self.refused {
                        self.refused = true;
                        w.add(
                            Some(At::Key(metric.to_owned())),
                            Problem::TooManySeries {
                                limit: self.limits.max_series,
                            },
                        );
                    }
                    return;
                }
                self.index.insert(metric.to_owned(), self.accs.len());
                self.names.push(metric.to_owned());
                self.accs.push(Acc {
                    x,
                    points: Vec::new(),
                    stride: 1,
                    seen: 0,
                    last: None,
                    non_finite: 0,
                });
                self.accs.len() - 1
            }
        };
        let Some(a) = self.accs.get_mut(i) else {
            return;
        };
        if !v.is_finite() {
            a.non_finite += 1;
            return;
        }
        a.seen += 1;
        a.last = Some((step, v));
        if (a.seen - 1) % a.stride != 0 {
            return;
        }
        a.points.push((step, v));
        self.held += 1;
        let cap = self.limits.max_points.saturating_mul(2).max(4);
        if a.points.len() >= cap {
            self.held -= halve(a);
        }
        if self.held > self.limits.max_points_held {
            for a in &mut self.accs {
                if a.points.len() > 2 {
                    self.held -= halve(a);
                }
            }
        }
    }

    /// The series: sorted by step, one point per step (the later one), thinned to
    /// [`Limits::max_points`]; a warning per series with NaN/inf values or thinned.
    pub(crate) fn finish(self, w: &mut Warnings) -> Vec<Named> {
        let mut out = Vec::with_capacity(self.accs.len());
        for (name, mut a) in self.names.into_iter().zip(self.accs) {
            if a.non_finite > 0 {
                w.add(
                    Some(At::Key(name.clone())),
                    Problem::NonFinite {
                        count: a.non_finite,
                    },
                );
            }
            if let Some(last) = a.last
                && a.points.last() != Some(&last)
            {
                a.points.push(last);
            }
            // Stable: among equal steps the later-read stays last, and wins.
            a.points.sort_by_key(|p| p.0);
            let mut pts: Vec<(i64, f64)> = Vec::with_capacity(a.points.len());
            for p in a.points {
                match pts.last_mut() {
                    Some(q) if q.0 == p.0 => *q = p,
                    _ => pts.push(p),
                }
            }
            if a.stride > 1 || pts.len() > self.limits.max_points {
                let to = pts.len().min(self.limits.max_points);
                w.add(
                    Some(At::Key(name.clone())),
                    Problem::Thinned { from: a.seen, to },
                );
                pts = thin(pts, to);
            }
            if !pts.is_empty() {
                out.push((name, a.x, pts));
            }
        }
        out
    }
}

/// Keep every other point (the first included); returns how many were dropped.
fn halve(a: &mut Acc) -> usize {
    let before = a.points.len();
    let mut i = 0usize;
    a.points.retain(|_| {
        i += 1;
        (i - 1).is_multiple_of(2)
    });
    a.stride = a.stride.saturating_mul(2);
    before - a.points.len()
}

/// Open a regular file for reading without blocking on a FIFO or device; its size.
pub(crate) fn open_regular(path: &Path) -> Result<(File, u64), Problem> {
    let io = |e: std::io::Error| Problem::Io(e.to_string());
    let m = std::fs::metadata(path).map_err(io)?;
    if !m.is_file() {
        return Err(Problem::NotAFile);
    }
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let f = o.open(path).map_err(io)?;
    let m = f.metadata().map_err(io)?;
    if !m.is_file() {
        return Err(Problem::NotAFile);
    }
    Ok((f, m.len()))
}

/// A whole file of at most `limit` bytes (else a [`Problem::FileTooLarge`] warning and
/// nothing: a JSON document cut short is not JSON).
pub(crate) fn read_whole(path: &Path, limit: u64) -> Result<Vec<u8>, Problem> {
    use std::io::Read as _;
    let (f, len) = open_regular(path)?;
    if len > limit {
        return Err(Problem::FileTooLarge { limit });
    }
    let mut buf = Vec::with_capacity(len as usize);
    f.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| Problem::Io(e.to_string()))?;
    if buf.len() as u64 > limit {
        return Err(Problem::FileTooLarge { limit });
    }
    Ok(buf)
}

/// A text line reader with a bounded line length: lines longer than the limit are skipped
/// to their end (reported), never buffered whole.
pub(crate) struct Lines<R> {
    inner: R,
    max: usize,
    pub(crate) line_no: u64,
    buf: Vec<u8>,
}

pub(crate) enum Line<'a> {
    Text(&'a str),
    TooLong,
    NotUtf8,
    /// The last line, without its line end: cut by the byte budget, or still being written
    /// (a value cut mid-number would read as another number).
    Unterminated,
}

impl<R: std::io::BufRead> Lines<R> {
    pub(crate) fn new(inner: R, max: usize) -> Lines<R> {
        Lines {
            inner,
            max,
            line_no: 0,
            buf: Vec::new(),
        }
    }

    /// The next line without its `\n`/`\r\n`; `None` at the end (or on a read error, which
    /// is returned as `Err`).
    pub(crate) fn next_line(&mut self) -> Option<(u64, Result<Line<'_>, std::io::Error>)> {
        self.buf.clear();
        let mut too_long = false;
        let mut any = false;
        let mut ended = false;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Some((self.line_no + 1, Err(e))),
            };
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], Some(i + 1)),
                None => (chunk, None),
            };
            if !too_long {
                if self.buf.len() + part.len() > self.max {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(part);
                }
            }
            let used = done.unwrap_or(chunk.len());
            self.inner.consume(used);
            if done.is_some() {
                ended = true;
                break;
            }
        }
        if !any {
            return None;
        }
        self.line_no += 1;
        let n = self.line_no;
        if too_long {
            return Some((n, Ok(Line::TooLong)));
        }
        if !ended {
            return Some((n, Ok(Line::Unterminated)));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        match std::str::from_utf8(&self.buf) {
            Ok(s) => Some((n, Ok(Line::Text(s)))),
            Err(_) => Some((n, Ok(Line::NotUtf8))),
        }
    }
}

/// A float as written by Python (`nan`, `inf`, `-inf`, `1e-05`) or Rust.
pub(crate) fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    t.parse::<f64>().ok()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
