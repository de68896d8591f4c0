//! Admissions, departures, socket options and the senders' shares, driven turn by turn.

use super::*;

/// A newcomer who connects as the members of a full room hang up is let in, even when the
/// backend reports the listener before the hang-ups in the same wakeup (issue 14: it was refused
/// `server full` while the departures sat unread in that wakeup).
#[test]
fn a_newcomer_arriving_as_a_full_room_empties_gets_in() {
    let config = Config {
        max_clients: 2,
        ..Config::default()
    };
    let (mut engine, addr) = engine_with(config, Patient);
    let mut backend = Scripted::default();
    let members = [client(addr), client(addr)];
    backend.then(&[Token::LISTENER]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(engine.pool.len(), 2);

    drop(members);
    let _newcomer = client(addr);
    backend.then(&[Token::LISTENER, Token(0), Token(1)]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(engine.summary.refused_full, 0, "the newcomer was refused");
    assert_eq!(engine.summary.peer_closed, 2);
    assert_eq!(engine.summary.accepted, 3);
    assert_eq!(engine.pool.len(), 1);
}

/// A client whose reset is only discovered by a failing write, in the middle of flushing the
/// room, is announced as gone, and the notice is flushed to the others in that same phase.
#[test]
fn a_departure_found_while_flushing_reaches_the_others() {
    let (mut engine, addr) = engine_with(line_config(true), Patient);
    let mut backend = Scripted::default();
    let mut watcher = client(addr);
    let leaver = client(addr);
    backend.then(&[Token::LISTENER]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(read_exactly(&mut watcher, 11), b"* 2 joined\n");
    // The leaver gets a line it never reads, so closing it sends a reset.
    engine.fan_out(Token(0), Rc::from(&b"unread\n"[..]), 1);
    engine.flush_dirty(&mut backend);
    drop(leaver);
    // More for the leaver: only the write finds out it is gone.
    engine.fan_out(Token(0), Rc::from(&b"again\n"[..]), 1);
    engine.flush_dirty(&mut backend);
    assert!(
        engine.pool.get(Token(1)).is_none(),
        "the reset was not seen"
    );
    assert_eq!(read_exactly(&mut watcher, 9), b"* 2 left\n");
    // And the watcher is not stuck: later notices reach it as well.
    let _third = client(addr);
    backend.then(&[Token::LISTENER]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(read_exactly(&mut watcher, 11), b"* 3 joined\n");
}

/// Keepalive is on for every accepted socket by default, so a peer that vanished is found.
#[test]
fn accepted_sockets_have_keepalive_on() {
    let (mut engine, addr) = engine_with(Config::default(), Patient);
    let mut backend = Scripted::default();
    let _client = client(addr);
    backend.then(&[Token::LISTENER]);
    engine.turn(&mut backend).unwrap();
    let conn = engine.pool.get(Token(0)).expect("admitted");
    let socket = conn.link.borrowed();
    assert!(socket2::SockRef::from(&socket).keepalive().unwrap());

    let config = Config {
        keepalive: None,
        ..Config::default()
    };
    let (mut engine, addr) = engine_with(config, Patient);
    let _client = client(addr);
    backend.then(&[Token::LISTENER]);
    engine.turn(&mut backend).unwrap();
    let conn = engine.pool.get(Token(0)).expect("admitted");
    let socket = conn.link.borrowed();
    assert!(!socket2::SockRef::from(&socket).keepalive().unwrap());
}

/// Senders reported in the same order at every wakeup (as `select` reports descriptors) get
/// equal shares while the pace holds the room back. The first read of a turn happens before the
/// room is held back and takes a whole read buffer, the later ones only a light sender's
/// allowance; without rotating which sender goes first, the lowest descriptor took about four
/// times its share (a loaded chat-bench run on the select backend showed it).
#[test]
fn senders_reported_in_a_fixed_order_get_equal_shares_under_the_pace() {
    let config = Config {
        read_buffer: 2048,
        pace: crate::Pace {
            budget: 500,
            light: 50,
            grace: Duration::from_secs(3600),
        },
        ..Config::default()
    };
    let (mut engine, addr) = engine_with(config, Patient);
    let mut backend = Scripted::default();
    let mut senders: Vec<TcpStream> = (0..3).map(|_| client(addr)).collect();
    let _reader = client(addr);
    backend.then(&[Token::LISTENER]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(engine.pool.len(), 4);
    // Enough for 12 turns even if one sender took every first read.
    for sender in &mut senders {
        sender.write_all(&[b'x'; 32 * 1024]).unwrap();
    }
    let order = [Token(0), Token(1), Token(2)];
    for _ in 0..12 {
        backend.then(&order);
        engine.turn(&mut backend).unwrap();
    }
    let shares: Vec<u64> = order
        .iter()
        .map(|&t| engine.pool.get(t).expect("still a member").bytes_in)
        .collect();
    let (least, most) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
    assert!(
        *least > 0 && most * 2 <= least * 3,
        "bytes read per sender: {shares:?}"
    );
}
