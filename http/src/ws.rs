//! A web client in the room: a [`Link`] that speaks WebSocket (RFC 6455) over the connection the
//! HTTP door upgraded (plain TCP, or TLS for `wss://`).
//!
//! - **Receiving**: tungstenite's protocol layer ([`WebSocketContext`], which never owns the
//!   socket) decodes frames from bytes this link reads for it, one socket read per
//!   [`Link::recv`]. It checks masks (1002 when missing), UTF-8 in text messages (1007), sizes
//!   (1009), reassembles fragmented messages with control frames between their fragments, and
//!   answers pings and the close handshake; each whole message is one `recv`.
//! - **Sending**: the room's messages arrive already framed ([`ENCODING`]: encoded once per
//!   message for every web client, not once per receiver), so `send` writes them as they are.
//!   The link's own frames (its handshake's `101` answer, pongs, pings, the close) wait in a
//!   buffer of their own and go out only *between* data frames: the link follows where each
//!   outgoing frame ends (`FrameCursor`).
//! - **Keepalive**: [`Link::heartbeat`] sends a ping; a peer that sent nothing at all (no pong,
//!   no message) by the next heartbeat is cut as idle.

use std::io::{self, IoSlice, Read, Write};
use std::time::Duration;

use server_core::{AsBorrowedSocket, BorrowedSocket, Delimiting, Encoding, Link};
use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::{Message, Role, WebSocketConfig, WebSocketContext};

/// How the room's messages go on a web client's wire: raw mode, each chunk one binary message;
/// line mode, each line one message without its newline, text when it is UTF-8 and binary when
/// it is not (line mode stays binary-safe).
pub const ENCODING: Encoding = Encoding {
    id: 1,
    encode: encode_messages,
};

fn encode_messages(message: &[u8], lines: bool, out: &mut Vec<u8>) {
    if !lines {
        return frame(OpCode::Data(Data::Binary), message, out);
    }
    for line in message.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let opcode = match std::str::from_utf8(line) {
            Ok(_) => Data::Text,
            Err(_) => Data::Binary,
        };
        frame(OpCode::Data(opcode), line, out);
    }
}

/// Appends one unmasked, final frame (a server's frame) carrying `payload`.
fn frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    // Writing to a Vec cannot fail.
    let _ = header.format(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// A close frame with `code` and a short reason.
fn close_frame(code: CloseCode, reason: &str, out: &mut Vec<u8>) {
    let mut payload = u16::from(code).to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    frame(OpCode::Control(Control::Close), &payload, out);
}

/// What a web client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    /// Most bytes in one message from the client (fragments together); past it the client is
    /// closed with 1009. The engine's read buffer must hold it.
    pub max_message: usize,
    /// How often to ping; `None`: never (TCP keepalive still finds vanished peers).
    pub ping_every: Option<Duration>,
}

/// Where the stream of data frames this link writes stands: inside a header (the bytes of it
/// seen so far) or inside a payload (bytes left). Own frames may go out only at a boundary.
#[derive(Debug, Default)]
struct FrameCursor {
    header: Vec<u8>,
    payload_left: u64,
}

impl FrameCursor {
    fn at_boundary(&self) -> bool {
        self.header.is_empty() && self.payload_left == 0
    }

    /// Bytes from here to the end of the current frame, when its header is complete.
    fn to_frame_end(&self) -> Option<u64> {
        (self.header.is_empty() && self.payload_left > 0).then_some(self.payload_left)
    }

    /// Follows `bytes`, the next bytes written of the data stream.
    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= skip;
                bytes = &bytes[skip as usize..];
                continue;
            }
            self.header.push(bytes[0]);
            bytes = &bytes[1..];
            if let Some(len) = payload_length(&self.header) {
                self.header.clear();
                self.payload_left = len;
            }
        }
    }
}

