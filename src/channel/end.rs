//! `End<S>`: what a sender and a receiver share (the ring half over its
//! mapping, the wake-up socket, the peer's liveness, the counters), how a
//! blocking call waits (spin, then sleep on the socket), and how the
//! non-blocking calls notice, now and then, that the peer died.

use std::cell::Cell;
use std::fmt;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use super::builder::dup;
use super::{Builder, Fds, Stats};
use crate::error::Error;
use crate::layout::Config;
use crate::memfd::Mapping;
use crate::ring::{Half, Side, Slots, Write};
use crate::signal::{self, Drained, Liveness, WakeSocket, Woken};

/// What a sender and a receiver have in common: one half of the ring over
/// its own mapping, the socket it wakes the peer with and sleeps on, and
/// the peer's extra liveness, if watched.
pub(super) struct End<S: Side> {
    // Declared before `mapping`: it points into it and is dropped first.
    pub(super) half: Half<S>,
    data: NonNull<u8>,
    item_size: usize,
    mapping: Mapping,
    memfd: OwnedFd,
    pub(super) wake: WakeSocket,
    pub(super) peer: Option<Liveness>,
    /// The peer's process is known to be gone. A `Cell` so that
    /// `is_abandoned(&self)` can record what its probe found.
    peer_gone: Cell<bool>,
    /// The stream is over for this end: its peer is gone, or it closed
    /// itself ([`close`](Self::close)). What the ring's calls are told
    /// (a producer stops at once, a consumer after the last item).
    stop: Cell<bool>,
    /// The consumer's unread items were taken back (`take_unread`).
    unread_taken: bool,
    probe: Probe,
    spin: Duration,
    pub(super) stats: Stats,
    /// False once the fds were handed on: dropping then does not close.
    close_on_drop: bool,
}

// SAFETY: `data` points into `mapping`, which moves with the `End`; every
// other field is `Send`. A `Sender`/`Receiver` is used by one thread at a
// time (`&mut self` for every operation), so it is `Send` but not `Sync`.
unsafe impl<S: Side> Send for End<S> {}

impl<S: Side> End<S> {
    pub(super) fn new(
        mapping: Mapping,
        config: &Config,
        memfd: OwnedFd,
        wake: WakeSocket,
        options: &Builder,
    ) -> Result<End<S>, Error> {
        if options.mlock {
            mapping.lock()?;
        }
        // SAFETY: the header lies at the start of `mapping`, which the
        // `End` owns and drops after `half` (field order).
        let mut half = unsafe { Half::new(mapping.header().cast(), config.capacity, true) };
        half.use_fences(signal::fences());
        let probe = Probe::new(half.peer_index_now());
        Ok(End {
            half,
            data: mapping.data(),
            item_size: config.item_size as usize,
            mapping,
            memfd,
            wake,
            peer: None,
            peer_gone: Cell::new(false),
            stop: Cell::new(false),
            unread_taken: false,
            probe,
            spin: options.spin,
            stats: Stats::default(),
            close_on_drop: true,
        })
    }

    /// A pointer to the first slot of `slots`.
    #[inline]
    pub(super) fn slot_ptr(&self, slots: Slots) -> *mut u8 {
        // SAFETY: `slots.start < capacity` and the data region is
        // `capacity * item_size` bytes followed by its mirror, so the offset
        // and the whole run (`len <= capacity` slots) stay inside the mapping.
        unsafe { self.data.as_ptr().add(slots.start * self.item_size) }
    }

    /// Lends slots at once, or waits for them as `wait` says. `want` is
    /// how many the caller could use: the cached peer index is reloaded
    /// only if it shows fewer.
    #[inline]
    pub(super) fn slots(&mut self, want: usize, wait: Wait) -> Result<Slots, Error> {
        self.slots_min(want, 1, wait)
    }

    #[inline]
    pub(super) fn slots_min(
        &mut self,
        want: usize,
        min: usize,
        wait: Wait,
    ) -> Result<Slots, Error> {
        match wait {
            Wait::Never => self.try_slots(want, min),
            Wait::Until(deadline) => self.wait_slots(want, min, deadline),
        }
    }

