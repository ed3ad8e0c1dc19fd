//! The topologies in event loops, each registered as one fd (its epoll
//! instance), with child processes on the other side of every ring: a mio
//! loop forwarding a merge of 8 rings into a dispatch, edge-triggered; a
//! tokio task receiving from children until every source ended, then
//! `Disconnected`; 100,000 jobs through an `AsyncPool` of 4 worker
//! processes, and one of them killed, its jobs given back and answered
//! by the others; a killed child's source ended under tokio; a merge
//! serving its listener's clients; a pool's send and receive each waiting
//! for their own direction; cancelled futures that lose nothing; loops
//! with silent peers that get no event and use no CPU.
//!
//! Items carry their ring's number in the top 16 bits and their place in
//! the ring's stream below, so that a lost, repeated, reordered or
//! misrouted item is caught wherever it lands.

use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::io::ErrorKind;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::pin::pin;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{
    env, env_u64, fields, pause_now_and_then, read_words, report, seed, ChildProc, Rng, HANG,
    NOTICE, RING_ENV,
};
use crate::idle::{thread_cpu_time, IDLE_CPU_LIMIT};
use crate::peers::{count, inherited_receiver, inherited_sender, COUNT_ENV, RING_B_ENV};
use crate::runtimes::{current_thread_runtime, poll_once, runtime, wait_for};
use crate::service::SERVICE_ENV;
use fdring::mio::EventLoopExt;
use fdring::service::Listener;
use fdring::tokio::{AsyncDispatch, AsyncMerge, AsyncPool};
use fdring::topology::{Dispatch, Key, Merge, Next, Policy, Pool};
use fdring::{channel, handoff, Builder, Error, Fds, Liveness, Receiver, Sender};
use mio::{Events, Interest, Poll, Token};

/// The first ring's number of a producer child.
const FIRST_ENV: &str = "FDRING_TEST_TOPO_FIRST";
/// How many rings a producer child has.
const RINGS_ENV: &str = "FDRING_TEST_TOPO_RINGS";
/// One batch in this many pauses (0: never)...
const PAUSES_ENV: &str = "FDRING_TEST_TOPO_PAUSES";
/// ...for up to this many microseconds (1000 if unset).
const PAUSE_US_ENV: &str = "FDRING_TEST_TOPO_PAUSE_US";
/// How long a producer child stays silent, after "ready", before it sends.
const IDLE_ENV: &str = "FDRING_TEST_TOPO_IDLE_MS";
/// The most items a producer child sends in one batch (no limit if unset).
const BATCH_ENV: &str = "FDRING_TEST_TOPO_BATCH";

/// A producer child's ring `j`.
fn ring_var(j: usize) -> String {
    format!("FDRING_TEST_TOPO_{j}")
}

/// Ring `ring`'s item at `seq`.
fn item(ring: usize, seq: u64) -> u64 {
    (ring as u64) << 48 | seq
}

fn ring_of(item: u64) -> usize {
    (item >> 48) as usize
}

fn seq_of(item: u64) -> u64 {
    item & ((1 << 48) - 1)
}

/// The wrapping sum of every item of `rings` rings of `items` items.
fn items_sum(rings: usize, items: u64) -> u64 {
    (0..rings)
        .flat_map(|ring| (0..items).map(move |seq| item(ring, seq)))
        .fold(0, u64::wrapping_add)
}

/// What a pool worker answers to `job`.
fn answer(job: u64) -> u64 {
    job * 3 + 1
}

/// The job `reply` answers; panics if it answers none.
#[track_caller]
fn job_of(reply: u64) -> u64 {
    assert_eq!(reply % 3, 1, "{reply} is no worker's answer");
    reply / 3
}

// ---------------------------------------------------------------------------
// The children

/// Child: opens `RINGS` senders, reports "ready", stays silent for
/// `IDLE_MS` if set, then sends `COUNT` items on each ring (ring `FIRST +
/// j` on its `j`th), the rings in turn, in random batches of at most
/// `BATCH` with a pause now and then (so that the consumer often finds
/// them empty and arms),
/// closes each ring after its last item, and reports "sent" with the
/// wake-ups it sent (each one to a consumer that had armed and waited).
pub(crate) fn role_topo_producer() {
    let first = env_u64(FIRST_ENV, 0) as usize;
    let rings = env_u64(RINGS_ENV, 1) as usize;
    let (pauses, pause_us) = (env_u64(PAUSES_ENV, 16), env_u64(PAUSE_US_ENV, 1000));
    let batch = env_u64(BATCH_ENV, u64::MAX)
        .try_into()
        .unwrap_or(usize::MAX);
    let total = count();
    let mut txs: Vec<Sender<u64>> = (0..rings).map(|j| inherited_sender(&ring_var(j))).collect();
    report("ready");
    if let Some(idle) = env(IDLE_ENV) {
        thread::sleep(Duration::from_millis(idle.parse().expect("ms")));
    }
    let mut rng = Rng::new(seed() ^ first as u64);
    let mut next = vec![0u64; rings];
    let (mut open, mut wakeups) = (rings, 0);
    while open > 0 {
        for (j, tx) in txs.iter_mut().enumerate() {
            let from = next[j];
            if from == total {
                continue;
            }
            pause_now_and_then(&mut rng, pauses, pause_us);
            let sent = tx.send_with(|slots: &mut [MaybeUninit<u64>]| {
                let n = rng
                    .take(slots.len().min(batch))
                    .min((total - from) as usize);
                for (k, slot) in slots[..n].iter_mut().enumerate() {
                    slot.write(item(first + j, from + k as u64));
                }
                n
            });
            match sent {
                Ok(n) => next[j] += n as u64,
                // The parent is gone (a test that failed): nothing to do.
                Err(Error::Disconnected) => return,
                Err(e) => panic!("ring {}: {e}", first + j),
            }
            if next[j] == total {
                tx.close();
                wakeups += tx.stats().wakeups;
                open -= 1;
            }
        }
    }
    drop(txs);
    report(&format!("sent wakeups={wakeups}"));
}

/// Child: a dispatch's receiver. Receives until `Disconnected` in random
/// batches with a pause now and then (so that the dispatch often finds
/// every ring full), checking that the items of each source ring come in
/// order (a dispatch splits a ring's items among its members: each sees
/// a rising subsequence, any repeat or reordering breaks it); reports
/// their count and wrapping sum, and the wake-ups it sent (to the
/// dispatch, armed for room).
pub(crate) fn role_topo_consumer() {
    let mut rx = inherited_receiver(RING_ENV);
    let (pauses, pause_us) = (env_u64(PAUSES_ENV, 16), env_u64(PAUSE_US_ENV, 1000));
    let mut rng = Rng::new(seed() ^ u64::from(std::process::id()));
    let mut last: HashMap<usize, u64> = HashMap::new();
    let (mut count, mut sum) = (0u64, 0u64);
    loop {
        pause_now_and_then(&mut rng, pauses, pause_us);
        let got = rx.recv_with(|items| {
            let n = rng.take(items.len());
            for &it in &items[..n] {
                let (ring, seq) = (ring_of(it), seq_of(it));
                if let Some(prev) = last.insert(ring, seq) {
                    assert!(
                        seq > prev,
                        "ring {ring}: item {seq} after item {prev}: repeated or reordered"
                    );
                }
                count += 1;
                sum = sum.wrapping_add(it);
            }
            n
        });
        match got {
            Ok(_) => {}
            Err(Error::Disconnected) => break,
            Err(e) => panic!("receiving: {e}"),
        }
    }
    report(&format!(
        "received count={count} sum={sum} wakeups={}",
        rx.stats().wakeups
    ));
}

