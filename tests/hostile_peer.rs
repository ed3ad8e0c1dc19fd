//! An honest end facing a peer that breaks the protocol.
//!
//! The peer here is this test: it maps the ring's memfd itself (a real
//! `MAP_SHARED` mapping of a dup'd fd) and, between the honest end's calls
//! (and sometimes inside its closures), writes whatever it likes into the
//! shared header: indices out of range, going backwards, `u64::MAX`, random
//! values, the configuration line, the armed and closed words. It holds
//! its end of the wake-up socket pair, and sometimes, as the ring's hostile
//! creator could, a dup of the honest end's own socket: it floods the
//! honest end, fills its send buffer, makes the shared description
//! blocking, steals its wake-ups, or hangs up.
//!
//! The honest end must answer each call with a valid result or with
//! `Error::Corrupted`, sticky from then on; it must never panic, hand a
//! closure more than `capacity` items, or hang; and once the peer hung up,
//! a wait must end in `Disconnected`, not at its deadline.

use std::collections::BTreeSet;
use std::mem::MaybeUninit;
use std::ops::Deref;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use fdring::{channel, Corruption, Error, Exhaustion, Fds, Receiver, Rejection, Sender};
use proptest::prelude::*;
use rustix::event::{PollFd, PollFlags};
use rustix::fs::OFlags;
use rustix::net::{RecvFlags, SendFlags, Shutdown};

#[path = "support/raw.rs"]
mod raw;

use raw::*;

/// The hostile peer of one honest end: its own mapping of the memfd (what
/// it derefs to) and its end of the honest end's wake-up socket pair,
/// which it keeps open so that the honest end does not see it hang up.
struct Peer {
    raw: Raw,
    wake: OwnedFd,
}

impl Deref for Peer {
    type Target = Raw;

    fn deref(&self) -> &Raw {
        &self.raw
    }
}

/// An honest receiver whose producer is the hostile `Peer`: the honest
/// sender gave its fds away (without closing) and is gone.
fn honest_receiver(capacity: usize) -> (Receiver<u64>, Peer) {
    let (tx, rx) = channel::<u64>(capacity).unwrap();
    let fds = tx.into_fds().unwrap();
    let raw = Raw::map(&fds.memfd);
    (
        rx,
        Peer {
            raw,
            wake: fds.wake,
        },
    )
}

/// An honest sender whose consumer is the hostile `Peer`.
fn honest_sender(capacity: usize) -> (Sender<u64>, Peer) {
    let (tx, rx) = channel::<u64>(capacity).unwrap();
    let fds = rx.into_fds().unwrap();
    let raw = Raw::map(&fds.memfd);
    (
        tx,
        Peer {
            raw,
            wake: fds.wake,
        },
    )
}

/// Both honest ends and a third party mapping their memfd.
fn honest_pair(capacity: usize) -> (Sender<u64>, Receiver<u64>, Raw) {
    let (tx, rx) = channel::<u64>(capacity).unwrap();
    let fds = tx.into_fds().unwrap();
    let raw = Raw::map(&fds.memfd);
    let tx = Sender::from_fds(fds).unwrap();
    (tx, rx, raw)
}

fn never_fill(_: &mut [MaybeUninit<u64>]) -> usize {
    panic!("a corrupted sender lent slots")
}

fn never_consume(_: &[u64]) -> usize {
    panic!("a corrupted receiver lent items")
}

/// Every operation of a corrupted sender returns `expected` again. (The
/// calls that wait without a deadline are checked once, under a watchdog,
/// in `waiting_calls_on_a_corrupted_ring_return_at_once`.)
fn assert_sender_stuck(tx: &mut Sender<u64>, expected: Corruption) {
    let expected = Error::Corrupted(expected);
    assert_eq!(tx.try_send(1), Err(expected.clone_like()));
    assert_eq!(tx.try_send_with(never_fill), Err(expected.clone_like()));
    assert_eq!(tx.try_send_slice(&[1, 2]), Err(expected.clone_like()));
    assert_eq!(
        tx.send_timeout(1, Duration::from_millis(1)),
        Err(expected.clone_like())
    );
    assert_eq!(tx.try_send_with(never_fill), Err(expected));
    // The snapshots are not calls that fail: whatever the indices, they
    // answer a possible fill level (`tests/queries.rs`).
    assert!(tx.len() <= tx.capacity() && tx.slots() <= tx.capacity());
}

/// Every operation of a corrupted receiver returns `expected` again.
fn assert_receiver_stuck(rx: &mut Receiver<u64>, expected: Corruption) {
    let expected = Error::Corrupted(expected);
    let mut buf = [0u64; 4];
    assert_eq!(rx.try_recv(), Err(expected.clone_like()));
    assert_eq!(rx.try_recv_with(never_consume), Err(expected.clone_like()));
    assert_eq!(rx.try_recv_slice(&mut buf), Err(expected.clone_like()));
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(1)),
        Err(expected.clone_like())
    );
    assert_eq!(rx.try_recv_with(never_consume), Err(expected));
    // The snapshots are not calls that fail (see `assert_sender_stuck`).
    assert!(rx.len() <= rx.capacity() && rx.slots() <= rx.capacity());
}

/// `Error` is not `Clone` (it can hold an `io::Error`); the variants these
/// tests compare are.
trait CloneLike {
    fn clone_like(&self) -> Self;
}

impl CloneLike for Error {
    fn clone_like(&self) -> Error {
        match self {
            Error::Corrupted(c) => Error::Corrupted(*c),
            Error::Rejected(r) => Error::Rejected(r.clone()),
            Error::Full => Error::Full,
            Error::Empty => Error::Empty,
            Error::Timeout => Error::Timeout,
            Error::Disconnected => Error::Disconnected,
            other => panic!("not clonable here: {other:?}"),
        }
    }
}

// ---- the raw peer itself ---------------------------------------------------

#[test]
fn a_raw_producer_that_follows_the_protocol_is_received() {
    // Proves the hostile mapping sees the same memory as the honest end.
    let (mut rx, raw) = honest_receiver(1);
    let cap = raw.capacity;
    assert_eq!(rx.capacity() as u64, cap);
    for i in 0..10 {
        raw.put(i, 1000 + i);
    }
    raw.write_index().store(10, Ordering::Release);
    let mut got = vec![0u64; 16];
    assert_eq!(rx.try_recv_slice(&mut got), Ok(10));
    assert_eq!(got[..10], (1000..1010).collect::<Vec<_>>());
    assert_eq!(raw.read_index().load(Ordering::Acquire), 10);
    // Across the wrap, in one slice.
    raw.read_index().store(0, Ordering::Relaxed);
    for i in 10..cap + 5 {
        raw.put(i, 1000 + i);
    }
    raw.write_index().store(cap + 5, Ordering::Release);
    let n = rx
        .try_recv_with(|items| {
            assert_eq!(items.len() as u64, cap - 5);
            assert!(items.iter().zip(10..).all(|(&v, i)| v == 1000 + i));
            items.len()
        })
        .unwrap();
    assert_eq!(n as u64, cap - 5);
}

#[test]
fn a_raw_consumer_that_follows_the_protocol_frees_space() {
    let (mut tx, raw) = honest_sender(1);
    let cap = raw.capacity;
    for i in 0..cap {
        tx.try_send(i).unwrap();
    }
    assert_eq!(tx.try_send(0), Err(Error::Full));
    assert_eq!(raw.write_index().load(Ordering::Acquire), cap);
    raw.read_index().store(7, Ordering::Release);
    assert_eq!(tx.len(), cap as usize - 7);
    let lent = tx.try_send_with(|slots| slots.len()).unwrap();
    assert_eq!(lent, 7);
}

