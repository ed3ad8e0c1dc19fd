//! The child roles that several tests share, and the parents' helpers
//! that spawn them: counting producers and consumers (fast, slow, closing),
//! an idle producer, and the echo peer of the edge-triggered cycles.

use std::thread;
use std::time::Duration;

use crate::common::{
    check_seq, env, env_u64, fields, report, seed, ChildProc, Rng, HANG, RING_ENV,
};
use fdring::{channel, handoff, Builder, Error, Receiver, Sender};

/// The second ring of a child, when it has two.
pub(crate) const RING_B_ENV: &str = "FDRING_TEST_RING_B";
/// How many items a counting role moves.
pub(crate) const COUNT_ENV: &str = "FDRING_TEST_COUNT";

pub(crate) fn inherited_sender(name: &str) -> Sender<u64> {
    Sender::from_fds(handoff::inherited(name).expect("inherited")).expect("open the sender")
}

pub(crate) fn inherited_receiver(name: &str) -> Receiver<u64> {
    Receiver::from_fds(handoff::inherited(name).expect("inherited")).expect("open the receiver")
}

pub(crate) fn count() -> u64 {
    env_u64(COUNT_ENV, 1000)
}

/// The peer of an edge-triggered cycle: waits for a "go" item on ring B
/// (spinning, so that the parent's "go" costs no wake-up), then publishes
/// it on ring A, whose receiver the parent armed. Reports how many
/// wake-ups it sent on ring A: one per cycle, since every publish finds
/// the parent armed.
pub(crate) fn role_echo_go() {
    let mut tx = inherited_sender(RING_ENV);
    let mut go = Builder::new()
        .spin(Duration::from_millis(5))
        .open_receiver::<u64>(handoff::inherited(RING_B_ENV).expect("inherited"))
        .expect("open ring B");
    let mut echoed = 0u64;
    loop {
        match go.recv() {
            Ok(i) => {
                tx.try_send(i).expect("ring A has room: one item per cycle");
                echoed += 1;
            }
            Err(Error::Disconnected) => break,
            Err(e) => panic!("receiving go: {e}"),
        }
    }
    report(&format!(
        "done echoed={echoed} wakeups={}",
        tx.stats().wakeups
    ));
}

/// Sends `0..COUNT`, then closes its end and exits.
pub(crate) fn role_send_count_then_close() {
    let mut tx = inherited_sender(RING_ENV);
    for i in 0..count() {
        tx.send(i).expect("send");
    }
    drop(tx);
    report("closed");
}

/// Receives `COUNT` items, checking them, then closes its end and exits.
pub(crate) fn role_recv_count_then_close() {
    let mut rx = inherited_receiver(RING_ENV);
    for i in 0..count() {
        assert_eq!(rx.recv().expect("recv"), i);
    }
    drop(rx);
    report("closed");
}

/// Receives `0..COUNT` in random batches with random pauses (so that the
/// parent's sender often finds the ring full), checking every item, then
/// reports and waits for the sender's close.
pub(crate) fn role_recv_count_slowly() {
    let mut rx = inherited_receiver(RING_ENV);
    let mut rng = Rng::new(seed());
    let total = count();
    let mut next = 0u64;
    while next < total {
        if rng.next_u64() % 16 == 0 {
            thread::sleep(Duration::from_micros(rng.range(0, 2000)));
        }
        let got = rx.recv_with(|items| {
            let n = rng.take(items.len()).min((total - next) as usize);
            check_seq(&items[..n], next);
            n
        });
        next += got.expect("recv_with") as u64;
    }
    report(&format!("received count={next}"));
    assert_eq!(
        rx.recv(),
        Err(Error::Disconnected),
        "nothing after the last item"
    );
}

