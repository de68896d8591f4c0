//! The select backend against real loopback sockets. Every wait is bounded, nothing sleeps.

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use backend_select::SelectBackend;
use server_core::{AsBorrowedSocket, Backend, Event, Events, Interest, Token, Wake};

/// Long enough that a correct backend never hits it, short enough that a broken one fails.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long to look for an event that must not come.
const QUIET: Duration = Duration::from_millis(50);

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

/// Waits once and returns the event for `token`, if any.
fn wait_for(backend: &mut SelectBackend, token: Token, timeout: Duration) -> Option<Event> {
    let mut events = Events::with_capacity(8);
    backend.wait(&mut events, Some(timeout)).unwrap();
    events.iter().copied().find(|event| event.token == token)
}

#[test]
fn readable_only_after_the_peer_writes() {
    let mut backend = backend();
    let (mut client, server) = pair();
    backend
        .register(server.borrowed(), Token(7), Interest::READABLE)
        .unwrap();
    assert_eq!(wait_for(&mut backend, Token(7), QUIET), None);

    client.write_all(b"hi").unwrap();
    let event = wait_for(&mut backend, Token(7), PATIENCE).expect("readable after a write");
    assert!(event.is_readable() && !event.is_writable(), "{event:?}");
    // Level-triggered: still unread, so still reported.
    let again = wait_for(&mut backend, Token(7), PATIENCE).expect("still readable");
    assert!(again.is_readable());
}

#[test]
fn writable_reported_at_once() {
    let mut backend = backend();
    let (_client, server) = pair();
    backend
        .register(server.borrowed(), Token(1), Interest::WRITABLE)
        .unwrap();
    let event = wait_for(&mut backend, Token(1), PATIENCE).expect("writable");
    assert!(event.is_writable() && !event.is_readable(), "{event:?}");
}

#[test]
fn both_interests_give_one_event() {
    let mut backend = backend();
    let (mut client, server) = pair();
    client.write_all(b"x").unwrap();
    backend
        .register(
            server.borrowed(),
            Token(3),
            Interest::READABLE | Interest::WRITABLE,
        )
        .unwrap();
    let mut events = Events::with_capacity(4);
    let start = Instant::now();
    // Writable is immediate; readable follows once the byte has crossed loopback.
    loop {
        backend.wait(&mut events, Some(PATIENCE)).unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        let event = events.iter().next().unwrap();
        assert_eq!(event.token, Token(3));
        if event.is_readable() && event.is_writable() {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "never readable and writable");
    }
}