// ---- the consumer's index, seen by an honest sender ------------------------

#[test]
fn a_read_index_beyond_the_write_index_is_sticky_corruption_for_the_sender() {
    let (mut tx, raw) = honest_sender(1);
    let cap = raw.capacity;
    for i in 0..cap {
        tx.try_send(i).unwrap();
    }
    raw.read_index().store(cap + 5, Ordering::Release);
    let expected = Corruption::IndexOutOfRange {
        write: cap,
        read: cap + 5,
        capacity: cap,
    };
    assert_eq!(tx.try_send(0), Err(Error::Corrupted(expected)));
    // Repairing the index does not repair the ring.
    raw.read_index().store(cap, Ordering::Release);
    assert_sender_stuck(&mut tx, expected);
}

#[test]
fn a_read_index_beyond_the_write_index_is_seen_by_a_closure_call_at_once() {
    let (mut tx, raw) = honest_sender(1);
    tx.try_send_slice(&[1, 2, 3]).unwrap();
    raw.read_index().store(4, Ordering::Release);
    let expected = Corruption::IndexOutOfRange {
        write: 3,
        read: 4,
        capacity: raw.capacity,
    };
    // The snapshot clamps it (nothing is in the ring) and records nothing;
    // the closure call, which reloads the index, reports it.
    assert_eq!(tx.len(), 0);
    assert_eq!(
        tx.try_send_with(never_fill),
        Err(Error::Corrupted(expected))
    );
    assert_sender_stuck(&mut tx, expected);
}

#[test]
fn a_read_index_that_goes_back_is_corruption_for_the_sender() {
    let (mut tx, raw) = honest_sender(1);
    tx.try_send_slice(&[0; 10]).unwrap();
    raw.read_index().store(8, Ordering::Release);
    // A closure call reloads the index (the cache shows less than all).
    assert_eq!(tx.try_send_with(|_| 0), Ok(0));
    raw.read_index().store(3, Ordering::Release);
    let expected = Corruption::IndexWentBack { before: 8, now: 3 };
    assert_eq!(
        tx.try_send_with(never_fill),
        Err(Error::Corrupted(expected))
    );
    assert_sender_stuck(&mut tx, expected);
}

#[test]
fn a_read_index_of_u64_max_is_corruption_for_the_sender() {
    let (mut tx, raw) = honest_sender(1);
    let cap = raw.capacity;
    tx.try_send_slice(&vec![0; cap as usize]).unwrap();
    raw.read_index().store(u64::MAX, Ordering::Release);
    let expected = Corruption::IndexOutOfRange {
        write: cap,
        read: u64::MAX,
        capacity: cap,
    };
    // Found when the ring is full and the sender must look.
    assert_eq!(tx.try_send(9), Err(Error::Corrupted(expected)));
    assert_sender_stuck(&mut tx, expected);
}

#[test]
fn a_sender_ignores_a_peer_overwriting_its_own_index() {
    // The sender never reads its own index back: scribbles on it change
    // nothing it believes, and its next publish overwrites them.
    let (mut tx, raw) = honest_sender(1);
    tx.try_send_slice(&[1, 2, 3]).unwrap();
    for scribble in [0, 2, 999_999, u64::MAX] {
        raw.write_index().store(scribble, Ordering::Release);
        assert_eq!(tx.len(), 3);
    }
    raw.read_index().store(3, Ordering::Release);
    assert_eq!(tx.len(), 0);
    tx.try_send(4).unwrap();
    assert_eq!(raw.write_index().load(Ordering::Acquire), 4);
}

// ---- the producer's index, seen by an honest receiver ----------------------

#[test]
fn a_write_index_more_than_capacity_ahead_is_sticky_corruption_for_the_receiver() {
    let (mut rx, raw) = honest_receiver(1);
    let cap = raw.capacity;
    raw.write_index().store(cap + 1, Ordering::Release);
    let expected = Corruption::IndexOutOfRange {
        write: cap + 1,
        read: 0,
        capacity: cap,
    };
    assert_eq!(
        rx.try_recv_with(never_consume),
        Err(Error::Corrupted(expected))
    );
    raw.write_index().store(5, Ordering::Release);
    assert_receiver_stuck(&mut rx, expected);
}

#[test]
fn a_write_index_exactly_capacity_ahead_is_a_full_ring() {
    // The boundary: `capacity` items ahead is legal, one more is not.
    let (mut rx, raw) = honest_receiver(1);
    let cap = raw.capacity;
    for i in 0..cap {
        raw.put(i, i * 3);
    }
    raw.write_index().store(cap, Ordering::Release);
    assert_eq!(rx.len(), cap as usize);
    assert!(rx.is_full());
    let n = rx
        .try_recv_with(|items| {
            assert_eq!(items.len() as u64, cap);
            assert!(items.iter().zip(0..).all(|(&v, i)| v == i * 3));
            1
        })
        .unwrap();
    assert_eq!(n, 1);
    raw.write_index().store(2 * cap + 1, Ordering::Release);
    // At most full by the snapshot; the closure call reloads and reports.
    assert_eq!(rx.len(), cap as usize);
    assert_eq!(
        rx.try_recv_with(never_consume),
        Err(Error::Corrupted(Corruption::IndexOutOfRange {
            write: 2 * cap + 1,
            read: 1,
            capacity: cap
        }))
    );
}

#[test]
fn a_write_index_that_goes_backwards_is_sticky_corruption_for_the_receiver() {
    let (mut rx, raw) = honest_receiver(1);
    for i in 0..10 {
        raw.put(i, i);
    }
    raw.write_index().store(10, Ordering::Release);
    let mut buf = [0u64; 10];
    assert_eq!(rx.try_recv_slice(&mut buf), Ok(10));
    raw.write_index().store(4, Ordering::Release);
    let expected = Corruption::IndexWentBack { before: 10, now: 4 };
    assert_eq!(rx.try_recv(), Err(Error::Corrupted(expected)));
    raw.write_index().store(10, Ordering::Release);
    assert_receiver_stuck(&mut rx, expected);
}

#[test]
fn a_write_index_going_back_behind_unread_items_is_caught_by_a_closure_call() {
    // Items already known to be published may still be lent from the
    // cache (a valid result); any fresh look at the index reports it.
    let (mut rx, raw) = honest_receiver(1);
    for i in 0..10 {
        raw.put(i, 100 + i);
    }
    raw.write_index().store(10, Ordering::Release);
    assert_eq!(rx.try_recv_with(|items| items.len().min(5)), Ok(5));
    raw.write_index().store(2, Ordering::Release);
    match rx.try_recv() {
        Ok(v) => assert_eq!(v, 105),
        Err(e) => assert_eq!(
            e,
            Error::Corrupted(Corruption::IndexWentBack { before: 10, now: 2 })
        ),
    }
    let expected = Corruption::IndexWentBack { before: 10, now: 2 };
    assert_eq!(
        rx.try_recv_with(never_consume),
        Err(Error::Corrupted(expected))
    );
    assert_receiver_stuck(&mut rx, expected);
}

#[test]
fn a_write_index_of_u64_max_is_corruption_for_the_receiver() {
    let (mut rx, raw) = honest_receiver(1);
    raw.write_index().store(u64::MAX, Ordering::Release);
    let expected = Corruption::IndexOutOfRange {
        write: u64::MAX,
        read: 0,
        capacity: raw.capacity,
    };
    assert_eq!(rx.try_recv(), Err(Error::Corrupted(expected)));
    assert_receiver_stuck(&mut rx, expected);
}

