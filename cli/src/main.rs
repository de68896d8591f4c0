//! `server <port>`: a TCP chat relay. Every chunk one client sends reaches every other client.
//!
//! This file parses arguments, installs the log subscriber and the Ctrl-C / SIGTERM handler, binds
//! the listener, and hands everything to `server_core::run`. Errors are mapped to exit codes here
//! and nowhere else.

use std::io::{self, IsTerminal};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgAction, Parser, ValueEnum};
use server_core::{Backend, Config, Framing, LineOptions, Shutdown};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

mod cluster;
#[cfg(windows)]
mod console;
mod security;

#[cfg(not(any(feature = "polling", feature = "select")))]
compile_error!(
    "the server needs at least one I/O backend: build with `--features polling`, \
     `--features select`, or the default features (both)"
);

/// The seed program's usage line; printed for every argument error.
const USAGE: &str = "Usage: server <port>";

/// `--version`: the package version and the backends compiled into this build.
const VERSION: &str = {
    #[cfg(all(feature = "polling", feature = "select"))]
    let v = concat!(env!("CARGO_PKG_VERSION"), " (+polling +select)");
    #[cfg(all(feature = "polling", not(feature = "select")))]
    let v = concat!(env!("CARGO_PKG_VERSION"), " (+polling)");
    #[cfg(all(not(feature = "polling"), feature = "select"))]
    let v = concat!(env!("CARGO_PKG_VERSION"), " (+select)");
    #[cfg(not(any(feature = "polling", feature = "select")))]
    let v = env!("CARGO_PKG_VERSION");
    v
};

/// Pending connections the kernel may hold before we accept them. std and mio use 128; a chat
/// room is joined in bursts (a script opening hundreds of clients), and Linux clamps this to
/// `net.core.somaxconn` (4096 by default since 5.4) anyway.
const BACKLOG: i32 = 1024;

const EXAMPLES: &str = "\
Examples:
  server 9000
      relay raw bytes on port 9000, for IPv6 and IPv4 clients alike
  server --framing line --tag --announce 9000
      a line chat: others see \"[3] hello\", \"* 4 joined\", \"* 4 left\"
  server --bind 127.0.0.1 --backend select --stats-interval 60 -q 9000
      loopback only, the select backend, a statistics line every minute
  server --tls-cert cert.pem --tls-key key.pem --allow 10.0.0.0/8 --deny 10.9.0.0/16 9000
      TLS only, and only peers in 10.0.0.0/8 outside 10.9.0.0/16
      (connect with `openssl s_client -connect HOST:9000` or `ncat --ssl HOST 9000`)
  server --cluster nats://127.0.0.1:4222 --room lobby 9000
      one of several relays sharing room \"lobby\" through a NATS server

Try it: run `nc 127.0.0.1 9000` in two terminals and type.
Stop with Ctrl-C (or SIGTERM): pending output gets --drain-timeout to drain, then the server
exits 0 with a summary line. RUST_LOG (e.g. RUST_LOG=debug) overrides -v and -q.";

/// A TCP chat relay: every chunk one client sends is forwarded to every other client.
#[derive(Debug, Parser)]
#[command(
    name = "server",
    version = VERSION,
    // `--write-timeout -1` is a bad value of that option, not an unknown flag `-1`.
    allow_negative_numbers = true,
    after_help = EXAMPLES
)]
struct Args {
    /// TCP port to listen on, 1-65535.
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,

    /// Address to listen on, IPv4 or IPv6 (e.g. 127.0.0.1, ::1). Default: `::` with IPv4
    /// mapped in, so one socket serves IPv6 and IPv4 clients in one room; `0.0.0.0` where IPv6
    /// is unavailable.
    #[arg(long, value_name = "ADDR")]
    bind: Option<IpAddr>,

    /// `raw`: relay every chunk as it arrives, bytes as they are (the default). `line`: relay
    /// whole lines only; a partial line waits for its newline, so lines never interleave.
    #[arg(long, value_enum, default_value_t = FramingKind::Raw)]
    framing: FramingKind,

