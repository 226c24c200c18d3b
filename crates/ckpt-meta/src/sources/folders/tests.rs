//! The folder sources on real temporary trees.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::hash::step_in_name;
use super::hierarchical::after_timestamp;
use super::lightning::MetricsCsv;
use super::loggers::wandb_run_id;
use super::*;
use std::collections::HashSet;
use std::fs;

fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, text).unwrap();
    p
}

fn get<'f>(facts: &'f [Fact], path: &str) -> Option<&'f Fact> {
    facts.iter().find(|f| f.field.path() == path)
}

fn val(facts: &[Fact], path: &str) -> Value {
    get(facts, path)
        .map(|f| f.value.clone())
        .unwrap_or(Value::Null)
}

fn src(facts: &[Fact], path: &str) -> Source {
    get(facts, path)
        .map(|f| f.source)
        .unwrap_or_else(|| panic!("no fact for {path}"))
}

fn no_dup_paths(facts: &[Fact]) {
    let mut seen = HashSet::new();
    for f in facts {
        assert!(seen.insert(f.field.clone()), "duplicate {}", f.field);
    }
}

const METRICS: &str = "epoch,step,train_loss,val_loss,val_acc\n\
        0,49,0.9,,\n\
        0,99,0.8,,\n\
        0,99,,0.7,0.5\n\
        1,149,0.6,,\n\
        1,199,,0.5,0.6\n\
        2,249,0.4,,\n\
        2,299,,0.3,nan\n";

#[test]
fn lightning_version_dir() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let v0 = "run/lightning_logs/version_0";
    write(
        r,
        &format!("{v0}/hparams.yaml"),
        "hidden: 8\nlr: 0.01\nencoder: resnet18\n",
    );
    write(r, &format!("{v0}/metrics.csv"), METRICS);
    let c = DirCache::new();
    let ck = write(r, &format!("{v0}/checkpoints/epoch=1-step=200.ckpt"), "");
    let f = lightning_logs(&c, &ck, r);
    no_dup_paths(&f);
    assert_eq!(val(&f, "experiment"), json!("run/lightning_logs/version_0"));
    assert_eq!(src(&f, "experiment"), Source::FolderName);
    assert_eq!(val(&f, "hparams.hidden"), json!(8));
    assert_eq!(val(&f, "hparams.lr"), json!(0.01));
    assert_eq!(src(&f, "hparams.lr"), Source::HparamsYaml);
    assert_eq!(val(&f, "model.encoder"), json!("resnet18"));
    assert_eq!(val(&f, "metrics.train_loss"), json!(0.6));
    assert_eq!(val(&f, "metrics.val_loss"), json!(0.5));
    assert_eq!(val(&f, "metrics.val_acc"), json!(0.6));
    assert_eq!(src(&f, "metrics.val_acc"), Source::MetricsCsv);
    assert!(get(&f, "metrics.epoch").is_none() && get(&f, "metrics.step").is_none());

    // mid-epoch: only rows up to the step
    let ck = write(r, &format!("{v0}/checkpoints/epoch=0-step=60.ckpt"), "");
    let f = lightning_logs(&c, &ck, r);
    assert_eq!(val(&f, "metrics.train_loss"), json!(0.9));
    assert!(get(&f, "metrics.val_loss").is_none());

    // step only: the epoch reached at that step
    let ck = write(r, &format!("{v0}/checkpoints/step=250.ckpt"), "");
    let f = lightning_logs(&c, &ck, r);
    assert_eq!(val(&f, "metrics.train_loss"), json!(0.4));
    assert!(get(&f, "metrics.val_loss").is_none());

    // last.ckpt: the last epoch; nan skipped
    let ck = write(r, &format!("{v0}/checkpoints/last.ckpt"), "");
    let f = lightning_logs(&c, &ck, r);
    assert_eq!(val(&f, "metrics.val_loss"), json!(0.3));
    assert_eq!(val(&f, "metrics.train_loss"), json!(0.4));
    assert!(get(&f, "metrics.val_acc").is_none());

    // best.ckpt: epoch unknown, no metrics; an epoch not in the file: none either
    for n in ["best.ckpt", "epoch=9-step=999.ckpt"] {
        let ck = write(r, &format!("{v0}/checkpoints/{n}"), "");
        let f = lightning_logs(&c, &ck, r);
        assert!(
            f.iter().all(|x| !matches!(x.field, Field::Metric(_))),
            "{n}"
        );
        assert_eq!(val(&f, "hparams.hidden"), json!(8));
    }
}

