#![forbid(unsafe_code)]
//! Several relays, one room: a [`server_core::Uplink`] over NATS core publish/subscribe.
//!
//! Every node subscribes to the room's subjects (`chat-relay.room.<ROOM>.*`) and publishes what
//! its local clients send on its own subject, `chat-relay.room.<ROOM>.<NODE>`, where `NODE` is an
//! id drawn at start. The subject token is the node tag: a message carrying this node's id is
//! never delivered again (and the connection is made with `no_echo`, so NATS does not send it
//! back in the first place). A subject token costs nothing per message, where a header would turn
//! every `PUB` into an `HPUB` and every delivery into a header map.
//!
//! # Threads
//!
//! The event loop is single-threaded and must never wait for NATS, so the client runs on a thread
//! of its own with a `tokio` current-thread runtime. Two bounded channels bridge them:
//!
//! - **outbound** (event loop → NATS): [`Uplink::publish`] copies the message into the channel or,
//!   when it already holds [`Options::outbound_bytes`] or [`Options::outbound_messages`], drops it
//!   and counts it as not published. While NATS is unreachable the bridge drops and counts as
//!   well, so nothing piles up for a server that may never come back.
//! - **inbound** (NATS → event loop): messages from other nodes wait for [`Uplink::receive`]. When
//!   it is full the bridge stops reading the subscription; NATS and the client then drop for this
//!   slow consumer, which the client reports and the bridge logs.
//!
//! The bridge wakes the event loop with the backend's waker only when the inbound channel goes
//! from empty to non-empty: a "wake pending" flag is set after each push and cleared by
//! `receive` when it finds the channel empty, which then looks once more, so a message pushed in
//! between is never stranded.
//!
//! # Faults
//!
//! - Unreachable at start: [`NatsUplink::start`] fails, unless [`Options::optional`], in which
//!   case the client keeps trying in the background and the node relays locally meanwhile.
//! - Lost while running: the client reconnects with back-off (immediately, then doubling from
//!   2 ms up to 4 s), resubscribes, and the node logs both ends of the outage and how many
//!   messages it could not publish.
//! - Dropping the uplink (the server stopping) closes the outbound channel; the bridge flushes
//!   what it holds for at most [`Options::flush_timeout`] and its thread ends.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use async_nats::client::RequestErrorKind;
use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Event, Subject, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use server_core::{without_os_code, Uplink, UplinkStats, Wake};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};

/// Every room's subjects start with this; the room name and the node id follow.
pub const SUBJECT_PREFIX: &str = "chat-relay.room";

/// The longest room name accepted.
pub const MAX_ROOM: usize = 64;

/// How a node joins the cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// The NATS server(s): `nats://HOST:4222`, several separated by commas.
    pub url: String,
    /// The room's name: letters, digits, `-` and `_`, at most [`MAX_ROOM`].
    pub room: String,
    /// Start even if NATS cannot be reached, and keep trying in the background.
    pub optional: bool,
    /// How long one attempt to connect may take.
    pub connect_timeout: Duration,
    /// Most bytes waiting to be published; past it a message is dropped and counted.
    pub outbound_bytes: usize,
    /// Most messages waiting to be published; past it a message is dropped and counted.
    pub outbound_messages: usize,
    /// Most messages from other nodes waiting for the event loop.
    pub inbound_messages: usize,
    /// Most messages the client holds for the subscription before NATS calls it a slow consumer.
    pub subscription_messages: usize,
    /// How long the bridge may flush at shutdown.
    pub flush_timeout: Duration,
}

impl Options {
    /// The defaults for `url` and `room`.
    pub fn new(url: impl Into<String>, room: impl Into<String>) -> Self {
        Options {
            url: url.into(),
            room: room.into(),
            optional: false,
            connect_timeout: Duration::from_secs(5),
            outbound_bytes: 8 << 20,
            outbound_messages: 16 * 1024,
            inbound_messages: 1024,
            subscription_messages: 4096,
            flush_timeout: Duration::from_secs(1),
        }
    }
}

