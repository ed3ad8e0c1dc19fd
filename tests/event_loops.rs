//! The event-loop adapters with real runtimes and real child processes:
//! readiness after "would block" in edge-triggered cycles (mio and tokio),
//! a peer's close and a killed child delivered as events, the peer's
//! liveness fd registered too, 256 rings from 4 children served fairly by
//! one `mio::Poll`, cancellation of pending tokio futures without loss,
//! `AsyncRead`/`AsyncWrite`, and loops that use no CPU while idle.
//!
//! The children are this test binary run again (`child_entry`), with the
//! rings inherited (`handoff::inherit`).
//!
//! `FDRING_EDGE_CYCLES` sets the number of edge-triggered cycles (10^6 by
//! default, for mio and for tokio).

mod common;
#[path = "support/raw.rs"]
mod raw;

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::ErrorKind;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::task::Poll as TaskPoll;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    check_seq, env, env_u64, fields, read_words, report, run_shared_role, seed, start_watchdog,
    ChildProc, Rng, CHILD_ENV, HANG, NOTICE, RING_ENV, SIGKILL, STREAM_RECV, STREAM_SEND,
};
use fdring::mio::EventLoopExt;
use fdring::tokio::{AsyncReceiver, AsyncSender};
use fdring::{channel, handoff, Builder, Error, Liveness, Receiver, Sender};
use mio::{Events, Interest, Poll, Token};

/// The second ring of a child, when it has two.
const RING_B_ENV: &str = "FDRING_TEST_RING_B";
/// How many items a counting role moves.
const COUNT_ENV: &str = "FDRING_TEST_COUNT";

// ---------------------------------------------------------------------------
// The child side

/// The entry point of every child process: runs the role named in
/// `FDRING_TEST_CHILD`, or nothing when run as a plain (ignored) test.
#[test]
#[ignore = "child process entry point, spawned by the tests"]
fn child_entry() {
    let Some(role) = env(CHILD_ENV) else {
        return;
    };
    // A child never outlives a failed or hung test for long.
    start_watchdog(Duration::from_secs(300));
    if run_shared_role(&role) {
        return;
    }
    match role.as_str() {
        "echo_go" => role_echo_go(),
        "send_count_then_close" => role_send_count_then_close(),
        "recv_count_then_close" => role_recv_count_then_close(),
        "recv_count_slowly" => role_recv_count_slowly(),
        "send_count_slowly" => role_send_count_slowly(),
        "fan_in_producer" => role_fan_in_producer(),
        "idle_then_send" => role_idle_then_send(),
        "bytes_sink" => role_bytes_sink(),
        "bytes_source" => role_bytes_source(),
        "recv_without_membarrier" => role_recv_without_membarrier(),
        other => panic!("unknown child role {other}"),
    }
}

fn inherited_sender(name: &str) -> Sender<u64> {
    Sender::from_fds(handoff::inherited(name).expect("inherited")).expect("open the sender")
}

fn inherited_receiver(name: &str) -> Receiver<u64> {
    Receiver::from_fds(handoff::inherited(name).expect("inherited")).expect("open the receiver")
}

fn count() -> u64 {
    env_u64(COUNT_ENV, 1000)
}

