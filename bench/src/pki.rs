//! `--tls`: a self-signed certificate for `localhost` and 127.0.0.1, made for this run only, its
//! PEM files in a private temporary directory (removed at the end), and the client configuration
//! that trusts exactly that certificate.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::{ClientConfig, RootCertStore};
use tempfile::TempDir;

/// The server's certificate and key on disk, and a client configuration trusting it.
#[derive(Debug)]
pub(crate) struct RunPki {
    /// The server certificate (PEM).
    pub(crate) cert: PathBuf,
    /// Its private key (PEM).
    pub(crate) key: PathBuf,
    /// Trusts the certificate above and nothing else.
    pub(crate) client: Arc<ClientConfig>,
    /// Holds the files; removed on drop.
    _dir: TempDir,
}

impl RunPki {
    /// A fresh certificate (ECDSA P-256) and its files.
    pub(crate) fn new() -> Result<RunPki, String> {
        let names = ["localhost".to_string(), "127.0.0.1".to_string()];
        let certified = rcgen::generate_simple_self_signed(names)
            .map_err(|e| format!("--tls: cannot make a certificate: {e}"))?;
        let dir = tempfile::Builder::new()
            .prefix("chat-bench-")
            .tempdir()
            .map_err(|e| format!("--tls: cannot make a temporary directory: {e}"))?;
        let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
        fs::write(&cert, certified.cert.pem())
            .and_then(|()| fs::write(&key, certified.key_pair.serialize_pem()))
            .map_err(|e| format!("--tls: cannot write into {}: {e}", dir.path().display()))?;
        let mut roots = RootCertStore::empty();
        roots
            .add(certified.cert.der().clone())
            .map_err(|e| format!("--tls: cannot trust the certificate: {e}"))?;
        let client = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("--tls: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(RunPki {
            cert,
            key,
            client: Arc::new(client),
            _dir: dir,
        })
    }
}
