//! A minimal HTTP/1.1 client for slurmrestd: one hyper connection per request, over a unix
//! socket (`unix:/path`) or TCP (`http://host:port`).

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};

use crate::SlurmError;

/// Where slurmrestd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket path.
    Unix(String),
    /// `host:port` of an `http://` URL, plus an optional path prefix (no trailing `/`).
    Tcp {
        /// `host:port`.
        authority: String,
        /// Path prefix before `/slurm/...`.
        prefix: String,
    },
}

impl Endpoint {
    /// Parses `unix:/path` or `http://host[:port][/prefix]`.
    pub fn parse(url: &str) -> Result<Endpoint, SlurmError> {
        if let Some(path) = url.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(SlurmError::Config(format!(
                    "rest_url {url:?} has no socket path"
                )));
            }
            return Ok(Endpoint::Unix(path.to_string()));
        }
        if let Some(rest) = url.strip_prefix("http://") {
            let (authority, prefix) = match rest.find('/') {
                Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
                None => (rest, ""),
            };
            if authority.is_empty() {
                return Err(SlurmError::Config(format!("rest_url {url:?} has no host")));
            }
            let authority = if authority.contains(':') {
                authority.to_string()
            } else {
                format!("{authority}:80")
            };
            return Ok(Endpoint::Tcp {
                authority,
                prefix: prefix.to_string(),
            });
        }
        Err(SlurmError::Config(format!(
            "rest_url {url:?} must start with unix: or http://"
        )))
    }

    fn describe(&self) -> String {
        match self {
            Endpoint::Unix(p) => format!("unix:{p}"),
            Endpoint::Tcp { authority, prefix } => format!("http://{authority}{prefix}"),
        }
    }
}

/// An HTTP response: status and body.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one request and reads the whole response.
pub async fn send(
    endpoint: &Endpoint,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> Result<Response, SlurmError> {
    let url = format!("{}{path}", endpoint.describe());
    let transport = |message: String| SlurmError::Transport {
        url: url.clone(),
        message,
    };
    let fut = async {
        let (host, full_path) = match endpoint {
            Endpoint::Unix(_) => ("localhost".to_string(), path.to_string()),
            Endpoint::Tcp { authority, prefix } => (authority.clone(), format!("{prefix}{path}")),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(full_path)
            .header(hyper::header::HOST, host)
            .header(hyper::header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| transport(format!("building request: {e}")))?;
        let resp = match endpoint {
            Endpoint::Unix(p) => {
                let stream = UnixStream::connect(p)
                    .await
                    .map_err(|e| transport(format!("connect: {e}")))?;
                exchange(TokioIo::new(stream), req).await
            }
            Endpoint::Tcp { authority, .. } => {
                let stream = TcpStream::connect(authority.as_str())
                    .await
                    .map_err(|e| transport(format!("connect: {e}")))?;
                exchange(TokioIo::new(stream), req).await
            }
        };
        resp.map_err(transport)
    };
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(SlurmError::Transport {
            url: url.clone(),
            message: format!("no answer within {}s", TIMEOUT.as_secs()),
        }),
    }
}

async fn exchange<T>(io: TokioIo<T>, req: Request<Full<Bytes>>) -> Result<Response, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(async move {
        // The connection ends when the response is read or the peer closes; errors surface
        // through the request future below.
        let _ = conn.await;
    });
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"));
    let out = match resp {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading body: {e}"))?
                .to_bytes()
                .to_vec();
            Ok(Response { status, body })
        }
        Err(e) => Err(e),
    };
    driver.abort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("unix:/run/s.sock").unwrap(),
            Endpoint::Unix("/run/s.sock".into())
        );
        assert_eq!(
            Endpoint::parse("unix:///run/s.sock").unwrap(),
            Endpoint::Unix("/run/s.sock".into())
        );
        assert_eq!(
            Endpoint::parse("http://h:6820").unwrap(),
            Endpoint::Tcp {
                authority: "h:6820".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            Endpoint::parse("http://h/api/").unwrap(),
            Endpoint::Tcp {
                authority: "h:80".into(),
                prefix: "/api".into()
            }
        );
        assert!(Endpoint::parse("https://h").is_err());
        assert!(Endpoint::parse("unix:").is_err());
    }
}