#[test]
fn lightning_experiment_names() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let c = DirCache::new();
    let ck = write(r, "a/lightning_logs/version_3/checkpoints/x.ckpt", "");
    // outside root: last two components
    let other = tempfile::tempdir().unwrap();
    let f = lightning_logs(&c, &ck, other.path());
    assert_eq!(val(&f, "experiment"), json!("lightning_logs/version_3"));
    // root is the version dir itself
    let f = lightning_logs(&c, &ck, &r.join("a/lightning_logs/version_3"));
    assert_eq!(val(&f, "experiment"), json!("lightning_logs/version_3"));
    // no hparams.yaml/metrics.csv: still an experiment and a run, nothing else
    let f = lightning_logs(&c, &ck, r);
    assert_eq!(f.len(), 2);
    assert_eq!(val(&f, "run"), json!("a/lightning_logs/version_3"));
    assert_eq!(val(&f, "experiment"), json!("a/lightning_logs/version_3"));
    // a checkpoint directly in version_N
    let ck = write(r, "a/lightning_logs/version_4/x.ckpt", "");
    let f = lightning_logs(&c, &ck, r);
    assert_eq!(val(&f, "experiment"), json!("a/lightning_logs/version_4"));
    // relative paths with root "."
    let f = lightning_logs(
        &c,
        Path::new("tb/clf/version_0/checkpoints/x.ckpt"),
        Path::new("."),
    );
    assert_eq!(val(&f, "experiment"), json!("tb/clf/version_0"));
}

#[test]
fn lightning_custom_version_and_non_lightning() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let c = DirCache::new();
    write(r, "tb/clf/run_a/hparams.yaml", "width: 16\n");
    let ck = write(r, "tb/clf/run_a/checkpoints/epoch=0.ckpt", "");
    let f = lightning_logs(&c, &ck, r);
    assert_eq!(val(&f, "experiment"), json!("tb/clf/run_a"));
    assert_eq!(val(&f, "hparams.width"), json!(16));
    // Hydra-style outputs/<exp>/checkpoints without Lightning files: nothing
    let ck = write(r, "outputs/exp/checkpoints/last.ckpt", "");
    assert!(lightning_logs(&c, &ck, r).is_empty());
    let ck = write(r, "plain/model.pt", "");
    assert!(lightning_logs(&c, &ck, r).is_empty());
    assert!(lightning_logs(&c, Path::new("x.ckpt"), Path::new(".")).is_empty());
    assert!(lightning_logs(&c, Path::new("checkpoints/x.ckpt"), Path::new(".")).is_empty());
    assert!(lightning_logs(&c, Path::new("/"), Path::new("/")).is_empty());
}

#[test]
fn lightning_malformed_files() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let c = DirCache::new();
    let v = "lightning_logs/version_0";
    write(r, &format!("{v}/hparams.yaml"), "a: [1, 2\nb: {{{\n");
    fs::write(r.join(v).join("metrics.csv"), b"\xff\xfe\x00garbage").unwrap();
    let ck = write(r, &format!("{v}/checkpoints/epoch=0-step=1.ckpt"), "");
    let f = lightning_logs(&c, &ck, r);
    assert_eq!(f.len(), 2, "{f:?}");
    // a header-only CSV and a CSV with short/long rows
    let v = "lightning_logs/version_1";
    write(r, &format!("{v}/metrics.csv"), "epoch,step,loss");
    let ck = write(r, &format!("{v}/checkpoints/last.ckpt"), "");
    assert_eq!(lightning_logs(&c, &ck, r).len(), 2);
    let v = "lightning_logs/version_2";
    write(
        r,
        &format!("{v}/metrics.csv"),
        "epoch,step,\"val,loss\"\r\n0\r\n0,1,0.5,7,8\r\nx,y,z\r\n",
    );
    let ck = write(r, &format!("{v}/checkpoints/last.ckpt"), "");
    let f = lightning_logs(&c, &ck, r);
    assert_eq!(val(&f, "metrics.val,loss"), json!(0.5));
}

