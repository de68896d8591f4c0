//! A fan-out load generator for a chat relay on loopback (ours, or `ncat --broker`).
//!
//! It connects C clients; the first S of them each send M messages of B bytes (one `write` per
//! message), and every client, senders included, must receive every *other* sender's bytes. It
//! measures the wall time from the moment the senders start until the last receiver has all it
//! expects, and reports deliveries per second (one delivery = one message arriving at one
//! receiver) and MiB/s delivered. With at most 16 senders every receiver also checks that each
//! sender's stream arrived complete and in order; with more it only counts bytes.
//!
//! ```text
//! cargo run --release -p relay-tests --example fanout -- \
//!     [--addr 127.0.0.1:9000] [--clients 100] [--senders 10] [--size 64] [--messages 2000] [--timeout 60]
//! ```
//!
//! It only ever connects to loopback, ends by itself within about `--timeout` seconds, prints a
//! human-readable summary and one JSON line, and exits 0 only if every receiver got every byte
//! (and, when checked, in order).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use relay_tests::{Demux, Pattern};

const USAGE: &str = "\
usage: fanout [--addr 127.0.0.1:9000] [--clients 100] [--senders 10] [--size 64]
              [--messages 2000] [--timeout 60]
  C clients connect to a loopback relay; the first S send M messages of B bytes each and
  every client must receive every other sender's bytes. Reports deliveries/s and MiB/s.";

/// Written by the last client to join; everyone else must read exactly these bytes.
const PROBE: &[u8; 8] = b"\x00SYNC\x00\x00\x00";
/// How long the other clients wait for the probe.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// Socket read/write timeout: how often a blocked thread wakes to check the deadline.
const POLL: Duration = Duration::from_millis(250);
/// Receive buffer per client.
const READ_BUF: usize = 64 * 1024;

#[derive(Debug)]
struct Options {
    addr: SocketAddr,
    clients: usize,
    senders: usize,
    size: usize,
    messages: usize,
    timeout: Duration,
}

/// Why parsing stopped: a request for help, or a mistake.
#[derive(Debug)]
enum ArgError {
    Help,
    Bad(String),
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, ArgError> {
    let mut o = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], 9000)),
        clients: 100,
        senders: 10,
        size: 64,
        messages: 2000,
        timeout: Duration::from_secs(60),
    };
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(ArgError::Help);
        }
        let Some(value) = args.next() else {
            return Err(ArgError::Bad(format!("{flag} needs a value")));
        };
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| ArgError::Bad(format!("{flag}: not a number: {value:?}")))
        };
        match flag.as_str() {
            "--addr" => {
                o.addr = value.parse().map_err(|_| {
                    ArgError::Bad(format!("--addr: not an IP:port address: {value:?}"))
                })?;
            }
            "--clients" => o.clients = number()?,
            "--senders" => o.senders = number()?,
            "--size" => o.size = number()?,
            "--messages" => o.messages = number()?,
            "--timeout" => o.timeout = Duration::from_secs(number()? as u64),
            _ => return Err(ArgError::Bad(format!("unknown flag {flag:?}"))),
        }
    }
    // Safety net for a load generator: it must never be pointed at another host.
    if !o.addr.ip().is_loopback() {
        return Err(ArgError::Bad(format!(
            "{} is not a loopback address (127.0.0.0/8 or ::1); this tool only talks to loopback",
            o.addr.ip()
        )));
    }
    if o.clients < 2 || o.senders == 0 || o.senders > o.clients {
        return Err(ArgError::Bad(
            "need --clients >= 2 and 1 <= --senders <= --clients".into(),
        ));
    }
    if o.size == 0 || o.messages == 0 || o.timeout.is_zero() {
        return Err(ArgError::Bad(
            "--size, --messages and --timeout must be > 0".into(),
        ));
    }
    // Every receiver's expected byte count, and the grand total, must fit in a usize.
    if o.size
        .checked_mul(o.messages)
        .and_then(|n| n.checked_mul(o.senders))
        .and_then(|n| n.checked_mul(o.clients))
        .is_none()
    {
        return Err(ArgError::Bad(
            "--size x --messages x --senders x --clients is too large".into(),
        ));
    }
    Ok(o)
}

