//! Services: unrelated processes find each other by name, the kernel tells
//! each who the other is, and they agree on typed rings before any fd is
//! opened.
//!
//! This module owns the rendezvous: a [`Listener`] bound to a name (in the
//! Linux abstract socket namespace by default, so that nothing on the
//! filesystem can go stale; or at a path), [`connect`] and [`Connector`] on
//! the other side, access control on both sides from `SO_PEERCRED`, and the
//! negotiation of each ring on a [`Connection`] (the messages are specified
//! in `docs/format.md`, section 9). It builds on `handoff` (fds over a
//! socket) and `channel` (creating and opening rings); it knows nothing of
//! topologies, and the rings it makes are ordinary rings: once negotiated,
//! the connection may be dropped.
//!
//! ```
//! use fdring::service::{self, Listener};
//!
//! // One process listens under a name...
//! # let name = &format!("doc-example-{}", std::process::id());
//! let listener = Listener::bind(name)?;
//! let server = std::thread::spawn(move || -> Result<(), fdring::Error> {
//!     let mut connection = listener.accept()?;
//!     let mut rx = connection.take_receiver::<u64>(&fdring::Builder::new())?;
//!     assert_eq!(rx.recv()?, 42);
//!     Ok(())
//! });
//! // ...any other process of the same user finds it by that name, makes a
//! // ring and hands the listener its receiving end.
//! let mut connection = service::connect(name)?;
//! let mut tx = connection.offer_receiver::<u64>(&fdring::Builder::new().capacity(1024))?;
//! tx.send(42)?;
//! server.join().unwrap()?;
//! # Ok::<(), fdring::Error>(())
//! ```
//!
//! # Trust
//!
//! The peer may be hostile, as everywhere in fdring. Its identity is what
//! the kernel says (`SO_PEERCRED`: the pid, uid and gid of the process that
//! connected, or that listened), never what it sends. A listener refuses a
//! client its [`Access`] does not allow before it reads a byte from it, and
//! tells it so; a client refuses a listener it does not trust (by default,
//! one of another user than itself or root) before it sends anything, so
//! that it cannot hand its data to an impostor that bound the name first.
//! Every read on a connection is bounded by its timeout, and a listener
//! never reads in [`Listener::accept`]: a client that connects and says
//! nothing, or half a message, costs the listener nothing until the
//! connection is used, and then at most the timeout. The fds of an offer are
//! validated as [`Builder::open_sender`](crate::Builder::open_sender) does,
//! after the offer's description matched what the taker asked for.

use std::fmt;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::channel::{Builder, Fds, ItemLayout, Receiver, Sender, UntypedReceiver, UntypedSender};
use crate::error::{Error, Field, Rejection, Role};
use crate::frame::{FrameReceiver, FrameSender};
use crate::handoff;

/// The prefix of every name in the abstract socket namespace, so that an
/// fdring service cannot collide with another program's socket by chance.
pub const ABSTRACT_PREFIX: &str = "fdring:";

/// How long a connection waits for its peer by default: for the greeting
/// in [`Connector::connect`], and for each answer on a [`Connection`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The version of the connection protocol (`docs/format.md`, section 9).
pub const PROTOCOL_VERSION: u32 = 1;

/// Pending connections a listener's kernel queue holds.
const BACKLOG: i32 = 128;

/// What the kernel says about the process at the other end of a Unix
/// socket (`SO_PEERCRED`), taken when it connected or listened. The pid is
/// 0 if that process is not visible in this process's pid namespace.
///
/// ```
/// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
/// let me = fdring::service::Credentials::of_peer(&a)?;
/// assert_eq!(me.pid, std::process::id());
/// # Ok::<(), fdring::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// The process id.
    pub pid: u32,
    /// The effective user id.
    pub uid: u32,
    /// The effective group id.
    pub gid: u32,
}

impl Credentials {
    /// The credentials of the process at the other end of `socket`.
    ///
    /// # Errors
    ///
    /// `Io` if the kernel refuses `SO_PEERCRED` (not a Unix socket).
    pub fn of_peer(socket: impl AsFd) -> Result<Credentials, Error> {
        // Not rustix's `socket_peercred`: its `UCred` holds the pid as a
        // non-zero integer, and the kernel reports 0 for a peer outside
        // this pid namespace, which a hostile peer can arrange.
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `getsockopt` writes at most `len` bytes into `cred`, a
        // `ucred` of exactly that size whose fields are plain integers,
        // valid for any bytes; the fd is borrowed and open for the call.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_fd().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                std::ptr::addr_of_mut!(cred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(Error::io(
                "reading the peer's credentials (SO_PEERCRED)",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Credentials {
            pid: u32::try_from(cred.pid).unwrap_or(0),
            uid: cred.uid,
            gid: cred.gid,
        })
    }

    fn not_allowed(self) -> Error {
        Rejection::PeerNotAllowed {
            pid: self.pid,
            uid: self.uid,
            gid: self.gid,
        }
        .into()
    }
}

/// Who may be at the other end: a set of rules, any of which admits a peer.
///
/// A [`Listener`] applies it to clients ([`Access::same_user`] by default),
/// a [`Connector`] to the listener ([`Access::same_user_or_root`] by
/// default: root can read this process's memory anyway).
///
/// ```
/// use fdring::service::{Access, Credentials};
/// let peer = Credentials { pid: 7, uid: 1000, gid: 100 };
/// assert!(Access::nobody().allow_uid(1000).allows(&peer));
/// assert!(Access::nobody().allow_gid(100).allows(&peer));
/// assert!(!Access::nobody().allow_uid(0).allows(&peer));
/// assert!(Access::nobody().allow_when(|c| c.pid == 7).allows(&peer));
/// assert!(Access::anyone().allows(&peer));
/// ```
#[derive(Clone, Default)]
pub struct Access {
    anyone: bool,
    uids: Vec<u32>,
    gids: Vec<u32>,
    checks: Vec<Check>,
}

