//! The error kinds `backend.rs` documents, and the reserved tokens.

use std::io::ErrorKind;

use server_core::{AsBorrowedSocket, Interest, Token};

use crate::{expect_error, expect_event, pair, register, Subject};

/// Registering a socket that is already registered is `AlreadyExists`, whatever the token and
/// interest, and leaves the first registration as it was.
pub(crate) fn registering_twice_is_already_exists<B: Subject>() {
    let mut backend = B::create();
    let (_client, server) = pair();
    register(&mut backend, &server, Token(1), Interest::WRITABLE);
    for (token, interest) in [
        (Token(1), Interest::WRITABLE),
        (Token(2), Interest::READABLE),
        (Token(3), Interest::NONE),
    ] {
        expect_error(
            backend.register(server.borrowed(), token, interest),
            ErrorKind::AlreadyExists,
        );
    }
    assert_eq!(expect_event(&mut backend, Token(1)), (false, true));
}

/// `reregister` and `deregister` of a socket the backend does not hold are `NotFound`: one never
/// registered, and one already deregistered.
pub(crate) fn unknown_socket_is_not_found<B: Subject>() {
    let mut backend = B::create();
    let (_client, never) = pair();
    expect_error(
        backend.reregister(never.borrowed(), Token(1), Interest::READABLE),
        ErrorKind::NotFound,
    );
    expect_error(backend.deregister(never.borrowed()), ErrorKind::NotFound);

    let (_client, gone) = pair();
    register(&mut backend, &gone, Token(2), Interest::READABLE);
    backend.deregister(gone.borrowed()).unwrap();
    expect_error(backend.deregister(gone.borrowed()), ErrorKind::NotFound);
    expect_error(
        backend.reregister(gone.borrowed(), Token(2), Interest::WRITABLE),
        ErrorKind::NotFound,
    );
}

/// `Token::WAKER` is never registered: `register` and `reregister` with it are `InvalidInput`,
/// and a refused `register` leaves the socket unregistered.
pub(crate) fn waker_token_is_invalid_input<B: Subject>() {
    let mut backend = B::create();
    let (_client, server) = pair();
    expect_error(
        backend.register(server.borrowed(), Token::WAKER, Interest::READABLE),
        ErrorKind::InvalidInput,
    );
    expect_error(backend.deregister(server.borrowed()), ErrorKind::NotFound);

    register(&mut backend, &server, Token(1), Interest::WRITABLE);
    expect_error(
        backend.reregister(server.borrowed(), Token::WAKER, Interest::WRITABLE),
        ErrorKind::InvalidInput,
    );
    // The registration it failed to change still reports under its token.
    assert_eq!(expect_event(&mut backend, Token(1)), (false, true));
}

/// `Token::LISTENER` may be registered, on any socket, and is reported as itself; reregistering
/// to it is allowed too.
pub(crate) fn listener_token_may_be_registered<B: Subject>() {
    let mut backend = B::create();
    let (_client, server) = pair();
    register(&mut backend, &server, Token::LISTENER, Interest::WRITABLE);
    assert_eq!(expect_event(&mut backend, Token::LISTENER), (false, true));

    let (_other_client, other) = pair();
    register(&mut backend, &other, Token(0), Interest::NONE);
    backend.deregister(server.borrowed()).unwrap();
    backend
        .reregister(other.borrowed(), Token::LISTENER, Interest::WRITABLE)
        .unwrap();
    assert_eq!(expect_event(&mut backend, Token::LISTENER), (false, true));
}
