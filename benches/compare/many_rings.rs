//! `many_rings`: one consumer thread serves hundreds of rings through one
//! `mio::Poll`, against the same bytes through one ring.

use std::time::Duration;

use fdring::{Builder, Receiver, Sender};

use crate::data::{check, fill};
use crate::process::{child_with_env, pair, Cfg, Gate, Run};
use crate::Res;

/// `many_rings`: the rings one consumer thread serves through one
/// `mio::Poll`, their capacity in `u64` items (32 KiB each, 8 MiB in all),
/// and the most items a ring gets per turn, on either side.
pub const MANY_RINGS: usize = 256;
/// `many_rings_4096`: as many rings as a busy server might hold, which
/// needs a soft `RLIMIT_NOFILE` above the usual 1024.
pub const MANY_RINGS_4096: usize = 4096;
/// How the child learns how many rings it serves (`MANY_RINGS` if unset).
pub const RINGS_VAR: &str = "FDRING_BENCH_RINGS";
pub const MANY_CAP: usize = 4096;
pub const MANY_BATCH: usize = 1024;

/// Ring `r` carries `r << 40, r << 40 + 1, ...`, so that `check` also
/// catches an item delivered to the wrong ring.
pub fn ring_base(r: usize) -> u64 {
    (r as u64) << 40
}

/// How the rings meet `mio`: through `fdring::mio` when the bench is built
/// with `--features mio`; otherwise the same system calls by hand (the
/// end's fd as a `SourceFd`, and `prepare_wait` after "would block"),
/// which is all the adapter does, so that the case runs without the
/// feature too.
pub mod evented {
    use fdring::Error;
    use mio::{Interest, Registry, Token};

    #[cfg(feature = "mio")]
    pub const HOW: &str = "fdring::mio";
    #[cfg(not(feature = "mio"))]
    pub const HOW: &str = "mio::unix::SourceFd and prepare_wait";

    #[cfg(feature = "mio")]
    pub trait End: mio::event::Source + fdring::mio::EventLoopExt {}
    #[cfg(feature = "mio")]
    impl<E: mio::event::Source + fdring::mio::EventLoopExt> End for E {}

    #[cfg(not(feature = "mio"))]
    pub trait End: std::os::fd::AsFd {
        fn prepare_wait(&mut self) -> Result<bool, Error>;
    }
    #[cfg(not(feature = "mio"))]
    impl End for fdring::Sender<u64> {
        fn prepare_wait(&mut self) -> Result<bool, Error> {
            fdring::Sender::prepare_wait(self)
        }
    }
    #[cfg(not(feature = "mio"))]
    impl End for fdring::Receiver<u64> {
        fn prepare_wait(&mut self) -> Result<bool, Error> {
            fdring::Receiver::prepare_wait(self)
        }
    }

    pub fn register<E: End>(registry: &Registry, end: &mut E, token: Token) -> std::io::Result<()> {
        #[cfg(feature = "mio")]
        return registry.register(end, token, Interest::READABLE);
        #[cfg(not(feature = "mio"))]
        {
            use std::os::fd::AsRawFd;
            let fd = end.as_fd().as_raw_fd();
            registry.register(&mut mio::unix::SourceFd(&fd), token, Interest::READABLE)
        }
    }

    /// `op`, a `try_` call; on "would block", arms (retrying while
    /// `prepare_wait` says progress happened meanwhile).
    #[cfg(feature = "mio")]
    pub fn try_or_arm<E: End, R>(
        end: &mut E,
        op: impl FnMut(&mut E) -> Result<R, Error>,
    ) -> Result<R, Error> {
        end.try_or_arm(op)
    }

    #[cfg(not(feature = "mio"))]
    pub fn try_or_arm<E: End, R>(
        end: &mut E,
        mut op: impl FnMut(&mut E) -> Result<R, Error>,
    ) -> Result<R, Error> {
        loop {
            match op(end) {
                Err(e @ (Error::Empty | Error::Full)) => {
                    if end.prepare_wait()? {
                        return Err(e);
                    }
                }
                done => return done,
            }
        }
    }
}

