//! The outbound queue of one connection: shared chunks waiting to be written, flushed with
//! vectored writes, resumed at the exact byte after a partial write. No OS calls: it writes to any
//! `io::Write`, which is how the unit tests below drive it without sockets.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// How many chunks one vectored write hands the OS. std clamps this to the platform's `IOV_MAX`
/// (1024 on Linux and macOS); 512 slices cost 8 KiB of stack and carry 32 KiB of 64-byte messages.
pub const MAX_SLICES: usize = 512;

/// Below this many slots the deque is never shrunk: small queues keep their allocation.
const SHRINK_FLOOR: usize = 64;

/// Bytes waiting to be sent to one client.
///
/// Each chunk is shared (`Rc<[u8]>`) with every other queue it was pushed to: fan-out to N clients
/// costs N pointer pushes, and memory held is the union of pending chunks, not their sum.
#[derive(Debug, Default)]
pub struct OutQueue {
    /// Pending chunks, oldest first. Never holds an empty chunk.
    chunks: VecDeque<Rc<[u8]>>,
    /// Bytes of the front chunk already written. Always lies in `0..chunks[0].len()`, and is 0
    /// when the queue is empty.
    offset: usize,
    /// Unsent bytes: the sum of the chunks' lengths minus `offset`.
    len: usize,
}

