//! `tokio` support (cargo feature `tokio`): [`AsyncSender`] and
//! [`AsyncReceiver`], the two ends of a ring awaited on tokio's
//! [`AsyncFd`], and [`AsyncFrameSender`] and [`AsyncFrameReceiver`], the
//! two ends of a ring of frames.
//!
//! This module owns the readiness loop between an end and the tokio
//! reactor, one loop for all four wrappers. It knows the public API of
//! `channel` and `frame`, and tokio; nothing of the ring, the header or
//! the wake-up protocol beyond `prepare_wait`.
//!
//! ```
//! use fdring::tokio::{AsyncReceiver, AsyncSender};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), fdring::Error> {
//! let (tx, rx) = fdring::channel::<u64>(4096)?;
//! let (mut tx, mut rx) = (AsyncSender::new(tx)?, AsyncReceiver::new(rx)?);
//! let producer = tokio::spawn(async move {
//!     for i in 0..100_000u64 {
//!         tx.send(i).await?;
//!     }
//!     Ok::<(), fdring::Error>(()) // dropping `tx` closes the ring
//! });
//! let mut next = 0u64;
//! loop {
//!     match rx.recv().await {
//!         Ok(item) => {
//!             assert_eq!(item, next);
//!             next += 1;
//!         }
//!         Err(fdring::Error::Disconnected) => break,
//!         Err(e) => return Err(e),
//!     }
//! }
//! assert_eq!(next, 100_000);
//! producer.await.unwrap()?;
//! # Ok(())
//! # }
//! ```
//!
//! # How it waits
//!
//! Each call first tries the ring, which costs no system call. Only when
//! the ring is empty (receiving) or full (sending; for a frame, without
//! room for that frame) does it arm the end (`prepare_wait`) and wait for
//! the reactor to report the end's wake-up socket readable, which happens
//! when a retry can make progress, the peer closes, or the peer's process
//! dies (a hang-up). An end that watches its peer
//! ([`Receiver::watch_peer`] and the like, before wrapping it) has its
//! [`Liveness`] fd watched as well. One release by a frame receiver may
//! not free room enough for the frame a sender waits to send: it then
//! arms again and waits on.
//!
//! In a process that cannot call `membarrier` ([`crate::poll_timeout`] is
//! `Some`), a waiting task is also woken every millisecond to look at the
//! ring again, by a thread of the crate's started on first need, so that a
//! wake-up lost for want of the barrier delays it by at most that.
//!
//! A task that always finds the ring ready would never return to the
//! scheduler; after 128 ready results in a row, a call returns `Pending`
//! once (waking itself at once), so that the other tasks of its worker
//! run too.
//!
//! # Cancel safety
//!
//! Nothing is taken out of the ring, or put into it, except in the poll
//! that completes the call; a call that waits holds no item and no frame.
//! So dropping a pending `recv`, `recv_with`, `recv_slice`, `send`,
//! `send_with`, `recv_frame`, `recv_frame_with`, `recv_latest_with`,
//! `send_frame` or `send_frame_with` (for instance the losing branch of
//! `tokio::select!`) loses nothing and leaves the ring as it was; the end
//! may stay armed, which costs at most one spurious wake-up. `send_slice`
//! is the exception, as `AsyncWriteExt::write_all` is: a prefix of the
//! slice may have been sent.
//!
//! # Rules
//!
//! The ends must be created inside a tokio runtime with I/O enabled
//! (`enable_io` or `enable_all`). Each wrapper keeps a duplicate of the
//! end's wake-up socket (and of its liveness fd) registered with the
//! reactor: one or two fds more per end.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use ::tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use ::tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use bytemuck::Pod;

use crate::event_loop::{LoopEnd, MAX_ATTEMPTS};
use crate::{Error, Frame, FrameMut, FrameReceiver, FrameSender, Liveness, Receiver, Sender};

/// Ready results in a row after which a call yields to the scheduler
/// once (tokio's own budget per task is 128 operations).
const BUDGET: u32 = 128;

/// An end and its registrations with the reactor.
struct Registered<E> {
    end: E,
    /// A duplicate of the end's wake-up socket: registering a descriptor
    /// this struct owns keeps `AsyncFd`'s requirements local (it must stay
    /// open and the same until deregistered), whatever the end does.
    wake: AsyncFd<OwnedFd>,
    /// A duplicate of the peer's liveness fd, if the end watches one.
    peer: Option<AsyncFd<OwnedFd>>,
    /// Ready results in a row (see [`BUDGET`]).
    streak: u32,
}

/// Registers a duplicate of `fd` for readable.
fn register(fd: &impl AsFd, what: &'static str) -> Result<AsyncFd<OwnedFd>, Error> {
    let fd = fd
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Error::io(what, e))?;
    // SAFETY: `AsyncFd::register_with_interest` requires the fd to be open
    // and to name the same open file description until the `AsyncFd` is
    // dropped or `into_inner` is called, and `as_raw_fd` to return the same
    // number meanwhile. An `OwnedFd` owns its descriptor: it closes it only
    // when dropped, which the `AsyncFd` does after deregistering it, and its
    // `as_raw_fd` always returns that descriptor.
    let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
    registered.map_err(|e| Error::io(what, e.into_parts().1))
}

