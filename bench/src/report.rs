//! Results: one [`Record`] per run, printed as tables, written as JSON lines, a Markdown page and
//! an SVG chart.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use comfy_table::{presets, CellAlignment, Table};
use plotters::prelude::*;
use serde::Serialize;

/// How a run ended, written as `ok`, `FAILED`, `stalled` or `skipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub(crate) enum RunStatus {
    /// Measured, and every byte verified.
    #[default]
    #[serde(rename = "ok")]
    Ok,
    /// Something was lost, damaged or late, or the relay could not start or died.
    #[serde(rename = "FAILED")]
    Failed,
    /// The relay stopped relaying for the stall time.
    #[serde(rename = "stalled")]
    Stalled,
    /// Not run here (a limit this machine or relay cannot meet).
    #[serde(rename = "skipped")]
    Skipped,
}

impl RunStatus {
    /// Its word in tables and JSON.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Failed => "FAILED",
            RunStatus::Stalled => "stalled",
            RunStatus::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One run of one scenario on one relay. Fields a scenario does not measure stay `None`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Record {
    /// `fanout-64`, `fanout-8k`, `latency-light`, `latency-loaded`, `scale-1000`, ...
    pub(crate) scenario: String,
    /// `server/polling`, `server/select`, `ncat`, `ceiling`.
    pub(crate) target: String,
    /// The web scenario: `tcp` or `websocket`, what the receivers (every client but the senders
    /// and the probe sender) were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) receivers: Option<String>,
    /// How the run ended.
    pub(crate) status: RunStatus,
    /// Why it failed, stalled or was skipped.
    pub(crate) detail: Option<String>,
    pub(crate) clients: usize,
    pub(crate) senders: usize,
    pub(crate) size: usize,
    pub(crate) messages: usize,
    /// The measured window, in seconds.
    pub(crate) secs: Option<f64>,
    /// Messages arriving at receivers per second (pattern traffic).
    pub(crate) deliveries_per_sec: Option<f64>,
    pub(crate) mib_per_sec: Option<f64>,
    pub(crate) delivered_mib: Option<f64>,
    /// Every receiver got every byte, complete and in order (checked byte-wise).
    pub(crate) verified: bool,
    /// Latency samples behind the percentiles: under a background load, those of the steady
    /// window (probes sent after the warm-up and before any reader had all of one sender's
    /// bytes).
    pub(crate) latency_samples: Option<u64>,
    /// Probe messages sent (each should reach every other client).
    pub(crate) probes_sent: Option<u64>,
    pub(crate) p50_us: Option<f64>,
    pub(crate) p99_us: Option<f64>,
    pub(crate) p999_us: Option<f64>,
    pub(crate) max_us: Option<f64>,
    /// Under a background load: the warm-up left out of the percentiles above, in milliseconds,
    /// and how long the steady window after it lasted, in seconds.
    pub(crate) warmup_ms: Option<f64>,
    pub(crate) steady_window_secs: Option<f64>,
    /// Under a background load: every probe's samples, warm-up and end included.
    pub(crate) whole_run_samples: Option<u64>,
    pub(crate) whole_run_p99_us: Option<f64>,
    pub(crate) whole_run_max_us: Option<f64>,
    /// Connecting and synchronising every client, in seconds.
    pub(crate) connect_secs: Option<f64>,
    /// Clients connected and synchronised per second.
    pub(crate) connects_per_sec: Option<f64>,
    /// Clients that received the final message after idling (scale).
    pub(crate) served: Option<usize>,
    pub(crate) rss_mib: Option<f64>,
    pub(crate) peak_rss_mib: Option<f64>,
    /// Relay CPU over the idle window, in milliseconds (scale).
    pub(crate) idle_cpu_ms: Option<f64>,
    pub(crate) idle_secs: Option<f64>,
    /// Whether the relay closed the slow reader's connection (slow reader).
    pub(crate) slow_reader_cut: Option<bool>,
    /// The relay's CPU time over the window.
    pub(crate) server_cpu_secs: Option<f64>,
    /// The tool's own CPU time over the window.
    pub(crate) tool_cpu_secs: Option<f64>,
    /// For a median of repeated runs: every run's headline figure, in run order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) runs: Option<String>,
}

impl Record {
    fn family(&self) -> &str {
        self.scenario.split('-').next().unwrap_or_default()
    }