/// The payload length an unmasked frame header announces, once `header` holds all of it: the
/// 7-bit length, or 126 and 16 bits, or 127 and 64 bits (RFC 6455, 5.2).
fn payload_length(header: &[u8]) -> Option<u64> {
    let extra = match *header.get(1)? & 0x7f {
        126 => 2,
        127 => 8,
        short => return Some(u64::from(short)),
    };
    (header.len() == 2 + extra).then(|| {
        header[2..]
            .iter()
            .fold(0, |len, &b| len << 8 | u64::from(b))
    })
}

/// The bytes tungstenite reads and writes: reads come from what the HTTP door already read, then
/// from the socket (once per [`Link::recv`]); writes (pongs, the close answer) go to the link's
/// own buffer.
struct Wire<'a> {
    inner: &'a mut dyn Link,
    early: &'a mut Vec<u8>,
    own: &'a mut Vec<u8>,
    reads_left: u8,
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.early.is_empty() {
            let n = buf.len().min(self.early.len());
            buf[..n].copy_from_slice(&self.early[..n]);
            self.early.drain(..n);
            return Ok(n);
        }
        if self.reads_left == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.reads_left -= 1;
        self.inner.recv(buf)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.own.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One web client; see the module's documentation.
pub struct WsLink {
    inner: Box<dyn Link>,
    context: WebSocketContext,
    /// Bytes the HTTP door read after the upgrade request: the first frames.
    early: Vec<u8>,
    /// The link's own frames (and first, the `101` answer), written between data frames.
    own: Vec<u8>,
    cursor: FrameCursor,
    limits: WsLimits,
    /// A whole message was returned: more may wait decoded in the context.
    maybe_more: bool,
    /// Anything arrived since the last heartbeat.
    heard: bool,
    /// A ping went out at the last heartbeat.
    pinged: bool,
    /// A close frame is among our own bytes or sent: no more data goes out.
    closed: bool,
}

impl WsLink {
    /// A web client on `inner`, with `early` bytes already read after its upgrade request and
    /// `reply` (the `101` answer) to be written before anything else.
    pub fn new(inner: Box<dyn Link>, early: Vec<u8>, reply: Vec<u8>, limits: WsLimits) -> Self {
        let config = WebSocketConfig::default()
            .max_message_size(Some(limits.max_message))
            .max_frame_size(Some(limits.max_message))
            // Read in modest steps: a room may hold thousands of web clients.
            .read_buffer_size(16 * 1024);
        WsLink {
            inner,
            context: WebSocketContext::new(Role::Server, Some(config)),
            maybe_more: !early.is_empty(),
            early,
            own: reply,
            cursor: FrameCursor::default(),
            limits,
            heard: false,
            pinged: false,
            closed: false,
        }
    }

    /// Queues a close frame (once) and says why the link fails.
    fn fail(&mut self, code: CloseCode, reason: &str) -> io::Error {
        if !self.closed {
            self.closed = true;
            close_frame(code, reason, &mut self.own);
        }
        io::Error::new(io::ErrorKind::InvalidData, format!("websocket: {reason}"))
    }

