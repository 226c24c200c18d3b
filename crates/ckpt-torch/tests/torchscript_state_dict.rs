//! `torchscript::state_dict` against what torch says `torch.jit.load(f).state_dict()` is, for
//! the archives of `fixtures/torchscript/` (made by `scripts/make_torchscript_fixtures.py`):
//! names in order, dtypes, shapes and the sha256 of every tensor's bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use ckpt_torch::{Checkpoint, View, torchscript};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/torchscript")
        .join(rel)
}

/// `(name, dtype, shape, sha256)` of every entry of torch's state dict, in order.
fn torch_state_dict(name: &str) -> Vec<(String, String, Vec<u64>, String)> {
    let text =
        std::fs::read_to_string(fixture(&format!("expected/{name}.state_dict.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, t)| {
            let t = &t["__tensor__"];
            (
                k.clone(),
                t["dtype"].as_str().unwrap().to_owned(),
                t["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap())
                    .collect(),
                t["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn ckpt_state_dict(name: &str) -> Vec<(String, String, Vec<u64>, String)> {
    let ck = Checkpoint::open(fixture(name)).unwrap();
    let doc = &ck.doc;
    let entries = torchscript::state_dict(doc, doc.root())
        .unwrap_or_else(|| panic!("{name}: state dict not known"));
    entries
        .into_iter()
        .map(|(k, id)| {
            let View::Tensor(t) = doc.view(id) else {
                panic!("{name}: {k} is not a tensor")
            };
            let sha = ck.tensor_sha256(t, &k).unwrap();
            (k, t.dtype.name().to_owned(), t.shape.clone(), sha)
        })
        .collect()
}

/// `out.weight` is `embed.weight` (tied): one tensor, listed under both names as torch's
/// `state_dict()` does, in its module's place (last).
#[test]
fn tied_parameter_of_another_module_is_listed_under_both_names() {
    let ours = ckpt_state_dict("nested_buffers.pt");
    assert_eq!(ours, torch_state_dict("nested_buffers.pt"));
    let last = ours.last().unwrap();
    assert_eq!(last.0, "out.weight");
    let embed = ours.iter().find(|e| e.0 == "embed.weight").unwrap();
    assert_eq!(last.3, embed.3, "same bytes: the same tensor");
    // named_parameters() keeps a tied tensor once (under its first name).
    let ck = Checkpoint::open(fixture("nested_buffers.pt")).unwrap();
    let named: Vec<String> = torchscript::named_parameters(&ck.doc, ck.doc.root())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(named.contains(&"embed.weight".to_owned()));
    assert!(!named.contains(&"out.weight".to_owned()));
}

/// `WithSetstate` pickles `(weight, calls, training)` and its TorchScript `__setstate__` does
/// `self.weight = (state)[0]`: read as a lookup (never run), the parameter is found.
#[test]
fn state_set_by_a_setstate_that_only_unpacks_is_read() {
    let ck = Checkpoint::open(fixture("setstate.pt")).unwrap();
    let class = ck
        .torchscript
        .as_ref()
        .unwrap()
        .classes
        .get("__torch__.WithSetstate")
        .unwrap()
        .clone();
    assert!(class.has_setstate);
    let plan = class.setstate.unwrap();
    let weight = plan.iter().find(|a| a.attr == "weight").unwrap();
    assert_eq!(
        weight.from,
        Some(vec![torchscript::setstate::Step::Index(0)])
    );
    // `self.calls = torch.add((state)[1], 1)`: computed, so not a place in the state.
    assert_eq!(plan.iter().find(|a| a.attr == "calls").unwrap().from, None);
    assert!(torchscript::unresolved_modules(&ck.doc, ck.doc.root()).is_empty());
    assert_eq!(
        ckpt_state_dict("setstate.pt"),
        torch_state_dict("setstate.pt")
    );
    assert_eq!(torchscript::export_state_dict(&ck).unwrap().len(), 1);
}

/// The other archives keep giving torch's state dict (a frozen model has none).
#[test]
fn every_loadable_archive_gives_torchs_state_dict() {
    for name in [
        "scripted_convbn.pt",
        "nested_buffers.pt",
        "traced.pt",
        "bf16.pt",
        "setstate.pt",
        "frozen.pt",
    ] {
        assert_eq!(ckpt_state_dict(name), torch_state_dict(name), "{name}");
    }
}

/// setstate.pt with its `__setstate__` rewritten (in a copy) to compute `weight`
/// (`torch.mul((state)[0], 2)`): the state is not known without running the code, so no
/// state dict, the module is named as unresolved, and export says why.
#[test]
fn a_parameter_computed_by_setstate_leaves_the_state_unknown() {
    use std::io::Read;
    let src = std::fs::File::open(fixture("setstate.pt")).unwrap();
    let mut zin = zip::ZipArchive::new(src).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("computed.pt");
    let mut zout = ckpt_test_support::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..zin.len() {
        // Raw: this build of `zip` has no inflater; code files are deflated.
        let mut f = zin.by_index_raw(i).unwrap();
        let name = f.name().unwrap().into_owned();
        // 8: deflate (stored is 0).
        let deflated = f.compression() != zip::CompressionMethod::Stored;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        if deflated {
            bytes = miniz_oxide::inflate::decompress_to_vec(&bytes).unwrap();
        }
        if name.ends_with("code/__torch__.py") {
            let code = String::from_utf8(bytes).unwrap();
            let changed = code.replace(
                "self.weight = (state)[0]",
                "self.weight = torch.mul((state)[0], 2)",
            );
            assert_ne!(changed, code, "the fixture's __setstate__ changed");
            bytes = changed.into_bytes();
        }
        zout.add(&name, &bytes).unwrap();
    }
    zout.finish().unwrap();
    let ck = Checkpoint::open(&path).unwrap();
    let root = ck.doc.root();
    assert!(torchscript::state_dict(&ck.doc, root).is_none());
    assert_eq!(torchscript::unresolved_modules(&ck.doc, root), [""]);
    let why = torchscript::export_state_dict(&ck).unwrap_err();
    assert!(
        why.contains("the root module") && why.contains("__setstate__"),
        "{why}"
    );
}
