//! Draining and taking back: `wait_drained` returns once a consumer
//! process took the last item (and times out, not before its time, when
//! it stopped), `close` then `wait_drained` is the orderly end of a
//! stream, `take_unread` gives back exactly what a killed consumer never
//! took, and a `Dispatch` and a `Pool` wait for all their workers.

use std::time::{Duration, Instant};

use crate::common::{assert_killed, number, read_words, word_of, ChildProc, HANG, NOTICE};
use crate::peers::{items_of, spawn_consumer, spawn_worker};
use fdring::topology::{Dispatch, Lost, Next, Policy, Pool};
use fdring::Error;

/// A consumer's report at the end of its stream: what it took, and why it
/// ended.
#[track_caller]
fn expect_end(child: &mut ChildProc) -> (u64, String, Vec<u64>) {
    let end = child.expect_line("end", HANG);
    (
        number(&end, "count"),
        word_of(&end, "err").to_owned(),
        items_of(&end),
    )
}

#[test]
fn wait_drained_returns_once_a_slow_consumer_process_took_the_last_item() {
    let (mut tx, mut child, memfd) = spawn_consumer(512);
    let items: Vec<u64> = (0..100).collect();
    tx.send_slice(&items).expect("send");
    assert_eq!(tx.len(), 100, "the consumer waits for its order");
    child.order("drain 2");
    tx.wait_drained(HANG).expect("wait_drained");
    assert_eq!(tx.len(), 0, "Ok means the ring is empty");
    assert_eq!(
        read_words(&memfd).read_index,
        100,
        "Ok means the consumer released the last item"
    );
    assert!(tx.stats().sleeps > 0, "wait_drained slept while it waited");
    drop(tx);
    assert_eq!(expect_end(&mut child), (100, "Disconnected".into(), items));
    child.finish();
}

#[test]
fn wait_drained_times_out_not_before_its_time_with_a_consumer_that_stopped() {
    let (mut tx, mut child, memfd) = spawn_consumer(512);
    let items: Vec<u64> = (0..100).collect();
    tx.send_slice(&items).expect("send");
    child.order("take 30");
    assert_eq!(number(&child.expect_line("took", HANG), "count"), 30);
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    assert_eq!(tx.wait_drained(timeout), Err(Error::Timeout));
    let waited = started.elapsed();
    assert!(
        waited >= timeout,
        "Timeout after {waited:?}, before {timeout:?}"
    );
    assert!(waited < timeout + NOTICE, "Timeout only after {waited:?}");
    assert_eq!((tx.len(), read_words(&memfd).read_index), (70, 30));
    // The stream goes on after a timeout.
    child.order("drain 0");
    tx.wait_drained(HANG).expect("wait_drained");
    drop(tx);
    assert_eq!(expect_end(&mut child), (100, "Disconnected".into(), items));
    child.finish();
}

#[test]
fn close_then_wait_drained_lets_the_consumer_take_everything_then_disconnected() {
    let (mut tx, mut child, memfd) = spawn_consumer(512);
    let items: Vec<u64> = (0..200).collect();
    tx.send_slice(&items).expect("send");
    tx.close();
    assert_eq!(tx.try_send(200), Err(Error::Disconnected));
    assert_eq!(tx.send(200), Err(Error::Disconnected));
    assert_eq!(tx.len(), 200, "closing takes nothing back");
    child.order("drain 1");
    tx.wait_drained(HANG).expect("wait_drained after close");
    assert_eq!((tx.len(), read_words(&memfd).read_index), (0, 200));
    assert_eq!(
        read_words(&memfd).producer_closed,
        1,
        "close marked the end closed"
    );
    let (count, end, got) = expect_end(&mut child);
    assert_eq!(
        (count, end.as_str(), got),
        (200, "Disconnected", items),
        "the consumer took every item, then saw the close, with the sender still open"
    );
    assert_eq!(
        tx.wait_drained(Duration::ZERO),
        Ok(()),
        "drained stays drained"
    );
    child.finish();
}

/// The consumer took 300 items, then 50 of the 400 that followed (their
/// indices wrap around the ring of 512), and was killed: `take_unread`
/// refuses while it lives, then returns exactly items 350..700 in order,
/// then nothing.
#[test]
fn take_unread_gives_back_exactly_what_a_killed_consumer_process_never_took() {
    let (mut tx, mut child, memfd) = spawn_consumer(512);
    assert_eq!(tx.capacity(), 512);
    tx.send_slice(&(0..300).collect::<Vec<u64>>())
        .expect("send");
    child.order("take 300");
    child.expect_line("took", HANG);
    tx.send_slice(&(300..700).collect::<Vec<u64>>())
        .expect("send");
    child.order("take 50");
    assert_eq!(number(&child.expect_line("took", HANG), "count"), 350);
    assert_eq!(tx.take_unread(), Err(Error::PeerAlive));
    assert_eq!(tx.len(), 350, "a refused take_unread takes nothing");
    child.kill();
    assert_killed(&mut child, "the consumer");
    assert_eq!(read_words(&memfd).read_index, 350);
    assert_eq!(tx.take_unread(), Ok((350..700).collect::<Vec<u64>>()));
    assert_eq!(tx.take_unread(), Ok(Vec::new()), "once only");
}

