//! Admissions, departures and socket options, driven turn by turn.

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
