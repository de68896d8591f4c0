//! Seating a newcomer, whether a room door admitted it or a service door handed it over
//! (`join.rs`): the room's rules it meets (`max_per_address`; the caller checks `max_clients`)
//! and its place in the pool. Its socket options are set in `accept.rs`, with the other socket
//! calls.

use std::io;
use std::net::SocketAddr;

use tracing::{info, warn};

use super::connection::Connection;
use super::Engine;
use crate::backend::{Backend, Interest};
use crate::fair::{address_key, Bucket};
use crate::link::Link;
use crate::pace::Standing;
use crate::policy::{self, Progress};
use crate::queue::OutQueue;

impl Engine {
    /// Whether `peer`'s address has a seat left under `max_per_address`; logs and counts the
    /// refusal when it has not (the caller drops the connection).
    pub(super) fn has_seat_for(&mut self, peer: SocketAddr, sd: u64) -> bool {
        let Some(max) = self.config.max_per_address else {
            return true;
        };
        let address = address_key(peer.ip());
        let taken = self.doors.seats.taken(address);
        if taken < max {
            return true;
        }
        self.summary.refused_per_address += 1;
        warn!(
            sd, %peer, %address, taken, max_per_address = max,
            "too many clients from {address}: refusing sd {sd} from {peer} ({taken} \
             connected, the limit is {max})"
        );
        false
    }

    /// Registers an admitted link as a client: a member at once, or once its handshake ends.
    pub(super) fn seat<B: Backend>(
        &mut self,
        link: Box<dyn Link>,
        peer: SocketAddr,
        sd: u64,
        backend: &mut B,
    ) {
        let address = address_key(peer.ip());
        let id = self.last_id + 1;
        let member = link.is_established();
        let now = self.now;
        let beat = link.heartbeat_interval().map(|every| (every, now + every));
        // A link handed over from a service door may hold input read before it joined.
        let buffered = link.has_buffered_input();
        let writing = link.wants_write();
        let inserted = self.pool.insert_with(|token| {
            backend.register(link.borrowed(), token, Interest::READABLE)?;
            Ok(Connection {
                delimiting: link.delimiting(),
                encoding: link.encoding(),
                beat,
                link,
                sd,
                id,
                peer,
                address,
                bucket: self.config.max_rate.map(|rate| Bucket::new(rate, now)),
                rate_wait: None,
                last_active: now,
                queue: OutQueue::new(),
                bytes_in: 0,
                bytes_out: 0,
                registered: Interest::READABLE,
                progress: Progress::default(),
                standing: Standing::default(),
                read_paused: false,
                read_while_held: 0,
                clear_epoch: 0,
                dirty: false,
                partial: Vec::new(),
                member,
                opened: now,
                cut: None,
            })
        });
        match inserted {
            Ok(token) => {
                self.last_id = id;
                self.doors.seats.take(address);
                if buffered {
                    self.read_again.push(token);
                }
                if writing {
                    self.mark_dirty(token); // its own first bytes (a handshake's answer)
                }
                if let Some((every, _)) = beat {
                    self.heartbeats += 1;
                    self.timers.sweep_within(now, every);
                }
                if let Some(t) = self.config.idle_timeout {
                    self.timers
                        .sweep_within(self.now, policy::sweep_interval(t));
                }
                self.summary.accepted += 1;
                self.summary.peak_clients = self.summary.peak_clients.max(self.pool.len());
                info!(sd, id, %peer, clients = self.pool.len(), "New incoming connection on sd {sd}");
                if member {
                    self.announce(token, id, "joined");
                } else {
                    self.handshaking += 1;
                    let within = policy::sweep_interval(self.config.handshake_timeout);
                    self.timers.sweep_within(self.now, within);
                }
            }
            // The backend cannot hold this socket (select: a descriptor past FD_SETSIZE). The
            // stream was never registered and is closed as it drops here.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                self.refuse_full(sd, peer, Some(&e))
            }
            Err(e) => {
                warn!(sd, %peer, error = %e, "cannot register the new connection; closing it")
            }
        }
    }

    /// Logs and counts a client the server has no room for; its stream closes as the caller
    /// drops it. The client sees its connection accepted and then closed, instead of hanging in
    /// the backlog.
    pub(super) fn refuse_full(&mut self, sd: u64, peer: SocketAddr, error: Option<&io::Error>) {
        self.summary.refused_full += 1;
        let error = error.map(tracing::field::display);
        warn!(
            sd, %peer, clients = self.pool.len(), max_clients = self.max_clients, error,
            "server full: refusing sd {sd} from {peer}"
        );
    }
}
