//! The web door through the binary, on both backends: WebSocket clients (`/ws` on the `--http`
//! port) in one room with TCP clients, byte-exact and without echo, in raw and line mode; every
//! protocol violation closed with its code; pings and the idle cut; the room's limits; `wss://`.
//! The chat page in a real browser is `browser.rs`.

mod common;
use common::backends;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::thread;

use relay_tests::web::{
    frame, read_close_code, read_frame, ws_connect, ws_next, ws_raw_upgrade, ws_send, ws_send_text,
};
use relay_tests::{connect, expect_bytes, http_get_with, ServerProcess};

/// A server on `backend` with `--http` and `args`: the server, the chat and the HTTP address.
fn start(backend: &str, args: &[&str]) -> (ServerProcess, SocketAddr, SocketAddr) {
    relay_tests::start_with_http(Path::new(env!("CARGO_BIN_EXE_server")), backend, args)
}

/// Waits until the server has seated `n` clients in all since it started.
#[track_caller]
fn seated(server: &mut ServerProcess, n: usize) {
    assert_eq!(
        server.wait_for_count("New incoming connection", n),
        n,
        "clients seated:\n{}",
        server.seen.join("\n")
    );
}

#[test]
fn web_and_tcp_clients_share_a_room_byte_exact_and_without_echo() {
    let every_byte: Vec<u8> = (0..=255).collect();
    let reversed: Vec<u8> = every_byte.iter().rev().copied().collect();
    for backend in backends() {
        let (mut server, chat, http) = start(backend, &[]);
        let (mut tcp_a, mut tcp_b) = (connect(chat), connect(chat));
        let (mut web_1, mut web_2) = (ws_connect(http), ws_connect(http));
        seated(&mut server, 4);

        // A TCP chunk reaches web clients as one binary message, the other TCP client as bytes.
        tcp_a.write_all(&every_byte).unwrap();
        expect_bytes(&mut tcp_b, &every_byte);
        for web in [&mut web_1, &mut web_2] {
            assert_eq!(ws_next(web), (every_byte.clone(), false), "{backend}");
        }
        // A web message reaches TCP clients as its payload, the other web client as a message.
        ws_send(&mut web_1, &reversed);
        expect_bytes(&mut tcp_a, &reversed);
        expect_bytes(&mut tcp_b, &reversed);
        assert_eq!(ws_next(&mut web_2), (reversed.clone(), false), "{backend}");
        // Per-sender order, one message each.
        let mut all = Vec::new();
        for i in 0..50 {
            let text = format!("m{i};");
            ws_send_text(&mut web_1, &text);
            all.extend_from_slice(text.as_bytes());
        }
        for i in 0..50 {
            let (got, _) = ws_next(&mut web_2);
            assert_eq!(got, format!("m{i};").as_bytes(), "{backend}");
        }
        expect_bytes(&mut tcp_b, &all);
        // A trailing marker: whatever web_1 receives before it would be an echo of its own.
        tcp_b.write_all(b"marker").unwrap();
        assert_eq!(
            ws_next(&mut web_1),
            (b"marker".to_vec(), false),
            "{backend}"
        );
        expect_bytes(&mut tcp_a, &[&all[..], b"marker"].concat());
    }
}

#[test]
fn line_mode_gives_web_clients_lines_as_messages_with_tags_and_notices() {
    for backend in backends() {
        let args = [
            "--framing",
            "line",
            "--tag",
            "--announce",
            "--max-line",
            "100",
        ];
        let (mut server, chat, http) = start(backend, &args);
        let mut tcp = connect(chat); // id 1
        seated(&mut server, 1);
        let mut web_1 = ws_connect(http); // id 2
        expect_bytes(&mut tcp, b"* 2 joined\n");
        let mut web_2 = ws_connect(http); // id 3
        expect_bytes(&mut tcp, b"* 3 joined\n");
        assert_eq!(ws_next(&mut web_1), (b"* 3 joined".to_vec(), true));

        // A message is one line, or several when it holds newlines; each line one message.
        ws_send_text(&mut web_1, "a\nb");
        ws_send_text(&mut web_1, "c\n");
        expect_bytes(&mut tcp, b"[2] a\n[2] b\n[2] c\n");
        for line in ["[2] a", "[2] b", "[2] c"] {
            assert_eq!(ws_next(&mut web_2), (line.as_bytes().to_vec(), true));
        }
        // A line that is not UTF-8 reaches web clients as a binary message, byte-exact.
        tcp.write_all(b"\xff\xfe ok\n").unwrap();
        for web in [&mut web_1, &mut web_2] {
            assert_eq!(ws_next(web), (b"[1] \xff\xfe ok".to_vec(), false));
        }
        // --max-line applies to web clients too.
        ws_send_text(&mut web_2, &"x".repeat(101));
        expect_bytes(&mut tcp, b"* 3 left\n");
        assert_eq!(ws_next(&mut web_1), (b"* 3 left".to_vec(), true));
        assert_eq!(server.wait_for_count("line too long", 1), 1, "{backend}");
    }
}

