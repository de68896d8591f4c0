//! One run, recorded: start the relay, run the scenario, fill its [`Record`]; and the files the
//! records are written to.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;

use crate::cli::Cli;
use crate::load::{self, RoomOutcome, RoomSpec, Status};
use crate::plan::Scenario;
use crate::procstat;
use crate::progress::Progress;
use crate::report::{self, Record, RunStatus};
use crate::targets::Target;

/// Bytes in a MiB.
const MIB: f64 = 1024.0 * 1024.0;

/// Every run goes to the JSON lines; the page and the chart show the median runs.
pub(crate) fn write_outputs(
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

/// Runs one scenario on one relay, start to stop, and records it.
pub(crate) fn run_one(
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
        r.status = RunStatus::Skipped;
        r.detail = Some(why);
        r
    };
    if let Scenario::Web { ws, .. } = scenario {
        if let Some(why) = target.no_web_door() {
            return skip(record, why.into());
        }
        record.receivers = Some(if *ws { "websocket" } else { "tcp" }.into());
    }
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
    let receivers = match &record.receivers {
        Some(r) => format!("-{r}"),
        None => String::new(),
    };
    let log = cli.out.join("logs").join(format!(
        "{id}-{}{receivers}.log",
        target.name.replace('/', "-")
    ));
    let web = matches!(scenario, Scenario::Web { .. });
    let mut running = match target.start(Some(&log), web) {
        Ok(r) => r,
        Err(e) => {
            record.status = RunStatus::Failed;
            record.detail = Some(format!("could not start: {e}"));
            return record;
        }
    };
    let addrs = running.addrs();
    let meter = running.meter();
    match scenario {
        Scenario::Room { spec, .. } | Scenario::Web { spec, .. } => {
            let ws = matches!(scenario, Scenario::Web { ws: true, .. });
            let spec = &RoomSpec {
                tls: tls.filter(|_| target.is_tls()).cloned(),
                web: running.web_addr().filter(|_| ws),
                ..spec.clone()
            };
            record.clients = spec.clients;
            record.senders = spec.senders;
            record.size = spec.size;
            record.messages = spec.messages;
            let expected = spec.expected_bytes();
            let label = match &record.receivers {
                Some(r) => format!("{id} on {}, {r} receivers", target.name),
                None => format!("{id} on {}", target.name),
            };
            progress.start_run(&label, Some(expected));
            let outcome = if ws && spec.web.is_none() {
                RoomOutcome::failed("the server opened no WebSocket door".into())
            } else {
                load::run_room(&addrs, spec, meter, &|bytes| progress.update(bytes))
            };
            fill_room(&mut record, spec, &outcome);
            if let Some((_, hwm)) = meter.and_then(procstat::Meter::memory_kib) {
                record.peak_rss_mib = Some(hwm as f64 / 1024.0);
            }
        }
        Scenario::Scale { clients, idle } => {
            progress.start_run(&format!("{id} on {}", target.name), None);
            let o = load::run_scale(
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
        if record.status == RunStatus::Ok {
            record.status = RunStatus::Failed;
        }
    }
    // `running` drops here: the process is killed and reaped, or the relay thread joined.
    record
}

pub(crate) fn set_status(record: &mut Record, status: &Status) {
    match status {
        Status::Ok => record.status = RunStatus::Ok,
        Status::Failed(e) => {
            record.status = RunStatus::Failed;
            record.detail = Some(e.clone());
        }
        Status::Stalled(e) => {
            record.status = RunStatus::Stalled;
            record.detail = Some(e.clone());
        }
    }
}

pub(crate) fn fill_room(record: &mut Record, spec: &RoomSpec, o: &RoomOutcome) {
    set_status(record, &o.status);
    record.verified = o.status == Status::Ok;
    record.secs = Some(o.secs);
    record.delivered_mib = Some(o.pattern_bytes as f64 / MIB);
    if spec.senders > 0 {
        record.deliveries_per_sec = Some((o.pattern_bytes / spec.size as u64) as f64 / o.secs);
        record.mib_per_sec = Some(o.pattern_bytes as f64 / MIB / o.secs);
    }
    if spec.probe.is_some() {
        let us = |ns: u64| ns as f64 / 1000.0;
        record.latency_samples = Some(o.steady_ns.len());
        record.probes_sent = Some(o.probes_sent);
        if let Some([p50, p99, p999, max]) = o.steady_ns.summary() {
            record.p50_us = Some(us(p50));
            record.p99_us = Some(us(p99));
            record.p999_us = Some(us(p999));
            record.max_us = Some(us(max));
        }
        if let Some(steady) = spec.steady() {
            record.warmup_ms = Some(steady.warmup.as_secs_f64() * 1000.0);
            record.steady_window_secs = o.steady_secs;
            record.whole_run_samples = Some(o.latencies_ns.len());
            if let Some([_, p99, _, max]) = o.latencies_ns.summary() {
                record.whole_run_p99_us = Some(us(p99));
                record.whole_run_max_us = Some(us(max));
                if o.steady_ns.len() == 0 && record.status == RunStatus::Ok {
                    record.detail = Some(format!(
                        "no probe in the steady window: the background ended before the \
                         {:.0} ms warm-up did (--warmup-ms)",
                        steady.warmup.as_secs_f64() * 1000.0
                    ));
                }
            }
        }
    }
    record.slow_reader_cut = o.slow_cut;
    record.connect_secs = Some(o.connect_secs);
    record.server_cpu_secs = o.server_cpu;
    record.tool_cpu_secs = o.tool_cpu;
}
