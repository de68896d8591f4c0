//! Service doors: their connections are answered from a view of the engine and never join the
//! room, whatever the room does.

use super::*;
use crate::event_loop::services::SERVICE_BASE;
use crate::service::{Answer, Service, ServiceLimits, Then, View};

/// Answers each line: `bye` with `ok` and a close, `join` with `welcome` and a join (its link
/// then greets with the reply before anything else), anything else with the room's client count.
struct Counter;

/// A joined connection: writes the service's last reply before the room's bytes.
struct Greeted {
    inner: Box<dyn Link>,
    reply: Vec<u8>,
}

impl AsBorrowedSocket for Greeted {
    fn borrowed(&self) -> BorrowedSocket<'_> {
        self.inner.borrowed()
    }
    fn raw_number(&self) -> u64 {
        self.inner.raw_number()
    }
}

impl Link for Greeted {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.recv(buf)
    }
    fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.flush_own()?;
        if !self.reply.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.inner.send(bufs)
    }
    fn flush_own(&mut self) -> io::Result<()> {
        while !self.reply.is_empty() {
            let n = self.inner.send(&[IoSlice::new(&self.reply)])?;
            self.reply.drain(..n);
        }
        Ok(())
    }
    fn wants_write(&self) -> bool {
        !self.reply.is_empty()
    }
}

impl Service for Counter {
    fn answer(&mut self, input: &[u8], view: &View<'_>, out: &mut Vec<u8>) -> Answer {
        let mut consumed = 0;
        while let Some(end) = input[consumed..].iter().position(|&b| b == b'\n') {
            let line = &input[consumed..consumed + end];
            consumed += end + 1;
            if line == b"bye" {
                out.extend_from_slice(b"ok\n");
                return Answer {
                    consumed,
                    then: Then::Close,
                };
            }
            if line == b"join" {
                out.extend_from_slice(b"welcome\n");
                return Answer {
                    consumed,
                    then: Then::Join,
                };
            }
            out.extend_from_slice(format!("clients={}\n", view.clients()).as_bytes());
        }
        Answer {
            consumed,
            then: Then::Keep,
        }
    }

    fn join(
        &mut self,
        inner: Box<dyn Link>,
        input: Vec<u8>,
        reply: Vec<u8>,
    ) -> io::Result<Box<dyn Link>> {
        assert!(input.is_empty(), "bytes after `join`: {input:?}");
        Ok(Box::new(Greeted { inner, reply }))
    }
}

/// An engine with a room door (0) and a [`Counter`] service door (1), both admitting patient
/// plain TCP: the engine, its backend and the two doors' addresses.
fn room_and_counter(config: Config) -> (Engine, Scripted, SocketAddr, SocketAddr) {
    let room = TcpListener::bind("127.0.0.1:0").unwrap();
    let room_addr = room.local_addr().unwrap();
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let service_addr = service.local_addr().unwrap();
    let mut backend = Scripted::default();
    let doors = vec![
        Door::new(room, Box::new(Patient)),
        Door::new(service, Box::new(Patient)),
    ];
    for (index, door) in doors.iter().enumerate() {
        door.open(index, &mut backend).unwrap();
    }
    let handlers: Vec<Option<Box<dyn Service>>> = vec![None, Some(Box::new(Counter))];
    let engine = Engine::new(config, doors, None, None, Instant::now()).with_services(
        handlers,
        ServiceLimits::default(),
        "scripted",
    );
    (engine, backend, room_addr, service_addr)
}

