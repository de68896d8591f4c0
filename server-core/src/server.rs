//! The event loop: accept, read once per readable socket, fan out shared chunks, flush once per
//! connection, drain on shutdown. Sockets are std's; readiness comes from a [`Backend`].

use std::fmt;
use std::io::{self, IoSlice, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, trace, warn};

use crate::backend::{AsBorrowedSocket, Backend, Events, Interest, Token, Wake};
use crate::framing::{self, Framing};
use crate::link::{Acceptor, Admission, Link, PlainTcp, Uplink, UplinkStats};
use crate::policy::{self, Progress, Verdict};
use crate::pool::Pool;
use crate::queue::OutQueue;

/// Tunables of the event loop. `Config::default()` is what `server <port>` runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Size of the one read buffer shared by all connections; also the largest chunk relayed.
    pub read_buffer: usize,
    /// Most connections accepted per wakeup, so a connect storm cannot starve the room.
    pub accept_burst: usize,
    /// Most unsent bytes one client may have queued; past it the client is a slow consumer and is
    /// disconnected, so one stalled reader cannot grow the server without bound.
    pub max_pending: usize,
    /// How long bytes may wait for a client with no write progress at all before it is
    /// disconnected as a slow consumer. `None`: only `max_pending` applies.
    pub write_timeout: Option<Duration>,
    /// How long pending output may take to drain at shutdown.
    pub drain_timeout: Duration,
    /// How long accepting pauses after an accept error that is not transient (typically running
    /// out of file descriptors), so it cannot become a busy loop. A closed connection ends the
    /// pause early.
    pub accept_backoff: Duration,
    /// Most clients connected at once. Clients beyond it (or beyond what the backend can hold,
    /// see [`Backend::capacity`]) are accepted, told nothing, logged as `server full` and closed
    /// at once, rather than left waiting in the kernel's backlog.
    pub max_clients: usize,
    /// Raw chunks (the seed's behaviour) or whole lines.
    pub framing: Framing,
    /// Log a statistics line this often; `None`: only the summary at the end.
    pub stats_interval: Option<Duration>,
    /// How long a layered link (TLS) may take to become established (see
    /// [`Link::is_established`]) before the client is cut. Plain TCP is established at once.
    pub handshake_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            read_buffer: 64 * 1024,
            accept_burst: 64,
            max_pending: 16 * 1024 * 1024,
            write_timeout: Some(Duration::from_secs(10)),
            drain_timeout: Duration::from_secs(2),
            accept_backoff: Duration::from_millis(100),
            max_clients: usize::MAX,
            framing: Framing::Raw,
            stats_interval: None,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Asks a running [`run`] to stop, from any thread. Cheap to clone.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

struct ShutdownInner {
    requested: AtomicBool,
    waker: Box<dyn Wake>,
}

impl Shutdown {
    /// A handle that wakes the loop through `waker` (from [`Backend::waker`]).
    pub fn new(waker: impl Wake) -> Self {
        Shutdown {
            inner: Arc::new(ShutdownInner {
                requested: AtomicBool::new(false),
                waker: Box::new(waker),
            }),
        }
    }

    /// Requests the stop and wakes the loop. A flag alone would not do: `wait` retries `EINTR`,
    /// so only the waker makes it return.
    ///
    /// # Errors
    ///
    /// The waker's error; the flag is set regardless and the loop sees it on its next turn.
    pub fn request(&self) -> io::Result<()> {
        self.inner.requested.store(true, Ordering::SeqCst);
        self.inner.waker.wake()
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("requested", &self.is_requested())
            .finish_non_exhaustive()
    }
}

/// Why a client was disconnected. Every disconnect is logged with one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The client closed its side (end of stream) or reset the connection.
    PeerClosed,
    /// Reading failed with an unexpected error.
    ReadError,
    /// Writing failed with an unexpected error (a reset or broken pipe counts as
    /// [`DropReason::PeerClosed`]).
    WriteError,
    /// More than [`Config::max_pending`] bytes were queued for it.
    SlowConsumer,
    /// Bytes waited for it longer than [`Config::write_timeout`] without any write progress.
    WriteTimeout,
    /// Changing its registration with the backend failed.
    BackendError,
    /// In line mode, it sent a line longer than the limit.
    LineTooLong,
    /// Its link failed before it was established (a failed TLS handshake, or plaintext sent to a
    /// TLS port).
    Handshake,
    /// Its link was not established within [`Config::handshake_timeout`].
    HandshakeTimeout,
    /// The server stopped.
    Shutdown,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::PeerClosed => "peer closed",
            DropReason::ReadError => "read error",
            DropReason::WriteError => "write error",
            DropReason::SlowConsumer => "slow consumer",
            DropReason::WriteTimeout => "write timeout",
            DropReason::BackendError => "backend error",
            DropReason::LineTooLong => "line too long",
            DropReason::Handshake => "handshake failed",
            DropReason::HandshakeTimeout => "handshake timeout",
            DropReason::Shutdown => "server shutdown",
        })
    }
}

