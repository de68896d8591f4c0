//! `--http`: the operator's window through the binary, on both backends, with a raw HTTP client:
//! every endpoint, GET and HEAD, keep-alive and pipelining, the error answers, the limits
//! (slowloris, idle, the connection cap), the token, the access list, 503 while draining, and
//! the exposition read by a real Prometheus parser (Python's `prometheus_client`, which
//! `.ci/run` installs; without it the test fails, it does not pass).

mod common;
use common::backends;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;

use relay_tests::{
    connect, expect_closed, http_connect, http_get, http_get_with, join_room, read_response,
    receive_pattern, Pattern, ServerProcess, TIMEOUT,
};
use wait_timeout::ChildExt;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_server")
}

/// A server on `backend` with `--http 127.0.0.1:0` and `args`: the server, the chat address and
/// the HTTP address.
fn start(backend: &str, args: &[&str]) -> (ServerProcess, SocketAddr, SocketAddr) {
    relay_tests::start_with_http(Path::new(bin()), backend, args)
}

/// A chat client whose kernel receive buffer is small, so what it does not read piles up in the
/// server's queue for it instead of in the kernel.
fn small_window_client(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect_timeout(&addr.into(), TIMEOUT).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// A sender, a reader and, last, a [`small_window_client`], all in the room: the last one sent
/// a probe that the others received.
fn room_with_small_window(chat: SocketAddr) -> [TcpStream; 3] {
    let mut room = vec![connect(chat), connect(chat), small_window_client(chat)];
    relay_tests::sync_room(&mut room);
    room.try_into().unwrap()
}

/// One sample of the exposition: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses Prometheus text exposition with Python's `prometheus_client` parser. Panics (the test
/// fails) if Python or the module is missing, or if the parser rejects the text.
fn parse_exposition(text: &str) -> Vec<Sample> {
    const SCRIPT: &str = "\
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
";
    let python = if cfg!(windows) { "python" } else { "python3" };
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{python} is needed to parse /metrics with prometheus_client: {e}")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let status = child
        .wait_timeout(TIMEOUT)
        .unwrap()
        .expect("the Prometheus parser did not finish in time");
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success(),
        "prometheus_client could not parse /metrics (pip install prometheus-client):\n{err}\n{text}"
    );
    serde_json::from_str(&out).expect("the parser's JSON")
}

/// The value of the sample `name` whose labels include `labels`.
#[track_caller]
fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
        .2
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

