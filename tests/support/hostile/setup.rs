//! What a script says before its operations, and the fds made from that:
//! the memfd (a ring, one made by hand, or something else), the wake-up
//! socket and the peer's hold on it, the liveness, the hand-off message;
//! and what opening must then give. Knows nothing of the operations that
//! follow.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use bytemuck::Pod;
use fdring::{Builder, Error, Fds, Liveness, Rejection};
use rustix::event::EventfdFlags;
use rustix::fs::{MemfdFlags, Mode, OFlags, SealFlags};
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use super::script::{ItemKind, PreWrite, Script, Target};
use super::{
    CAPACITY, CONFIG_BYTES, DATA_OFFSET, HEADER_BYTES, ITEM_ALIGN, ITEM_SIZE, MAGIC, READ_INDEX,
    TYPE_TAG, VERSION, WAKE_INODES, WRITE_INDEX,
};

// ---- what is handed over ---------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemfdKind {
    /// Made by `Builder::build`.
    Ring,
    /// Made here: a valid ring, sealed.
    Handmade,
    Unsealed,
    /// Sealed with these bits (`F_SEAL_SEAL` 1, `SHRINK` 2, `GROW` 4,
    /// `WRITE` 8, `FUTURE_WRITE` 16).
    SomeSeals(u8),
    /// Sealed, and smaller than a page.
    TooSmall(u8),
    /// Sealed, and a size that is not page-aligned.
    OddSize(u16),
    RegularFile,
    /// The crate's memfd opened again through `/proc/self/fd` (read-only,
    /// write-only, `O_PATH`, or read-write).
    Reopened(u8),
    Pipe,
    EventFd,
    Socket,
}

/// What is handed over as the end's wake-up socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WakeKind {
    /// The crate's own socket end, for a ring the crate made; for the
    /// others, one end of the pair made for the ring as the crate makes it
    /// (blocking, its inodes in the header).
    Real,
    /// The ring's socket for the other end: a bundle opened as the wrong
    /// end, refused (`WrongRole`).
    OtherEnd,
    /// One end of a fresh connected stream pair made here (with std),
    /// whose other end the peer holds: not the ring's, refused
    /// (`ForeignWakeSocket`).
    Fresh,
    /// The ring's own socket for this end, whose other end is already
    /// closed: accepted (it is connected), and the peer is gone from the
    /// start.
    HungUp,
    Datagram,
    SeqPacket,
    /// A Unix stream socket that was never connected.
    Unconnected,
    /// An `AF_INET` datagram socket.
    Inet,
    EventFd,
    Pipe,
    /// The memfd itself.
    Memfd,
}

impl WakeKind {
    fn from_byte(b: u8) -> WakeKind {
        match b % 16 {
            0..=5 => WakeKind::Real,
            6 => WakeKind::OtherEnd,
            7 => WakeKind::Fresh,
            8 => WakeKind::HungUp,
            9 => WakeKind::Datagram,
            10 => WakeKind::SeqPacket,
            11 => WakeKind::Unconnected,
            12 => WakeKind::Inet,
            13 => WakeKind::EventFd,
            14 => WakeKind::Pipe,
            _ => WakeKind::Memfd,
        }
    }

    /// Whether it is a connected Unix stream socket, which the end takes
    /// if it is the ring's and the end's.
    fn accepted(self) -> bool {
        matches!(
            self,
            WakeKind::Real | WakeKind::OtherEnd | WakeKind::Fresh | WakeKind::HungUp
        )
    }

