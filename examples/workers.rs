//! A worker pool across processes: one dispatcher hands jobs to worker
//! processes and collects their replies, and when a worker is killed
//! mid-run its work is given to the others, so that every job is still
//! answered exactly once.
//!
//! It shows:
//! - `fdring::topology::Pool`: one job ring and one reply ring per worker
//!   (the rings stay single-producer single-consumer), jobs sent to the
//!   least loaded worker in batches written in place (`try_send_with`),
//!   replies taken fairly from all workers in place (`try_recv_with`), and
//!   one `pool.wait` sleeping on both directions when neither can move, so
//!   the dispatcher never blocks on one while the other is full. (Once
//!   nothing is left to send it sleeps in `recv_with` instead: `pool.wait`
//!   also wakes for room in a job ring, which it would find at once.)
//! - the worker's side: copy the jobs out of the ring first (`recv_slice`),
//!   then work, then reply. So each job is, at any moment, either unread
//!   (still in the ring) or taken by the worker;
//! - a worker killed with SIGKILL: its reply ring is drained to its last
//!   reply, then reported as `Next::Ended`, and `pool.take_lost()` gives
//!   its `Lost`: the jobs it never read (copied back out of its ring,
//!   exactly), and how many it took and never answered. Which ones those
//!   were only the application knows: the dispatcher keeps, per worker,
//!   the ids it sent and crosses off each reply, so what is left is the
//!   taken-but-unanswered jobs followed by the unread ones. Both are sent
//!   to the other workers, and a replacement worker is started;
//! - the check: each job carries its id and a number, each reply its id
//!   and the number's integer square root (32 steps of bisection to find,
//!   two multiplications to check); every id must be answered exactly
//!   once, with the right root, and each loss must be what the
//!   dispatcher's own record says.
//!
//! Run it with
//!
//! ```text
//! cargo run --release --example workers
//! cargo run --release --example workers -- --jobs 1000000 --workers 8
//! cargo run --release --example workers -- --json   # last line: one JSON object
//! ```
//!
//! (This program is its own worker: it re-runs itself with `--worker`.)

use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::mem::MaybeUninit;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use bytemuck::Zeroable;
use fdring::topology::{Key, Lost, Next, Policy, Pool};
use fdring::{handoff, Receiver, Sender};

#[path = "support/json.rs"]
mod json;
use json::json_string;

/// A job: the integer square root of `value`.
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Job {
    id: u64,
    value: u64,
}

/// A worker's answer to job `id`.
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Reply {
    id: u64,
    root: u64,
}

/// Jobs unless `--jobs` says otherwise: a second or two in release.
const JOBS: u64 = 1 << 24;
/// Workers unless `--workers` says otherwise.
const WORKERS: usize = 4;
/// Capacity of each job ring and each reply ring, in items (64 KiB).
const CAPACITY: usize = 4096;
/// The most jobs sent in one batch, and the most a worker copies out at
/// once: well below the capacity, so that the dispatcher fills a ring
/// while its worker empties it.
const BATCH: usize = 512;
/// The first worker started is killed once this fraction of the jobs was
/// answered.
const KILL_AFTER: f64 = 0.4;
/// A run that takes longer than this has hung: the watchdog ends it.
const DEADLINE: Duration = Duration::from_secs(120);

/// The environment variables carrying a worker's two rings.
const JOBS_VAR: &str = "FDRING_WORKERS_JOBS";
const REPLIES_VAR: &str = "FDRING_WORKERS_REPLIES";

type AnyResult<T> = Result<T, Box<dyn Error>>;

/// The work: the integer square root of `value`, by bisection (32
/// steps). Slow to find, quick to check (`is_root`).
fn isqrt(value: u64) -> u64 {
    // lo² <= value < hi² throughout.
    let (mut lo, mut hi) = (0u64, 1u64 << 32);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if mid * mid <= value {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Whether `root` is the integer square root of `value`.
fn is_root(root: u64, value: u64) -> bool {
    let (root, value) = (u128::from(root), u128::from(value));
    root * root <= value && value < (root + 1) * (root + 1)
}

/// Job `id`: the number it carries is a function of the id (a
/// multiplicative hash), so that the dispatcher can check any reply from
/// its id alone.
fn job(id: u64) -> Job {
    Job {
        id,
        value: id.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--worker") {
        return match worker() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("workers: worker {}: {e}", std::process::id());
                ExitCode::FAILURE
            }
        };
    }
    let options = match Options::parse(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("workers: {e}\nusage: workers [--jobs N] [--workers N] [--json]");
            return ExitCode::from(2);
        }
    };
    let json = options.json;
    // A hang must not hang CI: the workers follow the dispatcher out (each
    // of their rings watches the parent's pidfd).
    std::thread::spawn(move || {
        std::thread::sleep(DEADLINE);
        eprintln!("workers: out of time after {DEADLINE:?}");
        if json {
            println!("{{\"verified\": false, \"error\": \"out of time\"}}");
        }
        std::process::exit(1);
    });
    match dispatcher(&options) {
        Ok(summary) => {
            summary.print(json);
            if summary.verified() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("workers: {e}");
            if json {
                println!(
                    "{{\"jobs\": {}, \"answered\": 0, \"verified\": false, \"error\": {}}}",
                    options.jobs,
                    json_string(&e.to_string())
                );
            }
            ExitCode::FAILURE
        }
    }
}

