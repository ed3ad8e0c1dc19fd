//! The floors: the least code that could do each job on this machine (a
//! bare SPSC over the same mirrored mapping, a cache-line ping-pong, a
//! `memcpy`), with no validation and no signalling.

use std::hint::spin_loop;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::data::{check, fill, pingpong_side, tx_side, Duplex, Rx, Tx};
use crate::process::{child, monotonic_ns, pair, Cfg, Peer, Run};
use crate::{Res, CAP, FRAME_RING, FRAME_WORDS};

/// A memfd of one page of indices, each on a 128-byte line of its own,
/// then a data region mapped twice in a row: the shape of fdring's mapping.
pub struct Shm {
    pub base: *mut u8,
    pub page: usize,
    pub data: usize,
}

impl Shm {
    pub fn create(data: usize) -> Res<(Shm, OwnedFd)> {
        let fd = rustix::fs::memfd_create("fdring-bench-floor", rustix::fs::MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&fd, (rustix::param::page_size() + data) as u64)?;
        Ok((Shm::map(&fd)?, fd))
    }

    pub fn map(fd: &OwnedFd) -> Res<Shm> {
        use rustix::mm::{mmap, mmap_anonymous, MapFlags, ProtFlags};
        let page = rustix::param::page_size();
        let data = rustix::fs::fstat(fd)?.st_size as usize - page;
        let rw = ProtFlags::READ | ProtFlags::WRITE;
        let fixed = MapFlags::SHARED | MapFlags::FIXED;
        // SAFETY: the anonymous mapping reserves fresh addresses; the two
        // MAP_FIXED mappings replace only parts of that reservation (the
        // header and data, then the data again right after), and the memfd
        // is `page + data` bytes long.
        let base = unsafe {
            let base = mmap_anonymous(
                std::ptr::null_mut(),
                page + 2 * data,
                ProtFlags::empty(),
                MapFlags::PRIVATE,
            )?;
            mmap(base, page + data, rw, fixed, fd, 0)?;
            mmap(
                base.cast::<u8>().add(page + data).cast(),
                data,
                rw,
                fixed,
                fd,
                page as u64,
            )?;
            base.cast::<u8>()
        };
        Ok(Shm { base, page, data })
    }

    pub fn line(&self, i: usize) -> &AtomicU64 {
        // SAFETY: the first page stays mapped while `self` lives, is
        // page-aligned, and both sides use its lines only as atomics.
        unsafe { &*self.base.add(i * 128).cast::<AtomicU64>() }
    }

    /// The slot of item `index`; the run after it stays in the mapping
    /// for up to a whole ring, thanks to the mirror.
    pub fn slot(&self, index: u64) -> *mut u64 {
        let capacity = (self.data / 8) as u64;
        let data = self.base.wrapping_add(self.page).cast::<u64>();
        data.wrapping_add((index % capacity) as usize)
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the reservation made in `map`; nothing
        // borrows it any more.
        let _ = unsafe { rustix::mm::munmap(self.base.cast(), self.page + 2 * self.data) };
    }
}

// SAFETY: `Shm` owns its mapping; the pointer moves with it.
unsafe impl Send for Shm {}

/// The floor: a bare SPSC over `Shm`, busy-polling, with no validation and
/// no signalling; each side caches the other's index (line 0 is the
/// producer's, line 1 the consumer's).
pub struct Floor {
    pub shm: Shm,
    pub mine: u64,
    pub cached: u64,
}

impl Floor {
    pub fn new(shm: Shm) -> Floor {
        Floor {
            shm,
            mine: 0,
            cached: 0,
        }
    }

    /// How many slots this side may use, waiting for one: `filled(mine,
    /// theirs)` of the `capacity`.
    pub fn wait(&mut self, theirs: usize, usable: impl Fn(u64, u64) -> u64) -> usize {
        let mut n = usable(self.mine, self.cached);
        while n == 0 {
            self.cached = self.shm.line(theirs).load(Ordering::Acquire);
            n = usable(self.mine, self.cached);
            if n == 0 {
                spin_loop();
            }
        }
        n as usize
    }
}

impl Tx for Floor {
    fn put(&mut self, first: u64, max: usize) -> Res<usize> {
        let capacity = (self.shm.data / 8) as u64;
        let k = self
            .wait(1, |write, read| capacity - (write - read))
            .min(max);
        let slots = self.shm.slot(self.mine).cast::<MaybeUninit<u64>>();
        // SAFETY: `k` free slots, contiguous thanks to the mirror, which the
        // consumer does not read until they are published below.
        fill(unsafe { std::slice::from_raw_parts_mut(slots, k) }, first);
        self.mine += k as u64;
        self.shm.line(0).store(self.mine, Ordering::Release);
        Ok(k)
    }
}