#[test]
fn a_receiver_ignores_a_peer_overwriting_its_own_index() {
    let (mut rx, raw) = honest_receiver(1);
    for i in 0..6 {
        raw.put(i, i);
    }
    raw.write_index().store(6, Ordering::Release);
    assert_eq!(rx.try_recv(), Ok(0));
    for scribble in [0, 5, 6, u64::MAX] {
        raw.read_index().store(scribble, Ordering::Release);
        assert_eq!(rx.len(), 5);
    }
    assert_eq!(rx.try_recv(), Ok(1));
    assert_eq!(raw.read_index().load(Ordering::Acquire), 2);
}

#[test]
fn waiting_calls_on_a_corrupted_ring_return_at_once() {
    // A full sender and an empty receiver, each corrupted: their waits
    // without a deadline must return the corruption, not sleep.
    let (mut tx, raw) = honest_sender(1);
    let cap = raw.capacity;
    tx.try_send_slice(&vec![0; cap as usize]).unwrap();
    raw.read_index().store(cap + 1, Ordering::Release);
    let expected = Error::Corrupted(Corruption::IndexOutOfRange {
        write: cap,
        read: cap + 1,
        capacity: cap,
    });
    let (tx, e1, e2) = within_5s(move || {
        let e1 = tx.send(1);
        let e2 = tx.send_slice(&[1, 2, 3]);
        (tx, e1, e2)
    });
    assert_eq!(e1, Err(expected.clone_like()));
    assert_eq!(e2, Err(expected));
    drop((tx, raw));

    let (rx, raw) = honest_receiver(1);
    raw.write_index().store(u64::MAX, Ordering::Release);
    let expected = Error::Corrupted(Corruption::IndexOutOfRange {
        write: u64::MAX,
        read: 0,
        capacity: raw.capacity,
    });
    let (e1, e2) = within_5s(move || {
        let mut rx = rx;
        let mut buf = [0u64; 4];
        (rx.recv(), rx.recv_slice(&mut buf))
    });
    assert_eq!(e1, Err(expected.clone_like()));
    assert_eq!(e2, Err(expected));
}

// ---- indices found at open -------------------------------------------------

/// The fds of both ends of a ring whose indices the peer set before
/// hand-off, and the peer's view of it.
fn fds_with_indices(write: u64, read: u64) -> (Fds, Fds, Raw) {
    let (tx, rx) = channel::<u64>(1).unwrap();
    let tx_fds = tx.into_fds().unwrap();
    let rx_fds = rx.into_fds().unwrap();
    let raw = Raw::map(&tx_fds.memfd);
    raw.write_index().store(write, Ordering::Release);
    raw.read_index().store(read, Ordering::Release);
    (tx_fds, rx_fds, raw)
}

/// Opens both ends on a ring whose indices the peer set before hand-off.
fn open_with_indices(write: u64, read: u64) -> (Sender<u64>, Receiver<u64>, Raw) {
    let (tx_fds, rx_fds, raw) = fds_with_indices(write, read);
    (
        Sender::from_fds(tx_fds).unwrap(),
        Receiver::from_fds(rx_fds).unwrap(),
        raw,
    )
}

#[test]
fn indices_out_of_range_at_open_are_refused_by_both_ends() {
    for (write, read) in [
        (u64::MAX, u64::MAX - 3),
        (u64::MAX, u64::MAX),
        (INDEX_LIMIT + 1, INDEX_LIMIT),
        (3, 7),
        (600, 0),
    ] {
        let (tx_fds, rx_fds, raw) = fds_with_indices(write, read);
        let expected = Error::Rejected(Rejection::BadIndices {
            write,
            read,
            capacity: raw.capacity,
        });
        assert_eq!(Sender::<u64>::from_fds(tx_fds).unwrap_err(), expected);
        assert_eq!(Receiver::<u64>::from_fds(rx_fds).unwrap_err(), expected);
    }
}

#[test]
fn indices_reopened_just_below_the_limit_keep_working_up_to_it() {
    let (mut tx, mut rx, raw) = open_with_indices(0, 0);
    let cap = raw.capacity;
    drop((tx, rx));
    let start = INDEX_LIMIT - cap - 3;
    (tx, rx, _) = open_with_indices(start, start);
    assert_eq!(start % cap, cap - 3);
    // A run across the wrap, lent whole.
    tx.try_send_slice(&[10, 11, 12, 13, 14, 15, 16, 17])
        .unwrap();
    let n = rx
        .try_recv_with(|items| {
            assert_eq!(items, &[10, 11, 12, 13, 14, 15, 16, 17]);
            items.len()
        })
        .unwrap();
    assert_eq!(n, 8);
    // Up to exactly 2^62 items.
    let rest: Vec<u64> = (0..cap - 5).collect();
    tx.send_slice(&rest).unwrap();
    let mut buf = vec![0; rest.len()];
    let mut got = 0;
    while got < rest.len() {
        got += rx.try_recv_slice(&mut buf[got..]).unwrap();
    }
    assert_eq!(buf, rest);
    assert_eq!(tx.len(), 0);
    assert_eq!(rx.len(), 0);
    // One item more than 2^62 is never published: the sender reports its
    // own exhaustion, and the receiver sees nothing wrong.
    assert_eq!(
        tx.try_send(99),
        Err(Error::Exhausted(Exhaustion::Indices { index: INDEX_LIMIT }))
    );
    assert_eq!(rx.try_recv(), Err(Error::Empty));
}

// ---- the configuration line ------------------------------------------------

