//! `create_open`: how long a ring takes from its creation to the first
//! item in the creator's hands, with the other end opened by a process
//! that is already running.
//!
//! The child (core 1) is started once per run, with one end of a
//! `UnixStream` pair made before it started, and waits on it. Each of the
//! parent's `n` creations (core 0) is timed alone, from before the ring is
//! made to the item received:
//!
//! - fdring: `Builder::capacity(..).build::<u64>()` of a ring of the row's
//!   size, `handoff::send_fds` of the sender's bundle to the child, which
//!   `recv_fds` it, `open_sender`s it and sends `MARK + k` on it; the
//!   parent `recv_timeout`s it on the receiver (the default spin, then
//!   asleep on the wake-up socket). "no-prefault" builds with
//!   `prefault(false)`.
//! - iceoryx2: a publish-subscribe service of `[u64]` slices, created for
//!   the connection with the settings of its own benchmarks
//!   (`crate::iceoryx`: one publisher, one subscriber, history 0, a
//!   subscriber buffer of 1), whose samples are as long as the row's size
//!   (`initial_max_slice_len`), and its subscriber; the service's number
//!   goes to the child over the same socket, which opens the service,
//!   creates a publisher, loans a one-word sample and sends `MARK + k` in
//!   it; the parent busy-polls `receive()` as iceoryx2's benchmarks do.
//!
//! After the clock stopped, the parent writes one byte to the child, which
//! drops its end and waits for the next connection; then the parent drops
//! its own. The metrics are `connect_latency`'s: the round's median and
//! 99th percentile.

use std::hint::spin_loop;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use fdring::{handoff, Builder};
use iceoryx2::prelude::*;

use crate::connect::{connect_side, MARK, P50_US, PATIENCE};
use crate::iceoryx::{Domain, DOMAIN_VAR};
use crate::ours::stats;
use crate::process::{child_with_env, pair, Cfg, Gate, Run};
use crate::report::{num, Row};
use crate::Res;

/// The rows' ring sizes, in bytes of data.
pub const SIZES: [usize; 3] = [64 << 10, 1 << 20, 16 << 20];

/// What the report's header says about the case.
pub fn header(n: u64) -> String {
    format!(
        "create_open: {n} creations per round, each timed from before the ring is made to its first item, \
         received from a child that opened it (fdring: handoff::send_fds; iceoryx2: service create + open); \
         p50 and p99 are the round's median and 99th percentile"
    )
}

/// Tells the child, when it drops after the clock stopped, that the
/// parent has its item: one byte.
struct Ack<'a>(&'a UnixStream);

impl Drop for Ack<'_> {
    fn drop(&mut self) {
        let _ = self.0.write_all(&[1]);
    }
}

fn wait_ack(mut socket: &UnixStream) -> Res<()> {
    let mut byte = [0];
    socket.read_exact(&mut byte)?;
    Ok(())
}

/// fdring: a ring of `bytes` of data, pre-faulted or not.
pub fn fdring_create_open(c: &Cfg, bytes: usize, prefault: bool) -> Res<Run> {
    let (ours, theirs) = UnixStream::pair()?;
    let peer = child_with_env("create-open-fdring", c, vec![], vec![theirs.into()], &[])?;
    let builder = Builder::new()
        .capacity(bytes / 8)
        .spin(c.spin)
        .prefault(prefault);
    pair(peer, |gate| {
        connect_side(c, gate, || {
            let (tx, mut rx) = builder.build::<u64>()?;
            handoff::send_fds(&ours, tx.into_fds()?)?;
            let item = rx.recv_timeout(PATIENCE)?;
            Ok((item, stats(rx.stats()), (Ack(&ours), rx)))
        })
    })
}

/// The child of [`fdring_create_open`]: opens `n` rings one after the
/// other and sends the item on each.
pub fn open_fdring(c: &Cfg, socket: OwnedFd, builder: Builder, gate: Gate) -> Res<Run> {
    let socket = UnixStream::from(socket);
    let mut counters = [0, 0];
    let before = gate.open();
    for k in 0..c.n {
        let mut tx = builder.open_sender::<u64>(handoff::recv_fds(&socket)?)?;
        tx.send(MARK + k)?;
        let [writes, sleeps] = stats(tx.stats());
        counters = [counters[0] + writes, counters[1] + sleeps];
        wait_ack(&socket)?;
    }
    Run::side(true, before, counters)
}

