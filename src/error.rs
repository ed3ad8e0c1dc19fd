//! Errors: what went wrong, in words that name the cause.

use std::fmt;
use std::io;

/// Everything an fdring operation can fail with.
///
/// The ring operations return the first five variants, in the manner of
/// `std::sync::mpsc` and `crossbeam-channel`; opening, creating and handing
/// over a ring return `Rejected`, `Exhausted` and `Io`.
///
/// ```
/// let (mut tx, mut rx) = fdring::channel::<u32>(16)?;
/// assert_eq!(rx.try_recv(), Err(fdring::Error::Empty));
/// drop(tx);
/// assert_eq!(rx.try_recv(), Err(fdring::Error::Disconnected));
/// # Ok::<(), fdring::Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The ring has no free slot (only from the `try_` calls).
    Full,
    /// The ring has no item ready (only from the `try_` calls).
    Empty,
    /// A `_timeout` call waited for its whole timeout without progress, or
    /// [`handoff::recv_fds`](crate::handoff::recv_fds) received nothing
    /// within its socket's read timeout.
    Timeout,
    /// The other end is gone: dropped, or its process died. A receiver gets
    /// this only after it has received every item that was published.
    Disconnected,
    /// The call needs the other end gone (closed or dead), and it is not:
    /// for instance [`Sender::take_unread`](crate::Sender::take_unread),
    /// whose items are still the living receiver's to read.
    PeerAlive,
    /// The peer broke the protocol (for instance an index that went
    /// backwards). The ring is unusable from then on; every later call
    /// that looks at the ring returns this again (a call with nothing to
    /// do, such as sending an empty slice, returns `Ok(0)`).
    Corrupted(Corruption),
    /// The memfd, its header or one of the fds handed over was not
    /// acceptable; nothing was mapped.
    Rejected(Rejection),
    /// A frame of `len` bytes was asked for, but the ring can never hold a
    /// frame of more than `max` bytes (see `FrameSender::max_frame_len`).
    FrameTooLarge {
        /// The length asked for.
        len: u64,
        /// The largest frame this ring can hold.
        max: u64,
    },
    /// The payload of the next frame is not aligned as this
    /// [`FrameReceiver`](crate::FrameReceiver) requires: the two ends were
    /// made with different alignments (`FrameSender::with_align` and
    /// `FrameReceiver::with_align` must agree). The frame is not released;
    /// every later receive returns this again.
    FrameAlign {
        /// The receiver's alignment in bytes.
        expected: u64,
        /// The largest power of two (at most 64) the payload's address is a
        /// multiple of: what the sender aligned it to.
        found: u64,
    },
    /// An untyped end was asked to commit (or release) more items than it
    /// was lent by its last reserve
    /// ([`UntypedSender::commit`](crate::UntypedSender::commit),
    /// [`UntypedReceiver::release`](crate::UntypedReceiver::release)):
    /// nothing was published or released.
    OverCommit {
        /// The count asked for.
        count: u64,
        /// What is still lent.
        lent: u64,
    },
    /// The machine, or this end's limits, cannot give what was asked for,
    /// or this end has used up what a ring can ever do. Nothing the peer
    /// controls makes this end crash instead.
    Exhausted(Exhaustion),
    /// A system call failed.
    Io {
        /// What fdring was doing.
        context: &'static str,
        /// The error the kernel returned.
        source: io::Error,
    },
}

/// How the peer broke the protocol, as detected from the shared indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// `write_index - read_index` was negative or above the capacity, or
    /// the write index was beyond 2^62 (more items than a stream can move).
    IndexOutOfRange {
        /// The producer's index as read (or as known to the producer).
        write: u64,
        /// The consumer's index as read (or as known to the consumer).
        read: u64,
        /// The ring's capacity.
        capacity: u64,
    },
    /// A peer index was lower than an earlier reading of it.
    IndexWentBack {
        /// The value read earlier.
        before: u64,
        /// The value read now.
        now: u64,
    },
    /// A frame record in a byte ring is not valid (see `FrameReceiver`).
    BadFrame {
        /// The record's offset in the stream, counted from where this
        /// receiver started.
        at: u64,
        /// Where the header claims the record ends, relative to `at`;
        /// `None` if it is not a frame header at all (wrong marker or
        /// padding, or a misaligned payload).
        claimed_end: Option<u64>,
        /// The bytes published from `at` on.
        ready: u64,
    },
}

