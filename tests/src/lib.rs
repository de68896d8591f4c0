//! Helpers shared by the behaviour suite (`tests/tests/`) and the binary's black-box tests
//! (`cli/tests/`): an in-process server per backend, bounded socket reads, a self-checking byte
//! pattern, log capture, and a child-process wrapper for the `server` binary.
//!
//! Every wait here is bounded by [`TIMEOUT`] and none sleeps: tests wait for a condition (bytes, a
//! log line, a process exit), never for time to pass.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use server_core::{Backend, Config, Shutdown, Summary};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

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

/// Reads exactly `n` bytes, or fails once `timeout` has passed in total.
pub fn read_exactly(stream: &mut TcpStream, n: usize, timeout: Duration) -> io::Result<Vec<u8>> {
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
        stream.set_read_timeout(Some(left))?;
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
    stream.set_read_timeout(Some(TIMEOUT))?;
    Ok(got)
}

/// Asserts the next bytes on `stream` are exactly `expected`, printing both (escaped) if not.
#[track_caller]
pub fn expect_bytes(stream: &mut TcpStream, expected: &[u8]) {
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
pub fn sync_room(clients: &mut [TcpStream]) {
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let Some((last, others)) = clients.split_last_mut() else {
        return;
    };
    let probe = format!("<probe {}>", PROBES.fetch_add(1, Ordering::Relaxed));
    last.write_all(probe.as_bytes()).expect("send probe");
    for client in others {
        expect_bytes(client, probe.as_bytes());
    }
}

/// A byte stream that tells, byte by byte, which of up to [`Pattern::SENDERS`] senders sent it
/// and where it stood in that sender's stream: byte `i` of sender `s` is `s << 5 | i % 32`.
/// Any interleaving of chunks from different senders, split anywhere, can be checked.
#[derive(Debug, Clone, Copy)]
pub struct Pattern;

impl Pattern {
    /// How many distinct senders the pattern can tell apart.
    pub const SENDERS: usize = 8;

    /// Bytes `start..start + len` of `sender`'s stream.
    pub fn bytes(sender: usize, start: usize, len: usize) -> Vec<u8> {
        assert!(sender < Self::SENDERS);
        (start..start + len)
            .map(|i| ((sender << 5) | (i % 32)) as u8)
            .collect()
    }
}

/// Checks a received stream against [`Pattern`]: every sender's bytes complete and in order.
#[derive(Debug, Default)]
pub struct Demux {
    /// Bytes seen so far from each sender.
    pub seen: [usize; Pattern::SENDERS],
}

impl Demux {
    /// Feeds received bytes; `Err` names the first byte out of place.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        for &b in bytes {
            let sender = usize::from(b >> 5);
            let expected = (self.seen[sender] % 32) as u8;
            if b & 31 != expected {
                return Err(format!(
                    "sender {sender}: byte {} is {} but should be {expected}",
                    self.seen[sender],
                    b & 31
                ));
            }
            self.seen[sender] += 1;
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
        let listener = loopback_listener();
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
            let _ = done_tx.send(server_core::run(listener, backend, &config, &shutdown));
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

/// A port that was free a moment ago (the OS picked it for a listener we then closed). Callers
/// retry if another process takes it in between.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind 0.0.0.0:0");
    listener.local_addr().expect("local_addr").port()
}
