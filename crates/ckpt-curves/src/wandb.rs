//! W&B run folders (`wandb/[offline-]run-<stamp>-<id>/`) and their `run-<id>.wandb` log.
//!
//! The log is LevelDB's log format behind a 7-byte file header (`:W&B`, magic `0xBEE1`,
//! version 0): 32 KiB blocks of records, each with a 7-byte header (CRC-32 of the type byte
//! and the data — zlib's CRC, unmasked —, a `u16` length, a type: full, first, middle,
//! last), a block's tail shorter than a header being padding. A logical record is a
//! protobuf `wandb_internal.Record`; the few messages read here are declared with `prost`'s
//! derive, with field numbers from wandb's `wandb_internal.proto`:
//!
//! - `history` (2): one row of `wandb.log`, items `key`/`nested_key` → `value_json`;
//! - `metric` (12): `define_metric`, whose `step_metric` names the key that is a metric's x
//!   (Lightning's WandbLogger defines `*` → `trainer/global_step`).
//!
//! A row's x for a metric is its step metric's value in the row, else the row's `_step`.
//! When the log holds no history (a run folder without it, or a log that cannot be read),
//! `files/wandb-summary.json` gives each metric's last value as a single point.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::{
    At, Axis, Collector, Limits, Named, Problem, ReadOut, Warnings, open_regular, read_whole,
};

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Record {
    #[prost(int64, tag = "1")]
    pub num: i64,
    #[prost(message, optional, tag = "2")]
    pub history: Option<HistoryRecord>,
    #[prost(message, optional, tag = "12")]
    pub metric: Option<MetricRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HistoryRecord {
    #[prost(message, repeated, tag = "1")]
    pub item: Vec<HistoryItem>,
    #[prost(message, optional, tag = "2")]
    pub step: Option<HistoryStep>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HistoryItem {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, repeated, tag = "2")]
    pub nested_key: Vec<String>,
    #[prost(string, tag = "16")]
    pub value_json: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HistoryStep {
    #[prost(int64, tag = "1")]
    pub num: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct MetricRecord {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub glob_name: String,
    #[prost(string, tag = "4")]
    pub step_metric: String,
}

const FILE_HEADER: usize = 7;
const BLOCK: u64 = 32 * 1024;
const RECORD_HEADER: u64 = 7;
const FULL: u8 = 1;
const FIRST: u8 = 2;
const MIDDLE: u8 = 3;
const LAST: u8 = 4;

/// The record's checksum: CRC-32 (zlib's) of its type byte, then its data.
pub fn record_crc(kind: u8, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(data);
    h.finalize()
}

/// `pattern` with `*` wildcards matches `name`.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, rest) = parts.split_first().map_or(("", &[][..]), |(f, r)| (*f, r));
    let Some(mut left) = name.strip_prefix(first) else {
        return false;
    };
    let (last, middle) = rest.split_last().map_or(("", &[][..]), |(l, m)| (*l, m));
    for m in middle {
        match left.find(m) {
            Some(i) => left = &left[i + m.len()..],
            None => return false,
        }
    }
    left.len() >= last.len() && left.ends_with(last)
}

/// A `value_json` that is a number: `Some(x)` (NaN and infinities as Python's `json.dumps`
/// writes them included); anything else (media, histograms, strings) `None`.
fn json_number(s: &str) -> Option<f64> {
    match s.trim() {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        // A JSON number, read by Rust's correctly rounded parser (serde_json's default one
        // may be a unit in the last place off); `-`/digit first keeps out `inf`/`nan`.
        t if t.starts_with(|c: char| c.is_ascii_digit())
            || (t.starts_with('-') && t[1..].starts_with(|c: char| c.is_ascii_digit())) =>
        {
            t.parse::<f64>().ok()
        }
        _ => None,
    }
}

/// What the history records say, row by row.
struct History {
    exact: HashMap<String, String>,
    globs: Vec<(String, String)>,
    rows: u64,
}

impl History {
    fn step_metric(&self, key: &str) -> Option<&str> {
        self.exact
            .get(key)
            .or_else(|| {
                self.globs
                    .iter()
                    .find(|(g, _)| glob(g, key))
                    .map(|(_, s)| s)
            })
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    fn metric(&mut self, m: MetricRecord) {
        if !m.name.is_empty() {
            self.exact.insert(m.name, m.step_metric);
        } else if !m.glob_name.is_empty() {
            self.globs.push((m.glob_name, m.step_metric));
        }
    }

    fn row(&mut self, h: HistoryRecord, c: &mut Collector, w: &mut Warnings) {
        let mut vals: Vec<(String, f64)> = Vec::with_capacity(h.item.len());
        for it in h.item {
            let key = if it.key.is_empty() {
                it.nested_key.join(".")
            } else {
                it.key
            };
            if key.is_empty() {
                continue;
            }
            if let Some(x) = json_number(&it.value_json) {
                vals.push((key, x));
            }
        }
        let get = |k: &str| {
            vals.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, x)| *x)
                .filter(|x| x.is_finite() && x.fract() == 0.0 && x.abs() < 9.0e15)
                .map(|x| x as i64)
        };
        let row_step = get("_step")
            .or(h.step.map(|s| s.num))
            .unwrap_or(self.rows as i64);
        self.rows += 1;
        let steps: Vec<&str> = vals
            .iter()
            .filter_map(|(k, _)| self.step_metric(k))
            .collect();
        for (k, x) in &vals {
            if k.starts_with('_') || steps.contains(&k.as_str()) {
                continue;
            }
            let step = self.step_metric(k).and_then(get).unwrap_or(row_step);
            c.push(w, k, Axis::Step, step, *x);
        }
    }
}