#[test]
fn scribbling_over_the_config_line_changes_nothing_for_open_ends() {
    let (mut tx, mut rx, raw) = honest_pair(1);
    let cap = tx.capacity();
    let fields_u64 = [(MAGIC, 0), (CAPACITY, 1), (DATA_OFFSET, 0), (TYPE_TAG, 7)];
    for (offset, value) in fields_u64 {
        raw.u64_at(offset).store(value, Ordering::Relaxed);
    }
    for (offset, value) in [(VERSION, 99), (ITEM_SIZE, 1), (ITEM_ALIGN, 1), (FLAGS, !0)] {
        raw.u32_at(offset).store(value, Ordering::Relaxed);
    }
    assert_eq!(tx.capacity(), cap);
    assert_eq!(rx.capacity(), cap);
    // Several laps, in uneven batches so that runs cross the wrap.
    let mut next = 0u64;
    let mut expect = 0u64;
    for _ in 0..7 {
        loop {
            match tx.try_send(next) {
                Ok(()) => next += 1,
                Err(Error::Full) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(tx.len(), cap);
        let take = (cap * 2 / 3) as u64;
        while expect < next - (cap as u64 - take) {
            let got = rx
                .try_recv_with(|items| {
                    assert!(items.len() <= cap);
                    for (i, &v) in items.iter().enumerate() {
                        assert_eq!(v, expect + i as u64);
                    }
                    items.len()
                })
                .unwrap();
            expect += got as u64;
        }
        // Scribble again between laps, with other absurd values.
        raw.u64_at(CAPACITY).store(u64::MAX, Ordering::Relaxed);
        raw.u32_at(ITEM_SIZE).store(u32::MAX, Ordering::Relaxed);
    }
    // Whoever opens the memfd next sees the scribbles, and refuses them.
    let fds = tx.into_fds().unwrap();
    assert_eq!(
        Sender::<u64>::from_fds(fds).err(),
        Some(Error::Rejected(Rejection::BadMagic { found: 0 }))
    );
}

#[test]
fn a_scribbled_capacity_is_refused_when_reopened() {
    let (tx, _rx, raw) = honest_pair(1);
    raw.u64_at(CAPACITY)
        .store(raw.capacity * 2, Ordering::Relaxed);
    let page = rustix::param::page_size() as u64;
    assert_eq!(
        Sender::<u64>::from_fds(tx.into_fds().unwrap()).err(),
        Some(Error::Rejected(Rejection::SizeMismatch {
            expected: page + 16 * raw.capacity,
            found: page + 8 * raw.capacity
        }))
    );
}

#[test]
fn a_peer_punching_holes_in_the_memfd_causes_corruption_not_a_fault() {
    // Seals keep the size; they do not stop FALLOC_FL_PUNCH_HOLE, which
    // frees pages so that they read back as zeros. Both ends keep running
    // on memory that is still mapped and backed: no SIGBUS, and the index
    // that dropped to zero is reported.
    let (mut tx, mut rx, raw) = honest_pair(1);
    let cap = tx.capacity() as u64;
    let items: Vec<u64> = (1..=cap).collect();
    tx.send_slice(&items).unwrap();
    let mut buf = vec![0; 10];
    assert_eq!(rx.try_recv_slice(&mut buf), Ok(10));
    tx.try_send_slice(&[0; 10]).unwrap();
    let len = raw.len as u64;
    rustix::fs::fallocate(
        &raw.memfd,
        rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
        0,
        len,
    )
    .unwrap();
    assert_eq!(raw.write_index().load(Ordering::Acquire), 0);
    assert_eq!(
        tx.try_send_with(never_fill),
        Err(Error::Corrupted(Corruption::IndexWentBack {
            before: 10,
            now: 0
        }))
    );
    // The receiver's closure call reloads the write index and sees it go
    // back: nothing is lent.
    let lent = rx.try_recv_with(|items| items.len());
    assert_eq!(
        lent,
        Err(Error::Corrupted(Corruption::IndexWentBack {
            before: cap,
            now: 0
        }))
    );
    assert_eq!(
        rx.try_recv(),
        Err(Error::Corrupted(Corruption::IndexWentBack {
            before: cap,
            now: 0
        }))
    );
}

// ---- the armed words -------------------------------------------------------

#[test]
fn armed_words_set_by_the_peer_cost_wake_ups_and_nothing_else() {
    let (mut tx, mut rx, raw) = honest_pair(1);
    let cap = tx.capacity() as u64;
    let mut expect = 0;
    for i in 0..3 * cap {
        let value = if i % 2 == 0 { 1 } else { u32::MAX };
        raw.u32_at(PRODUCER_ARMED).store(value, Ordering::Relaxed);
        raw.u32_at(CONSUMER_ARMED).store(value, Ordering::Relaxed);
        tx.try_send(i).unwrap();
        if i % 3 == 2 {
            while let Ok(v) = rx.try_recv() {
                assert_eq!(v, expect);
                expect += 1;
            }
        }
    }
    while let Ok(v) = rx.try_recv() {
        assert_eq!(v, expect);
        expect += 1;
    }
    assert_eq!(expect, 3 * cap);
    assert!(tx.stats().wakeups > 0);
    assert!(rx.stats().wakeups > 0);
    // Spurious wake-ups left on the sockets make a wait return early and
    // look again; they never invent items or space.
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    );
    tx.send_slice(&vec![0; cap as usize]).unwrap();
    assert_eq!(
        tx.send_timeout(0, Duration::from_millis(20)),
        Err(Error::Timeout)
    );
}

/// Sets its flag when dropped, so that a helper thread stops even if the
/// code it runs alongside panics (a scope would otherwise wait for it
/// forever and turn a failure into a hang).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `f` with a thread that keeps clearing both armed words.
fn while_clearing_armed_words<R>(raw: &Raw, f: impl FnOnce() -> R) -> R {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                raw.u32_at(PRODUCER_ARMED).store(0, Ordering::Relaxed);
                raw.u32_at(CONSUMER_ARMED).store(0, Ordering::Relaxed);
                std::hint::spin_loop();
            }
        });
        f()
    })
}

#[test]
fn a_peer_clearing_the_armed_words_cannot_make_a_timed_wait_hang() {
    let (mut tx, mut rx, raw) = honest_pair(1);
    let cap = tx.capacity();
    let timeout = Duration::from_millis(100);
    while_clearing_armed_words(&raw, || {
        // Nothing to receive, no space to send: each wait ends at its
        // deadline, the wake-up protocol sabotaged or not.
        let start = Instant::now();
        assert_eq!(rx.recv_timeout(timeout), Err(Error::Timeout));
        tx.send_slice(&vec![7; cap]).unwrap();
        assert_eq!(tx.send_timeout(0, timeout), Err(Error::Timeout));
        assert!(start.elapsed() < Duration::from_secs(5));
    });
    // A wake-up the peer suppressed is late, never lost: the receiver looks
    // once more at its deadline and finds the item.
    let mut buf = vec![0; cap];
    assert_eq!(rx.try_recv_slice(&mut buf), Ok(cap));
    let (mut tx2, mut rx2, raw2) = honest_pair(1);
    let got = while_clearing_armed_words(&raw2, || {
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                tx2.send(42).unwrap();
            });
            rx2.recv_timeout(Duration::from_secs(1))
        })
    });
    assert_eq!(got, Ok(42));
    drop(tx);
}

// ---- the closed words ------------------------------------------------------

/// Runs `f` on another thread and fails if it does not finish in 5 s.
fn within_5s<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (done, wait) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    match wait.recv_timeout(Duration::from_secs(5)) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("a blocking call hung"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the checked calls panicked"),
    }
}

#[test]
fn a_forged_producer_closed_word_disconnects_only_after_the_items() {
    let (mut tx, mut rx, raw) = honest_pair(1);
    tx.try_send_slice(&[1, 2, 3]).unwrap();
    raw.u32_at(CLOSED_PRODUCER).store(1, Ordering::Release);
    assert_eq!(rx.try_recv(), Ok(1));
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(2));
    assert_eq!(rx.recv(), Ok(3));
    assert_eq!(rx.try_recv(), Err(Error::Disconnected));
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)),
        Err(Error::Disconnected)
    );
    let mut rx = within_5s(move || {
        assert_eq!(rx.recv(), Err(Error::Disconnected));
        rx
    });
    // The peer takes it back: the receiver reports what it finds, an empty
    // ring or a closed one, and never anything else.
    raw.u32_at(CLOSED_PRODUCER).store(0, Ordering::Release);
    let r = rx.try_recv();
    assert!(
        matches!(r, Err(Error::Empty | Error::Disconnected)),
        "{r:?}"
    );
    tx.try_send(4).unwrap();
    assert_eq!(rx.try_recv(), Ok(4));
}

#[test]
fn a_forged_consumer_closed_word_disconnects_the_sender_at_once() {
    let (mut tx, _rx, raw) = honest_pair(1);
    tx.try_send(1).unwrap();
    raw.u32_at(CLOSED_CONSUMER)
        .store(0xdead_beef, Ordering::Release);
    assert_eq!(tx.try_send(2), Err(Error::Disconnected));
    assert_eq!(tx.try_send_with(never_fill), Err(Error::Disconnected));
    assert_eq!(
        tx.send_timeout(2, Duration::from_secs(5)),
        Err(Error::Disconnected)
    );
    let tx = within_5s(move || {
        assert_eq!(tx.send(2), Err(Error::Disconnected));
        assert_eq!(tx.send_slice(&[1, 2]), Err(Error::Disconnected));
        tx
    });
    drop(tx);
}

