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

use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::error::{Corruption, Error, Exhaustion};
use crate::layout::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use crate::layout::{indices_in_range, Header, INDEX_LIMIT};
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
        // SAFETY: `Half::new` requires the header to stay
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
    if indices_in_range(write, read, capacity) {
        Ok(write - read)
    } else {
        Err(Corruption::IndexOutOfRange {
            write,
            read,
            capacity,
        })
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

/// Which side of the ring a [`Half`] is: the words of the header that are
/// its own and its peer's, and what its slots are.
pub(crate) trait Side {
    /// `true` for the producer. The two sides differ in what a closed peer
    /// means: the producer stops at once, the consumer first drains.
    const PRODUCER: bool;
    /// What a `try_` call returns when there is no slot: `Full` or `Empty`.
    const WOULD_BLOCK: Error;
    /// This side's index word, stored only by this side.
    fn own_index(header: &Header) -> &AtomicU64;
    /// The peer's index word, loaded and checked by this side.
    fn peer_index(header: &Header) -> &AtomicU64;
    /// This side's armed word (set before it sleeps).
    fn own_armed(header: &Header) -> &AtomicU32;
    /// The peer's armed word (taken when this side makes progress).
    fn peer_armed(header: &Header) -> &AtomicU32;
    /// This side's closed word.
    fn own_closed(header: &Header) -> &AtomicU32;
    /// The peer's closed word.
    fn peer_closed(header: &Header) -> &AtomicU32;
    /// `(write, read)` from this side's index and the peer's.
    fn write_read(own: u64, peer: u64) -> (u64, u64);
    /// The index up to which this side may go, the peer's index being
    /// `peer` (checked): the producer up to a full ring but never past
    /// [`INDEX_LIMIT`], the consumer up to the producer.
    fn end(peer: u64, capacity: u64) -> u64;
}

/// The producer's side: it owns `write_index`, and its slots are the free
/// ones.
#[derive(Debug)]
pub(crate) enum Write {}

/// The consumer's side: it owns `read_index`, and its slots are the ready
/// items.
#[derive(Debug)]
pub(crate) enum Read {}

impl Side for Write {
    const PRODUCER: bool = true;
    const WOULD_BLOCK: Error = Error::Full;
    fn own_index(header: &Header) -> &AtomicU64 {
        &header.write_index.0
    }
    fn peer_index(header: &Header) -> &AtomicU64 {
        &header.read_index.0
    }
    fn own_armed(header: &Header) -> &AtomicU32 {
        &header.producer_armed.0
    }
    fn peer_armed(header: &Header) -> &AtomicU32 {
        &header.consumer_armed.0
    }
    fn own_closed(header: &Header) -> &AtomicU32 {
        &header.closed.producer
    }
    fn peer_closed(header: &Header) -> &AtomicU32 {
        &header.closed.consumer
    }
    #[inline(always)]
    fn write_read(own: u64, peer: u64) -> (u64, u64) {
        (own, peer)
    }
    #[inline(always)]
    fn end(peer: u64, capacity: u64) -> u64 {
        // `peer <= INDEX_LIMIT` and `capacity < 2^63` (the layout checked
        // that the ring fits the address space): no overflow. The cut at
        // the limit is one `min` (a conditional move) per lending; keeping
        // the result in a field of its own instead measured slower
        // (`docs/design.md`, "Trust, concretely").
        (peer + capacity).min(INDEX_LIMIT)
    }
}

impl Side for Read {
    const PRODUCER: bool = false;
    const WOULD_BLOCK: Error = Error::Empty;
    fn own_index(header: &Header) -> &AtomicU64 {
        &header.read_index.0
    }
    fn peer_index(header: &Header) -> &AtomicU64 {
        &header.write_index.0
    }
    fn own_armed(header: &Header) -> &AtomicU32 {
        &header.consumer_armed.0
    }
    fn peer_armed(header: &Header) -> &AtomicU32 {
        &header.producer_armed.0
    }
    fn own_closed(header: &Header) -> &AtomicU32 {
        &header.closed.consumer
    }
    fn peer_closed(header: &Header) -> &AtomicU32 {
        &header.closed.producer
    }
    #[inline(always)]
    fn write_read(own: u64, peer: u64) -> (u64, u64) {
        (peer, own)
    }
    #[inline(always)]
    fn end(peer: u64, _capacity: u64) -> u64 {
        peer
    }
}

/// One side's half of the ring.
#[derive(Debug)]
pub(crate) struct Half<S> {
    shared: Shared,
    /// This side's index (items published, or consumed): the authoritative
    /// copy, never read back from shared memory.
    own: u64,
    /// `own % capacity`: the slot this side uses next.
    own_slot: u64,
    /// The peer's index as last loaded and checked.
    cached_peer: u64,
    corrupted: Option<Corruption>,
    side: PhantomData<S>,
}

// SAFETY: a `Half` only holds a pointer to atomics; the contract of
// `Half::new` makes the owner keep them alive wherever the `Half` goes, and
// all access is through atomic operations.
unsafe impl<S> Send for Half<S> {}

impl<S: Side> Half<S> {
    /// This side's half over `header`, which must describe a ring of
    /// `capacity` slots (checked by `layout`) that no other end of this
    /// side uses.
    ///
    /// # Safety
    ///
    /// `header` must point to a `Header` that stays valid (mapped, or
    /// allocated) and is not moved for as long as the returned value exists.
    pub(crate) unsafe fn new(header: NonNull<Header>, capacity: u64, mirrored: bool) -> Half<S> {
        let shared = Shared {
            header,
            capacity,
            fences: Fences::SYMMETRIC,
            mirrored,
        };
        // Each side starts from what is in the header, so that an end can
        // be reopened after a hand-off; the first check validates it.
        let own = S::own_index(shared.header()).load(Ordering::Relaxed);
        let peer = S::peer_index(shared.header()).load(Ordering::Acquire);
        let (write, read) = S::write_read(own, peer);
        let corrupted = check_fill(write, read, capacity).err();
        Half {
            own_slot: own % capacity,
            shared,
            own,
            cached_peer: peer,
            corrupted,
            side: PhantomData,
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.shared.capacity
    }

    /// Uses `fences` from now on instead of [`Fences::SYMMETRIC`].
    pub(crate) fn use_fences(&mut self, fences: Fences) {
        self.shared.fences = fences;
    }

    /// Slots this side may still publish before its index reaches
    /// [`INDEX_LIMIT`]: the most a producer may be lent. (A consumer's
    /// index never passes the producer's, so for it this only bounds.)
    #[inline(always)]
    pub(crate) fn index_room(&self) -> u64 {
        // `own <= INDEX_LIMIT` on a valid ring: the producer is never lent
        // slots past it, and the consumer's index was checked against the
        // producer's. Only an index found corrupt at open can be past it.
        INDEX_LIMIT.saturating_sub(self.own)
    }

    /// The slots this side may use by the cached peer index.
    #[inline(always)]
    fn cached_usable(&self) -> u64 {
        // `own <= end`: checked when the peer's index was loaded, and
        // `commit` never passes it.
        S::end(self.cached_peer, self.shared.capacity) - self.own
    }

    /// The slots this side may use, the peer's index freshly loaded.
    #[inline(always)]
    fn refresh_usable(&mut self) -> Result<u64, Corruption> {
        self.refresh()?;
        Ok(self.cached_usable())
    }

    /// Loads and checks the peer's index; returns the fill level (items
    /// published and not yet consumed).
    fn refresh(&mut self) -> Result<u64, Corruption> {
        let peer = S::peer_index(self.shared.header()).load(Ordering::Acquire);
        let checked = if peer < self.cached_peer {
            Err(Corruption::IndexWentBack {
                before: self.cached_peer,
                now: peer,
            })
        } else {
            let (write, read) = S::write_read(self.own, peer);
            check_fill(write, read, self.shared.capacity)
        };
        match checked {
            Ok(fill) => {
                self.cached_peer = peer;
                Ok(fill)
            }
            Err(corruption) => {
                self.corrupted = Some(corruption);
                Err(corruption)
            }
        }
    }

    /// The slots this side may use, free (producer) or ready (consumer),
    /// reloading the peer's index only if the cache knows of fewer than
    /// `want` (so `1` reloads only when the cache shows none, and
    /// `usize::MAX` always reloads unless the whole ring is usable).
    ///
    /// `peer_gone` is the layer above's knowledge that the peer's process
    /// died; like a closed word, it means `Disconnected`: at once for the
    /// producer, and for the consumer only once every published item was
    /// consumed.
    ///
    /// A producer is never lent a slot past [`INDEX_LIMIT`]: near it, the
    /// run is cut short, and at it the answer is `Exhausted(Indices)`.
    ///
    /// # Errors
    ///
    /// `Full` / `Empty` if there is no slot, `Disconnected` as above,
    /// `Corrupted` if the peer's index is invalid, `Exhausted(Indices)` if
    /// the producer's index is at the limit.
    #[inline]
    pub(crate) fn slots(&mut self, want: usize, peer_gone: bool) -> Result<Slots, Error> {
        if let Some(corruption) = self.corrupted {
            return Err(Error::Corrupted(corruption));
        }
        if S::PRODUCER && (peer_gone || self.peer_closed()) {
            return Err(Error::Disconnected);
        }
        let mut usable = self.cached_usable();
        if usable < want as u64 {
            usable = self.refresh_usable()?;
        }
        if usable == 0 {
            // The producer's usable slots stop at the limit (`Side::end`).
            if S::PRODUCER && self.index_room() == 0 {
                return Err(self.exhausted());
            }
            if S::PRODUCER || !(peer_gone || self.peer_closed()) {
                return Err(S::WOULD_BLOCK);
            }
            // The producer closed (Release) after its last publish, so one
            // more load sees everything it ever published.
            usable = self.refresh_usable()?;
            if usable == 0 {
                return Err(Error::Disconnected);
            }
        }
        Ok(self.shared.run(self.own_slot, usable))
    }

    /// The error of a producer whose index is too near the limit for what
    /// it needs: nothing past it was or will be published.
    #[cold]
    pub(crate) fn exhausted(&self) -> Error {
        Error::Exhausted(Exhaustion::Indices { index: self.own })
    }

    /// Publishes (producer) or releases (consumer) `count` slots used since
    /// the last commit.
    ///
    /// Returns `true` if the peer was armed (about to sleep) and must be
    /// woken by the caller.
    #[inline]
    pub(crate) fn commit(&mut self, count: usize) -> bool {
        if count == 0 {
            return false;
        }
        debug_assert!(count as u64 <= self.cached_usable());
        self.own += count as u64;
        self.own_slot = advance(self.own_slot, count as u64, self.shared.capacity);
        // Release, paired with the Acquire load in the peer's `refresh`:
        // the producer's writes of the items, or the consumer's reads of
        // them, happen before the peer uses the slots.
        S::own_index(self.shared.header()).store(self.own, Ordering::Release);
        take_armed(S::peer_armed(self.shared.header()), self.shared.fences)
    }

    /// Announces that this side will sleep until it can use `min` slots at
    /// once: fewer than `min` counts as no progress, so it may sleep while
    /// some are usable. The peer still wakes it on every commit it makes
    /// while armed; the caller looks again and re-arms if that was not
    /// enough.
    ///
    /// Returns `true` if it may sleep now; `false` (disarmed again) if the
    /// peer made room, closed, or corrupted the ring in the meantime: then
    /// the caller retries instead of sleeping.
    pub(crate) fn arm(&mut self, min: u64) -> bool {
        if self.corrupted.is_some() || (S::PRODUCER && self.index_room() < min) {
            // Nothing to wait for: the retry reports the corruption, or
            // that this producer can never publish `min` more.
            return false;
        }
        announce_sleep(S::own_armed(self.shared.header()), self.shared.fences);
        let progress =
            self.peer_closed() || !matches!(self.refresh_usable(), Ok(usable) if usable < min);
        if progress {
            self.disarm();
        }
        !progress
    }

    /// Withdraws an [`arm`](Self::arm) after a sleep that ended without a
    /// wake-up from the peer (a timeout, or the peer's death).
    pub(crate) fn disarm(&self) {
        S::own_armed(self.shared.header()).store(0, Ordering::Relaxed);
    }

    /// The peer's index word as it is now, unchecked: only to tell
    /// whether the peer has moved since an earlier look (a dead peer
    /// never does), never to use slots by.
    pub(crate) fn peer_index_now(&self) -> u64 {
        S::peer_index(self.shared.header()).load(Ordering::Relaxed)
    }

    /// Whether the peer has closed its end.
    #[inline]
    pub(crate) fn peer_closed(&self) -> bool {
        S::peer_closed(self.shared.header()).load(Ordering::Acquire) != 0
    }

    /// Items in the ring (published and not yet consumed) by this side's
    /// own index and a fresh load of the peer's: a racy snapshot, clamped
    /// to `0..=capacity` whatever the peer wrote. It checks nothing and
    /// changes nothing (neither the cached peer index nor the recorded
    /// corruption): a bad index shows up on the next call that uses it.
    pub(crate) fn fill_snapshot(&self) -> u64 {
        let peer = S::peer_index(self.shared.header()).load(Ordering::Acquire);
        let (write, read) = S::write_read(self.own, peer);
        write.saturating_sub(read).min(self.shared.capacity)
    }

    /// Marks this side closed. Returns `true` if the peer was armed.
    pub(crate) fn close(&self) -> bool {
        // Release: everything committed before is visible to a peer that
        // sees the closed word (Acquire in its `peer_closed`).
        S::own_closed(self.shared.header()).store(1, Ordering::Release);
        take_armed(S::peer_armed(self.shared.header()), self.shared.fences)
    }
}

impl Half<Write> {
    /// The items published and not yet consumed, by a fresh and checked
    /// load of the consumer's index: the first one's slot and how many
    /// (the run is cut at the end of the data if it is not mirrored).
    /// Once the consumer is gone, these are exactly the items it never
    /// took.
    ///
    /// # Errors
    ///
    /// `Corrupted` if the consumer's index is invalid (now or before).
    pub(crate) fn unread(&mut self) -> Result<Slots, Error> {
        if let Some(corruption) = self.corrupted {
            return Err(Error::Corrupted(corruption));
        }
        let fill = self.refresh().map_err(Error::Corrupted)?;
        // `fill <= own` (checked by `refresh`), so the read index is
        // `own - fill`.
        let start = (self.own - fill) % self.shared.capacity;
        Ok(self.shared.run(start, fill))
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
            wake_inodes: [0, 0],
        }))
    }

    fn ends(header: &Header, capacity: u64, mirrored: bool) -> (Half<Write>, Half<Read>) {
        let ptr = NonNull::from(header);
        // SAFETY: each test keeps the boxed header alive and unmoved while
        // it uses the two ends.
        unsafe {
            (
                Half::<Write>::new(ptr, capacity, mirrored),
                Half::<Read>::new(ptr, capacity, mirrored),
            )
        }
    }

    #[test]
    fn unmirrored_runs_stop_at_the_wrap_and_mirrored_runs_do_not() {
        let header = boxed_header(5);
        let (mut tx, mut rx) = ends(&header, 5, false);
        assert_eq!(tx.slots(1, false), Ok(Slots { start: 0, len: 5 }));
        tx.commit(4);
        assert_eq!(rx.slots(1, false), Ok(Slots { start: 0, len: 4 }));
        rx.commit(3);
        // The cache still says one free slot; it is lent without a reload.
        assert_eq!(tx.slots(1, false), Ok(Slots { start: 4, len: 1 }));
        tx.commit(1);
        assert_eq!(tx.slots(1, false), Ok(Slots { start: 0, len: 3 }));

        let mirrored = boxed_header(5);
        let (mut tx, mut rx) = ends(&mirrored, 5, true);
        tx.commit(4);
        rx.slots(1, false).unwrap();
        rx.commit(4);
        assert_eq!(tx.slots(1, false), Ok(Slots { start: 4, len: 1 }));
        tx.commit(1);
        assert_eq!(tx.slots(1, false), Ok(Slots { start: 0, len: 4 }));
        tx.commit(3);
        assert_eq!(rx.slots(1, false), Ok(Slots { start: 4, len: 4 }));
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
                match tx.slots(batch, false) {
                    Ok(run) => {
                        let n = run.len.min(batch).min((count - next) as usize);
                        for i in 0..n {
                            // SAFETY: a free slot, owned by the producer
                            // until published.
                            unsafe { *producer_slots.0[run.start + i].get() = next + i as u64 };
                        }
                        tx.commit(n);
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
            match rx.slots(batch, false) {
                Ok(run) => {
                    let n = run.len.min(batch).min((stop_after - expected) as usize);
                    for i in 0..n {
                        // SAFETY: a published slot, owned by the consumer
                        // until released.
                        let value = unsafe { *slots.0[run.start + i].get() };
                        assert_eq!(value, expected);
                        expected += 1;
                    }
                    rx.commit(n);
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
    fn unread_is_what_the_consumer_never_released_and_a_bad_index_is_refused() {
        let header = boxed_header(8);
        let (mut tx, mut rx) = ends(&header, 8, true);
        tx.slots(6, false).unwrap();
        tx.commit(6);
        rx.slots(1, false).unwrap();
        rx.commit(4);
        assert_eq!(tx.unread().unwrap(), Slots { start: 4, len: 2 });
        // Across the wrap, in one run (mirrored).
        tx.slots(5, false).unwrap();
        tx.commit(5);
        assert_eq!(tx.unread().unwrap(), Slots { start: 4, len: 7 });
        // A read index past the write index: nobody can say what was read.
        Read::own_index(&header).store(100, Ordering::Release);
        assert!(matches!(tx.unread(), Err(Error::Corrupted(_))));
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
        tx.commit(6);
        assert_eq!(rx.slots(1, false).map(|s| s.len), Ok(6));
        rx.commit(6);
        // The cache still shows 2 free: enough for one item, not for all.
        assert_eq!(tx.slots(1, false), Ok(Slots { start: 6, len: 2 }));
        assert_eq!(tx.slots(2, false), Ok(Slots { start: 6, len: 2 }));
        assert_eq!(tx.slots(3, false), Ok(Slots { start: 6, len: 8 }));
        tx.commit(1);
        assert_eq!(rx.slots(1, false), Ok(Slots { start: 6, len: 1 }));
        tx.commit(1);
        assert_eq!(rx.slots(1, false), Ok(Slots { start: 6, len: 1 }));
        assert_eq!(rx.slots(usize::MAX, false), Ok(Slots { start: 6, len: 2 }));
    }

    #[test]
    fn a_consumer_index_beyond_the_producer_is_corruption_and_stays_so() {
        let header = boxed_header(4);
        let (mut tx, _rx) = ends(&header, 4, true);
        tx.commit(4);
        header.read_index.0.store(9, Ordering::Relaxed);
        let expected = Corruption::IndexOutOfRange {
            write: 4,
            read: 9,
            capacity: 4,
        };
        assert_eq!(tx.slots(1, false), Err(Error::Corrupted(expected)));
        header.read_index.0.store(0, Ordering::Relaxed);
        assert_eq!(tx.slots(1, false), Err(Error::Corrupted(expected)));
    }

    #[test]
    fn a_write_index_that_goes_back_is_corruption() {
        let header = boxed_header(4);
        let (mut tx, mut rx) = ends(&header, 4, true);
        tx.commit(3);
        assert_eq!(rx.slots(1, false).map(|s| s.len), Ok(3));
        rx.commit(3);
        header.write_index.0.store(1, Ordering::Relaxed);
        assert_eq!(
            rx.slots(1, false),
            Err(Error::Corrupted(Corruption::IndexWentBack {
                before: 3,
                now: 1
            }))
        );
    }

    #[test]
    fn a_producer_is_never_lent_a_slot_past_the_index_limit() {
        let header = boxed_header(8);
        header
            .write_index
            .0
            .store(INDEX_LIMIT - 3, Ordering::Relaxed);
        header
            .read_index
            .0
            .store(INDEX_LIMIT - 3, Ordering::Relaxed);
        let (mut tx, mut rx) = ends(&header, 8, true);
        // 8 slots free, 3 left before the limit.
        assert_eq!(tx.slots(usize::MAX, false).map(|s| s.len), Ok(3));
        tx.commit(2);
        assert_eq!(tx.slots(1, false).map(|s| s.len), Ok(1));
        tx.commit(1);
        let exhausted = Err(Error::Exhausted(Exhaustion::Indices { index: INDEX_LIMIT }));
        assert_eq!(tx.slots(1, false), exhausted);
        // With items unread, too: the limit, not the consumer, stops it.
        assert_eq!(rx.slots(usize::MAX, false).map(|s| s.len), Ok(3));
        assert_eq!(tx.slots(usize::MAX, false), exhausted);
        rx.commit(3);
        assert_eq!(rx.slots(1, false), Err(Error::Empty));
        assert_eq!(tx.slots(1, false), exhausted);
    }

    #[test]
    fn the_fill_snapshot_is_clamped_and_leaves_a_bad_index_to_the_next_call() {
        let header = boxed_header(4);
        let (mut tx, rx) = ends(&header, 4, true);
        tx.commit(3);
        assert_eq!((tx.fill_snapshot(), rx.fill_snapshot()), (3, 3));
        // A read index beyond the write index: nothing is in the ring.
        header.read_index.0.store(9, Ordering::Relaxed);
        assert_eq!(tx.fill_snapshot(), 0);
        // A write index far ahead: the ring is at most full.
        header.write_index.0.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(rx.fill_snapshot(), 4);
        // Neither snapshot recorded anything: the next real call reports it.
        assert!(matches!(
            tx.slots(2, false),
            Err(Error::Corrupted(Corruption::IndexOutOfRange {
                read: 9,
                ..
            }))
        ));
    }

    #[test]
    fn a_closed_producer_is_disconnected_only_after_the_ring_is_drained() {
        let header = boxed_header(4);
        let (mut tx, mut rx) = ends(&header, 4, true);
        tx.commit(2);
        tx.close();
        assert_eq!(rx.slots(1, false).map(|s| s.len), Ok(2));
        rx.commit(2);
        assert_eq!(rx.slots(1, false), Err(Error::Disconnected));
    }

    #[test]
    fn a_dead_producer_is_disconnected_only_after_its_items_are_drained() {
        // `peer_gone` (the liveness fd fired) with items still published:
        // they come first, then the disconnect.
        let header = boxed_header(4);
        let (mut tx, mut rx) = ends(&header, 4, true);
        tx.commit(3);
        assert_eq!(rx.slots(1, true).map(|s| s.len), Ok(3));
        rx.commit(2);
        assert_eq!(rx.slots(usize::MAX, true).map(|s| s.len), Ok(1));
        rx.commit(1);
        assert_eq!(rx.slots(1, true), Err(Error::Disconnected));
    }

    #[test]
    fn publishing_wakes_only_an_armed_consumer() {
        let header = boxed_header(4);
        let (mut tx, mut rx) = ends(&header, 4, true);
        assert!(!tx.commit(1), "nobody armed: no wake-up");
        let ready = rx.slots(1, false).unwrap().len;
        rx.commit(ready);
        assert!(rx.arm(1), "empty ring: the consumer may sleep");
        assert!(tx.commit(1), "armed consumer: wake it");
        assert!(!tx.commit(1), "the flag was taken: only one wake-up");
        assert!(!rx.arm(1), "data is ready: do not sleep");
        assert_eq!(header.consumer_armed.0.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_producer_needing_more_room_sleeps_and_is_woken_by_each_release() {
        let header = boxed_header(4);
        let (mut tx, mut rx) = ends(&header, 4, true);
        tx.slots(4, false).unwrap();
        assert!(!tx.commit(3), "nobody armed: no wake-up");
        assert!(!tx.arm(1), "one slot is free: progress for one item");
        assert!(tx.arm(2), "one free slot is too few for two: it may sleep");
        rx.slots(1, false).unwrap();
        assert!(rx.commit(1), "armed producer: woken on the release");
        assert!(!tx.arm(2), "two free now: enough");
        assert_eq!(header.producer_armed.0.load(Ordering::Relaxed), 0);
    }
}
