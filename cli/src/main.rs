//! `server <port>`: a TCP chat relay. Every chunk one client sends reaches every other client.
//!
//! This file parses arguments, installs the log subscriber and the Ctrl-C / SIGTERM handler, binds
//! the listener, and hands everything to `server_core::run`. Errors are mapped to exit codes here
//! and nowhere else.

use std::io::{self, IsTerminal};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use backend_polling::PollingBackend;
use clap::error::ErrorKind;
use clap::{ArgAction, Parser};
use server_core::{Backend, Config, Shutdown};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// The seed program's usage line; printed for every argument error.
const USAGE: &str = "Usage: server <port>";

/// Pending connections the kernel may hold before we accept them. std and mio use 128; a chat
/// room is joined in bursts (a script opening hundreds of clients), and Linux clamps this to
/// `net.core.somaxconn` (4096 by default since 5.4) anyway.
const BACKLOG: i32 = 1024;

const EXAMPLES: &str = "\
Examples:
  server 9000              relay on port 9000 (all IPv4 interfaces)
  server -v 9000           also log every chunk received
  RUST_LOG=trace server 9000

Try it: run `nc 127.0.0.1 9000` in two terminals and type.
Stop with Ctrl-C (or SIGTERM): pending output gets 2 s to drain, then the server exits 0.";

/// A TCP chat relay: every chunk one client sends is forwarded to every other client.
#[derive(Debug, Parser)]
#[command(
    name = "server",
    version = concat!(env!("CARGO_PKG_VERSION"), " (+polling)"),
    after_help = EXAMPLES
)]
struct Args {
    /// TCP port to listen on, 1-65535, on all IPv4 interfaces.
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,

    /// Log more: -v adds every chunk received, -vv every readiness event. RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count)]
    verbose: u8,

    /// Log only warnings and errors. RUST_LOG overrides.
    #[arg(short, long, conflicts_with = "verbose")]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // The seed's contract: one usage line and exit 1 (clap's own errors exit 2).
        Err(_) => {
            eprintln!("{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&args);
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("server: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Everything from binding to the end of the event loop. `Err` is the message for the terminal.
fn serve(args: &Args) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.port));
    let listener = bind(addr).map_err(|e| format!("cannot listen on {addr}: {}", describe(&e)))?;
    let backend = PollingBackend::new()
        .map_err(|e| format!("cannot create the polling backend: {}", describe(&e)))?;
    let shutdown = Shutdown::new(backend.waker());
    install_signal_handler(shutdown.clone())
        .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;

    info!(
        address = %addr,
        backend = backend.name(),
        pid = std::process::id(),
        "listening on {addr} (backend {}, pid {})",
        backend.name(),
        std::process::id()
    );
    match server_core::run(listener, backend, &Config::default(), &shutdown) {
        Ok(summary) => {
            info!("stopped: {summary}");
            Ok(())
        }
        Err(e) => {
            error!(error = %e, "event loop failed");
            Err(format!("event loop failed: {}", describe(&e)))
        }
    }
}

/// A non-blocking listener on `addr`, set up the way mio's `TcpListener::bind` does.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // On Unix this lets a restarted server bind while old connections linger in TIME_WAIT. Not on
    // Windows, where SO_REUSEADDR would let another process bind a port we are using.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// First Ctrl-C / SIGTERM: graceful stop (stop accepting, drain briefly, exit 0). Second: exit now.
fn install_signal_handler(shutdown: Shutdown) -> Result<(), ctrlc::Error> {
    let signals = AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        if signals.fetch_add(1, Ordering::SeqCst) == 0 {
            info!("shutdown requested; draining (press Ctrl-C again to exit at once)");
            if let Err(e) = shutdown.request() {
                warn!(error = %e, "could not wake the event loop");
            }
        } else {
            eprintln!("server: second interrupt, exiting without draining");
            std::process::exit(0);
        }
    })
}

/// `-v`/`-q` pick the default level; `RUST_LOG`, when set and valid, wins.
fn init_logging(args: &Args) {
    let level = match (args.quiet, args.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// An OS error's text without std's " (os error N)" suffix: the user reads the words.
fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match (e.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(at)) => text[..at].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_without_the_code() {
        let e = io::Error::from_raw_os_error(98);
        assert!(!describe(&e).contains("os error"), "{}", describe(&e));
        let plain = io::Error::other("no code here");
        assert_eq!(describe(&plain), "no code here");
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
