//! The load generator: a room of clients on one relay, driven over loopback. Its parts, one
//! file each: [`connect`] (connect and synchronise every client), [`drive`] (run the threads
//! and measure), [`send`] (pattern and probe senders), [`receive`] (the checking receivers),
//! and [`scale`] (many idle clients).
//!
//! C clients connect (in a few parallel batches, retrying, so a relay with a short listen backlog
//! is not flooded) and are synchronised: the last one to connect sends a probe that every other
//! one must read, repeated until all have it, so every client is known to be in the room before
//! anything is measured. Then:
//!
//! - clients `0..senders` each write `messages` messages of `size` bytes of their [`Pattern`],
//!   one `write` per message, on a thread each;
//! - optionally, the next client writes a timestamped probe message every `interval` (see
//!   [`crate::check`]), on a thread of its own;
//! - the last `slow_readers` clients never read;
//! - every other client is read by a few receiver threads (one by default) multiplexing their
//!   sockets with `polling`, each checking its stream with a [`StreamCheck`].
//!
//! With a TLS client configuration (`RoomSpec::tls`) every client is a TLS client of its own
//! (see [`crate::client`]); the room is otherwise the same. With a WebSocket door
//! (`RoomSpec::web`) every client past the senders and the probe sender is a web client (see
//! [`crate::ws`]): senders and probe stay TCP clients, and the web clients' reads give the
//! checkers payload bytes only, so their streams are verified like the TCP clients'.
//!
//! Every wait is bounded by the run's deadline, and a run in which no byte arrives for `stall`
//! ends as stalled. Every thread is joined before [`run_room`] returns.

mod connect;
mod drive;
mod receive;
mod scale;
mod send;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_pattern::Pattern;
use rustls::ClientConfig;

use crate::check::{StreamCheck, MAX_PATTERN_SENDERS_WITH_PROBE};
use crate::client::Client;
use crate::procstat::Meter;
use crate::stats::Latencies;

pub(crate) use connect::{connect_all, sync_room};
pub(crate) use scale::run_scale;

/// Socket read/write timeout: how often a blocked thread wakes to check the deadline.
pub(super) const POLL: Duration = Duration::from_millis(250);
/// The first connection attempt's bound, doubled on each retry up to [`CONNECT_TRY_MAX`]. On
/// loopback a handshake takes microseconds; a relay whose accept queue is full (ncat listens
/// with a backlog of 10) drops the SYN, which the kernel would only retransmit after 1 s, so a
/// quick fresh attempt is much faster.
pub(super) const CONNECT_TRY: Duration = Duration::from_millis(50);
/// The longest single connection attempt.
pub(super) const CONNECT_TRY_MAX: Duration = Duration::from_secs(3);
/// How long one sync round waits for its probe before sending another.
pub(super) const SYNC_ROUND: Duration = Duration::from_secs(2);
/// Receive buffer per receiver thread.
pub(super) const READ_BUF: usize = 256 * 1024;
/// How often the main thread reports progress and looks for a stall.
pub(super) const TICK: Duration = Duration::from_millis(100);
/// How long a slow reader is drained at the end to see whether the relay cut it.
pub(super) const DRAIN: Duration = Duration::from_secs(2);

pub(super) const MIB: f64 = 1024.0 * 1024.0;

/// The probe sender of a latency run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    /// Time between two probe messages.
    pub(crate) interval: Duration,
    /// How many to send; `None`: until every reader has every pattern byte (at least one).
    pub(crate) count: Option<u64>,
    /// Under a background load, the window of the load whose probes the run's percentiles
    /// cover; `None`: every probe.
    pub(crate) steady: Option<Steady>,
}

/// The steady window of a loaded run: probes sent from `warmup` after the start, for `window`,
/// and never once a reader had every byte of some pattern sender (fewer senders load the relay
/// from then on). Every relay is then measured over the same stretch of its steady state, however
/// long it took to start and however soon a faster one finishes. Every probe still counts in the
/// whole-run figures and is still checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Steady {
    pub(crate) warmup: Duration,
    pub(crate) window: Duration,
}

