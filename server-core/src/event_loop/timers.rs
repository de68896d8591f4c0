//! Deadlines: the sweep for stalled readers and unfinished handshakes, the statistics line, and
//! when the loop must wake next. Every function takes the turn's `now`; none reads the clock.

use std::time::{Duration, Instant};

use tracing::info;

use super::Engine;
use crate::config::Config;
use crate::policy::{self, Verdict};
use crate::summary::DropReason;

/// When the loop must wake up for something other than readiness.
#[derive(Debug)]
pub(super) struct Timers {
    /// When to look for connections past a deadline; `None` while nothing is pending anywhere,
    /// so an idle server never wakes.
    next_sweep: Option<Instant>,
    /// When the next statistics line is due, if they are on.
    next_stats: Option<Instant>,
}

impl Timers {
    pub(super) fn new(config: &Config, now: Instant) -> Self {
        Timers {
            next_sweep: None,
            next_stats: config.stats_interval.map(|every| now + every),
        }
    }

    /// Makes sure a sweep happens within `interval` from `now`.
    pub(super) fn sweep_within(&mut self, now: Instant, interval: Duration) {
        let at = now + interval;
        self.next_sweep = Some(self.next_sweep.map_or(at, |next| next.min(at)));
    }

    /// The earliest deadline, counting an accept pause's end.
    pub(super) fn next_wake(&self, accept_paused_until: Option<Instant>) -> Option<Instant> {
        [accept_paused_until, self.next_sweep, self.next_stats]
            .into_iter()
            .flatten()
            .min()
    }
}

/// The next statistics line after one due at `due`: the cadence kept, or restarted from `now`
/// after a stall longer than the interval.
fn next_stats_after(due: Instant, every: Duration, now: Instant) -> Instant {
    let next = due + every;
    if next > now {
        next
    } else {
        now + every
    }
}

impl Engine {
    /// Marks every member whose pending bytes made no progress for the write timeout (or whose
    /// queue is over the limit) and every connection not established within the handshake
    /// timeout, and schedules the next look only while something is still pending.
    pub(super) fn sweep_if_due(&mut self) {
        let now = self.now;
        if self.timers.next_sweep.is_none_or(|at| now < at) {
            return;
        }
        let (max_pending, timeout) = (self.config.max_pending, self.config.write_timeout);
        let handshake_timeout = self.config.handshake_timeout;
        let (mut pending_somewhere, mut still_handshaking) = (false, false);
        for (token, conn) in self.pool.iter_mut() {
            if conn.cut.is_some() {
                continue;
            }
            if !conn.member {
                if now.saturating_duration_since(conn.opened) >= handshake_timeout {
                    self.doomed
                        .mark(token, conn, DropReason::HandshakeTimeout, None);
                } else {
                    still_handshaking = true;
                }
                continue;
            }
            let reason = match policy::verdict(
                conn.queue.len(),
                &conn.progress,
                max_pending,
                timeout,
                now,
            ) {
                Some(Verdict::Stalled) => DropReason::WriteTimeout,
                Some(Verdict::OverLimit) => DropReason::SlowConsumer,
                None => {
                    pending_somewhere |= !conn.queue.is_empty();
                    continue;
                }
            };
            self.doomed.mark(token, conn, reason, None);
        }
        self.timers.next_sweep = None;
        if let (true, Some(t)) = (pending_somewhere, timeout) {
            self.timers.sweep_within(now, policy::sweep_interval(t));
        }
        self.resume_allowances();
        self.cut_idle();
        self.beat_hearts();
        if self.judge_laggards() {
            self.timers.sweep_within(now, self.config.pace.grace);
        }
        if still_handshaking {
            self.timers
                .sweep_within(now, policy::sweep_interval(handshake_timeout));
        }
    }

    /// One statistics line when due: the summary so far, with the clients connected now.
    pub(super) fn log_stats_if_due(&mut self) {
        let (Some(due), Some(every)) = (self.timers.next_stats, self.config.stats_interval) else {
            return;
        };
        if self.now < due {
            return;
        }
        self.timers.next_stats = Some(next_stats_after(due, every, self.now));
        self.summary.uplink = self.uplink.as_ref().map(|u| u.stats());
        info!(
            clients = self.pool.len(),
            peak = self.summary.peak_clients,
            "stats: {} clients now; {}",
            self.pool.len(),
            self.summary
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_keep_their_cadence_and_restart_after_a_stall() {
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        assert_eq!(
            next_stats_after(t0, every, t0 + Duration::from_secs(1)),
            t0 + every
        );
        let late = t0 + Duration::from_secs(25);
        assert_eq!(next_stats_after(t0, every, late), late + every);
    }

    #[test]
    fn the_next_wake_is_the_earliest_deadline_and_none_when_idle() {
        let t0 = Instant::now();
        let config = Config::default();
        let mut timers = Timers::new(&config, t0);
        assert_eq!(
            timers.next_wake(None),
            None,
            "an idle server must never wake"
        );
        timers.sweep_within(t0, Duration::from_secs(1));
        timers.sweep_within(t0, Duration::from_secs(5));
        assert_eq!(timers.next_wake(None), Some(t0 + Duration::from_secs(1)));
        let pause = t0 + Duration::from_millis(100);
        assert_eq!(timers.next_wake(Some(pause)), Some(pause));
    }
}
