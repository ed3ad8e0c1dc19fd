//! [`AsyncMerge`], [`AsyncDispatch`] and [`AsyncPool`]: the topologies on
//! the readiness loop of the parent module, each registered as one fd (its
//! epoll instance) whatever the number of rings it serves.

use std::fmt;
use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::task::{Context, Poll};

use bytemuck::Pod;

use super::Registered;
use crate::topology::{Dispatch, Key, Merge, Next, Pool, Source};
use crate::{Error, Frame, FrameReceiver, Receiver};

/// Why a completed receive holds `consume`'s result: a frame is lent only
/// by the poll that completes the call, and that poll called `consume`.
const CONSUMED_ONCE: &str = "a frame is lent only by the call that completes";

/// A [`Merge`] awaited on tokio's reactor: one task receives from any
/// number of rings, fairly, with one registration, and sleeps while none
/// has anything.
///
/// The merge's calls run as they do without tokio (round-robin turns, a
/// budget per turn, each source ended once with [`Next::Ended`]); only
/// where its `try_` calls would return `Empty` (every source armed) does
/// a call wait, for the merge's epoll instance to become readable.
///
/// ```
/// use fdring::topology::{Merge, Next};
/// use fdring::tokio::AsyncMerge;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), fdring::Error> {
/// let mut merge = Merge::new()?;
/// for producer in 0..4u64 {
///     let (mut tx, rx) = fdring::channel::<u64>(1024)?;
///     merge.add(rx)?;
///     std::thread::spawn(move || {
///         for i in 0..1000 {
///             tx.send(producer << 32 | i).unwrap();
///         }
///     });
/// }
/// let mut merge = AsyncMerge::new(merge)?;
/// let (mut items, mut ended) = (0, 0);
/// // `Disconnected` once every source ended: no more can come.
/// while let Ok(next) = merge.recv().await {
///     match next {
///         Next::Ready(_key, _item) => items += 1,
///         Next::Ended(_key, _why) => ended += 1,
///         _ => {}
///     }
/// }
/// assert_eq!((items, ended), (4000, 4));
/// # Ok(())
/// # }
/// ```
pub struct AsyncMerge<S: Source> {
    inner: Registered<Merge<S>>,
}

impl<S: Source> AsyncMerge<S> {
    /// Registers the merge's epoll instance with the current tokio
    /// runtime's reactor. Sources may be added before or after (with
    /// [`get_mut`](Self::get_mut)): the fd stays the same.
    ///
    /// # Errors
    ///
    /// `Io` if the fd cannot be duplicated or registered; the merge is
    /// dropped then (which closes its sources).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or in one without I/O enabled.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let merge = fdring::topology::Merge::<fdring::Receiver<u64>>::new()?;
    /// let merge = fdring::tokio::AsyncMerge::new(merge)?;
    /// assert!(merge.get_ref().is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(merge: Merge<S>) -> Result<AsyncMerge<S>, Error> {
        Ok(AsyncMerge {
            inner: Registered::new(merge)?,
        })
    }

    /// The merge, for its sources and their keys.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut merge = fdring::topology::Merge::new()?;
    /// let (_tx, rx) = fdring::channel::<u64>(512)?;
    /// let key = merge.add(rx)?;
    /// let merge = fdring::tokio::AsyncMerge::new(merge)?;
    /// assert_eq!(merge.get_ref().keys().collect::<Vec<_>>(), [key]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_ref(&self) -> &Merge<S> {
        &self.inner.end
    }

    /// The merge, to add and remove sources, and for its `try_` calls. Do
    /// not block on it (`recv`, ...) inside a task. A source added here is
    /// looked at by the next call.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// use fdring::topology::{Merge, Next};
    ///
    /// let mut merge = fdring::tokio::AsyncMerge::new(Merge::new()?)?;
    /// let (mut tx, rx) = fdring::channel::<u64>(512)?;
    /// let key = merge.get_mut().add(rx)?;
    /// tx.send(3)?;
    /// assert_eq!(merge.recv().await?, Next::Ready(key, 3));
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_mut(&mut self) -> &mut Merge<S> {
        &mut self.inner.end
    }

    /// Deregisters from the reactor and returns the merge.
    ///
    /// ```
    /// use fdring::topology::{Merge, Next};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut merge = Merge::new()?;
    /// let (mut tx, rx) = fdring::channel::<u64>(512)?;
    /// let key = merge.add(rx)?;
    /// let merge = fdring::tokio::AsyncMerge::new(merge)?;
    /// let mut merge = merge.into_inner(); // blocking calls again, off the runtime
    /// tx.send(1)?;
    /// assert_eq!(merge.try_recv()?, Next::Ready(key, 1));
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_inner(self) -> Merge<S> {
        self.inner.end
    }
}

