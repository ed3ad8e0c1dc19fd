//! Every way an opener can refuse what it was handed, each as one specific
//! [`Rejection`], with real memfds, sockets, eventfds, pipes and files: no
//! mocks.
//!
//! The bad memfds are crafted from the bytes of a real ring: create a ring,
//! copy its memfd with `pread`, change one field, write the result into a new
//! memfd, seal it (or not) and try to open it. A control test opens the
//! unmodified copy, so that each rejection is due to the one change it makes.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use bytemuck::Pod;
use fdring::{channel, Builder, Error, Fds, Receiver, Rejection, Sender};
use rustix::event::EventfdFlags;
use rustix::fs::{MemfdFlags, SealFlags};

// Offsets of the configuration fields in line 0 of the header.
const MAGIC: usize = 0;
const VERSION: usize = 8;
const ITEM_SIZE: usize = 12;
const ITEM_ALIGN: usize = 16;
const FLAGS: usize = 20;
const CAPACITY: usize = 24;
const DATA_OFFSET: usize = 32;
const TYPE_TAG: usize = 40;
const WAKE_INODES: usize = 48;

/// The seals the format requires, as `F_GET_SEALS` reports them.
const REQUIRED: SealFlags = SealFlags::SEAL
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW);

fn page() -> u64 {
    rustix::param::page_size() as u64
}

/// The bytes of the memfd of a real, freshly created ring of `u64`s with
/// `capacity` (rounded) items and the given type tag.
fn ring_bytes(capacity: usize, tag: Option<u64>) -> Vec<u8> {
    let mut builder = Builder::new().capacity(capacity);
    if let Some(tag) = tag {
        builder = builder.type_tag(tag);
    }
    let (tx, rx) = builder.build::<u64>().unwrap();
    let fds = tx.into_fds().unwrap();
    // Hand the receiver away too, so that neither end writes its closed word.
    drop(rx.into_fds().unwrap());
    let len = rustix::fs::fstat(&fds.memfd).unwrap().st_size as usize;
    let mut bytes = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = rustix::io::pread(&fds.memfd, &mut bytes[done..], done as u64).unwrap();
        assert!(n > 0, "short read of a ring's memfd");
        done += n;
    }
    bytes
}

/// The bytes of a default test ring: 512 `u64`s, one page header, one page
/// of data, no type tag.
fn good_bytes() -> Vec<u8> {
    let bytes = ring_bytes(512, None);
    assert_eq!(bytes.len() as u64, 2 * page());
    bytes
}

fn put_u32(bytes: &mut [u8], offset: usize, value: u32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
}

fn put_u64(bytes: &mut [u8], offset: usize, value: u64) {
    bytes[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
}

/// A new memfd of `len` bytes holding `bytes` (cut or zero-padded to `len`),
/// with `seals` added. `sealable: false` creates it without
/// `MFD_ALLOW_SEALING`.
fn memfd_of(bytes: &[u8], len: u64, seals: SealFlags, sealable: bool) -> OwnedFd {
    let mut flags = MemfdFlags::CLOEXEC;
    if sealable {
        flags |= MemfdFlags::ALLOW_SEALING;
    }
    let fd = rustix::fs::memfd_create("fdring-test", flags).unwrap();
    rustix::fs::ftruncate(&fd, len).unwrap();
    let bytes = &bytes[..bytes.len().min(len as usize)];
    let mut done = 0;
    while done < bytes.len() {
        done += rustix::io::pwrite(&fd, &bytes[done..], done as u64).unwrap();
    }
    if !seals.is_empty() {
        rustix::fs::fcntl_add_seals(&fd, seals).unwrap();
    }
    fd
}

/// A properly sealed memfd holding exactly `bytes`.
fn sealed(bytes: &[u8]) -> OwnedFd {
    memfd_of(bytes, bytes.len() as u64, REQUIRED, true)
}

fn eventfd() -> OwnedFd {
    rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).unwrap()
}

