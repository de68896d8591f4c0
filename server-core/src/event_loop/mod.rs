//! The event loop: one turn at a time, in phases.
//!
//! A turn is: **wait** for readiness; read the clock once; **read and relay** (one read per
//! readable connection, starting one event later each turn so that no sender is always first;
//! fan-out of what was read, messages from the uplink) while only *noting*
//! which doors have newcomers; **timers** (connections past a deadline are marked); **reap** the
//! connections marked to leave; **admit** newcomers (after departures, so a full room that just
//! emptied lets them in); **flush** every connection that got data; **stats**.
//!
//! Nothing closes a connection where it finds it must go: it is marked with its reason
//! ([`connection::Doomed`]) and the reaper ([`reap`]) deregisters, logs, counts and says farewell
//! in one place. So no phase takes the backend only to remove, and fan-out never re-enters.
//!
//! Files: [`accept`] (doors, the only code that touches a listener), [`seat`] (a newcomer's
//! place in the room), [`join`] (connections a service hands to the room), [`relay`] (read,
//! frame, fan out), [`flush`] (queues to sockets, interest, the drain), [`timers`] (deadlines,
//! the statistics line), [`reap`] (departures), [`connection`] (one client).

mod accept;
mod connection;
mod fairness;
mod flush;
mod join;
mod pacing;
mod reap;
mod relay;
mod seat;
mod service_flush;
mod services;
#[cfg(test)]
mod tests;
mod timers;
mod view;

use std::io;
use std::time::{Duration, Instant};

use tracing::trace;

use crate::backend::{Backend, Events, Token};
use crate::config::Config;
use crate::link::Uplink;
use crate::pool::Pool;
use crate::service::{Service, ServiceLimits};
use crate::shutdown::Shutdown;
use crate::summary::Summary;

pub(crate) use accept::Door;
pub(crate) use connection::Connection;
use connection::Doomed;
use pacing::PaceCounts;
use services::Services;
use timers::Timers;
pub use view::View;

/// The engine's state between turns: the room's connections, its doors and its counters.
pub(crate) struct Engine {
    config: Config,
    /// Most connections at once: the configured limit, lowered to what the backend can hold
    /// beside the listeners.
    max_clients: usize,
    pool: Pool<Connection>,
    doors: accept::Doors,
    /// The room's connection to other relays, if it has one.
    uplink: Option<Box<dyn Uplink>>,
    /// The uplink had more messages than one turn takes.
    uplink_more: bool,
    /// The one read buffer, reused for every read.
    read_buf: Vec<u8>,
    /// Line mode: the lines one read completed, reused for every read.
    lines: Vec<u8>,
    /// Connections whose link holds input already taken from the socket: read again next turn.
    read_again: Vec<Token>,
    /// Members whose queues hold the room back, for the pace (see `pace`).
    pace_counts: PaceCounts,
    /// Senders not read until the room catches up.
    paused: Vec<Token>,
    /// Advances at every turn that ends with the room clear: bytes read while it is held back
    /// are counted per sender within one epoch.
    clear_epoch: u64,
    /// Where this turn's events start being handled: one place later each turn, so that no
    /// member is always read first (see `turn`).
    rotation: usize,
    /// Senders not read until their allowance refills (`--max-rate`).
    rate_waiting: Vec<Token>,
    /// Connections to flush in this turn's flush phase.
    dirty: Vec<Token>,
    /// Connections marked to leave, for the reaper.
    doomed: Doomed,
    /// Connections accepted but not yet established (handshaking).
    handshaking: usize,
    /// Connections whose link has a heartbeat of its own.
    heartbeats: usize,
    timers: Timers,
    /// The last client id handed out.
    last_id: u64,
    /// The time of this turn: the clock is read once, right after each wait.
    now: Instant,
    events: Events,
    summary: Summary,
    /// The service doors' services and connections (never room members).
    services: Services,
}

