//! Wake-ups: an eventfd to notify, drain and wait on, polled together with
//! an fd that tells whether the peer process is still alive.
//!
//! This module owns the eventfds and the liveness fd and knows rustix's
//! `poll`; it does not know rings or when a wake-up is due (that is the
//! "armed" protocol in `ring`, driven by `channel`).

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::process::Child;
use std::time::Instant;

use rustix::event::{EventfdFlags, PollFd, PollFlags};
use rustix::io::Errno;

use crate::error::{Error, Rejection};

/// An eventfd used as a wake-up counter: non-blocking, close-on-exec.
#[derive(Debug)]
pub(crate) struct EventFd(OwnedFd);

/// Why a [`wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// The eventfd was notified (and has been drained).
    Notified,
    /// The liveness fd reports the peer gone.
    PeerGone,
    /// The deadline passed.
    TimedOut,
}

impl EventFd {
    /// A new eventfd with a count of 0.
    pub(crate) fn new() -> Result<EventFd, Error> {
        rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map(EventFd)
            .map_err(|e| Error::io("creating an eventfd", e))
    }

    /// Adopts an fd received from elsewhere, after checking that it is an
    /// eventfd (through `/proc/self/fd`, when `/proc` is mounted) and making
    /// it non-blocking, so that a drain can never block.
    pub(crate) fn adopt(fd: OwnedFd, which: &'static str) -> Result<EventFd, Error> {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        if let Ok(target) = link {
            if target.as_os_str() != "anon_inode:[eventfd]" {
                return Err(Rejection::NotEventfd { which }.into());
            }
        }
        rustix::io::ioctl_fionbio(&fd, true)
            .map_err(|e| Error::io("making an eventfd non-blocking", e))?;
        Ok(EventFd(fd))
    }

    /// Whether a poll says `events` are ready now (without waiting).
    fn ready_now(&self, events: PollFlags) -> bool {
        let mut fds = [PollFd::new(&self.0, events)];
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
    }

    /// Adds 1 to the count, waking a poller.
    ///
    /// The peer shares the open file description and can clear its
    /// `O_NONBLOCK`, so the write goes ahead only if a poll says it cannot
    /// block; otherwise the count is at its maximum, readable anyway.
    /// (eventfd writes do not support `RWF_NOWAIT`. A peer that fills the
    /// count between the poll and the write can still block it: see
    /// docs/safety.md.)
    pub(crate) fn notify(&self) -> Result<(), Error> {
        if !self.ready_now(PollFlags::OUT) {
            return Ok(());
        }
        match rustix::io::write(&self.0, &1u64.to_ne_bytes()) {
            // EAGAIN: the count is at its maximum, so it is readable anyway.
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(e) => Err(Error::io("writing an eventfd", e)),
        }
    }

    /// Resets the count to 0, never blocking: `RWF_NOWAIT` makes this one
    /// read non-blocking whatever the peer did to the shared file status
    /// flags (Linux 5.12 and later; before, a poll first, as in
    /// [`notify`](Self::notify)).
    pub(crate) fn drain(&self) -> Result<(), Error> {
        let mut buf = [0u8; 8];
        let nowait = rustix::io::preadv2(
            &self.0,
            &mut [IoSliceMut::new(&mut buf)],
            u64::MAX,
            rustix::io::ReadWriteFlags::NOWAIT,
        );
        let result = match nowait {
            Err(Errno::OPNOTSUPP) if self.ready_now(PollFlags::IN) => {
                rustix::io::read(&self.0, &mut buf)
            }
            Err(Errno::OPNOTSUPP) => return Ok(()),
            other => other,
        };
        match result {
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(e) => Err(Error::io("reading an eventfd", e)),
        }
    }

    /// A second fd for the same eventfd.
    pub(crate) fn try_clone(&self) -> Result<EventFd, Error> {
        self.0
            .try_clone()
            .map(EventFd)
            .map_err(|e| Error::io("duplicating an eventfd", e))
    }

    pub(crate) fn into_fd(self) -> OwnedFd {
        self.0
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Sleeps until `event` is notified, `peer` reports the peer gone, or
/// `deadline` passes; drains `event` if it was notified.
///
/// Retries on `EINTR` with the time that is left.
pub(crate) fn wait(
    event: &EventFd,
    peer: Option<&Liveness>,
    deadline: Option<Instant>,
) -> Result<Woken, Error> {
    loop {
        let timeout = match deadline {
            None => None,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Ok(Woken::TimedOut),
            },
        };
        // poll takes a Timespec, so the sleep is as precise as the kernel's
        // timers, not rounded to milliseconds.
        let timespec = timeout.map(|left| rustix::time::Timespec {
            tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: left.subsec_nanos().into(),
        });
        let mut fds = [
            PollFd::new(&event.0, PollFlags::IN),
            PollFd::new(&event.0, PollFlags::empty()),
        ];
        let count = match peer {
            Some(peer) => {
                fds[1] = PollFd::new(&peer.fd, peer.events);
                2
            }
            None => 1,
        };
        match rustix::event::poll(&mut fds[..count], timespec.as_ref()) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(Error::io("poll on the ring's eventfd", e)),
        }
        if !fds[0].revents().is_empty() {
            event.drain()?;
            return Ok(Woken::Notified);
        }
        if count == 2 && !fds[1].revents().is_empty() {
            return Ok(Woken::PeerGone);
        }
    }
}

