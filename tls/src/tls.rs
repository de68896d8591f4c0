//! TLS links: rustls's sans-I/O [`ServerConnection`] over the engine's non-blocking socket.
//!
//! The engine's one thread feeds each connection ciphertext and takes plaintext; no thread per
//! connection, no blocking handshake. Relayed chunks stay shared plaintext until the moment each
//! connection encrypts its own copy in [`TlsLink::send`].

use std::cell::RefCell;
use std::fmt;
use std::fs;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use server_core::{Acceptor, Admission, AsBorrowedSocket, BorrowedSocket, Link};

/// Most ciphertext one [`Link::recv`] reads from the socket (in one read). rustls itself reads
/// at most 4 KiB per `read_tls`; reading once into a larger buffer and feeding it from memory
/// saves the system calls.
pub const READ_CHUNK: usize = 64 * 1024;

/// Most bytes a connection's rustls may hold for sending (encrypted records not yet written and
/// plaintext not yet encrypted), on top of the engine's own queue for that client.
pub const SEND_BUFFER: usize = 64 * 1024;

thread_local! {
    /// The one ciphertext read buffer of this thread (the engine runs on one thread).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Where TLS gets its certificate, key and, for mutual TLS, the client CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of that certificate.
    pub key: PathBuf,
    /// PEM CA certificates: when set, every client must present a certificate they issued.
    pub client_ca: Option<PathBuf>,
}

/// A TLS setting that cannot be used; its text names the file and what is wrong with it.
#[derive(Debug)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// What a PEM file is expected to hold, for messages.
fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|e| {
        let reason = server_core::error_words(&e);
        TlsError(format!(
            "cannot read the {what} file {}: {reason}",
            path.display()
        ))
    })
}

fn certificates(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_pem(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| {
            TlsError(format!(
                "the {what} file {} is not valid PEM: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "the {what} file {} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")",
            path.display()
        )));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_pem("TLS key", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let reason = match e {
            pem::Error::NoItemsFound => "holds no PEM private key".to_string(),
            e => format!("is not a valid PEM private key: {e}"),
        };
        TlsError(format!("the TLS key file {} {reason}", path.display()))
    })
}

/// The server's TLS configuration from PEM files: TLS 1.3 and 1.2 with ring's cipher suites.
///
/// # Errors
///
/// A file that cannot be read, holds no certificate or key, or a key that does not belong to
/// the certificate; the message names the file.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let certs = certificates("TLS certificate", &files.cert)?;
    let key = private_key(&files.key)?;
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS setup failed: {e}")))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("client CA", ca)? {
                roots.add(cert).map_err(|e| {
                    TlsError(format!(
                        "the client CA file {} holds a certificate rustls cannot use: {e}",
                        ca.display()
                    ))
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| {
                    TlsError(format!(
                        "the client CA file {} cannot be used: {e}",
                        ca.display()
                    ))
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder.with_single_cert(certs, key).map_err(|e| {
        let reason = match e {
            rustls::Error::InconsistentKeys(_) => "they do not belong together".to_string(),
            e => e.to_string(),
        };
        TlsError(format!(
            "the TLS certificate {} and key {} cannot be used: {reason}",
            files.cert.display(),
            files.key.display()
        ))
    })
}

/// Makes every accepted connection a [`TlsLink`].
#[derive(Debug, Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
}

impl TlsAcceptor {
    /// An acceptor for `config`.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        TlsAcceptor { config }
    }

    /// The acceptor for the certificate, key and client CA in `files`.
    ///
    /// # Errors
    ///
    /// As [`server_config`].
    pub fn from_files(files: &TlsFiles) -> Result<Self, TlsError> {
        server_config(files).map(|c| TlsAcceptor::new(Arc::new(c)))
    }
}

impl Acceptor for TlsAcceptor {
    type Link = TlsLink;

    fn accept(&mut self, stream: TcpStream, _peer: SocketAddr) -> io::Result<Admission<TlsLink>> {
        let mut conn = ServerConnection::new(Arc::clone(&self.config)).map_err(io::Error::other)?;
        conn.set_buffer_limit(Some(SEND_BUFFER));
        Ok(Admission::Admit(TlsLink::new(stream, conn)))
    }
}

/// One TLS client: a non-blocking socket and its rustls server connection.
pub struct TlsLink {
    stream: TcpStream,
    conn: ServerConnection,
    /// Ciphertext read from the socket that rustls has not taken yet (it waits for its
    /// plaintext to be collected first). Empty, and unallocated, almost always.
    unfed: Vec<u8>,
    /// The peer is done: it sent close_notify or the socket reported end of stream. What
    /// plaintext remains is handed over first, then `recv` says `Ok(0)`.
    closed: bool,
    /// Plaintext or unfed ciphertext remains inside the link.
    buffered: bool,
}

