//! [`Dispatch`]: fan-out, one producer over many receivers, and what a
//! receiver that died never read, given back.

use std::collections::VecDeque;
use std::fmt;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::poller::{sleep_until, Poller};
use super::table::Table;
use super::Key;
use crate::error::Error;
use crate::Sender;

/// Which receiver a [`Dispatch`] sends to.
///
/// ```
/// let dispatch = fdring::topology::Dispatch::<u64>::new(fdring::topology::Policy::LeastLoaded)?;
/// # Ok::<(), fdring::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Each in turn; one that is full is skipped.
    RoundRobin,
    /// The one with the fewest items in its ring, read from the rings'
    /// indices (no system call); ties in turn. Slow receivers get less.
    LeastLoaded,
}

/// What a receiver that left (died, closed, or broke its ring) had not
/// done, from a [`Dispatch::take_lost`] or a [`Pool::take_lost`].
///
/// [`Pool::take_lost`]: super::Pool::take_lost
#[derive(Debug, PartialEq)]
#[non_exhaustive]
pub struct Lost<T> {
    /// The receiver, no longer a member.
    pub key: Key,
    /// The items it never took, in the order sent: copies, from its ring,
    /// exactly those after its read index. Send them to another.
    pub unread: Vec<T>,
    /// How many items it took off its ring since it joined: sent, less
    /// those unread.
    pub taken: u64,
    /// Of those, how many it never answered, for a [`Pool`](super::Pool)
    /// (taken, less the replies it sent, one per job): the jobs it was
    /// working on. Only the application can tell which they were (a job
    /// id in the item, say). `None` for a `Dispatch`, which sees no
    /// replies.
    pub unanswered: Option<u64>,
    /// Why it left: `Disconnected` (closed, or its process died), or the
    /// corruption it made (its ring cannot say what it took: `unread` is
    /// then empty and `taken` counts everything sent).
    pub error: Error,
}

/// One producer over any number of [`Sender`]s: fan-out to workers, by a
/// [`Policy`].
///
/// Each send goes to one receiver, the one the policy picks among those
/// with room; the blocking calls sleep, on one `epoll_wait` over all of
/// them, until any has room. A receiver that dies (or closes, or breaks
/// its ring) is removed when a call finds it out, and what it never read
/// is kept for [`take_lost`](Self::take_lost): exactly the items after its
/// ring's read index, copied back out of the ring.
///
/// ```
/// use fdring::topology::{Dispatch, Policy};
///
/// let mut dispatch = Dispatch::new(Policy::RoundRobin)?;
/// let mut workers = Vec::new();
/// for _ in 0..3 {
///     let (tx, mut rx) = fdring::channel::<u64>(512)?;
///     dispatch.add(tx)?;
///     workers.push(std::thread::spawn(move || rx.iter().sum::<u64>()));
/// }
/// for job in 1..=300 {
///     dispatch.send(job)?;
/// }
/// dispatch.wait_drained(std::time::Duration::from_secs(10))?;
/// drop(dispatch);
/// let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
/// assert_eq!(total, 300 * 301 / 2);
/// # Ok::<(), fdring::Error>(())
/// ```
pub struct Dispatch<T: Pod> {
    workers: Table<Worker<T>>,
    /// The members in turn order.
    order: Vec<Key>,
    /// Where the next turn starts in `order`.
    cursor: usize,
    policy: Policy,
    poller: Poller,
    lost: VecDeque<Lost<T>>,
}

struct Worker<T: Pod> {
    tx: Sender<T>,
    /// Items sent through this dispatch.
    sent: u64,
}

impl<T: Pod> Dispatch<T> {
    /// An empty dispatch.
    ///
    /// # Errors
    ///
    /// `Io` if the kernel refuses an epoll instance (out of fds).
    pub fn new(policy: Policy) -> Result<Dispatch<T>, Error> {
        Ok(Dispatch {
            workers: Table::new(),
            order: Vec::new(),
            cursor: 0,
            policy,
            poller: Poller::new()?,
            lost: VecDeque::new(),
        })
    }

    /// Adds a receiver's ring; returns its key.
    ///
    /// # Errors
    ///
    /// `Io` if its fds cannot be watched (the sender is dropped).
    pub fn add(&mut self, tx: Sender<T>) -> Result<Key, Error> {
        let key = self.workers.next_key();
        self.poller.add(tx.as_fd(), key.get())?;
        if let Some(liveness) = tx.peer_liveness() {
            if let Err(e) = self.poller.add(liveness.as_fd(), key.get()) {
                self.poller.remove(tx.as_fd());
                return Err(e);
            }
        }
        self.workers.insert(Worker { tx, sent: 0 });
        self.order.push(key);
        Ok(key)
    }