#[test]
fn lightning_python_tags() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let c = DirCache::new();
    let v = "lightning_logs/version_0";
    write(
        r,
        &format!("{v}/hparams.yaml"),
        "args: !!python/object:argparse.Namespace\n  lr: 0.1\n  arch: unet\n\
             act: !!python/name:torch.nn.modules.activation.ReLU ''\n\
             sizes: !!python/tuple\n- 1\n- 2\nloss: dice\n",
    );
    let ck = write(r, &format!("{v}/checkpoints/epoch=0-step=1.ckpt"), "");
    let f = lightning_logs(&c, &ck, r);
    assert_eq!(val(&f, "hparams.args"), json!({"lr": 0.1, "arch": "unet"}));
    assert_eq!(val(&f, "hparams.sizes"), json!([1, 2]));
    assert_eq!(val(&f, "model.loss"), json!("dice"));
}

#[test]
fn metrics_csv_tail_of_a_large_file() {
    let t = tempfile::tempdir().unwrap();
    let mut text = String::from("epoch,step,loss\n");
    let row = format!("0,0,{}\n", "1".repeat(1000));
    while text.len() < (MAX_FILE_BYTES as usize) + 100_000 {
        text.push_str(&row);
    }
    text.push_str("7,70,0.25\n");
    let p = write(t.path(), "metrics.csv", &text);
    let csv = MetricsCsv::read(&p).unwrap();
    assert!(csv.rows.len() < text.len() / 1000);
    assert_eq!(csv.select(None, None), vec![("loss".to_owned(), 0.25)]);
}

#[test]
fn loss_suffix_split() {
    let cases = [
        (
            "vit_base_patch32_224_focal",
            Some(("vit_base_patch32_224", "focal")),
        ),
        (
            "efficientnet_b3_weighted_bce",
            Some(("efficientnet_b3", "weighted_bce")),
        ),
        (
            "resnet18_cross_entropy",
            Some(("resnet18", "cross_entropy")),
        ),
        (
            "unet_resnet34_dice_bce",
            Some(("unet_resnet34", "dice_bce")),
        ),
        ("unet_focal_tversky", Some(("unet", "focal_tversky"))),
        ("ResNet50_Focal_Loss", Some(("ResNet50", "Focal_Loss"))),
        ("resnet18_ce", Some(("resnet18", "ce"))),
        ("resnet18", None),
        ("focal", None),
        ("_focal", None),
        ("resnet18_arcface2", None),
        ("ü_ünet_bce", Some(("ü_ünet", "bce"))),
    ];
    for (s, want) in cases {
        assert_eq!(split_model_loss(s), want, "{s}");
    }
    assert_eq!(
        after_timestamp("2025-02-12_15-10-33_vit_b_focal"),
        Some("vit_b_focal")
    );
    assert_eq!(
        after_timestamp("20250212_151033-resnet18_ce"),
        Some("resnet18_ce")
    );
    assert_eq!(after_timestamp("2025-02-12_15-10-33"), None);
    assert_eq!(after_timestamp("2025-02-12_15-10-33_"), None);
    assert_eq!(after_timestamp("my_experiment"), None);
    assert_eq!(after_timestamp("2025-0ü-12_x"), None);
}

