// Fair shares (included by each backend's test binary, like behaviour.rs): seats per address,
// a rate per sender, and idle clients cut.

use server_core::Rate;

/// A client connected from `source` (any 127.0.0.0/8 address) to the server.
fn connect_from(source: &str, server: std::net::SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&source.into()).unwrap();
    socket
        .connect_timeout(&server.into(), std::time::Duration::from_secs(10))
        .unwrap();
    socket.into()
}

#[test]
fn one_address_takes_at_most_its_seats_and_others_still_get_in() {
    let server = start(Config {
        max_per_address: Some(2),
        ..Config::default()
    });
    let mut first = join_room(server.addr, 2);
    let mut third = connect(server.addr);
    assert_eq!(expect_closed(&mut third), 0, "a third client from 127.0.0.1 got data");
    assert!(server.logs.wait_for_count("too many clients from 127.0.0.1", 1));
    // Another address still gets in, and hears the room.
    first.push(connect_from("127.0.0.2", server.addr));
    sync_room(&mut first);
    // A seat freed is a seat offered again: the newcomer's probe reaches the room.
    drop(first.remove(0));
    assert!(server.logs.wait_for_count("Connection closed", 1));
    first.push(connect(server.addr));
    sync_room(&mut first);
    let summary = server.stop();
    assert_eq!(summary.refused_per_address, 1, "{summary}");
    assert_eq!(summary.accepted, 4, "{summary}");
}

#[test]
fn a_sender_over_its_rate_is_slowed_not_cut_and_others_are_unaffected() {
    const FLOOD: usize = 512 * 1024;
    let server = start(Config {
        max_rate: Some(Rate {
            bytes_per_sec: 256 * 1024,
            burst: 64 * 1024,
        }),
        ..Config::default()
    });
    let clients = join_room(server.addr, 3);
    let [flooder, mut polite, mut reader]: [TcpStream; 3] = clients.try_into().unwrap();
    let flood = thread::spawn(move || {
        let mut flooder = flooder;
        flooder.write_all(&Pattern::bytes(0, 0, FLOOD)).unwrap();
        flooder
    });
    // The polite sender stays within its allowance: its message is not held behind the flood.
    polite.write_all(&Pattern::bytes(1, 0, 100)).unwrap();
    let mut demux = Demux::expecting(2, None, FLOOD);
    let mut buf = vec![0; 4096];
    reader
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    while demux.seen[1] < 100 {
        let n = reader.read(&mut buf).expect("the polite message within the bound");
        assert!(n > 0, "the reader was closed");
        demux.feed(&buf[..n]).unwrap();
    }
    assert!(
        demux.seen[0] < FLOOD,
        "the whole flood arrived before a polite message sent after it began"
    );
    // Every byte of the flood arrives, in order.
    let rest = receive_pattern(&mut reader, FLOOD - demux.seen[0]);
    assert_eq!(demux.seen[0] + rest.seen[0], FLOOD);
    let _flooder = flood.join().unwrap();
    let summary = server.stop();
    assert!(summary.rate_waits > 0, "the flooder was never slowed: {summary}");
    assert_eq!((summary.slow_consumers, summary.errors), (0, 0), "{summary}");
}

#[test]
fn an_idle_client_is_cut_after_the_idle_timeout() {
    let server = start(Config {
        idle_timeout: Some(std::time::Duration::from_millis(300)),
        ..Config::default()
    });
    let mut idle = connect(server.addr);
    assert_eq!(expect_closed(&mut idle), 0);
    assert!(server.logs.wait_for_count("idle timeout", 1));
    let summary = server.stop();
    assert_eq!(summary.idle_timeouts, 1, "{summary}");
}