fn main() -> ExitCode {
    let o = match parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(ArgError::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ArgError::Bad(e)) => {
            eprintln!("fanout: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Returning from `main` ends the process, and with it any thread still parked on the start
    // barrier after a set-up error.
    match run(&o) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fanout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What every thread needs to know about the run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    senders: usize,
    size: usize,
    messages: usize,
    verify: bool,
    deadline: Instant,
}

/// How one receiver ended.
#[derive(Debug)]
struct Received {
    bytes: usize,
    expected: usize,
    /// When the last expected byte arrived; `None` if it never did.
    done: Option<Instant>,
    error: Option<String>,
}

fn run(o: &Options) -> io::Result<bool> {
    // One deadline bounds everything: connecting, the probe, sending and receiving.
    let deadline = Instant::now() + o.timeout;
    let plan = Plan {
        senders: o.senders,
        size: o.size,
        messages: o.messages,
        verify: o.senders <= Pattern::SENDERS,
        deadline,
    };

    let mut clients = Vec::with_capacity(o.clients);
    for i in 0..o.clients {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(format!(
                "only {i} of {} clients connected",
                o.clients
            )));
        }
        let c = TcpStream::connect_timeout(&o.addr, left).map_err(|e| {
            io::Error::new(e.kind(), format!("client {i}: connect to {}: {e}", o.addr))
        })?;
        c.set_nodelay(true)?;
        // Short socket timeouts so no read or write blocks past the deadline by more than POLL.
        c.set_read_timeout(Some(POLL))?;
        c.set_write_timeout(Some(POLL))?;
        clients.push(c);
    }

    // The relay accepts in FIFO order: once the last client's probe has been relayed to every
    // other client, all of them are in the room and no measured byte can be lost to a late accept.
    let (last, others) = clients.split_last_mut().expect("at least two clients");
    write_until(last, PROBE, deadline, &AtomicBool::new(false))
        .map_err(|e| io::Error::new(e.kind(), format!("sending the sync probe: {e}")))?;
    let sync_deadline = deadline.min(Instant::now() + SYNC_TIMEOUT);
    for (i, c) in others.iter_mut().enumerate() {
        let mut got = [0; PROBE.len()];
        read_until(c, &mut got, sync_deadline).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("client {i}: sync probe did not arrive: {e}"),
            )
        })?;
        if &got != PROBE {
            return Err(io::Error::other(format!(
                "client {i}: expected the sync probe, got {:?}; is something else talking to this relay?",
                got.escape_ascii().to_string()
            )));
        }
    }

    // Any failure stops every thread early instead of leaving them to the deadline.
    let abort = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(o.senders + 1));
    let mut senders = Vec::with_capacity(o.senders);
    for (s, c) in clients.iter().take(o.senders).enumerate() {
        // A sender is also a receiver: it writes on a clone while its reader owns the original.
        let w = c.try_clone()?;
        let (start, abort) = (Arc::clone(&start), Arc::clone(&abort));
        senders.push(
            thread::Builder::new()
                .name(format!("sender-{s}"))
                .spawn(move || send(w, s, plan, &start, &abort))?,
        );
    }
    // Every reader runs before any sender starts; otherwise unread socket buffers fill, the relay
    // stops reading from the senders, and the whole room stalls.
    let mut receivers = Vec::with_capacity(o.clients);
    for (me, c) in clients.into_iter().enumerate() {
        let abort = Arc::clone(&abort);
        receivers.push(
            thread::Builder::new()
                .name(format!("receiver-{me}"))
                .spawn(move || receive(c, me, plan, &abort))?,
        );
    }
    start.wait();
    let began = Instant::now();

    let mut ok = true;
    let mut delivered_bytes = 0usize;
    let mut last_done = began;
    let mut short = 0usize;
    for (i, r) in receivers.into_iter().enumerate() {
        let r = r
            .join()
            .unwrap_or_else(|_| failed(0, 0, format!("receiver {i} panicked")));
        delivered_bytes += r.bytes;
        if let Some(done) = r.done {
            last_done = last_done.max(done);
        }
        if r.done.is_none() || r.error.is_some() {
            ok = false;
            short += 1;
            eprintln!(
                "receiver {i}: got {} of {} bytes: {}",
                r.bytes,
                r.expected,
                r.error.as_deref().unwrap_or("incomplete")
            );
        }
    }
    for (s, h) in senders.into_iter().enumerate() {
        let result = h.join().unwrap_or_else(|_| Err("panicked".into()));
        if let Err(e) = result {
            ok = false;
            eprintln!("sender {s}: {e}");
        }
    }
    // On failure there is no "last receiver done"; report the time until everything stopped.
    let secs = if ok {
        last_done - began
    } else {
        began.elapsed()
    }
    .as_secs_f64()
    .max(1e-9);

    let deliveries = delivered_bytes / o.size;
    let per_sec = deliveries as f64 / secs;
    let mib = delivered_bytes as f64 / secs / (1024.0 * 1024.0);
    let verified = ok && plan.verify;
    println!(
        "fanout to {}: {} clients, {} senders x {} messages x {} B",
        o.addr, o.clients, o.senders, o.messages, o.size
    );
    println!(
        "  {deliveries} deliveries in {secs:.3} s = {per_sec:.0} deliveries/s, {mib:.1} MiB/s"
    );
    println!(
        "  {}",
        match (ok, plan.verify) {
            (false, _) => format!(
                "FAILED: {short} of {} receivers incomplete or wrong",
                o.clients
            ),
            (true, true) =>
                "complete; every sender's stream verified in order at every receiver".to_string(),
            (true, false) => format!(
                "complete; byte counts only, not verified (more than {} senders)",
                Pattern::SENDERS
            ),
        }
    );
    println!(
        "{{\"addr\":\"{}\",\"clients\":{},\"senders\":{},\"size\":{},\"messages\":{},\"deliveries\":{},\"secs\":{:.6},\"deliveries_per_sec\":{:.0},\"mib_per_sec\":{:.2},\"complete\":{},\"verified\":{}}}",
        o.addr, o.clients, o.senders, o.size, o.messages, deliveries, secs, per_sec, mib, ok, verified
    );
    // Every socket was moved into a thread and closed when it returned.
    Ok(ok)
}

