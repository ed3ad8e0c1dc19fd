//! Stress between two processes: a child streams `FDRING_STRESS_ITEMS`
//! sequence-numbered `u64`s (10^7 by default; 10^9 for the long run in the
//! README, in release) through the smallest ring (512 slots) to the parent,
//! both sides using the closure calls with random batch sizes and, now and
//! then, a random sleep of 0..200 µs between batches, so that each side
//! finds the ring empty or full, sleeps on its wake-up socket and is woken
//! many times. No item may be lost, repeated or reordered, and the wake-ups
//! and sleeps that both sides count must fit the wake-up protocol.
//!
//! ```text
//! FDRING_STRESS_ITEMS=1000000000 cargo test --release --test stress -- --nocapture
//! ```

mod common;

use std::time::{Duration, Instant};

use common::{
    check_seq, env, env_u64, fields, pause_now_and_then, report, seed, spawn_bounded,
    start_watchdog, ChildProc, Rng, CHILD_ENV, HANG, RING_ENV,
};
use fdring::{channel, handoff, Error, Liveness, Sender, Stats, DEFAULT_SPIN};

const ITEMS: &str = "FDRING_STRESS_ITEMS";
const PAUSE_ONE_IN: &str = "FDRING_STRESS_PAUSE_ONE_IN";
const DEFAULT_ITEMS: u64 = 10_000_000;
/// One batch in this many is preceded by a sleep of 0..200 µs, on each side.
const DEFAULT_PAUSE_ONE_IN: u64 = 8;
const PAUSE_MAX_US: u64 = 200;

/// How long the whole stream may take before it counts as hung: a minute,
/// plus a microsecond an item (far more than even a debug build needs).
fn deadline(items: u64) -> Duration {
    HANG + Duration::from_micros(items)
}

/// The entry point of every child process: runs the role named in
/// `FDRING_TEST_CHILD`, or nothing when run as a plain (ignored) test.
#[test]
#[ignore = "child process entry point, spawned by the tests"]
fn child_entry() {
    let Some(role) = env(CHILD_ENV) else {
        return;
    };
    start_watchdog(deadline(env_u64(ITEMS, DEFAULT_ITEMS)));
    match role.as_str() {
        "stress_send" => role_stress_send(),
        other => panic!("unknown child role {other}"),
    }
}

/// What one side did, besides its `Stats`.
#[derive(Debug, Default, Clone, Copy)]
struct Calls {
    /// Blocking calls made.
    calls: u64,
    /// Blocking calls that waited at least the spin time before their
    /// closure ran (or before they returned an error): only those can have
    /// armed without sleeping, when the re-check after arming found work.
    long: u64,
    /// Random sleeps between batches.
    pauses: u64,
}

impl Calls {
    /// Counts a call that started at `start` and reached its closure (or
    /// returned) at `reached`.
    fn count(&mut self, start: Instant, reached: Instant) {
        self.calls += 1;
        if reached.duration_since(start) >= DEFAULT_SPIN {
            self.long += 1;
        }
    }
}

/// Sends `0..FDRING_STRESS_ITEMS` with `send_with`, random batch sizes and
/// random pauses, then reports its counters and drops its end.
fn role_stress_send() {
    let fds = handoff::inherited(RING_ENV).expect("inherited");
    let mut tx = Sender::<u64>::from_fds(fds).expect("open");
    let items = env_u64(ITEMS, DEFAULT_ITEMS);
    let pause_one_in = env_u64(PAUSE_ONE_IN, DEFAULT_PAUSE_ONE_IN);
    let mut rng = Rng::new(seed());
    let mut calls = Calls::default();
    let mut next = 0u64;
    while next < items {
        if pause_now_and_then(&mut rng, pause_one_in, PAUSE_MAX_US) {
            calls.pauses += 1;
        }
        let start = Instant::now();
        let mut reached = None;
        let sent = tx.send_with(|slots| {
            reached = Some(Instant::now());
            let n = rng.take(slots.len()).min((items - next) as usize);
            for (k, slot) in slots[..n].iter_mut().enumerate() {
                slot.write(next + k as u64);
            }
            n
        });
        calls.count(start, reached.unwrap_or_else(Instant::now));
        match sent {
            Ok(n) => next += n as u64,
            Err(e) => panic!("sending item {next}: {e}"),
        }
    }
    // Read before the drop, whose closing wake-up is thus not counted.
    let stats = tx.stats();
    drop(tx);
    report(&format!(
        "result count={next} writes={} sleeps={} calls={} long={} pauses={}",
        stats.wakeups, stats.sleeps, calls.calls, calls.long, calls.pauses
    ));
}

