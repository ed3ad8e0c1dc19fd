//! The child roles several tests share, and how the parent starts them:
//! producers of a merge, on rings they inherit.

use std::mem::MaybeUninit;
use std::process::Stdio;

use crate::common::{env_u64, orders, park, report, ChildProc, HANG, RING_ENV};
use fdring::{handoff, Builder, Error, Fds, Receiver, Sender};

/// A producer of a merge: fills its ring, then streams, closes and waits
/// until its items were taken.
pub(crate) const PRODUCER: &str = "producer";
/// A producer that sends a few items, then holds its ring and says nothing.
pub(crate) const SILENT: &str = "silent";

/// Which producer a child is (the top bits of its items).
pub(crate) const PRODUCER_ENV: &str = "FDRING_TOPO_PRODUCER";
/// How many items a child produces.
pub(crate) const COUNT_ENV: &str = "FDRING_TEST_COUNT";

/// Item `seq` of producer `p`: the producer in the top bits, so that an
/// item delivered under another source's key is caught too.
pub(crate) fn item(p: u64, seq: u64) -> u64 {
    p << 40 | seq
}

/// The producer and the position of an item made by [`item`].
pub(crate) fn parts(item: u64) -> (u64, u64) {
    (item >> 40, item & ((1 << 40) - 1))
}

/// Writes producer `p`'s items `*next..` into `slots`, at most up to
/// `count`, and returns how many.
pub(crate) fn fill(slots: &mut [MaybeUninit<u64>], p: u64, next: &mut u64, count: u64) -> usize {
    let n = slots.len().min((count - *next) as usize);
    for slot in &mut slots[..n] {
        slot.write(item(p, *next));
        *next += 1;
    }
    n
}

pub(crate) fn inherited_sender(var: &str) -> Sender<u64> {
    Sender::from_fds(handoff::inherited(var).expect("inherited")).expect("open the sender")
}

/// Child: producer `PRODUCER_ENV` fills its ring (its first items are all
/// in the ring before the consumer takes any), reports `filled count=F`,
/// streams the rest of its `COUNT_ENV` items, closes, and reports
/// `drained` once the consumer took them all.
pub(crate) fn role_producer() {
    let (p, count) = (env_u64(PRODUCER_ENV, 0), env_u64(COUNT_ENV, 0));
    let mut tx = inherited_sender(RING_ENV);
    let mut next = 0;
    while next < count {
        match tx.try_send_with(|slots| fill(slots, p, &mut next, count)) {
            Ok(_) => {}
            Err(Error::Full) => break,
            Err(e) => panic!("producer {p} filling its ring at {next}: {e}"),
        }
    }
    report(&format!("filled count={next}"));
    while next < count {
        if let Err(e) = tx.send_with(|slots| fill(slots, p, &mut next, count)) {
            panic!("producer {p} sending item {next}: {e}");
        }
    }
    tx.close();
    let drained = tx.wait_drained(HANG);
    report(&format!("drained count={next} result={drained:?}"));
}

/// Child: producer `PRODUCER_ENV` sends its `COUNT_ENV` items, reports
/// `ready`, and holds its ring open without a word until it is killed,
/// but for the orders `send N` (its next N items; reports `sent
/// next=<its next item>`).
pub(crate) fn role_silent() {
    let (p, count) = (env_u64(PRODUCER_ENV, 0), env_u64(COUNT_ENV, 0));
    let mut tx = inherited_sender(RING_ENV);
    let mut next = 0;
    let mut send = |tx: &mut Sender<u64>, n: u64| {
        for _ in 0..n {
            tx.send(item(p, next)).expect("send");
            next += 1;
        }
        next
    };
    send(&mut tx, count);
    report("ready");
    for order in orders() {
        match order.split_whitespace().collect::<Vec<_>>()[..] {
            ["send", n] => {
                let next = send(&mut tx, n.parse().expect("a count"));
                report(&format!("sent next={next}"));
            }
            _ => panic!("unknown order {order:?}"),
        }
    }
    park();
}

/// Spawns `role` with `rings` inherited (each under its variable), the
/// variables `vars` set and its stdin a pipe for orders.
pub(crate) fn spawn_with_rings(
    role: &str,
    rings: Vec<(&str, Fds)>,
    vars: &[(&str, String)],
) -> ChildProc {
    ChildProc::spawn(role, |command| {
        for (var, fds) in rings {
            handoff::inherit(command, var, fds);
        }
        for (key, value) in vars {
            command.env(key, value);
        }
        command.stdin(Stdio::piped());
    })
}

/// A new ring of `capacity` `u64`s whose sending end a child in `role`
/// takes, as producer `p` of `count` items.
pub(crate) fn spawn_on_sender(
    role: &str,
    p: u64,
    count: u64,
    capacity: usize,
) -> (Receiver<u64>, ChildProc) {
    let (tx, rx) = Builder::new()
        .capacity(capacity)
        .build::<u64>()
        .expect("channel");
    let vars = [
        (PRODUCER_ENV, p.to_string()),
        (COUNT_ENV, count.to_string()),
    ];
    let child = spawn_with_rings(
        role,
        vec![(RING_ENV, tx.into_fds().expect("into_fds"))],
        &vars,
    );
    (rx, child)
}