/// One side of `many_rings`: serves `ends` from one `mio::Poll`, fairly.
/// `turn(i, end)` moves at most one batch through ring `i` and returns how
/// many items (`Full`/`Empty` when there is nothing to move); the loop
/// gives every ready ring one turn per pass and keeps a ring that moved
/// something at the back of its queue, since an edge-triggered poll
/// reports nothing new for it. A ring with nothing to move waits for its
/// event once it is armed. The side is done when `turn` has moved `quota`
/// items through every ring. The gate opens once everything is set up;
/// returns the allocation count it opened at.
pub fn serve_rings<E: evented::End>(
    ends: &mut [E],
    quota: u64,
    gate: Gate,
    mut turn: impl FnMut(usize, &mut E) -> Result<usize, fdring::Error>,
) -> Res<u64> {
    use mio::{Events, Poll, Token};
    use std::collections::VecDeque;
    let mut poll = Poll::new()?;
    for (i, end) in ends.iter_mut().enumerate() {
        evented::register(poll.registry(), end, Token(i))?;
    }
    let mut events = Events::with_capacity(ends.len());
    let mut moved = vec![0u64; ends.len()];
    // Every ring starts in the queue: it may have work before any event.
    let mut queued = vec![true; ends.len()];
    let mut ready: VecDeque<usize> = (0..ends.len()).collect();
    let mut unfinished = ends.len();
    // Turns in a row that found their ring idle.
    let mut idle = 0;
    let before = gate.open();
    while unfinished > 0 {
        let timeout = if ready.is_empty() {
            None
        } else {
            Some(Duration::ZERO)
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for event in &events {
            let i = event.token().0;
            if !queued[i] && moved[i] < quota {
                queued[i] = true;
                ready.push_back(i);
            }
        }
        for _ in 0..ready.len() {
            let Some(i) = ready.pop_front() else { break };
            // Arm late, as `topology::Merge` does: a ring found idle goes
            // back in the queue unarmed, and rings are armed (one by one)
            // only once every queued ring was found idle in a row.
            let result = match turn(i, &mut ends[i]) {
                Err(fdring::Error::Empty | fdring::Error::Full) if idle <= ready.len() => {
                    idle += 1;
                    ready.push_back(i);
                    continue;
                }
                Err(fdring::Error::Empty | fdring::Error::Full) => {
                    evented::try_or_arm(&mut ends[i], |end| turn(i, end))
                }
                other => other,
            };
            if result.is_ok() {
                idle = 0;
            }
            match result {
                Ok(k) => {
                    moved[i] += k as u64;
                    if moved[i] >= quota {
                        queued[i] = false;
                        unfinished -= 1;
                    } else {
                        ready.push_back(i);
                    }
                }
                Err(fdring::Error::Empty | fdring::Error::Full) => queued[i] = false,
                Err(e) => return Err(format!("ring {i}: {e}").into()),
            }
        }
    }
    Ok(before)
}

pub fn many_counters<E>(ends: &[E], stats: fn(&E) -> fdring::Stats) -> [u64; 2] {
    ends.iter().fold([0, 0], |[w, s], end| {
        let t = stats(end);
        [w + t.wakeups, s + t.sleeps]
    })
}

/// The parent's side: fills the rings, `c.words() / rings.len()` items each.
pub fn many_tx_side(mut rings: Vec<Sender<u64>>, c: &Cfg, gate: Gate) -> Res<Run> {
    let quota = c.words() / rings.len() as u64;
    let mut next = vec![0u64; rings.len()];
    let before = serve_rings(&mut rings, quota, gate, |i, tx| {
        let first = next[i];
        let k = tx.try_send_with(|slots| {
            let k = slots.len().min(c.chunk).min((quota - first) as usize);
            fill(&mut slots[..k], ring_base(i) + first);
            k
        })?;
        next[i] += k as u64;
        Ok(k)
    })?;
    Run::side(true, before, many_counters(&rings, Sender::stats))
}

/// The child's side: one consumer thread, one `mio::Poll`, all the rings.
pub fn many_rx_side(mut rings: Vec<Receiver<u64>>, c: &Cfg, gate: Gate) -> Res<Run> {
    let quota = c.words() / rings.len() as u64;
    let mut next = vec![0u64; rings.len()];
    let mut diff = 0;
    let before = serve_rings(&mut rings, quota, gate, |i, rx| {
        let first = next[i];
        let k = rx.try_recv_with(|items| {
            let k = items.len().min(c.chunk);
            diff |= check(&items[..k], ring_base(i) + first);
            k
        })?;
        next[i] += k as u64;
        Ok(k)
    })?;
    Run::side(diff == 0, before, many_counters(&rings, Receiver::stats))
}

/// Raises this process's soft limit on open fds to its hard limit, as a
/// server of many rings would: 256 rings hold about a thousand fds while
/// they are handed over, 4096 rings sixteen thousand.
pub fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// `many_rings`: the parent fills `rings` rings from one `mio::Poll`
/// (core 0); the child serves them all from one thread and one
/// `mio::Poll` (core 1).
pub fn many_rings(c: &Cfg, rings: usize) -> Res<Run> {
    raise_fd_limit();
    let builder = Builder::new().capacity(MANY_CAP).spin(c.spin);
    let mut senders = Vec::with_capacity(rings);
    let mut bundles = Vec::with_capacity(rings);
    for _ in 0..rings {
        let (tx, rx) = builder.build::<u64>()?;
        senders.push(tx);
        bundles.push(rx.into_fds()?);
    }
    let count = rings.to_string();
    let peer = child_with_env("fdring-many", c, bundles, vec![], &[(RINGS_VAR, &count)])?;
    pair(peer, |gate| many_tx_side(senders, c, gate))
}

/// The fds this process has open.
fn open_fds() -> Res<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}

