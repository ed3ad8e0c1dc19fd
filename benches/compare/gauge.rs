//! The machine's gauge: a cross-core cache-line round trip between two
//! threads, timed before every round of every case.
//!
//! A case's floor tells a slow round only against the case's own median,
//! so a slow phase that covers every round of a case (seconds long: it
//! happens, most often in the first seconds after the machine was idle)
//! passes unseen and moves every paired ratio against the contenders it
//! does not slow down (syscall-bound pipes and sockets). In those phases
//! the round trip between the two cores went from ~100 ns to ~380 ns (on
//! the AMD host; 300–400 ns is steady on the Intel one) while
//! a one-core `memcpy` keeps its speed, so the gauge is that round trip:
//! a round whose gauge is more than [`SLOW_FACTOR`] times the median of the
//! whole run is a slow phase too. The median, not the best: now and then
//! one probe runs at ~33 ns (the two vCPUs on one physical core, likely),
//! and twice that would call every normal round slow. A run that is slow
//! for most of its probes is beyond the gauge.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::paired::{spread, SLOW_FACTOR};
use crate::process::{pin, PEER_CORE};

/// Round trips a gauge times: ~0.6 ms normally, ~3.5 ms in a slow phase.
const TRIPS: u64 = 10_000;

/// How long [`Gauge::new`] runs the round trip before the first case, to
/// warm the machine up: its first seconds after idle are often slow. These
/// probes are not kept (they would weigh on the median).
const WARM_UP: Duration = Duration::from_secs(1);

/// Every round trip probed in the run.
pub struct Gauge {
    probes: Vec<f64>,
}

impl Gauge {
    /// Warms the machine up for [`WARM_UP`] before the first case.
    pub fn new() -> Gauge {
        let started = Instant::now();
        while started.elapsed() < WARM_UP {
            cross_core_rtt();
        }
        Gauge { probes: Vec::new() }
    }

    /// The cross-core round trip now, in ns (NaN on one core), kept.
    pub fn probe(&mut self) -> f64 {
        let rtt = cross_core_rtt();
        self.probes.push(rtt);
        rtt
    }

    /// Which of a case's rounds were slow by their gauge: more than
    /// [`SLOW_FACTOR`] × the median of the run's probes so far.
    pub fn slow(&self, rounds: &[f64]) -> Vec<bool> {
        let median = self.median();
        rounds
            .iter()
            .map(|&rtt| rtt > median * SLOW_FACTOR)
            .collect()
    }

    /// The median round trip of the run so far, in ns (NaN if none).
    pub fn median(&self) -> f64 {
        let probes: Vec<f64> = self
            .probes
            .iter()
            .copied()
            .filter(|p| p.is_finite())
            .collect();
        if probes.is_empty() {
            return f64::NAN;
        }
        spread(probes)[0]
    }
}

/// One cache line each way between this thread (on core 0) and a thread on
/// the peer core: ns per round trip over [`TRIPS`], NaN if there is no
/// second core (a spin between two threads of one core would measure the
/// scheduler).
fn cross_core_rtt() -> f64 {
    let peer = PEER_CORE.load(Ordering::Relaxed);
    if peer == 0 {
        return f64::NAN;
    }
    #[repr(align(128))]
    struct Line(AtomicU64);
    let (ping, pong) = (Line(AtomicU64::new(0)), Line(AtomicU64::new(0)));
    std::thread::scope(|s| {
        s.spawn(|| {
            pin(peer);
            for i in 0..=TRIPS {
                while ping.0.load(Ordering::Acquire) != i {
                    spin_loop();
                }
                pong.0.store(i + 1, Ordering::Release);
            }
        });
        let mut started = Instant::now();
        for i in 0..=TRIPS {
            ping.0.store(i, Ordering::Release);
            while pong.0.load(Ordering::Acquire) != i + 1 {
                spin_loop();
            }
            if i == 0 {
                // The first trip waits for the thread to start: untimed.
                started = Instant::now();
            }
        }
        started.elapsed().as_secs_f64() * 1e9 / TRIPS as f64
    })
}
