//! Fan-in: 256 rings from 4 children, one `mio::Poll`, served fairly; and
//! a child killed mid-stream.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::common::{env_u64, read_words, report, ChildProc, HANG, NOTICE, SIGKILL};
use crate::peers::{count, inherited_sender, COUNT_ENV};
use fdring::mio::EventLoopExt;
use fdring::{channel, handoff, Error, Receiver, Sender};
use mio::{Events, Interest, Poll, Token};

const FAN_CHILDREN: usize = 4;
const FAN_RINGS_PER_CHILD: usize = 64;
/// Items per ring in the fair test.
const FAN_ITEMS: u64 = 1 << 15;
/// The most items a ring gets per turn, on either side.
const FAN_BATCH: usize = 256;

fn fan_ring_var(j: usize) -> String {
    format!("FDRING_TEST_FAN_{j}")
}

/// Ring `ring`'s item at `seq`: the ring's number is in the top bits, so an
/// item delivered to another ring is caught too.
fn fan_item(ring: usize, seq: u64) -> u64 {
    (ring as u64) << 48 | seq
}

/// A child of the fan-in: opens `FDRING_TEST_FAN_RINGS` senders, fills each
/// ring to the brim, reports "filled", then streams up to `COUNT` items per
/// ring from one `mio::Poll` (arming each ring when it is full) and closes
/// each ring when done.
pub(crate) fn role_fan_in_producer() {
    let first = env_u64("FDRING_TEST_FAN_FIRST", 0) as usize;
    let rings_count = env_u64("FDRING_TEST_FAN_RINGS", 0) as usize;
    let total = count();
    let mut poll = Poll::new().expect("Poll");
    let mut rings: Vec<Option<Sender<u64>>> = (0..rings_count)
        .map(|j| {
            let mut tx = inherited_sender(&fan_ring_var(j));
            poll.registry()
                .register(&mut tx, Token(j), Interest::READABLE)
                .expect("register");
            Some(tx)
        })
        .collect();
    let mut next = vec![0u64; rings_count];
    let send = |j: usize, tx: &mut Sender<u64>, next: &mut u64, batch: usize| {
        let from = *next;
        let sent = tx.try_or_arm(|tx| {
            tx.try_send_with(|slots: &mut [MaybeUninit<u64>]| {
                let n = slots.len().min(batch).min((total - from) as usize);
                for (k, slot) in slots[..n].iter_mut().enumerate() {
                    slot.write(fan_item(first + j, from + k as u64));
                }
                n
            })
        });
        if let Ok(n) = sent {
            *next += n as u64;
        }
        sent
    };
    // The prefill: every ring full before the consumer starts.
    for (j, ring) in rings.iter_mut().enumerate() {
        let tx = ring.as_mut().expect("open");
        while next[j] < total {
            match send(j, tx, &mut next[j], usize::MAX) {
                Ok(_) => {}
                Err(Error::Full) => break,
                Err(e) => panic!("prefilling ring {}: {e}", first + j),
            }
        }
    }
    report("filled");
    let mut queued = vec![true; rings_count];
    let mut ready: VecDeque<usize> = (0..rings_count).collect();
    let mut events = Events::with_capacity(256);
    let mut open = rings_count;
    while open > 0 {
        let timeout = if ready.is_empty() {
            None
        } else {
            Some(Duration::ZERO)
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("poll: {e}"),
        }
        for event in &events {
            let j = event.token().0;
            if !queued[j] && rings[j].is_some() {
                queued[j] = true;
                ready.push_back(j);
            }
        }
        for _ in 0..ready.len() {
            let j = ready.pop_front().expect("queued");
            let Some(tx) = rings[j].as_mut() else {
                continue;
            };
            match send(j, tx, &mut next[j], FAN_BATCH) {
                Ok(_) if next[j] == total => {
                    let mut tx = rings[j].take().expect("open");
                    poll.registry().deregister(&mut tx).expect("deregister");
                    drop(tx); // closes the ring: the consumer's last event
                    queued[j] = false;
                    open -= 1;
                }
                Ok(_) => ready.push_back(j),
                Err(Error::Full) => queued[j] = false,
                Err(Error::Disconnected) => return, // the parent is gone
                Err(e) => panic!("ring {}: {e}", first + j),
            }
        }
    }
    report("done");
}

