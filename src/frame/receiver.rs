//! The receiving end of the frame layer: [`FrameReceiver`], the frame it
//! lends in place ([`Frame`]), the batch of ready frames it lends at once
//! ([`Frames`]), the walk over ready records for latest-frame-wins, and the
//! reporting of a bad record as `Corrupted`.

use std::fmt;
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use super::record::{check_align, parse, Bad, HEADER, MIN_ALIGN};
use super::FrameStats;
use crate::channel::{Fds, Receiver, Wait};
use crate::error::{Corruption, Error, Exhaustion};
use crate::Liveness;
// Named in the documentation only.
#[cfg(doc)]
use super::FrameSender;

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
    pub(super) bytes: &'a [u8],
    pub(super) tag: u64,
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

/// The frames ready in the ring, lent in place to the closure of
/// [`FrameReceiver::recv_frames_with`] and friends: an iterator over up to
/// [`FrameReceiver::MAX_BATCH`] frames, in the order they were sent. The
/// closure returns how many of them (from the first) it consumed, and
/// those are released together, with one store of the read index.
///
/// Each record's header is copied and checked as
/// [`FrameReceiver::try_recv_frame_with`] checks it (see
/// [Validation](FrameReceiver#validation)), when the iterator reaches it.
/// The iterator ends at a bad record: the frames before it are lent as
/// usual, and the next call, which starts at the bad record, returns the
/// error.
///
/// ```
/// let (tx, rx) = fdring::channel::<u8>(4096)?;
/// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
/// for n in 0..5u64 {
///     tx.send_frame(n, &[n as u8; 10])?;
/// }
/// // Consume the first three, leave the rest in the ring.
/// let consumed = rx.try_recv_frames_with(|frames| {
///     let mut tags = Vec::new();
///     for frame in frames.take(3) {
///         tags.push(frame.tag());
///     }
///     assert_eq!(tags, [0, 1, 2]);
///     tags.len()
/// })?;
/// assert_eq!(consumed, 3);
/// assert_eq!(rx.try_recv_frame_with(|frame| frame.tag())?, 3);
/// # Ok::<(), fdring::Error>(())
/// ```
pub struct Frames<'a> {
    ready: &'a [u8],
    align: usize,
    /// The first record, parsed before the closure was called (a batch is
    /// lent only if it holds a good frame).
    first: Option<(Frame<'a>, usize)>,
    /// Where the next record starts in `ready`.
    at: usize,
    /// Set at a bad record: the walk stops there.
    stopped: bool,
    lent: &'a mut Lent,
}

/// What a [`Frames`] has lent: where each frame's record ends, to release
/// exactly the frames the closure consumed.
struct Lent {
    count: usize,
    /// `ends[i]`: the end of the record of frame `i`, in the ready bytes.
    ends: [usize; MAX_BATCH],
    /// `bytes[i]`: the payload bytes of frames `0..=i`.
    bytes: [u64; MAX_BATCH],
}

impl Lent {
    fn new() -> Lent {
        Lent {
            count: 0,
            ends: [0; MAX_BATCH],
            bytes: [0; MAX_BATCH],
        }
    }
}

/// See [`FrameReceiver::MAX_BATCH`].
const MAX_BATCH: usize = 64;

impl<'a> Iterator for Frames<'a> {
    type Item = Frame<'a>;

    // Inlined into the closure's loop: with small frames, a call per frame
    // and its state in memory cost as much as the checks.
    #[inline(always)]
    fn next(&mut self) -> Option<Frame<'a>> {
        let (frame, record) = match self.first.take() {
            Some(first) => first,
            None => {
                if self.stopped || self.lent.count == MAX_BATCH || self.at >= self.ready.len() {
                    return None;
                }
                // The same parse, with the same checks, as a single
                // receive's: what is wrong is left for the next call to
                // report, when the bad record comes first.
                match parse(&self.ready[self.at..], self.align) {
                    Ok(parsed) => parsed,
                    Err(_) => {
                        self.stopped = true;
                        return None;
                    }
                }
            }
        };
        self.at += record;
        let i = self.lent.count;
        let before = i.checked_sub(1).map_or(0, |last| self.lent.bytes[last]);
        self.lent.ends[i] = self.at;
        self.lent.bytes[i] = before + frame.len() as u64;
        self.lent.count += 1;
        Some(frame)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let first = usize::from(self.first.is_some());
        let left = if self.stopped {
            first
        } else {
            MAX_BATCH - self.lent.count
        };
        (first, Some(left))
    }
}

impl std::iter::FusedIterator for Frames<'_> {}

