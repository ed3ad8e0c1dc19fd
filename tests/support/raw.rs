//! A hostile peer's own view of a ring: a `MAP_SHARED` mapping of a dup'd
//! memfd, whose header words it loads and stores atomically and whose data
//! region it writes as it likes.
//!
//! Shared by `tests/hostile_peer.rs` and the fuzz harness
//! `tests/support/hostile/` (which `fuzz/` and `tests/hostile_fuzz.rs`
//! include), so that the header offsets and the mapping live in one place.
#![allow(dead_code)]

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use rustix::mm::{MapFlags, ProtFlags};

// Offsets in the header (docs/format.md, section 2).
pub const MAGIC: usize = 0;
pub const VERSION: usize = 8;
pub const ITEM_SIZE: usize = 12;
pub const ITEM_ALIGN: usize = 16;
pub const FLAGS: usize = 20;
pub const CAPACITY: usize = 24;
pub const DATA_OFFSET: usize = 32;
pub const TYPE_TAG: usize = 40;
/// The producer's wake-up socket inode, then the consumer's (8 bytes each).
pub const WAKE_INODES: usize = 48;
pub const WRITE_INDEX: usize = 128;
pub const READ_INDEX: usize = 256;
pub const PRODUCER_ARMED: usize = 384;
pub const CONSUMER_ARMED: usize = 512;
pub const CLOSED_PRODUCER: usize = 640;
pub const CLOSED_CONSUMER: usize = 644;

/// Bytes of the header that are defined (six 128-byte lines).
pub const HEADER_BYTES: usize = 768;

/// Bytes of the configuration line that hold fields (the rest is reserved).
pub const CONFIG_BYTES: usize = 64;

/// The largest index the crate accepts from a peer (documented in
/// `Corruption::IndexOutOfRange`).
pub const INDEX_LIMIT: u64 = 1 << 62;

/// The hostile peer's own mapping of a ring's memfd: the whole file, once
/// (no mirror), at an address the kernel picks.
pub struct Raw {
    base: *mut u8,
    /// Size of the file and of the mapping, in bytes.
    pub len: usize,
    /// The configuration found in the header when it was mapped.
    pub data_offset: usize,
    pub item_size: usize,
    pub capacity: u64,
    /// The peer's own dup of the memfd (for `fallocate` and the like).
    pub memfd: OwnedFd,
}

// SAFETY: `Raw` owns its mapping; it only hands out references to atomics
// and writes through raw pointers, so moving it or sharing it between
// threads is as sound as sharing the atomics it points to.
unsafe impl Send for Raw {}
// SAFETY: as above; every access to the header is atomic, and the data
// region helpers (`put`, `write_data`, `read_data`) require that no other
// thread writes the data region meanwhile.
unsafe impl Sync for Raw {}

