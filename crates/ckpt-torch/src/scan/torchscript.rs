//! How names read from a TorchScript archive's pickles are judged: as `torch.jit.load` resolves
//! them, which differs from `pickle.load`.

use super::policy::is_dunder;
use super::report::{Finding, ScanReport, Usage, Verdict};

// `torch.load` hands a zip with `constants.pkl` to `torch.jit.load`, whose C++ unpickler
// (torch/csrc/jit/serialization/unpickler.cpp) imports nothing from Python: it knows a fixed
// set of names (tensor rebuilds, storages, OrderedDict, device, complex, and the
// `torch.jit._pickle` tags below) and resolves every other name as a class compiled from the
// archive's own `code/`. Inside such an archive, then, the tags only rebuild lists and
// `__torch__.*` names are the archive's own classes, not imports. What does run is the
// TorchScript code itself: `torch.jit.load` compiles it and runs any class's `__setstate__`
// while loading, and the model runs its methods when used; TorchScript can call any registered
// torch operator. ckpt does not judge that code, so a TorchScript archive is never `safe`: one
// `<TorchScript code>` finding (`unknown`) says what loading it would run. Everything else
// (e.g. `os.system` written into `data.pkl`) keeps its ordinary verdict.

/// The list and type tags of `torch/jit/_pickle.py`: each returns its first argument.
const TORCHSCRIPT_TAGS: &[&str] = &[
    "build_intlist",
    "build_tensorlist",
    "build_doublelist",
    "build_boollist",
    "build_tensor_from_id",
    "restore_type_tag",
];

/// How a global read from a TorchScript archive's pickles is judged, when that differs from
/// [`classify_global`](super::classify_global): `None` for every other name.
pub fn classify_torchscript_global(module: &str, name: &str) -> Option<(Verdict, String)> {
    if name.contains('.') || is_dunder(name) {
        return None;
    }
    if module == "torch.jit._pickle" && TORCHSCRIPT_TAGS.contains(&name) {
        return Some((
            Verdict::Safe,
            "TorchScript list/type tag: returns its argument (torch.jit._pickle)".to_string(),
        ));
    }
    if module == "__main__" && (name == "TensorID" || name == "IntList") {
        return Some((
            Verdict::Safe,
            "legacy TorchScript tag, known to torch.jit.load's unpickler".to_string(),
        ));
    }
    if module == "__torch__.torch.classes" || module.starts_with("__torch__.torch.classes.") {
        return Some((
            Verdict::Safe,
            "TorchScript custom class registered by native code (torch.classes; rebuilt by its native __setstate__, not imported from Python)"
                .to_string(),
        ));
    }
    if module == "__torch__" || module.starts_with("__torch__.") {
        return Some((
            Verdict::Safe,
            "class compiled from this archive's TorchScript code (not imported from Python)"
                .to_string(),
        ));
    }
    None
}

/// Judge the findings of a TorchScript archive's pickles as `torch.jit.load` reads them, and add
/// the `<TorchScript code>` finding. `code_entry` names the code folder (`model/code/`);
/// `code_files` and `setstate_classes` say what it holds.
pub fn apply_torchscript(
    report: &mut ScanReport,
    code_entry: &str,
    code_files: usize,
    setstate_classes: &[String],
) {
    for f in &mut report.findings {
        if let Some((module, name)) = f.name.rsplit_once('.')
            && let Some((class, reason)) = classify_torchscript_global(module, name)
        {
            f.class = class;
            f.reason = reason;
        }
    }
    let plural = if code_files == 1 { "" } else { "s" };
    let (usage, reason) = if setstate_classes.is_empty() {
        (
            Usage::Referenced,
            format!(
                "torch.load refuses this archive under weights_only=True and otherwise hands it to torch.jit.load, which compiles its TorchScript code ({code_files} file{plural}); the model runs it when called, and it can call any torch operator. ckpt reads the weights as data and never runs code"
            ),
        )
    } else {
        (
            Usage::Called,
            format!(
                "torch.load refuses this archive under weights_only=True and otherwise hands it to torch.jit.load, which compiles its TorchScript code ({code_files} file{plural}) and runs the __setstate__ of {} while loading; it can call any torch operator. ckpt reads the weights as data and never runs code",
                setstate_classes.join(", ")
            ),
        )
    };
    report.findings.push(Finding {
        name: "<TorchScript code>".to_string(),
        class: Verdict::Unknown,
        offset: 0,
        entry: code_entry.to_string(),
        usage,
        reason,
    });
}
