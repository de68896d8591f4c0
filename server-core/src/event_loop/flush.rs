//! Flushing: queues to sockets with vectored writes, write interest derived from what remains,
//! and the drain at shutdown.

use std::time::Instant;

use tracing::{debug, info, trace, warn};

use super::{services, Engine};
use crate::backend::{Backend, Interest, Token};
use crate::policy;
use crate::summary::{io_reason, DropReason};

impl Engine {
    /// The flush phase: writes eagerly to every connection that got data or became writable
    /// this turn. A write that finds a client gone marks it; the reaper then runs, and what its
    /// farewells queued (line mode) is flushed in the same phase.
    pub(super) fn flush_dirty<B: Backend>(&mut self, backend: &mut B) {
        let mut batch = std::mem::take(&mut self.dirty);
        loop {
            for token in batch.drain(..) {
                if let Some(conn) = self.pool.get_mut(token) {
                    conn.dirty = false;
                    self.flush(token, Interest::READABLE, backend);
                }
            }
            if self.doomed.is_empty() {
                break;
            }
            self.reap(backend);
            std::mem::swap(&mut batch, &mut self.dirty);
        }
        self.dirty = batch;
        self.resume_if_clear(backend);
    }

    /// Writes what one connection's queue and link hold, then registers `base` plus write
    /// interest iff bytes remain.
    pub(super) fn flush<B: Backend>(&mut self, token: Token, base: Interest, backend: &mut B) {
        let Some(conn) = self.pool.get_mut(token) else {
            return;
        };
        if conn.cut.is_some() {
            return;
        }
        let link = &mut conn.link;
        let written = conn.queue.write_with(|bufs| link.send(bufs));
        let n = match written.and_then(|n| link.flush_own().map(|()| n)) {
            Ok(n) => n,
            Err(e) => {
                let reason = io_reason(&e, conn.member, DropReason::WriteError);
                return self.doomed.mark(token, conn, reason, Some(e));
            }
        };
        self.summary.bytes_out += n as u64;
        conn.bytes_out += n as u64;
        if n > 0 {
            conn.last_active = self.now;
        }
        conn.progress.after_flush(n, conn.queue.len(), self.now);
        if self.pace_counts.note(conn, &self.config.pace, self.now) {
            self.timers.sweep_within(self.now, self.config.pace.grace);
        }
        if !conn.queue.is_empty() {
            if let Some(t) = self.config.write_timeout {
                self.timers
                    .sweep_within(self.now, policy::sweep_interval(t));
            }
        }
        if n > 0 {
            trace!(
                sd = conn.sd,
                bytes = n,
                pending = conn.queue.len(),
                "flushed"
            );
        }
        let wanted = conn.wanted_interest(base);
        if wanted != conn.registered {
            match backend.reregister(conn.link.borrowed(), token, wanted) {
                Ok(()) => conn.registered = wanted,
                Err(e) => self
                    .doomed
                    .mark(token, conn, DropReason::BackendError, Some(e)),
            }
        }
    }

    /// Shutdown: stop accepting and reading, give pending output until the drain deadline, and
    /// close each connection as soon as its queue is empty.
    pub(crate) fn drain<B: Backend>(&mut self, backend: &mut B) {
        self.summary.open_at_stop = self.pool.len();
        self.doors.set_interest(Interest::NONE, backend);
        self.keep_services_open(backend);
        // The drain's turns read the clock once each, like the loop's.
        self.now = Instant::now();
        let deadline = self.now + self.config.drain_timeout;
        for token in self.pool.tokens() {
            self.flush_for_drain(token, backend);
        }
        self.reap(backend);
        if !self.pool.is_empty() {
            info!(
                clients = self.pool.len(),
                timeout_ms = self.config.drain_timeout.as_millis() as u64,
                "draining pending output"
            );
        }
        while !self.pool.is_empty() {
            if self.now >= deadline {
                warn!(
                    clients = self.pool.len(),
                    "drain timed out; closing the rest with output unsent"
                );
                break;
            }
            if let Err(e) = backend.wait(&mut self.events, Some(deadline - self.now)) {
                warn!(error = %e, "wait failed during the drain");
                break;
            }
            self.now = Instant::now();
            let events = std::mem::take(&mut self.events);
            for event in &events {
                if !event.token.is_reserved() && services::key_of(event.token).is_none() {
                    self.flush_for_drain(event.token, backend);
                }
            }
            self.serve_during_drain(&events, backend);
            self.events = events;
            self.reap(backend);
        }
    }

    /// Writes what it can to one connection (write interest only) and marks it to close once
    /// nothing is left to send.
    fn flush_for_drain<B: Backend>(&mut self, token: Token, backend: &mut B) {
        self.flush(token, Interest::NONE, backend);
        if let Some(conn) = self.pool.get_mut(token) {
            if conn.queue.is_empty() && !conn.link.wants_write() {
                debug!(sd = conn.sd, "drained");
                self.doomed.mark(token, conn, DropReason::Shutdown, None);
            }
        }
    }

    /// Marks every connection to close at shutdown, and reaps them.
    pub(super) fn close_all<B: Backend>(&mut self, backend: &mut B) {
        for token in self.pool.tokens() {
            if let Some(conn) = self.pool.get_mut(token) {
                self.doomed.mark(token, conn, DropReason::Shutdown, None);
            }
        }
        self.reap(backend);
    }
}
