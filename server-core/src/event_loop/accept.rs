//! Doors: the listeners, their admission of newcomers, the back-off when the process runs out of
//! descriptors, and the spare descriptor. The only code that touches a listener.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

use tracing::{debug, info, warn};

use super::Engine;
use crate::backend::{AsBorrowedSocket, Backend, BorrowedSocket, Interest, Token};
use crate::config::Config;
use crate::fair::Seats;
use crate::link::{Admission, AnyAcceptor, Link};

/// One listener and the acceptor that turns its connections into links.
pub(crate) struct Door {
    listener: TcpListener,
    acceptor: Box<dyn AnyAcceptor>,
    /// A newcomer is waiting: noted in the read phase, served in the admit phase.
    ready: bool,
}

impl Door {
    pub(crate) fn new(listener: TcpListener, acceptor: Box<dyn AnyAcceptor>) -> Self {
        Door {
            listener,
            acceptor,
            ready: false,
        }
    }

    /// Makes the listener non-blocking and registers it under door `index`'s token.
    pub(crate) fn open<B: Backend>(&self, index: usize, backend: &mut B) -> io::Result<()> {
        self.listener.set_nonblocking(true)?;
        backend.register(
            self.listener.borrowed(),
            Token::door(index),
            Interest::READABLE,
        )
    }
}

/// Every door, and what they share: the accept pause and the spare descriptor.
pub(super) struct Doors {
    doors: Vec<Door>,
    /// While set, accepting is paused (on every door) until this instant.
    paused_until: Option<Instant>,
    /// A connection left during a pause: a descriptor is free, so try accepting again.
    early_resume: bool,
    /// A duplicate of the first listener, closed to make room for one accept when the process
    /// runs out of descriptors, so the excess client gets a clean close instead of hanging.
    spare: Option<TcpListener>,
    /// Clients refused for want of descriptors in the current episode; `None` outside one.
    out_of_fds: Option<u64>,
    /// Clients connected now per address, for `max_per_address`.
    pub(super) seats: Seats,
}

impl Doors {
    pub(super) fn new(doors: Vec<Door>) -> Self {
        let spare = doors.first().and_then(|d| d.listener.try_clone().ok());
        Doors {
            doors,
            paused_until: None,
            early_resume: false,
            spare,
            out_of_fds: None,
            seats: Seats::default(),
        }
    }

    /// Whether door `index` was noted ready, clearing the note.
    pub(super) fn take_ready(&mut self, index: usize) -> bool {
        self.doors
            .get_mut(index)
            .is_some_and(|door| std::mem::take(&mut door.ready))
    }

    pub(super) fn note_ready(&mut self, index: usize) {
        if let Some(door) = self.doors.get_mut(index) {
            door.ready = true;
        }
    }

    pub(super) fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// A connection left: if accepting is paused, a descriptor is free again.
    pub(super) fn seat_freed(&mut self) {
        if self.paused_until.is_some() {
            self.early_resume = true;
        }
    }

    /// Sets every listener's interest (pausing with [`Interest::NONE`]).
    pub(super) fn set_interest<B: Backend>(&self, interest: Interest, backend: &mut B) {
        for (index, door) in self.doors.iter().enumerate() {
            if let Err(e) =
                backend.reregister(door.listener.borrowed(), Token::door(index), interest)
            {
                warn!(error = %e, ?interest, "could not change a listener's interest");
            }
        }
    }

    /// Sets the interest of listener `index` alone (a service door kept open in the drain).
    pub(super) fn set_interest_of<B: Backend>(
        &self,
        index: usize,
        interest: Interest,
        backend: &mut B,
    ) {
        if let Some(door) = self.doors.get(index) {
            if let Err(e) =
                backend.reregister(door.listener.borrowed(), Token::door(index), interest)
            {
                warn!(error = %e, ?interest, "could not change a listener's interest");
            }
        }
    }

    /// Door `index`'s acceptor admits or refuses a new connection.
    pub(super) fn admit_at(
        &mut self,
        index: usize,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> io::Result<Admission<Box<dyn Link>>> {
        self.doors[index].acceptor.admit(stream, peer)
    }

    /// Deregisters every listener while it is still open; they close as they drop.
    pub(super) fn close<B: Backend>(&mut self, backend: &mut B) {
        for door in self.doors.drain(..) {
            let _ = backend.deregister(door.listener.borrowed());
        }
    }
}

impl Engine {
    /// The admit phase: ends a due accept pause, then accepts a bounded burst at each door that
    /// has newcomers. Runs after the reaper, so seats freed this turn are offered at once.
    pub(super) fn admit<B: Backend>(&mut self, backend: &mut B) {
        let early = std::mem::take(&mut self.doors.early_resume);
        if let Some(until) = self.doors.paused_until {
            if !early && self.now < until {
                return;
            }
            self.doors.paused_until = None;
            self.doors.set_interest(Interest::READABLE, backend);
            debug!("accepting new connections again");
        }
        for index in 0..self.doors.doors.len() {
            if std::mem::take(&mut self.doors.doors[index].ready) {
                self.accept_burst(index, backend);
            }
        }
    }

