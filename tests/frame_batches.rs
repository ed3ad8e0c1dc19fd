//! Batched frames (`FrameSender::send_frames_with` and friends,
//! `FrameReceiver::recv_frames_with` and friends): batches of every size
//! across the wrap, mixed with single-frame calls on the other side, in one
//! process and between two; batches consumed in part; a corrupt record in
//! the middle of a batch, written by a hostile peer (`tests/support/raw.rs`
//! in this process, hand-written records from another), which must end the
//! batch and give exactly the error the single-frame path gives; closures
//! that panic or claim too much; and no allocation per batch.

mod common;

#[path = "support/raw.rs"]
mod raw;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread;
use std::time::Duration;

use common::{
    env, env_u64, fields, read_words, report, seed, start_watchdog, ChildProc, Rng, CHILD_ENV,
    HANG, RING_ENV, SIGKILL,
};
use fdring::{
    channel, handoff, Corruption, Error, Frame, FrameBatch, FrameReceiver, FrameSender, Receiver,
    Sender,
};
use raw::Raw;

// A counting allocator, per thread (the allocation counts).
#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocs;

// ---------------------------------------------------------------------------
// The stream: both sides (and both processes) derive every frame from the
// seed.

/// Frame `i`: the bytes asked for and the bytes committed. Mostly small
/// frames, now and then one of up to 1500 bytes; a quarter ask for more
/// than they commit, so that a batch must give the unused tail back to the
/// frames after it.
fn plan(seed: u64, i: u64) -> (usize, usize) {
    let mut rng = Rng::new(seed ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let committed = match rng.next_u64() % 16 {
        0 => rng.range(0, 1501) as usize,
        1 => 0,
        _ => rng.range(1, 129) as usize,
    };
    let asked = if rng.next_u64() % 4 == 0 {
        committed + rng.range(0, 200) as usize
    } else {
        committed
    };
    (asked, committed)
}

fn tag_of(seed: u64, i: u64) -> u64 {
    seed.rotate_left(23) ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Frame `i`'s contents.
fn contents(seed: u64, i: u64, bytes: &mut [u8]) {
    let start = tag_of(seed, i) as u8;
    for (j, byte) in bytes.iter_mut().enumerate() {
        *byte = start.wrapping_add(j as u8).rotate_left(3);
    }
}

/// Writes frame `i` into the space lent for it; returns the bytes to
/// commit.
fn fill(seed: u64, i: u64, frame: &mut fdring::FrameMut<'_>) -> usize {
    let committed = plan(seed, i).1;
    contents(seed, i, &mut frame.bytes_mut()[..committed]);
    frame.set_tag(tag_of(seed, i));
    committed
}

/// Checks that `frame` is frame `i`, aligned to `align`.
#[track_caller]
fn check(seed: u64, i: u64, align: usize, frame: Frame<'_>) {
    let committed = plan(seed, i).1;
    assert_eq!(
        (frame.len(), frame.tag()),
        (committed, tag_of(seed, i)),
        "frame {i}: length and tag (a frame was lost, repeated or reordered)"
    );
    let mut expected = vec![0; committed];
    contents(seed, i, &mut expected);
    assert!(frame.bytes() == expected, "frame {i}: contents");
    assert_eq!(frame.as_ptr() as usize % align, 0, "frame {i}: alignment");
}

/// How a side moves frames: one per call, in batches written in place, or
/// (sender only) in batches of copies.
#[derive(Debug, Clone, Copy, PartialEq)]
enum How {
    Single,
    Batches,
    Copies,
    /// Any of the above, picked at random call by call.
    Mixed,
}

impl How {
    fn parse(name: &str) -> How {
        match name {
            "single" => How::Single,
            "batches" => How::Batches,
            "copies" => How::Copies,
            "mixed" => How::Mixed,
            other => panic!("no way {other}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            How::Single => "single",
            How::Batches => "batches",
            How::Copies => "copies",
            How::Mixed => "mixed",
        }
    }

    /// The way of the next call.
    fn pick(self, rng: &mut Rng, receiver: bool) -> How {
        match self {
            How::Mixed => match rng.next_u64() % 3 {
                0 => How::Single,
                1 => How::Batches,
                _ if receiver => How::Batches,
                _ => How::Copies,
            },
            How::Copies if receiver => How::Batches,
            other => other,
        }
    }
}

/// The sending side of a stream of `count` frames, step by step: `step`
/// makes one call, waiting for room if `blocking`, and says whether it sent
/// anything.
struct Producer {
    seed: u64,
    count: u64,
    next: u64,
    how: How,
    rng: Rng,
}

impl Producer {
    fn new(seed: u64, count: u64, how: How) -> Producer {
        Producer {
            seed,
            count,
            next: 0,
            how,
            rng: Rng::new(seed ^ 0x5e4d),
        }
    }

    fn done(&self) -> bool {
        self.next == self.count
    }

    fn step(&mut self, tx: &mut FrameSender, blocking: bool) -> bool {
        let (seed, first) = (self.seed, self.next);
        let asked = plan(seed, first).0;
        let sent = match self.how.pick(&mut self.rng, false) {
            How::Single => {
                let fill_one = |frame: &mut fdring::FrameMut<'_>| fill(seed, first, frame);
                let sent = if blocking {
                    tx.send_frame_with(asked, fill_one)
                } else {
                    tx.try_send_frame_with(asked, fill_one)
                };
                sent.map(|_| 1)
            }
            How::Batches => {
                let most = self.rng.upto(40) as u64;
                let last = self.count.min(first + most);
                let write = |batch: &mut FrameBatch<'_>| {
                    for i in first..last {
                        let pushed = batch.push_with(plan(seed, i).0, |f| fill(seed, i, f));
                        if pushed.is_none() {
                            break;
                        }
                    }
                };
                if blocking {
                    tx.send_frames_with(asked, write)
                } else {
                    tx.try_send_frames_with(asked, write)
                }
            }
            How::Copies | How::Mixed => {
                let most = self.rng.upto(40) as u64;
                let last = self.count.min(first + most);
                let payloads: Vec<Vec<u8>> = (first..last)
                    .map(|i| {
                        let mut bytes = vec![0; plan(seed, i).1];
                        contents(seed, i, &mut bytes);
                        bytes
                    })
                    .collect();
                let frames: Vec<(u64, &[u8])> = (first..last)
                    .zip(&payloads)
                    .map(|(i, bytes)| (tag_of(seed, i), &bytes[..]))
                    .collect();
                if blocking {
                    tx.send_frames(&frames).map(|()| frames.len())
                } else {
                    tx.try_send_frames(&frames)
                }
            }
        };
        match sent {
            Ok(n) => {
                assert!(n >= 1, "a send that found room sent nothing");
                self.next += n as u64;
                assert!(self.next <= self.count);
                true
            }
            Err(Error::Full) if !blocking => false,
            Err(e) => panic!("sending frame {first}: {e:?}"),
        }
    }
}

/// The receiving side of a stream of `count` frames, step by step.
struct Consumer {
    seed: u64,
    count: u64,
    next: u64,
    how: How,
    align: usize,
    rng: Rng,
    /// Frames lent by a batch but not consumed: they must come again.
    relent: u64,
}

impl Consumer {
    fn new(seed: u64, count: u64, how: How, align: usize) -> Consumer {
        Consumer {
            seed,
            count,
            next: 0,
            how,
            align,
            rng: Rng::new(seed ^ 0xc0de),
            relent: 0,
        }
    }

    fn done(&self) -> bool {
        self.next == self.count
    }

    fn step(&mut self, rx: &mut FrameReceiver, blocking: bool) -> bool {
        let (seed, first, align) = (self.seed, self.next, self.align);
        let got = match self.how.pick(&mut self.rng, true) {
            How::Single => {
                let check_one = |frame: Frame<'_>| check(seed, first, align, frame);
                let got = if blocking {
                    rx.recv_frame_with(check_one)
                } else {
                    rx.try_recv_frame_with(check_one)
                };
                got.map(|()| 1)
            }
            _ => {
                // Take a random number of frames (often all), check each,
                // and consume a random number of those taken (often all).
                let most = self.rng.take(FrameReceiver::MAX_BATCH);
                let keep = self.rng.next_u64();
                let mut relent = 0;
                let take = |frames: fdring::Frames<'_>| {
                    let mut taken = 0;
                    for frame in frames.take(most) {
                        check(seed, first + taken as u64, align, frame);
                        taken += 1;
                    }
                    let consumed = if keep % 3 == 0 {
                        (keep / 3) as usize % (taken + 1)
                    } else {
                        taken
                    };
                    relent = (taken - consumed) as u64;
                    consumed
                };
                let got = if blocking {
                    rx.recv_frames_with(take)
                } else {
                    rx.try_recv_frames_with(take)
                };
                self.relent += relent;
                got
            }
        };
        match got {
            Ok(n) => {
                self.next += n as u64;
                assert!(self.next <= self.count, "more frames than were sent");
                true
            }
            Err(Error::Empty) if !blocking => false,
            Err(e) => panic!("receiving frame {first}: {e:?}"),
        }
    }
}

/// A ring of one page for frames aligned to `align` (every frame of the
/// stream fits; a batch wraps often).
fn page_ring(align: usize) -> (FrameSender, FrameReceiver) {
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    (
        FrameSender::with_align(tx, align),
        FrameReceiver::with_align(rx, align),
    )
}

// ---------------------------------------------------------------------------
// In one process: every mix, across the wrap

#[test]
fn batches_cross_the_wrap_mixed_with_single_frames_in_order() {
    let seed = seed();
    eprintln!("seed {seed} (FDRING_TEST_SEED replays it)");
    let count = 20_000;
    for align in [8, 16, 64] {
        for (send, recv) in [
            (How::Batches, How::Batches),
            (How::Batches, How::Single),
            (How::Single, How::Batches),
            (How::Copies, How::Batches),
            (How::Mixed, How::Mixed),
        ] {
            let what = format!("align {align}, {} to {}", send.name(), recv.name());
            let (mut tx, mut rx) = page_ring(align);
            let mut producer = Producer::new(seed, count, send);
            let mut consumer = Consumer::new(seed, count, recv, align);
            while !consumer.done() {
                let sent = !producer.done() && producer.step(&mut tx, false);
                let received = consumer.step(&mut rx, false);
                assert!(sent || received, "{what}: stuck at frame {}", consumer.next);
            }
            assert_eq!(rx.try_recv_frames_with(|f| f.count()), Err(Error::Empty));
            let bytes: u64 = (0..count).map(|i| plan(seed, i).1 as u64).sum();
            assert_eq!(
                (tx.stats().frames, tx.stats().bytes),
                (count, bytes),
                "{what}: the sender's counts"
            );
            assert_eq!(
                (rx.stats().frames, rx.stats().bytes),
                (count, bytes),
                "{what}: the receiver counts each frame once, re-lent or not"
            );
            // The stream went round the page many times.
            assert!(bytes > 100 * 4096, "{what}");
            if recv == How::Batches {
                assert!(consumer.relent > 0, "{what}: no batch was consumed in part");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Between two processes

#[test]
#[ignore = "child process entry point, spawned by the tests"]
fn child_entry() {
    let Some(role) = env(CHILD_ENV) else {
        return;
    };
    start_watchdog(Duration::from_secs(120));
    match role.as_str() {
        "send" => role_send(),
        "recv" => role_recv(),
        "hostile" => role_hostile(),
        other => panic!("unknown child role {other}"),
    }
}

fn child_how() -> How {
    How::parse(&env("FDRING_TEST_HOW").expect("FDRING_TEST_HOW"))
}

fn role_send() {
    let tx = Sender::<u8>::from_fds(handoff::inherited(RING_ENV).expect("inherited"))
        .expect("open the sender");
    let align = env_u64("FDRING_TEST_ALIGN", 8) as usize;
    let mut tx = FrameSender::with_align(tx, align);
    let count = env_u64("FDRING_TEST_COUNT", 0);
    let mut producer = Producer::new(env_u64("FDRING_TEST_SEED", 0), count, child_how());
    while !producer.done() {
        producer.step(&mut tx, true);
    }
    report(&format!(
        "result frames={} bytes={}",
        tx.stats().frames,
        tx.stats().bytes
    ));
}

fn role_recv() {
    let rx = Receiver::<u8>::from_fds(handoff::inherited(RING_ENV).expect("inherited"))
        .expect("open the receiver");
    let align = env_u64("FDRING_TEST_ALIGN", 8) as usize;
    let mut rx = FrameReceiver::with_align(rx, align);
    let count = env_u64("FDRING_TEST_COUNT", 0);
    let mut consumer = Consumer::new(env_u64("FDRING_TEST_SEED", 0), count, child_how(), align);
    while !consumer.done() {
        consumer.step(&mut rx, true);
    }
    // The sender is gone once it sent everything.
    assert_eq!(
        rx.recv_frames_with_timeout(HANG, |f| f.count()),
        Err(Error::Disconnected)
    );
    report(&format!(
        "result frames={} bytes={}",
        rx.stats().frames,
        rx.stats().bytes
    ));
}

fn spawn(role: &str, fds: fdring::Fds, seed: u64, count: u64, how: How, align: usize) -> ChildProc {
    ChildProc::spawn(role, |command| {
        handoff::inherit(command, RING_ENV, fds);
        command
            .env("FDRING_TEST_SEED", seed.to_string())
            .env("FDRING_TEST_COUNT", count.to_string())
            .env("FDRING_TEST_HOW", how.name())
            .env("FDRING_TEST_ALIGN", align.to_string());
    })
}

/// `count` frames from this process to a child and from a child to this
/// process, sent as `send` says and received as `recv` says, with blocking
/// calls on a one-page ring, so that both sides wait for each other.
fn across_processes(send: How, recv: How, align: usize) {
    let seed = seed();
    eprintln!(
        "seed {seed} (FDRING_TEST_SEED replays it): {} to {}, align {align}",
        send.name(),
        recv.name()
    );
    let count = 20_000;
    let bytes: u64 = (0..count).map(|i| plan(seed, i).1 as u64).sum();
    let result = format!("result frames={count} bytes={bytes}");

    // Parent sends, child receives.
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let mut tx = FrameSender::with_align(tx, align);
    let mut child = spawn("recv", rx.into_fds().unwrap(), seed, count, recv, align);
    let mut producer = Producer::new(seed, count, send);
    while !producer.done() {
        producer.step(&mut tx, true);
    }
    drop(tx);
    assert_eq!(child.expect_line("result", HANG), result);
    child.finish();

    // Child sends, parent receives.
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let mut rx = FrameReceiver::with_align(rx, align);
    let mut child = spawn("send", tx.into_fds().unwrap(), seed, count, send, align);
    let mut consumer = Consumer::new(seed, count, recv, align);
    while !consumer.done() {
        consumer.step(&mut rx, true);
    }
    let line = child.expect_line("result", HANG);
    assert_eq!(fields(&line)["frames"], count.to_string(), "{line}");
    assert_eq!(
        rx.recv_frames_with_timeout(HANG, |f| f.count()),
        Err(Error::Disconnected)
    );
    assert_eq!((rx.stats().frames, rx.stats().bytes), (count, bytes));
    child.finish();
}

#[test]
fn batched_sends_reach_a_single_frame_receiver_in_another_process() {
    across_processes(How::Batches, How::Single, 8);
}

#[test]
fn single_frame_sends_reach_a_batched_receiver_in_another_process() {
    across_processes(How::Single, How::Batches, 64);
}

#[test]
fn batches_both_ways_between_processes() {
    across_processes(How::Batches, How::Batches, 8);
    across_processes(How::Copies, How::Batches, 32);
    across_processes(How::Mixed, How::Mixed, 64);
}

// ---------------------------------------------------------------------------
// Consumed in part

/// A frame ring whose memfd this test keeps too, to look at the indices
/// and to play a hostile sender with (`Raw`).
fn watched_ring(align: usize) -> (FrameSender, FrameReceiver, OwnedFd) {
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let fds = tx.into_fds().unwrap();
    let memfd = fds.memfd.try_clone().unwrap();
    let tx = Sender::<u8>::from_fds(fds).unwrap();
    (
        FrameSender::with_align(tx, align),
        FrameReceiver::with_align(rx, align),
        memfd,
    )
}

/// The size of the record of a frame of `len` bytes at alignment 8.
fn record_size(len: usize) -> u64 {
    (24 + len).next_multiple_of(8) as u64
}

#[test]
fn a_batch_consumed_in_part_releases_exactly_the_frames_consumed() {
    let (mut tx, mut rx, memfd) = watched_ring(8);
    let frames: Vec<(u64, &[u8])> = (0..10u64).map(|n| (n, &b"0123456789abc"[..])).collect();
    assert_eq!(tx.try_send_frames(&frames), Ok(10));
    // One publish for the ten records.
    assert_eq!(read_words(&memfd).write_index, 10 * record_size(13));

    // Look at four, consume two.
    let consumed = rx.try_recv_frames_with(|frames| {
        let tags: Vec<u64> = frames.take(4).map(|f| f.tag()).collect();
        assert_eq!(tags, [0, 1, 2, 3]);
        2
    });
    assert_eq!(consumed, Ok(2));
    assert_eq!(read_words(&memfd).read_index, 2 * record_size(13));
    assert_eq!((rx.stats().frames, rx.stats().bytes), (2, 26));

    // Consuming none releases nothing.
    assert_eq!(
        rx.try_recv_frames_with(|mut f| usize::from(f.next().is_none())),
        Ok(0)
    );
    assert_eq!(read_words(&memfd).read_index, 2 * record_size(13));

    // The frames looked at but not consumed come again, in order; a single
    // receive takes the next one.
    assert_eq!(rx.try_recv_frame_with(|f| f.tag()), Ok(2));
    let rest = rx.try_recv_frames_with(|frames| {
        let tags: Vec<u64> = frames.map(|f| f.tag()).collect();
        assert_eq!(tags, [3, 4, 5, 6, 7, 8, 9]);
        tags.len()
    });
    assert_eq!(rest, Ok(7));
    let words = read_words(&memfd);
    assert_eq!(words.read_index, words.write_index);
    assert_eq!((rx.stats().frames, rx.stats().bytes), (10, 130));
    assert_eq!(rx.try_recv_frames_with(|f| f.count()), Err(Error::Empty));
}

#[test]
fn a_batch_lends_at_most_max_batch_frames() {
    let (tx, rx) = channel::<u8>(1 << 16).expect("channel");
    let (mut tx, mut rx) = (FrameSender::new(tx), FrameReceiver::new(rx));
    let total = 3 * FrameReceiver::MAX_BATCH + 5;
    let sent = tx
        .try_send_frames_with(8, |batch| {
            for n in 0..total as u64 {
                assert!(batch.push(n, &n.to_ne_bytes()));
            }
        })
        .unwrap();
    assert_eq!(sent, total);
    let mut next = 0u64;
    for expected in [FrameReceiver::MAX_BATCH; 3].into_iter().chain([5]) {
        let got = rx.try_recv_frames_with(|frames| {
            assert!(frames.size_hint().1 <= Some(FrameReceiver::MAX_BATCH));
            let mut n = 0;
            for frame in frames {
                assert_eq!(frame.tag(), next);
                next += 1;
                n += 1;
            }
            n
        });
        assert_eq!(got, Ok(expected));
    }
}

#[test]
fn a_closure_claiming_more_frames_than_it_took_panics_and_releases_nothing() {
    let (mut tx, mut rx, memfd) = watched_ring(8);
    assert_eq!(
        tx.try_send_frames(&[(1, b"a"), (2, b"b"), (3, b"c")]),
        Ok(3)
    );
    let claimed = catch_unwind(AssertUnwindSafe(|| {
        rx.try_recv_frames_with(|mut frames| {
            frames.next();
            2 // took one
        })
    }));
    assert!(claimed.is_err(), "no panic: {claimed:?}");
    assert_eq!(read_words(&memfd).read_index, 0);
    assert_eq!(rx.stats().frames, 0);
    // Nothing was lost.
    assert_eq!(rx.try_recv_frames_with(|f| f.count()), Ok(3));
}

#[test]
fn a_batch_whose_closure_panics_publishes_nothing() {
    let (mut tx, mut rx, memfd) = watched_ring(8);
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        tx.try_send_frames_with(8, |batch| {
            assert!(batch.push(1, b"written"));
            panic!("the producer fails half-way");
        })
    }));
    assert!(panicked.is_err());
    assert_eq!(read_words(&memfd).write_index, 0);
    assert_eq!(tx.stats().frames, 0);
    assert_eq!(rx.try_recv_frames_with(|f| f.count()), Err(Error::Empty));
    // A frame's closure that claims more than its length panics the same way.
    let too_long = catch_unwind(AssertUnwindSafe(|| {
        tx.try_send_frames_with(8, |batch| {
            batch.push(1, b"first");
            batch.push_with(8, |_| 9);
        })
    }));
    assert!(too_long.is_err());
    assert_eq!(read_words(&memfd).write_index, 0);
    // The sender still works, from where it stood.
    assert_eq!(tx.try_send_frames(&[(7, b"after")]), Ok(1));
    assert_eq!(
        rx.try_recv_frame_with(|f| (f.tag(), f.to_vec())),
        Ok((7, b"after".to_vec()))
    );
}

#[test]
fn batched_sends_refuse_what_could_never_fit_and_say_full_when_nothing_fits() {
    let (mut tx, mut rx, memfd) = watched_ring(8);
    let max = tx.max_frame_len();
    let huge = vec![0u8; max + 1];
    let too_large = || Error::FrameTooLarge {
        len: max as u64 + 1,
        max: max as u64,
    };
    // Refused before anything is sent, whichever frame it is.
    let frames: [(u64, &[u8]); 2] = [(1, b"ok"), (2, &huge)];
    assert_eq!(err(tx.try_send_frames(&frames)), too_large());
    assert_eq!(err(tx.send_frames(&frames)), too_large());
    let refused = tx.try_send_frames_with(max + 1, |_| unreachable!());
    assert_eq!(err(refused), too_large());
    assert_eq!(read_words(&memfd).write_index, 0);
    assert_eq!(tx.try_send_frames(&[]), Ok(0));
    assert_eq!(tx.send_frames(&[]), Ok(()));

    // Fill the ring with one batch: as many 88-byte frames as fit (36, in
    // records of 112 bytes), which leaves 64 bytes.
    let sent = tx
        .try_send_frames_with(88, |batch| while batch.push(0, &[5; 88]) {})
        .unwrap();
    assert_eq!(sent as u64, 4096 / record_size(88));
    let room = 4096 - sent as u64 * record_size(88);
    assert_eq!(room, 64);
    // Nothing of 88 bytes fits now; the closure is not called.
    assert_eq!(
        tx.try_send_frames_with(88, |_| unreachable!()),
        Err(Error::Full)
    );
    assert_eq!(tx.try_send_frames(&[(0, &[5; 88])]), Err(Error::Full));
    assert_eq!(
        tx.send_frames_with_timeout(88, Duration::from_millis(5), |_| unreachable!()),
        Err(Error::Timeout)
    );
    // A smaller frame still fits in what is left.
    let small = (room - 24) as usize;
    assert_eq!(
        tx.try_send_frames_with(small, |b| assert!(b.push(1, &vec![6; small]))),
        Ok(1)
    );
    assert_eq!(read_words(&memfd).write_index, 4096);
    assert_eq!(rx.try_recv_frames_with(|f| f.count()), Ok(sent + 1));
}

#[test]
fn a_batch_receiver_takes_what_was_sent_then_sees_the_sender_gone() {
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let (mut tx, mut rx) = (FrameSender::new(tx), FrameReceiver::new(rx));
    assert_eq!(tx.try_send_frames(&[(1, b"last"), (2, b"words")]), Ok(2));
    drop(tx);
    assert_eq!(rx.recv_frames_with(|f| f.count()), Ok(2));
    assert_eq!(rx.recv_frames_with(|f| f.count()), Err(Error::Disconnected));
    assert_eq!(
        rx.try_recv_frames_with(|f| f.count()),
        Err(Error::Disconnected)
    );
    assert_eq!(
        rx.recv_frames_with_timeout(Duration::from_millis(5), |f| f.count()),
        Err(Error::Disconnected)
    );
}

#[test]
fn a_batch_receiver_waits_for_a_frame_and_times_out_without_one() {
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let (mut tx, mut rx) = (FrameSender::new(tx), FrameReceiver::new(rx));
    assert_eq!(
        rx.recv_frames_with_timeout(Duration::from_millis(5), |_| unreachable!()),
        Err(Error::Timeout)
    );
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        tx.send_frames_with(3, |batch| {
            batch.push(9, b"late");
        })
        .unwrap();
        tx
    });
    let got = rx.recv_frames_with_timeout(HANG, |frames| {
        frames
            .inspect(|f| assert_eq!((f.tag(), f.bytes()), (9, &b"late"[..])))
            .count()
    });
    assert_eq!(got, Ok(1));
    drop(sender.join().unwrap());
}