    /// Its relay, and in the web scenario what its receivers were: `server/polling (websocket)`.
    fn label(&self) -> String {
        match &self.receivers {
            Some(r) => format!("{} ({r})", self.target),
            None => self.target.clone(),
        }
    }

    /// One line for the progress output.
    pub(crate) fn summary(&self) -> String {
        let mut s = format!(
            "{:<16} {:<15} {:<7}",
            self.scenario, self.target, self.status
        );
        let cols = columns(self);
        for (h, v) in cols.iter().skip(2).take(5) {
            let _ = write!(s, " {h} {v};");
        }
        if let Some(d) = &self.detail {
            let _ = write!(s, " ({d})");
        }
        s
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn big(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 1e6 => format!("{:.1} M", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.1} k", v / 1e3),
        Some(v) => format!("{v:.0}"),
    }
}

/// The columns shown for a record's scenario family, as (header, value).
fn columns(r: &Record) -> Vec<(&'static str, String)> {
    let mut c = vec![
        ("target", r.target.clone()),
        ("status", r.status.to_string()),
    ];
    let ok = r.status == RunStatus::Ok;
    let shown = |v: Option<f64>| if ok { v } else { None };
    match r.family() {
        "fanout" => {
            c.push(("deliveries/s", big(shown(r.deliveries_per_sec))));
            c.push(("MiB/s", opt(shown(r.mib_per_sec), 0)));
            c.push(("secs", opt(r.secs, 2)));
            c.push(("verified", if r.verified { "yes" } else { "no" }.into()));
            c.push(("peak RSS MiB", opt(r.peak_rss_mib, 1)));
        }
        "web" => {
            c.push((
                "receivers",
                r.receivers.clone().unwrap_or_else(|| "-".into()),
            ));
            c.push(("deliveries/s", big(shown(r.deliveries_per_sec))));
            c.push(("p99 µs", opt(shown(r.p99_us), 0)));
            c.push(("p50 µs", opt(shown(r.p50_us), 0)));
            c.push(("MiB/s", opt(shown(r.mib_per_sec), 0)));
            latency_tail(&mut c, r, ok);
            c.push(("secs", opt(r.secs, 2)));
            c.push(("verified", if r.verified { "yes" } else { "no" }.into()));
            c.push(("peak RSS MiB", opt(r.peak_rss_mib, 1)));
        }
        "latency" => {
            c.push(("p50 µs", opt(shown(r.p50_us), 0)));
            c.push(("p99 µs", opt(shown(r.p99_us), 0)));
            c.push(("bg deliveries/s", big(shown(r.deliveries_per_sec))));
            latency_tail(&mut c, r, ok);
        }
        "scale" => {
            c.push(("clients", r.clients.to_string()));
            c.push(("connects/s", big(r.connects_per_sec)));
            c.push(("RSS MiB", opt(r.rss_mib, 1)));
            c.push(("peak RSS MiB", opt(r.peak_rss_mib, 1)));
            c.push((
                "idle CPU ms",
                match (r.idle_cpu_ms, r.idle_secs) {
                    (Some(ms), Some(s)) => format!("{ms:.0} in {s:.1} s"),
                    _ => "-".into(),
                },
            ));
            c.push(("served", r.served.map_or("-".into(), |n| n.to_string())));
        }
        _ => {
            c.push(("delivered MiB", opt(r.delivered_mib, 0)));
            c.push(("MiB/s", opt(shown(r.mib_per_sec), 0)));
            c.push(("peak RSS MiB", opt(r.peak_rss_mib, 1)));
            c.push((
                "slow reader cut",
                r.slow_reader_cut
                    .map_or("-".into(), |b| if b { "yes" } else { "no" }.into()),
            ));
            c.push(("secs", opt(r.secs, 2)));
        }
    }
    c.push(("server CPU s", opt(r.server_cpu_secs, 2)));
    c.push(("tool CPU s", opt(r.tool_cpu_secs, 2)));
    c
}

/// The probe columns after p50 and p99, for the runs that have probes (`ok`: the run's
/// figures may be shown).
fn latency_tail(c: &mut Vec<(&'static str, String)>, r: &Record, ok: bool) {
    let shown = |v: Option<f64>| if ok { v } else { None };
    c.push(("p99.9 µs", opt(shown(r.p999_us), 0)));
    c.push(("max µs", opt(shown(r.max_us), 0)));
    c.push((
        "samples",
        r.latency_samples.map_or("-".into(), |n| n.to_string()),
    ));
    c.push(("window s", opt(r.steady_window_secs, 2)));
    c.push(("whole-run p99 µs", opt(shown(r.whole_run_p99_us), 0)));
}

/// The figure repeated runs are ranked by: throughput for fan-outs, p99 for latency; in the web
/// scenario throughput when there is any (the run's p99 beside it), else p99.
fn headline(r: &Record) -> Option<(f64, String)> {
    match r.family() {
        "fanout" => r.deliveries_per_sec.map(|v| (v, big(Some(v)))),
        "latency" => r.p99_us.map(|v| (v, format!("p99 {v:.0} µs"))),
        "web" => match (r.deliveries_per_sec, r.p99_us) {
            (Some(v), Some(p99)) => Some((v, format!("{} p99 {p99:.0} µs", big(Some(v))))),
            (Some(v), None) => Some((v, big(Some(v)))),
            (None, Some(p99)) => Some((p99, format!("p99 {p99:.0} µs"))),
            (None, None) => None,
        },
        _ => None,
    }
}

/// One record per scenario and relay (and receivers, in the web scenario): a failed run if any
/// failed (lost data must show), else the median run by its headline figure, annotated with
/// every run's figure.
pub(crate) fn medians(records: &[Record]) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut seen: Vec<(&str, &str, Option<&str>)> = Vec::new();
    for r in records {
        let key = (
            r.scenario.as_str(),
            r.target.as_str(),
            r.receivers.as_deref(),
        );
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let runs: Vec<&Record> = records
            .iter()
            .filter(|o| {
                o.scenario == r.scenario && o.target == r.target && o.receivers == r.receivers
            })
            .collect();
        if runs.len() == 1 {
            out.push(r.clone());
            continue;
        }
        if let Some(bad) = runs.iter().find(|o| o.status != RunStatus::Ok) {
            let mut shown = (*bad).clone();
            shown.runs = Some(format!("{} runs, at least one not ok", runs.len()));
            out.push(shown);
            continue;
        }
        let mut ranked: Vec<(f64, String, &Record)> = runs
            .iter()
            .filter_map(|o| headline(o).map(|(v, text)| (v, text, *o)))
            .collect();
        if ranked.len() != runs.len() {
            out.push(r.clone());
            continue;
        }
        let all = ranked
            .iter()
            .map(|(_, text, _)| text.clone())
            .collect::<Vec<_>>()
            .join(", ");
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut shown = ranked[ranked.len() / 2].2.clone();
        shown.runs = Some(format!("median of {} runs: {all}", runs.len()));
        out.push(shown);
    }
    out
}

/// The lines under a table: why a run failed, stalled or was skipped, and repeated runs' spread.
fn notes<'a>(rows: &[&'a Record]) -> Vec<(String, &'a str)> {
    rows.iter()
        .flat_map(|r| {
            [r.detail.as_deref(), r.runs.as_deref()]
                .into_iter()
                .flatten()
                .map(|n| (r.label(), n))
        })
        .collect()
}

