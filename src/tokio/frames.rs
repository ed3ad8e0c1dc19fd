//! [`AsyncFrameSender`] and [`AsyncFrameReceiver`]: the two ends of a ring
//! of frames on the readiness loop of the parent module.

use std::fmt;
use std::future::poll_fn;
use std::task::{Context, Poll};

use super::{poll_open, Registered};
use crate::{Error, Frame, FrameMut, FrameReceiver, FrameSender};

/// The receiving end of a ring of frames, awaited on tokio's reactor: a
/// [`FrameReceiver`] whose calls wait for a frame where its `try_` calls
/// would return `Empty`. Frames are lent in place, as by the
/// [`FrameReceiver`] itself.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), fdring::Error> {
/// let (tx, rx) = fdring::channel::<u8>(64 * 1024)?;
/// let mut tx = fdring::FrameSender::new(tx);
/// let mut rx = fdring::tokio::AsyncFrameReceiver::new(fdring::FrameReceiver::new(rx))?;
/// std::thread::spawn(move || {
///     for n in 0..100u64 {
///         tx.send_frame(n, &vec![n as u8; 1000]).unwrap();
///     }
///     // Dropping `tx` closes the ring: `Disconnected` after the last frame.
/// });
/// let mut next = 0;
/// loop {
///     match rx.recv_frame_with(|frame| (frame.tag(), frame.len())).await {
///         Ok((tag, len)) => {
///             assert_eq!((tag, len), (next, 1000));
///             next += 1;
///         }
///         Err(fdring::Error::Disconnected) => break,
///         Err(e) => return Err(e),
///     }
/// }
/// assert_eq!(next, 100);
/// # Ok(())
/// # }
/// ```
pub struct AsyncFrameReceiver {
    inner: Registered<FrameReceiver>,
}

/// Which frame a receive lends.
#[derive(Clone, Copy)]
enum Lend {
    /// The next frame.
    Next,
    /// The newest ready frame, releasing the older ones unread.
    Latest,
}

/// Why a completed receive holds `consume`'s result: only the poll that
/// lends a frame completes the call, and that poll called `consume`.
const CONSUMED_ONCE: &str = "a frame is lent only by the call that completes";

