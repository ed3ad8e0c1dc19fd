//! One run once the fds are made: the honest end opened (or refused), then
//! its calls interleaved with the peer's actions, each answer checked
//! against the [`Model`] and the shared memory.

use std::collections::BTreeSet;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fdring::{Builder, Error, Exhaustion, Liveness, Receiver, Rejection, Sender};
use rustix::event::PollFlags;

use super::model::{legal, Model, Pending};
use super::script::{Item, Script};
use super::setup::{Built, Expect};
use super::world::{ready, World};
use super::INDEX_LIMIT;
use super::{tracing, Options, Raw, MAX_OPS, SLACK, WAIT_BUDGET};

// ---- the sessions ----------------------------------------------------------

pub(super) fn session<T: Item>(
    s: &mut Script,
    builder: &Builder,
    built: Built,
    expect: &Expect,
    receiver: bool,
    options: Options,
) {
    let Built {
        fds,
        indices,
        memfd_dup,
        peer,
        hung_up,
        liveness,
        liveness_end,
        liveness_dead,
    } = built;
    // A header valid up to its indices is refused for indices out of range.
    let expect = &match indices {
        Some([write, read, capacity]) if expect.header_valid() && !legal(write, read, capacity) => {
            Expect::BadIndices {
                write,
                read,
                capacity,
            }
        }
        _ => expect.clone(),
    };
    let fds = match fds {
        Ok(fds) => fds,
        Err(e) => {
            check_open::<()>(Err(e), expect);
            return;
        }
    };
    let opened = if receiver {
        check_open(builder.open_receiver::<T>(fds), expect).map(End::Receiver)
    } else {
        check_open(builder.open_sender::<T>(fds), expect).map(End::Sender)
    };
    let Some(mut end) = opened else {
        return;
    };
    if let Some(liveness) = liveness {
        end.watch_peer(liveness);
    }
    let raw = Raw::map(&memfd_dup);
    drop(memfd_dup);
    assert_eq!(
        raw.item_size,
        size_of::<T>(),
        "opened with another item size"
    );
    assert_eq!(
        raw.capacity,
        end.capacity(),
        "capacity() is not the header's"
    );
    let mut world = World {
        m: Model {
            sender: !receiver,
            cap: raw.capacity,
            mine: 0,
            seen: BTreeSet::new(),
            stuck: None,
            pending: Pending::None,
            liveness_dead,
            hung_up,
            restuck: false,
            options,
        },
        raw,
        wake: peer,
        liveness_end,
        wait_budget: WAIT_BUDGET,
        options,
    };
    world.opened();
    let mut end = Some(end);
    let mut seq = 0u64;
    for _ in 0..MAX_OPS {
        if s.done() {
            break;
        }
        let Some(e) = end.as_mut() else {
            break;
        };
        let op = s.below(24);
        if op >= 12 {
            world.act(s, op - 12, false);
            continue;
        }
        trace!("call {op}");
        let start = Instant::now();
        let mut limit = Duration::ZERO;
        if op == 9 {
            end = world.reopen(end.take().expect("an end"), builder);
        } else {
            match e {
                End::Sender(tx) => limit = world.sender_op(s, tx, op, &mut seq),
                End::Receiver(rx) => limit = world.receiver_op(s, rx, op),
            }
        }
        let took = start.elapsed();
        assert!(
            took <= limit + SLACK,
            "op {op} took {took:?} with a timeout of {limit:?}: hung"
        );
        world.check_flags("a call");
    }
    if let Some(end) = end {
        drop(end);
        let closed = world.raw.u32_at(world.own_closed_offset());
        assert_eq!(
            closed.load(Ordering::Acquire),
            1,
            "a dropped end did not store its closed word"
        );
    }
}

