//! No busy-looping while idle: a mio loop and a tokio task that wait a
//! second for an idle child use almost no CPU.

use std::future::poll_fn;
use std::time::{Duration, Instant};

use crate::common::HANG;
use crate::peers::spawn_with_sender;
use crate::runtimes::{current_thread_runtime, wait_for, RING};
use fdring::mio::EventLoopExt;
use fdring::tokio::AsyncReceiver;
use fdring::{Error, Liveness, Receiver};
use mio::{Events, Interest, Poll};

/// This thread's CPU time.
pub(crate) fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The longest CPU time a loop thread may use while it waits a second for
/// an idle peer: far above the few microseconds of one wake-up, far below
/// a spin (a spinning thread would use the whole second).
pub(crate) const IDLE_CPU_LIMIT: Duration = Duration::from_millis(20);

/// An idle child keeps a ring open (and is watched through a pidfd too)
/// for a second, after one item that woke the loop: the mio loop thread
/// sleeps in `poll` and uses no CPU until the child's next item arrives.
#[test]
fn idle_mio_loop_uses_no_cpu() {
    let (mut rx, mut child) = spawn_with_sender("idle_then_send", |command| {
        command
            .env("FDRING_TEST_WARMUP_MS", "100")
            .env("FDRING_TEST_IDLE_MS", "1000");
    });
    child.expect_line("ready", HANG);
    rx.watch_peer(Liveness::child(&child.child).expect("pidfd"));
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut rx, RING, Interest::READABLE)
        .expect("register");
    let mut events = Events::with_capacity(4);
    let mut next_item = |polls: &mut u32| loop {
        match rx.try_or_arm(Receiver::try_recv) {
            Ok(item) => return item,
            Err(Error::Empty) => *polls += wait_for(&mut poll, &mut events, RING, HANG, "idle"),
            Err(e) => panic!("{e}"),
        }
    };
    let mut polls = 0;
    assert_eq!(next_item(&mut polls), 41, "the first item, after a wait");
    assert!(polls >= 1, "the loop never waited for the first item");
    let (cpu_before, started) = (thread_cpu_time(), Instant::now());
    polls = 0;
    let item = next_item(&mut polls);
    let (cpu, waited) = (thread_cpu_time() - cpu_before, started.elapsed());
    assert_eq!(item, 42);
    eprintln!("mio loop idle for {waited:?}: {cpu:?} of CPU, {polls} polls");
    assert!(
        waited >= Duration::from_millis(900),
        "the child did not idle"
    );
    assert!(
        cpu < IDLE_CPU_LIMIT,
        "the idle loop used {cpu:?} of CPU in {waited:?}"
    );
    assert!(polls <= 3, "{polls} polls while idle: the loop spins");
    child.finish();
}

/// The same for a task awaiting `recv` on a current-thread runtime, after
/// a first item that woke it (so that the reactor had reported the socket
/// readable once): the runtime's thread uses no CPU while the ring is idle.
#[test]
fn idle_tokio_task_uses_no_cpu() {
    let (mut rx, mut child) = spawn_with_sender("idle_then_send", |command| {
        command
            .env("FDRING_TEST_WARMUP_MS", "100")
            .env("FDRING_TEST_IDLE_MS", "1000");
    });
    child.expect_line("ready", HANG);
    rx.watch_peer(Liveness::child(&child.child).expect("pidfd"));
    let (first, item, cpu, waited, polls) = current_thread_runtime().block_on(async {
        let mut rx = AsyncReceiver::new(rx).expect("AsyncReceiver");
        let first = rx.recv().await;
        let (cpu_before, started) = (thread_cpu_time(), Instant::now());
        let mut polls = 0u32;
        let item = poll_fn(|cx| {
            polls += 1;
            rx.poll_recv(cx)
        })
        .await;
        (
            first,
            item,
            thread_cpu_time() - cpu_before,
            started.elapsed(),
            polls,
        )
    });
    assert_eq!((first, item), (Ok(41), Ok(42)));
    eprintln!("tokio task idle for {waited:?}: {cpu:?} of CPU, {polls} polls");
    assert!(
        waited >= Duration::from_millis(900),
        "the child did not idle"
    );
    assert!(
        cpu < IDLE_CPU_LIMIT,
        "the idle task used {cpu:?} of CPU in {waited:?}"
    );
    assert!(polls <= 3, "{polls} polls while idle: the task spins");
    child.finish();
}
