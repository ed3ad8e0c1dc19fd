//! mio: readiness after "would block" in edge-triggered cycles, a sender
//! on a full ring, a peer's close and a killed child delivered as events,
//! the watched liveness registered too, and moving an end between polls.

use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::common::{
    check_seq, fields, read_words, seed, ChildProc, Rng, HANG, NOTICE, RING_ENV, SIGKILL,
    STREAM_RECV, STREAM_SEND,
};
use crate::peers::{
    edge_cycles, finish_echo_go, spawn_echo_go, spawn_with_receiver, spawn_with_sender, COUNT_ENV,
};
use crate::runtimes::{wait_for, RING};
use fdring::mio::EventLoopExt;
use fdring::{channel, handoff, Error, Liveness, Receiver};
use mio::{Events, Interest, Poll, Token};

/// 10^6 cycles of: the ring is empty, `try_or_arm` says "would block"
/// (armed), only then does the child publish, and the edge-triggered poll
/// must report it. A missed edge is a poll that times out.
#[test]
fn mio_edge_triggered_readiness_after_would_block_is_never_missed() {
    let cycles = edge_cycles();
    let (mut rx, mut go, child) = spawn_echo_go();
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut rx, RING, Interest::READABLE)
        .expect("register");
    let mut events = Events::with_capacity(4);
    let (mut extra_polls, mut spurious) = (0u64, 0u64);
    let started = Instant::now();
    for i in 0..cycles {
        match rx.try_or_arm(Receiver::try_recv) {
            Err(Error::Empty) => {}
            other => panic!("cycle {i}: the ring must be empty and armed, got {other:?}"),
        }
        go.try_send(i).expect("go");
        loop {
            extra_polls += u64::from(
                wait_for(&mut poll, &mut events, RING, NOTICE, &format!("cycle {i}")) - 1,
            );
            match rx.try_or_arm(Receiver::try_recv) {
                Ok(item) => {
                    assert_eq!(item, i, "cycle {i}");
                    break;
                }
                // An event with nothing to take: armed again, wait again.
                Err(Error::Empty) => spurious += 1,
                Err(e) => panic!("cycle {i}: {e}"),
            }
        }
    }
    eprintln!(
        "{cycles} edge-triggered cycles in {:?}: {spurious} spurious events, {extra_polls} polls without our event",
        started.elapsed()
    );
    assert!(
        spurious <= cycles / 1000,
        "{spurious} spurious events in {cycles} cycles"
    );
    // Each item is taken only after its event, which the child sends after
    // taking our armed word: every one of its publishes found us armed.
    finish_echo_go(go, child, cycles, cycles);
}

/// A sender registered in mio: the ring is full ("would block" armed),
/// the child consumes slowly, and every wait ends with an event; all items
/// arrive, in order (the child checks).
#[test]
fn mio_sender_edge_triggered_stream_to_a_slow_child() {
    let total = 200_000;
    let (mut tx, child) = spawn_with_receiver("recv_count_slowly", |command| {
        command.env(COUNT_ENV, total.to_string());
    });
    let mut child = child;
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut tx, RING, Interest::WRITABLE)
        .expect("register");
    let mut events = Events::with_capacity(4);
    let (mut next, mut waits) = (0u64, 0u64);
    let mut rng = Rng::new(seed());
    while next < total {
        let sent = tx.try_or_arm(|tx| {
            tx.try_send_with(|slots: &mut [MaybeUninit<u64>]| {
                let n = rng.take(slots.len()).min((total - next) as usize);
                for (k, slot) in slots[..n].iter_mut().enumerate() {
                    slot.write(next + k as u64);
                }
                n
            })
        });
        match sent {
            Ok(n) => next += n as u64,
            Err(Error::Full) => {
                waits += 1;
                wait_for(
                    &mut poll,
                    &mut events,
                    RING,
                    NOTICE,
                    &format!("full at item {next}"),
                );
            }
            Err(e) => panic!("at item {next}: {e}"),
        }
    }
    let line = child.expect_line("received", HANG);
    assert_eq!(fields(&line)["count"], total.to_string());
    assert!(waits > 0, "the ring never filled: the test proved nothing");
    drop(tx);
    child.finish();
    eprintln!("{total} items, {waits} waits for a full ring");
}

