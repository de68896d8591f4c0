//! Helpers shared by the behaviour suite (`tests/tests/`) and the binary's black-box tests
//! (`cli/tests/`): an in-process server per backend, bounded socket reads, a self-checking byte
//! pattern, log capture, and a child-process wrapper for the `server` binary.
//!
//! Every wait here is bounded by [`TIMEOUT`] and none sleeps: tests wait for a condition (bytes, a
//! log line, a process exit), never for time to pass.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use server_core::{Acceptor, Backend, Config, PlainTcp, Shutdown, Summary};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

pub mod tls;

/// The bound on every wait. Generous, because CI machines are slow and loaded; a healthy run
/// never comes near it.
pub const TIMEOUT: Duration = Duration::from_secs(20);

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

/// Like [`connect`], for a server that may still be starting: connection refusals are retried
/// until [`TIMEOUT`]. For processes that print no readiness line (`server -q`).
#[track_caller]
pub fn connect_when_listening(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(stream) => {
                drop(stream);
                return connect(addr);
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                thread::yield_now();
            }
            Err(e) => panic!("connect to {addr}: {e}"),
        }
    }
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
            .set_read_timeout(Some(left))
            .expect("set_read_timeout");
        match stream.read(&mut buf) {
            Ok(0) => return total,
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
            Err(_) => return total, // reset: closed abruptly, which is also closed
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

/// A byte stream that tells, byte by byte, which of up to [`Pattern::SENDERS`] senders sent it
/// and where it stood in that sender's stream: byte `i` of sender `s` is `s << 4 | i % 16`.
/// Any interleaving of chunks from different senders, split anywhere, can be checked.
#[derive(Debug, Clone, Copy)]
pub struct Pattern;

impl Pattern {
    /// How many distinct senders the pattern can tell apart.
    pub const SENDERS: usize = 16;
    /// The position part repeats with this period.
    pub const PERIOD: usize = 16;

    /// The byte at position `i` of `sender`'s stream.
    pub fn byte(sender: usize, i: usize) -> u8 {
        debug_assert!(sender < Self::SENDERS);
        ((sender << 4) | (i % Self::PERIOD)) as u8
    }

    /// Bytes `start..start + len` of `sender`'s stream.
    pub fn bytes(sender: usize, start: usize, len: usize) -> Vec<u8> {
        assert!(
            sender < Self::SENDERS,
            "the pattern has {} senders",
            Self::SENDERS
        );
        (start..start + len)
            .map(|i| Self::byte(sender, i))
            .collect()
    }
}

/// Checks a received stream against [`Pattern`]: every sender's bytes complete and in order, and
/// optionally no echo, no unknown sender and no more than each sender sent.
///
/// A relay forwards whole chunks, so a sender's bytes arrive in runs. Each run is compared with
/// that sender's expected bytes in blocks (`==` on slices is a `memcmp`), which keeps checking
/// far cheaper than relaying: the load generator measures the relay, not itself.
#[derive(Debug, Clone)]
pub struct Demux {
    /// Bytes seen so far from each sender: also the position its next byte must carry.
    pub seen: [usize; Pattern::SENDERS],
    /// Senders `0..senders` exist; a byte naming another is an error.
    senders: usize,
    /// The receiver's own sender number, if it sends too: its bytes must never come back.
    me: Option<usize>,
    /// Most bytes any one sender sends.
    per_sender: usize,
}

impl Default for Demux {
    /// Accepts any of the [`Pattern::SENDERS`] senders, any number of bytes.
    fn default() -> Self {
        Demux::expecting(Pattern::SENDERS, None, usize::MAX)
    }
}

impl Demux {
    /// A checker for a room of `senders` senders sending `per_sender` bytes each, received by
    /// sender `me` (or by a client that only listens).
    pub fn expecting(senders: usize, me: Option<usize>, per_sender: usize) -> Self {
        assert!(
            senders <= Pattern::SENDERS,
            "the pattern has {} senders",
            Pattern::SENDERS
        );
        Demux {
            seen: [0; Pattern::SENDERS],
            senders,
            me,
            per_sender,
        }
    }

    /// Feeds received bytes; `Err` describes the first byte out of place.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        const BLOCK: usize = 64;
        let mut rest = bytes;
        while let Some(&first) = rest.first() {
            let s = usize::from(first >> 4);
            if s >= self.senders {
                return Err(format!(
                    "byte {first:#04x} names sender {s}, which does not exist"
                ));
            }
            if Some(s) == self.me {
                return Err(format!("received its own bytes back (sender {s} echoed)"));
            }
            let seen = self.seen[s];
            if seen == self.per_sender {
                return Err(format!(
                    "sender {s}: more than the {} bytes it sent",
                    self.per_sender
                ));
            }
            // The longest prefix of `rest` that continues sender `s`'s stream.
            let limit = rest.len().min(self.per_sender - seen);
            let mut run = 0;
            if limit >= BLOCK {
                // The pattern repeats every PERIOD bytes and BLOCK is a multiple of it, so one
                // expected block serves every block of the run.
                let block: [u8; BLOCK] = std::array::from_fn(|i| Pattern::byte(s, seen + i));
                while run + BLOCK <= limit && rest[run..run + BLOCK] == block {
                    run += BLOCK;
                }
            }
            while run < limit && rest[run] == Pattern::byte(s, seen + run) {
                run += 1;
            }
            if run == 0 {
                return Err(format!(
                    "sender {s}: byte {seen} is {first:#04x} but should be {:#04x} (lost, duplicated or out of order)",
                    Pattern::byte(s, seen)
                ));
            }
            self.seen[s] += run;
            rest = &rest[run..];
        }
        Ok(())
    }

    /// Total bytes seen.
    pub fn total(&self) -> usize {
        self.seen.iter().sum()
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

/// The log lines (INFO and above) an in-process server emitted, with a way to wait for one.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    inner: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Logs {
    /// Waits until at least `n` lines contain `needle`; false if [`TIMEOUT`] passes first.
    /// Each line is scanned once, however many lines arrive.
    pub fn wait_for_count(&self, needle: &str, n: usize) -> bool {
        let (lines, changed) = &*self.inner;
        let deadline = Instant::now() + TIMEOUT;
        let mut guard = lines.lock().expect("log lock");
        let (mut scanned, mut found) = (0, 0);
        loop {
            found += count_lines(&guard[scanned..], needle);
            scanned = guard.len();
            if found >= n {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = changed.wait_timeout(guard, left).expect("log lock").0;
        }
    }

    /// How many lines logged so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        let lines = self.inner.0.lock().expect("log lock");
        lines.iter().filter(|l| l.contains(needle)).count()
    }
}

/// Number of lines in `lines` containing `needle`.
pub fn count_lines(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|l| l.contains(needle)).count()
}