/// What a run did, returned when it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Connections accepted and registered.
    pub accepted: u64,
    /// Most connections open at once.
    pub peak_clients: usize,
    /// Connections still open when the loop stopped (before they were closed).
    pub open_at_stop: usize,
    /// Messages received: chunks in raw mode, whole lines in line mode.
    pub messages_in: u64,
    /// Messages queued for delivery, one per message per receiver.
    pub messages_out: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Disconnects because the client left.
    pub peer_closed: u64,
    /// Disconnects because of read, write or backend errors.
    pub errors: u64,
    /// Disconnects because the client was a slow consumer (over the byte limit).
    pub slow_consumers: u64,
    /// Disconnects because bytes waited past the write timeout.
    pub write_timeouts: u64,
    /// Disconnects because of a line over the line-mode limit.
    pub long_lines: u64,
    /// Disconnects because a link failed or timed out before it was established.
    pub handshakes_failed: u64,
    /// Bytes queued for clients that were disconnected before they could be written.
    pub bytes_dropped: u64,
    /// Connections accepted and closed at once because the server was full.
    pub refused_full: u64,
    /// Connections accepted with the spare descriptor and closed at once because the process
    /// was out of file descriptors.
    pub refused_no_fds: u64,
    /// Connections the acceptor refused (an access list) and closed at once.
    pub refused_by_acceptor: u64,
    /// Messages received from other relays through the uplink.
    pub cluster_in: u64,
    /// The uplink's own counters, when the room has one.
    pub uplink: Option<UplinkStats>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} clients served (peak {}), {} messages / {} bytes in, {} messages / {} bytes out; \
             cut: {} left, {} errors, {} slow consumers, {} write timeouts, {} long lines, \
             {} failed handshakes ({} bytes undelivered); refused: {} server full, {} out of \
             descriptors, {} by access list",
            self.accepted,
            self.peak_clients,
            self.messages_in,
            self.bytes_in,
            self.messages_out,
            self.bytes_out,
            self.peer_closed,
            self.errors,
            self.slow_consumers,
            self.write_timeouts,
            self.long_lines,
            self.handshakes_failed,
            self.bytes_dropped,
            self.refused_full,
            self.refused_no_fds,
            self.refused_by_acceptor
        )?;
        if let Some(uplink) = &self.uplink {
            write!(
                f,
                "; cluster: {} messages received, {} published, {} not published",
                self.cluster_in, uplink.published, uplink.unpublished
            )?;
        }
        Ok(())
    }
}

/// Runs the relay on `listener` until `shutdown` is requested or the backend fails.
///
/// Every chunk one client sends is forwarded to every other client, never back to its sender.
/// On a requested shutdown it stops accepting and reading, gives pending output up to
/// [`Config::drain_timeout`] to flush, closes every connection and returns the run's [`Summary`].
///
/// # Errors
///
/// Only failures of the server as a whole: making the listener non-blocking, registering it, or
/// [`Backend::wait`] itself failing. Every connection is closed before the error is returned.
/// Errors on one connection never end the run; that connection is dropped and logged.
pub fn run<B: Backend>(
    listener: TcpListener,
    backend: B,
    config: &Config,
    shutdown: &Shutdown,
) -> io::Result<Summary> {
    run_with(listener, backend, PlainTcp, None, config, shutdown)
}

/// [`run`] with every connection set up by `acceptor` (TLS, an access list) and, with an
/// `uplink`, the room shared with other relays: every message a local client sends is also
/// published through it, and every message it receives reaches every local client.
///
/// # Errors
///
/// As [`run`].
pub fn run_with<B: Backend, A: Acceptor>(
    listener: TcpListener,
    mut backend: B,
    acceptor: A,
    uplink: Option<Box<dyn Uplink>>,
    config: &Config,
    shutdown: &Shutdown,
) -> io::Result<Summary> {
    listener.set_nonblocking(true)?;
    backend.register(listener.borrowed(), Token::LISTENER, Interest::READABLE)?;
    let mut room = Room::new(config.clone(), backend.capacity(), acceptor);
    if let Some(uplink) = &uplink {
        info!("sharing the room through {}", uplink.describe());
    }
    room.uplink = uplink;
    // A duplicate of the listener is the spare descriptor: closed to make room for one accept
    // when the process runs out, so the excess client gets a clean close instead of hanging.
    room.spare = listener.try_clone().ok();
    let result = room.serve(&listener, &mut backend, shutdown);
    if result.is_ok() {
        room.drain(&listener, &mut backend);
    }
    room.close_all(&mut backend);
    // Deregister while the listener is still open; it is closed when dropped on return.
    let _ = backend.deregister(listener.borrowed());
    room.summary.uplink = room.uplink.as_ref().map(|u| u.stats());
    result.map(|()| room.summary)
}

/// One client.
struct Connection<L> {
    link: L,
    /// The OS's socket number, for the seed's "sd N" log vocabulary.
    sd: u64,
    peer: Option<SocketAddr>,
    queue: OutQueue,
    /// What the backend currently has registered for this socket.
    registered: Interest,
    /// Since when its pending bytes have not moved (the write timeout's clock).
    progress: Progress,
    /// Already in the flush list this turn.
    dirty: bool,
    /// Its id in the room: never reused while the server runs (unlike `sd` or the token).
    id: u64,
    /// Line mode: the bytes after its last newline, waiting for the rest of the line.
    partial: Vec<u8>,
    /// In the room: its link is established, so it receives what others send.
    member: bool,
    /// When it was accepted (the handshake timeout's clock).
    opened: Instant,
}

/// Lends a link to [`OutQueue::write_to`] as an `io::Write` of application bytes.
struct AppBytes<'a, L>(&'a mut L);

impl<L: Link> Write for AppBytes<'_, L> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send(&[IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.send(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Most messages taken from the uplink per turn, so other relays cannot starve local clients.
const UPLINK_BURST: usize = 256;

/// The event loop's state, apart from the backend and the listener.
struct Room<A: Acceptor> {
    config: Config,
    acceptor: A,
    pool: Pool<Connection<A::Link>>,
    /// Connections whose link holds input already read from the socket: read again next turn.
    read_again: Vec<Token>,
    /// Connections accepted but not yet established (handshaking).
    handshaking: usize,
    /// The room's connection to other relays, if it has one.
    uplink: Option<Box<dyn Uplink>>,
    /// The uplink had more messages than one turn takes.
    uplink_more: bool,
    /// The one read buffer, reused for every read.
    buf: Vec<u8>,
    /// Connections to flush at the end of this turn.
    dirty: Vec<Token>,
    /// Connections the slow-consumer policy cuts, found during a fan-out or a sweep.
    overflowed: Vec<(Token, DropReason)>,
    events: Events,
    /// While set, accepting is paused until this instant.
    accept_paused_until: Option<Instant>,
    /// A connection closed during a pause: a descriptor is free, so try accepting again.
    early_resume: bool,
    /// Most connections at once: the configured limit, lowered to what the backend can hold
    /// beside the listener.
    max_clients: usize,
    /// The time of this turn, read once after each wait.
    now: Instant,
    /// When to look for connections past the write timeout; `None` while nothing is pending
    /// anywhere, so an idle server never wakes.
    next_sweep: Option<Instant>,
    /// The spare descriptor (see [`run`]); `None` while it is spent.
    spare: Option<TcpListener>,
    /// Clients refused for want of descriptors in the current episode; `None` outside one.
    out_of_fds: Option<u64>,
    /// The last client id handed out.
    last_id: u64,
    /// Line mode: the lines one read completed, reused for every read.
    lines: Vec<u8>,
    /// When the next statistics line is due, if they are on.
    next_stats: Option<Instant>,
    summary: Summary,
}

