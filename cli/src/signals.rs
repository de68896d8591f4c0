//! Stop and reload requests. On Unix, `signal-hook` delivers SIGINT, SIGTERM and SIGHUP to a
//! thread of ours, which tells them apart: SIGINT and SIGTERM ask the event loop for a graceful
//! stop, SIGHUP reloads ([`crate::reload`]). On Windows, `ctrlc` delivers Ctrl-C and Ctrl-Break,
//! and the console close handler of [`crate::console`] a closing console: each a stop. Windows
//! has no SIGHUP, so there is no reload there: the files are read once, at start.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use server_core::Shutdown;
use tracing::{info, warn};

/// Installs the handlers. First stop request: graceful stop (stop accepting, drain briefly,
/// exit 0). Second: exit now. `reload` runs on the signal thread at each SIGHUP. `Err` is the
/// message for the terminal.
pub(crate) fn install(
    shutdown: &Shutdown,
    reload: impl Fn() + Send + 'static,
) -> Result<(), String> {
    let stop = stopper(shutdown.clone());
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            .map_err(|e| format!("cannot install the signal handlers: {e}"))?;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if signal == SIGHUP {
                        info!("SIGHUP: reloading the TLS files and access lists");
                        reload();
                    } else {
                        stop();
                    }
                }
            })
            .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    }
    #[cfg(windows)]
    {
        drop(reload);
        ctrlc::set_handler(stop).map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
        // After ctrlc's handler, so that Windows asks this one first about a console close.
        crate::console::install(shutdown.clone())
            .map_err(|e| format!("cannot install the console close handler: {e}"))?;
    }
    Ok(())
}

/// The stop request: the first asks the loop to drain, the second exits at once.
fn stopper(shutdown: Shutdown) -> impl Fn() + Send + 'static {
    let requests = AtomicUsize::new(0);
    move || {
        if requests.fetch_add(1, Ordering::SeqCst) == 0 {
            info!("shutdown requested; draining (press Ctrl-C again to exit at once)");
            crate::notify::stopping("draining; not accepting new clients");
            if let Err(e) = shutdown.request() {
                warn!(error = %e, "could not wake the event loop");
            }
        } else {
            // Not `eprintln!`, which panics (and so would not exit) if stderr is gone.
            let _ = writeln!(
                io::stderr(),
                "server: second interrupt, exiting without draining"
            );
            std::process::exit(0);
        }
    }
}

/// Tells the handlers that the event loop has returned. A console close held while the server
/// drained may let Windows end the process now; elsewhere there is nothing to do.
pub(crate) fn stopped() {
    #[cfg(windows)]
    crate::console::stopped();
}