/// A tracing layer that appends each INFO-or-higher event's message and fields to [`Logs`].
struct CaptureLayer(Logs);

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() > Level::INFO {
            return;
        }
        struct Line(String);
        impl Visit for Line {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write as _;
                let _ = write!(self.0, " {}={value:?}", field.name());
            }
        }
        let mut line = Line(format!("{} ", event.metadata().level()));
        event.record(&mut line);
        let (lines, changed) = &*self.0.inner;
        lines.lock().expect("log lock").push(line.0);
        changed.notify_all();
    }
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

/// The relay running in-process on a thread of its own, on 127.0.0.1 with an ephemeral port.
/// Its log goes to the test's captured output and to [`TestServer::logs`].
#[derive(Debug)]
pub struct TestServer {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// What the server has logged.
    pub logs: Logs,
    shutdown: Shutdown,
    done: Receiver<io::Result<Summary>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts `server_core::run` with the backend `make_backend` builds and `config`.
    #[track_caller]
    pub fn start<B, F>(make_backend: F, config: Config) -> TestServer
    where
        B: Backend,
        F: FnOnce() -> io::Result<B> + Send + 'static,
    {
        Self::start_with(make_backend, PlainTcp, config)
    }

    /// Like [`TestServer::start`], with every connection set up by `acceptor` (TLS, an access
    /// list) through `server_core::Relay`.
    #[track_caller]
    pub fn start_with<B, F, A>(make_backend: F, acceptor: A, config: Config) -> TestServer
    where
        B: Backend,
        F: FnOnce() -> io::Result<B> + Send + 'static,
        A: Acceptor + Send + 'static,
    {
        Self::start_on(loopback_listener(), make_backend, acceptor, config)
    }