/// Why a node could not join the cluster.
#[derive(Debug)]
pub enum StartError {
    /// The room name cannot be a subject token.
    Room(String),
    /// NATS could not be reached (or refused us).
    Connect {
        /// The URL given.
        url: String,
        /// What went wrong, for people.
        reason: String,
    },
    /// The bridge's thread or runtime could not be created.
    Bridge(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Room(why) => f.write_str(why),
            StartError::Connect { url, reason } => write!(f, "cannot connect to {url}: {reason}"),
            StartError::Bridge(e) => write!(f, "cannot start the NATS bridge: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// The subject this room's messages are published under, without the node token; or why `room`
/// cannot name one.
pub fn room_subject(room: &str) -> Result<String, String> {
    let valid = !room.is_empty()
        && room.len() <= MAX_ROOM
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(format!("{SUBJECT_PREFIX}.{room}"))
    } else {
        Err(format!(
            "invalid room name {room:?}: use 1 to {MAX_ROOM} letters, digits, '-' or '_'"
        ))
    }
}

/// A fresh node id: 16 hex digits from the process's random hash keys, its id and the clock.
fn node_id() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    format!("{:016x}", h.finish())
}

/// What the event loop and the bridge thread share.
#[derive(Debug, Default)]
struct Shared {
    published: AtomicU64,
    unpublished: AtomicU64,
    /// Taken by [`Shared::counted`] after each change of the two counters above, and notified,
    /// so that [`NatsUplink::wait_stats`] can wait for them without polling.
    counting: Mutex<()>,
    counted: Condvar,
    /// Bytes in the outbound channel.
    queued: AtomicUsize,
    /// The bridge pushed a message and woke (or will wake) the event loop; `receive` clears it
    /// when it finds the channel empty.
    wake_pending: AtomicBool,
}

impl Shared {
    /// Adds one to `counter` (`published` or `unpublished`) and wakes whoever waits on the
    /// counters. The lock, taken after the change, is what makes the waiter see it.
    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        drop(self.counting.lock().unwrap_or_else(PoisonError::into_inner));
        self.counted.notify_all();
    }
}

/// The room shared through NATS. Made by [`NatsUplink::start`]; the server calls it.
pub struct NatsUplink {
    describe: String,
    node: String,
    outbound: Option<mpsc::Sender<Bytes>>,
    inbound: mpsc::Receiver<Vec<u8>>,
    shared: Arc<Shared>,
    outbound_bytes: usize,
    /// Messages dropped because the outbound channel was full, in the current episode.
    full_drops: Option<u64>,
    stop: Arc<Notify>,
    flush_timeout: Duration,
    finished: std_mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for NatsUplink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsUplink")
            .field("describe", &self.describe)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// What the bridge thread tells the starter.
type Started = Result<(), StartError>;

impl NatsUplink {
    /// Connects to NATS, subscribes to the room and waits (one request's round trip) until the
    /// server has the subscription, so whatever other nodes publish from then on reaches this
    /// one. `waker` is the event loop's ([`server_core::Backend::waker`]).
    ///
    /// With [`Options::optional`] it returns at once if NATS is unreachable; the bridge keeps
    /// trying in the background.
    ///
    /// # Errors
    ///
    /// An invalid room name, NATS unreachable (without `optional`), or no thread for the bridge.
    pub fn start(options: Options, waker: impl Wake) -> Result<NatsUplink, StartError> {
        let room = room_subject(&options.room).map_err(StartError::Room)?;
        let node = node_id();
        let shared = Arc::new(Shared::default());
        let (out_tx, out_rx) = mpsc::channel(options.outbound_messages.max(1));
        let (in_tx, in_rx) = mpsc::channel(options.inbound_messages.max(1));
        let stop = Arc::new(Notify::new());
        let (started_tx, started_rx) = std_mpsc::sync_channel::<Started>(1);
        let (finished_tx, finished) = std_mpsc::sync_channel(1);
        let bridge = Bridge {
            url: options.url.clone(),
            room_subject: room,
            node: node.clone(),
            optional: options.optional,
            connect_timeout: options.connect_timeout,
            subscription_messages: options.subscription_messages.max(1),
            flush_timeout: options.flush_timeout,
            shared: Arc::clone(&shared),
            stop: Arc::clone(&stop),
            waker: Box::new(waker),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StartError::Bridge)?;
        let thread = thread::Builder::new()
            .name("nats".into())
            .spawn(move || {
                runtime.block_on(bridge.run(out_rx, in_tx, started_tx));
                // Dropping the runtime here ends the client's own tasks.
                drop(runtime);
                let _ = finished_tx.send(());
            })
            .map_err(StartError::Bridge)?;
        let uplink = NatsUplink {
            describe: format!("{} room {:?} (node {node})", options.url, options.room),
            node,
            outbound: Some(out_tx),
            inbound: in_rx,
            shared,
            outbound_bytes: options.outbound_bytes.max(1),
            full_drops: None,
            stop,
            flush_timeout: options.flush_timeout,
            finished,
            thread: Some(thread),
        };
        // A connect attempt is bounded by the connect timeout per address; the margin covers
        // name resolution and the subscription's round trip.
        let bound = options.connect_timeout * 2 + Duration::from_secs(5);
        match started_rx.recv_timeout(bound) {
            Ok(Ok(())) => Ok(uplink),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StartError::Connect {
                url: options.url,
                reason: format!("no answer within {} s", bound.as_secs()),
            }),
        }
    }

