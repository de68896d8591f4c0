//! The loop driven by hand: a scripted backend reports the events the test chooses, in the order
//! it chooses, and the test's links read with a bounded block so no test waits on timing.
//! `room.rs` drives admissions and departures, `links.rs` layered and message-framed links,
//! `services.rs` service doors.

mod links;
mod room;
mod services;

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
