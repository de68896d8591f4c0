#![forbid(unsafe_code)]
//! TLS for the relay, plugged into the engine through `server_core::Acceptor`:
//!
//! - [`tls`] (feature `tls`): [`TlsLink`](tls::TlsLink), rustls's sans-I/O server connection
//!   driven by the engine's non-blocking loop, and its acceptor.
//! - [`Entry`]: plain or TLS, one type, so the binary runs one engine either way.
//!
//! Access lists (`--allow` / `--deny`) are the `relay-access` crate: they work in every build,
//! with or without TLS, around any acceptor (an [`Entry`] included).
//!
//! Libraries emit `tracing` events only.

mod entry;
#[cfg(feature = "tls")]
pub mod tls;

pub use entry::{Entry, EntryLink};
