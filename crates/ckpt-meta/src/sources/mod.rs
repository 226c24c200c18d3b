//! The readers of every source. Each returns [`Fact`]s and never ranks them or calls back into
//! a resolver; [`crate::engine::resolve`] ranks them. The catalog and the sidecar writer both
//! call [`around`] and [`checkpoint::checkpoint_facts`], so they see the same facts.

pub mod checkpoint;
pub mod config;
pub mod folders;
pub mod live;
pub mod names;
pub mod sidecar;

use std::path::Path;

use serde_json::json;

pub use checkpoint::Kind;
pub use folders::DirCache;

use crate::fact::{Fact, Field, Source};

/// What reading the places around a checkpoint needs: the run-wide memo of parsed folders
/// and configs, the root the user named (experiment and run names are relative to it), and
/// how to tell whether a file exists (the catalog answers from its directory listing).
pub struct Around<'a> {
    pub dirs: &'a DirCache,
    pub root: &'a Path,
    pub is_file: &'a (dyn Fn(&Path) -> bool + Sync),
}

/// `<stem>.config.yaml|yml|json` beside a checkpoint, if any.
pub fn config_sidecar_path(
    ckpt: &Path,
    is_file: &dyn Fn(&Path) -> bool,
) -> Option<std::path::PathBuf> {
    [".config.yaml", ".config.yml", ".config.json"]
        .iter()
        .map(|s| crate::sidecar::with_suffix(ckpt, s))
        .find(|p| is_file(p))
}

fn config_facts(a: &Around<'_>, path: &Path, src: Source, out: &mut Vec<Fact>) -> bool {
    match a.dirs.config(path) {
        Some(v) => {
            out.extend(config::tree_facts(&v, src));
            true
        }
        None => {
            if let Some(w) = a.dirs.config_warning(path) {
                out.push(Fact::warning(format!("{w}; config ignored"), src));
            }
            false
        }
    }
}

/// Every fact the places around a checkpoint give: its config sidecar, the run's Hydra
/// config, Lightning's log folder, MLflow/W&B runs, hierarchical and hash-named folders, the
/// file and folder names. Not the checkpoint itself, not its `.metadata` sidecar.
pub fn around(ckpt: &Path, kind: Kind, a: &Around<'_>) -> Vec<Fact> {
    let mut out = Vec::new();
    if kind == Kind::File
        && let Some(p) = config_sidecar_path(ckpt, a.is_file)
    {
        config_facts(a, &p, Source::ConfigSidecar, &mut out);
    }
    if let Some(h) = a.dirs.hydra_for(ckpt, a.root)
        && config_facts(a, &h, Source::Hydra, &mut out)
        && let Some(job) = h.parent().and_then(Path::parent)
    {
        // The folder holding `.hydra/` is the run (a multirun's `<date>/<time>/<N>`).
        let name = folders::rel_name(job, a.root).unwrap_or_else(|| {
            job.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| ".".into())
        });
        out.push(Fact::new(Field::Run, json!(name), Source::Hydra));
    }
    out.extend(folders::lightning_logs(a.dirs, ckpt, a.root));
    out.extend(folders::loggers(a.dirs, ckpt, a.root));
    out.extend(folders::hierarchical(a.dirs, ckpt, a.root));
    out.extend(folders::hash_folder(a.dirs, ckpt));
    if kind == Kind::File {
        out.extend(names::file_name_facts(ckpt));
        // A last.ckpt beside the file: its ModelCheckpoint had save_last on.
        if let Some(dir) = ckpt.parent()
            && (a.is_file)(&dir.join("last.ckpt"))
        {
            out.push(Fact::new(Field::SaveLast, json!(true), Source::FolderName));
        }
    }
    let exp = names::folder_experiment(ckpt, a.root);
    out.push(Fact::new(Field::Run, exp.value.clone(), Source::FolderName));
    out.push(exp);
    out
}