    /// Accepts up to `accept_burst` pending connections at door `index`.
    pub(super) fn accept_burst<B: Backend>(&mut self, index: usize, backend: &mut B) {
        // Whether the previous accept failed with an error we cannot name portably.
        let mut failed_before = false;
        for _ in 0..self.config.accept_burst {
            if self.doors.paused_until.is_some() {
                return;
            }
            match self.doors.doors[index].listener.accept() {
                Ok((stream, peer)) if self.services.serves(index) => {
                    failed_before = false;
                    self.add_service(index, stream, peer, backend);
                }
                Ok((stream, peer)) if self.pool.len() >= self.max_clients => {
                    failed_before = false;
                    self.refuse_full(stream.raw_number(), peer, None);
                }
                Ok((stream, peer)) => {
                    failed_before = false;
                    self.add(index, stream, peer, backend);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // The client gave up before we got to it, or a signal arrived: nothing to do.
                // (Wine reports a connection reset while in the backlog as WSAENOTCONN.)
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::NotConnected
                    ) =>
                {
                    debug!(error = %e, "accept: transient error, skipped");
                }
                // Linux reports some errors pending on the new connection itself (EPROTO,
                // EHOSTUNREACH, ...; see accept(2)) from accept, and that connection is then gone:
                // the next accept goes on. Running out of descriptors instead fails again at once
                // on the same connection, so only a repeated failure is treated as exhaustion.
                Err(e) if !failed_before => {
                    failed_before = true;
                    debug!(error = %e, "accept: transient error, skipped");
                }
                Err(e) => {
                    self.out_of_descriptors(index, &e, backend);
                }
            }
        }
    }

    /// Typically EMFILE/ENFILE. Refuses the head of the backlog with the spare descriptor, or,
    /// with no spare to spend, pauses accepting (a level-triggered listener would otherwise fire
    /// again at once); a departure ends the pause early.
    fn out_of_descriptors<B: Backend>(&mut self, index: usize, e: &io::Error, backend: &mut B) {
        if self.doors.out_of_fds.is_none() {
            warn!(
                clients = self.pool.len(),
                "accept failed: {e}; refusing new clients until some leave"
            );
            self.doors.out_of_fds = Some(0);
        }
        if self.refuse_with_spare(index) {
            return;
        }
        debug!(
            backoff_ms = self.config.accept_backoff.as_millis() as u64,
            "pausing new connections"
        );
        self.doors.paused_until = Some(self.now + self.config.accept_backoff);
        self.doors.set_interest(Interest::NONE, backend);
    }

    /// Spends the spare descriptor to accept the client at the head of door `index`'s backlog
    /// and close it at once, then takes the spare back. Returns whether the spare is back, i.e.
    /// whether accepting may go on.
    fn refuse_with_spare(&mut self, index: usize) -> bool {
        let Some(spare) = self.doors.spare.take() else {
            return false;
        };
        drop(spare);
        let listener = &self.doors.doors[index].listener;
        if let Ok((stream, peer)) = listener.accept() {
            *self.doors.out_of_fds.get_or_insert(0) += 1;
            self.summary.refused_no_fds += 1;
            debug!(%peer, "out of descriptors: refusing {peer}");
            drop(stream);
        }
        self.doors.spare = self.doors.doors[0].listener.try_clone().ok();
        self.doors.spare.is_some()
    }

    /// Sets one accepted stream up, lets its door's acceptor admit it, and seats it.
    fn add<B: Backend>(
        &mut self,
        door: usize,
        stream: TcpStream,
        peer: SocketAddr,
        backend: &mut B,
    ) {
        let Some((peer, sd)) = prepare(&stream, peer) else {
            return;
        };
        if !self.has_seat_for(peer, sd) {
            return;
        }
        tune(stream.borrowed(), &self.config, sd);
        if let Some(refused) = self.doors.out_of_fds.take() {
            info!(
                refused,
                "accepting new clients again ({refused} refused meanwhile)"
            );
        }
        let link = match self.doors.doors[door].acceptor.admit(stream, peer) {
            Ok(Admission::Admit(link)) => link,
            Ok(Admission::Refuse) => {
                self.summary.refused_by_acceptor += 1;
                return;
            }
            Err(e) => {
                warn!(sd, %peer, error = %e, "cannot set up the new connection; closing it");
                return;
            }
        };
        self.seat(link, peer, sd, backend);
    }
}

/// A member's socket options: no Nagle (relayed chunks are already batched per turn; it would
/// only add latency), the configured send buffer, and TCP keepalive (a peer that vanishes, by a
/// power cut or a NAT timeout, sends no FIN; keepalive probes find it).
pub(super) fn tune(socket: BorrowedSocket<'_>, config: &Config, sd: u64) {
    let socket = socket2::SockRef::from(&socket);
    if let Err(e) = socket.set_tcp_nodelay(true) {
        debug!(sd, error = %e, "TCP_NODELAY not set");
    }
    if let Some(size) = config.send_buffer {
        if let Err(e) = socket.set_send_buffer_size(size) {
            debug!(sd, error = %e, "SO_SNDBUF not set");
        }
    }
    if let Some(idle) = config.keepalive {
        let keepalive = socket2::TcpKeepalive::new().with_time(idle);
        if let Err(e) = socket.set_tcp_keepalive(&keepalive) {
            debug!(sd, error = %e, "TCP keepalive not set");
        }
    }
}

/// The first steps for any accepted stream, room or service door: the peer as it is logged (an
/// IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d; logged as a.b.c.d), its
/// descriptor number, and non-blocking mode (inherited on BSDs but not on Linux or Windows).
/// `None` when it cannot be made non-blocking: logged, and the stream is then dropped.
pub(super) fn prepare(stream: &TcpStream, peer: SocketAddr) -> Option<(SocketAddr, u64)> {
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let sd = stream.raw_number();
    if let Err(e) = stream.set_nonblocking(true) {
        warn!(sd, %peer, error = %e, "cannot make the new connection non-blocking; closing it");
        return None;
    }
    Some((peer, sd))
}