    /// One attempt, never waiting. When it would block, now and then (see
    /// [`Probe`]) it also looks for the peer's death, so that a
    /// busy-polling loop learns of it: a consumer only once it has taken
    /// every item the peer published.
    ///
    /// The shape matters more than the instruction count: the path that
    /// finds slots is the ring's own, unchanged; a would-block adds an
    /// increment, a test and an out-of-line call, after the attempt, that
    /// returns nothing (the attempt's error is passed on as it is, and
    /// what the look finds, the next attempt reports). Every other shape
    /// measured, and any addition to the path that finds slots, made a
    /// stream of single items up to twice as slow: see `docs/design.md`,
    /// "Noticing a death without waiting".
    // Always inlined: merged, the index-limit check and the death probe
    // left it out of line in the item calls, and `stream_u64_single` fell
    // from a median of 222 to 187 Mitems/s (docs/design.md).
    #[inline(always)]
    fn try_slots(&mut self, want: usize, min: usize) -> Result<Slots, Error> {
        let slots = self.half.slots(want, self.stop.get());
        // The ring lends at least one slot, so `min == 1` (every call but
        // the frame layer's) needs no check, and the item calls stay small
        // enough to be inlined: keep anything more out of this function.
        if min > 1 {
            return self.at_least(slots, min);
        }
        match slots {
            Err(e @ (Error::Full | Error::Empty)) => {
                self.blocked();
                Err(e)
            }
            other => other,
        }
    }

    /// `slots` if it has at least `min` slots; otherwise full (or empty) for
    /// now, or for good if a producer's index is too near the format's
    /// limit ever to publish `min` more.
    #[cold]
    #[inline(never)]
    fn at_least(&mut self, slots: Result<Slots, Error>, min: usize) -> Result<Slots, Error> {
        match slots {
            Ok(slots) if slots.len >= min => Ok(slots),
            Ok(_) | Err(Error::Full | Error::Empty) => {
                if S::PRODUCER && self.half.index_room() < min as u64 {
                    Err(self.half.exhausted())
                } else {
                    self.blocked();
                    Err(S::WOULD_BLOCK)
                }
            }
            other => other,
        }
    }

    /// An attempt found no slot: counts it, and every [`BLOCKED_STRIDE`]
    /// looks for the peer's death if it is due.
    #[inline(always)]
    fn blocked(&mut self) {
        self.probe.blocked += 1;
        if self.probe.blocked >= BLOCKED_STRIDE {
            self.blocked_probe_due();
        }
    }

    /// [`BLOCKED_STRIDE`] attempts found no slot: looks for the peer's
    /// death if it is due, and if the peer is gone, records it for the
    /// attempt that follows (a producer then gets `Disconnected`; a
    /// consumer what the peer published before it died, then
    /// `Disconnected`).
    #[cold]
    #[inline(never)]
    fn blocked_probe_due(&mut self) {
        self.probe.blocked = 0;
        self.probe_if_due();
    }

    /// Looks for the peer's death if [`PROBE_INTERVAL`] has passed since
    /// the last look (one read of the coarse clock) and the peer's index
    /// has not moved since then (one load; a dead peer's never does, so a
    /// stream that flows makes no system call here), with one `poll`.
    /// Returns whether the peer is known to be gone.
    pub(super) fn probe_if_due(&mut self) -> bool {
        let now = signal::coarse_now();
        if now < self.probe.next {
            return self.peer_gone.get();
        }
        self.probe.next = now.saturating_add(PROBE_INTERVAL);
        let peer_index = self.half.peer_index_now();
        if peer_index != self.probe.peer_index {
            // The peer moved since the last look: it lived a moment ago.
            self.probe.peer_index = peer_index;
            return self.peer_gone.get();
        }
        self.peer_gone_now()
    }

