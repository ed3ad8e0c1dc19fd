//! The mapping: create, size, seal and verify a memfd, and map it with the
//! data region twice back to back.
//!
//! This module owns the memfd and the address range it is mapped at. It
//! knows rustix and the kernel's rules; it does not know the ring algorithm,
//! only that the file is a header page followed by a data region.
//!
//! ```text
//! address: base          base+data_offset      +data_len            +data_len
//!          | header page | data region (file)  | data region again  |
//! file:    0             data_offset            data_offset          (same pages)
//! ```
//!
//! Because the second copy maps the same pages as the first, a run of slots
//! that starts near the end of the data region and crosses the wrap is one
//! contiguous slice of memory.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use crate::error::{Error, Rejection};

/// The seals a ring's memfd must carry: its size can never change, so a
/// mapping of it can never fault with SIGBUS, and nobody can add or remove
/// seals later.
pub(crate) const REQUIRED_SEALS: SealFlags = SealFlags::SEAL
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW);

/// Seals that forbid writing, which both ends must do (a shared writable
/// mapping of such a memfd is refused).
const FORBIDDEN_SEALS: SealFlags = SealFlags::WRITE.union(SealFlags::FUTURE_WRITE);

/// The page size of this system: the granule of every mapping.
pub(crate) fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// Options for creating a memfd.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CreateOptions {
    /// Back the memfd with huge pages (`MFD_HUGETLB`).
    pub(crate) huge_pages: bool,
}

/// Creates an empty memfd, close-on-exec, with sealing allowed but not yet
/// sealed, and returns it with its page size (the huge page size for
/// `huge_pages`). The creator sizes it with [`set_len`], maps it, writes the
/// header, then calls [`seal`] before the fd can reach anyone else.
pub(crate) fn create(name: &str, options: CreateOptions) -> Result<(OwnedFd, u64), Error> {
    let mut flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    if options.huge_pages {
        flags |= MemfdFlags::HUGETLB;
    }
    let fd = rustix::fs::memfd_create(name, flags).map_err(|e| {
        Error::io(
            if options.huge_pages {
                "memfd_create with MFD_HUGETLB refused (are huge pages available?)"
            } else {
                "memfd_create"
            },
            e,
        )
    })?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| Error::io("fstat of a new memfd", e))?;
    Ok((fd, page_size().max(stat.st_blksize as u64)))
}

/// Sizes a memfd made by [`create`].
pub(crate) fn set_len(fd: BorrowedFd<'_>, len: u64) -> Result<(), Error> {
    rustix::fs::ftruncate(fd, len).map_err(|e| Error::io("sizing the memfd", e))
}

/// Seals a freshly created memfd so that its size can never change.
pub(crate) fn seal(fd: BorrowedFd<'_>) -> Result<(), Error> {
    rustix::fs::fcntl_add_seals(fd, REQUIRED_SEALS).map_err(|e| Error::io("sealing the memfd", e))
}

/// What `verify` found out about a memfd received from elsewhere.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verified {
    /// Its size in bytes, fixed by its seals.
    pub(crate) len: u64,
    /// The granule it must be mapped in: the page size, or the huge page
    /// size for a hugetlbfs memfd.
    pub(crate) page_size: u64,
}

/// Checks that `fd` is a memfd whose size can never change, and returns its
/// size. Only after this can it be mapped without risking SIGBUS.
pub(crate) fn verify(fd: BorrowedFd<'_>) -> Result<Verified, Error> {
    // Only memfds (and other shmem files) support seals; anything else
    // answers EINVAL.
    let seals = match rustix::fs::fcntl_get_seals(fd) {
        Ok(seals) => seals,
        Err(rustix::io::Errno::INVAL) => return Err(Rejection::NotMemfd.into()),
        Err(e) => return Err(Error::io("reading the memfd's seals", e)),
    };
    if !seals.contains(REQUIRED_SEALS) {
        return Err(Rejection::MissingSeals {
            found: seals.bits(),
            required: REQUIRED_SEALS.bits(),
        }
        .into());
    }
    if seals.intersects(FORBIDDEN_SEALS) {
        return Err(Rejection::WriteSealed {
            found: seals.bits(),
        }
        .into());
    }
    let mode =
        rustix::fs::fcntl_getfl(fd).map_err(|e| Error::io("reading the memfd's flags", e))?;
    if mode & rustix::fs::OFlags::RWMODE != rustix::fs::OFlags::RDWR {
        return Err(Rejection::NotWritable.into());
    }
    let stat = rustix::fs::fstat(fd).map_err(|e| Error::io("fstat of the memfd", e))?;
    let page_size = page_size().max(stat.st_blksize as u64);
    let len = stat.st_size as u64;
    if len < page_size {
        return Err(Rejection::TooSmall {
            found: len,
            minimum: page_size,
        }
        .into());
    }
    Ok(Verified { len, page_size })
}