#[test]
fn protocol_violations_are_closed_with_their_codes_and_fragments_are_reassembled() {
    for backend in backends() {
        let (mut server, chat, http) = start(backend, &["--ws-max-message", "1000"]);
        let mut tcp = connect(chat);
        seated(&mut server, 1);
        let cases: [(&str, Vec<u8>, u16); 4] = [
            (
                "text that is not UTF-8",
                frame(0x1, b"\xff", true, true),
                1007,
            ),
            ("an unmasked frame", frame(0x2, b"x", true, false), 1002),
            (
                "a message over the limit",
                frame(0x2, &[7; 1001], true, true),
                1009,
            ),
            ("an unknown opcode", frame(0x3, b"", true, true), 1002),
        ];
        for (what, bad, code) in cases {
            let (mut web, status) = ws_raw_upgrade(http, "", &[]);
            assert_eq!(status, 101, "{backend}: {what}");
            web.write_all(&bad).unwrap();
            assert_eq!(read_close_code(&mut web), code, "{backend}: {what}");
        }

        // Fragments with a ping between them: the pong comes at once, the message whole.
        let (mut web, _) = ws_raw_upgrade(http, "", &[]);
        let mut fragments = frame(0x1, b"hel", false, true);
        fragments.extend(frame(0x9, b"p", true, true));
        fragments.extend(frame(0x0, b"lo", true, true));
        web.write_all(&fragments).unwrap();
        assert_eq!(
            read_frame(&mut web),
            (0xA, b"p".to_vec()),
            "{backend}: pong"
        );
        expect_bytes(&mut tcp, b"hello");

        // Frames sent right behind the upgrade request (before the answer) are not lost.
        let early = frame(0x2, b"early", true, true);
        let (_early_web, status) = ws_raw_upgrade(http, "", &early);
        assert_eq!(status, 101);
        expect_bytes(&mut tcp, b"early");

        // The close handshake: the code echoed, then the connection closed.
        web.write_all(&frame(0x8, &1000u16.to_be_bytes(), true, true))
            .unwrap();
        assert_eq!(read_close_code(&mut web), 1000, "{backend}");
        let mut rest = Vec::new();
        let _ = web.read_to_end(&mut rest);
        assert!(
            rest.is_empty(),
            "{backend}: bytes after the close: {rest:?}"
        );
    }
}

#[test]
fn upgrades_are_checked_origin_version_and_key() {
    let (_server, _chat, http) = start(backends()[0], &["--ws-origin", "https://chat.example"]);
    let own = format!("Origin: http://{http}\r\n");
    for (origin, status) in [
        ("", 101), // not a browser
        (own.as_str(), 101),
        ("Origin: https://chat.example\r\n", 101),
        ("Origin: http://evil.example\r\n", 403),
        ("Origin: null\r\n", 403),
    ] {
        let (_web, got) = ws_raw_upgrade(http, origin, &[]);
        assert_eq!(got, status, "{origin:?}");
    }
    let old = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n";
    let answer = http_get_with(http, "/ws", old);
    assert_eq!(answer.status, 426);
    assert_eq!(answer.header("sec-websocket-version"), Some("13"));
    let no_key = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
    assert_eq!(http_get_with(http, "/ws", no_key).status, 400);
    assert_eq!(
        http_get_with(http, "/ws", "").status,
        400,
        "a plain GET /ws"
    );
    // The page is there, with a policy that allows nothing from elsewhere.
    let page = http_get_with(http, "/", "");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("chat.js"), "{}", page.text());
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    for path in ["/chat.js", "/chat.css"] {
        assert_eq!(http_get_with(http, path, "").status, 200, "{path}");
    }
}

