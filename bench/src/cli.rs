//! The command line.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Measures the chat relay (`server`, every compiled backend) against `ncat --broker` and an
/// in-tool loopback ceiling, over 127.0.0.1 only.
///
/// Exits 1 if a run lost or damaged data or could not run (FAILED); measured targets that are
/// missed are reported, never asserted.
#[derive(Debug, Parser)]
#[command(name = "chat-bench", version)]
pub(crate) struct Cli {
    /// Scenarios to run: all (the standard set), fanout, latency, scale, slow-reader, ceiling
    /// (the fan-out runs on the in-tool relay only), cluster (fan-outs and latency on one
    /// node alone and on --nodes nodes sharing the room through nats-server; not in `all`), or
    /// web (fan-outs with a latency probe and a light-load latency run, each with TCP receivers
    /// and then with WebSocket receivers, on our server only; not in `all`).
    #[arg(value_enum, default_value = "all")]
    pub(crate) scenarios: Vec<Which>,
    /// A fast smoke version of every scenario (seconds, not minutes).
    #[arg(long)]
    pub(crate) quick: bool,
    /// Our server binary [default: `server` next to this executable].
    #[arg(long, value_name = "PATH")]
    pub(crate) server: Option<PathBuf>,
    /// The ncat binary [default: `ncat` on the PATH].
    #[arg(long, value_name = "PATH")]
    pub(crate) ncat: Option<PathBuf>,
    /// Do not run ncat.
    #[arg(long)]
    pub(crate) no_ncat: bool,
    /// Also run our server with TLS: one more relay per backend, `server/BACKEND+tls`, with a
    /// certificate made for this run, and every client a TLS client (rustls). Fan-out, latency
    /// and slow-reader scenarios only.
    #[arg(long)]
    pub(crate) tls: bool,
    /// Run only these relays (comma-separated): e.g. server/polling,ncat,ceiling.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub(crate) only: Vec<String>,
    /// Where results go.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    pub(crate) out: PathBuf,
    /// Clients in fan-out and latency runs.
    #[arg(long, default_value_t = 100)]
    pub(crate) clients: usize,
    /// Senders in fan-out runs (at most 16; the latency run's background uses one fewer).
    #[arg(long, default_value_t = 10)]
    pub(crate) senders: usize,
    /// Messages per sender in the 64 B fan-out [default: 200000, quick 10000].
    #[arg(long)]
    pub(crate) messages: Option<usize>,
    /// Messages per sender in the 8 KiB fan-out [default: 3000, quick 150].
    #[arg(long)]
    pub(crate) messages_8k: Option<usize>,
    /// Probes in the light-load latency run, one per --probe-interval-us [default: 3000, quick 300].
    #[arg(long)]
    pub(crate) probes: Option<u64>,
    /// Microseconds between probe messages.
    #[arg(long, default_value_t = 1000)]
    pub(crate) probe_interval_us: u64,
    /// Under a sustained background load (latency-loaded, web), the percentiles cover the probes
    /// sent in a steady window: --window-ms long, after this many milliseconds, and never once
    /// a reader had all of one sender's bytes. Every relay is measured over the same stretch of
    /// its steady state; the whole run's p99 and maximum are reported beside them [default:
    /// 500, quick 0].
    #[arg(long, value_name = "MS")]
    pub(crate) warmup_ms: Option<u64>,
    /// The steady window's length (see --warmup-ms); a run whose background ends sooner reports
    /// the shorter window it had.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub(crate) window_ms: u64,
    /// Idle clients in the scale runs [default: 1000,10000; quick 200,2000]. Runs above a relay's
    /// descriptor limit (select, ncat: 1,024) are skipped.
    #[arg(long, value_delimiter = ',')]
    pub(crate) scale_clients: Vec<usize>,
    /// Seconds the scale runs' clients idle while the relay's CPU and memory are measured
    /// [default: 2, quick 0.5].
    #[arg(long)]
    pub(crate) idle_secs: Option<f64>,
    /// Bytes all senders together push past the slow reader [default: 1 GiB, quick 64 MiB].
    #[arg(long)]
    pub(crate) slow_bytes: Option<u64>,
    /// Bound on each run, in seconds [default: 60, quick 20].
    #[arg(long)]
    pub(crate) timeout: Option<u64>,
    /// A run in which no byte arrives for this many seconds ends as stalled [default: 5, quick 3].
    #[arg(long)]
    pub(crate) stall: Option<u64>,
    /// Threads reading the receivers' sockets (each multiplexes its share with epoll). With one,
    /// the tool can read slower than our server writes at 8 KiB, and the server then cuts the
    /// lagging readers as slow consumers (16 MiB queued).
    #[arg(long, default_value_t = 2)]
    pub(crate) receiver_threads: usize,
    /// Threads connecting clients in parallel batches.
    #[arg(long, default_value_t = 4)]
    pub(crate) connect_threads: usize,
    /// Runs of each fan-out and latency scenario per relay, alternating relays; the tables show
    /// the median run and list the spread. On a 2-core machine shared by tool and relay one run
    /// can be 30 % off [default: 3, quick 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=15))]
    pub(crate) repeat: Option<u32>,
    /// Cluster scenario: the node counts to compare with one node alone (1 is one node that
    /// still publishes everything to NATS).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3", value_parser = clap::value_parser!(u16).range(1..=7))]
    pub(crate) nodes: Vec<u16>,
    /// The nats-server binary for the cluster scenario [default: `nats-server` on the PATH, or
    /// /usr/sbin/nats-server].
    #[arg(long, value_name = "PATH")]
    pub(crate) nats: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Which {
    All,
    Fanout,
    Latency,
    Scale,
    SlowReader,
    Ceiling,
    Cluster,
    Web,
}
