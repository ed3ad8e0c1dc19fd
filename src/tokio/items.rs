//! [`AsyncSender`] and [`AsyncReceiver`]: the two ends of a ring of items
//! on the readiness loop of the parent module, with `AsyncRead` /
//! `AsyncWrite` for byte rings.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use bytemuck::Pod;

use super::{poll_open, Registered};
use crate::{Error, Receiver, Sender};

/// The receiving end of a ring, awaited on tokio's reactor.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), fdring::Error> {
/// let (mut tx, rx) = fdring::channel::<u32>(1024)?;
/// let mut rx = fdring::tokio::AsyncReceiver::new(rx)?;
/// std::thread::spawn(move || tx.send_slice(&[1, 2, 3]));
/// let mut sum = 0;
/// while let Ok(item) = rx.recv().await {
///     sum += item;
/// }
/// assert_eq!(sum, 6);
/// # Ok(())
/// # }
/// ```
pub struct AsyncReceiver<T: Pod> {
    inner: Registered<Receiver<T>>,
}

impl<T: Pod> AsyncReceiver<T> {
    /// Registers `receiver` with the current tokio runtime's reactor. Call
    /// [`Receiver::watch_peer`] first if it is to watch its peer.
    ///
    /// # Errors
    ///
    /// `Io` if the fds cannot be duplicated or registered; the receiver is
    /// dropped then (which closes it).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or in one without I/O enabled.
    pub fn new(receiver: Receiver<T>) -> Result<AsyncReceiver<T>, Error> {
        Ok(AsyncReceiver {
            inner: Registered::new(receiver)?,
        })
    }

    /// Receives one item, waiting until one is ready.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: an item is taken out of the ring only in the poll that
    /// returns it, so if the future is dropped before it completes, no item
    /// was received and the next call gets it.
    ///
    /// # Errors
    ///
    /// `Disconnected` once the sender is gone and every item was received,
    /// `Corrupted` if it broke the protocol, `Io` if waiting failed.
    pub async fn recv(&mut self) -> Result<T, Error> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Lends every ready item, as one contiguous slice, to `consume`, once
    /// at least one is ready; `consume` returns how many of the first it
    /// consumed, and those are released. Returns that count.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: `consume` runs only in the poll that completes the
    /// call, so a future dropped before it completes consumed nothing.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    ///
    /// # Panics
    ///
    /// If `consume` returns more than the length of the slice it was given.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (mut tx, rx) = fdring::channel::<u64>(4096)?;
    /// let mut rx = fdring::tokio::AsyncReceiver::new(rx)?;
    /// tx.send_slice(&[5, 6, 7])?;
    /// let mut sum = 0;
    /// let n = rx
    ///     .recv_with(|items: &[u64]| {
    ///         sum = items.iter().sum();
    ///         items.len()
    ///     })
    ///     .await?;
    /// assert_eq!((n, sum), (3, 18));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_with<F>(&mut self, consume: F) -> Result<usize, Error>
    where
        F: FnOnce(&[T]) -> usize,
    {
        let mut consume = Some(consume);
        poll_fn(|cx| {
            self.inner.poll_op(cx, |rx| {
                // `try_recv_with` calls the closure only when it succeeds,
                // and a success ends the call: `consume` is taken once.
                rx.try_recv_with(|items| consume.take().map_or(0, |f| f(items)))
            })
        })
        .await
    }

    /// Receives at least one item, waiting for it, and as many more as are
    /// ready, up to `buf.len()`; returns how many. An empty `buf` returns
    /// `Ok(0)` at once.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`recv`](Self::recv): `buf` is written only in the
    /// poll that completes the call.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    pub async fn recv_slice(&mut self, buf: &mut [T]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        poll_fn(|cx| self.inner.poll_op(cx, |rx| rx.try_recv_slice(buf))).await
    }

    /// Polls for one item: `Ready` with it (or with an error), or `Pending`
    /// with `cx`'s waker registered to be woken when a retry can make
    /// progress. The building block of [`recv`](Self::recv), for your own
    /// futures and streams.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (mut tx, rx) = fdring::channel::<u16>(512)?;
    /// let mut rx = fdring::tokio::AsyncReceiver::new(rx)?;
    /// tx.send(3)?;
    /// assert_eq!(poll_fn(|cx| rx.poll_recv(cx)).await?, 3);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        self.inner.poll_op(cx, Receiver::try_recv)
    }

    /// Polls for ready items and lends them to `consume`, as
    /// [`recv_with`](Self::recv_with); if it returns `Pending`, `consume`
    /// was not called (and is dropped).
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    ///
    /// # Panics
    ///
    /// If `consume` returns more than the length of the slice it was given.
    pub fn poll_recv_with<F>(
        &mut self,
        cx: &mut Context<'_>,
        consume: F,
    ) -> Poll<Result<usize, Error>>
    where
        F: FnOnce(&[T]) -> usize,
    {
        let mut consume = Some(consume);
        self.inner.poll_op(cx, |rx| {
            rx.try_recv_with(|items| consume.take().map_or(0, |f| f(items)))
        })
    }

    /// The receiver, for its counters, capacity and `try_` calls.
    pub fn get_ref(&self) -> &Receiver<T> {
        &self.inner.end
    }

    /// The receiver, for its `try_` calls and `len`. Do not block on it
    /// (`recv`, ...) inside a task. A liveness watched from here on is
    /// checked each time the end arms, but does not wake a waiting task:
    /// watch it before [`new`](Self::new).
    pub fn get_mut(&mut self) -> &mut Receiver<T> {
        &mut self.inner.end
    }

    /// Deregisters from the reactor and returns the receiver.
    pub fn into_inner(self) -> Receiver<T> {
        self.inner.end
    }
}

