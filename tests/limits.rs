//! Resource limits and exhaustion: what this end refuses, and how, when the
//! machine, this process's limits or the format cannot give what was asked
//! for. A capacity larger than the memory available, a peer's ring larger
//! than this end accepts, a frame too large to copy out, huge pages or
//! `mlock` refused, an index at the format's 2^62 limit, a spin of
//! `Duration::MAX`: each is an error naming what was asked for and what
//! there was, never a crash, a hang, or blame on the peer.
//!
//! What could crash (an abort on a failed allocation) runs in a child
//! process (this test binary, in a role), so that a regression kills the
//! child, not the test runner: the parent asserts that the child exited
//! normally and reported the error.

mod common;
#[path = "support/raw.rs"]
mod raw;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{env, spawn_bounded, start_watchdog, CHILD_ENV, HANG};
use fdring::{Builder, Error, Exhaustion, FrameReceiver, FrameSender, Receiver, Sender};
use raw::{Raw, INDEX_LIMIT};

/// The entry point of every child process: runs the role named in
/// `FDRING_TEST_CHILD`, or nothing when run as a plain (ignored) test.
#[test]
#[ignore = "child process entry point, spawned by the tests"]
fn child_entry() {
    let Some(role) = env(CHILD_ENV) else {
        return;
    };
    start_watchdog(Duration::from_secs(60));
    panic!("unknown child role {role}");
}

// ---- a spin of Duration::MAX -----------------------------------------------

#[test]
fn a_spin_of_duration_max_receives_without_overflowing_the_clock() {
    let (mut tx, mut rx) = Builder::new()
        .capacity(512)
        .spin(Duration::MAX)
        .build::<u64>()
        .unwrap();
    let sender = spawn_bounded("sender", move || {
        for i in 0..1000 {
            tx.send(i).unwrap();
        }
        tx
    });
    let receiver = spawn_bounded("receiver", move || {
        for i in 0..1000 {
            assert_eq!(rx.recv(), Ok(i));
        }
        rx
    });
    let tx = sender.join_within(HANG);
    let mut rx = receiver.join_within(HANG);
    // The `_timeout` calls spin until their timeout, then report it.
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    );
    drop(tx);
    assert_eq!(rx.recv(), Err(Error::Disconnected));
}

#[test]
fn a_spin_of_duration_max_sends_into_a_full_ring_until_there_is_room() {
    let (mut tx, mut rx) = Builder::new()
        .capacity(512)
        .spin(Duration::MAX)
        .build::<u64>()
        .unwrap();
    let count = 4 * tx.capacity() as u64;
    let sender = spawn_bounded("sender", move || {
        for i in 0..count {
            tx.send(i).unwrap();
        }
    });
    for i in 0..count {
        assert_eq!(rx.recv(), Ok(i));
    }
    sender.join_within(HANG);
}

#[test]
fn a_spin_of_duration_max_notices_a_peer_that_died_without_closing() {
    let (tx, mut rx) = Builder::new()
        .capacity(512)
        .spin(Duration::MAX)
        .build::<u64>()
        .unwrap();
    // The sender's fds closed without its closed word set, as when its
    // process is killed: only the socket's hang-up tells.
    drop(tx.into_fds().unwrap());
    let receiver = spawn_bounded("receiver", move || rx.recv());
    assert_eq!(receiver.join_within(HANG), Err(Error::Disconnected));

    let (mut tx, rx) = Builder::new()
        .capacity(512)
        .spin(Duration::MAX)
        .build::<u64>()
        .unwrap();
    for _ in 0..tx.capacity() {
        tx.try_send(0).unwrap();
    }
    drop(rx.into_fds().unwrap());
    let sender = spawn_bounded("sender", move || tx.send(1));
    assert_eq!(sender.join_within(HANG), Err(Error::Disconnected));
}

// ---- the 2^62 index limit --------------------------------------------------

