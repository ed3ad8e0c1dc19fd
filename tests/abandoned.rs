//! An end learns that its peer is gone without waiting: the non-blocking
//! calls of a producer (`try_send`, `offer_frame_with`) and of a consumer
//! (`try_recv`) return `Disconnected` after the peer's process was killed
//! with SIGKILL (so it never stored its closed word), and `is_abandoned()`
//! on every end type tells a peer that closed or died from one that lives.
//!
//! The peer is a real child process (this test binary in a role), holding
//! its end of a real memfd and wake-up socket; the parent is the survivor
//! under test. Nothing here asserts on speed: a call that never notices
//! the death fails at a generous deadline (`NOTICE`).

mod common;

use std::io::Write;
use std::process::{ChildStdin, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use common::{
    assert_killed, env, env_u64, park, report, start_watchdog, ChildProc, CHILD_ENV, HANG, NOTICE,
    RING_ENV,
};
use fdring::{channel, handoff, Error, Fds, FrameReceiver, FrameSender, Receiver, Sender};

/// The entry point of every child process: runs the role named in
/// `FDRING_TEST_CHILD`, or nothing when run as a plain (ignored) test.
#[test]
#[ignore = "child process entry point, spawned by the tests"]
fn child_entry() {
    let Some(role) = env(CHILD_ENV) else {
        return;
    };
    start_watchdog(Duration::from_secs(120));
    match role.as_str() {
        "hold-sender-u64" => hold_sender::<u64>(),
        "hold-receiver-u64" => hold_receiver::<u64>(),
        "hold-sender-u8" => hold_sender::<u8>(),
        "hold-receiver-u8" => hold_receiver::<u8>(),
        other => panic!("unknown child role {other}"),
    }
}

/// The item at position `i` of a child's stream.
fn item<T: Pod>(i: u64) -> T {
    let bytes = i.to_ne_bytes();
    let mut item = T::zeroed();
    let out = bytemuck::bytes_of_mut(&mut item);
    let n = out.len().min(8);
    out[..n].copy_from_slice(&bytes[..n]);
    item
}

/// Child: opens the sending end it inherited, sends `FDRING_TEST_COUNT`
/// items, reports `ready`, then follows the parent's orders on stdin
/// (`send N`, `drop`) until it is killed.
fn hold_sender<T: Pod>() {
    let mut tx = Sender::<T>::from_fds(handoff::inherited(RING_ENV).expect("inherited"))
        .expect("open the sender");
    let mut next = 0;
    let send = |tx: &mut Sender<T>, next: &mut u64, count: u64| {
        for _ in 0..count {
            tx.send(item(*next)).expect("send");
            *next += 1;
        }
    };
    send(&mut tx, &mut next, env_u64("FDRING_TEST_COUNT", 0));
    report("ready");
    for order in orders() {
        match order.split_whitespace().collect::<Vec<_>>()[..] {
            ["send", count] => {
                send(&mut tx, &mut next, count.parse().expect("a count"));
                report(&format!("sent next={next}"));
            }
            ["drop"] => {
                drop(tx);
                report("dropped");
                park();
            }
            _ => panic!("unknown order {order:?}"),
        }
    }
    park();
}

/// Child: opens the receiving end it inherited, receives
/// `FDRING_TEST_COUNT` items (checking them), reports `ready`, then
/// follows the parent's orders on stdin (`drop`) until it is killed.
fn hold_receiver<T: Pod + PartialEq + std::fmt::Debug>() {
    let mut rx = Receiver::<T>::from_fds(handoff::inherited(RING_ENV).expect("inherited"))
        .expect("open the receiver");
    for i in 0..env_u64("FDRING_TEST_COUNT", 0) {
        assert_eq!(rx.recv().expect("recv"), item::<T>(i));
    }
    report("ready");
    if let Some(order) = orders().next() {
        assert_eq!(order, "drop", "unknown order");
        drop(rx);
        report("dropped");
    }
    park();
}

/// The lines the parent writes to this child's stdin, until it closes it.
fn orders() -> impl Iterator<Item = String> {
    std::io::stdin().lines().map_while(Result::ok)
}

/// A child holding the peer of the parent's end: `role` opens the bundle
/// `fds`, after `count` items sent or received it reports `ready`.
struct Peer {
    child: ChildProc,
    orders: ChildStdin,
}

impl Peer {
    fn spawn(role: &str, fds: Fds, count: u64) -> Peer {
        let mut child = ChildProc::spawn(role, |command| {
            handoff::inherit(command, RING_ENV, fds);
            command
                .env("FDRING_TEST_COUNT", count.to_string())
                .stdin(Stdio::piped());
        });
        let orders = child.child.stdin.take().expect("piped stdin");
        child.expect_line("ready", HANG);
        Peer { child, orders }
    }

    /// Tells the child to do something and waits for its report `done`.
    fn order(&mut self, order: &str, done: &str) -> String {
        writeln!(self.orders, "{order}").expect("writing to the child");
        self.child.expect_line(done, HANG)
    }

    /// SIGKILL, and the child reaped: its fds are all closed now.
    fn kill(mut self, context: &str) {
        self.child.kill();
        assert_killed(&mut self.child, context);
    }
}

/// Calls `attempt` until it returns something other than `would_block`,
/// for at most `NOTICE`; returns that and how many attempts it took.
#[track_caller]
fn until_not<R: PartialEq + std::fmt::Debug>(
    would_block: R,
    mut attempt: impl FnMut() -> R,
) -> (R, u64) {
    let deadline = Instant::now() + NOTICE;
    let mut attempts = 0;
    loop {
        let result = attempt();
        attempts += 1;
        if result != would_block {
            return (result, attempts);
        }
        assert!(
            Instant::now() < deadline,
            "still {result:?} after {attempts} attempts in {NOTICE:?}: the peer's death was \
             never noticed"
        );
        std::hint::spin_loop();
    }
}

/// Busy-polls `attempt` for `span`, asserting every answer is `expected`:
/// long enough for the non-blocking calls to look for a hang-up several
/// times (they look at most once per kernel tick, 1 to 10 ms).
#[track_caller]
fn for_a_while<R: PartialEq + std::fmt::Debug>(
    span: Duration,
    expected: R,
    mut attempt: impl FnMut() -> R,
) {
    let until = Instant::now() + span;
    let mut attempts = 0u64;
    while Instant::now() < until {
        let result = attempt();
        assert_eq!(
            result, expected,
            "attempt {attempts}: the peer lives, so the answer must stay {expected:?}"
        );
        attempts += 1;
    }
}

#[test]
fn a_producer_busy_polling_a_full_ring_gets_disconnected_once_its_consumer_is_killed() {
    let (mut tx, rx) = channel::<u64>(512).expect("channel");
    let peer = Peer::spawn("hold-receiver-u64", rx.into_fds().expect("into_fds"), 0);
    let mut next = 0;
    while tx.try_send(next) == Ok(()) {
        next += 1;
    }
    assert_eq!(next, tx.capacity() as u64);
    // The consumer lives and reads nothing: full, and only full.
    for_a_while(Duration::from_millis(50), Err(Error::Full), || {
        tx.try_send(0)
    });
    peer.kill("killed consumer");
    let (end, attempts) = until_not(Err(Error::Full), || tx.try_send(0));
    eprintln!("Disconnected after {attempts} attempts on the full ring");
    assert_eq!(end, Err(Error::Disconnected));
    assert_eq!(tx.try_send(0), Err(Error::Disconnected), "it stays so");
    assert_eq!(tx.stats().sleeps, 0, "try_send alone: nothing slept");
}

#[test]
fn a_producer_streaming_into_a_ring_with_room_learns_its_consumer_was_killed_by_try_send_alone() {
    let (mut tx, rx) = channel::<u64>(1 << 14).expect("channel");
    // The stream flows: the consumer takes `flowed` items, then stops.
    let flowed = 1000;
    let mut next = 0;
    while next < flowed {
        tx.try_send(next).expect("room for the first items");
        next += 1;
    }
    let peer = Peer::spawn(
        "hold-receiver-u64",
        rx.into_fds().expect("into_fds"),
        flowed,
    );
    assert_eq!(tx.len(), 0);
    peer.kill("killed consumer");
    // It streams on into the room the dead consumer left, never waiting:
    // items, then a full ring, then (not `Full` for ever) `Disconnected`.
    let (end, attempts) = until_not(Err(Error::Full), || {
        let sent = tx.try_send(next);
        next += u64::from(sent.is_ok());
        match sent {
            Ok(()) => Err(Error::Full),
            other => other,
        }
    });
    eprintln!(
        "Disconnected after {attempts} attempts, {} items sent",
        next - flowed
    );
    assert_eq!(end, Err(Error::Disconnected));
    assert_eq!(tx.len() as u64, next - flowed);
    assert_eq!(tx.stats().sleeps, 0, "try_send alone: nothing slept");
}

#[test]
fn offer_frame_with_answers_disconnected_not_a_dropped_frame_once_the_receiver_is_killed() {
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let mut tx = FrameSender::new(tx);
    let peer = Peer::spawn("hold-receiver-u8", rx.into_fds().expect("into_fds"), 0);
    let mut offer = || tx.offer_frame_with(1500, |frame| frame.len());
    // Room for two such frames; the receiver lives and reads nothing, so
    // the next ones are dropped, at a frame's pace.
    assert_eq!((offer(), offer()), (Ok(true), Ok(true)));
    for _ in 0..5 {
        thread::sleep(Duration::from_millis(2));
        assert_eq!(offer(), Ok(false), "the receiver lives: a dropped frame");
    }
    peer.kill("killed receiver");
    // More than the probe interval after the last look, by the kernel's
    // coarse clock (which advances in ticks of up to 10 ms): the first
    // offer that would drop a frame looks, and sees the hang-up.
    thread::sleep(Duration::from_millis(25));
    assert_eq!(
        offer(),
        Err(Error::Disconnected),
        "a dropped offer must look for the receiver's hang-up, not report a drop"
    );
    assert_eq!(offer(), Err(Error::Disconnected), "it stays so");
    assert_eq!(tx.stats().dropped, 5);
}

#[test]
fn a_receiver_busy_polling_gets_what_a_killed_producer_published_then_disconnected() {
    let (tx, mut rx) = channel::<u64>(512).expect("channel");
    let mut peer = Peer::spawn("hold-sender-u64", tx.into_fds().expect("into_fds"), 100);
    let mut next = 0u64;
    while next < 100 {
        assert_eq!(rx.try_recv(), Ok(next));
        next += 1;
    }
    // The producer lives and sends nothing: empty, and only empty.
    for_a_while(Duration::from_millis(50), Err(Error::Empty), || {
        rx.try_recv()
    });
    // It publishes 200 more and is killed before they are received.
    peer.order("send 200", "sent");
    peer.kill("killed producer");
    let (end, attempts) = until_not(Err(Error::Empty), || match rx.try_recv() {
        Ok(got) => {
            assert_eq!(got, next, "the items come first, in order");
            next += 1;
            Err(Error::Empty)
        }
        other => other,
    });
    eprintln!("Disconnected after {attempts} attempts");
    assert_eq!(end, Err(Error::Disconnected));
    assert_eq!(next, 300, "every item the producer published came first");
    assert_eq!(rx.try_recv(), Err(Error::Disconnected), "it stays so");
    assert_eq!(rx.stats().sleeps, 0, "try_recv alone: nothing slept");
}

/// Which end the parent keeps and asks `is_abandoned`.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Sender,
    Receiver,
    FrameSender,
    FrameReceiver,
}

