//! The load engine: a room of clients on one relay, driven over loopback.
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
//! (see [`crate::client`]); the room is otherwise the same.
//!
//! Every wait is bounded by the run's deadline, and a run in which no byte arrives for `stall`
//! ends as stalled. Every thread is joined before [`run_room`] returns.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use polling::{Event, Events, PollMode, Poller};
use relay_tests::Pattern;
use rustls::ClientConfig;

use crate::check::{encode_probe, StreamCheck, MAX_PATTERN_SENDERS_WITH_PROBE};
use crate::client::Client;
use crate::procstat::{self, Meter};

/// Socket read/write timeout: how often a blocked thread wakes to check the deadline.
const POLL: Duration = Duration::from_millis(250);
/// The first connection attempt's bound, doubled on each retry up to [`CONNECT_TRY_MAX`]. On
/// loopback a handshake takes microseconds; a relay whose accept queue is full (ncat listens
/// with a backlog of 10) drops the SYN, which the kernel would only retransmit after 1 s, so a
/// quick fresh attempt is much faster.
const CONNECT_TRY: Duration = Duration::from_millis(50);
/// The longest single connection attempt.
const CONNECT_TRY_MAX: Duration = Duration::from_secs(3);
/// How long one sync round waits for its probe before sending another.
const SYNC_ROUND: Duration = Duration::from_secs(2);
/// Receive buffer per receiver thread.
const READ_BUF: usize = 256 * 1024;
/// How often the main thread reports progress and looks for a stall.
const TICK: Duration = Duration::from_millis(100);
/// How long a slow reader is drained at the end to see whether the relay cut it.
const DRAIN: Duration = Duration::from_secs(2);

/// The probe sender of a latency run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    /// Time between two probe messages.
    pub(crate) interval: Duration,
    /// How many to send; `None`: until every reader has every pattern byte (at least one).
    pub(crate) count: Option<u64>,
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
}

impl RoomSpec {
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
        Ok(())
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
    /// One sample per probe per reader, in nanoseconds, ascending.
    pub(crate) latencies_ns: Vec<u64>,
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
    fn failed(message: String) -> Self {
        RoomOutcome {
            status: Status::Failed(message),
            secs: 0.0,
            pattern_bytes: 0,
            latencies_ns: Vec::new(),
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
struct Shared {
    abort: AtomicBool,
    /// Bytes received by every reader so far.
    received: AtomicU64,
    senders_done: AtomicUsize,
    /// Readers that have every pattern byte they expect.
    patterns_complete: AtomicUsize,
    /// How many probes were sent, once the probe sender has stopped; `u64::MAX` before.
    probes_total: AtomicU64,
}

/// What a receiver thread needs to know.
#[derive(Debug, Clone, Copy)]
struct Plan {
    deadline: Instant,
    /// Probe timestamps count from here.
    t0: Instant,
}

/// One reader's end state.
#[derive(Debug)]
struct Reader {
    sock: Client,
    check: StreamCheck,
    latencies: Vec<u64>,
    pattern_done: Option<Instant>,
    error: Option<String>,
    finished: bool,
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
    );
    let mut clients = match connected {
        Ok(clients) => clients,
        Err(e) => return RoomOutcome::failed(format!("connecting: {e}")),
    };
    if let Err(e) = sync_room(&mut clients, deadline) {
        return RoomOutcome::failed(format!("synchronising: {e}"));
    }
    let connect_secs = began_connecting.elapsed().as_secs_f64();
    let mut outcome = match drive(spec, clients, deadline, meter, progress) {
        Ok(outcome) => outcome,
        Err(e) => RoomOutcome::failed(e.to_string()),
    };
    outcome.connect_secs = connect_secs;
    outcome
}

/// Everything after the room is synchronised.
fn drive(
    spec: &RoomSpec,
    mut clients: Vec<Client>,
    deadline: Instant,
    meter: Option<Meter>,
    progress: &dyn Fn(u64),
) -> io::Result<RoomOutcome> {
    let shared = Arc::new(Shared {
        abort: AtomicBool::new(false),
        received: AtomicU64::new(0),
        senders_done: AtomicUsize::new(0),
        patterns_complete: AtomicUsize::new(0),
        probes_total: AtomicU64::new(u64::MAX),
    });
    let plan = Plan {
        deadline,
        t0: Instant::now(),
    };
    let probe_index = spec.probe.map(|_| spec.senders);
    let per_sender = spec.size * spec.messages;
    let slow: Vec<Client> = clients.split_off(spec.clients - spec.slow_readers);

    // Writers use clones; the readers own the originals.
    let start = Arc::new(Barrier::new(
        spec.senders + usize::from(spec.probe.is_some()) + 1,
    ));
    let mut senders = Vec::with_capacity(spec.senders);
    for (s, c) in clients.iter().take(spec.senders).enumerate() {
        let w = c.try_clone()?;
        let (start, shared) = (Arc::clone(&start), Arc::clone(&shared));
        let (size, messages) = (spec.size, spec.messages);
        senders.push(
            thread::Builder::new()
                .name(format!("sender-{s}"))
                .spawn(move || send_pattern(w, s, size, messages, deadline, &start, &shared))?,
        );
    }
    let prober = match (spec.probe, probe_index) {
        (Some(probe), Some(i)) => {
            let w = clients[i].try_clone()?;
            let (start, shared) = (Arc::clone(&start), Arc::clone(&shared));
            let readers = spec.clients - spec.slow_readers;
            Some(
                thread::Builder::new()
                    .name("probe".into())
                    .spawn(move || send_probes(w, probe, readers, plan, &start, &shared))?,
            )
        }
        _ => None,
    };

    // Readers are running before any sender starts; otherwise unread socket buffers fill and the
    // whole room stalls.
    let threads = spec.receiver_threads.min(clients.len());
    let mut groups: Vec<Vec<Reader>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, sock) in clients.into_iter().enumerate() {
        let me = (i < spec.senders).then_some(i);
        let probes = probe_index.is_some_and(|p| p != i);
        let check = StreamCheck::new(spec.senders, me, per_sender, probes);
        let pattern_done = check.pattern_complete().then(Instant::now);
        groups[i % threads].push(Reader {
            sock,
            check,
            latencies: Vec::new(),
            pattern_done,
            error: None,
            finished: false,
        });
    }
    let mut receivers = Vec::with_capacity(threads);
    for (k, group) in groups.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        receivers.push(
            thread::Builder::new()
                .name(format!("receiver-{k}"))
                .spawn(move || receive(group, plan, &shared))?,
        );
    }