#[test]
fn every_endpoint_answers_get_and_head_with_keep_alive_and_pipelining() {
    for backend in backends() {
        let (_server, chat, http) = start(backend, &[]);
        let _room = join_room(chat, 2);

        let health = http_get(http, "/healthz");
        assert_eq!(
            (health.status, health.text().as_str()),
            (200, "ok\n"),
            "{backend}"
        );

        let stats = http_get(http, "/stats");
        assert_eq!(stats.status, 200, "{backend}");
        assert_eq!(stats.header("content-type"), Some("application/json"));
        let stats = json(&stats.body);
        assert_eq!(stats["clients"], 2, "{backend}: {stats}");
        assert_eq!(stats["backend"], backend);
        assert_eq!(stats["draining"], false);
        assert!(stats["uptime_seconds"].as_f64().unwrap() >= 0.0);
        assert!(stats["limits"]["max_pending"].as_u64().unwrap() > 0);

        let clients = json(&http_get(http, "/clients").body);
        assert_eq!(clients["clients"], 2, "{backend}: {clients}");
        let list = clients["list"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["transport"], "tcp");
        assert!(list[0]["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
        let one = json(&http_get(http, "/clients?limit=1").body);
        assert_eq!(one["list"].as_array().unwrap().len(), 1, "{backend}: {one}");
        assert_eq!(http_get(http, "/clients?limit=x").status, 400);

        let metrics = http_get(http, "/metrics");
        assert_eq!(metrics.status, 200);
        assert!(metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        assert_eq!(http_get(http, "/nowhere").status, 404, "{backend}");

        // Pipelined on one keep-alive connection: HEAD (a head, no body), GET, an unknown path,
        // then HTTP/1.0 without keep-alive, after which the server closes.
        let mut conn = http_connect(http);
        conn.write_all(
            b"HEAD /stats HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n\
              HEAD /nowhere HTTP/1.1\r\n\r\n\
              GET /healthz HTTP/1.0\r\n\r\n",
        )
        .unwrap();
        let head = read_response(&mut conn, true);
        assert_eq!(head.status, 200, "{backend}");
        assert!(
            head.header("content-length")
                .unwrap()
                .parse::<usize>()
                .unwrap()
                > 0
        );
        let get = read_response(&mut conn, false);
        assert_eq!((get.status, get.text().as_str()), (200, "ok\n"));
        assert_eq!(read_response(&mut conn, true).status, 404);
        let last = read_response(&mut conn, false);
        assert_eq!(
            (last.status, last.header("connection")),
            (200, Some("close"))
        );
        assert_eq!(
            expect_closed(&mut conn),
            0,
            "{backend}: closed after HTTP/1.0"
        );

        // A client that half-closes after its request is still answered.
        let mut half = http_connect(http);
        half.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
        half.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_response(&mut half, false).status, 200, "{backend}");
        assert_eq!(expect_closed(&mut half), 0);

        // Another method: 405, then a close (its body is not read).
        let mut post = http_connect(http);
        post.write_all(b"POST /stats HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
            .unwrap();
        let answer = read_response(&mut post, false);
        assert_eq!(
            (answer.status, answer.header("allow")),
            (405, Some("GET, HEAD"))
        );
        assert_eq!(expect_closed(&mut post), 0);
    }
}

#[cfg_attr(
    windows,
    ignore = "parses with Python's prometheus_client, which the Wine run does not have"
)]
#[test]
fn metrics_parse_as_prometheus_text_and_count_what_the_test_did() {
    const STEP: usize = 64 * 1024;
    const SIZE: usize = 64 * STEP;
    for backend in backends() {
        let (mut server, chat, http) = start(
            backend,
            &["--max-pending", "256KiB", "--write-timeout", "0"],
        );
        let [mut sender, mut reader, stalled] = room_with_small_window(chat);
        // The reader keeps up; the stalled client reads nothing, so its queue passes 256 KiB.
        let writer = thread::spawn(move || {
            for start in (0..SIZE).step_by(STEP) {
                sender.write_all(&Pattern::bytes(0, start, STEP)).unwrap();
            }
            sender
        });
        let demux = receive_pattern(&mut reader, SIZE);
        assert_eq!(demux.seen[0], SIZE);
        let _sender = writer.join().unwrap();
        assert!(server.wait_for_line("slow consumer").is_some(), "{backend}");

        let metrics = http_get(http, "/metrics");
        assert_eq!(metrics.status, 200);
        let samples = parse_exposition(&metrics.text());
        assert_eq!(
            sample(&samples, "relay_connections_accepted_total", &[]),
            3.0
        );
        assert_eq!(sample(&samples, "relay_clients", &[]), 2.0, "{backend}");
        assert_eq!(sample(&samples, "relay_clients_peak", &[]), 3.0);
        // What the sender sent, and the room's probe (`<probe N>\n`, some 10 to 30 bytes).
        let received = sample(&samples, "relay_bytes_received_total", &[]);
        let probe = received - SIZE as f64;
        assert!(
            (10.0..=30.0).contains(&probe),
            "{backend}: {received} bytes received; {SIZE} were sent, and one probe"
        );
        let sent = sample(&samples, "relay_bytes_sent_total", &[]);
        assert!(sent >= SIZE as f64, "{backend}: {sent} bytes sent");
        let slow = [("reason", "slow_consumer")];
        assert_eq!(sample(&samples, "relay_disconnects_total", &slow), 1.0);
        assert!(sample(&samples, "relay_bytes_dropped_total", &[]) > 0.0);
        let info = samples
            .iter()
            .find(|(n, _, _)| n == "relay_build_info")
            .expect("relay_build_info");
        assert_eq!(info.1["backend"], backend);
        assert_eq!(info.1["version"], env!("CARGO_PKG_VERSION"));
        assert!(info.1["features"].contains(&format!("+{backend}")));
        assert_eq!(info.2, 1.0);
        drop(stalled);
    }
}

#[test]
fn garbage_oversized_unfinished_and_idle_requests_are_cut_while_chat_flows() {
    const SIZE: usize = 4 * 1024 * 1024;
    for backend in backends() {
        let (server, chat, http) = start(
            backend,
            &[
                "--http-head-timeout",
                "0.2",
                "--http-idle-timeout",
                "0.2",
                "--http-max-connections",
                "3",
            ],
        );
        let [mut sender, mut reader]: [TcpStream; 2] = join_room(chat, 2).try_into().unwrap();
        let writer = thread::spawn(move || {
            sender.write_all(&Pattern::bytes(0, 0, SIZE)).unwrap();
            sender
        });

        // Not HTTP: 400, then a close.
        let mut garbage = http_connect(http);
        garbage
            .write_all(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut garbage, false).status, 400, "{backend}");
        assert_eq!(expect_closed(&mut garbage), 0);

        // A head over 8 KiB: 431, then a close.
        let mut large = http_connect(http);
        let mut head = b"GET /metrics HTTP/1.1\r\n".to_vec();
        head.extend(std::iter::repeat_n(b"X-Filler: 0123456789abcdef\r\n", 400).flatten());
        let _ = large.write_all(&head); // the server may close before reading it all
        assert_eq!(read_response(&mut large, false).status, 431, "{backend}");
        assert_eq!(expect_closed(&mut large), 0);

        // Slowloris: a head never finished is closed, unanswered.
        let mut slow = http_connect(http);
        slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-A:")
            .unwrap();
        // Idle: connected, never a byte.
        let mut idle = http_connect(http);
        assert_eq!(
            expect_closed(&mut slow),
            0,
            "{backend}: slowloris still open"
        );
        assert_eq!(expect_closed(&mut idle), 0, "{backend}: idle still open");

        // The cap: three open connections (a request answered on each, so all three are in),
        // and a fourth is answered 503.
        let held: Vec<TcpStream> = (0..3)
            .map(|_| {
                let mut c = http_connect(http);
                c.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
                assert_eq!(read_response(&mut c, false).status, 200);
                c
            })
            .collect();
        let mut extra = http_connect(http);
        assert_eq!(read_response(&mut extra, false).status, 503, "{backend}");
        assert_eq!(expect_closed(&mut extra), 0);
        drop(held);

        // The chat went on throughout: every byte, in order.
        let demux = receive_pattern(&mut reader, SIZE);
        assert_eq!(demux.seen[0], SIZE, "{backend}");
        let _sender = writer.join().unwrap();
        assert_eq!(
            http_get(http, "/healthz").status,
            200,
            "{backend}: still serving"
        );
        // The one 503 is counted; the 400, the 431 and the two cuts are not refusals.
        let stats = json(&http_get(http, "/stats").body);
        assert_eq!(stats["http_refused"]["too_many"], 1, "{backend}: {stats}");
        assert_eq!(
            stats["http_refused"]["access_list"], 0,
            "{backend}: {stats}"
        );
        drop(server);
    }
}