    /// Whether the peer is gone: known already, or found now by one
    /// `poll` that reads nothing (`signal::peer_gone_now`).
    fn peer_gone_now(&self) -> bool {
        if !self.peer_gone.get() && signal::peer_gone_now(&self.wake, self.peer.as_ref()) {
            self.mark_peer_gone();
        }
        self.peer_gone.get()
    }

    /// Records that the peer's process is gone: the stream is over.
    fn mark_peer_gone(&self) {
        self.peer_gone.set(true);
        self.stop.set(true);
    }

    /// Ends the stream from this side without giving up the end: marks
    /// it closed in the header and wakes the peer if it sleeps, as a drop
    /// would. From then on a producer's calls return `Disconnected`; a
    /// consumer's return what is left, then `Disconnected`. Idempotent.
    pub(super) fn close(&mut self) {
        self.stop.set(true);
        if self.half.close() {
            self.wake();
        }
    }

    /// Whether the peer closed its end or its process is gone; a system
    /// call unless that is known already.
    pub(super) fn is_abandoned(&self) -> bool {
        self.half.peer_closed() || self.peer_gone_now()
    }

    /// Items in the ring, a racy snapshot clamped to the capacity.
    pub(super) fn fill_snapshot(&self) -> usize {
        // At most the capacity, which fits a usize (checked when opening).
        self.half.fill_snapshot() as usize
    }

    /// Drains the socket, then arms for `min` slots: after `Ok(true)` the
    /// socket becomes readable when a retry can make progress. Also looks
    /// at the peer's liveness (this path makes system calls anyway), so
    /// that a retry after the peer's death returns `Disconnected`.
    pub(super) fn prepare_wait(&mut self, min: usize) -> Result<bool, Error> {
        // Drain first: any wake-up from here on answers this arm.
        let drained = self.look_for_peer()?;
        // Still readable: a wait would return at once, so retry now.
        if drained == Drained::StillReadable {
            return Ok(false);
        }
        if self.stop.get() {
            // The retry drains what is left, then reports the disconnect.
            return Ok(false);
        }
        Ok(self.half.arm(min as u64))
    }

    /// Drains the wake-up socket and notes whether the peer is gone (its
    /// socket hung up, or the watched liveness fired); returns what the
    /// drain found.
    fn look_for_peer(&mut self) -> Result<Drained, Error> {
        let drained = self.wake.drain()?;
        if drained == Drained::PeerGone
            || (!self.peer_gone.get() && self.peer.as_ref().is_some_and(Liveness::is_gone))
        {
            self.mark_peer_gone();
        }
        Ok(drained)
    }

