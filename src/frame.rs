//! Frames: variable-length messages written and read in place in a ring
//! of bytes, for audio periods and video frames.
//!
//! This module owns the frame layer: [`FrameSender`] and [`FrameReceiver`]
//! over a [`Sender<u8>`] and a [`Receiver<u8>`], the frame header and its
//! validation, payload alignment, and latest-frame-wins. It builds on the
//! closure API of `channel` only (every free byte, or every ready byte, is
//! lent as one contiguous slice thanks to the mirrored mapping, so a frame
//! never breaks at the wrap); it knows nothing of indices, mappings or
//! wake-up sockets.
//!
//! # The records
//!
//! Each frame is one *record* in the byte stream (normative in
//! `docs/format.md`, section 8): a 24-byte header (`len: u64`, `tag: u64`,
//! `gap: u32`, `marker: u32`, native byte order), `gap` bytes of padding
//! so that the payload starts on the sender's alignment, the `len` payload
//! bytes, and padding up to a multiple of 8 bytes. Records start at stream
//! offsets that are multiples of 8, and the sender publishes each record
//! with a single publish, so whenever a byte is ready a whole record is.
//! The receiver copies each header out of shared memory once and checks it
//! (marker, gap, alignment, and that the record lies within the bytes
//! published) before it lends a byte of the payload: a hostile length is
//! `Error::Corrupted`, never an out-of-bounds slice.
//!
//! # Latest-frame-wins
//!
//! For video, where a fresh frame matters more than every frame, the sender
//! [offers](FrameSender::offer_frame_with) frames (never waiting: a frame
//! that does not fit now is dropped and counted) and the receiver asks for
//! the [latest](FrameReceiver::recv_latest_with) (it releases every older
//! frame unread and lends the newest). What that guarantees is stated on
//! [`FrameReceiver::recv_latest_with`].

use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use crate::channel::{Fds, Receiver, Sender, Stats, Wait};
use crate::error::{Corruption, Error};
use crate::Liveness;

/// Bytes of a frame header: `len` (u64), `tag` (u64), `gap` (u32) and
/// `marker` (u32).
const HEADER: usize = 24;

/// The `marker` of every frame header: the bytes `F R M 1` in memory
/// order. A record without it is not a frame (for instance bytes written
/// through `io::Write` into a frame ring).
const MARKER: u32 = u32::from_ne_bytes(*b"FRM1");

/// Records start at stream offsets that are multiples of this, and are a
/// multiple of it long.
const RECORD_ALIGN: usize = 8;

/// The payload alignment of [`FrameSender::new`] and [`FrameReceiver::new`].
const MIN_ALIGN: usize = 8;

/// The largest payload alignment: a cache line.
const MAX_ALIGN: usize = 64;

fn round_up(value: usize, align: usize) -> usize {
    value.next_multiple_of(align)
}

fn check_align(align: usize) {
    assert!(
        align.is_power_of_two() && (MIN_ALIGN..=MAX_ALIGN).contains(&align),
        "a frame alignment must be a power of two from {MIN_ALIGN} to {MAX_ALIGN}, not {align}"
    );
}

/// Counters kept by a frame end, next to its ring's [`Stats`].
///
/// ```
/// let (tx, rx) = fdring::channel::<u8>(4096)?;
/// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
/// tx.send_frame(7, b"hello")?;
/// rx.recv_frame_with(|frame| assert_eq!(&frame[..], b"hello"))?;
/// assert_eq!((tx.stats().frames, tx.stats().bytes), (1, 5));
/// assert_eq!((rx.stats().frames, rx.stats().bytes), (1, 5));
/// # Ok::<(), fdring::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrameStats {
    /// Frames committed (sender) or lent to a closure (receiver).
    pub frames: u64,
    /// Payload bytes of those frames.
    pub bytes: u64,
    /// Sender only: frames [`offer_frame_with`](FrameSender::offer_frame_with)
    /// dropped because they did not fit.
    pub dropped: u64,
    /// Receiver only: frames the `recv_latest` calls released without
    /// lending them.
    pub skipped: u64,
    /// The ring's counters (wake-ups sent, sleeps).
    pub ring: Stats,
}

// ---------------------------------------------------------------- sender

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

