//! The loop driven by hand: a scripted backend reports the events the test chooses, in the order
//! it chooses, and the test's links read with a bounded block so no test waits on timing.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::Engine;
use crate::backend::{
    AsBorrowedSocket, Backend, BorrowedSocket, Event, Events, Interest, Token, Wake,
};
use crate::config::Config;
use crate::event_loop::Door;
use crate::framing::{Framing, LineOptions};
use crate::link::{Acceptor, Admission, Delimiting, Encoding, Link, Uplink, UplinkStats};

/// Every socket wait in these tests gives up after this long.
const PATIENCE: Duration = Duration::from_secs(10);

/// A backend that registers nothing and reports, at each wait, the next list of events the test
/// queued (none once they run out).
#[derive(Debug, Default)]
struct Scripted {
    turns: VecDeque<Vec<Event>>,
}

impl Scripted {
    fn then(&mut self, tokens: &[Token]) {
        let events = tokens
            .iter()
            .map(|&token| Event {
                token,
                readable: true,
                writable: false,
            })
            .collect();
        self.turns.push_back(events);
    }
}

#[derive(Debug, Clone)]
struct NoWaker;

impl Wake for NoWaker {
    fn wake(&self) -> io::Result<()> {
        Ok(())
    }
}

impl Backend for Scripted {
    type Waker = NoWaker;
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn register(&mut self, _: BorrowedSocket<'_>, _: Token, _: Interest) -> io::Result<()> {
        Ok(())
    }
    fn reregister(&mut self, _: BorrowedSocket<'_>, _: Token, _: Interest) -> io::Result<()> {
        Ok(())
    }
    fn deregister(&mut self, _: BorrowedSocket<'_>) -> io::Result<()> {
        Ok(())
    }
    fn wait(&mut self, events: &mut Events, _: Option<Duration>) -> io::Result<()> {
        events.clear();
        for event in self.turns.pop_front().unwrap_or_default() {
            events.push(event);
        }
        Ok(())
    }
    fn waker(&self) -> NoWaker {
        NoWaker
    }
}

/// A stream whose reads block up to [`PATIENCE`]: a scripted "readable" is then true by the time
/// the engine reads, however slowly loopback delivers.
fn patient(stream: TcpStream) -> TcpStream {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Admits plain TCP links that read patiently.
struct Patient;

impl Acceptor for Patient {
    type Link = TcpStream;
    fn accept(&mut self, stream: TcpStream, _: SocketAddr) -> io::Result<Admission<TcpStream>> {
        Ok(Admission::Admit(patient(stream)))
    }
}

fn engine_with<A: Acceptor + 'static>(config: Config, acceptor: A) -> (Engine, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let door = Door::new(listener, Box::new(acceptor));
    let mut backend = Scripted::default();
    door.open(0, &mut backend).unwrap();
    (
        Engine::new(config, vec![door], None, None, Instant::now()),
        addr,
    )
}

fn client(addr: SocketAddr) -> TcpStream {
    patient(TcpStream::connect(addr).unwrap())
}

fn read_exactly(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0; n];
    stream
        .read_exact(&mut got)
        .expect("bytes within the patience");
    got
}

fn line_config(announce: bool) -> Config {
    Config {
        framing: Framing::Lines(LineOptions {
            announce,
            ..LineOptions::default()
        }),
        ..Config::default()
    }
}

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

/// A link that joins only after its client sends `knock\n`, and answers `welcome\n` from a
/// buffer of its own: the shape of a TLS handshake without the cryptography.
#[derive(Debug)]
struct KnockLink {
    stream: TcpStream,
    knocked: bool,
    own: Vec<u8>,
}

impl AsBorrowedSocket for KnockLink {
    fn borrowed(&self) -> BorrowedSocket<'_> {
        self.stream.borrowed()
    }
    fn raw_number(&self) -> u64 {
        self.stream.raw_number()
    }
}