    let own0 = own_cpu(meter);
    let server0 = meter.and_then(Meter::cpu_secs);
    start.wait();
    let began = Instant::now();

    let mut last_seen = 0;
    let mut last_change = began;
    let mut stalled = false;
    while !receivers.iter().all(|r| r.is_finished()) {
        thread::sleep(TICK);
        let now = Instant::now();
        let received = shared.received.load(Ordering::Relaxed);
        progress(received);
        if received != last_seen {
            last_seen = received;
            last_change = now;
        } else if now - last_change >= spec.stall && !shared.abort.load(Ordering::Relaxed) {
            stalled = true;
            shared.abort.store(true, Ordering::Relaxed);
        }
    }
    let ended = Instant::now();
    let server_cpu = server0.and_then(|a| Some(meter?.cpu_secs()? - a));
    let tool_cpu = own0.and_then(|a| Some(own_cpu(meter)? - a));

    let mut errors = Vec::new();
    let mut readers = Vec::new();
    for r in receivers {
        match r.join() {
            Ok(group) => readers.extend(group),
            Err(_) => errors.push("a receiver thread panicked".to_string()),
        }
    }
    // Receivers are done; a sender still blocked on a stalled relay sees `abort` within POLL.
    if readers.iter().any(|r| r.error.is_some()) || !errors.is_empty() {
        shared.abort.store(true, Ordering::Relaxed);
    }
    for (s, h) in senders.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(format!("sender {s}: {e}")),
            Err(_) => errors.push(format!("sender {s} panicked")),
        }
    }
    let probes_sent = match prober.map(|h| h.join()) {
        None => 0,
        Some(Ok(Ok(n))) => n,
        Some(Ok(Err((n, e)))) => {
            errors.push(format!("probe sender: {e}"));
            n
        }
        Some(Err(_)) => {
            errors.push("probe sender panicked".into());
            0
        }
    };

    let mut pattern_bytes = 0u64;
    let mut last_done = began;
    let mut latencies = Vec::new();
    for (i, r) in readers.iter_mut().enumerate() {
        pattern_bytes += r.check.pattern_bytes() as u64;
        if let Some(done) = r.pattern_done {
            last_done = last_done.max(done);
        }
        if let Some(e) = &r.error {
            errors.push(format!(
                "reader {i}: {} of {} pattern bytes, {} probes: {e}",
                r.check.pattern_bytes(),
                r.check.expected(),
                r.check.probes()
            ));
        }
        latencies.append(&mut r.latencies);
    }
    drop(readers);
    latencies.sort_unstable();
    let slow_cut = (!slow.is_empty()).then(|| slow.into_iter().all(|c| drained_to_close(c.tcp)));

    let status = if stalled {
        Status::Stalled(format!(
            "no byte arrived for {:.0} s; {:.1} of {:.1} MiB delivered",
            spec.stall.as_secs_f64(),
            pattern_bytes as f64 / MIB,
            spec.expected_bytes() as f64 / MIB
        ))
    } else if !errors.is_empty() {
        // The cause first: threads that only stopped because another failed come last.
        errors.sort_by_key(|e| e.contains("stopped"));
        let more = errors.len() - 1;
        let mut message = errors.swap_remove(0);
        if more > 0 {
            message.push_str(&format!(" (and {more} more)"));
        }
        Status::Failed(message)
    } else {
        Status::Ok
    };
    let window = if status == Status::Ok && spec.senders > 0 {
        last_done - began
    } else {
        ended - began
    };
    Ok(RoomOutcome {
        status,
        secs: window.as_secs_f64().max(1e-9),
        pattern_bytes,
        latencies_ns: latencies,
        probes_sent,
        server_cpu,
        tool_cpu,
        slow_cut,
        connect_secs: 0.0,
    })
}

