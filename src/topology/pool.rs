//! [`Pool`]: a worker pool, jobs out through a [`Dispatch`] and replies
//! back through a [`Merge`], one pair of rings per worker, and the work a
//! dead worker leaves behind.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::poller::{sleep_until, Poller};
use super::{Dispatch, Key, Lost, Merge, Next, Policy};
use crate::error::Error;
use crate::{Receiver, Sender};

/// A worker pool: jobs of type `J` go out to the workers by a [`Policy`]
/// (a [`Dispatch`]), each worker answers on a reply ring of `R`, and the
/// replies come back fairly through one [`Merge`]. A worker is known by
/// one [`Key`] on both sides.
///
/// When a worker dies, its reply ring is drained to the last reply it
/// sent, then its [`Lost`] is ready for [`take_lost`](Self::take_lost):
/// the jobs it never took (copied back out of its ring, exactly), and how
/// many it took but never answered, assuming one reply per job; which
/// those were only the application can tell (keep the job ids you sent
/// each worker and cross off the answers, say). Resend both to the
/// others, and every job is answered exactly once.
///
/// The pool is [`AsFd`]: after a `try_` call returned `Full` or `Empty`
/// and [`prepare_wait`](Self::prepare_wait) said so, the fd becomes
/// readable when a send or a receive may succeed; [`wait`](Self::wait)
/// does it for you.
///
/// ```
/// use fdring::topology::{Next, Policy, Pool};
///
/// let mut pool = Pool::<u64, u64>::new(Policy::RoundRobin)?;
/// for _ in 0..4 {
///     let (jobs_tx, mut jobs) = fdring::channel::<u64>(512)?;
///     let (mut replies, replies_rx) = fdring::channel::<u64>(512)?;
///     pool.add(jobs_tx, replies_rx)?;
///     std::thread::spawn(move || {
///         while let Ok(job) = jobs.recv() {
///             replies.send(job * 2).unwrap();
///         }
///     });
/// }
/// let (mut sent, mut sum) = (0, 0);
/// while sent < 1000 || pool.in_flight() > 0 {
///     if sent < 1000 && pool.try_send(sent).is_ok() {
///         sent += 1;
///     }
///     if let Ok(Next::Ready(_, reply)) = pool.try_recv() {
///         sum += reply;
///     }
/// }
/// assert_eq!(sum, 999 * 1000);
/// # Ok::<(), fdring::Error>(())
/// ```
pub struct Pool<J: Pod, R: Pod> {
    jobs: Dispatch<J>,
    replies: Merge<Receiver<R>>,
    workers: HashMap<Key, Worker<J>>,
    /// A worker's reply key to its key (the job side's).
    by_reply: HashMap<Key, Key>,
    lost: VecDeque<Lost<J>>,
    /// Both sides' epoll instances.
    poller: Poller,
    /// Jobs sent, less replies received: what the workers have yet to
    /// answer.
    in_flight: u64,
}

struct Worker<J> {
    reply: Key,
    answered: u64,
    /// The job side retired first (a send found the worker gone): its
    /// loss waits for the reply side to end, so that every reply it sent
    /// is counted first.
    retired: Option<Lost<J>>,
}

/// The poller keys of the two sides.
const JOBS: u64 = 0;
const REPLIES: u64 = 1;

impl<J: Pod, R: Pod> Pool<J, R> {
    /// An empty pool sending jobs by `policy`.
    ///
    /// # Errors
    ///
    /// `Io` if the kernel refuses an epoll instance (out of fds).
    pub fn new(policy: Policy) -> Result<Pool<J, R>, Error> {
        let (jobs, replies, poller) = (Dispatch::new(policy)?, Merge::new()?, Poller::new()?);
        poller.add(jobs.as_fd(), JOBS)?;
        poller.add(replies.as_fd(), REPLIES)?;
        Ok(Pool {
            jobs,
            replies,
            workers: HashMap::new(),
            by_reply: HashMap::new(),
            lost: VecDeque::new(),
            poller,
            in_flight: 0,
        })
    }