    /// Line mode: the longest line allowed (not counting its newline); a sender that exceeds it
    /// is disconnected.
    #[arg(long, value_name = "BYTES", default_value = "64KiB", value_parser = parse_size)]
    max_line: usize,

    /// Line mode: prefix every forwarded line with the sender's id, e.g. `[7] hello`. Ids are
    /// never reused while the server runs.
    #[arg(long)]
    tag: bool,

    /// Line mode: tell the room when a client joins or leaves (`* 7 joined`, `* 7 left`).
    #[arg(long)]
    announce: bool,

    /// Log format on stderr: `text` for people, `json` (one object per line) for log shippers.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log a statistics line every SECS seconds: clients now and peak, messages and bytes in
    /// and out, clients cut by reason. Off by default.
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    stats_interval: Option<Duration>,

    /// Log more: -v adds every chunk received, -vv every readiness event. RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count)]
    verbose: u8,

    /// Log only warnings and errors. RUST_LOG overrides.
    #[arg(short, long, conflicts_with = "verbose")]
    quiet: bool,

    /// I/O backend: `polling` (epoll, kqueue, IOCP; the default when compiled in; clients bounded
    /// by memory and `ulimit -n`) or `select` (the seed's select(); about 1,018 clients on Unix,
    /// 1,024 on Windows). `--version` lists the backends this build has.
    #[arg(long, value_enum, default_value_t = BackendKind::DEFAULT)]
    backend: BackendKind,

    /// Most bytes queued for one client before it is cut as a slow consumer. Accepts suffixes:
    /// 512KiB, 16MiB, 1GiB (K/M/G are the same binary units).
    #[arg(long, value_name = "BYTES", default_value = "16MiB", value_parser = parse_size)]
    max_pending: usize,

    /// Cut a client when bytes have waited this long for it with no write progress at all.
    /// 0 turns the timeout off (only --max-pending applies).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    write_timeout: Duration,

    /// Most clients at once; later ones are accepted and closed at once with a log line.
    /// Default: what the descriptor limit (`ulimit -n`, raised to its hard limit at start) and
    /// the backend allow, minus a small reserve.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_clients: Option<u64>,

    /// On Ctrl-C / SIGTERM, how long pending output may take to drain before the server closes
    /// everything and exits. A second Ctrl-C exits at once.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_secs)]
    drain_timeout: Duration,

    #[command(flatten)]
    security: security::Security,

    /// Share the room with every relay connected to the NATS server at URL with the same --room
    /// (e.g. nats://127.0.0.1:4222; several URLs separated by commas). Exits 1 if NATS is
    /// unreachable at start. Needs a build with the `cluster` feature (`cargo build --release
    /// -p server-cli --features cluster`).
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,

    /// With --cluster: the room's name, letters, digits, '-' and '_' [default: lobby].
    #[arg(long, value_name = "NAME")]
    room: Option<String>,

    /// With --cluster: start even if NATS is unreachable, relay locally meanwhile and keep
    /// trying in the background.
    #[arg(long)]
    cluster_optional: bool,
}

impl Args {
    fn cluster(&self) -> cluster::ClusterArgs<'_> {
        cluster::ClusterArgs {
            url: self.cluster.as_deref(),
            room: self.room.as_deref(),
            optional: self.cluster_optional,
        }
    }
}

/// Descriptors kept back from `--max-clients`' default: stdio, the listener and its spare, the
/// backend's own (an epoll instance, a waker pair) and a margin for the log and the runtime.
#[cfg(unix)]
const FD_RESERVE: u64 = 16;

/// `16MiB`, `512k`, `1G`, `4096`: binary units, case-insensitive, optional `B`/`iB`.
fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 65536, 512KiB or 16MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("{text:?}: unknown unit (use KiB, MiB or GiB)")),
    };
    let bytes = number
        .checked_mul(1u64 << shift)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes == 0 {
        return Err("must be at least 1 byte".into());
    }
    Ok(bytes)
}

/// A positive number of seconds.
fn parse_interval(text: &str) -> Result<Duration, String> {
    match parse_secs(text)? {
        d if d.is_zero() => Err("must be more than 0 seconds".into()),
        d => Ok(d),
    }
}

