//! Property test of the outbound queue: under any interleaving of pushes (shared chunks, empty
//! ones included), partial writes, blocked writes and cuts, the bytes that come out are exactly
//! the bytes that went in, in order, and the queue's count of pending bytes is exact.

use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use proptest::prelude::*;
use server_core::OutQueue;

#[derive(Debug, Clone)]
enum Op {
    /// Queue a chunk of this length (its bytes continue a running counter).
    Push(usize),
    /// One flush into a writer that takes at most `budget` bytes in all (0: would block at
    /// once), in calls of at most `per_call` bytes.
    Write { budget: usize, per_call: usize },
    /// Cut the client: everything pending is dropped.
    Cut,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..3000).prop_map(Op::Push),
        4 => (0usize..10_000, 1usize..5000)
            .prop_map(|(budget, per_call)| Op::Write { budget, per_call }),
        1 => Just(Op::Cut),
    ]
}

/// Takes at most `per_call` bytes per call until `budget` is spent, then would block.
struct Sink {
    out: Vec<u8>,
    budget: usize,
    per_call: usize,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut room = self.budget.min(self.per_call);
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let before = self.out.len();
        for buf in bufs {
            let take = buf.len().min(room);
            self.out.extend_from_slice(&buf[..take]);
            room -= take;
            if room == 0 {
                break;
            }
        }
        let n = self.out.len() - before;
        self.budget -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn accounting_is_exact_under_any_interleaving(ops in proptest::collection::vec(op(), 1..60)) {
        let mut queue = OutQueue::new();
        // The model: bytes pending, in order.
        let mut pending: Vec<u8> = Vec::new();
        let mut next: usize = 0;
        let (mut pushed, mut written, mut dropped) = (0usize, 0usize, 0usize);
        for op in ops {
            match op {
                Op::Push(len) => {
                    let bytes: Vec<u8> = (next..next + len).map(|i| (i % 251) as u8).collect();
                    next += len;
                    let chunk: Rc<[u8]> = Rc::from(bytes.as_slice());
                    // The same chunk is shared with another receiver's queue, as in a fan-out.
                    let _other_receiver = Rc::clone(&chunk);
                    queue.push(chunk);
                    pending.extend_from_slice(&bytes);
                    pushed += len;
                }
                Op::Write { budget, per_call } => {
                    let mut sink = Sink { out: Vec::new(), budget, per_call };
                    let n = queue.write_to(&mut sink).expect("a would-block is not an error");
                    prop_assert_eq!(n, sink.out.len());
                    prop_assert_eq!(n, budget.min(pending.len()));
                    prop_assert_eq!(&sink.out[..], &pending[..n]);
                    pending.drain(..n);
                    written += n;
                }
                Op::Cut => {
                    let n = queue.clear();
                    prop_assert_eq!(n, pending.len());
                    pending.clear();
                    dropped += n;
                }
            }
            prop_assert_eq!(queue.len(), pending.len());
            prop_assert_eq!(queue.is_empty(), pending.is_empty());
            prop_assert_eq!(pushed, written + dropped + queue.len());
        }
    }
}
