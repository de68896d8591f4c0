//! [`Backend`] over `select()`: POSIX `select(2)` via libc on Unix (Linux, macOS, BSD), Winsock
//! `select` via windows-sys on Windows.
//!
//! `select` is the portable baseline the seed C server was written against; this backend keeps
//! it, minus its memory-safety holes. It rebuilds its sets from the registrations on every wait
//! (a linear scan, no allocation), so it suits a room of hundreds of clients, not tens of
//! thousands; `backend-polling` is the one for scale.
//!
//! # Limits
//!
//! `select`'s sets have a fixed size, so this backend has a [`capacity`](Backend::capacity):
//!
//! - **Unix:** an `fd_set` is a bitmap of `FD_SETSIZE` (1,024) descriptor numbers, and a
//!   descriptor numbered 1,024 or above cannot be put in one at all. [`register`] refuses such a
//!   socket with `InvalidInput` ("descriptor 1030 is beyond FD_SETSIZE (1024)") instead of
//!   writing past the set, as ncat and the C seed do. Capacity is 1,022 (the waker's socket pair
//!   holds two numbers). Stdin, stdout and stderr hold three more, so a server gets about 1,018
//!   clients plus its listener before descriptors run past 1,023.
//! - **Windows:** an `fd_set` is a counted array of socket handles whose length the program
//!   chooses (Winsock's default is 64). This backend uses its own set type with 1,025 slots:
//!   capacity 1,024 sockets, the listener included, plus the waker.
//!
//! [`SelectBackend::with_capacity`] lowers the limit. Past it, [`register`] returns
//! `InvalidInput` ("select backend is full: N sockets"), which the engine treats as the server
//! being full.
//!
//! # Errors
//!
//! [`register`] returns `AlreadyExists` for a socket already registered and `InvalidInput` for
//! [`Token::WAKER`], a full backend, or (Unix) a descriptor beyond `FD_SETSIZE`;
//! [`reregister`] and [`deregister`] return `NotFound` for a socket that is not registered.
//! [`wait`] retries `EINTR` itself and returns any other `select` error as is.
//!
//! # Layout
//!
//! This file holds everything OS-neutral: the registrations (a dense `Vec` plus a map from raw
//! socket to index), the wait loop and the waker. `sys` (`sys/unix.rs`, `sys/windows.rs`) holds
//! the set types, the `select` call and the waker's socket pair; its contract is written at the
//! top of `sys/mod.rs`.
//!
//! [`register`]: Backend::register
//! [`reregister`]: Backend::reregister
//! [`deregister`]: Backend::deregister
//! [`wait`]: Backend::wait

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use server_core::{
    AsBorrowedSocket, Backend, BorrowedSocket, Event, Events, Interest, Token, Wake,
};

mod sys;

/// The longest single `select`. Longer timeouts are cut to this (a wait may return with no
/// events). macOS and the BSDs reject a `timeval` above 100,000,000 s with `EINVAL`, and
/// Windows' `tv_sec` is 32 bits; 1,000,000 s (11.5 days) is far inside both.
const LONGEST_WAIT: Duration = Duration::from_secs(1_000_000);

/// `Entry::ready` bits, set while collecting one wait's readiness.
const READY_READ: u8 = 1;
const READY_WRITE: u8 = 2;

/// One registration.
pub(crate) struct Entry {
    /// The socket's raw number; the key of `SelectBackend::index`.
    pub(crate) raw: sys::Raw,
    token: Token,
    interest: Interest,
    /// `READY_*` bits found for this entry in the current wait; zero between waits.
    ready: Cell<u8>,
}

/// Readiness through `select()`, with a fixed capacity (see the [crate docs](crate)).
pub struct SelectBackend {
    /// Registrations, dense, so building the sets is one linear scan.
    entries: Vec<Entry>,
    /// Raw socket → position in `entries`. Always holds exactly one key per entry.
    index: HashMap<sys::Raw, usize>,
    /// The most registrations allowed; at most `sys::MAX_SOCKETS`.
    capacity: usize,
    read_set: sys::FdSet,
    write_set: sys::FdSet,
    /// Scratch for one wait: positions in `entries` found ready.
    ready: Vec<usize>,
    /// The waker's read end, in the read set on every wait, drained and never reported.
    wake_read: sys::WakeStream,
    wake_read_raw: sys::Raw,
    /// The waker's write end, shared with every [`SelectWaker`].
    wake_write: Arc<sys::WakeStream>,
}

impl SelectBackend {
    /// A backend with the platform's full capacity (see the [crate docs](crate)).
    ///
    /// # Errors
    ///
    /// Creating the waker's socket pair failed (out of descriptors), or on Unix its read end
    /// got a descriptor beyond `FD_SETSIZE`.
    pub fn new() -> io::Result<Self> {
        SelectBackend::with_capacity(sys::MAX_SOCKETS)
    }

    /// A backend that holds at most `capacity` sockets (the listener included), clamped to the
    /// platform's maximum. Registrations and scratch space for that many are allocated here,
    /// so waits do not allocate.
    ///
    /// # Errors
    ///
    /// As [`SelectBackend::new`].
    pub fn with_capacity(capacity: usize) -> io::Result<Self> {
        let capacity = capacity.min(sys::MAX_SOCKETS);
        let (wake_read, wake_write) = sys::wake_pair()?;
        let wake_read_raw = sys::raw(wake_read.borrowed());
        sys::check(wake_read_raw)?;
        Ok(SelectBackend {
            entries: Vec::with_capacity(capacity),
            index: HashMap::with_capacity(capacity),
            capacity,
            read_set: sys::FdSet::new(),
            write_set: sys::FdSet::new(),
            ready: Vec::with_capacity(capacity),
            wake_read,
            wake_read_raw,
            wake_write: Arc::new(wake_write),
        })
    }

