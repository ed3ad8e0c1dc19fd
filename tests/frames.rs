//! Frames (`FrameSender` / `FrameReceiver`) between two processes and in
//! one: every frame size from 0 to the largest across the wrap, with
//! random contents, tags, shortened commits and every send and receive
//! variant; hostile and hand-written records (docs/format.md, section 8);
//! latest-frame-wins under a deliberately slow consumer, where no torn
//! frame may ever be seen; raw `io::Write` bytes in a frame ring; frames
//! too large for the ring; waiting for room while the receiver dies; and
//! no allocation per frame.

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    env, env_u64, fields, read_words, report, seed, start_watchdog, Backoff, ChildProc, Rng,
    CHILD_ENV, HANG, LONG, NOTICE, RING_ENV, SIGKILL,
};
use fdring::{
    channel, handoff, Corruption, Error, Frame, FrameMut, FrameReceiver, FrameSender, Receiver,
    Sender,
};

// A counting allocator, per thread (the allocation counts).
#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocs;

// ---------------------------------------------------------------------------
// The frames of the size sweep: both processes derive them from the seed.

/// The header size of docs/format.md, section 8.
const HEADER: usize = 24;

/// Frame `i` of the sweep: the bytes asked for and the bytes committed.
/// Every committed size from 0 to `max` occurs exactly once, in a random
/// order; a third of the frames ask for more than they commit, so that the
/// unused tail must be released.
fn sweep(seed: u64, max: usize) -> Vec<(usize, usize)> {
    let mut rng = Rng::new(seed ^ 0x5133_7e55);
    let mut sizes: Vec<usize> = (0..=max).collect();
    for i in (1..sizes.len()).rev() {
        sizes.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    sizes
        .into_iter()
        .map(|committed| {
            let extra = if rng.next_u64() % 3 == 0 {
                rng.range(0, (max - committed) as u64 + 1) as usize
            } else {
                0
            };
            (committed + extra, committed)
        })
        .collect()
}

fn tag_of(seed: u64, i: usize) -> u64 {
    seed.rotate_left(17) ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Fills `bytes` with frame `i`'s contents.
fn fill_contents(seed: u64, i: usize, bytes: &mut [u8]) {
    let mut rng = Rng::new(tag_of(seed, i));
    for chunk in bytes.chunks_mut(8) {
        let word = rng.next_u64().to_ne_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// Checks that `frame` is frame `i` of the sweep.
#[track_caller]
fn check_frame(seed: u64, i: usize, committed: usize, align: usize, frame: Frame<'_>) {
    assert_eq!(
        (frame.len(), frame.tag()),
        (committed, tag_of(seed, i)),
        "frame {i}: length and tag (a frame was lost, repeated or reordered)"
    );
    assert_eq!(
        frame.as_ptr() as usize % align,
        0,
        "frame {i} of {committed} bytes is not {align}-byte aligned"
    );
    let mut expected = vec![0u8; committed];
    fill_contents(seed, i, &mut expected);
    if frame.bytes() != expected {
        let at = frame.iter().zip(&expected).position(|(a, b)| a != b);
        panic!("frame {i} of {committed} bytes differs from byte {at:?} on: a torn frame");
    }
}

/// How a side moves one frame; every variant is used.
#[derive(Debug, Clone, Copy)]
enum Call {
    Blocking,
    Timeout,
    Try,
    Copy,
}

fn pick(rng: &mut Rng) -> Call {
    [Call::Blocking, Call::Timeout, Call::Try, Call::Copy][(rng.next_u64() % 4) as usize]
}

/// Sends the sweep through `tx`, with every send variant.
fn send_sweep(tx: &mut FrameSender, seed: u64) -> u64 {
    let plan = sweep(seed, tx.max_frame_len());
    let mut rng = Rng::new(seed ^ 0x7e4d);
    let mut buf = Vec::new();
    let mut backoff = Backoff::default();
    let mut bytes = 0;
    for (i, &(asked, committed)) in plan.iter().enumerate() {
        let align = tx.align();
        let fill = |frame: &mut FrameMut<'_>| {
            assert_eq!(frame.len(), asked, "the frame lent is the size asked for");
            assert_eq!(frame.as_ptr() as usize % align, 0, "an aligned payload");
            fill_contents(seed, i, &mut frame[..committed]);
            frame.set_tag(tag_of(seed, i));
            committed
        };
        loop {
            let sent = match pick(&mut rng) {
                Call::Blocking => tx.send_frame_with(asked, fill),
                Call::Timeout => tx.send_frame_with_timeout(asked, LONG, fill),
                Call::Try => tx.try_send_frame_with(asked, fill),
                Call::Copy => {
                    buf.resize(committed, 0);
                    fill_contents(seed, i, &mut buf);
                    tx.send_frame(tag_of(seed, i), &buf).map(|()| committed)
                }
            };
            match sent {
                Ok(n) => {
                    assert_eq!(n, committed);
                    backoff.reset();
                    break;
                }
                Err(Error::Full) => backoff.snooze(),
                Err(e) => panic!("sending frame {i} ({committed} of {asked} bytes): {e}"),
            }
        }
        bytes += committed as u64;
    }
    bytes
}

/// Receives the sweep through `rx`, with every receive variant, then the
/// disconnect.
fn recv_sweep(rx: &mut FrameReceiver, max: usize, seed: u64) -> u64 {
    let plan = sweep(seed, max);
    let align = rx.align();
    let mut rng = Rng::new(seed ^ 0x4ec7);
    let mut buf = Vec::new();
    let mut backoff = Backoff::default();
    let mut bytes = 0;
    for (i, &(_, committed)) in plan.iter().enumerate() {
        let check = |frame: Frame<'_>| check_frame(seed, i, committed, align, frame);
        loop {
            let got = match pick(&mut rng) {
                Call::Blocking => rx.recv_frame_with(check),
                Call::Timeout => rx.recv_frame_with_timeout(LONG, check),
                Call::Try => rx.try_recv_frame_with(check),
                Call::Copy => rx.recv_frame(&mut buf).map(|tag| {
                    assert_eq!((tag, buf.len()), (tag_of(seed, i), committed));
                    let mut expected = vec![0u8; committed];
                    fill_contents(seed, i, &mut expected);
                    assert!(buf == expected, "frame {i}: a torn copy");
                }),
            };
            match got {
                Ok(()) => {
                    backoff.reset();
                    break;
                }
                Err(Error::Empty) => backoff.snooze(),
                Err(e) => panic!("receiving frame {i}: {e}"),
            }
        }
        bytes += committed as u64;
    }
    assert_eq!(
        rx.recv_frame_with_timeout(NOTICE, |f| f.len()),
        Err(Error::Disconnected),
        "after the sweep, the sender is gone"
    );
    bytes
}

// ---------------------------------------------------------------------------
// The child side

#[test]
#[ignore = "child process entry point, spawned by the tests"]
fn child_entry() {
    let Some(role) = env(CHILD_ENV) else {
        return;
    };
    start_watchdog(Duration::from_secs(120));
    match role.as_str() {
        "recv_sweep" => role_recv_sweep(),
        "send_sweep" => role_send_sweep(),
        "offer_stamped" => role_offer_stamped(),
        "recv_then_stall" => role_recv_then_stall(),
        "hand_written_peer" => role_hand_written_peer(),
        other => panic!("unknown child role {other}"),
    }
}

fn child_align() -> usize {
    env_u64("FDRING_TEST_ALIGN", 8) as usize
}

fn child_seed() -> u64 {
    env_u64("FDRING_TEST_SEED", 0)
}

fn role_recv_sweep() {
    let rx = Receiver::<u8>::from_fds(handoff::inherited(RING_ENV).expect("inherited"))
        .expect("open the receiver");
    let max = env_u64("FDRING_TEST_MAX", 0) as usize;
    let mut rx = FrameReceiver::with_align(rx, child_align());
    let bytes = recv_sweep(&mut rx, max, child_seed());
    report(&format!(
        "result frames={} bytes={bytes}",
        rx.stats().frames
    ));
}

fn role_send_sweep() {
    let tx = Sender::<u8>::from_fds(handoff::inherited(RING_ENV).expect("inherited"))
        .expect("open the sender");
    let mut tx = FrameSender::with_align(tx, child_align());
    let bytes = send_sweep(&mut tx, child_seed());
    report(&format!(
        "result frames={} bytes={bytes}",
        tx.stats().frames
    ));
}

// ---------------------------------------------------------------------------
// Every size, across the wrap, between two processes

/// Spawns `role` with `fds` inherited and the sweep's settings.
fn spawn_sweep(role: &str, fds: fdring::Fds, seed: u64, align: usize, max: usize) -> ChildProc {
    ChildProc::spawn(role, |command| {
        handoff::inherit(command, RING_ENV, fds);
        command
            .env("FDRING_TEST_SEED", seed.to_string())
            .env("FDRING_TEST_ALIGN", align.to_string())
            .env("FDRING_TEST_MAX", max.to_string());
    })
}

/// Every frame size from 0 to the largest, parent to child, and the same
/// sweep child to parent.
fn sweep_both_ways(align: usize) {
    let seed = seed();
    eprintln!("seed {seed} (FDRING_TEST_SEED replays it), align {align}");
    // One page: every size from 0 to capacity - header (less the
    // alignment padding) crosses the wrap, and large frames wait for room.
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    assert_eq!(tx.capacity(), 4096);
    let mut tx = FrameSender::with_align(tx, align);
    let max = tx.max_frame_len();
    assert_eq!(max, 4096 - HEADER - (align - 8));
    let child = spawn_sweep("recv_sweep", rx.into_fds().unwrap(), seed, align, max);
    let bytes = send_sweep(&mut tx, seed);
    assert_eq!(tx.stats().frames, max as u64 + 1);
    drop(tx);
    let mut child = child;
    let line = child.expect_line("result", HANG);
    child.finish();
    let result = fields(&line);
    assert_eq!(result["frames"], (max + 1).to_string(), "{line}");
    assert_eq!(result["bytes"], bytes.to_string(), "{line}");

    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let mut rx = FrameReceiver::with_align(rx, align);
    let child = spawn_sweep("send_sweep", tx.into_fds().unwrap(), seed, align, max);
    let received = recv_sweep(&mut rx, max, seed);
    assert_eq!(received, bytes);
    child.finish();
}

#[test]
fn every_frame_size_crosses_the_wrap_between_processes() {
    sweep_both_ways(8);
}

#[test]
fn every_frame_size_crosses_the_wrap_with_cache_line_alignment() {
    sweep_both_ways(64);
}

// ---------------------------------------------------------------------------
// Hostile and hand-written records

/// A record as docs/format.md, section 8 defines it, written by hand: the
/// 24-byte header, `gap` bytes, the payload, and padding to a multiple of 8.
fn record(len: u64, tag: u64, gap: u32, marker: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = header(len, tag, gap, marker);
    bytes.resize(bytes.len() + gap as usize, 0xee);
    bytes.extend_from_slice(payload);
    bytes.resize(bytes.len().next_multiple_of(8), 0xdd);
    bytes
}

/// A record's header alone.
fn header(len: u64, tag: u64, gap: u32, marker: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&len.to_ne_bytes());
    bytes.extend_from_slice(&tag.to_ne_bytes());
    bytes.extend_from_slice(&gap.to_ne_bytes());
    bytes.extend_from_slice(&marker.to_ne_bytes());
    bytes
}

const MARKER: u32 = u32::from_ne_bytes(*b"FRM1");

/// A peer in another process that does not use `FrameSender`: it writes
/// records by hand from the format, through `io::Write`, then a header
/// with a hostile length.
fn role_hand_written_peer() {
    let mut tx = Sender::<u8>::from_fds(handoff::inherited(RING_ENV).expect("inherited"))
        .expect("open the sender");
    // One `write_all` per record: a fresh ring has room, so each is one
    // publish, as the format requires.
    tx.write_all(&record(5, 1, 0, MARKER, b"hello")).unwrap();
    tx.write_all(&record(0, 2, 0, MARKER, b"")).unwrap();
    // Gap 8: the payload starts 32 bytes into the record.
    tx.write_all(&record(3, 3, 8, MARKER, b"abc")).unwrap();
    tx.write_all(&record(u64::MAX, 4, 0, MARKER, b"")).unwrap();
    report("written");
    // Keep the end open until the parent has looked.
    thread::sleep(Duration::from_secs(60));
}

#[test]
fn hand_written_records_are_frames_and_a_hostile_length_from_another_process_is_corrupted() {
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let mut rx = FrameReceiver::new(rx);
    let mut child = ChildProc::spawn("hand_written_peer", |command| {
        handoff::inherit(command, RING_ENV, tx.into_fds().unwrap());
    });
    child.expect_line("written", HANG);
    let frame =
        |rx: &mut FrameReceiver| rx.recv_frame_with_timeout(HANG, |f| (f.tag(), f.to_vec()));
    assert_eq!(frame(&mut rx), Ok((1, b"hello".to_vec())));
    assert_eq!(frame(&mut rx), Ok((2, Vec::new())));
    assert_eq!(frame(&mut rx), Ok((3, b"abc".to_vec())));
    // 32 + 8 + 40 bytes read; the hostile header is the last 24.
    let read = 32 + 24 + 40;
    let expected = Error::Corrupted(Corruption::BadFrame {
        at: read,
        claimed_end: Some(u64::MAX),
        ready: 24,
    });
    assert_eq!(frame(&mut rx), Err(expected.clone_for_test()));
    // Sticky, for every kind of call.
    assert_eq!(frame(&mut rx), Err(expected.clone_for_test()));
    assert_eq!(
        rx.try_recv_latest_with(|f| f.len()),
        Err(expected.clone_for_test())
    );
    child.kill();
    let status = child.wait_within(HANG);
    assert_eq!(status.signal(), Some(SIGKILL));
}

/// `Error` is not `Clone` (it can hold an `io::Error`); these tests only
/// compare corruptions.
trait CloneForTest {
    fn clone_for_test(&self) -> Error;
}

impl CloneForTest for Error {
    fn clone_for_test(&self) -> Error {
        match self {
            Error::Corrupted(c) => Error::Corrupted(*c),
            other => panic!("not a corruption: {other:?}"),
        }
    }
}

/// A frame ring whose sender is raw: a `FrameSender` writes `good` frames,
/// then its end is reopened as a plain `Sender<u8>` that writes `bad`.
/// Returns the frame receiver and the memfd (to look at the indices).
fn ring_with(good: usize, bad: &[u8]) -> (FrameReceiver, std::os::fd::OwnedFd) {
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let mut frames = FrameSender::new(tx);
    for n in 0..good {
        frames.send_frame(n as u64, &[n as u8; 13]).unwrap();
    }
    let fds = frames.into_fds().unwrap();
    let memfd = fds.memfd.try_clone().unwrap();
    let mut raw = Sender::<u8>::from_fds(fds).unwrap();
    raw.write_all(bad).unwrap();
    (FrameReceiver::new(rx), memfd)
}

#[test]
fn hostile_frame_headers_are_corrupted_never_out_of_bounds() {
    // (what, bytes the hostile peer publishes, expected claimed end relative
    // to the record: None for "not a frame header").
    let too_long = {
        // Claims one byte more than was published.
        let mut r = record(9, 0, 0, MARKER, &[1; 8]);
        r[..8].copy_from_slice(&9u64.to_ne_bytes());
        r
    };
    let cases: Vec<(&str, Vec<u8>, Option<u64>)> = vec![
        (
            "length of u64::MAX",
            record(u64::MAX, 0, 0, MARKER, b""),
            Some(u64::MAX),
        ),
        (
            "length of the capacity",
            record(4096, 0, 0, MARKER, b""),
            Some(24 + 4096),
        ),
        ("one byte too long", too_long, Some(24 + 9)),
        (
            "length 2^63 with gap 56",
            record(1 << 63, 0, 56, MARKER, b""),
            Some(80 + (1 << 63)),
        ),
        ("a cut header", vec![0u8; 16], Some(24)),
        ("wrong marker", record(4, 0, 0, 0x1234_5678, b"abcd"), None),
        (
            "gap not a multiple of 8",
            record(4, 0, 7, MARKER, b"abcd"),
            None,
        ),
        ("gap of a page", header(0, 0, 4096, MARKER), None),
        ("gap of 64", header(0, 0, 64, MARKER), None),
        ("gap of 2^32 - 8", header(0, 0, u32::MAX - 7, MARKER), None),
        (
            "padding not published",
            record(1, 0, 0, MARKER, &[1])[..25].to_vec(),
            Some(32),
        ),
    ];
    for (what, bad, claimed_end) in cases {
        for good in [0, 3] {
            let (mut rx, memfd) = ring_with(good, &bad);
            for n in 0..good {
                let got = rx.try_recv_frame_with(|f| (f.tag(), f.to_vec()));
                assert_eq!(got, Ok((n as u64, vec![n as u8; 13])), "{what}");
            }
            let read = good as u64 * 40;
            let expected = Corruption::BadFrame {
                at: read,
                claimed_end,
                ready: bad.len() as u64,
            };
            let before = read_words(&memfd).read_index;
            for attempt in 0..3 {
                let got = match attempt {
                    0 => rx.try_recv_frame_with(|_| panic!("{what}: a bad frame was lent")),
                    1 => rx.recv_frame_with_timeout(HANG, |_| panic!("{what}: lent")),
                    _ => rx.try_recv_latest_with(|_| panic!("{what}: lent")),
                };
                assert_eq!(
                    got,
                    Err(Error::Corrupted(expected)),
                    "{what}, call {attempt}"
                );
            }
            assert_eq!(
                read_words(&memfd).read_index,
                before,
                "{what}: nothing is released after a bad record"
            );
        }
    }
}

#[test]
fn latest_walk_reports_a_bad_header_behind_good_frames_and_releases_nothing() {
    let (mut rx, memfd) = ring_with(3, &record(1 << 40, 0, 0, MARKER, b""));
    let before = read_words(&memfd).read_index;
    let got = rx.recv_latest_with(|_| panic!("nothing is lent"));
    assert!(matches!(got, Err(Error::Corrupted(_))), "{got:?}");
    assert_eq!(read_words(&memfd).read_index, before);
}

#[test]
fn a_receiver_requiring_more_alignment_than_its_sender_gives_says_so_and_keeps_the_frame() {
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let mut tx = FrameSender::with_align(tx, 8);
    let mut rx = FrameReceiver::with_align(rx, 64);
    // The first payload is at offset 24: 8-aligned, not 64-aligned. The
    // ends disagree; the sender broke nothing.
    tx.send_frame(0, b"x").unwrap();
    let mismatch = Error::FrameAlign {
        expected: 64,
        found: 8,
    };
    assert_eq!(rx.try_recv_frame_with(|_| ()), Err(mismatch));
    let message = rx.try_recv_frame_with(|_| ()).unwrap_err().to_string();
    assert!(
        message.contains("aligned this frame's payload to 8 bytes")
            && message.contains("expects 64"),
        "{message}"
    );
    // Nothing was released, and the answer stays the same.
    assert_eq!(rx.stats().frames, 0);
    assert!(matches!(
        rx.try_recv_frame_with(|_| ()),
        Err(Error::FrameAlign { .. })
    ));
}

// ---------------------------------------------------------------------------
// io::Write in a frame ring

#[test]
fn raw_io_write_bytes_interleaved_with_frames_are_corrupted() {
    // In one process this cannot happen: a `FrameSender` owns its
    // `Sender<u8>` and is not `io::Write` (a compile_fail doc test checks
    // it). Another writer on the same ring, here the end reopened from its
    // fds, can: the receiver gets the frames before the raw bytes, then
    // `Corrupted`, never the raw bytes as a frame.
    for raw in [&b"hello, raw bytes"[..], &[0u8; 24][..], &[0u8; 7][..]] {
        let (mut rx, _memfd) = ring_with(2, raw);
        for n in 0..2u64 {
            assert_eq!(rx.try_recv_frame_with(|f| f.tag()), Ok(n));
        }
        let got = rx.try_recv_frame_with(|f| f.to_vec());
        assert!(matches!(got, Err(Error::Corrupted(_))), "{raw:?}: {got:?}");
    }
}

#[test]
fn a_frame_sender_after_odd_raw_bytes_refuses_instead_of_misaligning() {
    let (mut tx, _rx) = channel::<u8>(4096).expect("channel");
    tx.write_all(b"abc").unwrap();
    let mut frames = FrameSender::new(tx);
    let got = frames.try_send_frame_with(8, |_| panic!("nothing is lent"));
    match got {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput)
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Sizes, room and waiting

#[test]
fn a_frame_larger_than_the_ring_is_an_error_at_the_call_not_a_hang() {
    for align in [8, 16, 32, 64] {
        let (tx, rx) = channel::<u8>(4096).expect("channel");
        let mut tx = FrameSender::with_align(tx, align);
        let mut rx = FrameReceiver::with_align(rx, align);
        let max = tx.max_frame_len();
        let started = Instant::now();
        for call in 0..5 {
            let never =
                |_: &mut FrameMut<'_>| -> usize { panic!("an oversized frame is not lent") };
            let got = match call {
                0 => tx.send_frame_with(max + 1, never),
                1 => tx.send_frame_with_timeout(max + 1, HANG, never),
                2 => tx.try_send_frame_with(max + 1, never),
                3 => tx.send_frame(0, &vec![0; max + 1]).map(|()| 0),
                _ => tx.offer_frame_with(usize::MAX, never).map(|_| 0),
            };
            match got {
                Err(Error::FrameTooLarge { len, max: said }) => {
                    assert_eq!(said, max as u64);
                    assert!(len > said, "{len} {said}");
                }
                other => panic!("align {align}, call {call}: {other:?}"),
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refused at once"
        );
        assert_eq!(
            tx.stats().dropped,
            0,
            "an oversized offer is an error, not a drop"
        );
        // The largest frame fits into the empty ring, wherever it stands.
        for n in 0..20 {
            tx.try_send_frame_with(max, |f| {
                f.fill(n);
                max
            })
            .unwrap_or_else(|e| panic!("align {align}, frame {n}: {e}"));
            rx.try_recv_frame_with(|f| assert!(f.len() == max && f.iter().all(|&b| b == n)))
                .unwrap();
            // Move the stream by 8..64 bytes, so the next one stands elsewhere.
            tx.try_send_frame(0, &vec![0; 8 * (n as usize % 5)])
                .unwrap();
            rx.try_recv_frame_with(|_| ()).unwrap();
        }
    }
}

#[test]
fn a_shorter_commit_frees_the_unused_tail_at_once() {
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let (mut tx, mut rx) = (FrameSender::new(tx), FrameReceiver::new(rx));
    let max = tx.max_frame_len();
    // Ask for the whole ring, commit 8 bytes: a 32-byte record.
    assert_eq!(
        tx.try_send_frame_with(max, |f| {
            f[..8].copy_from_slice(b"12345678");
            8
        }),
        Ok(8)
    );
    // With nothing received, the rest of the ring is free for one frame.
    let rest = 4096 - 32 - HEADER;
    assert_eq!(tx.try_send_frame_with(rest, |f| f.len()), Ok(rest));
    assert_eq!(tx.try_send_frame_with(0, |_| 0), Err(Error::Full));
    assert_eq!(
        rx.try_recv_frame_with(|f| f.to_vec()),
        Ok(b"12345678".to_vec())
    );
    assert_eq!(rx.try_recv_frame_with(|f| f.len()), Ok(rest));
    // Committing nothing sends an empty frame.
    assert_eq!(tx.try_send_frame_with(100, |_| 0), Ok(0));
    assert_eq!(rx.try_recv_frame_with(|f| (f.len(), f.tag())), Ok((0, 0)));
}

#[test]
fn some_room_but_not_enough_is_full_timeout_or_a_wait_that_ends() {
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let (mut tx, mut rx) = (FrameSender::new(tx), FrameReceiver::new(rx));
    tx.send_frame(1, &[1; 3000]).unwrap();
    // 1072 bytes free: too few for 2000.
    assert_eq!(
        tx.try_send_frame_with(2000, |_| panic!("not lent")),
        Err(Error::Full)
    );
    let started = Instant::now();
    let waited =
        tx.send_frame_with_timeout(2000, Duration::from_millis(50), |_| panic!("not lent"));
    assert_eq!(waited, Err(Error::Timeout));
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert!(tx.offer_frame_with(2000, |_| panic!("not lent")) == Ok(false));
    assert_eq!(tx.stats().dropped, 1);
    // A blocked sender goes on once the receiver takes the frame.
    let receiver = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        rx.recv_frame_with(|f| f.tag()).unwrap();
        rx.recv_frame_with(|f| f.tag()).unwrap()
    });
    tx.send_frame_with_timeout(2000, HANG, |f| {
        f.set_tag(2);
        f.len()
    })
    .unwrap();
    assert_eq!(receiver.join().unwrap(), 2);
    // An empty ring's receiver: Empty, Timeout; Disconnected once the sender is gone.
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let mut rx = FrameReceiver::new(rx);
    assert_eq!(rx.try_recv_frame_with(|_| ()), Err(Error::Empty));
    assert_eq!(
        rx.recv_latest_with_timeout(Duration::from_millis(10), |_| ()),
        Err(Error::Timeout)
    );
    drop(tx);
    assert_eq!(rx.recv_frame_with(|_| ()), Err(Error::Disconnected));
}

/// Receives `FDRING_TEST_COUNT` frames, then holds its end open, consuming
/// nothing, until killed (or drops it, with `FDRING_TEST_DROP=1`).
fn role_recv_then_stall() {
    let rx = Receiver::<u8>::from_fds(handoff::inherited(RING_ENV).expect("inherited"))
        .expect("open the receiver");
    let mut rx = FrameReceiver::new(rx);
    for _ in 0..env_u64("FDRING_TEST_COUNT", 0) {
        rx.recv_frame_with(|_| ()).expect("a frame");
    }
    report("stalled");
    if env_u64("FDRING_TEST_DROP", 0) == 1 {
        // Drop when the parent says so (a line on stdin).
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .expect("a line from the parent");
        drop(rx);
        report("dropped");
    }
    thread::sleep(Duration::from_secs(100));
}

/// A sender waiting for room for a large frame, while some bytes are free,
/// learns of the receiver's death (SIGKILL, or a drop) within `NOTICE`.
fn waiting_sender_sees_the_receiver_go(kill: bool) {
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let mut tx = FrameSender::new(tx);
    let mut child = ChildProc::spawn("recv_then_stall", |command| {
        handoff::inherit(command, RING_ENV, rx.into_fds().unwrap());
        command
            .stdin(Stdio::piped())
            .env("FDRING_TEST_COUNT", "1")
            .env("FDRING_TEST_DROP", if kill { "0" } else { "1" });
    });
    let mut to_child = child.child.stdin.take().expect("piped stdin");
    tx.send_frame(0, &[0; 100]).unwrap();
    child.expect_line("stalled", HANG);
    // 3000 + 24 bytes in the ring: some room, not enough for 2000.
    tx.send_frame(1, &[1; 3000]).unwrap();
    if kill {
        child.kill();
    } else {
        writeln!(to_child, "drop").expect("tell the child to drop its end");
        child.expect_line("dropped", HANG);
    }
    let gone = Instant::now();
    let got = tx.send_frame_with_timeout(2000, HANG, |_| panic!("no room ever"));
    assert_eq!(got, Err(Error::Disconnected), "kill: {kill}");
    assert!(
        gone.elapsed() < NOTICE,
        "noticed after {:?}",
        gone.elapsed()
    );
    drop(child);
}

#[test]
fn a_sender_waiting_for_room_sees_a_killed_receiver() {
    waiting_sender_sees_the_receiver_go(true);
}

#[test]
fn a_sender_waiting_for_room_sees_a_dropped_receiver() {
    waiting_sender_sees_the_receiver_go(false);
}

// ---------------------------------------------------------------------------
// Latest-frame-wins

/// The payload of a stamped frame: its number, then bytes derived from it,
/// and last a checksum of everything before it.
fn stamped(n: u64, bytes: &mut [u8]) {
    let (body, sum) = bytes.split_at_mut(bytes.len() - 8);
    body[..8].copy_from_slice(&n.to_ne_bytes());
    let mut rng = Rng::new(n);
    for chunk in body[8..].chunks_mut(8) {
        let word = rng.next_u64().to_ne_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    sum.copy_from_slice(&checksum(body).to_ne_bytes());
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().enumerate().fold(0u64, |a, (i, &b)| {
        a.rotate_left(5) ^ (u64::from(b) + i as u64)
    })
}

/// Checks a stamped frame, after holding it `hold`; returns its number.
#[track_caller]
fn check_stamped(frame: Frame<'_>, hold: Duration) -> u64 {
    // A slow consumer: the sender keeps offering frames meanwhile, into
    // the bytes released before this frame was lent.
    thread::sleep(hold);
    let (body, sum) = frame.split_at(frame.len() - 8);
    let n = u64::from_ne_bytes(body[..8].try_into().unwrap());
    assert_eq!(frame.tag(), n, "the tag and the stamp of a frame differ");
    assert_eq!(
        u64::from_ne_bytes(sum.try_into().unwrap()),
        checksum(body),
        "frame {n}: its checksum does not match: a torn frame"
    );
    let mut expected = vec![0u8; frame.len()];
    stamped(n, &mut expected);
    assert!(*frame == *expected, "frame {n}: torn");
    n
}

/// Offers `FDRING_TEST_COUNT` stamped frames of `FDRING_TEST_LEN` bytes as
/// fast as it can, never waiting; reports what it committed and dropped.
fn role_offer_stamped() {
    let tx = Sender::<u8>::from_fds(handoff::inherited(RING_ENV).expect("inherited"))
        .expect("open the sender");
    let mut tx = FrameSender::with_align(tx, 64);
    let len = env_u64("FDRING_TEST_LEN", 0) as usize;
    let count = env_u64("FDRING_TEST_COUNT", 0);
    let mut last = None;
    let mut slowest = Duration::ZERO;
    for n in 0..count {
        let started = Instant::now();
        let sent = tx
            .offer_frame_with(len, |frame| {
                stamped(n, frame);
                frame.set_tag(n);
                len
            })
            .expect("offer");
        slowest = slowest.max(started.elapsed());
        if sent {
            last = Some(n);
        }
        // A little pacing, so that the stream outlasts a few slow reads.
        if n % 16 == 0 {
            thread::sleep(Duration::from_micros(200));
        }
    }
    let stats = tx.stats();
    report(&format!(
        "result committed={} dropped={} last={} slowest_us={}",
        stats.frames,
        stats.dropped,
        last.map_or(-1, |l| l as i64),
        slowest.as_micros()
    ));
}

#[test]
fn latest_frame_wins_under_a_slow_consumer_never_shows_a_torn_frame() {
    const LEN: usize = 16 * 1024;
    const COUNT: u64 = 3000;
    // Room for three frames.
    let capacity = FrameSender::capacity_for(3, LEN, 64);
    let (tx, rx) = channel::<u8>(capacity).expect("channel");
    let mut rx = FrameReceiver::with_align(rx, 64);
    let child = ChildProc::spawn("offer_stamped", |command| {
        handoff::inherit(command, RING_ENV, tx.into_fds().unwrap());
        command
            .env("FDRING_TEST_LEN", LEN.to_string())
            .env("FDRING_TEST_COUNT", COUNT.to_string());
    });
    let mut seen = Vec::new();
    let mut rng = Rng::new(seed());
    loop {
        let hold = Duration::from_micros(rng.range(0, 3000));
        match rx.recv_latest_with_timeout(HANG, |frame| check_stamped(frame, hold)) {
            Ok(n) => {
                if let Some(&before) = seen.last() {
                    assert!(n > before, "frame {n} after frame {before}: out of order");
                }
                seen.push(n);
            }
            Err(Error::Disconnected) => break,
            Err(e) => panic!("after {} frames: {e}", seen.len()),
        }
    }
    let mut child = child;
    let line = child.expect_line("result", HANG);
    child.finish();
    let result = fields(&line);
    let number = |key: &str| result[key].parse::<i64>().unwrap();
    let stats = rx.stats();
    eprintln!("{line}; received {}, skipped {}", seen.len(), stats.skipped);
    assert_eq!(
        seen.len() as i64 + stats.skipped as i64,
        number("committed"),
        "every committed frame is either lent or skipped, once"
    );
    assert_eq!(number("committed") + number("dropped"), COUNT as i64);
    assert_eq!(
        seen.last().map(|&l| l as i64),
        Some(number("last")),
        "the last frame committed is never skipped"
    );
    assert!(
        stats.skipped > 0,
        "the consumer was slow enough to skip frames"
    );
    assert!(
        number("dropped") > 0,
        "the producer dropped frames rather than wait"
    );
    assert!(
        (seen.len() as u64) < COUNT / 4,
        "a slow consumer sees a fraction of the frames ({} of {COUNT})",
        seen.len()
    );
}

#[test]
fn latest_frees_the_older_frames_before_lending_the_newest() {
    // Two records of 2048 bytes fill the one-page ring exactly.
    let (tx, rx) = channel::<u8>(4096).expect("channel");
    let (mut tx, mut rx) = (FrameSender::new(tx), FrameReceiver::new(rx));
    let len = 2048 - HEADER;
    assert_eq!(FrameSender::capacity_for(2, len, 8), 4096);
    let offer = |tx: &mut FrameSender, n: u64| {
        tx.offer_frame_with(len, |f| {
            f.fill(n as u8);
            f.set_tag(n);
            len
        })
        .unwrap()
    };
    assert!(offer(&mut tx, 1) && offer(&mut tx, 2));
    assert!(!offer(&mut tx, 3), "full: frame 3 is dropped");
    let newest = rx
        .recv_latest_with(|frame| {
            // Frame 1 was released before this frame was lent: the sender
            // has room for a fresh frame while the receiver looks.
            assert!(
                offer(&mut tx, 4),
                "room for a frame while the newest is lent"
            );
            assert!(
                frame.iter().all(|&b| b == 2),
                "frame 2 unchanged while lent"
            );
            frame.tag()
        })
        .unwrap();
    assert_eq!(newest, 2);
    assert_eq!(rx.try_recv_latest_with(|f| f.tag()), Ok(4));
    assert_eq!(rx.try_recv_latest_with(|f| f.tag()), Err(Error::Empty));
    let (sent, received) = (tx.stats(), rx.stats());
    assert_eq!((sent.frames, sent.dropped), (3, 1));
    assert_eq!((received.frames, received.skipped), (2, 1));
    // Mixed with in-order receives, order is kept.
    for n in 10..15 {
        tx.send_frame(n, &[0; 10]).unwrap();
    }
    assert_eq!(rx.try_recv_frame_with(|f| f.tag()), Ok(10));
    assert_eq!(rx.try_recv_latest_with(|f| f.tag()), Ok(14));
    assert_eq!(rx.stats().skipped, 4);
}

// ---------------------------------------------------------------------------
// Cost

#[test]
fn frames_allocate_nothing_once_running() {
    let (tx, rx) = channel::<u8>(1 << 16).expect("channel");
    let (mut tx, mut rx) = (
        FrameSender::with_align(tx, 64),
        FrameReceiver::with_align(rx, 64),
    );
    let mut buf = Vec::with_capacity(4096);
    let mut round = |tx: &mut FrameSender, rx: &mut FrameReceiver, n: u64| {
        let len = (n as usize * 37) % 4000;
        tx.send_frame_with(len, |f| {
            f.fill(n as u8);
            f.set_tag(n);
            len
        })
        .unwrap();
        tx.try_send_frame(n, &[1; 100]).unwrap();
        assert!(tx.offer_frame_with(len, |f| f.len()).unwrap());
        assert_eq!(rx.recv_frame_with(|f| f.tag()).unwrap(), n);
        assert_eq!(rx.try_recv_frame(&mut buf).unwrap(), n);
        assert_eq!(rx.recv_latest_with(|f| f.len()).unwrap(), len);
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
        "allocations in 10,000 rounds of frames"
    );
}

/// Whether `fd` becomes readable within `within`.
fn readable_within(fd: &impl std::os::fd::AsFd, within: Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let timeout = rustix::time::Timespec {
        tv_sec: within.as_secs() as i64,
        tv_nsec: within.subsec_nanos().into(),
    };
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    poll(&mut fds, Some(&timeout)).expect("poll") == 1
}

/// A frame sender in an event loop: `prepare_wait(len)` arms while there
/// is room for a smaller frame but not for this one, says "retry" when
/// there is, and the fd becomes readable once the receiver frees enough.
#[test]
fn a_frame_sender_in_an_event_loop_waits_for_room_for_its_own_frame() {
    let (tx, rx) = channel::<u8>(4096).unwrap();
    let (mut tx, mut rx) = (FrameSender::new(tx), FrameReceiver::new(rx));
    tx.send_frame(0, &[0; 2000]).unwrap();
    tx.send_frame(1, &[1; 1000]).unwrap();
    // About 1 KiB is free: enough for 500 bytes, not for 2000.
    assert_eq!(tx.try_send_frame(2, &[2; 2000]), Err(Error::Full));
    assert!(!tx.prepare_wait(500).unwrap(), "a 500-byte frame fits");
    assert!(
        tx.prepare_wait(2000).unwrap(),
        "a 2000-byte frame does not fit"
    );
    assert!(
        !readable_within(&tx, Duration::ZERO),
        "readable before any release"
    );
    let reader = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        let tag = rx.recv_frame_with(|frame| frame.tag()).unwrap();
        (tag, rx)
    });
    assert!(
        readable_within(&tx, NOTICE),
        "the release of a frame did not wake the armed sender"
    );
    let (tag, _rx) = reader.join().unwrap();
    assert_eq!(tag, 0);
    tx.try_send_frame(2, &[2; 2000]).unwrap();
    assert!(matches!(
        tx.prepare_wait(4096),
        Err(Error::FrameTooLarge { len: 4096, .. })
    ));
}
