//! Two threads of one process on the two ends of a ring: streams with
//! sequence checks through every send/recv variant, disconnect on drop,
//! the wake-up protocol, and timeouts.

mod common;

use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{check_seq, consume, produce, seed, spawn_bounded, Api, Seq, HANG, NOTICE};
use fdring::{channel, Builder, Error, Receiver, Sender, Stats};

const TEN_MILLION: u64 = 10_000_000;
const MILLION: u64 = 1_000_000;

/// Streams the items `0..count` from a producer thread using `tx_api` to a
/// consumer thread using `rx_api`, which must receive every item in order
/// and then `Disconnected`. Returns both ends' stats.
fn stream<T: Seq>(
    tx: Sender<T>,
    rx: Receiver<T>,
    count: u64,
    tx_api: Api,
    rx_api: Api,
) -> (Stats, Stats) {
    let seed = seed();
    eprintln!("seed {seed}: {count} items, {tx_api:?} -> {rx_api:?}");
    let producer = spawn_bounded("producer", move || {
        let mut tx = tx;
        let sent = produce(&mut tx, tx_api, Some(count), seed);
        (sent, tx.stats())
        // `tx` is dropped here, which closes the ring.
    });
    let consumer = spawn_bounded("consumer", move || {
        let mut rx = rx;
        let (received, end) = consume(&mut rx, rx_api, seed, |_| {});
        (received, end, rx.stats())
    });
    let (sent, tx_stats) = producer.join_within(HANG);
    let (received, end, rx_stats) = consumer.join_within(HANG);
    assert_eq!(sent, Ok(count), "the producer stopped early (seed {seed})");
    assert_eq!(
        (received, end),
        (count, Error::Disconnected),
        "the consumer must get every item, then Disconnected (seed {seed})"
    );
    (tx_stats, rx_stats)
}

fn no_wakeups(stats: Stats) -> bool {
    stats.wakeups == 0 && stats.sleeps == 0
}

// ---------------------------------------------------------------------------
// Streams

#[test]
fn blocking_batches_stream_ten_million_u64_in_order_through_the_minimum_ring() {
    let (tx, rx) = channel::<u64>(1).unwrap();
    assert_eq!(tx.capacity(), 512, "one page of u64");
    assert_eq!(rx.capacity(), 512);
    stream(tx, rx, TEN_MILLION, Api::With, Api::With);
}

#[test]
fn blocking_batches_with_timeouts_stream_ten_million_u64_in_order_through_a_large_ring() {
    let (tx, rx) = channel::<u64>(1 << 16).unwrap();
    assert_eq!(tx.capacity(), 1 << 16);
    stream(tx, rx, TEN_MILLION, Api::WithTimeout, Api::WithTimeout);
}

#[test]
fn blocking_single_items_stream_a_million_u64_in_order() {
    let (tx, rx) = channel::<u64>(1).unwrap();
    stream(tx, rx, MILLION, Api::Single, Api::Single);
}

#[test]
fn blocking_slices_stream_in_order() {
    let (tx, rx) = channel::<u64>(1000).unwrap();
    assert_eq!(tx.capacity(), 1024);
    stream(tx, rx, 2 * MILLION, Api::Slice, Api::Slice);
}

#[test]
fn nonblocking_batches_stream_ten_million_u64_in_order_without_any_wakeup() {
    let (tx, rx) = channel::<u64>(4096).unwrap();
    let (tx_stats, rx_stats) = stream(tx, rx, TEN_MILLION, Api::TryWith, Api::TryWith);
    assert!(no_wakeups(tx_stats), "busy-polling sender: {tx_stats:?}");
    assert!(no_wakeups(rx_stats), "busy-polling receiver: {rx_stats:?}");
}

#[test]
fn nonblocking_single_items_stream_a_million_u64_in_order_through_the_minimum_ring_without_any_wakeup(
) {
    let (tx, rx) = channel::<u64>(1).unwrap();
    let (tx_stats, rx_stats) = stream(tx, rx, MILLION, Api::TrySingle, Api::TrySingle);
    assert!(no_wakeups(tx_stats), "busy-polling sender: {tx_stats:?}");
    assert!(no_wakeups(rx_stats), "busy-polling receiver: {rx_stats:?}");
}