    /// Like [`TestServer::start_with`], on a listener of the caller's (e.g. `[::1]:0`).
    #[track_caller]
    pub fn start_on<B, F, A>(
        listener: TcpListener,
        make_backend: F,
        acceptor: A,
        config: Config,
    ) -> TestServer
    where
        B: Backend,
        F: FnOnce() -> io::Result<B> + Send + 'static,
        A: Acceptor + Send + 'static,
    {
        let addr = listener.local_addr().expect("local_addr");
        let logs = Logs::default();
        let capture = CaptureLayer(logs.clone());
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let thread = thread::spawn(move || {
            let subscriber = tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_test_writer()
                        .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
                )
                .with(capture);
            let _guard = tracing::subscriber::set_default(subscriber);
            let backend = match make_backend() {
                Ok(backend) => backend,
                Err(e) => {
                    let _ = done_tx.send(Err(e));
                    return;
                }
            };
            let shutdown = Shutdown::new(backend.waker());
            let _ = ready_tx.send(shutdown.clone());
            let result = server_core::Relay::new(config)
                .door(listener, acceptor)
                .run(backend, &shutdown);
            let _ = done_tx.send(result);
        });
        let shutdown = match ready_rx.recv_timeout(TIMEOUT) {
            Ok(shutdown) => shutdown,
            Err(_) => panic!("server did not start: {:?}", done.try_recv()),
        };
        TestServer {
            addr,
            logs,
            shutdown,
            done,
            thread: Some(thread),
        }
    }

    /// Requests shutdown and waits (bounded) for the run to end; returns its summary.
    #[track_caller]
    pub fn stop(mut self) -> Summary {
        self.shutdown.request().expect("wake the server");
        let result = self
            .done
            .recv_timeout(TIMEOUT)
            .expect("server did not stop in time");
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread panicked");
        }
        result.expect("server run failed")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A test that panicked before `stop`: ask the server to end, but never block or panic
        // again here.
        if self.thread.is_some() {
            let _ = self.shutdown.request();
        }
    }
}

/// The `server` binary running as a child process, with its stderr collected line by line.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    lines: Receiver<String>,
    /// Every stderr line so far, in order.
    pub seen: Vec<String>,
    closed: bool,
}

impl ServerProcess {
    /// Runs `bin` with `args`, stdout and stderr piped.
    pub fn spawn(bin: &Path, args: &[&str], envs: &[(&str, &str)]) -> ServerProcess {
        let mut command = Command::new(bin);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG");
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let (tx, lines) = mpsc::channel();
        for pipe in [
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        ServerProcess {
            child,
            lines,
            seen: Vec::new(),
            closed: false,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for an output line containing `needle`; `None` if the output ends or [`TIMEOUT`]
    /// passes first.
    pub fn wait_for_line(&mut self, needle: &str) -> Option<String> {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return Some(line.clone());
        }
        let deadline = Instant::now() + TIMEOUT;
        while !self.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
            }
        }
        None
    }

    /// Waits until `n` output lines in all contain `needle`; returns how many did (fewer than
    /// `n` only if the output ended or [`TIMEOUT`] passed first).
    pub fn wait_for_count(&mut self, needle: &str, n: usize) -> usize {
        self.wait_for_any_count(&[needle], n)
    }