struct Options {
    jobs: u64,
    workers: usize,
    json: bool,
}

impl Options {
    fn parse(args: &[String]) -> AnyResult<Options> {
        let mut options = Options {
            jobs: JOBS,
            workers: WORKERS,
            json: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--jobs" => options.jobs = value()?.parse()?,
                "--workers" => options.workers = value()?.parse()?,
                "--json" => options.json = true,
                other => return Err(format!("unknown argument {other:?}").into()),
            }
        }
        if options.workers == 0 {
            return Err("--workers must be at least 1".into());
        }
        Ok(options)
    }
}

// ------------------------------------------------------------ dispatcher

/// The worker processes, each by its key in the pool; killed if the
/// dispatcher leaves early.
struct Workers {
    children: Vec<(Key, Child)>,
}

impl Workers {
    /// Starts a worker (this program, with `--worker`) on two new rings,
    /// and adds it to the pool.
    fn start(&mut self, pool: &mut Pool<Job, Reply>) -> AnyResult<Key> {
        let (jobs_tx, jobs_rx) = fdring::channel::<Job>(CAPACITY)?;
        let (replies_tx, replies_rx) = fdring::channel::<Reply>(CAPACITY)?;
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("--worker");
        handoff::inherit(&mut command, JOBS_VAR, jobs_rx.into_fds()?);
        handoff::inherit(&mut command, REPLIES_VAR, replies_tx.into_fds()?);
        let child = command.spawn()?;
        // The worker's ends live in the worker only: if it dies, both of
        // our ends hear of it.
        drop(command);
        let key = pool.add(jobs_tx, replies_rx)?;
        self.children.push((key, child));
        Ok(key)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// What the dispatcher knows of the jobs.
struct Ledger {
    jobs: u64,
    /// The next job never sent.
    next_id: u64,
    /// Jobs to send again, before any new one: a dead worker's.
    resend: VecDeque<Job>,
    /// Per worker, the ids sent to it and not yet answered, in the order
    /// sent. A worker answers its jobs in the order its ring gives them,
    /// so a reply is almost always the first of them.
    sent: HashMap<Key, VecDeque<u64>>,
    /// One bit per job: answered.
    answered_bits: Vec<u64>,
    answered: u64,
    /// Replies for a job already answered.
    duplicates: u64,
    /// Replies with a wrong root, or an id never sent to that worker.
    wrong: u64,
}

impl Ledger {
    fn has_work(&self) -> bool {
        !self.resend.is_empty() || self.next_id < self.jobs
    }

    /// Nothing left to send, nothing sent left unanswered.
    fn done(&self) -> bool {
        !self.has_work() && self.sent.values().all(VecDeque::is_empty)
    }

    /// Writes up to `BATCH` jobs into `slots` for worker `key`, resent
    /// ones first; returns how many.
    fn fill(&mut self, key: Key, slots: &mut [MaybeUninit<Job>]) -> usize {
        let ids = self.sent.entry(key).or_default();
        let mut n = 0;
        for slot in slots.iter_mut().take(BATCH) {
            let next = match self.resend.pop_front() {
                Some(job) => job,
                None if self.next_id < self.jobs => {
                    self.next_id += 1;
                    job(self.next_id - 1)
                }
                None => break,
            };
            slot.write(next);
            ids.push_back(next.id);
            n += 1;
        }
        n
    }

    /// Crosses off and checks the replies of worker `key`.
    fn take(&mut self, key: Key, replies: &[Reply]) -> usize {
        let ids = self.sent.entry(key).or_default();
        for reply in replies {
            let crossed = if ids.front() == Some(&reply.id) {
                ids.pop_front().is_some()
            } else if let Some(at) = ids.iter().position(|&id| id == reply.id) {
                ids.remove(at).is_some()
            } else {
                false
            };
            if !crossed || !is_root(reply.root, job(reply.id).value) {
                self.wrong += 1;
                continue;
            }
            let (word, bit) = ((reply.id / 64) as usize, 1u64 << (reply.id % 64));
            if self.answered_bits[word] & bit != 0 {
                self.duplicates += 1;
            } else {
                self.answered_bits[word] |= bit;
                self.answered += 1;
            }
        }
        replies.len()
    }

    /// Takes in the loss of a worker that left: its unanswered ids are the
    /// jobs it took and never answered, then the ones it never read. Both
    /// go to the resend queue. Returns whether the pool's account of the
    /// loss matches ours exactly.
    fn lose(&mut self, lost: Lost<Job>) -> (bool, u64, u64) {
        let ids = self.sent.remove(&lost.key).unwrap_or_default();
        let unread = lost.unread.len();
        let taken_unanswered = ids.len().saturating_sub(unread);
        // The unread jobs are the last ones sent to it, in order.
        let exact = ids.len() >= unread
            && ids
                .iter()
                .skip(taken_unanswered)
                .zip(&lost.unread)
                .all(|(&id, job)| id == job.id)
            && lost.unanswered == Some(taken_unanswered as u64);
        self.resend
            .extend(ids.iter().take(taken_unanswered).map(|&id| job(id)));
        self.resend.extend(lost.unread);
        (exact, unread as u64, taken_unanswered as u64)
    }
}

fn dispatcher(options: &Options) -> AnyResult<Summary> {
    let mut pool = Pool::<Job, Reply>::new(Policy::LeastLoaded)?;
    let mut workers = Workers {
        children: Vec::new(),
    };
    for _ in 0..options.workers {
        workers.start(&mut pool)?;
    }
    let victim = workers.children[0].0;
    let mut ledger = Ledger {
        jobs: options.jobs,
        next_id: 0,
        resend: VecDeque::new(),
        sent: HashMap::new(),
        answered_bits: vec![0; options.jobs.div_ceil(64) as usize],
        answered: 0,
        duplicates: 0,
        wrong: 0,
    };
    let mut summary = Summary {
        jobs: options.jobs,
        workers: options.workers,
        answered: 0,
        duplicates: 0,
        wrong: 0,
        seconds: 0.0,
        killed: None,
        workers_lost: 0,
        unread_resent: 0,
        unanswered_resent: 0,
        lost_exact: true,
        replacements: 0,
        waits: 0,
    };
    let kill_at = (options.jobs as f64 * KILL_AFTER) as u64;

    let started = Instant::now();
    while !ledger.done() {
        let mut progressed = false;
        // Whether a job could go out now: there is one, and a worker.
        let mut sendable = ledger.has_work();
        if sendable {
            match pool.try_send_with(|key, slots| ledger.fill(key, slots)) {
                Ok(_) => progressed = true,
                Err(fdring::Error::Full) => {}
                // Every worker is gone: wait for their ends (below), which
                // start a replacement.
                Err(fdring::Error::Disconnected) => sendable = false,
                Err(e) => return Err(format!("sending jobs: {e}").into()),
            }
        }
        // With nothing to send, sleep on the replies alone.
        let next = if sendable {
            pool.try_recv_with(|key, replies| ledger.take(key, replies))
        } else {
            pool.recv_with(|key, replies| ledger.take(key, replies))
        };
        match next {
            Ok(Next::Ready(..)) => progressed = true,
            Ok(Next::Ended(key, why)) => {
                progressed = true;
                if summary.killed.map_or(true, |(k, _)| k != key) {
                    eprintln!("workers: worker {key} left unasked: {why}");
                }
                summary.workers_lost += 1;
                while let Some(lost) = pool.take_lost()? {
                    let (exact, unread, unanswered) = ledger.lose(lost);
                    summary.lost_exact &= exact;
                    summary.unread_resent += unread;
                    summary.unanswered_resent += unanswered;
                }
                if ledger.sent.contains_key(&key) {
                    return Err(format!("worker {key} ended, and the pool gave no loss").into());
                }
                workers.start(&mut pool)?;
                summary.replacements += 1;
            }
            // Joined and Refused come from a listener; the pool has none.
            Ok(_) => {}
            Err(fdring::Error::Empty) => {}
            Err(e) => return Err(format!("receiving replies: {e}").into()),
        }
        if summary.killed.is_none() && ledger.answered >= kill_at {
            if let Some((_, child)) = workers.children.iter_mut().find(|(k, _)| *k == victim) {
                child.kill()?;
                summary.killed = Some((victim, child.id()));
            }
        }
        if !progressed && sendable {
            summary.waits += 1;
            pool.wait(None)?;
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    if pool.in_flight() != 0 {
        return Err(format!(
            "the pool counts {} jobs in flight at the end",
            pool.in_flight()
        )
        .into());
    }
    // Closing the job rings ends the workers.
    drop(pool);
    for (key, child) in &mut workers.children {
        let status = child.wait()?;
        let killed = summary.killed.is_some_and(|(k, _)| k == *key);
        if !killed && !status.success() {
            return Err(format!("worker {key} failed: {status}").into());
        }
    }
    summary.answered = ledger.answered;
    summary.duplicates = ledger.duplicates;
    summary.wrong = ledger.wrong;
    Ok(summary)
}

/// What the dispatcher measured.
struct Summary {
    jobs: u64,
    workers: usize,
    answered: u64,
    duplicates: u64,
    wrong: u64,
    seconds: f64,
    /// The worker killed, and its pid.
    killed: Option<(Key, u32)>,
    /// Workers whose `Lost` was taken (the killed one, unless another died).
    workers_lost: u64,
    unread_resent: u64,
    unanswered_resent: u64,
    /// Every loss was what the dispatcher's own record says it was.
    lost_exact: bool,
    replacements: u64,
    /// Sleeps in `pool.wait`, both directions blocked.
    waits: u64,
}

impl Summary {
    /// Every job answered exactly once, with the right root, and every
    /// loss accounted for exactly.
    fn verified(&self) -> bool {
        self.answered == self.jobs && self.duplicates == 0 && self.wrong == 0 && self.lost_exact
    }

    fn redispatched(&self) -> u64 {
        self.unread_resent + self.unanswered_resent
    }

    fn jobs_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.jobs as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn print(&self, json: bool) {
        println!(
            "workers: {} jobs to {} worker processes (job and reply rings of {CAPACITY}, \
             batches of at most {BATCH})",
            self.jobs, self.workers
        );
        println!(
            "  {} answered in {:.3} s = {:.2} M jobs/s ({} sleeps in pool.wait)",
            self.answered,
            self.seconds,
            self.jobs_per_s() / 1e6,
            self.waits
        );
        match self.killed {
            Some((key, pid)) if self.workers_lost == 0 => println!(
                "  killed worker {key} (pid {pid}) with SIGKILL after {:.0}% of the jobs; \
                 the run ended before its end was seen",
                KILL_AFTER * 100.0
            ),
            Some((key, pid)) => println!(
                "  killed worker {key} (pid {pid}) with SIGKILL after {:.0}% of the jobs, \
                 started {} replacement\n  redispatched {} jobs: {} it never read, {} it took \
                 and never answered (the pool's count {})",
                KILL_AFTER * 100.0,
                self.replacements,
                self.redispatched(),
                self.unread_resent,
                self.unanswered_resent,
                if self.lost_exact {
                    "matches"
                } else {
                    "DOES NOT match"
                },
            ),
            None => println!("  no worker was killed (the run ended first)"),
        }
        println!(
            "  duplicates {}, wrong or unexpected replies {}; verified: {}",
            self.duplicates,
            self.wrong,
            self.verified()
        );
        if json {
            println!(
                "{{\"jobs\": {}, \"answered\": {}, \"workers\": {}, \"workers_killed\": {}, \
                 \"workers_lost\": {}, \"replacements\": {}, \"redispatched\": {}, \
                 \"unread_resent\": {}, \"unanswered_resent\": {}, \"duplicates\": {}, \
                 \"wrong\": {}, \"seconds\": {:.6}, \"jobs_per_s\": {:.0}, \"waits\": {}, \
                 \"lost_exact\": {}, \"verified\": {}}}",
                self.jobs,
                self.answered,
                self.workers,
                u64::from(self.killed.is_some()),
                self.workers_lost,
                self.replacements,
                self.redispatched(),
                self.unread_resent,
                self.unanswered_resent,
                self.duplicates,
                self.wrong,
                self.seconds,
                self.jobs_per_s(),
                self.waits,
                self.lost_exact,
                self.verified()
            );
        }
    }
}

// ---------------------------------------------------------------- worker

/// A worker: copies jobs out of its ring, works, replies, until the
/// dispatcher closes the job ring.
fn worker() -> AnyResult<()> {
    let mut jobs = Receiver::<Job>::from_fds(handoff::inherited(JOBS_VAR)?)?;
    let mut replies = Sender::<Reply>::from_fds(handoff::inherited(REPLIES_VAR)?)?;
    let mut batch = vec![Job::zeroed(); BATCH];
    let mut answers = Vec::with_capacity(BATCH);
    loop {
        // Copied out first: from here on these jobs are taken, and if this
        // process dies the dispatcher knows them as taken-but-unanswered,
        // never as unread.
        let n = match jobs.recv_slice(&mut batch) {
            Ok(n) => n,
            Err(fdring::Error::Disconnected) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        answers.clear();
        answers.extend(batch[..n].iter().map(|job| Reply {
            id: job.id,
            root: isqrt(job.value),
        }));
        replies.send_slice(&answers)?;
    }
}