impl AsyncFrameReceiver {
    /// Registers `receiver` with the current tokio runtime's reactor. Call
    /// [`FrameReceiver::watch_peer`] first if it is to watch its peer.
    ///
    /// # Errors
    ///
    /// `Io` if the fds cannot be duplicated or registered; the receiver is
    /// dropped then (which closes it).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or in one without I/O enabled.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (_tx, rx) = fdring::channel::<u8>(4096)?;
    /// let rx = fdring::tokio::AsyncFrameReceiver::new(fdring::FrameReceiver::new(rx))?;
    /// assert_eq!(rx.get_ref().capacity(), 4096);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(receiver: FrameReceiver) -> Result<AsyncFrameReceiver, Error> {
        Ok(AsyncFrameReceiver {
            inner: Registered::new(receiver)?,
        })
    }

    /// Waits for the next frame, lends it in place to `consume`, then
    /// releases it, and returns what `consume` returned: what
    /// [`FrameReceiver::recv_frame_with`] does, awaited.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: `consume` runs, and the frame is released, only in the
    /// poll that completes the call, so if the future is dropped before it
    /// completes, no frame was received and the next call gets it.
    ///
    /// # Errors
    ///
    /// `Disconnected` once the sender is gone and every frame was received,
    /// `Corrupted` if it broke the protocol (a bad frame header included),
    /// `Io` if waiting failed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// let mut rx = fdring::tokio::AsyncFrameReceiver::new(fdring::FrameReceiver::new(rx))?;
    /// std::thread::spawn(move || tx.send_frame(7, b"late"));
    /// let (tag, bytes) = rx.recv_frame_with(|frame| (frame.tag(), frame.to_vec())).await?;
    /// assert_eq!((tag, &bytes[..]), (7, &b"late"[..]));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_frame_with<R, F>(&mut self, consume: F) -> Result<R, Error>
    where
        F: FnOnce(Frame<'_>) -> R,
    {
        let mut consume = Some(consume);
        poll_fn(|cx| self.poll_lend(cx, Lend::Next, &mut consume)).await
    }

    /// Waits for the next frame and copies it into `buf` (replacing its
    /// contents; it allocates only if `buf` is too small); returns its tag.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`recv_frame_with`](Self::recv_frame_with): `buf` is
    /// written only in the poll that completes the call.
    ///
    /// # Errors
    ///
    /// As for [`recv_frame_with`](Self::recv_frame_with).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// let mut rx = fdring::tokio::AsyncFrameReceiver::new(fdring::FrameReceiver::new(rx))?;
    /// tx.send_frame(2, b"copied")?;
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.recv_frame(&mut buf).await?, 2);
    /// assert_eq!(buf, b"copied");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_frame(&mut self, buf: &mut Vec<u8>) -> Result<u64, Error> {
        self.recv_frame_with(copy_out(buf)).await
    }

    /// Latest-frame-wins: waits until a frame is ready, then releases every
    /// ready frame but the newest unread, lends the newest to `consume` and
    /// releases it too; what [`FrameReceiver::recv_latest_with`] does (with
    /// the guarantees stated there), awaited.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: frames are released, and `consume` runs, only in the
    /// poll that completes the call.
    ///
    /// # Errors
    ///
    /// As for [`recv_frame_with`](Self::recv_frame_with).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// let mut rx = fdring::tokio::AsyncFrameReceiver::new(fdring::FrameReceiver::new(rx))?;
    /// for n in 1..=3u64 {
    ///     tx.send_frame(n, b"frame")?;
    /// }
    /// assert_eq!(rx.recv_latest_with(|frame| frame.tag()).await?, 3);
    /// assert_eq!(rx.get_ref().stats().skipped, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_latest_with<R, F>(&mut self, consume: F) -> Result<R, Error>
    where
        F: FnOnce(Frame<'_>) -> R,
    {
        let mut consume = Some(consume);
        poll_fn(|cx| self.poll_lend(cx, Lend::Latest, &mut consume)).await
    }

    /// Polls for the next frame and lends it to `consume`, as
    /// [`recv_frame_with`](Self::recv_frame_with): `Ready` with what
    /// `consume` returned (or with an error), or `Pending` with `cx`'s waker
    /// registered to be woken when a retry can make progress; `consume` was
    /// not called then (and is dropped). The building block for your own
    /// futures and streams.
    ///
    /// # Errors
    ///
    /// As for [`recv_frame_with`](Self::recv_frame_with).
    ///
    /// ```
    /// use std::future::poll_fn;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// let mut rx = fdring::tokio::AsyncFrameReceiver::new(fdring::FrameReceiver::new(rx))?;
    /// tx.send_frame(3, b"abc")?;
    /// let len = poll_fn(|cx| rx.poll_recv_frame_with(cx, |frame| frame.len())).await?;
    /// assert_eq!(len, 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn poll_recv_frame_with<R, F>(
        &mut self,
        cx: &mut Context<'_>,
        consume: F,
    ) -> Poll<Result<R, Error>>
    where
        F: FnOnce(Frame<'_>) -> R,
    {
        self.poll_lend(cx, Lend::Next, &mut Some(consume))
    }

    /// Polls for the next frame and copies it into `buf`, as
    /// [`recv_frame`](Self::recv_frame); `buf` is untouched if it returns
    /// `Pending`.
    ///
    /// # Errors
    ///
    /// As for [`recv_frame_with`](Self::recv_frame_with).
    ///
    /// ```
    /// use std::future::poll_fn;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// let mut rx = fdring::tokio::AsyncFrameReceiver::new(fdring::FrameReceiver::new(rx))?;
    /// tx.send_frame(4, b"four")?;
    /// let mut buf = Vec::new();
    /// assert_eq!(poll_fn(|cx| rx.poll_recv_frame(cx, &mut buf)).await?, 4);
    /// assert_eq!(buf, b"four");
    /// # Ok(())
    /// # }
    /// ```
    pub fn poll_recv_frame(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Vec<u8>,
    ) -> Poll<Result<u64, Error>> {
        self.poll_recv_frame_with(cx, copy_out(buf))
    }

    /// Polls for the newest ready frame, as
    /// [`recv_latest_with`](Self::recv_latest_with); if it returns
    /// `Pending`, nothing was released and `consume` was not called.
    ///
    /// # Errors
    ///
    /// As for [`recv_frame_with`](Self::recv_frame_with).
    ///
    /// ```
    /// use std::future::poll_fn;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::FrameSender::new(tx);
    /// let mut rx = fdring::tokio::AsyncFrameReceiver::new(fdring::FrameReceiver::new(rx))?;
    /// tx.send_frame(1, b"old")?;
    /// tx.send_frame(2, b"new")?;
    /// let tag = poll_fn(|cx| rx.poll_recv_latest_with(cx, |frame| frame.tag())).await?;
    /// assert_eq!(tag, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn poll_recv_latest_with<R, F>(
        &mut self,
        cx: &mut Context<'_>,
        consume: F,
    ) -> Poll<Result<R, Error>>
    where
        F: FnOnce(Frame<'_>) -> R,
    {
        self.poll_lend(cx, Lend::Latest, &mut Some(consume))
    }

    /// Polls a receive of `lend`'s frame; `consume` is taken only by the
    /// poll that lends a frame, which completes the call.
    fn poll_lend<R, F>(
        &mut self,
        cx: &mut Context<'_>,
        lend: Lend,
        consume: &mut Option<F>,
    ) -> Poll<Result<R, Error>>
    where
        F: FnOnce(Frame<'_>) -> R,
    {
        let lent = self.inner.poll_op(cx, |rx| {
            // The `try_` calls call the closure only when they succeed,
            // and a success ends the call: `consume` is taken once.
            let consume = |frame: Frame<'_>| consume.take().map(|f| f(frame));
            match lend {
                Lend::Next => rx.try_recv_frame_with(consume),
                Lend::Latest => rx.try_recv_latest_with(consume),
            }
        });
        lent.map(|lent| lent.map(|out| out.expect(CONSUMED_ONCE)))
    }

    /// The frame receiver, for its counters, alignment and capacity.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (_tx, rx) = fdring::channel::<u8>(4096)?;
    /// let rx = fdring::tokio::AsyncFrameReceiver::new(fdring::FrameReceiver::new(rx))?;
    /// assert_eq!(rx.get_ref().stats().frames, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_ref(&self) -> &FrameReceiver {
        &self.inner.end
    }

    /// The frame receiver, for its `try_` calls. Do not block on it
    /// (`recv_frame_with`, ...) inside a task. A liveness watched from here
    /// on is checked each time the end arms, but does not wake a waiting
    /// task: watch it before [`new`](Self::new).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (_tx, rx) = fdring::channel::<u8>(4096)?;
    /// let mut rx = fdring::tokio::AsyncFrameReceiver::new(fdring::FrameReceiver::new(rx))?;
    /// assert_eq!(rx.get_mut().try_recv_frame_with(|f| f.len()), Err(fdring::Error::Empty));
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_mut(&mut self) -> &mut FrameReceiver {
        &mut self.inner.end
    }

    /// Deregisters from the reactor and returns the frame receiver.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (_tx, rx) = fdring::channel::<u8>(4096)?;
    /// let rx = fdring::tokio::AsyncFrameReceiver::new(fdring::FrameReceiver::new(rx))?;
    /// let rx: fdring::FrameReceiver = rx.into_inner();
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_inner(self) -> FrameReceiver {
        self.inner.end
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

impl fmt::Debug for AsyncFrameReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFrameReceiver")
            .field("inner", &self.inner)
            .finish()
    }
}

