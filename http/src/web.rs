//! The chat page and the WebSocket door on the HTTP port: `GET /` (with `/chat.js` and
//! `/chat.css`) serves a page compiled into the binary, and `GET /ws` upgrades to a WebSocket
//! whose client joins the room ([`crate::ws::WsLink`]).

use server_core::View;

use crate::request::{Request, Upgrade};
use crate::ws::WsLimits;

/// The web side's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebOptions {
    /// Origins a browser may connect from besides the page's own (`https://chat.example.org`);
    /// `*` lets any in. A client that sends no `Origin` is not a browser and is let in.
    pub origins: Vec<String>,
    /// The HTTP port speaks TLS: the page's own origin is `https://` + its host.
    pub tls: bool,
    /// What a web client may do.
    pub limits: WsLimits,
}

/// Served with every page file: nothing but the page's own script, style and WebSocket.
pub(crate) const PAGE_HEADERS: &str = "Content-Security-Policy: default-src 'none'; \
    script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n\
    X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n";

/// The page's file at `path`, with its content type.
pub(crate) fn page(path: &str) -> Option<(&'static str, &'static [u8])> {
    Some(match path {
        "/" | "/index.html" => (
            "text/html; charset=utf-8",
            include_bytes!("../page/index.html"),
        ),
        "/chat.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../page/chat.js"),
        ),
        "/chat.css" => (
            "text/css; charset=utf-8",
            include_bytes!("../page/chat.css"),
        ),
        _ => return None,
    })
}

/// Why an upgrade request is turned down: the status, extra header lines and the body.
pub(crate) type Refusal = (u16, &'static str, &'static [u8]);

/// Checks a `GET /ws` request; returns the `Sec-WebSocket-Accept` value to answer with.
pub(crate) fn check_upgrade(
    request: &Request<'_>,
    view: &View<'_>,
    options: &WebOptions,
) -> Result<String, Refusal> {
    let upgrade = &request.upgrade;
    if request.method != "GET" || !request.http11 || !upgrade.websocket {
        return Err((
            400,
            "",
            b"a WebSocket upgrade is GET /ws, HTTP/1.1, Upgrade: websocket\n",
        ));
    }
    if !upgrade.connection_upgrade || request.has_body {
        return Err((400, "", b"Connection: Upgrade is required\n"));
    }
    if upgrade.version != Some(&b"13"[..]) {
        return Err((
            426,
            "Sec-WebSocket-Version: 13\r\n",
            b"only WebSocket version 13\n",
        ));
    }
    let key = match upgrade.key {
        Some(key) if is_websocket_key(key) => key,
        _ => return Err((400, "", b"Sec-WebSocket-Key must be 16 bytes in base64\n")),
    };
    if !origin_allowed(upgrade, options) {
        return Err((403, "", b"origin not allowed\n"));
    }
    if view.draining() {
        return Err((503, "", b"the server is stopping\n"));
    }
    if view.clients() >= view.max_clients() {
        return Err((503, "Retry-After: 5\r\n", b"the room is full\n"));
    }
    Ok(tungstenite::handshake::derive_accept_key(key))
}

/// 24 base64 characters that decode to 16 bytes (RFC 6455, 4.2.1, item 5).
fn is_websocket_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// No `Origin` (not a browser), the page's own origin, or one of the allowed ones.
fn origin_allowed(upgrade: &Upgrade<'_>, options: &WebOptions) -> bool {
    let Some(origin) = upgrade.origin else {
        return true;
    };
    let listed = options
        .origins
        .iter()
        .any(|o| o == "*" || o.as_bytes().eq_ignore_ascii_case(origin));
    let own = upgrade.host.is_some_and(|host| {
        let scheme: &[u8] = if options.tls { b"https://" } else { b"http://" };
        origin.len() == scheme.len() + host.len()
            && origin[..scheme.len()].eq_ignore_ascii_case(scheme)
            && origin[scheme.len()..].eq_ignore_ascii_case(host)
    });
    listed || own
}

/// The `101` answer that completes the opening handshake.
pub(crate) fn switching(accept: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .as_bytes(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(origins: &[&str], tls: bool) -> WebOptions {
        WebOptions {
            origins: origins.iter().map(|o| o.to_string()).collect(),
            tls,
            limits: WsLimits {
                max_message: 1024,
                ping_every: None,
            },
        }
    }

    fn upgrade<'a>(origin: Option<&'a str>, host: &'a str) -> Upgrade<'a> {
        Upgrade {
            origin: origin.map(str::as_bytes),
            host: Some(host.as_bytes()),
            ..Upgrade::default()
        }
    }

    #[test]
    fn the_page_own_origin_and_listed_ones_get_in_and_others_do_not() {
        let h = "127.0.0.1:8222";
        let plain = options(&[], false);
        assert!(
            origin_allowed(&upgrade(None, h), &plain),
            "no Origin: not a browser"
        );
        assert!(origin_allowed(
            &upgrade(Some("http://127.0.0.1:8222"), h),
            &plain
        ));
        assert!(origin_allowed(
            &upgrade(Some("HTTP://127.0.0.1:8222"), h),
            &plain
        ));
        assert!(!origin_allowed(
            &upgrade(Some("https://127.0.0.1:8222"), h),
            &plain
        ));
        assert!(!origin_allowed(
            &upgrade(Some("http://evil.example"), h),
            &plain
        ));
        assert!(!origin_allowed(
            &upgrade(Some("http://127.0.0.1:82220"), h),
            &plain
        ));
        let tls = options(&["http://evil.example"], true);
        assert!(origin_allowed(
            &upgrade(Some("https://127.0.0.1:8222"), h),
            &tls
        ));
        assert!(origin_allowed(
            &upgrade(Some("http://evil.example"), h),
            &tls
        ));
        assert!(origin_allowed(
            &upgrade(Some("null"), h),
            &options(&["*"], false)
        ));
    }

    #[test]
    fn keys_are_16_bytes_of_base64() {
        assert!(is_websocket_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_websocket_key(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!is_websocket_key(b"dGhlIHNhbXBsZSBub25j!Q=="));
        assert_eq!(
            tungstenite::handshake::derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", // RFC 6455, 1.3
        );
    }
}