#[test]
fn nonblocking_slices_stream_in_order_without_any_wakeup() {
    let (tx, rx) = channel::<u64>(2000).unwrap();
    let (tx_stats, rx_stats) = stream(tx, rx, 2 * MILLION, Api::TrySlice, Api::TrySlice);
    assert!(no_wakeups(tx_stats), "busy-polling sender: {tx_stats:?}");
    assert!(no_wakeups(rx_stats), "busy-polling receiver: {rx_stats:?}");
}

#[test]
fn twelve_byte_items_stream_in_order_through_the_minimum_ring_blocking() {
    // 12 bytes: the smallest ring is 1024 items (3 pages), and runs cross
    // the wrap in the middle of a page.
    let (tx, rx) = channel::<[u32; 3]>(1).unwrap();
    assert_eq!(tx.capacity(), 1024);
    stream(tx, rx, 2 * MILLION, Api::With, Api::With);
    let (tx, rx) = channel::<[u32; 3]>(1).unwrap();
    stream(tx, rx, 200_000, Api::Single, Api::Single);
}

#[test]
fn twelve_byte_unaligned_items_stream_in_order_nonblocking() {
    let (tx, rx) = channel::<[u8; 12]>(1).unwrap();
    assert_eq!(tx.capacity(), 1024);
    let (tx_stats, rx_stats) = stream(tx, rx, 2 * MILLION, Api::TryWith, Api::TryWith);
    assert!(no_wakeups(tx_stats) && no_wakeups(rx_stats));
}

#[test]
fn a_blocking_end_and_a_busy_polling_end_stream_in_order() {
    // A busy-polling side never arms, but it must still wake a peer that
    // sleeps: the producer sleeps on a full ring here...
    let (tx, rx) = channel::<u64>(1).unwrap();
    stream(tx, rx, MILLION, Api::With, Api::TrySingle);
    // ... and the consumer on an empty one here.
    let (tx, rx) = channel::<u64>(1).unwrap();
    stream(tx, rx, MILLION, Api::TrySingle, Api::With);
}

#[test]
fn ends_that_sleep_without_spinning_never_lose_a_wakeup() {
    // With no spin, every wait goes through the armed protocol and the
    // wake-up socket, so a lost wake-up would show as a hang.
    let zero = Builder::new().capacity(1).spin(Duration::ZERO);
    let (tx, rx) = zero.build::<u64>().unwrap();
    let (tx_stats, rx_stats) = stream(tx, rx, MILLION, Api::With, Api::With);
    eprintln!("batches: sender {tx_stats:?}, receiver {rx_stats:?}");
    let (tx, rx) = zero.build::<u64>().unwrap();
    let (tx_stats2, rx_stats2) = stream(tx, rx, 100_000, Api::Single, Api::Single);
    eprintln!("single: sender {tx_stats2:?}, receiver {rx_stats2:?}");
    let sleeps = tx_stats.sleeps + rx_stats.sleeps + tx_stats2.sleeps + rx_stats2.sleeps;
    assert!(sleeps > 0, "the streams never slept: nothing was tested");
}

// ---------------------------------------------------------------------------
// Disconnect on drop

#[test]
fn receiver_gets_every_published_item_then_disconnected_after_sender_dropped_mid_stream() {
    let seed = seed();
    let mut rng = common::Rng::new(seed);
    for _ in 0..3 {
        let (tx, rx) = channel::<u64>(1).unwrap();
        let count = rng.range(1, 200_000);
        eprintln!("seed {seed}: the sender stops after {count} items");
        let producer = spawn_bounded("producer", move || {
            let mut tx = tx;
            produce(&mut tx, Api::With, Some(count), seed)
            // dropped here, in the middle of the consumer's stream
        });
        let consumer = spawn_bounded("consumer", move || {
            let mut rx = rx;
            let end = consume(&mut rx, Api::With, seed, |_| {});
            (end, rx)
        });
        assert_eq!(producer.join_within(HANG), Ok(count));
        let ((received, end), mut rx) = consumer.join_within(HANG);
        assert_eq!((received, end), (count, Error::Disconnected));
        // Nothing after the last item, whichever call asks.
        assert_eq!(rx.try_recv(), Err(Error::Disconnected));
        assert_eq!(rx.recv(), Err(Error::Disconnected));
        assert!(rx.is_empty());
    }
}