    /// Adds a worker: the sending end of its job ring and the receiving
    /// end of its reply ring. Returns its key.
    ///
    /// # Errors
    ///
    /// `Io` if its fds cannot be watched (both ends are dropped).
    pub fn add(&mut self, jobs: Sender<J>, replies: Receiver<R>) -> Result<Key, Error> {
        let key = self.jobs.add(jobs)?;
        let reply = match self.replies.add(replies) {
            Ok(reply) => reply,
            Err(e) => {
                self.jobs.remove(key);
                return Err(e);
            }
        };
        self.workers.insert(
            key,
            Worker {
                reply,
                answered: 0,
                retired: None,
            },
        );
        self.by_reply.insert(reply, key);
        Ok(key)
    }

    /// Removes the worker `key` and gives its two ends back; `None` if it
    /// is not a member (any more).
    pub fn remove(&mut self, key: Key) -> Option<(Option<Sender<J>>, Receiver<R>)> {
        let worker = self.workers.remove(&key)?;
        self.by_reply.remove(&worker.reply);
        let jobs = self.jobs.remove(key);
        let replies = self.replies.remove(worker.reply)?;
        Some((jobs, replies))
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether there is no worker.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// The keys of the workers, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.workers.keys().copied()
    }

    /// Jobs sent and not yet answered (one reply per job), over the
    /// workers still members and those whose loss was not yet taken.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Sends a job, as [`Dispatch::try_send`].
    ///
    /// # Errors
    ///
    /// As for [`Dispatch::try_send`].
    pub fn try_send(&mut self, job: J) -> Result<Key, Error> {
        let sent = self.jobs.try_send(job);
        self.count_sent(sent.as_ref().ok().map(|_| 1));
        sent
    }

    /// Sends a job, as [`Dispatch::send`].
    ///
    /// # Errors
    ///
    /// As for [`Dispatch::send`].
    pub fn send(&mut self, job: J) -> Result<Key, Error> {
        let sent = self.jobs.send(job);
        self.count_sent(sent.as_ref().ok().map(|_| 1));
        sent
    }

    /// Sends a job, as [`Dispatch::send_timeout`].
    ///
    /// # Errors
    ///
    /// As for [`Dispatch::send_timeout`].
    pub fn send_timeout(&mut self, job: J, timeout: Duration) -> Result<Key, Error> {
        let sent = self.jobs.send_timeout(job, timeout);
        self.count_sent(sent.as_ref().ok().map(|_| 1));
        sent
    }

    /// Lends a worker's free slots for jobs, as [`Dispatch::try_send_with`].
    ///
    /// # Errors
    ///
    /// As for [`Dispatch::try_send_with`].
    ///
    /// # Panics
    ///
    /// As for [`Dispatch::try_send_with`].
    pub fn try_send_with<F>(&mut self, fill: F) -> Result<(Key, usize), Error>
    where
        F: FnOnce(Key, &mut [MaybeUninit<J>]) -> usize,
    {
        let sent = self.jobs.try_send_with(fill);
        self.count_sent(sent.as_ref().ok().map(|&(_, n)| n as u64));
        sent
    }

    /// Lends a worker's free slots for jobs, as [`Dispatch::send_with`].
    ///
    /// # Errors
    ///
    /// As for [`Dispatch::send_with`].
    ///
    /// # Panics
    ///
    /// As for [`Dispatch::try_send_with`].
    pub fn send_with<F>(&mut self, fill: F) -> Result<(Key, usize), Error>
    where
        F: FnOnce(Key, &mut [MaybeUninit<J>]) -> usize,
    {
        let sent = self.jobs.send_with(fill);
        self.count_sent(sent.as_ref().ok().map(|&(_, n)| n as u64));
        sent
    }

