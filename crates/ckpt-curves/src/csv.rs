//! Lightning CSVLogger's `metrics.csv`: a header of every key ever logged (`epoch`, `step`
//! and the metrics), then one row per logging call with empty cells for what that call did
//! not log. A resumed run appends rows whose steps repeat earlier ones (the later row wins
//! per step). Python writes non-finite floats as `nan`, `inf`, `-inf`: left out, counted.

use std::io::{BufReader, Read};
use std::path::Path;

use crate::{At, Axis, Collector, Limits, Line, Lines, Problem, ReadOut, Warnings, open_regular};

/// One CSV record: double quotes with `""` escapes (no line breaks inside fields: Lightning
/// writes numbers and metric names).
pub(crate) fn split_line(line: &str) -> Vec<String> {
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

/// An integer cell, also when written as a float (`299.0`).
fn as_step(cell: &str) -> Option<i64> {
    let t = cell.trim();
    t.parse::<i64>().ok().or_else(|| {
        let x = t.parse::<f64>().ok()?;
        (x.is_finite() && x.fract() == 0.0 && x.abs() < 9.0e15).then_some(x as i64)
    })
}

/// The series of a `metrics.csv`: x is the `step` column (else `global_step`), else the
/// row's position; every other non-empty column is a series (`epoch` included).
pub fn read(path: &Path, limits: &Limits) -> ReadOut {
    let mut w = Warnings::new(path, limits);
    let (f, len) = match open_regular(path) {
        Ok(x) => x,
        Err(p) => {
            w.add(None, p);
            return (Vec::new(), w.finish());
        }
    };
    if len > limits.max_file_bytes {
        w.add(
            None,
            Problem::FileTooLarge {
                limit: limits.max_file_bytes,
            },
        );
    }
    let max_line = usize::try_from(limits.max_record_bytes).unwrap_or(usize::MAX);
    let mut lines = Lines::new(
        BufReader::with_capacity(64 << 10, f.take(limits.max_file_bytes)),
        max_line,
    );
    let mut c = Collector::new(limits);
    // The header: the first line.
    let header: Vec<String> = match lines.next_line().map(|x| x.1) {
        Some(Ok(Line::Text(h))) => split_line(h.trim_start_matches('\u{feff}'))
            .into_iter()
            .map(|s| s.trim().to_owned())
            .collect(),
        Some(Ok(Line::TooLong)) => {
            w.add(Some(At::Line(1)), Problem::LineTooLong { limit: max_line });
            return (Vec::new(), w.finish());
        }
        Some(Ok(Line::NotUtf8)) => {
            w.add(Some(At::Line(1)), Problem::NotUtf8);
            return (Vec::new(), w.finish());
        }
        // A header alone without its line end: no rows anyway.
        Some(Ok(Line::Unterminated)) => return (Vec::new(), w.finish()),
        Some(Err(e)) => {
            w.add(None, Problem::Io(e.to_string()));
            return (Vec::new(), w.finish());
        }
        None => {
            w.add(None, Problem::NoHeader);
            return (Vec::new(), w.finish());
        }
    };
    let step_col = header
        .iter()
        .position(|h| h == "step")
        .or_else(|| header.iter().position(|h| h == "global_step"));
    let header_line = header.join(",");
    let axis = if step_col.is_some() {
        Axis::Step
    } else {
        Axis::Row
    };
    let mut row: i64 = 0;
    while let Some((line_no, next)) = lines.next_line() {
        let text = match next {
            Ok(Line::Text(t)) => t,
            Ok(Line::TooLong) => {
                w.add(
                    Some(At::Line(line_no)),
                    Problem::LineTooLong { limit: max_line },
                );
                continue;
            }
            Ok(Line::NotUtf8) => {
                w.add(Some(At::Line(line_no)), Problem::NotUtf8);
                continue;
            }
            Ok(Line::Unterminated) => {
                w.add(Some(At::Line(line_no)), Problem::Unterminated);
                continue;
            }
            Err(e) => {
                w.add(Some(At::Line(line_no)), Problem::Io(e.to_string()));
                break;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        let cells = split_line(text);
        // A header repeated by concatenated files: not data.
        if cells.iter().map(|s| s.trim()).collect::<Vec<_>>().join(",") == header_line {
            continue;
        }
        let x = match step_col {
            Some(i) => match cells.get(i).and_then(|s| as_step(s)) {
                Some(s) => s,
                None => {
                    w.add(Some(At::Line(line_no)), Problem::NoStep);
                    continue;
                }
            },
            None => row,
        };
        row += 1;
        for (i, cell) in cells.iter().enumerate() {
            if Some(i) == step_col {
                continue;
            }
            let Some(name) = header.get(i).filter(|n| !n.is_empty()) else {
                continue;
            };
            let t = cell.trim();
            if t.is_empty() {
                continue;
            }
            match crate::parse_number(t) {
                Some(v) => c.push(&mut w, name, axis, x, v),
                None => w.add(
                    Some(At::Line(line_no)),
                    Problem::NotANumber {
                        column: name.clone(),
                        text: t.chars().take(40).collect(),
                    },
                ),
            }
        }
    }
    let series = c.finish(&mut w);
    (series, w.finish())
}
