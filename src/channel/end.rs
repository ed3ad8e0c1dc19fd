//! `End<S>`: what a sender and a receiver share (the ring half over its
//! mapping, the wake-up socket, the peer's liveness, the counters), and
//! how a blocking call waits: spin, then sleep on the socket.

use std::fmt;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use super::builder::dup;
use super::{Builder, Fds, Stats};
use crate::error::Error;
use crate::layout::Config;
use crate::memfd::Mapping;
use crate::ring::{Half, Side, Slots};
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
    peer_gone: bool,
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
        Ok(End {
            half,
            data: mapping.data(),
            item_size: config.item_size as usize,
            mapping,
            memfd,
            wake,
            peer: None,
            peer_gone: false,
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

    #[inline]
    fn try_slots(&mut self, want: usize, min: usize) -> Result<Slots, Error> {
        let slots = self.half.slots(want, self.peer_gone);
        // The ring lends at least one slot, so `min == 1` (every call but
        // the frame layer's) needs no check, and the item calls stay small
        // enough to be inlined: keep anything more out of this function.
        if min > 1 {
            return self.at_least(slots, min);
        }
        slots
    }

    /// `slots` if it has at least `min` slots; otherwise full for now, or
    /// for good if a producer's index is too near the format's limit ever
    /// to publish `min` more.
    #[cold]
    #[inline(never)]
    fn at_least(&self, slots: Result<Slots, Error>, min: usize) -> Result<Slots, Error> {
        match slots {
            Ok(slots) if slots.len >= min => Ok(slots),
            Ok(_) | Err(Error::Full) => {
                if S::PRODUCER && self.half.index_room() < min as u64 {
                    Err(self.half.exhausted())
                } else {
                    Err(S::WOULD_BLOCK)
                }
            }
            other => other,
        }
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
        if self.peer_gone {
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
            || (!self.peer_gone && self.peer.as_ref().is_some_and(Liveness::is_gone))
        {
            self.peer_gone = true;
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
                    self.peer_gone = true;
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