// ---------------------------------------------------------------------------
// A corrupt record in the middle of a batch

/// The error of a call that must fail.
#[track_caller]
fn err<T: std::fmt::Debug>(result: Result<T, Error>) -> Error {
    result.expect_err("the call succeeded")
}

/// A record as docs/format.md, section 8 defines it, written by hand.
fn record(len: u64, tag: u64, gap: u32, marker: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = header(len, tag, gap, marker);
    bytes.resize(bytes.len() + gap as usize, 0xee);
    bytes.extend_from_slice(payload);
    bytes.resize(bytes.len().next_multiple_of(8), 0xdd);
    bytes
}

const MARKER: u32 = u32::from_ne_bytes(*b"FRM1");

/// A record's header alone.
fn header(len: u64, tag: u64, gap: u32, marker: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&len.to_ne_bytes());
    bytes.extend_from_slice(&tag.to_ne_bytes());
    bytes.extend_from_slice(&gap.to_ne_bytes());
    bytes.extend_from_slice(&marker.to_ne_bytes());
    bytes
}

/// Headers a hostile sender can put over a published record in the middle
/// of the stream: each is wrong whatever follows it.
fn bad_headers() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("length of u64::MAX", header(u64::MAX, 0, 0, MARKER)),
        ("length of 2^40", header(1 << 40, 0, 0, MARKER)),
        ("length of the capacity", header(4096, 0, 0, MARKER)),
        ("length 2^63 with gap 56", header(1 << 63, 0, 56, MARKER)),
        ("wrong marker", header(13, 0, 0, 0x1234_5678)),
        ("gap not a multiple of 8", header(13, 0, 7, MARKER)),
        ("gap of 64", header(0, 0, 64, MARKER)),
        ("gap of 2^32 - 8", header(0, 0, u32::MAX - 7, MARKER)),
    ]
}

