//! Where notifications go: a `Target` per channel and the `Subscription`s that say which event
//! kinds of a user go to which target. Targets are validated when built, and they print
//! masked: the delivery log and tracing only ever see a masked form, never a webhook secret
//! or a full phone number.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::EventKind;

/// The three channels of SH-CL-23 ("e-mail, SMS and similar").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Email,
    Webhook,
    Sms,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Webhook => "webhook",
            Self::Sms => "sms",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("{0:?} is not an e-mail address (expected local@domain, e.g. alice@example.org)")]
    BadEmail(String),
    #[error(
        "the phone number is not in E.164 form: '+', the country code and 8 to 15 digits in \
         all, no spaces (e.g. +8613800138000)"
    )]
    BadPhone,
    #[error(
        "webhook URL {0:?} is not an absolute http(s) URL without user info; \
         give e.g. https://hooks.example.org/cpn"
    )]
    BadWebhookUrl(String),
    #[error(
        "the webhook secret is shorter than {min} bytes; generate at least 32 random bytes \
         (e.g. `openssl rand -hex 32`)"
    )]
    WeakSecret { min: usize },
}

/// A webhook signing secret. Its `Debug` prints nothing of it, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// Secrets shorter than this are refused: HMAC-SHA256 is only as strong as its key.
    pub const MIN_LEN: usize = 16;

    pub fn new(secret: impl Into<String>) -> Result<Self, TargetError> {
        let secret = secret.into();
        if secret.len() < Self::MIN_LEN {
            return Err(TargetError::WeakSecret { min: Self::MIN_LEN });
        }
        Ok(Self(secret))
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// One destination on one channel.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "snake_case")]
pub enum Target {
    Email { address: String },
    Webhook { url: String, secret: WebhookSecret },
    Sms { phone: String },
}

impl Target {
    /// An e-mail address, checked with the same parser the SMTP channel uses.
    pub fn email(address: impl Into<String>) -> Result<Self, TargetError> {
        let address = address.into();
        if address.parse::<lettre::Address>().is_err() {
            return Err(TargetError::BadEmail(address));
        }
        Ok(Self::Email { address })
    }

    /// A webhook: an absolute http(s) URL and the secret its signatures are made with.
    pub fn webhook(url: impl Into<String>, secret: WebhookSecret) -> Result<Self, TargetError> {
        let url = url.into();
        let parsed =
            reqwest::Url::parse(&url).map_err(|_| TargetError::BadWebhookUrl(url.clone()))?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.host_str().is_none()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return Err(TargetError::BadWebhookUrl(url));
        }
        Ok(Self::Webhook { url, secret })
    }

    /// A phone number in E.164 form (`+8613800138000`).
    pub fn sms(phone: impl Into<String>) -> Result<Self, TargetError> {
        let phone = phone.into();
        let digits = phone.strip_prefix('+').ok_or(TargetError::BadPhone)?;
        if !(8..=15).contains(&digits.len())
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(TargetError::BadPhone);
        }
        Ok(Self::Sms { phone })
    }

    pub fn channel(&self) -> ChannelKind {
        match self {
            Self::Email { .. } => ChannelKind::Email,
            Self::Webhook { .. } => ChannelKind::Webhook,
            Self::Sms { .. } => ChannelKind::Sms,
        }
    }

    /// The form the delivery log and tracing show: `al***@example.org`, `+86*******8000`,
    /// a webhook's scheme, host and path without query (queries often carry tokens).
    pub fn masked(&self) -> String {
        match self {
            Self::Email { address } => mask_email(address),
            Self::Sms { phone } => mask_phone(phone),
            Self::Webhook { url, .. } => mask_url(url),
        }
    }

    /// `text` with every occurrence of this target's full address replaced by its masked
    /// form (e-mail addresses in any letter case).
    pub(crate) fn scrub(&self, text: &str) -> String {
        let raw = match self {
            Self::Email { address } => address.as_str(),
            Self::Sms { phone } => phone.as_str(),
            Self::Webhook { url, .. } => url.as_str(),
        };
        let masked = self.masked();
        let mut out = text.replace(raw, &masked);
        if let Self::Email { address } = self {
            // ASCII lowercasing keeps byte offsets, so positions found in the lowered text
            // are positions in `out`.
            let needle = address.to_ascii_lowercase();
            while let Some(at) = out.to_ascii_lowercase().find(&needle) {
                out.replace_range(at..at + needle.len(), &masked);
            }
        }
        if let Self::Sms { phone } = self {
            // Gateways often print the number without its '+'.
            out = out.replace(&phone[1..], &masked);
        }
        out
    }

    /// A stable id of this target for the delivery log, unique per idempotency key: SHA-256
    /// over the key, the channel and the full address, so the log can answer "was this
    /// event delivered to this target" without storing the address itself. Salting with the
    /// key means one row's hash says nothing about another row's target.
    pub fn fingerprint(&self, idempotency_key: &str) -> String {
        let address = match self {
            Self::Email { address } => address.to_ascii_lowercase(),
            Self::Sms { phone } => phone.clone(),
            Self::Webhook { url, .. } => url.clone(),
        };
        let mut h = Sha256::new();
        for part in [idempotency_key, self.channel().as_str(), &address] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(&h.finalize()[..16])
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({} {})", self.channel(), self.masked())
    }
}