/// What one attempt to write a frame into the free bytes came to.
enum Attempt {
    /// The free bytes were too few; nothing was written.
    NoRoom,
    /// The frame was committed with this many payload bytes.
    Sent(usize),
    /// The free bytes did not start at a multiple of 8: the ring was
    /// written outside of frames.
    Misaligned,
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
    stats: FrameStats,
}

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
    /// of 8).
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
    /// `Disconnected`, `Corrupted`, `Io` as for `try_send_frame_with`
    /// (an oversized frame is refused at once, not waited for).
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

    /// Writes a frame of `len` bytes through `fill` as soon as there is
    /// room, waiting as `wait` says.
    fn send_in<F>(&mut self, len: usize, wait: Wait, fill: F) -> Result<usize, Error>
    where
        F: FnOnce(&mut FrameMut<'_>) -> usize,
    {
        if len > self.max_frame_len {
            return Err(too_large(len, self.max_frame_len));
        }
        let align = self.align;
        let mut fill = Some(fill);
        let mut tag = 0;
        let mut attempt = Attempt::NoRoom;
        let write = |free: &mut [MaybeUninit<u8>]| {
            write_frame(free, len, align, &mut fill, &mut attempt, &mut tag)
        };
        self.tx
            .send_with_min(record_room(len, align), wait, write)?;
        match attempt {
            Attempt::Sent(committed) => {
                self.stats.frames += 1;
                self.stats.bytes += committed as u64;
                Ok(committed)
            }
            Attempt::Misaligned => Err(misaligned()),
            Attempt::NoRoom => Err(Error::Full),
        }
    }
}

/// The free bytes a frame of `len` payload bytes needs wherever the write
/// position stands: the header, the most alignment padding there can be,
/// and the payload rounded to a record boundary.
fn record_room(len: usize, align: usize) -> usize {
    HEADER + align - RECORD_ALIGN + round_up(len, RECORD_ALIGN)
}

/// The closure of the copying sends.
fn copy_frame(tag: u64, bytes: &[u8]) -> impl FnOnce(&mut FrameMut<'_>) -> usize + '_ {
    move |frame| {
        frame.copy_from_slice(bytes);
        frame.set_tag(tag);
        bytes.len()
    }
}

/// Writes a frame of `len` payload bytes into `free` (every free byte of
/// the ring, starting at the write position) through `fill`, if it fits;
/// returns the bytes to publish (0 if it does not fit) and says what
/// happened in `attempt`.
fn write_frame<F>(
    free: &mut [MaybeUninit<u8>],
    len: usize,
    align: usize,
    fill: &mut Option<F>,
    attempt: &mut Attempt,
    tag: &mut u64,
) -> usize
where
    F: FnOnce(&mut FrameMut<'_>) -> usize,
{
    // The data region is page-aligned and a whole number of pages (and so
    // is its mirror), so addresses and stream offsets agree modulo any
    // alignment up to a page: padding computed from the address aligns
    // the payload in memory, and the receiver, at the same offset, finds
    // the same address modulo `align`.
    let at = free.as_ptr() as usize;
    if at % RECORD_ALIGN != 0 {
        *attempt = Attempt::Misaligned;
        return 0;
    }
    let payload_at = round_up(at + HEADER, align) - at;
    if payload_at + round_up(len, RECORD_ALIGN) > free.len() {
        return 0;
    }
    let Some(fill) = fill.take() else {
        // Never reached: the closure is taken only by the attempt that
        // commits, which ends the send.
        return 0;
    };
    let payload = &mut free[payload_at..payload_at + len];
    // SAFETY: `payload` is `len` free bytes of the ring, inside the
    // mapping, that the channel lent this end to write (the receiver does
    // not read them until they are published). `MaybeUninit<u8>` and `u8`
    // have the same layout. The bytes are initialised: they are bytes of a
    // `MAP_SHARED` mapping of a memfd, which the kernel fills with zeros
    // where nothing was written, and which either side can only ever store
    // bytes into; `u8` has no invalid values. A hostile receiver could
    // store into them while `fill` writes; the values then change under
    // `fill`, but every access stays inside the mapping and every byte is a
    // valid `u8`.
    let bytes = unsafe { std::slice::from_raw_parts_mut(payload.as_mut_ptr().cast::<u8>(), len) };
    let mut frame = FrameMut { bytes, tag: 0 };
    let committed = fill(&mut frame);
    assert!(
        committed <= len,
        "the closure said it wrote {committed} bytes into a frame of {len}"
    );
    *tag = frame.tag;
    let mut header = [0u8; HEADER];
    header[0..8].copy_from_slice(&(committed as u64).to_ne_bytes());
    header[8..16].copy_from_slice(&frame.tag.to_ne_bytes());
    header[16..20].copy_from_slice(&((payload_at - HEADER) as u32).to_ne_bytes());
    header[20..24].copy_from_slice(&MARKER.to_ne_bytes());
    for (slot, byte) in free[..HEADER].iter_mut().zip(header) {
        slot.write(byte);
    }
    *attempt = Attempt::Sent(committed);
    // The padding after the payload is published too (its bytes are
    // whatever was there), so that the next record starts on a multiple
    // of 8.
    round_up(payload_at + committed, RECORD_ALIGN)
}

fn too_large(len: usize, max: usize) -> Error {
    Error::FrameTooLarge {
        len: len as u64,
        max: max as u64,
    }
}

fn misaligned() -> Error {
    Error::io(
        "the ring was written outside of frames: its stream does not stand on a multiple of 8",
        io::ErrorKind::InvalidInput,
    )
}

impl fmt::Debug for FrameSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameSender")
            .field("tx", &self.tx)
            .field("align", &self.align)
            .field("max_frame_len", &self.max_frame_len)
            .field("stats", &self.stats)
            .finish()
    }
}

