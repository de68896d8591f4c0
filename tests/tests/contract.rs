//! The `Backend` contract (server-core's `backend.rs`), written once and run against every
//! backend: `polling::*` tests `PollingBackend`, `select::*` tests `SelectBackend`.
//!
//! Each test is a generic function in one of the `contract/` files, over a [`Subject`]: a
//! backend plus what the suite must know about it. [`contract_suite!`] turns the list of those
//! functions into one `#[test]` per backend, so a failure reads `select::reregister_to_none_silences`.
//! A test written but left out of the list is dead code, which the workspace's lints refuse.
//!
//! Real sockets on 127.0.0.1:0 only. Every wait is bounded: a `wait` either has a timeout or runs
//! on a thread of its own that the test gives up on after [`PATIENCE`]. Nothing sleeps; a test
//! that needs bytes to have crossed loopback before it waits peeks for them first ([`arrived`]).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use backend_polling::PollingBackend;
use backend_select::SelectBackend;
use server_core::{AsBorrowedSocket, Backend, Event, Events, Interest, Token};

#[path = "contract/errors.rs"]
mod errors;
#[path = "contract/limits.rs"]
mod limits;
#[path = "contract/readiness.rs"]
mod readiness;
#[path = "contract/registration.rs"]
mod registration;
#[path = "contract/waking.rs"]
mod waking;

/// Long enough that a correct backend never reaches it on a loaded CI machine, short enough that a
/// broken one fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(20);
/// How long to watch for an event that must not come. A backend that wrongly reports one does so
/// at once (the socket is ready before the wait starts), so this can be short.
const QUIET: Duration = Duration::from_millis(50);

/// A backend under test, and what the suite must know about it.
trait Subject: Backend + Send + Sized + 'static {
    /// The backend as the server builds it.
    fn create() -> Self;
    /// What [`Backend::capacity`] of [`Subject::create`]'s backend is documented to report.
    fn documented_capacity() -> Option<usize>;
    /// A backend that holds at most `n` sockets, for a backend whose capacity can be chosen;
    /// `None` for one bounded only by memory and the descriptor limit.
    fn bounded(n: usize) -> Option<Self>;
}

impl Subject for PollingBackend {
    fn create() -> Self {
        PollingBackend::new().expect("create the polling backend")
    }
    fn documented_capacity() -> Option<usize> {
        None
    }
    fn bounded(_: usize) -> Option<Self> {
        None
    }
}

impl Subject for SelectBackend {
    fn create() -> Self {
        SelectBackend::new().expect("create the select backend")
    }
    fn documented_capacity() -> Option<usize> {
        // backend-select's crate docs: FD_SETSIZE (1,024) less the waker's socket pair on Unix;
        // 1,024 sockets plus the waker in its own Winsock set on Windows.
        Some(if cfg!(windows) { 1_024 } else { 1_022 })
    }
    fn bounded(n: usize) -> Option<Self> {
        Some(SelectBackend::with_capacity(n).expect("create a bounded select backend"))
    }
}

/// One `#[test]` per backend for each listed test: `group { test, ... }` names the file
/// (`contract/group.rs`) and its generic test functions.
macro_rules! contract_suite {
    ($($group:ident { $($test:ident),* $(,)? })*) => {
        contract_suite!(@backend polling, backend_polling::PollingBackend, $($group { $($test),* })*);
        contract_suite!(@backend select, backend_select::SelectBackend, $($group { $($test),* })*);
    };
    (@backend $module:ident, $backend:ty, $($group:ident { $($test:ident),* })*) => {
        mod $module {
            $($(
                #[test]
                fn $test() {
                    crate::$group::$test::<$backend>();
                }
            )*)*
        }
    };
}

contract_suite! {
    readiness {
        readable_after_the_peer_writes,
        writable_on_a_connected_socket,
        readable_and_writable_together,
        listener_readable_on_a_pending_connection,
        end_of_stream_is_readable,
        unread_data_is_reported_again,
        several_sockets_in_one_wait,
    }
    registration {
        interest_none_is_registered_but_silent,
        reregister_changes_what_is_reported,
        reregister_to_none_silences,
        reregister_changes_the_token,
        deregister_stops_every_event,
        deregister_keeps_the_others,
        deregister_before_close_frees_the_socket,
    }
    waking {
        wake_from_another_thread_ends_an_unbounded_wait,
        wake_while_not_waiting_ends_the_next_wait,
        many_wakes_are_not_errors,
        wakes_are_never_reported,
        short_timeouts_return_no_events,
        unbounded_wait_returns_for_an_event,
        huge_timeout_is_accepted,
    }
    errors {
        registering_twice_is_already_exists,
        unknown_socket_is_not_found,
        waker_token_is_invalid_input,
        listener_token_may_be_registered,
    }
    limits {
        capacity_is_as_documented,
        capacity_is_enforced,
        many_sockets_in_one_wait,
    }
}