impl fmt::Debug for TlsLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsLink")
            .field("stream", &self.stream)
            .field("handshaking", &self.conn.is_handshaking())
            .field("unfed", &self.unfed.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl TlsLink {
    /// A link over `stream` (non-blocking) driven by `conn`.
    pub fn new(stream: TcpStream, conn: ServerConnection) -> Self {
        TlsLink {
            stream,
            conn,
            unfed: Vec::new(),
            closed: false,
            buffered: false,
        }
    }

    /// The rustls connection, e.g. for the negotiated version or the client's certificates.
    pub fn connection(&self) -> &ServerConnection {
        &self.conn
    }

    /// Feeds ciphertext from `input` to rustls and collects plaintext into `buf[*out..]`, until
    /// `input` is used up or `buf` is full. Returns whether the peer closed (close_notify).
    fn feed(&mut self, input: &mut &[u8], buf: &mut [u8], out: &mut usize) -> io::Result<bool> {
        loop {
            if *out < buf.len() {
                match self.conn.reader().read(&mut buf[*out..]) {
                    Ok(0) => return Ok(true),
                    Ok(n) => {
                        *out += n;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // Only after rustls saw end of stream, which this link never shows it.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(true),
                    Err(e) => return Err(e),
                }
            } else {
                return Ok(false); // buf is full; plaintext may remain
            }
            // No plaintext waits in rustls now, so it has room to take more.
            if input.is_empty() {
                return Ok(false);
            }
            // An empty `input` would look like end of stream to rustls; it is not empty here.
            self.conn.read_tls(input)?;
            if let Err(e) = self.conn.process_new_packets() {
                // rustls queued an alert telling the peer why; one try to send it.
                let _ = self.conn.write_tls(&mut self.stream);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    /// Writes queued TLS records to the socket until none remain or it would block.
    fn write_out(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.stream) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl AsBorrowedSocket for TlsLink {
    fn borrowed(&self) -> BorrowedSocket<'_> {
        self.stream.borrowed()
    }
    fn raw_number(&self) -> u64 {
        self.stream.raw_number()
    }
}

impl Link for TlsLink {
    fn transport(&self) -> &'static str {
        "tls"
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut out = 0;
        // First what an earlier call read but could not hand over: no socket read then.
        if self.buffered {
            self.buffered = false;
            let unfed = std::mem::take(&mut self.unfed);
            let mut input = &unfed[..];
            self.closed |= self.feed(&mut input, buf, &mut out)?;
            self.unfed = input.to_vec();
            if out > 0 || !self.unfed.is_empty() {
                self.buffered = !self.unfed.is_empty() || out == buf.len();
                // Ok(0) would read as end of stream: with ciphertext still unfed and no
                // plaintext yet, there is simply nothing for the caller this time.
                return if out > 0 {
                    Ok(out)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
        }
        if self.closed {
            return Ok(0);
        }
        // One socket read, into this thread's scratch buffer, fed to rustls from memory.
        let closed = SCRATCH.with(|scratch| -> io::Result<bool> {
            let mut scratch = scratch.borrow_mut();
            scratch.resize(READ_CHUNK, 0);
            let n = loop {
                match self.stream.read(&mut scratch[..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other?,
                }
            };
            if n == 0 {
                return Ok(true); // end of stream, with or without close_notify
            }
            let mut input = &scratch[..n];
            let closed = self.feed(&mut input, buf, &mut out)?;
            self.unfed.extend_from_slice(input);
            Ok(closed)
        })?;
        self.closed = closed;
        self.buffered = !self.unfed.is_empty() || out == buf.len();
        if out > 0 {
            Ok(out)
        } else if closed {
            Ok(0)
        } else {
            // Only handshake or protocol records, or part of a record.
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // Make room first: records already made go out before new ones are made.
        self.write_out()?;
        let n = self.conn.writer().write_vectored(bufs)?;
        self.write_out()?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush_own(&mut self) -> io::Result<()> {
        self.write_out()
    }

    fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    fn is_established(&self) -> bool {
        !self.conn.is_handshaking()
    }

    fn has_buffered_input(&self) -> bool {
        self.buffered
    }
}

impl Drop for TlsLink {
    /// Says goodbye (`close_notify`) if the socket takes it now; never waits.
    fn drop(&mut self) {
        if !self.conn.is_handshaking() {
            self.conn.send_close_notify();
            let _ = self.conn.write_tls(&mut self.stream);
        }
    }
}
