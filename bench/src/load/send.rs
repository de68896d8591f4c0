//! The senders: pattern messages, timestamped probes, and the bounded write both use.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::Instant;

use relay_pattern::{is_retry, Pattern};

use crate::check::encode_probe;
use crate::client::Client;

use super::connect::timed_out;
use super::*;

/// Writes `messages` messages of `size` bytes of sender `s`'s pattern, one write each.
pub(super) fn send_pattern(
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
pub(super) fn send_probes(
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

/// `write_all` that gives up at `deadline` or on `abort`: a stalled relay stops reading, the
/// socket's send buffer fills, and a plain `write_all` would block forever.
pub(super) fn write_until(
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
