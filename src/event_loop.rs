//! What the event-loop adapters (`mio`, `tokio`) and the topologies
//! (`topology`) need from an end, so that one registration and one
//! readiness loop serve the item ends, the frame ends and the topologies
//! alike: the fd to watch (an end's wake-up socket, a topology's epoll
//! instance), the peer's liveness to watch next to it, and arming after
//! "would block".
//!
//! This module owns that mapping and nothing else. It knows the public
//! API of `channel`, `frame` (plus the frame sender's memory of the
//! frame it last had no room for) and `topology`; nothing of the ring or
//! the protocol.

use std::os::fd::AsFd;

use bytemuck::Pod;

use crate::topology::{Dispatch, Merge, Pool, Source};
use crate::{Error, FrameReceiver, FrameSender, Liveness, Receiver, Sender};

/// How many times an adapter retries while `arm` keeps returning
/// `Ok(false)` without the `try_` call making progress. With an honest
/// peer one retry always settles it; only a peer flooding the wake-up
/// socket gets here, and it must not keep the loop (or the task's worker)
/// from serving everything else.
pub(crate) const MAX_ATTEMPTS: u32 = 8;

/// An end an event loop serves. Its fd ([`AsFd`]) is its wake-up socket
/// (a topology's: its epoll instance).
// `pub` in a private module: the bound of the sealed `topology::Source`.
pub trait LoopEnd: AsFd {
    /// Arms the end after a `try_` call returned `Empty` or `Full`: the
    /// end's `prepare_wait`, waiting for what that call lacked. `Ok(true)`:
    /// the fd becomes readable when a retry can make progress; `Ok(false)`:
    /// retry now.
    fn arm(&mut self) -> Result<bool, Error>;

    /// Arms the end after a `try_` call returned `would_block` (`Empty` or
    /// `Full`). An end lacks one thing, so this is [`arm`](Self::arm); a
    /// [`Pool`] lacks room for jobs after `Full` and replies after
    /// `Empty`, and arms that direction only: arming both would say
    /// "retry" whenever the other direction could go on, and a send could
    /// never wait while a reply stood unreceived.
    fn arm_after(&mut self, would_block: &Error) -> Result<bool, Error> {
        let _ = would_block;
        self.arm()
    }

    /// The peer's liveness the end watches, if any: watched next to the
    /// wake-up socket.
    fn peer_liveness(&self) -> Option<&Liveness>;
}

impl<T: Pod> LoopEnd for Sender<T> {
    fn arm(&mut self) -> Result<bool, Error> {
        self.prepare_wait()
    }
    fn peer_liveness(&self) -> Option<&Liveness> {
        Sender::peer_liveness(self)
    }
}

impl<T: Pod> LoopEnd for Receiver<T> {
    fn arm(&mut self) -> Result<bool, Error> {
        self.prepare_wait()
    }
    fn peer_liveness(&self) -> Option<&Liveness> {
        Receiver::peer_liveness(self)
    }
}

/// A frame sender's "would block" is "no room for *this* frame": it arms
/// for room for the frame its last `try_` call had no room for.
impl LoopEnd for FrameSender {
    fn arm(&mut self) -> Result<bool, Error> {
        self.prepare_wait_for_refused()
    }
    fn peer_liveness(&self) -> Option<&Liveness> {
        FrameSender::peer_liveness(self)
    }
}

/// Frames are published whole: "a byte is ready" is "a frame is ready".
impl LoopEnd for FrameReceiver {
    fn arm(&mut self) -> Result<bool, Error> {
        self.prepare_wait()
    }
    fn peer_liveness(&self) -> Option<&Liveness> {
        FrameReceiver::peer_liveness(self)
    }
}

/// A merge's "would block" (`Empty`) is returned only once every source
/// is armed; arming looks again for what came meanwhile. Its sources'
/// liveness is watched by the merge's own epoll instance.
impl<R: Source> LoopEnd for Merge<R> {
    fn arm(&mut self) -> Result<bool, Error> {
        self.prepare_wait()
    }
    fn peer_liveness(&self) -> Option<&Liveness> {
        None
    }
}

/// A dispatch's "would block" (`Full`) arms every member for room.
impl<T: Pod> LoopEnd for Dispatch<T> {
    fn arm(&mut self) -> Result<bool, Error> {
        self.prepare_wait()
    }
    fn peer_liveness(&self) -> Option<&Liveness> {
        None
    }
}

/// A pool waits for two things: after `Full`, room for jobs; after
/// `Empty`, replies; otherwise (`arm`) either.
impl<J: Pod, R: Pod> LoopEnd for Pool<J, R> {
    fn arm(&mut self) -> Result<bool, Error> {
        self.prepare_wait()
    }
    fn arm_after(&mut self, would_block: &Error) -> Result<bool, Error> {
        match would_block {
            Error::Full => self.prepare_wait_to_send(),
            Error::Empty => self.prepare_wait_to_recv(),
            _ => self.prepare_wait(),
        }
    }
    fn peer_liveness(&self) -> Option<&Liveness> {
        None
    }
}
