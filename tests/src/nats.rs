//! A real `nats-server` for the cluster tests.

use std::path::{Path, PathBuf};

use relay_pattern::free_port;

use crate::process::ServerProcess;

/// The `nats-server` binary: `$NATS_SERVER`, else the first on the `PATH`, else Debian's
/// `/usr/sbin/nats-server` (`/usr/sbin` is not on every user's `PATH`).
pub fn nats_server_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    which::which("nats-server").ok().or_else(|| {
        let debian = PathBuf::from("/usr/sbin/nats-server");
        debian.is_file().then_some(debian)
    })
}

/// A `nats-server` child process on 127.0.0.1 and a port picked at run time, killed when
/// dropped (so a failing test leaves none behind). [`NatsServer::kill`] and
/// [`NatsServer::restart`] take it down and bring it back on the same port.
#[derive(Debug)]
pub struct NatsServer {
    process: Option<ServerProcess>,
    binary: PathBuf,
    port: u16,
}

impl NatsServer {
    /// Starts one and waits (bounded) until it says it is ready. `Err` says why it could not.
    pub fn start() -> Result<NatsServer, String> {
        let binary = nats_server_binary()
            .ok_or("nats-server not found (install Debian's nats-server, or set NATS_SERVER)")?;
        let mut last = String::new();
        // Another process may take the free port before nats-server binds it: try another.
        for _ in 0..5 {
            let port = free_port().map_err(|e| format!("pick a free port: {e}"))?;
            match Self::launch(&binary, port) {
                Ok(process) => {
                    return Ok(NatsServer {
                        process: Some(process),
                        binary,
                        port,
                    })
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn launch(binary: &Path, port: u16) -> Result<ServerProcess, String> {
        let port_arg = port.to_string();
        let args = ["-a", "127.0.0.1", "-p", &port_arg];
        let mut process = ServerProcess::spawn(binary, &args, &[]);
        if process.wait_for_line("Server is ready").is_some() {
            return Ok(process);
        }
        process.kill();
        let (_, output) = process.wait_exit();
        Err(format!(
            "{} {} did not become ready:\n{output}",
            binary.display(),
            args.join(" ")
        ))
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL nodes connect to.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills it at once (SIGKILL): whatever it holds is lost, its clients see the connection drop.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts it again on the same port, waiting until it is ready.
    #[track_caller]
    pub fn restart(&mut self) {
        self.kill();
        match Self::launch(&self.binary, self.port) {
            Ok(process) => self.process = Some(process),
            Err(e) => panic!("cannot restart nats-server on port {}: {e}", self.port),
        }
    }
}

/// A started [`NatsServer`] for a test marked `#[ignore = "needs nats-server: ..."]`: the test
/// runs only when asked to (`--ignored`), so a server that cannot start fails it, with the fix.
#[track_caller]
pub fn nats_server() -> NatsServer {
    NatsServer::start().unwrap_or_else(|e| {
        panic!(
            "this test needs nats-server, which cannot be started: {e}\n\
             install it (Debian and Ubuntu: `apt-get install nats-server`) or set NATS_SERVER \
             to its path"
        )
    })
}
