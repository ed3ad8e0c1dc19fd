//! The on-memory format: the header at the start of the shared region.
//!
//! This module owns the byte layout described normatively in
//! `docs/format.md`: field offsets, the magic, the format version, and the
//! validation of a header that an untrusted peer wrote. It knows about bytes
//! and atomics only; it does not know about file descriptors, mappings or the
//! ring algorithm.
//!
//! Every field is an atomic, even the configuration that never changes after
//! creation, because the peer process can write any of these bytes at any
//! moment; an atomic load is the only race-free way to read them. The
//! configuration is read once, validated into a private [`Config`], and never
//! trusted again.

use crate::error::{Rejection, Role};

/// Atomics used for the shared header: `std`'s, or loom's under `cfg(loom)`
/// so that the ring and the wake-up protocol can be model-checked.
pub(crate) mod atomic {
    #[cfg(loom)]
    pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
    #[cfg(not(loom))]
    pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
}

use atomic::{AtomicU32, AtomicU64, Ordering};

/// The 8 bytes at offset 0 of every fdring header, `b"FDRING\0\0"`, as a
/// native-endian `u64`.
///
/// ```
/// assert_eq!(fdring::MAGIC.to_ne_bytes(), *b"FDRING\0\0");
/// ```
pub const MAGIC: u64 = u64::from_ne_bytes(*b"FDRING\0\0");

/// The format version this crate writes and accepts (`docs/format.md`).
///
/// ```
/// assert_eq!(fdring::VERSION, 2);
/// ```
pub const VERSION: u32 = 2;

/// The largest index an honest peer can reach: 2^62 items is 14 years at
/// 10^10 items a second. Refusing more keeps `index + capacity` far from
/// overflow whatever a peer writes. A producer is never lent a slot past
/// it (`Exhaustion::Indices`); a consumer cannot pass it, since it never
/// passes the producer's index.
pub(crate) const INDEX_LIMIT: u64 = 1 << 62;

/// Size of one cache "line" as the format lays it out: 128 bytes, so that
/// adjacent-line prefetching on x86 does not couple two fields either.
pub(crate) const LINE: usize = 128;

/// Bytes of the header that are defined (six lines); the rest of the header
/// page is reserved and zero.
pub(crate) const HEADER_BYTES: usize = 6 * LINE;

/// One field alone on its own 128-byte line.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct Line<T>(pub(crate) T);

/// Line 0: the configuration, written by the creator before the memfd is
/// sealed and handed out, read once by the opener.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct ConfigLine {
    pub(crate) magic: AtomicU64,
    pub(crate) version: AtomicU32,
    pub(crate) item_size: AtomicU32,
    pub(crate) item_align: AtomicU32,
    pub(crate) flags: AtomicU32,
    pub(crate) capacity: AtomicU64,
    pub(crate) data_offset: AtomicU64,
    pub(crate) type_tag: AtomicU64,
    /// The inode numbers of the two ends of the ring's wake-up socket pair:
    /// the producer's, then the consumer's. They bind each end's socket to
    /// this ring and to its role.
    pub(crate) wake_inodes: [AtomicU64; 2],
}

/// Line 5: one closed word per side. Written once, when an end is dropped.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct ClosedLine {
    pub(crate) producer: AtomicU32,
    pub(crate) consumer: AtomicU32,
}

/// The shared header, `repr(C)` with fixed-width fields only, so that a
/// 32-bit peer, a 64-bit peer and a peer written in C agree on it.
///
/// Each line is written by one side only (the configuration by the creator,
/// before hand-out), so that the producer and the consumer never write the
/// same cache line in the steady state.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Header {
    pub(crate) config: ConfigLine,
    /// Items ever published by the producer. Written by the producer only.
    pub(crate) write_index: Line<AtomicU64>,
    /// Items ever consumed by the consumer. Written by the consumer only.
    pub(crate) read_index: Line<AtomicU64>,
    /// Non-zero while the producer is about to sleep waiting for space.
    pub(crate) producer_armed: Line<AtomicU32>,
    /// Non-zero while the consumer is about to sleep waiting for data.
    pub(crate) consumer_armed: Line<AtomicU32>,
    pub(crate) closed: ClosedLine,
}