const MIB: f64 = 1024.0 * 1024.0;

/// The tool's CPU time, less the relay thread's when the relay runs inside the tool.
fn own_cpu(meter: Option<Meter>) -> Option<f64> {
    let own = procstat::own_cpu_secs()?;
    match meter {
        Some(m @ Meter::Thread(_)) => Some(own - m.cpu_secs()?),
        _ => Some(own),
    }
}

/// Writes `messages` messages of `size` bytes of sender `s`'s pattern, one write each.
fn send_pattern(
    mut w: Client,
    s: usize,
    size: usize,
    messages: usize,
    deadline: Instant,
    start: &Barrier,
    shared: &Shared,
) -> Result<(), String> {
    // Message k starts at stream offset k * size; slicing this at that offset mod PERIOD gives
    // its bytes without building the whole stream.
    let pattern = Pattern::bytes(s, 0, size + Pattern::PERIOD);
    start.wait();
    for k in 0..messages {
        let offset = (k * size) % Pattern::PERIOD;
        if let Err(e) = write_until(
            &mut w,
            &pattern[offset..offset + size],
            deadline,
            &shared.abort,
        ) {
            return Err(format!("after {k} of {messages} messages: {e}"));
        }
    }
    shared.senders_done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Sends probe messages every `probe.interval` until the count is reached or (with no count)
/// all `readers` have every pattern byte; publishes how many it sent. Returns that count, with the error if it stopped
/// early.
fn send_probes(
    mut w: Client,
    probe: Probe,
    readers: usize,
    plan: Plan,
    start: &Barrier,
    shared: &Shared,
) -> Result<u64, (u64, String)> {
    start.wait();
    let mut sent = 0u64;
    let mut next = Instant::now();
    let result = loop {
        let finished = match probe.count {
            Some(n) => sent >= n,
            None => sent > 0 && shared.patterns_complete.load(Ordering::Relaxed) >= readers,
        };
        if finished {
            break Ok(sent);
        }
        if shared.abort.load(Ordering::Relaxed) {
            break Err((sent, "stopped: another thread failed".to_string()));
        }
        let now = Instant::now();
        if next > now {
            // Pacing the probe, not synchronising: the next message is due then.
            thread::sleep(next - now);
        }
        let ts = plan.t0.elapsed().as_nanos() as u64;
        if let Err(e) = write_until(&mut w, &encode_probe(ts), plan.deadline, &shared.abort) {
            break Err((sent, e.to_string()));
        }
        sent += 1;
        // Late by more than one interval: start afresh rather than send a burst.
        next = (next + probe.interval).max(Instant::now());
    };
    shared.probes_total.store(sent, Ordering::Relaxed);
    result
}

/// Reads a group of readers until each has everything it expects, an error, the deadline or an
/// abort. Returns them with their outcome.
fn receive(mut readers: Vec<Reader>, plan: Plan, shared: &Shared) -> Vec<Reader> {
    let poller = match Poller::new() {
        Ok(p) => p,
        Err(e) => {
            for r in &mut readers {
                r.error = Some(format!("poller: {e}"));
            }
            return readers;
        }
    };
    let mut registered = vec![false; readers.len()];
    for (k, r) in readers.iter_mut().enumerate() {
        // SAFETY: every registered socket is deleted from the poller (`finish` or the loop at the
        // end) before `readers`, which owns it, is returned or dropped.
        match unsafe { poller.add_with_mode(&r.sock.tcp, Event::readable(k), PollMode::Level) } {
            Ok(()) => registered[k] = true,
            Err(e) => {
                r.error = Some(format!("register: {e}"));
                r.finished = true;
            }
        }
    }
    let already = readers.iter().filter(|r| r.pattern_done.is_some()).count();
    shared
        .patterns_complete
        .fetch_add(already, Ordering::Relaxed);
    let mut live = readers.iter().filter(|r| !r.finished).count();
    let mut events = Events::new();
    let mut buf = vec![0; READ_BUF];
    let mut last_sweep = Instant::now();
    let finish = |r: &mut Reader, k: usize, registered: &mut [bool], live: &mut usize| {
        if registered[k] {
            let _ = poller.delete(&r.sock.tcp);
            registered[k] = false;
        }
        r.finished = true;
        *live -= 1;
    };
    while live > 0 {
        let now = Instant::now();
        let stop = if shared.abort.load(Ordering::Relaxed) {
            Some("stopped before the end (another thread failed, or the relay stalled)")
        } else if now >= plan.deadline {
            Some("timed out")
        } else {
            None
        };
        if let Some(why) = stop {
            for (k, r) in readers.iter_mut().enumerate() {
                if !r.finished {
                    r.error = Some(why.into());
                    finish(r, k, &mut registered, &mut live);
                }
            }
            break;
        }
        events.clear();
        let wait = (plan.deadline - now).min(TICK);
        if let Err(e) = poller.wait(&mut events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                shared.abort.store(true, Ordering::Relaxed);
            }
            continue;
        }
        for ev in events.iter() {
            let k = ev.key;
            let r = &mut readers[k];
            if r.finished {
                continue;
            }
            // A TLS client may hold decrypted bytes no readiness will announce: read them too.
            loop {
                match r.sock.read(&mut buf) {
                    Ok(0) => {
                        r.error = Some("the relay closed the connection".into());
                        shared.abort.store(true, Ordering::Relaxed);
                        finish(r, k, &mut registered, &mut live);
                    }
                    Ok(n) => {
                        let at = Instant::now();
                        shared.received.fetch_add(n as u64, Ordering::Relaxed);
                        let now_ns = (at - plan.t0).as_nanos() as u64;
                        let latencies = &mut r.latencies;
                        if let Err(e) = r
                            .check
                            .feed(&buf[..n], |ts| latencies.push(now_ns.saturating_sub(ts)))
                        {
                            r.error = Some(e);
                            shared.abort.store(true, Ordering::Relaxed);
                            finish(r, k, &mut registered, &mut live);
                            break;
                        }
                        if r.pattern_done.is_none() && r.check.pattern_complete() {
                            r.pattern_done = Some(at);
                            shared.patterns_complete.fetch_add(1, Ordering::Relaxed);
                        }
                        match complete(r, shared) {
                            Ok(true) => finish(r, k, &mut registered, &mut live),
                            Ok(false) => {}
                            Err(e) => {
                                r.error = Some(e);
                                shared.abort.store(true, Ordering::Relaxed);
                                finish(r, k, &mut registered, &mut live);
                            }
                        }
                    }
                    Err(e) if is_retry(&e) => {}
                    Err(e) => {
                        r.error = Some(format!("read: {e}"));
                        shared.abort.store(true, Ordering::Relaxed);
                        finish(r, k, &mut registered, &mut live);
                    }
                }
                if r.finished || !r.sock.buffered() {
                    break;
                }
            }
        }
        // A reader may become complete without a byte arriving: when the probe sender publishes
        // its final count.
        if events.is_empty() || last_sweep.elapsed() >= TICK {
            last_sweep = Instant::now();
            for (k, r) in readers.iter_mut().enumerate() {
                if !r.finished && complete(r, shared) == Ok(true) {
                    finish(r, k, &mut registered, &mut live);
                }
            }
        }
    }
    for (k, r) in readers.iter().enumerate() {
        if registered[k] {
            let _ = poller.delete(&r.sock.tcp);
        }
    }
    readers
}

