//! The lock-free single-producer single-consumer algorithm over a header.
//!
//! This module owns the index arithmetic, the private cached copy of the
//! peer's index, publication and consumption, the closed words and the
//! "armed" half of the wake-up protocol (DESIGN.md, "Wake-ups"). It works
//! in slots, not bytes: it never touches the data region, so it needs no
//! mapping and no OS, and it runs over a heap header under loom and Miri. It
//! does not know about memfds, sockets or mmap: the layer above turns slots
//! into slices and "the peer is armed" into a wake-up on a socket.
//!
//! # Trust
//!
//! Each side keeps its own index privately and only *stores* it to shared
//! memory; it never reads it back, so a peer that scribbles on it cannot
//! change what this side believes it has published or consumed. The peer's
//! index is loaded once per refresh and checked (`0 <= write - read <=
//! capacity`, never decreasing) before it is used; a violation is a sticky
//! [`Corruption`].

use std::ptr::NonNull;

use crate::error::{Corruption, Error};
use crate::layout::atomic::{fence, AtomicU32, Ordering};
use crate::layout::Header;
use std::sync::atomic::compiler_fence;

/// A run of slots lent to a closure: the first slot's position in the data
/// region (`0..capacity`) and how many slots follow it contiguously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slots {
    pub(crate) start: usize,
    pub(crate) len: usize,
}

/// The two barriers of the wake-up protocol, as this side runs them.
///
/// The protocol needs a StoreLoad barrier on each side: the publisher's
/// between storing its index and loading the peer's armed word, the
/// sleeper's between storing its armed word and re-loading the peer's
/// index. Both may be full fences (`SeqCst`). Or the barrier can be
/// asymmetric: the publisher, which runs on every publish, uses a compiler
/// fence only, and the sleeper, which is about to make system calls
/// anyway, makes every running thread of every registered process run a
/// full barrier (`membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, supplied
/// by the layer above as `heavy`). `docs/safety.md` has the argument.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fences {
    /// Publish with a compiler fence only. Allowed only when this process
    /// is registered for the peer's `heavy` barrier.
    pub(crate) light_publish: bool,
    /// The sleeper's barrier after storing its armed word. It must be at
    /// least a `SeqCst` fence, and it must also order a light publisher's
    /// index store before its armed load (or the peer must never publish
    /// light).
    pub(crate) heavy: fn(),
}

impl Fences {
    /// A `SeqCst` fence on both sides: needs nothing from the OS.
    pub(crate) const SYMMETRIC: Fences = Fences {
        light_publish: false,
        heavy: full_fence,
    };
}

fn full_fence() {
    fence(Ordering::SeqCst);
}

/// What the two sides share: the header and the ring's shape.
#[derive(Debug)]
struct Shared {
    header: NonNull<Header>,
    capacity: u64,
    fences: Fences,
    /// The data region is followed by a mirror of itself, so a run of slots
    /// may cross the wrap and stay contiguous.
    mirrored: bool,
}

impl Shared {
    fn header(&self) -> &Header {
        // SAFETY: `Producer::new` / `Consumer::new` require the header to stay
        // valid and aligned for the life of this value. The peer may write
        // any bytes into it concurrently, which is sound because every field
        // is an atomic and every bit pattern is a valid atomic integer.
        unsafe { self.header.as_ref() }
    }

    /// The contiguous run starting at slot `start` (`< capacity`) of at
    /// most `count` slots.
    #[inline]
    fn run(&self, start: u64, count: u64) -> Slots {
        let len = if self.mirrored {
            count
        } else {
            count.min(self.capacity - start)
        };
        // Both are at most `capacity`, which the layout checked fits the
        // address space.
        Slots {
            start: start as usize,
            len: len as usize,
        }
    }
}

/// The largest index an honest peer can reach: 2^62 items is 14 years at
/// 10^10 items a second. Refusing more keeps `index + capacity` far from
/// overflow whatever a peer writes.
const INDEX_LIMIT: u64 = 1 << 62;

