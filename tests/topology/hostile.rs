//! A hostile source cannot hurt the others: one that writes its producer
//! index backwards or out of range is ended with the corruption, and one
//! that floods its wake-up socket without items does not starve anyone.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::SendFlags;

use crate::common::{
    env, env_u64, number, orders, park, report, spawn_bounded, write_word, ChildProc, HANG, NOTICE,
    RING_ENV, WRITE_INDEX_AT,
};
use crate::peers::{parts, spawn_on_sender, spawn_with_rings, COUNT_ENV, PRODUCER, PRODUCER_ENV};
use fdring::topology::{Dispatch, Key, Merge, Next, Policy};
use fdring::{handoff, Corruption, Error, Fds, Receiver, Sender};

/// A producer that sends its items, then breaks its ring when told.
pub(crate) const CORRUPTER: &str = "corrupter";
/// A producer that floods its wake-up socket and sends no item.
pub(crate) const FLOODER: &str = "flooder";

/// The fds a hostile child inherited, with its own copies of the memfd
/// and of its wake-up socket, to break the rules with.
fn hostile_fds() -> (Fds, OwnedFd, OwnedFd) {
    let fds = handoff::inherited(RING_ENV).expect("inherited");
    let memfd = fds.memfd.try_clone().expect("dup the memfd");
    let wake = fds.wake.try_clone().expect("dup the wake-up socket");
    (fds, memfd, wake)
}

/// Sends wake-up bytes on `wake` without waiting; how many went out.
fn poke(wake: &impl AsFd, bytes: usize) -> usize {
    match rustix::net::send(wake, &vec![0xaa; bytes], SendFlags::DONTWAIT) {
        Ok(n) => n,
        Err(Errno::AGAIN | Errno::INTR) => 0,
        Err(e) => panic!("poking the wake-up socket: {e}"),
    }
}

/// Child: producer `PRODUCER_ENV` sends its `COUNT_ENV` items, reports
/// `sent`, then on the order `write_index N` stores N as its producer
/// index (behind the crate's back, in the memfd) and wakes the consumer
/// with a byte; it reports `corrupted` and lives on.
pub(crate) fn role_corrupter() {
    let (p, count) = (env_u64(PRODUCER_ENV, 0), env_u64(COUNT_ENV, 0));
    let (fds, memfd, wake) = hostile_fds();
    let mut tx = Sender::<u64>::from_fds(fds).expect("open the sender");
    for seq in 0..count {
        tx.send(crate::peers::item(p, seq)).expect("send");
    }
    report("sent");
    for order in orders() {
        match order.split_whitespace().collect::<Vec<_>>()[..] {
            ["write_index", value] => {
                write_word(&memfd, WRITE_INDEX_AT, value.parse().expect("an index"));
                assert_eq!(poke(&wake, 1), 1, "the wake-up byte");
                report("corrupted");
            }
            _ => panic!("unknown order {order:?}"),
        }
    }
    park();
}

/// How many bytes a flooder sends at once.
const FLOOD_CHUNK_ENV: &str = "FDRING_TOPO_FLOOD_CHUNK";

/// Which end a flooder holds: `receiver`, or the sending end.
const FLOOD_END_ENV: &str = "FDRING_TOPO_FLOOD_END";

/// Child: holds its end (the sending end, or the receiving end if
/// `FLOOD_END_ENV` says so) and, from a thread, floods the wake-up socket
/// with bytes (`FLOOD_CHUNK_ENV` at a time) and nothing else until the
/// order `stop`; then reports `stopped bytes=<how many it sent>` and
/// lives on.
pub(crate) fn role_flooder() {
    let chunk = env_u64(FLOOD_CHUNK_ENV, 64) as usize;
    let (fds, _memfd, wake) = hostile_fds();
    let _end: Box<dyn std::any::Any> = if env(FLOOD_END_ENV).as_deref() == Some("receiver") {
        Box::new(Receiver::<u64>::from_fds(fds).expect("open the receiver"))
    } else {
        Box::new(Sender::<u64>::from_fds(fds).expect("open the sender"))
    };
    let (stop, bytes) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut flood = Some({
        let (stop, bytes) = (Arc::clone(&stop), Arc::clone(&bytes));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                bytes.fetch_add(poke(&wake, chunk) as u64, Ordering::Relaxed);
                // Leave the CPU to the others between bytes: on two cores
                // a flood that never yields starves the machine, not the
                // merge.
                thread::yield_now();
            }
        })
    });
    report("flooding");
    for order in orders() {
        assert_eq!(order, "stop", "unknown order");
        stop.store(true, Ordering::Relaxed);
        if let Some(flood) = flood.take() {
            flood.join().expect("the flood");
        }
        report(&format!("stopped bytes={}", bytes.load(Ordering::Relaxed)));
    }
    park();
}

