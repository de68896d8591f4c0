//! Line mode: what a client's reads become when the room relays whole lines instead of raw
//! chunks. Pure functions over byte slices, so every rule is tested without sockets.
//!
//! - A message is a complete line, ending in `\n` (`\r\n` is passed through as is). Bytes after a
//!   sender's last newline wait in its own buffer until the newline arrives, so two senders' lines
//!   never interleave inside a line: each relayed chunk holds only whole lines of one sender.
//! - A line whose content (without its terminator) is longer than `max_line` is an error: the
//!   sender is disconnected, so memory stays bounded whatever a client sends.
//! - With `tag`, every forwarded line is prefixed with the sender's id: `[7] hello`. Tags are per
//!   line, not per read.
//! - When a sender leaves, its unterminated tail is delivered with a newline added.

use std::fmt;

/// How a client's bytes become messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Framing {
    /// The seed's behaviour: every chunk read is relayed unchanged, whatever it holds.
    #[default]
    Raw,
    /// Whole lines only, with the options given.
    Lines(LineOptions),
}

/// Options of [`Framing::Lines`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineOptions {
    /// Longest line content allowed, in bytes, not counting its `\n` or `\r\n`.
    pub max_line: usize,
    /// Prefix every forwarded line with `[id] `.
    pub tag: bool,
    /// Tell the room when a client joins or leaves (`* 7 joined`, `* 7 left`).
    pub announce: bool,
}

impl Default for LineOptions {
    fn default() -> Self {
        LineOptions {
            max_line: 64 * 1024,
            tag: false,
            announce: false,
        }
    }
}

/// A line longer than [`LineOptions::max_line`] arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineTooLong {
    /// The length seen so far of the offending line.
    pub(crate) len: usize,
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a line of at least {} bytes", self.len)
    }
}

/// Content length of a line that ends in `\n`, without `\n` or `\r\n`.
fn content_len(line: &[u8]) -> usize {
    let without_lf = line.len() - usize::from(line.ends_with(b"\n"));
    without_lf - usize::from(line[..without_lf].ends_with(b"\r"))
}

/// Appends `line` (which ends in `\n`) to `out`, tagged when asked.
fn emit(out: &mut Vec<u8>, line: &[u8], id: u64, tag: bool) {
    if tag {
        out.push(b'[');
        out.extend_from_slice(id.to_string().as_bytes());
        out.extend_from_slice(b"] ");
    }
    out.extend_from_slice(line);
}

/// Feeds one read of client `id` through its `partial` line buffer. Every line completed by
/// `data` is appended to `out` (cleared first); the bytes after the last newline stay in
/// `partial`. Returns how many lines were completed.
///
/// # Errors
///
/// [`LineTooLong`] if a completed line, or the unterminated tail, exceeds `max_line`. `out` and
/// `partial` are then unspecified; the caller disconnects the client.
pub(crate) fn feed(
    partial: &mut Vec<u8>,
    data: &[u8],
    id: u64,
    opts: &LineOptions,
    out: &mut Vec<u8>,
) -> Result<usize, LineTooLong> {
    out.clear();
    let Some(last_newline) = data.iter().rposition(|&b| b == b'\n') else {
        partial.extend_from_slice(data);
        return check_tail(partial, opts);
    };
    let (complete, tail) = data.split_at(last_newline + 1);
    let mut lines = 0;
    let mut rest = complete;
    if !partial.is_empty() {
        // The first newline in `data` ends the line `partial` began.
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        partial.extend_from_slice(&rest[..end]);
        rest = &rest[end..];
        let len = content_len(partial);
        if len > opts.max_line {
            return Err(LineTooLong { len });
        }
        emit(out, partial, id, opts.tag);
        partial.clear();
        lines += 1;
    }
    if opts.tag || rest.len() > opts.max_line {
        // Walk the lines: each needs its tag, or one of them may be too long.
        for line in rest.split_inclusive(|&b| b == b'\n') {
            let len = content_len(line);
            if len > opts.max_line {
                return Err(LineTooLong { len });
            }
            emit(out, line, id, opts.tag);
            lines += 1;
        }
    } else {
        // No tags, and too short for any line to be too long: the lines go out as they came.
        lines += rest.iter().filter(|&&b| b == b'\n').count();
        out.extend_from_slice(rest);
    }
    partial.extend_from_slice(tail);
    if partial.is_empty() && partial.capacity() > IDLE_PARTIAL {
        // A long line passed through; do not hold its buffer for the life of the connection.
        *partial = Vec::new();
    }
    check_tail(partial, opts).map(|_| lines)
}

/// Buffer a client's partial line may keep while empty; larger ones are given back.
const IDLE_PARTIAL: usize = 4096;

fn check_tail(partial: &[u8], opts: &LineOptions) -> Result<usize, LineTooLong> {
    // A tail may end in the `\r` of a `\r\n` still on its way; that byte does not count.
    let len = partial.len() - usize::from(partial.ends_with(b"\r"));
    if len > opts.max_line {
        Err(LineTooLong { len })
    } else {
        Ok(0)
    }
}

