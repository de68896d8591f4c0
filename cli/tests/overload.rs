//! The binary under overload and faults: `--max-clients`, running out of descriptors under a low
//! `ulimit -n`, descriptor leaks over many connections, and draining at SIGTERM. Every test is
//! compiled everywhere; the ones that need `sh -c "ulimit -n"`, `/proc/<pid>` (Linux) or a POSIX
//! signal are ignored, with that reason, where those do not exist.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;

use relay_tests::{
    connect, expect_bytes, expect_closed, join_room, receive_pattern, start_with_retry, Pattern,
    Ready, ServerProcess,
};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_server")
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Starts the binary (through `sh` when `ulimit_n` is set, so the limit applies to it alone)
/// on a free port, retried if another process takes the port first, and waits for its startup
/// line.
fn start(args: &[&str], ulimit_n: Option<u32>) -> (ServerProcess, u16) {
    let (server, port, _) = start_with_retry(Ready::Line("listening on"), |port| {
        let mut all: Vec<&str> = args.to_vec();
        all.push(port);
        match ulimit_n {
            None => ServerProcess::spawn(Path::new(bin()), &all, &[]),
            Some(n) => {
                let script = format!("ulimit -n {n} && exec \"$0\" \"$@\"");
                let mut sh_args = vec!["-c", &script, bin()];
                sh_args.extend(all.iter().copied());
                ServerProcess::spawn(Path::new("/bin/sh"), &sh_args, &[])
            }
        }
    });
    (server, port)
}

/// The server's user + system CPU time, in clock ticks, from `/proc/<pid>/stat` (Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The descriptors the server has open, from `/proc/<pid>/fd` (Linux).
fn open_fds(pid: u32) -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read fd dir")
        .filter_map(|e| e.ok())
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            )
        })
        .collect();
    fds.sort();
    fds
}

#[test]
fn max_clients_refuses_the_excess_and_serves_the_rest() {
    let compiled = [
        cfg!(feature = "polling").then_some("polling"),
        cfg!(feature = "select").then_some("select"),
    ];
    for backend in compiled.into_iter().flatten() {
        let (mut server, port) = start(&["--backend", backend, "--max-clients", "3"], None);
        let mut members = join_room(loopback(port), 3);
        let mut late = connect(loopback(port));
        assert_eq!(
            expect_closed(&mut late),
            0,
            "{backend}: refused client got data"
        );
        assert!(server.wait_for_line("server full").is_some(), "{backend}");
        members[0].write_all(b"ok").unwrap();
        expect_bytes(&mut members[1], b"ok");
        expect_bytes(&mut members[2], b"ok");
    }
}

/// Under `ulimit -n 48` the process runs out of descriptors long before `--max-clients`: the
/// excess clients are closed at once, nobody already in is disturbed, the server does not spin,
/// and once clients leave new ones are served again.
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "sets the limit with `ulimit -n` and reads CPU time from /proc (Linux)"
)]
#[test]
fn out_of_descriptors_refuses_cleanly_without_spinning_and_recovers() {
    use relay_tests::{sync_room, TIMEOUT};
    use std::io::Read;
    use std::time::Instant;

    const EXTRA: usize = 60;
    let started = Instant::now();
    let (mut server, port) = start(&["--max-clients", "100000"], Some(48));
    let addr = loopback(port);
    let mut members = join_room(addr, 10);
    let mut extras: Vec<TcpStream> = (0..EXTRA).map(|_| connect(addr)).collect();
    // With 48 descriptors at most, the last one is certainly refused; once it is closed, the
    // server has dealt with every connection before it (it accepts in order).
    let mut marker = connect(addr);
    assert_eq!(expect_closed(&mut marker), 0);
    members[0].write_all(b"hi").unwrap();
    let mut admitted = Vec::new();
    let mut refused = 0;
    for mut extra in extras.drain(..) {
        let mut buf = [0; 2];
        extra.set_read_timeout(Some(TIMEOUT)).unwrap();
        match extra.read(&mut buf) {
            Ok(0) | Err(_) => refused += 1,
            Ok(_) => admitted.push(extra),
        }
    }
    assert!(refused > 0, "nobody was refused: was the limit applied?");
    for m in &mut members[1..] {
        expect_bytes(m, b"hi");
    }
    assert!(server
        .wait_for_line("refusing new clients until some leave")
        .is_some());
    // Free descriptors; once the server has seen them go (the admitted extras, five members),
    // a newcomer must get full service.
    let leaving = admitted.len() + 5;
    drop(admitted);
    drop(members.split_off(5));
    assert_eq!(
        server.wait_for_count("removing connection", leaving),
        leaving
    );
    members.push(connect(addr));
    sync_room(&mut members);
    members[0].write_all(b"welcome").unwrap();
    expect_bytes(&mut members[5], b"welcome");
    assert!(server
        .wait_for_line("accepting new clients again")
        .is_some());
    // A spinning accept loop would have burnt CPU for the whole test; allow a small fraction.
    let ticks_per_second = 100; // USER_HZ on every Linux we run on
    let cpu = cpu_ticks(server.pid()) as f64 / ticks_per_second as f64;
    let wall = started.elapsed().as_secs_f64();
    assert!(
        cpu < 0.5 * wall + 0.2,
        "server used {cpu:.2} s CPU in {wall:.2} s wall"
    );
    eprintln!("out-of-descriptors test: {refused} refused, server CPU {cpu:.2} s over {wall:.2} s");
}

