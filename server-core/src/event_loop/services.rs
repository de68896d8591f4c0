//! Service connections: accepted at a service door, read, answered by the door's [`Service`] from
//! a [`View`] of the engine, written like chat output (a queue of shared chunks, vectored
//! writes, write interest only while bytes remain) and closed here, in their own reaper. They
//! live in a pool of their own, under tokens from [`SERVICE_BASE`] up, so nothing the room does
//! (fan-out, the pace, the sweep, `max_clients`, the drain's end) ever sees them.
//!
//! A service connection is read only while nothing waits to be written to it, so one that
//! pipelines requests without reading the replies holds at most one batch of replies.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tracing::debug;

use super::relay::is_not_now;
use super::view::View;
use super::Engine;
use crate::backend::{Backend, Interest, Token};
use crate::link::{Admission, Link};
use crate::pool::Pool;
use crate::queue::OutQueue;
use crate::service::{Service, ServiceLimits, ServiceRefusals, Then};

/// The first service connection's token. Chat connections take tokens from 0 up and doors from
/// the top down; service connections sit in between, where neither can reach.
pub(super) const SERVICE_BASE: usize = 1 << (usize::BITS - 2);

/// How long a connection answered with a close (a 431, a 405) is still read, its input thrown
/// away, after its write side is shut: closing a socket with unread input sends a reset, which
/// can destroy the answer before the client reads it.
pub(super) const LINGER: Duration = Duration::from_secs(2);

/// The service connection `token` names, if it names one.
pub(super) fn key_of(token: Token) -> Option<Token> {
    (token.0 >= SERVICE_BASE && !token.is_reserved()).then(|| Token(token.0 - SERVICE_BASE))
}

pub(super) fn token_of(key: Token) -> Token {
    Token(SERVICE_BASE + key.0)
}

/// One service connection.
pub(super) struct ServiceConn {
    pub(super) link: Box<dyn Link>,
    /// The door it came in by, whose service answers it.
    pub(super) door: usize,
    pub(super) sd: u64,
    pub(super) peer: SocketAddr,
    /// Bytes received that the service has not consumed yet.
    pub(super) input: Vec<u8>,
    pub(super) queue: OutQueue,
    pub(super) registered: Interest,
    /// When its unanswered input began, or (with none) when it last did anything: the request
    /// timeout's or the idle timeout's clock.
    pub(super) since: Instant,
    /// The service asked to close it once its output is written.
    pub(super) closing: bool,
    /// Answered and shut for writing: read only to throw input away until the client closes or
    /// [`LINGER`] passes (`since` is when it began).
    pub(super) lingering: bool,
    pub(super) dirty: bool,
    /// Marked to go, with the reason for the log.
    pub(super) cut: Option<&'static str>,
    /// The service asked to hand it to the room: its last reply, not yet written (the joined
    /// link writes it first).
    pub(super) joining: Option<Vec<u8>>,
}

impl ServiceConn {
    /// Read while nothing waits to be written (and the service has not said goodbye); write
    /// interest while bytes wait.
    pub(super) fn wanted_interest(&self, limits: &ServiceLimits) -> Interest {
        if self.lingering {
            return Interest::READABLE;
        }
        if self.joining.is_some() {
            return Interest::NONE; // this turn's admit phase hands it to the room
        }
        let writing = !self.queue.is_empty() || self.link.wants_write();
        let read = !writing && !self.closing && self.input.len() < limits.max_input;
        match (read, writing) {
            (true, _) => Interest::READABLE,
            (false, true) => Interest::WRITABLE,
            (false, false) => Interest::NONE,
        }
    }

    pub(super) fn deadline(&self, limits: &ServiceLimits) -> Instant {
        if self.lingering {
            self.since + LINGER
        } else if self.input.is_empty() {
            self.since + limits.idle_timeout
        } else {
            self.since + limits.request_timeout
        }
    }
}