/// Seconds, whole or fractional: `10`, `0.5`, `0`.
fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text:?} is not a number of seconds"))
}

/// `--framing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FramingKind {
    /// Every chunk as it arrives.
    Raw,
    /// Whole lines.
    Line,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The backends a user can name. Every build knows both names, so asking for one this build
/// lacks is a clear error rather than an unknown value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    /// The `polling` crate: epoll, kqueue, event ports, IOCP.
    Polling,
    /// `select()`: POSIX select, Winsock select.
    Select,
}

impl BackendKind {
    #[cfg(feature = "polling")]
    const DEFAULT: BackendKind = BackendKind::Polling;
    #[cfg(not(feature = "polling"))]
    const DEFAULT: BackendKind = BackendKind::Select;

    fn name(self) -> &'static str {
        match self {
            BackendKind::Polling => "polling",
            BackendKind::Select => "select",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // The seed's contract: one usage line and exit 1 (clap's own errors exit 2). A bad value
        // for an option (not the port) also says which option and why, first.
        Err(e) => {
            if let Some(line) = option_error(&e) {
                eprintln!("server: {line}");
                eprintln!("{USAGE} [OPTIONS]");
            } else {
                eprintln!("{USAGE}");
            }
            return ExitCode::FAILURE;
        }
    };
    if args.framing == FramingKind::Raw && (args.tag || args.announce) {
        eprintln!("server: --tag and --announce work on lines: add --framing line");
        eprintln!("{USAGE} [OPTIONS]");
        return ExitCode::FAILURE;
    }
    if let Err(message) = args.security.check() {
        eprintln!("server: {message}");
        eprintln!("{USAGE} [OPTIONS]");
        return ExitCode::FAILURE;
    }
    if let Some(option) = args.cluster().stray_option() {
        eprintln!("server: {option} needs --cluster URL");
        eprintln!("{USAGE} [OPTIONS]");
        return ExitCode::FAILURE;
    }
    init_logging(&args);
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("server: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The one-line complaint for a bad option value, or `None` for errors that get the seed's bare
/// usage line (a missing, extra or malformed port, an unknown flag).
fn option_error(e: &clap::Error) -> Option<String> {
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    if !arg.starts_with('-') {
        return None; // the port
    }
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => format!(" {v:?}"),
        _ => String::new(),
    };
    let valid = match e.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(v)) => format!(" (expected one of: {})", v.join(", ")),
        _ => String::new(),
    };
    Some(format!("invalid value{value} for {arg}{valid}"))
}

/// Everything from binding to the end of the event loop. `Err` is the message for the terminal.
fn serve(args: &Args) -> Result<(), String> {
    match args.backend {
        #[cfg(feature = "polling")]
        BackendKind::Polling => serve_with(args, backend_polling::PollingBackend::new),
        #[cfg(feature = "select")]
        BackendKind::Select => serve_with(args, backend_select::SelectBackend::new),
        #[allow(unreachable_patterns)] // reachable only in builds without every backend
        kind => Err(format!(
            "this build has no {kind} backend (it has: {}); rebuild with `--features {kind}`",
            compiled_backends()
        )),
    }
}