impl Rx for Floor {
    fn take(&mut self, first: u64, max: usize) -> Res<(usize, u64)> {
        let k = self.wait(0, |read, write| write - read).min(max);
        // SAFETY: `k` published slots, contiguous thanks to the mirror,
        // which the producer does not touch until they are released below.
        let diff = check(
            unsafe { std::slice::from_raw_parts(self.shm.slot(self.mine), k) },
            first,
        );
        self.mine += k as u64;
        self.shm.line(1).store(self.mine, Ordering::Release);
        Ok((k, diff))
    }
}

/// The floor of a ping-pong: each side stores to its own cache line and
/// polls the other's.
pub struct Line {
    pub shm: Shm,
    pub mine: usize,
    pub last: u64,
}

impl Duplex for Line {
    fn send(&mut self, v: u64) -> Res<()> {
        self.shm.line(self.mine).store(v, Ordering::Release);
        Ok(())
    }
    fn recv(&mut self) -> Res<u64> {
        loop {
            let v = self.shm.line(1 - self.mine).load(Ordering::Acquire);
            if v != self.last {
                self.last = v;
                return Ok(v);
            }
            spin_loop();
        }
    }
}

/// A ping-pong over two bare SPSC rings (`Floor`), one each way: what any
/// ring with its index and its items on separate lines pays, unlike the
/// single line of `Line`.
pub struct FloorPair {
    pub tx: Floor,
    pub rx: Floor,
}

impl Duplex for FloorPair {
    fn send(&mut self, v: u64) -> Res<()> {
        let capacity = (self.tx.shm.data / 8) as u64;
        self.tx.wait(1, |write, read| capacity - (write - read));
        // SAFETY: a free slot, which the consumer does not read until it
        // is published below.
        unsafe { self.tx.shm.slot(self.tx.mine).write(v) };
        self.tx.mine += 1;
        self.tx.shm.line(0).store(self.tx.mine, Ordering::Release);
        Ok(())
    }
    fn recv(&mut self) -> Res<u64> {
        self.rx.wait(0, |read, write| write - read);
        // SAFETY: a published slot, which the producer does not touch
        // until it is released below.
        let v = unsafe { self.rx.shm.slot(self.rx.mine).read() };
        self.rx.mine += 1;
        self.rx.shm.line(1).store(self.rx.mine, Ordering::Release);
        Ok(v)
    }
}

pub fn floor_ring_pingpong(c: &Cfg) -> Res<Run> {
    let (ours, ours_fd) = Shm::create(512 * 8)?;
    let (theirs, theirs_fd) = Shm::create(512 * 8)?;
    let peer = child("floor-pong", c, vec![], vec![ours_fd, theirs_fd])?;
    let end = FloorPair {
        tx: Floor::new(ours),
        rx: Floor::new(theirs),
    };
    pair(peer, |gate| pingpong_side(end, c, true, gate))
}

pub fn floor_stream(c: &Cfg) -> Res<Run> {
    let (shm, fd) = Shm::create(CAP * 8)?;
    let peer = child("floor", c, vec![], vec![fd])?;
    pair(peer, |gate| tx_side(Floor::new(shm), c, gate))
}

pub fn floor_pingpong(c: &Cfg) -> Res<Run> {
    let (shm, fd) = Shm::create(rustix::param::page_size())?;
    let peer = child("line-pong", c, vec![], vec![fd])?;
    pair(peer, |gate| {
        pingpong_side(
            Line {
                shm,
                mine: 0,
                last: 0,
            },
            c,
            true,
            gate,
        )
    })
}

/// The floor of `frames_video`: copy frame `i % 4` of a four-frame source
/// into one destination frame, on one core; the last copy is checked.
pub fn floor_memcpy(c: &Cfg) -> Res<Run> {
    let source: Vec<u64> = (0..(FRAME_RING * FRAME_WORDS) as u64).collect();
    let mut frame = vec![0u64; FRAME_WORDS];
    pair(Peer::Alone, |gate| {
        let before = gate.open();
        let mut warm_at = 0;
        for i in 0..c.n as usize {
            if i as u64 == c.warm && c.warm > 0 {
                warm_at = monotonic_ns();
            }
            let at = i % FRAME_RING * FRAME_WORDS;
            frame.copy_from_slice(&source[at..at + FRAME_WORDS]);
            std::hint::black_box(&mut frame);
        }
        let last = (c.n as usize - 1) % FRAME_RING * FRAME_WORDS;
        Ok(Run::side(check(&frame, last as u64) == 0, before, [0, 0])?.warmed_at(warm_at))
    })
}
