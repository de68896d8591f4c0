//! The room's pace in the loop: every queue change updates its reader's standing, senders are
//! paused while a reader that keeps up is over the budget, and resumed once none is.

use std::time::Instant;

use tracing::debug;

use super::connection::Connection;
use super::Engine;
use crate::backend::{Backend, Interest, Token};
use crate::pace::{room_is_slow, Pace, Standing};

/// How many members hold the room back, and how many are over the budget at all.
#[derive(Debug, Default)]
pub(super) struct PaceCounts {
    /// Members over the budget that are not lagging: while any, senders are paused.
    pub(super) holding_back: usize,
    /// Members over the budget, lagging or not (to tell a slow room from one slow reader).
    over: usize,
}

impl PaceCounts {
    /// Records `conn`'s queue length at `now`. Returns whether it just went over the budget, so
    /// that a judgement is scheduled within the grace.
    pub(super) fn note(&mut self, conn: &mut Connection, pace: &Pace, now: Instant) -> bool {
        let before = conn.standing;
        conn.standing.update(conn.queue.len(), pace, now);
        self.count(&before, false);
        self.count(&conn.standing, true);
        !before.is_over() && conn.standing.is_over()
    }

    /// A connection leaves: its standing no longer counts.
    pub(super) fn forget(&mut self, conn: &Connection) {
        self.count(&conn.standing, false);
    }

    fn count(&mut self, standing: &Standing, add: bool) {
        let step = |n: &mut usize| *n = if add { *n + 1 } else { *n - 1 };
        if standing.holds_back() {
            step(&mut self.holding_back);
        }
        if standing.is_over() {
            step(&mut self.over);
        }
    }
}

impl Engine {
    /// Whether reading from a member must wait for the room to catch up.
    pub(super) fn room_held_back(&self) -> bool {
        self.pace_counts.holding_back > 0
    }

    /// Stops reading from `conn` (under `token`) until the room catches up; the flush phase
    /// turns its read interest off, and TCP flow control does the rest.
    pub(super) fn pause_reading(&mut self, token: Token) {
        if let Some(conn) = self.pool.get_mut(token) {
            if !conn.read_paused {
                conn.read_paused = true;
                self.paused.push(token);
            }
        }
        self.mark_dirty(token);
    }

    /// Once nobody holds the room back, reads from every paused sender again.
    pub(super) fn resume_if_clear<B: Backend>(&mut self, backend: &mut B) {
        if self.room_held_back() || self.paused.is_empty() {
            return;
        }
        let mut paused = std::mem::take(&mut self.paused);
        for token in paused.drain(..) {
            let Some(conn) = self.pool.get_mut(token) else {
                continue;
            };
            conn.read_paused = false;
            if conn.link.has_buffered_input() {
                self.read_again.push(token);
            }
            self.flush(token, Interest::READABLE, backend);
        }
        self.paused = paused;
    }

    /// Judges every member over the budget (from the sweep): one past the grace, in a room that
    /// is not slow as a whole, or that stopped writing, is lagging and holds no one back.
    /// Returns whether a member still holds the room back (the next judgement is then due).
    pub(super) fn judge_laggards(&mut self) -> bool {
        let pace = self.config.pace;
        let now = self.now;
        let members = self.pool.len() - self.handshaking;
        let slow = room_is_slow(self.pace_counts.over, members);
        for (_, conn) in self.pool.iter_mut() {
            let stopped = conn.progress.stalled_for(pace.grace, now);
            if conn.member && conn.standing.judge(&pace, now, slow, stopped) {
                self.pace_counts.holding_back -= 1;
                let (sd, pending) = (conn.sd, conn.queue.len());
                debug!(
                    sd,
                    pending,
                    stopped,
                    "sd {sd} lags behind the room; it no longer slows the senders"
                );
            }
        }
        self.room_held_back()
    }
}
