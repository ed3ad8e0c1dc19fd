//! Fan-in: one consumer serves 256 rings, fed by 4 child processes,
//! through one `fdring::topology::Merge`, fairly.
//!
//! It shows:
//! - a `Merge` over many `Receiver`s: each added once, each delivery
//!   naming its ring by its `Key`, and the whole merge sleeping in one
//!   `epoll_wait` when no ring has items. A ring whose producer closed is
//!   drained to its last item, then reported once as `Next::Ended`; once
//!   every ring ended, the merge says `Disconnected`;
//! - fairness: the rings take turns, each delivering at most its budget
//!   (`BATCH` items) per turn, so no ring waits for another to be drained.
//!   The run reports how far apart the rings of one child were when the
//!   first ring was complete: each child offers a batch to every ring of
//!   its own in turn, so only the consumer can set them apart (by leaving
//!   one full);
//! - the producers' side without any event loop: each child offers one
//!   batch to each of its 64 rings in turn (`try_send_with`, written in
//!   place), and only when all of them are full sleeps in `send_with` on
//!   one (the consumer serves them all in turn, so it gets room soon);
//! - handing many rings to a child (`handoff::inherit`, one variable per
//!   ring), and sequence checks per ring (each item carries its ring's
//!   number and its position).
//!
//! Run it with
//!
//! ```text
//! cargo run --release --example fan_in
//! cargo run --release --example fan_in -- --items 100000
//! ```
//!
//! (This program is its own child: it re-runs itself with `--child`.)

use std::collections::HashMap;
use std::error::Error;
use std::mem::MaybeUninit;
use std::process::{Child, Command, ExitCode};
use std::time::Instant;

use fdring::topology::{Key, Merge, Next};
use fdring::{handoff, Receiver, Sender};

/// Child processes, and the rings each one feeds.
const CHILDREN: usize = 4;
const RINGS_PER_CHILD: usize = 64;
/// Capacity of each ring in `u64` items (32 KiB).
const CAPACITY: usize = 4096;
/// The most items one ring gets per turn, on either side.
const BATCH: usize = 1024;
/// Items per ring, unless `--items` says otherwise.
const ITEMS: u64 = 1 << 17;

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
    /// Its number, `0..256`: the child's first ring plus its place there.
    ring: usize,
    /// The next position expected.
    next: u64,
}