impl<T: Pod> AsyncMerge<Receiver<T>> {
    /// The next item of the source whose turn it is, with its key, or news
    /// of a source, waiting until there is one:
    /// [`Merge::try_recv`], awaited.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: an item is taken out of a ring, and news is taken out
    /// of the merge, only in the poll that returns it. A future dropped
    /// before it completes took nothing; the next call gets it.
    ///
    /// # Errors
    ///
    /// `Disconnected` once there is no source and no listener (every
    /// source was ended, and reported); `Io` if the kernel fails a call.
    /// A source's own errors end that source ([`Next::Ended`]), never the
    /// merge.
    ///
    /// ```
    /// use fdring::topology::{Merge, Next};
    /// use fdring::Error;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut merge = Merge::new()?;
    /// let (mut tx, rx) = fdring::channel::<u64>(512)?;
    /// let key = merge.add(rx)?;
    /// let mut merge = fdring::tokio::AsyncMerge::new(merge)?;
    /// std::thread::spawn(move || tx.send(8)); // then closes the ring
    /// assert_eq!(merge.recv().await?, Next::Ready(key, 8));
    /// assert_eq!(merge.recv().await?, Next::Ended(key, Error::Disconnected));
    /// assert_eq!(merge.recv().await, Err(Error::Disconnected));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Result<Next<T>, Error> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Lends the ready items of the source whose turn it is (at most what
    /// is left of its budget, as one contiguous slice) to `consume`, with
    /// its key, once one has any; `consume` returns how many it took,
    /// which are released. Returns that count, or news of a source:
    /// [`Merge::try_recv_with`], awaited.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: `consume` runs only in the poll that completes the
    /// call, so a future dropped before it completes took nothing.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    ///
    /// # Panics
    ///
    /// If `consume` returns more than the length of the slice it was lent.
    ///
    /// ```
    /// use fdring::topology::{Merge, Next};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut merge = Merge::new()?;
    /// let (mut tx, rx) = fdring::channel::<u64>(512)?;
    /// merge.add(rx)?;
    /// let mut merge = fdring::tokio::AsyncMerge::new(merge)?;
    /// std::thread::spawn(move || tx.send_slice(&[1, 2, 3]));
    /// let mut sum = 0;
    /// while let Ok(Next::Ready(_, n)) = merge
    ///     .recv_with(|_key, items: &[u64]| {
    ///         sum += items.iter().sum::<u64>();
    ///         items.len()
    ///     })
    ///     .await
    /// {
    ///     assert!(n > 0);
    /// }
    /// assert_eq!(sum, 6); // then `Ended(key, Disconnected)` stopped the loop
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_with<F>(&mut self, consume: F) -> Result<Next<usize>, Error>
    where
        F: FnOnce(Key, &[T]) -> usize,
    {
        let mut consume = Some(consume);
        poll_fn(|cx| {
            self.inner.poll_op(cx, |merge| {
                // The merge lends items only in a call that then returns
                // them: `consume` is taken once.
                merge.try_recv_with(|key, items| consume.take().map_or(0, |f| f(key, items)))
            })
        })
        .await
    }

    /// Polls for the next item or news: `Ready` with it (or with an
    /// error), or `Pending` with `cx`'s waker registered to be woken when
    /// a source may have something. The building block of
    /// [`recv`](Self::recv), for your own futures and streams.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use fdring::topology::{Merge, Next};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut merge = Merge::new()?;
    /// let (mut tx, rx) = fdring::channel::<u16>(512)?;
    /// let key = merge.add(rx)?;
    /// let mut merge = fdring::tokio::AsyncMerge::new(merge)?;
    /// tx.send(9)?;
    /// assert_eq!(poll_fn(|cx| merge.poll_recv(cx)).await?, Next::Ready(key, 9));
    /// # Ok(())
    /// # }
    /// ```
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Next<T>, Error>> {
        self.inner.poll_op(cx, Merge::try_recv)
    }
}

