//! The web console (issue #7): an operator's, supplier's and user's view of the federation,
//! as static pages and ES modules that talk to the same `/api/v1` as the CLI does.
//!
//! Nothing here knows about the domain: the console is data-driven from the API, and this
//! crate only serves `assets/` (embedded at compile time, so a release binary needs no
//! files beside it). Setting `CPN_WEB_DIR` to a folder serves that folder instead, read on
//! every request, so the console can be edited without rebuilding the server.
//!
//! Routes: `/` is the console's single page; `/assets/{path}` are its scripts, styles and
//! the vendored browser libraries (with their licences under `assets/vendor/LICENSES`).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// Where the console's pages may load from: only this server, so a compromised API value
/// rendered into a page cannot pull in a script from elsewhere. ECharts styles inline.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The console's routes, to be merged into the API router (no state needed).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{*path}", get(asset))
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers).await
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers).await
}

async fn serve(path: &str, headers: &HeaderMap) -> Response {
    if path.split('/').any(|part| part == ".." || part.is_empty()) {
        return not_found(path);
    }
    let (body, etag) = match std::env::var_os("CPN_WEB_DIR") {
        Some(dir) => match tokio::fs::read(std::path::Path::new(&dir).join(path)).await {
            Ok(bytes) => (bytes, None),
            Err(_) => return not_found(path),
        },
        None => match Assets::get(path) {
            Some(file) => (
                file.data.into_owned(),
                // Weak: the same file goes out gzipped or not, byte for byte different.
                Some(format!(
                    "W/\"{}\"",
                    hex::encode(&file.metadata.sha256_hash()[..16])
                )),
            ),
            None => return not_found(path),
        },
    };
    if let Some(etag) = &etag
        && headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type(path)),
            // Revalidate every time: the ETag makes that cheap, and an upgraded server never
            // runs an old script against its new API.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    if let Some(etag) = etag
        && let Ok(v) = HeaderValue::from_str(&etag)
    {
        h.insert(header::ETAG, v);
    }
    response
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn not_found(path: &str) -> Response {
    let body = format!(
        r#"{{"error":{{"code":"not_found","message":"no console asset {}"}}}}"#,
        path.escape_default()
    );
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Every embedded asset's path, for tests and the `tidy` check that all are licensed.
pub fn asset_paths() -> impl Iterator<Item = String> {
    Assets::iter().map(|p| p.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_page_and_its_modules_are_embedded() {
        let paths: Vec<String> = asset_paths().collect();
        for wanted in [
            "index.html",
            "js/app.js",
            "js/api.js",
            "js/i18n.js",
            "app.css",
        ] {
            assert!(paths.iter().any(|p| p == wanted), "{wanted} not embedded");
        }
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("js/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("vendor/land-50m.json"), "application/json");
        assert_eq!(content_type("x"), "application/octet-stream");
    }
}
