//! Carrying out a plan: re-check each file, delete exactly what was planned.

use std::path::Path;

use crate::probe::mtime_ns;
use crate::{Action, Decision, Executed, Plan};

/// Why a planned deletion must not happen now, or `Ok(true)` when the file is already gone.
fn recheck(d: &Decision, path: &Path) -> Result<bool, String> {
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(format!("cannot stat: {e}")),
    };
    if m.file_type().is_symlink() {
        return Err("now a symlink".into());
    }
    if !m.is_file() {
        return Err("no longer a regular file".into());
    }
    if m.len() != d.size_at_plan || mtime_ns(&m) != d.mtime_ns_at_plan {
        return Err(format!(
            "changed since planning (size {} -> {})",
            d.size_at_plan,
            m.len()
        ));
    }
    if let Some(dir) = &d.dir_at_plan {
        let now = path.parent().and_then(|p| {
            let p = if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            };
            std::fs::canonicalize(p).ok()
        });
        if now.as_ref() != Some(dir) {
            return Err("its folder changed since planning".into());
        }
    }
    Ok(false)
}

/// Carry out the deletions of a plan: for each Delete decision, re-stat it (without following
/// symlinks) and skip it, with the reason, if it is now a symlink, not a regular file, or its
/// size or mtime or folder differ from the plan; else remove the checkpoint file, then its
/// sidecars (regular files only). Nothing else is ever removed. Re-running after an
/// interruption converges: a checkpoint already gone is skipped as "already gone" and its
/// remaining sidecars are removed.
pub fn execute(plan: &Plan) -> Executed {
    let mut out = Executed::default();
    for d in plan.decisions.iter().filter(|d| d.action == Action::Delete) {
        let path = Path::new(&d.path);
        match recheck(d, path) {
            Err(why) => {
                out.skipped.push((d.path.clone(), why));
                continue;
            }
            Ok(true) => out.skipped.push((d.path.clone(), "already gone".into())),
            Ok(false) => match std::fs::remove_file(path) {
                Ok(()) => {
                    out.deleted.push(d.path.clone());
                    out.bytes_freed += d.size_at_plan;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    out.skipped.push((d.path.clone(), "already gone".into()));
                }
                Err(e) => {
                    out.skipped
                        .push((d.path.clone(), format!("cannot delete: {e}")));
                    continue;
                }
            },
        }
        for sc in &d.sidecars {
            match std::fs::symlink_metadata(sc) {
                Ok(m) if m.file_type().is_file() => match std::fs::remove_file(sc) {
                    Ok(()) => out.deleted.push(sc.clone()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => out
                        .skipped
                        .push((sc.clone(), format!("cannot delete: {e}"))),
                },
                Ok(_) => out
                    .skipped
                    .push((sc.clone(), "sidecar is no longer a regular file".into())),
                Err(_) => {}
            }
        }
    }
    out
}
