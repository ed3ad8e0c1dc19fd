//! Fan-in: one thread serves 256 rings, fed by 4 child processes, through
//! one `mio::Poll`, fairly.
//!
//! It shows:
//! - registering many `Receiver`s in one `mio::Poll` (feature `mio`), one
//!   token per ring, and serving them edge-triggered with
//!   `EventLoopExt::try_or_arm`: "would block" arms the ring, so its fd
//!   becomes readable when it has items again, or when its producer closes
//!   or dies;
//! - fairness: each ready ring gets one batch of at most `BATCH` items per
//!   turn, and a ring that may hold more goes to the back of a queue of
//!   its own, since an edge-triggered poll reports nothing new for it. No
//!   ring waits for another to be drained;
//! - the producers' side of the same pattern: each child fills its 64
//!   rings from its own `mio::Poll`, arming a ring when it is full;
//! - handing many rings to a child (`handoff::inherit`, one variable per
//!   ring), and sequence checks per ring (each item carries its ring's
//!   number and its position).
//!
//! Run it with
//!
//! ```text
//! cargo run --release --features mio --example fan_in
//! cargo run --release --features mio --example fan_in -- --items 100000
//! ```
//!
//! (This program is its own child: it re-runs itself with `--child`.)

use std::collections::VecDeque;
use std::error::Error;
use std::io::ErrorKind;
use std::mem::MaybeUninit;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use fdring::mio::EventLoopExt;
use fdring::{handoff, Receiver, Sender};
use mio::{Events, Interest, Poll, Token};

/// Child processes, and the rings each one feeds.
const CHILDREN: usize = 4;
const RINGS_PER_CHILD: usize = 64;
/// Capacity of each ring in `u64` items (32 KiB).
const CAPACITY: usize = 4096;
/// The most items one ring gets per turn, on either side.
const BATCH: usize = 1024;
/// Items per ring, unless `--items` says otherwise.
const ITEMS: u64 = 1 << 17;