#[test]
fn a_closed_word_forged_while_the_receiver_sleeps_ends_its_wait() {
    // Without a wake-up the sleeper only notices at its deadline; with one
    // (the peer sends a byte on its end) it notices at once. Either way it
    // returns `Disconnected`, not a hang. The peer keeps its end open until
    // the end: a hang-up would disconnect the receiver by itself.
    let (tx, mut rx) = channel::<u64>(1).unwrap();
    let fds: Fds = tx.into_fds().unwrap();
    let raw = Arc::new(Raw::map(&fds.memfd));
    let peer = Arc::clone(&raw);
    let wake = fds.wake;
    let forger = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        peer.u32_at(CLOSED_PRODUCER).store(1, Ordering::Release);
        rustix::net::send(&wake, &[1], rustix::net::SendFlags::DONTWAIT).unwrap();
        wake
    });
    let start = Instant::now();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)),
        Err(Error::Disconnected)
    );
    assert!(start.elapsed() < Duration::from_secs(4));
    forger.join().unwrap();
}

// ---- the wake-up sockets ---------------------------------------------------

/// The flags of every send of the peer: it never blocks, and a closed
/// socket is `EPIPE`, not `SIGPIPE`.
const DONTWAIT: SendFlags = SendFlags::DONTWAIT.union(SendFlags::NOSIGNAL);

/// Sends on `fd` until its send buffer is full; returns the bytes sent.
fn fill(fd: &OwnedFd) -> usize {
    let chunk = [0x5a; 4096];
    let mut sent = 0;
    while let Ok(n) = rustix::net::send(fd, &chunk, DONTWAIT) {
        sent += n;
    }
    sent
}

fn make_blocking(fd: &OwnedFd) {
    let flags = rustix::fs::fcntl_getfl(fd).unwrap();
    rustix::fs::fcntl_setfl(fd, flags - OFlags::NONBLOCK).unwrap();
}

fn is_blocking(fd: &OwnedFd) -> bool {
    !rustix::fs::fcntl_getfl(fd)
        .unwrap()
        .contains(OFlags::NONBLOCK)
}

/// Whether `fd` is ready for `flags` now (a poll that does not wait).
fn ready(fd: impl AsFd, flags: PollFlags) -> bool {
    let mut fds = [PollFd::new(&fd, flags)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero)).unwrap() > 0
}

/// Runs `f` while another thread repeats `peer` (which must not block).
fn while_the_peer_repeats<R>(peer: impl Fn() + Sync, f: impl FnOnce() -> R) -> R {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                peer();
                std::thread::yield_now();
            }
        });
        f()
    })
}

/// Both ends honest, each opened from fds, and the ring's creator keeping
/// a dup of each end's socket (the same open file descriptions): the
/// sender's dup, then the receiver's.
fn pair_with_dups() -> (Sender<u64>, Receiver<u64>, Raw, OwnedFd, OwnedFd) {
    let (tx, rx) = channel::<u64>(1).unwrap();
    let (tx_fds, rx_fds) = (tx.into_fds().unwrap(), rx.into_fds().unwrap());
    let tx_dup = tx_fds.wake.try_clone().unwrap();
    let rx_dup = rx_fds.wake.try_clone().unwrap();
    let raw = Raw::map(&tx_fds.memfd);
    let tx = Sender::from_fds(tx_fds).unwrap();
    let rx = Receiver::from_fds(rx_fds).unwrap();
    (tx, rx, raw, tx_dup, rx_dup)
}

#[test]
fn a_wake_up_never_blocks_on_a_full_blocking_shared_socket() {
    // The ring's creator kept a dup of each end's socket: it fills each
    // end's send buffer from it (the other side never reads) and makes the
    // shared descriptions blocking, so that a plain `write` of a wake-up
    // would wait for ever. Then it arms the words: every publish, release
    // and close must wake the other side and return.
    let (mut tx, mut rx, raw, tx_dup, rx_dup) = pair_with_dups();
    for dup in [&tx_dup, &rx_dup] {
        assert!(fill(dup) > 0);
        make_blocking(dup);
        assert!(is_blocking(dup));
        assert!(!ready(dup, PollFlags::OUT), "a write here would block");
    }
    let (tx_dup, rx_dup) = within_5s(move || {
        raw.u32_at(CONSUMER_ARMED).store(1, Ordering::SeqCst);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.stats().wakeups, 1, "the armed receiver was not woken");
        raw.u32_at(PRODUCER_ARMED).store(1, Ordering::SeqCst);
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.stats().wakeups, 1, "the armed sender was not woken");
        // The calls that may wait, too (they have no reason to).
        raw.u32_at(CONSUMER_ARMED).store(1, Ordering::SeqCst);
        assert_eq!(tx.send(2), Ok(()));
        raw.u32_at(PRODUCER_ARMED).store(1, Ordering::SeqCst);
        assert_eq!(rx.recv(), Ok(2));
        assert_eq!((tx.stats().wakeups, rx.stats().wakeups), (2, 2));
        // Closing wakes an armed peer as well.
        raw.u32_at(CONSUMER_ARMED).store(1, Ordering::SeqCst);
        drop(tx);
        raw.u32_at(PRODUCER_ARMED).store(1, Ordering::SeqCst);
        drop(rx);
        (tx_dup, rx_dup)
    });
    // The honest ends never touched the flags they share with the creator.
    assert!(is_blocking(&tx_dup) && is_blocking(&rx_dup));
}

#[test]
fn a_blocking_shared_socket_cannot_block_a_drain() {
    // The receiver's socket made blocking by the creator's dup: draining
    // it (in `prepare_wait`, and after each sleep) reads until it would
    // block, which a plain `read` would do for ever.
    let (tx, rx) = channel::<u64>(1).unwrap();
    let fds = rx.into_fds().unwrap();
    let dup = fds.wake.try_clone().unwrap();
    let mut rx = Receiver::<u64>::from_fds(fds).unwrap();
    make_blocking(&dup);
    let peer = tx.into_fds().unwrap().wake;
    let (rx, peer) = within_5s(move || {
        assert_eq!(rx.prepare_wait(), Ok(true));
        // A spurious wake-up: one byte, then nothing to read.
        rustix::net::send(&peer, &[1], DONTWAIT).unwrap();
        assert_eq!(rx.prepare_wait(), Ok(true));
        rustix::net::send(&peer, &[1, 2, 3], DONTWAIT).unwrap();
        let start = Instant::now();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(50)),
            Err(Error::Timeout)
        );
        assert!(start.elapsed() >= Duration::from_millis(50));
        (rx, peer)
    });
    assert!(is_blocking(&dup));
    drop((rx, peer));
}

