//! The relay's guarantees, each stated by a test, run against every backend on real 127.0.0.1
//! sockets. `backend_suite!` instantiates the whole suite once per backend, so a failure reads
//! `polling::no_echo`.

use std::io::{Read, Write};
use std::net::{Shutdown as HalfClose, TcpStream};
use std::thread;

use relay_tests::{
    connect, expect_bytes, expect_closed, join_room, raise_fd_limit, receive_pattern,
    set_linger_zero, Pattern, TestServer,
};
use server_core::Config;

/// Writes the whole suite once per backend: `mod <backend> { fn start(..); <tests> }`.
macro_rules! backend_suite {
    ($($(#[$meta:meta])* fn $name:ident() $body:block)*) => {
        mod polling {
            use super::*;

            fn start(config: Config) -> TestServer {
                TestServer::start(backend_polling::PollingBackend::new, config)
            }

            $( $(#[$meta])* #[test] fn $name() $body )*
        }
    };
}

backend_suite! {
    fn no_echo() {
        let server = start(Config::default());
        let mut clients = join_room(server.addr, 2);
        let [a, b] = &mut clients[..] else { unreachable!() };
        a.write_all(b"ping").unwrap();
        expect_bytes(b, b"ping");
        // B answers only after it saw A's bytes, so an echo of "ping" would reach A first.
        b.write_all(b"pong").unwrap();
        expect_bytes(a, b"pong");
        // And B's own bytes do not come back to B: A's next message is the very next thing.
        a.write_all(b"again").unwrap();
        expect_bytes(b, b"again");
        let summary = server.stop();
        assert_eq!(summary.accepted, 2);
    }

    fn every_sender_reaches_every_receiver_complete_and_in_order() {
        const CLIENTS: usize = 5;
        const PER_SENDER: usize = 300_000;
        let server = start(Config::default());
        let clients = join_room(server.addr, CLIENTS);
        let mut threads = Vec::new();
        for (me, client) in clients.into_iter().enumerate() {
            let mut writer = client.try_clone().unwrap();
            // Writes of uneven sizes, so chunk boundaries fall everywhere.
            threads.push(thread::spawn(move || {
                let mut sent = 0;
                let mut size = 1;
                while sent < PER_SENDER {
                    let len = size.min(PER_SENDER - sent);
                    writer.write_all(&Pattern::bytes(me, sent, len)).unwrap();
                    sent += len;
                    size = size * 7 % 4093 + 1;
                }
            }));
            let mut reader = client;
            threads.push(thread::spawn(move || {
                let demux = receive_pattern(&mut reader, PER_SENDER * (CLIENTS - 1));
                for sender in 0..CLIENTS {
                    let want = if sender == me { 0 } else { PER_SENDER };
                    assert_eq!(demux.seen[sender], want, "client {me} from sender {sender}");
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        let summary = server.stop();
        assert!(summary.bytes_in > (CLIENTS * PER_SENDER) as u64);
        assert!(summary.bytes_out >= (CLIENTS * PER_SENDER * (CLIENTS - 1)) as u64);
    }

    fn binary_data_is_relayed_unchanged() {
        let server = start(Config::default());
        let mut clients = join_room(server.addr, 3);
        let mut payload: Vec<u8> = (0..=255u8).collect();
        payload.extend_from_slice(b"\0\0\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x90\x28\xbc\r\n\x04");
        clients[0].write_all(&payload).unwrap();
        expect_bytes(&mut clients[1], &payload);
        expect_bytes(&mut clients[2], &payload);
        server.stop();
    }

    fn large_write_reaches_a_paused_reader_complete_and_in_order() {
        const SIZE: usize = 64 * 1024 * 1024;
        // The queue limit is lifted for this test: it is about partial writes resuming at the
        // exact byte across a 64 MiB backlog, not about the slow-consumer policy.
        let server = start(Config { max_pending: 2 * SIZE, ..Config::default() });
        let clients = join_room(server.addr, 3);
        let [sender, fast, paused]: [TcpStream; 3] = clients.try_into().unwrap();
        let writer = thread::spawn(move || {
            let mut sender = sender;
            sender.write_all(&Pattern::bytes(0, 0, SIZE)).unwrap();
            sender
        });
        // The fast reader gets everything while the paused one reads nothing at all, so one
        // stalled reader did not stall the room.
        let mut fast = fast;
        let demux = receive_pattern(&mut fast, SIZE);
        assert_eq!(demux.seen[0], SIZE);
        let _sender = writer.join().unwrap();
        // Now the paused reader catches up, and every byte is there in order.
        let mut paused = paused;
        let demux = receive_pattern(&mut paused, SIZE);
        assert_eq!(demux.seen[0], SIZE);
        let summary = server.stop();
        assert_eq!(summary.slow_consumers, 0);
        assert_eq!(summary.bytes_dropped, 0);
    }

    fn slow_consumer_is_disconnected_and_others_keep_receiving() {
        const LIMIT: usize = 1024 * 1024;
        const STEP: usize = LIMIT / 4;
        const SIZE: usize = 32 * LIMIT;
        let server = start(Config { max_pending: LIMIT, ..Config::default() });
        let clients = join_room(server.addr, 3);
        let [mut sender, mut fast, mut stalled]: [TcpStream; 3] = clients.try_into().unwrap();
        // The sender waits for the fast reader after each step, so the fast reader's queue never
        // nears the limit while the stalled reader's grows by a step each time.
        for start in (0..SIZE).step_by(STEP) {
            sender.write_all(&Pattern::bytes(1, start, STEP)).unwrap();
            let demux = receive_pattern(&mut fast, STEP);
            assert_eq!(demux.seen[1], STEP, "fast reader at byte {start}");
        }
        // The stalled client was cut: what it can still read ends in a close, short of SIZE.
        let got = expect_closed(&mut stalled);
        assert!(got < SIZE, "stalled reader got all {got} bytes; it should have been cut");
        assert!(server.logs.wait_for_count("slow consumer", 1));
        let summary = server.stop();
        assert_eq!(summary.slow_consumers, 1);
        assert!(summary.bytes_dropped > 0);
    }

    fn reset_client_does_not_disturb_others() {
        let server = start(Config::default());
        let mut clients = join_room(server.addr, 4);
        // One client resets with bytes queued for it, another resets idle.
        let noisy = clients.pop().unwrap();
        let idle = clients.pop().unwrap();
        clients[0].write_all(&[7; 100_000]).unwrap();
        set_linger_zero(&noisy);
        drop(noisy);
        set_linger_zero(&idle);
        drop(idle);
        expect_bytes(&mut clients[1], &[7; 100_000]);
        assert!(server.logs.wait_for_count("removing connection", 2));
        clients[1].write_all(b"still here").unwrap();
        expect_bytes(&mut clients[0], b"still here");
        let summary = server.stop();
        // A reset seen while reading or while writing is the peer leaving, not an error.
        assert_eq!((summary.peer_closed, summary.errors), (2, 0));
    }

    fn half_closed_client_is_removed_and_others_continue() {
        let server = start(Config::default());
        let mut clients = join_room(server.addr, 3);
        clients[2].write_all(b"last words").unwrap();
        clients[2].shutdown(HalfClose::Write).unwrap();
        expect_bytes(&mut clients[0], b"last words");
        expect_bytes(&mut clients[1], b"last words");
        // The server treats end of stream as leaving, and closes its side too.
        expect_closed(&mut clients[2]);
        clients[0].write_all(b"after").unwrap();
        expect_bytes(&mut clients[1], b"after");
        let summary = server.stop();
        assert_eq!(summary.peer_closed, 1);
    }

    fn garbage_and_resets_mid_stream_do_not_disturb_others() {
        let server = start(Config::default());
        let mut watchers = join_room(server.addr, 2);
        let mut noise = Vec::new();
        for i in 0..20u32 {
            let mut c = connect(server.addr);
            let junk: Vec<u8> = (0..(i * 997 % 70_000)).map(|j| (j * 31 + i) as u8).collect();
            c.write_all(&junk).unwrap();
            if i % 2 == 0 {
                set_linger_zero(&c);
            }
            noise.push(c);
        }
        drop(noise);
        assert!(server.logs.wait_for_count("removing connection", 20));
        // Whatever the noise delivered, the watchers drain it and the room still works.
        watchers[0].write_all(b"calm").unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 65536];
        while !got.ends_with(b"calm") {
            let n = watchers[1].read(&mut buf).unwrap();
            assert!(n > 0, "closed");
            got.extend_from_slice(&buf[..n]);
        }
        server.stop();
    }

    fn thousand_concurrent_clients_all_receive() {
        raise_fd_limit();
        const CLIENTS: usize = 1_000;
        let server = start(Config::default());
        let mut clients = join_room(server.addr, CLIENTS);
        clients[CLIENTS / 2].write_all(b"hello, everyone").unwrap();
        for (i, c) in clients.iter_mut().enumerate() {
            if i != CLIENTS / 2 {
                expect_bytes(c, b"hello, everyone");
            }
        }
        let summary = server.stop();
        assert_eq!(summary.peak_clients, CLIENTS);
        assert_eq!(summary.open_at_stop, CLIENTS);
    }

    fn connect_disconnect_cycles_leave_the_pool_empty() {
        const CYCLES: usize = 5_000;
        let server = start(Config::default());
        for i in 0..CYCLES {
            let c = connect(server.addr);
            if i % 3 == 0 {
                set_linger_zero(&c);
            }
            drop(c);
        }
        assert!(
            server.logs.wait_for_count("removing connection", CYCLES),
            "only {} of {CYCLES} removals logged",
            server.logs.count("removing connection")
        );
        let summary = server.stop();
        assert_eq!(summary.accepted, CYCLES as u64);
        assert_eq!(summary.open_at_stop, 0, "pool not empty");
    }

    fn shutdown_drains_pending_output_then_closes() {
        const SIZE: usize = 8 * 1024 * 1024;
        let server = start(Config {
            max_pending: 2 * SIZE,
            drain_timeout: relay_tests::TIMEOUT,
            ..Config::default()
        });
        let clients = join_room(server.addr, 3);
        let [mut sender, mut fast, paused]: [TcpStream; 3] = clients.try_into().unwrap();
        sender.write_all(&Pattern::bytes(2, 0, SIZE)).unwrap();
        // Once the fast reader has it all, the server has read it all and queued it for the
        // paused reader too.
        receive_pattern(&mut fast, SIZE);
        let reader = thread::spawn(move || {
            let mut paused = paused;
            let demux = receive_pattern(&mut paused, SIZE);
            let after = expect_closed(&mut paused);
            (demux.seen[2], after)
        });
        let summary = server.stop();
        let (got, after) = reader.join().unwrap();
        assert_eq!((got, after), (SIZE, 0), "drained completely, then closed");
        assert_eq!(summary.bytes_dropped, 0);
        assert_eq!(summary.open_at_stop, 3);
    }

    fn stop_wakes_an_idle_server() {
        let server = start(Config::default());
        // No client ever connects: only the waker can end the wait.
        let summary = server.stop();
        assert_eq!(summary.accepted, 0);
    }
}
