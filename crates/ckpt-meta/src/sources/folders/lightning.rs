//! Lightning log folders: `version_N/` with `hparams.yaml` and `metrics.csv`.

use super::*;

pub(super) struct LightningDir {
    /// `hparams.yaml` or `metrics.csv` is here.
    is_log_dir: bool,
    hparams: Option<Arc<Value>>,
    /// `hparams.yaml` was skipped for going over a budget: the warning to give.
    hparams_warning: Option<Arc<str>>,
    metrics: Option<MetricsCsv>,
}

impl LightningDir {
    pub(super) fn load(cache: &DirCache, dir: &Path) -> LightningDir {
        let hp = dir.join("hparams.yaml");
        let mc = dir.join("metrics.csv");
        let hp_here = is_file(&hp);
        let mc_here = is_file(&mc);
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

/// The Lightning version folder a checkpoint belongs to (`<version>/checkpoints/X.ckpt` or
/// `version_N/X.ckpt`), with what it holds: a folder not named `version_N` counts only when it
/// has `hparams.yaml` or `metrics.csv`. The one rule [`lightning_logs`] and
/// [`super::log_dirs`] share.
pub(super) fn version_dir<'p>(
    cache: &DirCache,
    ckpt: &'p Path,
) -> Option<(&'p Path, Arc<LightningDir>)> {
    let parent = ckpt.parent()?;
    let (dir, named) = if name_of(parent) == Some("checkpoints") {
        match parent.parent() {
            Some(d) if !d.as_os_str().is_empty() => (d, is_version_name(name_of(d))),
            _ => return None,
        }
    } else if is_version_name(name_of(parent)) {
        (parent, true)
    } else {
        return None;
    };
    let info = cache.lightning_dir(dir);
    (named || info.is_log_dir).then_some((dir, info))
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
    let Some((dir, info)) = version_dir(cache, ckpt) else {
        return Vec::new();
    };
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
pub(super) struct MetricsCsv {
    /// Metric columns (all but `epoch` and `step`).
    names: Vec<String>,
    has_epoch: bool,
    has_step: bool,
    pub(super) rows: Vec<CsvRow>,
}

#[derive(Debug)]
pub(super) struct CsvRow {
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
    /// only: a FIFO must not block us). Two ranged reads of a source (one request each for an
    /// object, announced together so they go out at once; one whole-file read when they meet).
    pub(super) fn read(path: &Path) -> Option<MetricsCsv> {
        let src = crate::consulted::open(path).ok()?;
        let size = src.len();
        let head_len = size.min(64 << 10);
        let tail_from = size.saturating_sub(MAX_CSV_TAIL);
        if tail_from <= head_len {
            src.prefetch(std::slice::from_ref(&(0..size)));
        } else {
            src.prefetch(&[0..head_len, tail_from..size]);
        }
        let mut head = vec![0u8; usize::try_from(head_len).ok()?];
        src.read_exact_at(&mut head, 0).ok()?;
        let header_end = head.iter().position(|&b| b == b'\n')?;
        let header = String::from_utf8_lossy(&head[..header_end]);
        let cols = split_csv_line(header.trim_end_matches('\r').trim_start_matches('\u{feff}'));
        let body_start = header_end as u64 + 1;
        let start = body_start.max(tail_from);
        let mut body = vec![0u8; usize::try_from(size.saturating_sub(start)).ok()?];
        src.read_exact_at(&mut body, start).ok()?;
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
    pub(super) fn select(&self, epoch: Option<i64>, step: Option<i64>) -> Vec<(String, f64)> {
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