/// Six frames of 13 bytes, sent in one batch (one publish), then the header
/// of record `bad_at` overwritten with `bad` by a hostile peer's own
/// mapping. Returns the receiver and the memfd.
fn six_frames_with_a_bad_header(bad_at: usize, bad: &[u8]) -> (FrameReceiver, OwnedFd) {
    let (mut tx, rx, memfd) = watched_ring(8);
    let frames: Vec<(u64, &[u8])> = (0..6u64).map(|n| (n, &b"thirteen byte"[..])).collect();
    assert_eq!(tx.try_send_frames(&frames), Ok(6));
    let hostile = Raw::map(&memfd);
    hostile.write_data(bad_at * record_size(13) as usize, bad);
    (rx, memfd)
}

#[test]
fn a_corrupt_record_in_the_middle_of_a_batch_ends_it_and_gives_the_single_frame_error() {
    for (what, bad) in bad_headers() {
        for bad_at in [0, 3, 5] {
            // The single-frame path, on a ring in the same state: the error
            // it gives is the one the batch must give.
            let (mut single, _memfd) = six_frames_with_a_bad_header(bad_at, &bad);
            for n in 0..bad_at as u64 {
                assert_eq!(single.try_recv_frame_with(|f| f.tag()), Ok(n), "{what}");
            }
            let expected = err(single.try_recv_frame_with(|_| ()));
            let at = bad_at as u64 * record_size(13);
            let ready = 6 * record_size(13) - at;
            match expected {
                Error::Corrupted(Corruption::BadFrame {
                    at: found_at,
                    ready: found_ready,
                    ..
                }) => assert_eq!((found_at, found_ready), (at, ready), "{what}"),
                ref other => panic!("{what}: the single path gave {other:?}"),
            }

            let (mut rx, memfd) = six_frames_with_a_bad_header(bad_at, &bad);
            // The good frames before the bad record come in one batch, which
            // ends there; they are released.
            let mut lent = Vec::new();
            let got =
                rx.try_recv_frames_with(|frames| frames.inspect(|f| lent.push(f.tag())).count());
            if bad_at == 0 {
                // Nothing good first: the error itself, the closure unused.
                assert!(lent.is_empty(), "{what}");
                assert_eq!(err(got), expected, "{what}, at 0");
            } else {
                assert_eq!(got, Ok(bad_at), "{what}, at {bad_at}");
                assert_eq!(lent, (0..bad_at as u64).collect::<Vec<_>>(), "{what}");
                assert_eq!(read_words(&memfd).read_index, at, "{what}");
                // The next call starts at the bad record: the error.
                let next = rx.try_recv_frames_with(|_| panic!("{what}: a bad frame lent"));
                assert_eq!(err(next), expected, "{what}, at {bad_at}");
            }
            // Sticky, for every kind of call, and nothing more is released.
            let waited = rx.recv_frames_with_timeout(HANG, |_| 0);
            assert_eq!(err(waited), expected, "{what}");
            assert_eq!(err(rx.try_recv_frame_with(|_| ())), expected, "{what}");
            assert_eq!(err(rx.try_recv_latest_with(|_| ())), expected, "{what}");
            assert_eq!(read_words(&memfd).read_index, at, "{what}");
        }
    }
}

