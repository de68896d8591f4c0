//! What each receiver checks: the background senders' bytes (the shared [`Pattern`], through a
//! [`Demux`]) and, in latency runs, the probe sender's timestamped messages.
//!
//! A probe message is [`PROBE_LEN`] bytes, each `0xF0 | nibble`, carrying a `u64` timestamp
//! (nanoseconds since the run's start) high nibble first. Pattern bytes name their sender in the
//! high nibble, so while at most [`MAX_PATTERN_SENDERS_WITH_PROBE`] pattern senders run, every
//! byte `>= 0xF0` is a probe byte and every other byte a pattern byte, however the relay splits
//! and interleaves the chunks.

use relay_pattern::{Demux, Pattern};

/// Bytes per probe message: one nibble of the timestamp each.
pub(crate) const PROBE_LEN: usize = 16;
/// Pattern senders that can run beside a probe sender (the probe takes high nibble 15).
pub(crate) const MAX_PATTERN_SENDERS_WITH_PROBE: usize = Pattern::SENDERS - 1;

/// The probe message carrying `nanos`.
pub(crate) fn encode_probe(nanos: u64) -> [u8; PROBE_LEN] {
    std::array::from_fn(|i| 0xF0 | ((nanos >> (60 - 4 * i)) & 0xF) as u8)
}

/// Whether `b` belongs to a probe message.
fn is_probe_byte(b: u8) -> bool {
    b >= 0xF0
}

/// Index of the first probe byte in `bytes`, or its length. Blocks are scanned without an early
/// exit so the compiler can vectorise the common case: no probe byte at all.
fn first_probe_byte(bytes: &[u8]) -> usize {
    const BLOCK: usize = 64;
    let mut start = 0;
    for block in bytes.chunks_exact(BLOCK) {
        if block.iter().fold(false, |any, &b| any | is_probe_byte(b)) {
            break;
        }
        start += BLOCK;
    }
    bytes[start..]
        .iter()
        .position(|&b| is_probe_byte(b))
        .map_or(bytes.len(), |i| start + i)
}

/// Reassembles probe messages, which may arrive split across reads and interleaved with pattern
/// runs.
#[derive(Debug, Default, Clone)]
struct ProbeDecoder {
    nibbles: usize,
    value: u64,
    /// Complete probes so far.
    received: u64,
    /// The last timestamp decoded: each must be later than the one before.
    last: Option<u64>,
}

/// One receiver's checker.
#[derive(Debug, Clone)]
pub(crate) struct StreamCheck {
    demux: Demux,
    /// Pattern bytes this receiver must get in total.
    expected: usize,
    /// Pattern bytes each sender sends.
    per_sender: usize,
    /// `Some` when this receiver must also decode probes (a probe sender exists and it is not
    /// this receiver).
    probe: Option<ProbeDecoder>,
}

impl StreamCheck {
    /// A checker for a receiver in a room of `senders` pattern senders sending `per_sender` bytes
    /// each; `me` is its own sender number if it is one. `probes` says whether probe messages
    /// arrive here.
    pub(crate) fn new(senders: usize, me: Option<usize>, per_sender: usize, probes: bool) -> Self {
        let others = senders - usize::from(me.is_some());
        StreamCheck {
            demux: Demux::expecting(senders, me, per_sender),
            expected: others * per_sender,
            per_sender,
            probe: probes.then(ProbeDecoder::default),
        }
    }

    /// Feeds received bytes; `on_probe` gets each complete probe's timestamp. `Err` describes the
    /// first byte out of place.
    pub(crate) fn feed(
        &mut self,
        bytes: &[u8],
        mut on_probe: impl FnMut(u64),
    ) -> Result<(), String> {
        let Some(probe) = self.probe.as_mut() else {
            return self.demux.feed(bytes);
        };
        let mut rest = bytes;
        while !rest.is_empty() {
            let k = first_probe_byte(rest);
            if k > 0 {
                self.demux.feed(&rest[..k])?;
                rest = &rest[k..];
                continue;
            }
            let run = rest
                .iter()
                .position(|&b| !is_probe_byte(b))
                .unwrap_or(rest.len());
            for &b in &rest[..run] {
                probe.value = probe.value << 4 | u64::from(b & 0xF);
                probe.nibbles += 1;
                if probe.nibbles == PROBE_LEN {
                    let ts = probe.value;
                    if probe.last.is_some_and(|last| ts <= last) {
                        return Err(format!(
                            "probe {} carries {ts} ns, not later than the one before (lost, duplicated or reordered)",
                            probe.received
                        ));
                    }
                    probe.last = Some(ts);
                    probe.received += 1;
                    probe.nibbles = 0;
                    probe.value = 0;
                    on_probe(ts);
                }
            }
            rest = &rest[run..];
        }
        Ok(())
    }

    /// Whether every byte of some sender has arrived here: the relay has read all that sender
    /// had to send, so from now on fewer senders load it.
    pub(crate) fn a_sender_complete(&self) -> bool {
        self.per_sender > 0 && self.demux.seen.contains(&self.per_sender)
    }

