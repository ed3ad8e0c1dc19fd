//! The status queries a user reaches for: `len`, `is_empty`, `is_full` and
//! `slots` on `&self` (racy snapshots, clamped to the capacity whatever
//! the peer writes), `Receiver::peek`, and the iterators `try_iter`,
//! `iter` and `for item in &mut receiver`.
//!
//! Threads are enough here: the queries make no system call, and what
//! they promise about a peer that moves meanwhile is a bound, checked
//! against a real stream between two threads. A hostile peer is a second
//! mapping of the memfd (`tests/support/raw.rs`).

mod common;

use std::sync::atomic::Ordering;

use common::{spawn_bounded, HANG};
use fdring::{channel, Corruption, Error, Receiver, Sender};

#[path = "support/raw.rs"]
mod raw;

use raw::Raw;

/// The queries of a sender, through a shared reference only.
fn sender_view(tx: &Sender<u64>) -> (usize, bool, bool, usize) {
    (tx.len(), tx.is_empty(), tx.is_full(), tx.slots())
}

/// The queries of a receiver, through a shared reference only.
fn receiver_view(rx: &Receiver<u64>) -> (usize, bool, bool, usize) {
    (rx.len(), rx.is_empty(), rx.is_full(), rx.slots())
}

#[test]
fn the_queries_take_a_shared_reference_and_follow_the_fill_level() {
    let (mut tx, mut rx) = channel::<u64>(512).unwrap();
    let cap = tx.capacity();
    assert_eq!(sender_view(&tx), (0, true, false, cap));
    assert_eq!(receiver_view(&rx), (0, true, false, 0));
    tx.send_slice(&[1, 2, 3]).unwrap();
    assert_eq!(sender_view(&tx), (3, false, false, cap - 3));
    assert_eq!(receiver_view(&rx), (3, false, false, 3));
    while tx.try_send(0).is_ok() {}
    assert_eq!(sender_view(&tx), (cap, false, true, 0));
    assert_eq!(receiver_view(&rx), (cap, false, true, cap));
    let mut buf = vec![0; cap];
    assert_eq!(rx.try_recv_slice(&mut buf[..10]), Ok(10));
    assert_eq!(sender_view(&tx), (cap - 10, false, false, 10));
    assert_eq!(receiver_view(&rx), (cap - 10, false, false, cap - 10));
    assert_eq!(rx.try_recv_slice(&mut buf), Ok(cap - 10));
    assert_eq!(sender_view(&tx), (0, true, false, cap));
    assert_eq!(receiver_view(&rx), (0, true, false, 0));
}

#[test]
fn the_queries_are_bounds_that_hold_while_the_peer_moves() {
    // The receiver's `slots` can only grow until it receives, and the
    // sender's until it sends: a call right after gets at least as many.
    let (mut tx, mut rx) = channel::<u64>(512).unwrap();
    let cap = tx.capacity();
    let total = 200_000u64;
    let producer = spawn_bounded("producer", move || {
        let batch: Vec<u64> = (0..cap as u64).collect();
        let mut next = 0u64;
        while next < total {
            let free = tx.slots();
            assert!(free <= cap);
            let later = tx.slots();
            assert!(
                later >= free,
                "{free} free slots, then {later}: only this end fills"
            );
            let want = (total - next).min(cap as u64) as usize;
            let sent = match tx.try_send_slice(&batch[..want]) {
                Ok(sent) => sent,
                Err(Error::Full) => 0,
                Err(e) => panic!("sending: {e}"),
            };
            assert!(
                sent >= free.min(want),
                "{free} free slots by `slots`, then only {sent} sent"
            );
            next += sent as u64;
            if sent == 0 {
                std::thread::yield_now();
            }
        }
    });
    let mut buf = vec![0u64; cap];
    let mut received = 0u64;
    while received < total {
        let ready = rx.slots();
        assert!(ready <= cap);
        let later = rx.len();
        assert!(
            later >= ready,
            "{ready} items ready, then {later}: only this end takes"
        );
        let got = match rx.try_recv_slice(&mut buf) {
            Ok(got) => got,
            Err(Error::Empty) => 0,
            Err(e) => panic!("receiving: {e}"),
        };
        assert!(
            got >= ready,
            "{ready} items ready by `slots`, then only {got} received"
        );
        received += got as u64;
        if got == 0 {
            std::thread::yield_now();
        }
    }
    producer.join_within(HANG);
    assert_eq!(receiver_view(&rx), (0, true, false, 0));
}

