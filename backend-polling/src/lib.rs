//! [`Backend`] over the `polling` crate: epoll (Linux, Android), kqueue (macOS, BSD), event ports
//! (illumos, Solaris) and IOCP/AFD (Windows), all in level-triggered mode.
//!
//! No `#[cfg]` lives here: `BorrowedSocket` is `BorrowedFd` or Windows' `BorrowedSocket`, and
//! `polling` accepts either.
//!
//! # Errors
//!
//! `register` returns `AlreadyExists` for a socket already registered and `InvalidInput` for
//! [`Token::WAKER`]; `reregister` and `deregister` return `NotFound` for a socket that is not
//! registered, on every platform. `polling` alone does not give the last one everywhere: its
//! IOCP `delete` (polling 3.11, `src/iocp/mod.rs`) returns `Ok` for an unknown socket, so this
//! backend keeps the set of sockets it registered and answers `NotFound` itself.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use polling::{PollMode, Poller};
use server_core::{
    AsBorrowedSocket, Backend, BorrowedSocket, Event, Events, Interest, Token, Wake,
};

/// How many OS events one wait collects at most; more stay queued for the next wait.
const EVENT_CAPACITY: usize = 1024;

/// Readiness through `polling::Poller`.
pub struct PollingBackend {
    poller: Arc<Poller>,
    events: polling::Events,
    /// The raw numbers of the sockets registered now, so that `deregister` of an unknown socket
    /// is `NotFound` on every platform (see the crate docs).
    registered: HashSet<u64>,
}

impl PollingBackend {
    /// Creates the OS poller (an epoll instance, a kqueue, an I/O completion port...).
    ///
    /// # Errors
    ///
    /// The OS refused to create it (out of descriptors or memory).
    pub fn new() -> io::Result<Self> {
        let capacity = NonZeroUsize::new(EVENT_CAPACITY).expect("capacity is non-zero");
        Ok(PollingBackend {
            poller: Arc::new(Poller::new()?),
            events: polling::Events::with_capacity(capacity),
            registered: HashSet::new(),
        })
    }
}

impl fmt::Debug for PollingBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollingBackend").finish_non_exhaustive()
    }
}

fn interest_event(token: Token, interest: Interest) -> polling::Event {
    polling::Event::new(token.0, interest.is_readable(), interest.is_writable())
}

impl Backend for PollingBackend {
    type Waker = PollingWaker;

    fn name(&self) -> &'static str {
        "polling"
    }

    fn register(
        &mut self,
        socket: BorrowedSocket<'_>,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        if token == Token::WAKER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the waker token is reserved",
            ));
        }
        // Level mode, because the engine's contract is level-triggered: plain `Poller::add` is
        // oneshot and would report one event per socket and then go quiet.
        //
        // SAFETY: `Poller::add_with_mode` requires the socket to be deleted from this poller
        // before it is closed. The borrow proves it is open now. The `Backend` contract obliges
        // the caller to call `deregister` (our `Poller::delete`) while the socket is still open,
        // and server-core does so in the single place it closes connections and before it drops
        // the listener. Were a caller to break that, `polling` would at worst report stale events
        // or `AlreadyExists`/`NotFound` for a reused descriptor number, which the engine already
        // tolerates as spurious readiness.
        unsafe {
            self.poller
                .add_with_mode(&socket, interest_event(token, interest), PollMode::Level)?;
        }
        // A number already in the set can only be a socket that was closed without being
        // deregistered (the OS forgot it, or `add` would have said `AlreadyExists`); the new
        // socket with that number takes its place.
        self.registered.insert(socket.raw_number());
        Ok(())
    }

    fn reregister(
        &mut self,
        socket: BorrowedSocket<'_>,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        // `modify` without a mode would switch the socket back to oneshot.
        self.poller
            .modify_with_mode(socket, interest_event(token, interest), PollMode::Level)
    }

    fn deregister(&mut self, socket: BorrowedSocket<'_>) -> io::Result<()> {
        let raw = socket.raw_number();
        if !self.registered.remove(&raw) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("socket {raw} is not registered"),
            ));
        }
        self.poller.delete(socket)
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        // `polling::Events` appends; clear it so last turn's events are not reported again.
        self.events.clear();
        // `Poller::wait` retries EINTR itself and never reports its notify key.
        self.poller.wait(&mut self.events, timeout)?;
        for event in self.events.iter() {
            events.push(Event {
                token: Token(event.key),
                readable: event.readable,
                writable: event.writable,
            });
        }
        Ok(())
    }

    fn waker(&self) -> PollingWaker {
        PollingWaker(Arc::clone(&self.poller))
    }
}

/// Interrupts [`PollingBackend`]'s wait from any thread, through `Poller::notify`.
#[derive(Clone)]
pub struct PollingWaker(Arc<Poller>);

impl fmt::Debug for PollingWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollingWaker").finish_non_exhaustive()
    }
}

impl Wake for PollingWaker {
    fn wake(&self) -> io::Result<()> {
        // A notification that is already pending makes this a no-op, not an error.
        self.0.notify()
    }
}
