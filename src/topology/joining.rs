//! `Joining`: a merge's listener and the connections it accepted that have
//! not yet offered their ring, each waited for without blocking the merge
//! and for at most the join timeout.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::poller::Poller;
use super::table::INTERNAL;
use super::Key;
use crate::error::Error;
use crate::service::{Connection, Listener};

/// The poller key of the listener; a pending connection's is
/// `INTERNAL | id` with `id >= 1`.
pub(super) const LISTENER: u64 = INTERNAL;

/// What turns an accepted connection into a source: given the key the
/// source will have.
pub(super) type Open<R> = Box<dyn FnMut(Key, &mut Connection) -> Result<R, Error> + Send>;

pub(super) struct Joining<R> {
    pub(super) listener: Listener,
    open: Open<R>,
    pending: Vec<Pending>,
    next_id: u64,
    pub(super) timeout: Duration,
}

struct Pending {
    id: u64,
    connection: Connection,
    deadline: Instant,
}

/// What became of a connection.
pub(super) enum Joined<R> {
    /// Its ring, opened: to be added under the key given to `open`.
    Source(R),
    Refused(Error),
}

impl<R> Joining<R> {
    pub(super) fn new(
        listener: Listener,
        open: Open<R>,
        timeout: Duration,
        poller: &Poller,
    ) -> Result<Joining<R>, Error> {
        poller.add(listener.as_fd(), LISTENER)?;
        Ok(Joining {
            listener,
            open,
            pending: Vec::new(),
            next_id: 1,
            timeout,
        })
    }

    /// Accepts every waiting client; a refused one is reported to
    /// `refused` (it was told, and got nothing). Reads nothing from them:
    /// each waits in the poller for its offer.
    pub(super) fn accept(
        &mut self,
        poller: &Poller,
        mut refused: impl FnMut(Error),
    ) -> Result<(), Error> {
        loop {
            match self.listener.try_accept() {
                Ok(Some(connection)) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    // An offer already there is reported at once: an
                    // edge-triggered registration of a ready fd is an event.
                    poller.add(connection.as_fd(), INTERNAL | id)?;
                    self.pending.push(Pending {
                        id,
                        connection,
                        deadline: Instant::now() + self.timeout,
                    });
                }
                Ok(None) => return Ok(()),
                Err(e @ Error::Rejected(_)) => refused(e),
                Err(e) => return Err(e),
            }
        }
    }

    /// The pending connection `poller_key` spoke (or hung up): opens its
    /// ring with at most the rest of its join timeout to finish. `None`
    /// if it is not pending (any more).
    pub(super) fn open(&mut self, poller_key: u64, key: Key, poller: &Poller) -> Option<Joined<R>> {
        let id = poller_key & !INTERNAL;
        let at = self.pending.iter().position(|p| p.id == id)?;
        let mut pending = self.pending.swap_remove(at);
        poller.remove(pending.connection.as_fd());
        let left = pending.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Some(Joined::Refused(Error::Timeout));
        }
        let opened = pending
            .connection
            .set_timeout(left)
            .and_then(|()| (self.open)(key, &mut pending.connection));
        Some(match opened {
            Ok(source) => Joined::Source(source),
            Err(e) => Joined::Refused(e),
        })
    }

    /// Drops the pending connections whose join timeout ran out, reporting
    /// each to `refused`.
    pub(super) fn expire(&mut self, now: Instant, poller: &Poller, mut refused: impl FnMut(Error)) {
        self.pending.retain(|p| {
            if p.deadline > now {
                return true;
            }
            poller.remove(p.connection.as_fd());
            refused(Error::Timeout);
            false
        });
    }

    /// When the next pending connection times out.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    pub(super) fn into_listener(self, poller: &Poller) -> Listener {
        for pending in &self.pending {
            poller.remove(pending.connection.as_fd());
        }
        poller.remove(self.listener.as_fd());
        self.listener
    }
}
