//! `worker_pool_4`: one dispatcher (this process) hands jobs to four worker
//! processes and takes their replies back. The dispatcher is fdring's
//! `topology::Pool`, or one `mio::Poll` over four `UnixStream`s; the
//! reference without any IPC is crossbeam-channel between threads.
//!
//! A job is its id, `0..n`; a worker answers each with `answer(id)`. The
//! dispatcher keeps a bit per job and checks that every reply is the
//! answer to a job it sent and not yet answered, and that `n` came: each
//! job answered exactly once. A worker that echoed its jobs, or a reply
//! delivered twice, is wrong data.
//!
//! Cores: the dispatcher keeps core 0, the four workers share core 1
//! (processes or threads, each pinned to the peer core), as the producers
//! of `fan_in_8` do.

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use fdring::topology::{Next, Policy, Pool};
use fdring::{Builder, Receiver, Sender};
use mio::{Events, Interest, Poll, Token};

use crate::data::{fill, fill_init};
use crate::fleet::{crowd, spawn_all};
use crate::ours::stats;
use crate::process::{child, thread, Cfg, Gate, Run};
use crate::sockets::{poll, stream_pair, Turns, Words};
use crate::{Res, CAP, CHUNK};

/// The workers.
pub const WORKERS: usize = 4;
/// Jobs the dispatcher hands over per call: 8 KiB, a batch small enough
/// that the four workers take turns several times per ring or socket.
pub const POOL_BATCH: usize = 1024;

/// What the report's header says about the case.
pub fn header(c: &Cfg) -> String {
    format!(
        "worker_pool_4: {WORKERS} workers sharing core 1 (processes; threads for crossbeam), the dispatcher alone on core 0; \
         {} jobs of one u64, one u64 reply each, jobs sent {} at a time; \
         fdring: Pool, round robin, rings of {CAP} u64; unix+mio: a UnixStream per worker, 1 MiB send buffers; \
         crossbeam: bounded({CAP}) channels",
        c.n, c.chunk
    )
}

/// What a reply carries besides the job's id, so that a worker that
/// echoed its job (or a zeroed slot) is not taken for an answer.
const REPLY_MARK: u64 = 0xa115_0000_0000_0000;

/// The worker's work: the reply to job `id`.
pub fn answer(id: u64) -> u64 {
    id ^ REPLY_MARK
}

/// The jobs answered so far: a bit per job.
struct Answers {
    seen: Vec<u64>,
    jobs: u64,
    answered: u64,
    wrong: bool,
}

impl Answers {
    fn new(jobs: u64) -> Answers {
        Answers {
            seen: vec![0; jobs.div_ceil(64) as usize],
            jobs,
            answered: 0,
            wrong: false,
        }
    }

    fn take(&mut self, replies: &[u64]) {
        for &reply in replies {
            let id = reply ^ REPLY_MARK;
            if id < self.jobs {
                let (word, bit) = ((id / 64) as usize, 1 << (id % 64));
                self.wrong |= self.seen[word] & bit != 0;
                self.seen[word] |= bit;
            } else {
                self.wrong = true;
            }
        }
        self.answered += replies.len() as u64;
    }

    fn done(&self) -> bool {
        self.answered >= self.jobs
    }

    /// No reply out of range, none twice, and `jobs` of them: so every
    /// job's, once.
    fn ok(&self) -> bool {
        !self.wrong && self.answered == self.jobs
    }
}

/// `fdring`: per worker a jobs ring and a replies ring of `CAP` items, all
/// in one `Pool` (round robin); jobs go out `c.chunk` at a time.
pub fn fdring_pool(c: &Cfg) -> Res<Run> {
    let builder = Builder::new().capacity(CAP).spin(c.spin);
    let mut pool: Pool<u64, u64> = Pool::new(Policy::RoundRobin)?;
    let peers = spawn_all(WORKERS, |_| {
        let (job_tx, job_rx) = builder.build::<u64>()?;
        let (reply_tx, reply_rx) = builder.build::<u64>()?;
        pool.add(job_tx, reply_rx)?;
        child(
            "pool-fdring",
            c,
            vec![job_rx.into_fds()?, reply_tx.into_fds()?],
            vec![],
        )
    })?;
    crowd(peers, |gate| pool_side(pool, c, gate))
}