impl<T: Pod> fmt::Debug for AsyncReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncReceiver")
            .field("inner", &self.inner)
            .finish()
    }
}

/// Reads as a pipe's reading end does: at least one byte once one is
/// ready, and end of file (`Ok` with nothing read) once the sender is gone
/// and every byte was read. Cancel-safe.
///
/// ```
/// use tokio::io::AsyncReadExt;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let (mut tx, rx) = fdring::channel::<u8>(4096)?;
/// let mut rx = fdring::tokio::AsyncReceiver::new(rx)?;
/// tx.send_slice(b"hello")?;
/// drop(tx);
/// let mut text = String::new();
/// rx.read_to_string(&mut text).await?;
/// assert_eq!(text, "hello");
/// # Ok(())
/// # }
/// ```
impl AsyncRead for AsyncReceiver<u8> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let read = self.get_mut().inner.poll_op(cx, |rx| {
            rx.try_recv_with(|bytes| {
                let n = bytes.len().min(buf.remaining());
                buf.put_slice(&bytes[..n]);
                n
            })
        });
        match ready!(read) {
            Ok(_) | Err(Error::Disconnected) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }
}

/// The sending end of a ring, awaited on tokio's reactor.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), fdring::Error> {
/// let (tx, mut rx) = fdring::channel::<u32>(512)?;
/// let mut tx = fdring::tokio::AsyncSender::new(tx)?;
/// let consumer = std::thread::spawn(move || {
///     let mut count = 0;
///     while rx.recv().is_ok() {
///         count += 1;
///     }
///     count
/// });
/// for i in 0..10_000 {
///     tx.send(i).await?; // waits whenever the ring is full
/// }
/// tx.close();
/// assert_eq!(consumer.join().unwrap(), 10_000);
/// # Ok(())
/// # }
/// ```
pub struct AsyncSender<T: Pod> {
    /// `None` once closed.
    inner: Option<Registered<Sender<T>>>,
}

impl<T: Pod> AsyncSender<T> {
    /// Registers `sender` with the current tokio runtime's reactor. Call
    /// [`Sender::watch_peer`] first if it is to watch its peer.
    ///
    /// # Errors
    ///
    /// `Io` if the fds cannot be duplicated or registered; the sender is
    /// dropped then (which closes it).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or in one without I/O enabled.
    pub fn new(sender: Sender<T>) -> Result<AsyncSender<T>, Error> {
        Ok(AsyncSender {
            inner: Some(Registered::new(sender)?),
        })
    }