    /// Like [`ServerProcess::wait_for_count`], counting lines that contain any of `needles`.
    pub fn wait_for_any_count(&mut self, needles: &[&str], n: usize) -> usize {
        let matches = |line: &str| needles.iter().any(|needle| line.contains(needle));
        let mut count = self.seen.iter().filter(|l| matches(l)).count();
        let deadline = Instant::now() + TIMEOUT;
        while count < n && !self.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    count += usize::from(matches(&line));
                    self.seen.push(line);
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
            }
        }
        count
    }

    /// Waits for the process to exit (its output pipes close), killing it after [`TIMEOUT`].
    /// Returns the status and all output.
    #[track_caller]
    pub fn wait_exit(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "server did not exit within {TIMEOUT:?}; output so far:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
        let status = self.child.wait().expect("wait for the server");
        (status, self.seen.join("\n"))
    }

    /// Ends the process at once (SIGKILL on Unix, `TerminateProcess` on Windows) and reaps it:
    /// no graceful stop. Its output is still collected by [`ServerProcess::wait_exit`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a POSIX signal by name (`TERM`, `INT`) with the system's `kill` command.
    #[track_caller]
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Never leave a server running behind a failed test.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Set to `1` (CI does) to make a test that needs `nats-server` fail, not skip, when it cannot
/// start one.
pub const REQUIRE_NATS: &str = "RELAY_REQUIRE_NATS";

/// The `nats-server` binary: `$NATS_SERVER`, else the first on the `PATH`, else Debian's
/// `/usr/sbin/nats-server` (`/usr/sbin` is not on every user's `PATH`).
pub fn nats_server_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let name = format!("nats-server{}", std::env::consts::EXE_SUFFIX);
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(&name))
        .find(|p| p.is_file())
}

/// A `nats-server` child process on 127.0.0.1 and a port picked at run time, killed when
/// dropped (so a failing test leaves none behind). [`NatsServer::kill`] and
/// [`NatsServer::restart`] take it down and bring it back on the same port.
#[derive(Debug)]
pub struct NatsServer {
    process: Option<ServerProcess>,
    binary: PathBuf,
    port: u16,
}

