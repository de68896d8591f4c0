//! The slow-consumer policy, as pure functions of a connection's queue length, its write progress
//! and the time passed in, so the rules are tested without sockets, clocks or sleeps.
//!
//! A client is cut when either
//! - more than `max_pending` bytes wait for it (a hard cap: memory stays bounded whatever the
//!   senders do), or
//! - bytes have been waiting with no write progress at all for `write_timeout` (a reader that
//!   stopped reading, or reads so little that TCP's window never reopens, is cut even while its
//!   queue is still small).
//!
//! The references are NATS (`max_pending` 64 MiB, `write_deadline` 10 s) and Redis
//! (`client-output-buffer-limit pubsub`); our defaults are 16 MiB and 10 s.

use std::time::{Duration, Instant};

/// Why the policy cuts a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// More than the byte limit is queued.
    OverLimit,
    /// Bytes waited past the write timeout without any progress.
    Stalled,
}

/// Write progress of one connection: since when its pending bytes have not moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// When the queue last went from empty to non-empty, or last made progress while bytes
    /// remained. `None` while nothing is pending.
    stalled_since: Option<Instant>,
}

impl Progress {
    /// Records a flush attempt at `now` that wrote `wrote` bytes and left `pending`.
    pub(crate) fn after_flush(&mut self, wrote: usize, pending: usize, now: Instant) {
        self.stalled_since = match (pending, wrote, self.stalled_since) {
            (0, _, _) => None,
            // Still waiting, and nothing moved: the clock keeps running.
            (_, 0, Some(since)) => Some(since),
            // Bytes just started waiting, or some were written: the clock restarts.
            _ => Some(now),
        };
    }

    /// Whether bytes have waited with no write progress for `span` at `now`.
    pub(crate) fn stalled_for(&self, span: Duration, now: Instant) -> bool {
        self.deadline(span).is_some_and(|at| now >= at)
    }

    /// When the write timeout would expire, if bytes are waiting.
    pub(crate) fn deadline(&self, write_timeout: Duration) -> Option<Instant> {
        self.stalled_since.map(|since| since + write_timeout)
    }
}

/// The policy's decision for a connection with `pending` bytes queued, at `now`.
pub(crate) fn verdict(
    pending: usize,
    progress: &Progress,
    max_pending: usize,
    write_timeout: Option<Duration>,
    now: Instant,
) -> Option<Verdict> {
    if pending > max_pending {
        return Some(Verdict::OverLimit);
    }
    if pending == 0 {
        return None;
    }
    match write_timeout.and_then(|t| progress.deadline(t)) {
        Some(deadline) if now >= deadline => Some(Verdict::Stalled),
        _ => None,
    }
}

/// How often stalled connections are looked for while any bytes are pending: a tenth of the
/// timeout, between 10 ms and 1 s. A cut comes at most this late; an idle server never looks.
pub(crate) fn sweep_interval(write_timeout: Duration) -> Duration {
    (write_timeout / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1000;
    const TIMEOUT: Duration = Duration::from_secs(10);

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    #[test]
    fn crossing_the_byte_limit_cuts_at_once_and_not_before() {
        let t0 = Instant::now();
        let p = Progress::default();
        assert_eq!(verdict(LIMIT, &p, LIMIT, Some(TIMEOUT), t0), None);
        assert_eq!(
            verdict(LIMIT + 1, &p, LIMIT, Some(TIMEOUT), t0),
            Some(Verdict::OverLimit)
        );
    }

    #[test]
    fn pending_bytes_without_progress_expire_at_the_timeout() {
        let t0 = Instant::now();
        let mut p = Progress::default();
        p.after_flush(0, 10, t0); // bytes start waiting
        p.after_flush(0, 10, at(t0, 5)); // no progress: the clock keeps running
        assert_eq!(verdict(10, &p, LIMIT, Some(TIMEOUT), at(t0, 9)), None);
        assert_eq!(
            verdict(10, &p, LIMIT, Some(TIMEOUT), at(t0, 10)),
            Some(Verdict::Stalled)
        );
    }

    #[test]
    fn progress_restarts_the_clock() {
        let t0 = Instant::now();
        let mut p = Progress::default();
        p.after_flush(0, 100, t0);
        p.after_flush(1, 99, at(t0, 8)); // one byte moved at t+8
        assert_eq!(verdict(99, &p, LIMIT, Some(TIMEOUT), at(t0, 17)), None);
        assert_eq!(
            verdict(99, &p, LIMIT, Some(TIMEOUT), at(t0, 18)),
            Some(Verdict::Stalled)
        );
    }

    #[test]
    fn an_emptied_queue_stops_the_clock_and_a_new_backlog_starts_it_fresh() {
        let t0 = Instant::now();
        let mut p = Progress::default();
        p.after_flush(0, 10, t0);
        p.after_flush(10, 0, at(t0, 1));
        assert_eq!(p.deadline(TIMEOUT), None);
        assert_eq!(verdict(0, &p, LIMIT, Some(TIMEOUT), at(t0, 100)), None);
        p.after_flush(0, 5, at(t0, 50));
        assert_eq!(p.deadline(TIMEOUT), Some(at(t0, 60)));
    }

    #[test]
    fn no_timeout_means_only_the_byte_limit() {
        let t0 = Instant::now();
        let mut p = Progress::default();
        p.after_flush(0, 10, t0);
        assert_eq!(verdict(10, &p, LIMIT, None, at(t0, 1_000_000)), None);
    }

    #[test]
    fn sweep_interval_is_bounded() {
        assert_eq!(sweep_interval(TIMEOUT), Duration::from_secs(1));
        assert_eq!(
            sweep_interval(Duration::from_millis(300)),
            Duration::from_millis(30)
        );
        assert_eq!(
            sweep_interval(Duration::from_millis(1)),
            Duration::from_millis(10)
        );
    }
}
