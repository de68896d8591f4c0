// The room's pace under overload (included by each backend's test binary, like behaviour.rs):
// when every reader keeps reading but the senders outpace them, the senders are slowed and nobody
// is cut; one reader that stops or trickles holds nobody back for long and is cut as before.
// Outcomes are asserted, never durations.

use std::sync::mpsc;

use relay_tests::Demux;
use server_core::Pace;

/// Every client of `room` reads continuously and checks what it gets; the first `senders` also
/// write `per_sender` pattern bytes each as fast as they can. Returns when every reader has every
/// byte, or panics.
fn blast(server: &TestServer, room: usize, senders: usize, per_sender: usize) {
    let clients = join_room(server.addr, room);
    let mut threads = Vec::new();
    for (me, client) in clients.into_iter().enumerate() {
        let sends = me < senders;
        if sends {
            let mut writer = client.try_clone().unwrap();
            threads.push(thread::spawn(move || {
                for start in (0..per_sender).step_by(64 * 1024) {
                    let len = (64 * 1024).min(per_sender - start);
                    writer.write_all(&Pattern::bytes(me, start, len)).unwrap();
                }
            }));
        }
        let mut reader = client;
        threads.push(thread::spawn(move || {
            let expected = per_sender * (senders - usize::from(sends));
            let demux = receive_pattern(&mut reader, expected);
            for sender in 0..senders {
                let want = if sender == me { 0 } else { per_sender };
                assert_eq!(demux.seen[sender], want, "client {me} from sender {sender}");
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
}

/// Senders that together outpace a room whose readers all keep reading are slowed: nobody is
/// cut and every byte arrives, although the pending limit is far below what each reader is sent.
/// Without the pace, readers that fall behind the senders pass the limit and are cut.
#[test]
fn senders_outpacing_a_reading_room_are_slowed_and_nobody_is_cut() {
    const LIMIT: usize = 512 * 1024;
    let server = start(Config {
        max_pending: LIMIT,
        pace: Pace {
            budget: LIMIT / 8,
            ..Pace::default()
        },
        ..Config::default()
    });
    blast(&server, 16, 12, 4 * LIMIT);
    let summary = server.stop();
    assert_eq!(
        (summary.slow_consumers, summary.write_timeouts, summary.bytes_dropped),
        (0, 0, 0),
        "{summary}"
    );
}

/// The blast measured on this 2-core machine (issue 17): 16 senders x 2 MiB into a room of 24
/// clients that all read, with the default limits.
#[test]
#[ignore = "stress: run with --ignored"]
fn stress_sixteen_senders_into_twenty_four_readers_nobody_cut() {
    for _ in 0..5 {
        let server = start(Config::default());
        blast(&server, 24, 16, 2 * 1024 * 1024);
        let summary = server.stop();
        assert_eq!((summary.slow_consumers, summary.write_timeouts), (0, 0), "{summary}");
    }
}

/// A reader that stops and one that trickles (it reads a little each time the sender has written
/// a lot) do not hold the room: the fast readers receive every byte in order, and the two are cut
/// when their queues pass the pending limit, so memory stays bounded.
#[test]
fn a_stopped_and_a_trickling_reader_are_cut_and_the_room_keeps_moving() {
    const LIMIT: usize = 1024 * 1024;
    const SIZE: usize = 16 * LIMIT;
    const STEP: usize = 64 * 1024;
    let server = start(Config {
        max_pending: LIMIT,
        // Only the byte limit may cut, so the outcome does not depend on timing.
        write_timeout: None,
        pace: Pace::default(),
        ..Config::default()
    });
    let clients = join_room(server.addr, 5);
    let [mut sender, fast_a, fast_b, mut stopped, mut trickler]: [TcpStream; 5] =
        clients.try_into().unwrap();
    let (tick, ticks) = mpsc::channel::<()>();
    let trickling = thread::spawn(move || {
        // A kilobyte per 64 KiB sent: 1/64 of the room's pace.
        let mut got = 0;
        let mut buf = [0; 1024];
        while ticks.recv().is_ok() {
            match trickler.read(&mut buf) {
                Ok(0) | Err(_) => return (got, true),
                Ok(n) => got += n,
            }
        }
        // The sender is done: whatever is left ends in a close if it was cut.
        (got + expect_closed(&mut trickler), true)
    });
    let writer = thread::spawn(move || {
        for start in (0..SIZE).step_by(STEP) {
            sender.write_all(&Pattern::bytes(0, start, STEP)).unwrap();
            let _ = tick.send(());
        }
        sender
    });
    let readers: Vec<_> = [fast_a.try_clone().unwrap(), fast_b.try_clone().unwrap()]
        .into_iter()
        .map(|mut r| thread::spawn(move || receive_pattern(&mut r, SIZE)))
        .collect();
    for r in readers {
        let demux: Demux = r.join().unwrap();
        assert_eq!(demux.seen[0], SIZE);
    }
    let _sender = writer.join().unwrap();
    let (trickled, _) = trickling.join().unwrap();
    assert!(trickled < SIZE, "the trickler got everything; it should have been cut");
    let got = expect_closed(&mut stopped);
    assert!(got < SIZE, "the stopped reader got everything; it should have been cut");
    assert!(server.logs.wait_for_count("slow consumer", 2));
    let summary = server.stop();
    assert_eq!(summary.slow_consumers, 2, "{summary}");
    drop((fast_a, fast_b));
}
