//! `model/architecture.json` (written by `ckpt.ExperimentManager`) read as facts of the
//! hash-folder source: the class, parameter and tensor counts, below the checkpoint's own
//! facts; a hostile or oversized file is read within a bound and costs one warning, never a
//! panic and never another fact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use ckpt_meta::extract::gather_for_sidecar;
use ckpt_meta::sources::folders::{ARCHITECTURE_FILE, MAX_ARCHITECTURE_BYTES, hash_folder};
use ckpt_meta::sources::{Around, DirCache};
use ckpt_meta::{Fact, Field, Resolution, Source, resolve};
use ckpt_test_support::{SynthTensor, write_state_dict_checkpoint};
use ckpt_torch::{Checkpoint, DType};
use serde_json::{Value, json};

const EXP: &str = "checkpoints/v2-0123456789abcdef";

/// Names no architecture inference recognises, so that a guess of the architecture can only
/// come from the description.
fn tensors() -> Vec<SynthTensor> {
    let t = |name: &str, shape: Vec<u64>| SynthTensor {
        name: name.into(),
        dtype: DType::F32,
        shape,
    };
    vec![
        t("fc1.weight", vec![8, 10]),
        t("fc1.bias", vec![8]),
        t("fc2.weight", vec![2, 8]),
        t("fc2.bias", vec![2]),
    ]
}

/// 8*10 + 8 + 2*8 + 2
const ELEMENTS: u64 = 106;

fn put(root: &Path, rel: &str, text: &str) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

/// The description the manager writes for [`tensors`].
fn description(class: &str, elements: u64) -> String {
    let table: Vec<Value> = tensors()
        .iter()
        .map(|t| json!({"name": t.name, "dtype": "float32", "shape": t.shape}))
        .collect();
    serde_json::to_string_pretty(&json!({
        "class": class,
        "architecture_hash": "9f".repeat(32),
        "elements": elements,
        "trainable_parameters": elements - 2,
        "tensors": table,
        "repr": "TinyNet(\n  (fc1): Linear(in_features=10, out_features=8, bias=True)\n)",
    }))
    .unwrap()
}

/// Every fact the catalog would gather for the checkpoint (the file, the places around it),
/// resolved.
fn resolved(ckpt: &Path) -> Resolution {
    let ck = Checkpoint::open(ckpt).unwrap();
    let dirs = DirCache::new();
    let is_file = |p: &Path| p.is_file();
    let root = ckpt.ancestors().nth(4).unwrap().to_path_buf();
    let around = Around {
        dirs: &dirs,
        root: &root,
        is_file: &is_file,
    };
    resolve(gather_for_sidecar(ckpt, &ck, &around).0)
}

fn checkpoint(root: &Path) -> PathBuf {
    let p = root.join(EXP).join("model/checkpoint_step_000100.pt");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    write_state_dict_checkpoint(&p, &tensors()).unwrap();
    p
}

#[test]
fn the_description_gives_class_counts_and_a_guess_below_the_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let ck = checkpoint(d.path());
    put(
        d.path(),
        &format!("{EXP}/model/{ARCHITECTURE_FILE}"),
        &description("mypkg.nets.TinyNet", ELEMENTS),
    );
    let r = resolved(&ck);
    let class = Field::Model("class".into());
    assert_eq!(r.get(&class), Some(&json!("mypkg.nets.TinyNet")));
    assert_eq!(r.source(&class), Some(Source::HashFolder));
    let trainable = Field::Model("trainable_parameters".into());
    assert_eq!(r.get(&trainable), Some(&json!(ELEMENTS - 2)));
    // The checkpoint's own counts win; the description agrees, so no conflict.
    assert_eq!(r.get(&Field::Params), Some(&json!(ELEMENTS)));
    assert_eq!(r.source(&Field::Params), Some(Source::Checkpoint));
    assert_eq!(r.get(&Field::Tensors), Some(&json!(4)));
    assert_eq!(r.source(&Field::Tensors), Some(Source::Checkpoint));
    assert!(r.conflicts.is_empty(), "{:?}", r.conflicts);
    // Nothing else names the architecture: the class's own name, as a guess.
    let arch = Field::Model("architecture".into());
    assert_eq!(r.get(&arch), Some(&json!("TinyNet")));
    assert_eq!(r.source(&arch), Some(Source::Inferred));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn a_config_names_the_architecture_and_a_wrong_count_is_a_visible_conflict() {
    let d = tempfile::tempdir().unwrap();
    let ck = checkpoint(d.path());
    put(
        d.path(),
        &format!("{EXP}/hp/config.yaml"),
        "model:\n  architecture: tiny_mlp\n",
    );
    // A description of another model (a hand-edited or copied file).
    put(
        d.path(),
        &format!("{EXP}/model/{ARCHITECTURE_FILE}"),
        &description("mypkg.nets.TinyNet", ELEMENTS + 1000),
    );
    let r = resolved(&ck);
    let arch = Field::Model("architecture".into());
    assert_eq!(r.get(&arch), Some(&json!("tiny_mlp")));
    assert_eq!(r.source(&arch), Some(Source::HashFolder));
    assert_eq!(r.get(&Field::Params), Some(&json!(ELEMENTS)));
    let c = r
        .conflicts
        .iter()
        .find(|c| c.field == "params")
        .unwrap_or_else(|| panic!("{:?}", r.conflicts));
    let mut by: Vec<(&str, &Value, bool)> = c
        .values
        .iter()
        .map(|v| (v.source.as_str(), &v.value, v.chosen))
        .collect();
    by.sort_by_key(|x| x.0);
    assert_eq!(
        by,
        vec![
            ("checkpoint", &json!(ELEMENTS), true),
            ("hash_folder", &json!(ELEMENTS + 1000), false)
        ]
    );
}