/// A field of `/proc/self/status` (`VmRSS`, `VmSize`) or, with a path,
/// of another such file, in KiB.
fn status_kib(field: &str) -> Res<u64> {
    kib_in("/proc/self/status", field)
}

fn kib_in(path: &str, field: &str) -> Res<u64> {
    let status = std::fs::read_to_string(path)?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .ok_or_else(|| format!("no {field} in /proc/self/status"))?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}

/// What one ring costs, measured by building `rings` of them here with
/// both ends (as the parent holds them before the handoff) and reading
/// `/proc/self/fd` and `/proc/self/status` before and after.
fn footprint(rings: usize) -> Res<String> {
    raise_fd_limit();
    let builder = Builder::new().capacity(MANY_CAP);
    let (fds, rss, size) = (open_fds()?, status_kib("VmRSS")?, status_kib("VmSize")?);
    // The memfds' pages are shared memory, counted once machine-wide
    // (other processes move it a little too).
    let shmem = kib_in("/proc/meminfo", "Shmem")?;
    let ends = (0..rings)
        .map(|_| builder.build::<u64>())
        .collect::<Result<Vec<_>, _>>()?;
    let per = |after: u64, before: u64| (after - before) as f64 / rings as f64;
    let fds = per(open_fds()? as u64, fds as u64);
    let (rss, size, shmem) = (
        per(status_kib("VmRSS")?, rss),
        per(status_kib("VmSize")?, size),
        per(kib_in("/proc/meminfo", "Shmem")?, shmem),
    );
    drop(ends);
    Ok(format!(
        "{fds:.1} fds per ring (each end: its memfd and its wake-up socket); \
         per ring, its memfd {} KiB (a header page and the data), machine-wide shared memory +{shmem:.0} KiB; \
         with both ends mapped here, {rss:.0} KiB resident (each mapping of a page counts) \
         and {size:.0} KiB of address space (each end maps the data twice)",
        (MANY_CAP * 8 + 4096) / 1024
    ))
}

/// What the report's header says about a `many_rings` case.
pub fn header(name: &str, rings: usize) -> String {
    let footprint = footprint(rings).unwrap_or_else(|e| format!("footprint not measured: {e}"));
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    format!(
        "{name}: {rings} rings of {MANY_CAP} u64, at most {MANY_BATCH} items per ring per turn, through {}; \
         soft RLIMIT_NOFILE raised to {}; {footprint}",
        evented::HOW,
        limit.current.map_or("unlimited".into(), |n| n.to_string())
    )
}
