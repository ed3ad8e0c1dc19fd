//! [`Merge`]: fan-in, one consumer over many sources, fairly.

use std::collections::VecDeque;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::joining::{Joined, Joining, LISTENER};
use super::poller::{sleep_until, Poller};
use super::table::{Table, INTERNAL};
use super::{Key, Next, Source};
use crate::channel::Wait;
use crate::error::Error;
use crate::event_loop::MAX_ATTEMPTS;
use crate::service::{Connection, Listener};
use crate::{Frame, FrameReceiver, Receiver};

/// How long a blocking call looks at the sources again and again, once
/// all were found empty, before it arms them and sleeps: as long as a
/// single end spins ([`DEFAULT_SPIN`](crate::DEFAULT_SPIN)).
const SPIN: Duration = crate::DEFAULT_SPIN;

/// How long a client of the merge's listener has, from its connection, to
/// offer its ring, unless [`Merge::join_timeout`] says otherwise.
pub const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(1);

/// One consumer over any number of sources ([`Receiver`]s, or
/// [`FrameReceiver`]s), served fairly: fan-in.
///
/// Sources are added and removed at any time, by hand or as the clients
/// of a [listener](Self::listen) connect. Each call delivers from one
/// source, with its [`Key`]; the sources take turns, each delivering up
/// to its budget per turn ([`budget`](Self::budget)), so no source waits
/// for another to be drained. While nothing is ready, one `epoll_wait`
/// sleeps over every source's wake-up socket (and watched liveness): no
/// CPU is spent, and each producer wakes the merge only when it really
/// sleeps, as with one ring.
///
/// A source whose producer closes or dies is drained to its last item,
/// then reported once as [`Next::Ended`] and removed; one that breaks its
/// ring is ended at once, with the corruption. Neither affects the other
/// sources. With no source left and no listener, the blocking calls
/// return `Disconnected`: nothing could ever arrive (add a source, and
/// they deliver again).
///
/// The merge is [`AsFd`] (its epoll instance): after a `try_` call
/// returned `Empty`, the fd becomes readable when one may succeed. So one
/// event loop can serve a merge next to anything else; see the `mio` and
/// `tokio` features.
///
/// ```
/// use fdring::topology::{Merge, Next};
///
/// let mut merge = Merge::new()?;
/// let (mut a_tx, a) = fdring::channel::<u32>(1024)?;
/// let (mut b_tx, b) = fdring::channel::<u32>(1024)?;
/// let (a, b) = (merge.add(a)?, merge.add(b)?);
/// a_tx.send_slice(&[1, 2, 3])?;
/// b_tx.send(10)?;
/// let mut got = Vec::new();
/// while let Ok(Next::Ready(key, n)) = merge.try_recv_with(|key, items| {
///     got.extend(items.iter().map(|&i| (key, i)));
///     items.len()
/// }) {
///     assert!(n > 0);
/// }
/// got.sort();
/// assert_eq!(got, [(a, 1), (a, 2), (a, 3), (b, 10)]);
/// # Ok::<(), fdring::Error>(())
/// ```
pub struct Merge<R: Source> {
    sources: Table<Member<R>>,
    /// The sources that may have something: each at most once, the one
    /// whose turn it is first. The others are parked: armed, and in the
    /// poller's hands.
    ready: VecDeque<Key>,
    /// What the source at the front delivered in its turn so far.
    turn: usize,
    /// Sources found empty in a row, since the last delivery.
    misses: usize,
    /// When a blocking call found every queued source empty first.
    spin_since: Option<Instant>,
    /// Turns ended since the poller's events were last collected: after
    /// a round of the queue, they are collected between turns (see
    /// `round_done`).
    turns_since_collect: usize,
    budget: usize,
    poller: Poller,
    notices: VecDeque<Notice>,
    joining: Option<Joining<R>>,
    join_timeout: Duration,
    /// When every parked source was last looked at regardless of events
    /// (only where sleeps are sliced: see `poller::sleep_until`).
    swept: Instant,
}