    /// Counts jobs sent, and takes in the workers a send found gone
    /// (without looking for others: that is an `epoll_wait`, which a send
    /// that went through does not need; [`take_lost`](Self::take_lost)
    /// looks).
    fn count_sent(&mut self, sent: Option<u64>) {
        self.in_flight += sent.unwrap_or(0);
        while let Some(lost) = self.jobs.found_lost() {
            self.job_side_left(lost);
        }
    }

    /// The job side of a worker left: its loss is complete once its reply
    /// side has ended too (every reply counted).
    fn job_side_left(&mut self, lost: Lost<J>) {
        if let Some(worker) = self.workers.get_mut(&lost.key) {
            worker.retired = Some(lost);
        }
    }

    /// The next reply, with its worker's key, or news of a worker; does
    /// not wait. `Ended(key, why)` says the worker is gone and its
    /// [`Lost`] is ready for [`take_lost`](Self::take_lost).
    ///
    /// # Errors
    ///
    /// As for [`Merge::try_recv`].
    pub fn try_recv(&mut self) -> Result<Next<R>, Error> {
        let next = self.replies.try_recv();
        self.settle(next, |_| 1)
    }

    /// Like [`try_recv`](Self::try_recv), but sleeps until a reply or news.
    ///
    /// # Errors
    ///
    /// As for [`Merge::recv`].
    pub fn recv(&mut self) -> Result<Next<R>, Error> {
        let next = self.replies.recv();
        self.settle(next, |_| 1)
    }