/// Records grouped by scenario, in first-seen order.
fn groups(records: &[Record]) -> Vec<(&str, Vec<&Record>)> {
    let mut out: Vec<(&str, Vec<&Record>)> = Vec::new();
    for r in records {
        match out.iter_mut().find(|(s, _)| *s == r.scenario) {
            Some((_, v)) => v.push(r),
            None => out.push((&r.scenario, vec![r])),
        }
    }
    out
}

/// A plain-text table per scenario, for the terminal.
pub(crate) fn text_tables(records: &[Record]) -> String {
    let mut out = String::new();
    for (scenario, rows) in groups(records) {
        let _ = writeln!(out, "\n{scenario}");
        for line in table(&rows, presets::NOTHING).lines() {
            let _ = writeln!(out, " {}", line.trim_end());
        }
        for (target, note) in notes(&rows) {
            let _ = writeln!(out, "  {target}: {note}");
        }
    }
    out
}

/// The rows' columns as a table in `preset`'s style: names and status left, figures right.
fn table(rows: &[&Record], preset: &str) -> Table {
    let cells: Vec<Vec<(&str, String)>> = rows.iter().map(|r| columns(r)).collect();
    let mut t = Table::new();
    t.load_preset(preset);
    t.set_header(cells[0].iter().map(|(h, _)| *h));
    for row in &cells {
        t.add_row(row.iter().map(|(_, v)| v.as_str()));
    }
    for column in t.column_iter_mut().skip(2) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    t
}