/// The unterminated tail of a client that is leaving, as one last line with a newline added, in
/// `out` (cleared first). Returns whether there was anything to deliver.
pub(crate) fn finish(
    partial: &mut Vec<u8>,
    id: u64,
    opts: &LineOptions,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    if partial.is_empty() {
        return false;
    }
    partial.push(b'\n');
    emit(out, partial, id, opts.tag);
    partial.clear();
    true
}

/// A notice for the room, as a line: `* 7 joined`, `* 7 left`.
pub(crate) fn notice(id: u64, what: &str) -> Vec<u8> {
    format!("* {id} {what}\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(max_line: usize, tag: bool) -> LineOptions {
        LineOptions {
            max_line,
            tag,
            announce: false,
        }
    }

    /// Feeds the reads in order; returns what was emitted per read and the final tail.
    fn run(reads: &[&[u8]], o: &LineOptions) -> Result<(Vec<Vec<u8>>, Vec<u8>), LineTooLong> {
        let mut partial = Vec::new();
        let mut out = Vec::new();
        let mut emitted = Vec::new();
        for read in reads {
            feed(&mut partial, read, 7, o, &mut out)?;
            emitted.push(out.clone());
        }
        Ok((emitted, partial))
    }

    #[test]
    fn partial_lines_wait_for_their_newline() {
        let (emitted, tail) = run(&[b"hel", b"lo\nwor", b"ld\n"], &opts(100, false)).unwrap();
        assert_eq!(
            emitted,
            vec![b"".to_vec(), b"hello\n".to_vec(), b"world\n".to_vec()]
        );
        assert!(tail.is_empty());
    }

    #[test]
    fn many_lines_in_one_read_stay_one_chunk_and_are_counted() {
        let mut partial = Vec::new();
        let mut out = Vec::new();
        let n = feed(
            &mut partial,
            b"a\nb\r\nc\nd",
            1,
            &opts(100, false),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            (n, &out[..], &partial[..]),
            (3, &b"a\nb\r\nc\n"[..], &b"d"[..])
        );
    }

    #[test]
    fn tags_go_on_every_line_not_every_read() {
        let (emitted, _) = run(&[b"he", b"llo\nsecond\nthi", b"rd\n"], &opts(100, true)).unwrap();
        assert_eq!(
            emitted,
            vec![
                b"".to_vec(),
                b"[7] hello\n[7] second\n".to_vec(),
                b"[7] third\n".to_vec()
            ]
        );
    }

    #[test]
    fn crlf_is_kept_and_does_not_count_toward_the_limit() {
        let (emitted, _) = run(&[b"abcd\r", b"\n"], &opts(4, false)).unwrap();
        assert_eq!(emitted[1], b"abcd\r\n");
        assert!(run(&[b"abcde\r\n"], &opts(4, false)).is_err());
    }

    #[test]
    fn a_line_over_the_limit_is_refused_however_it_arrives() {
        let o = opts(8, false);
        assert!(run(&[b"123456789\n"], &o).is_err(), "complete in one read");
        assert!(
            run(&[b"1234", b"56789\n"], &o).is_err(),
            "completed across reads"
        );
        assert!(run(&[b"123456789"], &o).is_err(), "unterminated tail");
        assert!(
            run(&[b"ok\n123456789\nok\n"], &o).is_err(),
            "in the middle of a read"
        );
        assert!(
            run(&[b"12345678\n", b"12345678"], &o).is_ok(),
            "exactly the limit"
        );
    }

    #[test]
    fn the_limit_bounds_what_is_held() {
        // A client streaming bytes without a newline is refused as soon as its tail passes the
        // limit: a partial line never holds more than the limit plus one read.
        let o = opts(1000, false);
        let mut partial = Vec::new();
        let mut out = Vec::new();
        let mut fed = 0;
        let err = loop {
            match feed(&mut partial, &[b'x'; 300], 1, &o, &mut out) {
                Ok(_) => fed += 300,
                Err(e) => break e,
            }
        };
        assert_eq!(fed, 900);
        assert_eq!(err.len, 1200);
    }

    #[test]
    fn a_long_line_s_buffer_is_given_back() {
        let o = opts(100_000, false);
        let mut partial = Vec::new();
        let mut out = Vec::new();
        feed(&mut partial, &[b'x'; 50_000], 1, &o, &mut out).unwrap();
        assert!(partial.capacity() >= 50_000);
        feed(&mut partial, b"\n", 1, &o, &mut out).unwrap();
        assert_eq!(out.len(), 50_001);
        assert!(partial.capacity() <= IDLE_PARTIAL, "{}", partial.capacity());
    }

    #[test]
    fn a_leaving_sender_s_tail_gets_a_newline() {
        let o = opts(100, true);
        let mut partial = b"bye".to_vec();
        let mut out = Vec::new();
        assert!(finish(&mut partial, 3, &o, &mut out));
        assert_eq!(out, b"[3] bye\n");
        assert!(
            !finish(&mut partial, 3, &o, &mut out),
            "nothing left the second time"
        );
        assert_eq!(notice(3, "left"), b"* 3 left\n");
    }
}