    /// Waits until the counters satisfy `done`, at most `within`: they change on the bridge's
    /// own thread, and each change wakes this wait. `None` if they did not in time.
    pub fn wait_stats(
        &self,
        within: Duration,
        done: impl Fn(UplinkStats) -> bool,
    ) -> Option<UplinkStats> {
        let deadline = Instant::now() + within;
        let mut guard = self
            .shared
            .counting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            let stats = self.stats();
            if done(stats) {
                return Some(stats);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            guard = self
                .shared
                .counted
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// This node's id: the last token of the subject it publishes on.
    pub fn node(&self) -> &str {
        &self.node
    }
}

impl Uplink for NatsUplink {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn publish(&mut self, message: &[u8]) {
        let Some(outbound) = &self.outbound else {
            return;
        };
        let queued = self.shared.queued.load(Ordering::Relaxed);
        let fits = queued.saturating_add(message.len()) <= self.outbound_bytes;
        if fits {
            self.shared
                .queued
                .fetch_add(message.len(), Ordering::Relaxed);
            match outbound.try_send(Bytes::copy_from_slice(message)) {
                Ok(()) => {
                    if let Some(dropped) = self.full_drops.take() {
                        info!(
                            dropped,
                            "publishing to NATS again; {dropped} messages were dropped while its \
                             buffer was full"
                        );
                    }
                    return;
                }
                Err(_) => {
                    self.shared
                        .queued
                        .fetch_sub(message.len(), Ordering::Relaxed);
                }
            }
        }
        self.shared.count(&self.shared.unpublished);
        let dropped = self.full_drops.get_or_insert_with(|| {
            warn!(
                queued,
                "the buffer toward NATS is full; messages from local clients are dropped \
                 (and counted) until it drains"
            );
            0
        });
        *dropped += 1;
    }

    fn receive(&mut self) -> Option<Vec<u8>> {
        if let Ok(message) = self.inbound.try_recv() {
            return Some(message);
        }
        // Empty: the next push must wake the loop. Clear the flag, then look once more, or a
        // message pushed between the look and the clearing would wait for the next wake-up.
        self.shared.wake_pending.store(false, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.inbound.try_recv().ok()
    }

    fn stats(&self) -> UplinkStats {
        UplinkStats {
            published: self.shared.published.load(Ordering::Relaxed),
            unpublished: self.shared.unpublished.load(Ordering::Relaxed),
        }
    }
}

impl Drop for NatsUplink {
    fn drop(&mut self) {
        // Closing the channel tells the publisher to flush and stop; the notice stops the rest.
        self.outbound = None;
        self.stop.notify_one();
        let bound = self.flush_timeout * 2 + Duration::from_secs(1);
        match self.finished.recv_timeout(bound) {
            Ok(()) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
            }
            // Never hold the process's exit hostage: the thread dies with the process.
            Err(_) => warn!("the NATS bridge did not stop within {} s", bound.as_secs()),
        }
    }
}

/// Everything the bridge thread owns.
struct Bridge {
    url: String,
    room_subject: String,
    node: String,
    optional: bool,
    connect_timeout: Duration,
    subscription_messages: usize,
    flush_timeout: Duration,
    shared: Arc<Shared>,
    stop: Arc<Notify>,
    waker: Box<dyn Wake>,
}

impl Bridge {
    async fn run(
        self,
        outbound: mpsc::Receiver<Bytes>,
        inbound: mpsc::Sender<Vec<u8>>,
        started: std_mpsc::SyncSender<Started>,
    ) {
        let (client, subscriber) = match self.connect().await {
            Ok(pair) => pair,
            Err(e) => {
                let _ = started.send(Err(e));
                return;
            }
        };
        let _ = started.send(Ok(()));
        let own_subject = Subject::from(format!("{}.{}", self.room_subject, self.node));
        let own_token = format!(".{}", self.node);
        let publisher = Publisher {
            client: client.clone(),
            subject: own_subject,
            shared: Arc::clone(&self.shared),
            outage: None,
        };
        let receiving = self.deliver(subscriber, inbound, &own_token);
        let publishing = publisher.run(outbound);
        tokio::pin!(receiving, publishing);
        let stopping = async {
            self.stop.notified().await;
            tokio::time::sleep(self.flush_timeout).await;
        };
        tokio::select! {
            // The outbound channel closed and everything in it was handed to the client.
            () = &mut publishing => {}
            // The subscription ended: the client closed.
            () = &mut receiving => {}
            // The server is stopping and publishing is stuck (NATS unreachable): give up.
            () = stopping => {}
        }
        if client.connection_state() != State::Connected {
            return; // nothing could be flushed
        }
        match tokio::time::timeout(self.flush_timeout, client.flush()).await {
            Ok(Ok(())) => debug!("NATS flushed"),
            Ok(Err(e)) => debug!(error = %e, "NATS flush failed at shutdown"),
            Err(_) => debug!("NATS flush timed out at shutdown"),
        }
    }

    /// Connects and subscribes. Without `optional`, one attempt, then waits until the server
    /// has the subscription.
    async fn connect(&self) -> Result<(Client, Subscriber), StartError> {
        let url = self.url.clone();
        let failed = |reason: String| StartError::Connect {
            url: url.clone(),
            reason,
        };
        let events_url = self.url.clone();
        let mut options = ConnectOptions::new()
            .name(format!("chat-relay node {}", self.node))
            .no_echo()
            .connection_timeout(self.connect_timeout)
            .ping_interval(Duration::from_secs(10))
            .subscription_capacity(self.subscription_messages)
            .event_callback(move |event| {
                let url = events_url.clone();
                async move { log_event(&url, event) }
            });
        if self.optional {
            options = options.retry_on_initial_connect();
        }
        let client = async_nats::connect_with_options(self.url.as_str(), options)
            .await
            .map_err(|e| failed(connect_reason(&e)))?;
        let subject = format!("{}.*", self.room_subject);
        let subscriber = client
            .subscribe(subject)
            .await
            .map_err(|e| failed(format!("cannot subscribe: {e}")))?;
        if self.optional && client.connection_state() != State::Connected {
            warn!(
                url = %self.url,
                "NATS at {} is unreachable; relaying locally and trying in the background",
                self.url
            );
        } else {
            // The client's flush only empties its socket buffer. A request is a round trip: its
            // answer ("no responders", as no one listens there) comes after the server has
            // processed our SUB, so from now on every message of the room reaches this node.
            let ready = Subject::from(format!("{SUBJECT_PREFIX}-ready.{}", self.node));
            match tokio::time::timeout(self.connect_timeout, client.request(ready, Bytes::new()))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => {}
                Ok(Err(e)) => return Err(failed(format!("cannot subscribe: {e}"))),
                Err(_) => return Err(failed("the server did not confirm the subscription".into())),
            }
        }
        Ok((client, subscriber))
    }

    /// Hands every message from another node to the event loop, waking it when its channel goes
    /// from empty to non-empty. Returns when the subscription or the channel ends.
    async fn deliver(
        &self,
        mut subscriber: Subscriber,
        inbound: mpsc::Sender<Vec<u8>>,
        own_token: &str,
    ) {
        while let Some(message) = subscriber.next().await {
            if message.subject.ends_with(own_token) {
                continue; // our own, should NATS ever echo it
            }
            if inbound.send(Vec::from(message.payload)).await.is_err() {
                return;
            }
            fence(Ordering::SeqCst);
            if !self.shared.wake_pending.swap(true, Ordering::SeqCst) {
                if let Err(e) = self.waker.wake() {
                    warn!(error = %e, "cannot wake the event loop");
                }
            }
        }
    }
}

/// The outbound half.
struct Publisher {
    client: Client,
    subject: Subject,
    shared: Arc<Shared>,
    /// Since when, and how many, messages were dropped because NATS was unreachable.
    outage: Option<(Instant, u64)>,
}

impl Publisher {
    async fn run(mut self, mut outbound: mpsc::Receiver<Bytes>) {
        while let Some(payload) = outbound.recv().await {
            self.shared
                .queued
                .fetch_sub(payload.len(), Ordering::Relaxed);
            if self.client.connection_state() != State::Connected {
                self.dropped();
                continue;
            }
            let len = payload.len();
            match self.client.publish(self.subject.clone(), payload).await {
                Ok(()) => {
                    self.shared.count(&self.shared.published);
                    if let Some((since, dropped)) = self.outage.take() {
                        info!(
                            dropped,
                            "publishing to NATS again after {:.1} s; {dropped} messages from \
                             local clients were not published meanwhile",
                            since.elapsed().as_secs_f64()
                        );
                    }
                }
                Err(e) => {
                    self.shared.count(&self.shared.unpublished);
                    warn!(error = %e, bytes = len, "a message was not published: {e}");
                }
            }
        }
    }

