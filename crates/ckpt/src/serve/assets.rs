//! The web UI's files, embedded in the binary: `cargo install` needs no Node, and the
//! server reads nothing from disk to serve them. They are built from `web/` by
//! `scripts/build-web` and committed under `crates/ckpt/assets/`.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// (name under `/assets/`, content type, bytes).
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/app.css"),
    ),
];

const INDEX: &[u8] = include_bytes!("../../assets/index.html");

/// `/` (and any page route the UI keeps in the URL's fragment): the single page.
pub async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

/// `/assets/NAME`: one of the embedded files, by exact name (nothing else is looked up).
pub async fn asset(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, ty, bytes)) => (
            [
                (header::CONTENT_TYPE, *ty),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => super::error(
            StatusCode::NOT_FOUND,
            format!("/assets/{name}: no such file"),
        ),
    }
}
