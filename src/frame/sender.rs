//! The sending end of the frame layer: [`FrameSender`], the frame space
//! it lends ([`FrameMut`]), the free bytes it lends for several frames
//! published at once ([`FrameBatch`]), and the writing of a record
//! (header, padding, payload) into the free bytes of the ring.

use std::fmt;
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use super::record::{
    check_align, misaligned, record_room, round_up, too_large, HEADER, MARKER, MAX_ALIGN,
    MIN_ALIGN, RECORD_ALIGN,
};
use super::FrameStats;
use crate::channel::{Fds, Lent, Sender, Wait};
use crate::error::Error;
use crate::Liveness;
// Named in the documentation only.
#[cfg(doc)]
use super::{Frame, FrameReceiver};
#[cfg(doc)]
use std::io;

/// The space of one frame in the ring, lent to the closure of
/// [`FrameSender::send_frame_with`] and friends: exactly the number of
/// bytes asked for, aligned as the sender's [`align`](FrameSender::align),
/// and a tag to send with it.
///
/// It dereferences to `[u8]`; view it as other plain data with bytemuck,
/// without copying:
///
/// ```
/// let (tx, _rx) = fdring::channel::<u8>(4096)?;
/// let mut tx = fdring::FrameSender::new(tx);
/// tx.send_frame_with(16, |frame| {
///     let samples: &mut [f32] = bytemuck::cast_slice_mut(frame.bytes_mut());
///     samples.fill(0.5);
///     frame.set_tag(48_000);
///     frame.len()
/// })?;
/// # Ok::<(), fdring::Error>(())
/// ```
///
/// The bytes are not zeroed: they hold whatever the ring held there before
/// (old frames, or what a misbehaving peer wrote). Write every byte you
/// commit.
pub struct FrameMut<'a> {
    bytes: &'a mut [u8],
    tag: u64,
}

impl FrameMut<'_> {
    /// The frame's bytes.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// tx.send_frame_with(4, |frame| {
    ///     frame.bytes_mut().copy_from_slice(b"RGBA");
    ///     4
    /// })?;
    /// assert_eq!(rx.recv_frame_with(|frame| frame.to_vec())?, b"RGBA");
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.bytes
    }

    /// The tag the frame will be committed with; 0 unless set.
    ///
    /// ```
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// tx.send_frame_with(0, |frame| {
    ///     assert_eq!(frame.tag(), 0);
    ///     0
    /// })?;
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// Sets the tag sent with the frame (a timestamp, a format id, a frame
    /// number: the receiver gets it as [`Frame::tag`]). It is read when the
    /// closure returns, so a timestamp taken last is the commit time.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// let start = std::time::Instant::now();
    /// tx.send_frame_with(1024, |frame| {
    ///     frame.fill(0);
    ///     frame.set_tag(start.elapsed().as_nanos() as u64); // the commit time
    ///     frame.len()
    /// })?;
    /// let sent_at = rx.recv_frame_with(|frame| frame.tag())?;
    /// assert!(sent_at <= start.elapsed().as_nanos() as u64);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn set_tag(&mut self, tag: u64) {
        self.tag = tag;
    }
}

impl Deref for FrameMut<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

impl DerefMut for FrameMut<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.bytes
    }
}

impl fmt::Debug for FrameMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameMut")
            .field("len", &self.bytes.len())
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// The free bytes of the ring, lent to the closure of
/// [`FrameSender::send_frames_with`] and friends, to write several frames
/// into one after the other: every frame [pushed](Self::push_with) is
/// published when the closure returns, all of them with one store of the
/// write index, so that many small frames pay for one publish (and the
/// receiver is woken once, if it sleeps).
///
/// ```
/// let (tx, rx) = fdring::channel::<u8>(64 * 1024)?;
/// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
/// // Room for at least one 64-byte frame; then as many as fit, or 100.
/// let sent = tx.send_frames_with(64, |batch| {
///     for n in 0..100u64 {
///         let pushed = batch.push_with(64, |frame| {
///             frame.fill(n as u8);
///             frame.set_tag(n);
///             frame.len()
///         });
///         if pushed.is_none() {
///             break; // the ring is full: the rest goes in the next batch
///         }
///     }
/// })?;
/// assert_eq!(sent, 100);
/// let received = rx.recv_frames_with(|frames| {
///     frames.inspect(|frame| assert_eq!(frame.len(), 64)).count()
/// })?;
/// assert_eq!(received, 64); // at most `FrameReceiver::MAX_BATCH` per call
/// # Ok::<(), fdring::Error>(())
/// ```
///
/// Frames are written in place, as with [`FrameMut`]; a frame that does
/// not fit in what is left is refused before its closure is called, and
/// leaves the batch as it was.
pub struct FrameBatch<'a> {
    /// Every free byte lent by the channel, from the write position on.
    free: &'a mut [MaybeUninit<u8>],
    /// The bytes of the records written so far: the next one starts here.
    used: usize,
    align: usize,
    frames: u64,
    bytes: u64,
}