/// A new ring whose sending end a child in `role` takes, as producer `p`,
/// with the variables `vars`.
fn spawn_with_vars(role: &str, p: u64, vars: &[(&str, &str)]) -> (Receiver<u64>, ChildProc) {
    let (tx, rx) = fdring::channel::<u64>(RING).expect("channel");
    let mut vars: Vec<(&str, String)> = vars.iter().map(|&(k, v)| (k, v.to_owned())).collect();
    vars.push((PRODUCER_ENV, p.to_string()));
    let child = spawn_with_rings(
        role,
        vec![(RING_ENV, tx.into_fds().expect("into_fds"))],
        &vars,
    );
    (rx, child)
}

/// The items of the good producers of these tests.
const GOOD_ITEMS: u64 = 200_000;
const RING: usize = 4096;

/// A merge over good producers and others; checks each good producer's
/// items and end, and hands everything else to `other`.
struct Checked {
    merge: Merge<Receiver<u64>>,
    producer_of: HashMap<Key, u64>,
    next: HashMap<u64, u64>,
    good: Vec<(Key, ChildProc)>,
    ended: Vec<Key>,
}

impl Checked {
    fn with_good_producers(first: u64, count: u64) -> Checked {
        let mut checked = Checked {
            merge: Merge::new().expect("merge"),
            producer_of: HashMap::new(),
            next: HashMap::new(),
            good: Vec::new(),
            ended: Vec::new(),
        };
        for p in first..first + count {
            let (rx, mut child) = spawn_on_sender(PRODUCER, p, GOOD_ITEMS, RING);
            child.expect_line("filled", HANG);
            let key = checked.add(p, rx);
            checked.good.push((key, child));
        }
        checked
    }

    fn add(&mut self, p: u64, rx: Receiver<u64>) -> Key {
        let key = self.merge.add(rx).expect("add");
        self.producer_of.insert(key, p);
        self.next.insert(p, 0);
        key
    }

    fn is_good(&self, key: Key) -> bool {
        self.good.iter().any(|(k, _)| *k == key)
    }

    fn goods_done(&self) -> bool {
        self.good.iter().all(|(k, _)| self.ended.contains(k))
    }

    /// The next delivery; items are checked (each source's in order),
    /// and a good source's end must be `Disconnected` after its last.
    fn recv(&mut self) -> Next<usize> {
        let (producer_of, next) = (&self.producer_of, &mut self.next);
        let got = self.merge.recv_with_timeout(HANG, |key, items| {
            let p = producer_of[&key];
            let at = next.get_mut(&p).expect("a producer");
            for &item in items {
                assert_eq!(parts(item), (p, *at), "source {key} (producer {p})");
                *at += 1;
            }
            items.len()
        });
        let got = got.unwrap_or_else(|e| panic!("the merge failed: {e}"));
        if let Next::Ended(key, why) = &got {
            if self.is_good(*key) {
                let p = self.producer_of[key];
                assert_eq!(
                    (why, self.next[&p]),
                    (&Error::Disconnected, GOOD_ITEMS),
                    "a good producer ends after its last item"
                );
            }
            assert!(!self.ended.contains(key), "{key} ended twice");
            self.ended.push(*key);
        }
        got
    }

    fn finish(self) {
        for (_, child) in self.good {
            child.finish();
        }
    }
}