/// Receives until `Disconnected` with `recv_with`, random batch sizes and
/// random pauses, checking every item; returns the count and the counters.
fn receive(
    rx: &mut fdring::Receiver<u64>,
    seed: u64,
    pause_one_in: u64,
) -> (u64, Error, Stats, Calls) {
    let mut rng = Rng::new(seed ^ 0x5555);
    let mut calls = Calls::default();
    let mut next = 0u64;
    loop {
        if pause_now_and_then(&mut rng, pause_one_in, PAUSE_MAX_US) {
            calls.pauses += 1;
        }
        let start = Instant::now();
        let mut reached = None;
        let got = rx.recv_with(|items| {
            reached = Some(Instant::now());
            let n = rng.take(items.len());
            check_seq(&items[..n], next);
            n
        });
        calls.count(start, reached.unwrap_or_else(Instant::now));
        match got {
            Ok(n) => next += n as u64,
            Err(e) => return (next, e, rx.stats(), calls),
        }
    }
}

#[test]
fn items_stream_between_processes_in_order_while_both_sides_sleep_and_wake_at_random() {
    let items = env_u64(ITEMS, DEFAULT_ITEMS);
    let pause_one_in = env_u64(PAUSE_ONE_IN, DEFAULT_PAUSE_ONE_IN);
    let seed = seed();
    eprintln!("seed {seed}: {items} items, a pause before one batch in {pause_one_in}");
    let started = Instant::now();
    let (tx, mut rx) = channel::<u64>(1).unwrap();
    let capacity = tx.capacity();
    let fds = tx.into_fds().unwrap();
    let mut child = ChildProc::spawn("stress_send", |command| {
        handoff::inherit(command, RING_ENV, fds);
        command
            .env(ITEMS, items.to_string())
            .env(PAUSE_ONE_IN, pause_one_in.to_string())
            .env("FDRING_TEST_SEED", seed.to_string());
    });
    rx.watch_peer(Liveness::child(&child.child).unwrap());
    let consumer = spawn_bounded("consumer", move || receive(&mut rx, seed, pause_one_in));
    let (count, end, rx_stats, rx_calls) = consumer.join_within(deadline(items));
    let elapsed = started.elapsed();
    let line = child.expect_line("result", HANG);
    child.finish();
    let f = fields(&line);
    let number = |key: &str| -> u64 { f[key].parse().unwrap() };
    let (tx_writes, tx_sleeps) = (number("writes"), number("sleeps"));
    let tx_calls = Calls {
        calls: number("calls"),
        long: number("long"),
        pauses: number("pauses"),
    };
    eprintln!(
        "{items} items through a ring of {capacity} in {elapsed:.2?} ({:.1} M items/s)\n  \
         sender (child):    wake-ups sent {tx_writes}, sleeps {tx_sleeps}, {tx_calls:?}\n  \
         receiver (parent): wake-ups sent {}, sleeps {}, {rx_calls:?}",
        items as f64 / elapsed.as_secs_f64() / 1e6,
        rx_stats.wakeups,
        rx_stats.sleeps,
    );

    // Every item, in order (checked item by item as it arrived), then the
    // end of the stream.
    assert_eq!(number("count"), items, "the child sent every item");
    assert_eq!(
        (count, end),
        (items, Error::Disconnected),
        "the parent got every item, then Disconnected (seed {seed})"
    );

    // Both sides really slept and were woken, many times.
    assert!(
        tx_sleeps > 0 && rx_stats.sleeps > 0,
        "both sides must have slept (sender {tx_sleeps}, receiver {}): the random pauses \
         did not make either side wait, so the wake-ups were not tested",
        rx_stats.sleeps
    );
    assert!(
        tx_writes > 0 && rx_stats.wakeups > 0,
        "each side slept, so its peer must have sent it a wake-up"
    );

    // No sleep ends without a wake-up: nobody watches a timeout here, and a
    // live peer never ends a sleep by hanging up, so every sleep ended on a
    // wake-up the peer sent, and a wake-up is drained by one
    // sleep at most. (The sender's last wake-up, when its end is dropped,
    // happens after it read its counters: hence the 1.)
    assert!(
        rx_stats.sleeps <= tx_writes + 1,
        "the receiver slept {} times, but the sender woke it only {tx_writes} (+1) times",
        rx_stats.sleeps
    );
    assert!(
        tx_sleeps <= rx_stats.wakeups,
        "the sender slept {tx_sleeps} times, but the receiver woke it only {} times",
        rx_stats.wakeups
    );

    // A side is woken at most once per arming, i.e. once per sleep, plus
    // at most once per blocking call that armed and then, re-checking the
    // ring, found work and did not sleep (ring.rs, `arm`): the peer may
    // have taken that arming in the meantime. Only calls that spun for the
    // whole spin time arm at all.
    assert!(
        tx_writes <= rx_stats.sleeps + rx_calls.long,
        "the sender sent {tx_writes} wake-ups, more than the receiver armed \
         (at most {} sleeps + {} calls that waited out the spin)",
        rx_stats.sleeps,
        rx_calls.long
    );
    assert!(
        rx_stats.wakeups <= tx_sleeps + tx_calls.long,
        "the receiver sent {} wake-ups, more than the sender armed \
         (at most {tx_sleeps} sleeps + {} calls that waited out the spin)",
        rx_stats.wakeups,
        tx_calls.long
    );
}