    /// Polls `op` on the sender; `Disconnected` once closed.
    fn poll_op<R>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnMut(&mut Sender<T>) -> Result<R, Error>,
    ) -> Poll<Result<R, Error>> {
        poll_open(&mut self.inner, cx, op)
    }

    /// Sends one item, waiting for room.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the item is published only in the poll that completes
    /// the call, so if the future is dropped before, it was not sent (`T`
    /// is `Copy`: you still have it).
    ///
    /// # Errors
    ///
    /// `Disconnected` if the receiver is gone or this end was closed,
    /// `Corrupted` if the receiver broke the protocol, `Io` if waiting
    /// failed.
    pub async fn send(&mut self, item: T) -> Result<(), Error> {
        poll_fn(|cx| self.poll_send(cx, item)).await
    }

    /// Lends every free slot, as one contiguous slice, to `fill` once at
    /// least one is free; `fill` writes the first `n` and returns `n`, and
    /// those are published. Returns `n`.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: `fill` runs only in the poll that completes the call,
    /// so a future dropped before it completes published nothing.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    ///
    /// # Panics
    ///
    /// If `fill` returns more than the length of the slice it was given.
    ///
    /// ```
    /// use std::mem::MaybeUninit;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let (tx, mut rx) = fdring::channel::<u64>(512)?;
    /// let mut tx = fdring::tokio::AsyncSender::new(tx)?;
    /// let sent = tx
    ///     .send_with(|slots: &mut [MaybeUninit<u64>]| {
    ///         for (i, slot) in slots.iter_mut().take(10).enumerate() {
    ///             slot.write(i as u64);
    ///         }
    ///         10
    ///     })
    ///     .await?;
    /// assert_eq!((sent, rx.len()), (10, 10));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_with<F>(&mut self, fill: F) -> Result<usize, Error>
    where
        F: FnOnce(&mut [MaybeUninit<T>]) -> usize,
    {
        let mut fill = Some(fill);
        poll_fn(|cx| {
            self.poll_op(cx, |tx| {
                // `try_send_with` calls the closure only when it succeeds,
                // and a success ends the call: `fill` is taken once.
                tx.try_send_with(|slots| fill.take().map_or(0, |f| f(slots)))
            })
        })
        .await
    }

    /// Sends all of `items`, in order, waiting for room as often as needed.
    ///
    /// # Cancel safety
    ///
    /// **Not** cancel-safe: if the future is dropped before it completes,
    /// a prefix of `items` may have been sent, and you cannot tell how
    /// long. Where that matters, loop over [`send_with`](Self::send_with),
    /// which tells how many it sent.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send); on error, a prefix may have been sent.
    pub async fn send_slice(&mut self, mut items: &[T]) -> Result<(), Error> {
        while !items.is_empty() {
            let sent = poll_fn(|cx| self.poll_op(cx, |tx| tx.try_send_slice(items))).await?;
            items = &items[sent..];
        }
        Ok(())
    }

    /// Polls to send `item`: `Ready` once it was sent (or with an error),
    /// or `Pending` with `cx`'s waker registered to be woken when a retry
    /// can make progress. The building block of [`send`](Self::send).
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub fn poll_send(&mut self, cx: &mut Context<'_>, item: T) -> Poll<Result<(), Error>> {
        self.poll_op(cx, |tx| tx.try_send(item))
    }

    /// Polls for free slots and lends them to `fill`, as
    /// [`send_with`](Self::send_with); if it returns `Pending`, `fill` was
    /// not called (and is dropped).
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    ///
    /// # Panics
    ///
    /// If `fill` returns more than the length of the slice it was given.
    pub fn poll_send_with<F>(&mut self, cx: &mut Context<'_>, fill: F) -> Poll<Result<usize, Error>>
    where
        F: FnOnce(&mut [MaybeUninit<T>]) -> usize,
    {
        let mut fill = Some(fill);
        self.poll_op(cx, |tx| {
            tx.try_send_with(|slots| fill.take().map_or(0, |f| f(slots)))
        })
    }

    /// Closes this end as dropping it would: the receiver gets every item
    /// sent so far, then `Disconnected` (end of file for bytes). Every
    /// later call returns `Disconnected`. [`AsyncWrite::poll_shutdown`]
    /// does the same.
    pub fn close(&mut self) {
        self.inner = None;
    }

    /// The sender, for its counters, capacity and `try_` calls; `None`
    /// once closed.
    pub fn get_ref(&self) -> Option<&Sender<T>> {
        self.inner.as_ref().map(|inner| &inner.end)
    }

    /// The sender, for its `try_` calls and `len`; `None` once closed. Do
    /// not block on it (`send`, ...) inside a task. A liveness watched from
    /// here on is checked each time the end arms, but does not wake a
    /// waiting task: watch it before [`new`](Self::new).
    pub fn get_mut(&mut self) -> Option<&mut Sender<T>> {
        self.inner.as_mut().map(|inner| &mut inner.end)
    }

    /// Deregisters from the reactor and returns the sender; `None` if it
    /// was closed.
    pub fn into_inner(self) -> Option<Sender<T>> {
        self.inner.map(|inner| inner.end)
    }
}

impl<T: Pod> fmt::Debug for AsyncSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncSender")
            .field("inner", &self.inner)
            .finish()
    }
}

/// Writes as a pipe's writing end does: as many bytes as there is room
/// for, once there is room for one; a receiver that is gone is
/// `BrokenPipe`. Flushing does nothing (written bytes are visible at
/// once); shutting down closes the ring, so that the reader gets end of
/// file. `poll_write` is cancel-safe.
///
/// ```
/// use tokio::io::AsyncWriteExt;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let (tx, mut rx) = fdring::channel::<u8>(4096)?;
/// let mut tx = fdring::tokio::AsyncSender::new(tx)?;
/// tx.write_all(b"hello").await?;
/// tx.shutdown().await?;
/// let mut buf = [0u8; 16];
/// let n = rx.recv_slice(&mut buf)?;
/// assert_eq!(&buf[..n], b"hello");
/// assert_eq!(rx.recv(), Err(fdring::Error::Disconnected));
/// # Ok(())
/// # }
/// ```
impl AsyncWrite for AsyncSender<u8> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let written = ready!(self.get_mut().poll_op(cx, |tx| tx.try_send_slice(buf)));
        Poll::Ready(written.map_err(io::Error::from))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().close();
        Poll::Ready(Ok(()))
    }
}
