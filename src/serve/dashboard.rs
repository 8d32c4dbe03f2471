//! The web dashboard at `/`: plain HTML, CSS and JavaScript embedded in the binary (no
//! build step, no CDN, works offline). It polls the read API with `If-None-Match`.
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

pub fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|h: HeaderMap| async move { asset(&h, INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/assets/app.js",
            get(|h: HeaderMap| async move { asset(&h, APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/style.css",
            get(|h: HeaderMap| async move { asset(&h, STYLE_CSS, "text/css; charset=utf-8") }),
        )
}

/// Assets change only with the binary; `no-cache` + ETag revalidates cheaply.
fn asset(headers: &HeaderMap, body: &'static str, content_type: &'static str) -> Response {
    let etag = format!(
        "\"{}\"",
        &hex::encode(Sha256::digest(body.as_bytes()))[..32]
    );
    let common = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, "no-cache".to_string()),
    ];
    if super::api::matches_etag(headers, &etag) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (common, [(header::CONTENT_TYPE, content_type)], body).into_response()
}