/// A rule of [`Access::allow_when`].
type Check = Arc<dyn Fn(&Credentials) -> bool + Send + Sync>;

impl Access {
    /// Admits no one; add rules with the `allow_` calls.
    pub fn nobody() -> Access {
        Access::default()
    }

    /// Admits every process of the machine.
    pub fn anyone() -> Access {
        Access {
            anyone: true,
            ..Access::default()
        }
    }

    /// Admits processes of this process's effective user id.
    pub fn same_user() -> Access {
        Access::nobody().allow_uid(rustix::process::geteuid().as_raw())
    }

    /// Admits processes of this process's effective user id, and root.
    pub fn same_user_or_root() -> Access {
        Access::same_user().allow_uid(0)
    }

    /// Also admits processes running as `uid`.
    pub fn allow_uid(mut self, uid: u32) -> Access {
        self.uids.push(uid);
        self
    }

    /// Also admits processes running with the effective group `gid`.
    pub fn allow_gid(mut self, gid: u32) -> Access {
        self.gids.push(gid);
        self
    }

    /// Also admits processes for which `check` returns true.
    pub fn allow_when(
        mut self,
        check: impl Fn(&Credentials) -> bool + Send + Sync + 'static,
    ) -> Access {
        self.checks.push(Arc::new(check));
        self
    }

    /// Whether a peer with these credentials is admitted.
    pub fn allows(&self, peer: &Credentials) -> bool {
        self.anyone
            || self.uids.contains(&peer.uid)
            || self.gids.contains(&peer.gid)
            || self.checks.iter().any(|check| check(peer))
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("anyone", &self.anyone)
            .field("uids", &self.uids)
            .field("gids", &self.gids)
            .field("checks", &self.checks.len())
            .finish()
    }
}

/// Where a service is: a name in the abstract socket namespace, or a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    Abstract(String),
    Path(PathBuf),
}