    fn position(&self, raw: sys::Raw) -> io::Result<usize> {
        self.index.get(&raw).copied().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("socket {raw} is not registered"),
            )
        })
    }

    /// Puts the waker and every interested registration into fresh sets.
    fn fill_sets(&mut self) {
        self.read_set.clear();
        self.write_set.clear();
        self.read_set.insert(self.wake_read_raw);
        for entry in &self.entries {
            if entry.interest.is_readable() {
                self.read_set.insert(entry.raw);
            }
            if entry.interest.is_writable() {
                self.write_set.insert(entry.raw);
            }
        }
    }

    /// Empties the waker's socket; its bytes only ever mean "wake up".
    fn drain_waker(&self) {
        let mut buf = [0u8; 64];
        loop {
            match (&self.wake_read).read(&mut buf) {
                // Zero is end of stream, impossible while we hold the write end; stop anyway.
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(error = %e, "select backend: draining the waker failed");
                    break;
                }
            }
        }
    }

    /// Turns the sets `select` left behind into one event per ready registration.
    fn collect(&mut self, events: &mut Events) {
        let entries = &self.entries;
        let ready = &mut self.ready;
        ready.clear();
        let mut mark = |i: usize, bit: u8| {
            let old = entries[i].ready.get();
            if old == 0 {
                ready.push(i);
            }
            entries[i].ready.set(old | bit);
        };
        self.read_set
            .for_each_ready(entries, &self.index, |i| mark(i, READY_READ));
        self.write_set
            .for_each_ready(entries, &self.index, |i| mark(i, READY_WRITE));
        for &i in ready.iter() {
            let entry = &entries[i];
            let bits = entry.ready.replace(0);
            events.push(Event {
                token: entry.token,
                readable: bits & READY_READ != 0,
                writable: bits & READY_WRITE != 0,
            });
        }
    }
}

fn reject_waker_token(token: Token) -> io::Result<()> {
    if token == Token::WAKER {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the waker token is reserved",
        ))
    } else {
        Ok(())
    }
}

impl fmt::Debug for SelectBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectBackend")
            .field("registrations", &self.entries.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Backend for SelectBackend {
    type Waker = SelectWaker;

    fn name(&self) -> &'static str {
        "select"
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.capacity)
    }

    fn register(
        &mut self,
        socket: BorrowedSocket<'_>,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        reject_waker_token(token)?;
        let raw = sys::raw(socket);
        if self.index.contains_key(&raw) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("socket {raw} is already registered"),
            ));
        }
        if self.entries.len() >= self.capacity {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("select backend is full: {} sockets", self.capacity),
            ));
        }
        sys::check(raw)?;
        tracing::trace!(socket = raw, ?token, ?interest, "select: register");
        self.index.insert(raw, self.entries.len());
        self.entries.push(Entry {
            raw,
            token,
            interest,
            ready: Cell::new(0),
        });
        Ok(())
    }

    fn reregister(
        &mut self,
        socket: BorrowedSocket<'_>,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        reject_waker_token(token)?;
        let raw = sys::raw(socket);
        let i = self.position(raw)?;
        tracing::trace!(socket = raw, ?token, ?interest, "select: reregister");
        let entry = &mut self.entries[i];
        entry.token = token;
        entry.interest = interest;
        Ok(())
    }

    fn deregister(&mut self, socket: BorrowedSocket<'_>) -> io::Result<()> {
        let raw = sys::raw(socket);
        let i = self.position(raw)?;
        tracing::trace!(socket = raw, "select: deregister");
        self.index.remove(&raw);
        self.entries.swap_remove(i);
        // The last entry moved into the hole; point its key at its new place.
        if let Some(moved) = self.entries.get(i) {
            self.index.insert(moved.raw, i);
        }
        Ok(())
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        let timeout = timeout.map(|t| t.min(LONGEST_WAIT));
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut remaining = timeout;
        let ready = loop {
            // `select` overwrites its sets, so every attempt starts from fresh ones.
            self.fill_sets();
            match sys::select(&mut self.read_set, &mut self.write_set, remaining) {
                Ok(n) => break n,
                // A signal interrupted the wait: go on waiting for what is left of the timeout.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                }
                Err(e) => return Err(e),
            }
        };
        if ready == 0 {
            return Ok(());
        }
        if self.read_set.contains(self.wake_read_raw) {
            self.drain_waker();
        }
        self.collect(events);
        tracing::trace!(events = events.len(), "select: wait returned");
        Ok(())
    }

    fn waker(&self) -> SelectWaker {
        SelectWaker(Arc::clone(&self.wake_write))
    }
}

/// Interrupts [`SelectBackend`]'s wait from any thread by writing a byte to the waker's socket,
/// whose other end is in the read set of every wait.
#[derive(Clone)]
pub struct SelectWaker(Arc<sys::WakeStream>);

impl fmt::Debug for SelectWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectWaker").finish_non_exhaustive()
    }
}

impl Wake for SelectWaker {
    fn wake(&self) -> io::Result<()> {
        loop {
            match (&*self.0).write(&[1]) {
                Ok(_) => return Ok(()),
                // The socket buffer is full of earlier wakes the backend has not drained yet:
                // a wake is already pending (mio's pipe waker reasons the same way).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
