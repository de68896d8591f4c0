//! What only the select backend has, against real loopback sockets: its fixed sets (FD_SETSIZE
//! on Unix, its own Winsock set size on Windows), its capacity bound, its error messages, one
//! event per socket, and its waker's socket being drained.
//!
//! The `Backend` contract itself (readiness, interest, reregister, deregister, waking, timeouts,
//! error kinds, capacity enforcement) is checked for this backend and every other one by the
//! contract suite, `tests/tests/contract.rs` in the relay-tests crate. `timeval` rounding is a
//! unit test in `src/sys/mod.rs`.
//!
//! Every wait is bounded; nothing sleeps.

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use backend_select::SelectBackend;
use server_core::{AsBorrowedSocket, Backend, Event, Events, Interest, Token, Wake};

/// Long enough that a correct backend never hits it, short enough that a broken one fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// A connected pair: (client side, server side).
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

fn backend() -> SelectBackend {
    SelectBackend::new().unwrap()
}

/// One wait bounded by `timeout`; the events it reported.
fn wait_once(backend: &mut SelectBackend, timeout: Duration) -> Vec<Event> {
    let mut events = Events::with_capacity(16);
    backend.wait(&mut events, Some(timeout)).unwrap();
    events.iter().copied().collect()
}

/// A socket in both the read and the write set is reported once, with both readinesses (the
/// contract allows one event per readiness; this backend merges them).
#[test]
fn one_event_per_socket_for_both_readinesses() {
    let mut backend = backend();
    let (mut client, server) = pair();
    client.write_all(b"x").unwrap();
    // Wait (bounded) until the byte is in the receive buffer, so one wait sees both.
    server.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(server.peek(&mut [0u8; 1]).unwrap(), 1);
    backend
        .register(
            server.borrowed(),
            Token(3),
            Interest::READABLE | Interest::WRITABLE,
        )
        .unwrap();
    let events = wait_once(&mut backend, PATIENCE);
    assert_eq!(
        events,
        [Event {
            token: Token(3),
            readable: true,
            writable: true
        }]
    );
}

/// The refusal of a full backend names the bound, for the server's log.
#[test]
fn a_full_backend_says_how_many_it_holds() {
    let mut backend = SelectBackend::with_capacity(2).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (_a_client, a) = pair();
    let (_b_client, b) = pair();
    backend
        .register(listener.borrowed(), Token::LISTENER, Interest::READABLE)
        .unwrap();
    backend
        .register(a.borrowed(), Token(0), Interest::READABLE)
        .unwrap();
    let err = backend
        .register(b.borrowed(), Token(1), Interest::READABLE)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(err.to_string(), "select backend is full: 2 sockets");
}

/// `with_capacity` never goes beyond what the platform's sets hold, and `Debug` shows the bound.
#[test]
fn capacity_is_clamped_to_the_platform() {
    let full = backend().capacity().unwrap();
    let clamped = SelectBackend::with_capacity(usize::MAX).unwrap();
    assert_eq!(clamped.capacity(), Some(full));
    assert_eq!(clamped.name(), "select");
    let debug = format!("{clamped:?}");
    assert!(
        debug.contains("SelectBackend") && debug.contains(&full.to_string()),
        "{debug}"
    );
}

/// The waker is a socket pair whose bytes the backend drains when a wait returns: after the
/// wake-ups and one wait, the next wait runs to its timeout instead of returning at once for
/// bytes left behind, which would make the event loop spin.
///
/// This is the one check of a duration in the file, and only a lower bound with a wide margin:
/// load can only make a wait longer.
#[test]
fn the_waker_socket_is_drained() {
    const TIMEOUT: Duration = Duration::from_millis(100);
    // On Unix the waker is a socket pair: every byte written is in the reader's buffer at once,
    // so far more wakes than the buffer holds (the rest are `WouldBlock`) must all be drained.
    // On Windows it is a loopback TCP connection, where bytes written may still be on their
    // way when the backend drains; one wake is what is sure to have arrived once a wait saw it.
    let wakes = if cfg!(unix) { 20_000 } else { 1 };
    let mut backend = backend();
    let waker = backend.waker();
    for _ in 0..wakes {
        waker.wake().unwrap();
    }
    // Returns at once (the wake is pending); bounded all the same.
    assert_eq!(wait_once(&mut backend, PATIENCE), []);
    let start = Instant::now();
    assert_eq!(wait_once(&mut backend, TIMEOUT), []);
    let waited = start.elapsed();
    assert!(
        waited >= TIMEOUT / 2,
        "the wait after the wake-up returned after {waited:?}: wake bytes left undrained"
    );
}