/// One end of a fresh connected socket pair, and the other.
fn wake_pair() -> (OwnedFd, OwnedFd) {
    let (a, b) = UnixStream::pair().unwrap();
    (a.into(), b.into())
}

/// Records in `memfd`'s header the sockets it binds to each end (the
/// producer's, then the consumer's), as its creator does. Returns false if
/// the fd takes no such write (not a memfd, sealed or opened read-only).
fn bind(memfd: &OwnedFd, producer: &OwnedFd, consumer: &OwnedFd) -> bool {
    [producer, consumer]
        .into_iter()
        .enumerate()
        .all(|(i, socket)| {
            let inode = rustix::fs::fstat(socket).unwrap().st_ino;
            let at = (WAKE_INODES + 8 * i) as u64;
            rustix::io::pwrite(memfd, &inode.to_ne_bytes(), at).is_ok_and(|n| n == 8)
        })
}

/// A bundle with `memfd` and one end of a fresh, real wake-up socket pair,
/// which the header (where the fd takes writes) names as either end's, so
/// that only the check a test is about can refuse it.
fn fds(memfd: OwnedFd) -> Fds {
    let wake = wake_pair().0;
    let _ = bind(&memfd, &wake, &wake);
    Fds { memfd, wake }
}

/// One end of an anonymous pipe (the write end of a child's stdin).
fn pipe_fd() -> OwnedFd {
    let mut child = Command::new("true")
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawning `true` to get a pipe");
    let stdin = child.stdin.take().unwrap();
    child.wait().unwrap();
    let fd = OwnedFd::from(stdin);
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    if let Ok(link) = link {
        assert!(link.to_string_lossy().starts_with("pipe:"), "{link:?}");
    }
    fd
}

/// Opens the memfds `make` creates as a sender and as a receiver of `T`
/// with `builder`, and asserts that both are refused with `expected`.
fn assert_refused<T: Pod>(builder: &Builder, make: impl Fn() -> Fds, expected: Rejection) {
    let sender: Result<Sender<T>, Error> = builder.open_sender(make());
    assert_eq!(
        sender.err(),
        Some(Error::Rejected(expected.clone())),
        "open_sender"
    );
    let receiver: Result<Receiver<T>, Error> = builder.open_receiver(make());
    assert_eq!(
        receiver.err(),
        Some(Error::Rejected(expected)),
        "open_receiver"
    );
}

/// `assert_refused` for a `u64` opener with default options, on a sealed
/// copy of `bytes`.
fn assert_bytes_refused(bytes: &[u8], expected: Rejection) {
    assert_refused::<u64>(&Builder::new(), || fds(sealed(bytes)), expected);
}

/// Sends a few items through a sender and a receiver opened on copies of
/// the same crafted memfd, proving it is a working ring.
fn assert_works(memfd: OwnedFd) {
    let dup = memfd.try_clone().unwrap();
    let (ours, theirs) = wake_pair();
    assert!(
        bind(&memfd, &ours, &theirs),
        "binding the sockets to the ring"
    );
    let mut tx = Sender::<u64>::from_fds(Fds { memfd, wake: ours }).unwrap();
    let mut rx = Receiver::<u64>::from_fds(Fds {
        memfd: dup,
        wake: theirs,
    })
    .unwrap();
    let capacity = tx.capacity();
    assert_eq!(rx.capacity(), capacity);
    for round in 0..3u64 {
        let items: Vec<u64> = (0..capacity as u64).map(|i| round << 32 | i).collect();
        tx.send_slice(&items).unwrap();
        assert_eq!(tx.try_send(0), Err(Error::Full));
        let mut got = vec![0u64; capacity];
        let mut n = 0;
        while n < capacity {
            n += rx.try_recv_slice(&mut got[n..]).unwrap();
        }
        assert_eq!(got, items);
        assert_eq!(rx.try_recv(), Err(Error::Empty));
    }
}

