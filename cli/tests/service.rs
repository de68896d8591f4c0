//! Running under a service manager, through the real binary: systemd's readiness protocol
//! (`NOTIFY_SOCKET`). The notify socket is a datagram socket the test binds itself, so no systemd
//! is needed. Unix only: Windows has no systemd, and the binary sends nothing there.
#![cfg(unix)]

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use relay_tests::tls::TempDir;
use relay_tests::{expect_bytes, join_room, start_with_retry, Ready, ServerProcess, TIMEOUT};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_server"))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A notify socket as systemd would make one: a datagram socket the server writes to.
struct NotifySocket {
    socket: UnixDatagram,
    path: String,
    _dir: TempDir,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = TempDir::new();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(TIMEOUT))
            .expect("bound the notify reads");
        NotifySocket {
            socket,
            path: path.to_str().expect("a UTF-8 temporary path").to_string(),
            _dir: dir,
        }
    }

    /// The next notice (one datagram, its lines joined by `\n`), or a panic after [`TIMEOUT`].
    #[track_caller]
    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notice from the server within {TIMEOUT:?}: {e}"));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Notices until one has the line `line`; returns that one.
    #[track_caller]
    fn until(&self, line: &str) -> String {
        loop {
            let notice = self.next();
            if notice.lines().any(|l| l == line) {
                return notice;
            }
        }
    }
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
    let (status, output) = server.wait_exit();
    assert_eq!(status.code(), Some(0), "{output}");
}

#[test]
fn without_notify_socket_nothing_changes() {
    // The plain start other tests use: no NOTIFY_SOCKET, no warning about one.
    let (mut server, port, _) = relay_tests::start_on_free_port(bin(), &[]);
    let mut clients = join_room(loopback(port), 2);
    clients[1].write_all(b"x").unwrap();
    expect_bytes(&mut clients[0], b"x");
    server.signal("TERM");
    let (status, output) = server.wait_exit();
    assert_eq!(status.code(), Some(0), "{output}");
    assert!(!output.contains("service manager"), "{output}");
}
