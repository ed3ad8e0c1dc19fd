//! Fan-out to consumer processes: round-robin order, the least loaded
//! ring by what the consumers really took, a blocking send woken by the
//! first consumer that frees room, no member, and a worker killed while
//! idle found by `take_lost` alone.

use std::time::{Duration, Instant};

use crate::common::{assert_killed, number, word_of, ChildProc, HANG, NOTICE};
use crate::peers::{items_of, spawn_consumer};
use fdring::topology::{Dispatch, Key, Lost, Policy};
use fdring::Error;

/// A dispatch by `policy` over `n` consumer processes, in the order added.
fn dispatch_over(policy: Policy, n: usize) -> (Dispatch<u64>, Vec<(Key, ChildProc)>) {
    let mut dispatch = Dispatch::new(policy).expect("dispatch");
    let consumers = (0..n)
        .map(|_| {
            let (tx, child, _) = spawn_consumer(512);
            (dispatch.add(tx).expect("add"), child)
        })
        .collect();
    (dispatch, consumers)
}

/// Fills the ring the dispatch picks, to the brim, with `item`s.
fn fill_one(dispatch: &mut Dispatch<u64>, item: u64) -> Key {
    let (key, n) = dispatch
        .try_send_with(|_, slots| {
            for slot in slots.iter_mut() {
                slot.write(item);
            }
            slots.len()
        })
        .expect("room");
    assert_eq!(n, 512, "one send fills an empty ring");
    key
}

/// The length of member `key`'s ring.
fn len(dispatch: &Dispatch<u64>, key: Key) -> usize {
    dispatch.get(key).expect("a member").len()
}

/// Closes the dispatch, and checks what each consumer got in all.
fn close_and_expect(dispatch: Dispatch<u64>, consumers: Vec<(Key, ChildProc)>, got: &[Vec<u64>]) {
    drop(dispatch);
    for ((key, mut child), expected) in consumers.into_iter().zip(got) {
        child.order("drain 0");
        let end = child.expect_line("end", HANG);
        assert_eq!(word_of(&end, "err"), "Disconnected", "{key}: {end}");
        assert_eq!(&items_of(&end), expected, "what {key} received");
        child.finish();
    }
}

#[test]
fn round_robin_sends_to_each_worker_process_in_turn() {
    let (mut dispatch, consumers) = dispatch_over(Policy::RoundRobin, 3);
    let keys: Vec<Key> = dispatch.keys().collect();
    assert_eq!(keys, consumers.iter().map(|c| c.0).collect::<Vec<_>>());
    for item in 0..30u64 {
        let key = if item % 2 == 0 {
            dispatch.send(item)
        } else {
            dispatch.try_send(item)
        };
        assert_eq!(key, Ok(keys[item as usize % 3]), "item {item}");
    }
    let got: Vec<Vec<u64>> = (0..3)
        .map(|j| (0..30).filter(|i| i % 3 == j).collect())
        .collect();
    close_and_expect(dispatch, consumers, &got);
}

/// One ring full, the others empty: sends go to the emptiest ring, ties
/// in turn, never to the full one; once a consumer process takes items
/// from the full one, it is the emptiest and gets the next sends.
#[test]
fn least_loaded_sends_to_the_emptiest_ring() {
    let (mut dispatch, mut consumers) = dispatch_over(Policy::LeastLoaded, 3);
    let full = fill_one(&mut dispatch, 1000);
    let mut got: Vec<Vec<u64>> = vec![Vec::new(); 3];
    let keys: Vec<Key> = consumers.iter().map(|c| c.0).collect();
    let at = |key: Key| keys.iter().position(|&k| k == key).expect("a member");
    got[at(full)] = vec![1000; 512];
    // 50 at once go to one of the empty two; then the other gets the next
    // 50, one by one; then they alternate.
    let (fifty, n) = dispatch
        .try_send_with(|_, slots| {
            for (i, slot) in slots[..50].iter_mut().enumerate() {
                slot.write(2000 + i as u64);
            }
            50
        })
        .expect("room");
    assert!(fifty != full && n == 50);
    got[at(fifty)].extend(2000..2050);
    let mut item = 0;
    let mut send = |dispatch: &mut Dispatch<u64>, got: &mut Vec<Vec<u64>>| {
        let lens: Vec<usize> = keys.iter().map(|&k| len(dispatch, k)).collect();
        let key = dispatch.try_send(item).expect("room");
        assert_eq!(
            lens[at(key)],
            *lens.iter().min().expect("members"),
            "item {item} went to {key}, with {lens:?} items in the rings"
        );
        got[at(key)].push(item);
        item += 1;
        key
    };
    for _ in 0..50 {
        let key = send(&mut dispatch, &mut got);
        assert!(key != full && key != fifty, "the other empty ring first");
    }
    let mut turns = Vec::new();
    for _ in 0..10 {
        turns.push(send(&mut dispatch, &mut got));
    }
    assert!(
        turns.windows(2).all(|w| w[0] != w[1]),
        "ties in turn: {turns:?}"
    );
    assert!(!turns.contains(&full));
    // The full ring's consumer takes 500: it now has 12, the least.
    let full_child = &mut consumers[at(full)].1;
    full_child.order("take 500");
    assert_eq!(number(&full_child.expect_line("took", HANG), "count"), 500);
    assert_eq!(len(&dispatch, full), 12);
    for _ in 0..40 {
        let key = send(&mut dispatch, &mut got);
        assert_eq!(key, full, "the ring its consumer emptied");
    }
    close_and_expect(dispatch, consumers, &got);
}