#[test]
fn an_unmodified_copy_of_a_ring_opens_and_works() {
    // The control for every crafted rejection below.
    assert_works(sealed(&good_bytes()));
}

// ---- not a memfd -----------------------------------------------------------

#[test]
fn a_regular_file_with_a_valid_header_is_not_a_memfd() {
    let bytes = good_bytes();
    // tempfile's default directory is on a disk file system here (a file on
    // tmpfs is a shmem file; see the next test).
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&bytes).unwrap();
    assert_refused::<u64>(
        &Builder::new(),
        || fds(OwnedFd::from(file.try_clone().unwrap())),
        Rejection::NotMemfd,
    );
}

#[test]
fn a_file_on_tmpfs_lacks_the_seals_a_memfd_would_have() {
    // A tmpfs file answers F_GET_SEALS (it is shmem) with F_SEAL_SEAL, set
    // at creation, so it can never get the seals the format requires.
    let dir = std::path::Path::new("/dev/shm");
    if !dir.is_dir() {
        eprintln!("no /dev/shm here; skipped");
        return;
    }
    let mut file = tempfile::tempfile_in(dir).unwrap();
    let seals = rustix::fs::fcntl_get_seals(&file);
    if seals != Ok(SealFlags::SEAL) {
        eprintln!("/dev/shm is not a tmpfs with default seals ({seals:?}); skipped");
        return;
    }
    file.write_all(&good_bytes()).unwrap();
    assert_refused::<u64>(
        &Builder::new(),
        || fds(OwnedFd::from(file.try_clone().unwrap())),
        Rejection::MissingSeals {
            found: SealFlags::SEAL.bits(),
            required: REQUIRED.bits(),
        },
    );
}

#[test]
fn a_pipe_is_not_a_memfd() {
    assert_refused::<u64>(&Builder::new(), || fds(pipe_fd()), Rejection::NotMemfd);
}

#[test]
fn an_eventfd_or_a_socket_is_not_a_memfd() {
    assert_refused::<u64>(&Builder::new(), || fds(eventfd()), Rejection::NotMemfd);
    assert_refused::<u64>(
        &Builder::new(),
        || {
            let (a, _b) = UnixStream::pair().unwrap();
            fds(OwnedFd::from(a))
        },
        Rejection::NotMemfd,
    );
}

// ---- seals -----------------------------------------------------------------

#[test]
fn a_memfd_without_seals_is_refused_even_with_a_valid_header() {
    let bytes = good_bytes();
    let len = bytes.len() as u64;
    assert_refused::<u64>(
        &Builder::new(),
        || fds(memfd_of(&bytes, len, SealFlags::empty(), true)),
        Rejection::MissingSeals {
            found: 0,
            required: REQUIRED.bits(),
        },
    );
}

#[test]
fn a_memfd_created_without_allow_sealing_is_refused() {
    // Without MFD_ALLOW_SEALING the kernel sets F_SEAL_SEAL at creation:
    // sealed against sealing, but its size can still change.
    let bytes = good_bytes();
    let len = bytes.len() as u64;
    assert_refused::<u64>(
        &Builder::new(),
        || fds(memfd_of(&bytes, len, SealFlags::empty(), false)),
        Rejection::MissingSeals {
            found: SealFlags::SEAL.bits(),
            required: REQUIRED.bits(),
        },
    );
}

#[test]
fn a_memfd_missing_any_one_required_seal_is_refused() {
    let bytes = good_bytes();
    let len = bytes.len() as u64;
    for missing in [SealFlags::SEAL, SealFlags::SHRINK, SealFlags::GROW] {
        let seals = REQUIRED.difference(missing);
        assert_refused::<u64>(
            &Builder::new(),
            || fds(memfd_of(&bytes, len, seals, true)),
            Rejection::MissingSeals {
                found: seals.bits(),
                required: REQUIRED.bits(),
            },
        );
    }
}