fn warnings(f: &[Fact]) -> Vec<&str> {
    f.iter()
        .filter(|x| x.field == Field::Warning)
        .filter_map(|x| x.value.as_str())
        .collect()
}

/// The facts of `architecture.json` only (not the folder's name and step).
fn described(f: &[Fact]) -> Vec<&Fact> {
    f.iter()
        .filter(|x| {
            matches!(&x.field, Field::Params | Field::Tensors)
                || matches!(&x.field, Field::Model(k) if k == "class" || k == "architecture" || k == "trainable_parameters")
        })
        .collect()
}

#[test]
fn hostile_descriptions_cost_one_warning_each_and_nothing_else() {
    let d = tempfile::tempdir().unwrap();
    let deep = |key: &str| {
        format!(
            "{{\"{key}\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "not_json",
            "class: TinyNet\n".into(),
            "not a model description",
        ),
        ("a_list", "[\"mypkg.TinyNet\", 106]".into(), "a JSON object"),
        ("deep_class", deep("class"), "recursion limit"),
        (
            "deep_table",
            deep("tensors"),
            "expected a tensor (an object)",
        ),
        (
            "rows_not_objects",
            "{\"tensors\": [0, [1], null]}".into(),
            "expected a tensor",
        ),
        (
            "tensors_not_a_list",
            "{\"tensors\": 4}".into(),
            "a list of tensors",
        ),
        (
            "duplicate_key",
            "{\"class\": \"a.B\", \"class\": \"c.D\"}".into(),
            "duplicate field",
        ),
    ];
    for (name, text, says) in &cases {
        let ck = put(
            d.path(),
            &format!("{name}/v2-00000000000000aa/model/checkpoint_step_000001.pt"),
            "",
        );
        let desc = put(
            d.path(),
            &format!("{name}/v2-00000000000000aa/model/{ARCHITECTURE_FILE}"),
            text,
        );
        let f = hash_folder(&DirCache::new(), &ck);
        let w = warnings(&f);
        assert_eq!(w.len(), 1, "{name}: {w:?}");
        assert!(w[0].contains(says), "{name}: {w:?}");
        assert!(w[0].contains(&desc.display().to_string()), "{name}: {w:?}");
        assert!(described(&f).is_empty(), "{name}: {f:?}");
        // The folder is still an experiment.
        assert!(f.iter().any(|x| x.field == Field::Experiment), "{name}");
    }

    // Deep nesting inside a row is skipped without recursing: counted, not a crash.
    let ck = put(
        d.path(),
        "skip/v2-00000000000000ac/model/checkpoint_step_000001.pt",
        "",
    );
    put(
        d.path(),
        &format!("skip/v2-00000000000000ac/model/{ARCHITECTURE_FILE}"),
        &format!(
            "{{\"tensors\": [{{\"shape\": {}{}}}]}}",
            "[".repeat(1_000_000),
            "]".repeat(1_000_000)
        ),
    );
    let f = hash_folder(&DirCache::new(), &ck);
    assert!(warnings(&f).is_empty(), "{:?}", warnings(&f));
    let kept: Vec<(&Field, &Value)> = described(&f).iter().map(|x| (&x.field, &x.value)).collect();
    assert_eq!(kept, vec![(&Field::Tensors, &json!(1))]);

    // Not UTF-8 inside a string.
    let ck = put(
        d.path(),
        "bytes/v2-00000000000000ab/model/checkpoint_step_000001.pt",
        "",
    );
    std::fs::write(
        d.path().join(format!(
            "bytes/v2-00000000000000ab/model/{ARCHITECTURE_FILE}"
        )),
        b"{\"class\": \"m.\xff\"}",
    )
    .unwrap();
    let f = hash_folder(&DirCache::new(), &ck);
    let w = warnings(&f);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("not a model description"), "{w:?}");
    assert!(described(&f).is_empty());

    // Over the limit: refused on its size, before a byte is read (a sparse file).
    let ck = put(
        d.path(),
        "big/v2-00000000000000bb/model/checkpoint_step_000001.pt",
        "",
    );
    let big = d
        .path()
        .join(format!("big/v2-00000000000000bb/model/{ARCHITECTURE_FILE}"));
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(MAX_ARCHITECTURE_BYTES + 1).unwrap();
    drop(f);
    let facts = hash_folder(&DirCache::new(), &ck);
    let w = warnings(&facts);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("larger than the 16 MiB"), "{w:?}");
    assert!(described(&facts).is_empty());

    // Keys of the wrong type: each skipped, named in one warning; the rest kept.
    let ck = put(
        d.path(),
        "types/v2-00000000000000cc/model/checkpoint_step_000001.pt",
        "",
    );
    put(
        d.path(),
        &format!("types/v2-00000000000000cc/model/{ARCHITECTURE_FILE}"),
        &json!({
            "class": "x".repeat(600),
            "elements": -3,
            "trainable_parameters": 1e300,
            "tensors": [{"name": "a", "shape": [[[[1]]]]}, {}, {"x": null}, {"name": "d"}],
        })
        .to_string(),
    );
    let f = hash_folder(&DirCache::new(), &ck);
    let w = warnings(&f);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("class, elements, trainable_parameters ignored"),
        "{w:?}"
    );
    let kept: Vec<(&Field, &Value)> = described(&f).iter().map(|x| (&x.field, &x.value)).collect();
    assert_eq!(kept, vec![(&Field::Tensors, &json!(4))]);

    // A folder or a FIFO under the name is no file: nothing read, nothing said, no blocking.
    let ck = put(
        d.path(),
        "dir/v2-00000000000000dd/model/checkpoint_step_000001.pt",
        "",
    );
    std::fs::create_dir_all(
        d.path()
            .join(format!("dir/v2-00000000000000dd/model/{ARCHITECTURE_FILE}")),
    )
    .unwrap();
    let f = hash_folder(&DirCache::new(), &ck);
    assert!(warnings(&f).is_empty() && described(&f).is_empty(), "{f:?}");
    #[cfg(unix)]
    {
        let ck = put(
            d.path(),
            "fifo/v2-00000000000000ee/model/checkpoint_step_000001.pt",
            "",
        );
        let fifo = d.path().join(format!(
            "fifo/v2-00000000000000ee/model/{ARCHITECTURE_FILE}"
        ));
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let f = hash_folder(&DirCache::new(), &ck);
            assert!(described(&f).is_empty(), "{f:?}");
        }
    }
}

