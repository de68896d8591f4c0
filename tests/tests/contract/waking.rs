//! The waker and the timeouts of `wait`.
//!
//! A wait that could block for ever (`None`, `Duration::MAX`) runs through [`wait_on_a_thread`],
//! which fails the test if it has not returned within `PATIENCE`; and only when a wake-up or an
//! event is due, so a correct backend returns at once. Short timeouts are checked by their
//! outcome (no events), never by how long they took.

use std::thread;
use std::time::Duration;

use server_core::{AsBorrowedSocket, Interest, Token, Wake};

use crate::{expect_quiet, pair, readiness, register, wait_on_a_thread, Subject};

/// A wake from another thread ends a wait with no timeout, and reports nothing; the waker works
/// again for the next wait.
///
/// The wake is sent once the waiting thread is about to call `wait`: usually it lands while the
/// wait blocks, sometimes just before; both must end the wait, and the second case is also
/// checked on its own by `wake_while_not_waiting_ends_the_next_wait`.
pub(crate) fn wake_from_another_thread_ends_an_unbounded_wait<B: Subject>() {
    let mut backend = B::create();
    for round in 0..3 {
        let waker = backend.waker();
        let (returned, events) = wait_on_a_thread(backend, None, || {
            // From a thread that is neither the waiter nor the one that made the waker.
            thread::spawn(move || waker.wake())
                .join()
                .expect("the waking thread panicked")
                .expect("wake");
        });
        assert!(
            events.is_empty(),
            "round {round}: wake reported: {events:?}"
        );
        backend = returned;
    }
}

/// A wake issued while nobody waits is kept: the next wait returns at once, with no events.
pub(crate) fn wake_while_not_waiting_ends_the_next_wait<B: Subject>() {
    let backend = B::create();
    backend.waker().wake().expect("wake");
    let (_, events) = wait_on_a_thread(backend, None, || {});
    assert!(events.is_empty(), "wake reported: {events:?}");
}

/// Waking again while a wake is pending is not an error, from any clone and however often (the
/// select backend's wake-up socket fills up long before this count).
pub(crate) fn many_wakes_are_not_errors<B: Subject>() {
    let backend = B::create();
    let waker = backend.waker();
    for i in 0..20_000 {
        let result = if i % 2 == 0 {
            waker.wake()
        } else {
            waker.clone().wake()
        };
        result.unwrap_or_else(|e| panic!("wake number {i}: {e}"));
    }
    let (mut backend, events) = wait_on_a_thread(backend, None, || {});
    assert!(events.is_empty(), "wake reported: {events:?}");
    // Whatever the wakes left behind, they never turn into events.
    expect_quiet(&mut backend);
}

/// A wait that returns for an event and a pending wake together reports only the event.
pub(crate) fn wakes_are_never_reported<B: Subject>() {
    let mut backend = B::create();
    let (_client, server) = pair();
    register(&mut backend, &server, Token(8), Interest::WRITABLE);
    backend.waker().wake().expect("wake");
    let (_, events) = wait_on_a_thread(backend, None, || {});
    assert!(!events.is_empty(), "the ready socket was not reported");
    assert!(
        events.iter().all(|event| event.token == Token(8)),
        "{events:?}"
    );
}

/// A short timeout with nothing ready returns, without error and without events: zero (a poll),
/// sub-microsecond (which `select`'s `timeval` must not round down to a spin), and a few
/// milliseconds; with and without sockets registered.
pub(crate) fn short_timeouts_return_no_events<B: Subject>() {
    let timeouts = [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_micros(999),
        Duration::from_millis(1),
        Duration::from_millis(10),
    ];
    let mut backend = B::create();
    for timeout in timeouts {
        let (returned, events) = wait_on_a_thread(backend, Some(timeout), || {});
        assert!(
            events.is_empty(),
            "nothing registered, {timeout:?}: {events:?}"
        );
        backend = returned;
    }
    let (_client, quiet) = pair();
    let (_other, silenced) = pair();
    register(&mut backend, &quiet, Token(1), Interest::READABLE);
    register(&mut backend, &silenced, Token(2), Interest::NONE);
    for timeout in timeouts {
        let (returned, events) = wait_on_a_thread(backend, Some(timeout), || {});
        assert!(events.is_empty(), "{timeout:?}: {events:?}");
        backend = returned;
    }
}

/// A wait with no timeout returns once a socket is ready (here: already ready).
pub(crate) fn unbounded_wait_returns_for_an_event<B: Subject>() {
    let mut backend = B::create();
    let (_client, server) = pair();
    register(&mut backend, &server, Token(4), Interest::WRITABLE);
    let (_, events) = wait_on_a_thread(backend, None, || {});
    assert_eq!(
        readiness(&events, Token(4)),
        Some((false, true)),
        "{events:?}"
    );
}

/// The longest timeout there is is accepted (the select backend cuts it to what `select` takes)
/// and the wait still returns for what is ready: a socket, or a pending wake.
pub(crate) fn huge_timeout_is_accepted<B: Subject>() {
    let mut backend = B::create();
    let (_client, server) = pair();
    register(&mut backend, &server, Token(4), Interest::WRITABLE);
    let (mut backend, events) = wait_on_a_thread(backend, Some(Duration::MAX), || {});
    assert_eq!(
        readiness(&events, Token(4)),
        Some((false, true)),
        "{events:?}"
    );

    backend.deregister(server.borrowed()).unwrap();
    backend.waker().wake().expect("wake");
    let (_, events) = wait_on_a_thread(backend, Some(Duration::MAX), || {});
    assert!(events.is_empty(), "wake reported: {events:?}");
}
