//! Frame ends in event loops: a stream of frames of every size from the
//! parent to a child with both ends served by a `mio::Poll` (the frame
//! ends registered as sources), the same with tokio on both sides
//! (`AsyncFrameSender` / `AsyncFrameReceiver`, with cancelled futures on
//! the way), frames from a child received through cancelled futures, a
//! child killed mid-stream, the watched liveness registered with the frame
//! ends, and a frame published without a wake-up to a child that cannot
//! call `membarrier`.
//!
//! Frame `n` has tag `n`, a length that [`frame_len`] derives from `n`
//! (from empty to the largest frame the ring holds, which fits only into
//! an empty ring), and bytes that [`frame_byte`] derives from `n` and
//! their position; every receiver checks all three.

use std::future::poll_fn;
use std::os::fd::OwnedFd;
use std::pin::pin;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{
    env, env_u64, fields, park, pause_now_and_then, read_words, report, seed, ChildProc, Rng, HANG,
    NOTICE, RING_ENV,
};
use crate::idle::{thread_cpu_time, IDLE_CPU_LIMIT};
use crate::membarrier::{
    forbid_membarrier, publish_silently_to_a_child_without_membarrier, WAIT_ENV,
};
use crate::peers::{COUNT_ENV, RING_B_ENV};
use crate::runtimes::{current_thread_runtime, poll_once, runtime, wait_for, RING};
use fdring::mio::EventLoopExt;
use fdring::tokio::{AsyncFrameReceiver, AsyncFrameSender};
use fdring::{
    channel, handoff, Error, Frame, FrameMut, FrameReceiver, FrameSender, Liveness, Receiver,
    Sender,
};
use mio::{Events, Interest, Poll, Token};

/// The capacity of the frame rings, in bytes: room for about five frames
/// of the average length, so that senders often wait.
const RING_BYTES: usize = 16 * 1024;

/// The largest frame a ring of `capacity` bytes holds (payloads aligned
/// to 8, as `FrameSender::new` sends them).
fn max_len(capacity: usize) -> usize {
    capacity - FrameSender::HEADER_BYTES
}

/// SplitMix64: a well-mixed function of `n`.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Frame `n`'s length: usually up to 6000 bytes, now and then empty, and
/// now and then `max`, which fits only into an empty ring.
fn frame_len(n: u64, max: usize) -> usize {
    let h = mix(n);
    match h % 64 {
        0 => 0,
        1 => max,
        _ => (h >> 8) as usize % 6001,
    }
}

/// Byte `i` of frame `n`.
fn frame_byte(n: u64, i: usize) -> u8 {
    (n as u8).wrapping_mul(31) ^ (i as u8).wrapping_mul(7) ^ (i >> 8) as u8
}

/// Writes frame `n` into the space lent for it; returns its length.
fn fill_frame(n: u64, frame: &mut FrameMut<'_>) -> usize {
    for (i, byte) in frame.iter_mut().enumerate() {
        *byte = frame_byte(n, i);
    }
    frame.set_tag(n);
    frame.len()
}

/// Frame `n`'s bytes, for the copying sends.
fn frame_bytes(n: u64, max: usize) -> Vec<u8> {
    (0..frame_len(n, max)).map(|i| frame_byte(n, i)).collect()
}

/// Checks that `frame` is frame `n`: its tag, its length and every byte.
#[track_caller]
fn check_frame(n: u64, frame: Frame<'_>, max: usize) {
    assert_eq!(
        frame.tag(),
        n,
        "the frame after frame {}",
        n.wrapping_sub(1)
    );
    assert_eq!(frame.len(), frame_len(n, max), "frame {n}'s length");
    if let Some(i) = (0..frame.len()).find(|&i| frame[i] != frame_byte(n, i)) {
        panic!(
            "frame {n}, byte {i}: {} instead of {}",
            frame[i],
            frame_byte(n, i)
        );
    }
}

/// [`check_frame`] for a frame copied into `buf` with `tag`.
#[track_caller]
fn check_copy(n: u64, tag: u64, buf: &[u8], max: usize) {
    assert_eq!(tag, n, "the frame after frame {}", n.wrapping_sub(1));
    assert!(buf == frame_bytes(n, max), "frame {n}'s bytes");
}