/// Sends `0..COUNT` in random batches with random pauses (so that the
/// parent's receiver often finds the ring empty), then closes.
pub(crate) fn role_send_count_slowly() {
    let mut tx = inherited_sender(RING_ENV);
    let mut rng = Rng::new(seed());
    let total = count();
    let mut next = 0u64;
    while next < total {
        if rng.next_u64() % 16 == 0 {
            thread::sleep(Duration::from_micros(rng.range(0, 2000)));
        }
        let sent = tx.send_with(|slots| {
            let n = rng.take(slots.len()).min((total - next) as usize);
            for (k, slot) in slots[..n].iter_mut().enumerate() {
                slot.write(next + k as u64);
            }
            n
        });
        next += sent.expect("send_with") as u64;
    }
    report(&format!("sent count={next}"));
}

/// Opens its sender; if `FDRING_TEST_WARMUP_MS` is set, sends 41 after
/// that long (a first wake-up for a parent that waits); stays idle for
/// `FDRING_TEST_IDLE_MS`; then sends 42 and exits.
pub(crate) fn role_idle_then_send() {
    let mut tx = inherited_sender(RING_ENV);
    report("ready");
    if let Some(warmup) = env("FDRING_TEST_WARMUP_MS") {
        thread::sleep(Duration::from_millis(warmup.parse().expect("ms")));
        tx.send(41).expect("send");
    }
    thread::sleep(Duration::from_millis(env_u64("FDRING_TEST_IDLE_MS", 1000)));
    tx.send(42).expect("send");
}

/// Creates a ring and spawns `role` with its sending end inherited;
/// returns the parent's receiving end and the child.
pub(crate) fn spawn_with_sender(
    role: &str,
    configure: impl FnOnce(&mut std::process::Command),
) -> (Receiver<u64>, ChildProc) {
    let (tx, rx) = channel::<u64>(512).expect("channel");
    let fds = tx.into_fds().expect("into_fds");
    let child = ChildProc::spawn(role, |command| {
        handoff::inherit(command, RING_ENV, fds);
        configure(command);
    });
    (rx, child)
}

pub(crate) fn spawn_with_receiver(
    role: &str,
    configure: impl FnOnce(&mut std::process::Command),
) -> (Sender<u64>, ChildProc) {
    let (tx, rx) = channel::<u64>(512).expect("channel");
    let fds = rx.into_fds().expect("into_fds");
    let child = ChildProc::spawn(role, |command| {
        handoff::inherit(command, RING_ENV, fds);
        configure(command);
    });
    (tx, child)
}

pub(crate) fn edge_cycles() -> u64 {
    env_u64("FDRING_EDGE_CYCLES", 1_000_000)
}

/// Spawns the peer of the edge-triggered cycles: it publishes on ring A
/// (whose receiver this returns) each item it receives on ring B (whose
/// sender this returns).
pub(crate) fn spawn_echo_go() -> (Receiver<u64>, Sender<u64>, ChildProc) {
    let (tx_a, rx_a) = channel::<u64>(512).expect("channel A");
    let (go, rx_b) = channel::<u64>(512).expect("channel B");
    let (fds_a, fds_b) = (
        tx_a.into_fds().expect("into_fds"),
        rx_b.into_fds().expect("into_fds"),
    );
    let child = ChildProc::spawn("echo_go", |command| {
        handoff::inherit(command, RING_ENV, fds_a);
        handoff::inherit(command, RING_B_ENV, fds_b);
    });
    (rx_a, go, child)
}

/// Ends the echo child (closing `go`) and checks the wake-ups it sent on
/// ring A: at least `min_wakeups` of the `cycles` publishes found the
/// receiver armed, which shows that the cycles really went through an armed
/// end and a wake-up.
#[track_caller]
pub(crate) fn finish_echo_go(go: Sender<u64>, mut child: ChildProc, cycles: u64, min_wakeups: u64) {
    drop(go);
    let line = child.expect_line("done", HANG);
    child.finish();
    let fields = fields(&line);
    assert_eq!(fields["echoed"], cycles.to_string());
    let wakeups: u64 = fields["wakeups"].parse().expect("a number");
    assert!(
        (min_wakeups..=cycles).contains(&wakeups),
        "{wakeups} wake-ups for {cycles} cycles, expected at least {min_wakeups} (and at most one per cycle)"
    );
}