/// Drains until "would block", then waits for an event: `items` must
/// arrive in order, then `Disconnected` as the answer to an event. Returns
/// how many waits there were.
#[track_caller]
fn serve_until_disconnected(
    rx: &mut Receiver<u64>,
    poll: &mut Poll,
    expected: u64,
    within: Duration,
) -> u64 {
    let mut events = Events::with_capacity(4);
    let (mut next, mut waits) = (0u64, 0u64);
    loop {
        match rx.try_or_arm(Receiver::try_recv) {
            Ok(item) => {
                assert_eq!(item, next);
                next += 1;
            }
            Err(Error::Empty) => {
                waits += 1;
                wait_for(
                    poll,
                    &mut events,
                    RING,
                    within,
                    &format!("after item {next}"),
                );
            }
            Err(Error::Disconnected) => break,
            Err(e) => panic!("after item {next}: {e}"),
        }
    }
    assert_eq!(next, expected, "every item, then Disconnected");
    waits
}

/// A child sends 1000 items and closes its end while the parent's loop
/// sleeps: the close is an event, and the next call `Disconnected`.
#[test]
fn mio_disconnect_is_delivered_as_an_event_to_a_receiver() {
    let (mut rx, mut child) = spawn_with_sender("send_count_then_close", |command| {
        command.env(COUNT_ENV, "1000");
    });
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut rx, RING, Interest::READABLE)
        .expect("register");
    // Take everything, then sleep until the close: the loop must end.
    let waits = serve_until_disconnected(&mut rx, &mut poll, 1000, NOTICE);
    assert!(waits > 0);
    child.expect_line("closed", HANG);
    child.finish();
    poll.registry().deregister(&mut rx).expect("deregister");
}

/// The same for a sender waiting on a full ring: the receiver takes 10
/// items and closes; the waiting loop gets an event, then `Disconnected`.
#[test]
fn mio_disconnect_is_delivered_as_an_event_to_a_sender() {
    let (mut tx, mut child) = spawn_with_receiver("recv_count_then_close", |command| {
        command.env(COUNT_ENV, "10");
    });
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut tx, RING, Interest::READABLE)
        .expect("register");
    let mut events = Events::with_capacity(4);
    let (mut next, mut waits) = (0u64, 0u64);
    let end = loop {
        match tx.try_or_arm(|tx| tx.try_send(next)) {
            Ok(()) => next += 1,
            Err(Error::Full) => {
                waits += 1;
                wait_for(&mut poll, &mut events, RING, NOTICE, "full");
            }
            Err(e) => break e,
        }
    };
    assert_eq!(end, Error::Disconnected);
    // A sender sees the close at once, whether or not the ring has room.
    let capacity = tx.capacity() as u64;
    assert!(
        (capacity..=capacity + 10).contains(&next),
        "sent {next} items into a ring of {capacity} of which 10 were taken"
    );
    assert!(
        waits > 0,
        "the sender never waited: the test proved nothing"
    );
    child.expect_line("closed", HANG);
    child.finish();
}

/// A child streaming into the ring is killed; the parent's loop, asleep
/// or not, gets an event (the wake-up socket hangs up), then every item
/// the child had published, then `Disconnected`.
#[test]
fn mio_killed_producer_is_noticed_by_the_loop() {
    let (tx, mut rx) = channel::<u64>(512).expect("channel");
    let fds = tx.into_fds().expect("into_fds");
    let memfd = fds.memfd.try_clone().expect("dup the memfd");
    let mut child = ChildProc::spawn(STREAM_SEND, |command| {
        handoff::inherit(command, RING_ENV, fds);
    });
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut rx, RING, Interest::READABLE)
        .expect("register");
    let mut events = Events::with_capacity(4);
    let mut next = 0u64;
    let mut killed: Option<Instant> = None;
    loop {
        let got = rx.try_or_arm(|rx| {
            rx.try_recv_with(|items| {
                check_seq(items, next);
                items.len()
            })
        });
        match got {
            Ok(n) => next += n as u64,
            Err(Error::Empty) => {
                wait_for(
                    &mut poll,
                    &mut events,
                    RING,
                    NOTICE,
                    &format!("after item {next}"),
                );
            }
            Err(Error::Disconnected) => break,
            Err(e) => panic!("after item {next}: {e}"),
        }
        if killed.is_none() && next >= 100_000 {
            killed = Some(Instant::now());
            child.kill();
        }
    }
    let noticed = killed.expect("killed").elapsed();
    assert!(noticed < NOTICE, "the death was noticed after {noticed:?}");
    assert_eq!(
        read_words(&memfd).write_index,
        next,
        "every published item, and no more"
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait_within(HANG).signal(), Some(SIGKILL));
}

