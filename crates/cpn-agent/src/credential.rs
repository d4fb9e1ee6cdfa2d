//! The node's credential on disk, the pinned CA, and the transport check.
//!
//! A join token is used once: the credential the server answers is written to
//! `{state_dir}/node-credential.json` (0600, synced, renamed into place) before it is used,
//! so a restarted agent needs no join token.

use crate::error::AgentError;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;

/// The node's credential, in the state dir.
pub const CREDENTIAL_FILE: &str = "node-credential.json";
/// The CA the agent trusts, in the state dir (written by `cpn agent --join`).
pub const CA_FILE: &str = "ca.pem";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCredential {
    /// The server that issued it.
    pub server: String,
    pub site: String,
    pub name: String,
    pub node_id: String,
    /// The bearer token of the node.
    pub credential: String,
}

/// The credential kept in a state dir, if any.
pub fn saved_credential(state_dir: &Path) -> Option<SavedCredential> {
    let text = std::fs::read_to_string(state_dir.join(CREDENTIAL_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

pub(crate) fn save_credential(state_dir: &Path, c: &SavedCredential) -> Result<(), AgentError> {
    let json = serde_json::to_string_pretty(c).map_err(|source| AgentError::Json {
        what: "the node credential",
        source,
    })?;
    write_private(&state_dir.join(CREDENTIAL_FILE), json.as_bytes())
}

/// Writes a file readable only by its owner: to a temporary name, synced, then renamed.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), AgentError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(AgentError::io("writing", path))
}

/// SHA-256 of the DER of the first certificate of a PEM text, lowercase hex.
pub fn ca_fingerprint(pem: &str) -> Result<String, AgentError> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| AgentError::Config(format!("not a PEM certificate: {e}")))?;
    Ok(hex::encode(Sha256::digest(der.as_ref())))
}

fn normalize_fingerprint(f: &str) -> String {
    f.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Fetches the server's CA (`GET /api/v1/ca.pem`) and returns it only if its fingerprint is
/// `sha256`. The fetch cannot check the server (the CA is what it lacks), so nothing secret
/// is sent; the fingerprint check is what makes the CA trustworthy, and every later request
/// trusts that CA alone, so a man in the middle who served the real CA still fails.
pub async fn fetch_pinned_ca(server: &str, sha256: &str) -> Result<String, AgentError> {
    let url = format!("{}/api/v1/ca.pem", server.trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .danger_accept_invalid_certs(true)
        .build()
        .map_err(|source| AgentError::Http {
            url: url.clone(),
            source,
        })?;
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|source| AgentError::Http {
            url: url.clone(),
            source,
        })?;
    let status = resp.status();
    let body = resp.text().await.map_err(|source| AgentError::Http {
        url: url.clone(),
        source,
    })?;
    if !status.is_success() {
        return Err(AgentError::Status {
            url,
            status: status.as_u16(),
            body: body.chars().take(300).collect(),
        });
    }
    let got = ca_fingerprint(&body)?;
    let want = normalize_fingerprint(sha256);
    if got != want {
        return Err(AgentError::CaMismatch {
            server: server.to_string(),
            expected: want,
            got,
        });
    }
    Ok(body)
}

/// Plain HTTP only to loopback unless allowed: a node credential must not cross a network
/// in clear.
pub(crate) fn check_transport(server: &str, allow_insecure_http: bool) -> Result<(), AgentError> {
    let url = reqwest::Url::parse(server)
        .map_err(|e| AgentError::Config(format!("invalid server URL {server:?}: {e}")))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(&url) => Ok(()),
        "http" => Err(AgentError::Config(format!(
            "{server} is plain HTTP to a host that is not this machine: the node's credential \
             would travel in clear. Use https:// (the server's --tls) or pass --insecure-http"
        ))),
        other => Err(AgentError::Config(format!(
            "invalid server URL {server:?}: unsupported scheme {other}"
        ))),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_only() {
        assert!(check_transport("http://127.0.0.1:8080", false).is_ok());
        assert!(check_transport("http://localhost:8080", false).is_ok());
        assert!(check_transport("http://[::1]:8080", false).is_ok());
        assert!(check_transport("https://10.1.2.3:8443", false).is_ok());
        assert!(check_transport("http://10.1.2.3:8080", false).is_err());
        assert!(check_transport("http://cpn.example:8080", false).is_err());
        assert!(check_transport("http://cpn.example:8080", true).is_ok());
        assert!(check_transport("ftp://x", true).is_err());
    }

    #[test]
    fn credentials_are_saved_private() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(saved_credential(dir.path()), None);
        let c = SavedCredential {
            server: "https://h:1".into(),
            site: "s".into(),
            name: "n".into(),
            node_id: "node-1".into(),
            credential: "cpnnode_x".into(),
        };
        save_credential(dir.path(), &c).unwrap();
        assert_eq!(saved_credential(dir.path()), Some(c));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(CREDENTIAL_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(normalize_fingerprint("AB:cd:0f"), "abcd0f");
    }
}