#[test]
fn a_corrupted_read_index_is_clamped_by_the_sender_queries_and_reported_by_the_next_call() {
    let (mut tx, rx) = channel::<u64>(512).unwrap();
    let cap = tx.capacity();
    let fds = rx.into_fds().unwrap();
    let raw = Raw::map(&fds.memfd);
    tx.send_slice(&[0; 10]).unwrap();
    assert_eq!(sender_view(&tx), (10, false, false, cap - 10));
    // A read index ahead of the write index, by one or by far: nothing
    // can be in the ring.
    for read in [11, u64::MAX] {
        raw.read_index().store(read, Ordering::Release);
        assert_eq!(sender_view(&tx), (0, true, false, cap), "read index {read}");
    }
    // The queries recorded nothing: a legal index again is read as such.
    raw.read_index().store(0, Ordering::Release);
    assert_eq!(sender_view(&tx), (10, false, false, cap - 10));
    // A lap later, a read index more than a ring behind: at most full.
    while tx.try_send(0).is_ok() {}
    raw.read_index().store(cap as u64, Ordering::Release);
    assert_eq!(sender_view(&tx), (0, true, false, cap));
    while tx.try_send(0).is_ok() {}
    assert_eq!(sender_view(&tx), (cap, false, true, 0));
    raw.read_index().store(cap as u64 - 1, Ordering::Release);
    assert_eq!(sender_view(&tx), (cap, false, true, 0));
    raw.read_index().store(0, Ordering::Release);
    assert_eq!(sender_view(&tx), (cap, false, true, 0));
    // The next real call reports it.
    assert_eq!(
        tx.try_send(1),
        Err(Error::Corrupted(Corruption::IndexWentBack {
            before: cap as u64,
            now: 0
        }))
    );
    // Still a snapshot, not an error, on a ring known corrupted.
    raw.read_index().store(2 * cap as u64, Ordering::Release);
    assert_eq!(sender_view(&tx), (0, true, false, cap));
    drop(fds);
}

#[test]
fn a_corrupted_write_index_is_clamped_by_the_receiver_queries_and_reported_by_the_next_call() {
    let (tx, mut rx) = channel::<u64>(512).unwrap();
    let cap = rx.capacity();
    let fds = tx.into_fds().unwrap();
    let raw = Raw::map(&fds.memfd);
    for i in 0..5 {
        raw.put(i, i);
    }
    raw.write_index().store(5, Ordering::Release);
    assert_eq!(rx.try_recv(), Ok(0));
    assert_eq!(receiver_view(&rx), (4, false, false, 4));
    // Far ahead: clamped to a full ring.
    raw.write_index().store(u64::MAX, Ordering::Release);
    assert_eq!(receiver_view(&rx), (cap, false, true, cap));
    // Behind the read index: clamped to an empty ring.
    raw.write_index().store(0, Ordering::Release);
    assert_eq!(receiver_view(&rx), (0, true, false, 0));
    // The queries recorded nothing: a legal index again is read as such...
    raw.write_index().store(5, Ordering::Release);
    assert_eq!(receiver_view(&rx), (4, false, false, 4));
    // ... and a bad one is reported by the next call that uses it.
    raw.write_index()
        .store(5 + cap as u64 + 1, Ordering::Release);
    assert_eq!(
        rx.try_recv_with(|items| items.len()),
        Err(Error::Corrupted(Corruption::IndexOutOfRange {
            write: 5 + cap as u64 + 1,
            read: 1,
            capacity: cap as u64
        }))
    );
    assert_eq!(receiver_view(&rx), (cap, false, true, cap));
    drop(fds);
}

