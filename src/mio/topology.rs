//! The topologies ([`Merge`], [`Dispatch`], [`Pool`]) as [`Source`]s and
//! with [`EventLoopExt`]: each registers its epoll instance, one fd over
//! every ring it serves; see the [parent module](super#topologies).

use std::io;

use ::mio::event::Source;
use ::mio::{Interest, Registry, Token};
use bytemuck::Pod;

use super::{deregister, register, reregister, sealed, try_or_arm, EventLoopExt};
use crate::topology::{self, Dispatch, Merge, Pool};
use crate::Error;

loop_end! {
    /// Registers the merge's epoll instance, for readable whatever
    /// `interests` says: an event means "call the `try_` calls until
    /// `Empty`". A `try_` call arms every source before it returns
    /// `Empty`, so [`EventLoopExt::try_or_arm`] is not needed (it only
    /// looks once more). Sources added or removed while registered need
    /// nothing more: the fd stays the same. See the
    /// [module documentation](super#topologies).
    ///
    /// Frames the same way: a `Merge<FrameReceiver>` and its
    /// `try_recv_frame_with`.
    ///
    /// ```
    /// use fdring::topology::{Merge, Next};
    /// use fdring::{Error, FrameReceiver, FrameSender};
    /// use mio::{Events, Interest, Poll, Token};
    ///
    /// let mut merge = Merge::new()?;
    /// for camera in 0..2u64 {
    ///     let (tx, rx) = fdring::channel::<u8>(64 * 1024)?;
    ///     merge.add(FrameReceiver::new(rx))?;
    ///     let mut tx = FrameSender::new(tx);
    ///     std::thread::spawn(move || {
    ///         for n in 0..50u64 {
    ///             tx.send_frame(camera << 32 | n, &[n as u8; 3000]).unwrap();
    ///         }
    ///     });
    /// }
    /// let mut poll = Poll::new()?;
    /// poll.registry().register(&mut merge, Token(0), Interest::READABLE)?;
    /// let mut events = Events::with_capacity(4);
    /// let (mut frames, mut ended) = (0, 0);
    /// while ended < 2 {
    ///     match merge.try_recv_frame_with(|_key, frame| (frame.tag(), frame.len())) {
    ///         Ok(Next::Ready(_key, (_tag, len))) => {
    ///             assert_eq!(len, 3000);
    ///             frames += 1;
    ///         }
    ///         Ok(Next::Ended(..)) => ended += 1,
    ///         Ok(_) => {}
    ///         // Every source armed: sleep until one has news.
    ///         Err(Error::Empty) => poll.poll(&mut events, fdring::poll_timeout())?,
    ///         Err(e) => return Err(e.into()),
    ///     }
    /// }
    /// assert_eq!(frames, 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    impl<S: topology::Source> for Merge<S>
}

loop_end! {
    /// Registers the dispatch's epoll instance, for readable whatever
    /// `interests` says: an event means "call the `try_` calls until
    /// `Full`" (a member has room, or left: see
    /// [`Dispatch::take_lost`]). `Full` does not arm: send through
    /// [`EventLoopExt::try_or_arm`], or call [`Dispatch::prepare_wait`].
    /// See the [module documentation](super#topologies).
    ///
    /// ```
    /// use fdring::mio::EventLoopExt;
    /// use fdring::topology::{Dispatch, Policy};
    /// use fdring::Error;
    /// use mio::{Events, Interest, Poll, Token};
    ///
    /// let mut dispatch = Dispatch::new(Policy::LeastLoaded)?;
    /// let mut workers = Vec::new();
    /// for _ in 0..3 {
    ///     let (tx, mut rx) = fdring::channel::<u64>(512)?;
    ///     dispatch.add(tx)?;
    ///     workers.push(std::thread::spawn(move || rx.iter().sum::<u64>()));
    /// }
    /// let mut poll = Poll::new()?;
    /// poll.registry().register(&mut dispatch, Token(0), Interest::READABLE)?;
    /// let mut events = Events::with_capacity(4);
    /// let mut next = 0u64;
    /// while next < 100_000 {
    ///     match dispatch.try_or_arm(|dispatch| dispatch.try_send(next)) {
    ///         Ok(_key) => next += 1,
    ///         // Every member full, and armed: sleep until one has room.
    ///         Err(Error::Full) => poll.poll(&mut events, fdring::poll_timeout())?,
    ///         Err(e) => return Err(e.into()),
    ///     }
    /// }
    /// drop(dispatch); // closes every ring: the workers finish
    /// let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    /// assert_eq!(total, 99_999 * 100_000 / 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    impl<T: Pod> for Dispatch<T>
}

loop_end! {
    /// Registers the pool's epoll instance (over its job rings and its
    /// reply rings), for readable whatever `interests` says: an event
    /// means "retry the direction that would block". Through
    /// [`EventLoopExt::try_or_arm`], a send that returns `Full` has armed
    /// the job rings only ([`Pool::prepare_wait_to_send`]), a receive
    /// that returns `Empty` the reply rings only
    /// ([`Pool::prepare_wait_to_recv`]): so a loop that stops sending (it
    /// has nothing to send) is not woken for room, and one that sends
    /// while replies wait still sleeps. See the
    /// [module documentation](super#topologies).
    ///
    /// ```
    /// use fdring::mio::EventLoopExt;
    /// use fdring::topology::{Next, Policy, Pool};
    /// use fdring::Error;
    /// use mio::{Events, Interest, Poll, Token};
    ///
    /// const JOBS: u64 = 10_000;
    ///
    /// let mut pool = Pool::<u64, u64>::new(Policy::RoundRobin)?;
    /// for _ in 0..2 {
    ///     let (jobs_tx, mut jobs) = fdring::channel::<u64>(512)?;
    ///     let (mut replies, replies_rx) = fdring::channel::<u64>(512)?;
    ///     pool.add(jobs_tx, replies_rx)?;
    ///     std::thread::spawn(move || {
    ///         while let Ok(job) = jobs.recv() {
    ///             replies.send(job * 2).unwrap();
    ///         }
    ///     });
    /// }
    /// let mut poll = Poll::new()?;
    /// poll.registry().register(&mut pool, Token(0), Interest::READABLE)?;
    /// let mut events = Events::with_capacity(4);
    /// let (mut sent, mut answered, mut sum) = (0, 0, 0);
    /// while answered < JOBS {
    ///     // Jobs until no worker has room: the job rings are armed.
    ///     while sent < JOBS {
    ///         match pool.try_or_arm(|pool| pool.try_send(sent)) {
    ///             Ok(_key) => sent += 1,
    ///             Err(Error::Full) => break,
    ///             Err(e) => return Err(e.into()),
    ///         }
    ///     }
    ///     // Replies until none is ready: the reply rings are armed.
    ///     loop {
    ///         match pool.try_or_arm(|pool| pool.try_recv()) {
    ///             Ok(Next::Ready(_key, reply)) => {
    ///                 sum += reply;
    ///                 answered += 1;
    ///             }
    ///             Ok(other) => panic!("a worker left: {other:?}"),
    ///             Err(Error::Empty) => break,
    ///             Err(e) => return Err(e.into()),
    ///         }
    ///     }
    ///     if answered < JOBS {
    ///         poll.poll(&mut events, fdring::poll_timeout())?;
    ///     }
    /// }
    /// assert_eq!(sum, JOBS * (JOBS - 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    impl<J: Pod, P: Pod> for Pool<J, P>
}