/// The run log in a run folder: `run-<id>.wandb` (any `*.wandb`, the first by name).
fn run_log(dir: &Path) -> Option<PathBuf> {
    let rd = std::fs::read_dir(dir).ok()?;
    let mut logs: Vec<PathBuf> = rd
        .flatten()
        .take(10_000)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".wandb"))
        })
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    logs.sort();
    logs.into_iter().next()
}

/// The series of a W&B run folder.
pub fn read(dir: &Path, limits: &Limits) -> ReadOut {
    let mut w = Warnings::new(dir, limits);
    let mut c = Collector::new(limits);
    let mut h = History {
        exact: HashMap::new(),
        globs: Vec::new(),
        rows: 0,
    };
    if let Some(log) = run_log(dir) {
        read_log(&log, limits, &mut h, &mut c, &mut w);
    }
    let mut series = c.finish(&mut w);
    if series.is_empty() {
        let files = dir.join("files");
        let summary = files.join("wandb-summary.json");
        // Neither the folder nor the file through a symlink (it could lead anywhere).
        if files.symlink_metadata().is_ok_and(|m| m.is_dir())
            && summary.symlink_metadata().is_ok_and(|m| m.is_file())
        {
            series = read_summary(&summary, limits, &mut w);
            if !series.is_empty() {
                w.add(None, Problem::SummaryOnly);
            }
        }
    }
    (series, w.finish())
}

/// `files/wandb-summary.json`: each top-level number (not `_…`) as one point at the
/// summary's `_step`.
fn read_summary(path: &Path, limits: &Limits, w: &mut Warnings) -> Vec<Named> {
    let bytes = match read_whole(path, limits.max_record_bytes) {
        Ok(b) => b,
        Err(p) => {
            w.add_for(path, None, p);
            return Vec::new();
        }
    };
    let v: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            w.add_for(path, None, Problem::Json(e.to_string()));
            return Vec::new();
        }
    };
    let Some(m) = v.as_object() else {
        return Vec::new();
    };
    let step = m
        .get("_step")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    let mut c = Collector::new(limits);
    for (k, x) in m {
        if k.starts_with('_') {
            continue;
        }
        if let Some(x) = x.as_f64() {
            c.push(w, k, Axis::Step, step, x);
        }
    }
    c.finish(w)
}

