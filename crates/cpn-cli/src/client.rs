//! The HTTP client of the cpn API: builds URLs, attaches the bearer token, and turns
//! transport failures and `{"error": ...}` bodies into errors a person can act on.

use anyhow::{Context, Result, anyhow, bail};
use cpn_api_types::{ErrorBody, Page};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the token in use came from, to explain a 401.
#[derive(Debug, Clone)]
enum TokenSource {
    /// `--token` or `CPN_TOKEN`.
    Given,
    /// The admin token file of a local data dir.
    File(PathBuf),
    None,
}

pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    source: TokenSource,
}

/// A failure reported by the server, with its stable code and, for `invalid_field`, the
/// dotted path of the field.
#[derive(Debug)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub field: Option<String>,
    pub hint: Option<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.message, self.code)?;
        if let Some(field) = &self.field {
            write!(f, ", field {field}")?;
        }
        write!(f, ")")?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl Client {
    /// `token` is `--token`/`CPN_TOKEN`; without it the local admin token file is tried.
    /// `ca_file` is a CA to trust for https besides the system's; without it the local data
    /// dir's generated CA is trusted when it exists.
    pub fn new(server: &str, token: Option<String>, ca_file: Option<&Path>) -> Result<Client> {
        let base = Url::parse(server).with_context(|| format!("invalid server URL `{server}`"))?;
        match base.scheme() {
            "http" | "https" => {}
            other => bail!("invalid server URL `{server}`: unsupported scheme `{other}`"),
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            bail!("invalid server URL `{server}`: expected e.g. http://127.0.0.1:8080");
        }
        let (token, source) = match token.filter(|t| !t.trim().is_empty()) {
            Some(t) => (Some(t.trim().to_owned()), TokenSource::Given),
            None => admin_token_file(),
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            // Below the server's keep-alive limit, so a request never races its close.
            .pool_idle_timeout(Duration::from_secs(5))
            .user_agent(concat!("cpn/", env!("CARGO_PKG_VERSION")));
        if base.scheme() == "https" {
            for pem in ca_certificates(ca_file)? {
                builder = builder.add_root_certificate(pem);
            }
        }
        let http = builder.build().context("building the HTTP client")?;
        Ok(Client {
            http,
            base,
            token,
            source,
        })
    }

    /// The server URL as given, without a trailing slash, for messages.
    pub fn server(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    fn url(&self, path: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in Client::new: the base URL has a path")
            .pop_if_empty()
            .extend(path);
        url
    }

    pub async fn get(&self, path: &[&str], query: &[(&str, String)]) -> Result<Value> {
        self.send(Method::GET, path, query, None::<&()>, true).await
    }

    pub async fn post<B: Serialize + ?Sized>(&self, path: &[&str], body: &B) -> Result<Value> {
        self.send(Method::POST, path, &[], Some(body), true).await
    }

    /// A POST that never sends the token (logging in).
    pub async fn post_anonymous<B: Serialize + ?Sized>(
        &self,
        path: &[&str],
        body: &B,
    ) -> Result<Value> {
        self.send(Method::POST, path, &[], Some(body), false).await
    }

    /// A POST without a body (logging out).
    pub async fn post_empty(&self, path: &[&str]) -> Result<Value> {
        self.send(Method::POST, path, &[], None::<&()>, true).await
    }

    /// A POST without a body, with query parameters (`?reissue=true`).
    pub async fn post_query(&self, path: &[&str], query: &[(&str, String)]) -> Result<Value> {
        self.send(Method::POST, path, query, None::<&()>, true)
            .await
    }

    pub async fn put<B: Serialize + ?Sized>(&self, path: &[&str], body: &B) -> Result<Value> {
        self.send(Method::PUT, path, &[], Some(body), true).await
    }

    pub async fn patch<B: Serialize + ?Sized>(&self, path: &[&str], body: &B) -> Result<Value> {
        self.send(Method::PATCH, path, &[], Some(body), true).await
    }

    pub async fn delete(&self, path: &[&str]) -> Result<Value> {
        self.send(Method::DELETE, path, &[], None::<&()>, true)
            .await
    }

    /// A GET whose answer is read as it arrives (log text, Server-Sent Events) rather than
    /// as JSON. No overall time limit applies; a non-2xx answer becomes the usual error.
    pub async fn get_stream(
        &self,
        path: &[&str],
        query: &[(&str, String)],
        headers: &[(&str, String)],
    ) -> Result<reqwest::Response> {
        let url = self.url(path);
        let mut req = self
            .http
            .get(url.clone())
            // Streams may stay open for as long as a task runs.
            .timeout(Duration::from_secs(365 * 24 * 3600));
        if !query.is_empty() {
            req = req.query(query);
        }
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        tracing::debug!(%url, "streaming request");
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        Err(self.api_error(status, &bytes, true).into())
    }

    /// Turns a failure while reading a streamed body into an error naming the server.
    pub fn stream_error(&self, e: reqwest::Error) -> anyhow::Error {
        self.transport_error(e)
    }

    /// Lists a collection. Follows `next_cursor` while `all` is set; returns the items and
    /// the cursor of the page after the last one fetched, if any. A bare JSON array is
    /// accepted as a single last page.
    pub async fn list(
        &self,
        path: &[&str],
        query: Vec<(&str, String)>,
        mut cursor: Option<String>,
        all: bool,
    ) -> Result<(Vec<Value>, Option<String>)> {
        let mut items = Vec::new();
        loop {
            let mut q = query.clone();
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let value = self.get(path, &q).await?;
            let page: Page<Value> = match value {
                Value::Array(items) => Page {
                    items,
                    next_cursor: None,
                },
                other => decode(&other, "list page")?,
            };
            items.extend(page.items);
            match page.next_cursor {
                Some(next) if all => {
                    if cursor.as_deref() == Some(next.as_str()) {
                        bail!("the server returned the same page cursor twice (`{next}`)");
                    }
                    cursor = Some(next);
                }
                next => return Ok((items, next)),
            }
        }
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
        auth: bool,
    ) -> Result<Value> {
        let url = self.url(path);
        let mut req = self.http.request(method.clone(), url.clone());
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        if let (true, Some(token)) = (auth, &self.token) {
            req = req.bearer_auth(token);
        }
        tracing::debug!(%method, %url, "request");
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        tracing::debug!(%status, len = bytes.len(), "response");
        if status.is_success() {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).with_context(|| {
                format!("{method} {url}: the server answered {status} with a body that is not JSON")
            });
        }
        Err(self.api_error(status, &bytes, auth).into())
    }

    fn transport_error(&self, e: reqwest::Error) -> anyhow::Error {
        let server = self.server();
        let cause = root_cause(&e);
        if e.is_connect() && (cause.contains("certificate") || cause.contains("UnknownIssuer")) {
            anyhow!(
                "the cpn server at {server} has a certificate this client does not trust: \
                 pass the server's CA with --ca-file (DATA_DIR/tls/ca.pem of `cpn serve`)\ncause: {cause}"
            )
        } else if e.is_connect() {
            anyhow!(
                "cannot reach cpn server at {server}: is `cpn serve` running? \
                 (set --server or CPN_SERVER)\ncause: {cause}"
            )
        } else if e.is_timeout() {
            anyhow!("the cpn server at {server} did not answer in time ({cause})")
        } else {
            anyhow!("talking to the cpn server at {server} failed: {cause}")
        }
    }

    fn api_error(&self, status: StatusCode, body: &[u8], auth: bool) -> ApiError {
        let mut err = match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => ApiError {
                code: b.error.code.as_str().to_owned(),
                message: b.error.message,
                field: b.error.field,
                hint: None,
            },
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let message = if text.is_empty() {
                    status
                        .canonical_reason()
                        .unwrap_or("request failed")
                        .to_owned()
                } else {
                    text.chars().take(300).collect()
                };
                ApiError {
                    code: format!("HTTP {}", status.as_u16()),
                    message,
                    field: None,
                    hint: None,
                }
            }
        };
        err.hint = match (status, &self.source) {
            (StatusCode::UNAUTHORIZED, _) if !auth => None,
            (StatusCode::UNAUTHORIZED, TokenSource::None) => Some(
                "no token was sent: run `cpn login`, or pass --token / CPN_TOKEN \
                 (the server writes an admin token to DATA_DIR/admin.token)"
                    .to_owned(),
            ),
            (StatusCode::UNAUTHORIZED, TokenSource::Given) => Some(
                "the token from --token / CPN_TOKEN was refused (expired or revoked?): \
                 run `cpn login` for a new one"
                    .to_owned(),
            ),
            (StatusCode::UNAUTHORIZED, TokenSource::File(path)) => Some(format!(
                "the token in {} was refused (is it from another server's data dir?): \
                 run `cpn login`, or pass --token / CPN_TOKEN",
                path.display()
            )),
            (StatusCode::PRECONDITION_REQUIRED, _) => Some(
                "send the `generation` you read: it is in the object printed by \
                 `cpn <kind> get NAME -o yaml`"
                    .to_owned(),
            ),
            _ => None,
        };
        err
    }
}

