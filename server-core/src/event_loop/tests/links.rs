//! Layered links (a handshake), an uplink, and message-framed links beside plain ones.

use std::cell::RefCell;

use super::*;

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

/// A link with a heartbeat of its own: a probe at each beat, and silence since the last probe
/// fails it (what a WebSocket ping does).
struct BeatingLink {
    stream: TcpStream,
    beats: usize,
}

impl AsBorrowedSocket for BeatingLink {
    fn borrowed(&self) -> BorrowedSocket<'_> {
        self.stream.borrowed()
    }
    fn raw_number(&self) -> u64 {
        self.stream.raw_number()
    }
}

impl Link for BeatingLink {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
    fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.stream.write_vectored(bufs)
    }
    fn heartbeat_interval(&self) -> Option<Duration> {
        Some(Duration::ZERO) // due at every sweep
    }
    fn heartbeat(&mut self) -> io::Result<()> {
        self.beats += 1;
        match self.beats {
            1 => Ok(()),
            _ => Err(io::Error::new(io::ErrorKind::TimedOut, "no answer")),
        }
    }
}

struct Beating;

impl Acceptor for Beating {
    type Link = BeatingLink;
    fn accept(&mut self, stream: TcpStream, _: SocketAddr) -> io::Result<Admission<BeatingLink>> {
        Ok(Admission::Admit(BeatingLink {
            stream: patient(stream),
            beats: 0,
        }))
    }
}

/// A link's heartbeat is called once it is due, and a failed one cuts the client as idle; the
/// loop schedules the beats itself (no readiness announces them).
#[test]
fn a_link_whose_heartbeat_fails_is_cut_as_idle() {
    let (mut engine, addr) = engine_with(Config::default(), Beating);
    let mut backend = Scripted::default();
    let mut silent = client(addr);
    backend.then(&[Token::door(0)]);
    engine.turn(&mut backend).unwrap();
    assert_eq!((engine.pool.len(), engine.heartbeats), (1, 1));
    // The first beat probes; the second finds no answer. No events: the sweep wakes the loop.
    for _ in 0..2 {
        engine.turn(&mut backend).unwrap();
    }
    assert_eq!(engine.summary.idle_timeouts, 1, "{}", engine.summary);
    assert_eq!((engine.pool.len(), engine.heartbeats), (0, 0));
    let mut rest = Vec::new();
    assert_eq!(silent.read_to_end(&mut rest).unwrap(), 0, "closed");
}