#[test]
fn receiver_never_misses_items_published_just_before_the_sender_drops() {
    // Many short rings: the sender publishes 1 to 3 items and drops its end
    // at once, while the receiver busy-polls. A receiver that saw the ring
    // empty, then the closed word, and did not look at the ring once more
    // would report `Disconnected` with items still in it.
    const ROUNDS: usize = 10_000;
    let (senders, sender_rx) = mpsc::sync_channel::<Sender<u64>>(4);
    let (receivers, receiver_rx) = mpsc::sync_channel::<Receiver<u64>>(4);
    let start = Arc::new(Barrier::new(2));
    let start2 = Arc::clone(&start);
    let producer = spawn_bounded("producer", move || {
        for (round, mut tx) in sender_rx.into_iter().enumerate() {
            start2.wait();
            for i in 0..=(round % 3) as u64 {
                tx.try_send(i).unwrap();
            }
        }
    });
    let consumer = spawn_bounded("consumer", move || {
        let mut short = Vec::new();
        for (round, mut rx) in receiver_rx.into_iter().enumerate() {
            start.wait();
            let mut got = 0u64;
            loop {
                let result = if round % 2 == 0 {
                    rx.try_recv().map(|item| {
                        assert_eq!(item, got);
                        1
                    })
                } else {
                    rx.try_recv_with(|items| {
                        check_seq(items, got);
                        items.len()
                    })
                };
                match result {
                    Ok(n) => got += n as u64,
                    Err(Error::Empty) => std::hint::spin_loop(),
                    Err(Error::Disconnected) => break,
                    Err(e) => panic!("round {round}: {e}"),
                }
            }
            if got != 1 + (round % 3) as u64 {
                short.push((round, got));
            }
        }
        short
    });
    for _ in 0..ROUNDS {
        let (tx, rx) = channel::<u64>(1).unwrap();
        senders.send(tx).unwrap();
        receivers.send(rx).unwrap();
    }
    drop((senders, receivers));
    producer.join_within(HANG);
    let short = consumer.join_within(HANG);
    assert!(
        short.is_empty(),
        "{} of {ROUNDS} rounds reported Disconnected before every item (round, items): {:?}",
        short.len(),
        &short[..short.len().min(10)]
    );
}

#[test]
fn receiver_drains_a_full_ring_after_sender_dropped_then_disconnected() {
    let (mut tx, mut rx) = channel::<u64>(1).unwrap();
    let capacity = tx.capacity() as u64;
    for i in 0..capacity {
        tx.try_send(i).unwrap();
    }
    assert_eq!(tx.try_send(capacity), Err(Error::Full));
    drop(tx);
    assert_eq!(rx.len(), capacity as usize);
    let mut next = 0;
    while next < capacity {
        let n = if next % 2 == 0 {
            rx.recv_with(|items| {
                check_seq(&items[..1], next);
                1
            })
            .unwrap()
        } else {
            let item = rx.try_recv().unwrap();
            check_seq(&[item], next);
            1
        };
        next += n as u64;
    }
    assert_eq!(rx.try_recv(), Err(Error::Disconnected));
    assert_eq!(rx.recv(), Err(Error::Disconnected));
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)),
        Err(Error::Disconnected)
    );
    let mut buf = [0u64; 4];
    assert_eq!(rx.try_recv_slice(&mut buf), Err(Error::Disconnected));
    assert_eq!(rx.recv_slice(&mut buf), Err(Error::Disconnected));
    assert_eq!(
        rx.recv_with(|_| panic!("no item may be lent after the end")),
        Err(Error::Disconnected)
    );
}

