#![forbid(unsafe_code)]
//! The operator's window (`server --http ADDR`): a [`Service`] that answers HTTP/1.0 and 1.1
//! requests from the engine's [`View`], inside the relay's own event loop.
//!
//! | path | answer |
//! |---|---|
//! | `/healthz` | `200 ok` while serving, `503 draining` once a stop began; never needs the token |
//! | `/metrics` | Prometheus text exposition (format 0.0.4) |
//! | `/stats` | the same facts as JSON, with the uptime and the configured limits |
//! | `/clients?limit=N` | one JSON object per client, the first N (default 100) |
//! | `/`, `/chat.js`, `/chat.css` | the chat page (with [`HttpOptions::web`]); never needs the token |
//! | `/ws` | a WebSocket upgrade: the client joins the room ([`ws`]); never needs the token |
//!
//! `GET` and `HEAD` on every path; another method is 405, an unknown path 404, a head over
//! [`HttpOptions::max_head`] 431, anything not HTTP/1.x 400. Keep-alive as the version and the
//! `Connection` header say; pipelined requests are answered in order. With a token, every path
//! but `/healthz` needs `Authorization: Bearer TOKEN` (else 401). The engine enforces the
//! timeouts and the connection cap ([`server_core::ServiceLimits`]).

pub mod render;
pub mod request;
pub mod web;
pub mod ws;

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use server_core::{Answer, Link, Service, Then, View};

pub use crate::web::WebOptions;
pub use crate::ws::{WsLimits, WsLink};

use crate::request::{parse, query_value, Parsed, Request};

/// `/clients` without `limit`.
pub const DEFAULT_CLIENTS_LIMIT: usize = 100;

/// One batch of answers stops past this many bytes; the engine asks again for the rest of the
/// pipelined requests once they are written, so one connection holds at most about this much.
const BATCH: usize = 256 * 1024;

/// What `relay_build_info` and `/stats` say of the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// The version, `0.1.0`.
    pub version: &'static str,
    /// The compiled features, as `--version` prints them: `+polling +select +tls`.
    pub features: String,
}

/// How the service answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Required as `Authorization: Bearer TOKEN` on every path but `/healthz`; `None`: open.
    pub token: Option<String>,
    /// Most bytes a request head may take; a longer one is answered 431 and the connection closed.
    pub max_head: usize,
    /// What the build is.
    pub build: BuildInfo,
    /// The chat page and the WebSocket door; `None`: the operator's endpoints only.
    pub web: Option<WebOptions>,
}

/// The operator's window; see the crate's documentation.
#[derive(Debug, Clone)]
pub struct HttpService {
    options: HttpOptions,
    /// The token in force: [`HttpOptions::token`] at first, then what [`TokenHandle::set`] says.
    token: TokenHandle,
}

/// A handle on the token a running service requires, so that another thread (a reload) can
/// change it for the requests that follow.
#[derive(Debug, Clone, Default)]
pub struct TokenHandle(Arc<Mutex<Option<String>>>);

impl TokenHandle {
    /// Requires `token` from now on (`None`: no token).
    pub fn set(&self, token: Option<String>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = token;
    }
}

impl HttpService {
    /// A service answering with `options`.
    pub fn new(options: HttpOptions) -> Self {
        let token = TokenHandle(Arc::new(Mutex::new(options.token.clone())));
        HttpService { options, token }
    }

    /// The handle that changes the token this service requires.
    pub fn token_handle(&self) -> TokenHandle {
        self.token.clone()
    }