fn arcaff_like(r: &Path) -> PathBuf {
    let d = "checkpoints/flares/multiclass/2025-02-12_15-10-33_vit_base_patch32_224_focal";
    write(
        r,
        &format!("{d}/config.json"),
        r#"{"MODEL_NAME": "vit_base_patch32_224", "LOSS_FUNCTION": "focal",
                "LEARNING_RATE": 0.0001, "AUGMENTATIONS": {"hflip": true}}"#,
    );
    write(
        r,
        &format!("{d}/training_summary.json"),
        r#"{"model_name": "vit_base_patch32_224", "loss_function": "focal",
                "root_name": "flares/multiclass", "best_epoch": 11, "best_val_f1": 0.612,
                "test_results": {"test_loss": 0.234, "test_f1": 0.616}}"#,
    );
    write(
        r,
        &format!("{d}/classification_report.json"),
        r#"{"test_metrics": {"test_f1": 0.999, "test_recall": 0.85},
                "A": {"precision": 0.5}, "accuracy": 0.89,
                "macro avg": {"precision": 0.7, "recall": 0.6, "f1-score": 0.65, "support": 10}}"#,
    );
    write(
        r,
        &format!("{d}/minimal_logging.json"),
        r#"{"best_epoch": 11, "best_val_f1": 0.612}"#,
    );
    write(r, &format!("{d}/best-epoch11-val_f1-0.612.ckpt"), "")
}

#[test]
fn hierarchical_from_reports() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let c = DirCache::new();
    let ck = arcaff_like(r);
    let f = hierarchical(&c, &ck, r);
    no_dup_paths(&f);
    assert_eq!(
        val(&f, "experiment"),
        json!("flares/multiclass/2025-02-12_15-10-33_vit_base_patch32_224_focal")
    );
    assert_eq!(val(&f, "task"), json!("flares/multiclass"));
    assert_eq!(src(&f, "task"), Source::FolderName);
    assert_eq!(val(&f, "model.architecture"), json!("vit_base_patch32_224"));
    assert_eq!(src(&f, "model.architecture"), Source::JsonReport);
    assert_eq!(val(&f, "model.loss"), json!("focal"));
    assert_eq!(val(&f, "hparams.LEARNING_RATE"), json!(0.0001));
    assert_eq!(val(&f, "hparams.AUGMENTATIONS"), json!({"hflip": true}));
    assert_eq!(val(&f, "is_best"), json!(true));
    assert_eq!(val(&f, "metrics.test_f1"), json!(0.616));
    assert_eq!(val(&f, "metrics.test_recall"), json!(0.85));
    assert_eq!(val(&f, "metrics.accuracy"), json!(0.89));
    assert_eq!(val(&f, "metrics.macro_avg_f1"), json!(0.65));
    assert_eq!(src(&f, "metrics.test_f1"), Source::JsonReport);
    // from the file name elsewhere
    for p in [
        "epoch",
        "metrics.val_f1",
        "metrics.best_val_f1",
        "metrics.best_epoch",
    ] {
        assert!(get(&f, p).is_none(), "{p}");
    }
    // another checkpoint of the folder, not the best one: no test metrics
    let other = ck.with_file_name("epoch03.ckpt");
    fs::write(&other, "").unwrap();
    let f = hierarchical(&c, &other, r);
    assert_eq!(val(&f, "is_best"), json!(false));
    assert!(f.iter().all(|x| !matches!(x.field, Field::Metric(_))));
    // the catalog root inside `checkpoints/`: the task stays the same
    let f = hierarchical(&c, &ck, &r.join("checkpoints/flares"));
    assert_eq!(val(&f, "task"), json!("flares/multiclass"));
}

