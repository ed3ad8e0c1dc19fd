//! `mio` support (cargo feature `mio`): [`Sender`] and [`Receiver`] are
//! [`mio::event::Source`]s, and [`EventLoopExt`] gives
//! their `try_` calls the contract of a non-blocking socket.
//!
//! This module owns the mapping from an end to the fds an event loop
//! watches. It knows `channel`'s public API and `mio`; nothing of the ring,
//! the header or the wake-up protocol beyond `prepare_wait`.
//!
//! # What an event means
//!
//! Registering an end registers its wake-up socket (see [`AsFd`] on
//! [`Sender`] and [`Receiver`]) and, if the end watches its peer
//! ([`Receiver::watch_peer`]), the [`Liveness`] fd too, both under the
//! token you give and always for *readable*: the peer sends a byte to
//! wake this end, and a dead peer is a hang-up (read-closed) on one of
//! them. Whatever the event's flags, it means one thing: **retry this
//! end**. The `interests` argument of `register` is ignored (a sender is
//! woken by a byte to read, like a receiver).
//!
//! A wake-up is sent only to an end that *armed* (`prepare_wait` returned
//! `Ok(true)`), so that a stream in which nobody waits costs no system
//! call. Hence the contract, the same as a non-blocking socket's under
//! edge-triggered polling:
//!
//! 1. after an event (and once right after registering), call `try_`
//!    calls until one returns `Empty` (a receiver) or `Full` (a sender);
//! 2. then arm: `prepare_wait()`; if it returns `Ok(false)`, go back to 1
//!    (progress happened meanwhile, or the peer is gone); if `Ok(true)`,
//!    go back to `poll`: the fd becomes readable when a retry can make
//!    progress.
//!
//! [`EventLoopExt::try_or_arm`] folds step 2 into step 1: through it, a
//! `try_` call returns `Empty` / `Full` only once the end is armed, which
//! is what "would block" means for a socket. mio's registrations are
//! edge-triggered, and this is enough: `prepare_wait` drains the socket
//! before it arms and re-checks the ring after arming, so a wake-up sent
//! for that arming arrives on an empty socket and is a new edge.
//!
//! Pass [`crate::poll_timeout()`] as the timeout of `Poll::poll`: it is
//! `None` wherever this process can call `membarrier`, and bounds the
//! wait where a lost wake-up is possible (`docs/event-loops.md`).
//!
//! # The loop
//!
//! A receiver served from a `mio::Poll` next to anything else the loop
//! serves (here a producer thread stands in for the peer process):
//!
//! ```
//! use fdring::mio::EventLoopExt;
//! use fdring::Error;
//! use mio::{Events, Interest, Poll, Token};
//!
//! const RING: Token = Token(0);
//!
//! let (mut tx, mut rx) = fdring::channel::<u64>(4096)?;
//! let producer = std::thread::spawn(move || {
//!     for i in 0..100_000u64 {
//!         tx.send(i).unwrap();
//!     }
//!     // Dropping `tx` closes the ring: an event, then `Disconnected`.
//! });
//!
//! let mut poll = Poll::new()?;
//! poll.registry().register(&mut rx, RING, Interest::READABLE)?;
//! let mut events = Events::with_capacity(16);
//! let mut next = 0u64;
//! 'serve: loop {
//!     // Drain until "would block", which arms. Items may be ready before
//!     // the first event, so this runs before the first poll too.
//!     loop {
//!         let got = rx.try_or_arm(|rx| {
//!             rx.try_recv_with(|items: &[u64]| {
//!                 for item in items {
//!                     assert_eq!(*item, next);
//!                     next += 1;
//!                 }
//!                 items.len()
//!             })
//!         });
//!         match got {
//!             Ok(_) => {}
//!             Err(Error::Empty) => break, // armed
//!             Err(Error::Disconnected) => break 'serve,
//!             Err(e) => return Err(e.into()),
//!         }
//!     }
//!     // Armed: sleep until an event (no longer than `poll_timeout()`, see
//!     // above). With one source, every event is the ring's; with several,
//!     // look at `event.token()`.
//!     poll.poll(&mut events, fdring::poll_timeout())?;
//! }
//! poll.registry().deregister(&mut rx)?;
//! assert_eq!(next, 100_000);
//! producer.join().unwrap();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Without the helper, the `Empty` arm reads
//! `Err(Error::Empty) => if rx.prepare_wait()? { break },` (retrying at once
//! while it returns `false`).
//!
//! Serving many ends from one loop fairly means giving each ready end a
//! bounded batch per turn and keeping ends that still have work in a queue
//! of their own, since an edge-triggered poll reports nothing new for them:
//! `examples/fan_in.rs` does this for 256 rings, and `docs/event-loops.md`
//! explains it.
//!
//! # Rules
//!
//! - Register an end in one `Poll` at a time, and deregister it before
//!   [`Receiver::into_fds`] (a registration lives as long as some fd
//!   refers to the socket, and `into_fds` keeps one).
//! - Call `watch_peer` before `register` (or `reregister` after it), so
//!   that the liveness fd is registered too.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use ::mio::event::Source;
use ::mio::unix::SourceFd;
use ::mio::{Interest, Registry, Token};
use bytemuck::Pod;

