//! The load generator against the in-tool relay (faithful and deliberately faulty) and our
//! engine in-process.

use std::net::SocketAddr;

use super::*;
use crate::ceiling::{CeilingRelay, Mangle};

fn spec(clients: usize, senders: usize, size: usize, messages: usize) -> RoomSpec {
    RoomSpec {
        clients,
        senders,
        size,
        messages,
        probe: None,
        slow_readers: 0,
        receiver_threads: 2,
        connect_threads: 2,
        timeout: Duration::from_secs(20),
        stall: Duration::from_secs(5),
        tls: None,
        web: None,
    }
}

fn run_on(mangle: Mangle, spec: &RoomSpec) -> RoomOutcome {
    let relay = CeilingRelay::start(mangle).expect("start the ceiling relay");
    run_room(&[relay.addr()], spec, relay.meter(), &|_| {})
}

#[test]
fn the_ceiling_relay_relays_a_small_fan_out_completely() {
    let s = spec(6, 3, 100, 200);
    let o = run_on(Mangle::None, &s);
    assert_eq!(o.status, Status::Ok);
    // 3 senders x 20,000 bytes, each to the 5 other clients.
    assert_eq!(o.pattern_bytes, 3 * 20_000 * 5);
    assert_eq!(o.pattern_bytes, s.expected_bytes());
    // CPU times come from Linux's /proc; elsewhere the run is checked, not metered.
    if cfg!(target_os = "linux") {
        assert!(o.server_cpu.is_some() && o.tool_cpu.is_some());
    }
}

/// TLS clients against our engine with its TLS acceptor (in-process): the room, its sync,
/// the probes and the checker work the same through encryption.
#[test]
fn a_tls_room_relays_completely_with_probes() {
    use relay_tls::tls::{TlsAcceptor, TlsFiles};
    let pki = crate::pki::RunPki::new().expect("a certificate for the run");
    let acceptor = TlsAcceptor::from_files(&TlsFiles {
        cert: pki.cert.clone(),
        key: pki.key.clone(),
        client_ca: None,
    })
    .expect("TLS acceptor");
    let server = relay_tests::TestServer::start_with(
        backend_polling::PollingBackend::new,
        acceptor,
        server_core::Config::default(),
    );
    let s = RoomSpec {
        probe: Some(Probe {
            interval: Duration::from_millis(1),
            count: None,
            steady: None,
        }),
        tls: Some(pki.client.clone()),
        ..spec(6, 3, 5000, 40)
    };
    let o = run_room(&[server.addr], &s, None, &|_| {});
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(o.pattern_bytes, s.expected_bytes());
    assert!(o.probes_sent > 0 && o.latencies_ns.len() > 0);
    let summary = server.stop();
    assert_eq!(summary.accepted, 6);
    assert_eq!(summary.handshakes_failed, 0);
}

/// Our engine in-process with a room door and the HTTP service's WebSocket door (no pings), on a
/// thread of its own; stopped and joined by [`WebServer::stop`].
struct WebServer {
    chat: SocketAddr,
    http: SocketAddr,
    shutdown: server_core::Shutdown,
    thread: std::thread::JoinHandle<std::io::Result<server_core::Summary>>,
}

impl WebServer {
    fn start() -> WebServer {
        use relay_http::{BuildInfo, HttpOptions, HttpService, WebOptions, WsLimits};
        use server_core::{Backend, PlainTcp};
        let chat = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (chat_addr, http_addr) = (chat.local_addr().unwrap(), http.local_addr().unwrap());
        let backend = backend_polling::PollingBackend::new().expect("poller");
        let shutdown = server_core::Shutdown::new(backend.waker());
        let service = HttpService::new(HttpOptions {
            token: None,
            max_head: 8192,
            build: BuildInfo {
                version: "test",
                features: String::new(),
            },
            web: Some(WebOptions {
                origins: Vec::new(),
                tls: false,
                limits: WsLimits {
                    max_message: 65_535,
                    ping_every: None,
                },
            }),
        });
        let stop = shutdown.clone();
        let thread = std::thread::spawn(move || {
            server_core::Relay::new(server_core::Config::default())
                .door(chat, PlainTcp)
                .service_door(http, PlainTcp, service)
                .run(backend, &stop)
        });
        WebServer {
            chat: chat_addr,
            http: http_addr,
            shutdown,
            thread,
        }
    }

