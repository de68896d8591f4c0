//! Why clients leave, and what a run did: the reasons, their counters, and the one log line per
//! departure. The reaper (`event_loop::reap`) is the only caller of [`Summary::record_departure`].

use std::fmt;
use std::io;
use std::net::SocketAddr;

use tracing::{debug, info, warn};

use crate::config::Config;
use crate::link::UplinkStats;

/// Why a client was disconnected. Every disconnect is logged with one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The client closed its side (end of stream) or reset the connection.
    PeerClosed,
    /// Reading failed with an unexpected error.
    ReadError,
    /// Writing failed with an unexpected error (a reset or broken pipe counts as
    /// [`DropReason::PeerClosed`]).
    WriteError,
    /// More than [`Config::max_pending`] bytes were queued for it.
    SlowConsumer,
    /// Bytes waited for it longer than [`Config::write_timeout`] without any write progress.
    WriteTimeout,
    /// Changing its registration with the backend failed.
    BackendError,
    /// In line mode, it sent a line longer than the limit.
    LineTooLong,
    /// Its link failed before it was established (a failed TLS handshake, or plaintext sent to a
    /// TLS port).
    Handshake,
    /// Its link was not established within [`Config::handshake_timeout`].
    HandshakeTimeout,
    /// It neither sent nor was sent anything for [`Config::idle_timeout`].
    IdleTimeout,
    /// The server stopped.
    Shutdown,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::PeerClosed => "peer closed",
            DropReason::ReadError => "read error",
            DropReason::WriteError => "write error",
            DropReason::SlowConsumer => "slow consumer",
            DropReason::WriteTimeout => "write timeout",
            DropReason::BackendError => "backend error",
            DropReason::LineTooLong => "line too long",
            DropReason::Handshake => "handshake failed",
            DropReason::HandshakeTimeout => "handshake timeout",
            DropReason::IdleTimeout => "idle timeout",
            DropReason::Shutdown => "server shutdown",
        })
    }
}

/// What a run did, returned when it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Connections accepted and registered.
    pub accepted: u64,
    /// Most connections open at once.
    pub peak_clients: usize,
    /// Connections still open when the loop stopped (before they were closed).
    pub open_at_stop: usize,
    /// Messages received: chunks in raw mode, whole lines in line mode.
    pub messages_in: u64,
    /// Messages queued for delivery, one per message per receiver (whether or not the receiver
    /// stayed long enough to be sent them: see `bytes_out` and `bytes_dropped`).
    pub messages_queued: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Disconnects because the client left.
    pub peer_closed: u64,
    /// Disconnects because of read, write or backend errors.
    pub errors: u64,
    /// Disconnects because the client was a slow consumer (over the byte limit).
    pub slow_consumers: u64,
    /// Disconnects because bytes waited past the write timeout.
    pub write_timeouts: u64,
    /// Disconnects because of a line over the line-mode limit.
    pub long_lines: u64,
    /// Disconnects because a link failed or timed out before it was established.
    pub handshakes_failed: u64,
    /// Bytes queued for clients that were disconnected before they could be written.
    pub bytes_dropped: u64,
    /// Connections accepted and closed at once because the server was full.
    pub refused_full: u64,
    /// Connections accepted with the spare descriptor and closed at once because the process
    /// was out of file descriptors.
    pub refused_no_fds: u64,
    /// Connections the acceptor refused (an access list) and closed at once.
    pub refused_by_acceptor: u64,
    /// Connections refused because their address had [`Config::max_per_address`] clients.
    pub refused_per_address: u64,
    /// Disconnects because the client was idle past [`Config::idle_timeout`].
    pub idle_timeouts: u64,
    /// Times a sender used up its [`Config::max_rate`] and was not read until its bucket
    /// refilled.
    pub rate_waits: u64,
    /// Messages received from other relays through the uplink.
    pub cluster_in: u64,
    /// The uplink's own counters, when the room has one.
    pub uplink: Option<UplinkStats>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} clients served (peak {}), {} messages / {} bytes in, {} messages queued / {} bytes out; \
             cut: {} left, {} errors, {} slow consumers, {} write timeouts, {} long lines, \
             {} failed handshakes, {} idle ({} bytes undelivered); refused: {} server full, {} out \
             of descriptors, {} by access list, {} per address; {} rate waits",
            self.accepted,
            self.peak_clients,
            self.messages_in,
            self.bytes_in,
            self.messages_queued,
            self.bytes_out,
            self.peer_closed,
            self.errors,
            self.slow_consumers,
            self.write_timeouts,
            self.long_lines,
            self.handshakes_failed,
            self.idle_timeouts,
            self.bytes_dropped,
            self.refused_full,
            self.refused_no_fds,
            self.refused_by_acceptor,
            self.refused_per_address,
            self.rate_waits
        )?;
        if let Some(uplink) = &self.uplink {
            write!(
                f,
                "; cluster: {} messages received, {} published, {} not published",
                self.cluster_in, uplink.published, uplink.unpublished
            )?;
        }
        Ok(())
    }
}

