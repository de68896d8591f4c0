//! `--allow`/`--deny` and the TLS options through the real binary: who gets in, what the log
//! says, and a clear exit 1 for every unusable TLS file.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;

use relay_tests::{
    connect, expect_bytes, expect_closed, free_port, start_on_free_port, ServerProcess,
};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_server"))
}

/// Starts the binary with `args` and the port, and waits for its startup line.
fn start(args: &[&str]) -> (ServerProcess, u16) {
    let (server, port, _) = start_on_free_port(bin(), args);
    (server, port)
}

/// Runs the binary with `args` (and a port it never gets to use) and expects exit 1; returns
/// its output.
fn fails(args: &[&str]) -> String {
    let mut all = args.to_vec();
    let port = free_port().expect("a free port").to_string();
    all.push(&port);
    let mut server = ServerProcess::spawn(bin(), &all, &[]);
    let (status, output) = server.wait_exit();
    assert_eq!(status.code(), Some(1), "{args:?}:\n{output}");
    assert!(!output.contains("listening on"), "it listened:\n{output}");
    output
}

fn has_ipv6_loopback() -> bool {
    TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

fn at(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A client from `ip` is closed at once, with nothing to read.
#[track_caller]
fn assert_refused(ip: IpAddr, port: u16) {
    let mut client = connect(at(ip, port));
    assert_eq!(
        expect_closed(&mut client),
        0,
        "a refused client from {ip} got bytes"
    );
}

/// A client from `source` (or the system's choice for `ip` when `None`) joins: what it sends
/// reaches `member`. Returns it, still connected.
#[track_caller]
fn assert_admitted(ip: IpAddr, port: u16, member: &mut TcpStream) -> TcpStream {
    let mut client = connect(at(ip, port));
    let hello = format!("hello from {ip}\n");
    client.write_all(hello.as_bytes()).unwrap();
    expect_bytes(member, hello.as_bytes());
    client
}

#[test]
fn allow_admits_only_the_listed_family_and_addresses() {
    let (mut server, port) = start(&["--allow", "127.0.0.1"]);
    let line = server
        .wait_for_line("access list")
        .expect("an access-list line");
    assert!(line.contains("allow only 127.0.0.1/32"), "{line}");
    let mut member = connect(at(V4, port));
    let _second = assert_admitted(V4, port, &mut member);
    if has_ipv6_loopback() {
        assert_refused(V6, port);
        assert!(server.wait_for_line("refused [::1]").is_some());
        drop((member, _second));

        // And the other way round.
        let (mut server, port) = start(&["--allow", "::1/128"]);
        let mut member = connect(at(V6, port));
        let _second = assert_admitted(V6, port, &mut member);
        assert_refused(V4, port);
        let line = server
            .wait_for_line("refused 127.0.0.1")
            .expect("a refusal line");
        assert!(line.contains("matches no --allow rule"), "{line}");
    }
}

#[test]
fn deny_wins_over_allow_and_ranges_match() {
    assert!(
        has_ipv6_loopback(),
        "this test needs an IPv6 loopback (::1), which this machine lacks"
    );
    let (mut server, port) = start(&[
        "--allow",
        "127.0.0.0/8",
        "--allow",
        "::/0",
        "--deny",
        "127.0.0.0/30",
    ]);
    let line = server
        .wait_for_line("access list")
        .expect("an access-list line");
    assert!(
        line.contains("allow only 127.0.0.0/8, ::/0; deny 127.0.0.0/30"),
        "{line}"
    );
    let mut member = connect(at(V6, port));
    let _v6 = assert_admitted(V6, port, &mut member);
    assert_refused(V4, port);
    let line = server
        .wait_for_line("refused 127.0.0.1")
        .expect("a refusal line");
    assert!(line.contains("matches --deny 127.0.0.0/30"), "{line}");
    // Elsewhere in 127.0.0.0/8, outside the denied /30: admitted. Linux routes the whole /8 to
    // the loopback interface, so a client can send from 127.0.0.9.
    #[cfg(target_os = "linux")]
    {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 9], 0)).into())
            .unwrap();
        socket.connect(&at(V4, port).into()).unwrap();
        let mut client: TcpStream = socket.into();
        client.set_read_timeout(Some(relay_tests::TIMEOUT)).unwrap();
        client.write_all(b"from .9\n").unwrap();
        expect_bytes(&mut member, b"from .9\n");
    }
}