#[test]
fn hierarchical_from_folder_name() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let c = DirCache::new();
    let ck = write(
        r,
        "runs/seg/2025-02-12_14-30-45_efficientnet_b3_weighted_bce/best-epoch02-val_f1-0.847.ckpt",
        "",
    );
    let f = hierarchical(&c, &ck, r);
    assert_eq!(
        val(&f, "experiment"),
        json!("runs/seg/2025-02-12_14-30-45_efficientnet_b3_weighted_bce")
    );
    assert_eq!(val(&f, "task"), json!("runs/seg"));
    assert_eq!(val(&f, "model.architecture"), json!("efficientnet_b3"));
    assert_eq!(src(&f, "model.architecture"), Source::FolderName);
    assert_eq!(val(&f, "model.loss"), json!("weighted_bce"));
    assert!(get(&f, "is_best").is_none());

    // a JSON gives the model only: the loss is what follows it in the name
    let d = "checkpoints/2025-02-12_16-45-22_my_net_v2_arcface";
    write(
        r,
        &format!("{d}/minimal_logging.json"),
        "{\"best_epoch\": 1}",
    );
    write(
        r,
        &format!("{d}/config.json"),
        "{\"MODEL_NAME\": \"my_net_v2\"}",
    );
    let ck = write(r, &format!("{d}/checkpoints/last.ckpt"), "");
    let f = hierarchical(&c, &ck, r);
    assert_eq!(
        val(&f, "experiment"),
        json!("2025-02-12_16-45-22_my_net_v2_arcface")
    );
    assert!(get(&f, "task").is_none());
    assert_eq!(val(&f, "model.architecture"), json!("my_net_v2"));
    assert_eq!(val(&f, "model.loss"), json!("arcface"));
    assert_eq!(src(&f, "model.loss"), Source::FolderName);

    // unknown loss, no reports: not an experiment folder of this kind
    let ck = write(
        r,
        "outputs/2025-02-12_16-45-22_myexp/checkpoints/last.ckpt",
        "",
    );
    assert!(hierarchical(&c, &ck, r).is_empty());
    let ck = write(r, "outputs/2025-02-12_16-45-22_resnet18_foo/x.ckpt", "");
    assert!(hierarchical(&c, &ck, r).is_empty());
    // broken JSON: folder name still speaks
    let d = "checkpoints/t/2025-02-12_16-45-22_resnet18_focal";
    write(r, &format!("{d}/training_summary.json"), "{not json");
    let ck = write(r, &format!("{d}/a.ckpt"), "");
    let f = hierarchical(&c, &ck, r);
    assert_eq!(val(&f, "model.architecture"), json!("resnet18"));
    assert_eq!(val(&f, "task"), json!("t"));
    assert!(hierarchical(&c, Path::new("a.ckpt"), Path::new(".")).is_empty());
}

#[test]
fn hash_folders() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let c = DirCache::new();
    let h = "checkpoints/0f9e8d7c6b5a";
    write(
        r,
        &format!("{h}/hp/config.yaml"),
        "experiment_name: demo\nlearning_rate: 0.01\nmodel:\n  architecture: mlp\n  hidden: 16\n",
    );
    write(
        r,
        &format!("{h}/hp/extra.yml"),
        "learning_rate: 99\nseed: 3\n",
    );
    write(
        r,
        &format!("{h}/data/active_uids.txt"),
        "s1\ns2\n\ns2\n  s3  \n# note\n",
    );
    let ck = write(r, &format!("{h}/model/checkpoint_step_000100.pt"), "");
    let f = hash_folder(&c, &ck);
    no_dup_paths(&f);
    assert_eq!(val(&f, "experiment"), json!("0f9e8d7c6b5a"));
    assert_eq!(val(&f, "global_step"), json!(100));
    assert_eq!(src(&f, "global_step"), Source::HashFolder);
    assert_eq!(val(&f, "hparams.learning_rate"), json!(0.01));
    assert_eq!(val(&f, "hparams.seed"), json!(3));
    assert_eq!(
        val(&f, "hparams.model"),
        json!({"architecture": "mlp", "hidden": 16})
    );
    assert_eq!(val(&f, "model.architecture"), json!("mlp"));
    // `# note` is a UID, as `ckpt hash` reads the file (ckpt_meta::hash_folder).
    assert_eq!(val(&f, "data.active_uids"), json!(4));
    let ck = write(r, &format!("{h}/model/architecture.pt"), "");
    let f = hash_folder(&c, &ck);
    assert!(get(&f, "global_step").is_none());
    assert_eq!(val(&f, "experiment"), json!("0f9e8d7c6b5a"));
    // `step=` in the name is the file-name source's
    let ck = write(r, &format!("{h}/model/step=5.pt"), "");
    assert!(get(&hash_folder(&c, &ck), "global_step").is_none());

    // any name with model/ and hp/; uids as JSON
    write(r, "exps/run_a/hp/h.json", "{\"lr\": 1}");
    write(
        r,
        "exps/run_a/data/active_uids.json",
        "[\"a\", \"b\", \"a\", 3]",
    );
    let ck = write(r, "exps/run_a/model/ckpt-step-7.pt", "");
    let f = hash_folder(&c, &ck);
    assert_eq!(val(&f, "experiment"), json!("run_a"));
    assert_eq!(val(&f, "hparams.lr"), json!(1));
    assert_eq!(val(&f, "data.active_uids"), json!(3));
    // hex name without hp/; uids as CSV with a header
    write(
        r,
        "x/abcdef12/data/active_uids.csv",
        "uid,weight\nu1,1\nu2,1\nu1,2\n",
    );
    let ck = write(r, "x/abcdef12/model/checkpoint_step_000200.pt", "");
    let f = hash_folder(&c, &ck);
    assert_eq!(val(&f, "experiment"), json!("abcdef12"));
    assert_eq!(val(&f, "global_step"), json!(200));
    assert_eq!(val(&f, "data.active_uids"), json!(2));
    assert!(get(&f, "hparams.lr").is_none());
    // not hash folders
    let ck = write(r, "outputs/exp/model/last.pt", "");
    assert!(hash_folder(&c, &ck).is_empty());
    let ck = write(r, "x/abcdef12/weights/a.pt", "");
    assert!(hash_folder(&c, &ck).is_empty());
    assert!(hash_folder(&c, Path::new("model/a.pt")).is_empty());
    assert!(hash_folder(&c, Path::new("/")).is_empty());
}

