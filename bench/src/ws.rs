//! Web clients: a benchmark client that joins the room through our server's WebSocket door
//! (`GET /ws` on its `--http` port, RFC 6455) instead of the chat port.
//!
//! - **Opening**: a hand-written upgrade request, and the answer's head read a byte at a time up
//!   to its blank line, so no frame behind it is taken from the socket; the `101` and its
//!   `Sec-WebSocket-Accept` are checked (tungstenite makes the key and derives the answer).
//! - **Receiving** ([`FrameDecoder`]): the server's frames are unmasked and, in raw mode, each
//!   one a whole binary message (`0x82`, a 2-, 4- or 10-byte header). The decoder takes the
//!   headers out of the bytes one socket read brought and moves the payloads together in place,
//!   so the receiver checks payload bytes exactly as it checks a TCP client's stream. A header
//!   split across reads is carried to the next. Anything else (a masked or fragmented frame, a
//!   text, ping or pong frame, a length not in its shortest form) is an error; a close frame
//!   ends the client with its code and reason.
//! - **Sending** (the sync probe, when the last client to connect is a web client): each write
//!   one masked binary message, made by tungstenite's frame encoder.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use relay_pattern::is_retry;

use crate::client::Unsent;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;

/// The longest answer head accepted from the server.
const MAX_HEAD: usize = 4096;
/// The longest header of a server's (unmasked) frame: 2 bytes and a 64-bit length.
const MAX_FRAME_HEADER: usize = 10;
/// The longest control frame payload (RFC 6455, 5.5).
const MAX_CONTROL: usize = 125;
/// Most payload bytes in one message to the server (its `--ws-max-message` default).
pub(crate) const MAX_MESSAGE: usize = 65_535;

/// Opens the WebSocket on `tcp`, a fresh connection to the HTTP door at `addr` whose timeouts are
/// short: writes the upgrade request and reads the answer's head (a byte at a time) until
/// `deadline`. Returns the masking key for the client's own frames.
pub(crate) fn upgrade(
    tcp: &mut TcpStream,
    addr: SocketAddr,
    deadline: Instant,
) -> io::Result<[u8; 4]> {
    let key = tungstenite::handshake::client::generate_key();
    // No Origin: not a browser, so the door lets it in whatever --ws-origin says.
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let mut out = request.as_bytes();
    while !out.is_empty() {
        check_deadline(deadline, "sending the upgrade request")?;
        match tcp.write(out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => out = &out[n..],
            Err(e) if is_retry(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(io::Error::other(format!(
                "the upgrade answer's head is longer than {MAX_HEAD} bytes"
            )));
        }
        check_deadline(deadline, "waiting for the upgrade answer")?;
        let mut byte = [0u8];
        match tcp.read(&mut byte) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the server closed the connection during the upgrade: {:?}",
                        String::from_utf8_lossy(&head)
                    ),
                ))
            }
            Ok(_) => head.push(byte[0]),
            Err(e) if is_retry(&e) => {}
            Err(e) => return Err(e),
        }
    }
    check_answer(&head, &key)?;
    let k = key.as_bytes();
    // The key is random per connection; on loopback, with no proxy between, any mask would do.
    Ok([k[0], k[1], k[2], k[3]])
}

fn check_deadline(deadline: Instant, doing: &str) -> io::Result<()> {
    if Instant::now() >= deadline {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("timed out {doing}"),
        ));
    }
    Ok(())
}

/// Checks the answer's head (status line and headers, up to the blank line): `101`, and the
/// `Sec-WebSocket-Accept` that `key` asks for.
pub(crate) fn check_answer(head: &[u8], key: &str) -> io::Result<()> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let refused = || io::Error::other(format!("the WebSocket upgrade was refused: {status:?}"));
    let mut words = status.split(' ');
    if !words.next().is_some_and(|v| v.starts_with("HTTP/1.")) || words.next() != Some("101") {
        return Err(refused());
    }
    let want = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let accept = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-accept")
            .then(|| value.trim())
    });
    if accept != Some(want.as_str()) {
        return Err(io::Error::other(format!(
            "the upgrade answer's Sec-WebSocket-Accept is {accept:?}, not {want:?}"
        )));
    }
    Ok(())
}

/// What a frame header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    /// Its length in bytes: 2, 4 or 10.
    len: usize,
    opcode: u8,
    payload: u64,
}

