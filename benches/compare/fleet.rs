//! One side against several peers (the topologies' cases): starting them
//! ([`spawn_all`]), the [`Start`] signal that lets producer children
//! begin at one moment, and [`crowd`], the many-peer
//! [`pair`](crate::process::pair).
//!
//! It knows nothing of what the peers move; only how they start, and how
//! their results are summed.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::time::Instant;

use crate::process::{Gate, Peer, Run};
use crate::Res;

/// How a child learns which of the fleet it is (0, 1, ...).
pub const MEMBER_VAR: &str = "FDRING_BENCH_MEMBER";

/// The child's number in its fleet, from [`MEMBER_VAR`].
pub fn member() -> Res<usize> {
    Ok(std::env::var(MEMBER_VAR)?.parse()?)
}

/// The starting signal. A child passes its gate as soon as it is set up,
/// but the parent sets up its children one after another; a producer that
/// began at its own gate would fill its ring or socket before the clock
/// starts, and the first would get a head start on the last. So each
/// producer holds a [`ticket`](Start::ticket), the read end of one pipe,
/// and waits on it past its gate; the parent [`fire`](Start::fire)s by
/// closing the write end, and every producer sees the end of the pipe at
/// once.
pub struct Start {
    /// Close-on-exec, so that no child holds it and the pipe really ends
    /// when this process closes it.
    write: OwnedFd,
    read: OwnedFd,
}

impl Start {
    pub fn new() -> Res<Start> {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        Ok(Start { write, read })
    }

    /// A read end for one child (a close-on-exec copy, which `child` makes
    /// inheritable for that child alone).
    pub fn ticket(&self) -> Res<OwnedFd> {
        Ok(self.read.try_clone()?)
    }

    pub fn fire(self) {
        drop(self.write);
    }
}

/// The child's side of [`Start`]: returns once the parent fired.
pub fn wait_start(ticket: OwnedFd) -> Res<()> {
    let mut byte = [0u8];
    match File::from(ticket).read(&mut byte)? {
        0 => Ok(()),
        _ => Err("the starting pipe carried data".into()),
    }
}

/// `n` peers, peer `k` from `spawn(k)`; if one cannot start, those that
/// did are killed, so that none waits forever for a parent that gave up.
pub fn spawn_all(n: usize, mut spawn: impl FnMut(usize) -> Res<Peer>) -> Res<Vec<Peer>> {
    let mut peers = Vec::with_capacity(n);
    for k in 0..n {
        match spawn(k) {
            Ok(peer) => peers.push(peer),
            Err(e) => {
                peers.into_iter().for_each(Peer::abandon);
                return Err(e);
            }
        }
    }
    Ok(peers)
}

/// Runs `mine` here against `peers`, all past their gates, timed from
/// here to the end of `mine`: in the topologies this side finishes last,
/// since it receives every item or every reply. The peers' results are
/// joined afterwards (`mine` must have dropped its ends, so that they see
/// the end), and their counters summed with this side's.
pub fn crowd(peers: Vec<Peer>, mine: impl FnOnce(Gate) -> Res<Run>) -> Res<Run> {
    let start = Instant::now();
    let me = match mine(Gate::Parent) {
        Ok(me) => me,
        Err(e) => {
            peers.into_iter().for_each(Peer::abandon);
            return Err(e);
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let mut all = Run { secs, ..me };
    let mut first_error = None;
    for peer in peers {
        // Every peer is joined, even after one failed, so that none is left
        // running into the next contender's round.
        match peer.join(start) {
            Ok(them) => {
                all.ok &= them.ok;
                all.allocs += them.allocs;
                all.writes += them.writes;
                all.sleeps += them.sleeps;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if !all.ok {
        return Err("wrong data received".into());
    }
    Ok(all)
}
