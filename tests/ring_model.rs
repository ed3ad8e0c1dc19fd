//! The ring against a model: a `VecDeque` of sequence numbers.
//!
//! Random interleavings of partial sends and receives, through the closure
//! API (writing or consuming only some of the slots lent) and the item and
//! slice helpers, on a real ring (memfd, mirrored mapping, wake-up sockets) with
//! capacities from 1 to 6144 items, powers of two and not, and item sizes
//! from 6 to 12288 bytes. After every step the ring must agree with the
//! model: the items received are the model's front, `len()` is the model's
//! length, `Full` exactly when the model is at capacity, `Empty` exactly
//! when it is empty, and every run lent is at most the free space (or the
//! ready items) and correct across the wrap.

use std::cell::Cell;
use std::collections::VecDeque;
use std::mem::MaybeUninit;

use bytemuck::{Pod, Zeroable};
use fdring::{channel, Error, Receiver, Sender};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// A 3000-byte item: not a power of two, 8 bytes of it aligned to 1.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Bytes3000 {
    a: [u8; 2048],
    b: [u8; 512],
    c: [u8; 256],
    d: [u8; 128],
    e: [u8; 32],
    f: [u8; 24],
}

/// The item with sequence number `seq`: its first bytes are `seq` (so that
/// items are distinct), the rest a pattern derived from it (so that a torn
/// or misplaced copy shows).
fn make<T: Pod>(seq: u64) -> T {
    let mut item = T::zeroed();
    let bytes = bytemuck::bytes_of_mut(&mut item);
    let head = bytes.len().min(8);
    bytes[..head].copy_from_slice(&seq.to_le_bytes()[..head]);
    // Eight bytes at a time: debug builds are slow at byte loops.
    let mut word = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in bytes[head..].chunks_mut(8) {
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
        word = word.rotate_left(7).wrapping_add(seq);
    }
    item
}

/// Asserts that `items` are the first `items.len()` of the items numbered
/// `seqs`, in order.
fn assert_items<T: Pod>(items: &[T], seqs: impl IntoIterator<Item = u64>, what: &str) {
    let mut seqs = seqs.into_iter();
    for (i, item) in items.iter().enumerate() {
        let seq = seqs
            .next()
            .unwrap_or_else(|| panic!("{what}: item {i} is one too many"));
        let expected = make::<T>(seq);
        assert!(
            bytemuck::bytes_of(item) == bytemuck::bytes_of(&expected),
            "{what}: item {i} is not item #{seq}"
        );
    }
}

/// How many items an operation asks for, relative to the capacity.
#[derive(Debug, Clone, Copy)]
enum Amount {
    Zero,
    One,
    Few(u8),
    MostButOne,
    All,
    MoreThanAll,
    Fraction(u16),
}

impl Amount {
    fn of(self, cap: usize) -> usize {
        match self {
            Amount::Zero => 0,
            Amount::One => 1,
            Amount::Few(n) => 2 + usize::from(n % 8),
            Amount::MostButOne => cap.saturating_sub(1),
            Amount::All => cap,
            Amount::MoreThanAll => cap + 1,
            Amount::Fraction(f) => usize::from(f) * (cap + 1) / 65536,
        }
    }
}

fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        1 => Just(Amount::Zero),
        2 => Just(Amount::One),
        3 => any::<u8>().prop_map(Amount::Few),
        1 => Just(Amount::MostButOne),
        1 => Just(Amount::All),
        1 => Just(Amount::MoreThanAll),
        3 => any::<u16>().prop_map(Amount::Fraction),
    ]
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// `try_send_with`, writing this many of the slots lent (at most all).
    SendWith(Amount),
    /// `try_send` of one item.
    Send,
    /// `try_send_slice` of this many items.
    TrySendSlice(Amount),
    /// `send_slice` of this many items, cut to the free space so that it
    /// cannot block this single thread.
    SendSlice(Amount),
    /// `try_recv_with`, consuming this many of the items lent (at most all).
    RecvWith(Amount),
    /// `try_recv` of one item.
    Recv,
    /// `try_recv_slice` into a buffer of this many items.
    TryRecvSlice(Amount),
    /// `recv_slice` into a buffer of this many items, only when the model
    /// has items (so that it cannot block).
    RecvSlice(Amount),
    /// `len`, `is_empty`, `is_full` on both ends.
    Len,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => amount().prop_map(Op::SendWith),
        2 => Just(Op::Send),
        2 => amount().prop_map(Op::TrySendSlice),
        1 => amount().prop_map(Op::SendSlice),
        4 => amount().prop_map(Op::RecvWith),
        2 => Just(Op::Recv),
        2 => amount().prop_map(Op::TryRecvSlice),
        1 => amount().prop_map(Op::RecvSlice),
        1 => Just(Op::Len),
    ]
}

/// The model, and what the test saw of the ring's runs.
struct Model {
    cap: usize,
    items: VecDeque<u64>,
    next: u64,
    /// Items received in total: the read position is `received % cap`.
    received: u64,
    /// Receive runs that crossed the end of the data region.
    wrapped_runs: usize,
}

impl Model {
    fn free(&self) -> usize {
        self.cap - self.items.len()
    }

    fn check_len<T: Pod>(&self, tx: &mut Sender<T>, rx: &mut Receiver<T>) {
        let len = self.items.len();
        assert_eq!(tx.len(), len, "sender len");
        assert_eq!(rx.len(), len, "receiver len");
        assert_eq!(tx.is_empty(), len == 0);
        assert_eq!(rx.is_empty(), len == 0);
        assert_eq!(tx.is_full(), len == self.cap);
        assert_eq!(rx.is_full(), len == self.cap);
        assert_eq!(tx.slots(), self.cap - len, "sender slots");
        assert_eq!(rx.slots(), len, "receiver slots");
    }

    /// Checks a run of slots lent to a sender's closure: every free slot.
    fn check_send_run(&self, lent: usize) {
        assert_eq!(lent, self.free(), "a closure is lent every free slot");
    }

    /// Checks a run of items lent to a receiver's closure: they are the
    /// model's front, across the wrap too.
    fn check_recv_run<T: Pod>(&mut self, items: &[T]) {
        assert_eq!(
            items.len(),
            self.items.len(),
            "a closure is lent every ready item"
        );
        assert_items(items, self.items.iter().copied(), "lent run");
        let start = (self.received % self.cap as u64) as usize;
        if start + items.len() > self.cap {
            self.wrapped_runs += 1;
        }
    }

    fn push(&mut self, n: usize) {
        for _ in 0..n {
            self.items.push_back(self.next);
            self.next += 1;
        }
    }

    fn pop(&mut self, n: usize) {
        self.items.drain(..n);
        self.received += n as u64;
    }
}

