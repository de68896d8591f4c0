//! One client as the engine holds it, and how a connection is marked to leave.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::backend::{Interest, Token};
use crate::fair::Bucket;
use crate::link::{Delimiting, Encoding, Link};
use crate::pace::Standing;
use crate::policy::Progress;
use crate::queue::OutQueue;
use crate::summary::DropReason;

/// One client.
pub(crate) struct Connection {
    pub(super) link: Box<dyn Link>,
    /// The OS's socket number, for the seed's "sd N" log vocabulary.
    pub(super) sd: u64,
    /// Its id in the room: never reused while the server runs (unlike `sd` or the token).
    pub(super) id: u64,
    pub(super) peer: SocketAddr,
    /// Its seat in the per-address count (`fair::address_key` of the peer).
    pub(super) address: IpAddr,
    /// Its sending allowance, with `--max-rate`.
    pub(super) bucket: Option<Bucket>,
    /// Not read until then: it used up its allowance.
    pub(super) rate_wait: Option<Instant>,
    /// When it last sent or was sent something (the idle timeout's clock).
    pub(super) last_active: Instant,
    /// The link's [`Link::delimiting`], read once at admission.
    pub(super) delimiting: Delimiting,
    /// The link's [`Link::encoding`], read once at admission (the fan-out reads it per message).
    pub(super) encoding: Encoding,
    /// Its link's [`Link::heartbeat_interval`] and when the next heartbeat is due.
    pub(super) beat: Option<(Duration, Instant)>,
    /// Bytes waiting to be written to it.
    pub(super) queue: OutQueue,
    /// Bytes read from it and written to it (for a service's `View`).
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    /// What the backend currently has registered for this socket.
    pub(super) registered: Interest,
    /// Since when its pending bytes have not moved (the write timeout's clock).
    pub(super) progress: Progress,
    /// Whether its queue holds the room's senders back (see `pace`).
    pub(super) standing: Standing,
    /// Not read while the room is over its pace budget: its read interest is off, so TCP flow
    /// control slows it down.
    pub(super) read_paused: bool,
    /// Bytes read from it since the room was last clear (in `clear_epoch`), for `Pace::light`.
    pub(super) read_while_held: usize,
    /// The engine's clear epoch `read_while_held` counts in.
    pub(super) clear_epoch: u64,
    /// Already in the flush list this turn.
    pub(super) dirty: bool,
    /// Line mode: the bytes after its last newline, waiting for the rest of the line.
    pub(super) partial: Vec<u8>,
    /// In the room: its link is established, so it receives what others send.
    pub(super) member: bool,
    /// When it was accepted (the handshake timeout's clock).
    pub(super) opened: Instant,
    /// Marked to leave: the reaper closes it at the end of the phase. A marked connection is
    /// neither read, written nor sent anything more.
    pub(super) cut: Option<Cut>,
}

/// Why a connection must go, kept until the reaper logs it.
#[derive(Debug)]
pub(super) struct Cut {
    pub(super) reason: DropReason,
    pub(super) error: Option<io::Error>,
}

impl Connection {
    /// The interest this connection's state calls for: `base` (readable, or nothing while
    /// draining), plus writable while bytes (ours or the link's own) wait to be written.
    pub(super) fn wanted_interest(&self, base: Interest) -> Interest {
        let base = if self.read_paused {
            Interest::NONE
        } else {
            base
        };
        if self.queue.is_empty() && !self.link.wants_write() {
            base
        } else {
            base | Interest::WRITABLE
        }
    }
}

/// The connections marked to leave this turn, in the order they were marked.
#[derive(Debug, Default)]
pub(super) struct Doomed {
    tokens: VecDeque<Token>,
}

impl Doomed {
    /// Marks `conn` (under `token`) to leave for `reason`. The first reason stands.
    pub(super) fn mark(
        &mut self,
        token: Token,
        conn: &mut Connection,
        reason: DropReason,
        error: Option<io::Error>,
    ) {
        if conn.cut.is_none() {
            conn.cut = Some(Cut { reason, error });
            self.tokens.push_back(token);
        }
    }

    /// The next marked token, first marked first.
    pub(super) fn next(&mut self) -> Option<Token> {
        self.tokens.pop_front()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}