impl Link for KnockLink {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.knocked {
            return self.stream.read(buf);
        }
        let mut heard = [0; 6];
        self.stream.read_exact(&mut heard)?;
        if &heard != b"knock\n" {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "wrong knock"));
        }
        self.knocked = true;
        self.own.extend_from_slice(b"welcome\n");
        Err(io::ErrorKind::WouldBlock.into())
    }
    fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        assert!(
            self.knocked,
            "application bytes sent before the link was established"
        );
        self.stream.write_vectored(bufs)
    }
    fn flush_own(&mut self) -> io::Result<()> {
        let n = self.stream.write(&self.own)?;
        self.own.drain(..n);
        Ok(())
    }
    fn wants_write(&self) -> bool {
        !self.own.is_empty()
    }
    fn is_established(&self) -> bool {
        self.knocked
    }
}

/// Admits knock links, refusing every peer whose port is in `refuse`.
struct Knock {
    refuse: Vec<u16>,
}

impl Acceptor for Knock {
    type Link = KnockLink;
    fn accept(&mut self, stream: TcpStream, peer: SocketAddr) -> io::Result<Admission<KnockLink>> {
        if self.refuse.contains(&peer.port()) {
            return Ok(Admission::Refuse);
        }
        Ok(Admission::Admit(KnockLink {
            stream: patient(stream),
            knocked: false,
            own: Vec::new(),
        }))
    }
}

/// An uplink whose two ends the test holds.
#[derive(Default)]
struct Loop {
    incoming: Rc<RefCell<Vec<Vec<u8>>>>,
    published: Rc<RefCell<Vec<Vec<u8>>>>,
}

impl Uplink for Loop {
    fn describe(&self) -> String {
        "a test loop".into()
    }
    fn publish(&mut self, message: &[u8]) {
        self.published.borrow_mut().push(message.to_vec());
    }
    fn receive(&mut self) -> Option<Vec<u8>> {
        let mut incoming = self.incoming.borrow_mut();
        (!incoming.is_empty()).then(|| incoming.remove(0))
    }
    fn stats(&self) -> UplinkStats {
        UplinkStats {
            published: self.published.borrow().len() as u64,
            unpublished: 0,
        }
    }
}

