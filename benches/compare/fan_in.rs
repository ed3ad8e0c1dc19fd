//! `fan_in_8`: eight producer processes, one consumer (this process), each
//! producer its own ring or socket and its own sequence. The consumer is
//! fdring's `topology::Merge`, or one `mio::Poll` over eight `UnixStream`s;
//! the reference is the same bytes through a single ring from one producer.
//!
//! Producer `k` sends `ring_base(k), ring_base(k) + 1, ...`, `n / 8` items,
//! and the consumer checks every item against its producer's next one, so
//! that an item lost, repeated, reordered or delivered as another
//! producer's is wrong data; a producer whose stream ends short of its
//! quota is too.
//!
//! Cores: the consumer keeps core 0 to itself, and the eight producers
//! share core 1 (each child pins itself to the peer core, as every child
//! does). So the consumer meets the producers as the single ring's
//! consumer meets its one producer, and a fan-in costs what serving eight
//! sources costs, not what eight processes fighting the consumer for its
//! core cost. A producer whose ring or socket is full sleeps and leaves
//! core 1 to the others.

use std::os::fd::OwnedFd;

use fdring::topology::{Key, Merge, Next};
use fdring::{Builder, Receiver};
use mio::{Events, Interest, Poll, Token};

use crate::data::{check, tx_side, Tx};
use crate::fleet::{crowd, member, spawn_all, wait_start, Start, MEMBER_VAR};
use crate::many_rings::ring_base;
use crate::process::{child_with_env, Cfg, Gate, Peer, Run};
use crate::sockets::{poll, stream_pair, Turns, Words};
use crate::{Res, CAP};

/// The producers.
pub const FAN_IN: usize = 8;

/// What the report's header says about the case.
pub fn header(c: &Cfg) -> String {
    format!(
        "fan_in_8: {FAN_IN} producer processes sharing core 1, {} items each, the consumer alone on core 0; \
         fdring: rings of {CAP} u64 (the one ring's size), a Merge turn of at most {} items; \
         unix+mio: {FAN_IN} UnixStreams with 1 MiB send buffers, {} KiB writes and reads",
        c.n / FAN_IN as u64,
        c.chunk,
        c.chunk * 8 / 1024
    )
}

/// Producer `k`'s sequence: `Based(ring_base(k), tx)` sends
/// `ring_base(k) + i` where `tx` would send `i`.
pub struct Based<T>(pub u64, pub T);

impl<T: Tx> Tx for Based<T> {
    fn put(&mut self, first: u64, max: usize) -> Res<usize> {
        self.1.put(self.0 + first, max)
    }
    fn counters(&self) -> [u64; 2] {
        self.1.counters()
    }
}

/// A producer child: past its gate it waits for the start, then sends
/// its `c.words()` items through `tx` in batches of `c.chunk`.
pub fn producer_side(tx: impl Tx, c: &Cfg, ticket: OwnedFd, gate: Gate) -> Res<Run> {
    let base = ring_base(member()?);
    gate.open();
    wait_start(ticket)?;
    // From the start on, this side begins at once, as a parent's does.
    tx_side(Based(base, tx), c, Gate::Parent)
}

/// What each producer child is told: its share of the items.
fn share(c: &Cfg) -> Cfg {
    Cfg {
        n: c.n / FAN_IN as u64,
        ..*c
    }
}

/// Starts the eight producers as `role`, each with its own ring or socket
/// (`ends(k)`) and, first of its fds, a ticket for `start`.
fn producers(
    role: &str,
    c: &Cfg,
    start: &Start,
    mut ends: impl FnMut(usize) -> Res<(Vec<fdring::Fds>, Vec<OwnedFd>)>,
) -> Res<Vec<Peer>> {
    let theirs = share(c);
    spawn_all(FAN_IN, |k| {
        let (rings, mut fds) = ends(k)?;
        fds.insert(0, start.ticket()?);
        child_with_env(role, &theirs, rings, fds, &[(MEMBER_VAR, &k.to_string())])
    })
}

/// What the consumer received from each producer, and whether it was
/// right.
struct Tally {
    quota: u64,
    next: Vec<u64>,
    diff: u64,
    received: u64,
}

impl Tally {
    fn new(c: &Cfg) -> Tally {
        Tally {
            quota: c.words() / FAN_IN as u64,
            next: vec![0; FAN_IN],
            diff: 0,
            received: 0,
        }
    }

    /// Checks `items` as producer `k`'s next ones.
    fn take(&mut self, k: usize, items: &[u64]) {
        self.diff |= check(items, ring_base(k) + self.next[k]);
        self.next[k] += items.len() as u64;
        self.received += items.len() as u64;
    }

    /// Producer `k`'s stream ended: all of it must have come.
    fn ended(&self, k: usize) -> Res<()> {
        match self.next[k] {
            n if n == self.quota => Ok(()),
            n => Err(format!("producer {k} ended after {n} of {} items", self.quota).into()),
        }
    }