/// A child consuming the ring is killed while the parent's loop waits on a
/// full ring: the hang-up is an event, and the next send `Disconnected`.
#[test]
fn mio_killed_consumer_is_noticed_by_the_loop() {
    let (mut tx, mut child) = spawn_with_receiver(STREAM_RECV, |_| {});
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut tx, RING, Interest::READABLE)
        .expect("register");
    let mut events = Events::with_capacity(4);
    let mut next = 0u64;
    let mut killed: Option<Instant> = None;
    let end = loop {
        match tx.try_or_arm(|tx| tx.try_send(next)) {
            Ok(()) => next += 1,
            Err(Error::Full) => {
                wait_for(
                    &mut poll,
                    &mut events,
                    RING,
                    NOTICE,
                    &format!("full at {next}"),
                );
            }
            Err(e) => break e,
        }
        if killed.is_none() && next >= 100_000 {
            killed = Some(Instant::now());
            child.kill();
        }
    };
    assert_eq!(end, Error::Disconnected);
    let noticed = killed.expect("killed").elapsed();
    assert!(noticed < NOTICE, "the death was noticed after {noticed:?}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait_within(HANG).signal(), Some(SIGKILL));
}

/// When the peer's socket end outlives it (here the parent keeps a copy,
/// as a `Command` not yet dropped would), the ring never hangs up; the
/// watched liveness (a pidfd) is registered with the end, so the death is
/// an event all the same.
#[test]
fn mio_registers_the_watched_liveness_so_a_death_is_an_event() {
    let (tx, mut rx) = channel::<u64>(512).expect("channel");
    let fds = tx.into_fds().expect("into_fds");
    // The copy that keeps the child's socket end open in this process.
    let stray: OwnedFd = fds
        .wake
        .try_clone()
        .expect("dup the child's wake-up socket");
    let mut child = ChildProc::spawn("idle_then_send", |command| {
        handoff::inherit(command, RING_ENV, fds);
        command.env("FDRING_TEST_IDLE_MS", "600000");
    });
    child.expect_line("ready", HANG);
    rx.watch_peer(Liveness::child(&child.child).expect("pidfd"));
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut rx, RING, Interest::READABLE)
        .expect("register");
    let mut events = Events::with_capacity(4);
    assert_eq!(rx.try_or_arm(Receiver::try_recv), Err(Error::Empty));
    // Nothing happens while the child lives.
    poll.poll(&mut events, Some(Duration::from_millis(200)))
        .expect("poll");
    assert!(events.is_empty(), "an event while the child idles");
    let killed = Instant::now();
    child.kill();
    wait_for(&mut poll, &mut events, RING, NOTICE, "after the kill");
    assert_eq!(rx.try_or_arm(Receiver::try_recv), Err(Error::Disconnected));
    assert!(killed.elapsed() < NOTICE);
    poll.registry()
        .deregister(&mut rx)
        .expect("deregister both fds");
    drop(stray);
}

/// An end can move between polls: deregistered from one, registered in
/// another (with a new token), its events go to the second only; and a
/// liveness watched after `register` is added by `reregister`.
#[test]
fn mio_deregister_then_register_elsewhere() {
    let (mut tx, mut rx) = channel::<u64>(512).expect("channel");
    let (mut first, mut second) = (Poll::new().expect("Poll"), Poll::new().expect("Poll"));
    let mut events = Events::with_capacity(4);
    first
        .registry()
        .register(&mut rx, Token(1), Interest::READABLE)
        .expect("register");
    first.registry().deregister(&mut rx).expect("deregister");
    second
        .registry()
        .register(&mut rx, Token(2), Interest::READABLE)
        .expect("register");
    assert_eq!(rx.try_or_arm(Receiver::try_recv), Err(Error::Empty));
    tx.send(5).expect("send");
    first
        .poll(&mut events, Some(Duration::from_millis(50)))
        .expect("poll");
    assert!(events.is_empty(), "the first poll no longer hears of it");
    wait_for(
        &mut second,
        &mut events,
        Token(2),
        NOTICE,
        "in the second poll",
    );
    assert_eq!(rx.try_recv(), Ok(5));

    // A liveness watched after `register`: `reregister` adds it.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    rx.watch_peer(Liveness::socket(ours));
    second
        .registry()
        .reregister(&mut rx, Token(3), Interest::READABLE)
        .expect("reregister");
    assert_eq!(rx.try_or_arm(Receiver::try_recv), Err(Error::Empty));
    drop(theirs);
    wait_for(
        &mut second,
        &mut events,
        Token(3),
        NOTICE,
        "the liveness hung up",
    );
    assert_eq!(rx.try_or_arm(Receiver::try_recv), Err(Error::Disconnected));
    second.registry().deregister(&mut rx).expect("deregister");
    drop(tx);
}