    fn stop(self) -> server_core::Summary {
        self.shutdown.request().expect("wake the server");
        self.thread
            .join()
            .expect("server thread")
            .expect("server run")
    }
}

/// Web receivers through our engine's WebSocket door: the sync (sent by a web client, the last to
/// connect), the pattern senders' streams and the probes reach every reader whole, checked byte
/// by byte after the frames are taken off; messages of every header length (small writes, and
/// chunks the server reads whole up to 64 KiB) come through.
#[test]
fn a_room_with_web_receivers_relays_completely_with_probes() {
    for (size, messages) in [(64, 2_000), (8192, 60), (20_000, 20)] {
        let server = WebServer::start();
        let s = RoomSpec {
            probe: Some(Probe {
                interval: Duration::from_millis(1),
                count: None,
                steady: None,
            }),
            web: Some(server.http),
            ..spec(7, 2, size, messages)
        };
        assert_eq!(s.web_from(), Some((server.http, 3)));
        let o = run_room(&[server.chat], &s, None, &|_| {});
        assert_eq!(o.status, Status::Ok, "{size} B");
        assert_eq!(o.pattern_bytes, s.expected_bytes());
        assert!(o.probes_sent > 0);
        assert_eq!(o.latencies_ns.len(), o.probes_sent * 6);
        let summary = server.stop();
        // 7 room members (4 of them through /ws), none cut.
        assert_eq!(summary.accepted, 7, "{summary}");
        assert_eq!(summary.slow_consumers + summary.errors, 0, "{summary}");
    }
}

#[test]
fn web_clients_cannot_be_tls_clients() {
    let pki = crate::pki::RunPki::new().expect("a certificate for the run");
    let mut s = spec(4, 1, 64, 1);
    s.web = Some("127.0.0.1:1".parse().unwrap());
    assert!(s.check().is_ok());
    s.tls = Some(pki.client.clone());
    assert!(s.check().is_err());
}

#[test]
fn a_dropped_duplicated_corrupted_or_reordered_byte_fails_the_run() {
    // Chunk 0 is the sync probe; chunk 1 is the first pattern chunk (senders write faster
    // than the relay reads, so a run may have only a few, large chunks).
    for mangle in [
        Mangle::Drop(1),
        Mangle::Duplicate(1),
        Mangle::Corrupt(1),
        Mangle::Swap(1),
        Mangle::Corrupt(0),
        Mangle::Duplicate(0),
    ] {
        let o = run_on(mangle, &spec(4, 2, 64, 100));
        match &o.status {
            Status::Failed(e) => assert!(
                e.contains("lost, duplicated or out of order") || e.contains("sync"),
                "{mangle:?}: {e}"
            ),
            other => panic!("{mangle:?} not caught: {other:?}"),
        }
    }
}

#[test]
fn probes_reach_every_other_client_with_and_without_background() {
    let mut light = spec(5, 0, 64, 1);
    light.probe = Some(Probe {
        interval: Duration::from_micros(200),
        count: Some(50),
        steady: None,
    });
    let o = run_on(Mangle::None, &light);
    assert_eq!(o.status, Status::Ok);
    assert_eq!(o.probes_sent, 50);
    assert_eq!(o.latencies_ns.len(), 50 * 4);
    assert_eq!(
        o.steady_ns.len(),
        50 * 4,
        "with no background every probe counts"
    );

    let mut loaded = spec(5, 2, 64, 2_000);
    loaded.probe = Some(Probe {
        interval: Duration::from_micros(100),
        count: None,
        steady: None,
    });
    let o = run_on(Mangle::None, &loaded);
    assert_eq!(o.status, Status::Ok);
    assert!(o.probes_sent >= 1);
    assert_eq!(o.latencies_ns.len(), o.probes_sent * 4);
    assert_eq!(
        o.steady_ns.len(),
        o.latencies_ns.len(),
        "without a steady window every probe counts"
    );
    assert_eq!(o.pattern_bytes, loaded.expected_bytes());
}