    /// Waits until the ring lends at least one slot: spins for `spin`, then
    /// sleeps on the wake-up socket following the armed protocol.
    fn wait_slots(
        &mut self,
        want: usize,
        min: usize,
        deadline: Option<Instant>,
    ) -> Result<Slots, Error> {
        let would_block = |r: &Result<Slots, Error>| matches!(r, Err(Error::Full | Error::Empty));
        let first = self.try_slots(want, min);
        if !would_block(&first) {
            return first;
        }
        if !self.spin.is_zero() {
            // A spin too long to represent (`Duration::MAX`) spins until
            // the deadline, or for as long as it takes.
            let spin_end = Instant::now().checked_add(self.spin);
            let spin_until = match (deadline, spin_end) {
                (Some(d), Some(s)) => Some(d.min(s)),
                (d, s) => d.or(s),
            };
            // Spin briefly with growing pauses, then yield the CPU between
            // checks: on a machine with few cores, the peer we wait for
            // may have been woken on this very core, and a pure spin would
            // keep it off the CPU until the spin ends (docs/design.md).
            //
            // A long spin also looks at the socket now and then, as a sleep
            // would: a peer that died without closing its end (killed)
            // never changes the ring, and must not keep this call spinning
            // forever.
            let mut look_at = Instant::now().checked_add(SPIN_LOOK_EVERY);
            let mut step = 0;
            loop {
                if step < 4 {
                    for _ in 0..1 << step {
                        std::hint::spin_loop();
                    }
                    step += 1;
                } else {
                    std::thread::yield_now();
                }
                let attempt = self.try_slots(want, min);
                if !would_block(&attempt) {
                    return attempt;
                }
                let now = Instant::now();
                if spin_until.is_some_and(|until| now >= until) {
                    break;
                }
                if look_at.is_some_and(|at| now >= at) {
                    // The retry reports a peer found gone.
                    self.look_for_peer()?;
                    look_at = now.checked_add(SPIN_LOOK_EVERY);
                }
            }
        }
        loop {
            if self.half.arm(min as u64) {
                self.stats.sleeps += 1;
                // Without the heavy barrier a light publisher's wake-up can
                // be lost, so such sleeps are sliced (`signal::poll_timeout`).
                let until = match signal::poll_timeout().and_then(|s| Instant::now().checked_add(s))
                {
                    Some(end) => Some(deadline.map_or(end, |d| d.min(end))),
                    None => deadline,
                };
                let woken = signal::wait(&self.wake, self.peer.as_ref(), until);
                // Whatever woke us, we are awake and will look for
                // ourselves: a stale armed word would only cost the peer a
                // useless wake-up.
                self.half.disarm();
                if woken? == Woken::PeerGone {
                    self.mark_peer_gone();
                }
            }
            let attempt = self.try_slots(want, min);
            if !would_block(&attempt) {
                return attempt;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout);
            }
        }
    }

    /// Publishes or releases `count` slots and wakes the peer if it sleeps.
    #[inline]
    pub(super) fn commit(&mut self, count: usize) {
        if self.half.commit(count) {
            self.wake();
        }
    }

    fn wake(&mut self) {
        self.stats.wakeups += 1;
        // A send on a validated Unix stream socket cannot fail but for a
        // full buffer or a closed peer, which `notify` treats as done.
        let _ = self.wake.notify();
    }

    pub(super) fn into_fds(mut self) -> Result<Fds, Error> {
        let fds = Fds {
            memfd: dup(&self.memfd)?,
            wake: self.wake.try_clone()?.into_fd(),
        };
        self.close_on_drop = false;
        Ok(fds)
    }
}

impl End<Write> {
    /// Waits until the consumer has taken every item published (the ring
    /// is empty): for as long as `wait` allows, through the same armed
    /// protocol as a wait for room, for room for the whole ring.
    ///
    /// `Disconnected` if the consumer is gone with items left unread.
    pub(super) fn wait_drained(&mut self, deadline: Option<Instant>) -> Result<(), Error> {
        let capacity = self.half.capacity();
        loop {
            if self.half.unread()?.len == 0 {
                return Ok(());
            }
            if self.peer_gone.get() || self.half.peer_closed() {
                return Err(Error::Disconnected);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout);
            }
            // Sliced as every sleep is (`signal::poll_timeout`); and within
            // a ring's length of the index limit, where no wait for the
            // whole ring can be armed, a look every millisecond (a case for
            // tests only: 2^62 items take decades).
            let slice = if self.half.index_room() < capacity {
                Some(SPIN_LOOK_EVERY)
            } else if self.half.arm(capacity) {
                signal::poll_timeout()
            } else {
                // The consumer moved, closed or broke the ring: look again.
                continue;
            };
            let until = match slice.and_then(|s| now.checked_add(s)) {
                Some(end) => Some(deadline.map_or(end, |d| d.min(end))),
                None => deadline,
            };
            self.stats.sleeps += 1;
            let woken = signal::wait(&self.wake, self.peer.as_ref(), until);
            self.half.disarm();
            if woken? == Woken::PeerGone {
                self.mark_peer_gone();
            }
        }
    }

    /// The items the consumer never took, once it is gone: copied out of
    /// the ring by the consumer's last index, in order. Once only: a
    /// second call returns none.
    ///
    /// `Err(PeerAlive)` if the consumer has neither closed nor died: its
    /// items are still its own to read.
    pub(super) fn take_unread<T: bytemuck::Pod>(&mut self) -> Result<Vec<T>, Error> {
        if !self.is_abandoned() {
            return Err(Error::PeerAlive);
        }
        if self.unread_taken {
            return Ok(Vec::new());
        }
        let slots = self.half.unread()?;
        let mut items: Vec<T> = Vec::new();
        items.try_reserve_exact(slots.len).map_err(|_| {
            Error::Exhausted(crate::error::Exhaustion::Allocation {
                requested: (slots.len * self.item_size) as u64,
            })
        })?;
        debug_assert_eq!(self.item_size, std::mem::size_of::<T>());
        // SAFETY: `slots` is a run of at most `capacity` slots from a slot
        // below `capacity`, which the mirrored mapping holds contiguously
        // (`slot_ptr`); `items` has room for `slots.len` items of the
        // ring's item size (`T`'s, checked when the end was made), and
        // the two do not overlap (one is the heap). The bytes may be
        // whatever a hostile consumer wrote before it died: every bit
        // pattern is a valid `T` (`Pod`), and the consumer is gone (or
        // closed), so nothing writes them while they are copied.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.slot_ptr(slots).cast_const(),
                items.as_mut_ptr().cast::<u8>(),
                slots.len * self.item_size,
            );
            items.set_len(slots.len);
        }
        self.unread_taken = true;
        Ok(items)
    }
}