impl AsyncMerge<FrameReceiver> {
    /// Waits for the next frame of the source whose turn it is, lends it
    /// in place to `consume` with its key, releases it, and returns what
    /// `consume` returned; or news of a source:
    /// [`Merge::try_recv_frame_with`], awaited.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: `consume` runs, and the frame is released, only in the
    /// poll that completes the call.
    ///
    /// # Errors
    ///
    /// As for [`AsyncMerge::recv`]; a source whose frames break the format
    /// is ended with `Corrupted`.
    ///
    /// ```
    /// use fdring::topology::{Merge, Next};
    /// use fdring::{FrameReceiver, FrameSender};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut merge = Merge::new()?;
    /// for camera in 0..3u64 {
    ///     let (tx, rx) = fdring::channel::<u8>(64 * 1024)?;
    ///     merge.add(FrameReceiver::new(rx))?;
    ///     let mut tx = FrameSender::new(tx);
    ///     std::thread::spawn(move || {
    ///         for n in 0..10u64 {
    ///             tx.send_frame(camera << 32 | n, &[n as u8; 5000]).unwrap();
    ///         }
    ///     });
    /// }
    /// let mut merge = fdring::tokio::AsyncMerge::new(merge)?;
    /// let mut frames = 0;
    /// while let Ok(next) = merge.recv_frame_with(|_key, frame| frame.len()).await {
    ///     if let Next::Ready(_key, len) = next {
    ///         assert_eq!(len, 5000);
    ///         frames += 1;
    ///     }
    /// }
    /// assert_eq!(frames, 30);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_frame_with<X, F>(&mut self, consume: F) -> Result<Next<X>, Error>
    where
        F: FnOnce(Key, Frame<'_>) -> X,
    {
        let mut consume = Some(consume);
        let lent = poll_fn(|cx| {
            self.inner.poll_op(cx, |merge| {
                merge.try_recv_frame_with(|key, frame| consume.take().map(|f| f(key, frame)))
            })
        })
        .await?;
        Ok(match lent {
            Next::Ready(key, out) => Next::Ready(key, out.expect(CONSUMED_ONCE)),
            Next::Joined(key) => Next::Joined(key),
            Next::Ended(key, why) => Next::Ended(key, why),
            Next::Refused(why) => Next::Refused(why),
        })
    }

    /// Waits for the next frame of the source whose turn it is and copies
    /// it into `buf` (replacing its contents); returns its tag, or news of
    /// a source: [`Merge::try_recv_frame`], awaited.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: `buf` is written, and the frame released, only in the
    /// poll that completes the call.
    ///
    /// # Errors
    ///
    /// As for [`recv_frame_with`](Self::recv_frame_with); a frame too
    /// large to allocate ends its source with `Exhausted`.
    ///
    /// ```
    /// use fdring::topology::{Merge, Next};
    /// use fdring::{FrameReceiver, FrameSender};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut merge = Merge::new()?;
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let key = merge.add(FrameReceiver::new(rx))?;
    /// let mut merge = fdring::tokio::AsyncMerge::new(merge)?;
    /// FrameSender::new(tx).send_frame(5, b"hello")?;
    /// let mut buf = Vec::new();
    /// assert_eq!(merge.recv_frame(&mut buf).await?, Next::Ready(key, 5));
    /// assert_eq!(buf, b"hello");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_frame(&mut self, buf: &mut Vec<u8>) -> Result<Next<u64>, Error> {
        poll_fn(|cx| self.inner.poll_op(cx, |merge| merge.try_recv_frame(buf))).await
    }
}

impl<S: Source> fmt::Debug for AsyncMerge<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncMerge")
            .field("inner", &self.inner)
            .finish()
    }
}

/// A [`Dispatch`] awaited on tokio's reactor: one task sends to any number
/// of receivers by a policy, with one registration, and sleeps while
/// every one is full.
///
/// ```
/// use fdring::topology::{Dispatch, Policy};
/// use fdring::tokio::AsyncDispatch;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), fdring::Error> {
/// let mut dispatch = Dispatch::new(Policy::RoundRobin)?;
/// let mut workers = Vec::new();
/// for _ in 0..3 {
///     let (tx, mut rx) = fdring::channel::<u64>(512)?;
///     dispatch.add(tx)?;
///     workers.push(std::thread::spawn(move || rx.iter().sum::<u64>()));
/// }
/// let mut dispatch = AsyncDispatch::new(dispatch)?;
/// for job in 1..=100_000u64 {
///     dispatch.send(job).await?; // waits whenever every ring is full
/// }
/// drop(dispatch); // closes every ring: the workers finish
/// let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
/// assert_eq!(total, 100_000 * 100_001 / 2);
/// # Ok(())
/// # }
/// ```
pub struct AsyncDispatch<T: Pod> {
    inner: Registered<Dispatch<T>>,
}

