//! The HTTP side of the agent protocol: one method per endpoint of `/api/v1/agents`.

use crate::error::AgentError;
use crate::runner::Stream;
use cpn_api_types::agent::{
    AgentRegister, AgentRegistered, Assignments, AttemptReply, AttemptReport, Heartbeat,
    HeartbeatReply,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Time limit of the short requests; the long poll gets its wait on top.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    /// The bearer token: the join token until the node has its credential.
    token: std::sync::RwLock<String>,
}

#[derive(Deserialize)]
struct LogReply {
    length: u64,
    /// Absent from servers without an output cap.
    #[serde(default)]
    capped: bool,
}

/// The server's answer to an output upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogAck {
    /// Bytes of the stream the server has (send from there).
    pub length: u64,
    /// The attempt's output reached the server's cap: sending more is useless.
    pub capped: bool,
}

impl Api {
    /// A client of `server`; with `ca_pem`, https trusts that CA and no other.
    pub fn new(server: &str, ca_pem: Option<&str>) -> Result<Self, AgentError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Below the server's keep-alive limit, so a request never races its close.
            .pool_idle_timeout(Duration::from_secs(5));
        if let Some(pem) = ca_pem {
            let ca = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| AgentError::Config(format!("the CA is not a PEM certificate: {e}")))?;
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(ca);
        }
        let http = builder.build().map_err(|source| AgentError::Http {
            url: server.to_string(),
            source,
        })?;
        Ok(Api {
            http,
            base: server.trim_end_matches('/').to_string(),
            token: std::sync::RwLock::new(String::new()),
        })
    }

    pub fn set_token(&self, token: &str) {
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = token.to_string();
    }

    fn token(&self) -> String {
        self.token.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn register(&self, body: &AgentRegister) -> Result<AgentRegistered, AgentError> {
        let url = format!("{}/api/v1/agents/register", self.base);
        let req = self.http.post(&url).json(body).timeout(REQUEST_TIMEOUT);
        self.send(url, req).await
    }

    pub async fn heartbeat(
        &self,
        node: &str,
        hb: &Heartbeat,
    ) -> Result<HeartbeatReply, AgentError> {
        let url = format!("{}/api/v1/agents/{node}/heartbeat", self.base);
        let req = self.http.post(&url).json(hb).timeout(REQUEST_TIMEOUT);
        match self.send(url, req).await {
            Err(AgentError::Status { status: 404, .. }) => {
                Err(AgentError::UnknownNode(node.to_string()))
            }
            other => other,
        }
    }

    pub async fn assignments(&self, node: &str, wait: Duration) -> Result<Assignments, AgentError> {
        let wait_ms = wait.as_millis();
        let url = format!(
            "{}/api/v1/agents/{node}/assignments?wait_ms={wait_ms}",
            self.base
        );
        let req = self.http.get(&url).timeout(wait + REQUEST_TIMEOUT);
        self.send(url, req).await
    }

    pub async fn report(&self, node: &str, r: &AttemptReport) -> Result<AttemptReply, AgentError> {
        let url = format!(
            "{}/api/v1/agents/{node}/attempts/{}",
            self.base, r.attempt_id
        );
        let req = self.http.post(&url).json(r).timeout(REQUEST_TIMEOUT);
        self.send(url, req).await
    }

    /// What the agent did with a lease grant or revocation.
    pub async fn lease_access(
        &self,
        node: &str,
        r: &cpn_api_types::agent::LeaseAccessReport,
    ) -> Result<serde_json::Value, AgentError> {
        let url = format!("{}/api/v1/agents/{node}/lease-access", self.base);
        let req = self.http.post(&url).json(r).timeout(REQUEST_TIMEOUT);
        self.send(url, req).await
    }

    /// Sends output bytes starting at `offset`; returns the length the server now has and
    /// whether it stores no more of this attempt's output.
    pub async fn logs(
        &self,
        node: &str,
        attempt_id: &str,
        stream: Stream,
        offset: u64,
        bytes: Vec<u8>,
    ) -> Result<LogAck, AgentError> {
        let url = format!(
            "{}/api/v1/agents/{node}/attempts/{attempt_id}/logs?stream={}&offset={offset}",
            self.base,
            stream.name()
        );
        let req = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .timeout(REQUEST_TIMEOUT);
        let r: LogReply = self.send(url, req).await?;
        Ok(LogAck {
            length: r.length,
            capped: r.capped,
        })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        url: String,
        req: reqwest::RequestBuilder,
    ) -> Result<T, AgentError> {
        let resp = match req.bearer_auth(self.token()).send().await {
            Ok(r) => r,
            Err(source) => return Err(AgentError::Http { url, source }),
        };
        let status = resp.status();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(source) => return Err(AgentError::Http { url, source }),
        };
        if !status.is_success() {
            let body: String = String::from_utf8_lossy(&body).chars().take(500).collect();
            return Err(AgentError::Status {
                url,
                status: status.as_u16(),
                body,
            });
        }
        serde_json::from_slice(&body).map_err(|source| AgentError::BadReply { url, source })
    }
}
