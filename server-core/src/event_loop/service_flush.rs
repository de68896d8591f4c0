//! The services' flush and reaper: replies written like chat output, connections that are done
//! closed (after lingering: `LINGER` in services.rs), and what the drain and the end of a run do
//! to them.

use tracing::debug;

use super::relay::is_not_now;
use super::services::token_of;
use super::Engine;
use crate::backend::{Backend, Events, Interest, Token};

impl Engine {
    /// The services' flush: writes what each dirty connection holds, asks the service again for
    /// input it left (a batch of pipelined requests), sets interest from what remains, and closes
    /// connections that are done.
    pub(super) fn flush_services<B: Backend>(&mut self, backend: &mut B) {
        let mut batch = std::mem::take(&mut self.services.dirty);
        for key in batch.drain(..) {
            self.flush_service(key, backend);
        }
        if self.services.dirty.is_empty() {
            self.services.dirty = batch; // keep the allocation
        }
        self.reap_services(backend);
    }

    fn flush_service<B: Backend>(&mut self, key: Token, backend: &mut B) {
        let limits = self.services.limits;
        let Some(conn) = self.services.pool.get_mut(key) else {
            return;
        };
        conn.dirty = false;
        if conn.cut.is_some() {
            return;
        }
        let link = &mut conn.link;
        let written = conn.queue.write_with(|bufs| link.send(bufs));
        match written.and_then(|n| link.flush_own().map(|()| n)) {
            // Progress restarts the idle clock, never the clock of a request still arriving.
            Ok(n) if n > 0 && conn.input.is_empty() => conn.since = self.now,
            Ok(_) => {}
            Err(e) if is_not_now(&e) => {}
            Err(_) => return self.services.mark(key, "write error"),
        }
        if conn.queue.is_empty() && !conn.link.wants_write() {
            if conn.lingering {
                return;
            }
            if conn.closing {
                // Its answer is out: end the stream after it, and read what it still sends
                // until it closes as well (see `LINGER`). A lingering connection no longer
                // holds a seat; if too many linger already, it is closed at once.
                if self.services.lingering >= limits.max_connections {
                    return self.services.mark(key, "answered");
                }
                let socket = conn.link.borrowed();
                if socket2::SockRef::from(&socket)
                    .shutdown(std::net::Shutdown::Write)
                    .is_err()
                {
                    return self.services.mark(key, "answered");
                }
                conn.lingering = true;
                self.services.lingering += 1;
                self.services.open[conn.door] -= 1;
                conn.input.clear();
                conn.since = self.now;
            }
            if conn.link.has_buffered_input() {
                self.read_again.push(token_of(key)); // read while its reply was written
            }
            if !conn.input.is_empty() {
                // Requests the service left for later: it answers them now, and they are
                // written on the next turn (write interest is on once they are queued).
                self.service_answer(key);
                let Some(again) = self.services.pool.get_mut(key) else {
                    return;
                };
                again.dirty = false;
                self.services.dirty.retain(|&k| k != key);
            }
        }
        let Some(conn) = self.services.pool.get_mut(key) else {
            return;
        };
        let wanted = conn.wanted_interest(&limits);
        if wanted != conn.registered {
            match backend.reregister(conn.link.borrowed(), token_of(key), wanted) {
                Ok(()) => conn.registered = wanted,
                Err(_) => self.services.mark(key, "backend error"),
            }
        }
    }

    /// The services' reaper: the one place a service connection is closed.
    pub(super) fn reap_services<B: Backend>(&mut self, backend: &mut B) {
        while let Some(key) = self.services.doomed.pop() {
            let Some(conn) = self.services.pool.remove(key) else {
                continue;
            };
            let _ = backend.deregister(conn.link.borrowed());
            if conn.lingering {
                self.services.lingering -= 1;
            } else {
                self.services.open[conn.door] -= 1;
            }
            let (sd, peer, reason) = (conn.sd, conn.peer, conn.cut.unwrap_or("closed"));
            drop(conn);
            debug!(sd, %peer, reason, "service connection on sd {sd} closed: {reason}");
        }
    }

    /// During the drain: service doors keep accepting and service connections keep being
    /// answered (a health check then says the server is draining).
    pub(super) fn serve_during_drain<B: Backend>(&mut self, events: &Events, backend: &mut B) {
        for event in events {
            if let Some(door) = event.token.door_index() {
                if self.services.serves(door) {
                    self.doors.note_ready(door);
                }
            } else {
                self.service_event(event.token, event.is_readable(), event.is_writable());
            }
        }
        self.sweep_services();
        self.reap_services(backend);
        // Service doors only: the room's stay closed, and an accept pause is not ended here.
        for index in 0..self.services.handlers.len() {
            if self.services.serves(index) && self.doors.take_ready(index) {
                self.accept_burst(index, backend);
            }
        }
        self.flush_services(backend);
    }

    /// The drain begins: service doors stay open (every door was just paused) and health checks
    /// learn the server is draining.
    pub(super) fn keep_services_open<B: Backend>(&mut self, backend: &mut B) {
        self.services.start_draining();
        for index in 0..self.services.handlers.len() {
            if self.services.serves(index) {
                self.doors
                    .set_interest_of(index, Interest::READABLE, backend);
            }
        }
    }

    /// Closes every service connection (at the end of the run).
    pub(super) fn close_services<B: Backend>(&mut self, backend: &mut B) {
        for key in self.services.pool.tokens() {
            self.services.mark(key, "server shutdown");
        }
        self.reap_services(backend);
    }
}
