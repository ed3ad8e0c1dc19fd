//! A parent hands two rings to a child process; both sides serve them from
//! tokio tasks, next to a Unix socket.
//!
//! It shows:
//! - `AsyncSender` / `AsyncReceiver` (feature `tokio`): `send_with` and
//!   `recv_with` await a free slot or a ready item and then lend the ring
//!   in place, with no system call while the stream flows;
//! - a byte ring as `AsyncWrite` / `AsyncRead`: the parent writes a log
//!   with `write_all` and `shutdown` (which closes the ring), the child
//!   reads it to end of file;
//! - the rings next to a `tokio::net::UnixStream` in one `tokio::select!`
//!   loop: `recv`, `recv_with`, `AsyncRead` and `Lines::next_line` are
//!   cancel-safe, so a branch that loses the race loses nothing;
//! - handing rings over a Unix socket (`handoff::send_fds` /
//!   `handoff::recv_fds`), which then carries text commands.
//!
//! The parent streams `Sample`s and asks for the child's running totals
//! now and then; the child checks every sample and every byte and finally
//! sends its totals, which the parent checks.
//!
//! Run it with
//!
//! ```text
//! cargo run --release --features tokio --example tokio_child
//! ```
//!
//! (This program is its own child: it re-runs itself with `--child`.)

use std::error::Error;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, ExitCode, Stdio};

use bytemuck::{Pod, Zeroable};
use fdring::tokio::{AsyncReceiver, AsyncSender};
use fdring::{handoff, Receiver};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::watch;

/// One measurement: what a sensor process might stream.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
struct Sample {
    seq: u64,
    value: f64,
}

/// Samples streamed, and how often the parent asks for the totals.
const SAMPLES: u64 = 10_000_000;
const ASK_EVERY: u64 = 2_000_000;
/// Samples the parent writes per call.
const CHUNK: usize = 4096;
/// Lines of the log sent through the byte ring.
const LOG_LINES: u64 = 100_000;

/// The value of sample `seq`: exact in `f64`, so the sums match exactly.
fn value(seq: u64) -> f64 {
    (seq % 1000) as f64 * 0.5
}

/// FNV-1a, to compare the bytes on both sides.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    hash
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

type AnyResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

