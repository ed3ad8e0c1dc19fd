//! A `Pool` of worker processes, some killed with SIGKILL at random
//! moments and replaced: with what each lost worker's `Lost` says, and the
//! job ids the test kept per worker, every job is answered exactly once.

use std::collections::{HashMap, VecDeque};
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use crate::common::{assert_killed, env_u64, seed, ChildProc, Rng, HANG, NOTICE};
use crate::peers::spawn_worker;
use fdring::topology::{Key, Lost, Next, Policy, Pool};
use fdring::Error;

const WORKERS: usize = 4;
/// Each worker's job ring and reply ring, in items.
const RING: usize = 1024;
/// Workers killed over the run.
const KILLS: usize = 3;
/// The most jobs one send hands a worker.
const BATCH: usize = 64;
/// How long a worker works on a job: the workers are a little slower than
/// the test hands out jobs, so that their rings hold jobs (and each has
/// jobs in hand) when one is killed.
const WORK: Duration = Duration::from_micros(1);

/// What the test knows of the jobs: which went to which worker and are
/// not answered yet (in the order sent, which is the order a worker
/// answers in), what must be sent again, and how often each was answered.
struct Ledger {
    jobs: u64,
    /// Per worker: the jobs sent to it and not answered, and how many
    /// were sent to it in all.
    unanswered: HashMap<Key, (VecDeque<u64>, u64)>,
    resend: VecDeque<u64>,
    fresh: u64,
    answered: Vec<u8>,
    done: u64,
    /// Of the lost workers' jobs: those they never took, and those they
    /// took and never answered.
    lost_unread: u64,
    lost_unanswered: u64,
}

impl Ledger {
    fn new(jobs: u64) -> Ledger {
        Ledger {
            jobs,
            unanswered: HashMap::new(),
            resend: VecDeque::new(),
            fresh: 0,
            answered: vec![0; jobs as usize],
            done: 0,
            lost_unread: 0,
            lost_unanswered: 0,
        }
    }

    fn has_jobs_to_send(&self) -> bool {
        !self.resend.is_empty() || self.fresh < self.jobs
    }

    /// Fills a worker's free slots with jobs (resent ones first), and
    /// notes them down as its own.
    fn fill(&mut self, key: Key, slots: &mut [MaybeUninit<u64>]) -> usize {
        let (queue, sent) = self
            .unanswered
            .get_mut(&key)
            .unwrap_or_else(|| panic!("a job went to {key}, not a worker"));
        let mut n = 0;
        for slot in slots.iter_mut().take(BATCH) {
            let job = match self.resend.pop_front() {
                Some(job) => job,
                None if self.fresh < self.jobs => {
                    self.fresh += 1;
                    self.fresh - 1
                }
                None => break,
            };
            slot.write(job);
            queue.push_back(job);
            n += 1;
        }
        *sent += n as u64;
        n
    }

    /// Crosses off the job `reply` answers: the oldest of worker `key`'s.
    fn answer(&mut self, key: Key, reply: u64) {
        let (queue, _) = self.unanswered.get_mut(&key).expect("a reply of a worker");
        assert_eq!(
            queue.pop_front(),
            Some(reply),
            "{key} answers its jobs in the order sent"
        );
        let count = &mut self.answered[reply as usize];
        *count += 1;
        assert_eq!(*count, 1, "job {reply} answered twice");
        self.done += 1;
    }

    /// Checks a lost worker's `Lost` against the jobs it was sent and did
    /// not answer, and sends all of them again.
    fn lost(&mut self, lost: Lost<u64>) {
        let (queue, sent) = self
            .unanswered
            .remove(&lost.key)
            .expect("the lost worker's jobs");
        let unread = lost.unread.len();
        assert!(
            unread <= queue.len(),
            "{}: {unread} unread, but only {} jobs in flight",
            lost.key,
            queue.len()
        );
        let in_flight = Vec::from(queue);
        let (taken, never_taken) = in_flight.split_at(in_flight.len() - unread);
        assert_eq!(
            lost.unread, never_taken,
            "the unread jobs are the last ones sent, exactly"
        );
        assert_eq!(
            lost.unanswered,
            Some(taken.len() as u64),
            "the jobs it took and did not answer"
        );
        assert_eq!(lost.taken, sent - unread as u64, "the jobs it took in all");
        assert_eq!(lost.error, Error::Disconnected);
        self.lost_unread += unread as u64;
        self.lost_unanswered += taken.len() as u64;
        self.resend.extend(in_flight);
    }
}

/// Starts a worker process and adds it to `pool`.
fn start_worker(
    pool: &mut Pool<u64, u64>,
    ledger: &mut Ledger,
    workers: &mut HashMap<Key, ChildProc>,
) {
    let (jobs_tx, replies_rx, child, _) = spawn_worker(RING, WORK, 256);
    let key = pool.add(jobs_tx, replies_rx).expect("add a worker");
    ledger.unanswered.insert(key, (VecDeque::new(), 0));
    workers.insert(key, child);
}

