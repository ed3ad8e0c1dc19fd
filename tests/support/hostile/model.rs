//! What the honest end may know from what the peer did, and the checks of
//! its answers against that: which results it must, may or must not give.
//! Knows nothing of fds or of the mapping: the peer
//! ([`World`](super::world::World)) tells it what it did.

use std::collections::BTreeSet;

use fdring::{Corruption, Error};

use super::{Options, INDEX_LIMIT};

// ---- the honest end's view, checked ----------------------------------------

/// Whether a pair of indices is one the crate must accept.
pub(super) fn legal(write: u64, read: u64, cap: u64) -> bool {
    read <= write && write - read <= cap && write <= INDEX_LIMIT
}

/// A corruption the honest end may have recorded without reporting it yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pending {
    None,
    /// The next call that looks at the ring must report a corruption.
    Some,
    /// The next call that looks at the ring may report a corruption.
    Maybe,
}

/// What the honest end may know, from what the peer did.
pub(super) struct Model {
    pub(super) sender: bool,
    pub(super) cap: u64,
    /// The honest end's own index: what it published or consumed.
    pub(super) mine: u64,
    /// Every value the peer's index had when the honest end could load it.
    pub(super) seen: BTreeSet<u64>,
    /// The corruption reported, sticky from then on.
    pub(super) stuck: Option<Corruption>,
    pub(super) pending: Pending,
    /// The liveness fd says the peer is gone (the end may not know yet).
    pub(super) liveness_dead: bool,
    /// The honest end's socket is hung up: every copy of the peer's end is
    /// closed, or the peer shut down its sending side, or the honest
    /// side's receiving side through its dup (the end may not know yet).
    pub(super) hung_up: bool,
    /// A `prepare_wait` on a corrupted end may have replaced its recorded
    /// corruption (see [`Options::prepare_wait_sticky`]).
    pub(super) restuck: bool,
    pub(super) options: Options,
}

impl Model {
    /// Whether the honest end may know the peer is gone, and must find
    /// out when it waits.
    pub(super) fn gone(&self) -> bool {
        self.liveness_dead || self.hung_up
    }

    fn check_payload(&self, c: Corruption, what: &str) {
        match c {
            Corruption::IndexOutOfRange {
                write,
                read,
                capacity,
            } => {
                assert_eq!(capacity, self.cap, "{what}: {c:?}");
                let (mine, peer) = if self.sender {
                    (write, read)
                } else {
                    (read, write)
                };
                assert_eq!(mine, self.mine, "{what}: not my index in {c:?}");
                assert!(
                    self.seen.contains(&peer),
                    "{what}: the peer never stored the index in {c:?}"
                );
                assert!(
                    !legal(write, read, self.cap),
                    "{what}: legal indices reported as corrupt: {c:?}"
                );
            }
            Corruption::IndexWentBack { before, now } => {
                assert!(
                    self.seen.contains(&before) && self.seen.contains(&now) && now < before,
                    "{what}: {c:?} is not what the peer stored"
                );
            }
            other => panic!("{what}: unknown corruption {other:?}"),
        }
    }

    /// Checks an answer that is not an error, from a call that looked.
    pub(super) fn check_ok(&mut self, what: &str) {
        assert!(
            self.stuck.is_none(),
            "{what}: answered Ok after {:?}",
            self.stuck
        );
        assert!(
            !matches!(self.pending, Pending::Some),
            "{what}: answered Ok on a ring with an invalid index ({:?})",
            self.pending
        );
        self.pending = Pending::None;
    }

    /// Checks an error from a call that looked at the ring. Returns the
    /// error back if it is one the caller must check further (`Full`,
    /// `Empty`, `Timeout`, `Disconnected`, `Io`).
    pub(super) fn check_err(&mut self, e: Error, what: &str) -> Option<Error> {
        let corrupted = self.stuck.is_some() || matches!(self.pending, Pending::Some);
        if corrupted
            && e == Error::Disconnected
            && self.sender
            && self.gone()
            && !self.options.corrupted_before_gone
        {
            // Known (see `Options::corrupted_before_gone`).
            return None;
        }
        if let Some(c) = self.stuck {
            match e {
                Error::Corrupted(now) if self.restuck && now != c => {
                    self.check_payload(now, what);
                    self.stuck = Some(now);
                }
                e => assert_eq!(e, Error::Corrupted(c), "{what}: corruption not sticky"),
            }
            self.restuck = false;
            return None;
        }
        match e {
            Error::Corrupted(c) => {
                self.restuck = false;
                self.check_payload(c, what);
                self.stuck = Some(c);
                self.pending = Pending::None;
                None
            }
            other => {
                assert!(
                    !matches!(self.pending, Pending::Some),
                    "{what}: {other:?} on a ring with an invalid index ({:?})",
                    self.pending
                );
                self.pending = Pending::None;
                Some(other)
            }
        }
    }
}
