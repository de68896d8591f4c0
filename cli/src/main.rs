//! `server <port>`: a TCP chat relay. Every chunk one client sends reaches every other client.
//!
//! This file runs the steps in order and maps every error to an exit code: parse the arguments
//! ([`args`]), run every check that needs no network, install the log subscriber ([`logging`]),
//! bind ([`listen`]), connect the cluster uplink ([`cluster`]), install the Ctrl-C / SIGTERM
//! handler ([`signals`]) and hand everything to `server_core::Relay`.

use std::io;
use std::process::ExitCode;

use server_core::{Backend, Config, Framing, LineOptions, Pace, Rate, Shutdown};
use tracing::{error, info, warn};

use crate::args::{compiled_backends, Args, BackendKind, FramingKind, Stop};

mod args;
mod cluster;
#[cfg(windows)]
mod console;
mod generate;
mod http;
mod limits;
mod listen;
mod logging;
mod notify;
mod reload;
mod security;
mod signals;

#[cfg(not(any(feature = "polling", feature = "select")))]
compile_error!(
    "the server needs at least one I/O backend: build with `--features polling`, \
     `--features select`, or the default features (both)"
);

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(Stop::Asked(help)) => {
            let _ = help.print();
            return ExitCode::SUCCESS;
        }
        Err(Stop::Mistake(text)) => {
            eprintln!("{text}");
            return ExitCode::FAILURE;
        }
        Err(Stop::Generate(kind)) => {
            return match generate::write(kind, args::command(), &mut io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("server: cannot write the generated file: {}", describe(&e));
                    ExitCode::FAILURE
                }
            };
        }
    };
    logging::init(&args);
    let outcome = match args.backend {
        #[cfg(feature = "polling")]
        BackendKind::Polling => serve(&args, backend_polling::PollingBackend::new),
        #[cfg(feature = "select")]
        BackendKind::Select => serve(&args, backend_select::SelectBackend::new),
        #[allow(unreachable_patterns)] // reachable only in builds without every backend
        kind => Err(format!(
            "this build has no {kind} backend (it has: {}); rebuild with `--features {kind}`",
            compiled_backends()
        )),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("server: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Everything from the checks to the end of the event loop. `Err` is the message for the
/// terminal.
fn serve<B: Backend>(args: &Args, make_backend: fn() -> io::Result<B>) -> Result<(), String> {
    // Everything that can fail without the network fails here, before the port is taken: the
    // cluster options, the TLS files, the backend.
    cluster::check(args.cluster())?;
    let (door, access) = args.security.door()?;
    let inherited = listen::inherited()?;
    let http = args.http.door(&args.security, inherited.http)?;
    let door = reload::SharedDoor::new(door);
    let backend = make_backend().map_err(|e| {
        format!(
            "cannot create the {} backend: {}",
            args.backend,
            describe(&e)
        )
    })?;
    let (listener, addr, how) = match inherited.chat {
        Some((listener, addr)) => {
            if addr.port() != args.port || args.bind.is_some() {
                warn!(
                    "serving the inherited socket {addr}; the port argument ({}) and --bind are \
                     not used",
                    args.port
                );
            }
            (listener, addr, "inherited; ")
        }
        None => {
            let (listener, addr) = listen::listen(args.bind, args.port)?;
            (listener, addr, "")
        }
    };
    let uplink = cluster::uplink(args.cluster(), backend.waker())?;
    let shutdown = Shutdown::new(backend.waker());
    signals::install(
        &shutdown,
        reload::reloader(
            args.security.clone(),
            door.clone(),
            args.http.reload(http.as_ref()),
        ),
    )?;

    let (name, pid) = (backend.name(), std::process::id());
    let families = listen::families(&listener, addr);
    info!(address = %addr, backend = name, pid, inherited = !how.is_empty(), "listening on {addr} ({how}{families}; backend {name}, pid {pid})");
    let mut config = config(args);
    if let (Some(http), None) = (&http, args.max_clients) {
        // The descriptor budget the default is sized from also holds the HTTP port's listener
        // and connections.
        let reserve = http.limits.max_connections + 1;
        config.max_clients = config.max_clients.saturating_sub(reserve).max(1);
    }
    let max_clients = config.client_limit(backend.capacity(), 1 + usize::from(http.is_some()));
    let write_timeout = config
        .write_timeout
        .map_or("off".to_string(), |t| format!("{} s", t.as_secs_f64()));
    info!(
        max_clients,
        max_pending = config.max_pending,
        "limits: {} clients, {} bytes pending per client, write timeout {write_timeout}, \
         drain {} s",
        max_clients,
        config.max_pending,
        config.drain_timeout.as_secs_f64()
    );
    args.security.log_startup(&access);
    let mut relay = server_core::Relay::new(config).door(listener, door);
    if let Some(http) = http {
        let (scheme, token) = args.http.describe();
        let (addr, max) = (http.addr, http.limits.max_connections);
        let how = if http.inherited { "inherited; " } else { "" };
        let web = args.http.web_paths();
        info!(address = %addr, inherited = http.inherited, "{scheme} on {addr}: /healthz /metrics /stats /clients{web} ({how}{token}; at most {max} connections)");
        relay = relay
            .service_door(http.listener, http.acceptor, http.service)
            .service_limits(http.limits);
    }
    if let Some(uplink) = uplink {
        relay = relay.uplink(uplink);
    }
    notify::ready(&format!("listening on {addr}; 0 clients"));
    let outcome = match relay.run(backend, &shutdown) {
        Ok(summary) => {
            info!("stopped: {summary}");
            notify::status(&format!(
                "stopped; {} clients served, {} connected at the stop",
                summary.accepted, summary.open_at_stop
            ));
            Ok(())
        }
        Err(e) => {
            error!(error = %e, "event loop failed");
            Err(format!("event loop failed: {}", describe(&e)))
        }
    };
    signals::stopped();
    outcome
}

/// The engine's settings from the options.
fn config(args: &Args) -> Config {
    Config {
        max_pending: args.max_pending,
        write_timeout: (!args.write_timeout.is_zero()).then_some(args.write_timeout),
        drain_timeout: args.drain_timeout,
        max_clients: limits::max_clients(args.max_clients),
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
        pace: Pace {
            budget: args.pace_budget,
            grace: args.lag_grace,
            ..Pace::default()
        },
        max_per_address: args
            .max_per_address
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        max_rate: args.max_rate.map(|rate| Rate {
            bytes_per_sec: rate as u64,
            burst: args.burst.unwrap_or((rate / 4).max(16 * 1024)) as u64,
        }),
        keepalive: (!args.keepalive.is_zero()).then_some(args.keepalive),
        send_buffer: (args.send_buffer > 0).then_some(args.send_buffer),
        idle_timeout: args.idle_timeout,
        ..Config::default()
    }
}

/// An OS error's words, for the user.
fn describe(e: &io::Error) -> String {
    server_core::error_words(e)
}