    /// Whether `request` carries the token (compared in time independent of where it differs).
    fn authorized(&self, request: &Request<'_>) -> bool {
        let token = self.token.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(token) = token.as_ref() else {
            return true;
        };
        let expected = format!("Bearer {token}");
        let given = request.authorization.unwrap_or_default();
        given.len() == expected.len()
            && given
                .iter()
                .zip(expected.as_bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }

    /// Answers one complete request into `out`; says what becomes of the connection.
    fn respond(&self, request: &Request<'_>, view: &View<'_>, out: &mut Vec<u8>) -> Then {
        let head_only = request.method == "HEAD";
        let keep = request.keep_alive && !request.has_body;
        let mut reply = Reply {
            out,
            keep,
            head_only,
            http11: request.http11,
        };
        if request.method != "GET" && !head_only {
            reply.keep = false; // its body, if any, is not read
            reply.send(405, "Allow: GET, HEAD\r\n", TEXT, b"only GET and HEAD\n");
            return Then::Close;
        }
        if let Some(web) = &self.options.web {
            if let Some((content_type, body)) = web::page(request.path) {
                reply.send(200, web::PAGE_HEADERS, content_type, body);
                return keep_or_close(keep);
            }
            if request.path == "/ws" {
                return match web::check_upgrade(request, view, web) {
                    Ok(accept) => {
                        web::switching(&accept, reply.out);
                        Then::Join
                    }
                    Err((status, extra, body)) => {
                        reply.send(status, extra, TEXT, body);
                        keep_or_close(keep)
                    }
                };
            }
        }
        let known = matches!(
            request.path,
            "/healthz" | "/metrics" | "/stats" | "/clients"
        );
        if !known {
            reply.send(404, "", TEXT, b"not found\n");
            return keep_or_close(keep);
        }
        if request.path == "/healthz" {
            match view.draining() {
                false => reply.send(200, "", TEXT, b"ok\n"),
                true => reply.send(503, "", TEXT, b"draining\n"),
            }
            return keep_or_close(keep);
        }
        if !self.authorized(request) {
            let challenge = "WWW-Authenticate: Bearer realm=\"relay\"\r\n";
            reply.send(401, challenge, TEXT, b"a bearer token is required\n");
            return keep_or_close(keep);
        }
        let build = &self.options.build;
        match request.path {
            "/metrics" => reply.send(200, "", METRICS, render::metrics(view, build).as_bytes()),
            "/stats" => reply.send(200, "", JSON, render::stats(view, build).as_bytes()),
            _ => match query_value(request.query, "limit").map(str::parse::<usize>) {
                None => reply.send(
                    200,
                    "",
                    JSON,
                    render::clients(view, DEFAULT_CLIENTS_LIMIT).as_bytes(),
                ),
                Some(Ok(limit)) => {
                    reply.send(200, "", JSON, render::clients(view, limit).as_bytes())
                }
                Some(Err(_)) => reply.send(400, "", TEXT, b"limit must be a whole number\n"),
            },
        }
        keep_or_close(keep)
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const METRICS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One response being written.
struct Reply<'o> {
    out: &'o mut Vec<u8>,
    keep: bool,
    head_only: bool,
    http11: bool,
}

impl Reply<'_> {
    /// Writes a response: status line, headers (`extra` ends each of its lines with CRLF), body
    /// unless the request was HEAD.
    fn send(&mut self, status: u16, extra: &str, content_type: &str, body: &[u8]) {
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            426 => "Upgrade Required",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            _ => "Service Unavailable",
        };
        let connection = match (self.keep, self.http11) {
            (false, _) => "Connection: close\r\n",
            (true, false) => "Connection: keep-alive\r\n",
            (true, true) => "",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\n{connection}{extra}\r\n",
            body.len()
        );
        self.out.extend_from_slice(head.as_bytes());
        if !self.head_only {
            self.out.extend_from_slice(body);
        }
    }
}

/// After an answer that ends the connection: whatever else it sent is ignored.
fn closing(input: &[u8]) -> Answer {
    Answer {
        consumed: input.len(),
        then: Then::Close,
    }
}

/// Keep-alive or not, as the request and its version say.
fn keep_or_close(keep: bool) -> Then {
    if keep {
        Then::Keep
    } else {
        Then::Close
    }
}

/// An error answer for a request that could not be read, always followed by a close.
fn refuse(out: &mut Vec<u8>, status: u16, body: &[u8]) {
    let mut reply = Reply {
        out,
        keep: false,
        head_only: false,
        http11: true,
    };
    reply.send(status, "", TEXT, body);
}

impl Service for HttpService {
    fn answer(&mut self, input: &[u8], view: &View<'_>, out: &mut Vec<u8>) -> Answer {
        let mut consumed = 0;
        while consumed < input.len() && out.len() < BATCH {
            match parse(&input[consumed..], self.options.max_head) {
                Parsed::Partial => break,
                Parsed::TooLarge => {
                    refuse(out, 431, b"request head too large\n");
                    return closing(input);
                }
                Parsed::Malformed => {
                    refuse(out, 400, b"not an HTTP/1.x request\n");
                    return closing(input);
                }
                Parsed::Complete { len, request } => {
                    consumed += len;
                    match self.respond(&request, view, out) {
                        Then::Keep => {}
                        Then::Close => return closing(input),
                        // What follows the upgrade request is the client's first frames.
                        Then::Join => {
                            return Answer {
                                consumed,
                                then: Then::Join,
                            }
                        }
                    }
                }
            }
        }
        Answer {
            consumed,
            then: Then::Keep,
        }
    }

    fn join(
        &mut self,
        link: Box<dyn Link>,
        input: Vec<u8>,
        reply: Vec<u8>,
    ) -> io::Result<Box<dyn Link>> {
        let Some(web) = &self.options.web else {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "no web side"));
        };
        Ok(Box::new(WsLink::new(link, input, reply, web.limits)))
    }

    fn refusal(&self) -> &[u8] {
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
          Content-Length: 21\r\nRetry-After: 1\r\nConnection: close\r\n\r\ntoo many connections\n"
    }
}