/// Every ring full: `try_send` is `Full` and `send_timeout` times out
/// (not before its time); a blocking `send` waits, and returns as soon as
/// one consumer process frees room, with that consumer's key.
#[test]
fn a_blocking_send_waits_for_room_on_any_worker_and_wakes_when_one_frees_some() {
    let (mut dispatch, mut consumers) = dispatch_over(Policy::RoundRobin, 3);
    let mut got: Vec<Vec<u64>> = Vec::new();
    for (j, (key, _)) in consumers.iter().enumerate() {
        assert_eq!(fill_one(&mut dispatch, j as u64), *key);
        got.push(vec![j as u64; 512]);
    }
    assert_eq!(dispatch.try_send(7), Err(Error::Full));
    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    assert_eq!(dispatch.send_timeout(7, timeout), Err(Error::Timeout));
    assert!(started.elapsed() >= timeout, "Timeout before its time");
    // The last consumer frees room a moment after the send fell asleep.
    let (last, child) = consumers.last_mut().expect("consumers");
    child.order("sleep 300");
    child.order("take 10");
    let sent = dispatch.send(7);
    assert_eq!(sent, Ok(*last), "the send went where room was freed");
    assert_eq!(number(&child.expect_line("took", HANG), "count"), 10);
    got[2].push(7);
    close_and_expect(dispatch, consumers, &got);
}

#[test]
fn a_dispatch_without_members_is_disconnected() {
    let mut dispatch = Dispatch::<u64>::new(Policy::LeastLoaded).expect("dispatch");
    assert_eq!(dispatch.try_send(1), Err(Error::Disconnected));
    assert_eq!(dispatch.send(1), Err(Error::Disconnected));
    assert_eq!(
        dispatch.send_timeout(1, Duration::from_millis(10)),
        Err(Error::Disconnected)
    );
    assert_eq!(dispatch.wait_drained(Duration::ZERO), Ok(()));
    assert_eq!(dispatch.take_lost(), Ok(None));
    // Its only member killed: the next send finds it gone, keeps what it
    // never read, and has nobody left.
    let (tx, mut child, _) = spawn_consumer(512);
    let key = dispatch.add(tx).expect("add");
    dispatch.send(5).expect("send");
    child.kill();
    assert_killed(&mut child, "the only member");
    let deadline = Instant::now() + NOTICE;
    let sent = loop {
        match dispatch.send(6) {
            // Sent into the dead ring before its death was seen: it comes
            // back with the rest.
            Ok(_) => assert!(Instant::now() < deadline, "the death is never noticed"),
            other => break other,
        }
    };
    assert_eq!(sent, Err(Error::Disconnected));
    let lost = dispatch.take_lost().expect("take_lost").expect("its loss");
    assert_eq!(
        (lost.key, lost.taken, &lost.error),
        (key, 0, &Error::Disconnected)
    );
    assert_eq!(lost.unread[0], 5);
    assert!(lost.unread[1..].iter().all(|&i| i == 6));
    assert!(dispatch.is_empty());
}

/// Two consumer processes; one takes two of its items and is killed. With
/// no send at all, `take_lost` (after the dispatch's fd says something
/// happened) finds it, with exactly the items it never took.
#[test]
fn a_worker_killed_while_idle_is_found_by_take_lost_with_its_unread_items() {
    let (mut dispatch, mut consumers) = dispatch_over(Policy::RoundRobin, 2);
    for item in 0..10 {
        dispatch.send(item).expect("send");
    }
    assert_eq!(dispatch.take_lost(), Ok(None), "nobody left yet");
    let (a, mut child) = consumers.remove(0);
    child.order("take 2");
    child.expect_line("took", HANG);
    child.kill();
    assert_killed(&mut child, "worker a");
    let deadline = Instant::now() + NOTICE;
    let lost: Lost<u64> = loop {
        if let Some(lost) = dispatch.take_lost().expect("take_lost") {
            break lost;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the dead worker is never found");
        let mut fd = [rustix::event::PollFd::new(
            &dispatch,
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        rustix::event::poll(&mut fd, Some(&timeout)).expect("poll");
    };
    assert_eq!(
        (lost.key, lost.unread.as_slice(), lost.taken, &lost.error),
        (a, &[4, 6, 8][..], 2, &Error::Disconnected)
    );
    assert_eq!(dispatch.keys().collect::<Vec<_>>(), [consumers[0].0]);
    let odd: Vec<u64> = (0..10).filter(|i| i % 2 == 1).collect();
    close_and_expect(dispatch, consumers, &[odd]);
}