// -------------------------------------------------------------- receiver

/// A frame received in place: its payload bytes in the ring, and its tag.
///
/// It dereferences to `[u8]`; view it as other plain data with bytemuck,
/// without copying (the payload is aligned as the receiver's
/// [`align`](FrameReceiver::align) says):
///
/// ```
/// let (tx, rx) = fdring::channel::<u8>(4096)?;
/// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
/// tx.send_frame(9, bytemuck::cast_slice(&[0.25f32, -0.25]))?;
/// let sum = rx.recv_frame_with(|frame| {
///     let samples: &[f32] = bytemuck::cast_slice(frame.bytes());
///     samples.iter().map(|s| s.abs()).sum::<f32>()
/// })?;
/// assert_eq!(sum, 0.5);
/// # Ok::<(), fdring::Error>(())
/// ```
///
/// If the sender misbehaves, it may write into these bytes while you read
/// them (the bytes stay valid and inside the ring, but may change): copy
/// out what you must check before relying on it.
#[derive(Clone, Copy)]
pub struct Frame<'a> {
    bytes: &'a [u8],
    tag: u64,
}

impl<'a> Frame<'a> {
    /// The frame's payload.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// tx.send_frame(0, b"payload")?;
    /// rx.recv_frame_with(|frame| assert_eq!(frame.bytes(), b"payload"))?;
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The tag it was sent with.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// tx.send_frame(0xf0a7, b"")?;
    /// assert_eq!(rx.recv_frame_with(|frame| frame.tag())?, 0xf0a7);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn tag(&self) -> u64 {
        self.tag
    }
}

impl Deref for Frame<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

impl fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("len", &self.bytes.len())
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// What was wrong with a record, found at `at` bytes into the ready bytes.
#[derive(Debug, Clone, Copy)]
struct Defect {
    at: usize,
    /// The stream offset the record claims to end at, relative to `at`;
    /// `None` when the header is not a frame header at all.
    claimed_end: Option<u64>,
}