/// Three good producer processes stream 200 000 items each while two
/// others break their rings: one writes its producer index backwards,
/// the other beyond the capacity. Each breaker is ended once, with the
/// exact corruption, and the good ones deliver every item, before and
/// after.
#[test]
fn corrupted_sources_end_with_the_corruption_and_the_others_deliver_everything() {
    const SENT: u64 = 100;
    let mut checked = Checked::with_good_producers(0, 3);
    let mut breakers = Vec::new();
    for (p, how) in [(10, "backwards"), (11, "out-of-range")] {
        let (rx, mut child) = spawn_on_sender(CORRUPTER, p, SENT, 512);
        child.expect_line("sent", HANG);
        let capacity = rx.capacity() as u64;
        let (value, corruption) = if how == "backwards" {
            (
                SENT - 5,
                Corruption::IndexWentBack {
                    before: SENT,
                    now: SENT - 5,
                },
            )
        } else {
            (
                SENT + capacity + 1,
                Corruption::IndexOutOfRange {
                    write: SENT + capacity + 1,
                    read: SENT,
                    capacity,
                },
            )
        };
        let key = checked.add(p, rx);
        breakers.push((key, p, child, value, corruption, false));
    }
    let mut after_breaks: HashMap<Key, u64> = HashMap::new();
    while !checked.goods_done() {
        match checked.recv() {
            Next::Ready(key, n) => {
                let broken = breakers.iter().all(|b| checked.ended.contains(&b.0));
                if broken && checked.is_good(key) {
                    *after_breaks.entry(key).or_default() += n as u64;
                }
            }
            Next::Ended(key, why) if !checked.is_good(key) => {
                let b = breakers.iter().find(|b| b.0 == key).expect("a breaker");
                assert!(b.5, "{key} ended before it broke its ring: {why:?}");
                assert_eq!(
                    why,
                    Error::Corrupted(b.4),
                    "producer {} broke its ring",
                    b.1
                );
                assert!(checked.merge.get(key).is_none());
            }
            Next::Ended(..) => {}
            other => panic!("{other:?}"),
        }
        // Once a breaker's items were all delivered, it breaks its ring.
        for b in &mut breakers {
            if !b.5 && checked.next[&b.1] == SENT {
                b.2.order(&format!("write_index {}", b.3));
                b.2.expect_line("corrupted", HANG);
                b.5 = true;
            }
        }
    }
    for (key, p, ..) in &breakers {
        assert!(checked.ended.contains(key), "producer {p} was never ended");
    }
    for (key, _) in &checked.good {
        assert!(
            after_breaks.get(key).copied().unwrap_or(0) > 0,
            "good source {key} delivered nothing after the breakers ended"
        );
    }
    assert_eq!(checked.merge.recv(), Err(Error::Disconnected));
    checked.finish();
}

/// Three good producer processes stream 200 000 items each while a
/// fourth floods its wake-up socket and sends nothing: every good item
/// arrives, and the flooder stays a source (its bytes are wake-ups, not
/// an error) until it is killed.
#[test]
fn a_source_flooding_its_wake_up_socket_does_not_starve_the_others() {
    let mut checked = Checked::with_good_producers(0, 3);
    let (rx, mut flooder) = spawn_on_sender(FLOODER, 9, 0, RING);
    flooder.expect_line("flooding", HANG);
    let flooding = checked.add(9, rx);
    let started = Instant::now();
    while !checked.goods_done() {
        match checked.recv() {
            Next::Ready(key, _) => assert!(checked.is_good(key), "the flooder sent no item"),
            Next::Ended(key, why) => assert!(checked.is_good(key), "the flooder ended: {why:?}"),
            other => panic!("{other:?}"),
        }
    }
    eprintln!(
        "3 x {GOOD_ITEMS} items next to a flood in {:?}",
        started.elapsed()
    );
    flooder.order("stop");
    let bytes = number(&flooder.expect_line("stopped", HANG), "bytes");
    assert!(bytes >= 1000, "the flood was only {bytes} bytes");
    assert_eq!(checked.merge.len(), 1);
    assert!(
        checked.merge.get(flooding).is_some(),
        "the flooder is a source"
    );
    assert_eq!(
        checked.merge.recv_timeout(Duration::from_millis(100)),
        Err(Error::Timeout),
        "wake-ups without items deliver nothing"
    );
    flooder.kill();
    assert_eq!(
        checked.merge.recv_timeout(HANG),
        Ok(Next::Ended(flooding, Error::Disconnected))
    );
    assert_eq!(checked.merge.recv(), Err(Error::Disconnected));
    checked.finish();
}