impl fmt::Debug for Frames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frames")
            .field("lent", &self.lent.count)
            .field("ready", &(self.ready.len() - self.at))
            .finish_non_exhaustive()
    }
}

/// What was wrong with a record, found at `at` bytes into the ready bytes.
#[derive(Debug, Clone, Copy)]
struct Defect {
    at: usize,
    bad: Bad,
}

/// A frame lent in place by
/// [`FrameReceiver::try_recv_frame_in_place`]: `len` payload bytes from
/// `ptr`, valid until [`FrameReceiver::release_frame`] or the next receive,
/// and the frame's tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LentFrame {
    /// The first payload byte (aligned to the receiver's alignment).
    pub ptr: *const u8,
    /// The payload's length in bytes.
    pub len: usize,
    /// The frame's tag.
    pub tag: u64,
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
///
/// A well-formed record whose payload is aligned to less than this
/// receiver's [`align`](FrameReceiver::align) is not the sender breaking the
/// protocol but the two ends disagreeing: [`Error::FrameAlign`] names both
/// alignments, and the frame stays in the ring.
///
/// ```
/// let (tx, rx) = fdring::channel::<u8>(4096)?;
/// let mut tx = fdring::FrameSender::new(tx); // payloads aligned to 8
/// let mut rx = fdring::FrameReceiver::with_align(rx, 64);
/// tx.send_frame(1, &[0; 100])?;
/// assert_eq!(
///     rx.try_recv_frame_with(|_| ()),
///     Err(fdring::Error::FrameAlign { expected: 64, found: 8 })
/// );
/// # Ok::<(), fdring::Error>(())
/// ```
pub struct FrameReceiver {
    rx: Receiver<u8>,
    align: usize,
    /// Bytes this end has released: the stream offset of the next record,
    /// counted from where it started (for error reports only).
    position: u64,
    corrupted: Option<Corruption>,
    /// The record length of the frame lent in place and not yet released
    /// ([`try_recv_frame_in_place`](Self::try_recv_frame_in_place));
    /// dropped by every other receive.
    lent_record: Option<usize>,
    stats: FrameStats,
}

impl FrameReceiver {
    /// The most frames one batched receive
    /// ([`recv_frames_with`](Self::recv_frames_with) and friends) lends:
    /// enough that the release and the look at the sender's index are
    /// shared by many small frames, few enough that the receiver keeps
    /// where each frame ends on its stack.
    ///
    /// ```
    /// assert_eq!(fdring::FrameReceiver::MAX_BATCH, 64);
    /// ```
    pub const MAX_BATCH: usize = MAX_BATCH;

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
            lent_record: None,
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

    /// The liveness watched by [`watch_peer`](Self::watch_peer), if any:
    /// register its fd in an event loop next to this end's (the `mio` and
    /// `tokio` adapters do) to learn of the sender's death; see
    /// [`Receiver::peer_liveness`].
    ///
    /// ```
    /// let (_tx, rx) = fdring::channel::<u8>(4096)?;
    /// let mut rx = fdring::FrameReceiver::new(rx);
    /// assert!(rx.peer_liveness().is_none());
    /// let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    /// rx.watch_peer(fdring::Liveness::socket(ours));
    /// assert!(rx.peer_liveness().is_some());
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn peer_liveness(&self) -> Option<&Liveness> {
        self.rx.peer_liveness()
    }

    /// Whether the sender is gone: it closed its end, or its process died;
    /// frames it sent before may still be waiting. A racy snapshot that
    /// costs a system call; see [`Receiver::is_abandoned`].
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// tx.send_frame(1, b"last words")?;
    /// assert!(!rx.is_abandoned());
    /// drop(tx);
    /// assert!(rx.is_abandoned());
    /// assert_eq!(rx.try_recv_frame_with(|frame| frame.tag()), Ok(1));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn is_abandoned(&self) -> bool {
        self.rx.is_abandoned()
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
    /// With the cargo feature `mio`, a `FrameReceiver` is a
    /// `mio::event::Source`, and `fdring::mio::EventLoopExt::try_or_arm`
    /// calls this for you; with `tokio`, see
    /// `fdring::tokio::AsyncFrameReceiver`.
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

