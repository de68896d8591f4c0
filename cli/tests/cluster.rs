//! `--cluster`: several `server` processes sharing one room through a real `nats-server` on a
//! port picked at run time. Tests that need nats-server are ignored by a plain `cargo test`; run
//! them with `cargo test -p server-cli --features cluster -- --ignored` (CI installs
//! nats-server and does), where a missing nats-server fails them, saying how to install it.
#![cfg(feature = "cluster")]

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use relay_tests::{
    connect, expect_bytes, expect_closed, free_port, nats_server, start_on_free_port, sync_room,
    Demux, Pattern, ServerProcess, TIMEOUT,
};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_server"))
}

/// A relay node: the process and where its clients connect.
struct Node {
    process: ServerProcess,
    addr: SocketAddr,
    /// Clients it has logged as accepted.
    accepted: usize,
}

impl Node {
    /// Starts `server --cluster URL extra... PORT` on a free port and waits for its startup line,
    /// which it prints only once its subscription is live on the NATS server.
    #[track_caller]
    fn start(url: &str, extra: &[&str]) -> Node {
        let mut args = vec!["--cluster", url, "--bind", "127.0.0.1"];
        args.extend_from_slice(extra);
        let (process, port, _) = start_on_free_port(bin(), &args);
        Node {
            process,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            accepted: 0,
        }
    }

    /// `n` new clients of this node, returned once it has logged accepting each, so they are in
    /// its room.
    #[track_caller]
    fn clients(&mut self, n: usize) -> Vec<TcpStream> {
        let clients: Vec<TcpStream> = (0..n).map(|_| connect(self.addr)).collect();
        self.accepted += n;
        let logged = self
            .process
            .wait_for_count("New incoming connection", self.accepted);
        assert_eq!(logged, self.accepted, "not every client was accepted");
        clients
    }

    /// Stops it with SIGTERM and returns its final summary line.
    #[track_caller]
    fn stop(mut self) -> String {
        self.process.signal("TERM");
        let (status, output) = self.process.wait_exit();
        assert!(status.success(), "{status}\n{output}");
        output
            .lines()
            .find(|l| l.contains("stopped: "))
            .unwrap_or_else(|| panic!("no summary:\n{output}"))
            .to_string()
    }
}

/// The number before `what` in a summary line: `count(line, "published")`.
fn count(summary: &str, what: &str) -> u64 {
    let at = summary
        .find(&format!(" {what}"))
        .unwrap_or_else(|| panic!("{what:?} not in {summary}"));
    let digits: String = summary[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

/// Bytes in a sender's end marker: `0xF0 | s` each, which no pattern of fewer than 15 senders
/// contains.
const MARKER_LEN: usize = 4;

/// Sender `s` writes `total` bytes of its pattern in writes of 1 to 3,000 bytes, then its end
/// marker.
fn send_pattern(mut stream: TcpStream, s: usize, total: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let bytes = Pattern::bytes(s, 0, total);
        let mut at = 0;
        let mut step = 1 + s * 397;
        while at < total {
            step = (step * 7919 + 13) % 3000 + 1;
            let end = (at + step).min(total);
            stream.write_all(&bytes[at..end]).expect("send pattern");
            at = end;
        }
        let marker = [0xF0 | s as u8; MARKER_LEN];
        stream.write_all(&marker).expect("send the end marker");
    })
}

/// Feeds what arrives to `demux` until every sender in `from` has sent its end marker. A relay
/// keeps each sender's bytes in order, so a late duplicate of any of them would come before
/// that marker, and `demux` would reject it as more than was sent.
#[track_caller]
fn receive_until_markers(stream: &mut TcpStream, demux: &mut Demux, from: &[usize]) {
    let mut markers = [0; Pattern::SENDERS];
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = vec![0; 64 * 1024];
    while from.iter().any(|&s| markers[s] < MARKER_LEN) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "only {:?} and markers {markers:?} arrived",
            demux.seen
        );
        stream.set_read_timeout(Some(left)).unwrap();
        let n = match stream.read(&mut buf) {
            Ok(0) => panic!("closed after {:?}", demux.seen),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("read after {:?}: {e}", demux.seen),
        };
        for run in buf[..n].chunk_by(|a, b| (*a >= 0xF0) == (*b >= 0xF0)) {
            if run[0] < 0xF0 {
                demux.feed(run).unwrap_or_else(|e| panic!("{e}"));
                continue;
            }
            for &b in run {
                let s = usize::from(b & 0x0F);
                assert!(
                    Some(s) != demux.me() && markers[s] < MARKER_LEN,
                    "unexpected end-marker byte {b:#04x}"
                );
                markers[s] += 1;
            }
        }
    }
}