/// What ran out; see [`Error::Exhausted`]. Each variant names what was
/// asked for and what there was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exhaustion {
    /// A new ring's memory (its memfd is filled in at creation, so the
    /// memory is committed) is more than the machine has available: the
    /// kernel's `MemAvailable` plus free swap, or less if this process's
    /// cgroup sets a lower `memory.max`.
    Memory {
        /// Bytes the ring needs: the header page and the data region.
        requested: u64,
        /// Bytes available when it was checked.
        available: u64,
    },
    /// Huge pages were asked for (`Builder::huge_pages`) and too few are free.
    HugePages {
        /// Huge pages the ring needs.
        requested: u64,
        /// Huge pages free and not reserved by a mapping
        /// (`HugePages_Free` − `HugePages_Rsvd` in `/proc/meminfo`, for
        /// the memfd's huge page size; the pool is sized by
        /// `/proc/sys/vm/nr_hugepages`).
        free: u64,
    },
    /// `mlock` was asked for (`Builder::mlock`) and refused: the mapping is
    /// more than `RLIMIT_MEMLOCK` lets this process lock.
    Memlock {
        /// Bytes to lock: this end's whole mapping.
        requested: u64,
        /// The soft `RLIMIT_MEMLOCK`, in bytes (`u64::MAX` if unlimited).
        limit: u64,
    },
    /// A heap allocation to copy a frame out of the ring failed.
    Allocation {
        /// Bytes asked for.
        requested: u64,
    },
    /// This end's index reached the format's limit of 2^62 items
    /// (`docs/format.md`), or is too near it for the frame to be sent: the
    /// stream cannot go on, make a new ring. Nothing past the limit was
    /// published.
    Indices {
        /// This end's index.
        index: u64,
    },
}

/// One of the two ends of a ring.
///
/// ```
/// assert_eq!(fdring::Role::Sender.to_string(), "sender");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The producer: [`Sender`](crate::Sender), [`FrameSender`](crate::FrameSender).
    Sender,
    /// The consumer: [`Receiver`](crate::Receiver), [`FrameReceiver`](crate::FrameReceiver).
    Receiver,
}

/// A field of the `service` negotiation; see [`Rejection::Mismatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// The service protocol's version.
    Version,
    /// Items or frames.
    Shape,
    /// The end the taking side gets: 0 the sender, 1 the receiver.
    End,
    /// `size_of` the item type.
    ItemSize,
    /// `align_of` the item type.
    ItemAlign,
    /// The type tag.
    TypeTag,
    /// The frame alignment (frame rings only).
    FrameAlign,
}