/// One connection leaving, as the reaper saw it.
#[derive(Debug)]
pub(crate) struct Departure<'a> {
    pub(crate) sd: u64,
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) reason: DropReason,
    pub(crate) error: Option<&'a io::Error>,
    /// Bytes that were queued for it and are now dropped.
    pub(crate) pending: usize,
    /// Clients left in the room after it.
    pub(crate) clients: usize,
}

impl Summary {
    /// Counts one departure under its reason and logs its line: the seed's "removing connection
    /// with sd N" vocabulary, at `info` for a client that left and `warn` for one that was cut.
    pub(crate) fn record_departure(&mut self, d: &Departure<'_>, config: &Config) {
        let Departure {
            sd,
            id,
            peer,
            reason,
            pending,
            clients,
            ..
        } = *d;
        self.bytes_dropped += pending as u64;
        let error = d.error.map(tracing::field::display);
        match reason {
            DropReason::PeerClosed => {
                self.peer_closed += 1;
                info!(
                    sd, id, %peer, %reason, error, clients,
                    "Connection closed for sd {sd}; removing connection with sd {sd}"
                );
            }
            DropReason::SlowConsumer => {
                self.slow_consumers += 1;
                warn!(
                    sd, id, %peer, %reason, pending, max_pending = config.max_pending, clients,
                    "sd {sd} ({peer}) is a slow consumer: {pending} bytes pending exceed the \
                     limit; removing connection with sd {sd}, {pending} bytes dropped"
                );
            }
            DropReason::WriteTimeout => {
                self.write_timeouts += 1;
                let timeout_s = config.write_timeout.unwrap_or_default().as_secs_f64();
                warn!(
                    sd, id, %peer, %reason, pending, timeout_s, clients,
                    "sd {sd} ({peer}) made no write progress for {timeout_s} s (write timeout); \
                     removing connection with sd {sd}, {pending} bytes dropped"
                );
            }
            DropReason::LineTooLong => {
                self.long_lines += 1;
                warn!(
                    sd, id, %peer, %reason, error, pending, clients,
                    "sd {sd} ({peer}) sent a line over the limit; removing connection with sd {sd}"
                );
            }
            DropReason::Handshake | DropReason::HandshakeTimeout => {
                self.handshakes_failed += 1;
                let timeout_s = config.handshake_timeout.as_secs_f64();
                let error = match d.error {
                    Some(e) => e.to_string(),
                    None => format!("not established within {timeout_s} s"),
                };
                warn!(
                    sd, id, %peer, %reason, %error, clients,
                    "sd {sd} ({peer}): {reason} ({error}); removing connection with sd {sd}"
                );
            }
            DropReason::IdleTimeout => {
                self.idle_timeouts += 1;
                let timeout_s = config.idle_timeout.unwrap_or_default().as_secs_f64();
                warn!(
                    sd, id, %peer, %reason, timeout_s, clients,
                    "sd {sd} ({peer}) sent and received nothing for {timeout_s} s (idle \
                     timeout); removing connection with sd {sd}"
                );
            }
            DropReason::Shutdown => debug!(sd, id, pending, "closing sd {sd} at shutdown"),
            DropReason::ReadError | DropReason::WriteError | DropReason::BackendError => {
                self.errors += 1;
                warn!(
                    sd, id, %peer, %reason, error, pending, clients,
                    "dropping sd {sd}: {reason}; removing connection with sd {sd}"
                );
            }
        }
    }
}

/// Why an I/O error on a connection drops it: before its link is established (a `member` of the
/// room), a failed handshake; after, a reset, abort or broken pipe, whether seen while reading or
/// writing, is the peer leaving, and anything else is `otherwise`.
pub(crate) fn io_reason(e: &io::Error, member: bool, otherwise: DropReason) -> DropReason {
    if !member {
        return DropReason::Handshake;
    }
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => DropReason::PeerClosed,
        _ => otherwise,
    }
}