impl<A: Acceptor> Room<A> {
    fn new(config: Config, backend_capacity: Option<usize>, acceptor: A) -> Self {
        let backend_limit = backend_capacity.map_or(usize::MAX, |c| c.saturating_sub(1));
        Room {
            acceptor,
            read_again: Vec::new(),
            handshaking: 0,
            uplink: None,
            uplink_more: false,
            max_clients: config.max_clients.min(backend_limit),
            now: Instant::now(),
            next_sweep: None,
            spare: None,
            out_of_fds: None,
            last_id: 0,
            lines: Vec::new(),
            next_stats: config.stats_interval.map(|t| Instant::now() + t),
            buf: vec![0; config.read_buffer.max(1)],
            config,
            pool: Pool::new(),
            dirty: Vec::new(),
            overflowed: Vec::new(),
            events: Events::with_capacity(1024),
            accept_paused_until: None,
            early_resume: false,
            summary: Summary::default(),
        }
    }

    fn serve<B: Backend>(
        &mut self,
        listener: &TcpListener,
        backend: &mut B,
        shutdown: &Shutdown,
    ) -> io::Result<()> {
        while !shutdown.is_requested() {
            let wake_at = [self.accept_paused_until, self.next_sweep, self.next_stats]
                .into_iter()
                .flatten()
                .min();
            let timeout = if self.read_again.is_empty() && !self.uplink_more {
                wake_at.map(|at| at.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO) // work is waiting that no readiness will announce
            };
            backend.wait(&mut self.events, timeout)?;
            self.now = Instant::now();
            let mut again = std::mem::take(&mut self.read_again);
            for token in again.drain(..) {
                self.read_once(token, backend);
            }
            if self.read_again.is_empty() {
                self.read_again = again; // keep the allocation
            }
            self.receive_from_uplink(backend);
            let events = std::mem::take(&mut self.events);
            for event in &events {
                trace!(
                    token = event.token.0,
                    readable = event.readable,
                    writable = event.writable,
                    "event"
                );
                match event.token {
                    Token::LISTENER => self.accept_burst(listener, backend),
                    Token::WAKER => {}
                    token => {
                        if event.is_readable() {
                            self.read_once(token, backend);
                        }
                        if event.is_writable() {
                            self.mark_dirty(token);
                        }
                    }
                }
            }
            self.events = events;
            self.flush_dirty(backend);
            if self.next_sweep.is_some_and(|at| self.now >= at) {
                self.sweep(backend);
            }
            if let (Some(at), Some(every)) = (self.next_stats, self.config.stats_interval) {
                if self.now >= at {
                    self.log_stats();
                    // Keep the cadence; after a long stall, start it again from now.
                    let next = at + every;
                    self.next_stats = Some(if next > self.now {
                        next
                    } else {
                        self.now + every
                    });
                }
            }
            let early = std::mem::take(&mut self.early_resume);
            self.resume_accepting_if_due(listener, backend, early);
        }
        Ok(())
    }

    /// Delivers up to [`UPLINK_BURST`] messages from other relays to every local client.
    fn receive_from_uplink<B: Backend>(&mut self, backend: &mut B) {
        self.uplink_more = false;
        for _ in 0..UPLINK_BURST {
            let Some(message) = self.uplink.as_mut().and_then(|u| u.receive()) else {
                return;
            };
            let messages = match self.config.framing {
                Framing::Raw => 1,
                Framing::Lines(_) => message.iter().filter(|&&b| b == b'\n').count() as u64,
            };
            self.summary.cluster_in += 1;
            // No connection has the listener's token: every member receives it.
            self.fan_out(Token::LISTENER, Rc::from(message), messages, backend);
        }
        self.uplink_more = true;
    }

    /// One statistics line: the summary so far, with the clients connected now.
    fn log_stats(&mut self) {
        self.summary.uplink = self.uplink.as_ref().map(|u| u.stats());
        info!(
            clients = self.pool.len(),
            peak = self.summary.peak_clients,
            "stats: {} clients now; {}",
            self.pool.len(),
            self.summary
        );
    }

    /// Cuts every connection whose pending bytes made no progress for the write timeout, and
    /// schedules the next look only if bytes are still pending somewhere.
    fn sweep<B: Backend>(&mut self, backend: &mut B) {
        let (now, max_pending, timeout) =
            (self.now, self.config.max_pending, self.config.write_timeout);
        let handshake_timeout = self.config.handshake_timeout;
        let mut expired = std::mem::take(&mut self.overflowed);
        let mut pending_somewhere = false;
        for (token, conn) in self.pool.iter_mut() {
            if !conn.member {
                if now.saturating_duration_since(conn.opened) >= handshake_timeout {
                    expired.push((token, DropReason::HandshakeTimeout));
                }
                continue;
            }
            match policy::verdict(conn.queue.len(), &conn.progress, max_pending, timeout, now) {
                Some(Verdict::Stalled) => expired.push((token, DropReason::WriteTimeout)),
                Some(Verdict::OverLimit) => expired.push((token, DropReason::SlowConsumer)),
                None => pending_somewhere |= !conn.queue.is_empty(),
            }
        }
        for (token, reason) in expired.drain(..) {
            self.remove(token, reason, None, backend);
        }
        self.overflowed = expired;
        self.next_sweep = None;
        if let (true, Some(t)) = (pending_somewhere, timeout) {
            self.sweep_within(policy::sweep_interval(t));
        }
        if self.handshaking > 0 {
            self.sweep_within(policy::sweep_interval(handshake_timeout));
        }
    }

    /// Makes sure a sweep happens within `interval` from now.
    fn sweep_within(&mut self, interval: Duration) {
        let at = self.now + interval;
        self.next_sweep = Some(self.next_sweep.map_or(at, |next| next.min(at)));
    }

