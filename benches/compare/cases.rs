//! The cases: what each moves, its contenders, its metrics and its goals
//! (`shared/BENCHMARKS.md`).

use std::time::Duration;

use fdring::{Builder, Sender, DEFAULT_SPIN};

use crate::c_producer::c_producer;
use crate::connect::{fdring_connects, unix_connects, P50_US, P99_US};
use crate::create_open::{fdring_create_open, iox_create_open, SIZES};
use crate::fan_in::{fdring_fan_in, unix_fan_in};
use crate::floors::{floor_pingpong, floor_ring_pingpong, floor_stream};
use crate::frames::frame_cases;
use crate::iceoryx::{iox_pingpong, iox_stream, STREAM_BUFFER};
use crate::ipc_channel::ipc_pingpong;
use crate::many_rings::{many_rings, MANY_BATCH, MANY_RINGS, MANY_RINGS_4096};
use crate::ours::{fdring_pingpong, fdring_stream, threads, One};
use crate::peers::{io_pingpong, io_stream, pipe, shmem_pingpong, shmem_stream, unix};
use crate::process::{Cfg, Run};
use crate::video::video_cases;
use crate::worker_pool::{crossbeam_pool, fdring_pool, unix_pool, POOL_BATCH};
use crate::{Res, BURST, CAP, CHUNK};

