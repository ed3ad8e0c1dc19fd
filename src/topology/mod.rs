//! Many rings as one, built only from single-producer single-consumer
//! rings: nothing in shared memory is written by more than one process,
//! so a ring's trust model holds for each member of a topology.
//!
//! - [`Merge`] (fan-in): one consumer over any number of
//!   [`Receiver`]s or [`FrameReceiver`]s, added and removed while it runs
//!   (also as clients of a [`service::Listener`] connect), served fairly
//!   round-robin with a per-source budget, one `epoll` over all of them
//!   while idle. A source whose producer leaves is drained to its last
//!   item, then reported once as [`Next::Ended`] and removed.
//! - [`Dispatch`] (fan-out): one producer over any number of [`Sender`]s,
//!   round-robin or to the least loaded, waiting for room on any of them.
//!   When a receiver dies, what it never read comes back as a [`Lost`]
//!   batch, exactly: its ring's read index says which.
//! - [`Pool`]: a worker pool, a `Dispatch` of jobs and a `Merge` of
//!   replies, one pair of rings per worker; a dead worker's `Lost` also
//!   counts the jobs it took and never answered.
//!
//! Each is [`AsFd`](std::os::fd::AsFd) (its epoll instance), readable when
//! a `try_` call that returned `Empty` or `Full` may succeed: register it
//! in an event loop as one fd (`mio::event::Source` with the `mio`
//! feature; `AsyncMerge`, `AsyncDispatch` and `AsyncPool` with `tokio`).
//!
//! ```
//! use fdring::topology::{Merge, Next};
//!
//! let mut merge = Merge::new()?;
//! let mut producers = Vec::new();
//! for p in 0..4u64 {
//!     let (mut tx, rx) = fdring::channel::<u64>(512)?;
//!     merge.add(rx)?;
//!     producers.push(std::thread::spawn(move || {
//!         for i in 0..1000 {
//!             tx.send(p << 32 | i).unwrap();
//!         }
//!     }));
//! }
//! let (mut items, mut ended) = (0, 0);
//! loop {
//!     match merge.recv() {
//!         Ok(Next::Ready(_key, _item)) => items += 1,
//!         Ok(Next::Ended(_key, _why)) => ended += 1,
//!         Ok(_) => {}
//!         // Every source ended, and none can join: the merge is over.
//!         Err(fdring::Error::Disconnected) => break,
//!         Err(e) => return Err(e),
//!     }
//! }
//! assert_eq!((items, ended), (4000, 4));
//! # Ok::<(), fdring::Error>(())
//! ```
//!
//! [`Receiver`]: crate::Receiver
//! [`FrameReceiver`]: crate::FrameReceiver
//! [`Sender`]: crate::Sender
//! [`service::Listener`]: crate::service::Listener

mod dispatch;
mod joining;
mod merge;
mod poller;
mod pool;
mod table;

use std::fmt;

use bytemuck::Pod;

use crate::error::Error;
use crate::event_loop::LoopEnd;
use crate::{FrameReceiver, Receiver};

pub use dispatch::{Dispatch, Lost, Policy};
pub use merge::{Merge, DEFAULT_JOIN_TIMEOUT};
pub use pool::Pool;

/// Which member of a topology: returned when it is added, given with
/// every item it delivers. Never the key of another member while this
/// one is in the topology, nor soon after.
///
/// ```
/// let mut merge = fdring::topology::Merge::new()?;
/// let (_tx, rx) = fdring::channel::<u64>(512)?;
/// let key = merge.add(rx)?;
/// assert!(merge.get(key).is_some());
/// println!("source {key}");
/// # Ok::<(), fdring::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(u64);

impl Key {
    /// The key as a number, say to index your own table by.
    ///
    /// ```
    /// let mut merge = fdring::topology::Merge::new()?;
    /// let (_tx, rx) = fdring::channel::<u64>(512)?;
    /// assert_eq!(merge.add(rx)?.get(), 0);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What a [`Merge`] (or a [`Pool`]'s replies) delivered: items of one
/// source, or news of its membership.
///
/// ```
/// use fdring::topology::{Merge, Next};
///
/// let mut merge = Merge::new()?;
/// let (mut tx, rx) = fdring::channel::<u64>(512)?;
/// let key = merge.add(rx)?;
/// tx.send(7)?;
/// drop(tx);
/// assert_eq!(merge.recv()?, Next::Ready(key, 7));
/// assert_eq!(merge.recv()?, Next::Ended(key, fdring::Error::Disconnected));
/// assert_eq!(merge.recv(), Err(fdring::Error::Disconnected));
/// # Ok::<(), fdring::Error>(())
/// ```
#[derive(Debug, PartialEq)]
pub enum Next<X> {
    /// What the source `Key` delivered: an item, how many items the
    /// closure took, or what the closure returned.
    Ready(Key, X),
    /// A client of the merge's listener connected, was allowed, and its
    /// ring was opened: it is the source `Key` from now on.
    Joined(Key),
    /// The source `Key` is over and was removed: its producer closed or
    /// died after every item it published was delivered
    /// (`Disconnected`), or it broke its ring (`Corrupted`, with what it
    /// did). Reported once; the other sources go on.
    Ended(Key, Error),
    /// A client of the merge's listener was refused (`Rejected`, naming
    /// it), or failed to open its ring in time: it got no fd of ours and
    /// is not a source. Nothing else is affected.
    Refused(Error),
}

/// The ends a [`Merge`] can serve: [`Receiver`] and [`FrameReceiver`].
/// Sealed.
pub trait Source: sealed::Source {}

impl<T: Pod> Source for Receiver<T> {}
impl Source for FrameReceiver {}

mod sealed {
    use super::LoopEnd;

    pub trait Source: LoopEnd {
        /// How much a source delivers per turn, by default: items, or
        /// frames.
        const BUDGET: usize;
    }

    impl<T: bytemuck::Pod> Source for crate::Receiver<T> {
        /// A turn per 1024 items: a few microseconds of copying at
        /// most, and the batch the examples and benches use.
        const BUDGET: usize = 1024;
    }

    impl Source for crate::FrameReceiver {
        /// Frames can be large (a video frame is 8 MB): one per turn.
        const BUDGET: usize = 1;
    }
}

#[cfg(test)]
mod tests {
    use super::{Dispatch, Merge, Pool};
    use crate::{FrameReceiver, Receiver};

    /// A topology can be moved to the thread that serves it, as its ends
    /// can.
    #[test]
    fn topologies_are_send() {
        fn send<T: Send>() {}
        send::<Merge<Receiver<u64>>>();
        send::<Merge<FrameReceiver>>();
        send::<Dispatch<u64>>();
        send::<Pool<u64, u64>>();
    }
}