/// One proptest case: creates a ring, runs `ops` against it and the model.
fn run_case<T: Pod>(request: usize, check_every_step: bool, ops: &[Op]) -> usize {
    let (mut tx, mut rx) = channel::<T>(request).unwrap();
    let cap = tx.capacity();
    assert_eq!(rx.capacity(), cap);
    let mut m = Model {
        cap,
        items: VecDeque::new(),
        next: 0,
        received: 0,
        wrapped_runs: 0,
    };
    for op in ops {
        match *op {
            Op::SendWith(amount) => {
                let k = amount.of(cap);
                let full = m.free() == 0;
                let mut lent = None;
                let first = m.next;
                let r = tx.try_send_with(|slots: &mut [MaybeUninit<T>]| {
                    lent = Some(slots.len());
                    let n = k.min(slots.len());
                    for (i, slot) in slots[..n].iter_mut().enumerate() {
                        slot.write(make::<T>(first + i as u64));
                    }
                    n
                });
                if full {
                    assert_eq!(r, Err(Error::Full), "try_send_with on a full ring");
                    assert!(lent.is_none(), "a full ring lent slots");
                } else {
                    let lent = lent.expect("a ring with free slots lent none");
                    m.check_send_run(lent);
                    assert_eq!(r, Ok(k.min(lent)));
                    m.push(k.min(lent));
                }
            }
            Op::Send => {
                let r = tx.try_send(make::<T>(m.next));
                if m.free() == 0 {
                    assert_eq!(r, Err(Error::Full));
                } else {
                    assert_eq!(r, Ok(()));
                    m.push(1);
                }
            }
            Op::TrySendSlice(amount) => {
                let n = amount.of(cap);
                let items: Vec<T> = (m.next..m.next + n as u64).map(make).collect();
                let r = tx.try_send_slice(&items);
                if n == 0 {
                    assert_eq!(r, Ok(0));
                } else if m.free() == 0 {
                    assert_eq!(r, Err(Error::Full));
                } else {
                    assert_eq!(r, Ok(n.min(m.free())), "as many as fit are sent");
                    m.push(n.min(m.free()));
                }
            }
            Op::SendSlice(amount) => {
                let n = amount.of(cap).min(m.free());
                let items: Vec<T> = (m.next..m.next + n as u64).map(make).collect();
                assert_eq!(tx.send_slice(&items), Ok(()));
                m.push(n);
            }
            Op::RecvWith(amount) => {
                let k = amount.of(cap);
                let empty = m.items.is_empty();
                let mut lent = None;
                let r = rx.try_recv_with(|items: &[T]| {
                    m.check_recv_run(items);
                    lent = Some(items.len());
                    k.min(items.len())
                });
                if empty {
                    assert_eq!(r, Err(Error::Empty), "try_recv_with on an empty ring");
                    assert!(lent.is_none(), "an empty ring lent items");
                } else {
                    let lent = lent.expect("a ring with items lent none");
                    assert_eq!(r, Ok(k.min(lent)));
                    m.pop(k.min(lent));
                }
            }
            Op::Recv => {
                let r = rx.try_recv();
                if m.items.is_empty() {
                    assert!(matches!(r, Err(Error::Empty)), "try_recv on an empty ring");
                } else {
                    let item = r.unwrap();
                    assert_items(&[item], [m.items[0]], "try_recv");
                    m.pop(1);
                }
            }
            Op::TryRecvSlice(amount) => {
                let n = amount.of(cap);
                let mut buf = vec![T::zeroed(); n];
                let r = rx.try_recv_slice(&mut buf);
                if n == 0 {
                    assert_eq!(r, Ok(0));
                } else if m.items.is_empty() {
                    assert_eq!(r, Err(Error::Empty));
                } else {
                    let got = r.unwrap();
                    assert!(got >= 1 && got <= n.min(m.items.len()), "got {got}");
                    assert_items(&buf[..got], m.items.iter().copied(), "try_recv_slice");
                    m.pop(got);
                }
            }
            Op::RecvSlice(amount) => {
                let n = amount.of(cap);
                let mut buf = vec![T::zeroed(); n];
                if n == 0 {
                    assert_eq!(rx.recv_slice(&mut buf), Ok(0));
                } else if !m.items.is_empty() {
                    let got = rx.recv_slice(&mut buf).unwrap();
                    assert!(got >= 1 && got <= n.min(m.items.len()), "got {got}");
                    assert_items(&buf[..got], m.items.iter().copied(), "recv_slice");
                    m.pop(got);
                }
            }
            Op::Len => m.check_len(&mut tx, &mut rx),
        }
        if check_every_step {
            m.check_len(&mut tx, &mut rx);
        }
    }
    // Drain what is left and check it is exactly the model's contents.
    m.check_len(&mut tx, &mut rx);
    while !m.items.is_empty() {
        let n = rx
            .try_recv_with(|items: &[T]| {
                m.check_recv_run(items);
                items.len()
            })
            .unwrap();
        m.pop(n);
    }
    assert_eq!(
        rx.try_recv_with(|_: &[T]| unreachable!()),
        Err(Error::Empty)
    );
    drop(tx);
    assert_eq!(
        rx.try_recv_with(|_: &[T]| unreachable!()),
        Err(Error::Disconnected)
    );
    m.wrapped_runs
}

