//! `chat-bench`: measures the chat relay against `ncat --broker` and the loopback ceiling.
//!
//! It starts every relay it compares itself (our `server` once per compiled backend, `ncat
//! --broker` when installed, and a one-thread relay of its own), drives each only over 127.0.0.1
//! with fan-out, latency, scale and slow-reader scenarios, bounds every run in time, stops what
//! it started, and writes a table, JSON lines, a Markdown page and an SVG chart.
//!
//! ```text
//! cargo build --release --workspace --bins
//! ./target/release/chat-bench all            # the standard set, a few minutes
//! ./target/release/chat-bench --quick        # a smoke run, seconds
//! ./target/release/chat-bench fanout latency --only server/polling,ncat
//! ./target/release/chat-bench fanout --tls --only server/polling,server/polling+tls
//! ./target/release/chat-bench cluster        # 1, 2 and 3 nodes through nats-server
//! ```

mod ceiling;
mod check;
mod client;
mod procstat;
mod progress;
mod report;
mod room;
mod stats;
mod targets;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use relay_tests::tls::{TempDir, TestPki};
use rustls::ClientConfig;
use std::sync::Arc;

use crate::progress::Progress;
use crate::report::Record;
use crate::room::{Probe, RoomOutcome, RoomSpec, Status};
use crate::targets::{Kind, Target};

const MIB: f64 = 1024.0 * 1024.0;

/// Measures the chat relay (`server`, every compiled backend) against `ncat --broker` and an
/// in-tool loopback ceiling, over 127.0.0.1 only.
///
/// Exits 1 if a run lost or damaged data or could not run (FAILED); measured targets that are
/// missed are reported, never asserted.
#[derive(Debug, Parser)]
#[command(name = "chat-bench", version)]
struct Cli {
    /// Scenarios to run: all (the standard set), fanout, latency, scale, slow-reader, ceiling
    /// (the fan-out runs on the in-tool relay only), or cluster (fan-outs and latency on one
    /// node alone and on --nodes nodes sharing the room through nats-server; not in `all`).
    #[arg(value_enum, default_value = "all")]
    scenarios: Vec<Which>,
    /// A fast smoke version of every scenario (seconds, not minutes).
    #[arg(long)]
    quick: bool,
    /// Our server binary [default: `server` next to this executable].
    #[arg(long, value_name = "PATH")]
    server: Option<PathBuf>,
    /// The ncat binary [default: `ncat` on the PATH].
    #[arg(long, value_name = "PATH")]
    ncat: Option<PathBuf>,
    /// Do not run ncat.
    #[arg(long)]
    no_ncat: bool,
    /// Also run our server with TLS: one more relay per backend, `server/BACKEND+tls`, with a
    /// certificate made for this run, and every client a TLS client (rustls). Fan-out, latency
    /// and slow-reader scenarios only.
    #[arg(long)]
    tls: bool,
    /// Run only these relays (comma-separated): e.g. server/polling,ncat,ceiling.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    only: Vec<String>,
    /// Where results go.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    out: PathBuf,
    /// Clients in fan-out and latency runs.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Senders in fan-out runs (at most 16; the latency run's background uses one fewer).
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Messages per sender in the 64 B fan-out [default: 200000, quick 10000].
    #[arg(long)]
    messages: Option<usize>,
    /// Messages per sender in the 8 KiB fan-out [default: 3000, quick 150].
    #[arg(long)]
    messages_8k: Option<usize>,
    /// Probes in the light-load latency run, one per --probe-interval-us [default: 3000, quick 300].
    #[arg(long)]
    probes: Option<u64>,
    /// Microseconds between probe messages.
    #[arg(long, default_value_t = 1000)]
    probe_interval_us: u64,
    /// Idle clients in the scale runs [default: 1000,10000; quick 200,2000]. Runs above a relay's
    /// descriptor limit (select, ncat: 1,024) are skipped.
    #[arg(long, value_delimiter = ',')]
    scale_clients: Vec<usize>,
    /// Seconds the scale runs' clients idle while the relay's CPU and memory are measured
    /// [default: 2, quick 0.5].
    #[arg(long)]
    idle_secs: Option<f64>,
    /// Bytes all senders together push past the slow reader [default: 1 GiB, quick 64 MiB].
    #[arg(long)]
    slow_bytes: Option<u64>,
    /// Bound on each run, in seconds [default: 60, quick 20].
    #[arg(long)]
    timeout: Option<u64>,
    /// A run in which no byte arrives for this many seconds ends as stalled [default: 5, quick 3].
    #[arg(long)]
    stall: Option<u64>,
    /// Threads reading the receivers' sockets (each multiplexes its share with epoll). With one,
    /// the tool can read slower than our server writes at 8 KiB, and the server then cuts the
    /// lagging readers as slow consumers (16 MiB queued).
    #[arg(long, default_value_t = 2)]
    receiver_threads: usize,
    /// Threads connecting clients in parallel batches.
    #[arg(long, default_value_t = 4)]
    connect_threads: usize,
    /// Runs of each fan-out and latency scenario per relay, alternating relays; the tables show
    /// the median run and list the spread. On a 2-core machine shared by tool and relay one run
    /// can be 30 % off [default: 3, quick 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=15))]
    repeat: Option<u32>,
    /// Cluster scenario: the node counts to compare with one node alone (1 is one node that
    /// still publishes everything to NATS).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3", value_parser = clap::value_parser!(u16).range(1..=7))]
    nodes: Vec<u16>,
    /// The nats-server binary for the cluster scenario [default: `nats-server` on the PATH, or
    /// /usr/sbin/nats-server].
    #[arg(long, value_name = "PATH")]
    nats: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    All,
    Fanout,
    Latency,
    Scale,
    SlowReader,
    Ceiling,
    Cluster,
}

