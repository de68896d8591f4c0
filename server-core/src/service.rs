//! Service doors: listeners whose connections are *not* room members. A [`Service`] answers the
//! bytes they send from a read-only [`View`] of the engine (an operator's HTTP window, say). The
//! engine knows nothing of the protocol: it reads, hands the unanswered bytes to the service,
//! queues what the service writes like chat output and closes the connection when told to or when
//! one of the [`ServiceLimits`] is passed.
//!
//! A service connection never receives the room's messages, never counts toward
//! [`Config::max_clients`] or the pace, and costs the room nothing while it sends nothing: the
//! engine's per-turn work for services is proportional to the number of service connections
//! (at most [`ServiceLimits::max_connections`]), never to the number of clients.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::link::Link;

pub use crate::event_loop::View;
#[cfg(doc)]
use crate::Config;

/// Answers the connections of one service door. One value serves every connection of its door,
/// so a per-connection state must live in the bytes (HTTP/1.x needs none beyond them).
pub trait Service {
    /// Answers what it can of `input`: the bytes this connection sent that no earlier call
    /// consumed. Appends its replies to `out` (queued for the connection in order) and says how
    /// many bytes of `input` it consumed and whether the connection is to be closed once `out` is
    /// written. Consuming nothing means "wait for more bytes".
    ///
    /// The engine calls it after every read that brought bytes, and again when the connection's
    /// output has been written while unconsumed bytes remain: a service may stop early (to keep
    /// one connection's output bounded) and be called again for the rest.
    fn answer(&mut self, input: &[u8], view: &View<'_>, out: &mut Vec<u8>) -> Answer;

    /// What to write before closing a connection turned away because the door already has
    /// [`ServiceLimits::max_connections`] (best effort, one write). Default: nothing.
    fn refusal(&self) -> &[u8] {
        b""
    }

    /// Turns a connection answered with [`Then::Join`] into a room member's link: `link` is
    /// the connection's link as its door's acceptor made it (plain TCP, or TLS), `input` what it
    /// sent after the consumed bytes, `reply` what the service answered and is not yet written
    /// (the new link writes it before anything else). The engine then admits the returned link
    /// to the room as if it had come in by a room door (`max_clients`, `max_per_address` and the
    /// slow-consumer rules apply).
    ///
    /// # Errors
    ///
    /// The connection cannot become a member; it is closed. The default refuses every join.
    fn join(
        &mut self,
        link: Box<dyn Link>,
        input: Vec<u8>,
        reply: Vec<u8>,
    ) -> io::Result<Box<dyn Link>> {
        let _ = (link, input, reply);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this service does not hand connections to the room",
        ))
    }
}

/// What one [`Service::answer`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Answer {
    /// Bytes of the input consumed (answered, or to be ignored).
    pub consumed: usize,
    /// What becomes of the connection.
    pub then: Then,
}

/// What becomes of a service connection after an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Then {
    /// It stays open for more requests.
    #[default]
    Keep,
    /// Close it once its output is written; nothing more is read from it.
    Close,
    /// Hand it to the room (a WebSocket upgrade): nothing more is read from it as a service
    /// connection, and the engine passes it with the unconsumed input and this call's reply to
    /// [`Service::join`] in the same turn.
    Join,
}

/// The bounds every service connection lives within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceLimits {
    /// Most connections open at once on one service door; past it a newcomer is written
    /// [`Service::refusal`] and closed.
    pub max_connections: usize,
    /// How long a request may take to arrive once its first byte has (against slowloris):
    /// unconsumed input older than this closes the connection.
    pub request_timeout: Duration,
    /// How long a connection may sit with nothing to read and nothing written (an idle
    /// keep-alive connection, or a reader that stopped reading its reply) before it is closed.
    pub idle_timeout: Duration,
    /// Most unconsumed input bytes held for one connection; the engine stops reading it past
    /// this, so a service that never consumes cannot grow memory. A service should answer such
    /// input itself (HTTP: 431) well before.
    pub max_input: usize,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            max_connections: 64,
            request_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_input: 64 * 1024,
        }
    }
}

/// One client as [`View::clients_facts`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFacts {
    /// Its id in the room (never reused while the server runs).
    pub id: u64,
    /// Its address.
    pub peer: SocketAddr,
    /// Its link's [`Link::transport`](crate::Link::transport): `tcp`, `tls`...
    pub transport: &'static str,
    /// Whether it is in the room (its link is established).
    pub member: bool,
    /// How long it has been connected.
    pub connected_for: Duration,
    /// Bytes read from it.
    pub bytes_in: u64,
    /// Bytes written to it.
    pub bytes_out: u64,
    /// Bytes queued for it now.
    pub pending: usize,
}

/// Connections turned away at the service doors, by reason (a service's own refusals, such as a
/// 401, are answers and not counted here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceRefusals {
    /// Refused by the door's acceptor (an access list) before any byte was read.
    pub access_list: u64,
    /// Turned away with the service's refusal because the door had `max_connections` open.
    pub too_many: u64,
}