/// Checks the result of opening against what the script calls for.
fn check_open<E>(result: Result<E, Error>, expect: &Expect) -> Option<E> {
    match (result, expect) {
        (Ok(end), Expect::Open | Expect::OpenOrRejected) => Some(end),
        (Ok(_), Expect::Refuse(why, _)) => panic!("opened a ring that must be refused: {why}"),
        (Ok(_), Expect::NotWakeSocket(found)) => {
            panic!("opened a ring whose wake-up fd is {found}")
        }
        (Ok(_), Expect::ForeignWake) => panic!("opened a ring with another ring's wake-up socket"),
        (Ok(_), Expect::WrongRole) => panic!("opened a ring with its other end's wake-up socket"),
        (Ok(_), Expect::BadIndices { .. }) => {
            panic!("opened a ring whose indices are out of range")
        }
        (Err(e), Expect::ForeignWake) => {
            assert!(
                matches!(e, Error::Rejected(Rejection::ForeignWakeSocket { .. })),
                "another ring's wake-up socket: refused with the wrong error {e:?}"
            );
            None
        }
        (Err(e), Expect::WrongRole) => {
            assert!(
                matches!(e, Error::Rejected(Rejection::WrongRole { .. })),
                "the other end's wake-up socket: refused with the wrong error {e:?}"
            );
            None
        }
        (
            Err(e),
            &Expect::BadIndices {
                write,
                read,
                capacity,
            },
        ) => {
            assert_eq!(
                e,
                Error::Rejected(Rejection::BadIndices {
                    write,
                    read,
                    capacity
                }),
                "indices out of range: refused with the wrong error"
            );
            None
        }
        (Err(e), Expect::Open) => panic!("a valid ring was refused: {e:?}"),
        (Err(e), Expect::Refuse(why, ok)) => {
            assert!(ok(&e), "{why}: refused with the wrong error {e:?}");
            None
        }
        (Err(e), Expect::NotWakeSocket(found)) => {
            assert_eq!(
                e,
                Error::Rejected(Rejection::NotWakeSocket { found }),
                "a wake-up fd that is {found}: refused with the wrong error"
            );
            None
        }
        (Err(e), Expect::OpenOrRejected) => {
            assert!(
                matches!(e, Error::Rejected(_)),
                "a scribbled header gave {e:?}, not a rejection"
            );
            None
        }
    }
}

enum End<T: Item> {
    Sender(Sender<T>),
    Receiver(Receiver<T>),
}

impl<T: Item> End<T> {
    fn capacity(&self) -> u64 {
        match self {
            End::Sender(tx) => tx.capacity() as u64,
            End::Receiver(rx) => rx.capacity() as u64,
        }
    }

    fn watch_peer(&mut self, liveness: Liveness) {
        match self {
            End::Sender(tx) => tx.watch_peer(liveness),
            End::Receiver(rx) => rx.watch_peer(liveness),
        }
    }
}

/// How many of the `len` items lent a closure takes.
fn pick(k: u8, len: usize) -> usize {
    match k % 4 {
        0 => len,
        1 => 1,
        2 => 0,
        _ => usize::from(k) * 37 % (len + 1),
    }
}

impl World {
    /// Learns the state an end starts from, just after it was opened.
    fn opened(&mut self) {
        self.m.mine = self.own_index().load(Ordering::Acquire);
        let peer = self.note();
        let (write, read) = if self.m.sender {
            (self.m.mine, peer)
        } else {
            (peer, self.m.mine)
        };
        // An opener refuses indices out of range (docs/format.md, section
        // 6), and nothing runs between the open and this look.
        assert!(
            legal(write, read, self.m.cap),
            "opened with indices out of range: write {write}, read {read}, capacity {}",
            self.m.cap
        );
        self.m.stuck = None;
        self.m.pending = Pending::None;
    }