    /// Lends every ready frame (up to [`MAX_BATCH`](Self::MAX_BATCH)), in
    /// place and in order, to `consume` as [`Frames`]; `consume` returns
    /// how many of them, from the first, it consumed, and those are
    /// released at once, with one store of the read index. Returns that
    /// number. Does not wait.
    ///
    /// Each header is checked as for
    /// [`try_recv_frame_with`](Self::try_recv_frame_with). A bad record
    /// ends the frames lent before it; the call that finds it first
    /// returns the error (and lends nothing).
    ///
    /// "Ready" is as of this end's last look at the sender's index, which
    /// it takes again only when the bytes known to be ready could not hold
    /// a whole batch: frames published since are lent by a later call.
    ///
    /// # Errors
    ///
    /// As for [`try_recv_frame_with`](Self::try_recv_frame_with): `Empty`
    /// if no frame is ready (`consume` is not called), `Disconnected`,
    /// `Corrupted` or `FrameAlign` if the first ready record is bad.
    ///
    /// # Panics
    ///
    /// If `consume` returns more than the number of frames it took from
    /// the iterator; nothing is released then.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// assert_eq!(rx.try_recv_frames_with(|frames| frames.count()), Err(fdring::Error::Empty));
    /// tx.send_frame(1, b"one")?;
    /// tx.send_frame(2, b"two")?;
    /// let mut got = Vec::new();
    /// let consumed = rx.try_recv_frames_with(|frames| {
    ///     frames.map(|frame| got.push((frame.tag(), frame.to_vec()))).count()
    /// })?;
    /// assert_eq!(consumed, 2);
    /// assert_eq!(got, [(1, b"one".to_vec()), (2, b"two".to_vec())]);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_recv_frames_with<F>(&mut self, consume: F) -> Result<usize, Error>
    where
        F: FnOnce(Frames<'_>) -> usize,
    {
        self.recv_frames_in(Wait::Never, consume)
    }

    /// Like [`try_recv_frames_with`](Self::try_recv_frames_with), but
    /// waits until a frame is ready.
    ///
    /// # Errors
    ///
    /// As for [`recv_frame_with`](Self::recv_frame_with).
    ///
    /// # Panics
    ///
    /// As for `try_recv_frames_with`.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// std::thread::spawn(move || {
    ///     for n in 0..1000u64 {
    ///         tx.send_frame(n, &n.to_le_bytes()).unwrap();
    ///     }
    /// });
    /// let mut next = 0u64;
    /// while next < 1000 {
    ///     rx.recv_frames_with(|frames| {
    ///         frames
    ///             .inspect(|frame| {
    ///                 assert_eq!(frame.tag(), next);
    ///                 next += 1;
    ///             })
    ///             .count()
    ///     })?;
    /// }
    /// assert_eq!(rx.recv_frames_with(|frames| frames.count()), Err(fdring::Error::Disconnected));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn recv_frames_with<F>(&mut self, consume: F) -> Result<usize, Error>
    where
        F: FnOnce(Frames<'_>) -> usize,
    {
        self.recv_frames_in(Wait::Until(None), consume)
    }

    /// Like [`recv_frames_with`](Self::recv_frames_with), but gives up
    /// after `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` if no frame came in time, and as for `recv_frames_with`.
    ///
    /// # Panics
    ///
    /// As for `try_recv_frames_with`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (_tx, rx) = fdring::channel::<u8>(4096)?;
    /// let mut rx = fdring::FrameReceiver::new(rx);
    /// let got = rx.recv_frames_with_timeout(Duration::from_millis(10), |frames| frames.count());
    /// assert_eq!(got, Err(fdring::Error::Timeout));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn recv_frames_with_timeout<F>(
        &mut self,
        timeout: Duration,
        consume: F,
    ) -> Result<usize, Error>
    where
        F: FnOnce(Frames<'_>) -> usize,
    {
        self.recv_frames_in(Wait::timeout(timeout), consume)
    }

    /// Receives a copy of the next frame into `buf` (replacing its
    /// contents; it allocates only if `buf` is too small) and returns its
    /// tag. Does not wait.
    ///
    /// The sender chooses the frame's length, up to the ring's capacity,
    /// which the receiving end bounds when it opens the ring
    /// ([`Builder::max_capacity`](crate::Builder::max_capacity)).
    ///
    /// # Errors
    ///
    /// As for [`try_recv_frame_with`](Self::try_recv_frame_with), and
    /// `Exhausted(Allocation)` if `buf` cannot grow to the frame's length:
    /// the frame is then not released, and the next receive (in place with
    /// [`try_recv_frame_with`](Self::try_recv_frame_with), or into a
    /// buffer that has the room) gets it again. `buf` is left empty.
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
        self.recv_or_keep(Wait::Never, copy_out(buf))
    }

    /// Receives a copy of the next frame into `buf`, waiting for one, and
    /// returns its tag.
    ///
    /// # Errors
    ///
    /// As for [`recv_frame_with`](Self::recv_frame_with), and
    /// `Exhausted(Allocation)` as for
    /// [`try_recv_frame`](Self::try_recv_frame) (the frame is kept).
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
        self.recv_or_keep(Wait::Until(None), copy_out(buf))
    }