fn mask_email(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let keep: String = local
                .chars()
                .take(if local.chars().count() > 3 { 2 } else { 1 })
                .collect();
            format!("{keep}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

fn mask_phone(phone: &str) -> String {
    // Keep '+' and the first two digits (the country code, roughly) and the last four, as
    // banks do: enough for a user to recognise the number, too little to dial it.
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() <= 7 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

pub(crate) fn mask_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default(),
            u.path()
        ),
        Err(_) => "<invalid url>".to_owned(),
    }
}

/// "Send events of these kinds for this user to this target". A user has any number; the
/// server stores them, the dispatcher reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub user: String,
    pub kinds: BTreeSet<EventKind>,
    pub target: Target,
}

impl Subscription {
    pub fn new(
        user: impl Into<String>,
        kinds: impl IntoIterator<Item = EventKind>,
        target: Target,
    ) -> Self {
        Self {
            user: user.into(),
            kinds: kinds.into_iter().collect(),
            target,
        }
    }

    /// Whether an event of `kind` for `user` goes to this subscription's target.
    pub fn matches(&self, user: &str, kind: EventKind) -> bool {
        self.user == user && self.kinds.contains(&kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_validated() {
        assert!(Target::email("alice@example.org").is_ok());
        assert!(Target::email("not an address").is_err());
        assert!(Target::sms("+8613800138000").is_ok());
        for bad in ["8613800138000", "+86 138 0013 8000", "+123", "+0123456789"] {
            assert_eq!(Target::sms(bad), Err(TargetError::BadPhone), "{bad}");
        }
        let secret = WebhookSecret::new("s".repeat(32)).unwrap();
        assert!(Target::webhook("https://h.example.org/x", secret.clone()).is_ok());
        for bad in ["ftp://h/x", "/relative", "https://user:pw@h.example.org/x"] {
            assert!(Target::webhook(bad, secret.clone()).is_err(), "{bad}");
        }
        assert!(matches!(
            WebhookSecret::new("short"),
            Err(TargetError::WeakSecret { .. })
        ));
    }

    #[test]
    fn masked_forms_hide_the_address() {
        assert_eq!(
            Target::email("alice@example.org").unwrap().masked(),
            "al***@example.org"
        );
        assert_eq!(
            Target::email("bo@example.org").unwrap().masked(),
            "b***@example.org"
        );
        assert_eq!(
            Target::sms("+8613800138000").unwrap().masked(),
            "+86*******8000"
        );
        let secret = WebhookSecret::new("topsecret-topsecret").unwrap();
        let hook = Target::webhook("https://h.example.org:8443/in?token=abc", secret).unwrap();
        assert_eq!(hook.masked(), "https://h.example.org:8443/in");
        let debug = format!("{hook:?} {:?}", Target::sms("+8613800138000").unwrap());
        assert!(
            !debug.contains("topsecret")
                && !debug.contains("token")
                && !debug.contains("13800138000"),
            "{debug}"
        );
    }

    #[test]
    fn scrub_replaces_the_full_address_in_error_texts() {
        let email = Target::email("Bob.Smith@example.org").unwrap();
        assert_eq!(
            email.scrub("550 <bob.smith@example.org>: no; 550 <Bob.Smith@example.org>"),
            "550 <Bo***@example.org>: no; 550 <Bo***@example.org>"
        );
        let sms = Target::sms("+8613800138000").unwrap();
        assert_eq!(
            sms.scrub("bad number +8613800138000 / 8613800138000"),
            "bad number +86*******8000 / +86*******8000"
        );
        assert_eq!(email.scrub("nothing to hide"), "nothing to hide");
    }

    #[test]
    fn fingerprints_separate_targets_and_keys() {
        let a = Target::email("alice@example.org").unwrap();
        let b = Target::email("alicia@example.org").unwrap();
        assert_eq!(
            a.fingerprint("k1"),
            Target::email("Alice@Example.org")
                .unwrap()
                .fingerprint("k1")
        );
        assert_ne!(a.fingerprint("k1"), b.fingerprint("k1"));
        assert_ne!(a.fingerprint("k1"), a.fingerprint("k2"));
    }
}
