//! Write an outputs tree of many small Lightning-shaped checkpoints, for catalog benchmarks:
//!
//!     cargo run --release -p ckpt-torch --example make_tree -- DIR COUNT [SIZE_KB] [PER_EXPERIMENT]
//!
//! `DIR/exp_0000/checkpoints/epoch=NN-step=MMMM.ckpt` …, PER_EXPERIMENT (default 100)
//! checkpoints per experiment, each about SIZE_KB (default 64) with 8 weight tensors. The first
//! file is written with the torch-zip writer; the rest are copies (the pickle is the same; only
//! names differ), which is what makes 10,000 files take seconds.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: make_tree DIR COUNT [SIZE_KB] [PER_EXPERIMENT]";
    let dir = PathBuf::from(args.next().ok_or(usage)?);
    let count: usize = args.next().ok_or(usage)?.parse()?;
    let kb: u64 = match args.next() {
        Some(s) => s.parse()?,
        None => 64,
    };
    let per: usize = match args.next() {
        Some(s) => s.parse()?,
        None => 100,
    };
    std::fs::create_dir_all(&dir)?;
    let proto = dir.join(".prototype.ckpt");
    let tensors = ckpt_test_support::model_tensors(8, (kb << 10) / 3);
    ckpt_test_support::write_lightning_checkpoint(&proto, &tensors)?;
    for i in 0..count {
        let exp = dir
            .join(format!("exp_{:04}", i / per.max(1)))
            .join("checkpoints");
        if i % per.max(1) == 0 {
            std::fs::create_dir_all(&exp)?;
        }
        let n = i % per.max(1);
        let f = exp.join(format!("epoch={n:02}-step={}.ckpt", (n + 1) * 100));
        std::fs::copy(&proto, &f)?;
    }
    std::fs::remove_file(&proto)?;
    eprintln!(
        "wrote {count} checkpoints of ~{kb} KB under {}",
        dir.display()
    );
    Ok(())
}
