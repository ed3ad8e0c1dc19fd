//! tokio: readiness after "would block", cancelled futures that lose
//! nothing, killed children, and `AsyncRead` / `AsyncWrite` with children.

use std::io::ErrorKind;
use std::mem::MaybeUninit;
use std::pin::pin;
use std::time::{Duration, Instant};

use crate::common::{
    check_seq, fields, read_words, report, seed, ChildProc, Rng, HANG, NOTICE, RING_ENV,
    STREAM_RECV, STREAM_SEND,
};
use crate::peers::{
    count, edge_cycles, finish_echo_go, spawn_echo_go, spawn_with_receiver, spawn_with_sender,
    COUNT_ENV,
};
use crate::runtimes::{current_thread_runtime, poll_once, runtime};
use fdring::tokio::{AsyncReceiver, AsyncSender};
use fdring::{channel, handoff, Error, Liveness, Receiver, Sender};

/// Reads bytes until end of file; reports their count and hash.
pub(crate) fn role_bytes_sink() {
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
pub(crate) fn role_bytes_source() {
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