/// The parent's end, of any kind.
enum Kept {
    Sender(Sender<u8>),
    Receiver(Receiver<u8>),
    FrameSender(FrameSender),
    FrameReceiver(FrameReceiver),
}

impl Kept {
    fn is_abandoned(&self) -> bool {
        match self {
            Kept::Sender(end) => end.is_abandoned(),
            Kept::Receiver(end) => end.is_abandoned(),
            Kept::FrameSender(end) => end.is_abandoned(),
            Kept::FrameReceiver(end) => end.is_abandoned(),
        }
    }
}

/// Gives the peer of a `kind` end to a child, checks that `is_abandoned`
/// is false while it lives, then that it is true once the child dropped
/// its end (`kill` false) or was killed (`kill` true).
fn is_abandoned_after(kind: Kind, kill: bool) {
    let context = format!("{kind:?}, peer {}", if kill { "killed" } else { "dropped" });
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let (kept, role, fds) = match kind {
        Kind::Sender => (Kept::Sender(tx), "hold-receiver-u8", rx.into_fds()),
        Kind::FrameSender => (
            Kept::FrameSender(FrameSender::new(tx)),
            "hold-receiver-u8",
            rx.into_fds(),
        ),
        Kind::Receiver => (Kept::Receiver(rx), "hold-sender-u8", tx.into_fds()),
        Kind::FrameReceiver => (
            Kept::FrameReceiver(FrameReceiver::new(rx)),
            "hold-sender-u8",
            tx.into_fds(),
        ),
    };
    let mut peer = Peer::spawn(role, fds.expect("into_fds"), 0);
    for _ in 0..3 {
        assert!(!kept.is_abandoned(), "{context}: the peer lives");
    }
    if kill {
        peer.kill(&context);
    } else {
        peer.order("drop", "dropped");
    }
    assert!(kept.is_abandoned(), "{context}: the peer is gone");
    assert!(kept.is_abandoned(), "{context}: and stays gone");
}