#[tokio::main]
async fn main() -> ExitCode {
    let result = match std::env::args().nth(1).as_deref() {
        Some("--child") => child().await,
        _ => parent().await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio_child: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn parent() -> AnyResult<()> {
    // The control socket: the child gets its end as its stdin.
    let (control, theirs) = std::os::unix::net::UnixStream::pair()?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--child")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .spawn()?;

    let (samples, theirs) = fdring::channel::<Sample>(1 << 15)?;
    handoff::send_fds(&control, theirs.into_fds()?)?;
    let (log, theirs) = fdring::channel::<u8>(1 << 16)?;
    handoff::send_fds(&control, theirs.into_fds()?)?;
    control.set_nonblocking(true)?;
    let (replies, mut commands) = UnixStream::from_std(control)?.into_split();
    let mut replies = BufReader::new(replies).lines();

    // The log goes through the byte ring from a task of its own.
    let log_task = tokio::spawn(write_log(AsyncSender::new(log)?));

    let mut samples = AsyncSender::new(samples)?;
    let (mut next, mut sum) = (0u64, 0.0f64);
    while next < SAMPLES {
        let sent = samples
            .send_with(|slots: &mut [MaybeUninit<Sample>]| {
                let n = slots.len().min(CHUNK).min((SAMPLES - next) as usize);
                for (k, slot) in slots[..n].iter_mut().enumerate() {
                    let seq = next + k as u64;
                    slot.write(Sample {
                        seq,
                        value: value(seq),
                    });
                }
                n
            })
            .await?;
        for seq in next..next + sent as u64 {
            sum += value(seq);
            if (seq + 1) % ASK_EVERY == 0 {
                commands.write_all(b"stats\n").await?;
                let reply = replies.next_line().await?.unwrap_or_default();
                println!("parent: at sample {}, child says: {reply}", seq + 1);
            }
        }
        next += sent as u64;
    }
    let stats = samples.get_ref().map(|tx| tx.stats());
    samples.close(); // the end of the stream: the child's `recv_with` returns `Disconnected`
    let (log_bytes, log_hash) = log_task.await??;

    let done = replies.next_line().await?.unwrap_or_default();
    println!("parent: child says: {done}");
    let expected =
        format!("done received={SAMPLES} sum={sum} log_bytes={log_bytes} log_hash={log_hash:x}");
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    if done != expected || !status.success() {
        return Err(format!("expected {expected:?} and success, got {status}").into());
    }
    if let Some(stats) = stats {
        println!(
            "verified: {SAMPLES} samples and {log_bytes} log bytes; the sample sender woke the child {} times",
            stats.wakeups
        );
    }
    Ok(())
}

/// Writes the log through the byte ring; returns its length and hash.
async fn write_log(mut log: AsyncSender<u8>) -> AnyResult<(u64, u64)> {
    let (mut len, mut hash) = (0u64, FNV_START);
    for i in 0..LOG_LINES {
        let line = format!("{i:>8} {}\n", "log ".repeat((i % 17) as usize));
        log.write_all(line.as_bytes()).await?;
        len += line.len() as u64;
        hash = fnv1a(hash, line.as_bytes());
    }
    log.shutdown().await?; // the reader gets end of file after the last byte
    Ok((len, hash))
}

async fn child() -> AnyResult<()> {
    // Our stdin is the control socket; the rings' fds come over it first.
    let control =
        std::os::unix::net::UnixStream::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let samples = Receiver::<Sample>::from_fds(handoff::recv_fds(&control)?)?;
    let log = Receiver::<u8>::from_fds(handoff::recv_fds(&control)?)?;
    control.set_nonblocking(true)?;
    let (commands, mut replies) = UnixStream::from_std(control)?.into_split();
    let mut commands = BufReader::new(commands).lines();

    let (totals_tx, totals) = watch::channel((0u64, 0.0f64));
    let mut samples_task = tokio::spawn(receive_samples(AsyncReceiver::new(samples)?, totals_tx));
    let mut log_task = tokio::spawn(read_log(AsyncReceiver::new(log)?));
    let (mut samples_done, mut log_done) = (None, None);
    while samples_done.is_none() || log_done.is_none() {
        tokio::select! {
            command = commands.next_line() => match command?.as_deref() {
                Some("stats") => {
                    let (received, sum) = *totals.borrow();
                    replies.write_all(format!("received={received} sum={sum}\n").as_bytes()).await?;
                }
                Some(other) => return Err(format!("unknown command {other:?}").into()),
                None => return Err("the parent closed the control socket".into()),
            },
            done = &mut samples_task, if samples_done.is_none() => samples_done = Some(done??),
            done = &mut log_task, if log_done.is_none() => log_done = Some(done??),
        }
    }
    let ((received, sum), (log_bytes, log_hash)) = (
        samples_done.unwrap_or_default(),
        log_done.unwrap_or_default(),
    );
    replies
        .write_all(
            format!(
                "done received={received} sum={sum} log_bytes={log_bytes} log_hash={log_hash:x}\n"
            )
            .as_bytes(),
        )
        .await?;
    Ok(())
}

/// Receives and checks samples until the parent closes the ring,
/// publishing the running totals; returns them.
async fn receive_samples(
    mut samples: AsyncReceiver<Sample>,
    totals: watch::Sender<(u64, f64)>,
) -> AnyResult<(u64, f64)> {
    let (mut received, mut sum) = (0u64, 0.0f64);
    loop {
        let got = samples
            .recv_with(|batch: &[Sample]| {
                for sample in batch {
                    let expected = Sample {
                        seq: received,
                        value: value(received),
                    };
                    assert_eq!(*sample, expected, "a sample was lost or changed");
                    received += 1;
                    sum += sample.value;
                }
                batch.len()
            })
            .await;
        match got {
            Ok(_) => {
                totals.send_replace((received, sum));
            }
            Err(fdring::Error::Disconnected) => return Ok((received, sum)),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads the log to end of file; returns its length and hash.
async fn read_log(mut log: AsyncReceiver<u8>) -> AnyResult<(u64, u64)> {
    let (mut len, mut hash) = (0u64, FNV_START);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = log.read(&mut buf).await?;
        if n == 0 {
            return Ok((len, hash));
        }
        len += n as u64;
        hash = fnv1a(hash, &buf[..n]);
    }
}
