//! `--http ADDR` and its options: the operator's window (`/healthz`, `/metrics`, `/stats`,
//! `/clients`) and the browsers' door (the chat page at `/`, WebSocket clients at `/ws`), a
//! service door in the same event loop as the chat port. Plain HTTP whatever the chat port
//! speaks, so health probes and scrapers need no client certificate; `--allow` and `--deny`
//! apply to it as to the chat port.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use relay_http::{BuildInfo, HttpOptions, HttpService, WebOptions, WsLimits};
use server_core::{Config, ServiceLimits};
use tracing::warn;

use crate::args::{parse_interval, parse_secs, parse_size};
use crate::describe;
use crate::listen::Passed;
use crate::reload::{HttpReload, SharedDoor};
use crate::security::Security;

/// The request head limit: past it, 431.
const MAX_HEAD: usize = 8 * 1024;

/// The options of the HTTP window.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct HttpArgs {
    /// Serve health, metrics and statistics over HTTP on ADDR (e.g. 127.0.0.1:8222; a bare port
    /// means 127.0.0.1, since only --http-token-file protects it): GET /healthz, /metrics
    /// (Prometheus), /stats and /clients (JSON); and a chat page at / whose WebSocket (/ws)
    /// joins the room. Off by default.
    #[arg(long, value_name = "ADDR", value_parser = parse_http_addr)]
    pub(crate) http: Option<SocketAddr>,

    /// With --http: require `Authorization: Bearer TOKEN` on the operator's paths but /healthz,
    /// TOKEN being this file's content (surrounding white space ignored; read again on SIGHUP).
    #[arg(long, value_name = "FILE")]
    http_token_file: Option<PathBuf>,

    /// With --http: most HTTP connections at once; more are answered 503 and closed.
    #[arg(long, value_name = "N", default_value = "64", value_parser = clap::value_parser!(u32).range(1..))]
    http_max_connections: u32,

    /// With --http: close a connection whose request head is not complete this long after its
    /// first byte (against slowloris).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_interval)]
    http_head_timeout: Duration,

    /// With --http: close a keep-alive connection idle this long.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_interval)]
    http_idle_timeout: Duration,

    /// With --http and --tls-cert: serve HTTPS with the chat port's certificate (never asking
    /// for client certificates, even with --tls-client-ca). Default: plain HTTP.
    #[arg(long)]
    http_tls: bool,

    /// With --http: no chat page and no WebSocket door (/ and /ws answer 404); only the
    /// operator's endpoints.
    #[arg(long)]
    no_web: bool,

    /// With --http: a web origin (e.g. https://chat.example.org) whose pages may open /ws
    /// besides the built-in page's own; repeat for more; `*` allows any. Clients that send no
    /// Origin (not browsers) are always let in.
    #[arg(long, value_name = "ORIGIN")]
    ws_origin: Vec<String>,

    /// With --http: most bytes in one message from a web client (fragments together); a larger
    /// one closes it with code 1009. At most 64KiB - 1, the engine's read buffer.
    #[arg(long, value_name = "BYTES", default_value = "65535", value_parser = parse_ws_max_message)]
    ws_max_message: usize,

    /// With --http: ping web clients this often, and cut one that sent nothing at all (no pong,
    /// no message) by the next ping as idle. 0: never ping.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    ws_ping: Duration,
}

/// `--ws-max-message`: a size that fits the engine's read buffer, with a byte kept for the
/// newline line mode adds.
fn parse_ws_max_message(text: &str) -> Result<usize, String> {
    let bytes = parse_size(text)?;
    let most = Config::default().read_buffer - 1;
    if bytes > most {
        return Err(format!("must be at most {most} bytes (64KiB - 1)"));
    }
    Ok(bytes)
}

/// The bearer token in `file`: its content without surrounding white space, one word of
/// printable ASCII. `Err` is the message for the terminal (or the reload's log line).
pub(crate) fn read_token(file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {}", file.display(), describe(&e)))?;
    let token = text.trim();
    if token.is_empty() || token.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(format!(
            "{}: the token must be one word of printable ASCII",
            file.display()
        ));
    }
    Ok(token.to_string())
}