/// Whether `r` has everything: all its pattern bytes and, once the count is known, every probe.
fn complete(r: &Reader, shared: &Shared) -> Result<bool, String> {
    if r.pattern_done.is_none() {
        return Ok(false);
    }
    if !r.check.expects_probes() {
        return Ok(true);
    }
    let total = shared.probes_total.load(Ordering::Relaxed);
    let got = r.check.probes();
    if total == u64::MAX {
        return Ok(false);
    }
    if got > total || (got == total && r.check.probe_partial()) {
        return Err(format!("{got} probes received but only {total} sent"));
    }
    Ok(got == total)
}

/// Reads a slow reader's backlog until the relay closes it (true) or [`DRAIN`] passes (false).
fn drained_to_close(mut sock: TcpStream) -> bool {
    let until = Instant::now() + DRAIN;
    let mut buf = vec![0; READ_BUF];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_retry(&e) => return false,
            Err(_) => return true, // reset: closed abruptly, which is also closed
        }
    }
}

/// Connects `n` clients: all but the last in `threads` parallel batches, then the last alone, so
/// it queues behind the others.
pub(crate) fn connect_all(
    addrs: &[SocketAddr],
    n: usize,
    threads: usize,
    deadline: Instant,
    tls: Option<&Arc<ClientConfig>>,
) -> io::Result<Vec<Client>> {
    let first = n.saturating_sub(1);
    let per = first.div_ceil(threads.max(1)).max(1);
    let mut clients = thread::scope(|s| {
        let batches: Vec<_> = (0..first)
            .step_by(per)
            .map(|from| {
                s.spawn(move || {
                    (from..(from + per).min(first))
                        .map(|i| connect_one(addrs[i % addrs.len()], i, deadline, tls))
                        .collect::<io::Result<Vec<_>>>()
                })
            })
            .collect();
        let mut clients = Vec::with_capacity(n);
        for b in batches {
            clients.extend(
                b.join()
                    .map_err(|_| io::Error::other("a connecting thread panicked"))??,
            );
        }
        Ok::<_, io::Error>(clients)
    })?;
    if n > 0 {
        clients.push(connect_one(
            addrs[(n - 1) % addrs.len()],
            n - 1,
            deadline,
            tls,
        )?);
    }
    Ok(clients)
}