#[cfg(not(loom))]
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<Header>() == HEADER_BYTES);
    assert!(align_of::<Header>() == LINE);
    assert!(offset_of!(Header, config) == 0);
    assert!(offset_of!(ConfigLine, magic) == 0);
    assert!(offset_of!(ConfigLine, version) == 8);
    assert!(offset_of!(ConfigLine, item_size) == 12);
    assert!(offset_of!(ConfigLine, item_align) == 16);
    assert!(offset_of!(ConfigLine, flags) == 20);
    assert!(offset_of!(ConfigLine, capacity) == 24);
    assert!(offset_of!(ConfigLine, data_offset) == 32);
    assert!(offset_of!(ConfigLine, type_tag) == 40);
    assert!(offset_of!(ConfigLine, wake_inodes) == 48);
    assert!(offset_of!(Header, write_index) == 128);
    assert!(offset_of!(Header, read_index) == 256);
    assert!(offset_of!(Header, producer_armed) == 384);
    assert!(offset_of!(Header, consumer_armed) == 512);
    assert!(offset_of!(Header, closed) == 640);
    assert!(offset_of!(ClosedLine, producer) == 0);
    assert!(offset_of!(ClosedLine, consumer) == 4);
};

/// The validated, private copy of a header's configuration line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Config {
    /// Size of one item in bytes (`size_of::<T>()`).
    pub(crate) item_size: u32,
    /// Alignment of one item in bytes (`align_of::<T>()`).
    pub(crate) item_align: u32,
    /// Capacity of the ring in items.
    pub(crate) capacity: u64,
    /// Offset of the data region from the start of the memfd, in bytes.
    pub(crate) data_offset: u64,
    /// A user-chosen tag naming the item type; 0 means "none".
    pub(crate) type_tag: u64,
    /// The inode numbers of the producer's and the consumer's wake-up
    /// sockets, indexed by [`role_index`].
    pub(crate) wake_inodes: [u64; 2],
}

/// The index of `role` in [`Config::wake_inodes`].
pub(crate) fn role_index(role: Role) -> usize {
    match role {
        Role::Sender => 0,
        Role::Receiver => 1,
    }
}

impl Config {
    /// Bytes of one copy of the data region: `capacity * item_size`.
    pub(crate) fn data_len(&self) -> u64 {
        self.capacity * u64::from(self.item_size)
    }

    /// Total size of the memfd: the header page(s) and one copy of the data.
    pub(crate) fn file_len(&self) -> u64 {
        self.data_offset + self.data_len()
    }
}

/// What the opener expects to find, from its own `T` and options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expected {
    pub(crate) item_size: u32,
    pub(crate) item_align: u32,
    /// `None` accepts any tag.
    pub(crate) type_tag: Option<u64>,
    /// The page size the data region must be a whole number of.
    pub(crate) page_size: u64,
}

impl Header {
    /// A new header with the given configuration, indices at zero. Used for
    /// heap regions (threads, loom, Miri); a shared region is written in
    /// place with [`Header::init`].
    #[cfg_attr(not(any(test, loom)), allow(dead_code))]
    pub(crate) fn new(config: &Config) -> Header {
        let header = Header {
            config: ConfigLine {
                magic: AtomicU64::new(0),
                version: AtomicU32::new(0),
                item_size: AtomicU32::new(0),
                item_align: AtomicU32::new(0),
                flags: AtomicU32::new(0),
                capacity: AtomicU64::new(0),
                data_offset: AtomicU64::new(0),
                type_tag: AtomicU64::new(0),
                wake_inodes: [AtomicU64::new(0), AtomicU64::new(0)],
            },
            write_index: Line(AtomicU64::new(0)),
            read_index: Line(AtomicU64::new(0)),
            producer_armed: Line(AtomicU32::new(0)),
            consumer_armed: Line(AtomicU32::new(0)),
            closed: ClosedLine {
                producer: AtomicU32::new(0),
                consumer: AtomicU32::new(0),
            },
        };
        header.init(config);
        header
    }

    /// Writes the configuration line and zeroes the shared words. Only the
    /// creator calls this, before anyone else can see the region.
    pub(crate) fn init(&self, config: &Config) {
        let c = &self.config;
        c.version.store(VERSION, Ordering::Relaxed);
        c.item_size.store(config.item_size, Ordering::Relaxed);
        c.item_align.store(config.item_align, Ordering::Relaxed);
        c.flags.store(0, Ordering::Relaxed);
        c.capacity.store(config.capacity, Ordering::Relaxed);
        c.data_offset.store(config.data_offset, Ordering::Relaxed);
        c.type_tag.store(config.type_tag, Ordering::Relaxed);
        for (word, inode) in c.wake_inodes.iter().zip(config.wake_inodes) {
            word.store(inode, Ordering::Relaxed);
        }
        self.write_index.0.store(0, Ordering::Relaxed);
        self.read_index.0.store(0, Ordering::Relaxed);
        self.producer_armed.0.store(0, Ordering::Relaxed);
        self.consumer_armed.0.store(0, Ordering::Relaxed);
        self.closed.producer.store(0, Ordering::Relaxed);
        self.closed.consumer.store(0, Ordering::Relaxed);
        // The magic goes last: a header with the magic is complete. (The
        // hand-out itself, an fd passed to another process, orders it too.)
        c.magic.store(MAGIC, Ordering::Release);
    }