/// One ring, as the fan-in's consumer sees it.
struct Inbound {
    rx: Option<Receiver<u64>>,
    memfd: OwnedFd,
    next: u64,
    batches: u64,
    queued: bool,
    ended: Option<Instant>,
}

/// What one fan-in run saw.
struct FanIn {
    rings: Vec<Inbound>,
    capacity: u64,
    /// When the killed child was killed, if one was.
    killed: Option<Instant>,
    turns: u64,
    armed: u64,
}

/// Spawns `FAN_CHILDREN` producers of `FAN_RINGS_PER_CHILD` rings each,
/// waits until each has filled its rings, then serves all of them from one
/// `mio::Poll`, round-robin, one batch of at most `FAN_BATCH` per turn,
/// checking every item. While every ring is still within its prefilled
/// items, each turn takes exactly `FAN_BATCH` items, so a fair loop keeps
/// every ring within one batch of every other: that is asserted. If
/// `kill` is `Some(c)`, child `c` is killed once a quarter of all the items
/// were received.
fn fan_in(kill: Option<usize>) -> FanIn {
    let mut poll = Poll::new().expect("Poll");
    let mut rings: Vec<Inbound> = Vec::new();
    let mut children: Vec<ChildProc> = Vec::new();
    let mut capacity = 0;
    for c in 0..FAN_CHILDREN {
        let mut handed = Vec::new();
        for _ in 0..FAN_RINGS_PER_CHILD {
            let (tx, mut rx) = channel::<u64>(FAN_BATCH * 8).expect("channel");
            capacity = tx.capacity() as u64;
            let fds = tx.into_fds().expect("into_fds");
            let memfd = fds.memfd.try_clone().expect("dup the memfd");
            handed.push(fds);
            poll.registry()
                .register(&mut rx, Token(rings.len()), Interest::READABLE)
                .expect("register");
            rings.push(Inbound {
                rx: Some(rx),
                memfd,
                next: 0,
                batches: 0,
                queued: true,
                ended: None,
            });
        }
        children.push(ChildProc::spawn("fan_in_producer", |command| {
            for (j, fds) in handed.into_iter().enumerate() {
                handoff::inherit(command, &fan_ring_var(j), fds);
            }
            command
                .env(
                    "FDRING_TEST_FAN_FIRST",
                    (c * FAN_RINGS_PER_CHILD).to_string(),
                )
                .env("FDRING_TEST_FAN_RINGS", FAN_RINGS_PER_CHILD.to_string())
                .env(COUNT_ENV, FAN_ITEMS.to_string());
        }));
    }
    for child in &mut children {
        child.expect_line("filled", HANG);
    }
    assert!(capacity >= 4 * FAN_BATCH as u64);

    let deadline = Instant::now() + HANG;
    let total_items = FAN_ITEMS * rings.len() as u64;
    let mut received = 0u64;
    let mut killed = None;
    let mut events = Events::with_capacity(1024);
    let mut ready: VecDeque<usize> = (0..rings.len()).collect();
    let mut open = rings.len();
    let (mut turns, mut armed) = (0u64, 0u64);
    while open > 0 {
        assert!(
            Instant::now() < deadline,
            "the fan-in did not finish within {HANG:?}"
        );
        let timeout = if ready.is_empty() {
            Some(NOTICE)
        } else {
            Some(Duration::ZERO)
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("poll: {e}"),
        }
        if ready.is_empty() && events.is_empty() {
            panic!("every open ring armed, and no event within {NOTICE:?}: a missed wake-up ({open} rings open)");
        }
        for event in &events {
            let ring = &mut rings[event.token().0];
            if !ring.queued && ring.rx.is_some() {
                ring.queued = true;
                ready.push_back(event.token().0);
            }
        }
        for _ in 0..ready.len() {
            let index = ready.pop_front().expect("queued");
            turns += 1;
            let ring = &mut rings[index];
            let Some(rx) = ring.rx.as_mut() else { continue };
            let next = ring.next;
            let got = rx.try_or_arm(|rx| {
                rx.try_recv_with(|items: &[u64]| {
                    let n = items.len().min(FAN_BATCH);
                    for (k, item) in items[..n].iter().enumerate() {
                        let expected = fan_item(index, next + k as u64);
                        assert_eq!(*item, expected, "ring {index}, item {}", next + k as u64);
                    }
                    n
                })
            });
            match got {
                Ok(n) => {
                    ring.next += n as u64;
                    ring.batches += 1;
                    received += n as u64;
                    ready.push_back(index);
                    if next + (FAN_BATCH as u64) <= capacity {
                        // The turn began within the prefill, so a whole
                        // batch was there: it took exactly that, and no
                        // ring is more than one turn behind.
                        assert_eq!(n, FAN_BATCH, "ring {index}: a turn within the prefill");
                        let (batches, behind) =
                            (ring.batches, rings.iter().map(|r| r.batches).min());
                        let behind = behind.unwrap_or(0);
                        assert!(
                            batches <= behind + 1,
                            "unfair: ring {index} got its batch number {batches} while a ring had only {behind}"
                        );
                    }
                }
                Err(Error::Empty) => {
                    ring.queued = false;
                    armed += 1;
                }
                Err(Error::Disconnected) => {
                    let mut rx = ring.rx.take().expect("open");
                    poll.registry().deregister(&mut rx).expect("deregister");
                    ring.queued = false;
                    ring.ended = Some(Instant::now());
                    open -= 1;
                }
                Err(e) => panic!("ring {index}: {e}"),
            }
        }
        if let Some(c) = kill {
            if killed.is_none() && received >= total_items / 4 {
                killed = Some(Instant::now());
                children[c].kill();
            }
        }
    }
    for (c, mut child) in children.into_iter().enumerate() {
        if Some(c) == kill {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(child.wait_within(HANG).signal(), Some(SIGKILL));
        } else {
            child.expect_line("done", HANG);
            child.finish();
        }
    }
    FanIn {
        rings,
        capacity,
        killed,
        turns,
        armed,
    }
}