/// One run's shape.
#[derive(Debug, Clone)]
pub(crate) struct RoomSpec {
    /// Clients in the room, all connected before anything is sent.
    pub(crate) clients: usize,
    /// Pattern senders: clients `0..senders`.
    pub(crate) senders: usize,
    /// Bytes per message.
    pub(crate) size: usize,
    /// Messages per pattern sender.
    pub(crate) messages: usize,
    /// A probe sender (client `senders`), for latency.
    pub(crate) probe: Option<Probe>,
    /// Clients at the end that never read.
    pub(crate) slow_readers: usize,
    /// Threads reading the receivers' sockets.
    pub(crate) receiver_threads: usize,
    /// Threads connecting clients.
    pub(crate) connect_threads: usize,
    /// Bound on the whole run, connecting included.
    pub(crate) timeout: Duration,
    /// A run in which no byte arrives for this long ends as stalled.
    pub(crate) stall: Duration,
    /// Every client speaks TLS with this configuration; `None`: plain TCP.
    pub(crate) tls: Option<Arc<ClientConfig>>,
    /// The relay's WebSocket door (`GET /ws` on this address, plain HTTP): every client past the
    /// pattern senders and the probe sender joins through it as a web client. `None`: none does.
    pub(crate) web: Option<SocketAddr>,
}

impl RoomSpec {
    /// The steady window its probes' percentiles cover: only under a background load, and only
    /// when the probe asks for one.
    pub(crate) fn steady(&self) -> Option<Steady> {
        self.probe
            .and_then(|p| p.steady)
            .filter(|_| self.senders > 0)
    }

    /// Why this shape cannot run, if it cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        let probe = usize::from(self.probe.is_some());
        let max_senders = if self.probe.is_some() {
            MAX_PATTERN_SENDERS_WITH_PROBE
        } else {
            Pattern::SENDERS
        };
        if self.senders > max_senders {
            return Err(format!("at most {max_senders} pattern senders here"));
        }
        if self.clients < 2 || self.senders + probe + self.slow_readers > self.clients {
            return Err(
                "need at least two clients, and more clients than senders and slow readers".into(),
            );
        }
        if self.senders > 0 && (self.size == 0 || self.messages == 0) {
            return Err("messages and size must be > 0".into());
        }
        if self.senders == 0 && !matches!(self.probe, Some(Probe { count: Some(_), .. })) {
            return Err("a run with no pattern sender needs a probe count".into());
        }
        if self.receiver_threads == 0 || self.connect_threads == 0 || self.timeout.is_zero() {
            return Err("threads and timeout must be > 0".into());
        }
        if self.web.is_some() && self.tls.is_some() {
            return Err("web clients are plain WebSocket clients, never TLS ones".into());
        }
        Ok(())
    }

    /// The first client that joins as a web client, with the door's address, if any does: the
    /// one after the pattern senders and the probe sender.
    pub(crate) fn web_from(&self) -> Option<(SocketAddr, usize)> {
        self.web
            .map(|addr| (addr, self.senders + usize::from(self.probe.is_some())))
    }

    /// Pattern bytes every reader together must receive.
    pub(crate) fn expected_bytes(&self) -> u64 {
        let per_sender = (self.size * self.messages) as u64;
        let readers = (self.clients - self.slow_readers) as u64;
        // Every reader gets every pattern sender's stream but its own.
        per_sender * (self.senders as u64 * readers - self.senders as u64)
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Status {
    /// Every reader got everything, verified.
    Ok,
    /// Something was lost, damaged, late past the deadline, or an error stopped the run.
    Failed(String),
    /// No byte arrived for the stall time: the relay stopped relaying.
    Stalled(String),
}

/// What a run measured.
#[derive(Debug, Clone)]
pub(crate) struct RoomOutcome {
    /// How it ended.
    pub(crate) status: Status,
    /// The measured window: from the senders' start until the last reader had every pattern
    /// byte (or, with no pattern senders or on failure, until the run stopped).
    pub(crate) secs: f64,
    /// Pattern bytes received by all readers together.
    pub(crate) pattern_bytes: u64,
    /// One sample per probe per reader, in nanoseconds.
    pub(crate) latencies_ns: Latencies,
    /// The samples of the probes sent in the steady window (see [`Steady`]); without one,
    /// every sample.
    pub(crate) steady_ns: Latencies,
    /// How long the steady window lasted, in seconds (shorter than asked for when the background
    /// ended first); `None` without one.
    pub(crate) steady_secs: Option<f64>,
    /// Probe messages sent.
    pub(crate) probes_sent: u64,
    /// The relay's CPU time over the window.
    pub(crate) server_cpu: Option<f64>,
    /// This tool's CPU time over the window (all its threads, minus the relay's when the relay is
    /// a thread of the tool).
    pub(crate) tool_cpu: Option<f64>,
    /// Whether the relay closed every slow reader's connection.
    pub(crate) slow_cut: Option<bool>,
    /// Connecting and synchronising every client.
    pub(crate) connect_secs: f64,
}

impl RoomOutcome {
    /// A run that could not run, for `message`.
    pub(crate) fn failed(message: String) -> Self {
        RoomOutcome {
            status: Status::Failed(message),
            secs: 0.0,
            pattern_bytes: 0,
            latencies_ns: Latencies::default(),
            steady_ns: Latencies::default(),
            steady_secs: None,
            probes_sent: 0,
            server_cpu: None,
            tool_cpu: None,
            slow_cut: None,
            connect_secs: 0.0,
        }
    }
}

/// State every thread of a run shares.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) abort: AtomicBool,
    /// Bytes received by every reader so far.
    pub(super) received: AtomicU64,
    pub(super) senders_done: AtomicUsize,
    /// Readers that have every pattern byte they expect.
    pub(super) patterns_complete: AtomicUsize,
    /// How many probes were sent, once the probe sender has stopped; `u64::MAX` before.
    pub(super) probes_total: AtomicU64,
    /// When (in nanoseconds since [`Plan::t0`]) a reader first had every byte of some pattern
    /// sender: the relay had read all that sender sent, and fewer senders load it from then on.
    /// The end of the steady window; `u64::MAX` before.
    pub(super) background_ended_ns: AtomicU64,
}

