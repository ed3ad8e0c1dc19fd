//! What runs where: the parameters of a run ([`Cfg`]), what a side did
//! ([`Run`]), the moment a side starts ([`Gate`]), the other side of a run
//! ([`Peer`]: a thread, or this binary run again as a child), and core
//! pinning.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fdring::{handoff, Fds};

use crate::counting_alloc::allocs;
use crate::Res;

/// How the child finds its fdring bundles and its other fds.
pub const RING_VAR: &str = "FDRING_BENCH_RING";
pub const FDS_VAR: &str = "FDRING_BENCH_FDS";

/// The core of the child, or of the second thread; the parent is on core 0.
pub static PEER_CORE: AtomicUsize = AtomicUsize::new(1);

/// The parameters of a case, passed to the child on its command line.
#[derive(Clone, Copy, Debug)]
pub struct Cfg {
    /// Messages: items, frames or round trips.
    pub n: u64,
    /// 64-bit words per message (a frame is many).
    pub wpm: u64,
    /// The most words a side moves per call.
    pub chunk: usize,
    /// How long blocking calls spin before they sleep.
    pub spin: Duration,
    /// Ping-pong with `try_` calls instead of blocking ones.
    pub busy: bool,
    /// Items between the producer's pauses.
    pub burst: u64,
    /// fdring rings locked in memory, so that no page faults while streaming.
    pub mlock: bool,
    /// Messages moved before the clock starts (of the `n`): the receiver
    /// notes when it has them, and the run is timed from there to its end,
    /// so that every contender is timed in its steady state, its shared
    /// memory touched once (see `rx_side`).
    pub warm: u64,
}

impl Cfg {
    pub fn words(&self) -> u64 {
        self.n * self.wpm
    }

    /// The messages and words the clock sees: those after the warm-up.
    pub fn timed_n(&self) -> u64 {
        self.n - self.warm
    }
    pub fn timed_words(&self) -> u64 {
        self.timed_n() * self.wpm
    }

    pub fn args(&self) -> Vec<String> {
        let spin = self.spin.as_nanos() as u64;
        let v = [
            self.n,
            self.wpm,
            self.chunk as u64,
            spin,
            self.busy as u64,
            self.burst,
            self.mlock as u64,
            self.warm,
        ];
        v.iter().map(u64::to_string).collect()
    }

    pub fn parse(args: &[String]) -> Res<Cfg> {
        let v = args
            .iter()
            .map(|a| a.parse())
            .collect::<Result<Vec<u64>, _>>()?;
        let [n, wpm, chunk, spin, busy, burst, mlock, warm] = v[..] else {
            return Err("the child needs 8 numbers".into());
        };
        let (chunk, spin, busy, mlock) = (
            chunk as usize,
            Duration::from_nanos(spin),
            busy != 0,
            mlock != 0,
        );
        Ok(Cfg {
            n,
            wpm,
            chunk,
            spin,
            busy,
            burst,
            mlock,
            warm,
        })
    }
}

/// The system-wide monotonic clock in nanoseconds: a time one process
/// takes and another compares with its own.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// What one side (or, summed, one run) did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Run {
    pub ok: bool,
    pub secs: f64,
    pub allocs: u64,
    pub writes: u64,
    pub sleeps: u64,
    /// `connect_latency`: the median and the 99th percentile, in seconds,
    /// of the round's connections, each timed by the side that connects.
    pub latency: [f64; 2],
    /// When the receiver had its warm-up messages ([`monotonic_ns`]); 0
    /// with no warm-up. The run is then timed from here.
    pub warm_at: u64,
}

impl Run {
    /// A side's result: allocations since `allocs_before`, fdring counters.
    pub fn side(ok: bool, allocs_before: u64, [writes, sleeps]: [u64; 2]) -> Res<Run> {
        let allocs = allocs() - allocs_before;
        Ok(Run {
            ok,
            secs: 0.0,
            allocs,
            writes,
            sleeps,
            latency: [0.0; 2],
            warm_at: 0,
        })
    }

    /// This side with its warm-up's end noted.
    pub fn warmed_at(self, warm_at: u64) -> Run {
        Run { warm_at, ..self }
    }
}

/// A run's time: `secs` from the start, or from the end of the warm-up
/// (`warm_at`) to `now` if the receiver noted one.
fn timed(secs: f64, now: u64, warm_at: u64) -> f64 {
    match warm_at {
        0 => secs,
        at => now.saturating_sub(at) as f64 / 1e9,
    }
}

/// The moment a side starts: the parent starts the clock once the peer
/// passed its gate, after every set-up.
pub enum Gate {
    Parent,
    Child,
    Thread(Arc<Barrier>),
}

impl Gate {
    /// Opens the gate; returns the allocation count to start from.
    pub fn open(self) -> u64 {
        match self {
            Gate::Parent => {}
            Gate::Child => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "ready").and_then(|()| out.flush());
            }
            Gate::Thread(barrier) => {
                barrier.wait();
            }
        }
        allocs()
    }
}

