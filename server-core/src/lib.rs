#![forbid(unsafe_code)]
//! The engine of the chat relay: OS-neutral, and `forbid(unsafe_code)` keeps it memory-safe by construction.
//!
//! Every chunk of bytes one client sends is forwarded, unchanged, to every *other* connected
//! client. One thread, one event loop, non-blocking std sockets, and readiness from a [`Backend`]
//! chosen by the caller (`backend-polling`, `backend-select`).
//!
//! # Design
//!
//! - [`Backend`] is the only thing that differs between platforms and mechanisms. Its contract
//!   (level-triggered, events are hints, deregister before close, one waker) is documented on the
//!   trait; the engine relies on nothing more.
//! - Connections live in a [`Pool`], a slab keyed by [`Token`]: O(1) per event.
//! - A chunk read once becomes one `Rc<[u8]>` pushed onto every other client's [`OutQueue`]:
//!   fan-out is pointer pushes, not copies.
//! - A turn runs in phases with one clock read: wait; read and relay (one read per readable
//!   socket); timers; reap (the one place a connection is closed: whatever finds a connection
//!   must go only marks it); admit newcomers (after departures); flush each connection that got
//!   data once, with vectored writes. Write interest is registered only while bytes remain.
//! - The room's [`Pace`]: while a reader that keeps up has more than a small budget queued, the
//!   senders are not read (TCP slows them); one reader that lags past a grace no longer holds
//!   anyone back, and is disconnected as a slow consumer past [`Config::max_pending`], so memory
//!   stays bounded and one stalled reader never stalls the room.
//! - A [`Relay`] may have several doors (listeners with their [`Acceptor`]s); one room holds the
//!   [`Link`]s of all of them (plain TCP, TLS, and message-framed links).
//! - A service door's connections are not in the room: a [`Service`] answers what they send from
//!   a [`View`] of the engine (the operator's HTTP window), within [`ServiceLimits`].
//!
//! The pool, the queue, the pace and the fair shares take bytes and `Instant`s as arguments and
//! never touch the OS or the clock, so their unit tests need no sockets and no sleeps. Libraries emit `tracing` events only; the binary installs the subscriber.
//!
//! # Example
//!
//! ```
//! use server_core::{run, Backend, Config, Shutdown, Summary};
//!
//! fn serve<B: Backend>(backend: B) -> std::io::Result<Summary> {
//!     let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//!     let shutdown = Shutdown::new(backend.waker());
//!     // A Ctrl-C handler (or a test) calls `shutdown.request()` from another thread.
//!     run(listener, backend, &Config::default(), &shutdown)
//! }
//! ```

mod backend;
mod config;
mod event_loop;
mod fair;
mod framing;
mod link;
mod pace;
mod policy;
mod pool;
mod queue;
mod run;
mod service;
mod shutdown;
mod summary;
mod words;

pub use backend::{
    AsBorrowedSocket, Backend, BorrowedSocket, Event, Events, Interest, Token, Wake,
};
pub use config::Config;
pub use fair::Rate;
pub use framing::{Framing, LineOptions};
pub use link::{Acceptor, Admission, Delimiting, Encoding, Link, PlainTcp, Uplink, UplinkStats};
pub use pace::Pace;
pub use pool::Pool;
pub use queue::{OutQueue, MAX_SLICES};
pub use run::{run, Relay};
pub use service::{Answer, ClientFacts, Service, ServiceLimits, ServiceRefusals, Then, View};
pub use shutdown::Shutdown;
pub use summary::{DropReason, Summary};
pub use words::{error_words, without_os_code};