/// Every service door's service and connections.
pub(super) struct Services {
    /// Indexed by door: the service of each service door, `None` for a room door.
    pub(super) handlers: Vec<Option<Box<dyn Service>>>,
    pub(super) pool: Pool<ServiceConn>,
    /// Open connections per door, for `max_connections` (lingering ones not counted).
    pub(super) open: Vec<usize>,
    /// Connections lingering after their last answer, at most `max_connections` in all.
    pub(super) lingering: usize,
    /// Connections turned away at the service doors, by reason.
    pub(super) refused: ServiceRefusals,
    pub(super) limits: ServiceLimits,
    pub(super) dirty: Vec<Token>,
    pub(super) doomed: Vec<Token>,
    /// Connections to hand to the room in this turn's admit phase.
    pub(super) joining: Vec<Token>,
    pub(super) backend: &'static str,
    pub(super) started: Instant,
    pub(super) draining: bool,
}

impl Services {
    pub(super) fn new(
        handlers: Vec<Option<Box<dyn Service>>>,
        limits: ServiceLimits,
        backend: &'static str,
        started: Instant,
    ) -> Self {
        Services {
            open: vec![0; handlers.len()],
            lingering: 0,
            refused: ServiceRefusals::default(),
            handlers,
            pool: Pool::new(),
            limits,
            dirty: Vec::new(),
            doomed: Vec::new(),
            joining: Vec::new(),
            backend,
            started,
            draining: false,
        }
    }

    /// Whether door `index` is a service door.
    pub(super) fn serves(&self, index: usize) -> bool {
        matches!(self.handlers.get(index), Some(Some(_)))
    }

