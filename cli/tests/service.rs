//! Running under a service manager, through the real binary: systemd's readiness protocol
//! (`NOTIFY_SOCKET`) and reload on SIGHUP (TLS files and access lists read again, connected
//! clients untouched). The notify socket is a datagram socket the test binds itself, so no
//! systemd is needed. Unix only: Windows has neither systemd nor SIGHUP.
#![cfg(unix)]

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;

use relay_tests::tls::TempDir;
use relay_tests::{
    connect, expect_bytes, expect_closed, join_room, start_on_free_port, start_with_retry,
    NotifySocket, Ready, ServerProcess, TIMEOUT,
};
use socket2::{Domain, Protocol, Socket, Type};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_server"))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Sends SIGTERM, expects exit 0 and returns the output.
#[track_caller]
fn stop(server: &mut ServerProcess) -> String {
    server.signal("TERM");
    exited_0(server)
}

/// Waits for the exit, expects code 0 and returns the output.
#[track_caller]
fn exited_0(server: &mut ServerProcess) -> String {
    let (status, output) = server.wait_exit();
    assert_eq!(status.code(), Some(0), "{output}");
    output
}

fn start_notifying(notify: &NotifySocket) -> (ServerProcess, u16) {
    let (server, port, _) = start_with_retry(Ready::Line("listening on"), |port| {
        ServerProcess::spawn(bin(), &[port], &[("NOTIFY_SOCKET", &notify.path)])
    });
    (server, port)
}

#[test]
fn notify_socket_gets_ready_before_serving_and_stopping_at_sigterm() {
    let notify = NotifySocket::new();
    let (mut server, port) = start_notifying(&notify);
    // The first notice is READY=1 with a status line, sent before the loop serves anyone: no
    // client has connected yet, and the listener is already up (join_room connects at once).
    let ready = notify.next();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        ready.contains("STATUS=listening on") && ready.contains("0 clients"),
        "{ready:?}"
    );
    let mut clients = join_room(loopback(port), 2);
    clients[0].write_all(b"ready\n").unwrap();
    expect_bytes(&mut clients[1], b"ready\n");

    server.signal("TERM");
    let stopping = notify.until("STOPPING=1");
    assert!(stopping.contains("STATUS=draining"), "{stopping:?}");
    let stopped = notify.next();
    assert!(
        stopped.contains("STATUS=stopped; 2 clients served, 2 connected at the stop"),
        "{stopped:?}"
    );
    exited_0(&mut server);
}

#[test]
fn without_notify_socket_nothing_changes() {
    // The plain start other tests use: no NOTIFY_SOCKET, no warning about one.
    let (mut server, port, _) = start_on_free_port(bin(), &[]);
    let mut clients = join_room(loopback(port), 2);
    clients[1].write_all(b"x").unwrap();
    expect_bytes(&mut clients[0], b"x");
    let output = stop(&mut server);
    assert!(!output.contains("service manager"), "{output}");
}

/// Sends SIGHUP and waits for the `n`-th reload to be reported, done or failed; returns the line.
#[track_caller]
fn reload(server: &mut ServerProcess, n: usize) -> String {
    server.signal("HUP");
    let needles = ["reloaded:", "reload failed"];
    assert_eq!(
        server.wait_for_any_count(&needles, n),
        n,
        "reload {n} not reported:\n{}",
        server.seen.join("\n")
    );
    let mut reports = server
        .seen
        .iter()
        .filter(|l| needles.iter().any(|n| l.contains(n)));
    reports.next_back().expect("a reload line").clone()
}

/// A client whose connection comes from `source` (any 127.x.y.z works on Linux' loopback).
fn connect_from(source: Ipv4Addr, port: u16) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    socket
        .connect_timeout(&loopback(port).into(), TIMEOUT)
        .unwrap_or_else(|e| panic!("connect from {source}: {e}"));
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "needs 127.0.0.2 as a source address, which only Linux routes to loopback by default"
)]
fn sighup_rereads_the_deny_file_for_new_clients_and_keeps_the_connected() {
    let dir = TempDir::new();
    let deny = dir.path().join("deny.txt");
    std::fs::write(&deny, "# nobody denied yet\n").unwrap();
    let deny_arg = deny.to_str().unwrap();
    let (mut server, port, _) = start_on_free_port(bin(), &["--deny-file", deny_arg]);
    let second = Ipv4Addr::new(127, 0, 0, 2);
    let mut member = connect(loopback(port));
    let mut old = connect_from(second, port);
    old.write_all(b"from .2\n").unwrap();
    expect_bytes(&mut member, b"from .2\n");

    std::fs::write(&deny, "127.0.0.2  # denied from now on\n").unwrap();
    let line = reload(&mut server, 1);
    assert!(line.contains("reloaded:"), "{line}");
    let mut refused = connect_from(second, port);
    assert_eq!(
        expect_closed(&mut refused),
        0,
        "a newly denied client got bytes"
    );
    // The client from 127.0.0.2 that was already in stays, both ways.
    old.write_all(b"still here\n").unwrap();
    expect_bytes(&mut member, b"still here\n");
    member.write_all(b"welcome\n").unwrap();
    expect_bytes(&mut old, b"welcome\n");

    // A broken file: the reload fails, says where, and the old list stays.
    std::fs::write(&deny, "127.0.0.2\nnot an address\n").unwrap();
    let line = reload(&mut server, 2);
    assert!(
        line.contains("reload failed") && line.contains("deny.txt") && line.contains("line 2"),
        "{line}"
    );
    let mut refused = connect_from(second, port);
    assert_eq!(expect_closed(&mut refused), 0, "the old deny list was lost");
    // A newcomer from 127.0.0.1 is admitted; once its bytes arrive it is in the room.
    let mut newcomer = connect(loopback(port));
    newcomer.write_all(b"newcomer\n").unwrap();
    expect_bytes(&mut member, b"newcomer\n");
    expect_bytes(&mut old, b"newcomer\n");
    old.write_all(b"after the failed reload\n").unwrap();
    expect_bytes(&mut member, b"after the failed reload\n");
    expect_bytes(&mut newcomer, b"after the failed reload\n");

    stop(&mut server);
}