/// The other side of a run, past its gate.
pub enum Peer {
    Alone,
    Thread(JoinHandle<Res<Run>>),
    Process(Child, BufReader<ChildStdout>),
}

impl Peer {
    /// The peer's result, with `secs` from `start` to when it came (so not
    /// counting the child's exit).
    pub fn join(self, start: Instant) -> Res<Run> {
        let secs = || start.elapsed().as_secs_f64();
        match self {
            Peer::Alone => Ok(Run {
                ok: true,
                secs: secs(),
                ..Run::default()
            }),
            Peer::Thread(handle) => {
                let run = handle.join().map_err(|_| "the peer thread panicked")??;
                Ok(Run {
                    secs: timed(secs(), monotonic_ns(), run.warm_at),
                    ..run
                })
            }
            Peer::Process(mut child, mut out) => {
                let mut line = String::new();
                out.read_line(&mut line)?;
                let (secs, now) = (secs(), monotonic_ns());
                child.wait()?;
                let words: Vec<&str> = line.split_whitespace().collect();
                match words[..] {
                    ["done", ok, a, w, s, warm_at] => {
                        let warm_at: u64 = warm_at.parse()?;
                        Ok(Run {
                            ok: ok.parse()?,
                            allocs: a.parse()?,
                            writes: w.parse()?,
                            sleeps: s.parse()?,
                            secs: timed(secs, now, warm_at),
                            latency: [0.0; 2],
                            warm_at,
                        })
                    }
                    _ => Err(format!("child: {}", line.trim_end()).into()),
                }
            }
        }
    }

    pub fn abandon(self) {
        if let Peer::Process(mut child, _) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `mine` here against `peer`, timed from both gates to both ends.
pub fn pair(peer: Peer, mine: impl FnOnce(Gate) -> Res<Run>) -> Res<Run> {
    let start = Instant::now();
    let me = match mine(Gate::Parent) {
        Ok(me) => me,
        Err(e) => {
            peer.abandon();
            return Err(e);
        }
    };
    let them = peer.join(start)?;
    if !(me.ok && them.ok) {
        return Err("wrong data received".into());
    }
    // A side alone (a floor) notes its own warm-up's end.
    let secs = match (them.warm_at, me.warm_at) {
        (0, at) => timed(them.secs, monotonic_ns(), at),
        _ => them.secs,
    };
    Ok(Run {
        ok: true,
        secs,
        warm_at: them.warm_at.max(me.warm_at),
        allocs: me.allocs + them.allocs,
        writes: me.writes + them.writes,
        sleeps: me.sleeps + them.sleeps,
        latency: me.latency,
    })
}

/// Starts `side` on a thread pinned to the peer core, past its gate.
pub fn thread(side: impl FnOnce(Gate) -> Res<Run> + Send + 'static) -> Peer {
    let barrier = Arc::new(Barrier::new(2));
    let gate = Gate::Thread(barrier.clone());
    let handle = std::thread::spawn(move || {
        pin(PEER_CORE.load(Ordering::Relaxed));
        side(gate)
    });
    barrier.wait();
    Peer::Thread(handle)
}

/// Runs this binary again as `role`, handing it fdring bundles through
/// `handoff::inherit` and other fds by number; waits for its gate.
pub fn child(role: &str, c: &Cfg, rings: Vec<Fds>, fds: Vec<OwnedFd>) -> Res<Peer> {
    child_with_env(role, c, rings, fds, &[])
}

/// [`child`], with `env` set in the child's environment too.
pub fn child_with_env(
    role: &str,
    c: &Cfg,
    rings: Vec<Fds>,
    fds: Vec<OwnedFd>,
    env: &[(&str, &str)],
) -> Res<Peer> {
    let mut command = Command::new(std::env::current_exe()?);
    let core = PEER_CORE.load(Ordering::Relaxed).to_string();
    command.args(["--role", role, &core]).args(c.args());
    command.stdout(Stdio::piped());
    for (i, ring) in rings.into_iter().enumerate() {
        handoff::inherit(&mut command, &format!("{RING_VAR}{i}"), ring);
    }
    let mut numbers = Vec::new();
    for fd in &fds {
        // Inheritable from here on; this process spawns one child at a time
        // and closes its copies right after.
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
        numbers.push(fd.as_raw_fd().to_string());
    }
    command.env(FDS_VAR, numbers.join(","));
    command.envs(env.iter().copied());
    let mut process = command.spawn()?;
    drop((command, fds));
    let mut out = BufReader::new(process.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.trim_end() != "ready" {
        let _ = process.wait();
        return Err(format!("child {role}: {}", line.trim_end()).into());
    }
    Ok(Peer::Process(process, out))
}

pub fn pin(core: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(core);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("warning: cannot pin to core {core}: {e}");
    }
}
