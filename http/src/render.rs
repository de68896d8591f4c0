//! The bodies: Prometheus text exposition (format 0.0.4) for `/metrics`, JSON for `/stats` and
//! `/clients`, written by hand from the engine's [`View`].

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use server_core::{Framing, View};

use crate::BuildInfo;

/// A JSON string literal: quotes, backslashes and control characters escaped.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Why clients left, as the label `reason` and the counter.
fn disconnects(view: &View<'_>) -> [(&'static str, u64); 7] {
    let s = view.summary();
    [
        ("left", s.peer_closed),
        ("error", s.errors),
        ("slow_consumer", s.slow_consumers),
        ("write_timeout", s.write_timeouts),
        ("line_too_long", s.long_lines),
        ("handshake_failed", s.handshakes_failed),
        ("idle_timeout", s.idle_timeouts),
    ]
}

/// Why connections were refused, as the label `reason` and the counter.
fn http_refusals(view: &View<'_>) -> [(&'static str, u64); 2] {
    let r = view.service_refusals();
    [("access_list", r.access_list), ("too_many", r.too_many)]
}

fn refusals(view: &View<'_>) -> [(&'static str, u64); 4] {
    let s = view.summary();
    [
        ("server_full", s.refused_full),
        ("out_of_descriptors", s.refused_no_fds),
        ("access_list", s.refused_by_acceptor),
        ("per_address", s.refused_per_address),
    ]
}

/// `/metrics`: every counter and gauge, with `# HELP` and `# TYPE`.
pub fn metrics(view: &View<'_>, build: &BuildInfo) -> String {
    let s = view.summary();
    let mut out = String::with_capacity(4096);
    let mut one = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    one(
        "relay_clients",
        "gauge",
        "Clients connected now.",
        view.clients() as f64,
    );
    one(
        "relay_clients_peak",
        "gauge",
        "Most clients connected at once.",
        s.peak_clients as f64,
    );
    one(
        "relay_clients_handshaking",
        "gauge",
        "Clients whose TLS handshake is in progress.",
        view.handshaking() as f64,
    );
    one(
        "relay_clients_max",
        "gauge",
        "Most clients admitted at once (--max-clients).",
        view.max_clients() as f64,
    );
    one(
        "relay_connections_accepted_total",
        "counter",
        "Clients accepted and registered.",
        s.accepted as f64,
    );
    one(
        "relay_messages_received_total",
        "counter",
        "Messages received from clients: chunks in raw mode, lines in line mode.",
        s.messages_in as f64,
    );
    one(
        "relay_messages_queued_total",
        "counter",
        "Messages queued for delivery, one per message per receiver.",
        s.messages_queued as f64,
    );
    one(
        "relay_bytes_received_total",
        "counter",
        "Bytes read from clients.",
        s.bytes_in as f64,
    );
    one(
        "relay_bytes_sent_total",
        "counter",
        "Bytes written to clients.",
        s.bytes_out as f64,
    );
    one(
        "relay_bytes_dropped_total",
        "counter",
        "Bytes queued for clients that were cut before they could be written.",
        s.bytes_dropped as f64,
    );
    one(
        "relay_pending_bytes",
        "gauge",
        "Bytes queued for clients now.",
        view.pending_bytes() as f64,
    );
    one(
        "relay_handshakes_failed_total",
        "counter",
        "Connections whose link failed or timed out before it was established.",
        s.handshakes_failed as f64,
    );
    one(
        "relay_rate_waits_total",
        "counter",
        "Times a sender used up its --max-rate allowance.",
        s.rate_waits as f64,
    );
    one(
        "relay_http_connections",
        "gauge",
        "Connections to this HTTP port now.",
        view.service_connections() as f64,
    );
    one(
        "relay_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        view.uptime().as_secs_f64(),
    );
    one(
        "relay_draining",
        "gauge",
        "1 once a stop was asked for and the server drains.",
        u8::from(view.draining()) as f64,
    );
    if let Some(uplink) = view.uplink() {
        one(
            "relay_cluster_received_total",
            "counter",
            "Messages received from other relays.",
            s.cluster_in as f64,
        );
        one(
            "relay_cluster_published_total",
            "counter",
            "Messages handed on to other relays.",
            uplink.published as f64,
        );
        one(
            "relay_cluster_unpublished_total",
            "counter",
            "Messages that could not be handed on to other relays.",
            uplink.unpublished as f64,
        );
    }
    let mut family = |name: &str, help: &str, rows: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (reason, value) in rows {
            let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {value}");
        }
    };
    family(
        "relay_disconnects_total",
        "Clients disconnected, by reason.",
        &disconnects(view),
    );
    family(
        "relay_refused_total",
        "Connections refused at once, by reason.",
        &refusals(view),
    );
    family(
        "relay_http_refused_total",
        "Connections to this HTTP port refused at once, by reason.",
        &http_refusals(view),
    );
    let _ = writeln!(
        out,
        "# HELP relay_build_info The running build: version, backend, compiled features.\n\
         # TYPE relay_build_info gauge\n\
         relay_build_info{{version=\"{}\",backend=\"{}\",features=\"{}\"}} 1",
        label_value(build.version),
        label_value(view.backend()),
        label_value(&build.features)
    );
    out
}