    /// Counts a message dropped while NATS is unreachable; the first of an outage is logged.
    fn dropped(&mut self) {
        self.shared.count(&self.shared.unpublished);
        let (_, dropped) = self.outage.get_or_insert_with(|| {
            warn!(
                "NATS is unreachable: messages from local clients are not published (and are \
                 counted) until it is back"
            );
            (Instant::now(), 0)
        });
        *dropped += 1;
    }
}

/// Logs what the client reports about its connection.
fn log_event(url: &str, event: Event) {
    match event {
        Event::Connected => info!(url, "connected to NATS at {url}"),
        Event::Disconnected => warn!(
            url,
            "lost the connection to NATS at {url}; local relaying continues; reconnecting"
        ),
        Event::SlowConsumer(sid) => warn!(
            url,
            sid,
            "NATS: this node is a slow consumer of the room; messages from other nodes were \
             dropped"
        ),
        Event::LameDuckMode => warn!(url, "NATS at {url} is shutting down (lame duck mode)"),
        Event::ServerError(e) => warn!(url, error = %e, "NATS server error: {e}"),
        // Every failed reconnection attempt reports one; the disconnection was logged already.
        Event::ClientError(e) => debug!(url, error = %e, "NATS client error: {e}"),
        Event::Draining | Event::Closed => debug!(url, %event, "NATS connection {event}"),
    }
}

/// A connect error's reason, without the client's kind prefix when the cause says it better.
fn connect_reason(e: &async_nats::ConnectError) -> String {
    use std::error::Error as _;
    let mut text = without_os_code(&e.to_string()).to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = without_os_code(&cause.to_string()).to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_single_subject_tokens() {
        assert_eq!(room_subject("lobby").unwrap(), "chat-relay.room.lobby");
        assert_eq!(room_subject("a-B_9").unwrap(), "chat-relay.room.a-B_9");
        for bad in ["", "a.b", "*", ">", "a b", "ü", &"x".repeat(MAX_ROOM + 1)] {
            assert!(room_subject(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn node_ids_differ() {
        let ids: std::collections::HashSet<String> = (0..100).map(|_| node_id()).collect();
        assert_eq!(ids.len(), 100);
        assert!(ids.iter().all(|id| id.len() == 16));
    }
}