#[test]
fn a_service_connection_is_answered_and_never_joins_the_room() {
    let config = Config {
        max_clients: 1,
        ..Config::default()
    };
    let (mut engine, mut backend, room_addr, service_addr) = room_and_counter(config);

    let mut member = client(room_addr);
    backend.then(&[Token::door(0)]);
    engine.turn(&mut backend).unwrap();
    // The room is full (max_clients 1), and the service door still lets its connection in.
    let mut operator = client(service_addr);
    backend.then(&[Token::door(1)]);
    engine.turn(&mut backend).unwrap();
    assert_eq!((engine.pool.len(), engine.summary.refused_full), (1, 0));

    // The member talks: nobody else is in the room, and the operator receives none of it.
    member.write_all(b"chat").unwrap();
    backend.then(&[Token(0)]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(
        engine.summary.messages_queued, 0,
        "fan-out reached a service connection"
    );

    // Two requests in one read are answered in order; the first bytes the operator gets are
    // the answers, so no chat reached it before them.
    let service_token = Token(SERVICE_BASE);
    operator.write_all(b"?\n?\n").unwrap();
    backend.then(&[service_token]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(read_exactly(&mut operator, 20), b"clients=1\nclients=1\n");

    // `bye`: answered, then closed.
    operator.write_all(b"bye\n").unwrap();
    backend.then(&[service_token]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(read_exactly(&mut operator, 3), b"ok\n");
    let mut rest = Vec::new();
    operator.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "more after the close: {rest:?}");
    assert_eq!(engine.pool.len(), 1, "the member stays");
    assert_eq!(
        engine.summary.accepted, 1,
        "a service connection counted as a client"
    );
}

/// A service can hand a connection to the room (a WebSocket upgrade): it leaves the service
/// pool, is seated as a member under the room's rules, writes the service's reply first, and
/// then chats both ways.
#[test]
fn a_service_connection_that_joins_becomes_a_member_greeted_first() {
    let (mut engine, mut backend, room_addr, service_addr) = room_and_counter(Config::default());

    let mut member = client(room_addr);
    backend.then(&[Token::door(0)]);
    engine.turn(&mut backend).unwrap();
    let mut web = client(service_addr);
    backend.then(&[Token::door(1)]);
    engine.turn(&mut backend).unwrap();
    // Before it joins, what the member says does not reach it.
    member.write_all(b"before").unwrap();
    backend.then(&[Token(0)]);
    engine.turn(&mut backend).unwrap();

    web.write_all(b"join\n").unwrap();
    backend.then(&[Token(SERVICE_BASE)]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(
        read_exactly(&mut web, 8),
        b"welcome\n",
        "the reply comes first"
    );
    assert_eq!(
        (
            engine.pool.len(),
            engine.services.pool.len(),
            engine.services.open[1]
        ),
        (2, 0, 0),
        "it moved from the service pool to the room"
    );
    assert_eq!(engine.summary.accepted, 2);

    // It chats both ways under its room token (the next free one).
    web.write_all(b"hello").unwrap();
    backend.then(&[Token(1)]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(read_exactly(&mut member, 5), b"hello");
    member.write_all(b"back").unwrap();
    backend.then(&[Token(0)]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(
        read_exactly(&mut web, 4),
        b"back",
        "it got what the member said after it joined, and nothing from before"
    );
}

/// Refuses everyone, as an access list would refuse a peer.
struct RefuseAll;

impl Acceptor for RefuseAll {
    type Link = TcpStream;
    fn accept(&mut self, _: TcpStream, _: SocketAddr) -> io::Result<Admission<TcpStream>> {
        Ok(Admission::Refuse)
    }
}

/// An engine with one service door (`acceptor`, at most one connection): the engine and the
/// door's address.
fn one_service_door<A: Acceptor + 'static>(acceptor: A) -> (Engine, SocketAddr) {
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = service.local_addr().unwrap();
    let door = Door::new(service, Box::new(acceptor));
    door.open(0, &mut Scripted::default()).unwrap();
    let limits = ServiceLimits {
        max_connections: 1,
        ..ServiceLimits::default()
    };
    let handlers: Vec<Option<Box<dyn Service>>> = vec![Some(Box::new(Counter))];
    let engine = Engine::new(Config::default(), vec![door], None, None, Instant::now())
        .with_services(handlers, limits, "scripted");
    (engine, addr)
}

/// Connections turned away at a service door are counted by reason: by its acceptor, and past
/// its connection limit (a service's own answers, a 401 say, are not refusals).
#[test]
fn service_door_refusals_are_counted_by_reason() {
    use crate::service::ServiceRefusals;
    let (mut engine, addr) = one_service_door(RefuseAll);
    let mut backend = Scripted::default();
    let _refused = client(addr);
    backend.then(&[Token::door(0)]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(
        engine.services.refused,
        ServiceRefusals {
            access_list: 1,
            too_many: 0
        }
    );

    let (mut engine, addr) = one_service_door(Patient);
    let _first = client(addr);
    let _second = client(addr);
    backend.then(&[Token::door(0)]);
    engine.turn(&mut backend).unwrap();
    assert_eq!(
        engine.services.refused,
        ServiceRefusals {
            access_list: 0,
            too_many: 1
        }
    );
}