#[test]
fn interest_none_reports_nothing() {
    let mut backend = backend();
    let (mut client, server) = pair();
    backend
        .register(server.borrowed(), Token(2), Interest::NONE)
        .unwrap();
    client.write_all(b"ignored").unwrap();
    let mut events = Events::with_capacity(4);
    backend.wait(&mut events, Some(QUIET)).unwrap();
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn reregister_changes_interest_and_token() {
    let mut backend = backend();
    let (_client, server) = pair();
    backend
        .register(server.borrowed(), Token(1), Interest::NONE)
        .unwrap();
    assert_eq!(wait_for(&mut backend, Token(1), QUIET), None);

    backend
        .reregister(server.borrowed(), Token(9), Interest::WRITABLE)
        .unwrap();
    let event = wait_for(&mut backend, Token(9), PATIENCE).expect("writable after reregister");
    assert!(event.is_writable());

    backend
        .reregister(server.borrowed(), Token(9), Interest::NONE)
        .unwrap();
    assert_eq!(wait_for(&mut backend, Token(9), QUIET), None);
}

#[test]
fn deregister_stops_reports_and_keeps_the_others() {
    let mut backend = backend();
    let (_a_client, a) = pair();
    let (_b_client, b) = pair();
    let (_c_client, c) = pair();
    for (socket, token) in [(&a, Token(0)), (&b, Token(1)), (&c, Token(2))] {
        backend
            .register(socket.borrowed(), token, Interest::WRITABLE)
            .unwrap();
    }
    // Removing the first entry moves the last into its place; both survivors must still report.
    backend.deregister(a.borrowed()).unwrap();
    let mut events = Events::with_capacity(4);
    backend.wait(&mut events, Some(PATIENCE)).unwrap();
    let mut tokens: Vec<Token> = events.iter().map(|event| event.token).collect();
    tokens.sort();
    assert_eq!(tokens, [Token(1), Token(2)]);

    backend.deregister(c.borrowed()).unwrap();
    backend
        .reregister(c.borrowed(), Token(2), Interest::WRITABLE)
        .unwrap_err();
    let event = wait_for(&mut backend, Token(1), PATIENCE).expect("b still registered");
    assert!(event.is_writable());
    assert_eq!(
        backend.deregister(c.borrowed()).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
}

#[test]
fn listener_reports_a_pending_connection() {
    let mut backend = backend();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    backend
        .register(listener.borrowed(), Token::LISTENER, Interest::READABLE)
        .unwrap();
    assert_eq!(wait_for(&mut backend, Token::LISTENER, QUIET), None);
    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let event = wait_for(&mut backend, Token::LISTENER, PATIENCE).expect("pending accept");
    assert!(event.is_readable());
}

#[test]
fn waker_interrupts_a_blocking_wait_from_another_thread() {
    let mut backend = backend();
    let waker = backend.waker();
    let start = Instant::now();
    let thread = thread::spawn(move || waker.wake());
    let mut events = Events::with_capacity(4);
    // `None` would hang forever on a broken waker; the bound turns that into a failure.
    backend.wait(&mut events, Some(PATIENCE)).unwrap();
    assert!(start.elapsed() < PATIENCE / 2, "wait was not woken");
    assert!(events.is_empty(), "the wake-up was reported: {events:?}");
    thread.join().unwrap().unwrap();
    // Drained: the next wait sees nothing.
    backend.wait(&mut events, Some(QUIET)).unwrap();
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn waker_wakes_an_unbounded_wait() {
    let mut backend = backend();
    let waker = backend.waker();
    let (done, result) = mpsc::channel();
    // The unbounded wait runs on a thread of its own, so a broken waker fails the bounded
    // `recv_timeout` below instead of hanging the test.
    let waiter = thread::spawn(move || {
        let mut events = Events::with_capacity(4);
        let outcome = backend.wait(&mut events, None).map(|()| events.len());
        done.send(outcome).unwrap();
    });
    waker.wake().unwrap();
    let reported = result
        .recv_timeout(PATIENCE)
        .expect("wait(None) was not woken")
        .unwrap();
    assert_eq!(reported, 0, "the wake-up was reported as an event");
    waiter.join().unwrap();
}

#[test]
fn repeated_wakes_are_ok_and_drained() {
    let mut backend = backend();
    let waker = backend.waker();
    waker.wake().unwrap();
    waker.clone().wake().unwrap();
    // Enough one-byte wakes to fill the socket buffer: the overflow is `WouldBlock`, not an error.
    for _ in 0..20_000 {
        waker.wake().unwrap();
    }
    let mut events = Events::with_capacity(4);
    let start = Instant::now();
    backend.wait(&mut events, Some(PATIENCE)).unwrap();
    assert!(start.elapsed() < PATIENCE / 2, "wait was not woken");
    assert!(events.is_empty(), "{events:?}");
    backend.wait(&mut events, Some(QUIET)).unwrap();
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn short_timeouts_return_empty() {
    let mut backend = backend();
    let (_client, server) = pair();
    backend
        .register(server.borrowed(), Token(4), Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(4);
    for timeout in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(1),
    ] {
        backend.wait(&mut events, Some(timeout)).unwrap();
        assert!(events.is_empty(), "{timeout:?}: {events:?}");
    }
}

#[test]
fn a_huge_timeout_is_accepted() {
    let mut backend = backend();
    backend.waker().wake().unwrap();
    let mut events = Events::with_capacity(4);
    backend.wait(&mut events, Some(Duration::MAX)).unwrap();
    assert!(events.is_empty());
}

#[test]
fn capacity_is_reported_and_enforced() {
    let mut backend = SelectBackend::with_capacity(2).unwrap();
    assert_eq!(backend.capacity(), Some(2));
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
    // Room again after a deregister.
    backend.deregister(a.borrowed()).unwrap();
    backend
        .register(b.borrowed(), Token(1), Interest::READABLE)
        .unwrap();
}

#[test]
fn capacity_is_clamped_to_the_platform() {
    let full = SelectBackend::new().unwrap().capacity().unwrap();
    assert!(full >= 1000, "{full}");
    let clamped = SelectBackend::with_capacity(usize::MAX).unwrap();
    assert_eq!(clamped.capacity(), Some(full));
    assert_eq!(clamped.name(), "select");
    let debug = format!("{clamped:?}");
    assert!(
        debug.contains("SelectBackend") && debug.contains(&full.to_string()),
        "{debug}"
    );
}

#[test]
fn registration_errors_have_their_kinds() {
    let mut backend = backend();
    let (_client, server) = pair();
    let err = backend
        .register(server.borrowed(), Token::WAKER, Interest::READABLE)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

    backend
        .register(server.borrowed(), Token(1), Interest::READABLE)
        .unwrap();
    let err = backend
        .register(server.borrowed(), Token(2), Interest::READABLE)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    let err = backend
        .reregister(server.borrowed(), Token::WAKER, Interest::READABLE)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

    let (_other_client, other) = pair();
    let err = backend
        .reregister(other.borrowed(), Token(3), Interest::READABLE)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    let err = backend.deregister(other.borrowed()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

/// On Unix an `fd_set` is a bitmap of `FD_SETSIZE` descriptor numbers, and a socket numbered past
/// it must be refused, not written past the set.
#[test]
#[cfg_attr(
    windows,
    ignore = "Winsock sets hold socket handles, not descriptor numbers: there is no FD_SETSIZE number to exceed"
)]
fn descriptor_beyond_fd_setsize_is_refused() {
    #[cfg(unix)]
    unix::descriptor_beyond_fd_setsize_is_refused();
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

    /// Raises the soft descriptor limit above `HIGH_FD` if the hard limit allows.
    fn raise_nofile_limit() -> Result<(), String> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a live `rlimit` for getrlimit to fill.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(format!("getrlimit: {}", io::Error::last_os_error()));
        }
        let wanted = (HIGH_FD + 1) as libc::rlim_t;
        if limit.rlim_cur >= wanted {
            return Ok(());
        }
        if limit.rlim_max < wanted {
            return Err(format!("hard RLIMIT_NOFILE is {}", limit.rlim_max));
        }
        limit.rlim_cur = wanted;
        // SAFETY: `limit` is a live, initialised `rlimit` for setrlimit to read.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(format!("setrlimit: {}", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// A duplicate of `stream` numbered `HIGH_FD` or above.
    fn dup_high(stream: &TcpStream) -> io::Result<TcpStream> {
        // SAFETY: F_DUPFD on a descriptor we hold open (borrowed from `stream`) creates a new
        // descriptor and touches no memory.
        let fd = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, HIGH_FD) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created by fcntl, is open, and nothing else owns it.
        Ok(TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(super) fn descriptor_beyond_fd_setsize_is_refused() {
        if let Err(reason) = raise_nofile_limit() {
            eprintln!("skipped: cannot open descriptor {HIGH_FD}: {reason}");
            return;
        }
        let mut backend = backend();
        let (_client, server) = pair();
        let high = dup_high(&server).unwrap();
        let fd = high.as_raw_fd();
        assert!(fd >= HIGH_FD);
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