/// Why a memfd, a header or an fd was refused when opening or creating a
/// ring. Each variant names the check that failed and, where there is one,
/// the value found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// A capacity of 0 items was asked for, or found in a header.
    ZeroCapacity,
    /// The item type has size 0; a ring of zero-sized items moves nothing.
    ZeroSizedItem,
    /// The capacity cannot be laid out: its data region overflows, or is not
    /// a whole number of pages.
    BadCapacity {
        /// Capacity in items.
        capacity: u64,
        /// Item size in bytes.
        item_size: u32,
        /// The page size the data region must be a multiple of.
        page_size: u64,
    },
    /// The alignment is not a power of two dividing the item size and at
    /// most a page.
    BadAlign {
        /// Alignment found.
        align: u32,
        /// Item size found.
        item_size: u32,
    },
    /// The fd is not a memfd (it does not support seals).
    NotMemfd,
    /// The memfd lacks a seal the format requires.
    MissingSeals {
        /// The seals it has, as the `F_GET_SEALS` bit mask.
        found: u32,
        /// The seals required, as a bit mask.
        required: u32,
    },
    /// The memfd is sealed against writing (`F_SEAL_WRITE` or
    /// `F_SEAL_FUTURE_WRITE`), so neither end could publish.
    WriteSealed {
        /// The seals it has, as the `F_GET_SEALS` bit mask.
        found: u32,
    },
    /// The fd of the memfd was opened read-only; both ends write to it.
    NotWritable,
    /// The memfd is smaller than one header page.
    TooSmall {
        /// Its size in bytes.
        found: u64,
        /// The smallest acceptable size.
        minimum: u64,
    },
    /// The memfd's size is not what its header describes.
    SizeMismatch {
        /// Size implied by the header.
        expected: u64,
        /// Size of the memfd.
        found: u64,
    },
    /// The header does not start with [`MAGIC`](crate::MAGIC).
    BadMagic {
        /// The first 8 bytes, as a native-endian integer.
        found: u64,
    },
    /// The header's format version is not one this crate speaks.
    UnsupportedVersion {
        /// Version found.
        found: u32,
        /// Version supported.
        supported: u32,
    },
    /// The header's flags word has bits this version does not know.
    UnknownFlags {
        /// The flags found.
        found: u32,
    },
    /// The ring's item size is not `size_of::<T>()`.
    ItemSize {
        /// `size_of::<T>()`.
        expected: u32,
        /// Item size in the header.
        found: u32,
    },
    /// The ring's item alignment is not `align_of::<T>()`.
    ItemAlign {
        /// `align_of::<T>()`.
        expected: u32,
        /// Item alignment in the header.
        found: u32,
    },
    /// The ring's type tag is not the one asked for.
    TypeTag {
        /// Tag asked for.
        expected: u64,
        /// Tag in the header.
        found: u64,
    },
    /// The data region does not start on a page boundary after the header.
    BadDataOffset {
        /// Offset found.
        found: u64,
        /// This system's page size.
        page_size: u64,
    },
    /// The fd meant to be the end's wake-up socket is not a connected Unix
    /// stream socket.
    NotWakeSocket {
        /// What it is instead, for instance `"not a socket"`.
        found: &'static str,
    },
    /// The fds received over a socket or from the environment were not a
    /// well-formed fdring hand-off; the text says what was wrong.
    BadHandoff(String),
    /// The ring is larger than this end accepts (`Builder::max_capacity`):
    /// mapping it could commit more memory than the user allowed.
    TooLarge {
        /// Bytes of the ring's data region.
        bytes: u64,
        /// The most this end accepts, in bytes.
        max: u64,
    },
    /// The header's indices are not a valid ring state: `write - read` is
    /// not in `0..=capacity`, or the write index is past 2^62.
    BadIndices {
        /// The write index found.
        write: u64,
        /// The read index found.
        read: u64,
        /// The ring's capacity.
        capacity: u64,
    },
    /// This side does not allow the process at the other end of a `service`
    /// connection (its credentials come from the kernel, `SO_PEERCRED`).
    PeerNotAllowed {
        /// The peer's process id.
        pid: u32,
        /// The peer's user id.
        uid: u32,
        /// The peer's group id.
        gid: u32,
    },
    /// The listener of a `service` refused this process, whose credentials
    /// it saw as these.
    RefusedByPeer {
        /// This process's id, as the listener saw it.
        pid: u32,
        /// This process's user id, as the listener saw it.
        uid: u32,
        /// This process's group id, as the listener saw it.
        gid: u32,
    },
    /// The two sides of a `service` connection disagree on a ring: what one
    /// offered is not what the other expects.
    Mismatch {
        /// What they disagree on.
        field: Field,
        /// The offering side's value.
        offered: u64,
        /// The taking side's value.
        expected: u64,
    },
    /// The wake-up socket is not one of the two made for this ring: the
    /// bundle mixes the memfd of one ring with the socket of another.
    ForeignWakeSocket {
        /// The socket's inode number.
        found: u64,
    },
    /// The bundle is the other end's: its wake-up socket is the one the
    /// ring made for `bundle`, and it was opened as `opened_as`.
    WrongRole {
        /// Whose bundle it is.
        bundle: Role,
        /// The end it was opened as.
        opened_as: Role,
    },
}

impl Error {
    pub(crate) fn io(context: &'static str, source: impl Into<io::Error>) -> Error {
        Error::Io {
            context,
            source: source.into(),
        }
    }
}