impl Raw {
    /// Maps a ring's memfd whose header describes the file exactly (an end
    /// was opened on it, so the crate checked that): `data_offset +
    /// capacity * item_size` bytes.
    ///
    /// # Panics
    ///
    /// If the fd cannot be dup'd or mapped, or the header does not describe
    /// the file.
    pub fn map(memfd: &OwnedFd) -> Raw {
        let memfd = memfd.try_clone().unwrap();
        let len = rustix::fs::fstat(&memfd).unwrap().st_size as usize;
        assert!(len >= HEADER_BYTES, "a {len}-byte memfd has no header");
        // SAFETY: a new shared mapping of a sealed memfd of exactly `len`
        // bytes, at an address the kernel picks; it aliases no Rust object,
        // and it cannot fault because the memfd can never shrink.
        let base = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &memfd,
                0,
            )
        }
        .unwrap()
        .cast::<u8>();
        let mut raw = Raw {
            base,
            len,
            data_offset: HEADER_BYTES,
            item_size: 0,
            capacity: 0,
            memfd,
        };
        let data_offset = raw.u64_at(DATA_OFFSET).load(Ordering::Relaxed);
        let item_size = raw.u32_at(ITEM_SIZE).load(Ordering::Relaxed);
        let capacity = raw.u64_at(CAPACITY).load(Ordering::Relaxed);
        let data_len = capacity.checked_mul(u64::from(item_size));
        assert_eq!(
            data_len.and_then(|d| d.checked_add(data_offset)),
            Some(len as u64),
            "the header does not describe the file"
        );
        raw.data_offset = data_offset as usize;
        raw.item_size = item_size as usize;
        raw.capacity = capacity;
        raw
    }

    /// The largest header offset a word may end at: the header page, which
    /// reaches up to the data region.
    fn header_end(&self) -> usize {
        self.data_offset.max(HEADER_BYTES)
    }

    /// The 8-aligned header word at `offset`.
    pub fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset % 8 == 0 && offset + 8 <= self.header_end());
        // SAFETY: the offset is 8-aligned inside the header page of a live,
        // page-aligned mapping that `self` owns; any bytes are a valid
        // `AtomicU64`, and the honest end accesses these words atomically
        // too.
        unsafe { &*self.base.add(offset).cast::<AtomicU64>() }
    }

    /// The 4-aligned header word at `offset`.
    pub fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(offset % 4 == 0 && offset + 4 <= self.header_end());
        // SAFETY: as in `u64_at`, for a 4-aligned word.
        unsafe { &*self.base.add(offset).cast::<AtomicU32>() }
    }

    /// The header byte at `offset`.
    pub fn u8_at(&self, offset: usize) -> &AtomicU8 {
        assert!(offset < self.header_end());
        // SAFETY: as in `u64_at`, for one byte (always aligned).
        unsafe { &*self.base.add(offset).cast::<AtomicU8>() }
    }

    pub fn write_index(&self) -> &AtomicU64 {
        self.u64_at(WRITE_INDEX)
    }

    pub fn read_index(&self) -> &AtomicU64 {
        self.u64_at(READ_INDEX)
    }

    /// Stores the low `width` bytes of `value` (1, 4 or 8) at `offset` in
    /// the header, aligned down to the width, as one atomic store.
    pub fn poke(&self, offset: usize, width: usize, value: u64) {
        match width {
            1 => self.u8_at(offset).store(value as u8, Ordering::Release),
            4 => self
                .u32_at(offset & !3)
                .store(value as u32, Ordering::Release),
            8 => self.u64_at(offset & !7).store(value, Ordering::Release),
            _ => panic!("no {width}-byte header word"),
        }
    }

    /// Writes `value` into slot `index % capacity` of a ring of 8-byte
    /// items, as a producer would.
    ///
    /// Only call it while the honest end lends no slice of the data region
    /// (it is not inside a closure), so nothing in this process holds a
    /// reference to the slot.
    pub fn put(&self, index: u64, value: u64) {
        assert_eq!(self.item_size, 8, "`put` writes 8-byte items");
        self.write_data(self.slot_offset(index), &value.to_ne_bytes());
    }

    /// The offset in the data region of slot `index % capacity`.
    pub fn slot_offset(&self, index: u64) -> usize {
        (index % self.capacity) as usize * self.item_size
    }

    /// Bytes of one copy of the data region.
    pub fn data_len(&self) -> usize {
        self.len - self.data_offset
    }

    /// Writes `bytes` at `offset` in the data region, clipped to its end.
    ///
    /// As for [`put`](Self::put): only while no slice of the data region
    /// is lent.
    pub fn write_data(&self, offset: usize, bytes: &[u8]) {
        let data_len = self.data_len();
        let offset = offset.min(data_len);
        let n = bytes.len().min(data_len - offset);
        // SAFETY: `offset + n <= data_len`, so the range is inside the data
        // region of the live mapping `self` owns, which no Rust reference
        // covers while no slice is lent (see above); nothing else in this
        // process writes it meanwhile (a peer process would write it like
        // this too).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.base.add(self.data_offset + offset),
                n,
            )
        }
    }

    /// Reads `out.len()` bytes of the data region from `offset` on,
    /// continuing at its start past its end (as the ring does).
    ///
    /// The honest end may lend a shared slice of these bytes meanwhile;
    /// reading beside it is fine. Only call it while no other thread writes
    /// the data region.
    ///
    /// # Panics
    ///
    /// If `offset` is past the data region or `out` longer than it.
    pub fn read_data(&self, offset: usize, out: &mut [u8]) {
        let data_len = self.data_len();
        assert!(offset < data_len && out.len() <= data_len);
        let first = out.len().min(data_len - offset);
        let (head, tail) = out.split_at_mut(first);
        // SAFETY: both ranges are inside the data region of the live
        // mapping (`offset + first <= data_len`, `tail.len() < data_len`),
        // `out` is a distinct private buffer, and nothing writes the region
        // during the copy (see above).
        unsafe {
            let data = self.base.add(self.data_offset);
            std::ptr::copy_nonoverlapping(data.add(offset), head.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(data, tail.as_mut_ptr(), tail.len());
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: the range was mapped in `Raw::map` and is owned by `self`;
        // the references `u64_at`/`u32_at`/`u8_at` hand out borrow `self`.
        unsafe { rustix::mm::munmap(self.base.cast(), self.len) }.unwrap();
    }
}
