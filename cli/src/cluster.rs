//! `--cluster URL [--room NAME] [--cluster-optional]`: the room shared with other relays through
//! NATS. The bridge lives in the `cluster-nats` crate, compiled in with the `cluster` feature.

use server_core::{Uplink, Wake};

/// What the command line says about clustering. Only the URL is read in builds without the
/// `cluster` feature (to refuse it).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) struct ClusterArgs<'a> {
    /// `--cluster`: the NATS URL, if given.
    pub(crate) url: Option<&'a str>,
    /// `--room`.
    pub(crate) room: Option<&'a str>,
    /// `--cluster-optional`.
    pub(crate) optional: bool,
}

/// The room every node joins when `--room` is not given.
#[cfg(feature = "cluster")]
const DEFAULT_ROOM: &str = "lobby";

/// What a build without the `cluster` feature says to `--cluster`.
#[cfg(not(feature = "cluster"))]
const NO_CLUSTER: &str = "this build has no cluster support; rebuild with `--features cluster`";

/// The checks that need no network, run before the port is bound: the room name (with
/// `--cluster`). `Err` is the message for the terminal. (clap has made sure that `--room` and
/// `--cluster-optional` come with `--cluster`.)
#[cfg(feature = "cluster")]
pub(crate) fn check(args: ClusterArgs<'_>) -> Result<(), String> {
    match args.url {
        Some(_) => cluster_nats::room_subject(args.room.unwrap_or(DEFAULT_ROOM)).map(drop),
        None => Ok(()),
    }
}

/// A build without the `cluster` feature: `--cluster` is a clear error, before the port is bound.
#[cfg(not(feature = "cluster"))]
pub(crate) fn check(args: ClusterArgs<'_>) -> Result<(), String> {
    match args.url {
        Some(_) => Err(NO_CLUSTER.to_string()),
        None => Ok(()),
    }
}

/// Connects to NATS before the event loop starts (with `--cluster`), or `None` without it.
/// `Err` is the message for the terminal: `cannot connect to nats://...: reason`.
#[cfg(feature = "cluster")]
pub(crate) fn uplink(
    args: ClusterArgs<'_>,
    waker: impl Wake,
) -> Result<Option<Box<dyn Uplink>>, String> {
    let Some(url) = args.url else {
        return Ok(None);
    };
    let mut options = cluster_nats::Options::new(url, args.room.unwrap_or(DEFAULT_ROOM));
    options.optional = args.optional;
    let uplink = cluster_nats::NatsUplink::start(options, waker).map_err(|e| e.to_string())?;
    Ok(Some(Box::new(uplink)))
}

/// A build without the `cluster` feature: `--cluster` is a clear error.
#[cfg(not(feature = "cluster"))]
pub(crate) fn uplink(
    args: ClusterArgs<'_>,
    _waker: impl Wake,
) -> Result<Option<Box<dyn Uplink>>, String> {
    match args.url {
        None => Ok(None),
        Some(_) => Err(NO_CLUSTER.to_string()),
    }
}