    /// The earliest request or idle deadline of any service connection.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.pool
            .iter()
            .map(|(_, c)| c.deadline(&self.limits))
            .min()
    }

    pub(super) fn start_draining(&mut self) {
        self.draining = true;
    }

    pub(super) fn mark(&mut self, key: Token, why: &'static str) {
        if let Some(conn) = self.pool.get_mut(key) {
            if conn.cut.is_none() {
                conn.cut = Some(why);
                self.doomed.push(key);
            }
        }
    }

    pub(super) fn mark_dirty(&mut self, key: Token) {
        if let Some(conn) = self.pool.get_mut(key) {
            if !conn.dirty && conn.cut.is_none() {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
    }
}

impl Engine {
    /// Routes one readiness event if it is a service connection's; false if it is not.
    pub(super) fn service_event(&mut self, token: Token, readable: bool, writable: bool) -> bool {
        let Some(key) = key_of(token) else {
            return false;
        };
        if readable {
            self.service_read(key);
        }
        if writable {
            self.services.mark_dirty(key);
        }
        true
    }

    /// Accepts one connection at service door `door`: its acceptor (an access list) may refuse
    /// it, and a door at `max_connections` turns it away with the service's refusal.
    pub(super) fn add_service<B: Backend>(
        &mut self,
        door: usize,
        stream: TcpStream,
        peer: SocketAddr,
        backend: &mut B,
    ) {
        let Some((peer, sd)) = super::accept::prepare(&stream, peer) else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let mut link = match self.doors.admit_at(door, stream, peer) {
            Ok(Admission::Admit(link)) => link,
            Ok(Admission::Refuse) => {
                self.services.refused.access_list += 1;
                return;
            }
            Err(e) => {
                debug!(sd, %peer, error = %e, "service connection: cannot set it up");
                return;
            }
        };
        if self.services.open[door] >= self.services.limits.max_connections {
            let refusal = self.services.handlers[door]
                .as_ref()
                .map_or(&b""[..], |s| s.refusal());
            // Best effort: one write to a fresh socket, whose buffer is empty.
            let _ = link.send(&[io::IoSlice::new(refusal)]);
            self.services.refused.too_many += 1;
            debug!(sd, %peer, "service door full: turning {peer} away");
            return;
        }
        let now = self.now;
        let inserted = self.services.pool.insert_with(|key| {
            backend.register(link.borrowed(), token_of(key), Interest::READABLE)?;
            Ok(ServiceConn {
                link,
                door,
                sd,
                peer,
                input: Vec::new(),
                queue: OutQueue::new(),
                registered: Interest::READABLE,
                since: now,
                closing: false,
                lingering: false,
                dirty: false,
                cut: None,
                joining: None,
            })
        });
        match inserted {
            Ok(_) => {
                self.services.open[door] += 1;
                debug!(sd, %peer, "service connection from {peer} on sd {sd}");
            }
            Err(e) => debug!(sd, %peer, error = %e, "service connection: cannot register it"),
        }
    }

    /// One read from a service connection, then the service's answer.
    fn service_read(&mut self, key: Token) {
        let max_input = self.services.limits.max_input;
        let Some(conn) = self.services.pool.get_mut(key) else {
            return;
        };
        if conn.lingering && conn.cut.is_none() {
            return match conn.link.recv(&mut self.read_buf) {
                Ok(n) if n > 0 => {} // thrown away
                Err(e) if is_not_now(&e) => {}
                _ => self.services.mark(key, "answered"), // the client closed too
            };
        }
        if conn.cut.is_some() || conn.closing || conn.joining.is_some() || !conn.queue.is_empty() {
            return;
        }
        let room = max_input
            .saturating_sub(conn.input.len())
            .min(self.read_buf.len());
        if room == 0 {
            return;
        }
        match conn.link.recv(&mut self.read_buf[..room]) {
            // The client finished sending (a half-close after its request is common): what it
            // was answered is still written, then the connection closes.
            Ok(0) => {
                conn.closing = true;
                self.services.mark_dirty(key);
            }
            Ok(n) => {
                if conn.input.is_empty() {
                    conn.since = self.now; // a request begins: its clock starts
                }
                conn.input.extend_from_slice(&self.read_buf[..n]);
                if conn.link.has_buffered_input() {
                    self.read_again.push(token_of(key)); // TLS: no readiness will say so
                }
                self.service_answer(key);
            }
            Err(e) if is_not_now(&e) => {
                if conn.link.wants_write() {
                    self.services.mark_dirty(key);
                }
            }
            Err(_) => self.services.mark(key, "read error"),
        }
    }

    /// Lets the door's service answer what the connection sent, and queues the reply.
    pub(super) fn service_answer(&mut self, key: Token) {
        let service_connections = self.services.pool.len();
        let Some(conn) = self.services.pool.get_mut(key) else {
            return;
        };
        if conn.joining.is_some() {
            return;
        }
        let Some(service) = self.services.handlers[conn.door].as_mut() else {
            return;
        };
        let view = View {
            config: &self.config,
            summary: &self.summary,
            uplink: self.uplink.as_ref().map(|u| u.stats()),
            pool: &self.pool,
            max_clients: self.max_clients,
            handshaking: self.handshaking,
            service_connections,
            service_refusals: self.services.refused,
            backend: self.services.backend,
            started: self.services.started,
            now: self.now,
            draining: self.services.draining,
        };
        let mut out = Vec::new();
        let answer = service.answer(&conn.input, &view, &mut out);
        let consumed = answer.consumed.min(conn.input.len());
        conn.input.drain(..consumed);
        if consumed > 0 {
            conn.since = self.now; // the next request's clock, or the idle one
        }
        match answer.then {
            Then::Keep => {}
            Then::Close => conn.closing = true,
            Then::Join => {
                conn.joining = Some(out);
                self.services.joining.push(key);
                return;
            }
        }
        if !out.is_empty() {
            conn.queue.push(Rc::from(out));
        }
        self.services.mark_dirty(key);
    }

    /// The services' sweep: marks connections past their request or idle deadline. Walks the
    /// service connections only (at most `max_connections` per service door), and only when one
    /// is due.
    pub(super) fn sweep_services(&mut self) {
        let now = self.now;
        if self.services.next_deadline().is_none_or(|at| now < at) {
            return;
        }
        let limits = self.services.limits;
        let due: Vec<(Token, &'static str)> = self
            .services
            .pool
            .iter()
            .filter(|(_, c)| c.cut.is_none() && c.deadline(&limits) <= now)
            .map(|(key, c)| {
                let why = if c.lingering {
                    "answered"
                } else if c.input.is_empty() {
                    "idle timeout"
                } else {
                    "request timeout"
                };
                (key, why)
            })
            .collect();
        for (key, why) in due {
            self.services.mark(key, why);
        }
    }
}