#[test]
fn the_missing_seals_message_names_the_seals() {
    let bytes = good_bytes();
    let len = bytes.len() as u64;
    let err = Receiver::<u64>::from_fds(fds(memfd_of(&bytes, len, SealFlags::SHRINK, true)))
        .err()
        .unwrap();
    let message = err.to_string();
    assert!(message.contains("seals"), "{message}");
    assert!(message.contains("F_SEAL_GROW"), "{message}");
}

#[test]
fn a_memfd_sealed_against_writes_is_refused() {
    // Extra seals are allowed by the format, but F_SEAL_WRITE and
    // F_SEAL_FUTURE_WRITE forbid the shared writable mapping a ring needs.
    let bytes = good_bytes();
    let len = bytes.len() as u64;
    for extra in [SealFlags::WRITE, SealFlags::FUTURE_WRITE] {
        assert_refused::<u64>(
            &Builder::new(),
            || fds(memfd_of(&bytes, len, REQUIRED | extra, true)),
            Rejection::WriteSealed {
                found: (REQUIRED | extra).bits(),
            },
        );
    }
    let err = Sender::<u64>::from_fds(fds(memfd_of(
        &bytes,
        len,
        REQUIRED | SealFlags::WRITE,
        true,
    )))
    .err()
    .unwrap();
    assert!(err.to_string().contains("F_SEAL_WRITE"), "{err}");
}

#[test]
fn a_read_only_fd_of_a_good_memfd_is_not_writable() {
    // The same file reopened read-only: seals and header are fine, but a
    // ring needs a shared writable mapping.
    let memfd = sealed(&good_bytes());
    let path = format!("/proc/self/fd/{}", memfd.as_raw_fd());
    let make = || fds(OwnedFd::from(std::fs::File::open(&path).unwrap()));
    for err in [
        Sender::<u64>::from_fds(make()).err(),
        Receiver::<u64>::from_fds(make()).err(),
    ] {
        assert_eq!(err, Some(Error::Rejected(Rejection::NotWritable)));
    }
}

// ---- sizes -----------------------------------------------------------------

#[test]
fn a_sealed_memfd_smaller_than_a_page_is_too_small() {
    let bytes = good_bytes();
    for len in [0, 1, 767, 768, page() - 1] {
        assert_refused::<u64>(
            &Builder::new(),
            || fds(memfd_of(&bytes, len, REQUIRED, true)),
            Rejection::TooSmall {
                found: len,
                minimum: page(),
            },
        );
    }
}

#[test]
fn a_header_page_alone_does_not_match_a_header_with_data() {
    let bytes = good_bytes();
    assert_refused::<u64>(
        &Builder::new(),
        || fds(memfd_of(&bytes, page(), REQUIRED, true)),
        Rejection::SizeMismatch {
            expected: 2 * page(),
            found: page(),
        },
    );
}

#[test]
fn a_memfd_too_small_for_its_capacity_is_refused() {
    // The header says 1024 items (two pages of data); the file holds one.
    let mut bytes = good_bytes();
    put_u64(&mut bytes, CAPACITY, 2 * page() / 8);
    assert_bytes_refused(
        &bytes,
        Rejection::SizeMismatch {
            expected: 3 * page(),
            found: 2 * page(),
        },
    );
}

#[test]
fn a_memfd_larger_than_its_header_describes_is_refused() {
    let bytes = good_bytes();
    for extra in [page(), 8 * page()] {
        let len = bytes.len() as u64 + extra;
        assert_refused::<u64>(
            &Builder::new(),
            || fds(memfd_of(&bytes, len, REQUIRED, true)),
            Rejection::SizeMismatch {
                expected: 2 * page(),
                found: len,
            },
        );
    }
}

#[test]
fn a_memfd_whose_size_is_not_whole_pages_is_refused() {
    let bytes = good_bytes();
    for len in [
        2 * page() + 1,
        2 * page() + 100,
        2 * page() - 8,
        3 * page() - 1,
    ] {
        assert_refused::<u64>(
            &Builder::new(),
            || fds(memfd_of(&bytes, len, REQUIRED, true)),
            Rejection::SizeMismatch {
                expected: 2 * page(),
                found: len,
            },
        );
    }
}

