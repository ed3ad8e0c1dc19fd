//! `Sender<T>` and `Receiver<T>`: a ring, a mapping and a wake-up socket.
//!
//! This module owns the typed ends: the closure API, the item and slice
//! helpers, blocking with a spin-then-sleep strategy, timeouts, disconnect,
//! and the bundle of fds an end is made of. It builds on `ring` (the
//! algorithm), `memfd` (the mapping) and `signal` (wake-ups and liveness);
//! it does not know how the fds reach the other process (`handoff`).

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::error::{Error, Rejection};
use crate::layout::{self, Config, Expected, Header};
use crate::memfd::{self, CreateOptions, Mapping};
use crate::ring::{Half, Read, Side, Slots, Write};
use crate::signal::{self, Drained, Liveness, WakeSocket, Woken};

/// How long a blocking call spins, re-checking the ring, before it sleeps
/// on its wake-up socket; see [`Builder::spin`]. About the cost of one wake-up
/// through the kernel on a virtual machine (the measurement is in
/// `docs/design.md`).
///
/// ```
/// assert_eq!(fdring::DEFAULT_SPIN, std::time::Duration::from_micros(20));
/// ```
pub const DEFAULT_SPIN: Duration = Duration::from_micros(20);

/// Creates a ring of at least `capacity` items in a new sealed memfd and
/// returns its two ends.
///
/// The capacity is rounded up so that the data region is a whole number of
/// pages (for `u64`, a multiple of 512); [`Sender::capacity`] tells the real
/// value. Use [`Builder`] for the other options.
///
/// # Errors
///
/// `Rejected(ZeroCapacity)` for a capacity of 0, `Rejected(ZeroSizedItem)`
/// for a zero-sized `T`, `Rejected(BadCapacity)` if the ring would not fit
/// the address space, `Io` if the kernel refuses the memfd or the mapping.
///
/// # Examples
///
/// ```
/// let (mut tx, mut rx) = fdring::channel::<u64>(1000)?;
/// assert_eq!(tx.capacity(), 1024);
/// tx.send(7)?;
/// assert_eq!(rx.recv()?, 7);
/// # Ok::<(), fdring::Error>(())
/// ```
pub fn channel<T: Pod>(capacity: usize) -> Result<(Sender<T>, Receiver<T>), Error> {
    Builder::new().capacity(capacity).build()
}

/// Options for creating a ring, or for opening one received from elsewhere.
///
/// ```
/// use std::time::Duration;
/// let (tx, rx) = fdring::Builder::new()
///     .capacity(4096)
///     .type_tag(0xa0d10)
///     .spin(Duration::from_micros(10))
///     .build::<f32>()?;
/// // The receiving side names the tag it expects when it opens the fds.
/// let rx = fdring::Builder::new().type_tag(0xa0d10).open_receiver::<f32>(rx.into_fds()?)?;
/// # Ok::<(), fdring::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    capacity: usize,
    type_tag: Option<u64>,
    huge_pages: bool,
    mlock: bool,
    spin: Duration,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

impl Builder {
    /// Options with no capacity yet, no type tag, normal pages, no `mlock`,
    /// and [`DEFAULT_SPIN`].
    pub fn new() -> Builder {
        Builder {
            capacity: 0,
            type_tag: None,
            huge_pages: false,
            mlock: false,
            spin: DEFAULT_SPIN,
        }
    }

    /// The least number of items the ring holds (rounded up to whole
    /// pages). Only used by [`build`](Self::build).
    pub fn capacity(mut self, capacity: usize) -> Builder {
        self.capacity = capacity;
        self
    }

    /// A tag naming the item type, written into the header by
    /// [`build`](Self::build) and required to match by the `open_` calls.
    /// Without it, `build` writes 0 and `open_` accepts any tag.
    pub fn type_tag(mut self, tag: u64) -> Builder {
        self.type_tag = Some(tag);
        self
    }

    /// Backs the ring with huge pages (`MFD_HUGETLB`); the capacity is then
    /// rounded to whole huge pages. Fails with an `Io` error if the system
    /// has no huge pages to give.
    pub fn huge_pages(mut self, huge_pages: bool) -> Builder {
        self.huge_pages = huge_pages;
        self
    }

    /// Locks this end's mapping into RAM (`mlock`) so that it never takes a
    /// page fault, for real-time audio. Fails with an `Io` error if
    /// `RLIMIT_MEMLOCK` is too low.
    pub fn mlock(mut self, mlock: bool) -> Builder {
        self.mlock = mlock;
        self
    }

    /// How long a blocking call spins before it sleeps on its wake-up
    /// socket.
    ///
    /// The spin re-checks the ring with `spin_loop` hints for about a
    /// microsecond, then yields the CPU between checks. Spinning costs CPU
    /// while the peer is slow; sleeping costs a system call on each side
    /// and a scheduler wake-up (tens of microseconds on a virtual machine)
    /// when the peer is fast. The default, [`DEFAULT_SPIN`], is about one
    /// wake-up's cost. `Duration::ZERO` sleeps at once.
    pub fn spin(mut self, spin: Duration) -> Builder {
        self.spin = spin;
        self
    }

