//! `ckpt catalog` and `ckpt cache`: what checkpoints there are, which is best, what they are.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Result;
use ckpt_catalog::CatalogEntry;
use ckpt_catalog::cache::Cache;
use ckpt_catalog::catalog::{Options, build_streaming};
use ckpt_catalog::discover::WalkOptions;
use ckpt_catalog::pretty::{Style, with_shared_parts_memoized};
use ckpt_catalog::query;
use std::io::Write as _;

use serde_json::Value;

use crate::Outcome;
use crate::cli::{CacheArgs, CacheCommand, CatalogArgs, CatalogFormat};
use crate::inspect::{human_bytes, thousands};

pub fn run(a: &CatalogArgs) -> Result<Outcome> {
    let filters = a
        .filter
        .iter()
        .map(|f| query::parse_filter(f).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    if a.format == CatalogFormat::Parquet && a.output.is_none() {
        anyhow::bail!("--format parquet writes a binary file: name it with --output FILE");
    }
    if a.output.is_some() && a.explain.is_some() {
        anyhow::bail!("--output does not apply to --explain (it prints for a person)");
    }
    let tty = crate::sink::stderr_is_terminal();
    // A bar on stderr, only on a terminal: stdout stays pure data.
    let progress: Option<ckpt_catalog::catalog::Progress> = tty.then(|| {
        std::sync::Arc::new(|done: usize, total: usize| {
            const W: usize = 30;
            let filled = (done * W).checked_div(total).unwrap_or(W);
            crate::sink_eprint!(
                "\r[{}{}] {done}/{total} checkpoints",
                "#".repeat(filled),
                ".".repeat(W - filled)
            );
        }) as ckpt_catalog::catalog::Progress
    });
    let opts = Options {
        walk: WalkOptions {
            recursive: !a.no_recursive,
            max_depth: a.max_depth,
        },
        cache: if a.no_cache {
            None
        } else {
            Some(a.cache_file.clone().unwrap_or_else(Cache::default_path))
        },
        progress,
    };
    let mut out = Output::new(a.output.is_some());
    let streaming = !a.best
        && !a.latest
        && a.explain.is_none()
        && a.sort.is_none()
        && matches!(a.format, CatalogFormat::Json | CatalogFormat::Jsonl);
    // Every field a query names must exist in some entry: a typo is an error, not an empty
    // (or unsorted) answer.
    let mut queried: Vec<(&str, &str)> = filters
        .iter()
        .map(|f| ("--filter", f.field.as_str()))
        .collect();
    queried.extend(a.sort.as_deref().map(|s| ("--sort", s)));
    queried.extend(a.by.as_deref().map(|b| ("--by", b)));
    if a.explain.is_some() {
        return explain(a, &opts);
    }
    // The table's own columns (a file name, a score, a size …) are not fields to look up.
    for c in a
        .columns
        .iter()
        .filter(|c| !PSEUDO_COLUMNS.contains(&c.as_str()))
    {
        queried.push(("--columns", c.as_str()));
    }
    let mut fields = FieldCheck::new(queried);
    let keep = |e: &CatalogEntry| filters.iter().all(|f| f.matches(e));
    // Without queries that need every entry at once, JSON is written as each folder is
    // done: memory stays flat however big the tree is.
    let (cat, mut entries) = if streaming {
        let mut first = true;
        let mut io_err: Option<std::io::Error> = None;
        if a.format == CatalogFormat::Json {
            out.write_all(b"{\n  \"checkpoints\": [")?;
        }
        // The parts a run's checkpoints share are rendered once each (same bytes).
        let style = if a.format == CatalogFormat::Json {
            Style::Pretty { entry_level: 2 }
        } else {
            Style::Compact
        };
        let cat = with_shared_parts_memoized(style, || {
            build_streaming(&a.paths, &opts, &mut |e| {
                fields.see(&e);
                if io_err.is_some() || !keep(&e) {
                    return;
                }
                let r = if a.format == CatalogFormat::Json {
                    write_indented(&mut out, &e, first)
                } else {
                    serde_json::to_writer(&mut out, &e)
                        .map_err(json_io)
                        .and_then(|()| out.write_all(b"\n"))
                };
                first = false;
                if let Err(err) = r {
                    io_err = Some(err);
                }
            })
        })?;
        if let Some(e) = io_err {
            return Err(e.into());
        }
        if a.format == CatalogFormat::Json {
            out.write_all(if first { b"],\n" } else { b"\n  ],\n" })?;
            // Exactly what serde_json's pretty printer writes for the whole output (the
            // contract test compares bytes).
            out.write_all(b"  \"warnings\": ")?;
            let w = serde_json::to_string_pretty(&cat.warnings)?;
            for (i, line) in w.lines().enumerate() {
                if i > 0 {
                    out.write_all(b"\n  ")?;
                }
                out.write_all(line.as_bytes())?;
            }
            out.write_all(b"\n}\n")?;
        }
        (cat, Vec::new())
    } else {
        let mut kept = Vec::new();
        let cat = build_streaming(&a.paths, &opts, &mut |e| {
            fields.see(&e);
            if keep(&e) {
                kept.push(e);
            }
        })?;
        (cat, kept)
    };
    if tty {
        crate::sink_eprint!("\x1b[2K\r");
    }
    for w in &cat.warnings {
        crate::sink_eprintln!("ckpt: warning: {w}");
    }
    for b in &cat.bugs {
        crate::report_bug("catalog", &b.path, &b.panic);
    }
    // A prefix listed in part, or an object whose read failed this time (each warned above):
    // the answer is not all there is, so exit 1, never a clean 0.
    let outcome = if cat.incomplete.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Findings
    };
    if a.verbose {
        crate::sink_eprintln!(
            "ckpt: {} checkpoint(s): {} opened, {} from cache ({} resolved entries reused); \
             {} cache rows forgotten",
            cat.stats.candidates,
            cat.stats.opened,
            cat.stats.cached,
            cat.stats.reused,
            cat.stats.forgotten
        );
    }
    if streaming {
        // What was streamed to stdout is flushed even if a query names an unknown field (as
        // before `--output`); a file is only written for a run without an error.
        out.flush()?;
        fields.check()?;
        out.finish(a.output.as_deref())?;
        return Ok(outcome);
    }
    fields.check()?;
    if a.best {
        entries = query::best(
            entries,
            a.by.as_deref(),
            a.mode.as_deref(),
            a.group_by.get(),
        );
    }
    if a.latest {
        entries = query::latest(entries, a.group_by.get());
    }
    if let Some(s) = &a.sort {
        query::sort(&mut entries, s, a.desc);
    }
    match a.format {
        CatalogFormat::Json => {
            serde_json::to_writer_pretty(
                &mut out,
                &ckpt_catalog::entry::CatalogOutput {
                    checkpoints: entries,
                    warnings: cat.warnings.clone(),
                },
            )?;
            out.write_all(b"\n")?;
        }
        CatalogFormat::Jsonl => {
            for e in &entries {
                serde_json::to_writer(&mut out, e)?;
                out.write_all(b"\n")?;
            }
        }
        CatalogFormat::Csv => out.write_all(csv(&entries).as_bytes())?,
        CatalogFormat::Table => {
            // A table written to a file is not fitted to this terminal.
            let width = if a.wide || a.output.is_some() {
                None
            } else {
                terminal_width()
            };
            out.write_all(table(&entries, &a.columns, width).as_bytes())?
        }
        CatalogFormat::Parquet => {
            let bytes = ckpt_catalog::parquet::to_parquet(
                &entries,
                &cat.warnings,
                env!("CARGO_PKG_VERSION"),
            )?;
            out.write_all(&bytes)?
        }
    }
    out.finish(a.output.as_deref())?;
    Ok(outcome)
}

