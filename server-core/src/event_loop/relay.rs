//! Relaying: one read per readable connection, framing (raw chunks or lines), and the fan-out of
//! one shared buffer onto every other member's queue; messages to and from the uplink.

use std::io;
use std::rc::Rc;

use tracing::debug;

use super::Engine;
use crate::backend::Token;
use crate::framing::{self, Framing};
use crate::link::{Delimiting, Encoding};
use crate::summary::{io_reason, DropReason};

/// Most messages taken from the uplink per turn, so other relays cannot starve local clients.
const UPLINK_BURST: usize = 256;

impl Engine {
    /// One read from one connection (one per turn, so one fast sender cannot starve the rest),
    /// then the fan-out of what it completed.
    pub(super) fn read_once(&mut self, token: Token) {
        let Some(conn) = self.pool.get_mut(token) else {
            return; // spurious: the connection is already gone
        };
        if conn.cut.is_some() || conn.read_paused || conn.rate_wait.is_some() {
            return; // leaving this turn, or waiting for the room or its allowance
        }
        if conn.clear_epoch != self.clear_epoch {
            conn.clear_epoch = self.clear_epoch;
            conn.read_while_held = 0;
        }
        let light = self.config.pace.light;
        let held = conn.member && self.pace_counts.holding_back > 0;
        if held && conn.read_while_held >= light {
            return self.pause_reading(token);
        }
        let allowed = match &mut conn.bucket {
            Some(bucket) if conn.member => {
                let allowed = bucket.available(self.now);
                if allowed < bucket.worth_reading() {
                    return self.wait_for_allowance(token);
                }
                allowed
            }
            _ => usize::MAX,
        };
        // A message-framed link gets the whole buffer (a message is never split: its limits
        // are charged after the read), in line mode less one byte for the newline it may lack.
        let lines = matches!(self.config.framing, Framing::Lines(_));
        let room = match (conn.delimiting, lines) {
            (Delimiting::Messages, true) => self.read_buf.len() - 1,
            (Delimiting::Messages, false) => self.read_buf.len(),
            (Delimiting::Stream, _) => self.read_buf.len().min(allowed).min(if held {
                light - conn.read_while_held
            } else {
                usize::MAX
            }),
        };
        let result = conn.link.recv(&mut self.read_buf[..room]);
        let open = match &result {
            Ok(n) => *n > 0,
            Err(e) => is_not_now(e),
        };
        // Still open: a layer may have made progress of its own (a handshake step).
        if open {
            if conn.link.has_buffered_input() {
                self.read_again.push(token);
            }
            if conn.link.wants_write() && !conn.dirty {
                conn.dirty = true;
                self.dirty.push(token);
            }
            if !conn.member && conn.link.is_established() {
                conn.member = true;
                self.handshaking -= 1;
                let (sd, id) = (conn.sd, conn.id);
                debug!(sd, id, "sd {sd} established");
                self.announce(token, id, "joined");
            }
        }
        let Some(conn) = self.pool.get_mut(token) else {
            return;
        };
        let mut n = match result {
            Ok(0) => return self.doomed.mark(token, conn, DropReason::PeerClosed, None),
            Ok(n) => n,
            Err(e) if is_not_now(&e) => return,
            Err(e) => {
                let reason = io_reason(&e, conn.member, DropReason::ReadError);
                return self.doomed.mark(token, conn, reason, Some(e));
            }
        };
        let sd = conn.sd;
        conn.last_active = self.now;
        if held {
            conn.read_while_held += n;
        }
        if let Some(bucket) = &mut conn.bucket {
            bucket.take(n);
        }
        self.summary.bytes_in += n as u64;
        conn.bytes_in += n as u64;
        debug!(sd, bytes = n, "{n} bytes received from sd {sd}");
        let (chunk, messages): (Rc<[u8]>, u64) = match &self.config.framing {
            Framing::Raw => (Rc::from(&self.read_buf[..n]), 1),
            Framing::Lines(opts) => {
                if conn.delimiting == Delimiting::Messages && self.read_buf[n - 1] != b'\n' {
                    self.read_buf[n] = b'\n'; // one message is one line
                    n += 1;
                }
                let data = &self.read_buf[..n];
                match framing::feed(&mut conn.partial, data, conn.id, opts, &mut self.lines) {
                    Ok(0) => return, // a partial line: wait for the rest
                    Ok(count) => (Rc::from(&self.lines[..]), count as u64),
                    Err(too_long) => {
                        let max = opts.max_line;
                        let e = io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{too_long}; the limit is {max}"),
                        );
                        return self
                            .doomed
                            .mark(token, conn, DropReason::LineTooLong, Some(e));
                    }
                }
            }
        };
        self.summary.messages_in += messages;
        self.publish(&chunk);
        self.fan_out(token, chunk, messages);
    }

    /// Hands a local message on to the other relays.
    pub(super) fn publish(&mut self, message: &[u8]) {
        if let Some(uplink) = &mut self.uplink {
            uplink.publish(message);
        }
    }

    /// Delivers up to [`UPLINK_BURST`] messages from other relays to every local member.
    pub(super) fn receive_from_uplink(&mut self) {
        self.uplink_more = false;
        for _ in 0..UPLINK_BURST {
            let Some(message) = self.uplink.as_mut().and_then(|u| u.receive()) else {
                return;
            };
            let messages = match self.config.framing {
                Framing::Raw => 1,
                Framing::Lines(_) => message.iter().filter(|&&b| b == b'\n').count() as u64,
            };
            self.summary.cluster_in += 1;
            // No connection has a door's token: every member receives it.
            self.fan_out(Token::LISTENER, Rc::from(message), messages);
        }
        self.uplink_more = true;
    }

    /// Queues one shared chunk (`messages` messages) for every member but its sender. A member
    /// whose queue passes the byte limit is marked to leave as a slow consumer; the reaper cuts
    /// it after this phase. Links with an encoding of their own share one encoded copy.
    pub(super) fn fan_out(&mut self, from: Token, chunk: Rc<[u8]>, messages: u64) {
        let (max_pending, pace, now) = (self.config.max_pending, self.config.pace, self.now);
        let lines = matches!(self.config.framing, Framing::Lines(_));
        let mut encoded = Encoded::default();
        for (token, conn) in self.pool.iter_mut() {
            if token == from || !conn.member || conn.cut.is_some() {
                continue;
            }
            let copy = if conn.encoding.is_identity() {
                Rc::clone(&chunk)
            } else {
                encoded.get(conn.encoding, &chunk, lines)
            };
            conn.queue.push(copy);
            self.summary.messages_queued += messages;
            if self.pace_counts.note(conn, &pace, now) {
                self.timers.sweep_within(now, pace.grace);
            }
            if conn.queue.len() > max_pending {
                self.doomed
                    .mark(token, conn, DropReason::SlowConsumer, None);
            } else if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(token);
            }
        }
    }

    /// Line mode with `announce`: tells every member but `about` that client `id` joined or left.
    pub(super) fn announce(&mut self, about: Token, id: u64, what: &str) {
        if let Framing::Lines(opts) = &self.config.framing {
            if opts.announce {
                let notice: Rc<[u8]> = Rc::from(framing::notice(id, what));
                self.fan_out(about, notice, 1);
            }
        }
    }
}

/// One message's encoded copies during one fan-out, one per encoding met (a room holds few).
#[derive(Default)]
struct Encoded {
    copies: Vec<(u8, Rc<[u8]>)>,
}

impl Encoded {
    fn get(&mut self, encoding: Encoding, message: &[u8], lines: bool) -> Rc<[u8]> {
        if let Some((_, copy)) = self.copies.iter().find(|(id, _)| *id == encoding.id) {
            return Rc::clone(copy);
        }
        let mut out = Vec::with_capacity(message.len() + 16);
        (encoding.encode)(message, lines, &mut out);
        let copy: Rc<[u8]> = Rc::from(out);
        self.copies.push((encoding.id, Rc::clone(&copy)));
        copy
    }
}

/// Whether a read or write error means "nothing now".
pub(super) fn is_not_now(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
