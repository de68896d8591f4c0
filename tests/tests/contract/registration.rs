//! Registration: `Interest::NONE`, `reregister` and `deregister`.

use server_core::{AsBorrowedSocket, Interest, Token};

use crate::{
    both, expect_error, expect_event, expect_quiet, pair, readiness, register, send, wait_once,
    Subject, PATIENCE,
};

/// `Interest::NONE` keeps a socket registered but silent, however ready it is; giving it an
/// interest later makes it report again.
pub(crate) fn interest_none_is_registered_but_silent<B: Subject>() {
    let mut backend = B::create();
    let (client, server) = pair();
    // Readable (bytes waiting) and writable (send-buffer space): ready for everything.
    send(&client, &server, b"ignored");
    register(&mut backend, &server, Token(2), Interest::NONE);
    expect_quiet(&mut backend);

    // Still registered: a second register is refused, a reregister is accepted.
    expect_error(
        backend.register(server.borrowed(), Token(2), Interest::READABLE),
        std::io::ErrorKind::AlreadyExists,
    );
    backend
        .reregister(server.borrowed(), Token(2), Interest::READABLE)
        .unwrap();
    assert_eq!(expect_event(&mut backend, Token(2)), (true, false));
}

/// Each reregister replaces the interest: the next wait reports what it asks for, no more.
pub(crate) fn reregister_changes_what_is_reported<B: Subject>() {
    let mut backend = B::create();
    let (client, server) = pair();
    send(&client, &server, b"waiting");
    register(&mut backend, &server, Token(4), Interest::READABLE);
    assert_eq!(expect_event(&mut backend, Token(4)), (true, false));

    for (interest, expected) in [
        (Interest::WRITABLE, (false, true)),
        (both(), (true, true)),
        (Interest::READABLE, (true, false)),
    ] {
        backend
            .reregister(server.borrowed(), Token(4), interest)
            .unwrap();
        assert_eq!(
            expect_event(&mut backend, Token(4)),
            expected,
            "{interest:?}"
        );
    }
}

/// Reregistering to `NONE` silences a ready socket at once, and back to an interest it
/// reports again (the engine pauses accepting this way).
pub(crate) fn reregister_to_none_silences<B: Subject>() {
    let mut backend = B::create();
    let (_client, server) = pair();
    register(&mut backend, &server, Token(1), Interest::WRITABLE);
    assert_eq!(expect_event(&mut backend, Token(1)), (false, true));

    for round in 0..2 {
        backend
            .reregister(server.borrowed(), Token(1), Interest::NONE)
            .unwrap();
        expect_quiet(&mut backend);
        backend
            .reregister(server.borrowed(), Token(1), Interest::WRITABLE)
            .unwrap();
        assert_eq!(
            expect_event(&mut backend, Token(1)),
            (false, true),
            "round {round}: not reported after coming back from NONE"
        );
    }
}

/// Reregister replaces the token too: events carry the new one and never the old.
pub(crate) fn reregister_changes_the_token<B: Subject>() {
    let mut backend = B::create();
    let (_client, server) = pair();
    register(&mut backend, &server, Token(1), Interest::WRITABLE);
    assert_eq!(expect_event(&mut backend, Token(1)), (false, true));

    backend
        .reregister(server.borrowed(), Token(9), Interest::WRITABLE)
        .unwrap();
    let events = wait_once(&mut backend, PATIENCE);
    assert_eq!(
        readiness(&events, Token(9)),
        Some((false, true)),
        "{events:?}"
    );
    assert_eq!(readiness(&events, Token(1)), None, "old token: {events:?}");
}

/// After `deregister` a socket reports nothing, ready as it is, and can be closed.
pub(crate) fn deregister_stops_every_event<B: Subject>() {
    let mut backend = B::create();
    let (client, server) = pair();
    send(&client, &server, b"ready");
    register(&mut backend, &server, Token(6), both());
    assert_eq!(expect_event(&mut backend, Token(6)), (true, true));

    backend.deregister(server.borrowed()).unwrap();
    expect_quiet(&mut backend);
    // Deregister first, then close: and closing stays silent too.
    drop(server);
    drop(client);
    expect_quiet(&mut backend);
}

/// Deregistering one socket leaves the others registered under their tokens, whichever
/// position in the backend's bookkeeping the removed one held.
pub(crate) fn deregister_keeps_the_others<B: Subject>() {
    let mut backend = B::create();
    let pairs: Vec<_> = (0..4).map(|_| pair()).collect();
    for (i, (_, server)) in pairs.iter().enumerate() {
        register(&mut backend, server, Token(i), Interest::WRITABLE);
    }
    // The first, then the last, then one in the middle.
    let mut left: Vec<usize> = (0..pairs.len()).collect();
    for gone in [0, 3, 1] {
        backend.deregister(pairs[gone].1.borrowed()).unwrap();
        left.retain(|&i| i != gone);
        let events = wait_once(&mut backend, PATIENCE);
        let mut tokens: Vec<usize> = events.iter().map(|event| event.token.0).collect();
        tokens.sort_unstable();
        tokens.dedup();
        assert_eq!(tokens, left, "after deregistering {gone}: {events:?}");
    }
}

/// Deregister then close, the order the contract asks for, leaves nothing behind: the same
/// socket can be registered again before it is closed, and a new socket (which may get the
/// closed one's number) registers cleanly and reports under its own token.
pub(crate) fn deregister_before_close_frees_the_socket<B: Subject>() {
    let mut backend = B::create();
    let (_client, server) = pair();
    register(&mut backend, &server, Token(1), Interest::WRITABLE);
    backend.deregister(server.borrowed()).unwrap();
    register(&mut backend, &server, Token(2), Interest::WRITABLE);
    assert_eq!(expect_event(&mut backend, Token(2)), (false, true));
    backend.deregister(server.borrowed()).unwrap();
    drop(server);

    let (_client, fresh) = pair();
    register(&mut backend, &fresh, Token(3), Interest::WRITABLE);
    let events = wait_once(&mut backend, PATIENCE);
    assert_eq!(
        readiness(&events, Token(3)),
        Some((false, true)),
        "{events:?}"
    );
    assert_eq!(events.len(), 1, "stale registrations reported: {events:?}");
}