// ---- helpers shared by the contract files ----

/// A connected pair on loopback: (client side, server side). Both are blocking, as std makes
/// them: the contract does not ask for non-blocking sockets, and [`arrived`] relies on it.
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

/// Blocks (at most [`PATIENCE`]) until bytes are in `stream`'s receive buffer, without reading
/// them: after this, a readable interest in `stream` has something to report.
#[track_caller]
fn arrived(stream: &TcpStream) {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let n = stream
        .peek(&mut [0u8; 1])
        .expect("peek for bytes that were sent");
    assert_ne!(n, 0, "the peer closed instead of sending");
}

/// Writes `bytes` from `from` and waits until they are readable at `to`.
#[track_caller]
fn send(mut from: &TcpStream, to: &TcpStream, bytes: &[u8]) {
    from.write_all(bytes).expect("write to a loopback peer");
    arrived(to);
}

/// Reads exactly `n` bytes that have already [`arrived`].
#[track_caller]
fn consume(mut stream: &TcpStream, n: usize) {
    let mut buf = vec![0u8; n];
    stream
        .read_exact(&mut buf)
        .expect("read bytes that arrived");
}

/// One wait, bounded by `timeout`; the events it reported.
#[track_caller]
fn wait_once<B: Backend>(backend: &mut B, timeout: Duration) -> Vec<Event> {
    let mut events = Events::with_capacity(16);
    backend.wait(&mut events, Some(timeout)).expect("wait");
    events.iter().copied().collect()
}

/// What the events say about `token`, merged: `(readable, writable)`, or `None` if not named.
fn readiness(events: &[Event], token: Token) -> Option<(bool, bool)> {
    events
        .iter()
        .filter(|event| event.token == token)
        .fold(None, |seen, event| {
            let (r, w) = seen.unwrap_or((false, false));
            Some((r || event.is_readable(), w || event.is_writable()))
        })
}

/// Waits until `token` is reported, within [`PATIENCE`], and returns its merged readiness as in
/// [`readiness`]. Waits that report nothing, or only other tokens, are allowed by the contract
/// (events are hints) and are waited through.
#[track_caller]
fn expect_event<B: Backend>(backend: &mut B, token: Token) -> (bool, bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{token:?} was never reported");
        if let Some(found) = readiness(&wait_once(backend, left), token) {
            return found;
        }
    }
}

/// Asserts that one wait of [`QUIET`] reports nothing at all.
#[track_caller]
fn expect_quiet<B: Backend>(backend: &mut B) {
    let events = wait_once(backend, QUIET);
    assert!(events.is_empty(), "expected no events, got {events:?}");
}

/// Runs `backend.wait(timeout)` on a thread of its own and returns the backend and the events,
/// failing the test if the wait has not returned within [`PATIENCE`] (a hung backend then
/// fails the test instead of hanging it). `while_waiting` runs on this thread once the waiting
/// thread is about to call `wait`.
#[track_caller]
fn wait_on_a_thread<B: Subject>(
    mut backend: B,
    timeout: Option<Duration>,
    while_waiting: impl FnOnce(),
) -> (B, Vec<Event>) {
    let (started_tx, started) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let mut events = Events::with_capacity(16);
        started_tx.send(()).unwrap();
        let outcome = backend.wait(&mut events, timeout);
        let reported: Vec<Event> = events.iter().copied().collect();
        // The receiver is gone only if the test already failed.
        let _ = done_tx.send((backend, outcome, reported));
    });
    started
        .recv_timeout(PATIENCE)
        .expect("the waiting thread never started");
    while_waiting();
    let (backend, outcome, events) = done
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("wait({timeout:?}) did not return within {PATIENCE:?}"));
    outcome.expect("wait on the waiting thread");
    waiter.join().expect("the waiting thread panicked");
    (backend, events)
}

/// Registers `socket` and asserts it worked.
#[track_caller]
fn register<B: Backend, S: AsBorrowedSocket>(
    backend: &mut B,
    socket: &S,
    token: Token,
    interest: Interest,
) {
    backend
        .register(socket.borrowed(), token, interest)
        .unwrap_or_else(|e| panic!("register {token:?} {interest:?}: {e}"));
}

/// Readable and writable interest together.
fn both() -> Interest {
    Interest::READABLE | Interest::WRITABLE
}

/// Asserts that `result` failed with `kind`.
#[track_caller]
fn expect_error(result: io::Result<()>, kind: io::ErrorKind) {
    match result {
        Ok(()) => panic!("expected an error of kind {kind:?}, got Ok"),
        Err(e) => assert_eq!(e.kind(), kind, "wrong error kind: {e}"),
    }
}
