//! Scale runs: many clients connect, idle, and must all receive one final message.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant};

use crate::procstat::Meter;

use super::connect::read_exact_until;
use super::send::write_until;
use super::*;

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
    let mut clients = match connect_all(&[addr], n, connect_threads, deadline, None, None) {
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