/// The peer of an edge-triggered cycle: waits for a "go" item on ring B
/// (spinning, so that the parent's "go" costs no wake-up), then publishes
/// it on ring A, whose receiver the parent armed. Reports how many
/// wake-ups it sent on ring A: one per cycle, since every publish finds
/// the parent armed.
fn role_echo_go() {
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
fn role_send_count_then_close() {
    let mut tx = inherited_sender(RING_ENV);
    for i in 0..count() {
        tx.send(i).expect("send");
    }
    drop(tx);
    report("closed");
}

/// Receives `COUNT` items, checking them, then closes its end and exits.
fn role_recv_count_then_close() {
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
fn role_recv_count_slowly() {
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
fn role_send_count_slowly() {
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
fn role_idle_then_send() {
    let mut tx = inherited_sender(RING_ENV);
    report("ready");
    if let Some(warmup) = env("FDRING_TEST_WARMUP_MS") {
        thread::sleep(Duration::from_millis(warmup.parse().expect("ms")));
        tx.send(41).expect("send");
    }
    thread::sleep(Duration::from_millis(env_u64("FDRING_TEST_IDLE_MS", 1000)));
    tx.send(42).expect("send");
}

/// How the child of the `membarrier` tests waits: `blocking`, `tokio` or
/// `mio`.
const WAIT_ENV: &str = "FDRING_TEST_WAIT";

/// Installs a seccomp filter on every thread of this process that makes
/// `membarrier` fail with `EPERM`, as a strict sandbox would.
fn forbid_membarrier() {
    use libc::{sock_filter, sock_fprog};
    let op = |code: u32, k: u32, jt: u8, jf: u8| sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    // Load the system call number (offset 0 of `struct seccomp_data`);
    // `membarrier` returns EPERM, everything else is allowed.
    let filter = [
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            libc::SYS_membarrier as u32,
            0,
            1,
        ),
        op(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
            0,
            0,
        ),
        op(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0),
    ];
    let program = sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    rustix::thread::set_no_new_privs(true).expect("PR_SET_NO_NEW_PRIVS");
    // SAFETY: `program` points to `filter`, a valid BPF program that
    // outlives the call; the kernel copies it.
    let installed = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &program,
        )
    };
    assert_eq!(installed, 0, "seccomp: {}", std::io::Error::last_os_error());
    assert!(
        rustix::thread::membarrier(rustix::thread::MembarrierCommand::GlobalExpedited).is_err(),
        "membarrier still works under the filter"
    );
}

/// Forbids itself `membarrier`, then waits (as `FDRING_TEST_WAIT` says)
/// for one item that the parent publishes without a wake-up, as a
/// light-publishing peer's lost wake-up would look; reports it.
fn role_recv_without_membarrier() {
    forbid_membarrier();
    let mut rx = inherited_receiver(RING_ENV);
    report(&format!("ready timeout={:?}", fdring::poll_timeout()));
    // Far longer than the parent waits for the report: the item must come
    // through a bounded sleep, not through the last look at a deadline.
    let deadline = Instant::now() + HANG;
    let got = match env(WAIT_ENV).as_deref() {
        Some("blocking") => rx.recv_timeout(HANG),
        Some("tokio") => current_thread_runtime().block_on(async {
            let mut rx = AsyncReceiver::new(rx).expect("AsyncReceiver");
            tokio::time::timeout(HANG, rx.recv())
                .await
                .unwrap_or(Err(Error::Timeout))
        }),
        Some("mio") => {
            let (mut poll, mut events) = (Poll::new().expect("poll"), Events::with_capacity(4));
            poll.registry()
                .register(&mut rx, RING, Interest::READABLE)
                .expect("register");
            loop {
                match rx.try_or_arm(Receiver::try_recv) {
                    Err(Error::Empty) if Instant::now() < deadline => {
                        poll.poll(&mut events, fdring::poll_timeout())
                            .expect("poll");
                    }
                    Err(Error::Empty) => break Err(Error::Timeout),
                    other => break other,
                }
            }
        }
        other => panic!("{WAIT_ENV}={other:?}"),
    };
    report(&format!("got {got:?}"));
}

/// Reads bytes until end of file; reports their count and hash.
fn role_bytes_sink() {
    use std::io::Read;
    let mut rx =
        Receiver::<u8>::from_fds(handoff::inherited(RING_ENV).expect("inherited")).expect("open");
    let mut bytes = Vec::new();
    rx.read_to_end(&mut bytes).expect("read_to_end");
    report(&format!(
        "read len={} hash={:x}",
        bytes.len(),
        fnv1a(&bytes)
    ));
}

/// Writes `COUNT` pattern bytes in writes of random sizes, then closes.
fn role_bytes_source() {
    use std::io::Write;
    let mut tx =
        Sender::<u8>::from_fds(handoff::inherited(RING_ENV).expect("inherited")).expect("open");
    let bytes = pattern(count() as usize);
    let mut rng = Rng::new(seed());
    let mut at = 0;
    while at < bytes.len() {
        let n = rng.upto(70_000).min(bytes.len() - at);
        tx.write_all(&bytes[at..at + n]).expect("write_all");
        at += n;
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
        .collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

// ---------------------------------------------------------------------------
// Parents' helpers

/// Creates a ring and spawns `role` with the end `child_end` picks
/// inherited; returns the parent's end and the child.
fn spawn_with_sender(
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

fn spawn_with_receiver(
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

/// A child that cannot call `membarrier` waits for an item as `wait`
/// says; the parent publishes it without a wake-up (the child is armed,
/// and nothing will ever be sent on its socket). The child must see it
/// anyway: its sleeps are bounded by `poll_timeout()`, because a
/// light-publishing peer's wake-up can be lost to it.
fn a_receiver_without_membarrier_sees_an_item_published_silently(wait: &str) {
    assert_eq!(
        fdring::poll_timeout(),
        None,
        "this process can call membarrier"
    );
    let (tx, rx) = channel::<u64>(512).expect("channel");
    let fds = rx.into_fds().expect("into_fds");
    let mut child = ChildProc::spawn("recv_without_membarrier", |command| {
        handoff::inherit(command, RING_ENV, fds);
        command.env(WAIT_ENV, wait);
    });
    let ready = child.expect_line("ready", HANG);
    assert_eq!(ready, "ready timeout=Some(1ms)");
    // The sender's fds, kept open (the child sees no hang-up, no close)
    // but never written to: no wake-up will come.
    let fds = tx.into_fds().expect("into_fds");
    let raw = raw::Raw::map(&fds.memfd);
    let deadline = Instant::now() + HANG;
    while raw.u32_at(raw::CONSUMER_ARMED).load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the child never armed");
        thread::sleep(Duration::from_millis(1));
    }
    raw.put(0, 42);
    raw.write_index().store(1, Ordering::Release);
    let got = child.expect_line("got", NOTICE);
    assert_eq!(got, "got Ok(42)", "a {wait} wait missed the item");
    child.finish();
    drop(fds);
}

#[test]
fn a_blocking_receiver_without_membarrier_sees_an_item_published_silently() {
    a_receiver_without_membarrier_sees_an_item_published_silently("blocking");
}

#[test]
fn a_tokio_receiver_without_membarrier_sees_an_item_published_silently() {
    a_receiver_without_membarrier_sees_an_item_published_silently("tokio");
}

#[test]
fn a_mio_loop_without_membarrier_sees_an_item_published_silently() {
    a_receiver_without_membarrier_sees_an_item_published_silently("mio");
}

/// Polls `poll` until an event for `token` arrives; panics if none comes
/// within `within` (a missed wake-up). Returns how many polls it took.
#[track_caller]
fn wait_for(
    poll: &mut Poll,
    events: &mut Events,
    token: Token,
    within: Duration,
    what: &str,
) -> u32 {
    let deadline = Instant::now() + within;
    let mut polls = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match poll.poll(events, Some(left)) {
            Ok(()) => polls += 1,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("poll: {e}"),
        }
        if events.iter().any(|event| event.token() == token) {
            return polls;
        }
        if Instant::now() >= deadline {
            panic!("{what}: no event within {within:?}: a missed wake-up");
        }
    }
}

/// This thread's CPU time.
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Polls `future` once: `Some` with its output, or `None` if it is
/// pending (it then stays pinned where it is, with its waker registered).
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    poll_fn(|cx| {
        TaskPoll::Ready(match std::pin::Pin::new(&mut *future).poll(cx) {
            TaskPoll::Ready(output) => Some(output),
            TaskPoll::Pending => None,
        })
    })
    .await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn edge_cycles() -> u64 {
    env_u64("FDRING_EDGE_CYCLES", 1_000_000)
}

/// Spawns the peer of the edge-triggered cycles: it publishes on ring A
/// (whose receiver this returns) each item it receives on ring B (whose
/// sender this returns).
fn spawn_echo_go() -> (Receiver<u64>, Sender<u64>, ChildProc) {
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
fn finish_echo_go(go: Sender<u64>, mut child: ChildProc, cycles: u64, min_wakeups: u64) {
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

// ---------------------------------------------------------------------------
// mio: readiness after "would block"

const RING: Token = Token(7);

/// 10^6 cycles of: the ring is empty, `try_or_arm` says "would block"
/// (armed), only then does the child publish, and the edge-triggered poll
/// must report it. A missed edge is a poll that times out.
#[test]
fn mio_edge_triggered_readiness_after_would_block_is_never_missed() {
    let cycles = edge_cycles();
    let (mut rx, mut go, child) = spawn_echo_go();
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut rx, RING, Interest::READABLE)
        .expect("register");
    let mut events = Events::with_capacity(4);
    let (mut extra_polls, mut spurious) = (0u64, 0u64);
    let started = Instant::now();
    for i in 0..cycles {
        match rx.try_or_arm(Receiver::try_recv) {
            Err(Error::Empty) => {}
            other => panic!("cycle {i}: the ring must be empty and armed, got {other:?}"),
        }
        go.try_send(i).expect("go");
        loop {
            extra_polls += u64::from(
                wait_for(&mut poll, &mut events, RING, NOTICE, &format!("cycle {i}")) - 1,
            );
            match rx.try_or_arm(Receiver::try_recv) {
                Ok(item) => {
                    assert_eq!(item, i, "cycle {i}");
                    break;
                }
                // An event with nothing to take: armed again, wait again.
                Err(Error::Empty) => spurious += 1,
                Err(e) => panic!("cycle {i}: {e}"),
            }
        }
    }
    eprintln!(
        "{cycles} edge-triggered cycles in {:?}: {spurious} spurious events, {extra_polls} polls without our event",
        started.elapsed()
    );
    assert!(
        spurious <= cycles / 1000,
        "{spurious} spurious events in {cycles} cycles"
    );
    // Each item is taken only after its event, which the child sends after
    // taking our armed word: every one of its publishes found us armed.
    finish_echo_go(go, child, cycles, cycles);
}

/// A sender registered in mio: the ring is full ("would block" armed),
/// the child consumes slowly, and every wait ends with an event; all items
/// arrive, in order (the child checks).
#[test]
fn mio_sender_edge_triggered_stream_to_a_slow_child() {
    let total = 200_000;
    let (mut tx, child) = spawn_with_receiver("recv_count_slowly", |command| {
        command.env(COUNT_ENV, total.to_string());
    });
    let mut child = child;
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut tx, RING, Interest::WRITABLE)
        .expect("register");
    let mut events = Events::with_capacity(4);
    let (mut next, mut waits) = (0u64, 0u64);
    let mut rng = Rng::new(seed());
    while next < total {
        let sent = tx.try_or_arm(|tx| {
            tx.try_send_with(|slots: &mut [MaybeUninit<u64>]| {
                let n = rng.take(slots.len()).min((total - next) as usize);
                for (k, slot) in slots[..n].iter_mut().enumerate() {
                    slot.write(next + k as u64);
                }
                n
            })
        });
        match sent {
            Ok(n) => next += n as u64,
            Err(Error::Full) => {
                waits += 1;
                wait_for(
                    &mut poll,
                    &mut events,
                    RING,
                    NOTICE,
                    &format!("full at item {next}"),
                );
            }
            Err(e) => panic!("at item {next}: {e}"),
        }
    }
    let line = child.expect_line("received", HANG);
    assert_eq!(fields(&line)["count"], total.to_string());
    assert!(waits > 0, "the ring never filled: the test proved nothing");
    drop(tx);
    child.finish();
    eprintln!("{total} items, {waits} waits for a full ring");
}

/// Drains until "would block", then waits for an event: `items` must
/// arrive in order, then `Disconnected` as the answer to an event. Returns
/// how many waits there were.
#[track_caller]
fn serve_until_disconnected(
    rx: &mut Receiver<u64>,
    poll: &mut Poll,
    expected: u64,
    within: Duration,
) -> u64 {
    let mut events = Events::with_capacity(4);
    let (mut next, mut waits) = (0u64, 0u64);
    loop {
        match rx.try_or_arm(Receiver::try_recv) {
            Ok(item) => {
                assert_eq!(item, next);
                next += 1;
            }
            Err(Error::Empty) => {
                waits += 1;
                wait_for(
                    poll,
                    &mut events,
                    RING,
                    within,
                    &format!("after item {next}"),
                );
            }
            Err(Error::Disconnected) => break,
            Err(e) => panic!("after item {next}: {e}"),
        }
    }
    assert_eq!(next, expected, "every item, then Disconnected");
    waits
}

/// A child sends 1000 items and closes its end while the parent's loop
/// sleeps: the close is an event, and the next call `Disconnected`.
#[test]
fn mio_disconnect_is_delivered_as_an_event_to_a_receiver() {
    let (mut rx, mut child) = spawn_with_sender("send_count_then_close", |command| {
        command.env(COUNT_ENV, "1000");
    });
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut rx, RING, Interest::READABLE)
        .expect("register");
    // Take everything, then sleep until the close: the loop must end.
    let waits = serve_until_disconnected(&mut rx, &mut poll, 1000, NOTICE);
    assert!(waits > 0);
    child.expect_line("closed", HANG);
    child.finish();
    poll.registry().deregister(&mut rx).expect("deregister");
}

/// The same for a sender waiting on a full ring: the receiver takes 10
/// items and closes; the waiting loop gets an event, then `Disconnected`.
#[test]
fn mio_disconnect_is_delivered_as_an_event_to_a_sender() {
    let (mut tx, mut child) = spawn_with_receiver("recv_count_then_close", |command| {
        command.env(COUNT_ENV, "10");
    });
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut tx, RING, Interest::READABLE)
        .expect("register");
    let mut events = Events::with_capacity(4);
    let (mut next, mut waits) = (0u64, 0u64);
    let end = loop {
        match tx.try_or_arm(|tx| tx.try_send(next)) {
            Ok(()) => next += 1,
            Err(Error::Full) => {
                waits += 1;
                wait_for(&mut poll, &mut events, RING, NOTICE, "full");
            }
            Err(e) => break e,
        }
    };
    assert_eq!(end, Error::Disconnected);
    // A sender sees the close at once, whether or not the ring has room.
    let capacity = tx.capacity() as u64;
    assert!(
        (capacity..=capacity + 10).contains(&next),
        "sent {next} items into a ring of {capacity} of which 10 were taken"
    );
    assert!(
        waits > 0,
        "the sender never waited: the test proved nothing"
    );
    child.expect_line("closed", HANG);
    child.finish();
}

/// A child streaming into the ring is killed; the parent's loop, asleep
/// or not, gets an event (the wake-up socket hangs up), then every item
/// the child had published, then `Disconnected`.
#[test]
fn mio_killed_producer_is_noticed_by_the_loop() {
    let (tx, mut rx) = channel::<u64>(512).expect("channel");
    let fds = tx.into_fds().expect("into_fds");
    let memfd = fds.memfd.try_clone().expect("dup the memfd");
    let mut child = ChildProc::spawn(STREAM_SEND, |command| {
        handoff::inherit(command, RING_ENV, fds);
    });
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut rx, RING, Interest::READABLE)
        .expect("register");
    let mut events = Events::with_capacity(4);
    let mut next = 0u64;
    let mut killed: Option<Instant> = None;
    loop {
        let got = rx.try_or_arm(|rx| {
            rx.try_recv_with(|items| {
                check_seq(items, next);
                items.len()
            })
        });
        match got {
            Ok(n) => next += n as u64,
            Err(Error::Empty) => {
                wait_for(
                    &mut poll,
                    &mut events,
                    RING,
                    NOTICE,
                    &format!("after item {next}"),
                );
            }
            Err(Error::Disconnected) => break,
            Err(e) => panic!("after item {next}: {e}"),
        }
        if killed.is_none() && next >= 100_000 {
            killed = Some(Instant::now());
            child.kill();
        }
    }
    let noticed = killed.expect("killed").elapsed();
    assert!(noticed < NOTICE, "the death was noticed after {noticed:?}");
    assert_eq!(
        read_words(&memfd).write_index,
        next,
        "every published item, and no more"
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait_within(HANG).signal(), Some(SIGKILL));
}