#[test]
fn a_batch_consumed_in_part_before_a_corrupt_record_lends_the_rest_first() {
    let wrong_marker = header(13, 0, 0, 0x1234_5678);
    let (mut rx, memfd) = six_frames_with_a_bad_header(4, &wrong_marker);
    // Take all four good frames, consume one.
    let got = rx.try_recv_frames_with(|frames| {
        assert_eq!(frames.count(), 4);
        1
    });
    assert_eq!(got, Ok(1));
    // The three others come again, and only then the error.
    let got = rx.try_recv_frames_with(|frames| {
        let tags: Vec<u64> = frames.map(|f| f.tag()).collect();
        assert_eq!(tags, [1, 2, 3]);
        tags.len()
    });
    assert_eq!(got, Ok(3));
    let expected = Err(Error::Corrupted(Corruption::BadFrame {
        at: 4 * record_size(13),
        claimed_end: None,
        ready: 2 * record_size(13),
    }));
    assert_eq!(rx.try_recv_frames_with(|_| 0), expected);
    assert_eq!(read_words(&memfd).read_index, 4 * record_size(13));
    assert_eq!(rx.stats().frames, 4);
}

#[test]
fn a_batch_stops_at_a_frame_aligned_less_than_the_receiver_needs_and_keeps_it() {
    // Three frames aligned to 64, then one aligned to 8 (another sender on
    // the same ring): a disagreement, not a corruption.
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let mut rx = FrameReceiver::with_align(rx, 64);
    let mut tx64 = FrameSender::with_align(tx, 64);
    assert_eq!(
        tx64.try_send_frames(&[(0, &[0; 8]), (1, &[1; 8]), (2, &[2; 8])]),
        Ok(3)
    );
    let mut tx8 = FrameSender::new(Sender::<u8>::from_fds(tx64.into_fds().unwrap()).unwrap());
    // Records end at 72, 136 and 200: this payload starts at 224.
    tx8.try_send_frame(3, &[3; 8]).unwrap();
    let mismatch = Error::FrameAlign {
        expected: 64,
        found: 32,
    };
    assert_eq!(rx.try_recv_frames_with(|frames| frames.count()), Ok(3));
    for _ in 0..2 {
        assert_eq!(err(rx.try_recv_frames_with(|_| 0)), mismatch);
        assert_eq!(err(rx.try_recv_frame_with(|_| ())), mismatch);
    }
    // The frame is still there for a receiver that agrees with its sender.
    let rx = Receiver::<u8>::from_fds(rx.into_fds().unwrap()).unwrap();
    let mut agreeing = FrameReceiver::new(rx);
    let tag = agreeing.try_recv_frame_with(|f| f.tag());
    assert_eq!(tag, Ok(3));
}

