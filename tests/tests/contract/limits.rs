//! Capacity: what `Backend::capacity` reports, and that a backend holds that many.

use std::io::ErrorKind;
use std::net::TcpListener;

use server_core::{AsBorrowedSocket, Backend, Interest, Token};

use crate::{expect_error, expect_event, pair, readiness, register, wait_once, Subject, PATIENCE};

/// Sockets the unbounded check registers: more than Winsock's default `fd_set` (64) and than any
/// small fixed bound, few enough for the descriptor numbers of a parallel `select` test to stay
/// below `FD_SETSIZE` (this costs the process two descriptors per socket).
const MANY: usize = 128;

/// `capacity()` is what the backend's documentation says: a fixed number for `select`, `None`
/// for the OS pollers, which only memory and the descriptor limit bound.
pub(crate) fn capacity_is_as_documented<B: Subject>() {
    let backend = B::create();
    assert_eq!(backend.capacity(), B::documented_capacity());
    if let Some(capacity) = backend.capacity() {
        // Far above Winsock's default of 64, or the room would be tiny.
        assert!(capacity >= 1_000, "{capacity}");
    }
}

/// A bounded backend holds exactly its capacity, the listener included: one more is refused
/// with `InvalidInput` and never reported, and a deregister makes room again. A backend with no
/// bound says so and holds [`MANY`] sockets.
pub(crate) fn capacity_is_enforced<B: Subject>() {
    const BOUND: usize = 3;
    let Some(mut backend) = B::bounded(BOUND) else {
        let backend = B::create();
        assert_eq!(backend.capacity(), None, "a bounded backend must say so");
        return holds_many(backend);
    };
    assert_eq!(backend.capacity(), Some(BOUND));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    register(&mut backend, &listener, Token::LISTENER, Interest::READABLE);
    let pairs: Vec<_> = (0..BOUND).map(|_| pair()).collect();
    for (i, (_, server)) in pairs.iter().take(BOUND - 1).enumerate() {
        register(&mut backend, server, Token(i), Interest::WRITABLE);
    }
    let extra = &pairs[BOUND - 1].1;
    let extra_token = Token(BOUND - 1);
    expect_error(
        backend.register(extra.borrowed(), extra_token, Interest::WRITABLE),
        ErrorKind::InvalidInput,
    );
    let events = wait_once(&mut backend, PATIENCE);
    assert_eq!(
        readiness(&events, extra_token),
        None,
        "refused but reported: {events:?}"
    );
    assert_eq!(
        readiness(&events, Token(0)),
        Some((false, true)),
        "{events:?}"
    );

    backend.deregister(pairs[0].1.borrowed()).unwrap();
    register(&mut backend, extra, extra_token, Interest::WRITABLE);
    assert_eq!(expect_event(&mut backend, extra_token), (false, true));
}

/// Every backend holds [`MANY`] sockets and reports all of them in one wait.
pub(crate) fn many_sockets_in_one_wait<B: Subject>() {
    holds_many(B::create());
}

fn holds_many<B: Backend>(mut backend: B) {
    let pairs: Vec<_> = (0..MANY).map(|_| pair()).collect();
    for (i, (_, server)) in pairs.iter().enumerate() {
        register(&mut backend, server, Token(i), Interest::WRITABLE);
    }
    let events = wait_once(&mut backend, PATIENCE);
    for i in 0..MANY {
        assert_eq!(
            readiness(&events, Token(i)),
            Some((false, true)),
            "socket {i} of {MANY}: {} events",
            events.len()
        );
    }
}