/// Opcodes (RFC 6455, 5.2).
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Parses a server frame's header at the start of `bytes`: `None` if it is not all there yet.
/// Only what raw mode sends is accepted: final, unmasked, no reserved bits, binary data or a
/// close, lengths in their shortest form.
fn parse_header(bytes: &[u8]) -> Result<Option<Header>, String> {
    let [first, second, ..] = *bytes else {
        return Ok(None);
    };
    let opcode = first & 0x0F;
    if first & 0x70 != 0 {
        return Err(format!("a frame with reserved bits set: {first:#04x}"));
    }
    if second & 0x80 != 0 {
        return Err("a masked frame from the server".into());
    }
    let (len, payload) = match second & 0x7F {
        126 => match bytes.get(2..4) {
            None => return Ok(None),
            Some(b) => (4, u64::from(u16::from_be_bytes([b[0], b[1]]))),
        },
        127 => match bytes.get(2..10) {
            None => return Ok(None),
            Some(b) => (10, u64::from_be_bytes(b.try_into().expect("8 bytes"))),
        },
        short => (2, u64::from(short)),
    };
    let shortest = match payload {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    };
    if len != shortest || payload >> 63 != 0 {
        return Err(format!(
            "a {payload}-byte payload with a {len}-byte header (the shortest form is {shortest})"
        ));
    }
    if first & 0x80 == 0 {
        return Err(format!(
            "a fragment (opcode {opcode:#x} without FIN): raw mode sends each chunk as one message"
        ));
    }
    match opcode {
        BINARY => {}
        CLOSE if payload as usize <= MAX_CONTROL => {}
        CLOSE => return Err(format!("a close frame of {payload} bytes (at most 125)")),
        PING => return Err("a ping (chat-bench starts the server with --ws-ping 0)".into()),
        PONG => return Err("a pong, but chat-bench never pings".into()),
        _ => {
            return Err(format!(
                "a frame with opcode {opcode:#x} (raw mode sends binary messages only)"
            ))
        }
    }
    Ok(Some(Header {
        len,
        opcode,
        payload,
    }))
}

/// Strips the server's frames from a web client's byte stream, in place.
#[derive(Debug, Default)]
pub(crate) struct FrameDecoder {
    /// The start of a header the last read cut off.
    head: [u8; MAX_FRAME_HEADER],
    head_len: usize,
    /// Payload bytes of the current frame still to come.
    left: u64,
    /// The current frame is a close: its payload (code and reason) gathers here.
    close: Option<Vec<u8>>,
}

impl FrameDecoder {
    /// Decodes `buf`, the next bytes from the socket, in place: the payload bytes move to its
    /// front, in order, and their count is returned. `Err` for a frame raw mode never sends, and
    /// for a close frame (its code and reason).
    pub(crate) fn decode(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        let (mut r, mut w) = (0, 0);
        while r < buf.len() {
            if self.left > 0 {
                let take = self.left.min((buf.len() - r) as u64) as usize;
                match &mut self.close {
                    Some(payload) => payload.extend_from_slice(&buf[r..r + take]),
                    None => {
                        if w != r {
                            buf.copy_within(r..r + take, w);
                        }
                        w += take;
                    }
                }
                r += take;
                self.left -= take as u64;
                if self.left == 0 {
                    self.end_of_frame()?;
                }
                continue;
            }
            let header = if self.head_len == 0 {
                match parse_header(&buf[r..])? {
                    Some(h) => {
                        r += h.len;
                        h
                    }
                    None => {
                        // A header cut off by the end of this read: keep it for the next.
                        let rest = buf.len() - r;
                        self.head[..rest].copy_from_slice(&buf[r..]);
                        self.head_len = rest;
                        break;
                    }
                }
            } else {
                // Complete the carried header a byte at a time (at most 9 more).
                self.head[self.head_len] = buf[r];
                self.head_len += 1;
                r += 1;
                match parse_header(&self.head[..self.head_len])? {
                    Some(h) => {
                        self.head_len = 0;
                        h
                    }
                    None => continue,
                }
            };
            self.left = header.payload;
            if header.opcode == CLOSE {
                self.close = Some(Vec::with_capacity(header.payload as usize));
            }
            if self.left == 0 {
                self.end_of_frame()?;
            }
        }
        Ok(w)
    }

    /// A frame's payload is complete: a close frame ends the client.
    fn end_of_frame(&mut self) -> Result<(), String> {
        let Some(payload) = self.close.take() else {
            return Ok(());
        };
        Err(match payload.as_slice() {
            [] => "the server closed the WebSocket (no code)".into(),
            [hi, lo, reason @ ..] => format!(
                "the server closed the WebSocket: code {} {:?}",
                u16::from_be_bytes([*hi, *lo]),
                String::from_utf8_lossy(reason)
            ),
            [_] => "the server closed the WebSocket with a 1-byte payload".into(),
        })
    }
}