/// A hostile sender in another process: good records, a record with a bad
/// marker and a good one after it, all published with one write.
fn role_hostile() {
    let mut tx = Sender::<u8>::from_fds(handoff::inherited(RING_ENV).expect("inherited"))
        .expect("open the sender");
    let mut bytes = Vec::new();
    for tag in 0..3 {
        bytes.extend(record(5, tag, 0, MARKER, b"hello"));
    }
    bytes.extend(record(5, 3, 0, 0x0bad_f00d, b"hello"));
    bytes.extend(record(5, 4, 0, MARKER, b"hello"));
    tx.write_all(&bytes).unwrap();
    report("written");
    // Keep the end open until the parent has looked.
    thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_hostile_sender_in_another_process_corrupts_a_record_inside_a_batch() {
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let mut rx = FrameReceiver::new(rx);
    let mut child = ChildProc::spawn("hostile", |command| {
        handoff::inherit(command, RING_ENV, tx.into_fds().unwrap());
    });
    child.expect_line("written", HANG);
    let mut tags = Vec::new();
    let got = rx.recv_frames_with_timeout(HANG, |frames| {
        frames
            .inspect(|f| {
                assert_eq!(f.bytes(), b"hello");
                tags.push(f.tag());
            })
            .count()
    });
    assert_eq!(got, Ok(3));
    assert_eq!(tags, [0, 1, 2]);
    let expected = Error::Corrupted(Corruption::BadFrame {
        at: 3 * 32,
        claimed_end: None,
        ready: 2 * 32,
    });
    assert_eq!(err(rx.recv_frames_with_timeout(HANG, |_| 0)), expected);
    assert_eq!(err(rx.recv_frame_with_timeout(HANG, |_| ())), expected);
    child.kill();
    assert_eq!(child.wait_within(HANG).signal(), Some(SIGKILL));
}

// ---------------------------------------------------------------------------
// Cost

#[test]
fn batches_allocate_nothing_once_running() {
    let (tx, rx) = channel::<u8>(1 << 16).expect("channel");
    let (mut tx, mut rx) = (
        FrameSender::with_align(tx, 64),
        FrameReceiver::with_align(rx, 64),
    );
    let payload = [7u8; 300];
    let round = |tx: &mut FrameSender, rx: &mut FrameReceiver, n: u64| {
        let sent = tx
            .send_frames_with(64, |batch| {
                for k in 0..(n % 50) + 1 {
                    batch.push_with(64, |f| {
                        f.set_tag(n + k);
                        f.len()
                    });
                }
            })
            .unwrap();
        assert_eq!(tx.try_send_frames(&[(1, &payload), (2, &payload)]), Ok(2));
        let mut received = 0;
        while received < sent + 2 {
            received += rx.recv_frames_with(|frames| frames.count()).unwrap();
        }
    };
    for n in 0..100 {
        round(&mut tx, &mut rx, n);
    }
    let before = allocs();
    for n in 100..10_100 {
        round(&mut tx, &mut rx, n);
    }
    assert_eq!(
        allocs() - before,
        0,
        "allocations in 10,000 rounds of batches"
    );
}