    /// Pattern bytes received so far.
    pub(crate) fn pattern_bytes(&self) -> usize {
        self.demux.total()
    }

    /// Whether every pattern byte this receiver expects has arrived.
    pub(crate) fn pattern_complete(&self) -> bool {
        self.demux.total() == self.expected
    }

    /// Pattern bytes this receiver expects.
    pub(crate) fn expected(&self) -> usize {
        self.expected
    }

    /// Whether this receiver decodes probe messages.
    pub(crate) fn expects_probes(&self) -> bool {
        self.probe.is_some()
    }

    /// Complete probes received so far.
    pub(crate) fn probes(&self) -> u64 {
        self.probe.as_ref().map_or(0, |p| p.received)
    }

    /// Whether a probe message is half-way through.
    pub(crate) fn probe_partial(&self) -> bool {
        self.probe.as_ref().is_some_and(|p| p.nibbles != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PER: usize = 256;

    /// Sender 1's and sender 2's whole streams, in 64-byte chunks, with a probe after each chunk
    /// pair; returns the bytes and the probe timestamps.
    fn mixed() -> (Vec<u8>, Vec<u64>) {
        let (a, b) = (Pattern::bytes(1, 0, PER), Pattern::bytes(2, 0, PER));
        let mut out = Vec::new();
        let mut stamps = Vec::new();
        for (k, (x, y)) in a.chunks(64).zip(b.chunks(64)).enumerate() {
            out.extend_from_slice(x);
            let ts = 1_000_000 * (k as u64 + 1) + 0xABCD;
            out.extend_from_slice(&encode_probe(ts));
            stamps.push(ts);
            out.extend_from_slice(y);
        }
        (out, stamps)
    }

    fn run(bytes: &[u8], read: usize, probes: bool) -> Result<(StreamCheck, Vec<u64>), String> {
        let mut check = StreamCheck::new(3, Some(0), PER, probes);
        let mut got = Vec::new();
        for chunk in bytes.chunks(read) {
            check.feed(chunk, |ts| got.push(ts))?;
        }
        Ok((check, got))
    }

    #[test]
    fn probe_round_trips_every_nibble() {
        for v in [0, 1, 0x0123_4567_89AB_CDEF, u64::MAX, u64::MAX - 1] {
            let mut d = StreamCheck::new(0, None, 0, true);
            let mut got = None;
            d.feed(&encode_probe(v), |ts| got = Some(ts)).unwrap();
            assert_eq!(got, Some(v));
            assert!(encode_probe(v).iter().all(|&b| is_probe_byte(b)));
        }
    }

    #[test]
    fn pattern_and_probes_separate_at_any_read_size() {
        let (bytes, stamps) = mixed();
        for read in [1, 3, 16, 17, 64, 100, 4096] {
            let (check, got) = run(&bytes, read, true).unwrap_or_else(|e| panic!("{read}: {e}"));
            assert_eq!(got, stamps, "reads of {read}");
            assert!(check.pattern_complete());
            assert_eq!(check.probes(), stamps.len() as u64);
            assert!(!check.probe_partial());
        }
    }

    #[test]
    fn detects_dropped_corrupted_reordered_and_echoed_bytes() {
        let (good, _) = mixed();
        let pattern_at = good.iter().position(|&b| b >> 4 == 2).unwrap() + 5;
        let mut dropped = good.clone();
        dropped.remove(pattern_at);
        let mut corrupted = good.clone();
        corrupted[pattern_at] ^= 0x01;
        let mut reordered = good.clone();
        reordered.swap(pattern_at, pattern_at + 1);
        let mut echoed = good.clone();
        echoed.insert(pattern_at, Pattern::byte(0, 0));
        // Two probes swapped: timestamps go backwards.
        let mut probes_swapped = good.clone();
        let first = good.iter().position(|&b| is_probe_byte(b)).unwrap();
        let second = first + PROBE_LEN + 64 + 64;
        assert!(is_probe_byte(good[second]));
        let (head, tail) = probes_swapped.split_at_mut(second);
        head[first..first + PROBE_LEN].swap_with_slice(&mut tail[..PROBE_LEN]);
        for (name, bytes) in [
            ("dropped", dropped),
            ("corrupted", corrupted),
            ("reordered", reordered),
            ("echoed", echoed),
            ("probes swapped", probes_swapped),
        ] {
            for read in [1, 64, 4096] {
                let outcome = run(&bytes, read, true);
                let incomplete = outcome.as_ref().is_ok_and(|(c, _)| !c.pattern_complete());
                assert!(
                    outcome.is_err() || incomplete,
                    "{name} not caught with reads of {read}"
                );
            }
        }
    }

    #[test]
    fn probe_bytes_are_rejected_where_no_probe_is_expected() {
        let (good, _) = mixed();
        assert!(run(&good, 64, false).is_err());
    }
}