/// Connects client `i`, retrying timeouts and resets until `deadline`.
fn connect_one(
    addr: SocketAddr,
    i: usize,
    deadline: Instant,
    tls: Option<&Arc<ClientConfig>>,
) -> io::Result<Client> {
    let mut attempt = CONNECT_TRY;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(format!(
                "client {i}: connect to {addr}: timed out"
            )));
        }
        let bound = left.min(attempt);
        attempt = (attempt * 2).min(CONNECT_TRY_MAX);
        match TcpStream::connect_timeout(&addr, bound) {
            Ok(c) => {
                c.set_nodelay(true)?;
                c.set_read_timeout(Some(POLL))?;
                c.set_write_timeout(Some(POLL))?;
                return match tls {
                    None => Ok(Client::plain(c)),
                    Some(config) => Client::tls(c, config, deadline)
                        .map_err(|e| io::Error::new(e.kind(), format!("client {i}: TLS: {e}"))),
                };
            }
            Err(e)
                if is_retry(&e)
                    || matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("client {i}: connect to {addr}: {e}"),
                ))
            }
        }
    }
}

/// The sync probe of round `r`.
fn sync_probe(r: u16) -> [u8; 8] {
    let [hi, lo] = r.to_be_bytes();
    [0, b'S', b'Y', b'N', b'C', hi, lo, 0]
}