    /// Creates a ring in a new sealed memfd and returns its two ends.
    ///
    /// # Errors
    ///
    /// As for [`channel`], and `Io` if huge pages or `mlock` were asked
    /// for and the system refused them.
    pub fn build<T: Pod>(&self) -> Result<(Sender<T>, Receiver<T>), Error> {
        let item_size = item_size::<T>()?;
        if self.capacity == 0 {
            return Err(Rejection::ZeroCapacity.into());
        }
        let options = CreateOptions {
            huge_pages: self.huge_pages,
        };
        let (memfd, page_size) = memfd::create("fdring", options)?;
        let bad_capacity = || Rejection::BadCapacity {
            capacity: self.capacity as u64,
            item_size,
            page_size,
        };
        let capacity = layout::round_capacity(self.capacity as u64, item_size, page_size)
            .ok_or_else(bad_capacity)?;
        let config = Config {
            item_size,
            item_align: std::mem::align_of::<T>() as u32,
            capacity,
            data_offset: page_size,
            type_tag: self.type_tag.unwrap_or(0),
        };
        layout::check_geometry(&config, page_size)?;
        memfd::set_len(memfd.as_fd(), config.file_len())?;
        let mapping = Mapping::new(memfd.as_fd(), config.data_offset, config.data_len()).map_err(
            |e| match e {
                Error::Io { source, .. } if self.huge_pages => Error::io(
                    "mapping the huge-page memfd (are enough huge pages reserved in \
                     /proc/sys/vm/nr_hugepages?)",
                    source,
                ),
                other => other,
            },
        )?;
        header_of(&mapping).init(&config);
        memfd::seal(memfd.as_fd())?;
        // Allocate the pages now rather than on the first lap of the
        // stream (`docs/design.md`, "Pre-faulting").
        mapping.populate();

        let (sender_wake, receiver_wake) = WakeSocket::pair()?;
        let receiver_fds = Fds {
            memfd: dup(&memfd)?,
            wake: receiver_wake.into_fd(),
        };
        let sender = Sender {
            end: End::new(mapping, &config, memfd, sender_wake, self)?,
            _item: PhantomData,
        };
        let receiver = Builder {
            type_tag: Some(config.type_tag),
            ..self.clone()
        }
        .open_receiver(receiver_fds)?;
        Ok((sender, receiver))
    }

    /// Opens the sending end of a ring from fds received from elsewhere.
    ///
    /// # Errors
    ///
    /// `Rejected(..)` naming the first check that failed: not a memfd,
    /// missing seals, wrong size, bad magic or version, item size or
    /// alignment not `T`'s, wrong type tag, bad geometry, a wake-up fd that
    /// is not a connected Unix stream socket.
    /// `Io` if mapping it fails. Nothing is mapped on error.
    pub fn open_sender<T: Pod>(&self, fds: Fds) -> Result<Sender<T>, Error> {
        let (mapping, config, memfd, wake) = self.open::<T>(fds)?;
        Ok(Sender {
            end: End::new(mapping, &config, memfd, wake, self)?,
            _item: PhantomData,
        })
    }

    /// Opens the receiving end of a ring from fds received from elsewhere.
    ///
    /// # Errors
    ///
    /// As for [`open_sender`](Self::open_sender).
    pub fn open_receiver<T: Pod>(&self, fds: Fds) -> Result<Receiver<T>, Error> {
        let (mapping, config, memfd, wake) = self.open::<T>(fds)?;
        Ok(Receiver {
            end: End::new(mapping, &config, memfd, wake, self)?,
            _item: PhantomData,
        })
    }

    /// Verifies, validates and maps a received memfd, and adopts the
    /// wake-up socket.
    fn open<T: Pod>(&self, fds: Fds) -> Result<(Mapping, Config, OwnedFd, WakeSocket), Error> {
        let expected_size = item_size::<T>()?;
        let verified = memfd::verify(fds.memfd.as_fd())?;
        // Read the header with pread into a private copy, so that nothing
        // is mapped before the size is known to match.
        let header = read_header(fds.memfd.as_fd())?;
        let expected = Expected {
            item_size: expected_size,
            item_align: std::mem::align_of::<T>() as u32,
            type_tag: self.type_tag,
            page_size: verified.page_size,
        };
        let config = header.validate(&expected, verified.len)?;
        let wake = WakeSocket::adopt(fds.wake)?;
        let mapping = Mapping::new(fds.memfd.as_fd(), config.data_offset, config.data_len())?;
        Ok((mapping, config, fds.memfd, wake))
    }
}

/// `size_of::<T>()` as the header's u32, refusing zero-sized and huge types.
fn item_size<T>() -> Result<u32, Error> {
    match u32::try_from(size_of::<T>()) {
        Ok(0) => Err(Rejection::ZeroSizedItem.into()),
        Ok(size) => Ok(size),
        Err(_) => Err(Rejection::BadCapacity {
            capacity: 1,
            item_size: u32::MAX,
            page_size: memfd::page_size(),
        }
        .into()),
    }
}

fn header_of(mapping: &Mapping) -> &Header {
    // SAFETY: the mapping starts with a whole page (at least HEADER_BYTES,
    // checked by `layout::check_geometry`), is page-aligned (so aligned for
    // `Header`), and stays mapped for the borrow. Every field of `Header`
    // is an atomic integer, valid for any bytes the peer writes.
    unsafe { mapping.header().cast::<Header>().as_ref() }
}