#[test]
fn sends_after_the_receiver_is_dropped_are_disconnected() {
    let (mut tx, rx) = channel::<u64>(1).unwrap();
    tx.send(1).unwrap();
    drop(rx);
    assert_eq!(tx.try_send(2), Err(Error::Disconnected));
    assert_eq!(tx.send(2), Err(Error::Disconnected));
    assert_eq!(
        tx.send_timeout(2, Duration::from_secs(5)),
        Err(Error::Disconnected)
    );
    assert_eq!(tx.try_send_slice(&[2, 3]), Err(Error::Disconnected));
    assert_eq!(tx.send_slice(&[2, 3]), Err(Error::Disconnected));
    assert_eq!(
        tx.try_send_with(|_| panic!("no slot may be lent to a closed ring")),
        Err(Error::Disconnected)
    );
}

/// Runs `scenario` until an attempt in which the blocked end really went
/// to sleep (so the wake-up path, not just the check before it, was
/// tested); a few attempts make this certain even on a loaded machine.
fn until_it_slept(mut scenario: impl FnMut() -> Stats) {
    for attempt in 0..5 {
        let stats = scenario();
        if stats.sleeps > 0 {
            return;
        }
        eprintln!("attempt {attempt}: the end did not get to sleep, again");
    }
    panic!("the blocked end never went to sleep in 5 attempts");
}

#[test]
fn dropping_the_receiver_wakes_a_sender_blocked_on_a_full_ring() {
    until_it_slept(|| {
        let (mut tx, rx) = channel::<u64>(1).unwrap();
        while tx.try_send(7).is_ok() {}
        let blocked = spawn_bounded("blocked sender", move || {
            let result = tx.send(8);
            (result, Instant::now(), tx.stats())
        });
        thread::sleep(Duration::from_millis(100));
        let dropped = Instant::now();
        drop(rx);
        let (result, returned, stats) = blocked.join_within(NOTICE);
        assert_eq!(result, Err(Error::Disconnected));
        assert!(
            returned >= dropped,
            "it returned before the drop: {result:?}"
        );
        stats
    });
}

#[test]
fn dropping_the_sender_wakes_a_receiver_blocked_on_an_empty_ring() {
    until_it_slept(|| {
        let (tx, mut rx) = channel::<u64>(1).unwrap();
        let blocked = spawn_bounded("blocked receiver", move || {
            let result = rx.recv();
            (result, Instant::now(), rx.stats())
        });
        thread::sleep(Duration::from_millis(100));
        let dropped = Instant::now();
        drop(tx);
        let (result, returned, stats) = blocked.join_within(NOTICE);
        assert_eq!(result, Err(Error::Disconnected));
        assert!(
            returned >= dropped,
            "it returned before the drop: {result:?}"
        );
        stats
    });
}

// ---------------------------------------------------------------------------
// Eventfd writes only when the peer sleeps

#[test]
fn no_wakeup_when_neither_side_ever_waits() {
    // The producer fills a big ring while the consumer does not run; the
    // consumer then drains it. Blocking calls that find room or items at
    // once do not wait either.
    let (mut tx, mut rx) = channel::<u64>(1 << 17).unwrap();
    let capacity = tx.capacity() as u64;
    let mut next = 0u64;
    while next < capacity / 2 {
        let n = tx
            .try_send_with(|slots| {
                let n = slots.len().min(1000);
                for (k, slot) in slots[..n].iter_mut().enumerate() {
                    slot.write(next + k as u64);
                }
                n
            })
            .unwrap();
        next += n as u64;
    }
    while next < capacity {
        tx.send(next).unwrap();
        next += 1;
    }
    assert_eq!(tx.try_send(next), Err(Error::Full));
    let mut got = 0u64;
    while got < capacity / 2 {
        got += rx
            .try_recv_with(|items| {
                let n = items.len().min(999);
                check_seq(&items[..n], got);
                n
            })
            .unwrap() as u64;
    }
    while got < capacity {
        check_seq(&[rx.recv().unwrap()], got);
        got += 1;
    }
    assert_eq!(rx.try_recv(), Err(Error::Empty));
    // Lock-step sends and receives: never a wait either.
    for i in 0..100_000u64 {
        tx.send(i).unwrap();
        assert_eq!(rx.recv(), Ok(i));
    }
    assert_eq!(tx.stats(), Stats::default(), "sender");
    assert_eq!(rx.stats(), Stats::default(), "receiver");
}