/// News of the listener, delivered before any item.
enum Notice {
    Joined(Key),
    Refused(Error),
}

struct Member<R> {
    source: R,
    /// In `ready`.
    queued: bool,
    /// Arms in a row that found progress, without a delivery since: a
    /// peer flooding the wake-up socket, which must not keep the merge
    /// retrying it.
    spurious: u32,
}

impl<R: Source> Merge<R> {
    /// An empty merge.
    ///
    /// # Errors
    ///
    /// `Io` if the kernel refuses an epoll instance (out of fds).
    ///
    /// ```
    /// let merge = fdring::topology::Merge::<fdring::Receiver<u64>>::new()?;
    /// assert!(merge.is_empty());
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn new() -> Result<Merge<R>, Error> {
        Ok(Merge {
            sources: Table::new(),
            ready: VecDeque::new(),
            turn: 0,
            misses: 0,
            spin_since: None,
            turns_since_collect: 0,
            budget: R::BUDGET,
            poller: Poller::new()?,
            notices: VecDeque::new(),
            joining: None,
            join_timeout: DEFAULT_JOIN_TIMEOUT,
            swept: Instant::now(),
        })
    }

    /// Sets how much one source delivers per turn before the next one's
    /// turn: items for [`Receiver`]s (1024 by default), frames for
    /// [`FrameReceiver`]s (1). A source waits at most `budget` times the
    /// number of other sources deliveries for its turn. At least 1.
    ///
    /// ```
    /// let merge = fdring::topology::Merge::<fdring::Receiver<u64>>::new()?.budget(64);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn budget(mut self, budget: usize) -> Merge<R> {
        self.budget = budget.max(1);
        self
    }

    /// Adds a source; returns its key. It is looked at on the next call.
    ///
    /// # Errors
    ///
    /// `Io` if its fds cannot be watched (the source is dropped).
    pub fn add(&mut self, source: R) -> Result<Key, Error> {
        let key = self.sources.next_key();
        self.poller.add(source.as_fd(), key.get())?;
        if let Some(liveness) = source.peer_liveness() {
            if let Err(e) = self.poller.add(liveness.as_fd(), key.get()) {
                self.poller.remove(source.as_fd());
                return Err(e);
            }
        }
        self.sources.insert(Member {
            source,
            queued: true,
            spurious: 0,
        });
        self.ready.push_back(key);
        Ok(key)
    }

    /// Removes the source `key` and gives it back, with what is left in
    /// its ring; `None` if it is not a source (any more).
    ///
    /// ```
    /// let mut merge = fdring::topology::Merge::new()?;
    /// let (mut tx, rx) = fdring::channel::<u64>(512)?;
    /// let key = merge.add(rx)?;
    /// tx.send(1)?;
    /// let mut rx = merge.remove(key).unwrap();
    /// assert_eq!(rx.recv()?, 1);
    /// assert!(merge.remove(key).is_none());
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn remove(&mut self, key: Key) -> Option<R> {
        let member = self.sources.remove(key)?;
        self.forget(&member.source);
        if self.ready.front() == Some(&key) {
            self.ready.pop_front();
            self.turn = 0;
        } else if member.queued {
            self.ready.retain(|&k| k != key);
        }
        Some(member.source)
    }

    fn forget(&self, source: &R) {
        self.poller.remove(source.as_fd());
        if let Some(liveness) = source.peer_liveness() {
            self.poller.remove(liveness.as_fd());
        }
    }

    /// The source `key`, if it is one.
    pub fn get(&self, key: Key) -> Option<&R> {
        self.sources.get(key).map(|m| &m.source)
    }

    /// The source `key`, if it is one.
    pub fn get_mut(&mut self, key: Key) -> Option<&mut R> {
        self.sources.get_mut(key).map(|m| &mut m.source)
    }

    /// The keys of the sources, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.sources.iter().map(|(key, _)| key)
    }

    /// How many sources there are.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether there is no source.
    pub fn is_empty(&self) -> bool {
        self.sources.len() == 0
    }

    /// Serves `listener` from now on: each client it allows joins the
    /// merge once `open` has made its connection into a source (with
    /// [`Connection::take_receiver`] or
    /// [`Connection::take_frame_receiver`], usually), reported as
    /// [`Next::Joined`]. A client the listener refuses, or whose ring
    /// fails to open, is reported as [`Next::Refused`]; the merge goes on.
    ///
    /// Nothing waits on a client: the merge reads from it only once it
    /// has spoken, and gives it [`join_timeout`](Self::join_timeout) from
    /// its connection to finish. So a producer that restarts and connects
    /// again simply joins again, and the consumer keeps running. While a
    /// listener is served the merge never ends: the blocking calls wait
    /// for sources to join.
    ///
    /// `open` gets the key the source will have, and may keep the
    /// connection's other rings (a reply ring, say) under it.
    ///
    /// # Errors
    ///
    /// `Io` if the listener cannot be watched.
    ///
    /// ```
    /// use fdring::service::{self, Listener};
    /// use fdring::topology::{Merge, Next};
    /// use fdring::Builder;
    ///
    /// let name = format!("doc-merge-{}", std::process::id());
    /// let mut merge = Merge::<fdring::Receiver<u64>>::new()?;
    /// merge.listen(Listener::bind(&name)?, |_key, connection| {
    ///     connection.take_receiver(&Builder::new())
    /// })?;
    /// let client = std::thread::spawn(move || -> Result<(), fdring::Error> {
    ///     let ring = Builder::new().capacity(512);
    ///     let mut tx = service::connect(&name)?.offer_receiver::<u64>(&ring)?;
    ///     tx.send(42)
    /// });
    /// let joined = merge.recv()?;
    /// let Next::Joined(key) = joined else { panic!("{joined:?}") };
    /// assert_eq!(merge.recv()?, Next::Ready(key, 42));
    /// client.join().unwrap()?;
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn listen<F>(&mut self, listener: Listener, open: F) -> Result<(), Error>
    where
        F: FnMut(Key, &mut Connection) -> Result<R, Error> + Send + 'static,
    {
        if let Some(old) = self.joining.take() {
            drop(old.into_listener(&self.poller));
        }
        self.joining = Some(Joining::new(
            listener,
            Box::new(open),
            self.join_timeout,
            &self.poller,
        )?);
        Ok(())
    }

    /// Stops serving the listener and gives it back; clients that had not
    /// yet offered their ring are dropped.
    pub fn unlisten(&mut self) -> Option<Listener> {
        let joining = self.joining.take()?;
        Some(joining.into_listener(&self.poller))
    }

    /// Sets how long a client of the listener has, from its connection,
    /// to offer its ring ([`DEFAULT_JOIN_TIMEOUT`] by default). A client
    /// that connects and stays silent costs the merge nothing until then;
    /// one that starts its offer and stalls holds the merge's call for at
    /// most the rest of it.
    pub fn join_timeout(&mut self, timeout: Duration) {
        self.join_timeout = timeout;
        if let Some(joining) = &mut self.joining {
            joining.timeout = timeout;
        }
    }

    /// Prepares to wait on the merge's fd in your own event loop: `Ok(true)`
    /// if every source is armed and nothing is pending, so that the fd
    /// becomes readable when a `try_` call may deliver; `Ok(false)` if one
    /// may deliver now (call it). The `try_` calls do this themselves
    /// before they return `Empty`.
    ///
    /// # Errors
    ///
    /// `Io` if the kernel fails a call.
    pub fn prepare_wait(&mut self) -> Result<bool, Error> {
        if !self.notices.is_empty() {
            return Ok(false);
        }
        while let Some(&key) = self.ready.front() {
            let Some(member) = self.sources.get_mut(key) else {
                self.ready.pop_front();
                continue;
            };
            match member.source.arm() {
                Ok(true) => self.park(),
                Ok(false) | Err(_) => return Ok(false),
            }
        }
        self.collect(Some(Instant::now()))?;
        Ok(self.ready.is_empty() && self.notices.is_empty())
    }

    /// The next delivery: `attempt` is a `try_` call on the source whose
    /// turn it is, given what is left of its budget; it returns what to
    /// deliver and how much of the budget that used.
    fn next<X>(
        &mut self,
        wait: Wait,
        mut attempt: impl FnMut(Key, &mut R, usize) -> Result<(X, usize), Error>,
    ) -> Result<Next<X>, Error> {
        let mut idled = false;
        loop {
            if let Some(notice) = self.notices.pop_front() {
                return Ok(match notice {
                    Notice::Joined(key) => Next::Joined(key),
                    Notice::Refused(e) => Next::Refused(e),
                });
            }
            let Some(&key) = self.ready.front() else {
                self.idle(wait, idled)?;
                idled = true;
                continue;
            };
            if self.round_done() {
                self.look_around(Instant::now())?;
                continue;
            }
            let Some(member) = self.sources.get_mut(key) else {
                self.ready.pop_front();
                self.turn = 0;
                continue;
            };
            let attempted = attempt(key, &mut member.source, self.budget - self.turn);
            if attempted.is_ok() {
                member.spurious = 0;
            }
            match attempted {
                Ok((delivered, used)) => {
                    self.misses = 0;
                    self.spin_since = None;
                    self.turn += used;
                    if used == 0 || self.turn >= self.budget {
                        self.rotate();
                    }
                    return Ok(Next::Ready(key, delivered));
                }
                // Others may be streaming: look at the next one first. Only
                // when every queued source was found empty in a row (and,
                // for a blocking call, for `SPIN` more) are they armed one
                // by one: arming costs a system call here and makes the
                // producer's next publish cost one there, which a stream
                // that flows must not pay.
                Err(Error::Empty) if !self.all_missed(wait) => {
                    self.misses += 1;
                    self.rotate();
                }
                Err(Error::Empty) => {
                    let Some(member) = self.sources.get_mut(key) else {
                        continue;
                    };
                    match member.source.arm() {
                        Ok(true) => self.park(),
                        Ok(false) => {
                            // Progress since, or the producer is gone: retry
                            // in its next turn (the retry reports the end).
                            member.spurious += 1;
                            if member.spurious < MAX_ATTEMPTS {
                                self.misses = 0;
                                self.rotate();
                                continue;
                            }
                            // A flood of wake-ups without items: it must not
                            // keep the merge retrying it. But parked unarmed,
                            // nothing would report it again once the flood
                            // stops with bytes left in its socket (a drain
                            // reads a few hundred), nor its hang-up behind
                            // them, nor its next item (not armed, its
                            // producer sends no wake-up). So it is parked
                            // only if the poller reports it again (an
                            // edge-triggered fd modified while readable is an
                            // event: its bytes are drained one batch of tries
                            // per look, and its hang-up seen once they are);
                            // a socket no longer readable means progress
                            // after all.
                            member.spurious = 0;
                            if self
                                .poller
                                .report_again_if_ready(member.source.as_fd(), key.get())?
                            {
                                self.park();
                            } else {
                                self.rotate();
                            }
                        }
                        Err(e) => return Ok(self.end(key, e)),
                    }
                }
                Err(e) => return Ok(self.end(key, e)),
            }
        }
    }

    /// Whether every queued source was found empty since the last
    /// delivery, and, for a blocking call, has been for [`SPIN`].
    fn all_missed(&mut self, wait: Wait) -> bool {
        if self.misses < self.ready.len() {
            return false;
        }
        if let Wait::Never = wait {
            return true;
        }
        let now = Instant::now();
        let since = *self.spin_since.get_or_insert(now);
        if now.duration_since(since) >= SPIN {
            return true;
        }
        // Another pass; on a machine with few cores a producer may need
        // this very core to make progress.
        self.misses = 0;
        std::thread::yield_now();
        false
    }

    /// Whether a whole round of the queue went by since the events were
    /// last collected while a source is parked or a client may join:
    /// their news waits in the poller, and would wait for every queued
    /// source to run dry, however long busy producers keep them going.
    fn round_done(&self) -> bool {
        self.turns_since_collect >= self.ready.len()
            && (self.sources.len() > self.ready.len() || self.joining.is_some())
    }

    /// Between turns: collects the events there are, without waiting, so
    /// that a parked source with news is queued for the next round; and
    /// where sleeps are sliced, looks at every parked source once a slice.
    fn look_around(&mut self, now: Instant) -> Result<(), Error> {
        self.collect(Some(now))?;
        if crate::poll_timeout().is_some_and(|slice| now.duration_since(self.swept) >= slice) {
            self.sweep(now);
        }
        Ok(())
    }

    /// The source at the front has had its turn: to the back.
    fn rotate(&mut self) {
        self.turn = 0;
        self.turns_since_collect += 1;
        if let Some(key) = self.ready.pop_front() {
            self.ready.push_back(key);
        }
    }

    /// The source at the front is armed: out of the queue, into the
    /// poller's hands.
    fn park(&mut self) {
        self.turn = 0;
        self.turns_since_collect += 1;
        if let Some(key) = self.ready.pop_front() {
            if let Some(member) = self.sources.get_mut(key) {
                member.queued = false;
            }
        }
    }

    /// Removes the source `key`, which is over, and says so.
    fn end<X>(&mut self, key: Key, why: Error) -> Next<X> {
        // `key` is at the front of the queue and a source.
        let _ = self.remove(key);
        Next::Ended(key, why)
    }

    /// Nothing is queued: collects events, or sleeps for them as `wait`
    /// allows. `Ok` when there may be something to do.
    ///
    /// `again`: this call was idle before, and every source it queued
    /// since is parked again. Then the call's end (`Empty`, or its
    /// deadline) comes before the events that are there: they stay in the
    /// poller (its fd stays readable) for the next call, so that sources
    /// reported again and again (wake-ups without items) cannot keep a
    /// call from returning.
    fn idle(&mut self, wait: Wait, again: bool) -> Result<(), Error> {
        let now = Instant::now();
        if !again {
            self.collect(Some(now))?;
            if !self.ready.is_empty() || !self.notices.is_empty() {
                return Ok(());
            }
        }
        if self.sources.len() == 0 && self.joining.is_none() {
            return Err(Error::Disconnected);
        }
        if crate::poll_timeout().is_some_and(|slice| now.duration_since(self.swept) >= slice) {
            self.sweep(now);
            return Ok(());
        }
        let Wait::Until(deadline) = wait else {
            return Err(Error::Empty);
        };
        if deadline.is_some_and(|d| now >= d) {
            return Err(Error::Timeout);
        }
        let joins = self.joining.as_ref().and_then(Joining::next_deadline);
        let until = match (deadline, joins) {
            (Some(d), Some(j)) => Some(d.min(j)),
            (d, j) => d.or(j),
        };
        let (until, sliced) = sleep_until(until, now);
        if self.collect(until)? == 0 && sliced {
            // A wake-up may have been lost: look at every source.
            self.sweep(Instant::now());
        }
        Ok(())
    }

    /// Looks at every parked source again, events or not.
    fn sweep(&mut self, now: Instant) {
        self.swept = now;
        for (key, member) in self.sources.iter_mut() {
            if !member.queued {
                member.queued = true;
                self.ready.push_back(key);
            }
        }
    }

    /// Waits for events until `deadline` (now: not at all) and acts on
    /// them: queues the sources that have news, accepts clients, opens
    /// the rings of those that spoke. Returns how many events there were.
    fn collect(&mut self, deadline: Option<Instant>) -> Result<usize, Error> {
        self.turns_since_collect = 0;
        let mut internal = Vec::new();
        let (sources, ready) = (&mut self.sources, &mut self.ready);
        let count = self.poller.wait(deadline, |k| {
            if k & INTERNAL != 0 {
                internal.push(k);
                return;
            }
            if let Some(member) = sources.get_mut(Key(k)) {
                if !member.queued {
                    member.queued = true;
                    ready.push_back(Key(k));
                }
            }
        })?;
        let Some(mut joining) = self.joining.take() else {
            return Ok(count);
        };
        let served = self.serve(&mut joining, internal);
        self.joining = Some(joining);
        served.map(|()| count)
    }

    /// Acts on the listener's events (`internal`: their poller keys).
    fn serve(&mut self, joining: &mut Joining<R>, internal: Vec<u64>) -> Result<(), Error> {
        for k in internal {
            if k == LISTENER {
                let notices = &mut self.notices;
                joining.accept(&self.poller, |e| notices.push_back(Notice::Refused(e)))?;
                continue;
            }
            let key = self.sources.next_key();
            let notice = match joining.open(k, key, &self.poller) {
                Some(Joined::Source(source)) => match self.add(source) {
                    Ok(key) => Notice::Joined(key),
                    Err(e) => Notice::Refused(e),
                },
                Some(Joined::Refused(e)) => Notice::Refused(e),
                None => continue,
            };
            self.notices.push_back(notice);
        }
        let notices = &mut self.notices;
        joining.expire(Instant::now(), &self.poller, |e| {
            notices.push_back(Notice::Refused(e))
        });
        Ok(())
    }
}