/// Makes sure every client is in the room: the last one sends a sync probe and every other one
/// must read it. A relay with a short backlog may accept a straggler after the probe went out,
/// so the probe is resent (with a new round number) until every client has read the latest one.
/// Afterwards nothing is in flight. Returns the number of rounds.
pub(crate) fn sync_room(clients: &mut [Client], deadline: Instant) -> io::Result<u16> {
    let Some((sender, others)) = clients.split_last_mut() else {
        return Ok(0);
    };
    let mut carry = vec![(0usize, [0u8; 8]); others.len()];
    let never = AtomicBool::new(false);
    let mut round = 0u16;
    loop {
        round = round
            .checked_add(1)
            .ok_or_else(|| io::Error::other("too many sync rounds"))?;
        write_until(sender, &sync_probe(round), deadline, &never)?;
        let round_end = deadline.min(Instant::now() + SYNC_ROUND);
        let mut missing = 0;
        for (i, c) in others.iter_mut().enumerate() {
            if !read_sync(c, &mut carry[i], round, round_end)
                .map_err(|e| io::Error::new(e.kind(), format!("client {i}: {e}")))?
            {
                missing += 1;
            }
        }
        for c in others.iter() {
            c.set_read_timeout(Some(POLL))?;
        }
        if missing == 0 {
            return Ok(round);
        }
        if Instant::now() >= deadline {
            return Err(timed_out(format!(
                "{missing} of {} clients never received the sync probe",
                others.len()
            )));
        }
    }
}

