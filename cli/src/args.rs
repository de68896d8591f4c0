//! The command line: clap's types, the value parsers, the rules between options, and the seed's
//! error contract (`Usage: server <port>`, exit 1) wrapped around clap's own errors.

use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};

use crate::generate::Generated;
use crate::{cluster, http, security};

/// The seed program's usage line; printed for every argument error.
pub(crate) const USAGE: &str = "Usage: server <port>";

/// Every optional part of the server and whether this build has it, in `--version` order. The
/// one source for `--version` and for the "this build has no ..." messages.
const PARTS: [(&str, bool); 4] = [
    ("polling", cfg!(feature = "polling")),
    ("select", cfg!(feature = "select")),
    ("tls", cfg!(feature = "tls")),
    ("cluster", cfg!(feature = "cluster")),
];

/// `--version` after the name: `0.1.0 (+polling +select +tls +cluster)`, the parts built in.
static VERSION: LazyLock<String> =
    LazyLock::new(|| format!("{} ({})", env!("CARGO_PKG_VERSION"), features()));

/// The parts built in, as `--version` lists them: `+polling +select +tls`.
pub(crate) fn features() -> String {
    let parts: Vec<String> = PARTS
        .iter()
        .filter(|(_, built)| *built)
        .map(|(name, _)| format!("+{name}"))
        .collect();
    parts.join(" ")
}