/// Runs `cases` random cases on rings of `T` with at least `request`
/// items, and checks that the ring really has `cap` items and that runs
/// across the wrap occurred.
fn model_test<T: Pod>(request: usize, cap: usize, cases: u32, max_ops: usize) {
    let (tx, _rx) = channel::<T>(request).unwrap();
    assert_eq!(tx.capacity(), cap, "rounded capacity");
    drop(tx);
    let wrapped = Cell::new(0);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (any::<bool>(), proptest::collection::vec(op(), 1..max_ops));
    runner
        .run(&strategy, |(check_every_step, ops)| {
            let w = run_case::<T>(request, check_every_step, &ops);
            wrapped.set(wrapped.get() + w);
            Ok(())
        })
        .unwrap();
    if cap > 1 {
        assert!(wrapped.get() > 0, "no run crossed the wrap");
    }
}

#[test]
fn u64_ring_of_the_smallest_capacity_matches_the_model() {
    // `channel::<u64>(1)` rounds to one page of items.
    model_test::<u64>(1, 512, 160, 100);
}

#[test]
fn u64_ring_of_a_capacity_that_is_not_a_power_of_two_matches_the_model() {
    model_test::<u64>(1500, 1536, 64, 100);
}

#[test]
fn ring_of_12_byte_items_matches_the_model() {
    // 12-byte items come in steps of 1024 per 3 pages: 3072 items.
    model_test::<[u8; 12]>(3000, 3072, 48, 100);
}

#[test]
fn ring_of_6_byte_items_matches_the_model() {
    model_test::<[u16; 3]>(1, 2048, 64, 100);
    model_test::<[u16; 3]>(5000, 6144, 24, 100);
}

#[test]
fn ring_of_3000_byte_items_matches_the_model() {
    model_test::<Bytes3000>(1, 512, 24, 60);
}

#[test]
fn ring_of_three_page_sized_items_matches_the_model() {
    // A page per item: the capacity is exactly what was asked for.
    model_test::<[u8; 4096]>(3, 3, 160, 100);
}

#[test]
fn ring_of_one_item_matches_the_model() {
    // Three pages per item, capacity 1: every item sits at the wrap.
    model_test::<[[u8; 4096]; 3]>(1, 1, 64, 60);
}

// ---- a batch across the wrap, explicitly -----------------------------------

/// Fills the ring to `cap - before_end` items, drains it, then sends a
/// batch of `batch` items, which starts `before_end` slots before the end
/// of the data region, and checks that the receiver gets it as one run.
fn batch_across_the_wrap<T: Pod>(request: usize, before_end: usize, batch: usize) {
    let (mut tx, mut rx) = channel::<T>(request).unwrap();
    let cap = tx.capacity();
    assert!(before_end < batch && batch <= cap, "the batch must cross");
    let prefill = cap - before_end;
    let items: Vec<T> = (0..prefill as u64).map(make).collect();
    tx.send_slice(&items).unwrap();
    let mut buf = vec![T::zeroed(); prefill];
    let mut got = 0;
    while got < prefill {
        got += rx.try_recv_slice(&mut buf[got..]).unwrap();
    }
    assert_items(&buf, 0..prefill as u64, "prefill");
    let first = prefill as u64;

    // Through `send_slice`: it may publish in two steps (the sender's
    // cache knows of `before_end` free slots), the receiver sees one run.
    let batch_items: Vec<T> = (first..first + batch as u64).map(make).collect();
    tx.send_slice(&batch_items).unwrap();
    let taken = rx
        .try_recv_with(|items: &[T]| {
            assert_eq!(items.len(), batch, "the batch is lent as one run");
            assert_items(items, first..first + batch as u64, "batch");
            items.len()
        })
        .unwrap();
    assert_eq!(taken, batch);

    // Through the closure API, which reloads the receiver's index: the
    // whole ring is lent as one run starting where the last batch ended.
    assert_eq!(tx.len(), 0);
    let first = first + batch as u64;
    let written = tx
        .try_send_with(|slots: &mut [MaybeUninit<T>]| {
            assert_eq!(slots.len(), cap, "the free ring is lent whole");
            for (i, slot) in slots.iter_mut().enumerate() {
                slot.write(make::<T>(first + i as u64));
            }
            slots.len()
        })
        .unwrap();
    assert_eq!(written, cap);
    assert_eq!(tx.try_send(make::<T>(0)), Err(Error::Full));
    let taken = rx
        .try_recv_with(|items: &[T]| {
            assert_eq!(items.len(), cap, "the full ring is lent as one run");
            assert_items(items, first..first + cap as u64, "full ring");
            items.len()
        })
        .unwrap();
    assert_eq!(taken, cap);
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
}