    /// Hands the end's fds on and opens the same side again from them.
    fn reopen<T: Item>(&mut self, end: End<T>, builder: &Builder) -> Option<End<T>> {
        let fds = match end {
            End::Sender(tx) => tx.into_fds(),
            End::Receiver(rx) => rx.into_fds(),
        };
        let fds = match fds {
            Ok(fds) => fds,
            Err(e) => {
                assert!(matches!(e, Error::Io { .. }), "into_fds gave {e:?}");
                return None;
            }
        };
        let reopened = if self.m.sender {
            builder.open_sender::<T>(fds).map(End::Sender)
        } else {
            builder.open_receiver::<T>(fds).map(End::Receiver)
        };
        match reopened {
            Ok(end) => {
                // The liveness went with the old end: the peer's end of it
                // means nothing any more. The socket came along, hung up or
                // not.
                self.m.liveness_dead = false;
                self.liveness_end = None;
                self.opened();
                Some(end)
            }
            Err(e) => {
                assert!(
                    matches!(e, Error::Rejected(_)),
                    "reopening gave {e:?}, not a rejection"
                );
                None
            }
        }
    }

    /// Checks a lent run of `len` free slots at the sender's index.
    fn check_lent_sender(&self, len: usize) {
        let len = len as u64;
        assert!(
            (1..=self.m.cap).contains(&len),
            "lent {len} slots of {}",
            self.m.cap
        );
        assert!(
            self.m.mine + len <= INDEX_LIMIT,
            "lent {len} slots at write {}: past the index limit",
            self.m.mine
        );
        let implied = i128::from(self.m.mine) + i128::from(len) - i128::from(self.m.cap);
        // Every free slot, or, near the index limit, every slot up to it.
        let up_to_the_limit = self.m.mine + len == INDEX_LIMIT
            && self
                .m
                .seen
                .iter()
                .any(|&r| i128::from(r) >= implied && r <= self.m.mine);
        assert!(
            u64::try_from(implied).is_ok_and(|r| self.m.seen.contains(&r)) || up_to_the_limit,
            "lent {len} slots at write {}: the peer never stored read index {implied}",
            self.m.mine
        );
    }

    /// Checks a lent run of items at the receiver's index, and that they
    /// are the bytes in their slots.
    fn check_lent_receiver<T: Item>(&self, items: &[T]) {
        let len = items.len() as u64;
        assert!(
            (1..=self.m.cap).contains(&len),
            "lent {len} items of {}",
            self.m.cap
        );
        assert!(
            self.m
                .mine
                .checked_add(len)
                .is_some_and(|w| self.m.seen.contains(&w)),
            "lent {len} items at read {}: the peer never stored that write index",
            self.m.mine
        );
        self.check_slots(items, self.m.mine);
    }

    /// Checks that `items` are the bytes in the slots from index `first`.
    fn check_slots<T: Item>(&self, items: &[T], first: u64) {
        let expected: &[u8] = bytemuck::cast_slice(items);
        let mut slots = vec![0u8; expected.len()];
        self.raw.read_data(self.raw.slot_offset(first), &mut slots);
        if slots != expected {
            let size = size_of::<T>();
            let bad = (0..items.len())
                .find(|i| slots[i * size..][..size] != expected[i * size..][..size])
                .expect("a differing item");
            panic!("item {bad} of {} is not the bytes in its slot", items.len());
        }
    }

    /// After the honest end published or released `n > 0` slots: its index
    /// is in the header, and the peer was woken if and only if armed (and
    /// then its end of the pair has something to read, unless it closed
    /// every copy: the wake-up byte, or what the peer queued itself, or a
    /// shutdown).
    fn committed(&mut self, n: usize, armed: u32, writes_before: u64, writes_after: u64) {
        trace!("  committed {n} (peer armed: {armed})");
        self.m.mine += n as u64;
        assert_eq!(
            self.own_index().load(Ordering::Acquire),
            self.m.mine,
            "the header does not hold the index just stored"
        );
        if armed != 0 {
            assert_eq!(self.peer_armed(), 0, "an armed peer was not disarmed");
            assert_eq!(
                writes_after,
                writes_before + 1,
                "an armed peer was not woken"
            );
            if let Some(end) = self.wake.ends.first() {
                assert!(
                    ready(end.as_fd(), PollFlags::IN),
                    "an armed peer was woken, but its socket end has nothing to read"
                );
            }
        } else {
            assert_eq!(writes_after, writes_before, "an unarmed peer was woken");
        }
    }