impl PartialEq for Error {
    /// Two errors are equal if they are the same variant with equal
    /// contents; two `Io` errors are equal if their context and
    /// [`io::ErrorKind`] are.
    fn eq(&self, other: &Error) -> bool {
        match (self, other) {
            (Error::Full, Error::Full)
            | (Error::Empty, Error::Empty)
            | (Error::Timeout, Error::Timeout)
            | (Error::Disconnected, Error::Disconnected)
            | (Error::PeerAlive, Error::PeerAlive) => true,
            (Error::FrameTooLarge { len: a, max: x }, Error::FrameTooLarge { len: b, max: y }) => {
                a == b && x == y
            }
            (
                Error::FrameAlign {
                    expected: a,
                    found: x,
                },
                Error::FrameAlign {
                    expected: b,
                    found: y,
                },
            ) => a == b && x == y,
            (Error::OverCommit { count: a, lent: x }, Error::OverCommit { count: b, lent: y }) => {
                a == b && x == y
            }
            (Error::Exhausted(a), Error::Exhausted(b)) => a == b,
            (Error::Corrupted(a), Error::Corrupted(b)) => a == b,
            (Error::Rejected(a), Error::Rejected(b)) => a == b,
            (
                Error::Io {
                    context: a,
                    source: x,
                },
                Error::Io {
                    context: b,
                    source: y,
                },
            ) => a == b && x.kind() == y.kind(),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Full => f.write_str("the ring is full"),
            Error::Empty => f.write_str("the ring is empty"),
            Error::Timeout => f.write_str("timed out waiting on the ring (or for a hand-off)"),
            Error::Disconnected => f.write_str("the other end of the ring is gone"),
            Error::PeerAlive => f.write_str(
                "the other end of the ring is still there (neither closed nor dead): \
                 what it has not read is still its own",
            ),
            Error::Corrupted(c) => write!(f, "the peer corrupted the ring: {c}"),
            Error::Rejected(r) => write!(f, "ring rejected: {r}"),
            Error::FrameTooLarge { len, max } => write!(
                f,
                "a frame of {len} bytes is larger than this ring can ever hold \
                 ({max} bytes at most)"
            ),
            Error::FrameAlign { expected, found } => write!(
                f,
                "the sender aligned this frame's payload to {found} bytes, but this receiver \
                 expects {expected}: make both ends with the same alignment"
            ),
            Error::OverCommit { count, lent } => write!(
                f,
                "asked to commit or release {count} items, but only {lent} are lent by the \
                 last reserve"
            ),
            Error::Exhausted(e) => e.fmt(f),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl fmt::Display for Exhaustion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exhaustion::Memory {
                requested,
                available,
            } => write!(
                f,
                "a ring of {requested} bytes needs more memory than is available \
                 ({available} bytes: MemAvailable plus free swap, within the cgroup's \
                 memory.max)"
            ),
            Exhaustion::HugePages { requested, free } => write!(
                f,
                "the ring needs {requested} huge pages but {free} are free \
                 (/proc/sys/vm/nr_hugepages sizes the pool)"
            ),
            Exhaustion::Memlock { requested, limit } => {
                let limit = if limit == u64::MAX {
                    "unlimited".to_owned()
                } else {
                    format!("{limit} bytes")
                };
                write!(
                    f,
                    "mlock of {requested} bytes refused: RLIMIT_MEMLOCK is {limit} \
                     (raise it with ulimit -l or setrlimit)"
                )
            }
            Exhaustion::Allocation { requested } => write!(
                f,
                "could not allocate {requested} bytes to copy a frame out of the ring"
            ),
            Exhaustion::Indices { index } => write!(
                f,
                "this end's index is {index}, at (or, for this frame, too near) the format's \
                 limit of 2^62 items: the stream cannot go on in this ring"
            ),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
        })
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Corruption::IndexOutOfRange {
                write,
                read,
                capacity,
            } => write!(
                f,
                "write index {write} and read index {read} are not 0..={capacity} items apart"
            ),
            Corruption::IndexWentBack { before, now } => {
                write!(f, "a peer index went back from {before} to {now}")
            }
            Corruption::BadFrame {
                at,
                claimed_end: Some(end),
                ready,
            } => write!(
                f,
                "the frame at stream offset {at} claims {end} bytes, but only {ready} are published"
            ),
            Corruption::BadFrame {
                at,
                claimed_end: None,
                ..
            } => write!(
                f,
                "the record at stream offset {at} is not a frame header (marker, padding or \
                 alignment)"
            ),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::ZeroCapacity => f.write_str("capacity is 0 items"),
            Rejection::ZeroSizedItem => f.write_str("the item type has size 0"),
            Rejection::BadCapacity {
                capacity,
                item_size,
                page_size,
            } => write!(
                f,
                "capacity {capacity} x {item_size}-byte items is not a whole number of \
                 {page_size}-byte pages that fits the address space"
            ),
            Rejection::BadAlign { align, item_size } => write!(
                f,
                "item alignment {align} is not a power of two dividing the item size {item_size}"
            ),
            Rejection::NotMemfd => f.write_str("the fd is not a memfd (it has no seals)"),
            Rejection::MissingSeals { found, required } => write!(
                f,
                "the memfd has seals {found:#x} but needs at least {required:#x} \
                 (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW)"
            ),
            Rejection::WriteSealed { found } => write!(
                f,
                "the memfd has seals {found:#x}, which forbid writing (F_SEAL_WRITE or \
                 F_SEAL_FUTURE_WRITE)"
            ),
            Rejection::NotWritable => f.write_str("the memfd's fd is not open for writing"),
            Rejection::TooSmall { found, minimum } => write!(
                f,
                "the memfd is {found} bytes, smaller than the {minimum}-byte header page"
            ),
            Rejection::SizeMismatch { expected, found } => write!(
                f,
                "the memfd is {found} bytes but its header describes {expected} bytes"
            ),
            Rejection::BadMagic { found } => {
                write!(f, "bad magic {found:#018x}: not an fdring header")
            }
            Rejection::UnsupportedVersion { found, supported } => write!(
                f,
                "format version {found} is not supported (this crate speaks {supported})"
            ),
            Rejection::UnknownFlags { found } => {
                write!(f, "unknown header flags {found:#x}")
            }
            Rejection::ItemSize { expected, found } => write!(
                f,
                "the ring holds {found}-byte items, this end expects {expected}-byte items"
            ),
            Rejection::ItemAlign { expected, found } => write!(
                f,
                "the ring's items are {found}-byte aligned, this end expects {expected}"
            ),
            Rejection::TypeTag { expected, found } => write!(
                f,
                "the ring's type tag is {found:#x}, this end expects {expected:#x}"
            ),
            Rejection::BadDataOffset { found, page_size } => write!(
                f,
                "data offset {found} is not a multiple of the {page_size}-byte page \
                 after the header"
            ),
            Rejection::NotWakeSocket { found } => write!(
                f,
                "the wake-up fd must be a connected Unix stream socket, but it is {found}"
            ),
            Rejection::BadHandoff(what) => write!(f, "bad hand-off: {what}"),
            Rejection::TooLarge { bytes, max } => write!(
                f,
                "the ring's data region is {bytes} bytes, more than the {max} bytes this end \
                 accepts (Builder::max_capacity)"
            ),
            Rejection::BadIndices {
                write,
                read,
                capacity,
            } => write!(
                f,
                "the header's write index {write} and read index {read} are not 0..={capacity} \
                 items apart (or the write index is past 2^62)"
            ),
            Rejection::PeerNotAllowed { pid, uid, gid } => write!(
                f,
                "the peer process {pid} runs as uid {uid} gid {gid}, which this side does not \
                 allow"
            ),
            Rejection::RefusedByPeer { pid, uid, gid } => write!(
                f,
                "the listener refused this process ({pid}, uid {uid} gid {gid}): its access \
                 policy does not allow it"
            ),
            Rejection::Mismatch {
                field,
                offered,
                expected,
            } => {
                let show = |value: u64| match field {
                    Field::Shape if value == 0 => "items".to_owned(),
                    Field::Shape if value == 1 => "frames".to_owned(),
                    Field::End if value == 0 => "the sender".to_owned(),
                    Field::End if value == 1 => "the receiver".to_owned(),
                    Field::TypeTag => format!("{value:#x}"),
                    _ => value.to_string(),
                };
                let what = match field {
                    Field::Version => "service protocol version",
                    Field::Shape => "ring of",
                    Field::End => "end for the taker:",
                    Field::ItemSize => "item size",
                    Field::ItemAlign => "item alignment",
                    Field::TypeTag => "type tag",
                    Field::FrameAlign => "frame alignment",
                };
                write!(
                    f,
                    "the peer offered {what} {}, but the taking side expects {}",
                    show(*offered),
                    show(*expected)
                )
            }
            Rejection::ForeignWakeSocket { found } => write!(
                f,
                "the wake-up socket (inode {found}) belongs to another ring: the bundle mixes \
                 fds of two rings"
            ),
            Rejection::WrongRole { bundle, opened_as } => write!(
                f,
                "these are the {bundle}'s fds; they cannot be opened as the {opened_as}"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<Rejection> for Error {
    fn from(rejection: Rejection) -> Error {
        Error::Rejected(rejection)
    }
}

impl From<Corruption> for Error {
    fn from(corruption: Corruption) -> Error {
        Error::Corrupted(corruption)
    }
}

impl From<Exhaustion> for Error {
    fn from(exhaustion: Exhaustion) -> Error {
        Error::Exhausted(exhaustion)
    }
}

impl Rejection {
    /// Whether the caller asked for something that cannot be (a capacity of
    /// 0, an item type or tag other than the ring's), rather than the fds
    /// or the header being bad.
    fn is_caller_mistake(&self) -> bool {
        matches!(
            self,
            Rejection::ZeroCapacity
                | Rejection::ZeroSizedItem
                | Rejection::BadCapacity { .. }
                | Rejection::ItemSize { .. }
                | Rejection::ItemAlign { .. }
                | Rejection::TypeTag { .. }
                | Rejection::WrongRole { .. }
                | Rejection::Mismatch { .. }
        )
    }
}

impl From<Error> for io::Error {
    /// Maps each variant to the [`io::ErrorKind`] a socket would use:
    /// `Disconnected` is `BrokenPipe`, `Full`/`Empty` are `WouldBlock`, a
    /// caller's mistake (a capacity of 0, an item type or type tag that is
    /// not the ring's, a frame too large) is `InvalidInput`, corruption and
    /// the other rejections are `InvalidData`, running out of memory is
    /// `OutOfMemory`. [`Error::from`] turns the result back into the same
    /// `Error`.
    ///
    /// ```
    /// let error = fdring::channel::<u64>(0).unwrap_err();
    /// let io = std::io::Error::from(error);
    /// assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
    /// assert!(matches!(fdring::Error::from(io), fdring::Error::Rejected(_)));
    /// ```
    fn from(error: Error) -> io::Error {
        let kind = match &error {
            Error::Full | Error::Empty => io::ErrorKind::WouldBlock,
            Error::Timeout => io::ErrorKind::TimedOut,
            Error::Disconnected => io::ErrorKind::BrokenPipe,
            Error::PeerAlive => io::ErrorKind::Other,
            Error::Rejected(r) if r.is_caller_mistake() => io::ErrorKind::InvalidInput,
            Error::Rejected(Rejection::PeerNotAllowed { .. } | Rejection::RefusedByPeer { .. }) => {
                io::ErrorKind::PermissionDenied
            }
            Error::Corrupted(_) | Error::Rejected(_) | Error::FrameAlign { .. } => {
                io::ErrorKind::InvalidData
            }
            Error::FrameTooLarge { .. } | Error::OverCommit { .. } => io::ErrorKind::InvalidInput,
            Error::Exhausted(Exhaustion::Indices { .. }) => io::ErrorKind::Other,
            Error::Exhausted(_) => io::ErrorKind::OutOfMemory,
            Error::Io { source, .. } => source.kind(),
        };
        io::Error::new(kind, error)
    }
}

impl From<io::Error> for Error {
    /// An `io::Error` made from an fdring [`Error`] gives that error back;
    /// any other becomes [`Error::Io`] with the context `"I/O"`, so that `?`
    /// works in functions returning `fdring::Error`.
    ///
    /// ```
    /// fn read_config() -> Result<String, fdring::Error> {
    ///     Ok(std::fs::read_to_string("/nonexistent/fdring.conf")?)
    /// }
    /// assert!(matches!(read_config(), Err(fdring::Error::Io { context: "I/O", .. })));
    /// ```
    fn from(error: io::Error) -> Error {
        if error.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            let inner = error.into_inner().expect("checked above");
            return *inner.downcast::<Error>().expect("checked above");
        }
        Error::io("I/O", error)
    }
}