/// Three consumer processes, 100 items each: the dispatch's
/// `wait_drained` times out while they do not read, and returns once the
/// last of them took its last item.
#[test]
fn a_dispatch_waits_until_every_worker_process_drained_its_ring() {
    let mut dispatch = Dispatch::new(Policy::RoundRobin).expect("dispatch");
    let mut consumers = Vec::new();
    for _ in 0..3 {
        let (tx, child, memfd) = spawn_consumer(512);
        dispatch.add(tx).expect("add");
        consumers.push((child, memfd));
    }
    for item in 0..300 {
        dispatch.send(item).expect("send");
    }
    assert_eq!(dispatch.in_flight(), 300);
    let timeout = Duration::from_millis(100);
    let started = Instant::now();
    assert_eq!(dispatch.wait_drained(timeout), Err(Error::Timeout));
    assert!(started.elapsed() >= timeout, "Timeout before its time");
    for (child, _) in &mut consumers {
        child.order("drain 1");
    }
    dispatch.wait_drained(HANG).expect("wait_drained");
    assert_eq!(dispatch.in_flight(), 0);
    for (_, memfd) in &consumers {
        assert_eq!(
            read_words(memfd).read_index,
            100,
            "each took all of its items"
        );
    }
    drop(dispatch);
    for (j, (mut child, _)) in consumers.into_iter().enumerate() {
        let expected: Vec<u64> = (0..300).filter(|i| i % 3 == j as u64).collect();
        assert_eq!(
            expect_end(&mut child),
            (100, "Disconnected".into(), expected)
        );
        child.finish();
    }
}

/// A worker process killed with items unread: the dispatch's
/// `wait_drained` says `Disconnected` and `take_lost` gives them back;
/// waiting again, for the one left, succeeds.
#[test]
fn a_dispatch_wait_drained_reports_a_worker_that_died_with_items_unread() {
    let mut dispatch = Dispatch::new(Policy::RoundRobin).expect("dispatch");
    let (a_tx, mut a, _) = spawn_consumer(512);
    let (b_tx, mut b, _) = spawn_consumer(512);
    let (a_key, _) = (
        dispatch.add(a_tx).expect("add"),
        dispatch.add(b_tx).expect("add"),
    );
    for item in 0..20 {
        dispatch.send(item).expect("send");
    }
    a.order("take 4");
    a.expect_line("took", HANG);
    a.kill();
    assert_killed(&mut a, "worker a");
    assert_eq!(dispatch.wait_drained(HANG), Err(Error::Disconnected));
    let lost = dispatch.take_lost().expect("take_lost").expect("a's loss");
    assert_eq!(
        (
            lost.key,
            lost.unread.as_slice(),
            lost.taken,
            lost.unanswered,
            &lost.error
        ),
        (
            a_key,
            &[8, 10, 12, 14, 16, 18][..],
            4,
            None,
            &Error::Disconnected
        )
    );
    assert_eq!(dispatch.len(), 1);
    b.order("drain 0");
    dispatch.wait_drained(HANG).expect("wait_drained");
    drop(dispatch);
    let odd: Vec<u64> = (0..20).filter(|i| i % 2 == 1).collect();
    assert_eq!(expect_end(&mut b), (10, "Disconnected".into(), odd));
    b.finish();
}

/// Three slow worker processes (2 ms a job): the pool's `wait_drained`
/// returns once each has taken all of its jobs; every reply then comes.
#[test]
fn a_pool_waits_until_every_worker_process_took_its_jobs() {
    let mut pool = Pool::<u64, u64>::new(Policy::RoundRobin).expect("pool");
    let mut workers = Vec::new();
    for _ in 0..3 {
        let (jobs_tx, replies_rx, child, memfd) = spawn_worker(512, Duration::from_millis(2), 1);
        pool.add(jobs_tx, replies_rx).expect("add");
        workers.push((child, memfd));
    }
    for job in 0..90 {
        pool.send(job).expect("send");
    }
    pool.wait_drained(HANG).expect("wait_drained");
    for (_, memfd) in &workers {
        assert_eq!(read_words(memfd).read_index, 30, "each took its 30 jobs");
    }
    let mut answered = vec![0; 90];
    while answered.iter().sum::<u32>() < 90 {
        match pool.recv_timeout(HANG) {
            Ok(Next::Ready(_, job)) => answered[job as usize] += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(answered.iter().all(|&n| n == 1));
    assert_eq!(pool.in_flight(), 0);
    assert_eq!(pool.take_lost(), Ok(None::<Lost<u64>>));
    drop(pool);
    for (child, _) in workers {
        child.finish();
    }
}