    /// A sender's "would block": the ring is full by the current indices.
    fn check_full(&self, what: &str) {
        let read = self.peer_index().load(Ordering::Acquire);
        assert_eq!(
            self.m.mine.checked_sub(read),
            Some(self.m.cap),
            "{what} at write {} with read {read}",
            self.m.mine
        );
        assert!(!self.peer_closed(), "{what} though the receiver closed");
    }

    /// A receiver's "would block": no item by the current indices.
    fn check_empty(&self, what: &str) {
        let write = self.peer_index().load(Ordering::Acquire);
        assert_eq!(
            write, self.m.mine,
            "{what} at read {} with write {write}",
            self.m.mine
        );
        assert!(!self.peer_closed(), "{what} though the sender closed");
    }

    fn check_disconnected(&self, what: &str) {
        assert!(
            self.peer_closed() || self.m.gone(),
            "{what}: Disconnected though the peer is neither closed nor gone"
        );
        if !self.m.sender {
            let write = self.peer_index().load(Ordering::Acquire);
            assert_eq!(
                write, self.m.mine,
                "{what}: Disconnected before the last item"
            );
        }
    }

    /// Checks the error of a call; `would_block` is what it may say when
    /// there is nothing to do, `io` whether it makes system calls that may
    /// fail.
    fn check_call_err(&mut self, e: Error, what: &str, would_block: Error, io: bool) {
        trace!("  {what}: {e:?}");
        let Some(e) = self.m.check_err(e, what) else {
            return;
        };
        match e {
            Error::Disconnected => self.check_disconnected(what),
            Error::Timeout if self.m.gone() => panic!(
                "{what}: Timeout though the peer is gone (socket hung up: {}, liveness fired: \
                 {}): a wait must see that and answer Disconnected",
                self.m.hung_up, self.m.liveness_dead
            ),
            Error::Io { .. } if io => {}
            Error::Exhausted(Exhaustion::Indices { index }) if self.m.sender => {
                assert_eq!(index, self.m.mine, "{what}: not my index");
                assert_eq!(
                    index, INDEX_LIMIT,
                    "{what}: exhausted before the index limit"
                );
            }
            e if e == would_block && self.m.sender => self.check_full(what),
            e if e == would_block => self.check_empty(what),
            other => panic!("{what}: unexpected {other:?}"),
        }
    }

    /// `len`, `slots`, `is_full` or `is_empty`: a snapshot that is never
    /// an error and changes nothing the model knows. The fill level by
    /// the current indices if they are legal; otherwise some level from 0
    /// to the capacity (the answer is clamped), and the corruption is left
    /// for the next call that uses the ring.
    fn check_len(&mut self, len: usize, what: &str) {
        let peer = self.peer_index().load(Ordering::Acquire);
        match self.fill() {
            Some(fill) => assert_eq!(
                fill, len as u64,
                "{what}: {len} with mine {} and the peer's {peer}",
                self.m.mine,
            ),
            None => assert!(
                len as u64 <= self.m.cap,
                "{what}: {len} is beyond the capacity {} (mine {}, the peer's {peer})",
                self.m.cap,
                self.m.mine,
            ),
        }
    }