/// One web client's WebSocket layer, for its reader or its writer.
#[derive(Debug)]
pub(crate) struct Web {
    decoder: FrameDecoder,
    mask: [u8; 4],
    /// Framed bytes made but not yet written.
    out: Unsent,
}

impl Web {
    /// The layer of a client whose upgrade gave `mask`.
    pub(crate) fn new(mask: [u8; 4]) -> Web {
        Web {
            decoder: FrameDecoder::default(),
            mask,
            out: Unsent::default(),
        }
    }

    /// The masking key of the client's own frames.
    pub(crate) fn mask(&self) -> [u8; 4] {
        self.mask
    }

    /// One socket read, its frames decoded: payload bytes only. A read that brought headers and
    /// no payload is `WouldBlock` (0 would mean the connection closed).
    pub(crate) fn read(&mut self, tcp: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = tcp.read(buf)?;
        if n == 0 {
            return Ok(0);
        }
        match self.decoder.decode(&mut buf[..n]) {
            Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
            Ok(kept) => Ok(kept),
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }

    /// Takes up to [`MAX_MESSAGE`] bytes of `buf` as one masked binary message; `flush` sends
    /// what the socket did not take at once.
    pub(crate) fn write(&mut self, tcp: &mut TcpStream, buf: &[u8]) -> io::Result<usize> {
        self.flush(tcp)?;
        let take = buf.len().min(MAX_MESSAGE);
        client_frame(&buf[..take], self.mask, self.out.refill())?;
        match self.flush(tcp) {
            Err(e) if !is_retry(&e) => Err(e),
            _ => Ok(take), // taken; `flush` sends the rest
        }
    }

    /// Writes what `write` framed and the socket has not taken yet.
    pub(crate) fn flush(&mut self, tcp: &mut TcpStream) -> io::Result<()> {
        self.out.flush(tcp)
    }
}

/// Appends `payload` as one final binary frame masked with `mask`, as a client must send it.
pub(crate) fn client_frame(payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) -> io::Result<()> {
    let mut frame = Frame::message(payload.to_vec(), OpCode::Data(Data::Binary), true);
    frame.header_mut().mask = Some(mask);
    frame.format(out).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use tungstenite::protocol::frame::coding::Control;
    use tungstenite::protocol::frame::FrameHeader;

    use super::*;

    /// A server frame as the server makes it (tungstenite's header encoder, unmasked).
    fn server_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
        let header = FrameHeader {
            opcode,
            ..FrameHeader::default()
        };
        header.format(payload.len() as u64, out).unwrap();
        out.extend_from_slice(payload);
    }

    fn binary(payload: &[u8], out: &mut Vec<u8>) {
        server_frame(OpCode::Data(Data::Binary), payload, out);
    }

    /// Feeds `wire` to a decoder in reads of the given sizes (cycled); returns the payload bytes.
    fn decode_in(wire: &[u8], reads: &[usize]) -> Result<Vec<u8>, String> {
        let mut d = FrameDecoder::default();
        let mut got = Vec::new();
        let mut at = 0;
        for &size in reads.iter().cycle() {
            if at >= wire.len() {
                break;
            }
            let end = (at + size.max(1)).min(wire.len());
            let mut buf = wire[at..end].to_vec();
            let n = d.decode(&mut buf)?;
            got.extend_from_slice(&buf[..n]);
            at = end;
        }
        Ok(got)
    }

    /// Payloads of every length form, and at each form's edges.
    fn payloads() -> Vec<Vec<u8>> {
        [0, 1, 64, 125, 126, 127, 8192, 65_535, 65_536, 70_000]
            .iter()
            .enumerate()
            .map(|(k, &len)| (0..len).map(|i| (i * 7 + k) as u8).collect())
            .collect()
    }

    #[test]
    fn header_lengths_take_all_three_forms() {
        for (len, header) in [
            (0, 2),
            (125, 2),
            (126, 4),
            (65_535, 4),
            (65_536, 10),
            (1 << 40, 10),
        ] {
            let mut wire = Vec::new();
            FrameHeader {
                opcode: OpCode::Data(Data::Binary),
                ..FrameHeader::default()
            }
            .format(len, &mut wire)
            .unwrap();
            assert_eq!(wire.len(), header, "{len}");
            assert_eq!(wire[0], 0x82);
            let h = parse_header(&wire).unwrap().unwrap();
            assert_eq!((h.len, h.payload, h.opcode), (header, len, BINARY));
            for cut in 0..header {
                assert_eq!(parse_header(&wire[..cut]), Ok(None), "{len} cut at {cut}");
            }
        }
    }