    fn done(&self) -> bool {
        self.received >= self.quota * FAN_IN as u64
    }

    fn ok(&self) -> bool {
        self.diff == 0 && self.next.iter().all(|&n| n == self.quota)
    }
}

/// `fdring`: eight rings of `CAP` items (the single ring's size), one
/// `Merge` that lends each ready ring's items in turn, `c.chunk` at most
/// per turn: what the single ring's consumer takes per call, and what the
/// sockets' consumer reads per turn.
pub fn fdring_fan_in(c: &Cfg) -> Res<Run> {
    let builder = Builder::new().capacity(CAP).spin(c.spin);
    let start = Start::new()?;
    let mut merge: Merge<Receiver<u64>> = Merge::new()?.budget(c.chunk);
    // The producer behind each key, by the key's place here.
    let mut keys: Vec<Key> = Vec::with_capacity(FAN_IN);
    let peers = producers("fan-in-fdring", c, &start, |_| {
        let (tx, rx) = builder.build::<u64>()?;
        keys.push(merge.add(rx)?);
        Ok((vec![tx.into_fds()?], vec![]))
    })?;
    crowd(peers, |gate| merge_side(merge, &keys, c, start, gate))
}

fn merge_side(
    mut merge: Merge<Receiver<u64>>,
    keys: &[Key],
    c: &Cfg,
    start: Start,
    gate: Gate,
) -> Res<Run> {
    let producer = |key: Key| keys.iter().position(|&k| k == key);
    let mut tally = Tally::new(c);
    let before = gate.open();
    start.fire();
    while !tally.done() {
        let mut stranger = None;
        let got = merge.recv_with(|key, items: &[u64]| {
            match producer(key) {
                Some(k) => tally.take(k, items),
                None => stranger = Some(key),
            }
            items.len()
        });
        if let Some(key) = stranger {
            return Err(format!("items from a source never added: {key:?}").into());
        }
        match got {
            Ok(Next::Ready(..) | Next::Joined(_)) => {}
            // A producer that sent all its items may close before the
            // others are done.
            Ok(Next::Ended(key, fdring::Error::Disconnected)) => {
                tally.ended(producer(key).ok_or("an unknown source ended")?)?
            }
            Ok(Next::Ended(key, e)) => return Err(format!("source {key:?}: {e}").into()),
            Ok(Next::Refused(e)) => return Err(e.into()),
            Err(e) => return Err(format!("after {} items: {e}", tally.received).into()),
        }
    }
    Run::side(tally.ok(), before, [0, 0])
}

/// `unix+mio`: eight `UnixStream`s, 64 KiB writes; one consumer thread
/// reads them through one `mio::Poll`, edge-triggered: 64 KiB per stream
/// per turn, until it would block.
pub fn unix_fan_in(c: &Cfg) -> Res<Run> {
    let start = Start::new()?;
    let mut streams = Vec::with_capacity(FAN_IN);
    let peers = producers("fan-in-io", c, &start, |_| {
        let (mine, theirs) = stream_pair()?;
        streams.push(mine);
        Ok((vec![], vec![theirs.into()]))
    })?;
    crowd(peers, |gate| sockets_side(streams, c, start, gate))
}

fn sockets_side(
    mut streams: Vec<mio::net::UnixStream>,
    c: &Cfg,
    start: Start,
    gate: Gate,
) -> Res<Run> {
    let mut io_poll = Poll::new()?;
    for (k, stream) in streams.iter_mut().enumerate() {
        io_poll
            .registry()
            .register(stream, Token(k), Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(FAN_IN);
    let mut words: Vec<Words> = (0..FAN_IN).map(|_| Words::new(c.chunk)).collect();
    let mut ended = [false; FAN_IN];
    let mut turns = Turns::all(FAN_IN);
    let mut tally = Tally::new(c);
    let before = gate.open();
    start.fire();
    while !tally.done() {
        let timeout = (!turns.is_empty()).then_some(std::time::Duration::ZERO);
        poll(&mut io_poll, &mut events, timeout)?;
        for event in &events {
            if !ended[event.token().0] {
                turns.push(event.token().0);
            }
        }
        for _ in 0..turns.len() {
            let Some(k) = turns.pop() else { break };
            match words[k].read_from(&mut streams[k]) {
                Ok(0) => {
                    ended[k] = true;
                    if !words[k].is_empty() {
                        return Err(format!("producer {k} ended inside a word").into());
                    }
                    tally.ended(k)?;
                }
                Ok(_) => {
                    tally.take(k, words[k].words());
                    words[k].consume();
                    turns.push(k);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => turns.push(k),
                Err(e) => return Err(format!("producer {k}: {e}").into()),
            }
        }
    }
    Run::side(tally.ok(), before, [0, 0])
}