#[test]
fn links_join_once_established_uplink_flows_both_ways_stalled_handshakes_are_cut() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = TcpStream::connect(addr).unwrap();
    let acceptor = Knock {
        refuse: vec![refused.local_addr().unwrap().port()],
    };
    let config = Config {
        handshake_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    let mut backend = Scripted::default();
    let door = Door::new(listener, Box::new(acceptor));
    door.open(0, &mut backend).unwrap();
    let uplink = Loop::default();
    let (incoming, published) = (uplink.incoming.clone(), uplink.published.clone());
    let mut engine = Engine::new(
        config,
        vec![door],
        Some(Box::new(uplink)),
        None,
        Instant::now(),
    );

    let mut knocker = client(addr);
    let mut staller = client(addr);
    backend.then(&[Token::LISTENER]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(engine.summary.refused_by_acceptor, 1);
    assert_eq!(engine.pool.len(), 2);
    assert_eq!(engine.handshaking, 2);
    assert!(
        engine.timers.next_wake(None).is_some(),
        "handshakes pending, yet no sweep scheduled"
    );

    // Before anyone is established, the room reaches no one.
    incoming.borrow_mut().push(b"early\n".to_vec());
    backend.then(&[]);
    engine.turn(&mut backend).unwrap();
    assert!(engine.pool.iter_mut().all(|(_, c)| c.queue.is_empty()));

    knocker.write_all(b"knock\n").unwrap();
    backend.then(&[Token(0)]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(engine.handshaking, 1);
    assert_eq!(read_exactly(&mut knocker, 8), b"welcome\n");

    incoming.borrow_mut().push(b"from afar\n".to_vec());
    backend.then(&[]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(read_exactly(&mut knocker, 10), b"from afar\n");
    assert_eq!(engine.summary.cluster_in, 2);

    knocker.write_all(b"hi all\n").unwrap();
    backend.then(&[Token(0)]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(engine.summary.messages_in, 1);
    assert_eq!(*published.borrow(), vec![b"hi all\n".to_vec()]);

    // The staller never knocks: one sweep past the deadline cuts it, and only it.
    engine.now += Duration::from_secs(5);
    engine.sweep_if_due();
    engine.reap(&mut backend);
    assert!(engine.pool.get(Token(1)).is_none());
    assert!(engine.pool.get(Token(0)).is_some());
    assert_eq!(engine.summary.handshakes_failed, 1);
    assert_eq!(engine.handshaking, 0);
    assert!(
        engine.timers.next_wake(None).is_none(),
        "nothing pending, yet a sweep is scheduled"
    );
    let mut buf = [0; 16];
    assert_eq!(staller.read(&mut buf).expect("EOF within the patience"), 0);
}

#[test]
fn a_wrong_knock_is_a_failed_handshake() {
    let (mut engine, addr) = engine_with(Config::default(), Knock { refuse: vec![] });
    let mut backend = Scripted::default();
    let mut client = client(addr);
    backend.then(&[Token::LISTENER]);
    engine.turn(&mut backend).unwrap();
    client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    backend.then(&[Token(0)]);
    engine.turn(&mut backend).unwrap();
    assert!(engine.pool.is_empty());
    assert_eq!(engine.summary.handshakes_failed, 1);
    assert_eq!(engine.summary.errors, 0);
    assert_eq!(engine.handshaking, 0);
}

/// How many times the test's framed encoding ran.
static ENCODED: AtomicUsize = AtomicUsize::new(0);

/// One length byte before each line: a message-framed wire in miniature.
fn length_prefixed(message: &[u8], lines: bool, out: &mut Vec<u8>) {
    ENCODED.fetch_add(1, Ordering::SeqCst);
    assert!(lines, "this test runs in line mode");
    for line in message.split_inclusive(|&b| b == b'\n') {
        out.push(u8::try_from(line.len()).unwrap());
        out.extend_from_slice(line);
    }
}

/// A link whose every read is one whole message and whose wire is length-prefixed lines.
#[derive(Debug)]
struct FramedLink(TcpStream);

impl AsBorrowedSocket for FramedLink {
    fn borrowed(&self) -> BorrowedSocket<'_> {
        self.0.borrowed()
    }
    fn raw_number(&self) -> u64 {
        self.0.raw_number()
    }
}

impl Link for FramedLink {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
    fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(bufs)
    }
    fn delimiting(&self) -> Delimiting {
        Delimiting::Messages
    }
    fn encoding(&self) -> Encoding {
        Encoding {
            id: 7,
            encode: length_prefixed,
        }
    }
}

/// Plain TCP on the first door, framed links on the second: one room.
struct Framed;

impl Acceptor for Framed {
    type Link = FramedLink;
    fn accept(&mut self, stream: TcpStream, _: SocketAddr) -> io::Result<Admission<FramedLink>> {
        Ok(Admission::Admit(FramedLink(patient(stream))))
    }
}

/// One room, two doors, two kinds of link: a plain client's lines reach framed clients encoded
/// once for both, and a framed client's message (no newline) reaches the plain client as a line.
#[test]
fn one_room_holds_links_of_two_doors_and_encodes_each_message_once() {
    let plain_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let framed_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (plain_addr, framed_addr) = (
        plain_listener.local_addr().unwrap(),
        framed_listener.local_addr().unwrap(),
    );
    let mut backend = Scripted::default();
    let doors = vec![
        Door::new(plain_listener, Box::new(Patient)),
        Door::new(framed_listener, Box::new(Framed)),
    ];
    for (index, door) in doors.iter().enumerate() {
        door.open(index, &mut backend).unwrap();
    }
    let mut engine = Engine::new(line_config(false), doors, None, None, Instant::now());
    let mut plain = client(plain_addr);
    let mut framed = [client(framed_addr), client(framed_addr)];
    backend.then(&[Token::LISTENER, Token::door(1)]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(engine.pool.len(), 3);

    let before = ENCODED.load(Ordering::SeqCst);
    plain.write_all(b"a\nbc\n").unwrap();
    backend.then(&[Token(0)]);
    engine.turn(&mut backend).unwrap();
    for receiver in &mut framed {
        assert_eq!(read_exactly(receiver, 7), b"\x02a\n\x03bc\n");
    }
    assert_eq!(
        ENCODED.load(Ordering::SeqCst) - before,
        1,
        "encoded once per message"
    );

    framed[0].write_all(b"hi").unwrap();
    backend.then(&[Token(1)]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(read_exactly(&mut plain, 3), b"hi\n");
    assert_eq!(read_exactly(&mut framed[1], 4), b"\x03hi\n");
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