/// Child: a pool's worker. Takes jobs from its job ring (`RING_ENV`) in
/// random batches, with a pause now and then, answers each with
/// `answer(job)` on its reply ring (`RING_B_ENV`), and once the job ring
/// is closed reports how many it answered, and the wake-ups it sent: for
/// room on its job ring, for replies on its reply ring (each to a pool
/// that had armed that direction).
pub(crate) fn role_topo_pool_worker() {
    let mut jobs = inherited_receiver(RING_ENV);
    let mut replies = inherited_sender(RING_B_ENV);
    let (pauses, pause_us) = (env_u64(PAUSES_ENV, 16), env_u64(PAUSE_US_ENV, 1000));
    let mut rng = Rng::new(seed() ^ u64::from(std::process::id()));
    let mut batch = Vec::new();
    let mut answered = 0u64;
    loop {
        pause_now_and_then(&mut rng, pauses, pause_us);
        batch.clear();
        let got = jobs.recv_with(|jobs| {
            let n = rng.take(jobs.len());
            batch.extend(jobs[..n].iter().map(|&job| answer(job)));
            n
        });
        match got {
            Ok(_) => {
                replies.send_slice(&batch).expect("send the replies");
                answered += batch.len() as u64;
            }
            Err(Error::Disconnected) => break,
            Err(e) => panic!("receiving jobs: {e}"),
        }
    }
    report(&format!(
        "worked answered={answered} room_wakeups={} reply_wakeups={}",
        jobs.stats().wakeups,
        replies.stats().wakeups
    ));
}

// ---------------------------------------------------------------------------
// The parents' helpers

/// A merge of rings fed by producer children, as a test sets it up.
struct Fed {
    merge: Merge<Receiver<u64>>,
    /// Each source's ring number.
    ring_of: HashMap<Key, usize>,
    /// A duplicate of each ring's memfd, by ring number, to read what the
    /// producer published.
    memfds: Vec<OwnedFd>,
    producers: Vec<ChildProc>,
    /// Duplicates of the socket ends of the watched children's rings.
    strays: Vec<OwnedFd>,
}

/// Spawns `children` producers of `rings` rings each (of `capacity`
/// items), ring numbers in order, each sending `items` items per ring
/// (`configure` may set more), and merges the rings. If `watched(c)`,
/// child `c`'s rings watch its pidfd, and this process keeps a duplicate
/// of their socket ends, so that only the pidfd tells of its death.
/// Waits until every child has opened its rings.
fn fed_merge(
    children: usize,
    rings: usize,
    capacity: usize,
    items: u64,
    watched: impl Fn(usize) -> bool,
    configure: impl Fn(usize, &mut std::process::Command),
) -> Fed {
    let mut merge = Merge::new().expect("Merge");
    let (mut ring_of, mut memfds, mut producers) = (HashMap::new(), Vec::new(), Vec::new());
    let mut strays = Vec::new();
    for c in 0..children {
        let mut receivers = Vec::new();
        let mut handed: Vec<Fds> = Vec::new();
        for _ in 0..rings {
            let (tx, rx) = channel::<u64>(capacity).expect("channel");
            let fds = tx.into_fds().expect("into_fds");
            memfds.push(fds.memfd.try_clone().expect("dup the memfd"));
            if watched(c) {
                strays.push(fds.wake.try_clone().expect("dup the socket"));
            }
            handed.push(fds);
            receivers.push(rx);
        }
        let mut child = ChildProc::spawn("topo_producer", |command| {
            for (j, fds) in handed.into_iter().enumerate() {
                handoff::inherit(command, &ring_var(j), fds);
            }
            command
                .env(FIRST_ENV, (c * rings).to_string())
                .env(RINGS_ENV, rings.to_string())
                .env(COUNT_ENV, items.to_string());
            configure(c, command);
        });
        for (j, mut rx) in receivers.into_iter().enumerate() {
            if watched(c) {
                rx.watch_peer(Liveness::child(&child.child).expect("pidfd"));
            }
            ring_of.insert(merge.add(rx).expect("add"), c * rings + j);
        }
        child.expect_line("ready", HANG);
        producers.push(child);
    }
    Fed {
        merge,
        ring_of,
        memfds,
        producers,
        strays,
    }
}

/// Spawns `consumers` consumer children, pausing in one batch of
/// `pauses`, and adds their rings (of `capacity` items) to a dispatch.
fn fed_dispatch(
    consumers: usize,
    capacity: usize,
    (pauses, pause_us): (u64, u64),
    policy: Policy,
) -> (Dispatch<u64>, Vec<ChildProc>) {
    let mut dispatch = Dispatch::new(policy).expect("Dispatch");
    let children = (0..consumers)
        .map(|_| {
            let (tx, rx) = channel::<u64>(capacity).expect("channel");
            let fds = rx.into_fds().expect("into_fds");
            dispatch.add(tx).expect("add");
            ChildProc::spawn("topo_consumer", |command| {
                handoff::inherit(command, RING_ENV, fds);
                command
                    .env(PAUSES_ENV, pauses.to_string())
                    .env(PAUSE_US_ENV, pause_us.to_string());
            })
        })
        .collect();
    (dispatch, children)
}

/// Ends the producers, which must have sent everything; returns the
/// wake-ups they sent.
#[track_caller]
fn finish_producers(producers: Vec<ChildProc>) -> u64 {
    let mut wakeups = 0;
    for mut producer in producers {
        let line = producer.expect_line("sent", HANG);
        producer.finish();
        wakeups += fields(&line)["wakeups"].parse::<u64>().expect("a count");
    }
    wakeups
}

/// Ends the consumers (the dispatch's rings must be closed already) and
/// checks that together they received `count` items summing to `sum`;
/// returns the wake-ups they sent.
#[track_caller]
fn finish_consumers(consumers: Vec<ChildProc>, count: u64, sum: u64) -> u64 {
    let (mut got_count, mut got_sum, mut wakeups) = (0u64, 0u64, 0u64);
    for mut consumer in consumers {
        let line = consumer.expect_line("received", HANG);
        consumer.finish();
        let fields = fields(&line);
        let n: u64 = fields["count"].parse().expect("a count");
        assert!(n > 0, "a consumer got nothing: the policy skipped it");
        got_count += n;
        got_sum = got_sum.wrapping_add(fields["sum"].parse().expect("a sum"));
        wakeups += fields["wakeups"].parse::<u64>().expect("a count");
    }
    assert_eq!(got_count, count, "items the consumers received");
    assert_eq!(got_sum, sum, "the items' sum: some were lost or repeated");
    wakeups
}