#[test]
fn peek_copies_the_next_item_without_receiving_it() {
    let (mut tx, mut rx) = channel::<u64>(512).unwrap();
    assert_eq!(rx.peek(), Err(Error::Empty));
    tx.send_slice(&[7, 8]).unwrap();
    for _ in 0..3 {
        assert_eq!(rx.peek(), Ok(7));
    }
    // Nothing was released: the sender still sees both items.
    assert_eq!((rx.len(), tx.len()), (2, 2));
    assert_eq!(rx.try_recv(), Ok(7));
    assert_eq!(rx.peek(), Ok(8));
    drop(tx);
    // The sender is gone, but an item is still there.
    assert_eq!(rx.peek(), Ok(8));
    assert_eq!(rx.try_recv(), Ok(8));
    assert_eq!(rx.peek(), Err(Error::Disconnected));
}

#[test]
fn peek_reports_a_corrupted_ring_as_try_recv_does() {
    let (tx, mut rx) = channel::<u64>(512).unwrap();
    let fds = tx.into_fds().unwrap();
    let raw = Raw::map(&fds.memfd);
    raw.write_index().store(u64::MAX, Ordering::Release);
    let expected = Err(Error::Corrupted(Corruption::IndexOutOfRange {
        write: u64::MAX,
        read: 0,
        capacity: rx.capacity() as u64,
    }));
    assert_eq!(rx.peek(), expected);
    assert_eq!(rx.try_recv(), expected);
    assert_eq!(rx.peek(), expected, "sticky");
    drop(fds);
}

#[test]
fn try_iter_yields_the_ready_items_and_then_nothing_more() {
    let (mut tx, mut rx) = channel::<u64>(512).unwrap();
    tx.send_slice(&[1, 2, 3]).unwrap();
    let mut items = rx.try_iter();
    assert_eq!(items.by_ref().take(2).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(items.next(), Some(3));
    assert_eq!(items.next(), None);
    // Fused: what the sender adds now is for the next iterator.
    tx.send(4).unwrap();
    assert_eq!(items.next(), None);
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [4]);
    // After a disconnect: the items left, then nothing.
    tx.send_slice(&[5, 6]).unwrap();
    drop(tx);
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [5, 6]);
    assert_eq!(rx.try_iter().next(), None);
    assert_eq!(rx.try_recv(), Err(Error::Disconnected));
}

#[test]
fn iter_receives_everything_until_the_sender_is_gone() {
    let (mut tx, mut rx) = channel::<u64>(512).unwrap();
    let total = 100_000u64;
    let producer = spawn_bounded("producer", move || {
        for i in 0..total {
            tx.send(i).unwrap();
        }
    });
    let consumer = spawn_bounded("consumer", move || {
        let mut next = 0;
        for item in rx.iter() {
            assert_eq!(item, next);
            next += 1;
        }
        (next, rx.try_recv())
    });
    producer.join_within(HANG);
    let (received, after) = consumer.join_within(HANG);
    assert_eq!(received, total);
    assert_eq!(
        after,
        Err(Error::Disconnected),
        "the loop ended on the disconnect"
    );
}

#[test]
fn a_for_loop_over_a_receiver_ends_at_a_corruption_and_try_recv_tells_which() {
    let (tx, mut rx) = channel::<u64>(512).unwrap();
    let fds = tx.into_fds().unwrap();
    let raw = Raw::map(&fds.memfd);
    for i in 0..3 {
        raw.put(i, 10 + i);
    }
    raw.write_index().store(3, Ordering::Release);
    let mut seen = Vec::new();
    for item in &mut rx {
        seen.push(item);
        if seen.len() == 3 {
            // The peer now breaks the protocol: its index goes back.
            raw.write_index().store(1, Ordering::Release);
        }
    }
    assert_eq!(seen, [10, 11, 12]);
    assert_eq!(
        rx.try_recv(),
        Err(Error::Corrupted(Corruption::IndexWentBack {
            before: 3,
            now: 1
        })),
        "not a disconnect: the sender's end is open"
    );
    drop(fds);
}