    /// `quiet` says whether the honest end's socket had nothing queued
    /// before the call (so its drain found it empty and it armed).
    fn check_prepare_wait(&mut self, result: Result<bool, Error>, quiet: bool, what: &str) {
        trace!("  {what}: {result:?} (nothing queued before: {quiet})");
        let corrupted = self.m.stuck.is_some() || matches!(self.m.pending, Pending::Some);
        if corrupted && !self.options.prepare_wait_sticky && result.is_ok() {
            // Known (see `Options::prepare_wait_sticky`): any answer, and
            // the next error may name another (valid) corruption.
            self.m.restuck = true;
            return;
        }
        match result {
            Ok(true) => {
                assert!(
                    self.m.stuck.is_none(),
                    "{what}: may wait on a ring known corrupted ({:?})",
                    self.m.stuck
                );
                assert!(
                    !matches!(self.m.pending, Pending::Some),
                    "{what}: may wait on a ring with an invalid index ({:?})",
                    self.m.pending
                );
                assert!(
                    !self.peer_closed(),
                    "{what}: may wait though the peer closed"
                );
                assert!(
                    !self.m.gone(),
                    "{what}: may wait though the peer is gone (socket hung up: {}, liveness \
                     fired: {})",
                    self.m.hung_up,
                    self.m.liveness_dead
                );
                assert_eq!(self.own_armed(), 1, "{what}: may wait unarmed");
                if self.m.sender {
                    self.check_full(what);
                } else {
                    self.check_empty(what);
                }
            }
            Ok(false) => {
                // Unless the peer is closed or gone, or wake-ups were queued
                // (a flood may be left partly undrained, and then it says
                // "retry" without arming), it armed and so looked at the
                // peer's index: it may have found it bad.
                let looked = !self.peer_closed() && !self.m.gone() && quiet;
                if looked && self.m.stuck.is_none() && self.m.pending == Pending::None {
                    self.m.pending = if self.fill().is_none() {
                        Pending::Some
                    } else {
                        Pending::Maybe
                    };
                }
            }
            Err(e) => assert!(matches!(e, Error::Io { .. }), "{what}: {e:?}"),
        }
    }

