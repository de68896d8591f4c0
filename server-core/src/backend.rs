//! The contract between the engine and an I/O readiness backend.
//!
//! A backend answers one question: *which registered sockets are ready, and for what?* It never
//! reads or writes a socket itself. Everything here is OS-neutral; the only platform-specific
//! item is the [`BorrowedSocket`] alias, chosen once below.

use std::fmt;
use std::io;
use std::ops::BitOr;
use std::time::Duration;

/// A socket borrowed for the duration of one backend call: `BorrowedFd` on Unix,
/// `BorrowedSocket` on Windows.
///
/// The borrow proves the socket is open while the backend looks at it; what happens after the
/// call is governed by the [`Backend`] contract (deregister before close).
#[cfg(unix)]
pub type BorrowedSocket<'a> = std::os::fd::BorrowedFd<'a>;
/// A socket borrowed for the duration of one backend call: `BorrowedFd` on Unix,
/// `BorrowedSocket` on Windows.
#[cfg(windows)]
pub type BorrowedSocket<'a> = std::os::windows::io::BorrowedSocket<'a>;

/// Anything that can lend a [`BorrowedSocket`] and name its raw number for the log.
///
/// Implemented for every `AsFd` (Unix) / `AsSocket` (Windows) type, so `TcpStream` and
/// `TcpListener` work as they are.
pub trait AsBorrowedSocket {
    /// Borrows the socket.
    fn borrowed(&self) -> BorrowedSocket<'_>;
    /// The OS's number for the socket (the fd, or the `SOCKET` value), for log lines only.
    fn raw_number(&self) -> u64;
}

#[cfg(unix)]
impl<T: std::os::fd::AsFd> AsBorrowedSocket for T {
    fn borrowed(&self) -> BorrowedSocket<'_> {
        self.as_fd()
    }
    fn raw_number(&self) -> u64 {
        use std::os::fd::AsRawFd;
        // Descriptors handed out by the OS are never negative.
        u64::try_from(self.as_fd().as_raw_fd()).unwrap_or(u64::MAX)
    }
}

#[cfg(windows)]
impl<T: std::os::windows::io::AsSocket> AsBorrowedSocket for T {
    fn borrowed(&self) -> BorrowedSocket<'_> {
        self.as_socket()
    }
    fn raw_number(&self) -> u64 {
        use std::os::windows::io::AsRawSocket;
        self.as_socket().as_raw_socket()
    }
}

/// Identifies a registered socket in the events a backend reports.
///
/// The engine uses the connection pool's slab key as the token. The top of the range is
/// reserved: [`Token::WAKER`], and below it one token per listener ([`Token::door`]; the first is
/// [`Token::LISTENER`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub usize);

impl Token {
    /// The first (or only) listening socket's token: `Token::door(0)`.
    pub const LISTENER: Token = Token::door(0);
    /// Most listeners ("doors") one engine serves.
    pub const MAX_DOORS: usize = 16;
    /// Reserved for a backend's internal wake-up source; never reported to the engine.
    /// (`polling` reserves `usize::MAX` for the same purpose.)
    pub const WAKER: Token = Token(usize::MAX);

    /// The token of listener number `index` (below [`Token::MAX_DOORS`]).
    pub const fn door(index: usize) -> Token {
        assert!(
            index < Token::MAX_DOORS,
            "more listeners than Token::MAX_DOORS"
        );
        Token(usize::MAX - 1 - index)
    }

    /// Which listener this token names, if it is a door's.
    pub const fn door_index(self) -> Option<usize> {
        if self.0 == usize::MAX {
            return None; // the waker's
        }
        let index = usize::MAX - 1 - self.0;
        if index < Token::MAX_DOORS {
            Some(index)
        } else {
            None
        }
    }

    /// Whether this token is one of the reserved values, which no connection may use.
    pub const fn is_reserved(self) -> bool {
        self.0 >= usize::MAX - Token::MAX_DOORS
    }
}

/// The readiness a socket is registered for. Combine with `|`.
///
/// [`Interest::NONE`] is allowed: the socket stays registered but reports nothing (the engine uses
/// it to pause accepting).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Interest(u8);

impl Interest {
    /// No readiness: registered, but silent.
    pub const NONE: Interest = Interest(0);
    /// Readable: data, end of stream, an error, or (for a listener) a pending connection.
    pub const READABLE: Interest = Interest(1);
    /// Writable: send-buffer space, or an error.
    pub const WRITABLE: Interest = Interest(2);

    /// Whether readable readiness is requested.
    pub const fn is_readable(self) -> bool {
        self.0 & Self::READABLE.0 != 0
    }
    /// Whether writable readiness is requested.
    pub const fn is_writable(self) -> bool {
        self.0 & Self::WRITABLE.0 != 0
    }
}

impl BitOr for Interest {
    type Output = Interest;
    fn bitor(self, rhs: Interest) -> Interest {
        Interest(self.0 | rhs.0)
    }
}

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.is_readable(), self.is_writable()) {
            (false, false) => f.write_str("NONE"),
            (true, false) => f.write_str("READABLE"),
            (false, true) => f.write_str("WRITABLE"),
            (true, true) => f.write_str("READABLE | WRITABLE"),
        }
    }
}

/// One readiness report. A hint, not a promise: the operation may still return `WouldBlock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Which registration this is about.
    pub token: Token,
    /// The socket is (probably) readable, at end of stream, or in error.
    pub readable: bool,
    /// The socket is (probably) writable, or in error.
    pub writable: bool,
}

impl Event {
    /// Whether a read (or accept) is worth trying.
    pub const fn is_readable(&self) -> bool {
        self.readable
    }
    /// Whether a write is worth trying.
    pub const fn is_writable(&self) -> bool {
        self.writable
    }
}

