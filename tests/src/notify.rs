//! A notify socket as a service manager makes one (`NOTIFY_SOCKET`): the server announces
//! `READY=1` on it once it listens, so a test can wait for that notice instead of for time.
//! Unix only, as the protocol.

use std::io;
use std::os::unix::net::UnixDatagram;

use crate::tls::TempDir;
use crate::TIMEOUT;

/// A notify socket as systemd would make one: a datagram socket the server writes to.
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    /// Its path, for `NOTIFY_SOCKET`.
    pub path: String,
    _dir: TempDir,
}

impl NotifySocket {
    /// Binds one in a new temporary directory; its reads are bounded by [`TIMEOUT`].
    pub fn new() -> NotifySocket {
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
    pub fn next(&self) -> String {
        self.try_next()
            .unwrap_or_else(|e| panic!("no notice from the server within {TIMEOUT:?}: {e}"))
    }

    /// The next notice, or the error that ended the wait ([`TIMEOUT`] passed).
    pub fn try_next(&self) -> io::Result<String> {
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Notices until one has the line `line`; returns that one.
    #[track_caller]
    pub fn until(&self, line: &str) -> String {
        loop {
            let notice = self.next();
            if notice.lines().any(|l| l == line) {
                return notice;
            }
        }
    }
}

impl Default for NotifySocket {
    fn default() -> Self {
        Self::new()
    }
}