fn read_header(memfd: BorrowedFd<'_>) -> Result<Header, Error> {
    let mut header = MaybeUninit::<Header>::zeroed();
    // SAFETY: the buffer is a private, properly sized `Header` allocation;
    // viewing it as bytes to fill it is sound because `Header` has no
    // padding that matters (any byte values are valid atomics).
    let bytes = unsafe {
        std::slice::from_raw_parts_mut(header.as_mut_ptr().cast::<u8>(), size_of::<Header>())
    };
    memfd::read_prefix(memfd, bytes)?;
    // SAFETY: zeroed and then overwritten with arbitrary bytes; every field
    // is an atomic integer, for which every bit pattern is valid.
    Ok(unsafe { header.assume_init() })
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, Error> {
    fd.try_clone()
        .map_err(|e| Error::io("duplicating an fd", e))
}

/// The fds that make up one end of a ring: what [`Sender::into_fds`] and
/// [`Receiver::into_fds`] give and the `open_` calls take.
///
/// Both ends share the memfd; each has its own end of a connected socket
/// pair. Which end a bundle opens is the caller's choice, and only one
/// sender and one receiver may use a ring at a time.
///
/// ```
/// let (tx, rx) = fdring::channel::<u64>(512)?;
/// let fdring::Fds { memfd, wake } = rx.into_fds()?;
/// // ... hand `memfd` and `wake` to another process, which rebuilds the bundle:
/// let mut rx = fdring::Receiver::<u64>::from_fds(fdring::Fds { memfd, wake })?;
/// # Ok::<(), fdring::Error>(())
/// ```
#[derive(Debug)]
pub struct Fds {
    /// The sealed memfd holding the header and the data.
    pub memfd: OwnedFd,
    /// This end's wake-up socket: one end of a connected Unix stream
    /// socket pair whose other end the peer holds. The peer sends a byte on
    /// it to wake this end; it hangs up when the peer is gone.
    pub wake: OwnedFd,
}

/// Counters kept by each end, cheap enough to be always on.
///
/// ```
/// let (mut tx, mut rx) = fdring::channel::<u64>(512)?;
/// for i in 0..100 {
///     tx.send(i)?;
///     rx.recv()?;
/// }
/// // Nobody ever waited, so no wake-up was sent.
/// assert_eq!(tx.stats().wakeups, 0);
/// # Ok::<(), fdring::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Wake-ups this end sent its peer: one `send` system call each. At
    /// most one per time the peer armed: a peer that armed and then found
    /// progress on its re-check may be woken without sleeping, so this can
    /// exceed the peer's `sleeps` by a little.
    pub wakeups: u64,
    /// Times this end went to sleep on its wake-up socket.
    pub sleeps: u64,
}

/// What a sender and a receiver have in common: one half of the ring over
/// its own mapping, the socket it wakes the peer with and sleeps on, and
/// the peer's extra liveness, if watched.
struct End<S: Side> {
    // Declared before `mapping`: it points into it and is dropped first.
    half: Half<S>,
    data: NonNull<u8>,
    item_size: usize,
    mapping: Mapping,
    memfd: OwnedFd,
    wake: WakeSocket,
    peer: Option<Liveness>,
    peer_gone: bool,
    spin: Duration,
    stats: Stats,
    /// False once the fds were handed on: dropping then does not close.
    close_on_drop: bool,
}

// SAFETY: `data` points into `mapping`, which moves with the `End`; every
// other field is `Send`. A `Sender`/`Receiver` is used by one thread at a
// time (`&mut self` for every operation), so it is `Send` but not `Sync`.
unsafe impl<S: Side> Send for End<S> {}