/// Lists `n` clients through a client whose receive window is 4 KiB, so the reply (about 166
/// bytes a client) is written across many partial writes; checks every client is listed once.
fn list_many_clients(backend: &str, n: usize) {
    let (_server, chat, http) = start(backend, &[]);
    let room = join_room(chat, n);
    let mut slow = small_window_client(http);
    let request = format!("GET /clients?limit={} HTTP/1.1\r\n\r\n", n + 10);
    slow.write_all(request.as_bytes()).unwrap();
    let reply = read_response(&mut slow, false);
    assert_eq!(reply.status, 200, "{backend}");
    let clients = json(&reply.body);
    let list = clients["list"].as_array().unwrap();
    let mut ids: Vec<u64> = list.iter().map(|c| c["id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        (clients["clients"].as_u64(), ids.len()),
        (Some(n as u64), n),
        "{backend}"
    );
    // The connection is still usable after the large reply.
    slow.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut slow, false).status, 200, "{backend}");
    drop(room);
}

#[test]
fn a_large_clients_reply_is_written_across_partial_writes() {
    for backend in backends() {
        list_many_clients(backend, 300);
    }
}

#[cfg_attr(
    all(not(target_os = "linux"), feature = "polling"),
    ignore = "stress; 10,000 clients and their server in one machine's limits: run on Linux"
)]
#[cfg_attr(
    all(target_os = "linux", feature = "polling"),
    ignore = "stress: run with --ignored"
)]
#[cfg_attr(
    not(feature = "polling"),
    ignore = "needs the polling backend (select holds ~1,000)"
)]
#[test]
fn stress_clients_lists_ten_thousand_clients() {
    relay_tests::raise_fd_limit();
    list_many_clients("polling", 10_000);
}

