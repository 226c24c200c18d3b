//! `ckpt validate`: every checkpoint's sidecars judged (valid, invalid with field paths, stale,
//! missing). `--format json` is a list of [`SidecarCheck`]s (`ckpt schema validate`).

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::Result;
use ckpt_meta::check::{SidecarCheck, SidecarProblem, SidecarStatus, check_sidecars};

use crate::Outcome;
use crate::cli::{OutputFormat, ValidateArgs};

pub fn run(a: &ValidateArgs) -> Result<Outcome> {
    let (files, _) = crate::meta::discover(&a.target)?;
    let verdicts = ckpt_catalog::par::map(&files, |f| {
        ckpt_torch::bug::catch(|| check_sidecars(f)).unwrap_or_else(|panic| {
            crate::report_bug("validate", f, &panic);
            SidecarCheck {
                checkpoint: f.display().to_string(),
                sidecar: None,
                status: SidecarStatus::Invalid,
                problems: vec![SidecarProblem::whole(
                    f.display().to_string(),
                    panic.to_string(),
                )],
            }
        })
    });
    let all_valid = verdicts.iter().all(|v| v.status == SidecarStatus::Valid);
    match a.format {
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&verdicts)?;
            s.push('\n');
            crate::print_stdout(&s)?;
        }
        OutputFormat::Table => {
            let mut out = String::new();
            let mut counts: HashMap<SidecarStatus, usize> = HashMap::new();
            for v in &verdicts {
                *counts.entry(v.status).or_default() += 1;
                let _ = writeln!(out, "{:<8} {}", v.status.as_str(), v.checkpoint);
                for p in &v.problems {
                    if p.path().is_empty() {
                        let _ = writeln!(out, "         {}", p.message());
                    } else {
                        let _ =
                            writeln!(out, "         {}: {}: {}", p.file(), p.path(), p.message());
                    }
                }
            }
            let get = |k: SidecarStatus| counts.get(&k).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "{} checkpoint(s): {} valid, {} invalid, {} stale, {} missing",
                verdicts.len(),
                get(SidecarStatus::Valid),
                get(SidecarStatus::Invalid),
                get(SidecarStatus::Stale),
                get(SidecarStatus::Missing)
            );
            crate::print_stdout(&out)?;
        }
    }
    Ok(if all_valid {
        Outcome::Ok
    } else {
        Outcome::Findings
    })
}
