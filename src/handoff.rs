//! Moving an end's fds to another process: by inheritance into a child
//! [`Command`], or with `SCM_RIGHTS` over a [`UnixStream`].
//!
//! This module owns the ways an [`Fds`] bundle crosses a process boundary.
//! It knows rustix and std; it does not know the ring or the header (the
//! receiving side validates those when it opens the bundle). Liveness
//! needs nothing from here: each end's wake-up socket hangs up when the
//! last copy of the peer's end closes, so once the hand-off is done, keep
//! no copy of the fds you handed on.
//!
//! # A parent streaming to a child
//!
//! ```no_run
//! use std::process::Command;
//! use fdring::handoff;
//!
//! // Parent: create the ring, pass the receiving end to the child.
//! let (mut tx, rx) = fdring::channel::<u64>(1 << 16)?;
//! let mut command = Command::new(std::env::current_exe().unwrap());
//! command.arg("child");
//! handoff::inherit(&mut command, "MY_RING", rx.into_fds()?);
//! let child = command.spawn().expect("spawn");
//! // Close the parent's copies of the child's fds: from now on, if the
//! // child dies, `tx` sees its wake-up socket hang up.
//! drop(command);
//! tx.send(42)?;
//!
//! // Child (the same binary, run with "child"):
//! let mut rx = fdring::Receiver::<u64>::from_fds(handoff::inherited("MY_RING")?)?;
//! assert_eq!(rx.recv()?, 42);
//! # Ok::<(), fdring::Error>(())
//! ```

use std::collections::HashSet;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Mutex;

use rustix::io::FdFlags;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::channel::Fds;
use crate::error::{Error, Rejection};

/// The bytes sent with the fds over a socket, so that the receiver can tell
/// an fdring hand-off from other traffic.
const SOCKET_TAG: &[u8; 16] = b"fdring-fds-v2\0\0\0";

/// Passes `fds` to the child that `command` will spawn, under the
/// environment variable `name`; the child takes them with [`inherited`].
///
/// The fds are inherited at their current numbers (their close-on-exec
/// flag is cleared in the child only, so no other child can inherit them),
/// and the variable tells the child the numbers: `memfd,wake`, in decimal.
///
/// The `Command` keeps the parent's copies of the fds until it is dropped:
/// drop it after `spawn`, or the parent's end cannot see the child's death
/// through its wake-up socket. Spawn it once: a ring has one end of each
/// kind.
///
/// ```no_run
/// let (tx, rx) = fdring::channel::<f32>(4096)?;
/// let mut command = std::process::Command::new("audio-sink");
/// fdring::handoff::inherit(&mut command, "AUDIO_RING", rx.into_fds()?);
/// # Ok::<(), fdring::Error>(())
/// ```
pub fn inherit(command: &mut Command, name: &str, fds: Fds) {
    command.env(
        name,
        format!("{},{}", fds.memfd.as_raw_fd(), fds.wake.as_raw_fd()),
    );
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: it makes two fcntl system
    // calls through rustix, which neither allocates nor takes locks. The
    // fds are valid there: `fds` is moved into the closure, so the parent
    // keeps them open for as long as the `Command` exists.
    unsafe {
        command.pre_exec(move || {
            for fd in [&fds.memfd, &fds.wake] {
                rustix::io::fcntl_setfd(fd, FdFlags::empty())?;
            }
            Ok(())
        });
    }
}

/// Names already taken by [`inherited`] in this process.
static TAKEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Takes the fds the parent passed with [`inherit`] under `name`, once.
///
/// The fds are made close-on-exec again, so this process's own children do
/// not inherit them. If the parent dies, the wake-up socket hangs up and
/// blocking calls return `Disconnected`.
///
/// # Errors
///
/// `Rejected(BadHandoff)` if the variable is missing or malformed, names
/// an fd that is not open, or was already taken. The ring itself is
/// checked when the bundle is opened.
pub fn inherited(name: &str) -> Result<Fds, Error> {
    let value = std::env::var(name)
        .map_err(|_| Rejection::BadHandoff("the environment variable is missing"))?;
    let numbers: Vec<i64> = value
        .split(',')
        .map(|n| n.parse::<i64>())
        .collect::<Result<_, _>>()
        .map_err(|_| Rejection::BadHandoff("the environment variable is not 2 numbers"))?;
    let &[memfd, wake] = numbers.as_slice() else {
        return Err(Rejection::BadHandoff("the environment variable is not 2 numbers").into());
    };
    {
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        if !taken
            .get_or_insert_with(HashSet::new)
            .insert(name.to_owned())
        {
            return Err(Rejection::BadHandoff("these fds were already taken").into());
        }
    }
    let [memfd, wake] = [memfd, wake].map(take_inherited_fd);
    Ok(Fds {
        memfd: memfd?,
        wake: wake?,
    })
}