#[test]
fn a_long_tensor_table_is_counted_not_kept_and_the_folder_is_read_once() {
    let d = tempfile::tempdir().unwrap();
    let n = 1_000_000usize;
    let table = format!("[{}]", vec!["{\"shape\":[1]}"; n].join(","));
    assert!(
        (table.len() as u64) < MAX_ARCHITECTURE_BYTES,
        "{}",
        table.len()
    );
    put(
        d.path(),
        &format!("{EXP}/model/{ARCHITECTURE_FILE}"),
        &format!("{{\"class\": \"m.Net\", \"tensors\": {table}}}"),
    );
    let a = put(
        d.path(),
        &format!("{EXP}/model/checkpoint_step_000001.pt"),
        "",
    );
    let b = put(
        d.path(),
        &format!("{EXP}/model/checkpoint_step_000002.pt"),
        "",
    );
    let cache = DirCache::new();
    for ck in [&a, &b] {
        let f = hash_folder(&cache, ck);
        let tensors = f.iter().find(|x| x.field == Field::Tensors).unwrap();
        assert_eq!(tensors.value, json!(n));
        assert_eq!(tensors.source, Source::HashFolder);
        assert!(warnings(&f).is_empty());
    }
    assert!(format!("{cache:?}").contains("hash: 1"), "{cache:?}");
}