/// A child consuming the ring is killed while the parent's loop waits on a
/// full ring: the hang-up is an event, and the next send `Disconnected`.
#[test]
fn mio_killed_consumer_is_noticed_by_the_loop() {
    let (mut tx, mut child) = spawn_with_receiver(STREAM_RECV, |_| {});
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut tx, RING, Interest::READABLE)
        .expect("register");
    let mut events = Events::with_capacity(4);
    let mut next = 0u64;
    let mut killed: Option<Instant> = None;
    let end = loop {
        match tx.try_or_arm(|tx| tx.try_send(next)) {
            Ok(()) => next += 1,
            Err(Error::Full) => {
                wait_for(
                    &mut poll,
                    &mut events,
                    RING,
                    NOTICE,
                    &format!("full at {next}"),
                );
            }
            Err(e) => break e,
        }
        if killed.is_none() && next >= 100_000 {
            killed = Some(Instant::now());
            child.kill();
        }
    };
    assert_eq!(end, Error::Disconnected);
    let noticed = killed.expect("killed").elapsed();
    assert!(noticed < NOTICE, "the death was noticed after {noticed:?}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait_within(HANG).signal(), Some(SIGKILL));
}

/// When the peer's socket end outlives it (here the parent keeps a copy,
/// as a `Command` not yet dropped would), the ring never hangs up; the
/// watched liveness (a pidfd) is registered with the end, so the death is
/// an event all the same.
#[test]
fn mio_registers_the_watched_liveness_so_a_death_is_an_event() {
    let (tx, mut rx) = channel::<u64>(512).expect("channel");
    let fds = tx.into_fds().expect("into_fds");
    // The copy that keeps the child's socket end open in this process.
    let stray: OwnedFd = fds
        .wake
        .try_clone()
        .expect("dup the child's wake-up socket");
    let mut child = ChildProc::spawn("idle_then_send", |command| {
        handoff::inherit(command, RING_ENV, fds);
        command.env("FDRING_TEST_IDLE_MS", "600000");
    });
    child.expect_line("ready", HANG);
    rx.watch_peer(Liveness::child(&child.child).expect("pidfd"));
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut rx, RING, Interest::READABLE)
        .expect("register");
    let mut events = Events::with_capacity(4);
    assert_eq!(rx.try_or_arm(Receiver::try_recv), Err(Error::Empty));
    // Nothing happens while the child lives.
    poll.poll(&mut events, Some(Duration::from_millis(200)))
        .expect("poll");
    assert!(events.is_empty(), "an event while the child idles");
    let killed = Instant::now();
    child.kill();
    wait_for(&mut poll, &mut events, RING, NOTICE, "after the kill");
    assert_eq!(rx.try_or_arm(Receiver::try_recv), Err(Error::Disconnected));
    assert!(killed.elapsed() < NOTICE);
    poll.registry()
        .deregister(&mut rx)
        .expect("deregister both fds");
    drop(stray);
}