/// The merge side of a test: checks each item (its source's ring, its
/// place) and each end (once, after the ring's last item).
struct Checked {
    ring_of: HashMap<Key, usize>,
    next: Vec<u64>,
    ended: Vec<bool>,
}

impl Checked {
    fn new(ring_of: &HashMap<Key, usize>) -> Checked {
        Checked {
            ring_of: ring_of.clone(),
            next: vec![0; ring_of.len()],
            ended: vec![false; ring_of.len()],
        }
    }

    #[track_caller]
    fn ring(&self, key: Key) -> usize {
        *self
            .ring_of
            .get(&key)
            .unwrap_or_else(|| panic!("{key} is no source of this merge"))
    }

    #[track_caller]
    fn item(&mut self, key: Key, it: u64) {
        let ring = self.ring(key);
        assert!(!self.ended[ring], "ring {ring}: an item after its end");
        assert_eq!(
            it,
            item(ring, self.next[ring]),
            "ring {ring}, item {}: lost, repeated or misrouted",
            self.next[ring]
        );
        self.next[ring] += 1;
    }

    #[track_caller]
    fn ended(&mut self, key: Key, why: Error, items: u64) {
        let ring = self.ring(key);
        assert_eq!(why, Error::Disconnected, "ring {ring} ended by {why}");
        assert!(!self.ended[ring], "ring {ring} ended twice");
        assert_eq!(
            self.next[ring], items,
            "ring {ring} ended before its last item"
        );
        self.ended[ring] = true;
    }

    #[track_caller]
    fn all_ended(&self) {
        assert!(
            self.ended.iter().all(|&e| e),
            "rings not ended: {:?}",
            (0..self.ended.len())
                .filter(|&r| !self.ended[r])
                .collect::<Vec<_>>()
        );
    }
}