#[test]
fn a_token_guards_everything_but_healthz() {
    let dir = relay_tests::tls::TempDir::new();
    let file = dir.path().join("token");
    std::fs::write(&file, "s3cret-token\n").unwrap();
    let file = file.to_str().unwrap();
    for backend in backends() {
        let (_server, _chat, http) = start(backend, &["--http-token-file", file]);
        assert_eq!(http_get(http, "/healthz").status, 200);
        for path in ["/metrics", "/stats", "/clients"] {
            let refused = http_get(http, path);
            assert_eq!(refused.status, 401, "{backend} {path}");
            assert!(refused
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer"));
            let wrong = http_get_with(http, path, "Authorization: Bearer s3cret-tokem\r\n");
            assert_eq!(wrong.status, 401, "{backend} {path}");
            let right = http_get_with(http, path, "Authorization: Bearer s3cret-token\r\n");
            assert_eq!(right.status, 200, "{backend} {path}");
        }
    }
}

#[test]
fn the_access_list_applies_to_the_http_port() {
    for backend in backends() {
        let (mut server, _chat, http) = start(backend, &["--deny", "127.0.0.1"]);
        let mut refused = connect(http);
        let _ = refused.write_all(b"GET /healthz HTTP/1.1\r\n\r\n");
        let mut buf = [0; 64];
        match refused.read(&mut buf) {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!("{backend}: a denied peer was answered: {:?}", &buf[..n]),
        }
        assert!(server.wait_for_line("refused").is_some(), "{backend}");
    }
}

#[test]
fn an_http_address_that_cannot_be_bound_fails_before_the_loop() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let port = relay_tests::free_port().unwrap().to_string();
    let mut server = ServerProcess::spawn(Path::new(bin()), &["--http", &addr, &port], &[]);
    let (status, output) = server.wait_exit();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains(&format!("cannot listen on {addr} for --http")),
        "{output}"
    );

    let mut bad = ServerProcess::spawn(Path::new(bin()), &["--http", "nowhere", &port], &[]);
    let (status, output) = bad.wait_exit();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("Usage: server <port>"), "{output}");

    let mut alone =
        ServerProcess::spawn(Path::new(bin()), &["--http-idle-timeout", "3", &port], &[]);
    let (status, output) = alone.wait_exit();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("--http-idle-timeout needs --http ADDR"),
        "{output}"
    );
}

#[cfg_attr(
    windows,
    ignore = "starts the drain with SIGTERM; Wine cannot deliver a console Ctrl-Break to a child"
)]
#[test]
fn healthz_answers_503_while_the_server_drains() {
    const SIZE: usize = 4 * 1024 * 1024;
    for backend in backends() {
        let (mut server, chat, http) = start(
            backend,
            &[
                "--drain-timeout",
                "60",
                "--max-pending",
                "64MiB",
                "--write-timeout",
                "0",
            ],
        );
        let [mut sender, mut fast, mut paused] = room_with_small_window(chat);
        let writer = thread::spawn(move || {
            sender.write_all(&Pattern::bytes(0, 0, SIZE)).unwrap();
            sender
        });
        receive_pattern(&mut fast, SIZE);
        let _sender = writer.join().unwrap();
        // A keep-alive connection opened while serving.
        let mut kept = http_connect(http);
        kept.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut kept, false).status, 200, "{backend}");

        // The paused client holds megabytes queued: SIGTERM starts a drain that waits for it.
        server.signal("TERM");
        assert!(
            server.wait_for_line("draining pending output").is_some(),
            "{backend}"
        );
        kept.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
        let draining = read_response(&mut kept, false);
        assert_eq!(
            (draining.status, draining.text().as_str()),
            (503, "draining\n")
        );
        let fresh = http_get(http, "/healthz");
        assert_eq!(
            fresh.status, 503,
            "{backend}: a new connection during the drain"
        );
        let stats = json(&http_get(http, "/stats").body);
        assert_eq!(stats["draining"], true);

        // The drain completes once the paused client reads; the server exits 0.
        let demux = receive_pattern(&mut paused, SIZE);
        assert_eq!(demux.seen[0], SIZE);
        assert_eq!(expect_closed(&mut paused), 0);
        let (status, output) = server.wait_exit();
        assert_eq!(status.code(), Some(0), "{output}");
    }
}