/// Where the catalog goes: stdout as it is written, or (`--output FILE`) memory, then the file
/// atomically once the whole output is there — a failed or interrupted run never leaves half
/// a file (nor replaces a previous good one).
enum Output {
    Stdout(std::io::BufWriter<crate::sink::Out>),
    File(Vec<u8>),
}

impl Output {
    fn new(to_file: bool) -> Output {
        if to_file {
            Output::File(Vec::new())
        } else {
            Output::Stdout(std::io::BufWriter::with_capacity(
                1 << 16,
                crate::sink::stdout(),
            ))
        }
    }

    fn finish(self, path: Option<&std::path::Path>) -> Result<()> {
        match (self, path) {
            (Output::Stdout(mut w), _) => Ok(w.flush()?),
            (Output::File(bytes), Some(p)) => {
                ckpt_meta::sidecar::write_atomic_bytes(p, &bytes, true)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))
            }
            (Output::File(_), None) => anyhow::bail!("no --output file to write"),
        }
    }
}

impl std::io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::Stdout(w) => w.write(buf),
            Output::File(v) => v.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stdout(w) => w.write_all(buf),
            Output::File(v) => v.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::File(_) => Ok(()),
        }
    }
}

/// One entry inside the streamed `checkpoints` array, pretty-printed at depth 2: serde
/// writes straight to the output through [`Nested`], no text in between.
fn write_indented(
    out: &mut impl std::io::Write,
    e: &CatalogEntry,
    first: bool,
) -> std::io::Result<()> {
    out.write_all(if first { b"\n    " } else { b",\n    " })?;
    let mut ser = serde_json::Serializer::with_formatter(out, ckpt_catalog::pretty::Nested::at(2));
    serde::Serialize::serialize(e, &mut ser).map_err(json_io)
}

