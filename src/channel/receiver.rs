//! [`Receiver`]: the receiving end, its closure, item and slice calls,
//! and `io::Read` for bytes.

use std::fmt;
use std::io;
use std::iter::FusedIterator;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use bytemuck::Pod;

use super::end::{End, Wait, ALL, FOREVER};
#[cfg(doc)]
use super::{channel, Sender};
use super::{Builder, Fds, Stats};
use crate::error::Error;
use crate::ring::Read;
use crate::signal::Liveness;

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
    pub(super) end: End<Read>,
    pub(super) _item: PhantomData<fn() -> T>,
}

impl<T: Pod> Receiver<T> {
    /// Opens a receiving end from fds received from elsewhere, accepting any
    /// type tag and rings of up to
    /// [`DEFAULT_MAX_DATA_BYTES`](crate::DEFAULT_MAX_DATA_BYTES); see
    /// [`Builder::open_sender`] for the checks and errors.
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

    /// Items ready to be received: a racy snapshot. The sender may add
    /// items at any moment, so the true value is this or more by the time
    /// you look at it.
    ///
    /// It is computed from this end's own index and one fresh load of the
    /// sender's, and clamped to `0..=capacity`, so that whatever a
    /// misbehaving sender writes into its index the answer is a possible
    /// fill level. It checks nothing: a corrupted index shows up as
    /// `Corrupted` on the next call that uses the ring. No system call.
    ///
    /// ```
    /// let (mut tx, mut rx) = fdring::channel::<u64>(512)?;
    /// tx.send_slice(&[1, 2, 3])?;
    /// assert_eq!(rx.len(), 3);
    /// rx.recv()?;
    /// assert_eq!(rx.len(), 2);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.end.fill_snapshot()
    }

    /// Whether no item is ready: a racy snapshot (see [`len`](Self::len));
    /// the sender may add one at any moment, so a `true` may be stale at
    /// once, a `false` stays false until this end receives.
    ///
    /// ```
    /// let (mut tx, rx) = fdring::channel::<u64>(512)?;
    /// assert!(rx.is_empty());
    /// tx.send(1)?;
    /// assert!(!rx.is_empty());
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the ring is full: a racy snapshot (see [`len`](Self::len)).
    /// Only this end takes items out, so a `true` stays true until it
    /// receives.
    ///
    /// ```
    /// let (mut tx, rx) = fdring::channel::<u64>(512)?;
    /// tx.send_slice(&vec![0; tx.capacity()])?;
    /// assert!(rx.is_full());
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }

    /// Items ready to be received, the same as [`len`](Self::len) (rtrb's
    /// name, where a receiver's slots are the ones it can read). A racy
    /// snapshot: the true value is this or more.
    ///
    /// ```
    /// let (mut tx, rx) = fdring::channel::<u64>(512)?;
    /// tx.send_slice(&[5; 12])?;
    /// assert_eq!(rx.slots(), 12);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn slots(&self) -> usize {
        self.len()
    }

    /// Whether the sender is gone: it closed its end (dropped it), or its
    /// process died (its wake-up socket hung up, or the
    /// [watched](Self::watch_peer) liveness fired). rtrb's name.
    ///
    /// Items it published before may still be waiting: the receive calls
    /// return them first, and `Disconnected` only once the ring is empty.
    /// Once `true`, it stays true. A `false` is a racy snapshot: the
    /// sender may be gone the moment after. It costs one system call (a
    /// `poll` with a zero timeout, about 0.2 µs) unless the answer is
    /// already known to be `true`.
    ///
    /// ```
    /// let (mut tx, mut rx) = fdring::channel::<u64>(512)?;
    /// assert!(!rx.is_abandoned());
    /// tx.send(7)?;
    /// drop(tx);
    /// assert!(rx.is_abandoned());
    /// assert_eq!(rx.try_recv(), Ok(7));
    /// assert_eq!(rx.try_recv(), Err(fdring::Error::Disconnected));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn is_abandoned(&self) -> bool {
        self.end.is_abandoned()
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
    /// A sender that closes its end is seen at once; one whose process dies
    /// without closing (killed) is seen when this end looks at its wake-up
    /// socket for a hang-up. The non-blocking calls do that when they keep
    /// finding the ring empty: every 16th such call reads the kernel's
    /// coarse clock, and looks if a millisecond has passed since the last
    /// look and the sender's index has not moved since (see
    /// [`Sender::try_send_with`] for the details). So a loop that
    /// busy-polls gets `Disconnected` within about two kernel ticks (a few
    /// milliseconds) of the death, after every item the sender published;
    /// while the sender is alive but idle, it pays one `poll` (about
    /// 0.2 µs) per tick.
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

    /// Lends the ready items as raw memory, waiting as `wait` says for at
    /// least one, for a caller that reads them across calls (the frame
    /// layer's frame received in place); [`release`](Self::release) then
    /// releases a prefix. Nothing else may receive on this end in between
    /// (the frame layer drops its lent frame on every other receive).
    pub(crate) fn lend(&mut self, want: usize, wait: Wait) -> Result<crate::channel::Lent, Error> {
        let slots = self.end.slots(want, wait)?;
        Ok(crate::channel::Lent {
            ptr: self.end.slot_ptr(slots),
            len: slots.len,
        })
    }

    /// Releases the first `count` items lent by the last
    /// [`lend`](Self::lend), which nothing has received since; `count`
    /// must not exceed what it lent.
    pub(crate) fn release(&mut self, count: usize) {
        self.end.commit(count);
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

    /// Copies the next item without receiving it: the next receive returns
    /// it again (unless a misbehaving sender changed it meanwhile). Does
    /// not wait. A copy, not a reference, because the bytes are in memory
    /// the sender can write.
    ///
    /// # Errors
    ///
    /// `Empty`, `Disconnected` or `Corrupted`, as for
    /// [`try_recv`](Self::try_recv).
    ///
    /// ```
    /// let (mut tx, mut rx) = fdring::channel::<u32>(1024)?;
    /// assert_eq!(rx.peek(), Err(fdring::Error::Empty));
    /// tx.send(42)?;
    /// assert_eq!(rx.peek(), Ok(42));
    /// assert_eq!(rx.len(), 1);
    /// assert_eq!(rx.try_recv(), Ok(42));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn peek(&mut self) -> Result<T, Error> {
        let mut item = T::zeroed();
        self.recv_in(1, Wait::Never, |items| {
            read_first(items, &mut item);
            0
        })?;
        Ok(item)
    }

    /// An iterator over the items ready now: it receives with
    /// [`try_recv`](Self::try_recv) until that fails, and then yields
    /// nothing more (it is fused), whatever the failure: `Empty`,
    /// `Disconnected`, or `Corrupted`. Never waits (std's
    /// `Receiver::try_iter`).
    ///
    /// ```
    /// let (mut tx, mut rx) = fdring::channel::<u64>(512)?;
    /// tx.send_slice(&[1, 2, 3])?;
    /// let got: Vec<u64> = rx.try_iter().collect();
    /// assert_eq!(got, [1, 2, 3]);
    /// assert_eq!(rx.try_iter().next(), None);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_iter(&mut self) -> TryIter<'_, T> {
        TryIter {
            rx: self,
            done: false,
        }
    }

    /// A blocking iterator: it receives with [`recv`](Self::recv), waiting
    /// for each item, and ends when the sender is gone and every item it
    /// published was received (std's `Receiver::iter`).
    ///
    /// Any error ends it, not only `Disconnected`: `Corrupted` too (the
    /// sender broke the protocol), and `Io` if waiting failed. To tell
    /// which, call [`try_recv`](Self::try_recv) after the loop: a
    /// corrupted ring answers `Corrupted` again (it is sticky), a
    /// disconnected one `Disconnected`. Use `recv` in a loop of your own
    /// if you need the error itself.
    ///
    /// ```
    /// let (mut tx, mut rx) = fdring::channel::<u64>(512)?;
    /// let producer = std::thread::spawn(move || {
    ///     for i in 0..1000 {
    ///         tx.send(i)?;
    ///     }
    ///     Ok::<(), fdring::Error>(())
    /// });
    /// let sum: u64 = rx.iter().sum();
    /// assert_eq!(sum, 999 * 1000 / 2);
    /// assert_eq!(rx.try_recv(), Err(fdring::Error::Disconnected));
    /// producer.join().unwrap()?;
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn iter(&mut self) -> Iter<'_, T> {
        Iter {
            rx: self,
            done: false,
        }
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