/// Options that only make sense with others: the option, the options it needs, and what the
/// user reads when one is missing. Handed to clap as `requires`; the message names the option.
const NEEDS: [(&str, &[&str], &str); 15] = [
    ("tls_cert", &["tls_key"], "--tls-cert needs --tls-key"),
    ("tls_key", &["tls_cert"], "--tls-key needs --tls-cert"),
    (
        "tls_client_ca",
        &["tls_cert", "tls_key"],
        "--tls-client-ca needs --tls-cert and --tls-key",
    ),
    ("room", &["cluster"], "--room needs --cluster URL"),
    ("burst", &["max_rate"], "--burst needs --max-rate"),
    (
        "cluster_optional",
        &["cluster"],
        "--cluster-optional needs --cluster URL",
    ),
    (
        "http_token_file",
        &["http"],
        "--http-token-file needs --http ADDR",
    ),
    (
        "http_max_connections",
        &["http"],
        "--http-max-connections needs --http ADDR",
    ),
    (
        "http_head_timeout",
        &["http"],
        "--http-head-timeout needs --http ADDR",
    ),
    (
        "http_idle_timeout",
        &["http"],
        "--http-idle-timeout needs --http ADDR",
    ),
    (
        "http_tls",
        &["http", "tls_cert"],
        "--http-tls needs --http ADDR and --tls-cert",
    ),
    ("no_web", &["http"], "--no-web needs --http ADDR"),
    ("ws_origin", &["http"], "--ws-origin needs --http ADDR"),
    (
        "ws_max_message",
        &["http"],
        "--ws-max-message needs --http ADDR",
    ),
    ("ws_ping", &["http"], "--ws-ping needs --http ADDR"),
];

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
    // `--write-timeout -1` is a bad value of that option, not an unknown flag `-1`.
    allow_negative_numbers = true,
    after_help = EXAMPLES
)]
pub(crate) struct Args {
    /// TCP port to listen on, 1-65535.
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) port: u16,

    /// Address to listen on, IPv4 or IPv6 (e.g. 127.0.0.1, ::1). Default: `::` with IPv4
    /// mapped in, so one socket serves IPv6 and IPv4 clients in one room; `0.0.0.0` where IPv6
    /// is unavailable.
    #[arg(long, value_name = "ADDR")]
    pub(crate) bind: Option<IpAddr>,

    /// `raw`: relay every chunk as it arrives, bytes as they are (the default). `line`: relay
    /// whole lines only; a partial line waits for its newline, so lines never interleave.
    #[arg(long, value_enum, default_value_t = FramingKind::Raw)]
    pub(crate) framing: FramingKind,

    /// Line mode: the longest line allowed (not counting its newline); a sender that exceeds it
    /// is disconnected.
    #[arg(long, value_name = "BYTES", default_value = "64KiB", value_parser = parse_size)]
    pub(crate) max_line: usize,

    /// Line mode: prefix every forwarded line with the sender's id, e.g. `[7] hello`. Ids are
    /// never reused while the server runs.
    #[arg(long)]
    pub(crate) tag: bool,

    /// Line mode: tell the room when a client joins or leaves (`* 7 joined`, `* 7 left`).
    #[arg(long)]
    pub(crate) announce: bool,

    /// Log format on stderr: `text` for people, `json` (one object per line) for log shippers.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    /// Log a statistics line every SECS seconds: clients now and peak, messages and bytes in
    /// and out, clients cut by reason. Off by default.
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    pub(crate) stats_interval: Option<Duration>,

    /// Log more: -v adds every chunk received, -vv every readiness event. RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count)]
    pub(crate) verbose: u8,

    /// Log only warnings and errors. RUST_LOG overrides.
    #[arg(short, long, conflicts_with = "verbose")]
    pub(crate) quiet: bool,

    /// I/O backend: `polling` (epoll, kqueue, IOCP; the default when compiled in; clients bounded
    /// by memory and `ulimit -n`) or `select` (the seed's select(); about 1,018 clients on Unix,
    /// 1,023 on Windows). `--version` lists the backends this build has.
    #[arg(long, value_enum, default_value_t = BackendKind::DEFAULT)]
    pub(crate) backend: BackendKind,

    /// Most bytes queued for one client before it is cut as a slow consumer. Accepts suffixes:
    /// 512KiB, 16MiB, 1GiB (K/M/G are the same binary units).
    #[arg(long, value_name = "BYTES", default_value = "16MiB", value_parser = parse_size)]
    pub(crate) max_pending: usize,

    /// Cut a client when bytes have waited this long for it with no write progress at all.
    /// 0 turns the timeout off (only --max-pending applies).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub(crate) write_timeout: Duration,

    /// Most clients at once; later ones are accepted and closed at once with a log line.
    /// Default: what the descriptor limit (`ulimit -n`, raised to its hard limit at start) and
    /// the backend allow, minus a small reserve.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_clients: Option<u64>,

    /// On Ctrl-C / SIGTERM, how long pending output may take to drain before the server closes
    /// everything and exits. A second Ctrl-C exits at once.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_secs)]
    pub(crate) drain_timeout: Duration,

    /// Bytes queued for a reader that keeps up beyond which the server stops reading from the
    /// senders (TCP then slows them) instead of letting messages wait behind megabytes or cutting
    /// readers. Smaller: shorter waits under load, less throughput. A sender that sent under 16KiB
    /// since the room last caught up (someone typing) is still read.
    #[arg(long, value_name = "BYTES", default_value = "32KiB", value_parser = parse_size)]
    pub(crate) pace_budget: usize,

    /// The kernel send buffer asked for on every client socket. Bytes in it are out of the
    /// pace's sight, and the kernel may grow an unset buffer to megabytes; too small a buffer
    /// (32KiB on Linux) leaves writes waiting for TCP acknowledgements and throughput collapses.
    /// 0 leaves the OS default and its autotuning.
    #[arg(long, value_name = "BYTES", default_value = "64KiB", value_parser = parse_size_or_zero)]
    pub(crate) send_buffer: usize,

    /// How long one reader that falls behind may slow the whole room; after that it gets what it
    /// can and is cut by --max-pending or --write-timeout if it never catches up.
    #[arg(long, value_name = "SECS", default_value = "0.25", value_parser = parse_secs)]
    pub(crate) lag_grace: Duration,

    /// Most clients at once from one address (an IPv4 address; for IPv6 its /64, which one
    /// subscriber's network hands out freely). Off by default: users behind one NAT, and local
    /// tests, share an address.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_per_address: Option<u64>,

    /// Most bytes per second one client may send (e.g. 64KiB). A client over it is not cut: the
    /// server stops reading it until it may send again, so TCP slows it and nothing is lost. Off
    /// by default.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub(crate) max_rate: Option<usize>,

    /// With --max-rate, the most a client may send at once after a quiet spell. Default: a
    /// quarter of a second of its rate, at least 16KiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub(crate) burst: Option<usize>,

    /// TCP keepalive on every client: the kernel probes a connection silent this long, so a peer
    /// that vanished without a word (power cut, NAT timeout) is found and cut. 0 turns it off.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub(crate) keepalive: Duration,

    /// Cut a client that has neither sent nor been sent anything for this long. Off by default.
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    pub(crate) idle_timeout: Option<Duration>,

    #[command(flatten)]
    pub(crate) security: security::Security,

    #[command(flatten)]
    pub(crate) http: http::HttpArgs,

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
    /// The arguments of this process, or why to stop before running.
    pub(crate) fn parse() -> Result<Args, Stop> {
        let matches = match command().try_get_matches() {
            Ok(matches) => matches,
            Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
                return Err(Stop::Asked(e));
            }
            Err(e) => return Err(Stop::Mistake(usage_error(&e))),
        };
        if let Some(&kind) = matches.get_one::<Generated>(GENERATE) {
            return Err(Stop::Generate(kind));
        }
        let args = Args::from_arg_matches(&matches).map_err(|_| Stop::Mistake(USAGE.into()))?;
        // A rule on a defaulted option, which clap's `requires` cannot say.
        if args.framing == FramingKind::Raw && (args.tag || args.announce) {
            return Err(Stop::Mistake(option_mistake(
                "--tag and --announce work on lines: add --framing line",
            )));
        }
        Ok(args)
    }

    /// What the command line says about clustering.
    pub(crate) fn cluster(&self) -> cluster::ClusterArgs<'_> {
        cluster::ClusterArgs {
            url: self.cluster.as_deref(),
            room: self.room.as_deref(),
            optional: self.cluster_optional,
        }
    }
}

