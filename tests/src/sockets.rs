//! Blocking loopback clients with bounded reads and writes, and the checks tests make on what
//! they receive.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use relay_pattern::Demux;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::TIMEOUT;

/// Raises this process's soft descriptor limit to the hard limit (once), for tests that open
/// thousands of sockets. A no-op where there is no such limit.
pub fn raise_fd_limit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
            eprintln!("could not raise the descriptor limit: {e}");
        }
    });
}

/// A blocking client connected to `addr`, with every read and write bounded by [`TIMEOUT`].
#[track_caller]
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("set_read_timeout");
    stream
        .set_write_timeout(Some(TIMEOUT))
        .expect("set_write_timeout");
    stream.set_nodelay(true).expect("set_nodelay");
    stream
}

/// A client stream the helpers can read with a deadline: plain TCP, or TLS over it.
pub trait Socketed: Read + Write {
    /// The TCP socket underneath (for its read timeout).
    fn socket(&self) -> &TcpStream;
}

impl Socketed for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

/// Reads exactly `n` bytes (plaintext, for TLS), or fails once `timeout` has passed in total.
pub fn read_exactly<S: Socketed + ?Sized>(
    stream: &mut S,
    n: usize,
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut got = vec![0; n];
    let mut filled = 0;
    while filled < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "got {filled} of {n} bytes: {:?}",
                    got[..filled].escape_ascii().to_string()
                ),
            ));
        }
        stream.socket().set_read_timeout(Some(left))?;
        match stream.read(&mut got[filled..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("end of stream after {filled} of {n} bytes"),
                ))
            }
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.socket().set_read_timeout(Some(TIMEOUT))?;
    Ok(got)
}

/// Asserts the next bytes on `stream` are exactly `expected`, printing both (escaped) if not.
#[track_caller]
pub fn expect_bytes<S: Socketed + ?Sized>(stream: &mut S, expected: &[u8]) {
    match read_exactly(stream, expected.len(), TIMEOUT) {
        Ok(got) => assert!(
            got == expected,
            "byte stream differs\nexpected: {:?}\n     got: {:?}",
            expected.escape_ascii().to_string(),
            got.escape_ascii().to_string()
        ),
        Err(e) => panic!("expected {:?}: {e}", expected.escape_ascii().to_string()),
    }
}

/// Reads until the server closes or resets the connection, discarding data; returns how many
/// bytes came first. Panics if the connection is still open after [`TIMEOUT`].
#[track_caller]
pub fn expect_closed(stream: &mut TcpStream) -> usize {
    read_until_closed(stream).0
}

/// Reads (plaintext, for TLS) until the stream ends, discarding data. Returns how many bytes
/// came first and the error that ended it, if it did not end cleanly (a reset, a TLS alert).
/// Panics if it is still open after [`TIMEOUT`].
#[track_caller]
pub fn read_until_closed<S: Socketed + ?Sized>(stream: &mut S) -> (usize, Option<io::Error>) {
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = vec![0; 64 * 1024];
    let mut total = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "connection still open after {TIMEOUT:?} ({total} bytes read)"
        );
        stream
            .socket()
            .set_read_timeout(Some(left))
            .expect("set_read_timeout");
        match stream.read(&mut buf) {
            Ok(0) => return (total, None),
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("connection still open after {TIMEOUT:?} ({total} bytes read)")
            }
            Err(e) => return (total, Some(e)),
        }
    }
}

/// Makes closing `stream` send a reset (RST) instead of a FIN.
pub fn set_linger_zero(stream: &TcpStream) {
    SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
}

/// Connects `n` clients and returns once the server has accepted all of them (see
/// [`sync_room`]).
#[track_caller]
pub fn join_room(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut clients: Vec<TcpStream> = (0..n).map(|_| connect(addr)).collect();
    sync_room(&mut clients);
    clients
}

/// Makes sure the server has accepted every client in `clients` (connected in this order):
/// the last one sends a unique probe and every other one reads exactly it. The server accepts
/// in FIFO order, so once the last client's bytes are relayed every earlier client is in the
/// room, and nothing else is in flight afterwards.
#[track_caller]
pub fn sync_room<S: Socketed>(clients: &mut [S]) {
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let Some((last, others)) = clients.split_last_mut() else {
        return;
    };
    // A whole line, so the probe also passes a relay in line mode.
    let probe = format!("<probe {}>\n", PROBES.fetch_add(1, Ordering::Relaxed));
    last.write_all(probe.as_bytes()).expect("send probe");
    last.flush().expect("send probe"); // TLS: the record must leave now
    for client in others {
        expect_bytes(client, probe.as_bytes());
    }
}

/// Reads from `stream` into a [`Demux`] until `expected` bytes arrived in total, within
/// [`TIMEOUT`]. Panics on a byte out of place, an early close, or the deadline.
#[track_caller]
pub fn receive_pattern(stream: &mut TcpStream, expected: usize) -> Demux {
    let deadline = Instant::now() + TIMEOUT;
    let mut demux = Demux::default();
    let mut buf = vec![0; 64 * 1024];
    while demux.total() < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "only {:?} of {expected} bytes arrived",
            demux.seen
        );
        stream
            .set_read_timeout(Some(left))
            .expect("set_read_timeout");
        let want = (expected - demux.total()).min(buf.len());
        match stream.read(&mut buf[..want]) {
            Ok(0) => panic!("closed after {:?} of {expected} bytes", demux.seen),
            Ok(n) => {
                if let Err(e) = demux.feed(&buf[..n]) {
                    panic!("{e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read after {:?} of {expected} bytes: {e}", demux.seen),
        }
    }
    demux
}

/// A listener on 127.0.0.1 with an ephemeral port and the binary's backlog, so connect bursts
/// in tests are not throttled by std's default of 128.
pub fn loopback_listener() -> TcpListener {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    socket.bind(&addr.into()).expect("bind 127.0.0.1:0");
    socket.listen(1024).expect("listen");
    socket.into()
}
