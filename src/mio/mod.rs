//! `mio` support (cargo feature `mio`): [`Sender`], [`Receiver`],
//! [`FrameSender`] and [`FrameReceiver`] are [`mio::event::Source`]s, and
//! [`EventLoopExt`] gives their `try_` calls the contract of a
//! non-blocking socket; a service's [`Listener`] and [`Connection`] are
//! sources too, so that one loop serves new clients and their rings
//! together ([Services](#services)); and so are the topologies, a
//! [`Merge`], a [`Dispatch`] or a [`Pool`] of any number of rings under
//! one token ([Topologies](#topologies)).
//!
//! This module owns the mapping from an end (or a listener, a
//! connection, a topology) to the fds an event loop watches. It knows the
//! public API of `channel`, `frame`, `service` and `topology`, and `mio`;
//! nothing of the ring, the header or the wake-up protocol beyond
//! `prepare_wait`.
//!
//! # What an event means
//!
//! Registering an end registers its wake-up socket (see [`AsFd`] on
//! each end) and, if the end watches its peer
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
//! # Frames
//!
//! A [`FrameSender`] or a [`FrameReceiver`] registers exactly what the
//! [`Sender`] or [`Receiver`] under it would, and keeps the same contract:
//! a receiver's "would block" (`Empty`) arms for the next frame, a
//! sender's (`Full`) arms for room for the frame it could not send, so
//! the fd becomes readable when a retry may fit it. One release by the
//! receiver may not free room enough: the retry then returns `Full` again,
//! armed again. Here both ends of one frame ring are served by one loop on
//! one thread (in real use they are in two processes):
//!
//! ```
//! use fdring::mio::EventLoopExt;
//! use fdring::{Error, FrameReceiver, FrameSender};
//! use mio::{Events, Interest, Poll, Token};
//!
//! const TX: Token = Token(0);
//! const RX: Token = Token(1);
//! const FRAMES: u64 = 1000;
//!
//! let (tx, rx) = fdring::channel::<u8>(16 * 1024)?;
//! let (mut tx, mut rx) = (FrameSender::new(tx), FrameReceiver::new(rx));
//! let mut poll = Poll::new()?;
//! poll.registry().register(&mut tx, TX, Interest::WRITABLE)?;
//! poll.registry().register(&mut rx, RX, Interest::READABLE)?;
//! let mut events = Events::with_capacity(16);
//! let (mut sent, mut received) = (0u64, 0u64);
//! while received < FRAMES {
//!     // Frames of 1 to 5000 bytes, until one finds no room: armed.
//!     while sent < FRAMES {
//!         let len = 1 + (sent as usize * 997) % 5000;
//!         let got = tx.try_or_arm(|tx| {
//!             tx.try_send_frame_with(len, |frame| {
//!                 frame.fill(sent as u8);
//!                 frame.set_tag(sent);
//!                 len
//!             })
//!         });
//!         match got {
//!             Ok(_) => sent += 1,
//!             Err(Error::Full) => break,
//!             Err(e) => return Err(e.into()),
//!         }
//!     }
//!     // Every ready frame, until none is: armed.
//!     loop {
//!         match rx.try_or_arm(|rx| rx.try_recv_frame_with(|frame| frame.tag())) {
//!             Ok(tag) => {
//!                 assert_eq!(tag, received);
//!                 received += 1;
//!             }
//!             Err(Error::Empty) => break,
//!             Err(e) => return Err(e.into()),
//!         }
//!     }
//!     if received < FRAMES {
//!         // Both armed (or the sender done): sleep until an event.
//!         poll.poll(&mut events, fdring::poll_timeout())?;
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Without the helper, a frame sender's `Full` arm reads
//! `Err(Error::Full) => if tx.prepare_wait(len)? { break },` with the
//! length of the frame that did not fit.
//!
//! # Services
//!
//! A [`Listener`] registers its listening socket, readable when a client
//! waits to be accepted; a [`Connection`] registers its socket, readable
//! when the peer's next message (an offer, an answer) is there or the peer
//! hung up. Both for readable, whatever `interests` says. Registering
//! reports what is already there (a client queued, an offer sent) as an
//! event, so a loop may register first and poll at once. The contract:
//!
//! - after an event for the listener, call [`Listener::try_accept`] until
//!   it returns `Ok(None)`: the registration is edge-triggered, and the
//!   clients left in the queue get no event of their own. An
//!   `Err(Rejected(PeerNotAllowed))` (a client the [`Access`] refuses; it
//!   was told) or `Err(Disconnected)` (a client that left before its
//!   greeting) is about that client only: go on calling. `Err(Io)` is the
//!   kernel failing the call (out of fds, for instance): the client stays
//!   queued, and no new event comes for it until another client connects,
//!   so retry after a while;
//! - after an event for a connection, a `take_` call
//!   ([`Connection::take_receiver`] and the like) finds the offer there
//!   and does not wait: let the clients offer and the loop take. A client
//!   that hung up is `Disconnected`, one that sent half a message or
//!   anything but an offer is `Rejected(BadHandoff)`, at once. A client
//!   that sends nothing gets no event, and so costs the loop nothing but
//!   its entry (drop it after a deadline of your own). The `offer_` calls
//!   and `take_` calls made without an event wait for the peer, up to the
//!   connection's timeout: keep them out of a loop that serves others.
//!
//! Once a ring is taken, deregister the connection (or keep it registered
//! for the next offer) and register the ring under a token of its own, or
//! the same one: from then on it is an end like any other.
//!
//! Three clients (threads here; in real use any processes of this user)
//! each offer a ring and stream into it; one `Poll` accepts them, takes
//! their rings and receives from all of them:
//!
//! ```
//! use std::collections::HashMap;
//!
//! use fdring::mio::EventLoopExt;
//! use fdring::service::{self, Connection, Listener};
//! use fdring::{Builder, Error, Receiver};
//! use mio::{Events, Interest, Poll, Token};
//!
//! const LISTENER: Token = Token(0);
//! const ITEMS: u64 = 10_000;
//!
//! enum Client {
//!     /// Accepted; its offer may not be there yet.
//!     Negotiating(Connection),
//!     /// Its ring, and the next item expected.
//!     Streaming(Receiver<u64>, u64),
//! }
//!
//! # let name = &format!("doc-mio-service-{}", std::process::id());
//! let mut listener = Listener::bind(name)?;
//! let producers: Vec<_> = (0..3)
//!     .map(|_| {
//!         let name = name.clone();
//!         std::thread::spawn(move || -> Result<(), Error> {
//!             let mut connection = service::connect(&name)?;
//!             let mut tx = connection.offer_receiver::<u64>(&Builder::new().capacity(1024))?;
//!             for i in 0..ITEMS {
//!                 tx.send(i)?;
//!             }
//!             Ok(()) // dropping `tx` closes the ring
//!         })
//!     })
//!     .collect();
//!
//! let mut poll = Poll::new()?;
//! poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
//! let mut events = Events::with_capacity(64);
//! let mut clients = HashMap::new();
//! let (mut next_token, mut done) = (1, 0);
//! while done < 3 {
//!     poll.poll(&mut events, fdring::poll_timeout())?;
//!     for event in &events {
//!         if event.token() == LISTENER {
//!             // Every waiting client, until none is.
//!             loop {
//!                 match listener.try_accept() {
//!                     Ok(Some(mut connection)) => {
//!                         let token = Token(next_token);
//!                         next_token += 1;
//!                         poll.registry().register(&mut connection, token, Interest::READABLE)?;
//!                         clients.insert(token, Client::Negotiating(connection));
//!                     }
//!                     Ok(None) => break,
//!                     // That client only: serve the others.
//!                     Err(Error::Rejected(_) | Error::Disconnected) => continue,
//!                     Err(e) => return Err(e.into()),
//!                 }
//!             }
//!             continue;
//!         }
//!         let token = event.token();
//!         let Some(client) = clients.get_mut(&token) else { continue };
//!         if let Client::Negotiating(connection) = client {
//!             // The offer is there: this does not wait.
//!             let taken = connection.take_receiver::<u64>(&Builder::new());
//!             poll.registry().deregister(connection)?;
//!             let Ok(mut rx) = taken else {
//!                 clients.remove(&token); // a client that broke the protocol
//!                 continue;
//!             };
//!             // Items may be there already: served below, before any event.
//!             poll.registry().register(&mut rx, token, Interest::READABLE)?;
//!             *client = Client::Streaming(rx, 0);
//!         }
//!         let Client::Streaming(rx, next) = client else { continue };
//!         let finished = loop {
//!             let got = rx.try_or_arm(|rx| {
//!                 rx.try_recv_with(|items: &[u64]| {
//!                     for item in items {
//!                         assert_eq!(*item, *next);
//!                         *next += 1;
//!                     }
//!                     items.len()
//!                 })
//!             });
//!             match got {
//!                 Ok(_) => {}
//!                 Err(Error::Empty) => break false, // armed
//!                 Err(Error::Disconnected) => break true,
//!                 Err(e) => return Err(e.into()),
//!             }
//!         };
//!         if finished {
//!             assert_eq!(*next, ITEMS);
//!             poll.registry().deregister(rx)?;
//!             clients.remove(&token);
//!             done += 1;
//!         }
//!     }
//! }
//! for producer in producers {
//!     producer.join().unwrap()?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! One loop serving many rings fairly bounds each ring's batch per turn,
//! as `examples/fan_in.rs` does, or lets a [`Merge`] do it
//! ([Topologies](#topologies)).
//!
//! # Topologies
//!
//! A [`Merge`], a [`Dispatch`] or a [`Pool`] registers one fd: its epoll
//! instance, which watches the wake-up socket of every ring it serves and
//! their watched liveness. It is readable when one of them has news, so
//! the contract is an end's, for the topology as a whole:
//!
//! 1. after an event (and once right after registering), call the
//!    topology's `try_` calls until "would block": `Empty` for a merge
//!    (and a pool's receives), `Full` for a dispatch (and a pool's
//!    sends). Anything else (an item, [`Next::Ended`], [`Next::Joined`],
//!    a key) is not "would block": go on calling;
//! 2. "would block" must have armed. A merge's `try_` calls arm every
//!    source before they return `Empty`; a dispatch's `Full` does not
//!    arm, so send through [`EventLoopExt::try_or_arm`] (or call
//!    [`Dispatch::prepare_wait`] and retry while it returns `Ok(false)`);
//!    a pool's calls through `try_or_arm` arm the direction of the call
//!    only: after `Full` the job rings, after `Empty` the reply rings.
//!
//! Inside, the topology does what a fair loop over many rings does by
//! hand: it keeps the sources that still have work in a queue of its own
//! (an edge-triggered poll reports nothing new for them), gives each its
//! budget per turn, and ends and removes the sources whose producer left.
//! So rings are added and removed while the topology is registered, under
//! the one token, with nothing to re-register. A loop that stops calling
//! before "would block" (to serve something else first) must come back
//! without waiting for an event: the work left in the queue gets none. A
//! client of a merge's listener ([`Merge::listen`]) that connects and
//! stays silent is dropped after its join timeout by the next `try_`
//! call, not at that moment: no event comes for a timeout.
//!
//! Eight rings, one token:
//!
//! ```
//! use std::collections::HashMap;
//!
//! use fdring::topology::{Merge, Next};
//! use fdring::Error;
//! use mio::{Events, Interest, Poll, Token};
//!
//! const MERGE: Token = Token(0);
//! const ITEMS: u64 = 10_000;
//!
//! let mut merge = Merge::new()?;
//! for producer in 0..8u64 {
//!     let (mut tx, rx) = fdring::channel::<u64>(1024)?;
//!     merge.add(rx)?;
//!     std::thread::spawn(move || {
//!         for i in 0..ITEMS {
//!             tx.send(producer << 32 | i).unwrap();
//!         }
//!         // Dropping `tx` closes the ring: the merge reports its end.
//!     });
//! }
//! let mut poll = Poll::new()?;
//! poll.registry().register(&mut merge, MERGE, Interest::READABLE)?;
//! let mut events = Events::with_capacity(16);
//! let mut next = HashMap::new(); // per source, the next item expected
//! let mut ended = 0;
//! 'serve: loop {
//!     // Until "would block", which armed every source. Items may be there
//!     // before the first event, so this runs before the first poll too.
//!     loop {
//!         let got = merge.try_recv_with(|key, items: &[u64]| {
//!             for &item in items {
//!                 let next = next.entry(key).or_insert(0);
//!                 assert_eq!(item & 0xffff_ffff, *next);
//!                 *next += 1;
//!             }
//!             items.len()
//!         });
//!         match got {
//!             Ok(Next::Ready(_key, _count)) => {}
//!             Ok(Next::Ended(_key, _why)) => ended += 1,
//!             Ok(_) => {} // news of a listener: none here
//!             Err(Error::Empty) => break,
//!             // No source left, and none can join.
//!             Err(Error::Disconnected) => break 'serve,
//!             Err(e) => return Err(e.into()),
//!         }
//!     }
//!     // With other sources registered, look at `event.token()`: on
//!     // `MERGE`, run the loop above.
//!     poll.poll(&mut events, fdring::poll_timeout())?;
//! }
//! assert_eq!(ended, 8);
//! assert!(next.values().all(|&n| n == ITEMS));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A frame merge, a dispatch and a pool, each in a loop: see the `Source`
//! implementations on [`Merge`], [`Dispatch`] and [`Pool`].
//!
//! # Rules
//!
//! - Register an end in one `Poll` at a time, and deregister it before
//!   `into_fds` ([`Receiver::into_fds`] and the like: a registration
//!   lives as long as some fd refers to the socket, and `into_fds` keeps
//!   one).
//! - Call `watch_peer` before `register` (or `reregister` after it), so
//!   that the liveness fd is registered too.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use ::mio::event::Source;
use ::mio::unix::SourceFd;
use ::mio::{Interest, Registry, Token};
use bytemuck::Pod;

