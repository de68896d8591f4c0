//! Windows only: a graceful stop when the console window is closed (or the session ends).
//!
//! The `ctrlc` crate answers every console control event the same way: it wakes its own thread
//! and returns from the handler at once. That is right for Ctrl-C and Ctrl-Break. For a close,
//! logoff or shutdown event, though, Windows ends the process as soon as a handler returns (and
//! after about 5 s at the latest), so the drain would never run. The handler here is installed
//! after ctrlc's, so Windows calls it first: it passes Ctrl-C and Ctrl-Break on to ctrlc, and for
//! the others asks for the graceful stop itself and holds the event until the server has stopped
//! (see [`stopped`]), for at most [`CLOSE_GRACE`].

use std::io;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use server_core::Shutdown;
use tracing::{info, warn};
use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::{FALSE, TRUE};
use windows_sys::Win32::System::Console::{
    SetConsoleCtrlHandler, CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT,
};

/// The longest a close event is held. Windows itself ends a process about 5 s after a close,
/// whatever its handler does; `--drain-timeout` is therefore cut to this on a close.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What the handler needs: the stop to request, and a flag (with its condition) that says the
/// event loop has returned.
struct Closing {
    shutdown: Shutdown,
    stopped: Mutex<bool>,
    changed: Condvar,
}

static CLOSING: OnceLock<Closing> = OnceLock::new();

/// Installs the handler; call it after `ctrlc::set_handler`, so that this one runs first.
pub(crate) fn install(shutdown: Shutdown) -> io::Result<()> {
    let closing = Closing {
        shutdown,
        stopped: Mutex::new(false),
        changed: Condvar::new(),
    };
    if CLOSING.set(closing).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the console handler is already installed",
        ));
    }
    // SAFETY: `on_console_event` is an `extern "system" fn(u32) -> BOOL`, the signature of a
    // HandlerRoutine; it is a plain function, valid for the whole life of the process, and it
    // never unwinds (it neither panics nor calls anything that may).
    if unsafe { SetConsoleCtrlHandler(Some(on_console_event), TRUE) } == FALSE {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Tells a held close event that the server has stopped: the process may end now.
pub(crate) fn stopped() {
    if let Some(closing) = CLOSING.get() {
        *closing
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        closing.changed.notify_all();
    }
}

/// The HandlerRoutine, on a thread Windows starts for each event. `TRUE`: handled here, no
/// other handler runs. `FALSE`: on to the next handler (ctrlc's).
extern "system" fn on_console_event(event: u32) -> BOOL {
    if !matches!(
        event,
        CTRL_CLOSE_EVENT | CTRL_LOGOFF_EVENT | CTRL_SHUTDOWN_EVENT
    ) {
        return FALSE; // Ctrl-C, Ctrl-Break
    }
    let Some(closing) = CLOSING.get() else {
        return FALSE;
    };
    info!(
        event,
        "console closing; draining for at most {} s",
        CLOSE_GRACE.as_secs()
    );
    if let Err(e) = closing.shutdown.request() {
        warn!(error = %e, "could not wake the event loop");
    }
    let deadline = Instant::now() + CLOSE_GRACE;
    let mut stopped = closing
        .stopped
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    while !*stopped {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stopped = closing
            .changed
            .wait_timeout(stopped, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    TRUE
}

#[cfg(test)]
mod tests {
    use super::*;
    use server_core::Wake;
    use std::sync::mpsc::{self, Sender};
    use std::thread;
    use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, CTRL_C_EVENT};

    /// Reports each wake on a channel.
    struct ChannelWaker(Mutex<Sender<()>>);

    impl Wake for ChannelWaker {
        fn wake(&self) -> io::Result<()> {
            let _ = self.0.lock().unwrap().send(());
            Ok(())
        }
    }

    /// Windows (and Wine) cannot send a console event to a test process without a console, so
    /// the handler is called the way Windows calls it: directly, on a thread of its own.
    #[test]
    fn a_close_requests_the_stop_and_is_held_until_the_server_stopped() {
        let (tx, woken) = mpsc::channel();
        let shutdown = Shutdown::new(ChannelWaker(Mutex::new(tx)));
        install(shutdown.clone()).expect("install the console handler");
        assert!(install(shutdown.clone()).is_err(), "installed twice");

        for event in [CTRL_C_EVENT, CTRL_BREAK_EVENT] {
            assert_eq!(on_console_event(event), FALSE, "event {event}: ctrlc's");
        }
        assert!(!shutdown.is_requested());

        let started = Instant::now();
        let held = thread::spawn(|| on_console_event(CTRL_CLOSE_EVENT));
        woken
            .recv_timeout(Duration::from_secs(20))
            .expect("the close woke the event loop");
        assert!(shutdown.is_requested());
        // Still held: the server has not said it stopped (unless this thread was descheduled
        // for the whole grace period, which the elapsed time tells apart).
        assert!(
            !held.is_finished() || started.elapsed() >= CLOSE_GRACE,
            "returned before the server stopped"
        );
        stopped();
        assert_eq!(held.join().unwrap(), TRUE);
    }
}
