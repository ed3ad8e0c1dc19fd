//! The child roles several tests share, and how the parent starts them:
//! producers of a merge, consumers steered by orders, and the workers of a
//! pool, each on rings it inherits.

use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use crate::common::{env_u64, orders, park, report, word_of, ChildProc, HANG, RING_ENV};
use fdring::{handoff, Builder, Error, Fds, Receiver, Sender};

/// A producer of a merge: fills its ring, then streams, closes and waits
/// until its items were taken.
pub(crate) const PRODUCER: &str = "producer";
/// A producer that sends a few items, then holds its ring and says nothing.
pub(crate) const SILENT: &str = "silent";
/// A consumer that takes items when told to.
pub(crate) const CONSUMER: &str = "consumer";
/// A worker of a pool: answers each job with its id.
pub(crate) const WORKER: &str = "worker";

/// Which producer a child is (the top bits of its items).
pub(crate) const PRODUCER_ENV: &str = "FDRING_TOPO_PRODUCER";
/// How many items a child produces.
pub(crate) const COUNT_ENV: &str = "FDRING_TEST_COUNT";
/// The job ring of a worker.
const JOBS_ENV: &str = "FDRING_TOPO_JOB_RING";
/// The reply ring of a worker.
const REPLIES_ENV: &str = "FDRING_TOPO_REPLY_RING";
/// A worker's pause per job, in microseconds (0: none), and the most jobs
/// it copies out at once.
const PAUSE_US_ENV: &str = "FDRING_TOPO_PAUSE_US";
const BATCH_ENV: &str = "FDRING_TOPO_BATCH";

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

pub(crate) fn inherited_receiver(var: &str) -> Receiver<u64> {
    Receiver::from_fds(handoff::inherited(var).expect("inherited")).expect("open the receiver")
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

/// Child: opens its receiving end, reports `ready`, then follows orders:
/// `take N` (receives N items, reports `took count=<total so far>`),
/// `sleep MS`, and `drain MS` (receives until the stream ends, sleeping
/// MS between items, and reports `end count=<total> err=<why>
/// items=<every item received, if at most 1000>`).
pub(crate) fn role_consumer() {
    let mut rx = inherited_receiver(RING_ENV);
    let mut got = Vec::new();
    report("ready");
    for order in orders() {
        match order.split_whitespace().collect::<Vec<_>>()[..] {
            ["take", n] => {
                for _ in 0..n.parse::<u64>().expect("a count") {
                    got.push(rx.recv().expect("take"));
                }
                report(&format!("took count={}", got.len()));
            }
            ["sleep", ms] => thread::sleep(Duration::from_millis(ms.parse().expect("ms"))),
            ["drain", ms] => {
                let pause = Duration::from_millis(ms.parse().expect("ms"));
                let end = loop {
                    match rx.recv() {
                        Ok(item) => got.push(item),
                        Err(e) => break e,
                    }
                    thread::sleep(pause);
                };
                let items = if got.len() <= 1000 {
                    let items: Vec<String> = got.iter().map(u64::to_string).collect();
                    items.join(",")
                } else {
                    "...".to_owned()
                };
                report(&format!(
                    "end count={} err={end:?} items={items}",
                    got.len()
                ));
                return;
            }
            _ => panic!("unknown order {order:?}"),
        }
    }
    park();
}

/// Child: a worker of a pool. Copies jobs out of its job ring (with
/// `recv_slice`, up to `BATCH_ENV` at once, never acting inside a
/// closure that lends them), sleeps `PAUSE_US_ENV` per job, and answers
/// each with its id on its reply ring, until the pool closes the job ring.
pub(crate) fn role_worker() {
    let mut jobs = inherited_receiver(JOBS_ENV);
    let mut replies = inherited_sender(REPLIES_ENV);
    let pause = Duration::from_micros(env_u64(PAUSE_US_ENV, 0));
    let mut buf = vec![0u64; env_u64(BATCH_ENV, 256) as usize];
    let mut answered = 0u64;
    loop {
        let n = match jobs.recv_slice(&mut buf) {
            Ok(n) => n,
            Err(Error::Disconnected) => break,
            Err(e) => panic!("worker taking jobs: {e}"),
        };
        if !pause.is_zero() {
            thread::sleep(pause * n as u32);
        }
        match replies.send_slice(&buf[..n]) {
            Ok(()) => answered += n as u64,
            Err(Error::Disconnected) => break,
            Err(e) => panic!("worker answering: {e}"),
        }
    }
    report(&format!("done answered={answered}"));
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

/// A new ring of `capacity` `u64`s whose receiving end a child in `role`
/// takes: our sender, the child, and a copy of the memfd (to read what the
/// child really consumed).
pub(crate) fn spawn_on_receiver(
    role: &str,
    capacity: usize,
    vars: &[(&str, String)],
) -> (Sender<u64>, ChildProc, OwnedFd) {
    let (tx, rx) = Builder::new()
        .capacity(capacity)
        .build::<u64>()
        .expect("channel");
    let fds = rx.into_fds().expect("into_fds");
    let memfd = fds.memfd.try_clone().expect("dup the memfd");
    let child = spawn_with_rings(role, vec![(RING_ENV, fds)], vars);
    (tx, child, memfd)
}

/// A consumer child (`role_consumer`) on a new ring, ready for orders.
pub(crate) fn spawn_consumer(capacity: usize) -> (Sender<u64>, ChildProc, OwnedFd) {
    let (tx, mut child, memfd) = spawn_on_receiver(CONSUMER, capacity, &[]);
    child.expect_line("ready", HANG);
    (tx, child, memfd)
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

/// A worker child (`role_worker`) with a job ring and a reply ring of
/// `capacity` each, that works `pause` per job: our job sender, our reply
/// receiver, the child, and a copy of the job ring's memfd.
pub(crate) fn spawn_worker(
    capacity: usize,
    pause: Duration,
    batch: usize,
) -> (Sender<u64>, Receiver<u64>, ChildProc, OwnedFd) {
    let builder = Builder::new().capacity(capacity);
    let (jobs_tx, jobs_rx) = builder.build::<u64>().expect("job ring");
    let (replies_tx, replies_rx) = builder.build::<u64>().expect("reply ring");
    let jobs_fds = jobs_rx.into_fds().expect("into_fds");
    let memfd = jobs_fds.memfd.try_clone().expect("dup the memfd");
    let child = spawn_with_rings(
        WORKER,
        vec![
            (JOBS_ENV, jobs_fds),
            (REPLIES_ENV, replies_tx.into_fds().expect("into_fds")),
        ],
        &[
            (PAUSE_US_ENV, pause.as_micros().to_string()),
            (BATCH_ENV, batch.to_string()),
        ],
    );
    (jobs_tx, replies_rx, child, memfd)
}

/// The items a consumer's `end` line lists.
#[track_caller]
pub(crate) fn items_of(line: &str) -> Vec<u64> {
    let items = word_of(line, "items");
    if items.is_empty() {
        return Vec::new();
    }
    items
        .split(',')
        .map(|i| i.parse().expect("an item"))
        .collect()
}