impl FrameBatch<'_> {
    /// Writes a frame of up to `len` bytes after the ones already in the
    /// batch, as [`FrameSender::try_send_frame_with`] does alone: `fill`
    /// gets exactly `len` bytes in place (aligned as the sender's
    /// [`align`](FrameSender::align)), writes the first `n` (and may set
    /// the tag) and returns `n`; a frame of those `n` bytes is then part of
    /// the batch, and the bytes it did not use are free for the next frame.
    /// Returns `Some(n)`, or `None` if a frame of `len` bytes does not fit
    /// in what is left of the free bytes (`fill` is not called).
    ///
    /// # Panics
    ///
    /// If `fill` returns more than `len`.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// tx.try_send_frames_with(100, |batch| {
    ///     assert_eq!(batch.push_with(100, |frame| {
    ///         frame[..3].copy_from_slice(b"abc");
    ///         3 // a shorter commit: the other 97 bytes stay free
    ///     }), Some(3));
    ///     assert_eq!(batch.push_with(5000, |_| unreachable!()), None); // never fits
    ///     assert_eq!(batch.frames(), 1);
    /// })?;
    /// assert_eq!(rx.try_recv_frame_with(|frame| frame.to_vec())?, b"abc");
    /// # Ok::<(), fdring::Error>(())
    /// ```
    // Inlined into the caller's loop, the batch's fields stay in registers:
    // with 64-byte frames, the stores of a call (its saved registers, the
    // batch's counters) were as many as the frame's own.
    #[inline]
    pub fn push_with<F>(&mut self, len: usize, fill: F) -> Option<usize>
    where
        F: FnOnce(&mut FrameMut<'_>) -> usize,
    {
        // The records before end on multiples of 8, and the batch was lent
        // only if the free bytes start on one: never `Misaligned` here.
        match write_record(&mut self.free[self.used..], len, self.align, fill) {
            Attempt::Sent { committed, record } => {
                self.used += record;
                self.frames += 1;
                self.bytes += committed as u64;
                Some(committed)
            }
            Attempt::NoRoom | Attempt::Misaligned => None,
        }
    }

    /// Writes a copy of `bytes` as a frame with `tag` after the ones
    /// already in the batch; returns `false` if it does not fit in what is
    /// left (nothing is written).
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// let sent = tx.try_send_frames_with(0, |batch| {
    ///     let mut n = 0u64;
    ///     while batch.push(n, &n.to_le_bytes()) {
    ///         n += 1;
    ///     }
    /// })?;
    /// // A record of 8 bytes takes 32: a header of 24 and the payload.
    /// assert_eq!(sent, 4096 / 32);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    #[inline]
    pub fn push(&mut self, tag: u64, bytes: &[u8]) -> bool {
        self.push_with(bytes.len(), copy_frame(tag, bytes))
            .is_some()
    }

    /// The largest frame that still fits in the batch, in bytes (a
    /// multiple of 8, or 0 when not even an empty frame fits).
    ///
    /// ```
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// tx.try_send_frames_with(0, |batch| {
    ///     assert_eq!(batch.room(), 4096 - 24);
    ///     batch.push(1, &[1; 1000]);
    ///     assert_eq!(batch.room(), 4096 - 24 - 1000 - 24);
    ///     let room = batch.room();
    ///     assert_eq!(batch.push_with(room, |frame| frame.len()), Some(room));
    ///     assert_eq!(batch.room(), 0);
    /// })?;
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn room(&self) -> usize {
        let free = &self.free[self.used..];
        let payload_at = payload_offset(free, self.align);
        free.len().saturating_sub(payload_at) / RECORD_ALIGN * RECORD_ALIGN
    }

    /// How many frames the batch holds so far.
    ///
    /// ```
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// let sent = tx.try_send_frames_with(0, |batch| {
    ///     assert_eq!(batch.frames(), 0);
    ///     batch.push(7, b"one");
    ///     batch.push(8, b"two");
    ///     assert_eq!(batch.frames(), 2);
    /// })?;
    /// assert_eq!(sent, 2);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn frames(&self) -> usize {
        self.frames as usize
    }
}

impl fmt::Debug for FrameBatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameBatch")
            .field("frames", &self.frames)
            .field("bytes", &self.bytes)
            .field("room", &self.room())
            .finish_non_exhaustive()
    }
}

/// What one attempt to write a frame into the free bytes came to.
#[derive(Clone, Copy)]
enum Attempt {
    /// The free bytes were too few; nothing was written.
    NoRoom,
    /// The frame was committed with `committed` payload bytes, in a record
    /// of `record` bytes (padding included) to publish.
    Sent { committed: usize, record: usize },
    /// The free bytes did not start at a multiple of 8: the ring was
    /// written outside of frames.
    Misaligned,
}

impl Attempt {
    /// The bytes to publish for it.
    fn record(self) -> usize {
        match self {
            Attempt::Sent { record, .. } => record,
            Attempt::NoRoom | Attempt::Misaligned => 0,
        }
    }
}

/// The sending end of a ring of frames: a [`Sender<u8>`] that sends
/// variable-length frames, each written in place as one contiguous,
/// aligned `&mut [u8]`.
///
/// ```
/// let (tx, rx) = fdring::channel::<u8>(64 * 1024)?;
/// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
/// // Ask for up to 100 bytes, write 5 of them in place, commit those 5.
/// tx.send_frame_with(100, |frame| {
///     frame[..5].copy_from_slice(b"hello");
///     frame.set_tag(1);
///     5
/// })?;
/// rx.recv_frame_with(|frame| {
///     assert_eq!((frame.tag(), frame.bytes()), (1, &b"hello"[..]));
/// })?;
/// # Ok::<(), fdring::Error>(())
/// ```
///
/// The `Sender<u8>` is owned for good: bytes written into a frame ring
/// outside of frames would break the records, so a `FrameSender` is not
/// `io::Write` and does not give its sender back.
///
/// ```compile_fail
/// use std::io::Write;
/// let (tx, _rx) = fdring::channel::<u8>(4096)?;
/// let mut tx = fdring::FrameSender::new(tx);
/// tx.write_all(b"raw bytes")?; // error: FrameSender is not io::Write
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A peer that does write raw bytes into the stream makes the receiver
/// return `Corrupted` (see [`FrameReceiver`]).
pub struct FrameSender {
    tx: Sender<u8>,
    align: usize,
    max_frame_len: usize,
    /// The length of the last frame a `try_` call had no room for: what
    /// an event-loop adapter arms for after that `Full`.
    refused_len: usize,
    /// The frame reserved in place and not yet committed
    /// ([`try_reserve_frame`](Self::try_reserve_frame)); dropped by every
    /// other send, and by `close`.
    reserved: Option<Reserved>,
    stats: FrameStats,
}

/// A frame reserved in the ring: where its record starts, where its
/// payload starts in it, and the payload's length.
#[derive(Debug, Clone, Copy)]
struct Reserved {
    record: *mut u8,
    payload_at: usize,
    len: usize,
}

// SAFETY: `record` points into the `Sender<u8>`'s mapping, which moves
// with the `FrameSender`; it is only written through `&mut self`.
unsafe impl Send for FrameSender {}

impl FrameSender {
    /// The size of a frame header in bytes: a frame of `n` bytes takes
    /// `HEADER_BYTES + n` bytes of the ring, and up to `align - 8` bytes of
    /// padding before and 7 after the payload.
    ///
    /// ```
    /// assert_eq!(fdring::FrameSender::HEADER_BYTES, 24);
    /// ```
    pub const HEADER_BYTES: usize = HEADER;
    /// The largest payload alignment, a cache line.
    ///
    /// ```
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let tx = fdring::FrameSender::with_align(tx, fdring::FrameSender::MAX_ALIGN);
    /// assert_eq!(tx.align(), 64);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub const MAX_ALIGN: usize = MAX_ALIGN;