/// The Markdown page: a header, the targets check, then a table per scenario.
pub(crate) fn markdown(records: &[Record], header: &str, checks: &[Check]) -> String {
    let mut out = format!("# chat-bench results\n\n{header}\n");
    if !checks.is_empty() {
        out.push_str("\n## Targets (measured, not asserted)\n\n| target | measured | verdict |\n|---|---|---|\n");
        for c in checks {
            let _ = writeln!(out, "| {} | {} | {} |", c.goal, c.measured, c.verdict);
        }
    }
    for (scenario, rows) in groups(records) {
        let _ = writeln!(out, "\n## {scenario}\n");
        let _ = writeln!(out, "{}", table(&rows, presets::ASCII_MARKDOWN));
        let notes = notes(&rows);
        if !notes.is_empty() {
            out.push('\n');
        }
        for (target, note) in notes {
            let _ = writeln!(out, "- {target}: {note}");
        }
    }
    out
}

/// One JSON object per line.
pub(crate) fn json_lines(records: &[Record]) -> io::Result<String> {
    let mut out = String::new();
    for r in records {
        out.push_str(&serde_json::to_string(r)?);
        out.push('\n');
    }
    Ok(out)
}

/// One of the targets, checked against the results (never asserted).
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub(crate) goal: String,
    pub(crate) measured: String,
    /// `met`, `MISSED` or `not measured`.
    pub(crate) verdict: String,
}

fn find<'a>(records: &'a [Record], scenario: &str, target: &str) -> Option<&'a Record> {
    records
        .iter()
        .find(|r| r.scenario == scenario && r.target == target && r.status == RunStatus::Ok)
}

/// `figure` of `target` over the same figure of `base` in `scenario`, when both ran ok.
fn ratio(
    records: &[Record],
    scenario: &str,
    target: &str,
    base: &str,
    figure: fn(&Record) -> Option<f64>,
) -> Option<f64> {
    let (a, b) = (
        find(records, scenario, target)?,
        find(records, scenario, base)?,
    );
    Some(figure(a).unwrap_or(0.0) / figure(b).unwrap_or(1.0))
}

fn verdict(ok: bool) -> String {
    if ok { "met" } else { "MISSED" }.into()
}