#[cfg_attr(target_os = "linux", ignore = "stress: run with --ignored")]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "stress; counts the server's open descriptors in /proc/<pid>/fd (Linux)"
)]
#[test]
fn stress_ten_thousand_connections_leak_no_descriptors() {
    const CYCLES: usize = 10_000;
    // -v: a client that resets while still in the backlog may be reported by accept as
    // aborted, or fail its set-up; those are logged (the first at debug) instead of a removal.
    let (mut server, port) = start(&["-v"], None);
    let addr = loopback(port);
    // One connection first: the server opens what it keeps for the whole run (on Linux a second
    // handle to the listener) at its first accept, so the baseline is taken after it.
    drop(connect(addr));
    assert_eq!(server.wait_for_count("removing connection", 1), 1);
    let baseline = open_fds(server.pid());
    for i in 0..CYCLES {
        let c = connect(addr);
        if i % 2 == 0 {
            // Half of them reset instead of closing.
            relay_tests::set_linger_zero(&c);
        }
        drop(c);
    }
    // Every connection's removal (or aborted accept) is logged once; after the last one the
    // pool is empty.
    let gone = [
        "removing connection",
        "accept: transient error",
        "cannot make the new connection non-blocking",
        "cannot register the new connection",
    ];
    let seen = server.wait_for_any_count(&gone, CYCLES + 1);
    let unusual: Vec<&String> = server
        .seen
        .iter()
        .filter(|l| !l.contains("removing connection") && !l.contains("New incoming"))
        .collect();
    assert_eq!(seen, CYCLES + 1, "other server output: {unusual:#?}");
    assert_eq!(open_fds(server.pid()), baseline, "descriptors leaked");
}

#[cfg_attr(not(windows), ignore = "stress: run with --ignored")]
#[cfg_attr(
    windows,
    ignore = "stress; starts the drain with SIGTERM; Wine cannot deliver a console Ctrl-Break to a child"
)]
#[test]
fn stress_sigterm_during_a_large_flush_delivers_it_within_the_drain_timeout() {
    const SIZE: usize = 16 * 1024 * 1024;
    let (mut server, port) = start(&["--drain-timeout", "20", "--max-pending", "64MiB"], None);
    let clients = join_room(loopback(port), 3);
    let [mut sender, mut fast, paused]: [TcpStream; 3] = clients.try_into().unwrap();
    sender.write_all(&Pattern::bytes(0, 0, SIZE)).unwrap();
    // The fast reader has it all, so the server holds most of it queued for the paused one.
    receive_pattern(&mut fast, SIZE);
    server.signal("TERM");
    assert!(server.wait_for_line("draining pending output").is_some());
    let mut paused = paused;
    let demux = receive_pattern(&mut paused, SIZE);
    assert_eq!(demux.seen[0], SIZE);
    assert_eq!(expect_closed(&mut paused), 0);
    let (status, output) = server.wait_exit();
    assert_eq!(status.code(), Some(0), "{output}");
    assert!(output.contains("(0 bytes undelivered)"), "{output}");
}
