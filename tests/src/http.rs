//! A raw HTTP/1.x client for the tests of `--http`: request bytes written as given, responses
//! read with bounded waits and cut by `Content-Length`, so a test sees exactly what the server
//! wrote (pipelining, HEAD, keep-alive, closes).

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Instant;

use crate::sockets::Socketed;
use crate::{connect, start_with_retry, Ready, ServerProcess, TIMEOUT};

/// Starts the binary `bin` on `backend` with `--http 127.0.0.1:0` and `args`, on a free chat
/// port: the server, the chat address (IPv4 loopback) and the HTTP address, read from its
/// startup line.
#[track_caller]
pub fn start_with_http(
    bin: &Path,
    backend: &str,
    args: &[&str],
) -> (ServerProcess, SocketAddr, SocketAddr) {
    let (mut server, port, _) = start_with_retry(Ready::Line("listening on"), |port| {
        let mut all = vec!["--backend", backend, "--http", "127.0.0.1:0"];
        all.extend_from_slice(args);
        all.push(port);
        ServerProcess::spawn(bin, &all, &[])
    });
    let line = server
        .wait_for_line(": /healthz /metrics")
        .expect("the HTTP startup line");
    let rest = &line[line.find(" on ").unwrap() + " on ".len()..];
    let http: SocketAddr = rest[..rest.find(": /healthz").unwrap()].parse().unwrap();
    (server, SocketAddr::from((Ipv4Addr::LOCALHOST, port)), http)
}

/// One response as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lower-cased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (empty for a HEAD request).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (lower case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A connection to `addr` with bounded reads and writes.
#[track_caller]
pub fn http_connect(addr: SocketAddr) -> TcpStream {
    connect(addr)
}

/// `GET path` on a new connection (`Connection: close`), the response read whole.
#[track_caller]
pub fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    http_get_with(addr, path, "")
}

/// `GET path` with `headers` (each line ending in CRLF) on a new connection.
#[track_caller]
pub fn http_get_with(addr: SocketAddr, path: &str, headers: &str) -> HttpResponse {
    let mut stream = http_connect(addr);
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
    read_response(&mut stream, false)
}

/// Reads one response from `stream`: the head up to the blank line, then `Content-Length`
/// bytes of body (none when `head_only`, the reply to a HEAD request). Reads one byte at a time
/// for the head so nothing of a following pipelined response is taken. Panics on a close before
/// the response is whole, or after [`TIMEOUT`].
#[track_caller]
pub fn read_response<S: Socketed + ?Sized>(stream: &mut S, head_only: bool) -> HttpResponse {
    let deadline = Instant::now() + TIMEOUT;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        read_bounded(stream, &mut byte, deadline, &head);
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).expect("a response head in UTF-8");
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {status_line:?}"));
    assert!(status_line.starts_with("HTTP/1."), "{status_line:?}");
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap_or((l, ""));
            (name.trim().to_ascii_lowercase(), value.trim().to_string())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().expect("a numeric Content-Length"))
        .expect("every response has a Content-Length");
    let mut body = vec![0; if head_only { 0 } else { length }];
    let mut got = 0;
    while got < body.len() {
        got += read_bounded(stream, &mut body[got..], deadline, b"(body)");
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// One read, with what is left of `deadline` as its timeout; panics on a close or a timeout.
#[track_caller]
fn read_bounded<S: Socketed + ?Sized>(
    stream: &mut S,
    buf: &mut [u8],
    deadline: Instant,
    so_far: &[u8],
) -> usize {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no whole response within {TIMEOUT:?}: {:?}",
            String::from_utf8_lossy(so_far)
        );
        stream
            .socket()
            .set_read_timeout(Some(left))
            .expect("set_read_timeout");
        match stream.read(buf) {
            Ok(0) => panic!(
                "closed before the response was whole: {:?}",
                String::from_utf8_lossy(so_far)
            ),
            Ok(n) => return n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "reading a response: {e} after {:?}",
                String::from_utf8_lossy(so_far)
            ),
        }
    }
}
