//! [`UntypedSender`] and [`UntypedReceiver`]: ends whose item size and
//! alignment ([`ItemLayout`]) are known only at run time, with a
//! reserve / commit API instead of closures, for callers that cannot
//! name a Rust type: the C library (`fdring-c`) above all.
//!
//! They are the typed ends' `End` under another face: the same ring, the
//! same waiting, the same checks of everything the peer controls. Only
//! the shape differs: a reserve lends raw slots and remembers how many,
//! and a commit (release) of more than that is an error, not a panic.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use super::end::{End, Wait, FOREVER};
use super::{Fds, Stats};
use crate::error::{Error, Rejection};
use crate::memfd;
use crate::ring::{Read, Side, Write};
use crate::signal::Liveness;

#[cfg(doc)]
use super::{Builder, Receiver, Sender};

/// The size and alignment of one item, in bytes, for a ring made or opened
/// without a Rust type ([`Builder::build_untyped`],
/// [`Builder::open_untyped_sender`], [`Builder::open_untyped_receiver`]).
///
/// It is checked where a type's would be: the size must not be 0, the
/// alignment must be a power of two dividing the size and at most a page;
/// an opened ring's header must name the same size and alignment.
///
/// ```
/// use fdring::ItemLayout;
/// assert_eq!(ItemLayout::of::<u64>(), ItemLayout::new(8, 8));
/// assert_eq!(ItemLayout::new(12, 4).size(), 12);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemLayout {
    size: usize,
    align: usize,
}

impl ItemLayout {
    /// A layout of `size` bytes aligned to `align` bytes; checked when a
    /// ring is built or opened with it.
    pub const fn new(size: usize, align: usize) -> ItemLayout {
        ItemLayout { size, align }
    }

    /// The layout of `T`: what the typed ends use.
    pub const fn of<T>() -> ItemLayout {
        ItemLayout::new(std::mem::size_of::<T>(), std::mem::align_of::<T>())
    }

    /// The size of an item in bytes.
    pub const fn size(self) -> usize {
        self.size
    }

    /// The alignment of an item in bytes.
    pub const fn align(self) -> usize {
        self.align
    }

    /// The size as the header's u32, refusing 0 and sizes past u32.
    pub(super) fn item_size(self) -> Result<u32, Error> {
        match u32::try_from(self.size) {
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

    /// The alignment as the header's u32; the rest of its checks are the
    /// geometry's (`layout::check_geometry`).
    pub(super) fn item_align(self) -> Result<u32, Error> {
        u32::try_from(self.align).map_err(|_| {
            Rejection::BadAlign {
                align: u32::MAX,
                item_size: u32::try_from(self.size).unwrap_or(u32::MAX),
            }
            .into()
        })
    }
}

/// Slots lent by a reserve: `len` items from `ptr`, contiguous (across the
/// wrap too), aligned to the ring's [`ItemLayout`].
///
/// For an [`UntypedSender`] they are free slots to write, holding whatever
/// bytes were there; for an [`UntypedReceiver`], published items to read.
/// Either way a hostile peer could be writing into them at the same time:
/// treat their bytes as untrusted, and read each item once.
///
/// The pointer stays valid until the next reserve, commit or release, or
/// until the end is dropped or given up ([`UntypedSender::into_fds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lent {
    /// The first slot.
    pub ptr: *mut u8,
    /// How many slots, at least 1.
    pub len: usize,
}

/// What the two untyped ends share: the end, its layout, and how many
/// slots the last reserve lent that are neither committed nor released.
struct Untyped<S: Side> {
    end: End<S>,
    layout: ItemLayout,
    lent: usize,
}

impl<S: Side> Untyped<S> {
    fn reserve(&mut self, want: usize, wait: Wait) -> Result<Lent, Error> {
        // A new reserve replaces the last one: nothing was published by it.
        self.lent = 0;
        // `want` 0 would never reload the peer's index.
        let slots = self.end.slots(want.max(1), wait)?;
        self.lent = slots.len;
        Ok(Lent {
            ptr: self.end.slot_ptr(slots),
            len: slots.len,
        })
    }

