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
/// `Rejected(BadHandoff)` if the variable is missing, is not two
/// different non-negative fd numbers (`memfd,wake`), names an fd that is
/// not open, or was already taken; the message names the variable and
/// what was wrong. The ring itself is checked when the bundle is opened.
///
/// ```
/// let error = fdring::handoff::inherited("NO_SUCH_RING").unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "ring rejected: bad hand-off: the environment variable NO_SUCH_RING is missing"
/// );
/// ```
pub fn inherited(name: &str) -> Result<Fds, Error> {
    let bad = |what: String| Error::from(Rejection::BadHandoff(what));
    let value = std::env::var_os(name)
        .ok_or_else(|| bad(format!("the environment variable {name} is missing")))?;
    let [memfd, wake] = parse_inherited(&value.to_string_lossy())
        .map_err(|what| bad(format!("the environment variable {name}={value:?} {what}")))?;
    {
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        if !taken
            .get_or_insert_with(HashSet::new)
            .insert(name.to_owned())
        {
            return Err(bad(format!(
                "the fds of the environment variable {name} were already taken"
            )));
        }
    }
    let take = |raw| {
        take_inherited_fd(raw).ok_or_else(|| {
            bad(format!(
                "fd {raw} named by {name} is not open in this process"
            ))
        })
    };
    let memfd = take(memfd)?;
    Ok(Fds {
        memfd,
        wake: take(wake)?,
    })
}

/// The two fd numbers of an inheritance variable's value, or what is wrong
/// with it (to follow "the environment variable NAME=value").
fn parse_inherited(value: &str) -> Result<[RawFd; 2], &'static str> {
    let not_two = "is not two fd numbers separated by a comma (memfd,wake)";
    let (memfd, wake) = value.split_once(',').ok_or(not_two)?;
    let number = |n: &str| {
        // Decimal digits only: no sign, no spaces (docs/format.md, section 7).
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not_two);
        }
        n.parse::<RawFd>()
            .map_err(|_| "names an fd number too large to be open")
    };
    let numbers = [number(memfd)?, number(wake)?];
    // Two owners of one fd would close it twice: the second close could
    // close a file another thread has just opened at that number.
    if numbers[0] == numbers[1] {
        return Err("names the same fd twice: the memfd and the wake-up socket are two fds");
    }
    Ok(numbers)
}

/// Adopts an inherited fd number, after checking it is open; `None` if it
/// is not.
fn take_inherited_fd(raw: RawFd) -> Option<OwnedFd> {
    // SAFETY: the fd is only borrowed for the duration of one fcntl, which
    // fails with EBADF (and nothing else happens) if it is not open.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    rustix::io::fcntl_setfd(borrowed, FdFlags::CLOEXEC).ok()?;
    // SAFETY: the fd is open (checked above), was inherited for this name
    // (which `TAKEN` lets us take only once, and `parse_inherited` made
    // sure the name's two numbers differ), and nothing else in this
    // process owns it: the parent passed it for us alone.
    Some(unsafe { OwnedFd::from_raw_fd(raw) })
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
    send_message(socket, SOCKET_TAG, &[fds.memfd.as_fd(), fds.wake.as_fd()])
}

/// Sends `bytes` with `fds` (`SCM_RIGHTS`, none if empty) in one `sendmsg`,
/// which a stream socket delivers whole to one `recvmsg` of at least as
/// many bytes: the building block of [`send_fds`] and of the `service`
/// protocol's messages.
pub(crate) fn send_message(
    socket: &UnixStream,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), Error> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(Error::io(
            "building the SCM_RIGHTS message",
            rustix::io::Errno::NOBUFS,
        ));
    }
    let sent = loop {
        match rustix::net::sendmsg(
            socket,
            &[IoSlice::new(bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other.map_err(|e| Error::io("sending over the socket", e))?,
        }
    };
    if sent != bytes.len() {
        return Err(Error::io(
            "sending over the socket",
            rustix::io::Errno::MSGSIZE,
        ));
    }
    Ok(())
}

/// One message taken by [`recv_message`].
#[derive(Debug)]
pub(crate) struct Received {
    /// Bytes received: 0 if the peer closed the socket.
    pub(crate) bytes: usize,
    /// Every fd that came with them, close-on-exec.
    pub(crate) fds: Vec<OwnedFd>,
    /// More fds came than there was room for; those were closed.
    pub(crate) truncated: bool,
}

/// Receives one message into `buf`, with the fds that came with it, as
/// [`recv_fds`] says: waiting as the socket's timeout says (`Timeout` when
/// it runs out), never for the rest of a short message.
pub(crate) fn recv_message(socket: &UnixStream, buf: &mut [u8]) -> Result<Received, Error> {
    // Room for more fds than any message carries, so that a message with
    // too many is recognised (and its fds closed) rather than truncated.
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    // No `MSG_WAITALL`: a message is sent whole with one `sendmsg`, so a
    // short read is a peer that broke the protocol, and waiting for the
    // rest would let it hang us.
    let message = loop {
        match rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return Err(Error::Timeout),
            other => break other.map_err(|e| Error::io("receiving over the socket", e))?,
        }
    };
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    Ok(Received {
        bytes: message.bytes,
        fds,
        truncated: message.flags.contains(rustix::net::ReturnFlags::CTRUNC),
    })
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
    let message = recv_message(socket, &mut tag)?;
    if message.bytes != SOCKET_TAG.len() || &tag != SOCKET_TAG {
        return Err(Rejection::BadHandoff(
            "the socket message is not an fdring hand-off (wrong bytes)".to_owned(),
        )
        .into());
    }
    let count = message.fds.len();
    let truncated = message.truncated;
    let wrong_count = || {
        Rejection::BadHandoff(format!(
            "the socket message carried {count} fds{}, not exactly 2",
            if truncated {
                " and more that did not fit"
            } else {
                ""
            }
        ))
    };
    if truncated {
        return Err(wrong_count().into());
    }
    let [memfd, wake]: [OwnedFd; 2] = message.fds.try_into().map_err(|_| wrong_count())?;
    Ok(Fds { memfd, wake })
}