/// Parses the record at the start of `ready` (ready bytes, starting at a
/// record boundary): the frame and the record's length in bytes.
///
/// The header is copied out of shared memory once, and only the copy is
/// used, so a peer changing it meanwhile cannot make the checks and the
/// slicing disagree.
fn parse(ready: &[u8], align: usize) -> Result<(Frame<'_>, usize), Option<u64>> {
    let bad_header = Err(None);
    if ready.as_ptr() as usize % RECORD_ALIGN != 0 {
        return bad_header;
    }
    let Some(header) = ready.get(..HEADER) else {
        // A record is published whole: a stream cut inside a header is not
        // a frame stream.
        return Err(Some(HEADER as u64));
    };
    let header: [u8; HEADER] = header.try_into().expect("a header-sized slice");
    let len = u64::from_ne_bytes(header[0..8].try_into().unwrap());
    let tag = u64::from_ne_bytes(header[8..16].try_into().unwrap());
    let gap = u32::from_ne_bytes(header[16..20].try_into().unwrap()) as usize;
    let marker = u32::from_ne_bytes(header[20..24].try_into().unwrap());
    if marker != MARKER || gap % RECORD_ALIGN != 0 || gap >= MAX_ALIGN {
        return bad_header;
    }
    let payload_at = HEADER + gap;
    if (ready.as_ptr() as usize + payload_at) % align != 0 {
        return bad_header;
    }
    // `payload_at < HEADER + MAX_ALIGN`: no overflow below. The length is
    // compared before anything is added to it.
    let room = ready.len().saturating_sub(payload_at) as u64;
    let claimed_end = || (payload_at as u64).saturating_add(len);
    if len > room {
        return Err(Some(claimed_end()));
    }
    let len = len as usize;
    let record = round_up(payload_at + len, RECORD_ALIGN);
    if record > ready.len() {
        return Err(Some(record as u64));
    }
    let frame = Frame {
        bytes: &ready[payload_at..payload_at + len],
        tag,
    };
    Ok((frame, record))
}

/// The receiving end of a ring of frames: a [`Receiver<u8>`] that lends
/// each frame in place as one contiguous `&[u8]`, and releases it when the
/// closure returns.
///
/// ```
/// let (tx, rx) = fdring::channel::<u8>(64 * 1024)?;
/// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
/// std::thread::spawn(move || {
///     for n in 0..100u64 {
///         tx.send_frame(n, &vec![n as u8; n as usize]).unwrap();
///     }
/// });
/// for n in 0..100u64 {
///     rx.recv_frame_with(|frame| {
///         assert_eq!(frame.tag(), n);
///         assert!(frame.len() == n as usize && frame.iter().all(|&b| b == n as u8));
///     })?;
/// }
/// # Ok::<(), fdring::Error>(())
/// ```
///
/// # Validation
///
/// Every header is copied out of shared memory once and checked before a
/// byte of its payload is lent: its marker, its padding, the payload's
/// alignment, and that the whole record lies within the bytes the sender
/// published. A record that fails is the sender breaking the protocol:
/// `Corrupted`, from then on on every call, and nothing is released.
/// The error is [`Corruption::BadFrame`], naming the record's stream
/// offset, where it claims to end (if it is a frame header at all), and
/// the bytes published from there on.
///
/// ```
/// use std::io::Write;
/// let (mut tx, rx) = fdring::channel::<u8>(4096)?;
/// let mut rx = fdring::FrameReceiver::new(rx);
/// // A peer writing raw bytes into a frame ring breaks the protocol.
/// tx.write_all(&[0xff; 64]).unwrap();
/// assert!(matches!(rx.try_recv_frame_with(|_| ()), Err(fdring::Error::Corrupted(_))));
/// # Ok::<(), fdring::Error>(())
/// ```
pub struct FrameReceiver {
    rx: Receiver<u8>,
    align: usize,
    /// Bytes this end has released: the stream offset of the next record,
    /// counted from where it started (for error reports only).
    position: u64,
    corrupted: Option<Corruption>,
    stats: FrameStats,
}