    fn commit(&mut self, count: usize) -> Result<(), Error> {
        if count > self.lent {
            return Err(Error::OverCommit {
                count: count as u64,
                lent: self.lent as u64,
            });
        }
        self.lent -= count;
        self.end.commit(count);
        Ok(())
    }
}

macro_rules! common_methods {
    ($peer:literal, $doc_side:literal) => {
        /// The item layout this end was made or opened with.
        pub fn layout(&self) -> ItemLayout {
            self.inner.layout
        }

        /// The capacity of the ring in items.
        pub fn capacity(&self) -> usize {
            self.inner.end.half.capacity() as usize
        }

        /// Items in the ring: a racy snapshot, clamped to the capacity
        /// whatever the peer writes; see [`Sender::len`].
        pub fn len(&self) -> usize {
            self.inner.end.fill_snapshot()
        }

        /// Whether the ring holds no item: a racy snapshot (see
        /// [`len`](Self::len)).
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        #[doc = concat!("Whether the ", $peer, " closed its end or its process is gone; see [`", $doc_side, "::is_abandoned`].")]
        pub fn is_abandoned(&self) -> bool {
            self.inner.end.is_abandoned()
        }

        /// Ends the stream from this side without giving up the end: marks
        /// it closed in the header and wakes the peer if it sleeps, as a
        /// drop would (see [`Sender::close`]). Idempotent.
        pub fn close(&mut self) {
            self.inner.end.close();
        }

        #[doc = concat!("Prepares to wait on this end's fd ([`AsFd`]) in your own event loop after a `try_reserve` returned `Full` or `Empty`: `Ok(true)` means wait, `Ok(false)` retry now; see [`", $doc_side, "::prepare_wait`].")]
        ///
        /// # Errors
        ///
        /// `Io` if the wake-up socket cannot be drained.
        pub fn prepare_wait(&mut self) -> Result<bool, Error> {
            self.inner.end.prepare_wait(1)
        }

        #[doc = concat!("Watches the ", $peer, "'s process as well as the wake-up socket; see [`", $doc_side, "::watch_peer`].")]
        pub fn watch_peer(&mut self, liveness: Liveness) {
            self.inner.end.peer = Some(liveness);
        }

        /// This end's counters.
        pub fn stats(&self) -> Stats {
            self.inner.end.stats
        }

        #[doc = concat!("Gives up this end as fds, to be opened again elsewhere; see [`", $doc_side, "::into_fds`]. A reservation still lent is dropped.")]
        ///
        /// # Errors
        ///
        /// `Io` if the fds cannot be duplicated (out of fds).
        pub fn into_fds(self) -> Result<Fds, Error> {
            self.inner.end.into_fds()
        }
    };
}

/// The sending end of a ring of items of an [`ItemLayout`] known at run
/// time. Made by [`Builder::build_untyped`] or
/// [`Builder::open_untyped_sender`].
///
/// Items are written in place: [`try_reserve`](Self::try_reserve) (or
/// [`reserve`](Self::reserve), [`reserve_timeout`](Self::reserve_timeout))
/// lends free slots, the caller writes the first `k`, and
/// [`commit(k)`](Self::commit) publishes them, as the typed
/// [`Sender::try_send_with`] does with a closure.
///
/// ```
/// use fdring::{Builder, ItemLayout};
///
/// let (mut tx, mut rx) = Builder::new().capacity(512).build_untyped(ItemLayout::new(4, 4))?;
/// let lent = tx.try_reserve(3)?;
/// for i in 0..3 {
///     // SAFETY: at least 3 slots of 4 bytes, aligned to 4, are lent.
///     unsafe { lent.ptr.cast::<u32>().add(i).write(i as u32 * 10) };
/// }
/// tx.commit(3)?;
/// let ready = rx.try_reserve(3)?;
/// assert_eq!(ready.len, 3);
/// // SAFETY: 3 published items of 4 bytes, aligned.
/// assert_eq!(unsafe { ready.ptr.cast::<u32>().add(2).read() }, 20);
/// rx.release(3)?;
/// # Ok::<(), fdring::Error>(())
/// ```
pub struct UntypedSender {
    inner: Untyped<Write>,
}

impl UntypedSender {
    pub(super) fn new(end: End<Write>, layout: ItemLayout) -> UntypedSender {
        UntypedSender {
            inner: Untyped {
                end,
                layout,
                lent: 0,
            },
        }
    }

