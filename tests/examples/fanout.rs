//! A quick fan-out load generator for any relay on loopback (ours, or `ncat --broker`).
//!
//! C clients connect, S of them send M messages of B bytes each (one write per message), and every
//! client receives every other sender's bytes. It reports deliveries per second (one delivery =
//! one message arriving at one receiver) and MiB/s delivered, after checking that each receiver got
//! each sender's bytes complete and in order (for up to 16 senders; beyond that it only counts).
//!
//! ```text
//! cargo run --release -p relay-tests --example fanout -- \
//!     [--addr 127.0.0.1:9000] [--clients 100] [--senders 10] [--size 64] [--messages 2000] [--timeout 60]
//! ```
//!
//! It only ever connects to loopback and ends by itself within `--timeout`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: fanout [--addr 127.0.0.1:9000] [--clients 100] [--senders 10] \
[--size 64] [--messages 2000] [--timeout 60]";

/// Senders the byte pattern can tell apart: byte i of sender s is `s << 4 | i % 16`.
const VERIFIABLE_SENDERS: usize = 16;

struct Options {
    addr: SocketAddr,
    clients: usize,
    senders: usize,
    size: usize,
    messages: usize,
    timeout: Duration,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], 9000)),
        clients: 100,
        senders: 10,
        size: 64,
        messages: 2000,
        timeout: Duration::from_secs(60),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--addr" => {
                o.addr = value
                    .parse()
                    .map_err(|_| format!("--addr: not an address: {value}"))?
            }
            "--clients" => o.clients = number()?,
            "--senders" => o.senders = number()?,
            "--size" => o.size = number()?,
            "--messages" => o.messages = number()?,
            "--timeout" => o.timeout = Duration::from_secs(number()? as u64),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if !o.addr.ip().is_loopback() {
        return Err(format!(
            "{} is not a loopback address; this tool only talks to loopback",
            o.addr
        ));
    }
    if o.clients < 2 || o.senders == 0 || o.senders > o.clients || o.size == 0 || o.messages == 0 {
        return Err("need clients >= 2, 1 <= senders <= clients, size and messages > 0".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("fanout: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fanout: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(o: &Options) -> io::Result<bool> {
    let deadline = Instant::now() + o.timeout;
    let mut clients = Vec::with_capacity(o.clients);
    for _ in 0..o.clients {
        let c = TcpStream::connect_timeout(&o.addr, o.timeout)?;
        c.set_nodelay(true)?;
        c.set_read_timeout(Some(Duration::from_secs(1)))?;
        clients.push(c);
    }
    // The relay accepts in FIFO order: once the last client's probe reaches everyone, every
    // client is in the room and no measured message can be lost to a late accept.
    let probe = b"\x00SYNC\x00\x00\x00";
    clients[o.clients - 1].write_all(probe)?;
    for c in &mut clients[..o.clients - 1] {
        let mut got = [0; 8];
        read_full(c, &mut got, deadline)?;
        if &got != probe {
            return Err(io::Error::other(
                "sync probe garbled; is something else talking to this relay?",
            ));
        }
    }

    let verify = o.senders <= VERIFIABLE_SENDERS;
    let per_sender = o.size * o.messages;
    let start = Arc::new(Barrier::new(o.senders + 1));
    let mut senders = Vec::new();
    for (s, client) in clients.iter().take(o.senders).enumerate() {
        let mut w = client.try_clone()?;
        let start = Arc::clone(&start);
        let (size, messages) = (o.size, o.messages);
        senders.push(thread::spawn(move || -> io::Result<()> {
            let stream: Vec<u8> = (0..size * messages)
                .map(|i| ((s << 4) | (i % 16)) as u8)
                .collect();
            start.wait();
            for message in stream.chunks(size) {
                w.write_all(message)?;
            }
            Ok(())
        }));
    }
    let mut receivers = Vec::new();
    for (me, mut r) in clients.into_iter().enumerate() {
        let others = if me < o.senders {
            o.senders - 1
        } else {
            o.senders
        };
        let expected = others * per_sender;
        receivers.push(thread::spawn(move || {
            receive(&mut r, expected, verify, deadline)
        }));
    }
    // Readers run before the senders start, so nobody's socket buffer fills unread.
    start.wait();
    let began = Instant::now();
    let mut ok = true;
    let mut delivered_bytes = 0usize;
    for (i, r) in receivers.into_iter().enumerate() {
        match r.join().expect("receiver thread") {
            Ok(n) => delivered_bytes += n,
            Err((n, e)) => {
                ok = false;
                delivered_bytes += n;
                eprintln!("receiver {i}: {e}");
            }
        }
    }
    let secs = began.elapsed().as_secs_f64();
    for s in senders {
        if let Err(e) = s.join().expect("sender thread") {
            ok = false;
            eprintln!("sender: {e}");
        }
    }
    let deliveries = delivered_bytes / o.size;
    let per_sec = deliveries as f64 / secs;
    let mib = delivered_bytes as f64 / secs / (1024.0 * 1024.0);
    println!(
        "{} clients, {} senders x {} messages x {} B: {} deliveries in {:.3} s = {:.0} deliveries/s, {:.1} MiB/s, {}",
        o.clients,
        o.senders,
        o.messages,
        o.size,
        deliveries,
        secs,
        per_sec,
        mib,
        match (ok, verify) {
            (false, _) => "INCOMPLETE",
            (true, true) => "verified complete and in order",
            (true, false) => "complete (order not checked: more than 16 senders)",
        }
    );
    println!(
        "{{\"addr\":\"{}\",\"clients\":{},\"senders\":{},\"size\":{},\"messages\":{},\"deliveries\":{},\"secs\":{:.4},\"deliveries_per_sec\":{:.0},\"mib_per_sec\":{:.2},\"complete\":{},\"verified\":{}}}",
        o.addr, o.clients, o.senders, o.size, o.messages, deliveries, secs, per_sec, mib, ok, ok && verify
    );
    Ok(ok)
}

/// Reads until `expected` bytes arrived (checking the pattern when `verify`) or the deadline.
fn receive(
    r: &mut TcpStream,
    expected: usize,
    verify: bool,
    deadline: Instant,
) -> Result<usize, (usize, String)> {
    let mut seen = [0usize; VERIFIABLE_SENDERS];
    let mut total = 0;
    let mut buf = vec![0; 64 * 1024];
    while total < expected {
        if Instant::now() >= deadline {
            return Err((total, format!("timed out with {total} of {expected} bytes")));
        }
        let want = (expected - total).min(buf.len());
        match r.read(&mut buf[..want]) {
            Ok(0) => return Err((total, format!("closed after {total} of {expected} bytes"))),
            Ok(n) => {
                if verify {
                    for &b in &buf[..n] {
                        let s = usize::from(b >> 4);
                        if usize::from(b & 15) != seen[s] % 16 {
                            return Err((
                                total,
                                format!("sender {s}: byte {} out of order", seen[s]),
                            ));
                        }
                        seen[s] += 1;
                    }
                }
                total += n;
            }
            Err(e) if is_retry(&e) => {}
            Err(e) => return Err((total, format!("read: {e}"))),
        }
    }
    Ok(total)
}

fn read_full(c: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "sync probe did not arrive",
            ));
        }
        match c.read(&mut buf[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if is_retry(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A read that timed out (the 1 s socket timeout) or was interrupted: check the deadline, retry.
fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
