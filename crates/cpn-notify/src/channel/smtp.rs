//! E-mail over SMTP with lettre's tokio transport. The relay is configured once (host, port,
//! TLS mode, optional credentials, From address); every notification becomes one plain-text
//! message with its idempotency key in the Message-ID and its kind in `X-Cpn-Event`, so mail
//! filters can sort alarms from billing and duplicates are recognisable.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{ConfigError, SendError, error_chain};
use crate::Notification;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// No TLS. For a relay on loopback (the tests' aiosmtpd, a local Postfix); credentials
    /// are refused with it unless the relay is on loopback.
    Plain,
    /// Connect in clear, then STARTTLS; fails rather than continue unencrypted (port 587).
    StartTls,
    /// TLS from the first byte, "SMTPS" (port 465).
    Tls,
}

/// A relay login. `Debug` hides the password.
#[derive(Clone)]
pub struct SmtpCredentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for SmtpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmtpCredentials({}, <redacted>)", self.user)
    }
}

/// The relay and sender for e-mail.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// The From mailbox, e.g. `cpn <noreply@example.org>`.
    pub from: String,
    pub credentials: Option<SmtpCredentials>,
    /// An extra trusted root (PEM) for a relay with a private CA; the system roots are
    /// trusted as well.
    pub extra_root_pem: Option<Vec<u8>>,
    /// How long each SMTP command may take.
    pub timeout: Duration,
}

impl SmtpConfig {
    /// A relay on loopback without TLS or login, as the tests' aiosmtpd.
    pub fn plain_loopback(port: u16, from: impl Into<String>) -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port,
            security: SmtpSecurity::Plain,
            from: from.into(),
            credentials: None,
            extra_root_pem: None,
            timeout: Duration::from_secs(10),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Sends notifications as e-mail through one relay. Connections are pooled by lettre.
#[derive(Clone)]
pub struct SmtpChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    relay: String,
}

impl fmt::Debug for SmtpChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmtpChannel({}, from {})", self.relay, self.from)
    }
}

impl SmtpChannel {
    /// Must be called inside a tokio runtime: lettre's connection pool starts a task.
    pub fn new(config: SmtpConfig) -> Result<Self, ConfigError> {
        if config.host.trim().is_empty() {
            return Err(ConfigError::NoRelay);
        }
        if config.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|_| ConfigError::BadFrom(config.from.clone()))?;
        let relay = format!("{}:{}", config.host, config.port);
        if config.security == SmtpSecurity::Plain
            && config.credentials.is_some()
            && !is_loopback(&config.host)
        {
            return Err(ConfigError::PlainCredentials(relay));
        }
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .timeout(Some(config.timeout));
        if config.security != SmtpSecurity::Plain {
            let mut params = TlsParameters::builder(config.host.clone());
            if let Some(pem) = &config.extra_root_pem {
                let cert =
                    Certificate::from_pem(pem).map_err(|e| ConfigError::SmtpTls(e.to_string()))?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| ConfigError::SmtpTls(e.to_string()))?;
            builder = builder.tls(match config.security {
                SmtpSecurity::StartTls => Tls::Required(params),
                _ => Tls::Wrapper(params),
            });
        }
        if let Some(c) = config.credentials {
            builder = builder.credentials(Credentials::new(c.user, c.password));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            relay,
        })
    }

    /// The message `n` becomes for `to`.
    pub fn message(&self, n: &Notification, to: &str) -> Result<Message, SendError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| SendError::BadMessage(format!("recipient address: {e}")))?;
        // The key is [A-Za-z0-9._:-] (Notification::new), valid in a Message-ID's left part.
        let domain = self.from.email.domain().to_owned();
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(n.subject())
            .message_id(Some(format!("<{}@{domain}>", n.idempotency_key())))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Cpn-Event"),
                n.kind().as_str().to_owned(),
            ))
            .header(ContentType::TEXT_PLAIN)
            .body(n.body().to_owned())
            .map_err(|e| SendError::BadMessage(e.to_string()))
    }

    /// One attempt to hand the message to the relay.
    pub async fn send(&self, n: &Notification, to: &str) -> Result<(), SendError> {
        let message = self.message(n, to)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::SmtpRejected {
                relay: self.relay.clone(),
                detail: e.to_string(),
            }),
            Err(e) if e.is_transient() => Err(SendError::SmtpDeferred {
                relay: self.relay.clone(),
                detail: e.to_string(),
            }),
            Err(e) => Err(SendError::SmtpConnection {
                relay: self.relay.clone(),
                detail: error_chain(&e),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A tokio test: the pooled transport starts its pool's task when it is built.
    #[tokio::test]
    async fn credentials_never_go_in_clear_off_loopback() {
        let mut config = SmtpConfig::plain_loopback(2525, "cpn <noreply@example.org>");
        config.credentials = Some(SmtpCredentials {
            user: "u".into(),
            password: "hunter2".into(),
        });
        assert!(SmtpChannel::new(config.clone()).is_ok());
        config.host = "smtp.example.org".into();
        assert!(matches!(
            SmtpChannel::new(config.clone()),
            Err(ConfigError::PlainCredentials(_))
        ));
        assert!(!format!("{config:?}").contains("hunter2"));
        config.security = SmtpSecurity::StartTls;
        assert!(SmtpChannel::new(config.clone()).is_ok());
        config.from = "not a mailbox".into();
        assert!(matches!(
            SmtpChannel::new(config),
            Err(ConfigError::BadFrom(_))
        ));
    }
}