#[test]
fn no_web_leaves_only_the_operators_endpoints() {
    let (_server, _chat, http) = start(backends()[0], &["--no-web"]);
    for path in ["/", "/chat.js", "/ws"] {
        assert_eq!(http_get_with(http, path, "").status, 404, "{path}");
    }
    assert_eq!(http_get_with(http, "/healthz", "").status, 200);
}

#[test]
fn silent_web_clients_are_pinged_then_cut_and_answering_ones_stay() {
    for backend in backends() {
        let (mut server, chat, http) = start(backend, &["--ws-ping", "0.2"]);
        let mut tcp = connect(chat);
        let (mut silent, _) = ws_raw_upgrade(http, "", &[]);
        let (mut answering, _) = ws_raw_upgrade(http, "", &[]);
        seated(&mut server, 3);
        // The answering client pongs three pings, then speaks: it is still in the room.
        let answerer = thread::spawn(move || {
            let mut pings = 0;
            while pings < 3 {
                let (opcode, payload) = read_frame(&mut answering);
                if opcode == 0x9 {
                    pings += 1;
                    answering
                        .write_all(&frame(0xA, &payload, true, true))
                        .unwrap();
                }
            }
            answering
                .write_all(&frame(0x2, b"still here", true, true))
                .unwrap();
            answering
        });
        // The silent one sees a ping, then the close (1001), then the end of the stream.
        assert_eq!(read_frame(&mut silent).0, 0x9, "{backend}: a ping first");
        assert_eq!(read_close_code(&mut silent), 1001, "{backend}");
        assert_eq!(server.wait_for_count("idle timeout", 1), 1, "{backend}");
        let _answering = answerer.join().expect("the answering client");
        expect_bytes(&mut tcp, b"still here");
    }
}

#[test]
fn the_rooms_limits_apply_to_web_clients() {
    for backend in backends() {
        // A full room answers the upgrade 503.
        let (mut server, chat, http) = start(backend, &["--max-clients", "1"]);
        let _tcp = connect(chat);
        seated(&mut server, 1);
        let (_web, status) = ws_raw_upgrade(http, "", &[]);
        assert_eq!(status, 503, "{backend}");
        drop(server);

        // A web client that does not read is a slow consumer like any other.
        let args = ["--max-pending", "64KiB", "--write-timeout", "30"];
        let (mut server, chat, http) = start(backend, &args);
        let mut sender = connect(chat);
        let (_stalled, _) = ws_raw_upgrade(http, "", &[]);
        seated(&mut server, 2);
        let chunk = vec![b'x'; 64 * 1024];
        let writer = thread::spawn(move || {
            // Until the server cuts the reader (the sender's writes may fail after the test
            // ends, which is fine).
            for _ in 0..256 {
                if sender.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        assert_eq!(
            server.wait_for_count("slow consumer", 1),
            1,
            "{backend}:\n{}",
            server.seen.join("\n")
        );
        drop(server);
        let _ = writer.join();
    }
}

#[cfg_attr(not(feature = "tls"), ignore = "wss:// needs a build with TLS")]
#[test]
fn wss_when_the_http_port_speaks_tls() {
    use relay_tests::tls::{tls_connect, TempDir, TestPki};
    let dir = TempDir::new();
    let pki = TestPki::new();
    let files = pki.write(dir.path());
    let (cert, key) = (files.cert.to_str().unwrap(), files.key.to_str().unwrap());
    for backend in backends() {
        let args = ["--tls-cert", cert, "--tls-key", key, "--http-tls"];
        let (mut server, chat, http) = start(backend, &args);
        let config = pki.client_config(None);
        let mut member = tls_connect(chat, &config).expect("a TLS chat client");
        let stream = tls_connect(http, &config).expect("an HTTPS handshake");
        let (mut web, _) =
            tungstenite::client(format!("wss://localhost:{}/ws", http.port()), stream)
                .expect("a WebSocket handshake over TLS");
        seated(&mut server, 2);
        web.send(tungstenite::Message::Binary(b"secret".to_vec().into()))
            .unwrap();
        expect_bytes(&mut member, b"secret");
        member.write_all(b"reply").unwrap();
        loop {
            match web.read().expect("a message over wss") {
                tungstenite::Message::Binary(data) => break assert_eq!(&data[..], b"reply"),
                tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
                other => panic!("{backend}: {other:?}"),
            }
        }
    }
}
