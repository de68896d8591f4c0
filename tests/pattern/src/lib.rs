//! The byte pattern every test and benchmark sender writes, the checker every receiver feeds
//! ([`Demux`]), and the few process and port helpers both the tests and chat-bench need. It uses
//! the standard library only, so the benchmark does not pull in the test crate.

mod child;
mod net;

pub use child::ChildGuard;
pub use net::{free_port, is_retry};

/// A byte stream that tells, byte by byte, which of up to [`Pattern::SENDERS`] senders sent it
/// and where it stood in that sender's stream: byte `i` of sender `s` is `s << 4 | i % 16`.
/// Any interleaving of chunks from different senders, split anywhere, can be checked.
#[derive(Debug, Clone, Copy)]
pub struct Pattern;

impl Pattern {
    /// How many distinct senders the pattern can tell apart.
    pub const SENDERS: usize = 16;
    /// The position part repeats with this period.
    pub const PERIOD: usize = 16;

    /// The byte at position `i` of `sender`'s stream.
    pub fn byte(sender: usize, i: usize) -> u8 {
        debug_assert!(sender < Self::SENDERS);
        ((sender << 4) | (i % Self::PERIOD)) as u8
    }

    /// Bytes `start..start + len` of `sender`'s stream.
    pub fn bytes(sender: usize, start: usize, len: usize) -> Vec<u8> {
        assert!(
            sender < Self::SENDERS,
            "the pattern has {} senders",
            Self::SENDERS
        );
        (start..start + len)
            .map(|i| Self::byte(sender, i))
            .collect()
    }
}

/// Checks a received stream against [`Pattern`]: every sender's bytes complete and in order, and
/// optionally no echo, no unknown sender and no more than each sender sent.
///
/// A relay forwards whole chunks, so a sender's bytes arrive in runs. Each run is compared with
/// that sender's expected bytes in blocks (`==` on slices is a `memcmp`), which keeps checking
/// far cheaper than relaying: the load generator measures the relay, not itself.
#[derive(Debug, Clone)]
pub struct Demux {
    /// Bytes seen so far from each sender: also the position its next byte must carry.
    pub seen: [usize; Pattern::SENDERS],
    /// Senders `0..senders` exist; a byte naming another is an error.
    senders: usize,
    /// The receiver's own sender number, if it sends too: its bytes must never come back.
    me: Option<usize>,
    /// Most bytes any one sender sends.
    per_sender: usize,
}

impl Default for Demux {
    /// Accepts any of the [`Pattern::SENDERS`] senders, any number of bytes.
    fn default() -> Self {
        Demux::expecting(Pattern::SENDERS, None, usize::MAX)
    }
}

impl Demux {
    /// A checker for a room of `senders` senders sending `per_sender` bytes each, received by
    /// sender `me` (or by a client that only listens).
    pub fn expecting(senders: usize, me: Option<usize>, per_sender: usize) -> Self {
        assert!(
            senders <= Pattern::SENDERS,
            "the pattern has {} senders",
            Pattern::SENDERS
        );
        Demux {
            seen: [0; Pattern::SENDERS],
            senders,
            me,
            per_sender,
        }
    }

    /// Feeds received bytes; `Err` describes the first byte out of place.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        const BLOCK: usize = 64;
        let mut rest = bytes;
        while let Some(&first) = rest.first() {
            let s = usize::from(first >> 4);
            if s >= self.senders {
                return Err(format!(
                    "byte {first:#04x} names sender {s}, which does not exist"
                ));
            }
            if Some(s) == self.me {
                return Err(format!("received its own bytes back (sender {s} echoed)"));
            }
            let seen = self.seen[s];
            if seen == self.per_sender {
                return Err(format!(
                    "sender {s}: more than the {} bytes it sent",
                    self.per_sender
                ));
            }
            // The longest prefix of `rest` that continues sender `s`'s stream.
            let limit = rest.len().min(self.per_sender - seen);
            let mut run = 0;
            if limit >= BLOCK {
                // The pattern repeats every PERIOD bytes and BLOCK is a multiple of it, so one
                // expected block serves every block of the run.
                let block: [u8; BLOCK] = std::array::from_fn(|i| Pattern::byte(s, seen + i));
                while run + BLOCK <= limit && rest[run..run + BLOCK] == block {
                    run += BLOCK;
                }
            }
            while run < limit && rest[run] == Pattern::byte(s, seen + run) {
                run += 1;
            }
            if run == 0 {
                return Err(format!(
                    "sender {s}: byte {seen} is {first:#04x} but should be {:#04x} (lost, duplicated or out of order)",
                    Pattern::byte(s, seen)
                ));
            }
            self.seen[s] += run;
            rest = &rest[run..];
        }
        Ok(())
    }

    /// The receiver's own sender number, if it sends too.
    pub fn me(&self) -> Option<usize> {
        self.me
    }

    /// Total bytes seen.
    pub fn total(&self) -> usize {
        self.seen.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PER_SENDER: usize = 300;

    /// Feeds `bytes` to a checker for receiver 0 of 3 senders, in reads of `read` bytes.
    fn feed(bytes: &[u8], read: usize) -> Result<Demux, String> {
        let mut demux = Demux::expecting(3, Some(0), PER_SENDER);
        for chunk in bytes.chunks(read) {
            demux.feed(chunk)?;
        }
        Ok(demux)
    }

    /// The whole streams of senders 1 and 2, alternating in runs of `a` and `b` bytes.
    fn interleave(a: usize, b: usize) -> Vec<u8> {
        let (one, two) = (
            Pattern::bytes(1, 0, PER_SENDER),
            Pattern::bytes(2, 0, PER_SENDER),
        );
        let (mut ones, mut twos) = (one.chunks(a), two.chunks(b));
        let mut out = Vec::new();
        loop {
            let (x, y) = (ones.next(), twos.next());
            if x.is_none() && y.is_none() {
                return out;
            }
            out.extend_from_slice(x.unwrap_or_default());
            out.extend_from_slice(y.unwrap_or_default());
        }
    }

    #[test]
    fn demux_accepts_any_interleaving_and_read_size() {
        for (a, b) in [(1, 1), (7, 300), (64, 65), (300, 300), (129, 3)] {
            for read in [1, 5, 64, 1000] {
                let demux = feed(&interleave(a, b), read).expect("valid streams");
                assert_eq!(
                    &demux.seen[..3],
                    &[0, PER_SENDER, PER_SENDER],
                    "runs {a}/{b}, reads of {read}"
                );
            }
        }
    }

    #[test]
    fn demux_rejects_loss_duplication_reordering_echo_and_excess() {
        let good = interleave(64, 100);
        let mut lost = good.clone();
        lost.remove(200);
        let mut duplicated = good.clone();
        duplicated.insert(200, good[200]);
        let mut swapped = good.clone();
        swapped.swap(10, 11);
        let mut echoed = good.clone();
        echoed.insert(70, Pattern::byte(0, 0));
        let mut unknown = good.clone();
        unknown.insert(0, Pattern::byte(5, 0));
        let mut excess = good.clone();
        excess.push(good[good.len() - 1]);
        for (name, bytes) in [
            ("lost", lost),
            ("duplicated", duplicated),
            ("swapped", swapped),
            ("echoed", echoed),
            ("unknown sender", unknown),
            ("excess", excess),
        ] {
            for read in [1, 64, 4096] {
                assert!(
                    feed(&bytes, read).is_err(),
                    "{name} not caught with reads of {read}"
                );
            }
        }
    }
}