impl<T: Pod> AsyncDispatch<T> {
    /// Registers the dispatch's epoll instance with the current tokio
    /// runtime's reactor. Members may be added before or after (with
    /// [`get_mut`](Self::get_mut)): the fd stays the same.
    ///
    /// # Errors
    ///
    /// `Io` if the fd cannot be duplicated or registered; the dispatch is
    /// dropped then (which closes its rings).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or in one without I/O enabled.
    ///
    /// ```
    /// use fdring::topology::{Dispatch, Policy};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let dispatch = fdring::tokio::AsyncDispatch::new(Dispatch::<u64>::new(Policy::LeastLoaded)?)?;
    /// assert!(dispatch.get_ref().is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(dispatch: Dispatch<T>) -> Result<AsyncDispatch<T>, Error> {
        Ok(AsyncDispatch {
            inner: Registered::new(dispatch)?,
        })
    }

    /// Sends `item` to the receiver the policy picks among those with
    /// room, waiting until one has; returns its key:
    /// [`Dispatch::try_send`], awaited. A member found gone on the way is
    /// removed, and what it never read kept for
    /// [`Dispatch::take_lost`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the item is published only in the poll that completes
    /// the call, so if the future is dropped before, it was not sent (`T`
    /// is `Copy`: you still have it).
    ///
    /// # Errors
    ///
    /// `Disconnected` if there is no member (any more); `Io` if the
    /// kernel fails a call.
    ///
    /// ```
    /// use fdring::topology::{Dispatch, Policy};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut dispatch = Dispatch::new(Policy::RoundRobin)?;
    /// let (tx, mut rx) = fdring::channel::<u64>(512)?;
    /// let key = dispatch.add(tx)?;
    /// let mut dispatch = fdring::tokio::AsyncDispatch::new(dispatch)?;
    /// let reader = std::thread::spawn(move || rx.iter().count());
    /// for i in 0..10_000 {
    ///     assert_eq!(dispatch.send(i).await?, key); // waits while the ring is full
    /// }
    /// drop(dispatch);
    /// assert_eq!(reader.join().unwrap(), 10_000);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send(&mut self, item: T) -> Result<Key, Error> {
        poll_fn(|cx| self.poll_send(cx, item)).await
    }

    /// Lends the free slots of the member the policy picks (one contiguous
    /// slice, at least one slot) to `fill` with its key, once one has
    /// room; `fill` writes the first `n` and returns `n`, which are
    /// published. Returns the key and `n`: [`Dispatch::try_send_with`],
    /// awaited.
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
    /// If `fill` returns more than the length of the slice it was lent.
    ///
    /// ```
    /// use std::mem::MaybeUninit;
    /// use fdring::topology::{Dispatch, Key, Policy};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut dispatch = Dispatch::new(Policy::LeastLoaded)?;
    /// let (tx, mut rx) = fdring::channel::<u64>(512)?;
    /// let key = dispatch.add(tx)?;
    /// let mut dispatch = fdring::tokio::AsyncDispatch::new(dispatch)?;
    /// let sent = dispatch
    ///     .send_with(|_key: Key, slots: &mut [MaybeUninit<u64>]| {
    ///         for (i, slot) in slots.iter_mut().take(10).enumerate() {
    ///             slot.write(i as u64);
    ///         }
    ///         10
    ///     })
    ///     .await?;
    /// assert_eq!((sent, rx.len()), ((key, 10), 10));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_with<F>(&mut self, fill: F) -> Result<(Key, usize), Error>
    where
        F: FnOnce(Key, &mut [MaybeUninit<T>]) -> usize,
    {
        let mut fill = Some(fill);
        poll_fn(|cx| {
            self.inner.poll_op(cx, |dispatch| {
                // The dispatch lends slots only in a call that then
                // publishes them: `fill` is taken once.
                dispatch.try_send_with(|key, slots| fill.take().map_or(0, |f| f(key, slots)))
            })
        })
        .await
    }

    /// Polls to send `item`: `Ready` with the key of the member it went to
    /// (or with an error), or `Pending` with `cx`'s waker registered to be
    /// woken when a member may have room. The building block of
    /// [`send`](Self::send).
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use fdring::topology::{Dispatch, Policy};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut dispatch = Dispatch::new(Policy::RoundRobin)?;
    /// let (tx, mut rx) = fdring::channel::<u16>(512)?;
    /// let key = dispatch.add(tx)?;
    /// let mut dispatch = fdring::tokio::AsyncDispatch::new(dispatch)?;
    /// assert_eq!(poll_fn(|cx| dispatch.poll_send(cx, 4)).await?, key);
    /// assert_eq!(rx.recv()?, 4);
    /// # Ok(())
    /// # }
    /// ```
    pub fn poll_send(&mut self, cx: &mut Context<'_>, item: T) -> Poll<Result<Key, Error>> {
        self.inner.poll_op(cx, |dispatch| dispatch.try_send(item))
    }

    /// The dispatch, for its members and [`in_flight`](Dispatch::in_flight).
    ///
    /// ```
    /// use fdring::topology::{Dispatch, Policy};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut dispatch = Dispatch::new(Policy::RoundRobin)?;
    /// let (tx, _rx) = fdring::channel::<u64>(512)?;
    /// dispatch.add(tx)?;
    /// let mut dispatch = fdring::tokio::AsyncDispatch::new(dispatch)?;
    /// dispatch.send(1).await?;
    /// assert_eq!(dispatch.get_ref().in_flight(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_ref(&self) -> &Dispatch<T> {
        &self.inner.end
    }

    /// The dispatch, to add and remove members, for
    /// [`take_lost`](Dispatch::take_lost) and its `try_` calls. Do not
    /// block on it (`send`, `wait_drained`, ...) inside a task.
    ///
    /// ```
    /// use fdring::topology::{Dispatch, Policy};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut dispatch = fdring::tokio::AsyncDispatch::new(Dispatch::new(Policy::RoundRobin)?)?;
    /// let (tx, rx) = fdring::channel::<u64>(512)?;
    /// let key = dispatch.get_mut().add(tx)?;
    /// dispatch.send(1).await?;
    /// drop(rx); // the receiver leaves with the item unread
    /// let lost = dispatch.get_mut().take_lost()?.expect("a lost member");
    /// assert_eq!((lost.key, lost.unread), (key, vec![1]));
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_mut(&mut self) -> &mut Dispatch<T> {
        &mut self.inner.end
    }

    /// Deregisters from the reactor and returns the dispatch.
    ///
    /// ```
    /// use fdring::topology::{Dispatch, Policy};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let dispatch = fdring::tokio::AsyncDispatch::new(Dispatch::<u64>::new(Policy::RoundRobin)?)?;
    /// let dispatch = dispatch.into_inner();
    /// assert!(dispatch.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_inner(self) -> Dispatch<T> {
        self.inner.end
    }
}