fn read_log(path: &Path, limits: &Limits, h: &mut History, c: &mut Collector, w: &mut Warnings) {
    let (f, len) = match open_regular(path) {
        Ok(x) => x,
        Err(p) => {
            w.add_for(path, None, p);
            return;
        }
    };
    if len > limits.max_file_bytes {
        w.add_for(
            path,
            None,
            Problem::FileTooLarge {
                limit: limits.max_file_bytes,
            },
        );
    }
    let readable = len.min(limits.max_file_bytes);
    let mut r = BufReader::with_capacity(64 << 10, f.take(readable));
    let mut head = [0u8; FILE_HEADER];
    if r.read_exact(&mut head).is_err()
        || &head[..4] != b":W&B"
        || u16::from_le_bytes([head[4], head[5]]) != 0xBEE1
        || head[6] != 0
    {
        w.add_for(
            path,
            Some(At::Record {
                index: 0,
                offset: 0,
            }),
            Problem::BadHeader,
        );
        return;
    }
    let mut pos: u64 = FILE_HEADER as u64;
    let mut index: u64 = 0;
    // A record being reassembled from fragments, with where it began.
    let mut pending: Option<(Vec<u8>, u64)> = None;
    let skip = |r: &mut BufReader<_>, n: u64| -> bool {
        std::io::copy(&mut r.by_ref().take(n), &mut std::io::sink()).is_ok_and(|k| k == n)
    };
    loop {
        let left = readable.saturating_sub(pos);
        if left == 0 {
            break;
        }
        let in_block = BLOCK - pos % BLOCK;
        if in_block < RECORD_HEADER {
            // Block trailer: padding.
            let n = in_block.min(left);
            if !skip(&mut r, n) {
                break;
            }
            pos += n;
            continue;
        }
        let at = Some(At::Record { index, offset: pos });
        if left < RECORD_HEADER {
            w.add_for(
                path,
                at,
                Problem::Truncated {
                    needed: RECORD_HEADER,
                    left,
                },
            );
            break;
        }
        let mut rh = [0u8; RECORD_HEADER as usize];
        if r.read_exact(&mut rh).is_err() {
            break;
        }
        pos += RECORD_HEADER;
        let crc = u32::from_le_bytes([rh[0], rh[1], rh[2], rh[3]]);
        let n = u64::from(u16::from_le_bytes([rh[4], rh[5]]));
        let kind = rh[6];
        let room = in_block - RECORD_HEADER;
        if kind == 0 && n == 0 && crc == 0 {
            // Zeroed space (a preallocated or torn tail): on to the next block.
            let n = room.min(readable.saturating_sub(pos));
            if !skip(&mut r, n) {
                break;
            }
            pos += n;
            continue;
        }
        if n > room {
            // Cannot be: the framing is lost; resynchronize at the next block.
            w.add_for(
                path,
                at,
                Problem::TooLong {
                    len: n,
                    limit: room,
                },
            );
            pending = None;
            let n = room.min(readable.saturating_sub(pos));
            if !skip(&mut r, n) {
                break;
            }
            pos += n;
            continue;
        }
        let left = readable.saturating_sub(pos);
        if n > left {
            w.add_for(path, at, Problem::Truncated { needed: n, left });
            break;
        }
        // At most one block's worth: bounded.
        let mut data = vec![0u8; n as usize];
        if r.read_exact(&mut data).is_err() {
            break;
        }
        pos += n;
        if record_crc(kind, &data) != crc {
            w.add_for(path, at, Problem::BadCrc { part: "data" });
            pending = None;
            continue;
        }
        let whole = match kind {
            FULL => {
                if pending.take().is_some() {
                    w.add_for(
                        path,
                        at.clone(),
                        Problem::Fragment {
                            kind,
                            what: "an unfinished record before it is dropped",
                        },
                    );
                }
                Some((data, pos - n - RECORD_HEADER))
            }
            FIRST => {
                if pending.is_some() {
                    w.add_for(
                        path,
                        at,
                        Problem::Fragment {
                            kind,
                            what: "an unfinished record before it is dropped",
                        },
                    );
                }
                pending = Some((data, pos - n - RECORD_HEADER));
                None
            }
            MIDDLE | LAST => match pending.as_mut() {
                None => {
                    w.add_for(
                        path,
                        at,
                        Problem::Fragment {
                            kind,
                            what: "no record was begun",
                        },
                    );
                    None
                }
                Some((buf, start)) => {
                    if (buf.len() as u64).saturating_add(n) > limits.max_record_bytes {
                        w.add_for(
                            path,
                            Some(At::Record {
                                index,
                                offset: *start,
                            }),
                            Problem::TooLong {
                                len: buf.len() as u64 + n,
                                limit: limits.max_record_bytes,
                            },
                        );
                        pending = None;
                        None
                    } else {
                        buf.extend_from_slice(&data);
                        if kind == LAST { pending.take() } else { None }
                    }
                }
            },
            _ => {
                w.add_for(
                    path,
                    at,
                    Problem::Fragment {
                        kind,
                        what: "unknown record type",
                    },
                );
                pending = None;
                None
            }
        };
        let Some((bytes, start)) = whole else {
            continue;
        };
        let at = Some(At::Record {
            index,
            offset: start,
        });
        index += 1;
        match <Record as prost::Message>::decode(bytes.as_slice()) {
            Ok(rec) => {
                if let Some(m) = rec.metric {
                    h.metric(m);
                }
                if let Some(row) = rec.history {
                    h.row(row, c, w);
                }
            }
            Err(e) => w.add_for(
                path,
                at,
                Problem::Decode {
                    message: "wandb_internal.Record",
                    error: e.to_string(),
                },
            ),
        }
    }
    if pending.is_some() {
        w.add_for(
            path,
            Some(At::Record { index, offset: pos }),
            Problem::Truncated { needed: 1, left: 0 },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("*", "val/loss"));
        assert!(glob("val/*", "val/loss"));
        assert!(!glob("val/*", "train/loss"));
        assert!(glob("*/loss", "val/loss"));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "aXc"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }
}