    /// Shutdown: stop accepting and reading, give pending output until the drain deadline, and
    /// close each connection as soon as its queue is empty.
    fn drain<B: Backend>(&mut self, listener: &TcpListener, backend: &mut B) {
        self.summary.open_at_stop = self.pool.len();
        if let Err(e) = backend.reregister(listener.borrowed(), Token::LISTENER, Interest::NONE) {
            debug!(error = %e, "could not pause the listener for the drain");
        }
        let deadline = Instant::now() + self.config.drain_timeout;
        for token in self.pool.tokens() {
            self.flush_for_drain(token, backend);
        }
        let pending: usize = self.pool.len();
        if pending > 0 {
            info!(
                clients = pending,
                timeout_ms = self.config.drain_timeout.as_millis() as u64,
                "draining pending output"
            );
        }
        while !self.pool.is_empty() {
            let now = Instant::now();
            self.now = now;
            if now >= deadline {
                warn!(
                    clients = self.pool.len(),
                    "drain timed out; closing the rest with output unsent"
                );
                break;
            }
            if let Err(e) = backend.wait(&mut self.events, Some(deadline - now)) {
                warn!(error = %e, "wait failed during the drain");
                break;
            }
            let events = std::mem::take(&mut self.events);
            for event in &events {
                if !event.token.is_reserved() {
                    self.flush_for_drain(event.token, backend);
                }
            }
            self.events = events;
        }
    }

    /// Writes what it can to one connection (write interest only), closing it once empty.
    fn flush_for_drain<B: Backend>(&mut self, token: Token, backend: &mut B) {
        self.flush(token, Interest::NONE, backend);
        if self
            .pool
            .get(token)
            .is_some_and(|conn| conn.queue.is_empty() && !conn.link.wants_write())
        {
            self.remove(token, DropReason::Shutdown, None, backend);
        }
    }

    fn close_all<B: Backend>(&mut self, backend: &mut B) {
        for token in self.pool.tokens() {
            self.remove(token, DropReason::Shutdown, None, backend);
        }
    }

    /// Accepts up to `accept_burst` pending connections.
    fn accept_burst<B: Backend>(&mut self, listener: &TcpListener, backend: &mut B) {
        if self.accept_paused_until.is_some() {
            return; // a stale event from before the pause
        }
        // Whether the previous accept failed with an error we cannot name portably.
        let mut failed_before = false;
        for _ in 0..self.config.accept_burst {
            match listener.accept() {
                Ok((stream, peer)) if self.pool.len() >= self.max_clients => {
                    failed_before = false;
                    self.refuse_full(stream.raw_number(), peer, None);
                    drop(stream);
                }
                Ok((stream, peer)) => {
                    failed_before = false;
                    self.add(stream, peer, backend);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // The client gave up before we got to it, or a signal arrived: nothing to do.
                // (Wine reports a connection reset while in the backlog as WSAENOTCONN.)
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::NotConnected
                    ) =>
                {
                    debug!(error = %e, "accept: transient error, skipped");
                }
                // Linux reports some errors pending on the new connection itself (EPROTO,
                // EHOSTUNREACH, ...; see accept(2)) from accept, and that connection is then gone:
                // the next accept goes on. Running out of descriptors instead fails again at once
                // on the same connection, so only a repeated failure is treated as exhaustion.
                Err(e) if !failed_before => {
                    failed_before = true;
                    debug!(error = %e, "accept: transient error, skipped");
                }
                Err(e) => {
                    // Typically EMFILE/ENFILE: out of descriptors. Log once per episode.
                    if self.out_of_fds.is_none() {
                        warn!(
                            clients = self.pool.len(),
                            "accept failed: {e}; refusing new clients until some leave"
                        );
                        self.out_of_fds = Some(0);
                    }
                    if self.refuse_with_spare(listener) {
                        continue;
                    }
                    // No spare to spend: the pending connection stays in the backlog and a
                    // level-triggered listener would fire again at once, so pause instead of
                    // spinning. A closed connection ends the pause early.
                    debug!(
                        backoff_ms = self.config.accept_backoff.as_millis() as u64,
                        "pausing new connections"
                    );
                    self.accept_paused_until = Some(Instant::now() + self.config.accept_backoff);
                    if let Err(e) =
                        backend.reregister(listener.borrowed(), Token::LISTENER, Interest::NONE)
                    {
                        warn!(error = %e, "could not pause the listener");
                    }
                    return;
                }
            }
        }
    }

    /// Spends the spare descriptor to accept the client at the head of the backlog and close it
    /// at once (it sees a clean close rather than hanging), then takes the spare back. Returns
    /// whether the spare is back, i.e. whether accepting may go on.
    fn refuse_with_spare(&mut self, listener: &TcpListener) -> bool {
        let Some(spare) = self.spare.take() else {
            return false;
        };
        drop(spare);
        if let Ok((stream, peer)) = listener.accept() {
            let refused = self.out_of_fds.get_or_insert(0);
            *refused += 1;
            self.summary.refused_no_fds += 1;
            debug!(%peer, "out of descriptors: refusing {peer}");
            drop(stream);
        }
        self.spare = listener.try_clone().ok();
        self.spare.is_some()
    }

    /// Ends an accept pause once its deadline passed, or at once when `early` (a descriptor was
    /// just freed).
    fn resume_accepting_if_due<B: Backend>(
        &mut self,
        listener: &TcpListener,
        backend: &mut B,
        early: bool,
    ) {
        let Some(until) = self.accept_paused_until else {
            return;
        };
        if early || Instant::now() >= until {
            match backend.reregister(listener.borrowed(), Token::LISTENER, Interest::READABLE) {
                Ok(()) => {
                    self.accept_paused_until = None;
                    debug!("accepting new connections again");
                }
                Err(e) => warn!(error = %e, "could not resume the listener"),
            }
        }
    }

