//! Hash-named experiment folders (`<hash>/{model,hp,data}`), read through `hash_folder`,
//! and the description of the model `ckpt.ExperimentManager` writes beside the checkpoints
//! (`model/architecture.json`, [`ARCHITECTURE_FILE`]).

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};

use super::*;

/// The model's description in an experiment folder's `model/` (or `models/`), written once
/// per experiment by `ckpt.ExperimentManager`. A JSON object; every key optional, unknown keys
/// ignored:
///
/// - `class`: the module's class, dotted (`torch.nn.modules.container.Sequential`) →
///   `model.class`, and its last component (`Sequential`) → `model.architecture` as a guess
///   ([`Source::Inferred`]: a config's name or the state dict's signature, when there is one,
///   names the architecture better than a class such as `Sequential`);
/// - `elements`: the tensor elements of the state dict → `params`;
/// - `tensors`: the state dict's tensor table, a list of objects (`[{"name", "dtype",
///   "shape"}, …]`); only its length is read → `tensors`;
/// - `trainable_parameters`: elements of the parameters that require a gradient →
///   `model.trainable_parameters`;
/// - `architecture_hash` (the identity's architecture component) and `repr` (the module's
///   `repr`) are for people and are not read: ckpt stores no hash.
///
/// Facts other than the guess are at [`Source::HashFolder`], below the checkpoint's own: the
/// checkpoint's tensor count and size win, and a disagreement is a visible conflict.
pub const ARCHITECTURE_FILE: &str = "architecture.json";

/// Largest `architecture.json` read (the tensor table of a model of 170,000 tensors fits).
pub const MAX_ARCHITECTURE_BYTES: u64 = MAX_FILE_BYTES;

/// Longest class name taken (a Python dotted name; anything longer is not one).
const MAX_CLASS_BYTES: usize = 512;

#[derive(Debug, Default)]
pub(super) struct HashDir {
    /// The folder's name, when it is an experiment folder at all.
    name: Option<String>,
    hparams: Vec<(String, Value)>,
    model: Vec<Fact>,
    active_uids: Option<usize>,
    /// What `model/architecture.json` says (facts), or why it was not read (a warning).
    architecture: Vec<Fact>,
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
        h.architecture = architecture_facts(dir);
        h
    }
}

/// `architecture.json` as written; unknown keys ignored, the tensor table counted, not kept.
#[derive(serde::Deserialize)]
struct ArchitectureFile {
    #[serde(default)]
    class: Option<Value>,
    #[serde(default)]
    elements: Option<Value>,
    #[serde(default)]
    trainable_parameters: Option<Value>,
    #[serde(default, deserialize_with = "count_items")]
    tensors: Option<u64>,
}

/// The length of a list of objects, their contents skipped unparsed (a table of 170,000
/// tensors is not built to be counted; serde_json skips without recursing).
fn count_items<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    /// One row of the table: an object, its entries skipped.
    struct Row;
    impl<'de> de::Deserialize<'de> for Row {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Row, D::Error> {
            d.deserialize_map(Row)
        }
    }
    impl<'de> Visitor<'de> for Row {
        type Value = Row;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a tensor (an object)")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<Row, A::Error> {
            while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Row)
        }
    }
    struct Count;
    impl<'de> Visitor<'de> for Count {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of tensors")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut n: u64 = 0;
            while seq.next_element::<Row>()?.is_some() {
                n = n.saturating_add(1);
            }
            Ok(Some(n))
        }
    }
    d.deserialize_any(Count)
}

/// The facts of the experiment's `model/architecture.json` (else `models/`): see
/// [`ARCHITECTURE_FILE`]. A file that cannot be read (over [`MAX_ARCHITECTURE_BYTES`], not a
/// regular file, not UTF-8 JSON, not an object, nested too deep) gives one warning naming it
/// and no facts; a key of the wrong type is skipped with a warning, the others kept.
fn architecture_facts(dir: &Path) -> Vec<Fact> {
    let Some(path) = ["model", "models"]
        .iter()
        .map(|m| dir.join(m).join(ARCHITECTURE_FILE))
        .find(|p| is_file(p))
    else {
        return Vec::new();
    };
    let warn = |why: String| {
        Fact::warning(
            format!("{}: {why}; not read", path.display()),
            Source::HashFolder,
        )
    };
    let bytes = match consulted::read_small(&path, MAX_ARCHITECTURE_BYTES) {
        Ok(b) => b,
        Err(ckpt_torch::open::OpenError::TooLarge { limit }) => {
            return vec![warn(format!(
                "larger than the {} MiB read for a model description",
                limit >> 20
            ))];
        }
        Err(e) => return vec![warn(e.to_string())],
    };
    // An object, not a list (which serde would take for the fields in order).
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return vec![warn("not a model description (a JSON object)".into())];
    }
    let file: ArchitectureFile = match serde_json::from_slice(&bytes) {
        Ok(f) => f,
        Err(e) => return vec![warn(format!("not a model description ({e})"))],
    };
    let mut out = Vec::new();
    let mut bad: Vec<&str> = Vec::new();
    match &file.class {
        None | Some(Value::Null) => {}
        Some(Value::String(c))
            if !c.is_empty() && c.len() <= MAX_CLASS_BYTES && !c.chars().any(char::is_control) =>
        {
            out.push(Fact::new(
                Field::Model("class".into()),
                json!(c),
                Source::HashFolder,
            ));
            if let Some(short) = c.rsplit('.').next().filter(|s| !s.is_empty()) {
                out.push(Fact::new(
                    Field::Model("architecture".into()),
                    json!(short),
                    Source::Inferred,
                ));
            }
        }
        Some(_) => bad.push("class"),
    }
    for (key, value, field) in [
        ("elements", &file.elements, Field::Params),
        (
            "trainable_parameters",
            &file.trainable_parameters,
            Field::Model("trainable_parameters".into()),
        ),
    ] {
        match value {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(n) => out.push(Fact::new(field, json!(n), Source::HashFolder)),
                None => bad.push(key),
            },
        }
    }
    if let Some(n) = file.tensors {
        out.push(Fact::new(Field::Tensors, json!(n), Source::HashFolder));
    }
    if !bad.is_empty() {
        out.push(Fact::warning(
            format!(
                "{}: {} ignored (a model description has a dotted class name and whole-number counts)",
                path.display(),
                bad.join(", "),
            ),
            Source::HashFolder,
        ));
    }
    out
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
///   as `ckpt hash` reads them ([`hash_folder::read_uids`]);
/// - `model.class`, `model.trainable_parameters`, `params`, `tensors` (and a guess of
///   `model.architecture`) from `model/architecture.json` ([`ARCHITECTURE_FILE`]).
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
    out.extend(info.architecture.iter().cloned());
    out
}
