//! Readiness: what a registered socket reports, and that it is level-triggered.

use std::net::{TcpListener, TcpStream};

use server_core::{Interest, Token};

use crate::{
    arrived, both, consume, expect_event, expect_quiet, pair, readiness, register, send, wait_once,
    Subject, PATIENCE,
};

/// Readable interest reports nothing while there is nothing to read, and readable (only) once
/// the peer has written.
pub(crate) fn readable_after_the_peer_writes<B: Subject>() {
    let mut backend = B::create();
    let (client, server) = pair();
    register(&mut backend, &server, Token(7), Interest::READABLE);
    expect_quiet(&mut backend);

    send(&client, &server, b"hi");
    assert_eq!(expect_event(&mut backend, Token(7)), (true, false));
}

/// A connected socket has send-buffer space at once: writable interest reports writable (only).
pub(crate) fn writable_on_a_connected_socket<B: Subject>() {
    let mut backend = B::create();
    let (_client, server) = pair();
    register(&mut backend, &server, Token(1), Interest::WRITABLE);
    assert_eq!(expect_event(&mut backend, Token(1)), (false, true));
}

/// Both interests on one registration report both readinesses in the same wait.
pub(crate) fn readable_and_writable_together<B: Subject>() {
    let mut backend = B::create();
    let (client, server) = pair();
    send(&client, &server, b"x");
    register(&mut backend, &server, Token(3), both());
    assert_eq!(expect_event(&mut backend, Token(3)), (true, true));
}

/// A listener registered for readable reports a connection waiting to be accepted, keeps
/// reporting it until it is accepted (level-triggered), and then goes quiet.
pub(crate) fn listener_readable_on_a_pending_connection<B: Subject>() {
    let mut backend = B::create();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    register(&mut backend, &listener, Token::LISTENER, Interest::READABLE);
    expect_quiet(&mut backend);

    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    assert_eq!(expect_event(&mut backend, Token::LISTENER), (true, false));
    assert_eq!(
        expect_event(&mut backend, Token::LISTENER),
        (true, false),
        "an unaccepted connection must be reported again"
    );

    let (_accepted, _) = listener.accept().unwrap();
    expect_quiet(&mut backend);
}

/// The peer closing is readable: the read that follows returns end of stream.
pub(crate) fn end_of_stream_is_readable<B: Subject>() {
    let mut backend = B::create();
    let (client, server) = pair();
    register(&mut backend, &server, Token(5), Interest::READABLE);
    expect_quiet(&mut backend);

    drop(client);
    let (readable, _) = expect_event(&mut backend, Token(5));
    assert!(readable, "end of stream was not reported readable");
    server.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(
        server.peek(&mut [0u8; 1]).unwrap(),
        0,
        "not at end of stream"
    );
}

/// Level-triggered: bytes left unread are reported on every wait, however many; once all are
/// read, the socket goes quiet.
pub(crate) fn unread_data_is_reported_again<B: Subject>() {
    let mut backend = B::create();
    let (client, server) = pair();
    register(&mut backend, &server, Token(2), Interest::READABLE);
    send(&client, &server, b"abc");

    for round in 0..3 {
        assert_eq!(
            expect_event(&mut backend, Token(2)),
            (true, false),
            "round {round}: unread bytes not reported again"
        );
    }
    // Reading some but not all leaves it readable.
    consume(&server, 1);
    arrived(&server);
    assert_eq!(expect_event(&mut backend, Token(2)), (true, false));
    consume(&server, 2);
    expect_quiet(&mut backend);
}

/// One wait reports every socket that is ready, each under its own token.
pub(crate) fn several_sockets_in_one_wait<B: Subject>() {
    const SOCKETS: usize = 5;
    let mut backend = B::create();
    let pairs: Vec<_> = (0..SOCKETS).map(|_| pair()).collect();
    for (i, (client, server)) in pairs.iter().enumerate() {
        register(&mut backend, server, Token(i), Interest::READABLE);
        send(client, server, &[u8::try_from(i).unwrap()]);
    }
    // Every socket has bytes waiting before the wait starts, so one wait sees them all.
    let events = wait_once(&mut backend, PATIENCE);
    for i in 0..SOCKETS {
        assert_eq!(
            readiness(&events, Token(i)),
            Some((true, false)),
            "socket {i} in {events:?}"
        );
    }
}
