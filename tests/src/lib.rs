//! Helpers shared by the behaviour suite (`tests/tests/`) and the binary's black-box tests
//! (`cli/tests/`), one module per job:
//!
//! - [`sockets`]: blocking loopback clients, bounded reads, room sync, pattern receipt;
//! - [`logs`]: an in-process server's log, captured so a test can wait for a line;
//! - [`in_process`]: the engine on a thread of its own, per backend;
//! - [`process`]: the `server` binary as a child process, started on a free port;
//! - [`nats`]: a real `nats-server` for the cluster tests;
//! - `notify` (Unix): a notify socket, to wait for a server's readiness notice;
//! - [`tls`]: certificates made at run time and a blocking TLS client;
//! - [`web`]: WebSocket clients, well-behaved and raw.
//!
//! The byte pattern and its checker live in the `relay-pattern` crate (re-exported here), which
//! chat-bench shares.
//!
//! Every wait here is bounded by [`TIMEOUT`] and none sleeps for a fixed time: tests wait for a
//! condition (bytes, a log line, a process exit), never for time to pass.

use std::time::Duration;

pub mod http;
pub mod in_process;
pub mod logs;
pub mod nats;
#[cfg(unix)]
pub mod notify;
pub mod process;
pub mod sockets;
pub mod tls;
pub mod web;

pub use http::{
    http_connect, http_get, http_get_with, read_response, start_with_http, HttpResponse,
};
pub use in_process::TestServer;
pub use logs::{count_lines, Logs};
pub use nats::{nats_server, nats_server_binary, NatsServer};
#[cfg(unix)]
pub use notify::NotifySocket;
pub use process::{start_on_free_port, start_with_retry, Ready, ServerProcess};
pub use relay_pattern::{free_port, is_retry, Demux, Pattern};
pub use sockets::{
    connect, expect_bytes, expect_closed, join_room, loopback_listener, raise_fd_limit,
    read_exactly, read_until_closed, receive_pattern, set_linger_zero, sync_room, Socketed,
};

/// The bound on every wait. Generous, because CI machines are slow and loaded; a healthy run
/// never comes near it.
pub const TIMEOUT: Duration = Duration::from_secs(20);