fn seconds(d: Option<Duration>) -> String {
    d.map_or("null".into(), |d| d.as_secs_f64().to_string())
}

fn object(rows: &[(&str, u64)]) -> String {
    let fields: Vec<String> = rows.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", fields.join(","))
}

/// `/stats`: the same facts as `/metrics`, with the uptime and the configured limits.
pub fn stats(view: &View<'_>, build: &BuildInfo) -> String {
    let s = view.summary();
    let c = view.config();
    let cluster = match view.uplink() {
        Some(u) => object(&[
            ("received", s.cluster_in),
            ("published", u.published),
            ("unpublished", u.unpublished),
        ]),
        None => "null".into(),
    };
    let (framing, max_line) = match &c.framing {
        Framing::Raw => ("raw", "null".to_string()),
        Framing::Lines(opts) => ("line", opts.max_line.to_string()),
        _ => ("other", "null".to_string()),
    };
    let max_per_address = c.max_per_address.map_or("null".into(), |n| n.to_string());
    let max_rate = c
        .max_rate
        .map_or("null".into(), |r| r.bytes_per_sec.to_string());
    format!(
        "{{\"version\":{},\"backend\":{},\"features\":{},\"uptime_seconds\":{},\
         \"draining\":{},\"clients\":{},\"peak_clients\":{},\"handshaking\":{},\
         \"accepted\":{},\"messages_in\":{},\"messages_queued\":{},\"bytes_in\":{},\
         \"bytes_out\":{},\"bytes_dropped\":{},\"pending_bytes\":{},\"rate_waits\":{},\
         \"disconnects\":{},\"refused\":{},\"cluster\":{},\"http_connections\":{},\
         \"http_refused\":{},\
         \"limits\":{{\"max_clients\":{},\"max_pending\":{},\"write_timeout_seconds\":{},\
         \"idle_timeout_seconds\":{},\"drain_timeout_seconds\":{},\
         \"handshake_timeout_seconds\":{},\"max_per_address\":{},\"max_rate\":{},\
         \"framing\":\"{}\",\"max_line\":{}}}}}\n",
        json_string(build.version),
        json_string(view.backend()),
        json_string(&build.features),
        view.uptime().as_secs_f64(),
        view.draining(),
        view.clients(),
        s.peak_clients,
        view.handshaking(),
        s.accepted,
        s.messages_in,
        s.messages_queued,
        s.bytes_in,
        s.bytes_out,
        s.bytes_dropped,
        view.pending_bytes(),
        s.rate_waits,
        object(&disconnects(view)),
        object(&refusals(view)),
        cluster,
        view.service_connections(),
        object(&http_refusals(view)),
        view.max_clients(),
        c.max_pending,
        seconds(c.write_timeout),
        seconds(c.idle_timeout),
        seconds(Some(c.drain_timeout)),
        seconds(Some(c.handshake_timeout)),
        max_per_address,
        max_rate,
        framing,
        max_line,
    )
}

/// `/clients`: up to `limit` clients, one JSON object each, and how many there are in all.
pub fn clients(view: &View<'_>, limit: usize) -> String {
    let now = SystemTime::now();
    let mut out = String::with_capacity(64 + 200 * limit.min(view.clients()));
    let _ = write!(
        out,
        "{{\"clients\":{},\"limit\":{limit},\"list\":[",
        view.clients()
    );
    for (i, c) in view.clients_facts(limit).enumerate() {
        let since = now
            .checked_sub(c.connected_for)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        let _ = write!(
            out,
            "{}{{\"id\":{},\"peer\":{},\"transport\":{},\"member\":{},\
             \"connected_since\":{:.3},\"connected_seconds\":{:.3},\"bytes_in\":{},\
             \"bytes_out\":{},\"pending\":{}}}",
            if i == 0 { "" } else { "," },
            c.id,
            json_string(&c.peer.to_string()),
            json_string(c.transport),
            c.member,
            since,
            c.connected_for.as_secs_f64(),
            c.bytes_in,
            c.bytes_out,
            c.pending
        );
    }
    out.push_str("]}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_what_json_requires() {
        let text = "a\"b\\c\nd\te\u{1}f\u{7f}é";
        let json = json_string(text);
        assert_eq!(json, "\"a\\\"b\\\\c\\nd\\te\\u0001f\u{7f}é\"");
        let back: String = serde_json::from_str(&json).unwrap();
        assert_eq!(back, text);
    }

    #[test]
    fn label_values_escape_quotes_backslashes_and_newlines() {
        assert_eq!(label_value("+a \"b\"\\\n"), "+a \\\"b\\\"\\\\\\n");
    }
}