impl<T: Pod> fmt::Debug for AsyncDispatch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncDispatch")
            .field("inner", &self.inner)
            .finish()
    }
}

/// A [`Pool`] awaited on tokio's reactor: jobs out to the workers, replies
/// back, with one registration for every worker's two rings.
///
/// A [`send`](Self::send) that finds no room waits for room only (it arms
/// the job rings, [`Pool::prepare_wait_to_send`]), a
/// [`recv`](Self::recv) that finds no reply waits for replies only
/// ([`Pool::prepare_wait_to_recv`]): so a task that has sent every job
/// and awaits the replies is not woken as the workers take jobs. Both
/// wait on the pool's one fd, which a ring of the other direction, armed
/// by an earlier call, may make readable: that costs the waiting call a
/// retry, no more. Both take `&mut self`; a task with jobs to send and
/// replies to receive loops over the `try_` calls
/// ([`get_mut`](Self::get_mut)) and awaits [`wait`](Self::wait) when both
/// would block, or sends a batch and then receives, as below.
///
/// ```
/// use fdring::topology::{Next, Policy, Pool};
/// use fdring::tokio::AsyncPool;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), fdring::Error> {
/// let mut pool = Pool::<u64, u64>::new(Policy::RoundRobin)?;
/// for _ in 0..4 {
///     let (jobs_tx, mut jobs) = fdring::channel::<u64>(512)?;
///     let (mut replies, replies_rx) = fdring::channel::<u64>(4096)?;
///     pool.add(jobs_tx, replies_rx)?;
///     std::thread::spawn(move || {
///         while let Ok(job) = jobs.recv() {
///             replies.send(job * 2).unwrap();
///         }
///     });
/// }
/// let mut pool = AsyncPool::new(pool)?;
/// let mut sum = 0;
/// for batch in 0..10u64 {
///     // At most 1000 unanswered jobs: fewer than a worker's reply ring
///     // holds, so no worker waits on its replies while we send.
///     for job in batch * 1000..(batch + 1) * 1000 {
///         pool.send(job).await?;
///     }
///     while pool.get_ref().in_flight() > 0 {
///         if let Next::Ready(_worker, reply) = pool.recv().await? {
///             sum += reply;
///         }
///     }
/// }
/// assert_eq!(sum, 9_999 * 10_000);
/// # Ok(())
/// # }
/// ```
pub struct AsyncPool<J: Pod, R: Pod> {
    inner: Registered<Pool<J, R>>,
}