#[cfg_attr(
    not(feature = "tls"),
    ignore = "--http-tls needs the tls feature (a default feature)"
)]
#[test]
fn http_tls_serves_https_with_the_chat_ports_certificate_and_no_client_certificate() {
    use relay_tests::tls::{tls_connect, tls_join_room, TempDir, TestPki};
    let dir = TempDir::new();
    let pki = TestPki::new();
    let files = pki.write(dir.path());
    let (cert, key, ca) = (
        files.cert.to_str().unwrap(),
        files.key.to_str().unwrap(),
        files.ca.to_str().unwrap(),
    );
    for backend in backends() {
        // Mutual TLS on the chat port; the HTTPS port still asks for no client certificate.
        let args = [
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "--tls-client-ca",
            ca,
            "--http-tls",
        ];
        let (_server, chat, http) = start(backend, &args);
        let identity = pki.client("member");
        let _member = tls_join_room(chat, &pki.client_config(Some(&identity)), 1);
        let config = pki.client_config(None);
        let mut stream = tls_connect(http, &config).expect("an HTTPS handshake");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n\r\nGET /clients HTTP/1.1\r\n\r\n")
            .unwrap();
        let health = read_response(&mut stream, false);
        assert_eq!(
            (health.status, health.text().as_str()),
            (200, "ok\n"),
            "{backend}"
        );
        let clients = json(&read_response(&mut stream, false).body);
        assert_eq!(
            clients["list"][0]["transport"], "tls",
            "{backend}: {clients}"
        );
        // Plain HTTP on the HTTPS port gets no answer.
        let mut plain = connect(http);
        let _ = plain.write_all(b"GET /healthz HTTP/1.1\r\n\r\n");
        let mut buf = [0; 5];
        if let Ok(n) = plain.read(&mut buf) {
            assert_ne!(
                &buf[..n],
                b"HTTP/",
                "{backend}: plain HTTP answered on the HTTPS port"
            );
        }
    }
}

#[cfg_attr(
    not(unix),
    ignore = "SIGHUP reloads the access lists; Windows has no SIGHUP"
)]
#[test]
fn a_reload_applies_the_new_access_lists_to_the_http_port() {
    let dir = relay_tests::tls::TempDir::new();
    let deny = dir.path().join("deny");
    std::fs::write(&deny, "# nobody yet\n").unwrap();
    let deny_arg = deny.to_str().unwrap();
    for backend in backends() {
        std::fs::write(&deny, "# nobody yet\n").unwrap();
        let (mut server, _chat, http) = start(backend, &["--deny-file", deny_arg]);
        assert_eq!(http_get(http, "/healthz").status, 200, "{backend}");
        std::fs::write(&deny, "127.0.0.1\n").unwrap();
        server.signal("HUP");
        assert!(server.wait_for_line("reloaded").is_some(), "{backend}");
        let mut refused = connect(http);
        let _ = refused.write_all(b"GET /healthz HTTP/1.1\r\n\r\n");
        let mut buf = [0; 64];
        match refused.read(&mut buf) {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!("{backend}: answered after the reload: {:?}", &buf[..n]),
        }
    }
}

