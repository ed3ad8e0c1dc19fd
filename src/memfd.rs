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

use crate::error::{Error, Exhaustion, Rejection};

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

    /// Faults the memfd's pages in now, writable, so that the first lap of
    /// a stream takes no page fault on this side
    /// (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14): the file in chunks of
    /// [`POPULATE_CHUNK`] bytes, then the page tables of the mirror (whose
    /// pages are the same). Only for a ring this process created: on a
    /// received memfd it would let the peer make us allocate whatever size
    /// it declared.
    ///
    /// The caller checked that the whole file fits the memory available;
    /// between chunks this checks again that what is left still fits
    /// ([`memory_shortfall`]), so that pre-faulting never keeps going into
    /// memory other processes took meanwhile and brings the OOM killer in.
    /// Not for `huge_pages`, whose pages the mapping reserved from their
    /// own pool. An older kernel without the advice faults the pages on
    /// first touch as usual.
    ///
    /// # Errors
    ///
    /// `Exhausted(Memory)` if the memory ran out meanwhile (the kernel
    /// refused a chunk, or the rest no longer fits); `requested` is the
    /// whole file, `available` what was faulted in plus what is available.
    pub(crate) fn populate(&self, huge_pages: bool) -> Result<(), Error> {
        if huge_pages {
            self.populate_with(POPULATE_CHUNK, |_| None, || None)
        } else {
            self.populate_with(POPULATE_CHUNK, memory_shortfall, available_memory)
        }
    }

    /// [`populate`](Self::populate) in chunks of `chunk` bytes (a multiple
    /// of the page size), asking `shortfall` between chunks whether the
    /// rest still fits, and `available` for the error.
    fn populate_with(
        &self,
        chunk: usize,
        shortfall: impl Fn(u64) -> Option<u64>,
        available: impl Fn() -> Option<u64>,
    ) -> Result<(), Error> {
        let file_len = self.data_offset + self.data_len;
        let exhausted = |done: usize, available: Option<u64>| {
            Error::Exhausted(Exhaustion::Memory {
                requested: file_len as u64,
                available: available.unwrap_or(0).saturating_add(done as u64),
            })
        };
        let mut done = 0;
        let mut retries = 0;
        while done < file_len {
            let left = file_len - done;
            // The caller checked the whole before the first chunk.
            if done > 0 {
                if let Some(short) = shortfall(left as u64) {
                    return Err(exhausted(done, Some(short)));
                }
            }
            let chunk = left.min(chunk);
            // SAFETY: the advice only faults in pages of a mapping this
            // value owns (`done + chunk <= file_len`, the first copy),
            // backed by a memfd of exactly the mapped size (sealed), so it
            // changes neither their contents nor their validity.
            let advised = unsafe {
                rustix::mm::madvise(
                    self.base.as_ptr().add(done).cast(),
                    chunk,
                    rustix::mm::Advice::LinuxPopulateWrite,
                )
            };
            match advised {
                Ok(()) => {
                    done += chunk;
                    retries = 0;
                }
                // Interrupted, or a transient failure: again, a few times.
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) if retries < 8 => {
                    retries += 1;
                }
                Err(rustix::io::Errno::NOMEM) => return Err(exhausted(done, available())),
                // No such advice (before Linux 5.14), or a failure the
                // first touch will meet again: fault on first touch.
                Err(_) => return Ok(()),
            }
        }
        // SAFETY: as above, for the mirror: the same pages, already
        // allocated; only their page-table entries are filled in.
        let _ = unsafe {
            rustix::mm::madvise(
                self.data().as_ptr().add(self.data_len).cast(),
                self.data_len,
                rustix::mm::Advice::LinuxPopulateWrite,
            )
        };
        Ok(())
    }

    /// Locks the whole mapping into RAM (`mlock`), so that a real-time
    /// consumer never takes a page fault on it.
    ///
    /// # Errors
    ///
    /// `Exhausted(Memlock)` if the kernel refuses (`RLIMIT_MEMLOCK` too
    /// low: `ENOMEM` or `EAGAIN`; `EPERM` where the limit is 0), naming the
    /// bytes asked for and the limit; `Io` for any other failure.
    pub(crate) fn lock(&self) -> Result<(), Error> {
        // SAFETY: mlock only changes the residency of pages this value
        // owns; it does not change their contents or validity.
        unsafe { rustix::mm::mlock(self.base.as_ptr().cast(), self.total_len()) }.map_err(|e| {
            match e {
                rustix::io::Errno::NOMEM | rustix::io::Errno::AGAIN | rustix::io::Errno::PERM => {
                    Error::Exhausted(Exhaustion::Memlock {
                        requested: self.total_len() as u64,
                        limit: memlock_limit(),
                    })
                }
                other => Error::io("mlock of the ring", other),
            }
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

// ---------------------------------------------------------------------------
// What the system can give: memory, huge pages, locked memory. Read from
// `/proc` and `/sys` defensively: a file that is missing or unreadable, or a
// line that does not parse, is "unknown", and an unknown limit never refuses
// anything.

/// Bytes faulted in per step of [`Mapping::populate`]; available memory is
/// checked again before each.
const POPULATE_CHUNK: usize = 64 << 20;

/// Where the kernel shows the cgroup hierarchies (v2, or v1 per controller).
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Bytes of memory a new ring may still commit, if known: the kernel's
/// estimate of memory available without swapping (`MemAvailable`) plus
/// free swap, or less if this process's memory cgroup (or one of its
/// ancestors) has less room under its limit.
///
/// A cgroup's room is its limit minus its working set (usage minus the
/// inactive file cache, which the kernel reclaims first), as container
/// runtimes count it: `memory.max` and `memory.current` (v2), or
/// `memory.limit_in_bytes` and `memory.usage_in_bytes` (v1).
pub(crate) fn available_memory() -> Option<u64> {
    least(machine_available(), cgroup_available(None))
}

/// The memory available, if `needed` bytes do not fit in it; `None` if
/// they fit (or nothing is known). Cheaper than [`available_memory`]: a
/// cgroup's reclaimable cache is read only where it would make a
/// difference. (Each file read costs some microseconds, and a small ring
/// takes only about 25 to build.)
pub(crate) fn memory_shortfall(needed: u64) -> Option<u64> {
    let machine = machine_available().filter(|&available| available < needed);
    let cgroup = cgroup_available(Some(needed)).filter(|&room| room < needed);
    least(machine, cgroup)
}

/// `MemAvailable` plus `SwapFree`, from `/proc/meminfo`.
fn machine_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available = meminfo_bytes(&text, "MemAvailable")?;
    // No swap line (swap compiled out) is no swap.
    let swap = meminfo_bytes(&text, "SwapFree").unwrap_or(0);
    Some(available.saturating_add(swap))
}

/// This process's cgroups' room, see [`cgroup_room`].
fn cgroup_available(needed: Option<u64>) -> Option<u64> {
    let self_cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup_room(&self_cgroup, needed, |path| {
        std::fs::read_to_string(path).ok()
    })
}

/// The smaller of two limits, either of which may be unknown.
fn least(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Free huge pages of `page_size` bytes (the memfd's), if known: pages in
/// the pool that are neither in use nor reserved by a mapping.
pub(crate) fn free_huge_pages(page_size: u64) -> Option<u64> {
    let read = |name: &str| {
        let path = format!(
            "/sys/kernel/mm/hugepages/hugepages-{}kB/{name}",
            page_size / 1024
        );
        std::fs::read_to_string(path)
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
    };
    if let (Some(free), Some(reserved)) = (read("free_hugepages"), read("resv_hugepages")) {
        return Some(free.saturating_sub(reserved));
    }
    // No sysfs: /proc/meminfo shows the pool of the default size only.
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    if meminfo_bytes(&text, "Hugepagesize")? != page_size {
        return None;
    }
    let count = |key| meminfo_field(&text, key)?.parse::<u64>().ok();
    Some(count("HugePages_Free")?.saturating_sub(count("HugePages_Rsvd").unwrap_or(0)))
}

/// The soft `RLIMIT_MEMLOCK` in bytes; `u64::MAX` if unlimited.
pub(crate) fn memlock_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Memlock)
        .current
        .unwrap_or(u64::MAX)
}

/// The value of a `/proc/meminfo` line `key:   value [kB]`, as text.
fn meminfo_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == key).then(|| value.trim())
    })
}

