//! Finding and reading what an identity is computed from: the checkpoint's tensors, the run's
//! configuration and the active sample UIDs (the sources, by algorithm, are specified in
//! [`crate::algorithm`]).

use std::path::{Path, PathBuf};

use ckpt_meta::config;
use ckpt_meta::hash_folder::{self, HashFolder, newest_checkpoint};
use ckpt_model::state_dict::{first_state_dict_entries, identity_v1_entries};
use ckpt_model::wrappers::strip_wrappers;
use ckpt_torch::summary::to_value;
use ckpt_torch::{Checkpoint, View};
use serde_json::Value;

use crate::canonical::canonical_hparams;
use crate::tensors::TensorTable;
use crate::{Algorithm, IdentityError};

/// Where the hyperparameters component came from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub enum ConfigSource {
    /// The file given with `--hparams`.
    #[serde(rename = "--hparams")]
    HparamsFile,
    /// The run's `.hydra/config.yaml`.
    #[serde(rename = "hydra")]
    Hydra,
    /// `<stem>.config.yaml|yml|json` beside the checkpoint.
    #[serde(rename = "config_sidecar")]
    ConfigSidecar,
    /// The experiment folder's `hp/`.
    #[serde(rename = "hash_folder_hp")]
    HashFolderHp,
    /// Lightning's `hparams.yaml`.
    #[serde(rename = "hparams_yaml")]
    HparamsYaml,
    /// The checkpoint's `hyper_parameters` entry.
    #[serde(rename = "hyper_parameters")]
    HyperParameters,
}

impl ConfigSource {
    /// The name printed and written in JSON.
    pub fn name(self) -> &'static str {
        match self {
            ConfigSource::HparamsFile => "--hparams",
            ConfigSource::Hydra => "hydra",
            ConfigSource::ConfigSidecar => "config_sidecar",
            ConfigSource::HashFolderHp => "hash_folder_hp",
            ConfigSource::HparamsYaml => "hparams_yaml",
            ConfigSource::HyperParameters => "hyper_parameters",
        }
    }

    /// The sources an algorithm looks at, first found wins.
    pub fn order(algorithm: Algorithm) -> &'static [ConfigSource] {
        use ConfigSource::*;
        match algorithm {
            Algorithm::V1 => &[HparamsFile, HyperParameters, HashFolderHp, Hydra],
            Algorithm::V2 => &[
                HparamsFile,
                Hydra,
                ConfigSidecar,
                HashFolderHp,
                HparamsYaml,
                HyperParameters,
            ],
        }
    }
}

/// Where the data component came from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub enum DataSource {
    /// The file given with `--data-uids`.
    #[serde(rename = "--data-uids")]
    DataUids,
    /// The experiment folder's `data/active_uids.*`.
    #[serde(rename = "hash_folder_data")]
    HashFolderData,
}

impl DataSource {
    pub fn name(self) -> &'static str {
        match self {
            DataSource::DataUids => "--data-uids",
            DataSource::HashFolderData => "hash_folder_data",
        }
    }
}

/// Inputs as found, kept for `ckpt diff`.
#[derive(Debug, Clone, Default)]
pub struct IdentityInputs {
    /// The algorithm they were gathered for.
    pub algorithm: Algorithm,
    /// The checkpoint file read (a directory given to [`gather`] resolves to one).
    pub checkpoint: Option<PathBuf>,
    /// Normalized tensor name -> (dtype name, shape), sorted by name.
    pub tensors: TensorTable,
    /// Canonical hyperparameters (keys sorted recursively, `ignore` paths removed).
    pub hparams: Option<Value>,
    pub hparams_source: Option<ConfigSource>,
    /// The file they were read from (`None` for `hyper_parameters`: the checkpoint).
    pub hparams_path: Option<PathBuf>,
    /// Sorted, de-duplicated UIDs.
    pub uids: Option<Vec<String>>,
    pub uids_source: Option<DataSource>,
    pub uids_path: Option<PathBuf>,
    /// The experiment folder the checkpoint is in, if any.
    pub folder: Option<HashFolder>,
}

