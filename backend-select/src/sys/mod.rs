//! The platform half of the backend: `select(2)` via libc on Unix, Winsock `select` on Windows.
//!
//! # Required items
//!
//! Each OS file provides the same small inherent API, which `lib.rs` uses and nothing else:
//!
//! - `type Raw`: a socket's raw number (`RawFd`, `SOCKET`), the key of the registration map.
//! - `fn raw(BorrowedSocket<'_>) -> Raw`.
//! - `const MAX_SOCKETS: usize`: the most sockets one backend can hold, the waker excluded.
//! - `fn check(Raw) -> io::Result<()>`: refuses, with `InvalidInput`, a socket the set type
//!   cannot represent at all (on Unix a descriptor numbered `FD_SETSIZE` or above).
//! - `struct FdSet` with `new`, `clear`, `insert` (of a checked socket, at most
//!   `MAX_SOCKETS + 1` per turn), `contains`, and `for_each_ready`, which names the registration
//!   index of each ready socket in the set after a `select`.
//! - `fn select(&mut FdSet, &mut FdSet, Option<Duration>) -> io::Result<usize>`: one call,
//!   read and write sets, no except set; `None` blocks. `EINTR` comes back as `Interrupted`.
//! - `type WakeStream` and `fn wake_pair() -> io::Result<(WakeStream, WakeStream)>`: a
//!   connected, non-blocking stream pair for the waker, `&WakeStream: Read + Write`.

use std::time::Duration;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use self::unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use self::windows::*;

/// Splits a timeout into whole seconds and microseconds for a `timeval`, rounding *up*: a
/// 1 ns timeout must not turn into a zero-timeout poll that makes the caller spin (mio's epoll
/// selector rounds its milliseconds up for the same reason).
pub(crate) fn round_up_to_micros(timeout: Duration) -> (u64, u32) {
    let micros = timeout.subsec_nanos().div_ceil(1_000);
    if micros == 1_000_000 {
        (timeout.as_secs().saturating_add(1), 0)
    } else {
        (timeout.as_secs(), micros)
    }
}

#[cfg(test)]
mod tests {
    use super::round_up_to_micros;
    use std::time::Duration;

    #[test]
    fn timeouts_round_up_to_whole_microseconds() {
        assert_eq!(round_up_to_micros(Duration::ZERO), (0, 0));
        assert_eq!(round_up_to_micros(Duration::from_nanos(1)), (0, 1));
        assert_eq!(round_up_to_micros(Duration::from_nanos(1_001)), (0, 2));
        assert_eq!(round_up_to_micros(Duration::from_micros(7)), (0, 7));
        assert_eq!(round_up_to_micros(Duration::new(2, 999_999_001)), (3, 0));
        assert_eq!(
            round_up_to_micros(Duration::new(5, 250_000_000)),
            (5, 250_000)
        );
    }
}