#[test]
fn a_flooding_peer_cannot_keep_a_wait_past_its_deadline_or_hide_progress() {
    // The peer floods the receiver's socket for as long as the receiver
    // waits: every sleep ends at once, with a bounded drain, and the
    // receiver looks at the ring again. A timed wait still ends at its
    // deadline, an empty ring still reads as empty, and an item still
    // arrives.
    let (mut rx, peer) = honest_receiver(1);
    let flood = || {
        let _ = rustix::net::send(&peer.wake, &[0x5a; 4096], DONTWAIT);
    };
    while_the_peer_repeats(flood, || {
        // The flood has begun: the receiver's socket (`AsFd`) is readable.
        let begun = Instant::now();
        while !ready(&rx, PollFlags::IN) {
            assert!(begun.elapsed() < Duration::from_secs(5), "no flood");
            std::thread::yield_now();
        }
        let timeout = Duration::from_millis(100);
        let start = Instant::now();
        assert_eq!(rx.recv_timeout(timeout), Err(Error::Timeout));
        let took = start.elapsed();
        assert!(took >= timeout, "gave up early: {took:?}");
        assert!(took < timeout + Duration::from_secs(2), "took {took:?}");
        assert!(rx.stats().sleeps > 1, "the flood woke it only once");
        assert_eq!(rx.try_recv(), Err(Error::Empty));
        let _ = rx.prepare_wait();
        assert_eq!(rx.try_recv(), Err(Error::Empty));
        peer.put(0, 42);
        peer.write_index().store(1, Ordering::Release);
        let start = Instant::now();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(42));
        assert!(start.elapsed() < Duration::from_secs(2));
    });

    // The same for a sender on a full ring.
    let (mut tx, peer) = honest_sender(1);
    tx.try_send_slice(&vec![0; peer.capacity as usize]).unwrap();
    let flood = || {
        let _ = rustix::net::send(&peer.wake, &[0x5a; 4096], DONTWAIT);
    };
    while_the_peer_repeats(flood, || {
        let timeout = Duration::from_millis(100);
        let start = Instant::now();
        assert_eq!(tx.send_timeout(1, timeout), Err(Error::Timeout));
        let took = start.elapsed();
        assert!(took >= timeout && took < timeout + Duration::from_secs(2));
        peer.read_index().store(1, Ordering::Release);
        assert_eq!(tx.send_timeout(1, Duration::from_secs(5)), Ok(()));
    });
}

#[test]
fn a_peer_stealing_wake_ups_through_a_dup_only_delays_them() {
    // A thief holds a dup of each end's socket and reads whatever arrives
    // on it, so the wake-ups meant for a sleeping end may never reach it:
    // the end then finds the progress when it looks again at its deadline.
    // Late, never lost, and never past the deadline by much.
    let (mut tx, mut rx, _raw, tx_dup, rx_dup) = pair_with_dups();
    let steal = || {
        let mut buf = [0u8; 64];
        for dup in [&tx_dup, &rx_dup] {
            let _ = rustix::net::recv(dup, &mut buf, RecvFlags::DONTWAIT);
        }
    };
    let cap = tx.capacity();
    let timeout = Duration::from_millis(300);
    let bound = timeout + Duration::from_secs(2);
    while_the_peer_repeats(steal, || {
        // Every wait below has a deadline: a stolen wake-up must not leave
        // an end asleep for good.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                tx.try_send(42).unwrap();
            });
            let start = Instant::now();
            assert_eq!(rx.recv_timeout(timeout), Ok(42));
            assert!(start.elapsed() < bound);
        });
        assert_eq!(tx.try_send_slice(&vec![7; cap]), Ok(cap));
        // The ring is full; the receiver frees a slot after 20 ms.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                assert_eq!(rx.try_recv(), Ok(7));
            });
            let start = Instant::now();
            assert_eq!(tx.send_timeout(8, timeout), Ok(()));
            assert!(start.elapsed() < bound);
        });
        // With nothing to find, a timed wait ends at its deadline.
        let start = Instant::now();
        assert_eq!(tx.send_timeout(9, timeout), Err(Error::Timeout));
        let took = start.elapsed();
        assert!(took >= timeout && took < bound, "took {took:?}");
    });
}

#[test]
fn a_peer_that_hangs_up_is_seen_by_a_wait_not_at_its_deadline() {
    // The peer keeps two copies of its end; the test also keeps a dup of
    // the receiver's own socket, which is no copy of the peer's end and
    // must not keep it alive.
    let (mut rx, peer) = honest_receiver(1);
    let Peer { raw, wake } = peer;
    let second = wake.try_clone().unwrap();
    raw.put(0, 10);
    raw.put(1, 11);
    raw.write_index().store(2, Ordering::Release);
    drop(wake);
    // One copy left: the peer is alive, an empty ring is a timeout.
    assert_eq!(rx.recv_timeout(Duration::from_millis(50)), Ok(10));
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(50)),
        Ok(11),
        "the items come first"
    );
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(50)),
        Err(Error::Timeout)
    );
    // The last copy: a hang-up, seen by a sleeping receiver at once.
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        drop(second);
    });
    let start = Instant::now();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Err(Error::Disconnected)
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    closer.join().unwrap();
    assert_eq!(rx.try_recv(), Err(Error::Disconnected));
    let _rx = within_5s(move || {
        assert_eq!(rx.recv(), Err(Error::Disconnected));
        rx
    });

    // A sender on a full ring, whose peer floods its socket and then only
    // shuts its end down for writing: it reads end-of-file once it drained
    // the flood, and that is a hang-up too.
    let (mut tx, peer) = honest_sender(1);
    tx.try_send_slice(&vec![0; peer.capacity as usize]).unwrap();
    assert!(fill(&peer.wake) > 0);
    rustix::net::shutdown(&peer.wake, Shutdown::Write).unwrap();
    let start = Instant::now();
    assert_eq!(
        tx.send_timeout(1, Duration::from_secs(10)),
        Err(Error::Disconnected)
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(tx.try_send(1), Err(Error::Disconnected));
    drop(peer);

    // A peer that shuts down its end for reading only is still there: the
    // sender's wake-ups fail with EPIPE, which costs nothing.
    let (mut tx, peer) = honest_sender(1);
    rustix::net::shutdown(&peer.wake, Shutdown::Read).unwrap();
    peer.u32_at(CONSUMER_ARMED).store(1, Ordering::SeqCst);
    assert_eq!(tx.try_send(1), Ok(()));
    assert_eq!(tx.stats().wakeups, 1);
    tx.try_send_slice(&vec![0; peer.capacity as usize]).unwrap();
    assert_eq!(
        tx.send_timeout(1, Duration::from_millis(50)),
        Err(Error::Timeout)
    );
}

#[test]
fn a_dup_of_the_honest_socket_can_fake_a_hang_up_and_nothing_worse() {
    // Shutting the receiver's socket down for reading through a dup makes
    // it read end-of-file: the receiver takes the peer for gone. That is
    // no more than the peer could do by closing its end; the items come
    // first all the same.
    let (tx, rx) = channel::<u64>(1).unwrap();
    let fds = rx.into_fds().unwrap();
    let dup = fds.wake.try_clone().unwrap();
    let mut rx = Receiver::<u64>::from_fds(fds).unwrap();
    let mut tx = tx;
    tx.send_slice(&[1, 2]).unwrap();
    rustix::net::shutdown(&dup, Shutdown::Read).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(1));
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(2));
    let start = Instant::now();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Err(Error::Disconnected)
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    // The sender is not fooled: its socket did not hang up, and the
    // receiver is there until it closes.
    assert_eq!(tx.send_timeout(3, Duration::from_secs(5)), Ok(()));
    drop(rx);
    assert_eq!(tx.try_send(4), Err(Error::Disconnected));
}

// ---- random hostility ------------------------------------------------------

/// A value for the peer to store into an index, relative to the honest
/// side's own index so that valid, borderline and wild values all occur.
#[derive(Debug, Clone)]
enum Forge {
    /// A legal value: within `capacity` of the honest index, on the legal
    /// side (it may still go backwards).
    Legal(u64),
    /// Legal, and ahead of what the peer stored last (honest progress).
    Forward(u64),
    /// Just past the legal range, on either side.
    Past(u64),
    /// On the wrong side of the honest index.
    Wrong(u64),
    Max(u64),
    NearLimit(u64),
    Any(u64),
}

fn forge() -> impl Strategy<Value = Forge> {
    prop_oneof![
        2 => any::<u64>().prop_map(Forge::Legal),
        8 => (0..64u64).prop_map(Forge::Forward),
        1 => (0..4u64).prop_map(Forge::Past),
        1 => (0..1024u64).prop_map(Forge::Wrong),
        1 => (0..4u64).prop_map(Forge::Max),
        1 => (0..4u64).prop_map(Forge::NearLimit),
        1 => any::<u64>().prop_map(Forge::Any),
    ]
}