impl<T: Pod> Merge<Receiver<T>> {
    /// The next item of the source whose turn it is, with its key, or
    /// news of a source; does not wait.
    ///
    /// # Errors
    ///
    /// `Empty` if no source has an item and there is no news (every source
    /// is then armed: the merge's fd becomes readable when there is);
    /// `Disconnected` if there is no source and no listener; `Io` if the
    /// kernel fails a call. A source's own errors end that source
    /// ([`Next::Ended`]), never the merge.
    ///
    /// ```
    /// use fdring::topology::{Merge, Next};
    ///
    /// let mut merge = Merge::new()?;
    /// let (mut tx, rx) = fdring::channel::<u64>(512)?;
    /// let key = merge.add(rx)?;
    /// assert_eq!(merge.try_recv(), Err(fdring::Error::Empty));
    /// tx.send(5)?;
    /// assert_eq!(merge.try_recv()?, Next::Ready(key, 5));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_recv(&mut self) -> Result<Next<T>, Error> {
        self.next(Wait::Never, |_, rx, _| rx.try_recv().map(|item| (item, 1)))
    }

    /// Like [`try_recv`](Self::try_recv), but sleeps until there is an
    /// item or news.
    ///
    /// # Errors
    ///
    /// `Disconnected` once there is no source and no listener; `Io`.
    pub fn recv(&mut self) -> Result<Next<T>, Error> {
        self.next(Wait::Until(None), |_, rx, _| {
            rx.try_recv().map(|item| (item, 1))
        })
    }

    /// Like [`recv`](Self::recv), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` if nothing came in time; otherwise as [`recv`](Self::recv).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Next<T>, Error> {
        self.next(Wait::timeout(timeout), |_, rx, _| {
            rx.try_recv().map(|item| (item, 1))
        })
    }

    /// Lends the ready items of the source whose turn it is (at most what
    /// is left of its budget, as one contiguous slice) to `consume`, with
    /// its key; `consume` returns how many it took, which are released.
    /// Returns that count, or news of a source. Does not wait.
    ///
    /// # Errors
    ///
    /// As for [`try_recv`](Self::try_recv).
    ///
    /// # Panics
    ///
    /// If `consume` returns more than the length of the slice it was lent.
    ///
    /// ```
    /// use fdring::topology::{Merge, Next};
    ///
    /// let mut merge = Merge::new()?.budget(2);
    /// let (mut tx, rx) = fdring::channel::<u64>(512)?;
    /// let key = merge.add(rx)?;
    /// tx.send_slice(&[1, 2, 3])?;
    /// let mut sum = 0;
    /// let took = merge.try_recv_with(|_, items| {
    ///     sum += items.iter().sum::<u64>();
    ///     items.len()
    /// })?;
    /// assert_eq!((took, sum), (Next::Ready(key, 2), 3)); // a turn is 2 items
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_recv_with<F>(&mut self, consume: F) -> Result<Next<usize>, Error>
    where
        F: FnMut(Key, &[T]) -> usize,
    {
        self.next_with(Wait::Never, consume)
    }

    /// Like [`try_recv_with`](Self::try_recv_with), but sleeps until there
    /// is an item or news.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    ///
    /// # Panics
    ///
    /// As for [`try_recv_with`](Self::try_recv_with).
    pub fn recv_with<F>(&mut self, consume: F) -> Result<Next<usize>, Error>
    where
        F: FnMut(Key, &[T]) -> usize,
    {
        self.next_with(Wait::Until(None), consume)
    }

    /// Like [`recv_with`](Self::recv_with), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`recv_timeout`](Self::recv_timeout).
    ///
    /// # Panics
    ///
    /// As for [`try_recv_with`](Self::try_recv_with).
    pub fn recv_with_timeout<F>(
        &mut self,
        timeout: Duration,
        consume: F,
    ) -> Result<Next<usize>, Error>
    where
        F: FnMut(Key, &[T]) -> usize,
    {
        self.next_with(Wait::timeout(timeout), consume)
    }

    fn next_with<F>(&mut self, wait: Wait, mut consume: F) -> Result<Next<usize>, Error>
    where
        F: FnMut(Key, &[T]) -> usize,
    {
        self.next(wait, |key, rx, left| {
            let took = rx.try_recv_with(|items| {
                let lent = &items[..items.len().min(left)];
                let took = consume(key, lent);
                assert!(
                    took <= lent.len(),
                    "the closure took {took} items of the {} it was lent",
                    lent.len()
                );
                took
            })?;
            Ok((took, took))
        })
    }
}