/// A JSON writing error as an I/O error of the same kind: a reader that went away
/// (`ckpt catalog | head`) stays a broken pipe, which ends the run quietly.
fn json_io(e: serde_json::Error) -> std::io::Error {
    match e.io_error_kind() {
        Some(kind) => std::io::Error::new(kind, e),
        None => std::io::Error::other(e),
    }
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(m)) => m
            .get("name")
            .or_else(|| m.get("model_name"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| Value::Object(m.clone()).to_string()),
        Some(other) => other.to_string(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

const CSV_COLUMNS: &[&str] = &[
    "path",
    "experiment",
    "run",
    "format",
    "epoch",
    "global_step",
    "monitor",
    "mode",
    "architecture",
    "encoder",
    "decoder",
    "head",
    "loss",
    "family",
    "params",
    "size_bytes",
    "modified",
    "is_best",
    "is_last",
    "error",
];

fn csv(entries: &[CatalogEntry]) -> String {
    let mut metric_names: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for e in entries {
        metric_names.extend(e.metrics.keys().map(String::as_str));
    }
    let mut out = String::new();
    let header: Vec<String> = CSV_COLUMNS
        .iter()
        .map(|c| (*c).to_owned())
        .chain(metric_names.iter().map(|m| format!("metrics.{m}")))
        .map(|h| csv_field(&h))
        .collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for e in entries {
        let mut row: Vec<String> = Vec::new();
        for c in CSV_COLUMNS {
            let v = match *c {
                "architecture" | "encoder" | "decoder" | "head" | "loss" | "family" => {
                    e.model.get(*c).cloned()
                }
                other => e.get(other),
            };
            row.push(csv_field(&text_of(v.as_ref())));
        }
        for m in &metric_names {
            let v = e.metrics.get(*m).map(|x| Value::from(*x));
            row.push(csv_field(&text_of(v.as_ref())));
        }
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// The width to fit a table to: `COLUMNS` when set, else the terminal's when stdout is one;
/// `None` (no limit) for a pipe.
pub(crate) fn terminal_width() -> Option<usize> {
    if let Some(c) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0)
    {
        return Some(c);
    }
    let stdout = std::io::stdout();
    if !stdout.is_terminal() || crate::sink::capturing() {
        return None;
    }
    rustix::termios::tcgetwinsize(&stdout)
        .ok()
        .map(|w| usize::from(w.ws_col))
        .filter(|c| *c > 0)
}

/// `s` cut to `w` characters by replacing its middle with `…` (the start and the end of a
/// name are what tell checkpoints apart).
pub(crate) fn middle_truncate(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w || w < 3 {
        return s.to_owned();
    }
    let keep = w - 1;
    let head = keep.div_ceil(2);
    let tail = keep - head;
    let start: String = s.chars().take(head).collect();
    let end: String = s.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

/// The MODEL column: architecture and family when they say different things.
fn model_text(e: &CatalogEntry) -> String {
    let mut parts: Vec<String> = Vec::new();
    for k in ["architecture", "family"] {
        let t = text_of(e.model.get(k));
        if !t.is_empty() && t != "unknown" && !parts.contains(&t) {
            parts.push(t);
        }
    }
    parts.join("/")
}

fn score_text(e: &CatalogEntry) -> String {
    match e.monitor.as_deref() {
        Some(m) => match e.metric(m) {
            Some(v) => format!("{m}={}", trim_float(v)),
            None => m.to_owned(),
        },
        None => e
            .metrics
            .iter()
            .next()
            .map(|(k, v)| format!("{k}={}", trim_float(*v)))
            .unwrap_or_default(),
    }
}

fn flags_text(e: &CatalogEntry) -> String {
    let mut flags = Vec::new();
    if e.is_best {
        flags.push("best".to_owned());
    }
    if e.is_last {
        flags.push("last".to_owned());
    }
    if !e.conflicts.is_empty() {
        flags.push(format!("conflicts:{}", e.conflicts.len()));
    }
    if let Some(err) = &e.error {
        flags.push(format!("error: {err}"));
    }
    flags.join(" ")
}

/// Columns the table computes rather than looks up.
const PSEUDO_COLUMNS: &[&str] = &["checkpoint", "score", "model", "params", "size", "flags"];

/// One cell of a picked column.
fn cell(e: &CatalogEntry, column: &str) -> String {
    match column {
        "checkpoint" => e.file_name().to_owned(),
        "score" => score_text(e),
        "model" => model_text(e),
        "params" => e.params.map(thousands).unwrap_or_default(),
        "size" | "size_bytes" => human_bytes(e.size_bytes),
        "flags" => flags_text(e),
        other => {
            let v = query::field(e, other);
            match v {
                Some(Value::Number(n)) => n
                    .as_f64()
                    .filter(|_| n.is_f64())
                    .map(trim_float)
                    .unwrap_or_else(|| n.to_string()),
                v => text_of(v.as_ref()),
            }
        }
    }
}

/// The table: the default columns, or the ones `--columns` picks; fitted to `width` by
/// truncating the middle of the widest text columns.
fn table(entries: &[CatalogEntry], columns: &[String], width: Option<usize>) -> String {
    let show_run = entries
        .iter()
        .any(|e| e.run.is_some() && e.run != e.experiment);
    let cols: Vec<String> = if columns.is_empty() {
        let mut c = vec!["experiment".to_owned()];
        if show_run {
            c.push("run".to_owned());
        }
        for x in [
            "checkpoint",
            "epoch",
            "global_step",
            "score",
            "model",
            "params",
            "size",
            "flags",
        ] {
            c.push(x.to_owned());
        }
        c
    } else {
        columns.to_vec()
    };
    let headers: Vec<String> = cols
        .iter()
        .map(|c| match c.as_str() {
            "global_step" => "STEP".to_owned(),
            "flags" => String::new(),
            other => other.to_uppercase(),
        })
        .collect();
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| cols.iter().map(|c| cell(e, c)).collect())
        .collect();
    let n = cols.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    // The last column is free text (flags) and is never padded; fit the others.
    if let Some(limit) = width {
        let shrinkable: Vec<usize> = (0..n.saturating_sub(1))
            .filter(|i| {
                matches!(
                    cols[*i].as_str(),
                    "experiment" | "run" | "checkpoint" | "model" | "path"
                ) || cols[*i].contains('.')
            })
            .collect();
        // A column never gets narrower than its header (nor than 12): names keep their
        // start and end, numbers and scores are never cut.
        let floor: Vec<usize> = headers.iter().map(|h| h.chars().count().max(12)).collect();
        let total = |w: &[usize]| w.iter().sum::<usize>() + 2 * n.saturating_sub(1);
        while total(&widths) > limit {
            let Some(&widest) = shrinkable
                .iter()
                .filter(|i| widths[**i] > floor[**i])
                .max_by_key(|i| widths[**i])
            else {
                break;
            };
            widths[widest] -= 1;
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let c = middle_truncate(c, widths[i]);
                let _ = write!(s, "{:<w$}  ", c, w = widths[i]);
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut out, &headers);
    for r in &rows {
        line(&mut out, r);
    }
    let _ = writeln!(out, "{} checkpoint(s)", rows.len());
    out
}

/// A path in the form two spellings of the same file share: absolute for a local path, the
/// canonical URL for an object (`std::path::absolute` would prefix a URL with the current
/// folder).
fn same_path_key(p: &Path) -> PathBuf {
    match ckpt_io::Location::parse(p) {
        ckpt_io::Location::Remote(url) => url.to_path(),
        ckpt_io::Location::Local(_) => std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()),
    }
}

/// `--explain PATH`: every field of one checkpoint with its source, and the conflicts.
fn explain(a: &CatalogArgs, opts: &Options) -> Result<Outcome> {
    let Some(target) = &a.explain else {
        return Ok(Outcome::Ok);
    };
    let want = same_path_key(target);
    let mut found: Option<CatalogEntry> = None;
    let cat = build_streaming(&a.paths, opts, &mut |e| {
        let p = same_path_key(Path::new(&e.path));
        if p == want && found.is_none() {
            found = Some(e);
        }
    })?;
    for w in &cat.warnings {
        crate::sink_eprintln!("ckpt: warning: {w}");
    }
    let Some(e) = found else {
        anyhow::bail!(
            "{}: not a checkpoint found under {}",
            target.display(),
            a.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", e.path);
    let mut names = std::collections::BTreeSet::new();
    e.field_names(&mut names);
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for name in &names {
        if matches!(name.as_str(), "sources" | "conflicts" | "path")
            || ["model", "metrics", "hparams", "data"].contains(&name.as_str())
        {
            continue;
        }
        // Leaves of a model part are shown with the part.
        if name.starts_with("model.") && name.matches('.').count() > 1 {
            continue;
        }
        let Some(v) = e.get(name) else { continue };
        let src = e
            .sources
            .get(name)
            .cloned()
            .unwrap_or_else(|| "derived".into());
        let text = match &v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        rows.push((name.clone(), middle_truncate(&text, 60), src));
    }
    let w0 = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    for (n, v, s) in rows {
        let _ = writeln!(out, "  {n:<w0$}  {v:<w1$}  {s}");
    }
    if e.conflicts.is_empty() {
        let _ = writeln!(out, "no conflicts");
    } else {
        let _ = writeln!(out, "conflicts:");
        for c in &e.conflicts {
            let vals: Vec<String> = c
                .values
                .iter()
                .map(|v| {
                    let t = match &v.value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    if v.chosen {
                        format!("{t} ({}, chosen)", v.source)
                    } else {
                        format!("{t} ({})", v.source)
                    }
                })
                .collect();
            let _ = writeln!(out, "  {}: {}", c.field, vals.join(" · "));
        }
    }
    crate::print_stdout(&out)?;
    Ok(Outcome::Ok)
}

pub(crate) fn trim_float(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The fields named by `--filter`, `--sort`, `--by` (or `prune --monitor`), checked against
/// every entry the catalog produced (kept by the filters or not).
pub struct FieldCheck<'a> {
    queried: Vec<(&'a str, &'a str)>,
    found: Vec<bool>,
    known: std::collections::BTreeSet<String>,
    seen: usize,
}

impl<'a> FieldCheck<'a> {
    /// `(option, field)` pairs, e.g. `("--sort", "hmean")`.
    pub fn new(queried: Vec<(&'a str, &'a str)>) -> Self {
        let found = vec![false; queried.len()];
        FieldCheck {
            queried,
            found,
            known: std::collections::BTreeSet::new(),
            seen: 0,
        }
    }

    pub fn see(&mut self, e: &CatalogEntry) {
        if self.queried.is_empty() {
            return;
        }
        self.seen += 1;
        query::field_names(e, &mut self.known);
        for ((_, name), found) in self.queried.iter().zip(&mut self.found) {
            *found = *found || query::has_field(e, name);
        }
    }

    /// Exit 2 with the nearest known field for the first field no entry has.
    pub fn check(&self) -> Result<()> {
        for ((option, name), found) in self.queried.iter().zip(&self.found) {
            if let Some(msg) = query::unknown_field(option, name, self.seen, &self.known, *found) {
                anyhow::bail!(msg);
            }
        }
        Ok(())
    }
}

pub fn cache(a: &CacheArgs) -> Result<Outcome> {
    let path = a.cache_file.clone().unwrap_or_else(Cache::default_path);
    match a.command {
        CacheCommand::Info => match Cache::read_info(&path)? {
            None => crate::print_stdout(&format!("no cache at {}\n", path.display()))?,
            Some(i) => crate::print_stdout(&format!(
                "path            {}\nschema version  {}\nentries         {}\nsize            {}\n",
                i.path,
                i.schema_version,
                i.entries,
                human_bytes(i.size_bytes)
            ))?,
        },
        CacheCommand::Clear => {
            if Cache::clear(&path)? {
                crate::print_stdout(&format!("removed {}\n", path.display()))?;
            } else {
                crate::print_stdout(&format!("no cache at {}\n", path.display()))?;
            }
        }
    }
    Ok(Outcome::Ok)
}