/// Opens both ends of a fresh ring of `T` whose two indices were set to
/// `2^62 - left` before the ends were opened (as after a very long stream
/// handed from process to process), with the sender's mapping of the memfd.
fn near_the_limit<T: bytemuck::Pod>(capacity: usize, left: u64) -> (Sender<T>, Receiver<T>, Raw) {
    let (tx, rx) = fdring::channel::<T>(capacity).unwrap();
    let (tx_fds, rx_fds) = (tx.into_fds().unwrap(), rx.into_fds().unwrap());
    let raw = Raw::map(&tx_fds.memfd);
    raw.write_index()
        .store(INDEX_LIMIT - left, Ordering::Release);
    raw.read_index()
        .store(INDEX_LIMIT - left, Ordering::Release);
    (
        Sender::from_fds(tx_fds).unwrap(),
        Receiver::from_fds(rx_fds).unwrap(),
        raw,
    )
}

/// The error of a sender whose index is `index`, too near the limit.
fn exhausted_at(index: u64) -> Error {
    Error::Exhausted(Exhaustion::Indices { index })
}

/// Receives everything published; asserts it is `expected`, and that the
/// receiver then finds the ring empty (not corrupted).
fn assert_received<T: bytemuck::Pod + PartialEq + std::fmt::Debug>(
    rx: &mut Receiver<T>,
    expected: &[T],
) {
    let mut got = Vec::new();
    while let Ok(n) = rx.try_recv_with(|items| {
        got.extend_from_slice(items);
        items.len()
    }) {
        assert!(n > 0);
    }
    assert_eq!(got, expected);
    assert_eq!(rx.try_recv(), Err(Error::Empty));
}

#[test]
fn send_stops_at_the_index_limit_with_its_own_exhaustion() {
    let (mut tx, mut rx, raw) = near_the_limit::<u64>(512, 10);
    for i in 0..10 {
        tx.send(i).unwrap();
    }
    assert_eq!(raw.write_index().load(Ordering::Acquire), INDEX_LIMIT);
    // Blocking, non-blocking and timed sends all refuse at once, with room
    // in the ring: the limit is this end's, not the receiver's doing.
    assert_eq!(tx.send(10), Err(exhausted_at(INDEX_LIMIT)));
    assert_eq!(tx.try_send(10), Err(exhausted_at(INDEX_LIMIT)));
    assert_eq!(
        tx.send_timeout(10, Duration::from_secs(60)),
        Err(exhausted_at(INDEX_LIMIT))
    );
    assert_eq!(raw.write_index().load(Ordering::Acquire), INDEX_LIMIT);
    assert_received(&mut rx, &(0..10).collect::<Vec<u64>>());
    let message = tx.send(10).unwrap_err().to_string();
    assert!(
        message.contains("2^62") && !message.contains("peer"),
        "{message}"
    );
    // The receiver, at the limit too, still learns that the sender left.
    drop(tx);
    assert_eq!(rx.recv(), Err(Error::Disconnected));
}

#[test]
fn send_with_is_lent_only_the_slots_left_before_the_index_limit() {
    let (mut tx, mut rx, raw) = near_the_limit::<u64>(512, 10);
    // The ring has 512 free slots, but only 10 may be published, and they
    // cross the wrap (2^62 - 10 is slot 502).
    let lent = tx
        .send_with(|slots| {
            for (i, slot) in slots.iter_mut().enumerate() {
                slot.write(i as u64);
            }
            slots.len()
        })
        .unwrap();
    assert_eq!(lent, 10);
    assert_eq!(raw.write_index().load(Ordering::Acquire), INDEX_LIMIT);
    let never_called = |_: &mut [std::mem::MaybeUninit<u64>]| -> usize {
        panic!("lent a slot past the index limit")
    };
    assert_eq!(tx.send_with(never_called), Err(exhausted_at(INDEX_LIMIT)));
    assert_eq!(
        tx.try_send_with(never_called),
        Err(exhausted_at(INDEX_LIMIT))
    );
    assert_received(&mut rx, &(0..10).collect::<Vec<u64>>());
}

