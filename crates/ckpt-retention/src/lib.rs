//! Retention plans for `ckpt prune`: decide, per experiment, which checkpoints to keep and
//! which to delete (with every reason), then carry out exactly the deletions planned.
//!
//! Planning is conservative. A checkpoint is deleted only when it is a regular file, under one
//! of the given paths, reached without any symlink below that path, readable, and no rule
//! keeps it. The rules that keep a checkpoint:
//! - top-k by the monitor (the best is always kept, even with `keep_top == 0`);
//! - `last.ckpt` (stem `last` or `last-…`, or `is_last`) and an entry marked `is_best`;
//! - the newest checkpoint of the experiment, and the newest `keep_last`;
//! - a global step that is a multiple of `keep_every`;
//! - an unknown metric, an unreadable entry, a directory, a symlink, a path outside the roots;
//! - a file that is also reached through a kept entry (a kept symlink pointing at it).
//!
//! `last` files are not ranked and not counted as "newest": Lightning's `last.ckpt` is a copy
//! of the latest state, kept anyway, and counting it would let it take a top-k or keep-last
//! slot from a real checkpoint of the series.
//!
//! Execution re-checks every file before removing it (still a regular file, same size and
//! mtime, same folder) and removes nothing else than the planned checkpoint and its sidecars.

//!
//! The crate is cut in three: [`rules`] decides (pure: what the filesystem says about each
//! entry comes through the [`probe::Filesystem`] trait, so every rule is tested on made-up
//! probes), [`probe`] looks at the real filesystem, [`execute`] carries a plan out.

use std::path::PathBuf;
use std::str::FromStr;

use ckpt_catalog::query::GroupBy;

pub mod execute;
pub mod probe;
pub mod rules;

pub use execute::execute;
pub use rules::{plan, plan_on};

/// Which way the monitored metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Max,
    Min,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        match s.to_ascii_lowercase().as_str() {
            "max" => Ok(Mode::Max),
            "min" => Ok(Mode::Min),
            other => Err(format!("mode must be max or min, not {other:?}")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Keep the best `keep_top` by the monitor (the best one is kept even when 0).
    pub keep_top: usize,
    pub monitor: String,
    pub mode: Mode,
    /// Keep the newest N by (global_step, epoch, modified).
    pub keep_last: usize,
    /// Keep checkpoints whose global step is a multiple of N (`Some(0)` is ignored).
    pub keep_every: Option<u64>,
    /// Rank within each run (the default) or across every run of an experiment.
    pub group: GroupBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Keep,
    Delete,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Decision {
    pub path: String,
    pub experiment: String,
    pub action: Action,
    /// Every reason that applies: why it is kept, or why it goes.
    pub reasons: Vec<String>,
    pub size_bytes: u64,
    /// The sidecars that go with it (`<stem>.metadata.yaml|json`, `<stem>.config.yaml|yml|json`)
    /// that exist as regular files. For a deletion, sidecars shared with a kept checkpoint
    /// (same stem, other extension) are left out.
    pub sidecars: Vec<String>,
    /// Size and mtime (ns since the epoch) as planned, to detect a file that changed before
    /// deletion.
    pub size_at_plan: u64,
    pub mtime_ns_at_plan: i64,
    /// The canonical folder holding the file when planned: a deletion is skipped if the folder
    /// now resolves elsewhere (a folder swapped for a symlink after planning).
    #[serde(skip)]
    pub dir_at_plan: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Plan {
    pub decisions: Vec<Decision>,
    /// Bytes of the checkpoint files to delete (sidecars not counted).
    pub bytes_freed: u64,
    pub delete_count: usize,
    pub keep_count: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Executed {
    /// Every file removed, checkpoints and their sidecars, in plan order.
    pub deleted: Vec<String>,
    /// (path, reason) of each planned deletion not carried out.
    pub skipped: Vec<(String, String)>,
    /// Bytes of the checkpoint files removed (sidecars not counted, as in [`Plan`]).
    pub bytes_freed: u64,
}

#[cfg(test)]
mod tests;