#[test]
fn is_abandoned_on_a_sender_is_true_once_its_receiver_is_dropped_or_killed() {
    is_abandoned_after(Kind::Sender, false);
    is_abandoned_after(Kind::Sender, true);
}

#[test]
fn is_abandoned_on_a_receiver_is_true_once_its_sender_is_dropped_or_killed() {
    is_abandoned_after(Kind::Receiver, false);
    is_abandoned_after(Kind::Receiver, true);
}

#[test]
fn is_abandoned_on_a_frame_sender_is_true_once_its_receiver_is_dropped_or_killed() {
    is_abandoned_after(Kind::FrameSender, false);
    is_abandoned_after(Kind::FrameSender, true);
}

#[test]
fn is_abandoned_on_a_frame_receiver_is_true_once_its_sender_is_dropped_or_killed() {
    is_abandoned_after(Kind::FrameReceiver, false);
    is_abandoned_after(Kind::FrameReceiver, true);
}

#[test]
fn is_abandoned_in_one_process_follows_the_closed_word() {
    let (tx, rx) = channel::<u64>(512).expect("channel");
    assert!(!tx.is_abandoned() && !rx.is_abandoned());
    drop(rx);
    assert!(tx.is_abandoned());
    let (tx, rx) = channel::<u64>(512).expect("channel");
    drop(tx);
    assert!(rx.is_abandoned());
}
