//! TLS for `https://` endpoints: rustls (ring provider) over the same
//! blocking `TcpStream`, set up once per connection.
//!
//! The configuration is built once from PEM files (`TlsFiles::load`): the CA
//! that signed etcd's server certificate (required: there is no fallback to
//! the system's roots, an etcd cluster has its own CA), and optionally a
//! client certificate and key for etcd's `--client-cert-auth`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// A PEM file larger than this is refused (certificates are a few KiB).
const MAX_PEM: u64 = 1024 * 1024;

/// Where the TLS material is (`--cluster-cacert`, `--cluster-cert`,
/// `--cluster-key`; `[cluster] cacert`, `cert`, `key`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A loaded client configuration, shared by every connection.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub(super) config: Arc<ClientConfig>,
    /// The CA file, named when a server certificate does not verify.
    pub(super) cacert: PathBuf,
    /// Whether a client certificate is configured.
    pub(super) client_auth: bool,
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let cannot = |e: io::Error| format!("cannot read the {what} {}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if meta.len() > MAX_PEM {
        return Err(format!(
            "the {what} {} is {} bytes: not a PEM file (over {MAX_PEM})",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read(path).map_err(cannot)
}

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_pem(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM in the {what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "the {what} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

impl TlsFiles {
    /// Whether any TLS option is set.
    pub fn is_set(&self) -> bool {
        self.cacert.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// Reads and checks the files. Errors name the file and the problem.
    pub fn load(&self) -> Result<TlsConfig, String> {
        let cacert = self.cacert.as_ref().ok_or(
            "TLS needs the CA certificate that signed etcd's server certificate: \
             give --cluster-cacert FILE ([cluster] cacert)",
        )?;
        let mut roots = RootCertStore::empty();
        for c in certs(cacert, "CA certificate (--cluster-cacert)")? {
            roots.add(c).map_err(|e| {
                format!(
                    "the CA certificate (--cluster-cacert) {} is not usable: {e}",
                    cacert.display()
                )
            })?;
        }
        // ring, not aws-lc-rs: no cmake or nasm to build. rustls 0.23.48
        // deprecates it for lacking post-quantum key exchange, which etcd
        // (Go's TLS) would offer; classical X25519/P-256 remains sound.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots);
        let config =
            match (&self.cert, &self.key) {
                (None, None) => builder.with_no_client_auth(),
                (Some(cert), Some(key)) => {
                    let chain = certs(cert, "client certificate (--cluster-cert)")?;
                    let pem = read_pem(key, "client key (--cluster-key)")?;
                    let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                        format!(
                            "bad PEM in the client key (--cluster-key) {}: {e} (expected a \
                         PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)",
                            key.display()
                        )
                    })?;
                    builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                        format!(
                            "the client certificate {} and key {} do not go together: {e}",
                            cert.display(),
                            key.display()
                        )
                    })?
                }
                _ => return Err(
                    "a client certificate needs both --cluster-cert FILE and --cluster-key FILE \
                     ([cluster] cert and key)"
                        .into(),
                ),
            };
        Ok(TlsConfig {
            config: Arc::new(config),
            cacert: cacert.clone(),
            client_auth: self.cert.is_some(),
        })
    }
}

/// The text of a TLS failure: rustls' reason and what to check.
pub(super) fn describe(e: &rustls::Error, host: &str, tls: Option<&TlsConfig>) -> String {
    use rustls::AlertDescription as A;
    let hint = match e {
        rustls::Error::InvalidCertificate(_) => match tls {
            Some(t) => format!(
                " (etcd's certificate for {host:?} does not verify against --cluster-cacert {}: \
                 give the CA that signed it, and a certificate whose names include {host:?})",
                t.cacert.display()
            ),
            None => String::new(),
        },
        rustls::Error::AlertReceived(
            A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::AccessDenied
            | A::HandshakeFailure,
        ) => {
            if tls.is_some_and(|t| t.client_auth) {
                " (etcd refused this host's client certificate: is --cluster-cert signed by \
                 the CA of etcd's --trusted-ca-file?)"
                    .into()
            } else {
                " (etcd asks for a client certificate: give --cluster-cert FILE and \
                 --cluster-key FILE)"
                    .into()
            }
        }
        _ => String::new(),
    };
    format!("{e}{hint}")
}

/// The rustls error inside an I/O error, if it is one.
pub(super) fn tls_cause(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}