/// Why the server stops before it starts.
#[derive(Debug)]
pub(crate) enum Stop {
    /// `--help` or `--version`: clap prints it on stdout, and the exit code is 0.
    Asked(clap::Error),
    /// A mistake: these lines go to stderr, and the exit code is 1.
    Mistake(String),
    /// `--generate KIND`: completions or the man page on stdout, exit code 0.
    Generate(Generated),
}

/// The hidden option that writes completions or the man page ([`crate::generate`]).
const GENERATE: &str = "generate";

/// The clap command: the derived one, with `--version`, the [`NEEDS`] rules and the hidden
/// `--generate` added. Also what `--generate` describes.
pub(crate) fn command() -> clap::Command {
    // One name in usage lines on every platform (argv[0] is `server.exe` on Windows).
    let mut command = Args::command().version(VERSION.as_str()).bin_name("server");
    for (option, needs, _) in NEEDS {
        for &need in needs {
            command = command.mut_arg(option, |arg| arg.requires(need));
        }
    }
    // Alone on the command line (the port is not needed then); see `crate::generate`.
    command.arg(
        Arg::new(GENERATE)
            .long(GENERATE)
            .value_name("KIND")
            .hide(true)
            .exclusive(true)
            .value_parser(clap::value_parser!(Generated)),
    )
}

/// The lines for an argument error. A bad value for an option (not the port) or a missing
/// companion option says which option and why, then `Usage: server <port> [OPTIONS]`; anything
/// else (a missing, extra or malformed port, an unknown flag) gets the seed's bare usage line.
fn usage_error(e: &clap::Error) -> String {
    match e.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => bad_value(e),
        ErrorKind::MissingRequiredArgument => missing_companion(),
        _ => None,
    }
    .map_or_else(|| USAGE.to_string(), |line| option_mistake(&line))
}