pub type Contender = fn(&Cfg) -> Res<Run>;
pub type Metric = (&'static str, fn(&Cfg, &Run) -> f64);

pub struct Case {
    pub name: &'static str,
    pub cfg: Cfg,
    pub metrics: &'static [Metric],
    pub contenders: Vec<(&'static str, Contender)>,
    /// (contender, "≥" or "≤", limit) on fdring ÷ contender in the first
    /// metric, or on fdring's own value when the contender is "fdring".
    pub goals: &'static [(&'static str, &'static str, f64)],
}

/// Cases whose goals are not BENCHMARKS.md's but the that added
/// them; their verdicts are marked, so that nobody reads them as the
/// team's.
pub const OWN_GOALS: &[&str] = &["frames_64k"];

pub const GBPS: Metric = ("GB/s", |c, r| c.timed_words() as f64 * 8.0 / r.secs / 1e9);
pub const MITEMS: Metric = ("Mitems/s", |c, r| c.n as f64 / r.secs / 1e6);
pub const MJOBS: Metric = ("Mjobs/s", |c, r| c.n as f64 / r.secs / 1e6);
pub const NS_RTT: Metric = ("ns/RTT", |c, r| r.secs / c.n as f64 * 1e9);
pub const US_RTT: Metric = ("µs/RTT", |c, r| r.secs / c.n as f64 * 1e6);

pub fn cases(quick: bool) -> Vec<Case> {
    let q = |quick_n: u64, full_n: u64| if quick { quick_n } else { full_n };
    let base = Cfg {
        n: 0,
        wpm: 1,
        chunk: CHUNK,
        spin: DEFAULT_SPIN,
        busy: false,
        burst: u64::MAX,
        mlock: false,
        warm: 0,
    };
    let pipe_pp: Contender = |c| {
        let ((ping_w, ping_r), (pong_w, pong_r)) = (pipe()?, pipe()?);
        io_pingpong(c, [pong_r, ping_w], [ping_r, pong_w])
    };
    let unix_pp: Contender = |c| {
        let (a, b) = unix()?;
        io_pingpong(c, [a.try_clone()?, a], [b.try_clone()?, b])
    };
    let eventfd_pp: Contender = |c| {
        let make = || rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC);
        let (ping, pong) = (make()?, make()?);
        io_pingpong(c, [pong.try_clone()?, ping.try_clone()?], [ping, pong])
    };
    let mut cases = vec![
        Case {
            name: "stream_u64_batch",
            cfg: Cfg {
                n: q(1 << 25, 1 << 27),
                ..base
            },
            metrics: &[GBPS],
            contenders: vec![
                ("fdring", |c| {
                    fdring_stream(c, CAP, "fdring", |t: Sender<u64>| t)
                }),
                ("fdring/threads", |c| {
                    threads(c, Builder::new().capacity(CAP).build::<u64>()?)
                }),
                ("floor SPSC", floor_stream),
                ("shmem-ipc", shmem_stream),
                ("pipe 64KiB", |c| io_stream(c, pipe()?)),
                ("rtrb/threads", |c| threads(c, rtrb::RingBuffer::new(CAP))),
                ("iceoryx2", |c| iox_stream(c, STREAM_BUFFER)),
                ("C producer", c_producer),
            ],
            goals: &[
                ("floor SPSC", "≥", 0.9),
                ("shmem-ipc", "≥", 1.0),
                ("pipe 64KiB", "≥", 1.0),
                ("rtrb/threads", "≥", 1.0),
                ("iceoryx2", "≥", 1.0),
                // Issue 16: the C library's producer at ≥ 0.95× the Rust one.
                ("C producer", "≤", 1.0 / 0.95),
            ],
        },
        Case {
            name: "stream_u64_single",
            cfg: Cfg {
                n: q(1 << 21, 1 << 24),
                chunk: 1,
                ..base
            },
            metrics: &[MITEMS],
            contenders: vec![
                ("fdring", |c| fdring_stream(c, CAP, "fdring-one", One)),
                ("fdring/threads", |c| {
                    let (tx, rx) = Builder::new().capacity(CAP).build::<u64>()?;
                    threads(c, (One(tx), One(rx)))
                }),
                ("floor SPSC", floor_stream),
                ("rtrb/threads", |c| {
                    let (tx, rx) = rtrb::RingBuffer::new(CAP);
                    threads(c, (One(tx), One(rx)))
                }),
                ("crossbeam/threads", |c| {
                    let (tx, rx) = crossbeam_channel::bounded(CAP);
                    threads(c, (One(tx), One(rx)))
                }),
            ],
            goals: &[
                ("floor SPSC", "≥", 0.8),
                ("rtrb/threads", "≥", 1.0),
                ("crossbeam/threads", "≥", 1.0),
            ],
        },
        Case {
            name: "pingpong_spin",
            cfg: Cfg {
                n: q(200_000, 1_000_000),
                busy: true,
                ..base
            },
            metrics: &[NS_RTT],
            contenders: vec![
                ("fdring", fdring_pingpong),
                ("floor cache line", floor_pingpong),
                ("floor SPSC rings", floor_ring_pingpong),
                ("iceoryx2", |c| iox_pingpong(c, false)),
            ],
            goals: &[("floor cache line", "≤", 1.25), ("iceoryx2", "≤", 1.0)],
        },
        Case {
            name: "pingpong_block",
            cfg: Cfg {
                n: q(1_000, 10_000),
                spin: Duration::ZERO,
                ..base
            },
            metrics: &[US_RTT],
            contenders: vec![
                ("fdring", fdring_pingpong),
                ("fdring spin 20µs", |c| {
                    fdring_pingpong(&Cfg {
                        spin: DEFAULT_SPIN,
                        ..*c
                    })
                }),
                ("floor eventfd", eventfd_pp),
                ("pipe", pipe_pp),
                ("UnixStream", unix_pp),
                ("shmem-ipc", shmem_pingpong),
                ("iceoryx2", |c| iox_pingpong(c, true)),
                ("ipc-channel", ipc_pingpong),
            ],
            goals: &[
                ("floor eventfd", "≤", 1.10),
                ("pipe", "≤", 1.0),
                ("UnixStream", "≤", 1.0),
                ("shmem-ipc", "≤", 1.0),
                ("iceoryx2", "≤", 1.0),
                ("ipc-channel", "≤", 0.333),
            ],
        },
        Case {
            name: "wakeups",
            cfg: Cfg {
                n: q(2_000_000, 10_000_000),
                burst: BURST,
                ..base
            },
            metrics: &[
                ("writes/burst", |c, r| {
                    r.writes as f64 / c.n.div_ceil(c.burst) as f64
                }),
                ("writes/1e6 items", |c, r| {
                    r.writes as f64 * 1e6 / c.n as f64
                }),
                ("sleeps/burst", |c, r| {
                    r.sleeps as f64 / c.n.div_ceil(c.burst) as f64
                }),
                // A wake-up only for a side that really slept: 1 at most,
                // whatever the scheduler did to the bursts (a consumer
                // descheduled mid-burst sleeps, and is woken, twice).
                ("writes/sleep", |_, r| {
                    r.writes as f64 / r.sleeps.max(1) as f64
                }),
            ],
            contenders: vec![("fdring", |c| fdring_stream(c, CAP, "fdring", One))],
            goals: &[("fdring", "≤", 1.0)],
        },
        Case {
            name: "many_rings",
            cfg: Cfg {
                n: q(1 << 25, 1 << 26),
                chunk: MANY_BATCH,
                ..base
            },
            metrics: &[GBPS],
            contenders: vec![
                ("fdring", |c| many_rings(c, MANY_RINGS)),
                ("1 ring", |c| {
                    let one = Cfg { chunk: CHUNK, ..*c };
                    fdring_stream(&one, CAP, "fdring", |t: Sender<u64>| t)
                }),
            ],
            goals: &[("1 ring", "≥", 0.8)],
        },
        Case {
            name: "many_rings_4096",
            cfg: Cfg {
                n: q(1 << 26, 1 << 27),
                chunk: MANY_BATCH,
                ..base
            },
            metrics: &[GBPS],
            contenders: vec![
                ("fdring", |c| many_rings(c, MANY_RINGS_4096)),
                ("1 ring", |c| {
                    let one = Cfg { chunk: CHUNK, ..*c };
                    fdring_stream(&one, CAP, "fdring", |t: Sender<u64>| t)
                }),
            ],
            goals: &[("1 ring", "≥", 0.8)],
        },
        Case {
            name: "fan_in_8",
            cfg: Cfg {
                n: q(1 << 25, 1 << 27),
                ..base
            },
            metrics: &[GBPS],
            contenders: vec![
                ("fdring", fdring_fan_in),
                ("one ring", |c| {
                    fdring_stream(c, CAP, "fdring", |t: Sender<u64>| t)
                }),
                ("unix+mio", unix_fan_in),
            ],
            goals: &[("one ring", "≥", 0.8), ("unix+mio", "≥", 1.0)],
        },
        Case {
            name: "worker_pool_4",
            cfg: Cfg {
                n: q(1 << 22, 1 << 24),
                chunk: POOL_BATCH,
                ..base
            },
            metrics: &[MJOBS],
            contenders: vec![
                ("fdring", fdring_pool),
                ("unix+mio", unix_pool),
                ("crossbeam/threads", crossbeam_pool),
            ],
            // crossbeam's goal is issue 14's: it held by far when the
            // case was added, and guards against a pool slower than
            // threads with no IPC at all.
            goals: &[("unix+mio", "≥", 1.0), ("crossbeam/threads", "≥", 1.0)],
        },
    ];
    cases.extend(video_cases(quick, base));
    cases.extend(frame_cases(quick, base));
    cases.push(Case {
        // BENCHMARKS.md sets no goal for it: only the rows.
        name: "connect_latency",
        cfg: Cfg {
            n: q(200, 1000),
            ..base
        },
        metrics: &[P50_US, P99_US],
        contenders: vec![("fdring", fdring_connects), ("UnixStream", unix_connects)],
        goals: &[],
    });
    cases.push(Case {
        name: "create_open",
        cfg: Cfg {
            n: q(20, 200),
            ..base
        },
        metrics: &[P50_US, P99_US],
        // The first contender is the one the ratios divide, so each size
        // is its own case row group: fdring's rows against iceoryx2's of
        // the same size are read from the table (see the goals below).
        contenders: vec![
            ("fdring 64KiB", |c| fdring_create_open(c, SIZES[0], true)),
            ("fdring 1MiB", |c| fdring_create_open(c, SIZES[1], true)),
            ("fdring 16MiB", |c| fdring_create_open(c, SIZES[2], true)),
            ("fdring no-prefault 16MiB", |c| {
                fdring_create_open(c, SIZES[2], false)
            }),
            ("iceoryx2 64KiB", |c| iox_create_open(c, SIZES[0])),
            ("iceoryx2 1MiB", |c| iox_create_open(c, SIZES[1])),
            ("iceoryx2 16MiB", |c| iox_create_open(c, SIZES[2])),
        ],
        goals: &[],
    });
    cases
}