impl Address {
    fn socket_addr(&self) -> Result<SocketAddr, Error> {
        match self {
            Address::Abstract(name) => {
                if name.is_empty() {
                    return Err(Error::io(
                        "an fdring service name must not be empty",
                        std::io::ErrorKind::InvalidInput,
                    ));
                }
                SocketAddr::from_abstract_name(format!("{ABSTRACT_PREFIX}{name}"))
                    .map_err(|e| Error::io("the service name is too long for a socket address", e))
            }
            Address::Path(path) => SocketAddr::from_pathname(path)
                .map_err(|e| Error::io("the service path is too long for a socket address", e)),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Abstract(name) => write!(f, "@{ABSTRACT_PREFIX}{name}"),
            Address::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

// ---- the messages ----------------------------------------------------------

/// The first 8 bytes of every message.
const MAGIC: [u8; 8] = *b"FDRSVC\0\0";

/// Message kinds.
const WELCOME: u32 = 1;
const REFUSE: u32 = 2;
const OFFER: u32 = 3;
const ACCEPT: u32 = 4;
const DECLINE: u32 = 5;

/// `reason` of a DECLINE that is not a [`Field`]: the fds did not open.
const REASON_OPEN_FAILED: u32 = 100;

/// One message of the connection protocol: fixed size and layout, native
/// byte order (`docs/format.md`, section 9).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
struct Message {
    magic: [u8; 8],
    version: u32,
    kind: u32,
    pid: u32,
    uid: u32,
    gid: u32,
    reason: u32,
    shape: u32,
    end: u32,
    item_size: u32,
    item_align: u32,
    type_tag: u64,
    frame_align: u32,
    /// Zero; a later version may use it.
    reserved: u32,
}

const MESSAGE_BYTES: usize = 64;
const _: () = assert!(size_of::<Message>() == MESSAGE_BYTES);

impl Message {
    fn new(kind: u32) -> Message {
        Message {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            kind,
            ..Message::zeroed()
        }
    }

    fn with_credentials(kind: u32, who: Credentials) -> Message {
        Message {
            pid: who.pid,
            uid: who.uid,
            gid: who.gid,
            ..Message::new(kind)
        }
    }

    fn with_ring(kind: u32, ring: &Ring) -> Message {
        Message {
            shape: ring.shape,
            end: ring.end,
            item_size: ring.item_size,
            item_align: ring.item_align,
            type_tag: ring.type_tag.unwrap_or(0),
            frame_align: ring.frame_align,
            ..Message::new(kind)
        }
    }
}

/// What a ring on a connection is: what an offer says and a taker expects.
#[derive(Debug, Clone, Copy)]
struct Ring {
    /// 0 items, 1 frames.
    shape: u32,
    /// The end the taker gets: 0 the sender, 1 the receiver.
    end: u32,
    item_size: u32,
    item_align: u32,
    /// `None`: the taker accepts any tag.
    type_tag: Option<u64>,
    /// 0 for items.
    frame_align: u32,
}

impl Ring {
    fn items<T>(taker_gets: Role, builder: &Builder) -> Ring {
        Ring::items_of(ItemLayout::of::<T>(), taker_gets, builder)
    }

    fn items_of(layout: ItemLayout, taker_gets: Role, builder: &Builder) -> Ring {
        // A size or alignment past u32 is refused when the ring is built
        // or opened; here it only has to differ from any real one.
        let field = |value: usize| u32::try_from(value).unwrap_or(u32::MAX);
        Ring {
            shape: 0,
            end: end_code(taker_gets),
            item_size: field(layout.size()),
            item_align: field(layout.align()),
            type_tag: builder.tag(),
            frame_align: 0,
        }
    }

    fn frames(taker_gets: Role, builder: &Builder, align: usize) -> Ring {
        Ring {
            shape: 1,
            frame_align: align as u32,
            ..Ring::items::<u8>(taker_gets, builder)
        }
    }

    /// The first field in which `offer` is not what this taker expects:
    /// the field, the offered value, the expected one.
    fn mismatch(&self, offer: &Message) -> Option<(Field, u64, u64)> {
        let expected = Message::with_ring(OFFER, self);
        FIELDS
            .into_iter()
            .filter(|&field| field != Field::TypeTag || self.type_tag.is_some())
            .map(|field| (field, value(offer, field), value(&expected, field)))
            .find(|(_, offered, expected)| offered != expected)
    }
}

fn end_code(role: Role) -> u32 {
    match role {
        Role::Sender => 0,
        Role::Receiver => 1,
    }
}

/// The negotiated fields, in the order they are compared; a DECLINE's
/// `reason` is a field's position here plus one.
const FIELDS: [Field; 7] = [
    Field::Version,
    Field::Shape,
    Field::End,
    Field::ItemSize,
    Field::ItemAlign,
    Field::TypeTag,
    Field::FrameAlign,
];

fn field_code(field: Field) -> u32 {
    FIELDS
        .iter()
        .position(|&f| f == field)
        .map_or(0, |i| i as u32 + 1)
}

fn field_of(code: u32) -> Option<Field> {
    FIELDS.get((code as usize).checked_sub(1)?).copied()
}

/// A message's value of `field`.
fn value(message: &Message, field: Field) -> u64 {
    match field {
        Field::Version => u64::from(message.version),
        Field::Shape => u64::from(message.shape),
        Field::End => u64::from(message.end),
        Field::ItemSize => u64::from(message.item_size),
        Field::ItemAlign => u64::from(message.item_align),
        Field::TypeTag => message.type_tag,
        Field::FrameAlign => u64::from(message.frame_align),
    }
}

fn protocol_error(what: String) -> Error {
    Rejection::BadHandoff(format!("the service peer broke the protocol: {what}")).into()
}

fn send(stream: &UnixStream, message: &Message, fds: &[BorrowedFd<'_>]) -> Result<(), Error> {
    handoff::send_message(stream, bytemuck::bytes_of(message), fds).map_err(|e| match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe => {
            Error::Disconnected
        }
        other => other,
    })
}

/// Receives one message, with its fds; `Disconnected` if the peer closed
/// the connection, `Timeout` if nothing came within the socket's timeout.
fn receive(stream: &UnixStream) -> Result<(Message, Vec<OwnedFd>), Error> {
    let mut message = Message::zeroed();
    let received = handoff::recv_message(stream, bytemuck::bytes_of_mut(&mut message)).map_err(
        |e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::ConnectionReset => {
                Error::Disconnected
            }
            other => other,
        },
    )?;
    if received.bytes == 0 && received.fds.is_empty() {
        return Err(Error::Disconnected);
    }
    if received.bytes != MESSAGE_BYTES || received.truncated {
        return Err(protocol_error(format!(
            "a message of {} bytes and {} fds, not {MESSAGE_BYTES} bytes",
            received.bytes,
            received.fds.len()
        )));
    }
    if message.magic != MAGIC {
        return Err(protocol_error("a message without the magic".to_owned()));
    }
    Ok((message, received.fds))
}

// ---- the listener ----------------------------------------------------------

/// A service's listening socket: [`bind`](Listener::bind) it under a name,
/// then [`accept`](Listener::accept) connections from any process that
/// [`connect`]s to that name and that its [`Access`] allows.
///
/// The listener is `AsFd`: its fd becomes readable when a connection
/// waits, so an event loop can watch it and call
/// [`try_accept`](Listener::try_accept) (under the `mio` feature it is a
/// `mio::event::Source`; under `tokio`, see `fdring::tokio::AsyncListener`).
///
/// ```
/// use fdring::service::{Access, Listener};
/// # let name = &format!("doc-listener-{}", std::process::id());
/// let listener = Listener::bind(name)?.with_access(Access::same_user().allow_gid(0));
/// assert_eq!(listener.address(), format!("@fdring:{name}"));
/// // Nobody connected yet: nothing to accept, and no waiting.
/// assert!(listener.try_accept()?.is_none());
/// # Ok::<(), fdring::Error>(())
/// ```
pub struct Listener {
    socket: UnixListener,
    address: Address,
    access: Access,
    timeout: Duration,
    /// The inode of the socket file this listener created, to unlink it on
    /// drop only if it is still ours.
    path_inode: Option<u64>,
}

impl Listener {
    /// Listens under `name` in the Linux abstract socket namespace (as
    /// `@fdring:name`): nothing is created on the filesystem, and the name
    /// is free again the moment this listener is dropped or its process
    /// dies, however it dies.
    ///
    /// # Errors
    ///
    /// `Io` with [`std::io::ErrorKind::AddrInUse`] if a live listener has
    /// the name; `Io` with `InvalidInput` for an empty or too long name.
    pub fn bind(name: &str) -> Result<Listener, Error> {
        let address = Address::Abstract(name.to_owned());
        let socket = UnixListener::bind_addr(&address.socket_addr()?)
            .map_err(|e| Error::io("binding the service name", e))?;
        Listener::new(socket, address, None)
    }

    /// Listens at a filesystem path, creating a socket file that only this
    /// user can connect to (mode `0600`; widen it with `chmod` if the
    /// [`Access`] admits others). A socket file left by a listener that
    /// died is detected (nobody answers on it) and replaced; the file is
    /// removed when this listener is dropped.
    ///
    /// # Errors
    ///
    /// `Io` with `AddrInUse` if a live listener answers at the path (or
    /// its queue is full: it is not asked to wait), or if the path is
    /// something other than a socket; `Io` if the directory refuses the
    /// file.
    pub fn bind_path(path: impl AsRef<Path>) -> Result<Listener, Error> {
        let path = path.as_ref().to_path_buf();
        let address = Address::Path(path.clone());
        let socket = match bind_socket_file(&path) {
            Err(Errno::ADDRINUSE) if is_stale_socket(&path)? => {
                std::fs::remove_file(&path)
                    .map_err(|e| Error::io("removing a stale service socket file", e))?;
                bind_socket_file(&path)
            }
            other => other,
        }
        .map_err(|e| Error::io("binding the service socket file", e))?;
        let inode = std::fs::metadata(&path)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .map_err(|e| Error::io("reading the service socket file", e))?;
        Listener::new(socket, address, Some(inode))
    }

    fn new(
        socket: UnixListener,
        address: Address,
        path_inode: Option<u64>,
    ) -> Result<Listener, Error> {
        // Non-blocking, so that `try_accept` never waits; `accept` polls.
        socket
            .set_nonblocking(true)
            .map_err(|e| Error::io("making the service socket non-blocking", e))?;
        Ok(Listener {
            socket,
            address,
            access: Access::same_user(),
            timeout: DEFAULT_TIMEOUT,
            path_inode,
        })
    }

    /// Admits the clients `access` allows, instead of
    /// [`Access::same_user`].
    pub fn with_access(mut self, access: Access) -> Listener {
        self.access = access;
        self
    }

    /// How long each [`Connection`] this listener accepts waits for its
    /// client's answers ([`DEFAULT_TIMEOUT`] unless set).
    pub fn with_timeout(mut self, timeout: Duration) -> Listener {
        self.timeout = timeout;
        self
    }

    /// Where clients connect: `@fdring:name` for an abstract name, else the
    /// path.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Waits for a connection and accepts it if its process is allowed.
    ///
    /// Reads nothing from the client: its credentials come from the kernel,
    /// so a client that connects and stays silent does not delay the next
    /// `accept`. A client that hung up before it was accepted is skipped.
    ///
    /// # Errors
    ///
    /// `Rejected(PeerNotAllowed)` naming the client's pid, uid and gid if
    /// the [`Access`] refuses it (the client is told, and gets no fd of
    /// ours); the listener goes on, call `accept` again. `Io` if the
    /// kernel fails the call.
    pub fn accept(&self) -> Result<Connection, Error> {
        loop {
            if let Some(connection) = self.try_accept()? {
                return Ok(connection);
            }
            let mut fds = [PollFd::new(&self.socket, PollFlags::IN)];
            match rustix::event::poll(&mut fds, None) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(Error::io("waiting for a service connection", e)),
            }
        }
    }

    /// Accepts a waiting connection, if there is one, without waiting.
    ///
    /// A client that left before its greeting is skipped: the next one
    /// waiting, if any, is accepted instead.
    ///
    /// # Errors
    ///
    /// As for [`accept`](Self::accept).
    pub fn try_accept(&self) -> Result<Option<Connection>, Error> {
        // A client that left before we got to it (its connect timed out,
        // or it was `bind_path` probing for a live listener) is skipped:
        // the next one waiting, if any, is the one accepted.
        loop {
            let stream = match rustix::net::accept_with(&self.socket, SocketFlags::CLOEXEC) {
                Ok(fd) => UnixStream::from(fd),
                Err(Errno::INTR | Errno::CONNABORTED) => continue,
                Err(Errno::AGAIN) => return Ok(None),
                Err(e) => return Err(Error::io("accepting a service connection", e)),
            };
            let peer = Credentials::of_peer(&stream)?;
            if !self.access.allows(&peer) {
                // The socket buffer of a fresh connection is empty: this
                // send cannot block, and a client that is gone is no
                // concern.
                let _ = send(&stream, &Message::with_credentials(REFUSE, peer), &[]);
                return Err(peer.not_allowed());
            }
            let me = Credentials {
                pid: std::process::id(),
                uid: rustix::process::geteuid().as_raw(),
                gid: rustix::process::getegid().as_raw(),
            };
            match send(&stream, &Message::with_credentials(WELCOME, me), &[]) {
                Err(Error::Disconnected) => continue,
                sent => sent?,
            }
            return Connection::new(stream, peer, self.timeout).map(Some);
        }
    }
}

/// Binds a new socket at `path` with mode `0600` before it listens, so that
/// no client of another user can connect in between.
fn bind_socket_file(path: &Path) -> Result<UnixListener, Errno> {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let addr = rustix::net::SocketAddrUnix::new(path)?;
    rustix::net::bind(&fd, &addr)?;
    let restrict = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    if restrict.is_err() {
        let _ = std::fs::remove_file(path);
        return Err(Errno::ACCESS);
    }
    rustix::net::listen(&fd, BACKLOG)?;
    Ok(UnixListener::from(fd))
}

/// Whether `path` is a socket file nobody listens on any more.
fn is_stale_socket(path: &Path) -> Result<bool, Error> {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_socket())
        .map_err(|e| Error::io("reading the service socket file", e))?;
    if !is_socket {
        return Ok(false);
    }
    // Non-blocking: a live listener whose queue is full (one that does not
    // accept) answers EAGAIN at once, where a blocking connect would wait
    // for a place in its queue, for ever if it never accepts.
    let probe = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| Error::io("creating a socket to probe the service socket file", e))?;
    let addr = rustix::net::SocketAddrUnix::new(path)
        .map_err(|e| Error::io("the service path is too long for a socket address", e))?;
    loop {
        match rustix::net::connect(&probe, &addr) {
            Err(Errno::INTR) => continue,
            probed => return Ok(probed == Err(Errno::CONNREFUSED)),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let (Address::Path(path), Some(inode)) = (&self.address, self.path_inode) {
            // Only our own file: another listener may have replaced it.
            let ours = std::fs::symlink_metadata(path)
                .is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) == inode);
            if ours {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl AsFd for Listener {
    /// The listening socket: readable when a connection waits.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address.to_string())
            .field("access", &self.access)
            .field("timeout", &self.timeout)
            .finish()
    }
}

// ---- the client ------------------------------------------------------------

/// Connects to the service listening under `name` (abstract namespace),
/// with the defaults of [`Connector`].
///
/// # Errors
///
/// As for [`Connector::connect`].
pub fn connect(name: &str) -> Result<Connection, Error> {
    Connector::new(name).connect()
}

/// Options for connecting to a service.
///
/// ```no_run
/// use std::time::Duration;
/// use fdring::service::{Access, Connector};
/// // A client that accepts a listener of uid 0 only, and waits 1 s at most.
/// let connection = Connector::new("audio")
///     .trust(Access::nobody().allow_uid(0))
///     .timeout(Duration::from_secs(1))
///     .connect()?;
/// # Ok::<(), fdring::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Connector {
    address: Address,
    trust: Access,
    timeout: Duration,
}