#[test]
fn try_send_slice_sends_only_up_to_the_index_limit() {
    let (mut tx, mut rx, raw) = near_the_limit::<u64>(512, 10);
    let items: Vec<u64> = (100..120).collect();
    assert_eq!(tx.try_send_slice(&items[..4]), Ok(4));
    assert_eq!(tx.try_send_slice(&items[4..]), Ok(6));
    assert_eq!(
        tx.try_send_slice(&items[10..]),
        Err(exhausted_at(INDEX_LIMIT))
    );
    // The blocking slice call sends nothing more and does not wait.
    assert_eq!(tx.send_slice(&items[10..]), Err(exhausted_at(INDEX_LIMIT)));
    assert_eq!(raw.write_index().load(Ordering::Acquire), INDEX_LIMIT);
    assert_received(&mut rx, &items[..10]);
}

#[test]
fn io_write_writes_only_up_to_the_index_limit_then_fails() {
    use std::io::Write;
    let (mut tx, mut rx, raw) = near_the_limit::<u8>(4096, 10);
    assert_eq!(tx.write(b"0123456789abcdef").unwrap(), 10);
    let refused = tx.write(b"abcdef").unwrap_err();
    assert_eq!(Error::from(refused), exhausted_at(INDEX_LIMIT));
    let refused = tx.write_all(b"abcdef").unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::Other);
    assert_eq!(raw.write_index().load(Ordering::Acquire), INDEX_LIMIT);
    assert_received(&mut rx, b"0123456789");
}

#[test]
fn frames_are_sent_only_while_they_fit_before_the_index_limit() {
    // 104 bytes left: a multiple of 8, so records start aligned.
    let (tx, rx, raw) = near_the_limit::<u8>(4096, 104);
    let (mut tx, mut rx) = (FrameSender::new(tx), FrameReceiver::new(rx));
    let fill = |byte: u8| {
        move |frame: &mut fdring::FrameMut<'_>| {
            frame.fill(byte);
            frame.set_tag(u64::from(byte));
            frame.len()
        }
    };
    // A 40-byte frame is a 64-byte record: it fits, and a second one does
    // not (40 bytes left), however much room the ring has.
    assert_eq!(tx.send_frame_with(40, fill(1)), Ok(40));
    // The blocking call does not wait for room that can never come.
    let mut tx = spawn_bounded("sender", move || {
        assert_eq!(
            tx.send_frame_with(40, fill(2)),
            Err(exhausted_at(INDEX_LIMIT - 40))
        );
        tx
    })
    .join_within(HANG);
    assert_eq!(
        tx.try_send_frame_with(40, fill(2)),
        Err(exhausted_at(INDEX_LIMIT - 40))
    );
    assert_eq!(
        tx.offer_frame_with(40, fill(2)),
        Err(exhausted_at(INDEX_LIMIT - 40))
    );
    // A 16-byte frame (a 40-byte record) still fits, exactly.
    assert_eq!(tx.send_frame_with(16, fill(3)), Ok(16));
    assert_eq!(raw.write_index().load(Ordering::Acquire), INDEX_LIMIT);
    assert_eq!(
        tx.send_frame_with(0, fill(4)),
        Err(exhausted_at(INDEX_LIMIT))
    );
    assert_eq!(tx.stats().dropped, 0, "an exhausted ring drops nothing");
    let mut buf = Vec::new();
    assert_eq!(rx.try_recv_frame(&mut buf), Ok(1));
    assert_eq!(buf, [1; 40]);
    assert_eq!(rx.try_recv_frame(&mut buf), Ok(3));
    assert_eq!(buf, [3; 16]);
    assert_eq!(rx.try_recv_frame(&mut buf), Err(Error::Empty));
}