/// An end can move between polls: deregistered from one, registered in
/// another (with a new token), its events go to the second only; and a
/// liveness watched after `register` is added by `reregister`.
#[test]
fn mio_deregister_then_register_elsewhere() {
    let (mut tx, mut rx) = channel::<u64>(512).expect("channel");
    let (mut first, mut second) = (Poll::new().expect("Poll"), Poll::new().expect("Poll"));
    let mut events = Events::with_capacity(4);
    first
        .registry()
        .register(&mut rx, Token(1), Interest::READABLE)
        .expect("register");
    first.registry().deregister(&mut rx).expect("deregister");
    second
        .registry()
        .register(&mut rx, Token(2), Interest::READABLE)
        .expect("register");
    assert_eq!(rx.try_or_arm(Receiver::try_recv), Err(Error::Empty));
    tx.send(5).expect("send");
    first
        .poll(&mut events, Some(Duration::from_millis(50)))
        .expect("poll");
    assert!(events.is_empty(), "the first poll no longer hears of it");
    wait_for(
        &mut second,
        &mut events,
        Token(2),
        NOTICE,
        "in the second poll",
    );
    assert_eq!(rx.try_recv(), Ok(5));

    // A liveness watched after `register`: `reregister` adds it.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    rx.watch_peer(Liveness::socket(ours));
    second
        .registry()
        .reregister(&mut rx, Token(3), Interest::READABLE)
        .expect("reregister");
    assert_eq!(rx.try_or_arm(Receiver::try_recv), Err(Error::Empty));
    drop(theirs);
    wait_for(
        &mut second,
        &mut events,
        Token(3),
        NOTICE,
        "the liveness hung up",
    );
    assert_eq!(rx.try_or_arm(Receiver::try_recv), Err(Error::Disconnected));
    second.registry().deregister(&mut rx).expect("deregister");
    drop(tx);
}

