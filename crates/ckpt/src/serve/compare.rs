//! `GET /api/compare?path=A&path=B…`: checkpoints side by side, from the commands that
//! print the same: `ckpt compare --all`'s rows (every leaf of the entries, `differs` marking
//! those whose values are not all equal) and `ckpt diff` of the first against each other one
//! (tensors added, removed, reshaped, retyped; each side's identity).

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ckpt_identity::HashOptions;
use serde_json::{Value, json};

use super::detail::{Fail, Pairs, heavy, lookup, params};
use super::{App, current};

/// At most this many checkpoints in one comparison.
const MAX_PATHS: usize = 16;

pub(super) async fn compare(State(app): State<Arc<App>>, pairs: Pairs) -> Result<Response, Fail> {
    let p = params(pairs, &["path"])?;
    if p.len() < 2 || p.len() > MAX_PATHS {
        return Err(Fail(
            StatusCode::BAD_REQUEST,
            format!("path=: give 2 to {MAX_PATHS} checkpoints (got {})", p.len()),
        ));
    }
    let snap = current(&app);
    let paths = p
        .iter()
        .map(|(_, given)| lookup(&app, &snap, given).map(|e| PathBuf::from(e.path)))
        .collect::<Result<Vec<_>, _>>()?;
    let cache = app.opts.cache.clone();
    let v = heavy(&app, move || comparison(&paths, cache))
        .await?
        .map_err(|e| Fail(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    Ok(Json(v).into_response())
}

/// `{"paths", "labels", "fields", "tensors", "identity"}` (docs/serve-api.md).
fn comparison(paths: &[PathBuf], cache: Option<PathBuf>) -> Result<Value, String> {
    // Tensor rows are taken from the diffs below, which list every one: none asked here.
    let c = crate::compare::comparison(paths, cache, true, 0).map_err(|e| crate::one_line(&e))?;
    let (first, others) = match paths.split_first() {
        Some(x) => x,
        None => return Err("no checkpoints to compare".into()),
    };
    let shown = |p: &PathBuf| p.display().to_string();
    let mut tensors = json!({"added": [], "removed": [], "reshaped": [], "retyped": []});
    // The first path's identity from any diff that could gather it, else the first error.
    let mut first_identity: Option<Value> = None;
    let mut identity: Vec<Value> = Vec::with_capacity(paths.len());
    for other in others {
        match crate::identity::diff_report(first, other, &HashOptions::default()) {
            Ok(r) => {
                first_identity.get_or_insert_with(|| {
                    json!({"path": r.a.path, "hash": r.a.identity.hash,
                        "components": r.a.identity.components})
                });
                identity.push(json!({"path": r.b.path, "hash": r.b.identity.hash,
                    "components": r.b.identity.components}));
                let a = &r.diff.architecture;
                let mut push = |key: &str, v: Value| {
                    if let Some(list) = tensors.get_mut(key).and_then(Value::as_array_mut) {
                        list.push(v);
                    }
                };
                for (name, dtype, shape) in &a.added {
                    push(
                        "added",
                        json!({"path": r.b.path, "name": name, "dtype": dtype, "shape": shape}),
                    );
                }
                for (name, dtype, shape) in &a.removed {
                    push(
                        "removed",
                        json!({"path": r.b.path, "name": name, "dtype": dtype, "shape": shape}),
                    );
                }
                for (name, from, to) in &a.reshaped {
                    push(
                        "reshaped",
                        json!({"path": r.b.path, "name": name, "from": from, "to": to}),
                    );
                }
                for (name, from, to) in &a.retyped {
                    push(
                        "retyped",
                        json!({"path": r.b.path, "name": name, "from": from, "to": to}),
                    );
                }
            }
            Err(e) => {
                identity.push(json!({"path": shown(other), "error": crate::one_line(&e)}));
            }
        }
    }
    let first_identity = match first_identity {
        Some(v) => v,
        // Every diff failed: the first path's own reason, as `ckpt hash` gives it.
        None => match crate::identity::hash_report(first, &HashOptions::default()) {
            Ok(r) => json!({"path": shown(first), "hash": r.hash, "components": r.components}),
            Err(e) => json!({"path": shown(first), "error": crate::one_line(&e)}),
        },
    };
    identity.insert(0, first_identity);
    Ok(json!({
        "paths": c.checkpoints.iter().map(|x| x.path.clone()).collect::<Vec<_>>(),
        "labels": c.checkpoints.iter().map(|x| x.label.clone()).collect::<Vec<_>>(),
        "fields": c.rows,
        "tensors": tensors,
        "identity": identity,
    }))
}