impl FrameReceiver {
    /// A frame receiver over `rx` that requires payloads aligned to 8
    /// bytes (every sender's are).
    ///
    /// `rx` should be fresh, or have received frames only.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let rx = fdring::FrameReceiver::new(rx);
    /// assert_eq!(rx.align(), 8);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn new(rx: Receiver<u8>) -> FrameReceiver {
        FrameReceiver::with_align(rx, MIN_ALIGN)
    }

    /// A frame receiver over `rx` that requires payloads aligned to `align`
    /// bytes (8, 16, 32 or 64), as its sender's
    /// [`FrameSender::with_align`] gives them. A frame aligned less is
    /// `Corrupted`: the two ends must agree.
    ///
    /// # Panics
    ///
    /// If `align` is not a power of two from 8 to 64.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::with_align(tx, 64);
    /// let mut rx = fdring::FrameReceiver::with_align(rx, 64);
    /// tx.send_frame(0, &[7; 100])?;
    /// rx.recv_frame_with(|frame| assert_eq!(frame.as_ptr() as usize % 64, 0))?;
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn with_align(rx: Receiver<u8>, align: usize) -> FrameReceiver {
        check_align(align);
        FrameReceiver {
            rx,
            align,
            position: 0,
            corrupted: None,
            stats: FrameStats::default(),
        }
    }

    /// The payload alignment this end requires.
    ///
    /// ```
    /// let (_tx, rx) = fdring::channel::<u8>(4096)?;
    /// assert_eq!(fdring::FrameReceiver::with_align(rx, 64).align(), 64);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn align(&self) -> usize {
        self.align
    }

    /// The ring's capacity in bytes.
    ///
    /// ```
    /// let (_tx, rx) = fdring::channel::<u8>(4096)?;
    /// assert_eq!(fdring::FrameReceiver::new(rx).capacity(), 4096);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.rx.capacity()
    }

    /// This end's counters.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// tx.send_frame(0, b"one")?;
    /// tx.send_frame(1, b"two")?;
    /// rx.recv_latest_with(|_| ())?;
    /// assert_eq!((rx.stats().frames, rx.stats().skipped), (1, 1));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn stats(&self) -> FrameStats {
        FrameStats {
            ring: self.rx.stats(),
            ..self.stats
        }
    }

    /// Watches the sender's process; see [`Receiver::watch_peer`].
    ///
    /// ```
    /// let (_tx, rx) = fdring::channel::<u8>(4096)?;
    /// let mut rx = fdring::FrameReceiver::new(rx);
    /// let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    /// rx.watch_peer(fdring::Liveness::socket(ours));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn watch_peer(&mut self, liveness: Liveness) {
        self.rx.watch_peer(liveness);
    }

    /// Gives up this end as fds; see [`Receiver::into_fds`].
    ///
    /// # Errors
    ///
    /// `Io` if the fds cannot be duplicated (out of fds).
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let fds = fdring::FrameReceiver::new(rx).into_fds()?;
    /// // ... in another process:
    /// let rx = fdring::FrameReceiver::new(fdring::Receiver::<u8>::from_fds(fds)?);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn into_fds(self) -> Result<Fds, Error> {
        self.rx.into_fds()
    }

    /// Prepares to wait on this end's fd in your own event loop, after a
    /// `try_` call returned `Empty`; see [`Receiver::prepare_wait`]. The
    /// sender publishes whole frames, so "a byte is ready" is "a frame is
    /// ready".
    ///
    /// # Errors
    ///
    /// `Io` if the wake-up socket cannot be drained.
    ///
    /// ```
    /// use rustix::event::{poll, PollFd, PollFlags};
    ///
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// std::thread::spawn(move || tx.send_frame(5, b"late"));
    /// loop {
    ///     match rx.try_recv_frame_with(|frame| frame.tag()) {
    ///         Ok(tag) => break assert_eq!(tag, 5),
    ///         Err(fdring::Error::Empty) => {
    ///             if rx.prepare_wait()? {
    ///                 poll(&mut [PollFd::new(&rx, PollFlags::IN)], None).unwrap();
    ///             }
    ///         }
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn prepare_wait(&mut self) -> Result<bool, Error> {
        self.rx.prepare_wait()
    }

    /// Lends the next frame, in place, to `consume`, then releases it, and
    /// returns what `consume` returned. Does not wait.
    ///
    /// # Errors
    ///
    /// `Empty` if no frame is ready (`consume` is not called),
    /// `Disconnected` if none is and the sender is gone, `Corrupted` if the
    /// sender broke the protocol, a bad frame header included (see
    /// [Validation](FrameReceiver#validation)).
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// assert_eq!(rx.try_recv_frame_with(|f| f.len()), Err(fdring::Error::Empty));
    /// tx.send_frame(3, b"abc")?;
    /// assert_eq!(rx.try_recv_frame_with(|f| (f.tag(), f.len()))?, (3, 3));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_recv_frame_with<R, F>(&mut self, consume: F) -> Result<R, Error>
    where
        F: FnOnce(Frame<'_>) -> R,
    {
        self.recv_in(Wait::Never, consume)
    }

    /// Like [`try_recv_frame_with`](Self::try_recv_frame_with), but waits
    /// for a frame.
    ///
    /// # Errors
    ///
    /// `Disconnected` once every frame was received and the sender is gone,
    /// `Corrupted`, or `Io` if waiting failed.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// std::thread::spawn(move || tx.send_frame(1, b"hi"));
    /// assert_eq!(rx.recv_frame_with(|frame| frame.to_vec())?, b"hi");
    /// // The sender is gone once it has sent its frame.
    /// assert_eq!(rx.recv_frame_with(|frame| frame.len()), Err(fdring::Error::Disconnected));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn recv_frame_with<R, F>(&mut self, consume: F) -> Result<R, Error>
    where
        F: FnOnce(Frame<'_>) -> R,
    {
        self.recv_in(Wait::Until(None), consume)
    }

    /// Like [`recv_frame_with`](Self::recv_frame_with), but gives up after
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` if no frame came in time, and as for `recv_frame_with`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_tx, rx) = fdring::channel::<u8>(4096)?;
    /// let mut rx = fdring::FrameReceiver::new(rx);
    /// let got = rx.recv_frame_with_timeout(Duration::from_millis(10), |frame| frame.len());
    /// assert_eq!(got, Err(fdring::Error::Timeout));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn recv_frame_with_timeout<R, F>(
        &mut self,
        timeout: Duration,
        consume: F,
    ) -> Result<R, Error>
    where
        F: FnOnce(Frame<'_>) -> R,
    {
        self.recv_in(Wait::timeout(timeout), consume)
    }

    /// Receives a copy of the next frame into `buf` (replacing its
    /// contents; it allocates only if `buf` is too small) and returns its
    /// tag. Does not wait.
    ///
    /// # Errors
    ///
    /// As for [`try_recv_frame_with`](Self::try_recv_frame_with).
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// let mut buf = Vec::with_capacity(4096);
    /// assert_eq!(rx.try_recv_frame(&mut buf), Err(fdring::Error::Empty));
    /// tx.send_frame(2, b"copy")?;
    /// assert_eq!(rx.try_recv_frame(&mut buf)?, 2);
    /// assert_eq!(buf, b"copy");
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_recv_frame(&mut self, buf: &mut Vec<u8>) -> Result<u64, Error> {
        self.recv_in(Wait::Never, copy_out(buf))
    }

    /// Receives a copy of the next frame into `buf`, waiting for one, and
    /// returns its tag.
    ///
    /// # Errors
    ///
    /// As for [`recv_frame_with`](Self::recv_frame_with).
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// std::thread::spawn(move || tx.send_frame(4, b"kept"));
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.recv_frame(&mut buf)?, 4);
    /// assert_eq!(buf, b"kept");
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn recv_frame(&mut self, buf: &mut Vec<u8>) -> Result<u64, Error> {
        self.recv_in(Wait::Until(None), copy_out(buf))
    }

    /// Receives a copy of the next frame into `buf`, waiting at most
    /// `timeout`, and returns its tag.
    ///
    /// # Errors
    ///
    /// As for [`recv_frame_with_timeout`](Self::recv_frame_with_timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// tx.send_frame(3, b"abc")?;
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.recv_frame_timeout(&mut buf, Duration::from_secs(1))?, 3);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn recv_frame_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<u64, Error> {
        self.recv_in(Wait::timeout(timeout), copy_out(buf))
    }

    /// Latest-frame-wins: releases, unread, every ready frame but the
    /// newest, lends the newest in place to `consume`, then releases it
    /// too, and returns what `consume` returned. Does not wait.
    ///
    /// # What is guaranteed
    ///
    /// - **No torn frame.** A frame is lent only once the sender has
    ///   committed it, and an honest sender writes only into bytes this end
    ///   has released, so the bytes lent are exactly the bytes committed,
    ///   unchanged while lent.
    /// - **The newest.** The call loads the sender's position once; the
    ///   frame lent is the newest frame committed before that load. Frames
    ///   committed after it are left for the next call.
    /// - **Order, once.** Frames are lent in the order they were committed
    ///   (with `recv_frame_with` calls mixed in, too); none is lent twice.
    ///   The frames released unread are counted in
    ///   [`FrameStats::skipped`].
    /// - **Room first.** The older frames are released *before* `consume`
    ///   runs, so the sender can commit new frames while you look at this
    ///   one; when `consume` returns, every frame committed before the load
    ///   is released.
    /// - **Freshness.** If the ring has room for at least two frames
    ///   ([`FrameSender::capacity_for`]), and the sender offers a frame after
    ///   a call released the older frames, then the next call lends a frame
    ///   committed after that earlier call loaded the position: however slow
    ///   the receiver, what it shows is at most one of its own iterations
    ///   old. (With room for one frame only, the sender's offers fail while
    ///   `consume` holds the frame, and the next frame can be as old as the
    ///   receiver's stall.)
    /// - **A sender that offers never blocks:** see
    ///   [`FrameSender::offer_frame_with`]. It drops a frame only while the
    ///   ring holds frames the receiver has not released.
    ///
    /// Not guaranteed: that every frame is seen (that is the point), or
    /// that the frame lent is the newest the sender has *made*: a frame it
    /// dropped because the ring was full never reaches the ring.
    ///
    /// # Errors
    ///
    /// As for [`try_recv_frame_with`](Self::try_recv_frame_with). A bad
    /// header among the frames skipped is `Corrupted` too, and nothing is
    /// released.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// for n in 1..=5u64 {
    ///     tx.send_frame(n, &n.to_le_bytes())?;
    /// }
    /// assert_eq!(rx.try_recv_latest_with(|frame| frame.tag())?, 5);
    /// assert_eq!(rx.stats().skipped, 4);
    /// assert_eq!(rx.try_recv_latest_with(|frame| frame.tag()), Err(fdring::Error::Empty));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_recv_latest_with<R, F>(&mut self, consume: F) -> Result<R, Error>
    where
        F: FnOnce(Frame<'_>) -> R,
    {
        self.latest_in(Wait::Never, consume)
    }

    /// Like [`try_recv_latest_with`](Self::try_recv_latest_with) (and with
    /// the same guarantees), but waits until a frame is ready.
    ///
    /// # Errors
    ///
    /// As for [`recv_frame_with`](Self::recv_frame_with).
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4 * 4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// std::thread::spawn(move || {
    ///     for n in 0..1000u64 {
    ///         // Never waits: a frame that does not fit is dropped.
    ///         tx.offer_frame_with(1000, |frame| {
    ///             frame.set_tag(n);
    ///             frame.len()
    ///         })
    ///         .unwrap();
    ///     }
    /// });
    /// let mut last = None;
    /// while let Ok(n) = rx.recv_latest_with(|frame| frame.tag()) {
    ///     assert!(last < Some(n)); // newer every time
    ///     last = Some(n);
    /// }
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn recv_latest_with<R, F>(&mut self, consume: F) -> Result<R, Error>
    where
        F: FnOnce(Frame<'_>) -> R,
    {
        self.latest_in(Wait::Until(None), consume)
    }

    /// Like [`recv_latest_with`](Self::recv_latest_with), but gives up after
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` if no frame came in time, and as for `recv_frame_with`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_tx, rx) = fdring::channel::<u8>(4096)?;
    /// let mut rx = fdring::FrameReceiver::new(rx);
    /// let got = rx.recv_latest_with_timeout(Duration::from_millis(10), |frame| frame.tag());
    /// assert_eq!(got, Err(fdring::Error::Timeout));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn recv_latest_with_timeout<R, F>(
        &mut self,
        timeout: Duration,
        consume: F,
    ) -> Result<R, Error>
    where
        F: FnOnce(Frame<'_>) -> R,
    {
        self.latest_in(Wait::timeout(timeout), consume)
    }

    /// Lends the ready bytes (waiting as `wait` says) to `look`, which
    /// returns how many to release.
    fn lend<L>(&mut self, wait: Wait, look: L) -> Result<usize, Error>
    where
        L: FnOnce(&[u8]) -> usize,
    {
        self.lend_want(usize::MAX, wait, look)
    }

    fn lend_want<L>(&mut self, want: usize, wait: Wait, look: L) -> Result<usize, Error>
    where
        L: FnOnce(&[u8]) -> usize,
    {
        if let Some(corruption) = self.corrupted {
            return Err(Error::Corrupted(corruption));
        }
        let released = self.rx.recv_with_want(want, wait, look)?;
        self.position += released as u64;
        Ok(released)
    }

    /// Remembers a bad record for good and reports it.
    fn corrupt(&mut self, defect: Defect, ready: usize) -> Error {
        let corruption = Corruption::BadFrame {
            at: self.position + defect.at as u64,
            claimed_end: defect.claimed_end,
            ready: (ready - defect.at) as u64,
        };
        self.corrupted = Some(corruption);
        Error::Corrupted(corruption)
    }

    fn recv_in<R, F>(&mut self, wait: Wait, consume: F) -> Result<R, Error>
    where
        F: FnOnce(Frame<'_>) -> R,
    {
        let align = self.align;
        let mut out = None;
        let mut defect = None;
        let mut ready = 0;
        let mut lent = (0u64, 0u64);
        self.lend_want(1, wait, |bytes| {
            ready = bytes.len();
            match parse(bytes, align) {
                Ok((frame, record)) => {
                    lent = (1, frame.len() as u64);
                    out = Some(consume(frame));
                    record
                }
                Err(claimed_end) => {
                    defect = Some(Defect { at: 0, claimed_end });
                    0
                }
            }
        })?;
        if let Some(defect) = defect {
            return Err(self.corrupt(defect, ready));
        }
        self.stats.frames += lent.0;
        self.stats.bytes += lent.1;
        Ok(out.expect("a frame was lent"))
    }

    fn latest_in<R, F>(&mut self, wait: Wait, consume: F) -> Result<R, Error>
    where
        F: FnOnce(Frame<'_>) -> R,
    {
        let align = self.align;
        let mut consume = Some(consume);
        let mut out = None;
        let mut defect = None;
        let mut ready = 0;
        let mut skipped = 0u64;
        let mut lent = (0u64, 0u64);
        // Walk every ready record, validating each; lend the newest at once
        // if it is the only one, otherwise release those before it first.
        self.lend(wait, |bytes| {
            ready = bytes.len();
            let mut at = 0;
            let mut newest = None;
            let mut records = 0u64;
            while at < bytes.len() {
                match parse(&bytes[at..], align) {
                    Ok((frame, record)) => {
                        newest = Some((at, frame, record));
                        records += 1;
                        at += record;
                    }
                    Err(claimed_end) => {
                        defect = Some(Defect { at, claimed_end });
                        return 0;
                    }
                }
            }
            match newest {
                Some((0, frame, record)) => {
                    lent = (1, frame.len() as u64);
                    out = consume.take().map(|consume| consume(frame));
                    record
                }
                Some((newest_at, _, _)) => {
                    skipped = records - 1;
                    newest_at
                }
                // Not reached: the channel lends at least one byte, and a
                // byte that is not a whole record is a defect.
                None => 0,
            }
        })?;
        if let Some(defect) = defect {
            return Err(self.corrupt(defect, ready));
        }
        if let Some(out) = out {
            self.stats.frames += lent.0;
            self.stats.bytes += lent.1;
            return Ok(out);
        }
        self.stats.skipped += skipped;
        // The newest frame now starts the ready bytes: lend it. It was
        // published before the walk, so this does not wait; its header is
        // read and checked again, since the sender could have changed it.
        let consume = consume.expect("not consumed yet");
        self.recv_in(Wait::Never, consume)
    }
}

/// The closure of the copying receives.
fn copy_out(buf: &mut Vec<u8>) -> impl FnOnce(Frame<'_>) -> u64 + '_ {
    move |frame| {
        buf.clear();
        buf.extend_from_slice(frame.bytes());
        frame.tag()
    }
}

impl AsFd for FrameSender {
    /// The ring's wake-up socket; see [`FrameSender::prepare_wait`].
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tx.as_fd()
    }
}

impl AsFd for FrameReceiver {
    /// The ring's wake-up socket; see [`FrameReceiver::prepare_wait`].
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }
}

impl fmt::Debug for FrameReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReceiver")
            .field("rx", &self.rx)
            .field("align", &self.align)
            .field("position", &self.position)
            .field("corrupted", &self.corrupted)
            .field("stats", &self.stats)
            .finish()
    }
}