/// Reads until every one of `senders` senders' `per_sender` bytes arrived, complete, in order,
/// once, and never `me`'s own: everything before each other sender's end marker.
#[track_caller]
fn receive_all(stream: &mut TcpStream, senders: usize, me: Option<usize>, per_sender: usize) {
    let mut demux = Demux::expecting(senders, me, per_sender);
    let from: Vec<usize> = (0..senders).filter(|&s| Some(s) != me).collect();
    receive_until_markers(stream, &mut demux, &from);
    for s in from {
        assert_eq!(demux.seen[s], per_sender, "sender {s}: {:?}", demux.seen);
    }
}

/// Whatever arrives within `wait` (possibly nothing).
fn read_for(stream: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    stream.set_read_timeout(Some(wait)).unwrap();
    match stream.read(&mut buf) {
        Ok(n) => got.extend_from_slice(&buf[..n]),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        Err(e) => panic!("read: {e}"),
    }
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    got
}

/// Complete lines from `stream`, with `carry` holding a partial one between calls.
fn lines(stream: &mut TcpStream, carry: &mut Vec<u8>, wait: Duration) -> Vec<String> {
    carry.extend(read_for(stream, wait));
    let mut out = Vec::new();
    while let Some(end) = carry.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = carry.drain(..=end).collect();
        out.push(String::from_utf8(line).unwrap().trim_end().to_string());
    }
    out
}

/// Sends numbered pings from `from` until `to` reads one (what is sent while a node is still
/// reconnecting is lost, as NATS core promises), then returns its number. Lines that are not
/// pings were sent before and are skipped.
#[track_caller]
fn ping_until_heard(from: &mut TcpStream, to: &mut TcpStream, carry: &mut Vec<u8>) -> usize {
    let deadline = Instant::now() + TIMEOUT;
    for i in 0.. {
        assert!(Instant::now() < deadline, "no ping got through");
        from.write_all(format!("ping {i}\n").as_bytes()).unwrap();
        for line in lines(to, carry, Duration::from_millis(100)) {
            if let Some(n) = line.strip_prefix("ping ") {
                return n.parse().unwrap();
            }
        }
    }
    unreachable!()
}

#[test]
#[ignore = "needs nats-server: run with --ignored (CI does)"]
fn three_nodes_form_one_room_every_byte_once_in_order() {
    let nats = nats_server();
    let url = nats.url();
    let mut nodes: Vec<Node> = (0..3)
        .map(|_| Node::start(&url, &["--room", "r1"]))
        .collect();
    // Two clients per node; client i is pattern sender i.
    let mut clients: Vec<TcpStream> = nodes.iter_mut().flat_map(|n| n.clients(2)).collect();
    // The whole room: the last client's probe reaches the five others, across nodes.
    sync_room(&mut clients);

    const PER_SENDER: usize = 200_000;
    let senders: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(s, c)| send_pattern(c.try_clone().unwrap(), s, PER_SENDER))
        .collect();
    for (me, client) in clients.iter_mut().enumerate() {
        receive_all(client, 6, Some(me), PER_SENDER);
    }
    for s in senders {
        s.join().expect("sender");
    }
    drop(clients);
    for node in nodes {
        let summary = node.stop();
        assert!(summary.contains("; cluster: "), "{summary}");
        assert_eq!(count(&summary, "not published"), 0, "{summary}");
        assert!(count(&summary, "published") > 0, "{summary}");
        assert!(count(&summary, "messages received") > 0, "{summary}");
    }
}

#[test]
#[ignore = "needs nats-server: run with --ignored (CI does)"]
fn line_mode_keeps_lines_whole_and_ids_are_per_node() {
    let nats = nats_server();
    let args = ["--framing", "line", "--tag", "--announce"];
    let (mut a, mut b) = (
        Node::start(&nats.url(), &args),
        Node::start(&nats.url(), &args),
    );
    let mut on_a = a.clients(1).remove(0);
    let mut on_b = b.clients(1).remove(0);
    // Both are client 1 of their node; the notice of each join stays on its node.
    on_a.write_all(b"hello from a\n").unwrap();
    expect_bytes(&mut on_b, b"[1] hello from a\n");
    on_b.write_all(b"hi from b, in ").unwrap();
    on_b.write_all(b"two writes\n").unwrap();
    expect_bytes(&mut on_a, b"[1] hi from b, in two writes\n");
    drop((on_a, on_b));
    drop((a, b));
}