/// The backends compiled into this build, for messages: `"polling, select"`.
fn compiled_backends() -> String {
    let list = VERSION
        .split_once('(')
        .map_or("", |(_, rest)| rest.trim_end_matches(')'));
    list.split_whitespace()
        .map(|b| b.trim_start_matches('+'))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Binds, creates the backend, installs the signal handler and runs the event loop.
fn serve_with<B: Backend>(args: &Args, make_backend: fn() -> io::Result<B>) -> Result<(), String> {
    // TLS files are read before binding, so a bad one stops the server before it listens.
    let door = args.security.door()?;
    let (listener, addr) = listen(args)?;
    let backend = make_backend().map_err(|e| {
        format!(
            "cannot create the {} backend: {}",
            args.backend,
            describe(&e)
        )
    })?;
    let uplink = cluster::uplink(args.cluster(), backend.waker())?;
    let shutdown = Shutdown::new(backend.waker());
    install_signal_handler(shutdown.clone())
        .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
    // After ctrlc's handler, so that Windows asks this one first about a console close.
    #[cfg(windows)]
    console::install(shutdown.clone())
        .map_err(|e| format!("cannot install the console close handler: {e}"))?;

    let families = match addr {
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => "IPv6 and IPv4",
        SocketAddr::V6(_) => "IPv6",
        SocketAddr::V4(_) => "IPv4",
    };
    info!(
        address = %addr,
        backend = backend.name(),
        pid = std::process::id(),
        "listening on {addr} ({families}; backend {}, pid {})",
        backend.name(),
        std::process::id()
    );
    let config = config(args, backend.capacity());
    let write_timeout = config
        .write_timeout
        .map_or("off".to_string(), |t| format!("{} s", t.as_secs_f64()));
    info!(
        max_clients = config.max_clients,
        max_pending = config.max_pending,
        "limits: {} clients, {} bytes pending per client, write timeout {write_timeout}, \
         drain {} s",
        config.max_clients,
        config.max_pending,
        config.drain_timeout.as_secs_f64()
    );
    args.security.log_startup();
    let mut relay = server_core::Relay::new(config).door(listener, door);
    if let Some(uplink) = uplink {
        relay = relay.uplink(uplink);
    }
    let outcome = match relay.run(backend, &shutdown) {
        Ok(summary) => {
            info!("stopped: {summary}");
            Ok(())
        }
        Err(e) => {
            error!(error = %e, "event loop failed");
            Err(format!("event loop failed: {}", describe(&e)))
        }
    };
    // A console close held while the server drained may let Windows end the process now.
    #[cfg(windows)]
    console::stopped();
    outcome
}

/// The engine's settings from the options; `--max-clients` defaults to what the descriptor limit
/// and the backend allow.
fn config(args: &Args, backend_capacity: Option<usize>) -> Config {
    let by_backend = backend_capacity.map_or(u64::MAX, |c| c.saturating_sub(1) as u64);
    let max_clients = args
        .max_clients
        .unwrap_or_else(|| descriptor_budget().min(by_backend));
    Config {
        max_pending: args.max_pending,
        write_timeout: (!args.write_timeout.is_zero()).then_some(args.write_timeout),
        drain_timeout: args.drain_timeout,
        max_clients: usize::try_from(max_clients).unwrap_or(usize::MAX),
        framing: match args.framing {
            FramingKind::Raw => Framing::Raw,
            FramingKind::Line => Framing::Lines(LineOptions {
                max_line: args.max_line,
                tag: args.tag,
                announce: args.announce,
            }),
        },
        stats_interval: args.stats_interval,
        handshake_timeout: args.security.handshake_timeout,
        ..Config::default()
    }
}

/// Clients the descriptor limit leaves room for, after raising the soft limit to the hard one
/// (as Go's runtime does): each client costs one descriptor.
#[cfg(unix)]
fn descriptor_budget() -> u64 {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            warn!(error = %e, "cannot read or raise the descriptor limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    limit.saturating_sub(FD_RESERVE).max(1)
}

/// Windows has no per-process socket limit to size against; the backend's capacity applies.
#[cfg(not(unix))]
fn descriptor_budget() -> u64 {
    u64::MAX
}

/// The listener `--bind` asks for, or by default one dual-stack socket on `[::]`, falling back to
/// `0.0.0.0` where IPv6 is unavailable. `Err` is the message for the terminal.
fn listen(args: &Args) -> Result<(TcpListener, SocketAddr), String> {
    let failed =
        |addr: SocketAddr, e: io::Error| format!("cannot listen on {addr}: {}", describe(&e));
    if let Some(ip) = args.bind {
        let addr = SocketAddr::new(ip, args.port);
        return bind(addr).map(|l| (l, addr)).map_err(|e| failed(addr, e));
    }
    let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, args.port));
    match bind(any6) {
        Ok(listener) => Ok((listener, any6)),
        // The port is taken, or not ours to take: IPv4 would say the same.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
            ) =>
        {
            Err(failed(any6, e))
        }
        Err(e6) => {
            let any4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.port));
            warn!(error = %e6, "IPv6 unavailable ({}); listening on IPv4 only", describe(&e6));
            bind(any4).map(|l| (l, any4)).map_err(|e| failed(any4, e))
        }
    }
}

