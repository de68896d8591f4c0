//! One request head, cut from the bytes a connection sent: complete, not yet complete, or an
//! error to answer with. Pure: bytes in, a verdict out, so it is tested (and fuzzed) alone.

/// Most header lines a request may carry; more is answered 431, like a head over the size limit.
const MAX_HEADERS: usize = 64;

/// The parts of a request the service acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method as sent (`GET`, `HEAD`...).
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The query (after `?`), empty when there is none.
    pub query: &'a str,
    /// HTTP/1.1 (`true`) or HTTP/1.0.
    pub http11: bool,
    /// Whether the client wants the connection kept open after the reply.
    pub keep_alive: bool,
    /// The `Authorization` header's value, if any.
    pub authorization: Option<&'a [u8]>,
    /// It announces a body (`Content-Length` over 0, or `Transfer-Encoding`). No endpoint takes
    /// one, so the connection is closed after the reply instead of reading it.
    pub has_body: bool,
    /// What a WebSocket upgrade needs, when it asks for one.
    pub upgrade: Upgrade<'a>,
}

/// The headers of a WebSocket opening handshake (RFC 6455, 4.2.1), as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upgrade<'a> {
    /// `Upgrade` lists `websocket`.
    pub websocket: bool,
    /// `Connection` lists `upgrade`.
    pub connection_upgrade: bool,
    /// `Sec-WebSocket-Key`.
    pub key: Option<&'a [u8]>,
    /// `Sec-WebSocket-Version`.
    pub version: Option<&'a [u8]>,
    /// `Origin` (browsers always send it).
    pub origin: Option<&'a [u8]>,
    /// `Host`.
    pub host: Option<&'a [u8]>,
}

/// What the bytes at the front of the input are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a whole head yet, and within the size limit: wait for more.
    Partial,
    /// A whole head of `len` bytes.
    Complete {
        /// Length of the head, blank line included.
        len: usize,
        /// What it asks for.
        request: Request<'a>,
    },
    /// The head is over the size limit (or has too many headers): 431, then close.
    TooLarge,
    /// Not HTTP/1.x: 400, then close.
    Malformed,
}

/// Parses the head at the front of `input`, which may hold no more than `max_head` bytes of it.
pub fn parse(input: &[u8], max_head: usize) -> Parsed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(input) {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            return Parsed::TooLarge
        }
        Ok(httparse::Status::Partial) if input.len() > max_head => return Parsed::TooLarge,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Malformed,
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Malformed;
    };
    let http11 = version == 1;
    let (mut close, mut keep) = (false, false);
    let (mut authorization, mut has_body) = (None, false);
    let mut upgrade = Upgrade::default();
    for header in req.headers.iter() {
        let name = header.name;
        let value = header.value.trim_ascii();
        if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep |= token.eq_ignore_ascii_case(b"keep-alive");
                upgrade.connection_upgrade |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade.websocket |= header
                .value
                .split(|&b| b == b',')
                .any(|p| p.trim_ascii().eq_ignore_ascii_case(b"websocket"));
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            upgrade.key = Some(value);
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            upgrade.version = Some(value);
        } else if name.eq_ignore_ascii_case("origin") {
            upgrade.origin = Some(value);
        } else if name.eq_ignore_ascii_case("host") {
            upgrade.host = Some(value);
        } else if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(header.value);
        } else if name.eq_ignore_ascii_case("content-length") {
            has_body |= header.value.trim_ascii() != b"0";
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Parsed::Complete {
        len,
        request: Request {
            method,
            path,
            query,
            http11,
            keep_alive: !close && (http11 || keep),
            authorization,
            has_body,
            upgrade,
        },
    }
}

/// The value of `name` in a query string (`a=1&limit=5`), undecoded.
pub fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn complete(input: &[u8]) -> (usize, Request<'_>) {
        match parse(input, 8192) {
            Parsed::Complete { len, request } => (len, request),
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn http11_keeps_alive_unless_told_to_close_and_http10_only_when_asked() {
        let (len, r) = complete(b"GET /stats?x=1 HTTP/1.1\r\nHost: a\r\n\r\nGET");
        assert_eq!(
            (len, r.method, r.path, r.query),
            (36, "GET", "/stats", "x=1")
        );
        assert!(r.http11 && r.keep_alive && !r.has_body);
        assert!(
            !complete(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")
                .1
                .keep_alive
        );
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").1.keep_alive);
        let r = complete(b"HEAD / HTTP/1.0\r\nConnection: te, keep-alive\r\n\r\n").1;
        assert!(r.keep_alive && !r.http11);
    }

    #[test]
    fn bodies_and_authorization_are_seen() {
        let r =
            complete(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nAuthorization: Bearer x\r\n\r\n").1;
        assert!(r.has_body);
        assert_eq!(r.authorization, Some(&b"Bearer x"[..]));
        assert!(
            complete(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                .1
                .has_body
        );
        assert!(
            !complete(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
                .1
                .has_body
        );
    }

    #[test]
    fn an_unfinished_head_waits_until_it_passes_the_limit() {
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost:", 8192),
            Parsed::Partial
        );
        assert_eq!(parse(b"", 8192), Parsed::Partial);
        let long = [b"GET /".as_slice(), &[b'a'; 100]].concat();
        assert_eq!(parse(&long, 50), Parsed::TooLarge);
        let head = b"GET / HTTP/1.1\r\nX: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n\r\n";
        assert_eq!(parse(head, 40), Parsed::TooLarge);
        let many: Vec<u8> = (0..MAX_HEADERS + 1)
            .flat_map(|i| format!("X-{i}: 1\r\n").into_bytes())
            .collect();
        let request = [b"GET / HTTP/1.1\r\n".as_slice(), &many, b"\r\n"].concat();
        assert_eq!(parse(&request, 8192), Parsed::TooLarge);
    }

    #[test]
    fn garbage_is_malformed() {
        assert_eq!(
            parse(b"\x16\x03\x01\x02\x00\x01\x00", 8192),
            Parsed::Malformed
        );
        assert_eq!(parse(b"GET / SPDY/3\r\n\r\n", 8192), Parsed::Malformed);
    }

    #[test]
    fn query_values_are_found_by_name() {
        assert_eq!(query_value("a=1&limit=5", "limit"), Some("5"));
        assert_eq!(query_value("limit", "limit"), None);
        assert_eq!(query_value("", "limit"), None);
    }

    proptest! {
        /// Whatever arrives, parsing never panics, and a complete head lies within the input and
        /// the limit.
        #[test]
        fn parsing_never_panics(input in proptest::collection::vec(any::<u8>(), 0..600),
                                max_head in 0usize..700) {
            if let Parsed::Complete { len, .. } = parse(&input, max_head) {
                prop_assert!(len <= input.len() && len <= max_head);
            }
        }

        /// Heads that look like HTTP, with random methods, targets and headers, parse or are
        /// refused; they never panic.
        #[test]
        fn near_http_never_panics(method in "[A-Z]{0,8}", target in "[ -~]{0,40}",
                                  headers in proptest::collection::vec(("[!-~]{0,12}", "[ -~]{0,20}"), 0..8),
                                  version in "HTTP/1\\.[0-2]|HTTP/2|") {
            let mut text = format!("{method} {target} {version}\r\n");
            for (name, value) in headers {
                text.push_str(&format!("{name}: {value}\r\n"));
            }
            text.push_str("\r\n");
            let _ = parse(text.as_bytes(), 8192);
        }
    }
}