/// Polls `poll` for up to `within`, retrying on EINTR.
fn poll_for(poll: &mut Poll, events: &mut Events, within: Duration) {
    loop {
        match poll.poll(events, Some(within)) {
            Ok(()) => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// mio

const MERGE: Token = Token(1);
const DISPATCH: Token = Token(2);
const POOL: Token = Token(3);

/// 2 children stream into 8 rings merged and registered as one token; a
/// dispatch of 3 consumer children, another token, gets every item
/// forwarded, round-robin. The loop follows the edge-triggered contract:
/// it calls each side until "would block" (the merge's `Empty`, the
/// dispatch's `Full` through `try_or_arm`), then waits for that side's
/// event only; an armed side that gets no event within `NOTICE` is a
/// missed wake-up. Every item is checked on both sides, each ring ends
/// once after its last item, then the merge is `Disconnected`.
#[test]
fn mio_loop_forwards_a_merge_of_8_rings_into_a_dispatch_edge_triggered() {
    const ITEMS: u64 = 50_000;
    /// The most items held between the two sides.
    const HELD: usize = 4096;
    // Pauses on both sides, so that each side often waits for the other
    // (measured: hundreds of armings on each side).
    let fed = fed_merge(
        2,
        4,
        1024,
        ITEMS,
        |_| false,
        |_, command| {
            command.env(PAUSES_ENV, "2").env(BATCH_ENV, "256");
        },
    );
    let (mut merge, producers) = (fed.merge, fed.producers);
    let (mut dispatch, consumers) = fed_dispatch(3, 512, (8, 3000), Policy::RoundRobin);
    let mut check = Checked::new(&fed.ring_of);

    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut merge, MERGE, Interest::READABLE)
        .expect("register the merge");
    poll.registry()
        .register(&mut dispatch, DISPATCH, Interest::READABLE)
        .expect("register the dispatch");
    let mut events = Events::with_capacity(16);
    let mut held: VecDeque<u64> = VecDeque::new();
    // Whether a side may make progress without an event: at first, and
    // after its event, until it says "would block".
    let (mut merge_ready, mut dispatch_ready, mut merge_done) = (true, true, false);
    let (mut merge_waits, mut dispatch_waits, mut polls) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + HANG;
    loop {
        assert!(Instant::now() < deadline, "not done within {HANG:?}");
        while merge_ready && !merge_done && held.len() < HELD {
            let room = HELD - held.len();
            let got = merge.try_recv_with(|key, items: &[u64]| {
                let n = items.len().min(room);
                for &it in &items[..n] {
                    check.item(key, it);
                    held.push_back(it);
                }
                n
            });
            match got {
                Ok(Next::Ready(..)) => {}
                Ok(Next::Ended(key, why)) => check.ended(key, why, ITEMS),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(Error::Empty) => {
                    merge_ready = false;
                    merge_waits += 1;
                }
                Err(Error::Disconnected) => merge_done = true,
                Err(e) => panic!("merge: {e}"),
            }
        }
        while dispatch_ready && !held.is_empty() {
            let sent = dispatch.try_or_arm(|dispatch| {
                dispatch.try_send_with(|_key, slots: &mut [MaybeUninit<u64>]| {
                    let n = slots.len().min(held.len());
                    for (slot, it) in slots.iter_mut().zip(held.drain(..n)) {
                        slot.write(it);
                    }
                    n
                })
            });
            match sent {
                Ok(_) => {}
                Err(Error::Full) => {
                    dispatch_ready = false;
                    dispatch_waits += 1;
                }
                Err(e) => panic!("dispatch: {e}"),
            }
        }
        if merge_done && held.is_empty() {
            break;
        }
        // Each side either said "would block" (armed) or cannot go on
        // until the other does: only an event can change that.
        poll_for(&mut poll, &mut events, NOTICE);
        polls += 1;
        assert!(
            !events.is_empty(),
            "no event within {NOTICE:?} (merge armed: {}, dispatch armed: {}, {} held): a missed wake-up",
            !merge_ready,
            !dispatch_ready,
            held.len()
        );
        for event in &events {
            match event.token() {
                MERGE => merge_ready = true,
                DISPATCH => dispatch_ready = true,
                other => panic!("an event for {other:?}"),
            }
        }
    }
    check.all_ended();
    assert_eq!(merge.try_recv(), Err(Error::Disconnected));
    poll.registry().deregister(&mut merge).expect("deregister");
    poll.registry()
        .deregister(&mut dispatch)
        .expect("deregister");
    let woke_merge = finish_producers(producers);
    drop(dispatch); // closes the consumers' rings
    let woke_dispatch = finish_consumers(consumers, 8 * ITEMS, items_sum(8, ITEMS));
    eprintln!(
        "8 rings of {ITEMS} items forwarded: {polls} polls; the merge armed {merge_waits} times, woken {woke_merge}; the dispatch armed {dispatch_waits} times, woken {woke_dispatch}"
    );
    assert!(
        woke_merge >= 10 && woke_dispatch >= 10,
        "the merge was woken {woke_merge} times, the dispatch {woke_dispatch}: the test proved little"
    );
}

/// A pool whose job rings are full while a reply waits unreceived: a
/// send through `try_or_arm` returns `Full` having armed the job rings
/// (the waiting reply does not make it give up arming), so the worker
/// taking a job is an event; and the reply is still there afterwards.
#[test]
fn mio_full_pool_send_arms_the_job_rings_while_a_reply_waits() {
    let mut pool = Pool::<u64, u64>::new(Policy::RoundRobin).expect("Pool");
    let (jobs_tx, mut jobs) = channel::<u64>(512).expect("channel");
    let (mut replies, replies_rx) = channel::<u64>(512).expect("channel");
    let worker = pool.add(jobs_tx, replies_rx).expect("add");
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut pool, POOL, Interest::READABLE)
        .expect("register");
    let mut events = Events::with_capacity(4);
    let mut sent = 0u64;
    while pool.try_send(sent).is_ok() {
        sent += 1;
    }
    replies.send(answer(0)).expect("a reply");
    assert_eq!(
        pool.try_or_arm(|pool| pool.try_send(sent)),
        Err(Error::Full)
    );
    // What the registration and the sends reported so far.
    poll_for(&mut poll, &mut events, Duration::ZERO);
    poll_for(&mut poll, &mut events, Duration::from_millis(200));
    assert!(events.is_empty(), "an event while nothing changed");
    assert_eq!(jobs.recv(), Ok(0), "the worker takes a job");
    wait_for(&mut poll, &mut events, POOL, NOTICE, "room for a job");
    assert_eq!(pool.try_send(sent), Ok(worker));
    assert_eq!(pool.try_recv(), Ok(Next::Ready(worker, answer(0))));
}

/// `take_lost` between arming and polling (a loop that checks for lost
/// members once it is blocked) looks at the members' events to find the
/// dead ones: a live member's event must stay for the loop. A dispatch,
/// and a pool's job side, full and armed; a receiver takes an item; then
/// `take_lost` finds no loss, and the poll still reports the room.
#[test]
fn mio_take_lost_after_arming_keeps_the_wake_up_for_the_loop() {
    let mut poll = Poll::new().expect("Poll");
    let mut events = Events::with_capacity(4);

    let mut dispatch = Dispatch::new(Policy::RoundRobin).expect("Dispatch");
    let (tx, mut rx) = channel::<u64>(512).expect("channel");
    dispatch.add(tx).expect("add");
    poll.registry()
        .register(&mut dispatch, DISPATCH, Interest::READABLE)
        .expect("register");
    while dispatch.try_send(1).is_ok() {}
    assert_eq!(dispatch.try_or_arm(|d| d.try_send(2)), Err(Error::Full));
    poll_for(&mut poll, &mut events, Duration::ZERO);
    assert_eq!(rx.recv(), Ok(1), "room, and a wake-up");
    assert_eq!(dispatch.take_lost(), Ok(None));
    wait_for(
        &mut poll,
        &mut events,
        DISPATCH,
        NOTICE,
        "room in the dispatch",
    );
    assert!(dispatch.try_send(2).is_ok());

    let mut pool = Pool::<u64, u64>::new(Policy::RoundRobin).expect("Pool");
    let (jobs_tx, mut jobs) = channel::<u64>(512).expect("channel");
    let (_replies, replies_rx) = channel::<u64>(512).expect("channel");
    pool.add(jobs_tx, replies_rx).expect("add");
    poll.registry()
        .register(&mut pool, POOL, Interest::READABLE)
        .expect("register");
    while pool.try_send(1).is_ok() {}
    assert_eq!(pool.try_or_arm(|p| p.try_send(2)), Err(Error::Full));
    poll_for(&mut poll, &mut events, Duration::ZERO);
    assert_eq!(jobs.recv(), Ok(1), "room, and a wake-up");
    assert_eq!(pool.take_lost(), Ok(None));
    wait_for(&mut poll, &mut events, POOL, NOTICE, "room in the pool");
    assert!(pool.try_send(2).is_ok());
}

/// Silent peers: a merge of 8 rings of an idle child (each watching the
/// child's pidfd too) and a dispatch whose 2 receivers take nothing, both
/// armed: the loop gets no event for 200 ms and uses no CPU. Then one
/// receiver takes an item (an event for the dispatch), and the child
/// speaks (events for the merge, until every ring ended).
#[test]
fn mio_loop_with_a_merge_and_a_dispatch_of_silent_peers_gets_no_event() {
    const ITEMS: u64 = 10;
    let fed = fed_merge(
        1,
        8,
        512,
        ITEMS,
        |_| true,
        |_, command| {
            command.env(IDLE_ENV, "1000");
        },
    );
    let (mut merge, producers) = (fed.merge, fed.producers);
    let mut check = Checked::new(&fed.ring_of);
    let mut dispatch = Dispatch::new(Policy::LeastLoaded).expect("Dispatch");
    let mut receivers: Vec<Receiver<u64>> = (0..2)
        .map(|_| {
            let (tx, rx) = channel::<u64>(512).expect("channel");
            dispatch.add(tx).expect("add");
            rx
        })
        .collect();
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut merge, MERGE, Interest::READABLE)
        .expect("register");
    poll.registry()
        .register(&mut dispatch, DISPATCH, Interest::READABLE)
        .expect("register");
    let mut events = Events::with_capacity(16);
    assert_eq!(merge.try_recv(), Err(Error::Empty), "armed: silent sources");
    let mut filled = 0;
    while dispatch.try_or_arm(|d| d.try_send(7)).is_ok() {
        filled += 1;
    }
    assert_eq!(filled, 1024, "both rings full, and armed");

    let (cpu_before, started) = (thread_cpu_time(), Instant::now());
    poll_for(&mut poll, &mut events, Duration::from_millis(200));
    let (cpu, waited) = (thread_cpu_time() - cpu_before, started.elapsed());
    let tokens: Vec<Token> = events.iter().map(|e| e.token()).collect();
    eprintln!(
        "a merge of 8 silent rings and a full dispatch polled for {waited:?}: {cpu:?} of CPU"
    );
    assert!(
        tokens.is_empty(),
        "events while every peer was silent: {tokens:?}"
    );
    assert!(
        waited >= Duration::from_millis(190),
        "poll returned after {waited:?}"
    );
    assert!(cpu < IDLE_CPU_LIMIT, "{cpu:?} of CPU while idle");

    assert_eq!(receivers[1].recv(), Ok(7));
    wait_for(
        &mut poll,
        &mut events,
        DISPATCH,
        NOTICE,
        "room in the dispatch",
    );
    assert!(dispatch.try_send(8).is_ok());

    let mut done = false;
    while !done {
        loop {
            match merge.try_recv() {
                Ok(Next::Ready(key, it)) => check.item(key, it),
                Ok(Next::Ended(key, why)) => check.ended(key, why, ITEMS),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(Error::Empty) => break,
                Err(Error::Disconnected) => {
                    done = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        if !done {
            wait_for(&mut poll, &mut events, MERGE, HANG, "the child's items");
        }
    }
    check.all_ended();
    assert!(finish_producers(producers) > 0, "the merge was never woken");
    drop(receivers);
}

// ---------------------------------------------------------------------------
// tokio

/// 4 children stream into 8 rings; one task awaits `AsyncMerge::recv`
/// until every ring ended (each once, after its last item) and then gets
/// `Disconnected`, for good. Every call completes within `NOTICE` (a
/// missed wake-up would not), and the task did wait on the reactor: the
/// children woke it (their counts of wake-ups sent).
#[test]
fn tokio_async_merge_receives_from_children_until_every_source_ended_then_disconnected() {
    const ITEMS: u64 = 50_000;
    let fed = fed_merge(4, 2, 512, ITEMS, |_| false, |_, _| {});
    let mut check = Checked::new(&fed.ring_of);
    let merge = fed.merge;
    runtime().block_on(async {
        let mut merge = AsyncMerge::new(merge).expect("AsyncMerge");
        loop {
            match within_notice(merge.recv()).await {
                Ok(Next::Ready(key, it)) => check.item(key, it),
                Ok(Next::Ended(key, why)) => check.ended(key, why, ITEMS),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(Error::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(merge.get_ref().is_empty());
        assert_eq!(
            within_notice(merge.recv()).await,
            Err(Error::Disconnected),
            "and stays so"
        );
    });
    check.all_ended();
    let woken = finish_producers(fed.producers);
    eprintln!("8 rings of {ITEMS} items: the task was woken {woken} times");
    // A merge arms late (it spins DEFAULT_SPIN over its sources first), so
    // on a quiet machine the task may sleep only once or twice; at least
    // one real wait must have happened for the test to mean anything.
    assert!(
        woken >= 1,
        "the task was woken {woken} times: the test proved little"
    );
}

/// Three children stream into a merge awaited by a task; one streams
/// without end and is killed (SIGKILL) mid-stream. Its source is
/// `Ended(Disconnected)` within `NOTICE`, after exactly the items it had
/// published; the others complete, then the merge is `Disconnected`.
/// Once through the hang-up of the dead child's socket, once with that
/// socket kept open here, where only the watched pidfd (registered in
/// the merge's epoll instance) tells.
#[test]
fn tokio_async_merge_ends_the_source_of_a_killed_child() {
    const ITEMS: u64 = 30_000;
    const VICTIM: usize = 2;
    for keep_socket_open in [false, true] {
        let mut fed = fed_merge(
            3,
            1,
            512,
            ITEMS,
            |c| keep_socket_open && c == VICTIM,
            |c, command| {
                if c == VICTIM {
                    command.env(COUNT_ENV, (1u64 << 40).to_string());
                }
            },
        );
        let mut check = Checked::new(&fed.ring_of);
        let victim_key = *fed
            .ring_of
            .iter()
            .find(|&(_, &ring)| ring == VICTIM)
            .expect("the victim's ring")
            .0;
        let mut victim = fed.producers.remove(VICTIM);
        let merge = fed.merge;
        let (victim_items, noticed) = runtime().block_on(async {
            let mut merge = AsyncMerge::new(merge).expect("AsyncMerge");
            let mut killed: Option<Instant> = None;
            let mut noticed = None;
            loop {
                let got = tokio::time::timeout(NOTICE, merge.recv())
                    .await
                    .unwrap_or_else(|_| panic!("nothing within {NOTICE:?}"));
                match got {
                    Ok(Next::Ready(key, it)) if key == victim_key => {
                        check.next[VICTIM] += 1;
                        assert_eq!(seq_of(it) + 1, check.next[VICTIM], "the victim's items");
                        if killed.is_none() && check.next[VICTIM] >= 20_000 {
                            killed = Some(Instant::now());
                            victim.kill();
                        }
                    }
                    Ok(Next::Ready(key, it)) => check.item(key, it),
                    Ok(Next::Ended(key, why)) if key == victim_key => {
                        assert_eq!(why, Error::Disconnected);
                        noticed = Some(killed.expect("killed first").elapsed());
                        check.ended[VICTIM] = true;
                    }
                    Ok(Next::Ended(key, why)) => check.ended(key, why, ITEMS),
                    Ok(other) => panic!("unexpected {other:?}"),
                    Err(Error::Disconnected) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            (check.next[VICTIM], noticed.expect("the victim's end"))
        });
        check.all_ended();
        drop(fed.strays);
        assert!(noticed < NOTICE, "the death was noticed after {noticed:?}");
        assert_eq!(
            read_words(&fed.memfds[VICTIM]).write_index,
            victim_items,
            "every item the dead child published, no more"
        );
        let _ = victim.wait_within(HANG);
        finish_producers(fed.producers);
        eprintln!("keep_socket_open={keep_socket_open}: the death noticed after {noticed:?}");
    }
}

/// 100,000 jobs through an `AsyncPool` of 4 worker processes, at most
/// 6,000 unanswered at a time (fewer than a reply ring holds: a worker
/// never waits on its replies, so sends and receives cannot deadlock),
/// sent with `send` and `send_with` (batches, so that the job rings
/// fill), received with `recv_with` and `recv`. Every job is answered
/// exactly once, by one of the pool's workers, and the workers' own
/// counts agree; sends waited for room and receives for replies (the
/// workers woke the pool for both).
#[test]
fn tokio_async_pool_round_trips_100k_jobs_with_4_worker_processes() {
    const JOBS: u64 = 100_000;
    const WINDOW: u64 = 6_000;
    let mut pool = Pool::<u64, u64>::new(Policy::LeastLoaded).expect("Pool");
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (jobs_tx, jobs_rx) = channel::<u64>(512).expect("channel");
        let (replies_tx, replies_rx) = channel::<u64>(8192).expect("channel");
        assert!(replies_tx.capacity() as u64 > WINDOW);
        let (jobs_fds, replies_fds) = (
            jobs_rx.into_fds().expect("into_fds"),
            replies_tx.into_fds().expect("into_fds"),
        );
        workers.push(ChildProc::spawn("topo_pool_worker", |command| {
            handoff::inherit(command, RING_ENV, jobs_fds);
            handoff::inherit(command, RING_B_ENV, replies_fds);
            // Often enough that the pool finds no reply now and then.
            command.env(PAUSES_ENV, "4");
        }));
        pool.add(jobs_tx, replies_rx).expect("add");
    }
    let keys: Vec<Key> = pool.keys().collect();
    let (answered, pool) = runtime().block_on(async {
        let mut pool = AsyncPool::new(pool).expect("AsyncPool");
        let mut answered = vec![false; JOBS as usize];
        let (mut sent, mut got) = (0u64, 0u64);
        while got < JOBS {
            while sent < JOBS && sent - got < WINDOW {
                let batch = (JOBS - sent).min(WINDOW - (sent - got)).min(64);
                let (key, n) = if sent % 3 == 0 {
                    (within_notice(pool.send(sent)).await.expect("send"), 1)
                } else {
                    let from = sent;
                    let fill = |_key, slots: &mut [MaybeUninit<u64>]| {
                        let n = slots.len().min(batch as usize);
                        for (k, slot) in slots[..n].iter_mut().enumerate() {
                            slot.write(from + k as u64);
                        }
                        n
                    };
                    within_notice(pool.send_with(fill))
                        .await
                        .expect("send_with")
                };
                assert!(keys.contains(&key), "a job sent to {key}");
                sent += n as u64;
            }
            let low = if sent == JOBS { 0 } else { WINDOW / 2 };
            while sent - got > low {
                let next = if got % 5 == 0 {
                    within_notice(pool.recv()).await.map(|next| match next {
                        Next::Ready(key, reply) => {
                            assert!(keys.contains(&key), "a reply from {key}");
                            let job = job_of(reply);
                            assert!(!answered[job as usize], "job {job} answered twice");
                            answered[job as usize] = true;
                            Next::Ready(key, 1)
                        }
                        other => panic!("{other:?}"),
                    })
                } else {
                    within_notice(pool.recv_with(|key, replies: &[u64]| {
                        assert!(keys.contains(&key), "a reply from {key}");
                        for &reply in replies {
                            let job = job_of(reply);
                            assert!(job < sent, "an answer to job {job}, not sent yet");
                            assert!(!answered[job as usize], "job {job} answered twice");
                            answered[job as usize] = true;
                        }
                        replies.len()
                    }))
                    .await
                };
                match next {
                    Ok(Next::Ready(_, n)) => got += n as u64,
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(pool.get_ref().in_flight(), 0);
        (answered, pool.into_inner())
    });
    assert!(answered.iter().all(|&a| a), "every job answered");
    drop(pool); // closes the job rings: the workers finish
    let (mut total, mut room_wakeups, mut reply_wakeups) = (0u64, 0u64, 0u64);
    for mut worker in workers {
        let line = worker.expect_line("worked", HANG);
        worker.finish();
        let fields = fields(&line);
        let n: u64 = fields["answered"].parse().expect("a count");
        assert!(n > 0, "a worker got no job");
        total += n;
        room_wakeups += fields["room_wakeups"].parse::<u64>().expect("a count");
        reply_wakeups += fields["reply_wakeups"].parse::<u64>().expect("a count");
    }
    assert_eq!(total, JOBS);
    eprintln!(
        "{JOBS} jobs: the workers woke the pool {room_wakeups} times for room, {reply_wakeups} for replies"
    );
    assert!(
        room_wakeups > 0 && reply_wakeups > 0,
        "the pool never waited for room or for replies: the test proved little"
    );
}

/// Awaits `future` for at most `within` (panicking after that, a missed
/// wake-up) and returns its output with the number of times it was
/// polled.
async fn counting_polls<F: Future>(future: F, within: Duration) -> (F::Output, u32) {
    let mut future = pin!(future);
    let mut polls = 0;
    let counted = poll_fn(|cx| {
        polls += 1;
        future.as_mut().poll(cx)
    });
    let output = tokio::time::timeout(within, counted)
        .await
        .unwrap_or_else(|_| panic!("not done within {within:?}: a missed wake-up"));
    (output, polls)
}

/// Awaits `future` for at most `NOTICE`, panicking after that (a missed
/// wake-up).
async fn within_notice<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(NOTICE, future)
        .await
        .unwrap_or_else(|_| panic!("not done within {NOTICE:?}: a missed wake-up"))
}

/// A pool's send waits for room only, its receive for replies only: a
/// send with every job ring full sleeps though a reply waits unreceived,
/// and a receive with no reply sleeps though the job rings have room
/// (each polled at most 3 times while the worker, this test's thread,
/// takes 300 ms to act, with no CPU spent); each completes once the
/// worker acts.
#[test]
fn tokio_pool_send_and_recv_each_wait_for_their_own_direction() {
    let mut pool = Pool::<u64, u64>::new(Policy::RoundRobin).expect("Pool");
    let (jobs_tx, mut jobs) = channel::<u64>(512).expect("channel");
    let (mut replies, replies_rx) = channel::<u64>(512).expect("channel");
    let worker = pool.add(jobs_tx, replies_rx).expect("add");
    current_thread_runtime().block_on(async {
        let mut pool = AsyncPool::new(pool).expect("AsyncPool");
        let mut sent = 0u64;
        while pool.get_mut().try_send(sent).is_ok() {
            sent += 1;
        }
        replies.send(answer(0)).expect("a reply");
        // The worker takes a job in 300 ms; the send waits for it.
        let taker = thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            let job = jobs.recv();
            (jobs, job)
        });
        let (cpu_before, started) = (thread_cpu_time(), Instant::now());
        let (key, polls) = counting_polls(pool.send(sent), NOTICE).await;
        let (cpu, waited) = (thread_cpu_time() - cpu_before, started.elapsed());
        assert_eq!(key, Ok(worker));
        assert!(
            waited >= Duration::from_millis(250),
            "sent after {waited:?}"
        );
        assert!(polls <= 3, "the send was polled {polls} times: it spins");
        assert!(cpu < IDLE_CPU_LIMIT, "{cpu:?} of CPU while the send waited");
        let (mut jobs, job) = taker.join().expect("the taker");
        assert_eq!(job, Ok(0));
        assert_eq!(
            within_notice(pool.recv()).await,
            Ok(Next::Ready(worker, answer(0)))
        );

        // Now the job ring has room and no reply waits: the receive waits.
        assert_eq!(jobs.recv(), Ok(1));
        let answerer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            replies.send(answer(1)).expect("a reply");
            (jobs, replies)
        });
        let (cpu_before, started) = (thread_cpu_time(), Instant::now());
        let (reply, polls) = counting_polls(pool.recv(), NOTICE).await;
        let (cpu, waited) = (thread_cpu_time() - cpu_before, started.elapsed());
        assert_eq!(reply, Ok(Next::Ready(worker, answer(1))));
        assert!(
            waited >= Duration::from_millis(250),
            "received after {waited:?}"
        );
        assert!(polls <= 3, "the receive was polled {polls} times: it spins");
        assert!(
            cpu < IDLE_CPU_LIMIT,
            "{cpu:?} of CPU while the receive waited"
        );
        drop(answerer.join().expect("the answerer"));
    });
}

/// A task awaiting a merge of 8 rings whose child stays silent for a
/// second (watched through its pidfd as well) is polled at most 3 times
/// and uses no CPU until the child speaks; then it gets every item and
/// every end.
#[test]
fn tokio_task_awaiting_a_merge_of_silent_children_sleeps() {
    const ITEMS: u64 = 10;
    let fed = fed_merge(
        1,
        8,
        512,
        ITEMS,
        |_| true,
        |_, command| {
            command.env(IDLE_ENV, "1000");
        },
    );
    let mut check = Checked::new(&fed.ring_of);
    let merge = fed.merge;
    let (cpu, waited, polls) = current_thread_runtime().block_on(async {
        let mut merge = AsyncMerge::new(merge).expect("AsyncMerge");
        let (cpu_before, started) = (thread_cpu_time(), Instant::now());
        let (first, polls) = counting_polls(merge.recv(), HANG).await;
        let (cpu, waited) = (thread_cpu_time() - cpu_before, started.elapsed());
        match first {
            Ok(Next::Ready(key, it)) => check.item(key, it),
            other => panic!("{other:?}"),
        }
        loop {
            match within_notice(merge.recv()).await {
                Ok(Next::Ready(key, it)) => check.item(key, it),
                Ok(Next::Ended(key, why)) => check.ended(key, why, ITEMS),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(Error::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        (cpu, waited, polls)
    });
    check.all_ended();
    eprintln!("a merge of 8 silent rings awaited for {waited:?}: {cpu:?} of CPU, {polls} polls");
    assert!(
        waited >= Duration::from_millis(800),
        "the child did not stay silent"
    );
    assert!(polls <= 3, "{polls} polls while idle: the task spins");
    assert!(cpu < IDLE_CPU_LIMIT, "{cpu:?} of CPU while idle");
    assert!(
        finish_producers(fed.producers) > 0,
        "the task was never woken"
    );
}

/// A task forwards a merge of 4 rings (one child streaming with pauses)
/// into a dispatch of 2 consumer children, and drops its pending
/// `recv` / `recv_with` / `send` / `send_with` futures over and over (after
/// one poll, after a timeout, as the losing branch of a `select!`). An
/// item whose send was cancelled is sent again. Nothing is lost or
/// repeated: the merge side checks each ring's order, the consumers each
/// source's order and, together, the count and the sum.
#[test]
fn tokio_cancelled_merge_receives_and_dispatch_sends_lose_nothing() {
    const ITEMS: u64 = 50_000;
    // Pauses on both sides, so that receives and sends often wait.
    let fed = fed_merge(
        1,
        4,
        512,
        ITEMS,
        |_| false,
        |_, command| {
            command.env(PAUSES_ENV, "2").env(BATCH_ENV, "256");
        },
    );
    let mut check = Checked::new(&fed.ring_of);
    let (dispatch, consumers) = fed_dispatch(2, 512, (8, 3000), Policy::RoundRobin);
    let merge = fed.merge;
    let (recv_cancelled, send_cancelled) = runtime().block_on(async {
        let mut merge = AsyncMerge::new(merge).expect("AsyncMerge");
        let mut dispatch = AsyncDispatch::new(dispatch).expect("AsyncDispatch");
        let mut rng = Rng::new(seed());
        let (mut recv_cancelled, mut send_cancelled) = (0u64, 0u64);
        let mut held: VecDeque<u64> = VecDeque::new();
        let mut merge_done = false;
        while !merge_done || !held.is_empty() {
            if !merge_done && held.len() < 2048 {
                let step = rng.next_u64() % 4;
                let got: Option<Result<Next<usize>, Error>> = match step {
                    0 => poll_once(&mut pin!(merge.recv())).await.map(|r| {
                        r.map(|next| match next {
                            Next::Ready(key, it) => {
                                check.item(key, it);
                                held.push_back(it);
                                Next::Ready(key, 1)
                            }
                            Next::Ended(key, why) => Next::Ended(key, why),
                            other => panic!("unexpected {other:?}"),
                        })
                    }),
                    1 => tokio::select! {
                        got = merge.recv_with(|key, items: &[u64]| {
                            for &it in items {
                                check.item(key, it);
                                held.push_back(it);
                            }
                            items.len()
                        }) => Some(got),
                        () = tokio::time::sleep(Duration::from_micros(rng.range(0, 2000))) => None,
                    },
                    _ => tokio::time::timeout(
                        Duration::from_micros(rng.range(0, 3000)),
                        merge.recv_with(|key, items: &[u64]| {
                            let n = items.len().min(100);
                            for &it in &items[..n] {
                                check.item(key, it);
                                held.push_back(it);
                            }
                            n
                        }),
                    )
                    .await
                    .ok(),
                };
                match got {
                    None => recv_cancelled += 1,
                    Some(Ok(Next::Ready(..))) => {}
                    Some(Ok(Next::Ended(key, why))) => check.ended(key, why, ITEMS),
                    Some(Ok(other)) => panic!("unexpected {other:?}"),
                    Some(Err(Error::Disconnected)) => merge_done = true,
                    Some(Err(e)) => panic!("{e}"),
                }
            }
            if let Some(&first) = held.front() {
                let step = rng.next_u64() % 4;
                let sent: Option<usize> = match step {
                    0 => poll_once(&mut pin!(dispatch.send(first)))
                        .await
                        .map(|r| r.map(|_| 1).expect("send")),
                    1 => tokio::time::timeout(
                        Duration::from_micros(rng.range(0, 3000)),
                        dispatch.send(first),
                    )
                    .await
                    .ok()
                    .map(|r| r.map(|_| 1).expect("send")),
                    _ => {
                        let ready: Vec<u64> = held.iter().copied().take(300).collect();
                        let mut send =
                            pin!(dispatch.send_with(|_key, slots: &mut [MaybeUninit<u64>]| {
                                let n = slots.len().min(ready.len());
                                for (slot, &it) in slots.iter_mut().zip(&ready[..n]) {
                                    slot.write(it);
                                }
                                n
                            }));
                        if step == 2 {
                            poll_once(&mut send).await
                        } else {
                            Some(within_notice(send).await)
                        }
                        .map(|r| r.map(|(_, n)| n).expect("send_with"))
                    }
                };
                match sent {
                    Some(n) => drop(held.drain(..n)),
                    None => send_cancelled += 1,
                }
            }
        }
        (recv_cancelled, send_cancelled)
    });
    check.all_ended();
    let woke_merge = finish_producers(fed.producers);
    let woke_dispatch = finish_consumers(consumers, 4 * ITEMS, items_sum(4, ITEMS));
    eprintln!(
        "{recv_cancelled} receives and {send_cancelled} sends cancelled; the merge woken {woke_merge} times, the dispatch {woke_dispatch}"
    );
    assert!(
        recv_cancelled >= 20 && send_cancelled >= 20 && woke_merge > 0 && woke_dispatch > 0,
        "the test proved little"
    );
}

/// A worker process of an `AsyncPool` is killed mid-stream: every reply
/// it sent is delivered, then its end (`Ended`); its `Lost` gives back
/// exactly the jobs it never took (its ring's unread, in the order sent)
/// and counts those it took and never answered (the rest of what was sent
/// to it, since a worker answers in order). The task resends both, and
/// every job is answered exactly once; the surviving workers' own counts
/// agree.
#[test]
fn tokio_async_pool_gives_back_a_killed_workers_jobs_and_each_job_is_answered_once() {
    const JOBS: u64 = 60_000;
    const WINDOW: u64 = 3_000;
    let mut pool = Pool::<u64, u64>::new(Policy::RoundRobin).expect("Pool");
    let mut workers: HashMap<Key, ChildProc> = HashMap::new();
    for _ in 0..3 {
        let (jobs_tx, jobs_rx) = channel::<u64>(512).expect("channel");
        let (replies_tx, replies_rx) = channel::<u64>(4096).expect("channel");
        let (jobs_fds, replies_fds) = (
            jobs_rx.into_fds().expect("into_fds"),
            replies_tx.into_fds().expect("into_fds"),
        );
        let worker = ChildProc::spawn("topo_pool_worker", |command| {
            handoff::inherit(command, RING_ENV, jobs_fds);
            handoff::inherit(command, RING_B_ENV, replies_fds);
            // Slow enough that jobs wait in its ring when it is killed.
            command.env(PAUSES_ENV, "2");
        });
        workers.insert(pool.add(jobs_tx, replies_rx).expect("add"), worker);
    }
    let victim = pool.keys().min().expect("a worker");
    let (answers, lost_back) = runtime().block_on(async {
        let mut pool = AsyncPool::new(pool).expect("AsyncPool");
        // What each worker was sent and has not answered, in order.
        let mut outstanding: HashMap<Key, VecDeque<u64>> = HashMap::new();
        let mut answers: HashMap<Key, u64> = HashMap::new();
        let mut answered = vec![false; JOBS as usize];
        let mut resend: VecDeque<u64> = VecDeque::new();
        let (mut next_job, mut got, mut killed, mut lost_back) = (0u64, 0u64, false, 0);
        while got < JOBS {
            while (!resend.is_empty() || next_job < JOBS) && pool.get_ref().in_flight() < WINDOW {
                let job = resend.front().copied().unwrap_or(next_job);
                let key = within_notice(pool.send(job)).await.expect("send");
                outstanding.entry(key).or_default().push_back(job);
                if resend.pop_front().is_none() {
                    next_job += 1;
                }
            }
            match within_notice(pool.recv()).await {
                Ok(Next::Ready(key, reply)) => {
                    let job = job_of(reply);
                    assert!(!answered[job as usize], "job {job} answered twice");
                    answered[job as usize] = true;
                    got += 1;
                    *answers.entry(key).or_default() += 1;
                    let first = outstanding.get_mut(&key).and_then(VecDeque::pop_front);
                    assert_eq!(first, Some(job), "worker {key} answered out of order");
                }
                Ok(Next::Ended(key, why)) => {
                    assert_eq!((key, why), (victim, Error::Disconnected));
                    let lost = pool.get_mut().take_lost().expect("take_lost");
                    let lost = lost.expect("the dead worker's loss");
                    let left: Vec<u64> = outstanding.remove(&key).unwrap_or_default().into();
                    let unanswered = lost.unanswered.expect("a pool counts the unanswered");
                    assert_eq!(lost.key, key);
                    assert_eq!(
                        unanswered as usize + lost.unread.len(),
                        left.len(),
                        "taken and unanswered, or never taken: what was sent and not answered"
                    );
                    assert_eq!(
                        lost.unread,
                        left[unanswered as usize..],
                        "the jobs it never took"
                    );
                    assert_eq!(pool.get_mut().take_lost(), Ok(None), "one loss");
                    lost_back = left.len();
                    resend.extend(left);
                }
                other => panic!("{other:?}"),
            }
            if !killed && got >= JOBS / 3 {
                killed = true;
                workers.get_mut(&victim).expect("the victim").kill();
            }
        }
        assert!(resend.is_empty(), "every job given back was resent");
        assert_eq!(pool.get_ref().in_flight(), 0);
        assert_eq!(pool.get_ref().len(), 2, "the dead worker is no member");
        assert!(answered.iter().all(|&a| a), "every job answered");
        (answers, lost_back)
    });
    eprintln!("a worker killed: {lost_back} of its jobs given back and resent");
    assert!(
        lost_back > 0,
        "the dead worker left nothing behind: the test proved little"
    );
    let mut dead = workers.remove(&victim).expect("the victim");
    let _ = dead.wait_within(HANG);
    for (key, mut worker) in workers {
        let line = worker.expect_line("worked", HANG);
        worker.finish();
        let n: u64 = fields(&line)["answered"].parse().expect("a count");
        assert_eq!(n, answers[&key], "worker {key}'s answers");
    }
}

/// A merge serving a service's listener, awaited by a task: 3 client
/// processes find it by name, offer a ring each and stream into it. Each
/// is `Joined` before its first item, streams in order, and ends once
/// after its last item; the merge then waits for more clients (a
/// listening merge is never `Disconnected`).
#[test]
fn tokio_async_merge_serves_the_clients_of_its_listener() {
    const CLIENTS: usize = 3;
    const ITEMS: u64 = 50_000;
    let name = format!("evl-topo-merge-{}", std::process::id());
    let mut merge = Merge::<Receiver<u64>>::new().expect("Merge");
    merge
        .listen(Listener::bind(&name).expect("bind"), |_key, connection| {
            connection.take_receiver(&Builder::new())
        })
        .expect("listen");
    let clients: Vec<ChildProc> = (0..CLIENTS)
        .map(|_| {
            ChildProc::spawn("service_offer_receiver", |command| {
                command
                    .env(SERVICE_ENV, &name)
                    .env(COUNT_ENV, ITEMS.to_string());
            })
        })
        .collect();
    runtime().block_on(async {
        let mut merge = AsyncMerge::new(merge).expect("AsyncMerge");
        let mut streams: HashMap<Key, u64> = HashMap::new();
        let mut ended = 0;
        while ended < CLIENTS {
            match within_notice(merge.recv()).await {
                Ok(Next::Joined(key)) => {
                    assert!(streams.insert(key, 0).is_none(), "{key} joined twice");
                }
                Ok(Next::Ready(key, it)) => {
                    let next = streams.get_mut(&key).expect("joined before its items");
                    assert_eq!(it, *next, "client {key}'s items");
                    *next += 1;
                }
                Ok(Next::Ended(key, why)) => {
                    assert_eq!(why, Error::Disconnected);
                    assert_eq!(streams.get(&key), Some(&ITEMS), "{key} ended early");
                    ended += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(streams.len(), CLIENTS);
        let more = tokio::time::timeout(Duration::from_millis(200), merge.recv()).await;
        assert!(
            more.is_err(),
            "a listening merge waits for clients: {more:?}"
        );
    });
    for mut client in clients {
        client.expect_line("sent", HANG);
        client.finish();
    }
}
