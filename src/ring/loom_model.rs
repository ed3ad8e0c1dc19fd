//! loom model of the ring and the wake-up protocol.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --lib --release ring::loom_model`.
//!
//! The two ends run on two loom threads over a heap header. Each side's
//! wake-up socket is modelled as a counter of unread wake-ups under a loom `Mutex` with a `Condvar`: `notify`
//! adds one and signals, `wait` sleeps until the counter is non-zero and
//! resets it. A lost wake-up therefore shows up as a deadlock (both threads
//! blocked, or one blocked forever after the other finished), which loom
//! reports. The slots are loom `UnsafeCell`s, so loom also checks that each
//! slot write happens before the read of it and the read before the next
//! write (the Release/Acquire pairs on the indices).

use std::ptr::NonNull;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};

use super::{Half, Read, Write};
use crate::error::Error;
use crate::layout::{Config, Header};

/// A side's wake-up socket: a count of unread wake-ups, and a condition
/// variable to sleep on it.
struct Wakeup {
    count: Mutex<u64>,
    ready: Condvar,
    writes: AtomicUsize,
}

impl Wakeup {
    fn new() -> Wakeup {
        Wakeup {
            count: Mutex::new(0),
            ready: Condvar::new(),
            writes: AtomicUsize::new(0),
        }
    }

    fn notify(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        *self.count.lock().unwrap() += 1;
        self.ready.notify_one();
    }

    /// Sleeps until notified, then drains.
    fn wait(&self) {
        let mut count = self.count.lock().unwrap();
        while *count == 0 {
            count = self.ready.wait(count).unwrap();
        }
        *count = 0;
    }
}

/// Everything both threads share: the header, the slots, the wake-ups each
/// side waits on.
struct Ring {
    header: Box<Header>,
    slots: Vec<UnsafeCell<u64>>,
    data_ready: Wakeup,
    space_ready: Wakeup,
    /// Times either side announced it would sleep: every wake-up sent must
    /// answer one of them.
    arms: AtomicUsize,
}

// SAFETY: the slots are only touched as the ring protocol allows (loom
// checks exactly that), everything else is atomics and loom's own
// synchronisation types.
unsafe impl Sync for Ring {}
// SAFETY: as above.
unsafe impl Send for Ring {}

impl Ring {
    fn new(capacity: u64) -> Arc<Ring> {
        let config = Config {
            item_size: 8,
            item_align: 8,
            capacity,
            data_offset: 4096,
            type_tag: 0,
            wake_inodes: [0, 0],
        };
        Arc::new(Ring {
            header: Box::new(Header::new(&config)),
            slots: (0..capacity).map(|_| UnsafeCell::new(0)).collect(),
            data_ready: Wakeup::new(),
            space_ready: Wakeup::new(),
            arms: AtomicUsize::new(0),
        })
    }

    fn producer(&self) -> Half<Write> {
        // SAFETY: the header is boxed inside an `Arc<Ring>` that each
        // thread holds for as long as it uses the end.
        unsafe { Half::<Write>::new(NonNull::from(&*self.header), self.slots.len() as u64, false) }
    }

    fn consumer(&self) -> Half<Read> {
        // SAFETY: as for `producer`.
        unsafe { Half::<Read>::new(NonNull::from(&*self.header), self.slots.len() as u64, false) }
    }
}

/// Sends `0..count` one run at a time (runs of up to `batch`), sleeping
/// when full, then closes. Returns how many were sent before the consumer
/// disconnected (or `count`).
fn produce(ring: &Ring, count: u64, batch: usize) -> u64 {
    let mut producer = ring.producer();
    let mut next = 0;
    while next < count {
        match producer.slots(batch, false) {
            Ok(run) => {
                let n = run.len.min(batch).min((count - next) as usize);
                for i in 0..n {
                    ring.slots[run.start + i].with_mut(|slot| {
                        // SAFETY: a free slot: loom checks no read of it is
                        // concurrent.
                        unsafe { *slot = next + i as u64 }
                    });
                }
                next += n as u64;
                if producer.commit(n) {
                    ring.data_ready.notify();
                }
            }
            Err(Error::Full) => {
                ring.arms.fetch_add(1, Ordering::Relaxed);
                if producer.arm(1) {
                    ring.space_ready.wait();
                    producer.disarm();
                }
            }
            Err(Error::Disconnected) => return next,
            Err(e) => panic!("producer: {e}"),
        }
    }
    if producer.close() {
        ring.data_ready.notify();
    }
    count
}

/// Receives until `stop_after` items or a disconnect, sleeping when empty,
/// checking that the items are `0, 1, 2, ...`; then closes. Returns how
/// many it received.
fn consume(ring: &Ring, stop_after: u64, batch: usize) -> u64 {
    let mut consumer = ring.consumer();
    let mut expected = 0;
    while expected < stop_after {
        match consumer.slots(batch, false) {
            Ok(run) => {
                let n = run.len.min(batch).min((stop_after - expected) as usize);
                for i in 0..n {
                    let value = ring.slots[run.start + i].with(|slot| {
                        // SAFETY: a published slot: loom checks no write of
                        // it is concurrent.
                        unsafe { *slot }
                    });
                    assert_eq!(value, expected, "an item was lost, duplicated or reordered");
                    expected += 1;
                }
                if consumer.commit(n) {
                    ring.space_ready.notify();
                }
            }
            Err(Error::Empty) => {
                ring.arms.fetch_add(1, Ordering::Relaxed);
                if consumer.arm(1) {
                    ring.data_ready.wait();
                    consumer.disarm();
                }
            }
            Err(Error::Disconnected) => break,
            Err(e) => panic!("consumer: {e}"),
        }
    }
    if consumer.close() {
        ring.space_ready.notify();
    }
    expected
}

fn model(capacity: u64, count: u64, stop_after: u64, batch: usize) {
    let mut builder = loom::model::Builder::new();
    // Keeps the search to minutes; every bug found so far needed at most
    // two preemptions.
    builder.preemption_bound = Some(3);
    builder.check(move || {
        let ring = Ring::new(capacity);
        let producer_ring = ring.clone();
        let producer = loom::thread::spawn(move || produce(&producer_ring, count, batch));
        let received = consume(&ring, stop_after, batch);
        let sent = producer.join().unwrap();
        if stop_after >= count {
            assert_eq!(received, count, "the consumer saw the disconnect early");
        } else {
            assert_eq!(received, stop_after);
            assert!(sent >= received);
        }
        let writes = ring.data_ready.writes.load(Ordering::Relaxed)
            + ring.space_ready.writes.load(Ordering::Relaxed);
        assert!(
            writes <= ring.arms.load(Ordering::Relaxed),
            "a wake-up was sent to a peer that had not armed"
        );
    });
}

#[test]
fn stream_through_a_ring_smaller_than_the_stream() {
    // Both sides have to sleep: the producer on a full ring, the consumer
    // on an empty one.
    model(2, 4, u64::MAX, 1);
}

#[test]
fn stream_in_batches() {
    model(2, 4, u64::MAX, 2);
}

#[test]
fn sender_closes_mid_stream() {
    // The producer sends fewer items than the consumer would take, then
    // closes: the consumer must get all of them and then the disconnect.
    model(2, 1, u64::MAX, 1);
}

#[test]
fn receiver_closes_mid_stream() {
    // The consumer stops after one item and closes while the producer may
    // be asleep on a full ring: the producer must see the disconnect.
    model(1, 3, 1, 1);
}
