//! The log of an in-process server, captured line by line so a test can wait for one.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use crate::TIMEOUT;

/// The log lines (INFO and above) an in-process server emitted, with a way to wait for one.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    inner: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Logs {
    /// Waits until at least `n` lines contain `needle`; false if [`TIMEOUT`] passes first.
    /// Each line is scanned once, however many lines arrive.
    pub fn wait_for_count(&self, needle: &str, n: usize) -> bool {
        let (lines, changed) = &*self.inner;
        let deadline = Instant::now() + TIMEOUT;
        let mut guard = lines.lock().expect("log lock");
        let (mut scanned, mut found) = (0, 0);
        loop {
            found += count_lines(&guard[scanned..], needle);
            scanned = guard.len();
            if found >= n {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = changed.wait_timeout(guard, left).expect("log lock").0;
        }
    }

    /// How many lines logged so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        count_lines(&self.inner.0.lock().expect("log lock"), needle)
    }
}

/// Number of lines in `lines` containing `needle`.
pub fn count_lines(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|l| l.contains(needle)).count()
}

/// A tracing layer that appends each INFO-or-higher event's message and fields to [`Logs`].
pub(crate) struct CaptureLayer(pub(crate) Logs);

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() > Level::INFO {
            return;
        }
        struct Line(String);
        impl Visit for Line {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write as _;
                let _ = write!(self.0, " {}={value:?}", field.name());
            }
        }
        let mut line = Line(format!("{} ", event.metadata().level()));
        event.record(&mut line);
        let (lines, changed) = &*self.0.inner;
        lines.lock().expect("log lock").push(line.0);
        changed.notify_all();
    }
}