fn local_data_dir() -> PathBuf {
    std::env::var_os("CPN_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("./cpn-data"))
}

/// `--ca-file`, or else the CA `cpn serve` generated in the local data dir, if any.
fn ca_certificates(ca_file: Option<&Path>) -> Result<Vec<reqwest::Certificate>> {
    let (path, given) = match ca_file {
        Some(p) => (p.to_path_buf(), true),
        None => (local_data_dir().join("tls").join("ca.pem"), false),
    };
    let pem = match std::fs::read(&path) {
        Ok(pem) => pem,
        Err(_) if !given => return Ok(Vec::new()),
        Err(e) => bail!("--ca-file {}: {e}", path.display()),
    };
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("{}: not PEM certificates", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no certificate in it", path.display());
    }
    Ok(certs)
}

/// The admin token written by `cpn serve` into its data dir, when readable.
fn admin_token_file() -> (Option<String>, TokenSource) {
    let path = local_data_dir().join("admin.token");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            tracing::debug!(path = %path.display(), "using the admin token file");
            (Some(text.trim().to_owned()), TokenSource::File(path))
        }
        _ => (None, TokenSource::None),
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Decodes a server answer into its wire type; a mismatch means client and server disagree
/// on the API.
pub fn decode<T: DeserializeOwned>(value: &Value, what: &str) -> Result<T> {
    T::deserialize(value).with_context(|| {
        format!(
            "cannot read the {what} the server sent (is this cpn {} too old or too new for \
             the server?)",
            env!("CARGO_PKG_VERSION")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_segments_and_keep_prefixes() {
        let c = Client::new("http://h:1/prefix/", Some("t".into()), None).unwrap();
        assert_eq!(
            c.url(&["api", "v1", "sites", "a b/c"]).as_str(),
            "http://h:1/prefix/api/v1/sites/a%20b%2Fc"
        );
        let c = Client::new("http://h:1", Some("t".into()), None).unwrap();
        assert_eq!(c.url(&["api", "v1"]).as_str(), "http://h:1/api/v1");
        assert_eq!(c.server(), "http://h:1");
    }

    #[test]
    fn bad_server_urls_are_refused() {
        assert!(Client::new("127.0.0.1:8080", None, None).is_err());
        assert!(Client::new("ftp://x", None, None).is_err());
        assert!(Client::new("https://x", None, Some(Path::new("/no/such/ca.pem"))).is_err());
        assert!(Client::new("https://x", None, None).is_ok());
    }

    #[test]
    fn api_errors_read_well() {
        let e = ApiError {
            code: "invalid_field".into(),
            message: "latitude must be between -90 and 90".into(),
            field: Some("spec.location.lat".into()),
            hint: None,
        };
        assert_eq!(
            e.to_string(),
            "latitude must be between -90 and 90 (invalid_field, field spec.location.lat)"
        );
    }
}
