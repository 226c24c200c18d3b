//! Exporters: a torch checkpoint (FSDP, DDP, `torch.compile`d, plain) into a Hugging Face
//! folder (`model.safetensors` + config and tokenizer from a base model) or a bare
//! `.safetensors` file — streaming tensor bytes from the source file, never loading the model.
//!
//! What happens to a checkpoint:
//! 1. its state dict is found (`--key`, else the rule `inspect` and the catalog share,
//!    [`ckpt_model::state_dict`]: the top level, `model`, `state_dict`, `model_state_dict`,
//!    `module`, …, else the largest mapping that is not an EMA copy);
//! 2. flattened FSDP parameters (`_flat_param`) stop the conversion: they cannot be split
//!    without FSDP's own metadata;
//! 3. names lose wrapper prefixes wherever they occur (`_fsdp_wrapped_module.`, `_fpw_module.`,
//!    `_checkpoint_wrapped_module.`, `_orig_mod.`, a leading `module.`), then explicit
//!    `--strip-prefix`/`--add-prefix`;
//! 4. tied weights (names viewing the same bytes of one storage, or an output head equal to
//!    the input embedding) are written once, under the name transformers keeps (`untie`);
//! 5. with a base model, the tensors must fit it (`check_fit`: names and shapes of its own
//!    weights, embedding and layer sizes from its config), or the file fails;
//! 6. tensors are written sorted by name into a temporary folder beside the target, which is
//!    renamed into place when complete.

mod base;
mod cast;
mod dcp;
mod error;
mod fit;
mod names;
mod options;
mod output;
mod plan;
pub mod report;
mod safetensors;
mod shard;
mod source;
mod tie;

pub use base::{hub_cache, resolve_base_model};
pub use dcp::convert_dcp;
pub use error::ConvertError;
pub use options::{ConvertOptions, Progress, Target, parse_size};
#[cfg(feature = "schema")]
pub use report::json_schema;
pub use report::{Conversion, ConvertRun, Converted};

use std::path::Path;

use ckpt_torch::Checkpoint;
use serde_json::Value;

use crate::error::Result;
use crate::fit::check_fit;
use crate::names::stripped_prefixes;
use crate::output::{emit, prepare};
use crate::plan::{Planned, check_sizes, finish_plan};
use crate::source::{collect_file, find_state_dict};

/// Convert one checkpoint file into the folder `output`.
pub fn convert_file(input: &Path, output: &Path, opts: &ConvertOptions) -> Result<Converted> {
    let (base_cfg, tie) = prepare(output, opts)?;
    let cks = [Checkpoint::open(input)?];
    let ck = &cks[0];
    let (sd_key, entries) = find_state_dict(ck, opts.key.as_deref())?;
    let (raw, mut other) = collect_file(ck, entries);
    // What sits beside the state dict (epoch, step, optimizer, config …): reported, not
    // converted. Non-tensor entries inside it are in `other` already.
    if let Some(top) = sd_key.split('.').next().filter(|k| !k.is_empty())
        && let Some(items) = ck.doc.dict(ck.doc.root())
    {
        let beside = items
            .iter()
            .map(|(k, _)| ckpt_torch::pyrepr::key_str(&ck.doc, *k))
            .filter(|k| k != top);
        other.splice(0..0, beside);
    }
    let source = Source {
        input,
        cks: &cks,
        raw,
        other,
        state_dict_key: sd_key,
    };
    plan_and_emit(source, output, opts, base_cfg.as_ref(), tie)
}

/// What one conversion reads: the checkpoints tensors come from, the tensors as found, the
/// non-tensor entries.
struct Source<'p> {
    input: &'p Path,
    cks: &'p [Checkpoint],
    raw: Vec<Planned<'p>>,
    other: Vec<String>,
    state_dict_key: String,
}

/// Shared by files and DCP directories: plan the tensors, report, write.
fn plan_and_emit(
    src: Source<'_>,
    output: &Path,
    opts: &ConvertOptions,
    base_cfg: Option<&Value>,
    tie: bool,
) -> Result<Converted> {
    let stripped = stripped_prefixes(src.raw.iter().map(|p| p.name.as_str()));
    let (tensors, tied) = finish_plan(src.raw, src.cks, src.input, opts, tie)?;
    check_sizes(&tensors, src.input, opts.dtype)?;
    let (missing_keys, unexpected_keys, hint) = match &opts.base_model {
        Some(b) => {
            check_fit(b, base_cfg, &tensors, &tied).map_err(|detail| ConvertError::Misfit {
                path: src.input.to_path_buf(),
                base: b.clone(),
                detail,
            })?
        }
        None => (Vec::new(), Vec::new(), None),
    };
    let report = Converted {
        input: src.input.display().to_string(),
        output: output.display().to_string(),
        state_dict_key: src.state_dict_key,
        tensors: tensors.len(),
        bytes: 0, // filled by `emit` (it depends on --dtype)
        tied,
        stripped_prefixes: stripped,
        other_keys: src.other,
        missing_keys,
        unexpected_keys,
        hint,
    };
    emit(src.cks, &tensors, output, opts, base_cfg, report)
}

#[cfg(test)]
mod flat_param_tests {
    use super::*;
    use ckpt_test_support::{SynthTensor, write_lightning_checkpoint};
    use ckpt_torch::DType;

    #[test]
    fn flattened_fsdp_parameters_fail_clearly_and_write_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("flat.pth");
        let t = vec![SynthTensor {
            name: "_fsdp_wrapped_module._flat_param".into(),
            dtype: DType::F32,
            shape: vec![64],
        }];
        write_lightning_checkpoint(&p, &t).unwrap();
        let out = d.path().join("out");
        let opts = ConvertOptions {
            target: Target::Safetensors,
            base_model: None,
            key: None,
            strip_prefix: vec![],
            add_prefix: None,
            force: false,
            sync: false,
            dry_run: false,
            max_shard_size: 5_000_000_000,
            dtype: None,
            progress: None,
        };
        let e = convert_file(&p, &out, &opts).unwrap_err();
        assert!(e.to_string().contains("flattened FSDP parameters"), "{e}");
        assert!(!out.exists());
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "something was written");
    }
}