    /// Like [`recv`](Self::recv), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`Merge::recv_timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Next<R>, Error> {
        let next = self.replies.recv_timeout(timeout);
        self.settle(next, |_| 1)
    }

    /// Lends the ready replies of one worker, as
    /// [`Merge::try_recv_with`].
    ///
    /// # Errors
    ///
    /// As for [`Merge::try_recv_with`].
    ///
    /// # Panics
    ///
    /// As for [`Merge::try_recv_with`].
    pub fn try_recv_with<F>(&mut self, mut consume: F) -> Result<Next<usize>, Error>
    where
        F: FnMut(Key, &[R]) -> usize,
    {
        let by_reply = &self.by_reply;
        let next = self.replies.try_recv_with(|reply, items| {
            consume(by_reply.get(&reply).copied().unwrap_or(reply), items)
        });
        self.settle(next, |&n| n as u64)
    }

    /// Lends the ready replies of one worker, as [`Merge::recv_with`].
    ///
    /// # Errors
    ///
    /// As for [`Merge::recv_with`].
    ///
    /// # Panics
    ///
    /// As for [`Merge::try_recv_with`].
    pub fn recv_with<F>(&mut self, mut consume: F) -> Result<Next<usize>, Error>
    where
        F: FnMut(Key, &[R]) -> usize,
    {
        let by_reply = &self.by_reply;
        let next = self.replies.recv_with(|reply, items| {
            consume(by_reply.get(&reply).copied().unwrap_or(reply), items)
        });
        self.settle(next, |&n| n as u64)
    }

    /// Lends the ready replies of one worker, as
    /// [`Merge::recv_with_timeout`].
    ///
    /// # Errors
    ///
    /// As for [`Merge::recv_with_timeout`].
    ///
    /// # Panics
    ///
    /// As for [`Merge::try_recv_with`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use fdring::topology::{Policy, Pool};
    ///
    /// let mut pool = Pool::<u64, u64>::new(Policy::RoundRobin)?;
    /// let (jobs, _worker_jobs) = fdring::channel::<u64>(512)?;
    /// let (_worker_replies, replies) = fdring::channel::<u64>(512)?;
    /// pool.add(jobs, replies)?;
    /// let waited = pool.recv_with_timeout(Duration::from_millis(10), |_, replies| replies.len());
    /// assert_eq!(waited, Err(fdring::Error::Timeout));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn recv_with_timeout<F>(
        &mut self,
        timeout: Duration,
        mut consume: F,
    ) -> Result<Next<usize>, Error>
    where
        F: FnMut(Key, &[R]) -> usize,
    {
        let by_reply = &self.by_reply;
        let next = self.replies.recv_with_timeout(timeout, |reply, items| {
            consume(by_reply.get(&reply).copied().unwrap_or(reply), items)
        });
        self.settle(next, |&n| n as u64)
    }

    /// Renames a delivery of the replies' merge to the worker's key,
    /// counts replies (`count` of what was delivered), and completes the
    /// loss of a worker whose reply side ended.
    fn settle<X>(
        &mut self,
        next: Result<Next<X>, Error>,
        count: impl FnOnce(&X) -> u64,
    ) -> Result<Next<X>, Error> {
        Ok(match next? {
            Next::Ready(reply, x) => {
                let key = self.by_reply.get(&reply).copied().unwrap_or(reply);
                let n = count(&x);
                if let Some(worker) = self.workers.get_mut(&key) {
                    worker.answered += n;
                }
                self.in_flight = self.in_flight.saturating_sub(n);
                Next::Ready(key, x)
            }
            Next::Ended(reply, why) => {
                let key = self.by_reply.remove(&reply).unwrap_or(reply);
                self.worker_left(key, &why);
                Next::Ended(key, why)
            }
            // The replies' merge has no listener.
            other => other,
        })
    }

    /// The reply side of worker `key` ended (`why`): every reply it sent
    /// was counted. Its job side leaves too, and its loss is complete.
    fn worker_left(&mut self, key: Key, why: &Error) {
        let Some(worker) = self.workers.remove(&key) else {
            return;
        };
        let retired = match worker.retired {
            Some(lost) => Some(lost),
            None => {
                let why = match why {
                    Error::Corrupted(c) => Error::Corrupted(*c),
                    _ => Error::Disconnected,
                };
                self.jobs.lose(key, why)
            }
        };
        if let Some(mut lost) = retired {
            let unanswered = lost.taken.saturating_sub(worker.answered);
            lost.unanswered = Some(unanswered);
            // What it never took and never answered is no longer in flight
            // here: the caller resends it.
            self.in_flight = self
                .in_flight
                .saturating_sub(unanswered + lost.unread.len() as u64);
            self.lost.push_back(lost);
        }
    }

    /// The next worker that left, with the jobs it never took and the
    /// count of those it took and never answered; `None` if none left
    /// since the last call. A worker's loss is ready once its reply ring
    /// was drained (the receive calls report its end as
    /// [`Next::Ended`]).
    ///
    /// # Errors
    ///
    /// `Io` if the kernel fails a call.
    pub fn take_lost(&mut self) -> Result<Option<Lost<J>>, Error> {
        if self.lost.is_empty() {
            // Members whose receiver is gone (found now, by their events)
            // leave the job side; their loss completes with the reply side.
            while let Some(lost) = self.jobs.take_lost()? {
                self.job_side_left(lost);
            }
        }
        Ok(self.lost.pop_front())
    }

    /// Waits until every job sent was taken by its worker, as
    /// [`Dispatch::wait_drained`].
    ///
    /// # Errors
    ///
    /// As for [`Dispatch::wait_drained`].
    pub fn wait_drained(&mut self, timeout: Duration) -> Result<(), Error> {
        let drained = self.jobs.wait_drained(timeout);
        self.count_sent(None);
        drained
    }

    /// Prepares to wait on the pool's fd: `Ok(true)` if no reply is ready
    /// and no worker has room (all armed), so that the fd becomes readable
    /// when either changes; `Ok(false)` to retry now. Sending and
    /// receiving in one loop, call it once both `try_` calls would block
    /// (or use [`wait`](Self::wait)).
    ///
    /// # Errors
    ///
    /// `Io` if the kernel fails a call.
    pub fn prepare_wait(&mut self) -> Result<bool, Error> {
        Ok(self.replies.prepare_wait()? && self.jobs.prepare_wait()?)
    }

    /// Prepares to wait on the pool's fd to send only, after a `try_send`
    /// call returned `Full`: arms every worker's job ring for room, and
    /// leaves the replies alone (a reply waiting to be received does not
    /// make this return `Ok(false)`, as it does
    /// [`prepare_wait`](Self::prepare_wait)). `Ok(true)`: the fd becomes
    /// readable when a worker has room or leaves; `Ok(false)`: one has,
    /// retry now. The fd is the pool's one, so a reply ring armed before
    /// may make it readable too: that costs a retry, nothing else.
    ///
    /// # Errors
    ///
    /// `Io` if a wake-up socket cannot be drained.
    ///
    /// ```
    /// use fdring::topology::{Policy, Pool};
    ///
    /// let mut pool = Pool::<u64, u64>::new(Policy::RoundRobin)?;
    /// let (jobs_tx, mut jobs) = fdring::channel::<u64>(512)?;
    /// let (mut replies, replies_rx) = fdring::channel::<u64>(512)?;
    /// pool.add(jobs_tx, replies_rx)?;
    /// while pool.try_send(1).is_ok() {}
    /// replies.send(2)?; // a reply, not received yet
    /// assert!(!pool.prepare_wait()?); // both ways: receive it now
    /// assert!(pool.prepare_wait_to_send()?); // sending: armed, wait
    /// jobs.recv()?; // the worker takes a job
    /// assert!(!pool.prepare_wait_to_send()?); // room: send now
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn prepare_wait_to_send(&mut self) -> Result<bool, Error> {
        self.jobs.prepare_wait()
    }

    /// Prepares to wait on the pool's fd to receive only, after a receive
    /// returned `Empty` (which armed the replies already: this looks
    /// again): `Ok(true)` if no reply is ready and every reply ring is
    /// armed, whatever room the job rings have; `Ok(false)` to retry now.
    ///
    /// # Errors
    ///
    /// `Io` if the kernel fails a call.
    ///
    /// ```
    /// use fdring::topology::{Policy, Pool};
    ///
    /// let mut pool = Pool::<u64, u64>::new(Policy::RoundRobin)?;
    /// let (jobs_tx, _jobs) = fdring::channel::<u64>(512)?;
    /// let (mut replies, replies_rx) = fdring::channel::<u64>(512)?;
    /// pool.add(jobs_tx, replies_rx)?;
    /// assert!(!pool.prepare_wait()?); // both ways: a job can be sent now
    /// assert!(pool.prepare_wait_to_recv()?); // receiving: armed, wait
    /// replies.send(7)?;
    /// assert!(!pool.prepare_wait_to_recv()?); // a reply: receive it now
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn prepare_wait_to_recv(&mut self) -> Result<bool, Error> {
        self.replies.prepare_wait()
    }

    /// Sleeps until a job can be sent or a reply received (or a worker
    /// left), or for `timeout` if given; returns at once if one can now.
    /// For a loop that both sends and receives: call it once both `try_`
    /// calls would block. With no job left to send, wait for replies with
    /// [`recv_with`](Self::recv_with) instead: a worker with room would
    /// make this return at once.
    ///
    /// # Errors
    ///
    /// `Io` if the kernel fails a call.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        if !self.prepare_wait()? {
            return Ok(());
        }
        let now = Instant::now();
        let deadline = timeout.and_then(|t| now.checked_add(t));
        self.poller.wait(sleep_until(deadline, now).0, |_| {})?;
        Ok(())
    }
}

impl<J: Pod, R: Pod> AsFd for Pool<J, R> {
    /// The pool's epoll instance (over its dispatch's and its merge's).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.poller.as_fd()
    }
}

impl<J: Pod, R: Pod> fmt::Debug for Pool<J, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers.len())
            .field("in_flight", &self.in_flight)
            .field("lost", &self.lost.len())
            .finish_non_exhaustive()
    }
}