    /// Lends free slots without waiting: at least one, as many as are
    /// free (in one contiguous run). `want` is how many the caller could
    /// use: the receiver's index is reloaded only if fewer are known to be
    /// free, so a caller that asks for what it needs saves a load of the
    /// receiver's cache line; `usize::MAX` always looks for all.
    ///
    /// The lent slots hold whatever was there (old items, or bytes a
    /// misbehaving peer wrote). Write up to [`Lent::len`] items, then
    /// [`commit`](Self::commit) those written. A new reserve replaces one
    /// not committed.
    ///
    /// # Errors
    ///
    /// `Full`, `Disconnected`, `Corrupted`, `Exhausted(Indices)`, as for
    /// [`Sender::try_send_with`].
    ///
    /// ```
    /// let (mut tx, _rx) = fdring::Builder::new()
    ///     .capacity(512)
    ///     .build_untyped(fdring::ItemLayout::new(8, 8))?;
    /// assert_eq!(tx.try_reserve(1)?.len, 512);
    /// tx.commit(512)?;
    /// assert_eq!(tx.try_reserve(1), Err(fdring::Error::Full));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_reserve(&mut self, want: usize) -> Result<Lent, Error> {
        self.inner.reserve(want, Wait::Never)
    }

    /// Like [`try_reserve`](Self::try_reserve), but waits until a slot is
    /// free.
    ///
    /// # Errors
    ///
    /// As for [`Sender::send_with`].
    pub fn reserve(&mut self, want: usize) -> Result<Lent, Error> {
        self.inner.reserve(want, FOREVER)
    }

    /// Like [`reserve`](Self::reserve), but gives up after `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout`, and as for [`Sender::send_with`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let (mut tx, _rx) = fdring::Builder::new()
    ///     .capacity(512)
    ///     .build_untyped(fdring::ItemLayout::new(8, 8))?;
    /// tx.reserve_timeout(1, Duration::from_secs(1))?;
    /// tx.commit(512)?;
    /// let waited = tx.reserve_timeout(1, Duration::from_millis(10));
    /// assert_eq!(waited, Err(fdring::Error::Timeout));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn reserve_timeout(&mut self, want: usize, timeout: Duration) -> Result<Lent, Error> {
        self.inner.reserve(want, Wait::timeout(timeout))
    }

    /// Publishes the first `count` slots of those lent by the last
    /// reserve, and wakes the receiver if it sleeps. What stays lent are
    /// the slots after them: a second commit may follow without a new
    /// reserve. `count` 0 publishes nothing.
    ///
    /// # Errors
    ///
    /// `OverCommit` if `count` is more than what is lent (nothing is
    /// published).
    ///
    /// ```
    /// let (mut tx, _rx) = fdring::Builder::new()
    ///     .capacity(512)
    ///     .build_untyped(fdring::ItemLayout::new(8, 8))?;
    /// let lent = tx.try_reserve(1)?;
    /// assert_eq!(
    ///     tx.commit(lent.len + 1),
    ///     Err(fdring::Error::OverCommit { count: 513, lent: 512 })
    /// );
    /// tx.commit(2)?;
    /// assert_eq!(tx.len(), 2);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn commit(&mut self, count: usize) -> Result<(), Error> {
        self.inner.commit(count)
    }

    /// Waits until the receiver has taken every item, or for `timeout`;
    /// see [`Sender::wait_drained`].
    ///
    /// # Errors
    ///
    /// As for [`Sender::wait_drained`].
    pub fn wait_drained(&mut self, timeout: Duration) -> Result<(), Error> {
        self.inner
            .end
            .wait_drained(Instant::now().checked_add(timeout))
    }

    common_methods!("receiver", "Sender");
}

