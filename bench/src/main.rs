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
//! ./target/release/chat-bench web --only server/polling   # TCP against WebSocket receivers
//! ```
mod ceiling;
mod check;
mod cli;
mod client;
mod load;
mod pki;
mod plan;
mod procstat;
mod progress;
mod record;
mod report;
mod stats;
mod targets;
mod ws;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::cli::{Cli, Which};
use crate::plan::Scenario;
use crate::progress::Progress;
use crate::report::RunStatus;
use crate::targets::{Kind, Target};

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
    let ours = targets::discover_ours(&server).map_err(|e| {
        format!(
            "{e}\n  (build it with `cargo build --release --workspace --bins`, or pass --server PATH)"
        )
    })?;
    let cluster_wanted = cli.scenarios.contains(&Which::Cluster);
    if cluster_wanted {
        relays.extend(plan::cluster_targets(cli, &server, &ours)?);
    }
    if cli.scenarios.contains(&Which::Web) && !ours.web {
        return Err(format!(
            "web: {} has no WebSocket door (its --help lists no --ws-ping)",
            server.display()
        ));
    }
    let targets::Ours {
        targets: ours,
        version,
        features,
        ..
    } = ours;
    // With --tls: a CA and server certificate for this run only, in a directory removed at the
    // end, and the client configuration that trusts it.
    let tls = if cli.tls {
        if !features.iter().any(|f| f == "tls") {
            return Err(format!(
                "--tls: {} was built without TLS (its --version lists no +tls: {version})",
                server.display()
            ));
        }
        let pki = pki::RunPki::new()?;
        let with_tls: Vec<Target> = ours
            .iter()
            .filter_map(|t| t.with_tls(&pki.cert, &pki.key))
            .collect();
        // Each TLS relay right after its plain twin, so the tables put them side by side.
        let mut paired = Vec::new();
        for (plain, tls) in ours.into_iter().zip(with_tls) {
            paired.push(plain);
            paired.push(tls);
        }
        relays.extend(paired);
        Some(pki)
    } else {
        relays.extend(ours);
        None
    };
    let tls_config = tls.as_ref().map(|pki| &pki.client);
    let ncat = if cli.no_ncat {
        None
    } else {
        cli.ncat.clone().or_else(|| targets::find_program("ncat"))
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

    let scenarios = plan::scenarios(cli, timeout, stall)?;
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
                    // Every relay: those without a WebSocket door show as skipped.
                    Scenario::Web { .. } => true,
                })
                .collect();
            // Noisy scenarios run several times, relays alternating, so a passing disturbance
            // hits every relay alike rather than one.
            let rounds = if s.repeats() { repeat } else { 1 };
            (0..rounds)
                .flat_map(|round| {
                    targets.iter().flat_map(move |t| {
                        plan::rounds_of(s, t, round)
                            .into_iter()
                            .map(|s| (s, (*t).clone()))
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if plan.is_empty() {
        return Err("nothing to run".into());
    }

    std::fs::create_dir_all(cli.out.join("logs"))
        .map_err(|e| format!("cannot create {}: {e}", cli.out.display()))?;
    let steady = plan::steady_window(cli);
    let header = format!(
        "{}; ncat: {}; {} cores; {}; {} receiver threads; descriptor limit {nofile}; \
         latency under load: probes sent {} ms to {} ms after the start; {}",
        version,
        ncat.as_ref()
            .map_or("not run".into(), |p| p.display().to_string()),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if cli.quick { "--quick" } else { "standard set" },
        cli.receiver_threads,
        steady.warmup.as_millis(),
        steady.warmup.saturating_add(steady.window).as_millis(),
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
        let record = record::run_one(
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
    record::write_outputs(&cli.out, &all_runs, &records, &header, &checks)?;
    println!("\nresults in {}", cli.out.display());
    Ok(!all_runs.iter().any(|r| r.status == RunStatus::Failed))
}

fn unix_time_note() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("unix time {secs}")
}