    fn add<B: Backend>(&mut self, stream: TcpStream, peer: SocketAddr, backend: &mut B) {
        // An IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d; log it as a.b.c.d.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let sd = stream.raw_number();
        // Accepted sockets inherit non-blocking mode on BSDs but not on Linux or Windows.
        if let Err(e) = stream.set_nonblocking(true) {
            warn!(sd, %peer, error = %e, "cannot make the new connection non-blocking; closing it");
            return;
        }
        // Relayed chunks are already batched per wakeup; Nagle would only add latency.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(sd, error = %e, "TCP_NODELAY not set");
        }
        if let Some(refused) = self.out_of_fds.take() {
            info!(
                refused,
                "accepting new clients again ({refused} refused meanwhile)"
            );
        }
        let link = match self.acceptor.accept(stream, peer) {
            Ok(Admission::Admit(link)) => link,
            Ok(Admission::Refuse) => {
                self.summary.refused_by_acceptor += 1;
                return;
            }
            Err(e) => {
                warn!(sd, %peer, error = %e, "cannot set up the new connection; closing it");
                return;
            }
        };
        let id = self.last_id + 1;
        let member = link.is_established();
        let now = self.now;
        let inserted = self.pool.insert_with(|token| {
            backend.register(link.borrowed(), token, Interest::READABLE)?;
            Ok(Connection {
                link,
                sd,
                peer: Some(peer),
                queue: OutQueue::new(),
                registered: Interest::READABLE,
                progress: Progress::default(),
                dirty: false,
                id,
                partial: Vec::new(),
                member,
                opened: now,
            })
        });
        match inserted {
            Ok(token) => {
                self.last_id = id;
                self.summary.accepted += 1;
                self.summary.peak_clients = self.summary.peak_clients.max(self.pool.len());
                info!(sd, id, %peer, clients = self.pool.len(), "New incoming connection on sd {sd}");
                if member {
                    self.announce(token, id, "joined", backend);
                } else {
                    self.handshaking += 1;
                    self.sweep_within(policy::sweep_interval(self.config.handshake_timeout));
                }
            }
            // The stream was never registered and is closed as it drops here.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                // The backend cannot hold this socket (select: a descriptor past FD_SETSIZE).
                self.refuse_full(sd, peer, Some(&e));
            }
            Err(e) => {
                warn!(sd, %peer, error = %e, "cannot register the new connection; closing it")
            }
        }
    }

    /// Logs and counts a client the server has no room for; the caller closes its stream. The
    /// client sees its connection accepted and then closed, instead of hanging in the backlog.
    fn refuse_full(&mut self, sd: u64, peer: SocketAddr, error: Option<&io::Error>) {
        self.summary.refused_full += 1;
        let error = error.map(tracing::field::display);
        warn!(
            sd, %peer, clients = self.pool.len(), max_clients = self.max_clients, error,
            "server full: refusing sd {sd} from {peer}"
        );
    }

    /// One read per readable socket per wakeup, so one fast sender cannot starve the rest.
    fn read_once<B: Backend>(&mut self, token: Token, backend: &mut B) {
        let Some(conn) = self.pool.get_mut(token) else {
            return; // spurious: the connection is already gone
        };
        let result = conn.link.recv(&mut self.buf);
        // Still open: a layer may have made progress of its own (a handshake step).
        if matches!(result, Ok(n) if n > 0) || is_blocked(&result) {
            if conn.link.has_buffered_input() {
                self.read_again.push(token);
            }
            if conn.link.wants_write() && !conn.dirty {
                conn.dirty = true;
                self.dirty.push(token);
            }
            if !conn.member && conn.link.is_established() {
                self.establish(token, backend);
            }
        }
        let Some(conn) = self.pool.get_mut(token) else {
            return;
        };
        match result {
            Ok(0) => self.remove(token, DropReason::PeerClosed, None, backend),
            Ok(n) => {
                let sd = conn.sd;
                self.summary.bytes_in += n as u64;
                debug!(sd, bytes = n, "{n} bytes received from sd {sd}");
                let (chunk, messages): (Rc<[u8]>, u64) = match &self.config.framing {
                    Framing::Raw => (Rc::from(&self.buf[..n]), 1),
                    Framing::Lines(opts) => {
                        let data = &self.buf[..n];
                        match framing::feed(&mut conn.partial, data, conn.id, opts, &mut self.lines)
                        {
                            Ok(0) => return, // a partial line: wait for the rest
                            Ok(lines) => (Rc::from(&self.lines[..]), lines as u64),
                            Err(too_long) => {
                                let max = opts.max_line;
                                let e = io::Error::new(
                                    io::ErrorKind::InvalidData,
                                    format!("{too_long}; the limit is {max}"),
                                );
                                return self.remove(
                                    token,
                                    DropReason::LineTooLong,
                                    Some(&e),
                                    backend,
                                );
                            }
                        }
                    }
                };
                self.summary.messages_in += messages;
                if let Some(uplink) = &mut self.uplink {
                    uplink.publish(&chunk);
                }
                self.fan_out(token, chunk, messages, backend);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                let reason = if conn.member {
                    io_reason(&e, DropReason::ReadError)
                } else {
                    DropReason::Handshake
                };
                self.remove(token, reason, Some(&e), backend)
            }
        }
    }

    /// A link just became established: the client joins the room and its handshake clock stops.
    fn establish<B: Backend>(&mut self, token: Token, backend: &mut B) {
        let Some(conn) = self.pool.get_mut(token) else {
            return;
        };
        conn.member = true;
        let (sd, id) = (conn.sd, conn.id);
        self.handshaking -= 1;
        debug!(sd, id, "sd {sd} established");
        self.announce(token, id, "joined", backend);
    }

    /// Queues one shared chunk for every connection but its sender.
    fn fan_out<B: Backend>(
        &mut self,
        from: Token,
        chunk: Rc<[u8]>,
        messages: u64,
        backend: &mut B,
    ) {
        let max_pending = self.config.max_pending;
        for (token, conn) in self.pool.iter_mut() {
            if token == from || !conn.member {
                continue;
            }
            conn.queue.push(Rc::clone(&chunk));
            self.summary.messages_out += messages;
            if conn.queue.len() > max_pending {
                self.overflowed.push((token, DropReason::SlowConsumer));
            } else if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(token);
            }
        }
        let mut overflowed = std::mem::take(&mut self.overflowed);
        for (token, reason) in overflowed.drain(..) {
            self.remove(token, reason, None, backend);
        }
        self.overflowed = overflowed;
    }

    fn mark_dirty(&mut self, token: Token) {
        if let Some(conn) = self.pool.get_mut(token) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(token);
            }
        }
    }

    /// Writes eagerly to every connection that got data or became writable this turn.
    fn flush_dirty<B: Backend>(&mut self, backend: &mut B) {
        let mut batch = std::mem::take(&mut self.dirty);
        while !batch.is_empty() {
            for token in batch.drain(..) {
                let Some(conn) = self.pool.get_mut(token) else {
                    continue;
                };
                conn.dirty = false;
                self.flush(token, Interest::READABLE, backend);
            }
            // A client found gone while writing may have queued notices for others (line
            // mode): they were marked into `self.dirty` meanwhile, so flush them in this pass.
            std::mem::swap(&mut batch, &mut self.dirty);
        }
        self.dirty = batch;
    }

    /// Flushes one connection, then registers `base` plus write interest iff bytes remain.
    fn flush<B: Backend>(&mut self, token: Token, base: Interest, backend: &mut B) {
        let Some(conn) = self.pool.get_mut(token) else {
            return;
        };
        let written = if conn.queue.is_empty() {
            Ok(0)
        } else {
            conn.queue.write_to(&mut AppBytes(&mut conn.link))
        };
        match written.and_then(|n| conn.link.flush_own().map(|()| n)) {
            Ok(n) => {
                self.summary.bytes_out += n as u64;
                conn.progress.after_flush(n, conn.queue.len(), self.now);
                if let (false, None, Some(t)) = (
                    conn.queue.is_empty(),
                    self.next_sweep,
                    self.config.write_timeout,
                ) {
                    self.next_sweep = Some(self.now + policy::sweep_interval(t));
                }
                if n > 0 {
                    trace!(
                        sd = conn.sd,
                        bytes = n,
                        pending = conn.queue.len(),
                        "flushed"
                    );
                }
            }
            Err(e) => {
                let reason = if conn.member {
                    io_reason(&e, DropReason::WriteError)
                } else {
                    DropReason::Handshake
                };
                return self.remove(token, reason, Some(&e), backend);
            }
        }
        let wanted = if conn.queue.is_empty() && !conn.link.wants_write() {
            base
        } else {
            base | Interest::WRITABLE
        };
        if wanted != conn.registered {
            match backend.reregister(conn.link.borrowed(), token, wanted) {
                Ok(()) => conn.registered = wanted,
                Err(e) => self.remove(token, DropReason::BackendError, Some(&e), backend),
            }
        }
    }

    /// Deregisters, logs why (one line per client), and closes one connection. The only place
    /// a connection is closed. In line mode a client that leaves gets its unterminated last line
    /// delivered, and with `announce` the room hears that it left.
    fn remove<B: Backend>(
        &mut self,
        token: Token,
        reason: DropReason,
        error: Option<&io::Error>,
        backend: &mut B,
    ) {
        let Some(mut conn) = self.pool.remove(token) else {
            return;
        };
        // Deregister while the socket is still open. An error means the backend no longer holds
        // it, which is the state we want; the socket is closed below either way.
        let _ = backend.deregister(conn.link.borrowed());
        let (sd, id, member) = (conn.sd, conn.id, conn.member);
        if !member {
            self.handshaking -= 1;
        }
        let peer = conn.peer.map(|p| p.to_string()).unwrap_or_default();
        let pending = conn.queue.clear();
        self.summary.bytes_dropped += pending as u64;
        let partial = std::mem::take(&mut conn.partial);
        // Closed before the log line, so whoever reads "removing connection" may rely on it.
        drop(conn);
        let clients = self.pool.len();
        let error = error.map(tracing::field::display);
        match reason {
            DropReason::PeerClosed => {
                self.summary.peer_closed += 1;
                info!(
                    sd, id, %peer, %reason, error, clients,
                    "Connection closed for sd {sd}; removing connection with sd {sd}"
                );
            }
            DropReason::SlowConsumer => {
                self.summary.slow_consumers += 1;
                warn!(
                    sd, id, %peer, %reason, pending, max_pending = self.config.max_pending, clients,
                    "sd {sd} ({peer}) is a slow consumer: {pending} bytes pending exceed the \
                     limit; removing connection with sd {sd}, {pending} bytes dropped"
                );
            }
            DropReason::WriteTimeout => {
                self.summary.write_timeouts += 1;
                let timeout_s = self.config.write_timeout.unwrap_or_default().as_secs_f64();
                warn!(
                    sd, id, %peer, %reason, pending, timeout_s, clients,
                    "sd {sd} ({peer}) made no write progress for {timeout_s} s (write timeout); \
                     removing connection with sd {sd}, {pending} bytes dropped"
                );
            }
            DropReason::LineTooLong => {
                self.summary.long_lines += 1;
                warn!(
                    sd, id, %peer, %reason, error, pending, clients,
                    "sd {sd} ({peer}) sent a line over the limit; removing connection with sd {sd}"
                );
            }
            DropReason::Handshake | DropReason::HandshakeTimeout => {
                self.summary.handshakes_failed += 1;
                let timeout_s = self.config.handshake_timeout.as_secs_f64();
                let error = match error {
                    Some(e) => e.to_string(),
                    None => format!("not established within {timeout_s} s"),
                };
                warn!(
                    sd, id, %peer, %reason, %error, clients,
                    "sd {sd} ({peer}): {reason} ({error}); removing connection with sd {sd}"
                );
            }
            DropReason::Shutdown => debug!(sd, id, pending, "closing sd {sd} at shutdown"),
            DropReason::ReadError | DropReason::WriteError | DropReason::BackendError => {
                self.summary.errors += 1;
                warn!(
                    sd, id, %peer, %reason, error, pending, clients,
                    "dropping sd {sd}: {reason}; removing connection with sd {sd}"
                );
            }
        }
        if self.accept_paused_until.is_some() {
            self.early_resume = true;
        }
        if reason != DropReason::Shutdown && member {
            self.farewell(token, id, partial, reason, backend);
        }
    }

    /// Line mode: delivers a leaving client's unterminated last line (if it left rather than
    /// being cut), then announces its departure if asked to.
    fn farewell<B: Backend>(
        &mut self,
        token: Token,
        id: u64,
        mut partial: Vec<u8>,
        reason: DropReason,
        backend: &mut B,
    ) {
        let Framing::Lines(opts) = &self.config.framing else {
            return;
        };
        let announce = opts.announce;
        if reason == DropReason::PeerClosed
            && framing::finish(&mut partial, id, opts, &mut self.lines)
        {
            self.summary.messages_in += 1;
            let last: Rc<[u8]> = Rc::from(&self.lines[..]);
            if let Some(uplink) = &mut self.uplink {
                uplink.publish(&last);
            }
            self.fan_out(token, last, 1, backend);
        }
        if announce {
            self.announce(token, id, "left", backend);
        }
    }

    /// Line mode with `announce`: tells every client but `about` that client `id` joined or left.
    fn announce<B: Backend>(&mut self, about: Token, id: u64, what: &str, backend: &mut B) {
        if let Framing::Lines(opts) = &self.config.framing {
            if opts.announce {
                let notice: Rc<[u8]> = Rc::from(framing::notice(id, what));
                self.fan_out(about, notice, 1, backend);
            }
        }
    }
}

