//! Everything after the room is synchronised: start the senders, the probe sender and the
//! receiver threads together, watch progress and stalls, and gather the outcome.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::check::StreamCheck;
use crate::client::Client;
use crate::procstat::{self, Meter};
use crate::stats::Latencies;

use super::receive::{drained_to_close, receive};
use super::send::{send_pattern, send_probes};
use super::*;

/// Everything after the room is synchronised.
pub(super) fn drive(
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
        background_ended_ns: AtomicU64::new(u64::MAX),
    });
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let plan = Plan {
        deadline,
        t0: Instant::now(),
        steady_ns: spec
            .steady()
            .map(|s| (nanos(s.warmup), nanos(s.warmup.saturating_add(s.window)))),
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
            latencies: Latencies::default(),
            steady: Latencies::default(),
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
    let (mut latencies, mut steady) = (Latencies::default(), Latencies::default());
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
        latencies.add(&r.latencies);
        steady.add(&r.steady);
    }
    drop(readers);
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
        steady_ns: steady,
        steady_secs: plan.steady_secs(shared.background_ended_ns.load(Ordering::Acquire)),
        probes_sent,
        server_cpu,
        tool_cpu,
        slow_cut,
        connect_secs: 0.0,
    })
}

/// The tool's CPU time, less the relay thread's when the relay runs inside the tool.
pub(super) fn own_cpu(meter: Option<Meter>) -> Option<f64> {
    let own = procstat::own_cpu_secs()?;
    match meter {
        Some(m @ Meter::Thread(_)) => Some(own - m.cpu_secs()?),
        _ => Some(own),
    }
}
