//! Tables people can read (issue 11): fitted to `COLUMNS`, names cut in the middle, `--wide`,
//! `--columns` picking any field, through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::ckpt;

fn table(args: &[&str], columns: Option<&str>) -> (Option<i32>, String, String) {
    let mut c = ckpt();
    c.args(["catalog", "--no-cache"]).args(args);
    if let Some(w) = columns {
        c.env("COLUMNS", w);
    }
    let o = c.output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The part of each line the width applies to (the trailing flags are free text).
fn body(line: &str) -> &str {
    line.trim_end_matches(" best")
        .trim_end_matches(" last")
        .trim_end()
}

#[test]
fn a_narrow_terminal_cuts_the_middle_of_names_never_numbers() {
    let (code, out, _) = table(&["examples"], Some("90"));
    assert_eq!(code, Some(0));
    for line in out.lines().filter(|l| !l.ends_with("checkpoint(s)")) {
        assert!(body(line).chars().count() <= 90, "{line:?}\n{out}");
    }
    // Names lose their middle; scores and headers are whole.
    assert!(out.contains('…'), "{out}");
    assert!(out.contains("val/hmean=0.7718"), "{out}");
    assert!(out.starts_with("EXPERIMENT"), "{out}");
    let (_, wide, _) = table(&["examples", "--wide"], Some("90"));
    assert!(!wide.contains('…'), "{wide}");
    assert!(wide.contains("epoch=02-step=6-hmean=0.7718.ckpt"), "{wide}");
    // A pipe without COLUMNS gets the whole names.
    let (_, piped, _) = table(&["examples"], None);
    assert!(!piped.contains('…'), "{piped}");
}

#[test]
fn columns_pick_any_field_and_a_typo_is_named() {
    let (code, out, _) = table(
        &[
            "examples/lightning",
            "--columns",
            "checkpoint,epoch,metrics.val/hmean,hparams.optimizer.lr,model.encoder.model_name",
        ],
        None,
    );
    assert_eq!(code, Some(0));
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        [
            "CHECKPOINT",
            "EPOCH",
            "METRICS.VAL/HMEAN",
            "HPARAMS.OPTIMIZER.LR",
            "MODEL.ENCODER.MODEL_NAME"
        ]
    );
    let row = lines
        .find(|l| l.starts_with("epoch=02"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>();
    assert_eq!(
        row,
        [
            "epoch=02-step=6-hmean=0.7718.ckpt",
            "2",
            "0.7718",
            "0.001",
            "mobilenetv3_small_050"
        ]
    );
    let (code, _, err) = table(&["examples", "--columns", "epoch,hparmas.lr"], None);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--columns \"hparmas.lr\": no checkpoint has that field"),
        "{err}"
    );
}