impl OutQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Unsent bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many chunks are (partly) unsent.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Appends a shared chunk. Empty chunks are ignored.
    pub fn push(&mut self, chunk: Rc<[u8]>) {
        if chunk.is_empty() {
            return;
        }
        self.len += chunk.len();
        self.chunks.push_back(chunk);
    }

    /// Drops everything pending and returns how many bytes that was.
    pub fn clear(&mut self) -> usize {
        let dropped = self.len;
        self.chunks = VecDeque::new();
        self.offset = 0;
        self.len = 0;
        dropped
    }

    /// Fills `slices` with the unsent bytes, front first, and returns how many it filled.
    pub fn fill_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slot, (i, chunk)) in slices.iter_mut().zip(self.chunks.iter().enumerate()) {
            let start = if i == 0 { self.offset } else { 0 };
            *slot = IoSlice::new(&chunk[start..]);
            filled += 1;
        }
        filled
    }

    /// Marks `n` more bytes as written: pops whole chunks and moves the front offset.
    ///
    /// `n` larger than [`len`](Self::len) is clamped (a writer that claims more than it was given
    /// is broken, but must not corrupt the queue).
    pub fn advance(&mut self, n: usize) {
        let mut n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let front_left = self.chunks[0].len() - self.offset;
            if n < front_left {
                self.offset += n;
                break;
            }
            n -= front_left;
            self.offset = 0;
            self.chunks.pop_front();
        }
        self.shrink_if_sparse();
    }

    /// Writes until the queue is empty or the writer would block, resuming at the exact byte.
    ///
    /// Returns the bytes written by this call. `WouldBlock` is not an error: it ends the call with
    /// bytes still queued. `Interrupted` is retried.
    ///
    /// # Errors
    ///
    /// Any other error from the writer, and `WriteZero` if it accepts nothing.
    pub fn write_to<W: Write + ?Sized>(&mut self, writer: &mut W) -> io::Result<usize> {
        self.write_with(|bufs| writer.write_vectored(bufs))
    }

    /// [`OutQueue::write_to`] through a vectored send function (a link's `send`), with the same
    /// results and errors.
    ///
    /// # Errors
    ///
    /// As [`OutQueue::write_to`].
    pub fn write_with(
        &mut self,
        mut send: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut written = 0;
        while !self.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let filled = self.fill_slices(&mut slices);
            match send(&slices[..filled]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.advance(n);
                    written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// After a backlog drains, give back the deque's slots (16 bytes each) instead of holding the
    /// high-water mark for the life of the connection.
    fn shrink_if_sparse(&mut self) {
        let capacity = self.chunks.capacity();
        if capacity > SHRINK_FLOOR && self.chunks.len() * 4 < capacity {
            self.chunks
                .shrink_to((self.chunks.len() * 2).max(SHRINK_FLOOR));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(bytes: &[u8]) -> Rc<[u8]> {
        Rc::from(bytes)
    }

    /// A writer that accepts at most `limit` bytes per call, then reports `WouldBlock` once
    /// `budget` is spent, recording every call's slice count.
    struct Throttled {
        out: Vec<u8>,
        limit: usize,
        budget: usize,
        calls: Vec<usize>,
    }

    impl Throttled {
        fn new(limit: usize, budget: usize) -> Self {
            Throttled {
                out: Vec::new(),
                limit,
                budget,
                calls: Vec::new(),
            }
        }
    }

    impl Write for Throttled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls.push(bufs.len());
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut room = self.limit.min(self.budget);
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(room);
                self.out.extend_from_slice(&buf[..take]);
                room -= take;
                n += take;
                if room == 0 {
                    break;
                }
            }
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn byte_count_tracks_push_and_advance() {
        let mut q = OutQueue::new();
        q.push(chunk(b"hello"));
        q.push(chunk(b""));
        q.push(chunk(b" world"));
        assert_eq!(q.len(), 11);
        assert_eq!(q.chunk_count(), 2, "empty chunks are not queued");
        q.advance(3);
        assert_eq!(q.len(), 8);
        q.advance(2);
        assert_eq!(q.chunk_count(), 1, "a fully written chunk is popped");
        q.advance(100);
        assert!(q.is_empty());
        assert_eq!(q.chunk_count(), 0);
    }

    #[test]
    fn partial_write_resumes_at_exact_byte() {
        let mut q = OutQueue::new();
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        for piece in data.chunks(777) {
            q.push(chunk(piece));
        }
        // Seven bytes per call, 1,000 bytes before the "socket buffer" is full.
        let mut w = Throttled::new(7, 1_000);
        assert_eq!(q.write_to(&mut w).unwrap(), 1_000);
        assert_eq!(q.len(), 9_000);
        // The "socket" drains; the rest goes out and continues exactly where it stopped.
        w.budget = usize::MAX;
        assert_eq!(q.write_to(&mut w).unwrap(), 9_000);
        assert!(q.is_empty());
        assert_eq!(w.out, data);
    }

    #[test]
    fn one_vectored_write_carries_many_chunks() {
        let mut q = OutQueue::new();
        for i in 0..100u8 {
            q.push(chunk(&[i; 64]));
        }
        let mut w = Throttled::new(usize::MAX, usize::MAX);
        assert_eq!(q.write_to(&mut w).unwrap(), 6_400);
        assert_eq!(w.calls, vec![100], "all chunks in one call");
    }

    #[test]
    fn vectored_batches_are_capped() {
        let mut q = OutQueue::new();
        for _ in 0..MAX_SLICES + 10 {
            q.push(chunk(b"x"));
        }
        let mut w = Throttled::new(usize::MAX, usize::MAX);
        q.write_to(&mut w).unwrap();
        assert_eq!(w.calls, vec![MAX_SLICES, 10]);
    }

    #[test]
    fn front_slice_starts_at_offset() {
        let mut q = OutQueue::new();
        q.push(chunk(b"abcdef"));
        q.push(chunk(b"gh"));
        q.advance(4);
        let mut slices = [IoSlice::new(&[]); 4];
        let n = q.fill_slices(&mut slices);
        assert_eq!(n, 2);
        assert_eq!(&*slices[0], b"ef");
        assert_eq!(&*slices[1], b"gh");
    }

    #[test]
    fn would_block_is_not_an_error_and_writes_nothing() {
        let mut q = OutQueue::new();
        q.push(chunk(b"pending"));
        let mut w = Throttled::new(usize::MAX, 0);
        assert_eq!(q.write_to(&mut w).unwrap(), 0);
        assert_eq!(q.len(), 7);
    }

    #[test]
    fn write_zero_is_an_error() {
        struct Zero;
        impl Write for Zero {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut q = OutQueue::new();
        q.push(chunk(b"x"));
        let err = q.write_to(&mut Zero).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
        assert_eq!(q.len(), 1, "nothing is lost on error");
    }

    #[test]
    fn chunks_are_shared_not_copied() {
        let shared = chunk(b"fan-out");
        let mut a = OutQueue::new();
        let mut b = OutQueue::new();
        a.push(Rc::clone(&shared));
        b.push(Rc::clone(&shared));
        assert_eq!(Rc::strong_count(&shared), 3);
        a.advance(7);
        assert_eq!(Rc::strong_count(&shared), 2, "written chunk is released");
        assert_eq!(b.clear(), 7);
        assert_eq!(Rc::strong_count(&shared), 1);
    }

    #[test]
    fn drained_backlog_gives_memory_back() {
        let mut q = OutQueue::new();
        for _ in 0..100_000 {
            q.push(chunk(b"y"));
        }
        assert!(q.chunks.capacity() >= 100_000);
        q.advance(99_990);
        assert!(
            q.chunks.capacity() < 1_000,
            "capacity {} after drain",
            q.chunks.capacity()
        );
        assert_eq!(q.len(), 10);
    }
}