fn inherited_frame_sender(name: &str) -> FrameSender {
    let tx = Sender::<u8>::from_fds(handoff::inherited(name).expect("inherited")).expect("open");
    FrameSender::new(tx)
}

fn inherited_frame_receiver(name: &str) -> FrameReceiver {
    let rx = Receiver::<u8>::from_fds(handoff::inherited(name).expect("inherited")).expect("open");
    FrameReceiver::new(rx)
}

// ---------------------------------------------------------------------------
// The child side

/// Receives frames from a `mio::Poll` in which its `FrameReceiver` is
/// registered, draining until "would block" (armed) and then waiting for
/// the event, which must come within `NOTICE`, until `Disconnected`;
/// checks every frame and pauses now and then. Reports the frames and its
/// waits.
pub(crate) fn role_frames_mio_sink() {
    let mut rx = inherited_frame_receiver(RING_ENV);
    let max = max_len(rx.capacity());
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut rx, RING, Interest::READABLE)
        .expect("register the frame receiver");
    let mut events = Events::with_capacity(4);
    let mut rng = Rng::new(seed());
    let (mut next, mut waits) = (0u64, 0u64);
    loop {
        pause_now_and_then(&mut rng, 16, 2000);
        match rx.try_or_arm(|rx| rx.try_recv_frame_with(|frame| check_frame(next, frame, max))) {
            Ok(()) => next += 1,
            Err(Error::Empty) => {
                waits += 1;
                let what = format!("waiting for frame {next}");
                wait_for(&mut poll, &mut events, RING, NOTICE, &what);
            }
            Err(Error::Disconnected) => break,
            Err(e) => panic!("at frame {next}: {e}"),
        }
    }
    poll.registry().deregister(&mut rx).expect("deregister");
    report(&format!("received frames={next} waits={waits}"));
}

/// Receives frames with an `AsyncFrameReceiver` on a current-thread
/// runtime until `Disconnected`, through every receiving call (some polled
/// once and dropped), checking every frame; pauses now and then. Each wait
/// must end within `NOTICE`. Reports the frames and the cancelled calls.
pub(crate) fn role_frames_tokio_sink() {
    let rx = inherited_frame_receiver(RING_ENV);
    let max = max_len(rx.capacity());
    let (next, cancelled) = current_thread_runtime().block_on(async {
        let mut rx = AsyncFrameReceiver::new(rx).expect("AsyncFrameReceiver");
        let mut rng = Rng::new(seed());
        let mut buf = Vec::new();
        let (mut next, mut cancelled) = (0u64, 0u64);
        loop {
            pause_now_and_then(&mut rng, 16, 2000);
            let got: Option<Result<(), Error>> = match rng.next_u64() % 4 {
                // Polled once, then dropped if pending.
                0 => {
                    poll_once(&mut pin!(
                        rx.recv_frame_with(|frame| check_frame(next, frame, max))
                    ))
                    .await
                }
                1 => Some(
                    tokio::time::timeout(NOTICE, rx.recv_frame(&mut buf))
                        .await
                        .unwrap_or_else(|_| panic!("no frame {next} within {NOTICE:?}"))
                        .map(|tag| check_copy(next, tag, &buf, max)),
                ),
                _ => Some(
                    tokio::time::timeout(
                        NOTICE,
                        rx.recv_frame_with(|frame| check_frame(next, frame, max)),
                    )
                    .await
                    .unwrap_or_else(|_| panic!("no frame {next} within {NOTICE:?}")),
                ),
            };
            match got {
                Some(Ok(())) => next += 1,
                Some(Err(Error::Disconnected)) => break,
                Some(Err(e)) => panic!("at frame {next}: {e}"),
                None => cancelled += 1,
            }
        }
        (next, cancelled)
    });
    report(&format!("received frames={next} cancelled={cancelled}"));
}