impl Connector {
    /// Options for the service listening under `name` in the abstract
    /// namespace (see [`Listener::bind`]).
    pub fn new(name: &str) -> Connector {
        Connector {
            address: Address::Abstract(name.to_owned()),
            trust: Access::same_user_or_root(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Options for the service listening at `path` (see
    /// [`Listener::bind_path`]).
    pub fn path(path: impl AsRef<Path>) -> Connector {
        Connector {
            address: Address::Path(path.as_ref().to_path_buf()),
            ..Connector::new("")
        }
    }

    /// Which listeners to trust ([`Access::same_user_or_root`] unless
    /// set). A listener this refuses gets nothing from this process.
    pub fn trust(mut self, trust: Access) -> Connector {
        self.trust = trust;
        self
    }

    /// How long to wait: to connect, for the listener's greeting, and then
    /// for each answer on the connection ([`DEFAULT_TIMEOUT`] unless set).
    pub fn timeout(mut self, timeout: Duration) -> Connector {
        self.timeout = timeout;
        self
    }

    /// Connects, checks the listener's credentials, and waits for its
    /// greeting.
    ///
    /// # Errors
    ///
    /// - `Io` with `ConnectionRefused` if nobody listens under an abstract
    ///   name (or at a path whose listener died), `NotFound` if there is
    ///   no socket file at a path: at once, never a wait;
    /// - `Rejected(PeerNotAllowed)` naming the listener's pid, uid and gid
    ///   if [`trust`](Self::trust) refuses it (nothing was sent to it);
    /// - `Rejected(RefusedByPeer)` if the listener's access policy refuses
    ///   this process;
    /// - `Timeout` if the listener did not accept within the timeout (its
    ///   queue is full, or it does not call `accept`);
    /// - `Disconnected` if it closed the connection before greeting.
    pub fn connect(&self) -> Result<Connection, Error> {
        let deadline = Instant::now().checked_add(self.timeout);
        let stream = self.connect_socket(deadline)?;
        let listener = Credentials::of_peer(&stream)?;
        if !self.trust.allows(&listener) {
            return Err(listener.not_allowed());
        }
        let connection = Connection::new(stream, listener, self.timeout)?;
        let left = deadline.map_or(self.timeout, |d| {
            d.saturating_duration_since(Instant::now())
        });
        connection.set_read_timeout(left)?;
        let (greeting, fds) = receive(&connection.stream)?;
        drop(fds);
        connection.set_read_timeout(self.timeout)?;
        if greeting.version != PROTOCOL_VERSION {
            return Err(Rejection::Mismatch {
                field: Field::Version,
                offered: u64::from(greeting.version),
                expected: u64::from(PROTOCOL_VERSION),
            }
            .into());
        }
        match greeting.kind {
            WELCOME => Ok(connection),
            REFUSE => Err(Rejection::RefusedByPeer {
                pid: greeting.pid,
                uid: greeting.uid,
                gid: greeting.gid,
            }
            .into()),
            other => Err(protocol_error(format!(
                "a message of kind {other} instead of a greeting"
            ))),
        }
    }

    /// A connected socket, retrying while the listener's queue is full.
    fn connect_socket(&self, deadline: Option<Instant>) -> Result<UnixStream, Error> {
        let addr = self.address.socket_addr()?;
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .map_err(|e| Error::io("creating a socket to connect to the service", e))?;
        let stream = UnixStream::from(fd);
        let mut pause = Duration::from_micros(50);
        loop {
            // std connects by address; the non-blocking socket makes a
            // full queue EAGAIN instead of a wait without a deadline.
            match connect_addr(&stream, &addr) {
                Ok(()) => break,
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) if deadline.map_or(true, |d| Instant::now() < d) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                Err(Errno::AGAIN) => return Err(Error::Timeout),
                Err(e) => return Err(Error::io("connecting to the fdring service", e)),
            }
        }
        stream
            .set_nonblocking(false)
            .map_err(|e| Error::io("making the service connection blocking", e))?;
        Ok(stream)
    }
}

/// `connect(2)` of `stream` to a std socket address (abstract or path).
fn connect_addr(stream: &UnixStream, addr: &SocketAddr) -> Result<(), Errno> {
    let addr = match (addr.as_abstract_name(), addr.as_pathname()) {
        (Some(name), _) => rustix::net::SocketAddrUnix::new_abstract_name(name)?,
        (None, Some(path)) => rustix::net::SocketAddrUnix::new(path)?,
        (None, None) => return Err(Errno::INVAL),
    };
    rustix::net::connect(stream, &addr)
}

// ---- the connection --------------------------------------------------------

/// A connection between a service's listener and one client, on which the
/// two agree on rings: one side offers a ring it made (keeping one end),
/// the other takes it (opening the other end) if it is what it expects.
///
/// Either side may offer and either may take; a connection may carry any
/// number of rings, taken in the order they were offered (a request ring
/// and a reply ring, a frame ring and a control ring). Each call waits at
/// most the connection's timeout for the peer. The rings outlive the
/// connection: drop it once the rings are agreed, or keep it to agree on
/// more later.
///
/// | this side calls | it keeps | the peer calls |
/// |---|---|---|
/// | [`offer_receiver`](Self::offer_receiver) | a [`Sender`] | [`take_receiver`](Self::take_receiver) |
/// | [`offer_sender`](Self::offer_sender) | a [`Receiver`] | [`take_sender`](Self::take_sender) |
/// | [`offer_frame_receiver`](Self::offer_frame_receiver) | a [`FrameSender`] | [`take_frame_receiver`](Self::take_frame_receiver) |
/// | [`offer_frame_sender`](Self::offer_frame_sender) | a [`FrameReceiver`] | [`take_frame_sender`](Self::take_frame_sender) |
///
/// A mismatch (another item type, size, alignment, type tag, end, or
/// protocol version) is refused by the taker before it opens anything;
/// both sides get `Rejected(Mismatch { field, offered, expected })`.
///
/// ```
/// use fdring::service::{self, Listener};
/// use fdring::{Builder, Error, Field, Rejection};
///
/// # let name = &format!("doc-connection-{}", std::process::id());
/// let listener = Listener::bind(name)?;
/// let server = std::thread::spawn(move || -> Result<(), Error> {
///     let mut connection = listener.accept()?;
///     // Requests come in as u32, replies go out as u64.
///     let mut requests = connection.take_receiver::<u32>(&Builder::new())?;
///     let mut replies = connection.offer_receiver::<u64>(&Builder::new().capacity(512))?;
///     let n = requests.recv()?;
///     replies.send(u64::from(n) * 2)?;
///     Ok(())
/// });
/// let mut connection = service::connect(name)?;
/// let mut requests = connection.offer_receiver::<u32>(&Builder::new().capacity(512))?;
/// // Expecting u32 replies where the server offers u64: refused, on both sides.
/// let refused = connection.take_receiver::<u32>(&Builder::new()).unwrap_err();
/// assert_eq!(
///     refused,
///     Error::Rejected(Rejection::Mismatch { field: Field::ItemSize, offered: 8, expected: 4 })
/// );
/// assert!(server.join().unwrap().is_err());
/// # Ok::<(), fdring::Error>(())
/// ```
pub struct Connection {
    stream: UnixStream,
    peer: Credentials,
}

impl Connection {
    fn new(stream: UnixStream, peer: Credentials, timeout: Duration) -> Result<Connection, Error> {
        let connection = Connection { stream, peer };
        connection.set_read_timeout(timeout)?;
        connection
            .stream
            .set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(|e| Error::io("setting the service connection's timeout", e))?;
        Ok(connection)
    }

    fn set_read_timeout(&self, timeout: Duration) -> Result<(), Error> {
        // A zero timeout means "none" to std: wait at least a microsecond.
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_micros(1))))
            .map_err(|e| Error::io("setting the service connection's timeout", e))
    }