impl<S: Side> Drop for End<S> {
    fn drop(&mut self) {
        if self.close_on_drop && self.half.close() {
            self.wake();
        }
    }
}

impl<S: Side> fmt::Debug for End<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("End")
            .field("mapping", &self.mapping)
            .field("memfd", &self.memfd)
            .field("peer", &self.peer)
            .field("peer_gone", &self.peer_gone)
            .field("stop", &self.stop)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Whether a call may wait for slots.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// The `try_` calls.
    Never,
    /// Until the deadline; `None` waits for as long as it takes.
    Until(Option<Instant>),
}

pub(super) const FOREVER: Wait = Wait::Until(None);

impl Wait {
    pub(crate) fn timeout(timeout: Duration) -> Wait {
        // A timeout too large to represent waits forever.
        Wait::Until(Instant::now().checked_add(timeout))
    }
}

/// How often a spin longer than this looks at the wake-up socket for the
/// peer's hang-up: rarely enough to cost nothing next to the yields, often
/// enough that a killed peer is noticed at once by a person's measure.
const SPIN_LOOK_EVERY: Duration = Duration::from_millis(1);

/// `want` for the closure calls: they lend every slot there is.
pub(super) const ALL: usize = usize::MAX;

/// The least time between two looks for the peer's death by the
/// non-blocking calls (one `poll` each, about 0.2 µs), in nanoseconds of
/// the coarse clock (`signal::coarse_now`), which advances once per
/// kernel tick: so in practice a look per tick, 1 to 10 ms.
const PROBE_INTERVAL: u64 = 1_000_000;
/// Attempts that find the ring full or empty between two reads of the
/// clock.
const BLOCKED_STRIDE: u32 = 16;

/// When the non-blocking calls next look for the peer's death.
///
/// At most every [`PROBE_INTERVAL`], the [`BLOCKED_STRIDE`]th attempt
/// that found the ring full or empty loads the peer's index; if it has
/// not moved since the last such load, it looks at the wake-up socket for
/// a hang-up. A death is thus seen at the second look after it: within
/// two ticks of the coarse clock for a loop that busy-polls, and
/// otherwise within 32 attempts that find the ring full (empty) after
/// those ticks; the attempt after the look reports it. A stream that
/// flows never gets as far as the `poll`; an idle ring polled by a `try_`
/// loop makes one per tick. The path that finds slots does nothing of
/// this: a producer streaming into a ring with room learns of the death
/// when the ring is full (or from `is_abandoned`).
#[derive(Debug)]
struct Probe {
    /// Attempts that found the ring full or empty since the clock was
    /// last read.
    blocked: u32,
    /// No look before this, on the coarse clock.
    next: u64,
    /// The peer's index at the last look.
    peer_index: u64,
}

impl Probe {
    fn new(peer_index: u64) -> Probe {
        Probe {
            blocked: 0,
            next: 0,
            peer_index,
        }
    }
}