    /// Hands own bytes to the inner link while at a frame boundary, until none are left or it
    /// takes no more.
    fn write_own(&mut self) -> io::Result<()> {
        while !self.own.is_empty() && self.cursor.at_boundary() {
            match self.inner.send(&[IoSlice::new(&self.own)]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.own.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for WsLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsLink")
            .field("transport", &self.transport())
            .field("own", &self.own.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl AsBorrowedSocket for WsLink {
    fn borrowed(&self) -> BorrowedSocket<'_> {
        self.inner.borrowed()
    }

    fn raw_number(&self) -> u64 {
        self.inner.raw_number()
    }
}

impl Link for WsLink {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One wire for the whole call: one socket read at most, however many frames it holds.
        let mut wire = Wire {
            inner: &mut *self.inner,
            early: &mut self.early,
            own: &mut self.own,
            reads_left: 1,
        };
        let error = loop {
            let read = self.context.read(&mut wire);
            // A pong or the close answer tungstenite queued goes among our own bytes now.
            let _ = self.context.flush(&mut wire);
            let message: &[u8] = match &read {
                Ok(Message::Text(text)) => text.as_bytes(),
                Ok(Message::Binary(data)) => data,
                Ok(Message::Close(_)) => {
                    self.closed = true; // tungstenite queued the answer; `Drop` sends it
                    return Ok(0);
                }
                // Pings and pongs are signs of life.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {
                    self.heard = true;
                    continue;
                }
                Err(_) => break read.err(),
            };
            self.heard = true;
            if message.is_empty() {
                continue; // nothing to relay
            }
            if message.len() > buf.len() {
                return Err(self.fail(CloseCode::Size, "message larger than the read buffer"));
            }
            buf[..message.len()].copy_from_slice(message);
            self.maybe_more = true;
            return Ok(message.len());
        };
        self.maybe_more = false;
        match error {
            None => Err(io::ErrorKind::WouldBlock.into()),
            Some(WsError::Io(e)) => Err(e),
            Some(
                WsError::ConnectionClosed
                | WsError::AlreadyClosed
                | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
            ) => Ok(0),
            Some(WsError::Utf8(_)) => Err(self.fail(CloseCode::Invalid, "text is not UTF-8")),
            Some(WsError::Capacity(CapacityError::MessageTooLong { .. })) => {
                Err(self.fail(CloseCode::Size, "message too big"))
            }
            Some(WsError::Protocol(ProtocolError::UnmaskedFrameFromClient)) => {
                Err(self.fail(CloseCode::Protocol, "unmasked frame from a client"))
            }
            Some(other) => Err(self.fail(CloseCode::Protocol, &other.to_string())),
        }
    }

    fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.closed && self.cursor.at_boundary() {
            // Nothing after a close frame; the data is dropped as the link goes.
            return Ok(bufs.iter().map(|b| b.len()).sum());
        }
        self.write_own()?;
        if self.cursor.at_boundary() && !self.own.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // With own bytes waiting, write no further than the end of the current frame, which
        // lies in the first slice: every queued chunk holds whole frames.
        let n = match (self.own.is_empty(), self.cursor.to_frame_end()) {
            (false, Some(left)) => {
                let first = &bufs[0][..bufs[0]
                    .len()
                    .min(usize::try_from(left).unwrap_or(usize::MAX))];
                self.inner.send(&[IoSlice::new(first)])?
            }
            _ => self.inner.send(bufs)?,
        };
        let mut left = n;
        for buf in bufs {
            let take = buf.len().min(left);
            self.cursor.advance(&buf[..take]);
            left -= take;
            if left == 0 {
                break;
            }
        }
        self.write_own()?;
        Ok(n)
    }

    fn flush_own(&mut self) -> io::Result<()> {
        self.write_own()?;
        self.inner.flush_own()
    }

    fn wants_write(&self) -> bool {
        !self.own.is_empty() || self.inner.wants_write()
    }

    fn has_buffered_input(&self) -> bool {
        self.maybe_more || !self.early.is_empty() || self.inner.has_buffered_input()
    }

    fn transport(&self) -> &'static str {
        match self.inner.transport() {
            "tls" => "wss",
            _ => "ws",
        }
    }

    fn delimiting(&self) -> Delimiting {
        Delimiting::Messages
    }

    fn encoding(&self) -> Encoding {
        ENCODING
    }

    fn heartbeat_interval(&self) -> Option<Duration> {
        self.limits.ping_every
    }

    fn heartbeat(&mut self) -> io::Result<()> {
        if self.pinged && !self.heard {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "websocket: no answer to a ping",
            ));
        }
        self.heard = false;
        self.pinged = true;
        if !self.closed {
            frame(OpCode::Control(Control::Ping), b"", &mut self.own);
        }
        Ok(())
    }
}