/// Whether a read or write result means "nothing now".
fn is_blocked<T>(result: &io::Result<T>) -> bool {
    matches!(result, Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted))
}

/// Why an I/O error on a connection drops it: a reset, abort or broken pipe, whether seen while
/// reading or writing, is the peer leaving; anything else is `otherwise`.
fn io_reason(e: &io::Error, otherwise: DropReason) -> DropReason {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => DropReason::PeerClosed,
        _ => otherwise,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::LineOptions;
    use std::io::Read;

    use super::tests_support::Manual;

    fn read_line(stream: &mut TcpStream) -> String {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut line = Vec::new();
        let mut byte = [0];
        while !line.ends_with(b"\n") {
            let n = stream.read(&mut byte).expect("a line within 10 s");
            assert_eq!(n, 1, "closed after {line:?}");
            line.push(byte[0]);
        }
        String::from_utf8(line).unwrap()
    }

    /// A client whose reset is only discovered by a failing write, in the middle of flushing the
    /// room, is announced as gone, and the notice is flushed to the others in that same pass.
    #[test]
    fn a_departure_found_while_flushing_reaches_the_others() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = LineOptions {
            announce: true,
            ..LineOptions::default()
        };
        let config = Config {
            framing: Framing::Lines(lines),
            ..Config::default()
        };
        let mut room = Room::new(config, None, PlainTcp);
        let mut backend = Manual;
        let mut watcher = TcpStream::connect(addr).unwrap();
        let leaver = TcpStream::connect(addr).unwrap();
        for _ in 0..2 {
            let (stream, peer) = listener.accept().unwrap();
            room.add(stream, peer, &mut backend);
        }
        let (watcher_token, leaver_token) = (Token(0), Token(1));
        room.flush_dirty(&mut backend);
        assert_eq!(read_line(&mut watcher), "* 2 joined\n");
        // The leaver gets a line it never reads, so closing it sends a reset.
        room.fan_out(watcher_token, Rc::from(&b"unread\n"[..]), 1, &mut backend);
        room.flush_dirty(&mut backend);
        drop(leaver);
        // More for the leaver: only the write finds out it is gone.
        room.fan_out(watcher_token, Rc::from(&b"again\n"[..]), 1, &mut backend);
        room.flush_dirty(&mut backend);
        assert!(
            room.pool.get(leaver_token).is_none(),
            "the reset was not seen"
        );
        assert_eq!(read_line(&mut watcher), "* 2 left\n");
        // And the watcher is not stuck: later lines reach it as well.
        let third = TcpStream::connect(addr).unwrap();
        let (stream, peer) = listener.accept().unwrap();
        room.add(stream, peer, &mut backend);
        room.flush_dirty(&mut backend);
        assert_eq!(read_line(&mut watcher), "* 3 joined\n");
        drop(third);
    }
}