use crate::event_loop::{LoopEnd, MAX_ATTEMPTS};
use crate::{Error, FrameReceiver, FrameSender, Receiver, Sender};
// Named in the documentation only.
#[cfg(doc)]
use crate::{
    service::{Access, Connection, Listener},
    topology::{Dispatch, Merge, Next, Pool},
    Liveness,
};

mod service;

/// The non-blocking-socket contract for the `try_` calls of an end served
/// from an event loop: "would block" arms.
///
/// Implemented for [`Sender`], [`Receiver`], [`FrameSender`] and
/// [`FrameReceiver`], and for the topologies [`Merge`], [`Dispatch`] and
/// [`Pool`]; sealed.
pub trait EventLoopExt: sealed::Sealed {
    /// Runs `op`, a `try_` call on this end; if it returns `Empty` or
    /// `Full`, arms the end with `prepare_wait` and returns that error, or,
    /// if `prepare_wait` says progress happened meanwhile, runs `op` again.
    ///
    /// So `Empty` / `Full` from this call means: the end is armed, and its
    /// fd (and liveness fd, if watched) will become readable when a retry
    /// can make progress. Every other result is `op`'s.
    ///
    /// A [`FrameSender`] arms for room for the frame `op` had no room for
    /// ([`FrameSender::prepare_wait`] with that frame's length), so `op`
    /// may send frames of any length; a [`FrameReceiver`] arms for the
    /// next frame. A topology arms every ring it serves, in the direction
    /// of `op`'s "would block" for a [`Pool`]: after `Full` its job rings
    /// ([`Pool::prepare_wait_to_send`]), after `Empty` its reply rings
    /// ([`Pool::prepare_wait_to_recv`]).
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
    ///
    /// The same for frames:
    ///
    /// ```
    /// use fdring::mio::EventLoopExt;
    /// use fdring::{Error, FrameSender};
    ///
    /// let (tx, _rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = FrameSender::new(tx);
    /// tx.try_or_arm(|tx| tx.try_send_frame(1, &[0; 3000]))?;
    /// // No room for a second such frame: armed for room for 3000 bytes.
    /// assert_eq!(tx.try_or_arm(|tx| tx.try_send_frame(2, &[0; 3000])), Err(Error::Full));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    fn try_or_arm<R, F>(&mut self, op: F) -> Result<R, Error>
    where
        F: FnMut(&mut Self) -> Result<R, Error>;
}

