//! TLS for tests and the benchmark: a throwaway certificate authority made at run time (no key
//! is ever checked in), PEM files in a temporary directory, and a blocking rustls client with
//! bounded waits.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::sockets::read_until_closed;
use crate::{connect, Socketed};

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

/// A certificate authority for one test, with a server certificate for `localhost`,
/// `127.0.0.1` and `::1` that it issued.
pub struct TestPki {
    ca_cert: Certificate,
    ca_key: KeyPair,
    /// The server's certificate and key.
    pub server: Pem,
}

impl TestPki {
    /// A fresh CA and server certificate (ECDSA P-256), made in a few milliseconds.
    pub fn new() -> TestPki {
        Self::named("relay test CA")
    }

    /// Like [`TestPki::new`], with the CA called `name`: two of them do not trust each other.
    pub fn named(name: &str) -> TestPki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = params.self_signed(&ca_key).expect("CA certificate");
        let mut pki = TestPki {
            ca_cert,
            ca_key,
            server: Pem {
                cert: String::new(),
                key: String::new(),
            },
        };
        pki.server = pki.issue(
            "relay test server",
            &["localhost", "127.0.0.1", "::1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        pki
    }

    /// A client certificate issued by this CA, for mutual TLS.
    pub fn client(&self, name: &str) -> Pem {
        self.issue(name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, name: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Pem {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("sign");
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca_cert.pem()
    }

    /// Writes `server.pem`, `server.key` and `ca.pem` into `dir`.
    pub fn write(&self, dir: &Path) -> PkiFiles {
        let files = PkiFiles {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            ca: dir.join("ca.pem"),
        };
        fs::write(&files.cert, &self.server.cert).expect("write server.pem");
        fs::write(&files.key, &self.server.key).expect("write server.key");
        fs::write(&files.ca, self.ca_pem()).expect("write ca.pem");
        files
    }

    /// A client configuration that trusts this CA, presenting `identity` if given.
    pub fn client_config(&self, identity: Option<&Pem>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_cert.der().clone()).expect("trust the CA");
        let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let certs = CertificateDer::pem_slice_iter(pem.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("client certificate PEM");
                let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).expect("client key");
                builder
                    .with_client_auth_cert(certs, key)
                    .expect("client identity")
            }
        };
        Arc::new(config)
    }
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

/// Where [`TestPki::write`] put the files.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    /// The server certificate.
    pub cert: PathBuf,
    /// The server key.
    pub key: PathBuf,
    /// The CA certificate (for `--tls-client-ca`).
    pub ca: PathBuf,
}

/// A private directory for the PEM files (made by `tempfile`: a random name, mode 0700 on Unix),
/// removed when dropped. Private keys go in it, so it is never a predictable path under /tmp.
#[derive(Debug)]
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A new, empty directory.
    #[track_caller]
    pub fn new() -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix("relay-test-")
            .tempdir()
            .expect("create a temporary directory");
        TempDir(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

/// A blocking TLS client; its socket's reads and writes are bounded by [`TIMEOUT`](crate::TIMEOUT).
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

impl Socketed for TlsStream {
    fn socket(&self) -> &TcpStream {
        &self.sock
    }
}

/// Connects to `addr` and completes the handshake (bounded by [`TIMEOUT`](crate::TIMEOUT)), naming the server
/// `localhost`.
pub fn tls_connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> io::Result<TlsStream> {
    let sock = connect(addr);
    let name = ServerName::try_from("localhost").expect("server name");
    let conn = ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    // TLS 1.3: the client is done before the server has checked its Finished (and certificate);
    // flush what the client still owes.
    while stream.conn.wants_write() {
        stream.conn.write_tls(&mut stream.sock)?;
    }
    Ok(stream)
}

/// Like [`crate::join_room`] over TLS: `n` clients, and returns once the server has them all.
#[track_caller]
pub fn tls_join_room(addr: SocketAddr, config: &Arc<ClientConfig>, n: usize) -> Vec<TlsStream> {
    let mut clients: Vec<TlsStream> = (0..n)
        .map(|i| tls_connect(addr, config).unwrap_or_else(|e| panic!("TLS client {i}: {e}")))
        .collect();
    crate::sync_room(&mut clients);
    clients
}

/// Reads until the server ends the TLS stream (close_notify, end of stream, an alert or a reset);
/// returns the error the client saw, if any. Panics if it is still open after [`TIMEOUT`](crate::TIMEOUT).
#[track_caller]
pub fn tls_expect_closed(stream: &mut TlsStream) -> Option<io::Error> {
    read_until_closed(stream).1
}