    #[test]
    fn payloads_come_out_whole_and_in_order_however_the_reads_split_them() {
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for p in payloads() {
            binary(&p, &mut wire);
            want.extend_from_slice(&p);
        }
        // Every cut of a header (reads of 1 to 11 bytes), and reads ending anywhere.
        for reads in [
            &[1][..],
            &[2],
            &[3],
            &[5],
            &[9],
            &[10],
            &[11],
            &[4096],
            &[65_536],
            &[1 << 20],
            &[1, 2, 3, 126, 7, 65_537],
        ] {
            let got = decode_in(&wire, reads).unwrap_or_else(|e| panic!("{reads:?}: {e}"));
            assert!(got == want, "reads of {reads:?}: payloads differ");
        }
    }

    #[test]
    fn every_split_point_of_a_small_stream_decodes_the_same() {
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for p in [&b"ab"[..], &[7; 126], &[], &[9; 300]] {
            binary(p, &mut wire);
            want.extend_from_slice(p);
        }
        for cut in 0..=wire.len() {
            let mut d = FrameDecoder::default();
            let (mut a, mut b) = (wire[..cut].to_vec(), wire[cut..].to_vec());
            let (na, nb) = (d.decode(&mut a).unwrap(), d.decode(&mut b).unwrap());
            let got: Vec<u8> = a[..na].iter().chain(&b[..nb]).copied().collect();
            assert_eq!(got, want, "cut at {cut}");
        }
    }

    #[test]
    fn a_close_ends_with_its_code_and_reason_even_split() {
        let mut wire = Vec::new();
        binary(b"before", &mut wire);
        let mut close = 1008u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"slow consumer");
        server_frame(OpCode::Control(Control::Close), &close, &mut wire);
        for read in [1, 3, 100] {
            let err = decode_in(&wire, &[read]).unwrap_err();
            assert!(
                err.contains("code 1008") && err.contains("slow consumer"),
                "{err}"
            );
        }
    }

    #[test]
    fn frames_raw_mode_never_sends_are_errors() {
        let frame = |opcode: OpCode, fin: bool, payload: &[u8]| {
            let mut out = Vec::new();
            FrameHeader {
                opcode,
                is_final: fin,
                ..FrameHeader::default()
            }
            .format(payload.len() as u64, &mut out)
            .unwrap();
            out.extend_from_slice(payload);
            out
        };
        let bin = OpCode::Data(Data::Binary);
        let cases = [
            ("masked", {
                let mut out = Vec::new();
                client_frame(b"hi", [1, 2, 3, 4], &mut out).unwrap();
                out
            }),
            ("fragment", frame(bin, false, b"hi")),
            ("text", frame(OpCode::Data(Data::Text), true, b"hi")),
            ("ping", frame(OpCode::Control(Control::Ping), true, b"")),
            ("pong", frame(OpCode::Control(Control::Pong), true, b"")),
            ("reserved bit", {
                let mut f = frame(bin, true, b"hi");
                f[0] |= 0x40;
                f
            }),
            ("long form for a short payload", {
                let mut f = vec![0x82, 126, 0, 5];
                f.extend_from_slice(b"hello");
                f
            }),
        ];
        for (name, wire) in cases {
            assert!(decode_in(&wire, &[1]).is_err(), "{name} read byte-wise");
            assert!(decode_in(&wire, &[64]).is_err(), "{name} read whole");
        }
    }

    #[test]
    fn client_frames_are_masked_binary_messages() {
        for len in [0, 8, 125, 126, 65_535] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            client_frame(&payload, [9, 8, 7, 6], &mut out).unwrap();
            let mut cursor = Cursor::new(&out);
            let (header, n) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert_eq!(n, len as u64);
            assert_eq!(header.opcode, OpCode::Data(Data::Binary));
            assert!(header.is_final);
            assert_eq!(header.mask, Some([9, 8, 7, 6]));
            let body = &out[cursor.position() as usize..];
            let unmasked: Vec<u8> = body
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [9, 8, 7, 6][i % 4])
                .collect();
            assert_eq!(unmasked, payload);
        }
    }

    #[test]
    fn the_answer_must_be_101_with_the_right_accept() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(check_answer(ok, key).is_ok());
        let full = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\r\n";
        let err = check_answer(full, key).unwrap_err().to_string();
        assert!(err.contains("503"), "{err}");
        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n\r\n";
        assert!(check_answer(wrong, key).is_err());
        let missing = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
        assert!(check_answer(missing, key).is_err());
    }
}