/// What the hand-driven tests share.
#[cfg(test)]
mod tests_support {
    use super::*;

    /// A backend that holds nothing and reports nothing: the test drives the room by hand.
    #[derive(Debug)]
    pub(super) struct Manual;

    #[derive(Debug, Clone)]
    pub(super) struct NoWaker;

    impl Wake for NoWaker {
        fn wake(&self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Backend for Manual {
        type Waker = NoWaker;
        fn name(&self) -> &'static str {
            "manual"
        }
        fn register(
            &mut self,
            _: crate::BorrowedSocket<'_>,
            _: Token,
            _: Interest,
        ) -> io::Result<()> {
            Ok(())
        }
        fn reregister(
            &mut self,
            _: crate::BorrowedSocket<'_>,
            _: Token,
            _: Interest,
        ) -> io::Result<()> {
            Ok(())
        }
        fn deregister(&mut self, _: crate::BorrowedSocket<'_>) -> io::Result<()> {
            Ok(())
        }
        fn wait(&mut self, events: &mut Events, _: Option<Duration>) -> io::Result<()> {
            events.clear();
            Ok(())
        }
        fn waker(&self) -> NoWaker {
            NoWaker
        }
    }
}

/// The hooks for layered links, acceptors and uplinks, driven by hand.
#[cfg(test)]
mod hook_tests {
    use super::tests_support::Manual;
    use super::*;
    use std::cell::RefCell;
    use std::io::Read;
    use std::rc::Rc as Shared;

    /// A link that joins only after its client sends `knock\n`, and answers `welcome\n` from a
    /// buffer of its own: the shape of a TLS handshake without the cryptography.
    #[derive(Debug)]
    struct KnockLink {
        stream: TcpStream,
        heard: Vec<u8>,
        knocked: bool,
        own: Vec<u8>,
    }

    impl AsBorrowedSocket for KnockLink {
        fn borrowed(&self) -> crate::BorrowedSocket<'_> {
            self.stream.borrowed()
        }
        fn raw_number(&self) -> u64 {
            self.stream.raw_number()
        }
    }