use crate::{Error, Liveness, Receiver, Sender};

/// How many times [`EventLoopExt::try_or_arm`] retries while
/// `prepare_wait` keeps returning `Ok(false)` without the `try_` call
/// making progress. With an honest peer one retry always settles it; only
/// a peer flooding the wake-up socket gets here, and it must not keep the
/// loop from serving every other source.
const MAX_ATTEMPTS: u32 = 8;

/// The non-blocking-socket contract for the `try_` calls of an end served
/// from an event loop: "would block" arms.
///
/// Implemented for [`Sender`] and [`Receiver`]; sealed.
pub trait EventLoopExt: sealed::Sealed {
    /// Runs `op`, a `try_` call on this end; if it returns `Empty` or
    /// `Full`, arms the end with `prepare_wait` and returns that error, or,
    /// if `prepare_wait` says progress happened meanwhile, runs `op` again.
    ///
    /// So `Empty` / `Full` from this call means: the end is armed, and its
    /// fd (and liveness fd, if watched) will become readable when a retry
    /// can make progress. Every other result is `op`'s.
    ///
    /// A peer that floods the wake-up socket can keep `prepare_wait`
    /// returning `Ok(false)`; after a few attempts this call then returns
    /// `Empty` / `Full` without having armed. The fd is still readable
    /// then, and the flood delivers new events: it costs this loop CPU,
    /// never its other sources.
    ///
    /// # Errors
    ///
    /// `op`'s errors, and `Io` if the wake-up socket cannot be drained.
    ///
    /// # Examples
    ///
    /// ```
    /// use fdring::mio::EventLoopExt;
    /// use fdring::{Error, Sender};
    ///
    /// let (mut tx, _rx) = fdring::channel::<u32>(1)?;
    /// for i in 0..tx.capacity() as u32 {
    ///     tx.try_or_arm(|tx| tx.try_send(i))?;
    /// }
    /// // Full, and armed: the fd becomes readable when the receiver takes
    /// // an item, closes or dies.
    /// assert_eq!(tx.try_or_arm(|tx| tx.try_send(7)), Err(Error::Full));
    /// // Any `try_` call will do, for instance as a function path.
    /// assert_eq!(tx.try_or_arm(|tx| Sender::try_send_slice(tx, &[1, 2])), Err(Error::Full));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    fn try_or_arm<R, F>(&mut self, op: F) -> Result<R, Error>
    where
        F: FnMut(&mut Self) -> Result<R, Error>;
}

mod sealed {
    pub trait Sealed {}
    impl<T: bytemuck::Pod> Sealed for crate::Sender<T> {}
    impl<T: bytemuck::Pod> Sealed for crate::Receiver<T> {}
}

/// The shared body of `try_or_arm`: `prepare` is the end's `prepare_wait`.
fn try_or_arm<E, R>(
    end: &mut E,
    prepare: fn(&mut E) -> Result<bool, Error>,
    mut op: impl FnMut(&mut E) -> Result<R, Error>,
) -> Result<R, Error> {
    let mut attempts = 0;
    loop {
        match op(end) {
            Err(would_block @ (Error::Empty | Error::Full)) => {
                attempts += 1;
                if prepare(end)? || attempts >= MAX_ATTEMPTS {
                    return Err(would_block);
                }
            }
            done => return done,
        }
    }
}