fn parent(args: &[String]) -> AnyResult<()> {
    let items = match args {
        [] => ITEMS,
        [flag, n] if flag == "--items" => n.parse()?,
        _ => return Err("usage: fan_in [--items N]".into()),
    };
    let mut merge = Merge::<Receiver<u64>>::new()?.budget(BATCH);
    let mut rings: HashMap<Key, Inbound> = HashMap::new();
    let mut children: Vec<Child> = Vec::new();
    for c in 0..CHILDREN {
        let mut command = Command::new(std::env::current_exe()?);
        let first = c * RINGS_PER_CHILD;
        command.args(["--child", &first.to_string(), &items.to_string()]);
        for j in 0..RINGS_PER_CHILD {
            let (tx, rx) = fdring::channel::<u64>(CAPACITY)?;
            handoff::inherit(&mut command, &ring_var(j), tx.into_fds()?);
            let key = merge.add(rx)?;
            rings.insert(
                key,
                Inbound {
                    ring: first + j,
                    next: 0,
                },
            );
        }
        children.push(command.spawn()?);
        // Drop the parent's copies of the child's fds: if the child dies,
        // its rings hang up and the merge ends them.
        drop(command);
    }
    println!(
        "fan_in: {} rings of {CAPACITY} u64 from {CHILDREN} children ({RINGS_PER_CHILD} each), \
         {items} items per ring, turns of at most {BATCH}",
        rings.len(),
    );

    let started = Instant::now();
    let (mut deliveries, mut ended) = (0u64, 0usize);
    // When the first ring was complete: the widest gap between rings of
    // one child, and the least any ring had.
    let mut at_first_end = None;
    loop {
        let got = merge.recv_with(|key, batch| {
            let inbound = rings
                .get_mut(&key)
                .expect("every source is one of our rings");
            for (value, seq) in batch.iter().zip(inbound.next..) {
                assert_eq!(
                    *value,
                    item(inbound.ring, seq),
                    "ring {}: wrong item",
                    inbound.ring
                );
            }
            inbound.next += batch.len() as u64;
            batch.len()
        });
        match got {
            Ok(Next::Ready(_, n)) => {
                assert!(n <= BATCH, "a turn of {n} items, over the budget");
                deliveries += 1;
            }
            // Its producer closed it, and it was drained.
            Ok(Next::Ended(key, fdring::Error::Disconnected)) => {
                let inbound = &rings[&key];
                if inbound.next != items {
                    return Err(format!(
                        "ring {} ended after {} items",
                        inbound.ring, inbound.next
                    )
                    .into());
                }
                ended += 1;
                if at_first_end.is_none() {
                    at_first_end = Some(progress(&rings));
                }
            }
            Ok(Next::Ended(key, e)) => return Err(format!("ring {}: {e}", rings[&key].ring).into()),
            // Joined and Refused come from a listener; this merge has none.
            Ok(_) => {}
            // Every ring ended: nothing more can come.
            Err(fdring::Error::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let secs = started.elapsed().as_secs_f64();

    for (c, mut child) in children.into_iter().enumerate() {
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("child {c} failed: {status}").into());
        }
    }
    if ended != rings.len() {
        return Err(format!("{ended} of {} rings ended", rings.len()).into());
    }
    let total = items * rings.len() as u64;
    println!(
        "received {total} items ({} MB) in {secs:.3} s = {:.2} GB/s, every ring complete and in order",
        total * 8 / 1_000_000,
        total as f64 * 8.0 / secs / 1e9
    );
    let (gap, least) = at_first_end.unwrap_or((0, items));
    println!(
        "{deliveries} turns; when the first ring was complete, the rings of each child were \
         at most {gap} items apart, and every ring had at least {least} ({:.0}%; the children \
         start one after another)",
        least as f64 * 100.0 / items.max(1) as f64
    );
    Ok(())
}

/// The widest gap between the items received from two rings of one
/// child, and the fewest received from any ring.
fn progress(rings: &HashMap<Key, Inbound>) -> (u64, u64) {
    let mut per_child = [(u64::MAX, 0u64); CHILDREN];
    for inbound in rings.values() {
        let (least, most) = &mut per_child[inbound.ring / RINGS_PER_CHILD];
        *least = (*least).min(inbound.next);
        *most = (*most).max(inbound.next);
    }
    let gap = per_child.iter().map(|&(least, most)| most - least).max();
    let least = per_child.iter().map(|&(least, _)| least).min();
    (gap.unwrap_or(0), least.unwrap_or(0))
}

/// A child: fills its rings, `0..items` each, a batch per ring in turn.
fn child(args: &[String]) -> AnyResult<()> {
    let [first, items] = args else {
        return Err("usage: fan_in --child FIRST ITEMS".into());
    };
    let (first, items): (usize, u64) = (first.parse()?, items.parse()?);
    // Each ring's number, its sender, and the next position to send.
    let mut rings: Vec<(usize, Sender<u64>, u64)> = Vec::new();
    for j in 0..RINGS_PER_CHILD {
        let tx = Sender::<u64>::from_fds(handoff::inherited(&ring_var(j))?)?;
        rings.push((first + j, tx, 0));
    }
    // Writes ring `ring`'s next items, from position `from`, in place.
    let fill = |ring: usize, from: u64, slots: &mut [MaybeUninit<u64>]| {
        let n = slots.len().min(BATCH).min((items - from) as usize);
        for (slot, seq) in slots[..n].iter_mut().zip(from..) {
            slot.write(item(ring, seq));
        }
        n
    };
    while !rings.is_empty() {
        let mut any_room = false;
        for (ring, tx, next) in &mut rings {
            match tx.try_send_with(|slots| fill(*ring, *next, slots)) {
                Ok(n) => {
                    *next += n as u64;
                    any_room = true;
                }
                Err(fdring::Error::Full) => {}
                Err(e) => return Err(format!("ring {ring}: {e}").into()),
            }
        }
        // Dropping a finished ring's sender closes it: the consumer gets
        // its last items, then its end.
        rings.retain(|(_, _, next)| *next < items);
        if !any_room {
            // Every ring is full: sleep until the first has room.
            if let Some((ring, tx, next)) = rings.first_mut() {
                *next += tx.send_with(|slots| fill(*ring, *next, slots))? as u64;
            }
        }
    }
    Ok(())
}