    impl Link for KnockLink {
        fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.knocked {
                return self.stream.read(buf);
            }
            let mut byte = [0];
            let n = self.stream.read(&mut byte)?;
            if n == 0 {
                return Ok(0);
            }
            self.heard.push(byte[0]);
            if self.heard == b"knock\n" {
                self.knocked = true;
                self.own.extend_from_slice(b"welcome\n");
            } else if !b"knock\n".starts_with(&self.heard) {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "wrong knock"));
            }
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            assert!(
                self.knocked,
                "application bytes sent before the link was established"
            );
            self.stream.write_vectored(bufs)
        }
        fn flush_own(&mut self) -> io::Result<()> {
            let n = self.stream.write(&self.own)?;
            self.own.drain(..n);
            Ok(())
        }
        fn wants_write(&self) -> bool {
            !self.own.is_empty()
        }
        fn is_established(&self) -> bool {
            self.knocked
        }
    }

    /// Admits knock links, refusing every peer whose port is in `refuse`.
    struct Knock {
        refuse: Vec<u16>,
    }

    impl Acceptor for Knock {
        type Link = KnockLink;
        fn accept(
            &mut self,
            stream: TcpStream,
            peer: SocketAddr,
        ) -> io::Result<Admission<KnockLink>> {
            if self.refuse.contains(&peer.port()) {
                return Ok(Admission::Refuse);
            }
            Ok(Admission::Admit(KnockLink {
                stream,
                heard: Vec::new(),
                knocked: false,
                own: Vec::new(),
            }))
        }
    }

    /// An uplink whose two ends the test holds.
    #[derive(Default)]
    struct Loop {
        incoming: Shared<RefCell<Vec<Vec<u8>>>>,
        published: Shared<RefCell<Vec<Vec<u8>>>>,
    }

    impl Uplink for Loop {
        fn describe(&self) -> String {
            "a test loop".into()
        }
        fn publish(&mut self, message: &[u8]) {
            self.published.borrow_mut().push(message.to_vec());
        }
        fn receive(&mut self) -> Option<Vec<u8>> {
            let mut incoming = self.incoming.borrow_mut();
            (!incoming.is_empty()).then(|| incoming.remove(0))
        }
        fn stats(&self) -> UplinkStats {
            UplinkStats {
                published: self.published.borrow().len() as u64,
                unpublished: 0,
            }
        }
    }

    fn read_exactly(stream: &mut TcpStream, n: usize) -> Vec<u8> {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = vec![0; n];
        stream.read_exact(&mut got).expect("bytes within 10 s");
        got
    }

    /// Reads `token` until `done` holds; loopback data may take a moment to be readable.
    fn read_until(
        room: &mut Room<Knock>,
        token: Token,
        backend: &mut Manual,
        done: impl Fn(&Room<Knock>) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(room) {
            assert!(Instant::now() < deadline, "not done within 10 s");
            room.read_once(token, backend);
            room.flush_dirty(backend);
            std::thread::yield_now();
        }
    }

    #[test]
    fn links_join_once_established_uplink_flows_both_ways_stalled_handshakes_are_cut() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let refused = TcpStream::connect(addr).unwrap();
        let acceptor = Knock {
            refuse: vec![refused.local_addr().unwrap().port()],
        };
        let config = Config {
            handshake_timeout: Duration::from_secs(5),
            ..Config::default()
        };
        let mut room = Room::new(config, None, acceptor);
        let uplink = Loop::default();
        let (incoming, published) = (uplink.incoming.clone(), uplink.published.clone());
        room.uplink = Some(Box::new(uplink));
        let mut backend = Manual;
        let (stream, peer) = listener.accept().unwrap();
        room.add(stream, peer, &mut backend);
        assert_eq!(room.summary.refused_by_acceptor, 1);
        assert_eq!(room.pool.len(), 0);

        let mut knocker = TcpStream::connect(addr).unwrap();
        let mut staller = TcpStream::connect(addr).unwrap();
        for _ in 0..2 {
            let (stream, peer) = listener.accept().unwrap();
            room.add(stream, peer, &mut backend);
        }
        let (knocker_token, staller_token) = (Token(0), Token(1));
        assert_eq!(room.handshaking, 2);
        assert!(
            room.next_sweep.is_some(),
            "handshakes pending, yet no sweep scheduled"
        );

        // Before anyone is established, the room reaches no one.
        incoming.borrow_mut().push(b"early\n".to_vec());
        room.receive_from_uplink(&mut backend);
        assert!(room.pool.iter_mut().all(|(_, c)| c.queue.is_empty()));

        knocker.write_all(b"knock\n").unwrap();
        read_until(&mut room, knocker_token, &mut backend, |r| {
            r.handshaking == 1
        });
        assert_eq!(read_exactly(&mut knocker, 8), b"welcome\n");

        incoming.borrow_mut().push(b"from afar\n".to_vec());
        room.receive_from_uplink(&mut backend);
        room.flush_dirty(&mut backend);
        assert_eq!(read_exactly(&mut knocker, 10), b"from afar\n");
        assert_eq!(room.summary.cluster_in, 2);

        knocker.write_all(b"hi all\n").unwrap();
        read_until(&mut room, knocker_token, &mut backend, |r| {
            r.summary.messages_in == 1
        });
        assert_eq!(*published.borrow(), vec![b"hi all\n".to_vec()]);

        // The staller never knocks: one sweep past the deadline cuts it, and only it.
        room.now += Duration::from_secs(5);
        room.sweep(&mut backend);
        assert!(room.pool.get(staller_token).is_none());
        assert!(room.pool.get(knocker_token).is_some());
        assert_eq!(room.summary.handshakes_failed, 1);
        assert_eq!(room.handshaking, 0);
        assert!(
            room.next_sweep.is_none(),
            "nothing pending, yet a sweep is scheduled"
        );
        assert_eq!(read_exactly_or_eof(&mut staller), 0);
        drop(refused);
    }

    #[test]
    fn a_wrong_knock_is_a_failed_handshake() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut room = Room::new(Config::default(), None, Knock { refuse: vec![] });
        let mut backend = Manual;
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, peer) = listener.accept().unwrap();
        room.add(stream, peer, &mut backend);
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        read_until(&mut room, Token(0), &mut backend, |r| r.pool.is_empty());
        assert_eq!(room.summary.handshakes_failed, 1);
        assert_eq!(room.summary.errors, 0);
        assert_eq!(room.handshaking, 0);
    }

    fn read_exactly_or_eof(stream: &mut TcpStream) -> usize {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0; 16];
        stream.read(&mut buf).expect("EOF within 10 s")
    }
}
