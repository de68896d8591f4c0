//! Ports and socket errors.

use std::io;
use std::net::{Ipv4Addr, TcpListener};

/// A port that was free a moment ago: the OS picked it for a listener on 0.0.0.0 (so it is free
/// on every local address) that is then closed. Another process may take it before the caller
/// binds it, so callers that start a server on it retry with another port.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))?
        .local_addr()?
        .port())
}

/// A socket timeout (`WouldBlock` on non-blocking sockets, `TimedOut` on Windows' timed reads) or
/// an interrupted call: try again.
pub fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