impl<J: Pod, R: Pod> AsyncPool<J, R> {
    /// Registers the pool's epoll instance with the current tokio
    /// runtime's reactor. Workers may be added before or after (with
    /// [`get_mut`](Self::get_mut)): the fd stays the same.
    ///
    /// # Errors
    ///
    /// `Io` if the fd cannot be duplicated or registered; the pool is
    /// dropped then (which closes its rings).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or in one without I/O enabled.
    ///
    /// ```
    /// use fdring::topology::{Policy, Pool};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let pool = fdring::tokio::AsyncPool::new(Pool::<u64, u64>::new(Policy::RoundRobin)?)?;
    /// assert_eq!(pool.get_ref().in_flight(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(pool: Pool<J, R>) -> Result<AsyncPool<J, R>, Error> {
        Ok(AsyncPool {
            inner: Registered::new(pool)?,
        })
    }

    /// Sends a job to the worker the policy picks among those with room,
    /// waiting until one has; returns its key: [`Pool::try_send`],
    /// awaited. While it waits, only the job rings are armed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the job is published only in the poll that completes
    /// the call; a future dropped before it completes sent nothing.
    ///
    /// # Errors
    ///
    /// `Disconnected` if there is no worker (any more); `Io` if the
    /// kernel fails a call.
    ///
    /// ```
    /// use fdring::topology::{Next, Policy, Pool};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut pool = Pool::<u64, u64>::new(Policy::RoundRobin)?;
    /// let (jobs_tx, mut jobs) = fdring::channel::<u64>(512)?;
    /// let (mut replies, replies_rx) = fdring::channel::<u64>(512)?;
    /// let worker = pool.add(jobs_tx, replies_rx)?;
    /// std::thread::spawn(move || {
    ///     while let Ok(job) = jobs.recv() {
    ///         replies.send(job * 10).unwrap();
    ///     }
    /// });
    /// let mut pool = fdring::tokio::AsyncPool::new(pool)?;
    /// assert_eq!(pool.send(4).await?, worker);
    /// assert_eq!(pool.recv().await?, Next::Ready(worker, 40));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send(&mut self, job: J) -> Result<Key, Error> {
        poll_fn(|cx| self.inner.poll_op(cx, |pool| pool.try_send(job))).await
    }

    /// Lends the free job slots of the worker the policy picks to `fill`,
    /// with its key, once one has room; `fill` writes the first `n` and
    /// returns `n`, which are published: [`Pool::try_send_with`],
    /// awaited.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: `fill` runs only in the poll that completes the call.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    ///
    /// # Panics
    ///
    /// If `fill` returns more than the length of the slice it was lent.
    ///
    /// ```
    /// use std::mem::MaybeUninit;
    /// use fdring::topology::{Key, Next, Policy, Pool};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut pool = Pool::<u32, u32>::new(Policy::RoundRobin)?;
    /// let (jobs_tx, mut jobs) = fdring::channel::<u32>(1024)?;
    /// let (mut replies, replies_rx) = fdring::channel::<u32>(1024)?;
    /// pool.add(jobs_tx, replies_rx)?;
    /// std::thread::spawn(move || {
    ///     while let Ok(job) = jobs.recv() {
    ///         replies.send(job + 1).unwrap();
    ///     }
    /// });
    /// let mut pool = fdring::tokio::AsyncPool::new(pool)?;
    /// let (_key, sent) = pool
    ///     .send_with(|_key: Key, slots: &mut [MaybeUninit<u32>]| {
    ///         for (i, slot) in slots.iter_mut().take(100).enumerate() {
    ///             slot.write(i as u32);
    ///         }
    ///         100
    ///     })
    ///     .await?;
    /// let mut answers = 0;
    /// while answers < sent {
    ///     if let Next::Ready(_, n) = pool.recv_with(|_key, replies: &[u32]| replies.len()).await? {
    ///         answers += n;
    ///     }
    /// }
    /// assert_eq!(pool.get_ref().in_flight(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_with<F>(&mut self, fill: F) -> Result<(Key, usize), Error>
    where
        F: FnOnce(Key, &mut [MaybeUninit<J>]) -> usize,
    {
        let mut fill = Some(fill);
        poll_fn(|cx| {
            self.inner.poll_op(cx, |pool| {
                // As for `AsyncDispatch::send_with`: `fill` is taken once.
                pool.try_send_with(|key, slots| fill.take().map_or(0, |f| f(key, slots)))
            })
        })
        .await
    }

    /// The next reply, with its worker's key, or news of a worker, waiting
    /// until there is one: [`Pool::try_recv`], awaited. While it waits,
    /// only the reply rings are armed. `Ended(key, why)` says the worker
    /// is gone and its [`Lost`](crate::topology::Lost) is ready for
    /// [`Pool::take_lost`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a reply is taken out of its ring, and news out of the
    /// pool, only in the poll that returns it.
    ///
    /// # Errors
    ///
    /// `Disconnected` once there is no worker; `Io` if the kernel fails a
    /// call.
    ///
    /// ```
    /// use fdring::topology::{Next, Policy, Pool};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut pool = Pool::<u64, u64>::new(Policy::RoundRobin)?;
    /// let (jobs_tx, mut jobs) = fdring::channel::<u64>(512)?;
    /// let (mut replies, replies_rx) = fdring::channel::<u64>(512)?;
    /// let worker = pool.add(jobs_tx, replies_rx)?;
    /// std::thread::spawn(move || {
    ///     while let Ok(job) = jobs.recv() {
    ///         replies.send(job * 10).unwrap();
    ///     }
    /// });
    /// let mut pool = fdring::tokio::AsyncPool::new(pool)?;
    /// for job in 0..3 {
    ///     pool.send(job).await?;
    /// }
    /// let mut replies = Vec::new();
    /// while replies.len() < 3 {
    ///     if let Next::Ready(key, reply) = pool.recv().await? {
    ///         assert_eq!(key, worker);
    ///         replies.push(reply);
    ///     }
    /// }
    /// assert_eq!(replies, [0, 10, 20]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Result<Next<R>, Error> {
        poll_fn(|cx| self.inner.poll_op(cx, Pool::try_recv)).await
    }

    /// Lends the ready replies of one worker to `consume`, with its key,
    /// once there are any; `consume` returns how many it took, which are
    /// released. Returns that count, or news of a worker:
    /// [`Pool::try_recv_with`], awaited.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: `consume` runs only in the poll that completes the
    /// call.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    ///
    /// # Panics
    ///
    /// If `consume` returns more than the length of the slice it was lent.
    ///
    /// ```
    /// use fdring::topology::{Next, Policy, Pool};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut pool = Pool::<u64, u64>::new(Policy::RoundRobin)?;
    /// let (jobs_tx, mut jobs) = fdring::channel::<u64>(512)?;
    /// let (mut replies, replies_rx) = fdring::channel::<u64>(512)?;
    /// let worker = pool.add(jobs_tx, replies_rx)?;
    /// std::thread::spawn(move || {
    ///     while let Ok(job) = jobs.recv() {
    ///         replies.send(job * 10).unwrap();
    ///     }
    /// });
    /// let mut pool = fdring::tokio::AsyncPool::new(pool)?;
    /// for job in 1..=100 {
    ///     pool.send(job).await?;
    /// }
    /// let mut sum = 0;
    /// while pool.get_ref().in_flight() > 0 {
    ///     pool.recv_with(|_worker, replies: &[u64]| {
    ///         sum += replies.iter().sum::<u64>();
    ///         replies.len()
    ///     })
    ///     .await?;
    /// }
    /// assert_eq!(sum, 10 * 5050);
    /// # let _ = worker;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_with<F>(&mut self, consume: F) -> Result<Next<usize>, Error>
    where
        F: FnOnce(Key, &[R]) -> usize,
    {
        let mut consume = Some(consume);
        poll_fn(|cx| {
            self.inner.poll_op(cx, |pool| {
                // As for `AsyncMerge::recv_with`: `consume` is taken once.
                pool.try_recv_with(|key, replies| consume.take().map_or(0, |f| f(key, replies)))
            })
        })
        .await
    }

    /// Waits until a job can be sent or a reply received (or a worker
    /// left): returns at once if one can now, and otherwise arms both
    /// directions and sleeps ([`Pool::wait`], awaited). For a task that
    /// both sends and receives with the `try_` calls: await it once both
    /// would block. A task with nothing left to send awaits
    /// [`recv`](Self::recv) instead (room for jobs would end this wait at
    /// once, every time).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it takes nothing.
    ///
    /// # Errors
    ///
    /// `Io` if the kernel fails a call.
    ///
    /// ```
    /// use fdring::topology::{Next, Policy, Pool};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut pool = Pool::<u64, u64>::new(Policy::LeastLoaded)?;
    /// for _ in 0..2 {
    ///     let (jobs_tx, mut jobs) = fdring::channel::<u64>(512)?;
    ///     let (mut replies, replies_rx) = fdring::channel::<u64>(512)?;
    ///     pool.add(jobs_tx, replies_rx)?;
    ///     std::thread::spawn(move || {
    ///         while let Ok(job) = jobs.recv() {
    ///             replies.send(job + 1).unwrap();
    ///         }
    ///     });
    /// }
    /// let mut pool = fdring::tokio::AsyncPool::new(pool)?;
    /// let (mut sent, mut answered) = (0u64, 0u64);
    /// while sent < 50_000 {
    ///     let sent_one = pool.get_mut().try_send(sent).is_ok();
    ///     let answer = pool.get_mut().try_recv();
    ///     let answered_one = matches!(answer, Ok(Next::Ready(..)));
    ///     sent += u64::from(sent_one);
    ///     answered += u64::from(answered_one);
    ///     if !sent_one && !answered_one {
    ///         pool.wait().await?; // both would block
    ///     }
    /// }
    /// // Nothing left to send: the replies only.
    /// while answered < 50_000 {
    ///     if let Next::Ready(..) = pool.recv().await? {
    ///         answered += 1;
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait(&mut self) -> Result<(), Error> {
        poll_fn(|cx| {
            self.inner.poll_op(cx, |pool| {
                if pool.prepare_wait()? {
                    // Both directions armed: "would block". (The loop then
                    // arms the replies once more, one `epoll_wait`, and
                    // looks at the fd.)
                    Err(Error::Empty)
                } else {
                    Ok(())
                }
            })
        })
        .await
    }

    /// The pool, for its workers and [`in_flight`](Pool::in_flight).
    ///
    /// ```
    /// use fdring::topology::{Next, Policy, Pool};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut pool = Pool::<u64, u64>::new(Policy::RoundRobin)?;
    /// let (jobs_tx, mut jobs) = fdring::channel::<u64>(512)?;
    /// let (mut replies, replies_rx) = fdring::channel::<u64>(512)?;
    /// let worker = pool.add(jobs_tx, replies_rx)?;
    /// std::thread::spawn(move || {
    ///     while let Ok(job) = jobs.recv() {
    ///         replies.send(job * 10).unwrap();
    ///     }
    /// });
    /// let mut pool = fdring::tokio::AsyncPool::new(pool)?;
    /// assert_eq!(pool.get_ref().keys().collect::<Vec<_>>(), [worker]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_ref(&self) -> &Pool<J, R> {
        &self.inner.end
    }

    /// The pool, to add and remove workers, for
    /// [`take_lost`](Pool::take_lost) and its `try_` calls. Do not block
    /// on it (`send`, `recv`, `wait`, ...) inside a task.
    ///
    /// ```
    /// use fdring::topology::{Next, Policy, Pool};
    /// use fdring::Error;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let mut pool = fdring::tokio::AsyncPool::new(Pool::<u64, u64>::new(Policy::RoundRobin)?)?;
    /// let (jobs_tx, mut jobs) = fdring::channel::<u64>(512)?;
    /// let (replies, replies_rx) = fdring::channel::<u64>(512)?;
    /// let worker = pool.get_mut().add(jobs_tx, replies_rx)?;
    /// for job in 0..3 {
    ///     pool.send(job).await?;
    /// }
    /// assert_eq!(jobs.recv()?, 0); // the worker takes one job...
    /// drop((jobs, replies)); // ...and dies
    /// assert_eq!(pool.recv().await?, Next::Ended(worker, Error::Disconnected));
    /// let lost = pool.get_mut().take_lost()?.expect("the worker's loss");
    /// assert_eq!((lost.unread, lost.unanswered), (vec![1, 2], Some(1)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_mut(&mut self) -> &mut Pool<J, R> {
        &mut self.inner.end
    }

    /// Deregisters from the reactor and returns the pool.
    ///
    /// ```
    /// use fdring::topology::{Policy, Pool};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fdring::Error> {
    /// let pool = fdring::tokio::AsyncPool::new(Pool::<u64, u64>::new(Policy::RoundRobin)?)?;
    /// let pool = pool.into_inner();
    /// assert!(pool.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_inner(self) -> Pool<J, R> {
        self.inner.end
    }
}

impl<J: Pod, R: Pod> fmt::Debug for AsyncPool<J, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncPool")
            .field("inner", &self.inner)
            .finish()
    }
}
