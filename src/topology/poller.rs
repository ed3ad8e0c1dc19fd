//! `Poller`: one epoll instance over every fd of a topology, each fd
//! registered with the 64-bit key of what it belongs to, edge-triggered.
//!
//! Edge-triggered, because the topologies keep their own queue of what
//! may be ready and only sleep once everything in it was armed (so an
//! event after that is news): a level-triggered registration would
//! report a peer's hang-up, or a pidfd whose process exited, on every
//! wait for ever.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::time::Timespec;

use crate::error::Error;

/// How many events one `epoll_wait` returns at most; more wait for the
/// next call (the edge is not lost: epoll keeps them).
const EVENTS: usize = 256;

/// Every fd is watched for input, a hang-up or an error, edge-triggered.
const FLAGS: EventFlags = EventFlags::IN
    .union(EventFlags::RDHUP)
    .union(EventFlags::ET);

pub(super) struct Poller {
    epoll: OwnedFd,
}

impl Poller {
    pub(super) fn new() -> Result<Poller, Error> {
        let epoll = epoll::create(CreateFlags::CLOEXEC)
            .map_err(|e| Error::io("creating the topology's epoll instance", e))?;
        Ok(Poller { epoll })
    }

    /// Watches `fd` for input, a hang-up or an error, reported as `key`.
    pub(super) fn add(&self, fd: BorrowedFd<'_>, key: u64) -> Result<(), Error> {
        epoll::add(&self.epoll, fd, EventData::new_u64(key), FLAGS)
            .map_err(|e| Error::io("adding an fd to the topology's epoll instance", e))
    }

    /// Gives back the event of `fd` (watched as `key`) that a
    /// [`harvest`](Self::harvest) took and did not act on: epoll looks at
    /// `fd` again, as when it was added, and if it is still ready queues
    /// its event and wakes whoever waits on this poller's fd (an event
    /// loop it is registered in). Nothing if it is not ready any more.
    pub(super) fn requeue(&self, fd: BorrowedFd<'_>, key: u64) -> Result<(), Error> {
        epoll::modify(&self.epoll, fd, EventData::new_u64(key), FLAGS)
            .map_err(|e| Error::io("requeuing an event of the topology's epoll instance", e))
    }

    /// Stops watching `fd`. An fd that is not watched (or already closed)
    /// is no error: the caller is forgetting it either way.
    pub(super) fn remove(&self, fd: BorrowedFd<'_>) {
        let _ = epoll::delete(&self.epoll, fd);
    }

    /// Waits until `deadline` (not at all if it is now or past, for ever
    /// if `None`) for events, and calls `ready` with the key of each.
    /// Returns how many there were.
    pub(super) fn wait(
        &mut self,
        deadline: Option<Instant>,
        mut ready: impl FnMut(u64),
    ) -> Result<usize, Error> {
        // On the stack, not kept in the poller: rustix's `Event` holds a
        // pointer-sized union, which would make every topology `!Send`.
        let mut events = [MaybeUninit::<Event>::uninit(); EVENTS];
        let events = loop {
            let timeout = deadline.map(|d| {
                let left = d.saturating_duration_since(Instant::now());
                rustix::time::Timespec {
                    tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
                    tv_nsec: left.subsec_nanos().into(),
                }
            });
            match epoll::wait(&self.epoll, &mut events, timeout.as_ref()) {
                Ok((events, _)) => break events,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(Error::io("waiting on the topology's epoll instance", e)),
            }
        };
        for event in events.iter() {
            ready(event.data.u64());
        }
        Ok(events.len())
    }

    /// If `fd` (watched under `key`) is readable now, has the poller
    /// report it again: a modified edge-triggered registration of a ready
    /// fd is an event. Returns whether it was readable.
    pub(super) fn report_again_if_ready(
        &self,
        fd: BorrowedFd<'_>,
        key: u64,
    ) -> Result<bool, Error> {
        let mut fds = [PollFd::new(&fd, PollFlags::IN | PollFlags::RDHUP)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        loop {
            match poll(&mut fds, Some(&now)) {
                Ok(0) => return Ok(false),
                Ok(_) => break,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(Error::io("polling a topology member's fd", e)),
            }
        }
        let flags = EventFlags::IN | EventFlags::RDHUP | EventFlags::ET;
        epoll::modify(&self.epoll, fd, EventData::new_u64(key), flags)
            .map_err(|e| Error::io("modifying an fd of the topology's epoll instance", e))?;
        Ok(true)
    }

    /// Collects the events that are there, without waiting.
    pub(super) fn harvest(&mut self, ready: impl FnMut(u64)) -> Result<usize, Error> {
        self.wait(Some(Instant::now()), ready)
    }
}

impl AsFd for Poller {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("epoll", &self.epoll)
            .finish()
    }
}

/// The end of the next sleep of a topology that waits until `deadline`:
/// sliced by [`crate::poll_timeout`] when this process publishes with
/// light barriers but could not register for `membarrier` (a wake-up can
/// then be lost, and the sliced sleep looks again); the bool says whether
/// the sleep was sliced.
pub(super) fn sleep_until(deadline: Option<Instant>, now: Instant) -> (Option<Instant>, bool) {
    match crate::poll_timeout().and_then(|s: Duration| now.checked_add(s)) {
        Some(slice) if deadline.map_or(true, |d| slice < d) => (Some(slice), true),
        _ => (deadline, false),
    }
}
