//! The identity algorithms, by version. A hash names its version (`v1:…`, `v2:…`), so a value
//! written by one version is only ever compared with a value the same version computes
//! ([`Algorithm::of_hash`]); a version this build does not know is an error, never a guess.
//!
//! `v2` is the default. `v1` stays computable (`ckpt hash --algorithm v1`) and frozen: its
//! golden values are pinned by tests.
//!
//! # Algorithm `v1`
//!
//! Three components, each a lowercase hex SHA-256 or *absent*, combined into one short hash.
//! All text is UTF-8; "sorted" means by the bytes of the UTF-8 encoding (the same as sorting by
//! Unicode code point).
//!
//! **Which checkpoint.** A file is used as given. A directory is either a hash-named experiment
//! folder (`<hash>/` holding `model/`) or a folder of `checkpoint_step_*.pt` files (its
//! `model/`): the checkpoint is the `checkpoint_step_<N>.pt` with the largest step `N` (files
//! whose `N` is not a number rank below all numbered ones; ties by file name). When the
//! checkpoint's folder is named `model`, its parent is the *experiment folder*, which may hold
//! `hp/` and `data/`.
//!
//! **architecture.** The checkpoint's first state dict: the first mapping, searched breadth
//! first from the top (mapping entries in order, at most three levels down, not entering
//! `optimizer_states`, `optimizer`, `optimizer_state_dict`, `optim`, `lr_schedulers`,
//! `scheduler`, `callbacks`, `loops`), in which the entries with a string key and a tensor value
//! are at least one and at least half of all entries. For a weightslab checkpoint that is
//! `model_state_dict`, for Lightning `state_dict`, for a bare `torch.save(model.state_dict())`
//! the top level. With no such mapping, a pickled `nn.Module` (`torch.save(model)`) at the top
//! or under a top-level key counts, its entries named as `model.state_dict()` names them. For
//! each tensor entry (other entries are skipped; a non-string key is
//! written as its Python `repr`): its name with wrapper prefixes removed (`module.` at the
//! start of the name; `_fsdp_wrapped_module.`, `_fpw_module.`, `_checkpoint_wrapped_module.`,
//! `_orig_mod.` at the start of the name or of any dotted component), its dtype as torch names
//! it without `torch.` (`float32`, `bfloat16`, `int64` …) and its shape. If two names normalize
//! to the same name, the later entry wins. One line per tensor,
//! `name TAB dtype TAB [d0,d1,...] LF` (a 0-d tensor: `[]`; no spaces), lines ordered by name,
//! concatenated; the component is the SHA-256 of that text. Tensor values are never read.
//! Absent when the checkpoint has no state dict.
//!
//! **hyperparameters.** The first source found of:
//! 1. the file given with `--hparams` (YAML 1.2 or JSON by extension `.json`);
//! 2. the checkpoint's `hyper_parameters` entry, when it is present and not `None` or empty
//!    (a dict, AttributeDict, Namespace or OmegaConf DictConfig, taken as its plain content;
//!    other Python values mapped as `ckpt`'s JSON output maps them: tuples as arrays, a tensor
//!    as `{"__tensor__": {"dtype": …, "shape": […]}}`, NaN as `{"__float__": "nan"}`);
//! 3. the experiment folder's `hp/*.yaml|*.yml|*.json`: one file → its content; several → an
//!    object mapping each file name to its content;
//! 4. the run's Hydra config, `.hydra/config.yaml` in the checkpoint's folder or up to three
//!    folders above it.
//!
//! In every source, `${a.b}` references (absolute or relative: `${.x}`, `${..x}`) are resolved
//! within the value, the way OmegaConf resolves plain references (a string that is exactly one
//! reference takes the referenced value and its type; otherwise the referenced text is
//! substituted); resolver calls (`${oc.env:X}`, `${now:...}`) stay as written. Then the
//! top-level `model` key is removed (the model is what the architecture component identifies,
//! from its actual tensors; a config's description of it would count it twice: the 16-wide
//! experiment must differ in architecture only), then every
//! `--ignore` dotted path is removed (each part is an object key, a number may step into a
//! list; the last part removes an object key; a path that does not exist is skipped), and the
//! result is written as canonical compact JSON — exactly Python's
//! `json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`: object keys
//! sorted, no whitespace, integers in decimal, floats as Python's `repr(float)` (shortest
//! round-trip digits; `0.001`, `1e-05`, `1.0`, `1e+16`), so `0.01`, `1e-2` and `1.0e-2` are
//! the same value, while the integer `1` and the float `1.0` are different values; strings
//! escaped with `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t` and `\u00xx` for other control
//! characters below U+0020, everything else written as is. The component is the SHA-256 of
//! that text. Absent when there is no source.
//!
//! **data.** The set of active sample UIDs from the file given with `--data-uids`, else the
//! experiment folder's `data/active_uids.txt`, `.json` or `.csv` (the first that exists).
//! A `.json` file (or a file not named `.csv` whose first non-blank character is `[`) is a
//! JSON array of strings or numbers (integers in decimal, other numbers as `repr(float)`), or
//! (read since the layout was shared with the catalog; refused before, so no `v1` value changed)
//! an object holding such an array under `active_uids`, `uids` or `ids`, or keyed by UID; a
//! `.csv` file, or any file when a UID column is named, is CSV (RFC 4180 quoting) with a
//! header row, and the UIDs are the named column (the column with exactly that name, else the
//! first whose name matches it ignoring ASCII case) or by default the first of the columns
//! named `uid`, `uids`, `sample_uid`, `sample_id`, `id` (ignoring ASCII case), in that order of
//! preference; anything else is one UID per line. A leading byte-order mark is dropped; each UID has surrounding
//! whitespace removed and empty ones are dropped; the rest are sorted, duplicates removed and
//! joined with LF (no trailing LF). The component is the SHA-256 of that text. Absent when
//! there is no source.
//!
//! **combined.** `v1:` followed by the first 16 hex digits of the SHA-256 of
//! `"v1" LF architecture LF hyperparameters LF data LF`, where an absent component is written
//! as `-`.
//!
//! # Algorithm `v2`
//!
//! As `v1` except for the state dict, the experiment folder, the **hyperparameters**
//! component (now the run's configuration) and the version string.
//!
//! **architecture.** The state dict is the one every ckpt command names
//! (`ckpt_model::state_dict::locate`: an explicit top-level state dict or module, then the
//! well-known keys `model`, `state_dict`, `model_state_dict`, `module` …, then the candidate
//! that is not an EMA copy and has the most tensors). `v1` took the first mapping breadth
//! first, which for `{"normalizer": 2 tensors, "generator": weights}` hashed the normalizer
//! and for an `ema_state_dict` saved before `state_dict` hashed the EMA copy. Names, dtypes,
//! shapes and the text hashed are `v1`'s.
//!
//! **Which checkpoint** and the *experiment folder*: as read by the shared hash-folder layout
//! (`ckpt_meta::hash_folder`, the same reading as the catalog's): the checkpoint's folder is
//! named `model` or `models` and its parent has `hp/` or `data/` or a hex-ish name.
//!
//! **hyperparameters** (the run's configuration). The first source found of:
//! 1. the file given with `--hparams` (what a person asserts wins);
//! 2. the run's Hydra config, `.hydra/config.yaml` in the checkpoint's folder or up to three
//!    folders above it: the complete configuration the launcher composed for this run (every
//!    group, override and trainer setting), one per multirun job;
//! 3. `<stem>.config.yaml|.yml|.json` beside the checkpoint: a config the training script
//!    saved for this very checkpoint;
//! 4. the experiment folder's `hp/*.yaml|*.yml|*.json` (one file → its content; several → an
//!    object mapping each file name to its content): weightslab's run config;
//! 5. Lightning's `hparams.yaml` in the version folder (`version_N/hparams.yaml` for
//!    `version_N/checkpoints/X.ckpt`, or in the checkpoint's own folder), read with
//!    `!!python/...` tags dropped: what the logger recorded, the module's and the datamodule's
//!    hyperparameters together;
//! 6. the checkpoint's `hyper_parameters` entry, as in `v1`.
//!
//! Why this order: identity is a property of the *run*, and the sources are ranked by how
//! much of the run they describe. The checkpoint's `hyper_parameters` hold only what the
//! module chose to save (`save_hyperparameters()`: its constructor arguments), not the
//! trainer, data or launcher settings, so two runs whose Hydra configs differ in `max_epochs`
//! had the same `v1` hash. A run-level config (2–5) describes the whole run; Hydra's is the
//! most complete, because it is the composed input every other file was derived from. The
//! run-level sources rarely meet in one tree; when they do, the more complete one wins.
//!
//! Each source is read as in `v1` (YAML 1.2 or JSON; `${...}` references resolved by ckpt's
//! budgeted resolver, so a reference bomb is an error naming the file and key, never a hang),
//! and **nothing is removed but the `--ignore` paths**: the top-level `model` key stays. `v1`
//! removed it so that a wider layer changed the architecture component only, but the
//! architecture component sees shapes and dtypes, not an activation, a dropout rate or a
//! pretrained-weights choice, so removing `model` made such runs the same experiment. The
//! canonical JSON and the ignore-list semantics are `v1`'s.
//!
//! **combined.** `v2:` followed by the first 16 hex digits of the SHA-256 of
//! `"v2" LF architecture LF hyperparameters LF data LF`, where an absent component is written
//! as `-`.

