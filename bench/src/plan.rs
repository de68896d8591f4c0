//! What to run: the scenarios, sized from the command line, and the cluster targets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::check;
use crate::cli::{Cli, Which};
use crate::load::{Probe, RoomSpec, Steady};
use crate::targets::{self, Kind, Target};

/// One scenario, fully sized.
#[derive(Debug, Clone)]
pub(crate) enum Scenario {
    /// A room measured by [`load::run_room`].
    Room {
        id: String,
        spec: RoomSpec,
        /// Whether the ceiling relay runs it too.
        ceiling: bool,
        /// A cluster scenario: it runs on the cluster targets and one node alone, and only there.
        cluster: bool,
    },
    /// Idle clients measured by [`load::run_scale`].
    Scale { clients: usize, idle: Duration },
    /// A room on our server started with its WebSocket door, measured by
    /// [`crate::load::run_room`]: with `ws`, every client past the senders and the probe sender
    /// is a web client; without, the same room all TCP. Each round runs both, one after the
    /// other ([`rounds_of`]).
    Web {
        id: String,
        spec: RoomSpec,
        ws: bool,
    },
}

impl Scenario {
    /// Whether this scenario's runs are repeated (`--repeat`): the throughput and latency ones,
    /// whose single runs swing with whatever else the two cores are doing.
    pub(crate) fn repeats(&self) -> bool {
        match self {
            Scenario::Room { id, .. } => id.starts_with("fanout") || id.starts_with("latency"),
            Scenario::Web { .. } => true,
            Scenario::Scale { .. } => false,
        }
    }

    pub(crate) fn id(&self) -> String {
        match self {
            Scenario::Room { id, .. } | Scenario::Web { id, .. } => id.clone(),
            Scenario::Scale { clients, .. } => format!("scale-{clients}"),
        }
    }
}

/// What `target` runs of `scenario` in round `round` (from 0): a web scenario twice on our plain
/// server (TCP receivers, then WebSocket receivers, so the two alternate like the relays do), and
/// once in all on a relay without a WebSocket door (recorded as skipped, with the reason); any
/// other scenario once.
pub(crate) fn rounds_of(scenario: &Scenario, target: &Target, round: u32) -> Vec<Scenario> {
    match scenario {
        Scenario::Web { id, spec, .. } => {
            if target.no_web_door().is_some() {
                return if round == 0 {
                    vec![scenario.clone()]
                } else {
                    Vec::new()
                };
            }
            [false, true]
                .map(|ws| Scenario::Web {
                    id: id.clone(),
                    spec: spec.clone(),
                    ws,
                })
                .to_vec()
        }
        _ => vec![scenario.clone()],
    }
}

