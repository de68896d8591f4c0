//! The listening socket: one a service manager passed (socket activation), else `--bind`, or one
//! dual-stack socket on `[::]` with an IPv4 fallback, set up the way mio's `TcpListener::bind`
//! does. Holds the binary's one Windows `unsafe`
//! (`SO_EXCLUSIVEADDRUSE`, which socket2 does not expose).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};
use tracing::warn;

use crate::describe;

/// Pending connections the kernel may hold before we accept them. std and mio use 128; a chat
/// room is joined in bursts (a script opening hundreds of clients), and Linux clamps this to
/// `net.core.somaxconn` (4096 by default since 5.4) anyway.
const BACKLOG: i32 = 1024;

/// The listener `bind` asks for, or by default one dual-stack socket on `[::]`, falling back to
/// `0.0.0.0` where IPv6 is unavailable. `Err` is the message for the terminal.
pub(crate) fn listen(bind: Option<IpAddr>, port: u16) -> Result<(TcpListener, SocketAddr), String> {
    let failed =
        |addr: SocketAddr, e: io::Error| format!("cannot listen on {addr}: {}", describe(&e));
    if let Some(ip) = bind {
        let addr = SocketAddr::new(ip, port);
        return bind_one(addr)
            .map(|l| (l, addr))
            .map_err(|e| failed(addr, e));
    }
    let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    match bind_one(any6) {
        Ok(listener) => Ok((listener, any6)),
        // The port is taken, or not ours to take: IPv4 would say the same.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
            ) =>
        {
            Err(failed(any6, e))
        }
        Err(e6) => {
            let any4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
            warn!(error = %e6, "IPv6 unavailable ({}); listening on IPv4 only", describe(&e6));
            bind_one(any4)
                .map(|l| (l, any4))
                .map_err(|e| failed(any4, e))
        }
    }
}

/// A listening socket a service manager passed, and the address it is bound to.
pub(crate) type Passed = (TcpListener, SocketAddr);

/// The listeners a service manager passed with `LISTEN_FDS`/`LISTEN_PID` (systemd socket
/// activation, `systemd-socket-activate`), made non-blocking. `LISTEN_FDNAMES` tells them apart:
/// the one named `http` is for `--http`, the chat port is the one named `chat`, or else the
/// first one not named `http`; a single unnamed socket is the chat port. Others are named in a
/// warning and not served. Unix only: elsewhere there is no such protocol and nothing is passed.
/// `Err` is the message for the terminal.
#[derive(Debug, Default)]
pub(crate) struct Inherited {
    pub(crate) chat: Option<Passed>,
    pub(crate) http: Option<Passed>,
}

/// What a socket passed at `index` is for, by its name (`names` from `LISTEN_FDNAMES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(unix), allow(dead_code))] // nothing is passed on Windows
enum Role {
    Chat,
    Http,
    Unused,
}

/// The role of each of `count` passed sockets, from their names: see [`Inherited`].
#[cfg_attr(not(unix), allow(dead_code))] // nothing is passed on Windows
fn roles(count: usize, names: &[&str]) -> Vec<Role> {
    let name = |i: usize| names.get(i).copied().unwrap_or("");
    let http = (0..count).find(|&i| name(i) == "http");
    let chat = (0..count)
        .find(|&i| name(i) == "chat")
        .or_else(|| (0..count).find(|&i| Some(i) != http));
    (0..count)
        .map(|i| match i {
            _ if Some(i) == chat => Role::Chat,
            _ if Some(i) == http => Role::Http,
            _ => Role::Unused,
        })
        .collect()
}