/// The receiving end of a ring of items of an [`ItemLayout`] known at run
/// time. Made by [`Builder::build_untyped`] or
/// [`Builder::open_untyped_receiver`].
///
/// Items are read in place: [`try_reserve`](Self::try_reserve) lends ready
/// items, the caller reads the first `k`, and
/// [`release(k)`](Self::release) gives their slots back to the sender, as
/// the typed [`Receiver::try_recv_with`] does with a closure. See
/// [`UntypedSender`] for an example.
pub struct UntypedReceiver {
    inner: Untyped<Read>,
}

impl UntypedReceiver {
    pub(super) fn new(end: End<Read>, layout: ItemLayout) -> UntypedReceiver {
        UntypedReceiver {
            inner: Untyped {
                end,
                layout,
                lent: 0,
            },
        }
    }

    /// Lends ready items without waiting: at least one, every ready item
    /// in one contiguous run. `want` is how many the caller could use (see
    /// [`UntypedSender::try_reserve`]). Read up to [`Lent::len`] items, then
    /// [`release`](Self::release) those read.
    ///
    /// # Errors
    ///
    /// `Empty`, `Disconnected` (once every published item was taken),
    /// `Corrupted`, as for [`Receiver::try_recv_with`].
    ///
    /// ```
    /// let (tx, mut rx) = fdring::Builder::new()
    ///     .capacity(512)
    ///     .build_untyped(fdring::ItemLayout::new(8, 8))?;
    /// assert_eq!(rx.try_reserve(1), Err(fdring::Error::Empty));
    /// drop(tx);
    /// assert_eq!(rx.try_reserve(1), Err(fdring::Error::Disconnected));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_reserve(&mut self, want: usize) -> Result<Lent, Error> {
        self.inner.reserve(want, Wait::Never)
    }

    /// Like [`try_reserve`](Self::try_reserve), but waits until an item
    /// is ready.
    ///
    /// # Errors
    ///
    /// As for [`Receiver::recv_with`].
    pub fn reserve(&mut self, want: usize) -> Result<Lent, Error> {
        self.inner.reserve(want, FOREVER)
    }

    /// Like [`reserve`](Self::reserve), but gives up after `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout`, and as for [`Receiver::recv_with`].
    pub fn reserve_timeout(&mut self, want: usize, timeout: Duration) -> Result<Lent, Error> {
        self.inner.reserve(want, Wait::timeout(timeout))
    }

    /// Releases the first `count` items of those lent by the last reserve,
    /// giving their slots back to the sender (and waking it if it sleeps).
    /// The items after them stay lent.
    ///
    /// # Errors
    ///
    /// `OverCommit` if `count` is more than what is lent (nothing is
    /// released).
    ///
    /// ```
    /// let (mut tx, mut rx) = fdring::Builder::new()
    ///     .capacity(512)
    ///     .build_untyped(fdring::ItemLayout::new(8, 8))?;
    /// tx.try_reserve(1)?;
    /// tx.commit(1)?;
    /// assert_eq!(rx.try_reserve(1)?.len, 1);
    /// assert!(matches!(rx.release(2), Err(fdring::Error::OverCommit { .. })));
    /// rx.release(1)?;
    /// assert!(rx.is_empty());
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn release(&mut self, count: usize) -> Result<(), Error> {
        self.inner.commit(count)
    }

    common_methods!("sender", "Receiver");
}

impl AsFd for UntypedSender {
    /// The wake-up socket, as [`Sender`]'s.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.end.wake.as_fd()
    }
}

impl AsFd for UntypedReceiver {
    /// The wake-up socket, as [`Receiver`]'s.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.end.wake.as_fd()
    }
}

impl fmt::Debug for UntypedSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UntypedSender")
            .field("layout", &self.inner.layout)
            .field("lent", &self.inner.lent)
            .field("end", &self.inner.end)
            .finish()
    }
}

impl fmt::Debug for UntypedReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UntypedReceiver")
            .field("layout", &self.inner.layout)
            .field("lent", &self.inner.lent)
            .field("end", &self.inner.end)
            .finish()
    }
}