    fn sender_op<T: Item>(
        &mut self,
        s: &mut Script,
        tx: &mut Sender<T>,
        op: usize,
        seq: &mut u64,
    ) -> Duration {
        let armed = self.peer_armed();
        let writes = tx.stats().wakeups;
        let mut limit = Duration::ZERO;
        match op {
            0 | 10 => {
                let item = T::seq(*seq);
                match tx.try_send(item) {
                    Ok(()) => self.sent(tx, &[item], seq, armed, writes, "try_send"),
                    Err(e) => self.check_call_err(e, "try_send", Error::Full, false),
                }
            }
            3 => {
                limit = self.timeout(s);
                let item = T::seq(*seq);
                match tx.send_timeout(item, limit) {
                    Ok(()) => self.sent(tx, &[item], seq, armed, writes, "send_timeout"),
                    Err(e) => self.check_call_err(e, "send_timeout", Error::Timeout, true),
                }
            }
            1 | 4 | 11 => {
                let k = s.byte();
                let act = op == 11 || k & 0x80 != 0;
                if op == 4 {
                    limit = self.timeout(s);
                }
                let mut lent = None;
                let mut armed_at_commit = armed;
                let first = *seq;
                let mut fill = |slots: &mut [MaybeUninit<T>]| {
                    self.check_lent_sender(slots.len());
                    // Touch every slot lent: one out of bounds would fault.
                    for slot in slots.iter_mut() {
                        slot.write(T::seq(u64::MAX));
                    }
                    let n = pick(k, slots.len());
                    for (i, slot) in slots[..n].iter_mut().enumerate() {
                        slot.write(T::seq(first + i as u64));
                    }
                    if act {
                        let action = s.below(12);
                        self.act(s, action, true);
                    }
                    armed_at_commit = self.peer_armed();
                    lent = Some(slots.len());
                    n
                };
                let (result, what) = if op == 4 {
                    (tx.send_with_timeout(limit, &mut fill), "send_with_timeout")
                } else {
                    (tx.try_send_with(&mut fill), "try_send_with")
                };
                match result {
                    Ok(n) => {
                        let lent = lent.expect("Ok without calling the closure");
                        assert_eq!(n, pick(k, lent), "{what}: not the count the closure gave");
                        let items: Vec<T> = (first..first + n as u64).map(T::seq).collect();
                        self.sent(tx, &items, seq, armed_at_commit, writes, what);
                    }
                    Err(e) => {
                        assert!(lent.is_none(), "{what}: lent slots, then failed");
                        let block = if op == 4 { Error::Timeout } else { Error::Full };
                        self.check_call_err(e, what, block, op == 4);
                    }
                }
            }
            2 => {
                let n = match s.below(4) {
                    0 => 0,
                    1 => usize::from(s.byte()),
                    2 => self.m.cap as usize,
                    _ => self.m.cap as usize + 1,
                };
                let items: Vec<T> = (*seq..*seq + n as u64).map(T::seq).collect();
                match tx.try_send_slice(&items) {
                    Ok(0) if n == 0 => {}
                    Ok(sent) => {
                        assert!((1..=n).contains(&sent), "try_send_slice: {sent} of {n}");
                        if sent < n {
                            self.check_lent_sender(sent);
                        }
                        self.sent(tx, &items[..sent], seq, armed, writes, "try_send_slice");
                    }
                    Err(e) => {
                        assert!(n > 0, "try_send_slice of nothing gave {e:?}");
                        self.check_call_err(e, "try_send_slice", Error::Full, false);
                    }
                }
            }
            5 => {
                let len = tx.len();
                self.check_len(len, "len");
                let slots = tx.slots();
                let cap = self.m.cap as usize;
                self.check_len(
                    if self.m.sender {
                        cap - slots.min(cap)
                    } else {
                        slots
                    },
                    "slots",
                );
            }
            6 => {
                let full = tx.is_full();
                let cap = self.m.cap as usize;
                self.check_len(if full { cap } else { self.fill_or(cap) }, "is_full");
            }
            7 => {
                let empty = tx.is_empty();
                self.check_len(if empty { 0 } else { self.fill_or(0) }, "is_empty");
            }
            _ => {
                let quiet = self.honest_queue_empty();
                let r = tx.prepare_wait();
                self.check_prepare_wait(r, quiet, "prepare_wait");
            }
        }
        limit
    }

    /// For `is_full`/`is_empty`: the fill level if it is not `avoid`, so
    /// that `check_len` compares the answer with the truth.
    fn fill_or(&self, avoid: usize) -> usize {
        match self.fill() {
            Some(f) if f as usize != avoid => f as usize,
            // The answer said "not `avoid`" though it is: report a level
            // that cannot match.
            Some(_) => usize::MAX,
            // Illegal indices: either answer is a clamped snapshot.
            None => 0,
        }
    }

    fn sent<T: Item>(
        &mut self,
        tx: &Sender<T>,
        items: &[T],
        seq: &mut u64,
        armed: u32,
        writes: u64,
        what: &str,
    ) {
        self.m.check_ok(what);
        *seq += items.len() as u64;
        if items.is_empty() {
            return;
        }
        self.check_slots(items, self.m.mine);
        self.committed(items.len(), armed, writes, tx.stats().wakeups);
    }