/// A bare port (`8222`: on 127.0.0.1) or an address with a port (`0.0.0.0:8222`, `[::1]:8222`).
fn parse_http_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse().map_err(|_| {
        format!("{text:?} is not a port or an address with a port like 127.0.0.1:8222")
    })
}

/// The HTTP door, ready to add to the relay.
#[derive(Debug)]
pub(crate) struct HttpDoor {
    pub(crate) listener: TcpListener,
    pub(crate) addr: SocketAddr,
    /// Passed by a service manager rather than bound here.
    pub(crate) inherited: bool,
    pub(crate) acceptor: SharedDoor,
    pub(crate) service: HttpService,
    pub(crate) limits: ServiceLimits,
}

impl HttpArgs {
    /// Reads the token file, makes the door (access list, TLS) and binds the address; `None`
    /// without --http. `Err` is the message for the terminal.
    /// `inherited`: the socket a service manager passed for it, served instead of binding.
    pub(crate) fn door(
        &self,
        security: &Security,
        inherited: Option<Passed>,
    ) -> Result<Option<HttpDoor>, String> {
        let Some(addr) = self.http else {
            if let Some((_, passed)) = inherited {
                warn!(address = %passed, "an inherited socket named `http` ({passed}) is not served without --http");
            }
            return Ok(None);
        };
        let token = self
            .http_token_file
            .as_deref()
            .map(read_token)
            .transpose()?;
        let acceptor = SharedDoor::new(security.http_door(self.http_tls)?);
        let (listener, addr, inherited) = match inherited {
            Some((listener, passed)) => {
                if passed != addr {
                    warn!("serving the inherited socket {passed} for --http; {addr} is not used");
                }
                (listener, passed, true)
            }
            None => {
                let listener = crate::listen::bind_one(addr)
                    .map_err(|e| format!("cannot listen on {addr} for --http: {}", describe(&e)))?;
                let addr = listener.local_addr().unwrap_or(addr);
                (listener, addr, false)
            }
        };
        let service = HttpService::new(HttpOptions {
            token,
            max_head: MAX_HEAD,
            build: BuildInfo {
                version: env!("CARGO_PKG_VERSION"),
                features: crate::args::features(),
            },
            web: (!self.no_web).then(|| WebOptions {
                origins: self.ws_origin.clone(),
                tls: self.http_tls,
                limits: WsLimits {
                    max_message: self.ws_max_message,
                    ping_every: (!self.ws_ping.is_zero()).then_some(self.ws_ping),
                },
            }),
        });
        let limits = ServiceLimits {
            max_connections: self.http_max_connections as usize,
            request_timeout: self.http_head_timeout,
            idle_timeout: self.http_idle_timeout,
            max_input: 2 * MAX_HEAD,
        };
        Ok(Some(HttpDoor {
            listener,
            addr,
            inherited,
            acceptor,
            service,
            limits,
        }))
    }

    /// How the startup line describes the window: `http` or `https`, and its guard.
    pub(crate) fn describe(&self) -> (&'static str, &'static str) {
        let scheme = if self.http_tls { "https" } else { "http" };
        let token = match self.http_token_file {
            Some(_) => "a bearer token required but for /healthz",
            None => "no token",
        };
        (scheme, token)
    }

    /// The web side's paths for the startup line, or nothing with --no-web.
    pub(crate) fn web_paths(&self) -> &'static str {
        if self.no_web {
            ""
        } else {
            ", chat page / with WebSocket /ws"
        }
    }

    /// What SIGHUP rebuilds for this door: its acceptor, and its token read again.
    pub(crate) fn reload(&self, door: Option<&HttpDoor>) -> Option<HttpReload> {
        door.map(|d| HttpReload {
            tls: self.http_tls,
            door: d.acceptor.clone(),
            token: self
                .http_token_file
                .clone()
                .map(|file| (file, d.service.token_handle())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_is_on_loopback_and_an_address_is_taken_as_given() {
        assert_eq!(
            parse_http_addr("8222").unwrap(),
            "127.0.0.1:8222".parse().unwrap()
        );
        assert_eq!(
            parse_http_addr("[::1]:9").unwrap(),
            "[::1]:9".parse().unwrap()
        );
        assert!(parse_http_addr("localhost").is_err());
        assert!(parse_http_addr("70000").is_err());
    }
}
