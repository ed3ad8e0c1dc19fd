//! The data and its checking: every contender moves 64-bit sequence
//! numbers, and the receiving side checks every one. The sides of a run
//! are written once, over the `Tx` / `Rx` / `Duplex` traits that each
//! contender implements.

use std::mem::MaybeUninit;

use crate::process::{monotonic_ns, Cfg, Gate, Run};
use crate::{Res, PAUSE};

pub fn fill(words: &mut [MaybeUninit<u64>], first: u64) {
    for (i, w) in words.iter_mut().enumerate() {
        w.write(first + i as u64);
    }
}

pub fn fill_init(words: &mut [u64], first: u64) {
    for (i, w) in words.iter_mut().enumerate() {
        *w = first + i as u64;
    }
}

/// 0 if `words` are `first, first + 1, ...`; branch-free, so it vectorizes.
pub fn check(words: &[u64], first: u64) -> u64 {
    let diff = |(i, &w): (usize, &u64)| w ^ (first + i as u64);
    words.iter().enumerate().map(diff).fold(0, |a, d| a | d)
}

/// A sending end of a stream of sequence numbers: `put` writes `first..`,
/// `1..=max` of them, waiting the way the transport does, and says how many.
pub trait Tx {
    fn put(&mut self, first: u64, max: usize) -> Res<usize>;
    /// fdring's wake-ups sent and sleeps.
    fn counters(&self) -> [u64; 2] {
        [0, 0]
    }
}

/// A receiving end: `take` consumes `1..=max` words, checking them against
/// `first..`; returns how many and their difference (0 when right).
pub trait Rx {
    fn take(&mut self, first: u64, max: usize) -> Res<(usize, u64)>;
    fn counters(&self) -> [u64; 2] {
        [0, 0]
    }
}

/// One end of a ping-pong.
pub trait Duplex {
    fn send(&mut self, v: u64) -> Res<()>;
    fn recv(&mut self) -> Res<u64>;
    fn counters(&self) -> [u64; 2] {
        [0, 0]
    }
}

pub fn tx_side(mut tx: impl Tx, c: &Cfg, gate: Gate) -> Res<Run> {
    let before = gate.open();
    let (total, mut next, mut since_pause) = (c.words(), 0, 0);
    while next < total {
        if since_pause >= c.burst {
            std::thread::sleep(PAUSE);
            since_pause = 0;
        }
        let k = tx.put(next, c.chunk.min((total - next) as usize))? as u64;
        next += k;
        since_pause += k;
    }
    Run::side(true, before, tx.counters())
}

/// The receiving side of a stream. With a warm-up (`c.warm`), it notes
/// when it has the first `c.warm` messages: the run is timed from there.
pub fn rx_side(mut rx: impl Rx, c: &Cfg, gate: Gate) -> Res<Run> {
    let before = gate.open();
    let (total, mut next, mut diff) = (c.words(), 0, 0);
    let (warm, mut warm_at) = (c.warm * c.wpm, 0);
    while next < total {
        let (k, d) = rx.take(next, c.chunk.min((total - next) as usize))?;
        next += k as u64;
        diff |= d;
        if warm_at == 0 && warm > 0 && next >= warm {
            warm_at = monotonic_ns();
        }
    }
    Ok(Run::side(diff == 0, before, rx.counters())?.warmed_at(warm_at))
}

pub fn pingpong_side(mut end: impl Duplex, c: &Cfg, pinger: bool, gate: Gate) -> Res<Run> {
    let before = gate.open();
    let mut ok = true;
    for i in 1..=c.n {
        if pinger {
            end.send(i)?;
        }
        let v = end.recv()?;
        ok &= v == i;
        if !pinger {
            end.send(v)?;
        }
    }
    Run::side(ok, before, end.counters())
}