impl Engine {
    /// An engine with no connections, serving `doors` (already registered with the backend).
    pub(crate) fn new(
        config: Config,
        doors: Vec<Door>,
        uplink: Option<Box<dyn Uplink>>,
        backend_capacity: Option<usize>,
        now: Instant,
    ) -> Self {
        Engine {
            max_clients: config.client_limit(backend_capacity, doors.len()),
            pool: Pool::new(),
            doors: accept::Doors::new(doors),
            uplink,
            uplink_more: false,
            read_buf: vec![0; config.read_buffer.max(2)],
            lines: Vec::new(),
            read_again: Vec::new(),
            pace_counts: PaceCounts::default(),
            paused: Vec::new(),
            clear_epoch: 0,
            rotation: 0,
            rate_waiting: Vec::new(),
            dirty: Vec::new(),
            doomed: Doomed::default(),
            handshaking: 0,
            heartbeats: 0,
            timers: Timers::new(&config, now),
            last_id: 0,
            now,
            events: Events::with_capacity(1024),
            summary: Summary::default(),
            services: Services::new(Vec::new(), ServiceLimits::default(), "", now),
            config,
        }
    }

    /// Turns until `shutdown` is requested (`Ok`) or the backend's wait fails (`Err`).
    pub(crate) fn serve<B: Backend>(
        &mut self,
        backend: &mut B,
        shutdown: &Shutdown,
    ) -> io::Result<()> {
        while !shutdown.is_requested() {
            self.turn(backend)?;
        }
        Ok(())
    }

    /// One turn of the loop; see the module's documentation for its phases.
    pub(crate) fn turn<B: Backend>(&mut self, backend: &mut B) -> io::Result<()> {
        let timeout = if self.read_again.is_empty() && !self.uplink_more {
            let services = self.services.next_deadline();
            let wake = self.timers.next_wake(self.doors.paused_until());
            wake.into_iter()
                .chain(services)
                .min()
                .map(|at| at.saturating_duration_since(self.now))
        } else {
            Some(Duration::ZERO) // work is waiting that no readiness will announce
        };
        backend.wait(&mut self.events, timeout)?;
        self.now = Instant::now();

        // Read and relay.
        let mut again = std::mem::take(&mut self.read_again);
        for token in again.drain(..) {
            if !self.service_event(token, true, false) {
                self.read_once(token);
            }
        }
        if self.read_again.is_empty() {
            self.read_again = again; // keep the allocation
        }
        self.receive_from_uplink();
        // The first read of a turn may take a whole read buffer before the room is held back,
        // the later ones only a light sender's allowance; a backend that reports members in the
        // same order at every wakeup (select: by descriptor) would give that first read to the
        // same sender every time, so where handling starts moves on by one each turn.
        let events = std::mem::take(&mut self.events);
        let first = self.rotation % events.len().max(1);
        self.rotation = self.rotation.wrapping_add(1);
        let (before, from_first) = events.iter().as_slice().split_at(first);
        for event in from_first.iter().chain(before) {
            trace!(
                token = event.token.0,
                readable = event.readable,
                writable = event.writable,
                "event"
            );
            if let Some(door) = event.token.door_index() {
                self.doors.note_ready(door);
            } else if self.service_event(event.token, event.readable, event.writable) {
                // a service connection's: read and answered, or to flush
            } else if event.token != Token::WAKER {
                if event.is_readable() {
                    self.read_once(event.token);
                }
                if event.is_writable() {
                    self.mark_dirty(event.token);
                }
            }
        }
        self.events = events;

        self.sweep_if_due();
        self.sweep_services();
        self.reap(backend);
        self.admit_joiners(backend);
        self.admit(backend);
        self.flush_dirty(backend);
        self.flush_services(backend);
        self.log_stats_if_due();
        Ok(())
    }

    /// Serves `handlers` (indexed by door; `None` for a room door) within `limits`; `backend`
    /// and `started` are for the services' [`View`].
    pub(crate) fn with_services(
        mut self,
        handlers: Vec<Option<Box<dyn Service>>>,
        limits: ServiceLimits,
        backend: &'static str,
    ) -> Self {
        self.services = Services::new(handlers, limits, backend, self.now);
        self
    }

    /// Puts `token` on this turn's flush list once.
    fn mark_dirty(&mut self, token: Token) {
        if let Some(conn) = self.pool.get_mut(token) {
            if !conn.dirty && conn.cut.is_none() {
                conn.dirty = true;
                self.dirty.push(token);
            }
        }
    }

    /// Closes everything and hands back the run's counters (with the uplink's).
    pub(crate) fn finish<B: Backend>(mut self, backend: &mut B) -> Summary {
        self.close_all(backend);
        self.close_services(backend);
        self.doors.close(backend);
        self.summary.uplink = self.uplink.as_ref().map(|u| u.stats());
        self.summary
    }
}