// ---- the header's identity -------------------------------------------------

#[test]
fn a_wrong_magic_is_refused() {
    let mut bytes = good_bytes();
    bytes[..8].copy_from_slice(b"FDRINGX\0");
    let found = u64::from_ne_bytes(*b"FDRINGX\0");
    assert_bytes_refused(&bytes, Rejection::BadMagic { found });

    // A sealed memfd of the right size that nobody wrote a header into.
    let zeros = vec![0u8; bytes.len()];
    assert_bytes_refused(&zeros, Rejection::BadMagic { found: 0 });
}

#[test]
fn the_magic_is_the_documented_constant() {
    let bytes = good_bytes();
    assert_eq!(&bytes[MAGIC..MAGIC + 8], b"FDRING\0\0");
    assert_eq!(fdring::MAGIC, u64::from_ne_bytes(*b"FDRING\0\0"));
}

#[test]
fn a_wrong_version_is_refused() {
    for version in [0, 1, 3, u32::MAX] {
        let mut bytes = good_bytes();
        put_u32(&mut bytes, VERSION, version);
        assert_bytes_refused(
            &bytes,
            Rejection::UnsupportedVersion {
                found: version,
                supported: fdring::VERSION,
            },
        );
    }
}

#[test]
fn unknown_flags_are_refused() {
    for flags in [1, 0x8000_0000, u32::MAX] {
        let mut bytes = good_bytes();
        put_u32(&mut bytes, FLAGS, flags);
        assert_bytes_refused(&bytes, Rejection::UnknownFlags { found: flags });
    }
}

// ---- the item type ---------------------------------------------------------

#[test]
fn a_u64_ring_opened_as_u32_is_a_wrong_item_size() {
    let (tx, rx) = channel::<u64>(512).unwrap();
    let expected = Some(Error::Rejected(Rejection::ItemSize {
        expected: 4,
        found: 8,
    }));
    assert_eq!(
        Sender::<u32>::from_fds(tx.into_fds().unwrap()).err(),
        expected
    );
    assert_eq!(
        Receiver::<u32>::from_fds(rx.into_fds().unwrap()).err(),
        expected
    );
    let (tx, _rx) = channel::<u64>(512).unwrap();
    assert_eq!(
        Sender::<u128>::from_fds(tx.into_fds().unwrap()).err(),
        Some(Error::Rejected(Rejection::ItemSize {
            expected: 16,
            found: 8
        }))
    );
}

#[test]
fn a_u64_ring_opened_as_bytes_is_a_wrong_alignment() {
    // Same size, weaker alignment: refused, the items would not be `T`s.
    let (tx, rx) = channel::<u64>(512).unwrap();
    let expected = Some(Error::Rejected(Rejection::ItemAlign {
        expected: 1,
        found: 8,
    }));
    assert_eq!(
        Sender::<[u8; 8]>::from_fds(tx.into_fds().unwrap()).err(),
        expected
    );
    assert_eq!(
        Receiver::<[u8; 8]>::from_fds(rx.into_fds().unwrap()).err(),
        expected
    );
    let (tx, _rx) = channel::<u64>(512).unwrap();
    assert_eq!(
        Sender::<[u32; 2]>::from_fds(tx.into_fds().unwrap()).err(),
        Some(Error::Rejected(Rejection::ItemAlign {
            expected: 4,
            found: 8
        }))
    );
}

