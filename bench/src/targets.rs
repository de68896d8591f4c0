//! The relays under test: our `server` (once per compiled backend), `ncat --broker`, and the
//! in-tool ceiling relay. Each is started on a free loopback port, waited for until it accepts
//! (bounded), and stopped (killed and reaped) when its handle drops, even on error or panic.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use relay_pattern::{free_port, ChildGuard};
use wait_timeout::ChildExt;

use crate::ceiling::{CeilingRelay, Mangle};
use crate::procstat::Meter;

/// How long a relay may take to start accepting.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `server --version` / `--help` may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// What kind of relay a target is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Our binary; `backend` is passed as `--backend NAME` when the binary has that option.
    Ours {
        /// The binary.
        path: PathBuf,
        /// `--backend` value, or `None` to run the binary's default.
        backend: Option<String>,
        /// `--tls-cert` and `--tls-key`, for a TLS run.
        tls: Option<(PathBuf, PathBuf)>,
    },
    /// `ncat --broker`.
    Ncat(PathBuf),
    /// The in-tool one-thread relay.
    Ceiling,
    /// `nodes` processes of our binary sharing one room through a `nats-server` of their own
    /// (`--cluster`); clients are spread over the nodes.
    Cluster {
        /// Our binary.
        path: PathBuf,
        /// The nats-server binary.
        nats: PathBuf,
        /// How many relay processes.
        nodes: usize,
    },
}

/// One relay to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Its name in results: `server/polling`, `ncat`, `ceiling`.
    pub(crate) name: String,
    /// The backend name for our server (also when it runs without `--backend`).
    pub(crate) backend: Option<String>,
    /// How to start it.
    pub(crate) kind: Kind,
}

impl Target {
    /// The most clients this relay can hold, if it has a known hard limit: `select(2)` and
    /// ncat (which uses it) stop at `FD_SETSIZE` (1024) descriptors.
    pub(crate) fn client_limit(&self) -> Option<usize> {
        match (&self.kind, self.backend.as_deref()) {
            (Kind::Ncat(_), _) | (_, Some("select")) => Some(1000),
            _ => None,
        }
    }

    /// Whether it is our server with TLS on (its clients must speak TLS).
    pub(crate) fn is_tls(&self) -> bool {
        matches!(&self.kind, Kind::Ours { tls: Some(_), .. })
    }

    /// Why the web scenario cannot run on it, if it cannot: only our server, plain, has a
    /// WebSocket door chat-bench can drive.
    pub(crate) fn no_web_door(&self) -> Option<&'static str> {
        match &self.kind {
            Kind::Ours { tls: None, .. } => None,
            Kind::Ours { tls: Some(_), .. } => {
                Some("web runs are plain only (the web clients speak no TLS)")
            }
            Kind::Ncat(_) => Some("ncat has no WebSocket door"),
            Kind::Ceiling => Some("the in-tool relay has no WebSocket door"),
            Kind::Cluster { .. } => Some("web runs are on one node"),
        }
    }

    /// The same server with TLS on, named `server/BACKEND+tls`; `None` for other relays.
    pub(crate) fn with_tls(&self, cert: &Path, key: &Path) -> Option<Target> {
        let Kind::Ours { path, backend, .. } = &self.kind else {
            return None;
        };
        Some(Target {
            name: format!("{}+tls", self.name),
            backend: self.backend.clone(),
            kind: Kind::Ours {
                path: path.clone(),
                backend: backend.clone(),
                tls: Some((cert.to_path_buf(), key.to_path_buf())),
            },
        })
    }

    /// Starts it; `log` receives a server process's stderr. With `web`, our server also opens its
    /// HTTP port with the WebSocket door on a free loopback port, never pinging its web clients
    /// (`--ws-ping 0`: they only read, and a benchmark must not be cut as idle); other relays
    /// ignore it.
    pub(crate) fn start(&self, log: Option<&Path>, web: bool) -> io::Result<Running> {
        match &self.kind {
            Kind::Ceiling => Ok(Running::Relay(CeilingRelay::start(Mangle::None)?)),
            Kind::Ours { path, backend, tls } => {
                let port = free_port()?;
                let mut cmd = Command::new(path);
                cmd.arg("-q");
                if let Some(b) = backend {
                    cmd.args(["--backend", b]);
                }
                if let Some((cert, key)) = tls {
                    cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
                }
                let http = if web {
                    let http = free_port()?;
                    cmd.args(["--http", &format!("127.0.0.1:{http}"), "--ws-ping", "0"]);
                    Some(http)
                } else {
                    None
                };
                cmd.arg(port.to_string());
                let mut guard = ServerGuard::spawn(&self.name, cmd, port, log)?;
                if let Some(http) = http {
                    guard.web = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, http)));
                    guard.wait_accepting(&self.name)?;
                }
                Ok(Running::Process(guard))
            }
            Kind::Cluster { path, nats, nodes } => start_cluster(path, nats, *nodes, log),
            Kind::Ncat(path) => {
                let port = free_port()?;
                let mut cmd = Command::new(path);
                // -n: no DNS look-ups (each costs ncat a second-long stall per connection);
                // -m: ncat's default limit is 100 connections.
                cmd.args([
                    "-n",
                    "--broker",
                    "-l",
                    "127.0.0.1",
                    &port.to_string(),
                    "-m",
                    "20000",
                ]);
                ServerGuard::spawn(&self.name, cmd, port, log).map(Running::Process)
            }
        }
    }
}

