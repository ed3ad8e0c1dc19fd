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

use std::time::Duration;

use common::{env, spawn_bounded, start_watchdog, CHILD_ENV, HANG};
use fdring::{Builder, Error};

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