#[test]
fn a_refused_address_is_logged_once_however_often_it_knocks() {
    assert!(
        has_ipv6_loopback(),
        "this test needs an IPv6 loopback (::1), which this machine lacks"
    );
    let (mut server, port) = start(&["--deny", "127.0.0.1"]);
    for _ in 0..5 {
        assert_refused(V4, port);
    }
    // The server handles connections in order: once this one is logged, so are the five.
    let _member = connect(at(V6, port));
    assert!(server.wait_for_line("New incoming connection").is_some());
    let refusals = server
        .seen
        .iter()
        .filter(|l| l.contains("refused 127.0.0.1"))
        .count();
    assert_eq!(refusals, 1, "{:#?}", server.seen);
    // Every refusal is counted, logged or not (the summary at a POSIX-signal stop).
    #[cfg(unix)]
    {
        server.signal("TERM");
        let (_, output) = server.wait_exit();
        assert!(output.contains("5 by access list"), "{output}");
    }
}

#[test]
fn plain_runs_say_nothing_of_tls_or_access_lists() {
    let (mut server, port) = start(&[]);
    let _client = connect(at(V4, port));
    assert!(server.wait_for_line("New incoming connection").is_some());
    for word in ["TLS", "access list"] {
        assert!(
            !server.seen.iter().any(|l| l.contains(word)),
            "{word}: {:#?}",
            server.seen
        );
    }
}

#[test]
fn bad_access_rules_name_the_option_and_exit_1() {
    for (flag, value) in [
        ("--allow", "10.0.0.0/33"),
        ("--deny", "::1/129"),
        ("--allow", "localhost"),
    ] {
        let output = fails(&[flag, value]);
        assert!(
            output.contains(&format!("invalid value {value:?} for {flag}")),
            "{output}"
        );
    }
}

#[cfg(not(feature = "tls"))]
#[test]
fn tls_options_in_a_build_without_tls_are_a_clear_error() {
    let output = fails(&["--tls-cert", "cert.pem", "--tls-key", "key.pem"]);
    assert!(output.contains("server: this build has no TLS"), "{output}");
}