impl<S: Side> End<S> {
    fn new(
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
    fn slot_ptr(&self, slots: Slots) -> *mut u8 {
        // SAFETY: `slots.start < capacity` and the data region is
        // `capacity * item_size` bytes followed by its mirror, so the offset
        // and the whole run (`len <= capacity` slots) stay inside the mapping.
        unsafe { self.data.as_ptr().add(slots.start * self.item_size) }
    }

    /// Lends slots at once, or waits for them as `wait` says. `want` is
    /// how many the caller could use: the cached peer index is reloaded
    /// only if it shows fewer.
    #[inline]
    fn slots(&mut self, want: usize, wait: Wait) -> Result<Slots, Error> {
        self.slots_min(want, 1, wait)
    }

    #[inline]
    fn slots_min(&mut self, want: usize, min: usize, wait: Wait) -> Result<Slots, Error> {
        match wait {
            Wait::Never => self.try_slots(want, min),
            Wait::Until(deadline) => self.wait_slots(want, min, deadline),
        }
    }

    #[inline]
    fn try_slots(&mut self, want: usize, min: usize) -> Result<Slots, Error> {
        match self.half.slots(want, self.peer_gone) {
            Ok(slots) if slots.len < min => Err(S::WOULD_BLOCK),
            other => other,
        }
    }

    /// Drains the socket, then arms for `min` slots: after `Ok(true)` the
    /// socket becomes readable when a retry can make progress. Also looks
    /// at the peer's liveness (this path makes system calls anyway), so
    /// that a retry after the peer's death returns `Disconnected`.
    fn prepare_wait(&mut self, min: usize) -> Result<bool, Error> {
        // Drain first: any wake-up from here on answers this arm.
        let drained = self.wake.drain()?;
        if drained == Drained::PeerGone
            || (!self.peer_gone && self.peer.as_ref().is_some_and(Liveness::is_gone))
        {
            self.peer_gone = true;
        }
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
            let now = Instant::now();
            let spin_until = deadline.map_or(now + self.spin, |d| d.min(now + self.spin));
            // Spin briefly with growing pauses, then yield the CPU between
            // checks: on a machine with few cores, the peer we wait for
            // may have been woken on this very core, and a pure spin would
            // keep it off the CPU until the spin ends (docs/design.md).
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
                if Instant::now() >= spin_until {
                    break;
                }
            }
        }
        loop {
            if self.half.arm(min as u64) {
                self.stats.sleeps += 1;
                // Without the heavy barrier a light publisher's wake-up can
                // be lost, so such sleeps are sliced (`signal::poll_timeout`).
                let until = match signal::poll_timeout() {
                    Some(slice) => {
                        let end = Instant::now() + slice;
                        Some(deadline.map_or(end, |d| d.min(end)))
                    }
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
    fn commit(&mut self, count: usize) {
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

    fn into_fds(mut self) -> Result<Fds, Error> {
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

const FOREVER: Wait = Wait::Until(None);

impl Wait {
    pub(crate) fn timeout(timeout: Duration) -> Wait {
        // A timeout too large to represent waits forever.
        Wait::Until(Instant::now().checked_add(timeout))
    }
}

/// `want` for the closure calls: they lend every slot there is.
const ALL: usize = usize::MAX;

/// The sending end of a ring. Created by [`channel`], [`Builder::build`] or
/// [`Builder::open_sender`].
///
/// Every operation takes `&mut self`: there is one producer. The end can be
/// moved to another thread, or handed to another process with
/// [`into_fds`](Self::into_fds).
///
/// ```
/// let (mut tx, mut rx) = fdring::channel::<u32>(1024)?;
/// std::thread::spawn(move || {
///     for i in 0..10_000 {
///         tx.send(i).unwrap();
///     }
/// });
/// for i in 0..10_000 {
///     assert_eq!(rx.recv()?, i);
/// }
/// # Ok::<(), fdring::Error>(())
/// ```
pub struct Sender<T: Pod> {
    end: End<Write>,
    _item: PhantomData<fn(T)>,
}

impl<T: Pod> Sender<T> {
    /// Opens a sending end from fds received from elsewhere, accepting any
    /// type tag; see [`Builder::open_sender`] for the checks and errors.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u16>(64)?;
    /// let mut tx = fdring::Sender::<u16>::from_fds(tx.into_fds()?)?;
    /// tx.send(5)?;
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn from_fds(fds: Fds) -> Result<Sender<T>, Error> {
        Builder::new().open_sender(fds)
    }

    /// Gives up this end as fds, to be opened again elsewhere (usually in
    /// another process, through [`crate::handoff`]). The ring is not
    /// marked closed; the peer's liveness, if watched, is dropped.
    ///
    /// # Errors
    ///
    /// `Io` if the fds cannot be duplicated (out of fds).
    pub fn into_fds(self) -> Result<Fds, Error> {
        self.end.into_fds()
    }

    /// Watches the peer's process as well as the wake-up socket, so that
    /// blocking calls return `Disconnected` when it dies without closing
    /// its end even if a copy of its socket end lives on elsewhere (see
    /// [`Liveness`]).
    pub fn watch_peer(&mut self, liveness: Liveness) {
        self.end.peer = Some(liveness);
    }

    /// The liveness watched by [`watch_peer`](Self::watch_peer), if any:
    /// register its fd in an event loop next to this end's to learn of the
    /// peer's death.
    pub fn peer_liveness(&self) -> Option<&Liveness> {
        self.end.peer.as_ref()
    }

    /// Prepares to wait on this end's fd ([`AsFd`]) in your own event loop,
    /// after a `try_` call returned `Full`.
    ///
    /// Returns `Ok(true)` if you may wait now: the fd will become readable
    /// when the receiver frees space, closes, breaks the protocol or dies.
    /// Returns `Ok(false)` if that already happened: retry instead of
    /// waiting. This is the contract of a non-blocking socket. Busy-polling
    /// loops should not call it: it makes the receiver's next release send
    /// a wake-up (one system call).
    ///
    /// If this end watches its peer, register
    /// [`peer_liveness`](Self::peer_liveness) too: when it becomes ready,
    /// the next `prepare_wait` returns `Ok(false)` and the retry
    /// `Disconnected`. (The `try_` calls make no system call, so on their
    /// own they learn of a peer's death only once a blocking call or
    /// `prepare_wait` has.)
    ///
    /// # Errors
    ///
    /// `Io` if the wake-up socket cannot be drained.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use rustix::event::{poll, PollFd, PollFlags};
    ///
    /// let (mut tx, mut rx) = fdring::channel::<u64>(512)?;
    /// let consumer = std::thread::spawn(move || {
    ///     while rx.recv().is_ok() {}
    /// });
    /// let mut next = 0;
    /// while next < 100_000 {
    ///     match tx.try_send(next) {
    ///         Ok(()) => next += 1,
    ///         Err(fdring::Error::Full) => {
    ///             if tx.prepare_wait()? {
    ///                 let mut fds = [PollFd::new(&tx, PollFlags::IN)];
    ///                 poll(&mut fds, None).unwrap();
    ///             }
    ///         }
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// drop(tx);
    /// consumer.join().unwrap();
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn prepare_wait(&mut self) -> Result<bool, Error> {
        self.end.prepare_wait(1)
    }

    /// The capacity of the ring in items (the requested capacity rounded
    /// up to whole pages).
    pub fn capacity(&self) -> usize {
        self.end.half.capacity() as usize
    }

    /// Items sent and not yet received. A snapshot: the receiver may take
    /// items at any moment, so the true value is this or less.
    ///
    /// # Errors
    ///
    /// `Corrupted` if the receiver's index is invalid.
    pub fn len(&mut self) -> Result<usize, Error> {
        Ok(self.end.half.len()? as usize)
    }

    /// Whether no item is waiting for the receiver (a snapshot; it can
    /// only become more true).
    ///
    /// # Errors
    ///
    /// As for [`len`](Self::len).
    pub fn is_empty(&mut self) -> Result<bool, Error> {
        Ok(self.len()? == 0)
    }

    /// Whether the ring is full (a snapshot; the receiver may free space at
    /// any moment).
    ///
    /// # Errors
    ///
    /// As for [`len`](Self::len).
    pub fn is_full(&mut self) -> Result<bool, Error> {
        Ok(self.len()? == self.capacity())
    }

    /// This end's counters.
    pub fn stats(&self) -> Stats {
        self.end.stats
    }

    /// Lends every free slot of the ring, as one contiguous slice
    /// (across the wrap too), to `fill`, which writes the first `n` slots and
    /// returns `n`; those `n` items are then published, in order. Returns
    /// `n`. Does not wait.
    ///
    /// The slice is not zeroed: it holds whatever was there (old items, or
    /// bytes a misbehaving peer wrote), hence `MaybeUninit`.
    ///
    /// For throughput between two busy sides, fill a part of the ring per
    /// call (say an eighth), not all of it: the receiver can then work on
    /// one part while this end fills the next, instead of the two taking
    /// turns.
    ///
    /// # Errors
    ///
    /// `Full` if there is no free slot (`fill` is not called),
    /// `Disconnected` if the receiver is gone, `Corrupted` if it broke the
    /// protocol.
    ///
    /// # Panics
    ///
    /// If `fill` returns more than the length of the slice it was given.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::mem::MaybeUninit;
    /// let (mut tx, mut rx) = fdring::channel::<u64>(512)?;
    /// let sent = tx.try_send_with(|slots: &mut [MaybeUninit<u64>]| {
    ///     for (i, slot) in slots.iter_mut().take(100).enumerate() {
    ///         slot.write(i as u64);
    ///     }
    ///     100
    /// })?;
    /// assert_eq!(sent, 100);
    /// assert_eq!(rx.try_recv_with(|items: &[u64]| items.len())?, 100);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_send_with<F>(&mut self, fill: F) -> Result<usize, Error>
    where
        F: FnOnce(&mut [MaybeUninit<T>]) -> usize,
    {
        self.send_in(ALL, Wait::Never, fill)
    }

    /// Like [`try_send_with`](Self::try_send_with), but waits until there
    /// is at least one free slot.
    ///
    /// # Errors
    ///
    /// `Disconnected` if the receiver is gone (dropped, or its process
    /// died: its wake-up socket hung up, or a watched liveness fired),
    /// `Corrupted`, or `Io` if waiting failed. A timeout, however short,
    /// looks at the wake-up socket once before it reports `Timeout`.
    ///
    /// # Panics
    ///
    /// If `fill` returns more than the length of the slice it was given.
    pub fn send_with<F>(&mut self, fill: F) -> Result<usize, Error>
    where
        F: FnOnce(&mut [MaybeUninit<T>]) -> usize,
    {
        self.send_in(ALL, FOREVER, fill)
    }

    /// Like [`send_with`](Self::send_with), but gives up after `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` if no slot became free in time, and as for `send_with`.
    ///
    /// # Panics
    ///
    /// If `fill` returns more than the length of the slice it was given.
    pub fn send_with_timeout<F>(&mut self, timeout: Duration, fill: F) -> Result<usize, Error>
    where
        F: FnOnce(&mut [MaybeUninit<T>]) -> usize,
    {
        self.send_in(ALL, Wait::timeout(timeout), fill)
    }

    /// [`prepare_wait`](Self::prepare_wait) for a caller that needs `min`
    /// free slots at once: fewer count as full (the frame layer's "room
    /// for this frame"). `min` must not exceed the capacity.
    pub(crate) fn prepare_wait_min(&mut self, min: usize) -> Result<bool, Error> {
        self.end.prepare_wait(min)
    }

    /// Lends at least `min` free slots, waiting as `wait` says: fewer than
    /// `min` count as full, and a blocking call sleeps until the receiver
    /// frees enough (the frame layer's "room for this frame"). `min` must
    /// not exceed the capacity, or it waits forever.
    pub(crate) fn send_with_min<F>(
        &mut self,
        min: usize,
        wait: Wait,
        fill: F,
    ) -> Result<usize, Error>
    where
        F: FnOnce(&mut [MaybeUninit<T>]) -> usize,
    {
        let slots = self.end.slots_min(min, min, wait)?;
        let ptr = self.end.slot_ptr(slots).cast::<MaybeUninit<T>>();
        // SAFETY: as in `send_in`.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr, slots.len) };
        let written = fill(buf);
        assert!(written <= slots.len);
        self.end.commit(written);
        Ok(written)
    }

    /// Lends at least one free slot (waiting as `wait` says) to `fill`,
    /// then publishes what it wrote. `want` is how many it could use.
    #[inline(always)]
    fn send_in<F>(&mut self, want: usize, wait: Wait, fill: F) -> Result<usize, Error>
    where
        F: FnOnce(&mut [MaybeUninit<T>]) -> usize,
    {
        let slots = self.end.slots(want, wait)?;
        let ptr = self.end.slot_ptr(slots).cast::<MaybeUninit<T>>();
        // SAFETY: `slots` are free slots: the consumer has released them and
        // will not read them until they are published, so this end may write
        // them. They are contiguous in the mirrored mapping, inside it, and
        // aligned for `T` (page-aligned data, item size a multiple of the
        // alignment, both checked against `T` when opening). A misbehaving
        // peer could write into them concurrently; `MaybeUninit<T>` makes no
        // claim about their contents, and `T: Pod` any bytes valid.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr, slots.len) };
        let written = fill(buf);
        assert!(
            written <= slots.len,
            "the closure said it wrote {written} items into {} slots",
            slots.len
        );
        self.end.commit(written);
        Ok(written)
    }

    /// Sends one item if there is room. Does not wait.
    ///
    /// # Errors
    ///
    /// `Full`, `Disconnected` or `Corrupted`, as for
    /// [`try_send_with`](Self::try_send_with).
    ///
    /// ```
    /// let (mut tx, _rx) = fdring::channel::<u64>(1)?;
    /// for _ in 0..tx.capacity() {
    ///     tx.try_send(1)?;
    /// }
    /// assert_eq!(tx.try_send(1), Err(fdring::Error::Full));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    #[inline]
    pub fn try_send(&mut self, item: T) -> Result<(), Error> {
        self.send_in(1, Wait::Never, |slots| write_first(slots, item))
            .map(drop)
    }

    /// Sends one item, waiting for room.
    ///
    /// # Errors
    ///
    /// As for [`send_with`](Self::send_with).
    pub fn send(&mut self, item: T) -> Result<(), Error> {
        self.send_in(1, FOREVER, |slots| write_first(slots, item))
            .map(drop)
    }

    /// Sends one item, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As for [`send_with_timeout`](Self::send_with_timeout).
    pub fn send_timeout(&mut self, item: T, timeout: Duration) -> Result<(), Error> {
        self.send_in(1, Wait::timeout(timeout), |slots| write_first(slots, item))
            .map(drop)
    }

    /// Sends as many of `items` as there is room for, in order, and returns
    /// how many. Does not wait.
    ///
    /// # Errors
    ///
    /// As for [`try_send_with`](Self::try_send_with); `Full` only if no item
    /// could be sent. An empty `items` returns `Ok(0)`.
    pub fn try_send_slice(&mut self, items: &[T]) -> Result<usize, Error> {
        if items.is_empty() {
            return Ok(0);
        }
        self.send_in(items.len(), Wait::Never, |slots| copy_into(slots, items))
    }

    /// Sends all of `items`, in order, waiting for room as often as needed.
    ///
    /// # Errors
    ///
    /// As for [`send_with`](Self::send_with). On error, a prefix of `items`
    /// may have been sent.
    ///
    /// ```
    /// let (mut tx, mut rx) = fdring::channel::<u8>(4096)?;
    /// tx.send_slice(b"hello")?;
    /// let mut buf = [0u8; 16];
    /// let n = rx.recv_slice(&mut buf)?;
    /// assert_eq!(&buf[..n], b"hello");
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn send_slice(&mut self, mut items: &[T]) -> Result<(), Error> {
        while !items.is_empty() {
            let sent = self.send_in(items.len(), FOREVER, |slots| copy_into(slots, items))?;
            items = &items[sent..];
        }
        Ok(())
    }
}

fn write_first<T: Pod>(slots: &mut [MaybeUninit<T>], item: T) -> usize {
    slots[0].write(item);
    1
}

fn copy_into<T: Pod>(slots: &mut [MaybeUninit<T>], items: &[T]) -> usize {
    let n = slots.len().min(items.len());
    for (slot, item) in slots[..n].iter_mut().zip(items) {
        slot.write(*item);
    }
    n
}

impl<T: Pod> AsFd for Sender<T> {
    /// The wake-up socket: after [`prepare_wait`](Sender::prepare_wait)
    /// returned `true`, it becomes readable when the receiver frees space
    /// or closes, and hangs up when the receiver's process is gone. It is
    /// the same fd for the whole life of the end.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.end.wake.as_fd()
    }
}

impl<T: Pod> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("end", &self.end).finish()
    }
}

impl io::Write for Sender<u8> {
    /// Writes as many bytes as there is room for, waiting until there is
    /// room for at least one.
    ///
    /// A receiver that is gone is `BrokenPipe`, as with a pipe.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        Ok(self.send_in(buf.len(), FOREVER, |slots| copy_into(slots, buf))?)
    }

    /// Bytes are visible to the receiver as soon as `write` returns, so
    /// there is nothing to flush.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The receiving end of a ring. Created by [`channel`], [`Builder::build`]
/// or [`Builder::open_receiver`].
///
/// ```
/// let (mut tx, mut rx) = fdring::channel::<[f32; 2]>(512)?;
/// tx.send([0.5, -0.5])?;
/// assert_eq!(rx.recv()?, [0.5, -0.5]);
/// drop(tx);
/// assert_eq!(rx.recv(), Err(fdring::Error::Disconnected));
/// # Ok::<(), fdring::Error>(())
/// ```
pub struct Receiver<T: Pod> {
    end: End<Read>,
    _item: PhantomData<fn() -> T>,
}

impl<T: Pod> Receiver<T> {
    /// Opens a receiving end from fds received from elsewhere, accepting any
    /// type tag; see [`Builder::open_sender`] for the checks and errors.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u16>(64)?;
    /// let rx = fdring::Receiver::<u16>::from_fds(rx.into_fds()?)?;
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn from_fds(fds: Fds) -> Result<Receiver<T>, Error> {
        Builder::new().open_receiver(fds)
    }

    /// Gives up this end as fds; see [`Sender::into_fds`].
    ///
    /// # Errors
    ///
    /// `Io` if the fds cannot be duplicated (out of fds).
    pub fn into_fds(self) -> Result<Fds, Error> {
        self.end.into_fds()
    }

    /// Watches the peer's process; see [`Sender::watch_peer`].
    pub fn watch_peer(&mut self, liveness: Liveness) {
        self.end.peer = Some(liveness);
    }

    /// The watched liveness, if any; see [`Sender::peer_liveness`].
    pub fn peer_liveness(&self) -> Option<&Liveness> {
        self.end.peer.as_ref()
    }

    /// Prepares to wait on this end's fd in your own event loop, after a
    /// `try_` call returned `Empty`: `Ok(true)` means the fd will become
    /// readable when the sender publishes, closes or breaks the protocol;
    /// `Ok(false)` means retry now. See [`Sender::prepare_wait`].
    ///
    /// # Errors
    ///
    /// `Io` if the wake-up socket cannot be drained.
    ///
    /// ```
    /// use rustix::event::{poll, PollFd, PollFlags};
    ///
    /// let (mut tx, mut rx) = fdring::channel::<u64>(512)?;
    /// std::thread::spawn(move || tx.send_slice(&[1, 2, 3]));
    /// let mut sum = 0;
    /// loop {
    ///     match rx.try_recv() {
    ///         Ok(item) => sum += item,
    ///         Err(fdring::Error::Empty) => {
    ///             if rx.prepare_wait()? {
    ///                 poll(&mut [PollFd::new(&rx, PollFlags::IN)], None).unwrap();
    ///             }
    ///         }
    ///         Err(fdring::Error::Disconnected) => break,
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// assert_eq!(sum, 6);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn prepare_wait(&mut self) -> Result<bool, Error> {
        self.end.prepare_wait(1)
    }

    /// The capacity of the ring in items.
    pub fn capacity(&self) -> usize {
        self.end.half.capacity() as usize
    }

    /// Items ready to be received. A snapshot: the sender may add items at
    /// any moment, so the true value is this or more.
    ///
    /// # Errors
    ///
    /// `Corrupted` if the sender's index is invalid.
    pub fn len(&mut self) -> Result<usize, Error> {
        Ok(self.end.half.len()? as usize)
    }

    /// Whether no item is ready (a snapshot; the sender may add one at any
    /// moment).
    ///
    /// # Errors
    ///
    /// As for [`len`](Self::len).
    pub fn is_empty(&mut self) -> Result<bool, Error> {
        Ok(self.len()? == 0)
    }

    /// Whether the ring is full (a snapshot; it can only become less so
    /// through this end).
    ///
    /// # Errors
    ///
    /// As for [`len`](Self::len).
    pub fn is_full(&mut self) -> Result<bool, Error> {
        Ok(self.len()? == self.capacity())
    }

    /// This end's counters.
    pub fn stats(&self) -> Stats {
        self.end.stats
    }

    /// Lends every ready item in the ring, as one contiguous slice
    /// (across the wrap too), to `consume`, which returns how many of the
    /// first items it consumed; those are then released to the sender.
    /// Returns that count. Does not wait.
    ///
    /// If the sender misbehaves, it may write into the slice while
    /// `consume` reads it; `T: Pod` keeps every value valid, but a hostile
    /// peer can make it change under you. Copy out what you must check.
    ///
    /// # Errors
    ///
    /// `Empty` if no item is ready (`consume` is not called),
    /// `Disconnected` if none is ready and the sender is gone, `Corrupted`
    /// if it broke the protocol.
    ///
    /// # Panics
    ///
    /// If `consume` returns more than the length of the slice it was given.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, mut rx) = fdring::channel::<u32>(1024)?;
    /// tx.send_slice(&[1, 2, 3, 4])?;
    /// let mut sum = 0;
    /// rx.try_recv_with(|items: &[u32]| {
    ///     sum = items.iter().sum();
    ///     items.len()
    /// })?;
    /// assert_eq!(sum, 10);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_recv_with<F>(&mut self, consume: F) -> Result<usize, Error>
    where
        F: FnOnce(&[T]) -> usize,
    {
        self.recv_in(ALL, Wait::Never, consume)
    }

    /// Like [`try_recv_with`](Self::try_recv_with), but waits until at
    /// least one item is ready.
    ///
    /// # Errors
    ///
    /// `Disconnected` once every item was received and the sender is gone
    /// (dropped, or its process died: its wake-up socket hung up, or a
    /// watched liveness fired), `Corrupted`, or `Io` if waiting failed.
    ///
    /// # Panics
    ///
    /// If `consume` returns more than the length of the slice it was given.
    pub fn recv_with<F>(&mut self, consume: F) -> Result<usize, Error>
    where
        F: FnOnce(&[T]) -> usize,
    {
        self.recv_in(ALL, FOREVER, consume)
    }

    /// Like [`recv_with`](Self::recv_with), but gives up after `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` if no item arrived in time, and as for `recv_with`.
    ///
    /// # Panics
    ///
    /// If `consume` returns more than the length of the slice it was given.
    pub fn recv_with_timeout<F>(&mut self, timeout: Duration, consume: F) -> Result<usize, Error>
    where
        F: FnOnce(&[T]) -> usize,
    {
        self.recv_in(ALL, Wait::timeout(timeout), consume)
    }

    /// Like the closure calls, but reloads the sender's index only if
    /// fewer than `want` items are known to be ready.
    pub(crate) fn recv_with_want<F>(
        &mut self,
        want: usize,
        wait: Wait,
        consume: F,
    ) -> Result<usize, Error>
    where
        F: FnOnce(&[T]) -> usize,
    {
        self.recv_in(want, wait, consume)
    }

    /// Lends at least one ready item (waiting as `wait` says) to
    /// `consume`, then releases what it consumed. `want` is how many it
    /// could use.
    #[inline(always)]
    fn recv_in<F>(&mut self, want: usize, wait: Wait, consume: F) -> Result<usize, Error>
    where
        F: FnOnce(&[T]) -> usize,
    {
        let slots = self.end.slots(want, wait)?;
        let ptr = self.end.slot_ptr(slots).cast::<T>();
        // SAFETY: `slots` are published items: the producer wrote them before
        // its Release store of the write index, which `Half::slots` loaded
        // with Acquire, and will not touch them until they are released.
        // They are contiguous in the mirrored mapping, inside it, and aligned
        // for `T` (see `Sender::fill`). `T: Pod` makes any bytes, even ones a
        // misbehaving peer writes concurrently, a valid `T`.
        let items = unsafe { std::slice::from_raw_parts(ptr, slots.len) };
        let consumed = consume(items);
        assert!(
            consumed <= slots.len,
            "the closure said it consumed {consumed} of {} items",
            slots.len
        );
        self.end.commit(consumed);
        Ok(consumed)
    }

    /// Receives one item if one is ready. Does not wait.
    ///
    /// # Errors
    ///
    /// `Empty`, `Disconnected` or `Corrupted`, as for
    /// [`try_recv_with`](Self::try_recv_with).
    ///
    /// ```
    /// let (mut tx, mut rx) = fdring::channel::<i16>(64)?;
    /// assert_eq!(rx.try_recv(), Err(fdring::Error::Empty));
    /// tx.send(-3)?;
    /// assert_eq!(rx.try_recv(), Ok(-3));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    #[inline]
    pub fn try_recv(&mut self) -> Result<T, Error> {
        let mut item = T::zeroed();
        self.recv_in(1, Wait::Never, |items| read_first(items, &mut item))?;
        Ok(item)
    }

    /// Receives one item, waiting for one.
    ///
    /// # Errors
    ///
    /// As for [`recv_with`](Self::recv_with).
    pub fn recv(&mut self) -> Result<T, Error> {
        let mut item = T::zeroed();
        self.recv_in(1, FOREVER, |items| read_first(items, &mut item))?;
        Ok(item)
    }

    /// Receives one item, waiting at most `timeout` for one.
    ///
    /// # Errors
    ///
    /// As for [`recv_with_timeout`](Self::recv_with_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_tx, mut rx) = fdring::channel::<u8>(64)?;
    /// let waited = rx.recv_timeout(Duration::from_millis(10));
    /// assert_eq!(waited, Err(fdring::Error::Timeout));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, Error> {
        let mut item = T::zeroed();
        self.recv_in(1, Wait::timeout(timeout), |items| {
            read_first(items, &mut item)
        })?;
        Ok(item)
    }

    /// Receives as many items as are ready, up to `buf.len()`, and returns
    /// how many. Does not wait.
    ///
    /// # Errors
    ///
    /// As for [`try_recv_with`](Self::try_recv_with). An empty `buf`
    /// returns `Ok(0)`.
    pub fn try_recv_slice(&mut self, buf: &mut [T]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.recv_in(buf.len(), Wait::Never, |items| copy_from(items, buf))
    }

    /// Receives at least one item, waiting for it, and as many more as are
    /// ready, up to `buf.len()`; returns how many.
    ///
    /// # Errors
    ///
    /// As for [`recv_with`](Self::recv_with). An empty `buf` returns
    /// `Ok(0)`.
    pub fn recv_slice(&mut self, buf: &mut [T]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.recv_in(buf.len(), FOREVER, |items| copy_from(items, buf))
    }
}

fn read_first<T: Pod>(items: &[T], out: &mut T) -> usize {
    *out = items[0];
    1
}

fn copy_from<T: Pod>(items: &[T], buf: &mut [T]) -> usize {
    let n = items.len().min(buf.len());
    buf[..n].copy_from_slice(&items[..n]);
    n
}

impl<T: Pod> AsFd for Receiver<T> {
    /// The wake-up socket: after
    /// [`prepare_wait`](Receiver::prepare_wait) returned `true`, it becomes
    /// readable when the sender publishes or closes, and hangs up when the
    /// sender's process is gone. It is the same fd for the whole life of
    /// the end.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.end.wake.as_fd()
    }
}

impl<T: Pod> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").field("end", &self.end).finish()
    }
}

impl io::Read for Receiver<u8> {
    /// Reads the bytes that are ready, up to `buf.len()`, waiting until at
    /// least one is. Returns `Ok(0)` (end of file) once the sender is gone
    /// and every byte was read.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.recv_slice(buf) {
            Err(Error::Disconnected) => Ok(0),
            other => Ok(other?),
        }
    }
}
