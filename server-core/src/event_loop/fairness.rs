//! Fair shares in the loop: senders waiting for their allowance to refill, clients idle past the
//! idle timeout, and links that check their peer's liveness themselves (heartbeats). All run from
//! the sweep, with the turn's `now`.

use std::time::Instant;

use tracing::debug;

use super::Engine;
use crate::backend::Token;
use crate::policy;
use crate::summary::DropReason;

impl Engine {
    /// `token` used up its allowance: stop reading it (the flush phase turns its read interest
    /// off) until its bucket holds a read's worth again, and have the sweep wake the loop then.
    pub(super) fn wait_for_allowance(&mut self, token: Token) {
        let now = self.now;
        let Some(conn) = self.pool.get_mut(token) else {
            return;
        };
        let Some(bucket) = &mut conn.bucket else {
            return;
        };
        let ready = bucket.ready_at(now, bucket.worth_reading());
        conn.rate_wait = Some(ready);
        self.rate_waiting.push(token);
        self.summary.rate_waits += 1;
        debug!(
            sd = conn.sd,
            wait_us = (ready - now).as_micros() as u64,
            "sender over its rate"
        );
        self.timers.sweep_within(now, ready - now);
        self.mark_dirty(token);
    }

    /// Reads again from every sender whose allowance has refilled; schedules the sweep for the
    /// next one that is still waiting.
    pub(super) fn resume_allowances(&mut self) {
        let now = self.now;
        let mut waiting = std::mem::take(&mut self.rate_waiting);
        waiting.retain(|&token| {
            let Some(conn) = self.pool.get_mut(token) else {
                return false;
            };
            match conn.rate_wait {
                Some(ready) if ready > now => {
                    self.timers.sweep_within(now, ready - now);
                    true
                }
                Some(_) => {
                    conn.rate_wait = None;
                    if !conn.dirty && conn.cut.is_none() {
                        conn.dirty = true;
                        self.dirty.push(token); // the flush turns read interest back on
                    }
                    // Input a layer already holds (TLS records, WebSocket messages) gets no
                    // readiness of its own.
                    if conn.link.has_buffered_input() {
                        self.read_again.push(token);
                    }
                    false
                }
                None => false,
            }
        });
        self.rate_waiting = waiting;
    }

    /// Marks every client that neither sent nor was sent anything for the idle timeout, and
    /// keeps the sweep coming while anyone could become idle.
    pub(super) fn cut_idle(&mut self) {
        let Some(timeout) = self.config.idle_timeout else {
            return;
        };
        let now = self.now;
        for (token, conn) in self.pool.iter_mut() {
            if conn.cut.is_none() && now.saturating_duration_since(conn.last_active) >= timeout {
                self.doomed.mark(token, conn, DropReason::IdleTimeout, None);
            }
        }
        if !self.pool.is_empty() {
            self.timers
                .sweep_within(now, policy::sweep_interval(timeout));
        }
    }

    /// Calls every due link's [`Link::heartbeat`](crate::Link::heartbeat): a link whose peer
    /// showed no sign of life since the last one is cut as idle, the others may have a probe to
    /// flush. Schedules the sweep for the next one due.
    pub(super) fn beat_hearts(&mut self) {
        if self.heartbeats == 0 {
            return;
        }
        let now = self.now;
        let mut next: Option<Instant> = None;
        for (token, conn) in self.pool.iter_mut() {
            let Some((every, due)) = conn.beat else {
                continue;
            };
            if conn.cut.is_some() || !conn.member {
                continue;
            }
            let due = if due > now {
                due
            } else {
                if let Err(e) = conn.link.heartbeat() {
                    self.doomed
                        .mark(token, conn, DropReason::IdleTimeout, Some(e));
                    continue;
                }
                if conn.link.wants_write() && !conn.dirty {
                    conn.dirty = true;
                    self.dirty.push(token);
                }
                now + every
            };
            conn.beat = Some((every, due));
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        if let Some(at) = next {
            self.timers
                .sweep_within(now, at.saturating_duration_since(now));
        }
    }
}