impl Drop for WsLink {
    /// Says goodbye, best effort: the close answer if the client closed, else `1001 going away`
    /// (the server stops, or cut the client), when the stream is between frames.
    fn drop(&mut self) {
        if !self.closed {
            self.closed = true;
            close_frame(CloseCode::Away, "", &mut self.own);
        }
        let _ = self.flush_own();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_mode_sends_each_line_as_one_message_text_or_binary() {
        let mut out = Vec::new();
        encode_messages(b"[7] hi\n\xff\xfe\n", true, &mut out);
        assert_eq!(out, b"\x81\x06[7] hi\x82\x02\xff\xfe");
        out.clear();
        encode_messages(b"a\nb", false, &mut out);
        assert_eq!(out, b"\x82\x03a\nb");
    }

    #[test]
    fn the_cursor_follows_frames_of_every_length_byte_by_byte() {
        let mut stream = Vec::new();
        for len in [0usize, 1, 125, 126, 65535, 65536, 70000] {
            frame(OpCode::Data(Data::Binary), &vec![7; len], &mut stream);
        }
        let mut cursor = FrameCursor::default();
        let mut boundaries = 0;
        for byte in &stream {
            cursor.advance(std::slice::from_ref(byte));
            boundaries += usize::from(cursor.at_boundary());
        }
        // The zero-length frame ends with its header; every frame ends at a boundary.
        assert_eq!(boundaries, 7);
        assert!(cursor.at_boundary());
    }

    /// A pong owed while a large data frame is half written goes out after that frame, never
    /// inside it: the client reads the whole data frame, then the pong.
    #[test]
    fn own_frames_wait_for_the_end_of_the_data_frame_being_written() {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let handle = server.try_clone().unwrap(); // the same socket, to switch its mode
        let limits = WsLimits {
            max_message: 1024,
            ping_every: None,
        };
        let mut link = WsLink::new(Box::new(server), Vec::new(), Vec::new(), limits);
        let payload: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut data = Vec::new();
        encode_messages(&payload, false, &mut data);

        // Write until the socket is full: the frame is half written.
        let mut offset = 0;
        while let Ok(n) = link.send(&[IoSlice::new(&data[offset..])]) {
            offset += n;
        }
        assert!(offset > 0 && offset < data.len(), "wrote {offset} bytes");
        // The client pings; the link reads it (blocking for it, bounded) and owes a pong.
        client.write_all(&[0x89, 0x80, 1, 2, 3, 4]).unwrap();
        handle.set_nonblocking(false).unwrap();
        handle
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut buf = [0; 64];
        let read = link.recv(&mut buf);
        assert!(
            matches!(&read, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "{read:?}"
        );
        handle.set_nonblocking(true).unwrap();
        assert!(link.wants_write(), "a pong is owed");

        // The client reads frames while the rest of the data goes out.
        let reader = std::thread::spawn(move || {
            let mut frames = Vec::new();
            while frames.len() < 2 {
                let mut head = [0; 2];
                client.read_exact(&mut head).unwrap();
                let len = match head[1] {
                    127 => {
                        let mut l = [0; 8];
                        client.read_exact(&mut l).unwrap();
                        u64::from_be_bytes(l) as usize
                    }
                    n => usize::from(n),
                };
                let mut body = vec![0; len];
                client.read_exact(&mut body).unwrap();
                frames.push((head[0], body));
            }
            frames
        });
        handle.set_nonblocking(false).unwrap(); // the writes below may now wait for the reader
        while offset < data.len() {
            offset += link.send(&[IoSlice::new(&data[offset..])]).unwrap();
        }
        link.flush_own().unwrap();
        let frames = reader.join().unwrap();
        assert_eq!(frames[0].0, 0x82);
        assert!(frames[0].1 == payload, "the data frame arrived whole");
        assert_eq!(frames[1], (0x8a, Vec::new()), "then the pong");
    }
}
