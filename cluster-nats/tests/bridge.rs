//! The NATS uplink against a real `nats-server`. Tests that need one are ignored by a plain
//! `cargo test`; `cargo test -p cluster-nats -- --ignored` runs them (CI installs nats-server
//! and does), and a missing nats-server fails them, saying how to install it. Each test drives
//! the uplinks the way the event loop does: `receive` until `None`, then wait for the waker.

use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cluster_nats::{NatsUplink, Options};
use relay_tests::{free_port, nats_server, NatsServer, TIMEOUT};
use server_core::{Uplink, UplinkStats, Wake};

/// A waker that counts its wake-ups, so a test can wait for the next one.
#[derive(Debug, Clone, Default)]
struct Bell(Arc<(Mutex<u64>, Condvar)>);

impl Wake for Bell {
    fn wake(&self) -> io::Result<()> {
        let (count, changed) = &*self.0;
        *count.lock().unwrap() += 1;
        changed.notify_all();
        Ok(())
    }
}

impl Bell {
    fn count(&self) -> u64 {
        *self.0 .0.lock().unwrap()
    }

    /// Waits until the count passes `seen`; false after `until`.
    fn wait_beyond(&self, seen: u64, until: Instant) -> bool {
        let (count, changed) = &*self.0;
        let mut guard = count.lock().unwrap();
        while *guard <= seen {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = changed.wait_timeout(guard, left).unwrap().0;
        }
        true
    }
}

/// A node as the event loop sees it.
struct Node {
    uplink: NatsUplink,
    bell: Bell,
}

impl Node {
    #[track_caller]
    fn start(options: Options) -> Node {
        // The bridge's log, shown with a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("debug")
            .try_init();
        let bell = Bell::default();
        let uplink = NatsUplink::start(options, bell.clone()).expect("start the uplink");
        Node { uplink, bell }
    }

    /// The next message from another node, as the event loop would get it: `None` only if
    /// nothing arrives before `until`. Waits on the waker, so a stranded message fails the test.
    fn next_until(&mut self, until: Instant) -> Option<Vec<u8>> {
        loop {
            let seen = self.bell.count();
            if let Some(message) = self.uplink.receive() {
                return Some(message);
            }
            if !self.bell.wait_beyond(seen, until) {
                return None;
            }
        }
    }

    #[track_caller]
    fn next(&mut self) -> Vec<u8> {
        self.next_until(Instant::now() + TIMEOUT)
            .expect("a message from another node within the timeout")
    }

    /// Waits until the counters satisfy `done` (the bridge counts on its own thread and wakes
    /// this wait at each change), or panics after [`TIMEOUT`].
    #[track_caller]
    fn wait_stats(&self, done: impl Fn(UplinkStats) -> bool) -> UplinkStats {
        self.uplink
            .wait_stats(TIMEOUT, done)
            .unwrap_or_else(|| panic!("the uplink's counters: {:?}", self.uplink.stats()))
    }
}

fn options(nats: &NatsServer, room: &str) -> Options {
    Options::new(nats.url(), room)
}

/// Publishes numbered pings from `from` until `to` receives one (messages sent before `to`'s
/// subscription is live are lost, as NATS core promises), then returns the ping's number.
#[track_caller]
fn ping_until_heard(from: &mut Node, to: &mut Node) -> usize {
    let deadline = Instant::now() + TIMEOUT;
    for i in 0.. {
        assert!(Instant::now() < deadline, "no ping got through");
        from.uplink.publish(format!("ping {i}\n").as_bytes());
        // Anything else was published before and is still trailing in.
        while let Some(m) = to.next_until(Instant::now() + Duration::from_millis(100)) {
            let text = String::from_utf8(m).unwrap();
            if let Some(n) = text.trim().strip_prefix("ping ") {
                return n.parse().unwrap();
            }
        }
    }
    unreachable!()
}

#[test]
fn unreachable_at_start_is_an_error_naming_the_url() {
    // Nothing listens there (a port that was free a moment ago).
    let url = format!("nats://127.0.0.1:{}", free_port().unwrap());
    let started = Instant::now();
    let err = NatsUplink::start(Options::new(&url, "lobby"), Bell::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot connect to {url}: ")),
        "{text}"
    );
    assert!(started.elapsed() < TIMEOUT);
}

#[test]
fn a_room_name_that_is_not_one_subject_token_is_refused() {
    let err =
        NatsUplink::start(Options::new("nats://127.0.0.1:1", "a.b"), Bell::default()).unwrap_err();
    assert!(err.to_string().contains("invalid room name"), "{err}");
}

