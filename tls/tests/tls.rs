//! TLS links through the real engine on loopback sockets: relaying between TLS clients (with a
//! 16 MiB write), plaintext and stalled clients on a TLS port, and mutual TLS.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use relay_access::{AccessList, Gated};
use relay_tests::tls::{
    tls_connect, tls_expect_closed, tls_join_room, PkiFiles, TempDir, TestPki, TlsStream,
};
use relay_tests::{connect, expect_closed, Pattern, TestServer};
use relay_tls::tls::{TlsAcceptor, TlsFiles};
use relay_tls::Entry;
use rustls::ClientConfig;
use server_core::Config;

/// A server on 127.0.0.1 whose connections are TLS with `pki`'s server certificate, requiring
/// client certificates from `pki`'s CA when `mutual`.
fn start_tls(pki: &TestPki, dir: &TempDir, mutual: bool, config: Config) -> TestServer {
    let files: PkiFiles = pki.write(dir.path());
    let tls = TlsAcceptor::from_files(&TlsFiles {
        cert: files.cert,
        key: files.key,
        client_ca: mutual.then_some(files.ca),
    })
    .expect("TLS settings");
    // The way the binary wires it: behind an (open) access list, as an `Entry`.
    let acceptor = Gated::new(Entry::Tls(tls), AccessList::default());
    TestServer::start_with(backend_polling::PollingBackend::new, acceptor, config)
}

/// Every byte value, then a pattern long enough to span several TLS records.
fn binary_message(sender: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..=255).collect();
    bytes.extend(Pattern::bytes(sender, 0, 40_000));
    bytes
}

/// Sends `bytes` from `from` and checks every other client reads exactly them, reading in
/// threads of their own so a large write cannot fill the room's buffers.
fn relay(clients: Vec<TlsStream>, from: usize, bytes: Arc<Vec<u8>>) -> Vec<TlsStream> {
    let mut readers = Vec::new();
    let mut sender = None;
    for (i, mut client) in clients.into_iter().enumerate() {
        if i == from {
            sender = Some(client);
            continue;
        }
        let bytes = Arc::clone(&bytes);
        readers.push(thread::spawn(move || {
            let got = relay_tests::read_exactly(&mut client, bytes.len(), relay_tests::TIMEOUT)
                .unwrap_or_else(|e| panic!("client {i}: {e}"));
            assert!(got == *bytes, "client {i} got different bytes from {from}");
            (i, client)
        }));
    }
    let mut sender = sender.expect("sender index");
    sender.write_all(&bytes).expect("send");
    sender.flush().expect("send");
    let mut clients: Vec<(usize, TlsStream)> = readers
        .into_iter()
        .map(|r| r.join().expect("reader panicked"))
        .collect();
    clients.push((from, sender));
    clients.sort_by_key(|(i, _)| *i);
    clients.into_iter().map(|(_, c)| c).collect()
}

fn three_clients_relay_through_tls(config: Config) {
    let (pki, dir) = (TestPki::new(), TempDir::new());
    let server = start_tls(&pki, &dir, false, config);
    let client_config = pki.client_config(None);
    let mut clients = tls_join_room(server.addr, &client_config, 3);
    // Each one speaks in turn; the others hear it exactly, in order, binary-safe.
    for from in 0..3 {
        for round in 0..3 {
            let mut message = binary_message(from);
            message.push(round);
            clients = relay(clients, from, Arc::new(message));
        }
    }
    // One 16 MiB write: each receiver gets every byte, in order.
    let big = Arc::new(Pattern::bytes(1, 0, 16 << 20));
    clients = relay(clients, 1, big);
    // Nothing else arrived: the next message is the very next thing everyone reads.
    clients = relay(clients, 2, Arc::new(b"after the big one".to_vec()));
    drop(clients);
    let summary = server.stop();
    assert_eq!(summary.accepted, 3);
    assert_eq!(summary.handshakes_failed, 0);
}

#[test]
fn three_tls_clients_relay_binary_safe_and_in_order_including_16_mib() {
    three_clients_relay_through_tls(Config::default());
}

/// A read buffer smaller than a TLS record: plaintext left inside the link must come out on the
/// next turns, without waiting for the socket.
#[test]
fn a_small_read_buffer_leaves_nothing_behind_in_the_link() {
    three_clients_relay_through_tls(Config {
        read_buffer: 777,
        ..Config::default()
    });
}

#[test]
fn a_plaintext_client_on_the_tls_port_is_dropped_and_the_others_are_unaffected() {
    let (pki, dir) = (TestPki::new(), TempDir::new());
    let server = start_tls(&pki, &dir, false, Config::default());
    let client_config = pki.client_config(None);
    let mut clients = tls_join_room(server.addr, &client_config, 2);
    let mut plain = connect(server.addr);
    plain
        .write_all(b"hello, is this the chat?\n")
        .expect("plaintext write");
    // The server answers with an alert at most, then closes; never a relayed chunk.
    expect_closed(&mut plain);
    assert!(server.logs.wait_for_count("handshake failed", 1));
    // The TLS clients go on as if nothing happened.
    clients[0].write_all(b"still here").unwrap();
    clients[0].flush().unwrap();
    relay_tests::expect_bytes(&mut clients[1], b"still here");
    clients[1].write_all(b"me too").unwrap();
    clients[1].flush().unwrap();
    relay_tests::expect_bytes(&mut clients[0], b"me too");
    drop(clients);
    let logs = server.logs.clone();
    let summary = server.stop();
    assert_eq!(summary.handshakes_failed, 1);
    assert_eq!(summary.errors, 0);
    assert_eq!(
        logs.count("handshake failed"),
        1,
        "one line for the dropped client"
    );
}

