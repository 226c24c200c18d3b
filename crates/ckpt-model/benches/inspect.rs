//! `inspect` must cost the same on a 500 MB checkpoint as on a 3 MB one: it reads the zip
//! directory, the pickle and two 0-d scores, never the tensor data.
//!
//!     cargo bench -p ckpt-model --bench inspect
//!
//! Both files have the same tensors (same pickle), only the tensor sizes differ. Set
//! `CKPT_BENCH_BIG_MB` to change the big file's size (default 500).

use std::hint::black_box;
use std::path::Path;

use ckpt_model::Summarize;
use ckpt_test_support::{model_tensors, write_lightning_checkpoint};
use ckpt_torch::Checkpoint;
use criterion::{Criterion, criterion_group, criterion_main};

fn inspect(path: &Path) -> usize {
    match Checkpoint::open(path) {
        Ok(ck) => {
            let s = ck.summary();
            s.state_dicts.len() + s.callbacks.len()
        }
        Err(e) => panic!("{e}"),
    }
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
    let small = dir.path().join("small.ckpt");
    let big = dir.path().join("big.ckpt");
    for (p, mb) in [(&small, 3u64), (&big, big_mb)] {
        let tensors = model_tensors(60, (mb << 20) / 3);
        if let Err(e) = write_lightning_checkpoint(p, &tensors) {
            panic!("writing {}: {e}", p.display());
        }
    }
    let mut g = c.benchmark_group("inspect");
    g.bench_function("lightning_3MB", |b| b.iter(|| black_box(inspect(&small))));
    g.bench_function(format!("lightning_{big_mb}MB"), |b| {
        b.iter(|| black_box(inspect(&big)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