    /// Receives a copy of the next frame into `buf`, waiting at most
    /// `timeout`, and returns its tag.
    ///
    /// # Errors
    ///
    /// As for [`recv_frame_with_timeout`](Self::recv_frame_with_timeout),
    /// and `Exhausted(Allocation)` as for
    /// [`try_recv_frame`](Self::try_recv_frame) (the frame is kept).
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
        self.recv_or_keep(Wait::timeout(timeout), copy_out(buf))
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

    /// Lends the next frame in place, if one is ready, until
    /// [`release_frame`](Self::release_frame): its payload's address and
    /// length, and its tag. This is the closure call
    /// [`try_recv_frame_with`](Self::try_recv_frame_with) in two steps, for
    /// callers that cannot pass a closure (the C library); the record is
    /// checked the same way before anything is lent.
    ///
    /// The frame stays in the ring, and the pointer valid, until the
    /// release; any other receive on this end, or a new one of these,
    /// drops it unreleased (it is lent again). A misbehaving sender may
    /// write into the bytes while you read them: copy out what you must
    /// check.
    ///
    /// # Errors
    ///
    /// As for [`try_recv_frame_with`](Self::try_recv_frame_with):
    /// `Empty`, `Disconnected`, `Corrupted`, `FrameAlign`.
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (mut tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// tx.send_frame(3, b"abc")?;
    /// let frame = rx.try_recv_frame_in_place()?;
    /// // SAFETY: `frame.len` bytes at `frame.ptr` are lent until the release.
    /// let bytes = unsafe { std::slice::from_raw_parts(frame.ptr, frame.len) };
    /// assert_eq!((frame.tag, bytes), (3, &b"abc"[..]));
    /// rx.release_frame()?;
    /// assert_eq!(rx.try_recv_frame_in_place(), Err(fdring::Error::Empty));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_recv_frame_in_place(&mut self) -> Result<LentFrame, Error> {
        self.in_place(Wait::Never)
    }

    /// Like [`try_recv_frame_in_place`](Self::try_recv_frame_in_place),
    /// but waits for a frame.
    ///
    /// # Errors
    ///
    /// As for [`recv_frame_with`](Self::recv_frame_with).
    pub fn recv_frame_in_place(&mut self) -> Result<LentFrame, Error> {
        self.in_place(Wait::Until(None))
    }

    /// Like [`recv_frame_in_place`](Self::recv_frame_in_place), but gives
    /// up after `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout`, and as for [`recv_frame_with`](Self::recv_frame_with).
    pub fn recv_frame_in_place_timeout(&mut self, timeout: Duration) -> Result<LentFrame, Error> {
        self.in_place(Wait::timeout(timeout))
    }

