//! Combining gathered inputs into an identity (pure: no I/O), and recognizing a folder named
//! by an identity.

use std::fmt::Write as _;
use std::path::Path;

use ckpt_meta::hash_folder::{HashFolder, hexish, named_hash};
use ckpt_torch::sha256_hex;
use sha2::{Digest, Sha256};

use crate::canonical::canonical_json;
use crate::{Algorithm, HashOptions, IdentityInputs, gather};

/// Each component's SHA-256 (lowercase hex), or `None` when its source is absent.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Components {
    /// SHA-256 of the state dict's names, dtypes and shapes.
    pub architecture: Option<String>,
    /// SHA-256 of the canonical configuration (`v1`: hyperparameters; `v2`: the run's config).
    pub hyperparameters: Option<String>,
    /// SHA-256 of the sorted active sample UIDs.
    pub data: Option<String>,
}

/// An experiment identity: the combined hash (`<version>:<16 hex digits>`) and its components.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub hash: String,
    pub components: Components,
}

impl Identity {
    /// The hash's 16 hex digits, without the version prefix.
    pub fn digits(&self) -> &str {
        self.hash
            .split_once(':')
            .map_or(self.hash.as_str(), |(_, d)| d)
    }
}

/// Lowercase hex, as `ckpt_torch::sha256_hex` writes a digest.
fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// The identity of gathered inputs, in the algorithm they were gathered for.
pub fn identity(inputs: &IdentityInputs) -> Identity {
    let alg = inputs.algorithm;
    // `name\tdtype\t[d0,d1,..]\n` per tensor, hashed as it is written (the text of 170,000
    // tensors is megabytes, and a `format!` per line).
    let architecture = (!inputs.tensors.is_empty()).then(|| {
        let mut h = Sha256::new();
        let mut line = String::new();
        for (name, dtype, shape) in inputs.tensors.iter() {
            line.clear();
            line.push_str(name);
            line.push('\t');
            line.push_str(dtype);
            line.push_str("\t[");
            for (i, d) in shape.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                let _ = write!(line, "{d}");
            }
            line.push_str("]\n");
            h.update(line.as_bytes());
        }
        hex(&h.finalize())
    });
    let hyperparameters = inputs
        .hparams
        .as_ref()
        .map(|v| sha256_hex(canonical_json(v).as_bytes()));
    let data = inputs
        .uids
        .as_ref()
        .map(|u| sha256_hex(u.join("\n").as_bytes()));
    let mut text = format!("{alg}\n");
    for c in [&architecture, &hyperparameters, &data] {
        text.push_str(c.as_deref().unwrap_or("-"));
        text.push('\n');
    }
    let full = sha256_hex(text.as_bytes());
    Identity {
        hash: format!("{alg}:{}", &full[..16]),
        components: Components {
            architecture,
            hyperparameters,
            data,
        },
    }
}

/// An experiment folder's name, compared with the checkpoint's identity.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct FolderName {
    /// The experiment folder.
    pub path: String,
    /// Its name.
    pub name: String,
    /// The algorithm version the name states (`v1-d2c9…` → `v1`), known to this ckpt or not.
    pub states_version: Option<String>,
    /// The algorithm whose identity of this checkpoint the name is, if any.
    pub matches: Option<Algorithm>,
}

/// Compare an experiment folder's name with `checkpoint`'s identity. A name that states its
/// version (`v1-d2c97065e066bb16`) is compared with that version's identity only (a version
/// this ckpt does not know is compared with nothing); a bare hex name with each version's,
/// newest first. The name matches when its hex digits and the identity's 16 agree on the
/// shorter of the two (at least 6 digits, any case). `opts` are the options the identity was
/// asked with (`--hparams` and so on) and `computed` the identity they gave; another
/// version's identity is computed when needed, and one that cannot be (its sources fail to
/// read) matches nothing.
pub fn folder_name(
    folder: &HashFolder,
    checkpoint: &Path,
    opts: &HashOptions,
    computed: &Identity,
) -> FolderName {
    let mut out = FolderName {
        path: folder.dir.display().to_string(),
        name: folder.name.clone(),
        states_version: None,
        matches: None,
    };
    let (candidates, hex): (Vec<Algorithm>, &str) = match named_hash(&folder.name) {
        Some((version, hex)) => {
            out.states_version = Some(version.to_owned());
            match version.parse::<Algorithm>() {
                Ok(a) => (vec![a], hex),
                Err(_) => return out,
            }
        }
        None if hexish(&folder.name) => (
            Algorithm::ALL.iter().rev().copied().collect(),
            folder.name.as_str(),
        ),
        None => return out,
    };
    let hex = hex.to_ascii_lowercase();
    for alg in candidates {
        let id = if alg == opts.algorithm {
            computed.clone()
        } else {
            let o = HashOptions {
                algorithm: alg,
                ..opts.clone()
            };
            match gather(checkpoint, &o) {
                Ok(inputs) => identity(&inputs),
                Err(_) => continue,
            }
        };
        let digits = id.digits();
        if digits.starts_with(&hex) || hex.starts_with(digits) {
            out.matches = Some(alg);
            break;
        }
    }
    out
}