/// Starts a `nats-server` on a free loopback port, then `nodes` relays joined to it, each
/// waited for until it accepts. `log` gets one file per process beside it.
fn start_cluster(
    path: &Path,
    nats: &Path,
    nodes: usize,
    log: Option<&Path>,
) -> io::Result<Running> {
    let log_of = |what: &str| log.map(|l| l.with_extension(format!("{what}.log")));
    let nats_port = free_port()?;
    let mut cmd = Command::new(nats);
    cmd.args(["-a", "127.0.0.1", "-p", &nats_port.to_string()]);
    let nats = ServerGuard::spawn("nats-server", cmd, nats_port, log_of("nats").as_deref())?;
    let url = format!("nats://127.0.0.1:{nats_port}");
    let mut started = Vec::with_capacity(nodes);
    for k in 0..nodes {
        let port = free_port()?;
        let mut cmd = Command::new(path);
        cmd.args([
            "-q",
            "--bind",
            "127.0.0.1",
            "--cluster",
            &url,
            "--room",
            "bench",
        ]);
        cmd.arg(port.to_string());
        let name = format!("node {k}");
        let log = log_of(&format!("node{k}"));
        started.push(ServerGuard::spawn(&name, cmd, port, log.as_deref())?);
    }
    Ok(Running::Cluster {
        nodes: started,
        nats,
    })
}

/// A started relay.
#[derive(Debug)]
pub(crate) enum Running {
    /// A child process.
    Process(ServerGuard),
    /// The in-tool relay.
    Relay(CeilingRelay),
    /// Relay processes and their NATS server (dropped in this order: nodes first).
    Cluster {
        /// The relays.
        nodes: Vec<ServerGuard>,
        /// Their NATS server.
        nats: ServerGuard,
    },
}

impl Running {
    /// Our server's WebSocket door, when it was started with one.
    pub(crate) fn web_addr(&self) -> Option<SocketAddr> {
        match self {
            Running::Process(p) => p.web,
            _ => None,
        }
    }