    /// A frame sender over `tx`, with payloads aligned to 8 bytes.
    ///
    /// `tx` should be fresh, or have sent frames only: the records start
    /// where its stream stands.
    ///
    /// ```
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let tx = fdring::FrameSender::new(tx);
    /// assert_eq!(tx.align(), 8);
    /// assert_eq!(tx.max_frame_len(), 4096 - fdring::FrameSender::HEADER_BYTES);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn new(tx: Sender<u8>) -> FrameSender {
        FrameSender::with_align(tx, MIN_ALIGN)
    }

    /// A frame sender over `tx` whose payloads start at addresses that are
    /// multiples of `align` (8, 16, 32 or 64), for SIMD or a cache line per
    /// frame. A larger alignment costs up to `align - 8` bytes of padding
    /// per frame.
    ///
    /// # Panics
    ///
    /// If `align` is not a power of two from 8 to 64.
    ///
    /// ```
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::with_align(tx, 64);
    /// tx.send_frame_with(256, |frame| {
    ///     assert_eq!(frame.as_ptr() as usize % 64, 0);
    ///     frame.len()
    /// })?;
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn with_align(tx: Sender<u8>, align: usize) -> FrameSender {
        check_align(align);
        // The worst gap is `align - 8` (a header ends on a multiple of 8).
        // The capacity is a multiple of the page size, far above this.
        let max_frame_len = tx.capacity().saturating_sub(HEADER + align - RECORD_ALIGN);
        FrameSender {
            tx,
            align,
            max_frame_len,
            refused_len: 0,
            reserved: None,
            stats: FrameStats::default(),
        }
    }

    /// The ring capacity, in bytes, that holds `frames` frames of
    /// `frame_len` bytes each at once, whatever their alignment padding:
    /// what to give [`channel`](crate::channel) or
    /// [`Builder::capacity`](crate::Builder::capacity).
    ///
    /// ```
    /// // A ring for four 1920x1080 RGBA frames, 64-byte aligned.
    /// let capacity = fdring::FrameSender::capacity_for(4, 1920 * 1080 * 4, 64);
    /// assert_eq!(capacity, 4 * (24 + 56 + 8_294_400));
    /// ```
    pub fn capacity_for(frames: usize, frame_len: usize, align: usize) -> usize {
        frames * (HEADER + align - RECORD_ALIGN + round_up(frame_len, RECORD_ALIGN))
    }

    /// The payload alignment in bytes.
    ///
    /// ```
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// assert_eq!(fdring::FrameSender::with_align(tx, 32).align(), 32);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn align(&self) -> usize {
        self.align
    }

    /// The ring's capacity in bytes.
    ///
    /// ```
    /// let (tx, _rx) = fdring::channel::<u8>(5000)?;
    /// // Rounded up to whole pages.
    /// assert_eq!(fdring::FrameSender::new(tx).capacity(), 8192);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.tx.capacity()
    }

    /// The largest frame this sender can send: the capacity less a header
    /// and the largest alignment padding (`align - 8`). It fits into the
    /// ring whenever the ring is empty; a larger frame never would, and is
    /// refused at once.
    ///
    /// ```
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::with_align(tx, 64);
    /// assert_eq!(tx.max_frame_len(), 4096 - 24 - 56);
    /// assert!(tx.send_frame(0, &[0; 4096]).is_err()); // never fits: refused, no wait
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// This end's counters.
    ///
    /// ```
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// tx.send_frame(0, &[0; 100])?;
    /// assert_eq!((tx.stats().frames, tx.stats().bytes), (1, 100));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn stats(&self) -> FrameStats {
        FrameStats {
            ring: self.tx.stats(),
            ..self.stats
        }
    }

    /// Watches the receiver's process; see [`Sender::watch_peer`].
    ///
    /// ```
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    /// // For instance the socket the fds were handed over on: its hang-up
    /// // counts as the receiver's death.
    /// tx.watch_peer(fdring::Liveness::socket(ours));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn watch_peer(&mut self, liveness: Liveness) {
        self.tx.watch_peer(liveness);
    }

    /// The liveness watched by [`watch_peer`](Self::watch_peer), if any:
    /// register its fd in an event loop next to this end's (the `mio` and
    /// `tokio` adapters do) to learn of the receiver's death; see
    /// [`Sender::peer_liveness`].
    ///
    /// ```
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// assert!(tx.peer_liveness().is_none());
    /// let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    /// tx.watch_peer(fdring::Liveness::socket(ours));
    /// assert!(tx.peer_liveness().is_some());
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn peer_liveness(&self) -> Option<&Liveness> {
        self.tx.peer_liveness()
    }

    /// Whether the receiver is gone: it closed its end, or its process
    /// died. A racy snapshot that costs a system call; see
    /// [`Sender::is_abandoned`].
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (tx, rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// assert!(!tx.is_abandoned());
    /// drop(rx);
    /// assert!(tx.is_abandoned());
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn is_abandoned(&self) -> bool {
        self.tx.is_abandoned()
    }

    /// Ends the stream without giving up the end, as
    /// [`Sender::close`]: the receiver takes the frames in the ring, then
    /// gets `Disconnected`; every later send returns `Disconnected`.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// tx.send_frame(7, b"last")?;
    /// tx.close();
    /// assert_eq!(tx.try_send_frame(8, b"late"), Err(fdring::Error::Disconnected));
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.recv_frame(&mut buf)?, 7);
    /// assert_eq!(rx.recv_frame(&mut buf), Err(fdring::Error::Disconnected));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn close(&mut self) {
        self.reserved = None;
        self.tx.close();
    }

    /// Waits until the receiver has released every frame sent, or for
    /// `timeout`, as [`Sender::wait_drained`].
    ///
    /// # Errors
    ///
    /// As for [`Sender::wait_drained`].
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// tx.send_frame(1, b"frame")?;
    /// let consumer = std::thread::spawn(move || rx.recv_frame(&mut Vec::new()));
    /// tx.wait_drained(Duration::from_secs(10))?;
    /// assert_eq!(consumer.join().unwrap()?, 1);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn wait_drained(&mut self, timeout: Duration) -> Result<(), Error> {
        self.tx.wait_drained(timeout)
    }

    /// Prepares to wait on this end's fd ([`AsFd`]) in your own event loop
    /// until there is room for a frame of `len` bytes, after a `try_` call
    /// returned `Full`: the contract of [`Sender::prepare_wait`], with
    /// "room" meaning room for that frame, not one free byte.
    ///
    /// Returns `Ok(true)` if you may wait now: the fd becomes readable when
    /// the receiver frees space (look again: one release may not have been
    /// enough), closes, breaks the protocol or dies. `Ok(false)` if there
    /// is room already or the receiver is gone: retry instead of waiting.
    /// Pass [`crate::poll_timeout()`] as the poller's timeout.
    ///
    /// With the cargo feature `mio`, a `FrameSender` is a
    /// `mio::event::Source`, and `fdring::mio::EventLoopExt::try_or_arm`
    /// calls this with the length of the frame its `try_` call had no room
    /// for; with `tokio`, `fdring::tokio::AsyncFrameSender` waits so.
    ///
    /// # Errors
    ///
    /// `FrameTooLarge` if no ring position could ever hold the frame (see
    /// [`max_frame_len`](Self::max_frame_len)); `Io` if the wake-up socket
    /// cannot be drained.
    ///
    /// ```
    /// use rustix::event::{poll, PollFd, PollFlags};
    ///
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// tx.send_frame(1, &[1; 3000])?; // the ring is now too full for another
    /// let reader = std::thread::spawn(move || {
    ///     let len = rx.recv_frame_with(|f| f.len());
    ///     (len, rx) // dropped only after the join: the sender sees no close
    /// });
    /// loop {
    ///     match tx.try_send_frame(2, &[2; 3000]) {
    ///         Ok(()) => break,
    ///         Err(fdring::Error::Full) => {
    ///             if tx.prepare_wait(3000)? {
    ///                 poll(&mut [PollFd::new(&tx, PollFlags::IN)], None).unwrap();
    ///             }
    ///         }
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// let (len, _rx) = reader.join().unwrap();
    /// assert_eq!(len?, 3000);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn prepare_wait(&mut self, len: usize) -> Result<bool, Error> {
        if len > self.max_frame_len {
            return Err(too_large(len, self.max_frame_len));
        }
        self.tx.prepare_wait_min(record_room(len, self.align))
    }

    /// [`prepare_wait`](Self::prepare_wait) for the frame the last `try_`
    /// call had no room for (an empty frame if none had): what "would
    /// block" arms for in the event-loop adapters, whose `try_` calls are
    /// closures that this end cannot look into.
    pub(crate) fn prepare_wait_for_refused(&mut self) -> Result<bool, Error> {
        self.prepare_wait(self.refused_len)
    }

    /// Gives up this end as fds, to be opened again elsewhere as a
    /// [`Sender<u8>`] and wrapped in a `FrameSender` there; see
    /// [`Sender::into_fds`].
    ///
    /// # Errors
    ///
    /// `Io` if the fds cannot be duplicated (out of fds).
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let fds = fdring::FrameSender::new(tx).into_fds()?;
    /// // ... in another process:
    /// let mut tx = fdring::FrameSender::new(fdring::Sender::<u8>::from_fds(fds)?);
    /// tx.send_frame(1, b"from afar")?;
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn into_fds(self) -> Result<Fds, Error> {
        self.tx.into_fds()
    }

    /// Lends the space of a frame of exactly `len` bytes, in place in the
    /// ring, to `fill`, which writes the first `n` bytes (and may set the
    /// tag) and returns `n`; a frame of those `n` bytes is then committed,
    /// and the bytes it did not use are free again at once. Returns `n`.
    /// Does not wait.
    ///
    /// # Errors
    ///
    /// `Full` if there is no room for the frame now (`fill` is not
    /// called); `Disconnected` if the receiver is gone; `Corrupted` if it
    /// broke the protocol; `FrameTooLarge` if `len` is above
    /// [`max_frame_len`](Self::max_frame_len) (such a frame could never
    /// fit); `Io` with [`io::ErrorKind::InvalidInput`] if the ring was
    /// written outside of frames (its stream does not stand on a multiple
    /// of 8); `Exhausted(Indices)` if the stream is too near the format's
    /// limit of 2^62 bytes for this frame (a new ring is needed; nothing
    /// past the limit is ever published).
    ///
    /// # Panics
    ///
    /// If `fill` returns more than `len`.
    ///
    /// ```
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// let len = tx.max_frame_len();
    /// assert_eq!(tx.try_send_frame_with(len, |frame| frame.len())?, len);
    /// // The ring is full now.
    /// assert_eq!(tx.try_send_frame_with(0, |_| 0), Err(fdring::Error::Full));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_send_frame_with<F>(&mut self, len: usize, fill: F) -> Result<usize, Error>
    where
        F: FnOnce(&mut FrameMut<'_>) -> usize,
    {
        self.send_in(len, Wait::Never, fill)
    }

    /// Like [`try_send_frame_with`](Self::try_send_frame_with), but waits
    /// until there is room for the frame.
    ///
    /// # Errors
    ///
    /// `Disconnected`, `Corrupted`, `Io`, `Exhausted` as for
    /// `try_send_frame_with` (an oversized frame, or one that would pass the
    /// index limit, is refused at once, not waited for).
    ///
    /// # Panics
    ///
    /// If `fill` returns more than `len`.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// let producer = std::thread::spawn(move || -> Result<(), fdring::Error> {
    ///     for n in 0..100u8 {
    ///         // 3000 bytes: room for one at a time, so this waits for the receiver.
    ///         tx.send_frame_with(3000, |frame| {
    ///             frame.fill(n);
    ///             frame.len()
    ///         })?;
    ///     }
    ///     Ok(())
    /// });
    /// for n in 0..100u8 {
    ///     rx.recv_frame_with(|frame| assert!(frame.iter().all(|&b| b == n)))?;
    /// }
    /// producer.join().unwrap()?;
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn send_frame_with<F>(&mut self, len: usize, fill: F) -> Result<usize, Error>
    where
        F: FnOnce(&mut FrameMut<'_>) -> usize,
    {
        self.send_in(len, Wait::Until(None), fill)
    }

    /// Like [`send_frame_with`](Self::send_frame_with), but gives up after
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` if there was no room for the frame in time, and as for
    /// `send_frame_with`.
    ///
    /// # Panics
    ///
    /// If `fill` returns more than `len`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// tx.send_frame(0, &[1; 3000])?;
    /// // Nobody receives: there is no room for a second such frame.
    /// let waited = tx.send_frame_with_timeout(3000, Duration::from_millis(10), |f| f.len());
    /// assert_eq!(waited, Err(fdring::Error::Timeout));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn send_frame_with_timeout<F>(
        &mut self,
        len: usize,
        timeout: Duration,
        fill: F,
    ) -> Result<usize, Error>
    where
        F: FnOnce(&mut FrameMut<'_>) -> usize,
    {
        self.send_in(len, Wait::timeout(timeout), fill)
    }

    /// Sends a frame only if there is room for it now, for
    /// latest-frame-wins: never waits. Returns `Ok(true)` if the frame was
    /// committed (as by [`try_send_frame_with`](Self::try_send_frame_with)),
    /// `Ok(false)` if there was no room: `fill` was not called, nothing was
    /// written, and the frame counts as dropped in
    /// [`stats`](Self::stats).
    ///
    /// A frame is dropped only while the ring holds frames the receiver has
    /// not released (a frame of at most `max_frame_len` bytes fits into an
    /// empty ring). What the receiver then sees is stated on
    /// [`FrameReceiver::recv_latest_with`].
    ///
    /// A receiver that stopped releasing because its process died would
    /// make every offer a drop: so before it answers `Ok(false)`, this
    /// looks at the wake-up socket for the receiver's hang-up (one `poll`,
    /// at most once per millisecond of the kernel's coarse clock, and only
    /// if the receiver's index has not moved since the last look), and
    /// answers `Disconnected` instead once the receiver is gone.
    ///
    /// # Errors
    ///
    /// As for `try_send_frame_with`, but no `Full`.
    ///
    /// # Panics
    ///
    /// If `fill` returns more than `len`.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// for n in 0..10u64 {
    ///     // Room for two 1500-byte frames: frames 2 to 9 are dropped.
    ///     tx.offer_frame_with(1500, |frame| {
    ///         frame.set_tag(n);
    ///         frame.len()
    ///     })?;
    /// }
    /// assert_eq!(tx.stats().dropped, 8);
    /// assert_eq!(rx.recv_latest_with(|frame| frame.tag())?, 1);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn offer_frame_with<F>(&mut self, len: usize, fill: F) -> Result<bool, Error>
    where
        F: FnOnce(&mut FrameMut<'_>) -> usize,
    {
        match self.send_in(len, Wait::Never, fill) {
            Ok(_) => Ok(true),
            Err(Error::Full) => {
                if self.tx.probe_peer_if_due() {
                    return Err(Error::Disconnected);
                }
                self.stats.dropped += 1;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends a copy of `bytes` as one frame with `tag`, if there is room
    /// now.
    ///
    /// # Errors
    ///
    /// As for [`try_send_frame_with`](Self::try_send_frame_with).
    ///
    /// ```
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// tx.try_send_frame(0, &[0; 4000])?;
    /// assert_eq!(tx.try_send_frame(0, &[0; 4000]), Err(fdring::Error::Full));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_send_frame(&mut self, tag: u64, bytes: &[u8]) -> Result<(), Error> {
        self.send_in(bytes.len(), Wait::Never, copy_frame(tag, bytes))
            .map(drop)
    }

    /// Sends a copy of `bytes` as one frame with `tag`, waiting for room.
    ///
    /// # Errors
    ///
    /// As for [`send_frame_with`](Self::send_frame_with).
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// tx.send_frame(1, b"one")?;
    /// tx.send_frame(2, b"")?;
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.recv_frame(&mut buf)?, 1);
    /// assert_eq!(buf, b"one");
    /// assert_eq!(rx.recv_frame(&mut buf)?, 2);
    /// assert!(buf.is_empty());
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn send_frame(&mut self, tag: u64, bytes: &[u8]) -> Result<(), Error> {
        self.send_in(bytes.len(), Wait::Until(None), copy_frame(tag, bytes))
            .map(drop)
    }

    /// Sends a copy of `bytes` as one frame with `tag`, waiting at most
    /// `timeout` for room.
    ///
    /// # Errors
    ///
    /// As for [`send_frame_with_timeout`](Self::send_frame_with_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// tx.send_frame_timeout(0, &[0; 4000], Duration::from_millis(10))?;
    /// let again = tx.send_frame_timeout(0, &[0; 4000], Duration::from_millis(10));
    /// assert_eq!(again, Err(fdring::Error::Timeout));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn send_frame_timeout(
        &mut self,
        tag: u64,
        bytes: &[u8],
        timeout: Duration,
    ) -> Result<(), Error> {
        self.send_in(bytes.len(), Wait::timeout(timeout), copy_frame(tag, bytes))
            .map(drop)
    }

    /// Lends every free byte of the ring (at least room for a frame of
    /// `len` bytes) to `fill` as a [`FrameBatch`], into which it writes
    /// frames one after the other; when it returns, every frame it wrote is
    /// published at once, with one store of the write index. Returns how
    /// many frames were sent. Does not wait.
    ///
    /// `len` is what to wait for, not a limit: a frame of up to `len` bytes
    /// pushed first always fits, and the batch takes frames of any length
    /// as long as they fit (see [`FrameBatch::room`]). Frames sent so are
    /// received as any others: one at a time, or several at once with
    /// [`FrameReceiver::recv_frames_with`].
    ///
    /// # Errors
    ///
    /// As for [`try_send_frame_with`](Self::try_send_frame_with): `Full` if
    /// there is no room for a frame of `len` bytes now (`fill` is not
    /// called); `FrameTooLarge` if `len` is above
    /// [`max_frame_len`](Self::max_frame_len).
    ///
    /// # Panics
    ///
    /// If `fill` panics, or a frame's closure returns more than its `len`:
    /// then nothing of the batch is published.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// let sent = tx.try_send_frames_with(4, |batch| {
    ///     for word in [b"one ", b"two ", b"six "] {
    ///         batch.push(0, word);
    ///     }
    /// })?;
    /// assert_eq!(sent, 3);
    /// let mut buf = Vec::new();
    /// rx.try_recv_frames_with(|frames| frames.map(|f| buf.extend_from_slice(&f)).count())?;
    /// assert_eq!(buf, b"one two six ");
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_send_frames_with<F>(&mut self, len: usize, fill: F) -> Result<usize, Error>
    where
        F: FnOnce(&mut FrameBatch<'_>),
    {
        self.send_batch_in(len, Wait::Never, fill)
    }

    /// Like [`try_send_frames_with`](Self::try_send_frames_with), but waits
    /// until there is room for a frame of `len` bytes.
    ///
    /// # Errors
    ///
    /// As for [`send_frame_with`](Self::send_frame_with).
    ///
    /// # Panics
    ///
    /// As for `try_send_frames_with`.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// let producer = std::thread::spawn(move || -> Result<(), fdring::Error> {
    ///     let mut next = 0u64;
    ///     while next < 1000 {
    ///         // Waits for room for one frame, then fills what there is.
    ///         tx.send_frames_with(8, |batch| {
    ///             while next < 1000 && batch.push(next, &next.to_le_bytes()) {
    ///                 next += 1;
    ///             }
    ///         })?;
    ///     }
    ///     Ok(())
    /// });
    /// let mut expected = 0u64;
    /// while expected < 1000 {
    ///     rx.recv_frames_with(|frames| {
    ///         frames
    ///             .inspect(|frame| {
    ///                 assert_eq!(frame.tag(), expected);
    ///                 expected += 1;
    ///             })
    ///             .count()
    ///     })?;
    /// }
    /// producer.join().unwrap()?;
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn send_frames_with<F>(&mut self, len: usize, fill: F) -> Result<usize, Error>
    where
        F: FnOnce(&mut FrameBatch<'_>),
    {
        self.send_batch_in(len, Wait::Until(None), fill)
    }

    /// Like [`send_frames_with`](Self::send_frames_with), but gives up
    /// after `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` if there was no room for a frame of `len` bytes in time,
    /// and as for `send_frames_with`.
    ///
    /// # Panics
    ///
    /// As for `try_send_frames_with`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// tx.send_frame(0, &[1; 3000])?;
    /// // Nobody receives: there is no room for a 2000-byte frame.
    /// let waited = tx.send_frames_with_timeout(2000, Duration::from_millis(10), |_| ());
    /// assert_eq!(waited, Err(fdring::Error::Timeout));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn send_frames_with_timeout<F>(
        &mut self,
        len: usize,
        timeout: Duration,
        fill: F,
    ) -> Result<usize, Error>
    where
        F: FnOnce(&mut FrameBatch<'_>),
    {
        self.send_batch_in(len, Wait::timeout(timeout), fill)
    }

    /// Sends copies of as many of `frames` (each a tag and its bytes) as
    /// there is room for now, in order, with one publish, and returns how
    /// many. Does not wait.
    ///
    /// # Errors
    ///
    /// As for [`try_send_frames_with`](Self::try_send_frames_with); `Full`
    /// only if not even the first frame fits. `FrameTooLarge` if any of
    /// the frames could never fit: then none is sent. An empty `frames`
    /// returns `Ok(0)`.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// let frames: Vec<(u64, &[u8])> = vec![(1, b"one"), (2, b"two"), (3, &[0; 4050])];
    /// // The third does not fit after the first two: it stays for later.
    /// assert_eq!(tx.try_send_frames(&frames)?, 2);
    /// let mut tags = Vec::new();
    /// rx.try_recv_frames_with(|frames| frames.map(|f| tags.push(f.tag())).count())?;
    /// assert_eq!(tags, [1, 2]);
    /// assert_eq!(tx.try_send_frames(&frames[2..])?, 1);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_send_frames(&mut self, frames: &[(u64, &[u8])]) -> Result<usize, Error> {
        let Some(first) = frames.first() else {
            return Ok(0);
        };
        self.check_lens(frames)?;
        self.send_batch_in(first.1.len(), Wait::Never, copy_frames(frames))
    }

    /// Sends copies of all of `frames` (each a tag and its bytes), in
    /// order, waiting for room as often as needed; every wait is for the
    /// next frame only, and each time there is room as many frames as fit
    /// are published at once.
    ///
    /// # Errors
    ///
    /// As for [`send_frames_with`](Self::send_frames_with); on error, the
    /// frames before some point may have been sent. `FrameTooLarge` if any
    /// of the frames could never fit: then none is sent.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// let payloads: Vec<Vec<u8>> = (0..200u8).map(|n| vec![n; 50]).collect();
    /// let frames: Vec<(u64, &[u8])> = payloads.iter().map(|p| (p[0] as u64, &p[..])).collect();
    /// let consumer = std::thread::spawn(move || {
    ///     let mut tags = Vec::new();
    ///     while tags.len() < 200 {
    ///         rx.recv_frames_with(|frames| frames.map(|f| tags.push(f.tag())).count())
    ///             .unwrap();
    ///     }
    ///     tags
    /// });
    /// tx.send_frames(&frames)?; // 200 records of 80 bytes: more than the ring holds
    /// assert_eq!(consumer.join().unwrap(), (0..200).collect::<Vec<u64>>());
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn send_frames(&mut self, mut frames: &[(u64, &[u8])]) -> Result<(), Error> {
        self.check_lens(frames)?;
        while let Some(first) = frames.first() {
            let sent = self.send_batch_in(first.1.len(), Wait::Until(None), copy_frames(frames))?;
            frames = &frames[sent..];
        }
        Ok(())
    }

    /// `FrameTooLarge` for the first of `frames` that could never fit.
    fn check_lens(&self, frames: &[(u64, &[u8])]) -> Result<(), Error> {
        match frames
            .iter()
            .find(|(_, bytes)| bytes.len() > self.max_frame_len)
        {
            Some((_, bytes)) => Err(too_large(bytes.len(), self.max_frame_len)),
            None => Ok(()),
        }
    }

    /// Reserves a frame of `len` payload bytes in the ring, if there is
    /// room now, and lends its payload in place: [`Lent::ptr`] is the first
    /// of `len` writable bytes (aligned to [`align`](Self::align), holding
    /// whatever was there). Write the payload, then
    /// [`commit_frame`](Self::commit_frame) it. This is the closure call
    /// [`try_send_frame_with`](Self::try_send_frame_with) in two steps,
    /// for callers that cannot pass a closure (the C library).
    ///
    /// The reservation holds until the commit; any other send on this end,
    /// a new reserve, or [`close`](Self::close) drops it (nothing is
    /// published), and the pointer must not be used after that. Nothing
    /// is published before the commit.
    ///
    /// # Errors
    ///
    /// As for [`try_send_frame_with`](Self::try_send_frame_with): `Full`,
    /// `FrameTooLarge`, `Disconnected`, `Corrupted`, `Exhausted(Indices)`.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// let lent = tx.try_reserve_frame(5)?;
    /// assert_eq!(lent.len, 5);
    /// // SAFETY: 5 writable bytes are lent until the commit.
    /// unsafe { lent.ptr.copy_from_nonoverlapping(b"hello".as_ptr(), 5) };
    /// tx.commit_frame(5, 7)?;
    /// rx.recv_frame_with(|frame| assert_eq!((frame.tag(), &frame[..]), (7, &b"hello"[..])))?;
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_reserve_frame(&mut self, len: usize) -> Result<Lent, Error> {
        self.reserve_in(len, Wait::Never)
    }

    /// Like [`try_reserve_frame`](Self::try_reserve_frame), but waits
    /// until a frame of `len` bytes fits.
    ///
    /// # Errors
    ///
    /// As for [`send_frame_with`](Self::send_frame_with).
    pub fn reserve_frame(&mut self, len: usize) -> Result<Lent, Error> {
        self.reserve_in(len, Wait::Until(None))
    }

    /// Like [`reserve_frame`](Self::reserve_frame), but gives up after
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout`, and as for [`send_frame_with`](Self::send_frame_with).
    pub fn reserve_frame_timeout(&mut self, len: usize, timeout: Duration) -> Result<Lent, Error> {
        self.reserve_in(len, Wait::timeout(timeout))
    }

    /// Publishes the reserved frame with its first `len` payload bytes
    /// (at most the reserved length) and `tag`, and wakes the receiver if
    /// it sleeps.
    ///
    /// # Errors
    ///
    /// `OverCommit` if no frame is reserved (never, or dropped by another
    /// send) or `len` is more than was reserved; the reservation, if any,
    /// stays.
    ///
    /// ```
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// tx.try_reserve_frame(8)?;
    /// assert_eq!(tx.commit_frame(9, 0), Err(fdring::Error::OverCommit { count: 9, lent: 8 }));
    /// tx.commit_frame(3, 0)?;
    /// assert_eq!(tx.commit_frame(3, 0), Err(fdring::Error::OverCommit { count: 3, lent: 0 }));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn commit_frame(&mut self, len: usize, tag: u64) -> Result<(), Error> {
        let reserved = match self.reserved {
            Some(reserved) if len <= reserved.len => reserved,
            other => {
                return Err(Error::OverCommit {
                    count: len as u64,
                    lent: other.map_or(0, |r| r.len as u64),
                })
            }
        };
        self.reserved = None;
        // SAFETY: the reservation's record lies in free bytes of the ring
        // that the channel lent this end (at least the record's worst-case
        // room), in the mapping the `Sender` owns; nothing was sent since
        // (every send drops the reservation), so they are still free and
        // unpublished. Its first `payload_at` bytes are the header and the
        // padding before the payload. A hostile receiver could store into
        // them meanwhile: every byte is a valid `u8`, and the header is
        // written here, after anything it stored.
        let head = unsafe { std::slice::from_raw_parts_mut(reserved.record, reserved.payload_at) };
        let record = seal_record(head, reserved.payload_at, len, tag);
        self.tx.publish(record);
        self.stats.frames += 1;
        self.stats.bytes += len as u64;
        Ok(())
    }

    /// Reserves a frame of `len` bytes, waiting as `wait` says.
    fn reserve_in(&mut self, len: usize, wait: Wait) -> Result<Lent, Error> {
        self.reserved = None;
        if len > self.max_frame_len {
            return Err(too_large(len, self.max_frame_len));
        }
        let room = record_room(len, self.align);
        let lent = match self.tx.lend_min(room, room, wait) {
            Err(Error::Full) => {
                self.refused_len = len;
                return Err(Error::Full);
            }
            other => other?,
        };
        // SAFETY: the channel lent `lent.len` free bytes from `lent.ptr`,
        // in the mapping; as `MaybeUninit<u8>` they make no claim about
        // what a hostile receiver may have stored in them.
        let free =
            unsafe { std::slice::from_raw_parts(lent.ptr.cast::<MaybeUninit<u8>>(), lent.len) };
        let payload_at = match place_record(free, len, self.align) {
            Ok(payload_at) => payload_at,
            Err(Attempt::Misaligned) => return Err(misaligned()),
            // The channel lent at least the record's worst-case room.
            Err(_) => {
                self.refused_len = len;
                return Err(Error::Full);
            }
        };
        self.reserved = Some(Reserved {
            record: lent.ptr,
            payload_at,
            len,
        });
        Ok(Lent {
            // SAFETY: `payload_at + len` is within the lent bytes
            // (`place_record` checked it).
            ptr: unsafe { lent.ptr.add(payload_at) },
            len,
        })
    }

    /// Lends the free bytes as a batch once a frame of `len` bytes fits,
    /// waiting as `wait` says, and publishes what `fill` wrote into it.
    fn send_batch_in<F>(&mut self, len: usize, wait: Wait, fill: F) -> Result<usize, Error>
    where
        F: FnOnce(&mut FrameBatch<'_>),
    {
        self.reserved = None;
        if len > self.max_frame_len {
            return Err(too_large(len, self.max_frame_len));
        }
        let align = self.align;
        // (frames, payload bytes) written, or `None` if the free bytes did
        // not start on a record boundary.
        let mut written = None;
        let write = |free: &mut [MaybeUninit<u8>]| {
            if !on_record_boundary(free) {
                return 0;
            }
            let mut batch = FrameBatch {
                free,
                used: 0,
                align,
                frames: 0,
                bytes: 0,
            };
            fill(&mut batch);
            written = Some((batch.frames, batch.bytes));
            batch.used
        };
        // The channel lends at least the worst-case record of `len` bytes,
        // so a first frame of up to `len` bytes fits; and every free byte
        // (the receiver's index is reloaded once per batch), so that a batch
        // gets all the room there is.
        match self
            .tx
            .send_with_min(usize::MAX, record_room(len, align), wait, write)
        {
            Ok(_) => {
                let (frames, bytes) = written.ok_or_else(misaligned)?;
                self.stats.frames += frames;
                self.stats.bytes += bytes;
                Ok(frames as usize)
            }
            Err(Error::Full) => {
                self.refused_len = len;
                Err(Error::Full)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes a frame of `len` bytes through `fill` as soon as there is
    /// room, waiting as `wait` says.
    fn send_in<F>(&mut self, len: usize, wait: Wait, fill: F) -> Result<usize, Error>
    where
        F: FnOnce(&mut FrameMut<'_>) -> usize,
    {
        self.reserved = None;
        if len > self.max_frame_len {
            return Err(too_large(len, self.max_frame_len));
        }
        let align = self.align;
        let mut attempt = Attempt::NoRoom;
        let write = |free: &mut [MaybeUninit<u8>]| {
            attempt = write_record(free, len, align, fill);
            attempt.record()
        };
        let room = record_room(len, align);
        let sent = self.tx.send_with_min(room, room, wait, write);
        match (sent, attempt) {
            (Ok(_), Attempt::Sent { committed, .. }) => {
                self.stats.frames += 1;
                self.stats.bytes += committed as u64;
                Ok(committed)
            }
            (Ok(_), Attempt::Misaligned) => Err(misaligned()),
            // Too few free bytes for the record (the channel's `Full`), or
            // its room taken by padding: arm for this frame if it comes to
            // waiting in an event loop.
            (Ok(_), Attempt::NoRoom) | (Err(Error::Full), _) => {
                self.refused_len = len;
                Err(Error::Full)
            }
            (Err(e), _) => Err(e),
        }
    }
}

/// The closure of the copying sends.
fn copy_frame(tag: u64, bytes: &[u8]) -> impl FnOnce(&mut FrameMut<'_>) -> usize + '_ {
    move |frame| {
        frame.copy_from_slice(bytes);
        frame.set_tag(tag);
        bytes.len()
    }
}

/// The closure of the copying batched sends: as many of `frames` as fit.
fn copy_frames<'f>(frames: &'f [(u64, &'f [u8])]) -> impl FnOnce(&mut FrameBatch<'_>) + 'f {
    move |batch| {
        for (tag, bytes) in frames {
            if !batch.push(*tag, bytes) {
                break;
            }
        }
    }
}

/// Whether `free` (free bytes of the ring, from the write position on)
/// starts on a record boundary, as it does unless the ring was written
/// outside of frames.
fn on_record_boundary(free: &[MaybeUninit<u8>]) -> bool {
    free.as_ptr() as usize % RECORD_ALIGN == 0
}

/// Writes a frame of `len` payload bytes at the start of `free` (free
/// bytes of the ring, from the write position on) through `fill`, if it
/// fits; says what happened, and how many bytes the record takes. Nothing
/// is published here: the caller publishes the record (alone, or with the
/// records of a batch).
#[inline]
fn write_record<F>(free: &mut [MaybeUninit<u8>], len: usize, align: usize, fill: F) -> Attempt
where
    F: FnOnce(&mut FrameMut<'_>) -> usize,
{
    let payload_at = match place_record(free, len, align) {
        Ok(payload_at) => payload_at,
        Err(attempt) => return attempt,
    };
    let record = &mut free[..payload_at + len];
    // SAFETY: `record` is free bytes of the ring (the header, the padding
    // and the `len` payload bytes), inside the mapping, that the channel
    // lent this end to write (the receiver does not read them until they
    // are published). `MaybeUninit<u8>` and `u8` have the same layout. The
    // bytes are initialised: they are bytes of a `MAP_SHARED` mapping of a
    // memfd, which the kernel fills with zeros where nothing was written,
    // and which either side can only ever store bytes into; `u8` has no
    // invalid values. A hostile receiver could store into them while
    // `fill` writes; the values then change under `fill`, but every access
    // stays inside the mapping and every byte is a valid `u8`.
    let record =
        unsafe { std::slice::from_raw_parts_mut(record.as_mut_ptr().cast::<u8>(), record.len()) };
    let (head, payload) = record.split_at_mut(payload_at);
    let mut frame = FrameMut {
        bytes: payload,
        tag: 0,
    };
    let committed = fill(&mut frame);
    assert!(
        committed <= len,
        "the closure said it wrote {committed} bytes into a frame of {len}"
    );
    Attempt::Sent {
        committed,
        record: seal_record(head, payload_at, committed, frame.tag),
    }
}

/// Where a record of `len` payload bytes written at the start of `free`
/// (free bytes of the ring, from the write position on) has its payload,
/// if it fits; otherwise what the attempt came to.
#[inline(always)]
fn place_record(free: &[MaybeUninit<u8>], len: usize, align: usize) -> Result<usize, Attempt> {
    // The data region is page-aligned and a whole number of pages (and so
    // is its mirror), so addresses and stream offsets agree modulo any
    // alignment up to a page: padding computed from the address aligns
    // the payload in memory, and the receiver, at the same offset, finds
    // the same address modulo `align`.
    if !on_record_boundary(free) {
        return Err(Attempt::Misaligned);
    }
    let payload_at = payload_offset(free, align);
    if payload_at + round_up(len, RECORD_ALIGN) > free.len() {
        return Err(Attempt::NoRoom);
    }
    Ok(payload_at)
}

/// Writes the header of a record whose payload, of `committed` bytes,
/// starts `payload_at` bytes into it, into `head` (its first
/// `payload_at` bytes); returns how many bytes the record takes.
#[inline(always)]
fn seal_record(head: &mut [u8], payload_at: usize, committed: usize, tag: u64) -> usize {
    // The header as three native words, `gap` and `marker` sharing the
    // last, stored with one copy: three stores (with small frames, every
    // store the producer makes counts).
    let (gap, marker) = ((payload_at - HEADER) as u64, u64::from(MARKER));
    let gap_and_marker = if cfg!(target_endian = "little") {
        gap | marker << 32
    } else {
        gap << 32 | marker
    };
    let mut header = [0u8; HEADER];
    header[0..8].copy_from_slice(&(committed as u64).to_ne_bytes());
    header[8..16].copy_from_slice(&tag.to_ne_bytes());
    header[16..24].copy_from_slice(&gap_and_marker.to_ne_bytes());
    head[..HEADER].copy_from_slice(&header);
    // The padding after the payload is published too (its bytes are
    // whatever was there), so that the next record starts on a multiple
    // of 8.
    round_up(payload_at + committed, RECORD_ALIGN)
}

/// Where the payload of a record written at the start of `free` begins:
/// after the header and the padding that aligns it to `align`.
fn payload_offset(free: &[MaybeUninit<u8>], align: usize) -> usize {
    let at = free.as_ptr() as usize;
    round_up(at + HEADER, align) - at
}

impl fmt::Debug for FrameSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameSender")
            .field("tx", &self.tx)
            .field("align", &self.align)
            .field("max_frame_len", &self.max_frame_len)
            .field("refused_len", &self.refused_len)
            .field("stats", &self.stats)
            .finish()
    }
}

impl AsFd for FrameSender {
    /// The ring's wake-up socket; see [`FrameSender::prepare_wait`].
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tx.as_fd()
    }
}