/// A source that floods its wake-up socket as fast as it can (4 KiB at a
/// time), next to one that is silent: `try_recv` returns `Empty` and
/// `recv_timeout` returns `Timeout` near its deadline, as if the flood
/// were not there; the flood stops the merge from neither.
#[test]
fn a_flood_of_wake_ups_does_not_keep_the_merge_calls_from_returning() {
    let mut merge = Merge::new().expect("merge");
    let (rx, mut flooder) = spawn_with_vars(FLOODER, 9, &[(FLOOD_CHUNK_ENV, "4096")]);
    flooder.expect_line("flooding", HANG);
    merge.add(rx).expect("add");
    let (rx, mut silent) = spawn_on_sender(crate::peers::SILENT, 1, 0, RING);
    silent.expect_line("ready", HANG);
    merge.add(rx).expect("add");
    let calls = spawn_bounded("merge next to a flood", move || {
        thread::sleep(Duration::from_millis(100));
        let calls: Vec<_> = (0..5)
            .map(|_| {
                let started = Instant::now();
                let tried = merge.try_recv();
                let tried_in = started.elapsed();
                let timeout = Duration::from_millis(100);
                let started = Instant::now();
                let timed = merge.recv_timeout(timeout);
                (tried, tried_in, timed, started.elapsed())
            })
            .collect();
        (calls, merge)
    });
    let (calls, _merge) = calls.join_within(NOTICE);
    for (tried, tried_in, timed, waited) in calls {
        eprintln!("next to a flood: try_recv returned in {tried_in:?}, recv_timeout(100 ms) in {waited:?}");
        assert_eq!(tried, Err(Error::Empty));
        assert_eq!(timed, Err(Error::Timeout));
        assert!(
            waited >= Duration::from_millis(100),
            "Timeout before its time"
        );
    }
    flooder.order("stop");
    let bytes = number(&flooder.expect_line("stopped", HANG), "bytes");
    assert!(bytes >= 100_000, "the flood was only {bytes} bytes");
}

/// A dispatch over two full rings: one whose consumer process floods its
/// wake-up socket (4 KiB at a time) and one whose consumer does not read.
/// `send_timeout` returns `Timeout` near its deadline, as if the flood
/// were not there.
#[test]
fn a_worker_flooding_its_wake_up_socket_does_not_keep_a_send_from_timing_out() {
    let mut dispatch = Dispatch::new(Policy::RoundRobin).expect("dispatch");
    let (tx, rx) = fdring::channel::<u64>(RING).expect("channel");
    let vars = [
        (FLOOD_CHUNK_ENV, "4096".to_owned()),
        (FLOOD_END_ENV, "receiver".to_owned()),
    ];
    let mut flooder = spawn_with_rings(
        FLOODER,
        vec![(RING_ENV, rx.into_fds().expect("into_fds"))],
        &vars,
    );
    flooder.expect_line("flooding", HANG);
    dispatch.add(tx).expect("add");
    let (tx, _idle, _) = crate::peers::spawn_consumer(RING);
    dispatch.add(tx).expect("add");
    while dispatch.try_send(1).is_ok() {}
    assert_eq!(dispatch.in_flight(), 2 * RING, "both rings full");
    let sends = spawn_bounded("a send next to a flood", move || {
        let sent: Vec<_> = (0..5)
            .map(|_| {
                let timeout = Duration::from_millis(100);
                let started = Instant::now();
                (dispatch.send_timeout(2, timeout), started.elapsed())
            })
            .collect();
        (sent, dispatch)
    });
    // Five sends of 100 ms: a flood that held a send would hold it
    // forever; HANG, not NOTICE, so that a machine busy with other jobs
    // (the helper that found it ran benchmarks beside it) does not fail it.
    let (sent, _dispatch) = sends.join_within(HANG);
    for (result, waited) in sent {
        eprintln!("send_timeout(100 ms) next to a flood: {result:?} in {waited:?}");
        assert_eq!(result, Err(Error::Timeout));
        assert!(
            waited >= Duration::from_millis(100),
            "Timeout before its time"
        );
    }
    flooder.order("stop");
    let bytes = number(&flooder.expect_line("stopped", HANG), "bytes");
    assert!(bytes >= 100_000, "the flood was only {bytes} bytes");
}
