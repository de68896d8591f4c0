//! Winsock `select` via windows-sys (Windows).
//!
//! Winsock's `fd_set` is not a bitmap but a counted array: `fd_count` followed by
//! `fd_array[FD_SETSIZE]` of `SOCKET` handles, with `FD_SETSIZE` 64 by default. Socket handles
//! are arbitrary numbers, so there is no "descriptor too large" on Windows, only "set too
//! full"; the C `FD_SET` macro quietly does nothing once the array is full, and the socket is
//! then never polled. Microsoft's `select` documentation
//! (<https://learn.microsoft.com/en-us/windows/win32/api/winsock2/nf-winsock2-select>, Remarks)
//! says a program may define `FD_SETSIZE` to a larger value before including `winsock2.h`:
//! the size is the caller's choice, because `select` reads `fd_count` and then that many
//! handles from the array that follows. So this module defines its own [`SocketArray`], the
//! same header with a longer array, and hands `select` a pointer to it cast to `*mut FD_SET`.
//! On return Winsock has rewritten each array to hold only the ready sockets, so readiness is
//! read by walking `fd_array[..fd_count]`, not by testing every registration.
//!
//! `select` ignores `nfds`, and fails with `WSAEINVAL` when all three sets are empty; that
//! cannot happen here, because the waker's socket is in the read set on every call. std calls
//! `WSAStartup` when it creates the waker's first socket, before any `select`.

use std::collections::HashMap;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::windows::io::AsRawSocket;
use std::ptr;
use std::time::Duration;

use server_core::BorrowedSocket;
use windows_sys::Win32::Networking::WinSock::{
    select as ws_select, WSAGetLastError, FD_SET, SOCKET, SOCKET_ERROR, TIMEVAL,
};

use crate::Entry;

/// A socket's raw number: the `SOCKET` handle.
pub(crate) type Raw = SOCKET;

/// Handles one [`SocketArray`] holds: 1,024 registrations plus the waker's read end.
const SET_LEN: usize = 1024 + 1;

/// The most sockets one backend can hold: every slot but the waker's.
pub(crate) const MAX_SOCKETS: usize = SET_LEN - 1;

/// Winsock's `FD_SET` with room for [`SET_LEN`] handles instead of 64.
#[repr(C)]
struct SocketArray {
    fd_count: u32,
    fd_array: [SOCKET; SET_LEN],
}

// The header must match `FD_SET` exactly for the pointer cast in `as_ptr` to be sound.
const _: () = assert!(mem::offset_of!(SocketArray, fd_count) == mem::offset_of!(FD_SET, fd_count));
const _: () = assert!(mem::offset_of!(SocketArray, fd_array) == mem::offset_of!(FD_SET, fd_array));
const _: () = assert!(align_of::<SocketArray>() == align_of::<FD_SET>());
const _: () = assert!(SET_LEN <= u32::MAX as usize);

/// The handle behind a borrowed socket.
pub(crate) fn raw(socket: BorrowedSocket<'_>) -> Raw {
    // Lossless: `RawSocket` is a `SOCKET` widened to 64 bits.
    socket.as_raw_socket() as SOCKET
}

/// Any handle fits in a counted array; only the count is limited (checked by the caller).
pub(crate) fn check(_socket: Raw) -> io::Result<()> {
    Ok(())
}

/// A boxed [`SocketArray`] (8 KiB, allocated once per set).
pub(crate) struct FdSet(Box<SocketArray>);

impl FdSet {
    pub(crate) fn new() -> FdSet {
        FdSet(Box::new(SocketArray {
            fd_count: 0,
            fd_array: [0; SET_LEN],
        }))
    }

    pub(crate) fn clear(&mut self) {
        self.0.fd_count = 0;
    }

    pub(crate) fn insert(&mut self, socket: SOCKET) {
        let count = self.0.fd_count as usize;
        debug_assert!(count < SET_LEN, "more sockets than the set holds");
        if let Some(slot) = self.0.fd_array.get_mut(count) {
            *slot = socket;
            self.0.fd_count += 1;
        }
    }

    /// The handles in the set: after `select`, exactly the ready ones.
    fn handles(&self) -> &[SOCKET] {
        let count = (self.0.fd_count as usize).min(SET_LEN);
        &self.0.fd_array[..count]
    }

    pub(crate) fn contains(&self, socket: SOCKET) -> bool {
        self.handles().contains(&socket)
    }

    /// Calls `f` with the index of each registration left in the set: one map lookup per
    /// ready socket (the waker's handle is not in `index` and is skipped).
    pub(crate) fn for_each_ready(
        &self,
        _entries: &[Entry],
        index: &HashMap<Raw, usize>,
        mut f: impl FnMut(usize),
    ) {
        for socket in self.handles() {
            if let Some(&i) = index.get(socket) {
                f(i);
            }
        }
    }

    fn as_ptr(&mut self) -> *mut FD_SET {
        ptr::addr_of_mut!(*self.0).cast::<FD_SET>()
    }
}

/// One Winsock `select` over a read and a write set; `None` blocks. Returns how many sockets
/// are ready.
pub(crate) fn select(
    read: &mut FdSet,
    write: &mut FdSet,
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let timeval = timeout.map(|timeout| {
        let (secs, micros) = super::round_up_to_micros(timeout);
        TIMEVAL {
            tv_sec: secs.try_into().unwrap_or(i32::MAX),
            // Below 1,000,000.
            tv_usec: micros.try_into().unwrap_or(999_999),
        }
    });
    let timeval_ptr = timeval
        .as_ref()
        .map_or(ptr::null(), |tv| tv as *const TIMEVAL);
    // SAFETY: each set pointer addresses a live `SocketArray` borrowed exclusively for the call,
    // whose header has `FD_SET`'s layout (asserted at compile time above) and whose `fd_count`
    // never exceeds the array's length, so Winsock reads and rewrites only memory we own. The
    // except set is null, which Winsock allows. The timeout is null (block) or a live `TIMEVAL`.
    let n = unsafe {
        ws_select(
            0,
            read.as_ptr(),
            write.as_ptr(),
            ptr::null_mut(),
            timeval_ptr,
        )
    };
    if n == SOCKET_ERROR {
        return Err(last_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

fn last_error() -> io::Error {
    // SAFETY: `WSAGetLastError` has no preconditions; it reads this thread's last Winsock error.
    io::Error::from_raw_os_error(unsafe { WSAGetLastError() })
}

/// The waker's stream: one end of a loopback TCP connection (Windows has no socket pair that
/// `select` accepts).
pub(crate) type WakeStream = TcpStream;

/// A connected, non-blocking loopback TCP pair for the waker: (read end, write end).
pub(crate) fn wake_pair() -> io::Result<(WakeStream, WakeStream)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let write = TcpStream::connect(listener.local_addr()?)?;
    let ours = write.local_addr()?;
    // Another local process could connect to the port first; skip anyone who is not us.
    let read = loop {
        let (stream, peer) = listener.accept()?;
        if peer == ours {
            break stream;
        }
    };
    for stream in [&read, &write] {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
    }
    Ok((read, write))
}
