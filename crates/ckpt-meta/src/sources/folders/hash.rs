//! Hash-named experiment folders (`<hash>/{model,hp,data}`), read through `hash_folder`.

use super::*;

#[derive(Debug, Default)]
pub(super) struct HashDir {
    /// The folder's name, when it is an experiment folder at all.
    name: Option<String>,
    hparams: Vec<(String, Value)>,
    model: Vec<Fact>,
    active_uids: Option<usize>,
}

impl HashDir {
    /// Whether `dir` is an experiment folder, and which files hold its hyperparameters and
    /// UIDs, are the layout's answers ([`hash_folder`]), shared with `ckpt hash`.
    pub(super) fn load(cache: &DirCache, dir: &Path) -> HashDir {
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
pub(super) fn step_in_name(stem: &str) -> Option<i64> {
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
