//! A sidecar written by a live run (`build_live_sidecar`) is `convert-legacy`'s sidecar of the
//! same file plus what the run observed, and what it observed survives a rewrite from the
//! sidecar itself (the `live` provenance is read back at its rank).

use std::path::Path;

use ckpt_meta::extract::build_live_sidecar;
use ckpt_meta::sources::live::LiveRun;
use ckpt_meta::sources::{Around, DirCache};
use ckpt_meta::{Layout, build_sidecar, sidecar};
use ckpt_test_support::{model_tensors, write_lightning_checkpoint};
use ckpt_torch::Checkpoint;
use serde_json::{Value, json};

fn around_build(ckpt: &Path, live: Option<&LiveRun>) -> Value {
    let ck = match Checkpoint::open(ckpt) {
        Ok(ck) => ck,
        Err(e) => panic!("{e}"),
    };
    let layout = Layout::new(ckpt, None);
    let root = layout.outputs_dir.clone();
    let dirs = DirCache::default();
    let is_file = |p: &Path| p.is_file();
    let around = Around {
        dirs: &dirs,
        root: &root,
        is_file: &is_file,
    };
    match live {
        Some(l) => match build_live_sidecar(&ck, &layout, &around, l) {
            Ok((v, _)) => v,
            Err(e) => panic!("{e}"),
        },
        None => build_sidecar(&ck, &layout, &around).0,
    }
}

#[test]
fn the_live_sidecar_is_convert_legacys_plus_the_run() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("outputs/exp/checkpoints");
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("epoch=03.ckpt");
    write_lightning_checkpoint(&ckpt, &model_tensors(4, 4096)).unwrap();
    // The job's composed config, away from the checkpoints (no .hydra/ near them).
    let job = d.path().join("job");
    std::fs::create_dir_all(job.join(".hydra")).unwrap();
    std::fs::write(
        job.join(".hydra/config.yaml"),
        "exp_name: from_the_run\nmodel:\n  architecture: tiny_mlp\n",
    )
    .unwrap();
    let live: LiveRun = serde_json::from_value(json!({
        "metrics": {"val/hmean": 0.8125, "train_loss": 0.5},
        "monitor": "val/hmean", "mode": "max", "save_top_k": 3, "save_last": false,
        "hydra": {"job_name": "train", "config": job.join(".hydra/config.yaml")},
        "loggers": [{"logger": "CSVLogger", "version": 0}],
        "writer": "ckpt.lightning.MetadataCallback (lightning 2.6.6)",
    }))
    .unwrap();
    let legacy = around_build(&ckpt, None);
    let ours = around_build(&ckpt, Some(&live));
    assert!(ckpt_meta::validate(&ours).is_empty(), "{ours:#}");
    for k in [
        "schema_version",
        "checkpoint_path",
        "created_at",
        "training",
        "fingerprint",
        "state",
    ] {
        assert_eq!(ours[k], legacy[k], "{k}");
    }
    // What only the run knew, at the live source's rank.
    assert_eq!(ours["checkpointing"]["save_top_k"], 3);
    assert_eq!(ours["checkpointing"]["save_last"], false);
    assert_eq!(ours["provenance"]["checkpointing.save_top_k"], "live");
    assert_eq!(ours["metrics"]["additional_metrics"]["val/hmean"], 0.8125);
    assert_eq!(ours["metrics"]["hmean"], 0.8125);
    assert_eq!(
        ours["provenance"]["metrics.additional_metrics.train_loss"],
        "live"
    );
    assert_eq!(
        ours["checkpointing"]["monitor"],
        legacy["checkpointing"]["monitor"]
    );
    // The running Hydra config reached it though no .hydra/ is near the file.
    assert_eq!(ours["exp_name"], "from_the_run");
    assert_eq!(ours["provenance"]["exp_name"], "hydra");
    // ... ranked as the run's Hydra config: below the file's own hyper_parameters.
    assert_eq!(
        ours["model"]["architecture"],
        legacy["model"]["architecture"]
    );
    assert_eq!(ours["provenance"]["model.architecture"], "hparams");
    assert_eq!(ours["run"]["hydra"]["job_name"], "train");
    assert_eq!(ours["run"]["loggers"][0]["version"], 0);
    assert_eq!(ours["generator"]["tool"], legacy["generator"]["tool"]);
    assert!(sidecar::written_by_ckpt(&ours));
    assert!(legacy.get("run").is_none());

    // Written, then rebuilt from the file and that sidecar (`convert-legacy --force`): what
    // the run saw keeps its rank and its values.
    let path = sidecar::yaml_path(&ckpt);
    sidecar::write_atomic(&path, &sidecar::render(&path, &ours), false).unwrap();
    let again = around_build(&ckpt, None);
    for k in ["metrics", "checkpointing", "training"] {
        assert_eq!(again[k], ours[k], "{k}");
    }
    assert_eq!(again["provenance"]["checkpointing.save_top_k"], "live");
    assert_eq!(again["exp_name"], "from_the_run");
    let removal = sidecar::remove_own(&ckpt).unwrap();
    assert_eq!(removal.removed, vec![path.clone()]);
    assert!(!path.exists());
}

/// A file saved again with the same bytes still matches the sidecar its previous save wrote:
/// the new save's observations win over the old sidecar's `live` values read back.
#[test]
fn a_second_save_of_the_same_bytes_gets_its_own_metrics() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("outputs/exp/checkpoints");
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("last.ckpt");
    write_lightning_checkpoint(&ckpt, &model_tensors(2, 64)).unwrap();
    let run = |loss: f64| -> LiveRun {
        serde_json::from_value(json!({
            "metrics": {"val_loss": loss},
            "monitor": "val_loss", "mode": "min", "save_top_k": 1, "save_last": true,
        }))
        .unwrap()
    };
    let first = around_build(&ckpt, Some(&run(0.5)));
    let path = sidecar::yaml_path(&ckpt);
    sidecar::write_atomic(&path, &sidecar::render(&path, &first), false).unwrap();
    let second = around_build(&ckpt, Some(&run(0.25)));
    assert_eq!(second["metrics"]["validation_loss"], 0.25, "{second:#}");
}
