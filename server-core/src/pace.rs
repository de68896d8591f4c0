//! The room's pace: when senders are slowed, and which readers no longer hold them back.
//!
//! Two answers to overload, as pure functions of queue lengths and the time passed in:
//!
//! - **The room is slower than its senders** (every reader keeps reading, but together they take
//!   less than the senders write): reading from senders stops while any reader that keeps up has
//!   more than [`Pace::budget`] bytes queued (a sender that sent less than [`Pace::light`] since
//!   the room was last clear, such as someone typing, is still read), so TCP flow control slows the senders and queues
//!   stay short. Nobody is cut, nothing is lost, and a message waits behind at most about a budget
//!   of bytes (plus the kernel's socket buffers), not behind megabytes.
//! - **One reader is slower than the room** (it stopped, or trickles): it holds the room back for
//!   at most [`Pace::grace`]. A reader still over the budget after the grace, while at least half
//!   of the room is not (or that wrote nothing at all during the grace: it stopped), is *lagging*: it no longer pauses anyone, gets what it can, and is cut as before
//!   when its queue passes the pending limit or stalls past the write timeout. A lagging reader
//!   that catches up (its queue falls under the budget) keeps up again.
//!
//! The grace is judged by how long a reader's queue has stayed over the budget: a sojourn time,
//! the idea CoDel (RFC 8289) applies to packet queues, applied to one reader at a time.

use std::time::{Duration, Instant};

/// The pace settings (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Bytes queued for a reader that keeps up beyond which reading from senders pauses.
    pub budget: usize,
    /// How long one reader may stay over the budget, holding the room back, before it is
    /// judged lagging and no longer holds anyone back.
    pub grace: Duration,
    /// Bytes a sender may still send while the room is held back before it is paused: a chat
    /// line or a probe goes through at once, a flood waits.
    pub light: usize,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            budget: 32 * 1024,
            grace: Duration::from_millis(250),
            light: 16 * 1024,
        }
    }
}

/// One reader's standing with respect to the pace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Standing {
    /// Since when its queue has been over the budget; `None` while it is not.
    over_since: Option<Instant>,
    /// Judged lagging: over the budget past the grace while the room was not.
    lagging: bool,
}

impl Standing {
    /// Records the reader's queue length at `now`. Returns whether it now holds the room back
    /// (over the budget and not lagging).
    pub(crate) fn update(&mut self, queued: usize, pace: &Pace, now: Instant) -> bool {
        if queued > pace.budget {
            self.over_since.get_or_insert(now);
        } else {
            // Caught up (or never behind): it keeps up, whatever it was before.
            *self = Standing::default();
        }
        self.holds_back()
    }

    /// Whether it holds the room back now.
    pub(crate) fn holds_back(&self) -> bool {
        self.over_since.is_some() && !self.lagging
    }

    /// Whether it is over the budget (lagging or not).
    pub(crate) fn is_over(&self) -> bool {
        self.over_since.is_some()
    }

    /// Judges it at `now`: a reader over the budget for the grace is lagging, unless the room as
    /// a whole is slow (`room_slow`: half of it or more is over the budget), in which case the
    /// senders are the ones to wait. A reader that `stopped` (no write progress for the grace)
    /// lags whatever the room does. Returns whether it stopped holding the room back.
    pub(crate) fn judge(
        &mut self,
        pace: &Pace,
        now: Instant,
        room_slow: bool,
        stopped: bool,
    ) -> bool {
        match self.over_since {
            Some(since)
                if !self.lagging && (stopped || !room_slow) && now >= since + pace.grace =>
            {
                self.lagging = true;
                true
            }
            _ => false,
        }
    }
}

/// Whether the room as a whole is slower than its senders: half of its `members` or more are
/// over the budget (in a room of a sender and one reader, that reader is the whole room).
pub(crate) fn room_is_slow(over_budget: usize, members: usize) -> bool {
    over_budget > 0 && over_budget * 2 >= members
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn pace() -> Pace {
        Pace {
            budget: 1000,
            grace: 100 * MS,
            light: 10,
        }
    }

    #[test]
    fn a_reader_over_the_budget_holds_the_room_until_it_catches_up() {
        let t0 = Instant::now();
        let mut s = Standing::default();
        assert!(!s.update(1000, &pace(), t0), "at the budget is not over it");
        assert!(s.update(1001, &pace(), t0));
        assert!(s.update(5000, &pace(), t0 + 10 * MS));
        assert!(!s.update(10, &pace(), t0 + 20 * MS));
        assert_eq!(s, Standing::default());
    }

    #[test]
    fn one_reader_over_the_budget_past_the_grace_lags_and_holds_no_one() {
        let t0 = Instant::now();
        let mut s = Standing::default();
        s.update(2000, &pace(), t0);
        assert!(
            !s.judge(&pace(), t0 + 99 * MS, false, false),
            "judged before the grace"
        );
        assert!(s.judge(&pace(), t0 + 100 * MS, false, false));
        assert!(!s.holds_back() && s.is_over());
        // Growing further does not make it hold the room again...
        assert!(!s.update(50_000, &pace(), t0 + 200 * MS));
        // ...catching up does make it a reader that keeps up again, with a fresh grace.
        s.update(0, &pace(), t0 + 300 * MS);
        assert!(s.update(2000, &pace(), t0 + 301 * MS));
        assert!(!s.judge(&pace(), t0 + 400 * MS, false, false));
        assert!(s.judge(&pace(), t0 + 401 * MS, false, false));
    }

    #[test]
    fn when_the_whole_room_is_slow_nobody_lags_and_the_senders_wait() {
        let t0 = Instant::now();
        let mut s = Standing::default();
        s.update(2000, &pace(), t0);
        assert!(!s.judge(&pace(), t0 + 10 * pace().grace, true, false));
        assert!(s.holds_back());
        assert!(room_is_slow(12, 24) && !room_is_slow(11, 24) && room_is_slow(1, 2));
        assert!(!room_is_slow(0, 0) && !room_is_slow(1, 40));
    }

    #[test]
    fn a_reader_that_stopped_lags_even_in_a_slow_room() {
        let t0 = Instant::now();
        let mut s = Standing::default();
        s.update(2000, &pace(), t0);
        assert!(
            !s.judge(&pace(), t0 + 99 * MS, true, true),
            "judged before the grace"
        );
        assert!(s.judge(&pace(), t0 + 100 * MS, true, true));
    }
}
