//! `select(2)` via libc (Linux, macOS, BSD).
//!
//! An `fd_set` is a fixed bitmap of `FD_SETSIZE` (1,024) bits indexed by descriptor number, and
//! `FD_SET` does no bounds check: a descriptor of 1,024 or more would write past the end of the
//! set. So the bound is checked once, at registration ([`check`]), and again inside the two
//! helpers that touch bits, which keeps each `unsafe` block's invariant local.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::ptr;
use std::time::Duration;

use server_core::BorrowedSocket;

use crate::Entry;

/// A socket's raw number: the descriptor.
pub(crate) type Raw = RawFd;

/// Descriptor numbers an `fd_set` has bits for: `0..FD_SET_BITS`.
const FD_SET_BITS: usize = libc::FD_SETSIZE;

/// Every descriptor number an `fd_set` can name, less the two of the waker's socket pair (created
/// by `SelectBackend::new`, so they are low numbers).
pub(crate) const MAX_SOCKETS: usize = FD_SET_BITS - 2;

/// The descriptor behind a borrowed socket.
pub(crate) fn raw(socket: BorrowedSocket<'_>) -> Raw {
    socket.as_raw_fd()
}

fn in_range(fd: RawFd) -> bool {
    usize::try_from(fd).is_ok_and(|fd| fd < FD_SET_BITS)
}

/// Refuses a descriptor that has no bit in an `fd_set`.
pub(crate) fn check(fd: Raw) -> io::Result<()> {
    if in_range(fd) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd} is beyond FD_SETSIZE ({FD_SET_BITS})"),
        ))
    }
}

/// An `fd_set` plus the highest descriptor in it, for `select`'s `nfds`.
pub(crate) struct FdSet {
    set: libc::fd_set,
    /// The highest descriptor inserted since the last `clear`, or -1.
    max: RawFd,
}

impl FdSet {
    pub(crate) fn new() -> FdSet {
        // SAFETY: `fd_set` is a plain array of integers, for which all zeroes is a valid value,
        // and all zeroes is the empty set (what `FD_ZERO` produces).
        let set = unsafe { std::mem::zeroed::<libc::fd_set>() };
        FdSet { set, max: -1 }
    }

    pub(crate) fn clear(&mut self) {
        // SAFETY: the pointer comes from a live, initialised `fd_set` we hold exclusively.
        unsafe { libc::FD_ZERO(&mut self.set) };
        self.max = -1;
    }

    pub(crate) fn insert(&mut self, fd: RawFd) {
        debug_assert!(in_range(fd), "descriptor {fd} was registered unchecked");
        if in_range(fd) {
            // SAFETY: `0 <= fd < FD_SETSIZE` was just checked, so the bit `FD_SET` sets lies
            // inside the set, which is live and held exclusively.
            unsafe { libc::FD_SET(fd, &mut self.set) };
            self.max = self.max.max(fd);
        }
    }

    pub(crate) fn contains(&self, fd: RawFd) -> bool {
        // SAFETY: `FD_ISSET` only runs for `0 <= fd < FD_SETSIZE` (the `&&` short-circuits), so
        // the bit it reads lies inside the set, which is live and initialised.
        in_range(fd) && unsafe { libc::FD_ISSET(fd, &self.set) }
    }

    /// Calls `f` with the index of each registration whose descriptor is set. A bitmap cannot
    /// be listed, so this tests every registration's bit: one linear pass.
    pub(crate) fn for_each_ready(
        &self,
        entries: &[Entry],
        _index: &HashMap<Raw, usize>,
        mut f: impl FnMut(usize),
    ) {
        for (i, entry) in entries.iter().enumerate() {
            if self.contains(entry.raw) {
                f(i);
            }
        }
    }
}

/// One `select(2)` over a read and a write set; `None` blocks. Returns how many bits are set.
pub(crate) fn select(
    read: &mut FdSet,
    write: &mut FdSet,
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let nfds = read.max.max(write.max) + 1;
    let mut timeval = timeout.map(|timeout| {
        let (secs, micros) = super::round_up_to_micros(timeout);
        libc::timeval {
            tv_sec: secs.try_into().unwrap_or(libc::time_t::MAX),
            // Below 1,000,000, which every `suseconds_t` (i32 or i64, by platform) holds.
            tv_usec: micros as _,
        }
    });
    let timeval_ptr = timeval
        .as_mut()
        .map_or(ptr::null_mut(), |tv| tv as *mut libc::timeval);
    // SAFETY: both sets are live, initialised `fd_set`s borrowed exclusively for the call, and
    // only hold descriptors below `FD_SETSIZE`, so `nfds <= FD_SETSIZE` and the kernel reads and
    // writes no bit outside them. The except set is null, which select(2) allows. The timeout
    // is null (block) or points at a live `timeval` (Linux may write the time left into it).
    let n = unsafe {
        libc::select(
            nfds,
            &mut read.set,
            &mut write.set,
            ptr::null_mut(),
            timeval_ptr,
        )
    };
    // A negative count is -1 with `errno` set; EINTR becomes `ErrorKind::Interrupted`.
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// The waker's stream: one end of a Unix socket pair.
pub(crate) type WakeStream = UnixStream;

/// A connected, non-blocking socket pair for the waker: (read end, write end).
pub(crate) fn wake_pair() -> io::Result<(WakeStream, WakeStream)> {
    let (read, write) = UnixStream::pair()?;
    read.set_nonblocking(true)?;
    write.set_nonblocking(true)?;
    Ok((read, write))
}