/// `server: {line}` and the usage line that mentions options.
fn option_mistake(line: &str) -> String {
    format!("server: {line}\n{USAGE} [OPTIONS]")
}

/// `invalid value "x" for --opt (expected one of: ...)` or `invalid value "x" for --opt: why`,
/// or `None` for the port.
fn bad_value(e: &clap::Error) -> Option<String> {
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
    // What our own value parsers said (`must be at least 1 byte`...).
    let why = std::error::Error::source(e).map_or_else(String::new, |why| format!(": {why}"));
    Some(format!("invalid value{value} for {arg}{valid}{why}"))
}

/// The [`NEEDS`] message of the first option given without what it needs. clap's error names
/// only the missing option, so the command line is read again, errors ignored, to find the one
/// that asked for it. `None` when the missing argument is the port.
fn missing_companion() -> Option<String> {
    let matches = command().ignore_errors(true).try_get_matches().ok()?;
    let given = |id: &str| given(&matches, id);
    if !given("port") {
        return None; // the seed's contract: a missing port gets the bare usage line
    }
    NEEDS
        .iter()
        .find(|(option, needs, _)| given(option) && needs.iter().any(|need| !given(need)))
        .map(|(_, _, message)| (*message).to_string())
}

/// Whether the user wrote option `id` (a default does not count).
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// `16MiB`, `512k`, `1G`, `4096`: binary units, case-insensitive, optional `B`/`iB`.
pub(crate) fn parse_size(text: &str) -> Result<usize, String> {
    match parse_size_or_zero(text)? {
        0 => Err("must be at least 1 byte".into()),
        bytes => Ok(bytes),
    }
}

/// A size as [`parse_size`] reads it, where 0 is allowed (it means "leave the default").
fn parse_size_or_zero(text: &str) -> Result<usize, String> {
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
    number
        .checked_mul(1u64 << shift)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A positive number of seconds.
pub(crate) fn parse_interval(text: &str) -> Result<Duration, String> {
    match parse_secs(text)? {
        d if d.is_zero() => Err("must be more than 0 seconds".into()),
        d => Ok(d),
    }
}

/// Seconds, whole or fractional: `10`, `0.5`, `0`.
pub(crate) fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text:?} is not a number of seconds"))
}

/// `--framing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FramingKind {
    /// Every chunk as it arrives.
    Raw,
    /// Whole lines.
    Line,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The backends a user can name. Every build knows both names, so asking for one this build
/// lacks is a clear error rather than an unknown value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BackendKind {
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

/// The backends compiled into this build, for messages: `"polling, select"`.
pub(crate) fn compiled_backends() -> String {
    let built = |kind: &&BackendKind| PARTS.contains(&(kind.name(), true));
    let names: Vec<&str> = BackendKind::value_variants()
        .iter()
        .filter(built)
        .map(|kind| kind.name())
        .collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_binary_suffixes_and_reject_nonsense() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("16m"), Ok(16 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("0").is_err(), "a limit of 0 bytes");
        assert_eq!(
            parse_size_or_zero("0"),
            Ok(0),
            "--send-buffer 0: the OS default"
        );
        assert_eq!(parse_size_or_zero("64KiB"), Ok(64 << 10));
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
        // Also checks that every id in NEEDS names an argument.
        command().debug_assert();
    }

    #[test]
    fn compiled_backends_are_the_backends_built_in() {
        // `--version` itself is checked black-box in tests/binary.rs.
        let backends = compiled_backends();
        assert_eq!(backends.contains("polling"), cfg!(feature = "polling"));
        assert_eq!(backends.contains("select"), cfg!(feature = "select"));
        assert!(!backends.contains("tls"), "{backends}");
        assert!(VERSION.contains(&format!("+{}", backends.replace(", ", " +"))));
    }
}