#[test]
#[ignore = "needs nats-server: run with --ignored (CI does)"]
fn nats_killed_and_restarted_mid_run_loses_only_the_outage() {
    let mut nats = nats_server();
    let url = nats.url();
    let (mut a, mut b) = (Node::start(&url, &[]), Node::start(&url, &[]));
    let mut on_a = a.clients(2);
    let mut on_b = b.clients(1).remove(0);
    on_a[0].write_all(b"before\n").unwrap();
    expect_bytes(&mut on_a[1], b"before\n");
    expect_bytes(&mut on_b, b"before\n");

    nats.kill();
    for node in [&mut a, &mut b] {
        assert!(
            node.process
                .wait_for_line("lost the connection to NATS")
                .is_some(),
            "the outage was not logged"
        );
    }
    // Local relaying goes on; what cannot be published is counted.
    on_a[0].write_all(b"during\n").unwrap();
    expect_bytes(&mut on_a[1], b"during\n");
    assert!(a.process.wait_for_line("NATS is unreachable").is_some());

    nats.restart();
    let mut carry = Vec::new();
    let (sender, local) = on_a.split_at_mut(1);
    let first = ping_until_heard(&mut sender[0], &mut on_b, &mut carry);
    for i in 0..200 {
        sender[0]
            .write_all(format!("after {i}\n").as_bytes())
            .unwrap();
    }
    // After the ping that got through, nothing is lost, duplicated or reordered.
    let mut expect = 0;
    let deadline = Instant::now() + TIMEOUT;
    while expect < 200 {
        assert!(Instant::now() < deadline, "only {expect} of 200 arrived");
        for line in lines(&mut on_b, &mut carry, Duration::from_millis(100)) {
            if let Some(n) = line.strip_prefix("ping ") {
                assert!(n.parse::<usize>().unwrap() > first, "{line:?} twice");
                continue;
            }
            assert_eq!(line, format!("after {expect}"));
            expect += 1;
        }
    }
    // And the other way.
    on_b.write_all(b"b is back\n").unwrap();
    let mut carry_a = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    'heard: loop {
        assert!(Instant::now() < deadline, "b's line never reached a");
        for line in lines(&mut local[0], &mut carry_a, Duration::from_millis(100)) {
            if line == "b is back" {
                break 'heard;
            }
            assert!(
                line.starts_with("ping ") || line.starts_with("after "),
                "{line}"
            );
        }
    }
    assert!(a
        .process
        .wait_for_line("publishing to NATS again")
        .is_some());
    drop((on_a, on_b));
    let summary = a.stop();
    assert!(count(&summary, "not published") >= 1, "{summary}");
    b.stop();
}

#[test]
#[ignore = "needs nats-server: run with --ignored (CI does)"]
fn a_node_killed_with_sigkill_does_not_disturb_the_others() {
    let nats = nats_server();
    let url = nats.url();
    let mut nodes: Vec<Node> = (0..3).map(|_| Node::start(&url, &[])).collect();
    let mut clients: Vec<TcpStream> = nodes.iter_mut().flat_map(|n| n.clients(1)).collect();
    sync_room(&mut clients);
    let mut nodes = nodes.into_iter();
    let (a, b, mut c) = (
        nodes.next().unwrap(),
        nodes.next().unwrap(),
        nodes.next().unwrap(),
    );
    // Mid-stream: c's client is sending when its node dies.
    let mut on_c = clients.pop().unwrap();
    let busy = send_pattern(on_c.try_clone().unwrap(), 2, 1 << 20);
    c.process.kill();
    expect_closed(&mut on_c);
    let _ = busy.join(); // its writes fail once the node is gone

    // a and b: complete, in order, each exactly once. Bytes from c may have arrived before it
    // died, so the checker is told about three senders but only a's and b's must be complete.
    const PER_SENDER: usize = 300_000;
    let senders: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(s, c)| send_pattern(c.try_clone().unwrap(), s, PER_SENDER))
        .collect();
    for (me, client) in clients.iter_mut().enumerate() {
        let other = 1 - me;
        let mut demux = Demux::expecting(3, Some(me), usize::MAX);
        receive_until_markers(client, &mut demux, &[other]);
        assert_eq!(demux.seen[other], PER_SENDER);
    }
    for s in senders {
        s.join().expect("sender");
    }
    drop(clients);
    for node in [a, b] {
        let summary = node.stop();
        assert_eq!(count(&summary, "not published"), 0, "{summary}");
    }
}