use std::fmt;
use std::str::FromStr;

use crate::IdentityError;

/// A version of the identity algorithm.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Checkpoint hyperparameters before run configs; the top-level `model` key removed.
    V1,
    /// The run's full resolved config (see the module doc).
    #[default]
    V2,
}

impl Algorithm {
    /// Every version this build computes, oldest first.
    pub const ALL: &[Algorithm] = &[Algorithm::V1, Algorithm::V2];

    /// The version's name, also the prefix of its hashes: `v1`, `v2`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::V1 => "v1",
            Algorithm::V2 => "v2",
        }
    }

    /// The version a hash was computed with, from its prefix (`v1:d2c9…` → `v1`). `None` for
    /// a value without a version prefix (bare hex digits, as in a folder name); an error for
    /// a version this build does not know (a newer ckpt wrote it): it must not be compared
    /// with anything this build computes.
    pub fn of_hash(hash: &str) -> Result<Option<Algorithm>, IdentityError> {
        let Some((version, _)) = hash.split_once(':') else {
            return Ok(None);
        };
        version
            .parse()
            .map(Some)
            .map_err(|_| IdentityError::UnknownAlgorithm {
                hash: hash.to_owned(),
                version: version.to_owned(),
            })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A version name that is not one of [`Algorithm::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown identity algorithm {0:?} (known: v1, v2)")]
pub struct UnknownVersion(pub String);

impl FromStr for Algorithm {
    type Err = UnknownVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .iter()
            .copied()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnknownVersion(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_names_its_version() {
        assert_eq!(
            Algorithm::of_hash("v1:d2c97065e066bb16").unwrap(),
            Some(Algorithm::V1)
        );
        assert_eq!(
            Algorithm::of_hash("v2:0000000000000000").unwrap(),
            Some(Algorithm::V2)
        );
        assert_eq!(Algorithm::of_hash("d2c97065e066bb16").unwrap(), None);
        let e = Algorithm::of_hash("v3:abc").unwrap_err();
        assert!(e.to_string().contains("\"v3\""), "{e}");
        assert_eq!("v1".parse::<Algorithm>(), Ok(Algorithm::V1));
        assert!("V1".parse::<Algorithm>().is_err());
        assert_eq!(Algorithm::default(), Algorithm::V2);
    }
}