/// Compares our servers' results with the targets.
pub(crate) fn checks(records: &[Record]) -> Vec<Check> {
    let mut out = Vec::new();
    let mut ours: Vec<&str> = records
        .iter()
        .filter(|r| r.target.starts_with("server/"))
        .map(|r| r.target.as_str())
        .collect();
    ours.dedup();
    ours.sort_unstable();
    ours.dedup();
    for t in ours {
        if let Some(plain) = t.strip_suffix("+tls") {
            // The targets are for plain TCP; a TLS run is compared with its plain twin.
            for (scenario, what) in [("fanout-64", "64 B"), ("fanout-8k", "8 KiB")] {
                if let Some(x) = ratio(records, scenario, t, plain, |r| r.deliveries_per_sec) {
                    out.push(Check {
                        goal: format!("{t}: {what} fan-out deliveries/s vs {plain}"),
                        measured: format!("{x:.2}x"),
                        verdict: "info".into(),
                    });
                }
            }
            continue;
        }
        out.extend(web_checks(records, t));
        if let Some(x) = ratio(records, "fanout-64", t, "ncat", |r| r.deliveries_per_sec) {
            out.push(Check {
                goal: format!("{t}: 64 B fan-out >= 3x ncat deliveries/s"),
                measured: format!("{x:.2}x"),
                verdict: verdict(x >= 3.0),
            });
        }
        if let Some(x) = ratio(records, "fanout-8k", t, "ncat", |r| r.deliveries_per_sec) {
            out.push(Check {
                goal: format!("{t}: 8 KiB fan-out >= 3x ncat deliveries/s"),
                measured: format!("{x:.2}x"),
                verdict: verdict(x >= 3.0),
            });
        }
        let loaded = |target: &str| find(records, "latency-loaded", target);
        let loaded_p99 = |target: &str| loaded(target).and_then(|r| r.p99_us);
        if let (Some(ours), Some(theirs)) = (loaded_p99(t), loaded_p99("ncat")) {
            let whole = |target: &str| opt(loaded(target).and_then(|r| r.whole_run_p99_us), 0);
            out.push(Check {
                goal: format!("{t}: latency p99 under a saturating fan-out <= ncat's"),
                measured: format!(
                    "{ours:.0} µs vs {theirs:.0} µs (whole run, start included: {} vs {} µs)",
                    whole(t),
                    whole("ncat")
                ),
                verdict: verdict(ours <= theirs),
            });
        }
        if let Some(x) = ratio(records, "fanout-8k", t, "ceiling", |r| r.mib_per_sec) {
            out.push(Check {
                goal: format!("{t}: 8 KiB fan-out >= 0.8x ceiling MiB/s"),
                measured: format!("{x:.2}x"),
                verdict: verdict(x >= 0.8),
            });
        }
        if let Some(p99) = find(records, "latency-light", t).and_then(|r| r.p99_us) {
            out.push(Check {
                goal: format!("{t}: latency p99 < 1 ms, 100 clients, light load"),
                measured: format!("{p99:.0} µs"),
                verdict: verdict(p99 < 1000.0),
            });
        }
        if let Some(r) = records
            .iter()
            .filter(|r| {
                r.scenario.starts_with("scale-") && r.target == t && r.status == RunStatus::Ok
            })
            .max_by_key(|r| r.clients)
        {
            let rss = r.rss_mib.unwrap_or(f64::MAX);
            let cpu = r.idle_cpu_ms.unwrap_or(f64::MAX);
            out.push(Check {
                goal: format!("{t}: {} idle clients, RSS < 64 MiB, idle CPU 0", r.clients),
                measured: format!(
                    "{rss:.1} MiB, {cpu:.0} ms CPU in {:.1} s",
                    r.idle_secs.unwrap_or(0.0)
                ),
                verdict: verdict(rss < 64.0 && cpu == 0.0),
            });
        }
        if let Some(r) = records
            .iter()
            .find(|r| r.scenario == "slow-reader" && r.target == t)
        {
            let peak = r.peak_rss_mib.unwrap_or(f64::MAX);
            out.push(Check {
                goal: format!("{t}: slow reader: peak RSS < 128 MiB, the others get everything"),
                measured: format!("{peak:.1} MiB, {}", r.status),
                verdict: verdict(peak < 128.0 && r.status == RunStatus::Ok),
            });
        }
    }
    out
}

