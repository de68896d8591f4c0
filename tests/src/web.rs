//! WebSocket clients for the tests of the web door (`--http`, `/ws`): a well-behaved one
//! (tungstenite's client, which masks and answers pings) and raw frames for the abuse cases, so
//! a test sees exactly what the server wrote. Every read is bounded by [`TIMEOUT`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use tungstenite::protocol::WebSocket;
use tungstenite::Message;

use crate::{connect, TIMEOUT};

/// A WebSocket client over a loopback TCP stream.
pub type WsClient = WebSocket<TcpStream>;

/// Opens `ws://{http}/ws` with tungstenite's client (no `Origin`: not a browser), the handshake
/// and every later read bounded by [`TIMEOUT`].
#[track_caller]
pub fn ws_connect(http: SocketAddr) -> WsClient {
    let stream = connect(http);
    let (client, response) = tungstenite::client(format!("ws://{http}/ws"), stream)
        .unwrap_or_else(|e| panic!("WebSocket handshake with {http}: {e}"));
    assert_eq!(response.status().as_u16(), 101);
    client
}

/// The next data message's payload and whether it was text, skipping pings and pongs (which
/// tungstenite answers). Panics on a close, an error or after [`TIMEOUT`].
#[track_caller]
pub fn ws_next(client: &mut WsClient) -> (Vec<u8>, bool) {
    loop {
        match client.read() {
            Ok(Message::Text(text)) => return (text.as_bytes().to_vec(), true),
            Ok(Message::Binary(data)) => return (data.to_vec(), false),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
            Ok(Message::Close(frame)) => panic!("closed by the server: {frame:?}"),
            Err(e) => panic!("no WebSocket message: {e}"),
        }
    }
}

/// Sends one binary message.
#[track_caller]
pub fn ws_send(client: &mut WsClient, payload: &[u8]) {
    client
        .send(Message::Binary(payload.to_vec().into()))
        .expect("send a WebSocket message");
}

/// Sends one text message.
#[track_caller]
pub fn ws_send_text(client: &mut WsClient, text: &str) {
    client
        .send(Message::Text(text.into()))
        .expect("send a WebSocket message");
}

/// Writes an upgrade request for `/ws` with `extra` header lines (each ending in CRLF) and
/// `then` right after it (frames sent before the answer), and reads the answer's head (a byte at
/// a time, so no frame behind it is taken): the stream and the status.
#[track_caller]
pub fn ws_raw_upgrade(http: SocketAddr, extra: &str, then: &[u8]) -> (TcpStream, u16) {
    let mut stream = connect(http);
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {http}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(then);
    stream.write_all(&bytes).expect("send the upgrade request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "no whole answer head ({other:?}): {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let status = String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {:?}", String::from_utf8_lossy(&head)));
    (stream, status)
}

/// One client frame: `opcode`, final or not, masked (as a client must) or not.
pub fn frame(opcode: u8, payload: &[u8], fin: bool, masked: bool) -> Vec<u8> {
    let mut out = vec![opcode | if fin { 0x80 } else { 0 }];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// One server frame read off a raw stream: opcode (with the FIN bit cleared) and payload.
#[track_caller]
pub fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut head = [0; 2];
    stream.read_exact(&mut head).expect("a frame's head");
    assert_eq!(head[1] & 0x80, 0, "a server frame must not be masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut l = [0; 2];
            stream.read_exact(&mut l).unwrap();
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0; 8];
            stream.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0; len as usize];
    stream.read_exact(&mut payload).expect("a frame's payload");
    (head[0] & 0x0f, payload)
}

/// Reads frames until a close frame; returns its status code. Panics if the stream ends first.
#[track_caller]
pub fn read_close_code(stream: &mut TcpStream) -> u16 {
    loop {
        let (opcode, payload) = read_frame(stream);
        if opcode == 0x8 {
            assert!(payload.len() >= 2, "a close frame without a code");
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}
