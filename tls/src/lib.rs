#![forbid(unsafe_code)]
//! What stands at the relay's door, plugged into the engine through `server_core::Acceptor`:
//!
//! - [`access`]: `--allow` / `--deny` address lists. [`Gated`] wraps any acceptor, so access
//!   lists work with plain TCP and with TLS, and in builds without the `tls` feature.
//! - [`tls`] (feature `tls`): [`TlsLink`](tls::TlsLink), rustls's sans-I/O server connection
//!   driven by the engine's non-blocking loop, and its acceptor.
//! - [`Entry`]: plain or TLS, one type, so the binary runs one engine either way.
//!
//! Libraries emit `tracing` events only.

pub mod access;
mod entry;
#[cfg(feature = "tls")]
pub mod tls;

pub use access::{AccessList, Gated, Rule};
pub use entry::{Entry, EntryLink};
