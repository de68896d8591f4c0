//! The engine's settings: what `server <port>` runs with, and what the options change.

use std::time::Duration;

use crate::fair::Rate;
use crate::framing::Framing;
use crate::pace::Pace;
#[cfg(doc)]
use crate::{Backend, Link};

/// Tunables of the event loop. `Config::default()` is what `server <port>` runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most clients connected at once from one address (an IPv4 address, or an IPv6 /64);
    /// `None`: no limit beyond `max_clients`.
    pub max_per_address: Option<usize>,
    /// Each sender's allowance (a token bucket); past it the server stops reading from it until
    /// the bucket refills. `None`: unlimited.
    pub max_rate: Option<Rate>,
    /// TCP keepalive idle time set on every accepted socket, so a peer that vanished without a
    /// FIN or reset is found by the kernel; `None`: the OS default (usually off).
    pub keepalive: Option<Duration>,
    /// Cut a client that has neither sent nor been sent anything for this long; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// The kernel send buffer (`SO_SNDBUF`) asked for on every accepted socket. Bytes the kernel
    /// holds are out of the pace's sight, and loopback and fast links let the kernel grow the
    /// buffer to megabytes, so a cap keeps queueing where the pace can see it. Too small a cap
    /// starves the link instead: on Linux loopback, 32 KiB left writes waiting on TCP's delayed
    /// acknowledgements and cut a fan-out from ~5,000 to ~160 MiB/s. `None`: the OS default and
    /// its autotuning.
    pub send_buffer: Option<usize>,
    /// When senders are slowed and which readers stop holding them back (see [`Pace`]).
    pub pace: Pace,
    /// Size of the one read buffer shared by all connections; also the largest chunk relayed.
    pub read_buffer: usize,
    /// Most connections accepted per wakeup, so a connect storm cannot starve the room.
    pub accept_burst: usize,
    /// Most unsent bytes one client may have queued; past it the client is a slow consumer and is
    /// disconnected, so one stalled reader cannot grow the server without bound.
    pub max_pending: usize,
    /// How long bytes may wait for a client with no write progress at all before it is
    /// disconnected as a slow consumer. `None`: only `max_pending` applies.
    pub write_timeout: Option<Duration>,
    /// How long pending output may take to drain at shutdown.
    pub drain_timeout: Duration,
    /// How long accepting pauses after an accept error that is not transient (typically running
    /// out of file descriptors), so it cannot become a busy loop. A closed connection ends the
    /// pause early.
    pub accept_backoff: Duration,
    /// Most clients connected at once. Clients beyond it (or beyond what the backend can hold,
    /// see [`Backend::capacity`]) are accepted, told nothing, logged as `server full` and closed
    /// at once, rather than left waiting in the kernel's backlog.
    pub max_clients: usize,
    /// Raw chunks (the seed's behaviour) or whole lines.
    pub framing: Framing,
    /// Log a statistics line this often; `None`: only the summary at the end.
    pub stats_interval: Option<Duration>,
    /// How long a layered link (TLS) may take to become established (see
    /// [`Link::is_established`]) before the client is cut. Plain TCP is established at once.
    pub handshake_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_per_address: None,
            max_rate: None,
            keepalive: Some(Duration::from_secs(60)),
            idle_timeout: None,
            send_buffer: Some(64 * 1024),
            pace: Pace::default(),
            read_buffer: 64 * 1024,
            accept_burst: 64,
            max_pending: 16 * 1024 * 1024,
            write_timeout: Some(Duration::from_secs(10)),
            drain_timeout: Duration::from_secs(2),
            accept_backoff: Duration::from_millis(100),
            max_clients: usize::MAX,
            framing: Framing::Raw,
            stats_interval: None,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// Most clients at once with a backend holding at most `backend_capacity` sockets (see
    /// [`Backend::capacity`]) beside `listeners` listeners: `max_clients`, lowered to what the
    /// backend has room for.
    pub fn client_limit(&self, backend_capacity: Option<usize>, listeners: usize) -> usize {
        let by_backend = backend_capacity.map_or(usize::MAX, |c| c.saturating_sub(listeners));
        self.max_clients.min(by_backend)
    }
}
