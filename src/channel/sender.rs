//! [`Sender`]: the sending end, its closure, item and slice calls, and
//! `io::Write` for bytes.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use bytemuck::Pod;

#[cfg(doc)]
use super::channel;
use super::end::{End, Wait, ALL, FOREVER};
use super::{Builder, Fds, Stats};
use crate::error::Error;
use crate::ring::Write;
use crate::signal::Liveness;

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
    pub(super) end: End<Write>,
    pub(super) _item: PhantomData<fn(T)>,
}

impl<T: Pod> Sender<T> {
    /// Opens a sending end from fds received from elsewhere, accepting any
    /// type tag and rings of up to
    /// [`DEFAULT_MAX_DATA_BYTES`](crate::DEFAULT_MAX_DATA_BYTES); see
    /// [`Builder::open_sender`] for the checks and errors.
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
    /// `Disconnected`. (The `try_` calls also notice a peer's death on
    /// their own, once the ring is full, within a few milliseconds: see
    /// [`try_send_with`](Self::try_send_with).)
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

    /// Items sent and not yet received: a racy snapshot. The receiver may
    /// take items at any moment, so the true value is this or less by the
    /// time you look at it.
    ///
    /// It is computed from this end's own index and one fresh load of the
    /// receiver's, and clamped to `0..=capacity`, so that whatever a
    /// misbehaving receiver writes into its index the answer is a possible
    /// fill level. It checks nothing: a corrupted index shows up as
    /// `Corrupted` on the next call that uses the ring. No system call.
    ///
    /// ```
    /// let (mut tx, mut rx) = fdring::channel::<u64>(512)?;
    /// tx.send_slice(&[1, 2, 3])?;
    /// assert_eq!(tx.len(), 3);
    /// rx.recv()?;
    /// assert_eq!(tx.len(), 2);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.end.fill_snapshot()
    }

    /// Whether no item is waiting for the receiver: a racy snapshot (see
    /// [`len`](Self::len)). Only this end adds items, so a `true` stays
    /// true until it sends.
    ///
    /// ```
    /// let (mut tx, mut rx) = fdring::channel::<u64>(512)?;
    /// assert!(tx.is_empty());
    /// tx.send(1)?;
    /// assert!(!tx.is_empty());
    /// rx.recv()?;
    /// assert!(tx.is_empty());
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the ring is full: a racy snapshot (see [`len`](Self::len));
    /// the receiver may free space at any moment, so a `true` may be stale
    /// at once, a `false` stays false until this end sends.
    ///
    /// ```
    /// let (mut tx, _rx) = fdring::channel::<u64>(512)?;
    /// while !tx.is_full() {
    ///     tx.try_send(7)?;
    /// }
    /// assert_eq!(tx.try_send(7), Err(fdring::Error::Full));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }

    /// Free slots: how many items a send could take now without waiting,
    /// `capacity() - len()` (rtrb's name). A racy snapshot like
    /// [`len`](Self::len): the receiver may free more at any moment, so
    /// the true value is this or more.
    ///
    /// ```
    /// let (mut tx, _rx) = fdring::channel::<u64>(512)?;
    /// tx.send_slice(&[0; 12])?;
    /// assert_eq!(tx.slots(), 500);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn slots(&self) -> usize {
        self.capacity() - self.len()
    }

    /// Whether the receiver is gone: it closed its end (dropped it), or its
    /// process died (its wake-up socket hung up, or the
    /// [watched](Self::watch_peer) liveness fired). rtrb's name.
    ///
    /// Once `true`, it stays true, and every send returns `Disconnected`.
    /// A `false` is a racy snapshot: the receiver may be gone the moment
    /// after. It costs one system call (a `poll` with a zero timeout, about
    /// 0.2 µs) unless the answer is already known to be `true`. The
    /// non-blocking calls notice a death by themselves once the ring is
    /// full (see [`try_send_with`](Self::try_send_with)); a sender that
    /// streams slowly into a large ring and wants to know sooner asks this
    /// now and then, say once per period or frame.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u64>(512)?;
    /// assert!(!tx.is_abandoned());
    /// drop(rx);
    /// assert!(tx.is_abandoned());
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn is_abandoned(&self) -> bool {
        self.end.is_abandoned()
    }

    /// Ends the stream without giving up the end (msg-pool's `close`):
    /// marks this end closed and wakes the receiver if it sleeps, as
    /// dropping it would. The receiver takes what is in the ring, then
    /// gets `Disconnected`. From then on every send returns
    /// `Disconnected`; [`wait_drained`](Self::wait_drained),
    /// [`len`](Self::len) and the other queries go on working.
    /// Idempotent.
    ///
    /// ```
    /// let (mut tx, mut rx) = fdring::channel::<u64>(512)?;
    /// tx.send_slice(&[1, 2])?;
    /// tx.close();
    /// assert_eq!(tx.try_send(3), Err(fdring::Error::Disconnected));
    /// assert_eq!(rx.recv()?, 1);
    /// assert_eq!(rx.recv()?, 2);
    /// assert_eq!(rx.recv(), Err(fdring::Error::Disconnected));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn close(&mut self) {
        self.end.close();
    }

    /// Waits until the receiver has taken every item sent (msg-pool's
    /// `wait_til_empty`), or for `timeout`: sleeps on the wake-up socket,
    /// woken as the receiver frees slots; no spinning.
    ///
    /// Works after [`close`](Self::close) too: close, then wait for the
    /// receiver to drain, is the orderly end of a stream.
    ///
    /// # Errors
    ///
    /// `Timeout` if items were still unread after `timeout`;
    /// `Disconnected` if the receiver closed or died with items unread
    /// ([`take_unread`](Self::take_unread) gives them back); `Corrupted`
    /// if its index is invalid. A receiver that took everything and then
    /// left is drained: `Ok`.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (mut tx, mut rx) = fdring::channel::<u64>(512)?;
    /// tx.send_slice(&[1, 2, 3])?;
    /// assert_eq!(tx.wait_drained(Duration::from_millis(10)), Err(fdring::Error::Timeout));
    /// let consumer = std::thread::spawn(move || rx.iter().count());
    /// tx.wait_drained(Duration::from_secs(10))?;
    /// assert!(tx.is_empty());
    /// drop(tx);
    /// assert_eq!(consumer.join().unwrap(), 3);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn wait_drained(&mut self, timeout: Duration) -> Result<(), Error> {
        self.end
            .wait_drained(std::time::Instant::now().checked_add(timeout))
    }

    /// Takes back the items the receiver never took, once it is gone
    /// (closed its end, or its process died): copies of them, in the
    /// order sent, so that they can be sent to another receiver. Exactly
    /// those: the receiver's index says which it took. A second call
    /// returns none.
    ///
    /// What the receiver took but had not finished with when it died is
    /// not here, and only the application can tell which those were (a
    /// job id in the item, say): see the `topology` module. A receiver
    /// that acts on items inside its `recv_with` closure, before they are
    /// released, has acted on items that come back here if it dies before
    /// the closure returns; copy them out (`recv`, `recv_slice`) first, or
    /// make acting on one twice harmless.
    ///
    /// # Errors
    ///
    /// `PeerAlive` if the receiver is still there: its items are still its
    /// own to read. `Corrupted` if its index is invalid (then nobody can
    /// say which items it took). `Exhausted(Allocation)` if the copies
    /// cannot be allocated.
    ///
    /// ```
    /// let (mut tx, mut rx) = fdring::channel::<u64>(512)?;
    /// tx.send_slice(&[10, 11, 12, 13])?;
    /// assert_eq!(tx.take_unread(), Err(fdring::Error::PeerAlive));
    /// assert_eq!(rx.recv()?, 10);
    /// drop(rx); // or its process dies
    /// assert_eq!(tx.take_unread()?, vec![11, 12, 13]);
    /// assert_eq!(tx.take_unread()?, vec![]);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn take_unread(&mut self) -> Result<Vec<T>, Error> {
        self.end.take_unread()
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
    /// # A receiver that dies
    ///
    /// A receiver that closes its end is seen at once. One whose process
    /// dies without closing (killed) is seen when this end looks at its
    /// wake-up socket for a hang-up, one `poll` that reads nothing. The
    /// non-blocking calls do that when they keep finding the ring full:
    /// every 16th such call reads the kernel's coarse clock (about 4 ns),
    /// and if a millisecond has passed since the last look and the
    /// receiver's index has not moved since (a dead receiver's never
    /// does), it looks; the call after it reports `Disconnected`. The
    /// coarse clock advances once per kernel tick (1 to 10 ms, 4 on a
    /// common configuration), and the first look after the death may see
    /// the index the receiver moved just before it died, so a loop that
    /// busy-polls a full ring gets `Disconnected` within about two ticks.
    /// A call that finds room does not look (a test there made a stream of
    /// single items up to twice as slow): a sender streaming into the room
    /// a dead receiver left learns of it once the ring is full, or at
    /// once from [`is_abandoned`](Self::is_abandoned). While the receiver
    /// is alive but does not move, the looks cost one `poll` (about
    /// 0.2 µs) per tick; a stream that flows makes no system call.
    ///
    /// # Errors
    ///
    /// `Full` if there is no free slot (`fill` is not called),
    /// `Disconnected` if the receiver is gone (see above), `Corrupted` if
    /// it broke the protocol, `Exhausted(Indices)` once this end has
    /// published 2^62 items, the format's limit (a new ring is needed).
    /// Near the limit, `fill` is lent only the slots left before it.
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
    /// `Corrupted`, `Exhausted(Indices)` (at once, without waiting) as
    /// for `try_send_with`, or `Io` if waiting failed. A timeout, however short,
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

    /// Looks for the receiver's death (one `poll`) if a millisecond has
    /// passed since the last look and the receiver's index has not moved
    /// since, for a caller that just failed to send and does not busy-poll
    /// (the frame layer's dropped offer). Returns whether the receiver's
    /// process is known to be gone.
    pub(crate) fn probe_peer_if_due(&mut self) -> bool {
        self.end.probe_if_due()
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
    /// not exceed the capacity, or it waits forever. `want` is how many the
    /// caller could use: the receiver's index is reloaded only if fewer are
    /// known to be free (`min` for one frame, every slot for a batch).
    pub(crate) fn send_with_min<F>(
        &mut self,
        want: usize,
        min: usize,
        wait: Wait,
        fill: F,
    ) -> Result<usize, Error>
    where
        F: FnOnce(&mut [MaybeUninit<T>]) -> usize,
    {
        let slots = self.end.slots_min(want, min, wait)?;
        let ptr = self.end.slot_ptr(slots).cast::<MaybeUninit<T>>();
        // SAFETY: as in `send_in`.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr, slots.len) };
        let written = fill(buf);
        assert!(written <= slots.len);
        self.end.commit(written);
        Ok(written)
    }

    /// Lends at least `min` free slots as raw memory, waiting as `wait`
    /// says, for a caller that writes them across calls (the frame layer's
    /// reserved frame); [`publish`](Self::publish) then publishes a prefix.
    /// Nothing else may send on this end in between: the caller keeps the
    /// lent run to itself (the frame layer drops its reservation on every
    /// other send).
    pub(crate) fn lend_min(
        &mut self,
        want: usize,
        min: usize,
        wait: Wait,
    ) -> Result<crate::channel::Lent, Error> {
        let slots = self.end.slots_min(want, min, wait)?;
        Ok(crate::channel::Lent {
            ptr: self.end.slot_ptr(slots),
            len: slots.len,
        })
    }

    /// Publishes the first `count` slots lent by the last
    /// [`lend_min`](Self::lend_min), which nothing has sent on since;
    /// `count` must not exceed what it lent.
    pub(crate) fn publish(&mut self, count: usize) {
        self.end.commit(count);
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
    /// A receiver that is gone is `BrokenPipe`, as with a pipe; a stream
    /// at the format's limit of 2^62 bytes is `Other` (its inner error is
    /// `Exhausted(Indices)`).
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