    fn receiver_op<T: Item>(
        &mut self,
        s: &mut Script,
        rx: &mut Receiver<T>,
        op: usize,
    ) -> Duration {
        let armed = self.peer_armed();
        let writes = rx.stats().wakeups;
        let mut limit = Duration::ZERO;
        match op {
            0 | 3 | 10 => {
                let result = if op == 3 {
                    limit = self.timeout(s);
                    rx.recv_timeout(limit)
                } else {
                    rx.try_recv()
                };
                let what = if op == 3 { "recv_timeout" } else { "try_recv" };
                match result {
                    Ok(item) => self.received(rx, &[item], armed, writes, what),
                    Err(e) => {
                        let block = if op == 3 {
                            Error::Timeout
                        } else {
                            Error::Empty
                        };
                        self.check_call_err(e, what, block, op == 3);
                    }
                }
            }
            1 | 4 | 11 => {
                let k = s.byte();
                let act = op == 11 || k & 0x80 != 0;
                if op == 4 {
                    limit = self.timeout(s);
                }
                let mut lent = None;
                let mut armed_at_commit = armed;
                let mut consume = |items: &[T]| {
                    self.check_lent_receiver(items);
                    let n = pick(k, items.len());
                    if act {
                        let action = s.below(12);
                        self.act(s, action, true);
                    }
                    armed_at_commit = self.peer_armed();
                    lent = Some(items.len());
                    n
                };
                let (result, what) = if op == 4 {
                    (
                        rx.recv_with_timeout(limit, &mut consume),
                        "recv_with_timeout",
                    )
                } else {
                    (rx.try_recv_with(&mut consume), "try_recv_with")
                };
                match result {
                    Ok(n) => {
                        let lent = lent.expect("Ok without calling the closure");
                        assert_eq!(n, pick(k, lent), "{what}: not the count the closure gave");
                        self.m.check_ok(what);
                        if n > 0 {
                            let after = rx.stats().wakeups;
                            self.committed(n, armed_at_commit, writes, after);
                        }
                    }
                    Err(e) => {
                        assert!(lent.is_none(), "{what}: lent items, then failed");
                        let block = if op == 4 {
                            Error::Timeout
                        } else {
                            Error::Empty
                        };
                        self.check_call_err(e, what, block, op == 4);
                    }
                }
            }
            2 => {
                let n = match s.below(4) {
                    0 => 0,
                    1 => usize::from(s.byte()),
                    2 => self.m.cap as usize,
                    _ => self.m.cap as usize + 1,
                };
                let mut buf = vec![T::seq(u64::MAX); n];
                match rx.try_recv_slice(&mut buf) {
                    Ok(0) if n == 0 => {}
                    Ok(got) => {
                        assert!((1..=n).contains(&got), "try_recv_slice: {got} of {n}");
                        if got < n {
                            assert!(
                                self.m.seen.contains(&(self.m.mine + got as u64)),
                                "try_recv_slice: {got} items by no stored write index"
                            );
                        }
                        self.received(rx, &buf[..got], armed, writes, "try_recv_slice");
                    }
                    Err(e) => {
                        assert!(n > 0, "try_recv_slice of nothing gave {e:?}");
                        self.check_call_err(e, "try_recv_slice", Error::Empty, false);
                    }
                }
            }
            5 => {
                let len = rx.len();
                self.check_len(len, "len");
                let slots = rx.slots();
                let cap = self.m.cap as usize;
                self.check_len(
                    if self.m.sender {
                        cap - slots.min(cap)
                    } else {
                        slots
                    },
                    "slots",
                );
            }
            6 => {
                let full = rx.is_full();
                let cap = self.m.cap as usize;
                self.check_len(if full { cap } else { self.fill_or(cap) }, "is_full");
            }
            7 => {
                let empty = rx.is_empty();
                self.check_len(if empty { 0 } else { self.fill_or(0) }, "is_empty");
            }
            _ => {
                let quiet = self.honest_queue_empty();
                let r = rx.prepare_wait();
                self.check_prepare_wait(r, quiet, "prepare_wait");
            }
        }
        limit
    }

    fn received<T: Item>(
        &mut self,
        rx: &Receiver<T>,
        items: &[T],
        armed: u32,
        writes: u64,
        what: &str,
    ) {
        self.m.check_ok(what);
        if items.is_empty() {
            return;
        }
        assert!(
            self.m
                .mine
                .checked_add(items.len() as u64)
                .is_some_and(|w| w <= *self.m.seen.last().expect("seen")),
            "{what}: received past every write index the peer stored"
        );
        self.check_slots(items, self.m.mine);
        self.committed(items.len(), armed, writes, rx.stats().wakeups);
    }
}