#[test]
fn a_batch_across_the_wrap_is_received_as_one_run() {
    batch_across_the_wrap::<u64>(1, 3, 10);
    batch_across_the_wrap::<u64>(1, 1, 512);
    batch_across_the_wrap::<u64>(1500, 700, 1536);
    batch_across_the_wrap::<[u8; 12]>(3000, 5, 100);
    batch_across_the_wrap::<[u16; 3]>(1, 3, 10);
    batch_across_the_wrap::<Bytes3000>(1, 3, 10);
    batch_across_the_wrap::<[u8; 4096]>(3, 1, 3);
    batch_across_the_wrap::<[u8; 4096]>(3, 2, 3);
}

#[test]
fn a_one_item_ring_alternates_full_and_empty() {
    let (mut tx, mut rx) = channel::<[[u8; 4096]; 3]>(1).unwrap();
    assert_eq!(tx.capacity(), 1);
    for seq in 0..10 {
        assert_eq!(tx.try_send(make(seq)), Ok(()));
        assert_eq!(tx.try_send(make(seq)), Err(Error::Full));
        assert!(tx.is_full());
        let item = rx.try_recv().unwrap();
        assert_items(&[item], [seq], "one-item ring");
        assert!(matches!(rx.try_recv(), Err(Error::Empty)));
    }
}

#[test]
fn a_partial_consume_leaves_the_rest_in_place() {
    // Consuming fewer items than lent releases only those; the rest are
    // lent again, first, by the next call.
    let (mut tx, mut rx) = channel::<u64>(1).unwrap();
    tx.send_slice(&(0..100).collect::<Vec<_>>()).unwrap();
    let mut expect = 0;
    for take in [0, 1, 7, 0, 50, 42] {
        let n = rx
            .try_recv_with(|items: &[u64]| {
                assert_eq!(items.len(), 100 - expect as usize);
                assert_eq!(items[0], expect);
                take
            })
            .unwrap();
        assert_eq!(n, take);
        expect += take as u64;
        assert_eq!(tx.len(), 100 - expect as usize);
    }
    assert_eq!(rx.try_recv(), Err(Error::Empty));
}

#[test]
#[should_panic(expected = "the closure said it consumed")]
fn a_closure_claiming_more_than_it_was_lent_panics() {
    let (mut tx, mut rx) = channel::<u64>(1).unwrap();
    tx.try_send(1).unwrap();
    let _ = rx.try_recv_with(|items: &[u64]| items.len() + 1);
}

#[test]
#[should_panic(expected = "the closure said it wrote")]
fn a_closure_claiming_more_than_it_wrote_panics() {
    let (mut tx, _rx) = channel::<u64>(1).unwrap();
    let _ = tx.try_send_with(|slots: &mut [MaybeUninit<u64>]| slots.len() + 1);
}
