//! `--cluster URL [--room NAME] [--cluster-optional]`: the room shared with other relays through
//! NATS. The bridge lives in the `cluster-nats` crate, compiled in with the `cluster` feature.

use server_core::{Uplink, Wake};

/// What the command line says about clustering.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClusterArgs<'a> {
    /// `--cluster`: the NATS URL, if given.
    pub(crate) url: Option<&'a str>,
    /// `--room`.
    pub(crate) room: Option<&'a str>,
    /// `--cluster-optional`.
    pub(crate) optional: bool,
}

impl ClusterArgs<'_> {
    /// Options that only make sense with `--cluster`, named for an error message.
    pub(crate) fn stray_option(&self) -> Option<&'static str> {
        match (self.url, self.room, self.optional) {
            (Some(_), _, _) => None,
            (None, Some(_), _) => Some("--room"),
            (None, None, true) => Some("--cluster-optional"),
            (None, None, false) => None,
        }
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
    // The room every node joins when `--room` is not given.
    let mut options = cluster_nats::Options::new(url, args.room.unwrap_or("lobby"));
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
        Some(_) => {
            Err("this build has no cluster support; rebuild with `--features cluster`".to_string())
        }
    }
}