/// A `/proc/meminfo` size (`key:   N kB`) in bytes.
fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    let value = meminfo_field(text, key)?;
    let kib = value.strip_suffix("kB")?.trim().parse::<u64>().ok()?;
    kib.checked_mul(1024)
}

/// The least room left under any memory limit of this process's cgroup or
/// its ancestors, from the text of `/proc/self/cgroup`; `read` reads a file
/// (`None` if it cannot). `None` if no limit could be read.
///
/// With `needed`, a level whose room is at least `needed` even counting
/// all of its cache as used is not looked at more closely: its room is
/// then reported as that lower bound, so only a room below `needed` is
/// exact.
fn cgroup_room(
    self_cgroup: &str,
    needed: Option<u64>,
    read: impl Fn(&str) -> Option<String>,
) -> Option<u64> {
    let mut least_room: Option<u64> = None;
    for line in self_cgroup.lines() {
        // `hierarchy-id:controllers:path`; the path may contain ':'.
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let v2 = id == "0" && controllers.is_empty();
        let v1 = controllers.split(',').any(|c| c == "memory");
        let (mount, limit, usage, inactive) = if v2 {
            (
                CGROUP_ROOT.to_owned(),
                "memory.max",
                "memory.current",
                "inactive_file",
            )
        } else if v1 {
            (
                format!("{CGROUP_ROOT}/memory"),
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
                "total_inactive_file",
            )
        } else {
            continue;
        };
        if !path.starts_with('/') || path.split('/').any(|part| part == "..") {
            continue;
        }
        // The cgroup and each ancestor up to the mount point (the root
        // cgroup, or the namespace's root): a parent's limit binds its
        // children too.
        let mut dir = path.trim_end_matches('/');
        loop {
            let at = |file: &str| read(&format!("{mount}{dir}/{file}"));
            let number = |file: &str| at(file)?.trim().parse::<u64>().ok();
            // "max" (v2) does not parse, and v1 writes "no limit" as
            // nearly 2^63: no limit at this level.
            if let Some(limit) = number(limit).filter(|&limit| limit < 1 << 62) {
                if let Some(usage) = number(usage) {
                    let mut room = limit.saturating_sub(usage);
                    if needed.map_or(true, |needed| room < needed) {
                        let reclaimable = at("memory.stat")
                            .and_then(|stat| {
                                stat.lines().find_map(|line| {
                                    let (name, value) = line.split_once(' ')?;
                                    (name == inactive).then(|| value.trim().parse::<u64>().ok())?
                                })
                            })
                            .unwrap_or(0);
                        room = limit.saturating_sub(usage.saturating_sub(reclaimable));
                    }
                    least_room = least(least_room, Some(room));
                }
            }
            if dir.is_empty() {
                break;
            }
            dir = &dir[..dir.rfind('/').unwrap_or(0)];
        }
    }
    least_room
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::HashMap;
    use std::os::fd::AsFd;

    const MEMINFO: &str = "MemTotal:       24683664 kB\n\
                           MemFree:        15715168 kB\n\
                           MemAvailable:   24090884 kB\n\
                           SwapFree:              8 kB\n\
                           HugePages_Free:        3\n\
                           Hugepagesize:       2048 kB\n";

    #[test]
    fn meminfo_sizes_are_read_in_bytes_and_anything_else_is_unknown() {
        assert_eq!(
            meminfo_bytes(MEMINFO, "MemAvailable"),
            Some(24090884 * 1024)
        );
        assert_eq!(meminfo_bytes(MEMINFO, "SwapFree"), Some(8192));
        assert_eq!(meminfo_bytes(MEMINFO, "Hugepagesize"), Some(2 << 20));
        // A count, not a size; a key that is missing; a prefix of a key.
        assert_eq!(meminfo_bytes(MEMINFO, "HugePages_Free"), None);
        assert_eq!(meminfo_field(MEMINFO, "HugePages_Free"), Some("3"));
        assert_eq!(meminfo_bytes(MEMINFO, "SwapTotal"), None);
        assert_eq!(meminfo_bytes(MEMINFO, "Mem"), None);
        assert_eq!(
            meminfo_bytes("MemAvailable: lots kB\n", "MemAvailable"),
            None
        );
        assert_eq!(
            meminfo_bytes("MemAvailable: 99999999999999999 kB", "MemAvailable"),
            None
        );
    }

    /// `cgroup_room` over a fake `/sys/fs/cgroup` made of `files`.
    fn room(self_cgroup: &str, files: &[(&str, &str)]) -> Option<u64> {
        room_for(self_cgroup, None, files)
    }

    fn room_for(self_cgroup: &str, needed: Option<u64>, files: &[(&str, &str)]) -> Option<u64> {
        let files: HashMap<String, String> = files
            .iter()
            .map(|(path, text)| (path.to_string(), text.to_string()))
            .collect();
        cgroup_room(self_cgroup, needed, |path| files.get(path).cloned())
    }

    #[test]
    fn a_cgroup_v2_limit_leaves_the_limit_minus_the_working_set() {
        let at = |file: &str| format!("/sys/fs/cgroup/user/app/{file}");
        let (max, current, stat) = (at("memory.max"), at("memory.current"), at("memory.stat"));
        let files = [
            (max.as_str(), "1000000\n"),
            (current.as_str(), "600000\n"),
            (
                stat.as_str(),
                "anon 400000\ninactive_file 100000\nactive_file 100000\n",
            ),
        ];
        // 1000000 - (600000 - 100000 of inactive file cache).
        assert_eq!(room("0::/user/app\n", &files), Some(500000));
        // Asked whether 400000 bytes fit, it needs not count the cache.
        assert_eq!(
            room_for("0::/user/app\n", Some(400000), &files),
            Some(400000)
        );
        assert_eq!(
            room_for("0::/user/app\n", Some(400001), &files),
            Some(500000)
        );
        // No limit at this level, and none above it.
        assert_eq!(
            room("0::/user/app\n", &[(&max, "max\n"), (&current, "5\n")]),
            None
        );
        // Usage above the limit (reclaim pending): no room, no underflow.
        assert_eq!(
            room("0::/user/app\n", &[(&max, "10\n"), (&current, "50\n")]),
            Some(0)
        );
    }

    #[test]
    fn the_tightest_limit_among_the_ancestors_binds() {
        let files = [
            ("/sys/fs/cgroup/a/b/memory.max", "max\n"),
            ("/sys/fs/cgroup/a/b/memory.current", "100\n"),
            ("/sys/fs/cgroup/a/memory.max", "5000\n"),
            ("/sys/fs/cgroup/a/memory.current", "1000\n"),
            ("/sys/fs/cgroup/memory.max", "900000\n"),
            ("/sys/fs/cgroup/memory.current", "1000\n"),
        ];
        assert_eq!(room("0::/a/b\n", &files), Some(4000));
        // A namespaced cgroup whose own directory is the mount point.
        assert_eq!(room("0::/\n", &files), Some(899000));
    }

    #[test]
    fn a_cgroup_v1_memory_hierarchy_is_read_too() {
        let self_cgroup = "9:name=systemd:/\n4:memory,hugetlb:/job\n1:cpu:/\n0::/\n";
        let files = [
            ("/sys/fs/cgroup/memory/job/memory.limit_in_bytes", "8000\n"),
            ("/sys/fs/cgroup/memory/job/memory.usage_in_bytes", "3000\n"),
            (
                "/sys/fs/cgroup/memory/job/memory.stat",
                "cache 2000\ntotal_inactive_file 1000\n",
            ),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            ("/sys/fs/cgroup/memory/memory.usage_in_bytes", "4000\n"),
        ];
        assert_eq!(room(self_cgroup, &files), Some(6000));
    }

    #[test]
    fn unreadable_or_malformed_cgroup_files_limit_nothing() {
        assert_eq!(room("", &[]), None);
        assert_eq!(
            room("garbage\n0::relative\n4:memory:/../../etc\n", &[]),
            None
        );
        let files = [
            ("/sys/fs/cgroup/x/memory.max", "12 apples\n"),
            ("/sys/fs/cgroup/x/memory.current", "1\n"),
        ];
        assert_eq!(room("0::/x\n", &files), None);
    }

    /// A mapping of a new memfd of one header page and `pages` data pages.
    fn mapping(pages: u64) -> (OwnedFd, Mapping) {
        let (fd, page) = create("fdring-test", CreateOptions::default()).unwrap();
        set_len(fd.as_fd(), page * (1 + pages)).unwrap();
        let mapping = Mapping::new(fd.as_fd(), page, page * pages).unwrap();
        (fd, mapping)
    }

    #[test]
    #[cfg_attr(miri, ignore = "a real memfd and mapping: Miri has no memfd_create")]
    fn populating_stops_with_an_error_when_memory_runs_out_midway() {
        let page = page_size() as usize;
        let (_fd, ring) = mapping(16);
        // Checked from the second chunk on: plenty then, none after it.
        let calls = Cell::new(0);
        let vanishing = || {
            calls.set(calls.get() + 1);
            Some(if calls.get() == 1 { u64::MAX } else { 0 })
        };
        assert_eq!(
            ring.populate_with(
                4 * page,
                |needed| vanishing().filter(|&a| a < needed),
                || Some(0)
            ),
            Err(Error::Exhausted(Exhaustion::Memory {
                requested: 17 * page as u64,
                // What was faulted in, and nothing more available.
                available: 8 * page as u64,
            }))
        );
        // Exactly enough for each rest, and unknown: it populates it all.
        let (_fd, ring) = mapping(16);
        let done = Cell::new(0u64);
        let exact = |needed: u64| {
            done.set(done.get() + 4 * page as u64);
            // Exactly what is left: enough.
            assert_eq!(needed, 17 * page as u64 - done.get());
            Some(needed).filter(|&available| available < needed)
        };
        assert_eq!(ring.populate_with(4 * page, exact, || None), Ok(()));
        assert_eq!(done.get(), 16 * page as u64, "checked between the chunks");
        assert_eq!(ring.populate_with(4 * page, |_| None, || None), Ok(()));
    }
}
