//! What a connection is to the engine, and what else may feed the room.
//!
//! - A [`Link`] is one client's byte stream: plain TCP as it is, or a layer over it such as TLS.
//!   The engine reads and writes *application* bytes through it and asks it what readiness it
//!   needs; a layer keeps its own records and handshake to itself.
//! - An [`Acceptor`] turns each accepted TCP stream into a link, or refuses it (an access list).
//!   Each listener ("door") has its own acceptor, and one room holds the links of every door.
//! - A link says how its bytes divide into messages ([`Delimiting`]) and how the room's messages
//!   are put on its wire ([`Encoding`]), so a message-framed link (WebSocket) relays whole
//!   messages, encoded once per message for all the links that share its encoding.
//! - An [`Uplink`] joins the room to other relays: every message local clients send goes out
//!   through it, and messages from elsewhere come in and reach every local client.
//!
//! All three are traits so that `server-core` stays free of OS calls and of TLS or network
//! libraries; the implementations live in their own crates and the binary picks them.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::backend::AsBorrowedSocket;

/// One client's byte stream as the engine sees it. Plain TCP implements it as it is.
///
/// The socket is non-blocking and level-triggered readiness drives every call, so no method may
/// block. Dropping a link closes it; a layer may say goodbye (a TLS `close_notify`) in `Drop`,
/// best effort and without blocking.
pub trait Link: AsBorrowedSocket {
    /// Reads application bytes into `buf`: at most one read of the socket per call, so one busy
    /// client cannot starve the rest.
    ///
    /// `Ok(0)` means the client closed its side. `WouldBlock` means no application bytes now,
    /// which for a layer includes a read that carried only handshake or protocol records.
    ///
    /// # Errors
    ///
    /// Socket errors, and a layer's protocol errors (`InvalidData`); the engine drops the client.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// Takes application bytes, front first, and returns how many it took (possibly into a buffer
    /// of its own, which [`Link::wants_write`] then reports). `WouldBlock` when it can take none.
    ///
    /// # Errors
    ///
    /// Socket errors; the engine drops the client.
    fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// Sends bytes the layer holds of its own (handshake, encrypted records) until it holds none
    /// or the socket would block. Plain TCP holds nothing.
    ///
    /// # Errors
    ///
    /// Socket errors; the engine drops the client.
    fn flush_own(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Whether the layer still holds bytes of its own to send; the engine then keeps write
    /// interest registered and calls [`Link::flush_own`] when the socket is writable.
    fn wants_write(&self) -> bool {
        false
    }

    /// Whether the link carries application bytes yet. Until it does (a TLS handshake in
    /// progress) the client is not in the room: it receives nothing and is cut if it is not
    /// established within `Config::handshake_timeout`.
    fn is_established(&self) -> bool {
        true
    }

    /// Whether application bytes already taken from the socket wait inside the layer. The engine
    /// then reads again on its next turn without waiting for readiness, which would not come.
    fn has_buffered_input(&self) -> bool {
        false
    }

    /// What carries it, for an operator's view (`/clients`): `tcp`, `tls`...
    fn transport(&self) -> &'static str {
        "tcp"
    }

    /// How this link's input divides into messages. Read once, when the link is admitted.
    fn delimiting(&self) -> Delimiting {
        Delimiting::Stream
    }

    /// How the room's messages are put on this link's wire. Read once, when the link is admitted.
    fn encoding(&self) -> Encoding {
        Encoding::IDENTITY
    }

    /// How often the engine calls [`Link::heartbeat`] once the link is in the room; `None` (the
    /// default): never. Read once, when the link is admitted.
    fn heartbeat_interval(&self) -> Option<Duration> {
        None
    }

    /// A liveness check of the link's own (a WebSocket ping): called about every
    /// [`Link::heartbeat_interval`]. It may put a probe among its own bytes (the engine then
    /// flushes them), and fails when the peer showed no sign of life since the last call.
    ///
    /// # Errors
    ///
    /// The peer is gone (`TimedOut`); the engine cuts it as idle.
    fn heartbeat(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How a link's input divides into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delimiting {
    /// A byte stream (TCP, TLS): raw mode relays each read as one chunk, line mode cuts lines.
    #[default]
    Stream,
    /// Each successful [`Link::recv`] returns exactly one whole message (a WebSocket message):
    /// raw mode relays it as one chunk, line mode as one line (a newline is added when missing).
    Messages,
}

/// How the room's messages are put on one kind of link's wire: a name that identifies the
/// encoding (links that report equal ones share one encoded copy of each message) and the
/// function that encodes.
#[derive(Clone, Copy)]
pub struct Encoding {
    /// Identifies the encoding; [`Encoding::IDENTITY`] is `0`.
    pub id: u8,
    /// Appends `message` as it goes on the wire to `out`. `lines` is true in line mode, where a
    /// message is one or more whole lines (a message-framed link sends each line as one message).
    /// Not called for [`Encoding::IDENTITY`].
    pub encode: fn(message: &[u8], lines: bool, out: &mut Vec<u8>),
}

impl Encoding {
    /// Bytes as they are: plain TCP and TLS (which encrypts in [`Link::send`]).
    pub const IDENTITY: Encoding = Encoding {
        id: 0,
        encode: |message, _, out| out.extend_from_slice(message),
    };