    /// Where clients connect: one address per node.
    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        match self {
            Running::Process(p) => vec![p.addr],
            Running::Relay(r) => vec![r.addr()],
            Running::Cluster { nodes, .. } => nodes.iter().map(|n| n.addr).collect(),
        }
    }

    /// Its process or thread (a cluster: every node and the NATS server), for CPU and memory.
    pub(crate) fn meter(&self) -> Option<Meter> {
        match self {
            Running::Process(p) => Some(Meter::Process(p.child.id())),
            Running::Relay(r) => r.meter(),
            Running::Cluster { nodes, nats } => {
                let pids: Vec<u32> = nodes.iter().chain([nats]).map(|g| g.child.id()).collect();
                Meter::group(&pids)
            }
        }
    }

    /// Whether the relay is still running (a process that exited is not; a cluster whose nodes
    /// or NATS server exited is not).
    pub(crate) fn alive(&mut self) -> bool {
        match self {
            Running::Process(p) => matches!(p.child.try_wait(), Ok(None)),
            Running::Relay(_) => true,
            Running::Cluster { nodes, nats } => nodes
                .iter_mut()
                .chain([nats])
                .all(|g| matches!(g.child.try_wait(), Ok(None))),
        }
    }
}

/// A server child process, killed and reaped on drop.
#[derive(Debug)]
pub(crate) struct ServerGuard {
    child: ChildGuard,
    addr: SocketAddr,
    /// Its HTTP port, where the WebSocket door is, if it opened one.
    web: Option<SocketAddr>,
}

impl ServerGuard {
    /// Spawns `cmd` and waits (bounded) until it accepts on 127.0.0.1:`port`.
    fn spawn(
        name: &str,
        mut cmd: Command,
        port: u16,
        log: Option<&Path>,
    ) -> io::Result<ServerGuard> {
        let stderr = match log {
            Some(path) => Stdio::from(File::create(path)?),
            None => Stdio::null(),
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{name}: cannot start: {e}")))?;
        let mut guard = ServerGuard {
            child: ChildGuard::new(child),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            web: None,
        };
        guard.wait_accepting(name)?;
        Ok(guard)
    }

    /// Connects (and disconnects) until the server accepts (on its HTTP port too, if it has
    /// one), it exits, or [`START_TIMEOUT`].
    fn wait_accepting(&mut self, name: &str) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        for addr in [Some(self.addr), self.web].into_iter().flatten() {
            self.wait_accepting_on(name, addr, deadline)?;
        }
        Ok(())
    }

    fn wait_accepting_on(
        &mut self,
        name: &str,
        addr: SocketAddr,
        deadline: Instant,
    ) -> io::Result<()> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "{name} exited at start: {status}"
                )));
            }
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{name} did not accept on {addr} within {START_TIMEOUT:?}: {e}"),
                    ))
                }
                // Starting up: polling a child process we cannot be notified by.
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

/// The backends chat-bench knows how to pick with `--backend`.
const BACKENDS: [&str; 2] = ["polling", "select"];

/// The features a `server --version` line lists: `server 0.1.0 (+polling +select +tls +cluster)`
/// gives `["polling", "select", "tls", "cluster"]` (the last parenthesised group; a comma
/// between items is accepted too, and `-name` items are left out).
pub(crate) fn parse_features(version: &str) -> Vec<String> {
    let Some(open) = version.rfind('(') else {
        return Vec::new();
    };
    let inner = &version[open + 1..];
    let inner = &inner[..inner.find(')').unwrap_or(inner.len())];
    inner
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter_map(|t| t.strip_prefix('+'))
        .filter(|t| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_string)
        .collect()
}

/// Our server as its `--version` describes it.
#[derive(Debug, Clone)]
pub(crate) struct Ours {
    /// One target per backend it lists.
    pub(crate) targets: Vec<Target>,
    /// Its `--version` line.
    pub(crate) version: String,
    /// Every feature it lists (backends, `tls`, `cluster`).
    pub(crate) features: Vec<String>,
    /// Whether its `--help` offers the WebSocket door (`--ws-ping`), which the web scenario
    /// needs.
    pub(crate) web: bool,
}

