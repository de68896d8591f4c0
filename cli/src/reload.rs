//! Reload without dropping anyone: the door the engine admits through is shared with the signal
//! thread, which swaps in a new one (TLS files and access lists read again) on SIGHUP. Only new
//! connections meet the new door; connected clients, TLS sessions included, keep what they have.
//! A door that fails to build (a missing file, a bad line, a key that does not match) leaves the
//! old one in place, and the log says why. The engine needs no change: it sees one `Acceptor`.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use relay_http::TokenHandle;
use relay_tls::EntryLink;
use server_core::{Acceptor, Admission};
use tracing::{info, warn};

use crate::security::{Door, Security};

/// The door, behind a lock the event loop takes once per accepted connection (uncontended but
/// for the moment of a reload).
#[derive(Debug, Clone)]
pub(crate) struct SharedDoor(Arc<Mutex<Door>>);

impl SharedDoor {
    pub(crate) fn new(door: Door) -> SharedDoor {
        SharedDoor(Arc::new(Mutex::new(door)))
    }
}

impl Acceptor for SharedDoor {
    type Link = EntryLink;

    fn accept(&mut self, stream: TcpStream, peer: SocketAddr) -> io::Result<Admission<EntryLink>> {
        // A panic while holding the lock cannot leave a door half-built: it is replaced whole.
        let mut door = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        door.accept(stream, peer)
    }
}

/// The HTTP port's settings to reload beside the chat port's.
#[derive(Debug)]
pub(crate) struct HttpReload {
    /// Whether it speaks TLS.
    pub(crate) tls: bool,
    pub(crate) door: SharedDoor,
    /// `--http-token-file` and the running service's token.
    pub(crate) token: Option<(PathBuf, TokenHandle)>,
}

/// What SIGHUP runs: build new doors from `security` (reading its files again) and swap them in,
/// or keep the old ones and say why. The HTTP port's door and token (`http`) are read again and
/// swapped with the chat port's door, or nothing is.
pub(crate) fn reloader(
    security: Security,
    shared: SharedDoor,
    http: Option<HttpReload>,
) -> impl Fn() + Send + 'static {
    move || {
        let http_door = http
            .as_ref()
            .map(|h| security.http_door(h.tls).map(|door| (door, &h.door)))
            .transpose();
        let token = http
            .as_ref()
            .and_then(|h| h.token.as_ref())
            .map(|(file, handle)| crate::http::read_token(file).map(|token| (token, handle)))
            .transpose();
        match (security.door(), http_door, token) {
            (Ok((door, list)), Ok(http_door), Ok(token)) => {
                *shared.0.lock().unwrap_or_else(PoisonError::into_inner) = door;
                if let Some((door, shared)) = http_door {
                    *shared.0.lock().unwrap_or_else(PoisonError::into_inner) = door;
                }
                if let Some((token, handle)) = token {
                    handle.set(Some(token));
                }
                info!(
                    "reloaded: TLS files, access lists and the HTTP token read again; they apply \
                     to new connections and requests"
                );
                security.log_startup(&list);
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                warn!(error = %e, "reload failed, keeping the old settings: {e}")
            }
        }
    }
}
