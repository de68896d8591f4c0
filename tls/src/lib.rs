#![forbid(unsafe_code)]
//! What stands at the relay's door, plugged into the engine through `server_core::Acceptor`:
//!
//! - [`access`]: `--allow` / `--deny` address lists. [`Gated`] wraps any acceptor, so access
//!   lists work with plain TCP and with TLS, and in builds without the `tls` feature.
//!
//! Libraries emit `tracing` events only.

pub mod access;

pub use access::{AccessList, Gated, Rule};