    /// Whether messages go on the wire unchanged.
    pub fn is_identity(&self) -> bool {
        self.id == 0
    }
}

impl fmt::Debug for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoding").field("id", &self.id).finish()
    }
}

impl Link for TcpStream {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }

    fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_vectored(bufs)
    }
}

/// What becomes of an accepted connection.
#[derive(Debug)]
pub enum Admission<L> {
    /// It joins (for a layer: once [`Link::is_established`]).
    Admit(L),
    /// It is closed at once. The acceptor has logged what it wants to; the engine counts it.
    Refuse,
}

/// Turns each accepted, non-blocking TCP stream into a [`Link`], or refuses it.
pub trait Acceptor {
    /// The links it makes.
    type Link: Link;

    /// Admits or refuses a new connection from `peer` (an IPv4 peer of a dual-stack listener is
    /// given as plain IPv4).
    ///
    /// # Errors
    ///
    /// Setting the connection up failed; it is closed and logged, and the server goes on.
    fn accept(&mut self, stream: TcpStream, peer: SocketAddr) -> io::Result<Admission<Self::Link>>;
}

/// An [`Acceptor`] whose links are boxed, so that doors of different link types share a room.
pub(crate) trait AnyAcceptor {
    /// [`Acceptor::accept`], with the link boxed.
    fn admit(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> io::Result<Admission<Box<dyn Link>>>;
}

impl<A> AnyAcceptor for A
where
    A: Acceptor,
    A::Link: 'static,
{
    fn admit(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> io::Result<Admission<Box<dyn Link>>> {
        Ok(match Acceptor::accept(self, stream, peer)? {
            Admission::Admit(link) => Admission::Admit(Box::new(link)),
            Admission::Refuse => Admission::Refuse,
        })
    }
}

/// Admits every connection as plain TCP: the seed's behaviour.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainTcp;

impl Acceptor for PlainTcp {
    type Link = TcpStream;

    fn accept(&mut self, stream: TcpStream, _peer: SocketAddr) -> io::Result<Admission<TcpStream>> {
        Ok(Admission::Admit(stream))
    }
}

/// Counters an [`Uplink`] keeps, shown in the statistics and the final summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UplinkStats {
    /// Messages handed on to the other relays.
    pub published: u64,
    /// Messages that could not be handed on (link down, buffer full) and were dropped.
    pub unpublished: u64,
}

/// The room's connection to other relays (a message bus such as NATS).
///
/// The engine calls it from its one thread and never waits for it: `publish` must return at once
/// (buffer, or drop and count), and messages from elsewhere are collected by the uplink's own
/// thread, which wakes the event loop (through the backend's waker) when some arrive.
pub trait Uplink {
    /// A short name for the log, such as `nats://127.0.0.1:4222 room "lobby"`.
    fn describe(&self) -> String;

    /// Hands on a message from a local client: one chunk in raw mode, one or more whole lines in
    /// line mode. Must not block.
    fn publish(&mut self, message: &[u8]);

    /// The next message from another relay, if one has arrived. Each is delivered to every local
    /// client. Must not block.
    fn receive(&mut self) -> Option<Vec<u8>>;

    /// Its counters so far.
    fn stats(&self) -> UplinkStats;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn plain_tcp_is_a_link_that_holds_nothing() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (stream, peer) = listener.accept().unwrap();
        let Admission::Admit(mut link) = PlainTcp.accept(stream, peer).unwrap() else {
            panic!("plain TCP refused a connection");
        };
        assert!(link.is_established() && !link.wants_write() && !link.has_buffered_input());
        let n = link.send(&[IoSlice::new(b"ab"), IoSlice::new(b"c")]);
        assert_eq!(n.unwrap(), 3);
        let mut got = [0; 3];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abc");
        client.write_all(b"xyz").unwrap();
        let mut buf = [0; 8];
        let n = link.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &b"xyz"[..n]);
        assert!(n > 0);
    }
}
