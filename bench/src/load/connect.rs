//! Connecting every client (in parallel batches, retrying) and synchronising the room.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use relay_pattern::is_retry;
use rustls::ClientConfig;

use crate::client::Client;

use super::send::write_until;
use super::*;

/// Connects `n` clients: all but the last in `threads` parallel batches, then the last alone, so
/// it queues behind the others. With `web` (a WebSocket door and an index), clients from that
/// index on join through the door as web clients.
pub(crate) fn connect_all(
    addrs: &[SocketAddr],
    n: usize,
    threads: usize,
    deadline: Instant,
    tls: Option<&Arc<ClientConfig>>,
    web: Option<(SocketAddr, usize)>,
) -> io::Result<Vec<Client>> {
    let door = |i: usize| web.filter(|&(_, from)| i >= from).map(|(addr, _)| addr);
    let first = n.saturating_sub(1);
    let per = first.div_ceil(threads.max(1)).max(1);
    let mut clients = thread::scope(|s| {
        let batches: Vec<_> = (0..first)
            .step_by(per)
            .map(|from| {
                s.spawn(move || {
                    (from..(from + per).min(first))
                        .map(|i| connect_one(addrs[i % addrs.len()], i, deadline, tls, door(i)))
                        .collect::<io::Result<Vec<_>>>()
                })
            })
            .collect();
        let mut clients = Vec::with_capacity(n);
        for b in batches {
            clients.extend(
                b.join()
                    .map_err(|_| io::Error::other("a connecting thread panicked"))??,
            );
        }
        Ok::<_, io::Error>(clients)
    })?;
    if n > 0 {
        clients.push(connect_one(
            addrs[(n - 1) % addrs.len()],
            n - 1,
            deadline,
            tls,
            door(n - 1),
        )?);
    }
    Ok(clients)
}

/// Connects client `i`, retrying timeouts and resets until `deadline`: to `addr`, or with `web`
/// to that WebSocket door, upgraded.
pub(super) fn connect_one(
    addr: SocketAddr,
    i: usize,
    deadline: Instant,
    tls: Option<&Arc<ClientConfig>>,
    web: Option<SocketAddr>,
) -> io::Result<Client> {
    let addr = web.unwrap_or(addr);
    let mut attempt = CONNECT_TRY;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(format!(
                "client {i}: connect to {addr}: timed out"
            )));
        }
        let bound = left.min(attempt);
        attempt = (attempt * 2).min(CONNECT_TRY_MAX);
        match TcpStream::connect_timeout(&addr, bound) {
            Ok(c) => {
                c.set_nodelay(true)?;
                c.set_read_timeout(Some(POLL))?;
                c.set_write_timeout(Some(POLL))?;
                return match (tls, web) {
                    (None, None) => Ok(Client::plain(c)),
                    (Some(config), _) => Client::tls(c, config, deadline)
                        .map_err(|e| io::Error::new(e.kind(), format!("client {i}: TLS: {e}"))),
                    (None, Some(door)) => Client::web(c, door, deadline).map_err(|e| {
                        io::Error::new(e.kind(), format!("client {i}: WebSocket: {e}"))
                    }),
                };
            }
            Err(e)
                if is_retry(&e)
                    || matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("client {i}: connect to {addr}: {e}"),
                ))
            }
        }
    }
}

/// The sync probe of round `r`.
pub(super) fn sync_probe(r: u16) -> [u8; 8] {
    let [hi, lo] = r.to_be_bytes();
    [0, b'S', b'Y', b'N', b'C', hi, lo, 0]
}

/// Makes sure every client is in the room: the last one sends a sync probe and every other one
/// must read it. A relay with a short backlog may accept a straggler after the probe went out,
/// so the probe is resent (with a new round number) until every client has read the latest one.
/// Afterwards nothing is in flight. Returns the number of rounds.
pub(crate) fn sync_room(clients: &mut [Client], deadline: Instant) -> io::Result<u16> {
    let Some((sender, others)) = clients.split_last_mut() else {
        return Ok(0);
    };
    let mut carry = vec![(0usize, [0u8; 8]); others.len()];
    let never = AtomicBool::new(false);
    let mut round = 0u16;
    loop {
        round = round
            .checked_add(1)
            .ok_or_else(|| io::Error::other("too many sync rounds"))?;
        write_until(sender, &sync_probe(round), deadline, &never)?;
        let round_end = deadline.min(Instant::now() + SYNC_ROUND);
        let mut missing = 0;
        for (i, c) in others.iter_mut().enumerate() {
            if !read_sync(c, &mut carry[i], round, round_end)
                .map_err(|e| io::Error::new(e.kind(), format!("client {i}: {e}")))?
            {
                missing += 1;
            }
        }
        for c in others.iter() {
            c.set_read_timeout(Some(POLL))?;
        }
        if missing == 0 {
            return Ok(round);
        }
        if Instant::now() >= deadline {
            return Err(timed_out(format!(
                "{missing} of {} clients never received the sync probe",
                others.len()
            )));
        }
    }
}

/// Reads sync probes until the one of `round` (true) or `until` (false). Older probes are
/// skipped; anything else is an error.
pub(super) fn read_sync(
    c: &mut Client,
    carry: &mut (usize, [u8; 8]),
    round: u16,
    until: Instant,
) -> io::Result<bool> {
    loop {
        while carry.0 < carry.1.len() {
            let left = until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            c.set_read_timeout(Some(left))?;
            match c.read(&mut carry.1[carry.0..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the relay closed the connection during sync",
                    ))
                }
                Ok(n) => carry.0 += n,
                Err(e) if is_retry(&e) => {
                    if Instant::now() >= until {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let unit = carry.1;
        carry.0 = 0;
        let r = u16::from_be_bytes([unit[5], unit[6]]);
        if unit != sync_probe(r) || r > round {
            return Err(io::Error::other(format!(
                "unexpected bytes during sync: {:?}; is something else talking to this relay?",
                unit.escape_ascii().to_string()
            )));
        }
        if r == round {
            return Ok(true);
        }
    }
}

/// `read_exact` that gives up at `deadline` (the socket's short timeout lets it check).
pub(super) fn read_exact_until(
    c: &mut Client,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        if Instant::now() >= deadline {
            return Err(timed_out(format!("got {filled} of {} bytes", buf.len())));
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

pub(super) fn timed_out(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, msg)
}