/// `slot + count` modulo `capacity`, for `slot < capacity` and
/// `count <= capacity`: the position of an index, kept up to date without
/// a division.
#[inline]
fn advance(slot: u64, count: u64, capacity: u64) -> u64 {
    let next = slot + count;
    if next >= capacity {
        next - capacity
    } else {
        next
    }
}

/// Checks a pair of indices: the fill level must be in `0..=capacity`.
fn check_fill(write: u64, read: u64, capacity: u64) -> Result<u64, Corruption> {
    match write.checked_sub(read) {
        Some(fill) if fill <= capacity && write <= INDEX_LIMIT => Ok(fill),
        _ => Err(Corruption::IndexOutOfRange {
            write,
            read,
            capacity,
        }),
    }
}

/// Disarms `armed` and says whether it was armed: the peer was asleep, or
/// about to be, and must be woken.
///
/// The barrier orders this side's preceding index store before the load
/// of the peer's armed word; it pairs with the barrier in
/// [`announce_sleep`], so that either the peer's re-read sees our index or
/// we see its armed word (or both). A light publisher's compiler fence
/// only keeps the compiler from reordering the two; the peer's heavy
/// barrier orders them in the processor (see [`Fences`]).
#[inline]
fn take_armed(armed: &AtomicU32, fences: Fences) -> bool {
    if fences.light_publish {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
    // The plain load first keeps the common case (nobody sleeps) to a read
    // of a line that stays shared in both caches.
    armed.load(Ordering::Relaxed) != 0 && armed.swap(0, Ordering::Relaxed) != 0
}

/// The first half of going to sleep: announce it. The caller then looks at
/// the ring once more and sleeps only if that finds nothing to do.
fn announce_sleep(armed: &AtomicU32, fences: Fences) {
    armed.store(1, Ordering::Relaxed);
    // Pairs with the barrier in `take_armed` on the other side: either our
    // re-check after this barrier sees the peer's new index, or the peer's
    // load after its barrier sees our armed word (or both).
    (fences.heavy)();
}

/// The producer's half of the ring.
#[derive(Debug)]
pub(crate) struct Producer {
    shared: Shared,
    /// Items published; the authoritative copy, never read back from
    /// shared memory.
    write: u64,
    /// `write % capacity`: the slot the next item goes to.
    write_slot: u64,
    /// The consumer's index as last loaded and checked.
    cached_read: u64,
    corrupted: Option<Corruption>,
}

// SAFETY: a `Producer` only holds a pointer to atomics; the contract of
// `Producer::new` makes the owner keep them alive wherever the `Producer`
// goes, and all access is through atomic operations.
unsafe impl Send for Producer {}

impl Producer {
    /// The producer over `header`, which must describe a ring of `capacity`
    /// slots (checked by `layout`) that no other producer uses.
    ///
    /// # Safety
    ///
    /// `header` must point to a `Header` that stays valid (mapped, or
    /// allocated) and is not moved for as long as the returned value exists.
    pub(crate) unsafe fn new(header: NonNull<Header>, capacity: u64, mirrored: bool) -> Producer {
        let shared = Shared {
            header,
            capacity,
            fences: Fences::SYMMETRIC,
            mirrored,
        };
        // The producer starts from what is in the header, so that an end can
        // be reopened after a hand-off; the first check validates it.
        let write = shared.header().write_index.0.load(Ordering::Relaxed);
        let read = shared.header().read_index.0.load(Ordering::Acquire);
        let corrupted = check_fill(write, read, capacity).err();
        Producer {
            write_slot: write % capacity,
            shared,
            write,
            cached_read: read,
            corrupted,
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.shared.capacity
    }

    /// Uses `fences` from now on instead of [`Fences::SYMMETRIC`].
    pub(crate) fn use_fences(&mut self, fences: Fences) {
        self.shared.fences = fences;
    }

    /// Loads and checks the consumer's index; returns the free slot count.
    fn refresh(&mut self) -> Result<u64, Corruption> {
        let read = self.shared.header().read_index.0.load(Ordering::Acquire);
        let checked = if read < self.cached_read {
            Err(Corruption::IndexWentBack {
                before: self.cached_read,
                now: read,
            })
        } else {
            check_fill(self.write, read, self.shared.capacity)
        };
        match checked {
            Ok(fill) => {
                self.cached_read = read;
                Ok(self.shared.capacity - fill)
            }
            Err(corruption) => {
                self.corrupted = Some(corruption);
                Err(corruption)
            }
        }
    }

    /// The free slots, reloading the consumer's index only if the cache
    /// knows of fewer than `want` (so `1` reloads only when the cache says
    /// full, and `usize::MAX` always reloads unless the whole ring is free).
    ///
    /// # Errors
    ///
    /// `Disconnected` if the consumer closed its end, `Full` if there is no
    /// free slot, `Corrupted` if the consumer's index is invalid.
    #[inline]
    pub(crate) fn free_slots(&mut self, want: usize, peer_gone: bool) -> Result<Slots, Error> {
        if let Some(corruption) = self.corrupted {
            return Err(Error::Corrupted(corruption));
        }
        if peer_gone || self.peer_closed() {
            return Err(Error::Disconnected);
        }
        let mut free = self.shared.capacity - (self.write - self.cached_read);
        if free < want as u64 {
            free = self.refresh()?;
        }
        if free == 0 {
            return Err(Error::Full);
        }
        Ok(self.shared.run(self.write_slot, free))
    }

    /// Publishes `count` slots written after the last publish.
    ///
    /// Returns `true` if the consumer was armed (about to sleep) and must be
    /// woken by the caller.
    #[inline]
    pub(crate) fn publish(&mut self, count: usize) -> bool {
        if count == 0 {
            return false;
        }
        debug_assert!(count as u64 <= self.shared.capacity - (self.write - self.cached_read));
        self.write += count as u64;
        self.write_slot = advance(self.write_slot, count as u64, self.shared.capacity);
        // Pairs with the Acquire load of `write_index` in
        // `Consumer::refresh`: the items written before are visible there.
        self.shared
            .header()
            .write_index
            .0
            .store(self.write, Ordering::Release);
        take_armed(&self.shared.header().consumer_armed.0, self.shared.fences)
    }

    /// Announces that the producer will sleep until space is freed.
    ///
    /// Returns `true` if it may sleep now; `false` (disarmed again) if the
    /// consumer freed space, closed, or corrupted the ring in the meantime:
    /// then the caller retries instead of sleeping.
    #[cfg(all(test, loom))]
    pub(crate) fn arm(&mut self) -> bool {
        self.arm_min(1)
    }

    /// [`arm`](Self::arm) for a caller that needs `min` slots at once:
    /// fewer than `min` counts as no progress, so it may sleep while some
    /// are free. The peer still wakes it on every release it makes while
    /// armed; the caller looks again and re-arms if that was not enough.
    pub(crate) fn arm_min(&mut self, min: u64) -> bool {
        if self.corrupted.is_some() {
            // Nothing to wait for: the retry reports the corruption.
            return false;
        }
        announce_sleep(&self.shared.header().producer_armed.0, self.shared.fences);
        let progress = self.peer_closed() || !matches!(self.refresh(), Ok(free) if free < min);
        if progress {
            self.disarm();
        }
        !progress
    }

    /// Withdraws an [`arm`](Self::arm) after a sleep that ended without a
    /// wake-up from the consumer (a timeout, or the consumer's death).
    pub(crate) fn disarm(&self) {
        self.shared
            .header()
            .producer_armed
            .0
            .store(0, Ordering::Relaxed);
    }

    /// Whether the consumer has closed its end.
    #[inline]
    pub(crate) fn peer_closed(&self) -> bool {
        self.shared.header().closed.consumer.load(Ordering::Acquire) != 0
    }

    /// Items published and not yet consumed, freshly loaded (racy).
    pub(crate) fn len(&mut self) -> Result<u64, Error> {
        if let Some(corruption) = self.corrupted {
            return Err(Error::Corrupted(corruption));
        }
        Ok(self.shared.capacity - self.refresh()?)
    }

    /// Marks the producer closed. Returns `true` if the consumer was armed.
    pub(crate) fn close(&self) -> bool {
        // Release: everything published before is visible to a consumer
        // that sees the closed word (Acquire in `Consumer::peer_closed`).
        self.shared
            .header()
            .closed
            .producer
            .store(1, Ordering::Release);
        take_armed(&self.shared.header().consumer_armed.0, self.shared.fences)
    }
}

/// The consumer's half of the ring.
#[derive(Debug)]
pub(crate) struct Consumer {
    shared: Shared,
    /// Items consumed; the authoritative copy, never read back.
    read: u64,
    /// `read % capacity`: the slot of the next item.
    read_slot: u64,
    /// The producer's index as last loaded and checked.
    cached_write: u64,
    corrupted: Option<Corruption>,
}

// SAFETY: as for `Producer`: a pointer to atomics kept alive by the owner.
unsafe impl Send for Consumer {}

impl Consumer {
    /// The consumer over `header`, which must describe a ring of `capacity`
    /// slots (checked by `layout`) that no other consumer uses.
    ///
    /// # Safety
    ///
    /// As for [`Producer::new`].
    pub(crate) unsafe fn new(header: NonNull<Header>, capacity: u64, mirrored: bool) -> Consumer {
        let shared = Shared {
            header,
            capacity,
            fences: Fences::SYMMETRIC,
            mirrored,
        };
        let read = shared.header().read_index.0.load(Ordering::Relaxed);
        let write = shared.header().write_index.0.load(Ordering::Acquire);
        let corrupted = check_fill(write, read, capacity).err();
        Consumer {
            read_slot: read % capacity,
            shared,
            read,
            cached_write: write,
            corrupted,
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.shared.capacity
    }

    /// Uses `fences` from now on instead of [`Fences::SYMMETRIC`].
    pub(crate) fn use_fences(&mut self, fences: Fences) {
        self.shared.fences = fences;
    }

    /// Loads and checks the producer's index; returns the ready item count.
    fn refresh(&mut self) -> Result<u64, Corruption> {
        let write = self.shared.header().write_index.0.load(Ordering::Acquire);
        let checked = if write < self.cached_write {
            Err(Corruption::IndexWentBack {
                before: self.cached_write,
                now: write,
            })
        } else {
            check_fill(write, self.read, self.shared.capacity)
        };
        match checked {
            Ok(fill) => {
                self.cached_write = write;
                Ok(fill)
            }
            Err(corruption) => {
                self.corrupted = Some(corruption);
                Err(corruption)
            }
        }
    }

    /// The ready items, reloading the producer's index only if the cache
    /// knows of fewer than `want` (see [`Producer::free_slots`]).
    ///
    /// `peer_gone` is the layer above's knowledge that the producer's
    /// process died; like a closed word, it turns "empty" into
    /// "disconnected", but only once every published item was consumed.
    ///
    /// # Errors
    ///
    /// `Empty` if nothing is ready, `Disconnected` if nothing is ready and
    /// the producer is gone, `Corrupted` if its index is invalid.
    #[inline]
    pub(crate) fn ready_slots(&mut self, want: usize, peer_gone: bool) -> Result<Slots, Error> {
        if let Some(corruption) = self.corrupted {
            return Err(Error::Corrupted(corruption));
        }
        let mut ready = self.cached_write - self.read;
        if ready < want as u64 {
            ready = self.refresh()?;
        }
        if ready == 0 {
            if !(peer_gone || self.peer_closed()) {
                return Err(Error::Empty);
            }
            // The producer closed (Release) after its last publish, so one
            // more load sees everything it ever published.
            ready = self.refresh()?;
            if ready == 0 {
                return Err(Error::Disconnected);
            }
        }
        Ok(self.shared.run(self.read_slot, ready))
    }

    /// Releases `count` slots consumed since the last release.
    ///
    /// Returns `true` if the producer was armed and must be woken.
    #[inline]
    pub(crate) fn release(&mut self, count: usize) -> bool {
        if count == 0 {
            return false;
        }
        debug_assert!(count as u64 <= self.cached_write - self.read);
        self.read += count as u64;
        self.read_slot = advance(self.read_slot, count as u64, self.shared.capacity);
        // Pairs with the Acquire load of `read_index` in
        // `Producer::refresh`: our reads of the slots happen before the
        // producer overwrites them.
        self.shared
            .header()
            .read_index
            .0
            .store(self.read, Ordering::Release);
        take_armed(&self.shared.header().producer_armed.0, self.shared.fences)
    }

    /// Announces that the consumer will sleep until data arrives. See
    /// [`Producer::arm`].
    #[cfg(test)]
    pub(crate) fn arm(&mut self) -> bool {
        self.arm_min(1)
    }

    /// [`arm`](Self::arm) for a caller that needs `min` slots at once:
    /// fewer than `min` counts as no progress, so it may sleep while some
    /// are free. The peer still wakes it on every release it makes while
    /// armed; the caller looks again and re-arms if that was not enough.
    pub(crate) fn arm_min(&mut self, min: u64) -> bool {
        if self.corrupted.is_some() {
            // Nothing to wait for: the retry reports the corruption.
            return false;
        }
        announce_sleep(&self.shared.header().consumer_armed.0, self.shared.fences);
        let progress = self.peer_closed() || !matches!(self.refresh(), Ok(ready) if ready < min);
        if progress {
            self.disarm();
        }
        !progress
    }

    /// Withdraws an [`arm`](Self::arm). See [`Producer::disarm`].
    pub(crate) fn disarm(&self) {
        self.shared
            .header()
            .consumer_armed
            .0
            .store(0, Ordering::Relaxed);
    }

    /// Whether the producer has closed its end.
    #[inline]
    pub(crate) fn peer_closed(&self) -> bool {
        self.shared.header().closed.producer.load(Ordering::Acquire) != 0
    }

    /// Items ready to be consumed, freshly loaded (racy).
    pub(crate) fn len(&mut self) -> Result<u64, Error> {
        if let Some(corruption) = self.corrupted {
            return Err(Error::Corrupted(corruption));
        }
        Ok(self.refresh()?)
    }

    /// Marks the consumer closed. Returns `true` if the producer was armed.
    pub(crate) fn close(&self) -> bool {
        self.shared
            .header()
            .closed
            .consumer
            .store(1, Ordering::Release);
        take_armed(&self.shared.header().producer_armed.0, self.shared.fences)
    }
}

#[cfg(all(test, loom))]
mod loom_model;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::layout::Config;

    fn boxed_header(capacity: u64) -> Box<Header> {
        Box::new(Header::new(&Config {
            item_size: 8,
            item_align: 8,
            capacity,
            data_offset: 4096,
            type_tag: 0,
        }))
    }

    fn ends(header: &Header, capacity: u64, mirrored: bool) -> (Producer, Consumer) {
        let ptr = NonNull::from(header);
        // SAFETY: each test keeps the boxed header alive and unmoved while
        // it uses the two ends.
        unsafe {
            (
                Producer::new(ptr, capacity, mirrored),
                Consumer::new(ptr, capacity, mirrored),
            )
        }
    }

    #[test]
    fn unmirrored_runs_stop_at_the_wrap_and_mirrored_runs_do_not() {
        let header = boxed_header(5);
        let (mut tx, mut rx) = ends(&header, 5, false);
        assert_eq!(tx.free_slots(1, false), Ok(Slots { start: 0, len: 5 }));
        tx.publish(4);
        assert_eq!(rx.ready_slots(1, false), Ok(Slots { start: 0, len: 4 }));
        rx.release(3);
        // The cache still says one free slot; it is lent without a reload.
        assert_eq!(tx.free_slots(1, false), Ok(Slots { start: 4, len: 1 }));
        tx.publish(1);
        assert_eq!(tx.free_slots(1, false), Ok(Slots { start: 0, len: 3 }));

        let mirrored = boxed_header(5);
        let (mut tx, mut rx) = ends(&mirrored, 5, true);
        tx.publish(4);
        rx.ready_slots(1, false).unwrap();
        rx.release(4);
        assert_eq!(tx.free_slots(1, false), Ok(Slots { start: 4, len: 1 }));
        tx.publish(1);
        assert_eq!(tx.free_slots(1, false), Ok(Slots { start: 0, len: 4 }));
        tx.publish(3);
        assert_eq!(rx.ready_slots(1, false), Ok(Slots { start: 4, len: 4 }));
    }

    /// Slots on the heap, written by the producer and read by the consumer
    /// with plain (non-atomic) accesses, so that Miri and ThreadSanitizer
    /// see a data race if publication is not ordered.
    struct HeapSlots(Vec<std::cell::UnsafeCell<u64>>);

    // SAFETY: the ring protocol gives each slot to one thread at a time;
    // checking that is the point of the tests that use it.
    unsafe impl Sync for HeapSlots {}

    /// Streams `count` items through a heap ring of `capacity` slots in
    /// partial batches (sizes cycling through 1..=capacity+1), both sides
    /// yielding when they cannot progress; the consumer stops after
    /// `stop_after` items and closes. Returns (sent, received).
    fn stream_on_heap(capacity: u64, count: u64, stop_after: u64) -> (u64, u64) {
        let header = std::sync::Arc::new(boxed_header(capacity));
        let slots = std::sync::Arc::new(HeapSlots(
            (0..capacity)
                .map(|_| std::cell::UnsafeCell::new(0))
                .collect(),
        ));
        let (producer_header, producer_slots) = (header.clone(), slots.clone());
        let producer = std::thread::spawn(move || {
            let (mut tx, _) = ends(&producer_header, capacity, false);
            let mut next = 0;
            let mut batch = 1;
            while next < count {
                match tx.free_slots(batch, false) {
                    Ok(run) => {
                        let n = run.len.min(batch).min((count - next) as usize);
                        for i in 0..n {
                            // SAFETY: a free slot, owned by the producer
                            // until published.
                            unsafe { *producer_slots.0[run.start + i].get() = next + i as u64 };
                        }
                        tx.publish(n);
                        next += n as u64;
                        batch = batch % (capacity as usize + 1) + 1;
                    }
                    Err(Error::Full) => std::thread::yield_now(),
                    Err(Error::Disconnected) => break,
                    Err(e) => panic!("producer: {e}"),
                }
            }
            tx.close();
            next
        });
        let (_, mut rx) = ends(&header, capacity, false);
        let mut expected = 0;
        let mut batch = 2;
        while expected < stop_after {
            match rx.ready_slots(batch, false) {
                Ok(run) => {
                    let n = run.len.min(batch).min((stop_after - expected) as usize);
                    for i in 0..n {
                        // SAFETY: a published slot, owned by the consumer
                        // until released.
                        let value = unsafe { *slots.0[run.start + i].get() };
                        assert_eq!(value, expected);
                        expected += 1;
                    }
                    rx.release(n);
                    batch = batch % (capacity as usize + 1) + 1;
                }
                Err(Error::Empty) => std::thread::yield_now(),
                Err(Error::Disconnected) => break,
                Err(e) => panic!("consumer: {e}"),
            }
        }
        rx.close();
        (producer.join().unwrap(), expected)
    }

    #[test]
    fn two_threads_stream_through_a_heap_ring_across_the_wrap() {
        let count = if cfg!(miri) { 200 } else { 100_000 };
        assert_eq!(stream_on_heap(5, count, u64::MAX), (count, count));
        assert_eq!(
            stream_on_heap(1, count / 10, u64::MAX),
            (count / 10, count / 10)
        );
    }

    #[test]
    fn a_consumer_that_closes_mid_stream_stops_the_producer() {
        let (sent, received) = stream_on_heap(3, u64::MAX / 2, 50);
        assert_eq!(received, 50);
        assert!((50..=53).contains(&sent), "sent {sent}");
    }

    #[test]
    fn the_peer_index_is_reloaded_only_when_the_cache_shows_fewer_than_wanted() {
        let header = boxed_header(8);
        let (mut tx, mut rx) = ends(&header, 8, true);
        tx.publish(6);
        assert_eq!(rx.ready_slots(1, false).map(|s| s.len), Ok(6));
        rx.release(6);
        // The cache still shows 2 free: enough for one item, not for all.
        assert_eq!(tx.free_slots(1, false), Ok(Slots { start: 6, len: 2 }));
        assert_eq!(tx.free_slots(2, false), Ok(Slots { start: 6, len: 2 }));
        assert_eq!(tx.free_slots(3, false), Ok(Slots { start: 6, len: 8 }));
        tx.publish(1);
        assert_eq!(rx.ready_slots(1, false), Ok(Slots { start: 6, len: 1 }));
        tx.publish(1);
        assert_eq!(rx.ready_slots(1, false), Ok(Slots { start: 6, len: 1 }));
        assert_eq!(
            rx.ready_slots(usize::MAX, false),
            Ok(Slots { start: 6, len: 2 })
        );
    }

    #[test]
    fn a_consumer_index_beyond_the_producer_is_corruption_and_stays_so() {
        let header = boxed_header(4);
        let (mut tx, _rx) = ends(&header, 4, true);
        tx.publish(4);
        header.read_index.0.store(9, Ordering::Relaxed);
        let expected = Corruption::IndexOutOfRange {
            write: 4,
            read: 9,
            capacity: 4,
        };
        assert_eq!(tx.free_slots(1, false), Err(Error::Corrupted(expected)));
        header.read_index.0.store(0, Ordering::Relaxed);
        assert_eq!(tx.free_slots(1, false), Err(Error::Corrupted(expected)));
    }

    #[test]
    fn a_write_index_that_goes_back_is_corruption() {
        let header = boxed_header(4);
        let (mut tx, mut rx) = ends(&header, 4, true);
        tx.publish(3);
        assert_eq!(rx.ready_slots(1, false).map(|s| s.len), Ok(3));
        rx.release(3);
        header.write_index.0.store(1, Ordering::Relaxed);
        assert_eq!(
            rx.ready_slots(1, false),
            Err(Error::Corrupted(Corruption::IndexWentBack {
                before: 3,
                now: 1
            }))
        );
    }

    #[test]
    fn a_closed_producer_is_disconnected_only_after_the_ring_is_drained() {
        let header = boxed_header(4);
        let (mut tx, mut rx) = ends(&header, 4, true);
        tx.publish(2);
        tx.close();
        assert_eq!(rx.ready_slots(1, false).map(|s| s.len), Ok(2));
        rx.release(2);
        assert_eq!(rx.ready_slots(1, false), Err(Error::Disconnected));
    }

    #[test]
    fn a_dead_producer_is_disconnected_only_after_its_items_are_drained() {
        // `peer_gone` (the liveness fd fired) with items still published:
        // they come first, then the disconnect.
        let header = boxed_header(4);
        let (mut tx, mut rx) = ends(&header, 4, true);
        tx.publish(3);
        assert_eq!(rx.ready_slots(1, true).map(|s| s.len), Ok(3));
        rx.release(2);
        assert_eq!(rx.ready_slots(usize::MAX, true).map(|s| s.len), Ok(1));
        rx.release(1);
        assert_eq!(rx.ready_slots(1, true), Err(Error::Disconnected));
    }

    #[test]
    fn publishing_wakes_only_an_armed_consumer() {
        let header = boxed_header(4);
        let (mut tx, mut rx) = ends(&header, 4, true);
        assert!(!tx.publish(1), "nobody armed: no wake-up");
        let ready = rx.ready_slots(1, false).unwrap().len;
        rx.release(ready);
        assert!(rx.arm(), "empty ring: the consumer may sleep");
        assert!(tx.publish(1), "armed consumer: wake it");
        assert!(!tx.publish(1), "the flag was taken: only one wake-up");
        assert!(!rx.arm(), "data is ready: do not sleep");
        assert_eq!(header.consumer_armed.0.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_producer_needing_more_room_sleeps_and_is_woken_by_each_release() {
        let header = boxed_header(4);
        let (mut tx, mut rx) = ends(&header, 4, true);
        tx.free_slots(4, false).unwrap();
        assert!(!tx.publish(3), "nobody armed: no wake-up");
        assert!(!tx.arm_min(1), "one slot is free: progress for one item");
        assert!(
            tx.arm_min(2),
            "one free slot is too few for two: it may sleep"
        );
        rx.ready_slots(1, false).unwrap();
        assert!(rx.release(1), "armed producer: woken on the release");
        assert!(!tx.arm_min(2), "two free now: enough");
        assert_eq!(header.producer_armed.0.load(Ordering::Relaxed), 0);
    }
}
