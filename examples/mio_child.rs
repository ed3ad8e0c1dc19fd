//! A parent hands a ring to a child process, which serves it from a `mio`
//! event loop together with a Unix socket.
//!
//! It shows:
//! - handing a ring over a Unix socket (`handoff::send_fds` /
//!   `handoff::recv_fds`); the same socket then carries text commands;
//! - a `Receiver` registered in a `mio::Poll` (feature `mio`) next to a
//!   `mio::net::UnixStream`, both edge-triggered: the ring is drained until
//!   "would block" (`EventLoopExt::try_or_arm`, which arms it), the socket
//!   until `WouldBlock`;
//! - the end of the stream as an event: when the parent drops its sender,
//!   the ring's fd becomes readable and the next call returns
//!   `Disconnected` after the last item. Had the parent died, its end would
//!   have hung up, with the same result.
//!
//! The parent streams `Sample`s and asks for the child's running totals
//! now and then ("stats"); the child checks every sample and answers from
//! its loop, then sends "done" with its totals, which the parent checks.
//!
//! Run it with
//!
//! ```text
//! cargo run --release --features mio --example mio_child
//! ```
//!
//! (This program is its own child: it re-runs itself with `--child`.)

use std::error::Error;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, ExitCode, Stdio};

use bytemuck::{Pod, Zeroable};
use fdring::mio::EventLoopExt;
use fdring::{handoff, Receiver};
use mio::{Events, Interest, Poll, Token};

/// One measurement: what a sensor process might stream.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
struct Sample {
    seq: u64,
    value: f64,
}

/// Samples streamed, and how often the parent asks for the totals.
const SAMPLES: u64 = 10_000_000;
const ASK_EVERY: u64 = 1_000_000;
/// Samples the parent writes per call: a part of the ring, so that both
/// processes work at once.
const CHUNK: usize = 4096;

/// The value of sample `seq`: exact in `f64`, so the sums match exactly.
fn value(seq: u64) -> f64 {
    (seq % 1000) as f64 * 0.5
}

/// The tokens of the child's loop.
const RING: Token = Token(0);
const CONTROL: Token = Token(1);

type AnyResult<T> = Result<T, Box<dyn Error>>;

fn main() -> ExitCode {
    let result = match std::env::args().nth(1).as_deref() {
        Some("--child") => child(),
        _ => parent(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mio_child: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parent() -> AnyResult<()> {
    // The control socket: the child gets its end as its stdin.
    let (control, theirs) = UnixStream::pair()?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--child")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .spawn()?;
    // The `Command` is gone: the child's socket end lives only in the child.

    let (mut tx, rx) = fdring::channel::<Sample>(1 << 15)?;
    handoff::send_fds(&control, rx.into_fds()?)?;
    let mut replies = BufReader::new(control.try_clone()?);
    let mut control = control;

    let (mut next, mut sum) = (0u64, 0.0f64);
    while next < SAMPLES {
        let sent = tx.send_with(|slots: &mut [MaybeUninit<Sample>]| {
            let n = slots.len().min(CHUNK).min((SAMPLES - next) as usize);
            for (k, slot) in slots[..n].iter_mut().enumerate() {
                let seq = next + k as u64;
                slot.write(Sample {
                    seq,
                    value: value(seq),
                });
            }
            n
        })?;
        for seq in next..next + sent as u64 {
            sum += value(seq);
            if (seq + 1) % ASK_EVERY == 0 {
                // The child answers from its loop while the ring streams.
                control.write_all(b"stats\n")?;
                let mut line = String::new();
                replies.read_line(&mut line)?;
                println!("parent: at sample {}, child says: {}", seq + 1, line.trim());
            }
        }
        next += sent as u64;
    }
    let stats = tx.stats();
    drop(tx); // the end of the stream: the child's loop gets an event

    let mut line = String::new();
    replies.read_line(&mut line)?;
    let expected = format!("done received={SAMPLES} sum={sum}");
    println!("parent: child says: {}", line.trim());
    let status = child.wait()?;
    if line.trim() != expected || !status.success() {
        return Err(format!("expected {expected:?} and success, got {status}").into());
    }
    println!(
        "verified: {SAMPLES} samples in order; the parent slept {} times and woke the child {} times",
        stats.sleeps, stats.wakeups
    );
    Ok(())
}

fn child() -> AnyResult<()> {
    // Our stdin is the control socket; the ring's fds come over it first.
    let stdin = io::stdin().as_fd().try_clone_to_owned()?;
    let control = UnixStream::from(stdin);
    let mut rx = Receiver::<Sample>::from_fds(handoff::recv_fds(&control)?)?;
    control.set_nonblocking(true)?;
    let mut control = mio::net::UnixStream::from_std(control);

    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut rx, RING, Interest::READABLE)?;
    poll.registry()
        .register(&mut control, CONTROL, Interest::READABLE)?;
    let mut events = Events::with_capacity(8);
    let (mut received, mut sum) = (0u64, 0.0f64);
    let mut commands: Vec<u8> = Vec::new();
    // Both sources may be ready before their first event: serve both.
    let (mut ring_ready, mut control_ready) = (true, true);
    loop {
        if ring_ready {
            // Drain the ring until "would block", which arms it.
            loop {
                let got = rx.try_or_arm(|rx| {
                    rx.try_recv_with(|samples: &[Sample]| {
                        for sample in samples {
                            let expected = Sample {
                                seq: received,
                                value: value(received),
                            };
                            assert_eq!(*sample, expected, "a sample was lost or changed");
                            received += 1;
                            sum += sample.value;
                        }
                        samples.len()
                    })
                });
                match got {
                    Ok(_) => {}
                    Err(fdring::Error::Empty) => break,
                    Err(fdring::Error::Disconnected) => {
                        // Every sample received, and the parent is done.
                        poll.registry().deregister(&mut rx)?;
                        let mut control = UnixStream::from(OwnedFd::from(control));
                        control.set_nonblocking(false)?;
                        writeln!(control, "done received={received} sum={sum}")?;
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if control_ready {
            // Drain the socket until `WouldBlock`, answering each command.
            let mut buf = [0u8; 256];
            loop {
                match control.read(&mut buf) {
                    Ok(0) => return Err("the parent closed the control socket".into()),
                    Ok(n) => commands.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            while let Some(end) = commands.iter().position(|&b| b == b'\n') {
                let command: Vec<u8> = commands.drain(..=end).collect();
                match &command[..] {
                    b"stats\n" => {
                        // A few bytes on a socket the parent reads at once:
                        // a blocking write would do, but stay non-blocking.
                        let reply = format!("received={received} sum={sum}\n");
                        write_all_nonblocking(&mut control, reply.as_bytes())?;
                    }
                    other => {
                        return Err(
                            format!("unknown command {:?}", String::from_utf8_lossy(other)).into(),
                        )
                    }
                }
            }
        }
        // Both drained: sleep until one of them has something (or, where
        // this process cannot call membarrier, 1 ms at most).
        loop {
            match poll.poll(&mut events, fdring::poll_timeout()) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        ring_ready = events.iter().any(|e| e.token() == RING);
        control_ready = events.iter().any(|e| e.token() == CONTROL);
    }
}

/// Writes a short reply on the non-blocking socket, waiting (briefly) if
/// its buffer is full.
fn write_all_nonblocking(socket: &mut mio::net::UnixStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match socket.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
