//! `tokio` support (cargo feature `tokio`): [`AsyncSender`] and
//! [`AsyncReceiver`], the two ends of a ring awaited on tokio's
//! [`AsyncFd`], and [`AsyncFrameSender`] and [`AsyncFrameReceiver`], the
//! two ends of a ring of frames; [`AsyncListener`], a service's listener
//! accepting clients (see [`crate::service`]) on the same reactor; and
//! [`AsyncMerge`], [`AsyncDispatch`] and [`AsyncPool`], the topologies of
//! [`crate::topology`], each one registration for any number of rings
//! ([Topologies](#topologies)).
//!
//! This module owns the readiness loop between an end (or a topology) and
//! the tokio reactor, one loop for every wrapper, and the listener's
//! wait. It knows the public API of `channel`, `frame`, `service` and
//! `topology`, and tokio; nothing of the ring, the header or the wake-up
//! protocol beyond `prepare_wait`.
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
//! # Topologies
//!
//! [`AsyncMerge`], [`AsyncDispatch`] and [`AsyncPool`] wrap a
//! [`Merge`](crate::topology::Merge), a
//! [`Dispatch`](crate::topology::Dispatch) or a
//! [`Pool`](crate::topology::Pool) on the same loop as the ends: the fd
//! registered is the topology's epoll instance, which watches every ring
//! it serves (and their watched liveness), and a call waits only where
//! the topology's `try_` call would block, after arming what that call
//! lacked: a merge every source (its `try_` calls do that before they
//! return `Empty`), a dispatch every member for room, a pool the
//! direction of the call only (after `Full` its job rings, after `Empty`
//! its reply rings; [`AsyncPool::wait`] both). The reactor then reports
//! the fd readable when one of those rings has news. Inside, the topology
//! keeps its fairness and its bookkeeping: a merge's sources take turns,
//! each ends once with [`Next::Ended`](crate::topology::Next::Ended); a
//! dispatch keeps what a dead member never read for
//! [`take_lost`](crate::topology::Dispatch::take_lost).
//!
//! Four producers merged, and their items forwarded to three workers by
//! one task:
//!
//! ```
//! use fdring::topology::{Dispatch, Merge, Next, Policy};
//! use fdring::tokio::{AsyncDispatch, AsyncMerge};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), fdring::Error> {
//! let mut merge = Merge::new()?;
//! for producer in 0..4u64 {
//!     let (mut tx, rx) = fdring::channel::<u64>(1024)?;
//!     merge.add(rx)?;
//!     std::thread::spawn(move || {
//!         for i in 0..10_000 {
//!             tx.send(producer << 32 | i).unwrap();
//!         }
//!     });
//! }
//! let mut dispatch = Dispatch::new(Policy::LeastLoaded)?;
//! let mut workers = Vec::new();
//! for _ in 0..3 {
//!     let (tx, mut rx) = fdring::channel::<u64>(512)?;
//!     dispatch.add(tx)?;
//!     workers.push(std::thread::spawn(move || rx.iter().count()));
//! }
//! let (mut merge, mut dispatch) = (AsyncMerge::new(merge)?, AsyncDispatch::new(dispatch)?);
//! // Until every producer ended (`Disconnected`: no source left).
//! while let Ok(next) = merge.recv().await {
//!     if let Next::Ready(_producer, item) = next {
//!         dispatch.send(item).await?;
//!     }
//! }
//! drop(dispatch); // closes the workers' rings
//! let forwarded: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
//! assert_eq!(forwarded, 40_000);
//! # Ok(())
//! # }
//! ```
//!
//! A merge's listener ([`Merge::listen`](crate::topology::Merge::listen))
//! is served by the same calls: a client that has offered its ring joins
//! within the call that finds its offer (taking the offer reads what the
//! client has sent already, for at most the join timeout), and is then
//! reported as [`Next::Joined`](crate::topology::Next::Joined). A client
//! that connects and stays silent is dropped after its join timeout by
//! the next call, not at that moment.
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
//! slice may have been sent. The same holds for the topologies' calls,
//! and for their news (a source ended, a client joined): a pending call
//! holds none, and the next call gets it. [`AsyncPool::wait`] takes
//! nothing.
//!
//! # Rules
//!
//! The ends must be created inside a tokio runtime with I/O enabled
//! (`enable_io` or `enable_all`). Each wrapper keeps a duplicate of the
//! end's wake-up socket (and of its liveness fd) registered with the
//! reactor: one or two fds more per end; a topology's wrapper, a
//! duplicate of its epoll instance, one fd more whatever the number of
//! rings.

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use ::tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use ::tokio::io::Interest;

use crate::event_loop::{LoopEnd, MAX_ATTEMPTS};
use crate::{Error, Liveness};
// Named in the documentation only.
#[cfg(doc)]
use crate::Receiver;

mod frames;
mod items;
mod service;
mod topology;

pub use frames::{AsyncFrameReceiver, AsyncFrameSender};
pub use items::{AsyncReceiver, AsyncSender};
pub use service::AsyncListener;
pub use topology::{AsyncDispatch, AsyncMerge, AsyncPool};

/// Ready results in a row after which a call yields to the scheduler
/// once (tokio's own budget per task is 128 operations).
const BUDGET: u32 = 128;

/// An end (or a topology) and its registrations with the reactor.
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
            let would_block = match op(&mut self.end) {
                Err(would_block @ (Error::Empty | Error::Full)) => would_block,
                done => {
                    self.streak += 1;
                    return Poll::Ready(done);
                }
            };
            if !self.end.arm_after(&would_block)? {
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