#[test]
fn sighup_does_not_stop_the_server() {
    let (mut server, port, _) = start_on_free_port(bin(), &[]);
    let line = reload(&mut server, 1);
    assert!(line.contains("reloaded:"), "{line}");
    let mut clients = join_room(loopback(port), 2);
    clients[0].write_all(b"after HUP").unwrap();
    expect_bytes(&mut clients[1], b"after HUP");
    let output = stop(&mut server);
    assert!(output.contains("stopped: 2 clients served"), "{output}");
}

#[cfg(feature = "tls")]
#[test]
fn sighup_with_a_new_certificate_serves_it_to_new_clients_and_keeps_old_sessions() {
    use relay_tests::tls::{tls_connect, tls_join_room, TestPki};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let (first, second) = (TestPki::named("first CA"), TestPki::named("second CA"));
    let dir = TempDir::new();
    let files = first.write(dir.path());
    let (cert, key) = (files.cert.to_str().unwrap(), files.key.to_str().unwrap());
    let (mut server, port, _) = start_on_free_port(bin(), &["--tls-cert", cert, "--tls-key", key]);
    let mut old = tls_join_room(loopback(port), &first.client_config(None), 2);

    // The renewed certificate, from a CA the old clients do not trust, in the same files.
    second.write(dir.path());
    let line = reload(&mut server, 1);
    assert!(line.contains("reloaded:"), "{line}");
    let mut new = tls_connect(loopback(port), &second.client_config(None))
        .expect("a client trusting only the new CA completes its handshake");
    let presented = new.conn.peer_certificates().expect("a server certificate")[0].clone();
    let expected = CertificateDer::from_pem_slice(second.server.cert.as_bytes()).unwrap();
    assert_eq!(
        presented, expected,
        "the new client saw another certificate"
    );
    assert!(
        tls_connect(loopback(port), &first.client_config(None)).is_err(),
        "a new client trusting only the old CA still got in"
    );

    // The old sessions go on, byte-exact, and meet the new client in the same room.
    let payload: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
    old[0].write_all(&payload).unwrap();
    old[0].flush().unwrap();
    expect_bytes(&mut old[1], &payload);
    new.write_all(b"new session\n").unwrap();
    new.flush().unwrap();
    expect_bytes(&mut old[0], b"new session\n");
    expect_bytes(&mut old[1], b"new session\n");

    stop(&mut server);
}

#[test]
#[ignore = "needs systemd-socket-activate (Debian's systemd package): run with --ignored, CI does"]
fn socket_activated_it_serves_the_passed_socket_and_notifies() {
    let tool = "systemd-socket-activate";
    let found = std::process::Command::new(tool).arg("--version").output();
    assert!(
        found.is_ok_and(|out| out.status.success()),
        "{tool} is missing: install Debian's `systemd` package (CI does)"
    );
    let notify = NotifySocket::new();
    let setenv = format!("NOTIFY_SOCKET={}", notify.path);
    let server_bin = bin().to_str().expect("a UTF-8 binary path");
    // systemd-socket-activate binds, then execs the server at the first connection, with the
    // socket as fd 3 (LISTEN_FDS=1, LISTEN_PID its own pid, which the exec keeps).
    let (mut server, port, _) = start_with_retry(Ready::Line("Listening on"), |port| {
        let listen = format!("127.0.0.1:{port}");
        let args = ["-l", &listen, "-E", &setenv, server_bin, port];
        ServerProcess::spawn(Path::new(tool), &args, &[])
    });
    let mut first = connect(loopback(port));
    let ready = notify.next();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    let line = server
        .wait_for_line("listening on")
        .expect("the server's startup line");
    assert!(
        line.contains(&format!("listening on 127.0.0.1:{port} (inherited; IPv4;")),
        "{line}"
    );
    let mut second = connect(loopback(port));
    second.write_all(b"hello over the passed socket\n").unwrap();
    expect_bytes(&mut first, b"hello over the passed socket\n");
    first.write_all(b"and back\n").unwrap();
    expect_bytes(&mut second, b"and back\n");

    server.signal("TERM");
    let stopping = notify.until("STOPPING=1");
    assert!(stopping.contains("STATUS=draining"), "{stopping:?}");
    let output = exited_0(&mut server);
    assert!(output.contains("stopped: 2 clients served"), "{output}");
}

