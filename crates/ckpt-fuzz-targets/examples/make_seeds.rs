//! Seeds for the fuzz targets that read structured inputs, built from the project's own
//! files (fixtures/, examples/) by copying and joining bytes, never by unpickling anything:
//!
//! ```sh
//! cargo run -p ckpt-fuzz-targets --example make_seeds -- /tmp/seeds
//! ```
//!
//! writes `/tmp/seeds/<target>/seed-<what>` for `safetensors_header`, `dcp_convert`,
//! `config_resolve`, `sidecar` and `catalog_tree` (`pickle_decode` and `torch_open` were
//! seeded by hand, see fuzz/README.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use ckpt_fuzz_targets::join_files;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every file under `dir` (relative to the repository) whose name ends with `suffix`.
fn files_ending(dir: &str, suffix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root().join(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                let rel = p
                    .strip_prefix(root())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push(rel.trim_start_matches("../").to_owned());
            }
        }
    }
    out.sort();
    out
}

struct Out(PathBuf);

impl Out {
    fn put(&self, target: &str, what: &str, bytes: &[u8]) {
        let dir = self.0.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        let name: String = what
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }
}

/// Hand-written configs for what the fixtures lack: every interpolation form the resolver
/// knows (absolute, relative, typed, in text, resolvers, cycles, chains, missing keys).
const CONFIGS: &[&str] = &[
    "a: 1\nb: ${a}\nc: x${a}y${b}\n",
    "model:\n  dim: 8\n  heads: ${.dim}\n  ff: ${..trainer.ff}\ntrainer:\n  ff: 4\n",
    "a: ${b}\nb: ${a}\n",
    "a: ${oc.env:HOME}\nb: ${now:%Y-%m-%d}\nc: ${missing.key}\n",
    "l: [1, 2, ${a}]\na: {x: 1}\nb: ${l.2.x}\nc: ${l.0}\n",
    "a0: x\na1: ${a0}\na2: ${a1}\na3: ${a2}\na4: ${a3}\na5: ${a4}\n",
    "a: '${'\nb: ${}\nc: ${a}}\nd: $${a}\ne: ${a${b}}\n",
    "{\"a\": 1, \"b\": \"${a}\", \"c\": {\"d\": \"${..a}\"}}",
    "---\n- ${0}\n- x\n",
    "a: &x {b: 1}\nc: *x\nd: !!str 5\ne: 0x10\nf: .inf\ng: ~\nh: 2026-01-01\n",
];

/// A Lightning `CSVLogger` metrics file.
const METRICS_CSV: &str = "epoch,step,train_loss,val_loss,val/hmean\n\
    0,4,0.91,,\n0,4,,0.80,0.71\n1,9,0.62,,\n1,9,,0.50,0.77\n";

fn main() {
    let out = Out(PathBuf::from(
        std::env::args().nth(1).expect("usage: make_seeds OUT_DIR"),
    ));

    // safetensors_header: the header, a NUL, the tensor data (the target writes the length).
    for f in files_ending("fixtures", ".safetensors") {
        let b = read(&f);
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        let mut seed = b[8..8 + n].to_vec();
        seed.push(0);
        seed.extend_from_slice(&b[8 + n..]);
        out.put("safetensors_header", &f, &seed);
    }
    out.put(
        "safetensors_header",
        "small",
        b"{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}\0\0\0\x80?\0\0\0@",
    );

    // dcp_convert: `.metadata`, then each rank's `.distcp`.
    for name in ["dtensor_mixed", "fsdp2_bf16", "fsdp2_dim0"] {
        let d = format!("fixtures/convert/dcp/{name}");
        let meta = read(&format!("{d}/.metadata"));
        let r0 = read(&format!("{d}/__0_0.distcp"));
        let r1 = read(&format!("{d}/__1_0.distcp"));
        out.put("dcp_convert", name, &join_files(&[&meta, &r0, &r1]));
    }

    // config_resolve: every config in the fixtures, plus the hand-written ones.
    let mut configs = files_ending("fixtures", "config.yaml");
    configs.extend(files_ending("fixtures", "hydra.yaml"));
    configs.extend(files_ending("fixtures", "overrides.yaml"));
    configs.extend(files_ending("fixtures/identity", ".yaml"));
    configs.extend(files_ending("fixtures/identity", "hparams.json"));
    configs.extend(files_ending("fixtures/convert/base_model", ".json"));
    configs.sort();
    configs.dedup();
    for f in &configs {
        out.put("config_resolve", f, &read(f));
    }
    for (i, c) in CONFIGS.iter().enumerate() {
        out.put("config_resolve", &format!("handwritten-{i}"), c.as_bytes());
    }

    // sidecar: every sidecar in the fixtures, good and bad.
    let mut sidecars = files_ending("fixtures", ".metadata.yaml");
    sidecars.extend(files_ending("fixtures", ".metadata.json"));
    for f in &sidecars {
        out.put("sidecar", f, &read(f));
    }

    // catalog_tree: checkpoint, hparams.yaml, .hydra/config.yaml, metrics.csv, sidecar.
    let sidecar = read(
        "fixtures/outputs/existing_sidecar/checkpoints/epoch=00-step=2-hmean=0.7172.metadata.yaml",
    );
    let hparams = read("fixtures/identity/hparams_reordered.yaml");
    let trees: [(&str, &str, &str, bool); 4] = [
        (
            "hparams_dict",
            "fixtures/outputs/hparams_dict/checkpoints/last.ckpt",
            "fixtures/outputs/hparams_dict/.hydra/config.yaml",
            true,
        ),
        (
            "filename_only",
            "fixtures/outputs/filename_only/epoch=02-step=6-hmean=0.7718.ckpt",
            "fixtures/outputs/mixed_sources/.hydra/config.yaml",
            false,
        ),
        (
            "nested_model",
            "fixtures/outputs/nested_model/epoch=5-step=500.ckpt",
            "fixtures/outputs/hydra_only/.hydra/config.yaml",
            true,
        ),
        (
            "existing_sidecar",
            "fixtures/outputs/existing_sidecar/checkpoints/epoch=00-step=2-hmean=0.7172.ckpt",
            "fixtures/outputs/dictconfig/.hydra/config.yaml",
            true,
        ),
    ];
    for (name, ckpt, config, with_sidecar) in trees {
        let ck = read(ckpt);
        let cfg = read(config);
        let mut files: Vec<&[u8]> = vec![&ck, &hparams, &cfg, METRICS_CSV.as_bytes()];
        if with_sidecar {
            files.push(&sidecar);
        }
        out.put("catalog_tree", name, &join_files(&files));
    }
    // Only a checkpoint, and a checkpoint with only Lightning's files.
    let ck = read("fixtures/outputs/broken/epoch=01-step=4-hmean=0.7445.ckpt");
    out.put("catalog_tree", "broken-alone", &ck);
    let ck = read("fixtures/outputs/filename_only/epoch=3-step=400-v1.ckpt");
    out.put(
        "catalog_tree",
        "lightning-only",
        &join_files(&[&ck, &hparams, b"", METRICS_CSV.as_bytes()]),
    );
}
