//! [`View`]: what a [`Service`](crate::Service) is shown of the engine when it answers.

use std::time::{Duration, Instant};

use super::connection::Connection;
use crate::config::Config;
use crate::link::UplinkStats;
use crate::pool::Pool;
use crate::service::{ClientFacts, ServiceRefusals};
use crate::summary::Summary;

/// What a [`Service`](crate::Service) may know of the engine when it is called: counters, settings, and the
/// clients themselves. Cheap to make; the methods that walk the clients
/// ([`View::pending_bytes`], [`View::clients_facts`]) cost their work only when called.
pub struct View<'a> {
    pub(super) config: &'a Config,
    pub(super) summary: &'a Summary,
    pub(super) uplink: Option<UplinkStats>,
    pub(super) pool: &'a Pool<Connection>,
    pub(super) max_clients: usize,
    pub(super) handshaking: usize,
    pub(super) service_connections: usize,
    pub(super) service_refusals: ServiceRefusals,
    pub(super) backend: &'static str,
    pub(super) started: Instant,
    pub(super) now: Instant,
    pub(super) draining: bool,
}

impl View<'_> {
    /// The run's counters so far (the uplink's are in [`View::uplink`]).
    pub fn summary(&self) -> &Summary {
        self.summary
    }

    /// The uplink's counters, when the room has one.
    pub fn uplink(&self) -> Option<UplinkStats> {
        self.uplink
    }

    /// The settings the engine runs with.
    pub fn config(&self) -> &Config {
        self.config
    }

    /// Clients connected now (handshaking ones included; service connections not).
    pub fn clients(&self) -> usize {
        self.pool.len()
    }

    /// Clients whose link is not established yet (a TLS handshake in progress).
    pub fn handshaking(&self) -> usize {
        self.handshaking
    }

    /// Most clients at once: the configured limit, lowered to what the backend holds.
    pub fn max_clients(&self) -> usize {
        self.max_clients
    }

    /// Service connections open now, on every service door.
    pub fn service_connections(&self) -> usize {
        self.service_connections
    }

    /// Connections turned away at the service doors so far, by reason.
    pub fn service_refusals(&self) -> ServiceRefusals {
        self.service_refusals
    }

    /// The backend's name (`polling`, `select`).
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Time since the engine started.
    pub fn uptime(&self) -> Duration {
        self.now.saturating_duration_since(self.started)
    }

    /// Whether the server is draining (a stop was asked for): it admits no more clients.
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Bytes queued for all clients now. Walks every client.
    pub fn pending_bytes(&self) -> u64 {
        self.pool.iter().map(|(_, c)| c.queue.len() as u64).sum()
    }

    /// The first `limit` clients, in pool order; walks no further than that.
    pub fn clients_facts(&self, limit: usize) -> impl Iterator<Item = ClientFacts> + '_ {
        self.pool.iter().take(limit).map(move |(_, c)| ClientFacts {
            id: c.id,
            peer: c.peer,
            transport: c.link.transport(),
            member: c.member,
            connected_for: self.now.saturating_duration_since(c.opened),
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
            pending: c.queue.len(),
        })
    }
}

impl std::fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("clients", &self.clients())
            .field("backend", &self.backend)
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}