    /// Releases the frame lent in place, giving its bytes back to the
    /// sender (and waking it if it sleeps).
    ///
    /// # Errors
    ///
    /// `OverCommit` if no frame is lent (never, already released, or
    /// dropped by another receive).
    ///
    /// ```
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let (_tx, mut rx) = (fdring::FrameSender::new(tx), fdring::FrameReceiver::new(rx));
    /// assert_eq!(rx.release_frame(), Err(fdring::Error::OverCommit { count: 1, lent: 0 }));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn release_frame(&mut self) -> Result<(), Error> {
        let record = self
            .lent_record
            .take()
            .ok_or(Error::OverCommit { count: 1, lent: 0 })?;
        self.rx.release(record);
        self.position += record as u64;
        Ok(())
    }

    /// Lends the next frame in place, waiting as `wait` says.
    fn in_place(&mut self, wait: Wait) -> Result<LentFrame, Error> {
        if let Some(corruption) = self.corrupted {
            return Err(Error::Corrupted(corruption));
        }
        self.lent_record = None;
        let lent = self.rx.lend(1, wait)?;
        // SAFETY: the channel lent `lent.len` published bytes from
        // `lent.ptr`, in the mapping, which the sender does not reuse until
        // they are released. A hostile sender may still store into them:
        // every byte is a valid `u8`, and `parse` copies the header out
        // once and checks the record against the bytes lent before
        // anything is used.
        let ready = unsafe { std::slice::from_raw_parts(lent.ptr.cast_const(), lent.len) };
        match parse(ready, self.align) {
            Ok((frame, record)) => {
                self.lent_record = Some(record);
                self.stats.frames += 1;
                self.stats.bytes += frame.len() as u64;
                Ok(LentFrame {
                    ptr: frame.bytes.as_ptr(),
                    len: frame.len(),
                    tag: frame.tag,
                })
            }
            Err(bad) => Err(self.corrupt(Defect { at: 0, bad }, ready.len())),
        }
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
        self.lent_record = None;
        let released = self.rx.recv_with_want(want, wait, look)?;
        self.position += released as u64;
        Ok(released)
    }

    /// Reports a bad record, and remembers it for good if the sender broke
    /// the protocol. A payload aligned to less than this receiver needs is
    /// not that: the two ends were made with different alignments, which
    /// the error says; the record stays unreleased, so every later call
    /// says it again.
    fn corrupt(&mut self, defect: Defect, ready: usize) -> Error {
        let claimed_end = match defect.bad {
            Bad::Align { found } => {
                return Error::FrameAlign {
                    expected: self.align as u64,
                    found,
                }
            }
            Bad::Header => None,
            Bad::End(end) => Some(end),
        };
        let corruption = Corruption::BadFrame {
            at: self.position + defect.at as u64,
            claimed_end,
            ready: (ready - defect.at) as u64,
        };
        self.corrupted = Some(corruption);
        Error::Corrupted(corruption)
    }

    fn recv_in<R, F>(&mut self, wait: Wait, consume: F) -> Result<R, Error>
    where
        F: FnOnce(Frame<'_>) -> R,
    {
        self.recv_or_keep(wait, |frame| Ok(consume(frame)))
    }

    /// Lends the next frame to `consume`, and releases it unless `consume`
    /// fails: the frame then stays first in the ring for the next call.
    fn recv_or_keep<R, F>(&mut self, wait: Wait, consume: F) -> Result<R, Error>
    where
        F: FnOnce(Frame<'_>) -> Result<R, Error>,
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
                    let len = frame.len() as u64;
                    let result = consume(frame);
                    let release = if result.is_ok() {
                        lent = (1, len);
                        record
                    } else {
                        0
                    };
                    out = Some(result);
                    release
                }
                Err(bad) => {
                    defect = Some(Defect { at: 0, bad });
                    0
                }
            }
        })?;
        if let Some(defect) = defect {
            return Err(self.corrupt(defect, ready));
        }
        self.stats.frames += lent.0;
        self.stats.bytes += lent.1;
        out.expect("a frame was lent")
    }

    /// Lends the ready frames to `consume` as [`Frames`] and releases those
    /// it consumed, with one release.
    fn recv_frames_in<F>(&mut self, wait: Wait, consume: F) -> Result<usize, Error>
    where
        F: FnOnce(Frames<'_>) -> usize,
    {
        let align = self.align;
        let mut lent = Lent::new();
        let mut consumed = 0;
        let mut defect = None;
        let mut ready = 0;
        // Reload the sender's index only if the bytes known to be ready
        // could not hold a whole batch (of frames of 0 bytes): a stream of
        // batches shares one look at the sender's line among several
        // batches while it has more ready than one batch takes.
        self.lend_want(MAX_BATCH * HEADER, wait, |bytes| {
            ready = bytes.len();
            // The first record is checked before `consume` is called: a
            // batch that starts with a bad record is the error, not an
            // empty batch.
            let first = match parse(bytes, align) {
                Ok(first) => first,
                Err(bad) => {
                    defect = Some(Defect { at: 0, bad });
                    return 0;
                }
            };
            let frames = Frames {
                ready: bytes,
                align,
                first: Some(first),
                at: 0,
                stopped: false,
                lent: &mut lent,
            };
            consumed = consume(frames);
            assert!(
                consumed <= lent.count,
                "the closure said it consumed {consumed} frames of the {} it took",
                lent.count
            );
            consumed.checked_sub(1).map_or(0, |last| lent.ends[last])
        })?;
        if let Some(defect) = defect {
            return Err(self.corrupt(defect, ready));
        }
        if let Some(last) = consumed.checked_sub(1) {
            self.stats.frames += consumed as u64;
            self.stats.bytes += lent.bytes[last];
        }
        Ok(consumed)
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
                    Err(bad) => {
                        defect = Some(Defect { at, bad });
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

/// The closure of the copying receives: the allocation may fail (the
/// frame's length is the sender's to choose, up to the ring's size), and
/// is then reported instead of aborting the process.
fn copy_out(buf: &mut Vec<u8>) -> impl FnOnce(Frame<'_>) -> Result<u64, Error> + '_ {
    move |frame| {
        buf.clear();
        buf.try_reserve_exact(frame.len()).map_err(|_| {
            Error::Exhausted(Exhaustion::Allocation {
                requested: frame.len() as u64,
            })
        })?;
        buf.extend_from_slice(frame.bytes());
        Ok(frame.tag())
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
