//! The options a terminal user expects, through the real binary: the listen address and IPv6,
//! line mode with tags and notices, JSON logs, statistics, help, and a clear error for each bad
//! value.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;

use relay_tests::{
    connect, expect_bytes, expect_closed, join_room, start_on_free_port, ServerProcess, TIMEOUT,
};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_server"))
}

/// Starts the binary with `args` and the port, and waits for its startup line.
fn start(args: &[&str]) -> (ServerProcess, u16, String) {
    start_on_free_port(bin(), args)
}

fn v4(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Whether this machine has an IPv6 loopback to test with.
fn has_ipv6_loopback() -> bool {
    TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

/// Reads until `n` lines arrived (bounded by the stream's timeout).
fn read_lines(stream: &mut TcpStream, n: usize) -> Vec<String> {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut text = Vec::new();
    let mut buf = [0; 4096];
    while text.iter().filter(|&&b| b == b'\n').count() < n {
        let k = stream.read(&mut buf).expect("read");
        assert!(k > 0, "closed; got {:?}", String::from_utf8_lossy(&text));
        text.extend_from_slice(&buf[..k]);
    }
    // Split on `\n` only, so a `\r` the sender wrote stays visible.
    String::from_utf8(text)
        .unwrap()
        .split_terminator('\n')
        .map(str::to_string)
        .collect()
}

#[test]
fn ipv6_and_ipv4_clients_share_the_default_socket() {
    assert!(
        has_ipv6_loopback(),
        "this test needs an IPv6 loopback (::1), which this machine lacks"
    );
    let (_server, port, line) = start(&[]);
    assert!(line.contains(&format!("[::]:{port}")), "{line}");
    assert!(line.contains("IPv6 and IPv4"), "{line}");
    let mut six = connect(SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
    let mut four = connect(v4(port));
    // The later client speaks first: its bytes are read only once it is admitted, and the
    // server admits in the order clients connected, so the earlier one is in the room by then.
    four.write_all(b"from four\n").unwrap();
    expect_bytes(&mut six, b"from four\n");
    six.write_all(b"from six\n").unwrap();
    expect_bytes(&mut four, b"from six\n");
}

#[test]
fn bind_restricts_the_listen_address() {
    let (_server, port, line) = start(&["--bind", "127.0.0.1"]);
    assert!(line.contains(&format!("127.0.0.1:{port} (IPv4")), "{line}");
    let mut clients = join_room(v4(port), 2);
    clients[0].write_all(b"local").unwrap();
    expect_bytes(&mut clients[1], b"local");
    if has_ipv6_loopback() {
        let refused = TcpStream::connect((Ipv6Addr::LOCALHOST, port));
        assert!(refused.is_err(), "an IPv4-only server accepted ::1");
    }
}

#[test]
fn line_mode_with_tags_and_notices_through_the_binary() {
    let (_server, port, _) = start(&["--framing", "line", "--tag", "--announce"]);
    let mut alice = connect(v4(port));
    let mut bob = connect(v4(port));
    assert_eq!(read_lines(&mut alice, 1), ["* 2 joined"]);
    bob.write_all(b"hel").unwrap();
    bob.write_all(b"lo\r\nhow are").unwrap();
    bob.write_all(b" you?\n").unwrap();
    assert_eq!(
        read_lines(&mut alice, 2),
        ["[2] hello\r", "[2] how are you?"]
    );
    drop(bob);
    assert_eq!(read_lines(&mut alice, 1), ["* 2 left"]);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let (mut server, port, _) = start(&["--log-format", "json"]);
    let mut clients = join_room(v4(port), 2);
    clients[0].write_all(b"x").unwrap();
    expect_bytes(&mut clients[1], b"x");
    drop(clients);
    assert!(server.wait_for_line("removing connection").is_some());
    let output = server.seen.join("\n");
    let mut messages = Vec::new();
    for line in output.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value["timestamp"].is_string(), "{line}");
        assert!(value["level"].is_string(), "{line}");
        messages.push(
            value["fields"]["message"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    assert!(
        messages.iter().any(|m| m.starts_with("listening on")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("New incoming connection")),
        "{messages:?}"
    );
}

#[test]
fn stats_lines_count_a_known_exchange() {
    let (mut server, port, _) = start(&["--stats-interval", "0.05"]);
    let mut clients = join_room(v4(port), 3);
    clients[0].write_all(b"12345").unwrap();
    expect_bytes(&mut clients[1], b"12345");
    expect_bytes(&mut clients[2], b"12345");
    // join_room's probe (one message to two receivers) plus ours: 2 messages in, 4 deliveries.
    // Wait for a stats line that has seen both.
    let line = loop {
        let line = server.wait_for_line("stats:").expect("no stats line");
        server.seen.retain(|l| !l.contains("stats:"));
        if line.contains("2 messages /") {
            break line;
        }
    };
    assert!(line.contains("stats: 3 clients now"), "{line}");
    assert!(line.contains("3 clients served (peak 3)"), "{line}");
    assert!(line.contains("4 messages queued /"), "{line}");
    assert!(line.contains("cut: 0 left"), "{line}");
}

#[test]
fn every_bad_option_value_names_the_option_and_exits_1() {
    let cases: &[(&[&str], &str)] = &[
        (&["--bind", "localhost"], "--bind"),
        (&["--bind", "300.1.1.1"], "--bind"),
        (&["--framing", "words"], "--framing"),
        (&["--max-line", "0"], "--max-line"),
        (&["--max-line", "lots"], "--max-line"),
        (&["--max-pending", "16 parsecs"], "--max-pending"),
        (&["--write-timeout", "-1"], "--write-timeout"),
        (&["--drain-timeout", "soon"], "--drain-timeout"),
        (&["--max-clients", "0"], "--max-clients"),
        (&["--log-format", "xml"], "--log-format"),
        (&["--stats-interval", "0"], "--stats-interval"),
        (&["--backend", "kqueue"], "--backend"),
        (&["--tag"], "--tag"),
        (&["--announce"], "--announce"),
        (&["--pace-budget", "lots"], "--pace-budget"),
        (&["--lag-grace", "soon"], "--lag-grace"),
        (&["--max-per-address", "0"], "--max-per-address"),
        (&["--max-rate", "fast"], "--max-rate"),
        (&["--burst", "16KiB"], "--burst"),
        (&["--keepalive", "-1"], "--keepalive"),
        (&["--idle-timeout", "0"], "--idle-timeout"),
        (
            &["--http", "8222", "--ws-max-message", "70000"],
            "--ws-max-message",
        ),
        (&["--http", "8222", "--ws-ping", "often"], "--ws-ping"),
        (&["--ws-origin", "https://a.example"], "--ws-origin"),
        (&["--no-web"], "--no-web"),
    ];
    for (args, option) in cases {
        let mut all = args.to_vec();
        all.push("9000");
        let mut server = ServerProcess::spawn(bin(), &all, &[]);
        let (status, output) = server.wait_exit();
        assert_eq!(status.code(), Some(1), "{args:?}: {output}");
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {output}");
        assert!(
            lines[0].starts_with("server: ") && lines[0].contains(option),
            "{args:?}: {output}"
        );
        assert_eq!(lines[1], "Usage: server <port> [OPTIONS]", "{args:?}");
    }
    // A value our own parser refuses says why, not only that it is invalid.
    for (args, why) in [
        (["--max-pending", "0"], "must be at least 1 byte"),
        (["--ws-max-message", "70000"], "must be at most 65535 bytes"),
        (
            ["--lag-grace", "soon"],
            "\"soon\" is not a number of seconds",
        ),
    ] {
        let mut server =
            ServerProcess::spawn(bin(), &[args[0], args[1], "--http", "8222", "9000"], &[]);
        let (status, output) = server.wait_exit();
        assert_eq!(status.code(), Some(1), "{args:?}: {output}");
        assert!(output.contains(why), "{args:?}: {output}");
    }
}

#[test]
fn help_explains_every_option_with_its_default_and_examples() {
    let mut help = ServerProcess::spawn(bin(), &["--help"], &[]);
    let (status, output) = help.wait_exit();
    assert!(status.success(), "{output}");
    for needle in [
        "--bind",
        "--framing",
        "--max-line",
        "--tag",
        "--announce",
        "--log-format",
        "--stats-interval",
        "--backend",
        "--max-pending",
        "--write-timeout",
        "--max-clients",
        "--drain-timeout",
        "--verbose",
        "--quiet",
        "[default: raw]",
        "[default: 64KiB]",
        "[default: 16MiB]",
        "[default: 10]",
        "[default: 2]",
        "[default: text]",
        "Examples:",
        "server --framing line --tag --announce 9000",
        if cfg!(feature = "polling") {
            "[default: polling]"
        } else {
            "[default: select]"
        },
    ] {
        assert!(
            output.contains(needle),
            "--help lacks {needle:?}:\n{output}"
        );
    }
}

#[test]
fn seats_per_address_and_the_idle_timeout_work_through_the_binary() {
    let (mut server, port, _) = start(&["--max-per-address", "1", "--idle-timeout", "0.3"]);
    let _first = connect(v4(port));
    let mut second = connect(v4(port));
    assert_eq!(
        expect_closed(&mut second),
        0,
        "a second client from 127.0.0.1 got data"
    );
    server
        .wait_for_line("too many clients from 127.0.0.1")
        .expect("no refusal line");
    // The first client says nothing and is sent nothing: it is cut as idle.
    server.wait_for_line("idle timeout").expect("no idle cut");
}