#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use std::time::{Duration, Instant};

    use relay_tests::tls::{
        tls_connect, tls_expect_closed, tls_join_room, PkiFiles, TempDir, TestPki,
    };

    fn path(p: &Path) -> &str {
        p.to_str().expect("a UTF-8 temporary path")
    }

    fn tls_args(files: &PkiFiles) -> Vec<&str> {
        vec![
            "--tls-cert",
            path(&files.cert),
            "--tls-key",
            path(&files.key),
        ]
    }

    #[test]
    fn a_tls_room_through_the_binary_drops_plaintext_clients() {
        let (pki, dir) = (TestPki::new(), TempDir::new());
        let files = pki.write(dir.path());
        let (mut server, port) = start(&tls_args(&files));
        let line = server.wait_for_line("TLS on").expect("a TLS line");
        assert!(
            line.contains(&format!("certificate {}", files.cert.display())),
            "{line}"
        );
        assert!(line.contains("no client certificates asked for"), "{line}");
        let config = pki.client_config(None);
        let mut clients = tls_join_room(at(V4, port), &config, 2);
        let mut plain = connect(at(V4, port));
        plain.write_all(b"plain hello\n").unwrap();
        expect_closed(&mut plain);
        assert!(server.wait_for_line("handshake failed").is_some());
        clients[0].write_all(b"\x00\xffstill private").unwrap();
        clients[0].flush().unwrap();
        expect_bytes(&mut clients[1], b"\x00\xffstill private");
        if has_ipv6_loopback() {
            let mut six = tls_connect(at(V6, port), &config).expect("TLS over ::1");
            six.write_all(b"six").unwrap();
            six.flush().unwrap();
            expect_bytes(&mut clients[0], b"six");
        }
    }

    #[test]
    fn mutual_tls_through_the_binary_requires_a_client_certificate() {
        let (pki, dir) = (TestPki::new(), TempDir::new());
        let files = pki.write(dir.path());
        let mut args = tls_args(&files);
        args.extend(["--tls-client-ca", path(&files.ca)]);
        let (mut server, port) = start(&args);
        let line = server.wait_for_line("TLS on").expect("a TLS line");
        assert!(line.contains("client certificates required"), "{line}");
        let alice = pki.client_config(Some(&pki.client("alice")));
        let bob = pki.client_config(Some(&pki.client("bob")));
        let mut members = vec![
            tls_connect(at(V4, port), &alice).expect("alice"),
            tls_connect(at(V4, port), &bob).expect("bob"),
        ];
        relay_tests::sync_room(&mut members);
        // No certificate: TLS 1.3 lets the client finish first; the server's alert or close
        // follows, and it never receives the room's bytes.
        if let Ok(mut stranger) = tls_connect(at(V4, port), &pki.client_config(None)) {
            members[0].write_all(b"members only").unwrap();
            members[0].flush().unwrap();
            expect_bytes(&mut members[1], b"members only");
            let _ = tls_expect_closed(&mut stranger);
        }
        let line = server
            .wait_for_line("handshake failed")
            .expect("a refusal line");
        assert!(line.to_lowercase().contains("certificate"), "{line}");
    }

    #[test]
    fn a_stalled_handshake_is_cut_after_handshake_timeout() {
        let (pki, dir) = (TestPki::new(), TempDir::new());
        let files = pki.write(dir.path());
        let mut args = tls_args(&files);
        args.extend(["--handshake-timeout", "0.5"]);
        let (mut server, port) = start(&args);
        let started = Instant::now();
        let mut staller = connect(at(V4, port));
        staller.write_all(&[0x16, 0x03]).unwrap();
        expect_closed(&mut staller);
        assert!(started.elapsed() >= Duration::from_millis(500));
        let line = server
            .wait_for_line("not established within")
            .expect("a timeout line");
        assert!(
            line.contains("handshake timeout (not established within 0.5 s)"),
            "{line}"
        );
    }

    #[test]
    fn unusable_tls_files_exit_1_naming_the_file() {
        let (pki, dir) = (TestPki::new(), TempDir::new());
        let files = pki.write(dir.path());
        let other = TestPki::named("another CA");
        let other_key = dir.path().join("other.key");
        std::fs::write(&other_key, &other.server.key).unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "this is not PEM\n").unwrap();
        let missing = dir.path().join("missing.pem");
        let (cert, key, ca) = (path(&files.cert), path(&files.key), path(&files.ca));
        let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
            (
                vec!["--tls-cert", path(&missing), "--tls-key", key],
                vec![format!(
                    "server: cannot read the TLS certificate file {}",
                    missing.display()
                )],
            ),
            (
                vec!["--tls-cert", cert, "--tls-key", path(&missing)],
                vec![format!(
                    "server: cannot read the TLS key file {}",
                    missing.display()
                )],
            ),
            (
                vec!["--tls-cert", path(&garbage), "--tls-key", key],
                vec![format!("{} holds no PEM certificate", garbage.display())],
            ),
            (
                // A certificate where the key should be.
                vec!["--tls-cert", cert, "--tls-key", cert],
                vec![format!(
                    "the TLS key file {} holds no PEM private key",
                    files.cert.display()
                )],
            ),
            (
                vec!["--tls-cert", cert, "--tls-key", path(&other_key)],
                vec![
                    files.cert.display().to_string(),
                    other_key.display().to_string(),
                    "do not belong together".into(),
                ],
            ),
            (
                vec![
                    "--tls-cert",
                    cert,
                    "--tls-key",
                    key,
                    "--tls-client-ca",
                    path(&missing),
                ],
                vec![format!(
                    "cannot read the client CA file {}",
                    missing.display()
                )],
            ),
            (
                vec!["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", key],
                vec![format!(
                    "the client CA file {} holds no PEM certificate",
                    files.key.display()
                )],
            ),
            (
                vec!["--tls-cert", cert],
                vec!["server: --tls-cert needs --tls-key".into()],
            ),
            (
                vec!["--tls-key", key],
                vec!["server: --tls-key needs --tls-cert".into()],
            ),
            (
                vec!["--tls-client-ca", ca],
                vec!["server: --tls-client-ca needs --tls-cert and --tls-key".into()],
            ),
        ];
        for (args, expected) in cases {
            let output = fails(&args);
            for text in expected {
                assert!(
                    output.contains(&text),
                    "{args:?}: expected {text:?} in:\n{output}"
                );
            }
            assert!(!output.contains("os error"), "{output}");
        }
    }
}