/// The dispatcher: a batch of jobs to the next worker with room, the
/// replies ready at one worker, and a sleep when neither moved.
fn pool_side(mut pool: Pool<u64, u64>, c: &Cfg, gate: Gate) -> Res<Run> {
    let mut answers = Answers::new(c.n);
    let mut next = 0u64;
    let before = gate.open();
    while !answers.done() {
        let mut moved = false;
        if next < c.n {
            let left = c.n - next;
            let sent = pool.try_send_with(|_, slots| {
                let k = slots.len().min(c.chunk).min(left as usize);
                fill(&mut slots[..k], next);
                k
            });
            match sent {
                Ok((_, k)) => {
                    next += k as u64;
                    moved |= k > 0;
                }
                Err(fdring::Error::Full) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut take = |_, replies: &[u64]| {
            answers.take(replies);
            replies.len()
        };
        // Once every job is out, only replies are left to wait for.
        let got = if next < c.n {
            pool.try_recv_with(&mut take)
        } else {
            pool.recv_with(&mut take)
        };
        match got {
            Ok(Next::Ready(_, k)) => moved |= k > 0,
            Ok(Next::Joined(_)) => {}
            Ok(Next::Ended(key, e)) => return Err(format!("worker {key:?} ended: {e}").into()),
            Ok(Next::Refused(e)) => return Err(e.into()),
            Err(fdring::Error::Empty) => {}
            Err(e) => return Err(e.into()),
        }
        if !moved && next < c.n {
            pool.wait(None)?;
        }
    }
    Run::side(answers.ok(), before, [0, 0])
}

/// A worker process: answers the jobs of its ring as they come, writing
/// the replies straight into the replies ring, until the dispatcher
/// closes.
pub fn fdring_worker(mut jobs: Receiver<u64>, mut replies: Sender<u64>, gate: Gate) -> Res<Run> {
    let before = gate.open();
    loop {
        let mut failed = None;
        let got = jobs.recv_with(|ids| {
            let sent = replies.send_with(|slots| {
                for (slot, &id) in slots.iter_mut().zip(ids) {
                    slot.write(answer(id));
                }
                slots.len().min(ids.len())
            });
            sent.unwrap_or_else(|e| {
                failed = Some(e);
                0
            })
        });
        if let Some(e) = failed {
            return Err(e.into());
        }
        match got {
            Ok(_) => {}
            Err(fdring::Error::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let (j, r) = (stats(jobs.stats()), stats(replies.stats()));
    Run::side(true, before, [j[0] + r[0], j[1] + r[1]])
}

/// `unix+mio`: per worker one `UnixStream`, jobs one way and replies the
/// other; the dispatcher writes `c.chunk` jobs per turn to each worker
/// that can take them and reads up to 64 KiB of replies per turn from each
/// that has some, all through one `mio::Poll`, edge-triggered.
pub fn unix_pool(c: &Cfg) -> Res<Run> {
    let mut links = Vec::with_capacity(WORKERS);
    let peers = spawn_all(WORKERS, |_| {
        let (mine, theirs) = stream_pair()?;
        links.push(Link {
            stream: mine,
            jobs: Vec::with_capacity(c.chunk),
            written: 0,
            replies: Words::new(CHUNK),
        });
        child("pool-io", c, vec![], vec![theirs.into()])
    })?;
    crowd(peers, |gate| sockets_side(links, c, gate))
}

/// The dispatcher's end of one worker's socket.
struct Link {
    stream: mio::net::UnixStream,
    /// The batch being written, and how many of its bytes are.
    jobs: Vec<u64>,
    written: usize,
    replies: Words,
}

fn sockets_side(mut links: Vec<Link>, c: &Cfg, gate: Gate) -> Res<Run> {
    let mut io_poll = Poll::new()?;
    for (w, link) in links.iter_mut().enumerate() {
        let both = Interest::READABLE | Interest::WRITABLE;
        io_poll
            .registry()
            .register(&mut link.stream, Token(w), both)?;
    }
    let mut events = Events::with_capacity(2 * WORKERS);
    let (mut writes, mut reads) = (Turns::all(WORKERS), Turns::all(WORKERS));
    let mut answers = Answers::new(c.n);
    let mut next = 0u64;
    let before = gate.open();
    while !answers.done() {
        let idle = writes.is_empty() && reads.is_empty();
        poll(&mut io_poll, &mut events, (!idle).then_some(Duration::ZERO))?;
        for event in &events {
            let w = event.token().0;
            if event.is_writable() {
                writes.push(w);
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                reads.push(w);
            }
        }
        for _ in 0..writes.len() {
            let Some(w) = writes.pop() else { break };
            let link = &mut links[w];
            if link.written == link.jobs.len() * 8 {
                // The last batch is out: the next one, if jobs are left.
                let k = c.chunk.min((c.n - next) as usize);
                if k == 0 {
                    continue;
                }
                link.jobs.resize(k, 0);
                fill_init(&mut link.jobs, next);
                next += k as u64;
                link.written = 0;
            }
            let bytes: &[u8] = bytemuck::cast_slice(&link.jobs);
            match link.stream.write(&bytes[link.written..]) {
                Ok(m) => {
                    link.written += m;
                    writes.push(w);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => writes.push(w),
                Err(e) => return Err(format!("worker {w}: {e}").into()),
            }
        }
        for _ in 0..reads.len() {
            let Some(w) = reads.pop() else { break };
            let link = &mut links[w];
            match link.replies.read_from(&mut link.stream) {
                Ok(0) => return Err(format!("worker {w} hung up").into()),
                Ok(_) => {
                    answers.take(link.replies.words());
                    link.replies.consume();
                    reads.push(w);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => reads.push(w),
                Err(e) => return Err(format!("worker {w}: {e}").into()),
            }
        }
    }
    Run::side(answers.ok(), before, [0, 0])
}

/// A worker process on its socket: reads up to 64 KiB of jobs, writes
/// their replies, until the dispatcher closes.
pub fn unix_worker(mut stream: impl Read + Write, gate: Gate) -> Res<Run> {
    let mut jobs = Words::new(CHUNK);
    let mut replies = Vec::with_capacity(CHUNK);
    let before = gate.open();
    loop {
        match jobs.read_from(&mut stream) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        replies.clear();
        replies.extend(jobs.words().iter().map(|&id| answer(id)));
        stream.write_all(bytemuck::cast_slice(&replies))?;
        jobs.consume();
    }
    Run::side(jobs.is_empty(), before, [0, 0])
}

/// `crossbeam/threads`: one bounded jobs channel that the four worker
/// threads share, one bounded replies channel, `CAP` each; no IPC at all.
pub fn crossbeam_pool(c: &Cfg) -> Res<Run> {
    use crossbeam_channel::bounded;
    let (jobs, their_jobs) = bounded::<u64>(CAP);
    let (their_replies, replies) = bounded::<u64>(CAP);
    let peers = (0..WORKERS)
        .map(|_| {
            let (jobs, replies) = (their_jobs.clone(), their_replies.clone());
            thread(move |gate| {
                let before = gate.open();
                for id in jobs.iter() {
                    replies.send(answer(id))?;
                }
                Run::side(true, before, [0, 0])
            })
        })
        .collect();
    drop((their_jobs, their_replies));
    crowd(peers, |gate| channel_side(jobs, replies, c, gate))
}

/// The dispatcher over channels: up to `c.chunk` jobs while the channel
/// takes them, up to `c.chunk` replies while there are some, and a
/// `select!` on both when neither moved.
fn channel_side(
    jobs: crossbeam_channel::Sender<u64>,
    replies: crossbeam_channel::Receiver<u64>,
    c: &Cfg,
    gate: Gate,
) -> Res<Run> {
    use crossbeam_channel::{select, TryRecvError, TrySendError};
    let mut answers = Answers::new(c.n);
    let mut next = 0u64;
    let before = gate.open();
    while !answers.done() {
        let mut moved = false;
        for _ in 0..c.chunk.min((c.n - next) as usize) {
            match jobs.try_send(next) {
                Ok(()) => next += 1,
                Err(TrySendError::Full(_)) => break,
                Err(TrySendError::Disconnected(_)) => return Err("the workers are gone".into()),
            }
            moved = true;
        }
        for _ in 0..c.chunk {
            match replies.try_recv() {
                Ok(reply) => answers.take(&[reply]),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err("the workers are gone".into()),
            }
            moved = true;
        }
        if moved {
            continue;
        }
        if next < c.n {
            select! {
                send(jobs, next) -> sent => {
                    sent?;
                    next += 1;
                }
                recv(replies) -> reply => answers.take(&[reply?]),
            }
        } else {
            answers.take(&[replies.recv()?]);
        }
    }
    Run::side(answers.ok(), before, [0, 0])
}