#[test]
fn step_names() {
    assert_eq!(step_in_name("checkpoint_step_000100"), Some(100));
    assert_eq!(step_in_name("model-step1200"), Some(1200));
    assert_eq!(step_in_name("STEP=5_final"), Some(5));
    assert_eq!(step_in_name("architecture"), None);
    assert_eq!(step_in_name("step_"), None);
    assert_eq!(step_in_name("stepü"), None);
}

fn mlflow_tree(r: &Path) -> PathBuf {
    let run = "mlruns/1234/abcd0123";
    write(r, "mlruns/1234/meta.yaml", "name: corpus\n");
    write(r, &format!("{run}/meta.yaml"), "run_name: clf\n");
    write(r, &format!("{run}/params/lr"), "0.05");
    write(r, &format!("{run}/params/optimizer"), "sgd");
    write(r, &format!("{run}/params/model/arch"), "mlp");
    write(r, &format!("{run}/params/architecture"), "mlp");
    write(r, &format!("{run}/params/flag"), "True");
    write(r, &format!("{run}/tags/mlflow.runName"), "clf");
    write(
        r,
        &format!("{run}/metrics/epoch"),
        "1 0.0 2\n2 1.0 5\n3 2.0 8\n",
    );
    write(
        r,
        &format!("{run}/metrics/val/acc"),
        "1 0.5 2\n2 0.6 5\n3 0.7 8\n",
    );
    write(
        r,
        &format!("{run}/metrics/val/loss"),
        "1 1.2 2\n2 1.1 5\n3 nan 8\nbad\n",
    );
    write(r, &format!("{run}/checkpoints/epoch=1-step=6.ckpt"), "")
}