/// The service of connection `k`.
fn service_name(k: u64) -> Res<ServiceName> {
    Ok(ServiceName::new(&format!("create-open-{k}"))?)
}

/// iceoryx2: a service whose samples hold `bytes`.
pub fn iox_create_open(c: &Cfg, bytes: usize) -> Res<Run> {
    let (ours, theirs) = UnixStream::pair()?;
    let domain = Domain::fresh()?;
    let env = [(DOMAIN_VAR, domain.name())];
    let peer = child_with_env("create-open-iox", c, vec![], vec![theirs.into()], &env)?;
    // The node is the process's, made once, as fdring's process is there
    // before its rings.
    let node = domain.node()?;
    let words = bytes / 8;
    let mut k = 0;
    pair(peer, |gate| {
        connect_side(c, gate, || {
            let service = node
                .service_builder(&service_name(k)?)
                .publish_subscribe::<[u64]>()
                .max_publishers(1)
                .max_subscribers(1)
                .history_size(0)
                .subscriber_max_buffer_size(1)
                .enable_safe_overflow(true)
                .create()?;
            let subscriber = service.subscriber_builder().create()?;
            (&ours).write_all(&[k.to_ne_bytes(), (words as u64).to_ne_bytes()].concat())?;
            k += 1;
            let start = Instant::now();
            let item = loop {
                if let Some(sample) = subscriber.receive()? {
                    break sample.payload().first().copied().unwrap_or(0);
                }
                if start.elapsed() > PATIENCE {
                    return Err("no sample from the child".into());
                }
                spin_loop();
            };
            Ok((item, [0, 0], (Ack(&ours), subscriber, service)))
        })
    })
}

/// The child of [`iox_create_open`]: opens `n` services one after the
/// other and publishes the item on each.
pub fn open_iox(c: &Cfg, socket: OwnedFd, gate: Gate) -> Res<Run> {
    let socket = UnixStream::from(socket);
    let node = Domain::inherited()?.node()?;
    let before = gate.open();
    for k in 0..c.n {
        let mut message = [0u8; 16];
        (&socket).read_exact(&mut message)?;
        let [number, words] = bytemuck::cast::<[u8; 16], [u64; 2]>(message);
        if number != k {
            return Err(format!("service {number} where {k} was due").into());
        }
        let service = node
            .service_builder(&service_name(k)?)
            .publish_subscribe::<[u64]>()
            .open()?;
        let publisher = service
            .publisher_builder()
            .initial_max_slice_len(words as usize)
            .create()?;
        let sample = publisher.loan_slice_uninit(1)?;
        sample.write_from_fn(|_| MARK + k).send()?;
        wait_ack(&socket)?;
    }
    Run::side(true, before, [0, 0])
}

/// BENCHMARKS.md's goal, "faster than iceoryx2", size by size: fdring's
/// median ÷ iceoryx2's of the same size (the case has no single "fdring"
/// row for the report to divide by).
pub fn goals(rows: &[Row]) -> Vec<String> {
    let p50 = P50_US.0;
    let median = |name: &str| {
        rows.iter()
            .find(|r| r.contender == name && r.unit == p50)
            .and_then(|r| r.values.as_ref().ok().map(|v| v[0]))
    };
    ["64KiB", "1MiB", "16MiB"]
        .iter()
        .map(|size| {
            let what = format!("fdring {size} ÷ iceoryx2 {size} {p50} ≤ 1");
            let verdict = match (
                median(&format!("fdring {size}")),
                median(&format!("iceoryx2 {size}")),
            ) {
                (Some(f), Some(i)) if f <= i => format!("{} met", num(f / i)),
                (Some(f), Some(i)) => format!("{} MISSED", num(f / i)),
                _ => String::from("not measured"),
            };
            format!("  {:<18} {what}: {verdict}", "create_open")
        })
        .collect()
}
