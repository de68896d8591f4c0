//! The one `tracing` subscriber of the process: text or JSON on stderr, its level from `-v`/`-q`
//! unless `RUST_LOG` says otherwise.

use std::io::{self, IsTerminal};

use tracing_subscriber::EnvFilter;

use crate::args::{Args, LogFormat};

/// `-v`/`-q` pick the default level; `RUST_LOG`, when set and valid, wins.
pub(crate) fn init(args: &Args) {
    let level = match (args.quiet, args.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // The NATS client's own info lines repeat ours; its warnings and errors stay.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},async_nats=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(false)
        // A log line that cannot be written is dropped. By default tracing-subscriber reports
        // that with `eprintln!`, which panics when stderr itself fails: a terminal that closed
        // under a foreground server (SIGHUP now reloads, so the server lives on) turned the next
        // log line into a panic and exit 101, dropping every client.
        .log_internal_errors(false);
    match args.log_format {
        LogFormat::Text => builder.with_ansi(io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