#[derive(Debug, Clone)]
enum SenderOp {
    /// `try_send_with` writing up to `k` slots; the peer may forge the read
    /// index from inside the closure.
    SendWith(usize, Option<Forge>),
    Send,
    SendSlice(usize),
    Len,
    /// The peer forges the read index.
    Forge(Forge),
    /// The peer overwrites the sender's own index.
    Scribble(u64),
}

fn sender_op() -> impl Strategy<Value = SenderOp> {
    prop_oneof![
        4 => (0..1200usize, proptest::option::weighted(0.2, forge()))
            .prop_map(|(k, f)| SenderOp::SendWith(k, f)),
        2 => Just(SenderOp::Send),
        2 => (0..1200usize).prop_map(SenderOp::SendSlice),
        2 => Just(SenderOp::Len),
        4 => forge().prop_map(SenderOp::Forge),
        1 => any::<u64>().prop_map(SenderOp::Scribble),
    ]
}

/// The peer's stores into the index it owns, as the honest end can know
/// them: everything it ever stored, and the current value.
struct Forged {
    history: BTreeSet<u64>,
    current: u64,
}

impl Forged {
    fn new() -> Forged {
        Forged {
            history: BTreeSet::from([0]),
            current: 0,
        }
    }

    fn store(&mut self, index: &AtomicU64, value: u64) {
        index.store(value, Ordering::Release);
        self.history.insert(value);
        self.current = value;
    }
}

/// Resolves a forged read index against the sender's `write`.
fn forge_read(f: &Forge, write: u64, last: u64, cap: u64) -> u64 {
    match *f {
        Forge::Legal(k) => write.saturating_sub(k % (cap + 1)),
        Forge::Forward(k) => last.saturating_add(k).min(write),
        Forge::Past(k) => write.wrapping_sub(cap + 1 + k),
        Forge::Wrong(k) => write.wrapping_add(1 + k),
        Forge::Max(k) => u64::MAX - k,
        Forge::NearLimit(k) => INDEX_LIMIT - 2 + k,
        Forge::Any(v) => v,
    }
}

/// Resolves a forged write index against the receiver's `read`.
fn forge_write(f: &Forge, read: u64, last: u64, cap: u64) -> u64 {
    match *f {
        Forge::Legal(k) => read + k % (cap + 1),
        Forge::Forward(k) => last.saturating_add(k).clamp(read, read + cap),
        Forge::Past(k) => read + cap + 1 + k,
        Forge::Wrong(k) => read.wrapping_sub(1 + k),
        Forge::Max(k) => u64::MAX - k,
        Forge::NearLimit(k) => INDEX_LIMIT - 2 + k,
        Forge::Any(v) => v,
    }
}

/// Checks that a reported corruption names what the peer really did; the
/// honest index is `mine`, the peer's the current forged value. `producer`
/// says which side the honest end is.
fn check_corruption(c: Corruption, producer: bool, mine: u64, forged: &Forged, cap: u64) {
    match c {
        Corruption::IndexOutOfRange {
            write,
            read,
            capacity,
        } => {
            assert_eq!(capacity, cap);
            let (honest, peer) = if producer {
                (write, read)
            } else {
                (read, write)
            };
            assert_eq!(honest, mine, "{c:?}");
            assert_eq!(peer, forged.current, "{c:?}");
            let legal = read <= write && write - read <= cap && write <= INDEX_LIMIT;
            assert!(!legal, "a legal pair reported as corrupt: {c:?}");
        }
        Corruption::IndexWentBack { before, now } => {
            assert_eq!(now, forged.current, "{c:?}");
            assert!(forged.history.contains(&before), "{c:?}");
            assert!(now < before, "{c:?}");
        }
        other => panic!("unknown corruption {other:?}"),
    }
}

/// Whether the peer's current value is legal against the honest index.
fn legal_read(write: u64, read: u64, cap: u64) -> bool {
    read <= write && write - read <= cap && write <= INDEX_LIMIT
}

/// The honest sender's view, checked against every answer it gives.
struct SenderCheck {
    cap: u64,
    write: u64,
    forged: Forged,
    stuck: Option<Corruption>,
}

impl SenderCheck {
    /// Checks a lent run of `len` slots: within capacity, and exactly the
    /// free space implied by a read index the peer really stored.
    fn check_lent(&self, len: usize) {
        let len = len as u64;
        assert!(len >= 1 && len <= self.cap, "lent {len} of {}", self.cap);
        let implied = i128::from(self.write) + i128::from(len) - i128::from(self.cap);
        assert!(
            u64::try_from(implied).is_ok_and(|r| self.forged.history.contains(&r)),
            "lent {len} slots at write {}: no read index {implied} was stored",
            self.write
        );
    }

