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

/// A client that is itself behind (more than the budget queued for it) is read on while the
/// room is held back: such a client is often blocked writing to us and reads nothing until that
/// write completes, so pausing it would make the room wait for it to read while it waits for us
/// to read. Issue 17: with small socket buffers, fan-outs stalled a grace period at a time.
#[test]
fn a_sender_behind_on_its_own_output_is_not_paused() {
    let pace = crate::pace::Pace {
        light: 1024,
        ..crate::pace::Pace::default()
    };
    let config = Config {
        pace,
        max_pending: 64 << 20,
        ..Config::default()
    };
    let (mut engine, addr) = engine_with(config, PatientReadsBriefWrites);
    let mut backend = Scripted::default();
    let mut writer = client(addr);
    let _behind = client(addr);
    let _source = client(addr);
    backend.then(&[Token::LISTENER]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(engine.pool.len(), 3);

    // More for the first two than their socket buffers hold: both stay over the budget, within
    // the grace, so both hold the room back.
    engine.fan_out(Token(2), Rc::from(vec![7u8; 16 << 20]), 1);
    engine.flush_dirty(&mut backend);
    assert!(engine.room_held_back());
    for token in [Token(0), Token(1)] {
        let conn = engine.pool.get(token).unwrap();
        assert!(
            conn.standing.is_over(),
            "{token:?} caught up: grow the chunk"
        );
    }

    // The first writes several times the light allowance; each turn reads some of it.
    let sent = 4 * pace.light;
    writer.write_all(&vec![1u8; sent]).unwrap();
    let bytes_in = engine.summary.bytes_in;
    for _ in 0..sent / pace.light * 2 {
        backend.then(&[Token(0)]);
        engine.turn(&mut backend).unwrap();
        if engine.summary.bytes_in - bytes_in == sent as u64 {
            break;
        }
    }
    let conn = engine.pool.get(Token(0)).unwrap();
    assert!(
        !conn.read_paused,
        "paused although behind on its own output"
    );
    assert_eq!(engine.summary.bytes_in - bytes_in, sent as u64);
}

/// Admits plain TCP links that read patiently and give up on a write that cannot go on after a
/// moment, as a full non-blocking socket would at once (`EAGAIN` on Linux and macOS; Windows
/// would say `TimedOut`, and this acceptor is only for tests of full queues on Unix-like hosts).
struct PatientReadsBriefWrites;

impl Acceptor for PatientReadsBriefWrites {
    type Link = TcpStream;
    fn accept(&mut self, stream: TcpStream, _: SocketAddr) -> io::Result<Admission<TcpStream>> {
        let stream = patient(stream);
        stream.set_write_timeout(Some(Duration::from_millis(20)))?;
        Ok(Admission::Admit(stream))
    }
}
