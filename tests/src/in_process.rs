//! The relay engine running in-process on a thread of its own, one backend at a time.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};

use server_core::{Acceptor, Backend, Config, PlainTcp, Shutdown, Summary};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

use crate::logs::{CaptureLayer, Logs};
use crate::sockets::loopback_listener;
use crate::TIMEOUT;

/// The relay running in-process on a thread of its own, on 127.0.0.1 with an ephemeral port.
/// Its log goes to the test's captured output and to [`TestServer::logs`].
#[derive(Debug)]
pub struct TestServer {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// What the server has logged.
    pub logs: Logs,
    shutdown: Shutdown,
    done: Receiver<io::Result<Summary>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts `server_core::run` with the backend `make_backend` builds and `config`.
    #[track_caller]
    pub fn start<B, F>(make_backend: F, config: Config) -> TestServer
    where
        B: Backend,
        F: FnOnce() -> io::Result<B> + Send + 'static,
    {
        Self::start_with(make_backend, PlainTcp, config)
    }

    /// Like [`TestServer::start`], with every connection set up by `acceptor` (TLS, an access
    /// list) through `server_core::Relay`.
    #[track_caller]
    pub fn start_with<B, F, A>(make_backend: F, acceptor: A, config: Config) -> TestServer
    where
        B: Backend,
        F: FnOnce() -> io::Result<B> + Send + 'static,
        A: Acceptor + Send + 'static,
    {
        Self::start_on(loopback_listener(), make_backend, acceptor, config)
    }

    /// Like [`TestServer::start_with`], on a listener of the caller's (e.g. `[::1]:0`). The one
    /// place that starts the engine: an API change in `server_core` is adapted here alone.
    #[track_caller]
    pub fn start_on<B, F, A>(
        listener: TcpListener,
        make_backend: F,
        acceptor: A,
        config: Config,
    ) -> TestServer
    where
        B: Backend,
        F: FnOnce() -> io::Result<B> + Send + 'static,
        A: Acceptor + Send + 'static,
    {
        let addr = listener.local_addr().expect("local_addr");
        let logs = Logs::default();
        let capture = CaptureLayer(logs.clone());
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let thread = thread::spawn(move || {
            let subscriber = tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_test_writer()
                        .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
                )
                .with(capture);
            let _guard = tracing::subscriber::set_default(subscriber);
            let backend = match make_backend() {
                Ok(backend) => backend,
                Err(e) => {
                    let _ = done_tx.send(Err(e));
                    return;
                }
            };
            let shutdown = Shutdown::new(backend.waker());
            let _ = ready_tx.send(shutdown.clone());
            let result = server_core::Relay::new(config)
                .door(listener, acceptor)
                .run(backend, &shutdown);
            let _ = done_tx.send(result);
        });
        let shutdown = match ready_rx.recv_timeout(TIMEOUT) {
            Ok(shutdown) => shutdown,
            Err(_) => panic!("server did not start: {:?}", done.try_recv()),
        };
        TestServer {
            addr,
            logs,
            shutdown,
            done,
            thread: Some(thread),
        }
    }

    /// Requests shutdown and waits (bounded) for the run to end; returns its summary.
    #[track_caller]
    pub fn stop(mut self) -> Summary {
        self.shutdown.request().expect("wake the server");
        let result = self
            .done
            .recv_timeout(TIMEOUT)
            .expect("server did not stop in time");
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread panicked");
        }
        result.expect("server run failed")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A test that panicked before `stop`: ask the server to end, but never block or panic
        // again here.
        if self.thread.is_some() {
            let _ = self.shutdown.request();
        }
    }
}