#[test]
fn producer_wakes_the_consumer_only_when_asleep_in_recv() {
    const SENDS: u64 = 20;
    let (mut tx, rx) = channel::<u64>(1).unwrap();
    let consumer = spawn_bounded("consumer", move || {
        let mut rx = rx;
        for i in 0..SENDS {
            assert_eq!(rx.recv(), Ok(i), "item {i}");
        }
        assert_eq!(rx.recv(), Err(Error::Disconnected));
        rx.stats()
    });
    for i in 0..SENDS {
        thread::sleep(Duration::from_millis(5));
        tx.send(i).unwrap();
    }
    let tx_stats = tx.stats();
    drop(tx);
    let rx_stats = consumer.join_within(HANG);
    eprintln!("sender {tx_stats:?}, receiver {rx_stats:?}");
    assert!(
        (1..=SENDS).contains(&tx_stats.wakeups),
        "one wake-up per sleep of the consumer, at most one per send: {tx_stats:?}"
    );
    assert!(rx_stats.sleeps >= 1, "the consumer slept: {rx_stats:?}");
    assert_eq!(tx_stats.sleeps, 0, "the sender never waited: {tx_stats:?}");
    assert_eq!(
        rx_stats.wakeups, 0,
        "the sender never slept, so the receiver never woke it: {rx_stats:?}"
    );
}

#[test]
fn consumer_wakes_the_producer_only_when_asleep_in_send() {
    const RECVS: u64 = 20;
    let (tx, mut rx) = channel::<u64>(1).unwrap();
    let capacity = tx.capacity() as u64;
    let producer = spawn_bounded("producer", move || {
        let mut tx = tx;
        for i in 0..capacity + RECVS {
            tx.send(i).unwrap();
        }
        tx.stats()
    });
    // Let the producer fill the ring and block, then free one slot at a
    // time.
    let deadline = Instant::now() + HANG;
    while !rx.is_full() {
        assert!(
            Instant::now() < deadline,
            "the producer never filled the ring"
        );
        thread::sleep(Duration::from_millis(1));
    }
    thread::sleep(Duration::from_millis(20));
    for i in 0..RECVS {
        thread::sleep(Duration::from_millis(5));
        assert_eq!(rx.recv(), Ok(i));
    }
    let tx_stats = producer.join_within(HANG);
    let rx_stats = rx.stats();
    for i in RECVS..capacity + RECVS {
        assert_eq!(rx.try_recv(), Ok(i));
    }
    assert_eq!(rx.try_recv(), Err(Error::Disconnected));
    eprintln!("sender {tx_stats:?}, receiver {rx_stats:?}");
    assert!(
        (1..=RECVS).contains(&rx_stats.wakeups),
        "one wake-up per sleep of the producer, at most one per recv: {rx_stats:?}"
    );
    assert!(tx_stats.sleeps >= 1, "the producer slept: {tx_stats:?}");
    assert_eq!(
        rx_stats.sleeps, 0,
        "the receiver never waited: {rx_stats:?}"
    );
}

#[test]
fn a_timed_out_wait_leaves_no_stale_wakeup_for_the_peer() {
    let (mut tx, rx) = channel::<u64>(1).unwrap();
    let ms20 = Duration::from_millis(20);
    let mut rx = assert_times_out(ms20, rx, move |rx| rx.recv_timeout(ms20).map(drop));
    assert!(
        rx.stats().sleeps >= 1,
        "the receiver slept: {:?}",
        rx.stats()
    );
    // The receiver is awake again: publishing must not cost a syscall.
    tx.send(1).unwrap();
    assert_eq!(tx.stats().wakeups, 0, "{:?}", tx.stats());
    assert_eq!(rx.recv(), Ok(1));

    while tx.try_send(2).is_ok() {}
    let tx = assert_times_out(ms20, tx, move |tx| tx.send_timeout(3, ms20));
    assert!(tx.stats().sleeps >= 1, "the sender slept: {:?}", tx.stats());
    assert_eq!(rx.recv(), Ok(2));
    assert_eq!(rx.stats().wakeups, 0, "{:?}", rx.stats());
}

// ---------------------------------------------------------------------------
// Timeouts