    /// The process at the other end, as the kernel saw it when it
    /// connected (for a listener) or listened (for a client).
    pub fn peer(&self) -> Credentials {
        self.peer
    }

    /// How long each call waits for the peer from now on.
    ///
    /// # Errors
    ///
    /// `Io` if the socket refuses the timeout.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), Error> {
        self.set_read_timeout(timeout)
    }

    /// Makes a ring with `builder`, hands the peer its receiving end, and
    /// keeps the sending end once the peer took it
    /// ([`take_receiver`](Self::take_receiver)).
    ///
    /// # Errors
    ///
    /// What [`Builder::build`] returns; `Rejected(Mismatch)` if the peer
    /// expects another ring (naming the field and both values); the
    /// peer's reason if it could not open the ring; `Rejected(BadHandoff)`
    /// if the peer offered a ring as well instead of taking this one, or
    /// broke the protocol; `Timeout` if it did not answer in time;
    /// `Disconnected` if it hung up.
    pub fn offer_receiver<T: Pod>(&mut self, builder: &Builder) -> Result<Sender<T>, Error> {
        let (tx, rx) = builder.build::<T>()?;
        self.offer(Ring::items::<T>(Role::Receiver, builder), rx.into_fds()?)?;
        Ok(tx)
    }

    /// Makes a ring with `builder`, hands the peer its sending end, and
    /// keeps the receiving end once the peer took it
    /// ([`take_sender`](Self::take_sender)).
    ///
    /// # Errors
    ///
    /// As for [`offer_receiver`](Self::offer_receiver).
    pub fn offer_sender<T: Pod>(&mut self, builder: &Builder) -> Result<Receiver<T>, Error> {
        let (tx, rx) = builder.build::<T>()?;
        self.offer(Ring::items::<T>(Role::Sender, builder), tx.into_fds()?)?;
        Ok(rx)
    }

    /// Makes a byte ring of `builder`'s capacity for frames with payloads
    /// aligned to `align`, hands the peer its receiving end, and keeps a
    /// [`FrameSender`] once the peer took it
    /// ([`take_frame_receiver`](Self::take_frame_receiver) with the same
    /// alignment).
    ///
    /// # Errors
    ///
    /// As for [`offer_receiver`](Self::offer_receiver).
    ///
    /// # Panics
    ///
    /// If `align` is not a power of two from 8 to 64, as
    /// [`FrameSender::with_align`].
    pub fn offer_frame_receiver(
        &mut self,
        builder: &Builder,
        align: usize,
    ) -> Result<FrameSender, Error> {
        crate::frame::check_align(align);
        let (tx, rx) = builder.build::<u8>()?;
        let tx = FrameSender::with_align(tx, align);
        self.offer(Ring::frames(Role::Receiver, builder, align), rx.into_fds()?)?;
        Ok(tx)
    }

    /// Makes a byte ring for frames aligned to `align`, hands the peer its
    /// sending end, and keeps a [`FrameReceiver`] once the peer took it
    /// ([`take_frame_sender`](Self::take_frame_sender)).
    ///
    /// # Errors
    ///
    /// As for [`offer_receiver`](Self::offer_receiver).
    ///
    /// # Panics
    ///
    /// As for [`offer_frame_receiver`](Self::offer_frame_receiver).
    pub fn offer_frame_sender(
        &mut self,
        builder: &Builder,
        align: usize,
    ) -> Result<FrameReceiver, Error> {
        crate::frame::check_align(align);
        let (tx, rx) = builder.build::<u8>()?;
        let rx = FrameReceiver::with_align(rx, align);
        self.offer(Ring::frames(Role::Sender, builder, align), tx.into_fds()?)?;
        Ok(rx)
    }

    /// Waits for the peer's next offer, checks it is a ring of `T` whose
    /// receiving end is for this side (and has `builder`'s type tag, if it
    /// names one), opens it with `builder` and tells the peer.
    ///
    /// # Errors
    ///
    /// `Rejected(Mismatch)` naming the field and both values (the peer is
    /// told, and nothing is opened); what
    /// [`Builder::open_receiver`](crate::Builder::open_receiver) returns
    /// for the fds; `Timeout` if no offer came in time; `Disconnected` if
    /// the peer hung up; `Rejected(BadHandoff)` if it broke the protocol.
    pub fn take_receiver<T: Pod>(&mut self, builder: &Builder) -> Result<Receiver<T>, Error> {
        self.take(Ring::items::<T>(Role::Receiver, builder), |fds| {
            builder.open_receiver(fds)
        })
    }

    /// Waits for the peer's next offer, checks it is a ring of `T` whose
    /// sending end is for this side, opens it and tells the peer.
    ///
    /// # Errors
    ///
    /// As for [`take_receiver`](Self::take_receiver).
    pub fn take_sender<T: Pod>(&mut self, builder: &Builder) -> Result<Sender<T>, Error> {
        self.take(Ring::items::<T>(Role::Sender, builder), |fds| {
            builder.open_sender(fds)
        })
    }

    /// Waits for the peer's next offer, checks it is a frame ring aligned
    /// to `align` whose receiving end is for this side, opens it and tells
    /// the peer.
    ///
    /// # Errors
    ///
    /// As for [`take_receiver`](Self::take_receiver).
    ///
    /// # Panics
    ///
    /// As for [`offer_frame_receiver`](Self::offer_frame_receiver).
    pub fn take_frame_receiver(
        &mut self,
        builder: &Builder,
        align: usize,
    ) -> Result<FrameReceiver, Error> {
        // Check the alignment before anything is exchanged.
        crate::frame::check_align(align);
        self.take(Ring::frames(Role::Receiver, builder, align), |fds| {
            Ok(FrameReceiver::with_align(
                builder.open_receiver(fds)?,
                align,
            ))
        })
    }

    /// Waits for the peer's next offer, checks it is a frame ring aligned
    /// to `align` whose sending end is for this side, opens it and tells the
    /// peer.
    ///
    /// # Errors
    ///
    /// As for [`take_receiver`](Self::take_receiver).
    ///
    /// # Panics
    ///
    /// As for [`offer_frame_receiver`](Self::offer_frame_receiver).
    pub fn take_frame_sender(
        &mut self,
        builder: &Builder,
        align: usize,
    ) -> Result<FrameSender, Error> {
        crate::frame::check_align(align);
        self.take(Ring::frames(Role::Sender, builder, align), |fds| {
            Ok(FrameSender::with_align(builder.open_sender(fds)?, align))
        })
    }

    /// Sends an offer of `ring` with the peer's `fds`, and waits for the
    /// verdict.
    /// [`offer_receiver`](Self::offer_receiver) for items of a layout
    /// known only at run time (the C library's): the peer must take it
    /// with that layout ([`take_untyped_receiver`](Self::take_untyped_receiver),
    /// or [`take_receiver`](Self::take_receiver) of a type of that layout).
    ///
    /// # Errors
    ///
    /// As for [`offer_receiver`](Self::offer_receiver), and as for
    /// [`Builder::build_untyped`].
    ///
    /// ```
    /// use fdring::service::{self, Listener};
    /// use fdring::{Builder, ItemLayout};
    ///
    /// # let name = &format!("doc-untyped-{}", std::process::id());
    /// let listener = Listener::bind(name)?;
    /// let server = std::thread::spawn(move || -> Result<u64, fdring::Error> {
    ///     let mut rx = listener.accept()?.take_receiver::<u64>(&Builder::new())?;
    ///     rx.recv()
    /// });
    /// let mut connection = service::connect(name)?;
    /// let mut tx = connection.offer_untyped_receiver(&Builder::new().capacity(512), ItemLayout::new(8, 8))?;
    /// let lent = tx.try_reserve(1)?;
    /// // SAFETY: at least one free slot of 8 bytes, aligned to 8.
    /// unsafe { lent.ptr.cast::<u64>().write(7) };
    /// tx.commit(1)?;
    /// assert_eq!(server.join().unwrap()?, 7);
    /// # Ok::<(), fdring::Error>(())
    /// ```
    pub fn offer_untyped_receiver(
        &mut self,
        builder: &Builder,
        layout: ItemLayout,
    ) -> Result<UntypedSender, Error> {
        let (tx, rx) = builder.build_untyped(layout)?;
        self.offer(
            Ring::items_of(layout, Role::Receiver, builder),
            rx.into_fds()?,
        )?;
        Ok(tx)
    }

    /// [`offer_sender`](Self::offer_sender) for items of a layout known
    /// only at run time; see [`offer_untyped_receiver`](Self::offer_untyped_receiver).
    ///
    /// # Errors
    ///
    /// As for [`offer_untyped_receiver`](Self::offer_untyped_receiver).
    pub fn offer_untyped_sender(
        &mut self,
        builder: &Builder,
        layout: ItemLayout,
    ) -> Result<UntypedReceiver, Error> {
        let (tx, rx) = builder.build_untyped(layout)?;
        self.offer(
            Ring::items_of(layout, Role::Sender, builder),
            tx.into_fds()?,
        )?;
        Ok(rx)
    }

    /// [`take_receiver`](Self::take_receiver) for items of a layout known
    /// only at run time: the offer must name that size and alignment, and
    /// the ring is opened with [`Builder::open_untyped_receiver`].
    ///
    /// # Errors
    ///
    /// As for [`take_receiver`](Self::take_receiver).
    pub fn take_untyped_receiver(
        &mut self,
        builder: &Builder,
        layout: ItemLayout,
    ) -> Result<UntypedReceiver, Error> {
        self.take(Ring::items_of(layout, Role::Receiver, builder), |fds| {
            builder.open_untyped_receiver(fds, layout)
        })
    }

    /// [`take_sender`](Self::take_sender) for items of a layout known
    /// only at run time; see [`take_untyped_receiver`](Self::take_untyped_receiver).
    ///
    /// # Errors
    ///
    /// As for [`take_sender`](Self::take_sender).
    pub fn take_untyped_sender(
        &mut self,
        builder: &Builder,
        layout: ItemLayout,
    ) -> Result<UntypedSender, Error> {
        self.take(Ring::items_of(layout, Role::Sender, builder), |fds| {
            builder.open_untyped_sender(fds, layout)
        })
    }

    fn offer(&mut self, ring: Ring, fds: Fds) -> Result<(), Error> {
        let offer = Message::with_ring(OFFER, &ring);
        send(&self.stream, &offer, &[fds.memfd.as_fd(), fds.wake.as_fd()])?;
        // Our copies go now: the peer's end must hang up when it dies.
        drop(fds);
        let (answer, stray) = receive(&self.stream)?;
        if answer.kind == OFFER {
            return Err(protocol_error(
                "the peer offered a ring too, instead of taking this one (one side offers, \
                 the other takes)"
                    .to_owned(),
            ));
        }
        if !stray.is_empty() {
            return Err(protocol_error(format!(
                "an answer carrying {} fds",
                stray.len()
            )));
        }
        match answer.kind {
            ACCEPT => Ok(()),
            DECLINE => match field_of(answer.reason) {
                Some(field) => Err(Rejection::Mismatch {
                    field,
                    offered: value(&offer, field),
                    expected: value(&answer, field),
                }
                .into()),
                None if answer.reason == REASON_OPEN_FAILED => Err(Rejection::BadHandoff(
                    "the peer could not open the ring offered: its own checks of the \
                     memfd and socket refused them (see the peer's error)"
                        .to_owned(),
                )
                .into()),
                None => Err(protocol_error(format!(
                    "a DECLINE with the unknown reason {}",
                    answer.reason
                ))),
            },
            other => Err(protocol_error(format!(
                "a message of kind {other} instead of an answer"
            ))),
        }
    }

    /// Waits for an offer, checks it against `expected`, opens it with
    /// `open` and answers.
    fn take<E>(
        &mut self,
        expected: Ring,
        open: impl FnOnce(Fds) -> Result<E, Error>,
    ) -> Result<E, Error> {
        let (offer, fds) = receive(&self.stream)?;
        if offer.kind != OFFER {
            return Err(protocol_error(format!(
                "a message of kind {} instead of an offer",
                offer.kind
            )));
        }
        if let Some((field, offered, wanted)) = expected.mismatch(&offer) {
            let decline = Message {
                reason: field_code(field),
                ..Message::with_ring(DECLINE, &expected)
            };
            let _ = send(&self.stream, &decline, &[]);
            return Err(Rejection::Mismatch {
                field,
                offered,
                expected: wanted,
            }
            .into());
        }
        let opened = match <[OwnedFd; 2]>::try_from(fds) {
            Ok([memfd, wake]) => open(Fds { memfd, wake }),
            Err(fds) => Err(protocol_error(format!(
                "an offer carrying {} fds, not 2",
                fds.len()
            ))),
        };
        let answer = match &opened {
            Ok(_) => Message::new(ACCEPT),
            Err(_) => Message {
                reason: REASON_OPEN_FAILED,
                ..Message::with_ring(DECLINE, &expected)
            },
        };
        send(&self.stream, &answer, &[])?;
        opened
    }
}

impl AsFd for Connection {
    /// The connection's socket: readable when the peer sent something (an
    /// offer, an answer) or hung up.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}