/// The worker `key` ended (`why`): it must be one that was killed, and
/// its loss must be ready, once.
fn worker_ended(
    pool: &mut Pool<u64, u64>,
    ledger: &mut Ledger,
    killed: &[Key],
    key: Key,
    why: Error,
) {
    assert_eq!(why, Error::Disconnected, "{key} was killed");
    assert!(killed.contains(&key), "{key} ended, but it was not killed");
    let lost = pool
        .take_lost()
        .expect("take_lost")
        .unwrap_or_else(|| panic!("{key} ended, and its loss is not ready"));
    assert_eq!(lost.key, key);
    ledger.lost(lost);
    assert!(
        pool.take_lost().expect("take_lost").is_none(),
        "one loss each"
    );
}

/// Four worker processes answer 10^6 jobs (`FDRING_TOPO_JOBS`), each with
/// its id; three times, at a random moment, a random worker is killed
/// with SIGKILL and a new process takes its place. Each lost worker
/// ends once; its `Lost` gives back exactly the jobs it never took, and
/// counts exactly those it took and never answered; all of them sent
/// again, every job is answered exactly once.
#[test]
fn a_pool_of_worker_processes_killed_at_random_answers_every_job_exactly_once() {
    let jobs = env_u64("FDRING_TOPO_JOBS", 1_000_000);
    let seed = seed();
    eprintln!("pool with kills: seed {seed} (FDRING_TEST_SEED replays it)");
    let mut rng = Rng::new(seed);
    let mut kill_at: Vec<u64> = (0..KILLS)
        .map(|_| rng.range(jobs / 20, jobs * 9 / 10))
        .collect();
    kill_at.sort_unstable();
    let mut pool = Pool::<u64, u64>::new(Policy::LeastLoaded).expect("pool");
    let mut ledger = Ledger::new(jobs);
    let mut workers: HashMap<Key, ChildProc> = HashMap::new();
    for _ in 0..WORKERS {
        start_worker(&mut pool, &mut ledger, &mut workers);
    }
    let mut killed: Vec<Key> = Vec::new();
    let mut ended = 0;
    let started = Instant::now();
    while ledger.done < jobs {
        assert!(
            started.elapsed() < HANG,
            "the pool hangs: {} of {jobs} answered, seed {seed}",
            ledger.done
        );
        let mut progress = false;
        if ledger.has_jobs_to_send() {
            match pool.try_send_with(|key, slots| ledger.fill(key, slots)) {
                Ok(_) => progress = true,
                Err(Error::Full) => {}
                Err(e) => panic!("sending jobs: {e}"),
            }
        }
        let received = if ledger.has_jobs_to_send() || progress {
            pool.try_recv_with(|key, replies| {
                for &reply in replies {
                    ledger.answer(key, reply);
                }
                replies.len()
            })
        } else {
            // Nothing to send: only replies (or a loss) can come.
            pool.recv_timeout(NOTICE).map(|next| match next {
                Next::Ready(key, reply) => {
                    ledger.answer(key, reply);
                    Next::Ready(key, 1)
                }
                Next::Ended(key, why) => Next::Ended(key, why),
                other => panic!("{other:?}"),
            })
        };
        match received {
            Ok(Next::Ready(_, _)) => progress = true,
            Ok(Next::Ended(key, why)) => {
                worker_ended(&mut pool, &mut ledger, &killed, key, why);
                ended += 1;
                progress = true;
            }
            Ok(other) => panic!("a pool delivered {other:?}"),
            Err(Error::Empty) => {}
            Err(e) => panic!("receiving replies: {e} ({} answered)", ledger.done),
        }
        if killed.len() < KILLS && ledger.done >= kill_at[killed.len()] {
            let mut keys: Vec<Key> = workers.keys().copied().collect();
            keys.sort_unstable();
            let key = keys[rng.upto(keys.len()) - 1];
            let mut child = workers.remove(&key).expect("a live worker");
            child.kill();
            assert_killed(&mut child, &format!("worker {key}, seed {seed}"));
            // Its loss comes with its end, once every reply it sent was
            // counted: not before.
            assert!(
                pool.take_lost().expect("take_lost").is_none(),
                "a loss before its worker's end"
            );
            killed.push(key);
            start_worker(&mut pool, &mut ledger, &mut workers);
        }
        if !progress && ledger.has_jobs_to_send() {
            pool.wait(Some(NOTICE)).expect("wait");
        }
    }
    // A worker killed with nothing in flight may end after the last reply.
    while ended < killed.len() {
        match pool.recv_timeout(NOTICE) {
            Ok(Next::Ended(key, why)) => {
                worker_ended(&mut pool, &mut ledger, &killed, key, why);
                ended += 1;
            }
            other => panic!("after the last reply: {other:?}, seed {seed}"),
        }
    }
    eprintln!(
        "pool: {jobs} jobs, {} workers killed, {} jobs unread and {} unanswered sent again, in {:?}",
        killed.len(),
        ledger.lost_unread,
        ledger.lost_unanswered,
        started.elapsed()
    );
    assert!(killed.len() >= 2);
    assert!(
        ledger.lost_unread > 0,
        "the killed workers left no job unread: nothing was taken back, seed {seed}"
    );
    assert!(ledger.resend.is_empty() && ledger.fresh == jobs);
    assert!(
        ledger.answered.iter().all(|&n| n == 1),
        "every job answered exactly once"
    );
    assert_eq!(pool.in_flight(), 0);
    assert_eq!(pool.len(), WORKERS);
    drop(pool);
    for (_, child) in workers {
        child.finish();
    }
}