mod sealed {
    pub trait Sealed {}
}

/// The body of every `try_or_arm`.
fn try_or_arm<E: LoopEnd, R>(
    end: &mut E,
    mut op: impl FnMut(&mut E) -> Result<R, Error>,
) -> Result<R, Error> {
    let mut attempts = 0;
    loop {
        match op(end) {
            Err(would_block @ (Error::Empty | Error::Full)) => {
                attempts += 1;
                if end.arm_after(&would_block)? || attempts >= MAX_ATTEMPTS {
                    return Err(would_block);
                }
            }
            done => return done,
        }
    }
}

/// Registers the wake-up socket and the liveness fd, if any, under
/// `token`, for readable. On error nothing stays registered.
fn register(registry: &Registry, token: Token, end: &impl LoopEnd) -> io::Result<()> {
    let wake = end.as_fd().as_raw_fd();
    SourceFd(&wake).register(registry, token, Interest::READABLE)?;
    if let Some(peer) = end.peer_liveness() {
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
fn reregister(registry: &Registry, token: Token, end: &impl LoopEnd) -> io::Result<()> {
    let wake = end.as_fd().as_raw_fd();
    SourceFd(&wake).reregister(registry, token, Interest::READABLE)?;
    if let Some(peer) = end.peer_liveness() {
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
fn deregister(registry: &Registry, end: &impl LoopEnd) -> io::Result<()> {
    let wake = end.as_fd().as_raw_fd();
    let result = SourceFd(&wake).deregister(registry);
    if let Some(peer) = end.peer_liveness() {
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

/// Makes an end a [`Source`] (its wake-up socket and watched liveness, for
/// readable whatever the `interests`) and gives it [`EventLoopExt`]: the
/// same registrations and the same contract for every end.
macro_rules! loop_end {
    ($(#[$doc:meta])* impl<$($param:ident: $bound:path),*> for $end:ty) => {
        $(#[$doc])*
        impl<$($param: $bound),*> Source for $end {
            fn register(&mut self, registry: &Registry, token: Token, _: Interest) -> io::Result<()> {
                register(registry, token, self)
            }

            fn reregister(&mut self, registry: &Registry, token: Token, _: Interest) -> io::Result<()> {
                reregister(registry, token, self)
            }

            fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
                deregister(registry, self)
            }
        }

        impl<$($param: $bound),*> EventLoopExt for $end {
            fn try_or_arm<R, F>(&mut self, op: F) -> Result<R, Error>
            where
                F: FnMut(&mut Self) -> Result<R, Error>,
            {
                try_or_arm(self, op)
            }
        }

        impl<$($param: $bound),*> sealed::Sealed for $end {}
    };
}

// Declared after `loop_end!`, which it uses.
mod topology;

loop_end! {
    /// Registers the sender's wake-up socket and its watched liveness, for
    /// readable whatever `interests` says: an event means "retry", see the
    /// [module documentation](self).
    impl<T: Pod> for Sender<T>
}

loop_end! {
    /// Registers the receiver's wake-up socket and its watched liveness, for
    /// readable: an event means "retry", see the [module documentation](self).
    impl<T: Pod> for Receiver<T>
}

loop_end! {
    /// Registers the frame sender's wake-up socket and its watched
    /// liveness, for readable, as a [`Sender`]'s: an event means "retry"
    /// (one release by the receiver may not have freed room enough for
    /// the frame; `try_or_arm` then arms again), see the
    /// [module documentation](self#frames).
    impl<> for FrameSender
}

loop_end! {
    /// Registers the frame receiver's wake-up socket and its watched
    /// liveness, for readable, as a [`Receiver`]'s: an event means "retry",
    /// see the [module documentation](self#frames).
    impl<> for FrameReceiver
}
