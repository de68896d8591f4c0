//! The behaviour suite against the `polling` backend (epoll here, kqueue on macOS, IOCP on
//! Windows), in a process of its own.

mod polling {
    /// Clients in the largest room the suite builds: the backend is bounded only by memory and
    /// the descriptor limit (each client costs this process two descriptors).
    const ROOM: usize = 1_000;

    fn start(config: Config) -> TestServer {
        TestServer::start(backend_polling::PollingBackend::new, config)
    }

    include!("suite/behaviour.rs");
    include!("suite/pace.rs");
    include!("suite/fair.rs");
}