pub(crate) fn inherited() -> Result<Inherited, String> {
    #[cfg(unix)]
    {
        let mut passed = listenfd::ListenFd::from_env();
        let mut found = Inherited::default();
        if passed.len() == 0 {
            return Ok(found);
        }
        let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
        let names: Vec<&str> = names.split(':').collect();
        for (index, role) in roles(passed.len(), &names).into_iter().enumerate() {
            let name = names.get(index).copied().unwrap_or("");
            let unusable = |e: io::Error| {
                format!(
                    "cannot serve the inherited socket {index} ({name:?}): {}",
                    describe(&e)
                )
            };
            let listener = passed
                .take_tcp_listener(index)
                .map_err(unusable)?
                .ok_or_else(|| {
                    format!("cannot serve the inherited socket {index}: it was already taken")
                })?;
            listener.set_nonblocking(true).map_err(unusable)?;
            let addr = listener.local_addr().map_err(unusable)?;
            match role {
                Role::Chat => found.chat = Some((listener, addr)),
                Role::Http => found.http = Some((listener, addr)),
                Role::Unused => warn!(
                    address = %addr,
                    "an inherited socket ({addr}, named {name:?}) is neither `chat` nor `http`; not served"
                ),
            }
        }
        Ok(found)
    }
    #[cfg(not(unix))]
    Ok(Inherited::default())
}

/// Which families `listener` on `addr` serves, for the startup line.
pub(crate) fn families(listener: &TcpListener, addr: SocketAddr) -> &'static str {
    // An inherited socket may be IPv6-only (systemd's BindIPv6Only=ipv6-only); ours never are.
    let only_v6 = socket2::SockRef::from(listener).only_v6().unwrap_or(false);
    match addr {
        SocketAddr::V6(v6) if v6.ip().is_unspecified() && !only_v6 => "IPv6 and IPv4",
        SocketAddr::V6(_) => "IPv6",
        SocketAddr::V4(_) => "IPv4",
    }
}

/// A non-blocking listener on `addr`.
pub(crate) fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // On Unix this lets a restarted server bind while old connections linger in TIME_WAIT. Not on
    // Windows, where SO_REUSEADDR would let another process bind a port we are using.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    // On Windows even a socket without SO_REUSEADDR may bind a specific address (127.0.0.1:port)
    // under our wildcard listener and take the connections meant for us; SO_EXCLUSIVEADDRUSE
    // forbids every other bind to the port while we hold it. (TIME_WAIT does not block it.)
    #[cfg(windows)]
    exclusive_address_use(&socket)?;
    if addr.is_ipv6() {
        // One socket for both families: IPv4 clients arrive as ::ffff:a.b.c.d. Windows and some
        // BSDs default to IPv6-only, so say it explicitly.
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Sets `SO_EXCLUSIVEADDRUSE`, which socket2 does not expose, before `bind`.
#[cfg(windows)]
fn exclusive_address_use(socket: &Socket) -> io::Result<()> {
    use std::os::windows::io::AsRawSocket;
    use windows_sys::Win32::Networking::WinSock::{
        setsockopt, WSAGetLastError, SOCKET, SOCKET_ERROR, SOL_SOCKET, SO_EXCLUSIVEADDRUSE,
    };
    let on: i32 = 1;
    // SAFETY: the handle is a live socket we own (borrowed from `socket` for the call); the
    // option value points at `on`, an `i32` that outlives the call, and the length passed is
    // exactly its size, which is what SO_EXCLUSIVEADDRUSE (a BOOL) expects.
    let rc = unsafe {
        setsockopt(
            socket.as_raw_socket() as SOCKET,
            SOL_SOCKET,
            SO_EXCLUSIVEADDRUSE,
            (&on as *const i32).cast(),
            size_of::<i32>() as i32,
        )
    };
    if rc == SOCKET_ERROR {
        // SAFETY: no preconditions; reads this thread's last Winsock error, set by the call above.
        return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passed_sockets_are_told_apart_by_name() {
        use Role::{Chat, Http, Unused};
        assert_eq!(
            roles(1, &[""]),
            [Chat],
            "one unnamed socket is the chat port"
        );
        assert_eq!(roles(1, &["unknown"]), [Chat]);
        assert_eq!(
            roles(1, &["http"]),
            [Http],
            "a lone http socket is not chat"
        );
        assert_eq!(roles(2, &["chat", "http"]), [Chat, Http]);
        assert_eq!(roles(2, &["http", "chat"]), [Http, Chat]);
        assert_eq!(roles(2, &["http"]), [Http, Chat], "names may be short");
        assert_eq!(roles(3, &["x", "http", "chat"]), [Unused, Http, Chat]);
        assert_eq!(roles(2, &["", ""]), [Chat, Unused]);
    }
}
