//! MLflow's file store: `mlruns/<exp_id>/<run_id>/metrics/<key>`, one file per metric (a key
//! with slashes is a path of folders), one line per logged value: `timestamp value step`.
//! Older stores wrote no step: such a file's points are on the row axis.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::{At, Axis, Collector, Limits, Line, Lines, Problem, ReadOut, Warnings, open_regular};

/// Files under `dir` (not through symlinks), as (`/`-joined relative name, path), sorted,
/// at most `max` (and 8 folders deep).
fn walk(dir: &Path, max: usize) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(dir.to_path_buf(), String::new(), 0)];
    let mut seen = 0usize;
    while let Some((d, prefix, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            seen += 1;
            if seen > max.saturating_mul(4) || out.len() >= max {
                out.sort();
                return out;
            }
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
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

/// The series of a run's `metrics/` folder.
pub fn read(metrics_dir: &Path, limits: &Limits) -> ReadOut {
    let mut w = Warnings::new(metrics_dir, limits);
    let mut c = Collector::new(limits);
    let max_line = usize::try_from(limits.max_record_bytes.min(1 << 20)).unwrap_or(1 << 20);
    let mut total: u64 = 0;
    for (name, path) in walk(metrics_dir, limits.max_files) {
        if total >= limits.max_file_bytes {
            w.add(
                None,
                Problem::SourceTooLarge {
                    limit: limits.max_file_bytes,
                },
            );
            break;
        }
        let (f, len) = match open_regular(&path) {
            Ok(x) => x,
            Err(p) => {
                w.add_for(&path, None, p);
                continue;
            }
        };
        total = total.saturating_add(len.min(limits.max_file_bytes));
        if len > limits.max_file_bytes {
            w.add_for(
                &path,
                None,
                Problem::FileTooLarge {
                    limit: limits.max_file_bytes,
                },
            );
        }
        let mut lines = Lines::new(
            BufReader::with_capacity(64 << 10, f.take(limits.max_file_bytes)),
            max_line,
        );
        // The first line decides the axis: a store that writes steps writes them on every
        // line; one that does not is on the row axis.
        let mut stepped: Option<bool> = None;
        let mut row: i64 = 0;
        while let Some((line_no, next)) = lines.next_line() {
            let text = match next {
                Ok(Line::Text(t)) => t,
                Ok(Line::TooLong) => {
                    w.add_for(
                        &path,
                        Some(At::Line(line_no)),
                        Problem::LineTooLong { limit: max_line },
                    );
                    continue;
                }
                Ok(Line::NotUtf8) => {
                    w.add_for(&path, Some(At::Line(line_no)), Problem::NotUtf8);
                    continue;
                }
                Ok(Line::Unterminated) => {
                    w.add_for(&path, Some(At::Line(line_no)), Problem::Unterminated);
                    continue;
                }
                Err(e) => {
                    w.add_for(&path, Some(At::Line(line_no)), Problem::Io(e.to_string()));
                    break;
                }
            };
            if text.trim().is_empty() {
                continue;
            }
            let mut it = text.split_whitespace();
            let (_ts, v, step) = (it.next(), it.next(), it.next());
            let Some(v) = v.and_then(crate::parse_number) else {
                w.add_for(
                    &path,
                    Some(At::Line(line_no)),
                    Problem::NotANumber {
                        column: "value".to_owned(),
                        text: text.chars().take(40).collect(),
                    },
                );
                continue;
            };
            let step = match step {
                None => None,
                Some(s) => match s.parse::<i64>() {
                    Ok(s) => Some(s),
                    Err(_) => {
                        w.add_for(
                            &path,
                            Some(At::Line(line_no)),
                            Problem::NotANumber {
                                column: "step".to_owned(),
                                text: s.chars().take(40).collect(),
                            },
                        );
                        continue;
                    }
                },
            };
            match (*stepped.get_or_insert(step.is_some()), step) {
                (true, Some(s)) => c.push(&mut w, &name, Axis::Step, s, v),
                (true, None) => w.add_for(&path, Some(At::Line(line_no)), Problem::NoStep),
                (false, _) => {
                    c.push(&mut w, &name, Axis::Row, row, v);
                    row += 1;
                }
            }
        }
    }
    let series = c.finish(&mut w);
    (series, w.finish())
}