/// Sends `COUNT` frames with blocking calls (pausing now and then), then
/// closes; with no `COUNT`, sends until the receiver is gone.
pub(crate) fn role_frames_send() {
    let mut tx = inherited_frame_sender(RING_ENV);
    let max = tx.max_frame_len();
    assert_eq!(max, max_len(tx.capacity()));
    let total = env(COUNT_ENV).map(|count| count.parse::<u64>().expect("a count"));
    let pauses = env_u64("FDRING_TEST_PAUSES", 1) == 1;
    let mut rng = Rng::new(seed());
    let mut next = 0u64;
    while total.map_or(true, |total| next < total) {
        if pauses {
            pause_now_and_then(&mut rng, 16, 2000);
        }
        match tx.send_frame_with(frame_len(next, max), |frame| fill_frame(next, frame)) {
            Ok(_) => next += 1,
            Err(Error::Disconnected) if total.is_none() => break,
            Err(e) => panic!("at frame {next}: {e}"),
        }
    }
    report(&format!("sent frames={next}"));
}

/// Receives frames with blocking calls until `Disconnected`, checking
/// every one.
pub(crate) fn role_frames_recv() {
    let mut rx = inherited_frame_receiver(RING_ENV);
    let max = max_len(rx.capacity());
    let mut next = 0u64;
    loop {
        match rx.recv_frame_with(|frame| check_frame(next, frame, max)) {
            Ok(()) => next += 1,
            Err(Error::Disconnected) => break,
            Err(e) => panic!("at frame {next}: {e}"),
        }
    }
    report(&format!("received frames={next}"));
}

/// Opens its frame receiver and reports "ready"; after
/// `FDRING_TEST_WARMUP_MS` receives one frame, stays idle for
/// `FDRING_TEST_IDLE_MS`, then receives until `Disconnected` and reports
/// how many frames it got.
pub(crate) fn role_frames_idle_then_recv() {
    let mut rx = inherited_frame_receiver(RING_ENV);
    report("ready");
    thread::sleep(Duration::from_millis(env_u64("FDRING_TEST_WARMUP_MS", 100)));
    let mut frames = 0u64;
    rx.recv_frame_with(|_| ()).expect("the warm-up frame");
    frames += 1;
    thread::sleep(Duration::from_millis(env_u64("FDRING_TEST_IDLE_MS", 1000)));
    while rx.recv_frame_with(|_| ()).is_ok() {
        frames += 1;
    }
    report(&format!("received frames={frames}"));
}

/// Opens the frame sender of ring A and the frame receiver of ring B,
/// reports "ready", and does nothing until it is killed.
pub(crate) fn role_frames_idle() {
    let _tx = inherited_frame_sender(RING_ENV);
    let _rx = inherited_frame_receiver(RING_B_ENV);
    report("ready");
    park();
}

