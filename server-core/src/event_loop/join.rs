//! Connections that come in by a service door and join the room: a service answered them with
//! [`Then::Join`](crate::Then) (a WebSocket upgrade on the HTTP port), and here they leave
//! the service pool for the room's, as if a room door had admitted them.

use tracing::debug;

use super::accept::tune;
use super::Engine;
use crate::backend::Backend;

impl Engine {
    /// Hands every connection whose service asked so to the room: out of the service pool, its
    /// link turned into a member's by [`Service::join`](crate::Service::join), then seated under
    /// the room's rules (`max_clients`, `max_per_address`). Runs in the admit phase, before the
    /// doors' newcomers.
    pub(super) fn admit_joiners<B: Backend>(&mut self, backend: &mut B) {
        for key in std::mem::take(&mut self.services.joining) {
            let Some(conn) = self.services.pool.remove(key) else {
                continue;
            };
            // Registered again under a room token below (or closed as it drops).
            let _ = backend.deregister(conn.link.borrowed());
            self.services.open[conn.door] -= 1;
            let (peer, sd) = (conn.peer, conn.sd);
            if self.services.draining {
                debug!(sd, %peer, "draining: not joining sd {sd} to the room");
                continue;
            }
            if self.pool.len() >= self.max_clients {
                self.refuse_full(sd, peer, None);
                continue;
            }
            if !self.has_seat_for(peer, sd) {
                continue;
            }
            tune(conn.link.borrowed(), &self.config, sd);
            let Some(service) = self.services.handlers[conn.door].as_mut() else {
                continue;
            };
            let reply = conn.joining.unwrap_or_default();
            match service.join(conn.link, conn.input, reply) {
                Ok(link) => self.seat(link, peer, sd, backend),
                Err(e) => debug!(sd, %peer, error = %e, "sd {sd} cannot join the room"),
            }
        }
    }
}