#[test]
#[ignore = "needs nats-server: run with --ignored (CI does)"]
fn an_optional_node_relays_locally_without_nats_and_joins_when_it_appears() {
    let mut nats = nats_server();
    let url = nats.url();
    nats.kill();
    let mut lonely = Node::start(&url, &["--cluster-optional"]);
    assert!(lonely.process.wait_for_line("unreachable").is_some());
    let mut local = lonely.clients(2);
    local[0].write_all(b"just us\n").unwrap();
    expect_bytes(&mut local[1], b"just us\n");

    nats.restart();
    let mut other = Node::start(&url, &[]);
    let mut far = other.clients(1).remove(0);
    let mut carry = Vec::new();
    ping_until_heard(&mut far, &mut local[0], &mut carry);
    local[1].write_all(b"found you\n").unwrap();
    expect_bytes(&mut far, b"found you\n");
    assert!(lonely.process.wait_for_line("connected to NATS").is_some());
}

#[test]
fn nats_unreachable_at_start_exits_1_naming_the_url() {
    // Nothing listens on the URL's port; the server exits before it would bind its own.
    let url = format!("nats://127.0.0.1:{}", free_port().unwrap());
    let port = free_port().unwrap().to_string();
    let mut server = ServerProcess::spawn(bin(), &["--cluster", &url, &port], &[]);
    let (status, output) = server.wait_exit();
    assert_eq!(status.code(), Some(1), "{output}");
    let prefix = format!("server: cannot connect to {url}: ");
    let last = output.lines().last().unwrap_or_default();
    assert!(last.starts_with(&prefix), "{output}");
    assert!(!last.contains("os error"), "{output}");
    assert!(!output.contains("listening on"), "{output}");
}

#[test]
fn cluster_options_are_checked() {
    let port = free_port().expect("a free port").to_string();
    let cases: [(&[&str], &str); 2] = [
        (
            &["--room", "r", &port],
            "server: --room needs --cluster URL",
        ),
        (
            &["--cluster-optional", &port],
            "server: --cluster-optional needs --cluster URL",
        ),
    ];
    for (args, needle) in cases {
        let mut server = ServerProcess::spawn(bin(), args, &[]);
        let (status, output) = server.wait_exit();
        assert_eq!(status.code(), Some(1), "{args:?}: {output}");
        assert!(output.contains(needle), "{args:?}: {output}");
    }
}

/// The room name is checked before the port is bound: on a port another socket holds, the
/// complaint is still the name, not the port.
#[test]
fn a_bad_room_name_is_reported_before_binding() {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let args = [
        "--cluster",
        "nats://127.0.0.1:1",
        "--room",
        "a.b",
        "--bind",
        "127.0.0.1",
        &port,
    ];
    let mut server = ServerProcess::spawn(bin(), &args, &[]);
    let (status, output) = server.wait_exit();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("invalid room name \"a.b\""), "{output}");
    assert!(!output.contains("cannot listen"), "{output}");
}

/// `--http` on a clustered node: `/metrics` counts what crossed NATS both ways, and `/stats`
/// has the same counters.
#[test]
#[ignore = "needs nats-server: run with --ignored (CI does)"]
fn http_metrics_count_the_cluster_traffic() {
    let nats = nats_server();
    let url = nats.url();
    let mut a = Node::start(&url, &["--room", "m", "--http", "127.0.0.1:0"]);
    let mut b = Node::start(&url, &["--room", "m"]);
    let line = a
        .process
        .wait_for_line(": /healthz /metrics")
        .expect("the HTTP startup line");
    let rest = &line[line.find(" on ").unwrap() + 4..];
    let http: SocketAddr = rest[..rest.find(": /healthz").unwrap()].parse().unwrap();
    let [mut on_a]: [TcpStream; 1] = a.clients(1).try_into().unwrap();
    let [mut on_b]: [TcpStream; 1] = b.clients(1).try_into().unwrap();
    let mut carry = Vec::new();
    ping_until_heard(&mut on_b, &mut on_a, &mut carry); // B to A: A received
    on_a.write_all(b"back\n").unwrap(); // A to B: A published
    expect_bytes(&mut on_b, b"back\n");

    let metrics = relay_tests::http_get(http, "/metrics");
    assert_eq!(metrics.status, 200);
    let value = |name: &str| -> f64 {
        let text = metrics.text();
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"));
        line[name.len() + 1..].parse().unwrap()
    };
    assert!(value("relay_cluster_received_total") >= 1.0);
    assert!(value("relay_cluster_published_total") >= 1.0);
    assert_eq!(value("relay_cluster_unpublished_total"), 0.0);
    let stats: serde_json::Value =
        serde_json::from_slice(&relay_tests::http_get(http, "/stats").body).unwrap();
    assert!(
        stats["cluster"]["received"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    drop((on_a, on_b));
    a.stop();
    b.stop();
}