/// Runs `wait` on `end` in a thread of its own and asserts that it
/// returned `Timeout` no sooner than `timeout` and within a generous bound
/// (a wait that ignores its deadline fails the test instead of hanging it).
/// Gives `end` back.
#[track_caller]
fn assert_times_out<E: Send + 'static>(
    timeout: Duration,
    mut end: E,
    wait: impl FnOnce(&mut E) -> Result<(), Error> + Send + 'static,
) -> E {
    let bound = timeout + Duration::from_secs(5);
    let waiter = spawn_bounded("waiter", move || {
        let start = Instant::now();
        let result = wait(&mut end);
        (result, start.elapsed(), end)
    });
    let (result, waited, end) = waiter.join_within(bound);
    assert_eq!(result, Err(Error::Timeout), "after {waited:?}");
    assert!(
        waited >= timeout,
        "returned Timeout after {waited:?}, before the {timeout:?} timeout"
    );
    assert!(
        waited < bound,
        "returned Timeout only after {waited:?} for a {timeout:?} timeout"
    );
    end
}

#[test]
fn recv_timeout_on_an_empty_ring_returns_timeout_after_the_timeout() {
    for spin in [
        fdring::DEFAULT_SPIN,
        Duration::ZERO,
        Duration::from_millis(30),
    ] {
        let (_tx, mut rx) = Builder::new()
            .capacity(1)
            .spin(spin)
            .build::<u64>()
            .unwrap();
        for ms in [0, 1, 20, 150] {
            let timeout = Duration::from_millis(ms);
            rx = assert_times_out(timeout, rx, move |rx| rx.recv_timeout(timeout).map(drop));
            rx = assert_times_out(timeout, rx, move |rx| {
                rx.recv_with_timeout(timeout, |_| panic!("no item"))
                    .map(drop)
            });
        }
        assert_eq!(rx.try_recv(), Err(Error::Empty));
    }
}

#[test]
fn send_timeout_on_a_full_ring_returns_timeout_after_the_timeout() {
    for spin in [
        fdring::DEFAULT_SPIN,
        Duration::ZERO,
        Duration::from_millis(30),
    ] {
        let (mut tx, mut rx) = Builder::new()
            .capacity(1)
            .spin(spin)
            .build::<u64>()
            .unwrap();
        let mut sent = 0;
        while tx.try_send(sent).is_ok() {
            sent += 1;
        }
        for ms in [0, 1, 20, 150] {
            let timeout = Duration::from_millis(ms);
            tx = assert_times_out(timeout, tx, move |tx| tx.send_timeout(99, timeout));
            tx = assert_times_out(timeout, tx, move |tx| {
                tx.send_with_timeout(timeout, |_| panic!("no slot"))
                    .map(drop)
            });
        }
        // Nothing was sent by the timed-out calls.
        for i in 0..sent {
            assert_eq!(rx.try_recv(), Ok(i));
        }
        assert_eq!(rx.try_recv(), Err(Error::Empty));
    }
}

#[test]
fn recv_timeout_returns_an_item_sent_before_the_deadline() {
    for timeout in [Duration::from_secs(20), Duration::MAX] {
        let (mut tx, mut rx) = channel::<u64>(1).unwrap();
        let sender = spawn_bounded("sender", move || {
            thread::sleep(Duration::from_millis(50));
            tx.send(42).unwrap();
            tx
        });
        let start = Instant::now();
        assert_eq!(rx.recv_timeout(timeout), Ok(42));
        assert!(start.elapsed() < Duration::from_secs(10));
        let _tx = sender.join_within(HANG);
        assert!(rx.stats().sleeps >= 1);
    }
}

#[test]
fn send_timeout_succeeds_when_space_is_freed_before_the_deadline() {
    for timeout in [Duration::from_secs(20), Duration::MAX] {
        let (mut tx, mut rx) = channel::<u64>(1).unwrap();
        let mut sent = 0;
        while tx.try_send(sent).is_ok() {
            sent += 1;
        }
        let receiver = spawn_bounded("receiver", move || {
            thread::sleep(Duration::from_millis(50));
            assert_eq!(rx.recv(), Ok(0));
            rx
        });
        let start = Instant::now();
        assert_eq!(tx.send_timeout(sent, timeout), Ok(()));
        assert!(start.elapsed() < Duration::from_secs(10));
        let mut rx = receiver.join_within(HANG);
        for i in 1..=sent {
            assert_eq!(rx.try_recv(), Ok(i));
        }
        assert!(tx.stats().sleeps >= 1);
    }
}