    /// Removes the receiver `key` and gives its sender back; `None` if it
    /// is not a member (any more).
    pub fn remove(&mut self, key: Key) -> Option<Sender<T>> {
        let worker = self.workers.remove(key)?;
        self.poller.remove(worker.tx.as_fd());
        if let Some(liveness) = worker.tx.peer_liveness() {
            self.poller.remove(liveness.as_fd());
        }
        if let Some(at) = self.order.iter().position(|&k| k == key) {
            self.order.remove(at);
            if self.cursor > at {
                self.cursor -= 1;
            }
        }
        Some(worker.tx)
    }

    /// The sender of `key`, if it is a member.
    pub fn get(&self, key: Key) -> Option<&Sender<T>> {
        self.workers.get(key).map(|w| &w.tx)
    }

    /// The keys of the members, in turn order.
    pub fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.order.iter().copied()
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether there is no member.
    pub fn is_empty(&self) -> bool {
        self.workers.len() == 0
    }

    /// Items sent and not yet taken, over every member: a racy snapshot,
    /// read from the rings' indices.
    pub fn in_flight(&self) -> usize {
        self.workers.iter().map(|(_, w)| w.tx.len()).sum()
    }

    /// Sends `item` to the receiver the policy picks among those with
    /// room; returns its key. Does not wait.
    ///
    /// # Errors
    ///
    /// `Full` if no member has room; `Disconnected` if there is no member.
    /// A member found gone on the way is removed (see
    /// [`take_lost`](Self::take_lost)) and the next one tried.
    ///
    /// ```
    /// use fdring::topology::{Dispatch, Policy};
    ///
    /// let mut dispatch = Dispatch::new(Policy::RoundRobin)?;
    /// let (tx_a, mut rx_a) = fdring::channel::<u64>(512)?;
    /// let (tx_b, mut rx_b) = fdring::channel::<u64>(512)?;
    /// let (a, b) = (dispatch.add(tx_a)?, dispatch.add(tx_b)?);
    /// assert_eq!(dispatch.try_send(1)?, a);
    /// assert_eq!(dispatch.try_send(2)?, b);
    /// assert_eq!((rx_a.recv()?, rx_b.recv()?), (1, 2));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_send(&mut self, item: T) -> Result<Key, Error> {
        self.try_send_with(|_, slots| {
            slots[0].write(item);
            1
        })
        .map(|(key, _)| key)
    }

    /// Like [`try_send`](Self::try_send), but sleeps until a member has
    /// room.
    ///
    /// # Errors
    ///
    /// `Disconnected` if there is no member (any more).
    pub fn send(&mut self, item: T) -> Result<Key, Error> {
        self.send_in(None, |_, slots| {
            slots[0].write(item);
            1
        })
        .map(|(key, _)| key)
    }

    /// Like [`send`](Self::send), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` if no member had room in time; otherwise as
    /// [`send`](Self::send).
    pub fn send_timeout(&mut self, item: T, timeout: Duration) -> Result<Key, Error> {
        self.send_in(Instant::now().checked_add(timeout), |_, slots| {
            slots[0].write(item);
            1
        })
        .map(|(key, _)| key)
    }

    /// Lends the free slots of the member the policy picks (one contiguous
    /// slice, at least one slot) to `fill`, with its key; `fill` writes
    /// the first `n` and returns `n`, which are published. Returns the key
    /// and `n`. Does not wait.
    ///
    /// # Errors
    ///
    /// As for [`try_send`](Self::try_send).
    ///
    /// # Panics
    ///
    /// If `fill` returns more than the length of the slice.
    ///
    /// ```
    /// use fdring::topology::{Dispatch, Policy};
    ///
    /// let mut dispatch = Dispatch::new(Policy::LeastLoaded)?;
    /// let (tx, mut rx) = fdring::channel::<u64>(512)?;
    /// let key = dispatch.add(tx)?;
    /// let sent = dispatch.try_send_with(|_, slots| {
    ///     for (i, slot) in slots.iter_mut().take(8).enumerate() {
    ///         slot.write(i as u64);
    ///     }
    ///     8
    /// })?;
    /// assert_eq!(sent, (key, 8));
    /// assert_eq!(rx.len(), 8);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_send_with<F>(&mut self, fill: F) -> Result<(Key, usize), Error>
    where
        F: FnOnce(Key, &mut [MaybeUninit<T>]) -> usize,
    {
        let mut fill = Some(fill);
        self.attempt(&mut fill)
    }

    /// Like [`try_send_with`](Self::try_send_with), but sleeps until a
    /// member has room.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    ///
    /// # Panics
    ///
    /// As for [`try_send_with`](Self::try_send_with).
    pub fn send_with<F>(&mut self, fill: F) -> Result<(Key, usize), Error>
    where
        F: FnOnce(Key, &mut [MaybeUninit<T>]) -> usize,
    {
        self.send_in(None, fill)
    }

    /// Like [`send_with`](Self::send_with), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`send_timeout`](Self::send_timeout).
    ///
    /// # Panics
    ///
    /// As for [`try_send_with`](Self::try_send_with).
    pub fn send_with_timeout<F>(
        &mut self,
        timeout: Duration,
        fill: F,
    ) -> Result<(Key, usize), Error>
    where
        F: FnOnce(Key, &mut [MaybeUninit<T>]) -> usize,
    {
        self.send_in(Instant::now().checked_add(timeout), fill)
    }

    fn send_in<F>(&mut self, deadline: Option<Instant>, fill: F) -> Result<(Key, usize), Error>
    where
        F: FnOnce(Key, &mut [MaybeUninit<T>]) -> usize,
    {
        let mut fill = Some(fill);
        loop {
            match self.attempt(&mut fill) {
                Err(Error::Full) => {}
                done => return done,
            }
            if !self.prepare_wait()? {
                continue;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout);
            }
            self.poller.wait(sleep_until(deadline, now).0, |_| {})?;
        }
    }

    /// One send, to the member the policy picks, or to the next ones if
    /// it has no room or is gone. `fill` is taken only by the send that
    /// publishes.
    fn attempt<F>(&mut self, fill: &mut Option<F>) -> Result<(Key, usize), Error>
    where
        F: FnOnce(Key, &mut [MaybeUninit<T>]) -> usize,
    {
        if self.policy == Policy::LeastLoaded {
            if let Some(at) = self.least_loaded() {
                self.cursor = at;
            }
        }
        let mut tried = 0;
        while tried < self.order.len() {
            let at = self.cursor % self.order.len();
            let key = self.order[at];
            let Some(worker) = self.workers.get_mut(key) else {
                // Not reachable: `order` holds exactly the members.
                self.order.remove(at);
                continue;
            };
            let sent = worker.tx.try_send_with(|slots| match fill.take() {
                Some(fill) => fill(key, slots),
                None => 0,
            });
            match sent {
                Ok(n) => {
                    worker.sent += n as u64;
                    self.cursor = at + 1;
                    return Ok((key, n));
                }
                Err(Error::Full) => {
                    self.cursor = at + 1;
                    tried += 1;
                }
                // Gone or broken: its unread items are kept; the next
                // member has its place in the order.
                Err(e) => {
                    self.retire(key, e);
                }
            }
        }
        if self.order.is_empty() {
            Err(Error::Disconnected)
        } else {
            Err(Error::Full)
        }
    }

    /// Where in `order` the member with the fewest items is (the first
    /// from the cursor among equals); `None` if every member is full.
    fn least_loaded(&self) -> Option<usize> {
        let len = self.order.len();
        (0..len)
            .map(|i| (self.cursor + i) % len)
            .filter_map(|at| {
                let tx = &self.workers.get(self.order[at])?.tx;
                let fill = tx.len();
                (fill < tx.capacity()).then_some((fill, at))
            })
            .min_by_key(|&(fill, _)| fill)
            .map(|(_, at)| at)
    }

    /// Removes the member `key`, which left because of `error`, and keeps
    /// what it never read for [`take_lost`](Self::take_lost).
    fn retire(&mut self, key: Key, error: Error) {
        if let Some(lost) = self.lose(key, error) {
            self.lost.push_back(lost);
        }
    }

    /// Removes the member `key`, which left because of `error`, and
    /// returns what it never read. `None` if it is not a member.
    pub(super) fn lose(&mut self, key: Key, error: Error) -> Option<Lost<T>> {
        let sent = self.workers.get(key)?.sent;
        let mut tx = self.remove(key)?;
        let (unread, error) = match tx.take_unread() {
            Ok(unread) => (unread, error),
            // Broken, or alive but dropped from the dispatch: nothing can
            // be taken back.
            Err(Error::PeerAlive) => (Vec::new(), error),
            Err(e) => (Vec::new(), e),
        };
        Some(Lost {
            key,
            taken: sent.saturating_sub(unread.len() as u64),
            unread,
            unanswered: None,
            error,
        })
    }

    /// The next member that left, with what it never read: found by a
    /// send, or now (one `epoll_wait`, and a look at each member whose
    /// fds had events: a receiver that dies is seen even while no send
    /// goes its way). `None` if no member left.
    ///
    /// # Errors
    ///
    /// `Io` if the kernel fails the `epoll_wait`.
    ///
    /// ```
    /// use fdring::topology::{Dispatch, Policy};
    ///
    /// let mut dispatch = Dispatch::new(Policy::RoundRobin)?;
    /// let (tx, mut rx) = fdring::channel::<u64>(512)?;
    /// let key = dispatch.add(tx)?;
    /// for job in 0..5 {
    ///     dispatch.send(job)?;
    /// }
    /// assert_eq!(rx.recv()?, 0);
    /// drop(rx); // the worker dies with four jobs unread
    /// let lost = dispatch.take_lost()?.unwrap();
    /// assert_eq!((lost.key, lost.unread, lost.taken), (key, vec![1, 2, 3, 4], 1));
    /// assert!(dispatch.is_empty());
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn take_lost(&mut self) -> Result<Option<Lost<T>>, Error> {
        if self.lost.is_empty() {
            self.reap()?;
        }
        Ok(self.lost.pop_front())
    }

    /// The next member a send found gone, without looking for others.
    pub(super) fn found_lost(&mut self) -> Option<Lost<T>> {
        self.lost.pop_front()
    }

    /// Retires the members whose fds had events and whose receiver is gone.
    ///
    /// The events of the others (room, after the dispatch was armed) are
    /// not this call's: they are given back to the poller, or an event
    /// loop that waits on the dispatch's fd after this call (a loop that
    /// looks for lost members once its sends are `Full`) would never be
    /// told of that room.
    fn reap(&mut self) -> Result<(), Error> {
        let mut news = Vec::new();
        self.poller.harvest(|k| news.push(Key(k)))?;
        // A member's wake-up socket and liveness may both have had events.
        news.sort_unstable();
        news.dedup();
        for key in news {
            let Some(worker) = self.workers.get(key) else {
                continue;
            };
            if worker.tx.is_abandoned() {
                self.retire(key, Error::Disconnected);
            } else {
                self.poller.requeue(worker.tx.as_fd(), key.get())?;
            }
        }
        Ok(())
    }

    /// Waits until every member has taken every item sent to it, or for
    /// `timeout` (msg-pool's `wait_til_empty`, over the whole pool).
    ///
    /// # Errors
    ///
    /// `Timeout` if items were still unread after `timeout`;
    /// `Disconnected` if a member left with items unread: it is removed,
    /// and [`take_lost`](Self::take_lost) gives them back (resend them,
    /// then wait again).
    pub fn wait_drained(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now().checked_add(timeout);
        for at in 0..self.order.len() {
            let key = self.order[at];
            let Some(worker) = self.workers.get_mut(key) else {
                continue;
            };
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            match worker.tx.wait_drained(left) {
                Ok(()) => {}
                Err(e @ Error::Timeout) => return Err(e),
                Err(e) => {
                    self.retire(key, e);
                    return Err(Error::Disconnected);
                }
            }
        }
        Ok(())
    }

    /// Prepares to wait on the dispatch's fd in your own event loop, after
    /// a `try_` call returned `Full`: arms every member for room.
    /// `Ok(true)`: the fd becomes readable when one has room (or leaves);
    /// `Ok(false)`: one has, retry now.
    ///
    /// # Errors
    ///
    /// `Io` if a wake-up socket cannot be drained.
    pub fn prepare_wait(&mut self) -> Result<bool, Error> {
        for (_, worker) in self.workers.iter_mut() {
            if !worker.tx.prepare_wait()? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl<T: Pod> AsFd for Dispatch<T> {
    /// The dispatch's epoll instance: readable when a `try_` call that
    /// returned `Full` may succeed, or a member left.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.poller.as_fd()
    }
}

impl<T: Pod> fmt::Debug for Dispatch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatch")
            .field("members", &self.workers.len())
            .field("policy", &self.policy)
            .field("lost", &self.lost.len())
            .finish_non_exhaustive()
    }
}