// ---------------------------------------------------------------------------
// Fan-in: 256 rings from 4 children, one poll

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
fn role_fan_in_producer() {
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

// ---------------------------------------------------------------------------
// tokio

/// The tokio version of the edge-triggered cycles: each `recv()` future is
/// polled once (it finds the ring empty, arms, and returns `Pending`), only
/// then is the child told to publish, and the future must complete.
#[test]
fn tokio_readiness_after_would_block_is_never_missed() {
    let cycles = edge_cycles();
    let (rx, mut go, child) = spawn_echo_go();
    let started = Instant::now();
    current_thread_runtime().block_on(async {
        let mut rx = AsyncReceiver::new(rx).expect("AsyncReceiver");
        for i in 0..cycles {
            let mut recv = pin!(rx.recv());
            assert!(
                poll_once(&mut recv).await.is_none(),
                "cycle {i}: the ring must be empty, the call pending"
            );
            go.try_send(i).expect("go");
            let item = tokio::time::timeout(NOTICE, recv)
                .await
                .unwrap_or_else(|_| {
                    panic!("cycle {i}: not woken within {NOTICE:?}: a missed wake-up")
                });
            assert_eq!(item, Ok(i), "cycle {i}");
        }
    });
    eprintln!("{cycles} tokio cycles in {:?}", started.elapsed());
    // Not exactly one wake-up per cycle here: a retry may take item k after
    // the child stored its index but before it took our armed word; that
    // late take then consumes the arming of cycle k + 1, whose publish sends
    // nothing, and the byte sent for k wakes the task for k + 1 instead. No
    // wake-up is lost (every future above completed in time); rarely, one is
    // shared by two cycles.
    finish_echo_go(go, child, cycles, cycles - cycles / 1000);
}

/// Pending `recv`, `recv_with` and `recv_slice` futures are dropped over
/// and over (after one poll, after a timeout, as the losing branch of a
/// `select!`) while a child streams 200,000 items with pauses: every item
/// arrives exactly once, in order.
#[test]
fn tokio_cancelled_receives_lose_nothing() {
    let total = 200_000u64;
    let (rx, mut child) = spawn_with_sender("send_count_slowly", |command| {
        command.env(COUNT_ENV, total.to_string());
    });
    let (next, cancelled) = runtime().block_on(async {
        let mut rx = AsyncReceiver::new(rx).expect("AsyncReceiver");
        let mut rng = Rng::new(seed());
        let (mut next, mut cancelled) = (0u64, 0u64);
        let mut buf = vec![0u64; 1000];
        loop {
            let step = rng.next_u64() % 6;
            let got: Option<Result<usize, Error>> = match step {
                // Polled once, then dropped if pending.
                0 => poll_once(&mut pin!(rx.recv())).await.map(|r| {
                    r.map(|item| {
                        assert_eq!(item, next);
                        1
                    })
                }),
                1 => {
                    let mut recv = pin!(rx.recv_with(|items: &[u64]| {
                        let n = items.len().min(700);
                        check_seq(&items[..n], next);
                        n
                    }));
                    poll_once(&mut recv).await
                }
                // A timeout that often fires first.
                2 => tokio::time::timeout(
                    Duration::from_micros(rng.range(0, 3000)),
                    rx.recv_slice(&mut buf),
                )
                .await
                .ok()
                .map(|r| r.inspect(|&n| check_seq(&buf[..n], next))),
                // The losing branch of a `select!`.
                3 => tokio::select! {
                    got = rx.recv() => Some(got.map(|item| { assert_eq!(item, next); 1 })),
                    () = tokio::time::sleep(Duration::from_micros(rng.range(0, 2000))) => None,
                },
                // Awaited to the end.
                _ => Some(
                    rx.recv_with(|items: &[u64]| {
                        check_seq(items, next);
                        items.len()
                    })
                    .await,
                ),
            };
            match got {
                Some(Ok(n)) => next += n as u64,
                Some(Err(Error::Disconnected)) => break,
                Some(Err(e)) => panic!("after item {next}: {e}"),
                None => cancelled += 1,
            }
        }
        (next, cancelled)
    });
    assert_eq!(next, total, "every item exactly once");
    assert!(
        cancelled >= 20,
        "only {cancelled} cancellations: the test proved little"
    );
    child.expect_line("sent", HANG);
    child.finish();
    eprintln!("{total} items, {cancelled} receives cancelled");
}

/// Pending `send` and `send_with` futures are dropped over and over while
/// a child consumes slowly; the item of a cancelled `send` is sent again.
/// The child checks that it got `0..200,000` exactly once, in order.
#[test]
fn tokio_cancelled_sends_lose_and_repeat_nothing() {
    let total = 200_000u64;
    let (tx, mut child) = spawn_with_receiver("recv_count_slowly", |command| {
        command.env(COUNT_ENV, total.to_string());
    });
    let cancelled = runtime().block_on(async {
        let mut tx = AsyncSender::new(tx).expect("AsyncSender");
        let mut rng = Rng::new(seed());
        let (mut next, mut cancelled) = (0u64, 0u64);
        while next < total {
            let left = (total - next) as usize;
            let step = rng.next_u64() % 5;
            let sent: Option<Result<usize, Error>> = match step {
                0 => poll_once(&mut pin!(tx.send(next)))
                    .await
                    .map(|r| r.map(|()| 1)),
                1 => {
                    let from = next;
                    let mut send = pin!(tx.send_with(|slots: &mut [MaybeUninit<u64>]| {
                        let n = slots.len().min(500).min(left);
                        for (k, slot) in slots[..n].iter_mut().enumerate() {
                            slot.write(from + k as u64);
                        }
                        n
                    }));
                    poll_once(&mut send).await
                }
                2 => tokio::select! {
                    sent = tx.send(next) => Some(sent.map(|()| 1)),
                    () = tokio::time::sleep(Duration::from_micros(rng.range(0, 2000))) => None,
                },
                3 => tokio::time::timeout(Duration::from_micros(rng.range(0, 3000)), tx.send(next))
                    .await
                    .ok()
                    .map(|r| r.map(|()| 1)),
                _ => Some(tx.send(next).await.map(|()| 1)),
            };
            match sent {
                Some(Ok(n)) => next += n as u64,
                Some(Err(e)) => panic!("at item {next}: {e}"),
                None => cancelled += 1,
            }
        }
        tx.close();
        cancelled
    });
    let line = child.expect_line("received", HANG);
    assert_eq!(fields(&line)["count"], total.to_string());
    child.finish();
    assert!(
        cancelled >= 20,
        "only {cancelled} cancellations: the test proved little"
    );
    eprintln!("{total} items, {cancelled} sends cancelled");
}

/// A child producer killed while a task awaits `recv`: the task gets every
/// published item, then `Disconnected`, within `NOTICE`; with the child's
/// socket end kept open here, through the watched pidfd.
#[test]
fn tokio_killed_children_are_noticed() {
    for keep_socket_open in [false, true] {
        let (tx, mut rx) = channel::<u64>(512).expect("channel");
        let fds = tx.into_fds().expect("into_fds");
        let memfd = fds.memfd.try_clone().expect("dup the memfd");
        let stray = keep_socket_open.then(|| fds.wake.try_clone().expect("dup"));
        let mut child = ChildProc::spawn(STREAM_SEND, |command| {
            handoff::inherit(command, RING_ENV, fds);
        });
        if keep_socket_open {
            rx.watch_peer(Liveness::child(&child.child).expect("pidfd"));
        }
        let (next, noticed) = runtime().block_on(async {
            let mut rx = AsyncReceiver::new(rx).expect("AsyncReceiver");
            let mut next = 0u64;
            let mut killed: Option<Instant> = None;
            loop {
                let got = tokio::time::timeout(
                    NOTICE,
                    rx.recv_with(|items: &[u64]| {
                        check_seq(items, next);
                        items.len()
                    }),
                )
                .await
                .unwrap_or_else(|_| {
                    panic!("no item and no Disconnected within {NOTICE:?} after item {next}")
                });
                match got {
                    Ok(n) => next += n as u64,
                    Err(Error::Disconnected) => break,
                    Err(e) => panic!("{e}"),
                }
                if killed.is_none() && next >= 100_000 {
                    killed = Some(Instant::now());
                    child.kill();
                }
            }
            (next, killed.expect("killed").elapsed())
        });
        assert!(noticed < NOTICE);
        assert_eq!(read_words(&memfd).write_index, next, "every published item");
        drop(stray);
    }

    // And a sender waiting on a full ring for a consumer that is killed.
    let (tx, mut child) = spawn_with_receiver(STREAM_RECV, |_| {});
    let end = runtime().block_on(async {
        let mut tx = AsyncSender::new(tx).expect("AsyncSender");
        let mut next = 0u64;
        loop {
            match tokio::time::timeout(NOTICE, tx.send(next)).await {
                Ok(Ok(())) => next += 1,
                Ok(Err(e)) => return e,
                Err(_) => panic!("send neither completed nor failed within {NOTICE:?}"),
            }
            if next == 50_000 {
                child.kill();
            }
        }
    });
    assert_eq!(end, Error::Disconnected);
}

/// Bytes both ways between tokio and a child: `AsyncWrite` (`write_all`,
/// `shutdown`) into a child reading to end of file, and `AsyncRead`
/// (`read_to_end`) from a child writing in odd sizes.
#[test]
fn tokio_async_write_and_read_with_children() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let len = 3_000_000usize;
    let bytes = pattern(len);

    let (tx, rx) = channel::<u8>(64 * 1024).expect("channel");
    let fds = rx.into_fds().expect("into_fds");
    let mut sink = ChildProc::spawn("bytes_sink", |command| {
        handoff::inherit(command, RING_ENV, fds);
    });
    let (tx2, rx2) = channel::<u8>(64 * 1024).expect("channel");
    let fds = tx2.into_fds().expect("into_fds");
    let source = ChildProc::spawn("bytes_source", |command| {
        handoff::inherit(command, RING_ENV, fds);
        command.env(COUNT_ENV, len.to_string());
    });
    let got = runtime().block_on(async {
        let mut tx = AsyncSender::new(tx).expect("AsyncSender");
        let mut rx = AsyncReceiver::new(rx2).expect("AsyncReceiver");
        let written = bytes.clone();
        let writer = tokio::spawn(async move {
            let mut rng = Rng::new(seed());
            let mut at = 0;
            while at < written.len() {
                let n = rng.upto(100_000).min(written.len() - at);
                tx.write_all(&written[at..at + n]).await.expect("write_all");
                at += n;
            }
            tx.shutdown().await.expect("shutdown");
            assert_eq!(
                tx.write(b"x").await.map_err(|e| e.kind()),
                Err(ErrorKind::BrokenPipe),
                "writes after shutdown fail"
            );
        });
        let mut got = Vec::new();
        rx.read_to_end(&mut got).await.expect("read_to_end");
        writer.await.expect("writer");
        got
    });
    assert!(got == bytes, "the bytes read differ from the bytes written");
    let line = sink.expect_line("read", HANG);
    let fields = fields(&line);
    assert_eq!(fields["len"], len.to_string());
    assert_eq!(fields["hash"], format!("{:x}", fnv1a(&bytes)));
    sink.finish();
    source.finish();
}

// ---------------------------------------------------------------------------
// No busy-looping while idle

/// The longest CPU time a loop thread may use while it waits a second for
/// an idle peer: far above the few microseconds of one wake-up, far below
/// a spin (a spinning thread would use the whole second).
const IDLE_CPU_LIMIT: Duration = Duration::from_millis(20);

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