/// Adopts an inherited fd number, after checking it is open.
fn take_inherited_fd(number: i64) -> Result<OwnedFd, Error> {
    let bad = || Error::from(Rejection::BadHandoff("an inherited fd is not open"));
    let raw = RawFd::try_from(number).map_err(|_| bad())?;
    if raw < 0 {
        return Err(bad());
    }
    // SAFETY: the fd is only borrowed for the duration of one fcntl, which
    // fails with EBADF (and nothing else happens) if it is not open.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    rustix::io::fcntl_setfd(borrowed, FdFlags::CLOEXEC).map_err(|_| bad())?;
    // SAFETY: the fd is open (checked above), was inherited for this name
    // (which `TAKEN` lets us take only once), and nothing else in this
    // process owns it: the parent passed it for us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Sends `fds` over a connected Unix stream socket with `SCM_RIGHTS`; the
/// peer takes them with [`recv_fds`]. The fds are closed here once sent
/// (the peer has its own copies). The socket is free for other traffic
/// afterwards, or can be closed.
///
/// # Errors
///
/// `Io` if the socket refuses the message.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// let (ours, theirs) = UnixStream::pair().unwrap();
/// let (mut tx, rx) = fdring::channel::<u32>(256)?;
/// fdring::handoff::send_fds(&ours, rx.into_fds()?)?;
///
/// // In the other process:
/// let mut rx = fdring::Receiver::<u32>::from_fds(fdring::handoff::recv_fds(&theirs)?)?;
/// tx.send(9)?;
/// assert_eq!(rx.recv()?, 9);
/// # Ok::<(), fdring::Error>(())
/// ```
pub fn send_fds(socket: &UnixStream, fds: Fds) -> Result<(), Error> {
    let borrowed = [fds.memfd.as_fd(), fds.wake.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
        return Err(Error::io(
            "building the SCM_RIGHTS message",
            rustix::io::Errno::NOBUFS,
        ));
    }
    let sent = rustix::net::sendmsg(
        socket,
        &[IoSlice::new(SOCKET_TAG)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .map_err(|e| Error::io("sending the fds over the socket", e))?;
    if sent != SOCKET_TAG.len() {
        return Err(Error::io(
            "sending the fds over the socket",
            rustix::io::Errno::MSGSIZE,
        ));
    }
    Ok(())
}

/// Receives fds sent with [`send_fds`], waiting for them.
///
/// It waits as the socket says: forever on a blocking socket, at most its
/// read timeout if one is set ([`UnixStream::set_read_timeout`]), not at
/// all on a non-blocking one. A message is taken as it arrives: a peer
/// that sends part of a hand-off and then nothing does not keep this call
/// waiting for the rest.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use std::time::Duration;
///
/// let (_ours, theirs) = UnixStream::pair().unwrap();
/// theirs.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
/// // Nothing was sent: the socket's read timeout ends the wait.
/// assert!(matches!(fdring::handoff::recv_fds(&theirs), Err(fdring::Error::Timeout)));
/// ```
///
/// # Errors
///
/// `Rejected(BadHandoff)` if the message is not an fdring hand-off (wrong
/// or too few bytes, not exactly two fds, or the socket closed first);
/// every fd that came with a bad message is closed. `Timeout` if nothing
/// came within the socket's read timeout (or at once, on a non-blocking
/// socket). `Io` if the socket fails.
pub fn recv_fds(socket: &UnixStream) -> Result<Fds, Error> {
    let mut tag = [0u8; SOCKET_TAG.len()];
    // Room for more fds than expected, so that a message with too many is
    // recognised (and its fds closed) rather than truncated.
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    // No `MSG_WAITALL`: `send_fds` sends the tag and the fds in one
    // message, which arrives whole, so a short read is a peer that broke
    // the protocol, and waiting for the rest would let it hang us.
    let message = loop {
        match rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut tag)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return Err(Error::Timeout),
            other => break other.map_err(|e| Error::io("receiving fds over the socket", e))?,
        }
    };
    let mut received: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            received.extend(fds);
        }
    }
    if message.bytes != SOCKET_TAG.len() || &tag != SOCKET_TAG {
        return Err(Rejection::BadHandoff("the socket message is not an fdring hand-off").into());
    }
    let wrong_count = || Rejection::BadHandoff("the socket message did not carry exactly 2 fds");
    if message.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
        return Err(wrong_count().into());
    }
    let [memfd, wake]: [OwnedFd; 2] = received.try_into().map_err(|_| wrong_count())?;
    Ok(Fds { memfd, wake })
}