impl Merge<FrameReceiver> {
    /// Lends the next frame of the source whose turn it is to `consume`,
    /// with its key, and releases it when `consume` returns; returns what
    /// `consume` returned, or news of a source. Does not wait.
    ///
    /// # Errors
    ///
    /// As for [`Merge::try_recv`]; a source whose frames break the format
    /// is ended with `Corrupted`.
    ///
    /// ```
    /// use fdring::topology::{Merge, Next};
    /// use fdring::{FrameReceiver, FrameSender};
    ///
    /// let mut merge = Merge::new()?;
    /// let (tx, rx) = fdring::channel::<u8>(4096)?;
    /// let mut tx = FrameSender::new(tx);
    /// let key = merge.add(FrameReceiver::new(rx))?;
    /// tx.send_frame(9, b"hello")?;
    /// let got = merge.try_recv_frame_with(|_, frame| (frame.tag(), frame.len()))?;
    /// assert_eq!(got, Next::Ready(key, (9, 5)));
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn try_recv_frame_with<X, F>(&mut self, consume: F) -> Result<Next<X>, Error>
    where
        F: FnMut(Key, Frame<'_>) -> X,
    {
        self.next_frame(Wait::Never, consume)
    }

    /// Like [`try_recv_frame_with`](Self::try_recv_frame_with), but sleeps
    /// until there is a frame or news.
    ///
    /// # Errors
    ///
    /// As for [`Merge::recv`].
    pub fn recv_frame_with<X, F>(&mut self, consume: F) -> Result<Next<X>, Error>
    where
        F: FnMut(Key, Frame<'_>) -> X,
    {
        self.next_frame(Wait::Until(None), consume)
    }

    /// Like [`recv_frame_with`](Self::recv_frame_with), for at most
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`Merge::recv_timeout`].
    pub fn recv_frame_with_timeout<X, F>(
        &mut self,
        timeout: Duration,
        consume: F,
    ) -> Result<Next<X>, Error>
    where
        F: FnMut(Key, Frame<'_>) -> X,
    {
        self.next_frame(Wait::timeout(timeout), consume)
    }

    /// Copies the next frame of the source whose turn it is into `buf`
    /// (replacing its contents) and returns its tag, or news of a source.
    /// Does not wait.
    ///
    /// # Errors
    ///
    /// As for [`try_recv_frame_with`](Self::try_recv_frame_with); a frame
    /// too large to allocate ends its source with `Exhausted`.
    pub fn try_recv_frame(&mut self, buf: &mut Vec<u8>) -> Result<Next<u64>, Error> {
        self.next(Wait::Never, |_, rx, _| {
            rx.try_recv_frame(buf).map(|tag| (tag, 1))
        })
    }

    /// Like [`try_recv_frame`](Self::try_recv_frame), but sleeps until
    /// there is a frame or news.
    ///
    /// # Errors
    ///
    /// As for [`Merge::recv`].
    pub fn recv_frame(&mut self, buf: &mut Vec<u8>) -> Result<Next<u64>, Error> {
        self.next(Wait::Until(None), |_, rx, _| {
            rx.try_recv_frame(buf).map(|tag| (tag, 1))
        })
    }

    fn next_frame<X, F>(&mut self, wait: Wait, mut consume: F) -> Result<Next<X>, Error>
    where
        F: FnMut(Key, Frame<'_>) -> X,
    {
        self.next(wait, |key, rx, _| {
            rx.try_recv_frame_with(|frame| consume(key, frame))
                .map(|x| (x, 1))
        })
    }
}

impl<R: Source> AsFd for Merge<R> {
    /// The merge's epoll instance: readable when a `try_` call that
    /// returned `Empty` may deliver.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.poller.as_fd()
    }
}

impl<R: Source> fmt::Debug for Merge<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Merge")
            .field("sources", &self.sources.len())
            .field("ready", &self.ready.len())
            .field("budget", &self.budget)
            .field("listening", &self.joining.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "real memfds and epoll: Miri has no memfd_create")]
    fn a_parked_source_that_gets_an_item_is_served_while_another_stays_busy() {
        let mut merge = Merge::new().unwrap().budget(16);
        let (mut busy_tx, busy_rx) = crate::channel::<u64>(4096).unwrap();
        let (mut quiet_tx, quiet_rx) = crate::channel::<u64>(512).unwrap();
        let busy = merge.add(busy_rx).unwrap();
        let quiet = merge.add(quiet_rx).unwrap();
        busy_tx.send_slice(&[1; 64]).unwrap();
        // The busy source's turn, then the quiet one's: empty, so it is
        // armed and parked.
        assert_eq!(
            merge.try_recv_with(|_, items| items.len()),
            Ok(Next::Ready(busy, 16))
        );
        assert_eq!(
            merge.try_recv_with(|_, items| items.len()),
            Ok(Next::Ready(busy, 16))
        );
        quiet_tx.send(2).unwrap();
        let mut turns = 0;
        loop {
            busy_tx.try_send_slice(&[1; 16]).unwrap();
            let next = merge.try_recv_with(|_, items| items.len()).unwrap();
            if next == Next::Ready(quiet, 1) {
                break;
            }
            assert_eq!(next, Next::Ready(busy, 16));
            turns += 1;
            assert!(
                turns < 8,
                "the quiet source waited {turns} turns of the busy one"
            );
        }
    }
}