/// The web scenario on `target`: its WebSocket receivers against its TCP receivers, as
/// information (the issue sets no target for them).
fn web_checks(records: &[Record], target: &str) -> Vec<Check> {
    let run = |scenario: &str, receivers: &str| {
        records.iter().find(|r| {
            r.scenario == scenario
                && r.target == target
                && r.receivers.as_deref() == Some(receivers)
                && r.status == RunStatus::Ok
        })
    };
    let mut out = Vec::new();
    for (scenario, what) in [("web-64", "64 B"), ("web-8k", "8 KiB")] {
        let (Some(tcp), Some(ws)) = (run(scenario, "tcp"), run(scenario, "websocket")) else {
            continue;
        };
        if let (Some(a), Some(b)) = (ws.deliveries_per_sec, tcp.deliveries_per_sec) {
            out.push(Check {
                goal: format!(
                    "{target}: {what} fan-out deliveries/s, WebSocket receivers vs TCP receivers"
                ),
                measured: format!("{:.2}x", a / b),
                verdict: "info".into(),
            });
        }
    }
    for (scenario, what) in [
        ("web-64", "under a 64 B fan-out"),
        ("web-8k", "under an 8 KiB fan-out"),
        ("web-latency", "light load"),
    ] {
        let (Some(tcp), Some(ws)) = (run(scenario, "tcp"), run(scenario, "websocket")) else {
            continue;
        };
        if let (Some(a), Some(b)) = (ws.p99_us, tcp.p99_us) {
            out.push(Check {
                goal: format!("{target}: latency p99 {what}, WebSocket receivers vs TCP receivers"),
                measured: format!("{a:.0} µs vs {b:.0} µs"),
                verdict: "info".into(),
            });
        }
    }
    out
}