/// Forbids itself `membarrier`, then waits (as `FDRING_TEST_WAIT` says:
/// `mio` or `tokio`) for one frame that the parent publishes without a
/// wake-up; reports its tag and bytes.
pub(crate) fn role_recv_frame_without_membarrier() {
    forbid_membarrier();
    let mut rx = inherited_frame_receiver(RING_ENV);
    report(&format!("ready timeout={:?}", fdring::poll_timeout()));
    // Far longer than the parent waits for the report: the frame must come
    // through a bounded sleep, not through the last look at a deadline.
    let deadline = Instant::now() + HANG;
    let mut buf = Vec::new();
    let got = match env(WAIT_ENV).as_deref() {
        Some("tokio") => current_thread_runtime().block_on(async {
            let mut rx = AsyncFrameReceiver::new(rx).expect("AsyncFrameReceiver");
            tokio::time::timeout(HANG, rx.recv_frame(&mut buf))
                .await
                .unwrap_or(Err(Error::Timeout))
        }),
        Some("mio") => {
            let (mut poll, mut events) = (Poll::new().expect("poll"), Events::with_capacity(4));
            poll.registry()
                .register(&mut rx, RING, Interest::READABLE)
                .expect("register");
            loop {
                match rx.try_or_arm(|rx| rx.try_recv_frame(&mut buf)) {
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
    let got = got.map(|tag| (tag, String::from_utf8_lossy(&buf).into_owned()));
    report(&format!("got {got:?}"));
}

// ---------------------------------------------------------------------------
// Parents' helpers

/// Creates a frame ring and spawns `role` with its receiving end
/// inherited; returns the parent's sender and the child.
fn spawn_frame_sink(
    role: &str,
    configure: impl FnOnce(&mut std::process::Command),
) -> (FrameSender, ChildProc) {
    let (tx, rx) = channel::<u8>(RING_BYTES).expect("channel");
    let fds = rx.into_fds().expect("into_fds");
    let child = ChildProc::spawn(role, |command| {
        handoff::inherit(command, RING_ENV, fds);
        configure(command);
    });
    (FrameSender::new(tx), child)
}

/// Creates a frame ring and spawns `role` with its sending end inherited;
/// returns the parent's receiver, a copy of the memfd (to read what the
/// child published) and the child.
fn spawn_frame_source(
    role: &str,
    configure: impl FnOnce(&mut std::process::Command),
) -> (FrameReceiver, OwnedFd, ChildProc) {
    let (tx, rx) = channel::<u8>(RING_BYTES).expect("channel");
    let fds = tx.into_fds().expect("into_fds");
    let memfd = fds.memfd.try_clone().expect("dup the memfd");
    let child = ChildProc::spawn(role, |command| {
        handoff::inherit(command, RING_ENV, fds);
        configure(command);
    });
    (FrameReceiver::new(rx), memfd, child)
}

// ---------------------------------------------------------------------------
// mio

/// 20,000 frames of every size from a `FrameSender` registered in the
/// parent's `mio::Poll` to a `FrameReceiver` registered in the child's:
/// both sides drain or fill until "would block" (armed) and then wait for
/// their event, which must come within `NOTICE`. The child checks every
/// frame. If either source registered nothing, or the sender armed for
/// less room than its frame needs, a side would wait for an event that
/// never comes.
#[test]
fn mio_frame_stream_to_a_child_with_both_frame_ends_registered() {
    let total = 20_000u64;
    let (mut tx, mut child) = spawn_frame_sink("frames_mio_sink", |_| {});
    let max = tx.max_frame_len();
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut tx, RING, Interest::WRITABLE)
        .expect("register the frame sender");
    let mut events = Events::with_capacity(4);
    let mut rng = Rng::new(seed());
    let (mut next, mut waits) = (0u64, 0u64);
    while next < total {
        pause_now_and_then(&mut rng, 64, 1500);
        // Both sending calls: in place, and a copy.
        let sent = if next % 2 == 0 {
            let len = frame_len(next, max);
            tx.try_or_arm(|tx| tx.try_send_frame_with(len, |frame| fill_frame(next, frame)))
                .map(drop)
        } else {
            let bytes = frame_bytes(next, max);
            tx.try_or_arm(|tx| tx.try_send_frame(next, &bytes))
        };
        match sent {
            Ok(()) => next += 1,
            Err(Error::Full) => {
                waits += 1;
                let what = format!("no room for frame {next}");
                wait_for(&mut poll, &mut events, RING, NOTICE, &what);
            }
            Err(e) => panic!("at frame {next}: {e}"),
        }
    }
    poll.registry().deregister(&mut tx).expect("deregister");
    drop(tx); // the child's `Disconnected`, after the last frame
    let line = child.expect_line("received", HANG);
    child.finish();
    let fields = fields(&line);
    assert_eq!(fields["frames"], total.to_string(), "every frame, in order");
    let child_waits: u64 = fields["waits"].parse().expect("a number");
    eprintln!("{total} frames: the sender waited {waits} times, the receiver {child_waits}");
    assert!(waits > 0, "the sender never waited: the test proved little");
    assert!(
        child_waits > 0,
        "the receiver never waited: the test proved little"
    );
}

/// When the peer's socket ends outlive it (here the parent keeps copies,
/// as a `Command` not yet dropped would), the rings never hang up; the
/// watched liveness (a pidfd) is registered with each frame end, so the
/// death is an event for a waiting `FrameReceiver` and a waiting
/// `FrameSender` all the same.
#[test]
fn mio_frame_ends_register_the_watched_liveness_so_a_death_is_an_event() {
    let (theirs_tx, rx) = channel::<u8>(RING_BYTES).expect("channel A");
    let (tx, theirs_rx) = channel::<u8>(RING_BYTES).expect("channel B");
    let (fds_a, fds_b) = (
        theirs_tx.into_fds().expect("into_fds"),
        theirs_rx.into_fds().expect("into_fds"),
    );
    // The copies that keep the child's socket ends open in this process.
    let strays: Vec<OwnedFd> = [&fds_a, &fds_b]
        .iter()
        .map(|fds| {
            fds.wake
                .try_clone()
                .expect("dup the child's wake-up socket")
        })
        .collect();
    let mut child = ChildProc::spawn("frames_idle", |command| {
        handoff::inherit(command, RING_ENV, fds_a);
        handoff::inherit(command, RING_B_ENV, fds_b);
    });
    child.expect_line("ready", HANG);
    let (mut rx, mut tx) = (FrameReceiver::new(rx), FrameSender::new(tx));
    rx.watch_peer(Liveness::child(&child.child).expect("pidfd"));
    tx.watch_peer(Liveness::child(&child.child).expect("pidfd"));
    const RX: Token = Token(1);
    const TX: Token = Token(2);
    let mut poll = Poll::new().expect("Poll");
    poll.registry()
        .register(&mut rx, RX, Interest::READABLE)
        .expect("register the frame receiver");
    poll.registry()
        .register(&mut tx, TX, Interest::WRITABLE)
        .expect("register the frame sender");
    let mut events = Events::with_capacity(8);
    let frame = vec![7u8; 10_000];
    assert_eq!(
        rx.try_or_arm(|rx| rx.try_recv_frame_with(|_| ())),
        Err(Error::Empty)
    );
    assert_eq!(tx.try_or_arm(|tx| tx.try_send_frame(1, &frame)), Ok(()));
    assert_eq!(
        tx.try_or_arm(|tx| tx.try_send_frame(2, &frame)),
        Err(Error::Full)
    );
    // Nothing happens while the child lives.
    poll.poll(&mut events, Some(Duration::from_millis(200)))
        .expect("poll");
    assert!(events.is_empty(), "an event while the child idles");
    let killed = Instant::now();
    child.kill();
    let (mut rx_told, mut tx_told) = (false, false);
    while !(rx_told && tx_told) {
        assert!(
            killed.elapsed() < NOTICE,
            "told of the death: receiver {rx_told}, sender {tx_told}"
        );
        poll.poll(&mut events, Some(NOTICE)).expect("poll");
        rx_told |= events.iter().any(|event| event.token() == RX);
        tx_told |= events.iter().any(|event| event.token() == TX);
    }
    assert_eq!(
        rx.try_or_arm(|rx| rx.try_recv_frame_with(|_| ())),
        Err(Error::Disconnected)
    );
    assert_eq!(
        tx.try_or_arm(|tx| tx.try_send_frame(2, &frame)),
        Err(Error::Disconnected)
    );
    poll.registry().deregister(&mut rx).expect("deregister");
    poll.registry().deregister(&mut tx).expect("deregister");
    drop(strays);
}

// ---------------------------------------------------------------------------
// tokio

/// 20,000 frames of every size from an `AsyncFrameSender` on the parent's
/// runtime to an `AsyncFrameReceiver` on the child's. Pending
/// `send_frame` and `send_frame_with` futures are dropped over and over
/// (after one poll, by `timeout`, as the losing branch of `select!`), and
/// the frame of a cancelled send is sent again; the child drops pending
/// receives as well, and checks that it got every frame once, in order.
#[test]
fn tokio_frame_stream_to_a_child_through_cancelled_sends_and_receives() {
    let total = 20_000u64;
    let (tx, mut child) = spawn_frame_sink("frames_tokio_sink", |_| {});
    let max = tx.max_frame_len();
    let cancelled = runtime().block_on(async {
        let mut tx = AsyncFrameSender::new(tx).expect("AsyncFrameSender");
        let mut rng = Rng::new(seed());
        let (mut next, mut cancelled) = (0u64, 0u64);
        while next < total {
            pause_now_and_then(&mut rng, 64, 1500);
            let len = frame_len(next, max);
            let bytes = frame_bytes(next, max);
            let sent: Option<Result<(), Error>> = match rng.next_u64() % 5 {
                0 => poll_once(&mut pin!(tx.send_frame(next, &bytes))).await,
                1 => poll_once(&mut pin!(
                    tx.send_frame_with(len, |frame| fill_frame(next, frame))
                ))
                .await
                .map(|sent| sent.map(drop)),
                2 => tokio::select! {
                    sent = tx.send_frame(next, &bytes) => Some(sent),
                    () = tokio::time::sleep(Duration::from_micros(rng.range(0, 2000))) => None,
                },
                3 => tokio::time::timeout(
                    Duration::from_micros(rng.range(0, 3000)),
                    tx.send_frame_with(len, |frame| fill_frame(next, frame)),
                )
                .await
                .ok()
                .map(|sent| sent.map(drop)),
                _ => Some(
                    tokio::time::timeout(NOTICE, tx.send_frame(next, &bytes))
                        .await
                        .unwrap_or_else(|_| panic!("no room for frame {next} within {NOTICE:?}")),
                ),
            };
            match sent {
                Some(Ok(())) => next += 1,
                Some(Err(e)) => panic!("at frame {next}: {e}"),
                None => cancelled += 1,
            }
        }
        tx.close();
        cancelled
    });
    let line = child.expect_line("received", HANG);
    child.finish();
    let fields = fields(&line);
    assert_eq!(
        fields["frames"],
        total.to_string(),
        "every frame once, in order"
    );
    eprintln!(
        "{total} frames: {cancelled} sends cancelled, {} receives cancelled",
        fields["cancelled"]
    );
    assert!(
        cancelled >= 10,
        "only {cancelled} sends cancelled: the test proved little"
    );
}

/// A child sends 20,000 frames with pauses; the parent's
/// `AsyncFrameReceiver` receives them through every receiving call, many
/// dropped while pending: every frame arrives once, in order, then
/// `Disconnected`.
#[test]
fn tokio_frames_from_a_child_through_cancelled_receives() {
    let total = 20_000u64;
    let (rx, memfd, mut child) = spawn_frame_source("frames_send", |command| {
        command.env(COUNT_ENV, total.to_string());
    });
    let max = max_len(rx.capacity());
    let (next, cancelled) = runtime().block_on(async {
        let mut rx = AsyncFrameReceiver::new(rx).expect("AsyncFrameReceiver");
        let mut rng = Rng::new(seed());
        let mut buf = Vec::new();
        let (mut next, mut cancelled) = (0u64, 0u64);
        loop {
            let got: Option<Result<(), Error>> = match rng.next_u64() % 6 {
                0 => {
                    poll_once(&mut pin!(
                        rx.recv_frame_with(|frame| check_frame(next, frame, max))
                    ))
                    .await
                }
                1 => {
                    let got = poll_once(&mut pin!(rx.recv_frame(&mut buf))).await;
                    got.map(|got| got.map(|tag| check_copy(next, tag, &buf, max)))
                }
                2 => tokio::select! {
                    got = rx.recv_frame_with(|frame| check_frame(next, frame, max)) => Some(got),
                    () = tokio::time::sleep(Duration::from_micros(rng.range(0, 2000))) => None,
                },
                3 => tokio::time::timeout(
                    Duration::from_micros(rng.range(0, 3000)),
                    rx.recv_frame(&mut buf),
                )
                .await
                .ok()
                .map(|got| got.map(|tag| check_copy(next, tag, &buf, max))),
                4 => Some(
                    poll_fn(|cx| {
                        rx.poll_recv_frame_with(cx, |frame| check_frame(next, frame, max))
                    })
                    .await,
                ),
                _ => Some(
                    tokio::time::timeout(
                        NOTICE,
                        rx.recv_frame_with(|frame| check_frame(next, frame, max)),
                    )
                    .await
                    .unwrap_or_else(|_| panic!("no frame {next} within {NOTICE:?}")),
                ),
            };
            match got {
                Some(Ok(())) => next += 1,
                Some(Err(Error::Disconnected)) => break,
                Some(Err(e)) => panic!("at frame {next}: {e}"),
                None => cancelled += 1,
            }
        }
        (next, cancelled)
    });
    assert_eq!(next, total, "every frame once, in order");
    child.expect_line("sent", HANG);
    child.finish();
    let words = read_words(&memfd);
    assert_eq!(words.read_index, words.write_index, "every byte released");
    eprintln!("{total} frames, {cancelled} receives cancelled");
    assert!(
        cancelled >= 10,
        "only {cancelled} receives cancelled: the test proved little"
    );
}

/// A child streaming frames is killed while a task awaits the next: the
/// task gets every frame the child published, then `Disconnected`, within
/// `NOTICE`; with the child's socket end kept open here, through the
/// watched pidfd. And a task waiting for room to send a frame to a child
/// that is killed gets `Disconnected`.
#[test]
fn tokio_frame_ends_notice_a_killed_child() {
    for keep_socket_open in [false, true] {
        let (tx, rx) = channel::<u8>(RING_BYTES).expect("channel");
        let fds = tx.into_fds().expect("into_fds");
        let memfd = fds.memfd.try_clone().expect("dup the memfd");
        let stray = keep_socket_open.then(|| fds.wake.try_clone().expect("dup"));
        let mut child = ChildProc::spawn("frames_send", |command| {
            handoff::inherit(command, RING_ENV, fds);
            command.env("FDRING_TEST_PAUSES", "0");
        });
        let mut rx = FrameReceiver::new(rx);
        if keep_socket_open {
            rx.watch_peer(Liveness::child(&child.child).expect("pidfd"));
        }
        let max = max_len(rx.capacity());
        let (next, noticed) = runtime().block_on(async {
            let mut rx = AsyncFrameReceiver::new(rx).expect("AsyncFrameReceiver");
            let mut next = 0u64;
            let mut killed: Option<Instant> = None;
            loop {
                let got = tokio::time::timeout(
                    NOTICE,
                    rx.recv_frame_with(|frame| check_frame(next, frame, max)),
                )
                .await
                .unwrap_or_else(|_| {
                    panic!("no frame and no Disconnected within {NOTICE:?} after frame {next}")
                });
                match got {
                    Ok(()) => next += 1,
                    Err(Error::Disconnected) => break,
                    Err(e) => panic!("{e}"),
                }
                if killed.is_none() && next >= 2000 {
                    killed = Some(Instant::now());
                    child.kill();
                }
            }
            (next, killed.expect("killed").elapsed())
        });
        assert!(noticed < NOTICE, "the death was noticed after {noticed:?}");
        let words = read_words(&memfd);
        assert_eq!(
            words.read_index, words.write_index,
            "every frame the child published was received ({next} frames)"
        );
        drop(stray);
    }

    // And a sender waiting for room for a frame to a consumer that is killed.
    let (tx, mut child) = spawn_frame_sink("frames_recv", |_| {});
    let max = tx.max_frame_len();
    let end = runtime().block_on(async {
        let mut tx = AsyncFrameSender::new(tx).expect("AsyncFrameSender");
        let mut next = 0u64;
        loop {
            let len = frame_len(next, max);
            let sent = tx.send_frame_with(len, |frame| fill_frame(next, frame));
            match tokio::time::timeout(NOTICE, sent).await {
                Ok(Ok(_)) => next += 1,
                Ok(Err(e)) => return e,
                Err(_) => panic!("send_frame_with neither completed nor failed within {NOTICE:?}"),
            }
            if next == 2000 {
                child.kill();
            }
        }
    });
    assert_eq!(end, Error::Disconnected);
}

/// A task waits for room for a frame while the child receives nothing for
/// a second (after one frame that woke it, so that the reactor had reported
/// the socket readable once): the runtime's thread uses no CPU meanwhile,
/// which shows that the sender armed for room for *its* frame. (Armed for
/// less, it would find that room already there and never sleep.)
#[test]
fn idle_tokio_frame_sender_uses_no_cpu() {
    let frame = vec![5u8; 5000];
    let (tx, mut child) = spawn_frame_sink("frames_idle_then_recv", |command| {
        command
            .env("FDRING_TEST_WARMUP_MS", "100")
            .env("FDRING_TEST_IDLE_MS", "1000");
    });
    child.expect_line("ready", HANG);
    let (sent, cpu, waited, polls) = current_thread_runtime().block_on(async {
        let mut tx = AsyncFrameSender::new(tx).expect("AsyncFrameSender");
        let fill = |tx: &mut AsyncFrameSender| {
            let tx = tx.get_mut().expect("open");
            let mut sent = 0;
            loop {
                match tx.try_send_frame(0, &frame) {
                    Ok(()) => sent += 1,
                    Err(Error::Full) => break sent,
                    Err(e) => panic!("filling the ring: {e}"),
                }
            }
        };
        let mut sent = fill(&mut tx);
        // The warm-up: the child's first frame makes room for one more.
        tx.send_frame(1, &frame).await.expect("send_frame");
        sent += 1 + fill(&mut tx);
        let (cpu_before, started) = (thread_cpu_time(), Instant::now());
        let mut polls = 0u32;
        poll_fn(|cx| {
            polls += 1;
            tx.poll_send_frame(cx, 2, &frame)
        })
        .await
        .expect("send_frame after the idle second");
        (
            sent + 1,
            thread_cpu_time() - cpu_before,
            started.elapsed(),
            polls,
        )
    });
    let line = child.expect_line("received", HANG);
    child.finish();
    assert_eq!(fields(&line)["frames"], sent.to_string());
    eprintln!("tokio frame sender idle for {waited:?}: {cpu:?} of CPU, {polls} polls");
    assert!(
        waited >= Duration::from_millis(900),
        "the child did not idle"
    );
    assert!(
        cpu < IDLE_CPU_LIMIT,
        "the idle task used {cpu:?} of CPU in {waited:?}"
    );
    assert!(polls <= 3, "{polls} polls while idle: the task spins");
}

// ---------------------------------------------------------------------------
// Without membarrier

/// The frame published to a child that cannot call `membarrier`: one
/// frame's record, as a `FrameSender` writes it.
fn silent_frame() -> Vec<u8> {
    let (tx, mut rx) = channel::<u8>(4096).expect("channel");
    FrameSender::new(tx)
        .send_frame(7, b"silently")
        .expect("send_frame");
    let mut record = Vec::new();
    rx.try_recv_with(|bytes| {
        record.extend_from_slice(bytes);
        bytes.len()
    })
    .expect("the record");
    record
}

/// A child that cannot call `membarrier` waits for a frame in a mio loop
/// or an `AsyncFrameReceiver`; the parent publishes it without a wake-up.
/// The child must see it anyway, through its bounded sleeps.
fn a_frame_receiver_without_membarrier_sees_a_frame_published_silently(wait: &str) {
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let record = silent_frame();
    let got = publish_silently_to_a_child_without_membarrier(
        "recv_frame_without_membarrier",
        wait,
        rx.into_fds().expect("into_fds"),
        tx.into_fds().expect("into_fds"),
        |raw| {
            raw.write_data(0, &record);
            record.len() as u64
        },
    );
    assert_eq!(
        got, r#"got Ok((7, "silently"))"#,
        "a {wait} wait missed the frame"
    );
}

#[test]
fn a_mio_frame_loop_without_membarrier_sees_a_frame_published_silently() {
    a_frame_receiver_without_membarrier_sees_a_frame_published_silently("mio");
}

#[test]
fn a_tokio_frame_receiver_without_membarrier_sees_a_frame_published_silently() {
    a_frame_receiver_without_membarrier_sees_a_frame_published_silently("tokio");
}
