//! Ctrl-C and SIGTERM (Ctrl-Break on Windows) through the `ctrlc` crate, and on Windows the
//! console close handler of [`crate::console`]: each asks the event loop for a graceful stop.

use std::sync::atomic::{AtomicUsize, Ordering};

use server_core::Shutdown;
use tracing::{info, warn};

/// Installs the handlers. First Ctrl-C / SIGTERM: graceful stop (stop accepting, drain briefly,
/// exit 0). Second: exit now. `Err` is the message for the terminal.
pub(crate) fn install(shutdown: &Shutdown) -> Result<(), String> {
    let signals = AtomicUsize::new(0);
    let on_signal = shutdown.clone();
    ctrlc::set_handler(move || {
        if signals.fetch_add(1, Ordering::SeqCst) == 0 {
            info!("shutdown requested; draining (press Ctrl-C again to exit at once)");
            crate::notify::stopping("draining; not accepting new clients");
            if let Err(e) = on_signal.request() {
                warn!(error = %e, "could not wake the event loop");
            }
        } else {
            eprintln!("server: second interrupt, exiting without draining");
            std::process::exit(0);
        }
    })
    .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
    // After ctrlc's handler, so that Windows asks this one first about a console close.
    #[cfg(windows)]
    crate::console::install(shutdown.clone())
        .map_err(|e| format!("cannot install the console close handler: {e}"))?;
    Ok(())
}

/// Tells the handlers that the event loop has returned. A console close held while the server
/// drained may let Windows end the process now; elsewhere there is nothing to do.
pub(crate) fn stopped() {
    #[cfg(windows)]
    crate::console::stopped();
}