/// Reads `buf.len()` bytes at offset 0 of the memfd without mapping it.
pub(crate) fn read_prefix(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(), Error> {
    let mut done = 0;
    while done < buf.len() {
        let n = rustix::io::pread(fd, &mut buf[done..], done as u64)
            .map_err(|e| Error::io("reading the memfd's header", e))?;
        if n == 0 {
            return Err(Rejection::TooSmall {
                found: done as u64,
                minimum: buf.len() as u64,
            }
            .into());
        }
        done += n;
    }
    Ok(())
}

/// A memfd mapped as header, data, data again. Unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    base: NonNull<u8>,
    data_offset: usize,
    data_len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; moving the owner
// to another thread moves nothing but the address.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `fd` (a verified memfd of exactly `data_offset + data_len`
    /// bytes) with its data region mirrored.
    ///
    /// `data_offset` and `data_len` must be multiples of the memfd's page
    /// size; `layout` checked that before this is called, and the kernel
    /// checks it again (EINVAL).
    pub(crate) fn new(
        fd: BorrowedFd<'_>,
        data_offset: u64,
        data_len: u64,
    ) -> Result<Mapping, Error> {
        let too_large = || Error::io("mapping the ring", rustix::io::Errno::NOMEM);
        let data_offset_usize = usize::try_from(data_offset).map_err(|_| too_large())?;
        let data_len_usize = usize::try_from(data_len).map_err(|_| too_large())?;
        let total = data_len_usize
            .checked_mul(2)
            .and_then(|twice| twice.checked_add(data_offset_usize))
            .ok_or_else(too_large)?;

        // Reserve the whole range first, so the two data copies are
        // guaranteed adjacent and nothing else can be mapped in between.
        //
        // SAFETY: a new private anonymous mapping at an address the kernel
        // picks aliases no Rust object.
        let reserved = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                total,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }
        .map_err(|e| Error::io("reserving address space for the ring", e))?;
        let base = NonNull::new(reserved.cast::<u8>()).ok_or_else(too_large)?;
        // From here on, dropping `mapping` unmaps the whole range, whatever
        // part of it the steps below replaced.
        let mapping = Mapping {
            base,
            data_offset: data_offset_usize,
            data_len: data_len_usize,
        };

        let rw = ProtFlags::READ | ProtFlags::WRITE;
        let fixed_shared = MapFlags::SHARED | MapFlags::FIXED;
        // SAFETY: MAP_FIXED replaces pages inside the range reserved above,
        // which this function owns and nothing references yet. The memfd is
        // sealed against shrinking and is exactly `data_offset + data_len`
        // bytes (checked by the caller), so every mapped page is backed and
        // no access can raise SIGBUS, whatever the peer does.
        unsafe {
            rustix::mm::mmap(
                reserved,
                data_offset_usize + data_len_usize,
                rw,
                fixed_shared,
                fd,
                0,
            )
        }
        .map_err(|e| Error::io("mapping the memfd", e))?;
        // SAFETY: as above; this maps the data region a second time right
        // after the first copy, still inside the reserved range.
        unsafe {
            rustix::mm::mmap(
                mapping.data().as_ptr().add(data_len_usize).cast(),
                data_len_usize,
                rw,
                fixed_shared,
                fd,
                data_offset,
            )
        }
        .map_err(|e| Error::io("mapping the mirror of the data region", e))?;
        Ok(mapping)
    }

    /// The start of the header page.
    pub(crate) fn header(&self) -> NonNull<u8> {
        self.base
    }

    /// The start of the first copy of the data region; the second copy
    /// follows at `data() + data_len`.
    pub(crate) fn data(&self) -> NonNull<u8> {
        // SAFETY: `data_offset` is inside the mapping (it is followed by
        // two copies of the data region), so the sum stays in bounds and
        // non-null.
        unsafe { self.base.add(self.data_offset) }
    }

    /// Faults the whole mapping in now, writable, so that the first lap of
    /// a stream takes no page fault on this side
    /// (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14). Best effort: on an
    /// older kernel, or under memory pressure, the pages are faulted in
    /// on first touch as usual. Only for a ring this process created: on
    /// a received memfd it would let the peer make us allocate whatever
    /// size it declared.
    pub(crate) fn populate(&self) {
        // SAFETY: the advice only faults in pages of a mapping this value
        // owns, backed by a memfd of exactly the mapped size (sealed), so
        // it changes neither their contents nor their validity.
        let _ = unsafe {
            rustix::mm::madvise(
                self.base.as_ptr().cast(),
                self.total_len(),
                rustix::mm::Advice::LinuxPopulateWrite,
            )
        };
    }

    /// Locks the whole mapping into RAM (`mlock`), so that a real-time
    /// consumer never takes a page fault on it.
    pub(crate) fn lock(&self) -> Result<(), Error> {
        // SAFETY: mlock only changes the residency of pages this value
        // owns; it does not change their contents or validity.
        unsafe { rustix::mm::mlock(self.base.as_ptr().cast(), self.total_len()) }.map_err(|e| {
            Error::io(
                "mlock of the ring refused (raise RLIMIT_MEMLOCK, e.g. `ulimit -l`)",
                e,
            )
        })
    }

    fn total_len(&self) -> usize {
        self.data_offset + 2 * self.data_len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by `Mapping::new` and is owned by
        // this value alone; the ring ends that point into it are dropped
        // before their `Mapping` (they are declared first in their owner).
        // An error here could only mean a bad range, which cannot happen.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.total_len()) };
    }
}