/// Reads sync probes until the one of `round` (true) or `until` (false). Older probes are
/// skipped; anything else is an error.
fn read_sync(
    c: &mut Client,
    carry: &mut (usize, [u8; 8]),
    round: u16,
    until: Instant,
) -> io::Result<bool> {
    loop {
        while carry.0 < carry.1.len() {
            let left = until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            c.set_read_timeout(Some(left))?;
            match c.read(&mut carry.1[carry.0..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the relay closed the connection during sync",
                    ))
                }
                Ok(n) => carry.0 += n,
                Err(e) if is_retry(&e) => {
                    if Instant::now() >= until {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let unit = carry.1;
        carry.0 = 0;
        let r = u16::from_be_bytes([unit[5], unit[6]]);
        if unit != sync_probe(r) || r > round {
            return Err(io::Error::other(format!(
                "unexpected bytes during sync: {:?}; is something else talking to this relay?",
                unit.escape_ascii().to_string()
            )));
        }
        if r == round {
            return Ok(true);
        }
    }
}

/// What a scale run measured.
#[derive(Debug, Clone)]
pub(crate) struct ScaleOutcome {
    /// Ok if every client connected and then received client 0's message after the idle time.
    pub(crate) status: Status,
    /// Connecting and synchronising every client.
    pub(crate) connect_secs: f64,
    /// Resident memory after the idle time, and the peak, in KiB.
    pub(crate) memory_kib: Option<(u64, u64)>,
    /// The relay's CPU time during the idle time.
    pub(crate) idle_cpu: Option<f64>,
    /// Clients that received the final message.
    pub(crate) served: usize,
}

/// Connects `n` clients, lets them idle for `idle`, measures the relay, then checks that a
/// message from client 0 reaches every other client.
pub(crate) fn run_scale(
    addr: SocketAddr,
    n: usize,
    connect_threads: usize,
    idle: Duration,
    timeout: Duration,
    meter: Option<Meter>,
) -> ScaleOutcome {
    let deadline = Instant::now() + timeout;
    let mut outcome = ScaleOutcome {
        status: Status::Ok,
        connect_secs: 0.0,
        memory_kib: None,
        idle_cpu: None,
        served: 0,
    };
    let began = Instant::now();
    let mut clients = match connect_all(&[addr], n, connect_threads, deadline, None) {
        Ok(c) => c,
        Err(e) => {
            outcome.status = Status::Failed(format!("connecting: {e}"));
            return outcome;
        }
    };
    if let Err(e) = sync_room(&mut clients, deadline) {
        outcome.status = Status::Failed(format!("synchronising: {e}"));
        return outcome;
    }
    outcome.connect_secs = began.elapsed().as_secs_f64();
    let cpu0 = meter.and_then(Meter::cpu_secs);
    // The measurement itself: the relay holds n idle connections for this long.
    thread::sleep(idle);
    outcome.idle_cpu = cpu0.and_then(|a| Some(meter?.cpu_secs()? - a));
    outcome.memory_kib = meter.and_then(Meter::memory_kib);

    const SERVED: &[u8; 8] = b"\x00SERVED\x00";
    let never = AtomicBool::new(false);
    if let Err(e) = write_until(&mut clients[0], SERVED, deadline, &never) {
        outcome.status = Status::Failed(format!("client 0 could not send: {e}"));
        return outcome;
    }
    let mut first_error = None;
    for (i, c) in clients.iter_mut().enumerate().skip(1) {
        let mut got = [0u8; 8];
        match read_exact_until(c, &mut got, deadline) {
            Ok(()) if &got == SERVED => outcome.served += 1,
            Ok(()) => {
                first_error.get_or_insert(format!(
                    "client {i}: got {:?}",
                    got.escape_ascii().to_string()
                ));
            }
            Err(e) => {
                first_error.get_or_insert(format!("client {i}: {e}"));
            }
        }
    }
    if let Some(e) = first_error {
        outcome.status = Status::Failed(format!(
            "{} of {} clients did not receive client 0's message; first: {e}",
            n - 1 - outcome.served,
            n - 1
        ));
    }
    outcome
}

/// `read_exact` that gives up at `deadline` (the socket's short timeout lets it check).
fn read_exact_until(c: &mut Client, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        if Instant::now() >= deadline {
            return Err(timed_out(format!("got {filled} of {} bytes", buf.len())));
        }
        match c.read(&mut buf[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if is_retry(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `write_all` that gives up at `deadline` or on `abort`: a stalled relay stops reading, the
/// socket's send buffer fills, and a plain `write_all` would block forever.
fn write_until(
    w: &mut Client,
    mut bytes: &[u8],
    deadline: Instant,
    abort: &AtomicBool,
) -> io::Result<()> {
    while !bytes.is_empty() {
        if Instant::now() >= deadline {
            return Err(timed_out("timed out writing".into()));
        }
        if abort.load(Ordering::Relaxed) {
            return Err(io::Error::other("stopped: another thread failed"));
        }
        match w.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if is_retry(&e) => {}
            Err(e) => return Err(e),
        }
    }
    // A TLS client may still hold records it made from those bytes.
    loop {
        match w.flush() {
            Ok(()) => return Ok(()),
            Err(e) if is_retry(&e) => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            return Err(timed_out("timed out writing".into()));
        }
        if abort.load(Ordering::Relaxed) {
            return Err(io::Error::other("stopped: another thread failed"));
        }
    }
}

/// A socket timeout or an interruption: check the deadline and retry.
fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn timed_out(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ceiling::{CeilingRelay, Mangle};

    fn spec(clients: usize, senders: usize, size: usize, messages: usize) -> RoomSpec {
        RoomSpec {
            clients,
            senders,
            size,
            messages,
            probe: None,
            slow_readers: 0,
            receiver_threads: 2,
            connect_threads: 2,
            timeout: Duration::from_secs(20),
            stall: Duration::from_secs(5),
            tls: None,
        }
    }

    fn run_on(mangle: Mangle, spec: &RoomSpec) -> RoomOutcome {
        let relay = CeilingRelay::start(mangle).expect("start the ceiling relay");
        run_room(&[relay.addr()], spec, relay.meter(), &|_| {})
    }

    #[test]
    fn the_ceiling_relay_relays_a_small_fan_out_completely() {
        let s = spec(6, 3, 100, 200);
        let o = run_on(Mangle::None, &s);
        assert_eq!(o.status, Status::Ok);
        // 3 senders x 20,000 bytes, each to the 5 other clients.
        assert_eq!(o.pattern_bytes, 3 * 20_000 * 5);
        assert_eq!(o.pattern_bytes, s.expected_bytes());
        // CPU times come from Linux's /proc; elsewhere the run is checked, not metered.
        if cfg!(target_os = "linux") {
            assert!(o.server_cpu.is_some() && o.tool_cpu.is_some());
        }
    }

    /// TLS clients against our engine with its TLS acceptor (in-process): the room, its sync,
    /// the probes and the checker work the same through encryption.
    #[test]
    fn a_tls_room_relays_completely_with_probes() {
        use relay_tests::tls::{TempDir, TestPki};
        use relay_tls::tls::{TlsAcceptor, TlsFiles};
        let (pki, dir) = (TestPki::new(), TempDir::new());
        let files = pki.write(dir.path());
        let acceptor = TlsAcceptor::from_files(&TlsFiles {
            cert: files.cert,
            key: files.key,
            client_ca: None,
        })
        .expect("TLS acceptor");
        let server = relay_tests::TestServer::start_with(
            backend_polling::PollingBackend::new,
            acceptor,
            server_core::Config::default(),
        );
        let s = RoomSpec {
            probe: Some(Probe {
                interval: Duration::from_millis(1),
                count: None,
            }),
            tls: Some(pki.client_config(None)),
            ..spec(6, 3, 5000, 40)
        };
        let o = run_room(&[server.addr], &s, None, &|_| {});
        assert_eq!(o.status, Status::Ok, "{o:?}");
        assert_eq!(o.pattern_bytes, s.expected_bytes());
        assert!(o.probes_sent > 0 && !o.latencies_ns.is_empty());
        let summary = server.stop();
        assert_eq!(summary.accepted, 6);
        assert_eq!(summary.handshakes_failed, 0);
    }

    #[test]
    fn a_dropped_corrupted_or_reordered_byte_fails_the_run() {
        // Chunk 0 is the sync probe; chunk 1 is the first pattern chunk (senders write faster
        // than the relay reads, so a run may have only a few, large chunks).
        for mangle in [
            Mangle::Drop(1),
            Mangle::Corrupt(1),
            Mangle::Swap(1),
            Mangle::Corrupt(0),
        ] {
            let o = run_on(mangle, &spec(4, 2, 64, 100));
            match &o.status {
                Status::Failed(e) => assert!(
                    e.contains("lost, duplicated or out of order") || e.contains("sync"),
                    "{mangle:?}: {e}"
                ),
                other => panic!("{mangle:?} not caught: {other:?}"),
            }
        }
    }

    #[test]
    fn probes_reach_every_other_client_with_and_without_background() {
        let mut light = spec(5, 0, 64, 1);
        light.probe = Some(Probe {
            interval: Duration::from_micros(200),
            count: Some(50),
        });
        let o = run_on(Mangle::None, &light);
        assert_eq!(o.status, Status::Ok);
        assert_eq!(o.probes_sent, 50);
        assert_eq!(o.latencies_ns.len(), 50 * 4);
        assert!(o.latencies_ns.windows(2).all(|w| w[0] <= w[1]));

        let mut loaded = spec(5, 2, 64, 2_000);
        loaded.probe = Some(Probe {
            interval: Duration::from_micros(100),
            count: None,
        });
        let o = run_on(Mangle::None, &loaded);
        assert_eq!(o.status, Status::Ok);
        assert!(o.probes_sent >= 1);
        assert_eq!(o.latencies_ns.len() as u64, o.probes_sent * 4);
        assert_eq!(o.pattern_bytes, loaded.expected_bytes());
    }

    #[test]
    fn a_relay_that_stops_relaying_ends_as_stalled_not_hung() {
        // A listener that accepts (in the kernel backlog) but never relays: sync cannot finish.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = spec(3, 1, 64, 10);
        s.timeout = Duration::from_millis(600);
        let started = Instant::now();
        let o = run_room(&[listener.local_addr().unwrap()], &s, None, &|_| {});
        assert!(
            matches!(o.status, Status::Failed(ref e) if e.contains("sync")),
            "{:?}",
            o.status
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn scale_checks_every_client_is_served() {
        let relay = CeilingRelay::start(Mangle::None).unwrap();
        let o = run_scale(
            relay.addr(),
            20,
            3,
            Duration::from_millis(1),
            Duration::from_secs(20),
            relay.meter(),
        );
        assert_eq!(o.status, Status::Ok);
        assert_eq!(o.served, 19);
        if cfg!(target_os = "linux") {
            assert!(o.idle_cpu.is_some());
        }
    }

    #[test]
    fn spec_rejects_impossible_rooms() {
        assert!(spec(2, 3, 64, 1).check().is_err());
        assert!(spec(20, 17, 64, 1).check().is_err());
        let mut s = spec(20, 16, 64, 1);
        s.probe = Some(Probe {
            interval: Duration::from_millis(1),
            count: None,
        });
        assert!(
            s.check().is_err(),
            "16 pattern senders leave no nibble for the probe"
        );
        s.senders = 15;
        assert!(s.check().is_ok());
        assert!(spec(20, 0, 64, 1).check().is_err(), "nothing to send");
    }
}
