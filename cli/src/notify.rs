//! systemd's readiness protocol (`Type=notify`): `READY=1` once the listener is up, `STOPPING=1`
//! when a drain begins, and a `STATUS=` line a supervisor shows (`systemctl status`). Each call
//! is a no-op when `NOTIFY_SOCKET` is unset (a plain start in a terminal). Unix only: on Windows
//! these functions do nothing, since there is no systemd there.

#[cfg(unix)]
use sd_notify::NotifyState;

/// The listener is bound and the event loop is about to serve: `READY=1` and a status line.
pub(crate) fn ready(status: &str) {
    #[cfg(unix)]
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
    #[cfg(not(unix))]
    let _ = status;
}

/// A graceful stop has begun: `STOPPING=1` and a status line.
pub(crate) fn stopping(status: &str) {
    #[cfg(unix)]
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    #[cfg(not(unix))]
    let _ = status;
}

/// A status line alone.
pub(crate) fn status(status: &str) {
    #[cfg(unix)]
    send(&[NotifyState::Status(status)]);
    #[cfg(not(unix))]
    let _ = status;
}

/// Sends `states` to `$NOTIFY_SOCKET`, keeping the variable for the next notice. A failure is
/// logged and otherwise ignored: the relay serves the same with or without a supervisor.
#[cfg(unix)]
fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    } else {
        tracing::debug!("notified the service manager: {states:?}");
    }
}
