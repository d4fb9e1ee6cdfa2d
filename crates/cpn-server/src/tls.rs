//! TLS for `cpn serve`: certificates given by flag, or a CA generated on first start and
//! kept in the data dir (`tls/ca.pem`, `tls/ca.key`, 0600) that signs a fresh server
//! certificate at every start, so a changed host name or `--tls-san` takes effect.
//!
//! The CA's fingerprint (SHA-256 of its DER) is printed at start and carried in join tokens:
//! agents trust that CA and nothing else, so a certificate from any other CA, public ones
//! included, is refused.

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How the server speaks to its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetting {
    /// Plain HTTP.
    Off,
    /// HTTPS with the data dir's own CA; `extra_sans` are added to the certificate's names.
    Generated { extra_sans: Vec<String> },
    /// HTTPS with a certificate chain and key from PEM files.
    Files { cert: PathBuf, key: PathBuf },
}

/// What the API tells about the transport (defined in the runtime: join tokens pin its CA).
pub(crate) use crate::runtime::Transport;

/// The folder of the generated CA inside the data dir.
pub(crate) const TLS_DIR: &str = "tls";
pub(crate) const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";

/// SHA-256 of a certificate's DER, lowercase hex: the fingerprint join tokens carry.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// `ab:cd:…` for people.
pub(crate) fn fingerprint_for_humans(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

/// Builds the rustls acceptor for a setting; `None` for plain HTTP.
pub(crate) fn setup(
    setting: &TlsSetting,
    data_dir: &Path,
    listen: SocketAddr,
) -> anyhow::Result<(Option<tokio_rustls::TlsAcceptor>, Transport)> {
    let (chain, key, transport) = match setting {
        TlsSetting::Off => return Ok((None, Transport::default())),
        TlsSetting::Files { cert, key } => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("read --tls-cert {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("--tls-cert {}: not PEM certificates", cert.display()))?;
            if chain.is_empty() {
                bail!("--tls-cert {}: no certificate in it", cert.display());
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("--tls-key {}: no private key in it", key.display()))?;
            let transport = Transport {
                https: true,
                ..Transport::default()
            };
            (chain, key, transport)
        }
        TlsSetting::Generated { extra_sans } => {
            let dir = data_dir.join(TLS_DIR);
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            let (ca_pem, ca_key) = load_or_create_ca(&dir)?;
            let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
                .context("read the generated CA certificate")?;
            let names = server_names(listen, extra_sans);
            let (cert_der, key_der) = server_certificate(&ca_key, &names)?;
            let transport = Transport {
                https: true,
                ca_sha256: Some(fingerprint(&ca_der)),
                ca_pem: Some(ca_pem),
            };
            (vec![cert_der, ca_der], key_der, transport)
        }
    };
    // ring, the provider reqwest's rustls already brings in, rather than a second C crypto
    // library (aws-lc-rs); rustls deprecates it only for lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate does not match its key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        transport,
    ))
}

/// The distinguished name of every generated CA; what tells two CAs apart is their key.
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "cpn");
    dn.push(DnType::CommonName, "cpn server CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2054, 1, 1);
    Ok(params)
}

/// Reads the data dir's CA, or makes one on first start. Returns its PEM and key.
fn load_or_create_ca(dir: &Path) -> anyhow::Result<(String, KeyPair)> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    if cert_path.exists() || key_path.exists() {
        let pem = std::fs::read_to_string(&cert_path)
            .with_context(|| format!("read {}", cert_path.display()))?;
        let key_pem = std::fs::read_to_string(&key_path)
            .with_context(|| format!("read {}", key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("{}: not a private key", key_path.display()))?;
        return Ok((pem, key));
    }
    let key = KeyPair::generate().context("generate the CA key")?;
    let cert = ca_params()?
        .self_signed(&key)
        .context("sign the CA certificate")?;
    // Key first: a CA certificate without its key would be useless at the next start.
    write_private(&key_path, key.serialize_pem().trim_end())
        .with_context(|| format!("write {}", key_path.display()))?;
    write_private(&cert_path, cert.pem().trim_end())
        .with_context(|| format!("write {}", cert_path.display()))?;
    Ok((cert.pem(), key))
}

/// Writes a file readable only by its owner (0600), synced.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// The names a client may use for this server: loopback, the host name, the listen
/// address (every interface's address when it is unspecified) and `--tls-san`.
fn server_names(listen: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    let ip = listen.ip();
    if ip.is_unspecified() {
        if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
            for a in addrs {
                let Some(addr) = a.address else { continue };
                if let Some(v4) = addr.as_sockaddr_in() {
                    names.push(IpAddr::V4(v4.ip()).to_string());
                } else if let Some(v6) = addr.as_sockaddr_in6() {
                    let ip = v6.ip();
                    // Link-local addresses need a scope id no URL carries.
                    if ip.segments()[0] & 0xffc0 != 0xfe80 {
                        names.push(IpAddr::V6(ip).to_string());
                    }
                }
            }
        }
    } else {
        names.push(ip.to_string());
    }
    names.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

fn server_certificate(
    ca_key: &KeyPair,
    names: &[String],
) -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut params = CertificateParams::new(names.to_vec())
        .with_context(|| format!("certificate names {names:?}"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "cpn");
    dn.push(
        DnType::CommonName,
        names.get(3).cloned().unwrap_or_else(|| "localhost".into()),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::NoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2054, 1, 1);
    let key = KeyPair::generate().context("generate the server key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("sign the server certificate")?;
    Ok((
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_ca_is_kept_and_signs_a_fresh_server_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let setting = TlsSetting::Generated {
            extra_sans: vec!["cpn.example".into()],
        };
        let (acceptor, first) = setup(&setting, dir.path(), listen).unwrap();
        assert!(acceptor.is_some() && first.https);
        let (_, second) = setup(&setting, dir.path(), listen).unwrap();
        assert_eq!(
            first.ca_sha256, second.ca_sha256,
            "the CA survives a restart"
        );
        assert_eq!(first.ca_sha256.as_ref().unwrap().len(), 64);
        let other = tempfile::tempdir().unwrap();
        let (_, third) = setup(&setting, other.path(), listen).unwrap();
        assert_ne!(
            first.ca_sha256, third.ca_sha256,
            "each data dir has its own CA"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(TLS_DIR).join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fingerprint_for_humans("ab0c"), "AB:0C");
    }

    #[test]
    fn certificates_from_files_are_served_and_bad_files_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["cpn.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let listen: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let files = TlsSetting::Files {
            cert: cert_path.clone(),
            key: key_path.clone(),
        };
        let (acceptor, transport) = setup(&files, dir.path(), listen).unwrap();
        assert!(acceptor.is_some() && transport.https);
        assert_eq!(transport.ca_sha256, None, "no generated CA to pin");
        let swapped = TlsSetting::Files {
            cert: key_path,
            key: cert_path,
        };
        assert!(setup(&swapped, dir.path(), listen).is_err());
        let (none, plain) = setup(&TlsSetting::Off, dir.path(), listen).unwrap();
        assert!(none.is_none() && !plain.https);
    }
}