#[test]
fn a_header_with_a_forged_item_size_or_alignment_is_refused() {
    let mut bytes = good_bytes();
    put_u32(&mut bytes, ITEM_SIZE, 0);
    assert_bytes_refused(
        &bytes,
        Rejection::ItemSize {
            expected: 8,
            found: 0,
        },
    );
    let mut bytes = good_bytes();
    put_u32(&mut bytes, ITEM_ALIGN, 0);
    assert_bytes_refused(
        &bytes,
        Rejection::ItemAlign {
            expected: 8,
            found: 0,
        },
    );
    let mut bytes = good_bytes();
    put_u32(&mut bytes, ITEM_ALIGN, 3);
    assert_bytes_refused(
        &bytes,
        Rejection::ItemAlign {
            expected: 8,
            found: 3,
        },
    );
}

#[test]
fn a_zero_sized_item_type_cannot_open_a_ring() {
    assert_refused::<()>(
        &Builder::new(),
        || fds(sealed(&good_bytes())),
        Rejection::ZeroSizedItem,
    );
}

// ---- the type tag ----------------------------------------------------------

#[test]
fn a_wrong_type_tag_is_refused() {
    let bytes = ring_bytes(512, Some(0xa0d10));
    assert_refused::<u64>(
        &Builder::new().type_tag(0xbad),
        || fds(sealed(&bytes)),
        Rejection::TypeTag {
            expected: 0xbad,
            found: 0xa0d10,
        },
    );
    // A tag forged into a copy of an untagged ring, at its documented offset.
    let mut forged = good_bytes();
    assert_eq!(forged[TYPE_TAG..TYPE_TAG + 8], [0; 8]);
    put_u64(&mut forged, TYPE_TAG, 0xfeed);
    assert_refused::<u64>(
        &Builder::new().type_tag(0),
        || fds(sealed(&forged)),
        Rejection::TypeTag {
            expected: 0,
            found: 0xfeed,
        },
    );
    // An untagged ring (tag 0) does not satisfy an opener that wants one.
    assert_refused::<u64>(
        &Builder::new().type_tag(5),
        || fds(sealed(&good_bytes())),
        Rejection::TypeTag {
            expected: 5,
            found: 0,
        },
    );
}

#[test]
fn the_right_type_tag_opens() {
    let (tx, rx) = Builder::new()
        .capacity(64)
        .type_tag(0xa0d10)
        .build::<u64>()
        .unwrap();
    let opener = Builder::new().type_tag(0xa0d10);
    let mut tx = opener.open_sender::<u64>(tx.into_fds().unwrap()).unwrap();
    let mut rx = opener.open_receiver::<u64>(rx.into_fds().unwrap()).unwrap();
    tx.try_send(42).unwrap();
    assert_eq!(rx.try_recv(), Ok(42));
}

#[test]
fn an_opener_without_a_tag_accepts_any_tag() {
    for tag in [0, 1, 0xa0d10, u64::MAX] {
        let bytes = ring_bytes(512, Some(tag));
        assert_works(sealed(&bytes));
        // The same through `Builder::new()` explicitly.
        assert!(Builder::new()
            .open_receiver::<u64>(fds(sealed(&bytes)))
            .is_ok());
    }
}

#[test]
fn the_type_tag_message_names_the_tag() {
    let (tx, _rx) = Builder::new()
        .capacity(64)
        .type_tag(1)
        .build::<u64>()
        .unwrap();
    let err = Builder::new()
        .type_tag(2)
        .open_sender::<u64>(tx.into_fds().unwrap())
        .err()
        .unwrap();
    let message = err.to_string();
    assert!(message.contains("type tag"), "{message}");
    assert!(
        message.contains("0x1") && message.contains("0x2"),
        "{message}"
    );
}

// ---- geometry --------------------------------------------------------------

#[test]
fn a_header_capacity_of_zero_is_refused() {
    let mut bytes = good_bytes();
    put_u64(&mut bytes, CAPACITY, 0);
    assert_bytes_refused(&bytes, Rejection::ZeroCapacity);
    // Also when the file is sized as a zero capacity would imply.
    assert_bytes_refused(&bytes[..page() as usize], Rejection::ZeroCapacity);
}

