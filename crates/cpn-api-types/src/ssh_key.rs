//! OpenSSH public keys as a lease request carries them: the one check of a key line, shared
//! by the server (which refuses a bad key when the user submits it, before any node is
//! asked) and the agent (which writes the key into the lease account's `authorized_keys`).

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The longest public key line accepted (an RSA key of 16384 bits is about 2,800 bytes).
pub const MAX_PUBLIC_KEY_LEN: usize = 8192;
/// Key types accepted; DSA is refused (OpenSSH disabled it), RSA needs 2048 bits.
pub const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-rsa",
];
pub const MIN_RSA_BITS: usize = 2048;

/// Checks a public key line as `grant` will, and returns its `SHA256:` fingerprint: for the
/// server to refuse a bad key when the user submits it, before any node is asked.
pub fn public_key_fingerprint(line: &str) -> Result<String, InvalidPublicKey> {
    PublicKey::parse(line)
        .map(|k| k.fingerprint())
        .map_err(InvalidPublicKey)
}

/// Why a key line is refused, as its owner reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPublicKey(pub String);

impl std::fmt::Display for InvalidPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid public key: {}; paste exactly one line of your .pub file, like \
             'ssh-ed25519 AAAAC3Nza… you@laptop'",
            self.0
        )
    }
}

impl std::error::Error for InvalidPublicKey {}

/// One OpenSSH public key, checked: an accepted type, base64 of a blob that says the same
/// type, and for RSA at least [`MIN_RSA_BITS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kind: &'static str,
    pub base64: String,
    blob: Vec<u8>,
}

impl PublicKey {
    /// Parses `TYPE BASE64 [COMMENT]`. Anything before the type (authorized_keys options
    /// such as `command=` or `environment=`), a second line or a control character is
    /// refused: the agent writes the options, never the user.
    pub fn parse(line: &str) -> Result<PublicKey, String> {
        if line.len() > MAX_PUBLIC_KEY_LEN {
            return Err(format!(
                "{} bytes, at most {MAX_PUBLIC_KEY_LEN}",
                line.len()
            ));
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line.contains(['\n', '\r']) {
            return Err("more than one line: one key per lease".into());
        }
        if let Some(c) = line.chars().find(|c| c.is_control() && *c != '\t') {
            return Err(format!("it contains the control character {c:?}"));
        }
        let mut fields = line.split_ascii_whitespace();
        let kind_text = fields.next().ok_or("it is empty")?;
        let Some(kind) = KEY_TYPES.iter().copied().find(|k| *k == kind_text) else {
            let shown: String = kind_text.chars().take(40).collect();
            return Err(if kind_text.contains('=') || kind_text.contains(',') {
                format!(
                    "it starts with {shown:?}, not a key type: authorized_keys options \
                     (command=, environment=, from=, …) are not accepted"
                )
            } else {
                format!(
                    "key type {shown:?} is not accepted (use one of: {})",
                    KEY_TYPES.join(", ")
                )
            });
        };
        let base64 = fields.next().ok_or("the key's base64 part is missing")?;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(base64)
            .map_err(|e| format!("the key's base64 part does not decode ({e})"))?;
        let mut r = Reader(&blob);
        let inner = r.string().ok_or("the key's data is truncated")?;
        if inner != kind.as_bytes() {
            return Err(format!(
                "the line says {kind} but the key's data says {:?}",
                String::from_utf8_lossy(inner)
            ));
        }
        match kind {
            "ssh-rsa" => {
                let _e = r.string().ok_or("the RSA key is truncated")?;
                let n = r.string().ok_or("the RSA key is truncated")?;
                let n = &n[n.iter().take_while(|b| **b == 0).count()..];
                let bits = n
                    .first()
                    .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
                if bits < MIN_RSA_BITS {
                    return Err(format!(
                        "an RSA key of {bits} bits is too weak; use ssh-ed25519 or RSA of at \
                         least {MIN_RSA_BITS} bits"
                    ));
                }
            }
            "ssh-ed25519" | "sk-ssh-ed25519@openssh.com" => {
                if r.string().is_none_or(|k| k.len() != 32) {
                    return Err("the ed25519 key is not 32 bytes".into());
                }
            }
            _ => {
                r.string().ok_or("the ECDSA key is truncated")?;
                r.string().ok_or("the ECDSA key is truncated")?;
            }
        }
        Ok(PublicKey {
            kind,
            base64: base64.to_string(),
            blob,
        })
    }

    /// `SHA256:` and the unpadded base64 of the blob's SHA-256, as `ssh-keygen -l` prints.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(&self.blob);
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        )
    }
}

/// Reads the SSH wire format's length-prefixed strings.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn string(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(self.0.get(..4)?.try_into().ok()?) as usize;
        let s = self.0.get(4..4 + len)?;
        self.0 = &self.0[4 + len..];
        Some(s)
    }
}