/// Sleeps in `poll` (not at all if `busy`), at most `poll_timeout()`:
/// forever, unless this process cannot call `membarrier`. Then calls `due`
/// with the token of each ring to look at: those with an event, or all
/// `rings` if the bound ran out (a wake-up may have been lost).
fn wait(
    poll: &mut Poll,
    events: &mut Events,
    busy: bool,
    rings: usize,
    due: impl FnMut(usize),
) -> std::io::Result<()> {
    let timeout = if busy {
        Some(Duration::ZERO)
    } else {
        fdring::poll_timeout()
    };
    loop {
        match poll.poll(events, timeout) {
            Ok(()) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if events.is_empty() && !busy {
        (0..rings).for_each(due);
    } else {
        events.iter().map(|event| event.token().0).for_each(due);
    }
    Ok(())
}

/// The environment variable carrying ring `j` of a child.
fn ring_var(j: usize) -> String {
    format!("FDRING_FAN_IN_{j}")
}

/// Ring `ring`'s item at position `seq`: the ring's number in the top 16
/// bits, so that an item delivered to the wrong ring is caught too.
fn item(ring: usize, seq: u64) -> u64 {
    (ring as u64) << 48 | seq
}

type AnyResult<T> = Result<T, Box<dyn Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--child") => child(&args[1..]),
        _ => parent(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fan_in: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One ring as the consumer sees it.
struct Inbound {
    /// `None` once the producer closed it and it was drained.
    rx: Option<Receiver<u64>>,
    /// The next position expected.
    next: u64,
    /// Whether it is in the ready queue.
    queued: bool,
}

fn parent(args: &[String]) -> AnyResult<()> {
    let items = match args {
        [] => ITEMS,
        [flag, n] if flag == "--items" => n.parse()?,
        _ => return Err("usage: fan_in [--items N]".into()),
    };
    let mut poll = Poll::new()?;
    let mut rings: Vec<Inbound> = Vec::new();
    let mut children: Vec<Child> = Vec::new();
    for c in 0..CHILDREN {
        let mut command = Command::new(std::env::current_exe()?);
        let first = c * RINGS_PER_CHILD;
        command.args(["--child", &first.to_string(), &items.to_string()]);
        for j in 0..RINGS_PER_CHILD {
            let (tx, mut rx) = fdring::channel::<u64>(CAPACITY)?;
            handoff::inherit(&mut command, &ring_var(j), tx.into_fds()?);
            let token = Token(rings.len());
            poll.registry()
                .register(&mut rx, token, Interest::READABLE)?;
            rings.push(Inbound {
                rx: Some(rx),
                next: 0,
                queued: false,
            });
        }
        children.push(command.spawn()?);
        // Drop the parent's copies of the child's fds: if the child dies,
        // its rings hang up and the loop hears of it.
        drop(command);
    }
    println!(
        "fan_in: {} rings of {CAPACITY} u64 from {CHILDREN} children ({} each), \
         {items} items per ring, batches of at most {BATCH}",
        rings.len(),
        RINGS_PER_CHILD
    );

    let started = Instant::now();
    let mut events = Events::with_capacity(1024);
    // Every ring starts in the queue: items may be there before any event.
    let mut ready: VecDeque<usize> = (0..rings.len()).collect();
    rings.iter_mut().for_each(|ring| ring.queued = true);
    let mut open = rings.len();
    let (mut polls, mut turns, mut armed) = (0u64, 0u64, 0u64);
    while open > 0 {
        // Sleep only when no ring is known to have work.
        wait(
            &mut poll,
            &mut events,
            !ready.is_empty(),
            rings.len(),
            |index| {
                let ring = &mut rings[index];
                if !ring.queued && ring.rx.is_some() {
                    ring.queued = true;
                    ready.push_back(index);
                }
            },
        )?;
        polls += 1;
        // One turn for each ring in the queue, in order.
        for _ in 0..ready.len() {
            let Some(index) = ready.pop_front() else {
                break;
            };
            turns += 1;
            let ring = &mut rings[index];
            let Some(rx) = ring.rx.as_mut() else {
                continue;
            };
            let next = &mut ring.next;
            let got = rx.try_or_arm(|rx| {
                rx.try_recv_with(|batch: &[u64]| {
                    let n = batch.len().min(BATCH);
                    for (k, value) in batch[..n].iter().enumerate() {
                        let expected = item(index, *next + k as u64);
                        assert_eq!(*value, expected, "ring {index}: wrong item");
                    }
                    *next += n as u64;
                    n
                })
            });
            match got {
                // It may hold more: back of the queue, so that every other
                // ready ring gets its turn first.
                Ok(_) => ready.push_back(index),
                // Armed: it leaves the queue until its next event.
                Err(fdring::Error::Empty) => {
                    ring.queued = false;
                    armed += 1;
                }
                Err(fdring::Error::Disconnected) => {
                    if let Some(mut rx) = ring.rx.take() {
                        poll.registry().deregister(&mut rx)?;
                    }
                    ring.queued = false;
                    open -= 1;
                }
                Err(e) => return Err(format!("ring {index}: {e}").into()),
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();

    for (c, mut child) in children.into_iter().enumerate() {
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("child {c} failed: {status}").into());
        }
    }
    let short: Vec<usize> = (0..rings.len())
        .filter(|&i| rings[i].next != items)
        .collect();
    if !short.is_empty() {
        return Err(format!("rings {short:?} did not get all {items} items").into());
    }
    let total = items * rings.len() as u64;
    println!(
        "received {total} items ({} MB) in {secs:.3} s = {:.2} GB/s, every ring complete and in order",
        total * 8 / 1_000_000,
        total as f64 * 8.0 / secs / 1e9
    );
    println!("{polls} polls, {turns} turns, {armed} times a ring was armed (drained)");
    Ok(())
}

/// A child: fills its rings, `0..items` each, from one `mio::Poll`.
fn child(args: &[String]) -> AnyResult<()> {
    let [first, items] = args else {
        return Err("usage: fan_in --child FIRST ITEMS".into());
    };
    let (first, items): (usize, u64) = (first.parse()?, items.parse()?);
    let mut poll = Poll::new()?;
    let mut rings: Vec<Option<Sender<u64>>> = Vec::new();
    for j in 0..RINGS_PER_CHILD {
        let mut tx = Sender::<u64>::from_fds(handoff::inherited(&ring_var(j))?)?;
        poll.registry()
            .register(&mut tx, Token(j), Interest::READABLE)?;
        rings.push(Some(tx));
    }
    let mut next = [0u64; RINGS_PER_CHILD];
    let mut queued = [true; RINGS_PER_CHILD];
    let mut ready: VecDeque<usize> = (0..RINGS_PER_CHILD).collect();
    let mut events = Events::with_capacity(256);
    let mut open = RINGS_PER_CHILD;
    while open > 0 {
        wait(
            &mut poll,
            &mut events,
            !ready.is_empty(),
            rings.len(),
            |j| {
                if !queued[j] && rings[j].is_some() {
                    queued[j] = true;
                    ready.push_back(j);
                }
            },
        )?;
        for _ in 0..ready.len() {
            let Some(j) = ready.pop_front() else {
                break;
            };
            let Some(tx) = rings[j].as_mut() else {
                continue;
            };
            let ring = first + j;
            let from = next[j];
            let sent = tx.try_or_arm(|tx| {
                tx.try_send_with(|slots: &mut [MaybeUninit<u64>]| {
                    let n = slots.len().min(BATCH).min((items - from) as usize);
                    for (k, slot) in slots[..n].iter_mut().enumerate() {
                        slot.write(item(ring, from + k as u64));
                    }
                    n
                })
            });
            match sent {
                Ok(n) => {
                    next[j] += n as u64;
                    if next[j] == items {
                        // Done: closing the ring tells the consumer.
                        if let Some(mut tx) = rings[j].take() {
                            poll.registry().deregister(&mut tx)?;
                        }
                        queued[j] = false;
                        open -= 1;
                    } else {
                        ready.push_back(j);
                    }
                }
                Err(fdring::Error::Full) => queued[j] = false,
                Err(e) => return Err(format!("ring {ring}: {e}").into()),
            }
        }
    }
    Ok(())
}