#[test]
fn mlflow_runs() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let c = DirCache::new();
    let ck = mlflow_tree(r);
    let f = loggers(&c, &ck, r);
    no_dup_paths(&f);
    assert_eq!(val(&f, "experiment"), json!("mlruns/1234/abcd0123"));
    assert_eq!(src(&f, "experiment"), Source::Logger);
    assert_eq!(val(&f, "hparams.lr"), json!(0.05));
    assert_eq!(val(&f, "hparams.optimizer"), json!("sgd"));
    assert_eq!(val(&f, "hparams.model/arch"), json!("mlp"));
    assert_eq!(val(&f, "hparams.flag"), json!(true));
    assert_eq!(val(&f, "model.architecture"), json!("mlp"));
    assert_eq!(val(&f, "metrics.val/acc"), json!(0.6));
    assert_eq!(val(&f, "metrics.val/loss"), json!(1.1));
    assert!(get(&f, "metrics.epoch").is_none());
    let dir = ck.parent().unwrap();
    // epoch only: the last step of that epoch
    let f = loggers(&c, &dir.join("epoch=0.ckpt"), r);
    assert_eq!(val(&f, "metrics.val/acc"), json!(0.5));
    // end of training; nan skipped back to the last number
    let f = loggers(&c, &dir.join("last.ckpt"), r);
    assert_eq!(val(&f, "metrics.val/acc"), json!(0.7));
    assert_eq!(val(&f, "metrics.val/loss"), json!(1.1));
    // unknown position
    let f = loggers(&c, &dir.join("best.ckpt"), r);
    assert!(f.iter().all(|x| !matches!(x.field, Field::Metric(_))));
    assert_eq!(val(&f, "experiment"), json!("mlruns/1234/abcd0123"));
    // deeper inside the run's artifacts
    let f = loggers(
        &c,
        &r.join("mlruns/1234/abcd0123/artifacts/model/m.ckpt"),
        r,
    );
    assert_eq!(val(&f, "experiment"), json!("mlruns/1234/abcd0123"));
    // the experiment folder's meta.yaml alone is not a run
    assert!(loggers(&c, &r.join("mlruns/1234/x.ckpt"), r).is_empty());
}

#[test]
fn wandb_runs() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let c = DirCache::new();
    write(
        r,
        "save/wandb/offline-run-20261122_064815-vuo698ek/run-vuo698ek.wandb",
        "x",
    );
    write(
        r,
        "save/wandb/run-20261123_010101-abc123xy/files/config.yaml",
        "wandb_version: 1\n_wandb:\n  desc: null\n  value: {cli_version: 0.1}\n\
             lr:\n  desc: null\n  value: 0.05\nencoder:\n  value: resnet18\nplain: 3\n",
    );
    write(r, "save/wandb/latest-run/x", "");
    let ck = write(
        r,
        "save/corpus/vuo698ek/checkpoints/epoch=1-step=6.ckpt",
        "",
    );
    let f = loggers(&c, &ck, r);
    assert_eq!(
        f,
        vec![
            Fact::new(Field::Experiment, json!("vuo698ek"), Source::Logger),
            Fact::new(Field::Run, json!("vuo698ek"), Source::Logger)
        ]
    );
    let ck = write(r, "save/corpus/abc123xy/checkpoints/last.ckpt", "");
    let f = loggers(&c, &ck, r);
    no_dup_paths(&f);
    assert_eq!(val(&f, "experiment"), json!("abc123xy"));
    assert_eq!(val(&f, "hparams.lr"), json!(0.05));
    assert_eq!(val(&f, "hparams.plain"), json!(3));
    assert_eq!(val(&f, "model.encoder"), json!("resnet18"));
    assert!(get(&f, "hparams._wandb").is_none() && get(&f, "hparams.wandb_version").is_none());
    // a checkpoint inside the run folder
    let ck = write(
        r,
        "save/wandb/run-20261123_010101-abc123xy/files/m.ckpt",
        "",
    );
    assert_eq!(val(&loggers(&c, &ck, r), "experiment"), json!("abc123xy"));
    // no matching run folder
    let ck = write(r, "save/corpus/zzz/checkpoints/last.ckpt", "");
    assert!(loggers(&c, &ck, r).is_empty());
    assert!(loggers(&c, Path::new("checkpoints/x.ckpt"), Path::new(".")).is_empty());
    assert_eq!(wandb_run_id("run-2026112_064815-x"), None);
    assert_eq!(wandb_run_id("offline-run-20261122_064815-"), None);
}