/// 256 rings from 4 children through one `mio::Poll`: every ring gets all
/// its items in order, and while every ring has work, none gets a second
/// batch before every other got its first (checked inside `fan_in`).
#[test]
fn fan_in_256_rings_from_4_children_fairly_and_in_order() {
    let run = fan_in(None);
    for (i, ring) in run.rings.iter().enumerate() {
        assert_eq!(ring.next, FAN_ITEMS, "ring {i}");
        assert!(ring.ended.is_some(), "ring {i} ended with Disconnected");
    }
    let min_batches = run.rings.iter().map(|r| r.batches).min().unwrap_or(0);
    assert!(min_batches >= FAN_ITEMS / FAN_BATCH as u64);
    eprintln!(
        "256 rings of {} items: {} turns, {} armings",
        run.capacity, run.turns, run.armed
    );
}

/// One of the 4 children is killed mid-stream: its 64 rings end with
/// `Disconnected` within `NOTICE`, each after exactly the items the child
/// had published; the other 192 rings complete.
#[test]
fn fan_in_notices_a_killed_child_and_serves_the_others_to_the_end() {
    let victim = 2;
    let run = fan_in(Some(victim));
    let killed = run.killed.expect("the child was killed");
    for (i, ring) in run.rings.iter().enumerate() {
        let ended = ring.ended.expect("every ring ends with Disconnected");
        if i / FAN_RINGS_PER_CHILD == victim {
            let published = read_words(&ring.memfd).write_index;
            assert_eq!(
                ring.next, published,
                "ring {i}: every item the dead child published"
            );
            let noticed = ended.saturating_duration_since(killed);
            assert!(
                noticed < NOTICE,
                "ring {i}: the death was noticed after {noticed:?}"
            );
        } else {
            assert_eq!(ring.next, FAN_ITEMS, "ring {i} of a live child");
        }
    }
}