#[test]
fn a_message_too_large_for_the_buffer_is_dropped_and_counted() {
    let mut opts = Options::new(
        format!("nats://127.0.0.1:{}", free_port().unwrap()),
        "lobby",
    );
    opts.optional = true;
    opts.outbound_bytes = 10;
    let mut node = Node::start(opts);
    node.uplink.publish(&[7; 64]);
    assert_eq!(
        node.uplink.stats(),
        UplinkStats {
            published: 0,
            unpublished: 1
        }
    );
}

#[test]
#[ignore = "needs nats-server: run with --ignored (CI does)"]
fn nodes_exchange_messages_complete_in_order_and_without_echo() {
    let nats = nats_server();
    let mut a = Node::start(options(&nats, "lobby"));
    let mut b = Node::start(options(&nats, "lobby"));
    let mut elsewhere = Node::start(options(&nats, "attic"));
    let mut upstairs = Node::start(options(&nats, "attic"));
    assert_ne!(a.uplink.node(), b.uplink.node());

    // Both subscriptions are live once `start` returns: nothing is lost from here on.
    const N: usize = 2_000;
    for i in 0..N {
        a.uplink.publish(format!("a{i}\n").as_bytes());
    }
    for i in 0..N {
        assert_eq!(b.next(), format!("a{i}\n").as_bytes(), "message {i}");
    }
    b.uplink.publish(b"from b\n");
    // `a` never gets its own messages back: the first thing it hears is `b`'s.
    assert_eq!(a.next(), b"from b\n");
    a.wait_stats(|s| s.published == N as u64);
    let stats = b.wait_stats(|s| s.published == 1);
    assert_eq!(stats.unpublished, 0);
    // Another room hears nothing; a message it publishes reaches no one here.
    elsewhere.uplink.publish(b"attic\n");
    b.uplink.publish(b"last\n");
    assert_eq!(a.next(), b"last\n");
    assert_eq!(upstairs.next(), b"attic\n");
    // nats-server had routed "last" (a got it) before this marker was published, and it writes
    // to each subscriber in order: had "lobby" leaked into "attic", it would come first.
    upstairs.uplink.publish(b"marker\n");
    assert_eq!(elsewhere.next(), b"marker\n");
}

#[test]
#[ignore = "needs nats-server: run with --ignored (CI does)"]
fn an_optional_node_starts_without_nats_and_joins_when_it_appears() {
    let mut nats = nats_server();
    // Its port, with nothing listening.
    nats.kill();
    let mut opts = options(&nats, "lobby");
    opts.optional = true;
    let mut lonely = Node::start(opts);
    lonely.uplink.publish(b"nobody hears this\n");
    lonely.wait_stats(|s| s.unpublished == 1);

    nats.restart();
    let mut other = Node::start(options(&nats, "lobby"));
    ping_until_heard(&mut other, &mut lonely);
    lonely.uplink.publish(b"hello\n");
    assert_eq!(other.next(), b"hello\n");
}

#[test]
#[ignore = "needs nats-server: run with --ignored (CI does)"]
fn nats_killed_and_restarted_loses_only_the_outage_and_resumes() {
    let mut nats = nats_server();
    let mut a = Node::start(options(&nats, "lobby"));
    let mut b = Node::start(options(&nats, "lobby"));
    a.uplink.publish(b"before\n");
    assert_eq!(b.next(), b"before\n");

    nats.kill();
    // Published while NATS is down: dropped and counted, never queued without bound.
    let mut during = 0;
    let deadline = Instant::now() + TIMEOUT;
    while a.uplink.stats().unpublished == 0 {
        assert!(Instant::now() < deadline, "the outage was never noticed");
        a.uplink.publish(b"during\n");
        during += 1;
        a.wait_stats(|s| s.published + s.unpublished >= during);
    }

    nats.restart();
    // Both reconnect and resubscribe by themselves. Messages the client had taken before it
    // noticed the outage may arrive now, late but in order; the rest were dropped and counted.
    let first = ping_until_heard(&mut a, &mut b);
    for i in 0..100 {
        a.uplink.publish(format!("after {i}\n").as_bytes());
    }
    // Pings published before the one heard may still trail in; after it, nothing is lost.
    let mut expect = 0;
    while expect < 100 {
        let m = String::from_utf8(b.next()).unwrap();
        if let Some(n) = m.strip_prefix("ping ") {
            assert!(n.trim().parse::<usize>().unwrap() > first, "{m:?} twice");
            continue;
        }
        assert_eq!(m, format!("after {expect}\n"));
        expect += 1;
    }
    b.uplink.publish(b"b is back too\n");
    let m = loop {
        let m = a.next();
        if !m.starts_with(b"ping") {
            break m;
        }
    };
    assert_eq!(m, b"b is back too\n");
    assert!(a.uplink.stats().unpublished >= 1);
}