impl<E: LoopEnd> Registered<E> {
    fn new(end: E) -> Result<Registered<E>, Error> {
        let wake = register(&end, "registering the wake-up socket with tokio")?;
        let peer = match end.peer_liveness() {
            Some(liveness) => Some(register(
                &liveness,
                "registering the peer's liveness fd with tokio",
            )?),
            None => None,
        };
        Ok(Registered {
            end,
            wake,
            peer,
            streak: 0,
        })
    }

    /// Runs `op`, a `try_` call, until it does not return `Empty`/`Full`;
    /// `Pending` (with the waker registered) once the end is armed and the
    /// reactor has reported nothing since.
    ///
    /// The order matters under edge-triggered readiness. Readiness reported
    /// by the reactor may be stale (a wake-up already drained), so it is
    /// cleared, but only after a drain and arm (`prepare_wait`) made
    /// *after* it was observed, so that a wake-up it stood for was read by
    /// that drain. `clear_ready` keeps readiness the reactor reported after
    /// the guard was taken, so a wake-up for the new arming is not lost.
    fn poll_op<R>(
        &mut self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&mut E) -> Result<R, Error>,
    ) -> Poll<Result<R, Error>> {
        if self.streak >= BUDGET {
            self.streak = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let mut guard: Option<AsyncFdReadyGuard<'_, OwnedFd>> = None;
        let mut attempts = 0;
        loop {
            match op(&mut self.end) {
                Err(Error::Empty | Error::Full) => {}
                done => {
                    self.streak += 1;
                    return Poll::Ready(done);
                }
            }
            if !self.end.arm()? {
                // Progress meanwhile, or the peer is gone: retry now. (A
                // peer flooding the wake-up socket gets the task
                // rescheduled instead of holding its worker.)
                attempts += 1;
                if attempts >= MAX_ATTEMPTS {
                    self.streak = 0;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                continue;
            }
            // Armed. What the reactor reported before the drain is stale.
            if let Some(mut stale) = guard.take() {
                stale.clear_ready();
            }
            match self.wake.poll_read_ready(cx) {
                Poll::Ready(ready) => {
                    let ready = ready.map_err(|e| Error::io("waiting on the wake-up socket", e))?;
                    // Perhaps only the readiness of a wake-up already
                    // drained: retry, and clear it after the next arming.
                    guard = Some(ready);
                }
                Poll::Pending => match poll_peer_gone(self.peer.as_ref(), &self.end, cx) {
                    Poll::Pending => {
                        // Armed, and the waker registered: a real wait,
                        // which ends the streak of ready results.
                        self.streak = 0;
                        if let Some(slice) = crate::poll_timeout() {
                            wake_after(slice, cx.waker());
                        }
                        return Poll::Pending;
                    }
                    // The peer's liveness fired: the retry (through
                    // `arm`) reports what is left, then the end.
                    Poll::Ready(gone) => gone?,
                },
            }
        }
    }
}

/// Wakes `waker` within `slice`: every waker handed in is woken at the
/// next tick of one thread, started on first use, that ticks every
/// `slice`. It runs only in a process that cannot call `membarrier`, and
/// needs no timer from the runtime. If the thread cannot be started, the
/// task is woken at once (it then polls the ring instead of sleeping).
fn wake_after(slice: Duration, waker: &Waker) {
    static DUE: Mutex<Vec<Waker>> = Mutex::new(Vec::new());
    static TICKER: OnceLock<bool> = OnceLock::new();
    let due = || DUE.lock().unwrap_or_else(PoisonError::into_inner);
    let ticking = *TICKER.get_or_init(|| {
        std::thread::Builder::new()
            .name("fdring-tick".into())
            .spawn(move || loop {
                std::thread::sleep(slice);
                std::mem::take(&mut *due())
                    .into_iter()
                    .for_each(Waker::wake);
            })
            .is_ok()
    });
    if ticking {
        due().push(waker.clone());
    } else {
        waker.wake_by_ref();
    }
}

/// Ready when the watched liveness says the peer is gone; `Pending` (with
/// the waker registered) otherwise, or when nothing is watched.
fn poll_peer_gone(
    peer: Option<&AsyncFd<OwnedFd>>,
    end: &impl LoopEnd,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Error>> {
    let Some(peer) = peer else {
        return Poll::Pending;
    };
    loop {
        let mut guard = ready!(peer.poll_read_ready(cx))
            .map_err(|e| Error::io("waiting on the peer's liveness fd", e))?;
        // A socket liveness is readable when data arrives, too: only a
        // hang-up (or an exited pidfd) means gone. A gone peer stays gone,
        // so that readiness is never cleared.
        if end.peer_liveness().map_or(true, Liveness::is_gone) {
            return Poll::Ready(Ok(()));
        }
        guard.clear_ready();
    }
}

/// Polls `op` on a sending end that [`close`](AsyncSender::close) may
/// have dropped: `Disconnected` once it has.
fn poll_open<E: LoopEnd, R>(
    inner: &mut Option<Registered<E>>,
    cx: &mut Context<'_>,
    op: impl FnMut(&mut E) -> Result<R, Error>,
) -> Poll<Result<R, Error>> {
    match inner {
        Some(inner) => inner.poll_op(cx, op),
        None => Poll::Ready(Err(Error::Disconnected)),
    }
}

impl<E: fmt::Debug> fmt::Debug for Registered<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registered")
            .field("end", &self.end)
            .field("wake", &self.wake)
            .field("peer", &self.peer)
            .finish()
    }
}

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
    /// assert_eq!((sent, rx.len()?), (10, 10));
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