    /// Reads the configuration line once and validates it against what the
    /// opener expects and the size of the file it came in.
    ///
    /// Every field is loaded exactly once; the returned [`Config`] is the
    /// only copy this side will ever use, so a peer that rewrites the line
    /// later changes nothing here.
    pub(crate) fn validate(&self, expected: &Expected, file_len: u64) -> Result<Config, Rejection> {
        let c = &self.config;
        let magic = c.magic.load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(Rejection::BadMagic { found: magic });
        }
        let version = c.version.load(Ordering::Relaxed);
        if version != VERSION {
            return Err(Rejection::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        let config = Config {
            item_size: c.item_size.load(Ordering::Relaxed),
            item_align: c.item_align.load(Ordering::Relaxed),
            capacity: c.capacity.load(Ordering::Relaxed),
            data_offset: c.data_offset.load(Ordering::Relaxed),
            type_tag: c.type_tag.load(Ordering::Relaxed),
            wake_inodes: c.wake_inodes.each_ref().map(|w| w.load(Ordering::Relaxed)),
        };
        let flags = c.flags.load(Ordering::Relaxed);
        if flags != 0 {
            return Err(Rejection::UnknownFlags { found: flags });
        }
        if config.item_size != expected.item_size {
            return Err(Rejection::ItemSize {
                expected: expected.item_size,
                found: config.item_size,
            });
        }
        if config.item_align != expected.item_align {
            return Err(Rejection::ItemAlign {
                expected: expected.item_align,
                found: config.item_align,
            });
        }
        if let Some(tag) = expected.type_tag {
            if config.type_tag != tag {
                return Err(Rejection::TypeTag {
                    expected: tag,
                    found: config.type_tag,
                });
            }
        }
        check_geometry(&config, expected.page_size)?;
        if config.file_len() != file_len {
            return Err(Rejection::SizeMismatch {
                expected: config.file_len(),
                found: file_len,
            });
        }
        let write = self.write_index.0.load(Ordering::Acquire);
        let read = self.read_index.0.load(Ordering::Acquire);
        if !indices_in_range(write, read, config.capacity) {
            return Err(Rejection::BadIndices {
                write,
                read,
                capacity: config.capacity,
            });
        }
        Ok(config)
    }
}

/// Whether a pair of indices is a ring state: `write - read` in
/// `0..=capacity` and the write index at most [`INDEX_LIMIT`].
#[inline]
pub(crate) fn indices_in_range(write: u64, read: u64, capacity: u64) -> bool {
    write
        .checked_sub(read)
        .is_some_and(|fill| fill <= capacity && write <= INDEX_LIMIT)
}

/// Checks that the wake-up socket handed over with the memfd, whose inode
/// number is `wake_inode`, is the one the ring made for `role`: not the
/// other end's (both ends' bundles look alike), and not another ring's (a
/// bundle mixed from two rings would open, and then lose every item into a
/// ring nobody reads).
pub(crate) fn check_wake_inode(
    config: &Config,
    role: Role,
    wake_inode: u64,
) -> Result<(), Rejection> {
    let own = role_index(role);
    if config.wake_inodes[own] == wake_inode {
        return Ok(());
    }
    if config.wake_inodes[1 - own] == wake_inode {
        let other = match role {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        };
        return Err(Rejection::WrongRole {
            bundle: other,
            opened_as: role,
        });
    }
    Err(Rejection::ForeignWakeSocket { found: wake_inode })
}

/// The rules every configuration obeys, whoever wrote it.
///
/// The capacity is at least 1; the data region starts on a page boundary
/// after the header, is exactly `capacity * item_size` bytes and a whole
/// number of pages (so that its mirror copy starts exactly where the ring
/// wraps); indices and byte offsets fit the address space.
pub(crate) fn check_geometry(config: &Config, page_size: u64) -> Result<(), Rejection> {
    if config.item_size == 0 {
        return Err(Rejection::ZeroSizedItem);
    }
    if config.item_align == 0
        || !config.item_align.is_power_of_two()
        || u64::from(config.item_align) > page_size
        || config.item_size % config.item_align != 0
    {
        return Err(Rejection::BadAlign {
            align: config.item_align,
            item_size: config.item_size,
        });
    }
    if config.capacity == 0 {
        return Err(Rejection::ZeroCapacity);
    }
    if config.data_offset < HEADER_BYTES as u64
        || config.data_offset % page_size != 0
        || config.data_offset > isize::MAX as u64 / 4
    {
        return Err(Rejection::BadDataOffset {
            found: config.data_offset,
            page_size,
        });
    }
    // The whole mapping is the header plus the data region twice; it must
    // fit in this address space with room to spare.
    let data_len = config
        .capacity
        .checked_mul(u64::from(config.item_size))
        .filter(|&len| len % page_size == 0)
        .filter(|&len| {
            len.checked_mul(2)
                .and_then(|twice| twice.checked_add(config.data_offset))
                .is_some_and(|total| total <= isize::MAX as u64 / 2)
        });
    if data_len.is_none() {
        return Err(Rejection::BadCapacity {
            capacity: config.capacity,
            item_size: config.item_size,
            page_size,
        });
    }
    Ok(())
}

/// The smallest capacity of at least `requested` items whose data region
/// is a whole number of pages, so that the mirrored mapping lines up with
/// the wrap. `None` if it overflows.
pub(crate) fn round_capacity(requested: u64, item_size: u32, page_size: u64) -> Option<u64> {
    let item_size = u64::from(item_size);
    // capacity * item_size must be a multiple of page_size, i.e. capacity a
    // multiple of page_size / gcd(page_size, item_size).
    let step = page_size / gcd(page_size, item_size);
    requested.max(1).checked_next_multiple_of(step)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            item_size: 8,
            item_align: 8,
            capacity: 512,
            data_offset: 4096,
            type_tag: 7,
            wake_inodes: [1001, 1002],
        }
    }

    fn expected() -> Expected {
        Expected {
            item_size: 8,
            item_align: 8,
            type_tag: Some(7),
            page_size: 4096,
        }
    }

    #[test]
    fn a_fresh_header_validates_to_its_config() {
        let header = Header::new(&config());
        assert_eq!(header.validate(&expected(), 8192), Ok(config()));
    }

    #[test]
    fn the_wake_socket_must_be_this_rings_and_this_roles() {
        let config = Header::new(&config()).validate(&expected(), 8192).unwrap();
        assert_eq!(check_wake_inode(&config, Role::Receiver, 1002), Ok(()));
        assert_eq!(check_wake_inode(&config, Role::Sender, 1001), Ok(()));
        assert_eq!(
            check_wake_inode(&config, Role::Sender, 1002),
            Err(Rejection::WrongRole {
                bundle: Role::Receiver,
                opened_as: Role::Sender
            })
        );
        assert_eq!(
            check_wake_inode(&config, Role::Receiver, 77),
            Err(Rejection::ForeignWakeSocket { found: 77 })
        );
    }

    #[test]
    fn an_opener_refuses_indices_out_of_range() {
        let header = Header::new(&config());
        for (write, read) in [(513, 0), (5, 6), (INDEX_LIMIT + 1, INDEX_LIMIT)] {
            header.write_index.0.store(write, Ordering::Relaxed);
            header.read_index.0.store(read, Ordering::Relaxed);
            assert_eq!(
                header.validate(&expected(), 8192),
                Err(Rejection::BadIndices {
                    write,
                    read,
                    capacity: 512
                })
            );
        }
        header.write_index.0.store(INDEX_LIMIT, Ordering::Relaxed);
        header
            .read_index
            .0
            .store(INDEX_LIMIT - 512, Ordering::Relaxed);
        assert!(header.validate(&expected(), 8192).is_ok());
    }

    #[test]
    fn capacity_is_rounded_to_whole_pages() {
        assert_eq!(round_capacity(1, 8, 4096), Some(512));
        assert_eq!(round_capacity(513, 8, 4096), Some(1024));
        assert_eq!(round_capacity(1, 12, 4096), Some(1024));
        assert_eq!(round_capacity(3, 8_294_400, 4096), Some(3));
        assert_eq!(round_capacity(0, 4096, 4096), Some(1));
        assert_eq!(round_capacity(u64::MAX, 1, 4096), None);
    }

    #[test]
    fn each_field_is_checked() {
        let header = Header::new(&config());
        header.config.type_tag.store(8, Ordering::Relaxed);
        assert_eq!(
            header.validate(&expected(), 8192),
            Err(Rejection::TypeTag {
                expected: 7,
                found: 8
            })
        );
        let any_tag = Expected {
            type_tag: None,
            ..expected()
        };
        assert!(header.validate(&any_tag, 8192).is_ok());
        header
            .config
            .capacity
            .store(u64::MAX / 4, Ordering::Relaxed);
        assert!(matches!(
            header.validate(&any_tag, 8192),
            Err(Rejection::BadCapacity { .. })
        ));
        header.config.capacity.store(512, Ordering::Relaxed);
        assert!(matches!(
            header.validate(&any_tag, 4096),
            Err(Rejection::SizeMismatch { .. })
        ));
        header.config.data_offset.store(100, Ordering::Relaxed);
        assert!(matches!(
            header.validate(&any_tag, 8192),
            Err(Rejection::BadDataOffset { .. })
        ));
    }
}