/// The cluster scenario's targets, one per `--nodes` count.
pub(crate) fn cluster_targets(
    cli: &Cli,
    server: &Path,
    ours: &targets::Ours,
) -> Result<Vec<Target>, String> {
    if !ours.has("cluster") {
        return Err(format!(
            "{} was built without the `cluster` feature (its --version lists no +cluster: {})",
            server.display(),
            ours.version
        ));
    }
    let nats = cli
        .nats
        .clone()
        .or_else(|| std::env::var_os("NATS_SERVER").map(PathBuf::from))
        .or_else(|| targets::find_program("nats-server"))
        .ok_or(
            "the cluster scenario needs nats-server (apt-get install nats-server, or --nats PATH)",
        )?;
    let backend = ours.targets.first().and_then(|t| t.backend.clone());
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

/// The scenarios the command line asks for, sized.
pub(crate) fn scenarios(
    cli: &Cli,
    timeout: Duration,
    stall: Duration,
) -> Result<Vec<Scenario>, String> {
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
        web: None,
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
        out.push(Scenario::Room {
            id: "latency-light".into(),
            spec: light_load(cli, &base),
            ceiling: true,
            cluster: false,
        });
        out.push(Scenario::Room {
            id: "latency-loaded".into(),
            spec: RoomSpec {
                senders: background_senders(cli),
                size: 64,
                // 9 senders x 200,000 x 64 B: our server needs about 3 s, so the steady window
                // (0.5-1.5 s) lies well inside the load; ncat about 8 s.
                messages: if q { 5_000 } else { 200_000 },
                probe: background_probe(cli, Some(steady_window(cli))),
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
    if cli.scenarios.contains(&Which::Web) {
        out.extend(web_scenarios(cli, &base));
    }
    for s in &out {
        if let Scenario::Room { id, spec, .. } | Scenario::Web { id, spec, .. } = s {
            spec.check().map_err(|e| format!("{id}: {e}"))?;
        }
    }
    Ok(out)
}

/// The web scenario: the 64 B and 8 KiB fan-outs (sized as the standard ones) with a probe
/// sender beside the pattern senders, for deliveries/s and the latency under that load in one
/// run, and the light-load latency run. Each runs with TCP receivers and with WebSocket
/// receivers ([`rounds_of`]); the senders and the probe sender are TCP clients either way, so
/// of the 99 streams each sender's bytes go to, 89 go to web clients (100 clients, 10 senders).
pub(crate) fn web_scenarios(cli: &Cli, base: &RoomSpec) -> Vec<Scenario> {
    let q = cli.quick;
    let loaded = background_probe(cli, Some(steady_window(cli)));
    // The probe takes one of the pattern's 16 sender nibbles.
    let senders = cli.senders.min(check::MAX_PATTERN_SENDERS_WITH_PROBE);
    let web = |id: &str, spec: RoomSpec| Scenario::Web {
        id: id.into(),
        spec,
        ws: false,
    };
    vec![
        web(
            "web-64",
            RoomSpec {
                senders,
                size: 64,
                messages: cli.messages.unwrap_or(if q { 10_000 } else { 200_000 }),
                probe: loaded,
                ..base.clone()
            },
        ),
        web(
            "web-8k",
            RoomSpec {
                senders,
                size: 8192,
                messages: cli.messages_8k.unwrap_or(if q { 150 } else { 3_000 }),
                probe: loaded,
                ..base.clone()
            },
        ),
        web("web-latency", light_load(cli, base)),
    ]
}

/// The cluster scenario: the 64 B and 8 KiB fan-outs and both latency runs. NATS core has no
/// flow control, so a node cannot slow down senders on other nodes the way one relay slows its
/// own (by reading no faster than it writes): under a saturating load a node's readers fall
/// behind and are cut as slow consumers once 16 MiB waits for them. These runs are therefore
/// sized to send each reader less than that (bursts, not a sustained saturation).
pub(crate) fn cluster_scenarios(cli: &Cli, base: &RoomSpec) -> Vec<Scenario> {
    let q = cli.quick;
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
        room("latency-light-cluster", light_load(cli, base)),
        room(
            "latency-loaded-cluster",
            RoomSpec {
                senders: background_senders(cli),
                size: 64,
                // 9 senders x 25,000 x 64 B: 13.7 MiB for each reader.
                messages: if q { 5_000 } else { 25_000 },
                // Bursts of well under a second: no steady state to single out, so every probe
                // counts, as in the runs before the steady window.
                probe: background_probe(cli, None),
                ..base.clone()
            },
        ),
    ]
}

/// The probe alone in the room: `--probes` probes (3,000; 300 with `--quick`) at the probe
/// interval, for the light-load latency runs.
fn light_load(cli: &Cli, base: &RoomSpec) -> RoomSpec {
    RoomSpec {
        senders: 0,
        probe: Some(Probe {
            interval: probe_interval(cli),
            count: Some(cli.probes.unwrap_or(if cli.quick { 300 } else { 3_000 })),
            steady: None,
        }),
        ..base.clone()
    }
}

/// The probe beside a background load, until every reader has every pattern byte; with
/// `steady`, its percentiles cover that window only.
fn background_probe(cli: &Cli, steady: Option<Steady>) -> Option<Probe> {
    Some(Probe {
        interval: probe_interval(cli),
        count: None,
        steady,
    })
}

/// A loaded run's steady window: `--window-ms` (1 s) after `--warmup-ms` (500 ms, none with
/// `--quick`).
pub(crate) fn steady_window(cli: &Cli) -> Steady {
    let warmup = cli.warmup_ms.unwrap_or(if cli.quick { 0 } else { 500 });
    Steady {
        warmup: Duration::from_millis(warmup),
        window: Duration::from_millis(cli.window_ms.max(1)),
    }
}

/// The time between two probes (`--probe-interval-us`, at least 1 µs).
fn probe_interval(cli: &Cli) -> Duration {
    Duration::from_micros(cli.probe_interval_us.max(1))
}

/// Pattern senders behind the probe in a loaded latency run: one fewer than the fan-outs use
/// (and at most what leaves the probe its nibble), at least one.
fn background_senders(cli: &Cli) -> usize {
    cli.senders
        .min(check::MAX_PATTERN_SENDERS_WITH_PROBE)
        .saturating_sub(1)
        .max(1)
}