// ---------------------------------------------------------------------------
// Reopening ends from their fds

#[test]
fn ends_reopened_from_their_fds_continue_the_stream() {
    let (mut tx, mut rx) = channel::<u64>(1).unwrap();
    let capacity = tx.capacity() as u64;
    for i in 0..300 {
        tx.send(i).unwrap();
    }
    for i in 0..100 {
        assert_eq!(rx.recv(), Ok(i));
    }
    // Handing the sender's fds on does not close the ring.
    let mut tx = Sender::<u64>::from_fds(tx.into_fds().unwrap()).unwrap();
    assert_eq!(rx.try_recv(), Ok(100));
    let mut rx = Receiver::<u64>::from_fds(rx.into_fds().unwrap()).unwrap();
    assert_eq!(rx.capacity() as u64, capacity);
    // The reopened ends resume from the indices in the header, and the
    // stream wraps the ring a few times.
    let mut next_out = 300;
    let mut next_in = 101;
    while next_in < 5 * capacity {
        while tx.try_send(next_out).is_ok() {
            next_out += 1;
        }
        let n = rx
            .try_recv_with(|items| {
                check_seq(items, next_in);
                items.len()
            })
            .unwrap();
        next_in += n as u64;
    }
    drop(tx);
    while next_in < next_out {
        assert_eq!(rx.recv(), Ok(next_in));
        next_in += 1;
    }
    assert_eq!(rx.recv(), Err(Error::Disconnected));
}

#[test]
fn even_the_shortest_timeout_sees_a_peer_that_vanished() {
    // A peer that vanishes without closing its end, as a killed process
    // does: its fds are closed, its closed word is never set. A real-time
    // caller that only ever uses tiny timeouts must still learn of it.
    for timeout in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_micros(5),
    ] {
        let (mut tx, rx) = channel::<u64>(1).unwrap();
        while tx.try_send(0).is_ok() {}
        drop(rx.into_fds().unwrap());
        assert_eq!(
            tx.send_timeout(1, timeout),
            Err(Error::Disconnected),
            "send_timeout({timeout:?}) on a full ring"
        );
        let (mut tx, mut rx) = channel::<u64>(1).unwrap();
        tx.send(7).unwrap();
        drop(tx.into_fds().unwrap());
        assert_eq!(rx.recv_timeout(timeout), Ok(7), "the item comes first");
        assert_eq!(
            rx.recv_timeout(timeout),
            Err(Error::Disconnected),
            "recv_timeout({timeout:?}) on an empty ring"
        );
    }
}

/// This thread's CPU time.
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A blocking receive sleeps in the kernel while it waits, whether its
/// wake-up socket's file description is blocking (it sleeps in `recv`) or
/// was made non-blocking, as a peer holding a copy of it could (it then
/// sleeps in `poll`): either way a 300 ms wait costs next to no CPU.
#[test]
fn a_blocking_receive_sleeps_even_if_its_socket_was_made_non_blocking() {
    for nonblocking in [false, true] {
        let (mut tx, mut rx) = channel::<u64>(512).unwrap();
        if nonblocking {
            rustix::fs::fcntl_setfl(&rx, rustix::fs::OFlags::NONBLOCK).unwrap();
        }
        let waiter = thread::spawn(move || {
            let before = thread_cpu_time();
            let got = rx.recv();
            (got, thread_cpu_time() - before)
        });
        thread::sleep(Duration::from_millis(300));
        tx.send(7).unwrap();
        let (got, cpu) = waiter.join().unwrap();
        assert_eq!(got, Ok(7));
        assert!(
            cpu < Duration::from_millis(100),
            "a receive waiting 300 ms used {cpu:?} of CPU (non-blocking socket: {nonblocking})"
        );
    }
}