/// What a receiver thread needs to know.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    pub(super) deadline: Instant,
    /// Probe timestamps count from here.
    pub(super) t0: Instant,
    /// The steady window, from..until in nanoseconds since `t0`; `None`: every probe counts
    /// (no background, or a run whose [`Probe::steady`] is `None`).
    pub(super) steady_ns: Option<(u64, u64)>,
}

impl Plan {
    /// Whether a probe sent at `ts` (nanoseconds since `t0`) is in the steady window, given
    /// when the background ended (`u64::MAX` while it runs).
    pub(super) fn in_steady_window(&self, ts: u64, background_ended_ns: u64) -> bool {
        match self.steady_ns {
            Some((from, until)) => ts >= from && ts < until.min(background_ended_ns),
            None => true,
        }
    }

    /// How long the steady window lasted, given when the background ended; `None` without one.
    pub(super) fn steady_secs(&self, background_ended_ns: u64) -> Option<f64> {
        let (from, until) = self.steady_ns?;
        Some(until.min(background_ended_ns).saturating_sub(from) as f64 / 1e9)
    }
}

/// One reader's end state.
#[derive(Debug)]
pub(super) struct Reader {
    pub(super) sock: Client,
    pub(super) check: StreamCheck,
    pub(super) latencies: Latencies,
    /// The samples in the steady window.
    pub(super) steady: Latencies,
    pub(super) pattern_done: Option<Instant>,
    pub(super) error: Option<String>,
    pub(super) finished: bool,
}

/// Runs one room on the relay at `addrs` (several nodes of one room: client `i` joins node
/// `i % addrs.len()`). `meter` is the relay's process or thread (for its CPU
/// time); `progress` is called about ten times a second with the bytes received so far.
pub(crate) fn run_room(
    addrs: &[SocketAddr],
    spec: &RoomSpec,
    meter: Option<Meter>,
    progress: &dyn Fn(u64),
) -> RoomOutcome {
    if let Err(e) = spec.check() {
        return RoomOutcome::failed(e);
    }
    if addrs.is_empty() {
        return RoomOutcome::failed("no relay address".into());
    }
    let deadline = Instant::now() + spec.timeout;
    let began_connecting = Instant::now();
    let connected = connect_all(
        addrs,
        spec.clients,
        spec.connect_threads,
        deadline,
        spec.tls.as_ref(),
        spec.web_from(),
    );
    let mut clients = match connected {
        Ok(clients) => clients,
        Err(e) => return RoomOutcome::failed(format!("connecting: {e}")),
    };
    if let Err(e) = sync_room(&mut clients, deadline) {
        return RoomOutcome::failed(format!("synchronising: {e}"));
    }
    let connect_secs = began_connecting.elapsed().as_secs_f64();
    let mut outcome = match drive::drive(spec, clients, deadline, meter, progress) {
        Ok(outcome) => outcome,
        Err(e) => RoomOutcome::failed(e.to_string()),
    };
    outcome.connect_secs = connect_secs;
    outcome
}
