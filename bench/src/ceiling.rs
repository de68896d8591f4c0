//! The loopback ceiling: the simplest relay there is, on a thread of the tool.
//!
//! One thread, plain blocking sockets: wait until some client is readable, read one chunk from
//! it, write that chunk to every other client with `write_all`. It batches nothing and shares
//! nothing, so its throughput is what this machine's loopback gives a one-thread relay, and a
//! server's results read as a ratio of it.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use backend_polling::{PollingBackend, PollingWaker};
use relay_pattern::is_retry;
use server_core::{AsBorrowedSocket, Backend, Events, Interest, Token, Wake};

use crate::procstat::{self, Meter};

/// How often the relay looks at its stop flag while idle.
const TICK: Duration = Duration::from_millis(100);
/// A client that takes longer than this to accept a write is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read from a sender at a time.
const CHUNK: usize = 64 * 1024;

/// A deliberate fault, for the tool's own tests: the relay damages one forwarded chunk so the
/// checkers can be shown to catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))] // only the tests damage data
pub(crate) enum Mangle {
    /// Relay faithfully.
    None,
    /// Drop the first byte of the n-th chunk (counted from 0).
    Drop(usize),
    /// Flip a bit of the first byte of the n-th chunk.
    Corrupt(usize),
    /// Swap the first two bytes of the n-th chunk that has two.
    Swap(usize),
    /// Send the first byte of the n-th chunk twice.
    Duplicate(usize),
}

/// The relay thread; stopped and joined on drop.
#[derive(Debug)]
pub(crate) struct CeilingRelay {
    addr: SocketAddr,
    tid: Option<u32>,
    stop: Arc<AtomicBool>,
    waker: PollingWaker,
    thread: Option<JoinHandle<()>>,
}

impl CeilingRelay {
    /// Starts the relay on 127.0.0.1 with an ephemeral port.
    pub(crate) fn start(mangle: Mangle) -> io::Result<CeilingRelay> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let backend = PollingBackend::new()?;
        let waker = backend.waker();
        let stop = Arc::new(AtomicBool::new(false));
        let (tid_tx, tid_rx) = mpsc::channel();
        let thread = {
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("ceiling-relay".into())
                .spawn(move || {
                    let _ = tid_tx.send(procstat::current_tid());
                    relay(listener, backend, &stop, mangle);
                })?
        };
        let tid = tid_rx.recv_timeout(Duration::from_secs(5)).ok().flatten();
        Ok(CeilingRelay {
            addr,
            tid,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// Where clients connect.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The relay thread, for its CPU time.
    pub(crate) fn meter(&self) -> Option<Meter> {
        self.tid.map(Meter::Thread)
    }
}

impl Drop for CeilingRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            // Every blocking call in the relay is bounded (TICK, WRITE_TIMEOUT), so this ends.
            let _ = thread.join();
        }
    }
}

/// The relay loop: runs until `stop`.
fn relay(
    listener: TcpListener,
    mut backend: PollingBackend,
    stop: &AtomicBool,
    mut mangle: Mangle,
) {
    let mut clients: Vec<Option<TcpStream>> = Vec::new();
    let listening = backend.register(listener.borrowed(), Token::LISTENER, Interest::READABLE);
    if let Err(e) = listening {
        eprintln!("ceiling relay: {e}");
        return;
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0; CHUNK];
    let mut chunks = 0usize;
    while !stop.load(Ordering::Relaxed) {
        if backend.wait(&mut events, Some(TICK)).is_err() {
            break;
        }
        for ev in events.iter() {
            if ev.token == Token::LISTENER {
                accept_all(&listener, &mut backend, &mut clients);
                continue;
            }
            let from = ev.token.0;
            let Some(reader) = clients.get_mut(from).and_then(Option::as_mut) else {
                continue;
            };
            let n = match reader.read(&mut buf) {
                Ok(0) => {
                    remove(&mut backend, &mut clients, from);
                    continue;
                }
                Ok(n) => n,
                Err(e) if is_retry(&e) => continue,
                Err(_) => {
                    remove(&mut backend, &mut clients, from);
                    continue;
                }
            };
            let chunk = damage(&buf[..n], chunks, &mut mangle);
            chunks += 1;
            for to in 0..clients.len() {
                if to == from {
                    continue;
                }
                let Some(writer) = clients[to].as_mut() else {
                    continue;
                };
                if writer.write_all(&chunk).is_err() {
                    remove(&mut backend, &mut clients, to);
                }
            }
        }
    }
    for i in 0..clients.len() {
        remove(&mut backend, &mut clients, i);
    }
    let _ = backend.deregister(listener.borrowed());
}

/// Accepts every pending connection into a free slot.
fn accept_all(
    listener: &TcpListener,
    backend: &mut PollingBackend,
    clients: &mut Vec<Option<TcpStream>>,
) {
    while let Ok((stream, _)) = listener.accept() {
        let ok = stream.set_nonblocking(false).is_ok()
            && stream.set_nodelay(true).is_ok()
            && stream.set_read_timeout(Some(TICK)).is_ok()
            && stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_ok();
        if !ok {
            continue;
        }
        let slot = clients
            .iter()
            .position(Option::is_none)
            .unwrap_or(clients.len());
        // Every client is deregistered in `remove` before it is closed.
        if backend
            .register(stream.borrowed(), Token(slot), Interest::READABLE)
            .is_err()
        {
            continue;
        }
        if slot == clients.len() {
            clients.push(Some(stream));
        } else {
            clients[slot] = Some(stream);
        }
    }
}

/// Deregisters and closes client `i`, if it is there.
fn remove(backend: &mut PollingBackend, clients: &mut [Option<TcpStream>], i: usize) {
    if let Some(stream) = clients[i].take() {
        // Deregister before close; a failure here leaves nothing to undo.
        let _ = backend.deregister(stream.borrowed());
    }
}

/// The chunk as it is forwarded: `bytes`, or a damaged copy if `mangle` picks chunk `n` (each
/// fault fires once).
fn damage<'a>(bytes: &'a [u8], n: usize, mangle: &mut Mangle) -> Cow<'a, [u8]> {
    let applies = match *mangle {
        Mangle::None => false,
        Mangle::Drop(k) | Mangle::Corrupt(k) | Mangle::Duplicate(k) => k == n,
        Mangle::Swap(k) => k <= n && bytes.len() >= 2 && bytes[0] != bytes[1],
    };
    if !applies {
        return Cow::Borrowed(bytes);
    }
    let mut out = bytes.to_vec();
    match std::mem::replace(mangle, Mangle::None) {
        Mangle::Drop(_) => {
            out.remove(0);
        }
        Mangle::Corrupt(_) => out[0] ^= 0x01,
        Mangle::Swap(_) => out.swap(0, 1),
        Mangle::Duplicate(_) => out.insert(0, out[0]),
        Mangle::None => {}
    }
    Cow::Owned(out)
}