/// The sending end of a ring of frames, awaited on tokio's reactor: a
/// [`FrameSender`] whose calls wait for room for the frame where its
/// `try_` calls would return `Full`. Frames are written in place, as by
/// the [`FrameSender`] itself.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), fdring::Error> {
/// let (tx, rx) = fdring::channel::<u8>(16 * 1024)?;
/// let mut tx = fdring::tokio::AsyncFrameSender::new(fdring::FrameSender::new(tx))?;
/// let mut rx = fdring::FrameReceiver::new(rx);
/// let consumer = std::thread::spawn(move || {
///     let mut bytes = 0;
///     while let Ok(len) = rx.recv_frame_with(|frame| frame.len()) {
///         bytes += len;
///     }
///     bytes
/// });
/// for n in 0..1000u64 {
///     // Waits whenever there is no room for a frame of this length.
///     tx.send_frame(n, &[n as u8; 5000]).await?;
/// }
/// tx.close();
/// assert_eq!(consumer.join().unwrap(), 1000 * 5000);
/// # Ok(())
/// # }
/// ```
pub struct AsyncFrameSender {
    /// `None` once closed.
    inner: Option<Registered<FrameSender>>,
}

impl AsyncFrameSender {
    /// Registers `sender` with the current tokio runtime's reactor. Call
    /// [`FrameSender::watch_peer`] first if it is to watch its peer.
    ///
    /// # Errors
    ///
    /// `Io` if the fds cannot be duplicated or registered; the sender is
    /// dropped then (which closes it).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or in one without I/O enabled.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let tx = fdring::tokio::AsyncFrameSender::new(fdring::FrameSender::with_align(tx, 64))?;
    /// assert_eq!(tx.get_ref().map(|tx| tx.align()), Some(64));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(sender: FrameSender) -> Result<AsyncFrameSender, Error> {
        Ok(AsyncFrameSender {
            inner: Some(Registered::new(sender)?),
        })
    }

    /// Sends a copy of `bytes` as one frame with `tag`, waiting for room
    /// for it: what [`FrameSender::send_frame`] does, awaited.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the frame is written and published only in the poll
    /// that completes the call, so if the future is dropped before, it was
    /// not sent.
    ///
    /// # Errors
    ///
    /// `FrameTooLarge` at once if no ring position could ever hold the
    /// frame ([`FrameSender::max_frame_len`]); `Disconnected` if the
    /// receiver is gone or this end was closed; `Corrupted` if the receiver
    /// broke the protocol; `Io` if waiting failed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::tokio::AsyncFrameSender::new(fdring::FrameSender::new(tx))?;
    /// let mut rx = fdring::FrameReceiver::new(rx);
    /// tx.send_frame(9, b"nine").await?;
    /// assert_eq!(rx.try_recv_frame_with(|frame| frame.tag())?, 9);
    /// let too_large = tx.send_frame(0, &[0; 8192]).await;
    /// assert!(matches!(too_large, Err(fdring::Error::FrameTooLarge { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_frame(&mut self, tag: u64, bytes: &[u8]) -> Result<(), Error> {
        poll_fn(|cx| self.poll_send_frame(cx, tag, bytes)).await
    }

    /// Waits for room for a frame of exactly `len` bytes, then lends that
    /// space in place to `fill`, which writes the first `n` bytes (and may
    /// set the tag) and returns `n`; a frame of those `n` bytes is
    /// committed. Returns `n`: what [`FrameSender::send_frame_with`] does,
    /// awaited.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: `fill` runs only in the poll that completes the call,
    /// so a future dropped before it completes wrote and published
    /// nothing.
    ///
    /// # Errors
    ///
    /// As for [`send_frame`](Self::send_frame).
    ///
    /// # Panics
    ///
    /// If `fill` returns more than `len`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (tx, rx) = fdring::channel::<u8>(64 * 1024)?;
    /// let mut tx = fdring::tokio::AsyncFrameSender::new(fdring::FrameSender::with_align(tx, 64))?;
    /// let mut rx = fdring::FrameReceiver::with_align(rx, 64);
    /// tx.send_frame_with(4096, |frame| {
    ///     let samples: &mut [f32] = bytemuck::cast_slice_mut(frame.bytes_mut());
    ///     samples.fill(0.5);
    ///     frame.set_tag(48_000);
    ///     frame.len()
    /// })
    /// .await?;
    /// assert_eq!(rx.try_recv_frame_with(|frame| (frame.tag(), frame.len()))?, (48_000, 4096));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_frame_with<F>(&mut self, len: usize, fill: F) -> Result<usize, Error>
    where
        F: FnOnce(&mut FrameMut<'_>) -> usize,
    {
        let mut fill = Some(fill);
        poll_fn(|cx| self.poll_fill(cx, len, &mut fill)).await
    }

    /// Polls to send a copy of `bytes` as one frame with `tag`, as
    /// [`send_frame`](Self::send_frame): `Ready` once it was sent (or with
    /// an error), or `Pending` with `cx`'s waker registered to be woken
    /// when a retry may find room for it.
    ///
    /// # Errors
    ///
    /// As for [`send_frame`](Self::send_frame).
    ///
    /// ```
    /// use std::future::poll_fn;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::tokio::AsyncFrameSender::new(fdring::FrameSender::new(tx))?;
    /// poll_fn(|cx| tx.poll_send_frame(cx, 1, b"one")).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn poll_send_frame(
        &mut self,
        cx: &mut Context<'_>,
        tag: u64,
        bytes: &[u8],
    ) -> Poll<Result<(), Error>> {
        poll_open(&mut self.inner, cx, |tx| tx.try_send_frame(tag, bytes))
    }

    /// Polls for room for a frame of `len` bytes and lends it to `fill`,
    /// as [`send_frame_with`](Self::send_frame_with); if it returns
    /// `Pending`, `fill` was not called (and is dropped).
    ///
    /// # Errors
    ///
    /// As for [`send_frame`](Self::send_frame).
    ///
    /// # Panics
    ///
    /// If `fill` returns more than `len`.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::tokio::AsyncFrameSender::new(fdring::FrameSender::new(tx))?;
    /// let sent = poll_fn(|cx| tx.poll_send_frame_with(cx, 100, |frame| {
    ///     frame[..2].copy_from_slice(b"hi");
    ///     2
    /// }))
    /// .await?;
    /// assert_eq!(sent, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn poll_send_frame_with<F>(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        fill: F,
    ) -> Poll<Result<usize, Error>>
    where
        F: FnOnce(&mut FrameMut<'_>) -> usize,
    {
        self.poll_fill(cx, len, &mut Some(fill))
    }

    /// Polls a send of a frame of `len` bytes through `fill`, which is
    /// taken only by the poll that commits the frame.
    fn poll_fill<F>(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        fill: &mut Option<F>,
    ) -> Poll<Result<usize, Error>>
    where
        F: FnOnce(&mut FrameMut<'_>) -> usize,
    {
        poll_open(&mut self.inner, cx, |tx| {
            // `try_send_frame_with` calls the closure only when the frame
            // fits, and then commits it, which ends the call: `fill` is
            // taken once.
            tx.try_send_frame_with(len, |frame| fill.take().map_or(0, |f| f(frame)))
        })
    }

    /// Closes this end as dropping it would: the receiver gets every frame
    /// sent so far, then `Disconnected`. Every later call returns
    /// `Disconnected`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::tokio::AsyncFrameSender::new(fdring::FrameSender::new(tx))?;
    /// let mut rx = fdring::FrameReceiver::new(rx);
    /// tx.send_frame(1, b"last").await?;
    /// tx.close();
    /// assert_eq!(tx.send_frame(2, b"").await, Err(fdring::Error::Disconnected));
    /// assert_eq!(rx.try_recv_frame_with(|frame| frame.tag())?, 1);
    /// assert_eq!(rx.try_recv_frame_with(|frame| frame.tag()), Err(fdring::Error::Disconnected));
    /// # Ok(())
    /// # }
    /// ```
    pub fn close(&mut self) {
        self.inner = None;
    }

    /// The frame sender, for its counters, alignment and
    /// [`max_frame_len`](FrameSender::max_frame_len); `None` once closed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let tx = fdring::tokio::AsyncFrameSender::new(fdring::FrameSender::new(tx))?;
    /// assert_eq!(tx.get_ref().map(|tx| tx.max_frame_len()), Some(4096 - 24));
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_ref(&self) -> Option<&FrameSender> {
        self.inner.as_ref().map(|inner| &inner.end)
    }

    /// The frame sender, for its `try_` calls and
    /// [`offer_frame_with`](FrameSender::offer_frame_with) (which never
    /// waits); `None` once closed. Do not block on it (`send_frame`, ...)
    /// inside a task. A liveness watched from here on is checked each time
    /// the end arms, but does not wake a waiting task: watch it before
    /// [`new`](Self::new).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = fdring::tokio::AsyncFrameSender::new(fdring::FrameSender::new(tx))?;
    /// if let Some(tx) = tx.get_mut() {
    ///     // Latest-frame-wins: a frame that does not fit now is dropped.
    ///     tx.offer_frame_with(3000, |frame| frame.len())?;
    ///     assert!(!tx.offer_frame_with(3000, |frame| frame.len())?);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_mut(&mut self) -> Option<&mut FrameSender> {
        self.inner.as_mut().map(|inner| &mut inner.end)
    }

    /// Deregisters from the reactor and returns the frame sender; `None`
    /// if it was closed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let tx = fdring::tokio::AsyncFrameSender::new(fdring::FrameSender::new(tx))?;
    /// let tx: Option<fdring::FrameSender> = tx.into_inner();
    /// assert!(tx.is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_inner(self) -> Option<FrameSender> {
        self.inner.map(|inner| inner.end)
    }
}

impl fmt::Debug for AsyncFrameSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFrameSender")
            .field("inner", &self.inner)
            .finish()
    }
}