#[test]
fn a_client_that_stalls_mid_handshake_is_cut_after_the_timeout() {
    let (pki, dir) = (TestPki::new(), TempDir::new());
    let timeout = Duration::from_millis(1500);
    let server = start_tls(
        &pki,
        &dir,
        false,
        Config {
            handshake_timeout: timeout,
            ..Config::default()
        },
    );
    let client_config = pki.client_config(None);
    let mut members = tls_join_room(server.addr, &client_config, 2);
    let started = Instant::now();
    let mut staller = connect(server.addr);
    // The first bytes of a ClientHello record header, and then nothing.
    staller.write_all(&[0x16, 0x03, 0x01]).unwrap();
    expect_closed(&mut staller);
    let waited = started.elapsed();
    assert!(
        waited >= timeout,
        "cut after {waited:?}, before the {timeout:?} timeout"
    );
    assert!(server.logs.wait_for_count("handshake timeout", 1));
    // The room was never disturbed.
    members[0].write_all(b"unbothered").unwrap();
    members[0].flush().unwrap();
    relay_tests::expect_bytes(&mut members[1], b"unbothered");
    drop(members);
    let summary = server.stop();
    assert_eq!(summary.handshakes_failed, 1);
}

/// The one thing a client without an acceptable certificate may see: its handshake refused.
fn refused(stream: std::io::Result<TlsStream>) {
    match stream {
        // TLS 1.2 fails in the handshake itself.
        Err(_) => {}
        // TLS 1.3: the client finishes first, and learns of the refusal on its first read.
        Ok(mut stream) => {
            let _ = stream.write_all(b"let me in");
            let _ = stream.flush();
            let mut buf = [0; 64];
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => {}
                Ok(n) => panic!("a refused client read {n} bytes"),
            }
            tls_expect_closed(&mut stream);
        }
    }
}

#[test]
fn mutual_tls_admits_certified_clients_and_refuses_the_rest() {
    let (pki, dir) = (TestPki::new(), TempDir::new());
    let server = start_tls(&pki, &dir, true, Config::default());
    let alice = pki.client("alice");
    let bob = pki.client("bob");
    let mut members = vec![
        tls_connect(server.addr, &pki.client_config(Some(&alice))).expect("alice"),
        tls_connect(server.addr, &pki.client_config(Some(&bob))).expect("bob"),
    ];
    relay_tests::sync_room(&mut members);

    // No certificate at all.
    refused(tls_connect(server.addr, &pki.client_config(None)));
    assert!(server.logs.wait_for_count("handshake failed", 1));
    // A certificate from a CA the server does not trust.
    let stranger_ca = TestPki::named("another CA");
    let mallory = stranger_ca.client("mallory");
    // It trusts the server's CA, so only the server can object.
    let mixed: Arc<ClientConfig> = pki.client_config(Some(&mallory));
    refused(tls_connect(server.addr, &mixed));
    assert!(server.logs.wait_for_count("handshake failed", 2));

    // The certified members never noticed.
    members[1].write_all(b"just us").unwrap();
    members[1].flush().unwrap();
    relay_tests::expect_bytes(&mut members[0], b"just us");
    drop(members);
    let summary = server.stop();
    assert_eq!(summary.accepted, 4);
    assert_eq!(summary.handshakes_failed, 2);
}

#[test]
fn access_lists_refuse_before_the_handshake_for_either_family() {
    let (pki, dir) = (TestPki::new(), TempDir::new());
    let files = pki.write(dir.path());
    let tls_files = TlsFiles {
        cert: files.cert,
        key: files.key,
        client_ca: None,
    };
    let v6 = TcpListener::bind("[::1]:0")
        .expect("this test needs an IPv6 loopback (::1), which this machine lacks");
    // Allow only IPv4 loopback: ::1 is refused at once, without a byte of TLS.
    let list = AccessList::new(vec!["127.0.0.0/8".parse().unwrap()], vec![]);
    let acceptor = Gated::new(
        Entry::Tls(TlsAcceptor::from_files(&tls_files).unwrap()),
        list,
    );
    let server = TestServer::start_on(
        v6,
        backend_polling::PollingBackend::new,
        acceptor,
        Config::default(),
    );
    for _ in 0..3 {
        let mut refused = TcpStream::connect(server.addr).unwrap();
        refused
            .set_read_timeout(Some(relay_tests::TIMEOUT))
            .unwrap();
        assert_eq!(expect_closed(&mut refused), 0, "a refused client got bytes");
    }
    assert!(server.logs.wait_for_count("access list", 1));
    let logs = server.logs.clone();
    let summary = server.stop();
    assert_eq!(summary.refused_by_acceptor, 3);
    assert_eq!(summary.accepted, 0);
    assert_eq!(summary.handshakes_failed, 0);
    // Three refusals of one address within a minute: one line.
    assert_eq!(logs.count("access list"), 1);
}