/// The events one [`Backend::wait`] reported. Allocated once and reused for every wait.
#[derive(Debug, Default)]
pub struct Events {
    events: Vec<Event>,
}

impl Events {
    /// An empty list with room for `capacity` events before it reallocates.
    pub fn with_capacity(capacity: usize) -> Self {
        Events {
            events: Vec::with_capacity(capacity),
        }
    }
    /// Removes every event, keeping the allocation. [`Backend::wait`] calls this first.
    pub fn clear(&mut self) {
        self.events.clear();
    }
    /// Appends one event (for backends).
    pub fn push(&mut self, event: Event) {
        self.events.push(event);
    }
    /// The events, in the order the backend reported them.
    pub fn iter(&self) -> std::slice::Iter<'_, Event> {
        self.events.iter()
    }
    /// How many events there are.
    pub fn len(&self) -> usize {
        self.events.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.events.iter()
    }
}

/// A handle that interrupts a [`Backend::wait`] from another thread (a signal handler's thread,
/// a test). Waking when no one waits makes the next wait return at once.
pub trait Wake: Send + Sync + 'static {
    /// Interrupts the current or next wait.
    ///
    /// # Errors
    ///
    /// Only a failure of the underlying OS mechanism. A wake that is already pending is not an
    /// error.
    fn wake(&self) -> io::Result<()>;
}

/// A readiness-notification mechanism: epoll, kqueue, IOCP, `select`...
///
/// # Contract
///
/// - **Level-triggered.** A registered interest stays armed until [`reregister`] changes it: while
///   a socket stays readable, every [`wait`] reports it. A backend whose OS mechanism is one-shot
///   or edge-triggered re-arms internally; the engine never knows.
/// - **Events are hints.** Spurious readiness is allowed, and the engine treats `WouldBlock` as
///   "not now". [`wait`] may return with no events (timeout, wake-up, or for no reason at all).
///   Events may name a token that was deregistered earlier in the same turn; the engine ignores
///   or tolerates them.
/// - **Deregister before close.** A socket is deregistered while it is still open, then closed.
///   The engine does this in exactly one place. A backend must stay memory-safe even if a caller
///   breaks this rule, though it may then report errors or stale events.
/// - **One waker.** [`waker`] returns a cloneable, thread-safe handle whose [`Wake::wake`] makes a
///   blocked [`wait`] return, and whose wake-ups are never reported as events.
/// - **Reserved tokens.** Door tokens ([`Token::door`], [`Token::LISTENER`]) may be registered;
///   [`Token::WAKER`] never is.
///
/// # Errors
///
/// Every method returns plain [`io::Error`]s from the OS. `register` of an already-registered
/// socket may return `AlreadyExists`; `reregister`/`deregister` of an unknown one may return
/// `NotFound`; a token or socket the backend cannot hold returns `InvalidInput`.
///
/// [`wait`]: Backend::wait
/// [`reregister`]: Backend::reregister
/// [`waker`]: Backend::waker
pub trait Backend {
    /// The cross-thread wake-up handle.
    type Waker: Wake + Clone;

    /// A short name for the log and `--version` (`"polling"`, `"select"`).
    fn name(&self) -> &'static str;

    /// The most sockets this backend can hold registered at once, the listener included, when it
    /// has a fixed limit (`select`'s `fd_set`); `None` when only memory and the OS's descriptor
    /// limit bound it (epoll, kqueue, IOCP).
    ///
    /// The engine never registers more than this. A backend may still refuse one particular
    /// socket it cannot hold (on Unix, a descriptor numbered `FD_SETSIZE` or above) with an
    /// `InvalidInput` error from [`register`](Backend::register); the engine treats that the same
    /// way, as the server being full.
    fn capacity(&self) -> Option<usize> {
        None
    }

    /// Starts reporting `interest` for `socket` under `token`.
    fn register(
        &mut self,
        socket: BorrowedSocket<'_>,
        token: Token,
        interest: Interest,
    ) -> io::Result<()>;

    /// Replaces the interest (and token) of a registered socket.
    fn reregister(
        &mut self,
        socket: BorrowedSocket<'_>,
        token: Token,
        interest: Interest,
    ) -> io::Result<()>;

    /// Stops reporting anything for `socket`. Call it before the socket is closed.
    fn deregister(&mut self, socket: BorrowedSocket<'_>) -> io::Result<()>;

    /// Clears `events`, then blocks until at least one registered socket is ready, `timeout`
    /// passes, or the waker fires, and fills `events`. Interruption by a signal (`EINTR`) is
    /// retried inside; an error returned from here means the backend itself is broken.
    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()>;

    /// A handle another thread uses to interrupt [`wait`](Backend::wait).
    fn waker(&self) -> Self::Waker;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_combines_and_prints() {
        let both = Interest::READABLE | Interest::WRITABLE;
        assert!(both.is_readable() && both.is_writable());
        assert!(!Interest::NONE.is_readable() && !Interest::NONE.is_writable());
        assert_eq!(format!("{both:?}"), "READABLE | WRITABLE");
        assert_eq!(format!("{:?}", Interest::NONE), "NONE");
    }

    #[test]
    fn reserved_tokens_are_recognised() {
        assert!(Token::LISTENER.is_reserved());
        assert!(Token::WAKER.is_reserved());
        assert!(!Token(0).is_reserved());
        assert!(Token::door(Token::MAX_DOORS - 1).is_reserved());
        assert!(!Token(usize::MAX - 1 - Token::MAX_DOORS).is_reserved());
        assert_eq!(Token::LISTENER.door_index(), Some(0));
        assert_eq!(Token::door(3).door_index(), Some(3));
        assert_eq!(Token::WAKER.door_index(), None);
        assert_eq!(Token(0).door_index(), None);
    }
}