#[cfg_attr(not(unix), ignore = "SIGHUP reloads the token; Windows has no SIGHUP")]
#[test]
fn a_reload_reads_the_token_file_again_and_a_bad_one_keeps_the_old_token() {
    let dir = relay_tests::tls::TempDir::new();
    let file = dir.path().join("token");
    let file_arg = file.to_str().unwrap();
    let backend = backends()[0];
    std::fs::write(&file, "first\n").unwrap();
    let (mut server, _chat, http) = start(backend, &["--http-token-file", file_arg]);
    let with = |token: &str| {
        http_get_with(
            http,
            "/stats",
            &format!("Authorization: Bearer {token}\r\n"),
        )
        .status
    };
    assert_eq!((with("first"), with("second")), (200, 401));
    std::fs::write(&file, "second\n").unwrap();
    server.signal("HUP");
    assert_eq!(server.wait_for_count("reloaded:", 1), 1);
    assert_eq!((with("first"), with("second")), (401, 200), "the new token");
    // A token file that no longer holds one word: the reload fails whole, the token stays.
    std::fs::write(&file, "two words\n").unwrap();
    server.signal("HUP");
    let line = server
        .wait_for_line("reload failed")
        .expect("the failure logged");
    assert!(line.contains("one word"), "{line}");
    assert_eq!(with("second"), 200, "the old token stays");
}

/// Random bytes, and random near-HTTP, thrown at the HTTP port, each on its own connection that
/// then half-closes: every connection ends (answered or not), the server keeps serving, and the
/// chat room it runs beside is undisturbed.
#[test]
fn random_bytes_never_break_the_http_port_or_the_room() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    for backend in backends() {
        let (_server, chat, http) = start(backend, &["--http-head-timeout", "0.5"]);
        let [mut a, mut b]: [TcpStream; 2] = join_room(chat, 2).try_into().unwrap();
        let mut runner = TestRunner::new(Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        });
        let bytes = proptest::collection::vec(any::<u8>(), 0..2048);
        let near_http = (
            "(GET|HEAD|POST|get|G\u{0}T|)",
            "[ -~]{0,64}",
            "(HTTP/1\\.[01]|HTTP/9\\.9|)",
            proptest::collection::vec("[!-~]{0,16}: [ -~]{0,32}", 0..12),
        )
            .prop_map(|(m, t, v, h)| {
                format!("{m} {t} {v}\r\n{}\r\n\r\n", h.join("\r\n")).into_bytes()
            });
        let input = prop_oneof![bytes, near_http];
        runner
            .run(&input, |input| {
                let mut conn = http_connect(http);
                let _ = conn.write_all(&input); // the server may answer and close first
                let _ = conn.shutdown(std::net::Shutdown::Write);
                let (_, _) = relay_tests::read_until_closed(&mut conn);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert_eq!(http_get(http, "/healthz").status, 200, "{backend}");
        a.write_all(b"still here").unwrap();
        relay_tests::expect_bytes(&mut b, b"still here");
    }
}

/// A client still sending when it is answered 431 gets the answer and a clean end of stream, not
/// a reset: the server shuts its side after the answer and reads what the client still sends
/// (closing with unread input would send a reset, which can destroy the answer unread).
#[test]
fn a_431_reaches_a_client_that_is_still_sending() {
    for backend in backends() {
        let (server, _chat, http) = start(backend, &[]);
        let mut large = http_connect(http);
        let mut writer = large.try_clone().unwrap();
        // A head far past the 8 KiB limit and past what the server holds unread (16 KiB).
        let sending = thread::spawn(move || {
            let mut head = b"GET /metrics HTTP/1.1\r\n".to_vec();
            head.extend(std::iter::repeat_n(b"X-Filler: 0123456789abcdef\r\n", 40_000).flatten());
            let _ = writer.write_all(&head);
        });
        assert_eq!(read_response(&mut large, false).status, 431, "{backend}");
        let (_, error) = relay_tests::read_until_closed(&mut large);
        assert!(
            error.is_none(),
            "{backend}: the answer ended with {error:?}, not a clean close"
        );
        sending.join().unwrap();
        drop(server);
    }
}