impl NatsServer {
    /// Starts one and waits (bounded) until it says it is ready. `Err` says why it could not.
    pub fn start() -> Result<NatsServer, String> {
        let binary = nats_server_binary()
            .ok_or("nats-server not found (install Debian's nats-server, or set NATS_SERVER)")?;
        let mut last = String::new();
        // Another process may take the free port before nats-server binds it: try another.
        for _ in 0..5 {
            let port = free_port();
            match Self::launch(&binary, port) {
                Ok(process) => {
                    return Ok(NatsServer {
                        process: Some(process),
                        binary,
                        port,
                    })
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn launch(binary: &Path, port: u16) -> Result<ServerProcess, String> {
        let port_arg = port.to_string();
        let args = ["-a", "127.0.0.1", "-p", &port_arg];
        let mut process = ServerProcess::spawn(binary, &args, &[]);
        if process.wait_for_line("Server is ready").is_some() {
            return Ok(process);
        }
        process.kill();
        let (_, output) = process.wait_exit();
        Err(format!(
            "{} {} did not become ready:\n{output}",
            binary.display(),
            args.join(" ")
        ))
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL nodes connect to.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills it at once (SIGKILL): whatever it holds is lost, its clients see the connection drop.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts it again on the same port, waiting until it is ready.
    #[track_caller]
    pub fn restart(&mut self) {
        self.kill();
        match Self::launch(&self.binary, self.port) {
            Ok(process) => self.process = Some(process),
            Err(e) => panic!("cannot restart nats-server on port {}: {e}", self.port),
        }
    }
}

/// A started [`NatsServer`], or `None` after printing why the calling test is skipped. With
/// [`REQUIRE_NATS`] set, a server that cannot start fails the test instead.
#[track_caller]
pub fn nats_server_or_skip(test: &str) -> Option<NatsServer> {
    match NatsServer::start() {
        Ok(server) => Some(server),
        Err(e) if std::env::var_os(REQUIRE_NATS).is_some_and(|v| v == "1") => {
            panic!("{test}: {REQUIRE_NATS}=1 but nats-server cannot be started: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: nats-server cannot be started: {e}");
            None
        }
    }
}

/// Starts `bin args... PORT` on a free port and waits for its startup line (`listening on`),
/// trying another port (up to 5 in all) if another process took this one in between. Returns the
/// process, the port and the startup line; panics with the output if it fails otherwise.
#[track_caller]
pub fn start_on_free_port(bin: &Path, args: &[&str]) -> (ServerProcess, u16, String) {
    for _ in 0..5 {
        let port = free_port();
        let port_arg = port.to_string();
        let mut all = args.to_vec();
        all.push(&port_arg);
        let mut server = ServerProcess::spawn(bin, &all, &[]);
        if let Some(line) = server.wait_for_line("listening on") {
            return (server, port, line);
        }
        let (_, output) = server.wait_exit();
        assert!(
            output.contains("cannot listen"),
            "server failed to start:\n{output}"
        );
    }
    panic!("no free port after 5 tries");
}

/// A port that was free a moment ago (the OS picked it for a listener we then closed). Callers
/// retry if another process takes it in between.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind 0.0.0.0:0");
    listener.local_addr().expect("local_addr").port()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PER_SENDER: usize = 300;

    /// Feeds `bytes` to a checker for receiver 0 of 3 senders, in reads of `read` bytes.
    fn feed(bytes: &[u8], read: usize) -> Result<Demux, String> {
        let mut demux = Demux::expecting(3, Some(0), PER_SENDER);
        for chunk in bytes.chunks(read) {
            demux.feed(chunk)?;
        }
        Ok(demux)
    }

    /// The whole streams of senders 1 and 2, alternating in runs of `a` and `b` bytes.
    fn interleave(a: usize, b: usize) -> Vec<u8> {
        let (one, two) = (
            Pattern::bytes(1, 0, PER_SENDER),
            Pattern::bytes(2, 0, PER_SENDER),
        );
        let (mut ones, mut twos) = (one.chunks(a), two.chunks(b));
        let mut out = Vec::new();
        loop {
            let (x, y) = (ones.next(), twos.next());
            if x.is_none() && y.is_none() {
                return out;
            }
            out.extend_from_slice(x.unwrap_or_default());
            out.extend_from_slice(y.unwrap_or_default());
        }
    }

    #[test]
    fn demux_accepts_any_interleaving_and_read_size() {
        for (a, b) in [(1, 1), (7, 300), (64, 65), (300, 300), (129, 3)] {
            for read in [1, 5, 64, 1000] {
                let demux = feed(&interleave(a, b), read).expect("valid streams");
                assert_eq!(
                    &demux.seen[..3],
                    &[0, PER_SENDER, PER_SENDER],
                    "runs {a}/{b}, reads of {read}"
                );
            }
        }
    }

    #[test]
    fn demux_rejects_loss_duplication_reordering_echo_and_excess() {
        let good = interleave(64, 100);
        let mut lost = good.clone();
        lost.remove(200);
        let mut duplicated = good.clone();
        duplicated.insert(200, good[200]);
        let mut swapped = good.clone();
        swapped.swap(10, 11);
        let mut echoed = good.clone();
        echoed.insert(70, Pattern::byte(0, 0));
        let mut unknown = good.clone();
        unknown.insert(0, Pattern::byte(5, 0));
        let mut excess = good.clone();
        excess.push(good[good.len() - 1]);
        for (name, bytes) in [
            ("lost", lost),
            ("duplicated", duplicated),
            ("swapped", swapped),
            ("echoed", echoed),
            ("unknown sender", unknown),
            ("excess", excess),
        ] {
            for read in [1, 64, 4096] {
                assert!(
                    feed(&bytes, read).is_err(),
                    "{name} not caught with reads of {read}"
                );
            }
        }
    }
}