impl Ours {
    /// Whether `--version` lists `feature`.
    pub(crate) fn has(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}

/// Our server's targets: one per backend its `--version` lists. If the binary has no
/// `--backend` option, it runs once, without the flag, named after the first listed backend.
pub(crate) fn discover_ours(path: &Path) -> io::Result<Ours> {
    let version = output_within(path, &["--version"])?;
    let version = version
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let features = parse_features(&version);
    let backends: Vec<&String> = features
        .iter()
        .filter(|f| BACKENDS.contains(&f.as_str()))
        .collect();
    let help = output_within(path, &["--help"]).unwrap_or_default();
    let has_flag = help.contains("--backend");
    let ours = |name: String, backend: Option<String>, flag: bool| Target {
        name,
        backend: backend.clone(),
        kind: Kind::Ours {
            path: path.to_path_buf(),
            backend: backend.filter(|_| flag),
            tls: None,
        },
    };
    let targets = if backends.is_empty() || !has_flag {
        let name = backends.first().map(|b| b.to_string());
        vec![ours(
            format!("server/{}", name.as_deref().unwrap_or("default")),
            name,
            false,
        )]
    } else {
        backends
            .iter()
            .map(|b| ours(format!("server/{b}"), Some(b.to_string()), true))
            .collect()
    };
    Ok(Ours {
        targets,
        version,
        features,
        web: help.contains("--ws-ping"),
    })
}

/// Runs `path args` and returns its stdout, killing it after [`QUERY_TIMEOUT`].
fn output_within(path: &Path, args: &[&str]) -> io::Result<String> {
    let child = Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut child = ChildGuard::new(child);
    let mut out = child.stdout.take().expect("piped stdout");
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = io::Read::read_to_string(&mut out, &mut s);
        s
    });
    if child.wait_timeout(QUERY_TIMEOUT)?.is_none() {
        // Dropping the guard kills and reaps it.
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{} {} did not finish", path.display(), args.join(" ")),
        ));
    }
    reader
        .join()
        .map_err(|_| io::Error::other("output reader panicked"))
}

/// `name` on the `PATH`, else in `/usr/sbin` (Debian puts `nats-server` there, and it is not on
/// every user's `PATH`).
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    which::which(name).ok().or_else(|| {
        let sbin = Path::new("/usr/sbin").join(name);
        sbin.is_file().then_some(sbin)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lines_name_the_features() {
        let cases: [(&str, &[&str]); 8] = [
            (
                "server 0.1.0 (+polling +select +tls +cluster)",
                &["polling", "select", "tls", "cluster"],
            ),
            ("server 0.1.0 (+polling +select)", &["polling", "select"]),
            ("server 0.1.0 (+polling,+select)", &["polling", "select"]),
            ("server 0.1.0 (+polling, +select)", &["polling", "select"]),
            ("server 0.1.0 (+select +tls)", &["select", "tls"]),
            ("server 0.1.0", &[]),
            ("server 0.1.0 ()", &[]),
            ("server 0.2.0-dev (build x) (+select -polling)", &["select"]),
        ];
        for (line, want) in cases {
            assert_eq!(parse_features(line), want, "{line}");
        }
    }

    #[test]
    fn select_and_ncat_have_a_client_limit() {
        let ours = |b: &str| Target {
            name: format!("server/{b}"),
            backend: Some(b.into()),
            kind: Kind::Ours {
                path: "server".into(),
                backend: Some(b.into()),
                tls: None,
            },
        };
        assert_eq!(ours("polling").client_limit(), None);
        let tls = ours("select")
            .with_tls(Path::new("c.pem"), Path::new("k.pem"))
            .unwrap();
        assert_eq!(tls.name, "server/select+tls");
        assert!(tls.is_tls() && !ours("select").is_tls());
        assert_eq!(tls.client_limit(), Some(1000));
        assert_eq!(ours("select").client_limit(), Some(1000));
        let ncat = Target {
            name: "ncat".into(),
            backend: None,
            kind: Kind::Ncat("ncat".into()),
        };
        assert_eq!(ncat.client_limit(), Some(1000));
    }

    #[test]
    fn a_server_that_exits_at_start_is_reported_not_waited_for() {
        // A program that exits at once on every platform: this test binary, given a flag the
        // test harness rejects.
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.arg("--no-such-harness-flag");
        let started = Instant::now();
        let err = ServerGuard::spawn("exits", cmd, free_port().unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("exited at start"), "{err}");
        assert!(started.elapsed() < START_TIMEOUT);
    }
}
