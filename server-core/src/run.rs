//! Starting the relay: [`run`] for one plain listener, [`Relay`] to add doors and an uplink.

use std::io;
use std::net::TcpListener;
use std::time::Instant;

use tracing::info;

use crate::backend::{Backend, Token};
use crate::config::Config;
use crate::event_loop::{Door, Engine};
use crate::link::{Acceptor, PlainTcp, Uplink};
use crate::service::{Service, ServiceLimits};
use crate::shutdown::Shutdown;
use crate::summary::Summary;

/// Runs the relay on `listener` until `shutdown` is requested or the backend fails.
///
/// Every chunk one client sends is forwarded to every other client, never back to its sender.
/// On a requested shutdown it stops accepting and reading, gives pending output up to
/// [`Config::drain_timeout`] to flush, closes every connection and returns the run's [`Summary`].
///
/// # Errors
///
/// Only failures of the server as a whole: making the listener non-blocking, registering it, or
/// [`Backend::wait`] itself failing. Every connection is closed before the error is returned.
/// Errors on one connection never end the run; that connection is dropped and logged.
pub fn run<B: Backend>(
    listener: TcpListener,
    backend: B,
    config: &Config,
    shutdown: &Shutdown,
) -> io::Result<Summary> {
    Relay::new(config.clone())
        .door(listener, PlainTcp)
        .run(backend, shutdown)
}

/// A relay to start: its settings, its doors (listeners, each with the [`Acceptor`] that makes
/// its links: plain TCP, TLS, an access list...) and optionally an [`Uplink`] to other relays.
/// One room holds the clients of every door.
///
/// ```
/// use server_core::{Backend, Config, PlainTcp, Relay, Shutdown, Summary};
///
/// fn serve<B: Backend>(backend: B) -> std::io::Result<Summary> {
///     let shutdown = Shutdown::new(backend.waker());
///     shutdown.request()?; // a Ctrl-C handler would do this from another thread
///     Relay::new(Config::default())
///         .door(std::net::TcpListener::bind("127.0.0.1:0")?, PlainTcp)
///         .run(backend, &shutdown)
/// }
/// ```
pub struct Relay {
    config: Config,
    doors: Vec<Door>,
    /// Per door: its service, for a service door.
    services: Vec<Option<Box<dyn Service>>>,
    service_limits: ServiceLimits,
    uplink: Option<Box<dyn Uplink>>,
}

impl Relay {
    /// A relay with `config`, no doors yet and no uplink.
    pub fn new(config: Config) -> Self {
        Relay {
            config,
            doors: Vec::new(),
            services: Vec::new(),
            service_limits: ServiceLimits::default(),
            uplink: None,
        }
    }

    /// Adds a listener whose connections `acceptor` turns into links (at most
    /// [`Token::MAX_DOORS`]; [`Relay::run`] refuses more).
    pub fn door<A>(mut self, listener: TcpListener, acceptor: A) -> Self
    where
        A: Acceptor + 'static,
        A::Link: 'static,
    {
        self.doors.push(Door::new(listener, Box::new(acceptor)));
        self.services.push(None);
        self
    }

    /// Adds a service door: a listener whose connections `acceptor` admits (an access list, TLS)
    /// and `service` answers. They never join the room and never count toward
    /// [`Config::max_clients`]; they live within the [`ServiceLimits`] set by
    /// [`Relay::service_limits`]. It shares [`Token::MAX_DOORS`] with the room's doors.
    pub fn service_door<A, S>(mut self, listener: TcpListener, acceptor: A, service: S) -> Self
    where
        A: Acceptor + 'static,
        A::Link: 'static,
        S: Service + 'static,
    {
        self.doors.push(Door::new(listener, Box::new(acceptor)));
        self.services.push(Some(Box::new(service)));
        self
    }

    /// The bounds of every service connection (default: [`ServiceLimits::default`]).
    pub fn service_limits(mut self, limits: ServiceLimits) -> Self {
        self.service_limits = limits;
        self
    }

    /// Shares the room with other relays: every message a local client sends is also published
    /// through `uplink`, and every message it receives reaches every local client.
    pub fn uplink(mut self, uplink: Box<dyn Uplink>) -> Self {
        self.uplink = Some(uplink);
        self
    }

    /// Runs until `shutdown` is requested or the backend fails; see [`run`].
    ///
    /// # Errors
    ///
    /// As [`run`], and `InvalidInput` with no door or more than [`Token::MAX_DOORS`].
    pub fn run<B: Backend>(self, mut backend: B, shutdown: &Shutdown) -> io::Result<Summary> {
        let room_doors = self.services.iter().filter(|s| s.is_none()).count();
        if room_doors == 0 || self.doors.len() > Token::MAX_DOORS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a relay needs 1 to {} listeners", Token::MAX_DOORS),
            ));
        }
        for (index, door) in self.doors.iter().enumerate() {
            door.open(index, &mut backend)?;
        }
        if let Some(uplink) = &self.uplink {
            info!("sharing the room through {}", uplink.describe());
        }
        let capacity = backend.capacity();
        let name = backend.name();
        let mut engine = Engine::new(
            self.config,
            self.doors,
            self.uplink,
            capacity,
            Instant::now(),
        )
        .with_services(self.services, self.service_limits, name);
        let result = engine.serve(&mut backend, shutdown);
        if result.is_ok() {
            engine.drain(&mut backend);
        }
        let summary = engine.finish(&mut backend);
        result.map(|()| summary)
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("config", &self.config)
            .field("doors", &self.doors.len())
            .field("service_doors", &self.services.iter().flatten().count())
            .field("uplink", &self.uplink.as_ref().map(|u| u.describe()))
            .finish()
    }
}