/// The iterator of [`Receiver::try_iter`]: the items ready now.
///
/// ```
/// let (mut tx, mut rx) = fdring::channel::<u8>(4096)?;
/// tx.send_slice(b"abc")?;
/// let mut items: fdring::TryIter<'_, u8> = rx.try_iter();
/// assert_eq!(items.next(), Some(b'a'));
/// # Ok::<(), fdring::Error>(())
/// ```
pub struct TryIter<'a, T: Pod> {
    rx: &'a mut Receiver<T>,
    done: bool,
}

impl<T: Pod> Iterator for TryIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.done {
            return None;
        }
        let item = self.rx.try_recv().ok();
        self.done = item.is_none();
        item
    }
}

impl<T: Pod> FusedIterator for TryIter<'_, T> {}

impl<T: Pod> fmt::Debug for TryIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryIter")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// The iterator of [`Receiver::iter`] (and of `for item in &mut
/// receiver`): every item, waiting for each, until the sender is gone.
///
/// ```
/// let (mut tx, mut rx) = fdring::channel::<u8>(4096)?;
/// tx.send_slice(b"abc")?;
/// drop(tx);
/// let mut all = Vec::new();
/// for byte in &mut rx {
///     all.push(byte);
/// }
/// assert_eq!(all, b"abc");
/// # Ok::<(), fdring::Error>(())
/// ```
pub struct Iter<'a, T: Pod> {
    rx: &'a mut Receiver<T>,
    done: bool,
}

impl<T: Pod> Iterator for Iter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.done {
            return None;
        }
        let item = self.rx.recv().ok();
        self.done = item.is_none();
        item
    }
}

impl<T: Pod> FusedIterator for Iter<'_, T> {}

impl<T: Pod> fmt::Debug for Iter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<'a, T: Pod> IntoIterator for &'a mut Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;

    /// [`Receiver::iter`].
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
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