/// A non-blocking listener on `addr`, set up the way mio's `TcpListener::bind` does.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // On Unix this lets a restarted server bind while old connections linger in TIME_WAIT. Not on
    // Windows, where SO_REUSEADDR would let another process bind a port we are using.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    // On Windows even a socket without SO_REUSEADDR may bind a specific address (127.0.0.1:port)
    // under our wildcard listener and take the connections meant for us; SO_EXCLUSIVEADDRUSE
    // forbids every other bind to the port while we hold it. (TIME_WAIT does not block it.)
    #[cfg(windows)]
    exclusive_address_use(&socket)?;
    if addr.is_ipv6() {
        // One socket for both families: IPv4 clients arrive as ::ffff:a.b.c.d. Windows and some
        // BSDs default to IPv6-only, so say it explicitly.
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Sets `SO_EXCLUSIVEADDRUSE`, which socket2 does not expose, before `bind`.
#[cfg(windows)]
fn exclusive_address_use(socket: &Socket) -> io::Result<()> {
    use std::os::windows::io::AsRawSocket;
    use windows_sys::Win32::Networking::WinSock::{
        setsockopt, WSAGetLastError, SOCKET, SOCKET_ERROR, SOL_SOCKET, SO_EXCLUSIVEADDRUSE,
    };
    let on: i32 = 1;
    // SAFETY: the handle is a live socket we own (borrowed from `socket` for the call); the
    // option value points at `on`, an `i32` that outlives the call, and the length passed is
    // exactly its size, which is what SO_EXCLUSIVEADDRUSE (a BOOL) expects.
    let rc = unsafe {
        setsockopt(
            socket.as_raw_socket() as SOCKET,
            SOL_SOCKET,
            SO_EXCLUSIVEADDRUSE,
            (&on as *const i32).cast(),
            size_of::<i32>() as i32,
        )
    };
    if rc == SOCKET_ERROR {
        // SAFETY: no preconditions; reads this thread's last Winsock error, set by the call above.
        return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
    }
    Ok(())
}

/// First Ctrl-C / SIGTERM: graceful stop (stop accepting, drain briefly, exit 0). Second: exit now.
fn install_signal_handler(shutdown: Shutdown) -> Result<(), ctrlc::Error> {
    let signals = AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        if signals.fetch_add(1, Ordering::SeqCst) == 0 {
            info!("shutdown requested; draining (press Ctrl-C again to exit at once)");
            if let Err(e) = shutdown.request() {
                warn!(error = %e, "could not wake the event loop");
            }
        } else {
            eprintln!("server: second interrupt, exiting without draining");
            std::process::exit(0);
        }
    })
}

/// `-v`/`-q` pick the default level; `RUST_LOG`, when set and valid, wins.
fn init_logging(args: &Args) {
    let level = match (args.quiet, args.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // The NATS client's own info lines repeat ours; its warnings and errors stay.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},async_nats=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(false);
    match args.log_format {
        LogFormat::Text => builder.with_ansi(io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// An OS error's text without std's " (os error N)" suffix: the user reads the words.
fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match (e.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(at)) => text[..at].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_without_the_code() {
        let e = io::Error::from_raw_os_error(98);
        assert!(!describe(&e).contains("os error"), "{}", describe(&e));
        let plain = io::Error::other("no code here");
        assert_eq!(describe(&plain), "no code here");
    }

    #[test]
    fn sizes_accept_binary_suffixes_and_reject_nonsense() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("16m"), Ok(16 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        for bad in [
            "",
            "MiB",
            "-1",
            "1.5MiB",
            "16 parsecs",
            "0",
            "99999999999999999999GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn seconds_accept_fractions_and_zero() {
        assert_eq!(parse_secs("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_secs("0"), Ok(Duration::ZERO));
        for bad in ["", "-1", "soon", "NaN", "inf"] {
            assert!(parse_secs(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
