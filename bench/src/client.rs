//! One benchmark client: a plain TCP socket, TLS over it (rustls, the same ring provider as
//! the server), or a web client (WebSocket frames over it, see [`crate::ws`]), behind one
//! `Read`/`Write` so the room runs the same every way: a web client's reads return payload
//! bytes only, and each of its writes is one message.
//!
//! A TLS client's reader (a receiver thread) and writer (a sender thread, on a
//! [`Client::try_clone`]) share its rustls connection behind a mutex, held only to decrypt or
//! encrypt, never across a socket call. Each side keeps its own ciphertext buffer:
//!
//! - `read` makes at most one socket read per call (so a receiver multiplexing many sockets never
//!   blocks on one); plaintext or ciphertext left over is reported by [`Client::buffered`];
//! - `write` takes the whole buffer (encrypted at once), and `flush` pushes the ciphertext out;
//!   `write_until` in the room calls both.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use relay_pattern::is_retry;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use crate::ws::{self, Web};

/// Ciphertext read from the socket per call.
const RAW_READ: usize = 64 * 1024;

/// A connected client.
pub(crate) struct Client {
    /// The socket; receivers register it with their poller.
    pub(crate) tcp: TcpStream,
    tls: Option<Tls>,
    /// A web client's WebSocket layer (never with TLS: the web runs are plain).
    web: Option<Web>,
}

/// One side's view of a TLS client.
struct Tls {
    conn: Arc<Mutex<ClientConnection>>,
    /// Ciphertext read but not yet given to rustls, from `unfed_at` on.
    unfed: Vec<u8>,
    unfed_at: usize,
    /// The last read filled the caller's buffer: more plaintext may wait in rustls.
    more: bool,
    /// Ciphertext made but not yet written.
    out: Unsent,
}

/// Bytes a layer made for the socket (ciphertext, frames) that it has not taken yet.
#[derive(Debug, Default)]
pub(crate) struct Unsent {
    bytes: Vec<u8>,
    at: usize,
}

impl Unsent {
    /// Starts over with nothing unsent; returns the buffer to fill.
    pub(crate) fn refill(&mut self) -> &mut Vec<u8> {
        self.bytes.clear();
        self.at = 0;
        &mut self.bytes
    }

    /// Writes what the socket has not taken yet (`WouldBlock` when it takes no more).
    pub(crate) fn flush(&mut self, tcp: &mut TcpStream) -> io::Result<()> {
        while self.at < self.bytes.len() {
            match tcp.write(&self.bytes[self.at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.at += n,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.is_some())
            .field("web", &self.web.is_some())
            .finish()
    }
}

fn lock(conn: &Mutex<ClientConnection>) -> MutexGuard<'_, ClientConnection> {
    // A thread that panicked holding it has already failed the run; its state is still usable.
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Client {
    /// Plain TCP.
    pub(crate) fn plain(tcp: TcpStream) -> Client {
        Client {
            tcp,
            tls: None,
            web: None,
        }
    }

    /// A web client over `tcp` (whose timeouts are short), a fresh connection to the WebSocket
    /// door at `addr`, upgraded before `deadline`.
    pub(crate) fn web(
        mut tcp: TcpStream,
        addr: SocketAddr,
        deadline: Instant,
    ) -> io::Result<Client> {
        let mask = ws::upgrade(&mut tcp, addr, deadline)?;
        Ok(Client {
            tcp,
            tls: None,
            web: Some(Web::new(mask)),
        })
    }

    /// TLS over `tcp` (whose timeouts are short), handshake done before `deadline`.
    pub(crate) fn tls(
        mut tcp: TcpStream,
        config: &Arc<ClientConfig>,
        deadline: Instant,
    ) -> io::Result<Client> {
        let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
        let mut conn = ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
        // Whole messages are encrypted at once; the room bounds what is in flight.
        conn.set_buffer_limit(None);
        while conn.is_handshaking() || conn.wants_write() {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                ));
            }
            match conn.complete_io(&mut tcp) {
                Ok(_) => {}
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Client {
            tcp,
            tls: Some(Tls::new(Arc::new(Mutex::new(conn)))),
            web: None,
        })
    }

    /// Another handle on the same connection, for a writer thread.
    pub(crate) fn try_clone(&self) -> io::Result<Client> {
        Ok(Client {
            tcp: self.tcp.try_clone()?,
            tls: self.tls.as_ref().map(|t| Tls::new(Arc::clone(&t.conn))),
            web: self.web.as_ref().map(|w| Web::new(w.mask())),
        })
    }

    /// The socket's read timeout.
    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp.set_read_timeout(timeout)
    }

    /// Whether bytes already read from the socket may still be waiting to be returned: read
    /// again before waiting for readiness, which would not come for them. A web client returns
    /// every payload byte of a read from that read.
    pub(crate) fn buffered(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| t.more || t.unfed_at < t.unfed.len())
    }
}

impl Tls {
    fn new(conn: Arc<Mutex<ClientConnection>>) -> Tls {
        Tls {
            conn,
            unfed: Vec::new(),
            unfed_at: 0,
            more: false,
            out: Unsent::default(),
        }
    }

    fn read(&mut self, tcp: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut read_socket = false;
        loop {
            {
                let mut conn = lock(&self.conn);
                match conn.reader().read(buf) {
                    Ok(n) => {
                        self.more = n == buf.len();
                        return Ok(n); // 0: close_notify
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
                self.more = false;
                if self.unfed_at < self.unfed.len() {
                    let mut input = &self.unfed[self.unfed_at..];
                    let before = input.len();
                    conn.read_tls(&mut input)?;
                    self.unfed_at += before - input.len();
                    conn.process_new_packets().map_err(tls_error)?;
                    continue;
                }
            }
            if read_socket {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.unfed.resize(RAW_READ, 0);
            self.unfed_at = 0;
            let n = match tcp.read(&mut self.unfed) {
                Ok(n) => n,
                Err(e) => {
                    self.unfed.clear();
                    return Err(e);
                }
            };
            self.unfed.truncate(n);
            read_socket = true;
            if n == 0 {
                return Ok(0);
            }
        }
    }

    fn write(&mut self, tcp: &mut TcpStream, buf: &[u8]) -> io::Result<usize> {
        self.flush(tcp)?;
        {
            let mut conn = lock(&self.conn);
            conn.writer().write_all(buf)?;
            let out = self.out.refill();
            while conn.wants_write() {
                conn.write_tls(out)?;
            }
        }
        match self.flush(tcp) {
            Err(e) if !is_retry(&e) => Err(e),
            _ => Ok(buf.len()), // taken; `flush` sends the rest
        }
    }

    fn flush(&mut self, tcp: &mut TcpStream) -> io::Result<()> {
        self.out.flush(tcp)
    }
}

impl Read for Client {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match (&mut self.tls, &mut self.web) {
            (Some(tls), _) => tls.read(&mut self.tcp, buf),
            (None, Some(web)) => web.read(&mut self.tcp, buf),
            (None, None) => self.tcp.read(buf),
        }
    }
}

impl Write for Client {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match (&mut self.tls, &mut self.web) {
            (Some(tls), _) => tls.write(&mut self.tcp, buf),
            (None, Some(web)) => web.write(&mut self.tcp, buf),
            (None, None) => self.tcp.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match (&mut self.tls, &mut self.web) {
            (Some(tls), _) => tls.flush(&mut self.tcp),
            (None, Some(web)) => web.flush(&mut self.tcp),
            (None, None) => Ok(()),
        }
    }
}
