//! The behaviour suite against the `select` backend, in a process of its own (on Unix,
//! `FD_SETSIZE` bounds descriptor *numbers* in the whole process, the test clients' included),
//! plus what only a fixed-capacity backend has: refusing clients beyond what it can hold.

mod select {
    /// Clients in the largest room the suite builds. Each client costs this process two
    /// descriptors (its end and the server's), and every server-side one must stay below
    /// FD_SETSIZE (1024) while other tests run in parallel; still far above the 64 sockets of
    /// Windows' default `fd_set`.
    const ROOM: usize = 300;

    fn start(config: Config) -> TestServer {
        TestServer::start(backend_select::SelectBackend::new, config)
    }

    include!("suite/behaviour.rs");
    include!("suite/pace.rs");
    include!("suite/fair.rs");

    #[test]
    fn clients_beyond_the_backend_capacity_are_refused_politely() {
        // The listener and ten clients.
        const CAPACITY: usize = 11;
        const EXTRA: usize = 20;
        let server = TestServer::start(
            || backend_select::SelectBackend::with_capacity(CAPACITY),
            Config::default(),
        );
        let mut members = join_room(server.addr, CAPACITY - 1);
        for _ in 0..EXTRA {
            let mut extra = connect(server.addr);
            assert_eq!(expect_closed(&mut extra), 0, "a refused client got data");
        }
        assert!(server.logs.wait_for_count("server full", EXTRA));
        // Everyone admitted keeps full service.
        members[3].write_all(b"the room is fine").unwrap();
        for (i, m) in members.iter_mut().enumerate() {
            if i != 3 {
                expect_bytes(m, b"the room is fine");
            }
        }
        let summary = server.stop();
        assert_eq!(summary.accepted, (CAPACITY - 1) as u64);
        assert_eq!(summary.refused_full, EXTRA as u64);
    }
}