/// An fd that becomes ready when the peer process is gone, so that a
/// blocking call on a ring returns [`Error::Disconnected`] instead of
/// waiting forever for a peer that was killed (and so never dropped its end).
///
/// It is either a pidfd (ready when the process exits) or a connected Unix
/// socket whose other end the peer holds (ready when the peer's end closes,
/// which the kernel does when the peer dies).
///
/// ```no_run
/// use std::process::Command;
/// let (tx, rx) = fdring::channel::<u64>(1024)?;
/// let mut command = Command::new("my-consumer");
/// fdring::handoff::inherit(&mut command, "MY_RING", rx.into_fds()?);
/// let child = command.spawn().map_err(|e| fdring::Error::Io { context: "spawn", source: e })?;
/// let mut tx = tx;
/// tx.watch_peer(fdring::Liveness::child(&child)?);
/// # Ok::<(), fdring::Error>(())
/// ```
#[derive(Debug)]
pub struct Liveness {
    fd: OwnedFd,
    events: PollFlags,
}

impl Liveness {
    /// Watches a child process through a pidfd.
    ///
    /// # Errors
    ///
    /// `Io` if the kernel refuses a pidfd (Linux before 5.3).
    pub fn child(child: &Child) -> Result<Liveness, Error> {
        Liveness::process(child.id())
    }

    /// Watches the process `pid` through a pidfd.
    ///
    /// A pid names a process only while that process (or its zombie)
    /// exists; prefer [`Liveness::child`], or a pid you know is alive (a
    /// child not yet waited for, or your parent after checking `getppid`).
    ///
    /// # Errors
    ///
    /// `Io` if there is no such process or the kernel refuses a pidfd.
    pub fn process(pid: u32) -> Result<Liveness, Error> {
        let pid = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| Error::io("pidfd_open", Errno::SRCH))?;
        let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .map_err(|e| Error::io("pidfd_open", e))?;
        Ok(Liveness::pidfd(fd))
    }

    /// Watches a process through a pidfd obtained elsewhere.
    pub fn pidfd(fd: OwnedFd) -> Liveness {
        Liveness {
            fd,
            events: PollFlags::IN,
        }
    }

    /// Watches a connected stream socket (for instance the `UnixStream` the
    /// fds were handed over on): the peer is gone when it hangs up.
    ///
    /// Only a hang-up counts, not data, so the socket can carry other
    /// messages; but the peer must keep its end open for as long as it
    /// uses the ring.
    pub fn socket(fd: impl Into<OwnedFd>) -> Liveness {
        Liveness {
            fd: fd.into(),
            events: PollFlags::RDHUP | PollFlags::HUP,
        }
    }

    /// A liveness that reports the peer gone from the start: for a peer
    /// found dead before there was anything to watch.
    pub(crate) fn gone() -> Result<Liveness, Error> {
        let fd = rustix::event::eventfd(1, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| Error::io("creating an eventfd", e))?;
        Ok(Liveness {
            fd,
            events: PollFlags::IN,
        })
    }

    /// Whether the peer is gone now (a poll that does not wait).
    ///
    /// ```
    /// let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    /// let liveness = fdring::Liveness::socket(a);
    /// assert!(!liveness.is_gone());
    /// drop(b);
    /// assert!(liveness.is_gone());
    /// ```
    pub fn is_gone(&self) -> bool {
        let mut fds = [PollFd::new(&self.fd, self.events)];
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
    }
}

impl AsFd for Liveness {
    /// The watched fd, for registering in an event loop: it becomes
    /// readable (a pidfd) or hung up (a socket) when the peer is gone.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