#[test]
fn an_absurd_capacity_is_refused_without_overflow() {
    for capacity in [
        u64::MAX,
        u64::MAX / 8 + 1, // capacity * item_size overflows u64
        1 << 60,          // the data fits u64, twice the data does not
        1 << 58,          // fits u64 twice, not the address space
        100,              // not a whole number of pages of u64s
        513,
    ] {
        let mut bytes = good_bytes();
        put_u64(&mut bytes, CAPACITY, capacity);
        assert_bytes_refused(
            &bytes,
            Rejection::BadCapacity {
                capacity,
                item_size: 8,
                page_size: page(),
            },
        );
    }
}

#[test]
fn a_huge_but_representable_capacity_is_refused_by_the_file_size() {
    // 2^57 u64s is 2^60 bytes: a valid layout on 64 bits, but not the size
    // of this file. Nothing is mapped.
    let mut bytes = good_bytes();
    put_u64(&mut bytes, CAPACITY, 1 << 57);
    assert_bytes_refused(
        &bytes,
        Rejection::SizeMismatch {
            expected: page() + (1 << 60),
            found: 2 * page(),
        },
    );
}

#[test]
fn a_bad_data_offset_is_refused() {
    for offset in [0, 8, 100, 767, 768, page() - 1, page() + 8] {
        let mut bytes = good_bytes();
        put_u64(&mut bytes, DATA_OFFSET, offset);
        assert_bytes_refused(
            &bytes,
            Rejection::BadDataOffset {
                found: offset,
                page_size: page(),
            },
        );
    }
}

#[test]
fn a_data_offset_beyond_the_file_is_refused() {
    // Page-aligned but past the end of the file.
    let mut bytes = good_bytes();
    put_u64(&mut bytes, DATA_OFFSET, 2 * page());
    assert_bytes_refused(
        &bytes,
        Rejection::SizeMismatch {
            expected: 3 * page(),
            found: 2 * page(),
        },
    );
    // Page-aligned and absurd: beyond what the address space can map.
    let mut bytes = good_bytes();
    let offset = u64::MAX - (u64::MAX % page());
    put_u64(&mut bytes, DATA_OFFSET, offset);
    assert_bytes_refused(
        &bytes,
        Rejection::BadDataOffset {
            found: offset,
            page_size: page(),
        },
    );
}

#[test]
fn a_larger_header_region_is_honoured_when_the_size_matches() {
    // The format allows the data to start at any page boundary after the
    // header: a peer that reserves two header pages gets a working ring.
    let mut bytes = good_bytes();
    put_u64(&mut bytes, DATA_OFFSET, 2 * page());
    bytes.resize(3 * page() as usize, 0);
    assert_works(sealed(&bytes));
}

// ---- the wake-up socket ----------------------------------------------------

/// Asserts that a good ring with `wake` in the wake-up slot is refused
/// because the wake-up fd is `found`.
fn assert_wake_refused(wake: impl Fn() -> OwnedFd, found: &'static str) {
    let bytes = good_bytes();
    assert_refused::<u64>(
        &Builder::new(),
        || Fds {
            memfd: sealed(&bytes),
            wake: wake(),
        },
        Rejection::NotWakeSocket { found },
    );
}

#[test]
fn a_wake_fd_that_is_not_a_socket_is_refused() {
    assert_wake_refused(pipe_fd, "not a socket");
    assert_wake_refused(eventfd, "not a socket");
    assert_wake_refused(|| sealed(&good_bytes()), "not a socket");
}

