//! Departures: the one place a connection is closed. It deregisters, logs and counts, and in
//! line mode says farewell (the leaver's unterminated last line, and `* N left`).

use super::Engine;
use crate::backend::{Backend, Token};
use crate::framing::{self, Framing};
use crate::summary::{Departure, DropReason};
use std::rc::Rc;

impl Engine {
    /// Closes every connection marked to leave, first marked first. A farewell that overflows
    /// another client's queue marks that client too, and it is reaped in the same call.
    pub(super) fn reap<B: Backend>(&mut self, backend: &mut B) {
        while let Some(token) = self.doomed.next() {
            let Some(mut conn) = self.pool.remove(token) else {
                continue;
            };
            let cut = conn
                .cut
                .take()
                .expect("a doomed connection carries its cut");
            // Deregister while the socket is still open. An error means the backend no longer
            // holds it, which is the state we want; the socket is closed below either way.
            let _ = backend.deregister(conn.link.borrowed());
            if !conn.member {
                self.handshaking -= 1;
            }
            self.pace_counts.forget(&conn);
            self.heartbeats -= usize::from(conn.beat.is_some());
            self.doors.seats.free(conn.address);
            let (id, member) = (conn.id, conn.member);
            let departure = Departure {
                sd: conn.sd,
                id,
                peer: conn.peer,
                reason: cut.reason,
                error: cut.error.as_ref(),
                pending: conn.queue.clear(),
                clients: self.pool.len(),
            };
            let partial = std::mem::take(&mut conn.partial);
            // Closed before the log line, so whoever reads "removing connection" may rely on it.
            drop(conn);
            self.summary.record_departure(&departure, &self.config);
            self.doors.seat_freed();
            if cut.reason != DropReason::Shutdown && member {
                self.farewell(token, id, partial, cut.reason);
            }
        }
        self.reap_services(backend);
    }

    /// Line mode: delivers a leaving client's unterminated last line (if it left rather than
    /// being cut), then announces its departure if asked to.
    fn farewell(&mut self, token: Token, id: u64, mut partial: Vec<u8>, reason: DropReason) {
        let Framing::Lines(opts) = &self.config.framing else {
            return;
        };
        if reason == DropReason::PeerClosed
            && framing::finish(&mut partial, id, opts, &mut self.lines)
        {
            self.summary.messages_in += 1;
            let last: Rc<[u8]> = Rc::from(&self.lines[..]);
            self.publish(&last);
            self.fan_out(token, last, 1);
        }
        self.announce(token, id, "left");
    }
}