/// Starts the server with stderr on a pipe, reads its output up to the startup line and closes
/// the pipe: the next log lines fail to write (EPIPE), as they fail (EIO) once the terminal of
/// a foreground server has closed. Returns the child and its port.
fn start_then_close_the_log(args: &[&str]) -> (std::process::Child, u16) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    for _ in 0..5 {
        let port = relay_tests::free_port().expect("a free port").to_string();
        let mut child = Command::new(bin())
            .args(args)
            .arg(&port)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .spawn()
            .expect("spawn the server");
        let stderr = child.stderr.take().expect("the stderr pipe");
        let (tx, rx) = mpsc::channel();
        // Reads up to the startup line, then returns, closing the pipe's read end.
        std::thread::spawn(move || {
            let mut seen = String::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                seen.push_str(&line);
                seen.push('\n');
                if line.contains("listening on") {
                    let _ = tx.send(Ok(()));
                    return;
                }
            }
            let _ = tx.send(Err(seen));
        });
        match rx.recv_timeout(TIMEOUT) {
            Ok(Ok(())) => return (child, port.parse().expect("a port")),
            Ok(Err(output)) if output.contains("cannot listen") => {
                let _ = child.wait();
            }
            other => {
                let _ = child.kill();
                panic!("the server did not start: {other:?}");
            }
        }
    }
    panic!("no free port after 5 tries");
}

#[test]
fn a_log_that_cannot_be_written_does_not_stop_the_server() {
    use wait_timeout::ChildExt;

    let (mut child, port) = start_then_close_the_log(&[]);
    // Each join and each departure is a log line that now fails to write; the room goes on.
    for round in 0..2 {
        let mut clients = join_room(loopback(port), 2);
        let text = format!("round {round}\n");
        clients[0].write_all(text.as_bytes()).unwrap();
        expect_bytes(&mut clients[1], text.as_bytes());
    }
    let pid = child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {pid}: {sent}");
    let status = child
        .wait_timeout(TIMEOUT)
        .expect("wait for the server")
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("the server did not stop within {TIMEOUT:?} of SIGTERM")
        });
    // Before the fix: exit 101, a panic at the first log line that could not be written.
    assert_eq!(status.code(), Some(0), "{status}");
}

/// Two passed sockets told apart by name (`LISTEN_FDNAMES=chat:http`, as two socket units with
/// `FileDescriptorName=` give): the chat port relays, the HTTP window answers on its own socket,
/// and neither the port argument nor the --http address is bound.
#[test]
#[ignore = "needs systemd-socket-activate (Debian's systemd package): run with --ignored, CI does"]
fn socket_activated_it_serves_a_named_http_socket_beside_the_chat_port() {
    let tool = "systemd-socket-activate";
    let found = std::process::Command::new(tool).arg("--version").output();
    assert!(
        found.is_ok_and(|out| out.status.success()),
        "{tool} is missing: install Debian's `systemd` package (CI does)"
    );
    let server_bin = bin().to_str().expect("a UTF-8 binary path");
    let mut http_port = 0;
    let (mut server, port, _) = start_with_retry(Ready::Line("as 4"), |port| {
        http_port = relay_tests::free_port().expect("a free port");
        let chat = format!("127.0.0.1:{port}");
        let http = format!("127.0.0.1:{http_port}");
        // --http names an address nobody listens on: the passed socket is served instead.
        let args = [
            "-l",
            &chat,
            "-l",
            &http,
            "--fdname=chat:http",
            server_bin,
            "--http",
            "127.0.0.1:9",
            port,
        ];
        ServerProcess::spawn(Path::new(tool), &args, &[])
    });
    let mut first = connect(loopback(port));
    let line = server
        .wait_for_line("listening on")
        .expect("the server's startup line");
    assert!(
        line.contains(&format!("listening on 127.0.0.1:{port} (inherited;")),
        "{line}"
    );
    let line = server
        .wait_for_line(": /healthz")
        .expect("the HTTP startup line");
    assert!(
        line.contains(&format!(
            "http on 127.0.0.1:{http_port}: /healthz /metrics /stats /clients, chat page / \
             with WebSocket /ws (inherited;"
        )),
        "{line}"
    );
    let health = relay_tests::http_get(loopback(http_port), "/healthz");
    assert_eq!(health.status, 200, "{health:?}");
    let mut second = connect(loopback(port));
    second.write_all(b"chat beside the window\n").unwrap();
    expect_bytes(&mut first, b"chat beside the window\n");

    let output = stop(&mut server);
    assert!(output.contains("stopped: 2 clients served"), "{output}");
}