impl<T: Pod> EventLoopExt for Sender<T> {
    fn try_or_arm<R, F>(&mut self, op: F) -> Result<R, Error>
    where
        F: FnMut(&mut Self) -> Result<R, Error>,
    {
        try_or_arm(self, Sender::prepare_wait, op)
    }
}

impl<T: Pod> EventLoopExt for Receiver<T> {
    fn try_or_arm<R, F>(&mut self, op: F) -> Result<R, Error>
    where
        F: FnMut(&mut Self) -> Result<R, Error>,
    {
        try_or_arm(self, Receiver::prepare_wait, op)
    }
}

/// Registers the wake-up socket and the liveness fd, if any, under
/// `token`, for readable. On error nothing stays registered.
fn register(
    registry: &Registry,
    token: Token,
    wake: BorrowedFd<'_>,
    peer: Option<&Liveness>,
) -> io::Result<()> {
    let wake = wake.as_raw_fd();
    SourceFd(&wake).register(registry, token, Interest::READABLE)?;
    if let Some(peer) = peer {
        let peer = peer.as_fd().as_raw_fd();
        if let Err(e) = SourceFd(&peer).register(registry, token, Interest::READABLE) {
            let _ = SourceFd(&wake).deregister(registry);
            return Err(e);
        }
    }
    Ok(())
}

/// Moves both registrations to `token`; a liveness watched since the
/// registration is registered now.
fn reregister(
    registry: &Registry,
    token: Token,
    wake: BorrowedFd<'_>,
    peer: Option<&Liveness>,
) -> io::Result<()> {
    let wake = wake.as_raw_fd();
    SourceFd(&wake).reregister(registry, token, Interest::READABLE)?;
    if let Some(peer) = peer {
        let peer = peer.as_fd().as_raw_fd();
        match SourceFd(&peer).reregister(registry, token, Interest::READABLE) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => {
                SourceFd(&peer).register(registry, token, Interest::READABLE)?;
            }
            other => other?,
        }
    }
    Ok(())
}

/// Removes both registrations. A liveness that was never registered
/// (watched after `register`) is not an error.
fn deregister(
    registry: &Registry,
    wake: BorrowedFd<'_>,
    peer: Option<&Liveness>,
) -> io::Result<()> {
    let wake = wake.as_raw_fd();
    let result = SourceFd(&wake).deregister(registry);
    if let Some(peer) = peer {
        let peer = peer.as_fd().as_raw_fd();
        match SourceFd(&peer).deregister(registry) {
            Err(e) if e.raw_os_error() != Some(rustix::io::Errno::NOENT.raw_os_error()) => {
                result?;
                return Err(e);
            }
            _ => {}
        }
    }
    result
}

/// Registers the sender's wake-up socket and its watched liveness, for
/// readable whatever `interests` says: an event means "retry", see the
/// [module documentation](self).
impl<T: Pod> Source for Sender<T> {
    fn register(&mut self, registry: &Registry, token: Token, _: Interest) -> io::Result<()> {
        register(registry, token, self.as_fd(), self.peer_liveness())
    }

    fn reregister(&mut self, registry: &Registry, token: Token, _: Interest) -> io::Result<()> {
        reregister(registry, token, self.as_fd(), self.peer_liveness())
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        deregister(registry, self.as_fd(), self.peer_liveness())
    }
}

/// Registers the receiver's wake-up socket and its watched liveness, for
/// readable: an event means "retry", see the [module documentation](self).
impl<T: Pod> Source for Receiver<T> {
    fn register(&mut self, registry: &Registry, token: Token, _: Interest) -> io::Result<()> {
        register(registry, token, self.as_fd(), self.peer_liveness())
    }

    fn reregister(&mut self, registry: &Registry, token: Token, _: Interest) -> io::Result<()> {
        reregister(registry, token, self.as_fd(), self.peer_liveness())
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        deregister(registry, self.as_fd(), self.peer_liveness())
    }
}