/// One scenario, fully sized.
#[derive(Debug, Clone)]
enum Scenario {
    /// A room measured by [`room::run_room`].
    Room {
        id: String,
        spec: RoomSpec,
        /// Whether the ceiling relay runs it too.
        ceiling: bool,
        /// A cluster scenario: it runs on the cluster targets and one node alone, and only there.
        cluster: bool,
    },
    /// Idle clients measured by [`room::run_scale`].
    Scale { clients: usize, idle: Duration },
}

impl Scenario {
    /// Whether this scenario's runs are repeated (`--repeat`): the throughput and latency ones,
    /// whose single runs swing with whatever else the two cores are doing.
    fn repeats(&self) -> bool {
        matches!(self, Scenario::Room { id, .. } if id.starts_with("fanout") || id.starts_with("latency"))
    }

    fn id(&self) -> String {
        match self {
            Scenario::Room { id, .. } => id.clone(),
            Scenario::Scale { clients, .. } => format!("scale-{clients}"),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chat-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<bool, String> {
    let timeout = Duration::from_secs(cli.timeout.unwrap_or(if cli.quick { 20 } else { 60 }));
    let stall = Duration::from_secs(cli.stall.unwrap_or(if cli.quick { 3 } else { 5 }));
    // Scale runs need a descriptor per client here and in the server, which inherits this limit.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);

    let mut relays: Vec<Target> = Vec::new();
    let server = match &cli.server {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find my own executable: {e}"))?
            .with_file_name(format!("server{}", std::env::consts::EXE_SUFFIX)),
    };
    let (ours, version) = targets::discover_ours(&server).map_err(|e| {
        format!(
            "{e}\n  (build it with `cargo build --release --workspace --bins`, or pass --server PATH)"
        )
    })?;
    let cluster_wanted = cli.scenarios.contains(&Which::Cluster);
    if cluster_wanted {
        relays.extend(cluster_targets(cli, &server, &ours)?);
    }
    // With --tls: a CA and server certificate for this run only, in a directory removed at the
    // end, and the client configuration that trusts it.
    let tls = if cli.tls {
        let help = std::process::Command::new(&server)
            .arg("--help")
            .output()
            .map_err(|e| format!("{}: {e}", server.display()))?;
        if !String::from_utf8_lossy(&help.stdout).contains("--tls-cert") {
            return Err(format!(
                "--tls: {} has no --tls-cert option (a build without TLS?)",
                server.display()
            ));
        }
        let (pki, dir) = (TestPki::new(), TempDir::new());
        let files = pki.write(dir.path());
        let with_tls: Vec<Target> = ours
            .iter()
            .filter_map(|t| t.with_tls(&files.cert, &files.key))
            .collect();
        // Each TLS relay right after its plain twin, so the tables put them side by side.
        let mut paired = Vec::new();
        for (plain, tls) in ours.into_iter().zip(with_tls) {
            paired.push(plain);
            paired.push(tls);
        }
        relays.extend(paired);
        Some((pki.client_config(None), dir))
    } else {
        relays.extend(ours);
        None
    };
    let tls_config = tls.as_ref().map(|(config, _)| config);
    let ncat = if cli.no_ncat {
        None
    } else {
        cli.ncat.clone().or_else(targets::find_ncat)
    };
    if let Some(path) = &ncat {
        relays.push(Target {
            name: "ncat".into(),
            backend: None,
            kind: Kind::Ncat(path.clone()),
        });
    }
    relays.push(Target {
        name: "ceiling".into(),
        backend: None,
        kind: Kind::Ceiling,
    });
    if !cli.only.is_empty() {
        relays.retain(|t| cli.only.contains(&t.name));
        if relays.is_empty() {
            return Err(format!("--only matches no relay ({})", cli.only.join(",")));
        }
    }

    let scenarios = scenarios(cli, timeout, stall)?;
    let wants = |w: Which| cli.scenarios.contains(&Which::All) || cli.scenarios.contains(&w);
    // `ceiling` alone runs the fan-outs on the in-tool relay only.
    let ceiling_only = wants(Which::Ceiling) && !wants(Which::Fanout);
    let repeat = cli.repeat.unwrap_or(if cli.quick { 1 } else { 3 });
    // The single node the cluster scenario compares with: our first target's backend.
    let alone = relays
        .iter()
        .find(|t| matches!(t.kind, Kind::Ours { .. }))
        .and_then(|t| t.backend.clone())
        .unwrap_or_default();
    let plan: Vec<(Scenario, Target)> = scenarios
        .iter()
        .flat_map(|s| {
            let targets: Vec<&Target> = relays
                .iter()
                .filter(|t| match s {
                    // One node alone (the default backend) against the clusters.
                    Scenario::Room { cluster: true, .. } => match &t.kind {
                        Kind::Cluster { .. } => true,
                        Kind::Ours { .. } => t.backend.as_deref() == Some(alone.as_str()),
                        _ => false,
                    },
                    _ if matches!(t.kind, Kind::Cluster { .. }) => false,
                    Scenario::Room { id, ceiling, .. } => match t.kind {
                        Kind::Ceiling => *ceiling,
                        _ => !(ceiling_only && id.starts_with("fanout")),
                    },
                    Scenario::Scale { .. } => t.kind != Kind::Ceiling,
                })
                .collect();
            // Noisy scenarios run several times, relays alternating, so a passing disturbance
            // hits every relay alike rather than one.
            let rounds = if s.repeats() { repeat } else { 1 };
            (0..rounds)
                .flat_map(|_| targets.iter().map(|t| (s.clone(), (*t).clone())))
                .collect::<Vec<_>>()
        })
        .collect();
    if plan.is_empty() {
        return Err("nothing to run".into());
    }

    std::fs::create_dir_all(cli.out.join("logs"))
        .map_err(|e| format!("cannot create {}: {e}", cli.out.display()))?;
    let header = format!(
        "{}; ncat: {}; {} cores; {}; {} receiver threads; descriptor limit {nofile}; {}",
        version,
        ncat.as_ref()
            .map_or("not run".into(), |p| p.display().to_string()),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if cli.quick { "--quick" } else { "standard set" },
        cli.receiver_threads,
        unix_time_note(),
    );
    eprintln!("chat-bench: {header}");
    eprintln!(
        "chat-bench: {} runs on {}",
        plan.len(),
        relays
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let progress = Progress::new(plan.len() as u64, std::io::stderr().is_terminal());
    let mut records = Vec::new();
    for (scenario, target) in &plan {
        let record = run_one(
            scenario, target, cli, nofile, timeout, &progress, tls_config,
        );
        progress.finish_run(&record.summary());
        records.push(record);
    }
    progress.done();

    let all_runs = records;
    let records = report::medians(&all_runs);
    let checks = report::checks(&records);
    let tables = report::text_tables(&records);
    println!("{tables}");
    if !checks.is_empty() {
        println!("targets (measured, not asserted):");
        for c in &checks {
            println!("  {:<8} {}: {}", c.verdict, c.goal, c.measured);
        }
    }
    write_outputs(&cli.out, &all_runs, &records, &header, &checks)?;
    println!("\nresults in {}", cli.out.display());
    Ok(!all_runs.iter().any(|r| r.status == "FAILED"))
}

/// The cluster scenario's targets, one per `--nodes` count.
fn cluster_targets(cli: &Cli, server: &Path, ours: &[Target]) -> Result<Vec<Target>, String> {
    let help = std::process::Command::new(server)
        .arg("--help")
        .output()
        .map_err(|e| format!("{}: {e}", server.display()))?;
    if !String::from_utf8_lossy(&help.stdout).contains("--cluster") {
        return Err(format!(
            "{} has no --cluster option (build it with the `cluster` feature)",
            server.display()
        ));
    }
    let nats = cli
        .nats
        .clone()
        .or_else(relay_tests::nats_server_binary)
        .ok_or(
            "the cluster scenario needs nats-server (apt-get install nats-server, or --nats PATH)",
        )?;
    let backend = ours.first().and_then(|t| t.backend.clone());
    Ok(cli
        .nodes
        .iter()
        .map(|&n| Target {
            name: format!("cluster/{n}"),
            backend: backend.clone(),
            kind: Kind::Cluster {
                path: server.to_path_buf(),
                nats: nats.clone(),
                nodes: usize::from(n),
            },
        })
        .collect())
}

fn unix_time_note() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("unix time {secs}")
}

/// Every run goes to the JSON lines; the page and the chart show the median runs.
fn write_outputs(
    out: &Path,
    all_runs: &[Record],
    records: &[Record],
    header: &str,
    checks: &[report::Check],
) -> Result<(), String> {
    let write = |name: &str, text: String| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(
        "results.jsonl",
        report::json_lines(all_runs).map_err(|e| e.to_string())?,
    )?;
    write("results.md", report::markdown(records, header, checks))?;
    report::svg_chart(
        records,
        &out.join("chart.svg"),
        "chat relay: higher bars are better, except p99",
    )
    .map_err(|e| format!("chart: {e}"))
}

/// The scenarios the command line asks for, sized.
fn scenarios(cli: &Cli, timeout: Duration, stall: Duration) -> Result<Vec<Scenario>, String> {
    let q = cli.quick;
    let wants = |w: Which| cli.scenarios.contains(&Which::All) || cli.scenarios.contains(&w);
    let fanout_wanted = wants(Which::Fanout) || wants(Which::Ceiling);
    let base = RoomSpec {
        clients: cli.clients,
        senders: cli.senders,
        size: 64,
        messages: 1,
        probe: None,
        slow_readers: 0,
        receiver_threads: cli.receiver_threads,
        connect_threads: cli.connect_threads,
        timeout,
        stall,
        tls: None,
    };
    let mut out = Vec::new();
    if fanout_wanted {
        for (id, size, messages) in [
            (
                "fanout-64",
                64,
                cli.messages.unwrap_or(if q { 10_000 } else { 200_000 }),
            ),
            (
                "fanout-8k",
                8192,
                cli.messages_8k.unwrap_or(if q { 150 } else { 3_000 }),
            ),
        ] {
            out.push(Scenario::Room {
                id: id.into(),
                spec: RoomSpec {
                    size,
                    messages,
                    ..base.clone()
                },
                ceiling: true,
                cluster: false,
            });
        }
    }
    if wants(Which::Latency) {
        let interval = Duration::from_micros(cli.probe_interval_us.max(1));
        out.push(Scenario::Room {
            id: "latency-light".into(),
            spec: RoomSpec {
                senders: 0,
                probe: Some(Probe {
                    interval,
                    count: Some(cli.probes.unwrap_or(if q { 300 } else { 3_000 })),
                }),
                ..base.clone()
            },
            ceiling: true,
            cluster: false,
        });
        out.push(Scenario::Room {
            id: "latency-loaded".into(),
            spec: RoomSpec {
                senders: cli
                    .senders
                    .min(check::MAX_PATTERN_SENDERS_WITH_PROBE)
                    .saturating_sub(1)
                    .max(1),
                size: 64,
                messages: if q { 5_000 } else { 100_000 },
                probe: Some(Probe {
                    interval,
                    count: None,
                }),
                ..base.clone()
            },
            ceiling: true,
            cluster: false,
        });
    }
    if wants(Which::Scale) {
        let counts = if cli.scale_clients.is_empty() {
            if q {
                vec![200, 2_000]
            } else {
                vec![1_000, 10_000]
            }
        } else {
            cli.scale_clients.clone()
        };
        let idle = Duration::from_secs_f64(cli.idle_secs.unwrap_or(if q { 0.5 } else { 2.0 }));
        for clients in counts {
            out.push(Scenario::Scale { clients, idle });
        }
    }
    if wants(Which::SlowReader) {
        let total = cli.slow_bytes.unwrap_or(if q { 64 << 20 } else { 1 << 30 });
        let (senders, size) = (4usize, 8192usize);
        out.push(Scenario::Room {
            id: "slow-reader".into(),
            spec: RoomSpec {
                clients: 10,
                senders,
                size,
                messages: (total / (senders * size) as u64).max(1) as usize,
                slow_readers: 1,
                ..base.clone()
            },
            ceiling: false,
            cluster: false,
        });
    }
    if cli.scenarios.contains(&Which::Cluster) {
        out.extend(cluster_scenarios(cli, &base));
    }
    for s in &out {
        if let Scenario::Room { id, spec, .. } = s {
            spec.check().map_err(|e| format!("{id}: {e}"))?;
        }
    }
    Ok(out)
}

/// The cluster scenario: the 64 B and 8 KiB fan-outs and both latency runs. NATS core has no
/// flow control, so a node cannot slow down senders on other nodes the way one relay slows its
/// own (by reading no faster than it writes): under a saturating load a node's readers fall
/// behind and are cut as slow consumers once 16 MiB waits for them. These runs are therefore
/// sized to send each reader less than that (bursts, not a sustained saturation).
fn cluster_scenarios(cli: &Cli, base: &RoomSpec) -> Vec<Scenario> {
    let q = cli.quick;
    let interval = Duration::from_micros(cli.probe_interval_us.max(1));
    let room = |id: &str, spec: RoomSpec| Scenario::Room {
        id: id.into(),
        spec,
        ceiling: false,
        cluster: true,
    };
    vec![
        room(
            "fanout-64-cluster",
            RoomSpec {
                size: 64,
                // 10 senders x 20,000 x 64 B: 12.2 MiB for each reader.
                messages: cli.messages.unwrap_or(if q { 5_000 } else { 20_000 }),
                ..base.clone()
            },
        ),
        room(
            "fanout-8k-cluster",
            RoomSpec {
                size: 8192,
                // 10 senders x 180 x 8 KiB: 14.1 MiB for each reader.
                messages: cli.messages_8k.unwrap_or(if q { 50 } else { 180 }),
                ..base.clone()
            },
        ),
        room(
            "latency-light-cluster",
            RoomSpec {
                senders: 0,
                probe: Some(Probe {
                    interval,
                    count: Some(cli.probes.unwrap_or(if q { 300 } else { 3_000 })),
                }),
                ..base.clone()
            },
        ),
        room(
            "latency-loaded-cluster",
            RoomSpec {
                senders: cli
                    .senders
                    .min(check::MAX_PATTERN_SENDERS_WITH_PROBE)
                    .saturating_sub(1)
                    .max(1),
                size: 64,
                // 9 senders x 25,000 x 64 B: 13.7 MiB for each reader.
                messages: if q { 5_000 } else { 25_000 },
                probe: Some(Probe {
                    interval,
                    count: None,
                }),
                ..base.clone()
            },
        ),
    ]
}

/// Runs one scenario on one relay, start to stop, and records it.
fn run_one(
    scenario: &Scenario,
    target: &Target,
    cli: &Cli,
    nofile: u64,
    timeout: Duration,
    progress: &Progress,
    tls: Option<&Arc<ClientConfig>>,
) -> Record {
    let id = scenario.id();
    let mut record = Record {
        scenario: id.clone(),
        target: target.name.clone(),
        ..Record::default()
    };
    let skip = |mut r: Record, why: String| {
        r.status = "skipped".into();
        r.detail = Some(why);
        r
    };
    if let Scenario::Scale { clients, .. } = scenario {
        record.clients = *clients;
        if target.is_tls() {
            return skip(record, "scale runs are plain TCP only".into());
        }
        if let Some(limit) = target.client_limit().filter(|l| clients > l) {
            return skip(
                record,
                format!(
                    "{} holds at most about {limit} clients (FD_SETSIZE)",
                    target.name
                ),
            );
        }
        let need = *clients as u64 + 64;
        if nofile < need {
            return skip(
                record,
                format!("descriptor limit {nofile} < {need}; raise the hard limit (ulimit -Hn)"),
            );
        }
    }
    let log = cli
        .out
        .join("logs")
        .join(format!("{id}-{}.log", target.name.replace('/', "-")));
    let mut running = match target.start(Some(&log)) {
        Ok(r) => r,
        Err(e) => {
            record.status = "FAILED".into();
            record.detail = Some(format!("could not start: {e}"));
            return record;
        }
    };
    let addrs = running.addrs();
    let meter = running.meter();
    match scenario {
        Scenario::Room { spec, .. } => {
            let spec = &RoomSpec {
                tls: tls.filter(|_| target.is_tls()).cloned(),
                ..spec.clone()
            };
            record.clients = spec.clients;
            record.senders = spec.senders;
            record.size = spec.size;
            record.messages = spec.messages;
            let expected = spec.expected_bytes();
            progress.start_run(&format!("{id} on {}", target.name), Some(expected));
            let outcome = room::run_room(&addrs, spec, meter, &|bytes| progress.update(bytes));
            fill_room(&mut record, spec, &outcome);
            if let Some((_, hwm)) = meter.and_then(procstat::Meter::memory_kib) {
                record.peak_rss_mib = Some(hwm as f64 / 1024.0);
            }
        }
        Scenario::Scale { clients, idle } => {
            progress.start_run(&format!("{id} on {}", target.name), None);
            let o = room::run_scale(
                addrs[0],
                *clients,
                cli.connect_threads,
                *idle,
                timeout,
                meter,
            );
            record.connect_secs = Some(o.connect_secs);
            record.connects_per_sec =
                (o.connect_secs > 0.0).then(|| *clients as f64 / o.connect_secs);
            if let Some((rss, hwm)) = o.memory_kib {
                record.rss_mib = Some(rss as f64 / 1024.0);
                record.peak_rss_mib = Some(hwm as f64 / 1024.0);
            }
            record.idle_cpu_ms = o.idle_cpu.map(|s| s * 1000.0);
            record.idle_secs = Some(idle.as_secs_f64());
            record.served = Some(o.served);
            record.verified = o.status == Status::Ok;
            set_status(&mut record, &o.status);
        }
    }
    if !running.alive() {
        record.detail = Some(format!(
            "{}the relay process exited during the run (log: {})",
            record.detail.take().map(|d| d + "; ").unwrap_or_default(),
            log.display()
        ));
        if record.status == "ok" {
            record.status = "FAILED".into();
        }
    }
    // `running` drops here: the process is killed and reaped, or the relay thread joined.
    record
}

fn set_status(record: &mut Record, status: &Status) {
    match status {
        Status::Ok => record.status = "ok".into(),
        Status::Failed(e) => {
            record.status = "FAILED".into();
            record.detail = Some(e.clone());
        }
        Status::Stalled(e) => {
            record.status = "stalled".into();
            record.detail = Some(e.clone());
        }
    }
}

fn fill_room(record: &mut Record, spec: &RoomSpec, o: &RoomOutcome) {
    set_status(record, &o.status);
    record.verified = o.status == Status::Ok;
    record.secs = Some(o.secs);
    record.delivered_mib = Some(o.pattern_bytes as f64 / MIB);
    if spec.senders > 0 {
        record.deliveries_per_sec = Some((o.pattern_bytes / spec.size as u64) as f64 / o.secs);
        record.mib_per_sec = Some(o.pattern_bytes as f64 / MIB / o.secs);
    }
    if spec.probe.is_some() {
        record.latency_samples = Some(o.latencies_ns.len() as u64);
        record.probes_sent = Some(o.probes_sent);
        if let Some([p50, p99, p999, max]) = stats::summary(&o.latencies_ns) {
            let us = |ns: u64| ns as f64 / 1000.0;
            record.p50_us = Some(us(p50));
            record.p99_us = Some(us(p99));
            record.p999_us = Some(us(p999));
            record.max_us = Some(us(max));
        }
    }
    record.slow_reader_cut = o.slow_cut;
    record.connect_secs = Some(o.connect_secs);
    record.server_cpu_secs = o.server_cpu;
    record.tool_cpu_secs = o.tool_cpu;
}
