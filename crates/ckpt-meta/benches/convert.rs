//! What `convert-legacy` does per checkpoint — open it (zip directory + pickle), read the run's
//! Hydra config, build the sidecar with provenance, render YAML — on a 3 MB and a 500 MB
//! Lightning-shaped checkpoint. The cost must not depend on the file size.
//!
//!     cargo bench -p ckpt-meta --bench convert      (CKPT_BENCH_BIG_MB=500 by default)

use std::hint::black_box;
use std::path::Path;

use ckpt_meta::sidecar;
use ckpt_meta::sources::{Around, DirCache};
use ckpt_meta::{Layout, build_sidecar};
use ckpt_test_support::{model_tensors, write_lightning_checkpoint};
use ckpt_torch::Checkpoint;
use criterion::{Criterion, criterion_group, criterion_main};

fn convert(ckpt: &Path, outputs: &Path) -> usize {
    let ck = match Checkpoint::open(ckpt) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let layout = Layout::new(ckpt, Some(outputs));
    let dirs = DirCache::default();
    let is_file = |p: &Path| p.is_file();
    let around = Around {
        dirs: &dirs,
        root: outputs,
        is_file: &is_file,
    };
    let (v, _) = build_sidecar(&ck, &layout, &around);
    sidecar::render(&sidecar::yaml_path(ckpt), &v).len()
}

fn bench(c: &mut Criterion) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let big_mb: u64 = std::env::var("CKPT_BENCH_BIG_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let outputs = dir.path().join("outputs");
    let run = outputs.join("exp");
    let ckdir = run.join("checkpoints");
    let hydra = run.join(".hydra");
    for d in [&ckdir, &hydra] {
        if let Err(e) = std::fs::create_dir_all(d) {
            panic!("{e}");
        }
    }
    let cfg = "exp_name: exp\nmodel:\n  architecture: dbnet\n  component_overrides:\n    encoder: {model_name: resnet18, pretrained: true, frozen: false}\ncheckpoint:\n  save_top_k: 2\n";
    if let Err(e) = std::fs::write(hydra.join("config.yaml"), cfg) {
        panic!("{e}");
    }
    let small = ckdir.join("small.ckpt");
    let big = ckdir.join("big.ckpt");
    for (p, mb) in [(&small, 3u64), (&big, big_mb)] {
        if let Err(e) = write_lightning_checkpoint(p, &model_tensors(60, (mb << 20) / 3)) {
            panic!("{e}");
        }
    }
    let mut g = c.benchmark_group("convert_legacy_one");
    g.bench_function("lightning_3MB", |b| {
        b.iter(|| black_box(convert(&small, &outputs)))
    });
    g.bench_function(format!("lightning_{big_mb}MB"), |b| {
        b.iter(|| black_box(convert(&big, &outputs)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
