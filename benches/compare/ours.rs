//! fdring's contenders: the closure API in batches, one item per call,
//! frames as items, ping-pong, and any stream between two threads.

use std::hint::spin_loop;
use std::mem::MaybeUninit;

use bytemuck::Pod;
use fdring::{Builder, Receiver, Sender};

use crate::data::{check, fill, pingpong_side, rx_side, tx_side, Duplex, Rx, Tx};
use crate::process::{child, pair, thread, Cfg, Run};
use crate::{Frame, Res, FRAME_WORDS};

pub fn stats(s: fdring::Stats) -> [u64; 2] {
    [s.wakeups, s.sleeps]
}

/// The closure API, blocking: `send_with` / `recv_with`.
impl Tx for Sender<u64> {
    fn put(&mut self, first: u64, max: usize) -> Res<usize> {
        Ok(self.send_with(|slots| {
            let k = slots.len().min(max);
            fill(&mut slots[..k], first);
            k
        })?)
    }
    fn counters(&self) -> [u64; 2] {
        stats(self.stats())
    }
}

impl Rx for Receiver<u64> {
    fn take(&mut self, first: u64, max: usize) -> Res<(usize, u64)> {
        let mut diff = 0;
        let k = self.recv_with(|items| {
            let k = items.len().min(max);
            diff = check(&items[..k], first);
            k
        })?;
        Ok((k, diff))
    }
    fn counters(&self) -> [u64; 2] {
        stats(self.stats())
    }
}

/// One frame per call, written and checked in place.
impl Tx for Sender<Frame> {
    fn put(&mut self, first: u64, _max: usize) -> Res<usize> {
        self.send_with(|slots| {
            let frame = slots[0]
                .as_mut_ptr()
                .cast::<[MaybeUninit<u64>; FRAME_WORDS]>();
            // SAFETY: `Frame` is a transparent `[u64; FRAME_WORDS]`, so a
            // `MaybeUninit<Frame>` has the layout of an array of
            // `MaybeUninit<u64>`, which claims nothing about its bytes.
            fill(unsafe { &mut *frame }, first);
            1
        })?;
        Ok(FRAME_WORDS)
    }
    fn counters(&self) -> [u64; 2] {
        stats(self.stats())
    }
}

impl Rx for Receiver<Frame> {
    fn take(&mut self, first: u64, _max: usize) -> Res<(usize, u64)> {
        let mut diff = 0;
        self.recv_with(|frames| {
            diff = check(&frames[0].0, first);
            1
        })?;
        Ok((FRAME_WORDS, diff))
    }
    fn counters(&self) -> [u64; 2] {
        stats(self.stats())
    }
}

/// One item per call, busy-polling: `try_send` / `try_recv`, or the same
/// for a peer.
pub struct One<T>(pub T);

impl Tx for One<Sender<u64>> {
    fn put(&mut self, first: u64, _max: usize) -> Res<usize> {
        loop {
            match self.0.try_send(first) {
                Err(fdring::Error::Full) => spin_loop(),
                r => return Ok(r.map(|()| 1)?),
            }
        }
    }
    fn counters(&self) -> [u64; 2] {
        stats(self.0.stats())
    }
}

impl Rx for One<Receiver<u64>> {
    fn take(&mut self, first: u64, _max: usize) -> Res<(usize, u64)> {
        loop {
            match self.0.try_recv() {
                Err(fdring::Error::Empty) => spin_loop(),
                r => return Ok((1, r? ^ first)),
            }
        }
    }
    fn counters(&self) -> [u64; 2] {
        stats(self.0.stats())
    }
}

pub struct FdPair {
    pub tx: Sender<u64>,
    pub rx: Receiver<u64>,
    pub busy: bool,
}

impl Duplex for FdPair {
    fn send(&mut self, v: u64) -> Res<()> {
        if !self.busy {
            return Ok(self.tx.send(v)?);
        }
        loop {
            match self.tx.try_send(v) {
                Err(fdring::Error::Full) => spin_loop(),
                r => return Ok(r?),
            }
        }
    }
    fn recv(&mut self) -> Res<u64> {
        if !self.busy {
            return Ok(self.rx.recv()?);
        }
        loop {
            match self.rx.try_recv() {
                Err(fdring::Error::Empty) => spin_loop(),
                r => return Ok(r?),
            }
        }
    }
    fn counters(&self) -> [u64; 2] {
        let (t, r) = (stats(self.tx.stats()), stats(self.rx.stats()));
        [t[0] + r[0], t[1] + r[1]]
    }
}

/// fdring between two processes: the parent sends through `wrap(sender)`,
/// the child receives as `role`.
pub fn fdring_stream<T: Pod, S: Tx>(
    c: &Cfg,
    cap: usize,
    role: &str,
    wrap: fn(Sender<T>) -> S,
) -> Res<Run> {
    let (tx, rx) = Builder::new()
        .capacity(cap)
        .spin(c.spin)
        .mlock(c.mlock)
        .build::<T>()?;
    // No extra liveness: the wake-up socket hangs up if the child dies.
    let peer = child(role, c, vec![rx.into_fds()?], vec![])?;
    pair(peer, |gate| tx_side(wrap(tx), c, gate))
}

pub fn fdring_pingpong(c: &Cfg) -> Res<Run> {
    let builder = Builder::new().capacity(512).spin(c.spin);
    let (tx, their_rx) = builder.build::<u64>()?;
    let (their_tx, rx) = builder.build::<u64>()?;
    let rings = vec![their_rx.into_fds()?, their_tx.into_fds()?];
    let peer = child("fdring-pong", c, rings, vec![])?;
    let end = FdPair {
        tx,
        rx,
        busy: c.busy,
    };
    pair(peer, |gate| pingpong_side(end, c, true, gate))
}

/// Any stream between two threads.
pub fn threads<A: Tx, B: Rx + Send + 'static>(c: &Cfg, (tx, rx): (A, B)) -> Res<Run> {
    let theirs = *c;
    let peer = thread(move |gate| rx_side(rx, &theirs, gate));
    pair(peer, |gate| tx_side(tx, c, gate))
}