    /// Checks an error answer; returns nothing, records a corruption.
    fn check_err(&mut self, err: Error) {
        if let Some(stuck) = self.stuck {
            assert_eq!(err, Error::Corrupted(stuck), "not sticky");
            return;
        }
        match err {
            Error::Full => {
                assert!(
                    self.write.checked_sub(self.forged.current) == Some(self.cap),
                    "Full at write {} with read {}",
                    self.write,
                    self.forged.current
                );
            }
            Error::Corrupted(c) => {
                check_corruption(c, true, self.write, &self.forged, self.cap);
                self.stuck = Some(c);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn check_ok(&self) {
        assert!(self.stuck.is_none(), "a corrupted sender answered Ok");
    }
}

fn run_sender(cap_request: usize, ops: &[SenderOp]) {
    let (mut tx, raw) = honest_sender(cap_request);
    let mut check = SenderCheck {
        cap: raw.capacity,
        write: 0,
        forged: Forged::new(),
        stuck: None,
    };
    let cap = check.cap;
    let mut next = 0u64;
    let mut scribbled = false;
    for op in ops {
        match op {
            SenderOp::SendWith(k, during) => {
                let mut lent = None;
                let r = tx.try_send_with(|slots| {
                    check.check_lent(slots.len());
                    lent = Some(slots.len());
                    // Touch every slot lent: out of bounds would fault.
                    for slot in slots.iter_mut() {
                        slot.write(0xdead);
                    }
                    let n = (*k).min(slots.len());
                    for slot in &mut slots[..n] {
                        slot.write(next);
                        next += 1;
                    }
                    if let Some(f) = during {
                        let value = forge_read(f, check.write, check.forged.current, cap);
                        check.forged.store(raw.read_index(), value);
                    }
                    n
                });
                match r {
                    Ok(n) => {
                        check.check_ok();
                        assert_eq!(n, (*k).min(lent.unwrap()));
                        check.write += n as u64;
                        scribbled &= n == 0;
                    }
                    Err(e) => {
                        assert!(lent.is_none(), "lent slots, then failed");
                        check.check_err(e);
                    }
                }
            }
            SenderOp::Send => match tx.try_send(next) {
                Ok(()) => {
                    scribbled = false;
                    check.check_ok();
                    next += 1;
                    check.write += 1;
                }
                Err(e) => check.check_err(e),
            },
            SenderOp::SendSlice(n) => {
                let items: Vec<u64> = (next..next + *n as u64).collect();
                match tx.try_send_slice(&items) {
                    // Documented: an empty slice is `Ok(0)` without a look
                    // at the ring, even a corrupted one.
                    Ok(0) if *n == 0 => {}
                    Ok(sent) => {
                        check.check_ok();
                        assert!(sent <= *n);
                        if *n > 0 {
                            assert!(sent >= 1);
                        }
                        if sent < *n {
                            // Fewer than offered: `sent` is all it lent.
                            check.check_lent(sent);
                        }
                        next += sent as u64;
                        check.write += sent as u64;
                        scribbled &= sent == 0;
                    }
                    Err(e) => check.check_err(e),
                }
            }
            SenderOp::Len => {
                // A snapshot, never an error, recording nothing: the fill
                // level by a legal pair, else clamped to the capacity.
                let len = tx.len() as u64;
                if legal_read(check.write, check.forged.current, cap) {
                    assert_eq!(len, check.write - check.forged.current);
                } else {
                    assert!(len <= cap, "len {len} beyond the capacity {cap}");
                }
                assert_eq!(tx.slots() as u64, cap - len);
                assert_eq!(tx.is_full(), len == cap);
                assert_eq!(tx.is_empty(), len == 0);
            }
            SenderOp::Forge(f) => {
                let value = forge_read(f, check.write, check.forged.current, cap);
                check.forged.store(raw.read_index(), value);
            }
            SenderOp::Scribble(v) => {
                raw.write_index().store(*v, Ordering::Release);
                scribbled = true;
            }
        }
        // The sender's own index in shared memory is what it last published
        // (the scribbles never fed back into it), unless the peer scribbled
        // on it since.
        if !scribbled {
            assert_eq!(raw.write_index().load(Ordering::Acquire), check.write);
        }
    }
}

#[derive(Debug, Clone)]
enum ReceiverOp {
    RecvWith(usize, Option<Forge>),
    Recv,
    RecvSlice(usize),
    Len,
    Forge(Forge),
    /// The peer rewrites every slot with values derived from this seed.
    Rewrite(u64),
    Scribble(u64),
}

fn receiver_op() -> impl Strategy<Value = ReceiverOp> {
    prop_oneof![
        4 => (0..1200usize, proptest::option::weighted(0.2, forge()))
            .prop_map(|(k, f)| ReceiverOp::RecvWith(k, f)),
        2 => Just(ReceiverOp::Recv),
        2 => (0..1200usize).prop_map(ReceiverOp::RecvSlice),
        2 => Just(ReceiverOp::Len),
        5 => forge().prop_map(ReceiverOp::Forge),
        1 => any::<u64>().prop_map(ReceiverOp::Rewrite),
        1 => any::<u64>().prop_map(ReceiverOp::Scribble),
    ]
}

fn slot_value(seed: u64, slot: u64) -> u64 {
    seed.rotate_left(17) ^ slot.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

struct ReceiverCheck {
    cap: u64,
    read: u64,
    seed: u64,
    forged: Forged,
    stuck: Option<Corruption>,
}

impl ReceiverCheck {
    /// Checks a lent run: within capacity, exactly the items implied by a
    /// write index the peer really stored, and the values in its slots
    /// (across the wrap too).
    fn check_lent(&self, items: &[u64]) {
        let len = items.len() as u64;
        assert!(len >= 1 && len <= self.cap, "lent {len} of {}", self.cap);
        let implied = self.read.checked_add(len);
        assert!(
            implied.is_some_and(|w| self.forged.history.contains(&w)),
            "lent {len} items at read {}: no such write index was stored",
            self.read
        );
        for (i, &v) in items.iter().enumerate() {
            let slot = (self.read + i as u64) % self.cap;
            assert_eq!(v, slot_value(self.seed, slot), "item {i} of {len}");
        }
    }

    fn check_err(&mut self, err: Error) {
        if let Some(stuck) = self.stuck {
            assert_eq!(err, Error::Corrupted(stuck), "not sticky");
            return;
        }
        match err {
            Error::Empty => assert_eq!(self.forged.current, self.read, "Empty"),
            Error::Corrupted(c) => {
                check_corruption(c, false, self.read, &self.forged, self.cap);
                self.stuck = Some(c);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn check_ok(&self) {
        assert!(self.stuck.is_none(), "a corrupted receiver answered Ok");
    }
}

fn rewrite(raw: &Raw, seed: u64) {
    for slot in 0..raw.capacity {
        raw.put(slot, slot_value(seed, slot));
    }
}

fn run_receiver(cap_request: usize, ops: &[ReceiverOp]) {
    let (mut rx, raw) = honest_receiver(cap_request);
    let mut check = ReceiverCheck {
        cap: raw.capacity,
        read: 0,
        seed: 1,
        forged: Forged::new(),
        stuck: None,
    };
    let cap = check.cap;
    rewrite(&raw, check.seed);
    for op in ops {
        match op {
            ReceiverOp::RecvWith(k, during) => {
                let mut lent = None;
                let r = rx.try_recv_with(|items| {
                    check.check_lent(items);
                    lent = Some(items.len());
                    if let Some(f) = during {
                        let value = forge_write(f, check.read, check.forged.current, cap);
                        check.forged.store(raw.write_index(), value);
                    }
                    (*k).min(items.len())
                });
                match r {
                    Ok(n) => {
                        check.check_ok();
                        assert_eq!(n, (*k).min(lent.unwrap()));
                        check.read += n as u64;
                    }
                    Err(e) => {
                        assert!(lent.is_none(), "lent items, then failed");
                        check.check_err(e);
                    }
                }
            }
            ReceiverOp::Recv => match rx.try_recv() {
                Ok(v) => {
                    check.check_ok();
                    assert_eq!(v, slot_value(check.seed, check.read % cap));
                    check.read += 1;
                }
                Err(e) => check.check_err(e),
            },
            ReceiverOp::RecvSlice(n) => {
                let mut buf = vec![0u64; *n];
                match rx.try_recv_slice(&mut buf) {
                    Ok(0) if *n == 0 => {}
                    Ok(got) => {
                        check.check_ok();
                        assert!(got <= *n);
                        if *n > 0 {
                            assert!(got >= 1);
                            for (i, &v) in buf[..got].iter().enumerate() {
                                let slot = (check.read + i as u64) % cap;
                                assert_eq!(v, slot_value(check.seed, slot));
                            }
                        }
                        check.read += got as u64;
                    }
                    Err(e) => check.check_err(e),
                }
            }
            ReceiverOp::Len => {
                // As for the sender's.
                let len = rx.len() as u64;
                if legal_read(check.forged.current, check.read, cap) {
                    assert_eq!(len, check.forged.current - check.read);
                } else {
                    assert!(len <= cap, "len {len} beyond the capacity {cap}");
                }
                assert_eq!(rx.slots() as u64, len);
                assert_eq!(rx.is_full(), len == cap);
                assert_eq!(rx.is_empty(), len == 0);
            }
            ReceiverOp::Forge(f) => {
                let value = forge_write(f, check.read, check.forged.current, cap);
                check.forged.store(raw.write_index(), value);
            }
            ReceiverOp::Rewrite(seed) => {
                check.seed = *seed;
                rewrite(&raw, *seed);
            }
            ReceiverOp::Scribble(v) => raw.read_index().store(*v, Ordering::Release),
        }
    }
}

proptest! {
    // No regression file: this crate keeps its test inputs in the source.
    #![proptest_config(ProptestConfig {
        cases: 192,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_sender_facing_random_read_indices_answers_validly_or_corrupted(
        cap in prop_oneof![Just(1usize), Just(1500)],
        ops in proptest::collection::vec(sender_op(), 1..80),
    ) {
        run_sender(cap, &ops);
    }

    #[test]
    fn a_receiver_facing_random_write_indices_answers_validly_or_corrupted(
        cap in prop_oneof![Just(1usize), Just(1500)],
        ops in proptest::collection::vec(receiver_op(), 1..80),
    ) {
        run_receiver(cap, &ops);
    }
}