#[test]
fn a_wake_socket_of_the_wrong_kind_is_refused() {
    use rustix::net::{socket, socketpair, AddressFamily, SocketFlags, SocketType};
    let datagram = || {
        socketpair(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap()
        .0
    };
    assert_wake_refused(datagram, "a Unix socket that is not a stream socket");
    let lone = || socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
    assert_wake_refused(lone, "a Unix stream socket that is not connected");
    let udp = || socket(AddressFamily::INET, SocketType::DGRAM, None).unwrap();
    assert_wake_refused(udp, "a socket of another address family");
}

#[test]
fn a_real_ring_with_a_swapped_in_wake_fd_is_refused_and_its_message_says_why() {
    let (tx, _rx) = channel::<u64>(64).unwrap();
    let fds = tx.into_fds().unwrap();
    let refused = Sender::<u64>::from_fds(Fds {
        wake: eventfd(),
        ..fds
    })
    .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "ring rejected: the wake-up fd must be a connected Unix stream socket, but it is not \
         a socket"
    );
}

// ---- creation --------------------------------------------------------------

#[test]
fn a_channel_of_zero_capacity_is_refused() {
    assert_eq!(
        channel::<u64>(0).err(),
        Some(Error::Rejected(Rejection::ZeroCapacity))
    );
    // A builder given no capacity at all.
    assert_eq!(
        Builder::new().build::<u64>().err(),
        Some(Error::Rejected(Rejection::ZeroCapacity))
    );
}

#[test]
fn a_channel_of_zero_sized_items_is_refused() {
    assert_eq!(
        channel::<()>(8).err(),
        Some(Error::Rejected(Rejection::ZeroSizedItem))
    );
    assert_eq!(
        channel::<[u32; 0]>(8).err(),
        Some(Error::Rejected(Rejection::ZeroSizedItem))
    );
}

#[test]
fn a_channel_too_large_for_the_address_space_is_refused() {
    let refused = channel::<u64>(usize::MAX).err();
    assert!(
        matches!(
            refused,
            Some(Error::Rejected(Rejection::BadCapacity { item_size: 8, .. }))
        ),
        "{refused:?}"
    );
    let refused = channel::<[u8; 4096]>(usize::MAX / 4096).err();
    assert!(
        matches!(
            refused,
            Some(Error::Rejected(Rejection::BadCapacity {
                item_size: 4096,
                ..
            }))
        ),
        "{refused:?}"
    );
}

#[test]
fn a_rejection_maps_to_invalid_data_and_names_the_fd_kind() {
    let err = Receiver::<u64>::from_fds(fds(pipe_fd())).err().unwrap();
    assert!(err.to_string().contains("not a memfd"), "{err}");
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
}

#[test]
fn a_callers_mistake_maps_to_invalid_input_and_round_trips_through_io_error() {
    use std::io::ErrorKind;
    let kind = |e: Error| std::io::Error::from(e).kind();
    // Asked for what cannot be: capacity 0, another item type, another tag.
    assert_eq!(
        kind(channel::<u64>(0).unwrap_err()),
        ErrorKind::InvalidInput
    );
    let (tx, _rx) = Builder::new()
        .capacity(64)
        .type_tag(7)
        .build::<u64>()
        .unwrap();
    let wrong_type = Sender::<u32>::from_fds(tx.into_fds().unwrap()).unwrap_err();
    assert!(matches!(
        wrong_type,
        Error::Rejected(Rejection::ItemSize { .. })
    ));
    assert_eq!(kind(wrong_type), ErrorKind::InvalidInput);
    // The bundle of the other end is the caller's mistake too.
    let (tx, rx) = channel::<u64>(64).unwrap();
    let wrong_end = Sender::<u64>::from_fds(rx.into_fds().unwrap()).unwrap_err();
    assert_eq!(kind(wrong_end), ErrorKind::InvalidInput);
    drop(tx);
    // A bad memfd is the peer's: InvalidData. Both come back whole.
    let bad = Receiver::<u64>::from_fds(fds(pipe_fd())).err().unwrap();
    let back = Error::from(std::io::Error::from(bad));
    assert_eq!(back, Error::Rejected(Rejection::NotMemfd));
    // Any other io::Error converts with `?`.
    let other = Error::from(std::io::Error::from(ErrorKind::NotFound));
    assert!(
        matches!(other, Error::Io { context: "I/O", .. }),
        "{other:?}"
    );
}