/// Winsock's `fd_set` holds 64 sockets by default, and its `FD_SET` drops the rest silently;
/// this backend's own set must hold its full capacity, all reported in one wait, and refuse one
/// more.
#[test]
#[cfg_attr(
    unix,
    ignore = "Winsock only: on Unix, descriptor numbers (FD_SETSIZE) bound select, not how many \
              sockets a set holds; see descriptor_beyond_fd_setsize_is_refused"
)]
fn winsock_set_holds_its_full_capacity() {
    #[cfg(unix)]
    panic!("Winsock only; run on Windows");
    #[cfg(windows)]
    windows::winsock_set_holds_its_full_capacity();
}

#[cfg(windows)]
mod windows {
    use std::io;
    use std::net::{TcpListener, TcpStream};

    use server_core::{AsBorrowedSocket, Backend, Interest, Token};

    use super::{backend, wait_once, PATIENCE};

    pub(super) fn winsock_set_holds_its_full_capacity() {
        let mut backend = backend();
        let capacity = backend.capacity().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        backend
            .register(listener.borrowed(), Token::LISTENER, Interest::READABLE)
            .unwrap();
        let addr = listener.local_addr().unwrap();
        // Clients and their accepted ends, kept open: the listener plus capacity - 1 sockets.
        let mut open = Vec::new();
        for i in 0..capacity {
            let client = TcpStream::connect(addr).unwrap();
            let (server, _) = listener.accept().unwrap();
            let result = backend.register(server.borrowed(), Token(i), Interest::WRITABLE);
            if i + 1 < capacity {
                result.unwrap_or_else(|e| panic!("socket {i} of {capacity}: {e}"));
            } else {
                assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidInput);
            }
            open.push((client, server));
        }
        let events = wait_once(&mut backend, PATIENCE);
        let mut tokens: Vec<usize> = events.iter().map(|event| event.token.0).collect();
        tokens.sort_unstable();
        let expected: Vec<usize> = (0..capacity - 1).collect();
        assert_eq!(tokens, expected, "{} events", events.len());
    }
}

/// On Unix an `fd_set` is a bitmap of `FD_SETSIZE` descriptor numbers, and a socket numbered past
/// it must be refused, not written past the set.
#[test]
#[cfg_attr(
    windows,
    ignore = "Unix only: Winsock sets hold socket handles, not descriptor numbers, so there is no \
              FD_SETSIZE number to exceed; see winsock_set_holds_its_full_capacity"
)]
fn descriptor_beyond_fd_setsize_is_refused() {
    #[cfg(unix)]
    unix::descriptor_beyond_fd_setsize_is_refused();
    #[cfg(windows)]
    panic!("Unix only; run on Unix");
}

#[cfg(unix)]
mod unix {
    use std::io;
    use std::net::TcpStream;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use server_core::{AsBorrowedSocket, Backend, Interest, Token};

    use super::{backend, pair};

    /// The descriptor number the test asks for, well past `FD_SETSIZE`.
    const HIGH_FD: libc::c_int = 1100;

    /// Raises the soft descriptor limit so that `HIGH_FD` can be opened, or fails the test
    /// saying why: the check must run, not be skipped.
    fn raise_nofile_limit() {
        let wanted = u64::try_from(HIGH_FD).unwrap() + 1;
        let soft = rlimit::increase_nofile_limit(wanted)
            .unwrap_or_else(|e| panic!("raising RLIMIT_NOFILE to {wanted}: {e}"));
        assert!(
            soft >= wanted,
            "this test needs descriptor {HIGH_FD}, but the hard RLIMIT_NOFILE only allows \
             {soft}: raise it (ulimit -Hn) to at least {wanted}"
        );
    }

    /// A duplicate of `stream` numbered `HIGH_FD` or above.
    fn dup_high(stream: &TcpStream) -> io::Result<TcpStream> {
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor we hold open (borrowed from `stream`) creates a
        // new descriptor and touches no memory.
        let fd = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, HIGH_FD) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created by fcntl, is open, and nothing else owns it.
        Ok(TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(super) fn descriptor_beyond_fd_setsize_is_refused() {
        raise_nofile_limit();
        let mut backend = backend();
        let (_client, server) = pair();
        let high = dup_high(&server).unwrap();
        let fd = high.as_raw_fd();
        assert!(fd >= HIGH_FD, "{fd}");
        let err = backend
            .register(high.borrowed(), Token(1), Interest::READABLE)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            err.to_string(),
            format!("descriptor {fd} is beyond FD_SETSIZE (1024)")
        );
        // The original, low descriptor of the same socket is fine.
        backend
            .register(server.borrowed(), Token(1), Interest::READABLE)
            .unwrap();
    }
}
