//! The receiver threads: each multiplexes a group of readers on the project's polling backend
//! and checks every byte it reads.

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Instant;

use backend_polling::PollingBackend;
use relay_pattern::is_retry;
use server_core::{AsBorrowedSocket, Backend, Events, Interest, Token};

use super::*;

/// Reads a group of readers until each has everything it expects, an error, the deadline or an
/// abort. Returns them with their outcome.
pub(super) fn receive(mut readers: Vec<Reader>, plan: Plan, shared: &Shared) -> Vec<Reader> {
    let mut backend = match PollingBackend::new() {
        Ok(b) => b,
        Err(e) => {
            for r in &mut readers {
                r.error = Some(format!("poller: {e}"));
            }
            return readers;
        }
    };
    let mut registered = vec![false; readers.len()];
    for (k, r) in readers.iter_mut().enumerate() {
        // Every registered socket is deregistered (`finish` or the loop at the end) before
        // `readers`, which owns it, is returned or dropped.
        match backend.register(r.sock.tcp.borrowed(), Token(k), Interest::READABLE) {
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
    let mut events = Events::with_capacity(readers.len().max(1));
    let mut buf = vec![0; READ_BUF];
    let mut last_sweep = Instant::now();
    let finish = |backend: &mut PollingBackend,
                  r: &mut Reader,
                  k: usize,
                  registered: &mut [bool],
                  live: &mut usize| {
        if registered[k] {
            let _ = backend.deregister(r.sock.tcp.borrowed());
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
                    finish(&mut backend, r, k, &mut registered, &mut live);
                }
            }
            break;
        }
        let wait = (plan.deadline - now).min(TICK);
        if let Err(e) = backend.wait(&mut events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                shared.abort.store(true, Ordering::Relaxed);
            }
            continue;
        }
        for ev in events.iter() {
            let k = ev.token.0;
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
                        finish(&mut backend, r, k, &mut registered, &mut live);
                    }
                    Ok(n) => {
                        let at = Instant::now();
                        shared.received.fetch_add(n as u64, Ordering::Relaxed);
                        let now_ns = (at - plan.t0).as_nanos() as u64;
                        let (latencies, steady) = (&mut r.latencies, &mut r.steady);
                        // A probe sent after the background ended is counted as steady only if
                        // read before that moment was stored (a few instructions later).
                        let ended = shared.background_ended_ns.load(Ordering::Acquire);
                        if let Err(e) = r.check.feed(&buf[..n], |ts| {
                            let ns = now_ns.saturating_sub(ts);
                            latencies.record(ns);
                            if plan.in_steady_window(ts, ended) {
                                steady.record(ns);
                            }
                        }) {
                            r.error = Some(e);
                            shared.abort.store(true, Ordering::Relaxed);
                            finish(&mut backend, r, k, &mut registered, &mut live);
                            break;
                        }
                        if ended == u64::MAX && r.check.a_sender_complete() {
                            shared
                                .background_ended_ns
                                .fetch_min(now_ns, Ordering::Release);
                        }
                        if r.pattern_done.is_none() && r.check.pattern_complete() {
                            r.pattern_done = Some(at);
                            shared.patterns_complete.fetch_add(1, Ordering::Relaxed);
                        }
                        match complete(r, shared) {
                            Ok(true) => finish(&mut backend, r, k, &mut registered, &mut live),
                            Ok(false) => {}
                            Err(e) => {
                                r.error = Some(e);
                                shared.abort.store(true, Ordering::Relaxed);
                                finish(&mut backend, r, k, &mut registered, &mut live);
                            }
                        }
                    }
                    Err(e) if is_retry(&e) => {}
                    Err(e) => {
                        r.error = Some(format!("read: {e}"));
                        shared.abort.store(true, Ordering::Relaxed);
                        finish(&mut backend, r, k, &mut registered, &mut live);
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
                    finish(&mut backend, r, k, &mut registered, &mut live);
                }
            }
        }
    }
    for (k, r) in readers.iter().enumerate() {
        if registered[k] {
            let _ = backend.deregister(r.sock.tcp.borrowed());
        }
    }
    readers
}

/// Whether `r` has everything: all its pattern bytes and, once the count is known, every probe.
pub(super) fn complete(r: &Reader, shared: &Shared) -> Result<bool, String> {
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
pub(super) fn drained_to_close(mut sock: TcpStream) -> bool {
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