/// A warm-up longer than the whole run leaves no probe in the steady window: the run is still
/// checked and its whole-run figures recorded, the percentiles are absent and the record says
/// why.
#[test]
fn a_warm_up_longer_than_the_run_leaves_the_steady_window_empty() {
    let mut loaded = spec(5, 2, 64, 2_000);
    loaded.probe = Some(Probe {
        interval: Duration::from_micros(100),
        count: None,
        steady: Some(Steady {
            warmup: Duration::from_secs(3600),
            window: Duration::from_secs(3600),
        }),
    });
    let o = run_on(Mangle::None, &loaded);
    assert_eq!(o.status, Status::Ok);
    assert!(o.latencies_ns.len() >= 4, "every probe is still sampled");
    assert_eq!(o.steady_ns.len(), 0);

    let mut record = crate::report::Record::default();
    crate::record::fill_room(&mut record, &loaded, &o);
    assert_eq!(record.status, crate::report::RunStatus::Ok);
    assert_eq!((record.latency_samples, record.p99_us), (Some(0), None));
    assert_eq!(record.whole_run_samples, Some(o.latencies_ns.len()));
    assert!(record.whole_run_p99_us.is_some());
    assert_eq!(record.warmup_ms, Some(3_600_000.0));
    assert_eq!(record.steady_window_secs, Some(0.0));
    let detail = record.detail.unwrap_or_default();
    assert!(detail.contains("no probe in the steady window"), "{detail}");
}

#[test]
fn the_steady_window_runs_from_the_warm_up_until_the_background_ends() {
    let plan = Plan {
        deadline: Instant::now(),
        t0: Instant::now(),
        steady_ns: Some((500, 20_000)),
    };
    assert!(!plan.in_steady_window(499, u64::MAX), "still warming up");
    assert!(plan.in_steady_window(500, u64::MAX));
    assert!(plan.in_steady_window(10_000, 10_001));
    assert!(
        !plan.in_steady_window(10_001, 10_001),
        "sent once the background had ended"
    );
}

#[test]
fn a_relay_that_stops_relaying_ends_as_stalled_not_hung() {
    // A listener that accepts (in the kernel backlog) but never relays: sync cannot finish.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut s = spec(3, 1, 64, 10);
    s.timeout = Duration::from_millis(600);
    let started = Instant::now();
    let o = run_room(&[listener.local_addr().unwrap()], &s, None, &|_| {});
    assert!(
        matches!(o.status, Status::Failed(ref e) if e.contains("sync")),
        "{:?}",
        o.status
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn scale_checks_every_client_is_served() {
    let relay = CeilingRelay::start(Mangle::None).unwrap();
    let o = run_scale(
        relay.addr(),
        20,
        3,
        Duration::from_millis(1),
        Duration::from_secs(20),
        relay.meter(),
    );
    assert_eq!(o.status, Status::Ok);
    assert_eq!(o.served, 19);
    if cfg!(target_os = "linux") {
        assert!(o.idle_cpu.is_some());
    }
}

#[test]
fn spec_rejects_impossible_rooms() {
    assert!(spec(2, 3, 64, 1).check().is_err());
    assert!(spec(20, 17, 64, 1).check().is_err());
    let mut s = spec(20, 16, 64, 1);
    s.probe = Some(Probe {
        interval: Duration::from_millis(1),
        count: None,
        steady: None,
    });
    assert!(
        s.check().is_err(),
        "16 pattern senders leave no nibble for the probe"
    );
    s.senders = 15;
    assert!(s.check().is_ok());
    assert!(spec(20, 0, 64, 1).check().is_err(), "nothing to send");
}