/// What `ckpt hash` was asked.
#[derive(Debug, Clone, Default)]
pub struct HashOptions {
    pub algorithm: Algorithm,
    /// `--hparams FILE` (YAML or JSON).
    pub hparams_file: Option<PathBuf>,
    /// `--data-uids FILE`.
    pub data_uids: Option<PathBuf>,
    /// `--uid-column NAME` (CSV UID files).
    pub uid_column: Option<String>,
    /// `--ignore KEY.PATH` (repeatable): hyperparameters left out.
    pub ignore: Vec<String>,
}

/// Gather the inputs for a checkpoint file, or a directory: a hash-named experiment folder
/// `<hash>/` or its `model/` folder (its newest `checkpoint_step_*.pt` is used).
pub fn gather(path: &Path, opts: &HashOptions) -> Result<IdentityInputs, IdentityError> {
    let alg = opts.algorithm;
    let ckpt_path = resolve_checkpoint(path, alg)?;
    let ck = Checkpoint::open(&ckpt_path).map_err(|source| IdentityError::Checkpoint {
        path: ckpt_path.clone(),
        source: Box::new(source),
    })?;
    let tensors = tensors(&ck, alg);
    gather_around(path, ckpt_path, Some(&ck), tensors, opts)
}

/// The inputs of a checkpoint not written yet: the file that will be written at `checkpoint`
/// holding a state dict whose tensors are `tensors` (names as the state dict names them:
/// wrapper prefixes are removed here, as [`gather`] removes them) and no `hyper_parameters`
/// entry. Everything else — the experiment folder, the configuration sources in the
/// algorithm's order, the UID file — is found and read exactly as [`gather`] finds and reads
/// it for the file once written, so a training process can know the identity `ckpt hash`
/// will print before it saves (the Python `ExperimentManager`). The folders above
/// `checkpoint` should exist.
pub fn gather_planned(
    checkpoint: &Path,
    tensors: &[(String, &'static str, Vec<u64>)],
    opts: &HashOptions,
) -> Result<IdentityInputs, IdentityError> {
    let table = TensorTable::build(
        tensors
            .iter()
            .map(|(name, dtype, shape)| (strip_wrappers(name), *dtype, shape.as_slice())),
    );
    gather_around(checkpoint, checkpoint.to_path_buf(), None, table, opts)
}

/// [`gather`]'s sources around `ckpt_path` (`path` as given), the checkpoint's own document
/// when it exists.
fn gather_around(
    path: &Path,
    ckpt_path: PathBuf,
    ck: Option<&Checkpoint>,
    tensors: TensorTable,
    opts: &HashOptions,
) -> Result<IdentityInputs, IdentityError> {
    let alg = opts.algorithm;
    // The layout is read on the absolute path, so `model/x.pt` given from inside the
    // experiment folder still finds it.
    // A URL is already absolute (`std::path::absolute` would put the folder in front).
    let abs = if ckpt_io::is_remote(&ckpt_path) {
        ckpt_path.clone()
    } else {
        std::path::absolute(&ckpt_path).unwrap_or_else(|_| ckpt_path.clone())
    };
    let folder = match alg {
        Algorithm::V1 => HashFolder::of_checkpoint_v1(&abs),
        Algorithm::V2 => HashFolder::of_checkpoint(&abs),
    };

    let mut hparams = None;
    for src in ConfigSource::order(alg) {
        if let Some((v, p)) = config_from(*src, ck, &abs, folder.as_ref(), opts)? {
            hparams = Some((canonical_hparams(&v, &opts.ignore, alg), *src, p));
            break;
        }
    }
    let (hparams, hparams_source, hparams_path) = match hparams {
        Some((v, s, p)) => (Some(v), Some(s), p),
        None => (None, None, None),
    };
    let mut inputs = IdentityInputs {
        algorithm: alg,
        checkpoint: Some(ckpt_path),
        tensors,
        hparams,
        hparams_source,
        hparams_path,
        folder,
        ..IdentityInputs::default()
    };
    fill_data(opts, &mut inputs)?;
    // Files found from the absolute path are shown as the checkpoint was given: relative to
    // the working folder when it was relative.
    if path.is_relative()
        && let Ok(cwd) = std::env::current_dir()
    {
        let rel = |p: &mut PathBuf| {
            if let Ok(r) = p.strip_prefix(&cwd) {
                *p = r.to_path_buf();
            }
        };
        for p in [&mut inputs.hparams_path, &mut inputs.uids_path]
            .into_iter()
            .flatten()
        {
            rel(p);
        }
        if let Some(f) = &mut inputs.folder {
            rel(&mut f.dir);
        }
    }
    Ok(inputs)
}

/// Fill the data component.
fn fill_data(opts: &HashOptions, inputs: &mut IdentityInputs) -> Result<(), IdentityError> {
    if let Some(f) = &opts.data_uids {
        inputs.uids = Some(hash_folder::read_uids(f, opts.uid_column.as_deref())?);
        inputs.uids_source = Some(DataSource::DataUids);
        inputs.uids_path = Some(f.clone());
    } else if let Some(f) = inputs.folder.as_ref().and_then(HashFolder::data_file) {
        // `--uid-column` names a CSV column; it does not make a `.txt` a CSV file.
        let column = if hash_folder::has_ext(&f, "csv") {
            opts.uid_column.as_deref()
        } else {
            None
        };
        inputs.uids = Some(hash_folder::read_uids(&f, column)?);
        inputs.uids_source = Some(DataSource::HashFolderData);
        inputs.uids_path = Some(f);
    }
    Ok(())
}

/// Normalized tensor name -> (dtype, shape) of the checkpoint's state dict: for `v2` the one
/// every command names (`ckpt_model::state_dict::locate`), for `v1` the first mapping breadth
/// first, as `v1` was defined (frozen).
fn tensors(ck: &Checkpoint, alg: Algorithm) -> TensorTable {
    let doc = &ck.doc;
    let found = match alg {
        Algorithm::V1 => identity_v1_entries(doc, doc.root()),
        Algorithm::V2 => first_state_dict_entries(doc, doc.root()),
    };
    let Some((_, items)) = found else {
        return TensorTable::default();
    };
    TensorTable::build(items.into_iter().filter_map(|(k, v)| match doc.view(v) {
        View::Tensor(t) => Some((strip_wrappers(&k), t.dtype.name(), t.shape.as_slice())),
        _ => None,
    }))
}

type Found = Option<(Value, Option<PathBuf>)>;

/// One configuration source's value, if it has one. `ckpt` is absolute.
fn config_from(
    src: ConfigSource,
    ck: Option<&Checkpoint>,
    ckpt: &Path,
    folder: Option<&HashFolder>,
    opts: &HashOptions,
) -> Result<Found, IdentityError> {
    let read = |p: &Path| {
        config::read_config(p).map_err(|source| IdentityError::Hparams {
            path: p.to_path_buf(),
            source,
        })
    };
    let file = |p: PathBuf| -> Result<Found, IdentityError> { Ok(Some((read(&p)?, Some(p)))) };
    match src {
        ConfigSource::HparamsFile => opts.hparams_file.clone().map_or(Ok(None), file),
        ConfigSource::Hydra => hydra_config(ckpt).map_or(Ok(None), file),
        ConfigSource::ConfigSidecar => [".config.yaml", ".config.yml", ".config.json"]
            .iter()
            .map(|s| ckpt_meta::sidecar::with_suffix(ckpt, s))
            .find(|p| is_file(p))
            .map_or(Ok(None), file),
        ConfigSource::HashFolderHp => {
            let Some(folder) = folder else {
                return Ok(None);
            };
            let hp = folder.hp_files()?;
            if hp.truncated {
                return Err(IdentityError::TooManyHpFiles {
                    path: folder.dir.join("hp"),
                });
            }
            match hp.files.as_slice() {
                [] => Ok(None),
                [one] => file(one.clone()),
                many => {
                    let mut m = serde_json::Map::new();
                    for f in many {
                        let name = f
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        m.insert(name, read(f)?);
                    }
                    Ok(Some((Value::Object(m), Some(folder.dir.join("hp")))))
                }
            }
        }
        ConfigSource::HparamsYaml => {
            let Some(dir) = ckpt.parent() else {
                return Ok(None);
            };
            let version = if dir.file_name().is_some_and(|n| n == "checkpoints") {
                dir.parent().unwrap_or(dir)
            } else {
                dir
            };
            let p = version.join("hparams.yaml");
            if !is_file(&p) {
                return Ok(None);
            }
            let v = config::read_config_python_tags_dropped(&p).map_err(|source| {
                IdentityError::Hparams {
                    path: p.clone(),
                    source,
                }
            })?;
            Ok((!is_empty(&v)).then_some((v, Some(p))))
        }
        ConfigSource::HyperParameters => {
            // A checkpoint not written yet (`gather_planned`) holds a state dict only.
            let Some(ck) = ck else {
                return Ok(None);
            };
            let doc = &ck.doc;
            let Some(id) = doc.get(doc.root(), "hyper_parameters") else {
                return Ok(None);
            };
            // An OmegaConf DictConfig keeps its `${...}` references unresolved: resolve them
            // as for a YAML file, so the same config hashes the same from either source.
            let v =
                config::resolve(&to_value(doc, id)).map_err(|e| IdentityError::HparamsResolve {
                    path: ckpt.to_path_buf(),
                    source: e.under("hyper_parameters"),
                })?;
            Ok((!is_empty(&v)).then_some((v, None)))
        }
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A file is used as given; a directory resolves to its (or its `model/` folder's) newest
/// `checkpoint_step_*.pt` (`v2` also looks in `models/`, as the layout does).
fn resolve_checkpoint(path: &Path, alg: Algorithm) -> Result<PathBuf, IdentityError> {
    let Ok(st) = ckpt_io::stat(path) else {
        return Err(IdentityError::NotFound {
            path: path.to_path_buf(),
        });
    };
    if st.kind != ckpt_io::Kind::Dir {
        return Ok(path.to_path_buf());
    }
    let mut dirs = vec![path.to_path_buf(), path.join("model")];
    if alg >= Algorithm::V2 {
        dirs.push(path.join("models"));
    }
    for dir in dirs {
        if is_dir(&dir)
            && let Some(p) = newest_checkpoint(&dir)?
        {
            return Ok(p);
        }
    }
    Err(IdentityError::NoCheckpoint {
        path: path.to_path_buf(),
    })
}

/// Is `p` a file (following symlinks)? A local path or an object in a bucket.
fn is_file(p: &Path) -> bool {
    ckpt_io::stat(p).is_ok_and(|s| s.kind == ckpt_io::Kind::File)
}

/// Is `p` a folder (following symlinks)? A local path or a prefix in a bucket.
fn is_dir(p: &Path) -> bool {
    ckpt_io::stat(p).is_ok_and(|s| s.kind == ckpt_io::Kind::Dir)
}

/// `.hydra/config.yaml` in the checkpoint's folder or up to three folders above it. `ckpt`
/// is absolute.
fn hydra_config(ckpt: &Path) -> Option<PathBuf> {
    let stop = ckpt
        .ancestors()
        .nth(4)
        .or_else(|| ckpt.ancestors().last())?
        .to_path_buf();
    config::find_hydra_config(ckpt, &stop)
}
