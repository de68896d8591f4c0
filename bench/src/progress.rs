//! Progress while the benchmark runs: an indicatif bar on a terminal, plain lines otherwise.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often plain-line output reports a run still in progress.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// The progress display of a whole benchmark: which run of how many, and the current run's bytes.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    run: u64,
    label: String,
    expected: Option<u64>,
    last_line: Instant,
}

impl Progress {
    /// A display for `total` runs; a bar if `terminal`, else lines on stderr.
    pub(crate) fn new(total: u64, terminal: bool) -> Progress {
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "[{elapsed_precise}] {bar:30} {pos}/{len} runs  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            total,
            state: Mutex::new(State {
                run: 0,
                label: String::new(),
                expected: None,
                last_line: Instant::now(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A run begins; `expected` is the bytes it will deliver, if known.
    pub(crate) fn start_run(&self, label: &str, expected: Option<u64>) {
        let mut st = self.state();
        st.run += 1;
        st.label = label.to_string();
        st.expected = expected.filter(|&e| e > 0);
        st.last_line = Instant::now();
        match &self.bar {
            Some(bar) => bar.set_message(label.to_string()),
            None => eprintln!("[{}/{}] {label} ...", st.run, self.total),
        }
    }

    /// Bytes delivered so far in the current run.
    pub(crate) fn update(&self, bytes: u64) {
        let mut st = self.state();
        let pct = st
            .expected
            .map(|e| format!(" {:.0}%", 100.0 * bytes as f64 / e as f64))
            .unwrap_or_default();
        let text = format!(
            "{}: {:.0} MiB{pct}",
            st.label,
            bytes as f64 / (1024.0 * 1024.0)
        );
        match &self.bar {
            Some(bar) => bar.set_message(text),
            None if st.last_line.elapsed() >= HEARTBEAT => {
                st.last_line = Instant::now();
                eprintln!("      {text}");
            }
            None => {}
        }
    }

    /// The current run ended with this summary line.
    pub(crate) fn finish_run(&self, line: &str) {
        let st = self.state();
        match &self.bar {
            Some(bar) => {
                bar.println(line);
                bar.inc(1);
            }
            None => eprintln!("[{}/{}] {line}", st.run, self.total),
        }
    }

    /// Every run ended.
    pub(crate) fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
