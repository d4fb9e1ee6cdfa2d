//! The agent's error type.

use std::path::PathBuf;

/// What can go wrong inside the agent. None of these stops the agent: each is logged and
/// the operation retried or skipped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid attempt id {0:?}: only letters, digits, '.', '_' and '-' are allowed")]
    InvalidAttemptId(String),
    #[error("request to {url} failed: {}", causes(source))]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// The host cannot isolate tasks as configured (the message says what to change).
    #[error("{0}")]
    Isolation(String),
    #[error("the server does not know node {0}")]
    UnknownNode(String),
    #[error("bad reply from {url}: {source}")]
    BadReply {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error(
        "the CA of {server} has fingerprint {got}, not {expected} as the join token says: \
         this is not the server that issued the token (a man in the middle?); refusing it"
    )]
    CaMismatch {
        server: String,
        expected: String,
        got: String,
    },
    #[error("encoding {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// An error with its causes, so a TLS refusal shows why ("invalid peer certificate: …").
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

impl AgentError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| AgentError::Io { op, path, source }
    }

    /// Whether retrying the same request later may succeed (network trouble, server errors,
    /// throttling).
    pub fn is_transient(&self) -> bool {
        match self {
            AgentError::Http { .. } | AgentError::BadReply { .. } => true,
            AgentError::Status { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429 || *status == 404
            }
            AgentError::UnknownNode(_) => true,
            _ => false,
        }
    }
}