/// Writes `messages` messages of `size` bytes of sender `s`'s pattern, one write per message.
fn send(
    mut w: TcpStream,
    s: usize,
    plan: Plan,
    start: &Barrier,
    abort: &AtomicBool,
) -> Result<(), String> {
    // Message k starts at stream offset k * size; slicing this at that offset mod PERIOD gives
    // its bytes without building the whole stream in memory. Beyond Pattern::SENDERS senders the
    // bytes are only counted, so reusing a pattern is harmless.
    let pattern = Pattern::bytes(s % Pattern::SENDERS, 0, plan.size + Pattern::PERIOD);
    start.wait();
    for k in 0..plan.messages {
        let offset = (k * plan.size) % Pattern::PERIOD;
        if let Err(e) = write_until(
            &mut w,
            &pattern[offset..offset + plan.size],
            plan.deadline,
            abort,
        ) {
            // Everyone shares the deadline, so only other failures need to stop the rest.
            if e.kind() != io::ErrorKind::TimedOut {
                abort.store(true, Ordering::Relaxed);
            }
            return Err(format!("after {k} of {} messages: {e}", plan.messages));
        }
    }
    Ok(())
}

/// Reads until every other sender's stream has arrived, checking the pattern when `plan.verify`.
fn receive(mut r: TcpStream, me: usize, plan: Plan, abort: &AtomicBool) -> Received {
    let per_sender = plan.size * plan.messages;
    let others = if me < plan.senders {
        plan.senders - 1
    } else {
        plan.senders
    };
    let expected = others * per_sender;
    let mut demux = plan
        .verify
        .then(|| Demux::expecting(plan.senders, (me < plan.senders).then_some(me), per_sender));
    let mut total = 0;
    let mut buf = vec![0; READ_BUF];
    while total < expected {
        if Instant::now() >= plan.deadline {
            return failed(total, expected, "timed out".into());
        }
        if abort.load(Ordering::Relaxed) {
            return failed(total, expected, "stopped: another thread failed".into());
        }
        // Never read past what is expected, so anything extra is not mistaken for progress.
        let want = (expected - total).min(buf.len());
        let n = match r.read(&mut buf[..want]) {
            Ok(0) => return failed(total, expected, "the relay closed the connection".into()),
            Ok(n) => n,
            Err(e) if is_retry(&e) => continue,
            Err(e) => return failed(total, expected, format!("read: {e}")),
        };
        if let Some(Err(e)) = demux.as_mut().map(|d| d.feed(&buf[..n])) {
            abort.store(true, Ordering::Relaxed);
            return failed(total, expected, e);
        }
        total += n;
    }
    Received {
        bytes: total,
        expected,
        done: Some(Instant::now()),
        error: None,
    }
}

fn failed(bytes: usize, expected: usize, error: String) -> Received {
    Received {
        bytes,
        expected,
        done: None,
        error: Some(error),
    }
}

/// `read_exact` that gives up at `deadline` (the socket's short timeout lets it check).
fn read_until(c: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
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
    w: &mut TcpStream,
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
    Ok(())
}

/// A socket timeout (the short POLL) or an interruption: check the deadline and retry.
fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn timed_out(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, msg)
}