/// Bar charts of 64 B fan-out deliveries/s, 8 KiB fan-out MiB/s and light-load p99 per relay.
pub(crate) fn svg_chart(records: &[Record], path: &Path, title: &str) -> Result<(), String> {
    type Value = fn(&Record) -> Option<f64>;
    let panels: [(&str, &str, Value); 3] = [
        ("fanout-64", "64 B fan-out: M deliveries/s", |r| {
            r.deliveries_per_sec.map(|v| v / 1e6)
        }),
        ("fanout-8k", "8 KiB fan-out: MiB/s", |r| r.mib_per_sec),
        ("latency-light", "latency p99 (light load): µs", |r| {
            r.p99_us
        }),
    ];
    let root = SVGBackend::new(path, (1200, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", 18))
        .map_err(|e| e.to_string())?;
    let areas = root.split_evenly((1, panels.len()));
    for ((scenario, caption, value), area) in panels.iter().zip(areas.iter()) {
        let bars: Vec<(String, f64)> = records
            .iter()
            // The cluster scenario's runs chart like the standard ones, beside them.
            .filter(|r| {
                r.scenario.strip_suffix("-cluster").unwrap_or(&r.scenario) == *scenario
                    && r.status == RunStatus::Ok
            })
            // "server/polling" is "polling" under the bar: the labels must not run together. In
            // the cluster scenario it is the single node the clusters are compared with.
            .filter_map(|r| {
                let label = match r.target.strip_prefix("server/") {
                    Some(_) if r.scenario.ends_with("-cluster") => "1 node alone".to_string(),
                    Some(backend) => backend.to_string(),
                    None => r.target.clone(),
                };
                Some((label, value(r)?))
            })
            .collect();
        let top = bars.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(1e-9) * 1.15;
        let n = bars.len().max(1);
        let mut chart = ChartBuilder::on(area)
            .caption(*caption, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            // A segmented 0..k has k + 1 segments: one per bar, no empty slot at the end.
            .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..top)
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = bars.iter().map(|(t, _)| t.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(BLUE.mix(0.6).filled())
                    .margin(14)
                    .data(bars.iter().enumerate().map(|(i, (_, v))| (i, *v))),
            )
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                Text::new(
                    format!("{v:.1}"),
                    (SegmentValue::CenterOf(i), *v),
                    ("sans-serif", 13).into_font().color(&BLACK),
                )
            }))
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(scenario: &str, target: &str, dps: f64, mib: f64, p99: Option<f64>) -> Record {
        Record {
            scenario: scenario.into(),
            target: target.into(),
            status: RunStatus::Ok,
            deliveries_per_sec: Some(dps),
            mib_per_sec: Some(mib),
            p99_us: p99,
            ..Record::default()
        }
    }

    #[test]
    fn repeated_runs_show_the_median_and_a_failure_wins() {
        let runs = vec![
            rec("fanout-64", "ncat", 30e6, 0.0, None),
            rec("fanout-64", "server/polling", 70e6, 0.0, None),
            rec("fanout-64", "ncat", 10e6, 0.0, None),
            rec("fanout-64", "server/polling", 90e6, 0.0, None),
            rec("fanout-64", "ncat", 20e6, 0.0, None),
            Record {
                status: RunStatus::Failed,
                detail: Some("byte 7 of sender 2 differs".into()),
                ..rec("fanout-64", "server/polling", 0.0, 0.0, None)
            },
        ];
        let shown = medians(&runs);
        assert_eq!(shown.len(), 2);
        let ncat = shown.iter().find(|r| r.target == "ncat").unwrap();
        assert_eq!(ncat.deliveries_per_sec, Some(20e6));
        assert_eq!(
            ncat.runs.as_deref(),
            Some("median of 3 runs: 30.0 M, 10.0 M, 20.0 M")
        );
        let ours = shown.iter().find(|r| r.target == "server/polling").unwrap();
        assert_eq!(
            ours.status,
            RunStatus::Failed,
            "a failed run must not hide behind a median"
        );
    }

    #[test]
    fn checks_compare_ratios_with_the_targets() {
        let records = vec![
            rec("fanout-64", "server/polling", 90e6, 5000.0, None),
            rec("fanout-64", "ncat", 32e6, 1900.0, None),
            rec("fanout-8k", "server/polling", 900e3, 7000.0, None),
            rec("fanout-8k", "ceiling", 1e6, 10000.0, None),
            rec("latency-light", "server/polling", 0.0, 0.0, Some(300.0)),
            rec("fanout-8k", "ncat", 250e3, 2000.0, None),
            rec("latency-loaded", "server/polling", 0.0, 0.0, Some(20_000.0)),
            rec("latency-loaded", "ncat", 0.0, 0.0, Some(26_000.0)),
        ];
        let c = checks(&records);
        let by = |goal: &str| {
            c.iter()
                .find(|c| c.goal.contains(goal))
                .expect(goal)
                .verdict
                .clone()
        };
        assert_eq!(by("64 B"), "MISSED"); // 2.81x
        assert_eq!(by("8 KiB fan-out >= 0.8x"), "MISSED"); // 0.70x
        assert_eq!(by("8 KiB fan-out >= 3x"), "met"); // 3.6x
        assert_eq!(by("light load"), "met");
        assert_eq!(by("saturating"), "met"); // 20 ms against 26 ms
        let md = markdown(&records, "header", &c);
        assert!(md.contains("## fanout-64"), "{md}");
        // A Markdown row of cells, whatever padding lines the columns up.
        let row =
            |line: &str| -> Vec<String> { line.split('|').map(|c| c.trim().to_string()).collect() };
        assert!(
            md.lines().map(row).any(|cells| cells
                .starts_with(&["", "server/polling", "ok", "90.0 M"].map(String::from))),
            "{md}"
        );
        assert_eq!(json_lines(&records).unwrap().lines().count(), records.len());
        let table = text_tables(&records);
        assert!(table.contains("latency-light"));
    }

    #[test]
    fn failed_runs_show_no_numbers() {
        let mut r = rec("fanout-64", "ncat", 32e6, 1900.0, None);
        r.status = RunStatus::Failed;
        r.detail = Some("reader 3: byte lost".into());
        let cols = columns(&r);
        assert!(cols.iter().any(|(h, v)| *h == "deliveries/s" && v == "-"));
        assert!(text_tables(&[r]).contains("byte lost"));
    }
}