#[test]
fn cache_is_shared_and_used() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let c = Arc::new(DirCache::new());
    let v = "lightning_logs/version_0";
    let hp = write(r, &format!("{v}/hparams.yaml"), "lr: 1\n");
    let ck = write(r, &format!("{v}/checkpoints/last.ckpt"), "");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let c = Arc::clone(&c);
            let ck = ck.clone();
            let r = r.to_path_buf();
            std::thread::spawn(move || lightning_logs(&c, &ck, &r))
        })
        .collect();
    for th in threads {
        assert_eq!(val(&th.join().unwrap(), "hparams.lr"), json!(1));
    }
    fs::write(&hp, "lr: 2\n").unwrap();
    assert_eq!(val(&lightning_logs(&c, &ck, r), "hparams.lr"), json!(1));
    assert_eq!(c.config(&hp).as_deref(), Some(&json!({"lr": 1})));
    c.clear();
    assert_eq!(val(&lightning_logs(&c, &ck, r), "hparams.lr"), json!(2));
    assert!(c.config(&r.join("missing.yaml")).is_none());
    assert!(format!("{c:?}").contains("DirCache"));
}

/// `log_dirs` finds the folders the catalog's sources read, by the same rules.
#[test]
fn log_dirs_of_each_layout() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let c = DirCache::new();
    let kinds = |ck: &Path| -> Vec<(LogDirKind, PathBuf)> {
        log_dirs(&c, ck)
            .into_iter()
            .map(|d| (d.kind, d.path))
            .collect()
    };
    // Lightning: version_N named, or any folder with metrics.csv
    let v0 = "run/lightning_logs/version_0";
    write(r, &format!("{v0}/metrics.csv"), METRICS);
    let ck = write(r, &format!("{v0}/checkpoints/epoch=1-step=200.ckpt"), "");
    assert_eq!(kinds(&ck), vec![(LogDirKind::Lightning, r.join(v0))]);
    let ck = write(r, "tb/clf/other/checkpoints/last.ckpt", "");
    assert!(kinds(&ck).is_empty());
    write(r, "tb/clf/mine/metrics.csv", "step,x\n");
    let ck = write(r, "tb/clf/mine/checkpoints/last.ckpt", "");
    assert_eq!(
        kinds(&ck),
        vec![(LogDirKind::Lightning, r.join("tb/clf/mine"))]
    );
    // MLflow
    let ck = mlflow_tree(r);
    assert_eq!(
        kinds(&ck),
        vec![(LogDirKind::Mlflow, r.join("mlruns/1234/abcd0123"))]
    );
    // W&B, from Lightning's `<save_dir>/<project>/<id>/checkpoints/`
    let run = "save/wandb/offline-run-20261122_064815-vuo698ek";
    write(r, &format!("{run}/run-vuo698ek.wandb"), "x");
    let ck = write(
        r,
        "save/corpus/vuo698ek/checkpoints/epoch=1-step=6.ckpt",
        "",
    );
    assert_eq!(kinds(&ck), vec![(LogDirKind::Wandb, r.join(run))]);
    // JSON reports; a folder that only looks like an experiment has none to read
    let exp = "checkpoints/flares/2025-02-12_14-30-45_resnet18_weighted_bce";
    let ck = write(r, &format!("{exp}/best-epoch02-val_f1-0.847.ckpt"), "");
    assert!(kinds(&ck).is_empty());
    let c2 = DirCache::new();
    write(
        r,
        &format!("{exp}/training_summary.json"),
        "{\"best_epoch\": 2}",
    );
    assert_eq!(
        log_dirs(&c2, &ck)
            .into_iter()
            .map(|d| (d.kind, d.path))
            .collect::<Vec<_>>(),
        vec![(LogDirKind::Reports, r.join(exp))]
    );
    assert!(kinds(Path::new("x.ckpt")).is_empty());
}

/// Checkpoints of one folder in a bucket, resolved at once, load its files once: the others
/// wait for the first (each read is a request). Local keys are loaded as before.
#[test]
fn a_remote_folder_is_loaded_once_by_threads_that_want_it_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let m: Memo<usize> = Mutex::default();
    let loads = AtomicUsize::new(0);
    let key = Path::new("s3://b/run/version_0");
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let v = memo(&m, key, || {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    loads.fetch_add(1, Ordering::SeqCst) + 7
                });
                assert_eq!(v, 7);
            });
        }
    });
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert!(LOADING.lock().unwrap().is_empty());
}