    /// What `Rejection::NotWakeSocket` must say it found instead.
    fn found(self) -> &'static str {
        match self {
            WakeKind::Real | WakeKind::OtherEnd | WakeKind::Fresh | WakeKind::HungUp => "",
            WakeKind::Datagram | WakeKind::SeqPacket => "a Unix socket that is not a stream socket",
            WakeKind::Unconnected => "a Unix stream socket that is not connected",
            WakeKind::Inet => "a socket of another address family",
            WakeKind::EventFd | WakeKind::Pipe | WakeKind::Memfd => "not a socket",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LivenessKind {
    None,
    /// A socket whose other end the peer keeps (until it drops it).
    Socket,
    /// A socket whose other end is already closed.
    SocketGone,
    /// A pidfd of this very process: never ready.
    Pidfd,
}

/// Everything the script says before the operations.
#[derive(Debug, Clone)]
pub(super) struct Setup {
    kind: MemfdKind,
    pub(super) receiver: bool,
    pub(super) item: ItemKind,
    ring_item: ItemKind,
    geometry: u8,
    header_tag: u64,
    pub(super) expect_tag: Option<u64>,
    wake: WakeKind,
    /// Copies of its end of the pair the peer keeps (1 or 2).
    peer_copies: usize,
    /// The honest end's socket is handed over with `O_NONBLOCK` set.
    nonblocking: bool,
    liveness: LivenessKind,
    pub(super) spin: Duration,
    /// The fds come through `handoff::recv_fds`, in a message the peer
    /// shapes with this byte (see [`Setup::send_handoff`]).
    handoff: Option<u8>,
    fill_config: Option<[u8; CONFIG_BYTES]>,
    writes: Vec<PreWrite>,
}

/// What opening must give.
#[derive(Clone)]
pub(super) enum Expect {
    /// A valid ring: opening must succeed.
    Open,
    /// Must be refused, with an error for which the function is true.
    Refuse(&'static str, fn(&Error) -> bool),
    /// Must be refused because the wake-up fd is not a connected Unix
    /// stream socket, but this.
    NotWakeSocket(&'static str),
    /// The header was scribbled: opened, or refused with a `Rejected`.
    OpenOrRejected,
    /// Must be refused: the socket is not one of the ring's pair.
    ForeignWake,
    /// Must be refused: the socket is the ring's other end's.
    WrongRole,
    /// Must be refused: the header's indices are not a ring state.
    BadIndices {
        write: u64,
        read: u64,
        capacity: u64,
    },
}

impl Expect {
    /// Whether the header passes every check before its indices: opening
    /// then refuses indices out of range first.
    pub(super) fn header_valid(&self) -> bool {
        matches!(
            self,
            Expect::Open | Expect::NotWakeSocket(_) | Expect::ForeignWake | Expect::WrongRole
        )
    }
}

impl Setup {
    pub(super) fn parse(s: &mut Script) -> Setup {
        let kind = match s.byte() % 16 {
            0..=3 => MemfdKind::Ring,
            4..=6 => MemfdKind::Handmade,
            7 => MemfdKind::Unsealed,
            8 => MemfdKind::SomeSeals(s.byte()),
            9 => MemfdKind::TooSmall(s.byte()),
            10 => MemfdKind::OddSize(s.u16()),
            11 => MemfdKind::RegularFile,
            12 => MemfdKind::Reopened(s.byte()),
            13 => MemfdKind::Pipe,
            14 => MemfdKind::EventFd,
            _ => MemfdKind::Socket,
        };
        let role = s.byte();
        let item = ItemKind::from_index(usize::from(role >> 1 & 3));
        let ring_item = if role >> 3 & 3 == 3 {
            ItemKind::from_index(item.index() + 1 + usize::from(role >> 5 & 1))
        } else {
            item
        };
        let geometry = s.byte();
        let tag = s.byte();
        let header_tag = match tag & 3 {
            0 => 0,
            1 => 0x5eed,
            2 => u64::MAX,
            _ => s.u64(),
        };
        let expect_tag = match tag >> 2 & 3 {
            2 => Some(header_tag),
            3 => Some(header_tag ^ 1),
            _ => None,
        };
        let wake = WakeKind::from_byte(s.byte());
        let hold = s.byte();
        let l = s.byte();
        let liveness = match l % 8 {
            5 => LivenessKind::Socket,
            6 => LivenessKind::SocketGone,
            7 => LivenessKind::Pidfd,
            _ => LivenessKind::None,
        };
        let spin = match l >> 3 & 3 {
            1 => Duration::from_micros(1),
            3 => fdring::DEFAULT_SPIN,
            _ => Duration::ZERO,
        };
        let handoff = (l >> 5 == 7).then(|| s.byte());
        let w = s.byte();
        let fill_config = (w & 0x80 != 0).then(|| {
            let mut config = [0; CONFIG_BYTES];
            config.iter_mut().for_each(|b| *b = s.byte());
            config
        });
        let writes = (0..w & 7).map(|_| PreWrite::parse(s)).collect();
        Setup {
            kind,
            receiver: role & 1 == 1,
            item,
            ring_item,
            geometry,
            header_tag,
            expect_tag,
            wake,
            peer_copies: 1 + usize::from(hold & 1),
            nonblocking: hold & 2 != 0,
            liveness,
            spin,
            handoff,
            fill_config,
            writes,
        }
    }

    /// Whether a write before opening may have changed the configuration.
    fn config_touched(&self) -> bool {
        self.fill_config.is_some()
            || self.writes.iter().any(|w| match w.target {
                Target::Field(offset, _) => offset < CONFIG_BYTES,
                // Modulo the file size, which is at least a page for every
                // kind that gets this far: any offset below 48 could be hit.
                Target::Raw(..) => true,
            })
    }

    /// Whether the hand-off message, if any, is a well-formed one.
    fn handoff_ok(&self) -> bool {
        match self.handoff {
            None => true,
            Some(m) => m & 3 < 2 && (m >> 2 & 7) < 4,
        }
    }

    /// What opening must give, from the kinds alone.
    pub(super) fn expect(&self) -> Expect {
        if !self.handoff_ok() {
            return Expect::Refuse("a bad hand-off message", |e| {
                matches!(e, Error::Rejected(Rejection::BadHandoff(_)))
            });
        }
        fn not_memfd(e: &Error) -> bool {
            matches!(e, Error::Rejected(Rejection::NotMemfd))
        }
        let header_like = match self.kind {
            MemfdKind::Pipe | MemfdKind::EventFd | MemfdKind::Socket => {
                return Expect::Refuse("not a memfd", not_memfd)
            }
            MemfdKind::RegularFile => {
                // A file on tmpfs supports seals (it has only F_SEAL_SEAL).
                return Expect::Refuse("a regular file", |e| {
                    matches!(
                        e,
                        Error::Rejected(Rejection::NotMemfd | Rejection::MissingSeals { .. })
                    )
                });
            }
            MemfdKind::Unsealed => {
                return Expect::Refuse("unsealed", |e| {
                    matches!(e, Error::Rejected(Rejection::MissingSeals { .. }))
                })
            }
            MemfdKind::SomeSeals(mask) if mask & 7 != 7 => {
                return Expect::Refuse("missing seals", |e| {
                    matches!(e, Error::Rejected(Rejection::MissingSeals { .. }))
                })
            }
            MemfdKind::SomeSeals(mask) if mask & 24 != 0 => {
                return Expect::Refuse("write-sealed", |e| {
                    matches!(e, Error::Rejected(Rejection::WriteSealed { .. }))
                })
            }
            MemfdKind::TooSmall(_) => {
                return Expect::Refuse("too small", |e| {
                    matches!(e, Error::Rejected(Rejection::TooSmall { .. }))
                })
            }
            MemfdKind::Reopened(mode) => match mode % 4 {
                0 | 1 => {
                    return Expect::Refuse("not open read-write", |e| {
                        matches!(e, Error::Rejected(Rejection::NotWritable))
                    })
                }
                2 => {
                    return Expect::Refuse("an O_PATH fd", |e| {
                        matches!(e, Error::Rejected(_) | Error::Io { .. })
                    })
                }
                _ => true,
            },
            MemfdKind::OddSize(_) => false,
            MemfdKind::Ring | MemfdKind::Handmade | MemfdKind::SomeSeals(_) => true,
        };
        if self.config_touched() {
            if !self.wake.accepted() {
                // Whatever the header says now, this is no ring to open.
                return Expect::Refuse("a scribbled header and no wake-up socket", |e| {
                    matches!(e, Error::Rejected(_))
                });
            }
            return Expect::OpenOrRejected;
        }
        if self.ring_item != self.item {
            // Every pair of the three item types differs in size.
            return Expect::Refuse("another item type", |e| {
                matches!(e, Error::Rejected(Rejection::ItemSize { .. }))
            });
        }
        if self.expect_tag.is_some_and(|t| t != self.header_tag) {
            return Expect::Refuse("another type tag", |e| {
                matches!(e, Error::Rejected(Rejection::TypeTag { .. }))
            });
        }
        if !header_like {
            return Expect::Refuse("a size the header does not describe", |e| {
                matches!(e, Error::Rejected(Rejection::SizeMismatch { .. }))
            });
        }
        match self.wake {
            WakeKind::Fresh => Expect::ForeignWake,
            WakeKind::OtherEnd => Expect::WrongRole,
            kind if !kind.accepted() => Expect::NotWakeSocket(kind.found()),
            _ => Expect::Open,
        }
    }

    /// The capacity a hand-made ring gets.
    fn handmade_capacity(&self, page: u64) -> u64 {
        self.ring_item.step(page) * (1 + u64::from(self.geometry & 1))
    }

    fn handmade_data_offset(&self, page: u64) -> u64 {
        page * (1 + u64::from(self.geometry >> 2 & 1))
    }

    /// The capacity asked of `Builder::build`.
    fn requested_capacity(&self, page: u64) -> usize {
        let step = self.ring_item.step(page) as usize;
        match self.geometry & 3 {
            0 => 1,
            1 => step,
            2 => step + 1,
            _ => 2 * step,
        }
    }

    /// Makes the fds the script describes.
    pub(super) fn build(&self) -> Built {
        let page = rustix::param::page_size() as u64;
        let cap = self.handmade_capacity(page);
        let data_offset = self.handmade_data_offset(page);
        let exact = data_offset + cap * self.ring_item.size();
        // The pair a hand-made ring records in its header; a ring the crate
        // makes has its own.
        let mut pair = Some(unix_pair(SocketType::STREAM));
        let inodes = pair.as_ref().map_or([0; 2], |(a, b)| [inode(a), inode(b)]);
        let image = || header_image(self.ring_item, cap, data_offset, self.header_tag, inodes);
        let required = 7;
        let memfd = match self.kind {
            MemfdKind::Ring | MemfdKind::Reopened(_) => {
                let (memfd, sender_wake, receiver_wake) = self.crate_ring(page);
                pair = Some((sender_wake, receiver_wake));
                self.pre_write(&memfd, cap);
                match self.kind {
                    MemfdKind::Reopened(mode) => reopen(&memfd, mode),
                    _ => memfd,
                }
            }
            MemfdKind::Handmade => self.handmade(exact, &image(), required, cap),
            MemfdKind::Unsealed => self.handmade(exact, &image(), 0, cap),
            MemfdKind::SomeSeals(mask) => self.handmade(exact, &image(), mask & 31, cap),
            MemfdKind::TooSmall(b) => {
                let sizes = [0, 1, HEADER_BYTES as u64 - 1, HEADER_BYTES as u64, page - 1];
                let size = sizes[usize::from(b) % sizes.len()];
                self.handmade(size, &image(), required, cap)
            }
            MemfdKind::OddSize(d) => {
                let delta = 1 + u64::from(d & 0x7fff) % (page - 1);
                let size = if d & 0x8000 != 0 {
                    exact - delta
                } else {
                    exact + delta
                };
                self.handmade(size, &image(), required, cap)
            }
            MemfdKind::RegularFile => {
                let file = temp_file();
                rustix::fs::ftruncate(&file, exact).expect("harness: sizing a file");
                pwrite_clipped(&file, 0, &image());
                self.pre_write(&file, cap);
                file
            }
            MemfdKind::Pipe => pipe(),
            MemfdKind::EventFd => eventfd(EventfdFlags::NONBLOCK),
            MemfdKind::Socket => socket(),
        };
        // The honest end gets its side's socket, the peer the other.
        let ring_wake = pair.map(|(sender, receiver)| {
            if self.receiver {
                (receiver, sender)
            } else {
                (sender, receiver)
            }
        });
        let indices = header_indices(&memfd);
        let (wake, peer_end) = wake_fd(self.wake, &memfd, ring_wake);
        if self.nonblocking {
            // Not on every kind (an O_PATH memfd refuses), but on sockets.
            if let Ok(flags) = rustix::fs::fcntl_getfl(&wake) {
                let set = rustix::fs::fcntl_setfl(&wake, flags | OFlags::NONBLOCK);
                assert!(set.is_ok() || !self.wake.accepted(), "harness: F_SETFL");
            }
        }
        let mut ends = Vec::new();
        if let Some(end) = peer_end {
            for _ in 1..self.peer_copies {
                ends.push(end.try_clone().expect("harness: dup"));
            }
            ends.push(end);
        }
        // A dup of the honest end's own socket, as its creator could keep.
        let honest = self
            .wake
            .accepted()
            .then(|| wake.try_clone().expect("harness: dup"));
        let flags = honest
            .as_ref()
            .map(|fd| rustix::fs::fcntl_getfl(fd).expect("harness: F_GETFL"));
        let peer = PeerWake {
            ends,
            honest,
            flags,
        };
        let (liveness, liveness_end, liveness_dead) = match self.liveness {
            LivenessKind::None => (None, None, false),
            LivenessKind::Socket => {
                let (a, b) = UnixStream::pair().expect("harness: socketpair");
                (Some(Liveness::socket(a)), Some(b), false)
            }
            LivenessKind::SocketGone => {
                let (a, _) = UnixStream::pair().expect("harness: socketpair");
                (Some(Liveness::socket(a)), None, true)
            }
            LivenessKind::Pidfd => (Liveness::process(std::process::id()).ok(), None, false),
        };
        let memfd_dup = memfd.try_clone().expect("harness: dup");
        let fds = Fds { memfd, wake };
        let (fds, liveness, liveness_end, liveness_dead) = match self.handoff {
            None => (Ok(fds), liveness, liveness_end, liveness_dead),
            Some(shape) => {
                let (ours, theirs) = UnixStream::pair().expect("harness: socketpair");
                Setup::send_handoff(&ours, fds, shape);
                // The peer keeps its end of the hand-off socket, and the
                // honest end watches it (as `Liveness::socket` suggests).
                let received = fdring::handoff::recv_fds(&theirs);
                (received, Some(Liveness::socket(theirs)), Some(ours), false)
            }
        };
        Built {
            fds,
            indices,
            memfd_dup,
            peer,
            hung_up: self.wake == WakeKind::HungUp,
            liveness,
            liveness_end,
            liveness_dead,
        }
    }

    /// Sends the fds over `socket` as `handoff::send_fds` does, or not
    /// quite: `shape` bits 0-1 are the data (0-1 the right 16 bytes, 2 one
    /// byte changed, 3 only 15 bytes), bits 2-4 how many fds
    /// (0-3 the two, 4 none, 5 one, 6 three, 7 nine: more than the
    /// receiver has room for). Every fd sent is the memfd or the honest
    /// end's socket: never the peer's end, which must not outlive the peer.
    fn send_handoff(socket: &UnixStream, fds: Fds, shape: u8) {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        use std::io::IoSlice;

        let mut data = *b"fdring-fds-v2\0\0\0";
        let mut len = data.len();
        match shape & 3 {
            2 => data[usize::from(shape >> 5) % 16] ^= 0x20,
            3 => len -= 1,
            _ => {}
        }
        let (memfd, wake) = (fds.memfd.as_fd(), fds.wake.as_fd());
        let all = [memfd, wake, wake, memfd, wake, memfd, wake, memfd, wake];
        let count = match shape >> 2 & 7 {
            0..=3 => 2,
            4 => 0,
            5 => 1,
            6 => 3,
            _ => 9,
        };
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(9))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if count > 0 {
            assert!(control.push(SendAncillaryMessage::ScmRights(&all[..count])));
        }
        rustix::net::sendmsg(
            socket,
            &[IoSlice::new(&data[..len])],
            &mut control,
            SendFlags::NOSIGNAL,
        )
        .expect("harness: sendmsg");
        // A short message is left as it is, the socket still open: the
        // receiver must refuse it, not wait for the rest.
    }

    /// A ring made by the crate: its memfd, the sender's socket end and
    /// the receiver's, with neither end closed.
    fn crate_ring(&self, page: u64) -> (OwnedFd, OwnedFd, OwnedFd) {
        fn build<R: Pod>(builder: Builder) -> (Fds, Fds) {
            let (tx, rx) = builder.build::<R>().expect("harness: building a ring");
            let rx = rx.into_fds().expect("harness: into_fds");
            (tx.into_fds().expect("harness: into_fds"), rx)
        }
        let mut builder = Builder::new().capacity(self.requested_capacity(page));
        if self.header_tag != 0 {
            builder = builder.type_tag(self.header_tag);
        }
        let (tx, rx) = match self.ring_item {
            ItemKind::U64 => build::<u64>(builder),
            ItemKind::Bytes12 => build::<[u8; 12]>(builder),
            ItemKind::U8 => build::<u8>(builder),
        };
        (tx.memfd, tx.wake, rx.wake)
    }

    /// A memfd of `size` bytes holding `image`, with the script's writes,
    /// then sealed with `seals`.
    fn handmade(&self, size: u64, image: &[u8], seals: u8, cap: u64) -> OwnedFd {
        let fd = rustix::fs::memfd_create(
            "fdring-fuzz",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .expect("harness: memfd_create");
        rustix::fs::ftruncate(&fd, size).expect("harness: sizing a memfd");
        pwrite_clipped(&fd, 0, image);
        self.pre_write(&fd, cap);
        let seals = SealFlags::from_bits_truncate(u32::from(seals));
        if !seals.is_empty() {
            rustix::fs::fcntl_add_seals(&fd, seals).expect("harness: sealing");
        }
        fd
    }

    /// Applies the script's writes before opening, clipped to the file.
    fn pre_write(&self, fd: &OwnedFd, cap: u64) {
        if let Some(config) = &self.fill_config {
            pwrite_clipped(fd, 0, config);
        }
        let size = file_size(fd);
        for w in &self.writes {
            let (offset, width) = match w.target {
                Target::Field(offset, width) => (offset as u64, width),
                Target::Raw(offset, width) => (u64::from(offset) % size.max(1), width),
            };
            let mut current = [0u8; 8];
            let _ = rustix::io::pread(fd, &mut current[..width], offset);
            let value = w.value.resolve(u64::from_ne_bytes(current), cap);
            pwrite_clipped(fd, offset, &value.to_ne_bytes()[..width]);
        }
    }
}

/// A socket's inode number, which the header records for each end.
fn inode(fd: &OwnedFd) -> u64 {
    rustix::fs::fstat(fd).expect("harness: fstat").st_ino
}

/// The write index, read index and capacity in the file's header, if it is
/// long enough to have them.
fn header_indices(fd: &OwnedFd) -> Option<[u64; 3]> {
    let word = |offset: usize| {
        let mut bytes = [0u8; 8];
        let n = rustix::io::pread(fd, &mut bytes, offset as u64).ok()?;
        (n == 8).then(|| u64::from_ne_bytes(bytes))
    };
    Some([word(WRITE_INDEX)?, word(READ_INDEX)?, word(CAPACITY)?])
}

/// A header describing a ring, as the creator writes it.
fn header_image(
    item: ItemKind,
    capacity: u64,
    data_offset: u64,
    tag: u64,
    wake_inodes: [u64; 2],
) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_BYTES];
    h[MAGIC..MAGIC + 8].copy_from_slice(&fdring::MAGIC.to_ne_bytes());
    h[VERSION..VERSION + 4].copy_from_slice(&fdring::VERSION.to_ne_bytes());
    h[ITEM_SIZE..ITEM_SIZE + 4].copy_from_slice(&(item.size() as u32).to_ne_bytes());
    h[ITEM_ALIGN..ITEM_ALIGN + 4].copy_from_slice(&(item.align() as u32).to_ne_bytes());
    h[CAPACITY..CAPACITY + 8].copy_from_slice(&capacity.to_ne_bytes());
    h[DATA_OFFSET..DATA_OFFSET + 8].copy_from_slice(&data_offset.to_ne_bytes());
    h[TYPE_TAG..TYPE_TAG + 8].copy_from_slice(&tag.to_ne_bytes());
    for (i, inode) in wake_inodes.into_iter().enumerate() {
        let at = WAKE_INODES + 8 * i;
        h[at..at + 8].copy_from_slice(&inode.to_ne_bytes());
    }
    h
}

fn file_size(fd: &OwnedFd) -> u64 {
    rustix::fs::fstat(fd).map_or(0, |st| st.st_size as u64)
}

/// Writes what fits below the end of the file (a write past it would grow
/// an unsealed file, and fails on a sealed one).
fn pwrite_clipped(fd: &OwnedFd, offset: u64, bytes: &[u8]) {
    let size = file_size(fd);
    if offset >= size {
        return;
    }
    let n = bytes.len().min((size - offset) as usize);
    let _ = rustix::io::pwrite(fd, &bytes[..n], offset);
}

/// The crate's memfd opened again, as a new open file description.
fn reopen(memfd: &OwnedFd, mode: u8) -> OwnedFd {
    let flags = match mode % 4 {
        0 => OFlags::RDONLY,
        1 => OFlags::WRONLY,
        2 => OFlags::PATH,
        _ => OFlags::RDWR,
    };
    let path = format!("/proc/self/fd/{}", memfd.as_raw_fd());
    rustix::fs::open(path.as_str(), flags | OFlags::CLOEXEC, Mode::empty())
        .expect("harness: reopening a memfd through /proc")
}

fn eventfd(flags: EventfdFlags) -> OwnedFd {
    rustix::event::eventfd(0, flags | EventfdFlags::CLOEXEC).expect("harness: eventfd")
}

fn socket() -> OwnedFd {
    let (a, _) = UnixStream::pair().expect("harness: socketpair");
    a.into()
}

/// A dup of one end of an anonymous pipe whose writer is gone (it reads
/// end-of-file and is always ready), made once per process: `std::io::pipe`
/// is newer than the crate's MSRV, and rustix's `pipe` feature is not on.
fn pipe() -> OwnedFd {
    static PIPE: OnceLock<Option<OwnedFd>> = OnceLock::new();
    let pipe = PIPE.get_or_init(|| {
        let mut child = std::process::Command::new("true")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        let out = child.stdout.take()?;
        let _ = child.wait();
        Some(out.into())
    });
    match pipe {
        Some(fd) => fd.try_clone().expect("harness: dup"),
        None => socket(),
    }
}

/// An unnamed regular file in the temporary directory.
fn temp_file() -> OwnedFd {
    let dir = std::env::temp_dir();
    let rw = OFlags::RDWR | OFlags::CLOEXEC;
    if let Ok(fd) = rustix::fs::open(
        dir.as_path(),
        rw | OFlags::TMPFILE,
        Mode::from_raw_mode(0o600),
    ) {
        return fd;
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(format!(
        "fdring-fuzz-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let fd = rustix::fs::open(
        &path,
        rw | OFlags::CREATE | OFlags::EXCL,
        Mode::from_raw_mode(0o600),
    )
    .expect("harness: creating a temporary file");
    let _ = std::fs::remove_file(&path);
    fd
}

/// A Unix socket pair of `kind`, close-on-exec and blocking.
fn unix_pair(kind: SocketType) -> (OwnedFd, OwnedFd) {
    rustix::net::socketpair(AddressFamily::UNIX, kind, SocketFlags::CLOEXEC, None)
        .expect("harness: socketpair")
}

/// The fd handed over as the wake-up socket, and the peer's end of its
/// pair if it has one the peer keeps. `from_ring` is the ring's pair (the
/// honest end's, the peer's).
fn wake_fd(
    kind: WakeKind,
    memfd: &OwnedFd,
    from_ring: Option<(OwnedFd, OwnedFd)>,
) -> (OwnedFd, Option<OwnedFd>) {
    let lone = |fd: OwnedFd| (fd, None);
    match kind {
        WakeKind::Real => {
            let (ours, theirs) = from_ring.expect("harness: the ring's pair");
            (ours, Some(theirs))
        }
        WakeKind::OtherEnd => {
            let (ours, theirs) = from_ring.expect("harness: the ring's pair");
            (theirs, Some(ours))
        }
        WakeKind::Fresh => {
            let (ours, theirs) = UnixStream::pair().expect("harness: socketpair");
            (ours.into(), Some(theirs.into()))
        }
        WakeKind::HungUp => lone(from_ring.expect("harness: the ring's pair").0),
        WakeKind::Datagram => lone(unix_pair(SocketType::DGRAM).0),
        WakeKind::SeqPacket => lone(unix_pair(SocketType::SEQPACKET).0),
        WakeKind::Unconnected => lone(
            rustix::net::socket_with(
                AddressFamily::UNIX,
                SocketType::STREAM,
                SocketFlags::CLOEXEC,
                None,
            )
            .expect("harness: socket"),
        ),
        WakeKind::Inet => lone(inet_socket()),
        WakeKind::EventFd => lone(eventfd(EventfdFlags::NONBLOCK)),
        WakeKind::Pipe => lone(pipe()),
        WakeKind::Memfd => lone(memfd.try_clone().expect("harness: dup")),
    }
}

/// A socket of a family other than `AF_UNIX`: `AF_INET`, or `AF_INET6`
/// where there is no IPv4.
fn inet_socket() -> OwnedFd {
    [AddressFamily::INET, AddressFamily::INET6]
        .into_iter()
        .find_map(|family| {
            rustix::net::socket_with(family, SocketType::DGRAM, SocketFlags::CLOEXEC, None).ok()
        })
        .expect("harness: an AF_INET or AF_INET6 socket")
}

/// The peer's hold on the wake-up sockets.
pub(super) struct PeerWake {
    /// The copies of the peer's own end of the pair: the honest end sees
    /// the peer hang up once the last one is closed.
    pub(super) ends: Vec<OwnedFd>,
    /// A dup of the honest end's socket (the same open file description),
    /// kept as the ring's hostile creator could.
    pub(super) honest: Option<OwnedFd>,
    /// The file status flags of the honest end's socket as the peer last
    /// set them: fdring never changes them.
    pub(super) flags: Option<OFlags>,
}

/// The fds to hand over, and what the peer keeps.
pub(super) struct Built {
    /// The fds, or why `handoff::recv_fds` refused them.
    pub(super) fds: Result<Fds, Error>,
    /// The header's write index, read index and capacity as handed over.
    pub(super) indices: Option<[u64; 3]>,
    /// The harness's own dup of the memfd, to map it once an end opened.
    pub(super) memfd_dup: OwnedFd,
    pub(super) peer: PeerWake,
    /// The honest end's socket was handed over hung up.
    pub(super) hung_up: bool,
    /// What the honest end watches with `watch_peer` once open.
    pub(super) liveness: Option<Liveness>,
    /// The peer's end of a liveness socket.
    pub(super) liveness_end: Option<UnixStream>,
    /// Whether the liveness fd already says the peer is gone.
    pub(super) liveness_dead: bool,
}
